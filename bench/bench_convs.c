/* bench_convs.c: the five convolutions of the net alone, f32 against bf16,
 * forward and backward (input gradient, weight gradient together), through
 * the engine's op (ops.h: plain input, the op's own output layout), so the
 * figures include the conversions to bf16 that the net pays.
 * Usage: bench_convs [batch 32] [reps 5]
 * Prints: convs <layer> batch=B f32_fwd_ms=.. bf16_fwd_ms=.. f32_bwd_ms=.. bf16_bwd_ms=.. */
#include <stdio.h>
#include <stdlib.h>

#include "alexnet.h"
#include "benchutil.h"
#include "ops.h"

static double time_op(const an_conv_spec *s, int backward, int reps)
{
    int oh, ow;
    an_conv_output_hw(s, &oh, &ow);
    size_t nx = (size_t)s->n * s->in * s->h * s->w, nw = (size_t)s->out * (s->in / s->groups) * s->k * s->k;
    size_t ny = (size_t)s->n * s->out * oh * ow + 64;   /* blocked layouts may pad channels */
    float *x = calloc(nx, sizeof(float)), *w = calloc(nw, sizeof(float)), *b = calloc(s->out, sizeof(float));
    float *y = calloc(ny * 2, sizeof(float)), *dy = calloc(ny * 2, sizeof(float)), *dx = calloc(nx * 2, sizeof(float));
    float *dw = calloc(nw, sizeof(float)), *db = calloc(s->out, sizeof(float));
    for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 251) / 251.0f;
    for (size_t i = 0; i < nw; i++) w[i] = (float)((int)(i % 17) - 8) / 100.0f;
    an_conv *op = NULL;
    double best = -1;
    if (an_conv_create(s, backward, NULL, 0, &op) == AN_OK) {
        double *t = malloc(sizeof(double) * reps);
        for (int r = -1; r < reps; r++) {   /* one untimed run */
            double t0 = now();
            an_status st = backward ? an_conv_backward(op, x, w, y, dy, s->in == 3 ? NULL : dx, dw, db)
                                    : an_conv_forward(op, x, w, b, 1, y);
            if (st != AN_OK) { fprintf(stderr, "%s\n", an_error_message()); break; }
            if (r >= 0) t[r] = now() - t0;
            if (r == -1 && backward) an_conv_forward(op, x, w, b, 1, y);
        }
        qsort(t, reps, sizeof *t, cmp_double);
        best = t[reps / 2] * 1e3;
        free(t);
    }
    an_conv_free(op);
    free(x); free(w); free(b); free(y); free(dy); free(dx); free(dw); free(db);
    return best;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 32, reps = argc > 2 ? atoi(argv[2]) : 5;
    an_set_threads(2);
    if (an_bf16_missing(AN_DEVICE_CPU)) {
        printf("# no bf16 here: %s\n", an_bf16_missing(AN_DEVICE_CPU));
        return 0;
    }
    static const struct { const char *name; an_conv_spec s; } convs[] = {
        {"conv_1", {0, 3, 227, 227, 96, 11, 4, 0, 1, 1, 0}},
        {"conv_2", {0, 96, 27, 27, 256, 5, 1, 2, 2, 1, 0}},
        {"conv_3", {0, 256, 13, 13, 384, 3, 1, 1, 1, 1, 0}},
        {"conv_4", {0, 384, 13, 13, 384, 3, 1, 1, 2, 1, 0}},
        {"conv_5", {0, 384, 13, 13, 256, 3, 1, 1, 2, 1, 0}},
    };
    double sum[4] = {0};
    for (int i = 0; i < 5; i++) {
        an_conv_spec s = convs[i].s, sb;
        s.n = n;
        sb = s;
        sb.bf16 = 1;
        double v[4] = {time_op(&s, 0, reps), time_op(&sb, 0, reps), time_op(&s, 1, reps), time_op(&sb, 1, reps)};
        for (int k = 0; k < 4; k++) sum[k] += v[k];
        printf("convs %s batch=%d f32_fwd_ms=%.1f bf16_fwd_ms=%.1f f32_bwd_ms=%.1f bf16_bwd_ms=%.1f\n", convs[i].name, n,
               v[0], v[1], v[2], v[3]);
    }
    printf("convs all batch=%d f32_fwd_ms=%.1f bf16_fwd_ms=%.1f f32_bwd_ms=%.1f bf16_bwd_ms=%.1f\n", n, sum[0], sum[1],
           sum[2], sum[3]);
    return 0;
}
