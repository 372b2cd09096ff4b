/* net_internal.h: the net's state, shared by net.c (graph, forward) and
 * train.c (backward, SGD, and the training state it owns). */
#ifndef AN_NET_INTERNAL_H
#define AN_NET_INTERNAL_H

#include <sys/types.h>
#include "alexnet.h"
#include "ops.h"
#include "rng.h"

/* ---- the graph, written once: one step per named output, in order; the
 * input of step i is the output of step i - 1 (step 0: the images). The
 * forward pass walks it up, the backward pass down. */
/* AN_STEP_NONE: a step the variant does not have (torchvision's LRNs); its
 * output and its gradient are its input's, the same buffers, so it costs
 * nothing and every variant keeps the same step indices. */
typedef enum { AN_STEP_CONV, AN_STEP_POOL, AN_STEP_LRN, AN_STEP_DENSE, AN_STEP_SOFTMAX, AN_STEP_NONE } an_step_kind;

typedef struct {
    an_output_info out;     /* name and shape per image (dense_3, softmax: c = the classes) */
    an_step_kind kind;
    int param;              /* its parameter layer (AN_P_*), -1 when it has none */
    int dropout;            /* training drops units of its output */
} an_step;

/* A variant of the network: its graph, layers, LRN and input. */
typedef struct {
    const char *name;
    an_step steps[AN_N_OUTPUTS];
    an_param_layer layers[AN_N_PARAM_LAYERS];   /* dense_3's out is the class count */
    int input_size;
    /* LRN: x / (k + alpha * sum over 5 channels of x^2)^0.75, alpha NOT
     * divided by the window (Caffe's and PyTorch's alpha / 5 is given here
     * already divided) */
    float lrn_alpha, lrn_k;
    const char *lrn_text;
    double mean[3], scale[3];
} an_arch_info;
extern const an_arch_info an_archs[AN_N_ARCHS];

/* every pooling is max 3x3 /2; every LRN spans 5 channels, beta 0.75 */
#define AN_POOL_K 3
#define AN_POOL_STRIDE 2
#define AN_LRN_SIZE 5
#define AN_LRN_BETA 0.75f
#define AN_POOL_TEXT "max pool 3x3/2"

/* Everything the forward pass needs for one batch size. */
typedef struct {
    int n;
    int training;
    an_step_kind kind[AN_N_OUTPUTS];    /* the net's steps', kept for freeing */
    /* each step's op (conv, pool or LRN; dense and softmax need none) */
    union { an_conv *conv; an_pool *pool; an_lrn *lrn; } op[AN_N_OUTPUTS];
    float *input;                       /* mean-subtracted images (device memory), in the
                                         * layout of its first convolution (planes on a GPU) */
    float *act[AN_N_OUTPUTS];           /* each step's output (an AN_STEP_NONE's is its input's) */
    const an_layout *layout[AN_N_OUTPUTS]; /* its layout; NULL = plain */
    /* training only */
    float *grad[AN_N_OUTPUTS];          /* gradient wrt each step's output, same layout */
    /* the gradients' memory: a step's backward reads grad[i] and writes
     * grad[i - 1], and nothing reads grad[i] after that, so the steps take
     * turns with two buffers of the largest size (an AN_STEP_NONE shares
     * its input's) */
    float *grad_buf[2];
    uint8_t *keep[AN_N_OUTPUTS];        /* dropout masks of the steps that drop units */
} an_plan;
/* All of a plan's buffers and ops live on the net's device. */

#define N_PLANS 3   /* a full batch, the last smaller one, and evaluation */

/* The training state (gradients, SGD velocity, their host mirrors, the
 * iteration count): train.c's alone; net.c only makes, moves and frees it. */
typedef struct an_train an_train;

struct an_net {
    const an_arch_info *arch;           /* its graph: one of an_archs */
    int classes;
    an_device *dev;                     /* where it computes: the CPU device or an open GPU */
    int device;                         /* AN_DEVICE_CPU or the CUDA ordinal */
    /* Parameters: `params` is the host copy that callers read and write,
     * `dparams` the device's (the same block on the CPU). Each side knows
     * when it is behind, and catches up only when it is next needed. */
    float *dparams;
    int host_behind;                    /* SGD on a GPU changed dparams */
    int device_behind;                  /* a caller wrote params */
    an_train *train;                    /* never NULL */
    int trainable_from;                 /* first parameter layer that learns */
    float dropout;                      /* rate after dense_1 and dense_2 */
    an_rng dropout_rng;
    /* data parallelism: this process's rows of the global batch, so that
     * dropout draws the global batch's masks (0, 0: the whole batch) */
    int share_offset, share_global;
    float mean[3];
    float input_scale[3];               /* after the mean: (x - mean) * scale, per channel */
    an_precision precision;             /* of the convolutions' multiplications */
    an_param_layer layers[AN_N_PARAM_LAYERS];
    size_t n_params;
    float *params;
    uint64_t params_version;            /* bumped on every write: invalidates cached reorders */
    an_plan *plans[N_PLANS];            /* most recently used first */
    pid_t plans_pid;                    /* the process that made them (a fork's child remakes them) */
};


/* shared by the forward and training passes */
static inline int an_net_on_host(const an_net *net) { return net->dev == an_cpu_device(); }
/* upload the host copy of the parameters if a caller wrote it */
an_status an_net_params_to_device(an_net *net);
an_status an_plan_for(an_net *net, int n, int training, an_plan **out);
an_status an_plan_forward(an_net *net, an_plan *plan, int until);
an_status an_plan_forward_from(an_net *net, an_plan *plan, int first, int until);
/* step `step`'s output or its gradient (src: p->act[step] or p->grad[step],
 * same layout) as plain n x c x h x w floats on the host */
an_status an_plan_download(an_net *net, an_plan *p, int step, const float *src, float *host);
/* the same with dropout on (training plans) or off, as asked */
an_status an_plan_run(an_net *net, an_plan *plan, int first, int until, int dropout);
/* train.c: plan p's backward pass from dense_3 (its output gradient in
 * p->grad[AN_DENSE_3]) down to step `lowest`: the input gradient of every
 * step above `lowest` (and of `lowest` itself when lowest_dx), parameter
 * gradients into G (NULL: none, the weights untouched); `dropout`: the
 * forward drew dropout masks, which the gradients then pass through. */
an_status an_plan_backward(an_net *net, an_plan *p, int lowest, int lowest_dx, float *G, int dropout);
/* The batch's start into the plan: images (at -1: preprocessed into the
 * input) or step `at`'s output rows (an_net_can_start_after(at)). */
an_status an_plan_load(an_net *net, an_plan *plan, int at, const float *x);

/* train.c: a fresh (empty) training state */
an_status an_train_new(an_train **out);
/* The net's training state as it would be on `to` (the CPU or an open GPU):
 * the velocity and the iteration count. Gradients belong to one backward
 * pass and stay behind. The net is left as it is. */
an_status an_train_copy(const an_net *net, an_device *to, an_train **out);
/* free a state whose blocks live on `dev` */
void an_train_free(an_device *dev, an_train *train);

#endif
