/* image.c: one picture of any size into the net's 3 x 227 x 227 input. */
#include <math.h>
#include <stdlib.h>
#include "alexnet.h"

/* Source sample positions for a half-pixel-centred bilinear resize (the
 * convention of PIL and torch's align_corners = FALSE). */
static void bilinear_taps(int in, int out, int *i0, int *i1, float *frac)
{
    double scale = (double)in / out;
    for (int o = 0; o < out; o++) {
        double pos = (o + 0.5) * scale - 0.5;
        if (pos < 0) pos = 0;
        int lo = (int)pos;
        if (lo > in - 1) lo = in - 1;
        i0[o] = lo;
        i1[o] = lo + 1 < in ? lo + 1 : in - 1;
        frac[o] = (float)(pos - lo);
    }
}

an_status an_image_to_input(const double *src, ptrdiff_t sy, ptrdiff_t sx, ptrdiff_t sc,
                            int h, int w, int channels, float *dst)
{
    if (h < 1 || w < 1 || h > 65536 || w > 65536)
        return an_fail(AN_ERR_ARGUMENT, "image is %d x %d pixels: each side must be 1 to 65536", h, w);
    if (channels != 1 && channels != 3)
        return an_fail(AN_ERR_ARGUMENT, "image has %d channels: 1 (grey) or 3 (RGB) expected", channels);
    enum { S = AN_INPUT_SIZE };
    int y0[S], y1[S], x0[S], x1[S];
    float fy[S], fx[S];
    bilinear_taps(h, S, y0, y1, fy);
    bilinear_taps(w, S, x0, x1, fx);
    for (int c = 0; c < AN_INPUT_CHANNELS; c++) {
        const double *plane = src + (channels == 1 ? 0 : c) * sc;
        float *out = dst + (size_t)c * S * S;
        for (int oy = 0; oy < S; oy++) {
            const double *r0 = plane + y0[oy] * sy, *r1 = plane + y1[oy] * sy;
            for (int ox = 0; ox < S; ox++) {
                double top = r0[x0[ox] * sx] + fx[ox] * (r0[x1[ox] * sx] - r0[x0[ox] * sx]);
                double bot = r1[x0[ox] * sx] + fx[ox] * (r1[x1[ox] * sx] - r1[x0[ox] * sx]);
                out[oy * S + ox] = (float)(top + fy[oy] * (bot - top));
            }
        }
    }
    return AN_OK;
}
