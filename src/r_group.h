/* r_group.h: .Call entry points for MPI ranks (r_group.c), and the training
 * step the batch entries share. */
#ifndef R_GROUP_H
#define R_GROUP_H
#include <Rinternals.h>
#include "alexnet.h"

SEXP r_an_mpi_built(void);
SEXP r_an_mpi_group(void);
SEXP r_an_mpi_finalize(void);
SEXP r_an_group_broadcast(SEXP group, SEXP net);

/* One SGD step on `n` images: alone when `share` is NULL, else this rank's
 * share of a global batch, share = list(group, row_offset, global_rows).
 * Raises R errors only for bad arguments, before the engine runs (with
 * SIGINT held, see sigint_hold). */
an_status train_step(an_net *net, SEXP share, const float *images, const int *labels, int n, an_loss_kind loss,
                     const an_sgd *opt, double *loss_sum, int *correct);

#endif
