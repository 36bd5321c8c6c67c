/* train.c: learning-rate schedules, mixup and soft targets (train.h). */
#include <math.h>
#include <string.h>

#include "train.h"

double bt_schedule_lr(const struct bt_schedule *s, uint64_t it)
{
	uint64_t W = s->warmup_iters, T = s->total_iters;
	double t;

	if (it < W)
		return s->warmup_lr + (s->lr - s->warmup_lr) * (double)it / (double)W;
	switch (s->mode) {
	case BT_LR_STEP: {
		double lr = s->lr;
		for (int i = 0; i < s->nsteps; i++)
			if (it >= s->steps[i])
				lr *= s->decay;
		return lr;
	}
	case BT_LR_COSINE:
		if (T <= W)
			return s->lr;
		t = (double)(it - W) / (double)(T - W);
		return s->lr / 2 * (1 + cos(M_PI * (t > 1 ? 1 : t)));
	case BT_LR_POLY:
		if (T <= W)
			return s->lr;
		t = (double)(it - W) / (double)(T - W);
		return s->lr * pow(t > 1 ? 0 : 1 - t, s->power);
	}
	return s->lr;
}

static const char *const lr_names[] = { "step", "cosine", "poly" };

int bt_lr_mode_parse(const char *name)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(name, lr_names[i]) == 0)
			return i;
	return -1;
}

const char *bt_lr_mode_name(int mode)
{
	return mode >= 0 && mode < 3 ? lr_names[mode] : "unknown";
}

static double normal(struct bt_rng *g)
{
	/* Box-Muller; 1 - u is in (0, 1]. */
	double u1 = bt_rng_uniform(g), u2 = bt_rng_uniform(g);
	return sqrt(-2 * log(1 - u1)) * cos(2 * M_PI * u2);
}

double bt_rng_gamma(struct bt_rng *g, double a)
{
	double boost = 1, d, c;

	if (a < 1) {
		/* Gamma(a) = Gamma(a + 1) * U^(1/a). */
		boost = pow(1 - bt_rng_uniform(g), 1 / a);
		a += 1;
	}
	d = a - 1.0 / 3;
	c = 1 / sqrt(9 * d);
	for (;;) {
		double x = normal(g), v = 1 + c * x, u;
		if (v <= 0)
			continue;
		v = v * v * v;
		u = 1 - bt_rng_uniform(g);
		if (u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)))
			return d * v * boost;
	}
}

double bt_rng_beta(struct bt_rng *g, double a, double b)
{
	double x = bt_rng_gamma(g, a), y = bt_rng_gamma(g, b);
	return x + y > 0 ? x / (x + y) : 0.5;
}

double bt_mixup_lambda(uint64_t seed, uint64_t iteration, double alpha)
{
	struct bt_rng g;
	bt_rng_seed(&g, bt_mix64(seed ^ UINT64_C(0x452821e638d01377)) + bt_mix64(iteration));
	return bt_rng_beta(&g, alpha, alpha);
}

void bt_mixup_batch(float *x, int n, size_t per, float lam)
{
	float mu = 1 - lam;
	for (int i = 0; i < n / 2; i++) {
		float *a = x + (size_t)i * per, *b = x + (size_t)(n - 1 - i) * per;
		for (size_t k = 0; k < per; k++) {
			float va = a[k], vb = b[k];
			a[k] = lam * va + mu * vb;
			b[k] = lam * vb + mu * va;
		}
	}
	if (n % 2) {
		float *m = x + (size_t)(n / 2) * per;
		for (size_t k = 0; k < per; k++)
			m[k] = lam * m[k] + mu * m[k];
	}
}

void bt_soft_targets(float *q, const int32_t *labels, int n, int K, float eps, float lam)
{
	float off = K > 1 ? eps / (float)(K - 1) : 0, on = 1 - eps;
	for (int i = 0; i < n; i++) {
		float *row = q + (size_t)i * K;
		int a = labels[i], b = labels[n - 1 - i];
		for (int k = 0; k < K; k++)
			row[k] = off;
		/* Both halves of the mix: lam q(a) + (1 - lam) q(b) = off + lam (on - off) [k = a]
		 * + (1 - lam) (on - off) [k = b]. */
		row[a] += lam * (on - off);
		row[b] += (1 - lam) * (on - off);
	}
}

int bt_train_hits(const float *logits, const int32_t *labels, int n, int K, float lam)
{
	int hits = 0;
	for (int i = 0; i < n; i++) {
		const float *z = logits + (size_t)i * K;
		int best = 0;
		for (int k = 1; k < K; k++)
			if (z[k] > z[best])
				best = k;
		hits += best == (lam >= 0.5f ? labels[i] : labels[n - 1 - i]);
	}
	return hits;
}

double bt_score_logits(const float *z, int K, int y, int *rank)
{
	double m = z[0], s = 0;
	int r = 0;
	for (int k = 1; k < K; k++)
		if (z[k] > m)
			m = z[k];
	for (int k = 0; k < K; k++) {
		s += exp((double)z[k] - m);
		r += z[k] > z[y] || (z[k] == z[y] && k < y);
	}
	*rank = isnan(z[y]) ? K : r;
	return m + log(s) - z[y];
}
