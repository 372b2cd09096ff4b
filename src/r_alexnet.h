/* r_alexnet.h: the .Call entry points (registered in init.c). */
#ifndef R_ALEXNET_H
#define R_ALEXNET_H

#include <Rinternals.h>
#include "alexnet.h"
#include "images.h"

/* helpers shared by the glue files (r_util.c) */
SEXP named_list(int n, const char **names);   /* a list of n NULLs, named */
const char *get_path(SEXP path, const char *what);   /* one file name, native encoding */
void set_hdf5_read_timeout(void);                      /* options(alexnet.hdf5_timeout), r_weights.c */

/* helpers shared by the glue files (r_alexnet.c) */
an_net *get_net(SEXP ptr);
void engine_error(an_status status);          /* raises an R error */
int scalar_int(SEXP x, const char *what);
int get_output_index(SEXP layer);             /* an engine output index, checked */
an_pixel_array get_pixel_array(SEXP x);       /* dim c(n, h, w[, channels]) */
/* (r_train.c) the loss code and the 0-based labels of a batch, checked */
an_loss_kind get_loss(SEXP loss);
const int *get_labels(SEXP labels, int n);

/* training (r_train.c) */
SEXP r_an_set_trainable_from(SEXP ptr, SEXP first);
SEXP r_an_get_trainable_from(SEXP ptr);
SEXP r_an_set_dropout(SEXP ptr, SEXP rate, SEXP seed);
SEXP r_an_get_state(SEXP ptr, SEXP what);
SEXP r_an_set_state(SEXP ptr, SEXP what, SEXP value);

/* weights files (r_weights.c) */
SEXP r_an_weights_save(SEXP ptr, SEXP path, SEXP class_names, SEXP format);
SEXP r_an_weights_load(SEXP ptr, SEXP path, SEXP by_name, SEXP undo);
SEXP r_an_weights_info(SEXP path);
/* r_an_weights_load's work; after_read (NULL but in r_testing.c) runs
 * between the engine's read and the check for a pending interrupt */
SEXP weights_load(SEXP ptr, SEXP path, SEXP by_name, SEXP undo, void (*after_read)(void));
SEXP weights_layer_names(void);   /* "conv_1", ..., "dense_3" */

/* image sources: JPEG folders and pixel arrays (r_images.c) */
SEXP r_an_loader_create(SEXP paths, SEXP size, SEXP resize, SEXP augment, SEXP seed,
                        SEXP threads);
SEXP r_an_loader_create_array(SEXP x, SEXP keep_bytes, SEXP size);
SEXP r_an_loader_free(SEXP ptr);
SEXP r_an_loader_pixel_range(SEXP lptr);
SEXP r_an_loader_forward(SEXP lptr, SEXP nptr, SEXP index, SEXP until, SEXP batch_size, SEXP skip);
SEXP r_an_loader_gradcam(SEXP lptr, SEXP nptr, SEXP index, SEXP layer, SEXP classes, SEXP batch_size, SEXP skip);
SEXP r_an_loader_train_batch(SEXP lptr, SEXP nptr, SEXP index, SEXP labels, SEXP epoch,
                             SEXP next, SEXP loss, SEXP sgd, SEXP skip, SEXP share);
SEXP r_an_loader_evaluate(SEXP lptr, SEXP nptr, SEXP index, SEXP labels, SEXP loss, SEXP batch_size,
                          SEXP skip);
SEXP r_an_loader_pixels(SEXP lptr, SEXP index, SEXP epoch);
SEXP r_an_jpeg_read(SEXP path, SEXP max_megapixels);
SEXP r_an_loader_freeze(SEXP lptr, SEXP nptr, SEXP batch_size, SEXP training, SEXP skip, SEXP memory_bytes,
                        SEXP spill_dir);

/* for the package's tests only (r_testing.c) */
SEXP r_an_test_weights_digest(SEXP ptr);
SEXP r_an_test_weights_load_interrupted(SEXP ptr, SEXP path, SEXP by_name, SEXP undo);
SEXP r_an_test_write_jpeg(SEXP path, SEXP x, SEXP quality);
SEXP r_an_test_hide_bf16(SEXP hide);
SEXP r_an_test_image_to_input(SEXP x, SEXP index);
SEXP r_an_test_forward_input(SEXP ptr, SEXP input, SEXP until);

SEXP r_an_net_create(SEXP classes, SEXP seed, SEXP mean, SEXP arch, SEXP fill);
SEXP r_an_net_init_layers(SEXP ptr, SEXP seed, SEXP which);
SEXP r_an_net_arch(SEXP ptr);
SEXP r_an_net_valid(SEXP ptr);
SEXP r_an_net_scale(SEXP ptr, SEXP scale);   /* get, and set unless NULL */
SEXP r_an_net_free(SEXP ptr);
SEXP r_an_net_classes(SEXP ptr);
SEXP r_an_net_param_count(SEXP ptr);
SEXP r_an_net_get_mean(SEXP ptr);
SEXP r_an_net_set_mean(SEXP ptr, SEXP mean);
SEXP r_an_net_layers(SEXP ptr);
SEXP r_an_net_outputs(SEXP ptr);
SEXP r_an_output_find(SEXP ptr, SEXP name);
SEXP r_an_engine_facts(void);
SEXP r_an_net_get_params(SEXP ptr);
SEXP r_an_net_set_params(SEXP ptr, SEXP values);
SEXP r_an_net_layer_weights(SEXP ptr, SEXP layer);
SEXP r_an_check_pixels(SEXP x);
SEXP r_an_backend_name(void);
SEXP r_an_get_threads(void);
SEXP r_an_set_threads(SEXP threads);
SEXP r_an_check_interrupt(void);
SEXP r_an_phys_memory(void);
SEXP r_an_live_nets(void);   /* for the tests: c(live nets, forked child) */

#endif
