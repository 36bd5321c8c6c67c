/* kernels.cu: the CUDA backend's own kernels (kernels.h): whatever cuDNN and cuBLAS do not
 * cover, written to the CPU backend's semantics. Elementwise kernels are grid-stride loops;
 * where the CPU computes a value with separately rounded float operations (SGD, bn_fold,
 * the division of global average pooling), these use the _rn intrinsics, which nvcc never
 * contracts into a fused multiply-add, so both backends produce the same bits. Reductions
 * (bias gradients, the loss, batch norm's statistics) have a fixed decomposition: no
 * atomics, the same result on every run. Pooling backward gathers (one thread per input
 * element walks the windows that cover it) rather than scattering with atomics, for the
 * same reason.
 *
 * Kernels on activations are templates over the element type T (float, __half,
 * __nv_bfloat16) that load into float with ld, compute in float and round once with st;
 * for float both are plain loads and stores, so the float32 kernels are the ones they were.
 * DISPATCH turns a launcher's dtype into T.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>
#include <math.h>

#include "kernels.h"
#include "../rng.h"

#define THREADS 256

/* Blocks for n elements at THREADS each; grid-stride loops cover anything beyond the cap. */
static unsigned grid_for(size_t n)
{
	size_t b = (n + THREADS - 1) / THREADS;
	if (b < 1)
		b = 1;
	if (b > (1u << 20))
		b = 1u << 20;
	return (unsigned)b;
}

#define GRID_STRIDE(i, n)                                                               \
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
	     i += (size_t)gridDim.x * blockDim.x)

/* Element access in float, whatever the storage type; stores round to nearest even. */
__device__ __forceinline__ float ld(const float *p) { return *p; }
__device__ __forceinline__ float ld(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float *p, float v) { *p = v; }
__device__ __forceinline__ void st(__half *p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* Runs the statements with T the element type of dtype dt; an unknown dt returns
 * cudaErrorInvalidValue from the launcher. */
#define DISPATCH(dt, T, ...)                                                            \
	switch (dt) {                                                                   \
	case BT_DTYPE_F32: {                                                            \
		typedef float T;                                                        \
		__VA_ARGS__;                                                            \
		break;                                                                  \
	}                                                                               \
	case BT_DTYPE_F16: {                                                            \
		typedef __half T;                                                       \
		__VA_ARGS__;                                                            \
		break;                                                                  \
	}                                                                               \
	case BT_DTYPE_BF16: {                                                           \
		typedef __nv_bfloat16 T;                                                \
		__VA_ARGS__;                                                            \
		break;                                                                  \
	}                                                                               \
	default:                                                                        \
		return cudaErrorInvalidValue;                                           \
	}

/* ---- elementwise ------------------------------------------------------------------------ */

template <typename T>
__global__ void k_relu_fwd(const T *x, T *y, size_t n)
{
	GRID_STRIDE(i, n) {
		float v = ld(x + i);
		st(y + i, v > 0.0f ? v : 0.0f);
	}
}

template <typename T>
__global__ void k_relu_bwd(const T *y, const T *dy, T *dx, size_t n)
{
	GRID_STRIDE(i, n) st(dx + i, ld(y + i) > 0.0f ? ld(dy + i) : 0.0f);
}

/* y may be a or b: each element is read before it is written, by the same thread. */
template <typename T>
__global__ void k_add(const T *a, const T *b, T *y, size_t n)
{
	GRID_STRIDE(i, n) st(y + i, ld(a + i) + ld(b + i));
}

template <typename T>
__global__ void k_mul(const T *a, const T *b, T *y, size_t n)
{
	GRID_STRIDE(i, n) st(y + i, ld(a + i) * ld(b + i));
}

cudaError_t bt_k_relu_fwd(cudaStream_t s, int dt, const void *x, void *y, size_t n)
{
	if (n)
		DISPATCH(dt, T, k_relu_fwd<T><<<grid_for(n), THREADS, 0, s>>>((const T *)x, (T *)y, n));
	return cudaGetLastError();
}

cudaError_t bt_k_relu_bwd(cudaStream_t s, int dt, const void *y, const void *dy, void *dx, size_t n)
{
	if (n)
		DISPATCH(dt, T, k_relu_bwd<T><<<grid_for(n), THREADS, 0, s>>>((const T *)y, (const T *)dy, (T *)dx, n));
	return cudaGetLastError();
}

cudaError_t bt_k_add(cudaStream_t s, int dt, const void *a, const void *b, void *y, size_t n)
{
	if (n)
		DISPATCH(dt, T, k_add<T><<<grid_for(n), THREADS, 0, s>>>((const T *)a, (const T *)b, (T *)y, n));
	return cudaGetLastError();
}

cudaError_t bt_k_accumulate(cudaStream_t s, int dt, void *y, const void *x, size_t n)
{
	/* y + x: the CPU's y += x, the same single rounding. */
	if (n)
		DISPATCH(dt, T, k_add<T><<<grid_for(n), THREADS, 0, s>>>((const T *)y, (const T *)x, (T *)y, n));
	return cudaGetLastError();
}

cudaError_t bt_k_mul(cudaStream_t s, int dt, const void *a, const void *b, void *y, size_t n)
{
	if (n)
		DISPATCH(dt, T, k_mul<T><<<grid_for(n), THREADS, 0, s>>>((const T *)a, (const T *)b, (T *)y, n));
	return cudaGetLastError();
}

/* ---- global average pooling, concatenation --------------------------------------------- */

/* One thread per (image, channel), summing the pixels in order as the CPU does; adjacent
 * threads read adjacent channels. */
template <typename T>
__global__ void k_gap_fwd(const T *x, T *y, int n, size_t hw, int c)
{
	GRID_STRIDE(i, (size_t)n * c) {
		size_t m = i / c, k = i % c;
		const T *xm = x + m * hw * c + k;
		float sum = 0.0f;
		for (size_t p = 0; p < hw; p++)
			sum = __fadd_rn(sum, ld(xm + p * c));
		st(y + i, __fdiv_rn(sum, (float)hw));
	}
}

template <typename T>
__global__ void k_gap_bwd(const T *dy, T *dx, size_t hw, int c, size_t total)
{
	GRID_STRIDE(i, total) {
		size_t m = i / (hw * c), k = i % c;
		st(dx + i, __fdiv_rn(ld(dy + m * c + k), (float)hw));
	}
}

cudaError_t bt_k_gap_fwd(cudaStream_t s, int dt, const void *x, void *y, int n, size_t hw, int c)
{
	size_t total = (size_t)n * c;
	if (total)
		DISPATCH(dt, T, k_gap_fwd<T><<<grid_for(total), THREADS, 0, s>>>((const T *)x, (T *)y, n, hw, c));
	return cudaGetLastError();
}

cudaError_t bt_k_gap_bwd(cudaStream_t s, int dt, const void *dy, void *dx, int n, size_t hw, int c)
{
	size_t total = (size_t)n * hw * c;
	if (total)
		DISPATCH(dt, T, k_gap_bwd<T><<<grid_for(total), THREADS, 0, s>>>((const T *)dy, (T *)dx, hw, c, total));
	return cudaGetLastError();
}

/* fwd: to (P, co) channels [off, off + cj) = from (P, cj); bwd: the reverse. A copy of
 * elements, exact in every type. */
template <typename T>
__global__ void k_concat(const T *from, T *to, size_t pixels, int cj, int co, int off, int fwd)
{
	GRID_STRIDE(i, pixels * cj) {
		size_t p = i / cj, j = i % cj;
		if (fwd)
			to[p * co + off + j] = from[i];
		else
			to[i] = from[p * co + off + j];
	}
}

cudaError_t bt_k_concat(cudaStream_t s, int dt, const void *from, void *to, size_t pixels, int cj,
			int co, int off, int fwd)
{
	size_t total = pixels * cj;
	if (total)
		DISPATCH(dt, T, k_concat<T><<<grid_for(total), THREADS, 0, s>>>((const T *)from, (T *)to, pixels,
										cj, co, off, fwd));
	return cudaGetLastError();
}

/* ---- dropout, bn_fold ------------------------------------------------------------------- */

template <typename T>
__global__ void k_dropout(const T *x, T *y, T *mask, size_t n, float p, float keep, uint64_t s)
{
	GRID_STRIDE(k, n) {
		double u = (double)(bt_mix64(s + k) >> 11) * 0x1.0p-53;
		float m = u < (double)p ? 0.0f : keep;
		st(mask + k, m);
		st(y + k, ld(x + k) * m);
	}
}

cudaError_t bt_k_dropout(cudaStream_t s, int dt, const void *x, void *y, void *mask, size_t n, float p,
			 uint64_t seed)
{
	/* The CPU backend's derivation (lib/cpu_backend.c, c_dropout_fwd), computed on the
	 * host as there: a hash of (seed, k) per element. */
	float keep = 1.0f / (1.0f - p);
	uint64_t h = bt_mix64(seed ^ UINT64_C(0x5851f42d4c957f2d));
	if (n)
		DISPATCH(dt, T, k_dropout<T><<<grid_for(n), THREADS, 0, s>>>((const T *)x, (T *)y, (T *)mask, n,
									    p, keep, h));
	return cudaGetLastError();
}

__global__ void k_bn_fold(const float *w, const float *bias, const float *gamma, const float *beta,
			  const float *mean, const float *var, float eps, int cout, size_t per_out,
			  float *w_out, float *b_out)
{
	GRID_STRIDE(i, (size_t)cout * per_out) {
		size_t o = i / per_out, k = i % per_out;
		float sc = __fdiv_rn(gamma[o], __fsqrt_rn(__fadd_rn(var[o], eps)));
		w_out[i] = __fmul_rn(w[i], sc);
		if (k == 0)
			b_out[o] = __fadd_rn(beta[o], __fmul_rn(__fsub_rn(bias ? bias[o] : 0.0f, mean[o]), sc));
	}
}

cudaError_t bt_k_bn_fold(cudaStream_t s, const float *w, const float *bias, const float *gamma,
			 const float *beta, const float *mean, const float *var, float eps, int cout,
			 size_t per_out, float *w_out, float *b_out)
{
	size_t total = (size_t)cout * per_out;
	if (total)
		k_bn_fold<<<grid_for(total), THREADS, 0, s>>>(w, bias, gamma, beta, mean, var, eps, cout,
							     per_out, w_out, b_out);
	return cudaGetLastError();
}

/* ---- pooling ---------------------------------------------------------------------------- */

/* The CPU's (oneDNN's) rules: windows start at o * s - p; only real pixels take part; max
 * keeps the first largest in (kh, kw) order; average divides by the real pixels of the
 * window, or with count_pad by kh * kw, also where a ceil-mode window runs past the right
 * padding. */
template <typename T>
__global__ void k_pool_fwd(struct bt_pool_desc d, const T *x, T *y, int32_t *ws, size_t total)
{
	GRID_STRIDE(i, total) {
		int c = (int)(i % d.c);
		size_t r = i / d.c;
		int ow = (int)(r % d.ow), oh = (int)(r / d.ow % d.oh);
		size_t n = r / ((size_t)d.ow * d.oh);
		int hs = oh * d.sh - d.ph, wst = ow * d.sw - d.pw, idx = -1, cnt = 0;
		float best = -INFINITY, sum = 0.0f;
		const T *xn = x + n * d.h * d.w * d.c + c;
		for (int kh = 0; kh < d.kh; kh++) {
			int ih = hs + kh;
			if (ih < 0 || ih >= d.h)
				continue;
			for (int kw = 0; kw < d.kw; kw++) {
				int iw = wst + kw;
				if (iw < 0 || iw >= d.w)
					continue;
				float v = ld(xn + ((size_t)ih * d.w + iw) * d.c);
				if (idx < 0 || v > best) {
					best = v;
					idx = ih * d.w + iw;
				}
				sum += v;
				cnt++;
			}
		}
		if (d.max) {
			st(y + i, best);
			ws[i] = idx;
		} else {
			st(y + i, sum / (float)(d.count_pad ? d.kh * d.kw : cnt));
		}
	}
}

/* One thread per input element, summing over the windows that cover it in (oh, ow) order. */
template <typename T>
__global__ void k_pool_bwd(struct bt_pool_desc d, const T *dy, const int32_t *ws, T *dx, size_t total)
{
	GRID_STRIDE(i, total) {
		int c = (int)(i % d.c);
		size_t r = i / d.c;
		int iw = (int)(r % d.w), ih = (int)(r / d.w % d.h);
		size_t n = r / ((size_t)d.w * d.h);
		int oh0 = ih + d.ph - d.kh + 1, ow0 = iw + d.pw - d.kw + 1;
		int oh1 = (ih + d.ph) / d.sh, ow1 = (iw + d.pw) / d.sw;
		int self = ih * d.w + iw;
		float g = 0.0f;
		oh0 = oh0 <= 0 ? 0 : (oh0 + d.sh - 1) / d.sh;
		ow0 = ow0 <= 0 ? 0 : (ow0 + d.sw - 1) / d.sw;
		oh1 = oh1 < d.oh - 1 ? oh1 : d.oh - 1;
		ow1 = ow1 < d.ow - 1 ? ow1 : d.ow - 1;
		for (int oh = oh0; oh <= oh1; oh++) {
			for (int ow = ow0; ow <= ow1; ow++) {
				size_t o = ((n * d.oh + oh) * d.ow + ow) * d.c + c;
				if (d.max) {
					if (ws[o] == self)
						g += ld(dy + o);
				} else {
					int hs = oh * d.sh - d.ph, wst = ow * d.sw - d.pw, cnt;
					if (d.count_pad) {
						cnt = d.kh * d.kw;
					} else {
						int h0 = hs > 0 ? hs : 0, h1 = hs + d.kh < d.h ? hs + d.kh : d.h;
						int w0 = wst > 0 ? wst : 0, w1 = wst + d.kw < d.w ? wst + d.kw : d.w;
						cnt = (h1 - h0) * (w1 - w0);
					}
					g += ld(dy + o) / (float)cnt;
				}
			}
		}
		st(dx + i, g);
	}
}

size_t bt_k_pool_ws_bytes(const struct bt_pool_desc *d)
{
	return d->max ? (size_t)d->n * d->oh * d->ow * d->c * sizeof(int32_t) : 0;
}

cudaError_t bt_k_pool_fwd(cudaStream_t s, const struct bt_pool_desc *d, const void *x, void *y,
			  int32_t *ws)
{
	size_t total = (size_t)d->n * d->oh * d->ow * d->c;
	if (total)
		DISPATCH(d->dtype, T, k_pool_fwd<T><<<grid_for(total), THREADS, 0, s>>>(*d, (const T *)x, (T *)y,
										       ws, total));
	return cudaGetLastError();
}

cudaError_t bt_k_pool_bwd(cudaStream_t s, const struct bt_pool_desc *d, const void *dy,
			  const int32_t *ws, void *dx)
{
	size_t total = (size_t)d->n * d->h * d->w * d->c;
	if (total)
		DISPATCH(d->dtype, T, k_pool_bwd<T><<<grid_for(total), THREADS, 0, s>>>(*d, (const T *)dy, ws,
										       (T *)dx, total));
	return cudaGetLastError();
}

/* ---- bias terms ------------------------------------------------------------------------- */

template <typename T>
__global__ void k_bias(T *y, const float *b, size_t total, int C, int add)
{
	GRID_STRIDE(i, total) {
		float v = b[i % C];
		st(y + i, add ? ld(y + i) + v : v);
	}
}

cudaError_t bt_k_bias_add(cudaStream_t s, int dt, void *y, const float *b, size_t P, int C)
{
	if (P && C)
		DISPATCH(dt, T, k_bias<T><<<grid_for(P * C), THREADS, 0, s>>>((T *)y, b, P * C, C, 1));
	return cudaGetLastError();
}

cudaError_t bt_k_bias_set(cudaStream_t s, int dt, void *y, const float *b, size_t P, int C)
{
	if (P && C)
		DISPATCH(dt, T, k_bias<T><<<grid_for(P * C), THREADS, 0, s>>>((T *)y, b, P * C, C, 0));
	return cudaGetLastError();
}

/* Column sums in two passes: R chunks of rows, each reduced by a block of 32 columns x 8
 * row lanes into tmp (R, C); then one thread per column adds its R partial sums in order. */
#define CS_X 32
#define CS_Y 8

static size_t colsum_chunks(size_t P)
{
	size_t R = (P + 255) / 256;
	return R < 1 ? 1 : R > 512 ? 512 : R;
}

size_t bt_k_colsum_tmp_bytes(size_t P, int C)
{
	return colsum_chunks(P) * (size_t)C * sizeof(float);
}

template <typename T>
__global__ void k_colsum_part(const T *dy, size_t P, int C, size_t rows, float *tmp)
{
	__shared__ float sh[CS_Y][CS_X];
	int o = blockIdx.x * CS_X + threadIdx.x;
	size_t lo = (size_t)blockIdx.y * rows, hi = lo + rows < P ? lo + rows : P;
	float acc = 0.0f;
	if (o < C)
		for (size_t p = lo + threadIdx.y; p < hi; p += CS_Y)
			acc += ld(dy + p * C + o);
	sh[threadIdx.y][threadIdx.x] = acc;
	__syncthreads();
	if (threadIdx.y == 0 && o < C) {
		for (int t = 1; t < CS_Y; t++)
			acc += sh[t][threadIdx.x];
		tmp[(size_t)blockIdx.y * C + o] = acc;
	}
}

__global__ void k_colsum_final(float *db, const float *tmp, size_t R, int C)
{
	GRID_STRIDE(o, (size_t)C) {
		float acc = 0.0f;
		for (size_t r = 0; r < R; r++)
			acc += tmp[r * C + o];
		db[o] += acc;
	}
}

cudaError_t bt_k_colsum_add(cudaStream_t s, int dt, float *db, const void *dy, size_t P, int C, float *tmp)
{
	size_t R = colsum_chunks(P), rows = (P + R - 1) / R;
	dim3 grid((C + CS_X - 1) / CS_X, (unsigned)R), block(CS_X, CS_Y);
	cudaError_t e;
	if (!P || !C)
		return cudaGetLastError();
	DISPATCH(dt, T, k_colsum_part<T><<<grid, block, 0, s>>>((const T *)dy, P, C, rows, tmp));
	if ((e = cudaGetLastError()) != cudaSuccess)
		return e;
	k_colsum_final<<<grid_for((size_t)C), THREADS, 0, s>>>(db, tmp, R, C);
	return cudaGetLastError();
}

/* ---- softmax cross-entropy -------------------------------------------------------------- */

__device__ static double warp_sum(double v)
{
	for (int o = 16; o; o >>= 1)
		v += __shfl_down_sync(0xffffffffu, v, o);
	return v;
}

__device__ static double warp_max(double v)
{
	for (int o = 16; o; o >>= 1)
		v = fmax(v, __shfl_down_sync(0xffffffffu, v, o));
	return v;
}

/* The block's sum (max) of v, returned to every thread. sh: one double per warp. */
__device__ static double block_reduce(double v, double *sh, int is_max)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	double r;
	v = is_max ? warp_max(v) : warp_sum(v);
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	if (w == 0) {
		v = lane < nw ? sh[lane] : (is_max ? -INFINITY : 0.0);
		v = is_max ? warp_max(v) : warp_sum(v);
		if (lane == 0)
			sh[0] = v;
	}
	__syncthreads();
	r = sh[0];
	__syncthreads();
	return r;
}

/* One block per image, in double as the CPU: z / T is rounded to float first, as there. */
__global__ void k_softmax_ce(const float *z, const int32_t *labels, const float *soft, int n, int K,
			     float eps, float T, float *dz, double *row_loss, int *row_bad)
{
	__shared__ double sh[THREADS / 32];
	int m = blockIdx.x, label = -1;
	const float *zm = z + (size_t)m * K;
	float *dm = dz + (size_t)m * K;
	double mx = -INFINITY, sum = 0.0, tot = 0.0, lse;

	if (!soft) {
		label = labels[m];
		if (label < 0 || label >= K) {
			if (threadIdx.x == 0) {
				row_bad[m] = 1;
				row_loss[m] = 0.0;
			}
			return;
		}
	}
	for (int k = threadIdx.x; k < K; k += blockDim.x)
		mx = fmax(mx, (double)(zm[k] / T));
	mx = block_reduce(mx, sh, 1);
	for (int k = threadIdx.x; k < K; k += blockDim.x)
		sum += exp((double)(zm[k] / T) - mx);
	lse = mx + log(block_reduce(sum, sh, 0));
	for (int k = threadIdx.x; k < K; k += blockDim.x) {
		double logp = (double)(zm[k] / T) - lse;
		double q = soft ? (double)soft[(size_t)m * K + k] : (k == label ? 1.0 - eps : (double)(eps / (K - 1)));
		tot += q * logp;
		dm[k] = (float)((exp(logp) - q) / ((double)n * T));
	}
	tot = block_reduce(tot, sh, 0);
	if (threadIdx.x == 0) {
		row_bad[m] = 0;
		row_loss[m] = -tot;
	}
}

cudaError_t bt_k_softmax_ce(cudaStream_t s, const float *z, const int32_t *labels, const float *soft,
			    int n, int K, float eps, float T, float *dz, double *row_loss, int *row_bad)
{
	if (n > 0)
		k_softmax_ce<<<n, THREADS, 0, s>>>(z, labels, soft, n, K, eps, T, dz, row_loss, row_bad);
	return cudaGetLastError();
}

/* ---- SGD -------------------------------------------------------------------------------- */

/* The CPU's update with every product and sum rounded separately, in its order:
 * g = dw gscale + decay w; v = momentum v + g; w = w - lr (g + momentum v). */
__global__ void k_sgd(float *w, const float *dw, float *v, const struct bt_cuda_range *r, int nr,
		      size_t total, float lr, float momentum, float wd, float gscale)
{
	GRID_STRIDE(t, total) {
		int lo = 0, hi = nr - 1;
		while (lo < hi) {
			int mid = (lo + hi + 1) / 2;
			if (r[mid].start <= t)
				lo = mid;
			else
				hi = mid - 1;
		}
		size_t k = r[lo].offset + (t - r[lo].start);
		float decay = r[lo].decay ? wd : 0.0f;
		float g = __fadd_rn(__fmul_rn(dw[k], gscale), __fmul_rn(decay, w[k]));
		float vk = __fadd_rn(__fmul_rn(momentum, v[k]), g);
		v[k] = vk;
		w[k] = __fsub_rn(w[k], __fmul_rn(lr, __fadd_rn(g, __fmul_rn(momentum, vk))));
	}
}

cudaError_t bt_k_sgd(cudaStream_t s, float *w, const float *dw, float *v,
		     const struct bt_cuda_range *ranges, int nranges, size_t total, float lr,
		     float momentum, float wd, float gscale)
{
	if (total && nranges > 0)
		k_sgd<<<grid_for(total), THREADS, 0, s>>>(w, dw, v, ranges, nranges, total, lr, momentum, wd,
							  gscale);
	return cudaGetLastError();
}

/* ---- the input from uint8 crops --------------------------------------------------------- */

/* One thread per output element: channel c of a pixel through its image's map
 * (bt_aug_affine_value, augment.h: lib/augment.c's normalisation, or its five-tap stencil
 * with the taps of other pixels as +0 products, summed left to right, each operation
 * rounded on its own; +0 inside the image's random-erasing box), then mixup as bt_mixup_batch computes it. A pixel's bytes and its
 * image's map are read through the read-only cache (neighbouring threads share them). */
template <typename T>
__global__ void k_input_u8(const uint8_t *__restrict__ x, const struct bt_aug_affine *__restrict__ a,
			   int n, size_t per, int C, int mix, float lam, float mu, T *y)
{
	GRID_STRIDE(e, (size_t)n * per) {
		size_t i = e / per, k = e - i * per;
		int c = (int)(k % (size_t)C);
		size_t px = k - (size_t)c;
		float v = bt_aug_affine_erased(a + i, px / (size_t)C)
				  ? 0.0f : bt_aug_affine_value(a + i, x + i * per + px, c, C);
		if (mix) {
			size_t j = (size_t)n - 1 - i;
			float w = bt_aug_affine_erased(a + j, px / (size_t)C)
					  ? 0.0f : bt_aug_affine_value(a + j, x + j * per + px, c, C);
			v = __fadd_rn(__fmul_rn(lam, v), __fmul_rn(mu, w));
		}
		st(y + e, v);
	}
}

cudaError_t bt_k_input_u8(cudaStream_t s, int dt, const uint8_t *x, const struct bt_aug_affine *a,
			  int n, size_t hw, int C, int mix, float lam, float mu, void *y)
{
	size_t per = hw * (size_t)C, total = per * (size_t)n;
	if (total)
		DISPATCH(dt, T, k_input_u8<T><<<grid_for(total), THREADS, 0, s>>>(x, a, n, per, C, mix, lam, mu,
										 (T *)y));
	return cudaGetLastError();
}

/* ---- mixed precision: casts, the overflow check ----------------------------------------- */

template <typename TI, typename TO>
__global__ void k_cast(const TI *x, TO *y, size_t n, float scale)
{
	GRID_STRIDE(i, n) {
		float v = ld(x + i);
		st(y + i, scale == 1.0f ? v : __fmul_rn(v, scale));
	}
}

cudaError_t bt_k_cast(cudaStream_t s, const void *x, int xt, void *y, int yt, size_t n, float scale)
{
	if (n)
		DISPATCH(xt, TI, DISPATCH(yt, TO, k_cast<TI, TO><<<grid_for(n), THREADS, 0, s>>>(
					     (const TI *)x, (TO *)y, n, scale)));
	return cudaGetLastError();
}

/* Each block asks whether any of its threads saw a value that is not finite. */
__global__ void k_nonfinite(const float *x, size_t n, int *flag)
{
	int bad = 0;
	GRID_STRIDE(i, n) bad |= !isfinite(x[i]);
	if (__syncthreads_or(bad) && threadIdx.x == 0)
		*flag = 1;
}

cudaError_t bt_k_nonfinite(cudaStream_t s, const float *x, size_t n, int *flag)
{
	if (n)
		k_nonfinite<<<grid_for(n), THREADS, 0, s>>>(x, n, flag);
	return cudaGetLastError();
}

template <typename T>
__global__ void k_add_to_f32(float *dw, const T *w, size_t n)
{
	GRID_STRIDE(i, n) dw[i] = __fadd_rn(dw[i], ld(w + i));
}

cudaError_t bt_k_add_to_f32(cudaStream_t s, int dt, float *dw, const void *w, size_t n)
{
	if (n)
		DISPATCH(dt, T, k_add_to_f32<T><<<grid_for(n), THREADS, 0, s>>>(dw, (const T *)w, n));
	return cudaGetLastError();
}

/* ---- batch norm: bt's own kernels ------------------------------------------------------- */

/* For bfloat16 (cuDNN's legacy batch norm does not take it), for one value per channel, and
 * for every type when the backend is told to (BT_CUDA_BN=own), with an optional ReLU folded
 * into the training pass (bn_relu_*: its mask, one bit per element, byte b holding elements
 * 8b .. 8b+7 from the low bit up).
 *
 * Statistics: per-channel sums over the P = N H W rows of the (P, C) tensor in a fixed
 * decomposition (deterministic, no atomics): R chunks of rows, each reduced by a block of
 * CS_X channels x CS_Y row lanes into float32 partials, which one thread per channel then
 * adds in order, in double. The forward takes the mean and the variance in one pass over x,
 * as sums of x - s and (x - s)^2 with s the channel's first value: shifted sums keep the
 * variance exact to float rounding when the mean is large against the spread.
 *
 * The elementwise passes read per-channel coefficients (scale, mean and beta forward; the
 * three terms of dx and the mean backward) made once per channel, and work from x - mean,
 * as oneDNN does: x scale + (beta - mean scale) would cancel in float32 where the mean is
 * large against the spread. They take 8 consecutive elements a thread (one 16-byte load
 * for the half types) when C is a multiple of 8, the tensors are 16-byte
 * aligned and there are fewer than 2^34 elements; one element a thread otherwise. So a
 * training batch norm reads x twice and writes y (and the mask) once; its backward reads x
 * and dy twice and writes dx once. */
__device__ __forceinline__ void load8(const float *p, float v[8])
{
	float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
	v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
/* The half types two at a time: their pair types' conversions to and from float2. */
__device__ __forceinline__ float2 to_f2(__half2 h) { return __half22float2(h); }
__device__ __forceinline__ float2 to_f2(__nv_bfloat162 h) { return __bfloat1622float2(h); }
__device__ __forceinline__ void from_f2(__half2 *h, float a, float b) { *h = __floats2half2_rn(a, b); }
__device__ __forceinline__ void from_f2(__nv_bfloat162 *h, float a, float b) { *h = __floats2bfloat162_rn(a, b); }

template <typename H2>
__device__ __forceinline__ void load8_half(const void *p, float v[8])
{
	uint4 u = *(const uint4 *)p;
	const H2 *h = (const H2 *)&u;
	for (int k = 0; k < 4; k++) {
		float2 f = to_f2(h[k]);
		v[2 * k] = f.x, v[2 * k + 1] = f.y;
	}
}
template <typename H2>
__device__ __forceinline__ void store8_half(void *p, const float v[8])
{
	uint4 u;
	H2 *h = (H2 *)&u;
	for (int k = 0; k < 4; k++)
		from_f2(h + k, v[2 * k], v[2 * k + 1]);
	*(uint4 *)p = u;
}
__device__ __forceinline__ void load8(const __half *p, float v[8]) { load8_half<__half2>(p, v); }
__device__ __forceinline__ void load8(const __nv_bfloat16 *p, float v[8]) { load8_half<__nv_bfloat162>(p, v); }
__device__ __forceinline__ void store8(float *p, const float v[8])
{
	((float4 *)p)[0] = make_float4(v[0], v[1], v[2], v[3]);
	((float4 *)p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void store8(__half *p, const float v[8]) { store8_half<__half2>(p, v); }
__device__ __forceinline__ void store8(__nv_bfloat16 *p, const float v[8]) { store8_half<__nv_bfloat162>(p, v); }

/* MODE 0: sums of x - s and (x - s)^2 (s = x[0, c]) into tmp and tmp + R C. MODE 1: sums of
 * g and g (x - mean) into the same places, g = dy, or 0 where the ReLU's mask bit is clear
 * (mask non-NULL). */
template <typename T, int MODE>
__global__ void k_bn_part(const T *x, const T *dy, const uint8_t *mask, const float *mean, size_t P,
			  int C, size_t rows, size_t R, float *tmp)
{
	__shared__ float sa[CS_Y][CS_X], sb[CS_Y][CS_X];
	int o = blockIdx.x * CS_X + threadIdx.x;
	size_t lo = (size_t)blockIdx.y * rows, hi = lo + rows < P ? lo + rows : P;
	float a = 0.0f, b = 0.0f;
	if (o < C) {
		float mu = MODE ? mean[o] : ld(x + o);
		for (size_t p = lo + threadIdx.y; p < hi; p += CS_Y) {
			size_t i = p * C + o;
			float v = ld(x + i) - mu;
			if (MODE == 0) {
				a += v;
				b += v * v;
			} else {
				float g = ld(dy + i);
				if (mask && !((mask[i >> 3] >> (i & 7)) & 1))
					g = 0.0f;
				a += g;
				b += g * v;
			}
		}
	}
	sa[threadIdx.y][threadIdx.x] = a;
	sb[threadIdx.y][threadIdx.x] = b;
	__syncthreads();
	if (threadIdx.y == 0 && o < C) {
		for (int t = 1; t < CS_Y; t++) {
			a += sa[t][threadIdx.x];
			b += sb[t][threadIdx.x];
		}
		tmp[(size_t)blockIdx.y * C + o] = a;
		tmp[(R + blockIdx.y) * C + o] = b;
	}
}

__device__ static double bn_total(const float *tmp, size_t R, int C, int o)
{
	double acc = 0.0;
	for (size_t r = 0; r < R; r++)
		acc += tmp[r * C + o];
	return acc;
}

/* Mean, biased variance (for save_invstd) and the running statistics, which take the
 * unbiased variance (over one value per channel: factor 1 and variance 0, as cpu.c); then
 * y = (x - mean) scale + beta with scale = gamma invstd: scale, mean and beta into coef. */
template <typename T>
__global__ void k_bn_stats(const T *x, const float *tmp, size_t R, int C, size_t P, const float *gamma,
			   const float *beta, float eps, float mom, float *mean, float *invstd, float *rm,
			   float *rv, float *coef)
{
	GRID_STRIDE(o, (size_t)C) {
		double a = bn_total(tmp, R, C, (int)o) / (double)P;
		double b = bn_total(tmp + R * C, R, C, (int)o) / (double)P;
		double vd = b - a * a;
		float mu = (float)((double)ld(x + o) + a), var = (float)(vd > 0.0 ? vd : 0.0);
		float unbias = P > 1 ? (float)((double)P / (double)(P - 1)) : 1.0f;
		float is = 1.0f / sqrtf(var + eps), sc = gamma[o] * is;
		mean[o] = mu;
		invstd[o] = is;
		rm[o] = (1 - mom) * rm[o] + mom * mu;
		rv[o] = (1 - mom) * rv[o] + mom * var * unbias;
		coef[o] = sc;
		coef[C + o] = mu;
		coef[2 * C + o] = beta[o];
	}
}

/* dbeta += sum g; dgamma += invstd sum g (x - mean); and for dx = gamma invstd (g - mean(g)
 * - (x - mean) invstd^2 mean(g (x - mean))) = A g + B (x - mean) + D, the per-channel A, B,
 * D and the mean. */
__global__ void k_bn_bwd_final(const float *tmp, size_t R, int C, size_t P, const float *gamma,
			       const float *mean, const float *invstd, float *dgamma, float *dbeta,
			       float *coef)
{
	GRID_STRIDE(o, (size_t)C) {
		double sg = bn_total(tmp, R, C, (int)o), sgx = bn_total(tmp + R * C, R, C, (int)o);
		double is = invstd[o], A = (double)gamma[o] * is;
		double B = -A * is * is * sgx / (double)P;
		dbeta[o] += (float)sg;
		dgamma[o] += (float)(sgx * is);
		coef[o] = (float)A;
		coef[C + o] = (float)B;
		coef[2 * C + o] = (float)(-A * sg / (double)P);
		coef[3 * C + o] = mean[o];
	}
}

/* Forward: y = (x - coef[C + c]) coef[c] + coef[2C + c], then with RELU max(0, y) and the
 * mask bit y > 0, with ADD max(0, y + z) (z in dy's place; no mask). Backward (BWD): dx =
 * coef[c] g + coef[C + c] (x - coef[3C + c]) + coef[2C + c], g = dy masked when RELU.
 * 8 elements a thread: n8 groups of 8, C8 = C / 8 of them a row. */
template <typename T, int BWD, int RELU, int ADD>
__global__ void k_bn_elem8(const T *x, const T *dy, T *out, uint8_t *mask, const float *coef,
			   unsigned n8, unsigned C8, int C)
{
	for (unsigned q = blockIdx.x * blockDim.x + threadIdx.x; q < n8; q += gridDim.x * blockDim.x) {
		unsigned c = (q % C8) * 8;
		float v[8], g[8];
		load8(x + (size_t)q * 8, v);
		if (ADD) {
			load8(dy + (size_t)q * 8, g);
			for (int k = 0; k < 8; k++) {
				float t = (v[k] - coef[C + c + k]) * coef[c + k] + coef[2 * C + c + k] + g[k];
				v[k] = t > 0.0f ? t : 0.0f;
			}
		} else if (BWD) {
			unsigned m = RELU ? mask[q] : 0xffu;
			load8(dy + (size_t)q * 8, g);
			for (int k = 0; k < 8; k++) {
				float gk = (m >> k) & 1 ? g[k] : 0.0f;
				v[k] = coef[c + k] * gk + coef[C + c + k] * (v[k] - coef[3 * C + c + k]) +
				       coef[2 * C + c + k];
			}
		} else {
			unsigned m = 0;
			for (int k = 0; k < 8; k++) {
				float t = (v[k] - coef[C + c + k]) * coef[c + k] + coef[2 * C + c + k];
				if (RELU) {
					m |= (unsigned)(t > 0.0f) << k;
					t = t > 0.0f ? t : 0.0f;
				}
				v[k] = t;
			}
			if (RELU)
				mask[q] = (uint8_t)m;
		}
		store8(out + (size_t)q * 8, v);
	}
}

/* The same one element a thread, a warp on 32 consecutive elements so that a forward mask
 * word is one ballot (blockDim a multiple of 32; mask words 4-byte aligned). */
template <typename T, int BWD, int RELU, int ADD>
__global__ void k_bn_elem1(const T *x, const T *dy, T *out, uint8_t *mask, const float *coef,
			   size_t n, int C)
{
	size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	size_t warps = (size_t)gridDim.x * blockDim.x / 32;
	unsigned lane = threadIdx.x & 31;
	for (size_t base = warp * 32; base < n; base += warps * 32) {
		size_t i = base + lane;
		int pos = 0;
		if (i < n) {
			int c = (int)(i % (size_t)C);
			float v = ld(x + i), t;
			if (ADD) {
				t = (v - coef[C + c]) * coef[c] + coef[2 * C + c] + ld(dy + i);
				t = t > 0.0f ? t : 0.0f;
			} else if (BWD) {
				float g = ld(dy + i);
				if (RELU && !((mask[i >> 3] >> (i & 7)) & 1))
					g = 0.0f;
				t = coef[c] * g + coef[C + c] * (v - coef[3 * C + c]) + coef[2 * C + c];
			} else {
				t = (v - coef[C + c]) * coef[c] + coef[2 * C + c];
				if (RELU) {
					pos = t > 0.0f;
					t = pos ? t : 0.0f;
				}
			}
			st(out + i, t);
		}
		if (!BWD && !ADD && RELU) {
			unsigned bits = __ballot_sync(0xffffffffu, pos);
			if (lane == 0)
				((uint32_t *)mask)[base / 32] = bits;
		}
	}
}

/* BWD 0: forward (dy is z, for a fused addition, or NULL); 1: backward. */
template <typename T, int BWD>
static void bn_elem(cudaStream_t s, const T *x, const T *dy, T *out, uint8_t *mask, const float *coef,
		    size_t n, int C)
{
	const int add = !BWD && dy;
	/* n8 below 2^31, so that q plus the grid's stride cannot wrap */
	int wide = C % 8 == 0 && n / 8 < (1u << 31) &&
		   (((uintptr_t)x | (uintptr_t)dy | (uintptr_t)out) & 15) == 0;
	if (wide) {
		unsigned n8 = (unsigned)(n / 8), C8 = (unsigned)(C / 8);
		if (add)
			k_bn_elem8<T, 0, 0, 1><<<grid_for(n8), THREADS, 0, s>>>(x, dy, out, NULL, coef, n8, C8, C);
		else if (mask)
			k_bn_elem8<T, BWD, 1, 0><<<grid_for(n8), THREADS, 0, s>>>(x, dy, out, mask, coef, n8, C8, C);
		else
			k_bn_elem8<T, BWD, 0, 0><<<grid_for(n8), THREADS, 0, s>>>(x, dy, out, mask, coef, n8, C8, C);
	} else if (add) {
		k_bn_elem1<T, 0, 0, 1><<<grid_for(n), THREADS, 0, s>>>(x, dy, out, NULL, coef, n, C);
	} else if (mask) {
		k_bn_elem1<T, BWD, 1, 0><<<grid_for(n), THREADS, 0, s>>>(x, dy, out, mask, coef, n, C);
	} else {
		k_bn_elem1<T, BWD, 0, 0><<<grid_for(n), THREADS, 0, s>>>(x, dy, out, mask, coef, n, C);
	}
}

template <typename T>
__global__ void k_bn_infer(const T *x, T *y, const float *gamma, const float *beta, const float *rm,
			   const float *rv, float eps, size_t total, int C)
{
	GRID_STRIDE(i, total) {
		int c = (int)(i % C);
		st(y + i, (ld(x + i) - rm[c]) / sqrtf(rv[c] + eps) * gamma[c] + beta[c]);
	}
}

size_t bt_k_bn_ws_bytes(const struct bt_bn_desc *d)
{
	size_t P = (size_t)d->n * d->h * d->w;
	return (2 * colsum_chunks(P) * (size_t)d->c + 4 * (size_t)d->c) * sizeof(float);
}

size_t bt_k_bn_mask_bytes(const struct bt_bn_desc *d)
{
	size_t n = (size_t)d->n * d->h * d->w * d->c;
	return (n + 31) / 32 * 4;
}

cudaError_t bt_k_bn_fwd_train(cudaStream_t s, const struct bt_bn_desc *d, const void *x,
			      const float *gamma, const float *beta, float *running_mean,
			      float *running_var, float *save_mean, float *save_invstd, void *y,
			      void *mask, const void *z, void *ws)
{
	size_t P = (size_t)d->n * d->h * d->w, R = colsum_chunks(P), rows = (P + R - 1) / R;
	int C = d->c;
	dim3 grid((C + CS_X - 1) / CS_X, (unsigned)R), block(CS_X, CS_Y);
	float *tmp = (float *)ws, *coef = tmp + 2 * R * C;
	cudaError_t e;
	if (!P || !C)
		return cudaGetLastError();
	DISPATCH(d->dtype, T,
		 k_bn_part<T, 0><<<grid, block, 0, s>>>((const T *)x, NULL, NULL, NULL, P, C, rows, R, tmp);
		 if ((e = cudaGetLastError()) != cudaSuccess) return e;
		 k_bn_stats<T><<<grid_for((size_t)C), THREADS, 0, s>>>((const T *)x, tmp, R, C, P, gamma, beta,
								   d->eps, d->momentum, save_mean,
								   save_invstd, running_mean, running_var,
								   coef);
		 if ((e = cudaGetLastError()) != cudaSuccess) return e;
		 bn_elem<T, 0>(s, (const T *)x, (const T *)z, (T *)y, (uint8_t *)mask, coef, P * C, C));
	return cudaGetLastError();
}

cudaError_t bt_k_bn_fwd_infer(cudaStream_t s, const struct bt_bn_desc *d, const void *x,
			      const float *gamma, const float *beta, const float *running_mean,
			      const float *running_var, void *y)
{
	size_t total = (size_t)d->n * d->h * d->w * d->c;
	if (total)
		DISPATCH(d->dtype, T, k_bn_infer<T><<<grid_for(total), THREADS, 0, s>>>(
					      (const T *)x, (T *)y, gamma, beta, running_mean, running_var,
					      d->eps, total, d->c));
	return cudaGetLastError();
}

cudaError_t bt_k_bn_bwd(cudaStream_t s, const struct bt_bn_desc *d, const void *x, const void *dy,
			const void *mask, const float *gamma, const float *save_mean,
			const float *save_invstd, void *dx, float *dgamma, float *dbeta, void *ws)
{
	size_t P = (size_t)d->n * d->h * d->w, R = colsum_chunks(P), rows = (P + R - 1) / R;
	int C = d->c;
	dim3 grid((C + CS_X - 1) / CS_X, (unsigned)R), block(CS_X, CS_Y);
	float *tmp = (float *)ws, *coef = tmp + 2 * R * C;
	cudaError_t e;
	if (!P || !C)
		return cudaGetLastError();
	DISPATCH(d->dtype, T,
		 k_bn_part<T, 1><<<grid, block, 0, s>>>((const T *)x, (const T *)dy, (const uint8_t *)mask,
							 save_mean, P, C, rows, R, tmp);
		 if ((e = cudaGetLastError()) != cudaSuccess) return e;
		 k_bn_bwd_final<<<grid_for((size_t)C), THREADS, 0, s>>>(tmp, R, C, P, gamma, save_mean,
									save_invstd, dgamma, dbeta, coef);
		 if ((e = cudaGetLastError()) != cudaSuccess) return e;
		 bn_elem<T, 1>(s, (const T *)x, (const T *)dy, (T *)dx, (uint8_t *)mask, coef, P * C, C));
	return cudaGetLastError();
}
