/* r_device.c: which GPUs the engine can use, moving a net to one, the
 * net's precision, and what a batch needs on the net's device. */
#include <string.h>

#include <R.h>
#include <Rinternals.h>

#include "alexnet.h"
#include "r_alexnet.h"
#include "r_device.h"

/* list(built = TRUE/FALSE, tf32 = TRUE/FALSE, devices = character: one
 * description per usable GPU, why = why none is usable, else "") */
SEXP r_an_cuda_info(void)
{
    char why[1024];
    int n = an_cuda_probe(why, sizeof why);
    if (n < 0) n = 0;
    SEXP devices = PROTECT(Rf_allocVector(STRSXP, n));
    for (int i = 0; i < n; i++) {
        char desc[256];
        if (an_cuda_describe(i, desc, sizeof desc) != AN_OK) snprintf(desc, sizeof desc, "%s", an_error_message());
        SET_STRING_ELT(devices, i, Rf_mkCharCE(desc, CE_UTF8));
    }
    static const char *fields[] = {"built", "tf32", "devices", "why"};
    SEXP res = PROTECT(named_list(4, fields));
    SET_VECTOR_ELT(res, 0, Rf_ScalarLogical(an_cuda_built()));
    SET_VECTOR_ELT(res, 1, Rf_ScalarLogical(an_cuda_tf32()));
    SET_VECTOR_ELT(res, 2, devices);
    SET_VECTOR_ELT(res, 3, Rf_ScalarString(Rf_mkCharCE(n > 0 ? "" : why, CE_UTF8)));
    UNPROTECT(2);
    return res;
}

/* device: -1 for the CPU, else the CUDA ordinal */
SEXP r_an_net_set_device(SEXP ptr, SEXP device)
{
    an_net *net = get_net(ptr);
    int d = scalar_int(device, "device");
    an_status st = an_net_set_device(net, d);
    if (st != AN_OK) engine_error(st);
    return R_NilValue;
}

SEXP r_an_net_device(SEXP ptr)
{
    return Rf_ScalarInteger(an_net_device(get_net(ptr)));
}

/* precision: "f32" or "bf16" (R checked it) */
SEXP r_an_net_set_precision(SEXP ptr, SEXP precision)
{
    an_net *net = get_net(ptr);
    const char *p = CHAR(STRING_ELT(precision, 0));
    an_status st = an_net_set_precision(net, strcmp(p, "bf16") == 0 ? AN_PRECISION_BF16 : AN_PRECISION_F32);
    if (st != AN_OK) engine_error(st);
    return R_NilValue;
}

SEXP r_an_net_precision(SEXP ptr)
{
    return Rf_mkString(an_net_precision(get_net(ptr)) == AN_PRECISION_BF16 ? "bf16" : "f32");
}

/* NULL when `device` (-1: the CPU, else a CUDA ordinal) runs bf16 natively,
 * else why not */
SEXP r_an_bf16_missing(SEXP device)
{
    const char *why = an_bf16_missing(scalar_int(device, "device"));
    return why ? Rf_mkString(why) : R_NilValue;
}

/* the same for the device a net is on (no second handle on a GPU) */
SEXP r_an_net_bf16_missing(SEXP ptr)
{
    const char *why = an_net_bf16_missing(get_net(ptr));
    return why ? Rf_mkString(why) : R_NilValue;
}

/* the engine's estimate of a batch's activation memory, in bytes: the
 * model it refuses batches by (an_net_batch_bytes), for R's own checks */
SEXP r_an_net_batch_bytes(SEXP ptr, SEXP n, SEXP training)
{
    an_net *net = get_net(ptr);
    int images = scalar_int(n, "n");
    if (images < 1) Rf_error("`n` must be at least 1");
    return Rf_ScalarReal(an_net_batch_bytes(net, images, Rf_asLogical(training) == TRUE));
}
