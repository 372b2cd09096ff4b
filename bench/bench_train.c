/* bench_train.c: training throughput of the engine (SGD step with Nesterov
 * momentum, cross-entropy, dropout 0.5) at a given batch size, and the
 * process's peak memory. Usage: bench_train [batch 16] [steps 12] [f32|bf16]
 * Prints: engine train[_bf16] batch=B ips=X peak_rss_mb=M */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "alexnet.h"
#include "benchutil.h"

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 16, steps = argc > 2 ? atoi(argv[2]) : 12;
    int classes = 2, bf16 = argc > 3 && strcmp(argv[3], "bf16") == 0;
    an_set_threads(2);
    an_net *net;
    if (an_net_create(classes, 1, &net) != AN_OK) { fprintf(stderr, "%s\n", an_error_message()); return 1; }
    if (bf16 && an_net_set_precision(net, AN_PRECISION_BF16) != AN_OK) {
        fprintf(stderr, "%s\n", an_error_message());
        return 1;
    }
    float *x = malloc(sizeof(float) * batch * AN_INPUT_PIXELS);
    int *labels = malloc(sizeof(int) * batch);
    srand(1);
    for (size_t i = 0; i < (size_t)batch * AN_INPUT_PIXELS; i++) x[i] = (float)(rand() % 256);
    for (int i = 0; i < batch; i++) labels[i] = i % classes;
    an_sgd opt = {1e-5f, 0.9f, 1e-6f, 0.0f, 1};
    double *t = malloc(sizeof(double) * steps);
    for (int s = -2; s < steps; s++) {   /* two warm-up steps */
        double loss = 0, t0 = now();
        int correct = 0;
        if (an_net_train_step(net, x, labels, batch, AN_LOSS_CROSS_ENTROPY, &opt, &loss, &correct) != AN_OK) {
            fprintf(stderr, "%s\n", an_error_message());
            return 1;
        }
        if (s >= 0) t[s] = now() - t0;
    }
    qsort(t, steps, sizeof *t, cmp_double);
    printf("engine train%s batch=%d ips=%.2f steps=%d peak_rss_mb=%.1f\n", bf16 ? "_bf16" : "", batch,
           batch / t[steps / 2], steps, peak_rss_mb());
    an_net_free(net);
    free(x); free(labels); free(t);
    return 0;
}
