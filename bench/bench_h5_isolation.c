/* bench_h5_isolation.c: the cost of reading weights files in a child
 * process (weights.c, isolate.c) on the full 1000-class net (244 MB files).
 *
 * Usage: bench_h5_isolation DIR write            writes DIR/iso_own.h5, DIR/iso_keras1.h5
 *        bench_h5_isolation DIR MODE FILE [N]    MODE: load, info (public calls),
 *                                                load-inproc, info-inproc (no child)
 * Prints the median time of N (default 5) calls and the process's peak
 * resident memory (VmHWM) and the largest child's (getrusage): run one mode
 * per process so that each peak is that mode's. The page cache is warm.
 * BENCH_EXTRA_MB=n: the process first fills n MB more (a larger R session,
 * whose page tables each fork copies).
 *
 * Build (from bench/): make bench_h5_isolation
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "alexnet.h"
#include "weights.h"
#include "benchutil.h"

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, an_error_message());
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR write | DIR MODE FILE [N]\n", argv[0]);
        return 2;
    }
    char own[600], keras[600];
    snprintf(own, sizeof own, "%s/iso_own.h5", argv[1]);
    snprintf(keras, sizeof keras, "%s/iso_keras1.h5", argv[1]);
    an_net *net;
    if (an_net_create(1000, 1, &net) != AN_OK) die("create");
    if (strcmp(argv[2], "write") == 0) {
        if (an_weights_save(net, own, NULL) != AN_OK) die("save own");
        if (an_weights_save_keras1(net, keras) != AN_OK) die("save keras1");
        return 0;
    }
    if (argc < 4) return 2;
    const char *mode = argv[2], *path = strcmp(argv[3], "own") == 0 ? own : keras;
    size_t extra = getenv("BENCH_EXTRA_MB") ? (size_t)atol(getenv("BENCH_EXTRA_MB")) << 20 : 0;
    char *ballast = extra ? malloc(extra) : NULL;
    if (ballast) memset(ballast, 1, extra);
    int n = argc > 4 ? atoi(argv[4]) : 5;
    double t[64];
    for (int i = 0; i < n && i < 64; i++) {
        double t0 = now();
        an_status s = AN_OK;
        an_weights_report rep;
        an_weights_file_info info;
        if (strcmp(mode, "load") == 0) s = an_weights_load(net, path, 0, &rep);
#ifdef HAVE_INPROC
        else if (strcmp(mode, "load-inproc") == 0) s = an_weights_load_in_process(net, path, 0, &rep);
        else if (strcmp(mode, "info-inproc") == 0) s = an_weights_info_in_process(path, &info);
#endif
        else if (strcmp(mode, "info") == 0) s = an_weights_info(path, &info);
        else return 2;
        t[i] = now() - t0;
        if (s != AN_OK) die(mode);
        if (strncmp(mode, "info", 4) == 0) an_weights_info_free(&info);
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    printf("%-12s %-6s median %.4f s of %d; peak RSS %.0f MB, largest child %.0f MB\n", mode, argv[3],
           median(t, n), n, peak_rss_mb(), ru.ru_maxrss / 1024.0);
    an_net_free(net);
    free(ballast);
    return 0;
}
