/* test_augment.c: unit tests for lib/augment.c. The draw is checked against torchvision
 * 0.14's rules (crop statistics against the acceptance region integrated numerically, the
 * fallback, Resize + CenterCrop coordinates worked out by hand), the colour operations
 * against their formulas on images small enough that the resampling is the identity, and the
 * whole transform against the library's own unfused path (full decode, then
 * bt_image_resize_box), against values from PIL/torchvision, and against itself with the
 * AVX2 kernels off; and deferred colour (the uint8 crop, then bt_aug_colour_affine and
 * bt_aug_colour_apply, which is what a GPU's input kernel reproduces) against the whole
 * transform, bit for bit. Images are made here; no fixture files. Under valgrind, run with
 * JSIMD_FORCENONE=1: libjpeg-turbo's SIMD upsamplers and scaled IDCTs read padding that
 * valgrind calls uninitialised (the pixels are the same without them). */
#include "augment.h"
#include "bt.h"
#include "image.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

/* Gradients in R and G, a 20-pixel checkerboard in B: smooth enough that a JPEG encoder's
 * version hardly changes it, sharp enough that resampling shows. (H,W,3) */
static uint8_t *smooth(uint32_t w, uint32_t h)
{
	uint8_t *p = malloc((size_t)w * h * 3);
	uint32_t x, y;
	for (y = 0; y < h; y++)
		for (x = 0; x < w; x++) {
			uint8_t *q = p + ((size_t)y * w + x) * 3;
			q[0] = (uint8_t)(x * 255 / (w - 1));
			q[1] = (uint8_t)(y * 255 / (h - 1));
			q[2] = (uint8_t)(((x / 20 + y / 20) % 2) ? 200 : 40);
		}
	return p;
}

static uint8_t *noise(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n);
	size_t i;
	for (i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (uint8_t)(seed >> 24);
	}
	return p;
}

static struct bt_record raw_record(const uint8_t *px, uint32_t w, uint32_t h, int c)
{
	struct bt_record r;
	memset(&r, 0, sizeof r);
	r.kind = BT_PAYLOAD_RAW;
	r.ndim = 3;
	r.shape[0] = h;
	r.shape[1] = w;
	r.shape[2] = (uint32_t)c;
	r.label = -1;
	r.size = (uint64_t)w * h * c;
	r.data = px;
	return r;
}

static struct bt_record coded_record(int kind, const uint8_t *p, size_t n, uint32_t w,
				     uint32_t h)
{
	struct bt_record r;
	memset(&r, 0, sizeof r);
	r.kind = kind;
	r.ndim = 3;
	r.shape[0] = h;
	r.shape[1] = w;
	r.shape[2] = 3;
	r.label = -1;
	r.size = n;
	r.data = p;
	return r;
}

static uint8_t *make_jpeg(const uint8_t *px, uint32_t w, uint32_t h, int c, int quality,
			  size_t *n)
{
	struct bt_image im = { w, h, c, (uint8_t *)px };
	uint8_t *j = NULL;
	if (bt_image_encode_jpeg(&im, quality, &j, n) != BT_OK)
		return NULL;
	return j;
}

/* A draw that changes nothing but the box. */
static void plain_draw(struct bt_aug_draw *d, double x, double y, double w, double h)
{
	memset(d, 0, sizeof *d);
	d->x = x;
	d->y = y;
	d->w = w;
	d->h = h;
	d->brightness = d->contrast = d->saturation = 1;
	d->order[0] = 0;
	d->order[1] = 1;
	d->order[2] = 2;
}

/* Parameters for a raw image of size x size whose box is the whole image: the resampling is
 * then the identity, and F32 with mean 0, std 1 shows the colour operations bare. */
static void identity_params(struct bt_aug_params *p, uint32_t size, int format)
{
	bt_aug_defaults(p, 1);
	p->size = size;
	p->format = format;
	p->mean[0] = p->mean[1] = p->mean[2] = 0;
	p->std[0] = p->std[1] = p->std[2] = 1;
}

static int maxdiff(const uint8_t *a, const uint8_t *b, size_t n)
{
	int m = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		int d = abs((int)a[i] - (int)b[i]);
		if (d > m)
			m = d;
	}
	return m;
}

/* ---- parameters ---- */

TEST(test_defaults_check)
{
	struct bt_aug_params p, q;

	bt_aug_defaults(&p, 1);
	CHECK_EQ(p.train, 1);
	CHECK_EQ(p.size, 224);
	CHECK(p.crop_ratio == 0.875);
	CHECK(p.min_area == 0.08 && p.max_area == 1.0);
	CHECK(fabs(p.min_aspect - 0.75) < 1e-15 && fabs(p.max_aspect - 4.0 / 3) < 1e-15);
	CHECK_EQ(p.flip, 1);
	CHECK(p.jitter == 0.4 && p.lighting == 0.1);
	CHECK(p.mean[0] == 123.68f && p.mean[1] == 116.779f && p.mean[2] == 103.939f);
	CHECK(p.std[0] == 58.393f && p.std[1] == 57.12f && p.std[2] == 57.375f);
	CHECK_EQ(p.format, BT_AUG_U8);
	CHECK_EQ(p.max_pixels, 100000000);
	CHECK_EQ(bt_aug_check(&p), BT_OK);
	bt_aug_defaults(&p, 0);
	CHECK_EQ(p.train, 0);
	CHECK_EQ(bt_aug_check(&p), BT_OK);

#define BAD(field, value)                                                          \
	do {                                                                       \
		q = p;                                                             \
		q.field = value;                                                   \
		CHECK_EQ(bt_aug_check(&q), BT_ERR_INVALID);                        \
	} while (0)
	BAD(size, 0);
	BAD(crop_ratio, 0);
	BAD(crop_ratio, 1.5);
	BAD(crop_ratio, NAN);
	BAD(resize, 100);
	BAD(min_area, 0);
	BAD(min_area, -0.1);
	BAD(max_area, 0.05);
	BAD(max_area, 1.1);
	BAD(min_aspect, 0);
	BAD(min_aspect, 2);
	BAD(max_aspect, INFINITY);
	BAD(jitter, -0.1);
	BAD(jitter, 1.5);
	BAD(lighting, -1);
	BAD(std[1], 0);
	BAD(mean[2], NAN);
	BAD(format, 7);
#undef BAD
	q = p;
	q.resize = 224;
	CHECK_EQ(bt_aug_check(&q), BT_OK);
	CHECK_EQ(bt_aug_out_bytes(&p, 3), 224 * 224 * 3);
	p.format = BT_AUG_F32;
	CHECK_EQ(bt_aug_out_bytes(&p, 1), 224 * 224 * 4);
	p.format = BT_AUG_F16;
	CHECK_EQ(bt_aug_out_bytes(&p, 3), 224 * 224 * 3 * 2);
}

/* ---- draws ---- */

/* E[area fraction] and E[log aspect] of an accepted try (area fraction s uniform in
 * [0.08, 1], log aspect u uniform in [log 3/4, log 4/3]; accepted when the box fits:
 * s * A * e^u <= W^2 and s * A / e^u <= H^2), by the midpoint rule. Ten tries make a
 * fallback rare enough to ignore here. */
static void accepted_means(double w, double h, double *ms, double *mu)
{
	const int N = 1000;
	double lo = log(0.75), hi = log(4.0 / 3), sum = 0, ss = 0, su = 0;
	int i, j;
	for (i = 0; i < N; i++) {
		double s = 0.08 + (1 - 0.08) * (i + 0.5) / N;
		for (j = 0; j < N; j++) {
			double u = lo + (hi - lo) * (j + 0.5) / N;
			if (s * w * h * exp(u) <= w * w && s * w * h / exp(u) <= h * h) {
				sum += 1;
				ss += s;
				su += u;
			}
		}
	}
	*ms = ss / sum;
	*mu = su / sum;
}

TEST(test_draw_stats)
{
	enum { N = 10000 };
	const uint32_t W = 500, H = 375;
	struct bt_aug_params p;
	struct bt_rng g;
	double sa = 0, su = 0, sa2 = 0, ms, mu, la[3] = { 0, 0, 0 };
	int flips = 0, fallbacks = 0, orders[3][3] = { { 0 } }, i, k;

	bt_aug_defaults(&p, 1);
	bt_rng_seed(&g, 42);
	for (i = 0; i < N; i++) {
		struct bt_aug_draw d;
		double area, aspect;
		int seen = 0;
		bt_aug_draw(&p, W, H, &g, &d);
		/* Inside the image, whole pixels. */
		CHECK(d.x >= 0 && d.y >= 0 && d.w >= 1 && d.h >= 1);
		CHECK(d.x + d.w <= W && d.y + d.h <= H);
		CHECK(d.x == floor(d.x) && d.y == floor(d.y) && d.w == floor(d.w) &&
		      d.h == floor(d.h));
		/* Area and aspect in range, up to the rounding of each side (half a pixel). */
		area = d.w * d.h / (W * H);
		aspect = d.w / d.h;
		CHECK(area >= 0.08 * (1 - 2 * 0.5 / sqrt(0.08 * W * H)) - 1e-9 && area <= 1);
		CHECK(aspect >= 0.75 * (1 - 0.5 / d.h) / (1 + 0.5 / d.w) - 1e-9);
		CHECK(aspect <= 4.0 / 3 * (1 + 0.5 / d.w) / (1 - 0.5 / d.h) + 1e-9);
		sa += area;
		sa2 += area * area;
		su += log(aspect);
		flips += d.flip;
		fallbacks += d.fallback;
		CHECK(d.brightness >= 0.6f && d.brightness <= 1.4f);
		CHECK(d.contrast >= 0.6f && d.contrast <= 1.4f);
		CHECK(d.saturation >= 0.6f && d.saturation <= 1.4f);
		for (k = 0; k < 3; k++) {
			CHECK(d.order[k] >= 0 && d.order[k] < 3);
			seen |= 1 << d.order[k];
			orders[k][d.order[k]]++;
			la[k] += (double)d.alpha[k] * d.alpha[k];
		}
		CHECK_EQ(seen, 7);
	}
	accepted_means(W, H, &ms, &mu);
	/* Standard errors: about 0.0026 for the area, 0.0017 for the log aspect. */
	if (fabs(sa / N - ms) > 0.01 || fabs(su / N - mu) > 0.007)
		fprintf(stderr, "mean area %.4f (want %.4f), log aspect %.4f (want %.4f)\n",
			sa / N, ms, su / N, mu);
	CHECK(fabs(sa / N - ms) < 0.01);
	CHECK(fabs(su / N - mu) < 0.007);
	CHECK(sa2 / N - (sa / N) * (sa / N) > 0.03); /* spread, not a constant */
	CHECK(flips > N / 2 - 300 && flips < N / 2 + 300);
	CHECK(fallbacks < 10);
	/* Each op in each position about a third of the time; alphas with std 0.1. */
	for (k = 0; k < 3; k++) {
		for (i = 0; i < 3; i++)
			CHECK(orders[k][i] > N / 3 - 300 && orders[k][i] < N / 3 + 300);
		CHECK(fabs(sqrt(la[k] / N) - 0.1) < 0.005);
	}
}

TEST(test_draw_options)
{
	struct bt_aug_params p, q;
	struct bt_aug_draw a, b;
	struct bt_rng g1, g2;
	int i, flips = 0;

	/* Options off: the same box and factors are drawn, and the switched-off part is
	 * neutral. */
	bt_aug_defaults(&p, 1);
	q = p;
	q.flip = 0;
	q.lighting = 0;
	for (i = 0; i < 200; i++) {
		bt_rng_seed(&g1, (uint64_t)i);
		bt_rng_seed(&g2, (uint64_t)i);
		bt_aug_draw(&p, 640, 480, &g1, &a);
		bt_aug_draw(&q, 640, 480, &g2, &b);
		CHECK(a.x == b.x && a.y == b.y && a.w == b.w && a.h == b.h);
		CHECK(a.brightness == b.brightness && a.contrast == b.contrast &&
		      a.saturation == b.saturation);
		CHECK(memcmp(a.order, b.order, sizeof a.order) == 0);
		CHECK_EQ(b.flip, 0);
		CHECK(b.alpha[0] == 0 && b.alpha[1] == 0 && b.alpha[2] == 0);
		CHECK(bt_rng_u64(&g1) == bt_rng_u64(&g2));
		flips += a.flip;
	}
	CHECK(flips > 50);
	/* No jitter: factors exactly 1. */
	q = p;
	q.jitter = 0;
	bt_rng_seed(&g1, 7);
	bt_aug_draw(&q, 640, 480, &g1, &a);
	CHECK(a.brightness == 1 && a.contrast == 1 && a.saturation == 1);
}

TEST(test_draw_fallback)
{
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_rng g;
	int i, fallbacks = 0;

	/* 1000 x 10: every try is taller than 10 pixels, so the centre crop at the widest
	 * allowed aspect: height 10, width round(10 * 4/3) = 13, at ((1000 - 13) // 2, 0). */
	bt_aug_defaults(&p, 1);
	bt_rng_seed(&g, 1);
	bt_aug_draw(&p, 1000, 10, &g, &d);
	CHECK_EQ(d.fallback, 1);
	CHECK(d.w == 13 && d.h == 10 && d.x == 493 && d.y == 0);
	/* Portrait: width 10, height round(10 / (3/4)) = 13. */
	bt_aug_draw(&p, 10, 1000, &g, &d);
	CHECK_EQ(d.fallback, 1);
	CHECK(d.w == 10 && d.h == 13 && d.x == 0 && d.y == 493);
	/* The image's aspect inside the range: the whole image. To make all tries fail, the
	 * whole area with aspects from a range so wide that one fits (1.0000 to 1.0202 here)
	 * once in about 700 tries. */
	p.min_area = p.max_area = 1;
	p.min_aspect = 0.001;
	p.max_aspect = 1000;
	for (i = 0; i < 20; i++) {
		bt_aug_draw(&p, 100, 99, &g, &d);
		fallbacks += d.fallback;
		CHECK(d.w == 100 && d.h == 99 && d.x == 0 && d.y == 0);
	}
	CHECK(fallbacks >= 15);
	/* Narrower than allowed, with the aspect range a single value. */
	p.min_aspect = p.max_aspect = 4.0 / 3;
	bt_aug_draw(&p, 100, 99, &g, &d);
	CHECK_EQ(d.fallback, 1);
	CHECK(d.w == 100 && d.h == 75 && d.x == 0 && d.y == 12);
	/* A 1x1 image always fits. */
	bt_aug_defaults(&p, 1);
	bt_aug_draw(&p, 1, 1, &g, &d);
	CHECK(d.w == 1 && d.h == 1 && d.x == 0 && d.y == 0);
}

/* Resize(R) + CenterCrop(size): sides worked out by hand from torchvision 0.14's rules
 * (longer side int(R * long / short), crop corner int(round((side - size) / 2.0)) with
 * ties to even). */
TEST(test_draw_eval)
{
	static const struct {
		uint32_t w, h, size, resize;
		uint32_t ow, oh, left, top;
	} cases[] = {
		{ 500, 375, 224, 0, 341, 256, 58, 16 },   /* 341.33 -> 341; 58.5 -> 58 */
		{ 375, 500, 224, 0, 256, 341, 16, 58 },   /* portrait */
		{ 640, 480, 224, 0, 341, 256, 58, 16 },
		{ 387, 256, 224, 0, 387, 256, 82, 16 },   /* 81.5 -> 82 (even) */
		{ 385, 256, 224, 0, 385, 256, 80, 16 },   /* 80.5 -> 80 (even) */
		{ 333, 500, 224, 0, 256, 384, 16, 80 },   /* 384.38 -> 384 */
		{ 256, 256, 224, 0, 256, 256, 16, 16 },
		{ 100, 80, 224, 0, 320, 256, 48, 16 },    /* upscaling */
		{ 500, 375, 224, 320, 426, 320, 101, 48 },/* explicit resize; 426.67 -> 426 */
		{ 500, 375, 299, 0, 456, 342, 78, 22 },   /* round(299 / 0.875) = 342 */
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct bt_aug_params p;
		struct bt_aug_draw d;
		struct bt_rng g;
		uint64_t before;
		double x, y, w, h;
		bt_aug_defaults(&p, 0);
		p.size = cases[i].size;
		p.resize = cases[i].resize;
		bt_rng_seed(&g, 3);
		before = g.s;
		bt_aug_draw(&p, cases[i].w, cases[i].h, &g, &d);
		CHECK(g.s == before); /* nothing random */
		x = (double)cases[i].left * cases[i].w / cases[i].ow;
		y = (double)cases[i].top * cases[i].h / cases[i].oh;
		w = (double)cases[i].size * cases[i].w / cases[i].ow;
		h = (double)cases[i].size * cases[i].h / cases[i].oh;
		if (fabs(d.x - x) > 1e-9 || fabs(d.y - y) > 1e-9 || fabs(d.w - w) > 1e-9 ||
		    fabs(d.h - h) > 1e-9)
			fprintf(stderr, "case %zu: box (%g, %g, %g, %g), want (%g, %g, %g, %g)\n", i,
				d.x, d.y, d.w, d.h, x, y, w, h);
		CHECK(fabs(d.x - x) < 1e-9 && fabs(d.y - y) < 1e-9);
		CHECK(fabs(d.w - w) < 1e-9 && fabs(d.h - h) < 1e-9);
		CHECK(d.flip == 0 && d.brightness == 1 && d.contrast == 1 && d.saturation == 1);
		CHECK(d.alpha[0] == 0 && d.alpha[1] == 0 && d.alpha[2] == 0);
	}
}

/* ---- geometry ---- */

TEST(test_identity)
{
	uint8_t *px = noise(4 * 4 * 3, 1), out[4 * 4 * 3];
	struct bt_record r = raw_record(px, 4, 4, 3);
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_rng g = { 0 };

	CHECK(s != NULL);
	/* Training box = the whole image, no colour: the input comes back. */
	identity_params(&p, 4, BT_AUG_U8);
	plain_draw(&d, 0, 0, 4, 4);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_OK);
	CHECK_EQ(memcmp(out, px, sizeof out), 0);
	/* Evaluation with resize = size: also the whole image. */
	p.train = 0;
	p.resize = 4;
	bt_aug_draw(&p, 4, 4, &g, &d);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_OK);
	CHECK_EQ(memcmp(out, px, sizeof out), 0);
	bt_aug_scratch_free(s);
	free(px);
}

TEST(test_flip)
{
	static const int channels[] = { 1, 3 };
	const uint32_t W = 37, H = 23, S = 16;
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	size_t i;

	for (i = 0; i < 2; i++) {
		int c = channels[i], f;
		uint8_t *px = noise((size_t)W * H * c, 9), *a, *b;
		struct bt_record r = raw_record(px, W, H, c);
		struct bt_aug_params p;
		struct bt_aug_draw d;
		uint32_t x, y;

		CHECK_EQ(bt_aug_channels(&r), c);
		identity_params(&p, S, BT_AUG_U8);
		a = malloc(bt_aug_out_bytes(&p, c));
		b = malloc(bt_aug_out_bytes(&p, c));
		plain_draw(&d, 5, 3, 29, 17);
		CHECK_EQ(bt_aug_apply(&p, &d, &r, a, s), BT_OK);
		d.flip = 1;
		CHECK_EQ(bt_aug_apply(&p, &d, &r, b, s), BT_OK);
		for (y = 0; y < S; y++)
			for (x = 0; x < S; x++)
				for (f = 0; f < c; f++)
					CHECK_EQ(a[(y * S + x) * c + f], b[(y * S + S - 1 - x) * c + f]);
		free(a);
		free(b);
		free(px);
	}
	bt_aug_scratch_free(s);
}

/* ---- colour ---- */

static const double coef[3] = { 0.299, 0.587, 0.114 };

static void ref_brightness(double *x, int n, double b)
{
	int i;
	for (i = 0; i < n * 3; i++)
		x[i] *= b;
}

static void ref_contrast(double *x, int n, double c)
{
	double gray = 0;
	int i;
	for (i = 0; i < n; i++)
		gray += x[i * 3] * coef[0] + x[i * 3 + 1] * coef[1] + x[i * 3 + 2] * coef[2];
	gray /= n;
	for (i = 0; i < n * 3; i++)
		x[i] = x[i] * c + gray * (1 - c);
}

static void ref_saturation(double *x, int n, double s)
{
	int i, k;
	for (i = 0; i < n; i++) {
		double g = x[i * 3] * coef[0] + x[i * 3 + 1] * coef[1] + x[i * 3 + 2] * coef[2];
		for (k = 0; k < 3; k++)
			x[i * 3 + k] = x[i * 3 + k] * s + g * (1 - s);
	}
}

static void ref_lighting(double *x, int n, const float *alpha)
{
	static const double eigval[3] = { 55.46, 4.794, 1.148 };
	static const double eigvec[3][3] = {
		{ -0.5675, 0.7192, 0.4009 },
		{ -0.5808, -0.0045, -0.8140 },
		{ -0.5836, -0.6948, 0.4203 },
	};
	double rgb[3];
	int i, k;
	for (k = 0; k < 3; k++)
		rgb[k] = eigvec[k][0] * alpha[0] * eigval[0] + eigvec[k][1] * alpha[1] * eigval[1] +
			 eigvec[k][2] * alpha[2] * eigval[2];
	for (i = 0; i < n; i++)
		for (k = 0; k < 3; k++)
			x[i * 3 + k] += rgb[k];
}

/* The op sequence of a draw on a 4x4 image, in double. */
static void ref_colour(const uint8_t *px, const struct bt_aug_draw *d, double *x)
{
	int i;
	for (i = 0; i < 48; i++)
		x[i] = px[i];
	for (i = 0; i < 3; i++) {
		if (d->order[i] == 0)
			ref_brightness(x, 16, d->brightness);
		else if (d->order[i] == 1)
			ref_contrast(x, 16, d->contrast);
		else
			ref_saturation(x, 16, d->saturation);
	}
	ref_lighting(x, 16, d->alpha);
}

TEST(test_colour_ops)
{
	static const struct {
		float b, c, s, a0, a1, a2;
		int order[3];
	} cases[] = {
		{ 1.3f, 1, 1, 0, 0, 0, { 0, 1, 2 } },        /* brightness */
		{ 0.7f, 1, 1, 0, 0, 0, { 0, 1, 2 } },
		{ 1, 1.35f, 1, 0, 0, 0, { 0, 1, 2 } },       /* contrast */
		{ 1, 0.6f, 1, 0, 0, 0, { 0, 1, 2 } },
		{ 1, 1, 1.4f, 0, 0, 0, { 0, 1, 2 } },        /* saturation */
		{ 1, 1, 0.65f, 0, 0, 0, { 0, 1, 2 } },
		{ 1, 1, 1, 0.05f, -0.1f, 0.2f, { 0, 1, 2 } }, /* lighting */
		{ 1.2f, 0.8f, 1.3f, -0.1f, 0.03f, 0.1f, { 2, 0, 1 } }, /* everything, in orders */
		{ 1.2f, 0.8f, 1.3f, -0.1f, 0.03f, 0.1f, { 1, 2, 0 } },
		{ 0.6f, 1.4f, 0.6f, 0.2f, 0.2f, -0.2f, { 2, 1, 0 } },
	};
	uint8_t *px = noise(48, 77), u8[48];
	struct bt_record r = raw_record(px, 4, 4, 3);
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	size_t i;
	int k;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct bt_aug_params p;
		struct bt_aug_draw d;
		double want[48];
		float got[48];
		plain_draw(&d, 0, 0, 4, 4);
		d.brightness = cases[i].b;
		d.contrast = cases[i].c;
		d.saturation = cases[i].s;
		d.alpha[0] = cases[i].a0;
		d.alpha[1] = cases[i].a1;
		d.alpha[2] = cases[i].a2;
		memcpy(d.order, cases[i].order, sizeof d.order);
		ref_colour(px, &d, want);
		/* F32 with mean 0, std 1: unclamped values. */
		identity_params(&p, 4, BT_AUG_F32);
		CHECK_EQ(bt_aug_apply(&p, &d, &r, got, s), BT_OK);
		for (k = 0; k < 48; k++) {
			if (fabs(got[k] - want[k]) > 1e-3 * (1 + fabs(want[k])))
				fprintf(stderr, "case %zu, element %d: %g, want %g\n", i, k, got[k],
					want[k]);
			CHECK(fabs(got[k] - want[k]) <= 1e-3 * (1 + fabs(want[k])));
		}
		/* U8: the same, rounded and clamped. */
		p.format = BT_AUG_U8;
		CHECK_EQ(bt_aug_apply(&p, &d, &r, u8, s), BT_OK);
		for (k = 0; k < 48; k++) {
			double v = want[k] < 0 ? 0 : want[k] > 255 ? 255 : want[k];
			CHECK(fabs(u8[k] - v) <= 0.5 + 1e-3);
		}
	}
	bt_aug_scratch_free(s);
	free(px);
}

TEST(test_colour_grey)
{
	/* One channel: brightness and contrast (against the mean) apply; saturation and
	 * lighting do nothing. */
	uint8_t *px = noise(16, 5);
	struct bt_record r = raw_record(px, 4, 4, 1);
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	double mean = 0;
	float got[16];
	int k;

	for (k = 0; k < 16; k++)
		mean += px[k] / 16.0;
	identity_params(&p, 4, BT_AUG_F32);
	plain_draw(&d, 0, 0, 4, 4);
	d.brightness = 1.25f;
	d.contrast = 0.7f;
	d.saturation = 0.6f;
	d.alpha[0] = 0.3f;
	d.order[0] = 1; /* contrast, then brightness */
	d.order[1] = 0;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, got, s), BT_OK);
	for (k = 0; k < 16; k++) {
		double want = (px[k] * 0.7 + mean * 0.3) * 1.25;
		CHECK(fabs(got[k] - want) < 1e-3);
	}
	bt_aug_scratch_free(s);
	free(px);
}

TEST(test_normalise)
{
	uint8_t *px = noise(6 * 5 * 3, 11);
	struct bt_record r = raw_record(px, 6, 5, 3);
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	float f[6 * 5 * 3];
	uint16_t h[6 * 5 * 3];
	int k;

	/* Identity geometry needs a square image: take the 5x5 box. */
	bt_aug_defaults(&p, 1);
	p.size = 5;
	p.format = BT_AUG_F32;
	plain_draw(&d, 1, 0, 5, 5);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, f, s), BT_OK);
	for (k = 0; k < 75; k++) {
		int y = k / 15, x = (k / 3) % 5, c = k % 3;
		float v = px[(y * 6 + x + 1) * 3 + c];
		CHECK(fabs(f[k] - (v - p.mean[c]) / p.std[c]) < 1e-5);
	}
	/* F16 is F32 rounded, on the fused path and on the colour path. */
	p.format = BT_AUG_F16;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, h, s), BT_OK);
	for (k = 0; k < 75; k++)
		CHECK_EQ(h[k], bt_f32_to_f16(f[k]));
	d.brightness = 1.1f;
	d.alpha[1] = 0.1f;
	p.format = BT_AUG_F32;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, f, s), BT_OK);
	p.format = BT_AUG_F16;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, h, s), BT_OK);
	for (k = 0; k < 75; k++)
		CHECK_EQ(h[k], bt_f32_to_f16(f[k]));
	bt_aug_scratch_free(s);
	free(px);
}

/* ---- half precision ---- */

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

TEST(test_f16)
{
	static const struct {
		float f;
		uint16_t h;
	} cases[] = {
		{ 0.0f, 0x0000 },
		{ -0.0f, 0x8000 },
		{ 1.0f, 0x3c00 },
		{ -2.0f, 0xc000 },
		{ 0.5f, 0x3800 },
		{ 65504.0f, 0x7bff },           /* largest finite */
		{ 65519.0f, 0x7bff },           /* below the midpoint to inf */
		{ 65520.0f, 0x7c00 },           /* the midpoint: ties to even = inf */
		{ 1e6f, 0x7c00 },
		{ -1e6f, 0xfc00 },
		{ 0x1p-14f, 0x0400 },           /* smallest normal */
		{ 0x1p-24f, 0x0001 },           /* smallest subnormal */
		{ 0x1p-25f, 0x0000 },           /* half of it: tie to even (0) */
		{ 0x1.000002p-25f, 0x0001 },    /* just above the tie */
		{ 0x1.8p-24f, 0x0002 },         /* 1.5 units: tie to even (2) */
		{ 0x1.4p-23f, 0x0002 },         /* 2.5 units: tie to even (2) */
		{ 0x1.ffcp-15f, 0x0400 },       /* subnormal rounding up into the normals */
		{ 1.0f + 0x1p-11f, 0x3c00 },    /* tie, even stays */
		{ 1.0f + 0x1.8p-10f, 0x3c02 },  /* tie, odd rounds up */
		{ 1.0f + 0x1.001p-11f, 0x3c01 },/* above the tie */
		{ 2047.5f, 0x6800 },            /* rounds up to 2048, carrying into the exponent */
		{ 1e-10f, 0x0000 },
		{ -1e-10f, 0x8000 },
	};
	size_t i;
	uint32_t u;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (bt_f32_to_f16(cases[i].f) != cases[i].h)
			fprintf(stderr, "f16(%a) = %04x, want %04x\n", (double)cases[i].f,
				bt_f32_to_f16(cases[i].f), cases[i].h);
		CHECK_EQ(bt_f32_to_f16(cases[i].f), cases[i].h);
	}
	CHECK_EQ(bt_f32_to_f16(INFINITY), 0x7c00);
	CHECK_EQ(bt_f32_to_f16(-INFINITY), 0xfc00);
	CHECK((bt_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (bt_f32_to_f16(NAN) & 0x3ff) != 0);
	CHECK_EQ(bt_f32_to_f16(bits_f32(0xffc00000)), 0xfe00); /* sign kept, quiet */
	CHECK_EQ(bt_f32_to_f16(bits_f32(0x7f800001)) & 0x7e00, 0x7e00); /* signalling: quiet */
	/* Every half converts to float and back unchanged (NaNs stay NaNs). */
	for (u = 0; u < 65536; u++) {
		float f = bt_f16_to_f32((uint16_t)u);
		if ((u & 0x7c00) == 0x7c00 && (u & 0x3ff)) {
			CHECK(isnan(f));
			continue;
		}
		CHECK_EQ(bt_f32_to_f16(f), u);
	}
	CHECK(bt_f16_to_f32(0x0001) == 0x1p-24f);
	CHECK(bt_f16_to_f32(0x8400) == -0x1p-14f);
	CHECK(bt_f16_to_f32(0x7bff) == 65504.0f);
	CHECK(isinf(bt_f16_to_f32(0xfc00)) && bt_f16_to_f32(0xfc00) < 0);
}

/* ---- whole transforms on coded images ---- */

/* The JPEG path (region decode, fused kernels) against the unfused one: a full decode
 * (DCT-scaled by the same rule), the filter's clamp range cut out (the crop for training,
 * the whole image for evaluation), bt_image_resize_box of the box in it, then the flip.
 * Bit for bit, so that the region decode and every fusion are known to change nothing. */
static int check_against_unfused(const uint8_t *jpg, size_t n, uint32_t w, uint32_t h,
				 int train, const struct bt_aug_draw *d, uint32_t size)
{
	struct bt_record r = coded_record(BT_PAYLOAD_JPEG, jpg, n, w, h);
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_jpeg_region full = { 0 };
	struct bt_image crop = { 0 }, ref = { 0 };
	struct bt_aug_params p;
	bt_jpeg_decoder *dec = NULL;
	uint8_t *out, *buf = NULL;
	size_t cap = 0;
	double bx0, by0, bx1, by1;
	uint32_t x, y, xlo, xhi, ylo, yhi;
	int rc, diff = 0, denom = 1;

	bt_aug_defaults(&p, train);
	p.size = size;
	out = malloc(bt_aug_out_bytes(&p, 3));
	if ((rc = bt_aug_apply(&p, d, &r, out, s)) != BT_OK)
		goto done;
	while (denom < 8 && d->w / (denom * 2) >= size && d->h / (denom * 2) >= size)
		denom *= 2;
	full.width = w;
	full.height = h;
	full.denom = denom;
	full.x1 = bt_jpeg_scaled(w, denom);
	full.y1 = bt_jpeg_scaled(h, denom);
	if ((rc = bt_jpeg_decoder_new(&dec)) != BT_OK ||
	    (rc = bt_jpeg_decode_region(dec, jpg, n, &full, &buf, &cap)) != BT_OK)
		goto done;
	bx0 = d->x / denom;
	by0 = d->y / denom;
	bx1 = (d->x + d->w) / denom;
	by1 = (d->y + d->h) / denom;
	xlo = train ? (uint32_t)floor(bx0) : 0;
	ylo = train ? (uint32_t)floor(by0) : 0;
	xhi = train && ceil(bx1) < full.ow ? (uint32_t)ceil(bx1) : full.ow;
	yhi = train && ceil(by1) < full.oh ? (uint32_t)ceil(by1) : full.oh;
	crop.width = xhi - xlo;
	crop.height = yhi - ylo;
	crop.channels = 3;
	crop.pixels = malloc((size_t)crop.width * crop.height * 3);
	for (y = 0; y < crop.height; y++)
		memcpy(crop.pixels + (size_t)y * crop.width * 3,
		       buf + (((size_t)ylo + y) * full.ow + xlo) * 3, (size_t)crop.width * 3);
	if (bx1 - xlo > crop.width) /* rounding of the evaluation box's far edge */
		bx1 = xlo + crop.width;
	if (by1 - ylo > crop.height)
		by1 = ylo + crop.height;
	rc = bt_image_resize_box(&crop, bx0 - xlo, by0 - ylo, bx1 - bx0, by1 - by0, size, size,
				 &ref);
	if (rc == BT_OK)
		for (y = 0; y < size; y++)
			for (x = 0; x < size; x++) {
				uint32_t sx = d->flip ? size - 1 - x : x;
				diff |= memcmp(out + (y * size + x) * 3,
					       ref.pixels + (y * size + sx) * 3, 3);
			}
done:
	bt_image_free(&ref);
	bt_image_free(&crop);
	bt_jpeg_decoder_free(dec);
	free(buf);
	free(out);
	bt_aug_scratch_free(s);
	return rc != BT_OK ? rc : diff ? 1 : 0;
}

TEST(test_jpeg_matches_unfused)
{
	static const uint32_t sizes[][2] = { { 500, 375 }, { 375, 500 }, { 333, 251 },
					     { 64, 48 }, { 17, 300 } };
	struct bt_aug_params p;
	struct bt_rng g;
	size_t i;
	int k;

	bt_aug_defaults(&p, 1);
	bt_rng_seed(&g, 2024);
	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		uint32_t w = sizes[i][0], h = sizes[i][1];
		uint8_t *px = noise((size_t)w * h * 3, (uint32_t)i), *sm = smooth(w, h), *jpg;
		struct bt_aug_draw d;
		size_t n, j;
		/* Texture on a gradient, so that chroma upsampling at region edges matters. */
		for (j = 0; j < (size_t)w * h * 3; j++)
			px[j] = (uint8_t)(sm[j] / 2 + px[j] / 4);
		jpg = make_jpeg(px, w, h, 3, 90, &n);
		CHECK(jpg != NULL);
		/* 224 and sizes that leave odd row tails and bring in DCT scaling. */
		p.train = 0;
		p.size = 224;
		bt_aug_draw(&p, w, h, &g, &d);
		CHECK_EQ(check_against_unfused(jpg, n, w, h, 0, &d, 224), 0);
		p.size = 37;
		bt_aug_draw(&p, w, h, &g, &d);
		CHECK_EQ(check_against_unfused(jpg, n, w, h, 0, &d, 37), 0);
		p.train = 1;
		for (k = 0; k < 20; k++) {
			bt_aug_draw(&p, w, h, &g, &d);
			plain_draw(&d, d.x, d.y, d.w, d.h); /* colour is tested on its own */
			d.flip = k % 2;
			CHECK_EQ(check_against_unfused(jpg, n, w, h, 1, &d, 224), 0);
			CHECK_EQ(check_against_unfused(jpg, n, w, h, 1, &d, 29), 0);
			CHECK_EQ(check_against_unfused(jpg, n, w, h, 1, &d, 5), 0);
		}
		free(jpg);
		free(px);
		free(sm);
	}
}

/* Values of torchvision 0.14's Resize(256) + CenterCrop(224) (Pillow 9.4 BILINEAR on the
 * libjpeg-turbo 2.1.5 decode) of smooth() encoded by bt_image_encode_jpeg at quality 90.
 * The region decode and the resampler copy that arithmetic, so they matched exactly; 1 is
 * allowed for a different JPEG encoder version. */
TEST(test_jpeg_matches_torchvision)
{
	struct bt_rng g = { 0 };
	static const struct {
		uint32_t w, h;
		int pts[8][5]; /* y, x, r, g, b */
	} cases[] = {
		{ 500, 375, { { 0, 0, 44, 15, 202 }, { 0, 223, 212, 14, 200 },
			      { 223, 0, 43, 239, 201 }, { 223, 223, 212, 238, 200 },
			      { 111, 57, 82, 128, 200 }, { 17, 200, 191, 31, 51 },
			      { 150, 99, 118, 165, 200 }, { 60, 131, 144, 74, 42 } } },
		{ 375, 500, { { 0, 0, 17, 42, 201 }, { 0, 223, 238, 43, 201 },
			      { 223, 0, 16, 210, 201 }, { 223, 223, 239, 211, 200 },
			      { 111, 57, 73, 127, 199 }, { 17, 200, 217, 55, 41 },
			      { 150, 99, 114, 155, 201 }, { 60, 131, 146, 88, 39 } } },
	};
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	size_t i;
	int k, c;

	for (i = 0; i < 2; i++) {
		uint32_t w = cases[i].w, h = cases[i].h;
		uint8_t *px = smooth(w, h), *jpg, out[224 * 224 * 3];
		struct bt_aug_params p;
		struct bt_aug_draw d;
		struct bt_record r;
		size_t n;
		jpg = make_jpeg(px, w, h, 3, 90, &n);
		CHECK(jpg != NULL);
		r = coded_record(BT_PAYLOAD_JPEG, jpg, n, w, h);
		bt_aug_defaults(&p, 0);
		bt_aug_draw(&p, w, h, &g, &d);
		CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_OK);
		for (k = 0; k < 8; k++) {
			const int *q = cases[i].pts[k];
			for (c = 0; c < 3; c++) {
				int v = out[(q[0] * 224 + q[1]) * 3 + c];
				if (abs(v - q[2 + c]) > 1)
					fprintf(stderr, "%ux%u (%d, %d) channel %d: %d, want %d\n", w,
						h, q[0], q[1], c, v, q[2 + c]);
				CHECK(abs(v - q[2 + c]) <= 1);
			}
		}
		free(jpg);
		free(px);
	}
	bt_aug_scratch_free(s);
}

TEST(test_dct_scaling)
{
	struct bt_rng g = { 0 };
	/* A 1200x900 image: the evaluation box (787 pixels) allows 1/2 scaling and is decoded
	 * that way; the result stays close to the full-resolution transform. */
	const uint32_t W = 1200, H = 900;
	uint8_t *px = smooth(W, H), *jpg, *a, *b;
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_image full, ref;
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_record r;
	size_t n, k;
	double sum = 0;

	jpg = make_jpeg(px, W, H, 3, 95, &n);
	CHECK(jpg != NULL);
	r = coded_record(BT_PAYLOAD_JPEG, jpg, n, W, H);
	bt_aug_defaults(&p, 0);
	bt_aug_draw(&p, W, H, &g, &d);
	CHECK(d.w / 2 >= 224 && d.w / 4 < 224);
	a = malloc(224 * 224 * 3);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, a, s), BT_OK);
	CHECK_EQ(bt_image_decode(jpg, n, 0, 0, &full), BT_OK);
	CHECK_EQ(bt_image_resize_box(&full, d.x, d.y, d.w, d.h, 224, 224, &ref), BT_OK);
	b = ref.pixels;
	for (k = 0; k < 224 * 224 * 3; k++)
		sum += abs((int)a[k] - (int)b[k]);
	/* Away from the checkerboard's edges the two agree closely. */
	CHECK(sum / (224 * 224 * 3) < 2.0);
	CHECK(maxdiff(a, b, 224 * 224 * 3) < 80);
	free(a);
	bt_image_free(&ref);
	bt_image_free(&full);
	bt_aug_scratch_free(s);
	free(jpg);
	free(px);
}

TEST(test_grey_jpeg)
{
	struct bt_rng g = { 0 };
	const uint32_t W = 120, H = 90;
	uint8_t *px = noise(W * H, 3), *jpg, out[32 * 32 * 3];
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_record r;
	size_t n;
	int k;

	jpg = make_jpeg(px, W, H, 1, 90, &n);
	CHECK(jpg != NULL);
	r = coded_record(BT_PAYLOAD_JPEG, jpg, n, W, H);
	r.shape[2] = 1; /* as stored; the output has 3 channels anyway */
	CHECK_EQ(bt_aug_channels(&r), 3);
	bt_aug_defaults(&p, 0);
	p.size = 32;
	bt_aug_draw(&p, W, H, &g, &d);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_OK);
	for (k = 0; k < 32 * 32; k++)
		CHECK(out[k * 3] == out[k * 3 + 1] && out[k * 3] == out[k * 3 + 2]);
	bt_aug_scratch_free(s);
	free(jpg);
	free(px);
}

TEST(test_png_payload)
{
	/* PNG is lossless: the same output as the raw pixels. */
	const uint32_t W = 70, H = 50;
	uint8_t *px = noise(W * H * 3, 8), *png, a[40 * 40 * 3], b[40 * 40 * 3];
	struct bt_image im = { W, H, 3, px };
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_record rp, rr;
	struct bt_rng g;
	size_t n;
	int k;

	CHECK_EQ(bt_image_encode_png(&im, &png, &n), BT_OK);
	rp = coded_record(BT_PAYLOAD_PNG, png, n, W, H);
	rr = raw_record(px, W, H, 3);
	bt_aug_defaults(&p, 1);
	p.size = 40;
	bt_rng_seed(&g, 6);
	for (k = 0; k < 5; k++) {
		bt_aug_draw(&p, W, H, &g, &d);
		CHECK_EQ(bt_aug_apply(&p, &d, &rp, a, s), BT_OK);
		CHECK_EQ(bt_aug_apply(&p, &d, &rr, b, s), BT_OK);
		CHECK_EQ(memcmp(a, b, sizeof a), 0);
	}
	/* A PNG whose record claims another size. */
	rp.shape[1] = W + 1;
	bt_aug_draw(&p, W, H, &g, &d);
	CHECK_EQ(bt_aug_apply(&p, &d, &rp, a, s), BT_ERR_FORMAT);
	free(png);
	bt_aug_scratch_free(s);
	free(px);
}

TEST(test_raw_one_channel)
{
	const uint32_t W = 50, H = 40;
	uint8_t *px = noise(W * H, 12), *out;
	struct bt_record r = raw_record(px, W, H, 1);
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_image im = { W, H, 1, px }, ref;
	struct bt_rng g = { 0 };

	CHECK_EQ(bt_aug_channels(&r), 1);
	r.ndim = 2; /* (H, W) alone also means one channel */
	CHECK_EQ(bt_aug_channels(&r), 1);
	bt_aug_defaults(&p, 0);
	p.size = 24;
	CHECK_EQ(bt_aug_out_bytes(&p, 1), 24 * 24);
	out = malloc(24 * 24);
	bt_aug_draw(&p, W, H, &g, &d);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_OK);
	CHECK_EQ(bt_image_resize_box(&im, d.x, d.y, d.w, d.h, 24, 24, &ref), BT_OK);
	CHECK_EQ(memcmp(out, ref.pixels, 24 * 24), 0);
	bt_image_free(&ref);
	free(out);
	bt_aug_scratch_free(s);
	free(px);
}

TEST(test_determinism)
{
	const uint32_t W = 300, H = 200;
	uint8_t *px = smooth(W, H), *jpg;
	struct bt_aug_scratch *s1 = bt_aug_scratch_new(), *s2 = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_record r;
	size_t n, bytes;
	int f, k;

	jpg = make_jpeg(px, W, H, 3, 90, &n);
	CHECK(jpg != NULL);
	r = coded_record(BT_PAYLOAD_JPEG, jpg, n, W, H);
	bt_aug_defaults(&p, 1);
	for (f = BT_AUG_U8; f <= BT_AUG_F16; f++) {
		p.format = f;
		bytes = bt_aug_out_bytes(&p, 3);
		for (k = 0; k < 4; k++) {
			uint8_t *a = malloc(bytes), *b = malloc(bytes);
			struct bt_aug_draw d1, d2;
			struct bt_rng g1, g2;
			bt_rng_seed(&g1, (uint64_t)k);
			bt_rng_seed(&g2, (uint64_t)k);
			bt_aug_draw(&p, W, H, &g1, &d1);
			bt_aug_draw(&p, W, H, &g2, &d2);
			CHECK(memcmp(&d1, &d2, sizeof d1) == 0);
			/* Different scratch, and a warm one in between other work. */
			CHECK_EQ(bt_aug_apply(&p, &d1, &r, a, s1), BT_OK);
			CHECK_EQ(bt_aug_apply(&p, &d2, &r, b, s2), BT_OK);
			CHECK_EQ(memcmp(a, b, bytes), 0);
			CHECK_EQ(bt_aug_apply(&p, &d1, &r, b, s2), BT_OK);
			CHECK_EQ(memcmp(a, b, bytes), 0);
			free(a);
			free(b);
		}
	}
	bt_aug_scratch_free(s1);
	bt_aug_scratch_free(s2);
	free(jpg);
	free(px);
}

/* The AVX2 kernels against the portable ones, every format, colour on and off, 1 and 3
 * channels. Where the CPU has no AVX2 both runs are portable and the test passes trivially. */
TEST(test_simd_same_bytes)
{
	const uint32_t W = 213, H = 150;
	uint8_t *px = noise(W * H * 3, 21), *sm = smooth(W, H), *jpg;
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_record recs[3];
	struct bt_aug_params p;
	struct bt_rng g;
	size_t n, j;
	int was = bt_simd(-1), f, k, ri, train;

	for (j = 0; j < (size_t)W * H * 3; j++)
		px[j] = (uint8_t)(sm[j] / 2 + px[j] / 4);
	jpg = make_jpeg(px, W, H, 3, 90, &n);
	CHECK(jpg != NULL);
	recs[0] = coded_record(BT_PAYLOAD_JPEG, jpg, n, W, H);
	recs[1] = raw_record(px, W, H, 3);
	recs[2] = raw_record(px, W, H, 1); /* the first third of the pixels, as grey */
	bt_rng_seed(&g, 99);
	for (train = 0; train < 2; train++) {
		bt_aug_defaults(&p, train);
		for (f = BT_AUG_U8; f <= BT_AUG_F16; f++) {
			p.format = f;
			for (ri = 0; ri < 3; ri++) {
				size_t bytes = bt_aug_out_bytes(&p, bt_aug_channels(&recs[ri]));
				for (k = 0; k < (train ? 6 : 1); k++) {
					uint8_t *a = malloc(bytes), *b = malloc(bytes);
					struct bt_aug_draw d;
					int same;
					bt_aug_draw(&p, W, H, &g, &d);
					bt_simd(1);
					CHECK_EQ(bt_aug_apply(&p, &d, &recs[ri], a, s), BT_OK);
					bt_simd(0);
					CHECK_EQ(bt_aug_apply(&p, &d, &recs[ri], b, s), BT_OK);
					bt_simd(was);
					same = memcmp(a, b, bytes) == 0;
					if (!same)
						fprintf(stderr, "train %d format %d record %d draw %d\n",
							train, f, ri, k);
					free(a);
					free(b);
					CHECK(same);
				}
			}
		}
	}
	bt_aug_scratch_free(s);
	free(jpg);
	free(px);
	free(sm);
}

/* ---- deferred colour ---- */

/* The records of the deferred-colour tests: a JPEG, the same pixels raw, a PNG, and one
 * channel of them as a raw grey image (saturation and lighting do nothing there). */
struct defer_case {
	struct bt_record rec[4];
	uint8_t *px, *jpg, *png;
	uint32_t W, H;
};

static int defer_case_make(struct defer_case *c)
{
	struct bt_image im;
	uint8_t *sm;
	size_t n, j;

	memset(c, 0, sizeof *c);
	c->W = 157;
	c->H = 118;
	c->px = noise((size_t)c->W * c->H * 3, 77);
	sm = smooth(c->W, c->H);
	for (j = 0; j < (size_t)c->W * c->H * 3; j++)
		c->px[j] = (uint8_t)(sm[j] / 2 + c->px[j] / 4);
	free(sm);
	im = (struct bt_image){ c->W, c->H, 3, c->px };
	if (!(c->jpg = make_jpeg(c->px, c->W, c->H, 3, 90, &n)))
		return 0;
	c->rec[0] = coded_record(BT_PAYLOAD_JPEG, c->jpg, n, c->W, c->H);
	c->rec[1] = raw_record(c->px, c->W, c->H, 3);
	if (bt_image_encode_png(&im, &c->png, &n) != BT_OK)
		return 0;
	c->rec[2] = coded_record(BT_PAYLOAD_PNG, c->png, n, c->W, c->H);
	c->rec[3] = raw_record(c->px, c->W, c->H, 1);
	return 1;
}

static void defer_case_free(struct defer_case *c)
{
	free(c->px);
	free(c->jpg);
	free(c->png);
}

/* For every record and draw: the crop of deferred colour, its colour parameters (the
 * draw's), and the crop through bt_aug_colour_affine + bt_aug_colour_apply against
 * bt_aug_apply in each format, bytes identical. The draws must not depend on the flag. */
static int defer_matches(const struct bt_aug_params *base, int draws, uint64_t seed, int *colour_seen)
{
	struct defer_case c;
	struct bt_aug_scratch *s = bt_aug_scratch_new(), *s2 = bt_aug_scratch_new();
	int ok = defer_case_make(&c) && s && s2, ri, k, f;

	for (ri = 0; ok && ri < 4; ri++) {
		const struct bt_record *r = &c.rec[ri];
		int C = bt_aug_channels(r);
		struct bt_aug_params pd = *base, pf = *base;
		struct bt_rng g1, g2;
		size_t pix = (size_t)base->size * base->size * C;
		uint8_t *crop = malloc(pix), *plain = malloc(pix);
		uint8_t *want = malloc(pix * 4), *got = malloc(pix * 4);

		pd.format = BT_AUG_U8;
		pd.defer_colour = 1;
		bt_rng_seed(&g1, seed + (uint64_t)ri);
		bt_rng_seed(&g2, seed + (uint64_t)ri);
		for (k = 0; ok && k < draws; k++) {
			struct bt_aug_draw d, d2, dn;
			struct bt_aug_colour col;
			struct bt_aug_affine a;
			bt_aug_draw(&pf, c.W, c.H, &g1, &d);
			bt_aug_draw(&pd, c.W, c.H, &g2, &d2);
			ok = memcmp(&d, &d2, sizeof d) == 0;
			ok = ok && bt_aug_apply_deferred(&pd, &d, r, crop, &col, s) == BT_OK;
			/* The crop is the transform without colour: the draw with neutral colour. */
			plain_draw(&dn, d.x, d.y, d.w, d.h);
			dn.flip = d.flip;
			dn.fallback = d.fallback;
			pf.format = BT_AUG_U8;
			ok = ok && bt_aug_apply(&pf, &dn, r, plain, s2) == BT_OK && memcmp(crop, plain, pix) == 0;
			ok = ok && col.brightness == d.brightness && col.contrast == d.contrast &&
			     col.saturation == d.saturation && memcmp(col.order, d.order, sizeof col.order) == 0 &&
			     memcmp(col.alpha, d.alpha, sizeof col.alpha) == 0;
			for (f = BT_AUG_U8; ok && f <= BT_AUG_F16; f++) {
				size_t bytes;
				pf.format = f;
				bytes = bt_aug_out_bytes(&pf, C);
				bt_aug_colour_affine(&col, C, f == BT_AUG_U8 ? NULL : pf.mean, pf.std, &a);
				if (a.colour)
					(*colour_seen)++;
				ok = bt_aug_apply(&pf, &d, r, want, s2) == BT_OK &&
				     bt_aug_colour_apply(&a, crop, pf.size, C, f, got, s) == BT_OK &&
				     memcmp(want, got, bytes) == 0;
				if (!ok)
					fprintf(stderr, "train %d record %d draw %d format %d\n", base->train, ri, k, f);
			}
		}
		free(crop);
		free(plain);
		free(want);
		free(got);
	}
	defer_case_free(&c);
	bt_aug_scratch_free(s);
	bt_aug_scratch_free(s2);
	return ok;
}

TEST(test_defer_colour_train)
{
	struct bt_aug_params p;
	int colour = 0, was = bt_simd(-1);
	bt_aug_defaults(&p, 1);
	p.size = 48;
	for (uint64_t seed = 1; seed <= 3; seed++) {
		CHECK(defer_matches(&p, 8, seed * 1000, &colour));
		bt_simd(0);
		CHECK(defer_matches(&p, 3, seed * 1000 + 7, &colour));
		bt_simd(was);
	}
	/* Options that change which operations run: no lighting, no jitter, strong jitter,
	 * odd means and a negative std, a tiny output. */
	p.lighting = 0;
	CHECK(defer_matches(&p, 4, 11, &colour));
	p.lighting = 0.5;
	p.jitter = 0;
	CHECK(defer_matches(&p, 4, 12, &colour));
	p.jitter = 1;
	p.mean[0] = -3.5f;
	p.mean[2] = 300;
	p.std[1] = -0.75f;
	CHECK(defer_matches(&p, 4, 13, &colour));
	bt_aug_defaults(&p, 1);
	p.size = 3;
	CHECK(defer_matches(&p, 4, 14, &colour));
	CHECK(colour > 0);
}

TEST(test_defer_colour_eval)
{
	struct bt_aug_params p;
	int colour = 0;
	bt_aug_defaults(&p, 0);
	p.size = 64;
	CHECK(defer_matches(&p, 1, 5, &colour));
	p.size = 100;
	p.crop_ratio = 0.9;
	CHECK(defer_matches(&p, 1, 6, &colour));
	CHECK_EQ(colour, 0); /* evaluation has no colour operation: normalisation alone */
}

/* Deferred colour is for uint8 output; an identity stream's raw images keep their bytes
 * and need normalising only. */
TEST(test_defer_colour_rules)
{
	uint8_t *px = noise(8 * 8 * 3, 4), out[8 * 8 * 3];
	float want[8 * 8 * 3], got[8 * 8 * 3];
	struct bt_record r = raw_record(px, 8, 8, 3);
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_aug_colour col;
	struct bt_aug_affine a;
	struct bt_rng g;

	bt_aug_defaults(&p, 1);
	p.size = 8;
	p.defer_colour = 1;
	CHECK_EQ(bt_aug_check(&p), BT_OK);
	p.format = BT_AUG_F32;
	CHECK_EQ(bt_aug_check(&p), BT_ERR_INVALID);
	bt_rng_seed(&g, 1);
	bt_aug_draw(&p, 8, 8, &g, &d);
	CHECK_EQ(bt_aug_apply_deferred(&p, &d, &r, got, &col, s), BT_ERR_INVALID);
	/* without the flag nothing is left to do */
	p.defer_colour = 0;
	p.format = BT_AUG_U8;
	CHECK_EQ(bt_aug_apply_deferred(&p, &d, &r, out, &col, s), BT_OK);
	CHECK(col.brightness == 1 && col.contrast == 1 && col.saturation == 1 && col.alpha[0] == 0);
	bt_aug_colour_affine(&col, 3, NULL, NULL, &a);
	CHECK_EQ(a.colour, 0);
	/* identity */
	p.identity = 1;
	p.defer_colour = 1;
	CHECK_EQ(bt_aug_check(&p), BT_OK);
	bt_aug_draw(&p, 8, 8, &g, &d);
	CHECK_EQ(bt_aug_apply_deferred(&p, &d, &r, out, &col, s), BT_OK);
	CHECK_EQ(memcmp(out, px, sizeof out), 0);
	bt_aug_colour_affine(&col, 3, p.mean, p.std, &a);
	CHECK_EQ(bt_aug_colour_apply(&a, out, 8, 3, BT_AUG_F32, got, s), BT_OK);
	p.defer_colour = 0;
	p.format = BT_AUG_F32;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, want, s), BT_OK);
	CHECK_EQ(memcmp(want, got, sizeof want), 0);
	CHECK_EQ(bt_aug_colour_apply(&a, out, 8, 2, BT_AUG_F32, got, s), BT_ERR_INVALID);
	bt_aug_scratch_free(s);
	free(px);
}

/* ---- errors ---- */

TEST(test_errors)
{
	struct bt_rng g = { 0 };
	const uint32_t W = 64, H = 48;
	uint8_t *px = smooth(W, H), *jpg, *bad, out[16 * 16 * 3 * 4];
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_record r;
	size_t n, i;

	jpg = make_jpeg(px, W, H, 3, 90, &n);
	CHECK(jpg != NULL);
	bt_aug_defaults(&p, 0);
	p.size = 16;
	bt_aug_draw(&p, W, H, &g, &d);

	/* Garbage in the entropy-coded data: BT_ERR_IMAGE with libjpeg's reason. */
	bad = malloc(n);
	memcpy(bad, jpg, n);
	for (i = n / 3; i < n / 3 + 40; i++)
		bad[i] = (uint8_t)(i * 37);
	r = coded_record(BT_PAYLOAD_JPEG, bad, n, W, H);
	bt_error_clear();
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_IMAGE);
	CHECK(strncmp(bt_errmsg(), "JPEG", 4) == 0);
	CHECK(strchr(bt_errmsg(), '\n') == NULL);
	/* Cut short inside the pixels. */
	r.size = n / 2;
	r.data = jpg;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_IMAGE);
	/* A broken header: the frame header's length, then the header cut short. */
	memcpy(bad, jpg, n);
	for (i = 2; i + 3 < n && !(bad[i] == 0xff && bad[i + 1] == 0xc0); i++)
		;
	CHECK(i + 3 < n);
	bad[i + 2] = 0;
	bad[i + 3] = 1;
	r = coded_record(BT_PAYLOAD_JPEG, bad, n, W, H);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_IMAGE);
	r.size = 30;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_IMAGE);
	/* Not a JPEG at all. */
	r = coded_record(BT_PAYLOAD_JPEG, px, 100, W, H);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_IMAGE);
	r = coded_record(BT_PAYLOAD_PNG, jpg, n, W, H);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_IMAGE);
	/* The decoder recovers: the intact image still works. */
	r = coded_record(BT_PAYLOAD_JPEG, jpg, n, W, H);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_OK);
	/* The record's shape disagrees with the JPEG. */
	r.shape[0] = H + 2;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_FORMAT);
	r.shape[0] = H;
	/* Over the pixel limit. */
	p.max_pixels = W * H - 1;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_TOOBIG);
	p.max_pixels = 0;
	/* A box outside the image. */
	d.x = W;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_INVALID);
	d.x = 0;
	d.w = 0;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_INVALID);
	bt_aug_draw(&p, W, H, &g, &d);
	/* Payloads that are not images, or raw ones that do not add up. */
	r.kind = BT_PAYLOAD_F32;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_UNSUPPORTED);
	CHECK_EQ(bt_aug_channels(&r), 3);
	r = raw_record(px, W, H, 2);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_UNSUPPORTED);
	r = raw_record(px, W, H, 3);
	r.size--;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_FORMAT);
	r = raw_record(px, W, H, 3);
	r.ndim = 1;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_FORMAT);
	free(bad);
	free(jpg);
	free(px);
	bt_aug_scratch_free(s);
}

/* identity: an already augmented stream is only normalised (uint8) or converted (f32, f16). */
TEST(test_identity_stream)
{
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_rng g;
	uint8_t px[4 * 4 * 3];
	float f[4 * 4 * 3], out[4 * 4 * 3];
	uint16_t h[4 * 4 * 3], oh[4 * 4 * 3];
	struct bt_record r;
	bt_aug_defaults(&p, 1);
	p.size = 4;
	p.identity = 1;
	p.format = BT_AUG_F32;
	for (int i = 0; i < 48; i++) {
		px[i] = (uint8_t)(i * 5);
		f[i] = (float)i / 7 - 3;
		h[i] = bt_f32_to_f16(f[i]);
	}
	bt_rng_seed(&g, 1);
	bt_aug_draw(&p, 4, 4, &g, &d);
	CHECK(d.x == 0 && d.y == 0 && d.w == 4 && d.h == 4 && !d.flip);
	r = raw_record(px, 4, 4, 3);
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, NULL), BT_OK);
	for (int i = 0; i < 48; i++)
		CHECK(out[i] == ((float)px[i] - p.mean[i % 3]) * (1.0f / p.std[i % 3]));
	r.kind = BT_PAYLOAD_F32;
	r.data = (const uint8_t *)f;
	r.size = sizeof f;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, NULL), BT_OK);
	CHECK(memcmp(out, f, sizeof f) == 0);
	r.kind = BT_PAYLOAD_F16;
	r.data = (const uint8_t *)h;
	r.size = sizeof h;
	p.format = BT_AUG_F16;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, oh, NULL), BT_OK);
	CHECK(memcmp(oh, h, sizeof h) == 0);
	/* uint8 out of normalised data, a wrong size, a wrong byte count, a JPEG */
	p.format = BT_AUG_U8;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, oh, NULL), BT_ERR_UNSUPPORTED);
	p.format = BT_AUG_F32;
	p.size = 5;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, NULL), BT_ERR_FORMAT);
	p.size = 4;
	r.size--;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, NULL), BT_ERR_FORMAT);
	r.kind = BT_PAYLOAD_JPEG;
	CHECK_EQ(bt_aug_apply(&p, &d, &r, out, NULL), BT_ERR_UNSUPPORTED);
}

/* Random erasing's draws: torchvision's RandomErasing.get_params on the output square. */
TEST(test_erase_draw)
{
	enum { N = 10000 };
	const double S = 32;
	struct bt_aug_params p, q;
	struct bt_aug_draw a, b;
	struct bt_rng g1, g2;
	double sa = 0, su = 0;
	int boxes = 0, i;

	bt_aug_defaults(&p, 1);
	p.size = (uint32_t)S;
	p.erase = 0.5;
	q = p;
	q.erase = 0;
	for (i = 0; i < N; i++) {
		double area, aspect;
		bt_rng_seed(&g1, (uint64_t)i);
		bt_rng_seed(&g2, (uint64_t)i);
		bt_aug_draw(&p, 300, 200, &g1, &a);
		bt_aug_draw(&q, 300, 200, &g2, &b);
		/* Drawn last: everything before it as without erasing. */
		CHECK(a.x == b.x && a.y == b.y && a.w == b.w && a.h == b.h && a.flip == b.flip);
		CHECK(a.brightness == b.brightness && a.alpha[2] == b.alpha[2]);
		CHECK(b.erase[0] == 0 && b.erase[1] == 0 && b.erase[2] == 0 && b.erase[3] == 0);
		if (a.erase[2] == 0) {
			CHECK(a.erase[3] == 0);
			continue;
		}
		boxes++;
		CHECK(a.erase[0] >= 0 && a.erase[1] >= 0 && a.erase[2] > 0 && a.erase[3] > 0);
		CHECK(a.erase[2] < S && a.erase[3] < S);
		CHECK(a.erase[0] + a.erase[2] <= S && a.erase[1] + a.erase[3] <= S);
		/* Area and aspect (h / w) in range up to the rounding of each side. */
		area = (double)a.erase[2] * a.erase[3] / (S * S);
		aspect = (double)a.erase[3] / a.erase[2];
		CHECK(area >= 0.02 * (1 - 0.5 / a.erase[2]) * (1 - 0.5 / a.erase[3]) - 1e-9);
		CHECK(area <= 0.33 * (1 + 0.5 / a.erase[2]) * (1 + 0.5 / a.erase[3]) + 1e-9);
		CHECK(aspect >= 0.3 * (1 - 0.5 / a.erase[3]) / (1 + 0.5 / a.erase[2]) - 1e-9);
		CHECK(aspect <= 3.3 * (1 + 0.5 / a.erase[3]) / (1 - 0.5 / a.erase[2]) + 1e-9);
		sa += area;
		su += log(aspect);
	}
	/* Half the images (a box nearly always fits within 10 tries); areas centred near
	 * (0.02 + 0.33) / 2, less the large thin boxes that do not fit; log aspects near 0. */
	CHECK(boxes > N / 2 - 300 && boxes < N / 2 + 300);
	if (fabs(sa / boxes - 0.17) > 0.015 || fabs(su / boxes) > 0.04)
		fprintf(stderr, "erase: mean area %.4f, mean log aspect %.4f\n", sa / boxes, su / boxes);
	CHECK(fabs(sa / boxes - 0.17) < 0.015);
	CHECK(fabs(su / boxes) < 0.04);
	/* Evaluation never erases. */
	bt_aug_defaults(&q, 0);
	q.erase = 1;
	bt_rng_seed(&g1, 3);
	bt_aug_draw(&q, 300, 200, &g1, &a);
	CHECK(a.erase[2] == 0);
	/* Ranges are checked. */
	q = p;
	CHECK_EQ(bt_aug_check(&q), BT_OK);
	q.erase = 1.5;
	CHECK_EQ(bt_aug_check(&q), BT_ERR_INVALID);
	q = p;
	q.erase_min_area = 0.5;
	q.erase_max_area = 0.4;
	CHECK_EQ(bt_aug_check(&q), BT_ERR_INVALID);
	q = p;
	q.erase_min_aspect = 0;
	CHECK_EQ(bt_aug_check(&q), BT_ERR_INVALID);
}

/* The erased box: +0 in float32 and float16, the rounded mean colour in uint8, and the
 * rest of the image exactly as without it. */
TEST(test_erase_apply)
{
	const uint32_t W = 40, H = 30, S = 16;
	uint8_t *px = noise((size_t)W * H * 3, 5);
	struct bt_record r = raw_record(px, W, H, 3);
	struct bt_aug_params p;
	struct bt_aug_draw d, d0;
	struct bt_rng g;
	float f[16 * 16 * 3], f0[16 * 16 * 3];
	uint16_t h[16 * 16 * 3], h0[16 * 16 * 3];
	uint8_t u[16 * 16 * 3], u0[16 * 16 * 3];
	struct bt_aug_scratch *sc = bt_aug_scratch_new();
	int seed, inside = 0;

	bt_aug_defaults(&p, 1);
	p.size = S;
	p.erase = 1;
	p.mean[0] = 0.4f;   /* rounds to 0 */
	p.mean[1] = 300.0f; /* clamps to 255 */
	p.mean[2] = 99.5f;  /* rounds to even, 100 */
	for (seed = 0; seed < 20; seed++) {
		bt_rng_seed(&g, (uint64_t)seed);
		bt_aug_draw(&p, W, H, &g, &d);
		CHECK(d.erase[2] > 0); /* at 16x16 a box always fits within 10 tries here */
		d0 = d;
		memset(d0.erase, 0, sizeof d0.erase);
		p.format = BT_AUG_F32;
		CHECK_EQ(bt_aug_apply(&p, &d, &r, f, sc), BT_OK);
		CHECK_EQ(bt_aug_apply(&p, &d0, &r, f0, sc), BT_OK);
		p.format = BT_AUG_F16;
		CHECK_EQ(bt_aug_apply(&p, &d, &r, h, sc), BT_OK);
		CHECK_EQ(bt_aug_apply(&p, &d0, &r, h0, sc), BT_OK);
		p.format = BT_AUG_U8;
		CHECK_EQ(bt_aug_apply(&p, &d, &r, u, sc), BT_OK);
		CHECK_EQ(bt_aug_apply(&p, &d0, &r, u0, sc), BT_OK);
		for (uint32_t y = 0; y < S; y++)
			for (uint32_t x = 0; x < S; x++)
				for (int c = 0; c < 3; c++) {
					size_t k = ((size_t)y * S + x) * 3 + (size_t)c;
					int in = (int)x >= d.erase[0] && (int)x < d.erase[0] + d.erase[2] &&
						 (int)y >= d.erase[1] && (int)y < d.erase[1] + d.erase[3];
					static const uint8_t fill[3] = { 0, 255, 100 };
					uint32_t bits;
					memcpy(&bits, &f[k], 4);
					inside += in;
					CHECK(in ? bits == 0 : memcmp(&f[k], &f0[k], 4) == 0);
					CHECK(in ? h[k] == 0 : h[k] == h0[k]);
					CHECK(in ? u[k] == fill[c] : u[k] == u0[k]);
				}
	}
	CHECK(inside > 0);
	bt_aug_scratch_free(sc);
	free(px);
}

/* ---- the padded crop (pad >= 0) ---- */

/* torchvision's RandomCrop(size, padding): whole-pixel offsets, each position of the padded
 * image equally likely, the output's size, no draw when the padded image is that size. */
TEST(test_pad_draw)
{
	static const struct { uint32_t w, h, s; int32_t pad; } cases[] = {
		{ 28, 28, 28, 4 }, { 40, 30, 32, 2 }, { 28, 28, 28, 0 }, { 10, 12, 20, 5 },
	};
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_rng g, g2;

	for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
		const int64_t nx = (int64_t)cases[t].w + 2 * cases[t].pad - cases[t].s + 1;
		const int64_t ny = (int64_t)cases[t].h + 2 * cases[t].pad - cases[t].s + 1;
		long count[2][64] = { { 0 } };
		const int draws = 20000;
		bt_aug_defaults(&p, 1);
		p.size = cases[t].s;
		p.pad = cases[t].pad;
		CHECK_EQ(bt_aug_check(&p), BT_OK);
		bt_rng_seed(&g, 40 + t);
		for (int k = 0; k < draws; k++) {
			bt_aug_draw(&p, cases[t].w, cases[t].h, &g, &d);
			CHECK(d.w == p.size && d.h == p.size && !d.fallback);
			CHECK(d.x == floor(d.x) && d.y == floor(d.y));
			CHECK(d.x >= -p.pad && d.x < -p.pad + nx && d.y >= -p.pad && d.y < -p.pad + ny);
			if (d.x >= -p.pad && d.x < -p.pad + nx && d.y >= -p.pad && d.y < -p.pad + ny) {
				count[0][(int)d.x + p.pad]++;
				count[1][(int)d.y + p.pad]++;
			}
		}
		/* every position about draws / positions times (5 sigma of a binomial) */
		for (int a = 0; a < 2; a++) {
			int64_t m = a ? ny : nx;
			for (int64_t i = 0; i < m; i++) {
				double e = (double)draws / m, sd = sqrt(e * (1 - 1.0 / m));
				CHECK(fabs(count[a][i] - e) <= 5 * sd + 1e-9);
			}
		}
	}
	/* Exactly the output's size after padding: no draw for the box, so the RNG goes on to
	 * the flip where a draw with a box-sized image does the same. */
	bt_aug_defaults(&p, 1);
	p.size = 28;
	p.pad = 0;
	bt_rng_seed(&g, 9);
	bt_rng_seed(&g2, 9);
	bt_aug_draw(&p, 28, 28, &g, &d);
	CHECK(d.x == 0 && d.y == 0);
	CHECK_EQ(d.flip, bt_rng_uniform(&g2) < 0.5);
	/* A padded image smaller than the output: an empty box, refused with the reason. */
	{
		uint8_t px[10 * 10 * 3] = { 0 }, out[24 * 24 * 3];
		struct bt_record r = raw_record(px, 10, 10, 3);
		struct bt_aug_scratch *s = bt_aug_scratch_new();
		p.size = 24;
		p.pad = 6;
		bt_aug_draw(&p, 10, 10, &g, &d);
		CHECK(d.w == 0 && d.h == 0);
		CHECK_EQ(bt_aug_apply(&p, &d, &r, out, s), BT_ERR_INVALID);
		CHECK(strstr(bt_errmsg(), "padded by 6") != NULL);
		bt_aug_scratch_free(s);
	}
	/* Out of range. */
	p.pad = -2;
	CHECK_EQ(bt_aug_check(&p), BT_ERR_INVALID);
	p.pad = 70000;
	CHECK_EQ(bt_aug_check(&p), BT_ERR_INVALID);
}

/* The crop against one built by hand (black outside the image, mirrored when flipped) for
 * raw RGB and grey images, in uint8 and normalised float32; JPEG and PNG payloads against
 * the raw crop of their decoded pixels; and deferred colour against the whole transform. */
TEST(test_pad_apply)
{
	const uint32_t W = 21, H = 17, S = 16;
	uint8_t *px = noise((size_t)W * H * 3, 31), want[16 * 16 * 3], got[16 * 16 * 3];
	float f[16 * 16 * 3];
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	struct bt_aug_draw d;
	struct bt_rng g;
	int colour = 0, flips = 0, edges = 0;

	bt_aug_defaults(&p, 1);
	p.size = S;
	p.pad = 5;
	p.jitter = 0;
	p.lighting = 0;
	bt_rng_seed(&g, 3);
	for (int k = 0; k < 200; k++) {
		int C = k % 2 ? 1 : 3;
		struct bt_record r = raw_record(px, W, H, C);
		bt_aug_draw(&p, W, H, &g, &d);
		flips += d.flip;
		for (uint32_t y = 0; y < S; y++)
			for (uint32_t x = 0; x < S; x++) {
				int64_t sx = (int64_t)d.x + (d.flip ? (int64_t)(S - 1 - x) : (int64_t)x);
				int64_t sy = (int64_t)d.y + y;
				int in = sx >= 0 && sx < W && sy >= 0 && sy < H;
				edges += !in;
				for (int c = 0; c < C; c++)
					want[((size_t)y * S + x) * C + c] =
						in ? px[((size_t)sy * W + (size_t)sx) * C + c] : 0;
			}
		p.format = BT_AUG_U8;
		CHECK_EQ(bt_aug_apply(&p, &d, &r, got, s), BT_OK);
		CHECK(memcmp(got, want, (size_t)S * S * C) == 0);
		p.format = BT_AUG_F32;
		CHECK_EQ(bt_aug_apply(&p, &d, &r, f, s), BT_OK);
		for (size_t i = 0; i < (size_t)S * S * C; i++)
			CHECK(f[i] == ((float)want[i] - p.mean[i % C]) * (1.0f / p.std[i % C]));
	}
	CHECK(flips > 50 && flips < 150);
	CHECK(edges > 0);
	free(px);

	/* Coded payloads: the crop of the decoded image, bit for bit. */
	{
		struct defer_case c;
		struct bt_image im = { 0 };
		uint8_t *a = malloc(48 * 48 * 3), *b = malloc(48 * 48 * 3);
		CHECK(defer_case_make(&c));
		p.size = 48;
		p.pad = 20;
		p.format = BT_AUG_U8;
		CHECK_EQ(bt_image_decode(c.jpg, c.rec[0].size, 0, 0, &im), BT_OK);
		for (int k = 0; k < 40; k++) {
			struct bt_record dec = raw_record(im.pixels, c.W, c.H, 3);
			bt_aug_draw(&p, c.W, c.H, &g, &d);
			CHECK_EQ(bt_aug_apply(&p, &d, &c.rec[0], a, s), BT_OK);
			CHECK_EQ(bt_aug_apply(&p, &d, &dec, b, s), BT_OK);
			CHECK(memcmp(a, b, 48 * 48 * 3) == 0);
			CHECK_EQ(bt_aug_apply(&p, &d, &c.rec[2], a, s), BT_OK);
			CHECK_EQ(bt_aug_apply(&p, &d, &c.rec[1], b, s), BT_OK);
			CHECK(memcmp(a, b, 48 * 48 * 3) == 0);
		}
		/* a box wholly in the padding: black, the JPEG still decoded */
		plain_draw(&d, -60, -55, 48, 48);
		p.pad = 60;
		memset(a, 1, 48 * 48 * 3);
		CHECK_EQ(bt_aug_apply(&p, &d, &c.rec[0], a, s), BT_OK);
		for (size_t i = 0; i < 48 * 48 * 3; i++)
			CHECK(a[i] == 0);
		/* outside the padding, or not the output's size: refused */
		plain_draw(&d, -61, 0, 48, 48);
		CHECK_EQ(bt_aug_apply(&p, &d, &c.rec[0], a, s), BT_ERR_INVALID);
		plain_draw(&d, 0, 0, 47, 48);
		CHECK_EQ(bt_aug_apply(&p, &d, &c.rec[1], a, s), BT_ERR_INVALID);
		bt_image_free(&im);
		defer_case_free(&c);
		free(a);
		free(b);
	}
	bt_aug_scratch_free(s);

	/* Deferred colour with colour operations on: the crop, then the colour stage, gives
	 * the whole transform's bits in every format. */
	bt_aug_defaults(&p, 1);
	p.size = 48;
	p.pad = 4;
	CHECK(defer_matches(&p, 8, 77, &colour));
	CHECK(colour > 0);
}

int main(void)
{
	RUN(test_defaults_check);
	RUN(test_draw_stats);
	RUN(test_draw_options);
	RUN(test_draw_fallback);
	RUN(test_erase_draw);
	RUN(test_erase_apply);
	RUN(test_pad_draw);
	RUN(test_pad_apply);
	RUN(test_draw_eval);
	RUN(test_identity);
	RUN(test_flip);
	RUN(test_colour_ops);
	RUN(test_colour_grey);
	RUN(test_normalise);
	RUN(test_f16);
	RUN(test_jpeg_matches_unfused);
	RUN(test_jpeg_matches_torchvision);
	RUN(test_dct_scaling);
	RUN(test_grey_jpeg);
	RUN(test_png_payload);
	RUN(test_raw_one_channel);
	RUN(test_determinism);
	RUN(test_simd_same_bytes);
	RUN(test_errors);
	RUN(test_identity_stream);
	RUN(test_defer_colour_train);
	RUN(test_defer_colour_eval);
	RUN(test_defer_colour_rules);
	return test_summary();
}
