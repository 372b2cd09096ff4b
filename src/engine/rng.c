/* rng.c: xoshiro256** seeded through splitmix64; normals by Box-Muller. */
#include <math.h>
#include <stddef.h>
#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void an_rng_seed(an_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

uint64_t an_rng_next(an_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

double an_rng_uniform(an_rng *rng) { return (double)(an_rng_next(rng) >> 11) * 0x1.0p-53; }

void an_rng_normal_fill(an_rng *rng, float *dst, size_t count, double sd)
{
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < count; i += 2) {
        double u1 = 1.0 - an_rng_uniform(rng);   /* (0, 1]: log is finite */
        double u2 = an_rng_uniform(rng);
        double r = sd * sqrt(-2.0 * log(u1));
        dst[i] = (float)(r * cos(two_pi * u2));
        if (i + 1 < count) dst[i + 1] = (float)(r * sin(two_pi * u2));
    }
}

void an_rng_skip(an_rng *rng, size_t count)
{
    for (size_t i = 0; i < count; i++) an_rng_next(rng);
}
