/* device.cu: device discovery through the CUDA runtime. The first CUDA piece of libbt; the
 * CUDA backend's kernels will sit beside it in lib/cuda/. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "../bt.h"
}
#include "../device.h"

extern "C" int bt_cuda_compiled(void)
{
	return 1;
}

extern "C" int bt_cuda_device_count(int *n, char *reason, size_t reasonlen)
{
	cudaError_t e = cudaGetDeviceCount(n);
	if (e != cudaSuccess) {
		*n = 0;
		if (e == cudaErrorInsufficientDriver)
			snprintf(reason, reasonlen, "no NVIDIA driver, or one older than this CUDA runtime");
		else if (e == cudaErrorNoDevice)
			snprintf(reason, reasonlen, "no device visible (CUDA_VISIBLE_DEVICES?)");
		else
			snprintf(reason, reasonlen, "%s", cudaGetErrorString(e));
		cudaGetLastError(); /* clear the sticky error for later calls */
		return BT_OK;
	}
	if (*n == 0)
		snprintf(reason, reasonlen, "the CUDA runtime sees no devices");
	return BT_OK;
}

extern "C" int bt_cuda_device_info(int index, struct bt_device_info *info)
{
	cudaDeviceProp p;
	cudaError_t e = cudaGetDeviceProperties(&p, index);
	if (e != cudaSuccess)
		return bt_error(BT_ERR_CUDA, "cuda:%d: %s", index, cudaGetErrorString(e));
	memset(info, 0, sizeof *info);
	info->index = index;
	snprintf(info->name, sizeof info->name, "%s", p.name);
	info->memory_bytes = (uint64_t)p.totalGlobalMem;
	info->multiprocessors = p.multiProcessorCount;
	info->major = p.major;
	info->minor = p.minor;
	return BT_OK;
}

extern "C" void bt_cuda_versions(char *runtime, char *driver, size_t len)
{
	int v = 0;
	runtime[0] = driver[0] = 0;
	if (cudaRuntimeGetVersion(&v) == cudaSuccess)
		snprintf(runtime, len, "%d.%d", v / 1000, (v % 1000) / 10);
	if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0)
		snprintf(driver, len, "%d.%d", v / 1000, (v % 1000) / 10);
}
