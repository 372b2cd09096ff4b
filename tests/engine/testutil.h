/* testutil.h: what the engine's C tests share: the PASS/FAIL lines and the
 * tolerance comparison against fixture references (see test_engine.c's head
 * comment for the tolerances). Each test program prints its own
 * "N passed, M failed"; `make check` adds them up. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "alexnet.h"
#include "fixture.h"

extern int n_pass, n_fail;
extern const char *fixture_dir;     /* "fixtures" unless set from argv */

#define RTOL 1e-4
#define ATOL_OP 1e-5
#define ATOL_SHALLOW 1e-5
#define ATOL_DEEP 3e-5
#define SUM_RTOL 2e-6

/* one line: name, max abs/rel error (negative: none), PASS/FAIL, note */
void result(const char *name, double maxabs, double maxrel, int ok, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define CHECK(name, cond, ...) result(name, -1, -1, (cond) != 0, __VA_ARGS__)
/* 1 when st is AN_OK, else a FAIL line with the engine's message */
int status_ok(const char *name, an_status st);

/* 1, after a SKIP line saying why, where a test cannot limit the address
 * space (RLIMIT_AS): under AddressSanitizer (its reserved shadow memory)
 * or valgrind (which manages the address space itself) */
int address_limit_untestable(const char *label);

void *xmalloc(size_t bytes);                /* exits on failure */
float *falloc(size_t n, float value);
float *fdup(const float *src, size_t n);
/* x rounded to bf16 (to nearest even, as oneDNN, cuDNN and PyTorch round) */
float bf16_round(float x);
float *bf16_rounded(const float *x, size_t n);   /* a rounded copy (falloc) */

/* fixture_dir/file, or NULL after a FAIL line */
anfx_file *load(const char *file);
/* per-op fixture parameters NAME.xscale (1 when absent) and NAME.spec (int32[len]) */
float xscale(const anfx_file *f, const char *name);
const int32_t *ispec(const anfx_file *f, const char *name, int len);

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

ref_t get_ref(const anfx_file *f, const char *name);
/* got[0..count) against ref; prints the result line(s), returns 1 when within tolerance */
int compare(const char *name, const float *got, size_t count, const ref_t *r, double atol_frac, double rtol);
/* half a unit in the last place of float x */
double half_ulp(float x);
/* compare() allowing half an ulp of rounded[i] on top (NULL: none) */
/* Extra allowances on top of atol_frac/rtol:
 * rounded: float results whose rounding is not in the reference (the new
 *          parameters when `got` is their update): half an ulp of rounded[i]
 *          per element, their sum on the [sums] check;
 * flip, flip_sum: the largest change per element and in sum |x| that the
 *          engine's other choices at near-ties can cause (see test_train). */
typedef struct {
    const float *rounded;
    double flip, flip_sum;
} allowance;

int compare_ex(const char *name, const float *got, size_t count, const ref_t *r, double atol_frac, double rtol,
               const allowance *al);
int check_ref(const anfx_file *f, const char *label, const char *refname, const float *got, size_t count,
              double atol_frac);

/* a layer's fan-in: the inputs each output sums */
int fan_in(const an_param_layer *L);
/* the whole-net parameters of net.anfx and train.anfx (hash streams 1000 up) */
void hash_fill_net(an_net *net);

/* ops.anfx's convolution case `c`: its input x, weights w, bias b and
 * output gradient r, hash-filled as tools/make_fixtures.py fills them
 * (the caller frees the four) */
#include "ops.h"
typedef struct { size_t nx, nw, ny; float *x, *w, *b, *r; } conv_case;
conv_case conv_case_fill(const an_conv_spec *s, int c);

#endif
