/* pixels.c: pixel arrays in memory (R's c(n, h, w, channels) doubles or
 * integers, any strides) checked and converted into the net's input.
 *
 * R stores the images of an array interleaved: the n values of one pixel
 * position are adjacent. A batch of consecutive images is therefore a
 * transpose, done in blocks of 8 images x 8 columns (AVX2 registers where
 * the CPU has them: a block's 64 values are 8 loads, 8 conversions, 24
 * shuffles and 8 stores), so every cache line read from the array serves 8
 * images and every 32 bytes of input are written at once. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "ops.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define AN_HAVE_AVX2_KERNEL 1
#endif

/* The value at `offset`, as R has it (double; R's NA_integer_ as NaN),
 * counted into r. */
static inline double pixel_at(const an_pixel_array *a, ptrdiff_t offset, an_pixel_range *r)
{
    double v;
    if (a->type == AN_PIXELS_F64) {
        v = ((const double *)a->data)[offset];
    } else {
        int i = ((const int *)a->data)[offset];
        v = i == INT32_MIN ? NAN : (double)i;
    }
    r->nonfinite |= !isfinite(v);
    r->min = v < r->min ? v : r->min;
    r->max = v > r->max ? v : r->max;
    return v;
}

void an_pixel_range_init(an_pixel_range *r)
{
    r->min = INFINITY;
    r->max = -INFINITY;
    r->nonfinite = 0;
}

void an_pixel_range_merge(an_pixel_range *into, const an_pixel_range *r)
{
    into->nonfinite |= r->nonfinite;
    if (r->min < into->min) into->min = r->min;
    if (r->max > into->max) into->max = r->max;
}

/* ---- checking ---------------------------------------------------------------- */

/* Values lo..hi-1: the offset of the first missing or infinite one (1
 * returned), else their range (0). Chunks are scanned first with tests that
 * vectorize (exponent bits; min and max as compares). */
static int scan_f64(const double *v, ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t *bad, double *min, double *max)
{
    enum { CHUNK = 1024 };
    double mn = *min, mx = *max;
    for (ptrdiff_t c = lo; c < hi; c += CHUNK) {
        ptrdiff_t end = c + CHUNK < hi ? c + CHUNK : hi;
        int any = 0;
        for (ptrdiff_t i = c; i < end; i++) {
            uint64_t bits;
            memcpy(&bits, &v[i], sizeof bits);
            any |= (bits & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
        }
        if (any)
            for (ptrdiff_t i = c; i < end; i++)
                if (!isfinite(v[i])) {
                    *bad = i;
                    return 1;
                }
        for (ptrdiff_t i = c; i < end; i++) {
            mn = v[i] < mn ? v[i] : mn;
            mx = v[i] > mx ? v[i] : mx;
        }
    }
    *min = mn;
    *max = mx;
    return 0;
}

static int scan_i32(const int *v, ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t *bad, double *min, double *max)
{
    enum { CHUNK = 1024 };
    int mn = INT32_MAX, mx = INT32_MIN;
    for (ptrdiff_t c = lo; c < hi; c += CHUNK) {
        ptrdiff_t end = c + CHUNK < hi ? c + CHUNK : hi;
        int any = 0;
        for (ptrdiff_t i = c; i < end; i++) any |= v[i] == INT32_MIN;   /* R's NA_integer_ */
        if (any)
            for (ptrdiff_t i = c; i < end; i++)
                if (v[i] == INT32_MIN) {
                    *bad = i;
                    return 1;
                }
        for (ptrdiff_t i = c; i < end; i++) {
            mn = v[i] < mn ? v[i] : mn;
            mx = v[i] > mx ? v[i] : mx;
        }
    }
    if (mn < *min) *min = mn;
    if (mx > *max) *max = mx;
    return 0;
}

void an_pixels_summary(const an_pixel_array *a, an_pixel_summary *out)
{
    ptrdiff_t total = (ptrdiff_t)a->n * a->h * a->w * a->channels;
    out->first_nonfinite = -1;
    out->min = INFINITY;
    out->max = -INFINITY;
    /* in parallel (the array may be gigabytes); the earliest bad offset wins */
#pragma omp parallel num_threads(an_get_threads())
    {
        ptrdiff_t mine = -1;
        double mn = INFINITY, mx = -INFINITY;
#pragma omp for schedule(static)
        for (int part = 0; part < 64; part++) {
            ptrdiff_t lo = total * part / 64, hi = total * (part + 1) / 64, bad;
            if (mine >= 0) continue;
            int found = a->type == AN_PIXELS_F64 ? scan_f64((const double *)a->data, lo, hi, &bad, &mn, &mx)
                                                 : scan_i32((const int *)a->data, lo, hi, &bad, &mn, &mx);
            if (found) mine = bad;
        }
#pragma omp critical
        {
            if (mine >= 0 && (out->first_nonfinite < 0 || mine < out->first_nonfinite)) out->first_nonfinite = mine;
            if (mn < out->min) out->min = mn;
            if (mx > out->max) out->max = mx;
        }
    }
}

/* ---- converting -------------------------------------------------------------- */

/* A square array's images (side S = a->w = a->h) go to planes of S x S
 * floats, 3 planes an image. */
#define PLANE(a) ((size_t)(a)->w * (size_t)(a)->w)
#define IMAGE(a) (3 * PLANE(a))

/* Images first..first+count-1, columns x0..x0+w-1 of channel c, one value at
 * a time (any strides and types). */
static void convert_columns_scalar(const an_pixel_array *a, int first, int count, int c, int x0, int w, float *dst,
                                   an_pixel_range *r, const an_input_norm *norm)
{
    const float m = norm ? norm->mean[c] : 0.0f, k = norm ? norm->scale[c] : 1.0f;
    ptrdiff_t base = (ptrdiff_t)first * a->si + (a->channels == 1 ? 0 : c) * a->sc + (ptrdiff_t)x0 * a->sx;
    const int S = a->w;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < w; x++) {
            ptrdiff_t o = base + y * a->sy + x * a->sx;
            float *d = dst + (size_t)c * PLANE(a) + (size_t)y * S + x0 + x;
            for (int j = 0; j < count; j++) {
                float v = (float)pixel_at(a, o + j * a->si, r);
                d[(size_t)j * IMAGE(a)] = norm ? (v - m) * k : v;
            }
        }
}

#ifdef AN_HAVE_AVX2_KERNEL
__attribute__((target("avx2"))) static inline void transpose8(__m256 *r)
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

__attribute__((target("avx2"))) static inline double reduce_min_pd(__m256d v)
{
    __m128d m = _mm_min_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_min_sd(m, _mm_unpackhi_pd(m, m)));
}

__attribute__((target("avx2"))) static inline double reduce_max_pd(__m256d v)
{
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
}

/* 8 rows of 8 images' values (one column each: images 8 g.., columns x..
 * x + 7 of row y, channel c) transposed into 8 rows of 8 columns and stored
 * into their images, with norm as an_preprocess applies it: (x - mean) *
 * scale, two roundings. */
__attribute__((target("avx2"), always_inline)) static inline void store_8x8(__m256 *r, const an_input_norm *norm,
                                                                           __m256 m, __m256 k, const an_pixel_array *a,
                                                                           float *dst, int g, int c, int y, int x)
{
    transpose8(r);
    if (norm)
        for (int j = 0; j < 8; j++) r[j] = _mm256_mul_ps(_mm256_sub_ps(r[j], m), k);
    float *d = dst + (size_t)8 * g * IMAGE(a) + (size_t)c * PLANE(a) + (size_t)y * a->w + x;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) _mm256_storeu_ps(d + (size_t)j * IMAGE(a), r[j]);
}

/* Images first..first + 8 groups - 1 (adjacent: si 1) x columns x0..x0 +
 * 8 xgroups - 1 of channel c, 8 images x 8 columns at a time, row by row:
 * a row's values of every image are read together (adjacent in R's
 * layout), and counted into range on the way (no second pass over the
 * array). The 16 vectors of doubles of 8 x 8 are reduced as a tree, so
 * that the running min and max wait on one operation, not sixteen. */
__attribute__((target("avx2"))) static void convert_8x8_f64(const an_pixel_array *a, int first, int groups, int c,
                                                            int x0, int xgroups, float *dst, an_pixel_range *range,
                                                            const an_input_norm *norm)
{
    const __m256 m = _mm256_set1_ps(norm ? norm->mean[c] : 0.0f), k = _mm256_set1_ps(norm ? norm->scale[c] : 1.0f);
    const double *base = (const double *)a->data + first + (a->channels == 1 ? 0 : c) * a->sc + (ptrdiff_t)x0 * a->sx;
    const int S = a->w;
    __m256d mn = _mm256_set1_pd(INFINITY), mx = _mm256_set1_pd(-INFINITY), bad = _mm256_setzero_pd();
    for (int y = 0; y < S; y++)
        for (int xg = 0; xg < xgroups; xg++)
            for (int g = 0; g < groups; g++) {
                const double *v = base + y * a->sy + 8 * g + 8 * xg * a->sx;
                __m256 r[8];
                __m256d lo[4], hi[4], nan[4];
#pragma GCC unroll 8
                for (int x = 0; x < 8; x++) {
                    const double *p = v + x * a->sx;
                    __m256d p0 = _mm256_loadu_pd(p), p1 = _mm256_loadu_pd(p + 4);
                    r[x] = _mm256_set_m128(_mm256_cvtpd_ps(p1), _mm256_cvtpd_ps(p0));
                    __m256d l = _mm256_min_pd(p0, p1), h = _mm256_max_pd(p0, p1), n = _mm256_cmp_pd(p0, p1, _CMP_UNORD_Q);
                    if (x < 4) {
                        lo[x] = l;
                        hi[x] = h;
                        nan[x] = n;
                    } else {
                        lo[x - 4] = _mm256_min_pd(lo[x - 4], l);
                        hi[x - 4] = _mm256_max_pd(hi[x - 4], h);
                        nan[x - 4] = _mm256_or_pd(nan[x - 4], n);
                    }
                }
                mn = _mm256_min_pd(mn, _mm256_min_pd(_mm256_min_pd(lo[0], lo[1]), _mm256_min_pd(lo[2], lo[3])));
                mx = _mm256_max_pd(mx, _mm256_max_pd(_mm256_max_pd(hi[0], hi[1]), _mm256_max_pd(hi[2], hi[3])));
                bad = _mm256_or_pd(bad, _mm256_or_pd(_mm256_or_pd(nan[0], nan[1]), _mm256_or_pd(nan[2], nan[3])));
                store_8x8(r, norm, m, k, a, dst, g, c, y, x0 + 8 * xg);
            }
    an_pixel_range own;
    own.min = reduce_min_pd(mn);
    own.max = reduce_max_pd(mx);
    own.nonfinite = _mm256_movemask_pd(bad) != 0 || !isfinite(own.min) || !isfinite(own.max);
    an_pixel_range_merge(range, &own);
}

/* The same for R's integers (NA_integer_ is INT32_MIN: found as the min). */
__attribute__((target("avx2"))) static void convert_8x8_i32(const an_pixel_array *a, int first, int groups, int c,
                                                            int x0, int xgroups, float *dst, an_pixel_range *range,
                                                            const an_input_norm *norm)
{
    const __m256 m = _mm256_set1_ps(norm ? norm->mean[c] : 0.0f), k = _mm256_set1_ps(norm ? norm->scale[c] : 1.0f);
    const int *base = (const int *)a->data + first + (a->channels == 1 ? 0 : c) * a->sc + (ptrdiff_t)x0 * a->sx;
    const int S = a->w;
    __m256i mn = _mm256_set1_epi32(INT32_MAX), mx = _mm256_set1_epi32(INT32_MIN);
    for (int y = 0; y < S; y++)
        for (int xg = 0; xg < xgroups; xg++)
            for (int g = 0; g < groups; g++) {
                const int *v = base + y * a->sy + 8 * g + 8 * xg * a->sx;
                __m256 r[8];
#pragma GCC unroll 8
                for (int x = 0; x < 8; x++) {
                    __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(v + x * a->sx));
                    mn = _mm256_min_epi32(mn, q);
                    mx = _mm256_max_epi32(mx, q);
                    r[x] = _mm256_cvtepi32_ps(q);
                }
                store_8x8(r, norm, m, k, a, dst, g, c, y, x0 + 8 * xg);
            }
    int lo[8], hi[8];
    _mm256_storeu_si256((__m256i *)(void *)lo, mn);
    _mm256_storeu_si256((__m256i *)(void *)hi, mx);
    an_pixel_range own = {INFINITY, -INFINITY, 0};
    for (int k = 0; k < 8; k++) {
        own.min = lo[k] < own.min ? lo[k] : own.min;
        own.max = hi[k] > own.max ? hi[k] : own.max;
    }
    own.nonfinite = own.min == (double)INT32_MIN;
    an_pixel_range_merge(range, &own);
}

#endif

void an_pixels_convert_block(const an_pixel_array *a, int first, int count, int block, float *dst,
                             an_pixel_range *range, const an_input_norm *norm)
{
    an_pixel_range ignored;
    if (!range) {
        an_pixel_range_init(&ignored);
        range = &ignored;
    }
    const int S = a->w, column_blocks = an_pixel_blocks(S) / 3;
    int c = block / column_blocks;
    int x0 = block % column_blocks * AN_PIXEL_BLOCK_WIDTH;
    int w = x0 + AN_PIXEL_BLOCK_WIDTH < S ? AN_PIXEL_BLOCK_WIDTH : S - x0;
    int j = 0;
#ifdef AN_HAVE_AVX2_KERNEL
    if (a->si == 1 && an_cpu_has_avx2()) {
        int x8 = w / 8 * 8;
        j = count / 8 * 8;
        if (j && x8)
            (a->type == AN_PIXELS_F64 ? convert_8x8_f64 : convert_8x8_i32)(a, first, j / 8, c, x0, x8 / 8, dst, range,
                                                                           norm);
        if (x8 < w && count >= 8)   /* the last columns of those images */
            convert_columns_scalar(a, first, j, c, x0 + x8, w - x8, dst, range, norm);
    }
#endif
    if (j < count)
        convert_columns_scalar(a, first + j, count - j, c, x0, w, dst + (size_t)j * IMAGE(a), range, norm);
}

/* Image `index` as h x w x 3 interleaved floats (grey copied to R, G, B). */
static void gather_rgb(const an_pixel_array *a, int index, float *rgb, an_pixel_range *r)
{
    for (int y = 0; y < a->h; y++)
        for (int x = 0; x < a->w; x++) {
            ptrdiff_t o = (ptrdiff_t)index * a->si + y * a->sy + x * a->sx;
            float *d = rgb + ((size_t)y * a->w + x) * 3;
            for (int c = 0; c < 3; c++) d[c] = (float)pixel_at(a, o + (a->channels == 1 ? 0 : c) * a->sc, r);
        }
}

an_status an_pixels_convert_one(const an_pixel_array *a, int index, an_image_scratch *s, const an_image_options *opt,
                                float *dst, an_pixel_range *range)
{
    const int size = opt ? opt->size : AN_INPUT_SIZE;
    if (a->h == size && a->w == size) {
        for (int block = 0; block < an_pixel_blocks(size); block++)
            an_pixels_convert_block(a, index, 1, block, dst, range, NULL);
        return AN_OK;
    }
    an_pixel_range ignored;
    if (!range) {
        an_pixel_range_init(&ignored);
        range = &ignored;
    }
    an_image_scratch own = {0};
    if (!s) s = &own;
    float *rgb = an_scratch_floats(s, (size_t)a->h * a->w * 3);
    an_status st;
    if (!rgb) {
        st = an_fail(AN_ERR_MEMORY, "out of memory converting an image of %d x %d pixels", a->h, a->w);
    } else {
        gather_rgb(a, index, rgb, range);
        st = an_resample_float(s, rgb, a->w, a->h, opt, dst);
    }
    an_image_scratch_free(&own);
    return st;
}

an_status an_image_to_input(const double *src, ptrdiff_t sy, ptrdiff_t sx, ptrdiff_t sc,
                            int h, int w, int channels, float *dst)
{
    if (h < 1 || w < 1 || h > 65536 || w > 65536)
        return an_fail(AN_ERR_ARGUMENT, "image is %d x %d pixels: each side must be 1 to 65536", h, w);
    if (channels != 1 && channels != 3)
        return an_fail(AN_ERR_ARGUMENT, "image has %d channels: 1 (grey) or 3 (RGB) expected", channels);
    an_pixel_array a = {src, AN_PIXELS_F64, 1, h, w, channels, 0, sy, sx, sc};
    return an_pixels_convert_one(&a, 0, NULL, NULL, dst, NULL);
}

uint8_t *an_pixels_pack(const an_pixel_array *a)
{
    if (a->h != a->w) return NULL;
    uint8_t *out = malloc((size_t)a->n * IMAGE(a));
    if (!out) return NULL;
    int whole = 1, groups = (a->n + 7) / 8;
    /* 8 images at a time through the blocked conversion, so that the bytes
     * are exactly the floats the net would be given */
#pragma omp parallel num_threads(an_get_threads())
    {
        float *tmp = malloc((size_t)8 * IMAGE(a) * sizeof *tmp);
        if (!tmp) {
#pragma omp atomic write
            whole = 0;
        }
#pragma omp for schedule(dynamic)
        for (int g = 0; g < groups; g++) {
            int go;
#pragma omp atomic read
            go = whole;
            if (!go || !tmp) continue;
            int first = g * 8, count = a->n - first < 8 ? a->n - first : 8, ok = 1;
            for (int block = 0; block < an_pixel_blocks(a->w); block++)
                an_pixels_convert_block(a, first, count, block, tmp, NULL, NULL);
            uint8_t *d = out + (size_t)first * IMAGE(a);
            for (size_t k = 0; k < (size_t)count * IMAGE(a); k++) {
                float v = tmp[k];
                int in = v >= 0.0f && v <= 255.0f;   /* false for NaN */
                uint8_t byte = in ? (uint8_t)v : 0;
                ok &= in & ((float)byte == v);
                d[k] = byte;
            }
            if (!ok) {
#pragma omp atomic write
                whole = 0;
            }
        }
        free(tmp);
    }
    if (!whole) {
        free(out);
        return NULL;
    }
    return out;
}
