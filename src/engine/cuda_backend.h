/* cuda_backend.h: the contract between the engine and its CUDA backend,
 * which is a shared object of its own (alexnet_cuda.so, from ops_cuda.cu)
 * that the engine loads with dlopen on the first use of a GPU
 * (cuda_loader.c). The engine itself needs no CUDA library: it loads and
 * runs on the CPU wherever they are absent.
 *
 * R loads a package's shared object RTLD_LOCAL, so the backend cannot
 * resolve the engine's symbols: the engine lends it the few services it
 * needs as a table, and the backend answers with its own table. The backend
 * exports one symbol, AN_CUDA_BACKEND_ENTRY; both sides check the ABI
 * number, which changes whenever either table or an_backend (ops.h) does. */
#ifndef AN_CUDA_BACKEND_H
#define AN_CUDA_BACKEND_H

#include <stdarg.h>
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AN_CUDA_ABI 3   /* 2: an_backend gained conv_lend; 3: conv_input_layout, preprocess's layout */
#define AN_CUDA_BACKEND_FILE "alexnet_cuda.so"
#define AN_CUDA_BACKEND_ENTRY "an_cuda_backend_entry"

/* what the engine lends the backend */
typedef struct {
    int abi;                                        /* AN_CUDA_ABI */
    /* the engine's thread-local error message (error.c), the one
     * an_error_message() reads */
    an_status (*vfail)(an_status status, const char *fmt, va_list ap);
    void (*copy_parallel)(void *dst, const void *src, size_t bytes);
    double (*rng_uniform)(an_rng *rng);
    int (*tf32)(void);                              /* an_cuda_tf32 */
    size_t (*test_alloc_limit)(void);               /* an_cuda_test_alloc_limit's bytes; 0: none */
} an_cuda_engine;

/* what the backend gives the engine: the engine's an_cuda_* functions of the
 * same names forward to these once it is loaded */
typedef struct {
    int abi;                                        /* AN_CUDA_ABI */
    int nccl_built;
    int (*probe)(char *why, size_t size);
    an_status (*device_open)(int ordinal, an_device **out);
    an_status (*describe)(int device, char *buf, size_t size);
    an_status (*nccl_id)(void *id, size_t id_bytes);
    an_status (*nccl_sum)(an_device *dev, const void *id, size_t id_bytes, int rank, int size, float *values,
                          size_t count);
    size_t (*test_workspace_bytes)(an_device *dev);
    an_status (*test_grow_workspace)(an_device *dev, size_t bytes);
} an_cuda_api;

/* The backend's entry: returns the backend's ABI number, and where it equals
 * `engine_abi` stores its table in *api (else leaves it NULL and keeps no
 * pointer to `engine`). */
typedef int (*an_cuda_backend_entry_fn)(int engine_abi, const an_cuda_engine *engine, const an_cuda_api **api);

#ifdef __cplusplus
}
#endif
#endif
