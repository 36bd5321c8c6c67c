/* bt.h: status codes and error details shared by every part of libbt.
 *
 * The library never prints and never exits. Every function that can fail returns an
 * enum bt_status (0 on success, negative on failure) and, on failure, leaves a one-line
 * human-readable detail in a thread-local buffer that bt_errmsg() returns. Tools print
 * "bt-NAME: <detail>" and map the status to an exit code.
 *
 * Checklist when adding a tool (cmd/bt-NAME.c):
 *   cmd/bt-NAME.c, Makefile (TOOLS), man/man1/bt-NAME.1, completions/bash/bt-NAME,
 *   tests/bats/NAME.bats, README.md (tool table), docs/DESIGN.md.
 */
#ifndef BT_H
#define BT_H

#include <stddef.h>
#include <stdint.h>

#define BT_VERSION "0.1.0"

enum bt_status {
	BT_OK = 0,
	BT_ERR_IO = -1,          /* a system call failed; errno-style detail */
	BT_ERR_NOMEM = -2,       /* allocation failed */
	BT_ERR_FORMAT = -3,      /* input is not in the expected format */
	BT_ERR_CRC = -4,         /* checksum mismatch */
	BT_ERR_TRUNCATED = -5,   /* input ends early */
	BT_ERR_INVALID = -6,     /* invalid argument or option value */
	BT_ERR_UNSUPPORTED = -7, /* valid, but not supported by this build or version */
	BT_ERR_IMAGE = -8,       /* an image could not be decoded or encoded */
	BT_ERR_TOOBIG = -9,      /* a size limit (e.g. --max-pixels) was exceeded */
	BT_ERR_NOTFOUND = -10,   /* a named thing does not exist */
	BT_ERR_CUDA = -11,       /* the CUDA runtime reported an error */
};

/* Short fixed text for a status ("checksum mismatch"). Never NULL. */
const char *bt_strerror(int status);

/* Detail of the last failure in this thread; "" when none was recorded. */
const char *bt_errmsg(void);

/* Record a detail for the current thread and return status, so that a failing
 * function can end with `return bt_error(BT_ERR_FORMAT, "%s: bad magic", path);`. */
int bt_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like bt_error, with ": <strerror(errno)>" appended; status is BT_ERR_IO. */
int bt_error_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prefix the current detail with "<prefix>: " (used to add a file name or record index
 * on the way up). Returns status unchanged. */
int bt_error_prefix(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void bt_error_clear(void);

/* CRC-32 (the zlib/PNG polynomial), continuable: crc = bt_crc32(crc, p, n), start at 0. */
uint32_t bt_crc32(uint32_t crc, const void *p, size_t n);

#define BT_ASSERT(c) do { if (!(c)) bt_assert_fail(#c, __FILE__, __LINE__); } while (0)
void bt_assert_fail(const char *what, const char *file, int line) __attribute__((noreturn));

#endif
