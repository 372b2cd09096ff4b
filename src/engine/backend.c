/* backend.c: the number of CPU threads the backends use, and what a fork
 * changes about them.
 *
 * A process forked from the caller (R's parallel::mclapply, mcparallel)
 * inherits the engine but not its threads: GNU libgomp's pool, once
 * started, is gone in the child, and a parallel region there with more
 * than one thread waits forever for it. So a forked child runs the engine
 * on one thread, and refuses more; nets made before the fork rebuild their
 * cached primitives there (an_plan_for), since oneDNN's keep the thread
 * count they were made with. */
#include <pthread.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "ops.h"

static int n_threads;   /* 0: OpenMP's default */
static int forked_child;

static void child_after_fork(void)
{
    forked_child = 1;
    n_threads = 1;
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void watch_forks(void) { pthread_atfork(NULL, NULL, child_after_fork); }
void an_watch_forks(void) { pthread_once(&fork_once, watch_forks); }

int an_forked_child(void) { return forked_child; }

an_status an_set_threads(int threads)
{
    if (threads < 0 || threads > an_max_threads())
        return an_fail(AN_ERR_ARGUMENT, "threads is %d: at most %d (4 for each of this machine's cores) are allowed",
                       threads, an_max_threads());
    if (forked_child && threads != 1)
        return an_fail(AN_ERR_ARGUMENT, "this is a forked process: the engine runs on one thread here, because "
                                        "OpenMP cannot start threads after a fork");
    n_threads = threads;
    return AN_OK;
}

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
