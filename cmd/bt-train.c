/* bt-train: trains zoo models. This version has the benchmark mode: forward, backward and
 * an SGD step on synthetic data, timed, and inference timed beside it; the training loop
 * over record files arrives next (see docs/DESIGN.md). The work is in lib/run.c and
 * lib/cpu.c. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bt.h"
#include "backend.h"
#include "graph.h"
#include "rng.h"
#include "run.h"
#include "tool.h"
#include "zoo.h"

static const char usage_text[] =
	"usage: bt-train --benchmark --model NAME [--batch-size B] [--input-size S]\n"
	"                [--in-channels C] [--classes K] [--steps N] [--warmup N] [-j T]\n"
	"                [--no-inference] [--profile]\n"
	"       bt-train -h | --help | -V | --version\n";

static const char help_text[] =
	"Train a zoo model. This version times training on synthetic data (--benchmark);\n"
	"training on record files arrives with the next release.\n"
	"\n"
	"      --benchmark       time forward + backward + SGD steps on random data\n"
	"      --model NAME      a zoo model (bt-info --model list)\n"
	"      --batch-size B    images per step (default 32)\n"
	"      --input-size S    input height and width (default: the model's)\n"
	"      --in-channels C   input channels (default 3)\n"
	"      --classes K       classes (default: the model's)\n"
	"      --steps N         timed steps (default 20)\n"
	"      --warmup N        untimed steps first (default 3)\n"
	"  -j, --threads T       threads (default: the number of CPUs)\n"
	"      --no-inference    skip the inference timing\n"
	"      --profile         print the time of each kind of layer (timed steps)\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n"
	"\n"
	"The last line of output is the training images per second.\n"
	"Exit status: 0 success, 1 failure, 2 usage error. See bt-train(1).\n";

enum { OPT_BENCH = 256, OPT_MODEL, OPT_BATCH, OPT_INPUT_SIZE, OPT_IN_CHANNELS, OPT_CLASSES,
       OPT_STEPS, OPT_WARMUP, OPT_NO_INFER, OPT_PROFILE };

static const struct option longopts[] = {
	{"benchmark", no_argument, NULL, OPT_BENCH},
	{"model", required_argument, NULL, OPT_MODEL},
	{"batch-size", required_argument, NULL, OPT_BATCH},
	{"input-size", required_argument, NULL, OPT_INPUT_SIZE},
	{"in-channels", required_argument, NULL, OPT_IN_CHANNELS},
	{"classes", required_argument, NULL, OPT_CLASSES},
	{"steps", required_argument, NULL, OPT_STEPS},
	{"warmup", required_argument, NULL, OPT_WARMUP},
	{"threads", required_argument, NULL, 'j'},
	{"no-inference", no_argument, NULL, OPT_NO_INFER},
	{"profile", no_argument, NULL, OPT_PROFILE},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

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
		     int threads, int inference, int profile)
{
	struct bt_graph g;
	struct bt_backend be = {0};
	struct bt_run *r = NULL;
	float *x = NULL;
	int32_t *labels = NULL;
	size_t nx;
	double t0 = 0, train_s = 0, infer_s = 0, loss = 0;
	int st;

	bt_model_defaults(model, mo);
	bt_graph_init(&g);
	if ((st = bt_model_build(&g, model, mo)) < 0)
		goto fail;
	if ((st = bt_backend_cpu(&be, threads)) < 0)
		goto fail;
	if ((st = bt_run_new(&r, &g, &be, batch)) < 0)
		goto fail;
	if ((st = bt_run_init_params(r, 1, 1)) < 0)
		goto fail;
	nx = (size_t)batch * mo->input_size * mo->input_size * mo->in_channels;
	x = malloc(nx * sizeof *x);
	labels = malloc((size_t)batch * sizeof *labels);
	if (!x || !labels) {
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
	fprintf(stderr, "bt-train: benchmark %s, batch %d, %dx%dx%d, %d classes, %d threads, %s\n", model,
		batch, mo->input_size, mo->input_size, mo->in_channels, mo->classes, threads,
		be.i->describe(be.ctx));
	for (int s = 0; s < warmup + steps; s++) {
		if (s == warmup) {
			t0 = tool_now();
			bt_run_profile(r, profile);
		}
		if ((st = bt_run_forward(r, x, batch, 1, (uint64_t)s)) < 0 ||
		    (st = bt_run_loss(r, labels, NULL, 0.1f, 1, &loss)) < 0 || (st = bt_run_backward(r)) < 0)
			goto fail;
		bt_run_sgd(r, 0.01f, 0.9f, 1e-4f, 1);
	}
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
			if ((st = bt_run_forward(r, x, batch, 0, 0)) < 0)
				goto fail;
		}
		infer_s = tool_now() - t0;
		if (profile)
			print_profile(r, steps, "inference");
	}
	printf("model       %s\n", model);
	printf("batch       %d\n", batch);
	printf("loss        %.4f (last step)\n", loss);
	printf("step        %.2f ms (forward + backward + SGD)\n", 1e3 * train_s / steps);
	if (inference)
		printf("inference   %.1f images/s\n", (double)batch * steps / infer_s);
	printf("activations %zu kB (outputs, gradients and saved state for a batch of %d)\n",
	       bt_run_activation_bytes(r) / 1024, batch);
	printf("peak RSS    %ld kB\n", peak_rss_kb());
	printf("train       images/s\n%.1f\n", (double)batch * steps / train_s);
	bt_run_free(r);
	bt_backend_free(&be);
	bt_graph_free(&g);
	free(x);
	free(labels);
	return 0;
fail:
	bt_run_free(r);
	bt_backend_free(&be);
	bt_graph_free(&g);
	free(x);
	free(labels);
	return tool_fail(st);
}

int main(int argc, char **argv)
{
	struct bt_model_opts mo = {0};
	const char *model = NULL;
	int bench = 0, batch = 32, steps = 20, warmup = 3, threads = tool_ncpus(), infer = 1, profile = 0, c;

	tool_name = "bt-train";
	while ((c = getopt_long(argc, argv, "j:hV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_BENCH: bench = 1; break;
		case OPT_MODEL: model = optarg; break;
		case OPT_BATCH:
			if (tool_parse_int("--batch-size", optarg, 1, 1 << 16, &batch) < 0)
				return 2;
			break;
		case OPT_INPUT_SIZE:
			if (tool_parse_int("--input-size", optarg, 1, 8192, &mo.input_size) < 0)
				return 2;
			break;
		case OPT_IN_CHANNELS:
			if (tool_parse_int("--in-channels", optarg, 1, 64, &mo.in_channels) < 0)
				return 2;
			break;
		case OPT_CLASSES:
			if (tool_parse_int("--classes", optarg, 2, 1000000, &mo.classes) < 0)
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
		case 'j':
			if (tool_parse_int("-j", optarg, 1, 1024, &threads) < 0)
				return 2;
			break;
		case OPT_NO_INFER: infer = 0; break;
		case OPT_PROFILE: profile = 1; break;
		case 'h': fputs(usage_text, stdout); fputs("\n", stdout); fputs(help_text, stdout); return 0;
		case 'V': printf("bt-train %s\n", BT_VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (optind < argc)
		return tool_usage_error("unexpected argument '%s'", argv[optind]);
	if (!bench)
		return tool_usage_error("this version of bt-train only benchmarks (--benchmark); training on record files is not in it yet");
	if (!model)
		return tool_usage_error("--benchmark needs --model NAME (bt-info --model list)");
	return benchmark(model, &mo, batch, steps, warmup, threads, infer, profile);
}
