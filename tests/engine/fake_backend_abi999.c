/* fake_backend_abi999.c: a CUDA backend of another ABI (999), which the
 * engine must refuse with a message naming both numbers (test_cuda_loader). */
#include "cuda_backend.h"

int an_cuda_backend_entry(int engine_abi, const an_cuda_engine *engine, const an_cuda_api **api)
{
    (void)engine_abi;
    (void)engine;
    *api = NULL;
    return 999;
}
