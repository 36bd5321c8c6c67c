/* test_checkpoint.c: the checkpoint file (.btc) against its golden file, round trips of
 * every section and tensor dtype, the text accessors, the safe write, and every kind of
 * damage (each truncation, each single-bit flip, a foreign file), then a zoo model's
 * parameters and spec through a checkpoint and back.
 *
 * Run from the project root. BT_GOLDEN_WRITE=1 rewrites tests/golden/v1.btc (only when the
 * format changes on purpose; the hex dump in bt-checkpoint(5) must then change with it).
 * `test_checkpoint --write-model PATH` writes a complete cifar_resnet20_v1 checkpoint (the
 * Bats tests of bt-info use it) and exits. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "augment.h"
#include "bt.h"
#include "checkpoint.h"
#include "graph.h"
#include "test.h"
#include "zoo.h"

#define GOLDEN "tests/golden/v1.btc"

/* In memory where there is a tmpfs: the damage tests write a file thousands of times. */
static char tmpdir[64] = "/tmp/bt-test-checkpoint-XXXXXX";

static const char *tmp(const char *name)
{
	static char buf[8][512];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}


/* ---- the golden file: a few keys per section, two classes, one metrics line, one f32 and
 * one f16 tensor. */
static const float golden_w[6] = {0.5f, -1.0f, 2.0f, 0.25f, -0.125f, 3.0f};
static const uint16_t golden_b[2] = {0x3c00, 0xc000}; /* 1.0, -2.0 in IEEE half */
static const char *const golden_classes[2] = {"cat", "dog"};

static int fill_golden(struct bt_ckpt *c)
{
	const uint64_t ws[2] = {2, 3}, bs[1] = {2};
	int st;
	if ((st = bt_ckpt_set(c, BT_CKPT_SPEC, "model", "tiny")) < 0 ||
	    (st = bt_ckpt_set(c, BT_CKPT_SPEC, "classes", "%d", 2)) < 0 ||
	    (st = bt_ckpt_set(c, BT_CKPT_SPEC, "input_size", "%d", 8)) < 0 ||
	    (st = bt_ckpt_set(c, BT_CKPT_STATE, "epoch", "%d", 1)) < 0 ||
	    (st = bt_ckpt_set(c, BT_CKPT_STATE, "iteration", "%d", 10)) < 0 ||
	    (st = bt_ckpt_set(c, BT_CKPT_STATE, "complete", "%d", 0)) < 0 ||
	    (st = bt_ckpt_set(c, BT_CKPT_RECIPE, "lr", "%g", 0.1)) < 0 ||
	    (st = bt_ckpt_set(c, BT_CKPT_RECIPE, "batch_size", "%d", 4)) < 0 ||
	    (st = bt_ckpt_set_classes(c, 2, golden_classes)) < 0 ||
	    (st = bt_ckpt_set_metrics(c, "{\"type\":\"epoch\",\"epoch\":0,\"loss\":0.5}\n")) < 0 ||
	    (st = bt_ckpt_add_tensor(c, "fc.weight", BT_DTYPE_F32, 2, ws, golden_w)) < 0 ||
	    (st = bt_ckpt_add_tensor(c, "fc.bias", BT_DTYPE_F16, 1, bs, golden_b)) < 0)
		return st;
	return BT_OK;
}

static int write_golden(const char *path)
{
	struct bt_ckpt c;
	int st;
	bt_ckpt_init(&c);
	st = fill_golden(&c);
	if (st == BT_OK)
		st = bt_ckpt_write(&c, path);
	bt_ckpt_free(&c);
	return st;
}

TEST(dtypes)
{
	CHECK_STR(bt_dtype_name(BT_DTYPE_F32), "float32");
	CHECK_STR(bt_dtype_name(BT_DTYPE_F16), "float16");
	CHECK_STR(bt_dtype_name(BT_DTYPE_BF16), "bfloat16");
	CHECK_STR(bt_dtype_name(7), "unknown");
	CHECK_EQ(bt_dtype_size(BT_DTYPE_F32), 4);
	CHECK_EQ(bt_dtype_size(BT_DTYPE_F16), 2);
	CHECK_EQ(bt_dtype_size(BT_DTYPE_BF16), 2);
	CHECK_EQ(bt_dtype_size(-1), 0);
	CHECK_STR(bt_ckpt_section_name(BT_CKPT_SPEC), "spec");
	CHECK_STR(bt_ckpt_section_name(BT_CKPT_STATE), "state");
	CHECK_STR(bt_ckpt_section_name(BT_CKPT_RECIPE), "recipe");
}

TEST(set_replaces_and_checks)
{
	struct bt_ckpt c;
	bt_ckpt_init(&c);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_STATE, "epoch", "%d", 1), BT_OK);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_STATE, "seed", "%d", 5), BT_OK);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_STATE, "epoch", "%d", 2), BT_OK);
	CHECK_EQ(c.nkv[BT_CKPT_STATE], 2);
	CHECK_STR(c.kv[BT_CKPT_STATE][0].key, "epoch"); /* replaced in place, order kept */
	CHECK_STR(bt_ckpt_get(&c, BT_CKPT_STATE, "epoch"), "2");
	CHECK(bt_ckpt_get(&c, BT_CKPT_SPEC, "epoch") == NULL);
	CHECK(bt_ckpt_get(&c, BT_CKPT_STATE, "epoc") == NULL);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "a=b", "x"), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "", "x"), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "a b", "x"), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "k", "two\nlines"), BT_ERR_INVALID);
	CHECK(strstr(bt_errmsg(), "newline") != NULL);
	CHECK_EQ(bt_ckpt_set(&c, 3, "k", "v"), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "Ok_key.1-x", "%s", ""), BT_OK);
	CHECK_STR(bt_ckpt_get(&c, BT_CKPT_SPEC, "Ok_key.1-x"), "");
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "eq", "a=b=c"), BT_OK);
	bt_ckpt_free(&c);
}

TEST(get_parsed_values)
{
	struct bt_ckpt c;
	int64_t i;
	uint64_t u;
	double d;
	bt_ckpt_init(&c);
	bt_ckpt_set(&c, BT_CKPT_STATE, "n", "-12");
	bt_ckpt_set(&c, BT_CKPT_STATE, "big", "18446744073709551615");
	bt_ckpt_set(&c, BT_CKPT_STATE, "x", "0.9123");
	bt_ckpt_set(&c, BT_CKPT_STATE, "bad", "12abc");
	bt_ckpt_set(&c, BT_CKPT_STATE, "empty", "%s", "");
	bt_ckpt_set(&c, BT_CKPT_STATE, "sp", " 3");
	CHECK_EQ(bt_ckpt_get_i64(&c, BT_CKPT_STATE, "n", &i), BT_OK);
	CHECK_EQ(i, -12);
	CHECK_EQ(bt_ckpt_get_u64(&c, BT_CKPT_STATE, "big", &u), BT_OK);
	CHECK(u == UINT64_MAX);
	CHECK_EQ(bt_ckpt_get_u64(&c, BT_CKPT_STATE, "n", &u), BT_ERR_FORMAT);
	CHECK_EQ(bt_ckpt_get_i64(&c, BT_CKPT_STATE, "big", &i), BT_ERR_FORMAT);
	CHECK_EQ(bt_ckpt_get_double(&c, BT_CKPT_STATE, "x", &d), BT_OK);
	CHECK(d == 0.9123);
	CHECK_EQ(bt_ckpt_get_double(&c, BT_CKPT_STATE, "n", &d), BT_OK);
	CHECK(d == -12);
	CHECK_EQ(bt_ckpt_get_i64(&c, BT_CKPT_STATE, "x", &i), BT_ERR_FORMAT);
	CHECK_EQ(bt_ckpt_get_i64(&c, BT_CKPT_STATE, "bad", &i), BT_ERR_FORMAT);
	CHECK_STR(bt_errmsg(), "checkpoint: state key 'bad' is not a number ('12abc')");
	CHECK_EQ(bt_ckpt_get_double(&c, BT_CKPT_STATE, "bad", &d), BT_ERR_FORMAT);
	CHECK_EQ(bt_ckpt_get_double(&c, BT_CKPT_STATE, "empty", &d), BT_ERR_FORMAT);
	CHECK_EQ(bt_ckpt_get_u64(&c, BT_CKPT_STATE, "sp", &u), BT_ERR_FORMAT);
	CHECK_EQ(bt_ckpt_get_i64(&c, BT_CKPT_STATE, "missing", &i), BT_ERR_FORMAT);
	CHECK_STR(bt_errmsg(), "checkpoint: state key 'missing' is missing");
	CHECK_EQ(bt_ckpt_get_double(&c, BT_CKPT_RECIPE, "x", &d), BT_ERR_FORMAT);
	CHECK_STR(bt_errmsg(), "checkpoint: recipe key 'x' is missing");
	bt_ckpt_free(&c);
}

TEST(add_tensor_checks)
{
	struct bt_ckpt c;
	float x[4] = {0};
	uint64_t s1[1] = {4}, s0[2] = {2, 0}, s5[5] = {1, 1, 1, 1, 4};
	bt_ckpt_init(&c);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "a", BT_DTYPE_F32, 1, s1, x), BT_OK);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "a", BT_DTYPE_F32, 1, s1, x), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "", BT_DTYPE_F32, 1, s1, x), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "b", 3, 1, s1, x), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "b", BT_DTYPE_F32, 0, s1, x), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "b", BT_DTYPE_F32, 5, s5, x), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "b", BT_DTYPE_F32, 2, s0, x), BT_ERR_INVALID);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "b", BT_DTYPE_F32, 1, s1, NULL), BT_ERR_INVALID);
	CHECK_EQ(c.ntensors, 1);
	CHECK(bt_ckpt_find(&c, "a") != NULL);
	CHECK(bt_ckpt_find(&c, "b") == NULL);
	CHECK_EQ(bt_ckpt_find(&c, "a")->bytes, 16);
	bt_ckpt_free(&c);
}

TEST(roundtrip_everything)
{
	struct bt_ckpt c, r;
	static float w4[2 * 3 * 3 * 5];
	static uint16_t h[7], bf[3 * 5];
	const uint64_t s4[4] = {2, 3, 3, 5}, s1[1] = {7}, s2[2] = {3, 5};
	const char *names[3] = {"a", "", "ünïcode class"};
	for (int i = 0; i < 90; i++)
		w4[i] = (float)i * 0.5f - 7;
	for (int i = 0; i < 7; i++)
		h[i] = (uint16_t)(0x3c00 + i);
	for (int i = 0; i < 15; i++)
		bf[i] = (uint16_t)(0x3f80 + 3 * i);
	bt_ckpt_init(&c);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "model", "resnet50_v1b"), BT_OK);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_SPEC, "mean", "%.9g,%.9g,%.9g", 123.68, 116.779, 103.939), BT_OK);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_STATE, "epoch", "3"), BT_OK);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_RECIPE, "lr_decay_epoch", "40,60"), BT_OK);
	CHECK_EQ(bt_ckpt_set(&c, BT_CKPT_RECIPE, "train", "data/with = sign.btr"), BT_OK);
	CHECK_EQ(bt_ckpt_set_classes(&c, 3, names), BT_OK);
	CHECK_EQ(bt_ckpt_set_metrics(&c, "{\"a\":1}\n{\"b\":2}\n"), BT_OK);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "w4", BT_DTYPE_F32, 4, s4, w4), BT_OK);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "momentum/h", BT_DTYPE_F16, 1, s1, h), BT_OK);
	CHECK_EQ(bt_ckpt_add_tensor(&c, "bf", BT_DTYPE_BF16, 2, s2, bf), BT_OK);
	CHECK_EQ(bt_ckpt_write(&c, tmp("all.btc")), BT_OK);
	bt_ckpt_free(&c);

	CHECK_EQ(bt_ckpt_read(&r, tmp("all.btc")), BT_OK);
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_SPEC, "model"), "resnet50_v1b");
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_SPEC, "mean"), "123.68,116.779,103.939");
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_STATE, "epoch"), "3");
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_RECIPE, "lr_decay_epoch"), "40,60");
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_RECIPE, "train"), "data/with = sign.btr");
	CHECK_EQ(r.nkv[BT_CKPT_SPEC], 2);
	CHECK_EQ(r.nclasses, 3);
	CHECK_STR(r.classes[0], "a");
	CHECK_STR(r.classes[1], "");
	CHECK_STR(r.classes[2], "ünïcode class");
	CHECK_STR(r.metrics, "{\"a\":1}\n{\"b\":2}\n");
	CHECK_EQ(r.ntensors, 3);
	const struct bt_ckpt_tensor *t = bt_ckpt_find(&r, "w4");
	CHECK(t && t->dtype == BT_DTYPE_F32 && t->ndim == 4 && t->shape[3] == 5 && t->bytes == 360);
	CHECK(memcmp(t->data, w4, 360) == 0);
	CHECK_EQ(((uintptr_t)t->data - (uintptr_t)r.file) % 4, 0);
	t = bt_ckpt_find(&r, "momentum/h");
	CHECK(t && t->dtype == BT_DTYPE_F16 && t->ndim == 1 && t->shape[0] == 7 && t->bytes == 14);
	CHECK(memcmp(t->data, h, 14) == 0);
	t = bt_ckpt_find(&r, "bf");
	CHECK(t && t->dtype == BT_DTYPE_BF16 && t->ndim == 2 && t->shape[0] == 3 && t->bytes == 30);
	CHECK(memcmp(t->data, bf, 30) == 0);
	CHECK_EQ(r.file_size, (size_t)(((const uint8_t *)r.file)[16] | ((const uint8_t *)r.file)[17] << 8));
	bt_ckpt_free(&r);
}

TEST(empty_checkpoint)
{
	struct bt_ckpt c, r;
	bt_ckpt_init(&c);
	CHECK_EQ(bt_ckpt_write(&c, tmp("empty.btc")), BT_OK);
	CHECK_EQ(bt_ckpt_read(&r, tmp("empty.btc")), BT_OK);
	CHECK_EQ(r.ntensors, 0);
	CHECK_EQ(r.nclasses, 0);
	CHECK(r.metrics == NULL);
	CHECK_EQ(r.nkv[0] + r.nkv[1] + r.nkv[2], 0);
	bt_ckpt_free(&r);
}

/* Nothing but PATH itself is left in the directory. */
static int only_file(const char *dir, const char *name)
{
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "test \"$(ls -A %s)\" = \"%s\"", dir, name);
	return system(cmd) == 0;
}

TEST(write_over_existing_file)
{
	struct bt_ckpt c, r;
	char dir[600];
	uint8_t *d;
	long n;
	snprintf(dir, sizeof dir, "%s/over", tmpdir);
	mkdir(dir, 0777);
	snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/x.btc");
	put_file(dir, (const uint8_t *)"old", 3);
	bt_ckpt_init(&c);
	bt_ckpt_set(&c, BT_CKPT_STATE, "epoch", "1");
	CHECK_EQ(bt_ckpt_write(&c, dir), BT_OK);
	bt_ckpt_set(&c, BT_CKPT_STATE, "epoch", "2");
	CHECK_EQ(bt_ckpt_write(&c, dir), BT_OK);
	CHECK_EQ(bt_ckpt_read(&r, dir), BT_OK);
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_STATE, "epoch"), "2");
	bt_ckpt_free(&r);
	CHECK(only_file(tmp("over"), "x.btc"));

	/* A failing write (the tensor changed under the writer cannot be staged; a missing
	 * directory can) leaves the old file as it was and no temporary file. */
	n = file_bytes(dir, &d);
	CHECK(n > 0);
	CHECK(bt_ckpt_write(&c, tmp("over/nodir/x.btc")) == BT_ERR_IO);
	CHECK(strstr(bt_errmsg(), "nodir") != NULL);
	{
		struct bt_ckpt_kv *kv = &c.kv[BT_CKPT_STATE][0];
		char *old = kv->value;
		kv->value = (char *)"bad\nvalue"; /* filled by hand, as a careless caller might */
		CHECK_EQ(bt_ckpt_write(&c, dir), BT_ERR_INVALID);
		kv->value = old;
	}
	{
		uint8_t *d2;
		long n2 = file_bytes(dir, &d2);
		CHECK_EQ(n2, n);
		CHECK(memcmp(d, d2, n) == 0);
		free(d2);
	}
	CHECK(only_file(tmp("over"), "x.btc"));
	free(d);
	bt_ckpt_free(&c);
}

TEST(golden_bytes)
{
	uint8_t *a, *b;
	long na, nb;
	CHECK_EQ(write_golden(tmp("g.btc")), BT_OK);
	na = file_bytes(tmp("g.btc"), &a);
	nb = file_bytes(GOLDEN, &b);
	CHECK(na > 0 && nb > 0);
	CHECK_EQ(na, nb);
	CHECK(memcmp(a, b, na) == 0);
	CHECK(memcmp(b, "\x89" "BTC\r\n\x1a\n", 8) == 0);
	CHECK_EQ(b[8], 1);
	CHECK(memcmp(b + 64, "SPEC", 4) == 0);
	free(a);
	free(b);
}

TEST(golden_read)
{
	struct bt_ckpt r;
	const struct bt_ckpt_tensor *t;
	int64_t v;
	CHECK_EQ(bt_ckpt_read(&r, GOLDEN), BT_OK);
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_SPEC, "model"), "tiny");
	CHECK_EQ(bt_ckpt_get_i64(&r, BT_CKPT_STATE, "iteration", &v), BT_OK);
	CHECK_EQ(v, 10);
	CHECK_STR(bt_ckpt_get(&r, BT_CKPT_RECIPE, "lr"), "0.1");
	CHECK_EQ(r.nclasses, 2);
	CHECK_STR(r.classes[1], "dog");
	CHECK_STR(r.metrics, "{\"type\":\"epoch\",\"epoch\":0,\"loss\":0.5}\n");
	CHECK_EQ(r.ntensors, 2);
	CHECK_STR(r.tensors[0].name, "fc.weight");
	t = bt_ckpt_find(&r, "fc.weight");
	CHECK(t && t->dtype == BT_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
	CHECK(memcmp(t->data, golden_w, sizeof golden_w) == 0);
	t = bt_ckpt_find(&r, "fc.bias");
	CHECK(t && t->dtype == BT_DTYPE_F16 && t->bytes == 4);
	CHECK(memcmp(t->data, golden_b, 4) == 0);
	CHECK(bt_f16_to_f32(((const uint16_t *)t->data)[1]) == -2.0f);
	bt_ckpt_free(&r);
}

TEST(truncated_at_every_length)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	char want[600];
	CHECK(n > 64);
	for (long k = 0; k < n; k++) {
		struct bt_ckpt r;
		int st;
		put_file(tmp("cut.btc"), d, k);
		st = bt_ckpt_read(&r, tmp("cut.btc"));
		if (st != BT_ERR_TRUNCATED) {
			fprintf(stderr, "length %ld: %d %s\n", k, st, bt_errmsg());
			CHECK_EQ(st, BT_ERR_TRUNCATED);
		}
		CHECK(r.ntensors == 0 && r.file == NULL && r.nclasses == 0);
		CHECK(strstr(bt_errmsg(), tmp("cut.btc")) == bt_errmsg());
		CHECK(strstr(bt_errmsg(), "truncated") != NULL);
		if (k >= BT_CKPT_HEADER) {
			snprintf(want, sizeof want, "%s: truncated: %ld bytes, the header says %ld", tmp("cut.btc"), k, n);
			CHECK_STR(bt_errmsg(), want);
		}
	}
	free(d);
}

TEST(every_bit_flip_refused)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	long refused = 0;
	CHECK(n > 64);
	for (long k = 0; k < n; k++) {
		for (int bit = 0; bit < 8; bit++) {
			struct bt_ckpt r;
			int st;
			d[k] ^= (uint8_t)(1u << bit);
			put_file(tmp("flip.btc"), d, n);
			d[k] ^= (uint8_t)(1u << bit);
			st = bt_ckpt_read(&r, tmp("flip.btc"));
			if (st == BT_OK) {
				fprintf(stderr, "byte %ld bit %d: accepted\n", k, bit);
				bt_ckpt_free(&r);
				CHECK(st != BT_OK);
			}
			CHECK(st == BT_ERR_FORMAT || st == BT_ERR_CRC || st == BT_ERR_TRUNCATED ||
			      st == BT_ERR_UNSUPPORTED);
			CHECK(r.file == NULL);
			CHECK(strncmp(bt_errmsg(), tmp("flip.btc"), strlen(tmp("flip.btc"))) == 0);
			refused++;
		}
	}
	CHECK_EQ(refused, 8 * n);
	free(d);
}

TEST(tensor_crc_names_the_tensor)
{
	struct bt_ckpt r;
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d), tdat;
	char want[600];
	/* Damage the tensor's bytes and repair the TDAT section's CRC, so that only the
	 * tensor's own CRC can notice. */
	CHECK(n > 0);
	tdat = n - 64 - 4; /* TDAT payload: fc.weight at 0 (24 bytes), fc.bias at 64 (4 bytes) */
	CHECK(memcmp(d + tdat - 16, "TDAT", 4) == 0);
	d[tdat + 64 + 1] ^= 0x80;
	{
		uint32_t crc = bt_crc32(0, d + tdat, (size_t)(n - tdat));
		for (int i = 0; i < 4; i++)
			d[tdat - 12 + i] = (uint8_t)(crc >> (8 * i));
	}
	put_file(tmp("tcrc.btc"), d, n);
	CHECK_EQ(bt_ckpt_read(&r, tmp("tcrc.btc")), BT_ERR_CRC);
	snprintf(want, sizeof want, "%s: tensor 'fc.bias' fails its CRC check", tmp("tcrc.btc"));
	CHECK_STR(bt_errmsg(), want);
	free(d);
}

TEST(foreign_and_odd_files)
{
	struct bt_ckpt r;
	char want[600];
	put_file(tmp("foreign.btc"), (const uint8_t *)"PK\3\4 this is a zip file, honest", 32);
	CHECK_EQ(bt_ckpt_read(&r, tmp("foreign.btc")), BT_ERR_FORMAT);
	snprintf(want, sizeof want, "%s: not a bt checkpoint (bad magic)", tmp("foreign.btc"));
	CHECK_STR(bt_errmsg(), want);
	CHECK_EQ(bt_ckpt_read(&r, "tests/golden/v1.btr"), BT_ERR_FORMAT);
	CHECK_STR(bt_errmsg(), "tests/golden/v1.btr: not a bt checkpoint (bad magic)");
	CHECK_EQ(bt_ckpt_read(&r, tmp("does-not-exist.btc")), BT_ERR_IO);
	CHECK(strstr(bt_errmsg(), "No such file") != NULL);
	CHECK_EQ(bt_ckpt_read(&r, tmpdir), BT_ERR_IO);
	/* Trailing bytes after a valid checkpoint. */
	{
		uint8_t *d;
		long n = file_bytes(GOLDEN, &d);
		uint8_t *e = calloc(1, n + 3);
		memcpy(e, d, n);
		put_file(tmp("long.btc"), e, n + 3);
		CHECK_EQ(bt_ckpt_read(&r, tmp("long.btc")), BT_ERR_FORMAT);
		CHECK(strstr(bt_errmsg(), "the header says") != NULL);
		/* A newer version is refused by name. */
		d[8] = 2;
		uint32_t crc = bt_crc32(0, d, 28);
		for (int i = 0; i < 4; i++)
			d[28 + i] = (uint8_t)(crc >> (8 * i));
		put_file(tmp("v2.btc"), d, n);
		CHECK_EQ(bt_ckpt_read(&r, tmp("v2.btc")), BT_ERR_UNSUPPORTED);
		CHECK(strstr(bt_errmsg(), "version 2") != NULL);
		free(e);
		free(d);
	}
}

/* Random garbage behind a valid header and after valid sections: refused, never a crash. */
TEST(fuzz_never_crashes)
{
	uint8_t *d;
	long n = file_bytes(GOLDEN, &d);
	uint64_t s = 0x9e3779b97f4a7c15u;
	int ok = 0;
	CHECK(n > 0);
	for (int round = 0; round < 3000; round++) {
		uint8_t *e = malloc(n);
		struct bt_ckpt r;
		int flips = 1 + round % 8;
		memcpy(e, d, n);
		for (int f = 0; f < flips; f++) {
			s = s * 6364136223846793005u + 1442695040888963407u;
			e[(s >> 33) % (uint64_t)n] = (uint8_t)(s >> 13);
		}
		put_file(tmp("fuzz.btc"), e, (long)((s >> 20) % 4 == 0 ? (s >> 24) % (uint64_t)n : (uint64_t)n));
		if (bt_ckpt_read(&r, tmp("fuzz.btc")) == BT_OK) {
			ok++; /* only possible when the random bytes equal the old ones */
			bt_ckpt_free(&r);
		}
		free(e);
	}
	CHECK(ok < 3000 / 8);
	free(d);
}

/* ---- a zoo model through a checkpoint */

static int model_checkpoint(const char *path, struct bt_graph *g, float **params, float **mom)
{
	struct bt_model_opts mo = {.classes = 10, .in_channels = 1, .input_size = 28};
	struct bt_aug_params eval;
	struct bt_ckpt c;
	static const char *const names[10] = {"zero", "one", "two", "three", "four",
					      "five", "six", "seven", "eight", "nine"};
	int st;

	bt_model_defaults("cifar_resnet20_v1", &mo);
	bt_graph_init(g);
	if ((st = bt_model_build(g, "cifar_resnet20_v1", &mo)) < 0)
		return st;
	*params = malloc(g->nfloats * sizeof(float));
	*mom = malloc(g->nfloats * sizeof(float));
	for (size_t i = 0; i < g->nfloats; i++) {
		(*params)[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
		(*mom)[i] = (float)i * 1e-6f;
	}
	bt_aug_defaults(&eval, 0);
	eval.size = 28;
	eval.mean[0] = eval.mean[1] = eval.mean[2] = 33.3184f;
	eval.std[0] = eval.std[1] = eval.std[2] = 78.5675f;
	eval.crop_ratio = 1;
	bt_ckpt_init(&c);
	st = bt_ckpt_put_spec(&c, "cifar_resnet20_v1", &mo, &eval);
#define SET(sec, k, ...) if (st == BT_OK) st = bt_ckpt_set(&c, sec, k, __VA_ARGS__)
	SET(BT_CKPT_STATE, "epoch", "%d", 2);
	SET(BT_CKPT_STATE, "batch", "%d", 0);
	SET(BT_CKPT_STATE, "iteration", "%d", 600);
	SET(BT_CKPT_STATE, "epochs", "%d", 2);
	SET(BT_CKPT_STATE, "batches_per_epoch", "%d", 300);
	SET(BT_CKPT_STATE, "complete", "%d", 1);
	SET(BT_CKPT_STATE, "seed", "%d", 0);
	SET(BT_CKPT_STATE, "best_top1", "%.9g", 0.9731);
	SET(BT_CKPT_STATE, "best_epoch", "%d", 1);
	SET(BT_CKPT_STATE, "train_seconds", "%.9g", 61.5);
	SET(BT_CKPT_RECIPE, "model", "cifar_resnet20_v1");
	SET(BT_CKPT_RECIPE, "train", "mnist-train.btr");
	SET(BT_CKPT_RECIPE, "num_epochs", "%d", 2);
	SET(BT_CKPT_RECIPE, "batch_size", "%d", 200);
	SET(BT_CKPT_RECIPE, "lr", "%g", 0.1);
	SET(BT_CKPT_RECIPE, "lr_mode", "cosine");
#undef SET
	if (st == BT_OK)
		st = bt_ckpt_set_classes(&c, 10, names);
	if (st == BT_OK)
		st = bt_ckpt_set_metrics(&c, "{\"type\":\"epoch\",\"epoch\":0,\"val_top1\":0.95}\n"
					 "{\"type\":\"epoch\",\"epoch\":1,\"val_top1\":0.9731}\n");
	if (st == BT_OK)
		st = bt_ckpt_put_params(&c, g, *params, *mom);
	if (st == BT_OK)
		st = bt_ckpt_write(&c, path);
	bt_ckpt_free(&c);
	return st;
}

TEST(model_roundtrip)
{
	struct bt_graph g, g2, g3;
	struct bt_model_opts mo, mo12;
	struct bt_aug_params eval;
	struct bt_ckpt r;
	float *p, *m, *p2, *m2;
	char model[64];
	int ntrain = 0;

	CHECK_EQ(model_checkpoint(tmp("model.btc"), &g, &p, &m), BT_OK);
	CHECK_EQ(bt_ckpt_read(&r, tmp("model.btc")), BT_OK);
	for (int i = 0; i < g.nparams; i++)
		ntrain += g.params[i].trainable;
	CHECK_EQ(r.ntensors, (size_t)(g.nparams + ntrain));
	CHECK(bt_ckpt_find(&r, "momentum/fc.weight") || bt_ckpt_find(&r, "momentum/output.weight") ||
	      r.ntensors > 0);
	CHECK_EQ(bt_ckpt_get_spec(&r, model, sizeof model, &mo, &eval), BT_OK);
	CHECK_STR(model, "cifar_resnet20_v1");
	CHECK_EQ(mo.classes, 10);
	CHECK_EQ(mo.in_channels, 1);
	CHECK_EQ(mo.input_size, 28);
	CHECK_EQ(mo.aux, 0);
	CHECK_EQ(eval.size, 28);
	CHECK(eval.mean[1] == 33.3184f && eval.std[2] == 78.5675f);
	CHECK(eval.crop_ratio == 1.0);
	CHECK_EQ(eval.resize, 0);
	CHECK_EQ(eval.format, BT_AUG_F32);
	CHECK_EQ(eval.train, 0);
	CHECK_EQ(bt_ckpt_get_spec(&r, model, 5, &mo, &eval), BT_ERR_FORMAT);

	bt_graph_init(&g2);
	CHECK_EQ(bt_model_build(&g2, model, &mo), BT_OK);
	CHECK_EQ(g2.nfloats, g.nfloats);
	p2 = calloc(g2.nfloats, sizeof(float));
	m2 = calloc(g2.nfloats, sizeof(float));
	CHECK_EQ(bt_ckpt_get_params(&r, &g2, p2, m2), BT_OK);
	CHECK(memcmp(p, p2, g.nfloats * sizeof(float)) == 0);
	for (int i = 0; i < g.nparams; i++) {
		const struct bt_param *q = &g.params[i];
		if (q->trainable)
			CHECK(memcmp(m + q->offset, m2 + q->offset, q->count * sizeof(float)) == 0);
	}
	CHECK_EQ(bt_ckpt_get_params(&r, &g2, p2, NULL), BT_OK);

	/* 12 classes: the fc layer does not fit, named with both shapes; nothing copied. */
	mo12 = mo;
	mo12.classes = 12;
	bt_graph_init(&g3);
	CHECK_EQ(bt_model_build(&g3, model, &mo12), BT_OK);
	{
		float *p3 = calloc(g3.nfloats, sizeof(float));
		CHECK_EQ(bt_ckpt_get_params(&r, &g3, p3, NULL), BT_ERR_FORMAT);
		CHECK(strstr(bt_errmsg(), "has shape 10x64, the model wants 12x64") != NULL);
		for (size_t i = 0; i < g3.nfloats; i++)
			CHECK(p3[i] == 0);
		free(p3);
	}
	bt_graph_free(&g3);

	/* A missing tensor is named. */
	free(r.tensors[0].name);
	r.tensors[0].name = strdup("renamed");
	CHECK_EQ(bt_ckpt_get_params(&r, &g2, p2, NULL), BT_ERR_FORMAT);
	{
		char want[200];
		snprintf(want, sizeof want, "checkpoint has no tensor '%s'", g2.params[0].name);
		CHECK_STR(bt_errmsg(), want);
	}
	/* A bad spec value is named. */
	bt_ckpt_set(&r, BT_CKPT_SPEC, "std", "1,0,1");
	CHECK_EQ(bt_ckpt_get_spec(&r, model, sizeof model, &mo, &eval), BT_ERR_FORMAT);
	bt_ckpt_set(&r, BT_CKPT_SPEC, "std", "1,2");
	CHECK_EQ(bt_ckpt_get_spec(&r, model, sizeof model, &mo, &eval), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "'std'") != NULL);
	bt_ckpt_set(&r, BT_CKPT_SPEC, "std", "1,2,3");
	bt_ckpt_set(&r, BT_CKPT_SPEC, "classes", "ten");
	CHECK_EQ(bt_ckpt_get_spec(&r, model, sizeof model, &mo, &eval), BT_ERR_FORMAT);
	CHECK_STR(bt_errmsg(), "checkpoint: spec key 'classes' is not a number ('ten')");

	bt_ckpt_free(&r);
	bt_graph_free(&g2);
	bt_graph_free(&g);
	free(p);
	free(m);
	free(p2);
	free(m2);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-model") == 0) {
		struct bt_graph g;
		float *p = NULL, *m = NULL;
		int st = model_checkpoint(argv[2], &g, &p, &m);
		if (st < 0)
			fprintf(stderr, "test_checkpoint: %s\n", bt_errmsg());
		bt_graph_free(&g);
		free(p);
		free(m);
		return st < 0;
	}
	if (access("/dev/shm", W_OK) == 0)
		snprintf(tmpdir, sizeof tmpdir, "/dev/shm/bt-test-checkpoint-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (getenv("BT_GOLDEN_WRITE")) {
		int st = write_golden(GOLDEN);
		fprintf(stderr, "wrote %s: %s\n", GOLDEN, st == BT_OK ? "ok" : bt_errmsg());
	}
	RUN(dtypes);
	RUN(set_replaces_and_checks);
	RUN(get_parsed_values);
	RUN(add_tensor_checks);
	RUN(roundtrip_everything);
	RUN(empty_checkpoint);
	RUN(write_over_existing_file);
	RUN(golden_bytes);
	RUN(golden_read);
	RUN(truncated_at_every_length);
	RUN(every_bit_flip_refused);
	RUN(tensor_crc_names_the_tensor);
	RUN(foreign_and_odd_files);
	RUN(fuzz_never_crashes);
	RUN(model_roundtrip);
	{
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return test_summary();
}
