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
 * bt_backend_open's parsing is checked first, silently. Then, without a visible device or
 * in a build without the CUDA backend, the program prints one line "skip: ..." and exits 0.
 * Every comparison prints its error, so a GPU log shows the margins, not only a verdict.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static struct bt_backend cpu, gpu;

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
	static const struct { int n, h, w, c; float eps, momentum; } cases[] = {
		{ 4, 5, 5, 8, 1e-5f, 0.1f },    { 2, 7, 7, 64, 1e-5f, 0.1f },
		{ 8, 1, 1, 32, 1e-3f, 0.9f },   { 3, 3, 5, 3, 1e-5f, 0.1f },
		{ 16, 14, 14, 128, 1e-5f, 0.1f }, { 1, 1, 1, 16, 1e-5f, 0.1f }, /* one value per channel */
	};
	for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
		struct bt_bn_desc d = { cases[t].n, cases[t].h, cases[t].w, cases[t].c, cases[t].eps,
					cases[t].momentum };
		size_t nx = (size_t)d.n * d.h * d.w * d.c;
		struct pair x, y, g, b, rm, rv, sm, si, dy, dx, dg, db, yi;
		char what[96], shape[48];
		int ok = 1;
		uint64_t s = 100 * t;
		snprintf(shape, sizeof shape, "%dx%dx%dx%d", d.n, d.h, d.w, d.c);
		CHECK(pair_new(&x, nx, s + 1, -2, 3) && pair_new(&y, nx, s + 2, -9, 9) &&
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
		struct bt_fc_desc d = { cases[t].n, cases[t].cin, cases[t].cout, cases[t].bias };
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
		BOTH("relu", cpu.i->relu_fwd(cpu.ctx, a.h, y.h, n), gpu.i->relu_fwd(gpu.ctx, a.d, y.d, n));
		snprintf(what, sizeof what, "relu_fwd n=%zu", n);
		ok &= near_pair(what, &y, TOL_ELEM);
		BOTH("relu in place", cpu.i->relu_fwd(cpu.ctx, b.h, b.h, n), gpu.i->relu_fwd(gpu.ctx, b.d, b.d, n));
		snprintf(what, sizeof what, "relu_fwd in place n=%zu", n);
		ok &= near_pair(what, &b, TOL_ELEM);
		BOTH("relu_bwd", cpu.i->relu_bwd(cpu.ctx, b.h, a.h, z.h, n), gpu.i->relu_bwd(gpu.ctx, b.d, a.d, z.d, n));
		snprintf(what, sizeof what, "relu_bwd n=%zu", n);
		ok &= near_pair(what, &z, TOL_ELEM);
		BOTH("add", cpu.i->add(cpu.ctx, a.h, z.h, y.h, n), gpu.i->add(gpu.ctx, a.d, z.d, y.d, n));
		snprintf(what, sizeof what, "add n=%zu", n);
		ok &= near_pair(what, &y, TOL_ELEM);
		BOTH("add y == a", cpu.i->add(cpu.ctx, y.h, a.h, y.h, n), gpu.i->add(gpu.ctx, y.d, a.d, y.d, n));
		BOTH("add y == b", cpu.i->add(cpu.ctx, z.h, y.h, y.h, n), gpu.i->add(gpu.ctx, z.d, y.d, y.d, n));
		snprintf(what, sizeof what, "add in place (y == a, y == b) n=%zu", n);
		ok &= near_pair(what, &y, TOL_ELEM);
		BOTH("accumulate", cpu.i->accumulate(cpu.ctx, z.h, a.h, n), gpu.i->accumulate(gpu.ctx, z.d, a.d, n));
		snprintf(what, sizeof what, "accumulate n=%zu", n);
		ok &= near_pair(what, &z, TOL_ELEM);
		BOTH("mul", cpu.i->mul(cpu.ctx, a.h, z.h, b.h, n), gpu.i->mul(gpu.ctx, a.d, z.d, b.d, n));
		snprintf(what, sizeof what, "mul n=%zu", n);
		ok &= near_pair(what, &b, TOL_ELEM);
		BOTH("copy", cpu.i->copy(cpu.ctx, y.h, b.h, n), gpu.i->copy(gpu.ctx, y.d, b.d, n));
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
		BOTH("gap", cpu.i->gap_fwd(cpu.ctx, x.h, y.h, gaps[t].n, gaps[t].hw, gaps[t].c),
		     gpu.i->gap_fwd(gpu.ctx, x.d, y.d, gaps[t].n, gaps[t].hw, gaps[t].c));
		BOTH("gap bwd", cpu.i->gap_bwd(cpu.ctx, dy.h, dx.h, gaps[t].n, gaps[t].hw, gaps[t].c),
		     gpu.i->gap_bwd(gpu.ctx, dy.d, dx.d, gaps[t].n, gaps[t].hw, gaps[t].c));
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
		BOTH("concat", cpu.i->concat_fwd(cpu.ctx, xj.h, y.h, pixels, cj, co, off),
		     gpu.i->concat_fwd(gpu.ctx, xj.d, y.d, pixels, cj, co, off));
		BOTH("concat bwd", cpu.i->concat_bwd(cpu.ctx, y.h, dxj.h, pixels, cj, co, off),
		     gpu.i->concat_bwd(gpu.ctx, y.d, dxj.d, pixels, cj, co, off));
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
		BOTH("dropout", cpu.i->dropout_fwd(cpu.ctx, x.h, y.h, m.h, n, cases[t].p, cases[t].seed),
		     gpu.i->dropout_fwd(gpu.ctx, x.d, y.d, m.d, n, cases[t].p, cases[t].seed));
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
		BOTH("sgd", cpu.i->sgd(cpu.ctx, w.h, dw.h, v.h, r, nr, 0.1f, 0.9f, 1e-4f),
		     gpu.i->sgd(gpu.ctx, w.d, dw.d, v.d, r, nr, 0.1f, 0.9f, 1e-4f));
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

/* 100 SGD steps on four fixed batches whose pixels carry a little of the label: the loss
 * must fall on both backends and the two must end within 2 % of each other. Rounding
 * differences grow chaotically mid-run (up to about 4 % between two CPU runs whose initial
 * weights differ by 1e-6 relative), then shrink again as both settle at the floor that
 * label smoothing leaves, so the check is on the mean of the last 10 steps. */
TEST(run_cifar_resnet20_tracks_cpu)
{
	enum { B = 16, NB = 4, STEPS = 100, S = 16 };
	const size_t per = (size_t)S * S * 3;
	struct bt_model_opts o = { .classes = 10, .in_channels = 3, .input_size = S };
	struct bt_graph g;
	struct bt_run *rc = NULL, *rg = NULL;
	float *x = malloc(NB * B * per * sizeof *x);
	int32_t labels[NB * B];
	double lc[STEPS], lg[STEPS], tc = 0, tg = 0, rel;
	struct bt_rng r;
	CHECK(x);
	bt_graph_init(&g);
	CHECK_EQ(bt_model_build(&g, "cifar_resnet20_v1", &o), BT_OK);
	bt_rng_seed(&r, 7);
	for (size_t i = 0; i < NB * B * per; i++)
		x[i] = (float)(bt_rng_uniform(&r) * 2 - 1);
	for (int i = 0; i < NB * B; i++)
		labels[i] = (int32_t)bt_rng_below(&r, 10);
	for (int i = 0; i < NB * B; i++)
		for (size_t k = 0; k < per; k += 3)
			x[i * per + k] += 0.5f * (labels[i] - 4.5f) / 4.5f;
	CHECK_EQ(bt_run_new(&rc, &g, &cpu, B), BT_OK);
	CHECK_EQ(bt_run_new(&rg, &g, &gpu, B), BT_OK);
	CHECK_EQ(bt_run_init_params(rc, 1, 0), BT_OK);
	CHECK_EQ(bt_run_init_params(rg, 1, 0), BT_OK);
	for (int s = 0; s < STEPS; s++) {
		const float *xb = x + (size_t)(s % NB) * B * per;
		const int32_t *lb = labels + (s % NB) * B;
		BOTH("forward", bt_run_forward(rc, xb, B, 1, s), bt_run_forward(rg, xb, B, 1, s));
		BOTH("loss", bt_run_loss(rc, lb, NULL, 0.1f, 1, &lc[s]), bt_run_loss(rg, lb, NULL, 0.1f, 1, &lg[s]));
		BOTH("backward", bt_run_backward(rc), bt_run_backward(rg));
		bt_run_sgd(rc, 0.05f, 0.9f, 1e-4f, 1);
		bt_run_sgd(rg, 0.05f, 0.9f, 1e-4f, 1);
		if (s == 0 || (s + 1) % 10 == 0)
			fprintf(stderr, "  cifar_resnet20_v1 step %3d: loss cpu %.6f cuda %.6f\n", s + 1, lc[s], lg[s]);
	}
	for (int s = STEPS - 10; s < STEPS; s++) {
		tc += lc[s] / 10;
		tg += lg[s] / 10;
	}
	rel = fabs(tc - tg) / tc;
	fprintf(stderr, "  cifar_resnet20_v1: first step %.2e apart; mean of the last 10 steps cpu %.6f "
		"cuda %.6f, %.2f %% apart (tol 2 %%)\n", fabs(lc[0] - lg[0]) / lc[0], tc, tg, 100 * rel);
	CHECK(fabs(lc[0] - lg[0]) / lc[0] < 1e-4);
	CHECK(tc < 0.5 * lc[0] && tg < 0.5 * lg[0]);
	CHECK(rel < 0.02);
	bt_run_free(rc);
	bt_run_free(rg);
	bt_graph_free(&g);
	free(x);
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

int main(void)
{
	char why[256];
	int n = 0, st;

	if (!dispatcher_ok())
		return 1;
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
	RUN(conv);
	RUN(batchnorm);
	RUN(pooling);
	RUN(fc);
	RUN(elementwise);
	RUN(gap_and_concat);
	RUN(dropout_masks_identical);
	RUN(bn_fold);
	RUN(softmax_ce);
	RUN(sgd_ranges);
	RUN(run_every_op);
	RUN(run_cifar_resnet20_tracks_cpu);
	bt_backend_free(&gpu);
	bt_backend_free(&cpu);
	return test_summary();
}
