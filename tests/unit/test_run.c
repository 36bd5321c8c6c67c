/* test_run.c: the executor over the CPU kernels: every parameter gradient of a small graph
 * with a residual addition, a concatenation, pooling, dropout off and batch norm, against
 * finite differences of the loss; label smoothing and soft targets against their formulas;
 * the initialisation rules; the SGD update formula; and a tiny model driving the loss on a
 * tiny batch close to 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt.h"
#include "backend.h"
#include "graph.h"
#include "rng.h"
#include "run.h"
#include "test.h"
#include "zoo.h"

static struct bt_backend be;

/* input 6x6x3 -> conv 4 -> bn -> relu -> {conv 4 (3x3), conv 2 (1x1)} -> concat(6) ...
 * plus a residual: relu + conv(3x3, 4) -> add -> maxpool -> gap -> fc(5). */
static int small_net(struct bt_graph *g, int classes)
{
	int x, a, b, c, d, cat, add, xs[2];
	bt_graph_init(g);
	x = bt_input(g, 6, 6, 3);
	a = bt_relu(g, bt_batchnorm(g, bt_conv(g, x, "c0", 4, 3, 1, 1), "bn0", 0, 0));
	b = bt_conv(g, a, "c1", 4, 3, 1, 1);
	c = bt_conv(g, a, "c2", 2, 1, 1, 0);
	xs[0] = b;
	xs[1] = c;
	cat = bt_concat(g, xs, 2);
	d = bt_conv(g, cat, "c3", 4, 1, 1, 0);
	add = bt_relu(g, bt_add(g, d, a));
	add = bt_avgpool(g, bt_maxpool(g, add, 2, 2, 0, 0), 3, 3, 1, 1, 1, 1, 0, 0);
	g->output = bt_fc(g, bt_flatten(g, bt_global_avgpool(g, add)), "fc", classes, 1);
	return g->status;
}

static void fill(float *p, size_t n, uint64_t seed, float scale)
{
	struct bt_rng r;
	bt_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)((bt_rng_uniform(&r) * 2 - 1) * scale);
}

static double loss_at(struct bt_run *r, const float *x, int n, const int32_t *labels, float eps)
{
	double l = 0;
	if (bt_run_forward(r, x, n, 1, 0) < 0 || bt_run_loss(r, labels, NULL, eps, 1, &l) < 0)
		return NAN;
	return l;
}

/* Residual additions in the shapes the gradient planner treats apart: an identity
 * shortcut (both inputs share the sum's gradient), an addition whose other input is read
 * again later (no sharing), and an addition of an addition (whose gradient must not be
 * shared: the inner addition hands it on to its own inputs). No ReLU, so that the loss is
 * smooth and finite differences are exact up to rounding. Input 6x6x3, like small_net. */
static int residual_net(struct bt_graph *g, int classes)
{
	int x, a, b, s1, s2, s3, s4;
	bt_graph_init(g);
	x = bt_input(g, 6, 6, 3);
	a = bt_conv(g, x, "a", 4, 3, 1, 1);
	b = bt_batchnorm(g, bt_conv(g, a, "b", 4, 3, 1, 1), "b_bn", 0, 0);
	s1 = bt_add(g, b, a);
	s2 = bt_add(g, bt_batchnorm(g, bt_conv(g, s1, "c", 4, 3, 1, 1), "c_bn", 0, 0), s1);
	s3 = bt_add(g, bt_conv(g, a, "d", 4, 1, 1, 0), s2);
	s4 = bt_add(g, s3, bt_add(g, s1, bt_conv(g, s3, "e", 4, 1, 1, 0)));
	g->output = bt_fc(g, bt_flatten(g, bt_global_avgpool(g, s4)), "fc", classes, 1);
	return g->status;
}

static void fd_check(int (*net)(struct bt_graph *, int))
{
	struct bt_graph g;
	struct bt_run *r;
	float x[4 * 6 * 6 * 3];
	int32_t labels[4] = {0, 3, 4, 1};
	double l0;
	int checked = 0, bad = 0;
	CHECK_EQ(net(&g, 5), BT_OK);
	CHECK_EQ(bt_run_new(&r, &g, &be, 4), BT_OK);
	bt_run_init_params(r, 1, 0);
	fill(x, sizeof x / sizeof *x, 2, 1.0f);
	l0 = loss_at(r, x, 4, labels, 0.1f);
	CHECK(isfinite(l0));
	CHECK_EQ(bt_run_backward(r), BT_OK);
	{
		float *w = bt_run_params(r), *dw = bt_run_grads(r);
		float *gsave = malloc(g.nfloats * sizeof(float));
		memcpy(gsave, dw, g.nfloats * sizeof(float));
		for (int pi = 0; pi < g.nparams; pi++) {
			const struct bt_param *p = &g.params[pi];
			if (!p->trainable)
				continue;
			/* a few elements of every trainable tensor */
			for (size_t k = 0; k < p->count; k += p->count / 3 + 1) {
				size_t at = p->offset + k;
				float keep = w[at], h = 1e-2f;
				double lp, lm, fd, an;
				w[at] = keep + h;
				lp = loss_at(r, x, 4, labels, 0.1f);
				w[at] = keep - h;
				lm = loss_at(r, x, 4, labels, 0.1f);
				w[at] = keep;
				fd = (lp - lm) / (2 * h);
				an = gsave[at];
				checked++;
				if (fabs(fd - an) > 2e-3 + 3e-2 * fabs(fd)) {
					bad++;
					fprintf(stderr, "  %s[%zu]: finite difference %.6f, backward %.6f\n", p->name, k, fd, an);
				}
			}
		}
		free(gsave);
	}
	CHECK(checked >= 20);
	CHECK_EQ(bad, 0);
	bt_run_free(r);
	bt_graph_free(&g);
}

TEST(gradients_match_finite_differences)
{
	fd_check(small_net);
	fd_check(residual_net);
}

TEST(label_smoothing_and_soft_targets)
{
	struct bt_graph g;
	struct bt_run *r;
	float x[2 * 4];
	int32_t labels[2] = {2, 0};
	float soft[2 * 4] = {0.25f, 0.25f, 0.25f, 0.25f, 0, 0.5f, 0.5f, 0};
	double l;
	int xin;
	bt_graph_init(&g);
	xin = bt_input(&g, 1, 1, 4);
	g.output = bt_flatten(&g, xin);
	CHECK_EQ(bt_run_new(&r, &g, &be, 2), BT_OK);
	/* logits are the inputs themselves */
	for (int i = 0; i < 8; i++)
		x[i] = (float)(i % 4) * 0.5f - (i / 4);
	CHECK_EQ(bt_run_forward(r, x, 2, 1, 0), BT_OK);
	CHECK_EQ(bt_run_loss(r, labels, NULL, 0.3f, 1, &l), BT_OK);
	{
		/* the paper: 1 - eps on the true class, eps / (K - 1) elsewhere */
		double want = 0;
		for (int m = 0; m < 2; m++) {
			double lse = 0;
			for (int k = 0; k < 4; k++)
				lse += exp(x[m * 4 + k]);
			lse = log(lse);
			for (int k = 0; k < 4; k++)
				want -= (k == labels[m] ? 0.7 : 0.1) * (x[m * 4 + k] - lse);
		}
		CHECK(fabs(l - want / 2) < 1e-6);
	}
	CHECK_EQ(bt_run_loss(r, NULL, soft, 0, 2.0f, &l), BT_OK);
	{
		double want = 0;
		for (int m = 0; m < 2; m++) {
			double lse = 0;
			for (int k = 0; k < 4; k++)
				lse += exp(x[m * 4 + k] / 2);
			lse = log(lse);
			for (int k = 0; k < 4; k++)
				want -= soft[m * 4 + k] * (x[m * 4 + k] / 2 - lse);
		}
		CHECK(fabs(l - want / 2) < 1e-6);
	}
	labels[1] = 7;
	CHECK_EQ(bt_run_loss(r, labels, NULL, 0, 1, &l), BT_ERR_INVALID);
	bt_run_free(r);
	bt_graph_free(&g);
}

TEST(init_rules)
{
	struct bt_graph g;
	struct bt_run *r;
	int x, c, bn, f;
	bt_graph_init(&g);
	x = bt_input(&g, 8, 8, 3);
	c = bt_conv(&g, x, "c", 16, 3, 1, 1);
	bn = bt_batchnorm(&g, c, "bn", 0, 0);
	bt_mark_last_bn(&g, bn);
	f = bt_fc(&g, bt_flatten(&g, bt_global_avgpool(&g, bn)), "fc", 10, 1);
	g.output = f;
	CHECK_EQ(bt_run_new(&r, &g, &be, 1), BT_OK);
	bt_run_init_params(r, 5, 1);
	{
		const float *w = bt_run_params(r);
		const struct bt_param *pw = &g.params[g.nodes[c].param[0]];
		double a = sqrt(6.0 / (27 + 16 * 9)), mx = 0;
		for (size_t k = 0; k < pw->count; k++)
			mx = fmax(mx, fabs(w[pw->offset + k]));
		CHECK(mx <= a && mx > 0.8 * a);
		CHECK(w[g.params[g.nodes[bn].param[0]].offset] == 0.0f); /* zero gamma */
		CHECK(w[g.params[g.nodes[bn].param[3]].offset] == 1.0f); /* running var */
		CHECK(w[g.params[g.nodes[f].param[1]].offset] == 0.0f);  /* bias */
	}
	bt_run_init_params(r, 5, 0);
	CHECK(bt_run_params(r)[g.params[g.nodes[bn].param[0]].offset] == 1.0f);
	bt_run_free(r);
	bt_graph_free(&g);
}

TEST(sgd_formula)
{
	struct bt_graph g;
	struct bt_run *r;
	int x, f;
	bt_graph_init(&g);
	x = bt_input(&g, 1, 1, 2);
	f = bt_fc(&g, x, "fc", 2, 1);
	g.output = f;
	CHECK_EQ(bt_run_new(&r, &g, &be, 1), BT_OK);
	{
		float *w = bt_run_params(r), *dw = bt_run_grads(r), *v = bt_run_momentum(r);
		size_t wo = g.params[g.nodes[f].param[0]].offset, bo = g.params[g.nodes[f].param[1]].offset;
		w[wo] = 1.0f;
		dw[wo] = 0.5f;
		v[wo] = 0.2f;
		w[bo] = 1.0f;
		dw[bo] = 0.5f;
		v[bo] = 0.2f;
		bt_run_sgd(r, 0.1f, 0.9f, 0.01f, 1);
		/* weight: g = 0.5 + 0.01; v = 0.18 + 0.51 = 0.69; w = 1 - 0.1 (0.51 + 0.621) */
		CHECK(fabs(v[wo] - 0.69f) < 1e-6);
		CHECK(fabs(w[wo] - (1 - 0.1f * (0.51f + 0.9f * 0.69f))) < 1e-6);
		/* bias, no decay: g = 0.5; v = 0.68; w = 1 - 0.1 (0.5 + 0.612) */
		CHECK(fabs(w[bo] - (1 - 0.1f * (0.5f + 0.9f * 0.68f))) < 1e-6);
	}
	bt_run_free(r);
	bt_graph_free(&g);
}

TEST(tiny_model_fits_a_tiny_batch)
{
	struct bt_graph g;
	struct bt_run *r;
	float x[8 * 6 * 6 * 3];
	int32_t labels[8] = {0, 1, 2, 3, 4, 0, 1, 2};
	double first = 0, l = 0;
	CHECK_EQ(small_net(&g, 5), BT_OK);
	CHECK_EQ(bt_run_new(&r, &g, &be, 8), BT_OK);
	bt_run_init_params(r, 3, 0);
	fill(x, sizeof x / sizeof *x, 4, 1.0f);
	for (int step = 0; step < 300; step++) {
		CHECK_EQ(bt_run_forward(r, x, 8, 1, (uint64_t)step), BT_OK);
		CHECK_EQ(bt_run_loss(r, labels, NULL, 0, 1, &l), BT_OK);
		if (step == 0)
			first = l;
		CHECK_EQ(bt_run_backward(r), BT_OK);
		bt_run_sgd(r, 0.1f, 0.9f, 0, 0);
	}
	fprintf(stderr, "  loss %.4f -> %.4f\n", first, l);
	CHECK(first > 1.0);
	CHECK(l < 0.05);
	bt_run_free(r);
	bt_graph_free(&g);
}

/* Inference with batch norms folded into the convolutions gives the unfused logits. */
static void folded_check(int (*net)(struct bt_graph *, int))
{
	struct bt_graph g;
	struct bt_run *r;
	float x[4 * 6 * 6 * 3], plain[4 * 5];
	int32_t labels[4] = {0, 1, 2, 3};
	double l;
	CHECK_EQ(net(&g, 5), BT_OK);
	CHECK_EQ(bt_run_new(&r, &g, &be, 4), BT_OK);
	bt_run_init_params(r, 11, 0);
	fill(x, sizeof x / sizeof *x, 12, 1.0f);
	/* a few training steps so that running statistics and gammas are not trivial */
	for (int s = 0; s < 5; s++) {
		CHECK_EQ(bt_run_forward(r, x, 4, 1, 0), BT_OK);
		CHECK_EQ(bt_run_loss(r, labels, NULL, 0, 1, &l), BT_OK);
		CHECK_EQ(bt_run_backward(r), BT_OK);
		bt_run_sgd(r, 0.1f, 0.9f, 0, 0);
	}
	bt_run_fuse(r, 0);
	CHECK_EQ(bt_run_forward(r, x, 4, 0, 0), BT_OK);
	memcpy(plain, bt_run_logits(r), sizeof plain);
	/* other values through every buffer first, so that stale ones cannot pass */
	for (size_t i = 0; i < sizeof x / sizeof *x; i++)
		x[i] = -x[i];
	CHECK_EQ(bt_run_forward(r, x, 4, 0, 0), BT_OK);
	for (size_t i = 0; i < sizeof x / sizeof *x; i++)
		x[i] = -x[i];
	bt_run_fuse(r, 1);
	CHECK_EQ(bt_run_forward(r, x, 4, 0, 0), BT_OK);
	for (int i = 0; i < 20; i++)
		CHECK(fabsf(bt_run_logits(r)[i] - plain[i]) <= 1e-4f + 1e-4f * fabsf(plain[i]));
	bt_run_free(r);
	bt_graph_free(&g);
}

TEST(folded_inference_matches)
{
	folded_check(small_net);
	folded_check(residual_net);
}

/* Fused inference (folded batch norms, ReLUs and residual additions done by the
 * convolutions) gives the unfused logits on zoo models with identity and downsampling
 * shortcuts, and a training pass after it is bit for bit what it is after an unfused one. */
TEST(fused_inference_matches_on_zoo_models)
{
	static const struct { const char *name; int size, fused; } m[] = {
		/* fused: nodes left out, 3 per block plus the stem's batch norm and ReLU at least */
		{ "cifar_resnet20_v1", 16, 2 + 9 * 5 },
		{ "resnet18_v1", 32, 2 + 8 * 5 },
		{ "resnet50_v1b", 32, 2 + 16 * 6 },
		{ "resnet18_v1d", 32, 2 + 8 * 5 },
		{ "mobilenet0.25", 32, 2 * 27 },
	};
	for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
		struct bt_model_opts o = { .classes = 7, .in_channels = 3, .input_size = m[k].size };
		struct bt_graph g;
		struct bt_run *r;
		int32_t labels[2] = { 1, 5 };
		size_t nx = 2 * (size_t)m[k].size * m[k].size * 3;
		float *x = malloc(nx * sizeof *x), plain[14], train1[14];
		double l, err = 0;
		CHECK(x != NULL);
		bt_model_defaults(m[k].name, &o);
		bt_graph_init(&g);
		CHECK_EQ(bt_model_build(&g, m[k].name, &o), BT_OK);
		CHECK_EQ(bt_run_new(&r, &g, &be, 2), BT_OK);
		bt_run_init_params(r, 5, 0); /* gamma 1 everywhere: the residual branches count */
		fill(x, nx, 6, 1.0f);
		/* running statistics away from their initial values, and weights moved once */
		for (int s = 0; s < 10; s++)
			CHECK_EQ(bt_run_forward(r, x, 2, 1, 0), BT_OK);
		CHECK_EQ(bt_run_loss(r, labels, NULL, 0, 1, &l), BT_OK);
		CHECK_EQ(bt_run_backward(r), BT_OK);
		/* A step that moves no weight by more than 0.019 (Nesterov: 1.9 times the rate
		 * times the gradient on a first step). A fixed rate would not do: with
		 * gamma 1 everywhere, batch norm over 2 images of 1x1 in resnet50_v1b's last stage
		 * gives gradients up to 1e9, and which way rounding tips them (Winograd or not, 1
		 * thread or 2) decides whether the next pass overflows. */
		{
			const float *gr = bt_run_grads(r);
			float most = 0;
			for (size_t i = 0; i < g.nfloats; i++)
				most = fabsf(gr[i]) > most ? fabsf(gr[i]) : most;
			CHECK(isfinite(most) && most > 0);
			bt_run_sgd(r, 0.01f / most, 0.9f, 0, 0);
		}
		fprintf(stderr, "  %s: %d nodes fused\n", m[k].name, bt_run_fused_nodes(r));
		CHECK(bt_run_fused_nodes(r) >= m[k].fused);
		bt_run_fuse(r, 0);
		CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
		memcpy(plain, bt_run_logits(r), sizeof plain);
		/* another batch through every buffer first, so that a node the fused pass fails
		 * to write cannot pass on the unfused pass's values */
		for (size_t i = 0; i < nx; i++)
			x[i] = -x[i];
		CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
		for (size_t i = 0; i < nx; i++)
			x[i] = -x[i];
		bt_run_fuse(r, 1);
		CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
		for (int i = 0; i < 14; i++) {
			CHECK(isfinite(plain[i]));
			double e = fabs(bt_run_logits(r)[i] - plain[i]) / (1e-3 + fabs(plain[i]));
			err = e > err ? e : err;
		}
		fprintf(stderr, "  %s: fused against unfused logits, largest relative error %.2e\n",
			m[k].name, err);
		/* 5e-4, not float32's 1e-5: on AVX-512, 3x3 convolutions of 64 channels and up run
		 * Winograd (lib/cpu.c) except where a residual sum is fused, so the two passes
		 * round differently through 8 to 16 layers (6.4e-5 seen); a fused node gone wrong
		 * is off by far more. */
		CHECK(err < 5e-4);
		/* training output does not depend on the running statistics it updates */
		CHECK_EQ(bt_run_forward(r, x, 2, 1, 0), BT_OK);
		memcpy(train1, bt_run_logits(r), sizeof train1);
		bt_run_fuse(r, 0);
		CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
		CHECK_EQ(bt_run_forward(r, x, 2, 1, 0), BT_OK);
		CHECK(memcmp(bt_run_logits(r), train1, sizeof train1) == 0);
		bt_run_free(r);
		bt_graph_free(&g);
		free(x);
	}
}

/* A zoo model with 7 classes, 3 input channels and the given input size. */
static int zoo_graph(struct bt_graph *g, const char *name, int size)
{
	struct bt_model_opts o = { .classes = 7, .in_channels = 3, .input_size = size };
	bt_model_defaults(name, &o);
	o.classes = 7;
	o.in_channels = 3;
	o.input_size = size;
	bt_graph_init(g);
	return bt_model_build(g, name, &o);
}

/* Inference in buffers shared by lifetime gives the very logits of inference in each
 * node's own buffer, fused and unfused, on models with residual additions, downsampling
 * shortcuts, depthwise convolutions and concatenations; a training pass after it is the
 * same as after an unshared one. */
TEST(shared_inference_same_bits)
{
	static const struct { const char *name; int size; } m[] = {
		{ "cifar_resnet20_v1", 16 }, { "resnet50_v1b", 32 }, { "resnet18_v1d", 32 },
		{ "mobilenet0.25", 32 }, { "inceptionv3", 75 },
	};
	for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
		struct bt_graph g;
		struct bt_run *r;
		size_t nx = 2 * (size_t)m[k].size * m[k].size * 3;
		float *x = malloc(nx * sizeof *x), own[14], train1[14];
		CHECK(x != NULL);
		CHECK_EQ(zoo_graph(&g, m[k].name, m[k].size), BT_OK);
		CHECK_EQ(bt_run_new(&r, &g, &be, 2), BT_OK);
		bt_run_init_params(r, 7, 0);
		fill(x, nx, 8, 1.0f);
		for (int s = 0; s < 3; s++) /* running statistics away from 0 and 1 */
			CHECK_EQ(bt_run_forward(r, x, 2, 1, 0), BT_OK);
		for (int fuse = 0; fuse < 2; fuse++) {
			bt_run_fuse(r, fuse);
			bt_run_share_inference(r, 0);
			CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
			memcpy(own, bt_run_logits(r), sizeof own);
			bt_run_share_inference(r, 1);
			for (size_t i = 0; i < nx; i++) /* other values through every buffer first */
				x[i] = -x[i];
			CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
			for (size_t i = 0; i < nx; i++)
				x[i] = -x[i];
			CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
			for (int i = 0; i < 14; i++)
				CHECK(isfinite(own[i]));
			CHECK(memcmp(bt_run_logits(r), own, sizeof own) == 0);
		}
		bt_run_share_inference(r, 0);
		CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
		CHECK_EQ(bt_run_forward(r, x, 2, 1, 0), BT_OK);
		memcpy(train1, bt_run_logits(r), sizeof train1);
		bt_run_share_inference(r, 1);
		CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
		CHECK_EQ(bt_run_forward(r, x, 2, 1, 0), BT_OK);
		CHECK(memcmp(bt_run_logits(r), train1, sizeof train1) == 0);
		fprintf(stderr, "  %s: shared inference buffers, same logits fused and unfused\n", m[k].name);
		bt_run_free(r);
		bt_graph_free(&g);
		free(x);
	}
}

/* Models for the inference tests below: residual, downsampling, depthwise, concatenating. */
static const struct { const char *name; int size; } infer_models[] = {
	{ "cifar_resnet20_v1", 16 }, { "resnet50_v1b", 32 }, { "mobilenet0.25", 32 }, { "inceptionv3", 75 },
};

/* r's parameters after three training passes on x (n images; running statistics away from
 * 0 and 1), in *p (malloc'd), and copied into `to` (NULL-terminated). */
static int trained_params(struct bt_run *r, const float *x, int n, size_t nfloats, float **p,
			  struct bt_run **to)
{
	int st = BT_OK;
	for (int s = 0; s < 3 && st == BT_OK; s++)
		st = bt_run_forward(r, x, n, 1, 0);
	if (st == BT_OK && !(*p = malloc(nfloats * sizeof **p)))
		st = BT_ERR_NOMEM;
	if (st == BT_OK)
		st = bt_run_read_state(r, *p, NULL);
	for (; st == BT_OK && *to; to++)
		st = bt_run_write_state(*to, *p, NULL);
	return st;
}

/* A run made for inference only gives the logits of a training run's inference pass, fused
 * and unfused, in far less memory, and refuses to train. */
TEST(inference_only_run)
{
	for (size_t k = 0; k < sizeof infer_models / sizeof *infer_models; k++) {
		const char *name = infer_models[k].name;
		const int size = infer_models[k].size;
		struct bt_graph g;
		struct bt_run *r, *e;
		size_t nx = 2 * (size_t)size * size * 3;
		float *x = malloc(nx * sizeof *x), *p = NULL, want[14];
		int32_t labels[2] = { 1, 2 };
		size_t bytes_r, bytes_e;
		double l;
		CHECK(x != NULL);
		CHECK_EQ(zoo_graph(&g, name, size), BT_OK);
		CHECK_EQ(bt_run_new(&r, &g, &be, 2), BT_OK);
		CHECK_EQ(bt_run_new_inference(&e, &g, &be, 2, BT_DTYPE_F32), BT_OK);
		/* as made (the folded weights come later, with the first inference pass) */
		bytes_r = bt_run_activation_bytes(r);
		bytes_e = bt_run_activation_bytes(e);
		bt_run_init_params(r, 9, 0);
		fill(x, nx, 10, 1.0f);
		CHECK_EQ(trained_params(r, x, 2, g.nfloats, &p, (struct bt_run *[]){ e, NULL }), BT_OK);
		for (int fuse = 0; fuse < 2; fuse++) {
			bt_run_fuse(r, fuse);
			bt_run_fuse(e, fuse);
			CHECK_EQ(bt_run_forward(r, x, 2, 0, 0), BT_OK);
			memcpy(want, bt_run_logits(r), sizeof want);
			CHECK_EQ(bt_run_forward(e, x, 2, 0, 0), BT_OK);
			CHECK(memcmp(bt_run_logits(e), want, sizeof want) == 0);
		}
		fprintf(stderr, "  %s: inference-only run %zu bytes of activations, training run %zu\n",
			name, bytes_e, bytes_r);
		CHECK(4 * bytes_e < bytes_r);
		CHECK_EQ(bt_run_forward(e, x, 2, 1, 0), BT_ERR_INVALID);
		CHECK_EQ(bt_run_loss(e, labels, NULL, 0, 1, &l), BT_ERR_INVALID);
		CHECK_EQ(bt_run_backward(e), BT_ERR_INVALID);
		CHECK_EQ(bt_run_sgd(e, 0.1f, 0.9f, 0, 0), BT_ERR_INVALID);
		CHECK_EQ(bt_run_read_state(e, NULL, p), BT_ERR_INVALID);
		free(p);
		bt_run_free(e);
		bt_run_free(r);
		bt_graph_free(&g);
		free(x);
	}
}

/* Inference in slices of the batch (the CPU backend's infer_slice_bytes; BT_INFER_SLICE
 * sets the images of a slice) gives the whole batch's logits, up to the convolutions'
 * rounding at another batch size, fused and unfused, in training and inference-only runs. */
TEST(sliced_inference_matches)
{
	for (size_t k = 0; k < sizeof infer_models / sizeof *infer_models; k++) {
		const char *name = infer_models[k].name;
		const int size = infer_models[k].size;
		struct bt_graph g;
		struct bt_run *r, *sl, *e;
		size_t nx = 5 * (size_t)size * size * 3;
		float *x = malloc(nx * sizeof *x), *p = NULL, want[35];
		double err = 0;
		CHECK(x != NULL);
		CHECK_EQ(zoo_graph(&g, name, size), BT_OK);
		CHECK_EQ(bt_run_new(&r, &g, &be, 5), BT_OK);
		setenv("BT_INFER_SLICE", "2", 1); /* slices of 2, 2 and 1 */
		CHECK_EQ(bt_run_new(&sl, &g, &be, 5), BT_OK);
		CHECK_EQ(bt_run_new_inference(&e, &g, &be, 5, BT_DTYPE_F32), BT_OK);
		unsetenv("BT_INFER_SLICE");
		bt_run_init_params(r, 13, 0);
		fill(x, nx, 14, 1.0f);
		CHECK_EQ(trained_params(r, x, 5, g.nfloats, &p, (struct bt_run *[]){ sl, e, NULL }), BT_OK);
		for (int fuse = 0; fuse < 2; fuse++) {
			struct bt_run *runs[2] = { sl, e };
			bt_run_fuse(r, fuse);
			CHECK_EQ(bt_run_forward(r, x, 5, 0, 0), BT_OK);
			memcpy(want, bt_run_logits(r), sizeof want);
			for (int q = 0; q < 2; q++) {
				bt_run_fuse(runs[q], fuse);
				CHECK_EQ(bt_run_forward(runs[q], x, 5, 0, 0), BT_OK);
				for (int i = 0; i < 35; i++) {
					double d = fabs(bt_run_logits(runs[q])[i] - want[i]) / (1e-3 + fabs(want[i]));
					CHECK(isfinite(want[i]));
					err = d > err ? d : err;
				}
			}
		}
		/* and a training pass after a sliced one is the whole batch's */
		CHECK_EQ(bt_run_forward(sl, x, 5, 1, 0), BT_OK);
		CHECK_EQ(bt_run_forward(r, x, 5, 1, 0), BT_OK);
		CHECK(memcmp(bt_run_logits(sl), bt_run_logits(r), sizeof want) == 0);
		fprintf(stderr, "  %s: sliced inference against whole, largest relative error %.2e\n", name, err);
		CHECK(err < 1e-4);
		free(p);
		bt_run_free(e);
		bt_run_free(sl);
		bt_run_free(r);
		bt_graph_free(&g);
		free(x);
	}
}

/* bt_run_bytes is what bt_run_new allocates: a backend that forwards to the CPU's and sums
 * what it hands out gives the same count; bt_run_batch_fitting finds the exact edge. */
static struct bt_backend_i counted_i;
static size_t counted;

static int counted_alloc(void *ctx, size_t bytes, void **p)
{
	counted += bytes;
	return be.i->alloc(ctx, bytes, p);
}

TEST(memory_estimate)
{
	static const char *const names[] = { "cifar_resnet20_v1", "resnet18_v1d", "mobilenet0.25" };
	struct bt_backend cb;
	counted_i = *be.i;
	counted_i.alloc = counted_alloc;
	cb.i = &counted_i;
	cb.ctx = be.ctx;
	for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
		struct bt_model_opts o = { .classes = 10, .in_channels = 3, .input_size = 32 };
		struct bt_graph g;
		struct bt_run *r;
		size_t est = 0, e8 = 0, e9 = 0;
		bt_graph_init(&g);
		CHECK_EQ(bt_model_build(&g, names[k], &o), BT_OK);
		for (int batch = 1; batch <= 16; batch *= 4) {
			counted = 0;
			CHECK_EQ(bt_run_bytes(&g, &be, batch, BT_DTYPE_F32, &est), BT_OK);
			CHECK_EQ(bt_run_new(&r, &g, &cb, batch), BT_OK);
			fprintf(stderr, "  %s batch %d: estimate %zu bytes, allocated %zu\n", names[k], batch,
				est, counted);
			CHECK_EQ(est, counted);
			CHECK(bt_run_activation_bytes(r) < counted);
			bt_run_free(r);
		}
		CHECK_EQ(bt_run_bytes(&g, &be, 8, BT_DTYPE_F32, &e8), BT_OK);
		CHECK_EQ(bt_run_bytes(&g, &be, 9, BT_DTYPE_F32, &e9), BT_OK);
		CHECK(e9 > e8);
		CHECK_EQ(bt_run_batch_fitting(&g, &be, BT_DTYPE_F32, e8, 100), 8);
		CHECK_EQ(bt_run_batch_fitting(&g, &be, BT_DTYPE_F32, e9 - 1, 100), 8);
		CHECK_EQ(bt_run_batch_fitting(&g, &be, BT_DTYPE_F32, e9, 100), 9);
		CHECK_EQ(bt_run_batch_fitting(&g, &be, BT_DTYPE_F32, e9, 5), 5);
		CHECK_EQ(bt_run_batch_fitting(&g, &be, BT_DTYPE_F32, 1000, 100), 0);
		bt_graph_free(&g);
	}
}

/* Training with each batch norm and the ReLU after it fused (the backend's bn_relu_*)
 * follows the unfused computation: the same losses and parameters after a few SGD steps. */
TEST(fused_training_matches)
{
	struct bt_model_opts o = { .classes = 7, .in_channels = 3, .input_size = 16 };
	struct bt_graph g;
	struct bt_run *r[2];
	int32_t labels[4] = { 1, 5, 0, 6 };
	float x[4 * 16 * 16 * 3];
	double l[2], err = 0;
	bt_graph_init(&g);
	CHECK_EQ(bt_model_build(&g, "cifar_resnet20_v1", &o), BT_OK);
	fill(x, sizeof x / sizeof *x, 31, 1.0f);
	for (int k = 0; k < 2; k++) {
		CHECK_EQ(bt_run_new(&r[k], &g, &be, 4), BT_OK);
		bt_run_init_params(r[k], 32, 0);
		bt_run_fuse(r[k], k);
	}
	for (int s = 0; s < 4; s++) {
		for (int k = 0; k < 2; k++) {
			CHECK_EQ(bt_run_forward(r[k], x, 4, 1, 0), BT_OK);
			CHECK_EQ(bt_run_loss(r[k], labels, NULL, 0.1f, 1, &l[k]), BT_OK);
			CHECK_EQ(bt_run_backward(r[k]), BT_OK);
			bt_run_sgd(r[k], 0.05f, 0.9f, 1e-4f, 1);
		}
		CHECK(fabs(l[0] - l[1]) <= 1e-5 * fabs(l[0]));
	}
	for (size_t i = 0; i < g.nfloats; i++) {
		double a = bt_run_params(r[0])[i], b = bt_run_params(r[1])[i];
		double e = fabs(a - b) / (1e-3 + fabs(a));
		err = e > err ? e : err;
	}
	fprintf(stderr, "  batch norm + ReLU and batch norm + add + ReLU fused against unfused: loss %.6f / "
		"%.6f, parameters %.2e; %d nodes left out\n", l[0], l[1], err, bt_run_fused_train_nodes(r[1]));
	CHECK(err < 1e-4);
	/* 19 batch norms (stem, 2 a block, the 2 downsampling shortcuts'), 19 ReLUs: the stem's
	 * and each block's first ReLU done by their batch norms (10), each block's last batch
	 * norm and ReLU by its addition (18) */
	CHECK_EQ(bt_run_fused_train_nodes(r[1]), 28);
	CHECK_EQ(bt_run_fused_train_nodes(r[0]), 28); /* planned alike; bt_run_fuse(r, 0) skips it */
	bt_run_free(r[0]);
	bt_run_free(r[1]);
	bt_graph_free(&g);
}

/* The CPU's batch norm + addition + ReLU: bit for bit the three ops one after another, and
 * y may be neither x nor z. */
TEST(bn_add_relu_slot)
{
	struct bt_bn_desc d = { 2, 3, 5, 8, 1e-5f, 0.1f, BT_DTYPE_F32 };
	size_t n = (size_t)d.n * d.h * d.w * d.c;
	float x[240], z[240], y[240], y2[240], g[8], bt[8], rm[2][8], rv[2][8], sm[2][8], si[2][8];
	CHECK(be.i->bn_add_relu_ok && be.i->bn_add_relu_fwd_train);
	CHECK_EQ(be.i->bn_add_relu_ok(be.ctx, &d), 1);
	fill(x, n, 41, 2.0f);
	fill(z, n, 42, 1.0f);
	fill(g, 8, 43, 1.0f);
	fill(bt, 8, 44, 1.0f);
	for (int k = 0; k < 2; k++)
		for (int c = 0; c < 8; c++)
			rm[k][c] = 0.5f, rv[k][c] = 2.0f;
	CHECK_EQ(be.i->bn_add_relu_fwd_train(be.ctx, &d, x, z, g, bt, rm[0], rv[0], sm[0], si[0], y), BT_OK);
	CHECK_EQ(be.i->bn_fwd_train(be.ctx, &d, x, g, bt, rm[1], rv[1], sm[1], si[1], y2), BT_OK);
	CHECK_EQ(be.i->add(be.ctx, BT_DTYPE_F32, y2, z, y2, n), BT_OK);
	CHECK_EQ(be.i->relu_fwd(be.ctx, BT_DTYPE_F32, y2, y2, n), BT_OK);
	CHECK(memcmp(y, y2, sizeof y) == 0);
	CHECK(memcmp(sm[0], sm[1], sizeof sm[0]) == 0 && memcmp(si[0], si[1], sizeof si[0]) == 0);
	CHECK(memcmp(rm[0], rm[1], sizeof rm[0]) == 0 && memcmp(rv[0], rv[1], sizeof rv[0]) == 0);
	CHECK_EQ(be.i->bn_add_relu_fwd_train(be.ctx, &d, x, z, g, bt, rm[0], rv[0], sm[0], si[0], z),
		 BT_ERR_INVALID);
}

/* x NULL reuses the input of the last pass: the same training logits, after an inference
 * pass too (the fused one writes other buffers than training's); an
 * error before any input, or for another number of images. */
TEST(input_reuse)
{
	struct bt_graph g;
	struct bt_run *r;
	float x[4 * 6 * 6 * 3], first[4 * 5];
	CHECK_EQ(small_net(&g, 5), BT_OK);
	CHECK_EQ(bt_run_new(&r, &g, &be, 4), BT_OK);
	bt_run_init_params(r, 13, 0);
	fill(x, sizeof x / sizeof *x, 14, 1.0f);
	CHECK_EQ(bt_run_forward(r, NULL, 4, 1, 0), BT_ERR_INVALID);
	CHECK_EQ(bt_run_forward(r, x, 4, 1, 0), BT_OK);
	memcpy(first, bt_run_logits(r), sizeof first);
	memset(x, 0, sizeof x);
	CHECK_EQ(bt_run_forward(r, NULL, 4, 0, 0), BT_OK); /* inference, then training again */
	CHECK_EQ(bt_run_forward(r, NULL, 4, 1, 0), BT_OK);
	CHECK(memcmp(first, bt_run_logits(r), sizeof first) == 0);
	CHECK_EQ(bt_run_forward(r, NULL, 3, 0, 0), BT_ERR_INVALID);
	bt_run_free(r);
	bt_graph_free(&g);
}

TEST(dropout_train_and_eval)
{
	struct bt_graph g;
	struct bt_run *r;
	float x[2 * 1000];
	int32_t labels[2] = {1, 2};
	int xin, zeros = 0, scaled = 0;
	double l;
	bt_graph_init(&g);
	xin = bt_input(&g, 1, 1, 1000);
	g.output = bt_dropout(&g, xin, 0.25f);
	CHECK_EQ(bt_run_new(&r, &g, &be, 2), BT_OK);
	for (int i = 0; i < 2000; i++)
		x[i] = 1.0f;
	CHECK_EQ(bt_run_forward(r, x, 2, 1, 9), BT_OK);
	for (int i = 0; i < 2000; i++) {
		float y = bt_run_logits(r)[i];
		zeros += y == 0.0f;
		scaled += fabsf(y - 1.0f / 0.75f) < 1e-6f;
	}
	CHECK_EQ(zeros + scaled, 2000);
	CHECK(zeros > 420 && zeros < 580); /* 500 expected */
	/* the same seed drops the same elements; evaluation drops nothing */
	{
		float first[2000];
		memcpy(first, bt_run_logits(r), sizeof first);
		CHECK_EQ(bt_run_forward(r, x, 2, 1, 9), BT_OK);
		CHECK(memcmp(first, bt_run_logits(r), sizeof first) == 0);
	}
	CHECK_EQ(bt_run_loss(r, labels, NULL, 0, 1, &l), BT_OK);
	CHECK_EQ(bt_run_backward(r), BT_OK);
	CHECK_EQ(bt_run_forward(r, x, 2, 0, 9), BT_OK);
	for (int i = 0; i < 2000; i++)
		CHECK(bt_run_logits(r)[i] == 1.0f);
	bt_run_free(r);
	bt_graph_free(&g);
}

int main(void)
{
	if (bt_backend_cpu(&be, 0) < 0) {
		fprintf(stderr, "cpu backend: %s\n", bt_errmsg());
		return 1;
	}
	RUN(gradients_match_finite_differences);
	RUN(label_smoothing_and_soft_targets);
	RUN(init_rules);
	RUN(sgd_formula);
	RUN(tiny_model_fits_a_tiny_batch);
	RUN(dropout_train_and_eval);
	RUN(folded_inference_matches);
	RUN(fused_inference_matches_on_zoo_models);
	RUN(shared_inference_same_bits);
	RUN(inference_only_run);
	RUN(sliced_inference_matches);
	RUN(memory_estimate);
	RUN(input_reuse);
	RUN(fused_training_matches);
	RUN(bn_add_relu_slot);
	bt_backend_free(&be);
	return test_summary();
}
