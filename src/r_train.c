/* r_train.c: .Call entry points for training. The epoch loop lives in R
 * (R/train.R), one call per batch, so an interrupt between batches leaves
 * the net intact and R's own condition handling returns the history so far. */
#include <string.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "r_alexnet.h"
#include "r_group.h"

an_loss_kind get_loss(SEXP loss)
{
    int k = scalar_int(loss, "loss");
    if (k != AN_LOSS_CROSS_ENTROPY && k != AN_LOSS_MSE) Rf_error("unknown loss code %d", k);
    return (an_loss_kind)k;
}

/* Converts images x[index] (1-based) into the engine's input; labels are 0-based. */
static float *batch_input(const pixel_array *a, SEXP index, int *n_out)
{
    if (TYPEOF(index) != INTSXP) Rf_error("`index` must be an integer vector");
    int n = Rf_length(index);
    if (n < 1) Rf_error("a batch needs at least one image");
    float *in = (float *)R_alloc((size_t)n * AN_INPUT_PIXELS, sizeof(float));
    for (int j = 0; j < n; j++) {
        int i = INTEGER(index)[j];
        if (i == NA_INTEGER || i < 1 || i > a->n) Rf_error("image index %d is outside 1..%d", i, a->n);
        an_status st = image_input(a, i - 1, in + (size_t)j * AN_INPUT_PIXELS);
        if (st != AN_OK) engine_error(st);
    }
    *n_out = n;
    return in;
}

const int *get_labels(SEXP labels, int n)
{
    if (TYPEOF(labels) != INTSXP || Rf_length(labels) != n)
        Rf_error("`labels` must be an integer vector with one label per image (%d)", n);
    return INTEGER(labels);
}

static SEXP loss_result(double loss_sum, int correct)
{
    SEXP res = PROTECT(Rf_allocVector(REALSXP, 2));
    REAL(res)[0] = loss_sum;
    REAL(res)[1] = correct;
    UNPROTECT(1);
    return res;
}

SEXP r_an_train_batch(SEXP ptr, SEXP x, SEXP index, SEXP labels, SEXP loss, SEXP sgd, SEXP share)
{
    /* A Ctrl-C pressed since the last step is raised here, before any work,
     * so the R loop knows exactly which steps were taken. */
    R_CheckUserInterrupt();
    an_net *net = get_net(ptr);
    pixel_array a = get_pixels(x);
    if (TYPEOF(sgd) != REALSXP || XLENGTH(sgd) != 5)
        Rf_error("`sgd` must be c(lr, momentum, decay, weight_decay, nesterov)");
    const double *o = REAL(sgd);
    an_sgd opt = {(float)o[0], (float)o[1], (float)o[2], (float)o[3], o[4] != 0};
    int n = 0;
    /* a rank may have no rows in a last, small batch: it still takes part */
    float *in = Rf_length(index) == 0 && !Rf_isNull(share) ? NULL : batch_input(&a, index, &n);
    const int *lab = get_labels(labels, n);
    double loss_sum = 0;
    int correct = 0;
    an_loss_kind kind = get_loss(loss);
    an_status st = train_step(net, share, in, lab, n, kind, &opt, &loss_sum, &correct);   /* holds SIGINT */
    if (st != AN_OK) engine_error(st);
    return loss_result(loss_sum, correct);
}

SEXP r_an_evaluate(SEXP ptr, SEXP x, SEXP labels, SEXP loss, SEXP batch_size)
{
    an_net *net = get_net(ptr);
    pixel_array a = get_pixels(x);
    const int *lab = get_labels(labels, a.n);
    an_loss_kind kind = get_loss(loss);
    int batch = scalar_int(batch_size, "batch_size");
    if (batch < 1) Rf_error("`batch_size` must be at least 1");
    if (batch > a.n) batch = a.n;
    float *in = (float *)R_alloc((size_t)batch * AN_INPUT_PIXELS, sizeof(float));
    double loss_sum = 0;
    int correct = 0;
    for (int i0 = 0; i0 < a.n; i0 += batch) {
        int b = a.n - i0 < batch ? a.n - i0 : batch;
        for (int j = 0; j < b; j++) {
            an_status st = image_input(&a, i0 + j, in + (size_t)j * AN_INPUT_PIXELS);
            if (st != AN_OK) engine_error(st);
        }
        sigset_t held;
        sigint_hold(&held);
        an_status st = an_net_evaluate(net, in, lab + i0, b, kind, &loss_sum, &correct);
        sigint_release(&held);
        if (st != AN_OK) engine_error(st);
        R_CheckUserInterrupt();
    }
    return loss_result(loss_sum, correct);
}

SEXP r_an_set_trainable_from(SEXP ptr, SEXP first)
{
    an_status st = an_net_set_trainable_from(get_net(ptr), scalar_int(first, "first"));
    if (st != AN_OK) engine_error(st);
    return R_NilValue;
}

SEXP r_an_get_trainable_from(SEXP ptr) { return Rf_ScalarInteger(an_net_trainable_from(get_net(ptr))); }

SEXP r_an_set_dropout(SEXP ptr, SEXP rate, SEXP seed)
{
    an_net *net = get_net(ptr);
    an_status st = an_net_set_dropout(net, (float)Rf_asReal(rate));
    if (st != AN_OK) engine_error(st);
    if (!Rf_isNull(seed)) {
        double s = Rf_asReal(seed);
        if (!R_FINITE(s)) Rf_error("`seed` must be a finite number");
        an_net_seed_dropout(net, (uint64_t)(int64_t)s);
    }
    return R_NilValue;
}

/* The training state as raw float bytes (params, velocity) or a number
 * (iterations), for checkpoints. */
static float *state_block(an_net *net, const char *what, size_t *count)
{
    *count = an_net_param_count(net);
    if (strcmp(what, "params") == 0) return an_net_params(net);
    if (strcmp(what, "velocity") == 0) {
        float *v;
        an_status st = an_net_velocity(net, &v);
        if (st != AN_OK) engine_error(st);
        return v;
    }
    Rf_error("unknown state '%s'", what);
    return NULL;
}

SEXP r_an_get_state(SEXP ptr, SEXP what)
{
    an_net *net = get_net(ptr);
    const char *w = CHAR(STRING_ELT(what, 0));
    if (strcmp(w, "iterations") == 0) return Rf_ScalarReal((double)an_net_iterations(net));
    size_t count;
    float *block = state_block(net, w, &count);
    SEXP res = PROTECT(Rf_allocVector(RAWSXP, (R_xlen_t)(count * sizeof(float))));
    memcpy(RAW(res), block, count * sizeof(float));
    UNPROTECT(1);
    return res;
}

SEXP r_an_set_state(SEXP ptr, SEXP what, SEXP value)
{
    an_net *net = get_net(ptr);
    const char *w = CHAR(STRING_ELT(what, 0));
    if (strcmp(w, "optimizer") == 0) {   /* any value: reset */
        an_net_reset_optimizer(net);
        return R_NilValue;
    }
    if (strcmp(w, "iterations") == 0) {
        double it = Rf_asReal(value);
        if (!R_FINITE(it) || it < 0) Rf_error("`iterations` must be a non-negative number");
        an_net_set_iterations(net, (uint64_t)it);
        return R_NilValue;
    }
    size_t count;
    float *block = state_block(net, w, &count);
    if (TYPEOF(value) != RAWSXP || (size_t)XLENGTH(value) != count * sizeof(float))
        Rf_error("the saved %s do not fit this net (%.0f values expected)", w, (double)count);
    memcpy(block, RAW(value), count * sizeof(float));
    if (strcmp(w, "params") == 0) an_net_params_changed(net);
    return R_NilValue;
}
