/* test_input.c: the network's input from uint8 crops (backend.h's input_u8, run.h's
 * bt_run_forward_u8), the data path of a GPU, on the CPU backend, whose input_u8 is the
 * reference the CUDA kernel is held to (tests/gpu/test_cuda.c). Checked bit for bit: the
 * slot against lib/augment's float32 output (3 channels and 1, training and evaluation
 * transforms, several seeds), mixed as bt_mixup_batch mixes it (odd and even batches),
 * and rounded to float16 and bfloat16 by the reference conversions; the per-element
 * formula the CUDA kernel runs (augment.h's bt_aug_affine_value, shared source, with the
 * kernel's indexing and mixup written out here) against the slot; then a training run
 * fed by the deferred-colour loader through bt_run_forward_u8 against one fed by the
 * float32 loader and host mixup through bt_run_forward (losses, parameters, evaluation
 * logits); and the refusals. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "backend.h"
#include "bt.h"
#include "loader.h"
#include "mixed.h"
#include "record.h"
#include "run.h"
#include "test.h"
#include "train.h"
#include "zoo.h"

static struct bt_backend cpu;
static char tmpdir[] = "/tmp/bt-test-input-XXXXXX";
static char path_rgb[600];

static uint8_t *noise(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (uint8_t)(seed >> 24);
	}
	return p;
}

/* n images of W x H x C raw pixels, each drawn and transformed twice: the float32 output
 * (want) and the deferred-colour crop with its colour parameters. */
struct batch {
	int n, C, S;
	size_t per;
	uint8_t *crops;              /* (n, S, S, C) */
	struct bt_aug_colour *col;   /* (n) */
	float *want;                 /* (n, S, S, C) */
	struct bt_aug_params p;
};

static int batch_make(struct batch *b, int n, int C, int train, uint64_t seed)
{
	const uint32_t W = 41, H = 33;
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	struct bt_aug_params pd;
	int ok = s != NULL;

	memset(b, 0, sizeof *b);
	b->n = n;
	b->C = C;
	b->S = 20;
	b->per = (size_t)b->S * b->S * C;
	bt_aug_defaults(&b->p, train);
	b->p.size = (uint32_t)b->S;
	b->p.format = BT_AUG_F32;
	b->p.mean[1] = 99.5f;
	b->p.std[0] = 61.25f;
	b->p.erase = train ? 0.75 : 0; /* most training images with an erased box */
	pd = b->p;
	pd.format = BT_AUG_U8;
	pd.defer_colour = 1;
	b->crops = malloc(b->per * n);
	b->col = calloc((size_t)n, sizeof *b->col);
	b->want = malloc(b->per * n * sizeof *b->want);
	ok = ok && b->crops && b->col && b->want;
	for (int i = 0; ok && i < n; i++) {
		uint8_t *px = noise((size_t)W * H * C, (uint32_t)(seed * 31 + (uint64_t)i));
		struct bt_record r = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {H, W, (uint32_t)C},
				      .size = (uint64_t)W * H * C, .data = px};
		struct bt_aug_draw d;
		struct bt_rng g;
		/* a gradient under the noise, so that crops differ in mean */
		for (size_t k = 0; k < (size_t)W * H * C; k++)
			px[k] = (uint8_t)(px[k] / 2 + (k / (size_t)C % W) * 3);
		bt_loader_rng(&g, seed, 0, (uint64_t)i);
		bt_aug_draw(&b->p, W, H, &g, &d);
		ok = bt_aug_apply(&b->p, &d, &r, b->want + b->per * i, s) == BT_OK &&
		     bt_aug_apply_deferred(&pd, &d, &r, b->crops + b->per * i, &b->col[i], s) == BT_OK;
		free(px);
	}
	bt_aug_scratch_free(s);
	return ok;
}

static void batch_free(struct batch *b)
{
	free(b->crops);
	free(b->col);
	free(b->want);
}

static void batch_input(const struct batch *b, int mixup, float lam, struct bt_u8_batch *in)
{
	memset(in, 0, sizeof *in);
	in->x = b->crops;
	in->colour = b->col;
	in->n = b->n;
	in->size = b->S;
	in->channels = b->C;
	memcpy(in->mean, b->p.mean, sizeof in->mean);
	memcpy(in->std, b->p.std, sizeof in->std);
	in->mixup = mixup;
	in->lam = lam;
}

/* The slot's output in dtype against want rounded to dtype, bit for bit. */
static int same_as(const void *y, int dtype, const float *want, size_t n)
{
	size_t differ = 0;
	for (size_t i = 0; i < n; i++) {
		int same;
		if (dtype == BT_DTYPE_F32)
			same = memcmp((const float *)y + i, want + i, 4) == 0;
		else if (dtype == BT_DTYPE_F16)
			same = ((const uint16_t *)y)[i] == bt_f32_to_f16(want[i]);
		else
			same = ((const uint16_t *)y)[i] == bt_f32_to_bf16(want[i]);
		if (!same && differ++ < 3)
			fprintf(stderr, "  %s element %zu differs\n", bt_dtype_name(dtype), i);
	}
	return differ == 0;
}

/* Every dtype, with and without mixup, for one batch. */
static int slot_matches(const struct batch *b)
{
	size_t total = b->per * (size_t)b->n;
	float *mixed = malloc(total * sizeof *mixed), *y = malloc(total * sizeof *y);
	static const float lams[3] = { 0.3f, 0.5f, 0.98765f };
	int ok = mixed && y;

	for (int dt = BT_DTYPE_F32; ok && dt <= BT_DTYPE_BF16; dt++) {
		struct bt_u8_batch in;
		batch_input(b, 0, 1, &in);
		ok = cpu.i->input_u8(cpu.ctx, dt, &in, y) == BT_OK && same_as(y, dt, b->want, total);
		for (int k = 0; ok && k < 3; k++) {
			memcpy(mixed, b->want, total * sizeof *mixed);
			bt_mixup_batch(mixed, b->n, b->per, lams[k]);
			batch_input(b, 1, lams[k], &in);
			ok = cpu.i->input_u8(cpu.ctx, dt, &in, y) == BT_OK && same_as(y, dt, mixed, total);
		}
		if (!ok)
			fprintf(stderr, "  %d images of %d channels, %s\n", b->n, b->C, bt_dtype_name(dt));
	}
	free(mixed);
	free(y);
	return ok;
}

TEST(slot_matches_augment_train)
{
	for (uint64_t seed = 1; seed <= 4; seed++) {
		struct batch b;
		int ok = batch_make(&b, seed % 2 ? 5 : 4, 3, 1, seed) && slot_matches(&b);
		batch_free(&b);
		CHECK(ok);
	}
}

TEST(slot_matches_augment_grey)
{
	for (uint64_t seed = 1; seed <= 3; seed++) {
		struct batch b;
		int ok = batch_make(&b, 3 + (int)seed, 1, 1, seed + 100) && slot_matches(&b);
		batch_free(&b);
		CHECK(ok);
	}
}

TEST(slot_matches_augment_eval)
{
	for (int C = 1; C <= 3; C += 2) {
		struct batch b;
		int ok = batch_make(&b, 3, C, 0, 9) && slot_matches(&b);
		batch_free(&b);
		CHECK(ok);
	}
}

/* The CUDA kernel's arithmetic on the host: element e of image i is
 * bt_aug_affine_value of its pixel (+0 in the image's erased box), mixed as lam v_i + (1 - lam) v_(n-1-i). */
static int kernel_formula_matches(const struct batch *b, int mix, float lam)
{
	size_t total = b->per * (size_t)b->n;
	struct bt_aug_affine *a = calloc((size_t)b->n, sizeof *a);
	float *y = malloc(total * sizeof *y), mu = 1 - lam;
	struct bt_u8_batch in;
	size_t differ = 0;

	if (!a || !y)
		return 0;
	batch_input(b, mix, lam, &in);
	if (cpu.i->input_u8(cpu.ctx, BT_DTYPE_F32, &in, y) < 0)
		return 0;
	for (int i = 0; i < b->n; i++)
		bt_aug_colour_affine(&b->col[i], b->C, b->p.mean, b->p.std, &a[i]);
	for (size_t e = 0; e < total; e++) {
		size_t i = e / b->per, k = e - i * b->per, j = (size_t)b->n - 1 - i;
		int c = (int)(k % (size_t)b->C);
		size_t px = (k - (size_t)c) / (size_t)b->C;
		float v = bt_aug_affine_erased(&a[i], px)
				  ? 0.0f : bt_aug_affine_value(&a[i], b->crops + i * b->per + k - (size_t)c, c, b->C);
		if (mix) {
			float w = bt_aug_affine_erased(&a[j], px)
					  ? 0.0f : bt_aug_affine_value(&a[j], b->crops + j * b->per + k - (size_t)c, c, b->C);
			v = lam * v + mu * w;
		}
		differ += memcmp(&v, &y[e], sizeof v) != 0;
	}
	free(a);
	free(y);
	return differ == 0;
}

TEST(kernel_formula_matches_slot)
{
	for (uint64_t seed = 1; seed <= 4; seed++) {
		struct batch b;
		int C = seed % 2 ? 3 : 1;
		int ok = batch_make(&b, (int)seed + 2, C, seed != 4, seed + 50) && kernel_formula_matches(&b, 0, 1) &&
			 kernel_formula_matches(&b, 1, 0.375f) && kernel_formula_matches(&b, 1, 0.8125f + 1e-4f);
		batch_free(&b);
		CHECK(ok);
	}
}

/* No colour parameters: normalisation alone, (x - mean) * (1 / std) in float. */
TEST(slot_without_colour)
{
	struct batch b;
	struct bt_u8_batch in;
	float *y = NULL, *want = NULL;
	int ok = batch_make(&b, 2, 3, 1, 3);
	size_t total = b.per * 2;
	if (ok) {
		y = malloc(total * sizeof *y);
		want = malloc(total * sizeof *want);
		ok = y && want;
	}
	for (size_t i = 0; ok && i < total; i++)
		want[i] = ((float)b.crops[i] - b.p.mean[i % 3]) * (1.0f / b.p.std[i % 3]);
	batch_input(&b, 0, 1, &in);
	in.colour = NULL;
	ok = ok && cpu.i->input_u8(cpu.ctx, BT_DTYPE_F32, &in, y) == BT_OK && same_as(y, BT_DTYPE_F32, want, total);
	free(y);
	free(want);
	batch_free(&b);
	CHECK(ok);
}

/* n records of 30 x 26 x 3 raw pixels, label i % 4. */
static int write_rgb(const char *path, int n)
{
	enum { W = 30, H = 26 };
	bt_record_writer *w;
	uint8_t px[H * W * 3];
	int st;
	if ((st = bt_record_writer_open(&w, path)) < 0)
		return st;
	for (int i = 0; i < n; i++) {
		struct bt_record r = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {H, W, 3},
				      .label = i % 4, .id = (uint64_t)i, .size = sizeof px, .data = px};
		uint32_t x = 777u + (uint32_t)i;
		for (size_t k = 0; k < sizeof px; k++) {
			x = x * 1664525u + 1013904223u;
			px[k] = (uint8_t)((x >> 24) / 3 + (k % 3 == (size_t)(i % 3)) * 90 + (k / 3 % W) * 4);
		}
		if ((st = bt_record_writer_put(w, &r)) < 0) {
			bt_record_writer_abort(w);
			return st;
		}
	}
	return bt_record_writer_commit(w);
}

/* One loader's batches through a run: float32 batches mixed on the host and
 * bt_run_forward (the CPU path of bt-train), or deferred-colour batches through
 * bt_run_forward_u8 (its GPU path). Losses of `steps` training steps with mixup, then the
 * parameters, then the evaluation logits of the validation transform. */
struct outcome {
	double loss[8];
	float *params;
	float *logits;
	int nlogits;
};

#define STEPS 6
#define BATCH 5

static int train_path(const struct bt_graph *g, int u8, struct outcome *o)
{
	struct bt_loader_opts lo = {.threads = 2, .batch = BATCH, .shuffle = 1, .seed = 5, .epochs = 2,
				    .drop_last = 1};
	struct bt_run *r = NULL;
	bt_loader *l = NULL;
	const struct bt_batch *b;
	float *xbuf = NULL, soft[BATCH * 4];
	size_t per = 16 * 16 * 3;
	int ok = 0, st;

	memset(o, 0, sizeof *o);
	bt_aug_defaults(&lo.aug, 1);
	lo.aug.size = 16;
	lo.aug.format = u8 ? BT_AUG_U8 : BT_AUG_F32;
	lo.aug.defer_colour = u8;
	if (bt_run_new(&r, g, &cpu, BATCH) < 0 || bt_run_init_params(r, 3, 1) < 0 ||
	    bt_loader_open(&l, path_rgb, &lo) < 0 || !(xbuf = malloc(BATCH * per * sizeof *xbuf)))
		goto out;
	for (int s = 0; s < STEPS; s++) {
		float lam = (float)bt_mixup_lambda(5, (uint64_t)s, 0.4);
		if (bt_loader_next(l, &b) != 1 || (b->colour != NULL) != u8)
			goto out;
		if (u8) {
			struct bt_u8_batch in = {.x = b->data, .colour = b->colour, .n = (int)b->n, .size = (int)b->size,
						 .channels = b->channels, .mixup = s != 2, .lam = lam};
			memcpy(in.mean, lo.aug.mean, sizeof in.mean);
			memcpy(in.std, lo.aug.std, sizeof in.std);
			st = bt_run_forward_u8(r, &in, 1, (uint64_t)s);
		} else {
			memcpy(xbuf, b->data, b->n * per * sizeof *xbuf);
			if (s != 2)
				bt_mixup_batch(xbuf, (int)b->n, per, lam);
			st = bt_run_forward(r, xbuf, (int)b->n, 1, (uint64_t)s);
		}
		bt_soft_targets(soft, b->labels, (int)b->n, 4, 0.1f, s != 2 ? lam : 1);
		if (st < 0 || bt_run_loss(r, NULL, soft, 0, 1, &o->loss[s]) < 0 || bt_run_backward(r) < 0 ||
		    bt_run_sgd(r, 0.05f, 0.9f, 1e-4f, 1) < 0)
			goto out;
	}
	bt_loader_close(l);
	l = NULL;
	/* Evaluation: the validation transform, no mixup. */
	bt_aug_defaults(&lo.aug, 0);
	lo.aug.size = 16;
	lo.aug.format = u8 ? BT_AUG_U8 : BT_AUG_F32;
	lo.aug.defer_colour = u8;
	lo.shuffle = 0;
	lo.epochs = 1;
	if (bt_loader_open(&l, path_rgb, &lo) < 0 || bt_loader_next(l, &b) != 1)
		goto out;
	if (u8) {
		struct bt_u8_batch in = {.x = b->data, .colour = b->colour, .n = (int)b->n, .size = (int)b->size,
					 .channels = b->channels};
		memcpy(in.mean, lo.aug.mean, sizeof in.mean);
		memcpy(in.std, lo.aug.std, sizeof in.std);
		st = bt_run_forward_u8(r, &in, 0, 0);
	} else {
		st = bt_run_forward(r, b->data, (int)b->n, 0, 0);
	}
	o->nlogits = (int)b->n * 4;
	o->params = malloc(g->nfloats * sizeof(float));
	o->logits = malloc((size_t)o->nlogits * sizeof(float));
	ok = st == BT_OK && o->params && o->logits && bt_run_read_logits(r, o->logits, (int)b->n) == BT_OK &&
	     bt_run_read_state(r, o->params, NULL) == BT_OK;
out:
	if (!ok)
		fprintf(stderr, "  %s path: %s\n", u8 ? "uint8" : "float32", bt_errmsg());
	bt_loader_close(l);
	bt_run_free(r);
	free(xbuf);
	return ok;
}

TEST(run_u8_same_as_float_path)
{
	struct bt_model_opts mo = {.classes = 4, .in_channels = 3, .input_size = 16};
	struct outcome a, b;
	struct bt_graph g;
	int ok;

	bt_graph_init(&g);
	CHECK_EQ(bt_model_build(&g, "cifar_resnet20_v1", &mo), BT_OK);
	ok = train_path(&g, 0, &a) && train_path(&g, 1, &b);
	for (int s = 0; ok && s < STEPS; s++) {
		if (s == 0 || s == STEPS - 1)
			fprintf(stderr, "  step %d: loss %.9f (float32 path) %.9f (uint8 path)\n", s + 1, a.loss[s],
				b.loss[s]);
		ok = memcmp(&a.loss[s], &b.loss[s], sizeof(double)) == 0;
	}
	ok = ok && memcmp(a.params, b.params, g.nfloats * sizeof(float)) == 0 && a.nlogits == b.nlogits &&
	     memcmp(a.logits, b.logits, (size_t)a.nlogits * sizeof(float)) == 0;
	free(a.params), free(a.logits), free(b.params), free(b.logits);
	bt_graph_free(&g);
	CHECK(ok);
}

/* What the run refuses before the backend sees it. */
TEST(run_u8_refusals)
{
	struct bt_model_opts mo = {.classes = 4, .in_channels = 3, .input_size = 16};
	struct bt_graph g;
	struct bt_run *r = NULL;
	struct batch b;
	struct bt_u8_batch in;

	bt_graph_init(&g);
	CHECK_EQ(bt_model_build(&g, "cifar_resnet20_v1", &mo), BT_OK);
	CHECK_EQ(bt_run_new(&r, &g, &cpu, 4), BT_OK);
	CHECK(batch_make(&b, 3, 3, 1, 1));
	batch_input(&b, 0, 1, &in); /* 20x20 crops for a 16x16 input */
	CHECK_EQ(bt_run_forward_u8(r, &in, 1, 0), BT_ERR_INVALID);
	CHECK(strstr(bt_errmsg(), "20x20x3 images for an input of 16x16x3") != NULL);
	in.size = 16;
	in.channels = 2;
	CHECK_EQ(bt_run_forward_u8(r, &in, 1, 0), BT_ERR_INVALID);
	in.channels = 3;
	in.std[1] = 0;
	CHECK_EQ(bt_run_forward_u8(r, &in, 1, 0), BT_ERR_INVALID);
	in.std[1] = 1;
	in.n = 5; /* more than the run's batch */
	CHECK_EQ(bt_run_forward_u8(r, &in, 1, 0), BT_ERR_INVALID);
	in.n = 3;
	CHECK_EQ(bt_run_forward_u8(r, &in, 1, 0), BT_OK);
	CHECK_EQ(cpu.i->input_u8(cpu.ctx, 7, &in, b.want), BT_ERR_INVALID);
	bt_run_free(r);
	batch_free(&b);
	bt_graph_free(&g);
}

int main(void)
{
	int st;
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path_rgb, sizeof path_rgb, "%s/rgb.btr", tmpdir);
	if (write_rgb(path_rgb, 23) < 0 || (st = bt_backend_cpu(&cpu, 2)) < 0) {
		fprintf(stderr, "test_input: %s\n", bt_errmsg());
		return 1;
	}
	RUN(slot_matches_augment_train);
	RUN(slot_matches_augment_grey);
	RUN(slot_matches_augment_eval);
	RUN(slot_without_colour);
	RUN(kernel_formula_matches_slot);
	RUN(run_u8_same_as_float_path);
	RUN(run_u8_refusals);
	bt_backend_free(&cpu);
	{
		char cmd[700];
		snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return test_summary();
}
