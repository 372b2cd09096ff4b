/* fuzz_torch.c: libFuzzer harness for the torch.save reader (torchfile.c).
 *
 * Two kinds of input:
 *   "PK..."   a whole file, written as is: the zip layer (libzip) and the
 *             entry checks. Mutations mostly break a CRC here, so ...
 *   otherwise "pieces": data.pkl, then the storages data/0, data/1, ...,
 *             separated by "\0PIECE\0"; the harness zips them (stored, with
 *             correct CRCs, in torch's layout under "archive/"), so that
 *             every mutation reaches the pickle machine and the tensor checks.
 * tools/make_torch_fixtures.py writes seeds of both kinds to corpus/torch/.
 *
 * The file goes to /dev/shm (the reader takes a path) and is read with
 * an_torch_read. Besides the sanitizers' checks, it traps when foreign.h's
 * promises break: a failure must leave the set empty and name the file; a
 * success must give named tensors of at most AN_TENSOR_MAX_DIMS dimensions
 * whose data can all be read. The reader's output limit is lowered to 2^22
 * floats so that an expand view of a few bytes cannot eat the RSS limit. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "foreign.h"
#include "fuzz_util.h"

extern size_t an_torch_limit_floats; /* torchfile.c: not in foreign.h */

#define MAX_PIECES 64
static const char SEP[] = "\0PIECE\0";
#define SEP_LEN 7

static char tmp_path[96];

static void broken(const char *what, const char *detail) { fuzz_broken("fuzz_torch", what, detail); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_tmp_path(tmp_path, sizeof tmp_path, "torch", ".pth");
    an_torch_limit_floats = (size_t)1 << 22;
    return 0;
}

/* ---------------------------------------------------------------- a stored zip */

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put16(FILE *f, uint32_t x) { fputc(x & 0xff, f), fputc(x >> 8 & 0xff, f); }
static void put32(FILE *f, uint32_t x) { put16(f, x & 0xffff), put16(f, x >> 16); }

typedef struct {
    char name[48];
    const uint8_t *data;
    uint32_t size, crc, offset;
} zentry;

/* the entries as a zip archive: local headers and data, central directory, end record */
static int write_zip(FILE *f, zentry *e, int n)
{
    uint32_t at = 0;
    for (int i = 0; i < n; i++) {
        uint32_t nl = (uint32_t)strlen(e[i].name);
        e[i].crc = crc32_of(e[i].data, e[i].size);
        e[i].offset = at;
        put32(f, 0x04034b50), put16(f, 20), put16(f, 0), put16(f, 0), put16(f, 0), put16(f, 0x21);
        put32(f, e[i].crc), put32(f, e[i].size), put32(f, e[i].size), put16(f, nl), put16(f, 0);
        fwrite(e[i].name, 1, nl, f);
        fwrite(e[i].data, 1, e[i].size, f);
        at += 30 + nl + e[i].size;
    }
    uint32_t cd = at;
    for (int i = 0; i < n; i++) {
        uint32_t nl = (uint32_t)strlen(e[i].name);
        put32(f, 0x02014b50), put16(f, 20), put16(f, 20), put16(f, 0), put16(f, 0), put16(f, 0), put16(f, 0x21);
        put32(f, e[i].crc), put32(f, e[i].size), put32(f, e[i].size), put16(f, nl), put16(f, 0), put16(f, 0);
        put16(f, 0), put16(f, 0), put32(f, 0), put32(f, e[i].offset);
        fwrite(e[i].name, 1, nl, f);
        at += 46 + nl;
    }
    put32(f, 0x06054b50), put16(f, 0), put16(f, 0), put16(f, (uint32_t)n), put16(f, (uint32_t)n);
    put32(f, at - cd), put32(f, cd), put16(f, 0);
    return 1;
}

static int write_pieces(FILE *f, const uint8_t *data, size_t size)
{
    static zentry e[MAX_PIECES + 1];
    int n = 0;
    size_t start = 0;
    for (;;) {
        const uint8_t *sep = size - start >= SEP_LEN ? memmem(data + start, size - start, SEP, SEP_LEN) : NULL;
        size_t end = sep ? (size_t)(sep - data) : size;
        if (n == 0) snprintf(e[n].name, sizeof e[n].name, "archive/data.pkl");
        else snprintf(e[n].name, sizeof e[n].name, "archive/data/%d", n - 1);
        e[n].data = data + start;
        e[n].size = (uint32_t)(end - start);
        n++;
        if (!sep || n == MAX_PIECES) break;
        start = end + SEP_LEN;
    }
    snprintf(e[n].name, sizeof e[n].name, "archive/version");
    e[n].data = (const uint8_t *)"3\n";
    e[n].size = 2;
    return write_zip(f, e, n + 1);
}

/* ---------------------------------------------------------------- the reader */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(tmp_path, "wb");
    if (!f) return 0;
    int ok = size >= 2 && data[0] == 'P' && data[1] == 'K' ? fwrite(data, 1, size, f) == size
                                                            : write_pieces(f, data, size);
    if (fclose(f) != 0 || !ok) {
        remove(tmp_path);
        return 0;
    }
    an_tensor_set set = {NULL, -1};
    an_status st = an_torch_read(tmp_path, &set);
    if (getenv("FUZZ_TORCH_VERBOSE")) /* for repro: what the reader said */
        fprintf(stderr, "fuzz_torch: status %d, %d tensors: %s\n", (int)st, set.count, st ? an_error_message() : "");
    if (st != AN_OK) {
        if (set.count != 0 || set.items) broken("a failed read left tensors", an_error_message());
        if (!strstr(an_error_message(), tmp_path)) broken("the message does not name the file", an_error_message());
    } else {
        volatile float sink = 0;
        for (int i = 0; i < set.count; i++) {
            const an_tensor *t = &set.items[i];
            if (!t->name || !t->name[0] || !t->data || t->ndim < 0 || t->ndim > AN_TENSOR_MAX_DIMS)
                broken("a tensor without a name, data or a valid rank", t->name);
            for (int d = 0; d < t->ndim; d++)
                if (t->shape[d] < 0) broken("a negative dimension", t->name);
            if (an_tensor_set_find(&set, t->name) != t) broken("a name twice", t->name);
            int64_t n = an_tensor_numel(t);
            for (int64_t j = 0; j < n; j++) sink += t->data[j];
        }
        (void)sink;
    }
    /* the description (shapes only) of a file that reads is the same tensors */
    an_tensor_set shapes = {NULL, -1};
    an_status sst = an_torch_read_shapes(tmp_path, &shapes);
    if (sst != AN_OK && (shapes.count != 0 || shapes.items)) broken("a failed description left tensors", NULL);
    if (st == AN_OK && (sst != AN_OK || shapes.count != set.count))
        broken("a file that reads has another description", an_error_message());
    for (int i = 0; sst == AN_OK && i < shapes.count; i++)
        if (shapes.items[i].data) broken("a description with data", shapes.items[i].name);
    an_tensor_set_free(&shapes);
    an_tensor_set_free(&set);
    remove(tmp_path);
    return 0;
}
