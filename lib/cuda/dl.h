/* dl.h: cuDNN and cuBLAS, loaded when a CUDA backend is first made rather than at program
 * start. Linking them costs every tool about 0.35 s of start-up (libcublasLt alone is
 * over 500 MB) even for --help; through dlopen only a run that asks for --device cuda pays,
 * and a machine without them gets a clear error instead of a tool that will not start.
 *
 * Every function the backend calls is listed once in BT_DL_FUNCS; its pointer has the
 * header's own type (decltype), so a changed prototype is a compile error, and calls read
 * dl.cudnnCreate(...) instead of cudnnCreate(...). Adding a call: add its name here (or,
 * for a name C++ overloads, to BT_DL_CUBLAS_TYPED with the exact prototype).
 */
#ifndef BT_CUDA_DL_H
#define BT_CUDA_DL_H

#include <cublas_v2.h>
#include <cudnn.h>

#define BT_DL_CUDNN(X)                                                                    \
	X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream) X(cudnnGetVersion)                \
	X(cudnnGetCudartVersion)                                                            \
	X(cudnnGetErrorString) X(cudnnGetLastErrorString)                                   \
	X(cudnnCreateTensorDescriptor) X(cudnnDestroyTensorDescriptor)                      \
	X(cudnnSetTensor4dDescriptor) X(cudnnCreateFilterDescriptor)                        \
	X(cudnnDestroyFilterDescriptor) X(cudnnSetFilter4dDescriptor)                       \
	X(cudnnCreateConvolutionDescriptor) X(cudnnDestroyConvolutionDescriptor)            \
	X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionGroupCount)                 \
	X(cudnnSetConvolutionMathType) X(cudnnGetConvolution2dForwardOutputDim)             \
	X(cudnnGetConvolutionForwardAlgorithm_v7) X(cudnnGetConvolutionForwardWorkspaceSize) \
	X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                      \
	X(cudnnGetConvolutionBackwardDataWorkspaceSize)                                     \
	X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                    \
	X(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                   \
	X(cudnnConvolutionForward) X(cudnnConvolutionBackwardData)                          \
	X(cudnnConvolutionBackwardFilter) X(cudnnDeriveBNTensorDescriptor)                  \
	X(cudnnBatchNormalizationForwardTraining) X(cudnnBatchNormalizationForwardInference) \
	X(cudnnBatchNormalizationBackward) X(cudnnFindConvolutionForwardAlgorithm)           \
	X(cudnnFindConvolutionBackwardDataAlgorithm)                                        \
	X(cudnnFindConvolutionBackwardFilterAlgorithm)

/* cublas_v2.h maps these names to their _v2 symbols with macros; dlsym wants the symbol. */
#define BT_DL_CUBLAS(X)                                                                   \
	X(cublasCreate) X(cublasDestroy) X(cublasSetStream) X(cublasGetVersion)            \
	X(cublasSetMathMode) X(cublasGetStatusString) X(cublasSgemm)

/* Names that cublas_api.h overloads in C++ (an inline wrapper taking the old cudaDataType
 * compute type sits beside the library's cublasGemmEx), so that decltype(&f) would be
 * ambiguous: their types are written out below, and static_cast picks the library's
 * function, which still makes a changed prototype a compile error. */
#define BT_DL_CUBLAS_TYPED(X) X(cublasGemmEx)

/* The types first: a member may not be declared with the name its own type is taken from. */
#define BT_DL_TYPE(f) typedef decltype(&f) bt_dl_t_##f;
BT_DL_CUDNN(BT_DL_TYPE)
BT_DL_CUBLAS(BT_DL_TYPE)
#undef BT_DL_TYPE
typedef decltype(static_cast<cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
						int, int, const void *, const void *, cudaDataType, int,
						const void *, cudaDataType, int, const void *, void *,
						cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t)>(
	&cublasGemmEx)) bt_dl_t_cublasGemmEx;
#define BT_DL_MEMBER(f) bt_dl_t_##f f;
struct bt_cuda_dl {
	BT_DL_CUDNN(BT_DL_MEMBER)
	BT_DL_CUBLAS(BT_DL_MEMBER)
	BT_DL_CUBLAS_TYPED(BT_DL_MEMBER)
};
#undef BT_DL_MEMBER

extern struct bt_cuda_dl dl;

/* Loads both libraries and every symbol, once per process; later calls return the first
 * outcome. BT_ERR_UNSUPPORTED with the library and dlerror's words when one is missing. */
int bt_cuda_dl_load(void);

#endif
