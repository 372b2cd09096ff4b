/* images.h: JPEG files into the net's input (jpeg.c, augment.c, loader.c).
 *
 * Plain C, no R. Every file is decoded by libjpeg straight to RGB (greyscale
 * becomes R = G = B; CMYK and YCCK are converted, Adobe's inverted CMYK
 * included), at the smallest DCT scale (1/8, 1/4, 1/2 or 1) that still
 * gives at least one decoded pixel per output pixel, then resized (and
 * augmented) into 3 x size x size floats, RGB 0..255, planar (channels
 * first). The mean is NOT subtracted: the net does that itself. Paths are
 * UTF-8 byte strings (on Windows opened through the wide-character API).
 *
 * Resize, centre crop and augmentation are composed into one affine map from
 * output pixel to source pixel, sampled bilinearly once (half-pixel centres,
 * as PIL and torch do), after a k x k box average where the image is k >= 2
 * times too large. Without augmentation this is an_resample_float, the
 * resize of arrays too: the same pixels give the same input by every route. Keras' ImageDataGenerator samples its transform with
 * nearest neighbour (order = 0); bilinear is a deliberate quality choice.
 *
 * Errors: every failure returns an an_status and a message that names the
 * file (an_error_message(), or an_load_result.message in the loader). No
 * function here prints, exits or aborts; libjpeg's error_exit is replaced by
 * a setjmp/longjmp manager and its messages are captured, never printed.
 */
#ifndef AN_IMAGES_H
#define AN_IMAGES_H

#include <stddef.h>
#include <stdint.h>
#include "alexnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A worker's reusable buffers (defined with the decoding functions below). */
typedef struct an_image_scratch an_image_scratch;

/* ---- options ------------------------------------------------------------ */

typedef enum {
    AN_RESIZE_STRETCH = 0,  /* the whole image to size x size (aspect not kept) */
    AN_RESIZE_CROP = 1      /* short side to `resize_short`, then the centre
                               size x size (torchvision Resize + CenterCrop:
                               long side int(short * long / short), crop
                               offset round-half-even((n - size) / 2)) */
} an_resize_mode;

typedef struct {
    int size;                   /* output side: AN_INPUT_SIZE (227) */
    an_resize_mode resize_mode; /* AN_RESIZE_STRETCH */
    int resize_short;           /* AN_RESIZE_CROP only: 256 (must be >= size) */
    double max_megapixels;      /* 100 (0 also means 100): larger declared
                                   images are refused before anything is
                                   allocated */
    int dct_scaling;            /* 0 (default): decode at full size, so a file
                                   gives exactly what an array of its decoded
                                   pixels gives; 1: decode at libjpeg's 1/8,
                                   1/4 or 1/2 scale when that is still large
                                   enough (several times faster for photos 4x
                                   or more the output; slightly other pixels) */
    int lenient;                /* 0: libjpeg's "Corrupt JPEG data" warnings and a
                                   premature end of file are errors; 1: such
                                   images are kept as libjpeg decodes them (the
                                   missing part grey), the warning goes to the
                                   message with status AN_OK. Harmless warnings
                                   (extraneous bytes before a marker, unknown
                                   JFIF revision, ...) never fail an image. */
} an_image_options;

void an_image_options_init(an_image_options *opt);

/* Keras 1 ImageDataGenerator's random transform, drawn per image. In Keras'
 * (row, column) coordinates about the image centre, output pixel o is taken
 * from input  centre + R(theta) (Sh(s) Z o + t),  with
 *   R = [[cos, -sin], [sin, cos]], theta ~ U(-rotation_range, +) degrees;
 *   t = (height_shift * size, width_shift * size), each ~ U(-range, range);
 *   Sh = [[1, -sin s], [0, cos s]], s ~ U(-shear_range, shear_range) radians;
 *   Z = diag(zx, zy), zx, zy ~ U(zoom_lo, zoom_hi) independently (zx scales
 *       rows): a zoom above 1 samples a larger part of the image (zooms
 *       out), below 1 magnifies, exactly as in Keras;
 * fill_mode 'nearest': points outside the (resized or cropped) image take
 * the nearest edge pixel. Then a horizontal (vertical) flip of the output
 * with probability 0.5 each. Keras' zoom_range = z means (1 - z, 1 + z).
 * Two deliberate differences: the centre is the image's true centre (Keras 1
 * uses pixel index h/2 + 0.5, a pixel off), and sampling is bilinear. */
typedef struct {
    double rotation_range;      /* degrees */
    double width_shift_range;   /* fraction of the output width */
    double height_shift_range;  /* fraction of the output height */
    double shear_range;         /* radians */
    double zoom_lo, zoom_hi;    /* (1, 1): no zoom */
    int horizontal_flip, vertical_flip;
} an_augment;

/* No augmentation: all ranges 0, zoom (1, 1), no flips. */
void an_augment_init(an_augment *aug);
/* Keras' augment(shear, zoom, flip): shear_range = shear, zoom (1-z, 1+z),
 * horizontal_flip = flip; everything else off. */
void an_augment_keras(an_augment *aug, double shear, double zoom, int horizontal_flip);
an_status an_augment_check(const an_augment *aug);

/* One image's drawn parameters. */
typedef struct {
    double theta;       /* radians */
    double height_shift, width_shift;  /* fractions of the output (Keras' tx, ty) */
    double shear;       /* radians */
    double zx, zy;
    int hflip, vflip;
} an_transform;

/* The transform for image `index` of epoch `epoch`: drawn from a generator
 * seeded by (seed, epoch, index) alone, so it does not depend on threads or
 * on the order of decoding. Eight uniforms are always drawn, in Keras' order
 * (rotation, height shift, width shift, shear, zx, zy, hflip, vflip), so
 * turning one option on does not change the others' draws. aug = NULL gives
 * the identity. */
void an_augment_draw(const an_augment *aug, uint64_t seed, uint64_t epoch, uint64_t index,
                     an_transform *t);

/* ---- one file ------------------------------------------------------------ */

typedef struct {
    int width, height;      /* as declared in the file */
    int components;         /* 1 (grey), 3 (YCbCr / RGB) or 4 (CMYK / YCCK) */
    int progressive;        /* 1 for progressive (or multi-scan) files */
    int adobe;              /* 1 when an Adobe APP14 marker is present */
    const char *color_space;/* "grey", "YCbCr", "RGB", "CMYK", "YCCK" or "unknown" */
} an_jpeg_info;

/* The header only: no pixels decoded. */
an_status an_jpeg_read_info(const char *path, an_jpeg_info *info);

/* The whole image at its native size, RGB interleaved (h x w x 3 bytes),
 * decoded exactly as libjpeg's defaults do (accurate integer IDCT, fancy
 * upsampling), i.e. as PIL does. *rgb comes from malloc(): free() it.
 * max_megapixels <= 0 means the default (100). */
an_status an_jpeg_read_rgb(const char *path, double max_megapixels, uint8_t **rgb,
                           int *width, int *height);

/* Decode, resize (and augment) one file into dst (3 x size x size floats).
 * aug = NULL: no augmentation (seed, epoch, index unused). *width and
 * *height (may be NULL) get the file's declared size. On failure dst is
 * filled with zeros. opt = NULL: an_image_options_init's defaults. */
an_status an_image_load(const char *path, const an_image_options *opt, const an_augment *aug,
                        uint64_t seed, uint64_t epoch, uint64_t index, float *dst,
                        int *width, int *height);

/* ---- the loader ------------------------------------------------------------
 * Batches decoded by a pool of worker threads (pthreads, not OpenMP) while
 * the caller computes: submit batch k + 1, wait for batch k, compute it.
 * Two batches may be outstanding (submitted and not yet waited for). Batch
 * slot j of a batch is image indices[j] of the path list; its transform is
 * drawn from (seed, epoch, indices[j]), so the pixels do not depend on the
 * number of threads or on scheduling. A bad file never stops the other
 * images: each image has its own an_load_result. */

typedef enum {
    AN_ON_ERROR_STOP = 0,   /* an_loader_wait returns the first failure's status */
    AN_ON_ERROR_SKIP = 1    /* an_loader_wait returns AN_OK; failures are only reported */
} an_error_policy;

typedef struct {
    an_image_options image;
    int augment_on;         /* 0: `augment` is ignored */
    an_augment augment;
    uint64_t seed;
    int threads;            /* worker threads: 2 (0 means the default) */
    an_error_policy on_error;
    int keep_bytes;         /* arrays read in any order (training): see an_pixels_pack */
} an_loader_options;

void an_loader_options_init(an_loader_options *opt);

typedef struct {
    an_status status;       /* AN_OK, AN_ERR_IO (missing, unreadable), AN_ERR_FORMAT
                               (not a JPEG, corrupt, truncated), AN_ERR_MEMORY
                               (declared too large), ... */
    int width, height;      /* declared size, 0 when the header was not read */
    char message[512];      /* names the file; empty when the image is fine,
                               libjpeg's warning when kept by `lenient` */
} an_load_result;

/* A loader is driven from one thread at a time (its workers are its own). */
typedef struct an_loader an_loader;

/* paths are copied. Threads start here and wait for work. */
an_status an_loader_create(const char *const *paths, int n_paths, const an_loader_options *opt,
                           an_loader **out);
/* Joins every thread (an image being decoded is finished first; queued
 * images are dropped) and frees everything. NULL is fine. */
void an_loader_free(an_loader *loader);

int an_loader_size(const an_loader *loader);     /* number of paths */
const char *an_loader_path(const an_loader *loader, int index);

/* Queue a batch of `count` images (indices into the path list, repeats
 * allowed). Returns at once. AN_ERR_ARGUMENT when two batches are already
 * outstanding or an index is out of range. */
an_status an_loader_submit(an_loader *loader, const int *indices, int count, uint64_t epoch);

/* Wait for the oldest outstanding batch and copy it to dst (count x 3 x size
 * x size floats; a failed image is all zeros) and its per-image results to
 * `results` (count entries; NULL to ignore). With AN_ON_ERROR_STOP the
 * first failed image's status is returned (its message in
 * an_error_message()); with AN_ON_ERROR_SKIP, AN_OK. *n_failed (may be NULL)
 * gets the number of failed images either way. The batch is complete and
 * its slot free in every case. AN_ERR_ARGUMENT when nothing is outstanding. */
an_status an_loader_wait(an_loader *loader, float *dst, an_load_result *results, int *n_failed);

/* an_loader_wait without the copy: *pixels points at the batch inside the
 * loader, valid until the next an_loader_submit (which may reuse that
 * memory). The usual loop submits k + 1 before waiting for k and computes
 * k before submitting k + 2, so it can hand *pixels straight to the net. */
an_status an_loader_wait_buffer(an_loader *loader, const float **pixels, an_load_result *results,
                                int *n_failed);

/* ---- pixels in memory as a loader's images --------------------------------- */

typedef enum { AN_PIXELS_F64 = 0, AN_PIXELS_I32 = 1 } an_pixel_type;

/* n images of h x w pixels with 1 (grey) or 3 (RGB) channels, values
 * 0..255, anywhere in memory: pixel (i, y, x, c) is element
 * i * si + y * sy + x * sx + c * sc of `data` (R's c(n, h, w, channels)
 * array: si 1, sy n, sx n h, sc n h w). The caller keeps the data alive and
 * unchanged for the loader's life. */
typedef struct {
    const void *data;
    an_pixel_type type;
    int n, h, w, channels;
    ptrdiff_t si, sy, sx, sc;
} an_pixel_array;

/* What a dense array's values are (its n h w channels values from data
 * on), read once in parallel: the offset (memory order) of the first
 * missing (NA) or infinite one, -1 when all are finite; then (meaningful
 * only when all are) the smallest and the largest. */
typedef struct {
    ptrdiff_t first_nonfinite;
    double min, max;
} an_pixel_summary;
void an_pixels_summary(const an_pixel_array *a, an_pixel_summary *summary);

/* The range of values a conversion read, counted as it reads them (a
 * caller that converts every image needs no an_pixels_summary pass):
 * nonfinite when one was missing (NA, NaN) or infinite; min and max of
 * the others. */
typedef struct {
    double min, max;
    int nonfinite;
} an_pixel_range;
void an_pixel_range_init(an_pixel_range *r);
void an_pixel_range_merge(an_pixel_range *into, const an_pixel_range *r);

/* The images of a square array already of the net's input size (227, or
 * torchvision's 224) convert in blocks of 16 columns by a quarter of the
 * rows of every image of a batch (for planes, of one channel; for pixels,
 * of all three, whose values are adjacent there); a loader's workers share
 * them out (60 blocks of pixels: the two threads finish together). */
enum { AN_PIXEL_BLOCK_WIDTH = 16, AN_PIXEL_BLOCK_BANDS = 4 };
/* the column blocks of an image `side` pixels wide */
static inline int an_pixel_column_blocks(int side)
{
    return (side + AN_PIXEL_BLOCK_WIDTH - 1) / AN_PIXEL_BLOCK_WIDTH;
}
/* the blocks of an image `side` pixels wide in a layout */
static inline int an_pixel_blocks(int side, an_input_layout layout)
{
    return (layout == AN_INPUT_PLANES ? 3 : 1) * an_pixel_column_blocks(side) * AN_PIXEL_BLOCK_BANDS;
}

/* Block `block` of images first..first+count-1 of a square array into dst,
 * count images of the net's input of the array's size in `layout`; the
 * values read are counted into range (NULL: not counted). With norm, the
 * values written are the net's preprocessed input, (x - mean) * scale per
 * channel, bit for bit as an_preprocess makes them (and, in bf16, as a
 * convolution then rounds them); NULL: the pixels. */
void an_pixels_convert_block(const an_pixel_array *a, int first, int count, int block, an_input_layout layout,
                             void *dst, an_pixel_range *range, const an_input_norm *norm);

/* The images of a square array as bytes in the net's input layout (image
 * i at i * 3 * h * w), made once, when every value is a whole number
 * 0..255; NULL otherwise or without the memory. A shuffled batch then
 * reads 155 KB per image, not a value from each of 155,000 cache lines
 * spread over the array (R keeps one pixel of every image together). */
uint8_t *an_pixels_pack(const an_pixel_array *a);

/* Image `index` as the net's input (opt->size, NULL: 227): a copy where
 * the image is already that size, else resized as a JPEG file of the same
 * pixels is (an_resample_float). s: the caller's scratch (NULL: its own). */
an_status an_pixels_convert_one(const an_pixel_array *a, int index, an_image_scratch *s, const an_image_options *opt,
                                float *dst, an_pixel_range *range);

/* A loader whose images are the array's, made opt->image.size square (the
 * net's input: 227, or torchvision's 224; augmentation and the JPEG options
 * do not apply). Its workers convert each batch into the net's input: a
 * direct copy where the images are already 227 x 227 for 227 (a batch of
 * consecutive images in blocks of every image, shared by the workers),
 * an_resample_float otherwise. */
an_status an_loader_create_array(const an_pixel_array *pixels, const an_loader_options *opt,
                                 an_loader **out);
/* The range of every array value the loader's workers have converted so
 * far (an_pixel_range): a run over all the images checks them on the way
 * instead of in a pass of its own. AN_ERR_ARGUMENT for a loader of JPEG
 * files, of rows, or of an array kept as bytes (keep_bytes). */
an_status an_loader_pixel_range(an_loader *loader, an_pixel_range *range);

/* Whether a batch of consecutive images of an array already of the input's
 * size is converted by the caller, split over the engine's threads, when it
 * is fetched (on) or by the workers ahead of time (off, the default). The
 * batch runs (batches.c) turn it on for a net that computes on the CPU:
 * there its threads take every core, so converting beside them only takes
 * turns with them (measured on 2 cores: no faster than converting in
 * between, while the waiting threads spin). A GPU computes while the
 * workers convert. */
void an_loader_convert_inline(an_loader *loader, int on);

/* A batch that the caller's threads can convert straight into the net's
 * input: consecutive images (count >= 2) of an array already of the
 * input's size, not kept as bytes. an_loader_fill converts it into
 * `input` (in `layout`), preprocessed by norm, counting its
 * range as the workers do: a forward on the CPU then reads no copy. */
int an_loader_fills(const an_loader *loader, const int *indices, int count);
an_status an_loader_fill(an_loader *loader, const int *indices, int count, const an_input_norm *norm,
                         an_input_layout layout, void *input);

/* Batch (indices, count, epoch) as the net's input, with batch `next`
 * (ncount images, NULL for none) submitted behind it so that it is prepared
 * while the caller computes: reuses the batch already submitted when it is
 * the one asked for, drops any other. *pixels is inside the loader, valid
 * until the next fetch or submission. Returns AN_ERR_INTERRUPTED when an
 * interrupt (SIGINT) is pending while it waits (it is left pending). */
an_status an_loader_fetch(an_loader *loader, const int *indices, int count, uint64_t epoch,
                          const int *next, int ncount, uint64_t next_epoch, const float **pixels,
                          an_load_result *results, int *n_failed);

/* ---- frozen layers computed once ----------------------------------------------
 * A loader whose items are the rows of a frozen prefix's output (step
 * `stage`) instead of images: forward, evaluation and training over it run
 * the net from step stage + 1 (an_net_*_from), so layers below a frozen one
 * are computed once per image instead of once per epoch. */
int an_loader_stage(const an_loader *loader);          /* -1: images */
size_t an_loader_item_floats(const an_loader *loader); /* floats per image or row */
/* rows (n x width; malloc'd, or a file mapping of mapped_bytes, an_map_temp_file)
 * and results (n, may be NULL: all fine) are taken over */
an_status an_loader_create_rows(float *rows, size_t mapped_bytes, an_load_result *results, int n, size_t width,
                                int stage, an_loader **out);
/* bytes of a rows loader's rows that a file holds (0: in memory, or images) */
size_t an_loader_rows_on_disk(const an_loader *loader);
/* Where frozen rows are kept: in memory up to `memory_bytes` (< 0: half of
 * what the process can still take, an_host_memory_room); beyond that in a
 * file of folder `spill_dir` (an_map_temp_file: the kernel pages it), or,
 * with spill_dir NULL, nowhere: the freeze is then a memory error. */
typedef struct {
    double memory_bytes;
    const char *spill_dir;
} an_rows_store;
/* Step `at`'s output for every image of `images` (an_net_frozen_rows for
 * training, an_net_forward for evaluation; batches of `batch`) as a rows
 * loader, kept as `store` says (NULL: in memory up to half the room, no
 * file). results (one per image) and *n_failed report images that did not
 * load: their rows are zeros and fail again when fetched. With
 * stop_on_failure, a failure ends it (AN_OK, *out NULL, *n_failed > 0). */
an_status an_loader_freeze(an_loader *images, an_net *net, int at, int batch, int training,
                           int stop_on_failure, const an_rows_store *store, an_load_result *results,
                           int *n_failed, an_loader **out);

/* ---- the batch path: whole runs over a loader (batches.c) --------------------- */

/* Where a run's outputs go: row i (the i-th image asked for), column k at
 * data[i * row_stride + k * col_stride]; rows of images that failed to load
 * are `missing` (R's NA, say). */
typedef struct {
    double *data;
    ptrdiff_t row_stride, col_stride;
    double missing;
    /* instead of data: floats, row-major (row i at floats + i * size),
     * failed rows zero; training_rows: computed as training computes them
     * (an_net_frozen_rows) */
    float *floats;
    int training_rows;
} an_rows_out;

/* Output `until` of images indices[0..n) in batches of `batch`, each batch
 * prepared while the one before computes. results (n) says which images
 * failed (their rows are `missing`); with stop_on_failure the run ends
 * after the first batch with a failure (AN_OK, *n_failed > 0). */
an_status an_loader_forward(an_loader *loader, an_net *net, const int *indices, int n, int until,
                            int batch, int stop_on_failure, const an_rows_out *out,
                            an_load_result *results, int *n_failed);

/* Grad-CAM maps (an_net_gradcam) of step `layer` for images indices[0..n),
 * one row of h x w values each; classes[i]: the class for indices[i] or -1
 * for the predicted one, set to the class used (-1 where the image failed,
 * its row `missing`). */
an_status an_loader_gradcam(an_loader *loader, an_net *net, const int *indices, int n, int layer, int *classes,
                            int batch, int stop_on_failure, const an_rows_out *out, an_load_result *results,
                            int *n_failed);

/* Loss sum, correct count and images used over indices[0..n) (labels[i] for
 * indices[i]) in inference mode; images that fail are left out. */
an_status an_loader_evaluate(an_loader *loader, an_net *net, const int *indices, const int *labels,
                             int n, int batch, an_loss_kind loss, int stop_on_failure,
                             double *loss_sum, int *correct, int *used, an_load_result *results,
                             int *n_failed);

/* One SGD step on batch (indices, count) of `epoch`, batch `next` prepared
 * behind it; images that fail are left out of the step. With a reducer
 * (NULL: one process) this process's images are rows row_offset.. of a
 * global batch of global_rows, and the step is taken even without images. */
an_status an_loader_train_step(an_loader *loader, an_net *net, const int *indices, const int *labels,
                               int count, uint64_t epoch, const int *next, int ncount, an_loss_kind loss,
                               const an_sgd *opt, const an_reducer *reducer, int row_offset,
                               int global_rows, int stop_on_failure, double *loss_sum, int *correct,
                               int *used, an_load_result *results, int *n_failed);

/* Wait at most timeout_ms for the oldest outstanding batch: 1 when it is
 * complete (an_loader_wait will not block), 0 when not yet, -1 when nothing
 * is outstanding. Lets a caller check for a user interrupt while it waits. */
int an_loader_poll(an_loader *loader, int timeout_ms);

/* ---- inside the engine (shared by jpeg.c, augment.c, loader.c) ------------ */

/* Reusable per-thread memory: the file's bytes, the decoded pixels, taps. */
struct an_image_scratch {
    uint8_t *file;  size_t file_cap;
    uint8_t *rgb;   size_t rgb_cap;
    uint8_t *row;   size_t row_cap;
    void *taps;     size_t taps_cap;
    float *pix;     size_t pix_cap;     /* floats: a box-reduced or converted image */
};

void an_image_scratch_free(an_image_scratch *s);
/* s->pix with room for `count` floats (grown as needed), or NULL */
float *an_scratch_floats(an_image_scratch *s, size_t count);

/* Chooses libjpeg's scale numerator M (denominator 8) from the declared
 * size; NULL means full size (8). */
typedef int (*an_scale_choice)(void *ctx, int width, int height);

typedef struct {
    int width, height;      /* declared */
    int out_w, out_h;       /* decoded (after DCT scaling) */
    int scale_num;          /* M of M/8 */
    uint8_t *rgb;           /* out_h x out_w x 3 in the scratch */
    char warning[200];      /* a kept libjpeg warning, "" if none */
} an_decoded;

/* Read the file into s->file and decode it to RGB at the chosen scale into
 * s->rgb (with 16 bytes of slack after the last pixel). */
an_status an_jpeg_decode_scaled(an_image_scratch *s, const char *path, double max_megapixels,
                                int lenient, an_scale_choice choose, void *ctx, an_decoded *out);

/* The same from `size` bytes in memory (a JPEG file's contents, e.g. from
 * an archive or a fuzzer); `name` stands for the file in messages (NULL:
 * "<memory>"). data is only read, never kept. */
an_status an_jpeg_decode_scaled_memory(an_image_scratch *s, const char *name, const uint8_t *data,
                                       size_t size, double max_megapixels, int lenient,
                                       an_scale_choice choose, void *ctx, an_decoded *out);

/* The map from output pixel to source pixel for one image. Crop space is
 * always clamped to [0.5, size - 0.5] (fill_mode 'nearest'). */
typedef struct {
    int size;
    double g[2][3];         /* output (x, y) centre -> crop-space (x, y): g[r][0]x + g[r][1]y + g[r][2] */
    int axis_aligned;       /* g[0][1] == g[1][0] == 0: separable sampling */
    double qx, ox, qy, oy;  /* crop space -> original: x_orig = x * qx + ox */
    int hflip, vflip;
} an_geometry;

an_status an_geometry_build(const an_image_options *opt, const an_transform *t, int width,
                            int height, an_geometry *g);
/* libjpeg's M for this geometry: the smallest M in {1, 2, 4, 8} with
 * M/8 * (smallest singular value of d(original)/d(output)) >= 1, i.e. at
 * least one decoded pixel per output pixel in every direction. */
int an_geometry_scale_num(const an_geometry *g);
/* Sample the decoded image (RGB interleaved, w x h, scale M/8 of the
 * original) into dst (3 x size x size). rgb must have 8 readable bytes past
 * its last pixel (an_jpeg_decode_scaled leaves 16). May overwrite rgb (an
 * in-place box reduction when the decoded image is still 2x or more too
 * large). */
an_status an_geometry_sample(const an_geometry *g, an_image_scratch *s, uint8_t *rgb, int w,
                             int h, int scale_num, float *dst);

/* The resize every route shares (files without augmentation, arrays):
 * rgb is h x w x 3 interleaved floats (overwritten), resized to the
 * options' size as a decoded file of those pixels would be: where the image
 * is 2x or more larger, first averaged over k x k boxes (k the whole part
 * of the reduction, so no detail is skipped), then sampled bilinearly.
 * opt = NULL: an_image_options_init's (stretch to 227). */
an_status an_resample_float(an_image_scratch *s, float *rgb, int w, int h,
                            const an_image_options *opt, float *dst);

/* an_image_load with the caller's scratch; a libjpeg warning kept by
 * `lenient` goes to `warning`. */
an_status an_image_load_scratch(an_image_scratch *s, const char *path, const an_image_options *opt,
                                const an_augment *aug, uint64_t seed, uint64_t epoch,
                                uint64_t index, float *dst, int *width, int *height,
                                char *warning, size_t warning_size);
/* The same from a JPEG file's contents in memory (see
 * an_jpeg_decode_scaled_memory); `name` names it in messages. */
an_status an_image_load_memory(an_image_scratch *s, const char *name, const uint8_t *data,
                               size_t size, const an_image_options *opt, const an_augment *aug,
                               uint64_t seed, uint64_t epoch, uint64_t index, float *dst,
                               int *width, int *height, char *warning, size_t warning_size);

#ifdef __cplusplus
}
#endif
#endif
