/* bench_array_path: what reading an R array costs the engine, measured so
 * that this machine's drift cannot decide it. A batch run over an array
 * loader (an_loader_forward on doubles in R's layout c(n, 227, 227, 3):
 * what alexnet_features() calls, and R adds nothing measurable around it)
 * and the plain forward pass of floats already in the engine's layout
 * (bench_engine's case) alternate, 15 rounds each; the median of the
 * per-round ratios is printed, with the time the array's conversion takes
 * alone (an_loader_fill, on the same threads).
 *
 * Usage: bench_array_path [--batches 16,32,64] [--precision f32|bf16] [--threads 2] [--rounds 15]
 * Output: array_path batch=B precision=P ratio=R q1=.. q3=.. fill_ms_per_image=F forward_ms_per_image=G */
#include "alexnet.h"
#include "benchutil.h"
#include "images.h"

int main(int argc, char **argv)
{
    char batches[64] = "16,32,64";
    int bf16 = 0, threads = 2, rounds = 15;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batches") == 0) snprintf(batches, sizeof batches, "%s", argv[i + 1]);
        else if (strcmp(argv[i], "--precision") == 0) bf16 = strcmp(argv[i + 1], "bf16") == 0;
        else if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0) rounds = atoi(argv[i + 1]);
        else { fprintf(stderr, "bench_array_path: unknown option %s\n", argv[i]); return 2; }
    }
    if (rounds < 3 || rounds > 1000 || an_set_threads(threads) != AN_OK) { fprintf(stderr, "bench_array_path: bad option\n"); return 2; }
    enum { N = 128, S = 227 };   /* bench_r.R's array */
    const size_t image = (size_t)3 * S * S;
    double *x = malloc(N * image * sizeof *x);
    for (size_t i = 0; x && i < N * image; i++) x[i] = (double)((i * 2654435761u) >> 24);
    an_pixel_array a = {x, AN_PIXELS_F64, N, S, S, 3, 1, N, (ptrdiff_t)N * S, (ptrdiff_t)N * S * S};
    an_net *net = NULL;
    an_loader *ld = NULL;
    an_loader_options opt;
    an_loader_options_init(&opt);
    opt.image.size = S;
    opt.on_error = AN_ON_ERROR_SKIP;
    if (!x || an_net_create(2, 1, &net) != AN_OK || (bf16 && an_net_set_precision(net, AN_PRECISION_BF16) != AN_OK) ||
        an_loader_create_array(&a, &opt, &ld) != AN_OK) {
        fprintf(stderr, "bench_array_path: %s\n", an_error_message());
        return 1;
    }
    const size_t size = an_output_size(net, AN_CONVPOOL_5);
    int idx[N];
    for (int i = 0; i < N; i++) idx[i] = i;
    double *rows = malloc(N * size * sizeof *rows), *ratio = malloc(rounds * sizeof *ratio);
    double *fill = malloc(rounds * sizeof *fill), *fwd = malloc(rounds * sizeof *fwd);
    an_load_result results[N];
    for (char *tok = strtok(batches, ","); tok; tok = strtok(NULL, ",")) {
        int b = atoi(tok);
        if (b < 1 || b > N) continue;
        float *in = malloc((size_t)b * image * sizeof *in), *feat = malloc((size_t)b * size * sizeof *feat);
        for (size_t i = 0; i < (size_t)b * image; i++) in[i] = (float)x[i];
        an_input_norm norm = {{0, 0, 0}, {1, 1, 1}};
        an_net_get_mean(net, norm.mean);
        for (int r = -1; r < rounds; r++) {   /* round -1 warms up */
            an_rows_out out = {rows, 1, N, 0, NULL, 0};
            int failed = 0;
            double t0 = now();
            an_status st = an_loader_forward(ld, net, idx, N, AN_CONVPOOL_5, b, 1, &out, results, &failed);
            double t1 = now();
            for (int i = 0; i < N && st == AN_OK; i += b) st = an_net_forward(net, in, b, AN_CONVPOOL_5, feat);
            double t2 = now();
            for (int i = 0; i + b <= N && st == AN_OK; i += b)
                st = an_loader_fill(ld, idx + i, b, &norm, bf16 ? AN_INPUT_PIXELS_BF16 : AN_INPUT_PIXELS_F32, in);
            double t3 = now();
            if (st != AN_OK) { fprintf(stderr, "bench_array_path: %s\n", an_error_message()); return 1; }
            if (r < 0) continue;
            ratio[r] = (t2 - t1) / (t1 - t0);
            fwd[r] = (t2 - t1) / N * 1e3;
            fill[r] = (t3 - t2) / (N / b * b) * 1e3;
        }
        double med = median(ratio, rounds);
        printf("array_path batch=%d precision=%s ratio=%.3f q1=%.3f q3=%.3f fill_ms_per_image=%.3f "
               "forward_ms_per_image=%.3f\n", b, bf16 ? "bf16" : "f32", med, ratio[rounds / 4],
               ratio[3 * rounds / 4], median(fill, rounds), median(fwd, rounds));
        fflush(stdout);
        free(in);
        free(feat);
    }
    an_loader_free(ld);
    an_net_free(net);
    free(x); free(rows); free(ratio); free(fill); free(fwd);
    return 0;
}
