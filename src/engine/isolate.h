/* isolate.h: running a reader that may crash or hang (libhdf5 on a hostile
 * file) in a short-lived child process, so that it cannot end the caller's.
 *
 * The parent forks; the child runs `work`, which sends its results as
 * records (a tag, an index, a payload) through a pipe and returns a status;
 * the isolation layer sends that status and the child's error message as the
 * last record, and the child _exits. The parent puts each payload where its
 * `place` callback says (which checks the record against what it expects and
 * allocates), and turns a child that dies, hangs (no bytes for the read
 * timeout), is interrupted (a held-back Ctrl-C) or sends a malformed stream
 * into a clear error. The child is always reaped; no descriptor outlives the
 * call. Asynchronous signals are held back in both processes meanwhile
 * (signals.c). */
#ifndef AN_ISOLATE_H
#define AN_ISOLATE_H

#include <stddef.h>
#include <stdint.h>
#include "alexnet.h"

/* fork() and friends exist (POSIX); elsewhere readers run in process */
#if defined(__unix__) || defined(__APPLE__)
#define AN_HAVE_ISOLATION 1
#else
#define AN_HAVE_ISOLATION 0
#endif

typedef struct an_isolated an_isolated;   /* the child's end of the pipe */

/* In the child: the reader. Its failure message (an_fail) reaches the parent. */
typedef an_status (*an_isolated_work)(an_isolated *to_parent, void *ctx);
/* In the parent: where a record's payload of `bytes` goes (*dst, a buffer of
 * exactly that size; may stay NULL when bytes is 0). A failure (an_fail)
 * refuses the record (unexpected tag or index, wrong size, no memory) and
 * ends the child. */
typedef an_status (*an_isolated_place)(void *ctx, uint32_t tag, uint32_t index, uint64_t bytes, void **dst);

/* In the child: send one record. 0, or -1 when the parent is gone (then
 * return any failure: the child's result is no longer read). */
int an_isolated_send(an_isolated *to_parent, uint32_t tag, uint32_t index, const void *data, size_t bytes);

/* How failures of the isolation itself are worded: "<subject> '<path>' is
 * damaged: <reader> crashed reading it (signal 11, SIGSEGV); <outcome>",
 * e.g. "weights file 'x.h5' is damaged: the HDF5 library crashed reading it
 * (signal 11, SIGSEGV); nothing was loaded". outcome may be NULL. */
typedef struct {
    const char *subject, *path, *reader, *outcome;
} an_isolated_names;

/* Run `work` in a child and collect its records. Returns the child's status
 * (with its message), or a failure of the isolation itself. */
an_status an_isolated_run(const an_isolated_names *names, an_isolated_work work, void *work_ctx,
                          an_isolated_place place, void *place_ctx);

/* Seconds without a byte from the child after which it is deemed hung and
 * killed (60 by default; <= 0 restores the default). */
void an_isolated_set_timeout(double seconds);
double an_isolated_timeout(void);

/* Tests: make the next children misbehave before they run their work. */
typedef enum {
    AN_ISOLATED_NORMAL = 0,
    AN_ISOLATED_CRASH,          /* raise SIGSEGV */
    AN_ISOLATED_HANG,           /* sleep forever */
    AN_ISOLATED_EXIT,           /* _exit(3) without a word */
    AN_ISOLATED_GARBAGE,        /* a record no reader expects */
    AN_ISOLATED_TRUNCATE        /* a record header promising more bytes than come */
} an_isolated_fault;
void an_isolated_test_fault(an_isolated_fault fault);

#endif
