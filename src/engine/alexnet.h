/* alexnet.h: the engine's public interface. Plain C, no R inside.
 *
 * Conventions: single precision, channels first (N, C, H, W), row-major.
 * Every call that can fail returns an an_status and leaves a message that
 * names the culprit in a thread-local buffer read by an_error_message().
 * No engine function exits, aborts or prints.
 */
#ifndef ALEXNET_H
#define ALEXNET_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    AN_OK = 0,
    AN_ERR_ARGUMENT,    /* a caller passed a bad value */
    AN_ERR_MEMORY,      /* an allocation failed or would be unreasonably large */
    AN_ERR_BACKEND,     /* oneDNN (or cuDNN) refused or failed */
    AN_ERR_IO,          /* a file could not be read or written */
    AN_ERR_FORMAT,      /* a file or image is not what it claims to be */
    AN_ERR_INTERRUPTED, /* the caller asked to stop */
    AN_ERR_DIVERGED     /* training: a batch's loss is not finite or exploded; its step was not applied */
} an_status;

const char *an_error_message(void);
/* Record a failure (printf-style) and return `status`, for use inside the engine. */
an_status an_fail(an_status status, const char *fmt, ...);
/* the same with a va_list (the CUDA backend's messages pass through it) */
an_status an_vfail(an_status status, const char *fmt, va_list ap);

/* The input of the seed's network (and Caffe's); torchvision's takes 224. */
#define AN_INPUT_SIZE 227
#define AN_INPUT_CHANNELS 3
#define AN_INPUT_PIXELS (AN_INPUT_CHANNELS * AN_INPUT_SIZE * AN_INPUT_SIZE)

/* The variants of AlexNet the engine builds. All have the same 14 steps
 * (some of them empty), the same parameter layers and the same names for
 * the convolutions, convpool_5, the dense layers and the softmax. */
typedef enum {
    AN_ARCH_HEURITECH = 0,  /* the seed's (Heuritech's Keras-1 file): conv -> pool -> LRN
                               (alpha 1e-4 not divided by 5, k 2), 2-group conv_2/4/5, 227 */
    AN_ARCH_CAFFE = 1,      /* BVLC's bvlc_alexnet: conv -> LRN (alpha 1e-4 / 5, k 1) ->
                               pool, 2-group conv_2/4/5, 227 */
    AN_ARCH_TORCHVISION = 2,/* torchvision's ("one weird trick"): 64-192-384-256-256
                               filters, no groups, no LRN, conv_1 padded by 2, 224 */
    AN_N_ARCHS
} an_arch;
const char *an_arch_name(an_arch arch);           /* "heuritech", "caffe", "torchvision"; NULL outside */
int an_arch_find(const char *name);               /* the arch, or -1 */
int an_arch_input_size(an_arch arch);             /* the input's side: 227 or 224 */
/* Each variant's input convention, as trained: (pixel - mean) * scale per
 * channel, RGB pixels in 0..255 (Caffe's BGR weights are turned to RGB when
 * read, so every net takes RGB) */
void an_arch_input(an_arch arch, double mean[3], double scale[3]);

/* Named activations, in graph order; each is the output of the step named. */
enum {
    AN_CONV_1,      /* conv 96 11x11/4 + ReLU        96x55x55 */
    AN_POOL_1,      /* max 3x3/2                     96x27x27 */
    AN_CONVPOOL_1,  /* LRN                           96x27x27 */
    AN_CONV_2,      /* pad 2, 2 groups conv 5x5 ReLU 256x27x27 */
    AN_POOL_2,      /* max 3x3/2                     256x13x13 */
    AN_LRN_2,       /* LRN                           256x13x13 */
    AN_CONV_3,      /* pad 1, conv 3x3 + ReLU        384x13x13 */
    AN_CONV_4,      /* pad 1, 2 groups 3x3 + ReLU    384x13x13 */
    AN_CONV_5,      /* pad 1, 2 groups 3x3 + ReLU    256x13x13 */
    AN_CONVPOOL_5,  /* max 3x3/2                     256x6x6 */
    AN_DENSE_1,     /* 9216 -> 4096 + ReLU           4096 */
    AN_DENSE_2,     /* 4096 -> 4096 + ReLU           4096 */
    AN_DENSE_3,     /* 4096 -> classes (logits)      classes */
    AN_SOFTMAX,     /* softmax                       classes */
    AN_N_OUTPUTS
};

typedef struct {
    const char *name;
    int c, h, w;            /* per image; dense outputs have h = w = 1 */
} an_output_info;

/* Layers with parameters. A two-group convolution is one layer here; its
 * Keras halves are `<name>_1` (first out/2 filters) and `<name>_2`. */
enum {
    AN_P_CONV_1, AN_P_CONV_2, AN_P_CONV_3, AN_P_CONV_4, AN_P_CONV_5,
    AN_P_DENSE_1, AN_P_DENSE_2, AN_P_DENSE_3,
    AN_N_PARAM_LAYERS
};

typedef struct {
    const char *name;
    int is_conv;
    int out, in;            /* channels (conv: `in` is the layer's total input channels) */
    int kh, kw, stride, pad, groups;
    int relu;
    /* Offsets into the single parameter block, in floats. Weights are
     * cross-correlation kernels (out, in/groups, kh, kw) for convolutions,
     * (out, in) for dense layers, as in PyTorch. */
    size_t weight_offset, weight_count, bias_offset, bias_count;
} an_param_layer;

typedef struct an_net an_net;

/* A fresh net with he_normal weights (sd = sqrt(2 / fan_in)) drawn from
 * `seed`, biases zero, ImageNet RGB means (123.68, 116.779, 103.939). */
an_status an_net_create(int classes, uint64_t seed, an_net **out);
/* The same for any variant, with its input convention (an_arch_input). */
an_status an_net_create_arch(an_arch arch, int classes, uint64_t seed, an_net **out);
/* The same with every parameter 0, nothing drawn: for a net whose weights a
 * file brings (drawing 61M normals costs about a second). Layers the file
 * lacks then get an_net_init_layers with the same seed. */
an_status an_net_create_unfilled(an_arch arch, int classes, uint64_t seed, an_net **out);
/* he_normal weights and zero biases for the parameter layers flagged in
 * which[AN_N_PARAM_LAYERS] (NULL: all), each exactly as an_net_create_arch
 * with `seed` draws it. */
void an_net_init_layers(an_net *net, uint64_t seed, const int *which);
void an_net_free(an_net *net);
an_arch an_net_arch(const an_net *net);
int an_net_input_size(const an_net *net);         /* its input's side */

/* An independent copy on the CPU of everything the net holds: parameters,
 * mean, input scale, frozen layers, dropout rate and generator, and the
 * optimizer state (velocity when it exists, iterations). Its forward
 * outputs and next SGD steps are the source's, bit for bit. */
an_status an_net_clone(const an_net *src, an_net **out);

int an_net_classes(const an_net *net);
size_t an_net_param_count(const an_net *net);
const an_param_layer *an_net_param_layer(const an_net *net, int index);
an_output_info an_net_output(const an_net *net, int index);
int an_output_find(an_arch arch, const char *name);  /* index, or -1 when unknown */

/* Facts of each variant, for callers that describe it (R asks rather than
 * repeating them). */
/* "conv_1" .. "softmax"; NULL outside 0..AN_N_OUTPUTS-1 and for a step the
 * variant does not have (torchvision's LRNs: they pass their input on) */
const char *an_output_name(an_arch arch, int index);
int an_output_count(an_arch arch);             /* the variant's named outputs */
const char *an_param_layer_name(int index);    /* "conv_1" .. "dense_3"; NULL outside */
/* a net's parameters, without making one */
size_t an_param_count_for(an_arch arch, int classes);
/* What a step without parameters does ("max pool 3x3/2", "LRN 5 (alpha
 * 1e-4, beta 0.75, k 2)", "softmax"); "" for convolutions and dense layers;
 * NULL for a step the variant does not have. */
const char *an_step_operation(an_arch arch, int index);
size_t an_output_size(const an_net *net, int index); /* floats per image */

/* The one contiguous block of all parameters (layout: an_param_layer). Call
 * an_net_params_changed() after writing into it. */
float *an_net_params(an_net *net);
void an_net_params_changed(an_net *net);

void an_net_set_mean(an_net *net, const float mean[3]);
void an_net_get_mean(const an_net *net, float mean[3]);
/* Input = (pixel - mean) * scale, per channel; 1 (the Heuritech weights'
 * convention) by default. A smaller scale (e.g. 1/255) keeps the logits of
 * a freshly initialised net moderate, which makes training from scratch
 * stable. an_net_set_input_scale gives every channel the same. */
an_status an_net_set_input_scale(an_net *net, float scale);
an_status an_net_set_input_scales(an_net *net, const float scale[3]);
void an_net_get_input_scales(const an_net *net, float scale[3]);

/* Threads used by the CPU backend (both cores by default: all available;
 * 0 goes back to that default). A forked child runs on one (backend.c). */
an_status an_set_threads(int threads);
int an_get_threads(void);
/* whether this process was forked from the one that started the engine's
 * threads (an_start_threads watches for forks) */
int an_forked_child(void);
/* The most threads an_set_threads is given by the package: 4 per core
 * (more only thrash; a huge count exhausts the stack or OpenMP). */
int an_max_threads(void);
/* Start the CPU backend's threads now: they inherit the calling thread's
 * signal mask, so a caller that blocks a signal here keeps it away from
 * them for good. */
void an_start_threads(void);

/* Run `n` images (n x 3 x side x side, an_net_input_size, RGB in 0..255; the per-channel mean is
 * subtracted and the scale applied inside) up to and including the step `until`, writing its
 * activations (n x an_output_size(until)) to `out`. Inference mode:
 * dropout off. */
an_status an_net_forward(an_net *net, const float *images, int n, int until, float *out);
/* ---- starting above frozen layers ----
 * The *_from calls take, instead of images, step `at`'s output (n rows of
 * an_output_size(net, at) floats, as an_net_forward gives it, before any
 * dropout) and run the net from step at + 1: what layers below a frozen
 * one compute never changes, so it can be computed once per image. at -1
 * means images. Possible where step at + 1 is a dense layer (its input is
 * plain rows): at = convpool_5, dense_1 or dense_2. Training from there
 * gives the same steps as from the images: the dropout masks below are
 * drawn (or skipped) exactly as a whole pass draws them. */
int an_net_can_start_after(int at);
/* The same as a status: AN_OK, or the error that says which steps can. */
an_status an_start_check(int at);
/* The start for the net's frozen layers: the highest such step at or below
 * its lowest learning one with no dropout below it (a dropout mask changes
 * its output from step to step), or -1 when there is none. */
int an_net_frozen_start(const an_net *net);
/* The rows for training from `at`: step at's output as a training pass
 * computes it (its ops in training mode, whose last bits can differ from
 * inference's; no dropout), for n images. */
an_status an_net_frozen_rows(an_net *net, const float *images, int n, int at, float *out);
an_status an_net_forward_from(an_net *net, int at, const float *x, int n, int until, float *out);
/* A forward pass whose n images `fill` writes into the net's own input,
 * already preprocessed by norm ((x - mean) * scale per channel, the net's),
 * in the layout and type its first convolution computes from: on the CPU
 * a batch converted there needs no buffer, reorder or pass of its own.
 * AN_ERR_ARGUMENT on a GPU. */
typedef struct {
    float mean[3], scale[3];
} an_input_norm;
/* The layouts of a batch of n images, side x side: the planes of each
 * image (n x 3 x side x side floats, the engine's public layout), or its
 * pixels (n x side x side x 3, channels adjacent) as floats or as bf16
 * (round to nearest even: what a bf16 convolution converts planes to). */
typedef enum { AN_INPUT_PLANES = 0, AN_INPUT_PIXELS_F32 = 1, AN_INPUT_PIXELS_BF16 = 2 } an_input_layout;
typedef an_status (*an_input_fill)(void *ctx, const an_input_norm *norm, an_input_layout layout, void *input);
an_status an_net_forward_filled(an_net *net, int n, int until, an_input_fill fill, void *ctx, float *out);
/* The memory a batch of `n` images needs on the net's device for its
 * activations (every step's output and the input, with room for blocked
 * layouts; training doubles it for the gradients), in bytes: the estimate
 * by which the engine refuses batches too large. */
double an_net_batch_bytes(const an_net *net, int n, int training);

/* ---- training ----
 * The loss is computed on the softmax of dense_3: cross-entropy, or the
 * seed's mean squared error between the softmax and the one-hot label. */
typedef enum { AN_LOSS_CROSS_ENTROPY = 0, AN_LOSS_MSE = 1 } an_loss_kind;

/* Keras' SGD: lr_t = lr / (1 + decay * iterations); v = momentum v - lr_t g;
 * p += v, or with Nesterov p += momentum v - lr_t g. weight_decay adds
 * weight_decay * w to the gradient of weights (not biases). */
typedef struct {
    float lr, momentum, decay, weight_decay;
    int nesterov;
} an_sgd;

/* Parameter layers before `first` (an AN_P_* index) are frozen: no
 * gradients are computed for them or below them, and SGD leaves them. */
an_status an_net_set_trainable_from(an_net *net, int first);
int an_net_trainable_from(const an_net *net);
an_status an_net_set_dropout(an_net *net, float rate);   /* 0.5 by default */
void an_net_seed_dropout(an_net *net, uint64_t seed);

/* Forward in training mode (dropout on) and backward: fills the gradient
 * block (same layout as the parameters) for the learning layers. Adds the
 * summed loss to *loss_sum and the count of correct argmax to *correct.
 * Labels are 0-based class indices. */
an_status an_net_backward(an_net *net, const float *images, const int *labels, int n,
                          an_loss_kind loss, double *loss_sum, int *correct);
an_status an_net_sgd_update(an_net *net, const an_sgd *opt);
/* backward + update. The update is not applied, and AN_ERR_DIVERGED is
 * returned, when the batch's mean loss is not finite or above
 * AN_DIVERGED_LOSS (a net whose loss has exploded: cross-entropy of a guess
 * is log(classes), the seed's MSE at most 2), so the net keeps the weights
 * of the last sound step. */
#define AN_DIVERGED_LOSS 1000.0
an_status an_net_train_step(an_net *net, const float *images, const int *labels, int n,
                            an_loss_kind loss, const an_sgd *opt, double *loss_sum, int *correct);
an_status an_net_train_step_from(an_net *net, int at, const float *x, const int *labels, int n,
                                 an_loss_kind loss, const an_sgd *opt, double *loss_sum, int *correct);
/* ---- data-parallel training ----
 * Each of several processes (ranks) takes rows [row_offset, row_offset + n)
 * of a global batch of `global_rows` images, computes its gradients, and
 * the reducer sums them (and the loss and correct counts) over all ranks
 * before the same SGD step everywhere. The gradients are weighted by
 * n / global_rows first, and the dropout masks are drawn for the whole
 * global batch, so ranks together follow the history of one process with
 * the whole batch, up to the order of floating-point sums. */
typedef struct {
    /* sum `values` (count floats) and `scalars` (count doubles) over all
     * ranks, in place, identically on every rank */
    an_status (*sum)(void *ctx, float *values, size_t count, double *scalars, int n_scalars);
    void *ctx;
    int device_values;      /* `values` in the net's device memory (a GPU's), not the host's */
} an_reducer;

an_status an_net_train_step_shared(an_net *net, const float *images, const int *labels, int n, int row_offset,
                                   int global_rows, an_loss_kind loss, const an_sgd *opt, const an_reducer *reducer,
                                   double *loss_sum, int *correct);

/* MPI ranks (MPI_COMM_WORLD) as a reducer; MPI is initialised on first
 * use. Fails clearly where the engine was built without MPI. */
typedef struct an_group an_group;
an_status an_mpi_group(an_group **out);
int an_mpi_built(void);
int an_group_rank(const an_group *group);
int an_group_size(const an_group *group);
/* the rank among those on this machine, and the GPU it takes with
 * device "auto": local rank modulo the GPUs (-1: none) */
int an_group_local_rank(const an_group *group);
int an_group_gpu(const an_group *group);
int an_rank_gpu(int local_rank, int gpus);
/* The reducer for `net`: MPI on host memory, or, for a net on a GPU where
 * the engine has NCCL, NCCL on the GPU's memory (gradients never leave it). */
an_reducer an_group_reducer(an_group *group, an_net *net);
/* rank 0's parameters to every rank (nets made with other seeds agree after) */
an_status an_group_broadcast_params(an_group *group, an_net *net);
/* stop everything: MPI_Abort with `code`, for a rank that cannot go on */
void an_group_abort(an_group *group, int code);
void an_group_free(an_group *group);
void an_mpi_finalize(void);

/* loss and correct count in inference mode, no update */
an_status an_net_evaluate(an_net *net, const float *images, const int *labels, int n,
                          an_loss_kind loss, double *loss_sum, int *correct);
an_status an_net_evaluate_from(an_net *net, int at, const float *x, const int *labels, int n,
                               an_loss_kind loss, double *loss_sum, int *correct);

/* NULL before the first backward (or when a GPU's copy fails) */
const float *an_net_grads(an_net *net);
/* The momentum buffer (allocated on first use), for checkpoints. */
an_status an_net_velocity(an_net *net, float **velocity);
/* zero velocity and iteration count, as a freshly compiled Keras model has */
void an_net_reset_optimizer(an_net *net);
uint64_t an_net_iterations(const an_net *net);
void an_net_set_iterations(an_net *net, uint64_t iterations);

/* Convert one image from a strided double array (h x w pixels, 1 or 3
 * channels, values 0..255; element (y, x, ch) at src[y*sy + x*sx + ch*sc])
 * to the net's input layout (3 x 227 x 227 floats), resized as a JPEG
 * file of the same pixels is (box average where 2x or more too large, then
 * bilinear, half-pixel centres as PIL and torch) and grey copied to R, G, B. */
an_status an_image_to_input(const double *src, ptrdiff_t sy, ptrdiff_t sx, ptrdiff_t sc,
                            int h, int w, int channels, float *dst);

/* Backend description, e.g. "cpu (oneDNN 2.6.3, 2 threads)". */
const char *an_backend_name(void);

/* ---- Grad-CAM (Selvaraju et al. 2017) ----
 * Where in each image the evidence for a class lies: the gradient of the
 * class's score (its logit, before the softmax) with respect to step
 * `layer`'s output (conv_1 to convpool_5), averaged over each channel's
 * positions, weights that channel's activations; their sum, negative
 * values set to 0, is the map (the layer's h x w, row-major) at
 * maps + i * h * w. classes[i]: the class (0-based), or -1 for the one the
 * net predicts, which is then written there. Inference (no dropout); the
 * weights, gradients and optimiser state are left as they were. */
an_status an_net_gradcam(an_net *net, const float *images, int n, int layer, int *classes, float *maps);

/* ---- devices ----
 * A net computes on the CPU or on one CUDA GPU; its parameters and training
 * state live there, and a host copy (an_net_params) catches up on request. */
#define AN_DEVICE_CPU (-1)
/* Move a net to AN_DEVICE_CPU or the CUDA device `device` (0, 1, ...). On
 * failure (no such GPU, out of GPU memory) it stays where it was. A bf16 net
 * moved where bf16 is missing becomes f32 (an_net_precision tells). */
an_status an_net_set_device(an_net *net, int device);
int an_net_device(const an_net *net);

/* ---- precision ----
 * f32 everywhere, or bf16 multiplications in the convolutions: inputs,
 * weights and output gradients rounded to bf16, products summed in f32;
 * activations, the dense layers, softmax, loss, the parameters (the master
 * copy) and SGD stay f32, so features and gradients come out in f32. The
 * bf16 weights are a cache of the f32 ones, made anew after each change. */
typedef enum { AN_PRECISION_F32 = 0, AN_PRECISION_BF16 = 1 } an_precision;
/* Set the net's precision. bf16 where the device has no native bf16 (a CPU
 * without AVX512_BF16; the GPU backend, not written yet) is refused with a
 * message saying why, and the net keeps its precision. */
an_status an_net_set_precision(an_net *net, an_precision precision);
an_precision an_net_precision(const an_net *net);
/* NULL when `device` runs bf16 natively, else why not (AN_DEVICE_CPU or a
 * GPU, which is opened to ask); the same for the net's own device */
const char *an_bf16_missing(int device);
const char *an_net_bf16_missing(const an_net *net);

/* 1 when the engine was built with its GPU backend (CUDA and cuDNN), which
 * it loads on the first call below that needs a GPU (cuda_loader.c) */
int an_cuda_built(void);
int an_cuda_device_count(void);    /* usable GPUs; 0 when not built, no driver or none */
/* usable GPUs, or -1 when CUDA fails for another reason than having none
 * (the GPU backend or a CUDA library does not load, driver older than the
 * runtime, no device nodes); `why` says which */
int an_cuda_probe(char *why, size_t size);
/* "NVIDIA H100 80GB HBM3, 79.1 GiB, compute 9.0; CUDA runtime 13.0, driver 13.0; cuDNN 9.19.0" */
an_status an_cuda_describe(int device, char *buf, size_t size);
/* TF32 tensor-core math in cuDNN convolutions (on by default, as in
 * PyTorch; env AN_CUDA_TF32=0 turns it off). Dense layers are full FP32. */
void an_cuda_set_tf32(int allow);
int an_cuda_tf32(void);

#ifdef __cplusplus
}
#endif
#endif
