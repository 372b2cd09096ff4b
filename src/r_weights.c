/* r_weights.c: .Call entry points for weights files (engine/weights.h):
 * save (the package's format or Keras 1), load (with its report) and
 * describe a file.
 *
 * Paths arrive from R (R/weights.R) already expanded and are passed to the
 * engine in the native encoding (get_path); class names are stored as
 * UTF-8 and come back marked as UTF-8. The tests' own entries (a digest of
 * a net's layers, odd HDF5 files, a load that sees a simulated Ctrl-C) are
 * in r_testing.c. */
#include <stdlib.h>
#include <string.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "weights.h"
#include "r_alexnet.h"

static const char *kind_name(an_weights_kind kind)
{
    switch (kind) {
    case AN_WEIGHTS_OWN: return "alexnet";
    case AN_WEIGHTS_KERAS1: return "keras1";
    case AN_WEIGHTS_TORCH: return "torch";
    case AN_WEIGHTS_CAFFE: return "caffe";
    default: return "unknown";
    }
}

/* HDF5 files (weights, features) are read in a child process
 * (engine/isolate.h), which is stopped when it makes no progress for
 * options(alexnet.hdf5_timeout) seconds (60 when unset): set before each read. */
void set_hdf5_read_timeout(void)
{
    SEXP v = Rf_GetOption1(Rf_install("alexnet.hdf5_timeout"));
    double seconds = 0;
    if (!Rf_isNull(v)) {
        if (!Rf_isNumeric(v) || Rf_length(v) != 1 || !(Rf_asReal(v) > 0))
            Rf_error("option alexnet.hdf5_timeout must be a positive number of seconds");
        seconds = Rf_asReal(v);
    }
    an_weights_set_read_timeout(seconds);
}

/* "conv_1", ..., "dense_3" */
SEXP weights_layer_names(void)
{
    SEXP res = PROTECT(Rf_allocVector(STRSXP, AN_W_N_LAYERS));
    for (int k = 0; k < AN_W_N_LAYERS; k++) SET_STRING_ELT(res, k, Rf_mkChar(an_weights_layer_name(k)));
    UNPROTECT(1);
    return res;
}

/* ------------------------------------------------------------------ save -- */

/* class_names: NULL or a character vector with one name per class (the
 * package's format only); format: "alexnet" or "keras1" */
SEXP r_an_weights_save(SEXP ptr, SEXP path, SEXP class_names, SEXP format)
{
    an_net *net = get_net(ptr);
    const char *p = get_path(path, "file");
    if (TYPEOF(format) != STRSXP || XLENGTH(format) != 1 || STRING_ELT(format, 0) == NA_STRING)
        Rf_error("`format` must be \"alexnet\" or \"keras1\"");
    const char *fmt = CHAR(STRING_ELT(format, 0));
    int keras1 = strcmp(fmt, "keras1") == 0;
    if (!keras1 && strcmp(fmt, "alexnet") != 0) Rf_error("`format` must be \"alexnet\" or \"keras1\", not \"%s\"", fmt);
    const char **names = NULL;
    if (!keras1 && !Rf_isNull(class_names)) {
        int classes = an_net_classes(net);
        if (TYPEOF(class_names) != STRSXP || XLENGTH(class_names) != classes)
            Rf_error("`class_names` must be a character vector of %d names (one per class)", classes);
        names = (const char **)R_alloc((size_t)classes, sizeof *names);
        for (int i = 0; i < classes; i++) {
            SEXP s = STRING_ELT(class_names, i);
            if (s == NA_STRING) Rf_error("class name %d is missing (NA)", i + 1);
            names[i] = Rf_translateCharUTF8(s);
        }
    }
    an_status st = keras1 ? an_weights_save_keras1(net, p) : an_weights_save(net, p, names);
    if (st != AN_OK) engine_error(st);
    return R_NilValue;
}

/* ------------------------------------------------------------------ load -- */

/* Interrupts. Reading a file is one long engine call that R cannot
 * interrupt; the engine reads everything, then commits. A Ctrl-C that
 * arrives meanwhile is pending when it returns: with `undo`, the net's
 * previous parameters, mean and scale (copied before) are put back and the
 * result says `interrupted`, so that R raises the interrupt with the net as
 * it was. Without `undo` (a net just made by alexnet(), which nobody holds
 * yet) the copy is skipped and the interrupt simply follows the load. */
static void check_interrupt(void *dummy) { (void)dummy; R_CheckUserInterrupt(); }

/* TRUE when an interrupt was pending (it is consumed: the caller re-raises it). */
static int interrupt_pending(void) { return !R_ToplevelExec(check_interrupt, NULL); }

/* list(kind, layer, status ("loaded", "kept", "missing"), file_shape (kept layers), mean_loaded,
 *      interrupted). after_read: NULL, or (r_testing.c only) a function run
 * between the engine's read and the check for an interrupt. */
SEXP weights_load(SEXP ptr, SEXP path, SEXP by_name, SEXP undo, void (*after_read)(void))
{
    /* a Ctrl-C pressed before: nothing is read */
    R_CheckUserInterrupt();
    an_net *net = get_net(ptr);
    const char *p = get_path(path, "file");
    if (TYPEOF(by_name) != LGLSXP || XLENGTH(by_name) != 1 || LOGICAL(by_name)[0] == NA_LOGICAL)
        Rf_error("`by_name` must be TRUE or FALSE");
    if (TYPEOF(undo) != LGLSXP || XLENGTH(undo) != 1 || LOGICAL(undo)[0] == NA_LOGICAL)
        Rf_error("`undo` must be TRUE or FALSE");
    int keep = LOGICAL(undo)[0];
    set_hdf5_read_timeout();
    /* the report is allocated before loading, so that the net does not
     * change and then lose its report to a failed allocation (only the
     * short shape strings of kept layers are made afterwards) */
    static const char *cols[] = {"kind", "layer", "status", "file_shape", "mean_loaded",
                                 "interrupted"};
    SEXP res = PROTECT(named_list(6, cols));
    SEXP kind = Rf_allocVector(STRSXP, 1);
    SET_VECTOR_ELT(res, 0, kind);
    SET_VECTOR_ELT(res, 1, weights_layer_names());
    SEXP status = Rf_allocVector(STRSXP, AN_W_N_LAYERS);
    SET_VECTOR_ELT(res, 2, status);
    SEXP shape = Rf_allocVector(STRSXP, AN_W_N_LAYERS);
    SET_VECTOR_ELT(res, 3, shape);
    SEXP mean_loaded = Rf_allocVector(LGLSXP, 1);
    SET_VECTOR_ELT(res, 4, mean_loaded);
    SET_VECTOR_ELT(res, 5, Rf_ScalarLogical(FALSE));
    static const char *states[] = {"loaded", "kept", "missing"};
    enum { KINDS = AN_WEIGHTS_CAFFE + 1 };
    SEXP words = PROTECT(Rf_allocVector(STRSXP, 3 + KINDS));
    for (int i = 0; i < 3; i++) SET_STRING_ELT(words, i, Rf_mkChar(states[i]));
    for (int i = 0; i < KINDS; i++) SET_STRING_ELT(words, 3 + i, Rf_mkChar(kind_name((an_weights_kind)i)));

    /* the copy for `undo`: R memory, reclaimed however this call ends */
    size_t n = an_net_param_count(net);
    float *saved = NULL, mean[3], scale[3];
    if (keep) {
        saved = (float *)R_alloc(n, sizeof(float));
        memcpy(saved, an_net_params(net), n * sizeof(float));
        an_net_get_mean(net, mean);
        an_net_get_input_scales(net, scale);
    }

    an_weights_report rep;
    an_status st = an_weights_load(net, p, LOGICAL(by_name)[0], &rep);
    if (st != AN_OK) engine_error(st);
    if (after_read) after_read();
    if (keep && interrupt_pending()) {
        memcpy(an_net_params(net), saved, n * sizeof(float));
        an_net_params_changed(net);
        an_net_set_mean(net, mean);
        an_net_set_input_scales(net, scale);
        SET_VECTOR_ELT(res, 5, Rf_ScalarLogical(TRUE));
        UNPROTECT(2);
        return res;
    }

    int kd = (int)rep.kind;
    SET_STRING_ELT(kind, 0, STRING_ELT(words, 3 + (kd >= 0 && kd < KINDS ? kd : 0)));
    LOGICAL(mean_loaded)[0] = rep.mean_loaded != 0;
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        int s = (int)rep.state[k];
        SET_STRING_ELT(status, k, STRING_ELT(words, s >= 0 && s < 3 ? s : 0));
        SET_STRING_ELT(shape, k, rep.state[k] == AN_WEIGHTS_KEPT ? Rf_mkChar(rep.file_shape[k]) : NA_STRING);
    }
    UNPROTECT(2);
    return res;
}

SEXP r_an_weights_load(SEXP ptr, SEXP path, SEXP by_name, SEXP undo)
{
    return weights_load(ptr, path, by_name, undo, NULL);
}

/* ------------------------------------------------------------------ info -- */

static void info_finalize(SEXP ptr)
{
    an_weights_file_info *info = (an_weights_file_info *)R_ExternalPtrAddr(ptr);
    if (info) {
        an_weights_info_free(info);
        free(info);
        R_ClearExternalPtr(ptr);
    }
}

/* list(kind, format_version, classes, class_names (NULL or character),
 *      mean, has_mean, layers (present ones), backend, input_scale (3), arch) */
SEXP r_an_weights_info(SEXP path)
{
    const char *p = get_path(path, "file");
    set_hdf5_read_timeout();
    /* the engine's result (class names malloc'd) is held by an external
     * pointer with a finalizer, so that an R allocation failure below cannot leak it */
    SEXP holder = PROTECT(R_MakeExternalPtr(NULL, R_NilValue, R_NilValue));
    R_RegisterCFinalizerEx(holder, info_finalize, TRUE);
    an_weights_file_info *info = calloc(1, sizeof *info);
    if (!info) Rf_error("out of memory reading weights file '%s'", p);
    R_SetExternalPtrAddr(holder, info);
    an_status st = an_weights_info(p, info);
    if (st != AN_OK) engine_error(st);   /* info is empty: the finalizer frees the struct */

    static const char *cols[] = {"kind", "format_version", "classes", "class_names",
                                 "mean", "has_mean", "layers", "backend", "input_scale", "arch"};
    SEXP res = PROTECT(named_list(10, cols));
    SET_VECTOR_ELT(res, 0, Rf_mkString(kind_name(info->kind)));
    SET_VECTOR_ELT(res, 1, Rf_ScalarInteger(info->format_version));
    SET_VECTOR_ELT(res, 2, Rf_ScalarInteger(info->classes));
    if (info->class_names) {
        SEXP cn = Rf_allocVector(STRSXP, info->classes);
        SET_VECTOR_ELT(res, 3, cn);
        for (int i = 0; i < info->classes; i++)
            SET_STRING_ELT(cn, i, Rf_mkCharCE(info->class_names[i] ? info->class_names[i] : "", CE_UTF8));
    }
    SEXP mean = Rf_allocVector(REALSXP, 3);
    SET_VECTOR_ELT(res, 4, mean);
    for (int i = 0; i < 3; i++) REAL(mean)[i] = info->mean[i];
    SET_VECTOR_ELT(res, 5, Rf_ScalarLogical(info->has_mean != 0));
    int n = 0;
    for (int k = 0; k < AN_W_N_LAYERS; k++) n += info->present[k] != 0;
    SEXP layers = Rf_allocVector(STRSXP, n);
    SET_VECTOR_ELT(res, 6, layers);
    for (int k = 0, j = 0; k < AN_W_N_LAYERS; k++)
        if (info->present[k]) SET_STRING_ELT(layers, j++, Rf_mkChar(an_weights_layer_name(k)));
    SET_VECTOR_ELT(res, 7, Rf_mkString(info->backend));
    SEXP scale = Rf_allocVector(REALSXP, 3);
    SET_VECTOR_ELT(res, 8, scale);
    for (int i = 0; i < 3; i++) REAL(scale)[i] = info->input_scale[i];
    SET_VECTOR_ELT(res, 9, Rf_mkString(an_arch_name((an_arch)info->arch)));
    info_finalize(holder);
    UNPROTECT(2);
    return res;
}
