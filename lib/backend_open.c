/* backend_open.c: from the name a tool's --device option gives to a backend: "cpu",
 * "cuda" (the first device) or "cuda:N". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bt.h"

int bt_backend_open(struct bt_backend *be, const char *device, int threads)
{
	be->i = NULL;
	be->ctx = NULL;
	if (!device || strcmp(device, "cpu") == 0)
		return bt_backend_cpu(be, threads);
	if (strcmp(device, "cuda") == 0)
		return bt_backend_cuda(be, 0);
	if (strncmp(device, "cuda:", 5) == 0 && device[5] >= '0' && device[5] <= '9') {
		char *end;
		long n;
		errno = 0;
		n = strtol(device + 5, &end, 10);
		if (!*end && !errno && n <= 4096)
			return bt_backend_cuda(be, (int)n);
	}
	return bt_error(BT_ERR_INVALID, "unknown device '%s' (expected cpu, cuda or cuda:N)", device);
}
