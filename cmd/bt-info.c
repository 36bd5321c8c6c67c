/* bt-info: describes record files (counts, kinds, sizes, classes), checkpoints (model,
 * classes, normalisation, training state, recipe, tensors), zoo models and the visible CUDA
 * devices, as "key value" text or as one JSON object per file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt.h"
#include "checkpoint.h"
#include "device.h"
#include "graph.h"
#include "record.h"
#include "tool.h"
#include "zoo.h"

static const char usage_text[] =
	"usage: bt-info [--json] FILE...\n"
	"       bt-info --devices [--json]\n"
	"       bt-info --model NAME [--classes K] [--input-size S] [--in-channels C]\n"
	"               [--batch-size B] [--aux] [--json]\n"
	"       bt-info -h | --help | -V | --version\n";

static const char help_text[] =
	"Describe bt record files ('-' reads standard input) and checkpoints, zoo models, or the\n"
	"visible CUDA devices.\n"
	"\n"
	"      --json      one JSON object per file (or for the devices)\n"
	"      --devices   list CUDA devices: name, memory, multiprocessors, compute capability\n"
	"      --model NAME  the layer table, parameters, multiply-adds and activation memory\n"
	"                  of a zoo model ('--model list' names them)\n"
	"      --classes K, --input-size S, --in-channels C, --aux\n"
	"                  model options (defaults: the model's)\n"
	"      --batch-size B  batch for the activation memory (default 1)\n"
	"  -h, --help      show this help\n"
	"  -V, --version   show the version\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error. See bt-info(1).\n";

enum { OPT_MODEL = 256, OPT_CLASSES, OPT_INPUT_SIZE, OPT_IN_CHANNELS, OPT_BATCH, OPT_AUX };

static const struct option longopts[] = {
	{"json", no_argument, NULL, 'j'},
	{"devices", no_argument, NULL, 'd'},
	{"model", required_argument, NULL, OPT_MODEL},
	{"classes", required_argument, NULL, OPT_CLASSES},
	{"input-size", required_argument, NULL, OPT_INPUT_SIZE},
	{"in-channels", required_argument, NULL, OPT_IN_CHANNELS},
	{"batch-size", required_argument, NULL, OPT_BATCH},
	{"aux", no_argument, NULL, OPT_AUX},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct summary {
	uint64_t records, bytes;
	uint64_t kinds[BT_PAYLOAD_MAX + 1];
	uint64_t channels[5];       /* images with 1..4 channels; [0]: other */
	uint64_t images;            /* records with an image shape */
	uint32_t wmin, wmax, hmin, hmax;
	uint64_t *labels;           /* count per label */
	size_t nlabels;
	uint64_t unlabelled;
	uint64_t soft;              /* records with soft labels */
};

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static int add(struct summary *s, const struct bt_record *rec)
{
	s->records++;
	s->kinds[rec->kind]++;
	if (rec->nsoft)
		s->soft++;
	if (rec->kind <= BT_PAYLOAD_RAW && rec->ndim == 3) {
		uint32_t h = rec->shape[0], w = rec->shape[1], c = rec->shape[2];
		if (s->images == 0 || w < s->wmin) s->wmin = w;
		if (s->images == 0 || h < s->hmin) s->hmin = h;
		if (w > s->wmax) s->wmax = w;
		if (h > s->hmax) s->hmax = h;
		s->channels[c >= 1 && c <= 4 ? c : 0]++;
		s->images++;
	}
	if (rec->label < 0) {
		s->unlabelled++;
	} else {
		size_t l = (size_t)rec->label;
		if (l >= s->nlabels) {
			size_t n = s->nlabels ? s->nlabels : 16;
			uint64_t *g;
			while (n <= l)
				n *= 2;
			if (!(g = realloc(s->labels, n * sizeof *g)))
				return bt_error(BT_ERR_NOMEM, "out of memory");
			memset(g + s->nlabels, 0, (n - s->nlabels) * sizeof *g);
			s->labels = g;
			s->nlabels = n;
		}
		s->labels[l]++;
	}
	return BT_OK;
}

/* Number of classes: the footer's names, or one past the largest label seen. */
static size_t nclasses(const struct summary *s, const bt_record_reader *r)
{
	size_t n = bt_record_reader_nclasses(r);
	for (size_t l = s->nlabels; l > n; l--)
		if (s->labels[l - 1])
			return l;
	return n;
}

static void print_text(const char *file, const struct summary *s, const bt_record_reader *r)
{
	size_t nc = nclasses(s, r);
	const char *sep = "";
	printf("file       %s\n", file);
	printf("records    %llu\n", (unsigned long long)s->records);
	printf("bytes      %llu\n", (unsigned long long)s->bytes);
	printf("footer     %s\n", bt_record_reader_has_footer(r) ? "present" : bt_record_reader_footer_problem(r));
	printf("kinds      ");
	for (int k = 1; k <= BT_PAYLOAD_MAX; k++) {
		if (s->kinds[k]) {
			printf("%s%s %llu", sep, bt_payload_name(k), (unsigned long long)s->kinds[k]);
			sep = ", ";
		}
	}
	printf("%s\n", s->records ? "" : "none");
	if (s->images) {
		printf("width      %u..%u\n", s->wmin, s->wmax);
		printf("height     %u..%u\n", s->hmin, s->hmax);
		printf("channels   ");
		sep = "";
		for (int c = 1; c <= 4; c++) {
			if (s->channels[c]) {
				printf("%s%d: %llu", sep, c, (unsigned long long)s->channels[c]);
				sep = ", ";
			}
		}
		putchar('\n');
	}
	if (s->soft)
		printf("soft       %llu records with soft labels\n", (unsigned long long)s->soft);
	printf("classes    %zu\n", nc);
	int width = 1;
	for (size_t l = 0; l < nc; l++) {
		const char *name = bt_record_reader_class(r, (uint32_t)l);
		if (name && (int)strlen(name) > width)
			width = (int)strlen(name);
	}
	for (size_t l = 0; l < nc; l++) {
		const char *name = bt_record_reader_class(r, (uint32_t)l);
		printf("class %-4zu %-*s  %llu\n", l, width, name ? name : "-",
		       (unsigned long long)(l < s->nlabels ? s->labels[l] : 0));
	}
	if (s->unlabelled)
		printf("unlabelled %llu\n", (unsigned long long)s->unlabelled);
}

static void print_json(const char *file, const struct summary *s, const bt_record_reader *r)
{
	size_t nc = nclasses(s, r);
	const char *sep = "";
	printf("{\"file\":");
	json_str(file);
	printf(",\"records\":%llu,\"bytes\":%llu,\"footer\":%s,\"kinds\":{", (unsigned long long)s->records,
	       (unsigned long long)s->bytes, bt_record_reader_has_footer(r) ? "true" : "false");
	for (int k = 1; k <= BT_PAYLOAD_MAX; k++) {
		if (s->kinds[k]) {
			printf("%s\"%s\":%llu", sep, bt_payload_name(k), (unsigned long long)s->kinds[k]);
			sep = ",";
		}
	}
	printf("}");
	if (s->images)
		printf(",\"width\":{\"min\":%u,\"max\":%u},\"height\":{\"min\":%u,\"max\":%u}", s->wmin,
		       s->wmax, s->hmin, s->hmax);
	printf(",\"channels\":{");
	sep = "";
	for (int c = 1; c <= 4; c++) {
		if (s->channels[c]) {
			printf("%s\"%d\":%llu", sep, c, (unsigned long long)s->channels[c]);
			sep = ",";
		}
	}
	printf("},\"soft\":%llu,\"classes\":[", (unsigned long long)s->soft);
	for (size_t l = 0; l < nc; l++) {
		const char *name = bt_record_reader_class(r, (uint32_t)l);
		printf("%s{\"label\":%zu,\"name\":", l ? "," : "", l);
		if (name)
			json_str(name);
		else
			printf("null");
		printf(",\"count\":%llu}", (unsigned long long)(l < s->nlabels ? s->labels[l] : 0));
	}
	printf("],\"unlabelled\":%llu}\n", (unsigned long long)s->unlabelled);
}

static int info_file(const char *file, int json)
{
	bt_record_reader *r;
	struct bt_record rec;
	struct summary s;
	int st;

	memset(&s, 0, sizeof s);
	if ((st = bt_record_reader_open(&r, file)) < 0)
		return tool_fail(st);
	while ((st = bt_record_reader_next(r, &rec)) > 0)
		if ((st = add(&s, &rec)) < 0)
			break;
	if (st < 0) {
		tool_fail(st);
		bt_record_reader_close(r);
		free(s.labels);
		return 1;
	}
	s.bytes = bt_record_reader_offset(r);
	if (bt_record_reader_has_footer(r) && strcmp(file, "-") != 0) {
		/* The reader stops at the footer of a seekable file; count the whole file. */
		FILE *fp = fopen(file, "rb");
		if (fp && fseeko(fp, 0, SEEK_END) == 0)
			s.bytes = (uint64_t)ftello(fp);
		if (fp)
			fclose(fp);
	}
	if (json)
		print_json(strcmp(file, "-") == 0 ? "-" : file, &s, r);
	else
		print_text(file, &s, r);
	bt_record_reader_close(r);
	free(s.labels);
	return 0;
}

/* ---- checkpoints */

/* A checkpoint by its magic; anything else (a record file, standard input) is left to the
 * record reader, whose errors name the file. */
static int is_checkpoint(const char *file)
{
	static const uint8_t magic[8] = {0x89, 'B', 'T', 'C', '\r', '\n', 0x1a, '\n'};
	uint8_t b[8];
	size_t n;
	FILE *fp;

	if (strcmp(file, "-") == 0 || !(fp = fopen(file, "rb")))
		return 0;
	n = fread(b, 1, sizeof b, fp);
	fclose(fp);
	return n >= 4 && memcmp(b, magic, n) == 0;
}

static int is_momentum(const char *name)
{
	return strncmp(name, "momentum/", 9) == 0;
}

static int is_statistic(const char *name)
{
	size_t n = strlen(name);
	return (n >= 13 && strcmp(name + n - 13, ".running_mean") == 0) ||
	       (n >= 12 && strcmp(name + n - 12, ".running_var") == 0);
}

/* Trainable parameters: the elements of every tensor but momentum and running statistics
 * (the count bt-info --model gives). */
static uint64_t ckpt_parameters(const struct bt_ckpt *c, size_t *nmomentum)
{
	uint64_t n = 0;
	*nmomentum = 0;
	for (size_t i = 0; i < c->ntensors; i++) {
		const struct bt_ckpt_tensor *t = &c->tensors[i];
		if (is_momentum(t->name)) {
			(*nmomentum)++;
		} else if (!is_statistic(t->name)) {
			uint64_t e = 1;
			for (int d = 0; d < t->ndim; d++)
				e *= t->shape[d];
			n += e;
		}
	}
	return n;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++)
		if (*s == '\n' || s[1] == 0)
			n++;
	return n;
}

static void ckpt_text(const char *file, const struct bt_ckpt *c)
{
	const char *model = bt_ckpt_get(c, BT_CKPT_SPEC, "model");
	const char *size = bt_ckpt_get(c, BT_CKPT_SPEC, "input_size");
	const char *chans = bt_ckpt_get(c, BT_CKPT_SPEC, "in_channels");
	const char *classes = bt_ckpt_get(c, BT_CKPT_SPEC, "classes");
	const char *epoch = bt_ckpt_get(c, BT_CKPT_STATE, "epoch");
	const char *epochs = bt_ckpt_get(c, BT_CKPT_STATE, "epochs");
	const char *complete = bt_ckpt_get(c, BT_CKPT_STATE, "complete");
	const char *best = bt_ckpt_get(c, BT_CKPT_STATE, "best_top1");
	const char *best_epoch = bt_ckpt_get(c, BT_CKPT_STATE, "best_epoch");
	const char *v;
	size_t nmom;
	uint64_t params = ckpt_parameters(c, &nmom);
	size_t nlines = count_lines(c->metrics);

	printf("file       %s\n", file);
	printf("format     bt-checkpoint, version %d\n", BT_CKPT_VERSION);
	printf("bytes      %zu\n", c->file_size);
	printf("model      %s\n", model ? model : "-");
	if (size)
		printf("input      %sx%s%s%s\n", size, size, chans ? "x" : "", chans ? chans : "");
	if (classes)
		printf("classes    %s\n", classes);
	else
		printf("classes    %u\n", c->nclasses);
	for (uint32_t i = 0; i < c->nclasses; i++)
		printf("class %-4u %s\n", i, c->classes[i]);
	if ((v = bt_ckpt_get(c, BT_CKPT_SPEC, "mean")))
		printf("mean       %s\n", v);
	if ((v = bt_ckpt_get(c, BT_CKPT_SPEC, "std")))
		printf("std        %s\n", v);
	if ((v = bt_ckpt_get(c, BT_CKPT_SPEC, "crop_ratio")))
		printf("crop ratio %s\n", v);
	if ((v = bt_ckpt_get(c, BT_CKPT_SPEC, "resize")) && strcmp(v, "0") != 0)
		printf("resize     %s\n", v);
	if (epoch)
		printf("epoch      %s%s%s\n", epoch, epochs ? " of " : "", epochs ? epochs : "");
	if ((v = bt_ckpt_get(c, BT_CKPT_STATE, "iteration")))
		printf("iteration  %s\n", v);
	if (complete)
		printf("complete   %s\n", strcmp(complete, "1") == 0 ? "yes" : "no");
	if (best) {
		if (best[0] == '-')
			printf("best top-1 none\n");
		else
			printf("best top-1 %s%s%s%s\n", best, best_epoch ? " (epoch " : "",
			       best_epoch ? best_epoch : "", best_epoch ? ")" : "");
	}
	printf("tensors    %zu (%zu momentum)\n", c->ntensors, nmom);
	printf("parameters %llu\n", (unsigned long long)params);
	printf("metrics    %zu line%s\n", nlines, nlines == 1 ? "" : "s");
	for (size_t i = 0; i < c->nkv[BT_CKPT_RECIPE]; i++)
		printf("recipe     %s=%s\n", c->kv[BT_CKPT_RECIPE][i].key, c->kv[BT_CKPT_RECIPE][i].value);
}

static void json_kv(const struct bt_ckpt *c, int section)
{
	printf("{");
	for (size_t i = 0; i < c->nkv[section]; i++) {
		printf("%s", i ? "," : "");
		json_str(c->kv[section][i].key);
		putchar(':');
		json_str(c->kv[section][i].value);
	}
	printf("}");
}

static void ckpt_json(const char *file, const struct bt_ckpt *c)
{
	size_t nmom;
	uint64_t params = ckpt_parameters(c, &nmom);

	printf("{\"file\":");
	json_str(file);
	printf(",\"format\":\"bt-checkpoint\",\"version\":%d,\"size\":%zu,\"spec\":", BT_CKPT_VERSION,
	       c->file_size);
	json_kv(c, BT_CKPT_SPEC);
	printf(",\"state\":");
	json_kv(c, BT_CKPT_STATE);
	printf(",\"recipe\":");
	json_kv(c, BT_CKPT_RECIPE);
	printf(",\"classes\":[");
	for (uint32_t i = 0; i < c->nclasses; i++) {
		printf("%s", i ? "," : "");
		json_str(c->classes[i]);
	}
	printf("],\"parameters\":%llu,\"tensors\":[", (unsigned long long)params);
	for (size_t i = 0; i < c->ntensors; i++) {
		const struct bt_ckpt_tensor *t = &c->tensors[i];
		printf("%s{\"name\":", i ? "," : "");
		json_str(t->name);
		printf(",\"dtype\":\"%s\",\"shape\":[", bt_dtype_name(t->dtype));
		for (int d = 0; d < t->ndim; d++)
			printf("%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
		printf("]}");
	}
	printf("],\"metrics_lines\":%zu}\n", count_lines(c->metrics));
}

static int info_checkpoint(const char *file, int json)
{
	struct bt_ckpt c;
	int st = bt_ckpt_read(&c, file);
	if (st < 0)
		return tool_fail(st);
	if (json)
		ckpt_json(file, &c);
	else
		ckpt_text(file, &c);
	bt_ckpt_free(&c);
	return 0;
}

static int devices(int json)
{
	char reason[256] = "", rt[32], drv[32];
	int n = 0, rc = 0;

	bt_cuda_device_count(&n, reason, sizeof reason);
	bt_cuda_versions(rt, drv, sizeof rt);
	if (json)
		printf("{\"cuda_compiled\":%s,\"runtime\":\"%s\",\"driver\":\"%s\",\"devices\":[",
		       bt_cuda_compiled() ? "true" : "false", rt, drv);
	for (int i = 0; i < n; i++) {
		struct bt_device_info d;
		int st = bt_cuda_device_info(i, &d);
		if (st < 0) {
			tool_fail(st);
			rc = 1;
			continue;
		}
		if (json) {
			printf("%s{\"index\":%d,\"name\":", i ? "," : "", d.index);
			json_str(d.name);
			printf(",\"memory_bytes\":%llu,\"multiprocessors\":%d,\"compute_capability\":\"%d.%d\"}",
			       (unsigned long long)d.memory_bytes, d.multiprocessors, d.major, d.minor);
		} else {
			printf("cuda:%d  %s  %.1f GiB  %d SMs  compute %d.%d\n", d.index, d.name,
			       (double)d.memory_bytes / (1024.0 * 1024 * 1024), d.multiprocessors, d.major,
			       d.minor);
		}
	}
	if (json) {
		printf("]");
		if (n == 0) {
			printf(",\"reason\":");
			json_str(reason);
		}
		printf("}\n");
	} else if (n == 0) {
		printf("no CUDA device: %s\n", reason);
	}
	return rc;
}

static void shape_str(const struct bt_shape *s, char *buf, size_t len)
{
	snprintf(buf, len, "%dx%dx%d", s->h, s->w, s->c);
}

static int model_info(const char *name, struct bt_model_opts *mo, int batch, int json)
{
	struct bt_graph g;
	uint64_t params, macs, act;
	int st;

	if (strcmp(name, "list") == 0) {
		for (const char *const *n = bt_model_names(); *n; n++)
			printf("%s\n", *n);
		return 0;
	}
	bt_model_defaults(name, mo);
	bt_graph_init(&g);
	if ((st = bt_model_build(&g, name, mo)) < 0) {
		bt_graph_free(&g);
		return tool_fail(st);
	}
	params = bt_graph_trainable(&g);
	macs = bt_graph_macs(&g);
	act = bt_graph_activation_bytes(&g, batch);
	if (json) {
		printf("{\"model\":");
		json_str(name);
		printf(",\"input\":[%d,%d,%d],\"classes\":%d,\"parameters\":%llu,\"macs\":%llu,"
		       "\"batch\":%d,\"activation_bytes\":%llu,\"layers\":[",
		       mo->input_size, mo->input_size, mo->in_channels, mo->classes,
		       (unsigned long long)params, (unsigned long long)macs, batch, (unsigned long long)act);
		for (int i = 0; i < g.nnodes; i++) {
			const struct bt_node *n = &g.nodes[i];
			printf("%s{\"name\":", i ? "," : "");
			json_str(n->name);
			printf(",\"op\":\"%s\",\"output\":[%d,%d,%d],\"params\":%llu,\"macs\":%llu}",
			       bt_op_name(n->op), n->out.h, n->out.w, n->out.c,
			       (unsigned long long)bt_graph_node_params(&g, i),
			       (unsigned long long)bt_graph_node_macs(&g, i));
		}
		printf("]}\n");
	} else {
		char b[32];
		printf("%-5s %-36s %-15s %-12s %12s %14s\n", "#", "name", "op", "output", "params", "MACs");
		for (int i = 0; i < g.nnodes; i++) {
			const struct bt_node *n = &g.nodes[i];
			char sh[48];
			shape_str(&n->out, sh, sizeof sh);
			printf("%-5d %-36s %-15s %-12s %12llu %14llu\n", i, n->name, bt_op_name(n->op), sh,
			       (unsigned long long)bt_graph_node_params(&g, i),
			       (unsigned long long)bt_graph_node_macs(&g, i));
		}
		printf("model       %s\n", name);
		printf("input       %dx%dx%d\n", mo->input_size, mo->input_size, mo->in_channels);
		printf("classes     %d\n", mo->classes);
		printf("layers      %d\n", g.nnodes);
		printf("parameters  %llu\n", (unsigned long long)params);
		printf("macs        %llu (%.2f G)\n", (unsigned long long)macs, (double)macs / 1e9);
		printf("activations %llu bytes (%s) for a batch of %d, float32, every layer's output\n",
		       (unsigned long long)act, tool_bytes(act, b, sizeof b), batch);
	}
	bt_graph_free(&g);
	return 0;
}

int main(int argc, char **argv)
{
	struct bt_model_opts mo = {0};
	const char *model = NULL;
	int json = 0, devs = 0, c, rc = 0, batch = 1;

	tool_name = "bt-info";
	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'd': devs = 1; break;
		case OPT_MODEL: model = optarg; break;
		case OPT_CLASSES:
			if (tool_parse_int("--classes", optarg, 2, 1000000, &mo.classes) < 0)
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
		case OPT_BATCH:
			if (tool_parse_int("--batch-size", optarg, 1, 1 << 20, &batch) < 0)
				return 2;
			break;
		case OPT_AUX: mo.aux = 1; break;
		case 'h': fputs(usage_text, stdout); fputs("\n", stdout); fputs(help_text, stdout); return 0;
		case 'V': printf("bt-info %s\n", BT_VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (devs) {
		if (argc || model)
			return tool_usage_error("--devices takes no FILE and no --model");
		return devices(json);
	}
	if (model) {
		if (argc)
			return tool_usage_error("--model takes no FILE");
		return model_info(model, &mo, batch, json);
	}
	if (argc < 1)
		return tool_usage_error("no FILE given");
	for (int i = 0; i < argc; i++) {
		if (i && !json)
			putchar('\n');
		if (is_checkpoint(argv[i]) ? info_checkpoint(argv[i], json) : info_file(argv[i], json))
			rc = 1;
	}
	return rc;
}
