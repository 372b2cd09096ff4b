/* test_weights.c: weights files (src/engine/weights.h).
 * Usage: test_weights [FIXTURE_DIR [GROUPS]] (GROUPS: e.g. isolation,repeat;
 * all by default). One line per check, then "N passed, M failed"; exit
 * status 1 on any failure.
 *
 * The Heuritech alexnet_weights.h5 cannot be downloaded here, so this test
 * writes files in its layout with the HDF5 C API (root attribute layer_names
 * as numpy 'S' fixed-length byte strings, one group per layer with
 * weight_names, empty for weightless layers as h5py writes an empty list,
 * datasets conv_1_W, conv_1_b, ...; Theano kernels (out, in, rows, cols)
 * flipped, dense kernels (in, out)), filled with the hash-filled weights of
 * the whole-net fixture, loads them and compares the net's outputs to the
 * PyTorch references in fixtures/net.anfx (same tolerances as test_engine.c).
 * The Theano semantics are also checked directly: conv_1 as a true
 * convolution and dense_1 as x W, computed here from the file's arrays. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "alexnet.h"
#include "hashfill.h"
#include "isolate.h"
#include "h5features.h"
#include "testutil.h"
#include "weights.h"
#include "caffe_subset.pb-c.h"

static char dir[512];
/* the fixture's hash-filled net, a net of the same size to load into, a 2-class net */
static an_net *src, *work, *two;

#define TPATH(buf, name) snprintf(buf, sizeof buf, "%s/%s", dir, name)

/* ---------------------------------------------------------------- nets */

/* the test's own copy of the Keras layer table, independent of weights.c */
static const struct { const char *name; int param, half; } KL[AN_W_N_LAYERS] = {
    {"conv_1", AN_P_CONV_1, 0},   {"conv_2_1", AN_P_CONV_2, 1}, {"conv_2_2", AN_P_CONV_2, 2},
    {"conv_3", AN_P_CONV_3, 0},   {"conv_4_1", AN_P_CONV_4, 1}, {"conv_4_2", AN_P_CONV_4, 2},
    {"conv_5_1", AN_P_CONV_5, 1}, {"conv_5_2", AN_P_CONV_5, 2}, {"dense_1", AN_P_DENSE_1, 0},
    {"dense_2", AN_P_DENSE_2, 0}, {"dense_3", AN_P_DENSE_3, 0}};

/* the whole-net fixture's parameters (as test_engine.c's test_net) */
static an_net *hash_net(int classes)
{
    an_net *net = NULL;
    if (an_net_create(classes, 1, &net) != AN_OK) {
        CHECK("create hash-filled net", 0, "%s", an_error_message());
        return NULL;
    }
    hash_fill_net(net);
    return net;
}

/* all parameters zero, so that a load has to bring every value */
static void scramble(an_net *net)
{
    memset(an_net_params(net), 0, an_net_param_count(net) * sizeof(float));
    an_net_params_changed(net);
}

typedef struct {
    float *p;
    size_t n;
    float mean[3];
} snapshot;

static snapshot snap(an_net *net)
{
    snapshot s;
    s.n = an_net_param_count(net);
    s.p = fdup(an_net_params(net), s.n);
    an_net_get_mean(net, s.mean);
    return s;
}

static int unchanged(an_net *net, const snapshot *s)
{
    float m[3];
    an_net_get_mean(net, m);
    return an_net_param_count(net) == s->n && memcmp(an_net_params(net), s->p, s->n * sizeof(float)) == 0 &&
           memcmp(m, s->mean, sizeof m) == 0;
}

/* weights and bias of Keras layer k in the net's block */
static void region(const an_net *net, int k, size_t *w_off, size_t *w_n, size_t *b_off, size_t *b_n)
{
    const an_param_layer *L = an_net_param_layer(net, KL[k].param);
    int parts = KL[k].half ? 2 : 1;
    *w_n = L->weight_count / parts;
    *b_n = L->bias_count / parts;
    *w_off = L->weight_offset + (KL[k].half ? (KL[k].half - 1) * *w_n : 0);
    *b_off = L->bias_offset + (KL[k].half ? (KL[k].half - 1) * *b_n : 0);
}

static int layer_equal(an_net *a, an_net *b, int k)
{
    size_t wo, wn, bo, bn;
    region(a, k, &wo, &wn, &bo, &bn);
    const float *pa = an_net_params(a), *pb = an_net_params(b);
    return memcmp(pa + wo, pb + wo, wn * sizeof(float)) == 0 && memcmp(pa + bo, pb + bo, bn * sizeof(float)) == 0;
}

/* ---------------------------------------------------------------- Keras 1 files */

/* Layer k as a Keras 1 Theano file holds it: conv kernels (out, in, rows,
 * cols) flipped in both spatial axes (true convolution), dense (in, out). */
static float *keras_kernel(const an_net *net, int k, int flip, int *ndims, hsize_t dims[4])
{
    const an_param_layer *L = an_net_param_layer(net, KL[k].param);
    size_t wo, wn, bo, bn;
    region(net, k, &wo, &wn, &bo, &bn);
    const float *src = an_net_params((an_net *)net) + wo;
    float *K = xmalloc(wn * sizeof *K);
    if (L->is_conv) {
        int out = L->out / (KL[k].half ? 2 : 1), in = L->in / L->groups, kh = L->kh, kw = L->kw;
        *ndims = 4;
        dims[0] = out; dims[1] = in; dims[2] = kh; dims[3] = kw;
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++)
                for (int u = 0; u < kh; u++)
                    for (int v = 0; v < kw; v++) {
                        int su = flip ? kh - 1 - u : u, sv = flip ? kw - 1 - v : v;
                        K[(((size_t)o * in + i) * kh + u) * kw + v] = src[(((size_t)o * in + i) * kh + su) * kw + sv];
                    }
    } else {
        size_t out = L->out, in = L->in;
        *ndims = 2;
        dims[0] = in; dims[1] = out;
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++) K[i * out + o] = src[o * in + i];
    }
    return K;
}

enum { BAD_NONE, BAD_SHAPE, BAD_NO_DATASET, BAD_INT, BAD_FILTER };



typedef struct {
    int vlen;               /* variable-length strings (today's h5py) instead of numpy 'S' */
    int no_flip;            /* kernels stored unflipped (with backend = "tensorflow") */
    const char *backend;    /* root attribute backend; NULL: none (as in the Heuritech file) */
    const char *under;      /* group holding the layers (a model file's model_weights); NULL: root */
    unsigned f64;           /* bit k: Keras layer k written as float64 */
    unsigned only;          /* bit k: write only these weight layers (0: all) */
    int bad_layer, bad;     /* one damaged layer */
    const char *const *names;  /* other layer_names instead of AlexNet's */
    int n_names;
    int dense3_classes;     /* dense_3 of this many classes (hash-filled) instead of the net's */
} kopts;

/* the Heuritech model's layers in Keras 1's order, weightless ones included */
static const char *const HEURITECH_LAYERS[] = {
    "input_1", "conv_1", "maxpooling2d_1", "convpool_1", "zeropadding2d_1", "lambda_1", "lambda_2",
    "conv_2_1", "conv_2_2", "conv_2", "maxpooling2d_2", "lambda_3", "zeropadding2d_2", "conv_3",
    "zeropadding2d_3", "lambda_4", "lambda_5", "conv_4_1", "conv_4_2", "conv_4", "zeropadding2d_4",
    "lambda_6", "lambda_7", "conv_5_1", "conv_5_2", "conv_5", "convpool_5", "flatten", "dense_1",
    "dropout_1", "dense_2", "dropout_2", "dense_3", "softmax"};
#define N_HEURITECH (int)(sizeof HEURITECH_LAYERS / sizeof *HEURITECH_LAYERS)

static int werr;
#define H(call) do { if ((call) < 0) werr = __LINE__; } while (0)

/* numpy 'S' (fixed length, null padded) as Keras 1 with h5py 2 wrote them,
 * or variable length; an empty list as h5py writes [] (float64, shape (0,)) */
static void attr_strings(hid_t loc, const char *name, const char *const *s, int n, int vlen)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL), t, a;
    if (n == 0) {
        H(a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT));
        H(H5Aclose(a));
        H(H5Sclose(sp));
        return;
    }
    t = H5Tcopy(H5T_C_S1);
    char *buf = NULL;
    if (vlen) {
        H(H5Tset_size(t, H5T_VARIABLE));
    } else {
        size_t len = 1;
        for (int i = 0; i < n; i++)
            if (strlen(s[i]) > len) len = strlen(s[i]);
        H(H5Tset_size(t, len));
        H(H5Tset_strpad(t, H5T_STR_NULLPAD));
        buf = calloc((size_t)n, len);
        for (int i = 0; i < n; i++) memcpy(buf + i * len, s[i], strlen(s[i]));
    }
    H(a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT));
    H(H5Awrite(a, t, vlen ? (const void *)s : buf));
    H(H5Aclose(a));
    H(H5Tclose(t));
    H(H5Sclose(sp));
    free(buf);
}

static void write_dataset(hid_t g, const char *name, hid_t ftype, int ndims, const hsize_t *dims, const float *v)
{
    hid_t sp = H5Screate_simple(ndims, dims, NULL), d;
    H(d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v));
    H(H5Dclose(d));
    H(H5Sclose(sp));
}

/* BAD_FILTER: the kernel is stored through an HDF5 filter registered only
 * while it is written (a pass-through, id 300 from HDF5's testing range), as
 * a file compressed with a filter this libhdf5 lacks (LZF, Blosc) reads */
#define TEST_FILTER_ID 300
static size_t pass_through(unsigned flags, size_t n_values, const unsigned values[], size_t bytes, size_t *size,
                           void **buf)
{
    (void)flags; (void)n_values; (void)values; (void)size; (void)buf;
    return bytes;
}
static const H5Z_class2_t TEST_FILTER = {H5Z_CLASS_T_VERS, TEST_FILTER_ID, 1, 1, "alexnet test filter", NULL, NULL,
                                         pass_through};

static void write_filtered_dataset(hid_t g, const char *name, int ndims, const hsize_t *dims, const float *v)
{
    hid_t sp = H5Screate_simple(ndims, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), d;
    H(H5Zregister(&TEST_FILTER));
    H(H5Pset_chunk(dcpl, ndims, dims));
    H(H5Pset_filter(dcpl, TEST_FILTER_ID, H5Z_FLAG_MANDATORY, 0, NULL));
    H(d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    H(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v));
    H(H5Dclose(d));
    H(H5Pclose(dcpl));
    H(H5Sclose(sp));
    H(H5Zunregister(TEST_FILTER_ID));
}

static int weight_layer(const char *name)
{
    for (int k = 0; k < AN_W_N_LAYERS; k++)
        if (strcmp(name, KL[k].name) == 0) return k;
    return -1;
}

/* Write net's weights as a Keras 1 save_weights() file. Returns 1 on success. */
static int write_keras1(const char *path, const an_net *net, const kopts *o)
{
    werr = 0;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), root;
    if (f < 0) return 0;
    root = o->under ? H5Gcreate2(f, o->under, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : H5Gopen2(f, "/", H5P_DEFAULT);
    const char *const *all = o->names ? o->names : HEURITECH_LAYERS;
    int n_all = o->names ? o->n_names : N_HEURITECH;
    const char *names[64];
    int n = 0;
    for (int i = 0; i < n_all; i++) {
        int k = weight_layer(all[i]);
        if (k >= 0 && o->only && !(o->only & (1u << k))) continue;
        names[n++] = all[i];
    }
    attr_strings(root, "layer_names", names, n, o->vlen);
    if (o->backend) {
        const char *b = o->backend;
        attr_strings(root, "backend", &b, 1, o->vlen);
    }
    for (int i = 0; i < n; i++) {
        hid_t g;
        H(g = H5Gcreate2(root, names[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        int k = weight_layer(names[i]);
        if (k < 0) {
            attr_strings(g, "weight_names", NULL, 0, o->vlen);
            H(H5Gclose(g));
            continue;
        }
        char wn[64], bn[64];
        snprintf(wn, sizeof wn, "%s_W", names[i]);
        snprintf(bn, sizeof bn, "%s_b", names[i]);
        const char *wnames[2] = {wn, bn};
        attr_strings(g, "weight_names", wnames, 2, o->vlen);
        int nd;
        hsize_t dims[4];
        float *K, *bias = NULL;
        size_t wo, wcount, bo, bcount;
        region(net, k, &wo, &wcount, &bo, &bcount);
        if (k == AN_W_DENSE_3 && o->dense3_classes) {
            bcount = (size_t)o->dense3_classes;
            nd = 2;
            dims[0] = 4096;
            dims[1] = bcount;
            K = xmalloc(4096 * bcount * sizeof *K);
            hash_fill(K, 4096 * bcount, 1014, (float)(sqrt(6.0 / 4096) / 32));
            bias = xmalloc(bcount * sizeof *bias);
            hash_fill(bias, bcount, 1015, 0.1f);
        } else {
            K = keras_kernel(net, k, !o->no_flip, &nd, dims);
        }
        hsize_t bdim = bcount;
        hid_t ft = (o->f64 & (1u << k)) ? H5T_IEEE_F64LE : H5T_IEEE_F32LE;
        int bad = o->bad_layer == k ? o->bad : BAD_NONE;
        if (bad == BAD_SHAPE) {
            /* conv: kernel 2 larger each way; dense: one more input */
            size_t m = 1;
            if (nd == 4) { dims[2] += 2; dims[3] += 2; } else { dims[0] += 1; }
            for (int d = 0; d < nd; d++) m *= dims[d];
            float *Z = calloc(m, sizeof *Z);
            write_dataset(g, wn, ft, nd, dims, Z);
            free(Z);
        } else if (bad == BAD_INT) {
            write_dataset(g, wn, H5T_STD_I32LE, nd, dims, K);
        } else if (bad == BAD_FILTER) {
            write_filtered_dataset(g, wn, nd, dims, K);
        } else if (bad != BAD_NO_DATASET) {
            write_dataset(g, wn, ft, nd, dims, K);
        }
        write_dataset(g, bn, ft, 1, &bdim, bias ? bias : an_net_params((an_net *)net) + bo);
        free(K);
        free(bias);
        H(H5Gclose(g));
    }
    H(H5Gclose(root));
    H(H5Fclose(f));
    if (werr) fprintf(stdout, "(HDF5 call failed writing %s, line %d)\n", path, werr);
    return werr == 0;
}

/* ---------------------------------------------------------------- helpers */

static int contains(const char *msg, const char *part) { return !part || strstr(msg, part) != NULL; }

/* status `want` and a message holding each of a, b, c (NULL: skip) */
static void expect_fail(const char *label, an_status got, an_status want, const char *a, const char *b,
                        const char *c)
{
    const char *m = an_error_message();
    CHECK(label, got == want && contains(m, a) && contains(m, b) && contains(m, c), "status %d (want %d): \"%s\"",
          (int)got, (int)want, m);
}

static int count_tmp_files(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) n++;
    if (d) closedir(d);
    return n;
}

static char *read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = xmalloc((size_t)n + 1);
    *size = fread(buf, 1, (size_t)n, fp);
    buf[*size] = '\0';
    fclose(fp);
    return buf;
}

static int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) return 0;
    int ok = fwrite(data, 1, n, fp) == n;
    return fclose(fp) == 0 && ok;
}

/* the very same file, untouched: same inode, size and modification time */
static int untouched(const char *path, const struct stat *before)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_ino == before->st_ino && st.st_size == before->st_size &&
           st.st_mtim.tv_sec == before->st_mtim.tv_sec && st.st_mtim.tv_nsec == before->st_mtim.tv_nsec;
}

static void report_line(const char *label, const an_weights_report *r, an_weights_kind want_kind, unsigned want_loaded,
                        unsigned want_kept, unsigned want_missing)
{
    int ok = r->kind == want_kind;
    char states[AN_W_N_LAYERS + 1];
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        int want = (want_loaded >> k) & 1 ? AN_WEIGHTS_LOADED : (want_kept >> k) & 1 ? AN_WEIGHTS_KEPT
                 : (want_missing >> k) & 1 ? AN_WEIGHTS_MISSING : -1;
        ok &= (int)r->state[k] == want;
        states[k] = "LKM"[r->state[k] < 3 ? r->state[k] : 0];
    }
    states[AN_W_N_LAYERS] = '\0';
    ok &= r->n_loaded == __builtin_popcount(want_loaded) && r->n_kept == __builtin_popcount(want_kept) &&
          r->n_missing == __builtin_popcount(want_missing);
    CHECK(label, ok, "kind %d, states %s (L loaded, K kept, M missing), %d/%d/%d", (int)r->kind, states,
          r->n_loaded, r->n_kept, r->n_missing);
}

#define ALL_LAYERS ((1u << AN_W_N_LAYERS) - 1)
#define BIT(k) (1u << (k))

/* ---------------------------------------------------------------- Theano semantics */

/* conv_1 of the loaded net against a true convolution with the file's
 * kernels K (96, 3, 11, 11), stride 4, at sampled outputs; also shows that
 * reading K as cross-correlation would be far off. */
static void check_true_convolution(const float *images, const float *conv1, const float *K, const float *b,
                                   const float mean[3])
{
    const int C = 96, OH = 55, KS = 11, S = 4, N = AN_INPUT_SIZE;
    double maxy = 0;
    for (size_t i = 0; i < (size_t)2 * C * OH * OH; i++) maxy = fmax(maxy, fabs(conv1[i]));
    double worst = 0;
    int bad = 0, nonzero = 0, large = 0, far = 0;
    for (int s = 0; s < 200; s++) {
        uint64_t h = splitmix64(9000 + s);
        int img = h & 1, o = (h >> 1) % C, p = (h >> 8) % OH, q = (h >> 16) % OH;
        double conv = b[o], corr = b[o];
        for (int i = 0; i < 3; i++)
            for (int u = 0; u < KS; u++)
                for (int v = 0; v < KS; v++) {
                    double k = K[((o * 3 + i) * KS + u) * KS + v];
                    const float *x = images + ((size_t)img * 3 + i) * N * N;
                    /* valid true convolution: y[p] = sum_u K[u] x[p*S + KS-1-u] */
                    conv += k * ((double)x[(p * S + KS - 1 - u) * N + q * S + KS - 1 - v] - mean[i]);
                    corr += k * ((double)x[(p * S + u) * N + q * S + v] - mean[i]);
                }
        conv = fmax(conv, 0);
        corr = fmax(corr, 0);
        double got = conv1[(((size_t)img * C + o) * OH + p) * OH + q];
        double d = fabs(got - conv), tol = ATOL_SHALLOW * maxy + RTOL * fabs(conv);
        if (!(d <= tol)) bad++;
        worst = fmax(worst, d / tol);
        nonzero += conv > 0;
        if (conv > 0.05 * maxy) {
            large++;
            far += fabs(corr - conv) > 100 * tol;
        }
    }
    CHECK("keras1 conv_1 = true convolution with file kernels", bad == 0 && nonzero > 20,
          "200 samples, %d outside tolerance (worst %.2g of tol), %d nonzero", bad, worst, nonzero);
    CHECK("keras1 conv_1: reading kernels as cross-correlation would fail", large >= 10 && far >= 0.9 * large,
          "%d of %d large outputs off by > 100 tol", far, large);
}

/* dense_1 = relu(x W + b) with the file's W (9216, 4096) and x = convpool_5 */
static void check_dense_in_out(const float *x, const float *dense1, const float *W, const float *b)
{
    const int IN = 9216, OUT = 4096;
    double maxy = 0;
    for (int i = 0; i < 2 * OUT; i++) maxy = fmax(maxy, fabs(dense1[i]));
    int bad = 0;
    double worst = 0;
    for (int s = 0; s < 64; s++) {
        int img = s & 1, o = (int)(splitmix64(9500 + s) % OUT);
        double y = b[o];
        for (int i = 0; i < IN; i++) y += (double)x[(size_t)img * IN + i] * W[(size_t)i * OUT + o];
        y = fmax(y, 0);
        double got = dense1[(size_t)img * OUT + o], tol = ATOL_DEEP * maxy + RTOL * fabs(y);
        if (!(fabs(got - y) <= tol)) bad++;
        worst = fmax(worst, fabs(got - y) / tol);
    }
    CHECK("keras1 dense_1 = relu(x W + b), W (in, out)", bad == 0, "64 samples, %d outside tolerance (worst %.2g)",
          bad, worst);
}

/* ---------------------------------------------------------------- tests */

static void test_keras_full(const anfx_file *fx)
{
    char path[600];
    TPATH(path, "heuritech_layout.h5");     /* kept for the truncation tests */
    /* numpy 'S' strings, conv_2_2 and dense_2 in float64, no backend attribute */
    kopts o = {0};
    o.f64 = BIT(AN_W_CONV_2_2) | BIT(AN_W_DENSE_2);
    o.bad_layer = -1;
    if (!write_keras1(path, src, &o)) { CHECK("write Keras 1 file", 0, "%s", path); return; }
    int classes = an_net_classes(src);
    an_net *net = work;
    scramble(net);
    an_weights_report rep;
    if (!status_ok("keras1 load (by_name = 0)", an_weights_load(net, path, 0, &rep))) return;
    report_line("keras1 load report: all 11 loaded", &rep, AN_WEIGHTS_KERAS1, ALL_LAYERS, 0, 0);
    CHECK("keras1 load: parameters = fixture's, bit for bit",
          memcmp(an_net_params(net), an_net_params(src), an_net_param_count(src) * sizeof(float)) == 0, NULL);
    float mean[3], m0[3] = {123.68f, 116.779f, 103.939f};
    an_net_get_mean(net, mean);
    CHECK("keras1 load leaves the mean", memcmp(mean, m0, sizeof mean) == 0, NULL);

    /* forward against the PyTorch references */
    const int n = 2;
    float *images = falloc((size_t)n * AN_INPUT_PIXELS, 0);
    hash_fill_image(images, (size_t)n * AN_INPUT_PIXELS, 2000);
    static const int outs[] = {AN_CONV_1, AN_CONV_2, AN_CONV_5, AN_CONVPOOL_5, AN_DENSE_1, AN_DENSE_3, AN_SOFTMAX};
    float *keep[AN_N_OUTPUTS] = {0};
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        int u = outs[i];
        an_output_info oi = an_net_output(net, u);
        size_t m = (size_t)n * an_output_size(net, u);
        float *out = falloc(m, NAN);
        char lab[96], key[96];
        snprintf(lab, sizeof lab, "keras1 net %s", oi.name);
        if (status_ok(lab, an_net_forward(net, images, n, u, out))) {
            snprintf(key, sizeof key, "net.%s", oi.name);
            check_ref(fx, lab, key, out, m, u <= AN_CONVPOOL_1 ? ATOL_SHALLOW : ATOL_DEEP);
        }
        keep[u] = out;
    }
    /* the file's own semantics, computed here from its arrays */
    int nd;
    hsize_t dims[4];
    size_t wo, wn, bo, bn;
    float *K = keras_kernel(src, AN_W_CONV_1, 1, &nd, dims);
    region(src, AN_W_CONV_1, &wo, &wn, &bo, &bn);
    check_true_convolution(images, keep[AN_CONV_1], K, an_net_params(src) + bo, m0);
    free(K);
    float *W = keras_kernel(src, AN_W_DENSE_1, 1, &nd, dims);
    region(src, AN_W_DENSE_1, &wo, &wn, &bo, &bn);
    check_dense_in_out(keep[AN_CONVPOOL_5], keep[AN_DENSE_1], W, an_net_params(src) + bo);
    free(W);
    for (int u = 0; u < AN_N_OUTPUTS; u++) free(keep[u]);
    free(images);

    an_weights_file_info info;
    if (status_ok("keras1 info", an_weights_info(path, &info))) {
        int all = 1;
        for (int k = 0; k < AN_W_N_LAYERS; k++) all &= info.present[k];
        CHECK("keras1 info: kind, classes, no names, version 0, all present",
              info.kind == AN_WEIGHTS_KERAS1 && info.classes == classes && !info.class_names &&
                  info.format_version == 0 && !info.has_mean && all && info.mean[0] == 123.68,
              "kind %d classes %d names %p version %d", (int)info.kind, info.classes, (void *)info.class_names,
              info.format_version);
        an_weights_info_free(&info);
    }

    /* the same weights in other Keras 1 spellings; small files without dense_1
     * and dense_2, loaded by name (so those two are reported missing) */
    static const struct { const char *label; int vlen, no_flip; const char *backend, *under; } var[] = {
        {"keras1 variable-length strings", 1, 0, NULL, NULL},
        {"keras1 backend \"theano\"", 0, 0, "theano", NULL},
        {"keras1 backend \"tensorflow\" (no flip)", 1, 1, "tensorflow", NULL},
        {"keras1 model file (/model_weights)", 0, 0, NULL, "model_weights"},
    };
    const unsigned sub = ALL_LAYERS & ~(BIT(AN_W_DENSE_1) | BIT(AN_W_DENSE_2));
    for (size_t v = 0; v < sizeof var / sizeof *var; v++) {
        kopts ov = {0};
        ov.vlen = var[v].vlen;
        ov.no_flip = var[v].no_flip;
        ov.backend = var[v].backend;
        ov.under = var[v].under;
        ov.only = sub;
        ov.bad_layer = -1;
        char p2[600];
        TPATH(p2, "variant.h5");
        if (!write_keras1(p2, src, &ov)) { CHECK(var[v].label, 0, "cannot write %s", p2); continue; }
        scramble(net);
        if (status_ok(var[v].label, an_weights_load(net, p2, 1, &rep))) {
            int same = 1;
            for (int k = 0; k < AN_W_N_LAYERS; k++)
                if (sub & BIT(k)) same &= layer_equal(net, src, k);
            size_t wo1, wn1, bo1, bn1;
            region(net, AN_W_DENSE_1, &wo1, &wn1, &bo1, &bn1);
            const float *p = an_net_params(net);
            CHECK(var[v].label, same && rep.kind == AN_WEIGHTS_KERAS1 && rep.n_loaded == 9 && rep.n_missing == 2 &&
                  rep.state[AN_W_DENSE_1] == AN_WEIGHTS_MISSING && p[wo1] == 0.0f && p[bo1] == 0.0f,
                  "%d loaded, %d missing, layers equal %d", rep.n_loaded, rep.n_missing, same);
        }
        remove(p2);
    }
}

/* A fixed-length string attribute (numpy 'S'), as its strings; NULL when it
 * is not one. *n: the count (1 for a scalar). */
static char **read_fixed_strings(hid_t loc, const char *name, int *n, size_t *len)
{
    *n = 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    char **out = NULL;
    if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0 && H5Tget_strpad(t) == H5T_STR_NULLPAD) {
        *len = H5Tget_size(t);
        *n = (int)H5Sget_simple_extent_npoints(sp);
        char *raw = calloc((size_t)*n, *len);
        out = calloc((size_t)*n, sizeof *out);
        if (H5Aread(a, t, raw) >= 0)
            for (int i = 0; i < *n; i++) {
                out[i] = calloc(*len + 1, 1);
                memcpy(out[i], raw + (size_t)i * *len, *len);
            }
        free(raw);
    }
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static void free_fixed(char **s, int n)
{
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* A float32 dataset equal to want (dims and values); 1 when so. */
static int dataset_is(hid_t g, const char *name, int ndims, const hsize_t *dims, const float *want)
{
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return 0;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    hsize_t got[8] = {0};
    int nd = H5Sget_simple_extent_ndims(sp), ok = nd == ndims && H5Tequal(t, H5T_IEEE_F32LE) > 0;
    size_t m = 1;
    if (ok) {
        H5Sget_simple_extent_dims(sp, got, NULL);
        for (int i = 0; i < nd; i++) {
            ok &= got[i] == dims[i];
            m *= got[i];
        }
    }
    if (ok) {
        float *v = malloc(m * sizeof *v);
        ok = v && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0 &&
             memcmp(v, want, m * sizeof *v) == 0;
        free(v);
    }
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
    return ok;
}

/* an_weights_save_keras1: the Heuritech layout, read back bit for bit */
static void test_keras_save(void)
{
    char path[600];
    TPATH(path, "saved_keras1.h5");
    if (!status_ok("save keras1", an_weights_save_keras1(src, path))) return;
    CHECK("save keras1: no temporary file left", count_tmp_files() == 0, NULL);

    /* the layout, checked with HDF5 against this file's own conversion */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) { CHECK("save keras1: file opens", 0, "%s", path); return; }
    int n = 0, nb = 0;
    size_t len = 0, blen = 0;
    char **names = read_fixed_strings(f, "layer_names", &n, &len);
    int same = names && n == N_HEURITECH;
    for (int i = 0; same && i < n; i++) same = strcmp(names[i], HEURITECH_LAYERS[i]) == 0;
    CHECK("save keras1: layer_names = the Heuritech model's 34 layers, numpy 'S' strings", same, "%d names", n);
    free_fixed(names, n);
    char **backend = read_fixed_strings(f, "backend", &nb, &blen);
    CHECK("save keras1: backend \"theano\"", backend && nb == 1 && strcmp(backend[0], "theano") == 0, NULL);
    free_fixed(backend, nb);
    int groups = 0, layers = 0;
    for (int i = 0; i < N_HEURITECH; i++) {
        hid_t g = H5Gopen2(f, HEURITECH_LAYERS[i], H5P_DEFAULT);
        if (g < 0) continue;
        groups++;
        int k = weight_layer(HEURITECH_LAYERS[i]), nw = 0;
        size_t wl = 0;
        char **wnames = NULL;
        if (k < 0) {
            hid_t a = H5Aopen(g, "weight_names", H5P_DEFAULT);
            hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
            if (sp >= 0 && H5Sget_simple_extent_npoints(sp) == 0) layers++;
            if (sp >= 0) H5Sclose(sp);
            if (a >= 0) H5Aclose(a);
        } else if ((wnames = read_fixed_strings(g, "weight_names", &nw, &wl)) && nw == 2) {
            char wn[64], bn[64];
            snprintf(wn, sizeof wn, "%s_W", HEURITECH_LAYERS[i]);
            snprintf(bn, sizeof bn, "%s_b", HEURITECH_LAYERS[i]);
            int nd;
            hsize_t dims[4];
            size_t wo, wcount, bo, bcount;
            region(src, k, &wo, &wcount, &bo, &bcount);
            float *K = keras_kernel(src, k, 1, &nd, dims);
            hsize_t bdim = bcount;
            int ok = strcmp(wnames[0], wn) == 0 && strcmp(wnames[1], bn) == 0 && dataset_is(g, wn, nd, dims, K) &&
                     dataset_is(g, bn, 1, &bdim, an_net_params(src) + bo);
            CHECK("save keras1: layer's weight_names, kernel (flipped conv / (in, out) dense) and bias", ok,
                  "%s", HEURITECH_LAYERS[i]);
            layers += ok;
            free(K);
        }
        free_fixed(wnames, nw);
        H5Gclose(g);
    }
    CHECK("save keras1: a group per layer, weightless ones with an empty weight_names",
          groups == N_HEURITECH && layers == N_HEURITECH, "%d groups, %d right", groups, layers);
    H5Fclose(f);

    /* read back by the engine: every layer, bit for bit */
    scramble(work);
    an_weights_report rep;
    if (status_ok("save keras1, load back", an_weights_load(work, path, 0, &rep))) {
        report_line("save keras1, load back: all 11 loaded", &rep, AN_WEIGHTS_KERAS1, ALL_LAYERS, 0, 0);
        CHECK("save keras1, load back: parameters bit for bit",
              memcmp(an_net_params(work), an_net_params(src), an_net_param_count(src) * sizeof(float)) == 0, NULL);
    }
    remove(path);

    TPATH(path, "no_such_dir/k.h5");
    expect_fail("save keras1 into a missing directory -> AN_ERR_IO", an_weights_save_keras1(src, path), AN_ERR_IO,
                path, "No such file", NULL);
}

/* Heuritech's 1000-class dense_3 into a 2-class net */
static void test_keras_by_name(void)
{
    char path[600];
    TPATH(path, "imagenet1000.h5");
    kopts o = {0};
    o.bad_layer = -1;
    o.dense3_classes = 1000;
    if (!write_keras1(path, src, &o)) { CHECK("write 1000-class Keras 1 file", 0, "%s", path); return; }

    an_weights_file_info info;
    if (status_ok("keras1 1000 info", an_weights_info(path, &info))) {
        CHECK("keras1 1000 info: 1000 classes", info.kind == AN_WEIGHTS_KERAS1 && info.classes == 1000,
              "kind %d classes %d", (int)info.kind, info.classes);
        an_weights_info_free(&info);
    }
    an_net *net = two;
    snapshot s0 = snap(net);
    an_weights_report rep;
    an_status st = an_weights_load(net, path, 0, &rep);
    expect_fail("keras1 1000 -> 2 classes, by_name = 0: error naming dense_3", st, AN_ERR_FORMAT, path,
                "dense_3", "(4096, 1000)");
    CHECK("keras1 1000 -> 2 classes, by_name = 0: message gives the net's shape",
          strstr(an_error_message(), "(4096, 2)") != NULL, "\"%s\"", an_error_message());
    CHECK("keras1 1000 -> 2 classes, by_name = 0: net unchanged", unchanged(net, &s0), NULL);

    if (status_ok("keras1 1000 -> 2 classes, by_name = 1", an_weights_load(net, path, 1, &rep))) {
        report_line("keras1 by_name report: dense_3 kept", &rep, AN_WEIGHTS_KERAS1, ALL_LAYERS & ~BIT(AN_W_DENSE_3),
                    BIT(AN_W_DENSE_3), 0);
        CHECK("keras1 by_name report: file's dense_3 shape",
              strstr(rep.file_shape[AN_W_DENSE_3], "(4096, 1000)") && strstr(rep.file_shape[AN_W_DENSE_3], "(1000,)"),
              "\"%s\"", rep.file_shape[AN_W_DENSE_3]);
        int same = 1;
        for (int k = 0; k < AN_W_DENSE_3; k++) same &= layer_equal(net, src, k);
        CHECK("keras1 by_name: conv_1..dense_2 = file's", same, NULL);
        size_t wo, wn, bo, bn;
        region(net, AN_W_DENSE_3, &wo, &wn, &bo, &bn);
        CHECK("keras1 by_name: the net's own dense_3 kept",
              memcmp(an_net_params(net) + wo, s0.p + wo, wn * 4) == 0 &&
                  memcmp(an_net_params(net) + bo, s0.p + bo, bn * 4) == 0, NULL);
    }
    free(s0.p);
    remove(path);
}

static const char *const CLASS_NAMES[10] = {"cat", "dog", "\xc3\xbcnic\xc3\xb6" "de", "c3", "c4",
                                            "c5", "c6", "c7", "c8", "a much longer class name 9"};

static void test_own(void)
{
    char path[600], p2[600];
    TPATH(path, "own.h5");
    TPATH(p2, "own_nonames.h5");
    int classes = an_net_classes(src);
    float mean[3] = {120.5f, 110.25f, 100.125f}, m0[3];
    an_net_get_mean(src, m0);
    an_net_set_mean(src, mean);
    an_status st = an_weights_save(src, path, CLASS_NAMES);
    status_ok("own save", st);
    CHECK("own save: no temporary file left", count_tmp_files() == 0, "%d", count_tmp_files());
    status_ok("own save without class names", an_weights_save(src, p2, NULL));
    an_net_set_mean(src, m0);
    if (st != AN_OK) return;

    an_net *net = work;
    an_weights_report rep;
    float mean_before[3] = {1, 2, 3};
    an_net_set_mean(net, mean_before);
    scramble(net);
    if (status_ok("own load (by_name = 0)", an_weights_load(net, path, 0, &rep))) {
        report_line("own load report: all loaded", &rep, AN_WEIGHTS_OWN, ALL_LAYERS, 0, 0);
        float got[3];
        an_net_get_mean(net, got);
        CHECK("own round trip: parameters bit-identical",
              memcmp(an_net_params(net), an_net_params(src), an_net_param_count(src) * sizeof(float)) == 0, NULL);
        CHECK("own round trip: mean", memcmp(got, mean, sizeof got) == 0 && rep.mean_loaded, "%.9g %.9g %.9g",
              got[0], got[1], got[2]);
    }
    an_net_set_mean(net, m0);

    an_weights_file_info info;
    if (status_ok("own info", an_weights_info(path, &info))) {
        int names = info.class_names != NULL;
        for (int i = 0; names && i < classes; i++) names &= strcmp(info.class_names[i], CLASS_NAMES[i]) == 0;
        int all = 1;
        for (int k = 0; k < AN_W_N_LAYERS; k++) all &= info.present[k];
        CHECK("own info: kind, version, classes, names, mean, layers",
              info.kind == AN_WEIGHTS_OWN && info.format_version == AN_WEIGHTS_FORMAT_VERSION &&
                  info.classes == classes && names && info.has_mean && info.mean[0] == 120.5 &&
                  info.mean[1] == 110.25 && info.mean[2] == 100.125 && all,
              "kind %d version %d classes %d names %d mean %g %g %g", (int)info.kind, info.format_version,
              info.classes, names, info.mean[0], info.mean[1], info.mean[2]);
        an_weights_info_free(&info);
        CHECK("own info free", info.class_names == NULL, NULL);
    }
    if (status_ok("own info (no class names)", an_weights_info(p2, &info))) {
        CHECK("own info: no class names -> NULL", info.class_names == NULL && info.classes == classes, NULL);
        an_weights_info_free(&info);
    }
    remove(p2);

    /* readable by other tools, by layer name */
    {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = f >= 0 ? H5Dopen2(f, "conv_2_1/weight", H5P_DEFAULT) : -1;
        hid_t sp = d >= 0 ? H5Dget_space(d) : -1, t = d >= 0 ? H5Dget_type(d) : -1;
        hsize_t dims[4] = {0};
        int nd = sp >= 0 ? H5Sget_simple_extent_dims(sp, dims, NULL) : -1;
        int f32 = t >= 0 && H5Tequal(t, H5T_IEEE_F32LE) > 0;
        size_t wo, wn, bo, bn;
        region(src, AN_W_CONV_2_1, &wo, &wn, &bo, &bn);
        float *v = falloc(wn, NAN);
        int read = d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
        CHECK("own file by name: conv_2_1/weight float32 (128, 48, 5, 5) = conv_2's first half",
              nd == 4 && dims[0] == 128 && dims[1] == 48 && dims[2] == 5 && dims[3] == 5 && f32 && read &&
                  memcmp(v, an_net_params(src) + wo, wn * 4) == 0,
              "ndims %d (%llu, %llu, %llu, %llu)", nd, (unsigned long long)dims[0], (unsigned long long)dims[1],
              (unsigned long long)dims[2], (unsigned long long)dims[3]);
        free(v);
        if (t >= 0) H5Tclose(t);
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
        d = f >= 0 ? H5Dopen2(f, "dense_3/weight", H5P_DEFAULT) : -1;
        sp = d >= 0 ? H5Dget_space(d) : -1;
        nd = sp >= 0 ? H5Sget_simple_extent_dims(sp, dims, NULL) : -1;
        CHECK("own file by name: dense_3/weight (classes, 4096)", nd == 2 && dims[0] == (hsize_t)classes &&
              dims[1] == 4096, "ndims %d", nd);
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
        if (f >= 0) H5Fclose(f);
    }

    /* into a 2-class net */
    net = two;
    {
        snapshot s0 = snap(net);
        st = an_weights_load(net, path, 0, &rep);
        expect_fail("own -> 2 classes, by_name = 0: error naming dense_3", st, AN_ERR_FORMAT, path, "dense_3",
                    "(10, 4096)");
        CHECK("own -> 2 classes, by_name = 0: net unchanged", unchanged(net, &s0), NULL);
        if (status_ok("own -> 2 classes, by_name = 1", an_weights_load(net, path, 1, &rep))) {
            report_line("own by_name report: dense_3 kept", &rep, AN_WEIGHTS_OWN, ALL_LAYERS & ~BIT(AN_W_DENSE_3),
                        BIT(AN_W_DENSE_3), 0);
            int same = 1;
            for (int k = 0; k < AN_W_DENSE_3; k++) same &= layer_equal(net, src, k);
            size_t wo, wn, bo, bn;
            region(net, AN_W_DENSE_3, &wo, &wn, &bo, &bn);
            CHECK("own by_name: file's conv_1..dense_2, net's own dense_3",
                  same && memcmp(an_net_params(net) + wo, s0.p + wo, wn * 4) == 0, NULL);
        }
        free(s0.p);
    }
}

static void test_save_failures(void)
{
    char path[600], buf[700];
    an_net *a = src;
    struct stat st;

    /* a directory that does not exist */
    TPATH(path, "no_such_dir/w.h5");
    expect_fail("save into a missing directory -> AN_ERR_IO", an_weights_save(a, path, NULL), AN_ERR_IO, path,
                "No such file", NULL);
    TPATH(buf, "no_such_dir");
    CHECK("save into a missing directory leaves nothing", stat(buf, &st) != 0 && count_tmp_files() == 0, NULL);

    /* a path that is a directory */
    TPATH(path, "a_directory");
    mkdir(path, 0755);
    expect_fail("save to a directory -> AN_ERR_IO", an_weights_save(a, path, NULL), AN_ERR_IO, path, "directory",
                NULL);
    CHECK("save to a directory leaves it, no temporary file",
          stat(path, &st) == 0 && S_ISDIR(st.st_mode) && count_tmp_files() == 0, NULL);

    /* saves killed on this machine leave NAME.tmp-PID: the next save into the
     * folder removes those of dead processes that are empty or HDF5 images,
     * and nothing else */
    {
        pid_t child = fork();
        if (child == 0) _exit(0);
        waitpid(child, NULL, 0);   /* a pid that is gone */
        char stale_h5[640], stale_empty[640], other[640], alive[640];
        snprintf(stale_h5, sizeof stale_h5, "%s/killed.h5.tmp-%ld", dir, (long)child);
        snprintf(stale_empty, sizeof stale_empty, "%s/other.h5.tmp-%ld", dir, (long)child);
        snprintf(other, sizeof other, "%s/notes.txt.tmp-%ld", dir, (long)child);
        snprintf(alive, sizeof alive, "%s/busy.h5.tmp-%ld", dir, (long)getppid());
        write_bytes(stale_h5, "\211HDF\r\n\032\n and the rest", 22);
        write_bytes(stale_empty, "", 0);
        write_bytes(other, "someone's notes", 15);
        write_bytes(alive, "\211HDF\r\n\032\n", 8);
        TPATH(path, "fresh.h5");
        status_ok("save beside stale temporary files", an_weights_save(a, path, NULL));
        CHECK("a save removes the HDF5 and empty temporary files of dead processes",
              stat(stale_h5, &st) != 0 && stat(stale_empty, &st) != 0, NULL);
        CHECK("... and keeps other files and a live process's", stat(other, &st) == 0 && stat(alive, &st) == 0, NULL);
        unlink(other);
        unlink(alive);
        unlink(path);
    }

    /* a good file, then failing saves over it: it must survive untouched */
    TPATH(path, "good.h5");
    if (!status_ok("save a good file", an_weights_save(a, path, CLASS_NAMES))) return;
    struct stat before;
    stat(path, &before);
    /* other weights to save over it: the fixture's with the first 1000 negated */
    an_net *b = work;
    size_t np = an_net_param_count(b);
    float *p = an_net_params(b);
    memcpy(p, an_net_params(src), np * sizeof *p);
    for (size_t i = 0; i < 1000; i++) p[i] = -p[i];
    an_net_params_changed(b);

    /* 1: the temporary file cannot be created (its name is taken by a directory) */
    snprintf(buf, sizeof buf, "%s.tmp-%ld", path, (long)getpid());
    mkdir(buf, 0755);
    expect_fail("save: temporary file cannot be created -> AN_ERR_IO", an_weights_save(b, path, NULL), AN_ERR_IO,
                path, NULL, NULL);
    CHECK("  ... previous file untouched", untouched(path, &before), NULL);
    rmdir(buf);

    /* 2: the disk fills up half way (file size limit: writes fail with EFBIG) */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 8 << 20;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        an_status s = an_weights_save(b, path, NULL);
        setrlimit(RLIMIT_FSIZE, &old);
        expect_fail("save: disk full half way -> AN_ERR_IO", s, AN_ERR_IO, path, NULL, NULL);
        CHECK("  ... previous file untouched, no temporary file", untouched(path, &before) && count_tmp_files() == 0,
              "%d temporary files", count_tmp_files());
    } else {
        CHECK("save: disk full half way (setrlimit)", 0, "%s", strerror(errno));
    }
    signal(SIGXFSZ, oldsig);

    /* 3: bad arguments */
    const char *names[10];
    memcpy(names, CLASS_NAMES, sizeof names);
    names[3] = NULL;
    expect_fail("save: a missing class name -> AN_ERR_ARGUMENT", an_weights_save(b, path, names), AN_ERR_ARGUMENT,
                path, NULL, NULL);
    CHECK("  ... previous file untouched", untouched(path, &before), NULL);

    /* a successful save replaces it */
    if (status_ok("save over the good file", an_weights_save(b, path, NULL))) {
        an_weights_report rep;
        scramble(b);
        if (status_ok("load it back", an_weights_load(b, path, 0, &rep))) {
            const float *q = an_net_params(src);
            int ok = memcmp(p + 1000, q + 1000, (np - 1000) * sizeof *p) == 0;
            for (size_t i = 0; i < 1000; i++) ok &= p[i] == -q[i];
            CHECK("save over a file: the new weights are there, no temporary file", ok && count_tmp_files() == 0, NULL);
        }
    }
    remove(path);
}

/* ---------------------------------------------------------------- bad input */

static snapshot bad_snap;   /* the net before the bad loads */

static void bad_load(an_net *net, const char *label, const char *path, int by_name, an_status want,
                     const char *a, const char *b)
{
    char lab[160];
    an_weights_report rep;
    memset(&rep, 0x5a, sizeof rep);
    an_status st = an_weights_load(net, path, by_name, &rep);
    snprintf(lab, sizeof lab, "load %s", label);
    expect_fail(lab, st, want, path, a, b);
    snprintf(lab, sizeof lab, "  ... net unchanged");
    CHECK(lab, unchanged(net, &bad_snap), NULL);
}

static void bad_info(const char *label, const char *path, an_status want, const char *a)
{
    an_weights_file_info info;
    an_status st = an_weights_info(path, &info);
    char lab[160];
    snprintf(lab, sizeof lab, "info %s", label);
    expect_fail(lab, st, want, path, a, NULL);
    if (st == AN_OK) an_weights_info_free(&info);
}

static void truncate_copy(const char *from, const char *to, size_t keep_num, size_t keep_den)
{
    size_t n;
    char *bytes = read_file(from, &n);
    if (bytes) write_bytes(to, bytes, n / keep_den * keep_num);
    free(bytes);
}

static void test_bad_input(void)
{
    char path[600], own[600];
    an_net *net = work;
    bad_snap = snap(net);

    TPATH(path, "no_such_file.h5");
    bad_load(net, "a missing file -> AN_ERR_IO", path, 1, AN_ERR_IO, "no such file", NULL);
    bad_info("a missing file -> AN_ERR_IO", path, AN_ERR_IO, "no such file");

    bad_load(net, "a directory -> AN_ERR_IO", dir, 1, AN_ERR_IO, "directory", NULL);

    /* a FIFO would block HDF5's open for ever: refused before it is opened */
    TPATH(path, "fifo.h5");
    if (mkfifo(path, 0600) == 0) {
        bad_load(net, "a FIFO -> AN_ERR_IO at once", path, 1, AN_ERR_IO, "not a regular file", NULL);
        bad_info("a FIFO -> AN_ERR_IO at once", path, AN_ERR_IO, "not a regular file");
        unlink(path);
    } else {
        CHECK("mkfifo for the FIFO case", 0, "%s", strerror(errno));
    }

    TPATH(path, "text.h5");
    const char *text = "this is not an HDF5 file\n";
    write_bytes(path, text, strlen(text));
    bad_load(net, "a text file -> AN_ERR_FORMAT", path, 1, AN_ERR_FORMAT, "not an HDF5 file", NULL);
    bad_info("a text file -> AN_ERR_FORMAT", path, AN_ERR_FORMAT, "not an HDF5 file");
    TPATH(path, "empty.h5");
    write_bytes(path, "", 0);
    bad_load(net, "an empty file -> AN_ERR_FORMAT", path, 1, AN_ERR_FORMAT, "not an HDF5 file", NULL);

    /* HDF5, but something else */
    TPATH(path, "other.h5");
    {
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t g = H5Gcreate2(f, "images", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dim = 4;
        float v[4] = {1, 2, 3, 4};
        hid_t sp = H5Screate_simple(1, &dim, NULL);
        hid_t d = H5Dcreate2(f, "labels", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
        H5Sclose(sp);
        H5Gclose(g);
        H5Fclose(f);
    }
    bad_load(net, "an HDF5 file without weights -> AN_ERR_FORMAT", path, 1, AN_ERR_FORMAT, "no AlexNet weights",
             "images");
    bad_info("an HDF5 file without weights -> AN_ERR_FORMAT", path, AN_ERR_FORMAT, "no AlexNet weights");

    /* a Keras file of another model */
    TPATH(path, "other_model.h5");
    static const char *const other[] = {"input_1", "flatten", "dense_a", "predictions"};
    kopts o = {0};
    o.bad_layer = -1;
    o.names = other;
    o.n_names = 4;
    if (write_keras1(path, src, &o)) {
        bad_load(net, "a Keras file of another model -> AN_ERR_FORMAT", path, 1, AN_ERR_FORMAT,
                 "none of AlexNet's layers", "dense_a");
        bad_info("a Keras file of another model", path, AN_ERR_FORMAT, "none of AlexNet's layers");
    }

    /* damaged layers (small files: only the layers named in `only`) */
    static const struct {
        const char *label;
        int layer, bad;
        unsigned only;
        const char *a, *b;
    } dmg[] = {
        {"conv_3 of another shape, by_name = 0 -> AN_ERR_FORMAT", AN_W_CONV_3, BAD_SHAPE,
         BIT(AN_W_CONV_1) | BIT(AN_W_CONV_2_1) | BIT(AN_W_CONV_2_2) | BIT(AN_W_CONV_3), "conv_3",
         "(384, 256, 5, 5)"},
        {"dense_1 of another shape, by_name = 0 -> AN_ERR_FORMAT", AN_W_DENSE_1, BAD_SHAPE,
         BIT(AN_W_CONV_1) | BIT(AN_W_CONV_2_1) | BIT(AN_W_CONV_2_2) | BIT(AN_W_CONV_3) | BIT(AN_W_CONV_4_1) |
             BIT(AN_W_CONV_4_2) | BIT(AN_W_CONV_5_1) | BIT(AN_W_CONV_5_2) | BIT(AN_W_DENSE_1), "dense_1",
         "(9217, 4096)"},
        {"conv_1 without its kernel dataset -> AN_ERR_FORMAT", AN_W_CONV_1, BAD_NO_DATASET, BIT(AN_W_CONV_1),
         "conv_1", "conv_1_W"},
        {"conv_2_2 with integer data -> AN_ERR_FORMAT", AN_W_CONV_2_2, BAD_INT,
         BIT(AN_W_CONV_1) | BIT(AN_W_CONV_2_1) | BIT(AN_W_CONV_2_2), "conv_2_2", "floating-point"},
        {"a file without conv_2_1, by_name = 0 -> AN_ERR_FORMAT", -1, BAD_NONE, BIT(AN_W_CONV_1), "conv_2_1",
         "no layer"},
        {"conv_1 through a filter this libhdf5 lacks -> AN_ERR_FORMAT, naming it", AN_W_CONV_1, BAD_FILTER,
         BIT(AN_W_CONV_1), "HDF5 filter 300 (alexnet test filter)", "conv_1"},
    };
    TPATH(path, "damaged.h5");
    for (size_t i = 0; i < sizeof dmg / sizeof *dmg; i++) {
        o = (kopts){0};
        o.bad_layer = dmg[i].layer;
        o.bad = dmg[i].bad;
        o.only = dmg[i].only;
        if (!write_keras1(path, src, &o)) { CHECK(dmg[i].label, 0, "cannot write %s", path); continue; }
        bad_load(net, dmg[i].label, path, 0, AN_ERR_FORMAT, dmg[i].a, dmg[i].b);
        if (dmg[i].bad == BAD_NO_DATASET || dmg[i].bad == BAD_INT || dmg[i].bad == BAD_FILTER)
            bad_load(net, "  ... by_name = 1 too", path, 1, AN_ERR_FORMAT, dmg[i].a, dmg[i].b);
    }
    /* the shape message gives the net's shape too */
    o = (kopts){0};
    o.bad_layer = AN_W_CONV_3;
    o.bad = BAD_SHAPE;
    o.only = BIT(AN_W_CONV_3) | BIT(AN_W_CONV_1);
    if (write_keras1(path, src, &o)) {
        const snapshot s0 = bad_snap;
        an_weights_report rep;
        an_status st = an_weights_load(net, path, 1, &rep);
        if (status_ok("conv_3 of another shape, by_name = 1", st)) {
            report_line("  ... report: conv_1 loaded, conv_3 kept, the rest missing", &rep, AN_WEIGHTS_KERAS1,
                        BIT(AN_W_CONV_1), BIT(AN_W_CONV_3), ALL_LAYERS & ~(BIT(AN_W_CONV_1) | BIT(AN_W_CONV_3)));
            CHECK("  ... report: the file's conv_3 shape", strstr(rep.file_shape[AN_W_CONV_3], "(384, 256, 5, 5)") != NULL,
                  "\"%s\"", rep.file_shape[AN_W_CONV_3]);
            int kept = 1;
            for (int k = 1; k < AN_W_N_LAYERS; k++) {
                size_t wo, wn, bo, bn;
                region(net, k, &wo, &wn, &bo, &bn);
                kept &= memcmp(an_net_params(net) + wo, s0.p + wo, wn * 4) == 0 &&
                        memcmp(an_net_params(net) + bo, s0.p + bo, bn * 4) == 0;
            }
            CHECK("  ... conv_1 = file's, all others the net's own", kept && layer_equal(net, src, AN_W_CONV_1), NULL);
            /* put the net back */
            memcpy(an_net_params(net), s0.p, s0.n * sizeof(float));
            an_net_params_changed(net);
        }
    }

    /* truncated files: the first half, and the first 4 KB, of valid files */
    char full[600];
    struct stat st;
    TPATH(full, "heuritech_layout.h5");     /* from test_keras_full */
    if (stat(full, &st) == 0) {
        TPATH(path, "truncated_keras.h5");
        truncate_copy(full, path, 1, 2);
        bad_load(net, "a truncated Keras file (half) -> AN_ERR_FORMAT", path, 1, AN_ERR_FORMAT, "truncated", NULL);
        bad_info("a truncated Keras file (half)", path, AN_ERR_FORMAT, "truncated");
        truncate_copy(full, path, 1, 60000);
        bad_load(net, "a truncated Keras file (4 KB) -> AN_ERR_FORMAT", path, 1, AN_ERR_FORMAT, NULL, NULL);
        remove(path);
        remove(full);
    }
    TPATH(own, "own.h5");                   /* from test_own */
    if (stat(own, &st) == 0) {
        TPATH(path, "truncated_own.h5");
        truncate_copy(own, path, 1, 2);
        bad_load(net, "a truncated own file (half) -> AN_ERR_FORMAT", path, 0, AN_ERR_FORMAT, "truncated", NULL);
        remove(path);
        /* a newer format version */
        hid_t f = H5Fopen(own, H5F_ACC_RDWR, H5P_DEFAULT);
        int v = 2;
        hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT, &v);
        H5Aclose(a);
        H5Fclose(f);
        bad_load(net, "an own file of format_version 2 -> AN_ERR_FORMAT", own, 0, AN_ERR_FORMAT, "newer", NULL);
        bad_info("an own file of format_version 2", own, AN_ERR_FORMAT, "newer");
        remove(own);
    }
    bad_load(net, "no file name -> AN_ERR_ARGUMENT", "", 0, AN_ERR_ARGUMENT, NULL, NULL);
    free(bad_snap.p);
}

/* ---------------------------------------------------------------- fuzzing regressions */

/* What tests/fuzz/fuzz_weights.c found or what the reader now checks before
 * HDF5 converts or allocates: a small own-format file for a 2-class net
 * (only dense_3, by name) with one thing wrong. */
enum { SMALL_GOOD, SMALL_LONG_DOUBLE, SMALL_CUSTOM_FLOAT, SMALL_EXTERNAL_DATASET, SMALL_EXTERNAL_GROUP,
       SMALL_HUGE_NAMES };

static int write_small_own(const char *path, int variant)
{
    werr = 0;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    H(H5Pset_attr_phase_change(fcpl, 0, 0));   /* dense attributes: class_names may exceed 64 KB */
    H(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0) return 0;
    hid_t sp1 = H5Screate(H5S_SCALAR), a;
    int one = 1, classes = 2;
    const char *format = "alexnet";
    attr_strings(f, "format", &format, 1, 1);
    H(a = H5Acreate2(f, "format_version", H5T_STD_I32LE, sp1, H5P_DEFAULT, H5P_DEFAULT));
    H(H5Awrite(a, H5T_NATIVE_INT, &one));
    H(H5Aclose(a));
    H(a = H5Acreate2(f, "classes", H5T_STD_I32LE, sp1, H5P_DEFAULT, H5P_DEFAULT));
    H(H5Awrite(a, H5T_NATIVE_INT, &classes));
    H(H5Aclose(a));
    H(H5Sclose(sp1));
    if (variant == SMALL_HUGE_NAMES) {
        /* two fixed-length names of 70000 bytes each: no class is named so */
        char *name = calloc(1, 70001);
        memset(name, 'x', 70000);
        const char *names[2] = {name, name};
        attr_strings(f, "class_names", names, 2, 0);
        free(name);
    }
    if (variant == SMALL_EXTERNAL_GROUP) {
        H(H5Lcreate_external("elsewhere.h5", "/dense_3", f, "dense_3", H5P_DEFAULT, H5P_DEFAULT));
    } else {
        hid_t g = H5Gcreate2(f, "dense_3", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t wdims[2] = {2, 4096}, bdim = 2;
        float *w = falloc(2 * 4096, 0.25f), b[2] = {0.5f, -0.5f};
        if (variant == SMALL_EXTERNAL_DATASET) {
            H(H5Lcreate_external("elsewhere.h5", "/w", g, "weight", H5P_DEFAULT, H5P_DEFAULT));
        } else if (variant == SMALL_LONG_DOUBLE || variant == SMALL_CUSTOM_FLOAT) {
            /* float class, not IEEE half/single/double: x87 long double, or a
             * 32-bit float with a 10-bit exponent */
            hid_t t = H5Tcopy(variant == SMALL_LONG_DOUBLE ? H5T_NATIVE_LDOUBLE : H5T_IEEE_F32LE);
            if (variant == SMALL_CUSTOM_FLOAT) H(H5Tset_fields(t, 31, 21, 10, 0, 21));
            write_dataset(g, "weight", t, 2, wdims, w);
            H5Tclose(t);
        } else {
            write_dataset(g, "weight", H5T_IEEE_F32LE, 2, wdims, w);
        }
        write_dataset(g, "bias", H5T_IEEE_F32LE, 1, &bdim, b);
        free(w);
        H(H5Gclose(g));
    }
    H(H5Fclose(f));
    return werr == 0;
}

/* What the package's own files guarantee: no variable-length strings (their
 * global heap is where a damaged file crashes libhdf5 1.10), a Fletcher-32
 * checksum on every dataset, so a flipped byte is an error naming the
 * layer, and a classes attribute that must agree with dense_3. */
static herr_t no_vlen_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1;
    if (t < 0 || H5Tis_variable_str(t) > 0) (*(int *)data)++;
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return 0;
}

static void test_own_integrity(void)
{
    char path[600], copy[600];
    TPATH(path, "integrity.h5");
    const char *names[16];
    char buf[16][8];
    int classes = an_net_classes(src);
    for (int i = 0; i < classes && i < 16; i++) {
        snprintf(buf[i], sizeof buf[i], "c%d", i);
        names[i] = buf[i];
    }
    if (!status_ok("save for the integrity checks", an_weights_save(src, path, classes <= 16 ? names : NULL)))
        return;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int vlen = 0, unchecked = 0, datasets = 0;
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, no_vlen_attr, &vlen);
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        hid_t g = H5Gopen2(f, KL[k].name, H5P_DEFAULT);
        H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, no_vlen_attr, &vlen);
        for (int j = 0; j < 2; j++) {
            hid_t d = H5Dopen2(g, j ? "bias" : "weight", H5P_DEFAULT), pl = d >= 0 ? H5Dget_create_plist(d) : -1;
            unsigned flags;
            unsigned config;
            size_t nelem = 0;
            datasets++;
            if (pl < 0 || H5Pget_filter_by_id2(pl, H5Z_FILTER_FLETCHER32, &flags, &nelem, NULL, 0, NULL, &config) < 0)
                unchecked++;
            if (pl >= 0) H5Pclose(pl);
            if (d >= 0) H5Dclose(d);
        }
        H5Gclose(g);
    }
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    CHECK("own file: no variable-length string attributes", vlen == 0, "%d", vlen);
    CHECK("own file: every dataset carries a Fletcher-32 checksum", unchecked == 0 && datasets == 2 * AN_W_N_LAYERS,
          "%d of %d without", unchecked, datasets);

    /* a byte flipped in the middle of the file (inside dense_1's weights) */
    size_t n;
    char *bytes = read_file(path, &n);
    if (!bytes) return;
    an_net *net = work;
    bad_snap = snap(net);
    TPATH(copy, "flipped.h5");
    bytes[n / 2] ^= 0x40;
    write_bytes(copy, bytes, n);
    an_weights_report rep;
    an_status st = an_weights_load(net, copy, 1, &rep);
    expect_fail("own file, a flipped byte in dense_1: an error naming the layer", st, AN_ERR_FORMAT, copy,
                "dense_1", "damaged");
    CHECK("  ... net unchanged", unchanged(net, &bad_snap), NULL);
    free(bytes);

    /* the classes attribute disagreeing with dense_3 */
    TPATH(copy, "classes.h5");
    status_ok("save without class names", an_weights_save(src, copy, NULL));
    f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = f >= 0 ? H5Aopen(f, "classes", H5P_DEFAULT) : -1;
    int other = classes + 1;
    if (a >= 0) H5Awrite(a, H5T_NATIVE_INT, &other);
    if (a >= 0) H5Aclose(a);
    if (f >= 0) H5Fclose(f);
    st = an_weights_load(net, copy, 1, &rep);
    expect_fail("own file, classes attribute against dense_3: an error", st, AN_ERR_FORMAT, copy, "classes attribute",
                "dense_3");
    an_weights_file_info info;
    st = an_weights_info(copy, &info);
    expect_fail("  ... and weights_info says so too", st, AN_ERR_FORMAT, copy, "classes attribute", NULL);
    if (st == AN_OK) an_weights_info_free(&info);
    CHECK("  ... net unchanged", unchanged(net, &bad_snap), NULL);
    free(bad_snap.p);
}

static void test_fuzz_regressions(void)
{
    char path[600];
    an_net *net = two;
    snapshot s0 = snap(net);
    TPATH(path, "small_own.h5");
    static const struct {
        int variant;
        const char *label, *a, *b;
    } cases[] = {
        {SMALL_LONG_DOUBLE, "dense_3 of long doubles (16-byte float class) -> AN_ERR_FORMAT", "dense_3",
         "other than IEEE"},
        {SMALL_CUSTOM_FLOAT, "dense_3 of a custom 32-bit float layout -> AN_ERR_FORMAT", "dense_3",
         "other than IEEE"},
        {SMALL_EXTERNAL_DATASET, "dense_3/weight an external link -> AN_ERR_FORMAT, not followed", "dense_3",
         "link to another file"},
        {SMALL_EXTERNAL_GROUP, "dense_3 an external link -> AN_ERR_FORMAT, not followed", "dense_3",
         "link to another file"},
        {SMALL_HUGE_NAMES, "class_names of 70000-byte strings -> AN_ERR_FORMAT", "class_names", NULL},
    };
    if (!write_small_own(path, SMALL_GOOD)) {
        CHECK("write small own file", 0, "%s", path);
    } else {
        an_weights_report rep;
        an_status st = an_weights_load(net, path, 1, &rep);
        CHECK("small own file (dense_3 only), by_name: loads dense_3", st == AN_OK && rep.n_loaded == 1 &&
              rep.state[AN_W_DENSE_3] == AN_WEIGHTS_LOADED && an_net_params(net)[an_net_param_layer(net,
              AN_P_DENSE_3)->weight_offset] == 0.25f, "%s", st ? an_error_message() : "");
        memcpy(an_net_params(net), s0.p, s0.n * sizeof(float));   /* put the net back */
        an_net_set_mean(net, s0.mean);
        an_net_params_changed(net);
        /* memory in proportion to what is read: the loader once took a block
         * for the whole net (230 MB for 1000 classes) before looking at the
         * file, which also made fuzzing it 15 times slower */
        size_t vm_kb = 0;
        FILE *status = fopen("/proc/self/status", "r");
        char line[256];
        while (status && fgets(line, sizeof line, status))
            if (sscanf(line, "VmSize: %zu kB", &vm_kb) == 1) break;
        if (status) fclose(status);
        struct rlimit old_as;
        if (vm_kb && getrlimit(RLIMIT_AS, &old_as) == 0) {
            struct rlimit tight = old_as;
            tight.rlim_cur = (rlim_t)vm_kb * 1024 + ((rlim_t)64 << 20);   /* 64 MB to spare */
            setrlimit(RLIMIT_AS, &tight);
            st = an_weights_load(net, path, 1, &rep);
            setrlimit(RLIMIT_AS, &old_as);
            CHECK("small own file, by_name, 64 MB of address space to spare: loads (no whole-net block)",
                  st == AN_OK && rep.n_loaded == 1, "%s", st ? an_error_message() : "");
            memcpy(an_net_params(net), s0.p, s0.n * sizeof(float));
            an_net_set_mean(net, s0.mean);
            an_net_params_changed(net);
        }
    }
    bad_snap = snap(net);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (!write_small_own(path, cases[i].variant)) {
            CHECK(cases[i].label, 0, "cannot write %s", path);
            continue;
        }
        bad_load(net, cases[i].label, path, 1, AN_ERR_FORMAT, cases[i].a, cases[i].b);
    }
    remove(path);

    /* inputs fuzz_weights found, kept in FIXTURE_DIR/regress: each must fail
     * cleanly, naming the file.
     * weights_dense_links_invalid_free.h5: the own seed with two bytes
     * changed (a link name in the root group's dense link storage): listing
     * the top-level objects for the message with H5Lget_name_by_idx made
     * HDF5 1.10 free an invalid pointer (SIGSEGV or glibc's abort). */
    static const char *const regress[] = {"weights_dense_links_invalid_free.h5"};
    for (size_t i = 0; i < sizeof regress / sizeof *regress; i++) {
        char label[200];
        snprintf(path, sizeof path, "%s/regress/%s", fixture_dir, regress[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            CHECK(regress[i], 0, "missing fixture %s", path);
            continue;
        }
        snprintf(label, sizeof label, "fuzz input %s -> AN_ERR_FORMAT", regress[i]);
        bad_load(net, label, path, 1, AN_ERR_FORMAT, NULL, NULL);
        bad_info(label, path, AN_ERR_FORMAT, NULL);
    }
    free(bad_snap.p);
    free(s0.p);
}

/* ---------------------------------------------------------------- no leaks */

/* Ids that are not attached to a file (dataspaces, datatypes, property
 * lists) escape H5Fget_obj_count, and HDF5 frees them at exit, hiding them
 * from leak checkers: repeat every reading path and watch the heap. The
 * reading code runs in process here (in a child, its leaks would die with
 * it); test_isolation repeats the isolated calls. */
static void test_repeat(void)
{
    char small[600], shape[600], text[600], other[600];
    TPATH(small, "repeat_small.h5");
    TPATH(shape, "repeat_shape.h5");
    TPATH(text, "repeat_text.h5");
    TPATH(other, "repeat_other.h5");
    kopts o = {0};
    o.bad_layer = -1;
    o.only = BIT(AN_W_CONV_1) | BIT(AN_W_DENSE_3);
    o.f64 = BIT(AN_W_DENSE_3);
    o.vlen = 1;
    int ok = write_keras1(small, src, &o);
    o.vlen = 0;
    o.bad_layer = AN_W_CONV_1;
    o.bad = BAD_SHAPE;
    ok &= write_keras1(shape, src, &o);
    ok &= write_bytes(text, "not HDF5", 8);
    static const char *const names[] = {"flatten"};
    o = (kopts){0};
    o.bad_layer = -1;
    o.names = names;
    o.n_names = 1;
    ok &= write_keras1(other, src, &o);
    if (!ok) { CHECK("repeat: write files", 0, NULL); return; }
    an_net *net = two;
    snapshot s0 = snap(net);
    size_t heap[2] = {0, 0};
    int bad = 0;
    for (int r = 0; r < 300; r++) {
        if (r == 100) heap[0] = mallinfo2().uordblks;
        an_weights_report rep;
        an_weights_file_info info;
        bad |= an_weights_load_in_process(net, small, 1, &rep) != AN_OK;
        bad |= an_weights_load_in_process(net, small, 0, &rep) == AN_OK;
        bad |= an_weights_load_in_process(net, shape, 0, &rep) == AN_OK;
        bad |= an_weights_load_in_process(net, text, 0, &rep) == AN_OK;
        bad |= an_weights_load_in_process(net, other, 1, &rep) == AN_OK;
        if (an_weights_info_in_process(small, &info) == AN_OK) an_weights_info_free(&info); else bad = 1;
        bad |= an_weights_info_in_process(shape, &info) != AN_OK;
        an_weights_info_free(&info);
    }
    heap[1] = mallinfo2().uordblks;
    double per = ((double)heap[1] - (double)heap[0]) / 200;
    CHECK("200 rounds of 7 loads and infos: the heap does not grow", !bad && per < 64,
          "%.1f bytes per round (%zu -> %zu)%s", per, heap[0], heap[1], bad ? "; a call gave the wrong status" : "");
    memcpy(an_net_params(net), s0.p, s0.n * sizeof(float));
    an_net_params_changed(net);
    free(s0.p);
    remove(small);
    remove(shape);
    remove(text);
    remove(other);
}

/* ---------------------------------------------------------------- isolation
 * HDF5 reads run in a child process (isolate.c). The files that crash or
 * hang libhdf5 1.10 (fixtures of the R tests, see
 * tests/fuzz/known_hdf5_crashes/README.md) must each be an error naming the
 * file, with this process alive and the net bit for bit as before; so must a
 * child that crashes, exits, hangs or talks nonsense (isolate.h's test
 * faults), and a Ctrl-C must stop a child promptly. No child and no
 * descriptor may outlive a call. */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n - 1;   /* the listing's own */
}

static int no_children(void)
{
    int st;
    return waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* valgrind runs the children too: on the crash files it prints pages of
 * libhdf5's invalid reads (H5HG_read) into the test's output, and the
 * children, that much slower, run into the 2 s timeout instead of
 * crashing (measured). They are for native and ASan runs. */
static int under_valgrind(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, "vgpreload") != NULL;
    if (f) fclose(f);
    return found;
}

/* time limits: valgrind forks and runs a child 10-50x slower */
static double patience(void) { return under_valgrind() ? 10 : 1; }

/* load and info of `path` with the children misbehaving as `fault`: both fail with `want` in the message */
static void faulty_child(an_net *net, const char *path, an_isolated_fault fault, const char *label, const char *want)
{
    char lab[200];
    an_weights_report rep;
    an_weights_file_info info;
    an_isolated_test_fault(fault);
    double t0 = seconds_now();
    an_status st = an_weights_load(net, path, 1, &rep);
    double took = seconds_now() - t0;
    snprintf(lab, sizeof lab, "child %s: load fails naming the file", label);
    expect_fail(lab, st, AN_ERR_FORMAT, path, want, "nothing was loaded");
    CHECK("  ... within 5 s, report zeroed, net unchanged", took < 5 * patience() && rep.n_loaded == 0 && rep.kind == 0 &&
          unchanged(net, &bad_snap), "%.1f s", took);
    st = an_weights_info(path, &info);
    snprintf(lab, sizeof lab, "child %s: info fails naming the file", label);
    expect_fail(lab, st, AN_ERR_FORMAT, path, want, NULL);
    CHECK("  ... the description is empty", info.class_names == NULL && info.kind == 0 && info.classes == 0, NULL);
    if (st == AN_OK) an_weights_info_free(&info);
    an_isolated_test_fault(AN_ISOLATED_NORMAL);
}

static volatile sig_atomic_t interrupts_handled;
static void on_interrupt(int sig) { (void)sig; interrupts_handled++; }

/* isolated and in-process reads of `path` agree bit for bit: parameters, mean, report, description */
static void same_as_in_process(const char *label, const char *path, int by_name)
{
    char lab[200];
    an_weights_report r1, r2;
    scramble(work);
    an_status s1 = an_weights_load(work, path, by_name, &r1);
    snapshot a = snap(work);
    scramble(work);
    an_status s2 = an_weights_load_in_process(work, path, by_name, &r2);
    snprintf(lab, sizeof lab, "%s: loads in a child as in process, bit for bit", label);
    CHECK(lab, s1 == AN_OK && s2 == AN_OK && unchanged(work, &a) && memcmp(&r1, &r2, sizeof r1) == 0 &&
          r1.n_loaded == AN_W_N_LAYERS, "%d %d %s", (int)s1, (int)s2, s1 || s2 ? an_error_message() : "");
    free(a.p);
    an_weights_file_info i1, i2;
    s1 = an_weights_info(path, &i1);
    s2 = an_weights_info_in_process(path, &i2);
    int same = s1 == AN_OK && s2 == AN_OK && i1.kind == i2.kind && i1.classes == i2.classes &&
               i1.format_version == i2.format_version && i1.has_mean == i2.has_mean && i1.arch == i2.arch &&
               memcmp(i1.mean, i2.mean, sizeof i1.mean) == 0 &&
               memcmp(i1.input_scale, i2.input_scale, sizeof i1.input_scale) == 0 &&
               memcmp(i1.present, i2.present, sizeof i1.present) == 0 && strcmp(i1.backend, i2.backend) == 0 &&
               (i1.class_names == NULL) == (i2.class_names == NULL);
    for (int c = 0; same && i1.class_names && c < i1.classes; c++) same = strcmp(i1.class_names[c], i2.class_names[c]) == 0;
    snprintf(lab, sizeof lab, "%s: described in a child as in process", label);
    CHECK(lab, same, "%d %d %s", (int)s1, (int)s2, s1 || s2 ? an_error_message() : "");
    if (s1 == AN_OK) an_weights_info_free(&i1);
    if (s2 == AN_OK) an_weights_info_free(&i2);
}

static void test_isolation(void)
{
    char path[600], own[600], keras[600];
    int fds0 = count_fds();
    CHECK("isolation: no child before", no_children(), NULL);

    /* good files: the same result as the in-process reader (own with class names, Keras 1) */
    TPATH(own, "iso_own.h5");
    TPATH(keras, "iso_keras1.h5");
    int classes = an_net_classes(src);
    char **names = xmalloc((size_t)classes * sizeof *names);
    for (int c = 0; c < classes; c++) {
        names[c] = xmalloc(32);
        snprintf(names[c], 32, "class \xc3\xa9 %d", c);
    }
    if (status_ok("save own file with class names", an_weights_save(src, own, (const char *const *)names)))
        same_as_in_process("own file", own, 0);
    for (int c = 0; c < classes; c++) free(names[c]);
    free(names);
    if (status_ok("save Keras 1 file", an_weights_save_keras1(src, keras))) same_as_in_process("Keras 1 file", keras, 1);
    remove(own);
    remove(keras);

    an_net *net = two;
    TPATH(path, "iso_small.h5");
    if (!write_small_own(path, SMALL_GOOD)) {
        CHECK("isolation: write small own file", 0, "%s", path);
        return;
    }
    bad_snap = snap(net);

    /* children that misbehave */
    faulty_child(net, path, AN_ISOLATED_CRASH, "crashes", "crashed reading it (signal 11, SIGSEGV)");
    faulty_child(net, path, AN_ISOLATED_EXIT, "exits without a word", "exit status 3");
    faulty_child(net, path, AN_ISOLATED_GARBAGE, "sends an unknown record", "unexpected record");
    faulty_child(net, path, AN_ISOLATED_TRUNCATE, "sends half a record", "malformed result");
    an_weights_set_read_timeout(1);
    faulty_child(net, path, AN_ISOLATED_HANG, "hangs (timeout 1 s)", "no progress reading it for 1 s");
    an_weights_set_read_timeout(0);

    /* a Ctrl-C while the child hangs: the child goes, the caller sees the interrupt, then the signal */
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, &old_sa);
    interrupts_handled = 0;
    an_weights_set_read_timeout(30);
    an_isolated_test_fault(AN_ISOLATED_HANG);
    /* SIGINT to the process in 0.3 s (a timer: no thread or process of the test's own to take it) */
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGINT;
    timer_t timer;
    struct itimerspec in = {{0, 0}, {0, 300000000}};
    int timer_ok = timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0 && timer_settime(timer, 0, &in, NULL) == 0;
    an_weights_report rep;
    double t0 = seconds_now();
    an_status st = an_weights_load(net, path, 1, &rep);
    double took = seconds_now() - t0;
    if (timer_ok) timer_delete(timer);
    CHECK("a timer to send SIGINT", timer_ok, "%s", timer_ok ? "" : strerror(errno));
    an_isolated_test_fault(AN_ISOLATED_NORMAL);
    an_weights_set_read_timeout(0);
    expect_fail("Ctrl-C while the child hangs: AN_ERR_INTERRUPTED", st, AN_ERR_INTERRUPTED, path, "interrupted",
                "nothing was loaded");
    CHECK("  ... within 3 s, the signal handled once after the call, net unchanged",
          took < 3 * patience() && interrupts_handled == 1 && unchanged(net, &bad_snap), "%.2f s, %d handled", took,
          (int)interrupts_handled);
    sigaction(SIGINT, &old_sa, NULL);

    /* the files that crash or hang libhdf5 itself; their children may print
     * (a sanitizer's report): into a file of their own */
    static const struct {
        const char *file, *want;
    } crashes[] = {
        {"h5hg_read_overflow.h5", "crashed reading it (signal"},
        {"h5hg_deserialize_segv.h5", NULL},   /* reads out of bounds: a crash or, by chance, garbage */
        {"h5hg_deserialize_hang.h5", "no progress reading it for 2 s"},
        {"h5o_huge_allocation.h5", NULL},   /* a release build's libhdf5 fails cleanly on it */
    };
    if (under_valgrind()) {
        CHECK("SKIP the files that crash libhdf5: under valgrind the children report libhdf5's invalid reads and "
              "run into the timeout (they pass natively and under ASan)", 1, NULL);
    } else {
        an_weights_set_read_timeout(2);
        for (size_t i = 0; i < sizeof crashes / sizeof *crashes; i++) {
            char file[700], lab[200];
            snprintf(file, sizeof file, "%s/../../testthat/fixtures/hdf5_crashes/%s", fixture_dir, crashes[i].file);
            struct stat sb;
            if (stat(file, &sb) != 0) {
                CHECK(crashes[i].file, 0, "missing fixture %s", file);
                continue;
            }
            /* a sanitizer may stop the child first (exit status 1) */
            const char *want = UNDER_ASAN && crashes[i].want && strstr(crashes[i].want, "crashed") ? NULL : crashes[i].want;
            t0 = seconds_now();
            memset(&rep, 0x5a, sizeof rep);
            st = an_weights_load(net, file, 1, &rep);
            took = seconds_now() - t0;
            snprintf(lab, sizeof lab, "%s: load fails naming the file, this process goes on", crashes[i].file);
            expect_fail(lab, st, AN_ERR_FORMAT, file, want, NULL);
            CHECK("  ... within 10 s, report zeroed, net unchanged", took < 10 * patience() && rep.n_loaded == 0 &&
                  rep.kind == 0 && unchanged(net, &bad_snap), "%.1f s", took);
            an_weights_file_info info;
            st = an_weights_info(file, &info);
            snprintf(lab, sizeof lab, "%s: info fails naming the file", crashes[i].file);
            expect_fail(lab, st, AN_ERR_FORMAT, file, want, NULL);
            if (st == AN_OK) an_weights_info_free(&info);
        }
        an_weights_set_read_timeout(0);
    }

    /* the isolated calls repeated: the heap does not grow in this process */
    /* (valgrind runs each child too, a few seconds each: fewer rounds) */
    int rounds = under_valgrind() ? 12 : 50, warm = rounds / 5;
    size_t heap0 = 0;
    int bad = 0;
    for (int r = 0; r < rounds; r++) {
        if (r == warm) heap0 = mallinfo2().uordblks;
        an_weights_file_info info;
        bad |= an_weights_load(net, path, 1, &rep) != AN_OK;
        bad |= an_weights_load(net, path, 0, &rep) == AN_OK;
        if (an_weights_info(path, &info) == AN_OK) an_weights_info_free(&info); else bad = 1;
    }
    double per = ((double)mallinfo2().uordblks - (double)heap0) / (rounds - warm);
    CHECK("rounds of 3 isolated loads and infos: the heap does not grow", !bad && per < 64,
          "%d rounds, %.1f bytes per round%s", rounds - warm, per, bad ? "; a call gave the wrong status" : "");
    memcpy(an_net_params(net), bad_snap.p, bad_snap.n * sizeof(float));
    an_net_set_mean(net, bad_snap.mean);
    an_net_params_changed(net);
    free(bad_snap.p);
    remove(path);
    int fds1 = count_fds();
    CHECK("isolation: no child and no descriptor left behind", no_children() && fds1 == fds0, "%d -> %d fds",
          fds0, fds1);
}

/* ---------------------------------------------------------------- features files
 * an_h5f_read (h5features.h, R's read_features()) reads through a child
 * process as the weights readers do: the same values as in process, and
 * the files and children that crash or hang libhdf5 are errors naming the
 * file, with nothing handed back and this process alive. */

/* two reads give the same values, bit for bit */
static int same_values(const an_h5f_value *a, int na, const an_h5f_value *b, int nb)
{
    if (na != nb) return 0;
    for (int i = 0; i < na; i++) {
        if (strcmp(a[i].name, b[i].name) != 0 || a[i].kind != b[i].kind || a[i].ndims != b[i].ndims ||
            a[i].dims[0] != b[i].dims[0] || a[i].dims[1] != b[i].dims[1])
            return 0;
        size_t count = a[i].ndims == 0 ? 1 : a[i].ndims == 1 ? a[i].dims[0] : a[i].dims[0] * a[i].dims[1];
        if (a[i].kind == AN_H5F_STRINGS) {
            for (size_t k = 0; k < count; k++)
                if (strcmp(((char **)a[i].data)[k], ((char **)b[i].data)[k]) != 0) return 0;
        } else if (memcmp(a[i].data, b[i].data, count * (a[i].kind == AN_H5F_INTS ? sizeof(int) : sizeof(double))) != 0) {
            return 0;
        }
    }
    return 1;
}

/* an_h5f_read of `path` fails with `want` in its message (NULL: any failure naming the file), within 10 s, and hands nothing back */
static void features_read_fails(const char *label, const char *path, const char *want)
{
    an_h5f_value *values = (an_h5f_value *)&values;   /* junk: the reader must clear it */
    int n = 77;
    double t0 = seconds_now();
    an_status st = an_h5f_read(path, NULL, 0, 0, &values, &n);
    double took = seconds_now() - t0;
    const char *m = an_error_message();
    CHECK(label, st != AN_OK && contains(m, path) && contains(m, want) &&
          values == NULL && n == 0 && took < 10 * patience(), "status %d, %.1f s: \"%s\"", (int)st, took,
          st != AN_OK ? m : "");
    if (st == AN_OK) an_h5f_values_free(values, n);
}

static void test_features(void)
{
    char path[600];
    int fds0 = count_fds();
    CHECK("features: no child before", no_children(), NULL);
    TPATH(path, "features_chunk.h5");
    /* a chunk as alexnet_features_h5() writes it: strings, ints, doubles, a float matrix */
    enum { ROWS = 300, COLS = 513 };
    float *feat = xmalloc(ROWS * COLS * sizeof *feat);
    for (size_t k = 0; k < ROWS * COLS; k++) feat[k] = (float)(k % 977) * 0.37f - 11.0f;
    feat[5] = NAN;   /* a failed image's row holds NaN */
    feat[6] = -INFINITY;
    feat[7] = 1e-40f;   /* subnormal */
    const char *files[3] = {"a/\xc3\xa9t\xc3\xa9.jpg", "b.png", ""};
    int rows[3] = {1, 2, 3};
    double score[2] = {0.25, -1e300};
    const char *format = "alexnet_features_h5 1";
    an_h5f_item items[] = {
        {"format", AN_H5F_STRINGS, 0, {1, 1}, &format, 0},
        {"files", AN_H5F_STRINGS, 1, {3, 1}, files, 0},
        {"rows", AN_H5F_INTS, 1, {3, 1}, rows, 0},
        {"score", AN_H5F_DOUBLES, 1, {2, 1}, score, 0},
        {"features", AN_H5F_FLOATS, 2, {ROWS, COLS}, feat, 0},
    };
    if (!status_ok("features: write a chunk file", an_h5f_write(path, items, 5))) {
        free(feat);
        return;
    }
    free(feat);
    an_h5f_value *v1 = NULL, *v2 = NULL;
    int n1 = 0, n2 = 0;
    an_status s1 = an_h5f_read(path, NULL, 0, 0, &v1, &n1), s2 = an_h5f_read_in_process(path, NULL, 0, 0, &v2, &n2);
    CHECK("features: read in a child as in process, bit for bit (5 values)",
          s1 == AN_OK && s2 == AN_OK && n1 == 5 && same_values(v1, n1, v2, n2), "%d %d, %d values", (int)s1,
          (int)s2, n1);
    an_h5f_values_free(v1, n1);
    an_h5f_values_free(v2, n2);
    const char *some[2] = {"rows", "nothing"};
    s1 = an_h5f_read(path, some, 2, 0, &v1, &n1);
    s2 = an_h5f_read_in_process(path, some, 2, 0, &v2, &n2);
    CHECK("features: some values, in a child as in process", s1 == AN_OK && s2 == AN_OK && n1 == 1 &&
          same_values(v1, n1, v2, n2), "%d %d, %d values", (int)s1, (int)s2, n1);
    an_h5f_values_free(v1, n1);
    an_h5f_values_free(v2, n2);

    /* children that misbehave */
    static const struct {
        an_isolated_fault fault;
        const char *label, *want;
    } faults[] = {
        {AN_ISOLATED_CRASH, "features: the child crashes", "crashed reading it (signal 11, SIGSEGV)"},
        {AN_ISOLATED_EXIT, "features: the child exits without a word", "exit status 3"},
        {AN_ISOLATED_GARBAGE, "features: the child sends an unknown record", "unexpected record"},
        {AN_ISOLATED_TRUNCATE, "features: the child sends half a record", "malformed result"},
        {AN_ISOLATED_HANG, "features: the child hangs (timeout 1 s)", "no progress reading it for 1 s"},
    };
    an_isolated_set_timeout(1);
    for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) {
        an_isolated_test_fault(faults[i].fault);
        features_read_fails(faults[i].label, path, faults[i].want);
    }
    an_isolated_test_fault(AN_ISOLATED_NORMAL);
    an_isolated_set_timeout(0);

    /* files that crash or hang libhdf5 in the features reader's own calls
     * (H5Aread of a variable-length string attribute); children may print */
    if (under_valgrind()) {
        CHECK("SKIP features: the files that crash libhdf5 (see test_isolation)", 1, NULL);
    } else {
        static const struct {
            const char *file, *want;
        } crashes[] = {
            {"h5hg_deserialize_hang.h5", "no progress reading it for 2 s"},
            {"h5o_huge_allocation.h5", NULL},   /* a release build's libhdf5 fails cleanly on it */
        };
        an_isolated_set_timeout(2);
        for (size_t i = 0; i < sizeof crashes / sizeof *crashes; i++) {
            char file[700], lab[200];
            snprintf(file, sizeof file, "%s/../../testthat/fixtures/hdf5_crashes/%s", fixture_dir, crashes[i].file);
            /* a sanitizer may stop the child first (exit status 1) */
            const char *want = UNDER_ASAN && crashes[i].want && strstr(crashes[i].want, "crashed") ? NULL : crashes[i].want;
            snprintf(lab, sizeof lab, "features: %s fails naming the file, this process goes on", crashes[i].file);
            features_read_fails(lab, file, want);
        }
        /* reads out of bounds of the heap collection: a crash or, by chance
         * (the child's heap is a copy of this process's), garbage */
        char file[700];
        snprintf(file, sizeof file, "%s/../../testthat/fixtures/hdf5_crashes/h5hg_deserialize_segv.h5", fixture_dir);
        an_h5f_value *v = NULL;
        int n = 0;
        an_status st = an_h5f_read(file, NULL, 0, 0, &v, &n);
        CHECK("features: h5hg_deserialize_segv.h5 read or an error naming the file, this process goes on",
              st == AN_OK ? n >= 0 : v == NULL && n == 0 && contains(an_error_message(), file), "status %d", (int)st);
        an_h5f_values_free(v, n);
        /* a features file damaged as the fuzzer damages files: the size of a
         * variable-length string's object in the global heap overwritten with
         * 0xFF (the first object's, at byte 24 of "GCOL": in process SIGSEGV or
         * a malloc abort; the second's, at 56: an endless loop in H5HG_read) */
        char damaged[600];
        TPATH(damaged, "features_damaged.h5");
        const char *strings[2] = {"alexnet_features", "abc"};
        an_h5f_item manifest[2] = {{"format", AN_H5F_STRINGS, 0, {1, 1}, &strings[0], 0},
                                   {"run_id", AN_H5F_STRINGS, 0, {1, 1}, &strings[1], 0}};
        static const struct {
            size_t size_field_at;
            const char *label, *want;
        } heap_damage[] = {
            {24, "features: a string's heap object of size 0xFF..: the child crashes", "crashed reading it (signal"},
            {56, "features: another of size 0xFF..: the child hangs (timeout 2 s)", "no progress reading it for 2 s"},
        };
        for (size_t i = 0; i < sizeof heap_damage / sizeof *heap_damage; i++) {
            if (!status_ok("features: write a small file", an_h5f_write(damaged, manifest, 2))) break;
            FILE *f = fopen(damaged, "r+b");
            char bytes[8192];
            size_t got = f ? fread(bytes, 1, sizeof bytes, f) : 0;
            const char *gcol = NULL;   /* the global heap collection's signature */
            for (size_t k = 0; k + 4 <= got && !gcol; k++)
                if (memcmp(bytes + k, "GCOL", 4) == 0) gcol = bytes + k;
            int patched = gcol && (size_t)(gcol - bytes) + heap_damage[i].size_field_at + 8 <= got &&
                          fseek(f, (long)(gcol - bytes + heap_damage[i].size_field_at), SEEK_SET) == 0 &&
                          fwrite("\xff\xff\xff\xff\xff\xff\xff\xff", 1, 8, f) == 8;
            if (f) fclose(f);
            CHECK("features: damage the file's global heap", patched, "%zu bytes", got);
            const char *want = UNDER_ASAN && strstr(heap_damage[i].want, "crashed") ? NULL : heap_damage[i].want;
            if (patched) features_read_fails(heap_damage[i].label, damaged, want);
        }
        remove(damaged);
        an_isolated_set_timeout(0);
    }

    s1 = an_h5f_read(path, NULL, 0, 0, &v1, &n1);
    CHECK("features: a good file reads after them", s1 == AN_OK && n1 == 5, "%d", (int)s1);
    an_h5f_values_free(v1, n1);
    remove(path);
    int fds1 = count_fds();
    CHECK("features: no child and no descriptor left behind", no_children() && fds1 == fds0, "%d -> %d fds", fds0,
          fds1);
}

/* Matrices held column-major, as R and Fortran keep them (AN_H5F_COLUMN_MAJOR),
 * doubles stored as 32-bit floats (AN_H5F_FROM_DOUBLES): the file holds
 * them row-major, so a plain read gives the transpose of the caller's
 * layout and a column-major read gives it back; in a child as in process. */

/* `v` is `name`, of kind, shape rows x cols (ndims 2) and values `want` (count of them, of the value's type) */
static int value_is(const an_h5f_value *v, const char *name, an_h5f_kind kind, size_t rows, size_t cols,
                    const void *want)
{
    if (strcmp(v->name, name) != 0 || v->kind != kind || v->ndims != 2 || v->dims[0] != rows || v->dims[1] != cols)
        return 0;
    for (size_t k = 0; k < rows * cols; k++) {
        int same = kind == AN_H5F_STRINGS ? strcmp(((char **)v->data)[k], ((const char *const *)want)[k]) == 0
                   : kind == AN_H5F_INTS  ? ((int *)v->data)[k] == ((const int *)want)[k]
                                          : ((double *)v->data)[k] == ((const double *)want)[k];
        if (!same) return 0;
    }
    return 1;
}

static void test_features_layout(void)
{
    char path[600];
    TPATH(path, "features_layout.h5");
    enum { R = 3, C = 5 };
    /* each matrix column-major (element (r, c) at [c * R + r]) and row-major ([r * C + c]) */
    int ints_col[R * C], ints_row[R * C];
    double doubles_col[R * C], doubles_row[R * C], narrow_col[R * C], narrow_row[R * C];
    const char *strings_col[R * C], *strings_row[R * C];
    static const char *words[R * C] = {"a", "bb", "c\xc3\xa9", "", "e", "f", "g", "h", "i", "j", "k", "l", "m",
                                       "n", "o"};
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            int k = r * C + c;
            ints_col[c * R + r] = ints_row[k] = 100 * r + c - 7;
            doubles_col[c * R + r] = doubles_row[k] = (r + 1) * 1e300 / (c + 3);
            /* not a float: stored as one, read back as the float's value */
            double third = (k + 1) / 3.0;
            narrow_col[c * R + r] = third;
            narrow_row[k] = (double)(float)third;
            strings_col[c * R + r] = strings_row[k] = words[k];
        }
    double narrow_col_stored[R * C];   /* narrow_col as the file's floats give it back */
    for (int k = 0; k < R * C; k++) narrow_col_stored[k] = (double)(float)narrow_col[k];
    double vec[4] = {0.1, -1.0 / 3, 1e300, 2.5}, vec_stored[4];
    for (int k = 0; k < 4; k++) vec_stored[k] = (double)(float)vec[k];
    an_h5f_item items[] = {
        {"ints", AN_H5F_INTS, 2, {R, C}, ints_col, AN_H5F_COLUMN_MAJOR},
        {"doubles", AN_H5F_DOUBLES, 2, {R, C}, doubles_col, AN_H5F_COLUMN_MAJOR},
        {"narrow", AN_H5F_FLOATS, 2, {R, C}, narrow_col, AN_H5F_COLUMN_MAJOR | AN_H5F_FROM_DOUBLES},
        {"strings", AN_H5F_STRINGS, 2, {R, C}, strings_col, AN_H5F_COLUMN_MAJOR},
        /* one row: the same in either layout */
        {"row", AN_H5F_INTS, 2, {1, C}, ints_row, AN_H5F_COLUMN_MAJOR},
        /* a vector of doubles as floats, no matrix */
        {"vector", AN_H5F_FLOATS, 1, {4, 1}, vec, AN_H5F_FROM_DOUBLES},
    };
    if (!status_ok("features layout: write column-major matrices", an_h5f_write(path, items, 6))) return;
    for (int in_child = 0; in_child < 2; in_child++)
        for (int col = 0; col < 2; col++) {
            an_h5f_value *v = NULL;
            int n = 0;
            int flags = col ? AN_H5F_COLUMN_MAJOR : 0;
            an_status st = in_child ? an_h5f_read(path, NULL, 0, flags, &v, &n)
                                    : an_h5f_read_in_process(path, NULL, 0, flags, &v, &n);
            /* values come back in name order: doubles, ints, narrow, row, strings, vector */
            int ok = st == AN_OK && n == 6;
            const struct {
                const char *what;
                int same;
            } checks[] = {
                {"double matrix",
                 ok && value_is(&v[0], "doubles", AN_H5F_DOUBLES, R, C, col ? doubles_col : doubles_row)},
                {"int matrix", ok && value_is(&v[1], "ints", AN_H5F_INTS, R, C, col ? ints_col : ints_row)},
                {"double matrix stored as float32",
                 ok && value_is(&v[2], "narrow", AN_H5F_DOUBLES, R, C, col ? narrow_col_stored : narrow_row)},
                {"one-row matrix", ok && value_is(&v[3], "row", AN_H5F_INTS, 1, C, ints_row)},
                {"string matrix",
                 ok && value_is(&v[4], "strings", AN_H5F_STRINGS, R, C, col ? strings_col : strings_row)},
                {"double vector stored as float32",
                 ok && strcmp(v[5].name, "vector") == 0 && v[5].kind == AN_H5F_DOUBLES && v[5].ndims == 1 &&
                     v[5].dims[0] == 4 && memcmp(v[5].data, vec_stored, sizeof vec_stored) == 0},
            };
            for (size_t i = 0; i < sizeof checks / sizeof *checks; i++) {
                char lab[200];
                snprintf(lab, sizeof lab, "features layout: %s %s, %s", checks[i].what,
                         in_child ? "in a child" : "in process", col ? "column-major read: the input"
                                                                    : "row-major read: the transpose");
                CHECK(lab, checks[i].same, "status %d, %d values", (int)st, n);
            }
            an_h5f_values_free(v, n);
        }
    /* flags that do not fit are the caller's error */
    an_h5f_item bad = {"ints", AN_H5F_INTS, 2, {R, C}, ints_col, AN_H5F_FROM_DOUBLES};
    an_status st = an_h5f_write(path, &bad, 1);
    CHECK("features layout: doubles as floats for an int item is malformed",
          st == AN_ERR_ARGUMENT && contains(an_error_message(), "malformed"), "status %d", (int)st);
    an_h5f_value *v = NULL;
    int n = 0;
    st = an_h5f_read(path, NULL, 0, AN_H5F_FROM_DOUBLES, &v, &n);
    CHECK("features layout: a read with a writer's flag fails", st == AN_ERR_ARGUMENT && !v && n == 0,
          "status %d", (int)st);
    remove(path);
}

/* ---------------------------------------------------------------- main */

/* ---------------------------------------------------------------- other frameworks
 * torchvision: fixtures/torch/torchvision_alexnet_strided.pth (a real
 * torch.save of torchvision's alexnet() state dict) by name into the
 * torchvision variant, against torchvision's own outputs (foreign.anfx).
 * Caffe: a full-size model written here with protobuf-c (the `layer` form,
 * BGR conv1, arch.anfx's hash-filled parameters), by name into the Caffe
 * variant, against arch.anfx's PyTorch outputs. */
static void compare_outputs(an_net *net, const anfx_file *f, const char *prefix, const int *steps, int n_steps,
                            int seed_images)
{
    const int n = 2, side = an_net_input_size(net);
    const size_t pixels = (size_t)3 * side * side;
    float *images = falloc(n * pixels, 0);
    hash_fill_image(images, n * pixels, (uint64_t)seed_images);
    for (int k = 0; k < n_steps; k++) {
        size_t m = (size_t)n * an_output_size(net, steps[k]);
        float *out = falloc(m, NAN);
        char lab[128], key[128];
        const char *name = an_output_name(an_net_arch(net), steps[k]);
        snprintf(lab, sizeof lab, "%s %s", prefix, name);
        snprintf(key, sizeof key, "%s.%s", prefix, name);
        if (status_ok(lab, an_net_forward(net, images, n, steps[k], out))) check_ref(f, lab, key, out, m, ATOL_DEEP);
        free(out);
    }
    free(images);
}

/* net's parameters as a Caffe model at path (conv1's input channels BGR) */
static int write_caffemodel(an_net *net, const char *path)
{
    static const char *const names[AN_N_PARAM_LAYERS] = {"conv1", "conv2", "conv3", "conv4", "conv5",
                                                        "fc6", "fc7", "fc8"};
    Caffe__NetParameter np = CAFFE__NET_PARAMETER__INIT;
    Caffe__LayerParameter layers[AN_N_PARAM_LAYERS + 1], *lp[AN_N_PARAM_LAYERS + 1];
    Caffe__BlobProto blobs[AN_N_PARAM_LAYERS][2], *bp[AN_N_PARAM_LAYERS][2];
    Caffe__BlobShape shapes[AN_N_PARAM_LAYERS][2];
    int64_t dims[AN_N_PARAM_LAYERS][2][4];
    const float *p = an_net_params(net);
    const an_param_layer *c1 = an_net_param_layer(net, AN_P_CONV_1);
    float *conv1 = fdup(p + c1->weight_offset, c1->weight_count);
    size_t plane = (size_t)c1->kh * c1->kw;
    for (int o = 0; o < c1->out; o++)
        for (size_t q = 0; q < plane; q++) {
            float *k = conv1 + (size_t)o * 3 * plane;
            float t = k[q];
            k[q] = k[2 * plane + q];
            k[2 * plane + q] = t;
        }
    /* a layer without weights first, as real models have (data, relu, ...) */
    caffe__layer_parameter__init(&layers[0]);
    layers[0].has_name = 1;
    layers[0].name = (ProtobufCBinaryData){4, (uint8_t *)"data"};
    lp[0] = &layers[0];
    for (int l = 0; l < AN_N_PARAM_LAYERS; l++) {
        const an_param_layer *L = an_net_param_layer(net, l);
        Caffe__LayerParameter *lay = &layers[l + 1];
        caffe__layer_parameter__init(lay);
        lay->has_name = 1;
        lay->name = (ProtobufCBinaryData){strlen(names[l]), (uint8_t *)names[l]};
        for (int b = 0; b < 2; b++) {
            caffe__blob_proto__init(&blobs[l][b]);
            caffe__blob_shape__init(&shapes[l][b]);
            int nd = b ? 1 : L->is_conv ? 4 : 2;
            int64_t *d = dims[l][b];
            d[0] = L->out;
            if (!b) {
                d[1] = L->is_conv ? L->in / L->groups : L->in;
                d[2] = L->kh;
                d[3] = L->kw;
            }
            shapes[l][b].n_dim = (size_t)nd;
            shapes[l][b].dim = d;
            blobs[l][b].shape = &shapes[l][b];
            blobs[l][b].n_data = b ? L->bias_count : L->weight_count;
            blobs[l][b].data = (float *)(b ? p + L->bias_offset : l == AN_P_CONV_1 ? conv1 : p + L->weight_offset);
            bp[l][b] = &blobs[l][b];
        }
        lay->n_blobs = 2;
        lay->blobs = bp[l];
        lp[l + 1] = lay;
    }
    np.name = "AlexNet";
    np.n_layer = AN_N_PARAM_LAYERS + 1;
    np.layer = lp;
    size_t bytes = caffe__net_parameter__get_packed_size(&np);
    uint8_t *buf = malloc(bytes);
    int ok = buf && caffe__net_parameter__pack(&np, buf) == bytes && write_bytes(path, buf, bytes);
    free(buf);
    free(conv1);
    return ok;
}

static void test_foreign(void)
{
    char path[600], tpath[600];
    anfx_file *ff = load("foreign.anfx"), *fa = load("arch.anfx");
    snprintf(tpath, sizeof tpath, "%s/torch/torchvision_alexnet_strided.pth", fixture_dir);
    an_weights_file_info info;
    an_weights_report rep;
    an_net *tv = NULL, *tv2 = NULL, *caffe = NULL, *heur = NULL;
    int ok = ff && fa && status_ok("foreign: torchvision info", an_weights_info(tpath, &info));
    if (ok) {
        CHECK("foreign: torchvision info: kind, variant, classes, every layer, its input convention",
              info.kind == AN_WEIGHTS_TORCH && info.arch == AN_ARCH_TORCHVISION && info.classes == 1000 &&
              info.has_mean && fabs(info.mean[0] - 0.485 * 255) < 1e-9 &&
              fabs(info.input_scale[2] - 1 / (0.225 * 255)) < 1e-12 && info.present[AN_W_CONV_2_2] &&
              info.present[AN_W_DENSE_3],
              "kind %d arch %d classes %d", (int)info.kind, info.arch, info.classes);
        an_weights_info_free(&info);
    }
    ok = ok && status_ok("foreign: torchvision net", an_net_create_arch(AN_ARCH_TORCHVISION, 1000, 3, &tv)) &&
         status_ok("foreign: load the .pth", an_weights_load(tv, tpath, 0, &rep));
    if (ok) {
        report_line("foreign: torchvision report, every layer loaded", &rep, AN_WEIGHTS_TORCH, ALL_LAYERS, 0, 0);
        const int steps[3] = {AN_CONVPOOL_5, AN_DENSE_3, AN_SOFTMAX};
        compare_outputs(tv, ff, "foreign.torchvision", steps, 3, 2000);
    }
    /* a 2-class torchvision net keeps its own dense_3 by name, and refuses without */
    ok = ok && status_ok("foreign: 2-class torchvision net", an_net_create_arch(AN_ARCH_TORCHVISION, 2, 3, &tv2));
    if (ok) {
        snapshot before = snap(tv2);
        an_status st = an_weights_load(tv2, tpath, 0, NULL);
        expect_fail("foreign: 1000 classes into 2 without by_name", st, AN_ERR_FORMAT, "dense_3", "classes", NULL);
        CHECK("foreign: ... the net unchanged", unchanged(tv2, &before), NULL);
        free(before.p);
        if (status_ok("foreign: by_name", an_weights_load(tv2, tpath, 1, &rep))) {
            report_line("foreign: by_name keeps dense_3", &rep, AN_WEIGHTS_TORCH, ALL_LAYERS & ~BIT(AN_W_DENSE_3),
                        BIT(AN_W_DENSE_3), 0);
            CHECK("foreign: the file's dense_3 shape reported", strcmp(rep.file_shape[AN_W_DENSE_3],
                                                                        "W (1000, 4096), b (1000,)") == 0,
                  "%s", rep.file_shape[AN_W_DENSE_3]);
        }
    }
    /* into another variant: refused, naming both, the net unchanged */
    ok = ok && status_ok("foreign: heuritech net", an_net_create(1000, 3, &heur));
    if (ok) {
        snapshot before = snap(heur);
        expect_fail("foreign: a torchvision file into the heuritech variant", an_weights_load(heur, tpath, 1, NULL),
                    AN_ERR_FORMAT, "torchvision", "heuritech", NULL);
        CHECK("foreign: ... the net unchanged", unchanged(heur, &before), NULL);
        free(before.p);
    }
    /* the package's own file of a torchvision net: variant and per-channel scales kept */
    TPATH(path, "tv_own.h5");
    if (ok && status_ok("foreign: save the torchvision net", an_weights_save(tv, path, NULL)) &&
        status_ok("foreign: own file info", an_weights_info(path, &info))) {
        CHECK("foreign: own file of a torchvision net says so, with its scales",
              info.arch == AN_ARCH_TORCHVISION && fabs(info.input_scale[0] - (float)(1 / (0.229 * 255))) < 1e-9 &&
              fabs(info.input_scale[2] - (float)(1 / (0.225 * 255))) < 1e-9,
              "arch %d scales %g %g %g", info.arch, info.input_scale[0], info.input_scale[1], info.input_scale[2]);
        an_weights_info_free(&info);
        an_net *back = NULL;
        if (status_ok("foreign: reload", an_net_create_arch(AN_ARCH_TORCHVISION, 1000, 9, &back)) &&
            status_ok("foreign: reload", an_weights_load(back, path, 0, NULL))) {
            float s1[3], s2[3];
            an_net_get_input_scales(tv, s1);
            an_net_get_input_scales(back, s2);
            CHECK("foreign: own file round trip, bit for bit",
                  memcmp(an_net_params(back), an_net_params(tv), an_net_param_count(tv) * 4) == 0 &&
                  memcmp(s1, s2, sizeof s1) == 0, NULL);
        }
        an_net_free(back);
        expect_fail("foreign: a torchvision own file into the heuritech variant", an_weights_load(heur, path, 1, NULL),
                    AN_ERR_FORMAT, "torchvision", "heuritech", NULL);
    }
    /* Caffe */
    TPATH(path, "bvlc.caffemodel");
    an_net *filled = NULL;
    ok = ok && status_ok("foreign: Caffe net", an_net_create_arch(AN_ARCH_CAFFE, 10, 1, &filled));
    if (ok) {
        hash_fill_net(filled);
        ok = write_caffemodel(filled, path);
        CHECK("foreign: write a full-size Caffe model with protobuf-c", ok, NULL);
    }
    ok = ok && status_ok("foreign: Caffe info", an_weights_info(path, &info));
    if (ok) {
        CHECK("foreign: Caffe info: kind, variant, classes",
              info.kind == AN_WEIGHTS_CAFFE && info.arch == AN_ARCH_CAFFE && info.classes == 10 &&
              fabs(info.mean[2] - 104.0069879317889) < 1e-9 && info.input_scale[1] == 1,
              "kind %d arch %d classes %d", (int)info.kind, info.arch, info.classes);
        an_weights_info_free(&info);
    }
    ok = ok && status_ok("foreign: Caffe net", an_net_create_arch(AN_ARCH_CAFFE, 10, 5, &caffe)) &&
         status_ok("foreign: load the .caffemodel", an_weights_load(caffe, path, 0, &rep));
    if (ok) {
        report_line("foreign: Caffe report, every layer loaded", &rep, AN_WEIGHTS_CAFFE, ALL_LAYERS, 0, 0);
        CHECK("foreign: Caffe's BGR conv_1 read as RGB: the net is the one written",
              memcmp(an_net_params(caffe), an_net_params(filled), an_net_param_count(filled) * 4) == 0, NULL);
        const int steps[4] = {AN_CONV_1, AN_CONVPOOL_5, AN_DENSE_3, AN_SOFTMAX};
        compare_outputs(caffe, fa, "arch.caffe", steps, 4, 2000);
        expect_fail("foreign: a Caffe model into the torchvision variant", an_weights_load(tv, path, 1, NULL),
                    AN_ERR_FORMAT, "caffe", "torchvision", NULL);
    }
    an_net_free(filled);
    an_net_free(tv);
    an_net_free(tv2);
    an_net_free(caffe);
    an_net_free(heur);
    anfx_free(ff);
    anfx_free(fa);
}

static void remove_all(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char sub[1200];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) remove_all(sub);
        else remove(sub);
    }
    if (d) closedir(d);
    rmdir(path);
}

static int group_listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) fixture_dir = argv[1];
    /* $TMPDIR, else memory (/dev/shm) when it has room for the ~1 GB of
     * files the tests keep at once (they write ~1.5 GB in all), else /tmp */
    const char *tmp = getenv("TMPDIR");
    struct statvfs vfs;
    if (!tmp || !tmp[0])
        tmp = statvfs("/dev/shm", &vfs) == 0 && (double)vfs.f_bavail * vfs.f_frsize > 2e9 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/alexnet_weights_XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot create a temporary directory: %s\n", strerror(errno));
        return 2;
    }
    /* the engine must print nothing: catch stderr */
    char errpath[600];
    TPATH(errpath, "stderr.txt");
    fflush(stderr);
    int saved_err = dup(2), errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(errfd, 2);
    close(errfd);
    H5E_auto2_t func0 = NULL;
    void *data0 = NULL;
    H5open();
    H5Eget_auto2(H5E_DEFAULT, &func0, &data0);

    anfx_file *fx = load("net.anfx");
    const anfx_tensor *tc = fx ? anfx_get(fx, "net.classes", ANFX_I32) : NULL;
    int classes = tc ? ((const int32_t *)tc->data)[0] : 10;
    src = hash_net(classes);
    if (src && !status_ok("create a net", an_net_create(classes, 99, &work))) work = NULL;
    if (work && !status_ok("create a 2-class net", an_net_create(2, 5, &two))) two = NULL;
    if (fx && src && work && two) {
        static const struct {
            const char *name;
            void (*run)(void);
        } groups[] = {{"keras_by_name", test_keras_by_name}, {"keras_save", test_keras_save}, {"own", test_own},
                      {"save_failures", test_save_failures}, {"bad_input", test_bad_input},
                      {"own_integrity", test_own_integrity}, {"fuzz_regressions", test_fuzz_regressions},
                      {"repeat", test_repeat}, {"isolation", test_isolation}, {"foreign", test_foreign},
                      {"features", test_features}, {"features_layout", test_features_layout}};
        /* argv[2]: the groups to run, comma-separated (keras_full, ...); all by default */
        const char *only = argc > 2 ? argv[2] : NULL;
        if (!only || group_listed(only, "keras_full")) test_keras_full(fx);
        for (size_t g = 0; g < sizeof groups / sizeof *groups; g++)
            if (!only || group_listed(only, groups[g].name)) groups[g].run();
    }
    an_net_free(src);
    an_net_free(work);
    an_net_free(two);
    anfx_free(fx);

    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    CHECK("no HDF5 objects left open", open_ids == 0, "%zd open", open_ids);

    H5E_auto2_t func1 = NULL;
    void *data1 = NULL;
    H5Eget_auto2(H5E_DEFAULT, &func1, &data1);
    CHECK("HDF5 error printing restored", func1 == func0 && data1 == data0, NULL);

    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    size_t n = 0;
    char *err = read_file(errpath, &n);
    CHECK("nothing printed to stderr", err && n == 0, "%zu bytes: %.300s", n, err ? err : "");
    free(err);
    remove_all(dir);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
