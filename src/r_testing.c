/* r_testing.c: .Call entry points FOR THE PACKAGE'S TESTS ONLY (tests/testthat);
 * no R function of the package calls them, and they are registered under
 * names that begin with test_. They stay out of the production glue:
 *
 *   test_weights_digest(net)    64-bit FNV-1a hash of each Keras layer's
 *                               weights then bias, so that tests compare nets
 *                               without copying 57 million parameters into R
 *   test_weights_load_interrupted(net, path, by_name, undo)
 *                               weights_load as C_weights_load runs it, with a
 *                               Ctrl-C (SIGINT to this process, taken by R's
 *                               handler) arriving right after the engine's read
 *   test_write_jpeg(path, x, quality)
 *                               an integer array as a baseline JPEG (libjpeg),
 *                               since the R package jpeg may not be installed
 *   test_hide_bf16(hide)        the CPU answers as if it had no AVX512_BF16
 *   test_image_to_input(x, i)   image i of an array as the net's input
 *   test_forward_input(net, input, until)
 *                               a forward pass from input in the engine's layout
 */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <limits.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>

#include <jpeglib.h>

#include "alexnet.h"
#include "images.h"
#include "ops.h"
#include "weights.h"
#include "r_alexnet.h"

SEXP r_an_test_hide_bf16(SEXP hide)
{
    an_cpu_test_hide_bf16(Rf_asLogical(hide) == TRUE);
    return R_NilValue;
}

/* ---------------------------------------------------------------- digest -- */

SEXP r_an_test_weights_digest(SEXP ptr)
{
    an_net *net = get_net(ptr);
    const float *p = an_net_params(net);
    SEXP res = PROTECT(Rf_allocVector(STRSXP, AN_W_N_LAYERS));
    Rf_setAttrib(res, R_NamesSymbol, weights_layer_names());
    for (int k = 0; k < AN_W_N_LAYERS; k++) {
        /* the layer's part of the parameter block (one half of a grouped convolution) */
        int half = 0;
        const an_param_layer *L = an_net_param_layer(net, an_weights_layer_param(k, &half));
        size_t parts = half ? 2 : 1, wn = L->weight_count / parts, bn = L->bias_count / parts;
        size_t wo = L->weight_offset + (half ? (size_t)(half - 1) * wn : 0);
        size_t bo = L->bias_offset + (half ? (size_t)(half - 1) * bn : 0);
        const unsigned char *bytes[2] = {(const unsigned char *)(p + wo), (const unsigned char *)(p + bo)};
        size_t sizes[2] = {wn * sizeof(float), bn * sizeof(float)};
        uint64_t h = 1469598103934665603ULL;
        for (int j = 0; j < 2; j++)
            for (size_t i = 0; i < sizes[j]; i++) {
                h ^= bytes[j][i];
                h *= 1099511628211ULL;
            }
        char buf[32];
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
        SET_STRING_ELT(res, k, Rf_mkChar(buf));
    }
    UNPROTECT(1);
    return res;
}

/* ----------------------------------------------- an interrupted load -- */

static void send_sigint(void) { raise(SIGINT); }

SEXP r_an_test_weights_load_interrupted(SEXP ptr, SEXP path, SEXP by_name, SEXP undo)
{
    return weights_load(ptr, path, by_name, undo, send_sigint);
}

/* ------------------------------------------------------------ a JPEG -- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} test_jpeg_error;

static void test_jpeg_error_exit(j_common_ptr cinfo)
{
    test_jpeg_error *e = (test_jpeg_error *) cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

/* `x`, an integer array dim c(height, width, 3) (or c(height, width), grey)
 * of 0..255, to `path` as a baseline JPEG of `quality` (4:4:4 sampling). */
SEXP r_an_test_write_jpeg(SEXP path, SEXP x, SEXP quality)
{
    const char *p = get_path(path, "path");
    if (TYPEOF(x) != INTSXP) Rf_error("`x` must be an integer array");
    SEXP dim = Rf_getAttrib(x, R_DimSymbol);
    int nd = Rf_length(dim);
    if (nd != 2 && nd != 3) Rf_error("`x` must have dim c(h, w, 3) or c(h, w)");
    int h = INTEGER(dim)[0], w = INTEGER(dim)[1], ch = nd == 3 ? INTEGER(dim)[2] : 1;
    if (ch != 1 && ch != 3) Rf_error("`x` must have 1 or 3 channels");
    int q = scalar_int(quality, "quality");
    const int *v = INTEGER(x);
    unsigned char *row = (unsigned char *) R_alloc((size_t) w * ch, 1);
    FILE *f = fopen(p, "wb");
    if (f == NULL) Rf_error("cannot open '%s' for writing", p);

    struct jpeg_compress_struct cinfo;
    test_jpeg_error jerr;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = test_jpeg_error_exit;
    jerr.message[0] = '\0';
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        fclose(f);
        Rf_error("libjpeg: %s", jerr.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = (JDIMENSION) w;
    cinfo.image_height = (JDIMENSION) h;
    cinfo.input_components = ch;
    cinfo.in_color_space = ch == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, q, TRUE);
    if (ch == 3)
        for (int c = 0; c < 3; c++) cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        int y = (int) cinfo.next_scanline;
        for (int xx = 0; xx < w; xx++)
            for (int c = 0; c < ch; c++) {
                int val = v[y + (R_xlen_t) h * (xx + (R_xlen_t) w * c)];
                row[xx * ch + c] = (unsigned char) (val < 0 ? 0 : val > 255 ? 255 : val);
            }
        JSAMPROW rp = row;
        jpeg_write_scanlines(&cinfo, &rp, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    fclose(f);
    return R_NilValue;
}

/* ------------------------------------------------------- the net's input -- */

/* Image `index` of x as the net's input, made as every batch is (an array
 * loader). */
SEXP r_an_test_image_to_input(SEXP x, SEXP index)
{
    an_pixel_array a = get_pixel_array(x);
    int i = scalar_int(index, "index") - 1;
    if (i < 0 || i >= a.n) Rf_error("`index` must be between 1 and %d", a.n);
    an_loader_options opt;
    an_loader_options_init(&opt);
    opt.threads = 1;
    an_loader *ld = NULL;
    an_status st = an_loader_create_array(&a, &opt, &ld);
    const float *px = NULL;
    an_load_result r;
    int failed = 0;
    if (st == AN_OK) st = an_loader_fetch(ld, &i, 1, 0, NULL, 0, 0, &px, &r, &failed);
    if (st != AN_OK) {
        an_loader_free(ld);
        engine_error(st);
    }
    SEXP res = PROTECT(Rf_allocVector(REALSXP, AN_INPUT_PIXELS));
    for (int k = 0; k < AN_INPUT_PIXELS; k++) REAL(res)[k] = px[k];
    an_loader_free(ld);
    UNPROTECT(1);
    return res;
}

/* Forward from input already in the engine's layout: `input` holds n images
 * of 3 x side x side (the net's input side; row-major, RGB 0..255). */
SEXP r_an_test_forward_input(SEXP ptr, SEXP input, SEXP until)
{
    an_net *net = get_net(ptr);
    int u = get_output_index(until);
    const R_xlen_t pixels = (R_xlen_t) AN_INPUT_CHANNELS * an_net_input_size(net) * an_net_input_size(net);
    if (TYPEOF(input) != REALSXP || XLENGTH(input) == 0 || XLENGTH(input) % pixels != 0)
        Rf_error("`input` must be a double vector of n x 3 x %d x %d values", an_net_input_size(net),
                 an_net_input_size(net));
    R_xlen_t n = XLENGTH(input) / pixels;
    if (n > INT_MAX) Rf_error("`input` is too long");
    size_t size = an_output_size(net, u);
    SEXP res = PROTECT(Rf_allocMatrix(REALSXP, (int) n, (int) size));
    float *in = (float *) R_alloc((size_t) XLENGTH(input), sizeof(float));
    float *out = (float *) R_alloc((size_t) n * size, sizeof(float));
    const double *v = REAL(input);
    for (R_xlen_t k = 0; k < XLENGTH(input); k++) in[k] = (float) v[k];
    an_status st = an_net_forward(net, in, (int) n, u, out);
    if (st != AN_OK) engine_error(st);
    double *d = REAL(res);
    for (R_xlen_t j = 0; j < n; j++)
        for (size_t k = 0; k < size; k++) d[j + (R_xlen_t) k * n] = (double) out[(size_t) j * size + k];
    UNPROTECT(1);
    return res;
}
