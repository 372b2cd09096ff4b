/* rows.h: the per-row softmax and loss and the per-value SGD update, shared
 * by the CPU backend (plain C) and the CUDA kernels (compiled as device code
 * there), so both backends do the same arithmetic in the same order. */
#ifndef AN_ROWS_H
#define AN_ROWS_H

#include <math.h>

#ifdef __CUDACC__
#define AN_ROW_FN static __host__ __device__ inline
#else
#define AN_ROW_FN static inline
#endif

/* softmax of one row of `classes` logits; the sum in double */
AN_ROW_FN void an_softmax_row(const float *z, float *p, int classes)
{
    float max = z[0];
    for (int j = 1; j < classes; j++) if (z[j] > max) max = z[j];
    double sum = 0;
    for (int j = 0; j < classes; j++) sum += p[j] = expf(z[j] - max);
    for (int j = 0; j < classes; j++) p[j] = (float)(p[j] / sum);
}

/* One row's loss (returned), whether its argmax is the label (*correct),
 * and the gradient of the batch-mean loss wrt its logits (dz), for a batch
 * of n rows. Cross-entropy from the logits (exact where p underflows), or
 * Keras' mean squared error on the softmax, through the softmax. */
AN_ROW_FN double an_loss_row(const float *z, const float *p, int label, int n, int classes, int mse, float *dz,
                             int *correct)
{
    int best = 0;
    for (int j = 1; j < classes; j++) if (p[j] > p[best]) best = j;
    *correct = best == label;
    if (!mse) {
        float max = z[0];
        for (int j = 1; j < classes; j++) if (z[j] > max) max = z[j];
        double sum = 0;
        for (int j = 0; j < classes; j++) sum += exp((double)z[j] - max);
        for (int j = 0; j < classes; j++) dz[j] = (p[j] - (j == label)) / n;
        return log(sum) - ((double)z[label] - max);
    }
    double loss = 0, dot = 0;
    for (int j = 0; j < classes; j++) {
        double d = p[j] - (j == label);
        loss += d * d;
        dz[j] = (float)(2.0 * d / ((double)n * classes));
        dot += dz[j] * p[j];
    }
    for (int j = 0; j < classes; j++) dz[j] = (float)(p[j] * (dz[j] - dot));
    return loss / classes;
}

/* Keras' SGD on one value; `decayed`: a weight (not a bias) */
AN_ROW_FN void an_sgd_value(float *p, float g, float *v, int decayed, float lr, float mu, float wd, int nesterov)
{
    float grad = g + (decayed ? wd * *p : 0.0f);
    float vk = mu * *v - lr * grad;
    *v = vk;
    *p += nesterov ? mu * vk - lr * grad : vk;
}

#endif
