/* files.h: opening a file to read it, the one way every reader does. */
#ifndef AN_FILES_H
#define AN_FILES_H

#include "alexnet.h"

/* Opens `path` for reading when it is a regular file. A FIFO or a device
 * named like a weights file or a photo would block the open, or never end:
 * the file is opened without blocking and refused unless fstat calls it
 * regular. On success *fd is a blocking, close-on-exec descriptor to close
 * and *bytes (unless NULL) the file's size. Failures are AN_ERR_IO with
 * "cannot open <what> '<path>': <reason>" (no such file, a directory, not a
 * regular file, permission denied, ...). */
an_status an_open_regular(const char *path, const char *what, int *fd, long long *bytes);

/* The usual causes of a failed open or read in words, or NULL: strerror()
 * is not thread-safe and strerror_r() has two incompatible variants. */
const char *an_errno_text(int e);

/* A zeroed block of `bytes` backed by a new file in folder `dir`: memory
 * the kernel pages out to that file system as it needs, for data larger
 * than the memory there is. The file is unlinked as soon as it is made, so
 * nothing is left behind, even by a killed process, and its blocks are
 * reserved first (posix_fallocate): a full disk is a clear error here, not
 * a SIGBUS when the block is written. `what` names the data in messages.
 * Release it with munmap(*out, bytes). */
an_status an_map_temp_file(const char *dir, size_t bytes, const char *what, void **out);

#endif
