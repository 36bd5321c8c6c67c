/* test.h: the few macros bt's C unit tests share. Each test file defines tests with
 * TEST(name) { ... }, lists them in main with RUN(name), and ends with
 * `return test_summary();`, which prints the closing line "N passed, N failed" and
 * returns non-zero when anything failed. A failed CHECK reports file, line and the
 * expression and ends the current test. */
#ifndef BT_TEST_H
#define BT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A whole file into *data (malloc'd); its length, or -1. */
static inline long file_bytes(const char *path, uint8_t **data)
{
	FILE *fp = fopen(path, "rb");
	long n;
	if (!fp)
		return -1;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	*data = malloc(n ? n : 1);
	if (fread(*data, 1, n, fp) != (size_t)n)
		n = -1;
	fclose(fp);
	return n;
}

/* Writes n bytes as the whole file. */
static inline void put_file(const char *path, const uint8_t *d, long n)
{
	FILE *fp = fopen(path, "wb");
	if (n)
		fwrite(d, 1, n, fp);
	fclose(fp);
}

static int test_passed, test_failed, test_cur_failed;

#define TEST(name) static void name(void)
#define RUN(name)                                                                  \
	do {                                                                       \
		test_cur_failed = 0;                                               \
		name();                                                            \
		if (test_cur_failed) {                                             \
			test_failed++;                                             \
			fprintf(stderr, "FAIL %s\n", #name);                       \
		} else {                                                           \
			test_passed++;                                             \
			fprintf(stderr, "ok   %s\n", #name);                       \
		}                                                                  \
	} while (0)
#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__,     \
				__LINE__, #c);                                     \
			test_cur_failed = 1;                                       \
			return;                                                    \
		}                                                                  \
	} while (0)
#define CHECK_EQ(a, b)                                                             \
	do {                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                \
		if (a_ != b_) {                                                    \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",  \
				__FILE__, __LINE__, #a, #b, a_, b_);               \
			test_cur_failed = 1;                                       \
			return;                                                    \
		}                                                                  \
	} while (0)
#define CHECK_STR(a, b)                                                            \
	do {                                                                       \
		const char *a_ = (a), *b_ = (b);                                   \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                           \
			fprintf(stderr, "%s:%d: %s == \"%s\" failed: got \"%s\"\n", \
				__FILE__, __LINE__, #a, b_ ? b_ : "(null)",        \
				a_ ? a_ : "(null)");                               \
			test_cur_failed = 1;                                       \
			return;                                                    \
		}                                                                  \
	} while (0)

static inline int test_summary(void)
{
	printf("%d passed, %d failed\n", test_passed, test_failed);
	return test_failed ? 1 : 0;
}

#endif
