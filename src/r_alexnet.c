/* r_alexnet.c: the .Call entry points of the alexnet package.
 *
 * Only glue lives here: convert R objects, call the engine (engine/alexnet.h),
 * turn engine failures into R errors with an_error_message(). The argument
 * checks that produce user-facing messages are done in R (R/checks.R); the
 * checks here are a second line of defence so that no input can crash R.
 *
 * Memory: temporary buffers come from R_alloc, which R reclaims when the
 * .Call returns, also when it is left by an error or an interrupt.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <limits.h>
#include <unistd.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "images.h"
#include "r_alexnet.h"

/* ------------------------------------------------------------------ nets -- */

static SEXP net_tag(void)
{
    static SEXP tag = NULL;
    if (tag == NULL) tag = Rf_install("alexnet_net");
    return tag;
}

/* Nets live outside R's heap (hundreds of MB each), so R's collector does
 * not feel their weight: count them, and collect before making another
 * while some exist, so unreachable nets are finalised before memory runs out. */
static int live_nets = 0;

/* Signals: the engine's calls hold asynchronous signals back themselves
 * while they compute (engine/signals.c), so a Ctrl-C arrives here, between
 * engine calls, as a pending R interrupt; an engine call that ends early on
 * one (AN_ERR_INTERRUPTED) raises it (engine_error). */

static void net_finalize(SEXP ptr)
{
    an_net *net = (an_net *) R_ExternalPtrAddr(ptr);
    if (net != NULL) {
        an_net_free(net);
        live_nets--;
        R_ClearExternalPtr(ptr);
    }
}

an_net *get_net(SEXP ptr)
{
    if (TYPEOF(ptr) != EXTPTRSXP || R_ExternalPtrTag(ptr) != net_tag())
        Rf_error("not an alexnet network (expected the external pointer of an alexnet object)");
    an_net *net = (an_net *) R_ExternalPtrAddr(ptr);
    if (net == NULL)
        Rf_error("this alexnet object is no longer valid (saved and reloaded?); "
                 "create it again with alexnet()");
    return net;
}

void engine_error(an_status status)
{
    const char *msg = an_error_message();
    if (msg == NULL || msg[0] == '\0') msg = "the alexnet engine failed (no message)";
    if (status == AN_ERR_INTERRUPTED) {
        R_CheckUserInterrupt();   /* the pending Ctrl-C, as R's own interrupt */
        Rf_error("interrupted: %s", msg);
    }
    Rf_error("%s", msg);
}

int scalar_int(SEXP x, const char *what)
{
    if (Rf_length(x) != 1) Rf_error("`%s` must be a single number", what);
    int v = Rf_asInteger(x);
    if (v == NA_INTEGER) Rf_error("`%s` must not be NA", what);
    return v;
}

/* an engine output index (AN_CONV_1 ...), checked */
int get_output_index(SEXP layer)
{
    int u = scalar_int(layer, "layer");
    if (u < 0 || u >= AN_N_OUTPUTS) Rf_error("unknown layer index %d", u);
    return u;
}

static void set_mean(an_net *net, SEXP mean)
{
    if (TYPEOF(mean) != REALSXP || XLENGTH(mean) != 3)
        Rf_error("`mean` must be a numeric vector of length 3");
    float m[3];
    for (int i = 0; i < 3; i++) {
        double v = REAL(mean)[i];
        if (!R_FINITE(v)) Rf_error("`mean` must be finite");
        m[i] = (float) v;
    }
    an_net_set_mean(net, m);
}

/* fill FALSE: every parameter 0 (weights from a file follow; r_an_net_init_layers
 * then draws the layers it lacked) */
SEXP r_an_net_create(SEXP classes, SEXP seed, SEXP mean, SEXP arch, SEXP fill)
{
    int variant = an_arch_find(TYPEOF(arch) == STRSXP && XLENGTH(arch) == 1 && STRING_ELT(arch, 0) != NA_STRING
                               ? CHAR(STRING_ELT(arch, 0)) : NULL);
    if (variant < 0) Rf_error("`arch` must be \"heuritech\", \"caffe\" or \"torchvision\"");
    int k = scalar_int(classes, "classes");
    if (k < 1) Rf_error("`classes` must be at least 1");
    if (TYPEOF(seed) != REALSXP || XLENGTH(seed) != 1)
        Rf_error("`seed` must be a single number");
    double s = REAL(seed)[0];
    if (!R_FINITE(s) || s < 0 || s > 9007199254740992.0 || s != floor(s))
        Rf_error("`seed` must be a whole number between 0 and 2^53");

    if (live_nets > 0) R_gc();
    /* Make the pointer first, so that an allocation failure cannot leak the net. */
    SEXP ptr = PROTECT(R_MakeExternalPtr(NULL, net_tag(), R_NilValue));
    R_RegisterCFinalizerEx(ptr, net_finalize, TRUE);
    an_net *net = NULL;
    an_status st = Rf_asLogical(fill) == FALSE ? an_net_create_unfilled((an_arch) variant, k, (uint64_t) s, &net)
                                               : an_net_create_arch((an_arch) variant, k, (uint64_t) s, &net);
    if (st != AN_OK) {
        if (net != NULL) an_net_free(net);
        engine_error(st);
    }
    R_SetExternalPtrAddr(ptr, net);
    live_nets++;
    set_mean(net, mean);
    UNPROTECT(1);
    return ptr;
}

/* The input scale per channel: set from 1 or 3 numbers (NULL: only read). */
SEXP r_an_net_scale(SEXP ptr, SEXP scale)
{
    an_net *net = get_net(ptr);
    if (!Rf_isNull(scale)) {
        if (TYPEOF(scale) != REALSXP || (XLENGTH(scale) != 1 && XLENGTH(scale) != 3))
            Rf_error("the input scale must be 1 or 3 numbers");
        const double *v = REAL(scale);
        int three = XLENGTH(scale) == 3;
        float f[3] = {(float) v[0], (float) v[three ? 1 : 0], (float) v[three ? 2 : 0]};
        an_status st = an_net_set_input_scales(net, f);
        if (st != AN_OK) engine_error(st);
    }
    float f[3];
    an_net_get_input_scales(net, f);
    SEXP res = PROTECT(Rf_allocVector(REALSXP, 3));
    for (int c = 0; c < 3; c++) REAL(res)[c] = f[c];
    UNPROTECT(1);
    return res;
}

/* he_normal for the parameter layers flagged in `which` (logical, one per
 * layer), as creation with `seed` draws them */
SEXP r_an_net_init_layers(SEXP ptr, SEXP seed, SEXP which)
{
    an_net *net = get_net(ptr);
    if (TYPEOF(which) != LGLSXP || XLENGTH(which) != AN_N_PARAM_LAYERS)
        Rf_error("`which` must be %d logicals", AN_N_PARAM_LAYERS);
    int flags[AN_N_PARAM_LAYERS];
    for (int l = 0; l < AN_N_PARAM_LAYERS; l++) flags[l] = LOGICAL(which)[l] == TRUE;
    an_net_init_layers(net, (uint64_t) Rf_asReal(seed), flags);
    return R_NilValue;
}

SEXP r_an_net_arch(SEXP ptr)
{
    return Rf_mkString(an_arch_name(an_net_arch(get_net(ptr))));
}

SEXP r_an_net_valid(SEXP ptr)
{
    return Rf_ScalarLogical(TYPEOF(ptr) == EXTPTRSXP && R_ExternalPtrTag(ptr) == net_tag() &&
                            R_ExternalPtrAddr(ptr) != NULL);
}

/* Physical memory in bytes (NA when unknown), for the R-level checks that
 * refuse work which cannot fit before anything is allocated. */
SEXP r_an_phys_memory(void)
{
    double pages = (double) sysconf(_SC_PHYS_PAGES), size = (double) sysconf(_SC_PAGESIZE);
    return Rf_ScalarReal(pages > 0 && size > 0 ? pages * size : NA_REAL);
}

/* A Ctrl-C pending (for instance held back by suspendInterrupts()) is
 * raised now. */
SEXP r_an_check_interrupt(void)
{
    R_CheckUserInterrupt();
    return R_NilValue;
}

/* For the tests: nets alive (made and not yet finalised) in this process,
 * and whether it is a forked child. */
SEXP r_an_live_nets(void)
{
    SEXP res = PROTECT(Rf_allocVector(INTSXP, 2));
    INTEGER(res)[0] = live_nets;
    INTEGER(res)[1] = an_forked_child();
    UNPROTECT(1);
    return res;
}

SEXP r_an_net_free(SEXP ptr)
{
    if (TYPEOF(ptr) == EXTPTRSXP && R_ExternalPtrTag(ptr) == net_tag()) net_finalize(ptr);
    return R_NilValue;
}

SEXP r_an_net_classes(SEXP ptr)
{
    return Rf_ScalarInteger(an_net_classes(get_net(ptr)));
}

SEXP r_an_net_param_count(SEXP ptr)
{
    return Rf_ScalarReal((double) an_net_param_count(get_net(ptr)));
}

SEXP r_an_net_get_mean(SEXP ptr)
{
    float m[3];
    an_net_get_mean(get_net(ptr), m);
    SEXP res = PROTECT(Rf_allocVector(REALSXP, 3));
    for (int i = 0; i < 3; i++) REAL(res)[i] = m[i];
    UNPROTECT(1);
    return res;
}

SEXP r_an_net_set_mean(SEXP ptr, SEXP mean)
{
    set_mean(get_net(ptr), mean);
    return R_NilValue;
}

/* ---------------------------------------------------------------- tables -- */

SEXP r_an_net_layers(SEXP ptr)
{
    an_net *net = get_net(ptr);
    static const char *cols[] = {"name", "kind", "out", "in", "kh", "kw", "stride", "pad",
                                 "groups", "relu", "weight_count", "bias_count",
                                 "weight_offset", "bias_offset"};
    const int ncol = (int) (sizeof cols / sizeof cols[0]);
    const int n = AN_N_PARAM_LAYERS;
    SEXP res = PROTECT(named_list(ncol, cols));
    SET_VECTOR_ELT(res, 0, Rf_allocVector(STRSXP, n));
    SET_VECTOR_ELT(res, 1, Rf_allocVector(STRSXP, n));
    for (int j = 2; j <= 8; j++) SET_VECTOR_ELT(res, j, Rf_allocVector(INTSXP, n));
    SET_VECTOR_ELT(res, 9, Rf_allocVector(LGLSXP, n));
    for (int j = 10; j <= 13; j++) SET_VECTOR_ELT(res, j, Rf_allocVector(REALSXP, n));
    for (int i = 0; i < n; i++) {
        const an_param_layer *l = an_net_param_layer(net, i);
        if (l == NULL) Rf_error("the engine has no parameter layer %d", i);
        SET_STRING_ELT(VECTOR_ELT(res, 0), i, Rf_mkChar(l->name ? l->name : ""));
        SET_STRING_ELT(VECTOR_ELT(res, 1), i, Rf_mkChar(l->is_conv ? "conv" : "dense"));
        INTEGER(VECTOR_ELT(res, 2))[i] = l->out;
        INTEGER(VECTOR_ELT(res, 3))[i] = l->in;
        INTEGER(VECTOR_ELT(res, 4))[i] = l->kh;
        INTEGER(VECTOR_ELT(res, 5))[i] = l->kw;
        INTEGER(VECTOR_ELT(res, 6))[i] = l->stride;
        INTEGER(VECTOR_ELT(res, 7))[i] = l->pad;
        INTEGER(VECTOR_ELT(res, 8))[i] = l->groups;
        LOGICAL(VECTOR_ELT(res, 9))[i] = l->relu != 0;
        REAL(VECTOR_ELT(res, 10))[i] = (double) l->weight_count;
        REAL(VECTOR_ELT(res, 11))[i] = (double) l->bias_count;
        REAL(VECTOR_ELT(res, 12))[i] = (double) l->weight_offset;
        REAL(VECTOR_ELT(res, 13))[i] = (double) l->bias_offset;
    }
    UNPROTECT(1);
    return res;
}

/* The net's named outputs (a variant's absent steps left out). */
SEXP r_an_net_outputs(SEXP ptr)
{
    an_net *net = get_net(ptr);
    static const char *cols[] = {"name", "c", "h", "w", "size"};
    int n = an_output_count(an_net_arch(net));
    SEXP res = PROTECT(named_list(5, cols));
    SET_VECTOR_ELT(res, 0, Rf_allocVector(STRSXP, n));
    for (int j = 1; j <= 3; j++) SET_VECTOR_ELT(res, j, Rf_allocVector(INTSXP, n));
    SET_VECTOR_ELT(res, 4, Rf_allocVector(REALSXP, n));
    for (int i = 0, r = 0; i < AN_N_OUTPUTS; i++) {
        an_output_info o = an_net_output(net, i);
        if (!o.name) continue;
        SET_STRING_ELT(VECTOR_ELT(res, 0), r, Rf_mkChar(o.name));
        INTEGER(VECTOR_ELT(res, 1))[r] = o.c;
        INTEGER(VECTOR_ELT(res, 2))[r] = o.h;
        INTEGER(VECTOR_ELT(res, 3))[r] = o.w;
        REAL(VECTOR_ELT(res, 4))[r] = (double) an_output_size(net, i);
        r++;
    }
    UNPROTECT(1);
    return res;
}

/* One variant's facts: list(layers, operations (named by layer), input_size,
 * mean, scale, params_fixed, params_per_class); absent steps left out. */
static SEXP arch_facts(an_arch arch)
{
    const char *fields[] = {"layers", "operations", "input_size", "mean", "scale", "params_fixed",
                            "params_per_class"};
    SEXP res = PROTECT(named_list(7, fields));
    int n = an_output_count(arch);
    SEXP layers = PROTECT(Rf_allocVector(STRSXP, n)), ops = PROTECT(Rf_allocVector(STRSXP, n));
    for (int i = 0, r = 0; i < AN_N_OUTPUTS; i++) {
        if (!an_output_name(arch, i)) continue;
        SET_STRING_ELT(layers, r, Rf_mkChar(an_output_name(arch, i)));
        SET_STRING_ELT(ops, r++, Rf_mkChar(an_step_operation(arch, i)));
    }
    Rf_setAttrib(ops, R_NamesSymbol, layers);
    SEXP mean = PROTECT(Rf_allocVector(REALSXP, 3)), scale = PROTECT(Rf_allocVector(REALSXP, 3));
    an_arch_input(arch, REAL(mean), REAL(scale));
    double fixed = (double) an_param_count_for(arch, 0);
    SET_VECTOR_ELT(res, 0, layers);
    SET_VECTOR_ELT(res, 1, ops);
    SET_VECTOR_ELT(res, 2, Rf_ScalarInteger(an_arch_input_size(arch)));
    SET_VECTOR_ELT(res, 3, mean);
    SET_VECTOR_ELT(res, 4, scale);
    SET_VECTOR_ELT(res, 5, Rf_ScalarReal(fixed));
    SET_VECTOR_ELT(res, 6, Rf_ScalarReal((double) an_param_count_for(arch, 1) - fixed));
    UNPROTECT(5);
    return res;
}

/* What the engine knows of the network, so that R does not repeat it:
 * list(archs (each variant's arch_facts, named), param_layers, weight_layers). */
SEXP r_an_engine_facts(void)
{
    const char *fields[] = {"archs", "param_layers", "weight_layers"};
    SEXP res = PROTECT(named_list(3, fields));
    SEXP archs = PROTECT(Rf_allocVector(VECSXP, AN_N_ARCHS)), names = PROTECT(Rf_allocVector(STRSXP, AN_N_ARCHS));
    for (int a = 0; a < AN_N_ARCHS; a++) {
        SET_VECTOR_ELT(archs, a, arch_facts((an_arch) a));
        SET_STRING_ELT(names, a, Rf_mkChar(an_arch_name((an_arch) a)));
    }
    Rf_setAttrib(archs, R_NamesSymbol, names);
    SEXP params = PROTECT(Rf_allocVector(STRSXP, AN_N_PARAM_LAYERS));
    for (int l = 0; l < AN_N_PARAM_LAYERS; l++) SET_STRING_ELT(params, l, Rf_mkChar(an_param_layer_name(l)));
    SET_VECTOR_ELT(res, 0, archs);
    SET_VECTOR_ELT(res, 1, params);
    SET_VECTOR_ELT(res, 2, weights_layer_names());
    UNPROTECT(4);
    return res;
}

/* A named output's step index in the net's variant, -1 when it has none. */
SEXP r_an_output_find(SEXP ptr, SEXP name)
{
    an_net *net = get_net(ptr);
    if (TYPEOF(name) != STRSXP || XLENGTH(name) != 1 || STRING_ELT(name, 0) == NA_STRING)
        Rf_error("`layer` must be a single string");
    return Rf_ScalarInteger(an_output_find(an_net_arch(net), Rf_translateCharUTF8(STRING_ELT(name, 0))));
}

/* ------------------------------------------------------------ parameters -- */

SEXP r_an_net_get_params(SEXP ptr)
{
    an_net *net = get_net(ptr);
    size_t n = an_net_param_count(net);
    const float *p = an_net_params(net);
    if (p == NULL) Rf_error("the engine returned no parameter block");
    SEXP res = PROTECT(Rf_allocVector(REALSXP, (R_xlen_t) n));
    double *r = REAL(res);
    for (size_t i = 0; i < n; i++) r[i] = (double) p[i];
    UNPROTECT(1);
    return res;
}

/* One parameter layer's weights (0-based index), as an R array whose dims
 * reverse the engine's row-major (out, in/groups, kh, kw) or (out, in):
 * c(kw, kh, in/groups, out) or c(in, out), read without a copy's reorder. */
SEXP r_an_net_layer_weights(SEXP ptr, SEXP layer)
{
    an_net *net = get_net(ptr);
    int j = scalar_int(layer, "layer");
    if (j < 0 || j >= AN_N_PARAM_LAYERS) Rf_error("no parameter layer %d", j);
    const an_param_layer *l = an_net_param_layer(net, j);
    const float *p = an_net_params(net);
    if (p == NULL) Rf_error("the engine returned no parameter block");
    SEXP res = PROTECT(Rf_allocVector(REALSXP, (R_xlen_t) l->weight_count));
    for (size_t i = 0; i < l->weight_count; i++) REAL(res)[i] = (double) p[l->weight_offset + i];
    SEXP dim = PROTECT(Rf_allocVector(INTSXP, l->is_conv ? 4 : 2));
    if (l->is_conv) {
        int d[4] = {l->kw, l->kh, l->in / l->groups, l->out};
        memcpy(INTEGER(dim), d, sizeof d);
    } else {
        INTEGER(dim)[0] = l->in;
        INTEGER(dim)[1] = l->out;
    }
    Rf_setAttrib(res, R_DimSymbol, dim);
    UNPROTECT(2);
    return res;
}

SEXP r_an_net_set_params(SEXP ptr, SEXP values)
{
    an_net *net = get_net(ptr);
    size_t n = an_net_param_count(net);
    if (TYPEOF(values) != REALSXP)
        Rf_error("the parameters must be a double vector");
    if ((size_t) XLENGTH(values) != n)
        Rf_error("the parameters must be a vector of length %.0f, not %.0f",
                 (double) n, (double) XLENGTH(values));
    const double *v = REAL(values);
    for (size_t i = 0; i < n; i++)
        if (!R_FINITE(v[i]))
            Rf_error("the parameters must be finite (element %.0f is not)", (double) i + 1);
    float *p = an_net_params(net);
    if (p == NULL) Rf_error("the engine returned no parameter block");
    for (size_t i = 0; i < n; i++) p[i] = (float) v[i];
    an_net_params_changed(net);
    return R_NilValue;
}

/* ---------------------------------------------------------------- images -- */

/* A double or integer array with dim c(n, h, w) (grey) or c(n, h, w,
 * channels), described for the engine in R's column-major layout. */
an_pixel_array get_pixel_array(SEXP x)
{
    an_pixel_array a;
    if (TYPEOF(x) != REALSXP && TYPEOF(x) != INTSXP) Rf_error("`x` must be a double or integer array of pixels");
    SEXP dim = Rf_getAttrib(x, R_DimSymbol);
    int nd = Rf_length(dim);
    if (nd != 3 && nd != 4)
        Rf_error("`x` must be an array with dim c(n, height, width, channels) or c(n, height, width)");
    const int *d = INTEGER(dim);
    a.data = TYPEOF(x) == REALSXP ? (const void *) REAL(x) : (const void *) INTEGER(x);
    a.type = TYPEOF(x) == REALSXP ? AN_PIXELS_F64 : AN_PIXELS_I32;
    a.n = d[0];
    a.h = d[1];
    a.w = d[2];
    a.channels = nd == 4 ? d[3] : 1;
    if (a.n < 1 || a.h < 1 || a.w < 1)
        Rf_error("`x` must hold at least one image of at least 1 x 1 pixels");
    if (a.channels != 1 && a.channels != 3)
        Rf_error("`x` must have 1 (grey) or 3 (RGB) channels, not %d", a.channels);
    a.si = 1;
    a.sy = a.n;
    a.sx = (ptrdiff_t) a.n * a.h;
    a.sc = (ptrdiff_t) a.n * a.h * a.w;
    return a;
}

/* c(1 + the offset of x's first missing or infinite value (0 when none),
 * smallest value, largest value). */
SEXP r_an_check_pixels(SEXP x)
{
    an_pixel_array a = get_pixel_array(x);
    an_pixel_summary s;
    an_pixels_summary(&a, &s);
    SEXP res = PROTECT(Rf_allocVector(REALSXP, 3));
    REAL(res)[0] = (double) s.first_nonfinite + 1;
    REAL(res)[1] = s.min;
    REAL(res)[2] = s.max;
    UNPROTECT(1);
    return res;
}

/* --------------------------------------------------------------- backend -- */

SEXP r_an_backend_name(void)
{
    const char *name = an_backend_name();
    return Rf_mkString(name ? name : "unknown");
}

SEXP r_an_get_threads(void) { return Rf_ScalarInteger(an_get_threads()); }

SEXP r_an_set_threads(SEXP threads)
{
    int t = scalar_int(threads, "threads");
    if (t < 1) Rf_error("`threads` must be at least 1");
    an_status st = an_set_threads(t);
    if (st != AN_OK) engine_error(st);
    return Rf_ScalarInteger(an_get_threads());
}
