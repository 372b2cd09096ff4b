/* error.c: the thread-local message behind every an_status, and the tests'
 * injected allocation failures (ops.h). */
#include <stdarg.h>
#include <stdio.h>
#include "alexnet.h"
#include "ops.h"

static _Thread_local char last_error[512];

const char *an_error_message(void) { return last_error; }

an_status an_vfail(an_status status, const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    return status;
}

an_status an_fail(an_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    an_vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

/* Plain statics: only single-threaded tests set them, and the allocations
 * they count happen on the thread that runs the net. */
int an_fault_watching;
static long fault_count, fault_at;

void an_test_fail_allocation(long n)
{
    fault_count = 0;
    fault_at = n;
    an_fault_watching = 1;
}

long an_test_allocations(void) { return fault_count; }

int an_fault_hit(void) { return ++fault_count == fault_at; }
