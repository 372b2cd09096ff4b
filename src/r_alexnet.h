/* r_alexnet.h: the .Call entry points (registered in init.c). */
#ifndef R_ALEXNET_H
#define R_ALEXNET_H

#include <Rinternals.h>

SEXP r_an_net_create(SEXP classes, SEXP seed, SEXP mean);
SEXP r_an_net_valid(SEXP ptr);
SEXP r_an_net_free(SEXP ptr);
SEXP r_an_net_classes(SEXP ptr);
SEXP r_an_net_param_count(SEXP ptr);
SEXP r_an_net_get_mean(SEXP ptr);
SEXP r_an_net_set_mean(SEXP ptr, SEXP mean);
SEXP r_an_net_layers(SEXP ptr);
SEXP r_an_net_outputs(SEXP ptr);
SEXP r_an_output_find(SEXP name);
SEXP r_an_net_get_params(SEXP ptr);
SEXP r_an_net_set_params(SEXP ptr, SEXP values);
SEXP r_an_check_pixels(SEXP x);
SEXP r_an_image_to_input(SEXP x, SEXP index);
SEXP r_an_forward(SEXP ptr, SEXP x, SEXP until, SEXP batch_size);
SEXP r_an_forward_input(SEXP ptr, SEXP input, SEXP until);
SEXP r_an_backend_name(void);
SEXP r_an_get_threads(void);
SEXP r_an_set_threads(SEXP threads);

#endif
