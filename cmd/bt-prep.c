/* bt-prep: packs images (ImageFolder trees, MXNet lists and RecordIO files, IDX, CIFAR, or
 * "path label" lines on stdin) into a bt record file; also verifies and reindexes record
 * files. Option parsing and messages only: the work is in lib/source.c and lib/prep.c. */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt.h"
#include "prep.h"
#include "record.h"
#include "source.h"
#include "tool.h"

static const char usage_text[] =
	"usage: bt-prep [-q] [-j N] [--source KIND] [--root DIR] [--labels FILE]\n"
	"               [--classes FILE] [--encoding keep|jpeg|png|raw] [--resize N]\n"
	"               [--quality Q] [--shuffle] [--seed S] [--split RATIO] [--skip-bad]\n"
	"               [--max-pixels N] [--fsync] -o OUT SOURCE...\n"
	"       bt-prep --verify FILE...\n"
	"       bt-prep --reindex [--classes FILE] FILE\n"
	"       bt-prep -h | --help | -V | --version\n";

static const char help_text[] =
	"Pack images into a bt record file (.btr).\n"
	"\n"
	"SOURCE is an ImageFolder directory (DIR/CLASS/IMAGE), an MXNet list (.lst) or\n"
	"RecordIO (.rec) file, an MNIST-style IDX image file, a CIFAR binary batch, or '-'\n"
	"for lines of 'path label' on standard input.\n"
	"\n"
	"  -o, --output OUT      write OUT ('-' for standard output)\n"
	"  -j, --threads N       worker threads (default: the number of CPUs)\n"
	"      --source KIND     auto, folder, list, rec, idx, cifar or stdin\n"
	"      --root DIR        directory list-file paths are relative to\n"
	"      --labels FILE     IDX label file\n"
	"      --classes FILE    class names, one per line; line i names label i\n"
	"      --encoding E      keep (default), jpeg, png or raw\n"
	"      --resize N        re-encode so that the shorter side is N pixels\n"
	"      --quality Q       JPEG quality when encoding (default 95)\n"
	"      --shuffle         shuffle the records (with --seed S, default 0)\n"
	"      --split RATIO     write OUT-train and OUT-val, RATIO of each class to train\n"
	"      --skip-bad        skip inputs that cannot be packed, with a warning\n"
	"      --max-pixels N    refuse images over N pixels (default 100000000; 0: no limit)\n"
	"      --fsync           make the output durable (fsync) before renaming it\n"
	"  -q, --quiet           no progress bar and no summary\n"
	"      --verify          check every record, the footer and the count of FILEs\n"
	"      --reindex         rebuild the footer of FILE (a truncated or streamed file)\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error. See bt-prep(1), bt-record(5).\n";

enum {
	OPT_SOURCE = 256, OPT_ROOT, OPT_LABELS, OPT_CLASSES, OPT_ENCODING, OPT_RESIZE, OPT_QUALITY,
	OPT_SHUFFLE, OPT_SEED, OPT_SPLIT, OPT_SKIP_BAD, OPT_MAX_PIXELS, OPT_VERIFY, OPT_REINDEX, OPT_FSYNC,
};

static const struct option longopts[] = {
	{"output", required_argument, NULL, 'o'},
	{"threads", required_argument, NULL, 'j'},
	{"source", required_argument, NULL, OPT_SOURCE},
	{"root", required_argument, NULL, OPT_ROOT},
	{"labels", required_argument, NULL, OPT_LABELS},
	{"classes", required_argument, NULL, OPT_CLASSES},
	{"encoding", required_argument, NULL, OPT_ENCODING},
	{"resize", required_argument, NULL, OPT_RESIZE},
	{"quality", required_argument, NULL, OPT_QUALITY},
	{"shuffle", no_argument, NULL, OPT_SHUFFLE},
	{"seed", required_argument, NULL, OPT_SEED},
	{"split", required_argument, NULL, OPT_SPLIT},
	{"skip-bad", no_argument, NULL, OPT_SKIP_BAD},
	{"max-pixels", required_argument, NULL, OPT_MAX_PIXELS},
	{"fsync", no_argument, NULL, OPT_FSYNC},
	{"quiet", no_argument, NULL, 'q'},
	{"verify", no_argument, NULL, OPT_VERIFY},
	{"reindex", no_argument, NULL, OPT_REINDEX},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* After SIGINT/SIGTERM the library's own message (often a system call's "Interrupted")
 * matters less than what happened. */
static int fail_run(int st)
{
	if (tool_interrupted) {
		tool_err("interrupted; no output written");
		return 1;
	}
	return tool_fail(st);
}

static void on_skip(void *ctx, const char *msg)
{
	(void)ctx;
	tool_progress_end();
	tool_err("skipped %s", msg);
}

static void on_progress(void *ctx, uint64_t done, uint64_t total, uint64_t bytes)
{
	double *t0 = ctx;
	char extra[64], b[32];
	double dt = tool_now() - *t0;
	snprintf(extra, sizeof extra, "%s %.0f/s", tool_bytes(bytes, b, sizeof b),
		 dt > 0 ? (double)done / dt : 0.0);
	tool_progress(done, total, extra);
}

static int verify(int n, char **files)
{
	int rc = 0;
	for (int i = 0; i < n; i++) {
		struct bt_verify_report rep;
		int st = bt_record_verify(files[i], &rep);
		if (st < 0) {
			tool_fail(st);
			rc = 1;
			continue;
		}
		if (!rep.has_footer) {
			tool_err("%s: no footer after record %llu at offset %llu (a truncated or unfinished "
				 "file; 'bt-prep --reindex' rebuilds it)",
				 files[i], (unsigned long long)rep.records, (unsigned long long)rep.bytes);
			rc = 1;
			continue;
		}
		printf("%s: %llu records, %llu bytes, footer ok\n", files[i],
		       (unsigned long long)rep.records, (unsigned long long)rep.bytes);
	}
	return rc;
}

static int reindex(const char *file, const char *classes_file)
{
	char **names = NULL;
	uint32_t n = 0;
	uint64_t kept, dropped;
	int st;

	if (classes_file && (st = tool_read_lines(classes_file, &names, &n)) < 0)
		return tool_fail(st);
	st = bt_record_reindex(file, n, (const char *const *)names, &kept, &dropped);
	tool_free_lines(names, n);
	if (st < 0)
		return tool_fail(st);
	if (dropped)
		tool_err("%s: footer rebuilt over %llu records; dropped a partial record of %llu bytes at the end",
			 file, (unsigned long long)kept, (unsigned long long)dropped);
	else
		tool_err("%s: footer rebuilt over %llu records", file, (unsigned long long)kept);
	return 0;
}

int main(int argc, char **argv)
{
	struct bt_prep_opts po = {0};
	struct bt_source_opts so = {0};
	struct bt_prep_stats stats;
	struct bt_itemset set;
	const char *out = NULL, *classes_file = NULL;
	char **classes = NULL;
	uint32_t nclasses = 0;
	int mode = 0, quiet = 0, c, st, rc = 1;
	uint64_t u;
	double t0;

	tool_name = "bt-prep";
	po.threads = tool_ncpus();
	po.quality = 95;
	po.max_pixels = 100000000;
	while ((c = getopt_long(argc, argv, "o:j:qhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'j':
			if (tool_parse_int("-j", optarg, 1, 1024, &po.threads) < 0)
				return 2;
			break;
		case OPT_SOURCE:
			if ((so.kind = bt_source_kind_parse(optarg)) < 0)
				return tool_usage_error("unknown source kind '%s' (auto, folder, list, rec, idx, cifar, stdin)", optarg);
			break;
		case OPT_ROOT: so.root = optarg; break;
		case OPT_LABELS: so.labels = optarg; break;
		case OPT_CLASSES: classes_file = optarg; break;
		case OPT_ENCODING:
			if ((po.encoding = bt_encoding_parse(optarg)) < 0)
				return tool_usage_error("unknown encoding '%s' (keep, jpeg, png, raw)", optarg);
			break;
		case OPT_RESIZE:
			if (tool_parse_u64("--resize", optarg, 1, 65535, &u) < 0)
				return 2;
			po.resize = (uint32_t)u;
			break;
		case OPT_QUALITY:
			if (tool_parse_int("--quality", optarg, 1, 100, &po.quality) < 0)
				return 2;
			break;
		case OPT_SHUFFLE: po.shuffle = 1; break;
		case OPT_SEED:
			if (tool_parse_u64("--seed", optarg, 0, UINT64_MAX, &po.seed) < 0)
				return 2;
			break;
		case OPT_SPLIT:
			if (tool_parse_double("--split", optarg, 0, 1, &po.split) < 0)
				return 2;
			if (po.split <= 0 || po.split >= 1)
				return tool_usage_error("--split takes a ratio strictly between 0 and 1, not '%s'", optarg);
			break;
		case OPT_SKIP_BAD: po.skip_bad = 1; break;
		case OPT_FSYNC: po.fsync = 1; break;
		case OPT_MAX_PIXELS:
			if (tool_parse_u64("--max-pixels", optarg, 0, UINT64_MAX, &po.max_pixels) < 0)
				return 2;
			break;
		case 'q': quiet = 1; break;
		case OPT_VERIFY: mode = OPT_VERIFY; break;
		case OPT_REINDEX: mode = OPT_REINDEX; break;
		case 'h': fputs(usage_text, stdout); fputs("\n", stdout); fputs(help_text, stdout); return 0;
		case 'V': printf("bt-prep %s\n", BT_VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	argc -= optind;
	argv += optind;

	if (mode == OPT_VERIFY) {
		if (out)
			return tool_usage_error("--verify takes no -o");
		if (argc < 1)
			return tool_usage_error("--verify needs at least one FILE");
		return verify(argc, argv);
	}
	if (mode == OPT_REINDEX) {
		if (out || argc != 1)
			return tool_usage_error("--reindex takes exactly one FILE and no -o");
		return reindex(argv[0], classes_file);
	}
	if (!out)
		return tool_usage_error("no output given (-o OUT)");
	if (argc < 1)
		return tool_usage_error("no SOURCE given");
	if (po.split > 0 && strcmp(out, "-") == 0)
		return tool_usage_error("--split writes two files and cannot write to standard output");

	tool_catch_signals();
	po.cancel = &tool_interrupted;
	bt_itemset_init(&set);
	if (classes_file) {
		if ((st = tool_read_lines(classes_file, &classes, &nclasses)) < 0) {
			tool_fail(st);
			goto out;
		}
		so.nclasses = nclasses;
		so.classes = (const char *const *)classes;
	}
	for (int i = 0; i < argc; i++) {
		if ((st = bt_itemset_add(&set, argv[i], &so)) < 0) {
			fail_run(st);
			goto out;
		}
	}
	if (set.n == 0) {
		tool_err("no images found in %s%s", argv[0], argc > 1 ? " and the other sources" : "");
		goto out;
	}
	t0 = tool_now();
	if (!quiet) {
		po.on_progress = on_progress;
		po.ctx = &t0;
	}
	po.on_skip = on_skip;
	st = bt_prep_pack(&set, out, &po, &stats);
	tool_progress_end();
	if (st < 0) {
		fail_run(st);
		goto out;
	}
	if (!quiet) {
		double dt = tool_now() - t0;
		char b[32];
		fprintf(stderr, "bt-prep: packed %llu records (%llu skipped), %llu bytes (%s) in %.2f s "
			"(%.0f records/s, %.1f MB/s)\n",
			(unsigned long long)stats.packed, (unsigned long long)stats.skipped,
			(unsigned long long)stats.bytes_out, tool_bytes(stats.bytes_out, b, sizeof b), dt,
			dt > 0 ? (double)stats.packed / dt : 0.0,
			dt > 0 ? (double)stats.bytes_out / dt / 1e6 : 0.0);
		if (po.split > 0)
			fprintf(stderr, "bt-prep: %s: %llu records; %s: %llu records\n", stats.out[0],
				(unsigned long long)stats.count[0], stats.out[1],
				(unsigned long long)stats.count[1]);
	}
	rc = 0;
out:
	bt_itemset_free(&set);
	tool_free_lines(classes, nclasses);
	return rc;
}
