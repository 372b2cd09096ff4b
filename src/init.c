/* init.c: registration of the .Call entry points (see r_alexnet.c).
 * In R they are called as .Call(C_<name>, ...), via
 * useDynLib(alexnet, .registration = TRUE, .fixes = "C_"). */
#include <stdlib.h>
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

#include "alexnet.h"
#include "r_alexnet.h"
#include "r_h5features.h"
#include "r_device.h"
#include "r_group.h"

#define CALLDEF(name, n) {#name, (DL_FUNC) &r_an_##name, n}

static const R_CallMethodDef call_methods[] = {
    CALLDEF(net_create, 5),
    CALLDEF(net_init_layers, 3),
    CALLDEF(net_arch, 1),
    CALLDEF(net_valid, 1),
    CALLDEF(net_scale, 2),
    CALLDEF(net_free, 1),
    CALLDEF(net_classes, 1),
    CALLDEF(net_param_count, 1),
    CALLDEF(net_get_mean, 1),
    CALLDEF(net_set_mean, 2),
    CALLDEF(net_layers, 1),
    CALLDEF(net_outputs, 1),
    CALLDEF(output_find, 2),
    CALLDEF(engine_facts, 0),
    CALLDEF(net_get_params, 1),
    CALLDEF(net_set_params, 2),
    CALLDEF(net_layer_weights, 2),
    CALLDEF(check_pixels, 1),
    CALLDEF(backend_name, 0),
    CALLDEF(cuda_info, 0),
    CALLDEF(net_set_device, 2),
    CALLDEF(net_device, 1),
    CALLDEF(net_set_precision, 2),
    CALLDEF(net_precision, 1),
    CALLDEF(bf16_missing, 1),
    CALLDEF(net_bf16_missing, 1),
    CALLDEF(net_batch_bytes, 3),
    CALLDEF(get_threads, 0),
    CALLDEF(set_threads, 1),
    CALLDEF(live_nets, 0),
    CALLDEF(check_interrupt, 0),
    CALLDEF(phys_memory, 0),
    CALLDEF(mpi_built, 0),
    CALLDEF(mpi_group, 0),
    CALLDEF(mpi_finalize, 0),
    CALLDEF(group_broadcast, 2),
    CALLDEF(set_trainable_from, 2),
    CALLDEF(get_trainable_from, 1),
    CALLDEF(set_dropout, 3),
    CALLDEF(get_state, 2),
    CALLDEF(set_state, 3),
    CALLDEF(weights_save, 4),
    CALLDEF(weights_load, 4),
    CALLDEF(weights_info, 1),
    /* JPEG folders (r_images.c) */
    CALLDEF(loader_create, 6),
    CALLDEF(loader_free, 1),
    CALLDEF(loader_pixel_range, 1),
    CALLDEF(loader_create_array, 3),
    CALLDEF(loader_forward, 6),
    CALLDEF(loader_gradcam, 7),
    CALLDEF(loader_train_batch, 10),
    CALLDEF(loader_evaluate, 7),
    CALLDEF(loader_pixels, 3),
    CALLDEF(jpeg_read, 2),
    CALLDEF(loader_freeze, 7),
    /* features over many workers (r_h5features.c) */
    CALLDEF(h5f_write, 2),
    CALLDEF(h5f_read, 2),
    /* for the package's tests only (r_testing.c) */
    CALLDEF(test_weights_digest, 1),
    CALLDEF(test_weights_load_interrupted, 4),
    CALLDEF(test_write_jpeg, 3),
    CALLDEF(test_hide_bf16, 1),
    CALLDEF(test_image_to_input, 2),
    CALLDEF(test_forward_input, 3),
    {NULL, NULL, 0}
};

void R_init_alexnet(DllInfo *dll)
{
    R_registerRoutines(dll, NULL, call_methods, NULL, NULL);
    R_useDynamicSymbols(dll, FALSE);
    R_forceSymbols(dll, TRUE);
    /* the engine's threads start now, with asynchronous signals blocked for
     * good (src/engine/signals.c), before any other code may start them */
    an_start_threads();
}
