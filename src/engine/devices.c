/* devices.c: what the engine says about GPUs when it was built without the
 * CUDA backend (ops_cuda.cu defines these functions when it is built). */
#include <stdio.h>
#include "ops.h"

#ifndef AN_HAVE_CUDA
int an_cuda_built(void) { return 0; }
int an_cuda_device_count(void) { return 0; }
void an_cuda_set_tf32(int allow) { (void)allow; }
int an_cuda_tf32(void) { return 0; }

an_status an_cuda_describe(int device, char *buf, size_t size)
{
    if (size) snprintf(buf, size, "no GPU backend");
    return an_fail(AN_ERR_ARGUMENT, "no CUDA device %d: this build of the engine has no GPU backend "
                   "(configure found no CUDA toolkit with cuDNN)", device);
}

an_status an_cuda_device_open(int ordinal, an_device **out)
{
    *out = NULL;
    return an_fail(AN_ERR_ARGUMENT, "no CUDA device %d: this build of the engine has no GPU backend "
                   "(configure found no CUDA toolkit with cuDNN)", ordinal);
}
#endif
