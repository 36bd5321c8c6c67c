/* backend.cu: the CUDA backend (backend.h): convolution and batch norm through cuDNN's v9
 * legacy API on NHWC tensors, fully connected layers through cuBLAS, and everything else
 * through bt's own kernels (kernels.cu). Semantics are the CPU backend's, which is the
 * oracle tests/gpu/test_cuda.c compares against.
 *
 * One stream per backend carries every kernel, cuDNN and cuBLAS call, in the executor's
 * order. upload and download synchronise it, so the executor may reuse or read host memory
 * as soon as they return (download is also where an asynchronous failure surfaces).
 *
 * The input from uint8 crops (input_u8) is the exception: its copy runs on a second
 * stream, from page-locked memory (host_alloc, which the loader's batches come from), into
 * one of two device staging buffers, so that the copy of batch k+1 overlaps what the
 * compute stream still has queued of batch k (its backward pass and update). An event
 * after the copy makes the compute stream's input kernel wait for it; an event after that
 * kernel makes the next copy into the same staging buffer wait until it has been read.
 * The per-image colour maps are made on the host (bt_aug_colour_affine, a few dozen
 * double operations an image) and travel with the pixels.
 * Convolution descriptors and algorithms are chosen once per shape and kept in a small
 * table; one device workspace, grown on demand, serves cuDNN and the reductions.
 *
 * FP32 means FP32: convolutions run with CUDNN_FMA_MATH and sgemm with cuBLAS's default
 * math, so no TF32 tensor cores unless bt_backend_cuda_set_tf32 asks for them (faster,
 * about 1e-3 relative error, which the parity tests' tolerances do not allow).
 * Algorithms are cuDNN's heuristic choice (cudnnGet*_v7), preferring deterministic ones,
 * so that two runs give the same bits; timing them (cudnnFind*) is a later speed option.
 *
 * Mixed precision (descriptors and dtype arguments of float16 or bfloat16): convolutions
 * run on half tensors and filters with float32 accumulation (cuDNN's PSEUDO_HALF_CONFIG
 * and PSEUDO_BFLOAT16_CONFIG) and tensor-core math; their weight gradient comes out of
 * cuDNN in the half type (a filter has its input's type) into a scratch buffer and is added
 * into the float32 gradient. fc layers are cublasGemmEx with half inputs and float32
 * compute, their weight gradient added straight into float32. Batch norm takes half data
 * with float32 parameters: cuDNN's for float16, bt's own kernels for bfloat16, which
 * cuDNN's legacy batch-norm API does not list (PyTorch does not send bfloat16 there
 * either).
 *
 * Memory: every device allocation goes through dev_malloc and dev_free, which keep the
 * bytes held and the peak for the memory slot (bt-train --benchmark's "peak device
 * memory"); what cuDNN and cuBLAS allocate inside, and the CUDA context, are not counted.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../backend.h"
#include "../bt.h"
}
#include "../device.h"
#include "dl.h"
#include "kernels.h"

/* The most workspace one convolution algorithm may ask for; larger ones are passed over. */
#define WS_LIMIT ((size_t)1 << 30)

enum { FWD, BWD_DATA, BWD_W };

struct conv_entry {
	struct bt_conv_desc key;   /* bias 0: the algorithms do not depend on it; dtype does */
	int tf32;
	int find;                  /* chosen by timing (cudnnFind*) rather than heuristics */
	cudnnTensorDescriptor_t x, y;
	cudnnFilterDescriptor_t w;
	cudnnConvolutionDescriptor_t conv;
	int ready[3];              /* by FWD, BWD_DATA, BWD_W: algorithm chosen */
	int algo[3];
	cudnnMathType_t math[3];
	size_t ws[3];
};

struct dev_block {
	void *p;
	size_t bytes;
};

/* A staging buffer of input_u8: the batch's pixels and maps on the device, the maps'
 * page-locked host copy, and the events that order their reuse. */
struct stage {
	uint8_t *x;                /* (n, size, size, C) device */
	size_t xcap;
	struct bt_aug_affine *a;   /* (n) device */
	struct bt_aug_affine *ha;  /* (n) page-locked host */
	int acap;
	cudaEvent_t copied;        /* on the copy stream, after the copies into x and a */
	cudaEvent_t used;          /* on the compute stream, after the kernel that read them */
};

struct bt_cuda {
	int device;
	int major;                 /* compute capability */
	int tf32;
	int conv_find;             /* choose convolution algorithms by timing them */
	int bn;                    /* BT_CUDA_BN_*: who does batch norm (bn_own) */
	cudaStream_t stream;
	cudaStream_t copy;         /* input_u8's host-to-device copies */
	struct stage stage[2];
	int next_stage;
	cudnnHandle_t dnn;
	cublasHandle_t blas;
	void *ws;                  /* device workspace */
	size_t ws_bytes;
	void *hw;                  /* half weight gradients of a convolution, before the add */
	size_t hw_bytes;
	int *flag;                 /* device int: the overflow check's answer */
	struct dev_block *blocks;  /* every live device allocation */
	int nblocks, capblocks;
	size_t mem_now, mem_peak;
	struct conv_entry **conv;
	int nconv, capconv;
	cudnnTensorDescriptor_t bn_x, bn_p;
	struct bt_sgd_range *ranges;      /* the ranges ranges_dev holds, as the caller gave them */
	struct bt_cuda_range *ranges_dev;
	int nranges, capranges;
	size_t ranges_total;
	double *row_loss;                 /* host copies of the loss kernel's per-image output */
	int *row_bad;
	int rows_cap;
	char desc[384];
};

/* ---- errors ------------------------------------------------------------------------------ */

/* "cudaMalloc" out of "cudaMalloc(&p, bytes)", "cudnnCreate" out of "dl.cudnnCreate(&h)":
 * the failing call's name for the message. */
static const char *call_name(const char *call, char *buf, size_t len)
{
	size_t i = 0;
	if (!strncmp(call, "dl.", 3))
		call += 3;
	while (call[i] && call[i] != '(' && i + 1 < len) {
		buf[i] = call[i];
		i++;
	}
	buf[i] = 0;
	return buf;
}

static int cuda_fail(cudaError_t e, const char *call)
{
	char name[64];
	/* The runtime keeps the last error for cudaGetLastError, which every launcher returns;
	 * taken here, an out-of-memory (not sticky) is not blamed on the next kernel. */
	(void)cudaGetLastError();
	return bt_error(e == cudaErrorMemoryAllocation ? BT_ERR_NOMEM : BT_ERR_CUDA, "CUDA: %s: %s",
			call_name(call, name, sizeof name), cudaGetErrorString(e));
}

static int dnn_fail(cudnnStatus_t s, const char *call)
{
	char name[64], detail[256] = "";
	/* cuDNN 9's codes are a category (thousands) plus a detail: every NOT_SUPPORTED_* (arch,
	 * layout, a sublibrary) is unsupported; host and device allocation failures are out of
	 * memory (the deprecated ALLOC_FAILED is only the host one). */
	int st = CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED ||
				 s == CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED
			 ? BT_ERR_UNSUPPORTED
		 : s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
				 s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED
			 ? BT_ERR_NOMEM
			 : BT_ERR_CUDA;
	dl.cudnnGetLastErrorString(detail, sizeof detail);
	return bt_error(st, "cuDNN: %s: %s%s%s", call_name(call, name, sizeof name),
			dl.cudnnGetErrorString(s), detail[0] ? ": " : "", detail);
}

static int blas_fail(cublasStatus_t s, const char *call)
{
	char name[64];
	return bt_error(s == CUBLAS_STATUS_ALLOC_FAILED ? BT_ERR_NOMEM : BT_ERR_CUDA, "cuBLAS: %s: %s",
			call_name(call, name, sizeof name), dl.cublasGetStatusString(s));
}

/* Each sets rc and jumps to the function's one exit, `out`. */
#define CU(call)                                                                        \
	do {                                                                            \
		cudaError_t e_ = (call);                                                \
		if (e_ != cudaSuccess) {                                                \
			rc = cuda_fail(e_, #call);                                      \
			goto out;                                                       \
		}                                                                       \
	} while (0)
#define DNN(call)                                                                       \
	do {                                                                            \
		cudnnStatus_t s_ = (call);                                              \
		if (s_ != CUDNN_STATUS_SUCCESS) {                                       \
			rc = dnn_fail(s_, #call);                                       \
			goto out;                                                       \
		}                                                                       \
	} while (0)
#define BLAS(call)                                                                      \
	do {                                                                            \
		cublasStatus_t s_ = (call);                                             \
		if (s_ != CUBLAS_STATUS_SUCCESS) {                                      \
			rc = blas_fail(s_, #call);                                      \
			goto out;                                                       \
		}                                                                       \
	} while (0)
/* A launcher of kernels.cu; each returns cudaGetLastError(), so an error left pending by a
 * library call that coped with it (cudnnFind* trying an algorithm whose allocation failed)
 * is cleared first rather than blamed on the kernel. Sticky errors come back regardless. */
#define KERN(call)                                                                      \
	do {                                                                            \
		(void)cudaGetLastError();                                               \
		CU(call);                                                               \
	} while (0)
#define CHECK(cond)                                                                     \
	do {                                                                            \
		if ((rc = (cond)) < 0)                                                  \
			goto out;                                                       \
	} while (0)

static const float f_one = 1.0f, f_zero = 0.0f;

/* A dtype argument the kernels know, or BT_ERR_INVALID. */
static int dtype_check(int dtype)
{
	if (!bt_dtype_size(dtype))
		return bt_error(BT_ERR_INVALID, "unknown dtype %d", dtype);
	return BT_OK;
}

/* ---- memory ------------------------------------------------------------------------------ */

/* cudaMalloc with the bytes recorded: the table of live blocks is searched from its end on
 * release (buffers tend to go in reverse order), and a run holds a few thousand at most. */
static int dev_malloc(struct bt_cuda *cu, void **p, size_t bytes)
{
	int rc = BT_OK;
	*p = NULL;
	if (cu->nblocks == cu->capblocks) {
		int cap = cu->capblocks ? 2 * cu->capblocks : 256;
		struct dev_block *b = (struct dev_block *)realloc(cu->blocks, (size_t)cap * sizeof *b);
		if (!b)
			return bt_error(BT_ERR_NOMEM, "device allocation table");
		cu->blocks = b;
		cu->capblocks = cap;
	}
	CU(cudaMalloc(p, bytes));
	cu->blocks[cu->nblocks].p = *p;
	cu->blocks[cu->nblocks].bytes = bytes;
	cu->nblocks++;
	cu->mem_now += bytes;
	if (cu->mem_now > cu->mem_peak)
		cu->mem_peak = cu->mem_now;
out:
	return rc;
}

static void dev_free(struct bt_cuda *cu, void *p)
{
	if (!p)
		return;
	for (int i = cu->nblocks - 1; i >= 0; i--) {
		if (cu->blocks[i].p == p) {
			cu->mem_now -= cu->blocks[i].bytes;
			cu->blocks[i] = cu->blocks[--cu->nblocks];
			break;
		}
	}
	cudaFree(p);
}

/* At least `bytes` in *buf (of *cap bytes), grown in MiB steps. Work queued earlier may
 * still use the old buffer, so the stream drains before it is freed. */
static int buf_reserve(struct bt_cuda *cu, void **buf, size_t *cap, size_t bytes)
{
	int rc = BT_OK;
	if (bytes <= *cap)
		return BT_OK;
	bytes = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
	CU(cudaStreamSynchronize(cu->stream));
	dev_free(cu, *buf);
	*buf = NULL;
	*cap = 0;
	CHECK(dev_malloc(cu, buf, bytes));
	*cap = bytes;
out:
	return rc;
}

/* At least `bytes` of device workspace. */
static int ws_reserve(struct bt_cuda *cu, size_t bytes)
{
	return buf_reserve(cu, &cu->ws, &cu->ws_bytes, bytes);
}

static int g_alloc(void *ctx, size_t bytes, void **p)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = dev_malloc(cu, p, bytes ? bytes : 256);
	if (rc)
		bt_error_prefix(rc, "device memory of %zu bytes", bytes);
	return rc;
}

static void g_release(void *ctx, void *p)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	if (!p)
		return;
	/* Kernels still queued may read it. */
	cudaStreamSynchronize(cu->stream);
	dev_free(cu, p);
}

static int g_memory(void *ctx, size_t *now, size_t *peak)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	*now = cu->mem_now;
	*peak = cu->mem_peak;
	return BT_OK;
}

static int g_available(void *ctx, size_t *bytes)
{
	size_t free_b = 0, total = 0;
	int rc = BT_OK;
	(void)ctx;
	CU(cudaMemGetInfo(&free_b, &total));
	*bytes = free_b;
out:
	return rc;
}

static int g_sync(void *ctx)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CU(cudaStreamSynchronize(cu->stream));
out:
	return rc;
}

static int g_supports(void *ctx, int dtype)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	/* bfloat16 convolutions and GEMMs need compute capability 8.0 (Ampere) or later */
	return dtype == BT_DTYPE_F32 || dtype == BT_DTYPE_F16 ||
	       (dtype == BT_DTYPE_BF16 && cu->major >= 8);
}


/* cudaMemcpyDefault: the pointers tell the direction (unified addressing), so the same
 * function moves host to device, device to host, and device to device. */
static int g_move(void *ctx, void *dst, const void *src, size_t bytes)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	if (!bytes)
		return BT_OK;
	CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cu->stream));
	CU(cudaStreamSynchronize(cu->stream));
out:
	return rc;
}

static int g_zero(void *ctx, void *p, size_t bytes)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	if (bytes)
		CU(cudaMemsetAsync(p, 0, bytes, cu->stream));
out:
	return rc;
}

static int g_copy(void *ctx, int dtype, void *y, const void *x, size_t n)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	if (y != x && n)
		CU(cudaMemcpyAsync(y, x, n * bt_dtype_size(dtype), cudaMemcpyDeviceToDevice, cu->stream));
out:
	return rc;
}

/* ---- convolution ------------------------------------------------------------------------ */

static void conv_entry_free(struct conv_entry *e)
{
	if (!e)
		return;
	if (e->x)
		dl.cudnnDestroyTensorDescriptor(e->x);
	if (e->y)
		dl.cudnnDestroyTensorDescriptor(e->y);
	if (e->w)
		dl.cudnnDestroyFilterDescriptor(e->w);
	if (e->conv)
		dl.cudnnDestroyConvolutionDescriptor(e->conv);
	free(e);
}

/* cuDNN's name for the storage type of a dtype. */
static cudnnDataType_t dnn_type(int dtype)
{
	return dtype == BT_DTYPE_F16 ? CUDNN_DATA_HALF : dtype == BT_DTYPE_BF16 ? CUDNN_DATA_BFLOAT16
										: CUDNN_DATA_FLOAT;
}

/* The descriptors of a shape: NHWC activations, and weights (Cout, KH, KW, Cin/g), which is
 * cuDNN's NHWC filter layout (KRSC), so nothing is transposed. Half data with a float32
 * compute type: the PSEUDO_HALF and PSEUDO_BFLOAT16 configurations of the legacy API. */
static int conv_entry_new(struct bt_cuda *cu, const struct bt_conv_desc *k, struct conv_entry **out)
{
	struct conv_entry *e = (struct conv_entry *)calloc(1, sizeof *e);
	cudnnDataType_t t = dnn_type(k->dtype);
	int n, c, h, w, rc = BT_OK;

	*out = NULL;
	if (!e)
		return bt_error(BT_ERR_NOMEM, "convolution cache entry");
	e->key = *k;
	e->tf32 = cu->tf32;
	e->find = cu->conv_find;
	DNN(dl.cudnnCreateTensorDescriptor(&e->x));
	DNN(dl.cudnnCreateTensorDescriptor(&e->y));
	DNN(dl.cudnnCreateFilterDescriptor(&e->w));
	DNN(dl.cudnnCreateConvolutionDescriptor(&e->conv));
	DNN(dl.cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NHWC, t, k->n, k->c, k->h, k->w));
	DNN(dl.cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NHWC, t, k->n, k->cout, k->oh, k->ow));
	DNN(dl.cudnnSetFilter4dDescriptor(e->w, t, CUDNN_TENSOR_NHWC, k->cout, k->c / k->groups, k->kh,
				       k->kw));
	DNN(dl.cudnnSetConvolution2dDescriptor(e->conv, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw,
					    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
	DNN(dl.cudnnSetConvolutionGroupCount(e->conv, k->groups));
	DNN(dl.cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &n, &c, &h, &w));
	if (n != k->n || c != k->cout || h != k->oh || w != k->ow) {
		rc = bt_error(BT_ERR_UNSUPPORTED, "cuDNN: convolution output %dx%dx%dx%d, not %dx%dx%dx%d",
			      n, h, w, c, k->n, k->oh, k->ow, k->cout);
		goto out;
	}
	*out = e;
	e = NULL;
out:
	conv_entry_free(e);
	return rc;
}

static int conv_get(struct bt_cuda *cu, const struct bt_conv_desc *d, struct conv_entry **out)
{
	struct bt_conv_desc k = *d;
	struct conv_entry *e;
	int rc;

	k.bias = 0;
	k.post = 0;
	for (int i = 0; i < cu->nconv; i++) {
		e = cu->conv[i];
		if (e->tf32 == cu->tf32 && e->find == cu->conv_find && memcmp(&e->key, &k, sizeof k) == 0) {
			*out = e;
			return BT_OK;
		}
	}
	if (cu->nconv == cu->capconv) {
		int cap = cu->capconv ? 2 * cu->capconv : 32;
		struct conv_entry **t = (struct conv_entry **)realloc(cu->conv, cap * sizeof *t);
		if (!t)
			return bt_error(BT_ERR_NOMEM, "convolution cache");
		cu->conv = t;
		cu->capconv = cap;
	}
	if ((rc = conv_entry_new(cu, &k, &e)) < 0)
		return rc;
	cu->conv[cu->nconv++] = e;
	*out = e;
	return BT_OK;
}

/* How a convolution's math may go: plain FP32, TF32 tensor cores, or half data (float16 or
 * bfloat16, tensor cores and float32 accumulation). */
enum { MATH_FP32, MATH_TF32, MATH_HALF };

static int math_mode(const struct conv_entry *e)
{
	return e->key.dtype != BT_DTYPE_F32 ? MATH_HALF : e->tf32 ? MATH_TF32 : MATH_FP32;
}

/* The first usable result of cuDNN's ranked list: supported, within WS_LIMIT, and in FP32
 * mode without tensor cores: an FMA result as it is, else (a second chance, should cuDNN
 * report the descriptor's math type loosely) a DEFAULT one with FMA forced, since DEFAULT
 * lets Ampere and later GPUs use TF32. With TF32 on, anything but FP16 down-conversion.
 * With half data, any math type (the data is half already, the accumulation float32: the
 * descriptor's compute type), down-conversion only in the second chance. With det_first,
 * deterministic algorithms first, second chance included, so that two runs give the same
 * bits; without (algorithms found by timing), the list's order, the fastest first.
 * *math: the math type to set on the descriptor. */
template <typename Perf>
static int pick(const Perf *perf, int n, int mode, int det_first, cudnnMathType_t *math,
		const unsigned char *tried)
{
	int tf32 = mode == MATH_TF32;
	/* deterministic strict, deterministic loose, then any strict, any loose */
	for (int pass = det_first ? 0 : 2; pass < 4; pass++) {
		int det = pass < 2, loose = pass & 1;
		for (int i = 0; i < n; i++) {
			cudnnMathType_t m = perf[i].mathType;
			if (tried[i] || perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > WS_LIMIT)
				continue;
			if (det && perf[i].determinism != CUDNN_DETERMINISTIC)
				continue;
			if (mode == MATH_HALF && (loose || m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) {
				*math = m;
				return i;
			}
			if (tf32 && !loose && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) {
				*math = m;
				return i;
			}
			if (!tf32 && (loose ? m == CUDNN_DEFAULT_MATH : m == CUDNN_FMA_MATH)) {
				*math = CUDNN_FMA_MATH;
				return i;
			}
		}
	}
	return -1;
}

/* pick's candidates in turn until one takes its math type and tells its workspace size
 * (a loose candidate with FMA forced may refuse either); the index, or -1. */
template <typename Perf, typename WsOf>
static int choose(struct conv_entry *e, int dir, const Perf *p, int got, int mode, WsOf ws_of)
{
	unsigned char tried[64] = { 0 };
	cudnnMathType_t m;
	size_t ws;
	int i;

	if (got > (int)sizeof tried)
		got = (int)sizeof tried;
	while ((i = pick(p, got, mode, !e->find, &m, tried)) >= 0) {
		tried[i] = 1;
		ws = 0;
		if (dl.cudnnSetConvolutionMathType(e->conv, m) != CUDNN_STATUS_SUCCESS ||
		    ws_of(p[i].algo, &ws) != CUDNN_STATUS_SUCCESS)
			continue;
		e->algo[dir] = p[i].algo;
		e->math[dir] = m;
		e->ws[dir] = ws;
		return i;
	}
	return -1;
}

static const char *dir_name[3] = { "forward", "backward data", "backward weights" };

/* Chooses the algorithm of one direction once, and makes the workspace big enough. */
static int conv_algo(struct bt_cuda *cu, struct conv_entry *e, int dir)
{
	static const char *const math_name[3] = { "FP32", "TF32", "" };
	const struct bt_conv_desc *k = &e->key;
	int got = 0, i = -1, rc = BT_OK, mode = math_mode(e);

	if (e->ready[dir])
		return ws_reserve(cu, e->ws[dir]);
	DNN(dl.cudnnSetConvolutionMathType(e->conv, mode == MATH_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
	if (dir == FWD) {
		cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
		if (e->find)
			DNN(dl.cudnnFindConvolutionForwardAlgorithm(cu->dnn, e->x, e->w, e->conv, e->y,
								 CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, p));
		else
			DNN(dl.cudnnGetConvolutionForwardAlgorithm_v7(cu->dnn, e->x, e->w, e->conv, e->y,
								   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, p));
		i = choose(e, dir, p, got, mode, [&](cudnnConvolutionFwdAlgo_t a, size_t *ws) {
			return dl.cudnnGetConvolutionForwardWorkspaceSize(cu->dnn, e->x, e->w, e->conv, e->y, a, ws);
		});
	} else if (dir == BWD_DATA) {
		cudnnConvolutionBwdDataAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
		if (e->find)
			DNN(dl.cudnnFindConvolutionBackwardDataAlgorithm(cu->dnn, e->w, e->y, e->conv, e->x,
									  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
									  &got, p));
		else
			DNN(dl.cudnnGetConvolutionBackwardDataAlgorithm_v7(cu->dnn, e->w, e->y, e->conv, e->x,
									CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
									&got, p));
		i = choose(e, dir, p, got, mode, [&](cudnnConvolutionBwdDataAlgo_t a, size_t *ws) {
			return dl.cudnnGetConvolutionBackwardDataWorkspaceSize(cu->dnn, e->w, e->y, e->conv, e->x,
										a, ws);
		});
	} else {
		cudnnConvolutionBwdFilterAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
		if (e->find)
			DNN(dl.cudnnFindConvolutionBackwardFilterAlgorithm(cu->dnn, e->x, e->y, e->conv, e->w,
									    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
									    &got, p));
		else
			DNN(dl.cudnnGetConvolutionBackwardFilterAlgorithm_v7(cu->dnn, e->x, e->y, e->conv, e->w,
									  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
									  &got, p));
		i = choose(e, dir, p, got, mode, [&](cudnnConvolutionBwdFilterAlgo_t a, size_t *ws) {
			return dl.cudnnGetConvolutionBackwardFilterWorkspaceSize(cu->dnn, e->x, e->y, e->conv,
										  e->w, a, ws);
		});
	}
	if (i < 0) {
		rc = bt_error(BT_ERR_UNSUPPORTED,
			      "cuDNN has no %s algorithm for the convolution %dx%dx%dx%d -> %d, kernel %dx%d, "
			      "stride %dx%d, padding %dx%d, dilation %dx%d, groups %d (%d candidates)",
			      mode == MATH_HALF ? bt_dtype_name(k->dtype) : math_name[mode], k->n, k->h, k->w,
			      k->c, k->cout, k->kh, k->kw,
			      k->sh, k->sw, k->ph, k->pw, k->dh, k->dw, k->groups, got);
		goto out;
	}
	if ((rc = ws_reserve(cu, e->ws[dir])) < 0) {
		bt_error_prefix(rc, "convolution %s workspace of %zu bytes", dir_name[dir], e->ws[dir]);
		goto out;
	}
	e->ready[dir] = 1;
out:
	return rc;
}

static int g_conv_fwd(void *ctx, const struct bt_conv_desc *d, const void *x, const void *w,
		      const float *b, void *y)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	struct conv_entry *e;
	int rc = BT_OK;

	CHECK(bt_conv_desc_check(d));
	if (d->bias && !b) {
		rc = bt_error(BT_ERR_INVALID, "convolution with bias needs b");
		goto out;
	}
	CHECK(conv_get(cu, d, &e));
	CHECK(conv_algo(cu, e, FWD));
	DNN(dl.cudnnSetConvolutionMathType(e->conv, e->math[FWD]));
	/* A sum post-operation is cuDNN's beta = 1: the product added onto y. */
	DNN(dl.cudnnConvolutionForward(cu->dnn, &f_one, e->x, x, e->w, w, e->conv,
				    (cudnnConvolutionFwdAlgo_t)e->algo[FWD], cu->ws, e->ws[FWD],
				    (d->post & BT_CONV_POST_SUM) ? &f_one : &f_zero, e->y, y));
	if (d->bias)
		KERN(bt_k_bias_add(cu->stream, d->dtype, y, b, (size_t)d->n * d->oh * d->ow, d->cout));
	if (d->post & BT_CONV_POST_RELU)
		KERN(bt_k_relu_fwd(cu->stream, d->dtype, y, y, (size_t)d->n * d->oh * d->ow * d->cout));
out:
	return rc;
}

static int g_conv_bwd_data(void *ctx, const struct bt_conv_desc *d, const void *dy, const void *w,
			   void *dx)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	struct conv_entry *e;
	int rc = BT_OK;

	CHECK(bt_conv_desc_check(d));
	CHECK(conv_get(cu, d, &e));
	CHECK(conv_algo(cu, e, BWD_DATA));
	DNN(dl.cudnnSetConvolutionMathType(e->conv, e->math[BWD_DATA]));
	/* beta 0: dx is overwritten */
	DNN(dl.cudnnConvolutionBackwardData(cu->dnn, &f_one, e->w, w, e->y, dy, e->conv,
					 (cudnnConvolutionBwdDataAlgo_t)e->algo[BWD_DATA], cu->ws,
					 e->ws[BWD_DATA], &f_zero, e->x, dx));
out:
	return rc;
}

static int g_conv_bwd_weights(void *ctx, const struct bt_conv_desc *d, const void *x,
			      const void *dy, float *dw, float *db)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	struct conv_entry *e;
	size_t P = (size_t)d->n * d->oh * d->ow;
	size_t nw = (size_t)d->cout * d->kh * d->kw * (d->c / (d->groups > 0 ? d->groups : 1));
	int rc = BT_OK;

	CHECK(bt_conv_desc_check(d));
	if (d->bias && !db) {
		rc = bt_error(BT_ERR_INVALID, "convolution with bias needs db");
		goto out;
	}
	CHECK(conv_get(cu, d, &e));
	CHECK(conv_algo(cu, e, BWD_W));
	DNN(dl.cudnnSetConvolutionMathType(e->conv, e->math[BWD_W]));
	if (d->dtype == BT_DTYPE_F32) {
		/* beta 1: dw += */
		DNN(dl.cudnnConvolutionBackwardFilter(cu->dnn, &f_one, e->x, x, e->y, dy, e->conv,
						   (cudnnConvolutionBwdFilterAlgo_t)e->algo[BWD_W], cu->ws,
						   e->ws[BWD_W], &f_one, e->w, dw));
	} else {
		/* The filter gradient has the data's type: into the scratch, then added. */
		CHECK(buf_reserve(cu, &cu->hw, &cu->hw_bytes, nw * bt_dtype_size(d->dtype)));
		DNN(dl.cudnnConvolutionBackwardFilter(cu->dnn, &f_one, e->x, x, e->y, dy, e->conv,
						   (cudnnConvolutionBwdFilterAlgo_t)e->algo[BWD_W], cu->ws,
						   e->ws[BWD_W], &f_zero, e->w, cu->hw));
		KERN(bt_k_add_to_f32(cu->stream, d->dtype, dw, cu->hw, nw));
	}
	if (d->bias) {
		CHECK(ws_reserve(cu, bt_k_colsum_tmp_bytes(P, d->cout)));
		KERN(bt_k_colsum_add(cu->stream, d->dtype, db, dy, P, d->cout, (float *)cu->ws));
	}
out:
	return rc;
}

/* ---- batch norm ------------------------------------------------------------------------- */

/* cuDNN's spatial batch norm: the saved statistics are the mean and 1 / sqrt(var + eps),
 * as cpu.h's save_mean and save_invstd; the running variance is updated with the unbiased
 * batch variance and exponentialAverageFactor weighs the new value, PyTorch's momentum.
 * Half data (float16) keeps float32 parameters: the derived descriptor is float32 then. */
static int bn_descs(struct bt_cuda *cu, const struct bt_bn_desc *d)
{
	int rc = BT_OK;
	CHECK(bt_bn_desc_check(d));
	DNN(dl.cudnnSetTensor4dDescriptor(cu->bn_x, CUDNN_TENSOR_NHWC, dnn_type(d->dtype), d->n, d->c, d->h,
				       d->w));
	DNN(dl.cudnnDeriveBNTensorDescriptor(cu->bn_p, cu->bn_x, CUDNN_BATCHNORM_SPATIAL));
out:
	return rc;
}

/* By default (BT_CUDA_BN_AUTO) bfloat16 goes to bt's kernels (kernels.cu), float32 and
 * float16 to cuDNN, except with a single value per channel (N H W = 1), for which cuDNN's
 * documentation does not promise the statistics: bt's kernels take every dtype, and give
 * variance 0 there. BT_CUDA_BN_OWN sends every batch norm to bt's kernels, which also fold
 * the ReLU after a batch norm into it in training (bn_relu_*); BT_CUDA_BN_CUDNN keeps cuDNN
 * wherever it takes the dtype. Which is faster is a measurement (tests/gpu/run.sh). */
static int bn_own(const struct bt_cuda *cu, const struct bt_bn_desc *d)
{
	if ((size_t)d->n * d->h * d->w == 1 || cu->bn == BT_CUDA_BN_OWN)
		return 1;
	return d->dtype == BT_DTYPE_BF16;
}

static int g_bn_fwd_train(void *ctx, const struct bt_bn_desc *d, const void *x, const float *gamma,
			  const float *beta, float *running_mean, float *running_var, float *save_mean,
			  float *save_invstd, void *y)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	if (bn_own(cu, d)) {
		CHECK(bt_bn_desc_check(d));
		CHECK(ws_reserve(cu, bt_k_bn_ws_bytes(d)));
		KERN(bt_k_bn_fwd_train(cu->stream, d, x, gamma, beta, running_mean, running_var, save_mean,
				       save_invstd, y, NULL, NULL, cu->ws));
		goto out;
	}
	CHECK(bn_descs(cu, d));
	DNN(dl.cudnnBatchNormalizationForwardTraining(
		cu->dnn, CUDNN_BATCHNORM_SPATIAL, &f_one, &f_zero, cu->bn_x, x, cu->bn_x, y, cu->bn_p,
		gamma, beta, (double)d->momentum, running_mean, running_var, (double)d->eps, save_mean,
		save_invstd));
out:
	return rc;
}

static int g_bn_fwd_infer(void *ctx, const struct bt_bn_desc *d, const void *x, const float *gamma,
			  const float *beta, const float *running_mean, const float *running_var,
			  void *y)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	if (bn_own(cu, d)) {
		CHECK(bt_bn_desc_check(d));
		KERN(bt_k_bn_fwd_infer(cu->stream, d, x, gamma, beta, running_mean, running_var, y));
		goto out;
	}
	CHECK(bn_descs(cu, d));
	DNN(dl.cudnnBatchNormalizationForwardInference(cu->dnn, CUDNN_BATCHNORM_SPATIAL, &f_one, &f_zero,
						    cu->bn_x, x, cu->bn_x, y, cu->bn_p, gamma, beta,
						    running_mean, running_var, (double)d->eps));
out:
	return rc;
}

static int g_bn_bwd(void *ctx, const struct bt_bn_desc *d, const void *x, const void *dy,
		    const float *gamma, const float *save_mean, const float *save_invstd, void *dx,
		    float *dgamma, float *dbeta)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	if (bn_own(cu, d)) {
		CHECK(bt_bn_desc_check(d));
		CHECK(ws_reserve(cu, bt_k_bn_ws_bytes(d)));
		KERN(bt_k_bn_bwd(cu->stream, d, x, dy, NULL, gamma, save_mean, save_invstd, dx, dgamma,
				 dbeta, cu->ws));
		goto out;
	}
	CHECK(bn_descs(cu, d));
	/* data: dx = 1 * grad + 0 * dx; parameters: dgamma = 1 * grad + 1 * dgamma (add into) */
	DNN(dl.cudnnBatchNormalizationBackward(cu->dnn, CUDNN_BATCHNORM_SPATIAL, &f_one, &f_zero, &f_one,
					    &f_one, cu->bn_x, x, cu->bn_x, dy, cu->bn_x, dx, cu->bn_p,
					    gamma, dgamma, dbeta, (double)d->eps, save_mean,
					    save_invstd));
out:
	return rc;
}

/* A batch norm and the ReLU after it, in training: bt's kernels with the mask (one bit an
 * element); 0 bytes, so run.c keeps the ReLU a node of its own, where cuDNN does the
 * batch norm. */
static size_t g_bn_relu_ws_bytes(void *ctx, const struct bt_bn_desc *d)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	if (bt_bn_desc_check(d) || !bn_own(cu, d))
		return 0;
	return bt_k_bn_mask_bytes(d);
}

/* A fused op's checks: a valid descriptor that bt's kernels take, its operand `need` (the
 * mask, z) present, and their workspace. */
static int fused_bn_ready(struct bt_cuda *cu, const struct bt_bn_desc *d, const void *need, const char *what)
{
	int rc = BT_OK;

	CHECK(bt_bn_desc_check(d));
	if (!bn_own(cu, d) || !need) {
		rc = bt_error(BT_ERR_INVALID, "%s: not for this batch norm, or an operand missing", what);
		goto out;
	}
	CHECK(ws_reserve(cu, bt_k_bn_ws_bytes(d)));
out:
	return rc;
}

static int g_bn_relu_fwd_train(void *ctx, const struct bt_bn_desc *d, const void *x, const float *gamma,
			       const float *beta, float *running_mean, float *running_var,
			       float *save_mean, float *save_invstd, void *y, void *ws)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	CHECK(fused_bn_ready(cu, d, ws, "batch norm + ReLU"));
	KERN(bt_k_bn_fwd_train(cu->stream, d, x, gamma, beta, running_mean, running_var, save_mean,
			       save_invstd, y, ws, NULL, cu->ws));
out:
	return rc;
}

static int g_bn_relu_bwd(void *ctx, const struct bt_bn_desc *d, const void *x, const void *dy,
			 const float *gamma, const float *save_mean, const float *save_invstd,
			 const void *ws, void *dx, float *dgamma, float *dbeta)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	CHECK(fused_bn_ready(cu, d, ws, "batch norm + ReLU"));
	KERN(bt_k_bn_bwd(cu->stream, d, x, dy, ws, gamma, save_mean, save_invstd, dx, dgamma, dbeta,
			 cu->ws));
out:
	return rc;
}

/* A residual block's last batch norm, its addition and ReLU in one pass (bt's kernels: the
 * sum is taken in float32 and rounded once, where the three nodes round each step). */
static int g_bn_add_relu_ok(void *ctx, const struct bt_bn_desc *d)
{
	return !bt_bn_desc_check(d) && bn_own((struct bt_cuda *)ctx, d);
}

static int g_bn_add_relu_fwd_train(void *ctx, const struct bt_bn_desc *d, const void *x, const void *z,
				   const float *gamma, const float *beta, float *running_mean,
				   float *running_var, float *save_mean, float *save_invstd, void *y)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	if (y == x || y == z) {
		rc = bt_error(BT_ERR_INVALID, "batch norm + add + ReLU: y is x or z");
		goto out;
	}
	CHECK(fused_bn_ready(cu, d, z, "batch norm + add + ReLU"));
	KERN(bt_k_bn_fwd_train(cu->stream, d, x, gamma, beta, running_mean, running_var, save_mean,
			       save_invstd, y, NULL, z, cu->ws));
out:
	return rc;
}

/* ---- pooling ---------------------------------------------------------------------------- */

static size_t g_pool_ws_bytes(void *ctx, const struct bt_pool_desc *d)
{
	(void)ctx;
	if (!d->max || bt_pool_desc_check(d))
		return 0;
	return bt_k_pool_ws_bytes(d);
}

static int g_pool_fwd(void *ctx, const struct bt_pool_desc *d, const void *x, void *y, void *ws)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	CHECK(bt_pool_desc_check(d));
	if (d->max && !ws) {
		rc = bt_error(BT_ERR_INVALID, "max pooling needs a workspace");
		goto out;
	}
	KERN(bt_k_pool_fwd(cu->stream, d, x, y, (int32_t *)ws));
out:
	return rc;
}

static int g_pool_bwd(void *ctx, const struct bt_pool_desc *d, const void *dy, const void *ws,
		      void *dx)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	CHECK(bt_pool_desc_check(d));
	if (d->max && !ws) {
		rc = bt_error(BT_ERR_INVALID, "max pooling needs a workspace");
		goto out;
	}
	KERN(bt_k_pool_bwd(cu->stream, d, dy, (const int32_t *)ws, dx));
out:
	return rc;
}

/* ---- fully connected: row-major (N, Cin) x (Cout, Cin)^T as cuBLAS's column-major ------- */

/* cuBLAS's name for the storage type of a dtype. */
static cudaDataType blas_type(int dtype)
{
	return dtype == BT_DTYPE_F16 ? CUDA_R_16F : dtype == BT_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* C (m, n) = alpha op(A) op(B) + beta C, column-major, in float32 arithmetic: sgemm for
 * float32 data (bit for bit what it was), cublasGemmEx with float32 compute for half A and
 * B, whose C is half or float32 (the weight gradient, added into the arena). */
static int gemm(struct bt_cuda *cu, int dtype, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
		int k, const void *A, int lda, const void *B, int ldb, const float *beta, void *C,
		cudaDataType ctype, int ldc)
{
	int rc = BT_OK;
	if (dtype == BT_DTYPE_F32) {
		BLAS(dl.cublasSgemm(cu->blas, ta, tb, m, n, k, &f_one, (const float *)A, lda, (const float *)B,
				 ldb, beta, (float *)C, ldc));
	} else {
		BLAS(dl.cublasGemmEx(cu->blas, ta, tb, m, n, k, &f_one, A, blas_type(dtype), lda, B,
				  blas_type(dtype), ldb, beta, C, ctype, ldc, CUBLAS_COMPUTE_32F,
				  CUBLAS_GEMM_DEFAULT));
	}
out:
	return rc;
}

static int g_fc_fwd(void *ctx, const struct bt_fc_desc *d, const void *x, const void *w,
		    const float *b, void *y)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	CHECK(bt_fc_desc_check(d));
	if (d->bias && !b) {
		rc = bt_error(BT_ERR_INVALID, "fully connected with bias needs b");
		goto out;
	}
	/* As the CPU: the bias laid down first, the product added onto it. y^T (Cout, N) =
	 * w (Cout, Cin) x^T (Cin, N), where w is column-major (Cin, Cout), hence op T. */
	if (d->bias)
		KERN(bt_k_bias_set(cu->stream, d->dtype, y, b, (size_t)d->n, d->cout));
	CHECK(gemm(cu, d->dtype, CUBLAS_OP_T, CUBLAS_OP_N, d->cout, d->n, d->cin, w, d->cin, x, d->cin,
		   d->bias ? &f_one : &f_zero, y, blas_type(d->dtype), d->cout));
out:
	return rc;
}

static int g_fc_bwd(void *ctx, const struct bt_fc_desc *d, const void *x, const void *dy,
		    const void *w, void *dx, float *dw, float *db)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;

	CHECK(bt_fc_desc_check(d));
	if (d->bias && !db) {
		rc = bt_error(BT_ERR_INVALID, "fully connected with bias needs db");
		goto out;
	}
	/* dx^T (Cin, N) = w^T (Cin, Cout) dy^T (Cout, N), overwritten */
	if (dx)
		CHECK(gemm(cu, d->dtype, CUBLAS_OP_N, CUBLAS_OP_N, d->cin, d->n, d->cout, w, d->cin, dy,
			   d->cout, &f_zero, dx, blas_type(d->dtype), d->cin));
	/* dw^T (Cin, Cout) += x^T (Cin, N) dy (N, Cout), float32 whatever the data */
	CHECK(gemm(cu, d->dtype, CUBLAS_OP_N, CUBLAS_OP_T, d->cin, d->cout, d->n, x, d->cin, dy, d->cout,
		   &f_one, dw, CUDA_R_32F, d->cin));
	if (d->bias) {
		CHECK(ws_reserve(cu, bt_k_colsum_tmp_bytes((size_t)d->n, d->cout)));
		KERN(bt_k_colsum_add(cu->stream, d->dtype, db, dy, (size_t)d->n, d->cout, (float *)cu->ws));
	}
out:
	return rc;
}

/* ---- elementwise and data movement ------------------------------------------------------ */

static int g_relu_fwd(void *ctx, int dtype, const void *x, void *y, size_t n)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_relu_fwd(cu->stream, dtype, x, y, n));
out:
	return rc;
}

static int g_relu_bwd(void *ctx, int dtype, const void *y, const void *dy, void *dx, size_t n)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_relu_bwd(cu->stream, dtype, y, dy, dx, n));
out:
	return rc;
}

static int g_add(void *ctx, int dtype, const void *a, const void *b, void *y, size_t n)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_add(cu->stream, dtype, a, b, y, n));
out:
	return rc;
}

static int g_accumulate(void *ctx, int dtype, void *y, const void *x, size_t n)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_accumulate(cu->stream, dtype, y, x, n));
out:
	return rc;
}

static int g_mul(void *ctx, int dtype, const void *a, const void *b, void *y, size_t n)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_mul(cu->stream, dtype, a, b, y, n));
out:
	return rc;
}

static int g_gap_fwd(void *ctx, int dtype, const void *x, void *y, int n, size_t hw, int c)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_gap_fwd(cu->stream, dtype, x, y, n, hw, c));
out:
	return rc;
}

static int g_gap_bwd(void *ctx, int dtype, const void *dy, void *dx, int n, size_t hw, int c)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_gap_bwd(cu->stream, dtype, dy, dx, n, hw, c));
out:
	return rc;
}

static int g_concat_fwd(void *ctx, int dtype, const void *xj, void *y, size_t pixels, int cj, int co,
			int off)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_concat(cu->stream, dtype, xj, y, pixels, cj, co, off, 1));
out:
	return rc;
}

static int g_concat_bwd(void *ctx, int dtype, const void *dy, void *dxj, size_t pixels, int cj, int co,
			int off)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_concat(cu->stream, dtype, dy, dxj, pixels, cj, co, off, 0));
out:
	return rc;
}

static int g_dropout_fwd(void *ctx, int dtype, const void *x, void *y, void *mask, size_t n, float p,
			 uint64_t seed)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	CHECK(dtype_check(dtype));
	KERN(bt_k_dropout(cu->stream, dtype, x, y, mask, n, p, seed));
out:
	return rc;
}

/* ---- mixed precision -------------------------------------------------------------------- */

static int g_cast(void *ctx, const void *x, int xt, void *y, int yt, size_t n, float scale)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	if (!bt_dtype_size(xt) || !bt_dtype_size(yt)) {
		rc = bt_error(BT_ERR_INVALID, "cast: dtype %d to %d", xt, yt);
		goto out;
	}
	KERN(bt_k_cast(cu->stream, x, xt, y, yt, n, scale));
out:
	return rc;
}

/* One reduction kernel and one int back: the caller decides on the step from it. */
static int g_nonfinite(void *ctx, const float *x, size_t n, int *found)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK, flag = 0;
	CU(cudaMemsetAsync(cu->flag, 0, sizeof *cu->flag, cu->stream));
	KERN(bt_k_nonfinite(cu->stream, x, n, cu->flag));
	CU(cudaMemcpyAsync(&flag, cu->flag, sizeof flag, cudaMemcpyDeviceToHost, cu->stream));
	CU(cudaStreamSynchronize(cu->stream));
	*found = flag != 0;
out:
	return rc;
}

static int g_bn_fold(void *ctx, const float *w, const float *bias, const float *gamma,
		     const float *beta, const float *mean, const float *var, float eps, int cout,
		     size_t per_out, float *w_out, float *b_out)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	int rc = BT_OK;
	KERN(bt_k_bn_fold(cu->stream, w, bias, gamma, beta, mean, var, eps, cout, per_out, w_out, b_out));
out:
	return rc;
}

/* The per-image losses come back to the host and are summed there in image order. */
static int g_softmax_ce(void *ctx, const float *logits, const int32_t *labels, const float *soft,
			int n, int K, float eps, float T, float *dlogits, double *loss)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	size_t lbytes = (size_t)n * sizeof(double);
	double total = 0;
	int rc = BT_OK;

	if (n <= 0 || K <= 0) {
		rc = bt_error(BT_ERR_INVALID, "loss: %d images of %d classes", n, K);
		goto out;
	}
	if (n > cu->rows_cap) {
		double *l = (double *)realloc(cu->row_loss, (size_t)n * sizeof *l);
		int *b;
		if (l)
			cu->row_loss = l;
		b = (int *)realloc(cu->row_bad, (size_t)n * sizeof *b);
		if (b)
			cu->row_bad = b;
		if (!l || !b) {
			rc = bt_error(BT_ERR_NOMEM, "loss of %d images", n);
			goto out;
		}
		cu->rows_cap = n;
	}
	CHECK(ws_reserve(cu, lbytes + (size_t)n * sizeof(int)));
	KERN(bt_k_softmax_ce(cu->stream, logits, labels, soft, n, K, eps, T, dlogits, (double *)cu->ws,
			     (int *)((char *)cu->ws + lbytes)));
	CU(cudaMemcpyAsync(cu->row_loss, cu->ws, lbytes, cudaMemcpyDeviceToHost, cu->stream));
	CU(cudaMemcpyAsync(cu->row_bad, (char *)cu->ws + lbytes, (size_t)n * sizeof(int),
			   cudaMemcpyDeviceToHost, cu->stream));
	CU(cudaStreamSynchronize(cu->stream));
	for (int m = 0; m < n; m++) {
		if (cu->row_bad[m]) {
			int32_t label = 0;
			CU(cudaMemcpy(&label, labels + m, sizeof label, cudaMemcpyDeviceToHost));
			rc = bt_error(BT_ERR_INVALID, "loss: image %d has label %d, the model has %d classes",
				      m, label, K);
			goto out;
		}
		total += cu->row_loss[m];
	}
	*loss = total / n;
out:
	return rc;
}

static int same_ranges(const struct bt_cuda *cu, const struct bt_sgd_range *r, int n)
{
	if (n != cu->nranges)
		return 0;
	for (int i = 0; i < n; i++)
		if (r[i].offset != cu->ranges[i].offset || r[i].count != cu->ranges[i].count ||
		    r[i].decay != cu->ranges[i].decay)
			return 0;
	return 1;
}

/* The ranges are kept on the device and sent again only when the caller's change. */
static int g_sgd(void *ctx, float *w, const float *dw, float *v, const struct bt_sgd_range *ranges,
		 int nranges, float lr, float momentum, float wd, float gscale)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	struct bt_cuda_range *staged = NULL;
	int rc = BT_OK;

	if (nranges <= 0)
		goto out;
	if (!same_ranges(cu, ranges, nranges)) {
		size_t start = 0;
		cu->nranges = 0;
		if (nranges > cu->capranges) {
			struct bt_sgd_range *h = (struct bt_sgd_range *)realloc(cu->ranges,
										  (size_t)nranges * sizeof *h);
			if (!h) {
				rc = bt_error(BT_ERR_NOMEM, "%d optimizer ranges", nranges);
				goto out;
			}
			cu->ranges = h;
			CU(cudaStreamSynchronize(cu->stream));
			dev_free(cu, cu->ranges_dev);
			cu->ranges_dev = NULL;
			cu->capranges = 0;
			CHECK(dev_malloc(cu, (void **)&cu->ranges_dev, (size_t)nranges * sizeof *cu->ranges_dev));
			cu->capranges = nranges;
		}
		staged = (struct bt_cuda_range *)malloc((size_t)nranges * sizeof *staged);
		if (!staged) {
			rc = bt_error(BT_ERR_NOMEM, "%d optimizer ranges", nranges);
			goto out;
		}
		for (int i = 0; i < nranges; i++) {
			staged[i].offset = ranges[i].offset;
			staged[i].count = ranges[i].count;
			staged[i].start = start;
			staged[i].decay = ranges[i].decay;
			start += ranges[i].count;
		}
		CU(cudaMemcpyAsync(cu->ranges_dev, staged, (size_t)nranges * sizeof *staged,
				   cudaMemcpyHostToDevice, cu->stream));
		CU(cudaStreamSynchronize(cu->stream));
		memcpy(cu->ranges, ranges, (size_t)nranges * sizeof *ranges);
		cu->nranges = nranges;
		cu->ranges_total = start;
	}
	KERN(bt_k_sgd(cu->stream, w, dw, v, cu->ranges_dev, cu->nranges, cu->ranges_total, lr, momentum,
		      wd, gscale));
out:
	free(staged);
	return rc;
}

/* ---- the input from uint8 crops ---------------------------------------------------------- */

/* Page-locked and portable (usable from every context), on this backend's device: the
 * loader's worker threads call this, and a thread's current device is its own. */
static void *g_host_alloc(void *ctx, size_t bytes)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	void *p = NULL;
	if (cudaSetDevice(cu->device) != cudaSuccess ||
	    cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) != cudaSuccess)
		return NULL;
	return p;
}

static void g_host_free(void *ctx, void *p)
{
	(void)ctx;
	if (p)
		cudaFreeHost(p);
}

/* Room in a staging buffer for n images of `bytes` pixels in all. A buffer that grows is
 * first drained: the copy into it and the kernel reading it must be done. */
static int stage_reserve(struct bt_cuda *cu, struct stage *s, size_t bytes, int n)
{
	int rc = BT_OK;
	if (bytes > s->xcap || n > s->acap) {
		CU(cudaEventSynchronize(s->copied));
		CU(cudaEventSynchronize(s->used));
	}
	if (bytes > s->xcap) {
		dev_free(cu, s->x);
		s->x = NULL;
		s->xcap = 0;
		CHECK(dev_malloc(cu, (void **)&s->x, bytes));
		s->xcap = bytes;
	}
	if (n > s->acap) {
		dev_free(cu, s->a);
		cudaFreeHost(s->ha);
		s->a = NULL;
		s->ha = NULL;
		s->acap = 0;
		CHECK(dev_malloc(cu, (void **)&s->a, (size_t)n * sizeof *s->a));
		CU(cudaHostAlloc((void **)&s->ha, (size_t)n * sizeof *s->ha, cudaHostAllocDefault));
		s->acap = n;
	}
out:
	return rc;
}

/* The copy on its own stream into the staging buffer not used last time, then the kernel
 * on the compute stream once the copy is done. in->x is read after this returns (from
 * page-locked memory the copy is asynchronous): backend.h's input_u8 says for how long. */
static int g_input_u8(void *ctx, int dtype, const struct bt_u8_batch *in, void *y)
{
	static const struct bt_aug_colour neutral = { 1, 1, 1, { 0, 1, 2 }, { 0, 0, 0 }, 0, { 0, 0, 0 }, { 0, 0, 0, 0, 0 }, 0 };
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	struct stage *s;
	size_t hw, bytes;
	int rc = BT_OK;

	CHECK(dtype_check(dtype));
	if (!bt_u8_batch_ok(in)) {
		rc = bt_error(BT_ERR_INVALID, "input: %d images of %dx%dx%d", in->n, in->size, in->size,
			      in->channels);
		goto out;
	}
	hw = (size_t)in->size * in->size;
	bytes = hw * (size_t)in->channels * (size_t)in->n;
	s = &cu->stage[cu->next_stage];
	cu->next_stage ^= 1;
	CHECK(stage_reserve(cu, s, bytes, in->n));
	/* The maps' host copy is free again once its last copy is done (a batch ago). */
	CU(cudaEventSynchronize(s->copied));
	for (int i = 0; i < in->n; i++)
		bt_aug_colour_affine(in->colour ? &in->colour[i] : &neutral, in->channels, in->mean, in->std,
				     &s->ha[i]);
	CU(cudaStreamWaitEvent(cu->copy, s->used, 0));
	CU(cudaMemcpyAsync(s->a, s->ha, (size_t)in->n * sizeof *s->a, cudaMemcpyHostToDevice, cu->copy));
	CU(cudaMemcpyAsync(s->x, in->x, bytes, cudaMemcpyHostToDevice, cu->copy));
	CU(cudaEventRecord(s->copied, cu->copy));
	CU(cudaStreamWaitEvent(cu->stream, s->copied, 0));
	KERN(bt_k_input_u8(cu->stream, dtype, s->x, s->a, in->n, hw, in->channels, in->mixup, in->lam,
			   1 - in->lam, y));
	CU(cudaEventRecord(s->used, cu->stream));
out:
	return rc;
}

/* ---- the table -------------------------------------------------------------------------- */

static const char *g_describe(void *ctx)
{
	return ((struct bt_cuda *)ctx)->desc;
}

static void g_destroy(void *ctx)
{
	struct bt_cuda *cu = (struct bt_cuda *)ctx;
	if (!cu)
		return;
	if (cu->stream)
		cudaStreamSynchronize(cu->stream);
	if (cu->copy)
		cudaStreamSynchronize(cu->copy);
	for (int i = 0; i < 2; i++) {
		struct stage *s = &cu->stage[i];
		dev_free(cu, s->x);
		dev_free(cu, s->a);
		if (s->ha)
			cudaFreeHost(s->ha);
		if (s->copied)
			cudaEventDestroy(s->copied);
		if (s->used)
			cudaEventDestroy(s->used);
	}
	if (cu->copy)
		cudaStreamDestroy(cu->copy);
	for (int i = 0; i < cu->nconv; i++)
		conv_entry_free(cu->conv[i]);
	free(cu->conv);
	if (cu->bn_x)
		dl.cudnnDestroyTensorDescriptor(cu->bn_x);
	if (cu->bn_p)
		dl.cudnnDestroyTensorDescriptor(cu->bn_p);
	if (cu->dnn)
		dl.cudnnDestroy(cu->dnn);
	if (cu->blas)
		dl.cublasDestroy(cu->blas);
	dev_free(cu, cu->ws);
	dev_free(cu, cu->hw);
	dev_free(cu, cu->ranges_dev);
	dev_free(cu, cu->flag);
	if (cu->stream)
		cudaStreamDestroy(cu->stream);
	free(cu->blocks);
	free(cu->ranges);
	free(cu->row_loss);
	free(cu->row_bad);
	free(cu);
}

/* BT_CUDA_BN in the environment: the starting batch-norm policy (bt_backend_cuda_set_bn),
 * so a benchmark can compare the two without a rebuild. Anything but "own" or "cudnn" is
 * the default. */
static int bn_policy_env(void)
{
	const char *e = getenv("BT_CUDA_BN");
	if (e && !strcmp(e, "own"))
		return BT_CUDA_BN_OWN;
	if (e && !strcmp(e, "cudnn"))
		return BT_CUDA_BN_CUDNN;
	return BT_CUDA_BN_AUTO;
}

static const struct bt_backend_i cuda_backend = {
	/* .name */ "cuda",
	/* .describe */ g_describe,
	/* .destroy */ g_destroy,
	/* .supports */ g_supports,
	/* .alloc */ g_alloc,
	/* .release */ g_release,
	/* .upload */ g_move,
	/* .download */ g_move,
	/* .zero */ g_zero,
	/* .conv_fwd */ g_conv_fwd,
	/* .conv_bwd_data */ g_conv_bwd_data,
	/* .conv_bwd_weights */ g_conv_bwd_weights,
	/* .bn_fwd_train */ g_bn_fwd_train,
	/* .bn_fwd_infer */ g_bn_fwd_infer,
	/* .bn_bwd */ g_bn_bwd,
	/* .pool_ws_bytes */ g_pool_ws_bytes,
	/* .pool_fwd */ g_pool_fwd,
	/* .pool_bwd */ g_pool_bwd,
	/* .fc_fwd */ g_fc_fwd,
	/* .fc_bwd */ g_fc_bwd,
	/* .relu_fwd */ g_relu_fwd,
	/* .relu_bwd */ g_relu_bwd,
	/* .add */ g_add,
	/* .accumulate */ g_accumulate,
	/* .copy */ g_copy,
	/* .gap_fwd */ g_gap_fwd,
	/* .gap_bwd */ g_gap_bwd,
	/* .concat_fwd */ g_concat_fwd,
	/* .concat_bwd */ g_concat_bwd,
	/* .dropout_fwd */ g_dropout_fwd,
	/* .mul */ g_mul,
	/* .bn_fold */ g_bn_fold,
	/* .softmax_ce */ g_softmax_ce,
	/* .sgd */ g_sgd,
	/* .cast */ g_cast,
	/* .nonfinite */ g_nonfinite,
	/* .sync */ g_sync,
	/* .memory */ g_memory,
	/* .host_alloc */ g_host_alloc,
	/* .host_free */ g_host_free,
	/* .input_u8 */ g_input_u8,
	/* .available */ g_available,
	/* .bn_relu_ws_bytes */ g_bn_relu_ws_bytes,
	/* .bn_relu_fwd_train */ g_bn_relu_fwd_train,
	/* .bn_relu_bwd */ g_bn_relu_bwd,
	/* .bn_add_relu_ok */ g_bn_add_relu_ok,
	/* .bn_add_relu_fwd_train */ g_bn_add_relu_fwd_train,
	/* .infer_slice_bytes */ 0, /* a GPU wants whole batches */
};

extern "C" int bt_backend_cuda(struct bt_backend *be, int device)
{
	struct bt_cuda *cu = NULL;
	cudaDeviceProp prop;
	char why[160];
	int count = 0, bv = 0, rc = BT_OK;
	const char *e;
	size_t dv;

	be->i = NULL;
	be->ctx = NULL;
	if (device < 0)
		return bt_error(BT_ERR_INVALID, "cuda:%d: no such device", device);
	bt_cuda_device_count(&count, why, sizeof why);
	if (count == 0)
		return bt_error(BT_ERR_NOTFOUND, "cuda:%d: %s", device, why);
	if (device >= count)
		return bt_error(BT_ERR_NOTFOUND, "cuda:%d: no such device (%d visible)", device, count);
	if ((rc = bt_cuda_dl_load()) < 0)
		return bt_error_prefix(rc, "cuda:%d", device);
	if (!(cu = (struct bt_cuda *)calloc(1, sizeof *cu)))
		return bt_error(BT_ERR_NOMEM, "CUDA backend");
	cu->device = device;
	cu->bn = bn_policy_env();
	cu->conv_find = (e = getenv("BT_CUDA_CONV")) && !strcmp(e, "find");
	/* The runtime's current device is per host thread: the executor's calls must come from
	 * this thread (or one that selected the same device). */
	CU(cudaSetDevice(device));
	CU(cudaGetDeviceProperties(&prop, device));
	cu->major = prop.major;
	CU(cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking));
	CU(cudaStreamCreateWithFlags(&cu->copy, cudaStreamNonBlocking));
	for (int i = 0; i < 2; i++) {
		CU(cudaEventCreateWithFlags(&cu->stage[i].copied, cudaEventDisableTiming));
		CU(cudaEventCreateWithFlags(&cu->stage[i].used, cudaEventDisableTiming));
	}
	DNN(dl.cudnnCreate(&cu->dnn));
	DNN(dl.cudnnSetStream(cu->dnn, cu->stream));
	DNN(dl.cudnnCreateTensorDescriptor(&cu->bn_x));
	DNN(dl.cudnnCreateTensorDescriptor(&cu->bn_p));
	BLAS(dl.cublasCreate(&cu->blas));
	BLAS(dl.cublasSetStream(cu->blas, cu->stream));
	BLAS(dl.cublasSetMathMode(cu->blas, CUBLAS_DEFAULT_MATH));
	BLAS(dl.cublasGetVersion(cu->blas, &bv));
	CHECK(dev_malloc(cu, (void **)&cu->flag, sizeof *cu->flag));
	dv = dl.cudnnGetVersion();
	snprintf(cu->desc, sizeof cu->desc, "cuda:%d %s, cuDNN %zu.%zu.%zu, cuBLAS %d.%d.%d", device,
		 prop.name, dv / 10000, dv % 10000 / 100, dv % 100, bv / 10000, bv % 10000 / 100,
		 bv % 100);
	if (cu->conv_find)
		snprintf(cu->desc + strlen(cu->desc), sizeof cu->desc - strlen(cu->desc),
			 ", convolutions timed");
	if (cu->bn != BT_CUDA_BN_AUTO)
		snprintf(cu->desc + strlen(cu->desc), sizeof cu->desc - strlen(cu->desc),
			 ", batch norm: %s", cu->bn == BT_CUDA_BN_OWN ? "bt's kernels" : "cuDNN");
	be->i = &cuda_backend;
	be->ctx = cu;
	cu = NULL;
out:
	if (rc)
		bt_error_prefix(rc, "cuda:%d", device);
	g_destroy(cu);
	return rc;
}

extern "C" int bt_backend_cuda_set_conv_find(struct bt_backend *be, int on)
{
	if (!be || be->i != &cuda_backend)
		return bt_error(BT_ERR_INVALID, "convolution algorithm search: not a CUDA backend");
	((struct bt_cuda *)be->ctx)->conv_find = !!on;
	return BT_OK;
}

extern "C" int bt_backend_cuda_set_bn(struct bt_backend *be, int policy)
{
	if (!be || be->i != &cuda_backend)
		return bt_error(BT_ERR_INVALID, "batch norm policy: not a CUDA backend");
	if (policy != BT_CUDA_BN_AUTO && policy != BT_CUDA_BN_OWN && policy != BT_CUDA_BN_CUDNN)
		return bt_error(BT_ERR_INVALID, "batch norm policy %d: not one of auto, own, cudnn", policy);
	((struct bt_cuda *)be->ctx)->bn = policy;
	return BT_OK;
}

extern "C" int bt_backend_cuda_set_tf32(struct bt_backend *be, int on)
{
	struct bt_cuda *cu;
	int rc = BT_OK;

	if (!be || be->i != &cuda_backend)
		return bt_error(BT_ERR_INVALID, "TF32: not a CUDA backend");
	cu = (struct bt_cuda *)be->ctx;
	/* Convolution entries are keyed by the setting: both kinds stay cached. */
	BLAS(dl.cublasSetMathMode(cu->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
	cu->tf32 = !!on;
out:
	return rc;
}
