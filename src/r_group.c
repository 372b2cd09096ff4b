/* r_group.c: MPI ranks for data-parallel training (engine: group.c). The
 * group is an external pointer; MPI itself is finalised once, when R exits
 * (R/distributed.R registers that). */
#include <string.h>
#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "r_alexnet.h"
#include "r_group.h"

static void group_finalizer(SEXP ptr)
{
    an_group_free(R_ExternalPtrAddr(ptr));
    R_ClearExternalPtr(ptr);
}

static an_group *get_group(SEXP ptr)
{
    an_group *g = TYPEOF(ptr) == EXTPTRSXP ? R_ExternalPtrAddr(ptr) : NULL;
    if (!g) Rf_error("not a valid MPI group (saved and reloaded?): call alexnet_mpi() again");
    return g;
}

SEXP r_an_mpi_built(void) { return Rf_ScalarLogical(an_mpi_built()); }

/* list(ptr, rank, size, local_rank, gpu): gpu is the ordinal this rank
 * takes with device "auto", -1 for none */
SEXP r_an_mpi_group(void)
{
    an_group *g;
    an_status st = an_mpi_group(&g);
    if (st != AN_OK) engine_error(st);
    SEXP ptr = PROTECT(R_MakeExternalPtr(g, R_NilValue, R_NilValue));
    R_RegisterCFinalizerEx(ptr, group_finalizer, TRUE);
    static const char *fields[] = {"ptr", "rank", "size", "local_rank", "gpu"};
    const int values[] = {0, an_group_rank(g), an_group_size(g), an_group_local_rank(g), an_group_gpu(g)};
    SEXP res = PROTECT(named_list(5, fields));
    for (int i = 0; i < 5; i++) SET_VECTOR_ELT(res, i, i == 0 ? ptr : Rf_ScalarInteger(values[i]));
    UNPROTECT(2);
    return res;
}

SEXP r_an_mpi_finalize(void)
{
    an_mpi_finalize();
    return R_NilValue;
}

SEXP r_an_group_broadcast(SEXP group, SEXP net)
{
    an_status st = an_group_broadcast_params(get_group(group), get_net(net));
    if (st != AN_OK) engine_error(st);
    return R_NilValue;
}

int get_share(SEXP share, an_net *net, an_reducer *reducer, int *offset, int *global)
{
    memset(reducer, 0, sizeof *reducer);
    *offset = *global = 0;
    if (Rf_isNull(share)) return 0;
    if (TYPEOF(share) != VECSXP || XLENGTH(share) != 3) Rf_error("`share` must be list(group, offset, global)");
    an_group *g = get_group(VECTOR_ELT(share, 0));
    *offset = scalar_int(VECTOR_ELT(share, 1), "offset");
    *global = scalar_int(VECTOR_ELT(share, 2), "global");
    if (*offset < 0 || *global < 1 || *offset > *global) Rf_error("`share` is not a place in a global batch");
    *reducer = an_group_reducer(g, net);
    return 1;
}
