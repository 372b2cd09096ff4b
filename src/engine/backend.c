/* backend.c: the number of CPU threads the backends use. */
#ifdef _OPENMP
#include <omp.h>
#endif
#include "ops.h"

static int n_threads;   /* 0: OpenMP's default */

void an_set_threads(int threads) { n_threads = threads > 0 ? threads : 0; }

int an_max_threads(void)
{
#ifdef _OPENMP
    int cores = omp_get_num_procs();
#else
    int cores = 1;
#endif
    return 4 * (cores > 1 ? cores : 1);
}

int an_get_threads(void)
{
#ifdef _OPENMP
    return n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    return n_threads > 0 ? n_threads : 1;
#endif
}
