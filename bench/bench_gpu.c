/* bench_gpu.c: the engine's AlexNet on a CUDA GPU, timed as bench_gpu.py
 * times PyTorch: images come from host memory every step (as they do from
 * R), features are brought back to the host, a training step ends when its
 * loss is on the host.
 *
 * Usage: bench_gpu [--batches 16,128] [--steps 30] [--warmup 5] [--device 0]
 *                  [--precision f32|bf16]
 * Output: engine_gpu <case> batch=B ips=X ms=Y   (median over steps; bf16:
 *         the case is named <case>_bf16)
 *         engine_gpu info device="..." tf32=1 precision=f32
 * bf16 sets AN_CUDA_BF16=1 (see ops_cuda.cu), the convolutions in bf16.
 * Cases: features (to convpool_5), inference (to the softmax), train (one
 * SGD step). Exit status 1 when a step fails. */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "alexnet.h"
#include "benchutil.h"

int main(int argc, char **argv)
{
    char batches[64] = "16,128";
    int steps = 30, warmup = 5, device = 0, bf16 = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batches") == 0) snprintf(batches, sizeof batches, "%s", argv[i + 1]);
        else if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--warmup") == 0) warmup = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--device") == 0) device = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--precision") == 0) bf16 = strcmp(argv[i + 1], "bf16") == 0;
        else { fprintf(stderr, "bench_gpu: unknown option %s\n", argv[i]); return 2; }
    }
    if (steps < 1 || steps > 10000 || warmup < 0) { fprintf(stderr, "bench_gpu: bad --steps/--warmup\n"); return 2; }
    if (an_cuda_device_count() <= device) {
        printf("engine_gpu skipped: no CUDA device %d (built with CUDA: %s)\n", device, an_cuda_built() ? "yes" : "no");
        return 3;   /* the GPU check treats this as "did not run" */
    }
    char desc[256];
    an_cuda_describe(device, desc, sizeof desc);
    if (bf16) setenv("AN_CUDA_BF16", "1", 1);
    printf("engine_gpu info device=\"%s\" tf32=%d precision=%s\n", desc, an_cuda_tf32(), bf16 ? "bf16" : "f32");
    double *t = malloc(sizeof(double) * steps);
    int rc = 0;
    for (char *b = strtok(batches, ","); b && rc == 0; b = strtok(NULL, ",")) {
        int n = atoi(b);
        size_t pixels = (size_t)n * AN_INPUT_PIXELS;
        float *x = malloc(pixels * sizeof(float)), *feat = malloc((size_t)n * 9216 * sizeof(float));
        int *labels = malloc(sizeof(int) * n);
        for (size_t i = 0; i < pixels; i++) x[i] = (float)((i * 2654435761u) >> 24);
        for (int i = 0; i < n; i++) labels[i] = i % 2;
        an_net *net = NULL;
        if (an_net_create(2, 1, &net) != AN_OK || an_net_set_device(net, device) != AN_OK ||
            (bf16 && an_net_set_precision(net, AN_PRECISION_BF16) != AN_OK)) {
            fprintf(stderr, "bench_gpu: %s\n", an_error_message());
            rc = 1;
        }
        an_sgd opt = {1e-5f, 0.9f, 0, 0, 1};
        static const char *cases[] = {"features", "inference", "train"};
        for (int c = 0; c < 3 && rc == 0; c++) {
            for (int s = 0; s < warmup + steps && rc == 0; s++) {
                double t0 = now(), loss = 0;
                int correct = 0;
                an_status st = c == 0   ? an_net_forward(net, x, n, AN_CONVPOOL_5, feat)
                               : c == 1 ? an_net_forward(net, x, n, AN_SOFTMAX, feat)
                                        : an_net_train_step(net, x, labels, n, AN_LOSS_CROSS_ENTROPY, &opt, &loss,
                                                            &correct);
                if (st != AN_OK) { fprintf(stderr, "bench_gpu: %s\n", an_error_message()); rc = 1; }
                if (s >= warmup) t[s - warmup] = now() - t0;
            }
            if (rc == 0) {
                double ms = median(t, steps) * 1e3;
                printf("engine_gpu %s%s batch=%d ips=%.1f ms=%.3f\n", cases[c], bf16 ? "_bf16" : "", n, n / ms * 1e3,
                       ms);
                fflush(stdout);
            }
        }
        an_net_free(net);
        free(x); free(feat); free(labels);
    }
    free(t);
    return rc;
}
