/* loader.c: one file into the net's input, and batches of files decoded by
 * worker threads while the caller computes.
 *
 * The loader holds two batch slots. A worker takes the next image of the
 * oldest submitted batch that still has undecoded images, decodes it
 * straight into that slot (images are independent, so no ordering among
 * workers matters), and the last worker to finish a batch wakes the caller.
 * Workers block every signal, so an interrupt reaches the caller's thread.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "images.h"
#include "ops.h"

/* ---- one file ---------------------------------------------------------------- */

typedef struct {
    const an_image_options *opt;
    const an_transform *t;
    an_geometry geom;
    an_status status;
    char message[512];
} scale_ctx;

static int choose_scale(void *p, int width, int height)
{
    scale_ctx *c = p;
    c->status = an_geometry_build(c->opt, c->t, width, height, &c->geom);
    if (c->status != AN_OK) {
        snprintf(c->message, sizeof c->message, "%s", an_error_message());
        return 8;
    }
    return c->opt->dct_scaling ? an_geometry_scale_num(&c->geom) : 8;
}

/* One image from the file `path`, or (memory = 1) from the `size` bytes at
 * `data`, which `path` then only names. */
static an_status load_one(an_image_scratch *s, const char *path, int memory, const uint8_t *data,
                          size_t size, const an_image_options *opt, const an_augment *aug,
                          uint64_t seed, uint64_t epoch, uint64_t index, float *dst, int *width,
                          int *height, char *warning, size_t warning_size)
{
    an_image_options defaults;
    if (!opt) {
        an_image_options_init(&defaults);
        opt = &defaults;
    }
    if (width) *width = 0;
    if (height) *height = 0;
    if (warning && warning_size) warning[0] = 0;
    if (!dst) return an_fail(AN_ERR_ARGUMENT, "an_image_load: dst is NULL");
    size_t n_out = (size_t)3 * opt->size * opt->size;
    an_geometry probe;   /* the options, before any decoding */
    an_status st = an_geometry_build(opt, NULL, 1, 1, &probe);
    if (st != AN_OK) goto fail;
    if ((st = an_augment_check(aug)) != AN_OK) goto fail;
    an_transform t;
    an_augment_draw(aug, seed, epoch, index, &t);
    scale_ctx ctx;
    ctx.opt = opt;
    ctx.t = &t;
    ctx.status = AN_OK;
    an_decoded d;
    if (memory)
        st = an_jpeg_decode_scaled_memory(s, path, data, size, opt->max_megapixels, opt->lenient,
                                          choose_scale, &ctx, &d);
    else
        st = an_jpeg_decode_scaled(s, path, opt->max_megapixels, opt->lenient, choose_scale, &ctx, &d);
    if (width) *width = d.width;
    if (height) *height = d.height;
    if (st != AN_OK) goto fail;
    if (ctx.status != AN_OK) {
        st = an_fail(ctx.status, "'%s': %s", path, ctx.message);
        goto fail;
    }
    st = an_geometry_sample(&ctx.geom, s, d.rgb, d.out_w, d.out_h, d.scale_num, dst);
    if (st != AN_OK) goto fail;
    if (d.warning[0] && warning && warning_size)
        snprintf(warning, warning_size, "'%s': kept despite a libjpeg warning (%s)", path, d.warning);
    return AN_OK;
fail:
    if (opt->size >= 1 && opt->size <= 8192) memset(dst, 0, n_out * sizeof *dst);
    return st;
}

an_status an_image_load_scratch(an_image_scratch *s, const char *path, const an_image_options *opt,
                                const an_augment *aug, uint64_t seed, uint64_t epoch,
                                uint64_t index, float *dst, int *width, int *height,
                                char *warning, size_t warning_size)
{
    return load_one(s, path, 0, NULL, 0, opt, aug, seed, epoch, index, dst, width, height, warning,
                    warning_size);
}

an_status an_image_load_memory(an_image_scratch *s, const char *name, const uint8_t *data,
                               size_t size, const an_image_options *opt, const an_augment *aug,
                               uint64_t seed, uint64_t epoch, uint64_t index, float *dst,
                               int *width, int *height, char *warning, size_t warning_size)
{
    if (!name || !name[0]) name = "<memory>";
    return load_one(s, name, 1, data, size, opt, aug, seed, epoch, index, dst, width, height, warning,
                    warning_size);
}

an_status an_image_load(const char *path, const an_image_options *opt, const an_augment *aug,
                        uint64_t seed, uint64_t epoch, uint64_t index, float *dst, int *width,
                        int *height)
{
    an_image_scratch s;
    memset(&s, 0, sizeof s);
    an_status st = an_image_load_scratch(&s, path, opt, aug, seed, epoch, index, dst, width, height,
                                         NULL, 0);
    an_image_scratch_free(&s);
    return st;
}

/* ---- the loader ------------------------------------------------------------------ */

enum { SLOT_FREE, SLOT_PENDING };

typedef struct {
    int state;
    uint64_t serial;        /* submission order */
    uint64_t epoch;
    int count, cap;
    int items;              /* work items: the images, or a blocked batch's blocks */
    int blocked;            /* an array batch of consecutive input-sized images, converted in blocks */
    int next;               /* next item to hand to a worker */
    int done;               /* items finished */
    int *indices;
    float *pixels;
    an_load_result *results;
} slot;

struct an_loader {
    char **paths;           /* NULL for an array loader */
    int n_paths;            /* images */
    int is_array;
    an_pixel_array array;
    int copies;             /* array images of the input's size: copied, not resized */
    int inline_blocks;      /* blocked batches converted by the submitter (an_loader_convert_inline) */
    uint8_t *bytes;         /* the array's images as bytes (an_pixels_pack), or NULL */
    float *rows;            /* a frozen prefix's rows (an_loader_freeze), or NULL */
    size_t rows_mapped;     /* their bytes when a file holds them (munmap), else 0 */
    an_load_result *row_results;  /* how each row's image loaded when they were made */
    int stage;              /* the step the rows are the output of; -1: images */
    an_loader_options opt;
    size_t image_floats;
    an_pixel_range range;   /* of the array values converted (under mu) */

    pthread_mutex_t mu;
    pthread_cond_t work;    /* workers: an image to decode, or shutdown */
    pthread_cond_t done;    /* caller: a batch completed */
    slot slots[2];
    uint64_t next_serial;   /* serial of the next submission */
    uint64_t wait_serial;   /* serial of the batch an_loader_wait returns next */
    int shutdown;

    int n_threads;          /* started */
    pthread_t *threads;
    an_image_scratch *scratch;   /* one per thread */
};

typedef struct {
    an_loader *ld;
    int id;
} worker_arg;

void an_loader_options_init(an_loader_options *opt)
{
    memset(opt, 0, sizeof *opt);
    an_image_options_init(&opt->image);
    an_augment_init(&opt->augment);
    opt->augment_on = 0;
    opt->seed = 0;
    opt->threads = 2;
    opt->on_error = AN_ON_ERROR_STOP;
}

/* The oldest pending batch with an image not yet handed out, or NULL. */
static slot *next_work(an_loader *ld)
{
    slot *best = NULL;
    for (int i = 0; i < 2; i++) {
        slot *b = &ld->slots[i];
        if (b->state == SLOT_PENDING && b->next < b->items && (!best || b->serial < best->serial))
            best = b;
    }
    return best;
}

static void *worker(void *p)
{
    an_loader *ld = ((worker_arg *)p)->ld;
    an_image_scratch *s = &ld->scratch[((worker_arg *)p)->id];
    free(p);
    const an_augment *aug = ld->opt.augment_on ? &ld->opt.augment : NULL;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        slot *b = NULL;
        while (!ld->shutdown && !(b = next_work(ld))) pthread_cond_wait(&ld->work, &ld->mu);
        if (ld->shutdown) break;
        if (b->blocked) {   /* a block of every image of the batch */
            int block = b->next++, first = b->indices[0], count = b->count;
            float *pixels = b->pixels;
            pthread_mutex_unlock(&ld->mu);
            an_pixel_range range;
            an_pixel_range_init(&range);
            an_pixels_convert_block(&ld->array, first, count, block, AN_INPUT_PLANES, pixels, &range, NULL);
            pthread_mutex_lock(&ld->mu);
            an_pixel_range_merge(&ld->range, &range);
            if (++b->done == b->items) pthread_cond_broadcast(&ld->done);
            continue;
        }
        int j = b->next++;
        int index = b->indices[j];
        uint64_t epoch = b->epoch;
        float *dst = b->pixels + (size_t)j * ld->image_floats;
        an_load_result *r = &b->results[j];
        pthread_mutex_unlock(&ld->mu);
        an_pixel_range range;
        an_pixel_range_init(&range);

        if (ld->rows) {
            memcpy(dst, ld->rows + (size_t)index * ld->image_floats, ld->image_floats * sizeof *dst);
            *r = ld->row_results[index];
        } else if (ld->bytes) {
            const uint8_t *src = ld->bytes + (size_t)index * ld->image_floats;
            const size_t count = ld->image_floats;
#pragma omp simd
            for (size_t k = 0; k < count; k++) dst[k] = src[k];
            r->status = AN_OK;
            r->width = r->height = ld->opt.image.size;
            r->message[0] = 0;
        } else if (ld->is_array) {
            r->status = an_pixels_convert_one(&ld->array, index, s, &ld->opt.image, dst, &range);
            r->width = ld->array.w;
            r->height = ld->array.h;
            snprintf(r->message, sizeof r->message, "%s", r->status == AN_OK ? "" : an_error_message());
        } else {
            r->message[0] = 0;
            r->status = an_image_load_scratch(s, ld->paths[index], &ld->opt.image, aug, ld->opt.seed,
                                              epoch, (uint64_t)index, dst, &r->width, &r->height,
                                              r->message, sizeof r->message);
            if (r->status != AN_OK) snprintf(r->message, sizeof r->message, "%s", an_error_message());
        }

        pthread_mutex_lock(&ld->mu);
        an_pixel_range_merge(&ld->range, &range);
        if (++b->done == b->items) pthread_cond_broadcast(&ld->done);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void stop_threads(an_loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    ld->shutdown = 1;
    pthread_cond_broadcast(&ld->work);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->n_threads; i++) pthread_join(ld->threads[i], NULL);
    ld->n_threads = 0;
}

void an_loader_free(an_loader *ld)
{
    if (!ld) return;
    stop_threads(ld);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->work);
    pthread_cond_destroy(&ld->done);
    if (ld->scratch)
        for (int i = 0; i < ld->opt.threads; i++) an_image_scratch_free(&ld->scratch[i]);
    free(ld->scratch);
    free(ld->threads);
    for (int i = 0; i < 2; i++) {
        free(ld->slots[i].indices);
        free(ld->slots[i].pixels);
        free(ld->slots[i].results);
    }
    free(ld->bytes);
    if (ld->rows_mapped) munmap(ld->rows, ld->rows_mapped);
    else free(ld->rows);
    free(ld->row_results);
    if (ld->paths && !ld->is_array)
        for (int i = 0; i < ld->n_paths; i++) free(ld->paths[i]);
    free(ld->paths);
    free(ld);
}

static an_status create_loader(const char *const *paths, int n_paths, const an_pixel_array *array,
                               const an_loader_options *opt, an_loader **out);

an_status an_loader_create(const char *const *paths, int n_paths, const an_loader_options *opt,
                           an_loader **out)
{
    if (!out) return an_fail(AN_ERR_ARGUMENT, "an_loader_create: out is NULL");
    *out = NULL;
    if (n_paths < 0 || (n_paths > 0 && !paths))
        return an_fail(AN_ERR_ARGUMENT, "an_loader_create: %d paths", n_paths);
    return create_loader(paths, n_paths, NULL, opt, out);
}

an_status an_loader_create_array(const an_pixel_array *a, const an_loader_options *opt, an_loader **out)
{
    if (!out) return an_fail(AN_ERR_ARGUMENT, "an_loader_create_array: out is NULL");
    *out = NULL;
    if (!a || !a->data) return an_fail(AN_ERR_ARGUMENT, "an_loader_create_array: no pixels");
    if (a->type != AN_PIXELS_F64 && a->type != AN_PIXELS_I32)
        return an_fail(AN_ERR_ARGUMENT, "an_loader_create_array: unknown pixel type %d", (int)a->type);
    if (a->n < 1 || a->h < 1 || a->w < 1 || a->h > 65536 || a->w > 65536)
        return an_fail(AN_ERR_ARGUMENT, "an array of %d images of %d x %d pixels: at least one image, "
                       "each side 1 to 65536", a->n, a->h, a->w);
    if (a->channels != 1 && a->channels != 3)
        return an_fail(AN_ERR_ARGUMENT, "images have %d channels: 1 (grey) or 3 (RGB) expected", a->channels);
    return create_loader(NULL, a->n, a, opt, out);
}

an_status an_loader_pixel_range(an_loader *ld, an_pixel_range *range)
{
    if (!ld || !range) return an_fail(AN_ERR_ARGUMENT, "an_loader_pixel_range: no loader or no range");
    if (!ld->is_array || ld->bytes || ld->rows)
        return an_fail(AN_ERR_ARGUMENT, "an_loader_pixel_range: the loader converts no array values");
    pthread_mutex_lock(&ld->mu);
    *range = ld->range;
    pthread_mutex_unlock(&ld->mu);
    return AN_OK;
}

static an_status create_loader(const char *const *paths, int n_paths, const an_pixel_array *array,
                               const an_loader_options *opt, an_loader **out)
{
    an_loader_options defaults;
    if (!opt) {
        an_loader_options_init(&defaults);
        opt = &defaults;
    }
    if (opt->threads < 0 || opt->threads > 256)
        return an_fail(AN_ERR_ARGUMENT, "threads is %d: 0 (default 2) to 256 expected", opt->threads);
    if (opt->on_error != AN_ON_ERROR_STOP && opt->on_error != AN_ON_ERROR_SKIP)
        return an_fail(AN_ERR_ARGUMENT, "unknown error policy %d", (int)opt->on_error);
    if (opt->augment_on) {
        an_status st = an_augment_check(&opt->augment);
        if (st != AN_OK) return st;
    }
    an_geometry probe;   /* validates the image options */
    an_status st = an_geometry_build(&opt->image, NULL, 1, 1, &probe);
    if (st != AN_OK) return st;
    for (int i = 0; i < n_paths && paths; i++)
        if (!paths[i]) return an_fail(AN_ERR_ARGUMENT, "an_loader_create: path %d is NULL", i + 1);

    an_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return an_fail(AN_ERR_MEMORY, "out of memory for the loader");
    ld->opt = *opt;
    if (ld->opt.threads == 0) ld->opt.threads = 2;
    ld->image_floats = (size_t)3 * opt->image.size * opt->image.size;
    ld->n_paths = n_paths;
    ld->stage = -1;
    if (array) {
        ld->is_array = 1;
        ld->array = *array;
        an_pixel_range_init(&ld->range);
        /* bytes and blocks: images already of the input's size (227, 224) */
        ld->copies = array->h == opt->image.size && array->w == opt->image.size;
        if (opt->keep_bytes && ld->copies) ld->bytes = an_pixels_pack(array);
    }
    ld->paths = calloc(n_paths && paths ? (size_t)n_paths : 1, sizeof *ld->paths);
    ld->threads = calloc((size_t)ld->opt.threads, sizeof *ld->threads);
    ld->scratch = calloc((size_t)ld->opt.threads, sizeof *ld->scratch);
    int sync_ok = 0;
    if (ld->paths && ld->threads && ld->scratch) {
        sync_ok = pthread_mutex_init(&ld->mu, NULL) == 0;
        if (sync_ok && pthread_cond_init(&ld->work, NULL) != 0) {
            pthread_mutex_destroy(&ld->mu);
            sync_ok = 0;
        }
        if (sync_ok && pthread_cond_init(&ld->done, NULL) != 0) {
            pthread_cond_destroy(&ld->work);
            pthread_mutex_destroy(&ld->mu);
            sync_ok = 0;
        }
    }
    if (!sync_ok) {
        free(ld->bytes);
        free(ld->paths);
        free(ld->threads);
        free(ld->scratch);
        free(ld);
        return an_fail(AN_ERR_MEMORY, "out of memory creating the loader");
    }
    for (int i = 0; i < n_paths && paths; i++) {
        size_t len = strlen(paths[i]);
        ld->paths[i] = malloc(len + 1);
        if (!ld->paths[i]) {
            an_loader_free(ld);
            return an_fail(AN_ERR_MEMORY, "out of memory copying %d paths", n_paths);
        }
        memcpy(ld->paths[i], paths[i], len + 1);
    }

#ifndef _WIN32
    /* Workers inherit a mask that blocks every signal. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
#endif
    int err = 0;
    for (int i = 0; i < ld->opt.threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) {
            err = ENOMEM;
            break;
        }
        a->ld = ld;
        a->id = i;
        err = pthread_create(&ld->threads[i], NULL, worker, a);
        if (err) {
            free(a);
            break;
        }
        ld->n_threads++;
    }
#ifndef _WIN32
    pthread_sigmask(SIG_SETMASK, &old, NULL);
#endif
    if (err) {
        int started = ld->n_threads;
        an_loader_free(ld);
        return an_fail(AN_ERR_MEMORY, "could not start loader thread %d of %d (error %d)", started + 1,
                       opt->threads ? opt->threads : 2, err);
    }
    *out = ld;
    return AN_OK;
}

int an_loader_size(const an_loader *ld) { return ld ? ld->n_paths : 0; }
int an_loader_stage(const an_loader *ld) { return ld ? ld->stage : -1; }
size_t an_loader_item_floats(const an_loader *ld) { return ld ? ld->image_floats : 0; }

size_t an_loader_rows_on_disk(const an_loader *ld) { return ld ? ld->rows_mapped : 0; }

an_status an_loader_create_rows(float *rows, size_t mapped_bytes, an_load_result *results, int n, size_t width,
                                int stage, an_loader **out)
{
    *out = NULL;
    an_loader_options opt;
    an_loader_options_init(&opt);
    opt.threads = 1;   /* a copy per row */
    opt.on_error = AN_ON_ERROR_SKIP;
    an_status st = create_loader(NULL, n, NULL, &opt, out);
    if (st != AN_OK) {
        if (mapped_bytes) munmap(rows, mapped_bytes);
        else free(rows);
        free(results);
        return st;
    }
    (*out)->rows = rows;
    (*out)->rows_mapped = mapped_bytes;
    (*out)->row_results = results;
    (*out)->image_floats = width;
    (*out)->stage = stage;
    (*out)->is_array = 1;   /* no paths: its path list has one empty slot */
    return AN_OK;
}

const char *an_loader_path(const an_loader *ld, int index)
{
    return ld && !ld->is_array && index >= 0 && index < ld->n_paths ? ld->paths[index] : NULL;
}

/* A batch of consecutive images of an array already of the input's size,
 * converted in blocks (of all its images at once) rather than image by
 * image. */
static int blocked_batch(const an_loader *ld, const int *indices, int count)
{
    if (!ld->is_array || ld->bytes || !ld->copies || count < 2) return 0;
    for (int j = 1; j < count; j++)
        if (indices[j] != indices[0] + j) return 0;
    return 1;
}

/* Images first..first + count - 1 of the array converted into dst (in
 * `layout`), block by block over the caller's OpenMP team; their range
 * merged into the loader's. */
static void convert_blocks_here(an_loader *ld, int first, int count, an_input_layout layout, void *dst,
                                const an_input_norm *norm)
{
    an_pixel_range all;
    an_pixel_range_init(&all);
#pragma omp parallel num_threads(an_get_threads())
    {
        an_pixel_range range;
        an_pixel_range_init(&range);
#pragma omp for schedule(dynamic)
        for (int block = 0; block < an_pixel_blocks(ld->array.w, layout); block++)
            an_pixels_convert_block(&ld->array, first, count, block, layout, dst, &range, norm);
#pragma omp critical
        an_pixel_range_merge(&all, &range);
    }
    pthread_mutex_lock(&ld->mu);
    an_pixel_range_merge(&ld->range, &all);
    pthread_mutex_unlock(&ld->mu);
}

int an_loader_fills(const an_loader *ld, const int *indices, int count)
{
    return ld && indices && blocked_batch(ld, indices, count);
}

an_status an_loader_fill(an_loader *ld, const int *indices, int count, const an_input_norm *norm,
                         an_input_layout layout, void *input)
{
    if (!an_loader_fills(ld, indices, count) || !input)
        return an_fail(AN_ERR_ARGUMENT, "an_loader_fill: not a batch of consecutive images of the input's size");
    convert_blocks_here(ld, indices[0], count, layout, input, norm);
    return AN_OK;
}

void an_loader_convert_inline(an_loader *ld, int on)
{
    if (ld) ld->inline_blocks = on != 0;
}

an_status an_loader_submit(an_loader *ld, const int *indices, int count, uint64_t epoch)
{
    if (!ld) return an_fail(AN_ERR_ARGUMENT, "an_loader_submit: loader is NULL");
    if (count < 0 || (count > 0 && !indices))
        return an_fail(AN_ERR_ARGUMENT, "an_loader_submit: batch of %d images", count);
    for (int j = 0; j < count; j++)
        if (indices[j] < 0 || indices[j] >= ld->n_paths)
            return an_fail(AN_ERR_ARGUMENT, "an_loader_submit: image index %d (batch position %d) is "
                           "outside 0..%d", indices[j], j, ld->n_paths - 1);
    pthread_mutex_lock(&ld->mu);
    slot *b = NULL;
    for (int i = 0; i < 2 && !b; i++)
        if (ld->slots[i].state == SLOT_FREE) b = &ld->slots[i];
    pthread_mutex_unlock(&ld->mu);
    if (!b)
        return an_fail(AN_ERR_ARGUMENT, "an_loader_submit: two batches are already outstanding: "
                       "call an_loader_wait first");
    /* The slot is free: no worker touches it until it is published below. */
    if (count > b->cap) {
        size_t bytes = (size_t)count * ld->image_floats * sizeof(float);
        float *px = malloc(bytes);
        int *ix = malloc((size_t)count * sizeof *ix);
        an_load_result *rs = malloc((size_t)count * sizeof *rs);
        if (!px || !ix || !rs) {
            free(px);
            free(ix);
            free(rs);
            return an_fail(AN_ERR_MEMORY, "out of memory for a batch of %d images (%.0f MB)", count,
                           bytes / 1e6);
        }
        free(b->pixels);
        free(b->indices);
        free(b->results);
        b->pixels = px;
        b->indices = ix;
        b->results = rs;
        b->cap = count;
    }
    if (count) memcpy(b->indices, indices, (size_t)count * sizeof *indices);
    pthread_mutex_lock(&ld->mu);
    b->count = count;
    b->blocked = blocked_batch(ld, indices, count);
    b->items = b->blocked ? an_pixel_blocks(ld->array.w, AN_INPUT_PLANES) : count;
    for (int j = 0; j < count && b->blocked; j++) {   /* a copy cannot fail */
        b->results[j].status = AN_OK;
        b->results[j].width = b->results[j].height = ld->opt.image.size;
        b->results[j].message[0] = 0;
    }
    b->epoch = epoch;
    b->next = 0;
    b->done = 0;
    b->serial = ld->next_serial++;
    if (b->blocked && ld->inline_blocks) {
        /* the slot is not yet pending: no worker takes its blocks */
        pthread_mutex_unlock(&ld->mu);
        convert_blocks_here(ld, indices[0], count, AN_INPUT_PLANES, b->pixels, NULL);
        pthread_mutex_lock(&ld->mu);
        b->next = b->done = b->items;
    }
    b->state = SLOT_PENDING;
    pthread_cond_broadcast(&ld->work);
    pthread_mutex_unlock(&ld->mu);
    return AN_OK;
}

static slot *oldest(an_loader *ld)
{
    for (int i = 0; i < 2; i++)
        if (ld->slots[i].state == SLOT_PENDING && ld->slots[i].serial == ld->wait_serial)
            return &ld->slots[i];
    return NULL;
}

int an_loader_poll(an_loader *ld, int timeout_ms)
{
    if (!ld) return -1;
    pthread_mutex_lock(&ld->mu);
    slot *b = oldest(ld);
    int r = -1;
    if (b) {
        if (b->done < b->items && timeout_ms > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += timeout_ms / 1000;
            ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            while (b->done < b->items)
                if (pthread_cond_timedwait(&ld->done, &ld->mu, &ts) == ETIMEDOUT) break;
        }
        r = b->done == b->items;
    }
    pthread_mutex_unlock(&ld->mu);
    return r;
}

/* Wait for the oldest batch, report it, free its slot (its memory stays
 * untouched until the next submission). */
static an_status wait_oldest(an_loader *ld, float *dst, const float **pixels, an_load_result *results,
                             int *n_failed)
{
    if (n_failed) *n_failed = 0;
    if (pixels) *pixels = NULL;
    if (!ld) return an_fail(AN_ERR_ARGUMENT, "an_loader_wait: loader is NULL");
    pthread_mutex_lock(&ld->mu);
    slot *b = oldest(ld);
    if (!b) {
        pthread_mutex_unlock(&ld->mu);
        return an_fail(AN_ERR_ARGUMENT, "an_loader_wait: no batch outstanding (call an_loader_submit)");
    }
    while (b->done < b->items) pthread_cond_wait(&ld->done, &ld->mu);
    pthread_mutex_unlock(&ld->mu);

    /* Complete: no worker writes to it any more. */
    if (dst && b->count) memcpy(dst, b->pixels, (size_t)b->count * ld->image_floats * sizeof *dst);
    if (pixels) *pixels = b->pixels;
    if (results && b->count) memcpy(results, b->results, (size_t)b->count * sizeof *results);
    int failed = 0, first = -1;
    for (int j = 0; j < b->count; j++)
        if (b->results[j].status != AN_OK) {
            if (first < 0) first = j;
            failed++;
        }
    an_status st = AN_OK;
    if (failed && ld->opt.on_error == AN_ON_ERROR_STOP)
        st = an_fail(b->results[first].status, "%s", b->results[first].message);
    if (n_failed) *n_failed = failed;

    pthread_mutex_lock(&ld->mu);
    b->state = SLOT_FREE;
    ld->wait_serial++;
    pthread_mutex_unlock(&ld->mu);
    return st;
}

an_status an_loader_wait(an_loader *ld, float *dst, an_load_result *results, int *n_failed)
{
    return wait_oldest(ld, dst, NULL, results, n_failed);
}

an_status an_loader_wait_buffer(an_loader *ld, const float **pixels, an_load_result *results,
                                int *n_failed)
{
    if (!pixels) return an_fail(AN_ERR_ARGUMENT, "an_loader_wait_buffer: pixels is NULL");
    return wait_oldest(ld, NULL, pixels, results, n_failed);
}

/* Wait for the oldest batch in slices of 50 ms, ending early on a pending
 * interrupt (the batch stays outstanding: a later fetch takes or drops it). */
static an_status wait_interruptible(an_loader *ld)
{
    int ready;
    while ((ready = an_loader_poll(ld, 50)) == 0)
        if (an_interrupt_pending())
            return an_fail(AN_ERR_INTERRUPTED, "interrupted while images were being prepared");
    return AN_OK;
}

/* The oldest outstanding batch is (indices, count, epoch). */
static int oldest_is(an_loader *ld, const int *indices, int count, uint64_t epoch)
{
    pthread_mutex_lock(&ld->mu);
    slot *b = oldest(ld);
    int same = b && b->count == count && b->epoch == epoch &&
               (count == 0 || memcmp(b->indices, indices, (size_t)count * sizeof *indices) == 0);
    pthread_mutex_unlock(&ld->mu);
    return same;
}

static int outstanding(an_loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    int k = 0;
    for (int i = 0; i < 2; i++) k += ld->slots[i].state == SLOT_PENDING;
    pthread_mutex_unlock(&ld->mu);
    return k;
}

an_status an_loader_fetch(an_loader *ld, const int *indices, int count, uint64_t epoch, const int *next,
                          int ncount, uint64_t next_epoch, const float **pixels, an_load_result *results,
                          int *n_failed)
{
    if (pixels) *pixels = NULL;
    if (n_failed) *n_failed = 0;
    if (!ld || !pixels) return an_fail(AN_ERR_ARGUMENT, "an_loader_fetch: loader or pixels is NULL");
    if (count < 1) return an_fail(AN_ERR_ARGUMENT, "a batch needs at least one image");
    an_status st;
    /* anything outstanding that is not this batch is dropped */
    if (outstanding(ld) > 0 && !oldest_is(ld, indices, count, epoch)) {
        while (outstanding(ld) > 0) {
            if ((st = wait_interruptible(ld)) != AN_OK) return st;
            an_loader_wait(ld, NULL, NULL, NULL);
        }
    }
    if (outstanding(ld) == 0 && (st = an_loader_submit(ld, indices, count, epoch)) != AN_OK) return st;
    /* a batch converted inline is made when it is fetched, not ahead */
    int ahead = ncount > 0 && next && !(ld->inline_blocks && blocked_batch(ld, next, ncount));
    if (ahead && outstanding(ld) < 2 && (st = an_loader_submit(ld, next, ncount, next_epoch)) != AN_OK) return st;
    if ((st = wait_interruptible(ld)) != AN_OK) return st;
    return an_loader_wait_buffer(ld, pixels, results, n_failed);
}
