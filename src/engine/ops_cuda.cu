/* ops_cuda.cu: the CUDA backend. cuDNN for convolution (algorithms found
 * once per shape with cudnnFind*, the fastest deterministic one kept),
 * pooling and LRN; cuBLAS for the dense layers; small kernels for the rest
 * (bias + ReLU, dropout, softmax, loss, SGD, preprocessing).
 *
 * Every tensor is plain NCHW in device memory (layouts are always NULL
 * here). Each device has one stream, on which all its work is queued in
 * order, and a copy stream for input batches (pinned memory, asynchronous);
 * the host waits only where it needs a result (downloads, the loss).
 * Dropout masks are drawn on the host from the net's generator, as on the
 * CPU, so both backends drop the same units for a seed.
 *
 * This file is a shared object of its own (alexnet_cuda.so) that the engine
 * loads on the first use of a GPU (cuda_loader.c): it reaches the engine
 * only through the table the engine lends it (cuda_backend.h), and exports
 * nothing but its entry, an_cuda_backend_entry (built -fvisibility=hidden,
 * linked -z defs so that no engine symbol is left to resolve). */
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cudnn.h>
#include <cublas_v2.h>
#ifdef AN_HAVE_NCCL
#include <nccl.h>
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_backend.h"
#include "rows.h"

/* ------------------------------------------------------------ the device */

#define STAGING_SLOTS 4

/* A ring of pinned host buffers for small uploads (masks, labels) and the
 * loss download: a slot is reused only after its last copy finished. */
typedef struct {
    void *host;
    size_t bytes;
    cudaEvent_t done;
    int used;
} staging_slot;

typedef struct {
    an_device base;                 /* first: an an_device * is a cuda_device * */
    int ordinal;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    void *workspace;                /* shared by all convolutions of the device */
    size_t workspace_bytes;
    /* bf16 convolutions' operands (inputs, outputs or output gradients,
     * input and weight gradients), converted within one call: shared by
     * all of them, as the workspace */
    void *bf16_scratch;
    size_t bf16_scratch_bytes;
    staging_slot staging[STAGING_SLOTS];
    int next_slot;
    /* input batches: host -> pinned -> device on their own stream, so the
     * copy of batch k+1 overlaps the backward pass of batch k */
    cudaStream_t copy_stream;
    float *pinned_images, *device_images;
    size_t images_bytes;
    cudaEvent_t images_copied, images_consumed;
    int images_pending;             /* images_consumed was recorded */
#ifdef AN_HAVE_NCCL
    ncclComm_t nccl;                /* made by the first an_cuda_nccl_sum */
    char nccl_id[128];              /* the id it was made from */
#endif
    int *labels;                    /* device scratch for the loss */
    double *row_loss;
    int *row_correct;
    int rows;
} cuda_device;

/* the engine's services, from an_cuda_backend_entry */
static const an_cuda_engine *engine;

/* ---------------------------------------------------------------- errors */

/* the engine's an_fail: its thread-local message is the one the caller reads */
__attribute__((format(printf, 2, 3))) static an_status fail(an_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    status = engine->vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

static an_status cuda_fail(cudaError_t e, const char *what)
{
    cudaGetLastError();   /* clear a non-sticky error so that later calls start clean */
    if (e == cudaErrorMemoryAllocation)
        return fail(AN_ERR_MEMORY, "out of GPU memory in %s: use a smaller batch_size", what);
    return fail(AN_ERR_BACKEND, "CUDA failed in %s: %s", what, cudaGetErrorString(e));
}

static an_status cudnn_fail(cudnnStatus_t e, const char *what)
{
    if (e == CUDNN_STATUS_ALLOC_FAILED)
        return fail(AN_ERR_MEMORY, "out of GPU memory in cuDNN's %s: use a smaller batch_size", what);
    return fail(AN_ERR_BACKEND, "cuDNN failed in %s: %s", what, cudnnGetErrorString(e));
}

static an_status cublas_fail(cublasStatus_t e, const char *what)
{
    if (e == CUBLAS_STATUS_ALLOC_FAILED)
        return fail(AN_ERR_MEMORY, "out of GPU memory in cuBLAS's %s: use a smaller batch_size", what);
    return fail(AN_ERR_BACKEND, "cuBLAS failed in %s: %s", what, cublasGetStatusString(e));
}

#define CUDA_TRY(call, what)                                                     \
    do {                                                                         \
        cudaError_t e_ = (call);                                                 \
        if (e_ != cudaSuccess) return cuda_fail(e_, what);                      \
    } while (0)
#define CUDNN_TRY(call, what)                                                    \
    do {                                                                         \
        cudnnStatus_t e_ = (call);                                               \
        if (e_ != CUDNN_STATUS_SUCCESS) return cudnn_fail(e_, what);            \
    } while (0)
#define CUBLAS_TRY(call, what)                                                   \
    do {                                                                         \
        cublasStatus_t e_ = (call);                                              \
        if (e_ != CUBLAS_STATUS_SUCCESS) return cublas_fail(e_, what);          \
    } while (0)
/* pinned host memory: running out of it is running out of host memory */
#define HOST_TRY(call, bytes, what)                                              \
    do {                                                                         \
        cudaError_t e_ = (call);                                                 \
        if (e_ == cudaErrorMemoryAllocation) {                                   \
            cudaGetLastError();                                                  \
            return fail(AN_ERR_MEMORY, "out of host memory: %.1f MB of pinned memory for %s", \
                        (bytes) / 1048576.0, what);                              \
        }                                                                        \
        if (e_ != cudaSuccess) return cuda_fail(e_, "allocating pinned host memory"); \
    } while (0)
/* after a kernel launch: a bad configuration shows here, a fault later */
#define LAUNCHED(what) CUDA_TRY(cudaGetLastError(), what)

static cuda_device *as_cuda(an_device *dev) { return (cuda_device *)dev; }

/* make this device current for the calling thread */
static an_status use(cuda_device *d)
{
    CUDA_TRY(cudaSetDevice(d->ordinal), "selecting the GPU");
    return AN_OK;
}

/* ------------------------------------------------------------- kernels */

static const int THREADS = 256;

static unsigned blocks_for(size_t count)
{
    size_t b = (count + THREADS - 1) / THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);   /* the kernels loop over the rest */
}

#define GRID_STRIDE(i, count) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (count); i += (size_t)gridDim.x * blockDim.x)

/* y = relu?(y + b[channel]); channels vary every `inner` values, `channels` in a cycle */
__global__ void bias_act_kernel(float *y, const float *b, size_t count, int inner, int channels, int relu)
{
    GRID_STRIDE(i, count) {
        float v = y[i] + b[(i / inner) % channels];
        y[i] = relu && !(v > 0) ? 0.0f : v;
    }
}

/* bf16 <-> f32: round to nearest even, as oneDNN and PyTorch round */
__global__ void to_bf16_kernel(const float *x, __nv_bfloat16 *y, size_t count)
{
    GRID_STRIDE(i, count) y[i] = __float2bfloat16_rn(x[i]);
}

__global__ void from_bf16_kernel(const __nv_bfloat16 *x, float *y, size_t count)
{
    GRID_STRIDE(i, count) y[i] = __bfloat162float(x[i]);
}

__global__ void relu_mask_kernel(const float *y, float *dy, size_t count)
{
    GRID_STRIDE(i, count) if (!(y[i] > 0)) dy[i] = 0.0f;
}

/* db[j] = sum over rows of dy[i, j] */
__global__ void column_sum_kernel(const float *dy, int rows, int cols, float *db)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += gridDim.x * blockDim.x) {
        float sum = 0;
        for (int i = 0; i < rows; i++) sum += dy[(size_t)i * cols + j];
        db[j] = sum;
    }
}

__global__ void dropout_kernel(float *x, const uint8_t *keep, size_t count, float scale)
{
    GRID_STRIDE(i, count) x[i] = keep[i] ? x[i] * scale : 0.0f;
}

/* one thread per row: the rows are few, and the sums stay in the CPU's order */
__global__ void softmax_kernel(const float *logits, float *prob, int n, int classes)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) an_softmax_row(logits + (size_t)i * classes, prob + (size_t)i * classes, classes);
}

__global__ void loss_kernel(const float *logits, const float *prob, const int *labels, int n, int classes,
                            int mse, float *dlogits, double *row_loss, int *row_correct)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t row = (size_t)i * classes;
    row_loss[i] = an_loss_row(logits + row, prob + row, labels[i], n, classes, mse, dlogits + row, &row_correct[i]);
}

struct channel3 { float v[3]; };   /* per-channel constants, by value */

__global__ void preprocess_kernel(const float *x, float *y, size_t count, size_t plane, channel3 mean,
                                  channel3 scale)
{
    GRID_STRIDE(i, count) {
        int c = (int)((i / plane) % 3);
        y[i] = (x[i] - mean.v[c]) * scale.v[c];
    }
}

__global__ void scale_kernel(float *x, size_t count, float factor)
{
    GRID_STRIDE(i, count) x[i] *= factor;
}

__global__ void sgd_kernel(float *p, const float *g, float *v, size_t count, size_t weight_count, float lr,
                           float mu, float wd, int nesterov)
{
    GRID_STRIDE(k, count) an_sgd_value(&p[k], g[k], &v[k], k < weight_count, lr, mu, wd, nesterov);
}

/* ---------------------------------------------------------------- memory */

static an_status cuda_alloc(an_device *dev, size_t bytes, void **out)
{
    cuda_device *d = as_cuda(dev);
    *out = NULL;
    an_status s = use(d);
    if (s != AN_OK) return s;
    size_t limit = engine->test_alloc_limit();   /* an_cuda_test_alloc_limit */
    cudaError_t e = limit && bytes > limit ? cudaErrorMemoryAllocation : cudaMalloc(out, bytes ? bytes : 256);
    if (e == cudaSuccess) return AN_OK;
    *out = NULL;
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    if (e == cudaErrorMemoryAllocation)
        return fail(AN_ERR_MEMORY, "out of GPU memory: %.1f MB wanted, %.1f MB free of %.1f MB on GPU %d: "
                    "use a smaller batch_size", bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0,
                    d->ordinal);
    return cuda_fail(e, "allocating GPU memory");
}

static void cuda_release(an_device *dev, void *ptr)
{
    if (!ptr) return;
    cudaSetDevice(as_cuda(dev)->ordinal);
    cudaFree(ptr);
}

static an_status cuda_upload(an_device *dev, void *dst, const void *host_src, size_t bytes)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    /* from pageable memory the copy is staged by the driver, so the caller's
     * buffer is free again when this returns */
    CUDA_TRY(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, d->stream), "an upload to the GPU");
    return AN_OK;
}

static an_status cuda_download(an_device *dev, void *host_dst, const void *src, size_t bytes)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    CUDA_TRY(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, d->stream), "a download from the GPU");
    CUDA_TRY(cudaStreamSynchronize(d->stream), "the GPU's work (found when downloading)");
    return AN_OK;
}

static an_status cuda_zero(an_device *dev, void *dst, size_t bytes)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    CUDA_TRY(cudaMemsetAsync(dst, 0, bytes, d->stream), "clearing GPU memory");
    return AN_OK;
}

static an_status cuda_memory(an_device *dev, double *free_bytes, double *total_bytes)
{
    an_status s = use(as_cuda(dev));
    if (s != AN_OK) return s;
    size_t f = 0, t = 0;
    CUDA_TRY(cudaMemGetInfo(&f, &t), "reading the GPU's free memory");
    *free_bytes = (double)f;
    *total_bytes = (double)t;
    return AN_OK;
}

static size_t cuda_layout_bytes(const an_layout *layout)
{
    (void)layout;   /* never called: this backend has no layouts */
    return 0;
}

static an_status cuda_download_plain(an_device *dev, const an_layout *layout, const float *src, float *dst)
{
    (void)dev; (void)layout; (void)src; (void)dst;
    return fail(AN_ERR_BACKEND, "the CUDA backend keeps every tensor plain: no layout to convert");
}

/* A pinned host slot of at least `bytes`, free to write. */
static an_status staging(cuda_device *d, size_t bytes, staging_slot **out)
{
    staging_slot *slot = &d->staging[d->next_slot];
    d->next_slot = (d->next_slot + 1) % STAGING_SLOTS;
    if (slot->used) CUDA_TRY(cudaEventSynchronize(slot->done), "waiting for a staging copy");
    slot->used = 0;
    if (slot->bytes < bytes) {
        if (slot->host) cudaFreeHost(slot->host);
        slot->host = NULL;
        slot->bytes = 0;
        HOST_TRY(cudaMallocHost(&slot->host, bytes), bytes, "a staging buffer");
        slot->bytes = bytes;
    }
    *out = slot;
    return AN_OK;
}

/* queue the copy of a filled slot to the device; the slot waits for it */
static an_status staging_upload(cuda_device *d, staging_slot *slot, void *dst, size_t bytes)
{
    CUDA_TRY(cudaMemcpyAsync(dst, slot->host, bytes, cudaMemcpyHostToDevice, d->stream), "a staged upload");
    CUDA_TRY(cudaEventRecord(slot->done, d->stream), "recording a staged upload");
    slot->used = 1;
    return AN_OK;
}

/* --------------------------------------------------------- convolution */

struct an_conv {
    cuda_device *dev;
    an_conv_spec s;
    int training, oh, ow;
    cudnnTensorDescriptor_t x_desc, y_desc, b_desc;
    cudnnFilterDescriptor_t w_desc;
    /* bf16 (s.bf16): cuDNN multiplies bf16 inputs, weights and output
     * gradients on tensor cores and sums in f32 (its PSEUDO_BFLOAT16
     * configuration); these describe them, and w16 caches the weights in
     * bf16 while the parameters keep version w16_version */
    cudnnTensorDescriptor_t x16_desc, y16_desc;
    cudnnFilterDescriptor_t w16_desc;
    __nv_bfloat16 *w16;
    uint64_t w16_version;
    /* one per direction: each carries the math type of its chosen algorithm */
    cudnnConvolutionDescriptor_t fwd_desc, bwd_data_desc, bwd_filter_desc;
    cudnnConvolutionFwdAlgo_t fwd_algo;
    cudnnConvolutionBwdDataAlgo_t bwd_data_algo;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo;
    size_t workspace_bytes;
};

static void conv_free(an_conv *op)
{
    if (!op) return;
    if (op->x_desc) cudnnDestroyTensorDescriptor(op->x_desc);
    if (op->y_desc) cudnnDestroyTensorDescriptor(op->y_desc);
    if (op->b_desc) cudnnDestroyTensorDescriptor(op->b_desc);
    if (op->w_desc) cudnnDestroyFilterDescriptor(op->w_desc);
    if (op->x16_desc) cudnnDestroyTensorDescriptor(op->x16_desc);
    if (op->y16_desc) cudnnDestroyTensorDescriptor(op->y16_desc);
    if (op->w16_desc) cudnnDestroyFilterDescriptor(op->w16_desc);
    if (op->w16) cudaFree(op->w16);
    if (op->fwd_desc) cudnnDestroyConvolutionDescriptor(op->fwd_desc);
    if (op->bwd_data_desc) cudnnDestroyConvolutionDescriptor(op->bwd_data_desc);
    if (op->bwd_filter_desc) cudnnDestroyConvolutionDescriptor(op->bwd_filter_desc);
    free(op);
}

/* A buffer shared by a device's convolutions (the workspace, the bf16
 * scratch) grown to `bytes`: the larger one is allocated before the old one
 * is freed, so that when it does not fit the old one stays, and the shapes
 * that ran before still run. */
static an_status grow_shared(cuda_device *d, void **buf, size_t *have, size_t bytes)
{
    if (bytes <= *have) return AN_OK;
    void *larger = NULL;
    an_status s = cuda_alloc(&d->base, bytes, &larger);
    if (s != AN_OK) return s;
    cudaFree(*buf);   /* waits for the work that used it */
    *buf = larger;
    *have = bytes;
    return AN_OK;
}

static an_status grow_workspace(cuda_device *d, size_t bytes)
{
    return grow_shared(d, &d->workspace, &d->workspace_bytes, bytes);
}

static size_t cuda_test_workspace_bytes(an_device *dev) { return as_cuda(dev)->workspace_bytes; }
static an_status cuda_test_grow_workspace(an_device *dev, size_t bytes)
{
    return grow_workspace(as_cuda(dev), bytes);
}

/* Algorithms that need more scratch than this are passed over. */
static const size_t WORKSPACE_LIMIT = (size_t)1 << 30;

/* FFT and non-fused Winograd algorithms trade accuracy for speed: measured
 * on an H200, the 5x5 conv_2's backward data differs from a direct FP32
 * convolution by 1e-2 of its largest value, and its forward by 3e-4
 * (relative L2). They are as lossy as TF32, so they run only where TF32
 * may (the default, as PyTorch's cudnn.benchmark), never in exact FP32. */
static int lossy(cudnnConvolutionFwdAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
static int lossy(cudnnConvolutionBwdDataAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
static int lossy(cudnnConvolutionBwdFilterAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

/* Which of cudnnFind's results (fastest first) to keep: the fastest that
 * succeeded, is deterministic (a seed gives the same training history),
 * fits the workspace limit and uses a math the user allows (TF32 and the
 * lossy algorithms only where allowed; never FP16 conversion). */
#define CHOOSE_ALGO(perf, count, bf16, chosen)                                             \
    do {                                                                                   \
        chosen = -1;                                                                       \
        for (int i_ = 0; i_ < (count) && chosen < 0; i_++) {                               \
            if (perf[i_].status != CUDNN_STATUS_SUCCESS) continue;                         \
            if (perf[i_].determinism != CUDNN_DETERMINISTIC) continue;                     \
            if (perf[i_].memory > WORKSPACE_LIMIT) continue;                               \
            if (perf[i_].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;      \
            if (!engine->tf32() && lossy(perf[i_].algo)) continue;                         \
            /* f32's tensor-op math is TF32; bf16's is the point */                        \
            if (!engine->tf32() && !(bf16) && perf[i_].mathType == CUDNN_TENSOR_OP_MATH) continue; \
            chosen = i_;                                                                   \
        }                                                                                  \
    } while (0)

/* The math a chosen algorithm runs with: its own where TF32 is allowed or
 * the operands are bf16; FMA (true FP32) otherwise, since cuDNN's
 * DEFAULT_MATH may use TF32 on Ampere and newer GPUs. */
static cudnnMathType_t kept_math(const an_conv *op, cudnnMathType_t reported)
{
    return engine->tf32() || op->s.bf16 ? reported : CUDNN_FMA_MATH;
}


static size_t conv_in_count(const an_conv *op) { return (size_t)op->s.n * op->s.in * op->s.h * op->s.w; }
static size_t conv_out_count(const an_conv *op) { return (size_t)op->s.n * op->s.out * op->oh * op->ow; }
static size_t conv_weight_count(const an_conv *op)
{
    return (size_t)op->s.out * (op->s.in / op->s.groups) * op->s.k * op->s.k;
}

/* scratch for one call: input, output (gradient), input gradient, weight gradient */
static size_t bf16_scratch_need(const an_conv *op)
{
    return (2 * conv_in_count(op) + conv_out_count(op) + conv_weight_count(op)) * sizeof(__nv_bfloat16) + 4 * 256;
}

/* the scratch's four regions, each 256-byte aligned */
static void bf16_regions(const an_conv *op, __nv_bfloat16 **x16, __nv_bfloat16 **y16, __nv_bfloat16 **dx16,
                         __nv_bfloat16 **dw16)
{
    const size_t counts[4] = {conv_in_count(op), conv_out_count(op), conv_in_count(op), conv_weight_count(op)};
    __nv_bfloat16 **out[4] = {x16, y16, dx16, dw16};
    char *p = (char *)op->dev->bf16_scratch;
    for (int i = 0; i < 4; i++) {
        *out[i] = (__nv_bfloat16 *)p;
        p += (counts[i] * sizeof(__nv_bfloat16) + 255) & ~(size_t)255;
    }
}

static an_status to_bf16(cuda_device *d, const float *x, __nv_bfloat16 *y, size_t count)
{
    to_bf16_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(x, y, count);
    LAUNCHED("the bf16 conversion kernel");
    return AN_OK;
}

static an_status from_bf16(cuda_device *d, const __nv_bfloat16 *x, float *y, size_t count)
{
    from_bf16_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(x, y, count);
    LAUNCHED("the bf16 conversion kernel");
    return AN_OK;
}

static an_status conv_setup(an_conv *op)
{
    const an_conv_spec *s = &op->s;
    cudnnHandle_t h = op->dev->cudnn;
    CUDNN_TRY(cudnnCreateTensorDescriptor(&op->x_desc), "creating a tensor descriptor");
    CUDNN_TRY(cudnnCreateTensorDescriptor(&op->y_desc), "creating a tensor descriptor");
    CUDNN_TRY(cudnnCreateTensorDescriptor(&op->b_desc), "creating a tensor descriptor");
    CUDNN_TRY(cudnnCreateFilterDescriptor(&op->w_desc), "creating a filter descriptor");
    CUDNN_TRY(cudnnSetTensor4dDescriptor(op->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->in, s->h, s->w),
              "describing a convolution's input");
    CUDNN_TRY(cudnnSetTensor4dDescriptor(op->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->out, op->oh,
                                         op->ow), "describing a convolution's output");
    CUDNN_TRY(cudnnSetTensor4dDescriptor(op->b_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s->out, 1, 1),
              "describing a bias");
    CUDNN_TRY(cudnnSetFilter4dDescriptor(op->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s->out, s->in / s->groups,
                                         s->k, s->k), "describing convolution weights");
    /* the descriptors the convolution itself takes: bf16 ones in bf16 */
    cudnnTensorDescriptor_t xd = op->x_desc, yd = op->y_desc;
    cudnnFilterDescriptor_t wd = op->w_desc;
    if (s->bf16) {
        CUDNN_TRY(cudnnCreateTensorDescriptor(&op->x16_desc), "creating a tensor descriptor");
        CUDNN_TRY(cudnnCreateTensorDescriptor(&op->y16_desc), "creating a tensor descriptor");
        CUDNN_TRY(cudnnCreateFilterDescriptor(&op->w16_desc), "creating a filter descriptor");
        CUDNN_TRY(cudnnSetTensor4dDescriptor(op->x16_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, s->n, s->in, s->h,
                                             s->w), "describing a bf16 convolution's input");
        CUDNN_TRY(cudnnSetTensor4dDescriptor(op->y16_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, s->n, s->out,
                                             op->oh, op->ow), "describing a bf16 convolution's output");
        CUDNN_TRY(cudnnSetFilter4dDescriptor(op->w16_desc, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NCHW, s->out,
                                             s->in / s->groups, s->k, s->k), "describing bf16 convolution weights");
        xd = op->x16_desc;
        yd = op->y16_desc;
        wd = op->w16_desc;
    }
    cudnnConvolutionDescriptor_t *descs[3] = {&op->fwd_desc, &op->bwd_data_desc, &op->bwd_filter_desc};
    cudnnMathType_t math = s->bf16 ? CUDNN_TENSOR_OP_MATH : engine->tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    for (int i = 0; i < 3; i++) {
        CUDNN_TRY(cudnnCreateConvolutionDescriptor(descs[i]), "creating a convolution descriptor");
        /* cross-correlation, as PyTorch and the engine's weights mean it */
        CUDNN_TRY(cudnnSetConvolution2dDescriptor(*descs[i], s->pad, s->pad, s->stride, s->stride, 1, 1,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                  "describing a convolution");
        CUDNN_TRY(cudnnSetConvolutionGroupCount(*descs[i], s->groups), "setting convolution groups");
        CUDNN_TRY(cudnnSetConvolutionMathType(*descs[i], math), "setting convolution math");
    }
    int n_out = 0, chosen;
    enum { MAX_ALGOS = 16 };
    cudnnConvolutionFwdAlgoPerf_t fwd[MAX_ALGOS];
    CUDNN_TRY(cudnnFindConvolutionForwardAlgorithm(h, xd, wd, op->fwd_desc, yd, MAX_ALGOS, &n_out, fwd),
              "finding a forward convolution algorithm");
    CHOOSE_ALGO(fwd, n_out, s->bf16, chosen);
    if (chosen < 0) return fail(AN_ERR_BACKEND, "cuDNN offers no usable forward algorithm for a %dx%d "
                                "convolution of %d channels", s->k, s->k, s->in);
    op->fwd_algo = fwd[chosen].algo;
    op->workspace_bytes = fwd[chosen].memory;
    CUDNN_TRY(cudnnSetConvolutionMathType(op->fwd_desc, kept_math(op, fwd[chosen].mathType)),
              "setting convolution math");
    if (op->training) {
        cudnnConvolutionBwdDataAlgoPerf_t bd[MAX_ALGOS];
        CUDNN_TRY(cudnnFindConvolutionBackwardDataAlgorithm(h, wd, yd, op->bwd_data_desc, xd, MAX_ALGOS, &n_out, bd),
                  "finding a backward-data convolution algorithm");
        CHOOSE_ALGO(bd, n_out, s->bf16, chosen);
        if (chosen < 0) return fail(AN_ERR_BACKEND, "cuDNN offers no usable backward-data algorithm");
        op->bwd_data_algo = bd[chosen].algo;
        if (bd[chosen].memory > op->workspace_bytes) op->workspace_bytes = bd[chosen].memory;
        CUDNN_TRY(cudnnSetConvolutionMathType(op->bwd_data_desc, kept_math(op, bd[chosen].mathType)),
                  "setting convolution math");
        cudnnConvolutionBwdFilterAlgoPerf_t bf[MAX_ALGOS];
        CUDNN_TRY(cudnnFindConvolutionBackwardFilterAlgorithm(h, xd, yd, op->bwd_filter_desc, wd, MAX_ALGOS, &n_out,
                                                              bf), "finding a backward-filter convolution algorithm");
        CHOOSE_ALGO(bf, n_out, s->bf16, chosen);
        if (chosen < 0) return fail(AN_ERR_BACKEND, "cuDNN offers no usable backward-filter algorithm");
        op->bwd_filter_algo = bf[chosen].algo;
        if (bf[chosen].memory > op->workspace_bytes) op->workspace_bytes = bf[chosen].memory;
        CUDNN_TRY(cudnnSetConvolutionMathType(op->bwd_filter_desc, kept_math(op, bf[chosen].mathType)),
                  "setting convolution math");
    }
    an_status st = grow_workspace(op->dev, op->workspace_bytes);
    if (st == AN_OK && s->bf16)
        st = grow_shared(op->dev, &op->dev->bf16_scratch, &op->dev->bf16_scratch_bytes, bf16_scratch_need(op));
    if (st == AN_OK && s->bf16) st = cuda_alloc(&op->dev->base, conv_weight_count(op) * sizeof(__nv_bfloat16),
                                                (void **)&op->w16);
    return st;
}

/* bf16 tensor cores came with Ampere (compute capability 8.0). The bf16
 * convolutions below were written and compiled without a GPU at hand: until
 * the GPU check (tools/gpu-check.sh: test_cuda sets AN_CUDA_BF16=1) has run them
 * against the CPU, a net on a GPU computes in f32 unless AN_CUDA_BF16=1. */
static const char *cuda_bf16_missing(an_device *dev)
{
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, as_cuda(dev)->ordinal) != cudaSuccess ||
        major < 8)
        return "this GPU has no bf16 tensor cores (they came with compute capability 8.0, Ampere)";
    const char *enabled = getenv("AN_CUDA_BF16");
    if (!enabled || strcmp(enabled, "1") != 0)
        return "the GPU's bf16 convolutions have not yet been checked on a GPU against the CPU "
               "(set the environment variable AN_CUDA_BF16=1 to use them)";
    return NULL;
}

static an_status cuda_conv_create(an_device *dev, const an_conv_spec *spec, int training, const an_layout *in,
                                  int plain_out, an_conv **out)
{
    (void)in; (void)plain_out;   /* always plain here */
    *out = NULL;
    const an_conv_spec *s = spec;
    const char *no_bf16 = s->bf16 ? cuda_bf16_missing(dev) : NULL;
    if (no_bf16) return fail(AN_ERR_ARGUMENT, "bf16 is not available: %s", no_bf16);
    if (s->n < 1 || s->in < 1 || s->out < 1 || s->k < 1 || s->stride < 1 || s->pad < 0 || s->groups < 1 ||
        s->in % s->groups || s->out % s->groups || s->h + 2 * s->pad < s->k || s->w + 2 * s->pad < s->k)
        return fail(AN_ERR_ARGUMENT, "invalid convolution shape (n %d, in %d, %dx%d, out %d, k %d, groups %d)",
                    s->n, s->in, s->h, s->w, s->out, s->k, s->groups);
    int oh, ow;
    an_conv_output_hw(spec, &oh, &ow);
    double per_image = (double)s->in * s->h * s->w > (double)s->out * oh * ow ? (double)s->in * s->h * s->w
                                                                                : (double)s->out * oh * ow;
    if (per_image * s->n > 2147483647.0)   /* cuDNN's 4-d descriptors count elements in 32 bits */
        return fail(AN_ERR_ARGUMENT, "a batch of %d images is too large for cuDNN (at most %d at this layer): "
                    "use a smaller batch_size", s->n, (int)(2147483647.0 / per_image));
    cuda_device *d = as_cuda(dev);
    an_status st = use(d);
    if (st != AN_OK) return st;
    an_conv *op = (an_conv *)calloc(1, sizeof *op);
    if (!op) return fail(AN_ERR_MEMORY, "out of memory creating a convolution");
    op->dev = d;
    op->s = *spec;
    op->training = training;
    an_conv_output_hw(spec, &op->oh, &op->ow);
    st = conv_setup(op);
    if (st != AN_OK) { conv_free(op); return st; }
    *out = op;
    return AN_OK;
}

static const an_layout *cuda_conv_out_layout(const an_conv *op) { (void)op; return NULL; }

/* The weights in bf16, converted again only when the parameters changed
 * (version 0: always). */
static an_status conv_weights16(an_conv *op, const float *w, uint64_t w_version)
{
    if (w_version != 0 && w_version == op->w16_version) return AN_OK;
    op->w16_version = 0;
    an_status s = to_bf16(op->dev, w, op->w16, conv_weight_count(op));
    if (s == AN_OK) op->w16_version = w_version;
    return s;
}

/* f32 (s.bf16 0): the weights are used as they are, no copy to cache. bf16:
 * the input and weights are rounded to bf16, and the output (bf16 in
 * cuDNN's configuration) widened back to f32 before the bias. */
static an_status cuda_conv_forward(an_conv *op, const float *x, const float *w, const float *b, uint64_t w_version,
                                   float *y)
{
    cuda_device *d = op->dev;
    an_status s = use(d);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    size_t count = conv_out_count(op);
    if (op->s.bf16) {
        __nv_bfloat16 *x16, *y16, *dx16, *dw16;
        bf16_regions(op, &x16, &y16, &dx16, &dw16);
        if ((s = to_bf16(d, x, x16, conv_in_count(op))) != AN_OK || (s = conv_weights16(op, w, w_version)) != AN_OK)
            return s;
        CUDNN_TRY(cudnnConvolutionForward(d->cudnn, &one, op->x16_desc, x16, op->w16_desc, op->w16, op->fwd_desc,
                                          op->fwd_algo, d->workspace, d->workspace_bytes, &zero, op->y16_desc, y16),
                  "a bf16 forward convolution");
        if ((s = from_bf16(d, y16, y, count)) != AN_OK) return s;
    } else {
        CUDNN_TRY(cudnnConvolutionForward(d->cudnn, &one, op->x_desc, x, op->w_desc, w, op->fwd_desc, op->fwd_algo,
                                          d->workspace, d->workspace_bytes, &zero, op->y_desc, y),
                  "a forward convolution");
    }
    bias_act_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(y, b, count, op->oh * op->ow, op->s.out,
                                                                   op->s.relu);
    LAUNCHED("the convolution bias kernel");
    return AN_OK;
}

/* The backward of a bf16 convolution (dy already masked by the ReLU):
 * the output gradient, the input and the weights (as the forward cached
 * them, the same version) are rounded to bf16; the bias gradient sums the
 * f32 dy; the input and weight gradients come out of cuDNN in bf16 and are
 * widened to f32 for the layers below and for SGD. */
static an_status conv_backward16(an_conv *op, const float *x, const float *w, const float *dy, float *dx, float *dw,
                                 float *db)
{
    cuda_device *d = op->dev;
    const float one = 1.0f, zero = 0.0f;
    __nv_bfloat16 *x16, *dy16, *dx16, *dw16;
    bf16_regions(op, &x16, &dy16, &dx16, &dw16);
    an_status s = to_bf16(d, dy, dy16, conv_out_count(op));
    if (s == AN_OK && op->w16_version == 0) s = conv_weights16(op, w, 0);   /* no forward cached them */
    if (s != AN_OK) return s;
    if (dw) {   /* NULL: the input gradient alone (Grad-CAM) */
        CUDNN_TRY(cudnnConvolutionBackwardBias(d->cudnn, &one, op->y_desc, dy, &zero, op->b_desc, db),
                  "a convolution's bias gradient");
        if ((s = to_bf16(d, x, x16, conv_in_count(op))) != AN_OK) return s;
        CUDNN_TRY(cudnnConvolutionBackwardFilter(d->cudnn, &one, op->x16_desc, x16, op->y16_desc, dy16,
                                                 op->bwd_filter_desc, op->bwd_filter_algo, d->workspace,
                                                 d->workspace_bytes, &zero, op->w16_desc, dw16),
                  "a bf16 convolution's weight gradient");
        if ((s = from_bf16(d, dw16, dw, conv_weight_count(op))) != AN_OK) return s;
    }
    if (dx) {
        CUDNN_TRY(cudnnConvolutionBackwardData(d->cudnn, &one, op->w16_desc, op->w16, op->y16_desc, dy16,
                                               op->bwd_data_desc, op->bwd_data_algo, d->workspace, d->workspace_bytes,
                                               &zero, op->x16_desc, dx16), "a bf16 convolution's input gradient");
        s = from_bf16(d, dx16, dx, conv_in_count(op));
    }
    return s;
}

static an_status cuda_conv_backward(an_conv *op, const float *x, const float *w, const float *y, float *dy,
                                    float *dx, float *dw, float *db)
{
    if (!op->training) return fail(AN_ERR_ARGUMENT, "convolution was created for inference only");
    cuda_device *d = op->dev;
    an_status s = use(d);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    size_t count = conv_out_count(op);
    if (op->s.relu) {
        relu_mask_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(y, dy, count);
        LAUNCHED("the ReLU mask kernel");
    }
    if (op->s.bf16) return conv_backward16(op, x, w, dy, dx, dw, db);
    if (dw) {   /* NULL: the input gradient alone (Grad-CAM) */
        CUDNN_TRY(cudnnConvolutionBackwardBias(d->cudnn, &one, op->y_desc, dy, &zero, op->b_desc, db),
                  "a convolution's bias gradient");
        CUDNN_TRY(cudnnConvolutionBackwardFilter(d->cudnn, &one, op->x_desc, x, op->y_desc, dy,
                                                 op->bwd_filter_desc, op->bwd_filter_algo, d->workspace,
                                                 d->workspace_bytes, &zero, op->w_desc, dw),
                  "a convolution's weight gradient");
    }
    if (dx)
        CUDNN_TRY(cudnnConvolutionBackwardData(d->cudnn, &one, op->w_desc, w, op->y_desc, dy, op->bwd_data_desc,
                                               op->bwd_data_algo, d->workspace, d->workspace_bytes, &zero,
                                               op->x_desc, dx), "a convolution's input gradient");
    return AN_OK;
}

/* ------------------------------------------------------------- pooling */

struct an_pool {
    cuda_device *dev;
    an_pool_spec s;
    int training;
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnPoolingDescriptor_t desc;
};

static void pool_free(an_pool *op)
{
    if (!op) return;
    if (op->x_desc) cudnnDestroyTensorDescriptor(op->x_desc);
    if (op->y_desc) cudnnDestroyTensorDescriptor(op->y_desc);
    if (op->desc) cudnnDestroyPoolingDescriptor(op->desc);
    free(op);
}

static an_status pool_setup(an_pool *op)
{
    const an_pool_spec *s = &op->s;
    int oh, ow;
    an_pool_output_hw(s, &oh, &ow);
    CUDNN_TRY(cudnnCreateTensorDescriptor(&op->x_desc), "creating a tensor descriptor");
    CUDNN_TRY(cudnnCreateTensorDescriptor(&op->y_desc), "creating a tensor descriptor");
    CUDNN_TRY(cudnnCreatePoolingDescriptor(&op->desc), "creating a pooling descriptor");
    CUDNN_TRY(cudnnSetTensor4dDescriptor(op->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->c, s->h, s->w),
              "describing a pooling input");
    CUDNN_TRY(cudnnSetTensor4dDescriptor(op->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->c, oh, ow),
              "describing a pooling output");
    /* deterministic backward: the gradient goes to the first maximum, as on the CPU */
    CUDNN_TRY(cudnnSetPooling2dDescriptor(op->desc, CUDNN_POOLING_MAX_DETERMINISTIC, CUDNN_NOT_PROPAGATE_NAN, s->k,
                                          s->k, 0, 0, s->stride, s->stride), "describing a pooling");
    return AN_OK;
}

static an_status cuda_pool_create(an_device *dev, const an_pool_spec *spec, int training, const an_layout *in,
                                  int plain_out, an_pool **out)
{
    (void)in; (void)plain_out;
    *out = NULL;
    if (spec->n < 1 || spec->c < 1 || spec->k < 1 || spec->stride < 1 || spec->h < spec->k || spec->w < spec->k)
        return fail(AN_ERR_ARGUMENT, "invalid pooling shape (n %d, c %d, %dx%d, k %d, stride %d)",
                    spec->n, spec->c, spec->h, spec->w, spec->k, spec->stride);
    an_pool *op = (an_pool *)calloc(1, sizeof *op);
    if (!op) return fail(AN_ERR_MEMORY, "out of memory creating a pooling op");
    op->dev = as_cuda(dev);
    op->s = *spec;
    op->training = training;
    an_status s = pool_setup(op);
    if (s != AN_OK) { pool_free(op); return s; }
    *out = op;
    return AN_OK;
}

static const an_layout *cuda_pool_out_layout(const an_pool *op) { (void)op; return NULL; }

static an_status cuda_pool_forward(an_pool *op, const float *x, float *y)
{
    an_status s = use(op->dev);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_TRY(cudnnPoolingForward(op->dev->cudnn, op->desc, &one, op->x_desc, x, &zero, op->y_desc, y),
              "a max pooling");
    return AN_OK;
}

static an_status cuda_pool_backward(an_pool *op, const float *x, const float *y, const float *dy, float *dx)
{
    if (!op->training) return fail(AN_ERR_ARGUMENT, "pooling was created for inference only");
    an_status s = use(op->dev);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_TRY(cudnnPoolingBackward(op->dev->cudnn, op->desc, &one, op->y_desc, y, op->y_desc, dy, op->x_desc, x,
                                   &zero, op->x_desc, dx), "a max pooling's gradient");
    return AN_OK;
}

/* ------------------------------------------------------------------ LRN */

struct an_lrn {
    cuda_device *dev;
    an_lrn_spec s;
    int training;
    cudnnTensorDescriptor_t desc;
    cudnnLRNDescriptor_t lrn;
};

static void lrn_free(an_lrn *op)
{
    if (!op) return;
    if (op->desc) cudnnDestroyTensorDescriptor(op->desc);
    if (op->lrn) cudnnDestroyLRNDescriptor(op->lrn);
    free(op);
}

static an_status lrn_setup(an_lrn *op)
{
    const an_lrn_spec *s = &op->s;
    CUDNN_TRY(cudnnCreateTensorDescriptor(&op->desc), "creating a tensor descriptor");
    CUDNN_TRY(cudnnSetTensor4dDescriptor(op->desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->c, s->h, s->w),
              "describing an LRN input");
    CUDNN_TRY(cudnnCreateLRNDescriptor(&op->lrn), "creating an LRN descriptor");
    /* cuDNN divides alpha by the window size (as Caffe does); Heuritech's LRN does not */
    CUDNN_TRY(cudnnSetLRNDescriptor(op->lrn, (unsigned)s->size, (double)s->alpha * s->size, s->beta, s->k),
              "describing an LRN");
    return AN_OK;
}

static an_status cuda_lrn_create(an_device *dev, const an_lrn_spec *spec, int training, const an_layout *in,
                                 an_lrn **out)
{
    (void)in;
    *out = NULL;
    if (spec->n < 1 || spec->c < 1 || spec->h < 1 || spec->w < 1 || spec->size < 1 || spec->size % 2 == 0 ||
        spec->size > CUDNN_LRN_MAX_N)
        return fail(AN_ERR_ARGUMENT, "invalid LRN shape (n %d, c %d, %dx%d, size %d)", spec->n, spec->c,
                    spec->h, spec->w, spec->size);
    an_lrn *op = (an_lrn *)calloc(1, sizeof *op);
    if (!op) return fail(AN_ERR_MEMORY, "out of memory creating an LRN op");
    op->dev = as_cuda(dev);
    op->s = *spec;
    op->training = training;
    an_status s = lrn_setup(op);
    if (s != AN_OK) { lrn_free(op); return s; }
    *out = op;
    return AN_OK;
}

static an_status cuda_lrn_forward(an_lrn *op, const float *x, float *y)
{
    an_status s = use(op->dev);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_TRY(cudnnLRNCrossChannelForward(op->dev->cudnn, op->lrn, CUDNN_LRN_CROSS_CHANNEL_DIM1, &one, op->desc, x,
                                          &zero, op->desc, y), "an LRN");
    return AN_OK;
}

static an_status cuda_lrn_backward(an_lrn *op, const float *x, const float *y, const float *dy, float *dx)
{
    if (!op->training) return fail(AN_ERR_ARGUMENT, "LRN was created for inference only");
    an_status s = use(op->dev);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_TRY(cudnnLRNCrossChannelBackward(op->dev->cudnn, op->lrn, CUDNN_LRN_CROSS_CHANNEL_DIM1, &one, op->desc, y,
                                           op->desc, dy, op->desc, x, &zero, op->desc, dx), "an LRN's gradient");
    return AN_OK;
}

/* ---------------------------------------------------------------- dense
 * Row-major y (n x out) = x (n x in) W^T, W (out x in). cuBLAS is
 * column-major, where a row-major matrix reads as its transpose, so
 * y^T = op(W) x^T becomes gemm(T, N) on the same buffers. */

static an_status cuda_dense_forward(an_device *dev, int n, int in, int out, const float *x, const float *w,
                                    const float *b, int relu, float *y)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_TRY(cublasSgemm(d->cublas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, in, x, in, &zero, y, out),
               "a dense layer");
    size_t count = (size_t)n * out;
    bias_act_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(y, b, count, 1, out, relu);
    LAUNCHED("the dense bias kernel");
    return AN_OK;
}

static an_status cuda_dense_backward(an_device *dev, int n, int in, int out, const float *x, const float *w,
                                     const float *y, int relu, float *dy, float *dx, float *dw, float *db)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    const float one = 1.0f, zero = 0.0f;
    size_t count = (size_t)n * out;
    if (relu) {
        relu_mask_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(y, dy, count);
        LAUNCHED("the ReLU mask kernel");
    }
    if (dw) {   /* NULL: the input gradient alone (Grad-CAM) */
        /* dW (out x in) = dy^T x: column-major dW^T = x^T dy */
        CUBLAS_TRY(cublasSgemm(d->cublas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x, in, dy, out, &zero, dw, in),
                   "a dense layer's weight gradient");
        column_sum_kernel<<<blocks_for((size_t)out), THREADS, 0, d->stream>>>(dy, n, out, db);
        LAUNCHED("the bias gradient kernel");
    }
    /* dx (n x in) = dy W: column-major dx^T = W^T dy^T */
    if (dx)
        CUBLAS_TRY(cublasSgemm(d->cublas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w, in, dy, out, &zero, dx, in),
                   "a dense layer's input gradient");
    return AN_OK;
}

/* --------------------------------------------------- element-wise, loss */

static an_status cuda_softmax(an_device *dev, int n, int classes, const float *logits, float *prob)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    softmax_kernel<<<blocks_for((size_t)n), THREADS, 0, d->stream>>>(logits, prob, n, classes);
    LAUNCHED("the softmax kernel");
    return AN_OK;
}

static an_status cuda_dropout_forward(an_device *dev, size_t count, float rate, an_rng *rng, float *x,
                                      uint8_t *keep)
{
    cuda_device *d = as_cuda(dev);
    staging_slot *slot;
    an_status s = use(d);
    if (s == AN_OK) s = staging(d, count, &slot);
    if (s != AN_OK) return s;
    uint8_t *mask = (uint8_t *)slot->host;
    for (size_t i = 0; i < count; i++) mask[i] = engine->rng_uniform(rng) >= rate;   /* the CPU's draw, in its order */
    if ((s = staging_upload(d, slot, keep, count)) != AN_OK) return s;
    dropout_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(x, keep, count, 1.0f / (1.0f - rate));
    LAUNCHED("the dropout kernel");
    return AN_OK;
}

static an_status cuda_dropout_backward(an_device *dev, size_t count, float rate, const uint8_t *keep, float *dy)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    dropout_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(dy, keep, count, 1.0f / (1.0f - rate));
    LAUNCHED("the dropout gradient kernel");
    return AN_OK;
}

static an_status loss_scratch(cuda_device *d, int n)
{
    if (n <= d->rows) return AN_OK;
    cudaFree(d->labels);
    cudaFree(d->row_loss);
    cudaFree(d->row_correct);
    d->labels = NULL; d->row_loss = NULL; d->row_correct = NULL;
    d->rows = 0;
    CUDA_TRY(cudaMalloc(&d->labels, sizeof(int) * n), "allocating loss scratch");
    CUDA_TRY(cudaMalloc(&d->row_loss, sizeof(double) * n), "allocating loss scratch");
    CUDA_TRY(cudaMalloc(&d->row_correct, sizeof(int) * n), "allocating loss scratch");
    d->rows = n;
    return AN_OK;
}

static an_status cuda_loss(an_device *dev, int n, int classes, const float *logits, const float *prob,
                           const int *host_labels, an_loss_kind kind, float *dlogits, double *loss_sum,
                           int *correct)
{
    cuda_device *d = as_cuda(dev);
    staging_slot *slot;
    an_status s = use(d);
    if (s == AN_OK) s = loss_scratch(d, n);
    if (s == AN_OK) s = staging(d, sizeof(int) * n, &slot);
    if (s != AN_OK) return s;
    memcpy(slot->host, host_labels, sizeof(int) * n);
    if ((s = staging_upload(d, slot, d->labels, sizeof(int) * n)) != AN_OK) return s;
    loss_kernel<<<blocks_for((size_t)n), THREADS, 0, d->stream>>>(logits, prob, d->labels, n, classes,
                                                                  kind == AN_LOSS_MSE, dlogits, d->row_loss,
                                                                  d->row_correct);
    LAUNCHED("the loss kernel");
    /* the per-row results come back and are summed here, in row order, as on the CPU */
    size_t bytes = (sizeof(double) + sizeof(int)) * n;
    if ((s = staging(d, bytes, &slot)) != AN_OK) return s;
    double *rl = (double *)slot->host;
    int *rc = (int *)(rl + n);
    CUDA_TRY(cudaMemcpyAsync(rl, d->row_loss, sizeof(double) * n, cudaMemcpyDeviceToHost, d->stream),
             "downloading the loss");
    CUDA_TRY(cudaMemcpyAsync(rc, d->row_correct, sizeof(int) * n, cudaMemcpyDeviceToHost, d->stream),
             "downloading the loss");
    CUDA_TRY(cudaStreamSynchronize(d->stream), "the GPU's work (found when reading the loss)");
    for (int i = 0; i < n; i++) {
        *loss_sum += rl[i];
        *correct += rc[i];
    }
    return AN_OK;
}

static an_status images_buffers(cuda_device *d, size_t bytes)
{
    if (bytes <= d->images_bytes) return AN_OK;
    CUDA_TRY(cudaStreamSynchronize(d->copy_stream), "waiting for an image copy");
    CUDA_TRY(cudaStreamSynchronize(d->stream), "waiting for the GPU");
    if (d->pinned_images) cudaFreeHost(d->pinned_images);
    cudaFree(d->device_images);
    d->pinned_images = d->device_images = NULL;
    d->images_bytes = 0;
    d->images_pending = 0;
    HOST_TRY(cudaMallocHost((void **)&d->pinned_images, bytes), bytes, "a batch of images");
    CUDA_TRY(cudaMalloc((void **)&d->device_images, bytes), "allocating GPU memory for a batch");
    d->images_bytes = bytes;
    return AN_OK;
}

static an_status cuda_preprocess(an_device *dev, int n, int side, const float *host_images, const float mean[3],
                                 const float scale[3], an_input_layout layout, void *input)
{
    if (layout != AN_INPUT_PLANES) return fail(AN_ERR_ARGUMENT, "a GPU's input is planes");
    float *y = (float *)input;
    cuda_device *d = as_cuda(dev);
    const size_t plane = (size_t)side * side, count = (size_t)n * AN_INPUT_CHANNELS * plane;
    const size_t bytes = count * sizeof(float);
    an_status s = use(d);
    if (s == AN_OK) s = images_buffers(d, bytes);
    if (s != AN_OK) return s;
    /* The previous batch's copy was read by its preprocessing kernel before
     * the pinned and device buffers are reused; the main stream meanwhile
     * may still run the previous backward pass, which the copy overlaps. */
    if (d->images_pending) CUDA_TRY(cudaEventSynchronize(d->images_consumed), "waiting for the previous batch");
    /* in slices: the DMA of one slice overlaps the host copy of the next,
     * and each host copy runs on every engine thread */
    const size_t slice = (size_t)16 << 20;
    for (size_t off = 0; off < bytes; off += slice) {
        size_t len = bytes - off < slice ? bytes - off : slice;
        engine->copy_parallel((char *)d->pinned_images + off, (const char *)host_images + off, len);
        CUDA_TRY(cudaMemcpyAsync((char *)d->device_images + off, (char *)d->pinned_images + off, len,
                                 cudaMemcpyHostToDevice, d->copy_stream), "copying a batch to the GPU");
    }
    CUDA_TRY(cudaEventRecord(d->images_copied, d->copy_stream), "recording a batch copy");
    CUDA_TRY(cudaStreamWaitEvent(d->stream, d->images_copied, 0), "ordering a batch copy");
    const channel3 m = {{mean[0], mean[1], mean[2]}}, sc = {{scale[0], scale[1], scale[2]}};
    preprocess_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(d->device_images, y, count, plane, m, sc);
    LAUNCHED("the preprocessing kernel");
    CUDA_TRY(cudaEventRecord(d->images_consumed, d->stream), "recording a batch's use");
    d->images_pending = 1;
    return AN_OK;
}

static an_status cuda_sgd(an_device *dev, size_t count, size_t weight_count, float *p, const float *g, float *v,
                          const an_sgd_step *step)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    sgd_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(p, g, v, count, weight_count, step->lr, step->momentum,
                                                             step->weight_decay, step->nesterov);
    LAUNCHED("the SGD kernel");
    return AN_OK;
}

static an_status cuda_scale(an_device *dev, float *x, size_t count, float factor)
{
    cuda_device *d = as_cuda(dev);
    an_status s = use(d);
    if (s != AN_OK) return s;
    scale_kernel<<<blocks_for(count), THREADS, 0, d->stream>>>(x, count, factor);
    LAUNCHED("the scaling kernel");
    return AN_OK;
}

/* ----------------------------------------------------------------- NCCL */

#ifdef AN_HAVE_NCCL
static an_status nccl_fail(ncclResult_t e, const char *what)
{
    return fail(AN_ERR_BACKEND, "NCCL failed in %s: %s", what, ncclGetErrorString(e));
}
#define NCCL_TRY(call, what)                                                     \
    do {                                                                         \
        ncclResult_t e_ = (call);                                                \
        if (e_ != ncclSuccess) return nccl_fail(e_, what);                      \
    } while (0)

static const int nccl_built = 1;

static an_status cuda_nccl_id(void *id, size_t id_bytes)
{
    if (id_bytes != sizeof(ncclUniqueId)) return fail(AN_ERR_ARGUMENT, "an NCCL id has %zu bytes, not %zu",
                                                      id_bytes, sizeof(ncclUniqueId));
    ncclUniqueId u;
    NCCL_TRY(ncclGetUniqueId(&u), "drawing a communicator id");
    memcpy(id, &u, sizeof u);
    return AN_OK;
}

static an_status cuda_nccl_sum(an_device *dev, const void *id, size_t id_bytes, int rank, int size, float *values,
                               size_t count)
{
    cuda_device *d = as_cuda(dev);
    if (strcmp(dev->ops->kind, "cuda") != 0)
        return fail(AN_ERR_ARGUMENT, "NCCL sums GPU memory: the net is on the CPU");
    if (id_bytes != sizeof(ncclUniqueId) || id_bytes > sizeof d->nccl_id)
        return fail(AN_ERR_ARGUMENT, "an NCCL id has %zu bytes, not %zu", id_bytes, sizeof(ncclUniqueId));
    an_status s = use(d);
    if (s != AN_OK) return s;
    if (d->nccl && memcmp(d->nccl_id, id, id_bytes) != 0) {   /* another group: a new communicator */
        ncclCommDestroy(d->nccl);
        d->nccl = NULL;
    }
    if (!d->nccl) {
        ncclUniqueId u;
        memcpy(&u, id, sizeof u);
        NCCL_TRY(ncclCommInitRank(&d->nccl, size, u, rank), "joining the ranks' GPUs");
        memcpy(d->nccl_id, id, id_bytes);
    }
    /* in place, on the device's stream: the SGD kernels queued next see the sums */
    NCCL_TRY(ncclAllReduce(values, values, count, ncclFloat, ncclSum, d->nccl, d->stream), "summing gradients");
    return AN_OK;
}
#else
static const int nccl_built = 0;
static an_status cuda_nccl_id(void *id, size_t id_bytes)
{
    (void)id; (void)id_bytes;
    return fail(AN_ERR_ARGUMENT, "this build has no NCCL");
}
static an_status cuda_nccl_sum(an_device *dev, const void *id, size_t id_bytes, int rank, int size, float *values,
                               size_t count)
{
    (void)dev; (void)id; (void)id_bytes; (void)rank; (void)size; (void)values; (void)count;
    return fail(AN_ERR_ARGUMENT, "this build has no NCCL");
}
#endif

/* ----------------------------------------------------- open and close */

static void cuda_close(an_device *dev)
{
    if (!dev) return;
    cuda_device *d = as_cuda(dev);
    cudaSetDevice(d->ordinal);
    if (d->stream) cudaStreamSynchronize(d->stream);
    for (int i = 0; i < STAGING_SLOTS; i++) {
        if (d->staging[i].host) cudaFreeHost(d->staging[i].host);
        if (d->staging[i].done) cudaEventDestroy(d->staging[i].done);
    }
#ifdef AN_HAVE_NCCL
    if (d->nccl) ncclCommDestroy(d->nccl);
#endif
    if (d->copy_stream) cudaStreamSynchronize(d->copy_stream);
    if (d->pinned_images) cudaFreeHost(d->pinned_images);
    cudaFree(d->device_images);
    if (d->images_copied) cudaEventDestroy(d->images_copied);
    if (d->images_consumed) cudaEventDestroy(d->images_consumed);
    if (d->copy_stream) cudaStreamDestroy(d->copy_stream);
    cudaFree(d->workspace);
    cudaFree(d->bf16_scratch);
    cudaFree(d->labels);
    cudaFree(d->row_loss);
    cudaFree(d->row_correct);
    if (d->cublas) cublasDestroy(d->cublas);
    if (d->cudnn) cudnnDestroy(d->cudnn);
    if (d->stream) cudaStreamDestroy(d->stream);
    free(d);
}

/* cuDNN converts nothing outside its workspace, and bf16's copies go to the
 * device's shared scratch (conv_setup grows it): no use for lent memory */
static void cuda_conv_lend(an_conv *op, void *a, size_t a_bytes, void *b, size_t b_bytes)
{
    (void)op, (void)a, (void)a_bytes, (void)b, (void)b_bytes;
}

/* cuDNN's convolutions take planes, the layout the GPU's input comes in */
static an_input_layout cuda_conv_input_layout(const an_conv *op)
{
    (void)op;
    return AN_INPUT_PLANES;
}

static const an_backend cuda_backend = {
    "cuda", cuda_close,
    cuda_alloc, cuda_release, cuda_upload, cuda_download, cuda_zero, cuda_memory, cuda_bf16_missing,
    cuda_layout_bytes, cuda_download_plain,
    cuda_conv_create, cuda_conv_out_layout, conv_free, cuda_conv_forward, cuda_conv_backward, cuda_conv_lend,
    cuda_conv_input_layout,
    cuda_pool_create, cuda_pool_out_layout, pool_free, cuda_pool_forward, cuda_pool_backward,
    cuda_lrn_create, lrn_free, cuda_lrn_forward, cuda_lrn_backward,
    cuda_dense_forward, cuda_dense_backward, cuda_softmax,
    cuda_dropout_forward, cuda_dropout_backward, cuda_loss, cuda_preprocess, cuda_sgd, cuda_scale,
};

/* "No GPU" only where CUDA says so; any other failure (a driver older than
 * the runtime, missing device nodes) is a broken setup, and says why. */
static int cuda_probe(char *why, size_t size)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (size) why[0] = '\0';
    if (e == cudaSuccess) return count;
    cudaGetLastError();
    /* without any NVIDIA driver the runtime says "insufficient driver" too:
     * that machine simply has no GPU */
    void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (driver) dlclose(driver);
    if (e == cudaErrorNoDevice || (e == cudaErrorInsufficientDriver && !driver)) {
        if (size) snprintf(why, size, "%s", driver ? cudaGetErrorString(e) : "no NVIDIA driver (libcuda.so.1)");
        return 0;
    }
    if (size) snprintf(why, size, "cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return -1;
}

static int cuda_device_count(void)
{
    int count = cuda_probe(NULL, 0);
    return count < 0 ? 0 : count;
}

/* The GPU architectures this file was compiled for, as nvcc lists them
 * (e.g. "800,900"): machine code for each, PTX for the newest. */
#define AN_STR2(...) #__VA_ARGS__
#define AN_STR(...) AN_STR2(__VA_ARGS__)
#ifdef __CUDA_ARCH_LIST__
static const char *built_archs = AN_STR(__CUDA_ARCH_LIST__);
#else
static const char *built_archs = "unknown";
#endif

/* A GPU older than the built code has no kernel image for it: found here,
 * at open, by asking for one kernel's attributes, not at the first launch. */
static an_status check_kernel_image(int ordinal)
{
    cudaFuncAttributes attr;
    cudaError_t e = cudaFuncGetAttributes(&attr, scale_kernel);
    if (e == cudaSuccess) return AN_OK;
    cudaGetLastError();
    cudaDeviceProp prop;
    int major = 0, minor = 0;
    if (cudaGetDeviceProperties(&prop, ordinal) == cudaSuccess) { major = prop.major; minor = prop.minor; }
    return fail(AN_ERR_BACKEND, "GPU %d (compute capability %d.%d) cannot run this build's kernels (%s): "
                "it was built for compute capabilities %s (x100); set CUDA_ARCH when building to add this GPU's",
                ordinal, major, minor, cudaGetErrorString(e), built_archs);
}

static an_status device_setup(cuda_device *d)
{
    CUDA_TRY(cudaSetDevice(d->ordinal), "selecting the GPU");
    an_status s = check_kernel_image(d->ordinal);
    if (s != AN_OK) return s;
    CUDA_TRY(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking), "creating a stream");
    CUDNN_TRY(cudnnCreate(&d->cudnn), "creating a handle");
    CUDNN_TRY(cudnnSetStream(d->cudnn, d->stream), "setting the stream");
    CUBLAS_TRY(cublasCreate(&d->cublas), "creating a handle");
    CUBLAS_TRY(cublasSetStream(d->cublas, d->stream), "setting the stream");
    /* full FP32 in the dense layers, as PyTorch's default */
    CUBLAS_TRY(cublasSetMathMode(d->cublas, CUBLAS_PEDANTIC_MATH), "setting the math mode");
    for (int i = 0; i < STAGING_SLOTS; i++)
        CUDA_TRY(cudaEventCreateWithFlags(&d->staging[i].done, cudaEventDisableTiming), "creating an event");
    CUDA_TRY(cudaStreamCreateWithFlags(&d->copy_stream, cudaStreamNonBlocking), "creating a copy stream");
    CUDA_TRY(cudaEventCreateWithFlags(&d->images_copied, cudaEventDisableTiming), "creating an event");
    CUDA_TRY(cudaEventCreateWithFlags(&d->images_consumed, cudaEventDisableTiming), "creating an event");
    return AN_OK;
}

static an_status cuda_device_open(int ordinal, an_device **out)
{
    *out = NULL;
    int count = cuda_device_count();
    if (ordinal < 0 || ordinal >= count)
        return fail(AN_ERR_ARGUMENT, "no CUDA device %d: this machine has %d usable GPU%s", ordinal, count,
                    count == 1 ? "" : "s");
    cuda_device *d = (cuda_device *)calloc(1, sizeof *d);
    if (!d) return fail(AN_ERR_MEMORY, "out of memory opening a GPU");
    d->base.ops = &cuda_backend;
    d->ordinal = ordinal;
    an_status s = device_setup(d);
    if (s != AN_OK) {
        cuda_close(&d->base);
        return s;
    }
    *out = &d->base;
    return AN_OK;
}

static an_status cuda_describe(int device, char *buf, size_t size)
{
    if (size) buf[0] = '\0';
    int count = cuda_device_count();
    if (device < 0 || device >= count)
        return fail(AN_ERR_ARGUMENT, "no CUDA device %d: this machine has %d usable GPU%s", device, count,
                    count == 1 ? "" : "s");
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device), "reading the GPU's properties");
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    size_t cudnn = cudnnGetVersion();
    snprintf(buf, size, "%s, %.1f GiB, compute %d.%d; CUDA runtime %d.%d, driver %d.%d; cuDNN %zu.%zu.%zu",
             prop.name, prop.totalGlobalMem / 1073741824.0, prop.major, prop.minor, runtime / 1000,
             runtime % 1000 / 10, driver / 1000, driver % 1000 / 10, cudnn / 10000, cudnn % 10000 / 100,
             cudnn % 100);
    return AN_OK;
}

/* ------------------------------------------------------------ the entry */

static const an_cuda_api cuda_api = {
    AN_CUDA_ABI, nccl_built, cuda_probe, cuda_device_open, cuda_describe, cuda_nccl_id, cuda_nccl_sum,
    cuda_test_workspace_bytes, cuda_test_grow_workspace,
};

extern "C" __attribute__((visibility("default"))) int an_cuda_backend_entry(int engine_abi,
                                                                            const an_cuda_engine *services,
                                                                            const an_cuda_api **api)
{
    *api = NULL;
    if (engine_abi != AN_CUDA_ABI || !services || services->abi != AN_CUDA_ABI) return AN_CUDA_ABI;
    engine = services;
    *api = &cuda_api;
    return AN_CUDA_ABI;
}
