/* net_internal.h: the net's state, shared by net.c (graph, forward) and
 * train.c (backward, SGD). */
#ifndef AN_NET_INTERNAL_H
#define AN_NET_INTERNAL_H

#include "alexnet.h"
#include "ops.h"
#include "rng.h"

/* Everything the forward pass needs for one batch size. */
typedef struct {
    int n;
    int training;
    an_conv *conv[5];
    an_pool *pool[3];
    an_lrn *lrn[2];
    float *input;                       /* mean-subtracted images, plain (device memory) */
    float *act[AN_N_OUTPUTS];           /* each step's output */
    const an_layout *layout[AN_N_OUTPUTS]; /* its layout; NULL = plain */
    /* training only */
    float *grad[AN_N_OUTPUTS];          /* gradient wrt each step's output, same layout */
    uint8_t *keep[2];                   /* dropout masks after dense_1 and dense_2 */
} an_plan;
/* All of a plan's buffers and ops live on the net's device. */

#define N_PLANS 3   /* a full batch, the last smaller one, and evaluation */

struct an_net {
    int classes;
    an_device *dev;                     /* where it computes: the CPU device or an open GPU */
    int device;                         /* AN_DEVICE_CPU or the CUDA ordinal */
    /* Parameters: `params` is the host copy that callers read and write,
     * `dparams` the device's (the same block on the CPU). Each side knows
     * when it is behind, and catches up only when it is next needed. */
    float *dparams;
    int host_behind;                    /* SGD on a GPU changed dparams */
    int device_behind;                  /* a caller wrote params */
    /* training state (train.c), on the device; NULL until trained */
    float *grads;                       /* same layout as params */
    float *velocity;                    /* SGD momentum buffer */
    /* host mirrors of a GPU net's gradients and velocity, made on request
     * (on the CPU they are the same blocks as grads and velocity) */
    float *host_grads, *host_velocity;
    int velocity_device_behind;         /* a caller was handed host_velocity to write */
    uint64_t iterations;                /* SGD steps taken, for Keras' time decay */
    int trainable_from;                 /* first parameter layer that learns */
    float dropout;                      /* rate after dense_1 and dense_2 */
    an_rng dropout_rng;
    /* data parallelism: this process's rows of the global batch, so that
     * dropout draws the global batch's masks (0, 0: the whole batch) */
    int share_offset, share_global;
    float mean[3];
    float input_scale;                  /* after the mean: (x - mean) * scale */
    an_param_layer layers[AN_N_PARAM_LAYERS];
    size_t n_params;
    float *params;
    uint64_t params_version;            /* bumped on every write: invalidates cached reorders */
    an_plan *plans[N_PLANS];            /* most recently used first */
};


/* shared by the forward and training passes */
static inline int an_net_on_host(const an_net *net) { return net->dev == an_cpu_device(); }
/* upload the host copy of the parameters if a caller wrote it */
an_status an_net_params_to_device(an_net *net);
an_status an_plan_for(an_net *net, int n, int training, an_plan **out);
an_status an_plan_forward(an_net *net, an_plan *plan, int until);

#endif
