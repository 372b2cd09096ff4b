/* ops.h: the backend operations, each a forward and (for training) a
 * backward, created once per shape. Activations travel between ops in the
 * backend's own layout (an_layout: blocked on the CPU); an op created with
 * `in` = NULL takes plain NCHW, and one created with `plain_out` gives plain
 * NCHW, which is how tests and the edges of the net see them. Weights and
 * their gradients are always plain (PyTorch layout).
 *
 * Two backends implement the table `an_backend` at the end of this file: the
 * CPU (ops_cpu.c: oneDNN) and CUDA (ops_cuda.cu: cuDNN, cuBLAS). The net
 * reaches every op through its device's table, so net.c and train.c do not
 * know where they run. The plain functions declared first are the CPU
 * backend's own, on host memory; the tests call them directly. */
#ifndef AN_OPS_H
#define AN_OPS_H

#include <signal.h>
#include "alexnet.h"
#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct an_layout an_layout;
/* bytes a tensor takes in this layout (blocked layouts may pad channels) */
size_t an_layout_bytes(const an_layout *layout);
an_status an_layout_to_plain(const an_layout *layout, const float *src, float *dst);
an_status an_layout_from_plain(const an_layout *layout, const float *src, float *dst);

/* ---- convolution (groups, zero padding, optional fused ReLU) ---- */
typedef struct {
    int n, in, h, w;        /* input batch, channels, rows, cols */
    int out, k, stride, pad, groups;
    int relu;               /* apply ReLU to the output */
    int bf16;               /* multiply in bf16 (inputs, weights and output
                             * gradients rounded), accumulate and store in f32 */
    int own_input;          /* the input comes in the layout the convolution
                             * computes from (an_conv_input_layout), not in
                             * planes: a first layer's, written by its caller */
} an_conv_spec;

typedef struct an_conv an_conv;

static inline void an_conv_output_hw(const an_conv_spec *s, int *oh, int *ow)
{
    *oh = (s->h + 2 * s->pad - s->k) / s->stride + 1;
    *ow = (s->w + 2 * s->pad - s->k) / s->stride + 1;
}
/* `training` also prepares the backward primitives. */
an_status an_conv_create(const an_conv_spec *spec, int training, const an_layout *in,
                         int plain_out, an_conv **out);
const an_layout *an_conv_out_layout(const an_conv *op);
void an_conv_free(an_conv *op);
/* w: (out, in/groups, k, k), b: (out). The weights reordered for the
 * primitive are kept while `w_version` stays the same non-zero number. */
an_status an_conv_forward(an_conv *op, const float *x, const float *w, const float *b,
                          uint64_t w_version, float *y);
/* The layout its input comes in: for a 3-channel input created with
 * own_input, the one it computes from (oneDNN's pick: on AVX-512 CPUs
 * pixels, in the convolution's type), so that the caller writes the input
 * there rather than into planes the convolution would reorder at every
 * forward and backward pass; otherwise planes. */
an_input_layout an_conv_input_layout(const an_conv *op);
/* dy is the gradient with respect to the (post-ReLU) output y; the ReLU
 * mask is applied from y inside. dx may be NULL (first layer). dw and db
 * are overwritten; both NULL: the input gradient alone. */
an_status an_conv_backward(an_conv *op, const float *x, const float *w, const float *y,
                           float *dy, float *dx, float *dw, float *db);
/* Two regions of memory the convolution may use for its converted copies
 * of the input and of the output gradient (bf16's), when they have room,
 * instead of the scratch all convolutions share: a training plan lends the
 * free ends of its two gradient buffers, so that the copies take no memory
 * of their own. The lender keeps both regions unused whenever the op runs;
 * NULL (or 0 bytes): none. */
void an_conv_lend(an_conv *op, void *a, size_t a_bytes, void *b, size_t b_bytes);

/* ---- max pooling, no padding ---- */
typedef struct { int n, c, h, w, k, stride; } an_pool_spec;
typedef struct an_pool an_pool;
static inline void an_pool_output_hw(const an_pool_spec *s, int *oh, int *ow)
{
    *oh = (s->h - s->k) / s->stride + 1;
    *ow = (s->w - s->k) / s->stride + 1;
}
an_status an_pool_create(const an_pool_spec *spec, int training, const an_layout *in,
                         int plain_out, an_pool **out);
const an_layout *an_pool_out_layout(const an_pool *op);
void an_pool_free(an_pool *op);
an_status an_pool_forward(an_pool *op, const float *x, float *y);
an_status an_pool_backward(an_pool *op, const float *dy, float *dx);

/* ---- cross-channel LRN, Heuritech form:
 *      y = x / (k + alpha * sum_{size neighbouring channels} x^2) ^ beta
 * (alpha is NOT divided by size, unlike Caffe/PyTorch/oneDNN) ---- */
typedef struct { int n, c, h, w, size; float alpha, beta, k; } an_lrn_spec;
typedef struct an_lrn an_lrn;
/* the output keeps the input's layout */
an_status an_lrn_create(const an_lrn_spec *spec, int training, const an_layout *in, an_lrn **out);
void an_lrn_free(an_lrn *op);
an_status an_lrn_forward(an_lrn *op, const float *x, float *y);
an_status an_lrn_backward(an_lrn *op, const float *x, const float *dy, float *dx);

/* ---- dense: y = x W^T + b, W is (out, in) ---- */
an_status an_dense_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                           int relu, float *y);
/* dy: gradient wrt the (post-ReLU when relu) output y, masked in place.
 * dx may be NULL; dw, db overwritten (both NULL: dx alone). */
an_status an_dense_backward(int n, int in, int out, const float *x, const float *w, const float *y,
                            int relu, float *dy, float *dx, float *dw, float *db);

/* ---- softmax over `classes` per row ---- */
void an_softmax_forward(int n, int classes, const float *logits, float *prob);

/* ---- inverted dropout, in place: kept values scaled by 1 / (1 - rate) ---- */
void an_dropout_forward(size_t count, float rate, an_rng *rng, float *x, uint8_t *keep);
void an_dropout_backward(size_t count, float rate, const uint8_t *keep, float *dy);

/* ---- the loss on a batch, from the logits and their softmax ----
 * Writes dlogits (gradient of the batch-mean loss), adds the summed loss
 * over the batch to *loss_sum and the number of rows whose argmax is the
 * label to *correct. Labels are 0-based; the caller checks their range. */
void an_loss_forward_backward(int n, int classes, const float *logits, const float *prob,
                              const int *labels, an_loss_kind kind, float *dlogits,
                              double *loss_sum, int *correct);

/* ---- tensor helpers ---- */
/* the input's preprocessing (pixels.c): n images of 3 x side x side
 * planes, y = (x - mean[channel]) * scale[channel] in `layout` (for bf16,
 * then rounded as a bf16 convolution rounds its input) */
void an_preprocess(int n, int side, const float *x, const float mean[3], const float scale[3],
                   an_input_layout layout, void *y);

/* ---- Keras' SGD on one layer's parameters (weights then bias) ----
 * v = momentum v - lr (g + weight_decay w); p += v, or with Nesterov
 * p += momentum v - lr (g + weight_decay w). The first `weight_count` of the
 * `count` values are weights (decayed); the rest are the bias. */
typedef struct { float lr, momentum, weight_decay; int nesterov; } an_sgd_step;
void an_sgd_apply(size_t count, size_t weight_count, float *p, const float *g, float *v,
                  const an_sgd_step *step);

/* ---- an engine call's scope (signals.c) ----
 * Entered by every public call that computes, left before it returns
 * (nested calls: the outermost sets and restores):
 * - asynchronous signals (all but the synchronous faults) are held back in
 *   the calling thread: threads that run oneDNN's sgemm must not run a
 *   signal handler meanwhile;
 * - the caller's thread and OpenMP's threads flush denormal floats to zero
 *   (x86's FTZ and DAZ), restored on leaving, so that other code on those
 *   threads (R's own, other packages' OpenMP) keeps its floating point. */
typedef struct {
    sigset_t signals;
    int outermost, threads;
} an_call;
void an_call_enter(an_call *call);
void an_call_leave(const an_call *call);
int an_interrupt_pending(void);   /* a held-back SIGINT waits (signals.c) */
void an_watch_forks(void);        /* a forked child runs on one thread (backend.c) */

/* ================================================================ backends
 * A device is one backend instance: the CPU, or one GPU with its handles,
 * stream and scratch memory. Memory pointers passed to a device's ops are
 * that device's memory (for the CPU, host memory), except where a name says
 * `host`. Every op created on a device keeps a pointer to it. */
typedef struct an_device an_device;
typedef struct an_backend an_backend;

struct an_device {
    const an_backend *ops;
};

struct an_backend {
    const char *kind;                                   /* "cpu" or "cuda" */
    void (*close)(an_device *dev);
    /* memory */
    an_status (*alloc)(an_device *dev, size_t bytes, void **out);
    void (*release)(an_device *dev, void *ptr);
    an_status (*upload)(an_device *dev, void *dst, const void *host_src, size_t bytes);
    an_status (*download)(an_device *dev, void *host_dst, const void *src, size_t bytes);
    an_status (*zero)(an_device *dev, void *dst, size_t bytes);
    /* memory the device has free and in all, in bytes (the CPU: physical) */
    an_status (*memory)(an_device *dev, double *free_bytes, double *total_bytes);
    /* why bf16 convolutions cannot run here at full speed, or NULL when they can */
    const char *(*bf16_missing)(an_device *dev);
    /* tensors in an op's layout (never NULL here: NULL means plain) */
    size_t (*layout_bytes)(const an_layout *layout);
    an_status (*download_plain)(an_device *dev, const an_layout *layout, const float *src, float *host_dst);
    /* ops */
    an_status (*conv_create)(an_device *dev, const an_conv_spec *spec, int training, const an_layout *in,
                             int plain_out, an_conv **out);
    const an_layout *(*conv_out_layout)(const an_conv *op);
    void (*conv_free)(an_conv *op);
    an_status (*conv_forward)(an_conv *op, const float *x, const float *w, const float *b,
                              uint64_t w_version, float *y);
    an_status (*conv_backward)(an_conv *op, const float *x, const float *w, const float *y,
                               float *dy, float *dx, float *dw, float *db);
    void (*conv_lend)(an_conv *op, void *a, size_t a_bytes, void *b, size_t b_bytes);
    an_input_layout (*conv_input_layout)(const an_conv *op);
    an_status (*pool_create)(an_device *dev, const an_pool_spec *spec, int training, const an_layout *in,
                             int plain_out, an_pool **out);
    const an_layout *(*pool_out_layout)(const an_pool *op);
    void (*pool_free)(an_pool *op);
    an_status (*pool_forward)(an_pool *op, const float *x, float *y);
    an_status (*pool_backward)(an_pool *op, const float *x, const float *y, const float *dy, float *dx);
    an_status (*lrn_create)(an_device *dev, const an_lrn_spec *spec, int training, const an_layout *in,
                            an_lrn **out);
    void (*lrn_free)(an_lrn *op);
    an_status (*lrn_forward)(an_lrn *op, const float *x, float *y);
    an_status (*lrn_backward)(an_lrn *op, const float *x, const float *y, const float *dy, float *dx);
    an_status (*dense_forward)(an_device *dev, int n, int in, int out, const float *x, const float *w,
                               const float *b, int relu, float *y);
    an_status (*dense_backward)(an_device *dev, int n, int in, int out, const float *x, const float *w,
                                const float *y, int relu, float *dy, float *dx, float *dw, float *db);
    an_status (*softmax_forward)(an_device *dev, int n, int classes, const float *logits, float *prob);
    /* the mask is drawn from `rng` on the host, so every backend drops the same units */
    an_status (*dropout_forward)(an_device *dev, size_t count, float rate, an_rng *rng, float *x, uint8_t *keep);
    an_status (*dropout_backward)(an_device *dev, size_t count, float rate, const uint8_t *keep, float *dy);
    an_status (*loss)(an_device *dev, int n, int classes, const float *logits, const float *prob,
                      const int *host_labels, an_loss_kind kind, float *dlogits, double *loss_sum, int *correct);
    /* planar images (host memory) into a first convolution's input, in its layout */
    an_status (*preprocess)(an_device *dev, int n, int side, const float *host_images, const float mean[3],
                            const float scale[3], an_input_layout layout, void *y);
    an_status (*sgd)(an_device *dev, size_t count, size_t weight_count, float *p, const float *g, float *v,
                     const an_sgd_step *step);
    an_status (*scale)(an_device *dev, float *x, size_t count, float factor);   /* x *= factor */
};

/* memcpy on the engine's threads (one slice each) when `bytes` is large:
 * host-to-pinned copies of input batches for a GPU */
void an_copy_parallel(void *dst, const void *src, size_t bytes);

/* whether this CPU runs AVX2 (the x86-64 kernels written for it: pixel
 * conversion, SGD), and AVX-512 F and VL (the conversion into pixels) */
int an_cpu_has_avx2(void);
int an_cpu_has_avx512(void);

/* the CPU device: one for the process, never closed */
an_device *an_cpu_device(void);
/* Host memory this process can still take, in bytes: the machine's free
 * memory or, under a limit on the address space or the data (ulimit -v,
 * ulimit -d), what is left of it, whichever is less. A process at such a
 * limit fails anywhere (R's own stack growth included), so large blocks
 * keep a margin below it. */
double an_host_memory_room(void);
/* A CUDA device (ordinal 0, 1, ...), opened with its own stream, cuDNN and
 * cuBLAS handles; close it with dev->ops->close. Fails with a clear message
 * where the package was built without CUDA, the GPU backend does not load
 * (cuda_loader.c) or the GPU is missing. */
an_status an_cuda_device_open(int ordinal, an_device **out);

/* For tests: the CPU answers as if it had no AVX512_BF16 (1) or as it is (0). */
void an_cpu_test_hide_bf16(int hide);
/* For tests: convolutions refuse lent memory (1) or take it (0); returns
 * how many copies went to lent memory so far. */
long an_cpu_test_lent(int refuse);

/* For tests: the n-th allocation on the forward and training paths from
 * now fails as if memory ran out (0: none fails); an_test_allocations()
 * counts those made since. They are the CPU backend's memory, workspaces,
 * oneDNN primitives and ops, and the nets' plans (error.c). */
void an_test_fail_allocation(long n);
long an_test_allocations(void);
/* Called right before each of those allocations: 1 when a test's injected
 * failure falls on it. Untested, it costs one predictable branch. */
extern int an_fault_watching;
int an_fault_hit(void);
static inline int an_fault(void) { return __builtin_expect(an_fault_watching, 0) ? an_fault_hit() : 0; }

/* For tests: every later GPU allocation through the backend of more than
 * `bytes` fails as if the GPU were out of memory (0: no limit). */
void an_cuda_test_alloc_limit(size_t bytes);
/* For tests: the size of a GPU device's shared convolution workspace, and
 * growing it as a new convolution does. */
size_t an_cuda_test_workspace_bytes(an_device *dev);
an_status an_cuda_test_grow_workspace(an_device *dev, size_t bytes);

/* NCCL (built with CUDA where configure finds it): an all-reduce sum of
 * floats in this GPU's memory over `size` ranks, queued on the device's
 * stream. The communicator is made once per device from an id that rank 0
 * drew (an_cuda_nccl_id) and every rank received. */
int an_cuda_nccl_built(void);
an_status an_cuda_nccl_id(void *id, size_t id_bytes);
an_status an_cuda_nccl_sum(an_device *dev, const void *id, size_t id_bytes, int rank, int size, float *values,
                           size_t count);

#ifdef __cplusplus
}
#endif
#endif
