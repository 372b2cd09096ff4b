/* files.c: opening a file to read it (files.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "files.h"

const char *an_errno_text(int e)
{
    switch (e) {
    case ENOENT: return "no such file or directory";
    case EACCES: return "permission denied";
    case EISDIR: return "is a directory";
    case ENOTDIR: return "a component of the path is not a directory";
    case EMFILE: case ENFILE: return "too many open files";
    case ENAMETOOLONG: return "file name too long";
    case EIO: return "input/output error";
    case ENOMEM: return "out of memory";
    case ELOOP: return "too many symbolic links";
    default: return NULL;
    }
}

static an_status open_failed(const char *path, const char *what, int e)
{
    const char *t = an_errno_text(e);
    if (t) return an_fail(AN_ERR_IO, "cannot open %s '%s': %s", what, path, t);
    return an_fail(AN_ERR_IO, "cannot open %s '%s' (errno %d)", what, path, e);
}

an_status an_open_regular(const char *path, const char *what, int *fd_out, long long *bytes)
{
    *fd_out = -1;
    if (bytes) *bytes = 0;
    if (!path || !path[0]) return an_fail(AN_ERR_ARGUMENT, "no %s named", what);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return open_failed(path, what, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return open_failed(path, what, e);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        if (S_ISDIR(st.st_mode)) return open_failed(path, what, EISDIR);
        return an_fail(AN_ERR_IO, "cannot open %s '%s': not a regular file (a pipe, socket or device)", what, path);
    }
    /* reads from here on may wait for the disk as usual */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *fd_out = fd;
    if (bytes) *bytes = (long long)st.st_size;
    return AN_OK;
}

an_status an_map_temp_file(const char *dir, size_t bytes, const char *what, void **out)
{
    *out = NULL;
    if (!dir || !dir[0]) return an_fail(AN_ERR_ARGUMENT, "no folder for the %s", what);
    struct statvfs fs;
    if (statvfs(dir, &fs) == 0 && (double)fs.f_bavail * (double)fs.f_frsize < (double)bytes)
        return an_fail(AN_ERR_IO, "the %s (%.2f GB) fits neither in memory nor in '%s' (%.2f GB free)", what,
                       bytes / 1e9, dir, (double)fs.f_bavail * (double)fs.f_frsize / 1e9);
    size_t len = strlen(dir);
    char *path = malloc(len + 32);
    if (!path) return an_fail(AN_ERR_MEMORY, "out of memory");
    snprintf(path, len + 32, "%s/alexnet-rows-XXXXXX", dir);
    int fd = mkstemp(path);
    int e = errno;
    if (fd >= 0) unlink(path);
    free(path);
    if (fd < 0) {
        const char *t = an_errno_text(e);
        return an_fail(AN_ERR_IO, "cannot make a file for the %s in '%s': %s", what, dir, t ? t : "error");
    }
    int r = posix_fallocate(fd, 0, (off_t)bytes);
    if (r != 0) {
        close(fd);
        const char *t = r == ENOSPC ? "no space left" : an_errno_text(r);
        return an_fail(AN_ERR_IO, "cannot reserve %.2f GB in '%s' for the %s: %s", bytes / 1e9, dir, what,
                       t ? t : "error");
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);   /* the mapping keeps the file */
    if (p == MAP_FAILED) return an_fail(AN_ERR_MEMORY, "cannot map %.2f GB for the %s", bytes / 1e9, what);
    *out = p;
    return AN_OK;
}
