/* test_caffemodel.c: the Caffe reader (an_caffe_read, src/engine/caffemodel.c).
 * Usage: test_caffemodel [FIXTURE_DIR]. One line per check, then "N passed, M
 * failed"; exit status 1 on any failure.
 *
 * fixtures/caffe/ is written by tools/make_caffe_fixtures.py: each
 * tiny_*.caffemodel must give exactly the tensors of the .anfx beside it
 * (names, order, shapes, values bit for bit); each bad_*.caffemodel must be
 * refused with the status and the reason listed in BAD below, leaving the
 * set empty. Then: files that are not files, every prefix of a good file,
 * an unknown V1 layer type, and a full-size (bvlc_alexnet shapes, V1 form,
 * about 244 MB) model written here with protobuf-c's own packer, read back
 * and timed. The engine must print nothing (stderr is caught). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <protobuf-c/protobuf-c.h>

#include "caffe_subset.pb-c.h"
#include "foreign.h"
#include "hashfill.h"
#include "testutil.h"

static char dir[512];   /* a temporary directory */

static void fixture_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/caffe/%s", fixture_dir, name);
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = xmalloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    buf[*n] = 0;
    fclose(f);
    return buf;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- good files */

static void check_good(const char *base)
{
    char path[1024], anfx[256], label[96];
    snprintf(label, sizeof label, "read %s", base);
    fixture_path(path, sizeof path, base);
    strcat(path, ".caffemodel");
    snprintf(anfx, sizeof anfx, "caffe/%s.anfx", base);
    anfx_file *ref = load(anfx);
    if (!ref) return;
    an_tensor_set set = {0};
    if (!status_ok(label, an_caffe_read(path, &set))) {
        anfx_free(ref);
        return;
    }
    int ok = set.count == ref->n, names = 1, shapes = 1, values = 1;
    char why[256] = "";
    if (!ok) snprintf(why, sizeof why, "%d tensors, expected %d", set.count, ref->n);
    for (int i = 0; ok && i < ref->n; i++) {
        const an_tensor *t = &set.items[i];
        const anfx_tensor *r = &ref->t[i];
        if (strcmp(t->name, r->name) != 0) {
            names = 0;
            snprintf(why, sizeof why, "tensor %d is '%s', expected '%s'", i, t->name, r->name);
            break;
        }
        int same = t->ndim == r->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == r->dims[d];
        if (!same) {
            shapes = 0;
            snprintf(why, sizeof why, "'%s' has another shape (%d dims)", t->name, t->ndim);
            break;
        }
        if ((size_t)an_tensor_numel(t) != r->count || memcmp(t->data, r->data, r->count * sizeof(float)) != 0) {
            values = 0;
            snprintf(why, sizeof why, "'%s' has other values", t->name);
            break;
        }
        if (an_tensor_set_find(&set, r->name) != t) {
            names = 0;
            snprintf(why, sizeof why, "an_tensor_set_find('%s') finds another", r->name);
            break;
        }
    }
    CHECK(label, ok && names && shapes && values, "%s%s%d tensors", why, why[0] ? "; " : "", set.count);
    an_tensor_set_free(&set);
    an_tensor_set_free(&set);   /* safe twice */
    CHECK("set empty after free", set.items == NULL && set.count == 0, NULL);
    anfx_free(ref);

    an_file_kind kind;
    snprintf(label, sizeof label, "sniff %s", base);
    if (status_ok(label, an_file_sniff(path, &kind))) CHECK(label, kind == AN_FILE_CAFFE, "kind %d", (int)kind);
}

/* ---------------------------------------------------------------- bad files */

static const struct {
    const char *file;
    an_status status;
    const char *reason;     /* a substring of the message */
} BAD[] = {
    {"bad_truncated_0", AN_ERR_FORMAT, "truncated"},
    {"bad_truncated_1", AN_ERR_FORMAT, "truncated"},
    {"bad_truncated_2", AN_ERR_FORMAT, "truncated"},
    {"bad_truncated_3", AN_ERR_FORMAT, "truncated"},
    {"bad_truncated_4", AN_ERR_FORMAT, "truncated"},
    {"bad_truncated_5", AN_ERR_FORMAT, "truncated"},
    {"bad_garbage", AN_ERR_FORMAT, "is not a Caffe model (protobuf NetParameter)"},
    {"bad_empty", AN_ERR_FORMAT, "is empty"},
    {"bad_count", AN_ERR_FORMAT, "layer 'conv1' blob 0 has 5 values, but its shape (2, 3) needs 6"},
    {"bad_zero_dim", AN_ERR_FORMAT, "layer 'conv1' blob 0 has dimension 2 of size 0, not positive"},
    {"bad_negative_dim", AN_ERR_FORMAT, "layer 'conv1' blob 0 has dimension 1 of size -3, not positive"},
    {"bad_v1_zero_dim", AN_ERR_FORMAT, "layer 'fc6' blob 0 has dimension 2 of size 0, not positive"},
    {"bad_control_name", AN_ERR_FORMAT, "('conv\\x01x') has weights but a name with a control character"},
    {"bad_c1_control_name", AN_ERR_FORMAT, "has weights but a name with a control character"},
    {"bad_utf8_name", AN_ERR_FORMAT, "('conv\\xff') has weights but a name that is not UTF-8"},
    {"bad_long_name", AN_ERR_FORMAT, "has weights but a name longer than 255 bytes"},
    {"bad_empty_name", AN_ERR_FORMAT, "layer 1 of `layer` has weights but an empty name"},
    {"bad_no_name", AN_ERR_FORMAT, "layer 1 of `layer` has weights but no name"},
    {"bad_duplicate", AN_ERR_FORMAT, "two layers with weights are both called 'conv1'"},
    {"bad_huge_length", AN_ERR_FORMAT, "field 100 at byte 0 in a NetParameter claims 2147483648 bytes"},
    {"bad_no_weights", AN_ERR_FORMAT, "has no layers with weights"},
    {"bad_both_forms", AN_ERR_FORMAT, "both the V1 (`layers`) and the new (`layer`) form"},
    {"bad_five_dims", AN_ERR_FORMAT, "layer 'conv1' blob 0 has 5 dimensions"},
    {"bad_float_and_double", AN_ERR_FORMAT, "has both float and double values"},
    {"bad_double_range", AN_ERR_FORMAT, "has the double value 1e+300 at 5, outside float's range"},
    {"bad_no_shape", AN_ERR_FORMAT, "layer 'conv1' blob 0 has no shape"},
    {"bad_wire_type", AN_ERR_FORMAT, "field 5 at byte 12 in a BlobProto is varint, not length-delimited"},
    {"bad_shape_twice", AN_ERR_FORMAT, "field 7 of a BlobProto is given twice"},
    {"bad_packed_length", AN_ERR_FORMAT, "take 6 bytes, not a multiple of 4"},
    {"bad_group", AN_ERR_FORMAT, "is a protobuf group"},
    {"bad_v0", AN_ERR_FORMAT, "in the V0 format"},
};

/* the read must fail with `status`, a message naming the path and holding
 * `reason`, and an empty set */
static void expect_failure(const char *label, const char *path, an_status status, const char *reason)
{
    an_tensor_set set = {(an_tensor *)&set, 12345};   /* junk: the reader must empty it */
    an_status st = an_caffe_read(path, &set);
    const char *msg = an_error_message();
    int ok = st == status && strstr(msg, path) && strstr(msg, reason) && set.items == NULL && set.count == 0;
    CHECK(label, ok, "status %d: %s", (int)st, msg);
    if (st == AN_OK) an_tensor_set_free(&set);
}

static void check_bad(void)
{
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        char path[1024], label[96];
        fixture_path(path, sizeof path, BAD[i].file);
        strcat(path, ".caffemodel");
        snprintf(label, sizeof label, "refuse %s", BAD[i].file);
        expect_failure(label, path, BAD[i].status, BAD[i].reason);
    }
}

/* not regular files, too large, every prefix of a good file */
static void check_paths(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/missing.caffemodel", dir);
    expect_failure("refuse a missing file", path, AN_ERR_IO, "cannot open");
    expect_failure("refuse a directory", dir, AN_ERR_IO, "is a directory");
    snprintf(path, sizeof path, "%s/fifo.caffemodel", dir);
    if (mkfifo(path, 0600) == 0) {
        expect_failure("refuse a FIFO (no hang)", path, AN_ERR_IO, "not a regular file");
        unlink(path);
    }
    /* a sparse file of 2 GB: refused from its size, before reading */
    snprintf(path, sizeof path, "%s/huge.caffemodel", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0 && ftruncate(fd, (off_t)1 << 31) == 0) {
        close(fd);
        expect_failure("refuse a file over 2 GB", path, AN_ERR_FORMAT, "more than the 2 GB");
    } else if (fd >= 0) {
        close(fd);
    }
    unlink(path);

    /* every prefix of tiny_new: refused with a message naming the file, or
     * (cut at a layer's end) read; never a crash, never a half-filled set */
    char good[1024];
    fixture_path(good, sizeof good, "tiny_new.caffemodel");
    size_t n = 0;
    uint8_t *bytes = read_file(good, &n);
    if (!bytes) {
        CHECK("prefixes of tiny_new", 0, "cannot read %s", good);
        return;
    }
    snprintf(path, sizeof path, "%s/prefix.caffemodel", dir);
    int refused = 0, read_ok = 0, bad = 0;
    for (size_t cut = 0; cut < n; cut++) {
        if (!write_file(path, bytes, cut)) {
            bad++;
            break;
        }
        an_tensor_set set = {0};
        an_status st = an_caffe_read(path, &set);
        if (st == AN_OK) {
            read_ok++;
            if (set.count < 1 || set.count > 10) bad++;
            an_tensor_set_free(&set);
        } else {
            refused++;
            if (set.items || set.count || !strstr(an_error_message(), path)) bad++;
        }
    }
    unlink(path);
    free(bytes);
    CHECK("every prefix of tiny_new", bad == 0 && refused > 0, "%d refused, %d read (cut at a layer's end), %d bad",
          refused, read_ok, bad);
}

/* ---------------------------------------------------------------- protobuf-c's writer */

typedef struct {
    ProtobufCBuffer base;
    FILE *fp;
    int failed;
} file_buffer;

static void file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    file_buffer *f = (file_buffer *)b;
    if (!f->failed && fwrite(data, 1, len, f->fp) != len) f->failed = 1;
}

static int pack_to_file(const Caffe__NetParameter *net, const char *path)
{
    file_buffer fb = {{NULL}, NULL, 0};
    fb.base.append = file_append;
    fb.fp = fopen(path, "wb");
    if (!fb.fp) return 0;
    caffe__net_parameter__pack_to_buffer(net, &fb.base);
    return fclose(fb.fp) == 0 && !fb.failed;
}

static void set_name(ProtobufCBinaryData *d, protobuf_c_boolean *has, const char *s)
{
    d->data = (uint8_t *)s;
    d->len = strlen(s);
    *has = 1;
}

/* a V1 layer type this file's proto does not list is still read (protobuf-c
 * keeps an enum's value as it is) */
static void check_unknown_enum(void)
{
    Caffe__NetParameter net = CAFFE__NET_PARAMETER__INIT;
    Caffe__V1LayerParameter L = CAFFE__V1_LAYER_PARAMETER__INIT, *lp = &L;
    Caffe__BlobProto b = CAFFE__BLOB_PROTO__INIT, *bp = &b;
    float v[2] = {1.5f, -2.25f};
    set_name(&L.name, &L.has_name, "prelu1");
    L.has_type = 1;
    L.type = (Caffe__V1LayerParameter__LayerType)999;
    L.n_blobs = 1;
    L.blobs = &bp;
    b.has_num = b.has_channels = b.has_height = b.has_width = 1;
    b.num = b.channels = b.height = 1;
    b.width = 2;
    b.n_data = 2;
    b.data = v;
    net.n_layers = 1;
    net.layers = &lp;
    char path[1024];
    snprintf(path, sizeof path, "%s/enum.caffemodel", dir);
    if (!pack_to_file(&net, path)) {
        CHECK("unknown V1 layer type", 0, "cannot write %s", path);
        return;
    }
    an_tensor_set set = {0};
    if (status_ok("unknown V1 layer type", an_caffe_read(path, &set))) {
        const an_tensor *t = an_tensor_set_find(&set, "prelu1.weight");
        CHECK("unknown V1 layer type", set.count == 1 && t && t->ndim == 4 && t->shape[3] == 2 &&
              t->data[0] == 1.5f && t->data[1] == -2.25f, "%d tensors", set.count);
    }
    an_tensor_set_free(&set);
    unlink(path);
}

/* ---------------------------------------------------------------- limits */

/* the wire format by hand, for what protobuf-c's writer will not write */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        uint8_t *q = realloc(b->p, b->cap);
        if (!q) {
            fprintf(stdout, "out of memory\n");
            exit(2);
        }
        b->p = q;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_varint(bytes *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, tmp, n);
}

static void put_key(bytes *b, unsigned field, int wire) { put_varint(b, (uint64_t)field << 3 | (unsigned)wire); }

static void put_ld(bytes *b, unsigned field, const bytes *payload)
{
    put_key(b, field, 2);
    put_varint(b, payload->n);
    put(b, payload->p, payload->n);
}

static void put_name(bytes *b, unsigned field, const char *s)
{
    put_key(b, field, 2);
    put_varint(b, strlen(s));
    put(b, s, strlen(s));
}

/* a `layer` named `name` holding one blob of shape (n,) with the values
 * v[0..n), stored packed or unpacked */
static void put_layer(bytes *net, const char *name, const float *v, size_t n, int packed)
{
    bytes blob = {0}, shape = {0}, layer = {0}, dims = {0};
    if (packed) {
        put_key(&blob, 5, 2);
        put_varint(&blob, n * 4);
        put(&blob, v, n * 4);
    } else {
        for (size_t i = 0; i < n; i++) {
            put_key(&blob, 5, 5);
            put(&blob, &v[i], 4);
        }
    }
    put_varint(&dims, n);
    put_ld(&shape, 1, &dims);
    put_ld(&blob, 7, &shape);
    put_name(&layer, 1, name);
    put_ld(&layer, 7, &blob);
    put_ld(net, 100, &layer);
    free(blob.p);
    free(shape.p);
    free(layer.p);
    free(dims.p);
}

static int write_bytes(const char *path, const bytes *b) { return write_file(path, b->p, b->n); }

static void check_limits(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/limits.caffemodel", dir);
    float one = 1.0f;

    /* counts the walk refuses before protobuf-c allocates anything */
    bytes net = {0}, layer = {0};
    put_name(&layer, 1, "conv1");
    for (int i = 0; i < 65537; i++) put(&layer, "\x3a\x00", 2);    /* an empty blob (field 7) */
    put_ld(&net, 100, &layer);
    if (write_bytes(path, &net)) expect_failure("refuse 65537 blobs", path, AN_ERR_FORMAT, "more than 65536 blobs");
    net.n = layer.n = 0;
    for (int i = 0; i < 100001; i++) put(&net, "\xa2\x06\x00", 3);  /* an empty `layer` */
    if (write_bytes(path, &net)) expect_failure("refuse 100001 layers", path, AN_ERR_FORMAT, "more than 100000 layers");
    net.n = 0;
    for (long i = 0; i < (1L << 20) + 1; i++) put(&net, "\x18\x00", 2);  /* field 3 (input_dim... ) */
    put_layer(&net, "conv1", &one, 1, 1);
    if (write_bytes(path, &net))
        expect_failure("refuse 2^20 + 1 unknown fields", path, AN_ERR_FORMAT, "more than 1048576 fields");
    net.n = 0;
    bytes dims = {0}, shape = {0}, blob = {0};
    for (int i = 0; i < 33; i++) put_varint(&dims, 1);
    put_ld(&shape, 1, &dims);
    put_ld(&blob, 7, &shape);
    put_key(&blob, 5, 5);
    put(&blob, &one, 4);
    put_name(&layer, 1, "conv1");
    put_ld(&layer, 7, &blob);
    put_ld(&net, 100, &layer);
    if (write_bytes(path, &net))
        expect_failure("refuse 33 dimensions", path, AN_ERR_FORMAT, "has more than 32 dimensions");
    free(dims.p);
    free(shape.p);
    free(blob.p);

    /* everything at the walk's limits at once (2.5 MB of tiny records that
     * protobuf-c would turn into some 100 MB of structs): refused, by the
     * allocation budget (AN_ERR_MEMORY) where protobuf-c's structs are as
     * large as on x86-64 Linux, else for the blobs' missing shapes */
    net.n = layer.n = 0;
    put_name(&layer, 1, "conv1");
    for (int i = 0; i < 65535; i++) put(&layer, "\x3a\x00", 2);
    put_ld(&net, 100, &layer);
    for (int i = 0; i < 99999; i++) put(&net, "\xa2\x06\x00", 3);
    for (long i = 0; i < (1L << 20); i++) put(&net, "\x18\x00", 2);
    if (write_bytes(path, &net)) {
        an_tensor_set set = {(an_tensor *)&set, 1};
        double t0 = now();
        an_status st = an_caffe_read(path, &set);
        double t = now() - t0;
        CHECK("refuse a file at every limit", (st == AN_ERR_MEMORY || st == AN_ERR_FORMAT) &&
              strstr(an_error_message(), path) && !set.items && !set.count && t < 10,
              "%.2f s, status %d: %s", t, (int)st, an_error_message());
    }

    /* many small layers with weights: read, quickly (names checked by sorting) */
    net.n = 0;
    for (int i = 0; i < 65536; i++) {
        char name[32];
        float v = (float)i;
        snprintf(name, sizeof name, "layer%05d", i);
        put_layer(&net, name, &v, 1, 1);
    }
    if (write_bytes(path, &net)) {
        an_tensor_set set = {0};
        double t0 = now();
        an_status st = an_caffe_read(path, &set);
        double t = now() - t0;
        if (status_ok("65536 layers with weights", st)) {
            int ok = set.count == 65536;
            for (int i = 0; ok && i < set.count; i++) {
                char name[48];
                snprintf(name, sizeof name, "layer%05d.weight", i);
                ok = strcmp(set.items[i].name, name) == 0 && set.items[i].ndim == 1 && set.items[i].data[0] == (float)i;
            }
            CHECK("65536 layers with weights", ok && t < 5, "%d tensors in %.2f s", set.count, t);
        }
        an_tensor_set_free(&set);
    }

    /* a large blob stored unpacked (one record per float): protobuf-c keeps a
     * scan entry per record, within the reader's budget */
    net.n = 0;
    size_t n = (size_t)4 << 20;
    float *v = xmalloc(n * sizeof *v);
    hash_fill(v, n, 4999, 1.0f);
    put_layer(&net, "fc6", v, n, 0);
    if (write_bytes(path, &net)) {
        an_tensor_set set = {0};
        double t0 = now();
        an_status st = an_caffe_read(path, &set);
        double t = now() - t0;
        if (status_ok("unpacked 4M floats", st))
            CHECK("unpacked 4M floats", set.count == 1 && an_tensor_numel(&set.items[0]) == (int64_t)n &&
                  memcmp(set.items[0].data, v, n * sizeof *v) == 0, "%.1f MB file read in %.2f s",
                  net.n / 1e6, t);
        an_tensor_set_free(&set);
    }
    free(v);
    free(net.p);
    free(layer.p);
    unlink(path);
}

/* ---------------------------------------------------------------- full size */

/* bvlc_alexnet.caffemodel's layers with weights (tools/make_caffe_fixtures.py:
 * bvlc_alexnet_blobs), in the V1 form: 4-d blobs, fc weights 1x1xOxI,
 * biases 1x1x1xO */
static const struct {
    const char *name;
    Caffe__V1LayerParameter__LayerType type;
    int w[4];
} ALEX[] = {
    {"data", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA, {0}},
    {"conv1", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION, {96, 3, 11, 11}},
    {"relu1", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, {0}},
    {"norm1", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN, {0}},
    {"pool1", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING, {0}},
    {"conv2", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION, {256, 48, 5, 5}},
    {"relu2", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, {0}},
    {"norm2", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN, {0}},
    {"pool2", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING, {0}},
    {"conv3", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION, {384, 256, 3, 3}},
    {"relu3", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, {0}},
    {"conv4", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION, {384, 192, 3, 3}},
    {"relu4", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, {0}},
    {"conv5", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION, {256, 192, 3, 3}},
    {"relu5", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, {0}},
    {"pool5", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING, {0}},
    {"fc6", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT, {1, 1, 4096, 9216}},
    {"relu6", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, {0}},
    {"drop6", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT, {0}},
    {"fc7", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT, {1, 1, 4096, 4096}},
    {"relu7", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, {0}},
    {"drop7", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT, {0}},
    {"fc8", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT, {1, 1, 1000, 4096}},
    {"prob", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX, {0}},
};
#define N_ALEX (int)(sizeof ALEX / sizeof ALEX[0])
#define ALEX_STREAM 5000    /* hash stream of layer i's blob k: 5000 + 2i + k */

static void check_full_size(void)
{
    Caffe__NetParameter net = CAFFE__NET_PARAMETER__INIT;
    Caffe__V1LayerParameter layers[N_ALEX], *lp[N_ALEX];
    Caffe__BlobProto blobs[2 * N_ALEX], *bp[2 * N_ALEX];
    float *values[2 * N_ALEX] = {0};
    size_t total = 0;
    for (int i = 0; i < N_ALEX; i++) {
        Caffe__V1LayerParameter *L = &layers[i];
        caffe__v1_layer_parameter__init(L);
        lp[i] = L;
        set_name(&L->name, &L->has_name, ALEX[i].name);
        L->has_type = 1;
        L->type = ALEX[i].type;
        if (!ALEX[i].w[0]) continue;
        L->n_blobs = 2;
        L->blobs = &bp[2 * i];
        for (int k = 0; k < 2; k++) {
            Caffe__BlobProto *b = &blobs[2 * i + k];
            caffe__blob_proto__init(b);
            bp[2 * i + k] = b;
            b->has_num = b->has_channels = b->has_height = b->has_width = 1;
            if (k == 0) {
                b->num = ALEX[i].w[0];
                b->channels = ALEX[i].w[1];
                b->height = ALEX[i].w[2];
                b->width = ALEX[i].w[3];
            } else {
                b->num = b->channels = b->height = 1;
                b->width = ALEX[i].w[0] == 1 ? ALEX[i].w[2] : ALEX[i].w[0];
            }
            size_t n = (size_t)b->num * b->channels * b->height * b->width;
            values[2 * i + k] = xmalloc(n * sizeof(float));
            hash_fill(values[2 * i + k], n, ALEX_STREAM + 2 * i + k, k ? 0.1f : 0.01f);
            b->n_data = n;
            b->data = values[2 * i + k];
            total += n;
        }
    }
    net.name = "AlexNet";
    net.n_layers = N_ALEX;
    net.layers = lp;
    char path[1024];
    snprintf(path, sizeof path, "%s/bvlc_alexnet_v1.caffemodel", dir);
    double t0 = now();
    int written = pack_to_file(&net, path);
    double t_write = now() - t0;
    struct stat st;
    if (!written || stat(path, &st) != 0) {
        CHECK("full size: write", 0, "cannot write %s (%s)", path, strerror(errno));
        goto done;
    }
    CHECK("full size: 60965224 parameters", total == 60965224, "%zu", total);

    an_tensor_set set = {0};
    t0 = now();
    an_status s = an_caffe_read(path, &set);
    double t_read = now() - t0;
    if (!status_ok("full size: read", s)) goto done;
    printf("full size: %.1f MB written by protobuf-c in %.2f s, read in %.2f s (%.0f MB/s)\n",
           st.st_size / 1e6, t_write, t_read, st.st_size / 1e6 / t_read);
    int ok = set.count == 16, checked = 0;
    char why[200] = "";
    for (int i = 0, j = 0; ok && i < N_ALEX; i++) {
        if (!ALEX[i].w[0]) continue;
        for (int k = 0; k < 2 && ok; k++, j++) {
            const an_tensor *t = &set.items[j];
            const Caffe__BlobProto *b = &blobs[2 * i + k];
            char name[64];
            snprintf(name, sizeof name, "%s.%s", ALEX[i].name, k ? "bias" : "weight");
            if (strcmp(t->name, name) != 0 || t->ndim != 4 || t->shape[0] != b->num || t->shape[1] != b->channels ||
                t->shape[2] != b->height || t->shape[3] != b->width) {
                snprintf(why, sizeof why, "tensor %d: '%s' (%d dims), expected '%s'", j, t->name, t->ndim, name);
                ok = 0;
                break;
            }
            /* a sample: both ends and 1000 spread indices, against the hash */
            size_t n = b->n_data;
            for (size_t m = 0; m < 1002 && ok; m++) {
                size_t idx = m == 1000 ? 0 : m == 1001 ? n - 1 : (size_t)(splitmix64(m + 77 * j) % n);
                float want = hash_uniform(ALEX_STREAM + 2 * i + k, idx) * (k ? 0.1f : 0.01f);
                if (t->data[idx] != want) {
                    snprintf(why, sizeof why, "'%s'[%zu] = %g, expected %g", name, idx, (double)t->data[idx],
                             (double)want);
                    ok = 0;
                }
                checked++;
            }
        }
    }
    CHECK("full size: names, shapes, sampled values", ok, "%s%s%d tensors, %d values checked, %.2f s", why,
          why[0] ? "; " : "", set.count, checked, t_read);
    an_tensor_set_free(&set);
done:
    unlink(path);
    for (int i = 0; i < 2 * N_ALEX; i++) free(values[i]);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (argc > 1) fixture_dir = argv[1];
    const char *tmp = getenv("TMPDIR");
    struct statvfs vfs;
    /* memory (/dev/shm) when it has room for the 244 MB model, else /tmp */
    if (!tmp || !tmp[0])
        tmp = statvfs("/dev/shm", &vfs) == 0 && (double)vfs.f_bavail * vfs.f_frsize > 1e9 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/alexnet_caffe_XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot create a temporary directory: %s\n", strerror(errno));
        return 2;
    }
    /* the engine (and protobuf-c) must print nothing: catch stderr */
    char errpath[600];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved_err = dup(2), errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(errfd, 2);
    close(errfd);

    const char *good[] = {"tiny_new", "tiny_v1", "tiny_double", "tiny_unpacked", "tiny_extra", "tiny_extra_v1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) check_good(good[i]);
    check_bad();
    check_paths();
    check_unknown_enum();
    check_limits();
    if (getenv("AN_CAFFE_NO_FULL_SIZE")) printf("full size: skipped (AN_CAFFE_NO_FULL_SIZE)\n");
    else check_full_size();

    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    size_t n = 0;
    uint8_t *err = read_file(errpath, &n);
    CHECK("nothing printed on stderr", err && n == 0, "%zu bytes: %.200s", n, err ? (const char *)err : "");
    free(err);
    unlink(errpath);
    rmdir(dir);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
