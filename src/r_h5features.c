/* r_h5features.c: .Call entry points writing and reading the small HDF5
 * files of named values behind alexnet_features_h5() (R/parallel.R; the
 * engine's engine/h5features.h).
 *
 * h5f_write(path, values): `values` is a named list; each element becomes
 * one value of the file, by its R type:
 *   character              UTF-8 strings
 *   integer or logical     32-bit integers
 *   double                 64-bit floats, except a matrix: 32-bit floats
 *                          (feature matrices; R's double is exact for them)
 * A length-1 element without dim is a scalar (an attribute of the root), a
 * vector a 1-D dataset, a matrix a 2-D dataset stored row-major (rows x
 * cols, as h5py shows it). NULL and empty elements are left out. The file is
 * replaced atomically (see h5features.h).
 *
 * h5f_read(path, names): the named list back (all values, or those of
 * `names` found in the file); 2-D values come back as R matrices and
 * floats of either size as doubles. libhdf5 reads the file in a child
 * process (engine/isolate.h): a damaged file that crashes or hangs it is an
 * R error naming the file. */
#include <stdlib.h>
#include <string.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "h5features.h"
#include "r_alexnet.h"
#include "r_h5features.h"

SEXP r_an_h5f_write(SEXP path, SEXP values)
{
    const char *p = get_path(path, "path");
    SEXP names = Rf_getAttrib(values, R_NamesSymbol);
    if (TYPEOF(values) != VECSXP || TYPEOF(names) != STRSXP) Rf_error("`values` must be a named list");
    R_xlen_t n = XLENGTH(values);
    if (n > 100000) Rf_error("`values` has too many elements");
    an_h5f_item *items = (an_h5f_item *)R_alloc((size_t)n + 1, sizeof(an_h5f_item));
    int m = 0;
    for (R_xlen_t i = 0; i < n; i++) {
        SEXP x = VECTOR_ELT(values, i);
        SEXP nm = STRING_ELT(names, i);
        if (nm == NA_STRING || CHAR(nm)[0] == '\0') Rf_error("element %d of `values` has no name", (int)i + 1);
        if (Rf_isNull(x) || XLENGTH(x) == 0) continue;
        R_xlen_t len = XLENGTH(x);
        an_h5f_item *it = &items[m];
        memset(it, 0, sizeof *it);
        it->name = Rf_translateCharUTF8(nm);
        SEXP dim = Rf_getAttrib(x, R_DimSymbol);
        size_t rows = (size_t)len, cols = 1;
        if (!Rf_isNull(dim)) {
            if (XLENGTH(dim) != 2) Rf_error("`%s` must be a vector or a matrix", it->name);
            rows = (size_t)INTEGER(dim)[0];
            cols = (size_t)INTEGER(dim)[1];
            it->ndims = 2;
        } else {
            it->ndims = len == 1 ? 0 : 1;
        }
        it->dims[0] = rows;
        it->dims[1] = cols;
        it->flags = AN_H5F_COLUMN_MAJOR;   /* R's layout; the engine stores matrices row-major */
        switch (TYPEOF(x)) {
        case STRSXP: {
            const char **s = (const char **)R_alloc((size_t)len, sizeof(char *));
            for (R_xlen_t k = 0; k < len; k++) {
                SEXP e = STRING_ELT(x, k);
                if (e == NA_STRING) Rf_error("`%s` must not contain NA", it->name);
                s[k] = Rf_translateCharUTF8(e);
            }
            it->kind = AN_H5F_STRINGS;
            it->data = s;
            break;
        }
        case LGLSXP:
        case INTSXP:
            it->kind = AN_H5F_INTS;
            it->data = TYPEOF(x) == LGLSXP ? LOGICAL(x) : INTEGER(x);
            break;
        case REALSXP:
            /* feature matrices as 32-bit floats, other doubles as they are */
            it->kind = it->ndims == 2 ? AN_H5F_FLOATS : AN_H5F_DOUBLES;
            if (it->ndims == 2) it->flags |= AN_H5F_FROM_DOUBLES;
            it->data = REAL(x);
            break;
        default:
            Rf_error("`%s` must be character, integer, logical or double", it->name);
        }
        m++;
    }
    if (an_h5f_write(p, items, m) != AN_OK) Rf_error("%s", an_error_message());
    return R_NilValue;
}

SEXP r_an_h5f_read(SEXP path, SEXP names)
{
    const char *p = get_path(path, "path");
    const char **want = NULL;
    int n_want = 0;
    if (!Rf_isNull(names)) {
        if (TYPEOF(names) != STRSXP) Rf_error("`names` must be NULL or a character vector");
        n_want = (int)XLENGTH(names);
        want = (const char **)R_alloc((size_t)n_want + 1, sizeof(char *));
        for (int i = 0; i < n_want; i++)
            want[i] = STRING_ELT(names, i) == NA_STRING ? NULL : Rf_translateCharUTF8(STRING_ELT(names, i));
    }
    an_h5f_value *v = NULL;
    int n = 0;
    set_hdf5_read_timeout();
    if (an_h5f_read(p, want, n_want, AN_H5F_COLUMN_MAJOR, &v, &n) != AN_OK) Rf_error("%s", an_error_message());
    /* the values are malloc'd: copy them into R, then free them. An R
     * allocation failure here would leak them; it ends the call anyway. */
    SEXP res = PROTECT(Rf_allocVector(VECSXP, n));
    SEXP nms = PROTECT(Rf_allocVector(STRSXP, n));
    for (int i = 0; i < n; i++) {
        size_t rows = v[i].ndims == 0 ? 1 : v[i].dims[0];
        size_t cols = v[i].ndims == 2 ? v[i].dims[1] : 1;
        size_t count = rows * cols;
        SEXPTYPE type = v[i].kind == AN_H5F_STRINGS ? STRSXP : v[i].kind == AN_H5F_INTS ? INTSXP : REALSXP;
        SEXP x = PROTECT(v[i].ndims == 2 ? Rf_allocMatrix(type, (int)rows, (int)cols)
                                         : Rf_allocVector(type, (R_xlen_t)count));
        /* column-major, as R keeps matrices */
        if (type == STRSXP)
            for (size_t k = 0; k < count; k++)
                SET_STRING_ELT(x, (R_xlen_t)k, Rf_mkCharCE(((char **)v[i].data)[k], CE_UTF8));
        else if (type == INTSXP)
            memcpy(INTEGER(x), v[i].data, count * sizeof(int));
        else
            memcpy(REAL(x), v[i].data, count * sizeof(double));
        SET_VECTOR_ELT(res, i, x);
        SET_STRING_ELT(nms, i, Rf_mkCharCE(v[i].name, CE_UTF8));
        UNPROTECT(1);
    }
    an_h5f_values_free(v, n);
    Rf_setAttrib(res, R_NamesSymbol, nms);
    UNPROTECT(2);
    return res;
}
