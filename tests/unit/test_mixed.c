/* test_mixed.c: mixed precision without a GPU. The host's reference conversions (float32
 * to and from float16 and bfloat16, which the CUDA cast kernel is compared against) are
 * checked bit for bit on hand-picked patterns (ties to even, the largest finite values,
 * subnormals, infinities, NaNs) and against an independent reference that finds the
 * nearest representable value by binary search over the sorted bit patterns; every half
 * pattern must survive the round trip. Then the loss scaler's rules (skip and halve on
 * overflow, double after 2000 good steps, the bounds, the restore checks), the CPU
 * backend's refusal of half types with the message bt-train shows, and its cast, overflow
 * check and unscaling SGD, which are the references for the CUDA backend's.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "backend.h"
#include "bt.h"
#include "graph.h"
#include "mixed.h"
#include "rng.h"
#include "run.h"
#include "test.h"

static float bits_f(uint32_t x)
{
	float f;
	memcpy(&f, &x, sizeof f);
	return f;
}

static uint32_t f_bits(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof x);
	return x;
}

/* ---- an independent reference: the nearest pattern by search ----------------------------- */

/* A 16-bit format: its positive finite patterns 0..maxfin sort like their values. */
struct fmt {
	float (*to_f32)(uint16_t);
	uint16_t maxfin, inf;
};

static float f16_val(uint16_t h) { return bt_f16_to_f32(h); }
static float bf16_val(uint16_t h) { return bt_bf16_to_f32(h); }
static const struct fmt F16 = { f16_val, 0x7bff, 0x7c00 };
static const struct fmt BF16 = { bf16_val, 0x7f7f, 0x7f80 };

/* Round to nearest, ties to the even pattern, in double: the largest pattern not above
 * |f|, or the one after it; past the largest finite value the one after is the infinity,
 * one unit of the last place above it. */
static uint16_t nearest(const struct fmt *t, float f)
{
	double a = fabs((double)f), lo_v, hi_v;
	uint16_t sign = signbit(f) ? 0x8000 : 0, lo = 0, hi = t->maxfin;
	if (isinf(f))
		return sign | t->inf;
	while (lo < hi) { /* the largest pattern whose value is <= a */
		uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
		if ((double)t->to_f32(mid) <= a)
			lo = mid;
		else
			hi = (uint16_t)(mid - 1);
	}
	lo_v = t->to_f32(lo);
	if (lo == t->maxfin)
		hi_v = lo_v + (lo_v - (double)t->to_f32((uint16_t)(lo - 1)));
	else
		hi_v = t->to_f32((uint16_t)(lo + 1));
	if (a - lo_v < hi_v - a || (a - lo_v == hi_v - a && !(lo & 1)))
		return sign | lo;
	return sign | (uint16_t)(lo + 1); /* lo + 1 past maxfin is the infinity */
}

/* ---- conversions ------------------------------------------------------------------------- */

TEST(dtype_names)
{
	CHECK_STR(bt_dtype_name(BT_DTYPE_F32), "float32");
	CHECK_STR(bt_dtype_name(BT_DTYPE_F16), "float16");
	CHECK_STR(bt_dtype_name(BT_DTYPE_BF16), "bfloat16");
	CHECK_EQ(bt_dtype_parse("float32"), BT_DTYPE_F32);
	CHECK_EQ(bt_dtype_parse("float16"), BT_DTYPE_F16);
	CHECK_EQ(bt_dtype_parse("bfloat16"), BT_DTYPE_BF16);
	CHECK_EQ(bt_dtype_parse("float64"), -1);
	CHECK_EQ(bt_dtype_parse(""), -1);
	CHECK_EQ(bt_dtype_size(BT_DTYPE_F32), 4);
	CHECK_EQ(bt_dtype_size(BT_DTYPE_F16), 2);
	CHECK_EQ(bt_dtype_size(BT_DTYPE_BF16), 2);
	CHECK_EQ(bt_dtype_size(3), 0);
}

TEST(bf16_patterns)
{
	static const struct { uint32_t f; uint16_t h; } cases[] = {
		{ 0x3f800000, 0x3f80 },  /* 1 */
		{ 0xbf800000, 0xbf80 },  /* -1 */
		{ 0x00000000, 0x0000 },  { 0x80000000, 0x8000 },  /* +-0 */
		{ 0x3f808000, 0x3f80 },  /* a tie: to the even 0x3f80 */
		{ 0x3f818000, 0x3f82 },  /* a tie: to the even 0x3f82 */
		{ 0x3f808001, 0x3f81 },  /* just above a tie */
		{ 0x3f817fff, 0x3f81 },  /* just below one */
		{ 0x7f7f7fff, 0x7f7f },  /* below the tie at the top: the largest finite */
		{ 0x7f7f8000, 0x7f80 },  /* the tie past the largest finite: to infinity (even) */
		{ 0x7f7fffff, 0x7f80 },  /* float32's largest rounds to infinity */
		{ 0xff7fffff, 0xff80 },
		{ 0x7f800000, 0x7f80 },  { 0xff800000, 0xff80 },  /* infinities */
		{ 0x00800000, 0x0080 },  /* the smallest normal */
		{ 0x00000001, 0x0000 },  /* the smallest subnormal rounds to 0 */
		{ 0x00008000, 0x0000 },  /* a subnormal tie, to even 0 */
		{ 0x00018000, 0x0002 },  /* a subnormal tie, to even 2 */
		{ 0x00008001, 0x0001 },
		{ 0x807fffff, 0x8080 },  /* the largest subnormal rounds up to the smallest normal */
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		uint16_t h = bt_f32_to_bf16(bits_f(cases[i].f));
		if (h != cases[i].h)
			fprintf(stderr, "  bf16(0x%08x) = 0x%04x, want 0x%04x\n", cases[i].f, h, cases[i].h);
		CHECK_EQ(h, cases[i].h);
		CHECK_EQ(h, nearest(&BF16, bits_f(cases[i].f)));
	}
	/* NaNs stay NaNs, quiet, with their sign; a signalling NaN whose payload is all in the
	 * dropped bits must not become an infinity. */
	CHECK_EQ(bt_f32_to_bf16(bits_f(0x7fc00000)), 0x7fc0);
	CHECK_EQ(bt_f32_to_bf16(bits_f(0xffc00000)), 0xffc0);
	CHECK_EQ(bt_f32_to_bf16(bits_f(0x7f800001)), 0x7fc0);
	CHECK_EQ(bt_f32_to_bf16(bits_f(0x7fa12345)), 0x7fe1);
}

TEST(f16_patterns)
{
	static const struct { uint32_t f; uint16_t h; } cases[] = {
		{ 0x3f800000, 0x3c00 },  /* 1 */
		{ 0x477fe000, 0x7bff },  /* 65504, the largest finite */
		{ 0x477fefff, 0x7bff },  /* just below the tie at 65520 */
		{ 0x477ff000, 0x7c00 },  /* 65520: the tie rounds to infinity (even) */
		{ 0x33800000, 0x0001 },  /* 2^-24, the smallest subnormal */
		{ 0x33000000, 0x0000 },  /* 2^-25, the tie below it, to even 0 */
		{ 0x33000001, 0x0001 },  /* just above it */
		{ 0x33c00000, 0x0002 },  /* 1.5 * 2^-24, a tie, to even 2 */
		{ 0x38800000, 0x0400 },  /* 2^-14, the smallest normal */
		{ 0x3f801000, 0x3c00 },  /* 1 + 2^-11, a tie, to even */
		{ 0x3f803000, 0x3c02 },  /* 1 + 3 * 2^-11, a tie, to even */
		{ 0x7f800000, 0x7c00 },  { 0xff800000, 0xfc00 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		uint16_t h = bt_f32_to_f16(bits_f(cases[i].f));
		if (h != cases[i].h)
			fprintf(stderr, "  f16(0x%08x) = 0x%04x, want 0x%04x\n", cases[i].f, h, cases[i].h);
		CHECK_EQ(h, cases[i].h);
		CHECK_EQ(h, nearest(&F16, bits_f(cases[i].f)));
	}
	CHECK((bt_f32_to_f16(bits_f(0x7f800001)) & 0x7c00) == 0x7c00 && (bt_f32_to_f16(bits_f(0x7f800001)) & 0x3ff));
}

/* Every one of the 65536 patterns of each type goes to float32 and back unchanged (a NaN to
 * a NaN). */
TEST(round_trips)
{
	for (uint32_t p = 0; p < 65536; p++) {
		uint16_t h = (uint16_t)p;
		float a = bt_bf16_to_f32(h), b = bt_f16_to_f32(h);
		if (isnan(a))
			CHECK(isnan(bt_bf16_to_f32(bt_f32_to_bf16(a))));
		else
			CHECK_EQ(bt_f32_to_bf16(a), h);
		if (isnan(b))
			CHECK(isnan(bt_f16_to_f32(bt_f32_to_f16(b))));
		else
			CHECK_EQ(bt_f32_to_f16(b), h);
		/* bfloat16 to float32 is a shift */
		CHECK_EQ(f_bits(a), (uint32_t)h << 16);
	}
}

/* Random float32 patterns over every exponent, against the search reference. */
TEST(random_against_reference)
{
	struct bt_rng r;
	int bad16 = 0, badbf = 0;
	bt_rng_seed(&r, 42);
	for (int i = 0; i < 300000; i++) {
		uint32_t x = (uint32_t)bt_rng_u64(&r);
		float f;
		if (i % 3 == 0) /* concentrate on float16's range, subnormals included */
			x = (x & 0x80000000u) | (0x30000000u + (x & 0x1fffffffu) % 0x18000000u);
		f = bits_f(x);
		if (isnan(f))
			continue;
		if (bt_f32_to_f16(f) != nearest(&F16, f) && bad16++ < 5)
			fprintf(stderr, "  f16(0x%08x) = 0x%04x, reference 0x%04x\n", x, bt_f32_to_f16(f),
				nearest(&F16, f));
		if (bt_f32_to_bf16(f) != nearest(&BF16, f) && badbf++ < 5)
			fprintf(stderr, "  bf16(0x%08x) = 0x%04x, reference 0x%04x\n", x, bt_f32_to_bf16(f),
				nearest(&BF16, f));
	}
	CHECK_EQ(bad16, 0);
	CHECK_EQ(badbf, 0);
}

/* ---- the loss scaler ---------------------------------------------------------------------- */

TEST(scaler_static)
{
	struct bt_loss_scaler s;
	for (int dt = BT_DTYPE_F32; dt <= BT_DTYPE_BF16; dt += 2) {
		bt_loss_scaler_init(&s, dt);
		CHECK(!s.dynamic && s.scale == 1.0);
		for (int i = 0; i < 5000; i++)
			CHECK_EQ(bt_loss_scaler_update(&s, i == 7), 1);
		CHECK(s.scale == 1.0);
		CHECK_EQ(s.skipped, 0);
		CHECK_EQ(bt_loss_scaler_set(&s, 1.0, 0, 0), BT_OK);
		CHECK_EQ(bt_loss_scaler_set(&s, 2.0, 0, 0), BT_ERR_INVALID);
	}
}

TEST(scaler_dynamic)
{
	struct bt_loss_scaler s;
	bt_loss_scaler_init(&s, BT_DTYPE_F16);
	CHECK(s.dynamic && s.scale == 65536.0 && s.good_steps == 0 && s.skipped == 0);
	/* overflow: skipped, halved */
	CHECK_EQ(bt_loss_scaler_update(&s, 1), 0);
	CHECK(s.scale == 32768.0);
	CHECK_EQ(s.skipped, 1);
	/* 1999 good steps: no growth; one overflow restarts the count */
	for (int i = 0; i < 1999; i++)
		CHECK_EQ(bt_loss_scaler_update(&s, 0), 1);
	CHECK(s.scale == 32768.0);
	CHECK_EQ(s.good_steps, 1999);
	CHECK_EQ(bt_loss_scaler_update(&s, 1), 0);
	CHECK(s.scale == 16384.0);
	CHECK_EQ(s.good_steps, 0);
	CHECK_EQ(s.skipped, 2);
	/* 2000 good steps in a row double it, and the count starts again */
	for (int i = 0; i < 1999; i++)
		CHECK_EQ(bt_loss_scaler_update(&s, 0), 1);
	CHECK(s.scale == 16384.0);
	CHECK_EQ(bt_loss_scaler_update(&s, 0), 1);
	CHECK(s.scale == 32768.0);
	CHECK_EQ(s.good_steps, 0);
	/* the floor: from 1, an overflow still skips but the scale stays 1 */
	for (int i = 0; i < 40; i++)
		CHECK_EQ(bt_loss_scaler_update(&s, 1), 0);
	CHECK(s.scale == BT_LOSS_SCALE_MIN);
	CHECK_EQ(s.skipped, 42);
	/* the ceiling */
	CHECK_EQ(bt_loss_scaler_set(&s, BT_LOSS_SCALE_MAX, BT_LOSS_SCALE_INTERVAL - 1, 42), BT_OK);
	CHECK_EQ(bt_loss_scaler_update(&s, 0), 1);
	CHECK(s.scale == BT_LOSS_SCALE_MAX);
	CHECK_EQ(s.good_steps, 0);
	/* restoring: powers of two in range, fewer steps than the interval */
	CHECK_EQ(bt_loss_scaler_set(&s, 1024.0, 17, 3), BT_OK);
	CHECK(s.scale == 1024.0 && s.good_steps == 17 && s.skipped == 3);
	CHECK_EQ(bt_loss_scaler_set(&s, 1000.0, 0, 0), BT_ERR_INVALID);
	CHECK_EQ(bt_loss_scaler_set(&s, 0.5, 0, 0), BT_ERR_INVALID);
	CHECK_EQ(bt_loss_scaler_set(&s, 2 * BT_LOSS_SCALE_MAX, 0, 0), BT_ERR_INVALID);
	CHECK_EQ(bt_loss_scaler_set(&s, 1024.0, BT_LOSS_SCALE_INTERVAL, 0), BT_ERR_INVALID);
	CHECK_EQ(bt_loss_scaler_set(&s, NAN, 0, 0), BT_ERR_INVALID);
	CHECK(s.scale == 1024.0); /* a refused state changes nothing */
}

/* ---- the CPU backend ---------------------------------------------------------------------- */

static struct bt_backend cpu;

TEST(cpu_refuses_float16)
{
	struct bt_conv_desc cd = { .n = 1, .h = 3, .w = 3, .c = 1, .oh = 3, .ow = 3, .cout = 1, .kh = 1,
				   .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1,
				   .dtype = BT_DTYPE_F16 };
	struct bt_bn_desc bd = { 1, 3, 3, 1, 1e-5f, 0.1f, BT_DTYPE_F16 };
	struct bt_pool_desc pd = { .n = 1, .h = 2, .w = 2, .c = 1, .oh = 1, .ow = 1, .kh = 2, .kw = 2,
				   .sh = 2, .sw = 2, .max = 0, .dtype = BT_DTYPE_F16 };
	struct bt_fc_desc fd = { 1, 2, 2, 0, BT_DTYPE_F16 };
	float buf[64] = { 0 }, g[9] = { 0 };
	const char *f16 = "float16 needs --device cuda: the CPU backend computes in float32 or bfloat16";

	CHECK_EQ(cpu.i->supports(cpu.ctx, BT_DTYPE_F32), 1);
	CHECK_EQ(cpu.i->supports(cpu.ctx, BT_DTYPE_F16), 0);
	/* bfloat16 wherever oneDNN has native kernels for it (tests/gpu/test_cuda --cpu tests it) */
	CHECK_EQ(cpu.i->supports(cpu.ctx, BT_DTYPE_BF16), bt_cpu_bf16(cpu.ctx));
	CHECK_EQ(cpu.i->conv_fwd(cpu.ctx, &cd, buf, buf, NULL, buf), BT_ERR_UNSUPPORTED);
	CHECK_STR(bt_errmsg(), f16);
	CHECK_EQ(cpu.i->conv_bwd_data(cpu.ctx, &cd, buf, buf, buf), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->conv_bwd_weights(cpu.ctx, &cd, buf, buf, g, NULL), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->bn_fwd_train(cpu.ctx, &bd, buf, g, g, g, g, g, g, buf), BT_ERR_UNSUPPORTED);
	CHECK_STR(bt_errmsg(), f16);
	CHECK_EQ(cpu.i->bn_fwd_infer(cpu.ctx, &bd, buf, g, g, g, g, buf), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->bn_bwd(cpu.ctx, &bd, buf, buf, g, g, g, buf, g, g), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->bn_add_relu_ok(cpu.ctx, &bd), 0);
	CHECK_EQ(cpu.i->pool_fwd(cpu.ctx, &pd, buf, buf, NULL), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->pool_bwd(cpu.ctx, &pd, buf, NULL, buf), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->fc_fwd(cpu.ctx, &fd, buf, buf, NULL, buf), BT_ERR_UNSUPPORTED);
	CHECK_STR(bt_errmsg(), f16);
	CHECK_EQ(cpu.i->fc_bwd(cpu.ctx, &fd, buf, buf, buf, buf, g, NULL), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->relu_fwd(cpu.ctx, BT_DTYPE_F16, buf, buf, 4), BT_ERR_UNSUPPORTED);
	CHECK_STR(bt_errmsg(), f16);
	CHECK_EQ(cpu.i->relu_bwd(cpu.ctx, BT_DTYPE_F16, buf, buf, buf, 4), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->add(cpu.ctx, BT_DTYPE_F16, buf, buf, buf, 4), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->accumulate(cpu.ctx, BT_DTYPE_F16, buf, buf, 4), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->copy(cpu.ctx, BT_DTYPE_F16, buf, buf + 8, 4), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->mul(cpu.ctx, BT_DTYPE_F16, buf, buf, buf, 4), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->gap_fwd(cpu.ctx, BT_DTYPE_F16, buf, buf, 1, 4, 1), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->gap_bwd(cpu.ctx, BT_DTYPE_F16, buf, buf, 1, 4, 1), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->concat_fwd(cpu.ctx, BT_DTYPE_F16, buf, buf + 8, 2, 1, 2, 0), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->concat_bwd(cpu.ctx, BT_DTYPE_F16, buf, buf + 8, 2, 1, 2, 0), BT_ERR_UNSUPPORTED);
	CHECK_EQ(cpu.i->dropout_fwd(cpu.ctx, BT_DTYPE_F16, buf, buf, buf, 4, 0.5f, 1), BT_ERR_UNSUPPORTED);
	/* and float32 still works through the same adapters */
	cd.dtype = BT_DTYPE_F32;
	CHECK_EQ(cpu.i->conv_fwd(cpu.ctx, &cd, buf, buf, NULL, buf + 16), BT_OK);
	CHECK_EQ(cpu.i->relu_fwd(cpu.ctx, BT_DTYPE_F32, buf, buf, 4), BT_OK);
}

TEST(run_refuses_float16_on_cpu)
{
	struct bt_graph g;
	struct bt_run *r = (struct bt_run *)1;
	bt_graph_init(&g);
	g.output = bt_fc(&g, bt_flatten(&g, bt_input(&g, 2, 2, 1)), "fc", 3, 1);
	CHECK_EQ(g.status, BT_OK);
	CHECK_EQ(bt_run_new_dtype(&r, &g, &cpu, 2, BT_DTYPE_F16), BT_ERR_UNSUPPORTED);
	CHECK(r == NULL);
	CHECK_STR(bt_errmsg(), "float16 needs --device cuda: the cpu backend does not compute in it here");
	CHECK_EQ(bt_run_new_dtype(&r, &g, &cpu, 2, 9), BT_ERR_INVALID);
	/* float32: a static scaler at 1 */
	CHECK_EQ(bt_run_new_dtype(&r, &g, &cpu, 2, BT_DTYPE_F32), BT_OK);
	CHECK_EQ(bt_run_dtype(r), BT_DTYPE_F32);
	CHECK(bt_run_loss_scale(r) == 1.0);
	CHECK_EQ(bt_run_skipped_steps(r), 0);
	CHECK(!bt_run_scaler(r)->dynamic);
	CHECK_EQ(bt_run_set_scaler(r, 1.0, 0, 0), BT_OK);
	CHECK_EQ(bt_run_set_scaler(r, 65536.0, 0, 0), BT_ERR_INVALID);
	bt_run_free(r);
	bt_graph_free(&g);
}

/* The CPU's cast is the reference conversions, element by element, in every direction. */
TEST(cpu_cast)
{
	enum { N = 4096 };
	float x[N], y[N];
	uint16_t h[N], h2[N];
	struct bt_rng r;
	bt_rng_seed(&r, 7);
	for (int i = 0; i < N; i++)
		x[i] = (float)((bt_rng_uniform(&r) * 2 - 1) * ldexp(1, (int)bt_rng_below(&r, 60) - 30));
	x[0] = INFINITY, x[1] = -INFINITY, x[2] = bits_f(0x7fc01234), x[3] = 70000.0f, x[4] = 1e-8f;
	x[5] = bits_f(0x00000001), x[6] = -0.0f;

	CHECK_EQ(cpu.i->cast(cpu.ctx, x, BT_DTYPE_F32, h, BT_DTYPE_F16, N, 1.0f), BT_OK);
	for (int i = 0; i < N; i++)
		CHECK_EQ(h[i], bt_f32_to_f16(x[i]));
	CHECK_EQ(cpu.i->cast(cpu.ctx, h, BT_DTYPE_F16, y, BT_DTYPE_F32, N, 1.0f), BT_OK);
	for (int i = 0; i < N; i++)
		CHECK(f_bits(y[i]) == f_bits(bt_f16_to_f32(h[i])));
	CHECK_EQ(cpu.i->cast(cpu.ctx, x, BT_DTYPE_F32, h, BT_DTYPE_BF16, N, 1.0f), BT_OK);
	for (int i = 0; i < N; i++)
		CHECK_EQ(h[i], bt_f32_to_bf16(x[i]));
	/* bfloat16 to float16 goes through float32 */
	CHECK_EQ(cpu.i->cast(cpu.ctx, h, BT_DTYPE_BF16, h2, BT_DTYPE_F16, N, 1.0f), BT_OK);
	for (int i = 0; i < N; i++)
		CHECK_EQ(h2[i], bt_f32_to_f16(bt_bf16_to_f32(h[i])));
	/* scaled: the product in float32, then rounded; 65536 sends large values to infinity */
	CHECK_EQ(cpu.i->cast(cpu.ctx, x, BT_DTYPE_F32, h, BT_DTYPE_F16, N, 65536.0f), BT_OK);
	for (int i = 0; i < N; i++)
		CHECK_EQ(h[i], bt_f32_to_f16(x[i] * 65536.0f));
	CHECK_EQ(h[3], 0x7c00);
	CHECK_EQ(cpu.i->cast(cpu.ctx, x, BT_DTYPE_F32, y, BT_DTYPE_F32, N, 0.5f), BT_OK);
	for (int i = 3; i < N; i++)
		CHECK(y[i] == x[i] * 0.5f);
	/* at scale 1 a float32 NaN keeps its bits */
	CHECK_EQ(cpu.i->cast(cpu.ctx, x, BT_DTYPE_F32, y, BT_DTYPE_F32, N, 1.0f), BT_OK);
	CHECK(memcmp(x, y, sizeof x) == 0);
	CHECK_EQ(cpu.i->cast(cpu.ctx, x, 5, y, BT_DTYPE_F32, N, 1.0f), BT_ERR_INVALID);
}

TEST(cpu_nonfinite)
{
	enum { N = 10007 };
	float *x = calloc(N, sizeof *x);
	int found = -1;
	CHECK(x);
	for (int i = 0; i < N; i++)
		x[i] = (float)i - 5000.0f;
	CHECK_EQ(cpu.i->nonfinite(cpu.ctx, x, N, &found), BT_OK);
	CHECK_EQ(found, 0);
	CHECK_EQ(cpu.i->nonfinite(cpu.ctx, x, 0, &found), BT_OK);
	CHECK_EQ(found, 0);
	x[N - 1] = INFINITY;
	CHECK_EQ(cpu.i->nonfinite(cpu.ctx, x, N, &found), BT_OK);
	CHECK_EQ(found, 1);
	x[N - 1] = 0;
	x[3] = NAN;
	CHECK_EQ(cpu.i->nonfinite(cpu.ctx, x, N, &found), BT_OK);
	CHECK_EQ(found, 1);
	x[3] = -FLT_MAX;
	CHECK_EQ(cpu.i->nonfinite(cpu.ctx, x, N, &found), BT_OK);
	CHECK_EQ(found, 0);
	free(x);
}

/* Unscaling in the update: gscale 1/S on S-times gradients is the update on the gradients
 * themselves, bit for bit when S is a power of two; gscale 1 is the plain update. */
TEST(cpu_sgd_unscales)
{
	enum { N = 1000 };
	static const struct bt_sgd_range rg[] = { { 0, 600, 1 }, { 600, 400, 0 } };
	float w1[N], w2[N], v1[N], v2[N], dw[N], dws[N];
	struct bt_rng r;
	bt_rng_seed(&r, 3);
	for (int i = 0; i < N; i++) {
		w1[i] = w2[i] = (float)(bt_rng_uniform(&r) - 0.5);
		v1[i] = v2[i] = (float)(bt_rng_uniform(&r) - 0.5);
		dw[i] = (float)(bt_rng_uniform(&r) - 0.5) * 1e-3f;
		dws[i] = dw[i] * 32768.0f;
	}
	CHECK_EQ(cpu.i->sgd(cpu.ctx, w1, dw, v1, rg, 2, 0.1f, 0.9f, 1e-4f, 1.0f), BT_OK);
	CHECK_EQ(cpu.i->sgd(cpu.ctx, w2, dws, v2, rg, 2, 0.1f, 0.9f, 1e-4f, 1.0f / 32768.0f), BT_OK);
	CHECK(memcmp(w1, w2, sizeof w1) == 0);
	CHECK(memcmp(v1, v2, sizeof v1) == 0);
}

int main(void)
{
	if (bt_backend_cpu(&cpu, 2) < 0) {
		fprintf(stderr, "test_mixed: %s\n", bt_errmsg());
		return 1;
	}
	RUN(dtype_names);
	RUN(bf16_patterns);
	RUN(f16_patterns);
	RUN(round_trips);
	RUN(random_against_reference);
	RUN(scaler_static);
	RUN(scaler_dynamic);
	RUN(cpu_refuses_float16);
	RUN(run_refuses_float16_on_cpu);
	RUN(cpu_cast);
	RUN(cpu_nonfinite);
	RUN(cpu_sgd_unscales);
	bt_backend_free(&cpu);
	return test_summary();
}
