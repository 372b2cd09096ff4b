/* rng.h: a small seeded generator (xoshiro256**), so that the same seed
 * gives the same weights and dropout masks on every platform. */
#ifndef AN_RNG_H
#define AN_RNG_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct { uint64_t s[4]; } an_rng;

void an_rng_seed(an_rng *rng, uint64_t seed);
uint64_t an_rng_next(an_rng *rng);
double an_rng_uniform(an_rng *rng);          /* [0, 1) */
void an_rng_skip(an_rng *rng, size_t count);  /* as `count` calls of an_rng_uniform */
void an_rng_normal_fill(an_rng *rng, float *dst, size_t count, double sd);

#ifdef __cplusplus
}
#endif
#endif
