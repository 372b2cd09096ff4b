/* r_device.h: .Call entry points for devices (r_device.c). */
#ifndef R_DEVICE_H
#define R_DEVICE_H
#include <Rinternals.h>

SEXP r_an_cuda_info(void);
SEXP r_an_net_set_device(SEXP ptr, SEXP device);
SEXP r_an_net_device(SEXP ptr);
SEXP r_an_net_set_precision(SEXP ptr, SEXP precision);
SEXP r_an_net_precision(SEXP ptr);
SEXP r_an_bf16_missing(SEXP device);
SEXP r_an_net_bf16_missing(SEXP ptr);
SEXP r_an_net_batch_bytes(SEXP ptr, SEXP n, SEXP training);

#endif
