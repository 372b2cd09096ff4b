/* bench_images.c: decode + resize (+ augment) to 3 x 227 x 227 floats with
 * the engine (src/engine/images.h), images per second. Run by
 * bench/bench_images.sh, which also times PIL and torchvision on the same
 * files (bench_images.py) and prints the table.
 *
 *   bench_images DIR [ROUNDS]
 *
 * Cases: the caller's thread alone (an_image_load_scratch in a loop), and the
 * loader with 1 and 2 worker threads (batches of 32, double-buffered: submit
 * k + 1, then wait for k, as a training loop does; an_loader_wait_buffer,
 * and once an_loader_wait, which copies each batch out). Each case is run ROUNDS
 * times (default 5) over every *.jpg in DIR; the fastest round is kept. One
 * JSON line per case: wall seconds, process CPU seconds, images/s and
 * images per CPU-second.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "images.h"

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char **list_jpegs(const char *dir, int *n)
{
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int cap = 0;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".jpg")) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            v = realloc(v, (size_t)cap * sizeof *v);
        }
        size_t m = strlen(dir) + len + 2;
        v[*n] = malloc(m);
        snprintf(v[*n], m, "%s/%s", dir, e->d_name);
        (*n)++;
    }
    closedir(d);
    qsort(v, (size_t)*n, sizeof *v, cmp);
    return v;
}

static void report(const char *c, const char *impl, int n, double w, double cp)
{
    printf("{\"case\": \"%s\", \"impl\": \"%s\", \"images\": %d, \"wall_s\": %.6f, \"cpu_s\": %.6f, "
           "\"per_s\": %.2f, \"per_cpu_s\": %.2f}\n",
           c, impl, n, w, cp, n / w, n / cp);
    fflush(stdout);
}

/* caller's thread alone */
static int run_direct(char **paths, int n, const an_augment *aug, int rounds, double *bw, double *bc)
{
    an_image_scratch s;
    memset(&s, 0, sizeof s);
    an_image_options o;
    an_image_options_init(&o);
    float *dst = malloc(sizeof(float) * AN_INPUT_PIXELS);
    *bw = 1e30;
    for (int r = 0; r < rounds; r++) {
        double w0 = wall(), c0 = cpu();
        for (int i = 0; i < n; i++)
            if (an_image_load_scratch(&s, paths[i], &o, aug, 1, (uint64_t)r, (uint64_t)i, dst, NULL, NULL, NULL, 0)) {
                fprintf(stderr, "%s\n", an_error_message());
                return 0;
            }
        double w = wall() - w0, c = cpu() - c0;
        if (w < *bw) {
            *bw = w;
            *bc = c;
        }
    }
    an_image_scratch_free(&s);
    free(dst);
    return 1;
}

/* the loader: batches of 32, k + 1 submitted before k is collected */
static int run_loader(char **paths, int n, const an_augment *aug, int threads, int copy, int rounds, double *bw,
                      double *bc)
{
    enum { B = 32 };
    an_loader_options lo;
    an_loader_options_init(&lo);
    lo.threads = threads;
    lo.seed = 1;
    if (aug) {
        lo.augment_on = 1;
        lo.augment = *aug;
    }
    an_loader *ld;
    if (an_loader_create((const char *const *)paths, n, &lo, &ld)) {
        fprintf(stderr, "%s\n", an_error_message());
        return 0;
    }
    float *dst = malloc(sizeof(float) * AN_INPUT_PIXELS * B);
    int *idx = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) idx[i] = i;
    int nb = (n + B - 1) / B;
    *bw = 1e30;
    for (int r = 0; r < rounds; r++) {
        double w0 = wall(), c0 = cpu();
        an_loader_submit(ld, idx, n < B ? n : B, (uint64_t)r);
        for (int k = 0; k < nb; k++) {
            if (k + 1 < nb) {
                int off = (k + 1) * B, cnt = n - off < B ? n - off : B;
                an_loader_submit(ld, idx + off, cnt, (uint64_t)r);
            }
            int failed;
            const float *px;
            if ((copy ? an_loader_wait(ld, dst, NULL, &failed) : an_loader_wait_buffer(ld, &px, NULL, &failed)) != AN_OK) {
                fprintf(stderr, "%s\n", an_error_message());
                return 0;
            }
        }
        double w = wall() - w0, c = cpu() - c0;
        if (w < *bw) {
            *bw = w;
            *bc = c;
        }
    }
    an_loader_free(ld);
    free(dst);
    free(idx);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_images DIR [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 5, n;
    char **paths = list_jpegs(argv[1], &n);
    if (!paths || n == 0) {
        fprintf(stderr, "no .jpg files in %s\n", argv[1]);
        return 2;
    }
    /* page cache, and the size of what we read */
    {
        an_jpeg_info info;
        double px = 0;
        for (int i = 0; i < n; i++)
            if (an_jpeg_read_info(paths[i], &info) == AN_OK) px += (double)info.width * info.height;
        fprintf(stderr, "# %d files, mean %.0f pixels\n", n, px / n);
        double w, c;
        run_direct(paths, n, NULL, 1, &w, &c);
    }
    an_augment keras;
    an_augment_keras(&keras, 0.2, 0.2, 1);   /* augment(shear = 0.2, zoom = 0.2, flip = TRUE) */
    for (int a = 0; a < 2; a++) {
        const an_augment *aug = a ? &keras : NULL;
        const char *c = a ? "decode+resize+augment" : "decode+resize";
        double w, cp;
        if (!run_direct(paths, n, aug, rounds, &w, &cp)) return 1;
        report(c, "engine, caller's thread", n, w, cp);
        for (int t = 1; t <= 2; t++) {
            char impl[96];
            snprintf(impl, sizeof impl, "engine loader, %d thread%s", t, t > 1 ? "s" : "");
            if (!run_loader(paths, n, aug, t, 0, rounds, &w, &cp)) return 1;
            report(c, impl, n, w, cp);
        }
        if (!run_loader(paths, n, aug, 2, 1, rounds, &w, &cp)) return 1;
        report(c, "engine loader, 2 threads, an_loader_wait copying out", n, w, cp);
    }
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return 0;
}
