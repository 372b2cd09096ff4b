/* backend.c: what the backends share (output shapes, the number of CPU
 * threads), and what the engine says about GPUs when it was built without
 * the CUDA backend (ops_cuda.cu defines those functions when it is built). */
#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "ops.h"

static int n_threads;   /* 0: OpenMP's default */

void an_set_threads(int threads) { n_threads = threads > 0 ? threads : 0; }

int an_max_threads(void)
{
#ifdef _OPENMP
    int cores = omp_get_num_procs();
#else
    int cores = 1;
#endif
    return 4 * (cores > 1 ? cores : 1);
}

int an_get_threads(void)
{
#ifdef _OPENMP
    return n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    return n_threads > 0 ? n_threads : 1;
#endif
}

void an_conv_output_hw(const an_conv_spec *s, int *oh, int *ow)
{
    *oh = (s->h + 2 * s->pad - s->k) / s->stride + 1;
    *ow = (s->w + 2 * s->pad - s->k) / s->stride + 1;
}

void an_pool_output_hw(const an_pool_spec *s, int *oh, int *ow)
{
    *oh = (s->h - s->k) / s->stride + 1;
    *ow = (s->w - s->k) / s->stride + 1;
}

#ifndef AN_HAVE_CUDA
int an_cuda_built(void) { return 0; }
int an_cuda_device_count(void) { return 0; }
int an_cuda_probe(char *why, size_t size)
{
    if (size) snprintf(why, size, "this build of the engine has no GPU backend");
    return 0;
}
void an_cuda_set_tf32(int allow) { (void)allow; }
int an_cuda_tf32(void) { return 0; }

an_status an_cuda_describe(int device, char *buf, size_t size)
{
    if (size) snprintf(buf, size, "no GPU backend");
    return an_fail(AN_ERR_ARGUMENT, "no CUDA device %d: this build of the engine has no GPU backend "
                   "(configure found no CUDA toolkit with cuDNN)", device);
}

int an_cuda_nccl_built(void) { return 0; }
void an_cuda_test_alloc_limit(size_t bytes) { (void)bytes; }
size_t an_cuda_test_workspace_bytes(an_device *dev) { (void)dev; return 0; }
an_status an_cuda_test_grow_workspace(an_device *dev, size_t bytes)
{
    (void)dev; (void)bytes;
    return an_fail(AN_ERR_ARGUMENT, "this build of the engine has no GPU backend");
}

an_status an_cuda_nccl_id(void *id, size_t id_bytes)
{
    (void)id; (void)id_bytes;
    return an_fail(AN_ERR_ARGUMENT, "this build of the engine has no GPU backend, hence no NCCL");
}

an_status an_cuda_nccl_sum(an_device *dev, const void *id, size_t id_bytes, int rank, int size, float *values,
                           size_t count)
{
    (void)dev; (void)id; (void)id_bytes; (void)rank; (void)size; (void)values; (void)count;
    return an_fail(AN_ERR_ARGUMENT, "this build of the engine has no GPU backend, hence no NCCL");
}

an_status an_cuda_device_open(int ordinal, an_device **out)
{
    *out = NULL;
    return an_fail(AN_ERR_ARGUMENT, "no CUDA device %d: this build of the engine has no GPU backend "
                   "(configure found no CUDA toolkit with cuDNN)", ordinal);
}
#endif
