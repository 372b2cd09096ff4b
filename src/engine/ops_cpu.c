/* ops_cpu.c: the CPU backend. Convolution, pooling and LRN are oneDNN
 * primitives, created once per shape and kept in the op; dense layers are
 * oneDNN's sgemm; the element-wise rest is plain C with OpenMP.
 *
 * Activations move between ops in whatever blocked layout oneDNN chose
 * (an_layout), so a chain conv -> pool -> LRN -> conv never reorders;
 * tensors are plain NCHW only where a caller asks for them. */
#include <omp.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <dnnl.h>
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif
#include "ops.h"
#include "rows.h"

struct an_layout { dnnl_memory_desc_t md; };

/* ---------------------------------------------------------------- engine */

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static dnnl_status_t engine_status = dnnl_success;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    an_start_threads();
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success)
        engine_status = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
}

static an_status backend_ready(void)
{
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return an_fail(AN_ERR_BACKEND, "oneDNN could not create a CPU engine (status %d)", (int)engine_status);
    omp_set_num_threads(an_get_threads());
    return AN_OK;
}


void an_copy_parallel(void *dst, const void *src, size_t bytes)
{
    /* one thread copies about 10 GB/s, a PCIe 5 link takes 50: split large
     * copies (2 MB and up) into one 64-byte-aligned slice per thread */
    const size_t min_slice = (size_t)1 << 20;
    int threads = an_get_threads();
    if (bytes < 2 * min_slice || threads < 2) {
        memcpy(dst, src, bytes);
        return;
    }
    if ((size_t)threads > bytes / min_slice) threads = (int)(bytes / min_slice);
    size_t slice = (bytes / threads + 63) & ~(size_t)63;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; t++) {
        size_t start = (size_t)t * slice;
        if (start < bytes)
            memcpy((char *)dst + start, (const char *)src + start, bytes - start < slice ? bytes - start : slice);
    }
}

void an_start_threads(void)
{
    /* OpenMP's threads inherit the mask they are started with: none of them
     * ever runs a signal handler (see signals.c) */
    an_watch_forks();
    an_call old;
    an_call_enter(&old);
    int n = an_get_threads(), started = 0;
#pragma omp parallel num_threads(n)
    {
#pragma omp atomic
        started++;
    }
    (void)started;
    an_call_leave(&old);
}

const char *an_backend_name(void)
{
    static char name[96];
    const dnnl_version_t *v = dnnl_version();
    snprintf(name, sizeof name, "cpu (oneDNN %d.%d.%d, %d threads)", v->major, v->minor, v->patch,
             an_get_threads());
    return name;
}

/* oneDNN out of memory is the caller's memory error, not a backend fault */
#define DNNL_TRY(call, what)                                                           \
    do {                                                                               \
        dnnl_status_t st_ = (call);                                                    \
        if (st_ == dnnl_out_of_memory)                                                 \
            return an_fail(AN_ERR_MEMORY, "oneDNN ran out of memory in %s", what);     \
        if (st_ != dnnl_success)                                                       \
            return an_fail(AN_ERR_BACKEND, "oneDNN failed in %s (status %d)", what, (int)st_); \
    } while (0)

static dnnl_memory_desc_t plain_md(int ndims, const dnnl_dim_t *dims)
{
    static const dnnl_format_tag_t tags[] = {dnnl_format_tag_undef, dnnl_a, dnnl_ab, dnnl_abc,
                                             dnnl_abcd, dnnl_abcde};
    dnnl_memory_desc_t md;
    dnnl_memory_desc_init_by_tag(&md, ndims, dims, dnnl_f32, tags[ndims]);
    return md;
}

static dnnl_memory_desc_t nchw_md(int n, int c, int h, int w)
{
    dnnl_dims_t d = {n, c, h, w};
    return plain_md(4, d);
}

static dnnl_memory_desc_t typed_any_md(int ndims, const dnnl_dim_t *dims, dnnl_data_type_t type)
{
    dnnl_memory_desc_t md;
    dnnl_memory_desc_init_by_tag(&md, ndims, dims, type, dnnl_format_tag_any);
    return md;
}

static dnnl_memory_desc_t any_md(int ndims, const dnnl_dim_t *dims) { return typed_any_md(ndims, dims, dnnl_f32); }

/* Arguments of one primitive execution: memory objects wrapping caller
 * buffers, freed after the call. */
typedef struct { int n; dnnl_exec_arg_t a[8]; } argset;

static an_status arg_add(argset *args, int kind, const dnnl_memory_desc_t *md, const void *data)
{
    dnnl_memory_t m;
    DNNL_TRY(dnnl_memory_create(&m, md, engine, (void *)data), "memory_create");
    args->a[args->n].arg = kind;
    args->a[args->n].memory = m;
    args->n++;
    return AN_OK;
}

static an_status run(dnnl_primitive_t prim, argset *args, an_status status)
{
    if (status == AN_OK) {
        dnnl_status_t st = dnnl_primitive_execute(prim, stream, args->n, args->a);
        if (st == dnnl_success) st = dnnl_stream_wait(stream);
        if (st != dnnl_success) status = an_fail(AN_ERR_BACKEND, "oneDNN execution failed (status %d)", (int)st);
    }
    for (int i = 0; i < args->n; i++) dnnl_memory_destroy(args->a[i].memory);
    args->n = 0;
    return status;
}

/* Copy between two layouts of the same tensor (oneDNN's primitive cache
 * makes re-creating the same reorder cheap). */
static an_status reorder(const dnnl_memory_desc_t *from, const void *src,
                         const dnnl_memory_desc_t *to, void *dst)
{
    if (dnnl_memory_desc_equal(from, to)) {
        if (src != dst) memcpy(dst, src, dnnl_memory_desc_get_size(to));
        return AN_OK;
    }
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, NULL), "reorder_pd");
    /* a test's injected failure stands for oneDNN out of memory (ops.h) */
    dnnl_status_t st = an_fault() ? dnnl_out_of_memory : dnnl_primitive_create(&prim, pd);
    dnnl_primitive_desc_destroy(pd);
    DNNL_TRY(st, "reorder");
    argset args = {0};
    an_status s = arg_add(&args, DNNL_ARG_FROM, from, src);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_TO, to, dst);
    s = run(prim, &args, s);
    dnnl_primitive_destroy(prim);
    return s;
}

/* A growable 64-byte-aligned buffer owned by an op. */
typedef struct { void *data; size_t bytes; } buffer;

static an_status buffer_fit(buffer *b, size_t bytes)
{
    if (b->bytes >= bytes) return AN_OK;
    free(b->data);
    b->data = NULL;
    b->bytes = 0;
    if (an_fault() || posix_memalign(&b->data, 64, bytes ? bytes : 64) != 0)
        return an_fail(AN_ERR_MEMORY, "out of memory allocating %.1f MB", bytes / 1048576.0);
    b->bytes = bytes;
    return AN_OK;
}

static void buffer_free(buffer *b) { free(b->data); b->data = NULL; b->bytes = 0; }

/* `data` laid out as `have`, wanted as `want`: returns a pointer in `want`
 * layout, reordering through `scratch` only when the two differ. */
static an_status as_layout(const dnnl_memory_desc_t *have, const void *data,
                           const dnnl_memory_desc_t *want, buffer *scratch, const void **out)
{
    if (dnnl_memory_desc_equal(have, want)) { *out = data; return AN_OK; }
    an_status s = buffer_fit(scratch, dnnl_memory_desc_get_size(want));
    if (s == AN_OK) s = reorder(have, data, want, scratch->data);
    *out = scratch->data;
    return s;
}

static an_status make_primitive(const void *op_desc, const_dnnl_primitive_attr_t attr,
                                const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *pd,
                                dnnl_primitive_t *prim, const char *what)
{
    DNNL_TRY(dnnl_primitive_desc_create(pd, op_desc, attr, engine, hint), what);
    DNNL_TRY(an_fault() ? dnnl_out_of_memory : dnnl_primitive_create(prim, *pd), what);
    return AN_OK;
}

static const dnnl_memory_desc_t *query(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* ---------------------------------------------------------------- layouts */

static const an_layout *an_layout_plain(an_layout *storage, int n, int c, int h, int w)
{
    storage->md = nchw_md(n, c, h, w);
    return storage;
}

size_t an_layout_bytes(const an_layout *layout) { return dnnl_memory_desc_get_size(&layout->md); }

an_status an_layout_to_plain(const an_layout *layout, const float *src, float *dst)
{
    an_status s = backend_ready();
    if (s != AN_OK) return s;
    const dnnl_memory_desc_t *md = &layout->md;
    dnnl_memory_desc_t plain = plain_md(md->ndims, md->dims);
    return reorder(md, src, &plain, dst);
}

an_status an_layout_from_plain(const an_layout *layout, const float *src, float *dst)
{
    an_status s = backend_ready();
    if (s != AN_OK) return s;
    const dnnl_memory_desc_t *md = &layout->md;
    dnnl_memory_desc_t plain = plain_md(md->ndims, md->dims);
    return reorder(&plain, src, md, dst);
}

/* ReLU backward in any layout: dy *= (y > 0), element by element. The
 * element-wise loops here say `simd`: R builds with -O2, where GCC
 * vectorizes almost nothing by itself. */
static void relu_mask(size_t count, const float *y, float *dy)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < count; i++) dy[i] = y[i] > 0 ? dy[i] : 0.0f;
}

/* ----------------------------------------------------------- convolution */

struct an_conv {
    an_conv_spec s;
    int training;
    an_layout in, out;                          /* what callers pass and get */
    dnnl_memory_desc_t w_plain, b_md;
    dnnl_primitive_desc_t fwd_pd, bwd_data_pd, bwd_w_pd;
    dnnl_primitive_t fwd, bwd_data, bwd_w;
    buffer w_cache, dst_tmp, dsrc_tmp, dw_tmp;
    uint64_t w_version;                         /* of w_cache; 0 = none */
    an_input_layout input_layout;               /* of `in` (an_conv_input_layout) */
    buffer lent[2];                             /* an_conv_lend's regions (not ours to free) */
};


static an_status conv_check(const an_conv_spec *s)
{
    if (s->n < 1 || s->in < 1 || s->out < 1 || s->h < 1 || s->w < 1 || s->k < 1 || s->stride < 1 ||
        s->pad < 0 || s->groups < 1 || s->in % s->groups || s->out % s->groups ||
        s->h + 2 * s->pad < s->k || s->w + 2 * s->pad < s->k)
        return an_fail(AN_ERR_ARGUMENT, "invalid convolution shape (n %d, in %d, %dx%d, out %d, k %d, stride %d, pad %d, groups %d)",
                       s->n, s->in, s->h, s->w, s->out, s->k, s->stride, s->pad, s->groups);
    return AN_OK;
}

/* the weights as the caller keeps them (plain f32), or in the layout and
 * type the primitive picks (`any`: bf16 when the op multiplies in bf16) */
static dnnl_memory_desc_t conv_weights_md(const an_conv_spec *s, int any)
{
    int g = s->groups;
    dnnl_dims_t d5 = {g, s->out / g, s->in / g, s->k, s->k};
    dnnl_dims_t d4 = {s->out, s->in, s->k, s->k};
    if (any) return typed_any_md(g > 1 ? 5 : 4, g > 1 ? d5 : d4, s->bf16 ? dnnl_bf16 : dnnl_f32);
    return g > 1 ? plain_md(5, d5) : plain_md(4, d4);
}

/* pixels where the forward primitive computes from them (in f32 or bf16)
 * and the CPU has the vector kernels that write them (pixels.c: AVX-512;
 * one value at a time they would cost more than oneDNN's reorder) */
static an_input_layout computed_input_layout(const an_conv *op)
{
    if (!an_cpu_has_avx512()) return AN_INPUT_PLANES;
    const dnnl_memory_desc_t *src_md = query(op->fwd_pd, dnnl_query_src_md);
    dnnl_dims_t dims = {op->s.n, op->s.in, op->s.h, op->s.w};
    dnnl_memory_desc_t pixels;
    for (int bf16 = 0; bf16 < 2 && op->s.in == 3; bf16++) {
        dnnl_memory_desc_init_by_tag(&pixels, 4, dims, bf16 ? dnnl_bf16 : dnnl_f32, dnnl_nhwc);
        if (dnnl_memory_desc_equal(src_md, &pixels)) return bf16 ? AN_INPUT_PIXELS_BF16 : AN_INPUT_PIXELS_F32;
    }
    return AN_INPUT_PLANES;
}

an_status an_conv_create(const an_conv_spec *spec, int training, const an_layout *in,
                         int plain_out, an_conv **out)
{
    *out = NULL;
    an_status s = conv_check(spec);
    if (s == AN_OK) s = backend_ready();
    if (s != AN_OK) return s;
    an_conv *op = an_fault() ? NULL : calloc(1, sizeof *op);
    if (!op) return an_fail(AN_ERR_MEMORY, "out of memory creating a convolution");
    op->s = *spec;
    op->training = training;
    int oh, ow;
    an_conv_output_hw(spec, &oh, &ow);
    dnnl_dims_t dst_dims = {spec->n, spec->out, oh, ow}, bias_dims = {spec->out};
    dnnl_dims_t strides = {spec->stride, spec->stride}, pad = {spec->pad, spec->pad};
    if (in) op->in = *in;
    else an_layout_plain(&op->in, spec->n, spec->in, spec->h, spec->w);
    op->w_plain = conv_weights_md(spec, 0);
    op->b_md = plain_md(1, bias_dims);
    /* In bf16 the multiplications take bf16 inputs, weights and output
     * gradients (converted on the way in); outputs, input gradients and
     * weight gradients stay f32, so every other op and SGD see f32. */
    dnnl_data_type_t mul_type = spec->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t w_any = conv_weights_md(spec, 1), dst_any = any_md(4, dst_dims);
    dnnl_memory_desc_t diff_dst_any = typed_any_md(4, dst_dims, mul_type);
    dnnl_dims_t src_dims = {spec->n, spec->in, spec->h, spec->w};
    dnnl_memory_desc_t src_any = typed_any_md(4, src_dims, mul_type), diff_src_any = any_md(4, src_dims);

    dnnl_convolution_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post = NULL;
    s = AN_OK;
    if (spec->relu) {
        if (dnnl_primitive_attr_create(&attr) != dnnl_success || dnnl_post_ops_create(&post) != dnnl_success ||
            dnnl_post_ops_append_eltwise(post, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f) != dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, post) != dnnl_success)
            s = an_fail(AN_ERR_BACKEND, "oneDNN could not attach a ReLU to a convolution");
    }
    /* src "any": oneDNN picks the layout its fastest kernel wants; a chained
     * input already in that layout then passes through untouched. */
    if (s == AN_OK && dnnl_convolution_forward_desc_init(&desc, training ? dnnl_forward_training : dnnl_forward_inference,
                                                         dnnl_convolution_direct, &src_any, &w_any, &op->b_md, &dst_any,
                                                         strides, pad, pad) != dnnl_success)
        s = an_fail(AN_ERR_BACKEND, "oneDNN rejected a convolution shape");
    if (s == AN_OK) s = make_primitive(&desc, attr, NULL, &op->fwd_pd, &op->fwd, "convolution forward");
    if (post) dnnl_post_ops_destroy(post);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (s == AN_OK) {
        op->out.md = *query(op->fwd_pd, dnnl_query_dst_md);
        if (plain_out) op->out.md = nchw_md(spec->n, spec->out, oh, ow);
        /* an input its caller writes comes as the primitive reads it: no
         * reorder before each forward and backward pass */
        op->input_layout = spec->own_input && !in ? computed_input_layout(op) : AN_INPUT_PLANES;
        if (op->input_layout != AN_INPUT_PLANES) op->in.md = *query(op->fwd_pd, dnnl_query_src_md);
    }
    if (s == AN_OK && training) {
        /* the input gradient in the forward input's layout (f32) */
        const dnnl_memory_desc_t *fwd_src = query(op->fwd_pd, dnnl_query_src_md);
        dnnl_memory_desc_t diff_src = *fwd_src;
        if (spec->bf16) diff_src = diff_src_any;
        dnnl_memory_desc_t b_any = any_md(1, bias_dims), dw_any = w_any;
        if (spec->bf16) dw_any.data_type = dnnl_f32;
        dnnl_convolution_desc_t bd, bw;
        if (dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &diff_src, &w_any, &diff_dst_any,
                                                     strides, pad, pad) != dnnl_success ||
            dnnl_convolution_backward_weights_desc_init(&bw, dnnl_convolution_direct, &src_any, &dw_any, &b_any,
                                                        &diff_dst_any, strides, pad, pad) != dnnl_success)
            s = an_fail(AN_ERR_BACKEND, "oneDNN rejected a convolution backward shape");
        if (s == AN_OK)
            s = make_primitive(&bd, NULL, op->fwd_pd, &op->bwd_data_pd, &op->bwd_data, "convolution backward data");
        if (s == AN_OK)
            s = make_primitive(&bw, NULL, op->fwd_pd, &op->bwd_w_pd, &op->bwd_w, "convolution backward weights");
    }
    if (s != AN_OK) { an_conv_free(op); return s; }
    *out = op;
    return AN_OK;
}

const an_layout *an_conv_out_layout(const an_conv *op) { return &op->out; }

void an_conv_free(an_conv *op)
{
    if (!op) return;
    dnnl_primitive_t prims[] = {op->fwd, op->bwd_data, op->bwd_w};
    dnnl_primitive_desc_t pds[] = {op->fwd_pd, op->bwd_data_pd, op->bwd_w_pd};
    for (int i = 0; i < 3; i++) {
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
        if (pds[i]) dnnl_primitive_desc_destroy(pds[i]);
    }
    buffer *bufs[] = {&op->w_cache, &op->dst_tmp, &op->dsrc_tmp, &op->dw_tmp};
    for (int i = 0; i < 4; i++) buffer_free(bufs[i]);
    free(op);
}

/* A convolution's input and output gradient in the layout (and, in bf16,
 * the type) its primitive wants: converted copies live here only for the
 * length of one call, so every convolution shares these two buffers rather
 * than keeping its own (in bf16 that halves the conversions' memory). The
 * CPU device computes one op at a time (the loader's threads never run ops),
 * as a GPU device shares its workspace. */
static buffer conv_src_scratch, conv_dd_scratch;

void an_conv_lend(an_conv *op, void *a, size_t a_bytes, void *b, size_t b_bytes)
{
    op->lent[0] = a ? (buffer){a, a_bytes} : (buffer){NULL, 0};
    op->lent[1] = b ? (buffer){b, b_bytes} : (buffer){NULL, 0};
}

static int lent_refused_for_tests;
static long lent_copies;

long an_cpu_test_lent(int refuse)
{
    lent_refused_for_tests = refuse;
    return lent_copies;
}

/* as_layout for a convolution's input or output gradient within one call
 * (`used`: what the call took of the lent regions so far): the copy goes
 * to the first lent region with room, else to the shared scratch `own` */
static an_status conv_layout(an_conv *op, size_t used[2], buffer *own, const dnnl_memory_desc_t *have,
                             const void *data, const dnnl_memory_desc_t *want, const void **out)
{
    if (dnnl_memory_desc_equal(have, want)) { *out = data; return AN_OK; }
    const size_t need = (dnnl_memory_desc_get_size(want) + 63) & ~(size_t)63;
    for (int r = 0; r < 2 && !lent_refused_for_tests; r++)
        if (op->lent[r].bytes - used[r] >= need) {   /* used[r] never passes bytes */
            void *dst = (char *)op->lent[r].data + used[r];
            used[r] += need;
            lent_copies++;
            *out = dst;
            return reorder(have, data, want, dst);
        }
    return as_layout(have, data, want, own, out);
}

an_status an_conv_forward(an_conv *op, const float *x, const float *w, const float *b,
                          uint64_t w_version, float *y)
{
    const dnnl_memory_desc_t *src_md = query(op->fwd_pd, dnnl_query_src_md);
    const dnnl_memory_desc_t *w_md = query(op->fwd_pd, dnnl_query_weights_md);
    const dnnl_memory_desc_t *dst_md = query(op->fwd_pd, dnnl_query_dst_md);
    const void *src, *wt = w;
    an_status s = backend_ready();
    size_t used[2] = {0, 0};
    if (s == AN_OK) s = conv_layout(op, used, &conv_src_scratch, &op->in.md, x, src_md, &src);
    /* Reordered weights are cached while the parameters keep their version. */
    if (s == AN_OK && !dnnl_memory_desc_equal(&op->w_plain, w_md)) {
        if (w_version == 0 || w_version != op->w_version) {
            op->w_version = 0;
            s = buffer_fit(&op->w_cache, dnnl_memory_desc_get_size(w_md));
            if (s == AN_OK) s = reorder(&op->w_plain, w, w_md, op->w_cache.data);
            if (s == AN_OK) op->w_version = w_version;
        }
        wt = op->w_cache.data;
    }
    int direct = dnnl_memory_desc_equal(dst_md, &op->out.md);
    void *dst = y;
    if (s == AN_OK && !direct) {
        s = buffer_fit(&op->dst_tmp, dnnl_memory_desc_get_size(dst_md));
        dst = op->dst_tmp.data;
    }
    argset args = {0};
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_SRC, src_md, src);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_WEIGHTS, w_md, wt);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_BIAS, &op->b_md, b);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DST, dst_md, dst);
    s = run(op->fwd, &args, s);
    if (s == AN_OK && !direct) s = reorder(dst_md, dst, &op->out.md, y);
    return s;
}

an_input_layout an_conv_input_layout(const an_conv *op) { return op->input_layout; }

an_status an_conv_backward(an_conv *op, const float *x, const float *w, const float *y,
                           float *dy, float *dx, float *dw, float *db)
{
    if (!op->training) return an_fail(AN_ERR_ARGUMENT, "convolution was created for inference only");
    an_status s = backend_ready();
    if (s != AN_OK) return s;
    if (op->s.relu) relu_mask(an_layout_bytes(&op->out) / sizeof(float), y, dy);
    argset args = {0};
    size_t used[2] = {0, 0};   /* of the lent regions, by this call's copies */
    const dnnl_memory_desc_t *w_dd_md = query(op->bwd_w_pd, dnnl_query_diff_dst_md);
    const void *w_dd = NULL;   /* dy as the weight gradient took it */
    /* gradient wrt the weights and bias (dw NULL: the input gradient alone) */
    if (dw) {
        const dnnl_memory_desc_t *src_md = query(op->bwd_w_pd, dnnl_query_src_md);
        const dnnl_memory_desc_t *dd_md = w_dd_md;
        const dnnl_memory_desc_t *dw_md = query(op->bwd_w_pd, dnnl_query_diff_weights_md);
        const dnnl_memory_desc_t *db_md = dnnl_primitive_desc_query_md(op->bwd_w_pd, dnnl_query_diff_weights_md, 1);
        const void *src = NULL, *dd = NULL;
        void *dwt = dw;
        int dw_direct = dnnl_memory_desc_equal(dw_md, &op->w_plain);
        s = conv_layout(op, used, &conv_src_scratch, &op->in.md, x, src_md, &src);
        if (s == AN_OK) s = conv_layout(op, used, &conv_dd_scratch, &op->out.md, dy, dd_md, &dd);
        if (s == AN_OK && !dw_direct) {
            s = buffer_fit(&op->dw_tmp, dnnl_memory_desc_get_size(dw_md));
            dwt = op->dw_tmp.data;
        }
        if (s == AN_OK) s = arg_add(&args, DNNL_ARG_SRC, src_md, src);
        if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_DST, dd_md, dd);
        if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_WEIGHTS, dw_md, dwt);
        if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_BIAS, db_md, db);
        s = run(op->bwd_w, &args, s);
        if (s == AN_OK && !dw_direct) s = reorder(dw_md, dwt, &op->w_plain, dw);
        w_dd = dd;
    }
    /* gradient wrt the input */
    if (s == AN_OK && dx) {
        const dnnl_memory_desc_t *dd_md = query(op->bwd_data_pd, dnnl_query_diff_dst_md);
        const dnnl_memory_desc_t *w_md = query(op->bwd_data_pd, dnnl_query_weights_md);
        const dnnl_memory_desc_t *ds_md = query(op->bwd_data_pd, dnnl_query_diff_src_md);
        const void *dd, *wt;
        buffer w_tmp = {0};
        int ds_direct = dnnl_memory_desc_equal(ds_md, &op->in.md);
        void *ds = dx;
        /* dy converted once when both gradients take it the same way */
        if (w_dd && dnnl_memory_desc_equal(dd_md, w_dd_md)) dd = w_dd;
        else s = conv_layout(op, used, &conv_dd_scratch, &op->out.md, dy, dd_md, &dd);
        if (s == AN_OK) s = as_layout(&op->w_plain, w, w_md, &w_tmp, &wt);
        if (s == AN_OK && !ds_direct) {
            s = buffer_fit(&op->dsrc_tmp, dnnl_memory_desc_get_size(ds_md));
            ds = op->dsrc_tmp.data;
        }
        if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_DST, dd_md, dd);
        if (s == AN_OK) s = arg_add(&args, DNNL_ARG_WEIGHTS, w_md, wt);
        if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_SRC, ds_md, ds);
        s = run(op->bwd_data, &args, s);
        if (s == AN_OK && !ds_direct) s = reorder(ds_md, ds, &op->in.md, dx);
        buffer_free(&w_tmp);
    }
    return s;
}

/* ------------------------------------------------------------ max pooling */

struct an_pool {
    an_pool_spec s;
    int training;
    an_layout in, out;
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    dnnl_primitive_t fwd, bwd;
    buffer workspace, src_tmp, dst_tmp;
};


an_status an_pool_create(const an_pool_spec *spec, int training, const an_layout *in,
                         int plain_out, an_pool **out)
{
    *out = NULL;
    if (spec->n < 1 || spec->c < 1 || spec->k < 1 || spec->stride < 1 || spec->h < spec->k || spec->w < spec->k)
        return an_fail(AN_ERR_ARGUMENT, "invalid pooling shape (n %d, c %d, %dx%d, k %d, stride %d)",
                       spec->n, spec->c, spec->h, spec->w, spec->k, spec->stride);
    an_status s = backend_ready();
    if (s != AN_OK) return s;
    an_pool *op = an_fault() ? NULL : calloc(1, sizeof *op);
    if (!op) return an_fail(AN_ERR_MEMORY, "out of memory creating a pooling op");
    op->s = *spec;
    op->training = training;
    if (in) op->in = *in;
    else an_layout_plain(&op->in, spec->n, spec->c, spec->h, spec->w);
    int oh, ow;
    an_pool_output_hw(spec, &oh, &ow);
    dnnl_dims_t dst_dims = {spec->n, spec->c, oh, ow};
    dnnl_dims_t strides = {spec->stride, spec->stride}, kernel = {spec->k, spec->k}, dil = {0, 0}, pad = {0, 0};
    dnnl_memory_desc_t dst_any = any_md(4, dst_dims);
    dnnl_pooling_v2_desc_t desc;
    if (dnnl_pooling_v2_forward_desc_init(&desc, training ? dnnl_forward_training : dnnl_forward_inference,
                                          dnnl_pooling_max, &op->in.md, &dst_any, strides, kernel, dil, pad,
                                          pad) != dnnl_success)
        s = an_fail(AN_ERR_BACKEND, "oneDNN rejected a pooling shape");
    if (s == AN_OK) s = make_primitive(&desc, NULL, NULL, &op->fwd_pd, &op->fwd, "pooling forward");
    if (s == AN_OK) {
        op->out.md = *query(op->fwd_pd, dnnl_query_dst_md);
        if (plain_out) op->out.md = nchw_md(spec->n, spec->c, oh, ow);
    }
    if (s == AN_OK && training) {
        dnnl_pooling_v2_desc_t bd;
        const dnnl_memory_desc_t *dst_md = query(op->fwd_pd, dnnl_query_dst_md);
        if (dnnl_pooling_v2_backward_desc_init(&bd, dnnl_pooling_max, &op->in.md, dst_md, strides, kernel, dil,
                                               pad, pad) != dnnl_success)
            s = an_fail(AN_ERR_BACKEND, "oneDNN rejected a pooling backward shape");
        if (s == AN_OK) s = make_primitive(&bd, NULL, op->fwd_pd, &op->bwd_pd, &op->bwd, "pooling backward");
        if (s == AN_OK) s = buffer_fit(&op->workspace, dnnl_memory_desc_get_size(query(op->fwd_pd, dnnl_query_workspace_md)));
    }
    if (s != AN_OK) { an_pool_free(op); return s; }
    *out = op;
    return AN_OK;
}

const an_layout *an_pool_out_layout(const an_pool *op) { return &op->out; }

void an_pool_free(an_pool *op)
{
    if (!op) return;
    if (op->fwd) dnnl_primitive_destroy(op->fwd);
    if (op->bwd) dnnl_primitive_destroy(op->bwd);
    if (op->fwd_pd) dnnl_primitive_desc_destroy(op->fwd_pd);
    if (op->bwd_pd) dnnl_primitive_desc_destroy(op->bwd_pd);
    buffer_free(&op->workspace);
    buffer_free(&op->src_tmp);
    buffer_free(&op->dst_tmp);
    free(op);
}

an_status an_pool_forward(an_pool *op, const float *x, float *y)
{
    const dnnl_memory_desc_t *dst_md = query(op->fwd_pd, dnnl_query_dst_md);
    int direct = dnnl_memory_desc_equal(dst_md, &op->out.md);
    void *dst = y;
    an_status s = backend_ready();
    if (s == AN_OK && !direct) {
        s = buffer_fit(&op->dst_tmp, dnnl_memory_desc_get_size(dst_md));
        dst = op->dst_tmp.data;
    }
    argset args = {0};
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_SRC, &op->in.md, x);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DST, dst_md, dst);
    if (s == AN_OK && op->training)
        s = arg_add(&args, DNNL_ARG_WORKSPACE, query(op->fwd_pd, dnnl_query_workspace_md), op->workspace.data);
    s = run(op->fwd, &args, s);
    if (s == AN_OK && !direct) s = reorder(dst_md, dst, &op->out.md, y);
    return s;
}

an_status an_pool_backward(an_pool *op, const float *dy, float *dx)
{
    if (!op->training) return an_fail(AN_ERR_ARGUMENT, "pooling was created for inference only");
    const dnnl_memory_desc_t *dd_md = query(op->bwd_pd, dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *ds_md = query(op->bwd_pd, dnnl_query_diff_src_md);
    const void *dd;
    an_status s = backend_ready();
    if (s == AN_OK) s = as_layout(&op->out.md, dy, dd_md, &op->dst_tmp, &dd);
    int direct = dnnl_memory_desc_equal(ds_md, &op->in.md);
    void *ds = dx;
    if (s == AN_OK && !direct) {
        s = buffer_fit(&op->src_tmp, dnnl_memory_desc_get_size(ds_md));
        ds = op->src_tmp.data;
    }
    argset args = {0};
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_DST, dd_md, dd);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_SRC, ds_md, ds);
    if (s == AN_OK)
        s = arg_add(&args, DNNL_ARG_WORKSPACE, query(op->fwd_pd, dnnl_query_workspace_md), op->workspace.data);
    s = run(op->bwd, &args, s);
    if (s == AN_OK && !direct) s = reorder(ds_md, ds, &op->in.md, dx);
    return s;
}

/* -------------------------------------------------------------------- LRN */

struct an_lrn {
    an_lrn_spec s;
    int training;
    an_layout in;                 /* LRN keeps its input's layout */
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    dnnl_primitive_t fwd, bwd;
    buffer workspace;
};

an_status an_lrn_create(const an_lrn_spec *spec, int training, const an_layout *in, an_lrn **out)
{
    *out = NULL;
    if (spec->n < 1 || spec->c < 1 || spec->h < 1 || spec->w < 1 || spec->size < 1 || spec->size % 2 == 0)
        return an_fail(AN_ERR_ARGUMENT, "invalid LRN shape (n %d, c %d, %dx%d, size %d)", spec->n, spec->c,
                       spec->h, spec->w, spec->size);
    an_status s = backend_ready();
    if (s != AN_OK) return s;
    an_lrn *op = an_fault() ? NULL : calloc(1, sizeof *op);
    if (!op) return an_fail(AN_ERR_MEMORY, "out of memory creating an LRN op");
    op->s = *spec;
    op->training = training;
    if (in) op->in = *in;
    else an_layout_plain(&op->in, spec->n, spec->c, spec->h, spec->w);
    /* oneDNN divides alpha by the window size; Heuritech's LRN does not. */
    float alpha = spec->alpha * spec->size;
    dnnl_lrn_desc_t desc;
    if (dnnl_lrn_forward_desc_init(&desc, training ? dnnl_forward_training : dnnl_forward_inference,
                                   dnnl_lrn_across_channels, &op->in.md, spec->size, alpha, spec->beta,
                                   spec->k) != dnnl_success)
        s = an_fail(AN_ERR_BACKEND, "oneDNN rejected an LRN shape");
    if (s == AN_OK) s = make_primitive(&desc, NULL, NULL, &op->fwd_pd, &op->fwd, "LRN forward");
    if (s == AN_OK && training) {
        dnnl_lrn_desc_t bd;
        if (dnnl_lrn_backward_desc_init(&bd, dnnl_lrn_across_channels, &op->in.md, &op->in.md, spec->size, alpha,
                                        spec->beta, spec->k) != dnnl_success)
            s = an_fail(AN_ERR_BACKEND, "oneDNN rejected an LRN backward shape");
        if (s == AN_OK) s = make_primitive(&bd, NULL, op->fwd_pd, &op->bwd_pd, &op->bwd, "LRN backward");
        if (s == AN_OK) s = buffer_fit(&op->workspace, dnnl_memory_desc_get_size(query(op->fwd_pd, dnnl_query_workspace_md)));
    }
    if (s != AN_OK) { an_lrn_free(op); return s; }
    *out = op;
    return AN_OK;
}

void an_lrn_free(an_lrn *op)
{
    if (!op) return;
    if (op->fwd) dnnl_primitive_destroy(op->fwd);
    if (op->bwd) dnnl_primitive_destroy(op->bwd);
    if (op->fwd_pd) dnnl_primitive_desc_destroy(op->fwd_pd);
    if (op->bwd_pd) dnnl_primitive_desc_destroy(op->bwd_pd);
    buffer_free(&op->workspace);
    free(op);
}

an_status an_lrn_forward(an_lrn *op, const float *x, float *y)
{
    argset args = {0};
    an_status s = backend_ready();
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_SRC, &op->in.md, x);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DST, &op->in.md, y);
    if (s == AN_OK && op->training)
        s = arg_add(&args, DNNL_ARG_WORKSPACE, query(op->fwd_pd, dnnl_query_workspace_md), op->workspace.data);
    return run(op->fwd, &args, s);
}

an_status an_lrn_backward(an_lrn *op, const float *x, const float *dy, float *dx)
{
    if (!op->training) return an_fail(AN_ERR_ARGUMENT, "LRN was created for inference only");
    argset args = {0};
    an_status s = backend_ready();
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_SRC, &op->in.md, x);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_DST, &op->in.md, dy);
    if (s == AN_OK) s = arg_add(&args, DNNL_ARG_DIFF_SRC, &op->in.md, dx);
    if (s == AN_OK)
        s = arg_add(&args, DNNL_ARG_WORKSPACE, query(op->fwd_pd, dnnl_query_workspace_md), op->workspace.data);
    return run(op->bwd, &args, s);
}

/* ------------------------------------------------------------------ dense */

an_status an_dense_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                           int relu, float *y)
{
    /* y^T = W x^T streams the big weight matrix once with long rows: measured
     * 2-5x faster than x W^T in sgemm for the small batches used here. */
    float *yt = an_fault() ? NULL : malloc(sizeof(float) * n * out);
    if (!yt) return an_fail(AN_ERR_MEMORY, "out of memory in a dense layer (%d x %d)", n, out);
    dnnl_status_t st = dnnl_sgemm('N', 'T', out, n, in, 1.0f, w, in, x, in, 0.0f, yt, n);
    if (st == dnnl_success) {
#pragma omp parallel for schedule(static)
        for (int j = 0; j < out; j++)
            for (int i = 0; i < n; i++) {
                float v = yt[(size_t)j * n + i] + b[j];
                y[(size_t)i * out + j] = relu && !(v > 0) ? 0 : v;
            }
    }
    free(yt);
    if (st != dnnl_success) return an_fail(AN_ERR_BACKEND, "oneDNN sgemm failed (status %d)", (int)st);
    return AN_OK;
}

an_status an_dense_backward(int n, int in, int out, const float *x, const float *w, const float *y,
                            int relu, float *dy, float *dx, float *dw, float *db)
{
    if (relu) relu_mask((size_t)n * out, y, dy);
    dnnl_status_t st = dnnl_success;
    if (dw) {   /* NULL: the input gradient alone (Grad-CAM) */
        st = dnnl_sgemm('T', 'N', out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
        if (st != dnnl_success) return an_fail(AN_ERR_BACKEND, "oneDNN sgemm failed (status %d)", (int)st);
#pragma omp parallel for schedule(static)
        for (int j = 0; j < out; j++) {
            float sum = 0;
            for (int i = 0; i < n; i++) sum += dy[(size_t)i * out + j];
            db[j] = sum;
        }
    }
    if (dx && (st = dnnl_sgemm('N', 'N', n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in)) != dnnl_success)
        return an_fail(AN_ERR_BACKEND, "oneDNN sgemm failed (status %d)", (int)st);
    return AN_OK;
}

/* ---------------------------------------------------------------- softmax */

void an_softmax_forward(int n, int classes, const float *logits, float *prob)
{
    for (int i = 0; i < n; i++) an_softmax_row(logits + (size_t)i * classes, prob + (size_t)i * classes, classes);
}

/* ---------------------------------------------------------------- dropout */

void an_dropout_forward(size_t count, float rate, an_rng *rng, float *x, uint8_t *keep)
{
    /* drawn sequentially so that a seed gives the same masks whatever the threads */
    const float scale = 1.0f / (1.0f - rate);
    for (size_t i = 0; i < count; i++) {
        keep[i] = an_rng_uniform(rng) >= rate;
        x[i] = keep[i] ? x[i] * scale : 0.0f;
    }
}

void an_dropout_backward(size_t count, float rate, const uint8_t *keep, float *dy)
{
    const float scale = 1.0f / (1.0f - rate);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < count; i++) dy[i] = keep[i] ? dy[i] * scale : 0.0f;
}

/* ------------------------------------------------------------------- loss */

void an_loss_forward_backward(int n, int classes, const float *logits, const float *prob,
                              const int *labels, an_loss_kind kind, float *dlogits,
                              double *loss_sum, int *correct)
{
    for (int i = 0; i < n; i++) {
        size_t row = (size_t)i * classes;
        int right;
        *loss_sum += an_loss_row(logits + row, prob + row, labels[i], n, classes, kind == AN_LOSS_MSE,
                                 dlogits + row, &right);
        *correct += right;
    }
}

/* -------------------------------------------------------------------- SGD */

/* the vector extensions the x86-64 kernels use, probed once: bit 0 AVX2,
 * bit 1 AVX-512 F and VL */
static int cpu_vector_isa(void)
{
#if defined(__GNUC__) && defined(__x86_64__)
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = (__builtin_cpu_supports("avx2") ? 1 : 0) |
                (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") ? 2 : 0);
    }
    return known;
#else
    return 0;
#endif
}

int an_cpu_has_avx2(void) { return (cpu_vector_isa() & 1) != 0; }
int an_cpu_has_avx512(void) { return (cpu_vector_isa() & 2) != 0; }

/* Values lo..hi-1, all weights (decayed) or all biases, one at a time. */
static void sgd_run_scalar(size_t lo, size_t hi, float *p, const float *g, float *v, int decayed,
                           const an_sgd_step *s)
{
    const float lr = s->lr, mu = s->momentum, wd = s->weight_decay;
    for (size_t k = lo; k < hi; k++) an_sgd_value(&p[k], g[k], &v[k], decayed, lr, mu, wd, s->nesterov);
}

#if defined(__GNUC__) && defined(__x86_64__)
/* The same, eight values at a time: an_sgd_value's operations in its order
 * and no fused multiply-add (the target has none), so every value comes out
 * bit for bit as the scalar code makes it (test_engine: sgd). The scalar
 * loop ran at 20 instructions a value, slower than memory; this one keeps
 * up with it. Returns where the scalar tail starts. */
__attribute__((target("avx2"))) static size_t sgd_run_avx2(size_t lo, size_t hi, float *p, const float *g,
                                                           float *v, int decayed, const an_sgd_step *s)
{
    const __m256 lr = _mm256_set1_ps(s->lr), mu = _mm256_set1_ps(s->momentum),
                 wd = _mm256_set1_ps(decayed ? s->weight_decay : 0.0f);
    size_t k = lo;
    for (; k + 8 <= hi; k += 8) {
        __m256 pk = _mm256_loadu_ps(p + k), gk = _mm256_loadu_ps(g + k), vk = _mm256_loadu_ps(v + k);
        /* a bias adds 0.0f as the scalar code does (-0.0 becomes +0.0 alike) */
        __m256 grad = _mm256_add_ps(gk, decayed ? _mm256_mul_ps(wd, pk) : _mm256_setzero_ps());
        __m256 lr_grad = _mm256_mul_ps(lr, grad);
        __m256 vnew = _mm256_sub_ps(_mm256_mul_ps(mu, vk), lr_grad);
        _mm256_storeu_ps(v + k, vnew);
        __m256 delta = s->nesterov ? _mm256_sub_ps(_mm256_mul_ps(mu, vnew), lr_grad) : vnew;
        _mm256_storeu_ps(p + k, _mm256_add_ps(pk, delta));
    }
    return k;
}
#endif

static void sgd_run(size_t lo, size_t hi, float *p, const float *g, float *v, int decayed, const an_sgd_step *s)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (an_cpu_has_avx2()) lo = sgd_run_avx2(lo, hi, p, g, v, decayed, s);
#endif
    sgd_run_scalar(lo, hi, p, g, v, decayed, s);
}

void an_sgd_apply(size_t count, size_t weight_count, float *p, const float *g, float *v,
                  const an_sgd_step *step)
{
    /* blocks of 64K values (256 KB of each array) split at the weights' end */
    const size_t block = (size_t)1 << 16, blocks = (count + block - 1) / block;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        size_t lo = b * block, hi = lo + block < count ? lo + block : count;
        size_t mid = weight_count < lo ? lo : weight_count > hi ? hi : weight_count;
        sgd_run(lo, mid, p, g, v, 1, step);
        sgd_run(mid, hi, p, g, v, 0, step);
    }
}

/* ============================================================ the device
 * The CPU backend's table: host memory, and adapters where the table's
 * uniform signatures (a device first, x and y for every backward) differ
 * from the functions above. */

static an_status cpu_alloc(an_device *dev, size_t bytes, void **out)
{
    (void)dev;
    *out = NULL;
    if (an_fault() || posix_memalign(out, 64, bytes ? bytes : 64) != 0) {
        *out = NULL;
        return an_fail(AN_ERR_MEMORY, "out of memory allocating %.1f MB", bytes / 1048576.0);
    }
    return AN_OK;
}
static void cpu_release(an_device *dev, void *ptr) { (void)dev; free(ptr); }
static an_status cpu_copy(an_device *dev, void *dst, const void *src, size_t bytes)
{
    (void)dev;
    if (dst != src) memcpy(dst, src, bytes);
    return AN_OK;
}
static an_status cpu_zero(an_device *dev, void *dst, size_t bytes)
{
    (void)dev;
    memset(dst, 0, bytes);
    return AN_OK;
}
/* what is left under one resource limit, given this process's use of it
 * (in pages); infinite without a limit */
static double left_under(int resource, unsigned long long used_pages, double page)
{
    struct rlimit lim;
    if (getrlimit(resource, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return INFINITY;
    double left = (double)lim.rlim_cur - (double)used_pages * page;
    return left > 0 ? left : 0;
}

double an_host_memory_room(void)
{
    double page = (double)sysconf(_SC_PAGESIZE);
    double room = (double)sysconf(_SC_AVPHYS_PAGES) * page;
    /* statm: size, resident, shared, text, lib, data (+ stack), dirty, in pages */
    unsigned long long size = 0, resident, shared, text, lib, data = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    int known = f && fscanf(f, "%llu %llu %llu %llu %llu %llu", &size, &resident, &shared, &text, &lib, &data) == 6;
    if (f) fclose(f);
    if (known) {
        room = fmin(room, left_under(RLIMIT_AS, size, page));
        room = fmin(room, left_under(RLIMIT_DATA, data, page));
    }
    return room;
}

static an_status cpu_memory(an_device *dev, double *free_bytes, double *total_bytes)
{
    (void)dev;
    double page = (double)sysconf(_SC_PAGESIZE);
    *total_bytes = (double)sysconf(_SC_PHYS_PAGES) * page;
    *free_bytes = an_host_memory_room();
    return AN_OK;
}
/* oneDNN's bf16 kernels need AVX512_BF16 (Cooper Lake, Sapphire Rapids,
 * Zen 4); elsewhere it would emulate them, slower than f32. */
static int bf16_hidden_for_tests;

void an_cpu_test_hide_bf16(int hide) { bf16_hidden_for_tests = hide; }

static const char *cpu_bf16_missing(an_device *dev)
{
    (void)dev;
    if (backend_ready() != AN_OK) return "oneDNN could not start";
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (bf16_hidden_for_tests || (isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16)
        return "this CPU has no AVX512_BF16 instructions";
    return NULL;
}

static an_status cpu_download_plain(an_device *dev, const an_layout *layout, const float *src, float *dst)
{
    (void)dev;
    return an_layout_to_plain(layout, src, dst);
}
static an_status cpu_conv_create(an_device *dev, const an_conv_spec *spec, int training, const an_layout *in,
                                 int plain_out, an_conv **out)
{
    (void)dev;
    return an_conv_create(spec, training, in, plain_out, out);
}
static an_status cpu_pool_create(an_device *dev, const an_pool_spec *spec, int training, const an_layout *in,
                                 int plain_out, an_pool **out)
{
    (void)dev;
    return an_pool_create(spec, training, in, plain_out, out);
}
static an_status cpu_pool_backward(an_pool *op, const float *x, const float *y, const float *dy, float *dx)
{
    (void)x; (void)y;   /* oneDNN keeps the argmax in its workspace */
    return an_pool_backward(op, dy, dx);
}
static an_status cpu_lrn_create(an_device *dev, const an_lrn_spec *spec, int training, const an_layout *in,
                                an_lrn **out)
{
    (void)dev;
    return an_lrn_create(spec, training, in, out);
}
static an_status cpu_lrn_backward(an_lrn *op, const float *x, const float *y, const float *dy, float *dx)
{
    (void)y;
    return an_lrn_backward(op, x, dy, dx);
}
static an_status cpu_dense_forward(an_device *dev, int n, int in, int out, const float *x, const float *w,
                                   const float *b, int relu, float *y)
{
    (void)dev;
    return an_dense_forward(n, in, out, x, w, b, relu, y);
}
static an_status cpu_dense_backward(an_device *dev, int n, int in, int out, const float *x, const float *w,
                                    const float *y, int relu, float *dy, float *dx, float *dw, float *db)
{
    (void)dev;
    return an_dense_backward(n, in, out, x, w, y, relu, dy, dx, dw, db);
}
static an_status cpu_softmax(an_device *dev, int n, int classes, const float *logits, float *prob)
{
    (void)dev;
    an_softmax_forward(n, classes, logits, prob);
    return AN_OK;
}
static an_status cpu_dropout_forward(an_device *dev, size_t count, float rate, an_rng *rng, float *x,
                                     uint8_t *keep)
{
    (void)dev;
    an_dropout_forward(count, rate, rng, x, keep);
    return AN_OK;
}
static an_status cpu_dropout_backward(an_device *dev, size_t count, float rate, const uint8_t *keep, float *dy)
{
    (void)dev;
    an_dropout_backward(count, rate, keep, dy);
    return AN_OK;
}
static an_status cpu_loss(an_device *dev, int n, int classes, const float *logits, const float *prob,
                          const int *labels, an_loss_kind kind, float *dlogits, double *loss_sum, int *correct)
{
    (void)dev;
    an_loss_forward_backward(n, classes, logits, prob, labels, kind, dlogits, loss_sum, correct);
    return AN_OK;
}
static an_status cpu_preprocess(an_device *dev, int n, int side, const float *images, const float mean[3],
                                const float scale[3], an_input_layout layout, void *y)
{
    (void)dev;
    an_preprocess(n, side, images, mean, scale, layout, y);
    return AN_OK;
}
static an_status cpu_sgd(an_device *dev, size_t count, size_t weight_count, float *p, const float *g, float *v,
                         const an_sgd_step *step)
{
    (void)dev;
    an_sgd_apply(count, weight_count, p, g, v, step);
    return AN_OK;
}
static an_status cpu_scale(an_device *dev, float *x, size_t count, float factor)
{
    (void)dev;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < count; i++) x[i] *= factor;
    return AN_OK;
}
static void cpu_close(an_device *dev) { (void)dev; }

static const an_backend cpu_backend = {
    "cpu", cpu_close,
    cpu_alloc, cpu_release, cpu_copy, cpu_copy, cpu_zero, cpu_memory, cpu_bf16_missing,
    an_layout_bytes, cpu_download_plain,
    cpu_conv_create, an_conv_out_layout, an_conv_free, an_conv_forward, an_conv_backward, an_conv_lend,
    an_conv_input_layout,
    cpu_pool_create, an_pool_out_layout, an_pool_free, an_pool_forward, cpu_pool_backward,
    cpu_lrn_create, an_lrn_free, an_lrn_forward, cpu_lrn_backward,
    cpu_dense_forward, cpu_dense_backward, cpu_softmax,
    cpu_dropout_forward, cpu_dropout_backward, cpu_loss, cpu_preprocess, cpu_sgd, cpu_scale,
};

an_device *an_cpu_device(void)
{
    static an_device cpu = {&cpu_backend};
    return &cpu;
}
