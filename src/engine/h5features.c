/* h5features.c: small HDF5 files of named values, written atomically (see
 * h5features.h). The HDF5 plumbing follows weights.c: every id is closed on
 * every path, HDF5's error printing is off during each call, and files are
 * built in memory and written with plain POSIX calls. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include "h5io.h"
#include "isolate.h"

#include "h5features.h"

/* no single value is larger than this (a damaged file can declare anything) */
#define MAX_VALUES ((size_t)1 << 34)
#define MAX_STRING ((size_t)1 << 20)

/* ---------------------------------------------------------------- HDF5 plumbing */

static void reclaim_vlen(hid_t mt, hid_t sp, void *buf)
{
#if defined(H5_VERSION_GE) && H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mt, sp, H5P_DEFAULT, buf);
#else
    H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
#endif
}

/* ---------------------------------------------------------------- layouts */

/* Bytes of one value of `kind` in memory (32-bit floats only on the way to the file). */
static size_t value_size(an_h5f_kind kind)
{
    return kind == AN_H5F_STRINGS ? sizeof(char *) : kind == AN_H5F_INTS ? sizeof(int)
           : kind == AN_H5F_FLOATS ? sizeof(float) : sizeof(double);
}

/* dst = the transpose of src, a row-major rows x cols matrix of values of
 * `size` bytes (a column-major matrix is the row-major one of its
 * transpose). The fixed sizes let the compiler copy each value in one move. */
static void transpose(void *dst, const void *src, size_t rows, size_t cols, size_t size)
{
    char *d = dst;
    const char *s = src;
#define TRANSPOSE(SIZE)                                                                                    \
    for (size_t r = 0; r < rows; r++)                                                                      \
        for (size_t c = 0; c < cols; c++) memcpy(d + (c * rows + r) * (SIZE), s + (r * cols + c) * (SIZE), (SIZE))
    if (size == 4) TRANSPOSE(4);
    else if (size == 8) TRANSPOSE(8);
    else TRANSPOSE(size);
#undef TRANSPOSE
}

/* A matrix whose layouts differ: neither one row nor one column. */
static int is_matrix(int ndims, const size_t dims[2])
{
    return ndims == 2 && dims[0] > 1 && dims[1] > 1;
}

/* ---------------------------------------------------------------- writing */

static size_t item_count(const an_h5f_item *it)
{
    if (it->ndims == 0) return 1;
    return it->ndims == 1 ? it->dims[0] : it->dims[0] * it->dims[1];
}

/* The item as the file holds it (row-major, of its kind's own type, flags
 * 0): where it is not, it->data becomes a malloc'd copy. -1: out of memory
 * (the item unchanged). */
static int to_stored_form(an_h5f_item *it)
{
    int transposed = (it->flags & AN_H5F_COLUMN_MAJOR) && is_matrix(it->ndims, it->dims);
    int narrowed = (it->flags & AN_H5F_FROM_DOUBLES) != 0;
    if (!transposed && !narrowed) {
        it->flags = 0;
        return 0;
    }
    size_t count = item_count(it), rows = it->dims[0], cols = it->dims[1];
    void *buf = malloc(count * value_size(it->kind));
    if (!buf) return -1;
    if (narrowed) {
        const double *d = it->data;
        float *f = buf;
        if (transposed) {
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < cols; c++) f[r * cols + c] = (float)d[c * rows + r];
        } else {
            for (size_t k = 0; k < count; k++) f[k] = (float)d[k];
        }
    } else {
        transpose(buf, it->data, cols, rows, value_size(it->kind));
    }
    it->data = buf;
    it->flags = 0;
    return 0;
}

static hid_t file_type(an_h5f_kind kind)
{
    switch (kind) {
    case AN_H5F_INTS: return H5Tcopy(H5T_STD_I32LE);
    case AN_H5F_DOUBLES: return H5Tcopy(H5T_IEEE_F64LE);
    case AN_H5F_FLOATS: return H5Tcopy(H5T_IEEE_F32LE);
    case AN_H5F_STRINGS: {
        hid_t t = H5Tcopy(H5T_C_S1);
        if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) an_h5_close(&t);
        return t;
    }
    }
    return -1;
}

static hid_t mem_type(an_h5f_kind kind)
{
    switch (kind) {
    case AN_H5F_INTS: return H5Tcopy(H5T_NATIVE_INT);
    case AN_H5F_DOUBLES: return H5Tcopy(H5T_NATIVE_DOUBLE);
    case AN_H5F_FLOATS: return H5Tcopy(H5T_NATIVE_FLOAT);
    case AN_H5F_STRINGS: return file_type(AN_H5F_STRINGS);
    }
    return -1;
}

/* One item into the open file; 0 or -1 (HDF5's error stack says why). */
static int write_item(hid_t file, const an_h5f_item *it)
{
    hsize_t dims[2] = {(hsize_t)it->dims[0], (hsize_t)it->dims[1]};
    hid_t ft = file_type(it->kind), mt = mem_type(it->kind);
    hid_t sp = it->ndims == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(it->ndims, dims, NULL);
    hid_t obj = -1, dcpl = -1;
    int rc = -1;
    if (ft < 0 || mt < 0 || sp < 0) goto done;
    if (it->ndims == 0) {
        if ((obj = H5Acreate2(file, it->name, ft, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
            H5Awrite(obj, mt, it->data) < 0)
            goto done;
    } else {
        if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) goto done;
        if (it->ndims == 2 && it->kind == AN_H5F_FLOATS) {
            /* chunks of whole rows (about 1 MB), so a reader can take some rows cheaply */
            hsize_t chunk[2] = {dims[0], dims[1]};
            size_t row = (size_t)dims[1] * sizeof(float);
            hsize_t per = row > 0 ? (hsize_t)(((size_t)1 << 20) / row) : 1;
            if (per < 1) per = 1;
            if (chunk[0] > per) chunk[0] = per;
            if (chunk[1] > ((hsize_t)1 << 20)) chunk[1] = (hsize_t)1 << 20;
            if (H5Pset_chunk(dcpl, 2, chunk) < 0) goto done;
        }
        if ((obj = H5Dcreate2(file, it->name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
            H5Dwrite(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, it->data) < 0)
            goto done;
    }
    rc = 0;
done:
    if (obj >= 0) {
        herr_t c = it->ndims == 0 ? H5Aclose(obj) : H5Dclose(obj);
        if (c < 0) rc = -1;
    }
    an_h5_close(&dcpl);
    an_h5_close(&sp);
    an_h5_close(&mt);
    an_h5_close(&ft);
    return rc;
}

static an_status build_image(const char *path, const char *mem_name, const an_h5f_item *items, int n,
                             an_h5_image *im)
{
    char detail[160];
    size_t bytes = (size_t)1 << 20;
    for (int i = 0; i < n; i++) {
        size_t count = item_count(&items[i]);
        switch (items[i].kind) {
        case AN_H5F_STRINGS:
            for (size_t k = 0; k < count; k++) bytes += strlen(((const char *const *)items[i].data)[k]) + 32;
            break;
        case AN_H5F_FLOATS: bytes += count * 4; break;
        default: bytes += count * 8; break;
        }
    }
    hid_t file = an_h5_create_in_memory(mem_name, bytes, im);
    if (file < 0)
        return an_fail(AN_ERR_MEMORY, "cannot write '%s': HDF5 cannot create the file in memory: %s", path,
                       an_h5_detail(detail));
    an_status s = AN_OK;
    for (int i = 0; i < n && s == AN_OK; i++) {
        /* one item's copy at a time, if it needs one */
        an_h5f_item it = items[i];
        if (to_stored_form(&it) != 0)
            s = an_fail(AN_ERR_MEMORY, "cannot write '%s': out of memory (%.0f MB) for `%s`", path,
                        item_count(&it) * (double)value_size(it.kind) / 1e6, it.name);
        else if (write_item(file, &it) < 0)
            s = an_fail(AN_ERR_MEMORY, "cannot write '%s': HDF5 failed writing `%s` (out of memory?): %s", path,
                        it.name, an_h5_detail(detail));
        if (it.data != items[i].data) free((void *)it.data);
    }
    if (H5Fclose(file) < 0 && s == AN_OK)
        s = an_fail(AN_ERR_MEMORY, "cannot write '%s': HDF5 cannot finish the file: %s", path,
                    an_h5_detail(detail));
    if (s == AN_OK && !im->mem) s = an_fail(AN_ERR_MEMORY, "cannot write '%s': HDF5 produced no file image", path);
    if (s != AN_OK) {
        free(im->mem);
        im->mem = NULL;
    }
    return s;
}

typedef struct {
    const char *path;
    const an_h5f_item *items;
    int n;
} write_job;

static an_status write_build(void *ctx, const char *mem_name, an_h5_image *im)
{
    const write_job *job = ctx;
    return build_image(job->path, mem_name, job->items, job->n, im);
}

an_status an_h5f_write(const char *path, const an_h5f_item *items, int n)
{
    if (!path || !path[0]) return an_fail(AN_ERR_ARGUMENT, "no file name to write to");
    if (n < 0 || (n > 0 && !items)) return an_fail(AN_ERR_ARGUMENT, "cannot write '%s': no values", path);
    for (int i = 0; i < n; i++) {
        const an_h5f_item *it = &items[i];
        if (!it->name || !it->name[0] || strchr(it->name, '/') || !it->data || it->ndims < 0 || it->ndims > 2 ||
            it->kind < AN_H5F_STRINGS || it->kind > AN_H5F_FLOATS || item_count(it) == 0 ||
            item_count(it) > MAX_VALUES || (it->flags & ~(AN_H5F_COLUMN_MAJOR | AN_H5F_FROM_DOUBLES)) ||
            ((it->flags & AN_H5F_FROM_DOUBLES) && it->kind != AN_H5F_FLOATS))
            return an_fail(AN_ERR_ARGUMENT, "cannot write '%s': value %d (`%s`) is malformed", path, i + 1,
                           it->name ? it->name : "");
        for (int j = 0; j < i; j++)
            if (strcmp(items[j].name, it->name) == 0)
                return an_fail(AN_ERR_ARGUMENT, "cannot write '%s': two values are named `%s`", path, it->name);
        if (it->kind == AN_H5F_STRINGS)
            for (size_t k = 0; k < item_count(it); k++)
                if (!((const char *const *)it->data)[k])
                    return an_fail(AN_ERR_ARGUMENT, "cannot write '%s': string %zu of `%s` is missing", path,
                                   k + 1, it->name);
    }
    write_job job = {path, items, n};
    return an_h5_write_file(path, "write", write_build, &job);
}

/* ---------------------------------------------------------------- reading */

void an_h5f_values_free(an_h5f_value *values, int n)
{
    if (!values) return;
    for (int i = 0; i < n; i++) {
        if (values[i].kind == AN_H5F_STRINGS && values[i].data) {
            size_t count = values[i].ndims == 0 ? 1
                           : values[i].ndims == 1 ? values[i].dims[0] : values[i].dims[0] * values[i].dims[1];
            char **s = values[i].data;
            for (size_t k = 0; k < count; k++) free(s[k]);
        }
        free(values[i].data);
        free(values[i].name);
    }
    free(values);
}

typedef struct {
    const char *path;
    hid_t file;
    const char *const *names;
    int n_names;
    an_h5f_value *values;
    int n, cap;
    an_status status;       /* AN_OK, or the first failure (iteration stops) */
    int keep_floats;        /* 32-bit floats stay AN_H5F_FLOATS (half the bytes through the child's pipe) */
} reader;

static int wanted(const reader *r, const char *name)
{
    if (!r->names) return 1;
    for (int i = 0; i < r->n_names; i++)
        if (r->names[i] && strcmp(r->names[i], name) == 0) return 1;
    return 0;
}

static char *dup_string(const char *s)
{
    size_t n = strnlen(s, MAX_STRING);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Read an attribute (is_attr) or dataset `obj` named `name` into r->values;
 * left out when of another kind. */
static void read_value(reader *r, hid_t obj, int is_attr, const char *name)
{
    char detail[160];
    hid_t sp = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hid_t ft = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t mt = -1;
    an_h5f_value v;
    memset(&v, 0, sizeof v);
    void *vl = NULL;
    if (sp < 0 || ft < 0) {
        r->status = an_fail(AN_ERR_FORMAT, "cannot read `%s` of '%s': %s", name, r->path, an_h5_detail(detail));
        goto done;
    }
    H5T_class_t cls = H5Tget_class(ft);
    H5S_class_t scls = H5Sget_simple_extent_type(sp);
    int rank = scls == H5S_SCALAR ? 0 : scls == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank < 0 || rank > 2) goto done;   /* not one of ours: left out */
    hsize_t dims[2] = {1, 1};
    if (rank > 0) H5Sget_simple_extent_dims(sp, dims, NULL);
    size_t count = 1;
    for (int k = 0; k < rank; k++) count *= (size_t)dims[k];
    if (count == 0 || count > MAX_VALUES) goto done;
    v.ndims = rank;
    v.dims[0] = rank > 0 ? (size_t)dims[0] : 1;
    v.dims[1] = rank > 1 ? (size_t)dims[1] : 1;
    if (cls == H5T_INTEGER) {
        v.kind = AN_H5F_INTS;
        mt = H5Tcopy(H5T_NATIVE_INT);
        v.data = malloc(count * sizeof(int));
    } else if (cls == H5T_FLOAT && r->keep_floats && H5Tget_size(ft) == sizeof(float)) {
        v.kind = AN_H5F_FLOATS;
        mt = H5Tcopy(H5T_NATIVE_FLOAT);
        v.data = malloc(count * sizeof(float));
    } else if (cls == H5T_FLOAT) {
        v.kind = AN_H5F_DOUBLES;
        mt = H5Tcopy(H5T_NATIVE_DOUBLE);
        v.data = malloc(count * sizeof(double));
    } else if (cls == H5T_STRING) {
        v.kind = AN_H5F_STRINGS;
        v.data = calloc(count, sizeof(char *));
        mt = H5Tcopy(H5T_C_S1);
        if (mt >= 0) H5Tset_cset(mt, H5Tget_cset(ft));
    } else {
        goto done;
    }
    if (!v.data || mt < 0 || !(v.name = dup_string(name))) {
        r->status = an_fail(AN_ERR_MEMORY, "out of memory reading `%s` of '%s'", name, r->path);
        goto done;
    }
    herr_t e;
    if (v.kind != AN_H5F_STRINGS) {
        e = is_attr ? H5Aread(obj, mt, v.data) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data);
    } else if (H5Tis_variable_str(ft) > 0) {
        if (!(vl = calloc(count, sizeof(char *))) || H5Tset_size(mt, H5T_VARIABLE) < 0) {
            r->status = an_fail(AN_ERR_MEMORY, "out of memory reading `%s` of '%s'", name, r->path);
            goto done;
        }
        e = is_attr ? H5Aread(obj, mt, vl) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, vl);
        if (e >= 0) {
            char **in = vl, **out = v.data;
            for (size_t k = 0; k < count && e >= 0; k++)
                if (!(out[k] = dup_string(in[k] ? in[k] : ""))) e = -2;
            reclaim_vlen(mt, sp, vl);
        }
    } else {
        size_t size = H5Tget_size(ft);
        char *raw = NULL;
        e = -1;
        if (size > 0 && size <= MAX_STRING && count <= MAX_VALUES / size && H5Tset_size(mt, size) >= 0 &&
            H5Tset_strpad(mt, H5T_STR_NULLPAD) >= 0 && (raw = malloc(size * count))) {
            e = is_attr ? H5Aread(obj, mt, raw) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
            char **out = v.data;
            for (size_t k = 0; k < count && e >= 0; k++) {
                if ((out[k] = malloc(size + 1))) {
                    memcpy(out[k], raw + k * size, size);
                    out[k][size] = '\0';
                } else {
                    e = -2;
                }
            }
        }
        free(raw);
    }
    if (e == -2) {
        r->status = an_fail(AN_ERR_MEMORY, "out of memory reading `%s` of '%s'", name, r->path);
        goto done;
    }
    if (e < 0) {
        r->status = an_fail(AN_ERR_FORMAT, "cannot read `%s` of '%s': %s", name, r->path, an_h5_detail(detail));
        goto done;
    }
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        an_h5f_value *grown = realloc(r->values, (size_t)cap * sizeof *grown);
        if (!grown) {
            r->status = an_fail(AN_ERR_MEMORY, "out of memory reading '%s'", r->path);
            goto done;
        }
        r->values = grown;
        r->cap = cap;
    }
    r->values[r->n++] = v;
    memset(&v, 0, sizeof v);
done:
    free(vl);
    if (v.kind == AN_H5F_STRINGS && v.data) {
        char **s = v.data;
        for (size_t k = 0; k < v.dims[0] * (v.ndims == 2 ? v.dims[1] : 1); k++) free(s[k]);
    }
    free(v.data);
    free(v.name);
    an_h5_close(&mt);
    an_h5_close(&ft);
    an_h5_close(&sp);
    H5Eclear2(H5E_DEFAULT);
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    reader *r = data;
    if (!wanted(r, name)) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        char detail[160];
        r->status = an_fail(AN_ERR_FORMAT, "cannot read attribute `%s` of '%s': %s", name, r->path,
                            an_h5_detail(detail));
        return 1;
    }
    read_value(r, a, 1, name);
    an_h5_close(&a);
    return r->status == AN_OK ? 0 : 1;
}

static herr_t link_cb(hid_t loc, const char *name, const H5L_info_t *info, void *data)
{
    reader *r = data;
    /* only the file's own objects: an external link would open another file */
    if (info->type != H5L_TYPE_HARD || !wanted(r, name)) return 0;
    H5O_info_t oi;
#if defined(H5_VERSION_GE) && H5_VERSION_GE(1, 12, 0)
    if (H5Oget_info_by_name3(loc, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
#else
    if (H5Oget_info_by_name(loc, name, &oi, H5P_DEFAULT) < 0) return 0;
#endif
    if (oi.type != H5O_TYPE_DATASET) return 0;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) {
        char detail[160];
        r->status = an_fail(AN_ERR_FORMAT, "cannot read dataset `%s` of '%s': %s", name, r->path,
                            an_h5_detail(detail));
        return 1;
    }
    read_value(r, d, 0, name);
    an_h5_close(&d);
    return r->status == AN_OK ? 0 : 1;
}

/* The read itself, in whichever process runs it; the arguments are checked.
 * keep_floats: see reader. */
static an_status read_values(const char *path, const char *const *names, int n_names, int keep_floats,
                             an_h5f_value **values, int *n_values)
{
    char detail[160];
    an_h5_quiet q;
    an_h5_quiet_begin(&q);
    reader r = {path, -1, names, n_names, NULL, 0, 0, AN_OK, keep_floats};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if defined(H5_VERSION_GE)
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
    if (fapl >= 0) H5Pset_file_locking(fapl, 1, 1);   /* lock, but not fail where locks are missing */
#endif
#endif
#if defined(H5_VERSION_GE) && H5_VERSION_GE(1, 12, 0)
    htri_t is = H5Fis_accessible(path, H5P_DEFAULT);
#else
    htri_t is = H5Fis_hdf5(path);
#endif
    if (is <= 0) {
        an_h5_close(&fapl);
        H5Eclear2(H5E_DEFAULT);
        an_h5_quiet_end(&q);
        return an_fail(AN_ERR_FORMAT, "'%s' is not an HDF5 file (or is damaged)", path);
    }
    r.file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    an_h5_close(&fapl);
    if (r.file < 0) {
        an_status s = an_fail(AN_ERR_FORMAT, "cannot open '%s': %s", path, an_h5_detail(detail));
        an_h5_quiet_end(&q);
        return s;
    }
    hid_t root = H5Gopen2(r.file, "/", H5P_DEFAULT);
    if (root < 0) {
        r.status = an_fail(AN_ERR_FORMAT, "cannot open the root of '%s': %s", path, an_h5_detail(detail));
    } else {
        hsize_t at = 0;
        if (H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, &at, attr_cb, &r) < 0 && r.status == AN_OK)
            r.status = an_fail(AN_ERR_FORMAT, "cannot list the attributes of '%s': %s", path, an_h5_detail(detail));
        hsize_t li = 0;
        if (r.status == AN_OK && H5Literate(root, H5_INDEX_NAME, H5_ITER_INC, &li, link_cb, &r) < 0 &&
            r.status == AN_OK)
            r.status = an_fail(AN_ERR_FORMAT, "cannot list the datasets of '%s': %s", path, an_h5_detail(detail));
    }
    an_h5_close(&root);
    an_h5_close(&r.file);
    an_h5_quiet_end(&q);
    if (r.status != AN_OK) {
        an_h5f_values_free(r.values, r.n);
        return r.status;
    }
    *values = r.values;
    *n_values = r.n;
    return AN_OK;
}

/* ---------------------------------------------------------------- reading in a child
 * libhdf5 1.10 crashes or hangs on some damaged files, in code reached
 * through plain reads (variable-length strings: the global heap; see
 * tests/fuzz/known_hdf5_crashes/README.md), so the read runs in a child
 * process (isolate.h). Per value it sends a head (kind, shape, data size,
 * then the name) and the data: numbers as they are (32-bit floats as such,
 * widened here), strings as one block of NUL-terminated strings; at the end the number of values. The parent checks
 * each record against the head before it, and the whole before the caller
 * gets anything. */

#if AN_HAVE_ISOLATION
enum { REC_HEAD = 1, REC_DATA, REC_COUNT };

typedef struct {
    int32_t kind, ndims;
    uint64_t dims[2];
    uint64_t data_bytes;
} value_head;   /* followed by the name, without its NUL */

/* Bytes of a value's data record; for strings the block of NUL-terminated strings. */
static uint64_t data_bytes(const an_h5f_value *v, size_t count)
{
    if (v->kind != AN_H5F_STRINGS) return (uint64_t)count * value_size(v->kind);
    uint64_t bytes = 0;
    char **s = v->data;
    for (size_t k = 0; k < count; k++) bytes += strlen(s[k]) + 1;
    return bytes;
}

static size_t value_count(const an_h5f_value *v)
{
    return v->ndims == 0 ? 1 : v->ndims == 1 ? v->dims[0] : v->dims[0] * v->dims[1];
}

typedef struct {
    const char *path;
    const char *const *names;
    int n_names;
    /* parent: what arrived */
    an_h5f_value *values;
    char **string_blocks;       /* per value: its strings, still one block */
    uint64_t *block_bytes;
    int n, cap;
    char *head;                 /* the head awaiting its data */
    uint64_t head_bytes;
    int32_t count;
    int have_count;
} read_job;

static an_status send_value(an_isolated *to_parent, uint32_t i, const an_h5f_value *v)
{
    size_t count = value_count(v), name_len = strlen(v->name);
    value_head h = {(int32_t)v->kind, v->ndims, {v->dims[0], v->dims[1]}, data_bytes(v, count)};
    char *head = malloc(sizeof h + name_len);
    char *block = v->kind == AN_H5F_STRINGS ? malloc(h.data_bytes) : NULL;
    an_status s = AN_OK;
    if (!head || (v->kind == AN_H5F_STRINGS && !block)) {
        s = an_fail(AN_ERR_MEMORY, "out of memory sending `%s`", v->name);
    } else {
        memcpy(head, &h, sizeof h);
        memcpy(head + sizeof h, v->name, name_len);
        if (block) {
            char **strings = v->data, *at = block;
            for (size_t k = 0; k < count; k++) {
                size_t len = strlen(strings[k]) + 1;
                memcpy(at, strings[k], len);
                at += len;
            }
        }
        if (an_isolated_send(to_parent, REC_HEAD, i, head, sizeof h + name_len) != 0 ||
            an_isolated_send(to_parent, REC_DATA, i, block ? block : v->data, h.data_bytes) != 0)
            s = an_fail(AN_ERR_IO, "the parent process is gone");
    }
    free(head);
    free(block);
    return s;
}

static an_status read_child(an_isolated *to_parent, void *ctx)
{
    const read_job *job = ctx;
    an_h5f_value *values = NULL;
    int n = 0;
    an_status s = read_values(job->path, job->names, job->n_names, 1, &values, &n);
    for (int i = 0; i < n && s == AN_OK; i++) s = send_value(to_parent, (uint32_t)i, &values[i]);
    int32_t count = n;
    if (s == AN_OK && an_isolated_send(to_parent, REC_COUNT, 0, &count, sizeof count) != 0)
        s = an_fail(AN_ERR_IO, "the parent process is gone");
    an_h5f_values_free(values, n);
    return s;
}

/* The head awaiting its data as a value (name, kind, shape) appended to the
 * job, if it is one read_values can produce; its data record's size. */
static int take_head(read_job *job, uint64_t *want)
{
    value_head h;
    memcpy(&h, job->head, sizeof h);
    size_t name_len = (size_t)(job->head_bytes - sizeof h);
    if (memchr(job->head + sizeof h, '\0', name_len) || h.ndims < 0 || h.ndims > 2 || h.dims[0] == 0 ||
        h.dims[1] == 0 || h.dims[0] > MAX_VALUES || h.dims[1] > MAX_VALUES / h.dims[0] ||
        (h.ndims < 2 && h.dims[1] != 1) || (h.ndims == 0 && h.dims[0] != 1))
        return 0;
    uint64_t count = h.dims[0] * h.dims[1];
    if (h.kind == AN_H5F_INTS) *want = count * sizeof(int);
    else if (h.kind == AN_H5F_FLOATS) *want = count * sizeof(float);
    else if (h.kind == AN_H5F_DOUBLES) *want = count * sizeof(double);
    else if (h.kind == AN_H5F_STRINGS && h.data_bytes >= count && h.data_bytes <= count * (MAX_STRING + 1)) *want = h.data_bytes;
    else return 0;
    if (h.data_bytes != *want) return 0;
    if (job->n == job->cap) {
        int cap = job->cap ? 2 * job->cap : 16;
        an_h5f_value *values = realloc(job->values, (size_t)cap * sizeof *values);
        if (values) job->values = values;
        char **blocks = realloc(job->string_blocks, (size_t)cap * sizeof *blocks);
        if (blocks) job->string_blocks = blocks;
        uint64_t *sizes = realloc(job->block_bytes, (size_t)cap * sizeof *sizes);
        if (sizes) job->block_bytes = sizes;
        if (!values || !blocks || !sizes) return -1;
        job->cap = cap;
    }
    an_h5f_value *v = &job->values[job->n];
    memset(v, 0, sizeof *v);
    job->string_blocks[job->n] = NULL;
    job->block_bytes[job->n] = 0;
    if (!(v->name = malloc(name_len + 1))) return -1;
    memcpy(v->name, job->head + sizeof h, name_len);
    v->name[name_len] = '\0';
    v->kind = (an_h5f_kind)h.kind;
    v->ndims = h.ndims;
    v->dims[0] = (size_t)h.dims[0];
    v->dims[1] = (size_t)h.dims[1];
    job->n++;
    return 1;
}

/* Each record must follow the one before: a head, its data, ..., the count. */
static an_status read_place(void *ctx, uint32_t tag, uint32_t index, uint64_t bytes, void **dst)
{
    read_job *job = ctx;
    int next = !job->have_count && index == (uint32_t)job->n;
    if (tag == REC_HEAD && next && !job->head && bytes > sizeof(value_head) &&
        bytes <= sizeof(value_head) + MAX_STRING) {
        if (!(*dst = job->head = malloc(bytes)))
            return an_fail(AN_ERR_MEMORY, "out of memory reading '%s'", job->path);
        job->head_bytes = bytes;
        return AN_OK;
    }
    if (tag == REC_DATA && next && job->head) {
        uint64_t want = 0;
        int took = take_head(job, &want);
        free(job->head);
        job->head = NULL;
        if (took < 0) return an_fail(AN_ERR_MEMORY, "out of memory reading '%s'", job->path);
        if (took > 0 && bytes == want) {
            an_h5f_value *v = &job->values[job->n - 1];
            void *data = malloc(bytes);
            if (!data)
                return an_fail(AN_ERR_MEMORY, "out of memory (%.0f MB) reading `%s` of '%s'", bytes / 1e6, v->name,
                               job->path);
            if (v->kind == AN_H5F_STRINGS) {
                job->string_blocks[job->n - 1] = data;
                job->block_bytes[job->n - 1] = bytes;
            } else {
                v->data = data;
            }
            *dst = data;
            return AN_OK;
        }
    } else if (tag == REC_COUNT && index == 0 && !job->have_count && !job->head && bytes == sizeof job->count) {
        job->have_count = 1;
        *dst = &job->count;
        return AN_OK;
    }
    return an_fail(AN_ERR_FORMAT, "features file '%s': the process reading it sent an unexpected record (%u, %u, "
                   "%llu bytes)", job->path, tag, index, (unsigned long long)bytes);
}

/* The values complete, each string block exactly its value's strings,
 * split; 32-bit floats widened to doubles (exactly, as libhdf5 does in
 * process). */
static an_status take_values(read_job *job)
{
    int ok = job->have_count && job->count == job->n;
    for (int i = 0; i < job->n && ok; i++) {
        an_h5f_value *v = &job->values[i];
        if (v->kind == AN_H5F_FLOATS) {
            size_t count = value_count(v);
            double *wide = malloc(count * sizeof *wide);
            if (!wide) return an_fail(AN_ERR_MEMORY, "out of memory (%.0f MB) reading `%s` of '%s'",
                                      count * sizeof *wide / 1e6, v->name, job->path);
            const float *narrow = v->data;
            for (size_t k = 0; k < count; k++) wide[k] = (double)narrow[k];
            free(v->data);
            v->data = wide;
            v->kind = AN_H5F_DOUBLES;
        }
        if (v->kind != AN_H5F_STRINGS) continue;
        const char *block = job->string_blocks[i];
        uint64_t bytes = job->block_bytes[i], ends = 0;
        size_t count = value_count(v);
        for (uint64_t k = 0; k < bytes; k++) ends += block[k] == '\0';
        ok = ends == count && block[bytes - 1] == '\0';
        if (!ok) break;
        char **strings = calloc(count, sizeof *strings);
        if (!strings) return an_fail(AN_ERR_MEMORY, "out of memory reading '%s'", job->path);
        v->data = strings;
        for (size_t k = 0; k < count; k++) {
            if (!(strings[k] = strdup(block)))
                return an_fail(AN_ERR_MEMORY, "out of memory reading '%s'", job->path);
            block += strlen(block) + 1;
        }
    }
    if (!ok)
        return an_fail(AN_ERR_FORMAT, "features file '%s': the process reading it sent an inconsistent result",
                       job->path);
    return AN_OK;
}

static an_status read_isolated(const char *path, const char *const *names, int n_names, an_h5f_value **values,
                               int *n_values)
{
    read_job job;
    memset(&job, 0, sizeof job);
    job.path = path;
    job.names = names;
    job.n_names = n_names;
    an_isolated_names wording = {"features file", path, "the HDF5 library", NULL};
    an_status s = an_isolated_run(&wording, read_child, &job, read_place, &job);
    if (s == AN_OK) s = take_values(&job);
    for (int i = 0; i < job.n; i++) free(job.string_blocks ? job.string_blocks[i] : NULL);
    free(job.string_blocks);
    free(job.block_bytes);
    free(job.head);
    if (s != AN_OK) {
        an_h5f_values_free(job.values, job.n);
        return s;
    }
    *values = job.values;
    *n_values = job.n;
    return AN_OK;
}
#endif

/* The values' matrices column-major (AN_H5F_COLUMN_MAJOR), in this
 * process whichever process read them. */
static an_status to_column_major(const char *path, an_h5f_value *values, int n)
{
    for (int i = 0; i < n; i++) {
        an_h5f_value *v = &values[i];
        if (!is_matrix(v->ndims, v->dims)) continue;
        size_t size = value_size(v->kind);
        void *t = malloc(v->dims[0] * v->dims[1] * size);
        if (!t)
            return an_fail(AN_ERR_MEMORY, "out of memory (%.0f MB) reading `%s` of '%s'",
                           v->dims[0] * v->dims[1] * (double)size / 1e6, v->name, path);
        transpose(t, v->data, v->dims[0], v->dims[1], size);
        free(v->data);
        v->data = t;
    }
    return AN_OK;
}

static an_status read_checked(const char *path, const char *const *names, int n_names, int flags,
                              an_h5f_value **values, int *n_values, int isolated)
{
    if (values) *values = NULL;
    if (n_values) *n_values = 0;
    if (!path || !path[0] || !values || !n_values) return an_fail(AN_ERR_ARGUMENT, "no file name to read");
    if (flags & ~AN_H5F_COLUMN_MAJOR) return an_fail(AN_ERR_ARGUMENT, "cannot read '%s': unknown flags", path);
    an_status s = an_h5_check_readable(path, "features file", NULL);
    if (s != AN_OK) return s;
#if AN_HAVE_ISOLATION
    s = isolated ? read_isolated(path, names, n_names, values, n_values)
                 : read_values(path, names, n_names, 0, values, n_values);
#else
    (void)isolated;
    s = read_values(path, names, n_names, 0, values, n_values);
#endif
    if (s == AN_OK && (flags & AN_H5F_COLUMN_MAJOR) && (s = to_column_major(path, *values, *n_values)) != AN_OK) {
        an_h5f_values_free(*values, *n_values);
        *values = NULL;
        *n_values = 0;
    }
    return s;
}

an_status an_h5f_read(const char *path, const char *const *names, int n_names, int flags, an_h5f_value **values,
                      int *n_values)
{
    return read_checked(path, names, n_names, flags, values, n_values, 1);
}

an_status an_h5f_read_in_process(const char *path, const char *const *names, int n_names, int flags,
                                 an_h5f_value **values, int *n_values)
{
    return read_checked(path, names, n_names, flags, values, n_values, 0);
}
