/* train.c: the backward pass through the whole net and Keras' SGD
 * (momentum, Nesterov, time decay), with frozen layers skipped. */
#include <math.h>
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

/* The training state, on the net's device. */
struct an_train {
    float *grads;                       /* same layout as params; NULL until a backward pass */
    float *velocity;                    /* SGD momentum buffer; NULL until used */
    /* host mirrors of a GPU net's gradients and velocity, made on request
     * (on the CPU the blocks themselves are handed out) */
    float *host_grads, *host_velocity;
    int velocity_device_behind;         /* a caller was handed host_velocity to write */
    uint64_t iterations;                /* SGD steps taken, for Keras' time decay */
};

an_status an_train_new(an_train **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? AN_OK : an_fail(AN_ERR_MEMORY, "out of memory creating the network");
}

void an_train_free(an_device *dev, an_train *t)
{
    if (!t) return;
    dev->ops->release(dev, t->grads);
    dev->ops->release(dev, t->velocity);
    free(t->host_grads);
    free(t->host_velocity);
    free(t);
}

an_status an_train_copy(const an_net *net, an_device *to, an_train **out)
{
    const an_train *t = net->train;
    an_status s = an_train_new(out);
    if (s != AN_OK) return s;
    (*out)->iterations = t->iterations;
    /* the velocity as the host sees it: the CPU's block, the mirror a caller
     * was handed, or a fresh download */
    const int written = !an_net_on_host(net) && t->velocity_device_behind;
    if (!t->velocity && !written) return AN_OK;
    size_t bytes = net->n_params * sizeof(float);
    const float *host = an_net_on_host(net) ? t->velocity : written ? t->host_velocity : NULL;
    float *staged = NULL;
    if (!host) {
        if (!(staged = malloc(bytes)))
            s = an_fail(AN_ERR_MEMORY, "out of memory for a host copy of %zu parameters", net->n_params);
        if (s == AN_OK) s = net->dev->ops->download(net->dev, staged, t->velocity, bytes);
        host = staged;
    }
    if (s == AN_OK) s = to->ops->alloc(to, bytes, (void **)&(*out)->velocity);
    if (s == AN_OK) s = to->ops->upload(to, (*out)->velocity, host, bytes);
    free(staged);
    if (s != AN_OK) {
        an_train_free(to, *out);
        *out = NULL;
    }
    return s;
}

uint64_t an_net_iterations(const an_net *net) { return net->train->iterations; }
void an_net_set_iterations(an_net *net, uint64_t iterations) { net->train->iterations = iterations; }
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
    an_train *t = net->train;
    if (an_net_on_host(net) || !t->grads) return t->grads;
    return host_mirror(net, t->grads, &t->host_grads) == AN_OK ? t->host_grads : NULL;
}

an_status an_net_velocity(an_net *net, float **velocity)
{
    an_train *t = net->train;
    *velocity = NULL;
    if (an_net_on_host(net)) {
        an_status s = device_block(net, &t->velocity, "SGD momentum");
        *velocity = t->velocity;
        return s;
    }
    /* a GPU net hands out a host copy, which the caller may write: it goes
     * back to the device before the next update */
    an_status s = host_mirror(net, t->velocity, &t->host_velocity);
    if (s != AN_OK) return s;
    t->velocity_device_behind = 1;
    *velocity = t->host_velocity;
    return AN_OK;
}

static an_status net_backward(an_net *net, int at, const float *x, const int *labels, int n,
                              an_loss_kind loss, double *loss_sum, int *correct);

/* the entry points hold signals back while they compute (signals.c) */
an_status an_net_backward(an_net *net, const float *images, const int *labels, int n,
                          an_loss_kind loss, double *loss_sum, int *correct)
{
    an_call old;
    an_call_enter(&old);
    an_status s = net_backward(net, -1, images, labels, n, loss, loss_sum, correct);
    an_call_leave(&old);
    return s;
}

/* The frozen layers' output as the start (at >= 0): no learning layer
 * may lie at or below it. */
static an_status check_start(const an_net *net, int at)
{
    if (at == -1) return AN_OK;
    an_status s = an_start_check(at);   /* first: at indexes the steps below */
    if (s != AN_OK) return s;
    const an_step *steps = net->arch->steps;
    for (int i = 0; i <= at; i++)
        if (steps[i].param >= net->trainable_from)
            return an_fail(AN_ERR_ARGUMENT, "layer %s learns, but training starts above it (after %s)",
                           steps[i].out.name, steps[at].out.name);
    for (int i = 0; i < at; i++)
        if (steps[i].dropout && net->dropout > 0)
            return an_fail(AN_ERR_ARGUMENT, "training cannot start after %s: %s's dropout lies below it, so its "
                           "output changes from step to step", steps[at].out.name, steps[i].out.name);
    return AN_OK;
}

static an_status net_backward(an_net *net, int at, const float *x_in, const int *labels, int n,
                              an_loss_kind loss, double *loss_sum, int *correct)
{
    an_status s = batch_args(net, x_in, labels, n);
    if (s == AN_OK) s = check_start(net, at);
    if (s != AN_OK) return s;
    an_train *t = net->train;
    if ((s = device_block(net, &t->grads, "gradients")) != AN_OK) return s;
    an_plan *p;
    if ((s = an_plan_for(net, n, 1, &p)) != AN_OK) return s;
    const an_backend *B = net->dev->ops;
    an_device *dev = net->dev;
    if ((s = an_plan_load(net, p, at, x_in)) != AN_OK) return s;
    if ((s = an_plan_forward_from(net, p, at + 1, AN_SOFTMAX)) != AN_OK) return s;

    /* the loss gives dense_3's gradient (through the softmax) */
    s = B->loss(dev, n, net->classes, p->act[AN_DENSE_3], p->act[AN_SOFTMAX], labels, loss, p->grad[AN_DENSE_3],
                loss_sum, correct);
    /* down the graph to the first learning layer; a step's input gradient
     * is wanted only when a learning layer lies below it */
    int lowest = AN_DENSE_3;
    while (net->arch->steps[lowest].param != net->trainable_from) lowest--;
    if (s == AN_OK) s = an_plan_backward(net, p, lowest, 0, t->grads, net->dropout > 0);
    return s;
}

an_status an_plan_backward(an_net *net, an_plan *p, int lowest, int lowest_dx, float *G, int dropout)
{
    const an_backend *B = net->dev->ops;
    an_device *dev = net->dev;
    float **a = p->act, **g = p->grad;
    const float *P = net->dparams;
    const int n = p->n;
    an_status s = AN_OK;
    const an_step *steps = net->arch->steps;
    for (int i = AN_DENSE_3; i >= lowest && s == AN_OK; i--) {
        const an_step *st = &steps[i];
        const an_param_layer *l = st->param >= 0 ? &net->layers[st->param] : NULL;
        const float *x = i == 0 ? p->input : a[i - 1];
        float *dx = (i > lowest || lowest_dx) && i > 0 ? g[i - 1] : NULL;
        float *dw = G && l ? G + l->weight_offset : NULL, *db = G && l ? G + l->bias_offset : NULL;
        switch (st->kind) {
        case AN_STEP_CONV:
            s = B->conv_backward(p->op[i].conv, x, P + l->weight_offset, a[i], g[i], dx, dw, db);
            break;
        case AN_STEP_POOL: s = B->pool_backward(p->op[i].pool, x, a[i], g[i], dx); break;
        case AN_STEP_LRN: s = B->lrn_backward(p->op[i].lrn, x, a[i], g[i], dx); break;
        case AN_STEP_DENSE:
            s = B->dense_backward(dev, n, l->in, l->out, x, P + l->weight_offset, a[i], l->relu, g[i], dx, dw, db);
            break;
        case AN_STEP_SOFTMAX: break;   /* not reached: the loss covers it */
        case AN_STEP_NONE: break;      /* its input's gradient is its own (the same buffer) */
        }
        /* the input came through dropout: its dropped units get no gradient */
        if (s == AN_OK && dx && dropout && steps[i - 1].dropout)
            s = B->dropout_backward(dev, (size_t)n * an_output_size(net, i - 1), net->dropout, p->keep[i - 1], dx);
    }
    return s;
}

static an_status sgd_update(an_net *net, const an_sgd *opt);

an_status an_net_sgd_update(an_net *net, const an_sgd *opt)
{
    an_call old;
    an_call_enter(&old);
    an_status s = sgd_update(net, opt);
    an_call_leave(&old);
    return s;
}

static an_status sgd_update(an_net *net, const an_sgd *opt)
{
    an_train *t = net->train;
    if (!t->grads) return an_fail(AN_ERR_ARGUMENT, "no gradients yet: run a backward pass first");
    if (!(opt->lr >= 0) || !(opt->momentum >= 0 && opt->momentum < 1) || !(opt->decay >= 0) ||
        !(opt->weight_decay >= 0))
        return an_fail(AN_ERR_ARGUMENT, "invalid SGD settings (lr %g, momentum %g, decay %g, weight decay %g)",
                       opt->lr, opt->momentum, opt->decay, opt->weight_decay);
    an_device *dev = net->dev;
    an_status s = device_block(net, &t->velocity, "SGD momentum");
    if (s == AN_OK && t->velocity_device_behind) {
        s = dev->ops->upload(dev, t->velocity, t->host_velocity, net->n_params * sizeof(float));
        if (s == AN_OK) t->velocity_device_behind = 0;
    }
    if (s == AN_OK) s = an_net_params_to_device(net);
    if (s != AN_OK) return s;
    an_sgd_step step = {(float)(opt->lr / (1.0 + opt->decay * (double)t->iterations)), opt->momentum,
                        opt->weight_decay, opt->nesterov};
    for (int i = net->trainable_from; i < AN_N_PARAM_LAYERS && s == AN_OK; i++) {
        const an_param_layer *l = &net->layers[i];
        /* weights and bias are adjacent; weight decay applies to the weights only */
        size_t start = l->weight_offset;
        s = dev->ops->sgd(dev, l->bias_offset + l->bias_count - start, l->weight_count, net->dparams + start,
                          t->grads + start, t->velocity + start, &step);
    }
    if (s != AN_OK) return s;
    t->iterations++;
    net->params_version++;
    if (!an_net_on_host(net)) net->host_behind = 1;
    return AN_OK;
}

/* A batch whose mean loss is not finite (the comparison is false for NaN)
 * or has exploded is not learned from. */
static an_status check_loss(double loss_sum, int n)
{
    double mean = loss_sum / (n > 0 ? n : 1);
    if (mean <= AN_DIVERGED_LOSS) return AN_OK;
    return an_fail(AN_ERR_DIVERGED, "the batch's mean loss is %g (%s): training diverged, and that step was not applied",
                   mean, isfinite(mean) ? "more than 1000" : "not a number");
}

/* The entry points below hold signals back for the whole call (signals.c):
 * a caller needs no handling of its own. */
an_status an_net_train_step(an_net *net, const float *images, const int *labels, int n,
                            an_loss_kind loss, const an_sgd *opt, double *loss_sum, int *correct)
{
    return an_net_train_step_from(net, -1, images, labels, n, loss, opt, loss_sum, correct);
}

/* What a step found of the training state, so that a step refused for
 * memory can give back what it made: a net that half-grew its state would
 * hold up to 2 x 4 bytes per parameter (490 MB for 1000 classes) for
 * nothing, and starve whatever the process does next. */
typedef struct { int had_grads, had_velocity; } train_state_mark;

static train_state_mark mark_training_state(const an_net *net)
{
    return (train_state_mark){net->train->grads != NULL, net->train->velocity != NULL};
}

static void drop_new_training_state(an_net *net, train_state_mark mark, an_status s)
{
    an_train *t = net->train;
    if (s != AN_ERR_MEMORY) return;
    if (!mark.had_grads && t->grads) {
        net->dev->ops->release(net->dev, t->grads);
        t->grads = NULL;
    }
    if (!mark.had_velocity && t->velocity) {
        net->dev->ops->release(net->dev, t->velocity);
        t->velocity = NULL;
    }
}

/* A step on the host makes the gradients and the momentum it lacks only
 * where both fit with a margin to spare: at its memory limit a process
 * fails anywhere, R's own stack growth included (an_host_memory_room). */
#define HOST_MARGIN_BYTES (128.0 * 1024 * 1024)

static an_status check_training_room(const an_net *net)
{
    const an_train *t = net->train;
    if (!an_net_on_host(net)) return AN_OK;
    double block = (double)net->n_params * sizeof(float);
    double need = (t->grads ? 0 : block) + (t->velocity ? 0 : block);
    if (need == 0) return AN_OK;
    double room = an_host_memory_room();
    if (need + HOST_MARGIN_BYTES <= room) return AN_OK;
    return an_fail(AN_ERR_MEMORY, "out of host memory for training: the gradients and momentum of %zu parameters "
                   "need %.0f MB more; this process can take %.0f MB more (the machine's free memory, or what its "
                   "limits, ulimit -v / -d, leave) and keeps %.0f MB of that spare", net->n_params, need / 1e6,
                   room / 1e6, HOST_MARGIN_BYTES / 1e6);
}

an_status an_net_train_step_from(an_net *net, int at, const float *x, const int *labels, int n,
                                 an_loss_kind loss, const an_sgd *opt, double *loss_sum, int *correct)
{
    an_call old;
    an_call_enter(&old);
    double batch_loss = 0;
    train_state_mark mark = mark_training_state(net);
    an_status s = check_training_room(net);
    if (s == AN_OK) s = net_backward(net, at, x, labels, n, loss, &batch_loss, correct);
    *loss_sum += batch_loss;
    if (s == AN_OK) s = check_loss(batch_loss, n);
    if (s == AN_OK) s = sgd_update(net, opt);
    drop_new_training_state(net, mark, s);
    an_call_leave(&old);
    return s;
}

static an_status train_step_shared(an_net *net, const float *images, const int *labels, int n, int row_offset,
                                   int global_rows, an_loss_kind loss, const an_sgd *opt,
                                   const an_reducer *reducer, double *loss_sum, int *correct);

an_status an_net_train_step_shared(an_net *net, const float *images, const int *labels, int n, int row_offset,
                                   int global_rows, an_loss_kind loss, const an_sgd *opt, const an_reducer *reducer,
                                   double *loss_sum, int *correct)
{
    an_call old;
    an_call_enter(&old);
    train_state_mark mark = mark_training_state(net);
    an_status s = check_training_room(net);
    if (s == AN_OK) s = train_step_shared(net, images, labels, n, row_offset, global_rows, loss, opt, reducer, loss_sum,
                                    correct);
    drop_new_training_state(net, mark, s);
    an_call_leave(&old);
    return s;
}

static an_status train_step_shared(an_net *net, const float *images, const int *labels, int n, int row_offset,
                                   int global_rows, an_loss_kind loss, const an_sgd *opt,
                                   const an_reducer *reducer, double *loss_sum, int *correct)
{
    if (!reducer || !reducer->sum) return an_fail(AN_ERR_ARGUMENT, "a shared training step needs a reducer");
    if (row_offset < 0 || n < 0 || global_rows < 1 || global_rows < n || row_offset > global_rows - n)
        return an_fail(AN_ERR_ARGUMENT, "rows %d..%d are not a share of a global batch of %d", row_offset + 1,
                       row_offset + n, global_rows);
    an_train *t = net->train;
    double local_loss = 0;
    int local_correct = 0;
    an_status s;
    if (n > 0) {
        net->share_offset = row_offset;
        net->share_global = global_rows;
        s = net_backward(net, -1, images, labels, n, loss, &local_loss, &local_correct);
        net->share_offset = net->share_global = 0;
    } else {
        /* a rank without rows in this (last, small) batch still takes part
         * in the sum, with zero gradients; its dropout draws are skipped */
        s = device_block(net, &t->grads, "gradients");
        if (s == AN_OK) s = net->dev->ops->zero(net->dev, t->grads, net->n_params * sizeof(float));
        for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK && net->dropout > 0; i++)
            if (net->arch->steps[i].dropout) an_rng_skip(&net->dropout_rng, (size_t)global_rows * an_output_size(net, i));
    }
    if (s != AN_OK) return s;
    /* only the learning layers' gradients travel; each rank's are weighted by
     * its share, so that their sum is the gradient of the global batch mean */
    size_t start = net->layers[net->trainable_from].weight_offset, count = net->n_params - start;
    const float weight = (float)n / (float)global_rows;
    double scalars[2] = {local_loss, local_correct};
    if (reducer->device_values) {   /* NCCL: the sum stays on the GPU */
        s = net->dev->ops->scale(net->dev, t->grads + start, count, weight);
        if (s == AN_OK) s = reducer->sum(reducer->ctx, t->grads + start, count, scalars, 2);
        if (s != AN_OK) return s;
        *loss_sum += scalars[0];
        *correct += (int)scalars[1];
        if ((s = check_loss(scalars[0], global_rows)) != AN_OK) return s;
        return sgd_update(net, opt);
    }
    float *g = t->grads;
    if (!an_net_on_host(net)) {
        if ((s = host_mirror(net, t->grads, &t->host_grads)) != AN_OK) return s;
        g = t->host_grads;
    }
    for (size_t i = start; i < net->n_params; i++) g[i] *= weight;
    if ((s = reducer->sum(reducer->ctx, g + start, count, scalars, 2)) != AN_OK) return s;
    if (!an_net_on_host(net) &&
        (s = net->dev->ops->upload(net->dev, t->grads + start, g + start, count * sizeof(float))) != AN_OK)
        return s;
    *loss_sum += scalars[0];
    *correct += (int)scalars[1];
    if ((s = check_loss(scalars[0], global_rows)) != AN_OK) return s;
    return sgd_update(net, opt);
}

an_status an_net_evaluate(an_net *net, const float *images, const int *labels, int n,
                          an_loss_kind loss, double *loss_sum, int *correct)
{
    return an_net_evaluate_from(net, -1, images, labels, n, loss, loss_sum, correct);
}

an_status an_net_evaluate_from(an_net *net, int at, const float *x, const int *labels, int n,
                               an_loss_kind loss, double *loss_sum, int *correct)
{
    an_status s = batch_args(net, x, labels, n);
    if (s != AN_OK) return s;
    size_t k = (size_t)n * net->classes;
    float *buf = malloc(sizeof(float) * 3 * k);
    if (!buf) return an_fail(AN_ERR_MEMORY, "out of memory evaluating a batch");
    float *logits = buf, *prob = buf + k, *dlogits = buf + 2 * k;
    an_call old;
    an_call_enter(&old);
    s = an_net_forward_from(net, at, x, n, AN_DENSE_3, logits);
    if (s == AN_OK) {
        an_softmax_forward(n, net->classes, logits, prob);
        an_loss_forward_backward(n, net->classes, logits, prob, labels, loss, dlogits, loss_sum, correct);
    }
    an_call_leave(&old);
    free(buf);
    return s;
}

void an_net_reset_optimizer(an_net *net)
{
    an_train *t = net->train;
    size_t bytes = net->n_params * sizeof(float);
    /* a failed clear on a GPU frees the block instead: it comes back zeroed */
    if (t->velocity && net->dev->ops->zero(net->dev, t->velocity, bytes) != AN_OK) {
        net->dev->ops->release(net->dev, t->velocity);
        t->velocity = NULL;
    }
    if (t->host_velocity) memset(t->host_velocity, 0, bytes);
    t->velocity_device_behind = 0;
    t->iterations = 0;
}
