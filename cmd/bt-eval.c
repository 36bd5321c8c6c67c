/* bt-eval: scores a checkpoint on a record file on its own. The checkpoint carries
 * everything needed (bt-checkpoint(5)): the model is rebuilt from its SPEC section, its
 * parameters are loaded, and the record file is read through the loader with the evaluation
 * transform the checkpoint names. Reports top-1, top-K and the mean cross-entropy, and on
 * request per-class figures, a confusion matrix and per-record predictions. The work is in
 * lib/checkpoint.c, lib/ckpt_model.c, lib/loader.c and lib/run.c; this file only counts.
 *
 * Every record must carry a label from 0 to classes-1: an unlabelled record or one with a
 * label the model cannot predict stops the run with an error naming the record, rather
 * than being scored against a number that means nothing. */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "backend.h"
#include "bt.h"
#include "checkpoint.h"
#include "graph.h"
#include "loader.h"
#include "outfile.h"
#include "run.h"
#include "tool.h"
#include "train.h"
#include "zoo.h"

static const char usage_text[] =
	"usage: bt-eval [-q] [-j N] [--device D] [--batch-size B] [--top K] [--per-class]\n"
	"               [--confusion FILE] [--predictions FILE [--logits]] [--json]\n"
	"               [--input-size S] [--crop-ratio R] [--resize N] CKPT DATA\n"
	"       bt-eval -h | --help | -V | --version\n";

static const char help_text[] =
	"Score the checkpoint CKPT on the labelled records of DATA (a record file, or '-'\n"
	"for standard input): top-1, top-K and mean cross-entropy. The model, its input\n"
	"size, normalisation and evaluation transform come from the checkpoint.\n"
	"\n"
	"      --top K           also count the label among the K best (default 5; at most\n"
	"                        the number of classes)\n"
	"      --per-class       images and top-1 of every class\n"
	"      --confusion FILE  write the confusion matrix as CSV (rows: true class,\n"
	"                        columns: prediction)\n"
	"      --predictions FILE  write the K best classes and probabilities of every\n"
	"                        record as TSV, in file order\n"
	"      --logits          with --predictions: add a column of every logit\n"
	"      --json            print one JSON object instead of text\n"
	"      --input-size S    evaluate at S x S instead of the checkpoint's size\n"
	"      --crop-ratio R    resize the shorter side to S/R, then centre-crop S x S\n"
	"      --resize N        resize the shorter side to N instead\n"
	"      --batch-size B    images per forward pass (default 64)\n"
	"      --device D        cpu (default), cuda or cuda:N (an NVIDIA GPU)\n"
	"  -j, --threads N       threads (default: the number of CPUs)\n"
	"  -q, --quiet           no progress bar\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error. See bt-eval(1).\n";

enum { OPT_TOP = 256, OPT_PER_CLASS, OPT_CONFUSION, OPT_PREDICTIONS, OPT_LOGITS, OPT_JSON,
       OPT_INPUT_SIZE, OPT_CROP_RATIO, OPT_RESIZE, OPT_BATCH, OPT_DEVICE };

static const struct option longopts[] = {
	{"top", required_argument, NULL, OPT_TOP},
	{"per-class", no_argument, NULL, OPT_PER_CLASS},
	{"confusion", required_argument, NULL, OPT_CONFUSION},
	{"predictions", required_argument, NULL, OPT_PREDICTIONS},
	{"logits", no_argument, NULL, OPT_LOGITS},
	{"json", no_argument, NULL, OPT_JSON},
	{"input-size", required_argument, NULL, OPT_INPUT_SIZE},
	{"crop-ratio", required_argument, NULL, OPT_CROP_RATIO},
	{"resize", required_argument, NULL, OPT_RESIZE},
	{"batch-size", required_argument, NULL, OPT_BATCH},
	{"device", required_argument, NULL, OPT_DEVICE},
	{"threads", required_argument, NULL, 'j'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct opts {
	const char *ckpt, *data, *confusion, *predictions, *device;
	int top, per_class, logits, json, quiet, threads, batch;
	int input_size, resize;  /* 0: the checkpoint's */
	double crop_ratio;       /* 0: the checkpoint's */
	int u8;                  /* uint8 batches, colour and normalisation on the device */
};

/* What is counted over the whole file. */
struct tally {
	int K;                  /* classes */
	int topk;               /* K of top-K, clamped to the classes */
	uint64_t images, top1, topk_hits;
	double loss_sum;
	uint64_t *class_images; /* (K) */
	uint64_t *class_top1;   /* (K) */
	uint64_t *confusion;    /* (K, K) rows: true, columns: predicted; NULL unless asked */
	int *best;              /* (topk) class indices of the K best of one record */
};

/* The topk best classes of one row of logits, best first; ties go to the lower index, the
 * order in which the rank below counts, so that pred1 == label exactly when top-1 counts. */
static void best_classes(const float *row, int K, int topk, int *best)
{
	int n = 0;
	for (int j = 0; j < K; j++) {
		int at = n;
		while (at > 0 && row[j] > row[best[at - 1]])
			at--;
		if (at >= topk)
			continue;
		if (n < topk)
			n++;
		memmove(best + at + 1, best + at, (size_t)(n - 1 - at) * sizeof *best);
		best[at] = j;
	}
}

static void json_string(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(fp, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", fp);
		else if (*p == '\t')
			fputs("\\t", fp);
		else if (*p < 0x20)
			fprintf(fp, "\\u%04x", *p);
		else
			fputc(*p, fp);
	}
	fputc('"', fp);
}

/* A JSON number, or null for what JSON cannot spell (a model that gives NaN logits). */
static void json_number(FILE *fp, double x)
{
	if (isfinite(x))
		fprintf(fp, "%.6f", x);
	else
		fputs("null", fp);
}

/* A CSV field, quoted when it holds a separator, a quote or a line break (RFC 4180). */
static void csv_field(FILE *fp, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, fp);
		return;
	}
	fputc('"', fp);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

/* Scores one batch: n rows of K logits against the batch's labels. */
static int score_batch(struct tally *t, const struct bt_batch *b, const float *logits,
		       const char *data, FILE *pred, int with_logits)
{
	int K = t->K;
	for (uint32_t i = 0; i < b->n; i++) {
		const float *row = logits + (size_t)i * K;
		int32_t label = b->labels[i];
		double lse;
		int rank;

		if (label < 0)
			return bt_error(BT_ERR_FORMAT, "%s: record %llu has no label; bt-eval scores labelled records only",
					data, (unsigned long long)b->index[i]);
		if (label >= K)
			return bt_error(BT_ERR_FORMAT, "%s: record %llu has label %d, but the model has %d classes (0 to %d)",
					data, (unsigned long long)b->index[i], (int)label, K, K - 1);
		/* the loss, and the label's place in the order best_classes uses */
		double loss = bt_score_logits(row, K, label, &rank);
		t->loss_sum += loss;
		lse = loss + (double)row[label];
		best_classes(row, K, t->topk, t->best);
		t->images++;
		t->class_images[label]++;
		if (rank == 0) {
			t->top1++;
			t->class_top1[label]++;
		}
		if (rank < t->topk)
			t->topk_hits++;
		if (t->confusion)
			t->confusion[(size_t)label * K + t->best[0]]++;
		if (pred) {
			fprintf(pred, "%llu\t%d", (unsigned long long)b->ids[i], (int)label);
			for (int k = 0; k < t->topk; k++)
				fprintf(pred, "\t%d\t%.6g", t->best[k], exp((double)row[t->best[k]] - lse));
			if (with_logits) {
				fputc('\t', pred);
				for (int j = 0; j < K; j++)
					fprintf(pred, "%s%.6g", j ? "," : "", row[j]);
			}
			fputc('\n', pred);
		}
	}
	return BT_OK;
}

/* The class names to print: the checkpoint's when it has one per class, else the data
 * file's when it has one per class, else the class numbers. */
static char **class_names(const struct bt_ckpt *ck, bt_loader *l, int K)
{
	char **names = calloc((size_t)K, sizeof *names);
	if (!names)
		return NULL;
	for (int j = 0; j < K; j++) {
		if (ck->nclasses == (uint32_t)K)
			names[j] = strdup(ck->classes[j]);
		else if (l && bt_loader_nclasses(l) == (uint32_t)K)
			names[j] = strdup(bt_loader_class(l, (uint32_t)j));
		else if (asprintf(&names[j], "%d", j) < 0)
			names[j] = NULL;
		if (!names[j]) {
			for (int i = 0; i < j; i++)
				free(names[i]);
			free(names);
			return NULL;
		}
	}
	return names;
}

static void free_names(char **names, int K)
{
	for (int j = 0; names && j < K; j++)
		free(names[j]);
	free(names);
}

/* Evaluating on a file whose classes are numbered differently gives figures that mean
 * nothing and no error, so a disagreement of names is worth a line. */
static void check_class_names(const struct bt_ckpt *ck, bt_loader *l, const char *data)
{
	uint32_t n = bt_loader_nclasses(l);
	if (!n || !ck->nclasses)
		return;
	if (n != ck->nclasses) {
		tool_err("warning: %s names %u classes, the checkpoint %u", data, n, ck->nclasses);
		return;
	}
	for (uint32_t j = 0; j < n; j++)
		if (strcmp(bt_loader_class(l, j), ck->classes[j]) != 0) {
			tool_err("warning: class %u is '%s' in %s but '%s' in the checkpoint", j,
				 bt_loader_class(l, j), data, ck->classes[j]);
			return;
		}
}

static void write_confusion(FILE *fp, const struct tally *t, char **names)
{
	fputs("true\\pred", fp);
	for (int j = 0; j < t->K; j++) {
		fputc(',', fp);
		csv_field(fp, names[j]);
	}
	fputc('\n', fp);
	for (int i = 0; i < t->K; i++) {
		csv_field(fp, names[i]);
		for (int j = 0; j < t->K; j++)
			fprintf(fp, ",%llu", (unsigned long long)t->confusion[(size_t)i * t->K + j]);
		fputc('\n', fp);
	}
}

static void print_json(const struct opts *o, const struct tally *t, char **names, double seconds)
{
	double n = (double)t->images;
	fputs("{\"checkpoint\":", stdout);
	json_string(stdout, o->ckpt);
	fputs(",\"data\":", stdout);
	json_string(stdout, o->data);
	printf(",\"images\":%llu,\"top1\":", (unsigned long long)t->images);
	json_number(stdout, (double)t->top1 / n);
	printf(",\"top%d\":", t->topk);
	json_number(stdout, (double)t->topk_hits / n);
	printf(",\"topk\":%d,\"loss\":", t->topk);
	json_number(stdout, t->loss_sum / n);
	printf(",\"seconds\":%.3f", seconds);
	if (o->per_class) {
		fputs(",\"per_class\":[", stdout);
		for (int j = 0; j < t->K; j++) {
			fputs(j ? ",{\"class\":" : "{\"class\":", stdout);
			json_string(stdout, names[j]);
			printf(",\"images\":%llu,\"top1\":", (unsigned long long)t->class_images[j]);
			if (t->class_images[j])
				json_number(stdout, (double)t->class_top1[j] / (double)t->class_images[j]);
			else
				fputs("null", stdout);
			fputc('}', stdout);
		}
		fputc(']', stdout);
	}
	fputs("}\n", stdout);
}

static void print_text(const struct opts *o, const struct tally *t, char **names, const char *model)
{
	double n = (double)t->images;
	printf("checkpoint %s (%s, %d classes)\n", o->ckpt, model, t->K);
	printf("data       %s\n", o->data);
	printf("top-1 %.4f  top-%d %.4f  loss %.4f  (%llu images)\n", (double)t->top1 / n, t->topk,
	       (double)t->topk_hits / n, t->loss_sum / n, (unsigned long long)t->images);
	if (o->per_class) {
		int w = 5;
		for (int j = 0; j < t->K; j++)
			if ((int)strlen(names[j]) > w)
				w = (int)strlen(names[j]);
		if (w > 40)
			w = 40;
		printf("\n%-*s %10s %7s\n", w, "class", "images", "top-1");
		for (int j = 0; j < t->K; j++) {
			printf("%-*s %10llu ", w, names[j], (unsigned long long)t->class_images[j]);
			if (t->class_images[j])
				printf("%7.4f\n", (double)t->class_top1[j] / (double)t->class_images[j]);
			else
				printf("%7s\n", "-");
		}
	}
}

static int evaluate(const struct opts *o)
{
	struct bt_ckpt ck;
	struct bt_graph g;
	struct bt_model_opts mo = {0};
	struct bt_loader_opts lo = {0};
	struct bt_backend be = {0};
	struct bt_run *r = NULL;
	struct tally t = {0};
	struct bt_outfile pred = {0}, conf = {0};
	bt_loader *l = NULL;
	const struct bt_batch *b;
	float *host = NULL, *logits = NULL;
	char model[128], **names = NULL;
	double t0;
	int st;

	bt_ckpt_init(&ck);
	bt_graph_init(&g);

	/* The model, from the checkpoint alone. */
	if ((st = bt_ckpt_read(&ck, o->ckpt)) < 0)
		goto fail;
	if ((st = bt_ckpt_get_spec(&ck, model, sizeof model, &mo, &lo.aug)) < 0) {
		st = bt_error_prefix(st, "%s", o->ckpt);
		goto fail;
	}
	if (o->input_size)
		lo.aug.size = (uint32_t)o->input_size;
	if (o->crop_ratio > 0)
		lo.aug.crop_ratio = o->crop_ratio;
	/* An explicit shorter side in the checkpoint belongs to its input size and crop
	 * ratio: a new one of either derives the side again unless --resize is given. */
	if (o->resize)
		lo.aug.resize = (uint32_t)o->resize;
	else if (o->input_size || o->crop_ratio > 0)
		lo.aug.resize = 0;
	lo.aug.train = 0;
	lo.aug.format = BT_AUG_F32;
	if ((st = bt_aug_check(&lo.aug)) < 0)
		goto fail;
	mo.input_size = (int)lo.aug.size;
	if ((st = bt_model_build(&g, model, &mo)) < 0) {
		st = bt_error_prefix(st, "%s", o->ckpt);
		goto fail;
	}
	t.K = mo.classes;
	t.topk = o->top < t.K ? o->top : t.K;
	if (!(host = malloc((g.nfloats ? g.nfloats : 1) * sizeof *host))) {
		st = bt_error(BT_ERR_NOMEM, "out of memory for the parameters of %s", model);
		goto fail;
	}
	if ((st = bt_ckpt_get_params(&ck, &g, host, NULL)) < 0) {
		st = bt_error_prefix(st, "%s", o->ckpt);
		goto fail;
	}
	if ((st = bt_backend_open(&be, o->device, o->threads)) < 0)
		goto fail;
	if ((st = bt_run_new_inference(&r, &g, &be, o->batch, BT_DTYPE_F32)) < 0)
		goto fail;
	if ((st = be.i->upload(be.ctx, bt_run_params(r), host, g.nfloats * sizeof *host)) < 0)
		goto fail;
	free(host);
	host = NULL;

	t.class_images = calloc((size_t)t.K, sizeof *t.class_images);
	t.class_top1 = calloc((size_t)t.K, sizeof *t.class_top1);
	t.best = calloc((size_t)t.topk, sizeof *t.best);
	logits = malloc((size_t)o->batch * t.K * sizeof *logits);
	if (o->confusion && (uint64_t)t.K * (uint64_t)t.K <= SIZE_MAX / sizeof *t.confusion)
		t.confusion = calloc((size_t)t.K * t.K, sizeof *t.confusion);
	if (!t.class_images || !t.class_top1 || !t.best || !logits || (o->confusion && !t.confusion)) {
		st = bt_error(BT_ERR_NOMEM, "out of memory for %d classes", t.K);
		goto fail;
	}

	/* Outputs are created before the work, so that a bad path fails at once. */
	if (o->predictions) {
		if ((st = bt_outfile_open(&pred, o->predictions)) < 0)
			goto fail;
		fputs("id\tlabel", pred.fp);
		for (int k = 1; k <= t.topk; k++)
			fprintf(pred.fp, "\tpred%d\tprob%d", k, k);
		fputs(o->logits ? "\tlogits\n" : "\n", pred.fp);
	}
	if (o->confusion && (st = bt_outfile_open(&conf, o->confusion)) < 0)
		goto fail;

	t0 = tool_now();
	lo.threads = o->threads;
	lo.batch = (uint32_t)o->batch;
	lo.epochs = 1;
	lo.shuffle = 0;
	lo.cancel = &tool_interrupted;
	if (o->u8) {
		/* The GPU's data path: uint8 crops in page-locked memory from the workers,
		 * normalised on the device (bt-train(1) does the same). */
		lo.aug.format = BT_AUG_U8;
		lo.aug.defer_colour = 1;
		lo.data_alloc = be.i->host_alloc;
		lo.data_free = be.i->host_free;
		lo.data_ctx = be.ctx;
	}
	if ((st = bt_loader_open(&l, o->data, &lo)) < 0)
		goto fail;
	while ((st = bt_loader_next(l, &b)) > 0) {
		if (b->n == 0)
			continue;
		if (b->channels != mo.in_channels) {
			st = bt_error(BT_ERR_FORMAT, "%s: record %llu has %d channel%s, but the model in %s takes %d",
				      o->data, (unsigned long long)b->index[0], b->channels,
				      b->channels == 1 ? "" : "s", o->ckpt, mo.in_channels);
			goto fail;
		}
		BT_ASSERT(b->format == lo.aug.format && b->size == lo.aug.size);
		if (o->u8) {
			struct bt_u8_batch in = {.x = b->data, .colour = b->colour, .n = (int)b->n,
						 .size = (int)b->size, .channels = b->channels};
			memcpy(in.mean, lo.aug.mean, sizeof in.mean);
			memcpy(in.std, lo.aug.std, sizeof in.std);
			st = bt_run_forward_u8(r, &in, 0, 0);
		} else {
			st = bt_run_forward(r, (const float *)b->data, (int)b->n, 0, 0);
		}
		/* The download waits for the device: the batch is free again after it. */
		if (st < 0 ||
		    (st = be.i->download(be.ctx, logits, bt_run_logits(r), (size_t)b->n * t.K * sizeof *logits)) < 0)
			goto fail;
		if ((st = score_batch(&t, b, logits, o->data, pred.fp, o->logits)) < 0)
			goto fail;
		if (!o->quiet) {
			char extra[64];
			double dt = tool_now() - t0;
			uint64_t total = bt_loader_records(l);
			snprintf(extra, sizeof extra, "%.0f images/s", dt > 0 ? (double)t.images / dt : 0.0);
			tool_progress(t.images, total > t.images ? total : t.images, extra);
		}
	}
	if (st < 0)
		goto fail;
	tool_progress_end();
	if (t.images == 0) {
		st = bt_error(BT_ERR_FORMAT, "%s: no records to evaluate", o->data);
		goto fail;
	}
	check_class_names(&ck, l, o->data);
	if (!(names = class_names(&ck, l, t.K))) {
		st = bt_error(BT_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (conf.fp)
		write_confusion(conf.fp, &t, names);
	if ((st = bt_outfile_commit(&pred, 1)) < 0 || (st = bt_outfile_commit(&conf, 1)) < 0)
		goto fail;
	if (o->json)
		print_json(o, &t, names, tool_now() - t0);
	else
		print_text(o, &t, names, model);
	st = BT_OK;
fail:
	tool_progress_end();
	bt_outfile_abort(&pred);
	bt_outfile_abort(&conf);
	bt_loader_close(l);
	free_names(names, t.K);
	free(t.class_images);
	free(t.class_top1);
	free(t.confusion);
	free(t.best);
	free(logits);
	free(host);
	bt_run_free(r);
	if (be.i)
		bt_backend_free(&be);
	bt_graph_free(&g);
	bt_ckpt_free(&ck);
	if (st < 0 && tool_interrupted) {
		tool_err("interrupted; no output written");
		return 1;
	}
	if (st < 0)
		return tool_fail(st);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		tool_err("cannot write the results to standard output");
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {.top = 5, .batch = 64};
	int c;

	tool_name = "bt-eval";
	o.threads = tool_ncpus();
	while ((c = getopt_long(argc, argv, "j:qhV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_TOP:
			if (tool_parse_int("--top", optarg, 1, 1000000, &o.top) < 0)
				return 2;
			break;
		case OPT_PER_CLASS: o.per_class = 1; break;
		case OPT_CONFUSION: o.confusion = optarg; break;
		case OPT_PREDICTIONS: o.predictions = optarg; break;
		case OPT_LOGITS: o.logits = 1; break;
		case OPT_JSON: o.json = 1; break;
		case OPT_INPUT_SIZE:
			if (tool_parse_int("--input-size", optarg, 1, 8192, &o.input_size) < 0)
				return 2;
			break;
		case OPT_CROP_RATIO:
			if (tool_parse_double("--crop-ratio", optarg, 1e-3, 1, &o.crop_ratio) < 0)
				return 2;
			break;
		case OPT_RESIZE:
			if (tool_parse_int("--resize", optarg, 1, 65535, &o.resize) < 0)
				return 2;
			break;
		case OPT_BATCH:
			if (tool_parse_int("--batch-size", optarg, 1, 65536, &o.batch) < 0)
				return 2;
			break;
		case OPT_DEVICE:
			if (!tool_device_name(optarg))
				return tool_usage_error("--device takes cpu, cuda or cuda:N, not '%s'", optarg);
			o.device = optarg;
			break;
		case 'j':
			if (tool_parse_int("-j", optarg, 1, 1024, &o.threads) < 0)
				return 2;
			break;
		case 'q': o.quiet = 1; break;
		case 'h': fputs(usage_text, stdout); fputs("\n", stdout); fputs(help_text, stdout); return 0;
		case 'V': printf("bt-eval %s\n", BT_VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 2) {
		if (argc < 2)
			tool_err("%s", argc ? "no DATA given" : "no CKPT and DATA given");
		else
			tool_err("unexpected argument '%s'", argv[2]);
		fputs(usage_text, stderr);
		return 2;
	}
	o.ckpt = argv[0];
	o.data = argv[1];
	if (o.logits && !o.predictions)
		return tool_usage_error("--logits adds a column to --predictions FILE; give that too");
	if (o.confusion && o.predictions && strcmp(o.confusion, o.predictions) == 0)
		return tool_usage_error("--confusion and --predictions name the same file '%s'", o.confusion);
	/* --device cuda takes the GPU's data path; BT_INPUT_U8 (0 or 1) chooses either path on
	 * any device, to compare them. */
	o.u8 = o.device && strncmp(o.device, "cuda", 4) == 0;
	{
		const char *e = getenv("BT_INPUT_U8");
		if (e && *e && tool_parse_int("BT_INPUT_U8", e, 0, 1, &o.u8) < 0)
			return 2;
	}
	tool_catch_signals();
	return evaluate(&o);
}
