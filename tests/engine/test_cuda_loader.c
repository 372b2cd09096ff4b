/* test_cuda_loader.c: loading the CUDA backend (cuda_loader.c), which
 * needs no GPU. The engine loads build-cuda/alexnet_cuda.so once per
 * process, so each case runs in a child process of its own, with its
 * environment set before the engine's first call:
 *   - nothing asked of a GPU: no CUDA library and no backend is mapped;
 *     asking without an NVIDIA driver still maps none, and says why;
 *   - AN_CUDA_LOAD_WITHOUT_DRIVER=1: the backend loads here too, and CUDA
 *     itself answers (no device, with a reason, on a machine without one);
 *   - ALEXNET_CUDA_BACKEND naming a text file, a missing file, a backend
 *     whose library is gone (as where a CUDA library is missing), a library
 *     that is no backend, or a backend of another ABI: a reason that names
 *     the file, and the CPU still computes;
 *   - the backend refuses an engine of another ABI, and exports nothing but
 *     its entry. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cuda_backend.h"
#include "testutil.h"

static char build_dir[4096];        /* where this program and the backend are */
static int driver_present;

/* 1 when a line of /proc/self/maps names `part`, -1 without /proc */
static int mapped(const char *part)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, part) != NULL;
    fclose(f);
    return found;
}

/* the CUDA libraries and backend files in this process's maps, or "" */
static const char *cuda_mapped(void)
{
    static const char *names[] = {"libcudart", "libcublas", "libcudnn", "libnccl", "alexnet_cuda", "fake_backend"};
    static char list[256];
    list[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (mapped(names[i]) == 1) snprintf(list + strlen(list), sizeof list - strlen(list), " %s", names[i]);
    return list;
}

/* one image through a new net on the CPU: the softmax sums to 1 */
static void cpu_still_computes(const char *label)
{
    char name[160];
    snprintf(name, sizeof name, "%s: the CPU computes", label);
    an_net *net;
    if (!status_ok(name, an_net_create(5, 3, &net))) return;
    int side = an_net_input_size(net);
    float *image = falloc((size_t)3 * side * side, 100.0f), prob[5];
    if (status_ok(name, an_net_forward(net, image, 1, AN_SOFTMAX, prob))) {
        double sum = prob[0] + prob[1] + prob[2] + prob[3] + prob[4];
        CHECK(name, sum > 0.999 && sum < 1.001, "softmax sums to %.6f", sum);
    }
    free(image);
    an_net_free(net);
}

/* a backend that does not load: -1 with a reason naming the file, no GPU to
 * open, nothing of CUDA mapped, and the CPU works */
static void refused(const char *label, const char *path, const char *said)
{
    char why[1024], name[160];
    int gpus = an_cuda_probe(why, sizeof why);
    snprintf(name, sizeof name, "%s: the probe says why", label);
    CHECK(name, gpus == -1 && strstr(why, path) && strstr(why, said), "%d GPUs; %s", gpus, why);
    an_device *dev = NULL;
    an_status st = an_cuda_device_open(0, &dev);
    snprintf(name, sizeof name, "%s: opening GPU 0 fails, naming the file", label);
    CHECK(name, st == AN_ERR_ARGUMENT && !dev && strstr(an_error_message(), path), "%s", an_error_message());
    snprintf(name, sizeof name, "%s: no GPU counted", label);
    CHECK(name, an_cuda_device_count() == 0 && an_cuda_built(), "%d", an_cuda_device_count());
    cpu_still_computes(label);
}

/* ---- the cases, each in a fresh process */

static void case_untouched(void)
{
    if (mapped("") < 0) {
        printf("SKIP the maps checks: no /proc/self/maps\n");
        return;
    }
    CHECK("before any GPU call: nothing of CUDA mapped", !*cuda_mapped(), "%s", cuda_mapped());
    CHECK("an_cuda_built() answers without loading", an_cuda_built() && !*cuda_mapped(), "%s", cuda_mapped());
    an_cuda_set_tf32(0);
    CHECK("TF32 is set and read without loading", !an_cuda_tf32() && !*cuda_mapped(), "%s", cuda_mapped());
    cpu_still_computes("untouched");
    CHECK("a CPU net maps nothing of CUDA", !*cuda_mapped(), "%s", cuda_mapped());
    char why[1024];
    int gpus = an_cuda_probe(why, sizeof why);
    if (!driver_present) {
        CHECK("no NVIDIA driver: no GPU, and why", gpus == 0 && strstr(why, "no NVIDIA driver"), "%d; %s", gpus, why);
        CHECK("no NVIDIA driver: the probe maps nothing of CUDA", !*cuda_mapped(), "%s", cuda_mapped());
        an_device *dev = NULL;
        an_status st = an_cuda_device_open(0, &dev);
        CHECK("no NVIDIA driver: opening GPU 0 says why", st == AN_ERR_ARGUMENT &&
              strstr(an_error_message(), "no NVIDIA driver"), "%s", an_error_message());
    } else {
        CHECK("an NVIDIA driver: the probe loads the backend", gpus >= 0 && mapped("alexnet_cuda.so") == 1,
              "%d; %s; mapped:%s", gpus, why, cuda_mapped());
    }
}

static void case_forced(void)
{
    char why[1024];
    int gpus = an_cuda_probe(why, sizeof why);
    printf("forced load: %d GPUs%s%s\n", gpus, why[0] ? "; " : "", why);
    CHECK("forced: the backend and CUDA's runtime are mapped",
          mapped("alexnet_cuda.so") == 1 && mapped("libcudart") == 1, "mapped:%s", cuda_mapped());
    if (gpus > 0) {
        char desc[256];
        CHECK("forced: a GPU is described", an_cuda_describe(0, desc, sizeof desc) == AN_OK, "%s", desc);
        return;
    }
    CHECK("forced: CUDA answers no GPU, with its reason", gpus == 0 && why[0], "%d; %s", gpus, why);
    an_device *dev = NULL;
    an_status st = an_cuda_device_open(0, &dev);
    CHECK("forced: opening GPU 0 fails through the backend", st == AN_ERR_ARGUMENT && !dev &&
          strstr(an_error_message(), "usable GPU"), "%s", an_error_message());
    char desc[256];
    st = an_cuda_describe(0, desc, sizeof desc);
    CHECK("forced: describing GPU 0 fails through the backend", st == AN_ERR_ARGUMENT &&
          strstr(an_error_message(), "no CUDA device 0"), "%s", an_error_message());
    int nccl = mapped("libnccl") == 1;
    CHECK("forced: the backend says whether it has NCCL", an_cuda_nccl_built() == nccl, "says %d; libnccl %s",
          an_cuda_nccl_built(), nccl ? "mapped" : "not mapped");
    cpu_still_computes("forced");
}

static void case_text_file(void)
{
    const char *path = getenv("ALEXNET_CUDA_BACKEND");
    refused("a text file", path, "did not load");
    CHECK("a text file: nothing of CUDA mapped", !*cuda_mapped(), "%s", cuda_mapped());
}

static void case_missing(void)
{
    refused("a missing file", getenv("ALEXNET_CUDA_BACKEND"), "No such file");
}

static void case_library_gone(void)
{
    refused("a backend whose library is gone", getenv("ALEXNET_CUDA_BACKEND"),
            "liban_gone.so: cannot open shared object file");
}

static void case_not_a_backend(void)
{
    refused("a library that is no backend", getenv("ALEXNET_CUDA_BACKEND"), "is no GPU backend of alexnet");
}

static void case_other_abi(void)
{
    refused("a backend of another ABI", getenv("ALEXNET_CUDA_BACKEND"), "has ABI 999");
}

/* the backend's side of the ABI check, and its exports */
static void case_backend_itself(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", build_dir, AN_CUDA_BACKEND_FILE);
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        CHECK("the backend loads with dlopen", 0, "%s", dlerror());
        return;
    }
    an_cuda_backend_entry_fn entry;
    *(void **)&entry = dlsym(lib, AN_CUDA_BACKEND_ENTRY);
    CHECK("the backend exports its entry", entry != NULL, "%s", AN_CUDA_BACKEND_ENTRY);
    CHECK("the backend hides the rest", !dlsym(lib, "cuda_probe") && !dlsym(lib, "an_fail") &&
          !dlsym(lib, "an_cuda_probe"), NULL);
    if (!entry) return;
    const an_cuda_api *api = (const an_cuda_api *)1;
    an_cuda_engine other = {AN_CUDA_ABI + 1, an_vfail, an_copy_parallel, an_rng_uniform, an_cuda_tf32, NULL};
    int abi = entry(AN_CUDA_ABI + 1, &other, &api);
    CHECK("the backend refuses an engine of another ABI", abi == AN_CUDA_ABI && api == NULL, "ABI %d", abi);
    dlclose(lib);
}

/* ---- running each case in its own process */

typedef struct { int passed, failed; } totals;

static void run_case(totals *sum, const char *title, void (*fn)(void), const char *backend, int force)
{
    printf("-- %s\n", title);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (backend) setenv("ALEXNET_CUDA_BACKEND", backend, 1);
        if (force) setenv("AN_CUDA_LOAD_WITHOUT_DRIVER", "1", 1);
        fn();
        sum->passed += n_pass;
        sum->failed += n_fail;
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("FAIL %s: the case's process died (status %d)\n", title, status);
        sum->failed++;
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    if (!an_cuda_built()) {
        printf("SKIP the loading tests: built without the CUDA backend\n0 passed, 0 failed\n");
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", build_dir, sizeof build_dir - 1);
    if (n > 0) build_dir[n] = '\0';
    else snprintf(build_dir, sizeof build_dir, "%s", argv[0]);
    char *slash = strrchr(build_dir, '/');
    if (slash) *slash = '\0';
    driver_present = access("/dev/nvidiactl", F_OK) == 0 || access("/proc/driver/nvidia/version", F_OK) == 0 ||
                     access("/dev/dxg", F_OK) == 0;
    printf("NVIDIA driver: %s\n", driver_present ? "present" : "none");

    char text[] = "/tmp/an_not_a_backend_XXXXXX";
    int fd = mkstemp(text);
    if (fd < 0 || write(fd, "not a shared object\n", 20) != 20) { perror("mkstemp"); return 1; }
    close(fd);
    char missing[4200], fake[4200], gone[4200];
    snprintf(missing, sizeof missing, "%s/no_such_dir/%s", build_dir, AN_CUDA_BACKEND_FILE);
    snprintf(fake, sizeof fake, "%s/fake_backend_abi999.so", build_dir);
    snprintf(gone, sizeof gone, "%s/fake_backend_lib_gone.so", build_dir);

    totals *sum = mmap(NULL, sizeof *sum, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sum == MAP_FAILED) { perror("mmap"); return 1; }
    run_case(sum, "nothing asked of a GPU", case_untouched, NULL, 0);
    run_case(sum, "AN_CUDA_LOAD_WITHOUT_DRIVER=1", case_forced, NULL, 1);
    run_case(sum, "ALEXNET_CUDA_BACKEND: a text file", case_text_file, text, 1);
    run_case(sum, "ALEXNET_CUDA_BACKEND: a missing file", case_missing, missing, 1);
    run_case(sum, "ALEXNET_CUDA_BACKEND: a backend whose library is gone", case_library_gone, gone, 1);
    run_case(sum, "ALEXNET_CUDA_BACKEND: libm", case_not_a_backend, "libm.so.6", 1);
    run_case(sum, "ALEXNET_CUDA_BACKEND: a backend of ABI 999", case_other_abi, fake, 1);
    run_case(sum, "the backend's entry", case_backend_itself, NULL, 0);
    unlink(text);
    printf("%d passed, %d failed\n", sum->passed, sum->failed);
    return sum->failed > 0;
}
