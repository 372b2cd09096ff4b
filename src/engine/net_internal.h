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
    float *input;                       /* mean-subtracted images, plain */
    float *act[AN_N_OUTPUTS];           /* each step's output */
    const an_layout *layout[AN_N_OUTPUTS]; /* its layout; NULL = plain */
    /* training only */
    float *grad[AN_N_OUTPUTS];          /* gradient wrt each step's output, same layout */
    uint8_t *keep[2];                   /* dropout masks after dense_1 and dense_2 */
} an_plan;

#define N_PLANS 3   /* a full batch, the last smaller one, and evaluation */

struct an_net {
    int classes;
    /* training state (train.c) */
    float *grads;                       /* same layout as params; NULL until trained */
    float *velocity;                    /* SGD momentum buffer; NULL until trained */
    uint64_t iterations;                /* SGD steps taken, for Keras' time decay */
    int trainable_from;                 /* first parameter layer that learns */
    float dropout;                      /* rate after dense_1 and dense_2 */
    an_rng dropout_rng;
    float mean[3];
    float input_scale;                  /* after the mean: (x - mean) * scale */
    an_param_layer layers[AN_N_PARAM_LAYERS];
    size_t n_params;
    float *params;
    uint64_t params_version;            /* bumped on every write: invalidates cached reorders */
    an_plan *plans[N_PLANS];            /* most recently used first */
};


/* shared by the forward and training passes */
an_status an_plan_for(an_net *net, int n, int training, an_plan **out);
an_status an_plan_forward(an_net *net, an_plan *plan, int until);

#endif
