/* run.h: running a graph on a backend (backend.h): forward, loss, backward, optimizer step.
 *
 * A run owns the parameter arena and its gradient and momentum arenas (the same layout,
 * see graph.h), one activation buffer per node, and what backward needs (batch-norm
 * statistics, max-pooling workspaces, dropout masks). Gradients of a node with several
 * consumers (a residual input) are summed. The CUDA backend implements the same run
 * interface over the same graph.
 *
 * Mixed precision (bt_run_new_dtype with float16 or bfloat16, on a backend that supports
 * it): the arenas stay float32 (the master weights, their gradients and the momentum) and
 * so do batch-norm parameters and statistics, the loss and the update; activations and
 * their gradients are of the half type, and convolutions and fully connected layers read
 * a half copy of the arena, cast from it (one kernel over the arena) before the first
 * forward pass after it changed. float16 scales the loss gradient by a dynamic loss scale
 * S (mixed.h): bt_run_sgd skips a step whose gradients overflowed and halves S, and
 * doubles S after a run of good steps.
 */
#ifndef BT_RUN_H
#define BT_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "graph.h"
#include "mixed.h"

struct bt_run;

/* A run of graph g on backend be (both must outlive it) for batches of up to `batch`
 * images. The arenas, activations and logits live in the backend's memory (host memory for
 * the CPU backend). */
int bt_run_new(struct bt_run **r, const struct bt_graph *g, struct bt_backend *be, int batch);
/* The same computing in dtype (enum bt_dtype): float32 is bt_run_new; float16 and
 * bfloat16 are mixed precision, BT_ERR_UNSUPPORTED on a backend without them ("float16
 * needs --device cuda: ..."). */
int bt_run_new_dtype(struct bt_run **r, const struct bt_graph *g, struct bt_backend *be, int batch,
		     int dtype);
/* A run for inference only (bt-eval): parameters, and the output buffers an inference
 * pass needs, shared by lifetime; no gradients, momentum or saved statistics. A training
 * forward pass, the loss, backward and the optimizer refuse it. */
int bt_run_new_inference(struct bt_run **r, const struct bt_graph *g, struct bt_backend *be, int batch,
			 int dtype);
void bt_run_free(struct bt_run *r);

/* The arenas, float32 whatever the run's dtype. The parameter arena may be written
 * through the pointer (it is the master copy; the half copy follows it). In a float16 run
 * the gradients are those of the scaled loss: divide them by bt_run_loss_scale. */
float *bt_run_params(struct bt_run *r);     /* (g->nfloats) */
float *bt_run_grads(struct bt_run *r);      /* (g->nfloats) */
float *bt_run_momentum(struct bt_run *r);   /* (g->nfloats) */
int bt_run_dtype(const struct bt_run *r);

/* Initialisation (He et al. 2019): Xavier uniform, +-sqrt(6/(fan_in+fan_out)), for
 * convolution and fully connected weights; zero biases; batch norm gamma 1, beta 0,
 * running mean 0, variance 1; with zero_gamma, gamma 0 for every batch norm marked as the
 * last of a residual branch. Deterministic in seed. */
int bt_run_init_params(struct bt_run *r, uint64_t seed, int zero_gamma);

/* Forward pass of n <= batch images x (N,H,W,C). train: batch statistics, dropout.
 * x NULL: the input the last pass used, still in the backend's memory (nothing is copied;
 * --benchmark keeps its synthetic batch on the device that way, as PyTorch's does); an
 * error before any input was given. */
int bt_run_forward(struct bt_run *r, const float *x, int n, int train, uint64_t dropout_seed);
/* The same from a uint8 batch (backend.h's struct bt_u8_batch: the loader's crops with
 * their colour operations deferred, mean and std, mixup): the backend's input_u8 applies
 * colour, lighting, normalisation and mixup and writes the input in the run's dtype, on a
 * GPU in one kernel after an asynchronous copy. The input is what bt_run_forward would get
 * from the loader's float32 batch mixed by bt_mixup_batch, rounded once to the dtype. The
 * backend may still be reading in->x and in->colour when this returns: keep them unchanged
 * until a call that waits for the device has returned (bt_run_loss, bt_run_read_logits,
 * a download). */
int bt_run_forward_u8(struct bt_run *r, const struct bt_u8_batch *in, int train, uint64_t dropout_seed);
/* Inference passes fold each batch norm that directly follows a convolution (read by
 * nothing else) into the convolution's weights, and let such a convolution do the ReLU
 * after it and the residual addition (and its ReLU) it feeds, as post-operations; on by
 * default. Off gives the unfused computation, for tests. */
void bt_run_fuse(struct bt_run *r, int on);
/* Inference passes keep outputs in buffers shared by lifetime (the default, on): each
 * output lives in the most recently freed node buffer it fits, so the pass stays in
 * cache; off: each node's own buffer, as a training pass. The logits are the same bits. */
void bt_run_share_inference(struct bt_run *r, int on);
/* How many nodes a fused inference pass leaves out: batch norms folded, ReLUs and
 * additions done by convolutions. */
int bt_run_fused_nodes(const struct bt_run *r);
/* How many nodes a fused training forward pass leaves out: ReLUs done by the batch norm
 * before them (the backend's bn_relu_*), and the batch norm and ReLU around a residual
 * addition that does all three (bn_add_relu_*). */
int bt_run_fused_train_nodes(const struct bt_run *r);

/* The logits of the last forward pass: (n, classes), float32 (cast from the half output of
 * a mixed-precision run), in the backend's memory. */
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
 * (dlogits = (p - q) / (n T), times the loss scale in a float16 run) for backward. The
 * loss is computed in float32 (double sums) from the float32 logits. */
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
 * touched. In a float16 run, dw is first divided by the loss scale S the backward pass
 * used; when some gradient is an infinity or a NaN the step is skipped instead (nothing
 * changes but the scaler: S halves, the skipped count grows), and 2000 good steps in a
 * row double S (mixed.h). Returns the backend's status (a device backend can fail here);
 * a skipped step is not a failure. */
int bt_run_sgd(struct bt_run *r, float lr, float momentum, float wd, int no_bias_decay);

/* The loss scaler: S (1 unless the run is float16), the steps skipped for overflow so
 * far, and the whole state, which bt_run_set_scaler restores (from a checkpoint;
 * BT_ERR_INVALID for a state the run cannot have, mixed.h). */
double bt_run_loss_scale(const struct bt_run *r);
uint64_t bt_run_skipped_steps(const struct bt_run *r);
const struct bt_loss_scaler *bt_run_scaler(const struct bt_run *r);
int bt_run_set_scaler(struct bt_run *r, double scale, uint64_t good_steps, uint64_t skipped);

/* Per-op timing: when on, forward and backward add each node's wall time to a table by op
 * (seconds[op][0] forward, [1] backward) until it is switched off or reset. On a backend
 * that queues work (CUDA) each node is bracketed by the backend's sync, so the time is the
 * node's execution, not its launch; the synchronisation slows the whole step down. */
void bt_run_profile(struct bt_run *r, int on);
void bt_run_profile_get(const struct bt_run *r, double seconds[BT_OP_COUNT][2], uint64_t calls[BT_OP_COUNT][2]);

/* Bytes held for activations, gradients and saved state (not parameters, nor the half
 * copy of the parameters). */
size_t bt_run_activation_bytes(const struct bt_run *r);

/* The bytes of backend memory bt_run_new_dtype would allocate for this batch and dtype
 * (planned, nothing allocated; the convolution workspaces and folded weights that the first
 * passes add are not counted). */
int bt_run_bytes(const struct bt_graph *g, struct bt_backend *be, int batch, int dtype, size_t *bytes);
/* The largest batch from 0 to max whose bt_run_bytes is at most budget. */
int bt_run_batch_fitting(const struct bt_graph *g, struct bt_backend *be, int dtype, size_t budget, int max);

#endif
