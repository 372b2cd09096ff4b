/* signals.c: an engine call's scope.
 *
 * Asynchronous signals are held back from the engine's threads while they
 * compute. oneDNN 2.6's sgemm kernels corrupt the heap when a signal
 * handler runs on their thread (measured: SIGINT every few ms during
 * dnnl_sgemm, one thread or two, breaks malloc's lists within 300 calls;
 * OpenBLAS and oneDNN's convolutions under the same signals do not). A
 * signal that arrives meanwhile stays pending and is handled when the call
 * returns.
 *
 * Denormal floats are flushed to zero meanwhile. Training drives some
 * gradients and momenta below FLT_MIN, and Intel's cores take a microcode
 * assist for each such operand: measured on a Xeon with AMX, f32 training
 * of AlexNet at batch 16 ran at 14 img/s with denormals and 57 without (AMD's
 * Zen 4 barely slows). Values under 1.2e-38 change nothing a net learns. The
 * mode is per thread, so it is set on the caller's and OpenMP's threads and
 * restored when the outermost call leaves. */
#include <pthread.h>
#include <signal.h>
#include "ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
enum { FLUSH_DENORMALS = 0x8040 };   /* MXCSR's FTZ (bit 15) and DAZ (bit 6) */
static _Thread_local unsigned saved_csr;
static _Thread_local int csr_saved;

static void flush_denormals(void)
{
    if (!csr_saved) {
        saved_csr = _mm_getcsr();
        csr_saved = 1;
    }
    _mm_setcsr(saved_csr | FLUSH_DENORMALS);
}

static void restore_denormals(void)
{
    if (!csr_saved) return;
    _mm_setcsr(saved_csr);
    csr_saved = 0;
}
#else
static void flush_denormals(void) {}
static void restore_denormals(void) {}
#endif

static _Thread_local int call_depth;

static sigset_t async_set;
static pthread_once_t async_once = PTHREAD_ONCE_INIT;

/* every signal but the synchronous faults, which must reach their thread */
static void async_init(void)
{
    sigfillset(&async_set);
    static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof sync_signals / sizeof *sync_signals; i++) sigdelset(&async_set, sync_signals[i]);
}

void an_call_enter(an_call *call)
{
    pthread_once(&async_once, async_init);
    pthread_sigmask(SIG_BLOCK, &async_set, &call->signals);
    call->outermost = call_depth++ == 0;
    call->threads = an_get_threads();
    if (!call->outermost) return;
#pragma omp parallel num_threads(call->threads)
    flush_denormals();
}

void an_call_leave(const an_call *call)
{
    if (call->outermost) {
#pragma omp parallel num_threads(call->threads)
        restore_denormals();
    }
    call_depth--;
    pthread_sigmask(SIG_SETMASK, &call->signals, NULL);
}

/* A SIGINT that arrived while held back and waits to be handled: a long
 * wait inside the engine ends early so that the caller sees the interrupt. */
int an_interrupt_pending(void)
{
    sigset_t pending;
    return sigpending(&pending) == 0 && sigismember(&pending, SIGINT) == 1;
}
