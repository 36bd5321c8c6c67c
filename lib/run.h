/* run.h: running a graph on a backend (backend.h): forward, loss, backward, optimizer step.
 *
 * A run owns the parameter arena and its gradient and momentum arenas (the same layout,
 * see graph.h), one activation buffer per node, and what backward needs (batch-norm
 * statistics, max-pooling workspaces, dropout masks). Gradients of a node with several
 * consumers (a residual input) are summed. The CUDA backend will implement the same run
 * interface over the same graph.
 */
#ifndef BT_RUN_H
#define BT_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "graph.h"

struct bt_run;

/* A run of graph g on backend be (both must outlive it) for batches of up to `batch`
 * images. The arenas, activations and logits live in the backend's memory (host memory for
 * the CPU backend). */
int bt_run_new(struct bt_run **r, const struct bt_graph *g, struct bt_backend *be, int batch);
void bt_run_free(struct bt_run *r);

float *bt_run_params(struct bt_run *r);     /* (g->nfloats) */
float *bt_run_grads(struct bt_run *r);      /* (g->nfloats) */
float *bt_run_momentum(struct bt_run *r);   /* (g->nfloats) */

/* Initialisation (He et al. 2019): Xavier uniform, +-sqrt(6/(fan_in+fan_out)), for
 * convolution and fully connected weights; zero biases; batch norm gamma 1, beta 0,
 * running mean 0, variance 1; with zero_gamma, gamma 0 for every batch norm marked as the
 * last of a residual branch. Deterministic in seed. */
int bt_run_init_params(struct bt_run *r, uint64_t seed, int zero_gamma);

/* Forward pass of n <= batch images x (N,H,W,C). train: batch statistics, dropout. */
int bt_run_forward(struct bt_run *r, const float *x, int n, int train, uint64_t dropout_seed);
/* Inference passes fold each batch norm that directly follows a convolution (read by
 * nothing else) into the convolution's weights; on by default. Off gives the unfused
 * computation, for tests. */
void bt_run_fuse(struct bt_run *r, int on);

/* The logits of the last forward pass: (n, classes), in the backend's memory. */
const float *bt_run_logits(const struct bt_run *r);

/* Host copies, for callers that must not care where the backend keeps its memory:
 * the first n rows of the logits (n, classes); the parameter and momentum arenas
 * (g->nfloats each; either pointer may be NULL). */
int bt_run_read_logits(struct bt_run *r, float *logits, int n);
int bt_run_read_state(struct bt_run *r, float *params, float *momentum);
int bt_run_write_state(struct bt_run *r, const float *params, const float *momentum);

/* Softmax cross-entropy of the logits against labels, with label smoothing eps (the
 * paper's definition: 1 - eps on the true class, eps / (K - 1) elsewhere), or against soft
 * targets (n, K) when soft is not NULL (mixup, distillation), the logits divided by the
 * temperature T first. Returns the mean loss in *loss and sets the logits' gradient
 * (dlogits = (p - q) / (n T)) for backward. */
int bt_run_loss(struct bt_run *r, const int32_t *labels, const float *soft, float eps,
		float temperature, double *loss);

/* Backward pass from the loss: zeroes the gradient arena, then accumulates every
 * parameter's gradient. */
int bt_run_backward(struct bt_run *r);

/* SGD with Nesterov momentum and weight decay, in the form PyTorch and MXNet use:
 *   g = dw + wd * w   (wd = 0 for parameters excluded by no_bias_decay)
 *   v = momentum * v + g
 *   w = w - lr * (g + momentum * v)
 * no_bias_decay excludes biases and batch-norm gamma and beta. Running statistics are not
 * touched. Returns the backend's status (a device backend can fail here). */
int bt_run_sgd(struct bt_run *r, float lr, float momentum, float wd, int no_bias_decay);

/* Per-op timing: when on, forward and backward add each node's wall time to a table by op
 * (seconds[op][0] forward, [1] backward) until it is switched off or reset. */
void bt_run_profile(struct bt_run *r, int on);
void bt_run_profile_get(const struct bt_run *r, double seconds[BT_OP_COUNT][2], uint64_t calls[BT_OP_COUNT][2]);

/* Bytes held for activations, gradients and saved state (not parameters). */
size_t bt_run_activation_bytes(const struct bt_run *r);

#endif
