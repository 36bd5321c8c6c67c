/* augment.c: the paper's training and evaluation transforms (lib/augment.h), built to run
 * several times faster than the PIL + torchvision pipeline they reproduce.
 *
 * The draw copies torchvision 0.14: RandomResizedCrop.get_params for the training crop and
 * Resize(R) + CenterCrop(size) for evaluation, rounding for rounding. Applying it is one
 * pass per stage with no copies: only the part of a JPEG that the filter reads is decoded
 * (bt_jpeg_decode_region), then the horizontal resampling pass writes flipped rows if asked,
 * and the vertical pass writes the output format directly when no colour operation is
 * needed. The colour operations (MXNet's, as in the paper's code) are all affine in RGB, so
 * they fold, with the normalisation, into one 3x3 matrix and offset per image; only
 * contrast needs a statistic (the mean grey), which is a linear function of the resampled
 * image's mean colour. That makes colour one extra pass over the output whatever the order.
 *
 * Decisions worth knowing:
 * - Training crops are resampled as torchvision does, crop first: the filter is clamped to
 *   the crop. Evaluation crops are a box of the resized image: the filter may read up to
 *   its support beyond the box (PIL's resize with box=), which is what resizing the whole
 *   image and cutting out the centre gives, so the result matches Resize + CenterCrop
 *   without resizing what is cut away.
 * - The resampled image is rounded to uint8 before colour and normalisation, as PIL's is
 *   before ToTensor; everything after that is float with no clamping until the output.
 * - JPEGs are decoded with libjpeg's defaults (JDCT_ISLOW, smooth upsampling), as PIL
 *   does, so that pixels match a PIL decode exactly; DCT-domain scaling only when the crop
 *   is at least twice the output in both directions.
 * - Lighting alphas use Box-Muller on bt_rng_uniform: z0, z1 = r cos, r sin of one pair
 *   of uniforms and z2 = r cos of a second pair (4 uniforms per image).
 * - Deferred colour (a GPU's data path) stops at the rounded uint8 crop, keeping its
 *   column sums for the mean colour; bt_aug_colour_affine and bt_aug_colour_apply are
 *   this file's own colour stage (the same folding into a matrix, the same float order),
 *   so the two halves give the whole transform's bits.
 */
#include "augment.h"
#include "bt.h"
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BT_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define BT_X86 0
#endif

/* ---- parameters and draws ---- */

void bt_aug_defaults(struct bt_aug_params *p, int train)
{
	static const float mean[3] = { 123.68f, 116.779f, 103.939f };
	static const float std[3] = { 58.393f, 57.12f, 57.375f };

	memset(p, 0, sizeof *p);
	p->train = train;
	p->size = 224;
	p->crop_ratio = 0.875;
	p->resize = 0;
	p->min_area = 0.08;
	p->max_area = 1.0;
	p->min_aspect = 3.0 / 4.0;
	p->max_aspect = 4.0 / 3.0;
	p->flip = 1;
	p->jitter = 0.4;
	p->lighting = 0.1;
	memcpy(p->mean, mean, sizeof mean);
	memcpy(p->std, std, sizeof std);
	p->format = BT_AUG_U8;
	p->max_pixels = 100000000;
	p->erase = 0;
	p->erase_min_area = 0.02;
	p->erase_max_area = 0.33;
	p->erase_min_aspect = 0.3;
	p->erase_max_aspect = 3.3;
	p->pad = -1;
}

#define BT_AUG_MAX_SIZE 65535

int bt_aug_check(const struct bt_aug_params *p)
{
	int c;

	if (p->size < 1 || p->size > BT_AUG_MAX_SIZE)
		return bt_error(BT_ERR_INVALID, "size %u (want 1..%d)", (unsigned)p->size,
				BT_AUG_MAX_SIZE);
	if (!(p->crop_ratio > 0 && p->crop_ratio <= 1))
		return bt_error(BT_ERR_INVALID, "crop ratio %g (want 0 < ratio <= 1)",
				p->crop_ratio);
	/* A smaller side would need padding, which torchvision does and we do not. */
	if (p->resize && p->resize < p->size)
		return bt_error(BT_ERR_INVALID, "resize %u is smaller than size %u",
				(unsigned)p->resize, (unsigned)p->size);
	if (!(p->min_area > 0 && p->min_area <= p->max_area && p->max_area <= 1))
		return bt_error(BT_ERR_INVALID,
				"area range [%g, %g] (want 0 < min <= max <= 1)", p->min_area,
				p->max_area);
	if (!(p->min_aspect > 0 && p->min_aspect <= p->max_aspect && isfinite(p->max_aspect)))
		return bt_error(BT_ERR_INVALID, "aspect range [%g, %g] (want 0 < min <= max)",
				p->min_aspect, p->max_aspect);
	if (!(p->jitter >= 0 && p->jitter <= 1))
		return bt_error(BT_ERR_INVALID, "colour jitter %g (want 0..1)", p->jitter);
	if (!(p->lighting >= 0 && isfinite(p->lighting)))
		return bt_error(BT_ERR_INVALID, "lighting %g (want >= 0)", p->lighting);
	if (!(p->erase >= 0 && p->erase <= 1))
		return bt_error(BT_ERR_INVALID, "erasing probability %g (want 0..1)", p->erase);
	if (p->erase > 0 && !(p->erase_min_area > 0 && p->erase_min_area <= p->erase_max_area &&
			      p->erase_max_area <= 1))
		return bt_error(BT_ERR_INVALID, "erasing area range [%g, %g] (want 0 < min <= max <= 1)",
				p->erase_min_area, p->erase_max_area);
	if (p->erase > 0 && !(p->erase_min_aspect > 0 && p->erase_min_aspect <= p->erase_max_aspect &&
			      isfinite(p->erase_max_aspect)))
		return bt_error(BT_ERR_INVALID, "erasing aspect range [%g, %g] (want 0 < min <= max)",
				p->erase_min_aspect, p->erase_max_aspect);
	if (p->pad < -1 || p->pad > BT_AUG_MAX_SIZE)
		return bt_error(BT_ERR_INVALID, "padding %d (want 0..%d, or -1 for none)", (int)p->pad,
				BT_AUG_MAX_SIZE);
	for (c = 0; c < 3; c++) {
		if (!isfinite(p->mean[c]))
			return bt_error(BT_ERR_INVALID, "mean[%d] is not finite", c);
		if (!(p->std[c] != 0 && isfinite(p->std[c])))
			return bt_error(BT_ERR_INVALID, "std[%d] is %g (want finite, not 0)", c,
					(double)p->std[c]);
	}
	if (p->format != BT_AUG_U8 && p->format != BT_AUG_F32 && p->format != BT_AUG_F16)
		return bt_error(BT_ERR_INVALID, "unknown output format %d", p->format);
	if (p->defer_colour && p->format != BT_AUG_U8)
		return bt_error(BT_ERR_INVALID, "deferred colour needs uint8 output");
	return BT_OK;
}

/* Python's round(): to nearest, ties to even (the default rounding mode). */
static double round_even(double x)
{
	return nearbyint(x);
}

/* torchvision 0.14 RandomResizedCrop.get_params. */
static void draw_crop(const struct bt_aug_params *p, uint32_t width, uint32_t height,
		      struct bt_rng *g, struct bt_aug_draw *d)
{
	double area = (double)width * height, lo = log(p->min_aspect), hi = log(p->max_aspect);
	double in_ratio, cw, ch;
	int i;

	for (i = 0; i < 10; i++) {
		double target = area * (p->min_area + (p->max_area - p->min_area) *
						      bt_rng_uniform(g));
		double aspect = exp(lo + (hi - lo) * bt_rng_uniform(g));
		cw = round_even(sqrt(target * aspect));
		ch = round_even(sqrt(target / aspect));
		if (cw > 0 && cw <= width && ch > 0 && ch <= height) {
			d->y = (double)bt_rng_below(g, height - (uint64_t)ch + 1);
			d->x = (double)bt_rng_below(g, width - (uint64_t)cw + 1);
			d->w = cw;
			d->h = ch;
			return;
		}
	}
	d->fallback = 1;
	in_ratio = (double)width / height;
	cw = width;
	ch = height;
	if (in_ratio < p->min_aspect)
		ch = round_even(cw / p->min_aspect);
	else if (in_ratio > p->max_aspect)
		cw = round_even(ch * p->max_aspect);
	/* Python's // on non-negative integers. */
	d->y = (double)((height - (uint64_t)ch) / 2);
	d->x = (double)((width - (uint64_t)cw) / 2);
	d->w = cw;
	d->h = ch;
}

/* torchvision 0.14 RandomCrop.get_params on the image padded by p->pad on every side: the
 * top row, then the left column, each uniform; no draw at all when the padded image is the
 * output's size. A padded image smaller than the output leaves the box empty, and
 * bt_aug_apply says why. */
static void draw_pad(const struct bt_aug_params *p, uint32_t width, uint32_t height,
		     struct bt_rng *g, struct bt_aug_draw *d)
{
	const uint64_t S = p->size, pw = width + 2 * (uint64_t)p->pad, ph = height + 2 * (uint64_t)p->pad;

	if (pw < S || ph < S)
		return;
	if (pw > S || ph > S) {
		d->y = (double)bt_rng_below(g, ph - S + 1);
		d->x = (double)bt_rng_below(g, pw - S + 1);
	}
	d->x -= p->pad;
	d->y -= p->pad;
	d->w = d->h = (double)S;
}

/* torchvision 0.14 RandomErasing.get_params on the size x size output: the probability
 * first, then up to 10 tries of area and aspect (h / w); a box that does not fit inside
 * (h < size and w < size, as torchvision asks) is tried again, and after 10 none is erased. */
static void draw_erase(const struct bt_aug_params *p, struct bt_rng *g, struct bt_aug_draw *d)
{
	const double S = p->size, lo = log(p->erase_min_aspect), hi = log(p->erase_max_aspect);
	int i;

	if (!(bt_rng_uniform(g) < p->erase))
		return;
	for (i = 0; i < 10; i++) {
		double target = S * S * (p->erase_min_area + (p->erase_max_area - p->erase_min_area) *
								 bt_rng_uniform(g));
		double aspect = exp(lo + (hi - lo) * bt_rng_uniform(g));
		double h = round_even(sqrt(target * aspect)), w = round_even(sqrt(target / aspect));
		if (!(h < S && w < S))
			continue;
		d->erase[1] = (int32_t)bt_rng_below(g, (uint64_t)(S - h) + 1);
		d->erase[0] = (int32_t)bt_rng_below(g, (uint64_t)(S - w) + 1);
		d->erase[2] = (int32_t)w;
		d->erase[3] = (int32_t)h;
		return;
	}
}

/* Python's int(round(n / 2.0)) for n >= 0: halves go to the even neighbour. */
static uint64_t half_even(uint64_t n)
{
	uint64_t k = n / 2;
	return (n % 2 && k % 2) ? k + 1 : k;
}

/* Resize(R) then CenterCrop(size), as one box in source pixels. */
static void draw_eval(const struct bt_aug_params *p, uint32_t width, uint32_t height,
		      struct bt_aug_draw *d)
{
	uint64_t r = p->resize ? p->resize : (uint64_t)floor(p->size / p->crop_ratio + 0.5);
	uint64_t shorter = width < height ? width : height, longer = width ^ height ^ shorter;
	/* torchvision 0.14: int(R * long / short), truncated. */
	uint64_t nl = (uint64_t)((double)(r * longer) / (double)shorter);
	uint64_t ow = width <= height ? r : nl, oh = width <= height ? nl : r;
	uint64_t left = half_even(ow - p->size), top = half_even(oh - p->size);

	d->x = (double)left * width / ow;
	d->y = (double)top * height / oh;
	d->w = (double)p->size * width / ow;
	d->h = (double)p->size * height / oh;
}

void bt_aug_draw(const struct bt_aug_params *p, uint32_t width, uint32_t height, struct bt_rng *g,
		 struct bt_aug_draw *d)
{
	const double two_pi = 6.283185307179586;
	double u1, u2, r;
	int i;

	memset(d, 0, sizeof *d);
	d->brightness = d->contrast = d->saturation = 1;
	for (i = 0; i < 3; i++)
		d->order[i] = i;
	if (width == 0 || height == 0)
		return; /* bt_aug_apply refuses the empty box */
	if (p->identity) {
		d->w = width;
		d->h = height;
		return;
	}
	if (!p->train) {
		draw_eval(p, width, height, d);
		return;
	}

	if (p->pad >= 0)
		draw_pad(p, width, height, g, d);
	else
		draw_crop(p, width, height, g, d);
	d->flip = bt_rng_uniform(g) < 0.5 && p->flip;
	d->brightness = (float)(1 - p->jitter + 2 * p->jitter * bt_rng_uniform(g));
	d->contrast = (float)(1 - p->jitter + 2 * p->jitter * bt_rng_uniform(g));
	d->saturation = (float)(1 - p->jitter + 2 * p->jitter * bt_rng_uniform(g));
	for (i = 2; i > 0; i--) {
		int k = (int)bt_rng_below(g, (uint64_t)i + 1), t = d->order[i];
		d->order[i] = d->order[k];
		d->order[k] = t;
	}
	/* 1 - u is in (0, 1], so the log is finite. */
	u1 = bt_rng_uniform(g);
	u2 = bt_rng_uniform(g);
	r = sqrt(-2 * log(1 - u1));
	d->alpha[0] = (float)(p->lighting * r * cos(two_pi * u2));
	d->alpha[1] = (float)(p->lighting * r * sin(two_pi * u2));
	u1 = bt_rng_uniform(g);
	u2 = bt_rng_uniform(g);
	d->alpha[2] = (float)(p->lighting * sqrt(-2 * log(1 - u1)) * cos(two_pi * u2));
	if (p->erase > 0)
		draw_erase(p, g, d);
}

/* ---- half precision ---- */

static inline uint16_t f32_to_f16(float f)
{
	uint32_t x, a, sign, e, m, q, rem, half, shift;

	memcpy(&x, &f, sizeof x);
	sign = (x >> 16) & 0x8000;
	a = x & 0x7fffffff;
	if (a >= 0x7f800000) /* inf stays inf; NaN stays NaN, made quiet */
		return (uint16_t)(sign | 0x7c00 |
				  (a > 0x7f800000 ? 0x200 | ((a >> 13) & 0x3ff) : 0));
	if (a >= 0x477ff000) /* 65520 and up round to inf */
		return (uint16_t)(sign | 0x7c00);
	if (a >= 0x38800000) {
		/* Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to
		 * nearest even; a carry out of the mantissa bumps the exponent, as it should. */
		a += 0xc8000fff + ((a >> 13) & 1);
		return (uint16_t)(sign | (a >> 13));
	}
	if (a < 0x33000000) /* below half the smallest subnormal (2^-25 ties to 0) */
		return (uint16_t)sign;
	/* Subnormal: the value in units of 2^-24, rounded to nearest even. */
	e = a >> 23;
	m = (a & 0x7fffff) | 0x800000;
	shift = 126 - e;
	q = m >> shift;
	rem = m & ((1u << shift) - 1);
	half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1)))
		q++;
	return (uint16_t)(sign | q);
}

uint16_t bt_f32_to_f16(float f)
{
	return f32_to_f16(f);
}

float bt_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
	float f;

	if (e == 0x1f)
		x = sign | 0x7f800000 | (m << 13);
	else if (e != 0)
		x = sign | ((e + 112) << 23) | (m << 13);
	else {
		f = (float)m * 0x1p-24f; /* exact */
		return sign ? -f : f;
	}
	memcpy(&f, &x, sizeof f);
	return f;
}

/* ---- scratch ---- */

struct buf {
	void *p;
	size_t cap;
};

struct bt_aug_scratch {
	bt_jpeg_decoder *jpeg;   /* made on the first JPEG */
	uint8_t *region;         /* (oh,ow,3) decoded JPEG block */
	size_t region_cap;
	struct buf mid;          /* uint8 (rows,size,C): after the horizontal pass */
	struct buf img;          /* uint8 (size,size,C): resampled, before colour */
	struct buf acc;          /* int32 (size*C,): vertical sums of one row */
	struct buf pat;          /* float (7, size*C+4): per-element constants of one row */
	struct buf sums;         /* uint32 (size*C,): column sums of img */
	/* Weights, reused: evaluation boxes repeat, one pair for landscape and one for
	 * portrait images. th and tv point at the pair in use. */
	struct bt_taps taps[2][2];
	struct bt_taps *th, *tv;
};

/* Contents are not kept: the buffers are refilled for every image. */
static int reserve(struct buf *b, size_t n)
{
	if (n <= b->cap)
		return BT_OK;
	free(b->p);
	b->cap = 0;
	if (!(b->p = malloc(n)))
		return bt_error(BT_ERR_NOMEM, "no memory for %zu bytes of scratch", n);
	b->cap = n;
	return BT_OK;
}

struct bt_aug_scratch *bt_aug_scratch_new(void)
{
	return calloc(1, sizeof(struct bt_aug_scratch));
}

void bt_aug_scratch_free(struct bt_aug_scratch *s)
{
	if (!s)
		return;
	bt_jpeg_decoder_free(s->jpeg);
	free(s->region);
	free(s->mid.p);
	free(s->img.p);
	free(s->acc.p);
	free(s->pat.p);
	free(s->sums.p);
	bt_taps_free(&s->taps[0][0]);
	bt_taps_free(&s->taps[0][1]);
	bt_taps_free(&s->taps[1][0]);
	bt_taps_free(&s->taps[1][1]);
	free(s);
}

int bt_aug_channels(const struct bt_record *rec)
{
	switch (rec->kind) {
	case BT_PAYLOAD_JPEG:
	case BT_PAYLOAD_PNG:
		return 3;
	case BT_PAYLOAD_RAW:
	case BT_PAYLOAD_F32:
	case BT_PAYLOAD_F16:
		return rec->ndim >= 3 ? (int)rec->shape[2] : 1;
	}
	return 0;
}

size_t bt_aug_out_bytes(const struct bt_aug_params *p, int channels)
{
	static const size_t elem[] = { 1, 4, 2 };
	size_t e = p->format >= 0 && p->format <= BT_AUG_F16 ? elem[p->format] : 1;
	return (size_t)p->size * p->size * (size_t)channels * e;
}

/* ---- output stage ----
 *
 * Portable loops in blocks of 16 elements (a trip count gcc vectorises at -O2), and AVX2
 * versions used when bt_simd(-1) says so. Both do the same float operations in the same
 * order (no fused multiply-add), so they give the same bytes. */

#define BLK 16

static inline uint8_t clip8(int32_t v)
{
	v >>= BT_RESAMPLE_BITS;
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

static inline uint8_t round8(float v)
{
	v += 0.5f;
	v = v < 0 ? 0 : v > 255 ? 255 : v;
	return (uint8_t)(int)v;
}

/* Pixels, plus their column sums when sums is not NULL. */
static void emit_u8(const int32_t *restrict acc, uint8_t *restrict o, size_t n,
		    uint32_t *restrict sums)
{
	size_t i, q, body = n - n % BLK;
	for (i = 0; i < body; i += BLK)
		for (q = 0; q < BLK; q++)
			o[i + q] = clip8(acc[i + q]);
	for (; i < n; i++)
		o[i] = clip8(acc[i]);
	if (sums)
		for (i = 0; i < n; i++)
			sums[i] += o[i];
}

/* (x - mean) / std with the reciprocal; mean and inv are (n,) patterns of one row. */
static void emit_f32(const int32_t *restrict acc, float *restrict o, size_t n,
		     const float *restrict mean, const float *restrict inv)
{
	size_t i, q, body = n - n % BLK;
	for (i = 0; i < body; i += BLK)
		for (q = 0; q < BLK; q++)
			o[i + q] = ((float)clip8(acc[i + q]) - mean[i + q]) * inv[i + q];
	for (; i < n; i++)
		o[i] = ((float)clip8(acc[i]) - mean[i]) * inv[i];
}

static void emit_f16(const int32_t *acc, uint16_t *o, size_t n, const float *mean,
		     const float *inv)
{
	size_t i;
	for (i = 0; i < n; i++)
		o[i] = f32_to_f16(((float)clip8(acc[i]) - mean[i]) * inv[i]);
}

/* One row of the colour pass: out = w0 x[i-2] + ... + w4 x[i+2] + b per element, w and b
 * in pat (see colour_apply); xf is (n + 4,) floats with xf[0], xf[1], xf[n+2], xf[n+3] = 0. */
#define STENCIL(i) (w[0][i] * xf[i] + w[1][i] * xf[(i) + 1] + w[2][i] * xf[(i) + 2] + \
		    w[3][i] * xf[(i) + 3] + w[4][i] * xf[(i) + 4] + w[5][i])

static void colour_row(const uint8_t *restrict x, size_t n, const float *restrict pat,
		       float *restrict xf, int format, void *restrict out)
{
	const float *restrict w[6] = { pat, pat + n, pat + 2 * n, pat + 3 * n, pat + 4 * n,
				       pat + 5 * n };
	size_t i, q, body = n - n % BLK;

	for (i = 0; i < body; i += BLK)
		for (q = 0; q < BLK; q++)
			xf[2 + i + q] = x[i + q];
	for (; i < n; i++)
		xf[2 + i] = x[i];
	if (format == BT_AUG_U8) {
		uint8_t *restrict o = out;
		for (i = 0; i < body; i += BLK)
			for (q = 0; q < BLK; q++)
				o[i + q] = round8(STENCIL(i + q));
		for (; i < n; i++)
			o[i] = round8(STENCIL(i));
	} else if (format == BT_AUG_F32) {
		float *restrict o = out;
		for (i = 0; i < body; i += BLK)
			for (q = 0; q < BLK; q++)
				o[i + q] = STENCIL(i + q);
		for (; i < n; i++)
			o[i] = STENCIL(i);
	} else {
		uint16_t *o = out;
		for (i = 0; i < n; i++)
			o[i] = f32_to_f16(STENCIL(i));
	}
}

#if BT_X86
/* CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c"). AVX2 in
 * use already means the OS saves the YMM registers F16C needs. */
static int cpu_f16c(void)
{
	static int known = -1;
	int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
	unsigned a, b, c, d;

	if (v < 0) {
		v = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
		__atomic_store_n(&known, v, __ATOMIC_RELAXED);
	}
	return v;
}

/* 16 at a time; the saturating packs clamp to 0..255 as clip8 does, and 128-bit packs keep
 * the order. */
__attribute__((target("avx2"))) static void
emit_u8_avx2(const int32_t *acc, uint8_t *o, size_t n, uint32_t *sums)
{
	size_t i;
	for (i = 0; i + 16 <= n; i += 16) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(acc + i));
		__m256i b = _mm256_loadu_si256((const __m256i *)(acc + i + 8));
		__m128i w0, w1, px;
		a = _mm256_srai_epi32(a, BT_RESAMPLE_BITS);
		b = _mm256_srai_epi32(b, BT_RESAMPLE_BITS);
		w0 = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
		w1 = _mm_packs_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
		px = _mm_packus_epi16(w0, w1);
		_mm_storeu_si128((__m128i *)(o + i), px);
		if (sums) {
			__m256i *s = (__m256i *)(sums + i);
			_mm256_storeu_si256(s, _mm256_add_epi32(_mm256_loadu_si256(s),
								_mm256_cvtepu8_epi32(px)));
			_mm256_storeu_si256(s + 1, _mm256_add_epi32(
				_mm256_loadu_si256(s + 1),
				_mm256_cvtepu8_epi32(_mm_srli_si128(px, 8))));
		}
	}
	for (; i < n; i++) {
		o[i] = clip8(acc[i]);
		if (sums)
			sums[i] += o[i];
	}
}

__attribute__((target("avx2"))) static inline __m256 pixels_ps(const int32_t *acc)
{
	__m256i v = _mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)acc),
				      BT_RESAMPLE_BITS);
	v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_setzero_si256()), _mm256_set1_epi32(255));
	return _mm256_cvtepi32_ps(v);
}

__attribute__((target("avx2"))) static void
emit_f32_avx2(const int32_t *acc, float *o, size_t n, const float *mean, const float *inv)
{
	size_t i;
	for (i = 0; i + 8 <= n; i += 8) {
		__m256 f = _mm256_sub_ps(pixels_ps(acc + i), _mm256_loadu_ps(mean + i));
		_mm256_storeu_ps(o + i, _mm256_mul_ps(f, _mm256_loadu_ps(inv + i)));
	}
	for (; i < n; i++)
		o[i] = ((float)clip8(acc[i]) - mean[i]) * inv[i];
}

/* F16C rounds to nearest even and treats infinities, NaNs and subnormals as f32_to_f16. */
__attribute__((target("avx2,f16c"))) static void
emit_f16_avx2(const int32_t *acc, uint16_t *o, size_t n, const float *mean, const float *inv)
{
	size_t i;
	for (i = 0; i + 8 <= n; i += 8) {
		__m256 f = _mm256_sub_ps(pixels_ps(acc + i), _mm256_loadu_ps(mean + i));
		f = _mm256_mul_ps(f, _mm256_loadu_ps(inv + i));
		_mm_storeu_si128((__m128i *)(o + i), _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
	}
	for (; i < n; i++)
		o[i] = f32_to_f16(((float)clip8(acc[i]) - mean[i]) * inv[i]);
}

__attribute__((target("avx2,f16c"))) static void
colour_row_avx2(const uint8_t *x, size_t n, const float *pat, float *xf, int format,
		void *out)
{
	const float *w[6] = { pat, pat + n, pat + 2 * n, pat + 3 * n, pat + 4 * n, pat + 5 * n };
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(xf + 2 + i, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
						      _mm_loadl_epi64((const __m128i *)(x + i)))));
	for (; i < n; i++)
		xf[2 + i] = x[i];
	for (i = 0; i + 8 <= n; i += 8) {
		__m256 y = _mm256_mul_ps(_mm256_loadu_ps(w[0] + i), _mm256_loadu_ps(xf + i));
		int j;
		for (j = 1; j < 5; j++)
			y = _mm256_add_ps(y, _mm256_mul_ps(_mm256_loadu_ps(w[j] + i),
							   _mm256_loadu_ps(xf + i + j)));
		y = _mm256_add_ps(y, _mm256_loadu_ps(w[5] + i));
		if (format == BT_AUG_U8) {
			__m256i v;
			__m128i h;
			y = _mm256_add_ps(y, _mm256_set1_ps(0.5f));
			y = _mm256_min_ps(_mm256_max_ps(y, _mm256_setzero_ps()),
					  _mm256_set1_ps(255));
			v = _mm256_cvttps_epi32(y);
			h = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
			_mm_storel_epi64((__m128i *)((uint8_t *)out + i), _mm_packus_epi16(h, h));
		} else if (format == BT_AUG_F32) {
			_mm256_storeu_ps((float *)out + i, y);
		} else {
			_mm_storeu_si128((__m128i *)((uint16_t *)out + i),
					 _mm256_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT));
		}
	}
	for (; i < n; i++) {
		if (format == BT_AUG_U8)
			((uint8_t *)out)[i] = round8(STENCIL(i));
		else if (format == BT_AUG_F32)
			((float *)out)[i] = STENCIL(i);
		else
			((uint16_t *)out)[i] = f32_to_f16(STENCIL(i));
	}
}
#endif

/* Which kernels this call uses: 0 portable, 1 AVX2, 2 AVX2 and F16C. */
static int simd_level(void)
{
#if BT_X86
	if (bt_simd(-1))
		return cpu_f16c() ? 2 : 1;
#endif
	return 0;
}

static void emit_row(int simd, int format, const int32_t *acc, void *o, size_t n,
		     const float *mean, const float *inv)
{
#if BT_X86
	if (simd && format == BT_AUG_U8) {
		emit_u8_avx2(acc, o, n, NULL);
		return;
	}
	if (simd && format == BT_AUG_F32) {
		emit_f32_avx2(acc, o, n, mean, inv);
		return;
	}
	if (simd == 2 && format == BT_AUG_F16) {
		emit_f16_avx2(acc, o, n, mean, inv);
		return;
	}
#endif
	(void)simd;
	if (format == BT_AUG_U8)
		emit_u8(acc, o, n, NULL);
	else if (format == BT_AUG_F32)
		emit_f32(acc, o, n, mean, inv);
	else
		emit_f16(acc, o, n, mean, inv);
}

/* Colour composition. The image after the ops is M x + v for every pixel x of the resampled
 * image (C = 3), in double: brightness and contrast scale M, saturation mixes in the grey,
 * lighting moves v, and contrast's grey mean is coef . (M mu + v) for the mean colour mu. */
static const double grey_coef[3] = { 0.299, 0.587, 0.114 };
static const double eigval[3] = { 55.46, 4.794, 1.148 };
static const double eigvec[3][3] = {
	{ -0.5675, 0.7192, 0.4009 },
	{ -0.5808, -0.0045, -0.8140 },
	{ -0.5836, -0.6948, 0.4203 },
};

static void colour_affine(const struct bt_aug_colour *d, int C, double m[3][3], double v[3])
{
	const double *mu = d->mean;
	double gm, t[3][3], tv[3];
	int op, i, j, k;

	memset(m, 0, 9 * sizeof(double));
	for (i = 0; i < 3; i++) {
		m[i][i] = 1;
		v[i] = 0;
	}
	for (op = 0; op < 3; op++) {
		switch (d->order[op]) {
		case 0: /* brightness: x *= b */
			for (i = 0; i < 3; i++) {
				for (j = 0; j < 3; j++)
					m[i][j] *= d->brightness;
				v[i] *= d->brightness;
			}
			break;
		case 1: /* contrast: x = c x + (1 - c) mean(grey) */
			gm = 0;
			for (i = 0; i < C; i++) {
				double e = v[i];
				for (j = 0; j < C; j++)
					e += m[i][j] * mu[j];
				gm += C == 1 ? e : grey_coef[i] * e;
			}
			for (i = 0; i < 3; i++) {
				for (j = 0; j < 3; j++)
					m[i][j] *= d->contrast;
				v[i] = d->contrast * v[i] + (1 - d->contrast) * gm;
			}
			break;
		case 2: /* saturation: x = s x + (1 - s) grey(x); grey has no colour to lose */
			if (C == 1)
				break;
			for (i = 0; i < 3; i++) {
				for (j = 0; j < 3; j++) {
					t[i][j] = 0;
					for (k = 0; k < 3; k++)
						t[i][j] += ((i == k) * (double)d->saturation +
							    (1 - d->saturation) * grey_coef[k]) *
							   m[k][j];
				}
				tv[i] = d->saturation * v[i];
				for (k = 0; k < 3; k++)
					tv[i] += (1 - d->saturation) * grey_coef[k] * v[k];
			}
			memcpy(m, t, sizeof t);
			memcpy(v, tv, sizeof tv);
			break;
		}
	}
	if (C == 3)
		for (i = 0; i < 3; i++)
			for (j = 0; j < 3; j++)
				v[i] += eigvec[i][j] * d->alpha[j] * eigval[j];
}

static int colour_needed(const struct bt_aug_colour *d, int C)
{
	return d->brightness != 1 || d->contrast != 1 ||
	       (C == 3 && (d->saturation != 1 || d->alpha[0] != 0 || d->alpha[1] != 0 ||
			   d->alpha[2] != 0));
}

/* Nothing left to do. */
static void colour_neutral(struct bt_aug_colour *c)
{
	memset(c, 0, sizeof *c);
	c->brightness = c->contrast = c->saturation = 1;
	for (int i = 0; i < 3; i++)
		c->order[i] = i;
}

/* The draw's colour operations, for a crop of mean colour mu. */
static void colour_of_draw(const struct bt_aug_draw *d, const double mu[3], struct bt_aug_colour *c)
{
	colour_neutral(c);
	c->brightness = d->brightness;
	c->contrast = d->contrast;
	c->saturation = d->saturation;
	for (int i = 0; i < 3; i++) {
		c->order[i] = d->order[i];
		c->alpha[i] = d->alpha[i];
		c->mean[i] = mu[i];
	}
}

void bt_aug_colour_affine(const struct bt_aug_colour *col, int C, const float *mean,
			  const float *std, struct bt_aug_affine *a)
{
	double m[3][3], v[3];
	int c, j;

	memset(a, 0, sizeof *a);
	for (c = 0; c < 3; c++) {
		a->mean[c] = mean ? mean[c] : 0.0f;
		a->inv[c] = mean ? 1.0f / std[c] : 1.0f;
	}
	memcpy(a->erase, col->erase, sizeof a->erase);
	if (!(a->colour = colour_needed(col, C)))
		return;
	colour_affine(col, C, m, v);
	/* The normalisation folds in, in double, then each constant rounds once. */
	for (c = 0; c < C; c++) {
		double sc = mean ? 1.0 / std[c] : 1, mn = mean ? mean[c] : 0;
		for (j = 0; j < C; j++)
			a->w[c][j] = (float)(m[c][j] * sc);
		a->b[c] = (float)((v[c] - mn) * sc);
	}
}

/* Applies the map a (colour 1) to img, a row at a time. Per element of an interleaved
 * row, channel c = i % 3 reads x[i - c .. i - c + 2], i.e. a 5-tap stencil x[i - 2 .. i + 2]
 * with per-element weights (zero where a tap belongs to another pixel), which vectorises
 * where a per-pixel 3x3 product would not. */
static void colour_apply(const struct bt_aug_affine *a, int simd, const uint8_t *img, size_t S,
			 int C, int format, void *out, float *pat)
{
	const size_t n = S * (size_t)C;
	const size_t esize = format == BT_AUG_U8 ? 1 : format == BT_AUG_F32 ? 4 : 2;
	float *xf = pat + 6 * n; /* (n + 4,) */
	size_t i, y;
	int c, j;

	for (c = 0; c < C; c++) {
		for (i = (size_t)c; i < n; i += (size_t)C) {
			for (j = 0; j < 5; j++)
				pat[j * n + i] = 0;
			for (j = 0; j < C; j++)
				pat[(2 - c + j) * n + i] = a->w[c][j];
			pat[5 * n + i] = a->b[c];
		}
	}
	xf[0] = xf[1] = xf[n + 2] = xf[n + 3] = 0;
	for (y = 0; y < S; y++) {
		uint8_t *o = (uint8_t *)out + y * n * esize;
#if BT_X86
		if (simd == 2 || (simd && format != BT_AUG_F16)) {
			colour_row_avx2(img + y * n, n, pat, xf, format, o);
			continue;
		}
#endif
		colour_row(img + y * n, n, pat, xf, format, o);
	}
}

/* Random erasing's box (x, y, w, h) in an S x S x C output: +0 in float formats; in uint8,
 * the bytes of keep at the same places when keep is given, else fill (one per channel). */
static void erase_out(void *out, size_t S, int C, int format, const int32_t *box, const uint8_t *keep,
		      const uint8_t *fill)
{
	const size_t esize = format == BT_AUG_U8 ? 1 : format == BT_AUG_F32 ? 4 : 2;
	const size_t x0 = (size_t)box[0], y0 = (size_t)box[1], w = (size_t)box[2], h = (size_t)box[3];
	size_t y, i;

	if (x0 + w > S || y0 + h > S)
		return;
	for (y = y0; y < y0 + h; y++) {
		size_t at = (y * S + x0) * (size_t)C, len = w * (size_t)C;
		uint8_t *o = (uint8_t *)out + at * esize;
		if (format != BT_AUG_U8)
			memset(o, 0, len * esize); /* +0.0 in float32 and float16 */
		else if (keep)
			memcpy(o, keep + at, len);
		else
			for (i = 0; i < len; i++)
				o[i] = fill[i % (size_t)C];
	}
}

int bt_aug_colour_apply(const struct bt_aug_affine *a, const uint8_t *img, uint32_t size, int C,
			int format, void *out, struct bt_aug_scratch *s)
{
	const size_t S = size, n = S * (size_t)C;
	const size_t esize = format == BT_AUG_U8 ? 1 : format == BT_AUG_F32 ? 4 : 2;
	const int simd = simd_level();
	int32_t *acc;
	float *pat;
	size_t i, y;
	int rc;

	if (size < 1 || size > BT_AUG_MAX_SIZE || (C != 1 && C != 3) ||
	    (format != BT_AUG_U8 && format != BT_AUG_F32 && format != BT_AUG_F16))
		return bt_error(BT_ERR_INVALID, "colour: bad parameters (size %u, %d channels, format %d)",
				(unsigned)size, C, format);
	if ((rc = reserve(&s->pat, (7 * n + 4) * sizeof(float))) != BT_OK ||
	    (rc = reserve(&s->acc, n * sizeof(int32_t))) != BT_OK)
		return rc;
	pat = s->pat.p;
	if (a->colour) {
		colour_apply(a, simd, img, S, C, format, out, pat);
	} else {
		/* Normalisation alone: the pixels back in the resampler's fixed point, so that the
		 * output stage is the very one bt_aug_apply uses. */
		acc = s->acc.p;
		for (i = 0; i < n; i++) {
			pat[i] = a->mean[i % (size_t)C];
			pat[n + i] = a->inv[i % (size_t)C];
		}
		for (y = 0; y < S; y++) {
			const uint8_t *x = img + y * n;
			for (i = 0; i < n; i++)
				acc[i] = (int32_t)x[i] << BT_RESAMPLE_BITS;
			emit_row(simd, format, acc, (uint8_t *)out + y * n * esize, n, pat, pat + n);
		}
	}
	if (a->erase[2] > 0 && a->erase[4] == (int32_t)size)
		erase_out(out, S, C, format, a->erase, img, NULL);
	return BT_OK;
}

/* Resamples the box (in the coordinates of src, an image of sw x sh pixels of which src
 * holds the rows and columns from (ox, oy) on) to the output, flips, colours, converts.
 * With p->defer_colour the output is the uint8 crop and col (when not NULL) gets the
 * colour operations and the crop's mean colour. */
static int transform(const struct bt_aug_params *p, const struct bt_aug_draw *d,
		     const uint8_t *src, size_t stride, uint32_t ox, uint32_t oy, int C,
		     void *out, struct bt_aug_colour *col, struct bt_aug_scratch *s)
{
	const size_t S = p->size, n = S * (size_t)C;
	const size_t esize = p->format == BT_AUG_U8 ? 1 : p->format == BT_AUG_F32 ? 4 : 2;
	const int defer = p->defer_colour, simd = simd_level();
	struct bt_aug_colour c;
	struct bt_aug_affine a;
	double mu[3] = { 0, 0, 0 };
	uint32_t rows, y, *sums;
	uint8_t *mid, *img;
	int32_t *acc;
	float *pat;
	size_t i;
	int rc, colour;

	colour_of_draw(d, mu, &c);
	colour = colour_needed(&c, C);
	rows = (uint32_t)(s->tv->last - s->tv->first);
	if ((rc = reserve(&s->mid, (size_t)rows * n)) != BT_OK ||
	    (rc = reserve(&s->acc, n * sizeof(int32_t))) != BT_OK ||
	    (rc = reserve(&s->pat, (7 * n + 4) * sizeof(float))) != BT_OK)
		return rc;
	if (colour && ((!defer && (rc = reserve(&s->img, S * n)) != BT_OK) ||
		       (rc = reserve(&s->sums, n * sizeof(uint32_t))) != BT_OK))
		return rc;
	mid = s->mid.p;
	acc = s->acc.p;
	pat = s->pat.p;

	bt_resample_h(src + (size_t)(s->tv->first - (int32_t)oy) * stride, stride, (int32_t)ox,
		      rows, C, s->th, d->flip, mid);

	if (defer) {
		/* The crop as the colour path below keeps it (img), its column sums only when
		 * contrast will need the mean. */
		sums = colour ? s->sums.p : NULL;
		if (sums)
			memset(sums, 0, n * sizeof *sums);
		for (y = 0; y < S; y++) {
			bt_resample_v_row(mid, n, s->tv->first, s->tv, y, acc);
#if BT_X86
			if (simd) {
				emit_u8_avx2(acc, (uint8_t *)out + y * n, n, sums);
				continue;
			}
#endif
			emit_u8(acc, (uint8_t *)out + y * n, n, sums);
		}
		if (col) {
			for (i = 0; sums && i < n; i++)
				mu[i % C] += sums[i];
			for (i = 0; sums && i < (size_t)C; i++)
				mu[i] /= (double)S * S;
			colour_of_draw(d, mu, col);
		}
		return BT_OK;
	}

	if (!colour) {
		for (i = 0; i < n && p->format != BT_AUG_U8; i++) {
			pat[i] = p->mean[i % C];
			pat[n + i] = 1.0f / p->std[i % C];
		}
		for (y = 0; y < S; y++) {
			bt_resample_v_row(mid, n, s->tv->first, s->tv, y, acc);
			emit_row(simd, p->format, acc, (uint8_t *)out + y * n * esize, n, pat,
				 pat + n);
		}
		return BT_OK;
	}

	/* Colour needs the mean first: keep the resampled image, with its column sums. */
	img = s->img.p;
	sums = s->sums.p;
	memset(sums, 0, n * sizeof *sums);
	for (y = 0; y < S; y++) {
		bt_resample_v_row(mid, n, s->tv->first, s->tv, y, acc);
#if BT_X86
		if (simd) {
			emit_u8_avx2(acc, img + y * n, n, sums);
			continue;
		}
#endif
		emit_u8(acc, img + y * n, n, sums);
	}
	for (i = 0; i < n; i++)
		mu[i % C] += sums[i];
	for (i = 0; i < (size_t)C; i++)
		mu[i] /= (double)S * S;
	colour_of_draw(d, mu, &c);
	bt_aug_colour_affine(&c, C, p->format == BT_AUG_U8 ? NULL : p->mean, p->std, &a);
	colour_apply(&a, simd, img, S, C, p->format, out, pat);
	return BT_OK;
}

/* The padded crop (p->pad >= 0) at the image's scale: the box's pixels of src (an image of
 * sw x sh pixels of which src holds the rows and columns from (ox, oy) on), black outside
 * the image, flipped if drawn, as a uint8 crop; then bt_aug_colour_apply's colour and
 * output stage, which is transform's. With p->defer_colour the output is the crop and col
 * (when not NULL) gets the colour operations and the crop's mean colour. */
static int pad_crop(const struct bt_aug_params *p, const struct bt_aug_draw *d, const uint8_t *src,
		    size_t stride, uint32_t ox, uint32_t oy, uint32_t sw, uint32_t sh, int C,
		    void *out, struct bt_aug_colour *col, struct bt_aug_scratch *s)
{
	const int64_t S = p->size, x0 = (int64_t)d->x, y0 = (int64_t)d->y;
	const int64_t xa = x0 > 0 ? x0 : 0, xb = x0 + S < (int64_t)sw ? x0 + S : (int64_t)sw;
	const size_t n = (size_t)S * (size_t)C;
	double mu[3] = { 0, 0, 0 };
	struct bt_aug_colour c;
	struct bt_aug_affine a;
	int64_t x, y;
	uint8_t *img;
	size_t i;
	int rc;

	if (!p->defer_colour && (rc = reserve(&s->img, (size_t)S * n)) != BT_OK)
		return rc;
	img = p->defer_colour ? out : s->img.p;
	memset(img, 0, (size_t)S * n);
	for (y = 0; y < S && xa < xb; y++) {
		const uint8_t *row;
		uint8_t *o = img + (size_t)y * n;
		if (y0 + y < 0 || y0 + y >= (int64_t)sh)
			continue;
		row = src + (size_t)(y0 + y - oy) * stride + (size_t)(xa - ox) * C;
		if (!d->flip) {
			memcpy(o + (size_t)(xa - x0) * C, row, (size_t)(xb - xa) * C);
			continue;
		}
		for (x = xa; x < xb; x++)
			memcpy(o + (size_t)(S - 1 - (x - x0)) * C, row + (size_t)(x - xa) * C, (size_t)C);
	}
	colour_of_draw(d, mu, &c);
	if (colour_needed(&c, C)) {
		for (i = 0; i < (size_t)S * n; i++)
			mu[i % C] += img[i];
		for (i = 0; i < (size_t)C; i++)
			mu[i] /= (double)S * S;
		colour_of_draw(d, mu, &c);
	}
	if (p->defer_colour) {
		if (col)
			*col = c;
		return BT_OK;
	}
	bt_aug_colour_affine(&c, C, p->format == BT_AUG_U8 ? NULL : p->mean, p->std, &a);
	return bt_aug_colour_apply(&a, img, p->size, C, p->format, out, s);
}

/* Weights for the box (in scaled pixels of an sw x sh image). Training clamps the filter
 * to the crop, evaluation to the image (see the top of the file). */
static int plan(const struct bt_aug_params *p, const struct bt_aug_draw *d, int denom,
		uint32_t sw, uint32_t sh, struct bt_aug_scratch *s)
{
	double x0 = d->x / denom, x1 = (d->x + d->w) / denom;
	double y0 = d->y / denom, y1 = (d->y + d->h) / denom;
	int32_t xl = 0, xh = (int32_t)sw, yl = 0, yh = (int32_t)sh;
	int rc;

	if (p->train) {
		xl = (int32_t)floor(x0);
		yl = (int32_t)floor(y0);
		if (ceil(x1) < xh)
			xh = (int32_t)ceil(x1);
		if (ceil(y1) < yh)
			yh = (int32_t)ceil(y1);
	}
	s->th = &s->taps[!p->train && sh > sw][0];
	s->tv = &s->taps[!p->train && sh > sw][1];
	if ((rc = bt_taps_init(s->th, x0, x1, xl, xh, p->size)) != BT_OK)
		return rc;
	return bt_taps_init(s->tv, y0, y1, yl, yh, p->size);
}

/* An already augmented image: normalisation or conversion only. */
static int apply_identity(const struct bt_aug_params *p, const struct bt_record *rec, void *out)
{
	static const size_t in_elem[] = { [BT_PAYLOAD_RAW] = 1, [BT_PAYLOAD_F32] = 4, [BT_PAYLOAD_F16] = 2 };
	int C = bt_aug_channels(rec);
	size_t n, i;

	if (rec->kind != BT_PAYLOAD_RAW && rec->kind != BT_PAYLOAD_F32 && rec->kind != BT_PAYLOAD_F16)
		return bt_error(BT_ERR_UNSUPPORTED, "an augmented stream holds raw, f32 or f16 images, not %s",
				bt_payload_name(rec->kind));
	if (rec->ndim != 3 || rec->shape[0] != p->size || rec->shape[1] != p->size || C < 1 || C > 3)
		return bt_error(BT_ERR_FORMAT, "augmented image is %ux%ux%u, expected %ux%u with 1 to 3 channels",
				(unsigned)rec->shape[0], (unsigned)rec->shape[1], (unsigned)rec->shape[2],
				(unsigned)p->size, (unsigned)p->size);
	n = (size_t)p->size * p->size * C;
	if (rec->size != n * in_elem[rec->kind])
		return bt_error(BT_ERR_FORMAT, "augmented image of %llu bytes, shape says %zu",
				(unsigned long long)rec->size, n * in_elem[rec->kind]);
	if (rec->kind != BT_PAYLOAD_RAW && p->format == BT_AUG_U8)
		return bt_error(BT_ERR_UNSUPPORTED, "cannot turn normalised %s images back into uint8",
				bt_payload_name(rec->kind));
	for (i = 0; i < n; i++) {
		float v;
		if (rec->kind == BT_PAYLOAD_RAW) {
			if (p->format == BT_AUG_U8) {
				((uint8_t *)out)[i] = rec->data[i];
				continue;
			}
			v = ((float)rec->data[i] - p->mean[i % C]) * (1.0f / p->std[i % C]);
		} else if (rec->kind == BT_PAYLOAD_F32) {
			memcpy(&v, rec->data + 4 * i, 4);
		} else {
			uint16_t h;
			memcpy(&h, rec->data + 2 * i, 2);
			v = bt_f16_to_f32(h);
		}
		if (p->format == BT_AUG_F32)
			((float *)out)[i] = v;
		else
			((uint16_t *)out)[i] = bt_f32_to_f16(v);
	}
	return BT_OK;
}

int bt_aug_apply(const struct bt_aug_params *p, const struct bt_aug_draw *d,
		 const struct bt_record *rec, void *out, struct bt_aug_scratch *s)
{
	return bt_aug_apply_deferred(p, d, rec, out, NULL, s);
}

static int apply_image(const struct bt_aug_params *p, const struct bt_aug_draw *d,
		       const struct bt_record *rec, void *out, struct bt_aug_colour *col,
		       struct bt_aug_scratch *s);

int bt_aug_apply_deferred(const struct bt_aug_params *p, const struct bt_aug_draw *d,
			  const struct bt_record *rec, void *out, struct bt_aug_colour *col,
			  struct bt_aug_scratch *s)
{
	int rc = apply_image(p, d, rec, out, col, s);
	uint8_t fill[3];
	int C, c;

	if (rc != BT_OK || p->identity || d->erase[2] <= 0)
		return rc;
	/* Random erasing, last (torchvision applies it after Normalize): the mean colour, which
	 * normalises to 0; the deferred colour path keeps the box to give exactly 0 there. */
	C = bt_aug_channels(rec);
	for (c = 0; c < 3; c++) {
		double m = nearbyint(p->mean[c]);
		fill[c] = (uint8_t)(m < 0 ? 0 : m > 255 ? 255 : m);
	}
	erase_out(out, p->size, C, p->format, d->erase, NULL, fill);
	if (col && p->defer_colour) {
		memcpy(col->erase, d->erase, sizeof d->erase);
		col->erase[4] = (int32_t)p->size;
	}
	return BT_OK;
}

static int apply_image(const struct bt_aug_params *p, const struct bt_aug_draw *d,
		       const struct bt_record *rec, void *out, struct bt_aug_colour *col,
		       struct bt_aug_scratch *s)
{
	struct bt_image im = { 0 };
	uint32_t width, height;
	double tol;
	int C, rc, denom = 1;
	int32_t pad;

	if (col)
		colour_neutral(col);
	/* What would overrun out if it were wrong; bt_aug_check does the rest. */
	if (p->size < 1 || p->size > BT_AUG_MAX_SIZE ||
	    (p->format != BT_AUG_U8 && p->format != BT_AUG_F32 && p->format != BT_AUG_F16) ||
	    (p->defer_colour && p->format != BT_AUG_U8))
		return bt_error(BT_ERR_INVALID, "bad parameters (size %u, format %d%s)",
				(unsigned)p->size, p->format,
				p->defer_colour ? ", deferred colour" : "");
	if (p->identity)
		return apply_identity(p, rec, out);
	if (rec->kind != BT_PAYLOAD_JPEG && rec->kind != BT_PAYLOAD_PNG &&
	    rec->kind != BT_PAYLOAD_RAW)
		return bt_error(BT_ERR_UNSUPPORTED, "cannot augment a %s payload",
				bt_payload_name(rec->kind));
	if (rec->ndim < 2 || rec->shape[0] == 0 || rec->shape[1] == 0 ||
	    rec->shape[0] > INT32_MAX || rec->shape[1] > INT32_MAX)
		return bt_error(BT_ERR_FORMAT, "image record with bad shape (ndim %d, %ux%u)",
				rec->ndim, (unsigned)rec->shape[1], (unsigned)rec->shape[0]);
	height = rec->shape[0];
	width = rec->shape[1];
	pad = p->train && p->pad >= 0 ? p->pad : -1;
	if (pad >= 0 && ((uint64_t)width + 2 * (uint64_t)pad < p->size ||
			 (uint64_t)height + 2 * (uint64_t)pad < p->size))
		return bt_error(BT_ERR_INVALID, "image is %ux%u: padded by %d it is smaller than the "
				"%ux%u crop", (unsigned)width, (unsigned)height, (int)pad,
				(unsigned)p->size, (unsigned)p->size);
	/* The box comes from the same shape; allow for rounding in its corner. A padded crop's
	 * box is whole pixels, the output's size, within the padded image. */
	tol = 1e-6 * (width > height ? width : height);
	if (pad >= 0 ? !(d->w == p->size && d->h == p->size && d->x == floor(d->x) &&
			 d->y == floor(d->y) && d->x >= -pad && d->y >= -pad &&
			 d->x + d->w <= (double)width + pad && d->y + d->h <= (double)height + pad)
		     : !(d->w > 0 && d->h > 0 && d->x >= 0 && d->y >= 0 &&
			 d->x + d->w <= width + tol && d->y + d->h <= height + tol))
		return bt_error(BT_ERR_INVALID, "crop box (%g, %g, %g, %g) not inside %ux%u%s",
				d->x, d->y, d->w, d->h, (unsigned)width, (unsigned)height,
				pad >= 0 ? " and its padding" : "");

	if (rec->kind == BT_PAYLOAD_RAW) {
		C = bt_aug_channels(rec);
		if (C != 1 && C != 3)
			return bt_error(BT_ERR_UNSUPPORTED, "raw image with %d channels (want 1 or 3)",
					C);
		if (rec->size != (uint64_t)width * height * C)
			return bt_error(BT_ERR_FORMAT, "raw image of %llu bytes, shape says %ux%ux%d",
					(unsigned long long)rec->size, (unsigned)height,
					(unsigned)width, C);
		if (pad >= 0)
			return pad_crop(p, d, rec->data, (size_t)width * C, 0, 0, width, height, C,
					out, col, s);
		if ((rc = plan(p, d, 1, width, height, s)) != BT_OK)
			return rc;
		return transform(p, d, rec->data, (size_t)width * C, 0, 0, C, out, col, s);
	}

	if (p->max_pixels && (uint64_t)width * height > p->max_pixels)
		return bt_error(BT_ERR_TOOBIG,
				"image is %ux%u pixels, over the limit of %llu (--max-pixels)",
				(unsigned)width, (unsigned)height,
				(unsigned long long)p->max_pixels);

	if (rec->kind == BT_PAYLOAD_PNG) {
		if (bt_image_sniff(rec->data, rec->size) != BT_IMAGE_PNG)
			return bt_error(BT_ERR_IMAGE, "not a PNG image");
		if ((rc = bt_image_decode(rec->data, rec->size, p->max_pixels, 0, &im)) != BT_OK)
			return rc == BT_ERR_TOOBIG || rc == BT_ERR_NOMEM ? rc : BT_ERR_IMAGE;
		if (im.width != width || im.height != height) {
			rc = bt_error(BT_ERR_FORMAT, "PNG is %ux%u, record says %ux%u",
				      (unsigned)im.width, (unsigned)im.height, (unsigned)width,
				      (unsigned)height);
			goto out;
		}
		if (pad >= 0) {
			rc = pad_crop(p, d, im.pixels, (size_t)width * 3, 0, 0, width, height, 3,
				      out, col, s);
			goto out;
		}
		if ((rc = plan(p, d, 1, width, height, s)) != BT_OK)
			goto out;
		rc = transform(p, d, im.pixels, (size_t)width * 3, 0, 0, 3, out, col, s);
		goto out;
	}

	/* JPEG: DCT-domain scaling while the box stays at least the output size; a padded
	 * crop decodes the part of its box inside the image, at the image's scale. */
	{
		struct bt_jpeg_region r = { 0 };
		r.width = width;
		r.height = height;
		if (pad >= 0) {
			r.denom = 1;
			r.x0 = (uint32_t)fmin(fmax(d->x, 0), width);
			r.y0 = (uint32_t)fmin(fmax(d->y, 0), height);
			r.x1 = (uint32_t)fmin(fmax(d->x + d->w, 0), width);
			r.y1 = (uint32_t)fmin(fmax(d->y + d->h, 0), height);
			if (r.x0 >= r.x1 || r.y0 >= r.y1)
				r.x0 = r.y0 = 0, r.x1 = r.y1 = 1; /* all padding: any pixel will do */
		} else {
			while (denom < 8 && d->w / (denom * 2) >= p->size && d->h / (denom * 2) >= p->size)
				denom *= 2;
			r.denom = denom;
			if ((rc = plan(p, d, denom, bt_jpeg_scaled(width, denom),
				       bt_jpeg_scaled(height, denom), s)) != BT_OK)
				goto out;
			r.x0 = (uint32_t)s->th->first;
			r.x1 = (uint32_t)s->th->last;
			r.y0 = (uint32_t)s->tv->first;
			r.y1 = (uint32_t)s->tv->last;
		}
		if (!s->jpeg && (rc = bt_jpeg_decoder_new(&s->jpeg)) != BT_OK)
			goto out;
		if ((rc = bt_jpeg_decode_region(s->jpeg, rec->data, rec->size, &r, &s->region,
						&s->region_cap)) != BT_OK)
			goto out;
		if (pad >= 0)
			rc = pad_crop(p, d, s->region, (size_t)r.ow * 3, r.ox, r.oy, width, height, 3,
				      out, col, s);
		else
			rc = transform(p, d, s->region, (size_t)r.ow * 3, r.ox, r.oy, 3, out, col, s);
	}
out:
	bt_image_free(&im);
	return rc;
}
