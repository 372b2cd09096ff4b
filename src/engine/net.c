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

static const an_output_info output_table[AN_N_OUTPUTS] = {
    {"conv_1", 96, 55, 55},  {"pool_1", 96, 27, 27},   {"convpool_1", 96, 27, 27},
    {"conv_2", 256, 27, 27}, {"pool_2", 256, 13, 13},  {"lrn_2", 256, 13, 13},
    {"conv_3", 384, 13, 13}, {"conv_4", 384, 13, 13},  {"conv_5", 256, 13, 13},
    {"convpool_5", 256, 6, 6}, {"dense_1", 4096, 1, 1}, {"dense_2", 4096, 1, 1},
    {"dense_3", 0, 1, 1},    {"softmax", 0, 1, 1},
};

int an_output_find(const char *name)
{
    for (int i = 0; name && i < AN_N_OUTPUTS; i++)
        if (strcmp(name, output_table[i].name) == 0) return i;
    return -1;
}

an_output_info an_net_output(const an_net *net, int index)
{
    an_output_info info = output_table[index];
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

an_status an_net_create(int classes, uint64_t seed, an_net **out)
{
    *out = NULL;
    if (classes < 1 || classes > 1000000)
        return an_fail(AN_ERR_ARGUMENT, "classes is %d: it must be between 1 and 1000000", classes);
    an_net *net = calloc(1, sizeof *net);
    if (!net) return an_fail(AN_ERR_MEMORY, "out of memory creating the network");
    net->classes = classes;
    net->input_scale = 1.0f;
    net->mean[0] = 123.68f; net->mean[1] = 116.779f; net->mean[2] = 103.939f;
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
    net->dev = an_cpu_device();
    net->device = AN_DEVICE_CPU;
    /* he_normal as in the seed (Keras 1): normal, sd = sqrt(2 / fan_in); biases zero */
    an_rng rng;
    an_rng_seed(&rng, seed);
    for (int i = 0; i < AN_N_PARAM_LAYERS; i++) {
        an_param_layer *l = &net->layers[i];
        double fan_in = (double)(l->in / l->groups) * l->kh * l->kw;
        an_rng_normal_fill(&rng, net->params + l->weight_offset, l->weight_count, sqrt(2.0 / fan_in));
        memset(net->params + l->bias_offset, 0, l->bias_count * sizeof(float));
    }
    net->params_version = 1;
    net->dropout = 0.5f;
    an_rng_seed(&net->dropout_rng, seed ^ 0x5DEECE66DULL);
    *out = net;
    return AN_OK;
}

static void plan_free(an_device *dev, an_plan *plan)
{
    if (!plan) return;
    const an_backend *B = dev->ops;
    for (int i = 0; i < 5; i++) if (plan->conv[i]) B->conv_free(plan->conv[i]);
    for (int i = 0; i < 3; i++) if (plan->pool[i]) B->pool_free(plan->pool[i]);
    for (int i = 0; i < 2; i++) if (plan->lrn[i]) B->lrn_free(plan->lrn[i]);
    B->release(dev, plan->input);
    for (int i = 0; i < AN_N_OUTPUTS; i++) { B->release(dev, plan->act[i]); B->release(dev, plan->grad[i]); }
    for (int i = 0; i < 2; i++) B->release(dev, plan->keep[i]);
    free(plan);
}

static void free_plans(an_net *net)
{
    for (int i = 0; i < N_PLANS; i++) {
        plan_free(net->dev, net->plans[i]);
        net->plans[i] = NULL;
    }
}

/* Everything a net holds on a GPU (nothing on the CPU, whose device blocks
 * are the host ones); the host copies must be current before this. */
static void release_device_state(an_net *net)
{
    free_plans(net);
    if (an_net_on_host(net)) return;
    const an_backend *B = net->dev->ops;
    B->release(net->dev, net->dparams);
    B->release(net->dev, net->grads);
    B->release(net->dev, net->velocity);
    net->dparams = net->grads = net->velocity = NULL;
    B->close(net->dev);
}

void an_net_free(an_net *net)
{
    if (!net) return;
    int on_host = an_net_on_host(net);
    release_device_state(net);
    free(net->params);
    free(on_host ? net->grads : net->host_grads);
    free(on_host ? net->velocity : net->host_velocity);
    free(net);
}

/* Move the net to `device` (AN_DEVICE_CPU or a CUDA ordinal): parameters
 * and optimizer state go along; plans are made anew there. On failure the
 * net stays where it was, unchanged. */
an_status an_net_set_device(an_net *net, int device)
{
    if (device == net->device) return AN_OK;
    if (device < AN_DEVICE_CPU) return an_fail(AN_ERR_ARGUMENT, "no device %d", device);
    /* the host copies catch up first: they are what moves */
    float *v = NULL;
    an_status s = AN_OK;
    an_net_params(net);
    if (net->host_behind) return AN_ERR_BACKEND;       /* the download's message stands */
    if (net->velocity && (s = an_net_velocity(net, &v)) != AN_OK) return s;
    an_device *dev = an_cpu_device();
    if (device != AN_DEVICE_CPU && (s = an_cuda_device_open(device, &dev)) != AN_OK) return s;
    const an_backend *B = dev->ops;
    float *dparams = net->params, *dvelocity = v;
    if (dev != an_cpu_device()) {
        size_t bytes = net->n_params * sizeof(float);
        dvelocity = NULL;
        s = B->alloc(dev, bytes, (void **)&dparams);
        if (s == AN_OK) s = B->upload(dev, dparams, net->params, bytes);
        if (s == AN_OK && v && (s = B->alloc(dev, bytes, (void **)&dvelocity)) == AN_OK)
            s = B->upload(dev, dvelocity, v, bytes);
        if (s != AN_OK) {
            B->release(dev, dparams);
            B->release(dev, dvelocity);
            B->close(dev);
            return s;
        }
    }
    int was_on_host = an_net_on_host(net);
    if (was_on_host) {  /* the host blocks become the mirrors */
        net->host_grads = net->grads;
        net->host_velocity = net->velocity;
        net->grads = net->velocity = NULL;
    }
    release_device_state(net);
    net->dev = dev;
    net->device = device;
    net->dparams = dparams;
    net->velocity = dvelocity;
    net->device_behind = net->host_behind = net->velocity_device_behind = 0;
    if (dev == an_cpu_device()) {   /* back on the CPU: the mirrors are the blocks */
        net->grads = net->host_grads;
        net->velocity = net->host_velocity;
        net->host_grads = net->host_velocity = NULL;
    }
    net->params_version++;
    return AN_OK;
}

static an_status alloc_floats(an_device *dev, float **out, size_t bytes)
{
    return dev->ops->alloc(dev, bytes ? bytes : 64, (void **)out);
}

static an_conv_spec conv_spec(const an_param_layer *l, int n, int h, int w)
{
    an_conv_spec s = {n, l->in, h, w, l->out, l->kh, l->stride, l->pad, l->groups, l->relu};
    return s;
}

/* Refuse a batch whose activations alone would not fit in the device's
 * memory, before allocating anything. */
static an_status check_batch_memory(const an_net *net, int n, int training)
{
    double per_image = AN_INPUT_PIXELS;
    for (int i = 0; i < AN_N_OUTPUTS; i++) per_image += (double)an_output_size(net, i);
    double bytes = per_image * sizeof(float) * n * 1.3 * (training ? 2 : 1);  /* blocked layouts and reorder scratch */
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
    const an_param_layer *L = net->layers;
    const an_layout *prev = NULL;
    int h = AN_INPUT_SIZE, w = AN_INPUT_SIZE;
    /* conv_1 -> pool_1 -> convpool_1 (LRN) -> conv_2 -> pool_2 -> lrn_2 -> conv_3..5 -> convpool_5 */
    static const int conv_out[5] = {AN_CONV_1, AN_CONV_2, AN_CONV_3, AN_CONV_4, AN_CONV_5};
    for (int c = 0; c < 5 && s == AN_OK; c++) {
        an_conv_spec cs = conv_spec(&L[c], n, h, w);
        s = B->conv_create(dev, &cs, training, prev, 0, &p->conv[c]);
        if (s != AN_OK) break;
        an_conv_output_hw(&cs, &h, &w);
        prev = p->layout[conv_out[c]] = B->conv_out_layout(p->conv[c]);
        if (c == 0 || c == 1 || c == 4) {
            int pi = c == 4 ? 2 : c;
            an_pool_spec ps = {n, L[c].out, h, w, 3, 2};
            s = B->pool_create(dev, &ps, training, prev, pi == 2, &p->pool[pi]);
            if (s != AN_OK) break;
            an_pool_output_hw(&ps, &h, &w);
            int pool_out = pi == 0 ? AN_POOL_1 : pi == 1 ? AN_POOL_2 : AN_CONVPOOL_5;
            prev = p->layout[pool_out] = B->pool_out_layout(p->pool[pi]);
            if (pi < 2) {
                an_lrn_spec ls = {n, L[c].out, h, w, 5, 1e-4f, 0.75f, 2.0f};
                s = B->lrn_create(dev, &ls, training, prev, &p->lrn[pi]);
                p->layout[pi == 0 ? AN_CONVPOOL_1 : AN_LRN_2] = prev;
            }
        }
    }
    p->layout[AN_CONVPOOL_5] = NULL;  /* created plain: the dense layers read it as a matrix */
    if (s == AN_OK) s = alloc_floats(dev, &p->input, sizeof(float) * n * AN_INPUT_PIXELS);
    for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK; i++) {
        size_t bytes = p->layout[i] ? B->layout_bytes(p->layout[i]) : sizeof(float) * n * an_output_size(net, i);
        s = alloc_floats(dev, &p->act[i], bytes);
        if (s == AN_OK && training) s = alloc_floats(dev, &p->grad[i], bytes);
    }
    for (int i = 0; i < 2 && s == AN_OK && training; i++)
        s = B->alloc(dev, (size_t)n * net->layers[AN_P_DENSE_1 + i].out, (void **)&p->keep[i]);
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

/* Run the plan's forward steps up to and including `until`. */
an_status an_plan_forward(an_net *net, an_plan *p, int until)
{
    const an_param_layer *L = net->layers;
    const float *P = net->dparams;
    const uint64_t v = net->params_version;
    const an_backend *B = net->dev->ops;
    float **a = p->act;
    int n = p->n;
    an_status s = an_net_params_to_device(net);
#define STEP(out_index, call)                      \
    do {                                           \
        if (s == AN_OK) s = (call);                \
        if (s != AN_OK || until == (out_index)) return s; \
    } while (0)
#define W(i) (P + L[i].weight_offset)
#define BIAS(i) (P + L[i].bias_offset)
    STEP(AN_CONV_1, B->conv_forward(p->conv[0], p->input, W(0), BIAS(0), v, a[AN_CONV_1]));
    STEP(AN_POOL_1, B->pool_forward(p->pool[0], a[AN_CONV_1], a[AN_POOL_1]));
    STEP(AN_CONVPOOL_1, B->lrn_forward(p->lrn[0], a[AN_POOL_1], a[AN_CONVPOOL_1]));
    STEP(AN_CONV_2, B->conv_forward(p->conv[1], a[AN_CONVPOOL_1], W(1), BIAS(1), v, a[AN_CONV_2]));
    STEP(AN_POOL_2, B->pool_forward(p->pool[1], a[AN_CONV_2], a[AN_POOL_2]));
    STEP(AN_LRN_2, B->lrn_forward(p->lrn[1], a[AN_POOL_2], a[AN_LRN_2]));
    STEP(AN_CONV_3, B->conv_forward(p->conv[2], a[AN_LRN_2], W(2), BIAS(2), v, a[AN_CONV_3]));
    STEP(AN_CONV_4, B->conv_forward(p->conv[3], a[AN_CONV_3], W(3), BIAS(3), v, a[AN_CONV_4]));
    STEP(AN_CONV_5, B->conv_forward(p->conv[4], a[AN_CONV_4], W(4), BIAS(4), v, a[AN_CONV_5]));
    STEP(AN_CONVPOOL_5, B->pool_forward(p->pool[2], a[AN_CONV_5], a[AN_CONVPOOL_5]));
    for (int d = 0; d < 3; d++) {
        const an_param_layer *l = &L[AN_P_DENSE_1 + d];
        s = B->dense_forward(net->dev, n, l->in, l->out, a[AN_CONVPOOL_5 + d], W(AN_P_DENSE_1 + d),
                             BIAS(AN_P_DENSE_1 + d), l->relu, a[AN_DENSE_1 + d]);
        if (s == AN_OK && p->training && d < 2 && net->dropout > 0) {
            /* a share of a global batch skips the other ranks' rows of the mask */
            int before = net->share_global ? net->share_offset : 0;
            int after = net->share_global ? net->share_global - net->share_offset - n : 0;
            an_rng_skip(&net->dropout_rng, (size_t)before * l->out);
            s = B->dropout_forward(net->dev, (size_t)n * l->out, net->dropout, &net->dropout_rng,
                                   a[AN_DENSE_1 + d], p->keep[d]);
            an_rng_skip(&net->dropout_rng, (size_t)after * l->out);
        }
        if (s != AN_OK || until == AN_DENSE_1 + d) return s;
    }
    return B->softmax_forward(net->dev, n, net->classes, a[AN_DENSE_3], a[AN_SOFTMAX]);
#undef STEP
#undef W
#undef BIAS
}

static an_status net_forward(an_net *net, const float *images, int n, int until, float *out);

an_status an_net_forward(an_net *net, const float *images, int n, int until, float *out)
{
    sigset_t old;
    an_signals_hold(&old);
    an_status s = net_forward(net, images, n, until, out);
    an_signals_release(&old);
    return s;
}

static an_status net_forward(an_net *net, const float *images, int n, int until, float *out)
{
    if (!net || !images || !out) return an_fail(AN_ERR_ARGUMENT, "forward called with a NULL pointer");
    if (n < 1) return an_fail(AN_ERR_ARGUMENT, "batch of %d images: at least 1 is needed", n);
    if (until < 0 || until >= AN_N_OUTPUTS)
        return an_fail(AN_ERR_ARGUMENT, "unknown output index %d", until);
    an_plan *p;
    an_status s = an_plan_for(net, n, 0, &p);
    if (s != AN_OK) return s;
    const an_backend *B = net->dev->ops;
    s = B->preprocess(net->dev, n, images, net->mean, net->input_scale, p->input);
    if (s == AN_OK) s = an_plan_forward(net, p, until);
    if (s != AN_OK) return s;
    if (p->layout[until]) return B->download_plain(net->dev, p->layout[until], p->act[until], out);
    return B->download(net->dev, out, p->act[until], sizeof(float) * n * an_output_size(net, until));
}
