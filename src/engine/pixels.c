/* pixels.c: pixel arrays in memory (R's c(n, h, w, channels) doubles or
 * integers, any strides) checked and converted into the net's input.
 *
 * R stores the images of an array interleaved: the n values of one pixel
 * position are adjacent. A batch of consecutive images is therefore a
 * transpose, done in blocks of 8 images x 8 columns (AVX2 registers where
 * the CPU has them: a block's 64 values are 8 loads, 8 conversions, 24
 * shuffles and 8 stores), so every cache line read from the array serves 8
 * images and every 32 bytes of input are written at once. Into the layout
 * of pixels (the 3 values of a pixel adjacent: what the first convolution
 * computes from on AVX-512 CPUs), the three channels' blocks are transposed
 * together and interleaved by permutes, 24 values an image at a time.
 *
 * an_preprocess writes planar images (a JPEG's, or floats) into the same layouts. */
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
 * floats, 3 planes an image, or to S x S pixels of 3 adjacent values. */
#define PLANE(a) ((size_t)(a)->w * (size_t)(a)->w)
#define IMAGE(a) (3 * PLANE(a))

/* where image j's channel c at (y, x) goes in a layout */
static inline size_t input_at(an_input_layout layout, int S, int j, int c, int y, int x)
{
    if (layout == AN_INPUT_PLANES) return (((size_t)j * 3 + c) * S + y) * S + x;
    return (((size_t)j * S + y) * S + x) * 3 + c;
}

/* f32 to bf16 as AVX512_BF16's VCVTNEPS2BF16 rounds (and so as a bf16
 * convolution converts its input): to nearest even; a denormal to a zero
 * of its sign; a NaN stays a quiet NaN. */
static inline uint16_t bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* value v at index `at` of a layout's values */
static inline void store_value(an_input_layout layout, void *dst, size_t at, float v)
{
    if (layout == AN_INPUT_PIXELS_BF16) ((uint16_t *)dst)[at] = bf16_bits(v);
    else ((float *)dst)[at] = v;
}

/* The part of a batch that one block converts: images first..first +
 * count - 1, columns x0..x0 + w - 1 and rows y0..y1 - 1 of channels c0..c1 - 1. */
typedef struct {
    int first, count, x0, w, y0, y1, c0, c1;
} block_span;

/* A span one value at a time (any strides, types and layouts); dst is
 * image s->first's. */
static void convert_span_scalar(const an_pixel_array *a, const block_span *s, an_input_layout layout, void *dst,
                                an_pixel_range *r, const an_input_norm *norm)
{
    const int S = a->w;
    for (int c = s->c0; c < s->c1; c++) {
        const float m = norm ? norm->mean[c] : 0.0f, k = norm ? norm->scale[c] : 1.0f;
        ptrdiff_t base = (ptrdiff_t)s->first * a->si + (a->channels == 1 ? 0 : c) * a->sc + (ptrdiff_t)s->x0 * a->sx;
        for (int y = s->y0; y < s->y1; y++)
            for (int x = 0; x < s->w; x++) {
                ptrdiff_t o = base + y * a->sy + x * a->sx;
                for (int j = 0; j < s->count; j++) {
                    float v = (float)pixel_at(a, o + j * a->si, r);
                    if (norm) v = (v - m) * k;
                    store_value(layout, dst, input_at(layout, S, j, c, y, s->x0 + x), v);
                }
            }
    }
}

#ifdef AN_HAVE_AVX2_KERNEL
#define AVX2 __attribute__((target("avx2")))
#define AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline

/* how many rows ahead the tiles are prefetched (measured: 1 or 2 best) */
#define PREFETCH_ROWS 1

AVX2_INLINE void transpose8(__m256 *r)
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

/* The running range of a kernel's values: doubles (min, max and any NaN
 * as vectors) or R's integers (NA_integer_ is INT32_MIN: found as the
 * min). */
typedef struct {
    __m256d mn, mx, bad;
    __m256i imn, imx;
} tile_range;

AVX2_INLINE void tile_range_init(tile_range *t)
{
    t->mn = _mm256_set1_pd(INFINITY);
    t->mx = _mm256_set1_pd(-INFINITY);
    t->bad = _mm256_setzero_pd();
    t->imn = _mm256_set1_epi32(INT32_MAX);
    t->imx = _mm256_set1_epi32(INT32_MIN);
}

/* 8 images' values (adjacent, from v) in each of 8 columns (sx apart) as
 * floats, r[column] with the images in its lanes, counted into t. The 16
 * vectors of doubles are reduced as a tree, so that the running min and
 * max wait on one operation, not sixteen. */
AVX2_INLINE void load_8x8(const an_pixel_array *a, int ints, ptrdiff_t at, __m256 *r, tile_range *t)
{
    if (ints) {
        const int *v = (const int *)a->data + at;
#pragma GCC unroll 8
        for (int x = 0; x < 8; x++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(v + x * a->sx));
            t->imn = _mm256_min_epi32(t->imn, q);
            t->imx = _mm256_max_epi32(t->imx, q);
            r[x] = _mm256_cvtepi32_ps(q);
        }
        return;
    }
    const double *v = (const double *)a->data + at;
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
    t->mn = _mm256_min_pd(t->mn, _mm256_min_pd(_mm256_min_pd(lo[0], lo[1]), _mm256_min_pd(lo[2], lo[3])));
    t->mx = _mm256_max_pd(t->mx, _mm256_max_pd(_mm256_max_pd(hi[0], hi[1]), _mm256_max_pd(hi[2], hi[3])));
    t->bad = _mm256_or_pd(t->bad, _mm256_or_pd(_mm256_or_pd(nan[0], nan[1]), _mm256_or_pd(nan[2], nan[3])));
}

/* The tile load_8x8 will read at `at` (8 cache lines) asked of the L2 now:
 * with R's layout each line of a row is in a page of its own, beyond what
 * the hardware prefetchers follow, so the rows ahead are asked for by hand. */
AVX2_INLINE void prefetch_8x8(const an_pixel_array *a, int ints, ptrdiff_t at)
{
    const ptrdiff_t bytes = ints ? (ptrdiff_t)sizeof(int) : (ptrdiff_t)sizeof(double);
    const char *v = (const char *)a->data + at * bytes;
#pragma GCC unroll 8
    for (int x = 0; x < 8; x++) _mm_prefetch(v + x * a->sx * bytes, _MM_HINT_T1);
}

AVX2 static void tile_range_merge(an_pixel_range *range, const tile_range *t, int ints)
{
    an_pixel_range own = {INFINITY, -INFINITY, 0};
    if (ints) {
        int lo[8], hi[8];
        _mm256_storeu_si256((__m256i *)(void *)lo, t->imn);
        _mm256_storeu_si256((__m256i *)(void *)hi, t->imx);
        for (int k = 0; k < 8; k++) {
            own.min = lo[k] < own.min ? lo[k] : own.min;
            own.max = hi[k] > own.max ? hi[k] : own.max;
        }
        own.nonfinite = own.min == (double)INT32_MIN;
    } else {
        double lo[4], hi[4];
        _mm256_storeu_pd(lo, t->mn);
        _mm256_storeu_pd(hi, t->mx);
        for (int k = 0; k < 4; k++) {
            own.min = lo[k] < own.min ? lo[k] : own.min;
            own.max = hi[k] > own.max ? hi[k] : own.max;
        }
        own.nonfinite = _mm256_movemask_pd(t->bad) != 0 || !isfinite(own.min) || !isfinite(own.max);
    }
    an_pixel_range_merge(range, &own);
}

/* A span of channel s->c0 (its images adjacent: si 1; its count and width
 * multiples of 8) into planes, 8 images x 8 columns at a time, row by row:
 * a row's values of every image are read together (adjacent in R's
 * layout), transposed into 8 rows of 8 columns and stored into their
 * images with norm as an_preprocess applies it: (x - mean) * scale, two
 * roundings. */
AVX2_INLINE void convert_planes_8x8(const an_pixel_array *a, int ints, const block_span *s, float *dst,
                                    an_pixel_range *range, const an_input_norm *norm)
{
    const int c = s->c0, x0 = s->x0, groups = s->count / 8, xgroups = s->w / 8, S = a->w;
    const __m256 m = _mm256_set1_ps(norm ? norm->mean[c] : 0.0f), k = _mm256_set1_ps(norm ? norm->scale[c] : 1.0f);
    const ptrdiff_t base = s->first + (a->channels == 1 ? 0 : c) * a->sc + (ptrdiff_t)x0 * a->sx;
    tile_range t;
    tile_range_init(&t);
    for (int y = s->y0; y < s->y1; y++)
        for (int xg = 0; xg < xgroups; xg++)
            for (int g = 0; g < groups; g++) {
                __m256 r[8];
                const ptrdiff_t at = base + y * a->sy + 8 * g + 8 * xg * a->sx;
                if (y + PREFETCH_ROWS < S) prefetch_8x8(a, ints, at + PREFETCH_ROWS * a->sy);
                load_8x8(a, ints, at, r, &t);
                transpose8(r);
                if (norm)
                    for (int j = 0; j < 8; j++) r[j] = _mm256_mul_ps(_mm256_sub_ps(r[j], m), k);
                float *d = dst + (size_t)8 * g * IMAGE(a) + (size_t)c * PLANE(a) + (size_t)y * S + x0 + 8 * xg;
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) _mm256_storeu_ps(d + (size_t)j * IMAGE(a), r[j]);
            }
    tile_range_merge(range, &t, ints);
}

AVX2 static void convert_planes_f64(const an_pixel_array *a, const block_span *s, float *dst, an_pixel_range *range,
                                    const an_input_norm *norm)
{
    convert_planes_8x8(a, 0, s, dst, range, norm);
}

AVX2 static void convert_planes_i32(const an_pixel_array *a, const block_span *s, float *dst, an_pixel_range *range,
                                    const an_input_norm *norm)
{
    convert_planes_8x8(a, 1, s, dst, range, norm);
}

/* ---- the same into pixels (AVX-512: a pixel's 3 values are interleaved
 * by one permute of two registers) ---- */
#define AVX512_INLINE __attribute__((target("avx2,avx512f,avx512vl"), always_inline)) static inline
#define AVX512 __attribute__((target("avx2,avx512f,avx512vl")))

/* 16 floats as bf16 (bf16_bits, 16 at a time) */
AVX512_INLINE __m256i bf16_16(__m512 f)
{
    const __m512i u = _mm512_castps_si512(f), one = _mm512_set1_epi32(1);
    __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                           _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
    __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    rounded = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x400000));
    rounded = _mm512_mask_and_epi32(rounded, tiny, u, _mm512_set1_epi32((int)0x80000000u));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
}

/* Where a pixel run's values come from: value k (pixel k / 3's channel
 * k % 3) is lane 8 (k % 3) + k / 3 of the registers [R | G] and B. */
typedef struct {
    __m512i lo, hi;
} pixel_lanes;

AVX512_INLINE pixel_lanes pixel_lanes_make(void)
{
    int lo[16], hi[16] = {0};
    for (int k = 0; k < 24; k++) (k < 16 ? lo : hi)[k % 16] = 8 * (k % 3) + k / 3;
    return (pixel_lanes){_mm512_loadu_si512(lo), _mm512_loadu_si512(hi)};
}

/* 8 pixels' channels (one register each) as 24 adjacent values at dst +
 * at (values of f32, or of bf16 with `bf16`) */
AVX512_INLINE void store_pixels_8(__m256 r, __m256 g, __m256 b, const pixel_lanes *lanes, int bf16, void *dst,
                                  size_t at)
{
    __m512 rg = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(r)), _mm256_castps_pd(g), 1));
    __m512 bz = _mm512_castps256_ps512(b);
    __m512 p0 = _mm512_permutex2var_ps(rg, lanes->lo, bz), p1 = _mm512_permutex2var_ps(rg, lanes->hi, bz);
    if (bf16) {
        uint16_t *d = (uint16_t *)dst + at;
        _mm256_storeu_si256((__m256i *)(void *)d, bf16_16(p0));
        _mm_storeu_si128((__m128i *)(void *)(d + 16), _mm256_castsi256_si128(bf16_16(p1)));
    } else {
        float *d = (float *)dst + at;
        _mm512_storeu_ps(d, p0);
        _mm256_storeu_ps(d + 16, _mm512_castps512_ps256(p1));
    }
}

/* A span of all 3 channels (its images adjacent; its count and width
 * multiples of 8) into pixels (f32, or bf16 with `bf16`):
 * each channel's 8 x 8 tile as the planes' kernel makes it, then each
 * image's 8 pixels of 3 values (24 adjacent values) by two permutes. */
AVX512_INLINE void convert_pixels_8x8(const an_pixel_array *a, int ints, int bf16, const block_span *s, void *dst,
                                      an_pixel_range *range, const an_input_norm *norm)
{
    const pixel_lanes lanes = pixel_lanes_make();
    const int S = a->w, channels = a->channels == 1 ? 1 : 3, x0 = s->x0, groups = s->count / 8, xgroups = s->w / 8;
    __m256 m[3], k[3];
    for (int c = 0; c < 3; c++) {
        m[c] = _mm256_set1_ps(norm ? norm->mean[c] : 0.0f);
        k[c] = _mm256_set1_ps(norm ? norm->scale[c] : 1.0f);
    }
    const ptrdiff_t base = s->first + (ptrdiff_t)x0 * a->sx;
    tile_range t;
    tile_range_init(&t);
    for (int y = s->y0; y < s->y1; y++)
        for (int xg = 0; xg < xgroups; xg++)
            for (int g = 0; g < groups; g++) {
                __m256 r[3][8];
                for (int c = 0; c < channels; c++) {
                    const ptrdiff_t at = base + c * a->sc + y * a->sy + 8 * g + 8 * xg * a->sx;
                    if (y + PREFETCH_ROWS < S) prefetch_8x8(a, ints, at + PREFETCH_ROWS * a->sy);
                    load_8x8(a, ints, at, r[c], &t);
                    transpose8(r[c]);
                }
                for (int c = channels; c < 3; c++) memcpy(r[c], r[0], sizeof r[0]);   /* grey */
                if (norm)
                    for (int c = 0; c < 3; c++)
                        for (int j = 0; j < 8; j++) r[c][j] = _mm256_mul_ps(_mm256_sub_ps(r[c][j], m[c]), k[c]);
                for (int j = 0; j < 8; j++)
                    store_pixels_8(r[0][j], r[1][j], r[2][j], &lanes, bf16, dst,
                                   input_at(AN_INPUT_PIXELS_F32, S, 8 * g + j, 0, y, x0 + 8 * xg));
            }
    tile_range_merge(range, &t, ints);
}

AVX512 static void convert_pixels_f64(const an_pixel_array *a, int bf16, const block_span *s, void *dst,
                                      an_pixel_range *range, const an_input_norm *norm)
{
    if (bf16) convert_pixels_8x8(a, 0, 1, s, dst, range, norm);
    else convert_pixels_8x8(a, 0, 0, s, dst, range, norm);
}

AVX512 static void convert_pixels_i32(const an_pixel_array *a, int bf16, const block_span *s, void *dst,
                                      an_pixel_range *range, const an_input_norm *norm)
{
    if (bf16) convert_pixels_8x8(a, 1, 1, s, dst, range, norm);
    else convert_pixels_8x8(a, 1, 0, s, dst, range, norm);
}

/* Row y of image i's planes into pixels with norm, 8 columns at a time
 * (the columns past a multiple of 8 are the caller's) */
AVX512 static void preprocess_row_pixels(const float *planes, int S, int y, const float mean[3], const float scale[3],
                                         int bf16, void *dst, size_t at)
{
    const pixel_lanes lanes = pixel_lanes_make();
    const size_t plane = (size_t)S * S;
    __m256 m[3], k[3];
    for (int c = 0; c < 3; c++) {
        m[c] = _mm256_set1_ps(mean[c]);
        k[c] = _mm256_set1_ps(scale[c]);
    }
    for (int x = 0; x + 8 <= S; x += 8) {
        __m256 v[3];
        for (int c = 0; c < 3; c++)
            v[c] = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(planes + c * plane + (size_t)y * S + x), m[c]), k[c]);
        store_pixels_8(v[0], v[1], v[2], &lanes, bf16, dst, at + (size_t)3 * x);
    }
}

#endif

void an_pixels_convert_block(const an_pixel_array *a, int first, int count, int block, an_input_layout layout,
                             void *dst, an_pixel_range *range, const an_input_norm *norm)
{
    an_pixel_range ignored;
    if (!range) {
        an_pixel_range_init(&ignored);
        range = &ignored;
    }
    /* block: (channel for planes,) column block, row band */
    const int S = a->w, planes = layout == AN_INPUT_PLANES;
    const int column_blocks = an_pixel_column_blocks(S);
    const int band = block % AN_PIXEL_BLOCK_BANDS, columns = block / AN_PIXEL_BLOCK_BANDS;
    const int band_rows = (S + AN_PIXEL_BLOCK_BANDS - 1) / AN_PIXEL_BLOCK_BANDS;
    block_span s = {.first = first, .count = count, .x0 = columns % column_blocks * AN_PIXEL_BLOCK_WIDTH,
                    .y0 = band * band_rows, .c0 = planes ? columns / column_blocks : 0};
    s.w = s.x0 + AN_PIXEL_BLOCK_WIDTH < S ? AN_PIXEL_BLOCK_WIDTH : S - s.x0;
    s.y1 = s.y0 + band_rows < S ? s.y0 + band_rows : S;
    s.c1 = planes ? s.c0 + 1 : 3;
    if (s.y0 >= s.y1) return;   /* an image of fewer rows than bands */
    const size_t value_bytes = layout == AN_INPUT_PIXELS_BF16 ? 2 : 4;
    int j = 0;
#ifdef AN_HAVE_AVX2_KERNEL
    if (a->si == 1 && (planes ? an_cpu_has_avx2() : an_cpu_has_avx512())) {
        int ints = a->type == AN_PIXELS_I32, bf16 = layout == AN_INPUT_PIXELS_BF16;
        block_span v = s;   /* the whole 8 x 8 tiles */
        v.count = j = count / 8 * 8;
        v.w = s.w / 8 * 8;
        if (v.count && v.w) {
            if (planes) (ints ? convert_planes_i32 : convert_planes_f64)(a, &v, dst, range, norm);
            else (ints ? convert_pixels_i32 : convert_pixels_f64)(a, bf16, &v, dst, range, norm);
        }
        if (v.w < s.w && v.count) {   /* the last columns of those images */
            block_span rest = v;
            rest.x0 += v.w;
            rest.w = s.w - v.w;
            convert_span_scalar(a, &rest, layout, dst, range, norm);
        }
    }
#endif
    if (j < count) {   /* the last images, every column */
        s.first += j;
        s.count -= j;
        convert_span_scalar(a, &s, layout, (char *)dst + (size_t)j * IMAGE(a) * value_bytes, range, norm);
    }
}

void an_preprocess(int n, int side, const float *x, const float mean[3], const float scale[3],
                   an_input_layout layout, void *y)
{
    const size_t plane = (size_t)side * side;
    if (layout == AN_INPUT_PLANES) {
        float *out = y;
#pragma omp parallel for collapse(2) schedule(static) num_threads(an_get_threads())
        for (int i = 0; i < n; i++)
            for (int c = 0; c < AN_INPUT_CHANNELS; c++) {
                const size_t off = ((size_t)i * AN_INPUT_CHANNELS + c) * plane;
                const float m = mean[c], s = scale[c];
#pragma omp simd
                for (size_t k = 0; k < plane; k++) out[off + k] = (x[off + k] - m) * s;
            }
        return;
    }
    const int bf16 = layout == AN_INPUT_PIXELS_BF16;
    int vector = 0;
#ifdef AN_HAVE_AVX2_KERNEL
    vector = an_cpu_has_avx512();
#endif
#pragma omp parallel for collapse(2) schedule(static) num_threads(an_get_threads())
    for (int i = 0; i < n; i++)
        for (int row = 0; row < side; row++) {
            const float *planes = x + (size_t)i * AN_INPUT_CHANNELS * plane;
            int done = 0;
#ifdef AN_HAVE_AVX2_KERNEL
            if (vector) {
                preprocess_row_pixels(planes, side, row, mean, scale, bf16, y,
                                      input_at(layout, side, i, 0, row, 0));
                done = side / 8 * 8;
            }
#endif
            for (int col = done; col < side; col++)
                for (int c = 0; c < AN_INPUT_CHANNELS; c++) {
                    float v = (planes[c * plane + (size_t)row * side + col] - mean[c]) * scale[c];
                    store_value(layout, y, input_at(layout, side, i, c, row, col), v);
                }
        }
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
        for (int block = 0; block < an_pixel_blocks(size, AN_INPUT_PLANES); block++)
            an_pixels_convert_block(a, index, 1, block, AN_INPUT_PLANES, dst, range, NULL);
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
            for (int block = 0; block < an_pixel_blocks(a->w, AN_INPUT_PLANES); block++)
                an_pixels_convert_block(a, first, count, block, AN_INPUT_PLANES, tmp, NULL, NULL);
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
