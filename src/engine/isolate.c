/* isolate.c: a reader in a short-lived child process (see isolate.h).
 *
 * Why fork and a pipe: the child gets a copy-on-write image of the caller
 * (the net, its shapes) and runs the same reading code as in process, with
 * no helper program to install or find. The results come back as records
 * through a pipe, which the parent reads straight into the buffers that
 * `place` hands it, with poll(): so it can watch the clock (a hung child)
 * and a held-back Ctrl-C meanwhile, and a child that dies shows as the end of
 * the stream. A record is a header (tag, index, payload bytes) and its
 * payload; the last one (END_TAG) carries the child's status and message.
 *
 * Fork safety: the child only runs the reader (libhdf5, malloc, write) on
 * the thread that forked; no OpenMP region, no R. It leaves as _exit does, so
 * the parent's atexit handlers (R's, HDF5's, which would flush files the
 * parent has open for writing) and stdio buffers are never run or flushed
 * twice. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE    /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

#include "isolate.h"
#include "ops.h"

#define DEFAULT_TIMEOUT 60.0

static double read_timeout = DEFAULT_TIMEOUT;
static an_isolated_fault test_fault;

void an_isolated_set_timeout(double seconds) { read_timeout = seconds > 0 ? seconds : DEFAULT_TIMEOUT; }
double an_isolated_timeout(void) { return read_timeout; }
void an_isolated_test_fault(an_isolated_fault fault) { test_fault = fault; }

#if AN_HAVE_ISOLATION

#define END_TAG 0xffffffffu

typedef struct {
    uint32_t tag, index;
    uint64_t bytes;
} record_header;

struct an_isolated {
    int fd;
};

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- the child */

/* Leave the child at once, as _exit does: no atexit handlers, no stdio
 * flush. On Linux by the system call itself, because R CMD check warns
 * about any call of _exit or _Exit in a package's code (it cannot tell a
 * forked child's exit from one that would end R). */
static void leave(int status) __attribute__((noreturn));
static void leave(int status)
{
#ifdef __linux__
    syscall(SYS_exit_group, status);
    for (;;) pause();   /* not reached */
#else
    _exit(status);
#endif
}

static int write_all(int fd, const void *data, size_t bytes)
{
    const char *p = data;
    while (bytes > 0) {
        ssize_t n = write(fd, p, bytes);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        bytes -= (size_t)n;
    }
    return 0;
}

int an_isolated_send(an_isolated *to_parent, uint32_t tag, uint32_t index, const void *data, size_t bytes)
{
    record_header h = {tag, index, (uint64_t)bytes};
    return write_all(to_parent->fd, &h, sizeof h) || write_all(to_parent->fd, data, bytes) ? -1 : 0;
}

static void misbehave(an_isolated *to_parent)
{
    switch (test_fault) {
    case AN_ISOLATED_CRASH: raise(SIGSEGV); break;
    case AN_ISOLATED_HANG: for (;;) pause(); break;
    case AN_ISOLATED_EXIT: leave(3);
    case AN_ISOLATED_GARBAGE: an_isolated_send(to_parent, 12345, 0, "?", 1); break;
    case AN_ISOLATED_TRUNCATE: {
        record_header h = {END_TAG, 0, 100};
        write_all(to_parent->fd, &h, sizeof h);
        leave(0);
    }
    case AN_ISOLATED_NORMAL: break;
    }
}

static void run_child(int fd, pid_t parent, an_isolated_work work, void *ctx) __attribute__((noreturn));
static void run_child(int fd, pid_t parent, an_isolated_work work, void *ctx)
{
    /* a fault kills the child: the parent's handlers (R's segfault report,
     * a sanitizer's) are not for this process, nor is a core dump of it */
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) signal(faults[i], SIG_DFL);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
#ifdef __linux__
    /* a hung child goes when its parent does */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (getppid() != parent) leave(1);
    /* what a crashing reader prints (glibc's "free(): invalid pointer", a
     * sanitizer's report) is not the caller's to read: the parent says what
     * happened. ALEXNET_ISOLATED_STDERR=1 keeps it, to debug a reader. */
    const char *keep_stderr = getenv("ALEXNET_ISOLATED_STDERR");
    if (!(keep_stderr && strcmp(keep_stderr, "1") == 0)) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
    an_isolated to_parent = {fd};
    misbehave(&to_parent);
    an_status s = work(&to_parent, ctx);
    const char *msg = s == AN_OK ? "" : an_error_message();
    char end[4 + 512];
    size_t len = strnlen(msg, sizeof end - 4 - 1);
    int32_t status = (int32_t)s;
    memcpy(end, &status, 4);
    memcpy(end + 4, msg, len);
    an_isolated_send(&to_parent, END_TAG, 0, end, 4 + len);
    leave(0);
}

/* ---------------------------------------------------------------- the parent */

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGSYS: return "SIGSYS";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
    }
}

/* "; nothing was loaded" */
static const char *outcome_sep(const an_isolated_names *n) { return n->outcome ? "; " : ""; }
static const char *outcome(const an_isolated_names *n) { return n->outcome ? n->outcome : ""; }

/* The child's end as a failure, when it did not end properly. */
static an_status child_died(const an_isolated_names *n, int wstatus)
{
    if (WIFSIGNALED(wstatus)) {
        int sig = WTERMSIG(wstatus);
        if (sig == SIGKILL)
            return an_fail(AN_ERR_MEMORY, "cannot read %s '%s': the process reading it was killed (signal 9, "
                           "SIGKILL: out of memory?)%s%s", n->subject, n->path, outcome_sep(n), outcome(n));
        int fault = sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT || sig == SIGFPE || sig == SIGILL ||
                    sig == SIGTRAP || sig == SIGSYS;
        if (fault)
            return an_fail(AN_ERR_FORMAT, "%s '%s' is damaged: %s crashed reading it (signal %d, %s)%s%s",
                           n->subject, n->path, n->reader, sig, signal_name(sig), outcome_sep(n), outcome(n));
        return an_fail(AN_ERR_IO, "cannot read %s '%s': the process reading it ended by signal %d (%s)%s%s",
                       n->subject, n->path, sig, signal_name(sig), outcome_sep(n), outcome(n));
    }
    return an_fail(AN_ERR_FORMAT, "%s '%s' is damaged: the process reading it (%s) failed with exit status %d%s%s",
                   n->subject, n->path, n->reader, WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1,
                   outcome_sep(n), outcome(n));
}

static an_status malformed(const an_isolated_names *n, const char *why)
{
    return an_fail(AN_ERR_FORMAT, "%s '%s': the process reading it sent a malformed result (%s)%s%s", n->subject,
                   n->path, why, outcome_sep(n), outcome(n));
}

/* The incoming stream: a header being read, or a payload. */
typedef struct {
    record_header h;
    int in_payload, ended;
    uint64_t got;
    char *dst;
    char end[4 + 512];      /* the END record */
} stream;

/* Reads what the child sent, record by record, until its end, its death,
 * a hang or an interrupt. On return the child is reaped. */
static an_status collect(const an_isolated_names *n, int fd, pid_t pid, an_isolated_place place, void *place_ctx)
{
    stream st;
    memset(&st, 0, sizeof st);
    double last = seconds_now();
    int reaped = 0, wstatus = 0;
    for (;;) {
        if (an_interrupt_pending()) {
            kill_and_reap(pid);
            return an_fail(AN_ERR_INTERRUPTED, "reading %s '%s' was interrupted%s%s", n->subject, n->path,
                           outcome_sep(n), outcome(n));
        }
        /* short waits, to see a Ctrl-C; none once the child is reaped (drain what is left) */
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, reaped ? 0 : 100);
        if (r < 0 && errno != EINTR) {
            kill_and_reap(pid);
            return an_fail(AN_ERR_IO, "cannot read %s '%s': poll on the pipe from the process reading it failed "
                           "(%s)", n->subject, n->path, strerror(errno));
        }
        if (r <= 0) {
            if (reaped) break;
            /* exited while another process (a fork elsewhere) holds the pipe open */
            pid_t w = waitpid(pid, &wstatus, WNOHANG);
            if (w == pid || (w < 0 && errno == ECHILD)) {
                reaped = 1;
                continue;
            }
            if (seconds_now() - last > read_timeout) {
                kill_and_reap(pid);
                return an_fail(AN_ERR_FORMAT, "%s '%s' is damaged: %s made no progress reading it for %g s (it "
                               "hangs on some damaged files) and was stopped%s%s (a slow disk? the read timeout "
                               "is R's option alexnet.hdf5_timeout)", n->subject, n->path, n->reader,
                               read_timeout, outcome_sep(n), outcome(n));
            }
            continue;
        }
        char *target = st.in_payload ? st.dst + st.got : (char *)&st.h + st.got;
        uint64_t want = (st.in_payload ? st.h.bytes : sizeof st.h) - st.got;
        if (want > ((uint64_t)1 << 30)) want = (uint64_t)1 << 30;
        ssize_t got = read(fd, target, (size_t)want);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) break;   /* the end of the stream (or a broken pipe): the child is gone */
        last = seconds_now();
        st.got += (uint64_t)got;
        if (!st.in_payload && st.got == sizeof st.h) {
            if (st.ended) {
                kill_and_reap(pid);
                return malformed(n, "records after its end");
            }
            st.in_payload = 1;
            st.got = 0;
            st.dst = NULL;
            if (st.h.tag == END_TAG) {
                if (st.h.bytes < 4 || st.h.bytes > sizeof st.end) {
                    kill_and_reap(pid);
                    return malformed(n, "an end record of the wrong size");
                }
                st.dst = st.end;
            } else {
                void *dst = NULL;
                an_status s = place(place_ctx, st.h.tag, st.h.index, st.h.bytes, &dst);
                if (s == AN_OK && !dst && st.h.bytes > 0)
                    s = an_fail(AN_ERR_MEMORY, "no place for a record from the process reading %s '%s'",
                                n->subject, n->path);
                if (s != AN_OK) {
                    kill_and_reap(pid);
                    return s;
                }
                st.dst = dst;
            }
        }
        if (st.in_payload && st.got == st.h.bytes) {
            if (st.h.tag == END_TAG) st.ended = 1;
            st.in_payload = 0;
            st.got = 0;
        }
    }
    if (!reaped)
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {}
    /* a child that was auto-reaped (SIGCHLD ignored) left no status: its stream decides */
    int clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    if (!clean) return child_died(n, wstatus);
    if (!st.ended || st.in_payload || st.got) return malformed(n, "it ended before its result was complete");
    int32_t status;
    memcpy(&status, st.end, 4);
    if (status < AN_OK || status > AN_ERR_DIVERGED) return malformed(n, "an unknown status");
    if (status == AN_OK) return AN_OK;
    size_t len = (size_t)st.h.bytes - 4;
    char msg[sizeof st.end];
    memcpy(msg, st.end + 4, len);
    msg[len] = '\0';
    if (!msg[0]) return malformed(n, "a failure without a message");
    return an_fail((an_status)status, "%s", msg);
}

static int pipe_cloexec(int fds[2])
{
#ifdef __linux__
    return pipe2(fds, O_CLOEXEC);
#else
    if (pipe(fds) != 0) return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
#endif
}

an_status an_isolated_run(const an_isolated_names *n, an_isolated_work work, void *work_ctx,
                          an_isolated_place place, void *place_ctx)
{
    int fds[2];
    if (pipe_cloexec(fds) != 0)
        return an_fail(errno == EMFILE || errno == ENFILE ? AN_ERR_IO : AN_ERR_MEMORY,
                       "cannot read %s '%s': no pipe for the process that reads it (%s)", n->subject, n->path,
                       strerror(errno));
    /* held in the child too (it inherits the mask): a Ctrl-C at the
     * terminal, sent to both, is the parent's to act on */
    an_call held;
    an_call_enter(&held);
#ifdef F_SETPIPE_SZ
    fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);   /* fewer round trips for hundreds of MB */
#endif
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        run_child(fds[1], parent, work, work_ctx);
    }
    int fork_errno = errno;
    close(fds[1]);
    an_status s;
    if (pid < 0) {
        s = an_fail(fork_errno == ENOMEM || fork_errno == EAGAIN ? AN_ERR_MEMORY : AN_ERR_IO,
                    "cannot read %s '%s': cannot start the process that reads it (fork: %s)", n->subject, n->path,
                    strerror(fork_errno));
    } else {
        s = collect(n, fds[0], pid, place, place_ctx);
    }
    close(fds[0]);
    an_call_leave(&held);
    return s;
}

#endif
