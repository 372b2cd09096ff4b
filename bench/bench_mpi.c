/* bench_mpi.c: the cost of data parallelism on this machine. Run with
 * mpirun -np K (make -C tests/engine mpi-bench). Times, as medians:
 *   - MPI_Allreduce of the whole net's gradients (57M floats) and of the
 *     dense layers' alone (what fine-tuning the top layers sends);
 *   - a shared training step: each rank's share of a global batch of 16
 *     (the seed's batch), backward, all-reduce, SGD.
 * Output: mpi ranks=K allreduce_ms=... dense_allreduce_ms=... step_ms=... ips=... */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <mpi.h>
#include "alexnet.h"
#include "benchutil.h"

#define REPS 7

int main(int argc, char **argv)
{
    int global = argc > 1 ? atoi(argv[1]) : 16;
    an_group *g;
    if (an_mpi_group(&g) != AN_OK) { fprintf(stderr, "%s\n", an_error_message()); return 1; }
    int rank = an_group_rank(g), size = an_group_size(g);
    an_net *net;
    an_net_create(2, 1, &net);
    size_t np = an_net_param_count(net), dense = np - an_net_param_layer(net, AN_P_DENSE_1)->weight_offset;
    float *buf = calloc(np, sizeof(float));
    double t[REPS], scalars[2];
    an_reducer r = an_group_reducer(g, net);
    double ar = 0, ar_dense = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t count = pass ? dense : np;
        for (int i = 0; i < REPS; i++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            r.sum(r.ctx, buf, count, scalars, 2);
            t[i] = now() - t0;
        }
        *(pass ? &ar_dense : &ar) = median(t, REPS) * 1e3;
    }
    int share = global / size;
    float *x = malloc(sizeof(float) * share * AN_INPUT_PIXELS);
    for (size_t i = 0; i < (size_t)share * AN_INPUT_PIXELS; i++) x[i] = (float)((i * 2654435761u) >> 24);
    int *labels = malloc(sizeof(int) * share);
    for (int i = 0; i < share; i++) labels[i] = i % 2;
    an_sgd opt = {1e-5f, 0.9f, 0, 0, 1};
    for (int i = 0; i < REPS + 2; i++) {
        double loss = 0, t0 = now();
        int correct = 0;
        MPI_Barrier(MPI_COMM_WORLD);
        if (an_net_train_step_shared(net, x, labels, share, rank * share, global, AN_LOSS_CROSS_ENTROPY, &opt, &r,
                                     &loss, &correct) != AN_OK) {
            fprintf(stderr, "%s\n", an_error_message());
            return 1;
        }
        if (i >= 2) t[i - 2] = now() - t0;
    }
    double step = median(t, REPS) * 1e3;
    if (rank == 0)
        printf("mpi ranks=%d threads=%d params=%zu allreduce_ms=%.1f dense_allreduce_ms=%.1f global_batch=%d "
               "step_ms=%.1f ips=%.1f\n", size, an_get_threads(), np, ar, ar_dense, global, step,
               global / step * 1e3);
    an_net_free(net);
    an_group_free(g);
    an_mpi_finalize();
    return 0;
}
