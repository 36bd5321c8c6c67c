/* device_nocuda.c: the device queries and the CUDA backend of a build without nvcc (make
 * CUDA=0): there is nothing to see or run, and each call says why. */
#include <stdio.h>

#include "backend.h"
#include "bt.h"
#include "device.h"

int bt_cuda_compiled(void)
{
	return 0;
}

int bt_cuda_device_count(int *n, char *reason, size_t reasonlen)
{
	*n = 0;
	snprintf(reason, reasonlen, "built without CUDA");
	return BT_OK;
}

int bt_cuda_device_info(int index, struct bt_device_info *info)
{
	(void)info;
	return bt_error(BT_ERR_UNSUPPORTED, "cuda:%d: built without CUDA", index);
}

void bt_cuda_versions(char *runtime, char *driver, size_t len)
{
	(void)len;
	runtime[0] = driver[0] = 0;
}

int bt_backend_cuda(struct bt_backend *be, int device)
{
	be->i = NULL;
	be->ctx = NULL;
	return bt_error(BT_ERR_UNSUPPORTED, "cuda:%d: built without CUDA", device);
}

int bt_backend_cuda_set_tf32(struct bt_backend *be, int on)
{
	(void)be;
	(void)on;
	return bt_error(BT_ERR_UNSUPPORTED, "TF32: built without CUDA");
}

int bt_backend_cuda_set_bn(struct bt_backend *be, int policy)
{
	(void)be;
	(void)policy;
	return bt_error(BT_ERR_UNSUPPORTED, "batch norm policy: built without CUDA");
}

int bt_backend_cuda_set_conv_find(struct bt_backend *be, int on)
{
	(void)be;
	(void)on;
	return bt_error(BT_ERR_UNSUPPORTED, "convolution algorithm search: built without CUDA");
}
