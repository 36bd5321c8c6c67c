/* bt-train: trains a zoo model on record files with the recipe of "Bag of Tricks for Image
 * Classification" (He et al. 2019), under the option names of GluonCV's train_imagenet.py:
 * linear warmup, step/cosine/poly schedules, Nesterov SGD without decay on biases and
 * batch-norm parameters, zero-gamma, label smoothing and mixup. It writes a run directory
 * (last.btc, best.btc, epoch-NNNN.btc, metrics.jsonl), stops cleanly on SIGINT/SIGTERM and
 * resumes bit for bit. --benchmark times training steps on synthetic data instead.
 *
 * Every random choice is a hash of (seed, epoch, record index) or (seed, iteration), so a
 * run's position and seed are its whole random state: that is what makes a resumed run
 * identical to an uninterrupted one. The numerical work is in lib/run.c, lib/train.c and
 * lib/loader.c; the checkpoint format in lib/checkpoint.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "augment.h"
#include "backend.h"
#include "bt.h"
#include "checkpoint.h"
#include "graph.h"
#include "loader.h"
#include "outfile.h"
#include "rng.h"
#include "run.h"
#include "tool.h"
#include "train.h"
#include "zoo.h"

static const char usage_text[] =
	"usage: bt-train --model NAME --train TRAIN.btr [--val VAL.btr] -o RUNDIR [options]\n"
	"       bt-train --resume RUNDIR [--train FILE] [--val FILE] [--device D] [-j N] [--data-workers N]\n"
	"                [--log-interval N] [--save-frequency N] [--keep K] [-q]\n"
	"       bt-train --benchmark --model NAME [--batch-size B] [--input-size S]\n"
	"                [--in-channels C] [--classes K] [--steps N] [--warmup N] [-j N]\n"
	"                [--device D] [--dtype T] [--no-inference] [--profile]\n"
	"       bt-train -h | --help | -V | --version\n";

static const char help_text[] =
	"Train a zoo model (bt-info --model list) on bt record files with the Bag of Tricks\n"
	"recipe. Options follow GluonCV's train_imagenet.py.\n"
	"\n"
	"      --model NAME        the zoo model (bt-info --model list)\n"
	"  -o, --output RUNDIR     the run directory: last.btc, best.btc, epoch-NNNN.btc,\n"
	"                          metrics.jsonl\n"
	"      --train FILE        training records ('-': an augmented stream, see --epoch-size)\n"
	"      --val FILE          validation records, scored after every epoch\n"
	"      --resume RUNDIR     continue the run in RUNDIR from its last.btc\n"
	"      --num-epochs N      epochs (default 3)\n"
	"      --batch-size B      images per step (default 32)\n"
	"      --lr LR             learning rate after warmup (default 0.1)\n"
	"      --base-lr L         linear scaling: lr = L * batch-size / base-batch\n"
	"      --base-batch N      (default 256)\n"
	"      --lr-mode M         step (default), cosine or poly\n"
	"      --lr-decay F        step: factor at each decay epoch (default 0.1)\n"
	"      --lr-decay-epoch L  step: comma-separated epochs (default 40,60)\n"
	"      --poly-power P      poly: exponent (default 2)\n"
	"      --warmup-epochs N   linear warmup epochs (default 0)\n"
	"      --warmup-lr LR      learning rate at the start of warmup (default 0)\n"
	"      --momentum M        Nesterov momentum (default 0.9)\n"
	"      --wd WD             weight decay (default 0.0001)\n"
	"      --no-wd             no weight decay on biases and batch-norm gamma and beta\n"
	"      --last-gamma        zero-gamma: the last batch norm of each residual block starts at 0\n"
	"      --label-smoothing [EPS]  label smoothing (0.1 when given bare)\n"
	"      --mixup             mixup training\n"
	"      --mixup-alpha A     mixup Beta(A, A) (default 0.2)\n"
	"      --mixup-off-epoch N no mixup in the last N epochs (default 0)\n"
	"      --input-size S      input height and width (default: the model's)\n"
	"      --crop-ratio R      evaluation crop fraction (default 0.875)\n"
	"      --min-area A, --max-area A, --min-aspect R, --max-aspect R, --jitter J,\n"
	"      --lighting L, --no-flip, --mean M[,M,M], --std S[,S,S], --erase P,\n"
	"      --erase-min-area A, --erase-max-area A, --erase-min-aspect R, --erase-max-aspect R,\n"
	"      --pad P             the training augmentation, as in bt-aug(1)\n"
	"      --classes K         classes (default: the class names of the training records)\n"
	"      --epoch-size N      records per epoch of a --train - stream\n"
	"      --dtype T           float32 (default), or bfloat16 or float16 (--device cuda only):\n"
	"                          mixed precision\n"
	"      --device D          cpu (default), cuda or cuda:N (an NVIDIA GPU)\n"
	"      --seed S            random seed (default 0)\n"
	"      --save-frequency N  keep epoch-NNNN.btc every N epochs (default 10; 0: none)\n"
	"      --keep K            epoch checkpoints kept (default 3; 0: all)\n"
	"      --log-interval N    a log line every N steps (default 50)\n"
	"  -j, --threads N         compute threads (default: the number of CPUs)\n"
	"      --data-workers N    image decoding threads (default: the number of CPUs)\n"
	"  -q, --quiet             no progress or log lines on stderr\n"
	"      --benchmark         time training steps on random data (see bt-train(1))\n"
	"  -h, --help              show this help\n"
	"  -V, --version           show the version\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error, 130 or 143 stopped by SIGINT or\n"
	"SIGTERM after saving RUNDIR/last.btc. See bt-train(1).\n";

/* ---- the recipe -------------------------------------------------------------------- */

#define PATH_CAP 4096

struct recipe {
	char model[64];
	char train[PATH_CAP], val[PATH_CAP];
	int num_epochs, batch_size;
	double lr, base_lr;
	int base_batch;
	int lr_mode;
	double lr_decay;
	char lr_decay_epoch[256];
	double poly_power;
	int warmup_epochs;
	double warmup_lr, momentum, wd;
	int no_wd, last_gamma;
	double label_smoothing;
	int mixup;
	double mixup_alpha;
	int mixup_off_epoch;
	int input_size;
	double crop_ratio;
	double min_area, max_area, min_aspect, max_aspect;
	int flip;
	double jitter, lighting;
	double erase, erase_min_area, erase_max_area, erase_min_aspect, erase_max_aspect;
	int pad;
	float mean[3], std[3];
	char dtype[16];
	uint64_t seed;
	char device[16];
	int save_frequency, keep, log_interval;
	uint64_t epoch_size;
	int classes;
};

enum vtype { V_INT, V_U64, V_DBL, V_STR, V_BOOL, V_TRIPLE, V_LRMODE };

/* Every recipe field: its option (and checkpoint key, with '_' for '-'), type, place,
 * range, and whether --resume may change it (paths and logging only). */
struct field {
	const char *opt;
	int type;
	size_t off, cap;
	double min, max;
	int resumable;
};

#define F(o, t, m, lo, hi, res) { o, t, offsetof(struct recipe, m), sizeof(((struct recipe *)0)->m), lo, hi, res }
static const struct field fields[] = {
	F("model", V_STR, model, 0, 0, 0),
	F("train", V_STR, train, 0, 0, 1),
	F("val", V_STR, val, 0, 0, 1),
	F("num-epochs", V_INT, num_epochs, 1, 1e6, 0),
	F("batch-size", V_INT, batch_size, 1, 65536, 0),
	F("lr", V_DBL, lr, 0, 1e3, 0),
	F("base-lr", V_DBL, base_lr, 0, 1e3, 0),
	F("base-batch", V_INT, base_batch, 1, 1 << 24, 0),
	F("lr-mode", V_LRMODE, lr_mode, 0, 0, 0),
	F("lr-decay", V_DBL, lr_decay, 0, 1e3, 0),
	F("lr-decay-epoch", V_STR, lr_decay_epoch, 0, 0, 0),
	F("poly-power", V_DBL, poly_power, 0, 100, 0),
	F("warmup-epochs", V_INT, warmup_epochs, 0, 1e6, 0),
	F("warmup-lr", V_DBL, warmup_lr, 0, 1e3, 0),
	F("momentum", V_DBL, momentum, 0, 0.9999, 0),
	F("wd", V_DBL, wd, 0, 1, 0),
	F("no-wd", V_BOOL, no_wd, 0, 0, 0),
	F("last-gamma", V_BOOL, last_gamma, 0, 0, 0),
	F("label-smoothing", V_DBL, label_smoothing, 0, 0.999, 0),
	F("mixup", V_BOOL, mixup, 0, 0, 0),
	F("mixup-alpha", V_DBL, mixup_alpha, 1e-3, 1e3, 0),
	F("mixup-off-epoch", V_INT, mixup_off_epoch, 0, 1e6, 0),
	F("input-size", V_INT, input_size, 0, 8192, 0),
	F("crop-ratio", V_DBL, crop_ratio, 1e-3, 1, 0),
	F("min-area", V_DBL, min_area, 1e-6, 1, 0),
	F("max-area", V_DBL, max_area, 1e-6, 1, 0),
	F("min-aspect", V_DBL, min_aspect, 1e-3, 1e3, 0),
	F("max-aspect", V_DBL, max_aspect, 1e-3, 1e3, 0),
	F("flip", V_BOOL, flip, 0, 0, 0),
	F("jitter", V_DBL, jitter, 0, 1, 0),
	F("lighting", V_DBL, lighting, 0, 10, 0),
	F("erase", V_DBL, erase, 0, 1, 0),
	F("erase-min-area", V_DBL, erase_min_area, 1e-6, 1, 0),
	F("erase-max-area", V_DBL, erase_max_area, 1e-6, 1, 0),
	F("erase-min-aspect", V_DBL, erase_min_aspect, 1e-3, 1e3, 0),
	F("erase-max-aspect", V_DBL, erase_max_aspect, 1e-3, 1e3, 0),
	F("pad", V_INT, pad, -1, 65535, 0),
	F("mean", V_TRIPLE, mean, 0, 0, 0),
	F("std", V_TRIPLE, std, 1, 0, 0),
	F("dtype", V_STR, dtype, 0, 0, 0),
	F("seed", V_U64, seed, 0, 0, 0),
	F("device", V_STR, device, 0, 0, 1),
	F("save-frequency", V_INT, save_frequency, 0, 1e6, 1),
	F("keep", V_INT, keep, 0, 1e6, 1),
	F("log-interval", V_INT, log_interval, 1, 1e9, 1),
	F("epoch-size", V_U64, epoch_size, 0, 0, 0),
	F("classes", V_INT, classes, 0, 1e6, 0),
};
#undef F
#define NFIELDS (sizeof fields / sizeof fields[0])

static void recipe_defaults(struct recipe *r)
{
	struct bt_aug_params a;
	memset(r, 0, sizeof *r);
	bt_aug_defaults(&a, 1);
	r->num_epochs = 3;
	r->batch_size = 32;
	r->lr = 0.1;
	r->base_batch = 256;
	r->lr_mode = BT_LR_STEP;
	r->lr_decay = 0.1;
	strcpy(r->lr_decay_epoch, "40,60");
	r->poly_power = 2;
	r->momentum = 0.9;
	r->wd = 1e-4;
	r->mixup_alpha = 0.2;
	r->crop_ratio = 0.875;
	r->min_area = a.min_area;
	r->max_area = a.max_area;
	r->min_aspect = a.min_aspect;
	r->max_aspect = a.max_aspect;
	r->flip = 1;
	r->jitter = a.jitter;
	r->lighting = a.lighting;
	r->erase = a.erase;
	r->erase_min_area = a.erase_min_area;
	r->erase_max_area = a.erase_max_area;
	r->erase_min_aspect = a.erase_min_aspect;
	r->erase_max_aspect = a.erase_max_aspect;
	r->pad = a.pad;
	memcpy(r->mean, a.mean, sizeof r->mean);
	memcpy(r->std, a.std, sizeof r->std);
	strcpy(r->dtype, "float32");
	strcpy(r->device, "cpu");
	r->save_frequency = 10;
	r->keep = 3;
	r->log_interval = 50;
}

static const struct field *field_find(const char *opt)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (strcmp(fields[i].opt, opt) == 0)
			return &fields[i];
	return NULL;
}

/* Sets a field from text; a usage error (-1) names the option. */
static int field_set(struct recipe *r, const struct field *f, const char *val)
{
	char *p = (char *)r + f->off, opt[64];
	double d;
	uint64_t u;
	int i;

	snprintf(opt, sizeof opt, "--%s", f->opt);
	switch (f->type) {
	case V_INT:
		if (tool_parse_int(opt, val, (int)f->min, (int)f->max, &i) < 0)
			return -1;
		*(int *)p = i;
		return 0;
	case V_U64:
		if (tool_parse_u64(opt, val, (uint64_t)f->min, f->max > 0 ? (uint64_t)f->max : UINT64_MAX, &u) < 0)
			return -1;
		*(uint64_t *)p = u;
		return 0;
	case V_DBL:
		if (tool_parse_double(opt, val, f->min, f->max, &d) < 0)
			return -1;
		*(double *)p = d;
		return 0;
	case V_STR:
		if (strlen(val) >= f->cap || strchr(val, '\n'))
			return tool_usage_error("%s: value too long or not one line", opt), -1;
		strcpy(p, val);
		return 0;
	case V_BOOL:
		if (strcmp(val, "0") && strcmp(val, "1"))
			return tool_usage_error("%s: want 0 or 1, not '%s'", opt, val), -1;
		*(int *)p = val[0] == '1';
		return 0;
	case V_TRIPLE:
		return tool_parse_triple(opt, val, (float *)p, f->min > 0);
	case V_LRMODE:
		if ((i = bt_lr_mode_parse(val)) < 0)
			return tool_usage_error("--lr-mode takes step, cosine or poly, not '%s'", val), -1;
		*(int *)p = i;
		return 0;
	}
	return -1;
}

static void field_format(const struct recipe *r, const struct field *f, char *buf, size_t cap)
{
	const char *p = (const char *)r + f->off;
	const float *v = (const float *)p;
	switch (f->type) {
	case V_INT:
	case V_BOOL: snprintf(buf, cap, "%d", *(const int *)p); break;
	case V_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)p); break;
	case V_DBL: snprintf(buf, cap, "%.17g", *(const double *)p); break;
	case V_STR: snprintf(buf, cap, "%s", p); break;
	case V_TRIPLE: snprintf(buf, cap, "%.9g,%.9g,%.9g", v[0], v[1], v[2]); break;
	case V_LRMODE: snprintf(buf, cap, "%s", bt_lr_mode_name(*(const int *)p)); break;
	}
}

/* Checkpoint key of a field: the option with '-' as '_'. */
static void field_key(const struct field *f, char *key, size_t cap)
{
	snprintf(key, cap, "%s", f->opt);
	for (char *c = key; *c; c++)
		if (*c == '-')
			*c = '_';
}
static long peak_rss_kb(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

static void print_profile(struct bt_run *r, int steps, const char *what)
{
	double sec[BT_OP_COUNT][2];
	uint64_t calls[BT_OP_COUNT][2];
	bt_run_profile_get(r, sec, calls);
	printf("%-16s %12s %12s   (%s, ms per step)\n", "layer", "forward", "backward", what);
	for (int op = 0; op < BT_OP_COUNT; op++)
		if (calls[op][0] || calls[op][1])
			printf("%-16s %12.2f %12.2f\n", bt_op_name(op), 1e3 * sec[op][0] / steps,
			       1e3 * sec[op][1] / steps);
}

static int benchmark(const char *model, struct bt_model_opts *mo, int batch, int steps, int warmup,
		     const char *device, int dtype, int threads, int inference, int profile)
{
	struct bt_graph g;
	struct bt_backend be = {0};
	struct bt_run *r = NULL;
	float *x = NULL, *sink = NULL;
	int32_t *labels = NULL;
	size_t nx;
	double t0 = 0, train_s = 0, infer_s = 0, loss = 0;
	int st;

	bt_model_defaults(model, mo);
	bt_graph_init(&g);
	if ((st = bt_model_build(&g, model, mo)) < 0)
		goto fail;
	if ((st = bt_backend_open(&be, device, threads)) < 0)
		goto fail;
	if ((st = bt_run_new_dtype(&r, &g, &be, batch, dtype)) < 0)
		goto fail;
	if ((st = bt_run_init_params(r, 1, 1)) < 0)
		goto fail;
	nx = (size_t)batch * mo->input_size * mo->input_size * mo->in_channels;
	x = malloc(nx * sizeof *x);
	labels = malloc((size_t)batch * sizeof *labels);
	sink = malloc((size_t)mo->classes * sizeof *sink);
	if (!x || !labels || !sink) {
		st = bt_error(BT_ERR_NOMEM, "out of memory for the synthetic batch");
		goto fail;
	}
	{
		struct bt_rng rng;
		bt_rng_seed(&rng, 7);
		for (size_t i = 0; i < nx; i++)
			x[i] = (float)(bt_rng_uniform(&rng) * 2 - 1);
		for (int i = 0; i < batch; i++)
			labels[i] = (int32_t)bt_rng_below(&rng, (uint64_t)mo->classes);
	}
	fprintf(stderr, "bt-train: benchmark %s, batch %d, %dx%dx%d, %d classes, %d threads, %s, %s\n", model,
		batch, mo->input_size, mo->input_size, mo->in_channels, mo->classes, threads,
		be.i->describe(be.ctx), bt_dtype_name(dtype));
	for (int s = 0; s < warmup + steps; s++) {
		if (s == warmup) {
			t0 = tool_now();
			bt_run_profile(r, profile);
		}
		if ((st = bt_run_forward(r, s == 0 ? x : NULL, batch, 1, (uint64_t)s)) < 0 ||
		    (st = bt_run_loss(r, labels, NULL, 0.1f, 1, &loss)) < 0 || (st = bt_run_backward(r)) < 0 ||
		    (st = bt_run_sgd(r, 0.01f, 0.9f, 1e-4f, 1)) < 0)
			goto fail;
	}
	/* A device backend queues its work: reading a row of logits waits for all of it. */
	if ((st = bt_run_read_logits(r, sink, 1)) < 0)
		goto fail;
	train_s = tool_now() - t0;
	if (profile)
		print_profile(r, steps, "training");
	bt_run_profile(r, 0);
	if (inference) {
		for (int s = 0; s < warmup + steps; s++) {
			if (s == warmup) {
				t0 = tool_now();
				bt_run_profile(r, profile);
			}
			if ((st = bt_run_forward(r, NULL, batch, 0, 0)) < 0)
				goto fail;
		}
		if ((st = bt_run_read_logits(r, sink, 1)) < 0)
			goto fail;
		infer_s = tool_now() - t0;
		if (profile)
			print_profile(r, steps, "inference");
	}
	printf("model       %s\n", model);
	printf("batch       %d\n", batch);
	printf("dtype       %s\n", bt_dtype_name(dtype));
	printf("loss        %.4f (last step)\n", loss);
	if (bt_run_scaler(r)->dynamic)
		printf("loss scale  %.17g (%llu of %d steps skipped)\n", bt_run_loss_scale(r),
		       (unsigned long long)bt_run_skipped_steps(r), warmup + steps);
	printf("step        %.2f ms (forward + backward + SGD)\n", 1e3 * train_s / steps);
	printf("fused       %d of %d layers left out in training", bt_run_fused_train_nodes(r), g.nnodes);
	if (inference)
		printf(", %d in inference", bt_run_fused_nodes(r));
	printf("\n");
	if (inference)
		printf("inference   %.1f images/s\n", (double)batch * steps / infer_s);
	printf("activations %zu kB (outputs, gradients and saved state for a batch of %d)\n",
	       bt_run_activation_bytes(r) / 1024, batch);
	printf("peak RSS    %ld kB\n", peak_rss_kb());
	if (be.i->memory) {
		/* A device backend: the most its buffers and workspaces held at once. */
		size_t now = 0, peak = 0;
		if ((st = be.i->memory(be.ctx, &now, &peak)) < 0)
			goto fail;
		printf("peak device memory %zu MB\n", (peak + ((size_t)1 << 20) - 1) >> 20);
	}
	printf("train       images/s\n%.1f\n", (double)batch * steps / train_s);
	bt_run_free(r);
	bt_backend_free(&be);
	bt_graph_free(&g);
	free(x);
	free(sink);
	free(labels);
	return 0;
fail:
	bt_run_free(r);
	bt_backend_free(&be);
	bt_graph_free(&g);
	free(x);
	free(sink);
	free(labels);
	return tool_fail(st);
}


/* ---- training ---------------------------------------------------------------------- */

struct position {
	uint64_t epoch, batch, iteration;  /* the epoch in progress, batches done in it, steps */
	double best_top1;
	int64_t best_epoch;
	double train_seconds;
	double loss_sum;                   /* the epoch in progress so far */
	uint64_t correct, seen;
	int complete;
};

struct trainer {
	struct recipe rc;
	const char *rundir;
	int threads, workers, quiet;
	int u8;                            /* the data path of a GPU: uint8 crops, colour there */
	struct bt_model_opts mo;
	struct bt_aug_params train_aug, eval_aug;
	struct bt_graph g;
	struct bt_backend be;
	struct bt_run *r;
	struct bt_schedule sched;
	uint64_t bpe;
	int K;
	char **classes;
	uint32_t nclasses;
	struct position pos;
	char *metrics;                     /* every metrics line so far */
	size_t metrics_len, metrics_cap;
	FILE *mf;
	float *xbuf, *soft;
	float *logits;              /* (batch, K) on the host */
	float *hparams, *hmom;      /* host copies of the arenas, for checkpoints */
	double t_session;                  /* when this process started training */
	double seconds_before;             /* training seconds of earlier sessions */
	uint64_t signal_at;                /* raise SIGTERM after this iteration (0: never) */
	int tty;                           /* standard error is a terminal: a progress line */
};

static char *run_path(const struct trainer *t, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", t->rundir, name) < 0)
		return NULL;
	return p;
}

static double run_seconds(const struct trainer *t)
{
	return t->seconds_before + (tool_now() - t->t_session);
}

/* A metrics line: kept for the checkpoint and appended to metrics.jsonl. */
static int metrics_add(struct trainer *t, const char *line)
{
	size_t n = strlen(line);
	if (t->metrics_len + n + 2 > t->metrics_cap) {
		size_t cap = (t->metrics_cap + n + 2) * 2;
		char *m = realloc(t->metrics, cap);
		if (!m)
			return bt_error(BT_ERR_NOMEM, "out of memory for the metrics");
		t->metrics = m;
		t->metrics_cap = cap;
	}
	memcpy(t->metrics + t->metrics_len, line, n);
	t->metrics_len += n;
	t->metrics[t->metrics_len++] = '\n';
	t->metrics[t->metrics_len] = '\0';
	if (fprintf(t->mf, "%s\n", line) < 0 || fflush(t->mf) != 0)
		return bt_error_errno("%s/metrics.jsonl", t->rundir);
	return BT_OK;
}

/* JSON number, or null for NaN and infinities. */
static const char *jnum(double v, char *buf, size_t cap)
{
	if (!isfinite(v))
		return "null";
	snprintf(buf, cap, "%.6g", v);
	return buf;
}

static int save_checkpoint(struct trainer *t, const char *path)
{
	struct bt_ckpt c;
	const struct position *p = &t->pos;
	char key[64], val[PATH_CAP + 64];
	int st;

	bt_ckpt_init(&c);
	if ((st = bt_ckpt_put_spec(&c, t->rc.model, &t->mo, &t->eval_aug)) < 0 ||
	    (st = bt_ckpt_set_classes(&c, t->nclasses, (const char *const *)t->classes)) < 0)
		goto out;
	st = bt_ckpt_set(&c, BT_CKPT_STATE, "epoch", "%llu", (unsigned long long)p->epoch);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "batch", "%llu", (unsigned long long)p->batch);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "iteration", "%llu", (unsigned long long)p->iteration);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "epochs", "%d", t->rc.num_epochs);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "batches_per_epoch", "%llu", (unsigned long long)t->bpe);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "complete", "%d", p->complete);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "seed", "%llu", (unsigned long long)t->rc.seed);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "best_top1", "%.17g", p->best_top1);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "best_epoch", "%lld", (long long)p->best_epoch);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "train_seconds", "%.3f", run_seconds(t));
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "epoch_loss_sum", "%.17g", p->loss_sum);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "epoch_correct", "%llu", (unsigned long long)p->correct);
	if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "epoch_seen", "%llu", (unsigned long long)p->seen);
	{
		/* The loss scaler's state, for a resumed float16 run to scale as this one would. */
		const struct bt_loss_scaler *ls = bt_run_scaler(t->r);
		if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "loss_scale", "%.17g", ls->scale);
		if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "loss_scale_steps", "%llu",
					      (unsigned long long)ls->good_steps);
		if (st == 0) st = bt_ckpt_set(&c, BT_CKPT_STATE, "skipped_steps", "%llu",
					      (unsigned long long)ls->skipped);
	}
	for (size_t i = 0; i < NFIELDS && st == 0; i++) {
		field_key(&fields[i], key, sizeof key);
		field_format(&t->rc, &fields[i], val, sizeof val);
		st = bt_ckpt_set(&c, BT_CKPT_RECIPE, key, "%s", val);
	}
	if (st < 0)
		goto out;
	if (t->metrics && (st = bt_ckpt_set_metrics(&c, t->metrics)) < 0)
		goto out;
	if ((st = bt_run_read_state(t->r, t->hparams, t->hmom)) < 0 ||
	    (st = bt_ckpt_put_params(&c, &t->g, t->hparams, t->hmom)) < 0)
		goto out;
	st = bt_ckpt_write(&c, path);
out:
	bt_ckpt_free(&c);
	return st;
}

/* Another name for a finished checkpoint, through a temporary hard link and a rename, so
 * the new name too is either the old file or the complete new one. (A later rename over
 * either name leaves the other intact.) */
static int link_as(const char *src, const char *dst)
{
	char *tmp = NULL;
	int st = BT_OK;
	if (asprintf(&tmp, "%s.tmp.%d", dst, (int)getpid()) < 0)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	unlink(tmp);
	if (link(src, tmp) != 0)
		st = bt_error_errno("cannot link '%s' to '%s'", src, tmp);
	else if (rename(tmp, dst) != 0) {
		st = bt_error_errno("cannot rename '%s' to '%s'", tmp, dst);
		unlink(tmp);
	} else {
		st = bt_outfile_sync_dir(dst);
	}
	free(tmp);
	return st;
}

static int save_as(struct trainer *t, const char *name)
{
	char *p = run_path(t, name);
	int st;
	if (!p)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	st = save_checkpoint(t, p);
	free(p);
	return st;
}

static int link_in_run(struct trainer *t, const char *name, const char *as)
{
	char *a = run_path(t, name), *b = run_path(t, as);
	int st = a && b ? link_as(a, b) : bt_error(BT_ERR_NOMEM, "out of memory");
	free(a);
	free(b);
	return st;
}

/* The GPU's data path (t->u8): the loader's workers crop, resize and flip into uint8
 * batches in the backend's page-locked memory and leave colour, lighting and
 * normalisation to the backend's input_u8, with the same draws. A stream (an augmented
 * bt-aug output, maybe already normalised) keeps the float32 path. */
static void loader_data_path(struct trainer *t, struct bt_loader_opts *lo)
{
	if (!t->u8 || lo->aug.identity)
		return;
	lo->aug.format = BT_AUG_U8;
	lo->aug.defer_colour = 1;
	lo->data_alloc = t->be.i->host_alloc;
	lo->data_free = t->be.i->host_free;
	lo->data_ctx = t->be.ctx;
}

/* A deferred-colour batch (b->colour set) as the run's input; aug gives the normalisation. */
static void u8_batch(const struct bt_batch *b, const struct bt_aug_params *aug, int mixup, float lam,
		     struct bt_u8_batch *in)
{
	memset(in, 0, sizeof *in);
	in->x = b->data;
	in->colour = b->colour;
	in->n = (int)b->n;
	in->size = (int)b->size;
	in->channels = b->channels;
	memcpy(in->mean, aug->mean, sizeof in->mean);
	memcpy(in->std, aug->std, sizeof in->std);
	in->mixup = mixup;
	in->lam = lam;
}

/* Top-1, top-5 and the mean loss of the model on the validation records. */
static int validate(struct trainer *t, double *top1, double *top5, double *loss)
{
	struct bt_loader_opts lo = {0};
	bt_loader *l = NULL;
	const struct bt_batch *b;
	uint64_t n = 0, hit1 = 0, hit5 = 0;
	double lsum = 0;
	int st, K = t->K, k5 = K < 5 ? K : 5;

	lo.threads = t->workers;
	lo.batch = (uint32_t)t->rc.batch_size;
	lo.epochs = 1;
	lo.aug = t->eval_aug;
	lo.cancel = &tool_interrupted;
	loader_data_path(t, &lo);
	if ((st = bt_loader_open(&l, t->rc.val, &lo)) < 0)
		return st;
	while ((st = bt_loader_next(l, &b)) > 0) {
		const float *z;
		if (b->n == 0)
			continue;
		if (b->channels != t->mo.in_channels) {
			st = bt_error(BT_ERR_FORMAT, "%s: images have %d channels, the model takes %d", t->rc.val,
				      b->channels, t->mo.in_channels);
			break;
		}
		if (b->colour) {
			struct bt_u8_batch in;
			u8_batch(b, &t->eval_aug, 0, 1, &in);
			st = bt_run_forward_u8(t->r, &in, 0, 0);
		} else {
			st = bt_run_forward(t->r, b->data, (int)b->n, 0, 0);
		}
		/* Reading the logits waits for the device: the batch is free again after it. */
		if (st < 0 || (st = bt_run_read_logits(t->r, t->logits, (int)b->n)) < 0)
			break;
		z = t->logits;
		for (uint32_t i = 0; i < b->n; i++) {
			int y = b->labels[i], rank;
			if (y < 0 || y >= K) {
				st = bt_error(BT_ERR_FORMAT, "%s: record %llu has label %d, outside 0..%d", t->rc.val,
					      (unsigned long long)b->index[i], y, K - 1);
				goto out;
			}
			lsum += bt_score_logits(z + (size_t)i * K, K, y, &rank);
			hit1 += rank == 0;
			hit5 += rank < k5;
			n++;
		}
	}
out:
	bt_loader_close(l);
	if (st < 0)
		return st;
	if (n == 0)
		return bt_error(BT_ERR_FORMAT, "%s: no images to validate on", t->rc.val);
	*top1 = (double)hit1 / n;
	*top5 = (double)hit5 / n;
	*loss = lsum / n;
	return BT_OK;
}

/* The end of an epoch: validation, the metrics line, the checkpoints. */
static int end_epoch(struct trainer *t, double epoch_t0, uint64_t epoch_images, double lr)
{
	struct position *p = &t->pos;
	double top1 = NAN, top5 = NAN, vloss = NAN, dt;
	double loss = p->seen ? p->loss_sum / (double)(p->seen ? p->seen : 1) : NAN;
	double acc = p->seen ? (double)p->correct / (double)p->seen : NAN;
	char line[1024], b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], name[64];
	uint64_t e = p->epoch;
	int st, best = 0;
	double train_dt = tool_now() - epoch_t0;

	if (t->rc.val[0]) {
		if (!t->quiet && isatty(2))
			tool_progress(0, 0, "validating");
		if ((st = validate(t, &top1, &top5, &vloss)) < 0)
			return st;
		if (top1 > p->best_top1) {
			p->best_top1 = top1;
			p->best_epoch = (int64_t)e;
			best = 1;
		}
	}
	tool_progress_end();
	dt = tool_now() - epoch_t0;
	snprintf(line, sizeof line,
		 "{\"type\":\"epoch\",\"epoch\":%llu,\"iteration\":%llu,\"loss\":%s,\"lr\":%s,"
		 "\"loss_scale\":%.17g,\"skipped_steps\":%llu,\"train_top1\":%s,"
		 "\"val_top1\":%s,\"val_top5\":%s,\"val_loss\":%s,\"images_per_s\":%.1f,\"seconds\":%.2f}",
		 (unsigned long long)e, (unsigned long long)p->iteration, jnum(loss, b1, sizeof b1),
		 jnum(lr, b2, sizeof b2), bt_run_loss_scale(t->r), (unsigned long long)bt_run_skipped_steps(t->r),
		 jnum(acc, b3, sizeof b3), jnum(top1, b4, sizeof b4),
		 jnum(top5, b5, sizeof b5), jnum(vloss, b6, sizeof b6),
		 train_dt > 0 ? (double)epoch_images / train_dt : 0.0, run_seconds(t));
	if ((st = metrics_add(t, line)) < 0)
		return st;
	if (!t->quiet) {
		if (t->rc.val[0])
			tool_err("epoch %llu/%d: loss %.4f, train top-1 %.4f, val top-1 %.4f, top-5 %.4f, loss %.4f (%.1f s)",
				 (unsigned long long)e + 1, t->rc.num_epochs, loss, acc, top1, top5, vloss, dt);
		else
			tool_err("epoch %llu/%d: loss %.4f, train top-1 %.4f (%.1f s)", (unsigned long long)e + 1,
				 t->rc.num_epochs, loss, acc, dt);
	}
	p->epoch++;
	p->batch = 0;
	p->loss_sum = 0;
	p->correct = p->seen = 0;
	p->complete = p->epoch >= (uint64_t)t->rc.num_epochs;
	if ((st = save_as(t, "last.btc")) < 0)
		return st;
	if (best && (st = link_in_run(t, "last.btc", "best.btc")) < 0)
		return st;
	if (t->rc.save_frequency && (p->epoch % (uint64_t)t->rc.save_frequency == 0 || p->complete)) {
		snprintf(name, sizeof name, "epoch-%04llu.btc", (unsigned long long)p->epoch);
		if ((st = link_in_run(t, "last.btc", name)) < 0)
			return st;
		/* Keep the newest `keep` epoch checkpoints (the names sort by epoch). */
		if (t->rc.keep) {
			glob_t gl;
			char *pat = run_path(t, "epoch-[0-9][0-9][0-9][0-9]*.btc");
			if (pat && glob(pat, 0, NULL, &gl) == 0) {
				for (size_t i = 0; i + (size_t)t->rc.keep < gl.gl_pathc; i++)
					unlink(gl.gl_pathv[i]);
				globfree(&gl);
			}
			free(pat);
		}
	}
	return BT_OK;
}

static int interrupted_exit(struct trainer *t)
{
	int sig = tool_interrupted, st;
	tool_progress_end();
	if ((st = save_as(t, "last.btc")) < 0)
		return tool_fail(st);
	tool_err("stopped by signal %d at epoch %llu, batch %llu; saved %s/last.btc (continue with bt-train --resume %s)",
		 sig, (unsigned long long)t->pos.epoch + 1, (unsigned long long)t->pos.batch, t->rundir, t->rundir);
	return 128 + sig;
}

static int parse_decay_epochs(struct trainer *t)
{
	char buf[256], *tok, *save = NULL;
	struct bt_schedule *s = &t->sched;
	int e;
	if (!t->rc.lr_decay_epoch[0])
		return 0;
	strcpy(buf, t->rc.lr_decay_epoch);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (s->nsteps == BT_MAX_LR_STEPS)
			return tool_usage_error("--lr-decay-epoch: at most %d epochs", BT_MAX_LR_STEPS), -1;
		if (tool_parse_int("--lr-decay-epoch", tok, 0, 1000000, &e) < 0)
			return -1;
		s->steps[s->nsteps++] = (uint64_t)e * t->bpe;
	}
	return 0;
}

/* Class names from the training records (or numbers when it has none). */
static int take_classes(struct trainer *t, bt_loader *l)
{
	uint32_t n = bt_loader_nclasses(l);
	if (t->rc.classes && n && (uint32_t)t->rc.classes != n)
		return bt_error(BT_ERR_INVALID, "%s has %u class names but --classes is %d", t->rc.train, n,
				t->rc.classes);
	t->K = t->rc.classes ? t->rc.classes : (int)n;
	if (t->K < 2)
		return bt_error(BT_ERR_INVALID, "%s has no class names: give --classes K", t->rc.train);
	if (!(t->classes = calloc((size_t)t->K, sizeof *t->classes)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	t->nclasses = (uint32_t)t->K;
	for (int i = 0; i < t->K; i++) {
		if (n)
			t->classes[i] = strdup(bt_loader_class(l, (uint32_t)i));
		else if (asprintf(&t->classes[i], "%d", i) < 0)
			t->classes[i] = NULL;
		if (!t->classes[i])
			return bt_error(BT_ERR_NOMEM, "out of memory");
	}
	return BT_OK;
}

static int step(struct trainer *t, const struct bt_batch *b, double lr, double *loss, int *hits)
{
	const struct recipe *rc = &t->rc;
	int n = (int)b->n, K = t->K, st;
	const float *x = b->data;
	float lam = 1;
	size_t per = (size_t)b->size * b->size * b->channels;
	uint64_t seed = bt_mix64(rc->seed ^ bt_mix64(t->pos.iteration));
	int mix = rc->mixup && t->pos.epoch + (uint64_t)rc->mixup_off_epoch < (uint64_t)rc->num_epochs;

	for (int i = 0; i < n; i++)
		if (b->labels[i] < 0 || b->labels[i] >= K)
			return bt_error(BT_ERR_FORMAT, "%s: record %llu has label %d, outside 0..%d", rc->train,
					(unsigned long long)b->index[i], b->labels[i], K - 1);
	if (mix)
		lam = (float)bt_mixup_lambda(rc->seed, t->pos.iteration, rc->mixup_alpha);
	if (b->colour) {
		/* The backend mixes the normalised images, as bt_mixup_batch would have. The
		 * loss below waits for the device, after which the batch is free again. */
		struct bt_u8_batch in;
		u8_batch(b, &t->train_aug, mix, lam, &in);
		st = bt_run_forward_u8(t->r, &in, 1, seed);
	} else {
		if (mix) {
			memcpy(t->xbuf, x, (size_t)n * per * sizeof(float));
			bt_mixup_batch(t->xbuf, n, per, lam);
			x = t->xbuf;
		}
		st = bt_run_forward(t->r, x, n, 1, seed);
	}
	if (st < 0)
		return st;
	if (rc->mixup || rc->label_smoothing > 0) {
		bt_soft_targets(t->soft, b->labels, n, K, (float)rc->label_smoothing, lam);
		st = bt_run_loss(t->r, NULL, t->soft, 0, 1, loss);
	} else {
		st = bt_run_loss(t->r, b->labels, NULL, 0, 1, loss);
	}
	if (st < 0)
		return st;
	if (!isfinite(*loss))
		return bt_error(BT_ERR_INVALID, "the loss is %g at iteration %llu (learning rate %g too high?)",
				*loss, (unsigned long long)t->pos.iteration, lr);
	if ((st = bt_run_read_logits(t->r, t->logits, n)) < 0)
		return st;
	*hits = bt_train_hits(t->logits, b->labels, n, K, lam);
	if ((st = bt_run_backward(t->r)) < 0)
		return st;
	return bt_run_sgd(t->r, (float)lr, (float)rc->momentum, (float)rc->wd, rc->no_wd);
}

static void log_step(struct trainer *t, double lr, double ips, double eta)
{
	const struct position *p = &t->pos;
	double loss = p->seen ? p->loss_sum / (double)p->seen : 0, acc = p->seen ? (double)p->correct / p->seen : 0;
	char extra[160];
	if (t->quiet)
		return;
	if (t->tty) {
		snprintf(extra, sizeof extra, "epoch %llu/%d loss %.4f lr %.4g %.0f img/s ETA %dm%02ds",
			 (unsigned long long)p->epoch + 1, t->rc.num_epochs, loss, lr, ips, (int)(eta / 60),
			 (int)fmod(eta, 60));
		tool_progress(p->batch, t->bpe, extra);
	} else if (p->batch % (uint64_t)t->rc.log_interval == 0) {
		tool_err("epoch %llu/%d batch %llu/%llu: loss %.4f, train top-1 %.4f, lr %.5g, %.0f images/s",
			 (unsigned long long)p->epoch + 1, t->rc.num_epochs, (unsigned long long)p->batch,
			 (unsigned long long)t->bpe, loss, acc, lr, ips);
	}
}

/* The loss scaler of a resumed run. loss_scale is in every checkpoint ("1" but for
 * float16); the step counts came later, and a checkpoint without them resumes from 0. */
static int restore_scaler(struct trainer *t, const struct bt_ckpt *ck)
{
	const char *keys[2] = { "loss_scale_steps", "skipped_steps" };
	uint64_t v[2] = { 0, 0 };
	double scale;
	int st;
	if ((st = bt_ckpt_get_double(ck, BT_CKPT_STATE, "loss_scale", &scale)) < 0)
		return st;
	for (int i = 0; i < 2; i++)
		if (bt_ckpt_get(ck, BT_CKPT_STATE, keys[i]) &&
		    (st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, keys[i], &v[i])) < 0)
			return st;
	if ((st = bt_run_set_scaler(t->r, scale, v[0], v[1])) < 0)
		return bt_error_prefix(st, "checkpoint (dtype %s)", t->rc.dtype);
	return BT_OK;
}

static int train(struct trainer *t, struct bt_ckpt *ck)
{
	struct recipe *rc = &t->rc;
	struct position *p = &t->pos;
	struct bt_loader_opts lo = {0};
	bt_loader *l = NULL;
	const struct bt_batch *b = NULL;
	char *path = NULL;
	int st, have = 0, stream = strcmp(rc->train, "-") == 0;
	double epoch_t0, log_t0, lr = rc->lr;
	uint64_t epoch_images = 0, log_images = 0, remaining;

	/* The training loader, from the position (for a stream: batches counted here). */
	lo.threads = t->workers;
	lo.batch = (uint32_t)rc->batch_size;
	lo.shuffle = !stream;
	lo.seed = rc->seed;
	lo.epoch = p->epoch;
	lo.epochs = !stream && p->epoch < (uint64_t)rc->num_epochs ? (uint64_t)rc->num_epochs - p->epoch : 1;
	lo.drop_last = 1;
	lo.aug = t->train_aug;
	if (!stream) {
		bt_record_reader *rd;
		if ((st = bt_record_reader_open(&rd, rc->train)) < 0)
			goto fail;
		if (!bt_record_reader_has_footer(rd)) {
			bt_record_reader_close(rd);
			st = bt_error(BT_ERR_FORMAT, "%s has no footer (an unfinished file?): training shuffles and needs one; bt-prep --reindex adds it",
				      rc->train);
			goto fail;
		}
		t->bpe = bt_record_reader_count(rd) / (uint64_t)rc->batch_size;
		bt_record_reader_close(rd);
		if (t->bpe == 0) {
			st = bt_error(BT_ERR_FORMAT, "%s: fewer records than one batch of %d", rc->train, rc->batch_size);
			goto fail;
		}
		lo.first_batch = p->batch;
	} else {
		t->bpe = rc->epoch_size / (uint64_t)rc->batch_size;
		if (t->bpe == 0) {
			st = bt_error(BT_ERR_INVALID, "--epoch-size %llu is less than one batch of %d",
				      (unsigned long long)rc->epoch_size, rc->batch_size);
			goto fail;
		}
	}
	if (ck) {
		uint64_t was;
		if ((st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, "batches_per_epoch", &was)) < 0)
			goto fail;
		if (was != t->bpe) {
			st = bt_error(BT_ERR_INVALID, "%s gives %llu batches per epoch; the run had %llu: resume with the same training records",
				      rc->train, (unsigned long long)t->bpe, (unsigned long long)was);
			goto fail;
		}
	}
	/* The backend first: the loader's batches may live in its page-locked memory. */
	if ((st = bt_backend_open(&t->be, rc->device, t->threads)) < 0)
		goto fail;
	loader_data_path(t, &lo);
	if ((st = bt_loader_open(&l, rc->train, &lo)) < 0)
		goto fail;
	if (p->epoch < (uint64_t)rc->num_epochs && p->batch < t->bpe) {
		if ((st = bt_loader_next(l, &b)) < 0)
			goto fail;
		if (st == 0) {
			st = bt_error(BT_ERR_FORMAT, "%s: no complete batch of %d images", rc->train, rc->batch_size);
			goto fail;
		}
		have = 1;
	}

	/* The model, from the data's channels and classes or from the checkpoint. */
	if (!ck) {
		if ((st = take_classes(t, l)) < 0)
			goto fail;
		t->mo.classes = t->K;
		t->mo.in_channels = b->channels;
	} else {
		if (have && b->channels != t->mo.in_channels) {
			st = bt_error(BT_ERR_FORMAT, "%s: images have %d channels, the checkpoint's model takes %d",
				      rc->train, b->channels, t->mo.in_channels);
			goto fail;
		}
	}
	bt_model_defaults(rc->model, &t->mo);
	bt_graph_init(&t->g);
	if ((st = bt_model_build(&t->g, rc->model, &t->mo)) < 0 ||
	    (st = bt_run_new_dtype(&t->r, &t->g, &t->be, rc->batch_size, bt_dtype_parse(rc->dtype))) < 0)
		goto fail;
	{
		size_t per = (size_t)t->train_aug.size * t->train_aug.size * t->mo.in_channels;
		/* The host's mixup buffer, for float32 batches only. */
		int host_mix = lo.aug.format == BT_AUG_F32;
		t->xbuf = host_mix ? malloc((size_t)rc->batch_size * per * sizeof(float)) : NULL;
		t->soft = malloc((size_t)rc->batch_size * t->K * sizeof(float));
		t->logits = malloc((size_t)rc->batch_size * t->K * sizeof(float));
		t->hparams = calloc(t->g.nfloats ? t->g.nfloats : 1, sizeof(float)); /* zero gaps */
		t->hmom = calloc(t->g.nfloats ? t->g.nfloats : 1, sizeof(float));
		if ((host_mix && !t->xbuf) || !t->soft || !t->logits || !t->hparams || !t->hmom) {
			st = bt_error(BT_ERR_NOMEM, "out of memory for a batch");
			goto fail;
		}
	}
	if (ck) {
		if ((st = bt_ckpt_get_params(ck, &t->g, t->hparams, t->hmom)) >= 0)
			st = bt_run_write_state(t->r, t->hparams, t->hmom);
		if (st >= 0)
			st = restore_scaler(t, ck);
	} else {
		st = bt_run_init_params(t->r, rc->seed, rc->last_gamma);
	}
	if (st < 0)
		goto fail;

	/* The schedule, in iterations. */
	if (rc->base_lr > 0)
		lr = rc->base_lr * rc->batch_size / rc->base_batch;
	t->sched.mode = rc->lr_mode;
	t->sched.lr = lr;
	t->sched.warmup_lr = rc->warmup_lr;
	t->sched.warmup_iters = (uint64_t)rc->warmup_epochs * t->bpe;
	t->sched.total_iters = (uint64_t)rc->num_epochs * t->bpe;
	t->sched.decay = rc->lr_decay;
	t->sched.power = rc->poly_power;
	if (parse_decay_epochs(t) < 0) {
		st = -2;
		goto fail;
	}

	/* metrics.jsonl: what the checkpoint says so far, then this session's lines. */
	if (!(path = run_path(t, "metrics.jsonl")) || !(t->mf = fopen(path, "w"))) {
		st = path ? bt_error_errno("cannot create '%s'", path) : bt_error(BT_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (t->metrics && t->metrics_len && fputs(t->metrics, t->mf) < 0) {
		st = bt_error_errno("%s", path);
		goto fail;
	}
	fflush(t->mf);

	if (!t->quiet) {
		tool_err("%s %s: %s, %d classes, %dx%dx%d input, %.3gM parameters, batch %d, %llu steps per epoch, lr %g (%s), %s%s%s",
			 ck ? "resuming" : "training", rc->model, rc->train, t->K, t->mo.input_size, t->mo.input_size,
			 t->mo.in_channels, bt_graph_trainable(&t->g) / 1e6, rc->batch_size,
			 (unsigned long long)t->bpe, lr, bt_lr_mode_name(rc->lr_mode), t->be.i->describe(t->be.ctx),
			 strcmp(rc->dtype, "float32") ? ", mixed precision " : "",
			 strcmp(rc->dtype, "float32") ? rc->dtype : "");
		if (ck)
			tool_err("from epoch %llu, batch %llu (iteration %llu)", (unsigned long long)p->epoch + 1,
				 (unsigned long long)p->batch, (unsigned long long)p->iteration);
	}
	t->t_session = tool_now();
	t->tty = isatty(2);
	epoch_t0 = log_t0 = t->t_session;
	remaining = (uint64_t)rc->num_epochs * t->bpe - p->iteration;

	/* A run stopped between its last step and the end of an epoch finishes the epoch. */
	if (p->epoch < (uint64_t)rc->num_epochs && p->batch == t->bpe &&
	    (st = end_epoch(t, epoch_t0, 0, bt_schedule_lr(&t->sched, p->iteration ? p->iteration - 1 : 0))) < 0)
		goto fail;
	while (p->epoch < (uint64_t)rc->num_epochs) {
		double loss = 0;
		int hits = 0;
		if (!have) {
			st = bt_loader_next(l, &b);
			if (st < 0)
				goto fail;
			if (st == 0) {
				st = bt_error(BT_ERR_TRUNCATED, "%s ended at epoch %llu, batch %llu, before the %d epochs of the run",
					      stream ? "the stream" : rc->train, (unsigned long long)p->epoch + 1,
					      (unsigned long long)p->batch, rc->num_epochs);
				goto fail;
			}
		}
		have = 0;
		if (b->n == 0)
			continue;
		if (b->channels != t->mo.in_channels) {
			st = bt_error(BT_ERR_FORMAT, "%s: images have %d channels, the model takes %d", rc->train,
				      b->channels, t->mo.in_channels);
			goto fail;
		}
		lr = bt_schedule_lr(&t->sched, p->iteration);
		if ((st = step(t, b, lr, &loss, &hits)) < 0)
			goto fail;
		p->loss_sum += loss * b->n;
		p->correct += (uint64_t)hits;
		p->seen += b->n;
		p->batch++;
		p->iteration++;
		epoch_images += b->n;
		log_images += b->n;
		remaining--;
		if (p->batch % (uint64_t)rc->log_interval == 0 || p->batch == t->bpe || t->tty) {
			double now = tool_now(), ips = now > log_t0 ? log_images / (now - log_t0) : 0;
			if (p->batch % (uint64_t)rc->log_interval == 0) {
				char line[512], b1[32], b2[32], b3[32];
				snprintf(line, sizeof line,
					 "{\"type\":\"log\",\"epoch\":%llu,\"batch\":%llu,\"iteration\":%llu,\"loss\":%s,\"lr\":%s,"
					 "\"loss_scale\":%.17g,\"skipped_steps\":%llu,"
					 "\"train_top1\":%s,\"images_per_s\":%.1f,\"seconds\":%.2f}",
					 (unsigned long long)p->epoch, (unsigned long long)p->batch,
					 (unsigned long long)p->iteration, jnum(p->loss_sum / p->seen, b1, sizeof b1),
					 jnum(lr, b2, sizeof b2), bt_run_loss_scale(t->r),
					 (unsigned long long)bt_run_skipped_steps(t->r),
					 jnum((double)p->correct / p->seen, b3, sizeof b3), ips, run_seconds(t));
				if ((st = metrics_add(t, line)) < 0)
					goto fail;
			}
			log_step(t, lr, ips, ips > 0 ? remaining * (double)rc->batch_size / ips : 0);
			if (p->batch % (uint64_t)rc->log_interval == 0) {
				log_t0 = now;
				log_images = 0;
			}
		}
		if (p->iteration == t->signal_at)
			raise(SIGTERM); /* BT_TRAIN_SIGNAL_AT: a deterministic interruption for tests */
		if (tool_interrupted)
			break;
		if (p->batch == t->bpe) {
			if ((st = end_epoch(t, epoch_t0, epoch_images, lr)) < 0)
				goto fail;
			epoch_t0 = log_t0 = tool_now();
			epoch_images = log_images = 0;
		}
		if (tool_interrupted)
			break;
	}
	bt_loader_close(l);
	l = NULL;
	free(path);
	path = NULL;
	if (tool_interrupted)
		return interrupted_exit(t);
	if (!t->quiet) {
		if (p->best_epoch >= 0)
			tool_err("done: %d epochs in %.1f s; best val top-1 %.4f (epoch %lld); %s/last.btc",
				 rc->num_epochs, run_seconds(t), p->best_top1, (long long)p->best_epoch + 1, t->rundir);
		else
			tool_err("done: %d epochs in %.1f s; %s/last.btc", rc->num_epochs, run_seconds(t), t->rundir);
	}
	return 0;
fail:
	tool_progress_end();
	bt_loader_close(l);
	free(path);
	if (st == -2)
		return 2;
	if (tool_interrupted && t->r)
		return interrupted_exit(t);
	return tool_fail(st);
}

/* ---- the command line -------------------------------------------------------------- */

enum {
	OPT_FIELD = 1000, /* + index into fields[] */
	OPT_BENCH = 256, OPT_RESUME, OPT_WORKERS, OPT_NO_WD, OPT_LAST_GAMMA, OPT_MIXUP, OPT_NO_FLIP,
	OPT_SMOOTH, OPT_IN_CHANNELS, OPT_STEPS, OPT_WARMUP, OPT_NO_INFER, OPT_PROFILE,
};

/* The options given, applied after a resumed run's recipe is loaded. */
struct given {
	const struct field *f;
	const char *val;
};

static int apply_recipe(struct recipe *rc, const struct bt_ckpt *ck, const char *path)
{
	const struct field *f;
	char opt[64];
	for (size_t i = 0; i < ck->nkv[BT_CKPT_RECIPE]; i++) {
		const struct bt_ckpt_kv *kv = &ck->kv[BT_CKPT_RECIPE][i];
		snprintf(opt, sizeof opt, "%s", kv->key);
		for (char *c = opt; *c; c++)
			if (*c == '_')
				*c = '-';
		if (!(f = field_find(opt))) {
			tool_err("%s: ignoring the recipe key '%s' (from a newer bt?)", path, kv->key);
			continue;
		}
		if (field_set(rc, f, kv->value) < 0) {
			tool_err("%s: bad recipe value %s=%s", path, kv->key, kv->value);
			return -1;
		}
	}
	return 0;
}

static int load_position(struct trainer *t, const struct bt_ckpt *ck)
{
	struct position *p = &t->pos;
	uint64_t u;
	int64_t i;
	double d;
	int st;
	if ((st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, "epoch", &p->epoch)) < 0 ||
	    (st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, "batch", &p->batch)) < 0 ||
	    (st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, "iteration", &p->iteration)) < 0 ||
	    (st = bt_ckpt_get_double(ck, BT_CKPT_STATE, "best_top1", &p->best_top1)) < 0 ||
	    (st = bt_ckpt_get_i64(ck, BT_CKPT_STATE, "best_epoch", &i)) < 0 ||
	    (st = bt_ckpt_get_double(ck, BT_CKPT_STATE, "train_seconds", &d)) < 0 ||
	    (st = bt_ckpt_get_double(ck, BT_CKPT_STATE, "epoch_loss_sum", &p->loss_sum)) < 0 ||
	    (st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, "epoch_correct", &p->correct)) < 0 ||
	    (st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, "epoch_seen", &p->seen)) < 0 ||
	    (st = bt_ckpt_get_u64(ck, BT_CKPT_STATE, "complete", &u)) < 0)
		return st;
	p->best_epoch = i;
	p->complete = u != 0;
	t->seconds_before = d;
	if (ck->metrics) {
		if (!(t->metrics = strdup(ck->metrics)))
			return bt_error(BT_ERR_NOMEM, "out of memory");
		t->metrics_len = t->metrics_cap = strlen(t->metrics);
	}
	if (!(t->classes = calloc(ck->nclasses ? ck->nclasses : 1, sizeof *t->classes)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	for (uint32_t k = 0; k < ck->nclasses; k++)
		if (!(t->classes[k] = strdup(ck->classes[k])))
			return bt_error(BT_ERR_NOMEM, "out of memory");
	t->nclasses = ck->nclasses;
	return BT_OK;
}

/* A process killed while saving leaves its temporary file (NAME.btc.tmp.XXXXXX) behind;
 * such a file is never a valid checkpoint. */
static void remove_stale_temporaries(const char *rundir)
{
	glob_t gl;
	char *pat = NULL;
	if (asprintf(&pat, "%s/*.btc.tmp.*", rundir) < 0)
		return;
	if (glob(pat, 0, NULL, &gl) == 0) {
		for (size_t i = 0; i < gl.gl_pathc; i++)
			unlink(gl.gl_pathv[i]);
		globfree(&gl);
	}
	free(pat);
}

static int known_model(const char *name)
{
	for (const char *const *n = bt_model_names(); *n; n++)
		if (strcmp(*n, name) == 0)
			return 1;
	return 0;
}

static void trainer_free(struct trainer *t)
{
	bt_run_free(t->r);
	bt_backend_free(&t->be);
	bt_graph_free(&t->g);
	for (uint32_t i = 0; i < t->nclasses; i++)
		free(t->classes[i]);
	free(t->classes);
	free(t->metrics);
	free(t->xbuf);
	free(t->soft);
	free(t->logits);
	free(t->hparams);
	free(t->hmom);
	if (t->mf)
		fclose(t->mf);
}

/* --dtype names a type, and float16 a CUDA device (the CPU backend computes in float32 and
 * bfloat16; a resumed run's dtype comes from its recipe, its device from the command line).
 * Whether this CPU has bfloat16 kernels is the backend's to say, when the run is made. 0,
 * or 2 after a usage message. */
static int check_dtype(const struct recipe *rc)
{
	int dt = bt_dtype_parse(rc->dtype);
	if (dt < 0)
		return tool_usage_error("--dtype takes float32, float16 or bfloat16, not '%s'", rc->dtype);
	if (dt == BT_DTYPE_F16 && strncmp(rc->device, "cuda", 4) != 0)
		return tool_usage_error("--dtype float16 needs --device cuda (the CPU computes in float32 or bfloat16)");
	return 0;
}

int main(int argc, char **argv)
{
	static struct option longopts[NFIELDS + 32];
	static struct given given[256];
	struct trainer t;
	struct bt_ckpt ck;
	struct bt_model_opts bmo = {0};
	const char *out = NULL, *resume = NULL;
	int ngiven = 0, nopt = 0, bench = 0, steps = 20, warmup = 3, infer = 1, profile = 0, in_channels = 0, c, rv;
	char *ckpath = NULL;

	tool_name = "bt-train";
	memset(&t, 0, sizeof t);
	recipe_defaults(&t.rc);
	t.threads = t.workers = tool_ncpus();
	t.pos.best_top1 = -1;
	t.pos.best_epoch = -1;
	bt_ckpt_init(&ck);

	for (size_t i = 0; i < NFIELDS; i++) {
		if (fields[i].type == V_BOOL || !strcmp(fields[i].opt, "label-smoothing"))
			continue; /* flags, below */
		longopts[nopt++] = (struct option){ fields[i].opt, required_argument, NULL, OPT_FIELD + (int)i };
	}
	{
		static const struct option extra[] = {
			{"output", required_argument, NULL, 'o'},
			{"resume", required_argument, NULL, OPT_RESUME},
			{"threads", required_argument, NULL, 'j'},
			{"data-workers", required_argument, NULL, OPT_WORKERS},
			{"no-wd", no_argument, NULL, OPT_NO_WD},
			{"last-gamma", no_argument, NULL, OPT_LAST_GAMMA},
			{"mixup", no_argument, NULL, OPT_MIXUP},
			{"no-flip", no_argument, NULL, OPT_NO_FLIP},
			{"label-smoothing", optional_argument, NULL, OPT_SMOOTH},
			{"benchmark", no_argument, NULL, OPT_BENCH},
			{"in-channels", required_argument, NULL, OPT_IN_CHANNELS},
			{"steps", required_argument, NULL, OPT_STEPS},
			{"warmup", required_argument, NULL, OPT_WARMUP},
			{"no-inference", no_argument, NULL, OPT_NO_INFER},
			{"profile", no_argument, NULL, OPT_PROFILE},
			{"quiet", no_argument, NULL, 'q'},
			{"help", no_argument, NULL, 'h'},
			{"version", no_argument, NULL, 'V'},
			{NULL, 0, NULL, 0},
		};
		memcpy(longopts + nopt, extra, sizeof extra);
	}
	while ((c = getopt_long(argc, argv, "o:j:qhV", longopts, NULL)) != -1) {
		const char *flagval = NULL, *flagname = NULL;
		switch (c) {
		case 'o': out = optarg; break;
		case OPT_RESUME: resume = optarg; break;
		case 'j':
			if (tool_parse_int("-j", optarg, 1, 1024, &t.threads) < 0)
				return 2;
			break;
		case OPT_WORKERS:
			if (tool_parse_int("--data-workers", optarg, 1, 1024, &t.workers) < 0)
				return 2;
			break;
		case OPT_NO_WD: flagname = "no-wd"; flagval = "1"; break;
		case OPT_LAST_GAMMA: flagname = "last-gamma"; flagval = "1"; break;
		case OPT_MIXUP: flagname = "mixup"; flagval = "1"; break;
		case OPT_NO_FLIP: flagname = "flip"; flagval = "0"; break;
		case OPT_SMOOTH:
			flagname = "label-smoothing";
			flagval = optarg ? optarg : "0.1";
			/* "--label-smoothing 0.2" as well as "--label-smoothing=0.2". */
			if (!optarg && optind < argc && argv[optind][0] != '-' && strspn(argv[optind], "0123456789.eE") == strlen(argv[optind]))
				flagval = argv[optind++];
			break;
		case OPT_BENCH: bench = 1; break;
		case OPT_IN_CHANNELS:
			if (tool_parse_int("--in-channels", optarg, 1, 64, &in_channels) < 0)
				return 2;
			break;
		case OPT_STEPS:
			if (tool_parse_int("--steps", optarg, 1, 1000000, &steps) < 0)
				return 2;
			break;
		case OPT_WARMUP:
			if (tool_parse_int("--warmup", optarg, 0, 1000000, &warmup) < 0)
				return 2;
			break;
		case OPT_NO_INFER: infer = 0; break;
		case OPT_PROFILE: profile = 1; break;
		case 'q': t.quiet = 1; break;
		case 'h': fputs(usage_text, stdout); fputs("\n", stdout); fputs(help_text, stdout); return 0;
		case 'V': printf("bt-train %s\n", BT_VERSION); return 0;
		default:
			if (c >= OPT_FIELD && c < OPT_FIELD + (int)NFIELDS) {
				const struct field *f = &fields[c - OPT_FIELD];
				if (field_set(&t.rc, f, optarg) < 0) /* checks it now, for a clear message */
					return 2;
				if (ngiven < 256)
					given[ngiven++] = (struct given){ f, optarg };
				break;
			}
			fputs(usage_text, stderr);
			return 2;
		}
		if (flagname) {
			const struct field *f = field_find(flagname);
			if (field_set(&t.rc, f, flagval) < 0)
				return 2;
			if (ngiven < 256)
				given[ngiven++] = (struct given){ f, flagval };
		}
	}
	if (optind < argc)
		return tool_usage_error("unexpected argument '%s'", argv[optind]);

	if (!tool_device_name(t.rc.device))
		return tool_usage_error("--device takes cpu, cuda or cuda:N, not '%s'", t.rc.device);
	if (bench) {
		if (check_dtype(&t.rc))
			return 2;
		if (!t.rc.model[0])
			return tool_usage_error("--benchmark needs --model NAME (bt-info --model list)");
		if (!known_model(t.rc.model))
			return tool_usage_error("unknown model '%s' (bt-info --model list)", t.rc.model);
		bmo.input_size = t.rc.input_size;
		bmo.classes = t.rc.classes;
		bmo.in_channels = in_channels;
		return benchmark(t.rc.model, &bmo, t.rc.batch_size, steps, warmup, t.rc.device,
				 bt_dtype_parse(t.rc.dtype), t.threads, infer, profile);
	}

	if (resume) {
		if (out && strcmp(out, resume) != 0)
			return tool_usage_error("--resume RUNDIR continues in RUNDIR; it takes no -o");
		if (asprintf(&ckpath, "%s/last.btc", resume) < 0)
			return tool_fail(bt_error(BT_ERR_NOMEM, "out of memory"));
		recipe_defaults(&t.rc);
		remove_stale_temporaries(resume);
		if ((rv = bt_ckpt_read(&ck, ckpath)) < 0) {
			rv = tool_fail(rv);
			goto done;
		}
		if (apply_recipe(&t.rc, &ck, ckpath) < 0) {
			rv = 1;
			goto done;
		}
		for (int i = 0; i < ngiven; i++) {
			if (!given[i].f->resumable) {
				rv = tool_usage_error("--%s cannot change when resuming: the recipe is in %s", given[i].f->opt,
						      ckpath);
				goto done;
			}
			field_set(&t.rc, given[i].f, given[i].val);
		}
		{
			char model[64];
			struct bt_aug_params ev;
			if ((rv = bt_ckpt_get_spec(&ck, model, sizeof model, &t.mo, &ev)) < 0 ||
			    (rv = load_position(&t, &ck)) < 0) {
				bt_error_prefix(rv, "%s", ckpath);
				rv = tool_fail(rv);
				goto done;
			}
			t.K = t.mo.classes;
			if ((uint32_t)t.K != t.nclasses) {
				rv = tool_fail(bt_error(BT_ERR_FORMAT, "%s: %u class names for %d classes", ckpath,
							t.nclasses, t.K));
				goto done;
			}
		}
		if (t.pos.complete) {
			tool_err("%s: the run is complete (%d epochs); nothing to do", resume, t.rc.num_epochs);
			rv = 0;
			goto done;
		}
		out = resume;
	} else {
		if (!out)
			return tool_usage_error("give the run directory with -o RUNDIR");
		if (!t.rc.model[0])
			return tool_usage_error("give the model with --model NAME (bt-info --model list)");
		if (!t.rc.train[0])
			return tool_usage_error("give the training records with --train FILE");
	}
	t.rundir = out;
	if (!known_model(t.rc.model))
		return tool_usage_error("unknown model '%s' (bt-info --model list)", t.rc.model);
	if ((rv = check_dtype(&t.rc)) != 0)
		goto done;
	if (t.rc.base_lr > 0) {
		for (int i = 0; i < ngiven && !resume; i++)
			if (!strcmp(given[i].f->opt, "lr"))
				return tool_usage_error("give --lr or --base-lr, not both");
	}
	if (t.rc.mixup_off_epoch > t.rc.num_epochs)
		return tool_usage_error("--mixup-off-epoch %d is more than --num-epochs %d", t.rc.mixup_off_epoch,
					t.rc.num_epochs);
	if (t.rc.warmup_epochs > t.rc.num_epochs)
		return tool_usage_error("--warmup-epochs %d is more than --num-epochs %d", t.rc.warmup_epochs,
					t.rc.num_epochs);
	if (!strcmp(t.rc.train, "-") && !t.rc.epoch_size)
		return tool_usage_error("--train - (a stream) needs --epoch-size N, the records of one epoch");
	if (!strcmp(t.rc.train, "-") && !t.rc.classes && !resume)
		return tool_usage_error("--train - (a stream) needs --classes K");

	/* The transforms. */
	if (!resume) {
		t.mo.input_size = t.rc.input_size;
		bt_model_defaults(t.rc.model, &bmo);
		if (!t.rc.input_size)
			t.rc.input_size = t.mo.input_size = bmo.input_size;
	}
	bt_aug_defaults(&t.train_aug, 1);
	t.train_aug.size = (uint32_t)t.rc.input_size;
	t.train_aug.min_area = t.rc.min_area;
	t.train_aug.max_area = t.rc.max_area;
	t.train_aug.min_aspect = t.rc.min_aspect;
	t.train_aug.max_aspect = t.rc.max_aspect;
	t.train_aug.flip = t.rc.flip;
	t.train_aug.jitter = t.rc.jitter;
	t.train_aug.lighting = t.rc.lighting;
	t.train_aug.erase = t.rc.erase;
	t.train_aug.erase_min_area = t.rc.erase_min_area;
	t.train_aug.erase_max_area = t.rc.erase_max_area;
	t.train_aug.erase_min_aspect = t.rc.erase_min_aspect;
	t.train_aug.erase_max_aspect = t.rc.erase_max_aspect;
	t.train_aug.pad = t.rc.pad;
	memcpy(t.train_aug.mean, t.rc.mean, sizeof t.rc.mean);
	memcpy(t.train_aug.std, t.rc.std, sizeof t.rc.std);
	t.train_aug.format = BT_AUG_F32;
	t.train_aug.identity = !strcmp(t.rc.train, "-");
	bt_aug_defaults(&t.eval_aug, 0);
	t.eval_aug.size = (uint32_t)t.rc.input_size;
	t.eval_aug.crop_ratio = t.rc.crop_ratio;
	memcpy(t.eval_aug.mean, t.rc.mean, sizeof t.rc.mean);
	memcpy(t.eval_aug.std, t.rc.std, sizeof t.rc.std);
	t.eval_aug.format = BT_AUG_F32;
	if (bt_aug_check(&t.train_aug) < 0 || bt_aug_check(&t.eval_aug) < 0)
		return tool_usage_error("%s", bt_errmsg());

	if (!resume) {
		struct stat sb;
		char *last = NULL;
		if (mkdir(out, 0777) != 0 && errno != EEXIST)
			return tool_fail(bt_error_errno("cannot create the run directory '%s'", out));
		if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode))
			return tool_fail(bt_error(BT_ERR_INVALID, "'%s' is not a directory", out));
		if (asprintf(&last, "%s/last.btc", out) >= 0 && access(last, F_OK) == 0) {
			free(last);
			return tool_fail(bt_error(BT_ERR_INVALID,
						  "%s already holds a run (last.btc): continue it with --resume %s or choose another -o",
						  out, out));
		}
		free(last);
		remove_stale_temporaries(out);
	}
	tool_catch_signals();
	{
		const char *e = getenv("BT_TRAIN_SIGNAL_AT");
		if (e && *e && tool_parse_u64("BT_TRAIN_SIGNAL_AT", e, 1, UINT64_MAX, &t.signal_at) < 0)
			return 2;
	}
	/* --device cuda takes the GPU's data path; BT_INPUT_U8 (0 or 1) chooses either path on
	 * any device, to compare them. */
	t.u8 = strncmp(t.rc.device, "cuda", 4) == 0;
	{
		const char *e = getenv("BT_INPUT_U8");
		if (e && *e && tool_parse_int("BT_INPUT_U8", e, 0, 1, &t.u8) < 0)
			return 2;
	}
	rv = train(&t, resume ? &ck : NULL);
done:
	trainer_free(&t);
	bt_ckpt_free(&ck);
	free(ckpath);
	return rv;
}
