/* mkdata.c: writes the small source fixtures the Bats tests of bt-prep read, and dumps what
 * libbt enumerates from a source, so that tests need no downloaded data set and no Python.
 *
 *   mkdata idx IMAGES LABELS N H W [--gz]
 *	MNIST-style IDX images (N, H, W) and labels (N). Pixel (i, y, x) is
 *	(i + 3y + 7x) mod 256, label i mod 10. --gz gzips both files.
 *   mkdata cifar OUT N [--100]
 *	N CIFAR-10 records (label i mod 10), or with --100 CIFAR-100 records (coarse i mod
 *	20, fine i mod 100). Stored plane c, pixel (y, x) of record i is
 *	(5i + 80c + 2y + x) mod 256.
 *   mkdata rec OUT.rec [--no-idx] [--multi-label] [--split-record] IMAGE...
 *	An MXNet RecordIO file holding the IMAGE files, record i with id i and label i mod 3
 *	(--multi-label: flag 2 and the labels (i mod 3, 1.0)), and OUT.idx (key<TAB>offset)
 *	unless --no-idx. Records are escaped as dmlc-core's writer does: data holding the
 *	magic at a 4-byte aligned position is cut into parts there and the magic dropped.
 *	--split-record sets record 0's IRHeader id2 field (offset 16, unused by MXNet) to
 *	the magic, so that record 0 is written as two parts, flag 1 (its first 16 bytes)
 *	and flag 3 (the rest); its image bytes stay those of the file, and a reader that
 *	does not put the magic back between the parts returns them shifted.
 *   mkdata list OUT.lst ROOT
 *	An MXNet list (index<TAB>label<TAB>path, labels as "%f") of ROOT/CLASS/FILE, paths
 *	relative to ROOT, classes numbered in strcmp order.
 *   mkdata dump [--source KIND] [--root DIR] [--labels FILE] [--classes A,B,...]
 *	       [--cifar 10|100] [--load] SOURCE...
 *	One line per item, "id label where path-or-offset [soft...]" (where is file, rec or
 *	pixels; --load appends "size=N crc=XXXXXXXX" of the bytes bt_item_load returns),
 *	then "classes: A B ...".
 * Exit status 0 on success, 1 on failure, 2 on a usage error.
 */
#include "bt.h"
#include "source.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char usage_text[] =
	"usage: mkdata idx IMAGES LABELS N H W [--gz]\n"
	"       mkdata cifar OUT N [--100]\n"
	"       mkdata rec OUT.rec [--no-idx] [--multi-label] [--split-record] IMAGE...\n"
	"       mkdata list OUT.lst ROOT\n"
	"       mkdata dump [--source KIND] [--root DIR] [--labels FILE] [--classes A,B,...]\n"
	"                   [--cifar 10|100] [--load] SOURCE...\n";

static const uint8_t MAGIC[4] = { 0x0a, 0x23, 0xd7, 0xce };

static void usage(void)
{
	fputs(usage_text, stderr);
	exit(2);
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "mkdata: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static void die_bt(int status)
{
	fprintf(stderr, "mkdata: %s\n", bt_errmsg()[0] ? bt_errmsg() : bt_strerror(status));
	exit(1);
}

static unsigned long number(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || *s == '-')
		die("bad number '%s'", s);
	return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put_f32(uint8_t *p, float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	put_le32(p, u);
}

/* Plain or gzipped output through one interface. */
static void write_out(const char *path, const uint8_t *p, size_t n, int gz)
{
	if (gz) {
		gzFile f = gzopen(path, "wb");
		if (!f || gzwrite(f, p, (unsigned)n) != (int)n || gzclose(f) != Z_OK)
			die("cannot write '%s'", path);
	} else {
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
			die("cannot write '%s'", path);
	}
}

static int cmd_idx(int argc, char **argv)
{
	unsigned long n, h, w;
	int gz = 0;
	uint8_t *img, *lab;

	if (argc == 8 && strcmp(argv[7], "--gz") == 0)
		gz = 1;
	else if (argc != 7)
		usage();
	n = number(argv[4]);
	h = number(argv[5]);
	w = number(argv[6]);
	if (!(img = malloc(16 + n * h * w)) || !(lab = malloc(8 + n)))
		die("%s", "out of memory");
	put_be32(img, 0x803);
	put_be32(img + 4, (uint32_t)n);
	put_be32(img + 8, (uint32_t)h);
	put_be32(img + 12, (uint32_t)w);
	put_be32(lab, 0x801);
	put_be32(lab + 4, (uint32_t)n);
	for (unsigned long i = 0; i < n; i++) {
		lab[8 + i] = (uint8_t)(i % 10);
		for (unsigned long y = 0; y < h; y++)
			for (unsigned long x = 0; x < w; x++)
				img[16 + (i * h + y) * w + x] = (uint8_t)(i + 3 * y + 7 * x);
	}
	write_out(argv[2], img, 16 + n * h * w, gz);
	write_out(argv[3], lab, 8 + n, gz);
	free(img);
	free(lab);
	return 0;
}

static int cmd_cifar(int argc, char **argv)
{
	unsigned long n;
	size_t rec;
	int hundred = 0;
	uint8_t *buf;

	if (argc == 5 && strcmp(argv[4], "--100") == 0)
		hundred = 1;
	else if (argc != 4)
		usage();
	n = number(argv[3]);
	rec = hundred ? 3074 : 3073;
	if (!(buf = malloc(n * rec + 1)))
		die("%s", "out of memory");
	for (unsigned long i = 0; i < n; i++) {
		uint8_t *r = buf + i * rec, *px = r + rec - 3072;
		if (hundred) {
			r[0] = (uint8_t)(i % 20);
			r[1] = (uint8_t)(i % 100);
		} else {
			r[0] = (uint8_t)(i % 10);
		}
		for (int c = 0; c < 3; c++)
			for (int y = 0; y < 32; y++)
				for (int x = 0; x < 32; x++)
					px[c * 1024 + y * 32 + x] =
						(uint8_t)(5 * i + 80 * c + 2 * y + x);
	}
	write_out(argv[2], buf, n * rec, 0);
	free(buf);
	return 0;
}

static uint8_t *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	size_t cap = 0, len = 0, got;
	if (!f)
		die("cannot open '%s'", path);
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			if (!(p = realloc(p, cap)))
				die("%s", "out of memory");
		}
		got = fread(p + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	if (ferror(f))
		die("cannot read '%s'", path);
	fclose(f);
	*n = len;
	return p;
}

/* Writes one record as dmlc-core's RecordIOWriter does: the magic at an aligned position
 * of the data ends a part and is not written; padding follows the last part only. */
static void write_record(FILE *f, const uint8_t *p, size_t len)
{
	static const uint8_t zero[4];
	size_t dptr = 0, aligned = len & ~(size_t)3;
	uint8_t h[8];

	if (len >= (1u << 29))
		die("%s", "record too large for RecordIO");
	memcpy(h, MAGIC, 4);
	for (size_t i = 0; i < aligned; i += 4) {
		if (memcmp(p + i, MAGIC, 4) != 0)
			continue;
		put_le32(h + 4, (dptr == 0 ? 1u : 2u) << 29 | (uint32_t)(i - dptr));
		fwrite(h, 1, 8, f);
		fwrite(p + dptr, 1, i - dptr, f);
		dptr = i + 4;
	}
	put_le32(h + 4, (dptr == 0 ? 0u : 3u) << 29 | (uint32_t)(len - dptr));
	fwrite(h, 1, 8, f);
	fwrite(p + dptr, 1, len - dptr, f);
	fwrite(zero, 1, ((len + 3) & ~(size_t)3) - len, f);
}

static int cmd_rec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no-idx", no_argument, NULL, 'n' },
		{ "multi-label", no_argument, NULL, 'm' },
		{ "split-record", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int noidx = 0, multi = 0, split = 0, c;
	const char *out;
	FILE *f, *idx = NULL;

	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': noidx = 1; break;
		case 'm': multi = 1; break;
		case 's': split = 1; break;
		default: usage();
		}
	}
	if (argc - optind < 2)
		usage();
	out = argv[optind++];
	if (!(f = fopen(out, "wb")))
		die("cannot write '%s'", out);
	if (!noidx) {
		size_t len = strlen(out);
		char *ip = malloc(len + 5);
		if (!ip)
			die("%s", "out of memory");
		strcpy(ip, out);
		strcpy(len > 4 && strcmp(ip + len - 4, ".rec") == 0 ? ip + len - 4 : ip + len,
		       ".idx");
		if (!(idx = fopen(ip, "w")))
			die("cannot write '%s'", ip);
		free(ip);
	}
	for (int i = 0; optind < argc; optind++, i++) {
		size_t n, hdr = multi ? 32 : 24, plen;
		uint8_t *img = read_file(argv[optind], &n), *p;
		plen = hdr + n;
		if (!(p = calloc(1, plen)))
			die("%s", "out of memory");
		put_le32(p, multi ? 2 : 0);
		put_f32(p + 4, multi ? 0.0f : (float)(i % 3));
		put_le32(p + 8, (uint32_t)i);     /* id, u64 */
		if (split && i == 0)
			memcpy(p + 16, MAGIC, 4);  /* id2 */
		if (multi) {
			put_f32(p + 24, (float)(i % 3));
			put_f32(p + 28, 1.0f);
		}
		memcpy(p + hdr, img, n);
		if (idx)
			fprintf(idx, "%d\t%ld\n", i, ftell(f));
		write_record(f, p, plen);
		free(p);
		free(img);
	}
	if (ferror(f) || fclose(f) != 0 || (idx && fclose(idx) != 0))
		die("cannot write '%s'", out);
	return 0;
}

static int cmd_list(int argc, char **argv)
{
	struct bt_source_opts o = { .kind = BT_SRC_FOLDER };
	struct bt_itemset s;
	size_t rl;
	FILE *f;
	int ret;

	if (argc != 4)
		usage();
	bt_itemset_init(&s);
	if ((ret = bt_itemset_add(&s, argv[3], &o)) < 0)
		die_bt(ret);
	if (!(f = fopen(argv[2], "w")))
		die("cannot write '%s'", argv[2]);
	rl = strlen(argv[3]);
	for (size_t i = 0; i < s.n; i++) {
		const char *p = s.items[i].path + rl;
		while (*p == '/')
			p++;
		fprintf(f, "%zu\t%f\t%s\n", i, (double)s.items[i].label, p);
	}
	if (fclose(f) != 0)
		die("cannot write '%s'", argv[2]);
	bt_itemset_free(&s);
	return 0;
}

static int cmd_dump(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "source", required_argument, NULL, 's' },
		{ "root", required_argument, NULL, 'r' },
		{ "labels", required_argument, NULL, 'l' },
		{ "classes", required_argument, NULL, 'c' },
		{ "cifar", required_argument, NULL, 'C' },
		{ "load", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	struct bt_source_opts o = { 0 };
	struct bt_itemset s;
	const char **names = NULL;
	char *list = NULL;
	int load = 0, c, ret;

	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if ((o.kind = bt_source_kind_parse(optarg)) < 0)
				die("unknown source kind '%s'", optarg);
			break;
		case 'r': o.root = optarg; break;
		case 'l': o.labels = optarg; break;
		case 'C': o.cifar = (int)number(optarg); break;
		case 'L': load = 1; break;
		case 'c':
			if (!(list = strdup(optarg)))
				die("%s", "out of memory");
			for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
				if (!(names = realloc(names, (o.nclasses + 1) * sizeof *names)))
					die("%s", "out of memory");
				names[o.nclasses++] = tok;
			}
			o.classes = names;
			break;
		default:
			usage();
		}
	}
	if (optind == argc)
		usage();
	bt_itemset_init(&s);
	for (; optind < argc; optind++)
		if ((ret = bt_itemset_add(&s, argv[optind], &o)) < 0)
			die_bt(ret);
	for (size_t i = 0; i < s.n; i++) {
		const struct bt_item *it = &s.items[i];
		printf("%llu %d ", (unsigned long long)it->id, it->label);
		if (it->where == BT_ITEM_FILE)
			printf("file %s", it->path);
		else
			printf("%s %llu", it->where == BT_ITEM_REC ? "rec" : "pixels",
			       (unsigned long long)it->offset);
		for (uint32_t k = 0; k < it->nsoft; k++)
			printf(" %g", (double)it->soft[k]);
		if (load) {
			uint8_t *data;
			size_t size;
			int owned;
			if ((ret = bt_item_load(&s, it, &data, &size, &owned)) < 0)
				die_bt(ret);
			printf(" size=%zu crc=%08x", size, bt_crc32(0, data, size));
			if (owned)
				free(data);
		}
		putchar('\n');
	}
	printf("classes:");
	for (uint32_t k = 0; k < s.nclasses; k++)
		printf(" %s", s.classes[k]);
	putchar('\n');
	bt_itemset_free(&s);
	free(names);
	free(list);
	return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "idx") == 0)
		return cmd_idx(argc, argv);
	if (strcmp(argv[1], "cifar") == 0)
		return cmd_cifar(argc, argv);
	if (strcmp(argv[1], "rec") == 0)
		return cmd_rec(argc, argv);
	if (strcmp(argv[1], "list") == 0)
		return cmd_list(argc, argv);
	if (strcmp(argv[1], "dump") == 0)
		return cmd_dump(argc, argv);
	usage();
	return 2;
}
