/* foreign.h: the weights files of other frameworks, read into one plain form
 * (named float tensors) that weights.c maps onto a net by name.
 *
 *   torchfile.c   PyTorch's torch.save zip archive of a state dict
 *                 (torchvision's alexnet-owt-*.pth): libzip for the archive,
 *                 a small pickle reader that executes nothing
 *   caffemodel.c  Caffe's binary NetParameter (bvlc_alexnet.caffemodel):
 *                 protobuf-c over caffe_subset.proto (the fields read here)
 *
 * Both readers trust nothing in the file: every size is checked against the
 * file's own length before anything is allocated from it, and a hostile or
 * truncated file gives AN_ERR_FORMAT with a message naming the file and what
 * is wrong, never a crash. */
#ifndef AN_FOREIGN_H
#define AN_FOREIGN_H

#include <stdint.h>
#include "alexnet.h"

#define AN_TENSOR_MAX_DIMS 4

typedef struct {
    char *name;         /* "conv1.weight", "features.0.bias", ... (malloc'd) */
    int ndim;           /* 0..AN_TENSOR_MAX_DIMS */
    int64_t shape[AN_TENSOR_MAX_DIMS];
    float *data;        /* prod(shape) floats, C order (malloc'd) */
} an_tensor;

typedef struct {
    an_tensor *items;   /* in the file's order */
    int count;
} an_tensor_set;

/* frees every tensor and the array; leaves *set empty (safe twice) */
void an_tensor_set_free(an_tensor_set *set);
/* the tensor called `name`, or NULL */
const an_tensor *an_tensor_set_find(const an_tensor_set *set, const char *name);
/* prod(shape) */
int64_t an_tensor_numel(const an_tensor *t);
/* dims as Python prints a shape, "(96, 3, 11, 11)" or "(4096,)", for messages */
void an_shape_text(char *buf, size_t size, int ndims, const int64_t *dims);

/* A torch.save zip archive of a state dict (OrderedDict of name -> tensor).
 * Tensors may be float32, float64 or float16 (converted to float), with any
 * strides and storage offset that stay inside their storage. The legacy
 * (pre-1.6, non-zip) format is refused with a message saying how to re-save. */
an_status an_torch_read(const char *path, an_tensor_set *out);
/* The same without reading the storages: names and shapes, every check but
 * the storages' CRCs, data NULL (a file's description costs a pickle). */
an_status an_torch_read_shapes(const char *path, an_tensor_set *out);

/* A Caffe NetParameter: `layer` (LayerParameter) or the older `layers`
 * (V1LayerParameter). Each layer's blobs become "<layer>.weight" (blob 0)
 * and "<layer>.bias" (blob 1); further blobs are "<layer>.blob<k>". A blob's
 * shape is its BlobShape dims, else (num, channels, height, width) as stored. */
an_status an_caffe_read(const char *path, an_tensor_set *out);

/* What a file is, from its first bytes (not its name); AN_FILE_UNKNOWN for
 * anything else. Only regular files are opened (a FIFO never blocks). */
typedef enum {
    AN_FILE_UNKNOWN = 0,
    AN_FILE_HDF5,       /* "\x89HDF\r\n\x1a\n" (Keras-1 or our own) */
    AN_FILE_TORCH_ZIP,  /* "PK\x03\x04" */
    AN_FILE_TORCH_LEGACY, /* a pickle stream (0x80 0x02...) */
    AN_FILE_CAFFE       /* a protobuf message starting as a NetParameter does: its
                           name (field 1), V1 layers (2) or layer (100) */
} an_file_kind;
an_status an_file_sniff(const char *path, an_file_kind *out);

/* ---- mapping a foreign file onto a net (foreign_weights.c; weights.c delegates here) ----
 * torchvision: features.{0,3,6,8,10} and classifier.{1,4,6} (a "module."
 * prefix, as nn.DataParallel saves, is taken off); Caffe: conv1..conv5,
 * fc6..fc8, conv1's input channels turned from BGR to RGB. Shapes as the
 * engine's (PyTorch's and Caffe's layouts are the same); leading 1s of V1
 * Caffe blobs are dropped. All or nothing, by_name as an_weights_load. */
struct an_weights_report;
struct an_weights_file_info;
an_status an_foreign_load(an_net *net, const char *path, an_file_kind kind, int by_name,
                          struct an_weights_report *report);
an_status an_foreign_info(const char *path, an_file_kind kind, struct an_weights_file_info *info);

#endif
