/* fuzz_jpeg.c: libFuzzer harness for the JPEG path (jpeg.c, augment.c, loader.c).
 *
 * Each input is a JPEG file's contents. It goes through an_image_load_memory
 * (decode at the chosen DCT scale, resize or crop, augmentation, sampling)
 * with options picked from a hash of the input, so that one corpus explores
 * strict and lenient decoding, both resize modes, odd output sizes, DCT
 * scaling on and off and every augmentation path (axis-aligned and general
 * affine, flips, extreme zooms) while every input always runs the same way.
 * The same bytes are also written to a file in /dev/shm for the file entry
 * points (an_jpeg_read_info, an_jpeg_read_rgb), which use their own source.
 *
 * Besides the sanitizers' checks, the harness traps when a promise of
 * images.h is broken: a success must give finite pixels in 0..255 and the
 * declared size; a failure must give an all-zero image and a message that
 * names the file. Images are limited to 2 megapixels (the library's limit
 * is 100) so that a lenient decode of a few bytes claiming a large image
 * stays fast; the limit itself is tested by tests/engine/test_images.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "images.h"

#define FUZZ_MAX_MEGAPIXELS 2.0
#define NAME "fuzz-input.jpg"

static const int SIZES[4] = {AN_INPUT_SIZE, 61, 8, 1};
#define MAX_SIZE AN_INPUT_SIZE

static an_image_scratch scratch;   /* reused across inputs, as a loader worker does */
static float pixels[3 * MAX_SIZE * MAX_SIZE];
static char tmp_path[96];

static void broken(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_jpeg: broken promise: %s (%s)\n", what, detail ? detail : "");
    __builtin_trap();
}

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* one file per process: fork mode runs several at once */
    snprintf(tmp_path, sizeof tmp_path, "/dev/shm/an_fuzz_jpeg_%ld.jpg", (long)getpid());
    return 0;
}

static void set_augment(an_augment *a, int kind)
{
    an_augment_init(a);
    switch (kind) {
    case 1:   /* the package's default augment(): shear, zoom, horizontal flip */
        an_augment_keras(a, 0.2, 0.2, 1);
        break;
    case 2:   /* everything: the general affine sampler */
        a->rotation_range = 180;
        a->width_shift_range = a->height_shift_range = 1;
        a->shear_range = 1.5;
        a->zoom_lo = 0.5;
        a->zoom_hi = 2;
        a->horizontal_flip = a->vertical_flip = 1;
        break;
    case 3:   /* the extreme zooms allowed: huge magnification or reduction */
        a->zoom_lo = 0.0101;
        a->zoom_hi = 100;
        a->vertical_flip = 1;
        break;
    default:
        break;
    }
}

static void check_load(an_status st, int size, int width, int height, int info_ok,
                       const an_jpeg_info *info)
{
    size_t n = (size_t)3 * size * size;
    if (st == AN_OK) {
        for (size_t i = 0; i < n; i++)
            if (!(pixels[i] >= -1e-3f && pixels[i] <= 255.001f)) {
                char d[64];
                snprintf(d, sizeof d, "pixel %zu is %g", i, (double)pixels[i]);
                broken("a loaded pixel outside 0..255", d);
            }
        if (width < 1 || height < 1) broken("loaded without a declared size", NULL);
        if (info_ok && (info->width != width || info->height != height))
            broken("an_jpeg_read_info and an_image_load disagree on the size", NULL);
    } else {
        for (size_t i = 0; i < n; i++)
            if (pixels[i] != 0) broken("a failed load left pixels behind", an_error_message());
        if (!strstr(an_error_message(), NAME)) broken("the message does not name the file", an_error_message());
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t h = fnv1a(data, size);

    /* the file entry points, on the same bytes */
    int info_ok = 0;
    an_jpeg_info info;
    FILE *f = fopen(tmp_path, "wb");
    if (f) {
        int written = fwrite(data, 1, size, f) == size;
        if (fclose(f) == 0 && written) {
            info_ok = an_jpeg_read_info(tmp_path, &info) == AN_OK;
            if (!info_ok && !strstr(an_error_message(), tmp_path))
                broken("an_jpeg_read_info's message does not name the file", an_error_message());
            if ((h >> 14 & 3) == 0) {   /* a full-size decode for a quarter of the inputs */
                uint8_t *rgb = NULL;
                int w = 0, hh = 0;
                an_status st = an_jpeg_read_rgb(tmp_path, FUZZ_MAX_MEGAPIXELS, &rgb, &w, &hh);
                if (st == AN_OK && (!rgb || w < 1 || hh < 1)) broken("an_jpeg_read_rgb: OK without pixels", NULL);
                if (st != AN_OK && rgb) broken("an_jpeg_read_rgb: pixels left after a failure", NULL);
                if (st == AN_OK && info_ok && (w != info.width || hh != info.height))
                    broken("an_jpeg_read_rgb and an_jpeg_read_info disagree on the size", NULL);
                free(rgb);
            }
        }
        remove(tmp_path);
    }

    an_image_options opt;
    an_image_options_init(&opt);
    opt.size = SIZES[h & 3];
    opt.resize_mode = (h >> 2 & 1) ? AN_RESIZE_CROP : AN_RESIZE_STRETCH;
    opt.resize_short = opt.size + (int)(h >> 3 & 63);
    opt.dct_scaling = (h >> 9 & 3) != 0;
    opt.lenient = h >> 11 & 1;
    opt.max_megapixels = FUZZ_MAX_MEGAPIXELS;
    an_augment aug;
    set_augment(&aug, h >> 12 & 3);
    char warning[512];
    int width = -1, height = -1;
    an_status st = an_image_load_memory(&scratch, NAME, data, size, &opt, &aug, h, h >> 16, h >> 8,
                                        pixels, &width, &height, warning, sizeof warning);
    check_load(st, opt.size, width, height, info_ok, &info);
    if (st == AN_OK && warning[0] && !opt.lenient) broken("a warning kept while strict", warning);
    return 0;
}
