/* fixture.h: reader for the .anfx reference files of tools/make_fixtures.py.
 *
 * Format (little-endian): "ANFX", uint32 version (1), uint32 tensor count;
 * per tensor: uint32 name length, name (no NUL), uint32 dtype (0 float32,
 * 1 int32, 2 float64), uint32 ndim, uint32 dims[ndim], row-major data.
 * A large tensor NAME is stored as NAME.shape (int32 dims), NAME.idx (int32
 * flat indices of a sample), NAME.val (float32) and NAME.stats (float64: sum,
 * sum |x|, max |x|, count). */
#ifndef FIXTURE_H
#define FIXTURE_H

#include <stddef.h>
#include <stdint.h>

enum { ANFX_F32 = 0, ANFX_I32 = 1, ANFX_F64 = 2 };
#define ANFX_MAX_DIMS 8

typedef struct {
    char *name;
    int dtype, ndim;
    int dims[ANFX_MAX_DIMS];
    size_t count;
    void *data;             /* malloc'd, aligned for its type */
} anfx_tensor;

typedef struct {
    int n;
    anfx_tensor *t;
} anfx_file;

/* NULL (and a message on stderr) when the file is missing or malformed. */
anfx_file *anfx_load(const char *path);
void anfx_free(anfx_file *f);
/* NULL when absent or of another dtype */
const anfx_tensor *anfx_get(const anfx_file *f, const char *name, int dtype);

#endif
