/* r_util.c: the helpers that every glue file (src/r_*.c) shares, declared
 * in r_alexnet.h: R objects in, plain C values out, nothing else. */
#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include "r_alexnet.h"

/* A list of n elements (all NULL) named by `names`. */
SEXP named_list(int n, const char **names)
{
    SEXP res = PROTECT(Rf_allocVector(VECSXP, n));
    SEXP nm = PROTECT(Rf_allocVector(STRSXP, n));
    for (int i = 0; i < n; i++) SET_STRING_ELT(nm, i, Rf_mkChar(names[i]));
    Rf_setAttrib(res, R_NamesSymbol, nm);
    UNPROTECT(2);
    return res;
}

/* A file name from R (a single non-empty string) in the native encoding,
 * as the C library's file functions want it. `what` names the argument in
 * the error. The string lives as long as the .Call (R_alloc'd by R). */
const char *get_path(SEXP path, const char *what)
{
    if (TYPEOF(path) != STRSXP || XLENGTH(path) != 1 || STRING_ELT(path, 0) == NA_STRING)
        Rf_error("`%s` must be a single file name", what);
    const char *p = Rf_translateChar(STRING_ELT(path, 0));
    if (p[0] == '\0') Rf_error("`%s` must not be empty", what);
    return p;
}
