/* peak_flops.c: the machine's single-precision FLOP rate on T threads.
 *
 *   1. theoretical-ish peak: a register-only FMA loop (AVX-512 zmm with 16
 *      and AVX2 ymm with 12 independent accumulators per thread, so the FMA
 *      latency is hidden), run on T OpenMP threads at once;
 *   2. achievable peak: a large square dnnl_sgemm (row-major, N x N x N).
 *
 * Usage: peak_flops [threads=2] [gemm_n=4096]
 * Output (one line per measurement, machine readable):
 *   peak fma512 threads=2 gflops=... best_gflops=...
 *   peak fma256 threads=2 gflops=... best_gflops=...
 *   peak sgemm threads=2 n=4096 gflops=... best_gflops=...
 * `gflops` is the median of the repetitions, `best_gflops` the maximum.
 */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dnnl.h>
#include "benchutil.h"

static double max_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++) if (v[i] > m) m = v[i];
    return m;
}

/* 16 accumulators x 16 lanes x 2 flops per iteration = 512 flops */
__attribute__((noinline, target("avx512f,fma")))
static float fma512_kernel(long iters, float a_in, float b_in)
{
    __m512 a = _mm512_set1_ps(a_in), b = _mm512_set1_ps(b_in);
    __m512 c0 = _mm512_set1_ps(0.f), c1 = _mm512_set1_ps(1.f), c2 = _mm512_set1_ps(2.f),
           c3 = _mm512_set1_ps(3.f), c4 = _mm512_set1_ps(4.f), c5 = _mm512_set1_ps(5.f),
           c6 = _mm512_set1_ps(6.f), c7 = _mm512_set1_ps(7.f), c8 = _mm512_set1_ps(8.f),
           c9 = _mm512_set1_ps(9.f), c10 = _mm512_set1_ps(10.f), c11 = _mm512_set1_ps(11.f),
           c12 = _mm512_set1_ps(12.f), c13 = _mm512_set1_ps(13.f), c14 = _mm512_set1_ps(14.f),
           c15 = _mm512_set1_ps(15.f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_fmadd_ps(c0, a, b);   c1 = _mm512_fmadd_ps(c1, a, b);
        c2 = _mm512_fmadd_ps(c2, a, b);   c3 = _mm512_fmadd_ps(c3, a, b);
        c4 = _mm512_fmadd_ps(c4, a, b);   c5 = _mm512_fmadd_ps(c5, a, b);
        c6 = _mm512_fmadd_ps(c6, a, b);   c7 = _mm512_fmadd_ps(c7, a, b);
        c8 = _mm512_fmadd_ps(c8, a, b);   c9 = _mm512_fmadd_ps(c9, a, b);
        c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
        c12 = _mm512_fmadd_ps(c12, a, b); c13 = _mm512_fmadd_ps(c13, a, b);
        c14 = _mm512_fmadd_ps(c14, a, b); c15 = _mm512_fmadd_ps(c15, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                       _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
    return _mm512_reduce_add_ps(s);
}

/* 12 accumulators x 8 lanes x 2 flops per iteration = 192 flops (AVX2 has
 * only 16 ymm registers: 12 accumulators + 2 operands stay in registers) */
__attribute__((noinline, target("avx2,fma")))
static float fma256_kernel(long iters, float a_in, float b_in)
{
    __m256 a = _mm256_set1_ps(a_in), b = _mm256_set1_ps(b_in);
    __m256 c0 = _mm256_set1_ps(0.f), c1 = _mm256_set1_ps(1.f), c2 = _mm256_set1_ps(2.f),
           c3 = _mm256_set1_ps(3.f), c4 = _mm256_set1_ps(4.f), c5 = _mm256_set1_ps(5.f),
           c6 = _mm256_set1_ps(6.f), c7 = _mm256_set1_ps(7.f), c8 = _mm256_set1_ps(8.f),
           c9 = _mm256_set1_ps(9.f), c10 = _mm256_set1_ps(10.f), c11 = _mm256_set1_ps(11.f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(c0, a, b);   c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b);   c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b);   c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b);   c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b);   c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    float t = 0;
    for (int i = 0; i < 8; i++) t += out[i];
    return t;
}

static volatile float sink;

/* Runs the kernel on `threads` threads at once; returns GFLOP/s of the whole team. */
static double run_fma(int wide, int threads, long iters)
{
    volatile float a = 0.9999999f, b = 1e-7f;
    float aa = a, bb = b;
    double t0 = 0, t1 = 0;
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
#pragma omp barrier
#pragma omp master
        t0 = now();
        total += wide ? fma512_kernel(iters, aa, bb) : fma256_kernel(iters, aa, bb);
#pragma omp barrier
#pragma omp master
        t1 = now();
    }
    sink = total;
    double flops = (double)threads * iters * (wide ? 512.0 : 192.0);
    return flops / (t1 - t0) / 1e9;
}

static void bench_fma(int wide, int threads, int reps)
{
    /* calibrate: about 0.4 s per repetition */
    long iters = 1L << 20;
    for (;;) {
        double t0 = now();
        run_fma(wide, threads, iters);
        double dt = now() - t0;
        if (dt > 0.1) { iters = (long)(iters * 0.4 / dt) + 1; break; }
        iters *= 4;
    }
    double g[64];
    for (int r = 0; r < reps; r++) g[r] = run_fma(wide, threads, iters);
    double best = max_of(g, reps);
    printf("peak %s threads=%d gflops=%.1f best_gflops=%.1f reps=%d\n",
           wide ? "fma512" : "fma256", threads, median(g, reps), best, reps);
    fflush(stdout);
}

static int bench_sgemm(int threads, long n, int reps)
{
    float *A = malloc(sizeof(float) * n * n), *B = malloc(sizeof(float) * n * n),
          *C = malloc(sizeof(float) * n * n);
    if (!A || !B || !C) { fprintf(stderr, "peak_flops: out of memory\n"); return 1; }
    srand(1);
    for (long i = 0; i < n * n; i++) {
        A[i] = (float)rand() / RAND_MAX - 0.5f;
        B[i] = (float)rand() / RAND_MAX - 0.5f;
        C[i] = 0;
    }
    omp_set_num_threads(threads);
    double g[64];
    for (int r = -1; r < reps; r++) {   /* r = -1: warm-up */
        double t0 = now();
        dnnl_status_t st = dnnl_sgemm('N', 'N', n, n, n, 1.f, A, n, B, n, 0.f, C, n);
        double dt = now() - t0;
        if (st != dnnl_success) { fprintf(stderr, "peak_flops: dnnl_sgemm failed (%d)\n", (int)st); return 1; }
        if (r >= 0) g[r] = 2.0 * n * n * n / dt / 1e9;
    }
    sink = C[n + 1];
    double best = max_of(g, reps);
    printf("peak sgemm threads=%d n=%ld gflops=%.1f best_gflops=%.1f reps=%d\n",
           threads, n, median(g, reps), best, reps);
    fflush(stdout);
    free(A); free(B); free(C);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    long n = argc > 2 ? atol(argv[2]) : 4096;
    if (threads < 1 || threads > 256 || n < 64 || n > 16384) {
        fprintf(stderr, "usage: peak_flops [threads=2] [gemm_n=4096]\n");
        return 2;
    }
    omp_set_dynamic(0);
    if (__builtin_cpu_supports("avx512f")) bench_fma(1, threads, 7);
    bench_fma(0, threads, 7);
    if (threads > 1) {   /* one thread, for reference */
        if (__builtin_cpu_supports("avx512f")) bench_fma(1, 1, 5);
    }
    return bench_sgemm(threads, n, 5);
}
