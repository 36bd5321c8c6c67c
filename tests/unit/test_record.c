/* test_record.c: the record file writer and reader against the golden file, round trips,
 * streams, random access, and every kind of damage (truncation, flipped bytes, a missing
 * footer) with the index and offset the errors must name.
 *
 * Run from the project root. BT_GOLDEN_WRITE=1 rewrites tests/golden/v1.btr (only when the
 * format changes on purpose; the man page's hex dump must then change with it). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "bt.h"
#include "record.h"
#include "test.h"

#define GOLDEN "tests/golden/v1.btr"

static char tmpdir[] = "/tmp/bt-test-record-XXXXXX";

static const char *tmp(const char *name)
{
	static char buf[8][512];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

static const uint8_t pix[4] = {0, 64, 128, 255};
static const float tens[2] = {1.0f, -2.5f};
static const float soft[2] = {0.25f, 0.75f};
static const char *const names[2] = {"cat", "dog"};

static int write_golden(const char *path)
{
	bt_record_writer *w;
	struct bt_record a = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {2, 2, 1}, .label = 1, .id = 7,
			      .size = 4, .data = pix};
	struct bt_record b = {.kind = BT_PAYLOAD_F32, .ndim = 1, .shape = {2}, .label = -1, .id = 8,
			      .nsoft = 2, .soft = soft, .size = 8, .data = (const uint8_t *)tens};
	int st;
	if ((st = bt_record_writer_open(&w, path)) < 0)
		return st;
	if ((st = bt_record_writer_put(w, &a)) < 0 || (st = bt_record_writer_put(w, &b)) < 0 ||
	    (st = bt_record_writer_set_classes(w, 2, names)) < 0) {
		bt_record_writer_abort(w);
		return st;
	}
	return bt_record_writer_commit(w);
}


static void copy_cut(const char *from, const char *to, long keep)
{
	uint8_t *d;
	long n = file_bytes(from, &d);
	put_file(to, d, keep < n ? keep : n);
	free(d);
}

TEST(golden_bytes)
{
	uint8_t *a, *b;
	long na, nb;
	CHECK_EQ(write_golden(tmp("g.btr")), BT_OK);
	na = file_bytes(tmp("g.btr"), &a);
	nb = file_bytes(GOLDEN, &b);
	CHECK(na > 0 && nb > 0);
	CHECK_EQ(na, nb);
	CHECK(memcmp(a, b, na) == 0);
	/* Spot checks of the documented layout. */
	CHECK(memcmp(b, "\x89" "BTR\r\n\x1a\n", 8) == 0);
	CHECK(memcmp(b + 32, "BTRR", 4) == 0);
	CHECK_EQ(b[36], BT_PAYLOAD_RAW);
	CHECK(memcmp(b + nb - 4, "BTRE", 4) == 0);
	free(a);
	free(b);
}

TEST(golden_read)
{
	bt_record_reader *r;
	struct bt_record rec;
	CHECK_EQ(bt_record_reader_open(&r, GOLDEN), BT_OK);
	CHECK(bt_record_reader_has_footer(r));
	CHECK_EQ(bt_record_reader_count(r), 2);
	CHECK_EQ(bt_record_reader_nclasses(r), 2);
	CHECK_STR(bt_record_reader_class(r, 1), "dog");
	CHECK_EQ(bt_record_reader_next(r, &rec), 1);
	CHECK_EQ(rec.kind, BT_PAYLOAD_RAW);
	CHECK_EQ(rec.label, 1);
	CHECK_EQ(rec.id, 7);
	CHECK_EQ(rec.ndim, 3);
	CHECK_EQ(rec.shape[0], 2);
	CHECK_EQ(rec.shape[2], 1);
	CHECK_EQ(rec.size, 4);
	CHECK(memcmp(rec.data, pix, 4) == 0);
	CHECK_EQ(bt_record_reader_next(r, &rec), 1);
	CHECK_EQ(rec.kind, BT_PAYLOAD_F32);
	CHECK_EQ(rec.label, -1);
	CHECK_EQ(rec.nsoft, 2);
	CHECK(rec.soft[1] == 0.75f);
	CHECK(memcmp(rec.data, tens, 8) == 0);
	CHECK_EQ(bt_record_reader_next(r, &rec), 0);
	bt_record_reader_close(r);
}

TEST(stream_from_pipe)
{
	char cmd[600];
	FILE *fp;
	bt_record_reader *r;
	struct bt_record rec;
	int n = 0, st;
	snprintf(cmd, sizeof cmd, "cat %s", GOLDEN);
	fp = popen(cmd, "r");
	CHECK(fp);
	CHECK_EQ(bt_record_reader_open_fp(&r, fp, "<pipe>"), BT_OK);
	CHECK(!bt_record_reader_has_footer(r));
	while ((st = bt_record_reader_next(r, &rec)) > 0)
		n++;
	CHECK_EQ(st, 0);
	CHECK_EQ(n, 2);
	CHECK(bt_record_reader_has_footer(r)); /* read at the end of the stream */
	CHECK_STR(bt_record_reader_class(r, 0), "cat");
	bt_record_reader_close(r);
	pclose(fp);
}

/* Many records of varying sizes: counts, ids and payloads survive; seek finds each. */
TEST(roundtrip_and_seek)
{
	bt_record_writer *w;
	bt_record_reader *r;
	struct bt_record rec;
	uint8_t buf[3000];
	int i, n = 500;
	CHECK_EQ(bt_record_writer_open(&w, tmp("many.btr")), BT_OK);
	for (i = 0; i < n; i++) {
		struct bt_record a = {.kind = BT_PAYLOAD_JPEG, .ndim = 3, .shape = {10, 20, 3}, .label = i % 7,
				      .id = 1000 + i, .size = (uint64_t)(i * 5) % 3000, .data = buf};
		memset(buf, i & 255, sizeof buf);
		CHECK_EQ(bt_record_writer_put(w, &a), BT_OK);
	}
	CHECK_EQ(bt_record_writer_count(w), n);
	{
		uint64_t final = bt_record_writer_final_bytes(w);
		struct stat sb;
		CHECK_EQ(bt_record_writer_commit(w), BT_OK);
		CHECK(stat(tmp("many.btr"), &sb) == 0);
		CHECK_EQ((uint64_t)sb.st_size, final);
	}
	CHECK(access(tmp("many.btr"), F_OK) == 0);

	CHECK_EQ(bt_record_reader_open(&r, tmp("many.btr")), BT_OK);
	CHECK_EQ(bt_record_reader_count(r), n);
	for (i = n - 1; i >= 0; i -= 37) {
		CHECK_EQ(bt_record_reader_seek(r, i), BT_OK);
		CHECK_EQ(bt_record_reader_next(r, &rec), 1);
		CHECK_EQ(rec.id, 1000 + i);
		CHECK_EQ(rec.label, i % 7);
		CHECK_EQ(rec.size, (uint64_t)(i * 5) % 3000);
		CHECK(rec.size == 0 || rec.data[rec.size - 1] == (i & 255));
	}
	/* A seek reads its record whole (pread); the records after it come from the buffered
	 * stream, which must pick up where that record ended. */
	for (i = 3; i < n; i += 101) {
		CHECK_EQ(bt_record_reader_seek(r, i), BT_OK);
		for (int k = i; k < i + 4 && k < n; k++) {
			CHECK_EQ(bt_record_reader_next(r, &rec), 1);
			CHECK_EQ(rec.id, 1000 + k);
			CHECK_EQ(rec.size, (uint64_t)(k * 5) % 3000);
			CHECK(rec.size == 0 || rec.data[rec.size - 1] == (k & 255));
		}
	}
	CHECK_EQ(bt_record_reader_seek(r, n - 1), BT_OK);
	CHECK_EQ(bt_record_reader_next(r, &rec), 1);
	CHECK_EQ(rec.id, 1000 + n - 1);
	CHECK_EQ(bt_record_reader_next(r, &rec), 0);
	CHECK_EQ(bt_record_reader_seek(r, n), BT_OK);
	CHECK_EQ(bt_record_reader_next(r, &rec), 0);
	CHECK_EQ(bt_record_reader_seek(r, n + 1) < 0, 1);
	bt_record_reader_close(r);
}

TEST(empty_file)
{
	bt_record_writer *w;
	struct bt_verify_report rep;
	CHECK_EQ(bt_record_writer_open(&w, tmp("empty.btr")), BT_OK);
	CHECK_EQ(bt_record_writer_commit(w), BT_OK);
	CHECK_EQ(bt_record_verify(tmp("empty.btr"), &rep), BT_OK);
	CHECK_EQ(rep.records, 0);
	CHECK(rep.has_footer);
}

TEST(abort_leaves_nothing)
{
	bt_record_writer *w;
	struct bt_record a = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {2, 2, 1}, .size = 4, .data = pix};
	char cmd[600];
	CHECK_EQ(bt_record_writer_open(&w, tmp("aborted.btr")), BT_OK);
	CHECK_EQ(bt_record_writer_put(w, &a), BT_OK);
	bt_record_writer_abort(w);
	CHECK(access(tmp("aborted.btr"), F_OK) != 0);
	snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", tmpdir);
	CHECK(system(cmd) != 0); /* no temporary file left either */
}

TEST(bad_record_rejected_by_writer)
{
	bt_record_writer *w;
	struct bt_record a = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {2, 2, 3}, .size = 4, .data = pix};
	struct bt_record b = {.kind = 9, .size = 4, .data = pix};
	CHECK_EQ(bt_record_writer_open(&w, tmp("bad.btr")), BT_OK);
	CHECK_EQ(bt_record_writer_put(w, &a), BT_ERR_FORMAT);
	CHECK_EQ(bt_record_writer_put(w, &b), BT_ERR_FORMAT);
	bt_record_writer_abort(w);
}

TEST(flipped_payload_byte)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	struct bt_verify_report rep;
	d[32 + 48 + 2] ^= 0x10; /* a pixel of record 0 */
	put_file(tmp("flip.btr"), d, n);
	free(d);
	CHECK_EQ(bt_record_verify(tmp("flip.btr"), &rep), BT_ERR_CRC);
	CHECK_EQ(rep.bad_index, 0);
	CHECK_EQ(rep.bad_offset, 32);
	CHECK(strstr(bt_errmsg(), "record 0 at offset 32: checksum mismatch") != NULL);
}

TEST(flipped_header_byte)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	struct bt_verify_report rep;
	long rec1 = 32 + 48 + 4 + 4;
	d[rec1 + 16] ^= 0x01; /* record 1's id */
	put_file(tmp("fliph.btr"), d, n);
	free(d);
	CHECK_EQ(bt_record_verify(tmp("fliph.btr"), &rep), BT_ERR_CRC);
	CHECK_EQ(rep.records, 1);
	CHECK_EQ(rep.bad_index, 1);
	CHECK_EQ(rep.bad_offset, rec1);
}

TEST(flipped_size_byte_with_footer)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	struct bt_verify_report rep;
	d[32 + 8 + 5] ^= 0x40; /* record 0's payload size becomes huge */
	put_file(tmp("flips.btr"), d, n);
	free(d);
	CHECK_EQ(bt_record_verify(tmp("flips.btr"), &rep), BT_ERR_FORMAT);
	CHECK_EQ(rep.bad_index, 0);
	CHECK(strstr(bt_errmsg(), "damaged header") != NULL);
}

TEST(flipped_footer_byte)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	struct bt_verify_report rep;
	bt_record_reader *r;
	d[n - 30] ^= 0x01; /* inside the footer's class names */
	put_file(tmp("flipf.btr"), d, n);
	free(d);
	CHECK(bt_record_verify(tmp("flipf.btr"), &rep) < 0);
	CHECK(strstr(bt_errmsg(), "footer") != NULL);
	/* The records themselves are still readable front to back. */
	CHECK_EQ(bt_record_reader_open(&r, tmp("flipf.btr")), BT_OK);
	CHECK(!bt_record_reader_has_footer(r));
	CHECK(strstr(bt_record_reader_footer_problem(r), "damaged") != NULL);
	bt_record_reader_close(r);
}

TEST(truncated_mid_record)
{
	struct bt_verify_report rep;
	bt_record_reader *r;
	struct bt_record rec;
	long rec1 = 32 + 48 + 4 + 4;
	copy_cut(GOLDEN, tmp("trunc.btr"), rec1 + 20);
	CHECK_EQ(bt_record_verify(tmp("trunc.btr"), &rep), BT_ERR_TRUNCATED);
	CHECK_EQ(rep.records, 1);
	CHECK_EQ(rep.bad_index, 1);
	CHECK_EQ(rep.bad_offset, rec1);
	CHECK(strstr(bt_errmsg(), "record 1 at offset 88") != NULL);
	/* Sequential reading gets the intact record first. */
	CHECK_EQ(bt_record_reader_open(&r, tmp("trunc.btr")), BT_OK);
	CHECK_EQ(bt_record_reader_next(r, &rec), 1);
	CHECK_EQ(bt_record_reader_next(r, &rec), BT_ERR_TRUNCATED);
	bt_record_reader_close(r);
}

TEST(truncated_at_boundary_then_reindex)
{
	struct bt_verify_report rep;
	bt_record_reader *r;
	struct bt_record rec;
	uint64_t kept, dropped;
	long rec1 = 32 + 48 + 4 + 4;
	long end1 = rec1 + 48 + 8 + 8 + 4;
	/* No footer: readable, but verify says it is incomplete. */
	copy_cut(GOLDEN, tmp("nofoot.btr"), end1);
	CHECK_EQ(bt_record_verify(tmp("nofoot.btr"), &rep), BT_OK);
	CHECK_EQ(rep.records, 2);
	CHECK(!rep.has_footer);
	CHECK_EQ(bt_record_reindex(tmp("nofoot.btr"), 2, names, &kept, &dropped), BT_OK);
	CHECK_EQ(kept, 2);
	CHECK_EQ(dropped, 0);
	CHECK_EQ(bt_record_verify(tmp("nofoot.btr"), &rep), BT_OK);
	CHECK(rep.has_footer);
	/* Same bytes as the original: the footer is rebuilt exactly. */
	{
		uint8_t *a, *b;
		long na = file_bytes(tmp("nofoot.btr"), &a), nb = file_bytes(GOLDEN, &b);
		CHECK_EQ(na, nb);
		CHECK(memcmp(a, b, na) == 0);
		free(a);
		free(b);
	}
	/* A partial record at the end is dropped. */
	copy_cut(GOLDEN, tmp("part.btr"), rec1 + 30);
	CHECK_EQ(bt_record_reindex(tmp("part.btr"), 0, NULL, &kept, &dropped), BT_OK);
	CHECK_EQ(kept, 1);
	CHECK_EQ(dropped, 30);
	CHECK_EQ(bt_record_reader_open(&r, tmp("part.btr")), BT_OK);
	CHECK(bt_record_reader_has_footer(r));
	CHECK_EQ(bt_record_reader_count(r), 1);
	CHECK_EQ(bt_record_reader_next(r, &rec), 1);
	CHECK_EQ(bt_record_reader_next(r, &rec), 0);
	bt_record_reader_close(r);
}

TEST(reindex_refuses_damage_in_the_middle)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	uint64_t kept, dropped;
	d[32 + 48 + 1] ^= 0xff;
	put_file(tmp("mid.btr"), d, n);
	free(d);
	CHECK_EQ(bt_record_reindex(tmp("mid.btr"), 0, NULL, &kept, &dropped), BT_ERR_CRC);
	/* and the file is untouched */
	{
		struct stat sb;
		CHECK(stat(tmp("mid.btr"), &sb) == 0);
		CHECK_EQ(sb.st_size, n);
	}
}

TEST(not_a_record_file)
{
	bt_record_reader *r;
	put_file(tmp("text.btr"), (const uint8_t *)"hello world, not records at all\n", 32);
	CHECK_EQ(bt_record_reader_open(&r, tmp("text.btr")), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "not a bt record file") != NULL);
	put_file(tmp("short.btr"), (const uint8_t *)"\x89" "BT", 3);
	CHECK_EQ(bt_record_reader_open(&r, tmp("short.btr")), BT_ERR_FORMAT);
	CHECK_EQ(bt_record_reader_open(&r, tmp("missing.btr")), BT_ERR_IO);
	CHECK(strstr(bt_errmsg(), "No such file") != NULL);
}

TEST(newer_version_refused)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	bt_record_reader *r;
	d[8] = 2;
	put_file(tmp("v2.btr"), d, n);
	free(d);
	CHECK_EQ(bt_record_reader_open(&r, tmp("v2.btr")), BT_ERR_UNSUPPORTED);
}

/* bt_crc32 (folded with PCLMULQDQ where the CPU has it) against zlib, for every length
 * around the folding thresholds, odd alignments, and continuation across calls. */
TEST(crc32_matches_zlib)
{
	size_t n = 1 << 20;
	uint8_t *buf = malloc(n + 64);
	uint32_t seed = 12345;
	CHECK(buf);
	for (size_t i = 0; i < n + 64; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
	for (size_t len = 0; len < 1200; len += (len < 300 ? 1 : 37))
		for (size_t off = 0; off < 3; off++)
			CHECK_EQ(bt_crc32(0x1234567u * (uint32_t)len, buf + off, len),
				 (uint32_t)crc32(0x1234567u * (uint32_t)len, buf + off, (uInt)len));
	CHECK_EQ(bt_crc32(0, buf + 7, n), (uint32_t)crc32(0, buf + 7, (uInt)n));
	CHECK_EQ(bt_crc32(bt_crc32(0, buf, 1000), buf + 1000, n - 1000), (uint32_t)crc32(0, buf, (uInt)n));
	CHECK_EQ(bt_crc32(0, "123456789", 9), 0xcbf43926u);
	free(buf);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (getenv("BT_GOLDEN_WRITE")) {
		int st = write_golden(GOLDEN);
		fprintf(stderr, "wrote %s: %s\n", GOLDEN, st == BT_OK ? "ok" : bt_errmsg());
	}
	RUN(crc32_matches_zlib);
	RUN(golden_bytes);
	RUN(golden_read);
	RUN(stream_from_pipe);
	RUN(roundtrip_and_seek);
	RUN(empty_file);
	RUN(abort_leaves_nothing);
	RUN(bad_record_rejected_by_writer);
	RUN(flipped_payload_byte);
	RUN(flipped_header_byte);
	RUN(flipped_size_byte_with_footer);
	RUN(flipped_footer_byte);
	RUN(truncated_mid_record);
	RUN(truncated_at_boundary_then_reindex);
	RUN(reindex_refuses_damage_in_the_middle);
	RUN(not_a_record_file);
	RUN(newer_version_refused);
	{
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return test_summary();
}
