/* error.c: the thread-local message behind every an_status. */
#include <stdarg.h>
#include <stdio.h>
#include "alexnet.h"

static _Thread_local char last_error[512];

const char *an_error_message(void) { return last_error; }

an_status an_fail(an_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
