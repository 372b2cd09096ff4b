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
#define AN_DENSE_LAYERS                                              \
    {"dense_1", 0, 4096, 256 * 6 * 6, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0}, \
    {"dense_2", 0, 4096, 4096, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0},        \
    {"dense_3", 0, 0, 4096, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0}
#define AN_GROUPED_LAYERS                                   \
    {"conv_1", 1, 96, 3, 11, 11, 4, 0, 1, 1, 0, 0, 0, 0},   \
    {"conv_2", 1, 256, 96, 5, 5, 1, 2, 2, 1, 0, 0, 0, 0},   \
    {"conv_3", 1, 384, 256, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0},  \
    {"conv_4", 1, 384, 384, 3, 3, 1, 1, 2, 1, 0, 0, 0, 0},  \
    {"conv_5", 1, 256, 384, 3, 3, 1, 1, 2, 1, 0, 0, 0, 0},  \
    AN_DENSE_LAYERS
/* the steps above conv_2's block, the same in every variant but for
 * conv_4's filter count (c4) */
#define AN_UPPER_STEPS(c4)                                          \
    {{"conv_3", 384, 13, 13}, AN_STEP_CONV, AN_P_CONV_3, 0},               \
    {{"conv_4", c4, 13, 13}, AN_STEP_CONV, AN_P_CONV_4, 0},                \
    {{"conv_5", 256, 13, 13}, AN_STEP_CONV, AN_P_CONV_5, 0}
#define AN_HEAD_STEPS(pool5_dropout, dense1_dropout, dense2_dropout)           \
    {{"convpool_5", 256, 6, 6}, AN_STEP_POOL, -1, pool5_dropout},            \
    {{"dense_1", 4096, 1, 1}, AN_STEP_DENSE, AN_P_DENSE_1, dense1_dropout},  \
    {{"dense_2", 4096, 1, 1}, AN_STEP_DENSE, AN_P_DENSE_2, dense2_dropout},  \
    {{"dense_3", 0, 1, 1}, AN_STEP_DENSE, AN_P_DENSE_3, 0},                  \
    {{"softmax", 0, 1, 1}, AN_STEP_SOFTMAX, -1, 0}

/* The graphs (net_internal.h): each step's output with its shape per image,
 * its op, its parameter layer, and whether training drops units after it.
 * Dropout follows each source: Keras' after dense_1 and dense_2,
 * torchvision's before dense_1 and dense_2 (on convpool_5 and dense_1). */
const an_arch_info an_archs[AN_N_ARCHS] = {
    [AN_ARCH_HEURITECH] = {
        "heuritech",
        {{{"conv_1", 96, 55, 55}, AN_STEP_CONV, AN_P_CONV_1, 0},
         {{"pool_1", 96, 27, 27}, AN_STEP_POOL, -1, 0},
         {{"convpool_1", 96, 27, 27}, AN_STEP_LRN, -1, 0},
         {{"conv_2", 256, 27, 27}, AN_STEP_CONV, AN_P_CONV_2, 0},
         {{"pool_2", 256, 13, 13}, AN_STEP_POOL, -1, 0},
         {{"lrn_2", 256, 13, 13}, AN_STEP_LRN, -1, 0},
         AN_UPPER_STEPS(384),
         AN_HEAD_STEPS(0, 1, 1)},
        {AN_GROUPED_LAYERS},
        227, 1e-4f, 2.0f, "LRN 5 (alpha 1e-4, beta 0.75, k 2)",
        {123.68, 116.779, 103.939}, {1, 1, 1}},
    [AN_ARCH_CAFFE] = {
        "caffe",
        {{{"conv_1", 96, 55, 55}, AN_STEP_CONV, AN_P_CONV_1, 0},
         {{"lrn_1", 96, 55, 55}, AN_STEP_LRN, -1, 0},
         {{"convpool_1", 96, 27, 27}, AN_STEP_POOL, -1, 0},
         {{"conv_2", 256, 27, 27}, AN_STEP_CONV, AN_P_CONV_2, 0},
         {{"lrn_2", 256, 27, 27}, AN_STEP_LRN, -1, 0},
         {{"pool_2", 256, 13, 13}, AN_STEP_POOL, -1, 0},
         AN_UPPER_STEPS(384),
         AN_HEAD_STEPS(0, 1, 1)},
        {AN_GROUPED_LAYERS},
        /* Caffe's mean image (ilsvrc_2012_mean) averaged per channel, RGB */
        227, 1e-4f / 5, 1.0f, "LRN 5 (alpha 1e-4 / 5, beta 0.75, k 1)",
        {122.6789143406786, 116.66876761696767, 104.0069879317889}, {1, 1, 1}},
    [AN_ARCH_TORCHVISION] = {
        "torchvision",
        {{{"conv_1", 64, 55, 55}, AN_STEP_CONV, AN_P_CONV_1, 0},
         {{NULL, 64, 55, 55}, AN_STEP_NONE, -1, 0},
         {{"convpool_1", 64, 27, 27}, AN_STEP_POOL, -1, 0},
         {{"conv_2", 192, 27, 27}, AN_STEP_CONV, AN_P_CONV_2, 0},
         {{NULL, 192, 27, 27}, AN_STEP_NONE, -1, 0},
         {{"pool_2", 192, 13, 13}, AN_STEP_POOL, -1, 0},
         AN_UPPER_STEPS(256),
         AN_HEAD_STEPS(1, 1, 0)},
        {{"conv_1", 1, 64, 3, 11, 11, 4, 2, 1, 1, 0, 0, 0, 0},
         {"conv_2", 1, 192, 64, 5, 5, 1, 2, 1, 1, 0, 0, 0, 0},
         {"conv_3", 1, 384, 192, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0},
         {"conv_4", 1, 256, 384, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0},
         {"conv_5", 1, 256, 256, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0},
         AN_DENSE_LAYERS},
        /* ImageNet's mean and standard deviation on 0..1 pixels, for 0..255;
         * the adaptive average pooling to 6 x 6 is the identity at 224 */
        224, 0, 0, NULL,
        {0.485 * 255, 0.456 * 255, 0.406 * 255}, {1 / (0.229 * 255), 1 / (0.224 * 255), 1 / (0.225 * 255)}},
};

static const an_arch_info *arch_info(an_arch arch)
{
    return (int)arch >= 0 && arch < AN_N_ARCHS ? &an_archs[arch] : NULL;
}

const char *an_arch_name(an_arch arch) { return arch_info(arch) ? arch_info(arch)->name : NULL; }

int an_arch_find(const char *name)
{
    for (int a = 0; name && a < AN_N_ARCHS; a++)
        if (strcmp(name, an_archs[a].name) == 0) return a;
    return -1;
}

int an_arch_input_size(an_arch arch) { return arch_info(arch) ? arch_info(arch)->input_size : 0; }

void an_arch_input(an_arch arch, double mean[3], double scale[3])
{
    const an_arch_info *A = arch_info(arch) ? arch_info(arch) : &an_archs[AN_ARCH_HEURITECH];
    memcpy(mean, A->mean, sizeof A->mean);
    memcpy(scale, A->scale, sizeof A->scale);
}

const char *an_output_name(an_arch arch, int index)
{
    return arch_info(arch) && index >= 0 && index < AN_N_OUTPUTS ? an_archs[arch].steps[index].out.name : NULL;
}

int an_output_count(an_arch arch)
{
    int n = 0;
    for (int i = 0; i < AN_N_OUTPUTS; i++) n += an_output_name(arch, i) != NULL;
    return n;
}

const char *an_param_layer_name(int index)
{
    return index >= 0 && index < AN_N_PARAM_LAYERS ? an_archs[0].layers[index].name : NULL;
}

size_t an_param_count_for(an_arch arch, int classes)
{
    if (!arch_info(arch)) return 0;
    size_t count = 0;
    for (int l = 0; l < AN_N_PARAM_LAYERS; l++) {
        const an_param_layer *L = &an_archs[arch].layers[l];
        size_t out = l == AN_P_DENSE_3 ? (size_t)classes : (size_t)L->out;
        count += out * (L->in / L->groups) * L->kh * L->kw + out;
    }
    return count;
}

const char *an_step_operation(an_arch arch, int index)
{
    if (!arch_info(arch) || index < 0 || index >= AN_N_OUTPUTS) return NULL;
    switch (an_archs[arch].steps[index].kind) {
    case AN_STEP_POOL: return AN_POOL_TEXT;
    case AN_STEP_LRN: return an_archs[arch].lrn_text;
    case AN_STEP_SOFTMAX: return "softmax";
    case AN_STEP_NONE: return NULL;
    default: return "";
    }
}

int an_output_find(an_arch arch, const char *name)
{
    for (int i = 0; name && arch_info(arch) && i < AN_N_OUTPUTS; i++) {
        const char *own = an_archs[arch].steps[i].out.name;
        if (own && strcmp(name, own) == 0) return i;
    }
    return -1;
}

an_arch an_net_arch(const an_net *net) { return (an_arch)(net->arch - an_archs); }
int an_net_input_size(const an_net *net) { return net->arch->input_size; }

an_output_info an_net_output(const an_net *net, int index)
{
    an_output_info info = net->arch->steps[index].out;
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
    return an_net_set_input_scales(net, (const float[3]){scale, scale, scale});
}
an_status an_net_set_input_scales(an_net *net, const float scale[3])
{
    for (int c = 0; c < 3; c++)
        if (!(scale[c] > 0) || !isfinite(scale[c]))
            return an_fail(AN_ERR_ARGUMENT, "input scale %g must be a positive number", scale[c]);
    memcpy(net->input_scale, scale, sizeof net->input_scale);
    return AN_OK;
}
void an_net_get_input_scales(const an_net *net, float scale[3]) { memcpy(scale, net->input_scale, sizeof net->input_scale); }

/* a CPU net of `classes` with its parameter block unfilled */
static an_status net_alloc(an_arch arch, int classes, an_net **out)
{
    *out = NULL;
    if (!arch_info(arch)) return an_fail(AN_ERR_ARGUMENT, "unknown network variant %d", (int)arch);
    if (classes < 1 || classes > 1000000)
        return an_fail(AN_ERR_ARGUMENT, "classes is %d: it must be between 1 and 1000000", classes);
    an_net *net = calloc(1, sizeof *net);
    if (!net) return an_fail(AN_ERR_MEMORY, "out of memory creating the network");
    net->arch = &an_archs[arch];
    net->classes = classes;
    for (int c = 0; c < 3; c++) {
        net->mean[c] = (float)net->arch->mean[c];
        net->input_scale[c] = (float)net->arch->scale[c];
    }
    memcpy(net->layers, net->arch->layers, sizeof net->layers);
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
    return an_net_create_arch(AN_ARCH_HEURITECH, classes, seed, out);
}

an_status an_net_create_arch(an_arch arch, int classes, uint64_t seed, an_net **out)
{
    an_status s = an_net_create_unfilled(arch, classes, seed, out);
    if (s == AN_OK) an_net_init_layers(*out, seed, NULL);
    return s;
}

an_status an_net_create_unfilled(an_arch arch, int classes, uint64_t seed, an_net **out)
{
    an_net *net;
    an_status s = net_alloc(arch, classes, &net);
    *out = NULL;
    if (s != AN_OK) return s;
    memset(net->params, 0, net->n_params * sizeof(float));
    an_rng_seed(&net->dropout_rng, seed ^ 0x5DEECE66DULL);
    *out = net;
    return AN_OK;
}

void an_net_init_layers(an_net *net, uint64_t seed, const int *which)
{
    /* he_normal as in the seed (Keras 1): normal, sd = sqrt(2 / fan_in);
     * biases zero. One stream over the layers in order, so a layer's values
     * do not depend on which others are drawn: the ones left out are
     * skipped (a normal pair takes two draws). */
    float *p = an_net_params(net);
    an_rng rng;
    an_rng_seed(&rng, seed);
    for (int i = 0; i < AN_N_PARAM_LAYERS; i++) {
        an_param_layer *l = &net->layers[i];
        if (which && !which[i]) {
            an_rng_skip(&rng, 2 * ((l->weight_count + 1) / 2));
            continue;
        }
        double fan_in = (double)(l->in / l->groups) * l->kh * l->kw;
        an_rng_normal_fill(&rng, p + l->weight_offset, l->weight_count, sqrt(2.0 / fan_in));
        memset(p + l->bias_offset, 0, l->bias_count * sizeof(float));
    }
    an_net_params_changed(net);
}

static void plan_free(an_device *dev, an_plan *plan)
{
    if (!plan) return;
    const an_backend *B = dev->ops;
    for (int i = 0; i < AN_N_OUTPUTS; i++) {
        an_step_kind k = plan->kind[i];
        if (k == AN_STEP_CONV && plan->op[i].conv) B->conv_free(plan->op[i].conv);
        if (k == AN_STEP_POOL && plan->op[i].pool) B->pool_free(plan->op[i].pool);
        if (k == AN_STEP_LRN && plan->op[i].lrn) B->lrn_free(plan->op[i].lrn);
        if (k != AN_STEP_NONE) B->release(dev, plan->act[i]);    /* a NONE's is its input's */
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
    an_status s = net_alloc(an_net_arch(src), src->classes, &net);
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
    memcpy(net->input_scale, src->input_scale, sizeof net->input_scale);
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
    double per_image = (double)AN_INPUT_CHANNELS * net->arch->input_size * net->arch->input_size;
    for (int i = 0; i < AN_N_OUTPUTS; i++)
        if (net->arch->steps[i].kind != AN_STEP_NONE) per_image += (double)an_output_size(net, i);
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
    const an_step *steps = net->arch->steps;
    const int side = net->arch->input_size;
    for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK; i++) {
        const an_step *st = &steps[i];
        an_output_info in = i == 0 ? (an_output_info){"input", AN_INPUT_CHANNELS, side, side} : steps[i - 1].out;
        p->kind[i] = st->kind;
        if (st->kind == AN_STEP_CONV) {
            const an_param_layer *l = &net->layers[st->param];
            an_conv_spec cs = {n, in.c, in.h, in.w, l->out, l->kh, l->stride, l->pad, l->groups, l->relu,
                               net->precision == AN_PRECISION_BF16, i == 0};
            s = B->conv_create(dev, &cs, training, prev, 0, &p->op[i].conv);
            if (s == AN_OK) prev = B->conv_out_layout(p->op[i].conv);
        } else if (st->kind == AN_STEP_POOL) {
            /* before a dense layer the output is plain: the dense layers read it as a matrix */
            int plain = i + 1 < AN_N_OUTPUTS && steps[i + 1].kind == AN_STEP_DENSE;
            an_pool_spec ps = {n, in.c, in.h, in.w, AN_POOL_K, AN_POOL_STRIDE};
            s = B->pool_create(dev, &ps, training, prev, plain, &p->op[i].pool);
            if (s == AN_OK) prev = plain ? NULL : B->pool_out_layout(p->op[i].pool);
        } else if (st->kind == AN_STEP_LRN) {
            an_lrn_spec ls = {n, in.c, in.h, in.w, AN_LRN_SIZE, net->arch->lrn_alpha, AN_LRN_BETA, net->arch->lrn_k};
            s = B->lrn_create(dev, &ls, training, prev, &p->op[i].lrn);   /* keeps its input's layout */
        } else if (st->kind == AN_STEP_NONE) {
            /* its input's layout */
        } else {
            prev = NULL;
        }
        p->layout[i] = prev;
    }
    return s;
}

/* bytes of step i's output (and of its gradient) in the plan's layout */
static size_t step_bytes(const an_net *net, const an_plan *p, int i)
{
    return p->layout[i] ? net->dev->ops->layout_bytes(p->layout[i]) : sizeof(float) * p->n * an_output_size(net, i);
}

/* A convolution at step i writes its input gradient to the start of one
 * gradient buffer and reads its output gradient from the start of the
 * other (the first one has no input gradient): the rest of each, and all of
 * both while the net runs forward, is free when it runs. Its converted
 * copies (bf16's) go there. */
static void lend_gradient_ends(const an_net *net, an_plan *p, int i, size_t largest)
{
    char *dy = (char *)p->grad[i], *dx = (char *)(p->grad[i] == p->grad_buf[0] ? p->grad_buf[1] : p->grad_buf[0]);
    size_t used[2] = {i > 0 ? (step_bytes(net, p, i - 1) + 63) & ~(size_t)63 : 0,
                      (step_bytes(net, p, i) + 63) & ~(size_t)63};
    for (int k = 0; k < 2; k++)
        if (used[k] > largest) used[k] = largest;
    net->dev->ops->conv_lend(p->op[i].conv, dx + used[0], largest - used[0], dy + used[1], largest - used[1]);
}

static an_status plan_create(const an_net *net, int n, int training, an_plan **out)
{
    *out = NULL;
    an_status s = check_batch_memory(net, n, training);
    if (s != AN_OK) return s;
    an_plan *p = an_fault() ? NULL : calloc(1, sizeof *p);
    if (!p) return an_fail(AN_ERR_MEMORY, "out of memory creating a plan");
    an_device *dev = net->dev;
    const an_backend *B = dev->ops;
    p->n = n;
    p->training = training;
    s = plan_ops(net, p);
    const size_t side = (size_t)net->arch->input_size;
    if (s == AN_OK) s = alloc_floats(dev, &p->input, sizeof(float) * n * AN_INPUT_CHANNELS * side * side);
    size_t largest = 0;
    for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK; i++) {
        if (p->kind[i] == AN_STEP_NONE) {
            p->act[i] = p->act[i - 1];
            continue;
        }
        size_t bytes = step_bytes(net, p, i);
        if (bytes > largest) largest = bytes;
        s = alloc_floats(dev, &p->act[i], bytes);
        if (s == AN_OK && training && net->arch->steps[i].dropout)
            s = B->alloc(dev, (size_t)n * an_output_size(net, i), (void **)&p->keep[i]);
    }
    for (int k = 0; k < 2 && s == AN_OK && training; k++) s = alloc_floats(dev, &p->grad_buf[k], largest);
    /* down the graph, each step's input gradient in the other buffer than
     * its output's, but a NONE's in the same */
    if (training) p->grad[AN_N_OUTPUTS - 1] = p->grad_buf[0];
    for (int i = AN_N_OUTPUTS - 1; i > 0 && training; i--)
        p->grad[i - 1] = p->kind[i] == AN_STEP_NONE ? p->grad[i]
                         : p->grad_buf[p->grad[i] == p->grad_buf[0] ? 1 : 0];
    for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK && training; i++)
        if (p->kind[i] == AN_STEP_CONV) lend_gradient_ends(net, p, i, largest);
    if (s != AN_OK) { plan_free(dev, p); return s; }
    *out = p;
    return AN_OK;
}

/* The plan for `n` images, reusing one of the cached ones when it fits. */
an_status an_plan_for(an_net *net, int n, int training, an_plan **out)
{
    if (net->plans_pid != getpid()) {   /* made before a fork: see backend.c */
        free_plans(net);
        net->plans_pid = getpid();
    }
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
    const an_step *steps = net->arch->steps;
    for (int i = 0; i < first && s == AN_OK && dropout; i++) {
        if (!steps[i].dropout) continue;
        if (i == first - 1) s = step_dropout(net, p, i);
        else an_rng_skip(&net->dropout_rng, (size_t)(net->share_global ? net->share_global : p->n) * an_output_size(net, i));
    }
    for (int i = first; i <= until && s == AN_OK; i++) {
        const an_step *st = &steps[i];
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
            break;
        case AN_STEP_SOFTMAX: s = B->softmax_forward(net->dev, p->n, net->classes, x, y); break;
        case AN_STEP_NONE: break;      /* y is x */
        }
        if (s == AN_OK && dropout && st->dropout) s = step_dropout(net, p, i);
    }
    return s;
}

an_status an_plan_forward(an_net *net, an_plan *p, int until) { return an_plan_forward_from(net, p, 0, until); }

int an_net_can_start_after(int at)
{
    /* a dense step reads plain rows, whatever the backend's layouts (the
     * same steps in every variant) */
    return at == -1 || (at >= 0 && at + 1 < AN_N_OUTPUTS && an_archs[0].steps[at + 1].kind == AN_STEP_DENSE);
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
    an_call old;
    an_call_enter(&old);
    an_status s = frozen_rows(net, images, n, at, out);
    an_call_leave(&old);
    return s;
}

int an_net_frozen_start(const an_net *net)
{
    /* the highest start at or below the lowest learning step whose rows a
     * training pass computes without dropout (dense_1's output is taken
     * before its dropout, which is then drawn on the rows) */
    int at = -1;
    for (int i = 0; i < AN_N_OUTPUTS - 1; i++) {
        if (net->arch->steps[i].param >= net->trainable_from) break;
        if (an_net_can_start_after(i)) at = i;
        if (net->arch->steps[i].dropout && net->dropout > 0) break;
    }
    return at;
}

/* the layout of a plan's input: its first convolution's (conv_1 in every variant) */
static an_input_layout plan_input_layout(const an_net *net, const an_plan *p)
{
    return net->dev->ops->conv_input_layout(p->op[0].conv);
}

an_status an_plan_load(an_net *net, an_plan *p, int at, const float *x)
{
    if (at == -1)
        return net->dev->ops->preprocess(net->dev, p->n, net->arch->input_size, x, net->mean, net->input_scale,
                                         plan_input_layout(net, p), p->input);
    an_status s = an_start_check(at);
    if (s != AN_OK) return s;
    if (p->layout[at]) return an_fail(AN_ERR_ARGUMENT, "step %d's output is not plain rows on this device", at);
    return net->dev->ops->upload(net->dev, p->act[at], x, sizeof(float) * p->n * an_output_size(net, at));
}

/* The forward pass from `at`: its input is x, or, with fill, what fill
 * writes into the plan's input (images only, on the CPU). */
static an_status net_forward(an_net *net, int at, const float *x, an_input_fill fill, void *ctx, int n, int until,
                             float *out);

an_status an_net_forward(an_net *net, const float *images, int n, int until, float *out)
{
    return an_net_forward_from(net, -1, images, n, until, out);
}

an_status an_net_forward_from(an_net *net, int at, const float *x, int n, int until, float *out)
{
    an_call old;
    an_call_enter(&old);
    an_status s = net_forward(net, at, x, NULL, NULL, n, until, out);
    an_call_leave(&old);
    return s;
}

an_status an_net_forward_filled(an_net *net, int n, int until, an_input_fill fill, void *ctx, float *out)
{
    an_call old;
    an_call_enter(&old);
    an_status s = net_forward(net, -1, NULL, fill, ctx, n, until, out);
    an_call_leave(&old);
    return s;
}

static an_status net_forward(an_net *net, int at, const float *x, an_input_fill fill, void *ctx, int n, int until,
                             float *out)
{
    if (!net || !(x || fill) || !out) return an_fail(AN_ERR_ARGUMENT, "forward called with a NULL pointer");
    if (fill && net->device != AN_DEVICE_CPU)
        return an_fail(AN_ERR_ARGUMENT, "a filled input is for a net on the CPU");
    if (n < 1) return an_fail(AN_ERR_ARGUMENT, "batch of %d images: at least 1 is needed", n);
    if (until < 0 || until >= AN_N_OUTPUTS)
        return an_fail(AN_ERR_ARGUMENT, "unknown output index %d", until);
    if (until <= at) return an_fail(AN_ERR_ARGUMENT, "output index %d is not above the start %d", until, at);
    an_plan *p;
    an_status s = an_plan_for(net, n, 0, &p);
    if (s != AN_OK) return s;
    if (fill) {
        an_input_norm norm;
        memcpy(norm.mean, net->mean, sizeof norm.mean);
        memcpy(norm.scale, net->input_scale, sizeof norm.scale);
        s = fill(ctx, &norm, plan_input_layout(net, p), p->input);
    } else {
        s = an_plan_load(net, p, at, x);
    }
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
