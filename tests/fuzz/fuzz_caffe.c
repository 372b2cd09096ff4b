/* fuzz_caffe.c: libFuzzer harness for the Caffe reader (an_caffe_read,
 * src/engine/caffemodel.c, over protobuf-c).
 *
 * Each input is a .caffemodel file's contents, written to a file in
 * /dev/shm (one per process) and read. Besides the sanitizers' checks, the
 * harness traps when a promise of foreign.h is broken: a success gives
 * named tensors of 0..4 positive dimensions whose values can all be read
 * (every float is touched, so ASan sees an array shorter than its shape);
 * a failure leaves the set empty and a message that names the file.
 * Seeds: corpus/caffe (tools/make_caffe_fixtures.py writes the valid ones).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "foreign.h"
#include "fuzz_util.h"

static char tmp_path[96];

static void broken(const char *what, const char *detail) { fuzz_broken("fuzz_caffe", what, detail); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_tmp_path(tmp_path, sizeof tmp_path, "caffe", ".caffemodel");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_write(tmp_path, data, size)) return 0;
    an_tensor_set set = {(an_tensor *)&set, -1};   /* junk: the reader must set it */
    an_status st = an_caffe_read(tmp_path, &set);
    if (st == AN_OK) {
        if (set.count < 1 || !set.items) broken("a success without tensors", NULL);
        volatile float sink = 0;
        for (int i = 0; i < set.count; i++) {
            const an_tensor *t = &set.items[i];
            if (!t->name || !t->name[0]) broken("a tensor without a name", NULL);
            if (t->ndim < 0 || t->ndim > AN_TENSOR_MAX_DIMS) broken("a tensor's ndim out of range", t->name);
            for (int d = 0; d < t->ndim; d++)
                if (t->shape[d] < 1) broken("a dimension below 1", t->name);
            int64_t n = an_tensor_numel(t);
            if (!t->data) broken("a tensor without values", t->name);
            float s = 0;
            for (int64_t j = 0; j < n; j++) s += t->data[j];
            sink += s;
            if (set.count <= 256 && an_tensor_set_find(&set, t->name) != t)
                broken("two tensors with one name", t->name);
        }
        (void)sink;
    } else {
        if (set.items || set.count) broken("a failure left tensors behind", an_error_message());
        if (!strstr(an_error_message(), tmp_path)) broken("the message does not name the file", an_error_message());
    }
    an_tensor_set_free(&set);
    remove(tmp_path);
    return 0;
}
