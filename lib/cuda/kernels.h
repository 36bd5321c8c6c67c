/* kernels.h: bt's own CUDA kernels, the parts of the CUDA backend (backend.cu) that are not
 * cuDNN or cuBLAS: elementwise ops, pooling, global average pooling, concatenation, dropout,
 * batch-norm folding, the loss, SGD, and the bias terms of convolution and fc. Each launcher
 * enqueues its kernels on stream s and returns what cudaGetLastError says about the launch;
 * errors of the execution itself surface at the next synchronisation. Semantics are those
 * of the CPU backend (lib/cpu_backend.c, lib/cpu.c), bit for bit where the CPU's float
 * order allows it: the elementwise ops, global average pooling, dropout, bn_fold and SGD
 * round exactly as the CPU does (no contracted multiply-adds).
 */
#ifndef BT_CUDA_KERNELS_H
#define BT_CUDA_KERNELS_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "../cpu.h"
}

/* An SGD range as the kernel reads it: start is the range's first index in the
 * concatenation of all ranges, so that a thread finds its range by binary search. */
struct bt_cuda_range {
	size_t offset, count, start;
	int decay;
};

cudaError_t bt_k_relu_fwd(cudaStream_t s, const float *x, float *y, size_t n);
cudaError_t bt_k_relu_bwd(cudaStream_t s, const float *y, const float *dy, float *dx, size_t n);
cudaError_t bt_k_add(cudaStream_t s, const float *a, const float *b, float *y, size_t n);
cudaError_t bt_k_accumulate(cudaStream_t s, float *y, const float *x, size_t n);
cudaError_t bt_k_mul(cudaStream_t s, const float *a, const float *b, float *y, size_t n);
cudaError_t bt_k_gap_fwd(cudaStream_t s, const float *x, float *y, int n, size_t hw, int c);
cudaError_t bt_k_gap_bwd(cudaStream_t s, const float *dy, float *dx, int n, size_t hw, int c);
cudaError_t bt_k_concat(cudaStream_t s, const float *from, float *to, size_t pixels, int cj, int co,
			int off, int fwd);
cudaError_t bt_k_dropout(cudaStream_t s, const float *x, float *y, float *mask, size_t n, float p,
			 uint64_t seed);
cudaError_t bt_k_bn_fold(cudaStream_t s, const float *w, const float *bias, const float *gamma,
			 const float *beta, const float *mean, const float *var, float eps, int cout,
			 size_t per_out, float *w_out, float *b_out);
/* The running statistics' update of a batch norm over one value per channel, which cuDNN
 * cannot do (its unbiased variance divides by m - 1 = 0); the CPU takes the factor as 1
 * and the batch variance is 0. */
cudaError_t bt_k_bn_running_one(cudaStream_t s, float *running_mean, float *running_var,
				const float *mean, int c, float momentum);

/* Pooling, NHWC. ws (max only): int32 per output element, the winner's h * W + w. */
size_t bt_k_pool_ws_bytes(const struct bt_pool_desc *d);
cudaError_t bt_k_pool_fwd(cudaStream_t s, const struct bt_pool_desc *d, const float *x, float *y,
			  int32_t *ws);
cudaError_t bt_k_pool_bwd(cudaStream_t s, const struct bt_pool_desc *d, const float *dy,
			  const int32_t *ws, float *dx);

/* y (P, C) += b (C) for each of the P rows; rows (P, C) = b. */
cudaError_t bt_k_bias_add(cudaStream_t s, float *y, const float *b, size_t P, int C);
cudaError_t bt_k_bias_set(cudaStream_t s, float *y, const float *b, size_t P, int C);
/* db (C) += the column sums of dy (P, C), in a fixed order (deterministic); tmp holds
 * bt_k_colsum_tmp_bytes(P, C) bytes of device memory. */
size_t bt_k_colsum_tmp_bytes(size_t P, int C);
cudaError_t bt_k_colsum_add(cudaStream_t s, float *db, const float *dy, size_t P, int C, float *tmp);

/* Softmax cross-entropy, one block per image: dz as the CPU computes it, row_loss[m] the
 * image's loss, row_bad[m] 1 when its label is outside [0, K) (then the row is skipped). */
cudaError_t bt_k_softmax_ce(cudaStream_t s, const float *z, const int32_t *labels, const float *soft,
			    int n, int K, float eps, float T, float *dz, double *row_loss, int *row_bad);

cudaError_t bt_k_sgd(cudaStream_t s, float *w, const float *dw, float *v,
		     const struct bt_cuda_range *ranges, int nranges, size_t total, float lr,
		     float momentum, float wd);

#endif
