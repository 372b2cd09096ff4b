/* r_images.c: .Call entry points for image sources (R/folders.R): a
 * folder of JPEG files or an R array of pixels, both an engine loader
 * (engine/loader.c: worker threads that prepare batch k + 1 while the net
 * computes batch k) in an external pointer with a finalizer; R also frees it
 * explicitly (on.exit), so an error or an interrupt never leaves threads
 * running for long. An array loader keeps the R array alive in the
 * pointer's protected slot.
 *
 * The entries only convert: the runs over batches (forward, evaluate) and
 * the SGD step with its prefetch are engine calls (engine/batches.c), which
 * hold signals back themselves and end early on a Ctrl-C. The loader always
 * runs with AN_ON_ERROR_SKIP; each call's failures go back to R (dataset
 * index + message naming the file), which stops or skips. With `skip` FALSE
 * the engine stops after the first batch with a failure. */
#include <stdlib.h>
#include <string.h>
#include <limits.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "images.h"
#include "r_alexnet.h"
#include "r_group.h"

/* ------------------------------------------------------------ loaders -- */

static SEXP loader_tag(void)
{
    static SEXP tag = NULL;
    if (tag == NULL) tag = Rf_install("alexnet_loader");
    return tag;
}

static void loader_finalize(SEXP ptr)
{
    an_loader *ld = (an_loader *) R_ExternalPtrAddr(ptr);
    if (ld == NULL) return;
    R_ClearExternalPtr(ptr);
    an_loader_free(ld);   /* joins the worker threads */
}

static an_loader *get_loader(SEXP ptr)
{
    if (TYPEOF(ptr) != EXTPTRSXP || R_ExternalPtrTag(ptr) != loader_tag())
        Rf_error("not an alexnet image loader");
    an_loader *ld = (an_loader *) R_ExternalPtrAddr(ptr);
    if (ld == NULL) Rf_error("this image loader has been freed");
    return ld;
}

/* A pointer for the loader `create` makes; `keep` (the R array) lives as long. */
static SEXP new_loader(an_status (*create)(const void *, const an_loader_options *, an_loader **),
                       const void *what, const an_loader_options *opt, SEXP keep)
{
    /* the pointer first, so that nothing leaks if an allocation fails */
    SEXP ptr = PROTECT(R_MakeExternalPtr(NULL, loader_tag(), keep));
    R_RegisterCFinalizerEx(ptr, loader_finalize, TRUE);
    an_loader *ld = NULL;
    an_status st = create(what, opt, &ld);
    if (st != AN_OK) engine_error(st);
    R_SetExternalPtrAddr(ptr, ld);
    UNPROTECT(1);
    return ptr;
}

typedef struct {
    const char **paths;
    int n;
} path_list;

static an_status create_from_paths(const void *what, const an_loader_options *opt, an_loader **out)
{
    const path_list *p = what;
    return an_loader_create(p->paths, p->n, opt, out);
}

static an_status create_from_array(const void *what, const an_loader_options *opt, an_loader **out)
{
    return an_loader_create_array(what, opt, out);
}

/* paths (UTF-8), size, resize (0 stretch, 1 crop), augment (NULL or
 * c(rotation, width_shift, height_shift, shear, zoom_lo, zoom_hi, hflip,
 * vflip)), seed (double), fast_decode (libjpeg's DCT scaling). */
SEXP r_an_loader_create(SEXP paths, SEXP size, SEXP resize, SEXP augment, SEXP seed,
                        SEXP fast_decode)
{
    if (TYPEOF(paths) != STRSXP || XLENGTH(paths) < 1 || XLENGTH(paths) > INT_MAX)
        Rf_error("`paths` must be a non-empty character vector");
    int n = (int) XLENGTH(paths);
    an_loader_options opt;
    an_loader_options_init(&opt);
    opt.image.size = scalar_int(size, "size");
    int mode = scalar_int(resize, "resize");
    if (mode != AN_RESIZE_STRETCH && mode != AN_RESIZE_CROP) Rf_error("unknown resize mode %d", mode);
    opt.image.resize_mode = (an_resize_mode) mode;
    opt.image.dct_scaling = scalar_int(fast_decode, "fast_decode") != 0;
    opt.on_error = AN_ON_ERROR_SKIP;
    double s = Rf_asReal(seed);
    if (!R_FINITE(s) || s < 0) Rf_error("`seed` must be a non-negative number");
    opt.seed = (uint64_t) s;
    if (!Rf_isNull(augment)) {
        if (TYPEOF(augment) != REALSXP || XLENGTH(augment) != 8)
            Rf_error("`augment` must be a double vector of length 8");
        const double *a = REAL(augment);
        an_augment_init(&opt.augment);
        opt.augment.rotation_range = a[0];
        opt.augment.width_shift_range = a[1];
        opt.augment.height_shift_range = a[2];
        opt.augment.shear_range = a[3];
        opt.augment.zoom_lo = a[4];
        opt.augment.zoom_hi = a[5];
        opt.augment.horizontal_flip = a[6] != 0;
        opt.augment.vertical_flip = a[7] != 0;
        an_status st = an_augment_check(&opt.augment);
        if (st != AN_OK) engine_error(st);
        opt.augment_on = 1;
    }
    path_list p = {(const char **) R_alloc((size_t) n, sizeof(char *)), n};
    for (int i = 0; i < n; i++) {
        SEXP el = STRING_ELT(paths, i);
        if (el == NA_STRING) Rf_error("`paths` must not contain NA");
        p.paths[i] = Rf_translateCharUTF8(el);
    }
    return new_loader(create_from_paths, &p, &opt, R_NilValue);
}

/* A loader over the images of x, a double or integer array with dim
 * c(n, h, w) (grey) or c(n, h, w, channels); keep_bytes TRUE for training
 * (shuffled batches: see an_pixels_pack). */
SEXP r_an_loader_create_array(SEXP x, SEXP keep_bytes, SEXP size)
{
    an_pixel_array a = get_pixel_array(x);
    an_loader_options opt;
    an_loader_options_init(&opt);
    opt.image.size = scalar_int(size, "size");
    opt.keep_bytes = Rf_asLogical(keep_bytes) == TRUE;
    opt.on_error = AN_ON_ERROR_SKIP;
    return new_loader(create_from_array, &a, &opt, x);
}

/* c(NA where a value was missing or infinite else 0, min, max) of the
 * array values the loader has converted (R's check_pixel_values()). */
SEXP r_an_loader_pixel_range(SEXP lptr)
{
    an_pixel_range range;
    an_status st = an_loader_pixel_range(get_loader(lptr), &range);
    if (st != AN_OK) engine_error(st);
    SEXP v = PROTECT(Rf_allocVector(REALSXP, 3));
    REAL(v)[0] = range.nonfinite ? NA_REAL : 0;
    REAL(v)[1] = range.min;
    REAL(v)[2] = range.max;
    UNPROTECT(1);
    return v;
}

SEXP r_an_loader_free(SEXP ptr)
{
    if (TYPEOF(ptr) == EXTPTRSXP && R_ExternalPtrTag(ptr) == loader_tag()) loader_finalize(ptr);
    return R_NilValue;
}

/* ------------------------------------------------------------ batches -- */

/* 1-based R indices to 0-based ints (R_alloc). NULL (R) gives count 0. */
static int *get_indices(an_loader *ld, SEXP index, int *count, const char *what)
{
    *count = 0;
    if (Rf_isNull(index)) return NULL;
    if (TYPEOF(index) != INTSXP) Rf_error("`%s` must be an integer vector", what);
    int n = Rf_length(index), size = an_loader_size(ld);
    int *out = (int *) R_alloc(n > 0 ? (size_t) n : 1, sizeof(int));
    for (int j = 0; j < n; j++) {
        int i = INTEGER(index)[j];
        if (i == NA_INTEGER || i < 1 || i > size) Rf_error("image index %d is outside 1..%d", i, size);
        out[j] = i - 1;
    }
    *count = n;
    return out;
}

static an_load_result *results_for(int count)
{
    return (an_load_result *) R_alloc(count > 0 ? (size_t) count : 1, sizeof(an_load_result));
}

static SEXP failures(const an_load_result *r, const int *idx, int count, int n_failed)
{
    static const char *names[] = {"index", "message"};
    SEXP res = PROTECT(named_list(2, names));
    SEXP ix = Rf_allocVector(INTSXP, n_failed);
    SET_VECTOR_ELT(res, 0, ix);
    SEXP msg = Rf_allocVector(STRSXP, n_failed);
    SET_VECTOR_ELT(res, 1, msg);
    int k = 0;
    for (int j = 0; j < count && k < n_failed; j++) {
        if (r[j].status == AN_OK) continue;
        INTEGER(ix)[k] = idx[j] + 1;
        SET_STRING_ELT(msg, k, Rf_mkCharCE(r[j].message[0] ? r[j].message : "could not be read",
                                           CE_UTF8));
        k++;
    }
    UNPROTECT(1);
    return res;
}

/* list(value, failed) */
static SEXP batch_result(SEXP value, const an_load_result *r, const int *idx, int count, int n_failed)
{
    static const char *names[] = {"value", "failed"};
    PROTECT(value);
    SEXP res = PROTECT(named_list(2, names));
    SET_VECTOR_ELT(res, 0, value);
    SET_VECTOR_ELT(res, 1, failures(r, idx, count, n_failed));
    UNPROTECT(2);
    return res;
}

static SEXP sums3(double loss_sum, int correct, int used)
{
    SEXP v = PROTECT(Rf_allocVector(REALSXP, 3));
    REAL(v)[0] = loss_sum;
    REAL(v)[1] = correct;
    REAL(v)[2] = used;
    UNPROTECT(1);
    return v;
}

/* The arguments of a run over a loader: images `index` (1-based) in
 * batches of `batch_size`, a result for each, and (rows) output `layer`
 * (an engine index; -1: none). */
typedef struct {
    an_loader *ld;
    an_net *net;
    int layer, batch, n, n_failed, stop;
    int *idx;
    an_load_result *r;
} run_call;

static run_call run_args(SEXP lptr, SEXP nptr, SEXP index, SEXP layer, SEXP batch_size, SEXP skip)
{
    run_call c = {get_loader(lptr), get_net(nptr), -1, scalar_int(batch_size, "batch_size"), 0, 0,
                  !Rf_asLogical(skip), NULL, NULL};
    if (!Rf_isNull(layer)) c.layer = get_output_index(layer);
    if (c.batch < 1) Rf_error("`batch_size` must be at least 1");
    c.idx = get_indices(c.ld, index, &c.n, "index");
    if (c.n < 1) Rf_error("no images to compute");
    c.r = results_for(c.n);
    return c;
}

/* Output `until` of images `index` in batches of `batch_size`: value is the
 * n x size matrix in `index` order (rows of failed images NA). */
SEXP r_an_loader_forward(SEXP lptr, SEXP nptr, SEXP index, SEXP until, SEXP batch_size, SEXP skip)
{
    run_call c = run_args(lptr, nptr, index, until, batch_size, skip);
    SEXP m = PROTECT(Rf_allocMatrix(REALSXP, c.n, (int) an_output_size(c.net, c.layer)));
    an_rows_out out = {REAL(m), 1, c.n, NA_REAL, NULL, 0};
    an_status st = an_loader_forward(c.ld, c.net, c.idx, c.n, c.layer, c.batch, c.stop, &out, c.r, &c.n_failed);
    if (st != AN_OK) engine_error(st);
    SEXP res = batch_result(m, c.r, c.idx, c.n, c.n_failed);
    UNPROTECT(1);
    return res;
}

/* Grad-CAM maps of step `layer` for images `index`: value is the n x (h * w)
 * matrix (each row a map, row-major), with attribute "classes": the 0-based
 * class of each map (NA where the image failed). `classes`: one 0-based
 * class per image, -1 for the predicted one. */
SEXP r_an_loader_gradcam(SEXP lptr, SEXP nptr, SEXP index, SEXP layer, SEXP classes, SEXP batch_size, SEXP skip)
{
    run_call c = run_args(lptr, nptr, index, layer, batch_size, skip);
    if (TYPEOF(classes) != INTSXP || Rf_length(classes) != c.n)
        Rf_error("`classes` must be an integer vector with one class per image (%d)", c.n);
    an_output_info o = an_net_output(c.net, c.layer);
    SEXP m = PROTECT(Rf_allocMatrix(REALSXP, c.n, o.h * o.w));
    SEXP used = PROTECT(Rf_duplicate(classes));
    an_rows_out out = {REAL(m), 1, c.n, NA_REAL, NULL, 0};
    an_status st = an_loader_gradcam(c.ld, c.net, c.idx, c.n, c.layer, INTEGER(used), c.batch, c.stop, &out, c.r,
                                     &c.n_failed);
    if (st != AN_OK) engine_error(st);
    for (int i = 0; i < c.n; i++)
        if (INTEGER(used)[i] < 0) INTEGER(used)[i] = NA_INTEGER;
    Rf_setAttrib(m, Rf_install("classes"), used);
    SEXP res = batch_result(m, c.r, c.idx, c.n, c.n_failed);
    UNPROTECT(2);
    return res;
}

/* Loss and correct count of images `index` (labels 0-based, one each) in
 * inference mode: value c(loss_sum, correct, images used). */
SEXP r_an_loader_evaluate(SEXP lptr, SEXP nptr, SEXP index, SEXP labels, SEXP loss, SEXP batch_size,
                          SEXP skip)
{
    run_call c = run_args(lptr, nptr, index, R_NilValue, batch_size, skip);
    double loss_sum = 0;
    int correct = 0, used = 0;
    an_status st = an_loader_evaluate(c.ld, c.net, c.idx, get_labels(labels, c.n), c.n, c.batch, get_loss(loss),
                                      c.stop, &loss_sum, &correct, &used, c.r, &c.n_failed);
    if (st != AN_OK) engine_error(st);
    return batch_result(sums3(loss_sum, correct, used), c.r, c.idx, c.n, c.n_failed);
}

/* One SGD step on batch `index` of epoch `epoch` (augmented when the loader
 * is), batch `next` prepared behind it: value c(loss_sum, correct, images
 * used), with attribute "diverged" (the message) when the step was not
 * applied because the loss exploded. `share`: NULL, or this rank's place in
 * the global batch. */
SEXP r_an_loader_train_batch(SEXP lptr, SEXP nptr, SEXP index, SEXP labels, SEXP epoch,
                             SEXP next, SEXP loss, SEXP sgd, SEXP skip, SEXP share)
{
    /* a Ctrl-C pressed since the last step is raised here, before any work,
     * so the R loop knows exactly which steps were taken */
    R_CheckUserInterrupt();
    an_loader *ld = get_loader(lptr);
    an_net *net = get_net(nptr);
    if (TYPEOF(sgd) != REALSXP || XLENGTH(sgd) != 5)
        Rf_error("`sgd` must be c(lr, momentum, decay, weight_decay, nesterov)");
    const double *o = REAL(sgd);
    an_sgd opt = {(float) o[0], (float) o[1], (float) o[2], (float) o[3], o[4] != 0};
    an_loss_kind kind = get_loss(loss);
    int count, ncount;
    int *idx = get_indices(ld, index, &count, "index");
    int *nxt = get_indices(ld, next, &ncount, "next");
    const int *lab = get_labels(labels, count);
    double ep = Rf_asReal(epoch);
    if (!R_FINITE(ep) || ep < 0) Rf_error("`epoch` must be a non-negative number");
    an_reducer reducer;
    int offset = 0, global = 0;
    int shared = get_share(share, net, &reducer, &offset, &global);
    if (count == 0 && !shared) Rf_error("a batch needs at least one image");
    an_load_result *r = results_for(count);
    double loss_sum = 0;
    int correct = 0, used = 0, n_failed = 0;
    an_status st = an_loader_train_step(ld, net, idx, lab, count, (uint64_t) ep, nxt, ncount, kind, &opt,
                                        shared ? &reducer : NULL, offset, global, !Rf_asLogical(skip), &loss_sum,
                                        &correct, &used, r, &n_failed);
    if (st != AN_OK && st != AN_ERR_DIVERGED) engine_error(st);
    SEXP value = PROTECT(sums3(loss_sum, correct, used));
    /* not an error: the R loop ends the run, keeping what was learned */
    if (st == AN_ERR_DIVERGED) Rf_setAttrib(value, Rf_install("diverged"), Rf_mkString(an_error_message()));
    SEXP res = batch_result(value, r, idx, count, n_failed);
    UNPROTECT(1);
    return res;
}

/* The layers below the net's lowest learning one, computed once for every
 * image of the loader (an_loader_freeze): list(value = a loader of their
 * rows, or NULL where the net has no such start; failed; stage = the
 * step's name; note: why they were not kept; on_disk: their bytes in a
 * file of spill_dir). training: rows as a training pass makes them, else as
 * evaluation does (in batches of batch_size, as it runs); memory_bytes:
 * what they may take in memory (negative: half of what is free). */
SEXP r_an_loader_freeze(SEXP lptr, SEXP nptr, SEXP batch_size, SEXP training, SEXP skip, SEXP memory_bytes,
                        SEXP spill_dir)
{
    an_loader *ld = get_loader(lptr);
    an_net *net = get_net(nptr);
    int batch = scalar_int(batch_size, "batch_size");
    if (batch < 1) Rf_error("`batch_size` must be at least 1");
    int at = an_net_frozen_start(net), n = an_loader_size(ld);
    SEXP ptr = PROTECT(R_MakeExternalPtr(NULL, loader_tag(), R_NilValue));
    R_RegisterCFinalizerEx(ptr, loader_finalize, TRUE);
    int *idx = (int *) R_alloc((size_t) n, sizeof(int));
    for (int i = 0; i < n; i++) idx[i] = i;
    an_load_result *r = results_for(n);
    int n_failed = 0;
    an_loader *rows = NULL;
    SEXP note = R_NilValue;
    if (at >= 0) {
        an_rows_store store = {Rf_asReal(memory_bytes), get_path(spill_dir, "spill_dir")};
        an_status st = an_loader_freeze(ld, net, at, batch, Rf_asLogical(training) == TRUE, !Rf_asLogical(skip),
                                        &store, r, &n_failed, &rows);
        /* too large to keep, in memory or on disk: training goes on without
         * (the note says why) */
        if (st == AN_ERR_MEMORY || st == AN_ERR_IO) note = Rf_mkString(an_error_message());
        else if (st != AN_OK) engine_error(st);
    }
    PROTECT(note);
    R_SetExternalPtrAddr(ptr, rows);
    static const char *names[] = {"value", "failed", "stage", "note", "on_disk"};
    SEXP res = PROTECT(named_list(5, names));
    SET_VECTOR_ELT(res, 0, rows ? ptr : R_NilValue);
    /* the images' results exist when the rows were computed, kept or not
     * (a failure with on_error "stop" keeps none) */
    int ran = at >= 0 && note == R_NilValue;
    SET_VECTOR_ELT(res, 1, failures(r, idx, ran ? n : 0, n_failed));
    SET_VECTOR_ELT(res, 2, rows ? Rf_mkString(an_output_name(an_net_arch(net), at)) : R_NilValue);
    SET_VECTOR_ELT(res, 3, note);
    SET_VECTOR_ELT(res, 4, Rf_ScalarReal((double) an_loader_rows_on_disk(rows)));
    UNPROTECT(3);
    return res;
}

/* The net's input for batch `index` of `epoch` (as the loader makes it):
 * value is a double vector of count x 3 x size x size (planar RGB 0..255,
 * zeros for a failed image). */
SEXP r_an_loader_pixels(SEXP lptr, SEXP index, SEXP epoch)
{
    an_loader *ld = get_loader(lptr);
    int count;
    int *idx = get_indices(ld, index, &count, "index");
    if (count < 1) Rf_error("a batch needs at least one image");
    an_load_result *r = results_for(count);
    int n_failed = 0;
    const float *px = NULL;
    double ep = Rf_asReal(epoch);
    if (!R_FINITE(ep) || ep < 0) Rf_error("`epoch` must be a non-negative number");
    an_status st = an_loader_fetch(ld, idx, count, (uint64_t) ep, NULL, 0, 0, &px, r, &n_failed);
    if (st != AN_OK) engine_error(st);
    R_xlen_t len = (R_xlen_t) count * (R_xlen_t) an_loader_item_floats(ld);
    SEXP v = PROTECT(Rf_allocVector(REALSXP, len));
    for (R_xlen_t k = 0; k < len; k++) REAL(v)[k] = px[k];
    SEXP res = batch_result(v, r, idx, count, n_failed);
    UNPROTECT(1);
    return res;
}

/* ---------------------------------------------------------- one file -- */

/* A JPEG file's pixels at full size as an integer array c(h, w, 3), as the
 * loader decodes them (libjpeg's defaults, grey and CMYK converted). */
SEXP r_an_jpeg_read(SEXP path, SEXP max_megapixels)
{
    const char *p = get_path(path, "path");
    double mp = Rf_asReal(max_megapixels);
    an_jpeg_info info;
    an_status st = an_jpeg_read_info(p, &info);
    if (st != AN_OK) engine_error(st);
    if ((double) info.width * info.height > mp * 1e6)
        Rf_error("'%s' is %d x %d pixels, more than max_megapixels = %g million", p, info.width,
                 info.height, mp);
    /* R's vector first: an allocation error then leaves nothing behind */
    SEXP res = PROTECT(Rf_allocVector(INTSXP, (R_xlen_t) info.width * info.height * 3));
    SEXP dim = PROTECT(Rf_allocVector(INTSXP, 3));
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    st = an_jpeg_read_rgb(p, mp, &rgb, &w, &h);
    if (st != AN_OK) engine_error(st);
    if (w != info.width || h != info.height) {
        free(rgb);
        Rf_error("'%s' changed while it was read", p);
    }
    int *v = INTEGER(res);
    const size_t plane = (size_t) w * h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                v[c * plane + (size_t) x * h + y] = rgb[((size_t) y * w + x) * 3 + c];
    free(rgb);
    INTEGER(dim)[0] = h;
    INTEGER(dim)[1] = w;
    INTEGER(dim)[2] = 3;
    Rf_setAttrib(res, R_DimSymbol, dim);
    UNPROTECT(2);
    return res;
}
