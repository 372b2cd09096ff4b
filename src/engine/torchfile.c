/* torchfile.c: PyTorch's torch.save zip archive of a state dict (foreign.h).
 *
 * Layout (torch >= 1.6): a zip archive whose entries sit in one top folder of
 * any name: <top>/data.pkl (a pickle of the OrderedDict name -> tensor),
 * <top>/data/<key> (each storage's raw little-endian bytes), <top>/version
 * and, from torch 1.10 or so, <top>/byteorder. Each tensor in the pickle is
 *   torch._utils._rebuild_tensor_v2(persistent_load(('storage',
 *       torch.FloatStorage, '<key>', 'cpu', numel)), offset, size, stride,
 *       requires_grad, OrderedDict())
 *
 * The pickle is read by a small virtual machine of its own that executes
 * nothing: it knows the opcodes a state dict uses, builds plain values, and
 * accepts GLOBAL only for a whitelist (OrderedDict, the tensor rebuilders,
 * the storage classes). REDUCE of a whitelisted name builds a record; no
 * code is ever called. Every length read from the file is checked against
 * the bytes that remain, the stack, marks and memo have caps, and nothing is
 * recursive, so hostile nesting costs memory linear in the file, no more.
 *
 * Decisions: float32, float64, float16 and bfloat16 tensors are read (as
 * float); tensors of other dtypes (int64 num_batches_tracked, bool, uint8)
 * are skipped, unread. Any strides and storage offset are accepted as long
 * as every element lies inside the storage (stride 0, overlapping strides:
 * expand and as_strided views are legal); tensors are gathered into C
 * order. A float tensor with more than AN_TENSOR_MAX_DIMS dimensions, a
 * duplicated name, or an entry that is not a tensor is refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>
#include "files.h"
#include "foreign.h"

#define PKL_MAX_BYTES ((uint64_t)64 << 20) /* a real state dict's pickle: ~100 bytes a tensor */
#define PKL_MAX_STACK (1 << 16)             /* pickle batches SETITEMS by 1000 pairs */
#define PKL_MAX_MARKS 1024                  /* Python's pickler nests no deeper than its recursion */
#define PKL_MAX_MEMO (1 << 22)
#define PKL_MAX_MEMORY ((size_t)256 << 20)  /* the values it builds: ~1 KB a tensor */
#define MAX_NAME 4096                       /* a tensor name, a GLOBAL line, a storage key */
#define DEFLATE_MAX_RATIO 1032              /* deflate never expands more: a bigger claim is a lie */

/* Most floats one file may produce (outputs plus the largest storage):
 * 2^30 = 4 GiB. Not in foreign.h: the fuzz harness lowers it. */
size_t an_torch_limit_floats = (size_t)1 << 30;

/* ------------------------------------------------------------- values */

typedef enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR } vkind;
static const char *const KIND_NAME[] = {"None",   "a bool", "an int",   "a float",   "a str",   "a tuple",
                                        "a list", "a dict", "a global", "a storage", "a tensor"};

enum { DT_F32, DT_F64, DT_F16, DT_BF16, DT_OTHER };
static const int ELEM_SIZE[] = {4, 8, 2, 2, 0};

enum { G_DICT, G_TENSOR, G_PARAM, G_STORAGE };
static const struct {
    const char *module, *name;
    int what, dtype;
} GLOBALS[] = {
    {"collections", "OrderedDict", G_DICT, 0},
    {"torch._utils", "_rebuild_tensor_v2", G_TENSOR, 0},
    {"torch._utils", "_rebuild_parameter", G_PARAM, 0},
    {"torch._utils", "_rebuild_parameter_with_state", G_PARAM, 0},
    {"torch", "FloatStorage", G_STORAGE, DT_F32},
    {"torch", "DoubleStorage", G_STORAGE, DT_F64},
    {"torch", "HalfStorage", G_STORAGE, DT_F16},
    {"torch", "BFloat16Storage", G_STORAGE, DT_BF16},
    /* read but skipped: a BatchNorm's num_batches_tracked, masks, ... */
    {"torch", "LongStorage", G_STORAGE, DT_OTHER},
    {"torch", "IntStorage", G_STORAGE, DT_OTHER},
    {"torch", "ShortStorage", G_STORAGE, DT_OTHER},
    {"torch", "CharStorage", G_STORAGE, DT_OTHER},
    {"torch", "ByteStorage", G_STORAGE, DT_OTHER},
    {"torch", "BoolStorage", G_STORAGE, DT_OTHER},
};
#define N_GLOBALS ((int)(sizeof GLOBALS / sizeof GLOBALS[0]))

typedef struct value value;
struct value {
    vkind kind;
    union {
        int64_t i;                                      /* V_BOOL, V_INT */
        double f;                                       /* V_FLOAT */
        struct { char *s; size_t len; } str;            /* V_STR (NUL added) */
        struct { value **v; size_t n, cap; } seq;       /* V_TUPLE, V_LIST, V_DICT (key, value, ...) */
        int global;                                     /* V_GLOBAL: index in GLOBALS */
        struct { int dtype; const char *key; int64_t numel; } sto; /* V_STORAGE */
        struct {
            value *sto;
            int64_t offset;
            int ndim;                                   /* may exceed AN_TENSOR_MAX_DIMS (refused later) */
            int64_t size[AN_TENSOR_MAX_DIMS], stride[AN_TENSOR_MAX_DIMS];
        } t;                                            /* V_TENSOR */
    } u;
};

typedef struct {
    const char *path;
    const unsigned char *p;
    size_t n, pos;
    value **stack;
    size_t sp, stack_cap;
    size_t marks[PKL_MAX_MARKS];
    int nmarks;
    value **memo;
    size_t memo_cap, memo_len;
    value **all;            /* every value made: freed together, so sharing and cycles are harmless */
    size_t n_all, all_cap;
    size_t bytes;           /* allocated for values so far */
} vm;

/* a name as it may appear in a message: printable, short */
static const char *shown(const char *s, size_t len, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < size; i++)
        buf[o++] = (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
    if (o + 4 >= size && len > o) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = 0;
    return buf;
}

static an_status bad(vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static an_status bad(vm *m, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return an_fail(AN_ERR_FORMAT, "'%s': data.pkl, byte %zu: %s", m->path, m->pos, msg);
}

static an_status oom(const char *path)
{
    return an_fail(AN_ERR_MEMORY, "'%s': out of memory while reading the state dict", path);
}

/* a pickle of many tiny values could otherwise cost ~100x its size */
static int charge(vm *m, size_t bytes)
{
    m->bytes += bytes;
    return m->bytes <= PKL_MAX_MEMORY;
}

static an_status vm_oom(vm *m)
{
    if (m->bytes > PKL_MAX_MEMORY)
        return an_fail(AN_ERR_MEMORY, "'%s': data.pkl needs more than %zu MiB to read; refused (a state dict's "
                       "needs about 1 KiB a tensor)", m->path, PKL_MAX_MEMORY >> 20);
    return oom(m->path);
}

static int grow(vm *m, void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    if (!charge(m, (c - *cap) * elem)) return 0;
    void *p = realloc(*(void **)arr, c * elem);
    if (!p) return 0;
    memset((char *)p + *cap * elem, 0, (c - *cap) * elem);
    *(void **)arr = p;
    *cap = c;
    return 1;
}

static value *new_value(vm *m, vkind kind)
{
    if (!grow(m, &m->all, &m->all_cap, m->n_all + 1, sizeof *m->all) || !charge(m, sizeof(value) + 16)) return NULL;
    value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    m->all[m->n_all++] = v;
    return v;
}

static void vm_free(vm *m)
{
    for (size_t i = 0; i < m->n_all; i++) {
        value *v = m->all[i];
        if (v->kind == V_STR) free(v->u.str.s);
        if (v->kind == V_TUPLE || v->kind == V_LIST || v->kind == V_DICT) free(v->u.seq.v);
        free(v);
    }
    free(m->all);
    free(m->stack);
    free(m->memo);
}

static int seq_push(vm *m, value *s, value *x)
{
    if (!grow(m, &s->u.seq.v, &s->u.seq.cap, s->u.seq.n + 1, sizeof(value *))) return 0;
    s->u.seq.v[s->u.seq.n++] = x;
    return 1;
}

/* ------------------------------------------------------------- the machine */

static size_t floor_of(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static an_status push(vm *m, value *v)
{
    if (!v) return vm_oom(m);
    if (m->sp >= PKL_MAX_STACK) return bad(m, "the stack grows past %d items", PKL_MAX_STACK);
    if (!grow(m, &m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack)) return vm_oom(m);
    m->stack[m->sp++] = v;
    return AN_OK;
}

/* n items above the current mark, or an error */
static int have(vm *m, size_t n) { return m->sp - floor_of(m) >= n; }

static int need(vm *m, size_t n) { return m->n - m->pos >= n; }

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

static an_status make_str(vm *m, uint64_t len)
{
    if (len > m->n - m->pos) return bad(m, "a string of %llu bytes runs past the end", (unsigned long long)len);
    value *v = new_value(m, V_STR);
    if (!v || !charge(m, len + 1) || !(v->u.str.s = malloc(len + 1))) return vm_oom(m);
    memcpy(v->u.str.s, m->p + m->pos, len);
    v->u.str.s[len] = 0;
    v->u.str.len = len;
    m->pos += len;
    return push(m, v);
}

static an_status make_int(vm *m, int64_t x)
{
    value *v = new_value(m, V_INT);
    if (v) v->u.i = x;
    return push(m, v);
}

static an_status make_global(vm *m, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    for (int g = 0; g < N_GLOBALS; g++)
        if (strlen(GLOBALS[g].module) == mlen && !memcmp(GLOBALS[g].module, mod, mlen) &&
            strlen(GLOBALS[g].name) == nlen && !memcmp(GLOBALS[g].name, name, nlen)) {
            value *v = new_value(m, V_GLOBAL);
            if (v) v->u.global = g;
            return push(m, v);
        }
    char a[100], b[100];
    return bad(m, "refers to '%s.%s', which a state dict does not use; refused (nothing in the file is run)",
               shown(mod, mlen, a, sizeof a), shown(name, nlen, b, sizeof b));
}

/* a "module\n" or "name\n" line of GLOBAL */
static int line(vm *m, const char **s, size_t *len)
{
    size_t avail = m->n - m->pos;
    if (avail > MAX_NAME) avail = MAX_NAME;
    const unsigned char *nl = memchr(m->p + m->pos, '\n', avail);
    if (!nl) return 0;
    *s = (const char *)m->p + m->pos;
    *len = (size_t)(nl - (m->p + m->pos));
    m->pos += *len + 1;
    return 1;
}

static int is_int(const value *v) { return v->kind == V_INT || v->kind == V_BOOL; }

/* a tuple of non-negative ints into out[] (the first AN_TENSOR_MAX_DIMS) */
static int int_tuple(const value *v, int64_t *out, int *n)
{
    if (v->kind != V_TUPLE) return 0;
    for (size_t i = 0; i < v->u.seq.n; i++) {
        const value *x = v->u.seq.v[i];
        if (!is_int(x) || x->u.i < 0) return 0;
        if (i < AN_TENSOR_MAX_DIMS) out[i] = x->u.i;
    }
    *n = (int)v->u.seq.n;
    return 1;
}

/* REDUCE: the callable is a whitelisted global; build its record */
static an_status reduce(vm *m, value *fn, value *args)
{
    if (fn->kind != V_GLOBAL) return bad(m, "REDUCE of %s, not of a known function", KIND_NAME[fn->kind]);
    if (args->kind != V_TUPLE) return bad(m, "REDUCE with %s, not a tuple, of arguments", KIND_NAME[args->kind]);
    value **a = args->u.seq.v;
    size_t n = args->u.seq.n;
    const char *name = GLOBALS[fn->u.global].name;
    switch (GLOBALS[fn->u.global].what) {
    case G_DICT:
        if (n) return bad(m, "OrderedDict is called with arguments (a state dict's never is)");
        return push(m, new_value(m, V_DICT));
    case G_PARAM: /* a Parameter is its tensor here */
        if (n < 1 || a[0]->kind != V_TENSOR) return bad(m, "%s without a tensor", name);
        return push(m, a[0]);
    case G_TENSOR: {
        if (n != 6 && n != 7) return bad(m, "%s with %zu arguments, not 6 or 7", name, n);
        if (a[0]->kind != V_STORAGE) return bad(m, "%s of %s, not a storage", name, KIND_NAME[a[0]->kind]);
        value *t = new_value(m, V_TENSOR);
        if (!t) return vm_oom(m);
        int nd = 0, ns = 0;
        if (!is_int(a[1]) || a[1]->u.i < 0) return bad(m, "a tensor's storage offset is not an int >= 0");
        if (!int_tuple(a[2], t->u.t.size, &nd)) return bad(m, "a tensor's size is not a tuple of ints >= 0");
        if (!int_tuple(a[3], t->u.t.stride, &ns)) return bad(m, "a tensor's stride is not a tuple of ints >= 0");
        if (nd != ns) return bad(m, "a tensor has %d sizes but %d strides", nd, ns);
        t->u.t.sto = a[0];
        t->u.t.offset = a[1]->u.i;
        t->u.t.ndim = nd;
        return push(m, t);
    }
    default:
        return bad(m, "REDUCE of 'torch.%s' (a storage class is never called in a state dict)", name);
    }
}

/* BINPERSID: ('storage', <storage class>, key, location, numel) */
static an_status persid(vm *m, value *pid)
{
    value **a = pid->u.seq.v;
    if (pid->kind != V_TUPLE || pid->u.seq.n != 5 || a[0]->kind != V_STR || strcmp(a[0]->u.str.s, "storage") ||
        a[1]->kind != V_GLOBAL || GLOBALS[a[1]->u.global].what != G_STORAGE || a[2]->kind != V_STR ||
        a[3]->kind != V_STR || !is_int(a[4]) || a[4]->u.i < 0)
        return bad(m, "a persistent id that is not ('storage', <storage class>, key, location, numel)");
    const char *key = a[2]->u.str.s;
    size_t klen = a[2]->u.str.len;
    if (klen == 0 || klen > 256 || strlen(key) != klen || strchr(key, '/'))
        return bad(m, "a storage key that is not a plain name");
    value *s = new_value(m, V_STORAGE);
    if (!s) return vm_oom(m);
    s->u.sto.dtype = GLOBALS[a[1]->u.global].dtype;
    s->u.sto.key = key;
    s->u.sto.numel = a[4]->u.i;
    return push(m, s);
}

static an_status memo_put(vm *m, uint64_t idx)
{
    if (!m->sp) return bad(m, "memo store with an empty stack");
    if (idx >= PKL_MAX_MEMO || idx > m->pos) return bad(m, "memo index %llu out of range", (unsigned long long)idx);
    if (!grow(m, &m->memo, &m->memo_cap, idx + 1, sizeof *m->memo)) return vm_oom(m);
    if (!m->memo[idx]) m->memo_len++;
    m->memo[idx] = m->stack[m->sp - 1];
    return AN_OK;
}

static an_status memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx]) return bad(m, "memo index %llu was never stored", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

/* pops the items above the top mark into a new tuple (TUPLE) */
static an_status tuple_from(vm *m, size_t from)
{
    value *t = new_value(m, V_TUPLE);
    size_t n = m->sp - from;
    if (!t || !charge(m, n * sizeof(value *)) || !(t->u.seq.v = malloc((n ? n : 1) * sizeof(value *))))
        return vm_oom(m);
    if (n) memcpy(t->u.seq.v, m->stack + from, n * sizeof(value *));
    t->u.seq.n = t->u.seq.cap = n;
    m->sp = from;
    return push(m, t);
}

static an_status pop_mark(vm *m, size_t *at)
{
    if (!m->nmarks) return bad(m, "an opcode needs a MARK but none is set");
    *at = m->marks[--m->nmarks];
    return AN_OK;
}

/* runs the pickle to STOP; *root: the value it returns (owned by m) */
static an_status run(vm *m, value **root)
{
    an_status st = AN_OK;
    for (;;) {
        if (st != AN_OK) return st;
        if (m->pos >= m->n) return bad(m, "the pickle ends before its STOP opcode");
        unsigned char op = m->p[m->pos++];
        value *v, *k;
        size_t at = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if (!need(m, 1)) return bad(m, "truncated PROTO");
            if (m->p[m->pos] < 2 || m->p[m->pos] > 5) return bad(m, "pickle protocol %d is not 2..5", m->p[m->pos]);
            m->pos++;
            break;
        case 0x95: /* FRAME: a length hint only */
            if (!need(m, 8) || le(m->p + m->pos, 8) > m->n - m->pos - 8) return bad(m, "a FRAME runs past the end");
            m->pos += 8;
            break;
        case '}': st = push(m, new_value(m, V_DICT)); break;
        case ']': st = push(m, new_value(m, V_LIST)); break;
        case ')': st = tuple_from(m, m->sp); break;
        case '(':
            if (m->nmarks >= PKL_MAX_MARKS) return bad(m, "MARKs nested deeper than %d", PKL_MAX_MARKS);
            m->marks[m->nmarks++] = m->sp;
            break;
        case 't':
            if ((st = pop_mark(m, &at)) == AN_OK) st = tuple_from(m, at);
            break;
        case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
            if (!have(m, op - 0x84u)) return bad(m, "TUPLE%d with too few items", op - 0x84);
            st = tuple_from(m, m->sp - (op - 0x84u));
            break;
        case 'q':
            if (!need(m, 1)) return bad(m, "truncated BINPUT");
            st = memo_put(m, m->p[m->pos++]);
            break;
        case 'r':
            if (!need(m, 4)) return bad(m, "truncated LONG_BINPUT");
            m->pos += 4;
            st = memo_put(m, le(m->p + m->pos - 4, 4));
            break;
        case 0x94: st = memo_put(m, m->memo_len); break; /* MEMOIZE */
        case 'h':
            if (!need(m, 1)) return bad(m, "truncated BINGET");
            st = memo_get(m, m->p[m->pos++]);
            break;
        case 'j':
            if (!need(m, 4)) return bad(m, "truncated LONG_BINGET");
            m->pos += 4;
            st = memo_get(m, le(m->p + m->pos - 4, 4));
            break;
        case 'J':
            if (!need(m, 4)) return bad(m, "truncated BININT");
            m->pos += 4;
            st = make_int(m, (int32_t)(uint32_t)le(m->p + m->pos - 4, 4));
            break;
        case 'K':
            if (!need(m, 1)) return bad(m, "truncated BININT1");
            st = make_int(m, m->p[m->pos++]);
            break;
        case 'M':
            if (!need(m, 2)) return bad(m, "truncated BININT2");
            m->pos += 2;
            st = make_int(m, (int64_t)le(m->p + m->pos - 2, 2));
            break;
        case 0x8a: { /* LONG1: n bytes, two's complement */
            if (!need(m, 1)) return bad(m, "truncated LONG1");
            int nb = m->p[m->pos++];
            if (nb > 8) return bad(m, "an integer of %d bytes (more than 64 bits)", nb);
            if (!need(m, nb)) return bad(m, "truncated LONG1");
            uint64_t x = le(m->p + m->pos, nb);
            if (nb > 0 && nb < 8 && (m->p[m->pos + nb - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * nb);
            m->pos += nb;
            st = make_int(m, (int64_t)x);
            break;
        }
        case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
            if ((v = new_value(m, V_BOOL))) v->u.i = op == 0x88;
            st = push(m, v);
            break;
        case 'N': st = push(m, new_value(m, V_NONE)); break;
        case 'X': case 'B': /* BINUNICODE, BINBYTES */
            if (!need(m, 4)) return bad(m, "truncated string length");
            m->pos += 4;
            st = make_str(m, le(m->p + m->pos - 4, 4));
            break;
        case 0x8c: case 'U': case 'C': /* SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES */
            if (!need(m, 1)) return bad(m, "truncated string length");
            m->pos++;
            st = make_str(m, m->p[m->pos - 1]);
            break;
        case 0x8d: case 0x8e: /* BINUNICODE8, BINBYTES8 */
            if (!need(m, 8)) return bad(m, "truncated string length");
            m->pos += 8;
            st = make_str(m, le(m->p + m->pos - 8, 8));
            break;
        case 'T': { /* BINSTRING: signed length */
            if (!need(m, 4)) return bad(m, "truncated string length");
            int32_t len = (int32_t)(uint32_t)le(m->p + m->pos, 4);
            m->pos += 4;
            if (len < 0) return bad(m, "a string of negative length");
            st = make_str(m, (uint64_t)len);
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            if (!need(m, 8)) return bad(m, "truncated BINFLOAT");
            uint64_t b = 0;
            for (int i = 0; i < 8; i++) b = b << 8 | m->p[m->pos++];
            if ((v = new_value(m, V_FLOAT))) memcpy(&v->u.f, &b, sizeof b);
            st = push(m, v);
            break;
        }
        case 'c': {
            const char *mod, *name;
            size_t ml, nl;
            if (!line(m, &mod, &ml) || !line(m, &name, &nl)) return bad(m, "a GLOBAL without its two lines");
            st = make_global(m, mod, ml, name, nl);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if (!have(m, 2)) return bad(m, "STACK_GLOBAL with too few items");
            v = m->stack[--m->sp];
            k = m->stack[--m->sp];
            if (v->kind != V_STR || k->kind != V_STR) return bad(m, "STACK_GLOBAL of non-strings");
            st = make_global(m, k->u.str.s, k->u.str.len, v->u.str.s, v->u.str.len);
            break;
        case 'R':
            if (!have(m, 2)) return bad(m, "REDUCE with too few items");
            v = m->stack[--m->sp];
            k = m->stack[--m->sp];
            st = reduce(m, k, v);
            break;
        case 'b': /* BUILD: an OrderedDict's _metadata, a tensor's state: not needed */
            if (!have(m, 2)) return bad(m, "BUILD with too few items");
            m->sp--;
            k = m->stack[m->sp - 1];
            if (k->kind != V_DICT && k->kind != V_TENSOR) return bad(m, "BUILD of %s", KIND_NAME[k->kind]);
            break;
        case 's':
            if (!have(m, 3)) return bad(m, "SETITEM with too few items");
            k = m->stack[m->sp - 3];
            if (k->kind != V_DICT) return bad(m, "SETITEM on %s, not a dict", KIND_NAME[k->kind]);
            if (!seq_push(m, k, m->stack[m->sp - 2]) || !seq_push(m, k, m->stack[m->sp - 1])) return vm_oom(m);
            m->sp -= 2;
            break;
        case 'u': case 'e': /* SETITEMS, APPENDS */
            if ((st = pop_mark(m, &at)) != AN_OK) break;
            if (at == 0 || at - 1 < floor_of(m))
                return bad(m, "%s without its container", op == 'u' ? "SETITEMS" : "APPENDS");
            k = m->stack[at - 1];
            if (k->kind != (op == 'u' ? V_DICT : V_LIST))
                return bad(m, "%s on %s", op == 'u' ? "SETITEMS" : "APPENDS", KIND_NAME[k->kind]);
            if (op == 'u' && (m->sp - at) % 2) return bad(m, "SETITEMS with an odd number of items");
            for (size_t i = at; i < m->sp; i++)
                if (!seq_push(m, k, m->stack[i])) return vm_oom(m);
            m->sp = at;
            break;
        case 'a':
            if (!have(m, 2)) return bad(m, "APPEND with too few items");
            k = m->stack[m->sp - 2];
            if (k->kind != V_LIST) return bad(m, "APPEND on %s, not a list", KIND_NAME[k->kind]);
            if (!seq_push(m, k, m->stack[--m->sp])) return vm_oom(m);
            break;
        case 'Q':
            if (!have(m, 1)) return bad(m, "BINPERSID with an empty stack");
            st = persid(m, m->stack[--m->sp]);
            break;
        case '0':
            if (!have(m, 1)) return bad(m, "POP of an empty stack");
            m->sp--;
            break;
        case '1':
            if ((st = pop_mark(m, &at)) == AN_OK) m->sp = at;
            break;
        case '2':
            if (!have(m, 1)) return bad(m, "DUP of an empty stack");
            st = push(m, m->stack[m->sp - 1]);
            break;
        case '.':
            if (!have(m, 1)) return bad(m, "STOP with an empty stack");
            *root = m->stack[m->sp - 1];
            return AN_OK;
        default:
            return bad(m, "opcode 0x%02x is not one a state dict uses; refused", op);
        }
    }
}

/* ------------------------------------------------------------- the archive */

typedef struct {
    const char *path;
    zip_t *z;
    off_t file_size;
    char prefix[MAX_NAME + 1];
    int with_data;          /* 0: shapes only, the storages' sizes checked, not read */
} archive;

static an_status zip_bad(const archive *a, const char *entry, const char *what)
{
    return an_fail(AN_ERR_FORMAT, "'%s': entry '%s': %s", a->path, entry, what);
}

/* entry idx's sizes (into *sb; its shown name into en[200]), checked: its
 * size must be `want` (or at most `cap` when want is UINT64_MAX), and both
 * sizes fit the file's own length */
static an_status stat_entry(const archive *a, zip_int64_t idx, uint64_t want, uint64_t cap, char *en,
                            zip_stat_t *sb_out)
{
    const char *name = zip_get_name(a->z, (zip_uint64_t)idx, ZIP_FL_ENC_RAW);
    shown(name ? name : "?", name ? strlen(name) : 1, en, 200);
    zip_stat_t sb;
    zip_stat_init(&sb);
    uint64_t flags = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
    if (zip_stat_index(a->z, (zip_uint64_t)idx, 0, &sb) != 0 || (sb.valid & flags) != flags)
        return zip_bad(a, en, "cannot read its size");
    char msg[200];
    if (sb.comp_size > (uint64_t)a->file_size) return zip_bad(a, en, "is longer than the file");
    if (sb.comp_method == ZIP_CM_STORE) {
        if (sb.size != sb.comp_size) return zip_bad(a, en, "stored, but its two sizes differ");
    } else if (sb.comp_method == ZIP_CM_DEFLATE) {
        if (sb.size / DEFLATE_MAX_RATIO > sb.comp_size) return zip_bad(a, en, "claims more bytes than its data can hold");
    } else {
        snprintf(msg, sizeof msg, "compressed with method %d (torch stores entries; deflate is read too)",
                 (int)sb.comp_method);
        return zip_bad(a, en, msg);
    }
    if (want != UINT64_MAX && sb.size != want) {
        snprintf(msg, sizeof msg, "holds %llu bytes where %llu are expected", (unsigned long long)sb.size,
                 (unsigned long long)want);
        return zip_bad(a, en, msg);
    }
    if (want == UINT64_MAX && sb.size > cap) {
        snprintf(msg, sizeof msg, "is %llu bytes, more than the %llu read", (unsigned long long)sb.size,
                 (unsigned long long)cap);
        return zip_bad(a, en, msg);
    }
    *sb_out = sb;
    return AN_OK;
}

/* the whole entry idx (its size checked by stat_entry before anything is
 * allocated) into a new buffer */
static an_status read_entry(const archive *a, zip_int64_t idx, uint64_t want, uint64_t cap, unsigned char **out,
                            uint64_t *got_size)
{
    char en[200], msg[200];
    zip_stat_t sb;
    an_status st = stat_entry(a, idx, want, cap, en, &sb);
    if (st != AN_OK) return st;
    unsigned char *buf = malloc(sb.size ? sb.size : 1);
    if (!buf) return oom(a->path);
    zip_file_t *f = zip_fopen_index(a->z, (zip_uint64_t)idx, 0);
    if (!f) {
        snprintf(msg, sizeof msg, "cannot be opened (libzip: %s)", zip_strerror(a->z));
        free(buf);
        return zip_bad(a, en, msg);
    }
    uint64_t got = 0;
    zip_int64_t r = 1;
    while (got < sb.size && (r = zip_fread(f, buf + got, sb.size - got)) > 0) got += (uint64_t)r;
    unsigned char extra;
    if (got == sb.size) r = zip_fread(f, &extra, 1); /* reaches the end: libzip checks the CRC there */
    if (r != 0 || got != sb.size) {
        if (r < 0) snprintf(msg, sizeof msg, "cannot be read (libzip: %s)", zip_file_strerror(f));
        else snprintf(msg, sizeof msg, "has %s bytes than its size, %llu", got < sb.size ? "fewer" : "more",
                      (unsigned long long)sb.size);
        zip_fclose(f);
        free(buf);
        return zip_bad(a, en, msg);
    }
    zip_fclose(f);
    *out = buf;
    *got_size = sb.size;
    return AN_OK;
}

/* <prefix>/data.pkl: the one entry "X/data.pkl" with X a single folder */
static an_status find_pickle(archive *a, zip_int64_t *idx)
{
    zip_int64_t n = zip_get_num_entries(a->z, 0), found = -1;
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(a->z, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        size_t len = name ? strlen(name) : 0;
        if (len < 10 || len > MAX_NAME || strcmp(name + len - 9, "/data.pkl") || memchr(name, '/', len - 9)) continue;
        if (found >= 0)
            return an_fail(AN_ERR_FORMAT, "'%s' has more than one top folder with a data.pkl", a->path);
        found = i;
        memcpy(a->prefix, name, len - 9);
        a->prefix[len - 9] = 0;
    }
    if (found < 0)
        return an_fail(AN_ERR_FORMAT, "'%s' is a zip archive but no torch.save file: it has no <folder>/data.pkl",
                       a->path);
    *idx = found;
    return AN_OK;
}

/* torch writes "little" or "big" in <prefix>/byteorder (since 1.10; older: little) */
static an_status check_byteorder(const archive *a)
{
    char name[MAX_NAME + 16];
    snprintf(name, sizeof name, "%s/byteorder", a->prefix);
    zip_int64_t i = zip_name_locate(a->z, name, ZIP_FL_ENC_RAW);
    if (i < 0) return AN_OK;
    unsigned char *b = NULL;
    uint64_t n = 0;
    an_status st = read_entry(a, i, UINT64_MAX, 16, &b, &n);
    if (st != AN_OK) return st;
    int little = n == 6 && !memcmp(b, "little", 6), big = n == 3 && !memcmp(b, "big", 3);
    free(b);
    if (big) return an_fail(AN_ERR_FORMAT, "'%s' holds big-endian data (its byteorder says \"big\"); "
                            "re-save it on a little-endian machine", a->path);
    if (!little) return an_fail(AN_ERR_FORMAT, "'%s': its byteorder entry is neither \"little\" nor \"big\"", a->path);
    return AN_OK;
}

/* ------------------------------------------------------------- tensors */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (e == 0x1f) bits = sign | 0x7f800000u | man << 13;   /* inf, nan */
    else if (e) bits = sign | (e + 112) << 23 | man << 13;
    else if (!man) bits = sign;
    else { /* subnormal half: a normal float */
        e = 113;
        while (!(man & 0x400)) man <<= 1, e--;
        bits = sign | e << 23 | (man & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* a storage's little-endian bytes as floats */
static void convert(int dtype, const unsigned char *b, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        uint64_t d;
        double x;
        switch (dtype) {
        case DT_F32: u = (uint32_t)le(b + 4 * i, 4); memcpy(&out[i], &u, 4); break;
        case DT_F64: d = le(b + 8 * i, 8); memcpy(&x, &d, 8); out[i] = (float)x; break;
        case DT_F16: out[i] = half_to_float((uint16_t)le(b + 2 * i, 2)); break;
        default: u = (uint32_t)le(b + 2 * i, 2) << 16; memcpy(&out[i], &u, 4); break; /* bfloat16 */
        }
    }
}

typedef struct {
    const char *name;
    const value *t;
    int out;        /* index in the output set */
} item;

static int by_name(const void *x, const void *y) { return strcmp(((const item *)x)->name, ((const item *)y)->name); }
static int by_key(const void *x, const void *y)
{
    const item *a = x, *b = y;
    int c = strcmp(a->t->u.t.sto->u.sto.key, b->t->u.t.sto->u.sto.key);
    return c ? c : a->out - b->out;
}

/* the tensor's shape, checked: elements inside its storage, count within the limit */
static an_status check_shape(const archive *a, const item *it, an_tensor *t, size_t *budget)
{
    char nm[100];
    shown(it->name, strlen(it->name), nm, sizeof nm);
    const value *v = it->t;
    if (v->u.t.ndim > AN_TENSOR_MAX_DIMS)
        return an_fail(AN_ERR_FORMAT, "'%s': tensor '%s' has %d dimensions; at most %d are read", a->path, nm,
                       v->u.t.ndim, AN_TENSOR_MAX_DIMS);
    int64_t numel = 1, extent = v->u.t.offset, snumel = v->u.t.sto->u.sto.numel;
    t->ndim = v->u.t.ndim;
    for (int d = 0; d < t->ndim; d++)
        if (!(t->shape[d] = v->u.t.size[d])) numel = 0; /* empty: reads nothing */
    for (int d = 0; d < t->ndim && numel; d++) {
        int64_t s = v->u.t.size[d], ext;
        if (numel > (int64_t)(*budget / (size_t)s))
            return an_fail(AN_ERR_MEMORY, "'%s': tensor '%s' would take the file past the reader's limit of %zu "
                           "floats", a->path, nm, an_torch_limit_floats);
        numel *= s;
        if (__builtin_mul_overflow(s - 1, v->u.t.stride[d], &ext) || __builtin_add_overflow(extent, ext, &extent))
            extent = INT64_MAX;
    }
    if (numel && extent >= snumel)
        return an_fail(AN_ERR_FORMAT, "'%s': tensor '%s' reads past its storage (element %lld of a storage of %lld)",
                       a->path, nm, (long long)extent, (long long)snumel);
    *budget -= (size_t)numel;
    return AN_OK;
}

static void gather(const value *v, const float *src, float *dst)
{
    int64_t sz[4] = {1, 1, 1, 1}, sd[4] = {0, 0, 0, 0};
    int nd = v->u.t.ndim;
    for (int d = 0; d < nd; d++) sz[4 - nd + d] = v->u.t.size[d], sd[4 - nd + d] = v->u.t.stride[d];
    size_t o = 0;
    for (int64_t i = 0; i < sz[0]; i++)
        for (int64_t j = 0; j < sz[1]; j++)
            for (int64_t k = 0; k < sz[2]; k++) {
                const float *row = src + v->u.t.offset + i * sd[0] + j * sd[1] + k * sd[2];
                for (int64_t l = 0; l < sz[3]; l++) dst[o++] = row[l * sd[3]];
            }
}

/* one storage, read once, into every tensor of the group items[0..n) */
static an_status fill_group(const archive *a, item *items, size_t n, an_tensor_set *out)
{
    const value *s = items[0].t->u.t.sto;
    char key[300], ename[MAX_NAME + 300];
    shown(s->u.sto.key, strlen(s->u.sto.key), key, sizeof key);
    for (size_t i = 1; i < n; i++) {
        const value *s2 = items[i].t->u.t.sto;
        if (s2->u.sto.dtype != s->u.sto.dtype || s2->u.sto.numel != s->u.sto.numel)
            return an_fail(AN_ERR_FORMAT, "'%s': storage '%s' is declared with two different types or sizes",
                           a->path, key);
    }
    snprintf(ename, sizeof ename, "%s/data/%s", a->prefix, s->u.sto.key);
    zip_int64_t idx = zip_name_locate(a->z, ename, ZIP_FL_ENC_RAW);
    if (idx < 0) {
        char nm[100];
        return an_fail(AN_ERR_FORMAT, "'%s' has no entry 'data/%s' for the storage of tensor '%s'", a->path, key,
                       shown(items[0].name, strlen(items[0].name), nm, sizeof nm));
    }
    int64_t numel = s->u.sto.numel, es = ELEM_SIZE[s->u.sto.dtype];
    if ((uint64_t)numel > (uint64_t)a->file_size * DEFLATE_MAX_RATIO / (uint64_t)es)
        return an_fail(AN_ERR_FORMAT, "'%s': storage '%s' claims %lld elements, more than the file can hold",
                       a->path, key, (long long)numel);
    if ((uint64_t)numel > an_torch_limit_floats)
        return an_fail(AN_ERR_MEMORY, "'%s': storage '%s' has %lld elements, more than the reader's limit",
                       a->path, key, (long long)numel);
    unsigned char *raw = NULL;
    uint64_t got = 0;
    char en[200];
    zip_stat_t sb;
    an_status st = a->with_data ? read_entry(a, idx, (uint64_t)(numel * es), 0, &raw, &got)
                                : stat_entry(a, idx, (uint64_t)(numel * es), 0, en, &sb);
    if (st != AN_OK) {
        char why[400];
        snprintf(why, sizeof why, "%s", an_error_message());
        return an_fail(st, "%s (storage '%s' of %lld elements of %lld bytes)", why, key, (long long)numel,
                       (long long)es);
    }
    if (!a->with_data) return AN_OK;
    float *f = malloc((size_t)(numel ? numel : 1) * sizeof *f);
    if (!f) {
        free(raw);
        return oom(a->path);
    }
    convert(s->u.sto.dtype, raw, numel, f);
    free(raw);
    for (size_t i = 0; i < n; i++) {
        an_tensor *t = &out->items[items[i].out];
        size_t cnt = (size_t)an_tensor_numel(t);
        if (!(t->data = malloc((cnt ? cnt : 1) * sizeof(float)))) {
            free(f);
            return oom(a->path);
        }
        if (cnt) gather(items[i].t, f, t->data);
    }
    free(f);
    return AN_OK;
}

/* the root dict's float tensors into *out, in the file's order */
static an_status collect(const archive *a, const value *root, an_tensor_set *out)
{
    if (root->kind != V_DICT)
        return an_fail(AN_ERR_FORMAT, "'%s': data.pkl holds %s, not a state dict (a dict of name -> tensor)",
                       a->path, KIND_NAME[root->kind]);
    size_t n = root->u.seq.n / 2, kept = 0;
    item *items = malloc((n ? n : 1) * sizeof *items);
    if (!items) return oom(a->path);
    an_status st = AN_OK;
    char nm[100];
    for (size_t i = 0; i < n && st == AN_OK; i++) {
        const value *k = root->u.seq.v[2 * i], *v = root->u.seq.v[2 * i + 1];
        if (k->kind != V_STR || strlen(k->u.str.s) != k->u.str.len || k->u.str.len == 0)
            st = an_fail(AN_ERR_FORMAT, "'%s': the state dict has a key that is not a name (%s)", a->path,
                         KIND_NAME[k->kind]);
        else if (v->kind != V_TENSOR)
            st = an_fail(AN_ERR_FORMAT, "'%s': entry '%s' of the state dict is not a tensor (%s)", a->path,
                         shown(k->u.str.s, k->u.str.len, nm, sizeof nm), KIND_NAME[v->kind]);
        else if (v->u.t.sto->u.sto.dtype != DT_OTHER) /* others are skipped */
            items[kept] = (item){k->u.str.s, v, (int)kept}, kept++;
    }
    if (st == AN_OK && kept > (size_t)INT32_MAX) st = an_fail(AN_ERR_FORMAT, "'%s': too many tensors", a->path);
    if (st == AN_OK) {
        qsort(items, kept, sizeof *items, by_name);
        for (size_t i = 1; i < kept && st == AN_OK; i++)
            if (!strcmp(items[i].name, items[i - 1].name))
                st = an_fail(AN_ERR_FORMAT, "'%s': tensor '%s' appears twice in the state dict", a->path,
                             shown(items[i].name, strlen(items[i].name), nm, sizeof nm));
    }
    if (st == AN_OK && !(out->items = calloc(kept ? kept : 1, sizeof *out->items))) st = oom(a->path);
    if (st == AN_OK) {
        out->count = (int)kept;
        size_t budget = an_torch_limit_floats;
        for (size_t i = 0; i < kept && st == AN_OK; i++) {
            an_tensor *t = &out->items[items[i].out];
            if (!(t->name = strdup(items[i].name))) st = oom(a->path);
            else st = check_shape(a, &items[i], t, &budget);
        }
    }
    if (st == AN_OK) { /* each storage once, for all the tensors that view it */
        qsort(items, kept, sizeof *items, by_key);
        for (size_t i = 0, j; i < kept && st == AN_OK; i = j) {
            for (j = i + 1; j < kept && !strcmp(items[j].t->u.t.sto->u.sto.key, items[i].t->u.t.sto->u.sto.key); j++)
                ;
            st = fill_group(a, items + i, j - i, out);
        }
    }
    free(items);
    return st;
}

/* ------------------------------------------------------------- entry point */

static an_status torch_read(const char *path, an_tensor_set *out, int with_data);

an_status an_torch_read(const char *path, an_tensor_set *out) { return torch_read(path, out, 1); }
an_status an_torch_read_shapes(const char *path, an_tensor_set *out) { return torch_read(path, out, 0); }

static an_status torch_read(const char *path, an_tensor_set *out, int with_data)
{
    if (!out) return an_fail(AN_ERR_ARGUMENT, "an_torch_read: no output set");
    out->items = NULL;
    out->count = 0;
    if (!path) return an_fail(AN_ERR_ARGUMENT, "an_torch_read: no path");
    int fd;
    long long file_size;
    an_status opened = an_open_regular(path, "weights file", &fd, &file_size);
    if (opened != AN_OK) return opened;
    unsigned char head[4] = {0};
    ssize_t got = pread(fd, head, sizeof head, 0);
    if (got < 0) {
        int e = errno;
        close(fd);
        return an_fail(AN_ERR_IO, "cannot read '%s': %s", path, strerror(e));
    }
    if (got >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) {
        close(fd);
        return an_fail(AN_ERR_FORMAT, "'%s' is a legacy (pre-1.6) torch.save file; re-save it with "
                       "torch.save(torch.load(f), f2) in PyTorch >= 1.6", path);
    }
    if (got < 4 || memcmp(head, "PK\x03\x04", 4)) {
        close(fd);
        return an_fail(AN_ERR_FORMAT, "'%s' is not a torch.save file (no zip archive signature)", path);
    }
    int zerr = 0;
    archive a = {.path = path, .file_size = file_size, .with_data = with_data};
    a.z = zip_fdopen(fd, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (!a.z) { /* zip_fdopen closes fd only on success */
        close(fd);
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        an_status st = an_fail(AN_ERR_FORMAT, "'%s' is not a readable zip archive (libzip: %s)", path,
                               zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    zip_int64_t pk_idx = -1;
    unsigned char *pkl = NULL;
    uint64_t pkl_size = 0;
    value *root = NULL;
    vm m = {.path = path};
    an_status st = find_pickle(&a, &pk_idx);
    if (st == AN_OK) st = check_byteorder(&a);
    if (st == AN_OK) st = read_entry(&a, pk_idx, UINT64_MAX, PKL_MAX_BYTES, &pkl, &pkl_size);
    if (st == AN_OK) {
        m.p = pkl;
        m.n = (size_t)pkl_size;
        st = run(&m, &root);
    }
    if (st == AN_OK) st = collect(&a, root, out);
    vm_free(&m);
    free(pkl);
    zip_discard(a.z);
    if (st != AN_OK) an_tensor_set_free(out);
    return st;
}
