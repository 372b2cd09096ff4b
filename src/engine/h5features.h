/* h5features.h: small HDF5 files of named values, written atomically, for
 * feature extraction spread over many processes (R/parallel.R). Plain C, no R.
 *
 * A file holds a flat set of named values at its root: scalars are root
 * attributes, vectors and matrices are root datasets. Kinds:
 *   AN_H5F_STRINGS  UTF-8 variable-length strings (h5py reads them as str)
 *   AN_H5F_INTS     32-bit little-endian integers
 *   AN_H5F_DOUBLES  64-bit IEEE floats
 *   AN_H5F_FLOATS   32-bit IEEE floats (written from float, or from double
 *                   with AN_H5F_FROM_DOUBLES; read as doubles)
 * A matrix (ndims = 2) is stored row-major, dims = (rows, cols), as h5py
 * shows it. The caller's matrices may be column-major (R, Fortran: element
 * (r, c) at data[c * rows + r]): an item with AN_H5F_COLUMN_MAJOR is
 * transposed on the way to the file, and a read with AN_H5F_COLUMN_MAJOR
 * delivers its matrices so; the file is the same either way.
 *
 * Writing never leaves a partial file under its name: HDF5 builds the file
 * in memory (the core driver, no backing store) and this code writes it to
 * `<path>.tmp-<pid>`, flushes it (fsync), renames it over `path` and flushes
 * the folder. A killed process can leave the temporary file, never a
 * damaged `path`; several processes may write different files of one folder
 * at the same time. (HDF5 1.10 does not survive a failed write to disk, so
 * it never writes to disk itself; see weights.c.)
 *
 * Every call returns an an_status; on failure the message names the file.
 * HDF5's own error printing is switched off during each call. */
#ifndef ALEXNET_H5FEATURES_H
#define ALEXNET_H5FEATURES_H

#include "alexnet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    AN_H5F_STRINGS = 1,
    AN_H5F_INTS = 2,
    AN_H5F_DOUBLES = 3,
    AN_H5F_FLOATS = 4
} an_h5f_kind;

/* an_h5f_item.flags and an_h5f_read's flags */
enum {
    AN_H5F_COLUMN_MAJOR = 1,   /* a matrix's data is column-major (no effect on scalars and vectors) */
    AN_H5F_FROM_DOUBLES = 2    /* items of kind AN_H5F_FLOATS only: data is const double *, stored as
                                * 32-bit floats (each value rounded as a C cast does) */
};

typedef struct {
    const char *name;
    an_h5f_kind kind;
    int ndims;          /* 0: a scalar attribute; 1: a vector; 2: a matrix (datasets) */
    size_t dims[2];     /* ndims 1: dims[0] values; 2: dims[0] x dims[1]; at least one value */
    const void *data;   /* const char *const * (UTF-8), const int *, const double *, const float * */
    int flags;          /* 0 (row-major, data of the kind's own type) or AN_H5F_* flags */
} an_h5f_item;

/* Write `n` items to `path` as described above (replacing any file there).
 * An item that needs transposing or narrowing is copied (malloc'd) while
 * it is written: one such copy at a time. */
an_status an_h5f_write(const char *path, const an_h5f_item *items, int n);

/* A value read back: kind STRINGS (char **), INTS (int *) or DOUBLES
 * (double *, for 32- and 64-bit floats alike); data and name are owned. */
typedef struct {
    char *name;
    an_h5f_kind kind;
    int ndims;
    size_t dims[2];
    void *data;
} an_h5f_value;

/* Read the root attributes and datasets of `path`. With `names` (n_names
 * strings), only those are read (absent ones are left out, not an error);
 * with names = NULL, all of them. Values of other kinds (compound types,
 * more than 2 dimensions, groups, links to other files) are left out.
 * flags: 0 (matrices row-major, as stored) or AN_H5F_COLUMN_MAJOR. On
 * success free the values with an_h5f_values_free(). */
an_status an_h5f_read(const char *path, const char *const *names, int n_names, int flags, an_h5f_value **values,
                      int *n_values);
void an_h5f_values_free(an_h5f_value *values, int n);

/* an_h5f_read runs libhdf5 in a short-lived child process (isolate.h), as
 * weights.c does: a file that crashes or hangs libhdf5 is an error naming
 * it, and this process goes on. The same read in this process, for tests
 * and fuzzing only. */
an_status an_h5f_read_in_process(const char *path, const char *const *names, int n_names, int flags,
                                 an_h5f_value **values, int *n_values);

#ifdef __cplusplus
}
#endif
#endif
