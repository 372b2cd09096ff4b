/* h5io.h: the HDF5 plumbing that weights.c and h5features.c share: quiet
 * error stacks, one-line messages, closing any id, and files built in
 * memory and written out whole (HDF5 1.10 cannot recover from a failed
 * write, so a full disk must never reach it). */
#ifndef AN_H5IO_H
#define AN_H5IO_H

#include <stddef.h>
#include <hdf5.h>
#include "alexnet.h"

/* HDF5's automatic error printing, switched off between begin and end */
typedef struct {
    H5E_auto2_t func;
    void *data;
} an_h5_quiet;
void an_h5_quiet_begin(an_h5_quiet *q);
void an_h5_quiet_end(const an_h5_quiet *q);

/* HDF5's most specific complaint about the last failure, on one line; clears the stack */
const char *an_h5_detail(char buf[160]);
/* close whatever kind of id it is, and set it to -1 */
void an_h5_close(hid_t *id);

/* AN_OK when `path` is a regular file this process may read (its size in
 * *bytes unless NULL); else an_open_regular's message (files.h). */
an_status an_h5_check_readable(const char *path, const char *what, long long *bytes);

/* A file built in memory: after H5Fclose, `mem` holds the image (free it). */
typedef struct {
    void *mem;
    size_t size;
} an_h5_image;
/* Create the in-memory file `mem_name` (HDF5 only checks that no such file
 * exists), grown `bytes` at a time, in the 1.8 format with dense attribute
 * storage on the root group (attributes over 64 KB); -1 on failure. */
hid_t an_h5_create_in_memory(const char *mem_name, size_t bytes, an_h5_image *im);
/* the file's length: the end-of-file address in its superblock, else the whole image */
size_t an_h5_image_length(const an_h5_image *im);

/* Build a file in memory and put it at `path` atomically: a temporary file
 * beside it (`path`.tmp-PID, created first, so that a missing or read-only
 * folder fails before any work) is written whole, flushed, renamed over
 * `path`, and the folder flushed; on failure the temporary file is removed
 * and `path` is untouched. `build` makes the image under the in-memory file
 * name it is given (with HDF5's error printing off); `what` starts every
 * message: "cannot <what> '<path>': ..." ("save weights to", "write"). */
/* Stale temporary files of saves killed on this machine (NAME.tmp-PID of a
 * process that is gone, empty or an HDF5 image) in the folder are removed
 * first. */
typedef an_status (*an_h5_builder)(void *ctx, const char *mem_name, an_h5_image *im);
an_status an_h5_write_file(const char *path, const char *what, an_h5_builder build, void *ctx);

#endif
