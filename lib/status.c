/* status.c: status texts, the thread-local error detail, CRC-32 and the assertion hook. */
#include "bt.h"

#include <errno.h>
#include <pthread.h>
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

/* zlib's crc32 runs at a few GB/s; record payloads of augmented float images are large
 * enough for that to show, so on x86-64 with PCLMULQDQ the bulk of a buffer is folded
 * 64 bytes at a time with carry-less multiplies (Gopal et al., "Fast CRC computation for
 * generic polynomials using PCLMULQDQ", Intel 2009), and zlib finishes the last bytes.
 * In the bit-reflected domain, moving a 128-bit lane forward by D bits multiplies its low
 * half by x^(D+32) and its high half by x^(D-32), modulo the polynomial; the constants are
 * computed from the polynomial at first use, and a unit test compares with zlib. Where the
 * CPU has VPCLMULQDQ and AVX-512, the same folds run on four 512-bit registers, 256 bytes
 * a step (BT_NO_VPCLMUL=1 keeps the 128-bit loop, for its test; BT_NO_PCLMUL=1 both). */
#if defined(__x86_64__)
#include <immintrin.h>

static uint64_t k2048[2], k512[2], k128[2];

/* x^n mod P, bit-reflected, shifted left by one as PCLMULQDQ's reflected products need. */
static uint64_t xpow_mod(int n)
{
	uint32_t r = 0x80000000u; /* x^0 */
	while (n-- > 0)
		r = (r & 1) ? (r >> 1) ^ 0xedb88320u : r >> 1;
	return (uint64_t)r << 1;
}

__attribute__((target("pclmul,sse4.1"))) static __m128i fold(__m128i v, const uint64_t k[2])
{
	__m128i kk = _mm_set_epi64x((long long)k[1], (long long)k[0]);
	return _mm_xor_si128(_mm_clmulepi64_si128(v, kk, 0x00), _mm_clmulepi64_si128(v, kk, 0x11));
}

/* The 16-byte remainder of x0 and the rest of the buffer after it, through zlib. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t fold_finish(__m128i x0, const uint8_t *p, size_t n)
{
	uint8_t v[16];
	uint32_t state;

	for (; n >= 16; p += 16, n -= 16)
		x0 = _mm_xor_si128(fold(x0, k128), _mm_loadu_si128((const __m128i *)p));
	/* The 16 folded bytes leave the same remainder as everything before them. */
	_mm_storeu_si128((__m128i *)v, x0);
	state = ~(uint32_t)crc32(0xffffffffu, v, 16);
	return (uint32_t)crc32(~state, p, (uInt)n);
}

__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_fold(uint32_t crc, const uint8_t *p,
								     size_t n)
{
	__m128i x0 = _mm_loadu_si128((const __m128i *)p), x1 = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32)), x3 = _mm_loadu_si128((const __m128i *)(p + 48));

	/* zlib's running value is the complement of the register; start it in the data. */
	x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
	p += 64;
	n -= 64;
	for (; n >= 64; p += 64, n -= 64) {
		x0 = _mm_xor_si128(fold(x0, k512), _mm_loadu_si128((const __m128i *)p));
		x1 = _mm_xor_si128(fold(x1, k512), _mm_loadu_si128((const __m128i *)(p + 16)));
		x2 = _mm_xor_si128(fold(x2, k512), _mm_loadu_si128((const __m128i *)(p + 32)));
		x3 = _mm_xor_si128(fold(x3, k512), _mm_loadu_si128((const __m128i *)(p + 48)));
	}
	x0 = _mm_xor_si128(fold(x0, k128), x1);
	x0 = _mm_xor_si128(fold(x0, k128), x2);
	x0 = _mm_xor_si128(fold(x0, k128), x3);
	return fold_finish(x0, p, n);
}

/* 256 bytes a step in four 512-bit registers (each four 128-bit lanes, so a lane moves
 * 2048 bits a step), then the four folded into one by 512 bits, and its four lanes into
 * one by 128 bits, as crc32_fold does; n >= 256. */
__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1"))) static uint32_t
crc32_fold512(uint32_t crc, const uint8_t *p, size_t n)
{
	const __m512i kb = _mm512_set_epi64((long long)k2048[1], (long long)k2048[0], (long long)k2048[1],
					    (long long)k2048[0], (long long)k2048[1], (long long)k2048[0],
					    (long long)k2048[1], (long long)k2048[0]);
	const __m512i k4 = _mm512_set_epi64((long long)k512[1], (long long)k512[0], (long long)k512[1],
					    (long long)k512[0], (long long)k512[1], (long long)k512[0],
					    (long long)k512[1], (long long)k512[0]);
	__m512i y0 = _mm512_loadu_si512((const void *)p), y1 = _mm512_loadu_si512((const void *)(p + 64));
	__m512i y2 = _mm512_loadu_si512((const void *)(p + 128)), y3 = _mm512_loadu_si512((const void *)(p + 192));
	__m128i x[4];

#define FOLD512(y, k, d) _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128((y), (k), 0x00), \
						   _mm512_clmulepi64_epi128((y), (k), 0x11), (d), 0x96)
	y0 = _mm512_xor_si512(y0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)~crc)));
	p += 256;
	n -= 256;
	for (; n >= 256; p += 256, n -= 256) {
		y0 = FOLD512(y0, kb, _mm512_loadu_si512((const void *)p));
		y1 = FOLD512(y1, kb, _mm512_loadu_si512((const void *)(p + 64)));
		y2 = FOLD512(y2, kb, _mm512_loadu_si512((const void *)(p + 128)));
		y3 = FOLD512(y3, kb, _mm512_loadu_si512((const void *)(p + 192)));
	}
	y0 = FOLD512(y0, k4, y1);
	y0 = FOLD512(y0, k4, y2);
	y0 = FOLD512(y0, k4, y3);
#undef FOLD512
	x[0] = _mm512_extracti32x4_epi32(y0, 0);
	x[1] = _mm512_extracti32x4_epi32(y0, 1);
	x[2] = _mm512_extracti32x4_epi32(y0, 2);
	x[3] = _mm512_extracti32x4_epi32(y0, 3);
	x[0] = _mm_xor_si128(fold(x[0], k128), x[1]);
	x[0] = _mm_xor_si128(fold(x[0], k128), x[2]);
	x[0] = _mm_xor_si128(fold(x[0], k128), x[3]);
	return fold_finish(x[0], p, n);
}

static int fold_ok, fold512_ok;
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;

static void fold_init(void)
{
	k2048[0] = xpow_mod(2048 + 32);
	k2048[1] = xpow_mod(2048 - 32);
	k512[0] = xpow_mod(512 + 32);
	k512[1] = xpow_mod(512 - 32);
	k128[0] = xpow_mod(128 + 32);
	k128[1] = xpow_mod(128 - 32);
	__builtin_cpu_init();
	fold_ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") &&
		  !getenv("BT_NO_PCLMUL");
	fold512_ok = fold_ok && __builtin_cpu_supports("avx512f") &&
		     __builtin_cpu_supports("vpclmulqdq") && !getenv("BT_NO_VPCLMUL");
}
#endif

uint32_t bt_crc32(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;
#if defined(__x86_64__)
	pthread_once(&fold_once, fold_init);
	if (fold_ok && n >= 256) {
		while (n >= 256) {
			size_t chunk = n > (1u << 30) ? (1u << 30) : n;
			crc = fold512_ok ? crc32_fold512(crc, b, chunk) : crc32_fold(crc, b, chunk);
			b += chunk;
			n -= chunk;
		}
		return n ? (uint32_t)crc32(crc, b, (uInt)n) : crc;
	}
#endif
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
