/* backend_nocudnn.c: the CUDA backend of a build that found nvcc but not cuDNN: the device
 * queries work (lib/cuda/device.cu), but convolution and batch norm need cuDNN, so there
 * is no backend and each call says why. Install cuDNN's headers and libraries (next to
 * CUDA's, or Debian's libcudnn9-dev-cuda-13) and rebuild to get it. */
#include "../backend.h"
#include "../bt.h"

int bt_backend_cuda(struct bt_backend *be, int device)
{
	be->i = NULL;
	be->ctx = NULL;
	return bt_error(BT_ERR_UNSUPPORTED, "cuda:%d: built without cuDNN", device);
}

int bt_backend_cuda_set_tf32(struct bt_backend *be, int on)
{
	(void)be;
	(void)on;
	return bt_error(BT_ERR_UNSUPPORTED, "TF32: built without cuDNN");
}

int bt_backend_cuda_set_bn(struct bt_backend *be, int policy)
{
	(void)be;
	(void)policy;
	return bt_error(BT_ERR_UNSUPPORTED, "batch norm policy: built without cuDNN");
}

int bt_backend_cuda_set_conv_find(struct bt_backend *be, int on)
{
	(void)be;
	(void)on;
	return bt_error(BT_ERR_UNSUPPORTED, "convolution algorithm search: built without cuDNN");
}
