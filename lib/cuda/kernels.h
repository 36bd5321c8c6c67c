/* kernels.h: bt's own CUDA kernels, the parts of the CUDA backend (backend.cu) that are not
 * cuDNN or cuBLAS: elementwise ops, pooling, global average pooling, concatenation, dropout,
 * batch-norm folding, the loss, SGD, the bias terms of convolution and fc, the input from
 * uint8 crops (colour, lighting, normalisation and mixup in one kernel), and for mixed
 * precision the casts, the overflow check and bfloat16's batch norm. Each launcher enqueues
 * its kernels on stream s and returns what cudaGetLastError says about the launch; errors
 * of the execution itself surface at the next synchronisation. Semantics are those of the
 * CPU backend (lib/cpu_backend.c, lib/cpu.c), bit for bit where the CPU's float order
 * allows it: the elementwise ops, global average pooling, dropout, bn_fold and SGD round
 * exactly as the CPU does (no contracted multiply-adds).
 *
 * Launchers that take `int dt` (enum bt_dtype, mixed.h) run on tensors of that type:
 * float32, float16 or bfloat16, loaded into float32, computed there and rounded once to
 * nearest even when stored. An unknown dt is cudaErrorInvalidValue.
 */
#ifndef BT_CUDA_KERNELS_H
#define BT_CUDA_KERNELS_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "../augment.h"
#include "../cpu.h"
#include "../mixed.h"
}

/* An SGD range as the kernel reads it: start is the range's first index in the
 * concatenation of all ranges, so that a thread finds its range by binary search. */
struct bt_cuda_range {
	size_t offset, count, start;
	int decay;
};

cudaError_t bt_k_relu_fwd(cudaStream_t s, int dt, const void *x, void *y, size_t n);
cudaError_t bt_k_relu_bwd(cudaStream_t s, int dt, const void *y, const void *dy, void *dx, size_t n);
cudaError_t bt_k_add(cudaStream_t s, int dt, const void *a, const void *b, void *y, size_t n);
cudaError_t bt_k_accumulate(cudaStream_t s, int dt, void *y, const void *x, size_t n);
cudaError_t bt_k_mul(cudaStream_t s, int dt, const void *a, const void *b, void *y, size_t n);
cudaError_t bt_k_gap_fwd(cudaStream_t s, int dt, const void *x, void *y, int n, size_t hw, int c);
cudaError_t bt_k_gap_bwd(cudaStream_t s, int dt, const void *dy, void *dx, int n, size_t hw, int c);
cudaError_t bt_k_concat(cudaStream_t s, int dt, const void *from, void *to, size_t pixels, int cj,
			int co, int off, int fwd);
cudaError_t bt_k_dropout(cudaStream_t s, int dt, const void *x, void *y, void *mask, size_t n, float p,
			 uint64_t seed);
cudaError_t bt_k_bn_fold(cudaStream_t s, const float *w, const float *bias, const float *gamma,
			 const float *beta, const float *mean, const float *var, float eps, int cout,
			 size_t per_out, float *w_out, float *b_out);

/* Pooling, NHWC, of d->dtype. ws (max only): int32 per output element, the winner's
 * h * W + w. */
size_t bt_k_pool_ws_bytes(const struct bt_pool_desc *d);
cudaError_t bt_k_pool_fwd(cudaStream_t s, const struct bt_pool_desc *d, const void *x, void *y,
			  int32_t *ws);
cudaError_t bt_k_pool_bwd(cudaStream_t s, const struct bt_pool_desc *d, const void *dy,
			  const int32_t *ws, void *dx);

/* y (P, C) of dt += b (C, float32) for each of the P rows; rows (P, C) = b. */
cudaError_t bt_k_bias_add(cudaStream_t s, int dt, void *y, const float *b, size_t P, int C);
cudaError_t bt_k_bias_set(cudaStream_t s, int dt, void *y, const float *b, size_t P, int C);
/* db (C, float32) += the column sums of dy (P, C) of dt, in a fixed order (deterministic);
 * tmp holds bt_k_colsum_tmp_bytes(P, C) bytes of device memory. */
size_t bt_k_colsum_tmp_bytes(size_t P, int C);
cudaError_t bt_k_colsum_add(cudaStream_t s, int dt, float *db, const void *dy, size_t P, int C, float *tmp);

/* Softmax cross-entropy, one block per image: dz as the CPU computes it, row_loss[m] the
 * image's loss, row_bad[m] 1 when its label is outside [0, K) (then the row is skipped). */
cudaError_t bt_k_softmax_ce(cudaStream_t s, const float *z, const int32_t *labels, const float *soft,
			    int n, int K, float eps, float T, float *dz, double *row_loss, int *row_bad);

/* The CPU's update, dw taken times gscale (1: exactly dw). */
cudaError_t bt_k_sgd(cudaStream_t s, float *w, const float *dw, float *v,
		     const struct bt_cuda_range *ranges, int nranges, size_t total, float lr,
		     float momentum, float wd, float gscale);

/* The network's input from n uint8 crops x (n, hw, C), C 1 or 3: element c of a pixel of
 * image i is a[i] applied as augment.h's struct bt_aug_affine says (its float order, each
 * operation rounded on its own), then with mix, lam v_i + mu v_(n-1-i) (mu = 1 - lam as
 * the host rounds it; bt_mixup_batch's products and sum), stored once into y of dt. x and
 * a: device memory. */
cudaError_t bt_k_input_u8(cudaStream_t s, int dt, const uint8_t *x, const struct bt_aug_affine *a,
			  int n, size_t hw, int C, int mix, float lam, float mu, void *y);

/* ---- mixed precision -------------------------------------------------------------------- */

/* y (yt) = scale * x (xt), the product in float32 (skipped when scale is 1), rounded to
 * nearest even by the hardware conversions (__float2half_rn, __float2bfloat16_rn): the
 * reference conversions' results for every value but a NaN, whose payload the hardware
 * does not keep (it is a NaN all the same). */
cudaError_t bt_k_cast(cudaStream_t s, const void *x, int xt, void *y, int yt, size_t n, float scale);
/* *flag (device memory, zeroed by the caller) = 1 when one of the n floats is not finite;
 * one pass, no atomics (every writer writes 1). */
cudaError_t bt_k_nonfinite(cudaStream_t s, const float *x, size_t n, int *flag);
/* dw (n, float32) += w (n, dt): a parameter gradient that cuDNN computed in the half type. */
cudaError_t bt_k_add_to_f32(cudaStream_t s, int dt, float *dw, const void *w, size_t n);

/* Batch norm of cpu.h's semantics on (N,H,W,C) tensors of d->dtype with float32
 * parameters and statistics, for the types cuDNN's batch norm does not take (bfloat16), and
 * for any type when asked: per-channel sums in a fixed order (deterministic) of float32
 * partial sums over chunks of rows, added in double. ws: bt_k_bn_ws_bytes(d) bytes of
 * device memory. mask (NULL: none): a ReLU folded into the batch norm, one bit per element
 * (bt_k_bn_mask_bytes(d), 4-byte aligned), set by the forward where its output is positive;
 * the backward then takes dy as 0 where the bit is clear. z (NULL: none; then no mask): the
 * end of a residual block, y = max(0, bn(x) + z). */
size_t bt_k_bn_ws_bytes(const struct bt_bn_desc *d);
size_t bt_k_bn_mask_bytes(const struct bt_bn_desc *d);
cudaError_t bt_k_bn_fwd_train(cudaStream_t s, const struct bt_bn_desc *d, const void *x,
			      const float *gamma, const float *beta, float *running_mean,
			      float *running_var, float *save_mean, float *save_invstd, void *y,
			      void *mask, const void *z, void *ws);
cudaError_t bt_k_bn_fwd_infer(cudaStream_t s, const struct bt_bn_desc *d, const void *x,
			      const float *gamma, const float *beta, const float *running_mean,
			      const float *running_var, void *y);
cudaError_t bt_k_bn_bwd(cudaStream_t s, const struct bt_bn_desc *d, const void *x, const void *dy,
			const void *mask, const float *gamma, const float *save_mean,
			const float *save_invstd, void *dx, float *dgamma, float *dbeta, void *ws);

#endif
