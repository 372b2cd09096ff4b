/* group.c: MPI ranks as the reducer of data-parallel training. Built with
 * MPI only where configure found it (AN_HAVE_MPI); otherwise every entry
 * says so. MPI_COMM_WORLD is the group: processes started by
 * `mpirun -np K ...`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "alexnet.h"
#include "net_internal.h"

#ifdef AN_HAVE_MPI
#include <limits.h>
#include <mpi.h>

struct an_group {
    int rank, size;
    int local_rank;             /* among the ranks on this machine */
    int node;                   /* this machine: the lowest world rank on it */
    an_device *gpu;             /* the GPU whose memory NCCL sums (an_group_reducer) */
    int have_nccl_id;
    char nccl_id[128];          /* drawn by rank 0, sent to all: one NCCL communicator */
};

int an_mpi_built(void) { return 1; }

static an_status mpi_fail(int code, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", code);
    return an_fail(AN_ERR_BACKEND, "MPI failed in %s: %s", what, text);
}

an_status an_mpi_group(an_group **out)
{
    *out = NULL;
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) return an_fail(AN_ERR_ARGUMENT, "MPI was already finalised in this process");
    if (!initialized) {
        int provided, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread");
    }
    /* errors come back as codes (and messages) instead of killing the process */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    an_group *g = calloc(1, sizeof *g);
    if (!g) return an_fail(AN_ERR_MEMORY, "out of memory creating an MPI group");
    MPI_Comm_rank(MPI_COMM_WORLD, &g->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g->size);
    /* the ranks that share this machine (and its GPUs) */
    MPI_Comm node;
    int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) {
        free(g);
        return mpi_fail(rc, "finding the ranks on this machine");
    }
    MPI_Comm_rank(node, &g->local_rank);
    MPI_Allreduce(&g->rank, &g->node, 1, MPI_INT, MPI_MIN, node);
    MPI_Comm_free(&node);
    *out = g;
    return AN_OK;
}

/* NCCL needs every rank on its own GPU: all ranks' nets on GPUs, and no two
 * ranks of one machine on the same one. Decided together, so that every
 * rank makes the same choice. */
static int nccl_usable(an_group *g, an_net *net)
{
    int mine[2] = {-1, -1};
    if (net && !an_net_on_host(net) && an_cuda_nccl_built()) {
        mine[0] = g->node;
        mine[1] = an_net_device(net);
    }
    int *all = malloc(sizeof(int) * 2 * (size_t)g->size);
    if (!all) return 0;
    int usable = MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, MPI_COMM_WORLD) == MPI_SUCCESS;
    for (int i = 0; i < g->size && usable; i++) {
        if (all[2 * i] < 0) usable = 0;
        for (int j = 0; j < i && usable; j++)
            if (all[2 * i] == all[2 * j] && all[2 * i + 1] == all[2 * j + 1]) usable = 0;
    }
    free(all);
    return usable;
}

/* Allreduce in pieces of at most INT_MAX elements (MPI counts are int). */
static an_status mpi_sum(void *ctx, float *values, size_t count, double *scalars, int n_scalars)
{
    an_group *g = ctx;
    if (g->size == 1) return AN_OK;
    for (size_t done = 0; done < count;) {
        int piece = count - done > INT_MAX ? INT_MAX : (int)(count - done);
        int rc = MPI_Allreduce(MPI_IN_PLACE, values + done, piece, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "summing gradients over the ranks");
        done += (size_t)piece;
    }
    if (n_scalars > 0) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, scalars, n_scalars, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "summing the loss over the ranks");
    }
    return AN_OK;
}

/* the gradients on each rank's GPU through NCCL, the loss through MPI */
static an_status nccl_sum(void *ctx, float *values, size_t count, double *scalars, int n_scalars)
{
    an_group *g = ctx;
    if (!g->have_nccl_id) {
        an_status s = g->rank == 0 ? an_cuda_nccl_id(g->nccl_id, sizeof g->nccl_id) : AN_OK;
        int ok = s == AN_OK, all_ok = 0;
        MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
        if (!all_ok) return s != AN_OK ? s : an_fail(AN_ERR_BACKEND, "rank 0 could not draw an NCCL id");
        int rc = MPI_Bcast(g->nccl_id, (int)sizeof g->nccl_id, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "sending the NCCL id");
        g->have_nccl_id = 1;
    }
    an_status s = an_cuda_nccl_sum(g->gpu, g->nccl_id, sizeof g->nccl_id, g->rank, g->size, values, count);
    if (s != AN_OK || n_scalars == 0) return s;
    int rc = MPI_Allreduce(MPI_IN_PLACE, scalars, n_scalars, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? AN_OK : mpi_fail(rc, "summing the loss over the ranks");
}

/* The reducers as handed out hold signals for the whole call, as the
 * training steps do (signals.c), whoever calls them. */
typedef an_status (*sum_fn)(void *ctx, float *values, size_t count, double *scalars, int n_scalars);

static an_status held_sum(sum_fn sum, void *ctx, float *values, size_t count, double *scalars, int n_scalars)
{
    an_call old;
    an_call_enter(&old);
    an_status s = sum(ctx, values, count, scalars, n_scalars);
    an_call_leave(&old);
    return s;
}

static an_status group_sum(void *ctx, float *values, size_t count, double *scalars, int n_scalars)
{
    return held_sum(mpi_sum, ctx, values, count, scalars, n_scalars);
}

static an_status nccl_group_sum(void *ctx, float *values, size_t count, double *scalars, int n_scalars)
{
    return held_sum(nccl_sum, ctx, values, count, scalars, n_scalars);
}

/* signals held for the whole call too */
an_status an_group_broadcast_params(an_group *g, an_net *net)
{
    an_call old;
    an_call_enter(&old);
    an_status s = AN_OK;
    float *p = an_net_params(net);
    size_t count = an_net_param_count(net);
    for (size_t done = 0; done < count && s == AN_OK;) {
        int piece = count - done > INT_MAX ? INT_MAX : (int)(count - done);
        int rc = MPI_Bcast(p + done, piece, MPI_FLOAT, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) s = mpi_fail(rc, "sending rank 0's parameters");
        done += (size_t)piece;
    }
    (void)g;
    if (s == AN_OK) an_net_params_changed(net);
    an_call_leave(&old);
    return s;
}

void an_group_abort(an_group *g, int code)
{
    (void)g;
    MPI_Abort(MPI_COMM_WORLD, code);
}

void an_mpi_finalize(void)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Finalize();
}

#else /* no MPI */

struct an_group {
    int rank, size, local_rank;
};

int an_mpi_built(void) { return 0; }

an_status an_mpi_group(an_group **out)
{
    *out = NULL;
    return an_fail(AN_ERR_ARGUMENT, "this build of the engine has no MPI (configure found no mpicc: "
                   "install the Debian packages libopenmpi-dev and openmpi-bin, then reinstall)");
}

static an_status group_sum(void *ctx, float *values, size_t count, double *scalars, int n_scalars)
{
    (void)ctx; (void)values; (void)count; (void)scalars; (void)n_scalars;
    return an_fail(AN_ERR_ARGUMENT, "this build of the engine has no MPI");
}

an_status an_group_broadcast_params(an_group *g, an_net *net)
{
    (void)g; (void)net;
    return an_fail(AN_ERR_ARGUMENT, "this build of the engine has no MPI");
}

void an_group_abort(an_group *g, int code) { (void)g; (void)code; }
void an_mpi_finalize(void) {}

#endif

int an_group_rank(const an_group *g) { return g ? g->rank : 0; }
int an_group_local_rank(const an_group *g) { return g ? g->local_rank : 0; }
int an_group_gpu(const an_group *g) { return an_rank_gpu(an_group_local_rank(g), an_cuda_device_count()); }
int an_rank_gpu(int local_rank, int gpus) { return gpus > 0 && local_rank >= 0 ? local_rank % gpus : -1; }
int an_group_size(const an_group *g) { return g ? g->size : 1; }
void an_group_free(an_group *g) { free(g); }

an_reducer an_group_reducer(an_group *g, an_net *net)
{
    an_reducer r = {group_sum, g, 0};
#ifdef AN_HAVE_MPI
    /* the NCCL id is sized for NCCL's 128 bytes */
    if (nccl_usable(g, net)) {
        g->gpu = net->dev;
        r.sum = nccl_group_sum;
        r.device_values = 1;
    }
#else
    (void)net;
#endif
    return r;
}
