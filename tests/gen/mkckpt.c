/* mkckpt.c: writes a checkpoint of an untrained zoo model for the Bats tests of bt-eval,
 * so that they need no training run. The parameters are the deterministic initialisation
 * of bt_run_init_params (Xavier weights, zero biases, batch norm at identity); --perturb
 * then moves the biases, batch-norm gamma, beta and running statistics away from their
 * initial values by a deterministic amount, so that a reader that drops or mixes them up
 * gives other logits.
 *
 *   mkckpt [--classes K] [--in-channels C] [--input-size S] [--aux] [--seed S]
 *	    [--mean M[,M,M]] [--std S[,S,S]] [--crop-ratio R] [--resize N]
 *	    [--class-names FILE | --no-class-names] [--perturb X] [--momentum]
 *	    MODEL OUT.btc
 *	SPEC from the model options and the evaluation transform (bt_aug_defaults(.., 0)
 *	with the options given); class names "class0", "class1", ... unless a file (one
 *	name per line) or none; every parameter; with --momentum also the optimizer's
 *	momentum tensors, as bt-train writes them.
 * Exit status 0 on success, 1 on failure, 2 on a usage error.
 */
#define _GNU_SOURCE
#include "augment.h"
#include "backend.h"
#include "bt.h"
#include "checkpoint.h"
#include "graph.h"
#include "rng.h"
#include "run.h"
#include "zoo.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"usage: mkckpt [--classes K] [--in-channels C] [--input-size S] [--aux] [--seed S]\n"
	"              [--mean M[,M,M]] [--std S[,S,S]] [--crop-ratio R] [--resize N]\n"
	"              [--class-names FILE | --no-class-names] [--perturb X] [--momentum]\n"
	"              MODEL OUT.btc\n";

static void usage(void)
{
	fputs(usage_text, stderr);
	exit(2);
}

static void die_bt(int status)
{
	const char *m = bt_errmsg();
	fprintf(stderr, "mkckpt: %s\n", m[0] ? m : bt_strerror(status));
	exit(1);
}

static double number(const char *s, double min, double max)
{
	char *end;
	double x;
	errno = 0;
	x = strtod(s, &end);
	if (!*s || *end || errno || !(x >= min && x <= max)) {
		fprintf(stderr, "mkckpt: bad number '%s'\n", s);
		usage();
	}
	return x;
}

static void triple(const char *s, float v[3])
{
	double x[3];
	int n = 0;
	char buf[256], *tok, *save = NULL;
	if (strlen(s) >= sizeof buf)
		usage();
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == 3)
			usage();
		x[n++] = number(tok, -1e6, 1e6);
	}
	if (n != 1 && n != 3)
		usage();
	for (int i = 0; i < 3; i++)
		v[i] = (float)x[n == 1 ? 0 : i];
}

/* Non-empty lines of a file. */
static char **read_names(const char *path, uint32_t *n)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL, **v = NULL;
	size_t cap = 0;
	ssize_t len;
	if (!fp) {
		fprintf(stderr, "mkckpt: cannot open '%s': %s\n", path, strerror(errno));
		exit(1);
	}
	*n = 0;
	while ((len = getline(&line, &cap, fp)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (!len)
			continue;
		if (!(v = realloc(v, (*n + 1) * sizeof *v)) || !(v[*n] = strdup(line))) {
			fputs("mkckpt: out of memory\n", stderr);
			exit(1);
		}
		(*n)++;
	}
	free(line);
	fclose(fp);
	return v;
}

/* Moves every parameter but the weights off its initial value: biases and beta by up to
 * +-x, gamma by a factor in [1-x, 1+x], running means by up to +-x, running variances by
 * a factor in [exp(-x), exp(x)]. */
static void perturb(const struct bt_graph *g, float *params, double x, uint64_t seed)
{
	struct bt_rng rng;
	bt_rng_seed(&rng, seed ^ 0x9e3779b97f4a7c15ull);
	for (int i = 0; i < g->nparams; i++) {
		const struct bt_param *p = &g->params[i];
		float *v = params + p->offset;
		for (size_t k = 0; k < p->count; k++) {
			double u = 2 * bt_rng_uniform(&rng) - 1;
			switch (p->kind) {
			case BT_PARAM_BIAS:
			case BT_PARAM_BETA:
			case BT_PARAM_RUNNING_MEAN: v[k] += (float)(x * u); break;
			case BT_PARAM_GAMMA: v[k] *= (float)(1 + x * u); break;
			case BT_PARAM_RUNNING_VAR: v[k] *= (float)exp(x * u); break;
			default: break;
			}
		}
	}
}

enum { O_CLASSES = 256, O_IN_CHANNELS, O_INPUT_SIZE, O_AUX, O_SEED, O_MEAN, O_STD, O_CROP_RATIO,
       O_RESIZE, O_CLASS_NAMES, O_NO_CLASS_NAMES, O_PERTURB, O_MOMENTUM };

static const struct option longopts[] = {
	{"classes", required_argument, NULL, O_CLASSES},
	{"in-channels", required_argument, NULL, O_IN_CHANNELS},
	{"input-size", required_argument, NULL, O_INPUT_SIZE},
	{"aux", no_argument, NULL, O_AUX},
	{"seed", required_argument, NULL, O_SEED},
	{"mean", required_argument, NULL, O_MEAN},
	{"std", required_argument, NULL, O_STD},
	{"crop-ratio", required_argument, NULL, O_CROP_RATIO},
	{"resize", required_argument, NULL, O_RESIZE},
	{"class-names", required_argument, NULL, O_CLASS_NAMES},
	{"no-class-names", no_argument, NULL, O_NO_CLASS_NAMES},
	{"perturb", required_argument, NULL, O_PERTURB},
	{"momentum", no_argument, NULL, O_MOMENTUM},
	{NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	struct bt_model_opts mo = {0};
	struct bt_aug_params eval;
	struct bt_graph g;
	struct bt_backend be = {0};
	struct bt_run *r = NULL;
	struct bt_ckpt ck;
	const char *names_file = NULL;
	char **names = NULL;
	uint32_t nnames = 0;
	uint64_t seed = 0;
	double pert = 0;
	int no_names = 0, momentum = 0, c, st;

	bt_aug_defaults(&eval, 0);
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_CLASSES: mo.classes = (int)number(optarg, 1, 1000000); break;
		case O_IN_CHANNELS: mo.in_channels = (int)number(optarg, 1, 64); break;
		case O_INPUT_SIZE: mo.input_size = (int)number(optarg, 1, 8192); break;
		case O_AUX: mo.aux = 1; break;
		case O_SEED: seed = (uint64_t)number(optarg, 0, 1e15); break;
		case O_MEAN: triple(optarg, eval.mean); break;
		case O_STD: triple(optarg, eval.std); break;
		case O_CROP_RATIO: eval.crop_ratio = number(optarg, 1e-3, 1); break;
		case O_RESIZE: eval.resize = (uint32_t)number(optarg, 1, 65535); break;
		case O_CLASS_NAMES: names_file = optarg; break;
		case O_NO_CLASS_NAMES: no_names = 1; break;
		case O_PERTURB: pert = number(optarg, 0, 10); break;
		case O_MOMENTUM: momentum = 1; break;
		default: usage();
		}
	}
	if (argc - optind != 2 || (names_file && no_names))
		usage();
	const char *model = argv[optind], *out = argv[optind + 1];

	bt_model_defaults(model, &mo);
	eval.size = (uint32_t)mo.input_size;
	bt_graph_init(&g);
	bt_ckpt_init(&ck);
	if ((st = bt_model_build(&g, model, &mo)) < 0 || (st = bt_backend_cpu(&be, 1)) < 0 ||
	    (st = bt_run_new(&r, &g, &be, 1)) < 0 || (st = bt_run_init_params(r, seed, 0)) < 0)
		die_bt(st);
	if (pert > 0)
		perturb(&g, bt_run_params(r), pert, seed);

	if (names_file) {
		names = read_names(names_file, &nnames);
	} else if (!no_names) {
		nnames = (uint32_t)mo.classes;
		if (!(names = calloc(nnames, sizeof *names)))
			die_bt(BT_ERR_NOMEM);
		for (uint32_t i = 0; i < nnames; i++)
			if (asprintf(&names[i], "class%u", i) < 0)
				die_bt(BT_ERR_NOMEM);
	}
	if ((st = bt_ckpt_put_spec(&ck, model, &mo, &eval)) < 0 ||
	    (nnames && (st = bt_ckpt_set_classes(&ck, nnames, (const char *const *)names)) < 0) ||
	    (st = bt_ckpt_put_params(&ck, &g, bt_run_params(r), momentum ? bt_run_momentum(r) : NULL)) < 0 ||
	    (st = bt_ckpt_write(&ck, out)) < 0)
		die_bt(st);

	for (uint32_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	bt_ckpt_free(&ck);
	bt_run_free(r);
	bt_backend_free(&be);
	bt_graph_free(&g);
	return 0;
}
