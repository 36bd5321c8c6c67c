/* rng.h: the small deterministic random number generator every part of bt uses. It is
 * splitmix64 (Steele, Lea, Flood 2014): a 64-bit state stepped by a constant and mixed,
 * so any seed is fine and a state can be derived from (seed, epoch, index) by hashing. */
#ifndef BT_RNG_H
#define BT_RNG_H

#include <stdint.h>

/* bt_mix64 is also the CUDA backend's dropout hash (lib/cuda/kernels.cu): one definition,
 * so the masks are the same bits on every backend. */
#ifdef __CUDACC__
#define BT_RNG_HD __host__ __device__
#else
#define BT_RNG_HD
#endif

struct bt_rng {
	uint64_t s;
};

static inline BT_RNG_HD uint64_t bt_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static inline void bt_rng_seed(struct bt_rng *r, uint64_t seed)
{
	r->s = bt_mix64(seed ^ UINT64_C(0x6a09e667f3bcc909));
}

static inline uint64_t bt_rng_u64(struct bt_rng *r)
{
	r->s += UINT64_C(0x9e3779b97f4a7c15);
	return bt_mix64(r->s);
}

/* Uniform in [0, n) without modulo bias (Lemire's multiply-and-reject). */
static inline uint64_t bt_rng_below(struct bt_rng *r, uint64_t n)
{
	unsigned __int128 m = (unsigned __int128)bt_rng_u64(r) * n;
	uint64_t lo = (uint64_t)m;
	if (lo < n) {
		uint64_t t = -n % n;
		while (lo < t) {
			m = (unsigned __int128)bt_rng_u64(r) * n;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double bt_rng_uniform(struct bt_rng *r)
{
	return (double)(bt_rng_u64(r) >> 11) * 0x1.0p-53;
}

#endif
