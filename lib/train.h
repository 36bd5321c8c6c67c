/* train.h: the arithmetic of the training recipe (He et al. 2019) that does not depend on
 * a backend: the per-iteration learning-rate schedule, the mixup coefficient and mixing,
 * and the soft targets of label smoothing and mixup. bt-train drives them; the unit tests
 * check them against the formulas of the paper and of GluonCV's train_imagenet.py. */
#ifndef BT_TRAIN_H
#define BT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

enum bt_lr_mode { BT_LR_STEP = 0, BT_LR_COSINE, BT_LR_POLY };

#define BT_MAX_LR_STEPS 32

struct bt_schedule {
	int mode;                      /* enum bt_lr_mode */
	double lr;                     /* the peak learning rate, reached after warmup */
	double warmup_lr;              /* the learning rate at iteration 0 */
	uint64_t warmup_iters;
	uint64_t total_iters;
	double decay;                  /* step: factor at each step */
	uint64_t steps[BT_MAX_LR_STEPS]; /* step: iterations at which the rate is multiplied by decay */
	int nsteps;
	double power;                  /* poly: exponent */
};

/* The learning rate for iteration it (0-based, the step about to be taken):
 *   it < W:  warmup_lr + (lr - warmup_lr) * it / W                  (linear warmup)
 *   step:    lr * decay^(number of steps s with it >= s)
 *   cosine:  lr / 2 * (1 + cos(pi * (it - W) / (T - W)))
 *   poly:    lr * (1 - (it - W) / (T - W))^power
 * with W the warmup iterations and T the total. */
double bt_schedule_lr(const struct bt_schedule *s, uint64_t it);

/* "step", "cosine", "poly" <-> enum bt_lr_mode; -1 for an unknown name. */
int bt_lr_mode_parse(const char *name);
const char *bt_lr_mode_name(int mode);

/* Gamma(a, 1) (Marsaglia and Tsang 2000, with the a < 1 boost) and Beta(a, b) as
 * X / (X + Y) of two gamma variates. */
double bt_rng_gamma(struct bt_rng *g, double a);
double bt_rng_beta(struct bt_rng *g, double a, double b);

/* The mixup coefficient of an iteration: Beta(alpha, alpha) from an RNG seeded by (seed,
 * iteration), so a resumed run draws the same values. */
double bt_mixup_lambda(uint64_t seed, uint64_t iteration, double alpha);

/* Mixes a batch in place: x_i = lam x_i + (1 - lam) x_(n-1-i) for each of the n images of
 * `per` floats (the partner of image i is the batch reversed, as in GluonCV). */
void bt_mixup_batch(float *x, int n, size_t per, float lam);

/* Soft targets q (n, K): the one-hot label smoothed by eps (1 - eps on the true class,
 * eps / (K - 1) elsewhere), mixed as lam q(y_i) + (1 - lam) q(y_(n-1-i)). lam = 1 gives
 * smoothing alone. Labels must be in [0, K). */
void bt_soft_targets(float *q, const int32_t *labels, int n, int K, float eps, float lam);

/* Training top-1 hits of logits (n, K): the prediction against y_i, or against the
 * partner's label when lam < 0.5 (the label that dominates the mixed image). */
int bt_train_hits(const float *logits, const int32_t *labels, int n, int K, float lam);

/* For scoring one image: the cross-entropy -log softmax(z)_y of its K logits (log-softmax
 * in double, shifted by the largest logit), and in *rank the number of classes ranked
 * before y: a larger logit, or an equal one with a lower index (the order of a stable
 * sort; a NaN logit for y ranks last). Top-k counts the image when rank < k. */
double bt_score_logits(const float *z, int K, int y, int *rank);

#endif
