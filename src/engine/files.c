/* files.c: opening a file to read it (files.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
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
