/* backend.h: the interface every compute backend implements, ggml style: a table of
 * function pointers plus a context. The executor (run.c) walks the graph and calls these;
 * it never touches tensor memory itself, so a CUDA backend drops in by providing the same
 * table over device memory. Every op has the same signature and semantics on every
 * backend, and the CPU backend is the oracle the others are tested against.
 *
 * Memory: buffers come from alloc and live on the backend's device; upload and download
 * move bytes between the host and the device. Backward kernels ADD into parameter
 * gradients and OVERWRITE input gradients, as lib/cpu.h says.
 *
 * Types: parameters, their gradients and optimizer state are always float32. Activations
 * and their gradients are of a compute dtype (mixed.h) that each op's descriptor or dtype
 * argument names, and `supports` says which the backend has: float32 everywhere, float16
 * and bfloat16 on CUDA, bfloat16 on a CPU with AVX-512 BF16 (mixed precision). A backend given a dtype it does not support
 * fails with BT_ERR_UNSUPPORTED.
 *
 * Checklist when adding an op: a slot here, the CPU implementation (lib/cpu_backend.c and,
 * for the heavy ones, lib/cpu.c), the CUDA one (lib/cuda/backend.cu, and its kernel in
 * lib/cuda/kernels.cu), the call in lib/run.c, and tests (tests/unit/test_cpu.c, and the
 * CPU-against-CUDA comparison in tests/gpu/test_cuda.c).
 */
#ifndef BT_BACKEND_H
#define BT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "augment.h"
#include "cpu.h"
#include "mixed.h"

/* A run of parameters that the optimizer updates with the same weight-decay rule. */
struct bt_sgd_range {
	size_t offset, count;  /* in floats within the arena */
	int decay;             /* 1: weight decay applies */
};

/* A batch as the loader gives it for a device (aug.defer_colour): uint8 crops, and for
 * each the colour operations, lighting and normalisation still to apply, with mixup on
 * top. All of it in host memory. */
struct bt_u8_batch {
	const uint8_t *x;                   /* (n, size, size, channels) */
	const struct bt_aug_colour *colour; /* (n); NULL: normalisation alone */
	int n, size, channels;              /* channels 1 or 3 */
	float mean[3], std[3];              /* the normalisation, by channel */
	int mixup;                          /* 1: x_i = lam x_i + (1 - lam) x_(n-1-i) after */
	float lam;
};

struct bt_backend_i {
	const char *name;
	const char *(*describe)(void *ctx);
	void (*destroy)(void *ctx);

	/* 1 when the ops below compute in dtype (enum bt_dtype, mixed.h), given in their
	 * descriptors or dtype arguments. Every backend computes in float32; the others are
	 * mixed precision, as below. */
	int (*supports)(void *ctx, int dtype);

	int (*alloc)(void *ctx, size_t bytes, void **p);
	void (*release)(void *ctx, void *p);
	int (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*download)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*zero)(void *ctx, void *p, size_t bytes);

	/* The heavy kernels, with the descriptors and semantics of cpu.h. With a descriptor's
	 * dtype float16 or bfloat16, the activations and their gradients (x, y, dx, dy) and
	 * the weights w are of that type, computed with float32 accumulation (on CUDA a
	 * convolution's bias and post-operations follow cuDNN's rounding to the dtype, so
	 * its output is rounded twice); biases, every
	 * gradient of a parameter (dw, db, dgamma, dbeta, added into as always) and every
	 * batch-norm parameter and statistic stay float32. */
	int (*conv_fwd)(void *ctx, const struct bt_conv_desc *d, const void *x, const void *w,
			const float *b, void *y);
	int (*conv_bwd_data)(void *ctx, const struct bt_conv_desc *d, const void *dy, const void *w,
			     void *dx);
	int (*conv_bwd_weights)(void *ctx, const struct bt_conv_desc *d, const void *x, const void *dy,
				float *dw, float *db);
	int (*bn_fwd_train)(void *ctx, const struct bt_bn_desc *d, const void *x, const float *gamma,
			    const float *beta, float *running_mean, float *running_var, float *save_mean,
			    float *save_invstd, void *y);
	int (*bn_fwd_infer)(void *ctx, const struct bt_bn_desc *d, const void *x, const float *gamma,
			    const float *beta, const float *running_mean, const float *running_var,
			    void *y);
	int (*bn_bwd)(void *ctx, const struct bt_bn_desc *d, const void *x, const void *dy,
		      const float *gamma, const float *save_mean, const float *save_invstd, void *dx,
		      float *dgamma, float *dbeta);
	size_t (*pool_ws_bytes)(void *ctx, const struct bt_pool_desc *d);
	int (*pool_fwd)(void *ctx, const struct bt_pool_desc *d, const void *x, void *y, void *ws);
	int (*pool_bwd)(void *ctx, const struct bt_pool_desc *d, const void *dy, const void *ws,
			void *dx);
	int (*fc_fwd)(void *ctx, const struct bt_fc_desc *d, const void *x, const void *w,
		      const float *b, void *y);
	int (*fc_bwd)(void *ctx, const struct bt_fc_desc *d, const void *x, const void *dy,
		      const void *w, void *dx, float *dw, float *db);

	/* Elementwise and data movement on tensors of dtype; n counts elements. Arithmetic is
	 * in float32, rounded once to dtype. relu_fwd allows y == x, add allows y == a or
	 * y == b. */
	int (*relu_fwd)(void *ctx, int dtype, const void *x, void *y, size_t n);
	int (*relu_bwd)(void *ctx, int dtype, const void *y, const void *dy, void *dx, size_t n);
	int (*add)(void *ctx, int dtype, const void *a, const void *b, void *y, size_t n);
	int (*accumulate)(void *ctx, int dtype, void *y, const void *x, size_t n);     /* y += x */
	int (*copy)(void *ctx, int dtype, void *y, const void *x, size_t n);
	/* (N,HW,C) -> (N,C) mean, and its adjoint. */
	int (*gap_fwd)(void *ctx, int dtype, const void *x, void *y, int n, size_t hw, int c);
	int (*gap_bwd)(void *ctx, int dtype, const void *dy, void *dx, int n, size_t hw, int c);
	/* Copies channels [off, off+cj) of a (P, co) tensor from / to a (P, cj) one. */
	int (*concat_fwd)(void *ctx, int dtype, const void *xj, void *y, size_t pixels, int cj, int co,
			  int off);
	int (*concat_bwd)(void *ctx, int dtype, const void *dy, void *dxj, size_t pixels, int cj, int co,
			  int off);
	/* mask[k] = 0 with probability p, else 1/(1-p) (rounded to dtype), from a hash of
	 * (seed, k); y = x mask, computed with the float32 1/(1-p) and rounded once (in a half
	 * dtype the backward's dy mask differs from it by that rounding of the mask). */
	int (*dropout_fwd)(void *ctx, int dtype, const void *x, void *y, void *mask, size_t n, float p,
			   uint64_t seed);
	int (*mul)(void *ctx, int dtype, const void *a, const void *b, void *y, size_t n);

	/* Inference, float32: conv weights (cout, per_out) and bias (cout, or NULL for none)
	 * with a batch norm folded in: w' = w g / sqrt(var + eps), b' = beta + (b - mean) g /
	 * sqrt(var + eps). */
	int (*bn_fold)(void *ctx, const float *w, const float *bias, const float *gamma,
		       const float *beta, const float *mean, const float *var, float eps, int cout,
		       size_t per_out, float *w_out, float *b_out);

	/* Softmax cross-entropy of (n, K) float32 logits divided by T, against labels smoothed
	 * by eps (1 - eps on the class, eps/(K-1) elsewhere) or soft targets (n, K); writes
	 * dlogits = (p - q) / (n T) and the mean loss. labels, soft: device memory. */
	int (*softmax_ce)(void *ctx, const float *logits, const int32_t *labels, const float *soft,
			  int n, int K, float eps, float T, float *dlogits, double *loss);

	/* SGD with Nesterov momentum over the ranges of the float32 arenas w, dw, v (run.h),
	 * the gradient taken as dw * gscale (1 / S undoes a loss scale S; 1 leaves dw as it
	 * is, bit for bit). */
	int (*sgd)(void *ctx, float *w, const float *dw, float *v, const struct bt_sgd_range *ranges,
		   int nranges, float lr, float momentum, float wd, float gscale);

	/* Mixed precision. y = scale * x, x of type xt and y of type yt, n elements: the
	 * product in float32, then rounded to nearest even into float16 or bfloat16 (NaN stays
	 * NaN; beyond the range is an infinity), or exact into float32. Every backend has it,
	 * for every pair of types, so the CPU's is the reference for the others'. */
	int (*cast)(void *ctx, const void *x, int xt, void *y, int yt, size_t n, float scale);
	/* *found = 1 when one of the n floats of x is an infinity or a NaN, else 0. */
	int (*nonfinite)(void *ctx, const float *x, size_t n, int *found);

	/* Optional (NULL: the backend works synchronously): returns when every operation
	 * queued so far has finished; for timing. */
	int (*sync)(void *ctx);
	/* Optional (NULL: the process's own memory, nothing to report): bytes of device memory
	 * the backend's allocations and workspaces hold now, and held at most so far. */
	int (*memory)(void *ctx, size_t *now, size_t *peak);

	/* Optional (NULL: malloc and free): host memory the backend copies from fastest
	 * (page-locked on CUDA, so that input_u8's copy runs asynchronously). Any thread may
	 * call them (the loader's workers do); NULL when out of memory. */
	void *(*host_alloc)(void *ctx, size_t bytes);
	void (*host_free)(void *ctx, void *p);

	/* The network's input from a uint8 batch: y (n, size, size, channels) of dtype is
	 * each crop through bt_aug_colour_affine(colour_i, channels, mean, std) and
	 * bt_aug_colour_apply in float32 (the same bits as lib/augment's float32 output),
	 * then, with mixup, lam y_i + (1 - lam) y_(n-1-i) in float32 as bt_mixup_batch
	 * computes it, rounded once to dtype (float32, float16 or bfloat16 on every
	 * backend, so that the CPU's is the reference). A backend that queues work may read
	 * in->x after returning: the caller keeps the batch unchanged until a call that waits
	 * for the queue (a download, the loss) has returned. */
	int (*input_u8)(void *ctx, int dtype, const struct bt_u8_batch *in, void *y);

	/* Optional (NULL: unknown): about how many more bytes alloc could hand out now (the
	 * device's free memory; on the CPU, the system's available memory within the process's
	 * address-space limit). For out-of-memory messages that name a batch that fits. */
	int (*available)(void *ctx, size_t *bytes);

	/* Optional, all three or none (NULL: run.c keeps a ReLU after a batch norm a node of its
	 * own). Training, a batch norm and the ReLU that follows it in one pass: y = max(0,
	 * bn(x)) with bn_fwd_train's statistics, and ws (bn_relu_ws_bytes for the descriptor's
	 * shape; 0 when unsupported) recording which outputs are positive; the backward masks
	 * dy with ws, then is bn_bwd's. */
	size_t (*bn_relu_ws_bytes)(void *ctx, const struct bt_bn_desc *d);
	int (*bn_relu_fwd_train)(void *ctx, const struct bt_bn_desc *d, const void *x, const float *gamma,
				 const float *beta, float *running_mean, float *running_var,
				 float *save_mean, float *save_invstd, void *y, void *ws);
	int (*bn_relu_bwd)(void *ctx, const struct bt_bn_desc *d, const void *x, const void *dy,
			   const float *gamma, const float *save_mean, const float *save_invstd,
			   const void *ws, void *dx, float *dgamma, float *dbeta);

	/* Optional, both or neither (NULL: run.c keeps three nodes). Training, the end of a
	 * residual block in one pass: a batch norm, the addition it feeds and the ReLU after
	 * that, y = max(0, bn(x) + z), with bn_fwd_train's statistics. y is neither x nor z.
	 * bn_add_relu_ok: 1 when it takes the descriptor. Backward stays the three nodes' own
	 * (the ReLU's reads y), so nothing is kept for it. */
	int (*bn_add_relu_ok)(void *ctx, const struct bt_bn_desc *d);
	int (*bn_add_relu_fwd_train)(void *ctx, const struct bt_bn_desc *d, const void *x, const void *z,
				     const float *gamma, const float *beta, float *running_mean,
				     float *running_var, float *save_mean, float *save_invstd, void *y);

	/* Inference in slices of the batch (run.c): the most bytes one image's largest
	 * activation times the slice may take, so that a layer's input and output stay in
	 * the caches (CPU); 0: whole batches (a GPU wants them whole). */
	size_t infer_slice_bytes;
};

struct bt_backend {
	const struct bt_backend_i *i;
	void *ctx;
};

/* The shape rules of a uint8 batch (x given, n, size >= 1, channels 1 or 3). */
static inline int bt_u8_batch_ok(const struct bt_u8_batch *in)
{
	return in->x && in->n >= 1 && in->size >= 1 && in->size <= 65535 &&
	       (in->channels == 1 || in->channels == 3);
}

/* The CPU backend (oneDNN and plain C) with up to `threads` threads (0: all). */
int bt_backend_cpu(struct bt_backend *be, int threads);

/* The CUDA backend (lib/cuda/: cuDNN, cuBLAS and bt's kernels; float32, and float16 and
 * bfloat16 for mixed precision) on device `device`.
 * Its buffers are device memory: read and write them with upload and download only. Calls
 * must come from the thread that made it. BT_ERR_UNSUPPORTED in a build without CUDA or
 * cuDNN; BT_ERR_NOTFOUND when the device is not visible (the detail says why). */
int bt_backend_cuda(struct bt_backend *be, int device);
/* TF32 tensor-core math for the CUDA backend's convolutions and fc layers: faster, about
 * 1e-3 relative error. Off by default (plain FP32). BT_ERR_INVALID for another backend. */
int bt_backend_cuda_set_tf32(struct bt_backend *be, int on);
/* How the CUDA backend chooses each convolution shape's algorithms: off (the default, or
 * BT_CUDA_CONV in the environment when the backend is made, "find" for on): cuDNN's
 * heuristics, deterministic algorithms first, so two runs give the same bits; on: timed on
 * the device at a shape's first use (cudnnFind*, seconds in all), the fastest whatever its
 * determinism, as PyTorch's cudnn.benchmark does. Set it before making a run. BT_ERR_INVALID
 * for another backend. */
int bt_backend_cuda_set_conv_find(struct bt_backend *be, int on);
/* Who does the CUDA backend's batch norms. AUTO (the default, or BT_CUDA_BN in the
 * environment when the backend is made: "own" or "cudnn"): cuDNN for float32 and float16,
 * bt's kernels for bfloat16 and for one value per channel. OWN: bt's kernels for every
 * dtype, which also fold the ReLU after a batch norm into it in training. CUDNN: cuDNN
 * wherever it takes the dtype. Set it before making a run (bt_run_new): a run plans its
 * fused batch norms once. BT_ERR_INVALID for another backend or policy. */
enum { BT_CUDA_BN_AUTO = 0, BT_CUDA_BN_OWN = 1, BT_CUDA_BN_CUDNN = 2 };
int bt_backend_cuda_set_bn(struct bt_backend *be, int policy);

/* The backend a --device option names: "cpu" (or NULL; with `threads`), "cuda" (device 0) or
 * "cuda:N". BT_ERR_INVALID for anything else. */
int bt_backend_open(struct bt_backend *be, const char *device, int threads);

void bt_backend_free(struct bt_backend *be);

#endif
