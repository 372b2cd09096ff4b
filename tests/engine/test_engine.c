/* test_engine.c: the engine against PyTorch references (fixtures/ops.anfx etc.,
 * written by tools/make_fixtures.py) and against the facts of alexnet.h.
 * Usage: test_engine [FIXTURE_DIR]. One line per check, then "N passed, M
 * failed"; exit status 1 on any failure.
 *
 * Tolerance: |got - ref| <= atol + rtol*|ref| with rtol = 1e-4 and atol a
 * fraction of max|ref|. References are float64 results rounded once, so the
 * difference is the engine's own float32 rounding. A per-op output sums at
 * most a few hundred terms, each rounding costing ~6e-8 of the running sum,
 * and cancellation leaves values near zero whose error is set by the larger
 * terms, not by the value: hence atol = 1e-5*max|ref|. Through the whole net
 * those errors pass through 8 layers, sums of up to 9216 terms in an order
 * oneDNN picks, and ReLU/max-pool decisions on near-ties: 3e-5*max|ref| from
 * conv_2 on (measured with oneDNN 2.6, AVX-512: at most 1.5e-6*max|ref|, so
 * 20x headroom; 1e-4 let a 0.06% error in dense_1 through). For a sampled
 * tensor, the full sum and sum of |x| must also agree within 2e-6 of
 * sum|ref|: rounding errors cancel there (measured <= 7e-8), while a wrong
 * border row or channel outside the sample shifts it by ~1e-4. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alexnet.h"
#include "fixture.h"
#include "hashfill.h"
#include "ops.h"

static int n_pass, n_fail;
static const char *fixture_dir = "fixtures";

#define RTOL 1e-4
#define ATOL_OP 1e-5
#define ATOL_SHALLOW 1e-5
#define ATOL_DEEP 3e-5
#define SUM_RTOL 2e-6

static void result(const char *name, double maxabs, double maxrel, int ok, const char *fmt, ...)
{
    char note[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(note, sizeof note, fmt, ap);
        va_end(ap);
    }
    if (maxabs < 0)
        printf("%-40s max_abs %-10s max_rel %-10s %s%s%s\n", name, "-", "-", ok ? "PASS" : "FAIL",
               note[0] ? "  " : "", note);
    else
        printf("%-40s max_abs %-10.3g max_rel %-10.3g %s%s%s\n", name, maxabs, maxrel,
               ok ? "PASS" : "FAIL", note[0] ? "  " : "", note);
    fflush(stdout);
    if (ok) n_pass++; else n_fail++;
}

#define CHECK(name, cond, ...) result(name, -1, -1, (cond) != 0, __VA_ARGS__)

static int status_ok(const char *name, an_status st)
{
    if (st == AN_OK) return 1;
    result(name, -1, -1, 0, "status %d: %s", (int)st, an_error_message());
    return 0;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

static float *falloc(size_t n, float value)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = value;
    return p;
}

static float *fdup(const float *src, size_t n)
{
    float *p = xmalloc(n * sizeof *p);
    memcpy(p, src, n * sizeof *p);
    return p;
}

static anfx_file *load(const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, file);
    anfx_file *f = anfx_load(path);
    if (!f) CHECK(file, 0, "cannot read fixture %s", path);
    return f;
}

static float xscale(const anfx_file *f, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s.xscale", name);
    const anfx_tensor *t = anfx_get(f, key, ANFX_F32);
    return t && t->count == 1 ? *(const float *)t->data : 1.0f;
}

static const int32_t *ispec(const anfx_file *f, const char *name, int len)
{
    char key[128];
    snprintf(key, sizeof key, "%s.spec", name);
    const anfx_tensor *t = anfx_get(f, key, ANFX_I32);
    if (!t || (int)t->count != len) {
        CHECK(key, 0, "missing or malformed in fixture");
        return NULL;
    }
    return t->data;
}

/* ---------------------------------------------------------------- comparison */

typedef struct {
    int ok;
    int ndim, dims[ANFX_MAX_DIMS];
    size_t count;
    const float *full;                  /* whole tensor, or */
    const int32_t *idx;                 /* a sample of it ... */
    const float *val;
    size_t nsample;
    double sum, sumabs, maxabs;         /* ... and its statistics */
} ref_t;

static ref_t get_ref(const anfx_file *f, const char *name)
{
    ref_t r;
    memset(&r, 0, sizeof r);
    char key[160];
    const anfx_tensor *t = anfx_get(f, name, ANFX_F32);
    if (t) {
        r.ok = 1;
        r.ndim = t->ndim;
        memcpy(r.dims, t->dims, sizeof r.dims);
        r.count = t->count;
        r.full = t->data;
        for (size_t i = 0; i < r.count; i++)
            if (fabs(r.full[i]) > r.maxabs) r.maxabs = fabs(r.full[i]);
        return r;
    }
    snprintf(key, sizeof key, "%s.shape", name);
    const anfx_tensor *sh = anfx_get(f, key, ANFX_I32);
    snprintf(key, sizeof key, "%s.idx", name);
    const anfx_tensor *ix = anfx_get(f, key, ANFX_I32);
    snprintf(key, sizeof key, "%s.val", name);
    const anfx_tensor *va = anfx_get(f, key, ANFX_F32);
    snprintf(key, sizeof key, "%s.stats", name);
    const anfx_tensor *st = anfx_get(f, key, ANFX_F64);
    if (!sh || !ix || !va || !st || ix->count != va->count || st->count < 4 ||
        sh->count > ANFX_MAX_DIMS) {
        CHECK(name, 0, "reference missing from fixture");
        return r;
    }
    r.ok = 1;
    r.ndim = (int)sh->count;
    r.count = 1;
    for (int k = 0; k < r.ndim; k++) {
        r.dims[k] = ((const int32_t *)sh->data)[k];
        r.count *= (size_t)r.dims[k];
    }
    r.idx = ix->data;
    r.val = va->data;
    r.nsample = va->count;
    const double *s = st->data;
    r.sum = s[0];
    r.sumabs = s[1];
    r.maxabs = s[2];
    return r;
}

/* got[0..count) against ref; returns 1 when within tolerance */
static int compare(const char *name, const float *got, size_t count, const ref_t *r,
                   double atol_frac, double rtol)
{
    char nm[160];
    if (!r->ok) return 0;
    if (count != r->count) {
        CHECK(name, 0, "size %zu, reference has %zu", count, r->count);
        return 0;
    }
    double atol = atol_frac * r->maxabs;
    double maxabs = 0, maxrel = 0, worst = 0;
    size_t bad = 0, worst_i = 0;
    size_t n = r->full ? count : r->nsample;
    for (size_t k = 0; k < n; k++) {
        size_t i = r->full ? k : (size_t)r->idx[k];
        if (i >= count) { bad++; continue; }
        double b = r->full ? r->full[k] : r->val[k];
        double d = fabs((double)got[i] - b);
        double tol = atol + rtol * fabs(b);
        if (!(d <= tol)) bad++;
        if (!(d <= maxabs)) maxabs = d;
        /* relative error only where the value is not dominated by atol */
        if (fabs(b) > 0.01 * r->maxabs && !(d / fabs(b) <= maxrel)) maxrel = d / fabs(b);
        if (!(d / tol <= worst)) { worst = d / tol; worst_i = i; }
    }
    snprintf(nm, sizeof nm, "%s%s", name, r->full ? "" : " [sample]");
    int ok = bad == 0;
    if (ok)
        result(nm, maxabs, maxrel, 1, "n=%zu atol=%.2g", n, atol);
    else
        result(nm, maxabs, maxrel, 0, "%zu of %zu outside tolerance; worst at %zu: got %.7g (atol=%.2g)",
               bad, n, worst_i, worst_i < count ? got[worst_i] : NAN, atol);
    if (r->full) return ok;

    double s = 0, sa = 0;
    for (size_t i = 0; i < count; i++) {
        s += got[i];
        sa += fabs(got[i]);
    }
    double tol = SUM_RTOL * r->sumabs;
    double ds = fabs(s - r->sum), dsa = fabs(sa - r->sumabs);
    int ok2 = ds <= tol && dsa <= tol;
    snprintf(nm, sizeof nm, "%s [sums]", name);
    result(nm, ds > dsa ? ds : dsa, (ds > dsa ? ds : dsa) / r->sumabs, ok2,
           "sum %.9g vs %.9g, sum|x| %.9g vs %.9g", s, r->sum, sa, r->sumabs);
    return ok && ok2;
}

static int check_ref(const anfx_file *f, const char *label, const char *refname,
                     const float *got, size_t count, double atol_frac)
{
    ref_t r = get_ref(f, refname);
    return compare(label, got, count, &r, atol_frac, RTOL);
}

/* ---------------------------------------------------------------- hash */

static void test_hash(const anfx_file *f)
{
    const anfx_tensor *a = anfx_get(f, "hash.u7", ANFX_F32);
    const anfx_tensor *b = anfx_get(f, "hash.u7_far", ANFX_F32);
    const anfx_tensor *c = anfx_get(f, "hash.u2000_img", ANFX_F32);
    int ok = a && b && c && a->count == 16 && b->count == 16 && c->count == 16;
    size_t mism = 0;
    float img[16];
    hash_fill_image(img, 16, 2000);
    for (int i = 0; ok && i < 16; i++) {
        mism += hash_uniform(7, (uint64_t)i) != ((const float *)a->data)[i];
        mism += hash_uniform(7, 3000000 - 16 + (uint64_t)i) != ((const float *)b->data)[i];
        mism += img[i] != ((const float *)c->data)[i];
    }
    CHECK("hashfill matches numpy bit for bit", ok && mism == 0, ok ? "%zu mismatches" : "fixture missing", mism);
    CHECK("splitmix64(0) known value", splitmix64(0) == 0xE220A8397B1DCDAFULL, NULL);
}

/* ---------------------------------------------------------------- per-op */

static void test_conv(const anfx_file *f, const char *name)
{
    const int32_t *p = ispec(f, name, 11);
    if (!p) return;
    int c = p[0];
    an_conv_spec s = {p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]};
    int oh = -1, ow = -1;
    an_conv_output_hw(&s, &oh, &ow);
    char lab[128], key[128];
    snprintf(key, sizeof key, "%s.y", name);
    ref_t ry = get_ref(f, key);
    snprintf(lab, sizeof lab, "op %s output_hw", name);
    CHECK(lab, ry.ok && ry.ndim == 4 && ry.dims[2] == oh && ry.dims[3] == ow,
          "engine %dx%d, torch %dx%d", oh, ow, ry.dims[2], ry.dims[3]);
    if (!ry.ok || ry.dims[2] != oh || ry.dims[3] != ow) return;

    size_t nx = (size_t)s.n * s.in * s.h * s.w;
    size_t nw = (size_t)s.out * (s.in / s.groups) * s.k * s.k;
    size_t ny = (size_t)s.n * s.out * oh * ow;
    float *x = falloc(nx, 0), *w = falloc(nw, 0), *b = falloc((size_t)s.out, 0), *r = falloc(ny, 0);
    hash_fill(x, nx, 16 * c + 0, 1.0f);
    hash_fill(w, nw, 16 * c + 1, he_uniform_scale(s.in / s.groups * s.k * s.k));
    hash_fill(b, (size_t)s.out, 16 * c + 2, 0.1f);
    hash_fill(r, ny, 16 * c + 3, 1.0f);
    float *y = falloc(ny, NAN), *dx = falloc(nx, 12345.0f), *dw = falloc(nw, 12345.0f),
          *db = falloc((size_t)s.out, 12345.0f), *dy = fdup(r, ny);

    an_conv *op = NULL;
    snprintf(lab, sizeof lab, "op %s create", name);
    if (!status_ok(lab, an_conv_create(&s, 1, NULL, 1, &op))) goto out;
    snprintf(lab, sizeof lab, "op %s forward", name);
    if (status_ok(lab, an_conv_forward(op, x, w, b, 1, y))) {
        snprintf(lab, sizeof lab, "op %s y", name);
        compare(lab, y, ny, &ry, ATOL_OP, RTOL);
    }
    /* the reference y gives the ReLU mask, so the backward is judged alone */
    snprintf(lab, sizeof lab, "op %s backward", name);
    if (status_ok(lab, an_conv_backward(op, x, w, ry.full, dy, dx, dw, db))) {
        snprintf(lab, sizeof lab, "op %s dx", name);
        snprintf(key, sizeof key, "%s.dx", name);
        check_ref(f, lab, key, dx, nx, ATOL_OP);
        snprintf(lab, sizeof lab, "op %s dw", name);
        snprintf(key, sizeof key, "%s.dw", name);
        check_ref(f, lab, key, dw, nw, ATOL_OP);
        snprintf(lab, sizeof lab, "op %s db", name);
        snprintf(key, sizeof key, "%s.db", name);
        check_ref(f, lab, key, db, (size_t)s.out, ATOL_OP);
    }
    /* first-layer use: no dx wanted */
    memcpy(dy, r, ny * sizeof *dy);
    for (size_t i = 0; i < nw; i++) dw[i] = -777.0f;
    snprintf(lab, sizeof lab, "op %s backward dx=NULL", name);
    if (status_ok(lab, an_conv_backward(op, x, w, ry.full, dy, NULL, dw, db))) {
        snprintf(lab, sizeof lab, "op %s dw (dx=NULL)", name);
        snprintf(key, sizeof key, "%s.dw", name);
        check_ref(f, lab, key, dw, nw, ATOL_OP);
    }
    /* new weights under a new version: 2w, 2b give exactly 2y (ReLU too) */
    for (size_t i = 0; i < nw; i++) w[i] *= 2.0f;
    for (int i = 0; i < s.out; i++) b[i] *= 2.0f;
    float *y2 = falloc(ny, NAN);
    snprintf(lab, sizeof lab, "op %s forward w_version 2", name);
    if (status_ok(lab, an_conv_forward(op, x, w, b, 2, y2))) {
        double maxd = 0;
        for (size_t i = 0; i < ny; i++)
            if (!(fabs(y2[i] - 2.0 * y[i]) <= maxd)) maxd = fabs(y2[i] - 2.0 * y[i]);
        snprintf(lab, sizeof lab, "op %s new w_version uses new weights", name);
        result(lab, maxd, maxd / (2 * ry.maxabs), maxd <= 1e-6 * ry.maxabs, NULL);
    }
    free(y2);
out:
    an_conv_free(op);
    free(x); free(w); free(b); free(r); free(y); free(dx); free(dw); free(db); free(dy);
}

static void test_pool(const anfx_file *f, const char *name)
{
    const int32_t *p = ispec(f, name, 7);
    if (!p) return;
    int c = p[0];
    an_pool_spec s = {p[1], p[2], p[3], p[4], p[5], p[6]};
    int oh = -1, ow = -1;
    an_pool_output_hw(&s, &oh, &ow);
    char lab[128], key[128];
    snprintf(key, sizeof key, "%s.y", name);
    ref_t ry = get_ref(f, key);
    snprintf(lab, sizeof lab, "op %s output_hw", name);
    CHECK(lab, ry.ok && ry.ndim == 4 && ry.dims[2] == oh && ry.dims[3] == ow,
          "engine %dx%d, torch %dx%d", oh, ow, ry.dims[2], ry.dims[3]);
    if (!ry.ok || ry.dims[2] != oh || ry.dims[3] != ow) return;
    size_t nx = (size_t)s.n * s.c * s.h * s.w, ny = (size_t)s.n * s.c * oh * ow;
    float *x = falloc(nx, 0), *r = falloc(ny, 0), *y = falloc(ny, NAN), *dx = falloc(nx, 12345.0f);
    hash_fill(x, nx, 16 * c + 0, xscale(f, name));
    hash_fill(r, ny, 16 * c + 3, 1.0f);
    an_pool *op = NULL;
    snprintf(lab, sizeof lab, "op %s create", name);
    if (!status_ok(lab, an_pool_create(&s, 1, NULL, 1, &op))) goto out;
    snprintf(lab, sizeof lab, "op %s forward", name);
    if (status_ok(lab, an_pool_forward(op, x, y))) {
        snprintf(lab, sizeof lab, "op %s y", name);
        compare(lab, y, ny, &ry, ATOL_OP, RTOL);
        snprintf(lab, sizeof lab, "op %s backward", name);
        if (status_ok(lab, an_pool_backward(op, r, dx))) {
            snprintf(lab, sizeof lab, "op %s dx", name);
            snprintf(key, sizeof key, "%s.dx", name);
            check_ref(f, lab, key, dx, nx, ATOL_OP);
        }
    }
out:
    an_pool_free(op);
    free(x); free(r); free(y); free(dx);
}

static void test_lrn(const anfx_file *f, const char *name)
{
    const int32_t *p = ispec(f, name, 6);
    char key[128], lab[128];
    snprintf(key, sizeof key, "%s.par", name);
    const anfx_tensor *par = anfx_get(f, key, ANFX_F32);
    if (!p || !par || par->count != 3) return;
    const float *pf = par->data;
    int c = p[0];
    an_lrn_spec s = {p[1], p[2], p[3], p[4], p[5], pf[0], pf[1], pf[2]};
    size_t nx = (size_t)s.n * s.c * s.h * s.w;
    float *x = falloc(nx, 0), *r = falloc(nx, 0), *y = falloc(nx, NAN), *dx = falloc(nx, 12345.0f);
    hash_fill(x, nx, 16 * c + 0, xscale(f, name));
    hash_fill(r, nx, 16 * c + 3, 1.0f);
    float *dy = fdup(r, nx);
    an_lrn *op = NULL;
    snprintf(lab, sizeof lab, "op %s create", name);
    if (!status_ok(lab, an_lrn_create(&s, 1, NULL, &op))) goto out;
    snprintf(lab, sizeof lab, "op %s forward", name);
    if (status_ok(lab, an_lrn_forward(op, x, y))) {
        snprintf(lab, sizeof lab, "op %s y", name);
        snprintf(key, sizeof key, "%s.y", name);
        check_ref(f, lab, key, y, nx, ATOL_OP);
        snprintf(lab, sizeof lab, "op %s backward", name);
        if (status_ok(lab, an_lrn_backward(op, x, dy, dx))) {
            snprintf(lab, sizeof lab, "op %s dx", name);
            snprintf(key, sizeof key, "%s.dx", name);
            check_ref(f, lab, key, dx, nx, ATOL_OP);
        }
    }
out:
    an_lrn_free(op);
    free(x); free(r); free(y); free(dx); free(dy);
}

static void test_dense(const anfx_file *f, const char *name)
{
    const int32_t *p = ispec(f, name, 5);
    if (!p) return;
    int c = p[0], n = p[1], in = p[2], out = p[3], relu = p[4];
    char key[128], lab[128];
    size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = falloc(nx, 0), *w = falloc(nw, 0), *b = falloc((size_t)out, 0), *r = falloc(ny, 0);
    hash_fill(x, nx, 16 * c + 0, 1.0f);
    hash_fill(w, nw, 16 * c + 1, he_uniform_scale(in));
    hash_fill(b, (size_t)out, 16 * c + 2, 0.1f);
    hash_fill(r, ny, 16 * c + 3, 1.0f);
    float *y = falloc(ny, NAN), *dx = falloc(nx, 12345.0f), *dw = falloc(nw, 12345.0f),
          *db = falloc((size_t)out, 12345.0f), *dy = fdup(r, ny);
    snprintf(key, sizeof key, "%s.y", name);
    ref_t ry = get_ref(f, key);
    snprintf(lab, sizeof lab, "op %s forward", name);
    if (status_ok(lab, an_dense_forward(n, in, out, x, w, b, relu, y))) {
        snprintf(lab, sizeof lab, "op %s y", name);
        compare(lab, y, ny, &ry, ATOL_OP, RTOL);
    }
    if (ry.ok && ry.count == ny) {
        an_dense_backward(n, in, out, x, w, ry.full, relu, dy, dx, dw, db);
        snprintf(lab, sizeof lab, "op %s dx", name);
        snprintf(key, sizeof key, "%s.dx", name);
        check_ref(f, lab, key, dx, nx, ATOL_OP);
        snprintf(lab, sizeof lab, "op %s dw", name);
        snprintf(key, sizeof key, "%s.dw", name);
        check_ref(f, lab, key, dw, nw, ATOL_OP);
        snprintf(lab, sizeof lab, "op %s db", name);
        snprintf(key, sizeof key, "%s.db", name);
        check_ref(f, lab, key, db, (size_t)out, ATOL_OP);
        memcpy(dy, r, ny * sizeof *dy);
        for (size_t i = 0; i < nw; i++) dw[i] = -777.0f;
        an_dense_backward(n, in, out, x, w, ry.full, relu, dy, NULL, dw, db);
        snprintf(lab, sizeof lab, "op %s dw (dx=NULL)", name);
        snprintf(key, sizeof key, "%s.dw", name);
        check_ref(f, lab, key, dw, nw, ATOL_OP);
    }
    free(x); free(w); free(b); free(r); free(y); free(dx); free(dw); free(db); free(dy);
}

static void test_softmax(const anfx_file *f, const char *name)
{
    const int32_t *p = ispec(f, name, 3);
    if (!p) return;
    int c = p[0], n = p[1], classes = p[2];
    size_t ny = (size_t)n * classes;
    float *x = falloc(ny, 0), *y = falloc(ny, NAN);
    hash_fill(x, ny, 16 * c + 0, xscale(f, name));
    an_softmax_forward(n, classes, x, y);
    char key[128], lab[128];
    snprintf(lab, sizeof lab, "op %s y", name);
    snprintf(key, sizeof key, "%s.y", name);
    check_ref(f, lab, key, y, ny, ATOL_OP);
    free(x); free(y);
}

static void test_ops(void)
{
    anfx_file *f = load("ops.anfx");
    if (!f) return;
    test_hash(f);
    test_conv(f, "conv_g2_relu");
    test_conv(f, "conv_g2_linear");
    test_conv(f, "conv_k11_s4");
    test_conv(f, "conv_pad1_relu");
    test_pool(f, "pool_3_2");
    test_lrn(f, "lrn_5");
    test_dense(f, "dense_relu");
    test_dense(f, "dense_linear");
    test_softmax(f, "softmax");
    test_softmax(f, "softmax_large");
    anfx_free(f);
}

/* ---------------------------------------------------------------- API facts */

static const char *const OUT_NAMES[AN_N_OUTPUTS] = {
    "conv_1", "pool_1", "convpool_1", "conv_2", "pool_2", "lrn_2", "conv_3",
    "conv_4", "conv_5", "convpool_5", "dense_1", "dense_2", "dense_3", "softmax"};
static const int OUT_CHW[AN_N_OUTPUTS][3] = {
    {96, 55, 55}, {96, 27, 27}, {96, 27, 27}, {256, 27, 27}, {256, 13, 13}, {256, 13, 13},
    {384, 13, 13}, {384, 13, 13}, {256, 13, 13}, {256, 6, 6}, {4096, 1, 1}, {4096, 1, 1},
    {-1, 1, 1}, {-1, 1, 1}};    /* -1: classes */

typedef struct { const char *name; int is_conv, out, in, k, stride, pad, groups, relu; } layer_t;
static const layer_t LAYERS[AN_N_PARAM_LAYERS] = {
    {"conv_1", 1, 96, 3, 11, 4, 0, 1, 1},    {"conv_2", 1, 256, 96, 5, 1, 2, 2, 1},
    {"conv_3", 1, 384, 256, 3, 1, 1, 1, 1},  {"conv_4", 1, 384, 384, 3, 1, 1, 2, 1},
    {"conv_5", 1, 256, 384, 3, 1, 1, 2, 1},  {"dense_1", 0, 4096, 9216, 1, 1, 0, 1, 1},
    {"dense_2", 0, 4096, 4096, 1, 1, 0, 1, 1}, {"dense_3", 0, -1, 4096, 1, 1, 0, 1, 0}};

static int fan_in(const an_param_layer *L)
{
    return L->is_conv ? L->in / L->groups * L->kh * L->kw : L->in;
}

static void test_output_names(void)
{
    int bad = 0;
    char msg[256] = "";
    for (int i = 0; i < AN_N_OUTPUTS; i++)
        if (an_output_find(OUT_NAMES[i]) != i) {
            bad++;
            snprintf(msg, sizeof msg, "%s -> %d", OUT_NAMES[i], an_output_find(OUT_NAMES[i]));
        }
    CHECK("an_output_find all 14 names", bad == 0, "%s", msg);
    CHECK("an_output_find unknown -> -1",
          an_output_find("conv_6") == -1 && an_output_find("") == -1 && an_output_find("CONV_1") == -1,
          "conv_6 -> %d, \"\" -> %d, CONV_1 -> %d", an_output_find("conv_6"), an_output_find(""),
          an_output_find("CONV_1"));
}

static void test_create_errors(void)
{
    an_net *net = NULL;
    an_status st = an_net_create(0, 1, &net);
    const char *msg = an_error_message();
    CHECK("an_net_create(classes=0) -> AN_ERR_ARGUMENT", st == AN_ERR_ARGUMENT,
          "status %d", (int)st);
    CHECK("an_net_create(classes=0) message", msg && msg[0] != '\0', "message \"%s\"", msg ? msg : "(null)");
    if (st == AN_OK) an_net_free(net);
    net = NULL;
    st = an_net_create(-3, 1, &net);
    CHECK("an_net_create(classes=-3) -> AN_ERR_ARGUMENT", st == AN_ERR_ARGUMENT, "status %d", (int)st);
    if (st == AN_OK) an_net_free(net);
}

static void test_layout(an_net *net, int classes)
{
    size_t total = an_net_param_count(net);
    size_t sum = 0;
    int bad = 0;
    char msg[256] = "";
    typedef struct { size_t a, b; } iv;
    iv ivs[2 * AN_N_PARAM_LAYERS];
    for (int j = 0; j < AN_N_PARAM_LAYERS; j++) {
        const an_param_layer *L = an_net_param_layer(net, j);
        const layer_t *e = &LAYERS[j];
        int out = e->out < 0 ? classes : e->out;
        if (!L) { bad++; snprintf(msg, sizeof msg, "layer %d is NULL", j); continue; }
        int wrong = strcmp(L->name ? L->name : "", e->name) != 0 || L->is_conv != e->is_conv ||
                    L->out != out || L->in != e->in || L->relu != e->relu;
        if (e->is_conv)
            wrong |= L->kh != e->k || L->kw != e->k || L->stride != e->stride ||
                     L->pad != e->pad || L->groups != e->groups;
        size_t wc = (size_t)out * (e->in / e->groups) * e->k * e->k;
        wrong |= L->weight_count != wc || L->bias_count != (size_t)out;
        if (wrong) {
            bad++;
            snprintf(msg, sizeof msg, "%s: name %s conv %d out %d in %d k %dx%d s %d p %d g %d relu %d w %zu b %zu",
                     e->name, L->name ? L->name : "(null)", L->is_conv, L->out, L->in, L->kh, L->kw,
                     L->stride, L->pad, L->groups, L->relu, L->weight_count, L->bias_count);
        }
        ivs[2 * j] = (iv){L->weight_offset, L->weight_offset + L->weight_count};
        ivs[2 * j + 1] = (iv){L->bias_offset, L->bias_offset + L->bias_count};
        sum += L->weight_count + L->bias_count;
    }
    for (int i = 0; i < 2 * AN_N_PARAM_LAYERS && !bad; i++) {
        if (ivs[i].b > total) { bad++; snprintf(msg, sizeof msg, "block %d past the end", i); }
        for (int k = 0; k < i; k++)
            if (ivs[i].a < ivs[k].b && ivs[k].a < ivs[i].b) {
                bad++;
                snprintf(msg, sizeof msg, "blocks %d and %d overlap", k, i);
            }
    }
    if (!bad && sum != total) { bad++; snprintf(msg, sizeof msg, "layers hold %zu of %zu", sum, total); }
    char name[64];
    snprintf(name, sizeof name, "param layer table (classes=%d)", classes);
    CHECK(name, bad == 0, "%s", msg);

    bad = 0;
    msg[0] = '\0';
    for (int i = 0; i < AN_N_OUTPUTS; i++) {
        an_output_info o = an_net_output(net, i);
        int c = OUT_CHW[i][0] < 0 ? classes : OUT_CHW[i][0];
        if (!o.name || strcmp(o.name, OUT_NAMES[i]) != 0 || o.c != c || o.h != OUT_CHW[i][1] ||
            o.w != OUT_CHW[i][2] || an_output_size(net, i) != (size_t)c * o.h * o.w) {
            bad++;
            snprintf(msg, sizeof msg, "%s: %s %dx%dx%d size %zu", OUT_NAMES[i], o.name ? o.name : "(null)",
                     o.c, o.h, o.w, an_output_size(net, i));
        }
    }
    snprintf(name, sizeof name, "output table (classes=%d)", classes);
    CHECK(name, bad == 0, "%s", msg);
}

static void test_param_counts(void)
{
    /* 1000 classes: 60,965,224 with the two-group convolutions of this net
     * (62,378,344, often quoted for AlexNet, is the ungrouped variant) */
    static const struct { int classes; size_t count; } want[] = {{2, 56876418}, {1000, 60965224}};
    for (int i = 0; i < 2; i++) {
        an_net *net = NULL;
        char name[64];
        snprintf(name, sizeof name, "an_net_param_count(classes=%d)", want[i].classes);
        if (!status_ok(name, an_net_create(want[i].classes, 7, &net))) continue;
        CHECK(name, an_net_param_count(net) == want[i].count && an_net_classes(net) == want[i].classes,
              "%zu, want %zu; classes %d", an_net_param_count(net), want[i].count, an_net_classes(net));
        test_layout(net, want[i].classes);
        an_net_free(net);
    }
}

static void test_init(void)
{
    an_net *a = NULL, *b = NULL, *c = NULL;
    if (!status_ok("an_net_create(2, seed 42)", an_net_create(2, 42, &a))) return;
    if (!status_ok("an_net_create(2, seed 42) again", an_net_create(2, 42, &b))) goto out;
    if (!status_ok("an_net_create(2, seed 43)", an_net_create(2, 43, &c))) goto out;
    size_t n = an_net_param_count(a);
    const float *pa = an_net_params(a), *pb = an_net_params(b), *pc = an_net_params(c);
    CHECK("same seed -> identical parameters", memcmp(pa, pb, n * sizeof *pa) == 0, NULL);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += pa[i] == pc[i];
    /* only the zero biases (9,570 of them) may coincide */
    CHECK("different seed -> different parameters", same < n / 1000, "%zu of %zu equal", same, n);

    float mean[3];
    an_net_get_mean(a, mean);
    CHECK("default mean (123.68, 116.779, 103.939)",
          mean[0] == 123.68f && mean[1] == 116.779f && mean[2] == 103.939f,
          "%.6g %.6g %.6g", mean[0], mean[1], mean[2]);

    for (int j = 0; j < AN_N_PARAM_LAYERS; j++) {
        const an_param_layer *L = an_net_param_layer(a, j);
        const float *w = pa + L->weight_offset;
        size_t m = L->weight_count;
        double s = 0, s2 = 0;
        for (size_t i = 0; i < m; i++) { s += w[i]; s2 += (double)w[i] * w[i]; }
        double want = sqrt(2.0 / fan_in(L));
        double mu = s / m, sd = sqrt(s2 / m - mu * mu);
        size_t within = 0;
        for (size_t i = 0; i < m; i++) within += fabs(w[i]) <= want;
        double frac = (double)within / m;
        /* sampling error of sd is sd/sqrt(2m), of the mean sd/sqrt(m); 5 sigma */
        double tol_sd = fmax(0.005, 5.0 / sqrt(2.0 * m));
        double tol_frac = 5.0 * sqrt(0.6827 * 0.3173 / m) + 0.001;
        char name[96];
        snprintf(name, sizeof name, "he_normal %s sd = sqrt(2/%d)", L->name, fan_in(L));
        CHECK(name, fabs(sd / want - 1) <= tol_sd && fabs(mu) <= 5 * want / sqrt((double)m) &&
                    fabs(frac - 0.6827) <= tol_frac,
              "sd %.6g want %.6g (rel %.2g), mean %.2g, P(|w|<=sd) %.4f (normal 0.6827)",
              sd, want, sd / want - 1, mu, frac);
        size_t nz = 0;
        for (size_t i = 0; i < L->bias_count; i++) nz += pa[L->bias_offset + i] != 0.0f;
        snprintf(name, sizeof name, "biases zero %s", L->name);
        CHECK(name, nz == 0, "%zu nonzero", nz);
    }
out:
    an_net_free(a);
    an_net_free(b);
    an_net_free(c);
}

/* ---------------------------------------------------------------- image_to_input */

static void test_image(void)
{
    const size_t plane = (size_t)AN_INPUT_SIZE * AN_INPUT_SIZE;
    float *dst = falloc(AN_INPUT_PIXELS, NAN);
    double grey[28 * 28];
    for (int i = 0; i < 28 * 28; i++) grey[i] = 100.25;
    if (status_ok("image_to_input constant grey", an_image_to_input(grey, 28, 1, 0, 28, 28, 1, dst))) {
        double maxd = 0;
        for (size_t i = 0; i < AN_INPUT_PIXELS; i++)
            if (!(fabs(dst[i] - 100.25) <= maxd)) maxd = fabs(dst[i] - 100.25);
        result("image_to_input constant grey 28x28", maxd, maxd / 100.25, maxd <= 1e-4, NULL);
    }

    anfx_file *f = load("image.anfx");
    if (!f) { free(dst); return; }
    /* grey 28x28 upsampled, copied to R, G, B */
    float g32[28 * 28];
    hash_fill_image(g32, 28 * 28, 3000);
    for (int i = 0; i < 28 * 28; i++) grey[i] = g32[i];
    for (size_t i = 0; i < AN_INPUT_PIXELS; i++) dst[i] = NAN;
    if (status_ok("image_to_input grey 28x28", an_image_to_input(grey, 28, 1, 0, 28, 28, 1, dst))) {
        ref_t r = get_ref(f, "image.grey28");
        const char *lab[3] = {"image_to_input grey28 R", "image_to_input grey28 G", "image_to_input grey28 B"};
        for (int ch = 0; ch < 3; ch++) compare(lab[ch], dst + ch * plane, plane, &r, ATOL_OP, RTOL);
    }
    /* RGB 20 x 28 under three stride layouts: interleaved, planar, R's column-major */
    enum { H = 20, W = 28 };
    float c32[H * W * 3];
    hash_fill_image(c32, H * W * 3, 3001);   /* (y, x, ch) interleaved */
    double *src = xmalloc(sizeof(double) * H * W * 3);
    static const char *lay[3] = {"interleaved", "planar", "column-major"};
    ptrdiff_t st[3][3] = {{W * 3, 3, 1}, {W, 1, H * W}, {1, H, H * W}};
    ref_t r = get_ref(f, "image.rgb20x28");
    for (int L = 0; L < 3; L++) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int ch = 0; ch < 3; ch++)
                    src[y * st[L][0] + x * st[L][1] + ch * st[L][2]] = c32[(y * W + x) * 3 + ch];
        for (size_t i = 0; i < AN_INPUT_PIXELS; i++) dst[i] = NAN;
        char lab[96];
        snprintf(lab, sizeof lab, "image_to_input rgb20x28 %s", lay[L]);
        if (status_ok(lab, an_image_to_input(src, st[L][0], st[L][1], st[L][2], H, W, 3, dst)))
            compare(lab, dst, AN_INPUT_PIXELS, &r, ATOL_OP, RTOL);
    }
    an_status s2 = an_image_to_input(src, W * 3, 3, 1, H, W, 2, dst);
    an_status s0 = an_image_to_input(src, W * 3, 3, 1, 0, W, 3, dst);
    CHECK("image_to_input rejects channels=2, h=0", s2 == AN_ERR_ARGUMENT && s0 == AN_ERR_ARGUMENT,
          "status %d, %d", (int)s2, (int)s0);
    free(src);
    free(dst);
    anfx_free(f);
}

/* ---------------------------------------------------------------- whole net */

static void test_net(void)
{
    anfx_file *f = load("net.anfx");
    if (!f) return;
    const anfx_tensor *tc = anfx_get(f, "net.classes", ANFX_I32);
    int classes = tc ? ((const int32_t *)tc->data)[0] : 10;
    an_net *net = NULL;
    float *images = NULL, *out = NULL;
    if (!status_ok("net create", an_net_create(classes, 1, &net))) goto done;
    float *p = an_net_params(net);
    for (int j = 0; j < AN_N_PARAM_LAYERS; j++) {
        const an_param_layer *L = an_net_param_layer(net, j);
        float scale = j == AN_P_DENSE_3 ? (float)(sqrt(6.0 / fan_in(L)) / 32) : he_uniform_scale(fan_in(L));
        hash_fill(p + L->weight_offset, L->weight_count, 1000 + 2 * (uint64_t)j, scale);
        hash_fill(p + L->bias_offset, L->bias_count, 1001 + 2 * (uint64_t)j, 0.1f);
    }
    an_net_params_changed(net);
    const int n = 2;
    images = falloc((size_t)n * AN_INPUT_PIXELS, 0);
    hash_fill_image(images, (size_t)n * AN_INPUT_PIXELS, 2000);
    out = falloc((size_t)n * an_output_size(net, AN_CONV_1), 0);
    for (int i = 0; i < AN_N_OUTPUTS; i++) {
        size_t m = (size_t)n * an_output_size(net, i);
        for (size_t k = 0; k < m; k++) out[k] = NAN;
        char lab[96], key[96];
        snprintf(lab, sizeof lab, "net %s", OUT_NAMES[i]);
        an_status st = an_net_forward(net, images, n, i, out);
        if (!status_ok(lab, st)) continue;
        snprintf(key, sizeof key, "net.%s", OUT_NAMES[i]);
        check_ref(f, lab, key, out, m, i <= AN_CONVPOOL_1 ? ATOL_SHALLOW : ATOL_DEEP);
    }
    /* the second image alone gives the same logits as in the batch */
    {
        size_t m = an_output_size(net, AN_DENSE_3);
        float *one = falloc(m, NAN);
        if (status_ok("net batch of 1", an_net_forward(net, images + AN_INPUT_PIXELS, 1, AN_DENSE_3, one))) {
            ref_t r = get_ref(f, "net.dense_3");
            if (r.ok && r.full && r.count == 2 * m) {
                r.full += m;
                r.count = m;
                compare("net dense_3 image 2 alone", one, m, &r, ATOL_DEEP, RTOL);
            }
        }
        free(one);
    }
done:
    free(images);
    free(out);
    an_net_free(net);
    anfx_free(f);
}

int main(int argc, char **argv)
{
    if (argc > 1) fixture_dir = argv[1];
    printf("backend: %s\n", an_backend_name());
    test_ops();
    test_output_names();
    test_create_errors();
    test_param_counts();
    test_init();
    test_image();
    test_net();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
