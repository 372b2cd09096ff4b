/* foreign_weights.c: another framework's weights file onto a net, by name
 * (weights.c hands torchvision's and Caffe's files here): the readers'
 * tensors checked against the net's layers, then copied all at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "foreign.h"
#include "weights.h"

/* each parameter layer's name in the two formats (alexnet.h AN_P_* order) */
static const char *const TORCH_LAYERS[AN_N_PARAM_LAYERS] = {
    "features.0", "features.3", "features.6", "features.8", "features.10",
    "classifier.1", "classifier.4", "classifier.6"};
static const char *const CAFFE_LAYERS[AN_N_PARAM_LAYERS] = {
    "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"};

typedef struct {
    const char *path;
    an_file_kind kind;
    an_arch arch;
    const char *const *layers;
    an_tensor_set set;
} foreign_file;

/* with_data 0: names and shapes suffice (a description) */
static an_status foreign_open(foreign_file *f, const char *path, an_file_kind kind, int with_data)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->kind = kind;
    if (kind == AN_FILE_TORCH_ZIP || kind == AN_FILE_TORCH_LEGACY) {
        f->arch = AN_ARCH_TORCHVISION;
        f->layers = TORCH_LAYERS;
        return with_data ? an_torch_read(path, &f->set) : an_torch_read_shapes(path, &f->set);
    }
    f->arch = AN_ARCH_CAFFE;
    f->layers = CAFFE_LAYERS;
    return an_caffe_read(path, &f->set);
}

/* layer l's tensor `part` ("weight", "bias"): its own name, else the same
 * with nn.DataParallel's "module." before it */
static const an_tensor *find_part(const foreign_file *f, int l, const char *part)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", f->layers[l], part);
    const an_tensor *t = an_tensor_set_find(&f->set, name);
    if (!t && f->kind != AN_FILE_CAFFE) {
        snprintf(name, sizeof name, "module.%s.%s", f->layers[l], part);
        t = an_tensor_set_find(&f->set, name);
    }
    return t;
}

/* t's shape without leading 1s (V1 Caffe blobs are always 4-d) equals dims? */
static int same_shape(const an_tensor *t, int ndims, const int64_t *dims)
{
    int first = 0;
    while (t->ndim - first > ndims && t->shape[first] == 1) first++;
    if (t->ndim - first != ndims) return 0;
    for (int d = 0; d < ndims; d++)
        if (t->shape[first + d] != dims[d]) return 0;
    return 1;
}

/* What layer l of the net needs: weight dims (and count), bias length. */
static int layer_dims(const an_param_layer *L, int64_t w[4])
{
    if (!L->is_conv) {
        w[0] = L->out;
        w[1] = L->in;
        return 2;
    }
    w[0] = L->out;
    w[1] = L->in / L->groups;
    w[2] = L->kh;
    w[3] = L->kw;
    return 4;
}

/* A few of the file's tensor names, for a message. */
static void some_names(const an_tensor_set *set, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < set->count && i < 6 && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", set->items[i].name);
    if (set->count > 6 && used < size) snprintf(buf + used, size - used, ", ... (%d)", set->count);
    if (set->count == 0) snprintf(buf, size, "none");
}

static const char *kind_text(an_file_kind kind)
{
    return kind == AN_FILE_CAFFE ? "a Caffe model" : "a PyTorch state dict";
}

an_status an_foreign_load(an_net *net, const char *path, an_file_kind kind, int by_name, an_weights_report *report)
{
    foreign_file f;
    an_status s = foreign_open(&f, path, kind, 1);
    an_weights_report rep;
    memset(&rep, 0, sizeof rep);
    rep.kind = kind == AN_FILE_CAFFE ? AN_WEIGHTS_CAFFE : AN_WEIGHTS_TORCH;
    const an_tensor *found[AN_N_PARAM_LAYERS][2] = {{NULL}};
    an_weights_state state[AN_N_PARAM_LAYERS];
    char kept[AN_N_PARAM_LAYERS][64] = {{0}};
    int loaded = 0;
    if (s == AN_OK && an_net_arch(net) != f.arch)
        s = an_fail(AN_ERR_FORMAT, "'%s' is %s of the %s AlexNet, but the net is the %s variant: create the net "
                    "from the file (alexnet(weights = ...))", path, kind_text(kind), an_arch_name(f.arch),
                    an_arch_name(an_net_arch(net)));
    for (int l = 0; l < AN_N_PARAM_LAYERS && s == AN_OK; l++) {
        const an_param_layer *L = an_net_param_layer(net, l);
        const an_tensor *w = find_part(&f, l, "weight"), *b = find_part(&f, l, "bias");
        int64_t wd[4], bd[1] = {L->out};
        int nd = layer_dims(L, wd);
        char wt[28] = "", bt[28] = "";   /* fits 4 dims of 5 digits */
        if (w) an_shape_text(wt, sizeof wt, w->ndim, w->shape);
        if (b) an_shape_text(bt, sizeof bt, b->ndim, b->shape);
        if (!w || !b) {
            state[l] = AN_WEIGHTS_MISSING;
            if (!by_name)
                s = an_fail(AN_ERR_FORMAT, "'%s' has no %s.%s for layer %s (with by_name the net would keep its "
                            "own)", path, f.layers[l], w ? "bias" : "weight", L->name);
        } else if (!same_shape(w, nd, wd) || !same_shape(b, 1, bd)) {
            state[l] = AN_WEIGHTS_KEPT;
            snprintf(kept[l], sizeof kept[l], "W %s, b %s", wt, bt);
            if (!by_name)
                s = an_fail(AN_ERR_FORMAT, "'%s', layer %s (%s): weight %s and bias %s, but the net needs %s%s",
                            path, L->name, f.layers[l], wt, bt, L->is_conv ? "another convolution" : "another "
                            "dense layer", l == AN_P_DENSE_3 ? " (another number of classes? by_name keeps the "
                            "net's own dense_3)" : "");
        } else {
            state[l] = AN_WEIGHTS_LOADED;
            found[l][0] = w;
            found[l][1] = b;
            loaded++;
        }
    }
    if (s == AN_OK && loaded == 0) {
        char names[200];
        some_names(&f.set, names, sizeof names);
        s = an_fail(AN_ERR_FORMAT, "'%s': none of its tensors is an AlexNet layer of the %s variant with the "
                    "net's shapes (its tensors: %s)", path, an_arch_name(f.arch), names);
    }
    if (s == AN_OK) {
        /* everything checked: commit */
        float *p = an_net_params(net);
        for (int l = 0; l < AN_N_PARAM_LAYERS; l++) {
            if (state[l] != AN_WEIGHTS_LOADED) continue;
            const an_param_layer *L = an_net_param_layer(net, l);
            memcpy(p + L->weight_offset, found[l][0]->data, L->weight_count * sizeof *p);
            memcpy(p + L->bias_offset, found[l][1]->data, L->bias_count * sizeof *p);
            if (kind == AN_FILE_CAFFE && l == AN_P_CONV_1) {
                /* Caffe's filters see BGR: swap their first and third input channels */
                size_t plane = (size_t)L->kh * L->kw;
                for (int o = 0; o < L->out; o++) {
                    float *k = p + L->weight_offset + (size_t)o * 3 * plane;
                    for (size_t q = 0; q < plane; q++) {
                        float t = k[q];
                        k[q] = k[2 * plane + q];
                        k[2 * plane + q] = t;
                    }
                }
            }
        }
        an_net_params_changed(net);
        double mean[3], scale[3];
        an_arch_input(f.arch, mean, scale);
        an_net_set_mean(net, (const float[3]){(float)mean[0], (float)mean[1], (float)mean[2]});
        an_net_set_input_scales(net, (const float[3]){(float)scale[0], (float)scale[1], (float)scale[2]});
        rep.mean_loaded = 1;
        /* reported per Keras layer (halves), as every other format */
        for (int k = 0; k < AN_W_N_LAYERS; k++) {
            int half, l = an_weights_layer_param(k, &half);
            rep.state[k] = state[l];
            rep.n_loaded += state[l] == AN_WEIGHTS_LOADED;
            rep.n_kept += state[l] == AN_WEIGHTS_KEPT;
            rep.n_missing += state[l] == AN_WEIGHTS_MISSING;
            snprintf(rep.file_shape[k], sizeof rep.file_shape[k], "%s", kept[l]);
        }
        if (report) *report = rep;
    }
    an_tensor_set_free(&f.set);
    return s;
}

an_status an_foreign_info(const char *path, an_file_kind kind, an_weights_file_info *info)
{
    foreign_file f;
    an_status s = foreign_open(&f, path, kind, 0);
    if (s != AN_OK) return s;
    memset(info, 0, sizeof *info);
    info->kind = kind == AN_FILE_CAFFE ? AN_WEIGHTS_CAFFE : AN_WEIGHTS_TORCH;
    info->arch = f.arch;
    info->has_mean = 1;
    an_arch_input(f.arch, info->mean, info->input_scale);
    int any = 0;
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        int half, l = an_weights_layer_param(k, &half);
        info->present[k] = find_part(&f, l, "weight") && find_part(&f, l, "bias");
        any |= info->present[k];
    }
    /* classes: the rows of the last layer's weights (leading 1s dropped) */
    const an_tensor *last = find_part(&f, AN_P_DENSE_3, "weight");
    if (last && last->ndim >= 2) {
        int64_t rows = last->shape[last->ndim - 2];
        if (rows >= 1 && rows <= 1000000) info->classes = (int)rows;
    }
    if (!any) {
        char names[200];
        some_names(&f.set, names, sizeof names);
        s = an_fail(AN_ERR_FORMAT, "'%s' is %s, but none of its tensors is a layer of the %s AlexNet (its "
                    "tensors: %s)", path, kind_text(kind), an_arch_name(f.arch), names);
    }
    an_tensor_set_free(&f.set);
    return s;
}
