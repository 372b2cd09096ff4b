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
float *an_net_params(an_net *net) { return net->params; }
void an_net_params_changed(an_net *net) { net->params_version++; }
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
    net->params = block;
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

static void plan_free(an_plan *plan)
{
    if (!plan) return;
    for (int i = 0; i < 5; i++) an_conv_free(plan->conv[i]);
    for (int i = 0; i < 3; i++) an_pool_free(plan->pool[i]);
    for (int i = 0; i < 2; i++) an_lrn_free(plan->lrn[i]);
    free(plan->input);
    for (int i = 0; i < AN_N_OUTPUTS; i++) { free(plan->act[i]); free(plan->grad[i]); }
    for (int i = 0; i < 2; i++) free(plan->keep[i]);
    free(plan);
}

void an_net_free(an_net *net)
{
    if (!net) return;
    for (int i = 0; i < N_PLANS; i++) plan_free(net->plans[i]);
    free(net->params);
    free(net->grads);
    free(net->velocity);
    free(net);
}

static an_status alloc_floats(float **out, size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return an_fail(AN_ERR_MEMORY, "out of memory allocating %.1f MB of activations", bytes / 1048576.0);
    *out = p;
    return AN_OK;
}

static an_conv_spec conv_spec(const an_param_layer *l, int n, int h, int w)
{
    an_conv_spec s = {n, l->in, h, w, l->out, l->kh, l->stride, l->pad, l->groups, l->relu};
    return s;
}

/* Refuse a batch whose activations alone would not fit in physical memory,
 * before allocating anything. */
static an_status check_batch_memory(const an_net *net, int n, int training)
{
    double per_image = AN_INPUT_PIXELS;
    for (int i = 0; i < AN_N_OUTPUTS; i++) per_image += (double)an_output_size(net, i);
    double bytes = per_image * sizeof(float) * n * 1.3 * (training ? 2 : 1);  /* blocked layouts and reorder scratch */
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (phys > 0 && bytes > 0.8 * phys)
        return an_fail(AN_ERR_MEMORY, "a batch of %d images needs about %.1f GB for activations, more than this "
                       "machine's memory (%.1f GB): use a smaller batch_size", n, bytes / 1e9, phys / 1e9);
    return AN_OK;
}

static an_status plan_create(const an_net *net, int n, int training, an_plan **out)
{
    *out = NULL;
    an_status s = check_batch_memory(net, n, training);
    if (s != AN_OK) return s;
    an_plan *p = calloc(1, sizeof *p);
    if (!p) return an_fail(AN_ERR_MEMORY, "out of memory creating a plan");
    p->n = n;
    p->training = training;
    const an_param_layer *L = net->layers;
    const an_layout *prev = NULL;
    int h = AN_INPUT_SIZE, w = AN_INPUT_SIZE;
    /* conv_1 -> pool_1 -> convpool_1 (LRN) -> conv_2 -> pool_2 -> lrn_2 -> conv_3..5 -> convpool_5 */
    static const int conv_out[5] = {AN_CONV_1, AN_CONV_2, AN_CONV_3, AN_CONV_4, AN_CONV_5};
    for (int c = 0; c < 5 && s == AN_OK; c++) {
        an_conv_spec cs = conv_spec(&L[c], n, h, w);
        s = an_conv_create(&cs, training, prev, 0, &p->conv[c]);
        if (s != AN_OK) break;
        an_conv_output_hw(&cs, &h, &w);
        prev = p->layout[conv_out[c]] = an_conv_out_layout(p->conv[c]);
        if (c == 0 || c == 1 || c == 4) {
            int pi = c == 4 ? 2 : c;
            an_pool_spec ps = {n, L[c].out, h, w, 3, 2};
            s = an_pool_create(&ps, training, prev, pi == 2, &p->pool[pi]);
            if (s != AN_OK) break;
            an_pool_output_hw(&ps, &h, &w);
            int pool_out = pi == 0 ? AN_POOL_1 : pi == 1 ? AN_POOL_2 : AN_CONVPOOL_5;
            prev = p->layout[pool_out] = an_pool_out_layout(p->pool[pi]);
            if (pi < 2) {
                an_lrn_spec ls = {n, L[c].out, h, w, 5, 1e-4f, 0.75f, 2.0f};
                s = an_lrn_create(&ls, training, prev, &p->lrn[pi]);
                p->layout[pi == 0 ? AN_CONVPOOL_1 : AN_LRN_2] = prev;
            }
        }
    }
    p->layout[AN_CONVPOOL_5] = NULL;  /* created plain: the dense layers read it as a matrix */
    if (s == AN_OK) s = alloc_floats(&p->input, sizeof(float) * n * AN_INPUT_PIXELS);
    for (int i = 0; i < AN_N_OUTPUTS && s == AN_OK; i++) {
        size_t bytes = p->layout[i] ? an_layout_bytes(p->layout[i]) : sizeof(float) * n * an_output_size(net, i);
        s = alloc_floats(&p->act[i], bytes);
        if (s == AN_OK && training) s = alloc_floats(&p->grad[i], bytes);
    }
    for (int i = 0; i < 2 && s == AN_OK && training; i++)
        if (!(p->keep[i] = malloc((size_t)n * net->layers[AN_P_DENSE_1 + i].out)))
            s = an_fail(AN_ERR_MEMORY, "out of memory for dropout masks");
    if (s != AN_OK) { plan_free(p); return s; }
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
    plan_free(net->plans[N_PLANS - 1]);
    memmove(net->plans + 1, net->plans, sizeof(an_plan *) * (N_PLANS - 1));
    net->plans[0] = p;
    *out = p;
    return AN_OK;
}

/* Run the plan's forward steps up to and including `until`. */
an_status an_plan_forward(an_net *net, an_plan *p, int until)
{
    const an_param_layer *L = net->layers;
    const float *P = net->params;
    const uint64_t v = net->params_version;
    float **a = p->act;
    int n = p->n;
    an_status s = AN_OK;
#define STEP(out_index, call)                      \
    do {                                           \
        if (s == AN_OK) s = (call);                \
        if (s != AN_OK || until == (out_index)) return s; \
    } while (0)
#define W(i) (P + L[i].weight_offset)
#define B(i) (P + L[i].bias_offset)
    STEP(AN_CONV_1, an_conv_forward(p->conv[0], p->input, W(0), B(0), v, a[AN_CONV_1]));
    STEP(AN_POOL_1, an_pool_forward(p->pool[0], a[AN_CONV_1], a[AN_POOL_1]));
    STEP(AN_CONVPOOL_1, an_lrn_forward(p->lrn[0], a[AN_POOL_1], a[AN_CONVPOOL_1]));
    STEP(AN_CONV_2, an_conv_forward(p->conv[1], a[AN_CONVPOOL_1], W(1), B(1), v, a[AN_CONV_2]));
    STEP(AN_POOL_2, an_pool_forward(p->pool[1], a[AN_CONV_2], a[AN_POOL_2]));
    STEP(AN_LRN_2, an_lrn_forward(p->lrn[1], a[AN_POOL_2], a[AN_LRN_2]));
    STEP(AN_CONV_3, an_conv_forward(p->conv[2], a[AN_LRN_2], W(2), B(2), v, a[AN_CONV_3]));
    STEP(AN_CONV_4, an_conv_forward(p->conv[3], a[AN_CONV_3], W(3), B(3), v, a[AN_CONV_4]));
    STEP(AN_CONV_5, an_conv_forward(p->conv[4], a[AN_CONV_4], W(4), B(4), v, a[AN_CONV_5]));
    STEP(AN_CONVPOOL_5, an_pool_forward(p->pool[2], a[AN_CONV_5], a[AN_CONVPOOL_5]));
    for (int d = 0; d < 3; d++) {
        const an_param_layer *l = &L[AN_P_DENSE_1 + d];
        s = an_dense_forward(n, l->in, l->out, a[AN_CONVPOOL_5 + d], W(AN_P_DENSE_1 + d),
                             B(AN_P_DENSE_1 + d), l->relu, a[AN_DENSE_1 + d]);
        if (s == AN_OK && p->training && d < 2 && net->dropout > 0)
            an_dropout_forward((size_t)n * l->out, net->dropout, &net->dropout_rng, a[AN_DENSE_1 + d], p->keep[d]);
        if (s != AN_OK || until == AN_DENSE_1 + d) return s;
    }
    an_softmax_forward(n, net->classes, a[AN_DENSE_3], a[AN_SOFTMAX]);
    return AN_OK;
#undef STEP
#undef W
#undef B
}

an_status an_net_forward(an_net *net, const float *images, int n, int until, float *out)
{
    if (!net || !images || !out) return an_fail(AN_ERR_ARGUMENT, "forward called with a NULL pointer");
    if (n < 1) return an_fail(AN_ERR_ARGUMENT, "batch of %d images: at least 1 is needed", n);
    if (until < 0 || until >= AN_N_OUTPUTS)
        return an_fail(AN_ERR_ARGUMENT, "unknown output index %d", until);
    an_plan *p;
    an_status s = an_plan_for(net, n, 0, &p);
    if (s != AN_OK) return s;
    an_preprocess(n, images, net->mean, net->input_scale, p->input);
    s = an_plan_forward(net, p, until);
    if (s != AN_OK) return s;
    if (p->layout[until]) return an_layout_to_plain(p->layout[until], p->act[until], out);
    memcpy(out, p->act[until], sizeof(float) * n * an_output_size(net, until));
    return AN_OK;
}
