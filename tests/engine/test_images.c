/* test_images.c: JPEG decoding, resize, augmentation and the loader
 * (src/engine/images.h). Usage: test_images [FIXTURE_DIR]. One line per
 * check, then "N passed, M failed"; exit status 1 on any failure.
 *
 * Test JPEGs are written here with libjpeg's compressor into a temporary
 * directory (RGB, greyscale, progressive, CMYK, YCCK, a 4000 x 3000 photo
 * for DCT scaling, and bad files). References: this file's own libjpeg
 * decode at full size and its own double-precision bilinear resize; PIL's
 * decode of the committed tiny JPEGs in FIXTURE_DIR/images
 * (make_image_fixtures.py).
 *
 * AN_IMAGES_QUICK=1 leaves out the 4000 x 3000 image (for valgrind). Race
 * and memory checks, run by hand:
 *   make -C tests/engine build/test_images CFLAGS='-O1 -g -std=gnu11 -fsanitize=thread'
 *   make -C tests/engine build/test_images CFLAGS='-O1 -g -std=gnu11 -fsanitize=address,undefined'
 *   AN_IMAGES_QUICK=1 valgrind --tool=helgrind build/test_images fixtures
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <jpeglib.h>

#include "alexnet.h"
#include "images.h"
#include "ops.h"

static int n_pass, n_fail;
static const char *fixture_dir = "fixtures";
static char tmpdir[256];
static int quick;

static void result(const char *name, int ok, const char *fmt, ...)
{
    char note[600] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(note, sizeof note, fmt, ap);
        va_end(ap);
    }
    printf("%-44s %s%s%s\n", name, ok ? "PASS" : "FAIL", note[0] ? "  " : "", note);
    fflush(stdout);
    if (ok) n_pass++; else n_fail++;
}

#define CHECK(name, cond, ...) result(name, (cond) != 0, __VA_ARGS__)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* A path in the temporary directory; stays valid until free_paths(). */
static char **path_pool;
static size_t path_count, path_cap;

static const char *tpath(const char *name)
{
    if (path_count == path_cap) {
        path_cap = path_cap ? 2 * path_cap : 64;
        path_pool = realloc(path_pool, path_cap * sizeof *path_pool);
        if (!path_pool) exit(2);
    }
    size_t n = strlen(tmpdir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", tmpdir, name);
    return path_pool[path_count++] = p;
}

static void free_paths(void)
{
    for (size_t i = 0; i < path_count; i++) free(path_pool[i]);
    free(path_pool);
}

/* ---- synthetic photos -------------------------------------------------------- */

static uint32_t hash3(uint32_t x, uint32_t y, uint32_t z)
{
    uint32_t h = x * 0x9E3779B1u ^ (y + 0x7F4A7C15u) * 0x85EBCA77u ^ (z + 0x165667B1u) * 0xC2B2AE3Du;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return h;
}

/* Smooth colour gradients, a sinusoid, a hard edge and (noise > 0) grain. */
static int pattern(int x, int y, int c, int w, int h, int seed, int noise)
{
    double fx = (double)x / w, fy = (double)y / h;
    double v = 40 + 150 * (c == 0 ? fx : c == 1 ? fy : 1 - 0.5 * (fx + fy));
    v += 35 * sin(6.2832 * (1.7 * fx + 0.3 * c + 0.1 * seed)) * cos(6.2832 * 1.3 * fy);
    if (fx > 0.62 && fy > 0.2 && fy < 0.7) v = 0.4 * v + 20 * c;
    if (noise) v += (int)(hash3((uint32_t)x, (uint32_t)y, (uint32_t)(c + 7 * seed)) % (2 * noise + 1)) - noise;
    return v < 0 ? 0 : v > 255 ? 255 : (int)v;
}

typedef struct {
    int components;          /* 1, 3 or 4 */
    J_COLOR_SPACE jpeg_space;/* for 4 components: JCS_CMYK or JCS_YCCK */
    int progressive, quality, noise, seed;
    int arithmetic;          /* arithmetic instead of Huffman coding */
} jpeg_spec;

static int write_jpeg(const char *path, int w, int h, jpeg_spec sp)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = sp.components;
    c.in_color_space = sp.components == 1 ? JCS_GRAYSCALE : sp.components == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    if (sp.components == 4) jpeg_set_colorspace(&c, sp.jpeg_space);   /* writes an Adobe marker */
    jpeg_set_quality(&c, sp.quality, TRUE);
    if (sp.progressive) jpeg_simple_progression(&c);
    c.arith_code = sp.arithmetic ? TRUE : FALSE;
    jpeg_start_compress(&c, TRUE);
    JSAMPLE *row = xmalloc((size_t)w * sp.components);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < w; x++) {
            if (sp.components == 1) {
                row[x] = (JSAMPLE)pattern(x, y, 1, w, h, sp.seed, sp.noise);
            } else if (sp.components == 3) {
                for (int ch = 0; ch < 3; ch++) row[x * 3 + ch] = (JSAMPLE)pattern(x, y, ch, w, h, sp.seed, sp.noise);
            } else {
                /* Photoshop's Adobe CMYK stores 255 - ink */
                int k = 255 - pattern(x, y, 2, w, h, sp.seed + 1, sp.noise) / 3;
                for (int ch = 0; ch < 3; ch++) row[x * 4 + ch] = (JSAMPLE)(255 - (255 - pattern(x, y, ch, w, h, sp.seed, sp.noise)) / 2);
                row[x * 4 + 3] = (JSAMPLE)k;
            }
        }
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    return fclose(f) == 0;
}

/* The reference decode: libjpeg's defaults, RGB out (grey -> R = G = B), or
 * CMYK out converted here with PIL's formula (Adobe: inverted). */
static uint8_t *ref_decode(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_decompress(&c);
    jpeg_stdio_src(&c, f);
    jpeg_read_header(&c, TRUE);
    int cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&c);
    *w = (int)c.output_width;
    *h = (int)c.output_height;
    uint8_t *rgb = xmalloc((size_t)*w * *h * 3), *row = xmalloc((size_t)*w * 4);
    while (c.output_scanline < c.output_height) {
        int y = (int)c.output_scanline;
        JSAMPROW r = row;
        jpeg_read_scanlines(&c, &r, 1);
        for (int x = 0; x < *w; x++) {
            uint8_t *o = rgb + ((size_t)y * *w + x) * 3;
            if (!cmyk) {
                memcpy(o, row + x * 3, 3);
                continue;
            }
            int inv = c.saw_Adobe_marker;
            int k = inv ? 255 - row[x * 4 + 3] : row[x * 4 + 3], nk = 255 - k;
            for (int ch = 0; ch < 3; ch++) {
                int v = inv ? 255 - row[x * 4 + ch] : row[x * 4 + ch];
                int t = v * nk + 128;
                o[ch] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
            }
        }
    }
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    fclose(f);
    free(row);
    return rgb;
}

/* Half-pixel bilinear resize of w x h to nw x nh, then the S x S window at
 * (left, top); planar floats. Stretch is nw = nh = S, left = top = 0. */
static void ref_resize(const uint8_t *rgb, int w, int h, int nw, int nh, int left, int top, int S,
                       float *out)
{
    for (int oy = 0; oy < S; oy++) {
        double py = (oy + top + 0.5) * h / nh - 0.5;
        if (py < 0) py = 0;
        int y0 = (int)py;
        if (y0 > h - 1) y0 = h - 1;
        int y1 = y0 + 1 < h ? y0 + 1 : h - 1;
        double fy = py - y0;
        for (int ox = 0; ox < S; ox++) {
            double px = (ox + left + 0.5) * w / nw - 0.5;
            if (px < 0) px = 0;
            int x0 = (int)px;
            if (x0 > w - 1) x0 = w - 1;
            int x1 = x0 + 1 < w ? x0 + 1 : w - 1;
            double fx = px - x0;
            for (int c = 0; c < 3; c++) {
                double a = rgb[((size_t)y0 * w + x0) * 3 + c], b = rgb[((size_t)y0 * w + x1) * 3 + c];
                double d = rgb[((size_t)y1 * w + x0) * 3 + c], e = rgb[((size_t)y1 * w + x1) * 3 + c];
                double t = a + fx * (b - a), u = d + fx * (e - d);
                out[(size_t)c * S * S + (size_t)oy * S + ox] = (float)(t + fy * (u - t));
            }
        }
    }
}

static void diff_stats(const float *a, const float *b, size_t n, double *maxd, double *meand)
{
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;   /* NaN counts as the worst */
        s += d;
    }
    *maxd = m;
    *meand = n ? s / n : 0;
}

static int bytes_max_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

static uint8_t *read_ppm(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    int maxv;
    if (fscanf(f, "P6 %d %d %d", w, h, &maxv) != 3 || maxv != 255 || fgetc(f) == EOF) {
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)*w * *h * 3;
    uint8_t *p = xmalloc(n);
    if (fread(p, 1, n, f) != n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t k = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0) & (k == n);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = xmalloc((size_t)len);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- the files ---------------------------------------------------------------- */

static const jpeg_spec RGB90 = {3, JCS_YCbCr, 0, 90, 6, 1, 0};

static void make_files(void)
{
    jpeg_spec grey = {1, JCS_GRAYSCALE, 0, 90, 6, 2, 0}, prog = {3, JCS_YCbCr, 1, 85, 6, 3, 0};
    jpeg_spec cmyk = {4, JCS_CMYK, 0, 90, 4, 4, 0}, ycck = {4, JCS_YCCK, 0, 90, 4, 5, 0};
    int ok = write_jpeg(tpath("rgb.jpg"), 320, 240, RGB90) && write_jpeg(tpath("grey.jpg"), 300, 200, grey) &&
             write_jpeg(tpath("progressive.jpg"), 400, 300, prog) &&
             write_jpeg(tpath("cmyk.jpg"), 200, 150, cmyk) && write_jpeg(tpath("ycck.jpg"), 180, 160, ycck);
    jpeg_spec a = RGB90, b = RGB90, c = RGB90, d = grey;
    a.seed = 11;
    b.seed = 12;
    c.seed = 13;
    c.progressive = 1;
    d.seed = 14;
    ok = ok && write_jpeg(tpath("grey_1600x1200.jpg"), 1600, 1200, d);
    ok = ok && write_jpeg(tpath("photo_640x480.jpg"), 640, 480, a) &&
         write_jpeg(tpath("photo_200x300.jpg"), 200, 300, b) &&
         write_jpeg(tpath("photo_1200x900.jpg"), 1200, 900, c);
    CHECK("write test JPEGs with libjpeg", ok, "%s", tmpdir);
}

/* ---- decoding ------------------------------------------------------------------ */

static void check_native(const char *name, const char *file, int comps, const char *space, int progressive)
{
    char lab[96];
    an_jpeg_info info;
    an_status st = an_jpeg_read_info(tpath(file), &info);
    snprintf(lab, sizeof lab, "info %s", name);
    CHECK(lab, st == AN_OK && info.components == comps && !strcmp(info.color_space, space) &&
                   info.progressive == progressive,
          "%d x %d, %d components, %s, progressive %d%s%s", info.width, info.height, info.components,
          info.color_space, info.progressive, st ? ": " : "", st ? an_error_message() : "");
    int rw, rh, w = 0, h = 0;
    uint8_t *ref = ref_decode(tpath(file), &rw, &rh), *rgb = NULL;
    st = an_jpeg_read_rgb(tpath(file), 0, &rgb, &w, &h);
    snprintf(lab, sizeof lab, "native decode %s = libjpeg", name);
    int d = st == AN_OK && ref && w == rw && h == rh ? bytes_max_diff(rgb, ref, (size_t)w * h * 3) : 999;
    CHECK(lab, d == 0, "%d x %d, max diff %d%s%s", w, h, d, st ? ": " : "", st ? an_error_message() : "");
    if (comps == 1 && st == AN_OK) {
        int grey = 1;
        for (size_t i = 0; i < (size_t)w * h; i++)
            grey &= rgb[i * 3] == rgb[i * 3 + 1] && rgb[i * 3] == rgb[i * 3 + 2];
        CHECK("grey decodes to R = G = B", grey, NULL);
    }
    /* 227 x 227 without DCT scaling = the reference resize of the reference decode */
    if (ref) {
        enum { S = AN_INPUT_SIZE };
        float *out = xmalloc(sizeof(float) * AN_INPUT_PIXELS), *exp = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
        an_image_options o;
        an_image_options_init(&o);
        o.dct_scaling = 0;
        st = an_image_load(tpath(file), &o, NULL, 0, 0, 0, out, NULL, NULL);
        ref_resize(ref, rw, rh, S, S, 0, 0, S, exp);
        double mx, mean;
        diff_stats(out, exp, AN_INPUT_PIXELS, &mx, &mean);
        snprintf(lab, sizeof lab, "227 stretch %s = reference resize", name);
        CHECK(lab, st == AN_OK && mx <= 2e-3, "max diff %.2g%s%s", mx, st ? ": " : "", st ? an_error_message() : "");
        /* resize 256 then centre crop 227 */
        o.resize_mode = AN_RESIZE_CROP;
        o.resize_short = 256;
        st = an_image_load(tpath(file), &o, NULL, 0, 0, 0, out, NULL, NULL);
        int nw, nh;
        if (rw <= rh) {
            nw = 256;
            nh = (int)(256.0 * rh / rw);
        } else {
            nh = 256;
            nw = (int)(256.0 * rw / rh);
        }
        ref_resize(ref, rw, rh, nw, nh, (int)nearbyint((nw - S) / 2.0), (int)nearbyint((nh - S) / 2.0), S, exp);
        diff_stats(out, exp, AN_INPUT_PIXELS, &mx, &mean);
        snprintf(lab, sizeof lab, "256 + crop 227 %s = reference", name);
        CHECK(lab, st == AN_OK && mx <= 2e-3, "max diff %.2g%s%s", mx, st ? ": " : "", st ? an_error_message() : "");
        free(out);
        free(exp);
    }
    free(ref);
    free(rgb);
}

static void test_decode(void)
{
    check_native("rgb", "rgb.jpg", 3, "YCbCr", 0);
    check_native("grey", "grey.jpg", 1, "grey", 0);
    check_native("progressive", "progressive.jpg", 3, "YCbCr", 1);
    check_native("cmyk (Adobe, inverted)", "cmyk.jpg", 4, "CMYK", 0);
    check_native("ycck", "ycck.jpg", 4, "YCCK", 0);

    /* DCT scaling (1/2, 1/4) of a progressive and a grey file ~ full decode */
    const char *scaled[2] = {"photo_1200x900.jpg", "grey_1600x1200.jpg"};
    float *a = xmalloc(sizeof(float) * AN_INPUT_PIXELS), *b = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
    for (int i = 0; i < 2; i++) {
        an_image_options o;
        an_image_options_init(&o);
        an_status s1 = an_image_load(tpath(scaled[i]), &o, NULL, 0, 0, 0, a, NULL, NULL);
        o.dct_scaling = 0;
        an_status s2 = an_image_load(tpath(scaled[i]), &o, NULL, 0, 0, 0, b, NULL, NULL);
        double mx, mean;
        diff_stats(a, b, AN_INPUT_PIXELS, &mx, &mean);
        char lab[96];
        snprintf(lab, sizeof lab, "DCT-scaled ~ full: %s", scaled[i]);
        /* grain (+-6) is averaged differently by the IDCT and the box filter */
        CHECK(lab, s1 == AN_OK && s2 == AN_OK && mean < 2.0, "mean abs diff %.3f, max %.1f", mean, mx);
    }
    free(a);
    free(b);

    /* CMYK is not a plain copy of the channels: a dark K darkens all three */
    int w, h;
    uint8_t *rgb = NULL;
    an_jpeg_info info;
    if (an_jpeg_read_info(tpath("cmyk.jpg"), &info) == AN_OK && an_jpeg_read_rgb(tpath("cmyk.jpg"), 0, &rgb, &w, &h) == AN_OK) {
        double mean = 0;
        for (size_t i = 0; i < (size_t)w * h * 3; i++) mean += rgb[i];
        mean /= (double)w * h * 3;
        CHECK("cmyk: Adobe marker seen, plausible RGB", info.adobe && mean > 40 && mean < 220, "mean %.1f", mean);
    } else {
        CHECK("cmyk: Adobe marker seen, plausible RGB", 0, "%s", an_error_message());
    }
    free(rgb);
}

/* PIL's decode of committed tiny files (and its resize, upscaling). */
static void test_pil_fixtures(void)
{
    const char *kinds[] = {"rgb", "grey", "progressive", "cmyk"};
    char jpg[512], ppm[512], lab[96];
    for (int k = 0; k < 4; k++) {
        snprintf(jpg, sizeof jpg, "%s/images/%s.jpg", fixture_dir, kinds[k]);
        snprintf(ppm, sizeof ppm, "%s/images/%s.ppm", fixture_dir, kinds[k]);
        int pw, ph, w = 0, h = 0;
        uint8_t *pil = read_ppm(ppm, &pw, &ph), *rgb = NULL;
        an_status st = an_jpeg_read_rgb(jpg, 0, &rgb, &w, &h);
        snprintf(lab, sizeof lab, "PIL fixture %s: native decode", kinds[k]);
        int d = pil && st == AN_OK && w == pw && h == ph ? bytes_max_diff(rgb, pil, (size_t)w * h * 3) : 999;
        CHECK(lab, d <= 1, "max diff %d (%s)%s%s", d, pil ? "read" : "missing fixture", st ? ": " : "",
              st ? an_error_message() : "");
        free(pil);
        free(rgb);
    }
    /* upscaling 40 x 30 to 64 x 64: PIL's bilinear is plain bilinear there */
    an_image_options o;
    an_image_options_init(&o);
    o.size = 64;
    float *out = xmalloc(sizeof(float) * 3 * 64 * 64);
    for (int mode = 0; mode < 2; mode++) {
        snprintf(jpg, sizeof jpg, "%s/images/rgb.jpg", fixture_dir);
        snprintf(ppm, sizeof ppm, "%s/images/%s", fixture_dir, mode ? "rgb_crop64.ppm" : "rgb_resize64.ppm");
        if (mode) {
            o.resize_mode = AN_RESIZE_CROP;
            o.resize_short = 72;
        }
        int pw, ph;
        uint8_t *pil = read_ppm(ppm, &pw, &ph);
        an_status st = an_image_load(jpg, &o, NULL, 0, 0, 0, out, NULL, NULL);
        double mx = 999;
        if (pil && st == AN_OK && pw == 64 && ph == 64) {
            mx = 0;
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < 64 * 64; i++) mx = fmax(mx, fabs(out[c * 4096 + i] - pil[i * 3 + c]));
        }
        /* PIL rounds to 8 bits (0.5) and its weights are fixed-point */
        CHECK(mode ? "PIL fixture: Resize(72) + CenterCrop(64)" : "PIL fixture: resize to 64 x 64", mx <= 1.0,
              "max diff %.3f%s%s", mx, st ? ": " : "", st ? an_error_message() : "");
        free(pil);
    }
    free(out);
}

/* ---- DCT scaling on a 4000 x 3000 photo ------------------------------------------------ */

static void test_large(void)
{
    if (quick) {
        printf("# 4000 x 3000 tests left out (AN_IMAGES_QUICK)\n");
        return;
    }
    jpeg_spec sp = RGB90;
    sp.noise = 0;   /* smooth at the output's scale, so every downscale agrees */
    sp.seed = 21;
    sp.quality = 85;
    if (!write_jpeg(tpath("large.jpg"), 4000, 3000, sp)) {
        CHECK("write 4000 x 3000 JPEG", 0, NULL);
        return;
    }
    float *dct = xmalloc(sizeof(float) * AN_INPUT_PIXELS), *full = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
    float *ref = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
    an_image_options o;
    an_image_options_init(&o);
    an_status s1 = AN_OK, s2 = AN_OK;
    double t_dct = 1e9, t_full = 1e9;   /* fastest of 3: the machine may be busy */
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        o.dct_scaling = 1;
        s1 |= an_image_load(tpath("large.jpg"), &o, NULL, 0, 0, 0, dct, NULL, NULL);
        double t1 = now();
        o.dct_scaling = 0;
        s2 |= an_image_load(tpath("large.jpg"), &o, NULL, 0, 0, 0, full, NULL, NULL);
        t_dct = fmin(t_dct, t1 - t0);
        t_full = fmin(t_full, now() - t1);
    }
    int w, h;
    uint8_t *rgb = ref_decode(tpath("large.jpg"), &w, &h);
    ref_resize(rgb, w, h, AN_INPUT_SIZE, AN_INPUT_SIZE, 0, 0, AN_INPUT_SIZE, ref);
    free(rgb);
    double mx, mean, mx2, mean2;
    diff_stats(dct, full, AN_INPUT_PIXELS, &mx, &mean);
    CHECK("4000x3000: 1/8 DCT decode ~ full decode", s1 == AN_OK && s2 == AN_OK && mean < 1.0,
          "mean abs diff %.3f, max %.1f; %.0f ms vs %.0f ms", mean, mx, t_dct * 1e3, t_full * 1e3);
    diff_stats(dct, ref, AN_INPUT_PIXELS, &mx, &mean);
    diff_stats(full, ref, AN_INPUT_PIXELS, &mx2, &mean2);
    CHECK("4000x3000: both ~ reference decode + resize", mean < 1.0 && mean2 < 1.0,
          "mean abs diff %.3f (DCT), %.3f (full + box)", mean, mean2);
    CHECK("4000x3000: DCT scaling is faster", t_dct < t_full, "%.1fx", t_full / t_dct);
    /* zoom in (0.5) needs twice the resolution: still close to the full decode */
    an_augment a;
    an_augment_init(&a);
    a.zoom_lo = a.zoom_hi = 0.5;
    o.dct_scaling = 1;
    s1 = an_image_load(tpath("large.jpg"), &o, &a, 1, 0, 0, dct, NULL, NULL);
    o.dct_scaling = 0;
    s2 = an_image_load(tpath("large.jpg"), &o, &a, 1, 0, 0, full, NULL, NULL);
    diff_stats(dct, full, AN_INPUT_PIXELS, &mx, &mean);
    CHECK("4000x3000 zoom 0.5: DCT ~ full", s1 == AN_OK && s2 == AN_OK && mean < 1.0, "mean abs diff %.3f", mean);
    free(dct);
    free(full);
    free(ref);
}

/* ---- augmentation ----------------------------------------------------------------- */

/* Keras 1's transform, built as it builds it: 3x3 matrices in (row, col),
 * transform = R T Sh Z about the centre (the true centre here). */
static void keras_point(const an_transform *t, int S, double ux, double uy, double *px, double *py)
{
    double th = t->theta, s = t->shear;
    double R[3][3] = {{cos(th), -sin(th), 0}, {sin(th), cos(th), 0}, {0, 0, 1}};
    double T[3][3] = {{1, 0, t->height_shift * S}, {0, 1, t->width_shift * S}, {0, 0, 1}};
    double Sh[3][3] = {{1, -sin(s), 0}, {0, cos(s), 0}, {0, 0, 1}};
    double Z[3][3] = {{t->zx, 0, 0}, {0, t->zy, 0}, {0, 0, 1}};
    double c = S / 2.0;
    double O[3][3] = {{1, 0, c}, {0, 1, c}, {0, 0, 1}}, Ri[3][3] = {{1, 0, -c}, {0, 1, -c}, {0, 0, 1}};
    double (*seq[6])[3] = {O, R, T, Sh, Z, Ri};
    double M[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    for (int k = 0; k < 6; k++) {
        double N[3][3];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                N[i][j] = M[i][0] * seq[k][0][j] + M[i][1] * seq[k][1][j] + M[i][2] * seq[k][2][j];
        memcpy(M, N, sizeof M);
    }
    *py = M[0][0] * uy + M[0][1] * ux + M[0][2];
    *px = M[1][0] * uy + M[1][1] * ux + M[1][2];
}

static void test_augment(void)
{
    enum { S = AN_INPUT_SIZE, P = AN_INPUT_PIXELS };
    an_image_options o;
    an_image_options_init(&o);
    const char *f = tpath("photo_640x480.jpg");
    float *base = xmalloc(sizeof(float) * P), *out = xmalloc(sizeof(float) * P);
    an_status st = an_image_load(f, &o, NULL, 0, 0, 0, base, NULL, NULL);
    CHECK("load without augmentation", st == AN_OK, "%s", st ? an_error_message() : "");

    /* zoom 1, shear 0, everything off: the identity, bit for bit */
    an_augment a;
    an_augment_keras(&a, 0, 0, 0);
    st = an_image_load(f, &o, &a, 42, 3, 7, out, NULL, NULL);
    CHECK("augment(shear 0, zoom 0): identity", st == AN_OK && !memcmp(base, out, sizeof(float) * P), NULL);

    /* flip: an exact mirror, drawn with probability 1/2 */
    an_augment_init(&a);
    a.horizontal_flip = 1;
    int flips = 0, same = 0, bad = 0;
    for (int i = 0; i < 16; i++) {
        an_transform t;
        an_augment_draw(&a, 5, 0, (uint64_t)i, &t);
        st = an_image_load(f, &o, &a, 5, 0, (uint64_t)i, out, NULL, NULL);
        if (st != AN_OK) {
            bad++;
            continue;
        }
        int ok = 1;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    size_t src = (size_t)c * S * S + (size_t)y * S + (t.hflip ? S - 1 - x : x);
                    ok &= out[(size_t)c * S * S + (size_t)y * S + x] == base[src];
                }
        if (!ok) bad++;
        else if (t.hflip) flips++;
        else same++;
    }
    CHECK("horizontal flip: exact mirror, p = 1/2", !bad && flips >= 3 && same >= 3,
          "%d flipped, %d not, %d wrong", flips, same, bad);
    an_augment_init(&a);
    a.vertical_flip = 1;
    an_transform t;
    int found = 0;
    for (int i = 0; i < 16 && !found; i++) {
        an_augment_draw(&a, 5, 0, (uint64_t)i, &t);
        if (!t.vflip) continue;
        found = 1;
        st = an_image_load(f, &o, &a, 5, 0, (uint64_t)i, out, NULL, NULL);
        int ok = st == AN_OK;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                ok &= !memcmp(out + (size_t)c * S * S + (size_t)y * S, base + (size_t)c * S * S + (size_t)(S - 1 - y) * S,
                              sizeof(float) * S);
        CHECK("vertical flip: exact mirror", ok, NULL);
    }
    if (!found) CHECK("vertical flip: exact mirror", 0, "never drawn");

    /* draws: reproducible, within range, different per epoch and image */
    an_augment_keras(&a, 0.2, 0.2, 1);
    a.rotation_range = 15;
    a.width_shift_range = 0.1;
    a.height_shift_range = 0.05;
    an_transform t1, t2, t3, t4;
    an_augment_draw(&a, 9, 2, 17, &t1);
    an_augment_draw(&a, 9, 2, 17, &t2);
    an_augment_draw(&a, 9, 3, 17, &t3);
    an_augment_draw(&a, 9, 2, 18, &t4);
    CHECK("same (seed, epoch, index): same transform", !memcmp(&t1, &t2, sizeof t1), NULL);
    CHECK("another epoch: another transform", t1.shear != t3.shear && t1.zx != t3.zx, "shear %.4f vs %.4f", t1.shear, t3.shear);
    CHECK("another image: another transform", t1.shear != t4.shear && t1.zy != t4.zy, NULL);
    int in_range = 1;
    double smin = 1, smax = -1, zmin = 2, zmax = 0;
    for (int i = 0; i < 2000; i++) {
        an_augment_draw(&a, 1, 0, (uint64_t)i, &t);
        in_range &= fabs(t.shear) <= 0.2 && t.zx >= 0.8 && t.zx <= 1.2 && t.zy >= 0.8 && t.zy <= 1.2 &&
                    fabs(t.theta) <= 15 * 3.14159265358979 / 180 && fabs(t.width_shift) <= 0.1 &&
                    fabs(t.height_shift) <= 0.05;
        smin = fmin(smin, t.shear);
        smax = fmax(smax, t.shear);
        zmin = fmin(zmin, t.zx);
        zmax = fmax(zmax, t.zx);
    }
    CHECK("draws cover U(-s, s) and U(1 - z, 1 + z)", in_range && smin < -0.19 && smax > 0.19 && zmin < 0.81 && zmax > 1.19,
          "shear %.3f..%.3f, zoom %.3f..%.3f", smin, smax, zmin, zmax);
    float *e2 = xmalloc(sizeof(float) * P);
    an_image_load(f, &o, &a, 9, 2, 17, out, NULL, NULL);
    an_image_load(f, &o, &a, 9, 3, 17, e2, NULL, NULL);
    CHECK("another epoch: other pixels", memcmp(out, e2, sizeof(float) * P) != 0, NULL);
    free(e2);

    /* the map is Keras' matrix product */
    an_transform k = {0.3, 0.1, -0.05, 0.2, 0.9, 1.15, 0, 0};
    an_geometry g;
    st = an_geometry_build(&o, &k, 640, 480, &g);
    double worst = 0;
    for (int i = 0; i < 5; i++) {
        double ux = 10.5 + 50 * i, uy = 200.5 - 37 * i, kx, ky;
        keras_point(&k, S, ux, uy, &kx, &ky);
        double gx = g.g[0][0] * ux + g.g[0][1] * uy + g.g[0][2], gy = g.g[1][0] * ux + g.g[1][1] * uy + g.g[1][2];
        worst = fmax(worst, fmax(fabs(gx - kx), fabs(gy - ky)));
    }
    CHECK("transform = Keras' R T Sh Z about the centre", st == AN_OK && worst < 1e-9, "max diff %.2g", worst);

    /* rotation + shear + zoom + shift + flip: pixels = a double-precision
     * reference (Keras' map, clamp, bilinear) on the full decode */
    {
        an_augment r;
        an_augment_keras(&r, 0.2, 0.15, 1);
        r.rotation_range = 20;
        r.width_shift_range = r.height_shift_range = 0.1;
        int rw, rh, checked = 0;
        double mx = 0;
        uint8_t *ref = ref_decode(tpath("rgb.jpg"), &rw, &rh);
        for (int i = 0; i < 4 && ref; i++) {
            an_augment_draw(&r, 8, 0, (uint64_t)i, &t);
            st = an_image_load(tpath("rgb.jpg"), &o, &r, 8, 0, (uint64_t)i, out, NULL, NULL);
            if (st != AN_OK) break;
            for (int oy = 0; oy < S; oy++)
                for (int ox = 0; ox < S; ox++) {
                    double px, py;
                    keras_point(&t, S, ox + 0.5, oy + 0.5, &px, &py);
                    px = fmin(fmax(px, 0.5), S - 0.5) * rw / S - 0.5;
                    py = fmin(fmax(py, 0.5), S - 0.5) * rh / S - 0.5;
                    px = fmin(fmax(px, 0), rw - 1);
                    py = fmin(fmax(py, 0), rh - 1);
                    int x0 = (int)px < rw - 2 ? (int)px : rw - 2, y0 = (int)py < rh - 2 ? (int)py : rh - 2;
                    double fx = px - x0, fy = py - y0;
                    int tx = t.hflip ? S - 1 - ox : ox, ty = t.vflip ? S - 1 - oy : oy;
                    for (int c = 0; c < 3; c++) {
                        const uint8_t *p0 = ref + ((size_t)y0 * rw + x0) * 3 + c, *p1 = p0 + (size_t)rw * 3;
                        double v = (1 - fy) * ((1 - fx) * p0[0] + fx * p0[3]) + fy * ((1 - fx) * p1[0] + fx * p1[3]);
                        mx = fmax(mx, fabs(v - out[(size_t)c * S * S + (size_t)ty * S + tx]));
                    }
                }
            checked++;
        }
        free(ref);
        /* the SIMD path weighs columns in 1/256 pixel: at most 1/512 of a step */
        CHECK("rotate+shear+zoom+shift+flip = reference", checked == 4 && mx < 0.5, "max diff %.3f", mx);
    }

    /* zoom 0.5 magnifies: the output centre region is the base's centre, doubled */
    an_augment_init(&a);
    a.zoom_lo = a.zoom_hi = 0.5;
    st = an_image_load(f, &o, &a, 0, 0, 0, out, NULL, NULL);
    double err = 0;
    int n = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 60; y < 168; y += 3)
            for (int x = 60; x < 168; x += 3) {
                /* output (x, y) samples crop space 113.5 + (x + 0.5 - 113.5) / 2 */
                double px = 113.5 + (x + 0.5 - 113.5) / 2 - 0.5, py = 113.5 + (y + 0.5 - 113.5) / 2 - 0.5;
                int x0 = (int)px, y0 = (int)py;
                double fx = px - x0, fy = py - y0;
                const float *b = base + (size_t)c * S * S;
                double v = (1 - fy) * ((1 - fx) * b[y0 * S + x0] + fx * b[y0 * S + x0 + 1]) +
                           fy * ((1 - fx) * b[(y0 + 1) * S + x0] + fx * b[(y0 + 1) * S + x0 + 1]);
                err += fabs(v - out[(size_t)c * S * S + (size_t)y * S + x]);
                n++;
            }
    CHECK("zoom 0.5 (Keras: < 1 magnifies) ~ 2x centre", st == AN_OK && err / n < 3.0, "mean abs diff %.2f", err / n);
    /* fill_mode nearest: a big shift repeats the edge column */
    an_augment_init(&a);
    a.width_shift_range = 0.5;
    for (int i = 0; i < 20; i++) {
        an_augment_draw(&a, 3, 0, (uint64_t)i, &t);
        if (fabs(t.width_shift) > 0.3) break;
    }
    an_geometry_build(&o, &t, 640, 480, &g);
    int idx = 0;
    for (int i = 0; i < 20; i++) {
        an_transform u;
        an_augment_draw(&a, 3, 0, (uint64_t)i, &u);
        if (!memcmp(&u, &t, sizeof u)) {
            idx = i;
            break;
        }
    }
    st = an_image_load(f, &o, &a, 3, 0, (uint64_t)idx, out, NULL, NULL);
    int edge_col = t.width_shift > 0 ? S - 1 : 0, probe = t.width_shift > 0 ? S - 5 : 4, rep = 1;
    for (int y = 0; y < S; y++) rep &= out[(size_t)y * S + probe] == out[(size_t)y * S + edge_col];
    CHECK("shift: fill_mode nearest repeats the edge", st == AN_OK && fabs(t.width_shift) > 0.3 && rep,
          "width shift %.3f", t.width_shift);
    free(base);
    free(out);
}

/* ---- bad files --------------------------------------------------------------------- */

typedef struct {
    const char *label, *file;
    an_status expect;
    const char *word;   /* in the message */
} bad_case;

static void make_bad_files(void)
{
    size_t n = 0;
    uint8_t *good = read_bytes(tpath("rgb.jpg"), &n);
    int ok = good != NULL;
    ok &= write_bytes(tpath("empty.jpg"), "", 0);
    ok &= write_bytes(tpath("half.jpg"), good, n / 2);
    uint8_t *junk = xmalloc(4096);
    for (int i = 0; i < 4096; i++) junk[i] = (uint8_t)(hash3((uint32_t)i, 1, 2) >> 8);
    junk[0] = 0x13;
    ok &= write_bytes(tpath("random.jpg"), junk, 4096);
    junk[0] = 0xFF;
    junk[1] = 0xD8;   /* a JPEG signature, then garbage */
    ok &= write_bytes(tpath("random_soi.jpg"), junk, 4096);
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                  0, 0, 0, 16, 0, 0, 0, 16, 8, 2, 0, 0, 0, 0x90, 0x91, 0x68, 0x36};
    ok &= write_bytes(tpath("png_named.jpg"), png, sizeof png);
    /* corrupt entropy-coded data: a stray marker (RST3, no restart interval)
     * in the middle of the scan, as a broken download or disk leaves */
    uint8_t *bad = xmalloc(n);
    memcpy(bad, good, n);
    size_t at = n / 2;
    while (at < n - 4 && (bad[at - 1] == 0xFF || bad[at] == 0xFF)) at++;
    bad[at] = 0xFF;
    bad[at + 1] = 0xD3;
    ok &= write_bytes(tpath("corrupt.jpg"), bad, n);
    /* a header declaring 65500 x 65500 */
    memcpy(bad, good, n);
    int patched = 0;
    for (size_t i = 2; i + 9 < n && !patched; i++)
        if (bad[i] == 0xFF && (bad[i + 1] == 0xC0 || bad[i + 1] == 0xC2)) {
            bad[i + 5] = 0xFF; bad[i + 6] = 0xDC;   /* height 65500 */
            bad[i + 7] = 0xFF; bad[i + 8] = 0xDC;   /* width 65500 */
            patched = 1;
        }
    ok &= patched && write_bytes(tpath("huge.jpg"), bad, n);
    ok &= mkdir(tpath("folder.jpg"), 0700) == 0;
    /* a FIFO, which a plain open would wait on for ever */
    ok &= mkfifo(tpath("fifo.jpg"), 0600) == 0;
    /* 3 GB (sparse: no disk used), refused before a byte is read */
    int big = open(tpath("three_gb.jpg"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ok &= big >= 0 && write(big, good, 16) == 16 && ftruncate(big, (off_t)3 << 30) == 0;
    if (big >= 0) close(big);
    /* a valid file whose name is not ASCII (UTF-8): café_猫_кот.jpg */
    ok &= write_bytes(tpath("caf\xc3\xa9_\xe7\x8c\xab_\xd0\xba\xd0\xbe\xd1\x82.jpg"), good, n);
    CHECK("write bad files", ok, NULL);
    free(good);
    free(bad);
    free(junk);
}

static const bad_case BAD[] = {
    {"zero-byte file", "empty.jpg", AN_ERR_FORMAT, "empty"},
    {"truncated (first half)", "half.jpg", AN_ERR_FORMAT, "truncated"},
    {"random bytes", "random.jpg", AN_ERR_FORMAT, "not a JPEG"},
    {"random bytes after FF D8", "random_soi.jpg", AN_ERR_FORMAT, "JPEG"},
    {"PNG named .jpg", "png_named.jpg", AN_ERR_FORMAT, "PNG"},
    {"corrupt entropy data", "corrupt.jpg", AN_ERR_FORMAT, "JPEG"},
    {"declares 65500 x 65500", "huge.jpg", AN_ERR_MEMORY, "megapixels"},
    {"missing file", "missing.jpg", AN_ERR_IO, "no such file"},
    {"unreadable (a directory)", "folder.jpg", AN_ERR_IO, "directory"},
    {"a FIFO named .jpg (refused, not waited on)", "fifo.jpg", AN_ERR_IO, "not a regular file"},
    {"3 GB named .jpg (refused before reading)", "three_gb.jpg", AN_ERR_FORMAT, "before reading"},
};
#define N_BAD ((int)(sizeof BAD / sizeof BAD[0]))

static void test_bad_files(void)
{
    make_bad_files();
    float *out = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
    char lab[96];
    for (int i = 0; i < N_BAD; i++) {
        const char *p = tpath(BAD[i].file);
        for (int k = 0; k < AN_INPUT_PIXELS; k++) out[k] = 7;
        an_status st = an_image_load(p, NULL, NULL, 0, 0, 0, out, NULL, NULL);
        const char *m = an_error_message();
        int zero = 1;
        for (int k = 0; k < AN_INPUT_PIXELS; k++) zero &= out[k] == 0;
        snprintf(lab, sizeof lab, "bad: %s", BAD[i].label);
        CHECK(lab, st == BAD[i].expect && strstr(m, p) && strstr(m, BAD[i].word) && zero, "status %d: %s", (int)st, m);
        uint8_t *rgb = NULL;
        int w, h;
        st = an_jpeg_read_rgb(p, 0, &rgb, &w, &h);
        snprintf(lab, sizeof lab, "bad (native): %s", BAD[i].label);
        CHECK(lab, st == BAD[i].expect && strstr(an_error_message(), p) && !rgb, "status %d", (int)st);
        free(rgb);
    }
    /* header only: what the header shows */
    an_jpeg_info info;
    an_status st = an_jpeg_read_info(tpath("huge.jpg"), &info);
    CHECK("info of the 65500 x 65500 header", st == AN_OK && info.width == 65500 && info.height == 65500, NULL);
    st = an_jpeg_read_info(tpath("png_named.jpg"), &info);
    CHECK("info of a PNG named .jpg fails", st == AN_ERR_FORMAT && strstr(an_error_message(), "png_named.jpg"), NULL);
    st = an_jpeg_read_info(tpath("empty.jpg"), &info);
    CHECK("info of a zero-byte file fails", st == AN_ERR_FORMAT && strstr(an_error_message(), "empty.jpg"), NULL);
    /* a lower limit refuses a normal photo, naming it */
    an_image_options o;
    an_image_options_init(&o);
    o.max_megapixels = 0.05;
    st = an_image_load(tpath("rgb.jpg"), &o, NULL, 0, 0, 0, out, NULL, NULL);
    CHECK("max_megapixels = 0.05 refuses 320 x 240", st == AN_ERR_MEMORY && strstr(an_error_message(), "rgb.jpg"),
          "%s", an_error_message());
    /* lenient keeps a corrupt file, with libjpeg's warning */
    an_image_scratch s;
    memset(&s, 0, sizeof s);
    an_image_options_init(&o);
    o.lenient = 1;
    char warn[512];
    st = an_image_load_scratch(&s, tpath("corrupt.jpg"), &o, NULL, 0, 0, 0, out, NULL, NULL, warn, sizeof warn);
    CHECK("lenient: corrupt file kept, warning names it", st == AN_OK && strstr(warn, "corrupt.jpg"), "%s", warn);
    st = an_image_load_scratch(&s, tpath("half.jpg"), &o, NULL, 0, 0, 0, out, NULL, NULL, warn, sizeof warn);
    CHECK("lenient: truncated file kept, warning names it", st == AN_OK && strstr(warn, "half.jpg"), "%s", warn);
    an_image_scratch_free(&s);
    /* non-ASCII name: loads, same pixels as the ASCII copy */
    float *ref = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
    an_image_load(tpath("rgb.jpg"), NULL, NULL, 0, 0, 0, ref, NULL, NULL);
    st = an_image_load(tpath("caf\xc3\xa9_\xe7\x8c\xab_\xd0\xba\xd0\xbe\xd1\x82.jpg"), NULL, NULL, 0, 0, 0, out, NULL, NULL);
    CHECK("non-ASCII (UTF-8) file name loads", st == AN_OK && !memcmp(out, ref, sizeof(float) * AN_INPUT_PIXELS), "%s",
          st ? an_error_message() : "");
    /* options */
    an_image_options_init(&o);
    o.resize_mode = AN_RESIZE_CROP;
    o.resize_short = 200;
    st = an_image_load(tpath("rgb.jpg"), &o, NULL, 0, 0, 0, out, NULL, NULL);
    CHECK("crop: short side < 227 refused", st == AN_ERR_ARGUMENT, "%s", an_error_message());
    an_augment a;
    an_augment_keras(&a, 0.2, 1.5, 1);
    st = an_image_load(tpath("rgb.jpg"), NULL, &a, 0, 0, 0, out, NULL, NULL);
    CHECK("zoom range 1.5 (lower bound < 0) refused", st == AN_ERR_ARGUMENT, "%s", an_error_message());
    free(ref);
    free(out);
}

/* ---- odd files and what the fuzzer found ------------------------------------------ */

/* The first frame header (SOF0/1/2) of a JPEG in memory: its marker, sample
 * precision and declared size changed (negative: kept). */
static int patch_sof(uint8_t *b, size_t n, int marker, int precision, int width, int height)
{
    for (size_t i = 2; i + 9 < n; i++)
        if (b[i] == 0xFF && (b[i + 1] == 0xC0 || b[i + 1] == 0xC1 || b[i + 1] == 0xC2)) {
            if (marker >= 0) b[i + 1] = (uint8_t)marker;
            if (precision >= 0) b[i + 4] = (uint8_t)precision;
            if (height >= 0) { b[i + 5] = (uint8_t)(height >> 8); b[i + 6] = (uint8_t)height; }
            if (width >= 0) { b[i + 7] = (uint8_t)(width >> 8); b[i + 8] = (uint8_t)width; }
            return 1;
        }
    return 0;
}

typedef struct {
    const char *label, *file;
    an_status expect;
    const char *word;   /* in the message; NULL for files that must load */
} odd_case;

/* A w x h JPEG of one grey level (RGB). */
static int write_flat_jpeg(const char *path, int w, int h, int level)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    JSAMPLE *row = xmalloc((size_t)w * 3);
    memset(row, level, (size_t)w * 3);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    return fclose(f) == 0;
}

/* Found by reading augment.c while fuzzing (the fuzzer's 2-megapixel limit
 * cannot reach it): the box reduction summed a k x k block in 32 bits, so a
 * white photo over 4105 pixels a side, reduced to a 1 x 1 output without DCT
 * scaling, came out dark grey (12). */
static void test_box_overflow(void)
{
    if (quick) return;
    const char *p = tpath("white_4200.jpg");
    if (!write_flat_jpeg(p, 4200, 4200, 255)) {
        CHECK("write a white 4200 x 4200 JPEG", 0, NULL);
        return;
    }
    an_image_options o;
    an_image_options_init(&o);
    o.size = 1;
    o.dct_scaling = 0;
    float px[3] = {0, 0, 0};
    an_status st = an_image_load(p, &o, NULL, 0, 0, 0, px, NULL, NULL);
    CHECK("white 4200 x 4200 -> 1 x 1 without DCT scaling: white (box sums in 64 bits)",
          st == AN_OK && px[0] > 254.5f && px[1] > 254.5f && px[2] > 254.5f, "%g %g %g%s%s", (double)px[0],
          (double)px[1], (double)px[2], st ? ": " : "", st ? an_error_message() : "");
    remove(p);
}

static void test_odd_files(void)
{
    size_t n = 0;
    uint8_t *good = read_bytes(tpath("rgb.jpg"), &n), *bad = xmalloc(n + 1);
    size_t np = 0;
    uint8_t *prog = read_bytes(tpath("progressive.jpg"), &np);
    int ok = good && prog;
    jpeg_spec arith = RGB90, grey1 = {1, JCS_GRAYSCALE, 0, 90, 0, 9, 0};
    arith.arithmetic = 1;
    arith.progressive = 1;
    ok &= write_jpeg(tpath("arithmetic.jpg"), 64, 48, arith);
    ok &= write_jpeg(tpath("one_pixel.jpg"), 1, 1, RGB90) && write_jpeg(tpath("grey_1x1.jpg"), 1, 1, grey1);
    ok &= write_jpeg(tpath("line_1000x1.jpg"), 1000, 1, RGB90) && write_jpeg(tpath("line_1x1000.jpg"), 1, 1000, RGB90);
    if (ok) {
        memcpy(bad, good, n);
        ok &= patch_sof(bad, n, -1, 12, -1, -1) && write_bytes(tpath("precision12.jpg"), bad, n);
        memcpy(bad, good, n);
        ok &= patch_sof(bad, n, 0xC3, -1, -1, -1) && write_bytes(tpath("lossless.jpg"), bad, n);
        memcpy(bad, good, n);
        ok &= patch_sof(bad, n, -1, -1, 60000, 60000) && write_bytes(tpath("huge_60000.jpg"), bad, n);
        memcpy(bad, good, n);
        ok &= patch_sof(bad, n, -1, -1, 0, -1) && write_bytes(tpath("zero_width.jpg"), bad, n);
        ok &= write_bytes(tpath("progressive_half.jpg"), prog, np / 2);
    }
    CHECK("write odd JPEGs", ok, NULL);
    static const odd_case ODD[] = {
        {"arithmetic coding (progressive) decodes", "arithmetic.jpg", AN_OK, NULL},
        {"a 1 x 1 RGB JPEG decodes", "one_pixel.jpg", AN_OK, NULL},
        {"a 1 x 1 grey JPEG decodes", "grey_1x1.jpg", AN_OK, NULL},
        {"a 1000 x 1 JPEG decodes", "line_1000x1.jpg", AN_OK, NULL},
        {"a 1 x 1000 JPEG decodes", "line_1x1000.jpg", AN_OK, NULL},
        {"12-bit JPEG: unsupported, says so", "precision12.jpg", AN_ERR_FORMAT, "precision 12"},
        {"lossless JPEG (SOF3): unsupported, says so", "lossless.jpg", AN_ERR_FORMAT, "SOF type 0xc3"},
        {"declares 60000 x 60000: refused before decoding", "huge_60000.jpg", AN_ERR_MEMORY, "60000 x 60000"},
        {"declares width 0", "zero_width.jpg", AN_ERR_FORMAT, "JPEG"},
        {"truncated progressive file", "progressive_half.jpg", AN_ERR_FORMAT, "truncated"},
    };
    float *out = xmalloc(sizeof(float) * AN_INPUT_PIXELS), *mem = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
    an_image_scratch s;
    memset(&s, 0, sizeof s);
    char lab[128];
    an_augment aug;
    an_augment_keras(&aug, 0.3, 0.3, 1);
    aug.rotation_range = 30;
    for (size_t i = 0; i < sizeof ODD / sizeof *ODD; i++) {
        const char *p = tpath(ODD[i].file);
        int w = -1, h = -1;
        an_status st = an_image_load(p, NULL, NULL, 0, 0, 0, out, &w, &h);
        const char *m = an_error_message();
        snprintf(lab, sizeof lab, "odd: %s", ODD[i].label);
        if (ODD[i].expect == AN_OK) {
            int in_range = st == AN_OK;
            for (int k = 0; in_range && k < AN_INPUT_PIXELS; k++) in_range = out[k] >= 0 && out[k] <= 255;
            CHECK(lab, in_range, "status %d: %s", (int)st, st ? m : "");
            /* the general affine sampler on the same odd shape */
            st = an_image_load(p, NULL, &aug, 1, 2, 3, out, NULL, NULL);
            snprintf(lab, sizeof lab, "odd: %s, with rotation and shear", ODD[i].label);
            CHECK(lab, st == AN_OK, "%s", st ? an_error_message() : "");
        } else {
            CHECK(lab, st == ODD[i].expect && strstr(m, p) && strstr(m, ODD[i].word), "status %d: %s", (int)st, m);
            uint8_t *rgb = NULL;
            st = an_jpeg_read_rgb(p, 0, &rgb, &w, &h);
            snprintf(lab, sizeof lab, "odd (native): %s", ODD[i].label);
            CHECK(lab, st == ODD[i].expect && strstr(an_error_message(), p) && !rgb, "status %d: %s", (int)st,
                  an_error_message());
            free(rgb);
        }
        /* from memory: the same status, the same pixels */
        size_t fn = 0;
        uint8_t *bytes = read_bytes(p, &fn);
        an_status sm = bytes ? an_image_load_memory(&s, ODD[i].file, bytes, fn, NULL, NULL, 0, 0, 0, mem, NULL, NULL,
                                                    NULL, 0)
                             : AN_ERR_IO;
        an_image_load(p, NULL, NULL, 0, 0, 0, out, NULL, NULL);
        snprintf(lab, sizeof lab, "odd (memory): %s", ODD[i].label);
        CHECK(lab, sm == ODD[i].expect && (sm != AN_OK || !memcmp(mem, out, sizeof(float) * AN_INPUT_PIXELS)) &&
                   (sm == AN_OK || strstr(an_error_message(), ODD[i].file)),
              "status %d: %s", (int)sm, sm ? an_error_message() : "");
        free(bytes);
    }
    /* the loader reports the declared size of the refused file */
    an_loader *ld = NULL;
    const char *paths[1] = {tpath("huge_60000.jpg")};
    an_loader_options lo;
    an_loader_options_init(&lo);
    lo.on_error = AN_ON_ERROR_SKIP;
    if (an_loader_create(paths, 1, &lo, &ld) == AN_OK) {
        int idx = 0, nf = 0;
        an_load_result r;
        an_loader_submit(ld, &idx, 1, 0);
        an_status st = an_loader_wait(ld, out, &r, &nf);
        CHECK("loader: 60000 x 60000 refused, its size and name reported",
              st == AN_OK && nf == 1 && r.status == AN_ERR_MEMORY && r.width == 60000 && r.height == 60000 &&
                  strstr(r.message, "huge_60000.jpg") && strstr(r.message, "megapixels"),
              "%d %d x %d: %s", (int)r.status, r.width, r.height, r.message);
        an_loader_free(ld);
    }
    /* memory entry points: names and arguments */
    an_status st = an_image_load_memory(&s, NULL, good, 10, NULL, NULL, 0, 0, 0, out, NULL, NULL, NULL, 0);
    CHECK("memory: no name -> '<memory>' in the message", st == AN_ERR_FORMAT && strstr(an_error_message(), "<memory>"),
          "%s", an_error_message());
    st = an_image_load_memory(&s, "blob", NULL, 10, NULL, NULL, 0, 0, 0, out, NULL, NULL, NULL, 0);
    CHECK("memory: NULL data of 10 bytes -> AN_ERR_ARGUMENT", st == AN_ERR_ARGUMENT, "%s", an_error_message());
    st = an_image_load_memory(&s, "blob", NULL, 0, NULL, NULL, 0, 0, 0, out, NULL, NULL, NULL, 0);
    CHECK("memory: no bytes -> empty file", st == AN_ERR_FORMAT && strstr(an_error_message(), "empty"), "%s",
          an_error_message());
    an_image_scratch_free(&s);
    free(good);
    free(prog);
    free(bad);
    free(out);
    free(mem);
}

/* ---- the loader -------------------------------------------------------------------- */

static const char *LOADER_FILES[] = {"rgb.jpg", "grey.jpg", "progressive.jpg", "cmyk.jpg", "ycck.jpg",
                                     "photo_640x480.jpg", "photo_200x300.jpg", "photo_1200x900.jpg"};
#define N_LF 8

static int load_batches(int threads, const an_augment *aug, int crop, float *out3, int *failures)
{
    const char *paths[N_LF];
    for (int i = 0; i < N_LF; i++) paths[i] = tpath(LOADER_FILES[i]);
    an_loader_options lo;
    an_loader_options_init(&lo);
    lo.threads = threads;
    lo.seed = 77;
    if (aug) {
        lo.augment_on = 1;
        lo.augment = *aug;
    }
    if (crop) lo.image.resize_mode = AN_RESIZE_CROP;
    an_loader *ld;
    if (an_loader_create(paths, N_LF, &lo, &ld) != AN_OK) return 0;
    static const int b0[] = {0, 1, 2, 3, 4}, b1[] = {5, 6, 7, 7, 0, 2, 1}, b2[] = {3, 6, 5};
    an_load_result res[7];
    int ok = 1, nf;
    ok &= an_loader_submit(ld, b0, 5, 0) == AN_OK;
    ok &= an_loader_submit(ld, b1, 7, 0) == AN_OK;
    ok &= an_loader_wait(ld, out3, res, &nf) == AN_OK;
    *failures = nf;
    ok &= an_loader_submit(ld, b2, 3, 1) == AN_OK;
    ok &= an_loader_wait(ld, out3 + (size_t)5 * AN_INPUT_PIXELS, res, &nf) == AN_OK;
    *failures += nf;
    ok &= an_loader_wait(ld, out3 + (size_t)12 * AN_INPUT_PIXELS, res, &nf) == AN_OK;
    *failures += nf;
    an_loader_free(ld);
    return ok;
}

static void test_loader(void)
{
    const size_t P = AN_INPUT_PIXELS;
    const char *paths[N_LF];
    for (int i = 0; i < N_LF; i++) paths[i] = tpath(LOADER_FILES[i]);
    an_loader_options lo;
    an_loader_options_init(&lo);
    an_loader *warm = NULL;   /* lets a sanitizer start its own helper thread first */
    if (an_loader_create(paths, N_LF, &lo, &warm) == AN_OK) an_loader_free(warm);
    int before = count_threads();
    CHECK("loader default: 2 threads, stop on error", lo.threads == 2 && lo.on_error == AN_ON_ERROR_STOP, NULL);
    an_loader *ld = NULL;
    an_status st = an_loader_create(paths, N_LF, &lo, &ld);
    int during = count_threads();
    CHECK("loader create", st == AN_OK, "%s", st ? an_error_message() : "");
    if (st != AN_OK) return;
    CHECK("loader started 2 threads", before < 0 || during == before + 2, "%d -> %d", before, during);
    CHECK("loader: nothing outstanding", an_loader_poll(ld, 0) == -1 &&
                                             an_loader_wait(ld, NULL, NULL, NULL) == AN_ERR_ARGUMENT, NULL);
    static const int b0[] = {0, 1, 2, 3, 4}, b1[] = {5, 6, 7, 7, 0, 2, 1}, b2[] = {3, 6, 5}, bx[] = {0, 8};
    float *got = xmalloc(sizeof(float) * P * 15), *exp = xmalloc(sizeof(float) * P);
    an_load_result res[15];
    int nf = -1, ok = 1;
    ok &= an_loader_submit(ld, b0, 5, 0) == AN_OK;
    ok &= an_loader_submit(ld, b1, 7, 0) == AN_OK;
    st = an_loader_submit(ld, b2, 3, 0);
    CHECK("loader: a third outstanding batch is refused", st == AN_ERR_ARGUMENT, "%s", an_error_message());
    ok &= an_loader_wait(ld, got, res, &nf) == AN_OK && nf == 0;
    ok &= an_loader_submit(ld, b2, 3, 1) == AN_OK;   /* batch 3 decodes while we look at batch 1 */
    int polled = an_loader_poll(ld, 10000);
    ok &= an_loader_wait(ld, got + 5 * P, res + 5, &nf) == AN_OK && nf == 0;
    ok &= an_loader_wait(ld, got + 12 * P, res + 12, &nf) == AN_OK && nf == 0;
    CHECK("loader: 3 batches (5, 7, 3) double-buffered", ok && polled == 1, NULL);
    st = an_loader_submit(ld, bx, 2, 0);
    CHECK("loader: index out of range refused", st == AN_ERR_ARGUMENT && strstr(an_error_message(), "8"), "%s",
          an_error_message());
    /* without the copy: a pointer into the loader */
    const float *px = NULL;
    ok = an_loader_submit(ld, b2, 3, 1) == AN_OK && an_loader_wait_buffer(ld, &px, res + 12, &nf) == AN_OK && px;
    CHECK("loader: wait_buffer = wait", ok && !memcmp(px, got + 12 * P, sizeof(float) * P * 3), NULL);
    const int *order[3] = {b0, b1, b2};
    int counts[3] = {5, 7, 3}, base = 0, same = 1, sizes = 1;
    for (int b = 0; b < 3; b++) {
        for (int j = 0; j < counts[b]; j++) {
            int w, h;
            an_image_load(paths[order[b][j]], NULL, NULL, 0, 0, 0, exp, &w, &h);
            same &= !memcmp(exp, got + (size_t)(base + j) * P, sizeof(float) * P);
            sizes &= res[base + j].width == w && res[base + j].height == h && res[base + j].status == AN_OK;
        }
        base += counts[b];
    }
    CHECK("loader batches = an_image_load, in order", same && sizes, NULL);
    an_loader_free(ld);
    int after = count_threads();
    CHECK("loader free joins its threads", before < 0 || after == before, "%d threads before, %d after", before, after);

    /* seeded augmentation: the same pixels with 1, 2 or 3 threads */
    an_augment a;
    an_augment_keras(&a, 0.2, 0.2, 1);
    a.rotation_range = 10;
    float *one = xmalloc(sizeof(float) * P * 15), *three = xmalloc(sizeof(float) * P * 15);
    int f1 = -1, f2 = -1, f3 = -1;
    int ok1 = load_batches(1, &a, 0, one, &f1), ok2 = load_batches(2, &a, 0, got, &f2),
        ok3 = load_batches(3, &a, 0, three, &f3);
    CHECK("augmented batches: same with 1, 2, 3 threads", ok1 && ok2 && ok3 && !f1 && !f2 && !f3 &&
                                                              !memcmp(one, got, sizeof(float) * P * 15) &&
                                                              !memcmp(one, three, sizeof(float) * P * 15), NULL);
    /* and the same as an_image_load with (seed, epoch, index) */
    an_image_load(paths[6], NULL, &a, 77, 0, 6, exp, NULL, NULL);
    int same6 = !memcmp(exp, one + (size_t)6 * P, sizeof(float) * P);
    an_image_load(paths[6], NULL, &a, 77, 1, 6, exp, NULL, NULL);   /* batch 3 is epoch 1 */
    same6 &= !memcmp(exp, one + (size_t)13 * P, sizeof(float) * P);
    CHECK("loader transform = an_image_load(seed, epoch, index)", same6, NULL);
    /* image 7 twice in one batch (same epoch, same index): identical */
    CHECK("repeated image in a batch: same transform", !memcmp(one + (size_t)7 * P, one + (size_t)8 * P, sizeof(float) * P), NULL);
    int okc = load_batches(2, &a, 1, got, &f2) && !f2;
    CHECK("loader with resize-then-crop + augmentation", okc, NULL);
    free(one);
    free(three);

    /* bad files: skip keeps going and reports each, naming it */
    const char *mixed[N_BAD + 2];
    mixed[0] = tpath("rgb.jpg");
    for (int i = 0; i < N_BAD; i++) mixed[i + 1] = tpath(BAD[i].file);
    mixed[N_BAD + 1] = tpath("caf\xc3\xa9_\xe7\x8c\xab_\xd0\xba\xd0\xbe\xd1\x82.jpg");
    int idx[N_BAD + 2];
    for (int i = 0; i < N_BAD + 2; i++) idx[i] = i;
    for (int policy = 0; policy < 2; policy++) {
        an_loader_options_init(&lo);
        lo.on_error = policy ? AN_ON_ERROR_SKIP : AN_ON_ERROR_STOP;
        if (an_loader_create(mixed, N_BAD + 2, &lo, &ld) != AN_OK) {
            CHECK("loader with bad files", 0, "%s", an_error_message());
            continue;
        }
        an_loader_submit(ld, idx, N_BAD + 2, 0);
        st = an_loader_wait(ld, got, res, &nf);
        int named = 1, zeros = 1;
        for (int i = 0; i < N_BAD; i++) {
            named &= res[i + 1].status == BAD[i].expect && strstr(res[i + 1].message, mixed[i + 1]) != NULL;
            for (size_t k = 0; k < P; k++) zeros &= got[(i + 1) * P + k] == 0;
        }
        named &= res[0].status == AN_OK && res[N_BAD + 1].status == AN_OK && !res[0].message[0];
        an_image_load(mixed[0], NULL, NULL, 0, 0, 0, exp, NULL, NULL);
        int good = !memcmp(exp, got, sizeof(float) * P) && !memcmp(exp, got + (N_BAD + 1) * P, sizeof(float) * P);
        if (policy) {
            CHECK("loader skip: OK, failures counted and named", st == AN_OK && nf == N_BAD && named && zeros && good,
                  "%d failed", nf);
        } else {
            CHECK("loader stop: first failure returned, by name", st == BAD[0].expect && nf == N_BAD && named && good &&
                                                                    strstr(an_error_message(), mixed[1]),
                  "%s", an_error_message());
            /* one bad batch does not end the run */
            int two[2] = {0, N_BAD + 1};
            an_loader_submit(ld, two, 2, 1);
            st = an_loader_wait(ld, got, res, &nf);
            CHECK("loader stop: next batch still loads", st == AN_OK && nf == 0, NULL);
        }
        an_loader_free(ld);
    }
    /* freed with batches outstanding: threads still joined */
    an_loader_options_init(&lo);
    lo.threads = 2;
    if (an_loader_create(paths, N_LF, &lo, &ld) == AN_OK) {
        an_loader_submit(ld, b1, 7, 0);
        an_loader_submit(ld, b0, 5, 0);
        an_loader_free(ld);
        CHECK("loader freed mid-batch joins its threads", before < 0 || count_threads() == before, NULL);
    }
    free(got);
    free(exp);
}

/* ---- main ------------------------------------------------------------------------- */

static void cleanup(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        const char *p = tpath(e->d_name);
        if (remove(p) != 0) rmdir(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* ---- a pixel array as a loader: the batch path (batches.c) ---- */

/* n images of h x w x ch in R's layout c(n, h, w, ch), doubles or ints */
static void *r_array(int n, int h, int w, int ch, int ints, uint64_t seed)
{
    size_t count = (size_t)n * h * w * ch;
    void *p = malloc(count * (ints ? sizeof(int) : sizeof(double)));
    uint64_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < count; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int v = (int)(x % 256);
        if (ints) ((int *)p)[i] = v;
        else ((double *)p)[i] = v + (double)(x % 1000) / 1000;
    }
    return p;
}

static an_pixel_array describe(void *data, int n, int h, int w, int ch, int ints)
{
    an_pixel_array a = {data, ints ? AN_PIXELS_I32 : AN_PIXELS_F64, n, h, w, ch,
                        1, n, (ptrdiff_t)n * h, (ptrdiff_t)n * h * w};
    return a;
}

/* image i of the array as an_image_to_input makes it (the reference) */
static void reference_input(const an_pixel_array *a, int i, float *dst)
{
    size_t count = (size_t)a->h * a->w * a->channels;
    double *img = malloc(count * sizeof *img);
    for (int c = 0; c < a->channels; c++)
        for (int x = 0; x < a->w; x++)
            for (int y = 0; y < a->h; y++) {
                ptrdiff_t o = i * a->si + y * a->sy + x * a->sx + c * a->sc;
                img[((size_t)c * a->w + x) * a->h + y] =
                    a->type == AN_PIXELS_F64 ? ((double *)a->data)[o] : ((int *)a->data)[o];
            }
    an_image_to_input(img, 1, a->h, (ptrdiff_t)a->h * a->w, a->h, a->w, a->channels, dst);
    free(img);
}

/* bf16's bits of a finite x: the 16 high bits, rounded to nearest even by
 * looking at the 16 low ones */
static uint16_t bf16_reference_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t high = u >> 16, low = u & 0xffffu;
    if (low > 0x8000u || (low == 0x8000u && (high & 1u))) high++;
    return (uint16_t)high;
}

/* Values of n images in planes against the same in `layout` (pixels: the
 * planes' bits, bf16: rounded to nearest even); the number that differ. */
static size_t layout_mismatches(const float *planes, an_input_layout layout, const void *values, int n, int S)
{
    size_t wrong = 0;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    float want = planes[(((size_t)j * 3 + c) * S + y) * S + x];
                    size_t at = (((size_t)j * S + y) * S + x) * 3 + c;
                    if (layout == AN_INPUT_PIXELS_BF16) wrong += ((const uint16_t *)values)[at] != bf16_reference_bits(want);
                    else wrong += memcmp(&want, (const float *)values + at, sizeof want) != 0;
                }
    return wrong;
}

/* The first convolution's input layouts (an_input_layout) for n images of
 * S x S: an array's blocks and an_preprocess write in pixels, f32 and bf16,
 * the values they write in planes, by the vector kernels (8 images, 8
 * columns at a time) and one value at a time (images and columns past a
 * multiple of 8; an array whose images are not adjacent), from doubles,
 * grey integers and doubles stored image by image. */
static void check_input_layouts(int n, int S)
{
    const size_t values = (size_t)n * 3 * S * S;
    const an_input_norm norm = {{123.68f, 116.779f, 103.939f}, {1.0f, 0.5f, 2.0f}};
    float *planes = malloc(values * sizeof *planes), *raw = malloc(values * sizeof *raw);
    float *pixels = malloc(values * sizeof *pixels);
    static const char *names[] = {"doubles", "grey integers", "doubles image by image"};
    for (int variant = 0; variant < 3; variant++) {
        int ints = variant == 1, ch = ints ? 1 : 3;
        void *data = r_array(n, S, S, ch, ints, 90 + variant);
        an_pixel_array a = describe(data, n, S, S, ch, ints);
        if (variant == 2) {   /* c(h, w, n, 3): no vector kernel */
            a.sy = 1;
            a.sx = S;
            a.si = (ptrdiff_t)S * S;
        }
        for (int block = 0; block < an_pixel_blocks(S, AN_INPUT_PLANES); block++) {
            an_pixels_convert_block(&a, 0, n, block, AN_INPUT_PLANES, planes, NULL, &norm);
            an_pixels_convert_block(&a, 0, n, block, AN_INPUT_PLANES, raw, NULL, NULL);
        }
        for (an_input_layout layout = AN_INPUT_PIXELS_F32; layout <= AN_INPUT_PIXELS_BF16; layout++) {
            const char *lname = layout == AN_INPUT_PIXELS_F32 ? "pixels f32" : "pixels bf16";
            memset(pixels, 0xff, values * sizeof *pixels);
            for (int block = 0; block < an_pixel_blocks(S, layout); block++)
                an_pixels_convert_block(&a, 0, n, block, layout, pixels, NULL, &norm);
            size_t wrong = layout_mismatches(planes, layout, pixels, n, S);
            char name[160];
            snprintf(name, sizeof name, "input layouts (%d x %d): %s from %s = planes", S, S, lname, names[variant]);
            CHECK(name, wrong == 0, "%zu of %zu values differ", wrong, values);
            memset(pixels, 0xff, values * sizeof *pixels);
            an_preprocess(n, S, raw, norm.mean, norm.scale, layout, pixels);
            wrong = layout_mismatches(planes, layout, pixels, n, S);
            snprintf(name, sizeof name, "input layouts (%d x %d): an_preprocess into %s (%s) = the array's planes",
                     S, S, lname, names[variant]);
            CHECK(name, wrong == 0, "%zu of %zu values differ", wrong, values);
        }
        an_preprocess(n, S, raw, norm.mean, norm.scale, AN_INPUT_PLANES, pixels);
        char name[160];
        snprintf(name, sizeof name, "input layouts (%d x %d): an_preprocess into planes = the array's planes", S, S);
        CHECK(name, memcmp(pixels, planes, values * sizeof *planes) == 0, NULL);
        free(data);
    }
    free(planes);
    free(raw);
    free(pixels);
}

static void test_input_layouts(void)
{
    check_input_layouts(11, 51);   /* 51 = 3 x 16 + 3 = 6 x 8 + 3: every kind of block; 4 bands of 13, 13, 13, 12 rows */
    check_input_layouts(9, 5);     /* fewer rows than bands need: 2, 2, 1 and none */
    /* bf16 ties round to even: 1 + 2^-8 to 1 (0x3f80), 1 + 3 x 2^-8 to 1 + 2^-6 (0x3f82), by the
     * vector kernel (columns 0..7) and the scalar one (column 8) */
    {
        enum { T = 9 };
        float tie[3 * T * T];
        uint16_t out[3 * T * T];
        for (int k = 0; k < 3 * T * T; k++) tie[k] = k % 2 ? 1.0f + 3.0f / 256 : -(1.0f + 1.0f / 256);
        const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
        an_preprocess(1, T, tie, zero, one, AN_INPUT_PIXELS_BF16, out);
        size_t wrong = 0;
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < T * T; p++)
                wrong += out[p * 3 + c] != ((c * T * T + p) % 2 ? 0x3f82 : 0xbf80);
        CHECK("input layouts: bf16 ties round to even, vector and scalar", wrong == 0, "%zu of %d differ", wrong,
              3 * T * T);
    }
}

static void test_array_loader(void)
{
    const int n = 11;
    static const struct { int h, w, ch, ints; const char *name; } cases[] = {
        {227, 227, 3, 0, "227 x 227 RGB doubles (direct copy)"},
        {227, 227, 1, 1, "227 x 227 grey integers (direct copy)"},
        {28, 28, 1, 0, "28 x 28 grey doubles (resampled)"},
        {40, 30, 3, 1, "40 x 30 RGB integers (resampled)"},
    };
    /* a shuffled order with a run of consecutive images in it */
    const int order[] = {3, 4, 5, 6, 0, 10, 2, 9, 1, 8, 7};
    /* each twice: as read for features, and as for training (keep_bytes: the
     * whole-number images as bytes) */
    for (int k = 0; k < 8; k++) {
        void *data = r_array(n, cases[k % 4].h, cases[k % 4].w, cases[k % 4].ch, cases[k % 4].ints, 40 + k % 4);
        an_pixel_array a = describe(data, n, cases[k % 4].h, cases[k % 4].w, cases[k % 4].ch, cases[k % 4].ints);
        an_loader *ld = NULL;
        an_loader_options opt;
        an_loader_options_init(&opt);
        opt.keep_bytes = k >= 4;
        an_status st = an_loader_create_array(&a, &opt, &ld);
        float *ref = malloc(AN_INPUT_PIXELS * sizeof *ref);
        int same = st == AN_OK;
        for (int b0 = 0; b0 < n && same; b0 += 4) {
            int b = n - b0 < 4 ? n - b0 : 4, nb = n - b0 - b < 4 ? n - b0 - b : 4;
            const float *px;
            an_load_result r[4];
            int failed = 0;
            st = an_loader_fetch(ld, order + b0, b, 0, nb ? order + b0 + b : NULL, nb, 0, &px, r, &failed);
            same = st == AN_OK && failed == 0;
            for (int j = 0; j < b && same; j++) {
                reference_input(&a, order[b0 + j], ref);
                same = memcmp(ref, px + (size_t)j * AN_INPUT_PIXELS, AN_INPUT_PIXELS * sizeof(float)) == 0;
            }
        }
        char name[120];
        snprintf(name, sizeof name, "array loader%s: %s", k >= 4 ? " (keep_bytes)" : "", cases[k % 4].name);
        CHECK(name, same, "%s", same ? "" : st == AN_OK ? "inputs differ from an_image_to_input's" : an_error_message());
        an_loader_free(ld);
        free(ref);
        free(data);
    }

    /* a batch of 19 consecutive images at 227 x 227 converts in blocks: 16 of
     * them through the 8 x 8 transposes (AVX2 where the CPU has it), the last
     * 3 and the last 3 columns one value at a time; both the same as the
     * reference, for each type and channel count */
    for (int k = 0; k < 2; k++) {
        const int m = 21, first = 1, count = 19;
        void *data = r_array(m, 227, 227, 3 - 2 * k, k, 90 + k);
        an_pixel_array a = describe(data, m, 227, 227, 3 - 2 * k, k);
        int idx[19], *none = NULL;
        for (int j = 0; j < count; j++) idx[j] = first + j;
        an_loader *ld = NULL;
        float *ref = malloc(AN_INPUT_PIXELS * sizeof *ref);
        const float *px = NULL;
        an_load_result r[19];
        int failed = 0, same = an_loader_create_array(&a, NULL, &ld) == AN_OK &&
                               an_loader_fetch(ld, idx, count, 0, none, 0, 0, &px, r, &failed) == AN_OK;
        for (int j = 0; j < count && same; j++) {
            reference_input(&a, idx[j], ref);
            same = memcmp(ref, px + (size_t)j * AN_INPUT_PIXELS, AN_INPUT_PIXELS * sizeof(float)) == 0;
        }
        CHECK(k ? "array loader: 19 consecutive grey integers in blocks" : "array loader: 19 consecutive RGB doubles in blocks",
              same, "%s", same ? "" : "inputs differ from an_image_to_input's");
        an_loader_free(ld);
        free(ref);
        free(data);
    }

    /* torchvision's 224 x 224 input from a 224 x 224 array: copied in blocks
     * too (and packed as bytes for training), the pixels exactly as they are */
    for (int k = 0; k < 4; k++) {
        const int m = 11, side = 224, grey = k % 2;
        void *data = r_array(m, side, side, grey ? 1 : 3, grey, 70 + k);
        an_pixel_array a = describe(data, m, side, side, grey ? 1 : 3, grey);
        an_loader_options opt;
        an_loader_options_init(&opt);
        opt.image.size = side;
        opt.keep_bytes = k >= 2;
        an_loader *ld = NULL;
        const int order[] = {3, 4, 5, 6, 7, 8, 9, 10, 0, 2, 1};
        const size_t image = (size_t)3 * side * side;
        int same = an_loader_create_array(&a, &opt, &ld) == AN_OK;
        for (int b0 = 0; b0 < m && same; b0 += 8) {
            int b = m - b0 < 8 ? m - b0 : 8, failed = 0;
            const float *px;
            an_load_result r[8];
            same = an_loader_fetch(ld, order + b0, b, 0, NULL, 0, 0, &px, r, &failed) == AN_OK && failed == 0;
            for (int j = 0; j < b && same; j++)
                for (int c = 0; c < 3 && same; c++)
                    for (int y = 0; y < side && same; y++)
                        for (int x = 0; x < side && same; x++) {
                            ptrdiff_t o = order[b0 + j] * a.si + y * a.sy + x * a.sx + (grey ? 0 : c) * a.sc;
                            float want = grey ? (float)((int *)data)[o] : (float)((double *)data)[o];
                            same = px[(size_t)j * image + ((size_t)c * side + y) * side + x] == want &&
                                   r[j].width == side;
                        }
        }
        char name[120];
        snprintf(name, sizeof name, "array loader: 224 x 224 %s for a 224 input, copied%s", grey ? "grey integers" : "RGB doubles",
                 k >= 2 ? " (keep_bytes)" : "");
        CHECK(name, same, "%s", same ? "" : "inputs differ from the array's pixels");
        an_loader_free(ld);
        free(data);
    }

    /* bytes only for whole numbers 0..255 at 227 x 227, equal to the input */
    {
        const int m = 9;
        int *iv = r_array(m, 227, 227, 3, 1, 8);
        an_pixel_array a = describe(iv, m, 227, 227, 3, 1);
        uint8_t *bytes = an_pixels_pack(&a);
        float *ref = malloc(AN_INPUT_PIXELS * sizeof *ref);
        int ok = bytes != NULL;
        for (int i = 0; i < m && ok; i++) {
            reference_input(&a, i, ref);
            for (size_t k = 0; k < AN_INPUT_PIXELS && ok; k++) ok = bytes[(size_t)i * AN_INPUT_PIXELS + k] == ref[k];
        }
        free(bytes);
        iv[m * 227 * 100 + 5] = 256;
        ok = ok && an_pixels_pack(&a) == NULL;
        iv[m * 227 * 100 + 5] = -1;
        ok = ok && an_pixels_pack(&a) == NULL;
        double *d = r_array(m, 227, 227, 1, 0, 9);   /* fractional values */
        an_pixel_array ad = describe(d, m, 227, 227, 1, 0);
        ok = ok && an_pixels_pack(&ad) == NULL;
        for (size_t k = 0; k < (size_t)m * 227 * 227; k++) d[k] = floor(d[k]);
        uint8_t *whole = an_pixels_pack(&ad);
        ok = ok && whole != NULL;
        free(whole);
        d[m * 3] = NAN;
        ok = ok && an_pixels_pack(&ad) == NULL;
        an_pixel_array small = describe(d, m, 28, 28, 1, 0);
        ok = ok && an_pixels_pack(&small) == NULL;
        CHECK("pixel bytes: whole numbers 0..255 at 227 x 227 only, equal to the input", ok, "%s",
              ok ? "" : "wrong bytes, or bytes where none belong");
        free(ref);
        free(iv);
        free(d);
    }

    /* the first missing or infinite value, wherever it is, and the range */
    {
        const int m = 3, h = 50, w = 40;
        size_t total = (size_t)m * h * w * 3;
        double *d = r_array(m, h, w, 3, 0, 5);
        int *iv = r_array(m, h, w, 3, 1, 6);
        an_pixel_array a = describe(d, m, h, w, 3, 0), ai = describe(iv, m, h, w, 3, 1);
        double lo = 1e9, hi = -1e9;
        int ilo = 1 << 30, ihi = -1;
        for (size_t k = 0; k < total; k++) {
            lo = d[k] < lo ? d[k] : lo;
            hi = d[k] > hi ? d[k] : hi;
            ilo = iv[k] < ilo ? iv[k] : ilo;
            ihi = iv[k] > ihi ? iv[k] : ihi;
        }
        an_pixel_summary sd, si;
        an_pixels_summary(&a, &sd);
        an_pixels_summary(&ai, &si);
        CHECK("pixel summary: the range of doubles and of integers", sd.first_nonfinite == -1 && sd.min == lo &&
              sd.max == hi && si.first_nonfinite == -1 && si.min == ilo && si.max == ihi,
              "%g..%g (want %g..%g), %g..%g (want %d..%d)", sd.min, sd.max, lo, hi, si.min, si.max, ilo, ihi);
        int ok = 1;
        const size_t at[] = {0, 1029, total - 1};
        const double bad[] = {NAN, INFINITY, -INFINITY};
        for (int t = 0; t < 3; t++) {
            d[at[t]] = bad[t];
            if (t == 2) d[at[0]] = 7;
            an_pixels_summary(&a, &sd);
            ok = ok && sd.first_nonfinite == (ptrdiff_t)(t == 2 ? at[1] : at[0]);
        }
        iv[total - 1] = INT32_MIN;
        an_pixels_summary(&ai, &si);
        ok = ok && si.first_nonfinite == (ptrdiff_t)(total - 1);
        CHECK("pixel summary: finds the first NaN, Inf, -Inf or integer NA", ok, "%s", ok ? "" : "wrong offset");
        free(d);
        free(iv);
    }

    /* the range a loader's conversion sees = the summary's, by every path:
     * one batch of every image (blocks: 8 images at a time and a scalar
     * tail), single shuffled images, resampled ones; a missing or infinite
     * value, or one just past 255, is seen wherever it is */
    {
        static const struct { int h, w, ch, ints; } rc[] = {{227, 227, 3, 0}, {227, 227, 1, 1}, {28, 28, 1, 0}, {40, 30, 3, 1}};
        const int every[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, shuffled[] = {3, 0, 10, 2, 9, 1, 8, 7, 4, 6, 5};
        int ok = 1;
        for (int k = 0; k < 4 && ok; k++) {
            void *data = r_array(n, rc[k].h, rc[k].w, rc[k].ch, rc[k].ints, 90 + k);
            an_pixel_array a = describe(data, n, rc[k].h, rc[k].w, rc[k].ch, rc[k].ints);
            size_t total = (size_t)n * rc[k].h * rc[k].w * rc[k].ch;
            /* poisons 1..8: NaN (NA) at 8 neighbouring places, each in turn
             * (any lane of a vector); 9: -Inf; 10: just past 255 */
            for (int poison = 0; poison < 11 && ok; poison++) {
                size_t at = (size_t)((poison < 9 ? poison : 1) * 7919 + k * 104729) % total + (poison < 9 ? 0 : 1);
                if (poison > 1 && poison < 9) at = (size_t)(7919 + k * 104729) % total + poison - 1;
                if (poison >= 1 && poison <= 8)
                    rc[k].ints ? (((int *)data)[at] = INT32_MIN) : (((double *)data)[at] = NAN);
                if (poison == 9 && !rc[k].ints) ((double *)data)[at] = -INFINITY;
                if (poison == 10) rc[k].ints ? (((int *)data)[at] = 256) : (((double *)data)[at] = 255.0000001);
                an_pixel_summary want;
                an_pixels_summary(&a, &want);
                for (int route = 0; route < 2 && ok; route++) {
                    an_loader *ld = NULL;
                    const float *px;
                    an_load_result r[11];
                    int failed = 0;
                    an_pixel_range got;
                    ok = an_loader_create_array(&a, NULL, &ld) == AN_OK;
                    for (int j = 0; j < (route ? n : 1) && ok; j++)
                        ok = an_loader_fetch(ld, route ? shuffled + j : every, route ? 1 : n, 0, NULL, 0, 0, &px, r,
                                             &failed) == AN_OK;
                    ok = ok && an_loader_pixel_range(ld, &got) == AN_OK;
                    ok = ok && (want.first_nonfinite >= 0
                                    ? got.nonfinite
                                    : !got.nonfinite && got.min == want.min && got.max == want.max);
                    if (!ok)
                        printf("  %d x %d x %d %s, poison %d, %s: range %g..%g nonfinite %d, want %g..%g at %td\n",
                               rc[k].h, rc[k].w, rc[k].ch, rc[k].ints ? "ints" : "doubles", poison,
                               route ? "one by one" : "one batch", got.min, got.max, got.nonfinite, want.min,
                               want.max, want.first_nonfinite);
                    an_loader_free(ld);
                }
                if (poison >= 1 && poison <= 9) rc[k].ints ? (((int *)data)[at] = 1) : (((double *)data)[at] = 1);
            }
            free(data);
        }
        an_loader *bytes = NULL;
        an_loader_options opt;
        an_loader_options_init(&opt);
        opt.keep_bytes = 1;
        int *iv = r_array(n, 227, 227, 1, 1, 5);
        an_pixel_array ai = describe(iv, n, 227, 227, 1, 1);
        an_pixel_range unused;
        ok = ok && an_loader_create_array(&ai, &opt, &bytes) == AN_OK &&
             an_loader_pixel_range(bytes, &unused) == AN_ERR_ARGUMENT;
        an_loader_free(bytes);
        free(iv);
        CHECK("pixel range while converting: the summary's, by every route, NA/Inf/255+ seen", ok, "%s",
              ok ? "" : "see above");
    }

    /* forward, evaluation and SGD over the loader = the net's own calls on the same inputs.
     * Not under valgrind (the Makefile's valgrind target sets AN_IMAGES_NO_NET): whole
     * AlexNet passes take minutes there, and oneDNN's JIT sgemm reads past its own
     * buffers by design (32-byte loads); the plain and ASan runs cover them. */
    if (getenv("AN_IMAGES_NO_NET")) {
        printf("SKIP batch path with a net: AN_IMAGES_NO_NET is set (valgrind)\n");
        return;
    }
    void *data = r_array(n, 227, 227, 3, 0, 77);
    an_pixel_array a = describe(data, n, 227, 227, 3, 0);
    an_loader *ld = NULL;
    an_net *net = NULL, *twin = NULL;
    if (an_loader_create_array(&a, NULL, &ld) != AN_OK || an_net_create(3, 5, &net) != AN_OK ||
        an_net_create(3, 5, &twin) != AN_OK) {
        CHECK("array loader: setup", 0, "%s", an_error_message());
        return;
    }
    float *inputs = malloc((size_t)n * AN_INPUT_PIXELS * sizeof *inputs);
    for (int j = 0; j < n; j++) reference_input(&a, order[j], inputs + (size_t)j * AN_INPUT_PIXELS);
    size_t size = an_output_size(net, AN_DENSE_3);
    float *direct = malloc((size_t)n * size * sizeof *direct);
    double *matrix = malloc((size_t)n * size * sizeof *matrix);
    an_load_result results[11];
    int failed = 0;
    an_rows_out out = {matrix, 1, n, -1, NULL, 0};   /* column-major n x size, as R's */
    an_status st = an_loader_forward(ld, net, order, n, AN_DENSE_3, 4, 0, &out, results, &failed);
    int ok = st == AN_OK && an_net_forward(net, inputs, n, AN_DENSE_3, direct) == AN_OK;
    double err = 0;
    for (int j = 0; j < n && ok; j++)
        for (size_t c = 0; c < size; c++) {
            double d = fabs(matrix[j + (size_t)c * n] - direct[(size_t)j * size + c]);
            if (d > err) err = d;
        }
    /* batches of 4 against one of 11: oneDNN may sum in another order */
    CHECK("batch path forward: rows in the caller's order and layout", ok && err <= 1e-4 * 100, "max |diff| %.3g; %s",
          err, st == AN_OK ? "" : an_error_message());

    /* consecutive images, on the CPU: each batch is converted straight into
     * the net's input, preprocessed there (an_loader_fills); the rows are
     * bit for bit those of the net's own forward on the same batch, for
     * doubles and integers (8 images: the vector kernels; then 3), and the
     * pixels' range is counted */
    {
        const int seq[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        int same = an_loader_fills(ld, seq, 4) && an_loader_fills(ld, order, 4) && !an_loader_fills(ld, order + 3, 4) &&
                   !an_loader_fills(ld, seq, 1);
        float *seq_inputs = malloc((size_t)n * AN_INPUT_PIXELS * sizeof *seq_inputs);
        float *seq_rows = malloc((size_t)n * size * sizeof *seq_rows);
        for (int run = 0; run < 4 && same; run++) {
            /* f32, then bf16 where the CPU computes it (the input then bf16 pixels) */
            int ints = run % 2, bf16 = run / 2;
            if (bf16 && an_net_set_precision(net, AN_PRECISION_BF16) != AN_OK) {
                printf("SKIP batch path forward in bf16: %s\n", an_error_message());
                break;
            }
            void *px = r_array(n, 227, 227, ints ? 1 : 3, ints, 78 + ints);
            an_pixel_array pa = describe(px, n, 227, 227, ints ? 1 : 3, ints);
            an_loader *seq_ld = NULL;
            same = an_loader_create_array(&pa, NULL, &seq_ld) == AN_OK;
            for (int j = 0; j < n && same; j++) reference_input(&pa, j, seq_inputs + (size_t)j * AN_INPUT_PIXELS);
            an_rows_out rows = {NULL, 0, 0, 0, seq_rows, 0};
            same = same && an_loader_forward(seq_ld, net, seq, n, AN_DENSE_3, 8, 1, &rows, results, &failed) == AN_OK;
            float *own = malloc((size_t)8 * size * sizeof *own);
            for (int i0 = 0; i0 < n && same; i0 += 8) {
                int b = n - i0 < 8 ? n - i0 : 8;
                same = an_net_forward(net, seq_inputs + (size_t)i0 * AN_INPUT_PIXELS, b, AN_DENSE_3, own) == AN_OK &&
                       memcmp(own, seq_rows + (size_t)i0 * size, (size_t)b * size * sizeof *own) == 0;
            }
            if (!same) printf("  %s, %s: rows differ from the net's forward (last error: %s)\n", ints ? "integers" : "doubles",
                              bf16 ? "bf16" : "f32", an_error_message());
            an_pixel_range range;
            same = same && an_loader_pixel_range(seq_ld, &range) == AN_OK && !range.nonfinite && range.max > 250;
            free(own);
            an_loader_free(seq_ld);
            free(px);
        }
        free(seq_inputs);
        free(seq_rows);
        same = same && an_net_set_precision(net, AN_PRECISION_F32) == AN_OK;
        CHECK("batch path forward: consecutive images converted into the input = the net's forward, bit for bit",
              same, "%s", same ? "" : "see above");
    }

    double l1 = 0, l2 = 0;
    int c1 = 0, c2 = 0, used = 0;
    int labels[11];
    for (int j = 0; j < n; j++) labels[j] = order[j] % 3;
    st = an_loader_evaluate(ld, net, order, labels, n, 4, AN_LOSS_CROSS_ENTROPY, 0, &l1, &c1, &used, results, &failed);
    ok = st == AN_OK && an_net_evaluate(net, inputs, labels, n, AN_LOSS_CROSS_ENTROPY, &l2, &c2) == AN_OK;
    CHECK("batch path evaluation: the net's loss and count", ok && used == n && c1 == c2 &&
          fabs(l1 - l2) <= 1e-4 * fabs(l2), "loss %.6g vs %.6g, correct %d vs %d, used %d", l1, l2, c1, c2, used);

    an_sgd opt = {1e-4f, 0.9f, 0, 0, 1};
    an_net_seed_dropout(net, 9);
    an_net_seed_dropout(twin, 9);
    l2 = 0, c2 = 0;   /* the net's own calls add to these */
    st = an_loader_train_step(ld, net, order, labels, 4, 0, order + 4, 4, AN_LOSS_CROSS_ENTROPY, &opt, NULL, 0, 0, 0,
                              &l1, &c1, &used, results, &failed);
    ok = st == AN_OK && an_net_train_step(twin, inputs, labels, 4, AN_LOSS_CROSS_ENTROPY, &opt, &l2, &c2) == AN_OK;
    CHECK("batch path SGD step: the same step as the net's own, bit for bit",
          ok && used == 4 && l1 == l2 && memcmp(an_net_params(net), an_net_params(twin),
                                                an_net_param_count(net) * sizeof(float)) == 0,
          "loss %.9g vs %.9g; %s", l1, l2, st == AN_OK ? "" : an_error_message());
    /* the prefetched next batch is the one used by the next step */
    st = an_loader_train_step(ld, net, order + 4, labels + 4, 4, 0, NULL, 0, AN_LOSS_CROSS_ENTROPY, &opt, NULL, 0, 0,
                              0, &l1, &c1, &used, results, &failed);
    l2 = 0, c2 = 0;
    ok = st == AN_OK && an_net_train_step(twin, inputs + (size_t)4 * AN_INPUT_PIXELS, labels + 4, 4,
                                          AN_LOSS_CROSS_ENTROPY, &opt, &l2, &c2) == AN_OK;
    CHECK("batch path SGD step on the prefetched batch", ok && l1 == l2 && memcmp(an_net_params(net),
          an_net_params(twin), an_net_param_count(net) * sizeof(float)) == 0, "loss %.9g vs %.9g", l1, l2);
    int bad = -1;
    st = an_loader_forward(ld, net, &bad, 1, AN_DENSE_3, 4, 0, &out, results, &failed);
    CHECK("batch path: an index outside the array is an error", st == AN_ERR_ARGUMENT &&
          strstr(an_error_message(), "outside 0..10"), "%s", an_error_message());
    free(inputs); free(direct); free(matrix); free(data);
    an_loader_free(ld);
    an_net_free(net);
    an_net_free(twin);
}

/* The frozen layers computed once: training and evaluation over a rows
 * loader (an_loader_freeze of an array loader) equal those over the images
 * themselves, bit for bit, with dropout, for shuffled batches and a short
 * last batch; a failed image fails again from the rows. Once with the rows
 * in memory, once in a file (no memory allowed: an_map_temp_file), which
 * leaves nothing in its folder. */
static void frozen_rows_case(const an_rows_store *store, const char *where)
{
    if (getenv("AN_IMAGES_NO_NET")) {   /* whole AlexNet passes: see test_array_loader */
        printf("SKIP frozen rows (nets train): AN_IMAGES_NO_NET is set (valgrind)\n");
        return;
    }
    const int n = 10, classes = 3;
    void *data = r_array(n, 40, 30, 3, 1, 77);
    an_pixel_array a = describe(data, n, 40, 30, 3, 1);
    an_net *full = NULL, *frozen = NULL;
    an_loader *images = NULL, *rows = NULL;
    an_load_result r[10];
    int failed = 0, ok = an_net_create(classes, 9, &full) == AN_OK && an_net_create(classes, 9, &frozen) == AN_OK &&
                         an_loader_create_array(&a, NULL, &images) == AN_OK;
    for (int k = 0; ok && k < 2; k++) {
        an_net *net = k ? frozen : full;
        an_net_set_input_scale(net, 1.0f / 255);
        an_net_seed_dropout(net, 5);
        ok = an_net_set_trainable_from(net, AN_P_DENSE_2) == AN_OK;
    }
    int at = ok ? an_net_frozen_start(frozen) : -1;
    ok = ok && at == AN_DENSE_1 && an_loader_freeze(images, frozen, at, 4, 1, 1, store, r, &failed, &rows) == AN_OK && rows &&
         failed == 0 && an_loader_stage(rows) == AN_DENSE_1 && an_loader_item_floats(rows) == 4096;
    const int order[10] = {7, 2, 9, 0, 4, 1, 8, 3, 6, 5};
    const int labels[10] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
    an_sgd opt = {1e-3f, 0.9f, 0, 0, 1};
    double lf = 0, lr = 0;
    for (int epoch = 0; ok && epoch < 2; epoch++)
        for (int i0 = 0; ok && i0 < n; i0 += 4) {
            int b = n - i0 < 4 ? n - i0 : 4, lab[4], nf = 0, cf = 0, cr = 0, used = 0;
            for (int j = 0; j < b; j++) lab[j] = labels[order[i0 + j]];
            double sf = 0, sr = 0;
            ok = an_loader_train_step(images, full, order + i0, lab, b, epoch, NULL, 0, AN_LOSS_CROSS_ENTROPY, &opt, NULL,
                                      0, 0, 1, &sf, &cf, &used, r, &nf) == AN_OK &&
                 an_loader_train_step(rows, frozen, order + i0, lab, b, epoch, NULL, 0, AN_LOSS_CROSS_ENTROPY, &opt, NULL,
                                      0, 0, 1, &sr, &cr, &used, r, &nf) == AN_OK && sf == sr && cf == cr;
            lf += sf;
            lr += sr;
        }
    size_t np = an_net_param_count(full);
    int same = ok && memcmp(an_net_params(full), an_net_params(frozen), np * sizeof(float)) == 0;
    char lab[128];
    snprintf(lab, sizeof lab, "frozen rows (%s): 2 epochs of shuffled SGD steps equal those from the images", where);
    CHECK(lab, same, "%s; loss sums %.9g vs %.9g; %zu bytes in a file", ok ? "" : an_error_message(), lf, lr,
          an_loader_rows_on_disk(rows));
    snprintf(lab, sizeof lab, "frozen rows (%s): kept where asked", where);
    CHECK(lab, rows && (an_loader_rows_on_disk(rows) > 0) == (store && store->spill_dir != NULL) &&
                   (!store || an_loader_rows_on_disk(rows) == (size_t)n * 4096 * sizeof(float)),
          "%zu bytes in a file", an_loader_rows_on_disk(rows));
    /* evaluation: rows made by inference, in the batches evaluation runs */
    an_loader *erows = NULL;
    int idx[10];
    for (int i = 0; i < n; i++) idx[i] = i;
    double ef = 0, er = 0;
    int cf = 0, cr = 0, used = 0;
    ok = ok && an_loader_freeze(images, frozen, at, 4, 0, 1, store, r, &failed, &erows) == AN_OK &&
         an_loader_evaluate(images, full, idx, labels, n, 4, AN_LOSS_CROSS_ENTROPY, 1, &ef, &cf, &used, r, &failed) == AN_OK &&
         an_loader_evaluate(erows, frozen, idx, labels, n, 4, AN_LOSS_CROSS_ENTROPY, 1, &er, &cr, &used, r, &failed) == AN_OK;
    snprintf(lab, sizeof lab, "frozen rows (%s): evaluation equals the images'", where);
    CHECK(lab, ok && ef == er && cf == cr, "%.17g vs %.17g", ef, er);
    /* a file that does not load: its row fails when fetched, naming it */
    const char *paths[2] = {tpath("rgb.jpg"), tpath("missing.jpg")};
    an_loader *files = NULL, *frows = NULL;
    an_loader_options o;
    an_loader_options_init(&o);
    o.on_error = AN_ON_ERROR_SKIP;
    ok = an_loader_create(paths, 2, &o, &files) == AN_OK &&
         an_loader_freeze(files, frozen, at, 2, 1, 0, store, r, &failed, &frows) == AN_OK && failed == 1;
    int two[2] = {0, 1}, lab2[2] = {0, 1}, nf = 0;
    double s2 = 0;
    int c2 = 0, u2 = 0;
    ok = ok && an_loader_train_step(frows, frozen, two, lab2, 2, 0, NULL, 0, AN_LOSS_CROSS_ENTROPY, &opt, NULL, 0, 0, 0,
                                    &s2, &c2, &u2, r, &nf) == AN_OK;
    snprintf(lab, sizeof lab, "frozen rows (%s): an image that failed fails again, by name", where);
    CHECK(lab, ok && nf == 1 && u2 == 1 && r[1].status != AN_OK &&
          strstr(r[1].message, "missing.jpg"), "%s", ok ? r[1].message : an_error_message());
    an_loader_free(frows);
    an_loader_free(files);
    an_loader_free(erows);
    an_loader_free(rows);
    an_loader_free(images);
    an_net_free(full);
    an_net_free(frozen);
    free(data);
}

static void test_frozen_rows(void)
{
    frozen_rows_case(NULL, "in memory");
    if (getenv("AN_IMAGES_NO_NET")) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/spill", tmpdir);
    mkdir(dir, 0700);
    an_rows_store on_disk = {0, dir};
    frozen_rows_case(&on_disk, "in a file");
    DIR *d = opendir(dir);
    int left = 0;
    for (struct dirent *e; d && (e = readdir(d));) left += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK("frozen rows (in a file): nothing is left in the folder", d && left == 0, "%d files left", left);
    an_rows_store nowhere = {0, NULL};
    an_loader *images = NULL, *rows = NULL;
    an_net *net = NULL;
    an_load_result r[2];
    int failed = 0;
    void *data = r_array(2, 40, 30, 3, 1, 78);
    an_pixel_array a = describe(data, 2, 40, 30, 3, 1);
    an_status st = an_net_create(3, 9, &net);
    if (st == AN_OK) st = an_loader_create_array(&a, NULL, &images);
    if (st == AN_OK) st = an_net_set_trainable_from(net, AN_P_DENSE_2);
    if (st == AN_OK) st = an_loader_freeze(images, net, an_net_frozen_start(net), 2, 1, 1, &nowhere, r, &failed, &rows);
    CHECK("frozen rows: no memory allowed and no folder: a memory error naming the layer",
          st == AN_ERR_MEMORY && !rows && strstr(an_error_message(), "dense_1"), "status %d: %s", (int)st,
          an_error_message());
    an_rows_store full_disk = {0, "/proc"};
    st = an_loader_freeze(images, net, an_net_frozen_start(net), 2, 1, 1, &full_disk, r, &failed, &rows);
    CHECK("frozen rows: a folder that cannot hold them: an error naming it", st != AN_OK && !rows &&
          strstr(an_error_message(), "/proc"), "status %d: %s", (int)st, an_error_message());
    an_loader_free(images);
    an_net_free(net);
    free(data);
}

/* One resize for every route: a JPEG file, and an array of the pixels it
 * decodes to, give the same input bit for bit at every reduction (none, 2x,
 * 3x, 6x), RGB and grey; and both are the k x k box average (k the whole
 * part of the reduction) sampled bilinearly, checked against a plain double
 * reference written here. */
static void test_same_pixels_every_route(void)
{
    static const struct { int w, h, grey; } cases[] = {
        {300, 200, 0}, {454, 454, 0}, {1000, 700, 0}, {1600, 1400, 0}, {700, 500, 1}};
    enum { S = AN_INPUT_SIZE };
    float *file = xmalloc(sizeof(float) * AN_INPUT_PIXELS), *arr = xmalloc(sizeof(float) * AN_INPUT_PIXELS);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int W = cases[k].w, H = cases[k].h, w, h;
        char name[64], lab[160];
        snprintf(name, sizeof name, "route_%dx%d%s.jpg", W, H, cases[k].grey ? "_grey" : "");
        jpeg_spec sp = {cases[k].grey ? 1 : 3, cases[k].grey ? JCS_GRAYSCALE : JCS_YCbCr, 0, 90, 8, (int)k, 0};
        uint8_t *rgb = NULL;
        int ok = write_jpeg(tpath(name), W, H, sp) &&
                 an_jpeg_read_rgb(tpath(name), 0, &rgb, &w, &h) == AN_OK &&
                 an_image_load(tpath(name), NULL, NULL, 0, 0, 0, file, NULL, NULL) == AN_OK;
        /* the array as R would hold it for one image: doubles, any strides */
        double *d = xmalloc(sizeof(double) * (size_t)w * h * 3);
        for (size_t i = 0; ok && i < (size_t)w * h * 3; i++) d[i] = rgb ? rgb[i] : 0;
        ok = ok && an_image_to_input(d, (ptrdiff_t)w * 3, 3, 1, h, w, cases[k].grey ? 1 : 3, arr) == AN_OK;
        int same = ok && memcmp(file, arr, sizeof(float) * AN_INPUT_PIXELS) == 0;
        snprintf(lab, sizeof lab, "%d x %d%s: file and array of its pixels give the same input", W, H,
                 cases[k].grey ? " grey" : "");
        CHECK(lab, same, "%s", same ? "bit for bit" : ok ? "inputs differ" : an_error_message());
        /* the reference: box average then bilinear, in doubles */
        double red = fmin((double)w / S, (double)h / S);
        int b = (int)floor(red + 1e-9);
        if (b < 1) b = 1;
        int ow = (w + b - 1) / b, oh = (h + b - 1) / b;
        double maxd = 0;
        for (int c = 0; ok && c < 3; c++)
            for (int oy = 0; oy < S; oy++)
                for (int ox = 0; ox < S; ox++) {
                    double p[2], v[2][2];
                    int lo[2];
                    double pos[2] = {(ox + 0.5) * w / S / b - 0.5, (oy + 0.5) * h / S / b - 0.5};
                    int lim[2] = {ow, oh};
                    for (int a = 0; a < 2; a++) {
                        double q = fmin(fmax(pos[a], 0), lim[a] - 1);
                        lo[a] = (int)q;
                        p[a] = q - lo[a];
                    }
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            int bx = lo[0] + dx < ow ? lo[0] + dx : ow - 1, by = lo[1] + dy < oh ? lo[1] + dy : oh - 1;
                            double sum = 0;
                            int n = 0;
                            for (int y = by * b; y < by * b + b && y < h; y++)
                                for (int x = bx * b; x < bx * b + b && x < w; x++, n++)
                                    sum += rgb[((size_t)y * w + x) * 3 + c];
                            v[dy][dx] = sum / n;
                        }
                    double top = v[0][0] + p[0] * (v[0][1] - v[0][0]), bot = v[1][0] + p[0] * (v[1][1] - v[1][0]);
                    double want = top + p[1] * (bot - top);
                    maxd = fmax(maxd, fabs(want - file[(size_t)c * S * S + (size_t)oy * S + ox]));
                }
        snprintf(lab, sizeof lab, "%d x %d%s: %d x %d box average, then bilinear", W, H, cases[k].grey ? " grey" : "", b, b);
        CHECK(lab, ok && maxd < 1e-3, "max abs difference %.2g", maxd);
        free(d);
        free(rgb);
    }
    free(file);
    free(arr);
}

int main(int argc, char **argv)
{
    if (argc > 1) fixture_dir = argv[1];
    const char *q = getenv("AN_IMAGES_QUICK");
    quick = q && q[0] && strcmp(q, "0");
    /* OpenMP's pool first, as the package starts it at load: its parked
     * threads then live on stacks of their own, not on ones glibc cached
     * from joined loader threads (which memcheck would count as lost) */
    an_start_threads();
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/an_images_XXXXXX", t && t[0] ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    make_files();
    test_decode();
    test_pil_fixtures();
    test_large();
    test_augment();
    test_bad_files();
    test_odd_files();
    test_box_overflow();
    test_loader();
    test_array_loader();
    test_input_layouts();
    test_same_pixels_every_route();
    test_frozen_rows();
    if (!getenv("AN_KEEP")) cleanup();
    free_paths();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
