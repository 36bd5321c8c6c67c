/* cpu_backend.c: the CPU backend's table (backend.h): the heavy kernels of cpu.c, and the
 * elementwise ops, data movement, loss and optimizer in plain C, parallelised with OpenMP.
 * Elementwise loops are plain functions called on each thread's share of the range: as
 * such their restrict pointers survive (OpenMP's outlining drops them) and they vectorise.
 *
 * It computes in float32, and in bfloat16 for mixed precision where oneDNN has native
 * bfloat16 kernels for the CPU (AVX-512 BF16 or AMX): each elementwise op
 * then widens to float32, computes as the float32 op does and rounds once (the bf16_*
 * loops). An op given float16 fails with BT_ERR_UNSUPPORTED ("float16 needs --device
 * cuda ..."), and `supports` says so beforehand. Its cast, between every pair of types through mixed.h's and augment.h's
 * conversions, is the reference the CUDA backend's cast is checked against, and so is its
 * input_u8 (lib/augment's colour stage itself, in every type).
 */
#define _GNU_SOURCE
#include "augment.h"
#include "backend.h"
#include "bt.h"
#include "mixed.h"
#include "rng.h"
#include "train.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* This thread's share [*b, *e) of n elements, 16-aligned so that vectors stay whole. */
static void share(size_t n, size_t *b, size_t *e)
{
	size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
	size_t per = ((n + T - 1) / T + 15) & ~(size_t)15;
	*b = per * t < n ? per * t : n;
	*e = per * (t + 1) < n ? per * (t + 1) : n;
}

static void relu_fwd_k(float *restrict y, const float *restrict x, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = x[k] > 0.0f ? x[k] : 0.0f;
}

static void relu_inplace_k(float *restrict y, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = y[k] > 0.0f ? y[k] : 0.0f;
}

static void relu_bwd_k(float *restrict dx, const float *restrict dy, const float *restrict y, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		/* Both loads unconditional, so the select vectorises. */
		float g = dy[k], v = y[k];
		dx[k] = v > 0.0f ? g : 0.0f;
	}
}

static void add_k(float *restrict y, const float *restrict a, const float *restrict b, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = a[k] + b[k];
}

static void mul_k(float *restrict y, const float *restrict a, const float *restrict b, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = a[k] * b[k];
}

static void acc_k(float *restrict y, const float *restrict a, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] += a[k];
}

/* y = max(0, y + z): the in-place addition and ReLU after it, with their roundings. */
static void acc_relu_k(float *restrict y, const float *restrict z, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		float t = y[k] + z[k];
		y[k] = t > 0.0f ? t : 0.0f;
	}
}

/* The same in bfloat16: operands widened to float32 (exact), the float32 operation, one
 * rounding to nearest even (mixed.h). The widening and rounding are integer work that the
 * baseline's 128-bit vectors do at a third of AVX-512's speed, so these loops are also built
 * for AVX2 and AVX-512 and picked at load time (the same bits on every path). */
typedef uint16_t bf16_t;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BF16_LOOP __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BF16_LOOP
#endif
static inline float bw(bf16_t h) { return bt_bf16_to_f32(h); }
static inline bf16_t bn16(float f) { return bt_f32_to_bf16(f); }

BF16_LOOP static void bf16_relu_fwd(bf16_t *restrict y, const bf16_t *restrict x, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = bw(x[k]) > 0.0f ? x[k] : 0;
}

BF16_LOOP static void bf16_relu_inplace(bf16_t *restrict y, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = bw(y[k]) > 0.0f ? y[k] : 0;
}

BF16_LOOP static void bf16_relu_bwd(bf16_t *restrict dx, const bf16_t *restrict dy, const bf16_t *restrict y,
			  size_t n)
{
	for (size_t k = 0; k < n; k++) {
		bf16_t g = dy[k];
		float v = bw(y[k]);
		dx[k] = v > 0.0f ? g : 0;
	}
}

BF16_LOOP static void bf16_add(bf16_t *restrict y, const bf16_t *restrict a, const bf16_t *restrict b, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = bn16(bw(a[k]) + bw(b[k]));
}

BF16_LOOP static void bf16_mul(bf16_t *restrict y, const bf16_t *restrict a, const bf16_t *restrict b, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = bn16(bw(a[k]) * bw(b[k]));
}

BF16_LOOP static void bf16_acc(bf16_t *restrict y, const bf16_t *restrict a, size_t n)
{
	for (size_t k = 0; k < n; k++)
		y[k] = bn16(bw(y[k]) + bw(a[k]));
}

/* max(0, round(y + z)) is round(max(0, y + z)): rounding keeps the sign, so this is the
 * addition node's result through the ReLU node, bit for bit. */
BF16_LOOP static void bf16_acc_relu(bf16_t *restrict y, const bf16_t *restrict z, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		float t = bw(y[k]) + bw(z[k]);
		y[k] = bn16(t > 0.0f ? t : 0.0f);
	}
}

/* Runs STMT on every thread with lo, hi its share of n elements. */
#define PAR_SHARE(n, STMT)                                                                   \
	do {                                                                                 \
		_Pragma("omp parallel")                                                      \
		{                                                                            \
			size_t lo, hi;                                                       \
			share((n), &lo, &hi);                                                \
			STMT;                                                                \
		}                                                                            \
	} while (0)

/* Every op given a type other than float32 and bfloat16. */
static int refuse(int dtype)
{
	return bt_error(BT_ERR_UNSUPPORTED, "%s needs --device cuda: the CPU backend computes in float32 or bfloat16",
			bt_dtype_name(dtype));
}

static int c_supports(void *ctx, int dtype)
{
	return dtype == BT_DTYPE_F32 || (dtype == BT_DTYPE_BF16 && bt_cpu_bf16(ctx));
}

static int c_relu_fwd(void *ctx, int dtype, const void *xv, void *yv, size_t n)
{
	const float *x = xv;
	float *y = yv;
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		const bf16_t *xb = xv;
		bf16_t *yb = yv;
		if (xb == yb)
			PAR_SHARE(n, bf16_relu_inplace(yb + lo, hi - lo));
		else
			PAR_SHARE(n, bf16_relu_fwd(yb + lo, xb + lo, hi - lo));
		return BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
	if (x == y)
		PAR_SHARE(n, relu_inplace_k(y + lo, hi - lo));
	else
		PAR_SHARE(n, relu_fwd_k(y + lo, x + lo, hi - lo));
	return BT_OK;
}

static int c_relu_bwd(void *ctx, int dtype, const void *y, const void *dy, void *dx, size_t n)
{
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		PAR_SHARE(n, bf16_relu_bwd((bf16_t *)dx + lo, (const bf16_t *)dy + lo, (const bf16_t *)y + lo,
					   hi - lo));
		return BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
	PAR_SHARE(n, relu_bwd_k((float *)dx + lo, (const float *)dy + lo, (const float *)y + lo, hi - lo));
	return BT_OK;
}

static int c_add(void *ctx, int dtype, const void *av, const void *bv, void *yv, size_t n)
{
	const float *a = av, *b = bv;
	float *y = yv;
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		const bf16_t *ab = av, *bb = bv;
		bf16_t *yb = yv;
		if (yb == ab)
			PAR_SHARE(n, bf16_acc(yb + lo, bb + lo, hi - lo));
		else if (yb == bb)
			PAR_SHARE(n, bf16_acc(yb + lo, ab + lo, hi - lo));
		else
			PAR_SHARE(n, bf16_add(yb + lo, ab + lo, bb + lo, hi - lo));
		return BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
	/* y may be a or b (an in-place residual addition). */
	if (y == a)
		PAR_SHARE(n, acc_k(y + lo, b + lo, hi - lo));
	else if (y == b)
		PAR_SHARE(n, acc_k(y + lo, a + lo, hi - lo));
	else
		PAR_SHARE(n, add_k(y + lo, a + lo, b + lo, hi - lo));
	return BT_OK;
}

static int c_mul(void *ctx, int dtype, const void *a, const void *b, void *y, size_t n)
{
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		PAR_SHARE(n, bf16_mul((bf16_t *)y + lo, (const bf16_t *)a + lo, (const bf16_t *)b + lo, hi - lo));
		return BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
	PAR_SHARE(n, mul_k((float *)y + lo, (const float *)a + lo, (const float *)b + lo, hi - lo));
	return BT_OK;
}

static int c_accumulate(void *ctx, int dtype, void *y, const void *x, size_t n)
{
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		PAR_SHARE(n, bf16_acc((bf16_t *)y + lo, (const bf16_t *)x + lo, hi - lo));
		return BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
	PAR_SHARE(n, acc_k((float *)y + lo, (const float *)x + lo, hi - lo));
	return BT_OK;
}

static int c_copy(void *ctx, int dtype, void *y, const void *x, size_t n)
{
	(void)ctx;
	if (dtype != BT_DTYPE_F32 && dtype != BT_DTYPE_BF16)
		return refuse(dtype);
	if (y != x)
		memcpy(y, x, n * bt_dtype_size(dtype));
	return BT_OK;
}

static int c_gap_fwd(void *ctx, int dtype, const void *xv, void *yv, int n, size_t hw, int c)
{
	const float *x = xv;
	float *y = yv;
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		const bf16_t *xb = xv;
		bf16_t *yb = yv;
		int failed = 0;
#pragma omp parallel
		{
			float *acc = malloc((size_t)c * sizeof *acc);
#pragma omp for schedule(static)
			for (int m = 0; m < n; m++) {
				const bf16_t *xm = xb + (size_t)m * hw * c;
				if (!acc) {
					failed = 1;
					continue;
				}
				for (int k = 0; k < c; k++)
					acc[k] = 0;
				for (size_t p = 0; p < hw; p++)
					for (int k = 0; k < c; k++)
						acc[k] += bw(xm[p * c + k]);
				for (int k = 0; k < c; k++)
					yb[(size_t)m * c + k] = bn16(acc[k] / (float)hw);
			}
			free(acc);
		}
		return failed ? bt_error(BT_ERR_NOMEM, "global average pooling: %d channels", c) : BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
#pragma omp parallel for schedule(static)
	for (int m = 0; m < n; m++) {
		const float *xm = x + (size_t)m * hw * c;
		float *ym = y + (size_t)m * c;
		for (int k = 0; k < c; k++)
			ym[k] = 0;
		for (size_t p = 0; p < hw; p++)
			for (int k = 0; k < c; k++)
				ym[k] += xm[p * c + k];
		for (int k = 0; k < c; k++)
			ym[k] /= (float)hw;
	}
	return BT_OK;
}

static int c_gap_bwd(void *ctx, int dtype, const void *dyv, void *dxv, int n, size_t hw, int c)
{
	const float *dy = dyv;
	float *dx = dxv;
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		const bf16_t *dyb = dyv;
		bf16_t *dxb = dxv;
#pragma omp parallel for schedule(static)
		for (int m = 0; m < n; m++)
			for (size_t p = 0; p < hw; p++)
				for (int k = 0; k < c; k++)
					dxb[((size_t)m * hw + p) * c + k] = bn16(bw(dyb[(size_t)m * c + k]) / (float)hw);
		return BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
#pragma omp parallel for schedule(static)
	for (int m = 0; m < n; m++)
		for (size_t p = 0; p < hw; p++)
			for (int k = 0; k < c; k++)
				dx[((size_t)m * hw + p) * c + k] = dy[(size_t)m * c + k] / (float)hw;
	return BT_OK;
}

static int c_concat_fwd(void *ctx, int dtype, const void *xjv, void *yv, size_t pixels, int cj, int co,
			int off)
{
	const char *xj = xjv;
	char *y = yv;
	size_t es = bt_dtype_size(dtype);
	(void)ctx;
	if (dtype != BT_DTYPE_F32 && dtype != BT_DTYPE_BF16)
		return refuse(dtype);
#pragma omp parallel for schedule(static)
	for (size_t p = 0; p < pixels; p++)
		memcpy(y + (p * co + off) * es, xj + p * cj * es, (size_t)cj * es);
	return BT_OK;
}

static int c_concat_bwd(void *ctx, int dtype, const void *dyv, void *dxjv, size_t pixels, int cj, int co,
			int off)
{
	const char *dy = dyv;
	char *dxj = dxjv;
	size_t es = bt_dtype_size(dtype);
	(void)ctx;
	if (dtype != BT_DTYPE_F32 && dtype != BT_DTYPE_BF16)
		return refuse(dtype);
#pragma omp parallel for schedule(static)
	for (size_t p = 0; p < pixels; p++)
		memcpy(dxj + p * cj * es, dy + (p * co + off) * es, (size_t)cj * es);
	return BT_OK;
}

static int c_dropout_fwd(void *ctx, int dtype, const void *xv, void *yv, void *maskv, size_t n, float p,
			 uint64_t seed)
{
	const float *x = xv;
	float *y = yv, *mask = maskv;
	float keep = 1.0f / (1.0f - p);
	uint64_t s = bt_mix64(seed ^ UINT64_C(0x5851f42d4c957f2d));
	(void)ctx;
	if (dtype == BT_DTYPE_BF16) {
		const bf16_t *xb = xv;
		bf16_t *yb = yv, *mb = maskv, keep16 = bn16(keep);
#pragma omp parallel for schedule(static)
		for (size_t k = 0; k < n; k++) {
			double u = (double)(bt_mix64(s + k) >> 11) * 0x1.0p-53;
			float m = u < p ? 0.0f : keep;
			mb[k] = u < p ? 0 : keep16;
			yb[k] = bn16(bw(xb[k]) * m);
		}
		return BT_OK;
	}
	if (dtype != BT_DTYPE_F32)
		return refuse(dtype);
	/* A hash of (seed, k) per element rather than a running generator: any thread, or a
	 * GPU thread, computes the same mask. */
#pragma omp parallel for schedule(static)
	for (size_t k = 0; k < n; k++) {
		double u = (double)(bt_mix64(s + k) >> 11) * 0x1.0p-53;
		mask[k] = u < p ? 0.0f : keep;
		y[k] = x[k] * mask[k];
	}
	return BT_OK;
}

static int c_bn_fold(void *ctx, const float *w, const float *bias, const float *gamma, const float *beta,
		     const float *mean, const float *var, float eps, int cout, size_t per_out, float *w_out,
		     float *b_out)
{
	(void)ctx;
#pragma omp parallel for schedule(static)
	for (int o = 0; o < cout; o++) {
		float s = gamma[o] / sqrtf(var[o] + eps);
		for (size_t k = 0; k < per_out; k++)
			w_out[(size_t)o * per_out + k] = w[(size_t)o * per_out + k] * s;
		b_out[o] = beta[o] + ((bias ? bias[o] : 0.0f) - mean[o]) * s;
	}
	return BT_OK;
}

static int c_softmax_ce(void *ctx, const float *z, const int32_t *labels, const float *soft, int n, int K,
			float eps, float T, float *dz, double *loss)
{
	double total = 0;
	(void)ctx;
	for (int m = 0; m < n; m++) {
		const float *zm = z + (size_t)m * K;
		float *dm = dz + (size_t)m * K;
		double mx = zm[0] / T, sum = 0, lse;
		if (!soft && (labels[m] < 0 || labels[m] >= K))
			return bt_error(BT_ERR_INVALID, "loss: image %d has label %d, the model has %d classes",
					m, labels[m], K);
		for (int k = 1; k < K; k++)
			if (zm[k] / T > mx)
				mx = zm[k] / T;
		for (int k = 0; k < K; k++)
			sum += exp(zm[k] / T - mx);
		lse = mx + log(sum);
		for (int k = 0; k < K; k++) {
			double logp = zm[k] / T - lse;
			double q = soft ? soft[(size_t)m * K + k] : (k == labels[m] ? 1.0 - eps : eps / (K - 1));
			total -= q * logp;
			dm[k] = (float)((exp(logp) - q) / ((double)n * T));
		}
	}
	*loss = total / n;
	return BT_OK;
}

static int c_sgd(void *ctx, float *w, const float *dw, float *v, const struct bt_sgd_range *ranges, int nr,
		 float lr, float momentum, float wd, float gscale)
{
	(void)ctx;
	for (int i = 0; i < nr; i++) {
		float *restrict wi = w + ranges[i].offset, *restrict vi = v + ranges[i].offset;
		const float *restrict gi = dw + ranges[i].offset;
		float decay = ranges[i].decay ? wd : 0.0f;
		for (size_t k = 0; k < ranges[i].count; k++) {
			/* gscale 1: the product is dw itself, exactly */
			float g = gi[k] * gscale + decay * wi[k];
			vi[k] = momentum * vi[k] + g;
			wi[k] -= lr * (g + momentum * vi[k]);
		}
	}
	return BT_OK;
}

/* One element of type t at p[i], as a float (exact). */
static float load_as_float(const void *p, int t, size_t i)
{
	switch (t) {
	case BT_DTYPE_F16: return bt_f16_to_f32(((const uint16_t *)p)[i]);
	case BT_DTYPE_BF16: return bt_bf16_to_f32(((const uint16_t *)p)[i]);
	default: return ((const float *)p)[i];
	}
}

static void store_float(void *p, int t, size_t i, float v)
{
	switch (t) {
	case BT_DTYPE_F16: ((uint16_t *)p)[i] = bt_f32_to_f16(v); break;
	case BT_DTYPE_BF16: ((uint16_t *)p)[i] = bt_f32_to_bf16(v); break;
	default: ((float *)p)[i] = v; break;
	}
}

static int c_cast(void *ctx, const void *x, int xt, void *y, int yt, size_t n, float scale)
{
	(void)ctx;
	if (!bt_dtype_size(xt) || !bt_dtype_size(yt))
		return bt_error(BT_ERR_INVALID, "cast: dtype %d to %d", xt, yt);
	/* The product only when scale is not 1, so that a NaN keeps its payload as it is. */
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++) {
		float v = load_as_float(x, xt, i);
		store_float(y, yt, i, scale == 1.0f ? v : v * scale);
	}
	return BT_OK;
}

/* lib/augment's colour and output stage image by image (bt_aug_colour_apply, a scratch per
 * thread), bt_mixup_batch for mixup, then one rounding to dtype: by construction the bits
 * of the loader's float32 output mixed on the host, which the tests check. */
static int c_input_u8(void *ctx, int dtype, const struct bt_u8_batch *in, void *y)
{
	static const struct bt_aug_colour neutral = { 1, 1, 1, { 0, 1, 2 }, { 0, 0, 0 }, 0, { 0, 0, 0 }, { 0, 0, 0, 0, 0 }, 0 };
	size_t per, total;
	float *f;
	int failed = 0;

	(void)ctx;
	if (!bt_dtype_size(dtype) || !bt_u8_batch_ok(in))
		return bt_error(BT_ERR_INVALID, "input: dtype %d, %d images of %dx%dx%d", dtype, in->n,
				in->size, in->size, in->channels);
	per = (size_t)in->size * in->size * (size_t)in->channels;
	total = per * (size_t)in->n;
	f = dtype == BT_DTYPE_F32 ? y : malloc(total * sizeof *f);
	if (!f)
		return bt_error(BT_ERR_NOMEM, "out of memory for the input (%zu floats)", total);
#pragma omp parallel
	{
		struct bt_aug_scratch *s = bt_aug_scratch_new();
#pragma omp for schedule(static)
		for (int i = 0; i < in->n; i++) {
			struct bt_aug_affine a;
			bt_aug_colour_affine(in->colour ? &in->colour[i] : &neutral, in->channels, in->mean,
					     in->std, &a);
			if (!s || bt_aug_colour_apply(&a, in->x + (size_t)i * per, (uint32_t)in->size,
						      in->channels, BT_AUG_F32, f + (size_t)i * per, s) < 0) {
#pragma omp atomic write
				failed = 1;
			}
		}
		bt_aug_scratch_free(s);
	}
	if (failed) {
		if (f != y)
			free(f);
		return bt_error(BT_ERR_NOMEM, "out of memory for the input's scratch");
	}
	if (in->mixup)
		bt_mixup_batch(f, in->n, per, in->lam);
	if (f != y) {
#pragma omp parallel for schedule(static)
		for (size_t i = 0; i < total; i++)
			store_float(y, dtype, i, f[i]);
		free(f);
	}
	return BT_OK;
}

static int c_nonfinite(void *ctx, const float *x, size_t n, int *found)
{
	int bad = 0;
	(void)ctx;
#pragma omp parallel for schedule(static) reduction(| : bad)
	for (size_t i = 0; i < n; i++)
		bad |= !isfinite(x[i]);
	*found = bad;
	return BT_OK;
}

static int c_alloc(void *ctx, size_t bytes, void **p)
{
	(void)ctx;
	*p = NULL;
	if (posix_memalign(p, 64, bytes ? bytes : 64) != 0)
		return bt_error(BT_ERR_NOMEM, "out of memory (%zu bytes)", bytes);
	return BT_OK;
}

static void c_release(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

static int c_move(void *ctx, void *dst, const void *src, size_t bytes)
{
	(void)ctx;
	memmove(dst, src, bytes);
	return BT_OK;
}

static int c_zero(void *ctx, void *p, size_t bytes)
{
	(void)ctx;
	memset(p, 0, bytes);
	return BT_OK;
}

static const char *c_describe(void *ctx) { return bt_cpu_describe(ctx); }
static void c_destroy(void *ctx) { bt_cpu_free(ctx); }

/* The heavy kernels: cpu.h's functions take the context as their first argument already;
 * these adapters convert it from void *; cpu.c reads the descriptor's dtype (and refuses
 * float16). */
static int c_conv_fwd(void *c, const struct bt_conv_desc *d, const void *x, const void *w, const float *b, void *y)
{ return bt_cpu_conv_fwd(c, d, x, w, b, y); }
static int c_conv_bwd_data(void *c, const struct bt_conv_desc *d, const void *dy, const void *w, void *dx)
{ return bt_cpu_conv_bwd_data(c, d, dy, w, dx); }
static int c_conv_bwd_weights(void *c, const struct bt_conv_desc *d, const void *x, const void *dy, float *dw, float *db)
{ return bt_cpu_conv_bwd_weights(c, d, x, dy, dw, db); }
static int c_bn_fwd_train(void *c, const struct bt_bn_desc *d, const void *x, const float *g, const float *b,
			  float *rm, float *rv, float *sm, float *si, void *y)
{ return bt_cpu_bn_fwd_train(c, d, x, g, b, rm, rv, sm, si, y); }
static int c_bn_fwd_infer(void *c, const struct bt_bn_desc *d, const void *x, const float *g, const float *b,
			  const float *rm, const float *rv, void *y)
{ return bt_cpu_bn_fwd_infer(c, d, x, g, b, rm, rv, y); }
static int c_bn_bwd(void *c, const struct bt_bn_desc *d, const void *x, const void *dy, const float *g,
		    const float *sm, const float *si, void *dx, float *dg, float *db)
{ return bt_cpu_bn_bwd(c, d, x, dy, g, sm, si, dx, dg, db); }
static size_t c_bn_relu_ws_bytes(void *c, const struct bt_bn_desc *d)
{ return bt_cpu_bn_relu_ws_bytes(c, d); }
static int c_bn_relu_fwd_train(void *c, const struct bt_bn_desc *d, const void *x, const float *g,
			       const float *b, float *rm, float *rv, float *sm, float *si, void *y, void *ws)
{ return bt_cpu_bn_relu_fwd_train(c, d, x, g, b, rm, rv, sm, si, y, ws); }
static int c_bn_relu_bwd(void *c, const struct bt_bn_desc *d, const void *x, const void *dy, const float *g,
			 const float *sm, const float *si, const void *ws, void *dx, float *dg, float *db)
{ return bt_cpu_bn_relu_bwd(c, d, x, dy, g, sm, si, ws, dx, dg, db); }
/* oneDNN's batch norm into y, then one pass for the addition and the ReLU: the same float
 * operations as the three nodes, one pass over the activation fewer. */
static int c_bn_add_relu_ok(void *c, const struct bt_bn_desc *d)
{
	(void)c;
	return d->dtype == BT_DTYPE_F32 || d->dtype == BT_DTYPE_BF16;
}
static int c_bn_add_relu_fwd_train(void *c, const struct bt_bn_desc *d, const void *x, const void *zv,
				   const float *g, const float *b, float *rm, float *rv, float *sm, float *si,
				   void *yv)
{
	size_t n = (size_t)d->n * d->h * d->w * d->c;
	int st;
	if (d->dtype != BT_DTYPE_F32 && d->dtype != BT_DTYPE_BF16)
		return refuse(d->dtype);
	if (yv == x || yv == zv)
		return bt_error(BT_ERR_INVALID, "batch norm + add + ReLU: y must be neither x nor z");
	if ((st = bt_cpu_bn_fwd_train(c, d, x, g, b, rm, rv, sm, si, yv)) < 0)
		return st;
	if (d->dtype == BT_DTYPE_BF16)
		PAR_SHARE(n, bf16_acc_relu((bf16_t *)yv + lo, (const bf16_t *)zv + lo, hi - lo));
	else
		PAR_SHARE(n, acc_relu_k((float *)yv + lo, (const float *)zv + lo, hi - lo));
	return BT_OK;
}
static size_t c_pool_ws_bytes(void *c, const struct bt_pool_desc *d) { return bt_cpu_pool_ws_bytes(c, d); }
static int c_pool_fwd(void *c, const struct bt_pool_desc *d, const void *x, void *y, void *ws)
{ return bt_cpu_pool_fwd(c, d, x, y, ws); }
static int c_pool_bwd(void *c, const struct bt_pool_desc *d, const void *dy, const void *ws, void *dx)
{ return bt_cpu_pool_bwd(c, d, dy, ws, dx); }
static int c_fc_fwd(void *c, const struct bt_fc_desc *d, const void *x, const void *w, const float *b, void *y)
{ return bt_cpu_fc_fwd(c, d, x, w, b, y); }
static int c_fc_bwd(void *c, const struct bt_fc_desc *d, const void *x, const void *dy, const void *w,
		    void *dx, float *dw, float *db)
{ return bt_cpu_fc_bwd(c, d, x, dy, w, dx, dw, db); }

/* MemAvailable of /proc/meminfo, and within RLIMIT_AS what this process has not mapped yet
 * (VmSize, the first field of /proc/self/statm), whichever is smaller. */
static int c_available(void *ctx, size_t *bytes)
{
	struct rlimit rl;
	unsigned long long kb = 0, pages = 0;
	size_t avail = SIZE_MAX;
	char line[128];
	FILE *f;

	(void)ctx;
	if ((f = fopen("/proc/meminfo", "r"))) {
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
				avail = (size_t)kb * 1024;
				break;
			}
		fclose(f);
	}
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (f = fopen("/proc/self/statm", "r"))) {
		if (fscanf(f, "%llu", &pages) == 1) {
			size_t mapped = (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
			size_t room = rl.rlim_cur > mapped ? (size_t)rl.rlim_cur - mapped : 0;
			if (room < avail)
				avail = room;
		}
		fclose(f);
	}
	if (avail == SIZE_MAX)
		return bt_error(BT_ERR_UNSUPPORTED, "available memory: /proc/meminfo unreadable");
	*bytes = avail;
	return BT_OK;
}

static const struct bt_backend_i cpu_backend = {
	.name = "cpu",
	/* 4 MB: a 16-channel 32x32 layer of 64 images; its input and output (8 MB) stay in
	 * this machine's L3, where a batch of 128 (17 MB) did not (docs/benchmarks.md) */
	.infer_slice_bytes = 4u << 20,
	.describe = c_describe,
	.destroy = c_destroy,
	.supports = c_supports,
	.alloc = c_alloc,
	.release = c_release,
	.upload = c_move,
	.download = c_move,
	.zero = c_zero,
	.conv_fwd = c_conv_fwd,
	.conv_bwd_data = c_conv_bwd_data,
	.conv_bwd_weights = c_conv_bwd_weights,
	.bn_fwd_train = c_bn_fwd_train,
	.bn_fwd_infer = c_bn_fwd_infer,
	.bn_bwd = c_bn_bwd,
	.pool_ws_bytes = c_pool_ws_bytes,
	.pool_fwd = c_pool_fwd,
	.pool_bwd = c_pool_bwd,
	.fc_fwd = c_fc_fwd,
	.fc_bwd = c_fc_bwd,
	.relu_fwd = c_relu_fwd,
	.relu_bwd = c_relu_bwd,
	.add = c_add,
	.accumulate = c_accumulate,
	.copy = c_copy,
	.gap_fwd = c_gap_fwd,
	.gap_bwd = c_gap_bwd,
	.concat_fwd = c_concat_fwd,
	.concat_bwd = c_concat_bwd,
	.dropout_fwd = c_dropout_fwd,
	.mul = c_mul,
	.bn_fold = c_bn_fold,
	.softmax_ce = c_softmax_ce,
	.sgd = c_sgd,
	.cast = c_cast,
	.nonfinite = c_nonfinite,
	.sync = NULL,
	.memory = NULL,
	.host_alloc = NULL,
	.host_free = NULL,
	.input_u8 = c_input_u8,
	.available = c_available,
	.bn_relu_ws_bytes = c_bn_relu_ws_bytes,
	.bn_relu_fwd_train = c_bn_relu_fwd_train,
	.bn_relu_bwd = c_bn_relu_bwd,
	.bn_add_relu_ok = c_bn_add_relu_ok,
	.bn_add_relu_fwd_train = c_bn_add_relu_fwd_train,
};

int bt_backend_cpu(struct bt_backend *be, int threads)
{
	struct bt_cpu *cpu;
	int st = bt_cpu_new(&cpu, threads);
	if (st < 0)
		return st;
	be->i = &cpu_backend;
	be->ctx = cpu;
	return BT_OK;
}

void bt_backend_free(struct bt_backend *be)
{
	if (be && be->i) {
		be->i->destroy(be->ctx);
		be->i = NULL;
		be->ctx = NULL;
	}
}
