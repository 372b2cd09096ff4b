/* r_images.c: .Call entry points for JPEG folders (R/folders.R).
 *
 * A loader (engine/loader.c: worker threads decoding JPEG files) lives in an
 * external pointer with a finalizer; R also frees it explicitly (on.exit),
 * so an error or an interrupt never leaves threads running for long.
 *
 * The batch entries take the batch to compute now and, optionally, the next
 * one: the next is submitted before the current is waited for, so the
 * workers decode batch k + 1 while the net computes batch k. The loader
 * always runs with AN_ON_ERROR_SKIP; the failures of each batch go back to R
 * (dataset index + message naming the file), which stops or skips. With
 * `skip` FALSE a batch with a failure is not computed.
 *
 * While waiting for the workers the entries poll with an_loader_poll and
 * R_CheckUserInterrupt, so Ctrl-C works; the queue of submitted batches is
 * only popped after a batch has been waited for, so an interrupt leaves the
 * box consistent (a later call drains batches it did not ask for). */
#include <stdlib.h>
#include <string.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "images.h"
#include "r_alexnet.h"
#include "r_group.h"

/* ------------------------------------------------------------ the box -- */

typedef struct {
    int *idx;       /* 0-based */
    int count, cap;
    double epoch;
} queued;

typedef struct {
    an_loader *ld;
    int n;          /* paths */
    int nq;         /* batches submitted and not yet waited for: q[0] is the oldest */
    queued q[2];
} loader_box;

static SEXP loader_tag(void)
{
    static SEXP tag = NULL;
    if (tag == NULL) tag = Rf_install("alexnet_loader");
    return tag;
}

static void loader_finalize(SEXP ptr)
{
    loader_box *b = (loader_box *) R_ExternalPtrAddr(ptr);
    if (b == NULL) return;
    R_ClearExternalPtr(ptr);
    an_loader_free(b->ld);   /* joins the worker threads */
    for (int i = 0; i < 2; i++) free(b->q[i].idx);
    free(b);
}

static loader_box *get_box(SEXP ptr)
{
    if (TYPEOF(ptr) != EXTPTRSXP || R_ExternalPtrTag(ptr) != loader_tag())
        Rf_error("not an alexnet image loader");
    loader_box *b = (loader_box *) R_ExternalPtrAddr(ptr);
    if (b == NULL) Rf_error("this image loader has been freed");
    return b;
}

/* paths (UTF-8), size, resize (0 stretch, 1 crop), augment (NULL or
 * c(rotation, width_shift, height_shift, shear, zoom_lo, zoom_hi, hflip,
 * vflip)), seed (double), threads (0: default). */
SEXP r_an_loader_create(SEXP paths, SEXP size, SEXP resize, SEXP augment, SEXP seed,
                        SEXP threads)
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
    opt.threads = scalar_int(threads, "threads");
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
    const char **p = (const char **) R_alloc((size_t) n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        SEXP el = STRING_ELT(paths, i);
        if (el == NA_STRING) Rf_error("`paths` must not contain NA");
        p[i] = Rf_translateCharUTF8(el);
    }
    /* the pointer first, so that nothing leaks if an allocation fails */
    SEXP ptr = PROTECT(R_MakeExternalPtr(NULL, loader_tag(), R_NilValue));
    R_RegisterCFinalizerEx(ptr, loader_finalize, TRUE);
    loader_box *b = (loader_box *) calloc(1, sizeof *b);
    if (b == NULL) Rf_error("out of memory for an image loader");
    R_SetExternalPtrAddr(ptr, b);
    b->n = n;
    an_status st = an_loader_create(p, n, &opt, &b->ld);
    if (st != AN_OK) {
        b->ld = NULL;
        engine_error(st);
    }
    UNPROTECT(1);
    return ptr;
}

SEXP r_an_loader_free(SEXP ptr)
{
    if (TYPEOF(ptr) == EXTPTRSXP && R_ExternalPtrTag(ptr) == loader_tag()) loader_finalize(ptr);
    return R_NilValue;
}

/* ------------------------------------------------------------ batches -- */

/* 1-based R indices to 0-based ints (R_alloc). NULL (R) gives count 0. */
static int *get_indices(loader_box *b, SEXP index, int *count, const char *what)
{
    *count = 0;
    if (Rf_isNull(index)) return NULL;
    if (TYPEOF(index) != INTSXP) Rf_error("`%s` must be an integer vector", what);
    int n = Rf_length(index);
    int *out = (int *) R_alloc(n > 0 ? (size_t) n : 1, sizeof(int));
    for (int j = 0; j < n; j++) {
        int i = INTEGER(index)[j];
        if (i == NA_INTEGER || i < 1 || i > b->n) Rf_error("image index %d is outside 1..%d", i, b->n);
        out[j] = i - 1;
    }
    *count = n;
    return out;
}

static void wait_polling(loader_box *b)
{
    while (an_loader_poll(b->ld, 50) == 0) R_CheckUserInterrupt();
}

static void pop(loader_box *b)
{
    queued tmp = b->q[0];
    b->q[0] = b->q[1];
    b->q[1] = tmp;
    b->q[1].count = 0;
    b->nq--;
}

static void submit(loader_box *b, const int *idx, int count, double epoch)
{
    queued *q = &b->q[b->nq];
    if (count > q->cap) {
        int *p = (int *) realloc(q->idx, (size_t) count * sizeof(int));
        if (p == NULL) Rf_error("out of memory for a batch of %d images", count);
        q->idx = p;
        q->cap = count;
    }
    if (epoch < 0) epoch = 0;
    an_status st = an_loader_submit(b->ld, idx, count, (uint64_t) epoch);
    if (st != AN_OK) engine_error(st);
    memcpy(q->idx, idx, (size_t) count * sizeof(int));
    q->count = count;
    q->epoch = epoch;
    b->nq++;
}

static int same(const queued *q, const int *idx, int count, double epoch)
{
    return q->count == count && q->epoch == epoch &&
           memcmp(q->idx, idx, (size_t) count * sizeof(int)) == 0;
}

/* The pixels of batch (idx, epoch), prefetching (next, next_epoch). The
 * pointer is inside the loader, valid until the next submission. */
static const float *fetch(loader_box *b, const int *idx, int count, double epoch, const int *next,
                          int ncount, double next_epoch, an_load_result *results, int *n_failed)
{
    if (count < 1) Rf_error("a batch needs at least one image");
    if (b->nq > 0 && !same(&b->q[0], idx, count, epoch)) {
        while (b->nq > 0) {     /* not what is asked for: drop it */
            wait_polling(b);
            an_status st = an_loader_wait(b->ld, NULL, NULL, NULL);
            pop(b);
            if (st != AN_OK) engine_error(st);
        }
    }
    if (b->nq == 0) submit(b, idx, count, epoch);
    if (ncount > 0 && b->nq < 2) submit(b, next, ncount, next_epoch);
    wait_polling(b);
    const float *px = NULL;
    an_status st = an_loader_wait_buffer(b->ld, &px, results, n_failed);
    pop(b);
    if (st != AN_OK) engine_error(st);
    return px;
}

static SEXP failures(const an_load_result *r, const int *idx, int count, int n_failed)
{
    const char *names[] = {"index", "message"};
    SEXP res = PROTECT(Rf_allocVector(VECSXP, 2));
    SEXP nm = PROTECT(Rf_allocVector(STRSXP, 2));
    for (int i = 0; i < 2; i++) SET_STRING_ELT(nm, i, Rf_mkChar(names[i]));
    Rf_setAttrib(res, R_NamesSymbol, nm);
    SEXP ix = PROTECT(Rf_allocVector(INTSXP, n_failed));
    SEXP msg = PROTECT(Rf_allocVector(STRSXP, n_failed));
    int k = 0;
    for (int j = 0; j < count && k < n_failed; j++) {
        if (r[j].status == AN_OK) continue;
        INTEGER(ix)[k] = idx[j] + 1;
        SET_STRING_ELT(msg, k, Rf_mkCharCE(r[j].message[0] ? r[j].message : "could not be read",
                                           CE_UTF8));
        k++;
    }
    SET_VECTOR_ELT(res, 0, ix);
    SET_VECTOR_ELT(res, 1, msg);
    UNPROTECT(4);
    return res;
}

static SEXP batch_result(SEXP value, SEXP fail)
{
    SEXP res = PROTECT(Rf_allocVector(VECSXP, 2));
    SEXP nm = PROTECT(Rf_allocVector(STRSXP, 2));
    SET_STRING_ELT(nm, 0, Rf_mkChar("value"));
    SET_STRING_ELT(nm, 1, Rf_mkChar("failed"));
    Rf_setAttrib(res, R_NamesSymbol, nm);
    SET_VECTOR_ELT(res, 0, value);
    SET_VECTOR_ELT(res, 1, fail);
    UNPROTECT(2);
    return res;
}

/* The images of the batch that loaded (with their labels), copied when some
 * failed. */
static const float *kept(const float *px, const an_load_result *r, const int *labels, int count,
                         int n_failed, int **lab_out, int *n_out)
{
    if (n_failed == 0) {
        *lab_out = (int *) labels;
        *n_out = count;
        return px;
    }
    int m = count - n_failed;
    *n_out = m;
    if (m == 0) return NULL;
    float *in = (float *) R_alloc((size_t) m * AN_INPUT_PIXELS, sizeof(float));
    int *lab = (int *) R_alloc((size_t) m, sizeof(int));
    int k = 0;
    for (int j = 0; j < count; j++) {
        if (r[j].status != AN_OK) continue;
        memcpy(in + (size_t) k * AN_INPUT_PIXELS, px + (size_t) j * AN_INPUT_PIXELS,
               AN_INPUT_PIXELS * sizeof(float));
        lab[k++] = labels[j];
    }
    *lab_out = lab;
    return in;
}

/* Forward batch `index` (epoch `epoch`) to output `until`: value is the
 * b x size matrix (rows of failed images NA), NULL when some failed and not
 * `skip`. */
SEXP r_an_loader_forward(SEXP lptr, SEXP nptr, SEXP index, SEXP epoch, SEXP next, SEXP until,
                         SEXP skip)
{
    R_CheckUserInterrupt();
    loader_box *b = get_box(lptr);
    an_net *net = get_net(nptr);
    int u = scalar_int(until, "layer");
    if (u < 0 || u >= AN_N_OUTPUTS) Rf_error("unknown layer index %d", u);
    size_t size = an_output_size(net, u);
    int count, ncount;
    int *idx = get_indices(b, index, &count, "index");
    int *nxt = get_indices(b, next, &ncount, "next");
    double ep = Rf_asReal(epoch);
    an_load_result *r = (an_load_result *) R_alloc(count > 0 ? (size_t) count : 1, sizeof *r);
    int n_failed = 0;
    const float *px = fetch(b, idx, count, ep, nxt, ncount, ep, r, &n_failed);
    SEXP fail = PROTECT(failures(r, idx, count, n_failed));
    if (n_failed > 0 && !Rf_asLogical(skip)) {
        SEXP res = batch_result(R_NilValue, fail);
        UNPROTECT(1);
        return res;
    }
    float *out = (float *) R_alloc((size_t) count * size, sizeof(float));
    sigset_t held;
    sigint_hold(&held);
    an_status st = an_net_forward(net, px, count, u, out);
    sigint_release(&held);
    if (st != AN_OK) engine_error(st);
    SEXP m = PROTECT(Rf_allocMatrix(REALSXP, count, (int) size));
    double *d = REAL(m);
    for (int j = 0; j < count; j++) {
        int bad = r[j].status != AN_OK;
        for (size_t k = 0; k < size; k++)
            d[j + (R_xlen_t) k * count] = bad ? NA_REAL : (double) out[(size_t) j * size + k];
    }
    SEXP res = batch_result(m, fail);
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

/* One SGD step on batch `index` of epoch `epoch` (augmented when the loader
 * is): value c(loss_sum, correct, images used), as r_an_train_batch plus the
 * count; NULL when some failed and not `skip`. */
SEXP r_an_loader_train_batch(SEXP lptr, SEXP nptr, SEXP index, SEXP labels, SEXP epoch,
                             SEXP next, SEXP loss, SEXP sgd, SEXP skip, SEXP share)
{
    /* as r_an_train_batch: a pending Ctrl-C is raised before any work */
    R_CheckUserInterrupt();
    loader_box *b = get_box(lptr);
    an_net *net = get_net(nptr);
    if (TYPEOF(sgd) != REALSXP || XLENGTH(sgd) != 5)
        Rf_error("`sgd` must be c(lr, momentum, decay, weight_decay, nesterov)");
    const double *o = REAL(sgd);
    an_sgd opt = {(float) o[0], (float) o[1], (float) o[2], (float) o[3], o[4] != 0};
    an_loss_kind kind = get_loss(loss);
    int count, ncount;
    int *idx = get_indices(b, index, &count, "index");
    int *nxt = get_indices(b, next, &ncount, "next");
    const int *lab = get_labels(labels, count);
    double ep = Rf_asReal(epoch);
    an_load_result *r = (an_load_result *) R_alloc(count > 0 ? (size_t) count : 1, sizeof *r);
    int n_failed = 0;
    if (count == 0 && !Rf_isNull(share)) {   /* a rank without rows in this batch */
        double loss_sum = 0;
        int correct = 0;
        an_status st = train_step(net, share, NULL, NULL, 0, kind, &opt, &loss_sum, &correct);
        if (st != AN_OK) engine_error(st);
        SEXP fail = PROTECT(failures(r, idx, 0, 0));
        SEXP res = batch_result(sums3(loss_sum, correct, 0), fail);
        UNPROTECT(1);
        return res;
    }
    const float *px = fetch(b, idx, count, ep, nxt, ncount, ep, r, &n_failed);
    SEXP fail = PROTECT(failures(r, idx, count, n_failed));
    if (n_failed > 0 && !Rf_asLogical(skip)) {
        SEXP res = batch_result(R_NilValue, fail);
        UNPROTECT(1);
        return res;
    }
    int *klab, m;
    const float *in = kept(px, r, lab, count, n_failed, &klab, &m);
    double loss_sum = 0;
    int correct = 0;
    /* a rank of a group takes part in every step, with or without images */
    if (m > 0 || !Rf_isNull(share)) {
        an_status st = train_step(net, share, in, klab, m, kind, &opt, &loss_sum, &correct);   /* holds SIGINT */
        if (st != AN_OK) engine_error(st);
    }
    SEXP res = batch_result(sums3(loss_sum, correct, m), fail);
    UNPROTECT(1);
    return res;
}

/* Loss and correct count of batch `index` in inference mode: value
 * c(loss_sum, correct, images used). */
SEXP r_an_loader_evaluate(SEXP lptr, SEXP nptr, SEXP index, SEXP labels, SEXP next, SEXP loss,
                          SEXP skip)
{
    R_CheckUserInterrupt();
    loader_box *b = get_box(lptr);
    an_net *net = get_net(nptr);
    an_loss_kind kind = get_loss(loss);
    int count, ncount;
    int *idx = get_indices(b, index, &count, "index");
    int *nxt = get_indices(b, next, &ncount, "next");
    const int *lab = get_labels(labels, count);
    an_load_result *r = (an_load_result *) R_alloc(count > 0 ? (size_t) count : 1, sizeof *r);
    int n_failed = 0;
    const float *px = fetch(b, idx, count, 0, nxt, ncount, 0, r, &n_failed);
    SEXP fail = PROTECT(failures(r, idx, count, n_failed));
    if (n_failed > 0 && !Rf_asLogical(skip)) {
        SEXP res = batch_result(R_NilValue, fail);
        UNPROTECT(1);
        return res;
    }
    int *klab, m;
    const float *in = kept(px, r, lab, count, n_failed, &klab, &m);
    double loss_sum = 0;
    int correct = 0;
    if (m > 0) {
        sigset_t held;
        sigint_hold(&held);
        an_status st = an_net_evaluate(net, in, klab, m, kind, &loss_sum, &correct);
        sigint_release(&held);
        if (st != AN_OK) engine_error(st);
    }
    SEXP res = batch_result(sums3(loss_sum, correct, m), fail);
    UNPROTECT(1);
    return res;
}

/* The net's input for batch `index` of `epoch` (as the loader makes it):
 * value is a double vector of count x 3 x size x size (planar RGB 0..255,
 * zeros for a failed image). */
SEXP r_an_loader_pixels(SEXP lptr, SEXP index, SEXP epoch)
{
    loader_box *b = get_box(lptr);
    int count;
    int *idx = get_indices(b, index, &count, "index");
    an_load_result *r = (an_load_result *) R_alloc(count > 0 ? (size_t) count : 1, sizeof *r);
    int n_failed = 0;
    const float *px = fetch(b, idx, count, Rf_asReal(epoch), NULL, 0, 0, r, &n_failed);
    SEXP fail = PROTECT(failures(r, idx, count, n_failed));
    R_xlen_t len = (R_xlen_t) count * AN_INPUT_PIXELS;
    SEXP v = PROTECT(Rf_allocVector(REALSXP, len));
    for (R_xlen_t k = 0; k < len; k++) REAL(v)[k] = px[k];
    SEXP res = batch_result(v, fail);
    UNPROTECT(2);
    return res;
}
