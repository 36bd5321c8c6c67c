/* bt-aug: the paper's training and evaluation augmentation as a pipeline stage. Reads a
 * record file or stream, writes augmented records (uint8 pixels or normalised tensors,
 * labels and ids kept), or a contact sheet that shows what training sees. The work is in
 * lib/loader.c and lib/augment.c. */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "bt.h"
#include "image.h"
#include "loader.h"
#include "outfile.h"
#include "record.h"
#include "tool.h"

static const char usage_text[] =
	"usage: bt-aug [-q] [-j N] [--mode train|eval] [--input-size N] [--resize N]\n"
	"              [--crop-ratio R] [--min-area A] [--max-area A] [--min-aspect R]\n"
	"              [--max-aspect R] [--pad P] [--jitter J] [--lighting L] [--no-flip]\n"
	"              [--erase P] [--erase-min-area A] [--erase-max-area A]\n"
	"              [--erase-min-aspect R] [--erase-max-aspect R]\n"
	"              [--mean M[,M,M]] [--std S[,S,S]] [--format u8|f32|f16] [--seed S]\n"
	"              [--epoch E] [--epochs N] [--shuffle] [--limit N] [--skip-bad]\n"
	"              [-o OUT] [IN]\n"
	"       bt-aug --preview OUT.jpg [--grid RxC] [options] IN\n"
	"       bt-aug -h | --help | -V | --version\n";

static const char help_text[] =
	"Augment the images of a record file (IN, or '-' for standard input, the default)\n"
	"with the transforms of the Bag of Tricks paper, and write records to OUT\n"
	"(default: standard output).\n"
	"\n"
	"  -o, --output OUT      write OUT ('-' for standard output)\n"
	"      --mode M          train (default) or eval\n"
	"      --input-size N    output height and width (default 224)\n"
	"      --resize N        eval: resize the shorter side to N (default size/crop-ratio)\n"
	"      --crop-ratio R    eval: crop fraction (default 0.875)\n"
	"      --min-area A      train: smallest crop area fraction (default 0.08)\n"
	"      --max-area A      train: largest crop area fraction (default 1)\n"
	"      --min-aspect R    train: smallest crop aspect ratio (default 0.75)\n"
	"      --max-aspect R    train: largest crop aspect ratio (default 1.3333)\n"
	"      --pad P           train: instead, a random crop of the image padded with P\n"
	"                        black pixels (CIFAR style; default: the resized crop)\n"
	"      --jitter J        train: brightness/contrast/saturation range (default 0.4)\n"
	"      --lighting L      train: PCA lighting noise std (default 0.1)\n"
	"      --no-flip         train: no horizontal flips\n"
	"      --erase P         train: random erasing with probability P (default 0: off)\n"
	"      --erase-min-area A, --erase-max-area A\n"
	"                        train: erased area fraction (default 0.02 to 0.33)\n"
	"      --erase-min-aspect R, --erase-max-aspect R\n"
	"                        train: erased aspect, height/width (default 0.3 to 3.3)\n"
	"      --mean M[,M,M]    normalisation mean (default 123.68,116.779,103.939)\n"
	"      --std S[,S,S]     normalisation std (default 58.393,57.12,57.375)\n"
	"      --format F        u8 (default; no normalisation), f32 or f16\n"
	"      --seed S          random seed (default 0)\n"
	"      --epoch E         number of the first epoch (default 0)\n"
	"      --epochs N        emit N epochs (default 1)\n"
	"      --shuffle         a new random order each epoch\n"
	"      --limit N         at most N records per epoch\n"
	"  -j, --threads N       worker threads (default: the number of CPUs)\n"
	"      --skip-bad        skip undecodable images with a warning\n"
	"      --preview OUT.jpg write a contact sheet instead: a row per image, a column\n"
	"                        per augmented draw\n"
	"      --grid RxC        preview rows and columns (default 8x8)\n"
	"  -q, --quiet           no progress bar and no summary\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error. See bt-aug(1).\n";

enum {
	OPT_MODE = 256, OPT_INPUT_SIZE, OPT_RESIZE, OPT_CROP_RATIO, OPT_MIN_AREA, OPT_MAX_AREA,
	OPT_MIN_ASPECT, OPT_MAX_ASPECT, OPT_JITTER, OPT_LIGHTING, OPT_NO_FLIP, OPT_MEAN, OPT_STD,
	OPT_FORMAT, OPT_SEED, OPT_EPOCH, OPT_EPOCHS, OPT_SHUFFLE, OPT_LIMIT, OPT_SKIP_BAD,
	OPT_PREVIEW, OPT_GRID, OPT_ERASE, OPT_ERASE_MIN_AREA, OPT_ERASE_MAX_AREA,
	OPT_ERASE_MIN_ASPECT, OPT_ERASE_MAX_ASPECT, OPT_PAD,
};

static const struct option longopts[] = {
	{"output", required_argument, NULL, 'o'},
	{"mode", required_argument, NULL, OPT_MODE},
	{"input-size", required_argument, NULL, OPT_INPUT_SIZE},
	{"resize", required_argument, NULL, OPT_RESIZE},
	{"crop-ratio", required_argument, NULL, OPT_CROP_RATIO},
	{"min-area", required_argument, NULL, OPT_MIN_AREA},
	{"max-area", required_argument, NULL, OPT_MAX_AREA},
	{"min-aspect", required_argument, NULL, OPT_MIN_ASPECT},
	{"max-aspect", required_argument, NULL, OPT_MAX_ASPECT},
	{"jitter", required_argument, NULL, OPT_JITTER},
	{"lighting", required_argument, NULL, OPT_LIGHTING},
	{"no-flip", no_argument, NULL, OPT_NO_FLIP},
	{"pad", required_argument, NULL, OPT_PAD},
	{"erase", required_argument, NULL, OPT_ERASE},
	{"erase-min-area", required_argument, NULL, OPT_ERASE_MIN_AREA},
	{"erase-max-area", required_argument, NULL, OPT_ERASE_MAX_AREA},
	{"erase-min-aspect", required_argument, NULL, OPT_ERASE_MIN_ASPECT},
	{"erase-max-aspect", required_argument, NULL, OPT_ERASE_MAX_ASPECT},
	{"mean", required_argument, NULL, OPT_MEAN},
	{"std", required_argument, NULL, OPT_STD},
	{"format", required_argument, NULL, OPT_FORMAT},
	{"seed", required_argument, NULL, OPT_SEED},
	{"epoch", required_argument, NULL, OPT_EPOCH},
	{"epochs", required_argument, NULL, OPT_EPOCHS},
	{"shuffle", no_argument, NULL, OPT_SHUFFLE},
	{"limit", required_argument, NULL, OPT_LIMIT},
	{"threads", required_argument, NULL, 'j'},
	{"skip-bad", no_argument, NULL, OPT_SKIP_BAD},
	{"preview", required_argument, NULL, OPT_PREVIEW},
	{"grid", required_argument, NULL, OPT_GRID},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static void report_skips(const struct bt_batch *b)
{
	for (uint32_t i = 0; i < b->skipped; i++) {
		tool_progress_end();
		tool_err("skipped %s", b->skip_msgs[i]);
	}
}

static int copy_classes(bt_loader *l, bt_record_writer *w)
{
	uint32_t n = bt_loader_nclasses(l);
	const char **names;
	int st;
	if (!n)
		return BT_OK;
	if (!(names = calloc(n, sizeof *names)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++)
		names[i] = bt_loader_class(l, i);
	st = bt_record_writer_set_classes(w, n, names);
	free(names);
	return st;
}

static int augment(const char *in, const char *out, const struct bt_loader_opts *lo, int quiet)
{
	bt_loader *l = NULL;
	bt_record_writer *w = NULL;
	const struct bt_batch *b;
	uint64_t written = 0, skipped = 0;
	double t0 = tool_now();
	int st;

	if (strcmp(out, "-") == 0 && isatty(1))
		return tool_usage_error("refusing to write binary records to a terminal; give -o FILE or use a pipe");
	if ((st = bt_loader_open(&l, in, lo)) < 0)
		return tool_fail(st);
	if ((st = bt_record_writer_open(&w, out)) < 0)
		goto fail;
	bt_record_writer_set_sync(w, 0);
	while ((st = bt_loader_next(l, &b)) > 0) {
		report_skips(b);
		skipped += b->skipped;
		for (uint32_t i = 0; i < b->n; i++) {
			struct bt_record rec;
			bt_batch_record(b, i, &rec);
			if ((st = bt_record_writer_put_crc(w, &rec, b->crc[i])) < 0)
				goto fail;
			written++;
		}
		if (!quiet) {
			char extra[64];
			double dt = tool_now() - t0;
			uint64_t total = bt_loader_records(l) * lo->epochs;
			snprintf(extra, sizeof extra, "%.0f images/s", dt > 0 ? (double)written / dt : 0.0);
			tool_progress(written + skipped, total ? total : written + skipped, extra);
		}
	}
	if (st < 0)
		goto fail;
	if ((st = copy_classes(l, w)) < 0)
		goto fail;
	st = bt_record_writer_commit(w);
	w = NULL;
	if (st < 0)
		goto fail;
	tool_progress_end();
	if (!quiet) {
		double dt = tool_now() - t0;
		fprintf(stderr, "bt-aug: wrote %llu records (%llu skipped) in %.2f s (%.0f images/s)\n",
			(unsigned long long)written, (unsigned long long)skipped, dt,
			dt > 0 ? (double)written / dt : 0.0);
	}
	bt_loader_close(l);
	return 0;
fail:
	tool_progress_end();
	bt_record_writer_abort(w);
	bt_loader_close(l);
	if (tool_interrupted) {
		tool_err("interrupted; no output written");
		return 1;
	}
	return tool_fail(st);
}

/* Writes a JPEG file through a temporary name (or straight into a device or pipe). */
static int write_file(const char *path, const uint8_t *data, size_t n)
{
	struct bt_outfile o;
	int st = bt_outfile_open(&o, path);
	if (st < 0)
		return st;
	if (fwrite(data, 1, n, o.fp) != n) {
		st = bt_error_errno("cannot write '%s'", path);
		bt_outfile_abort(&o);
		return st;
	}
	return bt_outfile_commit(&o, 0);
}

/* Contact sheet: row r is record r, column c the draw of epoch c (training mode) or the
 * evaluation view. Always uint8. */
static int preview(const char *in, const char *out, struct bt_loader_opts lo, int rows, int cols, int quiet)
{
	bt_loader *l = NULL;
	const struct bt_batch *b;
	struct bt_image sheet = {0};
	uint8_t *jpg = NULL;
	size_t n = 0;
	uint64_t k = 0;
	int st;
	uint32_t S = lo.aug.size;

	lo.aug.format = BT_AUG_U8;
	lo.epochs = lo.aug.train ? (uint64_t)cols : 1;
	lo.limit = (uint64_t)rows;
	lo.shuffle = 0;
	lo.batch = 1;
	if ((st = bt_loader_open(&l, in, &lo)) < 0)
		return tool_fail(st);
	while ((st = bt_loader_next(l, &b)) > 0) {
		report_skips(b);
		if (b->n == 0) {
			k++;
			continue;
		}
		if (!sheet.pixels) {
			sheet.width = S * (uint32_t)cols;
			sheet.height = S * (uint32_t)rows;
			sheet.channels = b->channels;
			sheet.pixels = calloc((size_t)sheet.width * sheet.height * sheet.channels, 1);
			if (!sheet.pixels) {
				st = bt_error(BT_ERR_NOMEM, "out of memory for a %ux%u preview", sheet.width, sheet.height);
				break;
			}
		}
		/* Training: epoch c gives column c for every row. Evaluation: one view per
		 * image, repeated across the row. */
		uint64_t r = k % (uint64_t)rows, c0 = lo.aug.train ? k / (uint64_t)rows : 0;
		for (uint64_t c = c0; c < (lo.aug.train ? c0 + 1 : (uint64_t)cols); c++)
			for (uint32_t y = 0; y < S; y++)
				memcpy(sheet.pixels + (((size_t)r * S + y) * sheet.width + (size_t)c * S) * sheet.channels,
				       (const uint8_t *)b->data + (size_t)y * S * b->channels,
				       (size_t)S * b->channels);
		k++;
	}
	if (st == 0 && !sheet.pixels)
		st = bt_error(BT_ERR_FORMAT, "%s: no images to preview", in);
	if (st == 0 && (st = bt_image_encode_jpeg(&sheet, 90, &jpg, &n)) == 0)
		st = write_file(out, jpg, n);
	bt_loader_close(l);
	free(jpg);
	bt_image_free(&sheet);
	if (st < 0)
		return tool_fail(st);
	if (!quiet)
		tool_err("wrote %s: %dx%d grid of %ux%u images (%ux%u pixels)", out, rows, cols, S, S,
		 S * (uint32_t)cols, S * (uint32_t)rows);
	return 0;
}

int main(int argc, char **argv)
{
	struct bt_loader_opts lo = {0};
	/* Options are recorded for both modes and the chosen one is taken at the end, so their
	 * order on the command line does not matter. */
	struct bt_aug_params train, eval;
	const char *out = "-", *in = "-", *preview_out = NULL;
	int mode_train = 1, quiet = 0, rows = 8, cols = 8, pad, c;
	uint64_t u;
	double d;

	tool_name = "bt-aug";
	bt_aug_defaults(&train, 1);
	bt_aug_defaults(&eval, 0);
	lo.threads = tool_ncpus();
	lo.batch = 1;
	lo.epochs = 1;
	lo.record_crc = 1;
	while ((c = getopt_long(argc, argv, "o:j:qhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case OPT_MODE:
			if (strcmp(optarg, "train") == 0)
				mode_train = 1;
			else if (strcmp(optarg, "eval") == 0)
				mode_train = 0;
			else
				return tool_usage_error("--mode takes train or eval, not '%s'", optarg);
			break;
		case OPT_INPUT_SIZE:
			if (tool_parse_u64("--input-size", optarg, 1, 8192, &u) < 0)
				return 2;
			train.size = eval.size = (uint32_t)u;
			break;
		case OPT_RESIZE:
			if (tool_parse_u64("--resize", optarg, 1, 65535, &u) < 0)
				return 2;
			eval.resize = (uint32_t)u;
			break;
		case OPT_CROP_RATIO:
			if (tool_parse_double("--crop-ratio", optarg, 1e-3, 1, &d) < 0)
				return 2;
			eval.crop_ratio = d;
			break;
		case OPT_MIN_AREA:
			if (tool_parse_double("--min-area", optarg, 1e-6, 1, &train.min_area) < 0)
				return 2;
			break;
		case OPT_MAX_AREA:
			if (tool_parse_double("--max-area", optarg, 1e-6, 1, &train.max_area) < 0)
				return 2;
			break;
		case OPT_MIN_ASPECT:
			if (tool_parse_double("--min-aspect", optarg, 1e-3, 1e3, &train.min_aspect) < 0)
				return 2;
			break;
		case OPT_MAX_ASPECT:
			if (tool_parse_double("--max-aspect", optarg, 1e-3, 1e3, &train.max_aspect) < 0)
				return 2;
			break;
		case OPT_JITTER:
			if (tool_parse_double("--jitter", optarg, 0, 1, &train.jitter) < 0)
				return 2;
			break;
		case OPT_LIGHTING:
			if (tool_parse_double("--lighting", optarg, 0, 10, &train.lighting) < 0)
				return 2;
			break;
		case OPT_NO_FLIP: train.flip = 0; break;
		case OPT_PAD:
			if (tool_parse_int("--pad", optarg, 0, 65535, &pad) < 0)
				return 2;
			train.pad = pad;
			break;
		case OPT_ERASE:
			if (tool_parse_double("--erase", optarg, 0, 1, &train.erase) < 0)
				return 2;
			break;
		case OPT_ERASE_MIN_AREA:
			if (tool_parse_double("--erase-min-area", optarg, 1e-6, 1, &train.erase_min_area) < 0)
				return 2;
			break;
		case OPT_ERASE_MAX_AREA:
			if (tool_parse_double("--erase-max-area", optarg, 1e-6, 1, &train.erase_max_area) < 0)
				return 2;
			break;
		case OPT_ERASE_MIN_ASPECT:
			if (tool_parse_double("--erase-min-aspect", optarg, 1e-3, 1e3, &train.erase_min_aspect) < 0)
				return 2;
			break;
		case OPT_ERASE_MAX_ASPECT:
			if (tool_parse_double("--erase-max-aspect", optarg, 1e-3, 1e3, &train.erase_max_aspect) < 0)
				return 2;
			break;
		case OPT_MEAN:
			if (tool_parse_triple("--mean", optarg, train.mean, 0) < 0)
				return 2;
			memcpy(eval.mean, train.mean, sizeof eval.mean);
			break;
		case OPT_STD:
			if (tool_parse_triple("--std", optarg, train.std, 1) < 0)
				return 2;
			memcpy(eval.std, train.std, sizeof eval.std);
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "u8") == 0)
				train.format = BT_AUG_U8;
			else if (strcmp(optarg, "f32") == 0)
				train.format = BT_AUG_F32;
			else if (strcmp(optarg, "f16") == 0)
				train.format = BT_AUG_F16;
			else
				return tool_usage_error("--format takes u8, f32 or f16, not '%s'", optarg);
			eval.format = train.format;
			break;
		case OPT_SEED:
			if (tool_parse_u64("--seed", optarg, 0, UINT64_MAX, &lo.seed) < 0)
				return 2;
			break;
		case OPT_EPOCH:
			if (tool_parse_u64("--epoch", optarg, 0, UINT64_MAX / 2, &lo.epoch) < 0)
				return 2;
			break;
		case OPT_EPOCHS:
			if (tool_parse_u64("--epochs", optarg, 1, 1000000, &lo.epochs) < 0)
				return 2;
			break;
		case OPT_SHUFFLE: lo.shuffle = 1; break;
		case OPT_LIMIT:
			if (tool_parse_u64("--limit", optarg, 1, UINT64_MAX, &lo.limit) < 0)
				return 2;
			break;
		case 'j':
			if (tool_parse_int("-j", optarg, 1, 1024, &lo.threads) < 0)
				return 2;
			break;
		case OPT_SKIP_BAD: lo.skip_bad = 1; break;
		case OPT_PREVIEW: preview_out = optarg; break;
		case OPT_GRID:
			if (sscanf(optarg, "%dx%d", &rows, &cols) != 2 || rows < 1 || cols < 1 || rows > 64 ||
			    cols > 64 || strspn(optarg, "0123456789x") != strlen(optarg))
				return tool_usage_error("--grid takes ROWSxCOLUMNS from 1x1 to 64x64, not '%s'", optarg);
			break;
		case 'q': quiet = 1; break;
		case 'h': fputs(usage_text, stdout); fputs("\n", stdout); fputs(help_text, stdout); return 0;
		case 'V': printf("bt-aug %s\n", BT_VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 1)
		return tool_usage_error("one input at most (give a file or '-')");
	if (argc == 1)
		in = argv[0];
	lo.aug = mode_train ? train : eval;
	if (bt_aug_check(&lo.aug) < 0)
		return tool_usage_error("%s", bt_errmsg());
	tool_catch_signals();
	lo.cancel = &tool_interrupted;
	if (preview_out) {
		if (strcmp(out, "-") != 0)
			return tool_usage_error("--preview writes OUT.jpg; it takes no -o");
		return preview(in, preview_out, lo, rows, cols, quiet);
	}
	return augment(in, out, &lo, quiet);
}
