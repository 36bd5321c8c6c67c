/* aug_kernels.c: one-thread speed of the training and evaluation transforms (lib/augment.c)
 * on JPEG files, in memory (no record file, no output file), beside the straightforward
 * pipeline built from the same library (full decode, then bt_image_resize_box, u8), with
 * the time split into stages: region decode, resampling and conversion, colour.
 *
 * Usage: aug_kernels [-n REPS] [-p] [-t TRAIN_RATE] [-e EVAL_RATE] FILE...
 *   -n  passes over the files; the best is reported (default 3)
 *   -p  portable kernels only (bt_simd(0)), to see what the AVX2 ones buy
 *   -t, -e  a peer's images/s for f32 (e.g. torchvision's, measured by hand) to print
 *       ratios against
 *
 * Build (after make): gcc -std=gnu11 -O2 -pthread -Ilib -o aug_kernels
 *   tests/bench/aug_kernels.c lib/libbt.a -ljpeg -lpng16 -lz -lm
 * Example: ./aug_kernels -t 358 -e 454 CORPUS/class_0?/img_????.jpg (the corpus of
 * tests/bench/mkcorpus.py; -t and -e from a torchvision run on the same files)
 */
#include "augment.h"
#include "bt.h"
#include "image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct item {
	struct bt_record rec;
	uint8_t *bytes;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int load(const char *path, struct item *it)
{
	struct bt_image_info info;
	FILE *f = fopen(path, "rb");
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET))
		goto fail;
	it->bytes = malloc((size_t)n);
	if (!it->bytes || fread(it->bytes, 1, (size_t)n, f) != (size_t)n)
		goto fail;
	fclose(f);
	if (bt_image_probe(it->bytes, (size_t)n, 0, &info) != BT_OK) {
		fprintf(stderr, "aug_kernels: %s: %s\n", path, bt_errmsg());
		return -1;
	}
	memset(&it->rec, 0, sizeof it->rec);
	it->rec.kind = info.format == BT_IMAGE_JPEG ? BT_PAYLOAD_JPEG : BT_PAYLOAD_PNG;
	it->rec.ndim = 3;
	it->rec.shape[0] = info.height;
	it->rec.shape[1] = info.width;
	it->rec.shape[2] = 3;
	it->rec.size = (uint64_t)n;
	it->rec.data = it->bytes;
	return 0;
fail:
	fprintf(stderr, "aug_kernels: cannot read '%s'\n", path);
	if (f)
		fclose(f);
	return -1;
}

/* Best of reps passes over the corpus, in images per second. */
static double run(const struct bt_aug_params *p, struct item *items, int n, int reps,
		  struct bt_aug_scratch *s, void *out)
{
	double best = 0;
	int r, i;

	for (r = 0; r < reps; r++) {
		double t = now();
		for (i = 0; i < n; i++) {
			struct bt_aug_draw d;
			struct bt_rng g;
			bt_rng_seed(&g, (uint64_t)i * 7919 + (uint64_t)r);
			bt_aug_draw(p, items[i].rec.shape[1], items[i].rec.shape[0], &g, &d);
			if (bt_aug_apply(p, &d, &items[i].rec, out, s) != BT_OK) {
				fprintf(stderr, "aug_kernels: image %d: %s\n", i, bt_errmsg());
				exit(1);
			}
		}
		t = now() - t;
		if (n / t > best)
			best = n / t;
	}
	return best;
}

/* The same work without the fusions: full decode, then the box resampled on its own. */
static double run_naive(const struct bt_aug_params *p, struct item *items, int n, int reps,
			double *decode_rate)
{
	double best = 0, tdec_best = 1e30;
	int r, i;

	for (r = 0; r < reps; r++) {
		double t = now(), tdec = 0;
		for (i = 0; i < n; i++) {
			struct bt_image im, out;
			struct bt_aug_draw d;
			struct bt_rng g;
			double t0 = now();
			bt_rng_seed(&g, (uint64_t)i * 7919 + (uint64_t)r);
			bt_aug_draw(p, items[i].rec.shape[1], items[i].rec.shape[0], &g, &d);
			if (bt_image_decode(items[i].bytes, items[i].rec.size, 0, 0, &im) != BT_OK)
				exit(1);
			tdec += now() - t0;
			if (bt_image_resize_box(&im, d.x, d.y, d.w, d.h, p->size, p->size, &out))
				exit(1);
			bt_image_free(&im);
			bt_image_free(&out);
		}
		t = now() - t;
		if (n / t > best)
			best = n / t;
		if (tdec < tdec_best)
			tdec_best = tdec;
	}
	*decode_rate = n / tdec_best;
	return best;
}

/* Stage split of one transform: region decode alone, then everything. */
static void stages(const struct bt_aug_params *p, struct item *items, int n, int reps,
		   struct bt_aug_scratch *s, void *out, const char *name)
{
	struct bt_aug_params q = *p;
	double all, nocolour, dec = 1e30;
	bt_jpeg_decoder *jd;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int r, i;

	all = run(p, items, n, reps, s, out);
	q.jitter = 0;
	q.lighting = 0;
	nocolour = run(&q, items, n, reps, s, out);
	if (bt_jpeg_decoder_new(&jd) != BT_OK)
		exit(1);
	for (r = 0; r < reps; r++) {
		double t = 0;
		for (i = 0; i < n; i++) {
			struct bt_aug_draw d;
			struct bt_taps tx = { 0 }, ty = { 0 };
			struct bt_jpeg_region reg = { 0 };
			struct bt_rng g;
			double t0;
			bt_rng_seed(&g, (uint64_t)i * 7919 + (uint64_t)r);
			bt_aug_draw(p, items[i].rec.shape[1], items[i].rec.shape[0], &g, &d);
			/* The region the transform decodes (denominator 1, as in this corpus). */
			bt_taps_init(&tx, d.x, d.x + d.w, p->train ? (int32_t)d.x : 0,
				     p->train ? (int32_t)(d.x + d.w) : (int32_t)items[i].rec.shape[1],
				     p->size);
			bt_taps_init(&ty, d.y, d.y + d.h, p->train ? (int32_t)d.y : 0,
				     p->train ? (int32_t)(d.y + d.h) : (int32_t)items[i].rec.shape[0],
				     p->size);
			reg.width = items[i].rec.shape[1];
			reg.height = items[i].rec.shape[0];
			reg.denom = 1;
			reg.x0 = (uint32_t)tx.first;
			reg.x1 = (uint32_t)tx.last;
			reg.y0 = (uint32_t)ty.first;
			reg.y1 = (uint32_t)ty.last;
			t0 = now();
			if (bt_jpeg_decode_region(jd, items[i].bytes, items[i].rec.size, &reg, &buf,
						  &cap) != BT_OK)
				exit(1);
			t += now() - t0;
			bt_taps_free(&tx);
			bt_taps_free(&ty);
		}
		if (t < dec)
			dec = t;
	}
	printf("  %s stages (ms/img): region decode %.3f, resample + convert %.3f, colour %.3f\n",
	       name, dec / n * 1e3, (1 / nocolour - dec / n) * 1e3, (1 / all - 1 / nocolour) * 1e3);
	bt_jpeg_decoder_free(jd);
	free(buf);
}

int main(int argc, char **argv)
{
	static const char *fmt_name[] = { "u8", "f32", "f16" };
	double peer[2] = { 0, 0 }, dec_rate;
	struct bt_aug_scratch *s;
	struct item *items;
	int n = 0, reps = 3, opt, i, train, f;
	void *out;

	while ((opt = getopt(argc, argv, "n:pt:e:")) != -1) {
		switch (opt) {
		case 'n': reps = atoi(optarg); break;
		case 'p': bt_simd(0); break;
		case 't': peer[1] = atof(optarg); break;
		case 'e': peer[0] = atof(optarg); break;
		default:
			fprintf(stderr, "usage: aug_kernels [-n REPS] [-p] [-t RATE] [-e RATE] FILE...\n");
			return 2;
		}
	}
	if (optind >= argc || reps < 1) {
		fprintf(stderr, "usage: aug_kernels [-n REPS] [-p] [-t RATE] [-e RATE] FILE...\n");
		return 2;
	}
	items = calloc((size_t)(argc - optind), sizeof *items);
	for (i = optind; i < argc; i++)
		if (load(argv[i], &items[n]) == 0)
			n++;
	s = bt_aug_scratch_new();
	out = malloc(224 * 224 * 3 * 4);
	if (!n || !s || !out)
		return 1;
	printf("%d images, best of %d passes, one thread, %s kernels\n", n, reps,
	       bt_simd(-1) ? "AVX2" : "portable");
	for (train = 1; train >= 0; train--) {
		struct bt_aug_params p;
		double naive, rate[3];
		bt_aug_defaults(&p, train);
		p.format = BT_AUG_U8;
		naive = run_naive(&p, items, n, reps, &dec_rate);
		for (f = BT_AUG_U8; f <= BT_AUG_F16; f++) {
			p.format = f;
			rate[f] = run(&p, items, n, reps, s, out);
			printf("%-5s %-3s %8.1f img/s  %.3f ms/img  %.2fx unfused", train ? "train" : "eval",
			       fmt_name[f], rate[f], 1e3 / rate[f], rate[f] / naive);
			if (peer[train] > 0 && f == BT_AUG_F32)
				printf("  %.2fx peer", rate[f] / peer[train]);
			printf("\n");
		}
		printf("  unfused (full decode + bt_image_resize_box, u8) %.1f img/s; full decode alone %.1f img/s\n",
		       naive, dec_rate);
		p.format = BT_AUG_F32;
		stages(&p, items, n, reps, s, out, train ? "train f32" : "eval f32");
	}
	bt_aug_scratch_free(s);
	for (i = 0; i < n; i++)
		free(items[i].bytes);
	free(items);
	free(out);
	return 0;
}
