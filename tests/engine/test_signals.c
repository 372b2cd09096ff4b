/* test_signals.c: an engine call's scope (signals.c): signals arriving
 * while the engine computes, and the floating-point mode it computes in.
 *
 * oneDNN 2.6's sgemm corrupts the heap when a signal handler runs on a
 * thread inside it (a Ctrl-C in R, a profiler's SIGPROF, a child's
 * SIGCHLD), so the engine holds asynchronous signals back while it
 * computes (signals.c). Here a thread sends SIGINT every millisecond while
 * 20 training steps and 20 forward passes run: without the hold this
 * process aborted in malloc within about 30 steps; with it, the run must
 * finish, every signal must be handled (after the calls), and the weights
 * must equal those of the same steps taken in peace. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "hashfill.h"
#include "ops.h"
#include "testutil.h"
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

static volatile sig_atomic_t handled;
static volatile int stop;

static void on_signal(int s) { (void)s; handled++; }

static void *sender(void *arg)
{
    (void)arg;
    sigset_t s;   /* the sender itself never takes the signal */
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    while (!stop) {
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
        kill(getpid(), SIGINT);
    }
    return NULL;
}

static float *train(int with_signals, int *sent_ok)
{
    an_net *net;
    if (!status_ok("create", an_net_create(2, 5, &net))) return NULL;
    an_net_set_input_scale(net, 1.0f / 255);
    float *x = xmalloc(sizeof(float) * 2 * AN_INPUT_PIXELS), *out = xmalloc(sizeof(float) * 2 * 9216);
    hash_fill_image(x, 2 * (size_t)AN_INPUT_PIXELS, 2003);
    int labels[2] = {0, 1}, ok = 1;
    an_sgd opt = {1e-3f, 0.9f, 0, 0, 1};
    pthread_t t;
    stop = 0;
    if (with_signals) pthread_create(&t, NULL, sender, NULL);
    for (int s = 0; s < 20 && ok; s++) {
        double loss = 0;
        int correct = 0;
        ok = an_net_train_step(net, x, labels, 2, AN_LOSS_CROSS_ENTROPY, &opt, &loss, &correct) == AN_OK &&
             an_net_forward(net, x, 2, AN_CONVPOOL_5, out) == AN_OK;
        void *churn = malloc(1000 + 16 * s);   /* the heap is in use between the calls too */
        memset(churn, 1, 1000 + 16 * s);
        free(churn);
    }
    if (with_signals) {
        stop = 1;
        pthread_join(t, NULL);
    }
    *sent_ok = ok;
    float *p = ok ? fdup(an_net_params(net), an_net_param_count(net)) : NULL;
    free(x);
    free(out);
    an_net_free(net);
    return p;
}

#if defined(__x86_64__) || defined(__i386__)
/* The threads of a parallel region of the engine's size whose MXCSR has
 * FTZ and DAZ set (bits 15 and 6). */
static int threads_flushing(void)
{
    int flushing = 0;
#pragma omp parallel num_threads(an_get_threads())
    {
        int on = (_mm_getcsr() & 0x8040u) == 0x8040u;
#pragma omp atomic
        flushing += on;
    }
    return flushing;
}

/* Inside a call (nested or not) every thread flushes denormals; after the
 * outermost call, none does and the caller's other bits are its own again;
 * a public call leaves R's doubles as they were (2^-1074 stays > 0). */
static void test_denormal_scope(void)
{
    unsigned before = _mm_getcsr();
    _mm_setcsr(before | 0x6000u);   /* the caller's own rounding mode (toward zero), kept */
    unsigned mine = _mm_getcsr();
    int n = an_get_threads();
    an_call outer, inner;
    an_call_enter(&outer);
    int in_outer = threads_flushing();
    an_call_enter(&inner);
    an_call_leave(&inner);
    int after_inner = threads_flushing();
    an_call_leave(&outer);
    int after = threads_flushing();
    unsigned restored = _mm_getcsr();
    _mm_setcsr(before);
    CHECK("call scope: every thread flushes denormals inside, nested calls keep it, none after", in_outer == n &&
          after_inner == n && after == 0 && restored == mine, "%d/%d inside, %d after the nested call, %d after; "
          "MXCSR %#x, was %#x", in_outer, n, after_inner, after, restored, mine);
    an_net *net;
    float *x = xmalloc(sizeof(float) * AN_INPUT_PIXELS), *out = xmalloc(sizeof(float) * 9216);
    hash_fill_image(x, AN_INPUT_PIXELS, 7);
    int ok = an_net_create(2, 5, &net) == AN_OK && an_net_forward(net, x, 1, AN_CONVPOOL_5, out) == AN_OK;
    volatile double tiny = 4.9406564584124654e-324, two = 2;
    CHECK("after a forward pass: no thread flushes, denormal doubles survive", ok && threads_flushing() == 0 &&
          tiny * two > tiny, "%s", ok ? "" : an_error_message());
    an_net_free(net);
    free(x);
    free(out);
}
#else
static void test_denormal_scope(void) { printf("SKIP call scope: denormals are flushed on x86 only\n"); }
#endif

int main(void)
{
    test_denormal_scope();
    signal(SIGINT, on_signal);
    int ok_quiet = 0, ok_signals = 0;
    float *quiet = train(0, &ok_quiet);
    float *noisy = train(1, &ok_signals);
    CHECK("20 steps and forward passes under a SIGINT every millisecond", ok_signals && noisy, "%s",
          ok_signals ? "" : an_error_message());
    CHECK("the signals were handled (between the engine's calls)", handled > 0, "%d handled", (int)handled);
    an_net *tmp;
    an_net_create(2, 5, &tmp);
    size_t n = an_net_param_count(tmp);
    an_net_free(tmp);
    CHECK("the weights are those of the same steps without signals",
          quiet && noisy && memcmp(quiet, noisy, n * sizeof(float)) == 0, NULL);
    free(quiet);
    free(noisy);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail > 0;
}
