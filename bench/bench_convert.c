/* bench_convert: the array loader's conversion alone, one thread. A batch
 * of B consecutive 227 x 227 RGB images of an R array c(n, 227, 227, 3) of
 * doubles (n = 4 B unless given, the batch second, as bench_r.R calls it)
 * into the net's input (an_pixels_convert_block, every block) in each layout (planes,
 * pixels f32, pixels bf16), against a contiguous double-to-float copy of
 * as many values (the memory's own rate).
 * Usage: bench_convert [B [n]] (no B: batches 16, 32 and 64)
 * Prints: convert batch=B layout=L ms_per_image=X copy_ms_per_image=Y */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "images.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    enum { S = AN_INPUT_SIZE };
    int batches[] = {16, 32, 64};
    for (int k = 0; k < 3; k++) {
        int b = argc > 1 ? atoi(argv[1]) : batches[k], n = argc > 2 ? atoi(argv[2]) : 4 * b;
        if (b < 1 || n < 2 * b) {
            fprintf(stderr, "bench_convert: the array needs at least two batches of images\n");
            return 2;
        }
        size_t image = (size_t)3 * S * S, total = (size_t)n * image;
        double *x = malloc(total * sizeof *x);
        float *dst = malloc((size_t)b * image * sizeof *dst);
        if (!x || !dst) return 1;
        for (size_t i = 0; i < total; i++) x[i] = (double)(i % 251);
        an_pixel_array a = {x, AN_PIXELS_F64, n, S, S, 3, 1, n, (ptrdiff_t)n * S, (ptrdiff_t)n * S * S};
        static const char *names[] = {"planes", "pixels_f32", "pixels_bf16"};
        for (int layout = AN_INPUT_PLANES; layout <= AN_INPUT_PIXELS_BF16; layout++) {
            double best = 1e9, best_copy = 1e9;
            for (int rep = 0; rep < 7; rep++) {
                double t0 = now();
                for (int block = 0; block < an_pixel_blocks(a.w, layout); block++)
                    an_pixels_convert_block(&a, b, b, block, layout, dst, NULL, NULL);
                double t1 = now();
                const double *src = x + (size_t)b * image;
                for (size_t i = 0; i < (size_t)b * image; i++) dst[i] = (float)src[i];
                double t2 = now();
                if (t1 - t0 < best) best = t1 - t0;
                if (t2 - t1 < best_copy) best_copy = t2 - t1;
            }
            printf("convert batch=%d layout=%s ms_per_image=%.3f copy_ms_per_image=%.3f\n", b, names[layout],
                   best / b * 1e3, best_copy / b * 1e3);
        }
        free(x);
        free(dst);
        if (argc > 1) break;
    }
    return 0;
}
