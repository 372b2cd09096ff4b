/* test_cuda.c: the CUDA backend against the CPU backend, on the same inputs.
 *
 * Every op's forward and backward at AlexNet's shapes (batch 4), the
 * element-wise ops, and the whole net: every named output, and SGD steps
 * (cross-entropy and MSE, dropout, frozen layers), plus moving a net between
 * devices and running out of GPU memory. The CPU backend is itself checked
 * against PyTorch by test_engine, so agreeing with it is agreeing with
 * PyTorch.
 *
 * Tolerances: FP32 math (TF32 off) unless a line says TF32. An op's error is
 * max|gpu - cpu| / max|cpu|; a whole-net tensor's is the relative L2 error,
 * which a rare near-tie in max pooling (the two backends sum in different
 * orders) cannot dominate. Without a GPU every check is skipped, visibly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hashfill.h"
#include "ops.h"
#include "testutil.h"

static an_device *cpu, *gpu;

#define OP_TOL 1e-4      /* FP32 op against FP32 op: different summation orders and algorithms */
#define NET_TOL 1e-3     /* relative L2, whole net */
#define TF32_TOL 2e-2    /* relative L2 with TF32 convolutions (10-bit mantissa products) */
/* relative L2 of parameter changes after 3 SGD steps on a mean squared error
 * of the softmax: its gradients cancel more than cross-entropy's, and the
 * backends' FP32 rounding differences grow layer by layer going down
 * (measured on an H200: conv_5 3.8e-4, conv_3 9.3e-4, conv_1 2.8e-3; each
 * about 10 times cross-entropy's) */
#define MSE_TOL 5e-3
/* bf16 (cuDNN's PSEUDO_BFLOAT16: bf16 operands, f32 sums, bf16 results
 * widened to f32). One op against the CPU's f32 op on the same operands
 * rounded to bf16: the GPU's result is rounded once more (2^-9 relative),
 * the sums' order differs. The whole net against the CPU in f32: the CPU's
 * own bf16 differs from PyTorch's f32 by at most 5.4e-3 of the largest
 * value (test_bf16), the GPU's rounding of each convolution's output adds
 * about as much again. Training: the bf16 error flips ReLU and max-pool
 * decisions, which reroutes gradient (test_bf16: gradients move 10-30% in
 * norm on the CPU too), so three steps' changes agree only roughly; the
 * op checks pin down the arithmetic. */
#define BF16_OP_TOL 5e-3
#define BF16_NET_TOL 2e-2
#define BF16_STEP_TOL 0.5

static double max_rel(const float *got, const float *ref, size_t n)
{
    double err = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= err)) err = d;   /* NaN counts as the largest error */
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return scale > 0 ? err / scale : err;
}

static double l2_rel(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void agree(const char *name, const float *got, const float *ref, size_t n, double tol, int l2)
{
    int nonzero = 0;
    for (size_t i = 0; i < n && !nonzero; i++) nonzero = ref[i] != 0;
    if (!nonzero) {   /* an all-zero reference agrees with anything that is zero too: no test */
        result(name, -1, -1, 0, "the CPU's reference is all zeros (%zu values)", n);
        return;
    }
    double e = l2 ? l2_rel(got, ref, n) : max_rel(got, ref, n);
    result(name, -1, e, e <= tol, "%s error %.2e (tolerance %.0e), %zu values", l2 ? "relative L2" : "max/max|cpu|",
           e, tol, n);
}

/* ---- device buffers ---- */

static float *put(an_device *d, const float *host, size_t n)
{
    void *p = NULL;
    if (d->ops->alloc(d, n * sizeof(float) + 4, &p) != AN_OK) return NULL;
    if (host) d->ops->upload(d, p, host, n * sizeof(float));
    else d->ops->zero(d, p, n * sizeof(float));
    return p;
}

static float *get(an_device *d, const float *dev_ptr, size_t n)
{
    float *h = xmalloc(n * sizeof(float) + 4);
    if (!status_ok("download", d->ops->download(d, h, dev_ptr, n * sizeof(float)))) memset(h, 0, n * sizeof(float));
    return h;
}

static float *hashed(size_t n, uint64_t stream, float scale)
{
    float *h = xmalloc(n * sizeof(float) + 4);
    hash_fill(h, n, stream, scale);
    return h;
}

/* ---- convolution ---- */

typedef struct { float *y, *dx, *dw, *db; } conv_out;

/* The backward pass masks dy with the forward output's ReLU: `y_backward`
 * (the CPU's output), when given, replaces this device's own, so that an
 * output within rounding of 0 cannot flip the mask between the backends. */
static conv_out run_conv(an_device *d, const an_conv_spec *s, const float *x, const float *w, const float *b,
                         const float *dy, const float *y_backward)
{
    conv_out o = {0};
    int oh, ow;
    an_conv_output_hw(s, &oh, &ow);
    size_t nx = (size_t)s->n * s->in * s->h * s->w, ny = (size_t)s->n * s->out * oh * ow;
    size_t nw = (size_t)s->out * (s->in / s->groups) * s->k * s->k;
    const an_backend *B = d->ops;
    an_conv *op;
    if (!status_ok("conv_create", B->conv_create(d, s, 1, NULL, 1, &op))) return o;
    float *X = put(d, x, nx), *W = put(d, w, nw), *Bb = put(d, b, s->out), *Y = put(d, NULL, ny);
    float *DY = put(d, dy, ny), *DX = put(d, NULL, nx), *DW = put(d, NULL, nw), *DB = put(d, NULL, s->out);
    if (status_ok("conv_forward", B->conv_forward(op, X, W, Bb, 1, Y))) {
        o.y = get(d, Y, ny);
        if (y_backward) B->upload(d, Y, y_backward, ny * sizeof(float));
        if (status_ok("conv_backward", B->conv_backward(op, X, W, Y, DY, DX, DW, DB))) {
            o.dx = get(d, DX, nx); o.dw = get(d, DW, nw); o.db = get(d, DB, s->out);
        }
    }
    B->conv_free(op);
    float *bufs[] = {X, W, Bb, Y, DY, DX, DW, DB};
    for (int i = 0; i < 8; i++) B->release(d, bufs[i]);
    return o;
}

/* a convolution's operands, hashed from `stream` */
typedef struct {
    size_t nx, ny, nw;
    float *x, *w, *b, *dy;
} conv_operands;

static conv_operands conv_operands_for(const an_conv_spec *s, uint64_t stream)
{
    int oh, ow;
    an_conv_output_hw(s, &oh, &ow);
    conv_operands o;
    o.nx = (size_t)s->n * s->in * s->h * s->w;
    o.ny = (size_t)s->n * s->out * oh * ow;
    o.nw = (size_t)s->out * (s->in / s->groups) * s->k * s->k;
    o.x = hashed(o.nx, stream, 1);
    o.w = hashed(o.nw, stream + 1, (float)sqrt(6.0 / (o.nw / s->out)));
    o.b = hashed(s->out, stream + 2, 0.1f);
    o.dy = hashed(o.ny, stream + 3, 1);
    return o;
}

static void test_conv(const char *name, an_conv_spec s, uint64_t stream)
{
    conv_operands o = conv_operands_for(&s, stream);
    size_t nx = o.nx, ny = o.ny, nw = o.nw;
    float *x = o.x, *w = o.w, *b = o.b, *dy = o.dy;
    conv_out c = run_conv(cpu, &s, x, w, b, dy, NULL), g = run_conv(gpu, &s, x, w, b, dy, c.y);
    char label[96];
    if (c.y && g.y) {
        snprintf(label, sizeof label, "%s forward", name);      agree(label, g.y, c.y, ny, OP_TOL, 0);
        snprintf(label, sizeof label, "%s backward dx", name);  agree(label, g.dx, c.dx, nx, OP_TOL, 0);
        snprintf(label, sizeof label, "%s backward dw", name);  agree(label, g.dw, c.dw, nw, OP_TOL, 0);
        snprintf(label, sizeof label, "%s backward db", name);  agree(label, g.db, c.db, s.out, OP_TOL, 0);
    }
    float *all[] = {x, w, b, dy, c.y, c.dx, c.dw, c.db, g.y, g.dx, g.dw, g.db};
    for (int i = 0; i < 12; i++) free(all[i]);
}

/* A bf16 convolution on the GPU against the CPU's f32 convolution of the
 * operands rounded to bf16: inputs and weights forward, output gradients
 * (after the ReLU mask) with the weights for dx and the inputs for dw; the
 * bias gradient sums the f32 output gradients. */
static void test_conv_bf16(const char *name, an_conv_spec s, uint64_t stream)
{
    conv_operands o = conv_operands_for(&s, stream);
    size_t nx = o.nx, ny = o.ny, nw = o.nw;
    float *x = o.x, *w = o.w, *b = o.b, *dy = o.dy;
    float *xr = bf16_rounded(x, nx), *wr = bf16_rounded(w, nw), *dyr = bf16_rounded(dy, ny);
    an_conv_spec s16 = s;
    s16.bf16 = 1;
    conv_out c = run_conv(cpu, &s, xr, wr, b, dyr, NULL), g = run_conv(gpu, &s16, x, w, b, dy, c.y);
    conv_out c32 = run_conv(cpu, &s, x, w, b, dy, c.y);   /* the bias gradient of the f32 dy */
    char label[96];
    if (c.y && g.y && c32.db) {
        snprintf(label, sizeof label, "%s bf16 forward", name);      agree(label, g.y, c.y, ny, BF16_OP_TOL, 0);
        snprintf(label, sizeof label, "%s bf16 backward dx", name);  agree(label, g.dx, c.dx, nx, BF16_OP_TOL, 0);
        snprintf(label, sizeof label, "%s bf16 backward dw", name);  agree(label, g.dw, c.dw, nw, BF16_OP_TOL, 0);
        snprintf(label, sizeof label, "%s bf16 backward db", name);  agree(label, g.db, c32.db, s.out, OP_TOL, 0);
    }
    float *all[] = {x, w, b, dy, xr, wr, dyr, c.y, c.dx, c.dw, c.db, g.y, g.dx, g.dw, g.db,
                    c32.y, c32.dx, c32.dw, c32.db};
    for (int i = 0; i < 19; i++) free(all[i]);
}

/* ---- pooling and LRN ---- */

static void test_pool(const char *name, an_pool_spec s, uint64_t stream)
{
    int oh, ow;
    an_pool_output_hw(&s, &oh, &ow);
    size_t nx = (size_t)s.n * s.c * s.h * s.w, ny = (size_t)s.n * s.c * oh * ow;
    float *x = hashed(nx, stream, 1), *dy = hashed(ny, stream + 3, 1), *out[2][2] = {{0}};
    an_device *devs[2] = {cpu, gpu};
    for (int k = 0; k < 2; k++) {
        an_device *d = devs[k];
        an_pool *op;
        if (!status_ok("pool_create", d->ops->pool_create(d, &s, 1, NULL, 1, &op))) continue;
        float *X = put(d, x, nx), *Y = put(d, NULL, ny), *DY = put(d, dy, ny), *DX = put(d, NULL, nx);
        if (status_ok("pool_forward", d->ops->pool_forward(op, X, Y)) &&
            status_ok("pool_backward", d->ops->pool_backward(op, X, Y, DY, DX))) {
            out[k][0] = get(d, Y, ny);
            out[k][1] = get(d, DX, nx);
        }
        d->ops->pool_free(op);
        d->ops->release(d, X); d->ops->release(d, Y); d->ops->release(d, DY); d->ops->release(d, DX);
    }
    char label[96];
    if (out[0][0] && out[1][0]) {
        snprintf(label, sizeof label, "%s forward", name);     agree(label, out[1][0], out[0][0], ny, 0, 0);
        snprintf(label, sizeof label, "%s backward dx", name); agree(label, out[1][1], out[0][1], nx, OP_TOL, 0);
    }
    free(x); free(dy);
    for (int k = 0; k < 2; k++) { free(out[k][0]); free(out[k][1]); }
}

static void test_lrn(const char *name, an_lrn_spec s, uint64_t stream)
{
    size_t nx = (size_t)s.n * s.c * s.h * s.w;
    /* activations of the size the net has there, where the normaliser matters */
    float *x = hashed(nx, stream, 60), *dy = hashed(nx, stream + 3, 1), *out[2][2] = {{0}};
    an_device *devs[2] = {cpu, gpu};
    for (int k = 0; k < 2; k++) {
        an_device *d = devs[k];
        an_lrn *op;
        if (!status_ok("lrn_create", d->ops->lrn_create(d, &s, 1, NULL, &op))) continue;
        float *X = put(d, x, nx), *Y = put(d, NULL, nx), *DY = put(d, dy, nx), *DX = put(d, NULL, nx);
        if (status_ok("lrn_forward", d->ops->lrn_forward(op, X, Y)) &&
            status_ok("lrn_backward", d->ops->lrn_backward(op, X, Y, DY, DX))) {
            out[k][0] = get(d, Y, nx);
            out[k][1] = get(d, DX, nx);
        }
        d->ops->lrn_free(op);
        d->ops->release(d, X); d->ops->release(d, Y); d->ops->release(d, DY); d->ops->release(d, DX);
    }
    char label[96];
    if (out[0][0] && out[1][0]) {
        snprintf(label, sizeof label, "%s forward", name);     agree(label, out[1][0], out[0][0], nx, OP_TOL, 0);
        snprintf(label, sizeof label, "%s backward dx", name); agree(label, out[1][1], out[0][1], nx, OP_TOL, 0);
    }
    free(x); free(dy);
    for (int k = 0; k < 2; k++) { free(out[k][0]); free(out[k][1]); }
}

/* ---- dense ---- */

static void test_dense(const char *name, int n, int in, int out, int relu, uint64_t stream)
{
    size_t nx = (size_t)n * in, ny = (size_t)n * out, nw = (size_t)out * in;
    float *x = hashed(nx, stream, 1), *w = hashed(nw, stream + 1, (float)sqrt(6.0 / in));
    float *b = hashed(out, stream + 2, 0.1f), *dy = hashed(ny, stream + 3, 1), *res[2][4] = {{0}};
    an_device *devs[2] = {cpu, gpu};
    for (int k = 0; k < 2; k++) {
        an_device *d = devs[k];
        float *X = put(d, x, nx), *W = put(d, w, nw), *Bb = put(d, b, out), *Y = put(d, NULL, ny);
        float *DY = put(d, dy, ny), *DX = put(d, NULL, nx), *DW = put(d, NULL, nw), *DB = put(d, NULL, out);
        if (status_ok("dense_forward", d->ops->dense_forward(d, n, in, out, X, W, Bb, relu, Y)) &&
            status_ok("dense_backward", d->ops->dense_backward(d, n, in, out, X, W, Y, relu, DY, DX, DW, DB))) {
            res[k][0] = get(d, Y, ny); res[k][1] = get(d, DX, nx);
            res[k][2] = get(d, DW, nw); res[k][3] = get(d, DB, out);
        }
        float *bufs[] = {X, W, Bb, Y, DY, DX, DW, DB};
        for (int i = 0; i < 8; i++) d->ops->release(d, bufs[i]);
    }
    const char *part[4] = {"forward", "backward dx", "backward dw", "backward db"};
    size_t count[4] = {ny, nx, nw, (size_t)out};
    for (int i = 0; i < 4 && res[0][0] && res[1][0]; i++) {
        char label[96];
        snprintf(label, sizeof label, "%s %s", name, part[i]);
        agree(label, res[1][i], res[0][i], count[i], OP_TOL, 0);
    }
    free(x); free(w); free(b); free(dy);
    for (int k = 0; k < 2; k++) for (int i = 0; i < 4; i++) free(res[k][i]);
}

/* ---- element-wise, loss, SGD ---- */

static void test_elementwise(void)
{
    const int n = 5, classes = 7;
    const size_t nz = (size_t)n * classes;
    int labels[5] = {0, 3, 6, 2, 2};
    float *z = hashed(nz, 40, 8);
    float *prob[2] = {0}, *dz[2][2] = {{0}};
    double loss[2][2] = {{0}};
    int correct[2][2] = {{0}};
    an_device *devs[2] = {cpu, gpu};
    for (int k = 0; k < 2; k++) {
        an_device *d = devs[k];
        float *Z = put(d, z, nz), *P = put(d, NULL, nz), *DZ = put(d, NULL, nz);
        if (status_ok("softmax", d->ops->softmax_forward(d, n, classes, Z, P))) prob[k] = get(d, P, nz);
        for (int kind = 0; kind < 2; kind++)
            if (status_ok("loss", d->ops->loss(d, n, classes, Z, P, labels, (an_loss_kind)kind, DZ, &loss[k][kind],
                                               &correct[k][kind])))
                dz[k][kind] = get(d, DZ, nz);
        d->ops->release(d, Z); d->ops->release(d, P); d->ops->release(d, DZ);
    }
    if (prob[0] && prob[1]) agree("softmax", prob[1], prob[0], nz, 1e-6, 0);
    const char *kinds[2] = {"cross-entropy", "MSE"};
    for (int kind = 0; kind < 2 && dz[0][kind] && dz[1][kind]; kind++) {
        char label[96];
        snprintf(label, sizeof label, "loss %s dlogits", kinds[kind]);
        agree(label, dz[1][kind], dz[0][kind], nz, 1e-6, 0);
        snprintf(label, sizeof label, "loss %s sum and correct", kinds[kind]);
        CHECK(label, fabs(loss[1][kind] - loss[0][kind]) <= 1e-6 * fabs(loss[0][kind]) &&
                         correct[1][kind] == correct[0][kind],
              "%.9g vs %.9g, %d vs %d correct", loss[1][kind], loss[0][kind], correct[1][kind], correct[0][kind]);
    }
    free(z);
    for (int k = 0; k < 2; k++) { free(prob[k]); free(dz[k][0]); free(dz[k][1]); }

    /* dropout: the same generator state drops the same units */
    const size_t count = 10000;
    float *x = hashed(count, 41, 1), *res[2][2] = {{0}};
    uint8_t *masks[2] = {0};
    for (int k = 0; k < 2; k++) {
        an_device *d = devs[k];
        an_rng rng;
        an_rng_seed(&rng, 99);
        float *X = put(d, x, count), *DY = put(d, x, count);
        void *keep = NULL;
        d->ops->alloc(d, count, &keep);
        if (status_ok("dropout_forward", d->ops->dropout_forward(d, count, 0.5f, &rng, X, keep)) &&
            status_ok("dropout_backward", d->ops->dropout_backward(d, count, 0.5f, keep, DY))) {
            res[k][0] = get(d, X, count);
            res[k][1] = get(d, DY, count);
            masks[k] = xmalloc(count);
            d->ops->download(d, masks[k], keep, count);
        }
        d->ops->release(d, X); d->ops->release(d, DY); d->ops->release(d, keep);
    }
    if (masks[0] && masks[1]) {
        CHECK("dropout masks identical", memcmp(masks[0], masks[1], count) == 0, NULL);
        agree("dropout forward", res[1][0], res[0][0], count, 0, 0);
        agree("dropout backward", res[1][1], res[0][1], count, 0, 0);
    }
    free(x);
    for (int k = 0; k < 2; k++) { free(res[k][0]); free(res[k][1]); free(masks[k]); }

    /* SGD: Nesterov with weight decay on the first 600 of 1000 values */
    const size_t np = 1000;
    float *p = hashed(np, 42, 1), *g = hashed(np, 43, 1), *v = hashed(np, 44, 0.1f), *sg[2][2] = {{0}};
    an_sgd_step step = {0.01f, 0.9f, 5e-4f, 1};
    for (int k = 0; k < 2; k++) {
        an_device *d = devs[k];
        float *P = put(d, p, np), *G = put(d, g, np), *V = put(d, v, np);
        if (status_ok("sgd", d->ops->sgd(d, np, 600, P, G, V, &step))) {
            sg[k][0] = get(d, P, np);
            sg[k][1] = get(d, V, np);
        }
        d->ops->release(d, P); d->ops->release(d, G); d->ops->release(d, V);
    }
    if (sg[0][0] && sg[1][0]) {
        agree("sgd parameters", sg[1][0], sg[0][0], np, 1e-6, 0);
        agree("sgd velocity", sg[1][1], sg[0][1], np, 1e-6, 0);
    }
    free(p); free(g); free(v);
    for (int k = 0; k < 2; k++) { free(sg[k][0]); free(sg[k][1]); }

    /* preprocessing */
    const int ni = 2;
    const size_t npx = (size_t)ni * AN_INPUT_PIXELS;
    float *img = xmalloc(npx * sizeof(float)), *pre[2] = {0};
    hash_fill_image(img, npx, 45);
    const float mean[3] = {123.68f, 116.779f, 103.939f}, scale[3] = {1 / 58.395f, 1 / 57.12f, 1 / 57.375f};
    for (int k = 0; k < 2; k++) {
        an_device *d = devs[k];
        float *Y = put(d, NULL, npx);
        if (status_ok("preprocess", d->ops->preprocess(d, ni, AN_INPUT_SIZE, img, mean, scale, AN_INPUT_PLANES, Y)))
            pre[k] = get(d, Y, npx);
        d->ops->release(d, Y);
    }
    if (pre[0] && pre[1]) agree("preprocess", pre[1], pre[0], npx, 1e-6, 0);
    free(img); free(pre[0]); free(pre[1]);
}

/* ---- the whole net ---- */

#define OUTPUT_NAME(o) an_output_name(AN_ARCH_HEURITECH, o)

static int make_pair_arch(an_arch arch, int classes, uint64_t seed, an_net **a, an_net **b)
{
    *a = *b = NULL;
    if (!status_ok("create", an_net_create_arch(arch, classes, seed, a)) ||
        !status_ok("create", an_net_create_arch(arch, classes, seed, b)))
        return 0;
    return status_ok("an_net_set_device(0)", an_net_set_device(*b, 0));
}

static int make_pair(int classes, uint64_t seed, an_net **a, an_net **b)
{
    return make_pair_arch(AN_ARCH_HEURITECH, classes, seed, a, b);
}

/* every named output of a variant (label: what the run checks), the GPU's
 * net in `precision`, the CPU's in f32 */
static void test_net_forward(an_arch arch, const char *label, double tol, an_precision precision)
{
    const int n = 4, classes = 10;
    an_net *c, *g;
    if (!make_pair_arch(arch, classes, 7, &c, &g) || !status_ok(label, an_net_set_precision(g, precision))) {
        an_net_free(c);
        an_net_free(g);
        return;
    }
    const size_t pixels = (size_t)3 * an_net_input_size(c) * an_net_input_size(c);
    float *images = xmalloc((size_t)n * pixels * sizeof(float));
    hash_fill_image(images, (size_t)n * pixels, 2000);
    for (int o = 0; o < AN_N_OUTPUTS; o++) {
        if (!an_output_name(arch, o)) continue;
        size_t count = (size_t)n * an_output_size(c, o);
        float *yc = xmalloc(count * sizeof(float)), *yg = xmalloc(count * sizeof(float));
        char name[96];
        snprintf(name, sizeof name, "%s %s net forward %s", label, an_arch_name(arch), an_output_name(arch, o));
        if (status_ok(name, an_net_forward(c, images, n, o, yc)) && status_ok(name, an_net_forward(g, images, n, o, yg)))
            agree(name, yg, yc, count, tol, 1);
        free(yc); free(yg);
    }
    free(images);
    an_net_free(c);
    an_net_free(g);
}

/* Grad-CAM on both devices (an_net_gradcam: the backward without
 * parameter gradients, cuDNN and cuBLAS with dw NULL): the maps and the
 * predicted classes agree. */
static void test_net_gradcam(double tol)
{
    const int n = 4, classes = 10;
    an_net *c, *g;
    if (!make_pair(classes, 7, &c, &g)) { an_net_free(c); an_net_free(g); return; }
    float *images = xmalloc((size_t)n * AN_INPUT_PIXELS * sizeof(float));
    hash_fill_image(images, (size_t)n * AN_INPUT_PIXELS, 2000);
    const int layers[2] = {AN_CONV_5, AN_LRN_2};
    for (int k = 0; k < 2; k++) {
        an_output_info o = an_net_output(c, layers[k]);
        size_t count = (size_t)n * o.h * o.w;
        float *mc = xmalloc(count * sizeof(float)), *mg = xmalloc(count * sizeof(float));
        int cc[4] = {3, -1, 0, -1}, cg[4] = {3, -1, 0, -1};
        char name[96];
        snprintf(name, sizeof name, "Grad-CAM at %s", OUTPUT_NAME(layers[k]));
        if (status_ok(name, an_net_gradcam(c, images, n, layers[k], cc, mc)) &&
            status_ok(name, an_net_gradcam(g, images, n, layers[k], cg, mg))) {
            agree(name, mg, mc, count, tol, 1);
            snprintf(name, sizeof name, "Grad-CAM at %s: the same predicted classes", OUTPUT_NAME(layers[k]));
            CHECK(name, memcmp(cc, cg, sizeof cc) == 0, "cpu %d %d, gpu %d %d", cc[1], cc[3], cg[1], cg[3]);
        }
        free(mc); free(mg);
    }
    free(images);
    an_net_free(c);
    an_net_free(g);
}

/* Three SGD steps with dropout on both devices, from the same weights and
 * dropout seed: the parameters' changes agree (the GPU's net in
 * `precision`, the CPU's in f32). */
static void test_net_train(an_loss_kind loss, int first_trainable, const char *label, an_precision precision)
{
    const int n = 4, classes = 10;
    an_net *nets[2];
    if (!make_pair(classes, 11, &nets[0], &nets[1]) || !status_ok(label, an_net_set_precision(nets[1], precision))) {
        an_net_free(nets[0]);
        an_net_free(nets[1]);
        return;
    }
    const int bf16 = precision == AN_PRECISION_BF16;
    size_t np = an_net_param_count(nets[0]);
    float *p0 = fdup(an_net_params(nets[0]), np);
    float *images = xmalloc((size_t)n * AN_INPUT_PIXELS * sizeof(float));
    hash_fill_image(images, (size_t)n * AN_INPUT_PIXELS, 2001);
    int labels[4] = {1, 7, 3, 3};
    /* the package's own settings (pixels / 255, lr 1e-3): training that
     * converges, so that the backends' rounding differences do not grow */
    an_sgd opt = {1e-3f, 0.9f, 1e-3f, 5e-4f, 1};
    double losses[2] = {0};
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
        an_net_seed_dropout(nets[k], 5);
        an_net_set_input_scale(nets[k], 1.0f / 255);
        ok = status_ok("trainable_from", an_net_set_trainable_from(nets[k], first_trainable));
        for (int step = 0; step < 3 && ok; step++) {
            int correct = 0;
            ok = status_ok(label, an_net_train_step(nets[k], images, labels, n, loss, &opt, &losses[k], &correct));
        }
    }
    if (ok) {
        char name[128];
        snprintf(name, sizeof name, "%s: loss over 3 steps", label);
        CHECK(name, fabs(losses[1] - losses[0]) <= (bf16 ? 2e-2 : 1e-3) * fabs(losses[0]), "gpu %.7g, cpu %.7g",
              losses[1], losses[0]);
        float *d[2];
        for (int k = 0; k < 2; k++) {
            const float *p = an_net_params(nets[k]);
            d[k] = xmalloc(np * sizeof(float));
            for (size_t i = 0; i < np; i++) d[k][i] = p[i] - p0[i];
        }
        for (int l = 0; l < AN_N_PARAM_LAYERS; l++) {
            const an_param_layer *L = an_net_param_layer(nets[0], l);
            size_t count = L->bias_offset + L->bias_count - L->weight_offset;
            snprintf(name, sizeof name, "%s: %s change", label, L->name);
            if (l < first_trainable)
                CHECK(name, memcmp(an_net_params(nets[1]) + L->weight_offset, p0 + L->weight_offset,
                                   count * sizeof(float)) == 0, "frozen: unchanged on the GPU");
            else
                agree(name, d[1] + L->weight_offset, d[0] + L->weight_offset, count,
                      bf16 ? BF16_STEP_TOL : loss == AN_LOSS_MSE ? MSE_TOL : NET_TOL, 1);
        }
        free(d[0]); free(d[1]);
    }
    free(images); free(p0);
    an_net_free(nets[0]);
    an_net_free(nets[1]);
}

/* Moving a net keeps its parameters and optimizer state; a batch too large
 * for the GPU fails clearly and leaves the net usable. */
static void test_devices(void)
{
    an_net *net;
    if (!status_ok("create", an_net_create(3, 21, &net))) return;
    size_t np = an_net_param_count(net);
    float *p0 = fdup(an_net_params(net), np);
    int ok = status_ok("to GPU", an_net_set_device(net, 0)) && status_ok("to CPU", an_net_set_device(net, AN_DEVICE_CPU));
    CHECK("CPU -> GPU -> CPU keeps the parameters bit for bit",
          ok && memcmp(p0, an_net_params(net), np * sizeof(float)) == 0, NULL);
    CHECK("an_net_device reports the device", ok && an_net_device(net) == AN_DEVICE_CPU, NULL);

    float *images = xmalloc(2 * (size_t)AN_INPUT_PIXELS * sizeof(float));
    hash_fill_image(images, 2 * (size_t)AN_INPUT_PIXELS, 2002);
    int labels[2] = {0, 2}, correct = 0;
    double loss = 0;
    an_sgd opt = {0.01f, 0.9f, 0, 0, 0};
    an_net_set_device(net, 0);
    ok = status_ok("train on GPU", an_net_train_step(net, images, labels, 2, AN_LOSS_CROSS_ENTROPY, &opt, &loss, &correct));
    float *v = NULL;
    ok = ok && status_ok("velocity from GPU", an_net_velocity(net, &v));
    float *v_gpu = ok ? fdup(v, np) : NULL;
    float *p_gpu = fdup(an_net_params(net), np);
    CHECK("a GPU step changes the host copy of the parameters", memcmp(p0, p_gpu, np * sizeof(float)) != 0, NULL);
    ok = ok && status_ok("back to CPU", an_net_set_device(net, AN_DEVICE_CPU));
    ok = ok && status_ok("velocity on CPU", an_net_velocity(net, &v));
    CHECK("moving back keeps parameters and velocity", ok && memcmp(p_gpu, an_net_params(net), np * 4) == 0 &&
                                                           memcmp(v_gpu, v, np * 4) == 0, NULL);

    /* out of GPU memory: about 2.7 MB of activations per image in training */
    an_net_set_device(net, 0);
    int huge = 1000000;
    float *out = xmalloc(sizeof(float) * 16);
    an_status st = an_net_forward(net, images, huge, AN_SOFTMAX, out);
    CHECK("a batch larger than the GPU fails with a memory error", st == AN_ERR_MEMORY &&
                                                                   strstr(an_error_message(), "batch_size"),
          "status %d: %s", st, an_error_message());
    float *small = xmalloc(sizeof(float) * 2 * 3);
    CHECK("the net works after running out of memory",
          an_net_forward(net, images, 2, AN_SOFTMAX, small) == AN_OK && fabsf(small[0] + small[1] + small[2] - 1) < 1e-5,
          "%s", an_error_message());
    CHECK("no such device: clear error", an_net_set_device(net, 1000) != AN_OK &&
                                         strstr(an_error_message(), "no CUDA device 1000"), "%s", an_error_message());
    free(out); free(small); free(images); free(p0); free(p_gpu); free(v_gpu);
    an_net_free(net);
}

/* A workspace that cannot grow stays as it was: the convolutions made
 * before keep running, with the same results. */
static void test_workspace_growth(void)
{
    an_conv_spec spec = {4, 96, 27, 27, 256, 5, 1, 2, 2, 1, 0, 0};
    int oh, ow;
    an_conv_output_hw(&spec, &oh, &ow);
    size_t nx = (size_t)spec.n * spec.in * spec.h * spec.w, ny = (size_t)spec.n * spec.out * oh * ow;
    size_t nw = (size_t)spec.out * (spec.in / spec.groups) * spec.k * spec.k;
    const an_backend *B = gpu->ops;
    an_conv *op = NULL;
    if (!status_ok("conv_create", B->conv_create(gpu, &spec, 1, NULL, 1, &op))) return;
    /* a workspace of at least 1 MB in use, whatever the chosen algorithms need */
    if (!status_ok("growing the workspace", an_cuda_test_grow_workspace(gpu, (size_t)1 << 20))) return;
    size_t had = an_cuda_test_workspace_bytes(gpu);
    float *hx = hashed(nx, 500, 1), *hw = hashed(nw, 501, 0.05f), *hb = hashed(spec.out, 502, 0.1f);
    float *X = put(gpu, hx, nx), *W = put(gpu, hw, nw), *Bb = put(gpu, hb, spec.out), *Y = put(gpu, NULL, ny);
    float *before = NULL, *after = NULL;
    if (status_ok("forward before", B->conv_forward(op, X, W, Bb, 1, Y))) before = get(gpu, Y, ny);
    an_cuda_test_alloc_limit(had);   /* no allocation larger than the workspace succeeds from here */
    an_status st = an_cuda_test_grow_workspace(gpu, 2 * had);
    an_cuda_test_alloc_limit(0);
    CHECK("a workspace that cannot grow: memory error", st == AN_ERR_MEMORY, "status %d: %s", st,
          an_error_message());
    CHECK("a workspace that cannot grow: the old one stays", an_cuda_test_workspace_bytes(gpu) == had,
          "%zu bytes, had %zu", an_cuda_test_workspace_bytes(gpu), had);
    B->zero(gpu, Y, ny * sizeof(float));
    if (status_ok("forward after the failed growth", B->conv_forward(op, X, W, Bb, 1, Y))) after = get(gpu, Y, ny);
    CHECK("a workspace that cannot grow: earlier convolutions run, bit for bit",
          before && after && memcmp(before, after, ny * 4) == 0, NULL);
    B->conv_free(op);
    float *bufs[] = {X, W, Bb, Y};
    for (int i = 0; i < 4; i++) B->release(gpu, bufs[i]);
    free(hx); free(hw); free(hb); free(before); free(after);
}

/* bf16 (tensor cores, Ampere and newer): held back until AN_CUDA_BF16=1
 * (see ops_cuda.cu), then each convolution's arithmetic and the whole net. */
static void test_bf16(void)
{
    unsetenv("AN_CUDA_BF16");
    const char *why = an_bf16_missing(0);
    if (why && !strstr(why, "AN_CUDA_BF16")) {
        printf("SKIP bf16 on the GPU: %s\n", why);
        return;
    }
    CHECK("bf16 on the GPU: held back until AN_CUDA_BF16=1", why != NULL, "%s", why ? why : "offered without it");
    setenv("AN_CUDA_BF16", "1", 1);
    why = an_bf16_missing(0);
    CHECK("bf16 on the GPU: offered with AN_CUDA_BF16=1", why == NULL, "%s", why ? why : "");
    if (why) return;
    test_conv_bf16("conv_1", (an_conv_spec){4, 3, 227, 227, 96, 11, 4, 0, 1, 1, 0, 0}, 500);
    test_conv_bf16("conv_2", (an_conv_spec){4, 96, 27, 27, 256, 5, 1, 2, 2, 1, 0, 0}, 510);
    test_conv_bf16("conv_4", (an_conv_spec){4, 384, 13, 13, 384, 3, 1, 1, 2, 1, 0, 0}, 530);
    test_conv_bf16("conv without ReLU", (an_conv_spec){2, 8, 9, 9, 6, 3, 2, 1, 2, 0, 0, 0}, 550);
    test_net_forward(AN_ARCH_HEURITECH, "bf16", BF16_NET_TOL, AN_PRECISION_BF16);
    test_net_train(AN_LOSS_CROSS_ENTROPY, 0, "bf16 SGD cross-entropy", AN_PRECISION_BF16);
    /* a bf16 net moved to the GPU stays bf16 there (where the CPU has bf16 too) */
    an_net *net = NULL;
    if (!an_bf16_missing(AN_DEVICE_CPU) && status_ok("create", an_net_create(3, 21, &net)) &&
        status_ok("bf16", an_net_set_precision(net, AN_PRECISION_BF16)) && status_ok("to GPU", an_net_set_device(net, 0)))
        CHECK("bf16 on the GPU: a bf16 net moved there stays bf16", an_net_precision(net) == AN_PRECISION_BF16, NULL);
    an_net_free(net);
    unsetenv("AN_CUDA_BF16");
}

int main(void)
{
    /* AN_REQUIRE_GPU=1 (the GPU check, where nvidia-smi lists a GPU): no
     * usable GPU is a failure, not a skip */
    const char *require = getenv("AN_REQUIRE_GPU");
    int required = require && strcmp(require, "1") == 0;
    char why[256];
    int gpus = an_cuda_probe(why, sizeof why);
    printf("CUDA backend built: %s; usable GPUs: %d%s%s\n", an_cuda_built() ? "yes" : "no", gpus < 0 ? 0 : gpus,
           why[0] ? "; " : "", why);
    if (!an_cuda_built() || gpus <= 0) {
        const char *reason = !an_cuda_built() ? "built without CUDA" : gpus < 0 ? why : "no GPU on this machine";
        if (gpus < 0 || required) {
            printf("FAIL no CPU-vs-GPU check ran: %s%s\n", reason,
                   required ? " (AN_REQUIRE_GPU=1: a GPU is expected here)" : "");
            printf("0 passed, 1 failed\n");
            return 1;
        }
        printf("SKIP all CPU-vs-GPU checks: %s\n", reason);
        printf("0 passed, 0 failed\n");
        return 0;
    }
    char desc[256];
    an_cuda_describe(0, desc, sizeof desc);
    printf("GPU 0: %s\n", desc);
    cpu = an_cpu_device();
    if (!status_ok("open GPU 0", an_cuda_device_open(0, &gpu))) { printf("%d passed, %d failed\n", n_pass, n_fail); return 1; }

    an_cuda_set_tf32(0);   /* FP32 everywhere for the tight checks */
    test_conv("conv_1", (an_conv_spec){4, 3, 227, 227, 96, 11, 4, 0, 1, 1, 0, 0}, 100);
    test_conv("conv_2", (an_conv_spec){4, 96, 27, 27, 256, 5, 1, 2, 2, 1, 0, 0}, 110);
    test_conv("conv_3", (an_conv_spec){4, 256, 13, 13, 384, 3, 1, 1, 1, 1, 0, 0}, 120);
    test_conv("conv_4", (an_conv_spec){4, 384, 13, 13, 384, 3, 1, 1, 2, 1, 0, 0}, 130);
    test_conv("conv_5", (an_conv_spec){4, 384, 13, 13, 256, 3, 1, 1, 2, 1, 0, 0}, 140);
    test_conv("conv without ReLU", (an_conv_spec){2, 8, 9, 9, 6, 3, 2, 1, 2, 0, 0, 0}, 150);
    test_pool("pool_1", (an_pool_spec){4, 96, 55, 55, 3, 2}, 200);
    test_pool("convpool_5", (an_pool_spec){4, 256, 13, 13, 3, 2}, 210);
    test_lrn("convpool_1 (LRN)", (an_lrn_spec){4, 96, 27, 27, 5, 1e-4f, 0.75f, 2.0f}, 300);
    test_lrn("lrn_2", (an_lrn_spec){4, 256, 13, 13, 5, 1e-4f, 0.75f, 2.0f}, 310);
    test_lrn("Caffe's lrn_1", (an_lrn_spec){4, 96, 55, 55, 5, 1e-4f / 5, 0.75f, 1.0f}, 320);
    test_conv("torchvision's conv_1", (an_conv_spec){4, 3, 224, 224, 64, 11, 4, 2, 1, 1, 0, 0}, 160);
    test_dense("dense_1", 4, 9216, 4096, 1, 400);
    test_dense("dense_3", 4, 4096, 10, 0, 410);
    test_elementwise();
    test_net_forward(AN_ARCH_HEURITECH, "FP32", NET_TOL, AN_PRECISION_F32);
    test_net_forward(AN_ARCH_CAFFE, "FP32", NET_TOL, AN_PRECISION_F32);
    test_net_forward(AN_ARCH_TORCHVISION, "FP32", NET_TOL, AN_PRECISION_F32);
    test_net_gradcam(NET_TOL);
    test_net_train(AN_LOSS_CROSS_ENTROPY, 0, "SGD cross-entropy", AN_PRECISION_F32);
    test_net_train(AN_LOSS_MSE, 0, "SGD MSE", AN_PRECISION_F32);
    test_net_train(AN_LOSS_CROSS_ENTROPY, AN_P_DENSE_1, "SGD frozen below dense_1", AN_PRECISION_F32);
    test_devices();
    test_workspace_growth();
    test_bf16();
    an_cuda_set_tf32(1);
    test_net_forward(AN_ARCH_HEURITECH, "TF32", TF32_TOL, AN_PRECISION_F32);

    gpu->ops->close(gpu);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail > 0;
}
