/* test_loader.c: the data loader's batching, ordering, epochs, shuffling, limits, streams
 * and determinism across thread counts, on small raw-pixel record files it writes itself. */
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
static char path10[600];

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
	if (write_file(path10, 10) < 0) {
		fprintf(stderr, "cannot write %s: %s\n", path10, bt_errmsg());
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
	{
		char cmd[700];
		snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return test_summary();
}
