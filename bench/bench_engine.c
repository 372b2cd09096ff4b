/* bench_engine.c: CPU throughput of the engine's AlexNet forward pass.
 *
 * Cases: "features" = an_net_forward(..., AN_CONVPOOL_5, ...) (256x6x6 per
 * image) and "full" = up to AN_SOFTMAX (1000 classes).
 *
 * Measurement policy (the same as bench_torch.py): `--warmup` untimed runs,
 * then timed runs until `--budget` seconds have passed (at least --min-reps,
 * at most --max-reps); the figure is the median over repetitions of
 * images / seconds-per-batch. `foreign` is the share of the machine's CPUs
 * that other processes used during the timed runs (/proc/stat minus this
 * process's rusage): a shared machine shows up there.
 *
 * Usage: bench_engine [--batches 16,64] [--cases features,full] [--threads 2]
 *                     [--budget 4] [--warmup 3] [--min-reps 5] [--max-reps 200]
 *                     [--seed 42] [--layers] [--precision f32|bf16]
 *                     [--arch heuritech|caffe|torchvision]
 * --layers also times the forward pass up to every step and prints the
 * differences (the time of each step, plus any change in the cost of
 * handing the output back in plain layout).
 *
 * Output, one line per result:
 *   engine info backend="cpu (...)" threads=2
 *   engine features batch=16 ips=123.45 reps=20 foreign=0.002
 *   engine_layer batch=16 step=conv_1 ms=... cum_ms=...
 *   engine memory batches=16,64 peak_rss_mb=... cpu_s=... wall_s=...
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "alexnet.h"
#include "benchutil.h"

/* CPU seconds all processes spent busy (user+nice+system+irq+softirq), from /proc/stat */
static double machine_busy_s(void)
{
    unsigned long long v[7] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                     &v[5], &v[6]);
    fclose(f);
    if (got != 7) return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / sysconf(_SC_CLK_TCK);
}

static double own_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + 1e-6 * ru.ru_utime.tv_usec + ru.ru_stime.tv_sec + 1e-6 * ru.ru_stime.tv_usec;
}

/* Share of the machine's CPUs that other processes used between two snapshots. */
typedef struct { double wall, busy, own; } snapshot;
static snapshot snap(void) { snapshot s = {now(), machine_busy_s(), own_cpu_s()}; return s; }
static double foreign_load(snapshot a, snapshot b)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (a.busy < 0 || b.busy < 0 || ncpu < 1 || b.wall <= a.wall) return -1;
    double f = ((b.busy - a.busy) - (b.own - a.own)) / (ncpu * (b.wall - a.wall));
    return f < 0 ? 0 : f;
}

typedef struct {
    int threads, warmup, min_reps, max_reps, layers, bf16;
    an_arch arch;
    double budget;
    uint64_t seed;
    char batches[256], cases[256];
} options;

static int parse(int argc, char **argv, options *o)
{
    o->threads = 2; o->warmup = 3; o->min_reps = 5; o->max_reps = 200; o->layers = 0; o->bf16 = 0;
    o->budget = 4.0; o->seed = 42; o->arch = AN_ARCH_HEURITECH;
    strcpy(o->batches, "16,64");
    strcpy(o->cases, "features,full");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (strcmp(a, "--layers") == 0) o->layers = 1;
        else if (OPT("--precision") && (strcmp(v, "f32") == 0 || strcmp(v, "bf16") == 0)) o->bf16 = v[0] == 'b';
        else if (OPT("--batches")) snprintf(o->batches, sizeof o->batches, "%s", v);
        else if (OPT("--arch") && an_arch_find(v) >= 0) o->arch = (an_arch)an_arch_find(v);
        else if (OPT("--cases")) snprintf(o->cases, sizeof o->cases, "%s", v);
        else if (OPT("--threads")) o->threads = atoi(v);
        else if (OPT("--budget")) o->budget = atof(v);
        else if (OPT("--warmup")) o->warmup = atoi(v);
        else if (OPT("--min-reps")) o->min_reps = atoi(v);
        else if (OPT("--max-reps")) o->max_reps = atoi(v);
        else if (OPT("--seed")) o->seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "usage: bench_engine [--batches 16,64] [--cases features,full] "
                            "[--threads 2] [--budget 4] [--warmup 3] [--min-reps 5] "
                            "[--max-reps 200] [--seed 42] [--layers] [--precision f32|bf16] "
                            "[--arch heuritech|caffe|torchvision]\n");
            return 0;
        }
#undef OPT
    }
    if (o->threads < 1 || o->min_reps < 1 || o->max_reps < o->min_reps || o->max_reps > 100000 ||
        o->warmup < 0 || o->budget < 0) {
        fprintf(stderr, "bench_engine: bad option value\n");
        return 0;
    }
    return 1;
}

/* Median images per second of forward(until) on `n` images; -1 on failure. */
static double measure(an_net *net, const float *x, int n, int until, float *out,
                      const options *o, int *reps_out, double *median_s, double *foreign)
{
    for (int i = 0; i < o->warmup; i++)
        if (an_net_forward(net, x, n, until, out) != AN_OK) return -1;
    double *t = malloc(sizeof(double) * o->max_reps);
    if (!t) return -1;
    int reps = 0;
    snapshot s0 = snap();
    double start = s0.wall;
    while (reps < o->max_reps) {
        double t0 = now();
        if (an_net_forward(net, x, n, until, out) != AN_OK) { free(t); return -1; }
        t[reps++] = now() - t0;
        if (reps >= o->min_reps && now() - start >= o->budget) break;
    }
    if (foreign) *foreign = foreign_load(s0, snap());
    double m = median(t, reps);
    free(t);
    *reps_out = reps;
    if (median_s) *median_s = m;
    return n / m;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse(argc, argv, &o)) return 2;
    double wall0 = now();

    an_set_threads(o.threads);
    if (an_get_threads() != o.threads) {
        fprintf(stderr, "bench_engine: asked for %d threads, the engine uses %d\n", o.threads,
                an_get_threads());
        return 1;
    }
    an_net *net = NULL;
    if (an_net_create_arch(o.arch, 1000, o.seed, &net) != AN_OK) {
        fprintf(stderr, "bench_engine: an_net_create: %s\n", an_error_message());
        return 1;
    }
    if (o.bf16 && an_net_set_precision(net, AN_PRECISION_BF16) != AN_OK) {
        fprintf(stderr, "bench_engine: %s\n", an_error_message());
        return 1;
    }
    printf("engine info backend=\"%s\" threads=%d precision=%s arch=%s\n", an_backend_name(), an_get_threads(),
           o.bf16 ? "bf16" : "f32", an_arch_name(o.arch));
    fflush(stdout);

    int rc = 0;
    char batches[256];
    snprintf(batches, sizeof batches, "%s", o.batches);
    for (char *bs = strtok(batches, ","); bs && !rc; bs = strtok(NULL, ",")) {
        int n = atoi(bs);
        if (n < 1) { fprintf(stderr, "bench_engine: bad batch size '%s'\n", bs); rc = 2; break; }
        size_t in_floats = (size_t)n * AN_INPUT_PIXELS;
        size_t out_floats = (size_t)n * an_output_size(net, AN_CONV_1); /* the largest */
        for (int k = 0; k < AN_N_OUTPUTS; k++) {
            size_t s = (size_t)n * an_output_size(net, k);
            if (s > out_floats) out_floats = s;
        }
        float *x = malloc(sizeof(float) * in_floats), *out = malloc(sizeof(float) * out_floats);
        if (!x || !out) { fprintf(stderr, "bench_engine: out of memory\n"); rc = 1; break; }
        uint64_t st = o.seed * 6364136223846793005ULL + 1442695040888963407ULL;
        for (size_t i = 0; i < in_floats; i++) {   /* pixels uniform in 0..255 */
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            x[i] = (float)((st >> 40) * (255.0 / 16777216.0));
        }

        char cases[256];
        snprintf(cases, sizeof cases, "%s", o.cases);
        char *save = NULL;
        for (char *cs = strtok_r(cases, ",", &save); cs; cs = strtok_r(NULL, ",", &save)) {
            int until;
            if (strcmp(cs, "features") == 0) until = AN_CONVPOOL_5;
            else if (strcmp(cs, "full") == 0) until = AN_SOFTMAX;
            else { fprintf(stderr, "bench_engine: unknown case '%s'\n", cs); rc = 2; break; }
            int reps = 0;
            double foreign = -1;
            double ips = measure(net, x, n, until, out, &o, &reps, NULL, &foreign);
            if (ips < 0) {
                fprintf(stderr, "bench_engine: forward (%s, batch %d): %s\n", cs, n, an_error_message());
                rc = 1;
                break;
            }
            printf("engine %s%s batch=%d ips=%.2f reps=%d foreign=%.3f\n", cs, o.bf16 ? "_bf16" : "", n, ips, reps, foreign);
            fflush(stdout);
        }

        if (o.layers && !rc) {
            /* cumulative time up to each step; shorter budget per step */
            options lo = o;
            lo.budget = o.budget / 4;
            lo.min_reps = o.min_reps < 5 ? o.min_reps : 5;
            double prev = 0;
            for (int k = 0; k < AN_N_OUTPUTS; k++) {
                int reps = 0;
                double m = 0;
                double foreign = -1;
                if (measure(net, x, n, k, out, &lo, &reps, &m, &foreign) < 0) {
                    fprintf(stderr, "bench_engine: forward (until %d, batch %d): %s\n", k, n,
                            an_error_message());
                    rc = 1;
                    break;
                }
                an_output_info info = an_net_output(net, k);
                printf("engine_layer batch=%d step=%s ms=%.3f cum_ms=%.3f reps=%d foreign=%.3f\n", n,
                       info.name ? info.name : "?", 1e3 * (m - prev), 1e3 * m, reps, foreign);
                fflush(stdout);
                prev = m;
            }
        }
        free(x);
        free(out);
    }
    an_net_free(net);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("engine memory batches=%s peak_rss_mb=%.1f cpu_s=%.2f wall_s=%.2f\n", o.batches,
           ru.ru_maxrss / 1024.0,
           ru.ru_utime.tv_sec + 1e-6 * ru.ru_utime.tv_usec + ru.ru_stime.tv_sec +
               1e-6 * ru.ru_stime.tv_usec,
           now() - wall0);
    return rc;
}
