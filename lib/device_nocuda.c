/* device_nocuda.c: the device queries of a build without nvcc (make CUDA=0): there is
 * nothing to see, and each query says why. */
#include <stdio.h>

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
