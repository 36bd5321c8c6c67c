/* device.h: what the CUDA runtime can see. Built from lib/cuda/device.cu when nvcc is
 * present, from lib/device_nocuda.c otherwise (then every query says "built without CUDA"). */
#ifndef BT_DEVICE_H
#define BT_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bt_device_info {
	int index;
	char name[256];
	uint64_t memory_bytes;
	int multiprocessors;
	int major, minor;        /* compute capability */
};

/* 1 when this build has the CUDA backend compiled in. */
int bt_cuda_compiled(void);

/* Number of visible devices. No device (or no driver, or a CPU-only build) is not an
 * error: *n = 0 and reason says why. Returns BT_OK. */
int bt_cuda_device_count(int *n, char *reason, size_t reasonlen);

int bt_cuda_device_info(int index, struct bt_device_info *info);

/* Runtime and driver versions as "13.0" strings; "" when unknown. */
void bt_cuda_versions(char *runtime, char *driver, size_t len);

#ifdef __cplusplus
}
#endif
#endif
