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
 * Checklist when adding an op: a slot here, the CPU implementation (lib/cpu_backend.c and,
 * for the heavy ones, lib/cpu.c), the CUDA one (lib/cuda/backend.cu, and its kernel in
 * lib/cuda/kernels.cu), the call in lib/run.c, and tests (tests/unit/test_cpu.c, and the
 * CPU-against-CUDA comparison in tests/gpu/test_cuda.c).
 */
#ifndef BT_BACKEND_H
#define BT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "cpu.h"

/* A run of parameters that the optimizer updates with the same weight-decay rule. */
struct bt_sgd_range {
	size_t offset, count;  /* in floats within the arena */
	int decay;             /* 1: weight decay applies */
};

struct bt_backend_i {
	const char *name;
	const char *(*describe)(void *ctx);
	void (*destroy)(void *ctx);

	int (*alloc)(void *ctx, size_t bytes, void **p);
	void (*release)(void *ctx, void *p);
	int (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*download)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*zero)(void *ctx, void *p, size_t bytes);

	/* The heavy kernels, with the descriptors and semantics of cpu.h. */
	int (*conv_fwd)(void *ctx, const struct bt_conv_desc *d, const float *x, const float *w,
			const float *b, float *y);
	int (*conv_bwd_data)(void *ctx, const struct bt_conv_desc *d, const float *dy, const float *w,
			     float *dx);
	int (*conv_bwd_weights)(void *ctx, const struct bt_conv_desc *d, const float *x, const float *dy,
				float *dw, float *db);
	int (*bn_fwd_train)(void *ctx, const struct bt_bn_desc *d, const float *x, const float *gamma,
			    const float *beta, float *running_mean, float *running_var, float *save_mean,
			    float *save_invstd, float *y);
	int (*bn_fwd_infer)(void *ctx, const struct bt_bn_desc *d, const float *x, const float *gamma,
			    const float *beta, const float *running_mean, const float *running_var,
			    float *y);
	int (*bn_bwd)(void *ctx, const struct bt_bn_desc *d, const float *x, const float *dy,
		      const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
		      float *dgamma, float *dbeta);
	size_t (*pool_ws_bytes)(void *ctx, const struct bt_pool_desc *d);
	int (*pool_fwd)(void *ctx, const struct bt_pool_desc *d, const float *x, float *y, void *ws);
	int (*pool_bwd)(void *ctx, const struct bt_pool_desc *d, const float *dy, const void *ws,
			float *dx);
	int (*fc_fwd)(void *ctx, const struct bt_fc_desc *d, const float *x, const float *w,
		      const float *b, float *y);
	int (*fc_bwd)(void *ctx, const struct bt_fc_desc *d, const float *x, const float *dy,
		      const float *w, float *dx, float *dw, float *db);

	/* Elementwise and data movement; n counts floats. relu_fwd allows y == x, add allows
	 * y == a or y == b. */
	int (*relu_fwd)(void *ctx, const float *x, float *y, size_t n);
	int (*relu_bwd)(void *ctx, const float *y, const float *dy, float *dx, size_t n);
	int (*add)(void *ctx, const float *a, const float *b, float *y, size_t n);
	int (*accumulate)(void *ctx, float *y, const float *x, size_t n);       /* y += x */
	int (*copy)(void *ctx, float *y, const float *x, size_t n);
	/* (N,HW,C) -> (N,C) mean, and its adjoint. */
	int (*gap_fwd)(void *ctx, const float *x, float *y, int n, size_t hw, int c);
	int (*gap_bwd)(void *ctx, const float *dy, float *dx, int n, size_t hw, int c);
	/* Copies channels [off, off+cj) of a (P, co) tensor from / to a (P, cj) one. */
	int (*concat_fwd)(void *ctx, const float *xj, float *y, size_t pixels, int cj, int co, int off);
	int (*concat_bwd)(void *ctx, const float *dy, float *dxj, size_t pixels, int cj, int co, int off);
	/* mask[k] = 0 with probability p, else 1/(1-p), from a hash of (seed, k); y = x mask. */
	int (*dropout_fwd)(void *ctx, const float *x, float *y, float *mask, size_t n, float p,
			   uint64_t seed);
	int (*mul)(void *ctx, const float *a, const float *b, float *y, size_t n);

	/* Inference: conv weights (cout, per_out) and bias (cout, or NULL for none) with a
	 * batch norm folded in: w' = w g / sqrt(var + eps), b' = beta + (b - mean) g / sqrt(var + eps). */
	int (*bn_fold)(void *ctx, const float *w, const float *bias, const float *gamma,
		       const float *beta, const float *mean, const float *var, float eps, int cout,
		       size_t per_out, float *w_out, float *b_out);

	/* Softmax cross-entropy of (n, K) logits divided by T, against labels smoothed by eps
	 * (1 - eps on the class, eps/(K-1) elsewhere) or soft targets (n, K); writes
	 * dlogits = (p - q) / (n T) and the mean loss. labels, soft: device memory. */
	int (*softmax_ce)(void *ctx, const float *logits, const int32_t *labels, const float *soft,
			  int n, int K, float eps, float T, float *dlogits, double *loss);

	/* SGD with Nesterov momentum over the ranges of the arenas w, dw, v (run.h). */
	int (*sgd)(void *ctx, float *w, const float *dw, float *v, const struct bt_sgd_range *ranges,
		   int nranges, float lr, float momentum, float wd);
};

struct bt_backend {
	const struct bt_backend_i *i;
	void *ctx;
};

/* The CPU backend (oneDNN and plain C) with up to `threads` threads (0: all). */
int bt_backend_cpu(struct bt_backend *be, int threads);

/* The CUDA backend (lib/cuda/: cuDNN, cuBLAS and bt's kernels, FP32) on device `device`.
 * Its buffers are device memory: read and write them with upload and download only. Calls
 * must come from the thread that made it. BT_ERR_UNSUPPORTED in a build without CUDA or
 * cuDNN; BT_ERR_NOTFOUND when the device is not visible (the detail says why). */
int bt_backend_cuda(struct bt_backend *be, int device);
/* TF32 tensor-core math for the CUDA backend's convolutions and fc layers: faster, about
 * 1e-3 relative error. Off by default (plain FP32). BT_ERR_INVALID for another backend. */
int bt_backend_cuda_set_tf32(struct bt_backend *be, int on);

/* The backend a --device option names: "cpu" (or NULL; with `threads`), "cuda" (device 0) or
 * "cuda:N". BT_ERR_INVALID for anything else. */
int bt_backend_open(struct bt_backend *be, const char *device, int threads);

void bt_backend_free(struct bt_backend *be);

#endif
