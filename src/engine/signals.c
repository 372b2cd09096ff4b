/* signals.c: asynchronous signals are held back from the engine's threads
 * while they compute. oneDNN 2.6's sgemm kernels corrupt the heap when a
 * signal handler runs on their thread (measured: SIGINT every few ms during
 * dnnl_sgemm, one thread or two, breaks malloc's lists within 300 calls;
 * OpenBLAS and oneDNN's convolutions under the same signals do not). A
 * signal that arrives meanwhile stays pending and is handled when the call
 * returns. */
#include <pthread.h>
#include <signal.h>
#include "ops.h"

static sigset_t async_set;
static pthread_once_t async_once = PTHREAD_ONCE_INIT;

/* every signal but the synchronous faults, which must reach their thread */
static void async_init(void)
{
    sigfillset(&async_set);
    static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof sync_signals / sizeof *sync_signals; i++) sigdelset(&async_set, sync_signals[i]);
}

void an_signals_hold(sigset_t *old)
{
    pthread_once(&async_once, async_init);
    pthread_sigmask(SIG_BLOCK, &async_set, old);
}

void an_signals_release(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }

/* A SIGINT that arrived while held back and waits to be handled: a long
 * wait inside the engine ends early so that the caller sees the interrupt. */
int an_interrupt_pending(void)
{
    sigset_t pending;
    return sigpending(&pending) == 0 && sigismember(&pending, SIGINT) == 1;
}
