/* testutil.c: shared by the engine's C tests (see testutil.h); moved out of
 * test_engine.c unchanged. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "hashfill.h"
#include "testutil.h"

int n_pass, n_fail;
const char *fixture_dir = "fixtures";

void result(const char *name, double maxabs, double maxrel, int ok, const char *fmt, ...)
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

int status_ok(const char *name, an_status st)
{
    if (st == AN_OK) return 1;
    result(name, -1, -1, 0, "status %d: %s", (int)st, an_error_message());
    return 0;
}

void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

float *falloc(size_t n, float value)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = value;
    return p;
}

float *fdup(const float *src, size_t n)
{
    float *p = xmalloc(n * sizeof *p);
    memcpy(p, src, n * sizeof *p);
    return p;
}

float bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) {     /* finite: round to nearest even */
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
    }
    memcpy(&x, &u, sizeof x);
    return x;
}

float *bf16_rounded(const float *x, size_t n)
{
    float *r = falloc(n, 0);
    for (size_t i = 0; i < n; i++) r[i] = bf16_round(x[i]);
    return r;
}

anfx_file *load(const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, file);
    anfx_file *f = anfx_load(path);
    if (!f) CHECK(file, 0, "cannot read fixture %s", path);
    return f;
}

float xscale(const anfx_file *f, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s.xscale", name);
    const anfx_tensor *t = anfx_get(f, key, ANFX_F32);
    return t && t->count == 1 ? *(const float *)t->data : 1.0f;
}

const int32_t *ispec(const anfx_file *f, const char *name, int len)
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

ref_t get_ref(const anfx_file *f, const char *name)
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

/* half a unit in the last place of float x: the rounding of a float result */
double half_ulp(float x)
{
    float a = fabsf(x);
    return 0.5 * ((double)nextafterf(a, INFINITY) - a);
}

/* got[0..count) against ref; returns 1 when within tolerance. With `rounded`
 * (float results whose rounding is not in the reference, e.g. the new
 * parameters when `got` is their update), half an ulp of rounded[i] is
 * allowed on top, and their sum on the [sums] check. */
int compare_ex(const char *name, const float *got, size_t count, const ref_t *r,
                      double atol_frac, double rtol, const allowance *al)
{
    static const allowance none = {NULL, 0, 0};
    if (!al) al = &none;
    const float *rounded = al->rounded;
    char nm[160];
    if (!r->ok) return 0;
    if (count != r->count) {
        CHECK(name, 0, "size %zu, reference has %zu", count, r->count);
        return 0;
    }
    double atol = atol_frac * r->maxabs + al->flip;
    double maxabs = 0, maxrel = 0, worst = 0;
    size_t bad = 0, worst_i = 0;
    size_t n = r->full ? count : r->nsample;
    for (size_t k = 0; k < n; k++) {
        size_t i = r->full ? k : (size_t)r->idx[k];
        if (i >= count) { bad++; continue; }
        double b = r->full ? r->full[k] : r->val[k];
        double d = fabs((double)got[i] - b);
        double tol = atol + rtol * fabs(b) + (rounded ? half_ulp(rounded[i]) : 0.0);
        if (!(d <= tol)) bad++;
        if (!(d <= maxabs)) maxabs = d;
        /* relative error only where the value is not dominated by atol */
        if (fabs(b) > 0.01 * r->maxabs && !(d / fabs(b) <= maxrel)) maxrel = d / fabs(b);
        if (!(d / tol <= worst)) { worst = d / tol; worst_i = i; }
    }
    snprintf(nm, sizeof nm, "%s%s", name, r->full ? "" : " [sample]");
    int ok = bad == 0;
    if (ok && al->flip > 0)
        result(nm, maxabs, maxrel, 1, "n=%zu atol=%.2g (%.2g for near-ties)", n, atol, al->flip);
    else if (ok)
        result(nm, maxabs, maxrel, 1, "n=%zu atol=%.2g", n, atol);
    else
        result(nm, maxabs, maxrel, 0, "%zu of %zu outside tolerance; worst at %zu: got %.7g (atol=%.2g)",
               bad, n, worst_i, worst_i < count ? got[worst_i] : NAN, atol);
    if (r->full) return ok;

    double s = 0, sa = 0, slack = 0;
    for (size_t i = 0; i < count; i++) {
        s += got[i];
        sa += fabs(got[i]);
        if (rounded) slack += half_ulp(rounded[i]);
    }
    double tol = SUM_RTOL * r->sumabs + slack + al->flip_sum;
    double ds = fabs(s - r->sum), dsa = fabs(sa - r->sumabs);
    int ok2 = ds <= tol && dsa <= tol;
    snprintf(nm, sizeof nm, "%s [sums]", name);
    result(nm, ds > dsa ? ds : dsa, (ds > dsa ? ds : dsa) / r->sumabs, ok2,
           "sum %.9g vs %.9g, sum|x| %.9g vs %.9g", s, r->sum, sa, r->sumabs);
    return ok && ok2;
}

int compare(const char *name, const float *got, size_t count, const ref_t *r,
            double atol_frac, double rtol)
{
    return compare_ex(name, got, count, r, atol_frac, rtol, NULL);
}

int check_ref(const anfx_file *f, const char *label, const char *refname,
              const float *got, size_t count, double atol_frac)
{
    ref_t r = get_ref(f, refname);
    return compare(label, got, count, &r, atol_frac, RTOL);
}

int fan_in(const an_param_layer *L)
{
    return L->is_conv ? L->in / L->groups * L->kh * L->kw : L->in;
}

/* the whole-net parameters of net.anfx and train.anfx */
void hash_fill_net(an_net *net)
{
    float *p = an_net_params(net);
    for (int j = 0; j < AN_N_PARAM_LAYERS; j++) {
        const an_param_layer *L = an_net_param_layer(net, j);
        float scale = j == AN_P_DENSE_3 ? (float)(sqrt(6.0 / fan_in(L)) / 32) : he_uniform_scale(fan_in(L));
        hash_fill(p + L->weight_offset, L->weight_count, 1000 + 2 * (uint64_t)j, scale);
        hash_fill(p + L->bias_offset, L->bias_count, 1001 + 2 * (uint64_t)j, 0.1f);
    }
    an_net_params_changed(net);
}


conv_case conv_case_fill(const an_conv_spec *s, int c)
{
    int oh, ow;
    an_conv_output_hw(s, &oh, &ow);
    conv_case k;
    k.nx = (size_t)s->n * s->in * s->h * s->w;
    k.nw = (size_t)s->out * (s->in / s->groups) * s->k * s->k;
    k.ny = (size_t)s->n * s->out * oh * ow;
    k.x = falloc(k.nx, 0);
    k.w = falloc(k.nw, 0);
    k.b = falloc((size_t)s->out, 0);
    k.r = falloc(k.ny, 0);
    hash_fill(k.x, k.nx, 16 * (uint64_t)c + 0, 1.0f);
    hash_fill(k.w, k.nw, 16 * (uint64_t)c + 1, he_uniform_scale(s->in / s->groups * s->k * s->k));
    hash_fill(k.b, (size_t)s->out, 16 * (uint64_t)c + 2, 0.1f);
    hash_fill(k.r, k.ny, 16 * (uint64_t)c + 3, 1.0f);
    return k;
}

int address_limit_untestable(const char *label)
{
#if defined(__SANITIZE_ADDRESS__)
    printf("SKIP %s: built with AddressSanitizer, whose reserved shadow memory rules out RLIMIT_AS\n", label);
    return 1;
#endif
    if (RUNNING_ON_VALGRIND) {
        printf("SKIP %s: under valgrind, which manages the address space itself\n", label);
        return 1;
    }
    return 0;
}
