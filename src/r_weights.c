/* r_weights.c: .Call entry points for weights files (engine/weights.h):
 * save, load (with its report) and describe a file.
 *
 * Paths arrive from R (R/weights.R) already expanded and are passed to the
 * engine in the native encoding (translateChar); class names are stored as
 * UTF-8 and come back marked as UTF-8.
 *
 * Two entry points are for the package's tests only (not used by the R
 * functions users call): weights_write_test_file() writes a Keras 1
 * save_weights() file of a net (as Heuritech's alexnet_weights.h5 is laid
 * out), or an HDF5 file without AlexNet's layers; weights_digest() hashes
 * each Keras layer's parameters so that tests can compare nets without
 * copying their 57 million parameters into R. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "weights.h"
#include "r_alexnet.h"

static const char *get_path(SEXP path)
{
    if (TYPEOF(path) != STRSXP || XLENGTH(path) != 1 || STRING_ELT(path, 0) == NA_STRING)
        Rf_error("`file` must be a single file name");
    const char *p = Rf_translateChar(STRING_ELT(path, 0));
    if (p[0] == '\0') Rf_error("`file` must not be empty");
    return p;
}

static const char *kind_name(an_weights_kind kind)
{
    switch (kind) {
    case AN_WEIGHTS_OWN: return "alexnet";
    case AN_WEIGHTS_KERAS1: return "keras1";
    default: return "unknown";
    }
}

static SEXP layer_names(void)
{
    SEXP res = PROTECT(Rf_allocVector(STRSXP, AN_W_N_LAYERS));
    for (int k = 0; k < AN_W_N_LAYERS; k++) SET_STRING_ELT(res, k, Rf_mkChar(an_weights_layer_name(k)));
    UNPROTECT(1);
    return res;
}

static SEXP named_list(int n, const char **names)
{
    SEXP res = PROTECT(Rf_allocVector(VECSXP, n));
    SEXP nm = PROTECT(Rf_allocVector(STRSXP, n));
    for (int i = 0; i < n; i++) SET_STRING_ELT(nm, i, Rf_mkChar(names[i]));
    Rf_setAttrib(res, R_NamesSymbol, nm);
    UNPROTECT(2);
    return res;
}

/* ------------------------------------------------------------------ save -- */

/* class_names: NULL or a character vector with one name per class */
SEXP r_an_weights_save(SEXP ptr, SEXP path, SEXP class_names)
{
    an_net *net = get_net(ptr);
    const char *p = get_path(path);
    const char **names = NULL;
    if (!Rf_isNull(class_names)) {
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
    an_status st = an_weights_save(net, p, names);
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
 *      interrupted) */
SEXP r_an_weights_load(SEXP ptr, SEXP path, SEXP by_name, SEXP undo)
{
    /* a Ctrl-C pressed before: nothing is read */
    R_CheckUserInterrupt();
    an_net *net = get_net(ptr);
    const char *p = get_path(path);
    if (TYPEOF(by_name) != LGLSXP || XLENGTH(by_name) != 1 || LOGICAL(by_name)[0] == NA_LOGICAL)
        Rf_error("`by_name` must be TRUE or FALSE");
    /* undo: 0 no, 1 yes, 2 yes and, FOR THE TESTS ONLY, a Ctrl-C (SIGINT to
     * this process, taken by R's handler) arriving during the read */
    int keep = Rf_asInteger(undo);
    if (keep == NA_INTEGER || keep < 0 || keep > 2) Rf_error("`undo` must be 0, 1 or 2");
    /* the report is allocated before loading, so that the net does not
     * change and then lose its report to a failed allocation (only the
     * short shape strings of kept layers are made afterwards) */
    static const char *cols[] = {"kind", "layer", "status", "file_shape", "mean_loaded",
                                 "interrupted"};
    SEXP res = PROTECT(named_list(6, cols));
    SEXP kind = Rf_allocVector(STRSXP, 1);
    SET_VECTOR_ELT(res, 0, kind);
    SET_VECTOR_ELT(res, 1, layer_names());
    SEXP status = Rf_allocVector(STRSXP, AN_W_N_LAYERS);
    SET_VECTOR_ELT(res, 2, status);
    SEXP shape = Rf_allocVector(STRSXP, AN_W_N_LAYERS);
    SET_VECTOR_ELT(res, 3, shape);
    SEXP mean_loaded = Rf_allocVector(LGLSXP, 1);
    SET_VECTOR_ELT(res, 4, mean_loaded);
    SET_VECTOR_ELT(res, 5, Rf_ScalarLogical(FALSE));
    static const char *states[] = {"loaded", "kept", "missing"};
    SEXP words = PROTECT(Rf_allocVector(STRSXP, 6));
    for (int i = 0; i < 3; i++) {
        SET_STRING_ELT(words, i, Rf_mkChar(states[i]));
        SET_STRING_ELT(words, 3 + i, Rf_mkChar(kind_name((an_weights_kind)i)));
    }

    /* the copy for `undo`: R memory, reclaimed however this call ends */
    size_t n = an_net_param_count(net);
    float *saved = NULL, mean[3], scale = 1;
    if (keep) {
        saved = (float *)R_alloc(n, sizeof(float));
        memcpy(saved, an_net_params(net), n * sizeof(float));
        an_net_get_mean(net, mean);
        scale = an_net_input_scale(net);
    }

    an_weights_report rep;
    an_status st = an_weights_load(net, p, LOGICAL(by_name)[0], &rep);
    if (st != AN_OK) engine_error(st);
    if (keep == 2) raise(SIGINT);
    if (keep && interrupt_pending()) {
        memcpy(an_net_params(net), saved, n * sizeof(float));
        an_net_params_changed(net);
        an_net_set_mean(net, mean);
        an_net_set_input_scale(net, scale);
        SET_VECTOR_ELT(res, 5, Rf_ScalarLogical(TRUE));
        UNPROTECT(2);
        return res;
    }

    int kd = (int)rep.kind;
    SET_STRING_ELT(kind, 0, STRING_ELT(words, 3 + (kd >= 0 && kd < 3 ? kd : 0)));
    LOGICAL(mean_loaded)[0] = rep.mean_loaded != 0;
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        int s = (int)rep.state[k];
        SET_STRING_ELT(status, k, STRING_ELT(words, s >= 0 && s < 3 ? s : 0));
        SET_STRING_ELT(shape, k, rep.state[k] == AN_WEIGHTS_KEPT ? Rf_mkChar(rep.file_shape[k]) : NA_STRING);
    }
    UNPROTECT(2);
    return res;
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
 *      mean, has_mean, layers (present ones), backend) */
SEXP r_an_weights_info(SEXP path)
{
    const char *p = get_path(path);
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
                                 "mean", "has_mean", "layers", "backend"};
    SEXP res = PROTECT(named_list(8, cols));
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
    info_finalize(holder);
    UNPROTECT(2);
    return res;
}

/* ------------------------------------------------------------ test only -- */

/* Where Keras layer k lies in the parameter block, and its shape per half. */
typedef struct {
    const an_param_layer *L;
    size_t w_off, w_count, b_off, b_count;
    int out;                /* filters (conv, this half) or units (dense) */
} region;

static region layer_region(const an_net *net, int k)
{
    region r;
    int half = 0;
    int param = an_weights_layer_param(k, &half);
    r.L = an_net_param_layer(net, param);
    int parts = half ? 2 : 1;
    r.w_count = r.L->weight_count / (size_t)parts;
    r.b_count = r.L->bias_count / (size_t)parts;
    r.w_off = r.L->weight_offset + (half ? (size_t)(half - 1) * r.w_count : 0);
    r.b_off = r.L->bias_offset + (half ? (size_t)(half - 1) * r.b_count : 0);
    r.out = r.L->out / parts;
    return r;
}

/* 64-bit FNV-1a of each Keras layer's weights then bias, as hex strings
 * named by layer. Test only. */
SEXP r_an_weights_digest(SEXP ptr)
{
    an_net *net = get_net(ptr);
    const float *p = an_net_params(net);
    SEXP res = PROTECT(Rf_allocVector(STRSXP, AN_W_N_LAYERS));
    Rf_setAttrib(res, R_NamesSymbol, layer_names());
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        region r = layer_region(net, k);
        uint64_t h = 1469598103934665603ULL;
        const unsigned char *parts[2] = {(const unsigned char *)(p + r.w_off),
                                         (const unsigned char *)(p + r.b_off)};
        size_t sizes[2] = {r.w_count * sizeof(float), r.b_count * sizeof(float)};
        for (int j = 0; j < 2; j++)
            for (size_t i = 0; i < sizes[j]; i++) {
                h ^= parts[j][i];
                h *= 1099511628211ULL;
            }
        char buf[32];
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
        SET_STRING_ELT(res, k, Rf_mkChar(buf));
    }
    UNPROTECT(1);
    return res;
}

/* the Heuritech model's layers in Keras 1's order, weightless ones included */
static const char *const HEURITECH_LAYERS[] = {
    "input_1", "conv_1", "maxpooling2d_1", "convpool_1", "zeropadding2d_1", "lambda_1", "lambda_2",
    "conv_2_1", "conv_2_2", "conv_2", "maxpooling2d_2", "lambda_3", "zeropadding2d_2", "conv_3",
    "zeropadding2d_3", "lambda_4", "lambda_5", "conv_4_1", "conv_4_2", "conv_4", "zeropadding2d_4",
    "lambda_6", "lambda_7", "conv_5_1", "conv_5_2", "conv_5", "convpool_5", "flatten", "dense_1",
    "dropout_1", "dense_2", "dropout_2", "dense_3", "softmax"};
#define N_HEURITECH (int)(sizeof HEURITECH_LAYERS / sizeof *HEURITECH_LAYERS)

typedef struct {
    int failed;             /* first failing line, 0 if none */
} h5w;

#define H(w, call) do { if ((call) < 0 && !(w)->failed) (w)->failed = __LINE__; } while (0)

/* fixed-length null-padded strings (numpy 'S', as Keras 1 with h5py 2 wrote
 * them); n = 0: an empty list as h5py writes [] (float64, shape (0,)) */
static void attr_strings(h5w *w, hid_t loc, const char *name, const char *const *s, int n)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL), a = -1;
    H(w, sp);
    if (n == 0) {
        H(w, a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT));
        if (a >= 0) H5Aclose(a);
        if (sp >= 0) H5Sclose(sp);
        return;
    }
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(s[i]) > len) len = strlen(s[i]);
    char *buf = calloc((size_t)n, len);
    hid_t t = H5Tcopy(H5T_C_S1);
    H(w, t);
    if (!buf) w->failed = __LINE__;
    if (!w->failed) {
        for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * len, s[i], strlen(s[i]));
        H(w, H5Tset_size(t, len));
        H(w, H5Tset_strpad(t, H5T_STR_NULLPAD));
        H(w, a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT));
        if (a >= 0) H(w, H5Awrite(a, t, buf));
    }
    if (a >= 0) H(w, H5Aclose(a));
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    free(buf);
}

static void write_dataset(h5w *w, hid_t g, const char *name, int ndims, const hsize_t *dims, const float *v)
{
    hid_t sp = H5Screate_simple(ndims, dims, NULL), d = -1;
    H(w, sp);
    if (sp >= 0) H(w, d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (d >= 0) {
        H(w, H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v));
        H(w, H5Dclose(d));
    }
    if (sp >= 0) H5Sclose(sp);
}

static int weight_layer(const char *name)
{
    for (int k = 0; k < AN_W_N_LAYERS; k++)
        if (strcmp(name, an_weights_layer_name(k)) == 0) return k;
    return -1;
}

/* Layer k as a Keras 1 Theano file holds it: conv kernels (out, in, rows,
 * cols) flipped in both spatial axes (true convolution), dense (in, out). */
static float *keras_kernel(const an_net *net, int k, int *ndims, hsize_t dims[4])
{
    region r = layer_region(net, k);
    const an_param_layer *L = r.L;
    const float *src = an_net_params((an_net *)net) + r.w_off;
    float *K = malloc(r.w_count * sizeof *K);
    if (!K) return NULL;
    if (L->is_conv) {
        size_t out = (size_t)r.out, in = (size_t)(L->in / L->groups), kh = (size_t)L->kh, kw = (size_t)L->kw;
        *ndims = 4;
        dims[0] = out; dims[1] = in; dims[2] = kh; dims[3] = kw;
        size_t plane = kh * kw;
        for (size_t q = 0; q < out * in; q++)
            for (size_t j = 0; j < plane; j++) K[q * plane + j] = src[q * plane + plane - 1 - j];
    } else {
        size_t out = (size_t)L->out, in = (size_t)L->in;
        *ndims = 2;
        dims[0] = in; dims[1] = out;
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++) K[i * out + o] = src[o * in + i];
    }
    return K;
}

static void write_keras1(h5w *w, hid_t root, const an_net *net)
{
    attr_strings(w, root, "layer_names", HEURITECH_LAYERS, N_HEURITECH);
    for (int i = 0; i < N_HEURITECH && !w->failed; i++) {
        const char *name = HEURITECH_LAYERS[i];
        hid_t g = H5Gcreate2(root, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H(w, g);
        if (g < 0) break;
        int k = weight_layer(name);
        if (k < 0) {
            attr_strings(w, g, "weight_names", NULL, 0);
        } else {
            char wn[64], bn[64];
            snprintf(wn, sizeof wn, "%s_W", name);
            snprintf(bn, sizeof bn, "%s_b", name);
            const char *wnames[2] = {wn, bn};
            attr_strings(w, g, "weight_names", wnames, 2);
            int nd = 0;
            hsize_t dims[4];
            float *K = keras_kernel(net, k, &nd, dims);
            if (!K) {
                w->failed = __LINE__;
            } else {
                region r = layer_region(net, k);
                hsize_t bdim = (hsize_t)r.b_count;
                write_dataset(w, g, wn, nd, dims, K);
                write_dataset(w, g, bn, 1, &bdim, an_net_params((an_net *)net) + r.b_off);
                free(K);
            }
        }
        H(w, H5Gclose(g));
    }
}

/* Test only. what: "keras1" (net's weights as a Keras 1 Theano
 * save_weights() file, the layout of Heuritech's alexnet_weights.h5),
 * "empty" (an HDF5 file with a group `data` and no attributes) or "other" (a
 * Keras 1 file whose only layer, `dense_a`, is not AlexNet's). */
SEXP r_an_weights_write_test_file(SEXP ptr, SEXP path, SEXP what)
{
    if (TYPEOF(what) != STRSXP || XLENGTH(what) != 1) Rf_error("`what` must be a string");
    const char *kind = CHAR(STRING_ELT(what, 0));
    int mode = strcmp(kind, "keras1") == 0 ? 1 : strcmp(kind, "empty") == 0 ? 2 : strcmp(kind, "other") == 0 ? 3 : 0;
    if (!mode) Rf_error("`what` must be \"keras1\", \"empty\" or \"other\"");
    an_net *net = mode == 1 ? get_net(ptr) : NULL;
    const char *p = get_path(path);

    H5E_auto2_t func = NULL;
    void *data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    h5w w = {0};
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H(&w, f);
    if (f >= 0) {
        hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
        H(&w, root);
        if (root >= 0) {
            if (mode == 1) {
                write_keras1(&w, root, net);
            } else if (mode == 2) {
                hid_t g = H5Gcreate2(root, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                H(&w, g);
                if (g >= 0) H(&w, H5Gclose(g));
            } else {
                const char *names[1] = {"dense_a"};
                attr_strings(&w, root, "layer_names", names, 1);
                hid_t g = H5Gcreate2(root, "dense_a", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                H(&w, g);
                if (g >= 0) {
                    const char *wnames[2] = {"dense_a_W", "dense_a_b"};
                    attr_strings(&w, g, "weight_names", wnames, 2);
                    float v[6] = {0};
                    hsize_t dims[2] = {3, 2}, bdim = 2;
                    write_dataset(&w, g, "dense_a_W", 2, dims, v);
                    write_dataset(&w, g, "dense_a_b", 1, &bdim, v);
                    H(&w, H5Gclose(g));
                }
            }
            H(&w, H5Gclose(root));
        }
        H(&w, H5Fclose(f));
    }
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, func, data);
    if (w.failed) Rf_error("writing the test file '%s' failed (HDF5 call at r_weights.c:%d)", p, w.failed);
    return R_NilValue;
}
