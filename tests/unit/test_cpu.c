/* test_cpu.c: checks every kernel of lib/cpu.h against naive loops written here (double
 * accumulation), backward kernels also against finite differences of sum(y * r) for a random
 * r, the "add into" rule for parameter gradients and "overwrite" for dx, and that the
 * primitive cache creates nothing on a repeated shape.
 *
 * Tolerances: forward results within 1e-4, backward within 1e-3, each relative to
 * max(|reference|, 1) (values are O(1), so this is relative except near zero where float
 * accumulation order alone moves the last bits); finite differences (step 1e-2, central)
 * within 2e-3 of the analytic gradient, by the same measure.
 */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "bt.h"
#include "cpu.h"

static struct bt_cpu *cpu;
static uint64_t rng_state = 88172645463325252ull;

static float frand(void) /* uniform in [-1, 1) */
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rnd(size_t n)
{
	float *p = malloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = frand();
	return p;
}

static float *fill(size_t n, float v)
{
	float *p = malloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = v;
	return p;
}

/* Index of the first element out of tolerance, or -1. */
static long far_off(const float *got, const double *want, size_t n, double tol)
{
	for (size_t i = 0; i < n; i++) {
		double r = fabs(want[i]) > 1 ? fabs(want[i]) : 1;
		if (!(fabs(got[i] - want[i]) <= tol * r)) {
			fprintf(stderr, "  [%zu] got %.7g want %.7g\n", i, got[i], want[i]);
			return (long)i;
		}
	}
	return -1;
}

static double dot(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

static int close_fd(double fd, double an)
{
	double r = fabs(an) > 1 ? fabs(an) : 1;
	if (fabs(fd - an) <= 2e-3 * r)
		return 1;
	fprintf(stderr, "  finite difference %.7g, analytic %.7g\n", fd, an);
	return 0;
}

/* ---- convolution ------------------------------------------------------------------------ */

static int out_size(int in, int k, int s, int p, int d)
{
	return (in + 2 * p - (k - 1) * d - 1) / s + 1;
}

/* Visits every (output, weight, input) triple of the convolution; mode 0 forward, 1 the
 * adjoint for dx, 2 for dw. */
static void conv_ref(const struct bt_conv_desc *d, int mode, const float *x, const float *w,
		     const float *dy, double *out)
{
	int cg = d->c / d->groups, og = d->cout / d->groups;
	for (int n = 0; n < d->n; n++)
		for (int oy = 0; oy < d->oh; oy++)
			for (int ox = 0; ox < d->ow; ox++)
				for (int co = 0; co < d->cout; co++) {
					size_t yi = (((size_t)n * d->oh + oy) * d->ow + ox) * d->cout + co;
					double acc = 0;
					int g = co / og;
					for (int ky = 0; ky < d->kh; ky++) {
						int iy = oy * d->sh - d->ph + ky * d->dh;
						if (iy < 0 || iy >= d->h)
							continue;
						for (int kx = 0; kx < d->kw; kx++) {
							int ix = ox * d->sw - d->pw + kx * d->dw;
							if (ix < 0 || ix >= d->w)
								continue;
							for (int ci = 0; ci < cg; ci++) {
								size_t xi = (((size_t)n * d->h + iy) * d->w + ix) * d->c + g * cg + ci;
								size_t wi = (((size_t)co * d->kh + ky) * d->kw + kx) * cg + ci;
								if (mode == 0)
									acc += (double)x[xi] * w[wi];
								else if (mode == 1)
									out[xi] += (double)dy[yi] * w[wi];
								else
									out[wi] += (double)dy[yi] * x[xi];
							}
						}
					}
					if (mode == 0)
						out[yi] = acc;
				}
}

#define FD_STEP 0.25f

static int conv_case(int n, int h, int w, int c, int cout, int kh, int kw, int sh, int sw, int ph,
		     int pw, int dh, int dw, int groups, int bias)
{
	struct bt_conv_desc d = { n, h, w, c, out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw),
				  cout, kh, kw, sh, sw, ph, pw, dh, dw, groups, bias, 0 /* float32 */, 0 };
	size_t nx = (size_t)n * h * w * c, ny = (size_t)n * d.oh * d.ow * cout;
	size_t nw = (size_t)cout * kh * kw * (c / groups);
	float *x = rnd(nx), *wt = rnd(nw), *b = rnd(cout), *y = fill(ny, 7), *dy = rnd(ny);
	float *dx = fill(nx, 1e3f), *dwt = rnd(nw), *db = rnd(cout);
	float *dw0 = malloc(nw * sizeof *dw0), *db0 = malloc(cout * sizeof *db0);
	double *ry = calloc(ny, sizeof *ry), *rdx = calloc(nx, sizeof *rdx);
	double *rdw = calloc(nw, sizeof *rdw), *rdb = calloc(cout, sizeof *rdb);
	double *want = calloc(nw > (size_t)cout ? nw : (size_t)cout, sizeof *want);
	int ok = 0;

	memcpy(dw0, dwt, nw * sizeof *dw0);
	memcpy(db0, db, cout * sizeof *db0);
	conv_ref(&d, 0, x, wt, NULL, ry);
	for (size_t i = 0; i < ny; i++)
		if (bias)
			ry[i] += b[i % cout];
	conv_ref(&d, 1, NULL, wt, dy, rdx);
	conv_ref(&d, 2, x, NULL, dy, rdw);
	for (size_t i = 0; i < ny; i++)
		rdb[i % cout] += dy[i];

	if (bt_cpu_conv_fwd(cpu, &d, x, wt, bias ? b : NULL, y) || far_off(y, ry, ny, 1e-4) >= 0)
		goto out;
	if (bt_cpu_conv_bwd_data(cpu, &d, dy, wt, dx) || far_off(dx, rdx, nx, 1e-3) >= 0)
		goto out;
	/* Twice: parameter gradients add, onto what was there. */
	for (int rep = 1; rep <= 2; rep++) {
		if (bt_cpu_conv_bwd_weights(cpu, &d, x, dy, dwt, bias ? db : NULL))
			goto out;
		for (size_t i = 0; i < nw; i++)
			want[i] = dw0[i] + rep * rdw[i];
		if (far_off(dwt, want, nw, 1e-3) >= 0)
			goto out;
		for (int i = 0; bias && i < cout; i++)
			want[i] = db0[i] + rep * rdb[i];
		if (bias && far_off(db, want, cout, 1e-3) >= 0)
			goto out;
	}
	/* Finite differences of L = sum(y * dy) at one input and one weight element. L is linear
	 * in each, so a central difference is exact at any step; a wide one keeps the rounding of
	 * y (larger under Winograd) from swamping it. */
	{
		size_t xi = nx / 3, wi = nw / 2;
		float keep = x[xi];
		double lp, lm;
		x[xi] = keep + FD_STEP;
		bt_cpu_conv_fwd(cpu, &d, x, wt, bias ? b : NULL, y);
		lp = dot(y, dy, ny);
		x[xi] = keep - FD_STEP;
		bt_cpu_conv_fwd(cpu, &d, x, wt, bias ? b : NULL, y);
		lm = dot(y, dy, ny);
		x[xi] = keep;
		if (!close_fd((lp - lm) / ((double)(keep + FD_STEP) - (double)(keep - FD_STEP)), dx[xi]))
			goto out;
		keep = wt[wi];
		wt[wi] = keep + FD_STEP;
		bt_cpu_conv_fwd(cpu, &d, x, wt, bias ? b : NULL, y);
		lp = dot(y, dy, ny);
		wt[wi] = keep - FD_STEP;
		bt_cpu_conv_fwd(cpu, &d, x, wt, bias ? b : NULL, y);
		lm = dot(y, dy, ny);
		wt[wi] = keep;
		if (!close_fd((lp - lm) / ((double)(keep + FD_STEP) - (double)(keep - FD_STEP)), rdw[wi]))
			goto out;
	}
	ok = 1;
out:
	if (!ok)
		fprintf(stderr, "  conv n%d %dx%dx%d -> %d k%dx%d s%d,%d p%d,%d d%d,%d g%d bias%d: %s\n",
			n, h, w, c, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups, bias, bt_errmsg());
	free(x), free(wt), free(b), free(y), free(dy), free(dx), free(dwt), free(db);
	free(dw0), free(db0), free(ry), free(rdx), free(rdw), free(rdb), free(want);
	return ok;
}

TEST(test_conv_plain)
{
	CHECK(conv_case(2, 7, 6, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
	CHECK(conv_case(2, 7, 6, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0));
	CHECK(conv_case(3, 5, 5, 8, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0));
}

TEST(test_conv_stride_pad)
{
	CHECK(conv_case(2, 8, 9, 3, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0));
	CHECK(conv_case(2, 11, 11, 3, 8, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0)); /* ResNet stem */
	CHECK(conv_case(2, 8, 8, 4, 6, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1));   /* projection shortcut */
	CHECK(conv_case(2, 9, 7, 3, 4, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1));   /* Inception, no pad */
}

TEST(test_conv_dilation)
{
	CHECK(conv_case(2, 7, 7, 3, 4, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1));
	CHECK(conv_case(1, 9, 8, 2, 3, 3, 3, 2, 1, 1, 2, 2, 2, 1, 0));
}

TEST(test_conv_groups)
{
	CHECK(conv_case(2, 6, 6, 4, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1));
	CHECK(conv_case(2, 6, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, 0));  /* depthwise */
	CHECK(conv_case(2, 7, 7, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 8, 1));  /* depthwise, stride 2 */
	CHECK(conv_case(2, 6, 6, 4, 8, 3, 3, 1, 1, 1, 1, 1, 1, 4, 0));  /* multiplier 2 */
}

TEST(test_conv_asymmetric_kernels)
{
	CHECK(conv_case(2, 7, 7, 4, 5, 1, 7, 1, 1, 0, 3, 1, 1, 1, 1));
	CHECK(conv_case(2, 7, 7, 4, 5, 7, 1, 1, 1, 3, 0, 1, 1, 1, 0));
	CHECK(conv_case(2, 6, 8, 3, 4, 3, 5, 1, 2, 1, 2, 1, 1, 1, 0));
}

/* Post-operations against their formula: y = max(0, conv + b + y_before). Backward ignores
 * them (the same gradients as without). */
static int conv_post_case_shape(int h, int w, int c, int cout, int groups, int bias, int post)
{
	struct bt_conv_desc d = { 2, h, w, c, 0, 0, cout, 3, 3, 1, 1, 1, 1, 1, 1, groups, bias, 0, 0 };
	size_t nx, ny, nw;
	float *x, *wt, *b, *y, *y0, *dy, *dx, *dx0;
	double *ry;
	int ok = 0;

	d.oh = out_size(d.h, d.kh, d.sh, d.ph, d.dh);
	d.ow = out_size(d.w, d.kw, d.sw, d.pw, d.dw);
	d.post = post;
	nx = (size_t)d.n * d.h * d.w * d.c;
	ny = (size_t)d.n * d.oh * d.ow * d.cout;
	nw = (size_t)d.cout * d.kh * d.kw * (d.c / groups);
	x = rnd(nx), wt = rnd(nw), b = rnd(d.cout), y = rnd(ny), dy = rnd(ny);
	y0 = malloc(ny * sizeof *y0), dx = fill(nx, 0), dx0 = fill(nx, 0);
	ry = calloc(ny, sizeof *ry);
	memcpy(y0, y, ny * sizeof *y0);
	conv_ref(&d, 0, x, wt, NULL, ry);
	for (size_t i = 0; i < ny; i++) {
		ry[i] += (bias ? b[i % d.cout] : 0) + ((post & BT_CONV_POST_SUM) ? y0[i] : 0);
		if ((post & BT_CONV_POST_RELU) && ry[i] < 0)
			ry[i] = 0;
	}
	if (bt_cpu_conv_fwd(cpu, &d, x, wt, bias ? b : NULL, y) || far_off(y, ry, ny, 1e-4) >= 0)
		goto out;
	if (bt_cpu_conv_bwd_data(cpu, &d, dy, wt, dx))
		goto out;
	d.post = 0;
	if (bt_cpu_conv_bwd_data(cpu, &d, dy, wt, dx0) || memcmp(dx, dx0, nx * sizeof *dx))
		goto out;
	ok = 1;
out:
	if (!ok)
		fprintf(stderr, "  conv post %d %dx%dx%d -> %d groups %d bias %d: %s\n", post, h, w,
			c, cout, groups, bias, bt_errmsg());
	free(x), free(wt), free(b), free(y), free(y0), free(dy), free(dx), free(dx0), free(ry);
	return ok;
}

static int conv_post_case(int groups, int bias, int post)
{
	return conv_post_case_shape(6, 5, 4, 8, groups, bias, post);
}

/* 3x3 stride-1 between 64 channels or more: Winograd on AVX-512 machines (lib/cpu.c), whose
 * transforms round differently from a direct sum; the same tolerances hold. */
TEST(test_conv_winograd)
{
	struct bt_conv_desc d = { 2, 9, 10, 64, 9, 10, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 };
	const char *impl = bt_cpu_conv_impl(cpu, &d, 0);

	CHECK(impl != NULL);
	if (strncmp(impl, "jit_wino", 8) != 0) {
		fprintf(stderr, "  note: %s here, not Winograd (AVX-512 only); direct checked\n",
			impl);
	} else {
		CHECK(strncmp(bt_cpu_conv_impl(cpu, &d, 1), "jit_wino", 8) == 0);
		CHECK(strncmp(bt_cpu_conv_impl(cpu, &d, 2), "jit_wino", 8) == 0);
		d.post = BT_CONV_POST_RELU; /* inference, batch norm folded */
		CHECK(strncmp(bt_cpu_conv_impl(cpu, &d, 0), "jit_wino", 8) == 0);
		d.post = BT_CONV_POST_SUM; /* reads y in place: direct */
		CHECK(strncmp(bt_cpu_conv_impl(cpu, &d, 0), "jit_wino", 8) != 0);
		d.post = 0;
		d.c = 32; /* too few channels */
		CHECK(strncmp(bt_cpu_conv_impl(cpu, &d, 0), "jit_wino", 8) != 0);
	}
	CHECK(conv_case(2, 9, 10, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
	CHECK(conv_case(3, 7, 7, 64, 96, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0));
	for (int post = 1; post <= 3; post++)
		CHECK(conv_post_case_shape(8, 7, 64, 64, 1, 1, post));
}

/* Few input channels, or 16 channels on outputs narrower than 32, take oneDNN's plain jit
 * kernel instead of its first choice (lib/cpu.c, prefer_jit); the results are checked here
 * like any other convolution's. */
TEST(test_conv_jit_choice)
{
	struct bt_conv_desc stem = { 2, 28, 28, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 };
	struct bt_conv_desc narrow = { 2, 28, 28, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 };
	struct bt_conv_desc wide = { 2, 32, 32, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 };
	const char *a = bt_cpu_conv_impl(cpu, &stem, 0), *b = bt_cpu_conv_impl(cpu, &narrow, 0);
	const char *c = bt_cpu_conv_impl(cpu, &wide, 0);

	CHECK(a && b && c);
	const char *off = getenv("BT_CPU_JIT");

	if (off && off[0] == '0') {
		fprintf(stderr, "  note: BT_CPU_JIT=0; the choice is not tested\n");
	} else if (strstr(c, "brgconv")) { /* AVX-512: oneDNN's first choice is brgconv */
		CHECK(strncmp(a, "jit:", 4) == 0);
		CHECK(strncmp(b, "jit:", 4) == 0);
		narrow.post = BT_CONV_POST_SUM | BT_CONV_POST_RELU;
		CHECK(strncmp(bt_cpu_conv_impl(cpu, &narrow, 0), "jit:", 4) == 0);
	} else {
		fprintf(stderr, "  note: %s for 16 channels at 32x32 here; the choice is not tested\n", c);
	}
	CHECK(conv_case(2, 28, 28, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0));
	CHECK(conv_case(2, 28, 28, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
	for (int post = 1; post <= 3; post++)
		CHECK(conv_post_case_shape(14, 14, 16, 16, 1, 1, post));
}

TEST(test_conv_post_ops)
{
	for (int post = 1; post <= 3; post++) {
		CHECK(conv_post_case(1, 1, post));
		CHECK(conv_post_case(1, 0, post));
		CHECK(conv_post_case(4, 1, post));
	}
	{
		struct bt_conv_desc d = { 1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0 };
		float v[9] = { 0 };
		d.post = 4;
		CHECK_EQ(bt_cpu_conv_fwd(cpu, &d, v, v, NULL, v), BT_ERR_INVALID);
	}
}

/* ---- batch norm ------------------------------------------------------------------------- */

TEST(test_bn)
{
	struct bt_bn_desc d = { 3, 4, 5, 6, 1e-5f, 0.1f, 0 /* float32 */ };
	int c = d.c;
	size_t m = (size_t)d.n * d.h * d.w, nx = m * c;
	float *x = rnd(nx), *dy = rnd(nx), *y = fill(nx, 7), *dx = fill(nx, 1e3f);
	float *gamma = rnd(c), *beta = rnd(c), *rm = rnd(c), *rv = fill(c, 0.5f);
	float *rm0 = malloc(c * sizeof(float)), *smean = fill(c, 0), *sinv = fill(c, 0);
	float *dg = rnd(c), *dbt = rnd(c), *dg0 = malloc(c * sizeof(float)), *db0 = malloc(c * sizeof(float));
	double *mean = calloc(c, sizeof(double)), *var = calloc(c, sizeof(double));
	double *ry = calloc(nx, sizeof(double)), *rdx = calloc(nx, sizeof(double));
	double *want = calloc(nx, sizeof(double));
	int ok = 0;

	for (size_t i = 0; i < nx; i++)
		x[i] = 2 * x[i] + (float)(i % c); /* channels with different means */
	memcpy(rm0, rm, c * sizeof(float));
	memcpy(dg0, dg, c * sizeof(float));
	memcpy(db0, dbt, c * sizeof(float));
	for (size_t i = 0; i < nx; i++)
		mean[i % c] += x[i] / (double)m;
	for (size_t i = 0; i < nx; i++)
		var[i % c] += (x[i] - mean[i % c]) * (x[i] - mean[i % c]) / (double)m;
	for (size_t i = 0; i < nx; i++) {
		int k = i % c;
		ry[i] = (x[i] - mean[k]) / sqrt(var[k] + d.eps) * gamma[k] + beta[k];
	}
	if (bt_cpu_bn_fwd_train(cpu, &d, x, gamma, beta, rm, rv, smean, sinv, y))
		goto out;
	if (far_off(y, ry, nx, 1e-4) >= 0)
		goto out;
	for (int k = 0; k < c; k++) {
		want[k] = mean[k];
		want[c + k] = 1 / sqrt(var[k] + d.eps);
		want[2 * c + k] = 0.9 * rm0[k] + 0.1 * mean[k];
		want[3 * c + k] = 0.9 * 0.5 + 0.1 * var[k] * m / (m - 1); /* unbiased */
	}
	if (far_off(smean, want, c, 1e-4) >= 0 || far_off(sinv, want + c, c, 1e-4) >= 0 ||
	    far_off(rm, want + 2 * c, c, 1e-4) >= 0 || far_off(rv, want + 3 * c, c, 1e-4) >= 0)
		goto out;

	/* Inference uses the running statistics. */
	for (size_t i = 0; i < nx; i++) {
		int k = i % c;
		ry[i] = (x[i] - rm[k]) / sqrt((double)rv[k] + d.eps) * gamma[k] + beta[k];
	}
	if (bt_cpu_bn_fwd_infer(cpu, &d, x, gamma, beta, rm, rv, y) || far_off(y, ry, nx, 1e-4) >= 0)
		goto out;

	/* dx = gamma * invstd / M * (M dy - sum dy - xhat sum(dy xhat)) */
	{
		double *sdy = calloc(c, sizeof(double)), *sdyx = calloc(c, sizeof(double));
		for (size_t i = 0; i < nx; i++) {
			int k = i % c;
			double xh = (x[i] - mean[k]) / sqrt(var[k] + d.eps);
			sdy[k] += dy[i];
			sdyx[k] += dy[i] * xh;
		}
		for (size_t i = 0; i < nx; i++) {
			int k = i % c;
			double is = 1 / sqrt(var[k] + d.eps), xh = (x[i] - mean[k]) * is;
			rdx[i] = gamma[k] * is / m * (m * dy[i] - sdy[k] - xh * sdyx[k]);
		}
		for (int rep = 1; rep <= 2; rep++) {
			int bad;
			bad = bt_cpu_bn_bwd(cpu, &d, x, dy, gamma, smean, sinv, dx, dg, dbt) != 0;
			if (bad) {
				free(sdy), free(sdyx);
				goto out;
			}
			for (int k = 0; k < c; k++) {
				want[k] = dg0[k] + rep * sdyx[k];
				want[c + k] = db0[k] + rep * sdy[k];
			}
			bad = far_off(dx, rdx, nx, 1e-3) >= 0 || far_off(dg, want, c, 1e-3) >= 0 ||
			      far_off(dbt, want + c, c, 1e-3) >= 0;
			if (bad || rep == 2) {
				free(sdy), free(sdyx);
				if (bad)
					goto out;
			}
		}
	}
	/* Finite differences through the batch statistics, at one x and one gamma. */
	{
		size_t xi = nx / 2;
		int k = 2;
		float keep = x[xi];
		double lp, lm;
		float *t1 = fill(c, 0), *t2 = fill(c, 0), *t3 = fill(c, 0), *t4 = fill(c, 0);
		x[xi] = keep + 1e-2f;
		bt_cpu_bn_fwd_train(cpu, &d, x, gamma, beta, t1, t2, t3, t4, y);
		lp = dot(y, dy, nx);
		x[xi] = keep - 1e-2f;
		bt_cpu_bn_fwd_train(cpu, &d, x, gamma, beta, t1, t2, t3, t4, y);
		lm = dot(y, dy, nx);
		x[xi] = keep;
		ok = close_fd((lp - lm) / ((double)(keep + 1e-2f) - (keep - 1e-2f)), dx[xi]);
		keep = gamma[k];
		gamma[k] = keep + 1e-2f;
		bt_cpu_bn_fwd_train(cpu, &d, x, gamma, beta, t1, t2, t3, t4, y);
		lp = dot(y, dy, nx);
		gamma[k] = keep - 1e-2f;
		bt_cpu_bn_fwd_train(cpu, &d, x, gamma, beta, t1, t2, t3, t4, y);
		lm = dot(y, dy, nx);
		gamma[k] = keep;
		ok = ok && close_fd((lp - lm) / ((double)(keep + 1e-2f) - (keep - 1e-2f)),
				    (dg[k] - dg0[k]) / 2);
		free(t1), free(t2), free(t3), free(t4);
	}
out:
	if (!ok)
		fprintf(stderr, "  %s\n", bt_errmsg());
	free(x), free(dy), free(y), free(dx), free(gamma), free(beta), free(rm), free(rv);
	free(rm0), free(smean), free(sinv), free(dg), free(dbt), free(dg0), free(db0);
	free(mean), free(var), free(ry), free(rdx), free(want);
	CHECK(ok);
}

/* ---- pooling ---------------------------------------------------------------------------- */

static void pool_ref(const struct bt_pool_desc *d, const float *x, const float *dy, double *y,
		     double *dx)
{
	for (int n = 0; n < d->n; n++)
		for (int oy = 0; oy < d->oh; oy++)
			for (int ox = 0; ox < d->ow; ox++)
				for (int c = 0; c < d->c; c++) {
					size_t yi = (((size_t)n * d->oh + oy) * d->ow + ox) * d->c + c;
					double acc = d->max ? -INFINITY : 0;
					long best = -1;
					int cnt = 0;
					for (int ky = 0; ky < d->kh; ky++)
						for (int kx = 0; kx < d->kw; kx++) {
							int iy = oy * d->sh - d->ph + ky, ix = ox * d->sw - d->pw + kx;
							size_t xi;
							if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
								continue;
							xi = (((size_t)n * d->h + iy) * d->w + ix) * d->c + c;
							cnt++;
							if (d->max && x[xi] > acc)
								acc = x[xi], best = (long)xi;
							else if (!d->max)
								acc += x[xi];
						}
					if (d->max) {
						y[yi] = acc;
						dx[best] += dy[yi];
						continue;
					}
					/* count_pad divides by the whole window, as oneDNN's include_padding */
					int div = d->count_pad ? d->kh * d->kw : cnt;
					y[yi] = acc / div;
					for (int ky = 0; ky < d->kh; ky++)
						for (int kx = 0; kx < d->kw; kx++) {
							int iy = oy * d->sh - d->ph + ky, ix = ox * d->sw - d->pw + kx;
							if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
								continue;
							dx[(((size_t)n * d->h + iy) * d->w + ix) * d->c + c] += dy[yi] / div;
						}
				}
}

static int pool_case(int n, int h, int w, int c, int oh, int ow, int k, int s, int p, int max,
		     int count_pad)
{
	struct bt_pool_desc d = { n, h, w, c, oh, ow, k, k, s, s, p, p, max, count_pad, 0 /* float32 */ };
	size_t nx = (size_t)n * h * w * c, ny = (size_t)n * oh * ow * c, wsb;
	float *x = malloc(nx * sizeof *x), *y = fill(ny, 7), *dy = rnd(ny), *dx = fill(nx, 1e3f);
	double *ry = calloc(ny, sizeof *ry), *rdx = calloc(nx, sizeof *rdx);
	void *ws = NULL;
	int ok = 0;

	/* Distinct values 0.05 apart, so a 1e-2 step never changes which element is the max. */
	for (size_t i = 0; i < nx; i++)
		x[i] = (float)i * 0.05f;
	for (size_t i = nx - 1; i > 0; i--) {
		size_t j = (size_t)((frand() + 1) / 2 * (i + 1)) % (i + 1);
		float t = x[i];
		x[i] = x[j], x[j] = t;
	}
	pool_ref(&d, x, dy, ry, rdx);
	wsb = bt_cpu_pool_ws_bytes(cpu, &d);
	if (max && !wsb)
		goto out;
	ws = malloc(wsb ? wsb : 1);
	if (bt_cpu_pool_fwd(cpu, &d, x, y, ws) || far_off(y, ry, ny, 1e-4) >= 0)
		goto out;
	if (bt_cpu_pool_bwd(cpu, &d, dy, ws, dx) || far_off(dx, rdx, nx, 1e-3) >= 0)
		goto out;
	{
		size_t xi = nx / 2 + 1;
		float keep = x[xi];
		double lp, lm;
		x[xi] = keep + 1e-2f;
		bt_cpu_pool_fwd(cpu, &d, x, y, ws);
		lp = dot(y, dy, ny);
		x[xi] = keep - 1e-2f;
		bt_cpu_pool_fwd(cpu, &d, x, y, ws);
		lm = dot(y, dy, ny);
		x[xi] = keep;
		if (!close_fd((lp - lm) / ((double)(keep + 1e-2f) - (keep - 1e-2f)), dx[xi]))
			goto out;
	}
	ok = 1;
out:
	if (!ok)
		fprintf(stderr, "  pool %dx%dx%d -> %dx%d k%d s%d p%d max%d count_pad%d: %s\n", h, w, c,
			oh, ow, k, s, p, max, count_pad, bt_errmsg());
	free(x), free(y), free(dy), free(dx), free(ry), free(rdx), free(ws);
	return ok;
}

TEST(test_pool_max)
{
	CHECK(pool_case(2, 8, 8, 3, 4, 4, 2, 2, 0, 1, 0));
	CHECK(pool_case(2, 9, 9, 4, 5, 5, 3, 2, 1, 1, 0)); /* ResNet stem */
	CHECK(pool_case(2, 7, 7, 3, 4, 4, 2, 2, 0, 1, 0)); /* ceil mode */
	CHECK(pool_case(2, 8, 8, 3, 4, 4, 3, 2, 0, 1, 0)); /* ceil mode, Inception */
}

TEST(test_pool_avg)
{
	CHECK(pool_case(2, 8, 8, 3, 4, 4, 2, 2, 0, 0, 0));
	CHECK(pool_case(2, 6, 6, 4, 6, 6, 3, 1, 1, 0, 1)); /* Inception's 3x3, padding counted */
	CHECK(pool_case(2, 6, 6, 4, 6, 6, 3, 1, 1, 0, 0));
	CHECK(pool_case(2, 7, 7, 3, 4, 4, 2, 2, 0, 0, 0)); /* ResNet-D shortcut, ceil mode */
	CHECK(pool_case(2, 7, 7, 3, 4, 4, 2, 2, 0, 0, 1));
	CHECK(pool_case(2, 4, 4, 8, 1, 1, 4, 4, 0, 0, 0)); /* global average */
}

/* ---- fully connected -------------------------------------------------------------------- */

static int fc_case(int n, int cin, int cout, int bias)
{
	struct bt_fc_desc d = { n, cin, cout, bias, 0 /* float32 */ };
	size_t nx = (size_t)n * cin, ny = (size_t)n * cout, nw = (size_t)cout * cin;
	float *x = rnd(nx), *w = rnd(nw), *b = rnd(cout), *y = fill(ny, 7), *dy = rnd(ny);
	float *dx = fill(nx, 1e3f), *dw = rnd(nw), *db = rnd(cout);
	double *ry = calloc(ny, sizeof *ry), *rdx = calloc(nx, sizeof *rdx);
	double *rdw = calloc(nw, sizeof *rdw), *rdb = calloc(cout, sizeof *rdb);
	double *g = calloc(nw, sizeof *g), *gb = calloc(cout, sizeof *gb);
	int ok = 0;

	for (int i = 0; i < n; i++)
		for (int o = 0; o < cout; o++) {
			double s = bias ? b[o] : 0;
			for (int k = 0; k < cin; k++) {
				s += (double)x[i * cin + k] * w[o * cin + k];
				rdx[i * cin + k] += (double)dy[i * cout + o] * w[o * cin + k];
				g[o * cin + k] += (double)dy[i * cout + o] * x[i * cin + k];
			}
			ry[i * cout + o] = s;
			gb[o] += dy[i * cout + o];
		}
	if (bt_cpu_fc_fwd(cpu, &d, x, w, bias ? b : NULL, y) || far_off(y, ry, ny, 1e-4) >= 0)
		goto out;
	for (size_t i = 0; i < nw; i++)
		rdw[i] = dw[i];
	for (int o = 0; o < cout; o++)
		rdb[o] = db[o];
	for (int rep = 0; rep < 2; rep++) {
		if (bt_cpu_fc_bwd(cpu, &d, x, dy, w, rep ? NULL : dx, dw, bias ? db : NULL))
			goto out;
		for (size_t i = 0; i < nw; i++)
			rdw[i] += g[i];
		for (int o = 0; o < cout; o++)
			rdb[o] += gb[o];
		if (far_off(dx, rdx, nx, 1e-3) >= 0 || far_off(dw, rdw, nw, 1e-3) >= 0 ||
		    (bias && far_off(db, rdb, cout, 1e-3) >= 0))
			goto out;
	}
	{
		size_t xi = nx / 2;
		float keep = x[xi];
		double lp, lm;
		x[xi] = keep + 1e-2f;
		bt_cpu_fc_fwd(cpu, &d, x, w, bias ? b : NULL, y);
		lp = dot(y, dy, ny);
		x[xi] = keep - 1e-2f;
		bt_cpu_fc_fwd(cpu, &d, x, w, bias ? b : NULL, y);
		lm = dot(y, dy, ny);
		x[xi] = keep;
		if (!close_fd((lp - lm) / ((double)(keep + 1e-2f) - (keep - 1e-2f)), dx[xi]))
			goto out;
	}
	ok = 1;
out:
	if (!ok)
		fprintf(stderr, "  fc %d %d->%d bias%d: %s\n", n, cin, cout, bias, bt_errmsg());
	free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
	free(ry), free(rdx), free(rdw), free(rdb), free(g), free(gb);
	return ok;
}

TEST(test_fc)
{
	CHECK(fc_case(5, 7, 3, 1));
	CHECK(fc_case(4, 64, 10, 0));
	CHECK(fc_case(3, 130, 17, 1));
}

/* ---- the cache and the context ---------------------------------------------------------- */

TEST(test_cache)
{
	struct bt_conv_desc d = { 2, 8, 8, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0 /* float32 */, 0 };
	struct bt_bn_desc bd = { 2, 8, 8, 8, 1e-5f, 0.1f, 0 /* float32 */ };
	struct bt_pool_desc pd = { 2, 8, 8, 8, 4, 4, 2, 2, 2, 2, 0, 0, 1, 0, 0 /* float32 */ };
	size_t nx = 2 * 8 * 8 * 8;
	float *x = rnd(nx), *w = rnd(8 * 9 * 8), *b = rnd(8), *y = rnd(nx), *g = rnd(nx);
	float *c1 = fill(8, 1), *c2 = fill(8, 0), *c3 = fill(8, 1), *c4 = fill(8, 0);
	char ws[65536];
	int m0 = 0, ok = 1;

	CHECK(bt_cpu_pool_ws_bytes(cpu, &pd) <= sizeof ws);
	for (int rep = 0; rep < 3; rep++) {
		ok &= !bt_cpu_conv_fwd(cpu, &d, x, w, b, y);
		ok &= !bt_cpu_conv_bwd_data(cpu, &d, y, w, g);
		ok &= !bt_cpu_conv_bwd_weights(cpu, &d, x, y, w, b);
		ok &= !bt_cpu_bn_fwd_train(cpu, &bd, x, c1, c2, c2, c3, c4, c3, y);
		ok &= !bt_cpu_bn_fwd_infer(cpu, &bd, x, c1, c2, c2, c3, y);
		ok &= !bt_cpu_bn_bwd(cpu, &bd, x, y, c1, c4, c3, g, c2, c2);
		ok &= !bt_cpu_pool_fwd(cpu, &pd, x, y, ws);
		ok &= !bt_cpu_pool_bwd(cpu, &pd, y, ws, g);
		if (rep == 0)
			m0 = bt_cpu_cache_misses(cpu);
	}
	free(x), free(w), free(b), free(y), free(g), free(c1), free(c2), free(c3), free(c4);
	CHECK(ok);
	CHECK(m0 >= 8);
	CHECK_EQ(bt_cpu_cache_misses(cpu), m0);
}

TEST(test_errors)
{
	struct bt_conv_desc d = { 2, 8, 8, 6, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 4, 0, 0 /* float32 */, 0 };
	float v = 0;
	CHECK_EQ(bt_cpu_conv_fwd(cpu, &d, &v, &v, NULL, &v), BT_ERR_INVALID); /* 6 % 4 */
	d.groups = 1;
	d.oh = 9; /* inconsistent with the rest */
	CHECK(bt_cpu_conv_fwd(cpu, &d, &v, &v, NULL, &v) < 0);
	CHECK(bt_errmsg()[0] != 0);
}

TEST(test_describe)
{
	const char *s = bt_cpu_describe(cpu);
	fprintf(stderr, "     %s\n", s);
	CHECK(strncmp(s, "oneDNN v", 8) == 0);
}

int main(void)
{
	if (bt_cpu_new(&cpu, 0)) {
		fprintf(stderr, "bt_cpu_new: %s\n", bt_errmsg());
		return 1;
	}
	RUN(test_describe);
	RUN(test_conv_plain);
	RUN(test_conv_stride_pad);
	RUN(test_conv_dilation);
	RUN(test_conv_groups);
	RUN(test_conv_asymmetric_kernels);
	RUN(test_conv_winograd);
	RUN(test_conv_jit_choice);
	RUN(test_conv_post_ops);
	RUN(test_bn);
	RUN(test_pool_max);
	RUN(test_pool_avg);
	RUN(test_fc);
	RUN(test_cache);
	RUN(test_errors);
	bt_cpu_free(cpu);
	return test_summary();
}
