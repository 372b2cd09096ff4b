/* fuzz_util.h: what the file-reading harnesses share: a file of their own per
 * process (fork mode runs several at once) that holds each input, and a
 * broken promise turned into a crash libFuzzer keeps. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

/* /dev/shm/an_fuzz_<name>_<pid><ext> into path */
static inline void fuzz_tmp_path(char *path, size_t size, const char *name, const char *ext)
{
    snprintf(path, size, "/dev/shm/an_fuzz_%s_%ld%s", name, (long)getpid(), ext);
}

/* the input as the file at path; 0 when it could not be written */
static inline int fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int written = fwrite(data, 1, size, f) == size;
    if (fclose(f) != 0 || !written) {
        remove(path);
        return 0;
    }
    return 1;
}

static inline void fuzz_broken(const char *harness, const char *what, const char *detail)
{
    fprintf(stderr, "%s: broken promise: %s (%s)\n", harness, what, detail ? detail : "");
    __builtin_trap();
}

#endif
