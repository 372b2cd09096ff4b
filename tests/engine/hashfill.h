/* hashfill.h: deterministic test tensors, bit-identical to the numpy twin in
 * tools/make_fixtures.py, so fixtures need not store weights or inputs.
 *
 *   hash_uniform(stream, i) = (float)(splitmix64((stream << 32) + i) >> 40) * 2^-23 - 1
 *   fill: dst[i] = hash_uniform(stream, i) * scale          (float32 multiply)
 *   image: dst[i] = 127.5f + hash_uniform(stream, i) * 127.5f
 *   weight scale: (float)sqrt(6.0 / fan_in), fan_in = in/groups*kh*kw
 *
 * Streams (keep in step with tools/make_fixtures.py):
 *   per-op case c (1-based): x 16c+0, w 16c+1, b 16c+2, r (= dy) 16c+3
 *   whole net: parameter layer j (alexnet.h order) weight 1000+2j, bias 1001+2j;
 *              dense_3 weight scale (float)(sqrt(6.0/4096)/32); images 2000
 *   training (train.anfx): the whole-net parameters above; images 2001
 *   image_to_input: grey 28x28 3000, RGB 20x28 (h x w x ch) 3001
 *   hash self-check: 7
 * Exactness needs plain IEEE float arithmetic: no FMA contraction
 * (the Makefile passes -ffp-contract=off) and no -ffast-math. */
#ifndef HASHFILL_H
#define HASHFILL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* in [-1, 1), a multiple of 2^-23: exact in float */
static inline float hash_uniform(uint64_t stream, uint64_t i)
{
    return (float)(splitmix64((stream << 32) + i) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

static inline void hash_fill(float *dst, size_t count, uint64_t stream, float scale)
{
    for (size_t i = 0; i < count; i++)
        dst[i] = hash_uniform(stream, i) * scale;
}

/* RGB 0..255 test images */
static inline void hash_fill_image(float *dst, size_t count, uint64_t stream)
{
    for (size_t i = 0; i < count; i++)
        dst[i] = 127.5f + hash_uniform(stream, i) * 127.5f;
}

static inline float he_uniform_scale(int fan_in)
{
    return (float)sqrt(6.0 / (double)fan_in);
}

#endif
