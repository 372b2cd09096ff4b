/* weights.h: the net's parameters in HDF5 files. Plain C, no R.
 *
 * Two kinds of file are read:
 *
 *  - the package's own files (AN_WEIGHTS_OWN), written by an_weights_save():
 *    root attributes format = "alexnet", format_version = 1, classes,
 *    class_names (optional, strings), mean (3 doubles, RGB), input_scale
 *    (optional: 3 doubles, or 1 for every channel; 1 when absent), arch
 *    (optional: "heuritech" when absent, "caffe", "torchvision"), layers (the
 *    group names in order) and layout (a sentence describing the layout);
 *    one group per Keras layer name (conv_1, conv_2_1, conv_2_2, conv_3,
 *    conv_4_1, conv_4_2, conv_5_1, conv_5_2, dense_1, dense_2, dense_3) with
 *    float32 datasets `weight` and `bias`. Weights are in the engine's
 *    (PyTorch's) layout: convolution kernels (out, in, kh, kw) applied as
 *    cross-correlation, per group half; dense (out, in).
 *
 *  - Keras 1 save_weights() files (AN_WEIGHTS_KERAS1) such as Heuritech's
 *    alexnet_weights.h5: root attribute layer_names, one group per layer
 *    with attribute weight_names and one dataset per weight (W, then b).
 *    Theano kernels (out, in, rows, cols) are true-convolution kernels and
 *    are flipped on loading (unless the file's `backend` attribute says
 *    "tensorflow"); dense kernels (in, out) are transposed. float32 or
 *    float64 datasets; fixed- or variable-length string attributes. A full
 *    model file (weights under /model_weights) is read too. Keras 2 files
 *    (kernels (rows, cols, in, out)) are not: their layers do not match in
 *    shape and are reported as such.
 *
 * Every call returns an an_status; on failure the message (an_error_message())
 * names the file and, where one is at fault, the layer. Nothing is printed:
 * HDF5's own error printing is switched off during each call. */
#ifndef ALEXNET_WEIGHTS_H
#define ALEXNET_WEIGHTS_H

#include "alexnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Keras layers with weights, in graph order. */
enum {
    AN_W_CONV_1, AN_W_CONV_2_1, AN_W_CONV_2_2, AN_W_CONV_3, AN_W_CONV_4_1, AN_W_CONV_4_2,
    AN_W_CONV_5_1, AN_W_CONV_5_2, AN_W_DENSE_1, AN_W_DENSE_2, AN_W_DENSE_3,
    AN_W_N_LAYERS
};
/* "conv_1", ..., "dense_3"; NULL outside 0..AN_W_N_LAYERS-1 */
const char *an_weights_layer_name(int layer);
/* The parameter layer (AN_P_*) holding Keras layer `layer`, and which half
 * of its filters: 0 all, 1 the first out/2, 2 the second. -1 when out of range. */
int an_weights_layer_param(int layer, int *half);

typedef enum {
    AN_WEIGHTS_UNKNOWN = 0, AN_WEIGHTS_OWN = 1, AN_WEIGHTS_KERAS1 = 2,
    AN_WEIGHTS_TORCH = 3,   /* torchvision's state dict (foreign.c): the torchvision variant */
    AN_WEIGHTS_CAFFE = 4    /* a Caffe NetParameter (foreign.c): the Caffe variant */
} an_weights_kind;
/* The Keras layer's halves are how every variant is reported: layer k of a
 * report stands for its parameter layer (an_weights_layer_param). */
typedef enum {
    AN_WEIGHTS_LOADED = 0,  /* the file's values are now in the net */
    AN_WEIGHTS_KEPT = 1,    /* in the file with another shape: the net's own kept (by_name only) */
    AN_WEIGHTS_MISSING = 2  /* not in the file: the net's own kept (by_name only) */
} an_weights_state;

#define AN_WEIGHTS_FORMAT_VERSION 1

typedef struct an_weights_report {
    an_weights_kind kind;
    an_weights_state state[AN_W_N_LAYERS];
    /* for KEPT layers: the file's shapes, e.g. "W (4096, 1000), b (1000)" */
    char file_shape[AN_W_N_LAYERS][64];
    int n_loaded, n_kept, n_missing;
    int mean_loaded;                /* own files: the net's mean was set from the file */
} an_weights_report;

/* Write the net's parameters and mean to `path` (an own-format file).
 * class_names: NULL, or an_net_classes(net) strings (UTF-8) stored with it.
 * The file is written to `<path>.tmp-<pid>`, flushed to disk (fsync) and
 * renamed over `path` only when complete, so a failed save leaves any
 * previous file at `path` as it was and no temporary file behind; a killed
 * process can leave the temporary file, never a damaged `path`. HDF5 builds
 * the file in memory first (about the size of the parameters, transiently)
 * and this code writes it: HDF5 1.10 does not survive a failed write (a
 * full disk), so it never writes to disk itself. */
an_status an_weights_save(const an_net *net, const char *path, const char *const *class_names);

/* Write the net's parameters to `path` as a Keras 1 (Theano) save_weights()
 * file laid out as Heuritech's alexnet_weights.h5, which Keras 1 (and this
 * engine, as AN_WEIGHTS_KERAS1) reads: root attributes layer_names (all 34
 * layers of the Heuritech model, weightless ones included, numpy 'S'
 * strings) and backend = "theano"; one group per layer with attribute
 * weight_names ("<name>_W", "<name>_b"; an empty list for layers without
 * weights) and float32 datasets <name>_W, <name>_b: convolution kernels
 * (out, in/groups, rows, cols) flipped in both spatial axes (Theano
 * convolves), dense kernels (in, out), biases (out). The mean, input scale
 * and class names are not stored (Keras 1 files have none). Written
 * atomically as an_weights_save() writes. */
an_status an_weights_save_keras1(const an_net *net, const char *path);

/* Read weights from `path` (own, Keras 1, torchvision .pth or Caffe
 * .caffemodel, told apart by their first bytes) into `net`. All or nothing: the
 * whole file is read and converted first; the net (parameters and, for own
 * files, the mean) changes only when everything succeeded.
 *   by_name = 0: every layer must be in the file with the net's shapes.
 *   by_name = 1: layers missing from the file or of another shape (e.g. a
 *                1000-class dense_3 into a 2-class net) keep the net's own
 *                values and are reported; at least one layer must load.
 * report may be NULL; it is filled on success (zeroed on failure). */
an_status an_weights_load(an_net *net, const char *path, int by_name, an_weights_report *report);

typedef struct an_weights_file_info {
    an_weights_kind kind;
    int format_version;             /* own: the file's (1); Keras 1: 0 */
    int classes;                    /* dense_3's outputs; 0 when the file has no dense_3 */
    char **class_names;             /* `classes` strings, or NULL when the file has none */
    int has_mean;                   /* own files: mean holds the file's RGB means */
    double mean[3];                 /* else ImageNet's (123.68, 116.779, 103.939) */
    double input_scale[3];          /* own files: the input scale per channel (1 when absent); Keras: 1 */
    int arch;                       /* the variant (an_arch): own files' arch attribute; Keras: Heuritech's */
    int present[AN_W_N_LAYERS];     /* the Keras layer is in the file */
    char backend[16];               /* Keras 1: the file's `backend` attribute, "" when absent */
} an_weights_file_info;

/* Describe a weights file without a net (any of the formats above), e.g. to
 * create one of the right variant and size. On success free the result with
 * an_weights_info_free(). */
an_status an_weights_info(const char *path, an_weights_file_info *info);
void an_weights_info_free(an_weights_file_info *info);

/* HDF5 files are read in a short-lived child process (isolate.h): libhdf5
 * 1.10 crashes or hangs inside its own code on some hostile files, and a
 * file cannot be known to be a weights file before libhdf5 has parsed it.
 * The child reads and checks everything and sends the layers' values back
 * through a pipe; the net changes only in this process, after all arrived
 * and were checked. A child that crashes, exits early, sends a malformed
 * result or makes no progress for the read timeout (then killed) is an
 * error naming the file ("weights file 'x.h5' is damaged: the HDF5 library
 * crashed reading it (signal 11, SIGSEGV); nothing was loaded"); a Ctrl-C
 * held back meanwhile (signals.c) kills the child: AN_ERR_INTERRUPTED.
 * Torch and Caffe files are read in process (foreign.h: no libhdf5).
 * Seconds without progress before a child is deemed hung: 60 by default;
 * <= 0 restores it. */
void an_weights_set_read_timeout(double seconds);

/* The same reads in this process, without the child: for the fuzz harness
 * (which must see the reading code itself) and tests. A hostile file can
 * crash the process here. */
an_status an_weights_load_in_process(an_net *net, const char *path, int by_name, an_weights_report *report);
an_status an_weights_info_in_process(const char *path, an_weights_file_info *info);

#ifdef __cplusplus
}
#endif
#endif
