/* batches.c: the batch path. Forward, evaluation and training steps over a
 * loader (JPEG files or a pixel array alike): each batch is prepared by the
 * loader's workers while the one before computes, and forward outputs go
 * straight into the caller's matrix, in the caller's order and layout. The
 * whole call holds asynchronous signals back (signals.c); a Ctrl-C pending
 * while the loader prepares a batch ends it with AN_ERR_INTERRUPTED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "files.h"
#include "images.h"
#include "ops.h"

/* Copy b rows of `size` floats (row-major) into rows first.. of `out`. */
static void write_rows(const an_rows_out *out, int first, int b, size_t size, const float *rows,
                       const an_load_result *results)
{
    if (out->floats) {
        float *d = out->floats + (size_t)first * size;
        memcpy(d, rows, (size_t)b * size * sizeof *d);
        for (int j = 0; j < b; j++)
            if (results[j].status != AN_OK) memset(d + (size_t)j * size, 0, size * sizeof *d);
        return;
    }
    for (int j = 0; j < b; j++) {
        if (results[j].status == AN_OK) continue;
        double *d = out->data + (ptrdiff_t)(first + j) * out->row_stride;
        for (size_t k = 0; k < size; k++) d[(ptrdiff_t)k * out->col_stride] = out->missing;
    }
    /* column by column: consecutive rows are adjacent in a column-major
     * (R) matrix, so each column's b values are written together; on every
     * thread, as R's new matrix takes its pages on the first write */
#pragma omp parallel for schedule(static) num_threads(an_get_threads()) if (size * (size_t)b >= 65536)
    for (size_t k = 0; k < size; k++) {
        double *d = out->data + (ptrdiff_t)first * out->row_stride + (ptrdiff_t)k * out->col_stride;
        for (int j = 0; j < b; j++)
            if (results[j].status == AN_OK) d[(ptrdiff_t)j * out->row_stride] = rows[(size_t)j * size + k];
    }
}

/* The images of a batch that loaded, with their labels: the batch itself
 * when none failed, else copies in `in` / `lab` (count images room). */
static const float *kept_images(const float *px, size_t item, const an_load_result *r, const int *labels,
                                int count, int n_failed, float *in, int *lab, const int **lab_out, int *n_out)
{
    if (n_failed == 0) {
        *lab_out = labels;
        *n_out = count;
        return px;
    }
    int m = 0;
    for (int j = 0; j < count; j++) {
        if (r[j].status != AN_OK) continue;
        memcpy(in + (size_t)m * item, px + (size_t)j * item, item * sizeof(float));
        if (labels) lab[m] = labels[j];
        m++;
    }
    *lab_out = lab;
    *n_out = m;
    return in;
}

/* Batch [i0, i0 + *b) of a run of n images in batches of `batch`, the one
 * after it submitted to be prepared meanwhile. A Ctrl-C that arrived during
 * the batch before ends the run here (the signal stays pending for the
 * caller). */
static an_status run_batch(an_loader *ld, const int *indices, int n, int i0, int batch, int *b, const float **px,
                           an_load_result *results, int *failed)
{
    if (i0 > 0 && an_interrupt_pending()) return an_fail(AN_ERR_INTERRUPTED, "interrupted after %d of %d images", i0, n);
    *b = n - i0 < batch ? n - i0 : batch;
    int nb = n - i0 - *b < batch ? n - i0 - *b : batch;
    return an_loader_fetch(ld, indices + i0, *b, 0, nb > 0 ? indices + i0 + *b : NULL, nb, 0, px, results + i0,
                           failed);
}

/* A run's arguments checked, and the loader set up for the net's device. */
static an_status start_run(an_loader *ld, const an_net *net, const int *indices, int n, int batch)
{
    if (!ld || !net) return an_fail(AN_ERR_ARGUMENT, "no loader or no net");
    an_loader_convert_inline(ld, an_net_device(net) == AN_DEVICE_CPU);
    const int side = an_net_input_size(net);
    if (an_loader_stage(ld) == -1 && an_loader_item_floats(ld) != (size_t)AN_INPUT_CHANNELS * side * side)
        return an_fail(AN_ERR_ARGUMENT, "the loader makes images of %zu values, but a %s net takes 3 x %d x %d",
                       an_loader_item_floats(ld), an_arch_name(an_net_arch(net)), side, side);
    if (n < 1 || !indices) return an_fail(AN_ERR_ARGUMENT, "a run needs at least one image");
    if (batch < 1) return an_fail(AN_ERR_ARGUMENT, "batch size %d: at least 1 expected", batch);
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= an_loader_size(ld))
            return an_fail(AN_ERR_ARGUMENT, "image index %d is outside 0..%d", indices[i], an_loader_size(ld) - 1);
    return AN_OK;
}

/* What a run of rows computes for one batch: `b` images at px, the first
 * of them image i0 of the run, into b rows. `filled` (NULL: none): the
 * same for a batch the loader converts straight into the net's input
 * (an_loader_fills) on the CPU. */
typedef struct {
    an_status (*compute)(void *ctx, an_net *net, const float *px, int b, int i0, float *rows);
    an_status (*filled)(void *ctx, an_net *net, an_loader *ld, const int *indices, int b, float *rows);
    void *ctx;
} rows_job;

/* Batch [i0, i0 + b) straight into the net's input where the job and the
 * loader can (1 returned, its images all loaded), else 0. */
static int run_filled(an_loader *ld, an_net *net, const int *indices, int n, int i0, int b, const rows_job *job,
                      an_load_result *results, float *rows, an_status *st)
{
    if (!job->filled || an_net_device(net) != AN_DEVICE_CPU || !an_loader_fills(ld, indices + i0, b)) return 0;
    if (i0 > 0 && an_interrupt_pending()) {
        *st = an_fail(AN_ERR_INTERRUPTED, "interrupted after %d of %d images", i0, n);
        return 1;
    }
    for (int j = 0; j < b; j++) {   /* a copy cannot fail */
        results[i0 + j].status = AN_OK;
        results[i0 + j].width = results[i0 + j].height = an_net_input_size(net);
        results[i0 + j].message[0] = 0;
    }
    *st = job->filled(job->ctx, net, ld, indices + i0, b, rows);
    return 1;
}

/* A run whose every batch gives one row of `size` floats per image, written
 * into `out` (forward passes, Grad-CAM maps). */
static an_status rows_run(an_loader *ld, an_net *net, const int *indices, int n, int batch, size_t size,
                          int stop_on_failure, const an_rows_out *out, an_load_result *results, int *n_failed,
                          const rows_job *job)
{
    if (!out || (!out->data && !out->floats)) return an_fail(AN_ERR_ARGUMENT, "no output matrix");
    if (batch > n) batch = n;
    float *rows = malloc((size_t)batch * size * sizeof *rows);
    if (!rows) return an_fail(AN_ERR_MEMORY, "out of memory for a batch of %d outputs (%.0f MB)", batch,
                              batch * size * 4 / 1e6);
    an_status st = AN_OK;
    an_call held;
    an_call_enter(&held);
    for (int i0 = 0; i0 < n && st == AN_OK; i0 += batch) {
        const float *px;
        int b = n - i0 < batch ? n - i0 : batch, failed = 0;
        if (run_filled(ld, net, indices, n, i0, b, job, results, rows, &st)) {
            if (st != AN_OK) break;
        } else {
            if ((st = run_batch(ld, indices, n, i0, batch, &b, &px, results, &failed)) != AN_OK) break;
            *n_failed += failed;
            if ((st = job->compute(job->ctx, net, px, b, i0, rows)) != AN_OK) break;
        }
        write_rows(out, i0, b, size, rows, results + i0);
        if (failed && stop_on_failure) break;
    }
    an_call_leave(&held);
    free(rows);
    return st;
}

typedef struct { int until, stage, training_rows; } forward_job;

static an_status forward_batch(void *ctx, an_net *net, const float *px, int b, int i0, float *rows)
{
    (void)i0;
    const forward_job *f = ctx;
    /* training's rows come from training-mode ops, evaluation's from
     * inference's: each then matches what a pass over the images gives */
    return f->training_rows ? an_net_frozen_rows(net, px, b, f->until, rows)
                            : an_net_forward_from(net, f->stage, px, b, f->until, rows);
}

typedef struct {
    an_loader *ld;
    const int *indices;
    int count;
} fill_job;

static an_status fill_from_loader(void *ctx, const an_input_norm *norm, an_input_layout layout, void *input)
{
    const fill_job *f = ctx;
    return an_loader_fill(f->ld, f->indices, f->count, norm, layout, input);
}

static an_status forward_filled(void *ctx, an_net *net, an_loader *ld, const int *indices, int b, float *rows)
{
    const forward_job *f = ctx;
    fill_job fill = {ld, indices, b};
    return an_net_forward_filled(net, b, f->until, fill_from_loader, &fill, rows);
}

an_status an_loader_forward(an_loader *ld, an_net *net, const int *indices, int n, int until, int batch,
                            int stop_on_failure, const an_rows_out *out, an_load_result *results, int *n_failed)
{
    *n_failed = 0;
    an_status st = start_run(ld, net, indices, n, batch);
    if (st != AN_OK) return st;
    if (until < 0 || until >= AN_N_OUTPUTS) return an_fail(AN_ERR_ARGUMENT, "unknown output %d", until);
    if (out && out->training_rows && an_loader_stage(ld) != -1)
        return an_fail(AN_ERR_ARGUMENT, "training rows are made from images");
    forward_job f = {until, an_loader_stage(ld), out && out->training_rows};
    /* images (not rows) in inference mode can be converted into the input */
    rows_job job = {forward_batch, f.stage == -1 && !f.training_rows ? forward_filled : NULL, &f};
    return rows_run(ld, net, indices, n, batch, an_output_size(net, until), stop_on_failure, out, results,
                    n_failed, &job);
}

typedef struct { int layer; int *classes; const an_load_result *results; } gradcam_job;

static an_status gradcam_batch(void *ctx, an_net *net, const float *px, int b, int i0, float *rows)
{
    const gradcam_job *g = ctx;
    /* an image that failed is computed as the zeros it was given, then
     * reported missing */
    an_status st = an_net_gradcam(net, px, b, g->layer, g->classes + i0, rows);
    for (int j = 0; j < b && st == AN_OK; j++)
        if (g->results[i0 + j].status != AN_OK) g->classes[i0 + j] = -1;
    return st;
}

an_status an_loader_gradcam(an_loader *ld, an_net *net, const int *indices, int n, int layer, int *classes,
                            int batch, int stop_on_failure, const an_rows_out *out, an_load_result *results,
                            int *n_failed)
{
    *n_failed = 0;
    an_status st = start_run(ld, net, indices, n, batch);
    if (st != AN_OK) return st;
    if (an_loader_stage(ld) != -1) return an_fail(AN_ERR_ARGUMENT, "Grad-CAM needs images, not rows");
    if (layer < 0 || layer >= AN_N_OUTPUTS) return an_fail(AN_ERR_ARGUMENT, "unknown output %d", layer);
    an_output_info o = an_net_output(net, layer);
    gradcam_job g = {layer, classes, results};
    rows_job job = {gradcam_batch, NULL, &g};
    return rows_run(ld, net, indices, n, batch, (size_t)o.h * o.w, stop_on_failure, out, results, n_failed, &job);
}

an_status an_loader_evaluate(an_loader *ld, an_net *net, const int *indices, const int *labels, int n, int batch,
                             an_loss_kind loss, int stop_on_failure, double *loss_sum, int *correct, int *used,
                             an_load_result *results, int *n_failed)
{
    *n_failed = 0;
    *loss_sum = 0;
    *correct = 0;
    *used = 0;
    an_status st = start_run(ld, net, indices, n, batch);
    if (st != AN_OK) return st;
    if (!labels) return an_fail(AN_ERR_ARGUMENT, "evaluation needs labels");
    if (batch > n) batch = n;
    float *in = NULL;
    int *lab = malloc((size_t)batch * sizeof *lab);
    if (!lab) return an_fail(AN_ERR_MEMORY, "out of memory for %d labels", batch);
    an_call held;
    an_call_enter(&held);
    for (int i0 = 0; i0 < n && st == AN_OK; i0 += batch) {
        const float *px;
        int b, failed = 0;
        if ((st = run_batch(ld, indices, n, i0, batch, &b, &px, results, &failed)) != AN_OK) break;
        *n_failed += failed;
        if (failed && !in && !(in = malloc((size_t)batch * an_loader_item_floats(ld) * sizeof *in))) {
            st = an_fail(AN_ERR_MEMORY, "out of memory for a batch of %d images", batch);
            break;
        }
        const int *klab;
        int m;
        const float *x = kept_images(px, an_loader_item_floats(ld), results + i0, labels + i0, b, failed, in, lab,
                                     &klab, &m);
        if (m > 0) st = an_net_evaluate_from(net, an_loader_stage(ld), x, klab, m, loss, loss_sum, correct);
        *used += m;
        if (failed && stop_on_failure) break;
    }
    an_call_leave(&held);
    free(in);
    free(lab);
    return st;
}

an_status an_loader_train_step(an_loader *ld, an_net *net, const int *indices, const int *labels, int count,
                               uint64_t epoch, const int *next, int ncount, an_loss_kind loss, const an_sgd *opt,
                               const an_reducer *reducer, int row_offset, int global_rows, int stop_on_failure,
                               double *loss_sum, int *correct, int *used, an_load_result *results, int *n_failed)
{
    *n_failed = 0;
    *loss_sum = 0;
    *correct = 0;
    *used = 0;
    if (count == 0 && reducer)   /* a rank without rows in a small last batch still takes part */
        return an_net_train_step_shared(net, NULL, NULL, 0, row_offset, global_rows, loss, opt, reducer, loss_sum,
                                        correct);
    an_status st = start_run(ld, net, indices, count, count);   /* the next batch: an_loader_submit checks it */
    if (st != AN_OK) return st;
    if (!labels) return an_fail(AN_ERR_ARGUMENT, "training needs labels");
    if (reducer && an_loader_stage(ld) >= 0)
        return an_fail(AN_ERR_ARGUMENT, "ranks that share a batch train from images, not from frozen rows");
    an_call held;
    an_call_enter(&held);
    const float *px;
    float *in = NULL;
    int *lab = NULL;
    st = an_loader_fetch(ld, indices, count, epoch, next, ncount, epoch, &px, results, n_failed);
    if (st == AN_OK && *n_failed > 0) {
        in = malloc((size_t)count * an_loader_item_floats(ld) * sizeof *in);
        lab = malloc((size_t)count * sizeof *lab);
        if (!in || !lab) st = an_fail(AN_ERR_MEMORY, "out of memory for a batch of %d images", count);
    }
    if (st == AN_OK && !(*n_failed > 0 && stop_on_failure)) {
        const int *klab;
        int m;
        const float *x = kept_images(px, an_loader_item_floats(ld), results, labels, count, *n_failed, in, lab, &klab,
                                     &m);
        if (reducer)
            st = an_net_train_step_shared(net, m ? x : NULL, m ? klab : NULL, m, row_offset, global_rows, loss, opt,
                                          reducer, loss_sum, correct);
        else if (m > 0)
            st = an_net_train_step_from(net, an_loader_stage(ld), x, klab, m, loss, opt, loss_sum, correct);
        *used = m;
    }
    an_call_leave(&held);
    free(in);
    free(lab);
    return st;
}

/* A block for n rows of `width` floats, kept as `store` says; *mapped is
 * its bytes when a file holds it, else 0 (malloc'd). */
static an_status rows_block(const an_net *net, int at, int n, size_t width, const an_rows_store *store,
                            float **rows, size_t *mapped)
{
    *rows = NULL;
    *mapped = 0;
    size_t bytes = (size_t)n * width * sizeof(float);
    /* with overcommit a malloc that succeeds is no promise: rows that would
     * crowd out the rest are not kept in memory */
    double room = an_host_memory_room();
    double limit = store && store->memory_bytes >= 0 ? store->memory_bytes : 0.5 * room;
    if ((double)bytes <= limit && (*rows = malloc(bytes ? bytes : 1))) return AN_OK;
    char what[96];
    snprintf(what, sizeof what, "output of %s for %d images", an_output_name(an_net_arch(net), at), n);
    if (store && store->spill_dir) {
        an_status st = an_map_temp_file(store->spill_dir, bytes, what, (void **)rows);
        if (st == AN_OK) *mapped = bytes;
        return st;
    }
    if (store && store->memory_bytes >= 0)
        return an_fail(AN_ERR_MEMORY, "the %s takes %.2f GB, more than the %.2f GB of memory it may take", what,
                       bytes / 1e9, limit / 1e9);
    return an_fail(AN_ERR_MEMORY, "the %s takes %.1f GB, more than half the %.1f GB of memory available", what,
                   bytes / 1e9, room / 1e9);
}

an_status an_loader_freeze(an_loader *ld, an_net *net, int at, int batch, int training, int stop_on_failure,
                           const an_rows_store *store, an_load_result *results, int *n_failed, an_loader **out)
{
    *out = NULL;
    *n_failed = 0;
    if (!ld || !net) return an_fail(AN_ERR_ARGUMENT, "an_loader_freeze: no loader or net");
    if (an_loader_stage(ld) != -1) return an_fail(AN_ERR_ARGUMENT, "the loader's images are already rows");
    an_status st = at < 0 ? an_fail(AN_ERR_ARGUMENT, "rows are the output of a step, not the images") : an_start_check(at);
    if (st != AN_OK) return st;
    int n = an_loader_size(ld);
    size_t width = an_output_size(net, at), mapped = 0;
    float *rows = NULL;
    if ((st = rows_block(net, at, n, width, store, &rows, &mapped)) != AN_OK) return st;
    int *indices = malloc((size_t)n * sizeof *indices);
    an_load_result *kept = malloc((size_t)n * sizeof *kept);
    if (!indices || !kept) {
        st = an_fail(AN_ERR_MEMORY, "out of memory for the frozen layers' output of %d images", n);
    } else {
        for (int i = 0; i < n; i++) indices[i] = i;
        an_rows_out o = {NULL, 0, 0, 0, rows, training};
        st = an_loader_forward(ld, net, indices, n, at, batch, stop_on_failure, &o, results, n_failed);
    }
    free(indices);
    if (st != AN_OK || (*n_failed && stop_on_failure)) {
        if (mapped) munmap(rows, mapped);
        else free(rows);
        free(kept);
        return st;
    }
    memcpy(kept, results, (size_t)n * sizeof *kept);
    return an_loader_create_rows(rows, mapped, kept, n, width, at, out);
}
