/* h5io.h: the HDF5 plumbing that weights.c and h5features.c share: quiet
 * error stacks, one-line messages, closing any id, and files built in
 * memory and written out whole (HDF5 1.10 cannot recover from a failed
 * write, so a full disk must never reach it). */
#ifndef AN_H5IO_H
#define AN_H5IO_H

#include <stddef.h>
#include <hdf5.h>

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

/* write all of it, through EINTR; -1 with errno set */
int an_h5_write_all(int fd, const void *data, size_t n);
/* flush the folder holding `path`, so that a rename into it survives a crash */
void an_h5_sync_parent(const char *path);

#endif
