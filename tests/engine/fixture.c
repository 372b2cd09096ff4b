#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rd_u32(FILE *fp, uint32_t *v)
{
    unsigned char b[4];
    if (fread(b, 1, 4, fp) != 4) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

void anfx_free(anfx_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        free(f->t[i].name);
        free(f->t[i].data);
    }
    free(f->t);
    free(f);
}

anfx_file *anfx_load(const char *path)
{
    static const size_t esize[] = {4, 4, 8};
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe != 1) {
        fprintf(stderr, "anfx: big-endian hosts are not supported\n");
        return NULL;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "anfx: cannot open %s\n", path);
        return NULL;
    }
    anfx_file *f = calloc(1, sizeof *f);
    char magic[4];
    uint32_t version, count;
    if (!f || fread(magic, 1, 4, fp) != 4 || memcmp(magic, "ANFX", 4) != 0 ||
        !rd_u32(fp, &version) || version != 1 || !rd_u32(fp, &count) || count > 100000)
        goto bad;
    f->t = calloc(count ? count : 1, sizeof *f->t);
    if (!f->t) goto bad;
    for (uint32_t i = 0; i < count; i++) {
        anfx_tensor *t = &f->t[f->n];
        uint32_t len, dtype, ndim, d;
        if (!rd_u32(fp, &len) || len > 4096) goto bad;
        t->name = malloc(len + 1);
        if (!t->name) goto bad;
        f->n++;         /* owns name from here, freed on failure */
        if (fread(t->name, 1, len, fp) != len) goto bad;
        t->name[len] = '\0';
        if (!rd_u32(fp, &dtype) || dtype > ANFX_F64 || !rd_u32(fp, &ndim) || ndim > ANFX_MAX_DIMS)
            goto bad;
        t->dtype = (int)dtype;
        t->ndim = (int)ndim;
        t->count = 1;
        for (uint32_t k = 0; k < ndim; k++) {
            if (!rd_u32(fp, &d) || d > (1u << 30)) goto bad;
            t->dims[k] = (int)d;
            t->count *= d;
        }
        size_t bytes = t->count * esize[dtype];
        t->data = malloc(bytes ? bytes : 1);
        if (!t->data || fread(t->data, 1, bytes, fp) != bytes) goto bad;
    }
    fclose(fp);
    return f;
bad:
    fprintf(stderr, "anfx: %s is truncated or malformed\n", path);
    fclose(fp);
    anfx_free(f);
    return NULL;
}

const anfx_tensor *anfx_get(const anfx_file *f, const char *name, int dtype)
{
    for (int i = 0; f && i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return f->t[i].dtype == dtype ? &f->t[i] : NULL;
    return NULL;
}
