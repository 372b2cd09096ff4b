/* r_train.c: .Call entry points for the training state (frozen layers,
 * dropout, checkpoints). The steps themselves are r_images.c's batch
 * entries; the epoch loop lives in R (R/train.R), one call per batch, so an
 * interrupt between batches leaves the net intact and R's own condition
 * handling returns the history so far. */
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

const int *get_labels(SEXP labels, int n)
{
    if (TYPEOF(labels) != INTSXP || Rf_length(labels) != n)
        Rf_error("`labels` must be an integer vector with one label per image (%d)", n);
    return INTEGER(labels);
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
