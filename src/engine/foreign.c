/* foreign.c: the tensor sets that torchfile.c and caffemodel.c fill, and
 * telling the weights formats apart by their first bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "files.h"
#include "foreign.h"

void an_tensor_set_free(an_tensor_set *set)
{
    if (!set) return;
    for (int i = 0; i < set->count; i++) {
        free(set->items[i].name);
        free(set->items[i].data);
    }
    free(set->items);
    set->items = NULL;
    set->count = 0;
}

const an_tensor *an_tensor_set_find(const an_tensor_set *set, const char *name)
{
    for (int i = 0; i < set->count; i++)
        if (strcmp(set->items[i].name, name) == 0) return &set->items[i];
    return NULL;
}

int64_t an_tensor_numel(const an_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

void an_shape_text(char *buf, size_t size, int ndims, const int64_t *dims)
{
    size_t used = (size_t)snprintf(buf, size, "(");
    for (int d = 0; d < ndims && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", d ? ", " : "", (long long)dims[d]);
    if (used < size) snprintf(buf + used, size - used, ndims == 1 ? ",)" : ")");
}

an_status an_file_sniff(const char *path, an_file_kind *out)
{
    *out = AN_FILE_UNKNOWN;
    int fd;
    an_status opened = an_open_regular(path, "weights file", &fd, NULL);
    if (opened != AN_OK) return opened;
    unsigned char head[8] = {0};
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    if (got < 0) return an_fail(AN_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (got == 8 && memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0) *out = AN_FILE_HDF5;
    else if (got >= 4 && memcmp(head, "PK\x03\x04", 4) == 0) *out = AN_FILE_TORCH_ZIP;
    else if (got >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) *out = AN_FILE_TORCH_LEGACY;
    /* a NetParameter's first field: its name (1), V1 layers (2) or layer (100) */
    else if (head[0] == 0x0a || head[0] == 0x12 || (got >= 2 && head[0] == 0xa2 && head[1] == 0x06))
        *out = AN_FILE_CAFFE;
    return AN_OK;
}
