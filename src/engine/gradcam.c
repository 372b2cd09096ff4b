/* gradcam.c: Grad-CAM (Selvaraju et al. 2017), where a class's evidence
 * lies in an image. The gradient of the class's score (its logit, before
 * the softmax) with respect to a convolutional step's output, averaged per
 * channel, weights the channels' activations; their sum, negatives set to
 * zero, is the map. The forward and backward passes are the net's own (a
 * training plan, for the pooling's and LRN's workspaces), without dropout
 * and without parameter gradients: weights, gradients and optimiser state
 * stay as they were. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "net_internal.h"

static an_status gradcam_args(const an_net *net, const float *images, int n, int layer, const int *classes)
{
    if (!images || !classes || n < 1) return an_fail(AN_ERR_ARGUMENT, "Grad-CAM needs at least one image");
    an_step_kind kind = layer >= 0 && layer < AN_N_OUTPUTS ? net->arch->steps[layer].kind : AN_STEP_NONE;
    if (kind == AN_STEP_DENSE || kind == AN_STEP_SOFTMAX || kind == AN_STEP_NONE)
        return an_fail(AN_ERR_ARGUMENT, "Grad-CAM needs a convolution, pooling or LRN output (conv_1 to "
                       "convpool_5), not step %d", layer);
    for (int i = 0; i < n; i++)
        if (classes[i] < -1 || classes[i] >= net->classes)
            return an_fail(AN_ERR_ARGUMENT, "class %d of image %d is outside 1..%d", classes[i] + 1, i + 1,
                           net->classes);
    return AN_OK;
}

/* step i's output or gradient (src) of plan p, plain, in a new host block */
static an_status download_new(an_net *net, an_plan *p, int i, const float *src, float **out)
{
    size_t count = (size_t)p->n * an_output_size(net, i);
    *out = malloc(count * sizeof **out);
    if (!*out) return an_fail(AN_ERR_MEMORY, "out of memory for %zu values", count);
    return an_plan_download(net, p, i, src, *out);
}

static an_status gradcam(an_net *net, const float *images, int n, int layer, int *classes, float *maps)
{
    an_status s = gradcam_args(net, images, n, layer, classes);
    an_plan *p;
    if (s == AN_OK) s = an_plan_for(net, n, 1, &p);
    if (s == AN_OK) s = an_plan_load(net, p, -1, images);
    if (s == AN_OK) s = an_plan_run(net, p, 0, AN_DENSE_3, 0);
    if (s != AN_OK) return s;
    an_device *dev = net->dev;
    const int k = net->classes;
    /* the score's gradient: 1 at the class's logit, 0 elsewhere */
    float *logits = malloc(sizeof(float) * n * k);
    if (!logits) return an_fail(AN_ERR_MEMORY, "out of memory for %d x %d logits", n, k);
    s = dev->ops->download(dev, logits, p->act[AN_DENSE_3], sizeof(float) * n * k);
    for (int i = 0; i < n && s == AN_OK; i++) {
        const float *row = logits + (size_t)i * k;
        if (classes[i] < 0) {
            int best = 0;
            for (int j = 1; j < k; j++)
                if (row[j] > row[best]) best = j;
            classes[i] = best;
        }
    }
    if (s == AN_OK) {
        memset(logits, 0, sizeof(float) * n * k);
        for (int i = 0; i < n; i++) logits[(size_t)i * k + classes[i]] = 1.0f;
        s = dev->ops->upload(dev, p->grad[AN_DENSE_3], logits, sizeof(float) * n * k);
    }
    free(logits);
    if (s == AN_OK) s = an_plan_backward(net, p, layer + 1, 1, NULL, 0);
    float *act = NULL, *grad = NULL;
    if (s == AN_OK) s = download_new(net, p, layer, p->act[layer], &act);
    if (s == AN_OK) s = download_new(net, p, layer, p->grad[layer], &grad);
    if (s == AN_OK) {
        const an_output_info o = net->arch->steps[layer].out;
        const size_t plane = (size_t)o.h * o.w;
        for (int i = 0; i < n; i++) {
            float *map = maps + (size_t)i * plane;
            memset(map, 0, plane * sizeof *map);
            for (int c = 0; c < o.c; c++) {
                const float *a = act + ((size_t)i * o.c + c) * plane, *g = grad + ((size_t)i * o.c + c) * plane;
                double weight = 0;
                for (size_t q = 0; q < plane; q++) weight += g[q];
                weight /= (double)plane;
                for (size_t q = 0; q < plane; q++) map[q] += (float)(weight * a[q]);
            }
            for (size_t q = 0; q < plane; q++)
                if (!(map[q] > 0)) map[q] = 0;
        }
    }
    free(act);
    free(grad);
    return s;
}

an_status an_net_gradcam(an_net *net, const float *images, int n, int layer, int *classes, float *maps)
{
    an_call old;
    an_call_enter(&old);
    an_status s = gradcam(net, images, n, layer, classes, maps);
    an_call_leave(&old);
    return s;
}
