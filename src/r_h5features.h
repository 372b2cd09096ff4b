/* r_h5features.h: .Call entry points for the files of features written over
 * many workers (r_h5features.c, engine/h5features.h; R/parallel.R). */
#ifndef R_H5FEATURES_H
#define R_H5FEATURES_H

#include <Rinternals.h>

SEXP r_an_h5f_write(SEXP path, SEXP values);
SEXP r_an_h5f_read(SEXP path, SEXP names);

#endif
