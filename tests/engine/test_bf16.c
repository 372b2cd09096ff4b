/* test_bf16.c: convolutions that multiply in bf16 (an_conv_spec.bf16, the
 * net's AN_PRECISION_BF16). Skipped, visibly, where the CPU has no
 * AVX512_BF16. Two kinds of check:
 *
 * Exact in kind. A bf16 convolution must equal the f32 one fed the same
 * values rounded to bf16 (round to nearest even: inputs and weights forward;
 * output gradients and weights for dx; inputs and output gradients for dw):
 * the products of two bf16 numbers are exact in f32, so only the order of
 * the f32 sums differs, and the f32 tolerance of test_engine holds
 * (ATOL_OP 1e-5 of the largest value). This pins down what bf16 means here.
 *
 * Accuracy. Against the PyTorch f32 fixtures: the error of rounding each
 * factor to 8 significant bits (2^-9 relative at most, of random sign). One
 * op: max |bf16 - f32| within BF16_TOL_OP of the largest value (measured
 * ~2.5e-3). The whole net, forward and gradients: no worse than PyTorch's own
 * bf16 autocast is on the same net and inputs (bf16.anfx, made by
 * tools/make_fixtures.py), with BF16_MARGIN to spare. Gradients move 10-30%
 * in both, in norm: the forward's bf16 error flips ReLU and max-pool
 * decisions, each of which reroutes gradient (see make_fixtures.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alexnet.h"
#include "fixture.h"
#include "hashfill.h"
#include "ops.h"
#include "testutil.h"

#define BF16_TOL_OP 1e-2
#define BF16_MARGIN 1.25

/* max |got - ref| / max |ref| */
static double rel_error(const float *got, const float *ref, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= d)) d = e;
        if (fabs(ref[i]) > m) m = fabs(ref[i]);
    }
    return m > 0 ? d / m : d;
}

static void check_rel(const char *name, const float *got, const float *ref, size_t n, double tol)
{
    double e = rel_error(got, ref, n);
    result(name, -1, e, e <= tol, "max error %.2e of the largest value (bound %.0e)", e, tol);
}

/* |got - ref| / |ref| in the Euclidean norm: how far a gradient moves */
static void check_norm(const char *name, const float *got, const float *ref, size_t n, double tol)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        m += (double)ref[i] * ref[i];
    }
    double e = m > 0 ? sqrt(d / m) : sqrt(d);
    result(name, -1, e, e <= tol, "|bf16 - f32| = %.2e |f32|; PyTorch autocast's x %.2f: %.2e", e, BF16_MARGIN, tol);
}

/* ---------------------------------------------------------------- one op */

static void test_conv(const anfx_file *f, const char *name)
{
    const int32_t *p = ispec(f, name, 11);
    if (!p) return;
    int c = p[0];
    an_conv_spec s = {p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], 0, 0};
    an_conv_spec sb = s;
    sb.bf16 = 1;
    int oh, ow;
    an_conv_output_hw(&s, &oh, &ow);
    conv_case cc = conv_case_fill(&s, c);
    size_t nx = cc.nx, nw = cc.nw, ny = cc.ny;
    float *x = cc.x, *w = cc.w, *b = cc.b, *r = cc.r;
    float *xr = bf16_rounded(x, nx), *wr = bf16_rounded(w, nw);
    float *y = falloc(ny, NAN), *y32 = falloc(ny, NAN);
    float *dx = falloc(nx, NAN), *dw = falloc(nw, NAN), *db = falloc((size_t)s.out, NAN);
    float *dx32 = falloc(nx, NAN), *dw32 = falloc(nw, NAN), *db32 = falloc((size_t)s.out, NAN);
    char lab[128], key[128];
    snprintf(key, sizeof key, "%s.y", name);
    ref_t ry = get_ref(f, key);
    an_conv *op = NULL, *op32 = NULL;
    snprintf(lab, sizeof lab, "bf16 %s create", name);
    if (!status_ok(lab, an_conv_create(&sb, 1, NULL, 1, &op))) goto out;
    snprintf(lab, sizeof lab, "bf16 %s f32 reference create", name);
    if (!status_ok(lab, an_conv_create(&s, 1, NULL, 1, &op32))) goto out;

    snprintf(lab, sizeof lab, "bf16 %s forward", name);
    if (!status_ok(lab, an_conv_forward(op, x, w, b, 1, y))) goto out;
    if (!status_ok(lab, an_conv_forward(op32, xr, wr, b, 1, y32))) goto out;
    snprintf(lab, sizeof lab, "bf16 %s y = f32 y of bf16-rounded x, w", name);
    ref_t r32 = {.ok = 1, .full = y32, .count = ny};
    for (size_t i = 0; i < ny; i++) if (fabs(y32[i]) > r32.maxabs) r32.maxabs = fabs(y32[i]);
    compare(lab, y, ny, &r32, ATOL_OP, RTOL);
    if (ry.ok && ry.full && ry.count == ny) {
        snprintf(lab, sizeof lab, "bf16 %s y against PyTorch f32", name);
        check_rel(lab, y, ry.full, ny, BF16_TOL_OP);
    }

    /* backward: both take the ReLU mask from PyTorch's y, so that the
     * backward is judged alone (as in test_engine); dy rounded after it */
    if (!ry.ok || !ry.full || ry.count != ny) goto out;
    float *dy = fdup(r, ny), *dyr = falloc(ny, 0);
    for (size_t i = 0; i < ny; i++) dyr[i] = s.relu && !(ry.full[i] > 0) ? 0 : bf16_round(r[i]);
    snprintf(lab, sizeof lab, "bf16 %s backward", name);
    if (status_ok(lab, an_conv_backward(op, x, w, ry.full, dy, dx, dw, db))) {
        float *tmp = fdup(dyr, ny);
        an_status st = an_conv_backward(op32, xr, wr, ry.full, tmp, dx32, dw32, db32);
        free(tmp);
        if (status_ok(lab, st)) {
            const float *got[2] = {dx, dw}, *want[2] = {dx32, dw32};
            size_t cnt[2] = {nx, nw};
            const char *what[2] = {"dx", "dw"};
            for (int k = 0; k < 2; k++) {
                ref_t rr = {.ok = 1, .full = want[k], .count = cnt[k]};
                for (size_t i = 0; i < cnt[k]; i++) if (fabs(want[k][i]) > rr.maxabs) rr.maxabs = fabs(want[k][i]);
                snprintf(lab, sizeof lab, "bf16 %s %s = f32 %s of bf16-rounded factors", name, what[k], what[k]);
                compare(lab, got[k], cnt[k], &rr, ATOL_OP, RTOL);
                snprintf(lab, sizeof lab, "bf16 %s %s against PyTorch f32", name, what[k]);
                snprintf(key, sizeof key, "%s.%s", name, what[k]);
                ref_t pr = get_ref(f, key);
                if (pr.ok && pr.full && pr.count == cnt[k]) check_rel(lab, got[k], pr.full, cnt[k], BF16_TOL_OP);
            }
            /* the bias gradient sums dy as it is: bf16 rounding is the only difference */
            snprintf(lab, sizeof lab, "bf16 %s db", name);
            check_rel(lab, db, db32, (size_t)s.out, BF16_TOL_OP);
        }
    }
    free(dy);
    free(dyr);
out:
    an_conv_free(op);
    an_conv_free(op32);
    free(x); free(w); free(b); free(r); free(xr); free(wr); free(y); free(y32);
    free(dx); free(dw); free(db); free(dx32); free(dw32); free(db32);
}

/* ---------------------------------------------------------------- the net */

static const char *const OUT_NAMES[AN_N_OUTPUTS] = {
    "conv_1", "pool_1", "convpool_1", "conv_2", "pool_2", "lrn_2", "conv_3",
    "conv_4", "conv_5", "convpool_5", "dense_1", "dense_2", "dense_3", "softmax"};

/* PyTorch autocast's error on `key` in bf16.anfx, times the margin */
static double torch_bound(const anfx_file *b, const char *key)
{
    const anfx_tensor *t = b ? anfx_get(b, key, ANFX_F32) : NULL;
    return t && t->count == 1 ? BF16_MARGIN * ((const float *)t->data)[0] : -1;
}

static void test_net(const anfx_file *bf)
{
    anfx_file *f = load("net.anfx");
    if (!f) return;
    const anfx_tensor *tc = anfx_get(f, "net.classes", ANFX_I32);
    int classes = tc ? ((const int32_t *)tc->data)[0] : 10;
    an_net *net = NULL;
    const int n = 2;
    float *images = falloc((size_t)n * AN_INPUT_PIXELS, 0);
    hash_fill_image(images, (size_t)n * AN_INPUT_PIXELS, 2000);
    if (!status_ok("bf16 net create", an_net_create(classes, 1, &net))) goto done;
    hash_fill_net(net);
    CHECK("a new net computes in f32", an_net_precision(net) == AN_PRECISION_F32, NULL);
    if (!status_ok("bf16 net set precision", an_net_set_precision(net, AN_PRECISION_BF16))) goto done;
    CHECK("the net says bf16", an_net_precision(net) == AN_PRECISION_BF16, NULL);
    for (int i = 0; i < AN_N_OUTPUTS; i++) {
        size_t m = (size_t)n * an_output_size(net, i);
        float *out = falloc(m, NAN);
        char lab[96], key[96];
        snprintf(key, sizeof key, "net.%s", OUT_NAMES[i]);
        ref_t r = get_ref(f, key);
        snprintf(lab, sizeof lab, "bf16.net.%s", OUT_NAMES[i]);
        double bound = torch_bound(bf, lab);
        snprintf(lab, sizeof lab, "bf16 net %s against PyTorch f32", OUT_NAMES[i]);
        if (status_ok(lab, an_net_forward(net, images, n, i, out)) && r.ok && r.count == m) {
            double e = 0;
            if (r.full) {
                e = rel_error(out, r.full, m);
            } else {    /* a sample of a large tensor: its largest value from the statistics */
                for (size_t k = 0; k < r.nsample; k++) {
                    double d = fabs((double)out[r.idx[k]] - r.val[k]);
                    if (!(d <= e)) e = d;
                }
                e /= r.maxabs;
            }
            result(lab, -1, e, e <= bound, "max error %.2e of the largest value; PyTorch autocast's x %.2f: %.2e",
                   e, BF16_MARGIN, bound);
        }
        free(out);
    }
done:
    free(images);
    an_net_free(net);
    anfx_free(f);
}

/* A training step in bf16: the loss and every gradient near f32's; the
 * bf16 weights made anew after the step (the next forward equals a fresh
 * net's with the stepped weights, bit for bit); back to f32 gives f32's
 * results bit for bit. */
static void test_train(const anfx_file *bf)
{
    enum { N = 4, CLASSES = 10 };   /* net.anfx's net on train.anfx's images, one more */
    an_net *a = NULL, *b = NULL, *fresh = NULL;
    float *images = falloc((size_t)N * AN_INPUT_PIXELS, 0);
    hash_fill_image(images, (size_t)N * AN_INPUT_PIXELS, 2001);
    int labels[N] = {9, 4, 1, 3};
    an_sgd sgd = {0.01f, 0.9f, 0.0f, 0.0f, 1};
    size_t m = (size_t)N * CLASSES;
    float *la = falloc(m, NAN), *lb = falloc(m, NAN), *lc = falloc(m, NAN);
    if (!status_ok("bf16 train: nets", an_net_create(CLASSES, 7, &a)) ||
        !status_ok("bf16 train: nets", an_net_create(CLASSES, 7, &b)))
        goto done;
    hash_fill_net(a);
    hash_fill_net(b);
    an_net_set_dropout(a, 0);
    an_net_set_dropout(b, 0);
    if (!status_ok("bf16 train: precision", an_net_set_precision(b, AN_PRECISION_BF16))) goto done;
    double loss_a = 0, loss_b = 0;
    int ca = 0, cb = 0;
    if (!status_ok("bf16 train: f32 backward", an_net_backward(a, images, labels, N, AN_LOSS_CROSS_ENTROPY, &loss_a, &ca)) ||
        !status_ok("bf16 train: bf16 backward", an_net_backward(b, images, labels, N, AN_LOSS_CROSS_ENTROPY, &loss_b, &cb)))
        goto done;
    result("bf16 train: loss near f32's", fabs(loss_b - loss_a), fabs(loss_b - loss_a) / fabs(loss_a),
           fabs(loss_b - loss_a) <= 1e-2 * fabs(loss_a), "f32 %.6f, bf16 %.6f", loss_a / N, loss_b / N);
    const float *ga = an_net_grads(a), *gb = an_net_grads(b);
    for (int j = 0; j < AN_N_PARAM_LAYERS; j++) {
        const an_param_layer *L = an_net_param_layer(a, j);
        char lab[96];
        snprintf(lab, sizeof lab, "bf16.grad.%s", L->name);
        double bound = torch_bound(bf, lab);
        snprintf(lab, sizeof lab, "bf16 train: %s weight gradient near f32's", L->name);
        check_norm(lab, gb + L->weight_offset, ga + L->weight_offset, L->weight_count, bound);
    }
    /* the converted copies made in the gradient buffers' free ends (lent
     * to the convolutions) give what copies of their own give */
    an_net *c = NULL;
    long lent_before = an_cpu_test_lent(1);
    if (status_ok("bf16 train: net without lent memory", an_net_create(CLASSES, 7, &c))) {
        hash_fill_net(c);
        an_net_set_dropout(c, 0);
        double loss_c = 0;
        int cc = 0;
        if (status_ok("bf16 train: precision", an_net_set_precision(c, AN_PRECISION_BF16)) &&
            status_ok("bf16 train: backward without lent memory",
                      an_net_backward(c, images, labels, N, AN_LOSS_CROSS_ENTROPY, &loss_c, &cc)))
            CHECK("bf16 train: copies in lent memory give the same gradients bit for bit",
                  lent_before > 0 && an_cpu_test_lent(1) == lent_before &&
                      memcmp(an_net_grads(c), gb, an_net_param_count(c) * sizeof(float)) == 0 && loss_c == loss_b,
                  "%ld copies lent before, %ld after", lent_before, an_cpu_test_lent(1));
        an_net_free(c);
    }
    an_cpu_test_lent(0);
    if (!status_ok("bf16 train: SGD step", an_net_sgd_update(b, &sgd))) goto done;
    if (!status_ok("bf16 train: fresh net", an_net_create(CLASSES, 7, &fresh)) ||
        !status_ok("bf16 train: fresh net", an_net_set_precision(fresh, AN_PRECISION_BF16)))
        goto done;
    memcpy(an_net_params(fresh), an_net_params(b), an_net_param_count(b) * sizeof(float));
    an_net_params_changed(fresh);
    if (status_ok("bf16 train: forward after the step", an_net_forward(b, images, N, AN_DENSE_3, lb)) &&
        status_ok("bf16 train: fresh forward", an_net_forward(fresh, images, N, AN_DENSE_3, lc)))
        CHECK("bf16 train: the step's weights are used (fresh bf16 copies)", memcmp(lb, lc, m * sizeof(float)) == 0,
              "max difference %.2e", rel_error(lb, lc, m));
    /* back to f32: the f32 net's logits exactly */
    memcpy(an_net_params(a), an_net_params(b), an_net_param_count(b) * sizeof(float));
    an_net_params_changed(a);
    if (status_ok("bf16 train: back to f32", an_net_set_precision(b, AN_PRECISION_F32)) &&
        status_ok("bf16 train: f32 forward", an_net_forward(b, images, N, AN_DENSE_3, lb)) &&
        status_ok("bf16 train: f32 forward", an_net_forward(a, images, N, AN_DENSE_3, la)))
        CHECK("bf16 train: back in f32, f32's results bit for bit", memcmp(la, lb, m * sizeof(float)) == 0, NULL);
done:
    an_net_free(a);
    an_net_free(b);
    an_net_free(fresh);
    free(images); free(la); free(lb); free(lc);
}

/* Without AVX512_BF16 bf16 is refused, by name, and the net stays f32; a
 * clone keeps its precision; a bad value is refused. */
static void test_api(void)
{
    an_net *net = NULL, *copy = NULL;
    if (!status_ok("bf16 api: net", an_net_create(2, 1, &net))) return;
    an_cpu_test_hide_bf16(1);
    an_status st = an_net_set_precision(net, AN_PRECISION_BF16);
    const char *msg = an_error_message();
    CHECK("bf16 refused on a CPU without AVX512_BF16, saying why",
          st == AN_ERR_ARGUMENT && strstr(msg, "AVX512_BF16") && an_net_precision(net) == AN_PRECISION_F32,
          "status %d: %s", (int)st, msg);
    CHECK("an_bf16_missing says why", an_bf16_missing(AN_DEVICE_CPU) != NULL, NULL);
    an_cpu_test_hide_bf16(0);
    st = an_net_set_precision(net, (an_precision)7);
    CHECK("an unknown precision is refused", st == AN_ERR_ARGUMENT, "status %d", (int)st);
    if (status_ok("bf16 api: set", an_net_set_precision(net, AN_PRECISION_BF16)) &&
        status_ok("bf16 api: clone", an_net_clone(net, &copy)))
        CHECK("a clone keeps bf16", an_net_precision(copy) == AN_PRECISION_BF16, NULL);
    an_net_free(copy);
    an_net_free(net);
}

/* ------------------------------------------------- the first layer's input */

/* A first convolution created with own_input takes its input in the
 * layout it computes from, written by an_preprocess: its output and
 * gradients are bit for bit those of the same convolution fed planes that
 * oneDNN converts itself, so an_preprocess lays the values out, and rounds
 * them to bf16, as oneDNN does. f32 and bf16, for inference and training
 * (oneDNN picks the layouts: at least one must be pixels, or the check
 * would not see them). */
static void test_own_input(void)
{
    static const char *layouts[] = {"planes", "pixels f32", "pixels bf16"};
    int pixels_seen = 0;
    for (int k = 0; k < 4; k++) {
        int bf16 = k / 2, training = k % 2;
        an_conv_spec s = {4, 3, 227, 227, 96, 11, 4, 0, 1, 1, bf16, 0}, own = s;
        own.own_input = 1;
        conv_case cc = conv_case_fill(&s, 700 + k);
        for (size_t i = 0; i < cc.nx; i++) cc.x[i] *= 60.0f;   /* pixels' scale: values to ~100 */
        char name[96];
        snprintf(name, sizeof name, "first layer's own input, %s, %s", bf16 ? "bf16" : "f32",
                 training ? "training" : "inference");
        float *y = falloc(cc.ny, NAN), *y_own = falloc(cc.ny, NAN), *input = falloc(cc.nx, NAN);
        float *dw = falloc(cc.nw, NAN), *dw_own = falloc(cc.nw, NAN), *db = falloc((size_t)s.out, NAN),
              *db_own = falloc((size_t)s.out, NAN);
        float *dy = fdup(cc.r, cc.ny), *dy_own = fdup(cc.r, cc.ny);
        an_conv *op = NULL, *op_own = NULL;
        const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
        int ok = status_ok(name, an_conv_create(&s, training, NULL, 1, &op)) &&
                 status_ok(name, an_conv_create(&own, training, NULL, 1, &op_own));
        an_input_layout layout = ok ? an_conv_input_layout(op_own) : AN_INPUT_PLANES;
        pixels_seen += layout != AN_INPUT_PLANES;
        if (ok) an_preprocess(s.n, s.h, cc.x, zero, one, layout, input);
        ok = ok && status_ok(name, an_conv_forward(op, cc.x, cc.w, cc.b, 1, y)) &&
             status_ok(name, an_conv_forward(op_own, input, cc.w, cc.b, 1, y_own));
        int same = ok && memcmp(y, y_own, cc.ny * sizeof *y) == 0;
        if (training) {
            ok = ok && status_ok(name, an_conv_backward(op, cc.x, cc.w, y, dy, NULL, dw, db)) &&
                 status_ok(name, an_conv_backward(op_own, input, cc.w, y_own, dy_own, NULL, dw_own, db_own));
            same = same && ok && memcmp(dw, dw_own, cc.nw * sizeof *dw) == 0 &&
                   memcmp(db, db_own, (size_t)s.out * sizeof *db) == 0;
        }
        result(name, -1, -1, same, "input in %s: y%s %s", layouts[layout], training ? ", dw and db" : "",
               same ? "bit for bit" : "differ");
        an_conv_free(op);
        an_conv_free(op_own);
        free(cc.x); free(cc.w); free(cc.b); free(cc.r);
        free(y); free(y_own); free(input); free(dw); free(dw_own); free(db); free(db_own); free(dy); free(dy_own);
    }
    result("first layer's own input: oneDNN computes from pixels somewhere", -1, -1, pixels_seen > 0,
           "%d of 4 cases", pixels_seen);
}

int main(int argc, char **argv)
{
    if (argc > 1) fixture_dir = argv[1];
    const char *why = an_bf16_missing(AN_DEVICE_CPU);
    if (why) {
        printf("SKIP every bf16 check: %s\n", why);
        printf("%d passed, %d failed\n", n_pass, n_fail);
        return 0;
    }
    anfx_file *f = load("ops.anfx");
    if (f) {
        test_conv(f, "conv_g2_relu");
        test_conv(f, "conv_g2_linear");
        test_conv(f, "conv_k11_s4");
        test_conv(f, "conv_pad1_relu");
        anfx_free(f);
    }
    anfx_file *bf = load("bf16.anfx");
    test_net(bf);
    test_train(bf);
    anfx_free(bf);
    test_api();
    test_own_input();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
