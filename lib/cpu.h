/* cpu.h: the CPU backend's kernels, one function per op and direction, NHWC, in float32
 * or bfloat16.
 *
 * Convolution, batch norm, pooling and fully connected layers run through oneDNN (Debian's
 * libdnnl, the library PyTorch's CPU path uses), with primitives created once per shape and
 * cached in the context; elementwise ops and losses are plain C. Every kernel has a naive
 * reference and a finite-difference gradient test in tests/unit/test_ops.c. Backward
 * kernels ADD into parameter gradients (dw, db, dgamma, dbeta), which start at zero each
 * step, and OVERWRITE input gradients (dx).
 *
 * Shapes: x (N,H,W,C); conv weights (Cout,KH,KW,Cin/groups); fc weights (Cout,Cin).
 *
 * Each descriptor ends with dtype, the compute type (enum bt_dtype, mixed.h), which an
 * initialiser that leaves it out sets to 0, float32. These kernels also take bfloat16
 * (mixed precision, as backend.h says for each argument: activations, their gradients and
 * the weights w in bfloat16, accumulated in float32; biases, parameter gradients and batch
 * norm's parameters and statistics in float32), on CPUs with AVX-512 BF16 (bt_cpu_bf16).
 * float16 is refused: oneDNN 2.6 has no float16 training kernels for x86 CPUs.
 */
#ifndef BT_CPU_H
#define BT_CPU_H

#include <stddef.h>
#include <stdint.h>

struct bt_cpu;

/* threads: oneDNN and the plain C kernels use up to this many threads (0: all CPUs). */
int bt_cpu_new(struct bt_cpu **cpu, int threads);
void bt_cpu_free(struct bt_cpu *cpu);
/* "oneDNN v2.6.3 (CPU ISA: AVX-512 ...)" or "plain C" when built without oneDNN. */
const char *bt_cpu_describe(struct bt_cpu *cpu);
/* How many primitives this context has created (cache misses); for tests. */
int bt_cpu_cache_misses(struct bt_cpu *cpu);
/* 1 when oneDNN computes bfloat16 natively here (AVX-512 BF16, or AMX), else 0. Elsewhere
 * it emulates the instructions on AVX-512 or has only reference loops: correct, but slower
 * than float32, so the CPU backend does not offer bfloat16 there. */
int bt_cpu_bf16(struct bt_cpu *cpu);

struct bt_conv_desc {
	int n, h, w, c;             /* input */
	int oh, ow, cout;           /* output */
	int kh, kw, sh, sw, ph, pw, dh, dw, groups; /* dh, dw: dilation, 1 = none */
	int bias;
	int dtype;                  /* enum bt_dtype; 0: float32 */
	int post;                   /* forward only: BT_CONV_POST_* flags, 0 for none */
};
/* Post-operations fused into a forward convolution (inference): with SUM, the output is
 * added onto what y already holds; with RELU, the result goes through max(0, .). Both:
 * y = max(0, conv(x, w) + b + y). Backward ignores them. */
enum { BT_CONV_POST_SUM = 1, BT_CONV_POST_RELU = 2 };
int bt_cpu_conv_fwd(struct bt_cpu *cpu, const struct bt_conv_desc *d, const void *x /* (N,H,W,C) */,
		    const void *w /* (Cout,KH,KW,C/g) */, const float *b /* (Cout) or NULL */,
		    void *y /* (N,OH,OW,Cout) */);
/* oneDNN's name for the kernel that runs pass 0 (forward), 1 (backward data) or 2 (backward
 * weights) of d, such as "jit_wino_4x3:avx512_core"; NULL if it cannot be built. */
const char *bt_cpu_conv_impl(struct bt_cpu *cpu, const struct bt_conv_desc *d, int pass);
int bt_cpu_conv_bwd_data(struct bt_cpu *cpu, const struct bt_conv_desc *d, const void *dy,
			 const void *w, void *dx);
int bt_cpu_conv_bwd_weights(struct bt_cpu *cpu, const struct bt_conv_desc *d, const void *x,
			    const void *dy, float *dw, float *db /* NULL without bias */);

struct bt_bn_desc {
	int n, h, w, c;
	float eps, momentum;        /* running = (1 - momentum) * running + momentum * batch */
	int dtype;                  /* enum bt_dtype; 0: float32 */
};
/* Training: batch statistics; saves mean and inverse std (C each) for backward; updates the
 * running statistics (variance unbiased, as PyTorch). */
int bt_cpu_bn_fwd_train(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
			const float *gamma, const float *beta, float *running_mean, float *running_var,
			float *save_mean, float *save_invstd, void *y);
int bt_cpu_bn_fwd_infer(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
			const float *gamma, const float *beta, const float *running_mean,
			const float *running_var, void *y);
int bt_cpu_bn_bwd(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x, const void *dy,
		  const float *gamma, const float *save_mean, const float *save_invstd, void *dx,
		  float *dgamma, float *dbeta);
/* Training, batch norm and the ReLU after it in one pass (oneDNN's fused flag):
 * y = max(0, bn(x)), statistics as bt_cpu_bn_fwd_train; ws (bt_cpu_bn_relu_ws_bytes for
 * the shape) records which outputs are positive. The backward masks dy with ws, then is
 * bt_cpu_bn_bwd's. */
size_t bt_cpu_bn_relu_ws_bytes(struct bt_cpu *cpu, const struct bt_bn_desc *d);
int bt_cpu_bn_relu_fwd_train(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
			     const float *gamma, const float *beta, float *running_mean,
			     float *running_var, float *save_mean, float *save_invstd, void *y,
			     void *ws);
int bt_cpu_bn_relu_bwd(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
		       const void *dy, const float *gamma, const float *save_mean,
		       const float *save_invstd, const void *ws, void *dx, float *dgamma,
		       float *dbeta);

struct bt_pool_desc {
	int n, h, w, c, oh, ow;
	int kh, kw, sh, sw, ph, pw;
	int max;                    /* 1 max, 0 average */
	int count_pad;              /* average: divide by the full window, padding included */
	int dtype;                  /* enum bt_dtype; 0: float32 */
};
/* ws: workspace for max pooling's argmax, bt_cpu_pool_ws_bytes bytes (0 for average). */
size_t bt_cpu_pool_ws_bytes(struct bt_cpu *cpu, const struct bt_pool_desc *d);
int bt_cpu_pool_fwd(struct bt_cpu *cpu, const struct bt_pool_desc *d, const void *x, void *y,
		    void *ws);
int bt_cpu_pool_bwd(struct bt_cpu *cpu, const struct bt_pool_desc *d, const void *dy,
		    const void *ws, void *dx);

struct bt_fc_desc {
	int n, cin, cout, bias;
	int dtype;                  /* enum bt_dtype; 0: float32 */
};
int bt_cpu_fc_fwd(struct bt_cpu *cpu, const struct bt_fc_desc *d, const void *x /* (N,Cin) */,
		  const void *w /* (Cout,Cin) */, const float *b, void *y /* (N,Cout) */);
int bt_cpu_fc_bwd(struct bt_cpu *cpu, const struct bt_fc_desc *d, const void *x, const void *dy,
		  const void *w, void *dx /* NULL: not needed */, float *dw, float *db);

/* The shape rules of the descriptors above, shared by every backend (lib/desc.c): BT_OK,
 * or BT_ERR_INVALID with a message saying what is wrong. */
int bt_conv_desc_check(const struct bt_conv_desc *d);
int bt_bn_desc_check(const struct bt_bn_desc *d);
int bt_pool_desc_check(const struct bt_pool_desc *d);
int bt_fc_desc_check(const struct bt_fc_desc *d);

#endif
