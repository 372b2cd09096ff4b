/* cuda_loader.c: the engine's an_cuda_* functions (alexnet.h, ops.h). The
 * CUDA backend is a shared object of its own (cuda_backend.h), loaded once,
 * on the first call that needs a GPU, and only where an NVIDIA driver is
 * installed: without one the engine maps no CUDA library (about 1 GB of
 * address space) and answers "no GPU". A backend that does not load is
 * never fatal: the CPU works, and the reason names the file and what the
 * dynamic loader said. Built without AN_HAVE_CUDA (configure found no CUDA
 * toolkit with cuDNN, or ALEXNET_CUDA=no) there is no backend to load. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cuda_backend.h"

/* ---- engine state the backend reads through its table: asking for it
 * must not load the backend */

static int tf32_allowed = -1;       /* -1: not decided yet (environment) */

void an_cuda_set_tf32(int allow) { tf32_allowed = allow != 0; }

int an_cuda_tf32(void)
{
    if (tf32_allowed < 0) {
        const char *env = getenv("AN_CUDA_TF32");
        tf32_allowed = !(env && strcmp(env, "0") == 0);
    }
    return tf32_allowed;
}

static size_t alloc_limit;          /* an_cuda_test_alloc_limit */

void an_cuda_test_alloc_limit(size_t bytes) { alloc_limit = bytes; }

/* ---- loading */

static const an_cuda_api *backend;  /* NULL until loaded, and where it did not load */
static int no_gpu;                  /* not loaded because there is no GPU to use (no driver, no backend built) */
static char why_not[4096 + 512];    /* why `backend` is NULL: a path and what was said */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

#ifdef AN_HAVE_CUDA
int an_cuda_built(void) { return 1; }

static size_t test_alloc_limit(void) { return alloc_limit; }

static const an_cuda_engine engine_services = {
    AN_CUDA_ABI, an_vfail, an_copy_parallel, an_rng_uniform, an_cuda_tf32, test_alloc_limit,
};

/* The kernel driver's control device or its version file; /dev/dxg is
 * WSL2's GPU. Without any, no CUDA call could find a GPU. */
static int nvidia_driver_present(void)
{
    return access("/dev/nvidiactl", F_OK) == 0 || access("/proc/driver/nvidia/version", F_OK) == 0 ||
           access("/dev/dxg", F_OK) == 0;
}

/* ALEXNET_CUDA_BACKEND, else alexnet_cuda.so beside the object that holds
 * the engine: R's libs/ directory, or a test program's build directory. */
static void backend_path(char *path, size_t size)
{
    const char *env = getenv("ALEXNET_CUDA_BACKEND");
    if (env && *env) {
        snprintf(path, size, "%s", env);
        return;
    }
    char self[4096] = "";
    Dl_info info;
    if (dladdr(&backend, &info) && info.dli_fname && strchr(info.dli_fname, '/')) {
        snprintf(self, sizeof self, "%s", info.dli_fname);
    } else {   /* the engine is linked into the program, which dladdr may not name */
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
    }
    char *slash = strrchr(self, '/');
    if (slash) slash[1] = '\0';
    snprintf(path, size, "%s%s", slash ? self : "./", AN_CUDA_BACKEND_FILE);
}

static void load_backend(void)
{
    /* AN_CUDA_LOAD_WITHOUT_DRIVER=1, for tests: load it anyway, so that the
     * loading itself and CUDA's own "no device" run on a machine without a GPU */
    const char *force = getenv("AN_CUDA_LOAD_WITHOUT_DRIVER");
    if (!nvidia_driver_present() && !(force && strcmp(force, "1") == 0)) {
        no_gpu = 1;
        snprintf(why_not, sizeof why_not, "no NVIDIA driver (neither /dev/nvidiactl nor /proc/driver/nvidia/version)");
        return;
    }
    char path[4096];
    backend_path(path, sizeof path);
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {   /* dlerror names the file where it is the one missing, not where a library it needs is */
        const char *said = dlerror();
        if (strstr(said, path)) snprintf(why_not, sizeof why_not, "the GPU backend did not load: %s", said);
        else snprintf(why_not, sizeof why_not, "the GPU backend %s did not load: %s", path, said);
        return;
    }
    an_cuda_backend_entry_fn entry;
    *(void **)&entry = dlsym(lib, AN_CUDA_BACKEND_ENTRY);
    if (!entry) {
        snprintf(why_not, sizeof why_not, "%s is no GPU backend of alexnet: it has no %s", path, AN_CUDA_BACKEND_ENTRY);
        dlclose(lib);
        return;
    }
    const an_cuda_api *api = NULL;
    int abi = entry(AN_CUDA_ABI, &engine_services, &api);
    if (abi != AN_CUDA_ABI || !api || api->abi != AN_CUDA_ABI) {
        snprintf(why_not, sizeof why_not, "the GPU backend %s has ABI %d, this engine ABI %d: it belongs to another "
                 "build of alexnet (reinstall the package)", path, abi, AN_CUDA_ABI);
        dlclose(lib);
        return;
    }
    backend = api;   /* loaded for good: devices opened through it outlive any caller */
}
#else
int an_cuda_built(void) { return 0; }

static void load_backend(void)
{
    no_gpu = 1;
    snprintf(why_not, sizeof why_not, "this build of the engine has no GPU backend "
             "(configure found no CUDA toolkit with cuDNN)");
}
#endif

/* the backend, loading it on the first call; NULL (why_not says why) where
 * there is none */
static const an_cuda_api *cuda_backend(void)
{
    pthread_once(&load_once, load_backend);
    return backend;
}

/* ---- the engine's CUDA functions, forwarded */

int an_cuda_probe(char *why, size_t size)
{
    if (cuda_backend()) return backend->probe(why, size);
    if (size) snprintf(why, size, "%s", why_not);
    /* without a driver or a built backend there is simply no GPU; a backend
     * that does not load where a driver is is a broken setup */
    return no_gpu ? 0 : -1;
}

int an_cuda_device_count(void)
{
    int count = an_cuda_probe(NULL, 0);
    return count < 0 ? 0 : count;
}

an_status an_cuda_describe(int device, char *buf, size_t size)
{
    if (cuda_backend()) return backend->describe(device, buf, size);
    if (size) snprintf(buf, size, "no GPU backend");
    return an_fail(AN_ERR_ARGUMENT, "no CUDA device %d: %s", device, why_not);
}

an_status an_cuda_device_open(int ordinal, an_device **out)
{
    *out = NULL;
    if (cuda_backend()) return backend->device_open(ordinal, out);
    return an_fail(AN_ERR_ARGUMENT, "no CUDA device %d: %s", ordinal, why_not);
}

int an_cuda_nccl_built(void) { return cuda_backend() ? backend->nccl_built : 0; }

an_status an_cuda_nccl_id(void *id, size_t id_bytes)
{
    if (cuda_backend()) return backend->nccl_id(id, id_bytes);
    return an_fail(AN_ERR_ARGUMENT, "no NCCL: %s", why_not);
}

an_status an_cuda_nccl_sum(an_device *dev, const void *id, size_t id_bytes, int rank, int size, float *values,
                           size_t count)
{
    if (cuda_backend()) return backend->nccl_sum(dev, id, id_bytes, rank, size, values, count);
    return an_fail(AN_ERR_ARGUMENT, "no NCCL: %s", why_not);
}

size_t an_cuda_test_workspace_bytes(an_device *dev) { return cuda_backend() ? backend->test_workspace_bytes(dev) : 0; }

an_status an_cuda_test_grow_workspace(an_device *dev, size_t bytes)
{
    if (cuda_backend()) return backend->test_grow_workspace(dev, bytes);
    return an_fail(AN_ERR_ARGUMENT, "no GPU workspace: %s", why_not);
}
