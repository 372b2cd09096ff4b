/* bench_weights.c: time saving and loading the full 1000-class net
 * (60,965,224 parameters) with src/engine/weights.h, in the package's own
 * format and in the Keras 1 layout of Heuritech's alexnet_weights.h5.
 *
 * Usage: bench_weights [DIR] [REPEATS]   (DIR defaults to $TMPDIR or /tmp)
 * Writes DIR/bench_own.h5 and DIR/bench_keras1.h5 and leaves them for
 * bench_weights.py (h5py reading the same files), then prints one line per
 * timing (median of REPEATS, default 5). The page cache is warm: these are
 * the costs of the formats and the code, not of the disk (save includes an
 * fsync, so it does pay the disk).
 *
 * Build (from bench/):
 *   cc -O2 -fopenmp -std=gnu11 -Wall -Wextra -I../src/engine $(pkg-config --cflags hdf5) \
 *      -o bench_weights bench_weights.c ../src/engine/{weights,net,ops_cpu,rng,error,train}.c \
 *      -ldnnl $(pkg-config --libs hdf5) -lm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <hdf5.h>

#include "alexnet.h"
#include "weights.h"
#include "benchutil.h"

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, an_error_message());
    exit(1);
}

/* Heuritech's layout: layer_names, weight_names as numpy 'S' strings, kernels
 * (out, in, rows, cols) flipped, dense (in, out); weightless layers omitted. */
static int write_keras1(const char *path, an_net *net)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    const char *names[AN_W_N_LAYERS];
    for (int k = 0; k < AN_W_N_LAYERS; k++) names[k] = an_weights_layer_name(k);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 8);
    H5Tset_strpad(st, H5T_STR_NULLPAD);
    char buf[AN_W_N_LAYERS][8];
    memset(buf, 0, sizeof buf);
    for (int k = 0; k < AN_W_N_LAYERS; k++) memcpy(buf[k], names[k], strlen(names[k]));
    hsize_t n = AN_W_N_LAYERS;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(f, "layer_names", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, buf);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tset_size(st, 16);
    const float *P = an_net_params(net);
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        int half, j = an_weights_layer_param(k, &half);
        const an_param_layer *L = an_net_param_layer(net, j);
        int parts = half ? 2 : 1;
        size_t wn = L->weight_count / parts, bn = L->bias_count / parts;
        const float *w = P + L->weight_offset + (half ? (half - 1) * wn : 0);
        const float *b = P + L->bias_offset + (half ? (half - 1) * bn : 0);
        float *K = malloc(wn * sizeof *K);
        hsize_t dims[4];
        int nd;
        if (L->is_conv) {
            size_t plane = (size_t)L->kh * L->kw;
            for (size_t p = 0; p < wn / plane; p++)
                for (size_t i = 0; i < plane; i++) K[p * plane + i] = w[p * plane + plane - 1 - i];
            nd = 4;
            dims[0] = L->out / parts; dims[1] = L->in / L->groups; dims[2] = L->kh; dims[3] = L->kw;
        } else {
            for (size_t o = 0; o < (size_t)L->out; o++)
                for (size_t i = 0; i < (size_t)L->in; i++) K[i * L->out + o] = w[o * L->in + i];
            nd = 2;
            dims[0] = L->in; dims[1] = L->out;
        }
        hid_t g = H5Gcreate2(f, names[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        char wb[2][16];
        memset(wb, 0, sizeof wb);
        snprintf(wb[0], 16, "%s_W", names[k]);
        snprintf(wb[1], 16, "%s_b", names[k]);
        hsize_t two = 2;
        sp = H5Screate_simple(1, &two, NULL);
        a = H5Acreate2(g, "weight_names", st, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, st, wb);
        H5Aclose(a);
        H5Sclose(sp);
        sp = H5Screate_simple(nd, dims, NULL);
        hid_t d = H5Dcreate2(g, wb[0], H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, K);
        H5Dclose(d);
        H5Sclose(sp);
        hsize_t bd = bn;
        sp = H5Screate_simple(1, &bd, NULL);
        d = H5Dcreate2(g, wb[1], H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
        H5Dclose(d);
        H5Sclose(sp);
        H5Gclose(g);
        free(K);
    }
    H5Tclose(st);
    return H5Fclose(f) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    const char *dir = argc > 1 ? argv[1] : tmp && tmp[0] ? tmp : "/tmp";
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (reps < 1) reps = 1;
    if (reps > 50) reps = 50;
    char own[1024], keras[1024];
    snprintf(own, sizeof own, "%s/bench_own.h5", dir);
    snprintf(keras, sizeof keras, "%s/bench_keras1.h5", dir);

    an_net *net = NULL, *two = NULL;
    double t0 = now();
    if (an_net_create(1000, 1, &net) != AN_OK) die("create");
    double t_create = now() - t0;
    if (an_net_create(2, 2, &two) != AN_OK) die("create");
    size_t n = an_net_param_count(net);
    static const char *classes[1000];
    static char names[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(names[i], sizeof names[i], "class %d", i);
        classes[i] = names[i];
    }
    if (write_keras1(keras, net) != 0) { fprintf(stderr, "cannot write %s\n", keras); return 1; }

    double ts[50], tl[50], tk[50], tb[50];
    an_weights_report rep;
    for (int r = 0; r < reps; r++) {
        t0 = now();
        if (an_weights_save(net, own, classes) != AN_OK) die("save");
        ts[r] = now() - t0;
        t0 = now();
        if (an_weights_load(net, own, 0, &rep) != AN_OK) die("load own");
        tl[r] = now() - t0;
        t0 = now();
        if (an_weights_load(net, keras, 0, &rep) != AN_OK) die("load keras1");
        tk[r] = now() - t0;
        t0 = now();
        if (an_weights_load(two, keras, 1, &rep) != AN_OK) die("load keras1 by name");
        tb[r] = now() - t0;
    }
    struct stat so, sk;
    stat(own, &so);
    stat(keras, &sk);
    double mb = n * 4.0 / 1e6;
    printf("parameters: %zu (%.1f MB float32); own file %.1f MB, Keras 1 file %.1f MB; median of %d\n", n, mb,
           so.st_size / 1e6, sk.st_size / 1e6, reps);
    printf("an_net_create(1000) (he_normal init, for scale)   %7.3f s\n", t_create);
    double m;
    m = median(ts, reps);
    printf("an_weights_save  own format (incl. fsync)         %7.3f s  %6.0f MB/s\n", m, mb / m);
    m = median(tl, reps);
    printf("an_weights_load  own format                       %7.3f s  %6.0f MB/s\n", m, mb / m);
    m = median(tk, reps);
    printf("an_weights_load  Keras 1 (flip + transpose)       %7.3f s  %6.0f MB/s\n", m, mb / m);
    m = median(tb, reps);
    printf("an_weights_load  Keras 1 by_name into 2 classes   %7.3f s\n", m);
    an_net_free(net);
    an_net_free(two);
    return 0;
}
