/* net.c: the AlexNet graph with the Heuritech layer names, its single
 * parameter block, and the forward pass over the backend ops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "alexnet.h"
#include "ops.h"
#include "net_internal.h"
#include "rng.h"

/* name, is_conv, out, in, kh, kw, stride, pad, groups, relu; dense_3's out is the class count */
static const an_param_layer layer_table[AN_N_PARAM_LAYERS] = {
    {"conv_1", 1, 96, 3, 11, 11, 4, 0, 1, 1, 0, 0, 0, 0},
    {"conv_2", 1, 256, 96, 5, 5, 1, 2, 2, 1, 0, 0, 0, 0},
    {"conv_3", 1, 384, 256, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0},
    {"conv_4", 1, 384, 384, 3, 3, 1, 1, 2, 1, 0, 0, 0, 0},
    {"conv_5", 1, 256, 384, 3, 3, 1, 1, 2, 1, 0, 0, 0, 0},
    {"dense_1", 0, 4096, 256 * 6 * 6, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0},
    {"dense_2", 0, 4096, 4096, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0},
    {"dense_3", 0, 0, 4096, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0},
};

/* The graph (net_internal.h): each step's output with its shape per image,
 * its op, its parameter layer, and whether training drops units after it. */
const an_step an_steps[AN_N_OUTPUTS] = {
    {{"conv_1", 96, 55, 55}, AN_STEP_CONV, AN_P_CONV_1, 0},
    {{"pool_1", 96, 27, 27}, AN_STEP_POOL, -1, 0},
    {{"convpool_1", 96, 27, 27}, AN_STEP_LRN, -1, 0},
    {{"conv_2", 256, 27, 27}, AN_STEP_CONV, AN_P_CONV_2, 0},
    {{"pool_2", 256, 13, 13}, AN_STEP_POOL, -1, 0},
    {{"lrn_2", 256, 13, 13}, AN_STEP_LRN, -1, 0},
    {{"conv_3", 384, 13, 13}, AN_STEP_CONV, AN_P_CONV_3, 0},
    {{"conv_4", 384, 13, 13}, AN_STEP_CONV, AN_P_CONV_4, 0},
    {{"conv_5", 256, 13, 13}, AN_STEP_CONV, AN_P_CONV_5, 0},
    {{"convpool_5", 256, 6, 6}, AN_STEP_POOL, -1, 0},
    {{"dense_1", 4096, 1, 1}, AN_STEP_DENSE, AN_P_DENSE_1, 1},
    {{"dense_2", 4096, 1, 1}, AN_STEP_DENSE, AN_P_DENSE_2, 1},
    {{"dense_3", 0, 1, 1}, AN_STEP_DENSE, AN_P_DENSE_3, 0},
    {{"softmax", 0, 1, 1}, AN_STEP_SOFTMAX, -1, 0},
};

const char *an_output_name(int index)
{
    return index >= 0 && index < AN_N_OUTPUTS ? an_steps[index].out.name : NULL;
}

const char *an_param_layer_name(int index)
{
    return index >= 0 && index < AN_N_PARAM_LAYERS ? layer_table[index].name : NULL;
}

void an_default_mean(double mean[3])
{
    mean[0] = 123.68;
    mean[1] = 116.779;
    mean[2] = 103.939;
}

size_t an_param_count_for(int classes)
{
    size_t count = 0;
    for (int l = 0; l < AN_N_PARAM_LAYERS; l++) {
        const an_param_layer *L = &layer_table[l];
        size_t out = l == AN_P_DENSE_3 ? (size_t)classes : (size_t)L->out;
        count += out * (L->in / L->groups) * L->kh * L->kw + out;
    }
    return count;
}

const char *an_step_operation(int index)
{
    if (index < 0 || index >= AN_N_OUTPUTS) return NULL;
    switch (an_steps[index].kind) {
    case AN_STEP_POOL: return AN_POOL_TEXT;
    case AN_STEP_LRN: return AN_LRN_TEXT;
    case AN_STEP_SOFTMAX: return "softmax";
    default: return "";
    }
}

int an_output_find(const char *name)
{
    for (int i = 0; name && i < AN_N_OUTPUTS; i++)
        if (strcmp(name, an_steps[i].out.name) == 0) return i;
    return -1;
}

an_output_info an_net_output(const an_net *net, int index)
{
    an_output_info info = an_steps[index].out;
    if (index >= AN_DENSE_3) info.c = net->classes;
    return info;
}

size_t an_output_size(const an_net *net, int index)
{
    an_output_info o = an_net_output(net, index);
    return (size_t)o.c * o.h * o.w;
}

int an_net_classes(const an_net *net) { return net->classes; }
size_t an_net_param_count(const an_net *net) { return net->n_params; }
const an_param_layer *an_net_param_layer(const an_net *net, int i) { return &net->layers[i]; }
float *an_net_params(an_net *net)
{
    /* a GPU net's host copy catches up after SGD; a failed copy leaves it
     * behind (and the message in an_error_message()) */
    if (net->host_behind &&
        net->dev->ops->download(net->dev, net->params, net->dparams, net->n_params * sizeof(float)) == AN_OK)
        net->host_behind = 0;
    return net->params;
}

void an_net_params_changed(an_net *net)
{
    net->params_version++;
    if (!an_net_on_host(net)) net->device_behind = 1;
}

an_status an_net_params_to_device(an_net *net)
{
    if (!net->device_behind) return AN_OK;
    an_status s = net->dev->ops->upload(net->dev, net->dparams, net->params, net->n_params * sizeof(float));
    if (s == AN_OK) net->device_behind = 0;
    return s;
}

int an_net_device(const an_net *net) { return net->device; }
void an_net_set_mean(an_net *net, const float mean[3]) { memcpy(net->mean, mean, sizeof net->mean); }
void an_net_get_mean(const an_net *net, float mean[3]) { memcpy(mean, net->mean, sizeof net->mean); }
an_status an_net_set_input_scale(an_net *net, float scale)
{
    if (!(scale > 0) || !isfinite(scale)) return an_fail(AN_ERR_ARGUMENT, "input scale %g must be a positive number", scale);
    net->input_scale = scale;
    return AN_OK;
}
float an_net_input_scale(const an_net *net) { return net->input_scale; }

/* a CPU net of `classes` with its parameter block unfilled */
static an_status net_alloc(int classes, an_net **out)
{
    *out = NULL;
    if (classes < 1 || classes > 1000000)
        return an_fail(AN_ERR_ARGUMENT, "classes is %d: it must be between 1 and 1000000", classes);
    an_net *net = calloc(1, sizeof *net);
    if (!net) return an_fail(AN_ERR_MEMORY, "out of memory creating the network");
    net->classes = classes;
    net->input_scale = 1.0f;
    double mean[3];
    an_default_mean(mean);
    for (int c = 0; c < 3; c++) net->mean[c] = (float)mean[c];
    memcpy(net->layers, layer_table, sizeof layer_table);
    net->layers[AN_P_DENSE_3].out = classes;
    size_t offset = 0;
    for (int i = 0; i < AN_N_PARAM_LAYERS; i++) {
        an_param_layer *l = &net->layers[i];
        l->weight_offset = offset;
        l->weight_count = (size_t)l->out * (l->in / l->groups) * l->kh * l->kw;
        l->bias_offset = offset + l->weight_count;
        l->bias_count = (size_t)l->out;
        offset = l->bias_offset + l->bias_count;
    }
    net->n_params = offset;
    void *block = NULL;
    if (posix_memalign(&block, 64, offset * sizeof(float)) != 0) {
        free(net);
        return an_fail(AN_ERR_MEMORY, "out of memory allocating %zu parameters", offset);
    }
    net->params = net->dparams = block;
    if (an_train_new(&net->train) != AN_OK) {
        free(block);
        free(net);
        return AN_ERR_MEMORY;   /* the message stands */
    }
    net->dev = an_cpu_device();
    net->device = AN_DEVICE_CPU;
    net->params_version = 1;
    net->dropout = 0.5f;
    *out = net;
    return AN_OK;
}

an_status an_net_create(int classes, uint64_t seed, an_net **out)
{
    an_net *net;
    an_status s = net_alloc(classes, &net);
    *out = NULL;
    if (s != AN_OK) return s;
    /* he_normal as in the seed (Keras 1): normal, sd = sqrt(2 / fan_in); biases zero */
    an_rng rng;
    an_rng_seed(&rng, seed);
    for (int i = 0; i < AN_N_PARAM_LAYERS; i++) {
        an_param_layer *l = &net->layers[i];
        double fan_in = (double)(l->in / l->groups) * l->kh * l->kw;
        an_rng_normal_fill(&rng, net->params + l->weight_offset, l->weight_count, sqrt(2.0 / fan_in));
        memset(net->params + l->bias_offset, 0, l->bias_count * sizeof(float));
    }
    an_rng_seed(&net->dropout_rng, seed ^ 0x5DEECE66DULL);
    *out = net;
    return AN_OK;
}

static void plan_free(an_device *dev, an_plan *plan)
{
    if (!plan) return;
    const an_backend *B = dev->ops;
    for (int i = 0; i < AN_N_OUTPUTS; i++) {
        an_step_kind k = an_steps[i].kind;
        if (k == AN_STEP_CONV && plan->op[i].conv) B->conv_free(plan->op[i].conv);
        if (k == AN_STEP_POOL && plan->op[i].pool) B->pool_free(plan->op[i].pool);
        if (k == AN_STEP_LRN && plan->op[i].lrn) B->lrn_free(plan->op[i].lrn);
        B->release(dev, plan->act[i]);
        B->release(dev, plan->keep[i]);
    }
    B->release(dev, plan->grad_buf[0]);
    B->release(dev, plan->grad_buf[1]);
    B->release(dev, plan->input);
    free(plan);
}

static void free_plans(an_net *net)
{
    for (int i = 0; i < N_PLANS; i++) {
        plan_free(net->dev, net->plans[i]);
        net->plans[i] = NULL;
    }
}

/* Everything a net holds on its device: plans, training state, and on a
 * GPU the parameters (on the CPU they are the host block). The host copy
 * of the parameters must be current before this. */
static void release_device_state(an_net *net)
{
    free_plans(net);
    an_train_free(net->dev, net->train);
    net->train = NULL;
    if (an_net_on_host(net)) return;
    net->dev->ops->release(net->dev, net->dparams);
    net->dparams = NULL;
    net->dev->ops->close(net->dev);
}

void an_net_free(an_net *net)
{
    if (!net) return;
    release_device_state(net);
    free(net->params);
    free(net);
}

/* Move the net to `device` (AN_DEVICE_CPU or a CUDA ordinal): parameters
 * and optimizer state go along; plans are made anew there. On failure the
 * net stays where it was, unchanged. */
an_status an_net_set_device(an_net *net, int device)
{
    if (device == net->device) return AN_OK;
    if (device < AN_DEVICE_CPU) return an_fail(AN_ERR_ARGUMENT, "no device %d", device);
    /* the host copy catches up first: it is what moves */
    an_net_params(net);
    if (net->host_behind) return AN_ERR_BACKEND;       /* the download's message stands */
    an_device *dev = an_cpu_device();
    an_status s = AN_OK;
    if (device != AN_DEVICE_CPU && (s = an_cuda_device_open(device, &dev)) != AN_OK) return s;
    const an_backend *B = dev->ops;
    float *dparams = net->params;
    an_train *train = NULL;
    if (dev != an_cpu_device()) {
        size_t bytes = net->n_params * sizeof(float);
        s = B->alloc(dev, bytes, (void **)&dparams);
        if (s == AN_OK) s = B->upload(dev, dparams, net->params, bytes);
    }
    if (s == AN_OK) s = an_train_copy(net, dev, &train);
    if (s != AN_OK) {
        if (dev != an_cpu_device()) {
            B->release(dev, dparams);
            B->close(dev);
        }
        return s;
    }
    release_device_state(net);
    if (dev->ops->bf16_missing(dev)) net->precision = AN_PRECISION_F32;
    net->dev = dev;
    net->device = device;
    net->dparams = dparams;
    net->train = train;
    net->device_behind = net->host_behind = 0;
    net->params_version++;
    return AN_OK;
}

const char *an_bf16_missing(int device)
{
    if (device == AN_DEVICE_CPU) return an_cpu_device()->ops->bf16_missing(an_cpu_device());
    an_device *dev;
    if (an_cuda_device_open(device, &dev) != AN_OK) return an_error_message();
    const char *why = dev->ops->bf16_missing(dev);
    dev->ops->close(dev);
    return why;
}

const char *an_net_bf16_missing(const an_net *net) { return net->dev->ops->bf16_missing(net->dev); }

an_status an_net_set_precision(an_net *net, an_precision precision)
{
    if (precision != AN_PRECISION_F32 && precision != AN_PRECISION_BF16)
        return an_fail(AN_ERR_ARGUMENT, "unknown precision %d", (int)precision);
    if (precision == net->precision) return AN_OK;
    const char *why = precision == AN_PRECISION_BF16 ? an_net_bf16_missing(net) : NULL;
    if (why) return an_fail(AN_ERR_ARGUMENT, "bf16 is not available: %s", why);
    free_plans(net);    /* the ops are made for one precision */
    net->precision = precision;
    return AN_OK;
}

an_precision an_net_precision(const an_net *net) { return net->precision; }

/* An independent copy on the CPU: parameters, mean, input scale, frozen
 * layers, dropout rate and generator, and the optimizer state (velocity,
 * iterations); plans are made anew when used. Reads a GPU net's device
 * copies without changing the net. */
an_status an_net_clone(const an_net *src, an_net **out)
{
    *out = NULL;
    if (!src) return an_fail(AN_ERR_ARGUMENT, "no network to clone");
    an_net *net;
    an_status s = net_alloc(src->classes, &net);
    if (s != AN_OK) return s;
    size_t bytes = src->n_params * sizeof(float);
    if (src->host_behind) s = src->dev->ops->download(src->dev, net->params, src->dparams, bytes);
    else memcpy(net->params, src->params, bytes);
    an_train *train = NULL;
    if (s == AN_OK) s = an_train_copy(src, net->dev, &train);
    if (s != AN_OK) {
        an_net_free(net);
        return s;
    }
    an_train_free(net->dev, net->train);
    net->train = train;
    memcpy(net->mean, src->mean, sizeof net->mean);
    net->input_scale = src->input_scale;
    net->precision = src->precision;
    net->trainable_from = src->trainable_from;
    net->dropout = src->dropout;
    net->dropout_rng = src->dropout_rng;
    *out = net;
    return AN_OK;
}

static an_status alloc_floats(an_device *dev, float **out, size_t bytes)
{
    return dev->ops->alloc(dev, bytes ? bytes : 64, (void **)out);
}

double an_net_batch_bytes(const an_net *net, int n, int training)
{
    double per_image = AN_INPUT_PIXELS;
    for (int i = 0; i < AN_N_OUTPUTS; i++) per_image += (double)an_output_size(net, i);
    /* 30% for blocked layouts and reorder scratch; training at most doubles
     * it (two gradient buffers of the largest output, the backward's scratch) */
    return per_image * sizeof(float) * n * 1.3 * (training ? 2 : 1);
}

/* Refuse a batch whose activations alone would not fit in the device's
 * memory, before allocating anything. */
static an_status check_batch_memory(const an_net *net, int n, int training)
{
    double bytes = an_net_batch_bytes(net, n, training);
    double free_b = 0, total = 0;
    int on_host = an_net_on_host(net);
    if (net->dev->ops->memory(net->dev, &free_b, &total) != AN_OK) return AN_OK;  /* cannot tell: let allocation say */
    /* the CPU can page out other memory; a GPU has what is free */
    double limit = on_host ? 0.8 * total : free_b;
    if (limit > 0 && bytes > limit)
        return an_fail(AN_ERR_MEMORY, "a batch of %d images needs about %.1f GB for activations, more than %s "
                       "(%.1f GB): use a smaller batch_size", n, bytes / 1e9,
                       on_host ? "this machine's memory" : "the GPU has free", limit / 1e9);
    return AN_OK;
}

/* each step's op for this batch, walking the graph up */
static an_status plan_ops(const an_net *net, an_plan *p)
{
    an_device *dev = net->dev;
    const an_backend *B = dev->ops;
    const an_layout *prev = NULL;
    int n = p->n, training = p->training;
    an_status s = AN_OK;
    for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK; i++) {
        const an_step *st = &an_steps[i];
        an_output_info in = i == 0 ? (an_output_info){"input", AN_INPUT_CHANNELS, AN_INPUT_SIZE, AN_INPUT_SIZE}
                                   : an_steps[i - 1].out;
        if (st->kind == AN_STEP_CONV) {
            const an_param_layer *l = &net->layers[st->param];
            an_conv_spec cs = {n, in.c, in.h, in.w, l->out, l->kh, l->stride, l->pad, l->groups, l->relu,
                               net->precision == AN_PRECISION_BF16};
            s = B->conv_create(dev, &cs, training, prev, 0, &p->op[i].conv);
            if (s == AN_OK) prev = B->conv_out_layout(p->op[i].conv);
        } else if (st->kind == AN_STEP_POOL) {
            /* before a dense layer the output is plain: the dense layers read it as a matrix */
            int plain = i + 1 < AN_N_OUTPUTS && an_steps[i + 1].kind == AN_STEP_DENSE;
            an_pool_spec ps = {n, in.c, in.h, in.w, AN_POOL_K, AN_POOL_STRIDE};
            s = B->pool_create(dev, &ps, training, prev, plain, &p->op[i].pool);
            if (s == AN_OK) prev = plain ? NULL : B->pool_out_layout(p->op[i].pool);
        } else if (st->kind == AN_STEP_LRN) {
            an_lrn_spec ls = {n, in.c, in.h, in.w, AN_LRN_SIZE, AN_LRN_ALPHA, AN_LRN_BETA, AN_LRN_K};
            s = B->lrn_create(dev, &ls, training, prev, &p->op[i].lrn);   /* keeps its input's layout */
        } else {
            prev = NULL;
        }
        p->layout[i] = prev;
    }
    return s;
}

static an_status plan_create(const an_net *net, int n, int training, an_plan **out)
{
    *out = NULL;
    an_status s = check_batch_memory(net, n, training);
    if (s != AN_OK) return s;
    an_plan *p = calloc(1, sizeof *p);
    if (!p) return an_fail(AN_ERR_MEMORY, "out of memory creating a plan");
    an_device *dev = net->dev;
    const an_backend *B = dev->ops;
    p->n = n;
    p->training = training;
    s = plan_ops(net, p);
    if (s == AN_OK) s = alloc_floats(dev, &p->input, sizeof(float) * n * AN_INPUT_PIXELS);
    size_t largest = 0;
    for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK; i++) {
        size_t bytes = p->layout[i] ? B->layout_bytes(p->layout[i]) : sizeof(float) * n * an_output_size(net, i);
        if (bytes > largest) largest = bytes;
        s = alloc_floats(dev, &p->act[i], bytes);
        if (s == AN_OK && training && an_steps[i].dropout)
            s = B->alloc(dev, (size_t)n * an_output_size(net, i), (void **)&p->keep[i]);
    }
    for (int k = 0; k < 2 && s == AN_OK && training; k++) s = alloc_floats(dev, &p->grad_buf[k], largest);
    for (int i = 0; i < AN_N_OUTPUTS && training; i++) p->grad[i] = p->grad_buf[i % 2];
    if (s != AN_OK) { plan_free(dev, p); return s; }
    *out = p;
    return AN_OK;
}

/* The plan for `n` images, reusing one of the cached ones when it fits. */
an_status an_plan_for(an_net *net, int n, int training, an_plan **out)
{
    for (int i = 0; i < N_PLANS; i++) {
        an_plan *p = net->plans[i];
        if (p && p->n == n && p->training == training) {
            memmove(net->plans + 1, net->plans, sizeof(an_plan *) * i);
            net->plans[0] = p;
            *out = p;
            return AN_OK;
        }
    }
    an_plan *p;
    an_status s = plan_create(net, n, training, &p);
    if (s != AN_OK) return s;
    plan_free(net->dev, net->plans[N_PLANS - 1]);
    memmove(net->plans + 1, net->plans, sizeof(an_plan *) * (N_PLANS - 1));
    net->plans[0] = p;
    *out = p;
    return AN_OK;
}

/* training's dropout on step i's output */
static an_status step_dropout(an_net *net, an_plan *p, int i)
{
    size_t width = an_output_size(net, i);
    /* a share of a global batch skips the other ranks' rows of the mask */
    int before = net->share_global ? net->share_offset : 0;
    int after = net->share_global ? net->share_global - net->share_offset - p->n : 0;
    an_rng_skip(&net->dropout_rng, (size_t)before * width);
    an_status s = net->dev->ops->dropout_forward(net->dev, (size_t)p->n * width, net->dropout, &net->dropout_rng,
                                                 p->act[i], p->keep[i]);
    an_rng_skip(&net->dropout_rng, (size_t)after * width);
    return s;
}

/* Run the plan's forward steps first..until (step first - 1's output, or
 * for first 0 the input, already in place). In training, the dropout
 * masks of the steps below `first` are drawn as the whole pass would draw
 * them: skipped for the steps below first - 1, applied to first - 1's
 * output, so the masks above are the same either way. */
an_status an_plan_forward_from(an_net *net, an_plan *p, int first, int until)
{
    return an_plan_run(net, p, first, until, p->training && net->dropout > 0);
}

an_status an_plan_run(an_net *net, an_plan *p, int first, int until, int dropout)
{
    const float *P = net->dparams;
    const uint64_t v = net->params_version;
    const an_backend *B = net->dev->ops;
    an_status s = an_net_params_to_device(net);
    for (int i = 0; i < first && s == AN_OK && dropout; i++) {
        if (!an_steps[i].dropout) continue;
        if (i == first - 1) s = step_dropout(net, p, i);
        else an_rng_skip(&net->dropout_rng, (size_t)(net->share_global ? net->share_global : p->n) * an_output_size(net, i));
    }
    for (int i = first; i <= until && s == AN_OK; i++) {
        const an_step *st = &an_steps[i];
        const an_param_layer *l = st->param >= 0 ? &net->layers[st->param] : NULL;
        const float *x = i == 0 ? p->input : p->act[i - 1];
        float *y = p->act[i];
        switch (st->kind) {
        case AN_STEP_CONV:
            s = B->conv_forward(p->op[i].conv, x, P + l->weight_offset, P + l->bias_offset, v, y);
            break;
        case AN_STEP_POOL: s = B->pool_forward(p->op[i].pool, x, y); break;
        case AN_STEP_LRN: s = B->lrn_forward(p->op[i].lrn, x, y); break;
        case AN_STEP_DENSE:
            s = B->dense_forward(net->dev, p->n, l->in, l->out, x, P + l->weight_offset, P + l->bias_offset,
                                 l->relu, y);
            if (s == AN_OK && dropout && st->dropout) s = step_dropout(net, p, i);
            break;
        case AN_STEP_SOFTMAX: s = B->softmax_forward(net->dev, p->n, net->classes, x, y); break;
        }
    }
    return s;
}

an_status an_plan_forward(an_net *net, an_plan *p, int until) { return an_plan_forward_from(net, p, 0, until); }

int an_net_can_start_after(int at)
{
    /* a dense step reads plain rows, whatever the backend's layouts */
    return at == -1 || (at >= 0 && at + 1 < AN_N_OUTPUTS && an_steps[at + 1].kind == AN_STEP_DENSE);
}

an_status an_start_check(int at)
{
    if (an_net_can_start_after(at)) return AN_OK;
    return an_fail(AN_ERR_ARGUMENT, "the net cannot start after step %d: only the inputs of dense layers "
                   "(convpool_5, dense_1, dense_2) are kept as rows", at);
}

/* Training-mode ops (their arithmetic can differ from inference's in the
 * last bit), no dropout: the rows a training pass computes below `at`. */
static an_status frozen_rows(an_net *net, const float *images, int n, int at, float *out)
{
    if (!net || !images || !out) return an_fail(AN_ERR_ARGUMENT, "frozen rows called with a NULL pointer");
    if (n < 1) return an_fail(AN_ERR_ARGUMENT, "batch of %d images: at least 1 is needed", n);
    an_status s = at < 0 ? an_fail(AN_ERR_ARGUMENT, "rows are the output of a step, not the images") : an_start_check(at);
    if (s != AN_OK) return s;
    an_plan *p;
    s = an_plan_for(net, n, 1, &p);
    if (s == AN_OK) s = an_plan_load(net, p, -1, images);
    if (s == AN_OK) s = an_plan_run(net, p, 0, at, 0);
    if (s == AN_OK) s = an_plan_download(net, p, at, p->act[at], out);
    return s;
}

an_status an_net_frozen_rows(an_net *net, const float *images, int n, int at, float *out)
{
    sigset_t old;
    an_signals_hold(&old);
    an_status s = frozen_rows(net, images, n, at, out);
    an_signals_release(&old);
    return s;
}

int an_net_frozen_start(const an_net *net)
{
    /* the highest start at or below the lowest learning step whose rows a
     * training pass computes without dropout (dense_1's output is taken
     * before its dropout, which is then drawn on the rows) */
    int at = -1;
    for (int i = 0; i < AN_N_OUTPUTS - 1; i++) {
        if (an_steps[i].param >= net->trainable_from) break;
        if (an_net_can_start_after(i)) at = i;
        if (an_steps[i].dropout && net->dropout > 0) break;
    }
    return at;
}

an_status an_plan_load(an_net *net, an_plan *p, int at, const float *x)
{
    if (at == -1) return net->dev->ops->preprocess(net->dev, p->n, x, net->mean, net->input_scale, p->input);
    an_status s = an_start_check(at);
    if (s != AN_OK) return s;
    if (p->layout[at]) return an_fail(AN_ERR_ARGUMENT, "step %d's output is not plain rows on this device", at);
    return net->dev->ops->upload(net->dev, p->act[at], x, sizeof(float) * p->n * an_output_size(net, at));
}

static an_status net_forward(an_net *net, int at, const float *x, int n, int until, float *out);

an_status an_net_forward(an_net *net, const float *images, int n, int until, float *out)
{
    return an_net_forward_from(net, -1, images, n, until, out);
}

an_status an_net_forward_from(an_net *net, int at, const float *x, int n, int until, float *out)
{
    sigset_t old;
    an_signals_hold(&old);
    an_status s = net_forward(net, at, x, n, until, out);
    an_signals_release(&old);
    return s;
}

static an_status net_forward(an_net *net, int at, const float *x, int n, int until, float *out)
{
    if (!net || !x || !out) return an_fail(AN_ERR_ARGUMENT, "forward called with a NULL pointer");
    if (n < 1) return an_fail(AN_ERR_ARGUMENT, "batch of %d images: at least 1 is needed", n);
    if (until < 0 || until >= AN_N_OUTPUTS)
        return an_fail(AN_ERR_ARGUMENT, "unknown output index %d", until);
    if (until <= at) return an_fail(AN_ERR_ARGUMENT, "output index %d is not above the start %d", until, at);
    an_plan *p;
    an_status s = an_plan_for(net, n, 0, &p);
    if (s != AN_OK) return s;
    s = an_plan_load(net, p, at, x);
    if (s == AN_OK) s = an_plan_forward_from(net, p, at + 1, until);
    if (s == AN_OK) s = an_plan_download(net, p, until, p->act[until], out);
    return s;
}

an_status an_plan_download(an_net *net, an_plan *p, int step, const float *src, float *host)
{
    an_device *dev = net->dev;
    if (p->layout[step]) return dev->ops->download_plain(dev, p->layout[step], src, host);
    return dev->ops->download(dev, host, src, sizeof(float) * p->n * an_output_size(net, step));
}
