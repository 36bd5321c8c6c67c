/* test_loader.c: the data loader's batching, ordering, epochs, shuffling, limits, streams
 * and determinism across thread counts, on small raw-pixel record files it writes itself;
 * and deferred colour: the same draws, and after the colour stage the same floats, as the
 * float32 output, in buffers from a caller's allocator. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bt.h"
#include "loader.h"
#include "record.h"
#include "test.h"

static char tmpdir[] = "/tmp/bt-test-loader-XXXXXX";
static char path10[600], pathrgb[600];

#define RGB_W 20
#define RGB_H 14

/* n records of RGB_H x RGB_W x 3 raw pixels. */
static int write_rgb(const char *path, int n)
{
	bt_record_writer *w;
	uint8_t px[RGB_H * RGB_W * 3];
	int st;
	if ((st = bt_record_writer_open(&w, path)) < 0)
		return st;
	for (int i = 0; i < n; i++) {
		struct bt_record r = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {RGB_H, RGB_W, 3},
				      .label = i % 4, .id = 200 + (uint64_t)i, .size = sizeof px, .data = px};
		uint32_t x = 12345u + (uint32_t)i;
		for (size_t k = 0; k < sizeof px; k++) {
			x = x * 1664525u + 1013904223u;
			px[k] = (uint8_t)((x >> 24) / 2 + (k / 3 % RGB_W) * 6);
		}
		if ((st = bt_record_writer_put(w, &r)) < 0) {
			bt_record_writer_abort(w);
			return st;
		}
	}
	return bt_record_writer_commit(w);
}

/* n records of 12x16x1 raw pixels, label i % 3, id 100 + i. */
static int write_file(const char *path, int n)
{
	bt_record_writer *w;
	uint8_t px[12 * 16];
	int st;
	if ((st = bt_record_writer_open(&w, path)) < 0)
		return st;
	for (int i = 0; i < n; i++) {
		struct bt_record r = {.kind = BT_PAYLOAD_RAW, .ndim = 3, .shape = {12, 16, 1},
				      .label = i % 3, .id = 100 + (uint64_t)i, .size = sizeof px, .data = px};
		for (size_t k = 0; k < sizeof px; k++)
			px[k] = (uint8_t)(k * 7 + i * 31);
		if ((st = bt_record_writer_put(w, &r)) < 0) {
			bt_record_writer_abort(w);
			return st;
		}
	}
	return bt_record_writer_commit(w);
}

static struct bt_loader_opts opts(int threads, uint32_t batch)
{
	struct bt_loader_opts o = {.threads = threads, .batch = batch, .epochs = 1};
	bt_aug_defaults(&o.aug, 1);
	o.aug.size = 8;
	o.aug.mean[0] = o.aug.mean[1] = o.aug.mean[2] = 0;
	return o;
}

/* All output bytes and ids of a run, concatenated. */
static int collect(const char *path, const struct bt_loader_opts *o, uint8_t **bytes, size_t *n,
		   uint64_t *ids, int *nids, int *nbatches)
{
	bt_loader *l;
	const struct bt_batch *b;
	int st;
	*bytes = NULL;
	*n = 0;
	*nids = 0;
	*nbatches = 0;
	if ((st = bt_loader_open(&l, path, o)) < 0)
		return st;
	while ((st = bt_loader_next(l, &b)) > 0) {
		size_t per = bt_aug_out_bytes(&o->aug, b->channels) * b->n;
		*bytes = realloc(*bytes, *n + per);
		memcpy(*bytes + *n, b->data, per);
		*n += per;
		for (uint32_t i = 0; i < b->n; i++)
			ids[(*nids)++] = b->ids[i];
		(*nbatches)++;
	}
	bt_loader_close(l);
	return st;
}

TEST(batches_in_order)
{
	struct bt_loader_opts o = opts(2, 4);
	bt_loader *l;
	const struct bt_batch *b;
	int k = 0;
	uint32_t want[] = {4, 4, 2};
	CHECK_EQ(bt_loader_open(&l, path10, &o), BT_OK);
	CHECK_EQ(bt_loader_records(l), 10);
	while (bt_loader_next(l, &b) > 0) {
		CHECK(k < 3);
		CHECK_EQ(b->n, want[k]);
		CHECK_EQ(b->number, k);
		CHECK_EQ(b->channels, 1);
		CHECK_EQ(b->size, 8);
		CHECK_EQ(b->ids[0], 100 + 4 * k);
		CHECK_EQ(b->labels[1 % b->n], (4 * k + 1 % b->n) % 3);
		k++;
	}
	CHECK_EQ(k, 3);
	bt_loader_close(l);
}

TEST(drop_last_and_limit)
{
	struct bt_loader_opts o = opts(1, 4);
	uint64_t ids[64];
	uint8_t *bytes;
	size_t n;
	int nids, nb;
	o.drop_last = 1;
	CHECK_EQ(collect(path10, &o, &bytes, &n, ids, &nids, &nb), 0);
	free(bytes);
	CHECK_EQ(nb, 2);
	CHECK_EQ(nids, 8);
	o.drop_last = 0;
	o.limit = 5;
	o.epochs = 2;
	CHECK_EQ(collect(path10, &o, &bytes, &n, ids, &nids, &nb), 0);
	free(bytes);
	CHECK_EQ(nids, 10);
	CHECK_EQ(ids[5], 100); /* the second epoch starts again */
}

TEST(same_bytes_for_any_thread_count)
{
	struct bt_loader_opts o1 = opts(1, 3), o3 = opts(3, 3);
	uint64_t ids1[64], ids3[64];
	uint8_t *b1, *b3;
	size_t n1, n3;
	int k1, k3, nb;
	o1.shuffle = o3.shuffle = 1;
	o1.epochs = o3.epochs = 3;
	o1.seed = o3.seed = 42;
	o1.aug.format = o3.aug.format = BT_AUG_F32;
	CHECK_EQ(collect(path10, &o1, &b1, &n1, ids1, &k1, &nb), 0);
	CHECK_EQ(collect(path10, &o3, &b3, &n3, ids3, &k3, &nb), 0);
	CHECK_EQ(n1, n3);
	CHECK_EQ(k1, 30);
	CHECK(memcmp(b1, b3, n1) == 0);
	CHECK(memcmp(ids1, ids3, sizeof(uint64_t) * 30) == 0);
	free(b1);
	free(b3);
}

TEST(shuffle_is_a_new_permutation_each_epoch)
{
	struct bt_loader_opts o = opts(2, 5);
	uint64_t ids[64];
	uint8_t *bytes;
	size_t n;
	int nids, nb, seen[10] = {0}, same = 1, ident = 1;
	o.shuffle = 1;
	o.epochs = 2;
	o.seed = 7;
	CHECK_EQ(collect(path10, &o, &bytes, &n, ids, &nids, &nb), 0);
	free(bytes);
	CHECK_EQ(nids, 20);
	for (int i = 0; i < 10; i++) {
		seen[ids[i] - 100]++;
		if (ids[i] != ids[10 + i])
			same = 0;
		if (ids[i] != 100 + (uint64_t)i)
			ident = 0;
	}
	for (int i = 0; i < 10; i++)
		CHECK_EQ(seen[i], 1);
	CHECK(!same);
	CHECK(!ident);
}

TEST(stream_from_a_pipe)
{
	char cmd[700];
	FILE *fp;
	struct bt_loader_opts o = opts(2, 4);
	bt_loader *l;
	const struct bt_batch *b;
	int total = 0;
	snprintf(cmd, sizeof cmd, "cat %s", path10);
	fp = popen(cmd, "r");
	CHECK(fp);
	/* The loader reads "-" as standard input: point stdin at the pipe. */
	CHECK(dup2(fileno(fp), 0) == 0);
	CHECK_EQ(bt_loader_open(&l, "-", &o), BT_OK);
	CHECK_EQ(bt_loader_records(l), 0);
	while (bt_loader_next(l, &b) > 0)
		total += (int)b->n;
	CHECK_EQ(total, 10);
	CHECK_EQ(bt_loader_nclasses(l), 0);
	bt_loader_close(l);
	pclose(fp);
	o.shuffle = 1;
	CHECK_EQ(bt_loader_open(&l, "-", &o), BT_ERR_UNSUPPORTED);
}

TEST(damaged_record_names_its_index)
{
	char bad[700];
	FILE *fp;
	struct bt_loader_opts o = opts(2, 2);
	bt_loader *l;
	const struct bt_batch *b;
	int st, got = 0;
	snprintf(bad, sizeof bad, "%s/bad.btr", tmpdir);
	CHECK_EQ(write_file(bad, 6), BT_OK);
	fp = fopen(bad, "r+b");
	/* Record 3's payload: 32 + 3 * (48 + 192 + 4) + 48 + 10. */
	fseek(fp, 32 + 3 * 244 + 58, SEEK_SET);
	fputc(0x55 ^ 0xff, fp);
	fclose(fp);
	CHECK_EQ(bt_loader_open(&l, bad, &o), BT_OK);
	while ((st = bt_loader_next(l, &b)) > 0)
		got += (int)b->n;
	CHECK_EQ(st, BT_ERR_CRC);
	CHECK_EQ(got, 2);
	CHECK(strstr(bt_errmsg(), "record 3 at offset") != NULL);
	bt_loader_close(l);
}

TEST(empty_file)
{
	char empty[700];
	struct bt_loader_opts o = opts(2, 2);
	bt_loader *l;
	const struct bt_batch *b;
	snprintf(empty, sizeof empty, "%s/empty.btr", tmpdir);
	CHECK_EQ(write_file(empty, 0), BT_OK);
	CHECK_EQ(bt_loader_open(&l, empty, &o), BT_OK);
	CHECK_EQ(bt_loader_next(l, &b), 0);
	bt_loader_close(l);
}

/* A caller's allocator (a backend's page-locked one in bt-train), counting its blocks. */
struct counter {
	int allocs, frees;
};

static void *count_alloc(void *ctx, size_t bytes)
{
	__atomic_add_fetch(&((struct counter *)ctx)->allocs, 1, __ATOMIC_RELAXED);
	return malloc(bytes);
}

static void count_free(void *ctx, void *p)
{
	__atomic_add_fetch(&((struct counter *)ctx)->frees, 1, __ATOMIC_RELAXED);
	free(p);
}

/* The float32 loader and the deferred-colour one side by side (other thread counts, the
 * same seed, shuffled, two epochs): the same images in the same order, colour parameters
 * that are each image's draw from (seed, epoch, index), and crops that give the float32
 * output's bits through the colour stage. */
static int deferred_same(const char *path, uint32_t W, uint32_t H)
{
	struct bt_loader_opts of = opts(2, 3), od = opts(3, 3);
	struct counter cnt = {0, 0};
	struct bt_aug_scratch *s = bt_aug_scratch_new();
	bt_loader *lf = NULL, *ld = NULL;
	const struct bt_batch *bf, *bd;
	float *tmp = NULL;
	int st = 0, ok = 1, batches = 0, colour = 0;

	of.shuffle = od.shuffle = 1;
	of.epochs = od.epochs = 2;
	of.seed = od.seed = 7;
	of.aug.mean[1] = od.aug.mean[1] = 100;
	of.aug.std[2] = od.aug.std[2] = 3;
	of.aug.format = BT_AUG_F32;
	od.aug.format = BT_AUG_U8;
	od.aug.defer_colour = 1;
	od.data_alloc = count_alloc;
	od.data_free = count_free;
	od.data_ctx = &cnt;
	if (!s || bt_loader_open(&lf, path, &of) < 0 || bt_loader_open(&ld, path, &od) < 0)
		ok = 0;
	while (ok && (st = bt_loader_next(lf, &bf)) > 0) {
		size_t per;
		ok = bt_loader_next(ld, &bd) == 1 && bd->n == bf->n && bd->epoch == bf->epoch &&
		     bd->number == bf->number && bd->format == BT_AUG_U8 && bd->colour && !bf->colour;
		per = (size_t)bf->size * bf->size * (size_t)bf->channels;
		if (ok && !tmp)
			ok = (tmp = malloc(per * sizeof *tmp)) != NULL;
		for (uint32_t i = 0; ok && i < bf->n; i++) {
			const struct bt_aug_colour *c = &bd->colour[i];
			struct bt_aug_affine a;
			struct bt_aug_draw d;
			struct bt_rng g;
			ok = bd->index[i] == bf->index[i] && bd->ids[i] == bf->ids[i] && bd->labels[i] == bf->labels[i];
			bt_loader_rng(&g, od.seed, bd->epoch, bd->index[i]);
			bt_aug_draw(&od.aug, W, H, &g, &d);
			ok = ok && c->brightness == d.brightness && c->contrast == d.contrast &&
			     c->saturation == d.saturation && memcmp(c->order, d.order, sizeof d.order) == 0 &&
			     memcmp(c->alpha, d.alpha, sizeof d.alpha) == 0;
			bt_aug_colour_affine(c, bf->channels, od.aug.mean, od.aug.std, &a);
			colour += a.colour;
			ok = ok && bt_aug_colour_apply(&a, (const uint8_t *)bd->data + per * i, bd->size, bd->channels,
						       BT_AUG_F32, tmp, s) == BT_OK &&
			     memcmp(tmp, (const float *)bf->data + per * i, per * sizeof *tmp) == 0;
		}
		batches++;
	}
	ok = ok && st == 0 && bt_loader_next(ld, &bd) == 0 && batches == 8 && colour > 0;
	bt_loader_close(lf);
	bt_loader_close(ld);
	/* Every slot got its buffer from the allocator, and close gave each back. */
	ok = ok && cnt.allocs > 0 && cnt.allocs == cnt.frees;
	free(tmp);
	bt_aug_scratch_free(s);
	return ok;
}

TEST(deferred_colour_same_draws)
{
	CHECK(deferred_same(path10, 16, 12));
	CHECK(deferred_same(pathrgb, RGB_W, RGB_H));
}

TEST(rng_depends_on_seed_epoch_and_index)
{
	struct bt_rng a, b, c, d;
	bt_loader_rng(&a, 1, 2, 3);
	bt_loader_rng(&b, 1, 2, 3);
	bt_loader_rng(&c, 1, 3, 2);
	bt_loader_rng(&d, 2, 2, 3);
	CHECK(bt_rng_u64(&a) == bt_rng_u64(&b));
	bt_loader_rng(&a, 1, 2, 3);
	uint64_t x = bt_rng_u64(&a);
	CHECK(x != bt_rng_u64(&c));
	CHECK(x != bt_rng_u64(&d));
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path10, sizeof path10, "%s/ten.btr", tmpdir);
	snprintf(pathrgb, sizeof pathrgb, "%s/rgb.btr", tmpdir);
	if (write_file(path10, 10) < 0 || write_rgb(pathrgb, 11) < 0) {
		fprintf(stderr, "cannot write the test files in %s: %s\n", tmpdir, bt_errmsg());
		return 1;
	}
	RUN(batches_in_order);
	RUN(drop_last_and_limit);
	RUN(same_bytes_for_any_thread_count);
	RUN(shuffle_is_a_new_permutation_each_epoch);
	RUN(stream_from_a_pipe);
	RUN(damaged_record_names_its_index);
	RUN(empty_file);
	RUN(rng_depends_on_seed_epoch_and_index);
	RUN(deferred_colour_same_draws);
	{
		char cmd[700];
		snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return test_summary();
}
