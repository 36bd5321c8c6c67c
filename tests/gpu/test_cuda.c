/* test_cuda.c: the CUDA backend against the CPU backend, which is the oracle. Every op of
 * backend.h runs on both backends on the same random inputs of several shapes (strided,
 * padded, 1x1, grouped, depthwise, dilated and non-square convolutions; floor and ceil-mode
 * max and average pooling; fc with and without bias; batch norm in training, inference and
 * backward; the loss with label smoothing and soft targets; SGD with no-decay ranges and
 * gaps; dropout), and each output is compared by
 *     err = max|cpu - cuda| / max(1, max|cpu|)
 * against a stated tolerance: TOL_HEAVY (1e-4) for convolution, fc, batch norm and pooling,
 * TOL_ELEM (1e-5) for elementwise ops, the loss and SGD; dropout masks must be identical.
 * "Add into" gradients start from random values on both sides, so that adding and
 * overwriting cannot be confused. Then graphs: one training step of a small network with
 * every op (logits, loss, every gradient, parameters after SGD, inference with and without
 * batch norms folded) within TOL_RUN, and 100 SGD steps of cifar_resnet20_v1 on 16x16 inputs
 * whose losses must fall on both backends and end within 2 % of each other.
 *
 * Mixed precision: every op again in float16 and bfloat16 against the CPU's float32 on the
 * same inputs (rounded to the half type first), within TOL_F16 (1e-2) and TOL_BF16 (3e-2),
 * and exactly (the CPU's result rounded once) for the elementwise ops, max pooling and
 * data movement; the cast kernel bit for bit against the CPU's reference conversions
 * (edge values and random patterns); the overflow check; unscaling in SGD; the every-op
 * network in both types within TOL_RUN_F16 (2e-2) and TOL_RUN_BF16 (8e-2), gradients
 * divided by the loss scale; a float16 step forced to overflow by a loss scale of 2^24
 * (skipped, parameters untouched, the scale halved until a step goes through); and 100
 * steps of cifar_resnet20_v1 in each type ending within TOL_TRAIN (10 %) of the CPU's
 * float32 losses. Also the backend's memory and sync slots and --profile's use of sync.
 *
 * The input from uint8 crops (input_u8, the GPU's data path): the one kernel against the
 * CPU's slot (lib/augment's own colour stage) bit for bit in float32, float16 and
 * bfloat16, with and without mixup, RGB and grey crops from training draws, from
 * page-locked and ordinary host memory; three batches queued back to back (the staging
 * buffers reused while earlier copies and kernels may be in flight) and a page-locked
 * buffer rewritten after a download, as bt-train does; and bt_run_forward_u8 against
 * bt_run_forward on the same input bits, logits identical, in float32 and bfloat16.
 *
 * bt_backend_open's parsing is checked first, silently. Then, without a visible device or
 * in a build without the CUDA backend, the program prints one line "skip: ..." and exits 0.
 * Every comparison prints its error, so a GPU log shows the margins, not only a verdict.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "backend.h"
#include "bt.h"
#include "device.h"
#include "graph.h"
#include "rng.h"
#include "run.h"
#include "test.h"
#include "zoo.h"

#define TOL_HEAVY 1e-4
#define TOL_ELEM 1e-5
#define TOL_RUN 1e-3

/* gpu: the backend under test; with --cpu, a second CPU backend (its bfloat16). */
static struct bt_backend cpu, gpu;
static int on_cpu;

/* ---- helpers ---------------------------------------------------------------------------- */

static void fill(float *p, size_t n, uint64_t seed, float lo, float hi)
{
	struct bt_rng r;
	bt_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)(lo + (hi - lo) * bt_rng_uniform(&r));
}

/* A tensor on both backends: h in the CPU backend's (host) memory, d its copy on the device. */
struct pair {
	float *h, *d;
	size_t n;
};

static int pair_new(struct pair *p, size_t n, uint64_t seed, float lo, float hi)
{
	void *h = NULL, *d = NULL;
	p->h = p->d = NULL;
	p->n = n;
	if (cpu.i->alloc(cpu.ctx, n * sizeof(float), &h) < 0 ||
	    gpu.i->alloc(gpu.ctx, n * sizeof(float), &d) < 0) {
		fprintf(stderr, "  alloc of %zu floats: %s\n", n, bt_errmsg());
		return 0;
	}
	p->h = h;
	p->d = d;
	fill(p->h, n, seed, lo, hi);
	if (gpu.i->upload(gpu.ctx, p->d, p->h, n * sizeof(float)) < 0) {
		fprintf(stderr, "  upload: %s\n", bt_errmsg());
		return 0;
	}
	return 1;
}

static void pair_free(struct pair *p)
{
	if (p->h)
		cpu.i->release(cpu.ctx, p->h);
	if (p->d)
		gpu.i->release(gpu.ctx, p->d);
	p->h = p->d = NULL;
}

/* Fetches n floats of device memory; NULL (and a message) if that fails. */
static float *fetch(const float *d, size_t n)
{
	float *h = malloc((n ? n : 1) * sizeof *h);
	if (h && gpu.i->download(gpu.ctx, h, d, n * sizeof *h) < 0) {
		fprintf(stderr, "  download: %s\n", bt_errmsg());
		free(h);
		return NULL;
	}
	return h;
}

static double norm_err(const float *a, const float *b, size_t n)
{
	double mx = 1, err = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (fabs(a[i]) > mx)
			mx = fabs(a[i]);
		if (d > err || d != d)
			err = d != d ? INFINITY : d;
	}
	return err / mx;
}

/* The CPU's a (host) against the device's d: prints the error, 1 when within tol. */
static int near(const char *what, const float *a, const float *d, size_t n, double tol)
{
	float *b = fetch(d, n);
	double err;
	if (!b)
		return 0;
	err = norm_err(a, b, n);
	fprintf(stderr, "  %-52s err %.2e (tol %.0e)%s\n", what, err, tol, err <= tol ? "" : "  <-- FAIL");
	free(b);
	return err <= tol;
}

static int near_pair(const char *what, const struct pair *p, double tol)
{
	return near(what, p->h, p->d, p->n, tol);
}

/* Both calls succeed (or one message says which failed). */
static int both_ok(const char *what, int st_cpu, int st_gpu)
{
	if (st_cpu < 0 || st_gpu < 0) {
		fprintf(stderr, "  %s: cpu %d, cuda %d: %s\n", what, st_cpu, st_gpu, bt_errmsg());
		return 0;
	}
	return 1;
}

#define BOTH(what, call_cpu, call_gpu) CHECK(both_ok(what, (call_cpu), (call_gpu)))

static int out_size(int in, int k, int s, int p, int dil, int ceil)
{
	int span = in + 2 * p - (k - 1) * dil - 1;
	int o = ceil ? (span + s - 1) / s + 1 : span / s + 1;
	if (ceil && (o - 1) * s >= in + p)
		o--;
	return o;
}

/* ---- convolution ------------------------------------------------------------------------ */

struct conv_case {
	const char *name;
	int n, h, w, c, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups, bias;
};

static const struct conv_case conv_cases[] = {
	{ "3x3 s1 p1 bias", 2, 9, 9, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 },
	{ "3x3 s2 p1", 2, 10, 10, 16, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0 },
	{ "1x1", 3, 7, 7, 32, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0 },
	{ "1x1 s2 (shortcut)", 2, 8, 8, 16, 32, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0 },
	{ "7x7 s2 p3 (stem)", 2, 23, 23, 3, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0 },
	{ "depthwise 3x3", 2, 9, 9, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 0 },
	{ "depthwise 3x3 s2 bias", 2, 10, 10, 24, 24, 3, 3, 2, 2, 1, 1, 1, 1, 24, 1 },
	{ "grouped 3x3 g4", 2, 8, 8, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 4, 0 },
	{ "dilated 3x3 d2 p2", 2, 11, 11, 8, 8, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0 },
	{ "dilated d2 s2 g2 bias", 2, 13, 13, 8, 12, 3, 3, 2, 2, 2, 2, 2, 2, 2, 1 },
	{ "1x7 p(0,3)", 2, 9, 9, 8, 8, 1, 7, 1, 1, 0, 3, 1, 1, 1, 0 },
	{ "7x1 p(3,0)", 2, 9, 9, 8, 8, 7, 1, 1, 1, 3, 0, 1, 1, 1, 0 },
	{ "3x3 s2 valid (inception)", 4, 17, 17, 32, 48, 3, 3, 2, 2, 0, 0, 1, 1, 1, 0 },
	{ "3x3 valid, non-square input, bias", 1, 5, 6, 3, 5, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1 },
	{ "3x3 8x32x32x64 -> 64", 8, 32, 32, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0 },
};

TEST(conv)
{
	for (size_t t = 0; t < sizeof conv_cases / sizeof *conv_cases; t++) {
		const struct conv_case *k = &conv_cases[t];
		struct bt_conv_desc d = {
			.n = k->n, .h = k->h, .w = k->w, .c = k->c, .cout = k->cout, .kh = k->kh,
			.kw = k->kw, .sh = k->sh, .sw = k->sw, .ph = k->ph, .pw = k->pw, .dh = k->dh,
			.dw = k->dw, .groups = k->groups, .bias = k->bias,
			.post = (int)(t % 4), /* inference's sum and ReLU post-operations, in turn */
		};
		struct pair x, w, b, y, dy, dx, dw, db;
		char what[96];
		int ok = 1;
		d.oh = out_size(d.h, d.kh, d.sh, d.ph, d.dh, 0);
		d.ow = out_size(d.w, d.kw, d.sw, d.pw, d.dw, 0);
		size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.cout;
		size_t nw = (size_t)d.cout * d.kh * d.kw * (d.c / d.groups);
		CHECK(pair_new(&x, nx, 10 * t + 1, -1, 1) && pair_new(&w, nw, 10 * t + 2, -0.5f, 0.5f) &&
		      pair_new(&b, d.cout, 10 * t + 3, -1, 1) && pair_new(&y, ny, 10 * t + 4, -9, 9) &&
		      pair_new(&dy, ny, 10 * t + 5, -1, 1) && pair_new(&dx, nx, 10 * t + 6, -9, 9) &&
		      pair_new(&dw, nw, 10 * t + 7, -1, 1) && pair_new(&db, d.cout, 10 * t + 8, -1, 1));
		BOTH(k->name, cpu.i->conv_fwd(cpu.ctx, &d, x.h, w.h, d.bias ? b.h : NULL, y.h),
		     gpu.i->conv_fwd(gpu.ctx, &d, x.d, w.d, d.bias ? b.d : NULL, y.d));
		BOTH(k->name, cpu.i->conv_bwd_data(cpu.ctx, &d, dy.h, w.h, dx.h),
		     gpu.i->conv_bwd_data(gpu.ctx, &d, dy.d, w.d, dx.d));
		BOTH(k->name, cpu.i->conv_bwd_weights(cpu.ctx, &d, x.h, dy.h, dw.h, d.bias ? db.h : NULL),
		     gpu.i->conv_bwd_weights(gpu.ctx, &d, x.d, dy.d, dw.d, d.bias ? db.d : NULL));
		snprintf(what, sizeof what, "conv %s: y", k->name);
		ok &= near_pair(what, &y, TOL_HEAVY);
		snprintf(what, sizeof what, "conv %s: dx", k->name);
		ok &= near_pair(what, &dx, TOL_HEAVY);
		snprintf(what, sizeof what, "conv %s: dw (added)", k->name);
		ok &= near_pair(what, &dw, TOL_HEAVY);
		if (d.bias) {
			snprintf(what, sizeof what, "conv %s: db (added)", k->name);
			ok &= near_pair(what, &db, TOL_HEAVY);
		}
		pair_free(&x), pair_free(&w), pair_free(&b), pair_free(&y);
		pair_free(&dy), pair_free(&dx), pair_free(&dw), pair_free(&db);
		CHECK(ok);
	}
	/* A shape whose output does not follow from its input: both refuse it. */
	{
		struct bt_conv_desc bad = { .n = 1, .h = 5, .w = 5, .c = 2, .oh = 4, .ow = 5, .cout = 2,
					    .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1,
					    .dh = 1, .dw = 1, .groups = 1 };
		CHECK_EQ(gpu.i->conv_fwd(gpu.ctx, &bad, NULL, NULL, NULL, NULL), BT_ERR_INVALID);
	}
}

/* ---- batch norm ------------------------------------------------------------------------- */

TEST(batchnorm)
{
	/* x uniform in [lo, hi); the last case has a mean far above its spread (1000 against
	 * 1.2), where y = x sc + (beta - mean sc) and dx = A dy + B x + D cancel in float32
	 * unless they work from x - mean, as oneDNN does */
	static const struct { int n, h, w, c; float eps, momentum, lo, hi; } cases[] = {
		{ 4, 5, 5, 8, 1e-5f, 0.1f, -2, 3 },    { 2, 7, 7, 64, 1e-5f, 0.1f, -2, 3 },
		{ 8, 1, 1, 32, 1e-3f, 0.9f, -2, 3 },   { 3, 3, 5, 3, 1e-5f, 0.1f, -2, 3 },
		{ 16, 14, 14, 128, 1e-5f, 0.1f, -2, 3 },
		{ 1, 1, 1, 16, 1e-5f, 0.1f, -2, 3 }, /* one value per channel */
		{ 8, 6, 6, 64, 1e-5f, 0.1f, 998, 1002 },
	};
	for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
		struct bt_bn_desc d = { cases[t].n, cases[t].h, cases[t].w, cases[t].c, cases[t].eps,
					cases[t].momentum, BT_DTYPE_F32 };
		size_t nx = (size_t)d.n * d.h * d.w * d.c;
		struct pair x, y, g, b, rm, rv, sm, si, dy, dx, dg, db, yi;
		char what[96], shape[48];
		int ok = 1;
		uint64_t s = 100 * t;
		snprintf(shape, sizeof shape, "%dx%dx%dx%d", d.n, d.h, d.w, d.c);
		CHECK(pair_new(&x, nx, s + 1, cases[t].lo, cases[t].hi) &&
		      pair_new(&y, nx, s + 2, -9, 9) &&
		      pair_new(&g, d.c, s + 3, 0.5f, 1.5f) && pair_new(&b, d.c, s + 4, -1, 1) &&
		      pair_new(&rm, d.c, s + 5, -1, 1) && pair_new(&rv, d.c, s + 6, 0.5f, 2) &&
		      pair_new(&sm, d.c, s + 7, -9, 9) && pair_new(&si, d.c, s + 8, -9, 9) &&
		      pair_new(&dy, nx, s + 9, -1, 1) && pair_new(&dx, nx, s + 10, -9, 9) &&
		      pair_new(&dg, d.c, s + 11, -1, 1) && pair_new(&db, d.c, s + 12, -1, 1) &&
		      pair_new(&yi, nx, s + 13, -9, 9));
		BOTH(shape, cpu.i->bn_fwd_infer(cpu.ctx, &d, x.h, g.h, b.h, rm.h, rv.h, yi.h),
		     gpu.i->bn_fwd_infer(gpu.ctx, &d, x.d, g.d, b.d, rm.d, rv.d, yi.d));
		BOTH(shape, cpu.i->bn_fwd_train(cpu.ctx, &d, x.h, g.h, b.h, rm.h, rv.h, sm.h, si.h, y.h),
		     gpu.i->bn_fwd_train(gpu.ctx, &d, x.d, g.d, b.d, rm.d, rv.d, sm.d, si.d, y.d));
		/* each backend's backward from its own saved statistics */
		BOTH(shape, cpu.i->bn_bwd(cpu.ctx, &d, x.h, dy.h, g.h, sm.h, si.h, dx.h, dg.h, db.h),
		     gpu.i->bn_bwd(gpu.ctx, &d, x.d, dy.d, g.d, sm.d, si.d, dx.d, dg.d, db.d));
		snprintf(what, sizeof what, "bn %s: inference y", shape);
		ok &= near_pair(what, &yi, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: training y", shape);
		ok &= near_pair(what, &y, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: save_mean", shape);
		ok &= near_pair(what, &sm, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: save_invstd", shape);
		ok &= near_pair(what, &si, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: running_mean", shape);
		ok &= near_pair(what, &rm, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: running_var (unbiased)", shape);
		ok &= near_pair(what, &rv, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: dx", shape);
		ok &= near_pair(what, &dx, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: dgamma (added)", shape);
		ok &= near_pair(what, &dg, TOL_HEAVY);
		snprintf(what, sizeof what, "bn %s: dbeta (added)", shape);
		ok &= near_pair(what, &db, TOL_HEAVY);
		pair_free(&x), pair_free(&y), pair_free(&g), pair_free(&b), pair_free(&rm);
		pair_free(&rv), pair_free(&sm), pair_free(&si), pair_free(&dy), pair_free(&dx);
		pair_free(&dg), pair_free(&db), pair_free(&yi);
		CHECK(ok);
	}
}

/* ---- pooling ---------------------------------------------------------------------------- */

TEST(pooling)
{
	static const struct { int n, h, w, c, k, s, p, max, ceil, count_pad; } cases[] = {
		{ 2, 9, 9, 5, 3, 2, 1, 1, 0, 0 },    /* ResNet's stem */
		{ 2, 8, 8, 3, 2, 2, 0, 1, 0, 0 },
		{ 2, 10, 10, 4, 3, 2, 0, 1, 1, 0 },  /* ceil mode */
		{ 2, 11, 11, 2, 5, 3, 2, 1, 1, 0 },
		{ 2, 35, 35, 4, 3, 2, 0, 1, 0, 0 },  /* Inception-V3 */
		{ 2, 9, 9, 6, 3, 1, 1, 0, 0, 0 },    /* average, padding excluded */
		{ 2, 9, 9, 6, 3, 1, 1, 0, 0, 1 },    /* padding included */
		{ 2, 7, 7, 3, 2, 2, 0, 0, 1, 0 },    /* ResNet-D's shortcut: ceil, excluded */
		{ 2, 7, 7, 3, 3, 2, 1, 0, 1, 1 },    /* ceil, included: past the right padding too */
		{ 2, 6, 6, 2, 3, 3, 1, 0, 1, 1 },
		{ 3, 16, 16, 32, 3, 2, 1, 1, 1, 0 },
	};
	for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
		struct bt_pool_desc d = { .n = cases[t].n, .h = cases[t].h, .w = cases[t].w,
					  .c = cases[t].c, .kh = cases[t].k, .kw = cases[t].k,
					  .sh = cases[t].s, .sw = cases[t].s, .ph = cases[t].p,
					  .pw = cases[t].p, .max = cases[t].max,
					  .count_pad = cases[t].count_pad };
		struct pair x, y, dy, dx;
		void *wc = NULL, *wg = NULL;
		size_t bc, bg;
		char what[96];
		int ok = 1;
		d.oh = out_size(d.h, d.kh, d.sh, d.ph, 1, cases[t].ceil);
		d.ow = out_size(d.w, d.kw, d.sw, d.pw, 1, cases[t].ceil);
		size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.c;
		CHECK(pair_new(&x, nx, 300 + t, -1, 1) && pair_new(&y, ny, 400 + t, -9, 9) &&
		      pair_new(&dy, ny, 500 + t, -1, 1) && pair_new(&dx, nx, 600 + t, -9, 9));
		bc = cpu.i->pool_ws_bytes(cpu.ctx, &d);
		bg = gpu.i->pool_ws_bytes(gpu.ctx, &d);
		CHECK(!d.max || (bc && bg));
		if (bc)
			CHECK_EQ(cpu.i->alloc(cpu.ctx, bc, &wc), BT_OK);
		if (bg)
			CHECK_EQ(gpu.i->alloc(gpu.ctx, bg, &wg), BT_OK);
		snprintf(what, sizeof what, "%s %dx%d k%d s%d p%d%s%s on %dx%d", d.max ? "max" : "avg",
			 d.oh, d.ow, d.kh, d.sh, d.ph, cases[t].ceil ? " ceil" : "",
			 d.count_pad ? " count_pad" : "", d.h, d.w);
		BOTH(what, cpu.i->pool_fwd(cpu.ctx, &d, x.h, y.h, wc), gpu.i->pool_fwd(gpu.ctx, &d, x.d, y.d, wg));
		BOTH(what, cpu.i->pool_bwd(cpu.ctx, &d, dy.h, wc, dx.h), gpu.i->pool_bwd(gpu.ctx, &d, dy.d, wg, dx.d));
		strcat(what, ": y");
		ok &= near_pair(what, &y, TOL_HEAVY);
		what[strlen(what) - 1] = 0;
		strcat(what, "dx");
		ok &= near_pair(what, &dx, TOL_HEAVY);
		if (wc)
			cpu.i->release(cpu.ctx, wc);
		if (wg)
			gpu.i->release(gpu.ctx, wg);
		pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
		CHECK(ok);
	}
}

/* ---- fully connected -------------------------------------------------------------------- */

TEST(fc)
{
	static const struct { int n, cin, cout, bias, with_dx; } cases[] = {
		{ 4, 64, 10, 1, 1 }, { 32, 512, 1000, 0, 1 }, { 1, 7, 3, 1, 1 }, { 5, 2048, 100, 1, 0 },
		{ 256, 2048, 1000, 1, 1 },
	};
	for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
		struct bt_fc_desc d = { cases[t].n, cases[t].cin, cases[t].cout, cases[t].bias, BT_DTYPE_F32 };
		struct pair x, w, b, y, dy, dx, dw, db;
		char what[96], shape[64];
		int ok = 1;
		uint64_t s = 700 + 10 * t;
		snprintf(shape, sizeof shape, "fc %d x %d -> %d%s%s", d.n, d.cin, d.cout,
			 d.bias ? " bias" : "", cases[t].with_dx ? "" : " (no dx)");
		CHECK(pair_new(&x, (size_t)d.n * d.cin, s + 1, -1, 1) &&
		      pair_new(&w, (size_t)d.cout * d.cin, s + 2, -0.1f, 0.1f) &&
		      pair_new(&b, d.cout, s + 3, -1, 1) && pair_new(&y, (size_t)d.n * d.cout, s + 4, -9, 9) &&
		      pair_new(&dy, (size_t)d.n * d.cout, s + 5, -1, 1) &&
		      pair_new(&dx, (size_t)d.n * d.cin, s + 6, -9, 9) &&
		      pair_new(&dw, (size_t)d.cout * d.cin, s + 7, -1, 1) && pair_new(&db, d.cout, s + 8, -1, 1));
		BOTH(shape, cpu.i->fc_fwd(cpu.ctx, &d, x.h, w.h, d.bias ? b.h : NULL, y.h),
		     gpu.i->fc_fwd(gpu.ctx, &d, x.d, w.d, d.bias ? b.d : NULL, y.d));
		BOTH(shape,
		     cpu.i->fc_bwd(cpu.ctx, &d, x.h, dy.h, w.h, cases[t].with_dx ? dx.h : NULL, dw.h, d.bias ? db.h : NULL),
		     gpu.i->fc_bwd(gpu.ctx, &d, x.d, dy.d, w.d, cases[t].with_dx ? dx.d : NULL, dw.d, d.bias ? db.d : NULL));
		snprintf(what, sizeof what, "%s: y", shape);
		ok &= near_pair(what, &y, TOL_HEAVY);
		snprintf(what, sizeof what, "%s: dx%s", shape, cases[t].with_dx ? "" : " (untouched)");
		ok &= near_pair(what, &dx, TOL_HEAVY);
		snprintf(what, sizeof what, "%s: dw (added)", shape);
		ok &= near_pair(what, &dw, TOL_HEAVY);
		snprintf(what, sizeof what, "%s: db%s", shape, d.bias ? " (added)" : " (untouched)");
		ok &= near_pair(what, &db, TOL_HEAVY);
		pair_free(&x), pair_free(&w), pair_free(&b), pair_free(&y);
		pair_free(&dy), pair_free(&dx), pair_free(&dw), pair_free(&db);
		CHECK(ok);
	}
}

/* ---- elementwise and data movement ------------------------------------------------------ */

TEST(elementwise)
{
	static const size_t sizes[] = { 1, 1000, 100003 };
	for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
		size_t n = sizes[t];
		struct pair a, b, y, z;
		char what[96];
		int ok = 1;
		CHECK(pair_new(&a, n, 900 + t, -1, 1) && pair_new(&b, n, 910 + t, -1, 1) &&
		      pair_new(&y, n, 920 + t, -1, 1) && pair_new(&z, n, 930 + t, -1, 1));
		BOTH("relu", cpu.i->relu_fwd(cpu.ctx, BT_DTYPE_F32, a.h, y.h, n), gpu.i->relu_fwd(gpu.ctx, BT_DTYPE_F32, a.d, y.d, n));
		snprintf(what, sizeof what, "relu_fwd n=%zu", n);
		ok &= near_pair(what, &y, TOL_ELEM);
		BOTH("relu in place", cpu.i->relu_fwd(cpu.ctx, BT_DTYPE_F32, b.h, b.h, n), gpu.i->relu_fwd(gpu.ctx, BT_DTYPE_F32, b.d, b.d, n));
		snprintf(what, sizeof what, "relu_fwd in place n=%zu", n);
		ok &= near_pair(what, &b, TOL_ELEM);
		BOTH("relu_bwd", cpu.i->relu_bwd(cpu.ctx, BT_DTYPE_F32, b.h, a.h, z.h, n), gpu.i->relu_bwd(gpu.ctx, BT_DTYPE_F32, b.d, a.d, z.d, n));
		snprintf(what, sizeof what, "relu_bwd n=%zu", n);
		ok &= near_pair(what, &z, TOL_ELEM);
		BOTH("add", cpu.i->add(cpu.ctx, BT_DTYPE_F32, a.h, z.h, y.h, n), gpu.i->add(gpu.ctx, BT_DTYPE_F32, a.d, z.d, y.d, n));
		snprintf(what, sizeof what, "add n=%zu", n);
		ok &= near_pair(what, &y, TOL_ELEM);
		BOTH("add y == a", cpu.i->add(cpu.ctx, BT_DTYPE_F32, y.h, a.h, y.h, n), gpu.i->add(gpu.ctx, BT_DTYPE_F32, y.d, a.d, y.d, n));
		BOTH("add y == b", cpu.i->add(cpu.ctx, BT_DTYPE_F32, z.h, y.h, y.h, n), gpu.i->add(gpu.ctx, BT_DTYPE_F32, z.d, y.d, y.d, n));
		snprintf(what, sizeof what, "add in place (y == a, y == b) n=%zu", n);
		ok &= near_pair(what, &y, TOL_ELEM);
		BOTH("accumulate", cpu.i->accumulate(cpu.ctx, BT_DTYPE_F32, z.h, a.h, n), gpu.i->accumulate(gpu.ctx, BT_DTYPE_F32, z.d, a.d, n));
		snprintf(what, sizeof what, "accumulate n=%zu", n);
		ok &= near_pair(what, &z, TOL_ELEM);
		BOTH("mul", cpu.i->mul(cpu.ctx, BT_DTYPE_F32, a.h, z.h, b.h, n), gpu.i->mul(gpu.ctx, BT_DTYPE_F32, a.d, z.d, b.d, n));
		snprintf(what, sizeof what, "mul n=%zu", n);
		ok &= near_pair(what, &b, TOL_ELEM);
		BOTH("copy", cpu.i->copy(cpu.ctx, BT_DTYPE_F32, y.h, b.h, n), gpu.i->copy(gpu.ctx, BT_DTYPE_F32, y.d, b.d, n));
		snprintf(what, sizeof what, "copy n=%zu", n);
		ok &= near_pair(what, &y, TOL_ELEM);
		BOTH("zero", cpu.i->zero(cpu.ctx, z.h, n * sizeof(float)), gpu.i->zero(gpu.ctx, z.d, n * sizeof(float)));
		snprintf(what, sizeof what, "zero n=%zu", n);
		ok &= near_pair(what, &z, 0);
		pair_free(&a), pair_free(&b), pair_free(&y), pair_free(&z);
		CHECK(ok);
	}
}

TEST(gap_and_concat)
{
	static const struct { int n; size_t hw; int c; } gaps[] = { { 3, 49, 64 }, { 2, 1, 10 }, { 4, 64, 2048 } };
	for (size_t t = 0; t < sizeof gaps / sizeof *gaps; t++) {
		size_t nx = (size_t)gaps[t].n * gaps[t].hw * gaps[t].c, ny = (size_t)gaps[t].n * gaps[t].c;
		struct pair x, y, dy, dx;
		char what[96];
		int ok = 1;
		CHECK(pair_new(&x, nx, 1000 + t, -1, 1) && pair_new(&y, ny, 1010 + t, -9, 9) &&
		      pair_new(&dy, ny, 1020 + t, -1, 1) && pair_new(&dx, nx, 1030 + t, -9, 9));
		BOTH("gap", cpu.i->gap_fwd(cpu.ctx, BT_DTYPE_F32, x.h, y.h, gaps[t].n, gaps[t].hw, gaps[t].c),
		     gpu.i->gap_fwd(gpu.ctx, BT_DTYPE_F32, x.d, y.d, gaps[t].n, gaps[t].hw, gaps[t].c));
		BOTH("gap bwd", cpu.i->gap_bwd(cpu.ctx, BT_DTYPE_F32, dy.h, dx.h, gaps[t].n, gaps[t].hw, gaps[t].c),
		     gpu.i->gap_bwd(gpu.ctx, BT_DTYPE_F32, dy.d, dx.d, gaps[t].n, gaps[t].hw, gaps[t].c));
		snprintf(what, sizeof what, "gap_fwd %d x %zu x %d", gaps[t].n, gaps[t].hw, gaps[t].c);
		ok &= near_pair(what, &y, TOL_ELEM);
		snprintf(what, sizeof what, "gap_bwd %d x %zu x %d", gaps[t].n, gaps[t].hw, gaps[t].c);
		ok &= near_pair(what, &dx, TOL_ELEM);
		pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
		CHECK(ok);
	}
	{
		/* channels [4, 7) of a (50, 10) tensor: the others must stay as they were */
		size_t pixels = 50;
		int cj = 3, co = 10, off = 4, ok = 1;
		struct pair xj, y, dxj;
		CHECK(pair_new(&xj, pixels * cj, 1100, -1, 1) && pair_new(&y, pixels * co, 1101, -1, 1) &&
		      pair_new(&dxj, pixels * cj, 1102, -9, 9));
		BOTH("concat", cpu.i->concat_fwd(cpu.ctx, BT_DTYPE_F32, xj.h, y.h, pixels, cj, co, off),
		     gpu.i->concat_fwd(gpu.ctx, BT_DTYPE_F32, xj.d, y.d, pixels, cj, co, off));
		BOTH("concat bwd", cpu.i->concat_bwd(cpu.ctx, BT_DTYPE_F32, y.h, dxj.h, pixels, cj, co, off),
		     gpu.i->concat_bwd(gpu.ctx, BT_DTYPE_F32, y.d, dxj.d, pixels, cj, co, off));
		ok &= near_pair("concat_fwd 50 x 3 into 50 x 10 at 4", &y, 0);
		ok &= near_pair("concat_bwd", &dxj, 0);
		pair_free(&xj), pair_free(&y), pair_free(&dxj);
		CHECK(ok);
	}
}

TEST(dropout_masks_identical)
{
	static const struct { size_t n; float p; uint64_t seed; } cases[] = {
		{ 100003, 0.2f, 42 }, { 4096, 0.5f, 7 }, { 1, 0.9f, UINT64_C(0xffffffffffffffff) },
	};
	for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
		size_t n = cases[t].n, zeros = 0;
		struct pair x, y, m;
		float *mg, *yg;
		CHECK(pair_new(&x, n, 1200 + t, -1, 1) && pair_new(&y, n, 1210 + t, -9, 9) &&
		      pair_new(&m, n, 1220 + t, -9, 9));
		BOTH("dropout", cpu.i->dropout_fwd(cpu.ctx, BT_DTYPE_F32, x.h, y.h, m.h, n, cases[t].p, cases[t].seed),
		     gpu.i->dropout_fwd(gpu.ctx, BT_DTYPE_F32, x.d, y.d, m.d, n, cases[t].p, cases[t].seed));
		CHECK((mg = fetch(m.d, n)) != NULL);
		CHECK((yg = fetch(y.d, n)) != NULL);
		for (size_t i = 0; i < n; i++)
			zeros += m.h[i] == 0;
		fprintf(stderr, "  dropout n=%zu p=%.1f: %zu dropped, masks %s, outputs %s\n", n, cases[t].p,
			zeros, memcmp(mg, m.h, n * sizeof *mg) ? "DIFFER" : "identical",
			memcmp(yg, y.h, n * sizeof *yg) ? "DIFFER" : "identical");
		CHECK(memcmp(mg, m.h, n * sizeof *mg) == 0);
		CHECK(memcmp(yg, y.h, n * sizeof *yg) == 0);
		free(mg);
		free(yg);
		pair_free(&x), pair_free(&y), pair_free(&m);
	}
}

TEST(bn_fold)
{
	for (int with_bias = 0; with_bias < 2; with_bias++) {
		int cout = 16;
		size_t per = 3 * 3 * 8;
		struct pair w, b, g, be, mu, var, wo, bo;
		int ok = 1;
		CHECK(pair_new(&w, cout * per, 1300, -1, 1) && pair_new(&b, cout, 1301, -1, 1) &&
		      pair_new(&g, cout, 1302, 0.5f, 1.5f) && pair_new(&be, cout, 1303, -1, 1) &&
		      pair_new(&mu, cout, 1304, -1, 1) && pair_new(&var, cout, 1305, 0.01f, 2) &&
		      pair_new(&wo, cout * per, 1306, -9, 9) && pair_new(&bo, cout, 1307, -9, 9));
		BOTH("bn_fold",
		     cpu.i->bn_fold(cpu.ctx, w.h, with_bias ? b.h : NULL, g.h, be.h, mu.h, var.h, 1e-5f, cout, per, wo.h, bo.h),
		     gpu.i->bn_fold(gpu.ctx, w.d, with_bias ? b.d : NULL, g.d, be.d, mu.d, var.d, 1e-5f, cout, per, wo.d, bo.d));
		ok &= near_pair(with_bias ? "bn_fold with a bias: w" : "bn_fold: w", &wo, TOL_ELEM);
		ok &= near_pair(with_bias ? "bn_fold with a bias: b" : "bn_fold: b", &bo, TOL_ELEM);
		pair_free(&w), pair_free(&b), pair_free(&g), pair_free(&be);
		pair_free(&mu), pair_free(&var), pair_free(&wo), pair_free(&bo);
		CHECK(ok);
	}
}

/* ---- loss and optimizer ----------------------------------------------------------------- */

TEST(softmax_ce)
{
	static const struct { int n, K; float eps, T; int soft; } cases[] = {
		{ 8, 10, 0.1f, 1, 0 }, { 5, 1000, 0, 2, 0 }, { 6, 7, 0, 1.5f, 1 }, { 256, 1000, 0.1f, 1, 0 },
	};
	for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
		int n = cases[t].n, K = cases[t].K;
		struct pair z, q, dz;
		int32_t *lh = malloc(n * sizeof *lh);
		void *ld = NULL;
		double lc = 0, lg = 0;
		char what[96];
		int ok = 1;
		struct bt_rng r;
		CHECK(lh);
		bt_rng_seed(&r, 1400 + t);
		for (int m = 0; m < n; m++)
			lh[m] = (int32_t)bt_rng_below(&r, K);
		CHECK(pair_new(&z, (size_t)n * K, 1410 + t, -4, 4) && pair_new(&q, (size_t)n * K, 1420 + t, 0, 1) &&
		      pair_new(&dz, (size_t)n * K, 1430 + t, -9, 9));
		CHECK_EQ(gpu.i->alloc(gpu.ctx, n * sizeof *lh, &ld), BT_OK);
		CHECK_EQ(gpu.i->upload(gpu.ctx, ld, lh, n * sizeof *lh), BT_OK);
		if (cases[t].soft) {
			/* rows of q summing to 1 */
			for (int m = 0; m < n; m++) {
				double s = 0;
				for (int k = 0; k < K; k++)
					s += q.h[m * K + k];
				for (int k = 0; k < K; k++)
					q.h[m * K + k] = (float)(q.h[m * K + k] / s);
			}
			CHECK_EQ(gpu.i->upload(gpu.ctx, q.d, q.h, (size_t)n * K * sizeof(float)), BT_OK);
		}
		BOTH("softmax_ce",
		     cpu.i->softmax_ce(cpu.ctx, z.h, cases[t].soft ? NULL : lh, cases[t].soft ? q.h : NULL, n, K,
				       cases[t].eps, cases[t].T, dz.h, &lc),
		     gpu.i->softmax_ce(gpu.ctx, z.d, cases[t].soft ? NULL : ld, cases[t].soft ? q.d : NULL, n, K,
				       cases[t].eps, cases[t].T, dz.d, &lg));
		snprintf(what, sizeof what, "softmax_ce %d x %d eps %.1f T %.1f%s: dlogits", n, K, cases[t].eps,
			 cases[t].T, cases[t].soft ? " soft" : "");
		ok &= near_pair(what, &dz, TOL_ELEM);
		fprintf(stderr, "  %-52s err %.2e (tol %.0e): %.9f %.9f\n", "  loss", fabs(lc - lg) / fmax(1, fabs(lc)),
			TOL_ELEM, lc, lg);
		ok &= fabs(lc - lg) / fmax(1, fabs(lc)) <= TOL_ELEM;
		if (!cases[t].soft) {
			/* a label out of range: the same refusal */
			char msg[256];
			lh[n - 1] = K;
			CHECK_EQ(gpu.i->upload(gpu.ctx, ld, lh, n * sizeof *lh), BT_OK);
			CHECK_EQ(cpu.i->softmax_ce(cpu.ctx, z.h, lh, NULL, n, K, 0, 1, dz.h, &lc), BT_ERR_INVALID);
			snprintf(msg, sizeof msg, "%s", bt_errmsg());
			CHECK_EQ(gpu.i->softmax_ce(gpu.ctx, z.d, ld, NULL, n, K, 0, 1, dz.d, &lg), BT_ERR_INVALID);
			CHECK_STR(bt_errmsg(), msg);
		}
		gpu.i->release(gpu.ctx, ld);
		free(lh);
		pair_free(&z), pair_free(&q), pair_free(&dz);
		CHECK(ok);
	}
}

TEST(sgd_ranges)
{
	/* decay and no-decay ranges, an empty range, and gaps the update must not touch */
	static const struct bt_sgd_range r1[] = {
		{ 0, 3000, 1 }, { 3000, 17, 0 }, { 3100, 0, 1 }, { 3100, 5000, 1 }, { 9000, 1000, 0 },
	};
	static const struct bt_sgd_range r2[] = { { 0, 10000, 1 } };
	size_t n = 10000;
	struct pair w, dw, v;
	int ok = 1;
	CHECK(pair_new(&w, n, 1500, -1, 1) && pair_new(&dw, n, 1501, -1, 1) && pair_new(&v, n, 1502, -1, 1));
	for (int step = 0; step < 3; step++) {
		const struct bt_sgd_range *r = step < 2 ? r1 : r2;
		int nr = step < 2 ? 5 : 1;
		BOTH("sgd", cpu.i->sgd(cpu.ctx, w.h, dw.h, v.h, r, nr, 0.1f, 0.9f, 1e-4f, 1.0f),
		     gpu.i->sgd(gpu.ctx, w.d, dw.d, v.d, r, nr, 0.1f, 0.9f, 1e-4f, 1.0f));
	}
	ok &= near_pair("sgd (3 steps, two range sets): w", &w, TOL_ELEM);
	ok &= near_pair("sgd: momentum", &v, TOL_ELEM);
	pair_free(&w), pair_free(&dw), pair_free(&v);
	CHECK(ok);
}

/* ---- graphs ----------------------------------------------------------------------------- */

/* Every op: conv with bias, batch norm, ReLU, max pooling, depthwise and dilated
 * convolutions, concatenation, a residual addition, ceil-mode average pooling, global
 * average pooling, flatten, dropout, fc. */
static int every_op_net(struct bt_graph *g)
{
	struct bt_conv_args stem = { .cout = 8, .kh = 3, .kw = 3, .ph = 1, .pw = 1, .bias = 1 };
	struct bt_conv_args dwc = { .cout = 8, .kh = 3, .kw = 3, .ph = 1, .pw = 1, .groups = 8 };
	struct bt_conv_args dil = { .cout = 8, .kh = 3, .kw = 3, .ph = 2, .pw = 2, .dh = 2, .dw = 2 };
	struct bt_conv_args mix = { .cout = 8, .kh = 1, .kw = 1, .bias = 1 };
	int x, a, p, b1, b2, cat, c, r, q, xs[2];
	bt_graph_init(g);
	x = bt_input(g, 9, 9, 3);
	a = bt_relu(g, bt_batchnorm(g, bt_conv2d(g, x, "stem", &stem), "stem_bn", 0, 0));
	p = bt_maxpool(g, a, 3, 2, 1, 0);
	b1 = bt_batchnorm(g, bt_conv2d(g, p, "dw", &dwc), "dw_bn", 0, 0);
	b2 = bt_conv(g, p, "pw", 4, 1, 1, 0);
	xs[0] = b1;
	xs[1] = b2;
	cat = bt_concat(g, xs, 2);
	c = bt_conv2d(g, cat, "mix", &mix);
	r = bt_relu(g, bt_add(g, c, p));
	q = bt_avgpool(g, r, 2, 2, 2, 2, 0, 0, 1, 0);
	q = bt_relu(g, bt_batchnorm(g, bt_conv2d(g, q, "dil", &dil), "dil_bn", 0, 0));
	g->output = bt_fc(g, bt_dropout(g, bt_flatten(g, bt_global_avgpool(g, q)), 0.3f), "fc", 5, 1);
	return g->status;
}

static int run_near(const char *what, struct bt_run *rc, struct bt_run *rg,
		    const float *(*get)(struct bt_run *), size_t n, double tol)
{
	return near(what, get(rc), get(rg), n, tol);
}

static const float *get_params(struct bt_run *r) { return bt_run_params(r); }
static const float *get_grads(struct bt_run *r) { return bt_run_grads(r); }
static const float *get_logits(struct bt_run *r) { return bt_run_logits(r); }

TEST(run_every_op)
{
	struct bt_graph g;
	struct bt_run *rc = NULL, *rg = NULL;
	enum { N = 4, K = 5 };
	float x[N * 9 * 9 * 3], soft[N * K];
	int32_t labels[N] = { 0, 3, 4, 1 };
	double lc, lg;
	int ok = 1;
	CHECK_EQ(every_op_net(&g), BT_OK);
	CHECK_EQ(bt_run_new(&rc, &g, &cpu, N), BT_OK);
	CHECK_EQ(bt_run_new(&rg, &g, &gpu, N), BT_OK);
	CHECK_EQ(bt_run_init_params(rc, 3, 0), BT_OK);
	CHECK_EQ(bt_run_init_params(rg, 3, 0), BT_OK);
	fill(x, sizeof x / sizeof *x, 1600, -1, 1);
	fill(soft, N * K, 1601, 0, 0.4f);
	BOTH("forward", bt_run_forward(rc, x, N, 1, 11), bt_run_forward(rg, x, N, 1, 11));
	ok &= run_near("every-op net: training logits", rc, rg, get_logits, N * K, TOL_RUN);
	BOTH("loss", bt_run_loss(rc, labels, NULL, 0.1f, 1, &lc), bt_run_loss(rg, labels, NULL, 0.1f, 1, &lg));
	fprintf(stderr, "  %-52s err %.2e (tol %.0e)\n", "every-op net: loss", fabs(lc - lg) / fmax(1, lc), TOL_RUN);
	ok &= fabs(lc - lg) / fmax(1, lc) <= TOL_RUN;
	BOTH("backward", bt_run_backward(rc), bt_run_backward(rg));
	ok &= run_near("every-op net: every gradient", rc, rg, get_grads, g.nfloats, TOL_RUN);
	bt_run_sgd(rc, 0.1f, 0.9f, 1e-4f, 1);
	bt_run_sgd(rg, 0.1f, 0.9f, 1e-4f, 1);
	ok &= run_near("every-op net: parameters after SGD", rc, rg, get_params, g.nfloats, TOL_RUN);
	BOTH("forward 2", bt_run_forward(rc, x, N, 1, 12), bt_run_forward(rg, x, N, 1, 12));
	BOTH("soft loss", bt_run_loss(rc, NULL, soft, 0, 2, &lc), bt_run_loss(rg, NULL, soft, 0, 2, &lg));
	fprintf(stderr, "  %-52s err %.2e (tol %.0e)\n", "every-op net: soft-target loss, step 2",
		fabs(lc - lg) / fmax(1, lc), TOL_RUN);
	ok &= fabs(lc - lg) / fmax(1, lc) <= TOL_RUN;
	BOTH("backward 2", bt_run_backward(rc), bt_run_backward(rg));
	ok &= run_near("every-op net: every gradient, step 2", rc, rg, get_grads, g.nfloats, TOL_RUN);
	BOTH("inference", bt_run_forward(rc, x, N, 0, 0), bt_run_forward(rg, x, N, 0, 0));
	ok &= run_near("every-op net: inference logits, batch norms folded", rc, rg, get_logits, N * K, TOL_RUN);
	bt_run_fuse(rc, 0);
	bt_run_fuse(rg, 0);
	BOTH("inference unfused", bt_run_forward(rc, x, N, 0, 0), bt_run_forward(rg, x, N, 0, 0));
	ok &= run_near("every-op net: inference logits, unfused", rc, rg, get_logits, N * K, TOL_RUN);
	bt_run_free(rc);
	bt_run_free(rg);
	bt_graph_free(&g);
	CHECK(ok);
}

/* Fused inference (batch norms folded, ReLUs and residual additions as post-operations of
 * the convolutions) on zoo models with identity and downsampling shortcuts: the GPU's
 * logits against the CPU's, and against its own unfused pass. */
TEST(run_zoo_fused_inference)
{
	static const struct { const char *name; int size; } m[] = {
		{ "cifar_resnet20_v1", 16 }, { "resnet18_v1d", 32 }, { "resnet50_v1b", 32 },
	};
	for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
		struct bt_model_opts o = { .classes = 7, .in_channels = 3, .input_size = m[k].size };
		struct bt_graph g;
		struct bt_run *rc = NULL, *rg = NULL;
		enum { N = 4 };
		size_t nx = (size_t)N * m[k].size * m[k].size * 3;
		float *x = (float *)malloc(nx * sizeof *x), fused[N * 7];
		char what[96];
		int ok = 1;
		CHECK(x != NULL);
		bt_graph_init(&g);
		CHECK_EQ(bt_model_build(&g, m[k].name, &o), BT_OK);
		CHECK_EQ(bt_run_new(&rc, &g, &cpu, N), BT_OK);
		CHECK_EQ(bt_run_new(&rg, &g, &gpu, N), BT_OK);
		CHECK_EQ(bt_run_init_params(rc, 21, 0), BT_OK);
		CHECK_EQ(bt_run_init_params(rg, 21, 0), BT_OK);
		fill(x, nx, 2100 + k, -1, 1);
		for (int s = 0; s < 5; s++) /* running statistics away from 0 and 1 */
			BOTH("forward", bt_run_forward(rc, x, N, 1, 0), bt_run_forward(rg, x, N, 1, 0));
		BOTH("inference", bt_run_forward(rc, x, N, 0, 0), bt_run_forward(rg, x, N, 0, 0));
		snprintf(what, sizeof what, "%s: fused inference logits", m[k].name);
		ok &= run_near(what, rc, rg, get_logits, N * 7, TOL_RUN);
		CHECK_EQ(bt_run_read_logits(rg, fused, N), BT_OK);
		bt_run_fuse(rg, 0);
		CHECK_EQ(bt_run_forward(rg, x, N, 0, 0), BT_OK);
		snprintf(what, sizeof what, "%s: GPU fused against unfused", m[k].name);
		ok &= near(what, fused, bt_run_logits(rg), N * 7, TOL_RUN);
		bt_run_free(rc);
		bt_run_free(rg);
		bt_graph_free(&g);
		free(x);
		CHECK(ok);
	}
}

/* 100 SGD steps on four fixed batches whose pixels carry a little of the label: the loss
 * must fall on both backends and the two must end within 2 % of each other. Rounding
 * differences grow chaotically mid-run (up to about 4 % between two CPU runs whose initial
 * weights differ by 1e-6 relative), then shrink again as both settle at the floor that
 * label smoothing leaves, so the check is on the mean of the last 10 steps. */
enum { CB = 16, CNB = 4, CSTEPS = 100, CS = 16 };

/* The CPU's losses of the run below, kept for the mixed-precision runs to compare with. */
static double cifar_cpu[CSTEPS];
static int cifar_cpu_done;

/* CSTEPS SGD steps of cifar_resnet20_v1 on be in dtype: the loss of every step, and the
 * loss scaler at the end. 1 on success, 0 after a message. */
static int cifar_losses(struct bt_backend *be, int dtype, double *loss, uint64_t *skipped, double *scale)
{
	const size_t per = (size_t)CS * CS * 3;
	struct bt_model_opts o = { .classes = 10, .in_channels = 3, .input_size = CS };
	struct bt_graph g;
	struct bt_run *r = NULL;
	float *x = malloc(CNB * CB * per * sizeof *x);
	int32_t labels[CNB * CB];
	struct bt_rng rng;
	int ok = 0, st;
	bt_graph_init(&g);
	if (!x || bt_model_build(&g, "cifar_resnet20_v1", &o) < 0)
		goto out;
	bt_rng_seed(&rng, 7);
	for (size_t i = 0; i < CNB * CB * per; i++)
		x[i] = (float)(bt_rng_uniform(&rng) * 2 - 1);
	for (int i = 0; i < CNB * CB; i++)
		labels[i] = (int32_t)bt_rng_below(&rng, 10);
	for (int i = 0; i < CNB * CB; i++)
		for (size_t k = 0; k < per; k += 3)
			x[i * per + k] += 0.5f * (labels[i] - 4.5f) / 4.5f;
	if (bt_run_new_dtype(&r, &g, be, CB, dtype) < 0 || bt_run_init_params(r, 1, 0) < 0)
		goto out;
	for (int s = 0; s < CSTEPS; s++) {
		const float *xb = x + (size_t)(s % CNB) * CB * per;
		const int32_t *lb = labels + (s % CNB) * CB;
		if ((st = bt_run_forward(r, xb, CB, 1, s)) < 0 || (st = bt_run_loss(r, lb, NULL, 0.1f, 1, &loss[s])) < 0 ||
		    (st = bt_run_backward(r)) < 0 || (st = bt_run_sgd(r, 0.05f, 0.9f, 1e-4f, 1)) < 0)
			goto out;
	}
	*skipped = bt_run_skipped_steps(r);
	*scale = bt_run_loss_scale(r);
	ok = 1;
out:
	if (!ok)
		fprintf(stderr, "  cifar_resnet20_v1 on %s in %s: %s\n", be->i->name, bt_dtype_name(dtype), bt_errmsg());
	bt_run_free(r);
	bt_graph_free(&g);
	free(x);
	return ok;
}

static double last10(const double *l)
{
	double t = 0;
	for (int s = CSTEPS - 10; s < CSTEPS; s++)
		t += l[s] / 10;
	return t;
}

/* 100 SGD steps on four fixed batches whose pixels carry a little of the label: the loss
 * must fall on both backends and the two must end within 2 % of each other. Rounding
 * differences grow chaotically mid-run (up to about 4 % between two CPU runs whose initial
 * weights differ by 1e-6 relative), then shrink again as both settle at the floor that
 * label smoothing leaves, so the check is on the mean of the last 10 steps. */
TEST(run_cifar_resnet20_tracks_cpu)
{
	double lg[CSTEPS], tc, tg, rel, scale;
	uint64_t skipped;
	CHECK(cifar_losses(&cpu, BT_DTYPE_F32, cifar_cpu, &skipped, &scale));
	cifar_cpu_done = 1;
	CHECK(cifar_losses(&gpu, BT_DTYPE_F32, lg, &skipped, &scale));
	for (int s = 0; s < CSTEPS; s++)
		if (s == 0 || (s + 1) % 10 == 0)
			fprintf(stderr, "  cifar_resnet20_v1 step %3d: loss cpu %.6f cuda %.6f\n", s + 1, cifar_cpu[s], lg[s]);
	tc = last10(cifar_cpu);
	tg = last10(lg);
	rel = fabs(tc - tg) / tc;
	fprintf(stderr, "  cifar_resnet20_v1: first step %.2e apart; mean of the last 10 steps cpu %.6f "
		"cuda %.6f, %.2f %% apart (tol 2 %%)\n", fabs(cifar_cpu[0] - lg[0]) / cifar_cpu[0], tc, tg, 100 * rel);
	CHECK(fabs(cifar_cpu[0] - lg[0]) / cifar_cpu[0] < 1e-4);
	CHECK(tc < 0.5 * cifar_cpu[0] && tg < 0.5 * lg[0]);
	CHECK(rel < 0.02);
}

/* ---- mixed precision ------------------------------------------------------------------------ */

/* Each half op against the float32 CPU on the same inputs (rounded to the half type on the
 * host first, so that both sides compute on the same numbers): the output's rounding
 * (2^-11 relative for float16, 2^-8 for bfloat16) and float32 accumulation in another order
 * stay well inside these normalised errors. */
#define TOL_F16 1e-2
#define TOL_BF16 3e-2
/* Whole networks, every activation rounded in every layer. */
#define TOL_RUN_F16 2e-2
#define TOL_RUN_BF16 8e-2
/* 100 steps of cifar_resnet20_v1: the mean of the last 10 losses against the CPU's float32
 * (2 % for the float32 CUDA run; float16 may also skip its first few steps while the loss
 * scale comes down from 2^16). First choices, to be tightened from the margins a GPU run
 * prints. */
#define TOL_TRAIN_F16 0.10
#define TOL_TRAIN_BF16 0.10

static const int half_types[2] = { BT_DTYPE_F16, BT_DTYPE_BF16 };
/* The types the backend under test computes in: both on CUDA, bfloat16 alone with --cpu. */
static int other_has(int dt) { return gpu.i->supports(gpu.ctx, dt); }

static double tol_of(int dt) { return dt == BT_DTYPE_F16 ? TOL_F16 : TOL_BF16; }
static double tol_run_of(int dt) { return dt == BT_DTYPE_F16 ? TOL_RUN_F16 : TOL_RUN_BF16; }

static uint16_t to_half(int dt, float f)
{
	return dt == BT_DTYPE_F16 ? bt_f32_to_f16(f) : bt_f32_to_bf16(f);
}

static float from_half(int dt, uint16_t h)
{
	return dt == BT_DTYPE_F16 ? bt_f16_to_f32(h) : bt_bf16_to_f32(h);
}

/* What a half tensor would hold: each value rounded to dt. */
static void round_host(float *p, size_t n, int dt)
{
	for (size_t i = 0; i < n; i++)
		p[i] = from_half(dt, to_half(dt, p[i]));
}

/* A half tensor: d on the device in dt, h the same values in float32 in the CPU backend's
 * memory. */
struct hpair {
	float *h;
	void *d;
	size_t n;
	int dt;
};

static int hpair_new(struct hpair *p, size_t n, uint64_t seed, float lo, float hi, int dt)
{
	void *h = NULL;
	uint16_t *bits = malloc((n ? n : 1) * sizeof *bits);
	p->h = NULL;
	p->d = NULL;
	p->n = n;
	p->dt = dt;
	if (!bits || cpu.i->alloc(cpu.ctx, n * sizeof(float), &h) < 0 || gpu.i->alloc(gpu.ctx, n * 2, &p->d) < 0) {
		fprintf(stderr, "  alloc of %zu halves: %s\n", n, bt_errmsg());
		free(bits);
		return 0;
	}
	p->h = h;
	fill(p->h, n, seed, lo, hi);
	for (size_t i = 0; i < n; i++) {
		bits[i] = to_half(dt, p->h[i]);
		p->h[i] = from_half(dt, bits[i]);
	}
	if (gpu.i->upload(gpu.ctx, p->d, bits, n * 2) < 0) {
		fprintf(stderr, "  upload: %s\n", bt_errmsg());
		free(bits);
		return 0;
	}
	free(bits);
	return 1;
}

static void hpair_free(struct hpair *p)
{
	if (p->h)
		cpu.i->release(cpu.ctx, p->h);
	if (p->d)
		gpu.i->release(gpu.ctx, p->d);
	p->h = NULL;
	p->d = NULL;
}

/* The device's half tensor d against the CPU's float32 a: the normalised error within tol,
 * or, with tol 0, every element exactly a's value rounded to dt. Prints the outcome. */
static int near_half(const char *what, const float *a, const void *d, size_t n, int dt, double tol)
{
	uint16_t *bits = malloc((n ? n : 1) * sizeof *bits);
	float *b = malloc((n ? n : 1) * sizeof *b);
	size_t differ = 0;
	double err = 0;
	int ok = 0;
	if (!bits || !b || gpu.i->download(gpu.ctx, bits, d, n * 2) < 0) {
		fprintf(stderr, "  download: %s\n", bt_errmsg());
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		b[i] = from_half(dt, bits[i]);
		differ += bits[i] != to_half(dt, a[i]);
	}
	if (tol == 0) {
		ok = differ == 0;
		fprintf(stderr, "  %-52s %zu of %zu differ (exact)%s\n", what, differ, n, ok ? "" : "  <-- FAIL");
	} else {
		err = norm_err(a, b, n);
		ok = err <= tol;
		fprintf(stderr, "  %-52s err %.2e (tol %.0e)%s\n", what, err, tol, ok ? "" : "  <-- FAIL");
	}
out:
	free(bits);
	free(b);
	return ok;
}

static int near_hpair(const char *what, const struct hpair *p, double tol)
{
	return near_half(what, p->h, p->d, p->n, p->dt, tol);
}

TEST(conv_half)
{
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti];
		if (!other_has(dt))
			continue;
		for (size_t t = 0; t < sizeof conv_cases / sizeof *conv_cases; t++) {
			const struct conv_case *k = &conv_cases[t];
			struct bt_conv_desc d = {
				.n = k->n, .h = k->h, .w = k->w, .c = k->c, .cout = k->cout, .kh = k->kh,
				.kw = k->kw, .sh = k->sh, .sw = k->sw, .ph = k->ph, .pw = k->pw, .dh = k->dh,
				.dw = k->dw, .groups = k->groups, .bias = k->bias,
				.post = (int)((t + 1) % 4),
			}, dh;
			struct hpair x, w, y, dy, dx;
			struct pair b, dw, db;
			char what[128];
			int ok = 1;
			uint64_t sd = 5000 + 100 * ti + 10 * t;
			d.oh = out_size(d.h, d.kh, d.sh, d.ph, d.dh, 0);
			d.ow = out_size(d.w, d.kw, d.sw, d.pw, d.dw, 0);
			dh = d;
			dh.dtype = dt;
			size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.cout;
			size_t nw = (size_t)d.cout * d.kh * d.kw * (d.c / d.groups);
			CHECK(hpair_new(&x, nx, sd + 1, -1, 1, dt) && hpair_new(&w, nw, sd + 2, -0.5f, 0.5f, dt) &&
			      pair_new(&b, d.cout, sd + 3, -1, 1) && hpair_new(&y, ny, sd + 4, -9, 9, dt) &&
			      hpair_new(&dy, ny, sd + 5, -1, 1, dt) && hpair_new(&dx, nx, sd + 6, -9, 9, dt) &&
			      pair_new(&dw, nw, sd + 7, -1, 1) && pair_new(&db, d.cout, sd + 8, -1, 1));
			BOTH(k->name, cpu.i->conv_fwd(cpu.ctx, &d, x.h, w.h, d.bias ? b.h : NULL, y.h),
			     gpu.i->conv_fwd(gpu.ctx, &dh, x.d, w.d, d.bias ? b.d : NULL, y.d));
			BOTH(k->name, cpu.i->conv_bwd_data(cpu.ctx, &d, dy.h, w.h, dx.h),
			     gpu.i->conv_bwd_data(gpu.ctx, &dh, dy.d, w.d, dx.d));
			BOTH(k->name, cpu.i->conv_bwd_weights(cpu.ctx, &d, x.h, dy.h, dw.h, d.bias ? db.h : NULL),
			     gpu.i->conv_bwd_weights(gpu.ctx, &dh, x.d, dy.d, dw.d, d.bias ? db.d : NULL));
			snprintf(what, sizeof what, "%s conv %s: y", bt_dtype_name(dt), k->name);
			ok &= near_hpair(what, &y, tol_of(dt));
			snprintf(what, sizeof what, "%s conv %s: dx", bt_dtype_name(dt), k->name);
			ok &= near_hpair(what, &dx, tol_of(dt));
			snprintf(what, sizeof what, "%s conv %s: dw (float32, added)", bt_dtype_name(dt), k->name);
			ok &= near_pair(what, &dw, tol_of(dt));
			if (d.bias) {
				snprintf(what, sizeof what, "%s conv %s: db (float32, added)", bt_dtype_name(dt), k->name);
				ok &= near_pair(what, &db, tol_of(dt));
			}
			hpair_free(&x), hpair_free(&w), pair_free(&b), hpair_free(&y);
			hpair_free(&dy), hpair_free(&dx), pair_free(&dw), pair_free(&db);
			CHECK(ok);
		}
	}
}

TEST(batchnorm_half)
{
	static const struct { int n, h, w, c; float eps, momentum; } cases[] = {
		{ 4, 5, 5, 8, 1e-5f, 0.1f },    { 2, 7, 7, 64, 1e-5f, 0.1f },
		{ 8, 1, 1, 32, 1e-3f, 0.9f },   { 3, 3, 5, 3, 1e-5f, 0.1f },
		{ 16, 14, 14, 128, 1e-5f, 0.1f }, { 1, 1, 1, 16, 1e-5f, 0.1f },
	};
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti];
		if (!other_has(dt))
			continue;
		for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
			struct bt_bn_desc d = { cases[t].n, cases[t].h, cases[t].w, cases[t].c, cases[t].eps,
						cases[t].momentum, BT_DTYPE_F32 }, dh;
			size_t nx = (size_t)d.n * d.h * d.w * d.c;
			struct hpair x, y, dy, dx, yi;
			struct pair g, b, rm, rv, sm, si, dg, db;
			char what[128], shape[64];
			int ok = 1;
			uint64_t sd = 6000 + 100 * ti + 20 * t;
			dh = d;
			dh.dtype = dt;
			snprintf(shape, sizeof shape, "%s bn %dx%dx%dx%d", bt_dtype_name(dt), d.n, d.h, d.w, d.c);
			CHECK(hpair_new(&x, nx, sd + 1, -2, 3, dt) && hpair_new(&y, nx, sd + 2, -9, 9, dt) &&
			      pair_new(&g, d.c, sd + 3, 0.5f, 1.5f) && pair_new(&b, d.c, sd + 4, -1, 1) &&
			      pair_new(&rm, d.c, sd + 5, -1, 1) && pair_new(&rv, d.c, sd + 6, 0.5f, 2) &&
			      pair_new(&sm, d.c, sd + 7, -9, 9) && pair_new(&si, d.c, sd + 8, -9, 9) &&
			      hpair_new(&dy, nx, sd + 9, -1, 1, dt) && hpair_new(&dx, nx, sd + 10, -9, 9, dt) &&
			      pair_new(&dg, d.c, sd + 11, -1, 1) && pair_new(&db, d.c, sd + 12, -1, 1) &&
			      hpair_new(&yi, nx, sd + 13, -9, 9, dt));
			BOTH(shape, cpu.i->bn_fwd_infer(cpu.ctx, &d, x.h, g.h, b.h, rm.h, rv.h, yi.h),
			     gpu.i->bn_fwd_infer(gpu.ctx, &dh, x.d, g.d, b.d, rm.d, rv.d, yi.d));
			BOTH(shape, cpu.i->bn_fwd_train(cpu.ctx, &d, x.h, g.h, b.h, rm.h, rv.h, sm.h, si.h, y.h),
			     gpu.i->bn_fwd_train(gpu.ctx, &dh, x.d, g.d, b.d, rm.d, rv.d, sm.d, si.d, y.d));
			BOTH(shape, cpu.i->bn_bwd(cpu.ctx, &d, x.h, dy.h, g.h, sm.h, si.h, dx.h, dg.h, db.h),
			     gpu.i->bn_bwd(gpu.ctx, &dh, x.d, dy.d, g.d, sm.d, si.d, dx.d, dg.d, db.d));
			snprintf(what, sizeof what, "%s: inference y", shape);
			ok &= near_hpair(what, &yi, tol_of(dt));
			snprintf(what, sizeof what, "%s: training y", shape);
			ok &= near_hpair(what, &y, tol_of(dt));
			snprintf(what, sizeof what, "%s: save_mean, save_invstd", shape);
			ok &= near_pair(what, &sm, tol_of(dt)) & near_pair(what, &si, tol_of(dt));
			snprintf(what, sizeof what, "%s: running mean and var", shape);
			ok &= near_pair(what, &rm, tol_of(dt)) & near_pair(what, &rv, tol_of(dt));
			snprintf(what, sizeof what, "%s: dx", shape);
			ok &= near_hpair(what, &dx, tol_of(dt));
			snprintf(what, sizeof what, "%s: dgamma, dbeta (float32, added)", shape);
			ok &= near_pair(what, &dg, tol_of(dt)) & near_pair(what, &db, tol_of(dt));
			hpair_free(&x), hpair_free(&y), pair_free(&g), pair_free(&b), pair_free(&rm);
			pair_free(&rv), pair_free(&sm), pair_free(&si), hpair_free(&dy), hpair_free(&dx);
			pair_free(&dg), pair_free(&db), hpair_free(&yi);
			CHECK(ok);
		}
	}
}

TEST(pooling_half)
{
	static const struct { int n, h, w, c, k, s, p, max, ceil, count_pad; } cases[] = {
		{ 2, 9, 9, 5, 3, 2, 1, 1, 0, 0 }, { 2, 10, 10, 4, 3, 2, 0, 1, 1, 0 },
		{ 2, 9, 9, 6, 3, 1, 1, 0, 0, 0 }, { 2, 7, 7, 3, 3, 2, 1, 0, 1, 1 },
		{ 3, 16, 16, 32, 3, 2, 1, 1, 1, 0 },
	};
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti];
		if (!other_has(dt))
			continue;
		for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
			struct bt_pool_desc d = { .n = cases[t].n, .h = cases[t].h, .w = cases[t].w,
						  .c = cases[t].c, .kh = cases[t].k, .kw = cases[t].k,
						  .sh = cases[t].s, .sw = cases[t].s, .ph = cases[t].p,
						  .pw = cases[t].p, .max = cases[t].max,
						  .count_pad = cases[t].count_pad }, dh;
			struct hpair x, y, dy, dx;
			void *wc = NULL, *wg = NULL;
			char what[128];
			int ok = 1;
			d.oh = out_size(d.h, d.kh, d.sh, d.ph, 1, cases[t].ceil);
			d.ow = out_size(d.w, d.kw, d.sw, d.pw, 1, cases[t].ceil);
			dh = d;
			dh.dtype = dt;
			size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.c;
			CHECK(hpair_new(&x, nx, 7000 + t, -1, 1, dt) && hpair_new(&y, ny, 7100 + t, -9, 9, dt) &&
			      hpair_new(&dy, ny, 7200 + t, -1, 1, dt) && hpair_new(&dx, nx, 7300 + t, -9, 9, dt));
			if (d.max) {
				CHECK_EQ(cpu.i->alloc(cpu.ctx, cpu.i->pool_ws_bytes(cpu.ctx, &d), &wc), BT_OK);
				CHECK_EQ(gpu.i->alloc(gpu.ctx, gpu.i->pool_ws_bytes(gpu.ctx, &dh), &wg), BT_OK);
			}
			snprintf(what, sizeof what, "%s %s %dx%d k%d s%d p%d%s", bt_dtype_name(dt), d.max ? "max" : "avg",
				 d.oh, d.ow, d.kh, d.sh, d.ph, cases[t].ceil ? " ceil" : "");
			BOTH(what, cpu.i->pool_fwd(cpu.ctx, &d, x.h, y.h, wc), gpu.i->pool_fwd(gpu.ctx, &dh, x.d, y.d, wg));
			BOTH(what, cpu.i->pool_bwd(cpu.ctx, &d, dy.h, wc, dx.h), gpu.i->pool_bwd(gpu.ctx, &dh, dy.d, wg, dx.d));
			strcat(what, ": y");
			/* the largest of half values is one of them: max pooling is exact */
			ok &= near_hpair(what, &y, d.max ? 0 : tol_of(dt));
			what[strlen(what) - 1] = 0;
			strcat(what, "dx");
			ok &= near_hpair(what, &dx, tol_of(dt));
			if (wc)
				cpu.i->release(cpu.ctx, wc);
			if (wg)
				gpu.i->release(gpu.ctx, wg);
			hpair_free(&x), hpair_free(&y), hpair_free(&dy), hpair_free(&dx);
			CHECK(ok);
		}
	}
}

TEST(fc_half)
{
	static const struct { int n, cin, cout, bias, with_dx; } cases[] = {
		{ 4, 64, 10, 1, 1 }, { 32, 512, 1000, 0, 1 }, { 1, 7, 3, 1, 1 }, { 5, 2048, 100, 1, 0 },
		{ 256, 2048, 1000, 1, 1 },
	};
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti];
		if (!other_has(dt))
			continue;
		for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
			struct bt_fc_desc d = { cases[t].n, cases[t].cin, cases[t].cout, cases[t].bias, BT_DTYPE_F32 }, dh;
			struct hpair x, w, y, dy, dx;
			struct pair b, dw, db;
			char what[128], shape[80];
			int ok = 1;
			uint64_t sd = 8000 + 100 * ti + 10 * t;
			dh = d;
			dh.dtype = dt;
			snprintf(shape, sizeof shape, "%s fc %d x %d -> %d%s%s", bt_dtype_name(dt), d.n, d.cin, d.cout,
				 d.bias ? " bias" : "", cases[t].with_dx ? "" : " (no dx)");
			CHECK(hpair_new(&x, (size_t)d.n * d.cin, sd + 1, -1, 1, dt) &&
			      hpair_new(&w, (size_t)d.cout * d.cin, sd + 2, -0.1f, 0.1f, dt) &&
			      pair_new(&b, d.cout, sd + 3, -1, 1) && hpair_new(&y, (size_t)d.n * d.cout, sd + 4, -9, 9, dt) &&
			      hpair_new(&dy, (size_t)d.n * d.cout, sd + 5, -1, 1, dt) &&
			      hpair_new(&dx, (size_t)d.n * d.cin, sd + 6, -9, 9, dt) &&
			      pair_new(&dw, (size_t)d.cout * d.cin, sd + 7, -1, 1) && pair_new(&db, d.cout, sd + 8, -1, 1));
			BOTH(shape, cpu.i->fc_fwd(cpu.ctx, &d, x.h, w.h, d.bias ? b.h : NULL, y.h),
			     gpu.i->fc_fwd(gpu.ctx, &dh, x.d, w.d, d.bias ? b.d : NULL, y.d));
			BOTH(shape,
			     cpu.i->fc_bwd(cpu.ctx, &d, x.h, dy.h, w.h, cases[t].with_dx ? dx.h : NULL, dw.h, d.bias ? db.h : NULL),
			     gpu.i->fc_bwd(gpu.ctx, &dh, x.d, dy.d, w.d, cases[t].with_dx ? dx.d : NULL, dw.d, d.bias ? db.d : NULL));
			snprintf(what, sizeof what, "%s: y", shape);
			ok &= near_hpair(what, &y, tol_of(dt));
			snprintf(what, sizeof what, "%s: dx%s", shape, cases[t].with_dx ? "" : " (untouched)");
			ok &= near_hpair(what, &dx, cases[t].with_dx ? tol_of(dt) : 0);
			snprintf(what, sizeof what, "%s: dw (float32, added)", shape);
			ok &= near_pair(what, &dw, tol_of(dt));
			snprintf(what, sizeof what, "%s: db%s", shape, d.bias ? " (float32, added)" : " (untouched)");
			ok &= near_pair(what, &db, tol_of(dt));
			hpair_free(&x), hpair_free(&w), pair_free(&b), hpair_free(&y);
			hpair_free(&dy), hpair_free(&dx), pair_free(&dw), pair_free(&db);
			CHECK(ok);
		}
	}
}

/* One float32 operation on half inputs, rounded once: the CPU's float32 result rounded to
 * the half type, exactly. The CPU's outputs are rounded after every op, as the device's
 * half tensors are, so that chained ops stay on the same values. */
TEST(elementwise_half_exact)
{
	static const size_t sizes[] = { 1, 1000, 100003 };
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti], F = BT_DTYPE_F32;
		if (!other_has(dt))
			continue;
		const char *tn = bt_dtype_name(dt);
		for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
			size_t n = sizes[t];
			struct hpair a, b, y, z;
			char what[128];
			int ok = 1;
			CHECK(hpair_new(&a, n, 9000 + t, -1, 1, dt) && hpair_new(&b, n, 9010 + t, -1, 1, dt) &&
			      hpair_new(&y, n, 9020 + t, -1, 1, dt) && hpair_new(&z, n, 9030 + t, -1, 1, dt));
#define EW(label, cpu_call, gpu_call, out)                                                    \
	do {                                                                                  \
		BOTH(label, cpu_call, gpu_call);                                              \
		round_host((out).h, n, dt);                                                   \
		snprintf(what, sizeof what, "%s %s n=%zu", tn, label, n);                     \
		ok &= near_hpair(what, &(out), 0);                                            \
	} while (0)
			EW("relu_fwd", cpu.i->relu_fwd(cpu.ctx, F, a.h, y.h, n), gpu.i->relu_fwd(gpu.ctx, dt, a.d, y.d, n), y);
			EW("relu_fwd in place", cpu.i->relu_fwd(cpu.ctx, F, b.h, b.h, n),
			   gpu.i->relu_fwd(gpu.ctx, dt, b.d, b.d, n), b);
			EW("relu_bwd", cpu.i->relu_bwd(cpu.ctx, F, b.h, a.h, z.h, n),
			   gpu.i->relu_bwd(gpu.ctx, dt, b.d, a.d, z.d, n), z);
			EW("add", cpu.i->add(cpu.ctx, F, a.h, z.h, y.h, n), gpu.i->add(gpu.ctx, dt, a.d, z.d, y.d, n), y);
			EW("add y == a", cpu.i->add(cpu.ctx, F, y.h, a.h, y.h, n), gpu.i->add(gpu.ctx, dt, y.d, a.d, y.d, n), y);
			EW("add y == b", cpu.i->add(cpu.ctx, F, z.h, y.h, y.h, n), gpu.i->add(gpu.ctx, dt, z.d, y.d, y.d, n), y);
			EW("accumulate", cpu.i->accumulate(cpu.ctx, F, z.h, a.h, n),
			   gpu.i->accumulate(gpu.ctx, dt, z.d, a.d, n), z);
			EW("mul", cpu.i->mul(cpu.ctx, F, a.h, z.h, b.h, n), gpu.i->mul(gpu.ctx, dt, a.d, z.d, b.d, n), b);
			EW("copy", cpu.i->copy(cpu.ctx, F, y.h, b.h, n), gpu.i->copy(gpu.ctx, dt, y.d, b.d, n), y);
			EW("zero", cpu.i->zero(cpu.ctx, z.h, n * sizeof(float)), gpu.i->zero(gpu.ctx, z.d, n * 2), z);
			hpair_free(&a), hpair_free(&b), hpair_free(&y), hpair_free(&z);
			CHECK(ok);
		}
		{
			/* global average pooling (the CPU's order of sums), concatenation, dropout */
			int n = 3, c = 64;
			size_t hw = 49, nx = (size_t)n * hw * c, pixels = 50;
			struct hpair x, y, dy, dx, xj, yc, dxj, m, yd;
			uint64_t seed = 42;
			char what[128];
			int ok = 1;
			CHECK(hpair_new(&x, nx, 9100, -1, 1, dt) && hpair_new(&y, (size_t)n * c, 9101, -9, 9, dt) &&
			      hpair_new(&dy, (size_t)n * c, 9102, -1, 1, dt) && hpair_new(&dx, nx, 9103, -9, 9, dt) &&
			      hpair_new(&xj, pixels * 3, 9104, -1, 1, dt) && hpair_new(&yc, pixels * 10, 9105, -1, 1, dt) &&
			      hpair_new(&dxj, pixels * 3, 9106, -9, 9, dt) && hpair_new(&m, nx, 9107, -9, 9, dt) &&
			      hpair_new(&yd, nx, 9108, -9, 9, dt));
			size_t nn = (size_t)n * c;
			{
				size_t n_ = nn;
#undef EW
#define EW(label, cpu_call, gpu_call, out, count)                                             \
	do {                                                                                  \
		BOTH(label, cpu_call, gpu_call);                                              \
		round_host((out).h, count, dt);                                               \
		snprintf(what, sizeof what, "%s %s", tn, label);                              \
		ok &= near_hpair(what, &(out), 0);                                            \
	} while (0)
				EW("gap_fwd 3 x 49 x 64", cpu.i->gap_fwd(cpu.ctx, F, x.h, y.h, n, hw, c),
				   gpu.i->gap_fwd(gpu.ctx, dt, x.d, y.d, n, hw, c), y, n_);
				EW("gap_bwd", cpu.i->gap_bwd(cpu.ctx, F, dy.h, dx.h, n, hw, c),
				   gpu.i->gap_bwd(gpu.ctx, dt, dy.d, dx.d, n, hw, c), dx, nx);
				EW("concat_fwd 50 x 3 into 50 x 10 at 4",
				   cpu.i->concat_fwd(cpu.ctx, F, xj.h, yc.h, pixels, 3, 10, 4),
				   gpu.i->concat_fwd(gpu.ctx, dt, xj.d, yc.d, pixels, 3, 10, 4), yc, pixels * 10);
				EW("concat_bwd", cpu.i->concat_bwd(cpu.ctx, F, yc.h, dxj.h, pixels, 3, 10, 4),
				   gpu.i->concat_bwd(gpu.ctx, dt, yc.d, dxj.d, pixels, 3, 10, 4), dxj, pixels * 3);
				EW("dropout p=0.3: y", cpu.i->dropout_fwd(cpu.ctx, F, x.h, yd.h, m.h, nx, 0.3f, seed),
				   gpu.i->dropout_fwd(gpu.ctx, dt, x.d, yd.d, m.d, nx, 0.3f, seed), yd, nx);
				round_host(m.h, nx, dt);
				snprintf(what, sizeof what, "%s dropout p=0.3: mask", tn);
				ok &= near_hpair(what, &m, 0);
#undef EW
			}
			hpair_free(&x), hpair_free(&y), hpair_free(&dy), hpair_free(&dx), hpair_free(&xj);
			hpair_free(&yc), hpair_free(&dxj), hpair_free(&m), hpair_free(&yd);
			CHECK(ok);
		}
	}
}

static int is_nan_bits(int t, uint32_t b)
{
	if (t == BT_DTYPE_F32)
		return (b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu);
	if (t == BT_DTYPE_F16)
		return (b & 0x7c00u) == 0x7c00u && (b & 0x3ffu);
	return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu);
}

/* n elements of type t at a and b hold the same bits, or both a NaN; prints the first few
 * differences. */
static int same_bits(const char *what, int t, const void *a, const void *b, size_t n)
{
	size_t differ = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t x, y;
		if (t == BT_DTYPE_F32) {
			x = ((const uint32_t *)a)[i];
			y = ((const uint32_t *)b)[i];
		} else {
			x = ((const uint16_t *)a)[i];
			y = ((const uint16_t *)b)[i];
		}
		if (x == y || (is_nan_bits(t, x) && is_nan_bits(t, y)))
			continue;
		if (differ++ < 4)
			fprintf(stderr, "    element %zu: cpu 0x%x cuda 0x%x\n", i, x, y);
	}
	fprintf(stderr, "  %-52s %zu of %zu differ (exact; NaN as NaN)%s\n", what, differ, n,
		differ ? "  <-- FAIL" : "");
	return differ == 0;
}

/* The device's cast against the CPU's reference conversions, bit for bit (a NaN need only
 * stay a NaN: the hardware does not keep payloads): edge values (ties to even, the largest
 * finite values and the ties past them, subnormals of both sides, infinities, NaNs) and
 * random patterns over every exponent, float32 to each half type at scale 1 and scaled,
 * and back, and bfloat16 to float16. */
TEST(cast_exact)
{
	static const uint32_t edges[] = {
		0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x477fe000, 0x477fefff, 0x477ff000,
		0x477ff001, 0x47800000, 0x7149f2ca, 0x7f7fffff, 0xff7fffff, 0x7f7f7fff, 0x7f7f8000,
		0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa12345, 0x33800000,
		0x33000000, 0x33000001, 0x33c00000, 0x38800000, 0x387fffff, 0x00000001, 0x007fffff,
		0x807fffff, 0x00800000, 0x00008000, 0x00018000, 0x3f808000, 0x3f818000, 0x3f801000,
		0x3f803000, 0xc77ff000, 0xb3000000,
	};
	enum { NE = sizeof edges / sizeof *edges, N = NE + 65536 };
	uint32_t *x = malloc(N * sizeof *x), *back_c = malloc(N * sizeof *x), *back_g = malloc(N * sizeof *x);
	uint16_t *hc = malloc(N * 2), *hg = malloc(N * 2), *h2c = malloc(N * 2), *h2g = malloc(N * 2);
	void *dx = NULL, *dh = NULL, *dh2 = NULL, *dback = NULL;
	struct bt_rng r;
	int ok = 1;
	CHECK(x && back_c && back_g && hc && hg && h2c && h2g);
	memcpy(x, edges, sizeof edges);
	bt_rng_seed(&r, 99);
	for (int i = NE; i < N; i++)
		x[i] = (uint32_t)bt_rng_u64(&r);
	CHECK_EQ(gpu.i->alloc(gpu.ctx, N * 4, &dx), BT_OK);
	CHECK_EQ(gpu.i->alloc(gpu.ctx, N * 2, &dh), BT_OK);
	CHECK_EQ(gpu.i->alloc(gpu.ctx, N * 2, &dh2), BT_OK);
	CHECK_EQ(gpu.i->alloc(gpu.ctx, N * 4, &dback), BT_OK);
	CHECK_EQ(gpu.i->upload(gpu.ctx, dx, x, N * 4), BT_OK);
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti];
		if (!other_has(dt))
			continue;
		static const float scales[2] = { 1.0f, 65536.0f };
		for (int si = 0; si < 2; si++) {
			char what[128];
			snprintf(what, sizeof what, "cast float32 -> %s, scale %g", bt_dtype_name(dt), scales[si]);
			BOTH(what, cpu.i->cast(cpu.ctx, x, BT_DTYPE_F32, hc, dt, N, scales[si]),
			     gpu.i->cast(gpu.ctx, dx, BT_DTYPE_F32, dh, dt, N, scales[si]));
			CHECK_EQ(gpu.i->download(gpu.ctx, hg, dh, N * 2), BT_OK);
			ok &= same_bits(what, dt, hc, hg, N);
		}
		/* back to float32, exact, from the same half bits */
		CHECK_EQ(gpu.i->upload(gpu.ctx, dh, hc, N * 2), BT_OK);
		BOTH("cast back", cpu.i->cast(cpu.ctx, hc, dt, back_c, BT_DTYPE_F32, N, 1.0f),
		     gpu.i->cast(gpu.ctx, dh, dt, dback, BT_DTYPE_F32, N, 1.0f));
		CHECK_EQ(gpu.i->download(gpu.ctx, back_g, dback, N * 4), BT_OK);
		ok &= same_bits(dt == BT_DTYPE_F16 ? "cast float16 -> float32" : "cast bfloat16 -> float32",
				BT_DTYPE_F32, back_c, back_g, N);
		if (dt == BT_DTYPE_BF16) {
			BOTH("cast bf16 -> f16", cpu.i->cast(cpu.ctx, hc, dt, h2c, BT_DTYPE_F16, N, 1.0f),
			     gpu.i->cast(gpu.ctx, dh, dt, dh2, BT_DTYPE_F16, N, 1.0f));
			CHECK_EQ(gpu.i->download(gpu.ctx, h2g, dh2, N * 2), BT_OK);
			ok &= same_bits("cast bfloat16 -> float16", BT_DTYPE_F16, h2c, h2g, N);
		}
	}
	gpu.i->release(gpu.ctx, dx);
	gpu.i->release(gpu.ctx, dh);
	gpu.i->release(gpu.ctx, dh2);
	gpu.i->release(gpu.ctx, dback);
	free(x), free(back_c), free(back_g), free(hc), free(hg), free(h2c), free(h2g);
	CHECK(ok);
}

TEST(nonfinite_check)
{
	size_t n = ((size_t)1 << 22) + 3;
	struct pair x;
	int found = -1;
	const float inf = INFINITY, nan = NAN, big = 3e38f, zero = 0;
	CHECK(pair_new(&x, n, 9500, -1e4f, 1e4f));
	CHECK_EQ(gpu.i->nonfinite(gpu.ctx, x.d, n, &found), BT_OK);
	CHECK_EQ(found, 0);
	CHECK_EQ(gpu.i->nonfinite(gpu.ctx, x.d, 0, &found), BT_OK);
	CHECK_EQ(found, 0);
	CHECK_EQ(gpu.i->upload(gpu.ctx, x.d + n - 1, &inf, sizeof inf), BT_OK);
	CHECK_EQ(gpu.i->nonfinite(gpu.ctx, x.d, n, &found), BT_OK);
	CHECK_EQ(found, 1);
	CHECK_EQ(gpu.i->nonfinite(gpu.ctx, x.d, n - 1, &found), BT_OK); /* the infinity just outside */
	CHECK_EQ(found, 0);
	CHECK_EQ(gpu.i->upload(gpu.ctx, x.d + n - 1, &big, sizeof big), BT_OK);
	CHECK_EQ(gpu.i->upload(gpu.ctx, x.d, &nan, sizeof nan), BT_OK);
	CHECK_EQ(gpu.i->nonfinite(gpu.ctx, x.d, n, &found), BT_OK);
	CHECK_EQ(found, 1);
	CHECK_EQ(gpu.i->upload(gpu.ctx, x.d, &zero, sizeof zero), BT_OK);
	CHECK_EQ(gpu.i->nonfinite(gpu.ctx, x.d, n, &found), BT_OK);
	CHECK_EQ(found, 0);
	fprintf(stderr, "  nonfinite over %zu floats: infinity and NaN found, their absence too\n", n);
	pair_free(&x);
}

/* Unscaling in the update: gradients times 2^15 with gscale 2^-15 on the device are the
 * CPU's plain update of the gradients themselves. */
TEST(sgd_unscales)
{
	static const struct bt_sgd_range rg[] = { { 0, 6000, 1 }, { 6000, 4000, 0 } };
	size_t n = 10000;
	struct pair w, dw, v;
	float *scaled = malloc(n * sizeof *scaled);
	int ok = 1;
	CHECK(scaled);
	CHECK(pair_new(&w, n, 9600, -1, 1) && pair_new(&dw, n, 9601, -1e-3f, 1e-3f) && pair_new(&v, n, 9602, -1, 1));
	for (size_t i = 0; i < n; i++)
		scaled[i] = dw.h[i] * 32768.0f;
	CHECK_EQ(gpu.i->upload(gpu.ctx, dw.d, scaled, n * sizeof *scaled), BT_OK);
	BOTH("sgd", cpu.i->sgd(cpu.ctx, w.h, dw.h, v.h, rg, 2, 0.1f, 0.9f, 1e-4f, 1.0f),
	     gpu.i->sgd(gpu.ctx, w.d, dw.d, v.d, rg, 2, 0.1f, 0.9f, 1e-4f, 1.0f / 32768.0f));
	ok &= near_pair("sgd, gradients scaled by 2^15 and unscaled: w", &w, TOL_ELEM);
	ok &= near_pair("sgd, unscaled: momentum", &v, TOL_ELEM);
	pair_free(&w), pair_free(&dw), pair_free(&v);
	free(scaled);
	CHECK(ok);
}

TEST(device_memory)
{
	size_t now0, peak0, now1, peak1, now2, peak2, mb = (size_t)64 << 20;
	void *p = NULL;
	CHECK(gpu.i->memory != NULL && gpu.i->sync != NULL);
	CHECK(cpu.i->memory == NULL && cpu.i->sync == NULL);
	CHECK_EQ(gpu.i->memory(gpu.ctx, &now0, &peak0), BT_OK);
	CHECK_EQ(gpu.i->alloc(gpu.ctx, mb, &p), BT_OK);
	CHECK_EQ(gpu.i->memory(gpu.ctx, &now1, &peak1), BT_OK);
	gpu.i->release(gpu.ctx, p);
	CHECK_EQ(gpu.i->memory(gpu.ctx, &now2, &peak2), BT_OK);
	fprintf(stderr, "  device memory: %zu, then %zu (peak %zu) with 64 MiB more, then %zu\n", now0, now1, peak1, now2);
	CHECK(now1 == now0 + mb && peak1 >= now1 && now2 == now0 && peak2 == peak1);
	CHECK_EQ(gpu.i->sync(gpu.ctx), BT_OK);
}

/* The every-op network in a half type against the CPU in float32: logits, loss, every
 * gradient (divided by the loss scale), the parameters after SGD, inference folded and
 * not. */
TEST(run_every_op_half)
{
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti];
		if (!other_has(dt))
			continue;
		struct bt_graph g;
		struct bt_run *rc = NULL, *rg = NULL;
		enum { N = 4, K = 5 };
		float x[N * 9 * 9 * 3], *gg;
		int32_t labels[N] = { 0, 3, 4, 1 };
		double lc, lg, tol = tol_run_of(dt), S, err;
		char what[128];
		const char *tn = bt_dtype_name(dt);
		int ok = 1;
		CHECK_EQ(every_op_net(&g), BT_OK);
		CHECK_EQ(bt_run_new(&rc, &g, &cpu, N), BT_OK);
		CHECK_EQ(bt_run_new_dtype(&rg, &g, &gpu, N, dt), BT_OK);
		CHECK_EQ(bt_run_dtype(rg), dt);
		CHECK_EQ(bt_run_init_params(rc, 3, 0), BT_OK);
		CHECK_EQ(bt_run_init_params(rg, 3, 0), BT_OK);
		fill(x, sizeof x / sizeof *x, 1600, -1, 1);
		BOTH("forward", bt_run_forward(rc, x, N, 1, 11), bt_run_forward(rg, x, N, 1, 11));
		snprintf(what, sizeof what, "%s every-op net: training logits", tn);
		ok &= run_near(what, rc, rg, get_logits, N * K, tol);
		BOTH("loss", bt_run_loss(rc, labels, NULL, 0.1f, 1, &lc), bt_run_loss(rg, labels, NULL, 0.1f, 1, &lg));
		fprintf(stderr, "  %-52s err %.2e (tol %.0e)\n", "  loss (float32 from half logits)", fabs(lc - lg) / fmax(1, lc), tol);
		ok &= fabs(lc - lg) / fmax(1, lc) <= tol;
		BOTH("backward", bt_run_backward(rc), bt_run_backward(rg));
		S = bt_run_loss_scale(rg);
		CHECK((gg = fetch(bt_run_grads(rg), g.nfloats)) != NULL);
		for (size_t i = 0; i < g.nfloats; i++)
			gg[i] = (float)(gg[i] / S);
		err = norm_err(bt_run_grads(rc), gg, g.nfloats);
		fprintf(stderr, "  %s every-op net: every gradient / loss scale %-8g err %.2e (tol %.0e)%s\n", tn, S, err,
			tol, err <= tol ? "" : "  <-- FAIL");
		ok &= err <= tol;
		free(gg);
		CHECK_EQ(bt_run_sgd(rc, 0.1f, 0.9f, 1e-4f, 1), BT_OK);
		CHECK_EQ(bt_run_sgd(rg, 0.1f, 0.9f, 1e-4f, 1), BT_OK);
		CHECK_EQ(bt_run_skipped_steps(rg), 0);
		snprintf(what, sizeof what, "%s every-op net: parameters after SGD", tn);
		ok &= run_near(what, rc, rg, get_params, g.nfloats, tol);
		BOTH("inference", bt_run_forward(rc, x, N, 0, 0), bt_run_forward(rg, x, N, 0, 0));
		snprintf(what, sizeof what, "%s every-op net: inference logits, folded", tn);
		ok &= run_near(what, rc, rg, get_logits, N * K, tol);
		bt_run_fuse(rc, 0);
		bt_run_fuse(rg, 0);
		BOTH("inference unfused", bt_run_forward(rc, x, N, 0, 0), bt_run_forward(rg, x, N, 0, 0));
		snprintf(what, sizeof what, "%s every-op net: inference logits, unfused", tn);
		ok &= run_near(what, rc, rg, get_logits, N * K, tol);
		{
			float host[N * K];
			float *dev = fetch(bt_run_logits(rg), N * K);
			CHECK(dev);
			CHECK_EQ(bt_run_read_logits(rg, host, N), BT_OK);
			CHECK(memcmp(host, dev, sizeof host) == 0);
			free(dev);
		}
		bt_run_free(rc);
		bt_run_free(rg);
		bt_graph_free(&g);
		CHECK(ok);
	}
}

/* float16's dynamic loss scale: a scale of 2^24 makes the loss gradient itself overflow
 * float16, so the step must be skipped (parameters and momentum unchanged bit for bit) and
 * the scale halved; later steps halve it again until one goes through. bfloat16 has no
 * scaling. */
TEST(loss_scale_overflow)
{
	struct bt_graph g;
	struct bt_run *rg = NULL;
	enum { N = 4 };
	float x[N * 9 * 9 * 3], *p0, *m0, *p1, *m1;
	int32_t labels[N] = { 0, 3, 4, 1 };
	double loss, expect = BT_LOSS_SCALE_MAX / 2;
	int taken = 0, steps = 0;
	CHECK_EQ(every_op_net(&g), BT_OK);
	p0 = malloc(g.nfloats * sizeof *p0), m0 = malloc(g.nfloats * sizeof *m0);
	p1 = malloc(g.nfloats * sizeof *p1), m1 = malloc(g.nfloats * sizeof *m1);
	CHECK(p0 && m0 && p1 && m1);
	fill(x, sizeof x / sizeof *x, 1700, -1, 1);
	CHECK_EQ(bt_run_new_dtype(&rg, &g, &gpu, N, BT_DTYPE_BF16), BT_OK);
	CHECK(!bt_run_scaler(rg)->dynamic && bt_run_loss_scale(rg) == 1.0);
	CHECK_EQ(bt_run_set_scaler(rg, BT_LOSS_SCALE_MAX, 0, 0), BT_ERR_INVALID);
	bt_run_free(rg);
	CHECK_EQ(bt_run_new_dtype(&rg, &g, &gpu, N, BT_DTYPE_F16), BT_OK);
	CHECK(bt_run_scaler(rg)->dynamic && bt_run_loss_scale(rg) == BT_LOSS_SCALE_INIT);
	CHECK_EQ(bt_run_init_params(rg, 5, 0), BT_OK);
	CHECK_EQ(bt_run_set_scaler(rg, BT_LOSS_SCALE_MAX, 0, 0), BT_OK);
	CHECK_EQ(bt_run_read_state(rg, p0, m0), BT_OK);
	CHECK_EQ(bt_run_forward(rg, x, N, 1, 1), BT_OK);
	CHECK_EQ(bt_run_loss(rg, labels, NULL, 0.1f, 1, &loss), BT_OK);
	CHECK_EQ(bt_run_backward(rg), BT_OK);
	CHECK_EQ(bt_run_sgd(rg, 0.1f, 0.9f, 1e-4f, 1), BT_OK);
	CHECK_EQ(bt_run_read_state(rg, p1, m1), BT_OK);
	fprintf(stderr, "  float16 at loss scale 2^24: %llu skipped, scale now %g, parameters %s\n",
		(unsigned long long)bt_run_skipped_steps(rg), bt_run_loss_scale(rg),
		memcmp(p0, p1, g.nfloats * sizeof *p0) ? "CHANGED" : "unchanged");
	CHECK_EQ(bt_run_skipped_steps(rg), 1);
	CHECK(bt_run_loss_scale(rg) == expect);
	CHECK(memcmp(p0, p1, g.nfloats * sizeof *p0) == 0);
	CHECK(memcmp(m0, m1, g.nfloats * sizeof *m0) == 0);
	while (!taken && steps++ < 16) {
		uint64_t before = bt_run_skipped_steps(rg);
		CHECK_EQ(bt_run_forward(rg, x, N, 1, 1), BT_OK);
		CHECK_EQ(bt_run_loss(rg, labels, NULL, 0.1f, 1, &loss), BT_OK);
		CHECK_EQ(bt_run_backward(rg), BT_OK);
		CHECK_EQ(bt_run_sgd(rg, 0.1f, 0.9f, 1e-4f, 1), BT_OK);
		taken = bt_run_skipped_steps(rg) == before;
		if (!taken) {
			expect /= 2;
			CHECK(bt_run_loss_scale(rg) == expect);
		}
	}
	CHECK_EQ(bt_run_read_state(rg, p1, m1), BT_OK);
	fprintf(stderr, "  then %d more steps: the first taken at scale %g, %llu skipped in all\n", steps,
		bt_run_loss_scale(rg), (unsigned long long)bt_run_skipped_steps(rg));
	CHECK(taken);
	CHECK(bt_run_loss_scale(rg) == expect); /* a good step leaves it (2000 are needed to grow) */
	CHECK(memcmp(p0, p1, g.nfloats * sizeof *p0) != 0);
	for (size_t i = 0; i < g.nfloats; i++)
		CHECK(isfinite(p1[i]) && isfinite(m1[i]));
	bt_run_free(rg);
	bt_graph_free(&g);
	free(p0), free(m0), free(p1), free(m1);
}

/* 100 steps of cifar_resnet20_v1 in each half type: the loss falls by half, and the mean of
 * the last 10 steps is within TOL_TRAIN of the CPU's float32 run. */
TEST(run_cifar_resnet20_half)
{
	double scale;
	uint64_t skipped;
	if (!cifar_cpu_done) {
		CHECK(cifar_losses(&cpu, BT_DTYPE_F32, cifar_cpu, &skipped, &scale));
		cifar_cpu_done = 1;
	}
	for (int ti = 0; ti < 2; ti++) {
		int dt = half_types[ti];
		if (!other_has(dt))
			continue;
		double lh[CSTEPS], tc = last10(cifar_cpu), th, rel, first, tol = dt == BT_DTYPE_F16 ? TOL_TRAIN_F16 : TOL_TRAIN_BF16;
		CHECK(cifar_losses(&gpu, dt, lh, &skipped, &scale));
		th = last10(lh);
		rel = fabs(tc - th) / tc;
		first = fabs(cifar_cpu[0] - lh[0]) / cifar_cpu[0];
		for (int s = 0; s < CSTEPS; s++)
			if (s == 0 || (s + 1) % 20 == 0)
				fprintf(stderr, "  cifar_resnet20_v1 step %3d: loss cpu float32 %.6f %s %s %.6f\n", s + 1,
					cifar_cpu[s], gpu.i->name, bt_dtype_name(dt), lh[s]);
		fprintf(stderr, "  cifar_resnet20_v1 %s: first step %.2e apart (tol %.0e); last 10 steps cpu %.6f "
			"%s %.6f, %.2f %% apart (tol %.0f %%); loss scale %g, %llu steps skipped\n",
			bt_dtype_name(dt), first, tol_run_of(dt), tc, gpu.i->name, th, 100 * rel, 100 * tol, scale,
			(unsigned long long)skipped);
		CHECK(first <= tol_run_of(dt));
		CHECK(th < 0.5 * lh[0]);
		CHECK(rel < tol);
		/* 16 halvings take 2^16 to 1: more would mean overflows at scale 1 */
		CHECK(skipped <= 16);
	}
}

/* --profile on a queueing backend: each node is bracketed by the backend's sync. */
TEST(profile_on_cuda)
{
	struct bt_graph g;
	struct bt_run *rg = NULL;
	enum { N = 4 };
	float x[N * 9 * 9 * 3];
	int32_t labels[N] = { 0, 3, 4, 1 };
	double sec[BT_OP_COUNT][2], loss, sum = 0;
	uint64_t calls[BT_OP_COUNT][2];
	CHECK_EQ(every_op_net(&g), BT_OK);
	CHECK_EQ(bt_run_new(&rg, &g, &gpu, N), BT_OK);
	CHECK_EQ(bt_run_init_params(rg, 3, 0), BT_OK);
	fill(x, sizeof x / sizeof *x, 1800, -1, 1);
	bt_run_profile(rg, 1);
	CHECK_EQ(bt_run_forward(rg, x, N, 1, 1), BT_OK);
	CHECK_EQ(bt_run_loss(rg, labels, NULL, 0.1f, 1, &loss), BT_OK);
	CHECK_EQ(bt_run_backward(rg), BT_OK);
	bt_run_profile_get(rg, sec, calls);
	for (int op = 0; op < BT_OP_COUNT; op++)
		sum += sec[op][0] + sec[op][1];
	fprintf(stderr, "  profile: conv2d %llu forward calls, %.3f ms; every node %.3f ms\n",
		(unsigned long long)calls[BT_OP_CONV2D][0], 1e3 * sec[BT_OP_CONV2D][0], 1e3 * sum);
	CHECK(calls[BT_OP_CONV2D][0] == 5 && calls[BT_OP_CONV2D][1] == 5);
	CHECK(sec[BT_OP_CONV2D][0] > 0 && sec[BT_OP_CONV2D][1] > 0);
	bt_run_profile(rg, 0);
	bt_run_free(rg);
	bt_graph_free(&g);
}

/* ---- the input from uint8 crops -------------------------------------------------------- */

/* n crops of S x S x C from training draws (colour, lighting, erasing) of noisy gradients, in host
 * memory from alloc_host (page-locked when pinned), with their colour parameters. */
struct u8case {
	int n, C, S, pinned;
	size_t per;
	uint8_t *x;
	struct bt_aug_colour *col;
	float mean[3], std[3];
};

static int u8case_make(struct u8case *u, int n, int C, int S, uint64_t seed, int pinned)
{
	const uint32_t W = 2 * (uint32_t)S + 7, H = 2 * (uint32_t)S - 3;
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params p;
	int ok = s != NULL;
	memset(u, 0, sizeof *u);
	u->n = n;
	u->C = C;
	u->S = S;
	u->pinned = pinned;
	u->per = (size_t)S * S * C;
	bt_aug_defaults(&p, 1);
	p.size = (uint32_t)S;
	p.defer_colour = 1;
	p.mean[2] = 90.5f;
	p.std[1] = 50.25f;
	p.erase = 0.75; /* most crops with an erased box, which the kernel must give +0 */
	memcpy(u->mean, p.mean, sizeof u->mean);
	memcpy(u->std, p.std, sizeof u->std);
	u->x = pinned ? gpu.i->host_alloc(gpu.ctx, u->per * n) : malloc(u->per * n);
	u->col = calloc((size_t)n, sizeof *u->col);
	ok = ok && u->x && u->col;
	for (int i = 0; ok && i < n; i++) {
		size_t m = (size_t)W * H * C;
		uint8_t *px = malloc(m);
		struct bt_record r = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {H, W, (uint32_t)C}, .size = m,
				      .data = px};
		struct bt_aug_draw d;
		struct bt_rng g;
		bt_rng_seed(&g, seed * 977 + (uint64_t)i);
		for (size_t k = 0; px && k < m; k++)
			px[k] = (uint8_t)(bt_rng_below(&g, 128) + (k / (size_t)C % W) * 100 / W);
		bt_aug_draw(&p, W, H, &g, &d);
		ok = px && bt_aug_apply_deferred(&p, &d, &r, u->x + u->per * i, &u->col[i], s) == BT_OK;
		free(px);
	}
	bt_aug_scratch_free(s);
	return ok;
}

static void u8case_free(struct u8case *u)
{
	if (u->pinned)
		gpu.i->host_free(gpu.ctx, u->x);
	else
		free(u->x);
	free(u->col);
}

static struct bt_u8_batch u8case_input(const struct u8case *u, int mixup, float lam)
{
	struct bt_u8_batch in = {.x = u->x, .colour = u->col, .n = u->n, .size = u->S, .channels = u->C,
				 .mixup = mixup, .lam = lam};
	memcpy(in.mean, u->mean, sizeof in.mean);
	memcpy(in.std, u->std, sizeof in.std);
	return in;
}

/* The CPU's and the device's input_u8 of in, in dtype dt, bit for bit; d (device, room for
 * the batch) takes the device's output. */
static int input_same(const char *what, const struct bt_u8_batch *in, int dt, void *d)
{
	size_t n = (size_t)in->n * in->size * in->size * in->channels, esz = bt_dtype_size(dt);
	void *hc = malloc(n * esz), *hg = malloc(n * esz);
	int ok = hc && hg && both_ok(what, cpu.i->input_u8(cpu.ctx, dt, in, hc), gpu.i->input_u8(gpu.ctx, dt, in, d)) &&
		 gpu.i->download(gpu.ctx, hg, d, n * esz) == BT_OK && same_bits(what, dt, hc, hg, n);
	free(hc);
	free(hg);
	return ok;
}

TEST(input_u8_exact)
{
	static const struct { int n, C, S, pinned; } cases[] = {
		{ 5, 3, 24, 1 }, { 4, 3, 33, 1 }, { 3, 1, 20, 1 }, { 6, 1, 17, 0 }, { 1, 3, 16, 0 },
	};
	void *d = NULL;
	int ok = 1;
	CHECK(gpu.i->input_u8 && gpu.i->host_alloc && gpu.i->host_free);
	CHECK_EQ(gpu.i->alloc(gpu.ctx, 6 * 33 * 33 * 3 * sizeof(float), &d), BT_OK);
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		struct u8case u;
		CHECK(u8case_make(&u, cases[k].n, cases[k].C, cases[k].S, 40 + k, cases[k].pinned));
		for (int dt = BT_DTYPE_F32; dt <= BT_DTYPE_BF16; dt++) {
			for (int mix = 0; mix < 2; mix++) {
				struct bt_u8_batch in = u8case_input(&u, mix, 0.3125f + 0.05f * (float)k);
				char what[128];
				snprintf(what, sizeof what, "input_u8 %d x %dx%dx%d %s%s%s", u.n, u.S, u.S, u.C,
					 bt_dtype_name(dt), mix ? ", mixup" : "", u.pinned ? "" : ", pageable");
				ok &= input_same(what, &in, dt, d);
				/* no colour parameters: normalisation alone */
				if (!mix && k == 0) {
					in.colour = NULL;
					ok &= input_same("input_u8 without colour", &in, dt, d);
				}
			}
		}
		u8case_free(&u);
	}
	gpu.i->release(gpu.ctx, d);
	CHECK(ok);
}

/* Three batches queued with no wait between them, so that the third copy reuses the first
 * staging buffer while the first kernel may still be queued; then a page-locked buffer
 * rewritten once a download has returned and sent again (bt-train's reuse of the loader's
 * slots). Each output against the CPU's. */
TEST(input_u8_staging)
{
	struct u8case u[3];
	void *d[3] = { NULL, NULL, NULL };
	size_t bytes = 8 * 40 * 40 * 3 * sizeof(float);
	int ok = 1;
	for (int k = 0; k < 3; k++) {
		CHECK(u8case_make(&u[k], 8 - k, 3, 40 - 3 * k, 70 + k, 1));
		CHECK_EQ(gpu.i->alloc(gpu.ctx, bytes, &d[k]), BT_OK);
	}
	for (int k = 0; k < 3; k++) {
		struct bt_u8_batch in = u8case_input(&u[k], k == 1, 0.7f);
		CHECK_EQ(gpu.i->input_u8(gpu.ctx, BT_DTYPE_BF16, &in, d[k]), BT_OK);
	}
	for (int k = 0; k < 3; k++) {
		struct bt_u8_batch in = u8case_input(&u[k], k == 1, 0.7f);
		size_t n = u[k].per * (size_t)u[k].n;
		uint16_t *hc = malloc(n * 2), *hg = malloc(n * 2);
		char what[64];
		snprintf(what, sizeof what, "queued batch %d of 3", k + 1);
		ok &= hc && hg && cpu.i->input_u8(cpu.ctx, BT_DTYPE_BF16, &in, hc) == BT_OK &&
		      gpu.i->download(gpu.ctx, hg, d[k], n * 2) == BT_OK && same_bits(what, BT_DTYPE_BF16, hc, hg, n);
		free(hc);
		free(hg);
	}
	/* u[0]'s buffer again, with other crops written into it after the downloads above */
	{
		struct u8case v;
		struct bt_u8_batch in;
		CHECK(u8case_make(&v, u[0].n, 3, u[0].S, 99, 0));
		memcpy(u[0].x, v.x, v.per * (size_t)v.n);
		memcpy(u[0].col, v.col, (size_t)v.n * sizeof *v.col);
		in = u8case_input(&u[0], 1, 0.55f);
		ok &= input_same("page-locked buffer rewritten and sent again", &in, BT_DTYPE_F32, d[2]);
		u8case_free(&v);
	}
	for (int k = 0; k < 3; k++) {
		u8case_free(&u[k]);
		gpu.i->release(gpu.ctx, d[k]);
	}
	CHECK(ok);
}

/* bt_run_forward_u8 against bt_run_forward given the CPU slot's float32 output of the same
 * batch: the same input bits on the device, so the same logits, in float32 and bfloat16
 * (where the float path casts on the device and the kernel rounds once: the same bits). */
TEST(run_forward_u8_on_cuda)
{
	struct bt_model_opts mo = {.classes = 5, .in_channels = 3, .input_size = 16};
	static const int dts[2] = { BT_DTYPE_F32, BT_DTYPE_BF16 };
	struct bt_graph g;
	struct u8case u;
	int ok = 1;
	bt_graph_init(&g);
	CHECK_EQ(bt_model_build(&g, "cifar_resnet20_v1", &mo), BT_OK);
	CHECK(u8case_make(&u, 6, 3, 16, 123, 1));
	for (int t = 0; t < 2; t++) {
		struct bt_run *r = NULL;
		struct bt_u8_batch in = u8case_input(&u, 1, 0.4f);
		size_t n = u.per * (size_t)u.n;
		float *x = malloc(n * sizeof *x), *la = malloc(6 * 5 * sizeof *la), *lb = malloc(6 * 5 * sizeof *lb);
		int same;
		CHECK(x && la && lb);
		CHECK_EQ(cpu.i->input_u8(cpu.ctx, BT_DTYPE_F32, &in, x), BT_OK);
		CHECK_EQ(bt_run_new_dtype(&r, &g, &gpu, 6, dts[t]), BT_OK);
		CHECK_EQ(bt_run_init_params(r, 8, 0), BT_OK);
		CHECK_EQ(bt_run_forward(r, x, 6, 0, 0), BT_OK);
		CHECK_EQ(bt_run_read_logits(r, la, 6), BT_OK);
		CHECK_EQ(bt_run_forward_u8(r, &in, 0, 0), BT_OK);
		CHECK_EQ(bt_run_read_logits(r, lb, 6), BT_OK);
		same = memcmp(la, lb, 6 * 5 * sizeof *la) == 0;
		fprintf(stderr, "  bt_run_forward_u8 against bt_run_forward, %s: logits %s\n", bt_dtype_name(dts[t]),
			same ? "identical" : "differ  <-- FAIL");
		ok &= same;
		bt_run_free(r);
		free(x), free(la), free(lb);
	}
	u8case_free(&u);
	bt_graph_free(&g);
	CHECK(ok);
}

/* ---- the dispatcher (needs no device) --------------------------------------------------- */

static int dispatcher_ok(void)
{
	struct bt_backend be;
	static const char *const bad[] = { "foo", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "CPU", "" };
	int fails = 0;
	if (bt_backend_open(&be, "cpu", 1) != BT_OK || strcmp(be.i->name, "cpu") != 0) {
		fprintf(stderr, "FAIL bt_backend_open(\"cpu\"): %s\n", bt_errmsg());
		fails++;
	} else {
		bt_backend_free(&be);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char want[128];
		snprintf(want, sizeof want, "unknown device '%s' (expected cpu, cuda or cuda:N)", bad[i]);
		if (bt_backend_open(&be, bad[i], 1) != BT_ERR_INVALID || strcmp(bt_errmsg(), want) != 0) {
			fprintf(stderr, "FAIL bt_backend_open(\"%s\"): \"%s\"\n", bad[i], bt_errmsg());
			fails++;
		}
	}
	/* a device that cannot exist: refused, whatever the build */
	if (bt_backend_open(&be, "cuda:4000", 1) >= 0 || be.i) {
		fprintf(stderr, "FAIL bt_backend_open(\"cuda:4000\") succeeded\n");
		fails++;
	}
	return fails == 0;
}

/* x, y, dy or dx in one dtype: a float32 pair, or a half pair (host values rounded). */
struct tpair {
	struct pair f;
	struct hpair hh;
	int dt;
};

static int tpair_new(struct tpair *t, size_t n, uint64_t seed, float lo, float hi, int dt)
{
	memset(t, 0, sizeof *t);
	t->dt = dt;
	return dt == BT_DTYPE_F32 ? pair_new(&t->f, n, seed, lo, hi) : hpair_new(&t->hh, n, seed, lo, hi, dt);
}
static float *tp_h(const struct tpair *t) { return t->dt == BT_DTYPE_F32 ? t->f.h : t->hh.h; }
static void *tp_d(const struct tpair *t) { return t->dt == BT_DTYPE_F32 ? (void *)t->f.d : t->hh.d; }
static int tp_near(const char *what, const struct tpair *t, double tol)
{
	return t->dt == BT_DTYPE_F32 ? near_pair(what, &t->f, tol) : near_hpair(what, &t->hh, tol);
}
static void tp_free(struct tpair *t)
{
	pair_free(&t->f);
	hpair_free(&t->hh);
}

/* Runs test with one of the CUDA backend's settings at on, then puts it back to off. */
static void with_setting(int (*set)(struct bt_backend *, int), int on, int off, void (*test)(void))
{
	if (set(&gpu, on) < 0) {
		fprintf(stderr, "  setting the CUDA backend: %s\n", bt_errmsg());
		test_cur_failed = 1;
		return;
	}
	test();
	set(&gpu, off);
}

/* The batch-norm tests and the whole-network ones again with bt's kernels for every dtype
 * (and so the ReLU folded into each batch norm in training). */
static void with_own_bn(void (*test)(void))
{
	with_setting(bt_backend_cuda_set_bn, BT_CUDA_BN_OWN, BT_CUDA_BN_AUTO, test);
}

/* A batch norm with the ReLU after it folded in (bn_relu_*), and with a residual addition
 * and ReLU (bn_add_relu_*), bt's kernels on the device (BT_CUDA_BN_OWN), against the CPU's
 * (oneDNN's fuse_norm_relu; batch norm then one pass), every dtype:
 * channel counts that take 8 elements a thread (8, 64, 128) and the ones that take one
 * (3, 5), and one value per channel. */
static void batchnorm_relu_cases(void);

TEST(batchnorm_relu)
{
	struct bt_bn_desc a = { 2, 7, 7, 64, 1e-5f, 0.1f, BT_DTYPE_F32 };

	/* The default policy folds the ReLU where bt's kernels do the batch norm: bfloat16. */
	CHECK(gpu.i->bn_relu_ws_bytes && gpu.i->bn_relu_fwd_train && gpu.i->bn_relu_bwd);
	CHECK(cpu.i->bn_relu_ws_bytes && cpu.i->bn_relu_fwd_train && cpu.i->bn_relu_bwd);
	CHECK_EQ(gpu.i->bn_relu_ws_bytes(gpu.ctx, &a), 0);
	a.dtype = BT_DTYPE_BF16;
	CHECK_EQ(gpu.i->bn_relu_ws_bytes(gpu.ctx, &a), (2 * 7 * 7 * 64 + 31) / 32 * 4);
	CHECK_EQ(gpu.i->bn_add_relu_ok(gpu.ctx, &a), 1);
	a.dtype = BT_DTYPE_F16;
	CHECK_EQ(gpu.i->bn_add_relu_ok(gpu.ctx, &a), 0);
	CHECK_EQ(bt_backend_cuda_set_bn(&cpu, BT_CUDA_BN_OWN), BT_ERR_INVALID);
	CHECK_EQ(bt_backend_cuda_set_bn(&gpu, 7), BT_ERR_INVALID);
	with_own_bn(batchnorm_relu_cases);
}

static void batchnorm_relu_cases(void)
{
	static const struct { int n, h, w, c; float eps, momentum; } cases[] = {
		{ 4, 5, 5, 8, 1e-5f, 0.1f },    { 2, 7, 7, 64, 1e-5f, 0.1f },
		{ 3, 3, 5, 3, 1e-5f, 0.1f },    { 2, 3, 3, 5, 1e-3f, 0.9f },
		{ 16, 14, 14, 128, 1e-5f, 0.1f }, { 8, 1, 1, 32, 1e-3f, 0.9f },
		{ 1, 1, 1, 16, 1e-5f, 0.1f },
	};
	static const int dts[] = { BT_DTYPE_F32, BT_DTYPE_F16, BT_DTYPE_BF16 };

	for (int ti = 0; ti < 3; ti++) {
		int dt = dts[ti];
		double tol = dt == BT_DTYPE_F32 ? TOL_HEAVY : tol_of(dt);
		if (!other_has(dt))
			continue;
		for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
			struct bt_bn_desc d = { cases[t].n, cases[t].h, cases[t].w, cases[t].c, cases[t].eps,
						cases[t].momentum, BT_DTYPE_F32 }, dh;
			size_t nx = (size_t)d.n * d.h * d.w * d.c, cws, gws;
			struct tpair x, y, dy, dx, z, ya;
			struct pair g, b, rm, rv, sm, si, dg, db;
			void *cw = NULL, *gw = NULL;
			char what[128], shape[64];
			int ok = 1;
			uint64_t sd = 9000 + 100 * ti + 10 * t;
			dh = d;
			dh.dtype = dt;
			snprintf(shape, sizeof shape, "%s bn+relu %dx%dx%dx%d", bt_dtype_name(dt), d.n, d.h,
				 d.w, d.c);
			cws = cpu.i->bn_relu_ws_bytes(cpu.ctx, &d);
			gws = gpu.i->bn_relu_ws_bytes(gpu.ctx, &dh);
			CHECK(cws > 0);
			if (!on_cpu)
				CHECK_EQ(gws, (nx + 31) / 32 * 4);
			CHECK(cpu.i->alloc(cpu.ctx, cws, &cw) == 0 && gpu.i->alloc(gpu.ctx, gws, &gw) == 0);
			CHECK(tpair_new(&x, nx, sd + 1, -2, 3, dt) && tpair_new(&y, nx, sd + 2, -9, 9, dt) &&
			      pair_new(&g, d.c, sd + 3, 0.5f, 1.5f) && pair_new(&b, d.c, sd + 4, -1, 1) &&
			      pair_new(&rm, d.c, sd + 5, -1, 1) && pair_new(&rv, d.c, sd + 6, 0.5f, 2) &&
			      pair_new(&sm, d.c, sd + 7, -9, 9) && pair_new(&si, d.c, sd + 8, -9, 9) &&
			      tpair_new(&dy, nx, sd + 9, -1, 1, dt) && tpair_new(&dx, nx, sd + 10, -9, 9, dt) &&
			      pair_new(&dg, d.c, sd + 11, -1, 1) && pair_new(&db, d.c, sd + 12, -1, 1) &&
			      tpair_new(&z, nx, sd + 13, -2, 2, dt) && tpair_new(&ya, nx, sd + 14, -9, 9, dt));
			BOTH(shape, cpu.i->bn_relu_fwd_train(cpu.ctx, &d, tp_h(&x), g.h, b.h, rm.h, rv.h, sm.h,
							     si.h, tp_h(&y), cw),
			     gpu.i->bn_relu_fwd_train(gpu.ctx, &dh, tp_d(&x), g.d, b.d, rm.d, rv.d, sm.d, si.d,
						      tp_d(&y), gw));
			BOTH(shape, cpu.i->bn_relu_bwd(cpu.ctx, &d, tp_h(&x), tp_h(&dy), g.h, sm.h, si.h, cw,
						       tp_h(&dx), dg.h, db.h),
			     gpu.i->bn_relu_bwd(gpu.ctx, &dh, tp_d(&x), tp_d(&dy), g.d, sm.d, si.d, gw,
						tp_d(&dx), dg.d, db.d));
			snprintf(what, sizeof what, "%s: y = max(0, bn(x))", shape);
			ok &= tp_near(what, &y, tol);
			snprintf(what, sizeof what, "%s: save_mean, save_invstd", shape);
			ok &= near_pair(what, &sm, tol) & near_pair(what, &si, tol);
			snprintf(what, sizeof what, "%s: running mean and var", shape);
			ok &= near_pair(what, &rm, tol) & near_pair(what, &rv, tol);
			snprintf(what, sizeof what, "%s: dx (through the mask)", shape);
			ok &= tp_near(what, &dx, tol);
			snprintf(what, sizeof what, "%s: dgamma, dbeta (added)", shape);
			ok &= near_pair(what, &dg, tol) & near_pair(what, &db, tol);
			/* the end of a residual block: y = max(0, bn(x) + z) */
			CHECK_EQ(gpu.i->bn_add_relu_ok(gpu.ctx, &dh), 1);
			BOTH(shape, cpu.i->bn_add_relu_fwd_train(cpu.ctx, &d, tp_h(&x), tp_h(&z), g.h, b.h, rm.h,
								 rv.h, sm.h, si.h, tp_h(&ya)),
			     gpu.i->bn_add_relu_fwd_train(gpu.ctx, &dh, tp_d(&x), tp_d(&z), g.d, b.d, rm.d, rv.d,
							  sm.d, si.d, tp_d(&ya)));
			snprintf(what, sizeof what, "%s: max(0, bn(x) + z)", shape);
			ok &= tp_near(what, &ya, tol);
			snprintf(what, sizeof what, "%s: statistics after add + ReLU", shape);
			ok &= near_pair(what, &sm, tol) & near_pair(what, &si, tol) & near_pair(what, &rm, tol) &
			      near_pair(what, &rv, tol);
			tp_free(&z), tp_free(&ya);
			tp_free(&x), tp_free(&y), tp_free(&dy), tp_free(&dx);
			pair_free(&g), pair_free(&b), pair_free(&rm), pair_free(&rv), pair_free(&sm);
			pair_free(&si), pair_free(&dg), pair_free(&db);
			cpu.i->release(cpu.ctx, cw);
			gpu.i->release(gpu.ctx, gw);
			CHECK(ok);
		}
	}
}

TEST(batchnorm_relu_cpu) { batchnorm_relu_cases(); }

/* The convolution tests again with algorithms chosen by timing (cudnnFind*): the fastest,
 * deterministic or not, must be as accurate. */
static void with_conv_find(void (*test)(void))
{
	with_setting(bt_backend_cuda_set_conv_find, 1, 0, test);
}

TEST(conv_find) { with_conv_find(conv); }
TEST(conv_half_find) { with_conv_find(conv_half); }
TEST(batchnorm_own) { with_own_bn(batchnorm); }
TEST(batchnorm_half_own) { with_own_bn(batchnorm_half); }
TEST(run_every_op_own) { with_own_bn(run_every_op); }
TEST(run_every_op_half_own) { with_own_bn(run_every_op_half); }
TEST(run_cifar_resnet20_half_own) { with_own_bn(run_cifar_resnet20_half); }

/* BT_TEST_SKIP: names of tests not to run, separated by spaces, so that tests/gpu/run.sh
 * can run the rest again after a test that crashed the process. Each test's name is printed
 * before it runs, so the crashing one can be told. */
static int skip_test(const char *name)
{
	const char *l = getenv("BT_TEST_SKIP"), *p;
	size_t n = strlen(name);
	for (p = l; p && (p = strstr(p, name)); p += n)
		if ((p == l || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
			return 1;
	return 0;
}

#define RUNC(name)                                                                 \
	do {                                                                       \
		if (skip_test(#name)) {                                            \
			fprintf(stderr, "skip %s (BT_TEST_SKIP)\n", #name);         \
			break;                                                     \
		}                                                                  \
		fprintf(stderr, "== %s\n", #name);                                 \
		fflush(stderr);                                                    \
		RUN(name);                                                         \
	} while (0)

/* --cpu: the CPU backend's bfloat16 against its float32, every op and the networks, with
 * the half tests' tolerances (the CUDA-only tests are left out). Runs in make check. */
static int main_cpu(void)
{
	if (bt_backend_cpu(&cpu, 0) < 0 || bt_backend_cpu(&gpu, 0) < 0) {
		fprintf(stderr, "test_cuda: %s\n", bt_errmsg());
		return 1;
	}
	if (!gpu.i->supports(gpu.ctx, BT_DTYPE_BF16)) {
		printf("skip: no bfloat16 on this CPU (%s; it needs AVX-512 BF16)\n",
		       cpu.i->describe(cpu.ctx));
		bt_backend_free(&gpu);
		bt_backend_free(&cpu);
		return 0;
	}
	printf("cpu float32 against cpu bfloat16: %s\n", cpu.i->describe(cpu.ctx));
	fflush(stdout);
	RUNC(elementwise_half_exact);
	RUNC(conv_half);
	RUNC(batchnorm_half);
	RUNC(batchnorm_relu_cpu);
	RUNC(pooling_half);
	RUNC(fc_half);
	RUNC(run_every_op_half);
	RUNC(run_cifar_resnet20_half);
	bt_backend_free(&gpu);
	bt_backend_free(&cpu);
	return test_summary();
}

int main(int argc, char **argv)
{
	char why[256];
	int n = 0, st;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--cpu") != 0)) {
		fprintf(stderr, "usage: test_cuda [--cpu]\n");
		return 2;
	}
	if (!dispatcher_ok())
		return 1;
	if (argc == 2) {
		on_cpu = 1;
		return main_cpu();
	}
	bt_cuda_device_count(&n, why, sizeof why);
	if (n == 0) {
		printf("skip: no CUDA device (%s)\n", why);
		return 0;
	}
	st = bt_backend_cuda(&gpu, 0);
	if (st == BT_ERR_UNSUPPORTED) {
		printf("skip: no CUDA backend (%s)\n", bt_errmsg());
		return 0;
	}
	if (st < 0) {
		fprintf(stderr, "test_cuda: %s\n", bt_errmsg());
		return 1;
	}
	if (bt_backend_cpu(&cpu, 0) < 0) {
		fprintf(stderr, "test_cuda: %s\n", bt_errmsg());
		return 1;
	}
	printf("cpu: %s\ncuda: %s\n", cpu.i->describe(cpu.ctx), gpu.i->describe(gpu.ctx));
	fflush(stdout);
	RUNC(conv);
	RUNC(batchnorm);
	RUNC(pooling);
	RUNC(fc);
	RUNC(elementwise);
	RUNC(gap_and_concat);
	RUNC(dropout_masks_identical);
	RUNC(bn_fold);
	RUNC(softmax_ce);
	RUNC(sgd_ranges);
	RUNC(run_every_op);
	RUNC(run_zoo_fused_inference);
	RUNC(run_cifar_resnet20_tracks_cpu);
	RUNC(profile_on_cuda);
	RUNC(device_memory);
	RUNC(cast_exact);
	RUNC(nonfinite_check);
	RUNC(sgd_unscales);
	RUNC(elementwise_half_exact);
	RUNC(conv_half);
	RUNC(batchnorm_half);
	RUNC(batchnorm_relu);
	RUNC(conv_find);
	RUNC(conv_half_find);
	RUNC(batchnorm_own);
	RUNC(batchnorm_half_own);
	RUNC(pooling_half);
	RUNC(fc_half);
	RUNC(run_every_op_half);
	RUNC(loss_scale_overflow);
	RUNC(run_cifar_resnet20_half);
	RUNC(run_every_op_own);
	RUNC(run_every_op_half_own);
	RUNC(run_cifar_resnet20_half_own);
	RUNC(input_u8_exact);
	RUNC(input_u8_staging);
	RUNC(run_forward_u8_on_cuda);
	bt_backend_free(&gpu);
	bt_backend_free(&cpu);
	return test_summary();
}
