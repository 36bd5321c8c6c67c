/* test_train.c: the recipe's arithmetic (lib/train.c) against its formulas: schedule
 * values at known iterations for warmup, step, cosine and poly; Beta and Gamma sample
 * moments; the mixup coefficient's determinism; in-place mixing; soft targets of label
 * smoothing and mixup; training hits; the loss and rank of one image's logits. */
#include <math.h>
#include <stdlib.h>

#include "test.h"
#include "train.h"

static int near(double a, double b, double tol)
{
	return fabs(a - b) <= tol * (1 + fabs(b));
}

TEST(warmup_is_linear)
{
	struct bt_schedule s = { .mode = BT_LR_COSINE, .lr = 0.4, .warmup_lr = 0.0, .warmup_iters = 100, .total_iters = 1000 };
	CHECK(bt_schedule_lr(&s, 0) == 0.0);
	CHECK(near(bt_schedule_lr(&s, 25), 0.1, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 50), 0.2, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 99), 0.396, 1e-12));
	/* Warmup ends at the peak; cosine starts from it. */
	CHECK(near(bt_schedule_lr(&s, 100), 0.4, 1e-12));
	s.warmup_lr = 0.1;
	CHECK(near(bt_schedule_lr(&s, 50), 0.25, 1e-12));
}

TEST(cosine_counts_after_warmup)
{
	struct bt_schedule s = { .mode = BT_LR_COSINE, .lr = 0.4, .warmup_iters = 100, .total_iters = 1000 };
	/* eta_t = eta / 2 (1 + cos(pi t / T)), t and T after warmup: T = 900. */
	CHECK(near(bt_schedule_lr(&s, 100 + 450), 0.2, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 100 + 225), 0.2 * (1 + cos(M_PI / 4)), 1e-12));
	CHECK(near(bt_schedule_lr(&s, 999), 0.2 * (1 + cos(M_PI * 899 / 900)), 1e-12));
	CHECK(bt_schedule_lr(&s, 1000) < 1e-15);
	s.warmup_iters = 0;
	CHECK(near(bt_schedule_lr(&s, 0), 0.4, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 500), 0.2, 1e-12));
}

TEST(step_decays_at_epochs)
{
	/* 10 iterations per epoch, decay at epochs 3 and 6, warmup 1 epoch. */
	struct bt_schedule s = { .mode = BT_LR_STEP, .lr = 0.1, .warmup_iters = 10, .total_iters = 90,
				 .decay = 0.1, .steps = { 30, 60 }, .nsteps = 2 };
	CHECK(near(bt_schedule_lr(&s, 5), 0.05, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 10), 0.1, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 29), 0.1, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 30), 0.01, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 59), 0.01, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 60), 0.001, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 89), 0.001, 1e-12));
}

TEST(poly)
{
	struct bt_schedule s = { .mode = BT_LR_POLY, .lr = 0.1, .warmup_iters = 0, .total_iters = 100, .power = 2 };
	CHECK(near(bt_schedule_lr(&s, 0), 0.1, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 50), 0.025, 1e-12));
	CHECK(near(bt_schedule_lr(&s, 90), 0.001, 1e-12));
	CHECK(bt_lr_mode_parse("cosine") == BT_LR_COSINE && bt_lr_mode_parse("exp") == -1);
	CHECK(strcmp(bt_lr_mode_name(BT_LR_POLY), "poly") == 0);
}

/* Sample moments against Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)). */
TEST(beta_moments)
{
	static const double alphas[] = { 0.2, 1.0, 2.5 };
	for (int k = 0; k < 3; k++) {
		double a = alphas[k], m = 0, v = 0, var = 1 / (4 * (2 * a + 1));
		int n = 200000, out_of_range = 0;
		for (int i = 0; i < n; i++) {
			double x = bt_mixup_lambda(7, (uint64_t)i, a);
			out_of_range += !(x >= 0 && x <= 1);
			m += x;
			v += (x - 0.5) * (x - 0.5);
		}
		m /= n;
		v /= n;
		CHECK(out_of_range == 0);
		/* Standard errors: sqrt(var / n) for the mean; about 1% relative for the variance. */
		CHECK(fabs(m - 0.5) < 5 * sqrt(var / n));
		CHECK(fabs(v - var) < 0.02 * var);
	}
	/* Gamma(a) mean a, variance a. */
	{
		struct bt_rng g;
		double m = 0, v = 0, a = 0.3;
		int n = 200000;
		bt_rng_seed(&g, 3);
		for (int i = 0; i < n; i++) {
			double x = bt_rng_gamma(&g, a);
			m += x;
			v += (x - a) * (x - a);
		}
		CHECK(fabs(m / n - a) < 5 * sqrt(a / n));
		CHECK(fabs(v / n - a) < 0.05 * a);
	}
}

TEST(mixup_lambda_is_a_function_of_seed_and_iteration)
{
	CHECK(bt_mixup_lambda(1, 10, 0.2) == bt_mixup_lambda(1, 10, 0.2));
	CHECK(bt_mixup_lambda(1, 10, 0.2) != bt_mixup_lambda(1, 11, 0.2));
	CHECK(bt_mixup_lambda(1, 10, 0.2) != bt_mixup_lambda(2, 10, 0.2));
}

TEST(mixup_batch_pairs_reversed)
{
	/* 5 images of 2 floats: image i holds (i, 10 i). */
	float x[10], lam = 0.7f;
	for (int i = 0; i < 5; i++) {
		x[2 * i] = (float)i;
		x[2 * i + 1] = 10.0f * i;
	}
	bt_mixup_batch(x, 5, 2, lam);
	for (int i = 0; i < 5; i++) {
		int j = 4 - i;
		CHECK(fabsf(x[2 * i] - (lam * i + (1 - lam) * j)) < 1e-6f);
		CHECK(fabsf(x[2 * i + 1] - (lam * 10 * i + (1 - lam) * 10 * j)) < 1e-5f);
	}
}

TEST(soft_targets)
{
	int32_t y[3] = { 0, 2, 1 };
	float q[3 * 4];
	/* Smoothing alone: 1 - eps on the label, eps / (K - 1) elsewhere. */
	bt_soft_targets(q, y, 3, 4, 0.1f, 1.0f);
	for (int i = 0; i < 3; i++) {
		float sum = 0;
		for (int k = 0; k < 4; k++) {
			CHECK(fabsf(q[i * 4 + k] - (k == y[i] ? 0.9f : 0.1f / 3)) < 1e-7f);
			sum += q[i * 4 + k];
		}
		CHECK(fabsf(sum - 1) < 1e-6f);
	}
	/* Mixup with smoothing: lam q(y_i) + (1 - lam) q(y_(n-1-i)). */
	bt_soft_targets(q, y, 3, 4, 0.1f, 0.75f);
	{
		float on = 0.9f, off = 0.1f / 3;
		/* image 0: label 0 mixed with image 2's label 1 */
		CHECK(fabsf(q[0] - (0.75f * on + 0.25f * off)) < 1e-6f);
		CHECK(fabsf(q[1] - (0.75f * off + 0.25f * on)) < 1e-6f);
		CHECK(fabsf(q[2] - off) < 1e-6f && fabsf(q[3] - off) < 1e-6f);
		/* image 1 is its own partner */
		CHECK(fabsf(q[4 + 2] - on) < 1e-6f);
	}
	/* No smoothing, no mixup: one-hot. */
	bt_soft_targets(q, y, 3, 4, 0, 1);
	CHECK(q[0] == 1 && q[1] == 0 && q[4 + 2] == 1 && q[8 + 1] == 1);
}

TEST(hits_follow_the_dominant_label)
{
	float z[2 * 3] = { 0, 5, 1, 3, 0, 1 }; /* predictions 1 and 0 */
	int32_t y[2] = { 0, 1 };
	/* lam >= 0.5: against y_i: image 0 predicts 1 (label 0, miss), image 1 predicts 0 (label 1, miss). */
	CHECK(bt_train_hits(z, y, 2, 3, 1.0f) == 0);
	/* lam < 0.5: against the partner: image 0 vs y_1 = 1 (hit), image 1 vs y_0 = 0 (hit). */
	CHECK(bt_train_hits(z, y, 2, 3, 0.3f) == 2);
}

TEST(score_logits)
{
	float z[4] = { 1, 3, 3, -2 };
	int rank;
	double lse = log(exp(1.0) + 2 * exp(3.0) + exp(-2.0));
	CHECK(near(bt_score_logits(z, 4, 1, &rank), lse - 3, 1e-12) && rank == 0);
	/* a tie goes to the lower index */
	CHECK(near(bt_score_logits(z, 4, 2, &rank), lse - 3, 1e-12) && rank == 1);
	CHECK(near(bt_score_logits(z, 4, 3, &rank), lse + 2, 1e-12) && rank == 3);
	/* large logits do not overflow */
	z[0] = 1000;
	CHECK(near(bt_score_logits(z, 4, 0, &rank), 0, 1e-12) && rank == 0);
	z[0] = NAN;
	bt_score_logits(z, 4, 0, &rank);
	CHECK(rank == 4);
}

int main(void)
{
	RUN(warmup_is_linear);
	RUN(cosine_counts_after_warmup);
	RUN(step_decays_at_epochs);
	RUN(poly);
	RUN(beta_moments);
	RUN(mixup_lambda_is_a_function_of_seed_and_iteration);
	RUN(mixup_batch_pairs_reversed);
	RUN(soft_targets);
	RUN(hits_follow_the_dominant_label);
	RUN(score_logits);
	return test_summary();
}
