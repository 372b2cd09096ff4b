/* train.c: the backward pass through the whole net and Keras' SGD
 * (momentum, Nesterov, time decay), with frozen layers skipped. */
#include <stdlib.h>
#include <string.h>
#include "net_internal.h"

static an_status check_labels(const an_net *net, const int *labels, int n)
{
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= net->classes)
            return an_fail(AN_ERR_ARGUMENT, "label %d of image %d is outside 0..%d (the net has %d classes)",
                           labels[i], i + 1, net->classes - 1, net->classes);
    return AN_OK;
}

static an_status batch_args(const an_net *net, const float *images, const int *labels, int n)
{
    if (!net || !images || !labels) return an_fail(AN_ERR_ARGUMENT, "training called with a NULL pointer");
    if (n < 1) return an_fail(AN_ERR_ARGUMENT, "batch of %d images: at least 1 is needed", n);
    return check_labels(net, labels, n);
}

an_status an_net_set_trainable_from(an_net *net, int first)
{
    if (first < 0 || first >= AN_N_PARAM_LAYERS)
        return an_fail(AN_ERR_ARGUMENT, "no parameter layer %d: 0 to %d", first, AN_N_PARAM_LAYERS - 1);
    net->trainable_from = first;
    return AN_OK;
}

int an_net_trainable_from(const an_net *net) { return net->trainable_from; }

an_status an_net_set_dropout(an_net *net, float rate)
{
    if (!(rate >= 0 && rate < 1)) return an_fail(AN_ERR_ARGUMENT, "dropout rate %g is not in [0, 1)", rate);
    net->dropout = rate;
    return AN_OK;
}

void an_net_seed_dropout(an_net *net, uint64_t seed) { an_rng_seed(&net->dropout_rng, seed); }

uint64_t an_net_iterations(const an_net *net) { return net->iterations; }
void an_net_set_iterations(an_net *net, uint64_t iterations) { net->iterations = iterations; }
/* a zeroed block of n_params floats on the net's device */
static an_status device_block(an_net *net, float **block, const char *what)
{
    if (*block) return AN_OK;
    size_t bytes = net->n_params * sizeof(float);
    an_status s = net->dev->ops->alloc(net->dev, bytes, (void **)block);
    if (s != AN_OK) return an_fail(s, "out of %s memory for the %s (%zu parameters)",
                                   an_net_on_host(net) ? "host" : "GPU", what, net->n_params);
    if ((s = net->dev->ops->zero(net->dev, *block, bytes)) != AN_OK) {
        net->dev->ops->release(net->dev, *block);
        *block = NULL;
    }
    return s;
}

/* the host copy of a GPU net's block, fetched now */
static an_status host_mirror(an_net *net, const float *device_block, float **mirror)
{
    size_t bytes = net->n_params * sizeof(float);
    if (!*mirror && !(*mirror = malloc(bytes)))
        return an_fail(AN_ERR_MEMORY, "out of memory for a host copy of %zu parameters", net->n_params);
    if (!device_block) { memset(*mirror, 0, bytes); return AN_OK; }
    return net->dev->ops->download(net->dev, *mirror, device_block, bytes);
}

const float *an_net_grads(an_net *net)
{
    if (an_net_on_host(net) || !net->grads) return net->grads;
    return host_mirror(net, net->grads, &net->host_grads) == AN_OK ? net->host_grads : NULL;
}

an_status an_net_velocity(an_net *net, float **velocity)
{
    *velocity = NULL;
    if (an_net_on_host(net)) {
        an_status s = device_block(net, &net->velocity, "SGD momentum");
        *velocity = net->velocity;
        return s;
    }
    /* a GPU net hands out a host copy, which the caller may write: it goes
     * back to the device before the next update */
    an_status s = host_mirror(net, net->velocity, &net->host_velocity);
    if (s != AN_OK) return s;
    net->velocity_device_behind = 1;
    *velocity = net->host_velocity;
    return AN_OK;
}

static an_status net_backward(an_net *net, const float *images, const int *labels, int n,
                              an_loss_kind loss, double *loss_sum, int *correct);

/* the entry points hold signals back while they compute (signals.c) */
an_status an_net_backward(an_net *net, const float *images, const int *labels, int n,
                          an_loss_kind loss, double *loss_sum, int *correct)
{
    sigset_t old;
    an_signals_hold(&old);
    an_status s = net_backward(net, images, labels, n, loss, loss_sum, correct);
    an_signals_release(&old);
    return s;
}

static an_status net_backward(an_net *net, const float *images, const int *labels, int n,
                              an_loss_kind loss, double *loss_sum, int *correct)
{
    an_status s = batch_args(net, images, labels, n);
    if (s != AN_OK) return s;
    if ((s = device_block(net, &net->grads, "gradients")) != AN_OK) return s;
    an_plan *p;
    if ((s = an_plan_for(net, n, 1, &p)) != AN_OK) return s;
    const an_backend *B = net->dev->ops;
    an_device *dev = net->dev;
    if ((s = B->preprocess(dev, n, images, net->mean, net->input_scale, p->input)) != AN_OK) return s;
    if ((s = an_plan_forward(net, p, AN_SOFTMAX)) != AN_OK) return s;

    float **a = p->act, **g = p->grad;
    const an_param_layer *L = net->layers;
    const float *P = net->dparams;
    float *G = net->grads;
    const int first = net->trainable_from;
    s = B->loss(dev, n, net->classes, a[AN_DENSE_3], a[AN_SOFTMAX], labels, loss, g[AN_DENSE_3], loss_sum, correct);
    if (s != AN_OK) return s;
#define W(i) (P + L[i].weight_offset)
#define DW(i) (G + L[i].weight_offset)
#define DB(i) (G + L[i].bias_offset)
    /* dense_3, dense_2, dense_1: gradients flow down only as far as a layer still learns */
    for (int d = 2; d >= 0; d--) {
        int li = AN_P_DENSE_1 + d;
        if (li < first) return AN_OK;
        const an_param_layer *l = &L[li];
        float *dx = li > first ? g[AN_CONVPOOL_5 + d] : NULL;
        s = B->dense_backward(dev, n, l->in, l->out, a[AN_CONVPOOL_5 + d], W(li), a[AN_DENSE_1 + d], l->relu,
                              g[AN_DENSE_1 + d], dx, DW(li), DB(li));
        if (s == AN_OK && dx && d > 0 && net->dropout > 0)
            s = B->dropout_backward(dev, (size_t)n * l->in, net->dropout, p->keep[d - 1], dx);
        if (s != AN_OK) return s;
    }
    if (first > AN_P_CONV_5) return AN_OK;
    /* convolutions, top down; each step's input gradient is wanted only when
     * a learning layer lies below it */
    static const int conv_in[5] = {-1, AN_CONVPOOL_1, AN_LRN_2, AN_CONV_3, AN_CONV_4};
    static const int conv_out[5] = {AN_CONV_1, AN_CONV_2, AN_CONV_3, AN_CONV_4, AN_CONV_5};
    s = B->pool_backward(p->pool[2], a[AN_CONV_5], a[AN_CONVPOOL_5], g[AN_CONVPOOL_5], g[AN_CONV_5]);
    for (int c = 4; c >= first && s == AN_OK; c--) {
        const float *x = c == 0 ? p->input : a[conv_in[c]];
        float *dx = c > first ? g[conv_in[c]] : NULL;
        s = B->conv_backward(p->conv[c], x, W(c), a[conv_out[c]], g[conv_out[c]], dx, DW(c), DB(c));
        if (s != AN_OK || !dx || c > 2) continue;
        /* below conv_3 and conv_2 lie an LRN and a pooling */
        int k = c - 1;   /* 1: lrn_2/pool_2, 0: convpool_1/pool_1 */
        int lrn_out = k ? AN_LRN_2 : AN_CONVPOOL_1, pool_out = k ? AN_POOL_2 : AN_POOL_1;
        s = B->lrn_backward(p->lrn[k], a[pool_out], a[lrn_out], g[lrn_out], g[pool_out]);
        if (s == AN_OK) s = B->pool_backward(p->pool[k], a[conv_out[k]], a[pool_out], g[pool_out], g[conv_out[k]]);
    }
    return s;
#undef W
#undef DW
#undef DB
}

static an_status sgd_update(an_net *net, const an_sgd *opt);

an_status an_net_sgd_update(an_net *net, const an_sgd *opt)
{
    sigset_t old;
    an_signals_hold(&old);
    an_status s = sgd_update(net, opt);
    an_signals_release(&old);
    return s;
}

static an_status sgd_update(an_net *net, const an_sgd *opt)
{
    if (!net->grads) return an_fail(AN_ERR_ARGUMENT, "no gradients yet: run a backward pass first");
    if (!(opt->lr >= 0) || !(opt->momentum >= 0 && opt->momentum < 1) || !(opt->decay >= 0) ||
        !(opt->weight_decay >= 0))
        return an_fail(AN_ERR_ARGUMENT, "invalid SGD settings (lr %g, momentum %g, decay %g, weight decay %g)",
                       opt->lr, opt->momentum, opt->decay, opt->weight_decay);
    an_device *dev = net->dev;
    an_status s = device_block(net, &net->velocity, "SGD momentum");
    if (s == AN_OK && net->velocity_device_behind) {
        s = dev->ops->upload(dev, net->velocity, net->host_velocity, net->n_params * sizeof(float));
        if (s == AN_OK) net->velocity_device_behind = 0;
    }
    if (s == AN_OK) s = an_net_params_to_device(net);
    if (s != AN_OK) return s;
    an_sgd_step step = {(float)(opt->lr / (1.0 + opt->decay * (double)net->iterations)), opt->momentum,
                        opt->weight_decay, opt->nesterov};
    for (int i = net->trainable_from; i < AN_N_PARAM_LAYERS && s == AN_OK; i++) {
        const an_param_layer *l = &net->layers[i];
        /* weights and bias are adjacent; weight decay applies to the weights only */
        size_t start = l->weight_offset;
        s = dev->ops->sgd(dev, l->bias_offset + l->bias_count - start, l->weight_count, net->dparams + start,
                          net->grads + start, net->velocity + start, &step);
    }
    if (s != AN_OK) return s;
    net->iterations++;
    net->params_version++;
    if (!an_net_on_host(net)) net->host_behind = 1;
    return AN_OK;
}

an_status an_net_train_step(an_net *net, const float *images, const int *labels, int n,
                            an_loss_kind loss, const an_sgd *opt, double *loss_sum, int *correct)
{
    an_status s = an_net_backward(net, images, labels, n, loss, loss_sum, correct);
    return s == AN_OK ? an_net_sgd_update(net, opt) : s;
}

an_status an_net_train_step_shared(an_net *net, const float *images, const int *labels, int n, int row_offset,
                                   int global_rows, an_loss_kind loss, const an_sgd *opt, const an_reducer *reducer,
                                   double *loss_sum, int *correct)
{
    if (!reducer || !reducer->sum) return an_fail(AN_ERR_ARGUMENT, "a shared training step needs a reducer");
    if (row_offset < 0 || n < 0 || global_rows < 1 || global_rows < n || row_offset > global_rows - n)
        return an_fail(AN_ERR_ARGUMENT, "rows %d..%d are not a share of a global batch of %d", row_offset + 1,
                       row_offset + n, global_rows);
    double local_loss = 0;
    int local_correct = 0;
    an_status s;
    if (n > 0) {
        net->share_offset = row_offset;
        net->share_global = global_rows;
        s = an_net_backward(net, images, labels, n, loss, &local_loss, &local_correct);
        net->share_offset = net->share_global = 0;
    } else {
        /* a rank without rows in this (last, small) batch still takes part
         * in the sum, with zero gradients; its dropout draws are skipped */
        s = device_block(net, &net->grads, "gradients");
        if (s == AN_OK) s = net->dev->ops->zero(net->dev, net->grads, net->n_params * sizeof(float));
        for (int d = 0; d < 2 && s == AN_OK && net->dropout > 0; d++)
            an_rng_skip(&net->dropout_rng, (size_t)global_rows * net->layers[AN_P_DENSE_1 + d].out);
    }
    if (s != AN_OK) return s;
    /* only the learning layers' gradients travel; each rank's are weighted by
     * its share, so that their sum is the gradient of the global batch mean */
    size_t start = net->layers[net->trainable_from].weight_offset, count = net->n_params - start;
    const float weight = (float)n / (float)global_rows;
    double scalars[2] = {local_loss, local_correct};
    if (reducer->device_values) {   /* NCCL: the sum stays on the GPU */
        s = net->dev->ops->scale(net->dev, net->grads + start, count, weight);
        if (s == AN_OK) s = reducer->sum(reducer->ctx, net->grads + start, count, scalars, 2);
        if (s != AN_OK) return s;
        *loss_sum += scalars[0];
        *correct += (int)scalars[1];
        return an_net_sgd_update(net, opt);
    }
    float *g = net->grads;
    if (!an_net_on_host(net)) {
        if ((s = host_mirror(net, net->grads, &net->host_grads)) != AN_OK) return s;
        g = net->host_grads;
    }
    for (size_t i = start; i < net->n_params; i++) g[i] *= weight;
    if ((s = reducer->sum(reducer->ctx, g + start, count, scalars, 2)) != AN_OK) return s;
    if (!an_net_on_host(net) &&
        (s = net->dev->ops->upload(net->dev, net->grads + start, g + start, count * sizeof(float))) != AN_OK)
        return s;
    *loss_sum += scalars[0];
    *correct += (int)scalars[1];
    return an_net_sgd_update(net, opt);
}

an_status an_net_evaluate(an_net *net, const float *images, const int *labels, int n,
                          an_loss_kind loss, double *loss_sum, int *correct)
{
    an_status s = batch_args(net, images, labels, n);
    if (s != AN_OK) return s;
    size_t k = (size_t)n * net->classes;
    float *buf = malloc(sizeof(float) * 3 * k);
    if (!buf) return an_fail(AN_ERR_MEMORY, "out of memory evaluating a batch");
    float *logits = buf, *prob = buf + k, *dlogits = buf + 2 * k;
    s = an_net_forward(net, images, n, AN_DENSE_3, logits);
    if (s == AN_OK) {
        an_softmax_forward(n, net->classes, logits, prob);
        an_loss_forward_backward(n, net->classes, logits, prob, labels, loss, dlogits, loss_sum, correct);
    }
    free(buf);
    return s;
}

void an_net_reset_optimizer(an_net *net)
{
    size_t bytes = net->n_params * sizeof(float);
    /* a failed clear on a GPU frees the block instead: it comes back zeroed */
    if (net->velocity && net->dev->ops->zero(net->dev, net->velocity, bytes) != AN_OK) {
        net->dev->ops->release(net->dev, net->velocity);
        net->velocity = NULL;
    }
    if (net->host_velocity) memset(net->host_velocity, 0, bytes);
    net->velocity_device_behind = 0;
    net->iterations = 0;
}
