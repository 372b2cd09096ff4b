/* weights.c: the net's parameters in HDF5 files (see weights.h): the
 * package's own format, and Keras 1 save_weights() files such as
 * Heuritech's alexnet_weights.h5 (Theano kernels, flipped on loading),
 * both read and written.
 *
 * Every HDF5 id opened here is closed on every path, and HDF5's automatic
 * error printing is switched off for the duration of each public call (and
 * restored afterwards): failures come back as an_status with a message.
 * Saving builds the file in memory and writes it with plain POSIX calls (see
 * an_weights_save). Reading is split in two: the read (read_for_load,
 * read_for_info: everything libhdf5 does, and the checks against the net)
 * runs in a short-lived child process (isolate.c), because libhdf5 1.10
 * crashes or hangs on some hostile files; the commit into the net runs
 * here, after the child's results have been checked. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include "h5io.h"

#include "foreign.h"
#include "isolate.h"
#include "weights.h"

/* ---------------------------------------------------------------- layers */

static const struct {
    const char *name;
    int param, half;        /* AN_P_* layer; 0 whole, 1 first out/2 filters, 2 second */
} KLAYERS[AN_W_N_LAYERS] = {
    {"conv_1", AN_P_CONV_1, 0},   {"conv_2_1", AN_P_CONV_2, 1}, {"conv_2_2", AN_P_CONV_2, 2},
    {"conv_3", AN_P_CONV_3, 0},   {"conv_4_1", AN_P_CONV_4, 1}, {"conv_4_2", AN_P_CONV_4, 2},
    {"conv_5_1", AN_P_CONV_5, 1}, {"conv_5_2", AN_P_CONV_5, 2}, {"dense_1", AN_P_DENSE_1, 0},
    {"dense_2", AN_P_DENSE_2, 0}, {"dense_3", AN_P_DENSE_3, 0},
};

static const double IMAGENET_MEAN[3] = {123.68, 116.779, 103.939};

static const char *LAYOUT =
    "float32, channels first. Convolution `weight` (out, in/groups, kh, kw), applied as "
    "cross-correlation (no kernel flip, as PyTorch); dense `weight` (out, in), y = W x + b. "
    "Two-group convolutions are stored as their halves <name>_1 (first out/2 filters, first "
    "in/2 input channels) and <name>_2. Input: RGB 0..255 minus `mean`, 3 x 227 x 227.";

const char *an_weights_layer_name(int layer)
{
    return layer >= 0 && layer < AN_W_N_LAYERS ? KLAYERS[layer].name : NULL;
}

int an_weights_layer_param(int layer, int *half)
{
    if (layer < 0 || layer >= AN_W_N_LAYERS) {
        if (half) *half = 0;
        return -1;
    }
    if (half) *half = KLAYERS[layer].half;
    return KLAYERS[layer].param;
}

/* The part of the parameter block that Keras layer k occupies, and its
 * shapes: `own` in the engine's layout, `keras` as a Keras 1 file holds it. */
typedef struct {
    size_t w_off, w_count, b_off, b_count;
    int ndims;
    hsize_t own[4], keras[4];
} klayer_geom;

static klayer_geom geometry(const an_net *net, int k)
{
    const an_param_layer *L = an_net_param_layer(net, KLAYERS[k].param);
    int half = KLAYERS[k].half;
    klayer_geom g;
    memset(&g, 0, sizeof g);
    int parts = half ? 2 : 1;
    g.w_count = L->weight_count / parts;
    g.b_count = L->bias_count / parts;
    g.w_off = L->weight_offset + (half ? (size_t)(half - 1) * g.w_count : 0);
    g.b_off = L->bias_offset + (half ? (size_t)(half - 1) * g.b_count : 0);
    if (L->is_conv) {
        g.ndims = 4;
        g.own[0] = g.keras[0] = (hsize_t)(L->out / parts);
        g.own[1] = g.keras[1] = (hsize_t)(L->in / L->groups);
        g.own[2] = g.keras[2] = (hsize_t)L->kh;
        g.own[3] = g.keras[3] = (hsize_t)L->kw;
    } else {
        g.ndims = 2;
        g.own[0] = g.keras[1] = (hsize_t)L->out;
        g.own[1] = g.keras[0] = (hsize_t)L->in;
    }
    return g;
}

static void format_dims(char *buf, size_t size, int ndims, const hsize_t *dims)
{
    int64_t d[AN_TENSOR_MAX_DIMS];
    if (ndims > AN_TENSOR_MAX_DIMS) ndims = AN_TENSOR_MAX_DIMS;
    for (int i = 0; i < ndims; i++) d[i] = (int64_t)dims[i];
    an_shape_text(buf, size, ndims, d);
}

/* ---------------------------------------------------------------- HDF5 plumbing */

/* An external link would make HDF5 open another file, named by this one:
 * weights files never hold one, so it is not followed. */
static int external_link(hid_t loc, const char *name)
{
    H5L_info_t li;
    int ext = H5Lexists(loc, name, H5P_DEFAULT) > 0 && H5Lget_info(loc, name, &li, H5P_DEFAULT) >= 0 &&
              li.type == H5L_TYPE_EXTERNAL;
    H5Eclear2(H5E_DEFAULT);
    return ext;
}

static hid_t file_access_plist(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if defined(H5_VERSION_GE)
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
    /* lock, but do not fail on file systems without locks */
    if (fapl >= 0) H5Pset_file_locking(fapl, 1, 1);
#endif
#endif
    return fapl;
}

static void free_strings(char **s, int n)
{
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static char *dup_n(const char *s, size_t n)
{
    size_t len = 0;
    while (len < n && s[len]) len++;
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* A string or string-array attribute, fixed or variable length, as n
 * malloc'd strings. An attribute with no elements (as h5py writes an empty
 * list: float64, shape (0,)) reads as n = 0 whatever its type. Returns 0,
 * or -1 when absent, -2 when not strings, -3 on a read or memory failure. */
static int read_strings_attr(hid_t loc, const char *name, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    if (H5Aexists(loc, name) <= 0) return -1;
    int rc = -3;
    hid_t a = -1, sp = -1, ft = -1, mt = -1;
    char **list = NULL;
    char *raw = NULL;
    hssize_t count = 0;
    if ((a = H5Aopen(loc, name, H5P_DEFAULT)) < 0 || (sp = H5Aget_space(a)) < 0) goto done;
    H5S_class_t cls = H5Sget_simple_extent_type(sp);
    count = cls == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(sp);
    if (count < 0) goto done;
    if (count == 0) { rc = 0; goto done; }
    if (count > 10000000) { rc = -2; goto done; }
    if ((ft = H5Aget_type(a)) < 0) goto done;
    if (H5Tget_class(ft) != H5T_STRING) { rc = -2; goto done; }
    /* a damaged file can declare any size: no class name or layer name is
     * longer than 64 KB, nor a list of them larger than 256 MB */
    if (H5Tis_variable_str(ft) <= 0 &&
        (H5Tget_size(ft) > 65536 || H5Tget_size(ft) * (size_t)count > ((size_t)1 << 28))) {
        rc = -2;
        goto done;
    }
    if (!(list = calloc((size_t)count, sizeof *list))) goto done;
    if ((mt = H5Tcopy(H5T_C_S1)) < 0) goto done;
    H5Tset_cset(mt, H5Tget_cset(ft));
    if (H5Tis_variable_str(ft) > 0) {
        char **vl = calloc((size_t)count, sizeof *vl);
        if (!vl || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, vl) < 0) {
            free(vl);
            goto done;
        }
        int ok = 1;
        for (hssize_t i = 0; i < count; i++)
            if (!(list[i] = dup_n(vl[i] ? vl[i] : "", (size_t)-1))) ok = 0;
#if defined(H5_VERSION_GE) && H5_VERSION_GE(1, 12, 0)
        H5Treclaim(mt, sp, H5P_DEFAULT, vl);
#else
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, vl);
#endif
        free(vl);
        if (!ok) goto done;
    } else {
        size_t size = H5Tget_size(ft);
        if (size == 0 || H5Tset_size(mt, size) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0) goto done;
        if (!(raw = malloc(size * (size_t)count)) || H5Aread(a, mt, raw) < 0) goto done;
        for (hssize_t i = 0; i < count; i++)
            if (!(list[i] = dup_n(raw + (size_t)i * size, size))) goto done;
    }
    rc = 0;
done:
    free(raw);
    if (rc == 0 && count > 0) {
        *out = list;
        *n = (int)count;
    } else {
        free_strings(list, (int)count);
    }
    an_h5_close(&mt);
    an_h5_close(&ft);
    an_h5_close(&sp);
    an_h5_close(&a);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

/* A single string: the attribute must hold exactly one. */
static int read_string_attr(hid_t loc, const char *name, char *buf, size_t size)
{
    char **s;
    int n;
    int rc = read_strings_attr(loc, name, &s, &n);
    if (rc != 0) return rc;
    if (n != 1) {
        free_strings(s, n);
        return -2;
    }
    snprintf(buf, size, "%s", s[0]);
    free_strings(s, n);
    return 0;
}

/* `count` numbers (integer or float class) as doubles. 0, -1 absent, -2 wrong type or count, -3 read. */
static int read_numbers_attr(hid_t loc, const char *name, double *out, int count)
{
    if (H5Aexists(loc, name) <= 0) return -1;
    int rc = -3;
    hid_t a = -1, sp = -1, ft = -1;
    if ((a = H5Aopen(loc, name, H5P_DEFAULT)) < 0 || (sp = H5Aget_space(a)) < 0 ||
        (ft = H5Aget_type(a)) < 0)
        goto done;
    H5T_class_t c = H5Tget_class(ft);
    if ((c != H5T_INTEGER && c != H5T_FLOAT) || H5Sget_simple_extent_npoints(sp) != count) {
        rc = -2;
        goto done;
    }
    if (H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0) rc = 0;
done:
    an_h5_close(&ft);
    an_h5_close(&sp);
    an_h5_close(&a);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

static int write_attr(hid_t loc, const char *name, hid_t type, hid_t space, const void *data)
{
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t e = H5Awrite(a, type, data);
    herr_t c = H5Aclose(a);
    return e < 0 || c < 0 ? -1 : 0;
}

/* Strings of one fixed length, null padded (numpy's 'S' strings, as Keras 1
 * with h5py 2 wrote them), in character set `cset`: a scalar when n < 0;
 * n = 0: an empty list as h5py writes [] (float64, shape (0,)). Never
 * variable-length: those live in HDF5's global heap, whose reader in
 * libhdf5 1.10 crashes on a damaged heap entry, so the package's files
 * carry none. */
static int write_strings_attr(hid_t loc, const char *name, const char *const *s, int n, H5T_cset_t cset)
{
    hsize_t dim = n < 0 ? 1 : (hsize_t)n;
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    if (n == 0) {
        hid_t a = sp >= 0 ? H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
        int rc = a >= 0 && H5Aclose(a) >= 0 ? 0 : -1;
        an_h5_close(&sp);
        return rc;
    }
    int count = n < 0 ? 1 : n;
    size_t len = 1;
    for (int i = 0; i < count; i++)
        if (strlen(s[i]) > len) len = strlen(s[i]);
    char *buf = calloc((size_t)count, len);
    hid_t t = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (buf && t >= 0 && sp >= 0 && H5Tset_size(t, len) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0 &&
        H5Tset_cset(t, cset) >= 0) {
        for (int i = 0; i < count; i++) memcpy(buf + (size_t)i * len, s[i], strlen(s[i]));
        rc = write_attr(loc, name, t, sp, buf);
    }
    free(buf);
    an_h5_close(&t);
    an_h5_close(&sp);
    return rc;
}

/* A float dataset stored as one chunk with HDF5's Fletcher-32 checksum,
 * which every read verifies: a flipped byte is an error, never other
 * weights. */
static hid_t create_checked_dataset(hid_t g, const char *name, hid_t space, int ndims, const hsize_t *dims)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), d = -1;
    if (dcpl >= 0 && H5Pset_chunk(dcpl, ndims, dims) >= 0 && H5Pset_fletcher32(dcpl) >= 0)
        d = H5Dcreate2(g, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    an_h5_close(&dcpl);
    return d;
}

static int write_numbers_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                              const void *data, int n)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    int rc = sp >= 0 ? 0 : -1;
    if (rc == 0) {
        hid_t a = H5Acreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
        rc = a >= 0 && H5Awrite(a, mem_type, data) >= 0 ? 0 : -1;
        if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    }
    an_h5_close(&sp);
    return rc;
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    const char *path;
    hid_t file, root;               /* root: the group holding the layers */
    an_weights_kind kind;
    int flip;                       /* Keras 1 Theano kernels: flip to cross-correlation */
    char backend[16];
    char **layer_names;             /* Keras: root attribute layer_names */
    int n_layer_names;
    int present[AN_W_N_LAYERS];
    int n_present;
    int format_version, classes;    /* own files */
    int has_mean;
    double mean[3];
    double input_scale[3];          /* own files: (x - mean) * input_scale per channel; 1 when absent */
    int arch;                       /* own files: the variant (an_arch); Heuritech's when absent */
    char **class_names;
    int n_class_names;
} wfile;

static void wfile_close(wfile *f)
{
    an_h5_close(&f->root);
    an_h5_close(&f->file);
    free_strings(f->layer_names, f->n_layer_names);
    free_strings(f->class_names, f->n_class_names);
    f->layer_names = f->class_names = NULL;
    f->n_layer_names = f->n_class_names = 0;
    H5Eclear2(H5E_DEFAULT);
}

typedef struct {
    char *buf;
    size_t size, used;
    int listed;
} name_list;

static herr_t list_name_cb(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    (void)group;
    (void)info;
    name_list *l = data;
    if (l->used < l->size)
        l->used += (size_t)snprintf(l->buf + l->used, l->size - l->used, "%s%s", l->listed ? ", " : "", name);
    return ++l->listed >= 8;   /* 1 stops: eight names are enough for a message */
}

/* "its top-level objects: a, b, c" for messages. In HDF5's native order:
 * H5Lget_name_by_idx in name order builds and frees a table of the links,
 * and on a damaged file HDF5 1.10 frees an invalid pointer there (found by
 * fuzz_weights, see tests/engine/fixtures/regress/); H5Literate in native
 * order reads the links one at a time and fails cleanly instead. */
static void list_top_level(hid_t root, char *buf, size_t size)
{
    H5G_info_t gi;
    buf[0] = '\0';
    if (H5Gget_info(root, &gi) < 0) return;
    if (gi.nlinks == 0) {
        snprintf(buf, size, "it is empty");
        return;
    }
    name_list l = {buf, size, (size_t)snprintf(buf, size, "its top-level objects: "), 0};
    hsize_t at = 0;
    H5Literate(root, H5_INDEX_NAME, H5_ITER_NATIVE, &at, list_name_cb, &l);
    if (l.listed == 0)
        snprintf(buf, size, "%llu top-level objects that cannot be listed", (unsigned long long)gi.nlinks);
    else if (gi.nlinks > (hsize_t)l.listed && l.used < size)
        snprintf(buf + l.used, size - l.used, ", ... (%llu)", (unsigned long long)gi.nlinks);
    H5Eclear2(H5E_DEFAULT);
}

static an_status read_own_header(wfile *f)
{
    double v;
    int rc = read_numbers_attr(f->root, "format_version", &v, 1);
    if (rc != 0)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its format_version attribute is %s",
                       f->path, rc == -1 ? "missing" : "not a number");
    if (v != floor(v) || v < 1)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' has format_version %g, which is not a version of "
                       "this format", f->path, v);
    if (v > AN_WEIGHTS_FORMAT_VERSION)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' has format_version %g: it was written by a newer "
                       "version of alexnet, which this one (format_version %d) cannot read",
                       f->path, v, AN_WEIGHTS_FORMAT_VERSION);
    f->format_version = (int)v;
    rc = read_numbers_attr(f->root, "classes", &v, 1);
    if (rc != 0 || v != floor(v) || v < 1 || v > 1000000)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its classes attribute is %s", f->path,
                       rc == -1 ? "missing" : "not a class count");
    f->classes = (int)v;
    rc = read_numbers_attr(f->root, "mean", f->mean, 3);
    if (rc == 0 && !(isfinite(f->mean[0]) && isfinite(f->mean[1]) && isfinite(f->mean[2]))) rc = -2;
    if (rc == -3) return an_fail(AN_ERR_FORMAT, "weights file '%s': cannot read its mean attribute", f->path);
    if (rc == -2)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its mean attribute is not 3 finite "
                       "numbers", f->path);
    f->has_mean = rc == 0;
    if (!f->has_mean) memcpy(f->mean, IMAGENET_MEAN, sizeof f->mean);
    /* optional: files written before the attribute existed mean scale 1 */
    /* one number (every channel's, as files before per-channel scales) or three */
    rc = read_numbers_attr(f->root, "input_scale", f->input_scale, 1);
    if (rc == -2) rc = read_numbers_attr(f->root, "input_scale", f->input_scale, 3);
    else if (rc == 0) f->input_scale[1] = f->input_scale[2] = f->input_scale[0];
    if (rc == -1) f->input_scale[0] = f->input_scale[1] = f->input_scale[2] = 1;
    else if (rc != 0 || !(f->input_scale[0] > 0 && f->input_scale[1] > 0 && f->input_scale[2] > 0) ||
             !isfinite(f->input_scale[0] + f->input_scale[1] + f->input_scale[2]))
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its input_scale attribute is not 1 or 3 "
                       "positive numbers", f->path);
    char arch[32];
    rc = read_string_attr(f->root, "arch", arch, sizeof arch);
    f->arch = rc == -1 ? AN_ARCH_HEURITECH : rc == 0 ? an_arch_find(arch) : -1;
    if (f->arch < 0)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its arch attribute is not one of "
                       "heuritech, caffe, torchvision", f->path);
    rc = read_strings_attr(f->root, "class_names", &f->class_names, &f->n_class_names);
    if (rc == -2 || rc == -3 || (rc == 0 && f->n_class_names != f->classes))
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its class_names attribute %s",
                       f->path, rc == 0 ? "does not have one name per class" : "cannot be read as strings");
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        htri_t e = H5Lexists(f->root, KLAYERS[k].name, H5P_DEFAULT);
        if (e < 0) {
            char detail[160];
            return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged at layer %s: %s", f->path, KLAYERS[k].name,
                           an_h5_detail(detail));
        }
        f->present[k] = e > 0;
        f->n_present += e > 0;
    }
    H5Eclear2(H5E_DEFAULT);
    /* the classes attribute must agree with dense_3 (its bias has one value per class) */
    if (f->present[AN_W_N_LAYERS - 1]) {
        hid_t d = H5Dopen2(f->root, "dense_3/bias", H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
        hsize_t dims[2] = {0, 0};
        int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (nd == 1) H5Sget_simple_extent_dims(sp, dims, NULL);
        an_h5_close(&sp);
        an_h5_close(&d);
        H5Eclear2(H5E_DEFAULT);
        if (nd == 1 && dims[0] != (hsize_t)f->classes)
            return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its classes attribute says %d but "
                           "dense_3 has %llu classes", f->path, f->classes, (unsigned long long)dims[0]);
    }
    return AN_OK;
}

static an_status read_keras_header(wfile *f)
{
    int rc = read_strings_attr(f->root, "layer_names", &f->layer_names, &f->n_layer_names);
    if (rc != 0)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: its layer_names attribute cannot be "
                       "read as strings", f->path);
    f->backend[0] = '\0';
    if (read_string_attr(f->root, "backend", f->backend, sizeof f->backend) != 0)
        read_string_attr(f->file, "backend", f->backend, sizeof f->backend);
    /* Theano (and files from before Keras recorded the backend) convolve with
     * flipped kernels; TensorFlow's "convolution" is cross-correlation. */
    f->flip = strcmp(f->backend, "tensorflow") != 0;
    for (int k = 0; k < AN_W_N_LAYERS; k++)
        for (int i = 0; i < f->n_layer_names; i++)
            if (strcmp(f->layer_names[i], KLAYERS[k].name) == 0) {
                f->present[k] = 1;
                f->n_present++;
                break;
            }
    return AN_OK;
}

static an_status wfile_open(wfile *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->file = f->root = -1;
    long long bytes;
    an_status readable = an_h5_check_readable(path, "weights file", &bytes);
    if (readable != AN_OK) return readable;
    char detail[160];
#if defined(H5_VERSION_GE) && H5_VERSION_GE(1, 12, 0)
    htri_t is = H5Fis_accessible(path, H5P_DEFAULT);
#else
    htri_t is = H5Fis_hdf5(path);
#endif
    if (is <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return an_fail(AN_ERR_FORMAT, "'%s' is not an HDF5 file (%lld bytes): not a weights file", path,
                       bytes);
    }
    hid_t fapl = file_access_plist();
    f->file = H5Fopen(path, H5F_ACC_RDONLY, fapl < 0 ? H5P_DEFAULT : fapl);
    if (f->file < 0) {
        an_h5_detail(detail);
        an_h5_close(&fapl);
        unsigned long long have, want;
        if (sscanf(detail, "truncated file: eof = %llu, sblock->base_addr = %*u, stored_eof = %llu", &have,
                   &want) == 2)
            return an_fail(AN_ERR_FORMAT, "HDF5 file '%s' is truncated: it has %llu of its %llu bytes (an "
                           "interrupted download or copy?)", path, have, want);
        return an_fail(AN_ERR_FORMAT, "cannot open HDF5 file '%s' (%lld bytes), it is damaged: %s", path,
                       bytes, detail);
    }
    an_h5_close(&fapl);
    if ((f->root = H5Gopen2(f->file, "/", H5P_DEFAULT)) < 0)
        return an_fail(AN_ERR_FORMAT, "cannot read HDF5 file '%s', it is damaged: %s", path, an_h5_detail(detail));
    char format[32] = "";
    if (read_string_attr(f->root, "format", format, sizeof format) == 0 && strcmp(format, "alexnet") == 0) {
        f->kind = AN_WEIGHTS_OWN;
        return read_own_header(f);
    }
    if (H5Aexists(f->root, "layer_names") <= 0 && H5Lexists(f->root, "model_weights", H5P_DEFAULT) > 0) {
        /* a Keras model file: the weights are under /model_weights */
        hid_t g = external_link(f->root, "model_weights") ? -1 : H5Gopen2(f->root, "model_weights", H5P_DEFAULT);
        if (g >= 0 && H5Aexists(g, "layer_names") > 0) {
            an_h5_close(&f->root);
            f->root = g;
        } else {
            an_h5_close(&g);
        }
    }
    H5Eclear2(H5E_DEFAULT);
    if (H5Aexists(f->root, "layer_names") > 0) {
        f->kind = AN_WEIGHTS_KERAS1;
        return read_keras_header(f);
    }
    H5Eclear2(H5E_DEFAULT);
    char top[256];
    list_top_level(f->root, top, sizeof top);
    return an_fail(AN_ERR_FORMAT, "HDF5 file '%s' holds no AlexNet weights: it has neither a Keras "
                   "layer_names attribute nor format = \"alexnet\" (%s)", path, top);
}

/* "none of the layers conv_1, ..., dense_3" */
static an_status no_known_layers(const wfile *f)
{
    char have[200] = "";
    if (f->kind == AN_WEIGHTS_KERAS1) {
        size_t used = (size_t)snprintf(have, sizeof have, "; its layers: %s", f->n_layer_names ? "" : "none");
        for (int i = 0; i < f->n_layer_names && i < 8 && used < sizeof have; i++)
            used += (size_t)snprintf(have + used, sizeof have - used, "%s%s", i ? ", " : "", f->layer_names[i]);
        if (f->n_layer_names > 8 && used < sizeof have) snprintf(have + used, sizeof have - used, ", ...");
    }
    return an_fail(AN_ERR_FORMAT, "weights file '%s' holds none of AlexNet's layers (conv_1, conv_2_1, ..., "
                   "dense_3)%s", f->path, have);
}

/* One dataset of a layer: opened, its float class and shape checked. */
typedef struct {
    hid_t d;
    int ndims;
    hsize_t dims[8];
} dset;

/* IEEE half, single or double precision in either byte order: what numpy,
 * h5py and Keras write. Anything else of the float class (a damaged type
 * message, an exotic layout) is refused before HDF5 converts it. */
static int ieee_float(hid_t t)
{
    size_t size = H5Tget_size(t), spos, epos, esize, mpos, msize;
    if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0) return 0;
    if (H5Tget_precision(t) != 8 * size || H5Tget_offset(t) != 0 || mpos != 0) return 0;
    switch (size) {
    case 2: return spos == 15 && epos == 10 && esize == 5 && msize == 10;
    case 4: return spos == 31 && epos == 23 && esize == 8 && msize == 23;
    case 8: return spos == 63 && epos == 52 && esize == 11 && msize == 52;
    default: return 0;
    }
}

/* Opens `name` in group g. Returns AN_OK (d->d >= 0) or a failure naming the layer. */
static an_status open_dataset(const wfile *f, int k, hid_t g, const char *name, dset *d)
{
    char detail[160];
    d->d = -1;
    d->ndims = 0;
    if (external_link(g, name))
        return an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: dataset '%s' is a link to another file, "
                       "which is not followed", f->path, KLAYERS[k].name, name);
    /* not there, or there but unreadable: missing, or damaged at it */
    htri_t e = H5Lexists(g, name, H5P_DEFAULT);
    if (e == 0) {
        H5Eclear2(H5E_DEFAULT);
        return an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: dataset '%s' is missing", f->path,
                       KLAYERS[k].name, name);
    }
    if (e < 0 || (d->d = H5Dopen2(g, name, H5P_DEFAULT)) < 0)
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged at layer %s, dataset '%s': %s", f->path,
                       KLAYERS[k].name, name, an_h5_detail(detail));
    hid_t sp = H5Dget_space(d->d), t = H5Dget_type(d->d);
    an_status s = AN_OK;
    if (sp < 0 || t < 0) {
        s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: cannot read dataset '%s': %s", f->path,
                    KLAYERS[k].name, name, an_h5_detail(detail));
    } else if (H5Tget_class(t) != H5T_FLOAT) {
        s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: dataset '%s' does not hold floating-point "
                    "numbers", f->path, KLAYERS[k].name, name);
    } else if (!ieee_float(t)) {
        s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: dataset '%s' holds %zu-byte floating-point "
                    "numbers of a layout other than IEEE half, single or double precision", f->path,
                    KLAYERS[k].name, name, H5Tget_size(t));
    } else {
        int nd = H5Sget_simple_extent_ndims(sp);
        if (nd < 0 || nd > 8) {
            s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: dataset '%s' has %d dimensions", f->path,
                        KLAYERS[k].name, name, nd);
        } else {
            d->ndims = nd;
            H5Sget_simple_extent_dims(sp, d->dims, NULL);
        }
    }
    an_h5_close(&t);
    an_h5_close(&sp);
    if (s != AN_OK) an_h5_close(&d->d);
    return s;
}

static int dims_equal(const dset *d, int ndims, const hsize_t *dims)
{
    if (d->ndims != ndims) return 0;
    for (int i = 0; i < ndims; i++)
        if (d->dims[i] != dims[i]) return 0;
    return 1;
}

/* The first filter (compression, ...) a dataset needs that this libhdf5
 * does not have: 1 with its id and name, else 0. */
static int missing_filter(hid_t d, int *id, char *name, size_t size)
{
    hid_t plist = H5Dget_create_plist(d);
    int n = plist >= 0 ? H5Pget_nfilters(plist) : 0, found = 0;
    for (int i = 0; i < n && !found; i++) {
        unsigned flags = 0, config = 0;
        size_t n_values = 0;
        name[0] = '\0';
        H5Z_filter_t f = H5Pget_filter2(plist, (unsigned)i, &flags, &n_values, NULL, size, name, &config);
        if (f >= 0 && H5Zfilter_avail(f) <= 0) {
            *id = (int)f;
            found = 1;
        }
    }
    an_h5_close(&plist);
    H5Eclear2(H5E_DEFAULT);
    return found;
}

static an_status read_floats(const wfile *f, int k, const char *name, hid_t d, float *dst)
{
    char detail[160], filter[64];
    int filter_id = 0;
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) >= 0) return AN_OK;
    an_h5_detail(detail);
    if (missing_filter(d, &filter_id, filter, sizeof filter))
        return an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: dataset '%s' is stored with HDF5 filter %d "
                       "(%s), which this libhdf5 does not have; re-save it without that compression",
                       f->path, KLAYERS[k].name, name, filter_id, filter[0] ? filter : "unnamed");
    if (strstr(detail, "checksum"))
        return an_fail(AN_ERR_FORMAT, "weights file '%s' is damaged: layer %s, dataset '%s' fails its checksum "
                       "(bytes changed since it was saved)", f->path, KLAYERS[k].name, name);
    return an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: cannot read dataset '%s' (damaged file?): %s",
                   f->path, KLAYERS[k].name, name, detail);
}

/* (out, in, kh, kw) true-convolution kernels -> cross-correlation: flipping
 * both spatial axes of a row-major kh x kw plane reverses it. */
static void flip_kernels(const float *src, float *dst, size_t planes, size_t plane)
{
    for (size_t p = 0; p < planes; p++) {
        const float *s = src + p * plane;
        float *d = dst + p * plane;
        for (size_t j = 0; j < plane; j++) d[j] = s[plane - 1 - j];
    }
}

/* src (rows, cols) -> dst (cols, rows) */
static void transpose(const float *src, float *dst, size_t rows, size_t cols)
{
    const size_t T = 32;
    for (size_t r0 = 0; r0 < rows; r0 += T)
        for (size_t c0 = 0; c0 < cols; c0 += T) {
            size_t r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
            for (size_t c = c0; c < c1; c++)
                for (size_t r = r0; r < r1; r++) dst[c * rows + r] = src[r * cols + c];
        }
}

/* Read Keras layer k into a fresh *values (its kernel, then its bias, in the
 * net's layout), allocated only once the layer's datasets have passed every
 * check: a damaged file or a strict load that fails costs no memory. */
static an_status read_layer(const wfile *f, const an_net *net, int k, int by_name, float **values,
                            an_weights_report *rep)
{
    const char *lname = KLAYERS[k].name;
    klayer_geom geo = geometry(net, k);
    const an_param_layer *L = an_net_param_layer(net, KLAYERS[k].param);
    hsize_t bdim = (hsize_t)geo.b_count;
    char want_w[64], want_b[64], got_w[64] = "", got_b[64] = "", detail[160];
    const hsize_t *wdims = f->kind == AN_WEIGHTS_OWN ? geo.own : geo.keras;
    format_dims(want_w, sizeof want_w, geo.ndims, wdims);
    format_dims(want_b, sizeof want_b, 1, &bdim);

    if (!f->present[k]) {
        if (!by_name)
            return an_fail(AN_ERR_FORMAT, "weights file '%s' has no layer %s (with by_name the net would keep "
                           "its own)", f->path, lname);
        rep->state[k] = AN_WEIGHTS_MISSING;
        rep->n_missing++;
        return AN_OK;
    }
    an_status s = AN_OK;
    int external = external_link(f->root, lname);
    hid_t g = external ? -1 : H5Gopen2(f->root, lname, H5P_DEFAULT);
    dset w = {-1, 0, {0}}, b = {-1, 0, {0}};
    char **names = NULL;
    int n_names = 0;
    float *tmp = NULL;
    if (external) {
        s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: its group is a link to another file, which "
                    "is not followed", f->path, lname);
        goto done;
    }
    if (g < 0) {
        s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: listed in layer_names but its group cannot be "
                    "opened (damaged file?): %s", f->path, lname, an_h5_detail(detail));
        goto done;
    }
    const char *wname = "weight", *bname = "bias";
    char wbuf[64], bbuf[64];
    if (f->kind == AN_WEIGHTS_KERAS1) {
        int rc = read_strings_attr(g, "weight_names", &names, &n_names);
        if (rc == -1) {
            /* no weight_names: Keras 1's own naming */
            snprintf(wbuf, sizeof wbuf, "%s_W", lname);
            snprintf(bbuf, sizeof bbuf, "%s_b", lname);
            wname = wbuf;
            bname = bbuf;
        } else if (rc != 0) {
            s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: its weight_names attribute cannot be read "
                        "as strings", f->path, lname);
            goto done;
        } else if (n_names != 2) {
            snprintf(got_w, sizeof got_w, "%d weights", n_names);
            if (!by_name) {
                s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: has %d weights, the net needs 2 (kernel "
                            "%s and bias %s)", f->path, lname, n_names, want_w, want_b);
                goto done;
            }
            goto kept;
        } else {
            wname = names[0];
            bname = names[1];
        }
    }
    if ((s = open_dataset(f, k, g, wname, &w)) != AN_OK || (s = open_dataset(f, k, g, bname, &b)) != AN_OK)
        goto done;
    format_dims(got_w, sizeof got_w, w.ndims, w.dims);
    format_dims(got_b, sizeof got_b, b.ndims, b.dims);
    if (!dims_equal(&w, geo.ndims, wdims) || !dims_equal(&b, 1, &bdim)) {
        if (!by_name) {
            s = an_fail(AN_ERR_FORMAT, "weights file '%s', layer %s: %s '%s' has shape %s and %s '%s' %s; "
                        "the net needs %s and %s%s", f->path, lname,
                        "kernel", wname, got_w, "bias", bname, got_b, want_w, want_b,
                        k == AN_W_DENSE_3 ? " (another number of classes? by_name keeps the net's own dense_3)" : "");
            goto done;
        }
        goto kept;
    }
    if (!(*values = malloc((geo.w_count + geo.b_count) * sizeof **values))) {
        s = an_fail(AN_ERR_MEMORY, "out of memory (%.0f MB) reading layer %s of '%s'",
                    (geo.w_count + geo.b_count) * 4.0 / 1e6, lname, f->path);
        goto done;
    }
    float *dst_w = *values;
    if (f->kind == AN_WEIGHTS_OWN || (L->is_conv && !f->flip)) {
        s = read_floats(f, k, wname, w.d, dst_w);
    } else {
        if (!(tmp = malloc(geo.w_count * sizeof *tmp))) {
            s = an_fail(AN_ERR_MEMORY, "out of memory reading layer %s of '%s'", lname, f->path);
            goto done;
        }
        s = read_floats(f, k, wname, w.d, tmp);
        if (s == AN_OK && L->is_conv)
            flip_kernels(tmp, dst_w, (size_t)(wdims[0] * wdims[1]), (size_t)(wdims[2] * wdims[3]));
        else if (s == AN_OK)
            transpose(tmp, dst_w, (size_t)wdims[0], (size_t)wdims[1]);
    }
    if (s == AN_OK) s = read_floats(f, k, bname, b.d, *values + geo.w_count);
    if (s == AN_OK) {
        rep->state[k] = AN_WEIGHTS_LOADED;
        rep->n_loaded++;
    }
    goto done;
kept:
    rep->state[k] = AN_WEIGHTS_KEPT;
    rep->n_kept++;
    if (got_b[0])
        snprintf(rep->file_shape[k], sizeof rep->file_shape[k], "W %s, b %s", got_w, got_b);
    else
        snprintf(rep->file_shape[k], sizeof rep->file_shape[k], "%s", got_w);
done:
    free(tmp);
    free_strings(names, n_names);
    an_h5_close(&w.d);
    an_h5_close(&b.d);
    an_h5_close(&g);
    H5Eclear2(H5E_DEFAULT);
    return s;
}

/* A file's weights belong to one variant: Caffe's and Heuritech's have the
 * same shapes but not the same graph, so shapes alone cannot tell. */
static an_status same_arch(const wfile *f, const an_net *net)
{
    int file_arch = f->kind == AN_WEIGHTS_OWN ? f->arch : AN_ARCH_HEURITECH;
    if (file_arch == (int)an_net_arch(net)) return AN_OK;
    return an_fail(AN_ERR_FORMAT, "weights file '%s' holds %s%s weights, but the net is the %s variant: "
                   "create the net from the file (alexnet(weights = ...))", f->path,
                   f->kind == AN_WEIGHTS_KERAS1 ? "Keras 1 (Heuritech) " : "", an_arch_name((an_arch)file_arch),
                   an_arch_name(an_net_arch(net)));
}

/* Other frameworks' files are told from HDF5 by their first bytes and read
 * by foreign.c; *kind says which (AN_FILE_HDF5: read here). */
static an_status sniff(const char *path, an_file_kind *kind)
{
    an_status s = an_file_sniff(path, kind);
    if (s == AN_OK && *kind == AN_FILE_UNKNOWN) *kind = AN_FILE_HDF5;
    return s;
}

/* ---------------------------------------------------------------- loading */

/* What a load takes from the file besides the layers' values. */
typedef struct {
    an_weights_report rep;
    int has_mean;                   /* own files with a mean: set the net's mean and input scales */
    double mean[3], input_scale[3];
} load_facts;

/* Takes layer k's values (kernel then bias, in the net's layout; `count`
 * floats) as the read produces them, and owns them. */
typedef an_status (*layer_sink)(void *ctx, int k, float *values, size_t count);

/* Everything libhdf5 does for a load: the header, the checks against the
 * net's shapes, every matching layer's values (to `sink`). The net is only
 * read. This is the part that runs in the child process. */
static an_status read_for_load(const an_net *net, const char *path, int by_name, layer_sink sink, void *sink_ctx,
                               load_facts *facts)
{
    memset(facts, 0, sizeof *facts);
    an_h5_quiet q;
    an_h5_quiet_begin(&q);
    wfile f;
    an_status s = wfile_open(&f, path);
    if (s == AN_OK && f.n_present == 0) s = no_known_layers(&f);
    if (s == AN_OK) s = same_arch(&f, net);
    if (s == AN_OK) facts->rep.kind = f.kind;
    for (int k = 0; k < AN_W_N_LAYERS && s == AN_OK; k++) {
        float *values = NULL;
        s = read_layer(&f, net, k, by_name, &values, &facts->rep);
        if (s == AN_OK && values) {
            klayer_geom geo = geometry(net, k);
            s = sink(sink_ctx, k, values, geo.w_count + geo.b_count);
        } else {
            free(values);
        }
    }
    if (s == AN_OK && facts->rep.n_loaded == 0)
        s = an_fail(AN_ERR_FORMAT, "weights file '%s': no layer matches the net's shapes (all %d kept)", path,
                    facts->rep.n_kept);
    if (s == AN_OK && f.kind == AN_WEIGHTS_OWN && f.has_mean) {
        facts->has_mean = 1;
        memcpy(facts->mean, f.mean, sizeof facts->mean);
        memcpy(facts->input_scale, f.input_scale, sizeof facts->input_scale);
    }
    wfile_close(&f);
    an_h5_quiet_end(&q);
    if (s != AN_OK) memset(facts, 0, sizeof *facts);
    return s;
}

/* Everything read: the net takes it (the parent's part). */
static void commit(an_net *net, float *const values[AN_W_N_LAYERS], load_facts *facts)
{
    float *p = an_net_params(net);
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        if (facts->rep.state[k] != AN_WEIGHTS_LOADED) continue;
        klayer_geom geo = geometry(net, k);
        memcpy(p + geo.w_off, values[k], geo.w_count * sizeof *p);
        memcpy(p + geo.b_off, values[k] + geo.w_count, geo.b_count * sizeof *p);
    }
    an_net_params_changed(net);
    if (facts->has_mean) {
        float m[3] = {(float)facts->mean[0], (float)facts->mean[1], (float)facts->mean[2]};
        an_net_set_mean(net, m);
        facts->rep.mean_loaded = 1;
        an_net_set_input_scales(net, (const float[3]){(float)facts->input_scale[0], (float)facts->input_scale[1],
                                                      (float)facts->input_scale[2]});
    }
    /* Keras 1 files (Heuritech's) were trained on pixel - mean: their
     * weights bring that convention with them, as own files bring theirs */
    if (facts->rep.kind == AN_WEIGHTS_KERAS1) an_net_set_input_scale(net, 1.0f);
}

static an_status keep_layer(void *ctx, int k, float *values, size_t count)
{
    (void)count;
    float **kept = ctx;
    kept[k] = values;
    return AN_OK;
}

#if AN_HAVE_ISOLATION
/* The records a reading child sends (isolate.h). */
enum { REC_LAYER = 1, REC_LOAD_FACTS, REC_INFO, REC_CLASS_NAMES };

/* How the isolation's own failures are worded (isolate.h). */
static an_isolated_names child_names(const char *path, const char *outcome)
{
    return (an_isolated_names){"weights file", path, "the HDF5 library", outcome};
}

typedef struct {
    const an_net *net;              /* the child reads it, the parent checks sizes against it */
    const char *path;
    int by_name;
    float **values;                 /* parent: each received layer */
    load_facts *facts;
    int have_facts;
} load_job;

static an_status send_layer(void *ctx, int k, float *values, size_t count)
{
    int bad = an_isolated_send(ctx, REC_LAYER, (uint32_t)k, values, count * sizeof *values);
    free(values);
    return bad ? an_fail(AN_ERR_IO, "the parent process is gone") : AN_OK;
}

static an_status load_child(an_isolated *to_parent, void *ctx)
{
    const load_job *job = ctx;
    load_facts facts;
    an_status s = read_for_load(job->net, job->path, job->by_name, send_layer, to_parent, &facts);
    if (s == AN_OK && an_isolated_send(to_parent, REC_LOAD_FACTS, 0, &facts, sizeof facts) != 0)
        s = an_fail(AN_ERR_IO, "the parent process is gone");
    return s;
}

/* Each record must be one the load expects, of its exact size, once. */
static an_status load_place(void *ctx, uint32_t tag, uint32_t index, uint64_t bytes, void **dst)
{
    load_job *job = ctx;
    if (tag == REC_LAYER && index < AN_W_N_LAYERS && !job->values[index]) {
        klayer_geom geo = geometry(job->net, (int)index);
        if (bytes == (geo.w_count + geo.b_count) * sizeof(float)) {
            if (!(*dst = job->values[index] = malloc(bytes)))
                return an_fail(AN_ERR_MEMORY, "out of memory (%.0f MB) reading layer %s of '%s'", bytes / 1e6,
                               KLAYERS[index].name, job->path);
            return AN_OK;
        }
    } else if (tag == REC_LOAD_FACTS && bytes == sizeof *job->facts && !job->have_facts) {
        job->have_facts = 1;
        *dst = job->facts;
        return AN_OK;
    }
    return an_fail(AN_ERR_FORMAT, "weights file '%s': the process reading it sent an unexpected record (%u, %u, "
                   "%llu bytes); nothing was loaded", job->path, tag, index, (unsigned long long)bytes);
}

/* The child's account must agree with what it sent and with the rules of a load. */
static an_status check_load_facts(const load_job *job)
{
    const load_facts *f = job->facts;
    const an_weights_report *r = &f->rep;
    int ok = job->have_facts && (r->kind == AN_WEIGHTS_OWN || r->kind == AN_WEIGHTS_KERAS1) && !r->mean_loaded;
    int counts[3] = {0, 0, 0};
    for (int k = 0; k < AN_W_N_LAYERS && ok; k++) {
        int state = (int)r->state[k];
        ok = state >= 0 && state < 3 && (state == AN_WEIGHTS_LOADED) == (job->values[k] != NULL) &&
             memchr(r->file_shape[k], '\0', sizeof r->file_shape[k]) != NULL;
        if (ok) counts[state]++;
    }
    ok = ok && counts[0] == r->n_loaded && counts[1] == r->n_kept && counts[2] == r->n_missing && r->n_loaded >= 1 &&
         (job->by_name || r->n_loaded == AN_W_N_LAYERS) && (f->has_mean == 0 || f->has_mean == 1);
    for (int c = 0; c < 3 && ok && f->has_mean; c++)
        ok = r->kind == AN_WEIGHTS_OWN && isfinite(f->mean[c]) && isfinite(f->input_scale[c]) && f->input_scale[c] > 0;
    if (ok) return AN_OK;
    return an_fail(AN_ERR_FORMAT, "weights file '%s': the process reading it sent an inconsistent result; nothing "
                   "was loaded", job->path);
}

/* The read in a child process: a file that crashes or hangs libhdf5 costs
 * the child, never this process. */
static an_status read_isolated_for_load(const an_net *net, const char *path, int by_name,
                                        float *values[AN_W_N_LAYERS], load_facts *facts)
{
    load_job job = {net, path, by_name, values, facts, 0};
    memset(facts, 0, sizeof *facts);
    an_isolated_names names = child_names(path, "nothing was loaded");
    an_status s = an_isolated_run(&names, load_child, &job, load_place, &job);
    if (s == AN_OK) s = check_load_facts(&job);
    return s;
}
#endif

static an_status load(an_net *net, const char *path, int by_name, an_weights_report *report, int isolated)
{
    if (report) memset(report, 0, sizeof *report);
    if (!net) return an_fail(AN_ERR_ARGUMENT, "no network to load weights into");
    if (!path || !path[0]) return an_fail(AN_ERR_ARGUMENT, "no weights file named");
    an_file_kind kind;
    an_status fs = sniff(path, &kind);
    if (fs != AN_OK) return fs;
    if (kind != AN_FILE_HDF5) return an_foreign_load(net, path, kind, by_name, report);
    float *values[AN_W_N_LAYERS] = {NULL};   /* each loaded layer's, until the commit */
    load_facts facts;
    an_status s;
#if AN_HAVE_ISOLATION
    if (isolated)
        s = read_isolated_for_load(net, path, by_name, values, &facts);
    else
#endif
        s = read_for_load(net, path, by_name, keep_layer, values, &facts);
    (void)isolated;
    if (s == AN_OK) {
        commit(net, values, &facts);
        if (report) *report = facts.rep;
    }
    for (int k = 0; k < AN_W_N_LAYERS; k++) free(values[k]);
    return s;
}

an_status an_weights_load(an_net *net, const char *path, int by_name, an_weights_report *report)
{
    return load(net, path, by_name, report, 1);
}

an_status an_weights_load_in_process(an_net *net, const char *path, int by_name, an_weights_report *report)
{
    return load(net, path, by_name, report, 0);
}

/* ---------------------------------------------------------------- describing */

/* Everything libhdf5 does for a description (the part that runs in the child). */
static an_status read_for_info(const char *path, an_weights_file_info *info)
{
    an_h5_quiet q;
    an_h5_quiet_begin(&q);
    wfile f;
    an_status s = wfile_open(&f, path);
    if (s == AN_OK && f.n_present == 0) s = no_known_layers(&f);
    if (s == AN_OK) {
        info->kind = f.kind;
        memcpy(info->present, f.present, sizeof info->present);
        if (f.kind == AN_WEIGHTS_OWN) {
            info->format_version = f.format_version;
            info->classes = f.classes;
            info->has_mean = f.has_mean;
            memcpy(info->mean, f.mean, sizeof info->mean);
            memcpy(info->input_scale, f.input_scale, sizeof info->input_scale);
            info->arch = f.arch;
            info->class_names = f.class_names;      /* handed over */
            f.class_names = NULL;
            f.n_class_names = 0;
        } else {
            memcpy(info->mean, IMAGENET_MEAN, sizeof info->mean);
            info->input_scale[0] = info->input_scale[1] = info->input_scale[2] = 1;
            info->arch = AN_ARCH_HEURITECH;
            snprintf(info->backend, sizeof info->backend, "%s", f.backend);
            /* classes: the outputs of dense_3's kernel (in, out), or its bias length */
            if (f.present[AN_W_DENSE_3]) {
                hid_t g = external_link(f.root, "dense_3") ? -1 : H5Gopen2(f.root, "dense_3", H5P_DEFAULT);
                char **names = NULL;
                int n = 0;
                int rc = g >= 0 ? read_strings_attr(g, "weight_names", &names, &n) : -3;
                const char *bias = rc == 0 && n >= 2 ? names[1] : rc == -1 ? "dense_3_b" : NULL;
                if (bias) {
                    dset d;
                    if (open_dataset(&f, AN_W_DENSE_3, g, bias, &d) == AN_OK) {
                        if (d.ndims == 1 && d.dims[0] <= 1000000) info->classes = (int)d.dims[0];
                        an_h5_close(&d.d);
                    }
                }
                free_strings(names, n);
                an_h5_close(&g);
                H5Eclear2(H5E_DEFAULT);
            }
        }
    }
    wfile_close(&f);
    an_h5_quiet_end(&q);
    return s;
}

#if AN_HAVE_ISOLATION
/* class names travel as one block of `classes` NUL-terminated strings, at most this long */
#define MAX_NAMES_BYTES ((uint64_t)1 << 28)

typedef struct {
    const char *path;
    an_weights_file_info *info;     /* parent: the received description */
    int have_info;
    char *names;                    /* parent: the received class names */
    uint64_t names_bytes;
} info_job;

static an_status info_child(an_isolated *to_parent, void *ctx)
{
    const info_job *job = ctx;
    an_weights_file_info info;
    memset(&info, 0, sizeof info);
    an_status s = read_for_info(job->path, &info);
    size_t bytes = 0;
    for (int i = 0; s == AN_OK && info.class_names && i < info.classes; i++) bytes += strlen(info.class_names[i]) + 1;
    char *block = s == AN_OK && info.class_names && bytes <= MAX_NAMES_BYTES ? malloc(bytes) : NULL;
    if (s == AN_OK && info.class_names && bytes > MAX_NAMES_BYTES)
        s = an_fail(AN_ERR_FORMAT, "weights file '%s': its class names take %.0f MB, more than the %.0f MB "
                    "allowed", job->path, bytes / 1e6, MAX_NAMES_BYTES / 1e6);
    else if (s == AN_OK && info.class_names && !block)
        s = an_fail(AN_ERR_MEMORY, "out of memory reading the class names of '%s'", job->path);
    if (block) {
        size_t at = 0;
        for (int i = 0; i < info.classes; i++) {
            size_t len = strlen(info.class_names[i]) + 1;
            memcpy(block + at, info.class_names[i], len);
            at += len;
        }
    }
    if (s == AN_OK && (an_isolated_send(to_parent, REC_INFO, 0, &info, sizeof info) != 0 ||
                       (block && an_isolated_send(to_parent, REC_CLASS_NAMES, 0, block, bytes) != 0)))
        s = an_fail(AN_ERR_IO, "the parent process is gone");
    free(block);
    an_weights_info_free(&info);
    return s;
}

static an_status info_place(void *ctx, uint32_t tag, uint32_t index, uint64_t bytes, void **dst)
{
    info_job *job = ctx;
    if (tag == REC_INFO && index == 0 && bytes == sizeof *job->info && !job->have_info) {
        job->have_info = 1;
        *dst = job->info;
        return AN_OK;
    }
    if (tag == REC_CLASS_NAMES && index == 0 && bytes > 0 && bytes <= MAX_NAMES_BYTES && !job->names) {
        if (!(*dst = job->names = malloc(bytes)))
            return an_fail(AN_ERR_MEMORY, "out of memory (%.0f MB) reading the class names of '%s'", bytes / 1e6,
                           job->path);
        job->names_bytes = bytes;
        return AN_OK;
    }
    return an_fail(AN_ERR_FORMAT, "weights file '%s': the process reading it sent an unexpected record (%u, %u, "
                   "%llu bytes)", job->path, tag, index, (unsigned long long)bytes);
}

/* The child's description must be one read_for_info can produce; its class
 * names become the caller's (`classes` strings from the block). */
static an_status take_info(info_job *job)
{
    an_weights_file_info *info = job->info;
    int names_sent = info->class_names != NULL;     /* the child's pointer: only whether it had names */
    info->class_names = NULL;
    int ok = job->have_info && (info->kind == AN_WEIGHTS_OWN || info->kind == AN_WEIGHTS_KERAS1) &&
             info->classes >= 0 && info->classes <= 1000000 && info->arch >= AN_ARCH_HEURITECH &&
             info->arch <= AN_ARCH_TORCHVISION && (info->has_mean == 0 || info->has_mean == 1) &&
             memchr(info->backend, '\0', sizeof info->backend) != NULL && names_sent == (job->names != NULL);
    for (int k = 0; k < AN_W_N_LAYERS && ok; k++) ok = info->present[k] == 0 || info->present[k] == 1;
    for (int c = 0; c < 3 && ok; c++)
        ok = isfinite(info->mean[c]) && isfinite(info->input_scale[c]) && info->input_scale[c] > 0;
    /* exactly `classes` strings, the last one ending the block */
    if (ok && job->names) {
        uint64_t ends = 0;
        for (uint64_t i = 0; i < job->names_bytes; i++) ends += job->names[i] == '\0';
        ok = info->classes > 0 && ends == (uint64_t)info->classes && job->names[job->names_bytes - 1] == '\0';
    }
    if (!ok)
        return an_fail(AN_ERR_FORMAT, "weights file '%s': the process reading it sent an inconsistent "
                       "description", job->path);
    if (!job->names) return AN_OK;
    if (!(info->class_names = calloc((size_t)info->classes, sizeof *info->class_names)))
        return an_fail(AN_ERR_MEMORY, "out of memory reading the class names of '%s'", job->path);
    const char *at = job->names;
    for (int i = 0; i < info->classes; i++) {
        if (!(info->class_names[i] = strdup(at)))
            return an_fail(AN_ERR_MEMORY, "out of memory reading the class names of '%s'", job->path);
        at += strlen(at) + 1;
    }
    return AN_OK;
}

static an_status read_isolated_for_info(const char *path, an_weights_file_info *info)
{
    info_job job = {path, info, 0, NULL, 0};
    an_isolated_names names = child_names(path, NULL);
    an_status s = an_isolated_run(&names, info_child, &job, info_place, &job);
    if (s == AN_OK) s = take_info(&job);
    else info->class_names = NULL;          /* whatever arrived is not ours to free */
    free(job.names);
    return s;
}
#endif

static an_status info(const char *path, an_weights_file_info *info, int isolated)
{
    if (!info) return an_fail(AN_ERR_ARGUMENT, "no place for the weights file's description");
    memset(info, 0, sizeof *info);
    if (!path || !path[0]) return an_fail(AN_ERR_ARGUMENT, "no weights file named");
    an_file_kind kind;
    an_status fs = sniff(path, &kind);
    if (fs != AN_OK) return fs;
    if (kind != AN_FILE_HDF5) return an_foreign_info(path, kind, info);
    an_status s;
#if AN_HAVE_ISOLATION
    if (isolated)
        s = read_isolated_for_info(path, info);
    else
#endif
        s = read_for_info(path, info);
    (void)isolated;
    if (s != AN_OK) {
        an_weights_info_free(info);
        memset(info, 0, sizeof *info);
    }
    return s;
}

an_status an_weights_info(const char *path, an_weights_file_info *out) { return info(path, out, 1); }

an_status an_weights_info_in_process(const char *path, an_weights_file_info *out) { return info(path, out, 0); }

void an_weights_set_read_timeout(double seconds) { an_isolated_set_timeout(seconds); }

void an_weights_info_free(an_weights_file_info *info)
{
    if (!info) return;
    free_strings(info->class_names, info->class_names ? info->classes : 0);
    info->class_names = NULL;
}

/* ---------------------------------------------------------------- saving */

static an_status write_contents(const an_net *net, hid_t file, const char *path,
                                const char *const *class_names)
{
    char detail[160];
    const char *what = "the file attributes";
    int classes = an_net_classes(net);
    int version = AN_WEIGHTS_FORMAT_VERSION;
    float fmean[3];
    an_net_get_mean(net, fmean);
    double mean[3] = {fmean[0], fmean[1], fmean[2]};
    float fscale[3];
    an_net_get_input_scales(net, fscale);
    double input_scale[3] = {fscale[0], fscale[1], fscale[2]};
    const char *format = "alexnet", *arch = an_arch_name(an_net_arch(net));
    const char *layers[AN_W_N_LAYERS];
    for (int k = 0; k < AN_W_N_LAYERS; k++) layers[k] = KLAYERS[k].name;
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    int bad = root < 0 ||
              write_strings_attr(root, "format", &format, -1, H5T_CSET_UTF8) < 0 ||
              write_numbers_attr(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, &version, -1) < 0 ||
              write_numbers_attr(root, "classes", H5T_STD_I32LE, H5T_NATIVE_INT, &classes, -1) < 0 ||
              (class_names && write_strings_attr(root, "class_names", class_names, classes, H5T_CSET_UTF8) < 0) ||
              write_numbers_attr(root, "mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, mean, 3) < 0 ||
              write_numbers_attr(root, "input_scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, input_scale, 3) < 0 ||
              write_strings_attr(root, "arch", &arch, -1, H5T_CSET_UTF8) < 0 ||
              write_strings_attr(root, "layers", layers, AN_W_N_LAYERS, H5T_CSET_UTF8) < 0 ||
              write_strings_attr(root, "layout", &LAYOUT, -1, H5T_CSET_UTF8) < 0;
    if (bad) an_h5_detail(detail);
    an_h5_close(&root);
    const float *params = an_net_params((an_net *)net);   /* read only */
    for (int k = 0; k < AN_W_N_LAYERS && !bad; k++) {
        what = KLAYERS[k].name;
        klayer_geom geo = geometry(net, k);
        const an_param_layer *L = an_net_param_layer(net, KLAYERS[k].param);
        hsize_t bdim = (hsize_t)geo.b_count;
        hid_t g = H5Gcreate2(file, KLAYERS[k].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t ws = H5Screate_simple(geo.ndims, geo.own, NULL), bs = H5Screate_simple(1, &bdim, NULL);
        hid_t wd = -1, bd = -1;
        const char *type = L->is_conv ? "convolution" : "dense";
        int conv[3] = {L->stride, L->pad, L->relu};
        bad = g < 0 || ws < 0 || bs < 0 ||
              write_strings_attr(g, "type", &type, -1, H5T_CSET_UTF8) < 0 ||
              (L->is_conv && (write_numbers_attr(g, "stride", H5T_STD_I32LE, H5T_NATIVE_INT, &conv[0], -1) < 0 ||
                              write_numbers_attr(g, "padding", H5T_STD_I32LE, H5T_NATIVE_INT, &conv[1], -1) < 0)) ||
              write_numbers_attr(g, "relu", H5T_STD_I32LE, H5T_NATIVE_INT, &conv[2], -1) < 0 ||
              (wd = create_checked_dataset(g, "weight", ws, geo.ndims, geo.own)) < 0 ||
              H5Dwrite(wd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, params + geo.w_off) < 0 ||
              (bd = create_checked_dataset(g, "bias", bs, 1, &bdim)) < 0 ||
              H5Dwrite(bd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, params + geo.b_off) < 0;
        if (bad) an_h5_detail(detail);
        if (wd >= 0 && H5Dclose(wd) < 0 && !bad) { bad = 1; an_h5_detail(detail); }
        if (bd >= 0 && H5Dclose(bd) < 0 && !bad) { bad = 1; an_h5_detail(detail); }
        an_h5_close(&bs);
        an_h5_close(&ws);
        if (g >= 0 && H5Gclose(g) < 0 && !bad) { bad = 1; an_h5_detail(detail); }
        if (bad) break;
    }
    if (!bad) return AN_OK;
    return an_fail(AN_ERR_MEMORY, "cannot save weights to '%s': HDF5 failed writing %s (out of memory?): %s",
                   path, what, detail);
}

/* the Heuritech model's layers in Keras 1's order, weightless ones included */
static const char *const KERAS1_LAYERS[] = {
    "input_1", "conv_1", "maxpooling2d_1", "convpool_1", "zeropadding2d_1", "lambda_1", "lambda_2",
    "conv_2_1", "conv_2_2", "conv_2", "maxpooling2d_2", "lambda_3", "zeropadding2d_2", "conv_3",
    "zeropadding2d_3", "lambda_4", "lambda_5", "conv_4_1", "conv_4_2", "conv_4", "zeropadding2d_4",
    "lambda_6", "lambda_7", "conv_5_1", "conv_5_2", "conv_5", "convpool_5", "flatten", "dense_1",
    "dropout_1", "dense_2", "dropout_2", "dense_3", "softmax"};
#define N_KERAS1_LAYERS (int)(sizeof KERAS1_LAYERS / sizeof *KERAS1_LAYERS)

static int keras1_weight_layer(const char *name)
{
    for (int k = 0; k < AN_W_N_LAYERS; k++)
        if (strcmp(name, KLAYERS[k].name) == 0) return k;
    return -1;
}

static int write_float_dataset(hid_t g, const char *name, int ndims, const hsize_t *dims, const float *v)
{
    hid_t sp = H5Screate_simple(ndims, dims, NULL), d = -1;
    int bad = sp < 0 ||
              (d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0;
    if (d >= 0 && H5Dclose(d) < 0) bad = 1;
    an_h5_close(&sp);
    return bad ? -1 : 0;
}

/* A Keras 1 (Theano) save_weights() file, laid out as Heuritech's
 * alexnet_weights.h5: root attributes layer_names (every layer of the
 * model, weightless ones included) and backend ("theano"); per layer a
 * group with attribute weight_names (<name>_W, <name>_b; empty for layers
 * without weights) and the datasets: convolution kernels (out, in/groups,
 * rows, cols) flipped in both spatial axes (Theano's true convolution),
 * dense kernels (in, out), biases (out). */
static an_status write_keras1_contents(const an_net *net, hid_t file, const char *path)
{
    char detail[160] = "";
    const char *what = "the file attributes";
    const char *backend = "theano";
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    int bad = root < 0 || write_strings_attr(root, "layer_names", KERAS1_LAYERS, N_KERAS1_LAYERS, H5T_CSET_ASCII) < 0 ||
              write_strings_attr(root, "backend", &backend, -1, H5T_CSET_ASCII) < 0;
    if (bad) an_h5_detail(detail);
    const float *params = an_net_params((an_net *)net);   /* read only */
    for (int i = 0; i < N_KERAS1_LAYERS && !bad; i++) {
        const char *name = KERAS1_LAYERS[i];
        what = name;
        int k = keras1_weight_layer(name);
        hid_t g = H5Gcreate2(root, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            bad = 1;
        } else if (k < 0) {
            bad = write_strings_attr(g, "weight_names", NULL, 0, H5T_CSET_ASCII) < 0;
        } else {
            klayer_geom geo = geometry(net, k);
            const an_param_layer *L = an_net_param_layer(net, KLAYERS[k].param);
            char wn[64], bn[64];
            snprintf(wn, sizeof wn, "%s_W", name);
            snprintf(bn, sizeof bn, "%s_b", name);
            const char *wnames[2] = {wn, bn};
            hsize_t bdim = (hsize_t)geo.b_count;
            float *K = malloc(geo.w_count * sizeof *K);
            if (!K) {
                an_h5_close(&g);
                an_h5_close(&root);
                return an_fail(AN_ERR_MEMORY, "out of memory (%.0f MB) saving layer %s to '%s'",
                               geo.w_count * 4.0 / 1e6, name, path);
            }
            if (L->is_conv)
                flip_kernels(params + geo.w_off, K, (size_t)(geo.keras[0] * geo.keras[1]),
                             (size_t)(geo.keras[2] * geo.keras[3]));
            else
                transpose(params + geo.w_off, K, (size_t)geo.own[0], (size_t)geo.own[1]);
            bad = write_strings_attr(g, "weight_names", wnames, 2, H5T_CSET_ASCII) < 0 ||
                  write_float_dataset(g, wn, geo.ndims, geo.keras, K) < 0 ||
                  write_float_dataset(g, bn, 1, &bdim, params + geo.b_off) < 0;
            free(K);
        }
        if (bad) an_h5_detail(detail);
        if (g >= 0 && H5Gclose(g) < 0 && !bad) { bad = 1; an_h5_detail(detail); }
    }
    an_h5_close(&root);
    if (!bad) return AN_OK;
    return an_fail(AN_ERR_MEMORY, "cannot save weights to '%s': HDF5 failed writing %s (out of memory?): %s",
                   path, what, detail);
}

/* The file in memory; on success im->mem holds it (free it). */
static an_status build_image(const an_net *net, const char *path, const char *name,
                             const char *const *class_names, an_weights_kind kind, an_h5_image *im)
{
    char detail[160];
    /* in memory only, allocated once: the parameters and 4 MB for the rest */
    hid_t file = an_h5_create_in_memory(name, an_net_param_count(net) * sizeof(float) + ((size_t)4 << 20), im);
    if (file < 0)
        return an_fail(AN_ERR_MEMORY, "cannot save weights to '%s': HDF5 cannot create the file in memory: %s",
                       path, an_h5_detail(detail));
    an_status s = kind == AN_WEIGHTS_KERAS1 ? write_keras1_contents(net, file, path)
                                            : write_contents(net, file, path, class_names);
    if (H5Fclose(file) < 0 && s == AN_OK)
        s = an_fail(AN_ERR_MEMORY, "cannot save weights to '%s': HDF5 cannot finish the file: %s", path,
                    an_h5_detail(detail));
    if (s == AN_OK && !im->mem)
        s = an_fail(AN_ERR_MEMORY, "cannot save weights to '%s': HDF5 produced no file image", path);
    if (s != AN_OK) {
        free(im->mem);
        im->mem = NULL;
    }
    return s;
}

typedef struct {
    const an_net *net;
    const char *path;
    const char *const *class_names;
    an_weights_kind kind;
} save_job;

static an_status save_build(void *ctx, const char *mem_name, an_h5_image *im)
{
    const save_job *job = ctx;
    return build_image(job->net, job->path, mem_name, job->class_names, job->kind, im);
}

/* Either kind of file, written atomically (h5io.c). */
static an_status save_file(const an_net *net, const char *path, const char *const *class_names,
                           an_weights_kind kind)
{
    if (!net) return an_fail(AN_ERR_ARGUMENT, "no network to save");
    if (!path || !path[0]) return an_fail(AN_ERR_ARGUMENT, "no file name to save the weights to");
    if (class_names)
        for (int i = 0; i < an_net_classes(net); i++)
            if (!class_names[i])
                return an_fail(AN_ERR_ARGUMENT, "cannot save weights to '%s': class name %d of %d is missing",
                               path, i + 1, an_net_classes(net));
    save_job job = {net, path, class_names, kind};
    return an_h5_write_file(path, "save weights to", save_build, &job);
}

an_status an_weights_save(const an_net *net, const char *path, const char *const *class_names)
{
    return save_file(net, path, class_names, AN_WEIGHTS_OWN);
}

an_status an_weights_save_keras1(const an_net *net, const char *path)
{
    return save_file(net, path, NULL, AN_WEIGHTS_KERAS1);
}
