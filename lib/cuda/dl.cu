/* dl.cu: loads cuDNN and cuBLAS at run time (dl.h says why). The sonames follow the
 * headers the backend was compiled against, so a library of another major version, with
 * another ABI, is never picked up. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

extern "C" {
#include "../bt.h"
}
#include "dl.h"

struct bt_cuda_dl dl;

#define DL_STR2(x) #x
#define DL_STR(x) DL_STR2(x)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int status = BT_OK;
static char reason[512];

static int open_lib(const char *soname, void **h)
{
	if ((*h = dlopen(soname, RTLD_NOW | RTLD_LOCAL)))
		return 0;
	snprintf(reason, sizeof reason, "cannot load %s (%s): install it or add its directory to LD_LIBRARY_PATH",
		 soname, dlerror());
	return -1;
}

static int sym(void *h, const char *lib, const char *name, void **p)
{
	if ((*p = dlsym(h, name)))
		return 0;
	snprintf(reason, sizeof reason, "%s has no %s: not the version bt was built against", lib, name);
	return -1;
}

static void load(void)
{
	static const char cudnn_so[] = "libcudnn.so." DL_STR(CUDNN_MAJOR);
	static const char cublas_so[] = "libcublas.so." DL_STR(CUBLAS_VER_MAJOR);
	void *dnn, *blas;

	if (open_lib(cudnn_so, &dnn) || open_lib(cublas_so, &blas)) {
		status = BT_ERR_UNSUPPORTED;
		return;
	}
#define DL_DNN(f) if (sym(dnn, cudnn_so, DL_STR(f), (void **)&dl.f)) goto fail;
#define DL_BLAS(f) if (sym(blas, cublas_so, DL_STR(f), (void **)&dl.f)) goto fail;
	BT_DL_CUDNN(DL_DNN)
	BT_DL_CUBLAS(DL_BLAS)
	BT_DL_CUBLAS_TYPED(DL_BLAS)
#undef DL_DNN
#undef DL_BLAS
	/* libcudnn.so.9 exists for CUDA 12 and for CUDA 13; the other one loads, then fails at
	 * cudnnCreate with a bare "incompatible runtime" */
	if (dl.cudnnGetCudartVersion() / 1000 != CUDART_VERSION / 1000) {
		snprintf(reason, sizeof reason,
			 "%s is built for CUDA %d, bt for CUDA %d: put the cuDNN for CUDA %d first in LD_LIBRARY_PATH",
			 cudnn_so, (int)(dl.cudnnGetCudartVersion() / 1000), CUDART_VERSION / 1000,
			 CUDART_VERSION / 1000);
		goto fail;
	}
	return;
fail:
	status = BT_ERR_UNSUPPORTED;
}

int bt_cuda_dl_load(void)
{
	pthread_once(&once, load);
	if (status != BT_OK)
		return bt_error(status, "%s", reason);
	return BT_OK;
}
