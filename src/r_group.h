/* r_group.h: .Call entry points for MPI ranks (r_group.c), and a rank's
 * share of a batch for the training entries. */
#ifndef R_GROUP_H
#define R_GROUP_H
#include <Rinternals.h>
#include "alexnet.h"

SEXP r_an_mpi_built(void);
SEXP r_an_mpi_group(void);
SEXP r_an_mpi_finalize(void);
SEXP r_an_group_broadcast(SEXP group, SEXP net);

/* `share` (NULL, or this rank's place in a global batch: list(group,
 * row_offset, global_rows)) as the engine's reducer and place: 1 when
 * given, 0 for one process. Raises R errors for bad arguments. */
int get_share(SEXP share, an_net *net, an_reducer *reducer, int *offset, int *global);

#endif
