/* status.c: status texts, the thread-local error detail, CRC-32 and the assertion hook. */
#include "bt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static _Thread_local char errbuf[1024];

const char *bt_strerror(int status)
{
	switch (status) {
	case BT_OK: return "success";
	case BT_ERR_IO: return "input/output error";
	case BT_ERR_NOMEM: return "out of memory";
	case BT_ERR_FORMAT: return "bad format";
	case BT_ERR_CRC: return "checksum mismatch";
	case BT_ERR_TRUNCATED: return "truncated input";
	case BT_ERR_INVALID: return "invalid argument";
	case BT_ERR_UNSUPPORTED: return "not supported";
	case BT_ERR_IMAGE: return "bad image";
	case BT_ERR_TOOBIG: return "size limit exceeded";
	case BT_ERR_NOTFOUND: return "not found";
	case BT_ERR_CUDA: return "CUDA error";
	}
	return "unknown error";
}

const char *bt_errmsg(void)
{
	return errbuf;
}

void bt_error_clear(void)
{
	errbuf[0] = 0;
}

int bt_error(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return status;
}

int bt_error_errno(const char *fmt, ...)
{
	int e = errno;
	size_t len;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	len = strlen(errbuf);
	snprintf(errbuf + len, sizeof errbuf - len, ": %s", strerror(e));
	return e == ENOMEM ? BT_ERR_NOMEM : BT_ERR_IO;
}

int bt_error_prefix(int status, const char *fmt, ...)
{
	char old[sizeof errbuf];
	size_t len;
	va_list ap;
	memcpy(old, errbuf, sizeof old);
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	len = strlen(errbuf);
	snprintf(errbuf + len, sizeof errbuf - len, ": %s", old[0] ? old : bt_strerror(status));
	return status;
}

uint32_t bt_crc32(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;
	/* zlib's crc32 takes a uInt length; feed large buffers in pieces. */
	while (n > 0) {
		uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
		crc = (uint32_t)crc32(crc, b, chunk);
		b += chunk;
		n -= chunk;
	}
	return crc;
}

void bt_assert_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "libbt: assertion failed: %s (%s:%d)\n", what, file, line);
	abort();
}
