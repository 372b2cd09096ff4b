/* fuzz_weights.c: libFuzzer harness for the HDF5 weights reader (weights.c).
 *
 * Each input is a whole HDF5 file. It is written to /dev/shm (the reader
 * takes a path, as HDF5 itself does) and read with an_weights_info, then
 * an_weights_load into a 2-class net, by name or strictly (chosen from a
 * hash of the input), through their in-process entries
 * (an_weights_info_in_process, an_weights_load_in_process): the public
 * calls run the reader in a child process (isolate.c), where the sanitizers
 * would not see it and a crash would only be an error.
 *
 * Why a 2-class net: the full net is 57M parameters (230 MB), far too big
 * for a corpus file. With 2 classes dense_3 is only 4096 x 2 + 2 floats, so
 * a seed file holding every layer's group with the right names and
 * attributes, dense_3 at its true shape and the other layers as tiny
 * datasets of the wrong shape drives a by-name load through every check
 * (names, attributes, types, ranks, shapes) and through a real read and
 * commit, in a 40 KB file. The net is created once; a successful load only
 * changes its values, never its shapes.
 *
 * HDF5 (libhdf5, not instrumented) is known to crash on some hostile files;
 * run this harness in libFuzzer's fork mode (-fork=1 -ignore_crashes=1, as
 * the Makefile does) so that such a crash is recorded and the campaign goes
 * on. libhdf5 also leaks a little on some damaged files (an object header
 * that fails to load): lsan_hdf5.supp keeps those leaks, whose allocation
 * is inside libhdf5, from stopping a job; an HDF5 id our code leaves open is
 * caught here instead (check_all_closed). Beyond the sanitizers, it traps
 * when weights.h's promises break: a failure must name the file and leave
 * the report zeroed; a success must account for every layer; no HDF5 object
 * stays open after a call.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "alexnet.h"
#include "weights.h"
#include "fuzz_util.h"

static an_net *net;
static char tmp_path[96];

static void broken(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_weights: broken promise: %s (%s)\n", what, detail ? detail : "");
    __builtin_trap();
}

/* weights.c closes every HDF5 id it opens, on every path. An id left open
 * is not a leak LeakSanitizer sees (HDF5's tables still point at it). */
static void check_all_closed(const char *after)
{
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        char d[96];
        snprintf(d, sizeof d, "%zd HDF5 objects open after %s", open_ids, after);
        broken("an HDF5 id left open", d);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_tmp_path(tmp_path, sizeof tmp_path, "weights", ".h5");
    an_set_threads(1);
    if (an_net_create(2, 1, &net) != AN_OK) {
        fprintf(stderr, "fuzz_weights: cannot create the net: %s\n", an_error_message());
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_write(tmp_path, data, size)) return 0;

    an_weights_file_info info;
    an_status st = an_weights_info_in_process(tmp_path, &info);
    if (st != AN_OK && !strstr(an_error_message(), tmp_path))
        broken("an_weights_info's message does not name the file", an_error_message());
    if (st == AN_OK) {
        if (info.kind != AN_WEIGHTS_OWN && info.kind != AN_WEIGHTS_KERAS1) broken("info: unknown kind", NULL);
        if (info.classes < 0) broken("info: negative class count", NULL);
        /* every class name must be a readable string */
        for (int i = 0; info.class_names && i < info.classes; i++)
            if (!info.class_names[i] || strlen(info.class_names[i]) > ((size_t)1 << 30))
                broken("info: class name missing", NULL);
        an_weights_info_free(&info);
    }
    check_all_closed("an_weights_info");

    /* mostly by name: the seeds then load dense_3 and go through every layer */
    int by_name = size > 0 ? (data[size / 2] & 3) != 0 : 1;
    an_weights_report rep;
    st = an_weights_load_in_process(net, tmp_path, by_name, &rep);
    if (st == AN_OK) {
        if (rep.n_loaded + rep.n_kept + rep.n_missing != AN_W_N_LAYERS || rep.n_loaded < 1)
            broken("load: the report does not account for every layer", NULL);
        if (!by_name && rep.n_loaded != AN_W_N_LAYERS) broken("load: strict load kept layers", NULL);
    } else {
        if (!strstr(an_error_message(), tmp_path))
            broken("an_weights_load's message does not name the file", an_error_message());
        if (rep.n_loaded || rep.n_kept || rep.n_missing || rep.kind) broken("load: report not zeroed", NULL);
    }
    check_all_closed("an_weights_load");
    remove(tmp_path);
    return 0;
}
