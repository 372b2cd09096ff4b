/* test_torchfile.c: the torch.save reader (src/engine/torchfile.c, foreign.h)
 * on the files of tools/make_torch_fixtures.py in FIXTURE_DIR/torch/.
 * Usage: test_torchfile [FIXTURE_DIR]. One line per check, then "N passed,
 * M failed"; exit status 1 on any failure.
 *
 * Valid files: every float tensor's name, order, shape and values against
 * expected.anfx, exactly (float32 bit for bit; float64 references are cast
 * to float here, as C converts); skipped tensors (int64, bool) absent. The
 * strided AlexNet: torchvision's names and shapes, a sample of each tensor
 * and its exact sums. Bad files: the status, a message that names the file
 * and says why, an empty set afterwards. Non-regular files, an_file_sniff,
 * a file fuzz_torch found, a real allocation failure inside the pickle
 * reader (a child process under RLIMIT_AS), and no file descriptor left
 * open. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "foreign.h"
#include "testutil.h"

static char tdir[512];

static const char *tpath(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tdir, name);
    return buf;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* bit for bit, any NaN equal to any NaN */
static int same(float a, float b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a); }

/* ---------------------------------------------------------------- valid files */

static const char *VALID[] = {"f32.pth",    "f64.pth",   "f16.pth",     "bf16.pth",   "transposed.pth",
                              "offset.pth", "shared.pth", "scalar.pth", "int64.pth",  "module.pth",
                              "proto4.pth", "expand.pth", "parameter.pth", "deflated.pth", "handmade.pth"};

static void test_valid_file(const anfx_file *fx, const char *file)
{
    char path[700], label[96];
    size_t plen = strlen(file);
    an_tensor_set set = {0};
    snprintf(label, sizeof label, "read %s", file);
    if (!status_ok(label, an_torch_read(tpath(path, sizeof path, file), &set))) return;
    int k = 0, bad_name = 0, bad_shape = 0, bad_value = 0;
    size_t values = 0;
    char first_bad[160] = "";
    for (int i = 0; i < fx->n; i++) {
        const anfx_tensor *r = &fx->t[i];
        if (strncmp(r->name, file, plen) || r->name[plen] != '/') continue;
        const char *name = r->name + plen + 1;
        if (k >= set.count) {
            k++;
            continue;
        }
        const an_tensor *t = &set.items[k++];
        if (strcmp(t->name, name)) {
            if (!bad_name++) snprintf(first_bad, sizeof first_bad, "tensor %d is '%s', not '%s'", k - 1, t->name, name);
            continue;
        }
        int shape_ok = t->ndim == r->ndim;
        for (int d = 0; shape_ok && d < t->ndim; d++) shape_ok = t->shape[d] == r->dims[d];
        if (!shape_ok || (size_t)an_tensor_numel(t) != r->count) {
            if (!bad_shape++) snprintf(first_bad, sizeof first_bad, "'%s': wrong shape", name);
            continue;
        }
        for (size_t j = 0; j < r->count; j++) {
            float want = r->dtype == ANFX_F64 ? (float)((const double *)r->data)[j] : ((const float *)r->data)[j];
            if (!same(t->data[j], want)) {
                if (!bad_value++)
                    snprintf(first_bad, sizeof first_bad, "'%s'[%zu] is %.9g, not %.9g", name, j, t->data[j], want);
            }
            values++;
        }
    }
    snprintf(label, sizeof label, "%s: tensors", file);
    CHECK(label, k == set.count && k > 0, "%d read, %d expected", set.count, k);
    snprintf(label, sizeof label, "%s: names, shapes, values", file);
    CHECK(label, !bad_name && !bad_shape && !bad_value, "%zu values; %d names, %d shapes, %d values wrong %s",
          values, bad_name, bad_shape, bad_value, first_bad);
    if (!strcmp(file, "int64.pth") || !strcmp(file, "module.pth")) {
        const char *skipped = !strcmp(file, "int64.pth") ? "bn.num_batches_tracked" : "1.num_batches_tracked";
        snprintf(label, sizeof label, "%s: int64 tensor skipped", file);
        CHECK(label, !an_tensor_set_find(&set, skipped) && (strcmp(file, "int64.pth") || set.count == 2),
              "%d tensors", set.count);
    }
    an_tensor_set_free(&set);
    an_tensor_set_free(&set); /* safe twice */
    CHECK("an_tensor_set_free leaves the set empty", set.count == 0 && set.items == NULL, NULL);
}

static void test_valid(void)
{
    anfx_file *fx = load("torch/expected.anfx");
    if (!fx) return;
    for (size_t i = 0; i < sizeof VALID / sizeof VALID[0]; i++) test_valid_file(fx, VALID[i]);
    anfx_free(fx);
}

/* ---------------------------------------------------------------- the strided AlexNet */

static void test_strided_alexnet(void)
{
    static const char *NAMES[16] = {
        "features.0.weight",   "features.0.bias",   "features.3.weight",   "features.3.bias",
        "features.6.weight",   "features.6.bias",   "features.8.weight",   "features.8.bias",
        "features.10.weight",  "features.10.bias",  "classifier.1.weight", "classifier.1.bias",
        "classifier.4.weight", "classifier.4.bias", "classifier.6.weight", "classifier.6.bias"};
    anfx_file *fx = load("torch/torchvision_alexnet_strided.anfx");
    if (!fx) return;
    char path[700], nm[128];
    an_tensor_set set = {0};
    if (!status_ok("read torchvision_alexnet_strided.pth",
                   an_torch_read(tpath(path, sizeof path, "torchvision_alexnet_strided.pth"), &set))) {
        anfx_free(fx);
        return;
    }
    CHECK("strided alexnet: 16 tensors", set.count == 16, "%d", set.count);
    int64_t total = 0;
    for (int i = 0; i < 16 && i < set.count; i++) {
        const an_tensor *t = &set.items[i];
        char label[96];
        snprintf(label, sizeof label, "strided alexnet: %s", NAMES[i]);
        snprintf(nm, sizeof nm, "%s.shape", NAMES[i]);
        const anfx_tensor *sh = anfx_get(fx, nm, ANFX_I32);
        snprintf(nm, sizeof nm, "%s.idx", NAMES[i]);
        const anfx_tensor *idx = anfx_get(fx, nm, ANFX_I32);
        snprintf(nm, sizeof nm, "%s.val", NAMES[i]);
        const anfx_tensor *val = anfx_get(fx, nm, ANFX_F32);
        snprintf(nm, sizeof nm, "%s.stats", NAMES[i]);
        const anfx_tensor *stats = anfx_get(fx, nm, ANFX_F64);
        if (!sh || !idx || !val || !stats || strcmp(t->name, NAMES[i])) {
            CHECK(label, 0, "name '%s' or its references missing", t->name);
            continue;
        }
        int ok = t->ndim == (int)sh->count;
        for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == ((const int32_t *)sh->data)[d];
        int64_t n = an_tensor_numel(t);
        total += n;
        int wrong = 0;
        for (size_t j = 0; ok && j < idx->count; j++) {
            int32_t at = ((const int32_t *)idx->data)[j];
            if (at < 0 || at >= n || !same(t->data[at], ((const float *)val->data)[j])) wrong++;
        }
        double sum = 0, sumabs = 0, maxabs = 0;
        for (int64_t j = 0; ok && j < n; j++) {
            double x = t->data[j];
            sum += x;
            sumabs += fabs(x);
            if (fabs(x) > maxabs) maxabs = fabs(x);
        }
        const double *s = stats->data;
        /* every value is an integer times 2^-e: the sums are exact */
        CHECK(label, ok && !wrong && sum == s[0] && sumabs == s[1] && maxabs == s[2] && (double)n == s[3],
              "shape %s, %d of %zu samples wrong, sum %.17g vs %.17g, sum|x| %.17g vs %.17g", ok ? "ok" : "WRONG",
              wrong, idx->count, sum, s[0], sumabs, s[1]);
    }
    CHECK("strided alexnet: 61100840 parameters", total == 61100840, "%lld", (long long)total);
    an_tensor_set_free(&set);
    anfx_free(fx);
}

/* ---------------------------------------------------------------- bad files */

static const struct {
    const char *file;
    an_status status;
    const char *reason;
} BAD[] = {
    {"bad_legacy.pth", AN_ERR_FORMAT, "is a legacy (pre-1.6) torch.save file; re-save it with torch.save(torch.load(f), f2)"},
    {"bad_trunc_3.pth", AN_ERR_FORMAT, "no zip archive signature"},
    {"bad_trunc_100.pth", AN_ERR_FORMAT, "is not a readable zip archive"},
    {"bad_trunc_half.pth", AN_ERR_FORMAT, "is not a readable zip archive"},
    {"bad_trunc_end30.pth", AN_ERR_FORMAT, "is not a readable zip archive"},
    {"bad_trunc_end1.pth", AN_ERR_FORMAT, "is not a readable zip archive"},
    {"bad_not_zip.pth", AN_ERR_FORMAT, "no zip archive signature"},
    {"bad_global_os_system.pth", AN_ERR_FORMAT, "refers to 'os.system', which a state dict does not use; refused"},
    {"bad_global_eval.pth", AN_ERR_FORMAT, "refers to 'builtins.eval'"},
    {"bad_stride.pth", AN_ERR_FORMAT, "tensor 'w' reads past its storage (element 16 of a storage of 16)"},
    {"bad_short_storage.pth", AN_ERR_FORMAT, "holds 60 bytes where 64 are expected"},
    {"bad_not_dict.pth", AN_ERR_FORMAT, "data.pkl holds a list, not a state dict"},
    {"bad_nest_marks.pth", AN_ERR_FORMAT, "MARKs nested deeper than"},
    {"bad_nest_lists.pth", AN_ERR_FORMAT, "the stack grows past"},
    {"bad_deep_list.pth", AN_ERR_FORMAT, "data.pkl holds a list, not a state dict"},
    {"bad_deep_tuple.pth", AN_ERR_FORMAT, "data.pkl holds a tuple, not a state dict"},
    {"bad_value_bomb.pth", AN_ERR_MEMORY, "data.pkl needs more than 256 MiB to read; refused"},
    {"bad_byteorder.pth", AN_ERR_FORMAT, "big-endian"},
    {"bad_missing_storage.pth", AN_ERR_FORMAT, "has no entry 'data/7' for the storage of tensor 'w'"},
    {"bad_5d.pth", AN_ERR_FORMAT, "tensor 'w' has 5 dimensions"},
    {"bad_dup.pth", AN_ERR_FORMAT, "tensor 'w' appears twice"},
    {"bad_value.pth", AN_ERR_FORMAT, "entry 'epoch' of the state dict is not a tensor (an int)"},
    {"bad_no_pickle.pth", AN_ERR_FORMAT, "it has no <folder>/data.pkl"},
    {"bad_no_stop.pth", AN_ERR_FORMAT, "ends before its STOP opcode"},
    {"bad_opcode.pth", AN_ERR_FORMAT, "opcode 0x69 is not one a state dict uses"},
    {"bad_memo.pth", AN_ERR_FORMAT, "memo index 5 was never stored"},
    {"bad_expand_bomb.pth", AN_ERR_MEMORY, "tensor 'w' would take the file past the reader's limit"},
    {"bad_huge_storage.pth", AN_ERR_FORMAT, "storage '0' claims 1099511627776 elements, more than the file can hold"},
    {"bad_crc.pth", AN_ERR_FORMAT, "CRC"},
};

static void test_bad(void)
{
    char path[700], label[96];
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        an_tensor_set set = {NULL, 12345};
        an_status st = an_torch_read(tpath(path, sizeof path, BAD[i].file), &set);
        const char *msg = an_error_message();
        snprintf(label, sizeof label, "refuse %s", BAD[i].file);
        CHECK(label, st == BAD[i].status && strstr(msg, path) && strstr(msg, BAD[i].reason) && set.count == 0 &&
                         set.items == NULL,
              "status %d, set %d: %s", (int)st, set.count, msg);
    }
}

/* not regular files: refused at once (a FIFO must not block), as AN_ERR_IO */
static void test_not_regular(void)
{
    char tmp[] = "/tmp/test_torchfile_XXXXXX", fifo[64];
    an_tensor_set set = {0};
    CHECK("missing file: AN_ERR_IO", an_torch_read("/nonexistent/x.pth", &set) == AN_ERR_IO &&
          strstr(an_error_message(), "/nonexistent/x.pth"), "%s", an_error_message());
    CHECK("directory: AN_ERR_IO", an_torch_read(tdir, &set) == AN_ERR_IO &&
          strstr(an_error_message(), "is a directory"), "%s", an_error_message());
    CHECK("/dev/null: AN_ERR_IO", an_torch_read("/dev/null", &set) == AN_ERR_IO, "%s", an_error_message());
    if (!mkdtemp(tmp)) {
        CHECK("FIFO: AN_ERR_IO", 0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(fifo, sizeof fifo, "%s/fifo.pth", tmp);
    if (mkfifo(fifo, 0600) == 0)
        CHECK("FIFO: AN_ERR_IO, no wait", an_torch_read(fifo, &set) == AN_ERR_IO &&
              strstr(an_error_message(), "not a regular file"), "%s", an_error_message());
    else
        CHECK("FIFO: AN_ERR_IO, no wait", 0, "mkfifo: %s", strerror(errno));
    unlink(fifo);
    rmdir(tmp);
    CHECK("NULL arguments", an_torch_read(NULL, &set) == AN_ERR_ARGUMENT && an_torch_read("x", NULL) == AN_ERR_ARGUMENT,
          NULL);
}

static void test_sniff(void)
{
    char path[700];
    an_file_kind kind;
    an_status st = an_file_sniff(tpath(path, sizeof path, "f32.pth"), &kind);
    CHECK("sniff: zip", st == AN_OK && kind == AN_FILE_TORCH_ZIP, "status %d, kind %d", (int)st, (int)kind);
    st = an_file_sniff(tpath(path, sizeof path, "bad_legacy.pth"), &kind);
    CHECK("sniff: legacy", st == AN_OK && kind == AN_FILE_TORCH_LEGACY, "status %d, kind %d", (int)st, (int)kind);
    st = an_file_sniff(tpath(path, sizeof path, "bad_not_zip.pth"), &kind);
    CHECK("sniff: text: unknown", st == AN_OK && kind == AN_FILE_UNKNOWN, "status %d, kind %d", (int)st, (int)kind);
    snprintf(path, sizeof path, "%s/regress/weights_dense_links_invalid_free.h5", fixture_dir);
    if (access(path, R_OK) == 0) {
        st = an_file_sniff(path, &kind);
        CHECK("sniff: hdf5", st == AN_OK && kind == AN_FILE_HDF5, "status %d, kind %d", (int)st, (int)kind);
    } else {
        printf("sniff: hdf5: skipped (no %s)\n", path);
    }
}

/* found by fuzz_torch under UBSan: an empty tuple built before anything was
 * pushed made the reader memcpy from its still-NULL stack (0 items). The file
 * is an empty state dict and reads as one; the asan target's UBSan aborts on
 * the old code. */
static void test_regress(void)
{
    char path[700];
    an_tensor_set set = {NULL, 12345};
    an_status st = an_torch_read(tpath(path, sizeof path, "regress_empty_tuple_first.pth"), &set);
    CHECK("an empty tuple first (fuzz_torch): an empty state dict", st == AN_OK && set.count == 0, "status %d, %d tensors%s%s",
          (int)st, set.count, st == AN_OK ? "" : ": ", st == AN_OK ? "" : an_error_message());
    an_tensor_set_free(&set);
}

/* malloc failing inside the pickle machine, below its own 256 MiB budget:
 * AN_ERR_MEMORY, "out of memory", no crash and no hang (the failure path
 * once called itself: an endless recursion at -O0, the budget's message at
 * -O2). A child process limits its address space to its size now + 64 MB
 * and reads bad_value_bomb.pth, whose values would take more than 256 MiB. */
static void test_real_oom(void)
{
    const char *label = "malloc fails in the pickle: out of memory";
    if (address_limit_untestable(label)) return;
    char path[700];
    tpath(path, sizeof path, "bad_value_bomb.pth");
    int fd[2];
    if (pipe(fd) != 0) {
        CHECK(label, 0, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        alarm(60); /* a hang ends the child */
        char msg[600] = "cannot read /proc/self/statm";
        unsigned long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        int ok = f && fscanf(f, "%lu", &pages) == 1;
        if (f) fclose(f);
        an_status st = AN_OK;
        if (ok) {
            struct rlimit rl;
            rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)64 << 20);
            if (setrlimit(RLIMIT_AS, &rl) != 0) {
                snprintf(msg, sizeof msg, "setrlimit: %s", strerror(errno));
                ok = 0;
            }
        }
        if (ok) {
            an_tensor_set set = {NULL, 12345};
            st = an_torch_read(path, &set);
            snprintf(msg, sizeof msg, "status %d, set %d: %s", (int)st, set.count, an_error_message());
            ok = st == AN_ERR_MEMORY && strstr(an_error_message(), path) &&
                 strstr(an_error_message(), "out of memory while reading the state dict") && set.count == 0 &&
                 set.items == NULL;
        }
        ssize_t w = write(fd[1], msg, strlen(msg));
        (void)w;
        _exit(ok ? 0 : 1);
    }
    close(fd[1]);
    char msg[600] = "";
    ssize_t n = pid > 0 ? read(fd[0], msg, sizeof msg - 1) : -1;
    msg[n > 0 ? n : 0] = 0;
    close(fd[0]);
    int ws = 0;
    if (pid > 0) waitpid(pid, &ws, 0);
    CHECK(label, pid > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s%s", msg,
          pid < 0 ? "fork failed" : WIFSIGNALED(ws) ? " (the child died of a signal)" : "");
}

/* an_torch_read_shapes: the same names and shapes as a full read, no data,
 * and the storages' sizes still checked */
static void test_shapes_only(void)
{
    char path[700];
    an_tensor_set full = {NULL, 0}, shapes = {NULL, 0};
    tpath(path, sizeof path, "torchvision_alexnet_strided.pth");
    if (status_ok("shapes only: full read", an_torch_read(path, &full)) &&
        status_ok("shapes only: shapes read", an_torch_read_shapes(path, &shapes))) {
        int same = full.count == shapes.count;
        for (int i = 0; same && i < full.count; i++) {
            const an_tensor *a = &full.items[i], *b = &shapes.items[i];
            same = !strcmp(a->name, b->name) && a->ndim == b->ndim && b->data == NULL &&
                   !memcmp(a->shape, b->shape, sizeof a->shape);
        }
        CHECK("shapes only: the same names and shapes, no data", same, "%d vs %d tensors", full.count, shapes.count);
    }
    an_tensor_set_free(&full);
    an_tensor_set_free(&shapes);
    an_status st = an_torch_read_shapes(tpath(path, sizeof path, "bad_short_storage.pth"), &shapes);
    CHECK("shapes only: a storage shorter than declared is still refused",
          st == AN_ERR_FORMAT && shapes.count == 0 && strstr(an_error_message(), "bad_short_storage.pth"),
          "status %d: %s", (int)st, an_error_message());
}

int main(int argc, char **argv)
{
    if (argc > 1) fixture_dir = argv[1];
    snprintf(tdir, sizeof tdir, "%s/torch", fixture_dir);
    int fds = open_fds();
    test_valid();
    test_strided_alexnet();
    test_shapes_only();
    test_bad();
    test_not_regular();
    test_sniff();
    test_regress();
    test_real_oom();
    int fds_after = open_fds();
    CHECK("no file descriptor left open", fds == fds_after, "%d before, %d after", fds, fds_after);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
