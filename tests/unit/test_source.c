/* test_source.c: unit tests of lib/source*.c. Every fixture is written by the test itself
 * into a fresh mkdtemp directory: tiny fake "images" (enumeration never decodes them),
 * list files, RecordIO files built part by part, IDX files plain and gzipped, CIFAR
 * batches. Build and run:
 *   gcc -std=gnu11 -Wall -Wextra -O2 -Ilib tests/unit/test_source.c lib/source.c \
 *       lib/source_mxnet.c lib/source_idx.c lib/status.c -lz -o /tmp/test_source
 */
#define _GNU_SOURCE
#include "bt.h"
#include "source.h"
#include "test.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmp[256];

/* Path under the test directory; a few rotating buffers so calls can be nested. */
static const char *P(const char *fmt, ...)
{
	static char bufs[8][512];
	static int k;
	char rel[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rel, sizeof rel, fmt, ap);
	va_end(ap);
	k = (k + 1) % 8;
	snprintf(bufs[k], sizeof bufs[k], "%s/%s", tmp, rel);
	return bufs[k];
}

static void put(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void puts_file(const char *path, const char *text)
{
	put(path, text, strlen(text));
}

static void put_gz(const char *path, const void *p, size_t n)
{
	gzFile f = gzopen(path, "wb");
	if (!f || gzwrite(f, p, (unsigned)n) != (int)n || gzclose(f) != Z_OK) {
		fprintf(stderr, "%s: gz write failed\n", path);
		exit(1);
	}
}

static void mkdirs(const char *path)
{
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	chmod(path, 0755);
	return remove(path);
}

static struct bt_source_opts opts(int kind)
{
	struct bt_source_opts o;
	memset(&o, 0, sizeof o);
	o.kind = kind;
	return o;
}

/* ---- kinds and detection ---- */

TEST(kind_names)
{
	CHECK_STR(bt_source_kind_name(BT_SRC_FOLDER), "folder");
	CHECK_STR(bt_source_kind_name(BT_SRC_STDIN), "stdin");
	CHECK(bt_source_kind_name(BT_SRC_AUTO) == NULL);
	CHECK(bt_source_kind_name(99) == NULL);
	for (int k = BT_SRC_FOLDER; k <= BT_SRC_STDIN; k++)
		CHECK_EQ(bt_source_kind_parse(bt_source_kind_name(k)), k);
	CHECK_EQ(bt_source_kind_parse("auto"), BT_SRC_AUTO);
	CHECK_EQ(bt_source_kind_parse("nope"), -1);
}

/* ---- ImageFolder ---- */

static void make_folder(void)
{
	mkdirs(P("f"));
	mkdirs(P("f/dog"));
	mkdirs(P("f/cat"));
	mkdirs(P("f/empty"));
	mkdirs(P("f/.hidden"));
	mkdirs(P("f/cat/nested"));
	puts_file(P("f/README"), "not a class\n");
	puts_file(P("f/dog/b.jpg"), "b");
	puts_file(P("f/dog/a.jpg"), "a");
	puts_file(P("f/dog/.DS_Store"), "x");
	puts_file(P("f/dog/notes.txt"), "a text file is taken too");
	puts_file(P("f/cat/Z.png"), "Z");
	puts_file(P("f/cat/nested/deep.jpg"), "deep");
	if (symlink("Z.png", P("f/cat/link.png")) != 0)
		perror("symlink");
}

TEST(folder_basic)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_AUTO);
	int kind;

	make_folder();
	CHECK_EQ(bt_source_detect(P("f"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_FOLDER);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("f"), &o), BT_OK);
	CHECK_EQ(s.nclasses, 3);
	CHECK_STR(s.classes[0], "cat");
	CHECK_STR(s.classes[1], "dog");
	CHECK_STR(s.classes[2], "empty");
	CHECK_EQ(s.n, 5);
	CHECK_STR(s.items[0].path, P("f/cat/Z.png"));
	CHECK_STR(s.items[1].path, P("f/cat/link.png"));
	CHECK_STR(s.items[2].path, P("f/dog/a.jpg"));
	CHECK_STR(s.items[3].path, P("f/dog/b.jpg"));
	CHECK_STR(s.items[4].path, P("f/dog/notes.txt"));
	CHECK_EQ(s.items[1].label, 0);
	CHECK_EQ(s.items[2].label, 1);
	for (size_t i = 0; i < s.n; i++) {
		CHECK_EQ(s.items[i].id, i);
		CHECK_EQ(s.items[i].where, BT_ITEM_FILE);
		CHECK_EQ(s.items[i].src, 0);
	}
	{
		uint8_t *d;
		size_t n;
		int owned;
		CHECK_EQ(bt_item_load(&s, &s.items[1], &d, &n, &owned), BT_OK);
		CHECK(owned);
		CHECK_EQ(n, 1);
		CHECK_EQ(d[0], 'Z');
		free(d);
	}
	bt_itemset_free(&s);
}

TEST(folder_union)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_FOLDER);

	mkdirs(P("u1"));
	mkdirs(P("u1/cat"));
	mkdirs(P("u1/dog"));
	mkdirs(P("u2"));
	mkdirs(P("u2/bird"));
	mkdirs(P("u2/cat"));
	puts_file(P("u1/cat/1"), "1");
	puts_file(P("u1/dog/2"), "2");
	puts_file(P("u2/bird/3"), "3");
	puts_file(P("u2/cat/4"), "4");
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("u1"), &o), BT_OK);
	CHECK_EQ(s.items[1].label, 1);
	CHECK_EQ(bt_itemset_add(&s, P("u2/"), &o), BT_OK);
	CHECK_EQ(s.nclasses, 3);
	CHECK_STR(s.classes[0], "bird");
	CHECK_STR(s.classes[1], "cat");
	CHECK_STR(s.classes[2], "dog");
	CHECK_EQ(s.n, 4);
	CHECK_EQ(s.items[0].label, 1);  /* u1/cat, renumbered */
	CHECK_EQ(s.items[1].label, 2);  /* u1/dog */
	CHECK_EQ(s.items[2].label, 0);  /* u2/bird */
	CHECK_EQ(s.items[3].label, 1);  /* u2/cat */
	CHECK_STR(s.items[2].path, P("u2/bird/3"));
	CHECK_EQ(s.items[3].id, 3);
	CHECK_EQ(s.items[3].src, 1);
	bt_itemset_free(&s);
}

TEST(folder_classes_option)
{
	static const char *const names[] = { "dog", "cat", "empty", "bird" };
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_FOLDER);

	o.classes = names;
	o.nclasses = 4;
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("f"), &o), BT_OK);
	CHECK_EQ(s.nclasses, 4);
	CHECK_STR(s.classes[0], "dog");
	CHECK_STR(s.classes[3], "bird");
	CHECK_EQ(s.items[0].label, 1);  /* cat */
	CHECK_EQ(s.items[2].label, 0);  /* dog */
	o.nclasses = 2;                 /* "empty" is no longer listed */
	bt_itemset_free(&s);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("f"), &o), BT_ERR_NOTFOUND);
	CHECK_STR(bt_errmsg(), P("f/empty: class not in --classes"));
	CHECK_EQ(s.n, 0);
	CHECK_EQ(s.nsrcs, 0);
	CHECK_EQ(s.nclasses, 0);
	bt_itemset_free(&s);
}

TEST(folder_errors)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_AUTO);
	char want[600];

	bt_itemset_init(&s);
	CHECK(bt_itemset_add(&s, P("missing"), &o) == BT_ERR_IO);
	snprintf(want, sizeof want, "%s: No such file or directory", P("missing"));
	CHECK_STR(bt_errmsg(), want);

	mkdirs(P("nodirs"));
	puts_file(P("nodirs/a.jpg"), "a");
	CHECK_EQ(bt_itemset_add(&s, P("nodirs"), &o), BT_ERR_FORMAT);
	snprintf(want, sizeof want, "%s: no class directories", P("nodirs"));
	CHECK_STR(bt_errmsg(), want);

	o.kind = BT_SRC_FOLDER;
	CHECK(bt_itemset_add(&s, P("nodirs/a.jpg"), &o) < 0);
	snprintf(want, sizeof want, "%s: Not a directory", P("nodirs/a.jpg"));
	CHECK_STR(bt_errmsg(), want);

	if (geteuid() != 0) {     /* root reads anything */
		mkdirs(P("locked"));
		mkdirs(P("locked/a"));
		chmod(P("locked/a"), 0);
		CHECK_EQ(bt_itemset_add(&s, P("locked"), &o), BT_ERR_IO);
		snprintf(want, sizeof want, "%s: Permission denied", P("locked/a"));
		CHECK_STR(bt_errmsg(), want);
		chmod(P("locked/a"), 0755);
	}
	CHECK_EQ(s.n, 0);
	CHECK_EQ(s.nsrcs, 0);
	bt_itemset_free(&s);
}

/* ---- list files ---- */

TEST(list_basic)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_AUTO);
	int kind;

	mkdirs(P("l"));
	puts_file(P("l/train.lst"),
		  "7\t3.000000\tcat/a b.jpg\n"
		  "\n"
		  "  \t \n"
		  "9\t1.000000\t0.500000\t0.250000\tdog/x.jpg\r\n"
		  "11\t0\t/abs/path.jpg\n");
	CHECK_EQ(bt_source_detect(P("l/train.lst"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_LIST);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("l/train.lst"), &o), BT_OK);
	CHECK_EQ(s.n, 3);
	CHECK_EQ(s.nclasses, 0);
	CHECK_EQ(s.items[0].id, 7);
	CHECK_EQ(s.items[0].label, 3);
	CHECK_EQ(s.items[0].nsoft, 0);
	CHECK_STR(s.items[0].path, P("l/cat/a b.jpg"));
	CHECK_EQ(s.items[1].id, 9);
	CHECK_EQ(s.items[1].label, 1);
	CHECK_EQ(s.items[1].nsoft, 3);
	CHECK(s.items[1].soft[0] == 1.0f && s.items[1].soft[1] == 0.5f &&
	      s.items[1].soft[2] == 0.25f);
	CHECK_STR(s.items[1].path, P("l/dog/x.jpg"));
	CHECK_STR(s.items[2].path, "/abs/path.jpg");

	o.root = "/data/imagenet";
	CHECK_EQ(bt_itemset_add(&s, P("l/train.lst"), &o), BT_OK);
	CHECK_EQ(s.n, 6);
	CHECK_STR(s.items[3].path, "/data/imagenet/cat/a b.jpg");
	CHECK_EQ(s.items[3].src, 1);
	bt_itemset_free(&s);
}

TEST(list_classes)
{
	static const char *const names[] = { "cat", "dog" };
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_LIST);

	o.classes = names;
	o.nclasses = 2;
	puts_file(P("l/named.lst"), "0\tdog\ta.jpg\n1\t0.000000\tb.jpg\n");
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("l/named.lst"), &o), BT_OK);
	CHECK_EQ(s.items[0].label, 1);
	CHECK_EQ(s.items[1].label, 0);
	CHECK_EQ(s.nclasses, 2);
	CHECK_STR(s.classes[1], "dog");
	puts_file(P("l/big.lst"), "0\t0\ta.jpg\n1\t2\tb.jpg\n");
	CHECK_EQ(bt_itemset_add(&s, P("l/big.lst"), &o), BT_ERR_INVALID);
	CHECK(strstr(bt_errmsg(), "big.lst:2: label 2 is not below the 2 classes") != NULL);
	CHECK_EQ(s.n, 2);
	bt_itemset_free(&s);
}

static void list_error(const char *text, const char *want)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_LIST);
	char full[600];

	puts_file(P("l/bad.lst"), text);
	bt_itemset_init(&s);
	CHECK(bt_itemset_add(&s, P("l/bad.lst"), &o) < 0);
	snprintf(full, sizeof full, "%s%s", P("l/bad.lst"), want);
	CHECK_STR(bt_errmsg(), full);
	CHECK_EQ(s.n, 0);
	CHECK_EQ(s.nsrcs, 0);
	bt_itemset_free(&s);
}

TEST(list_errors)
{
	list_error("0\t1\ta.jpg\n1\ta.jpg\n", ":2: expected 'index<TAB>label<TAB>path'");
	list_error("0 1 a.jpg\n", ":1: expected 'index<TAB>label<TAB>path'");
	list_error("\n\nx\t1\ta.jpg\n", ":3: bad index 'x'");
	list_error("-1\t1\ta.jpg\n", ":1: bad index '-1'");
	list_error("0\tcat\ta.jpg\n", ":1: bad label 'cat'");
	list_error("0\t1.5\ta.jpg\n", ":1: label '1.5' is not a whole number >= 0");
	list_error("0\t-1\ta.jpg\n", ":1: label '-1' is not a whole number >= 0");
	list_error("0\t1\t\n", ":1: expected 'index<TAB>label<TAB>path'");
	list_error("\n \n", ": no items");
	if (1) {
		struct bt_itemset s;
		struct bt_source_opts o = opts(BT_SRC_LIST);
		bt_itemset_init(&s);
		CHECK(bt_itemset_add(&s, P("l/none.lst"), &o) == BT_ERR_IO);
		CHECK(strstr(bt_errmsg(), "none.lst: No such file or directory") != NULL);
		bt_itemset_free(&s);
	}
}

TEST(list_many)
{
	/* A list as long as ImageNet's must load in well under a second. */
	enum { N = 1300000 };
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_LIST);
	FILE *f = fopen(P("l/many.lst"), "w");

	CHECK(f != NULL);
	for (int i = 0; i < N; i++)
		fprintf(f, "%d\t%d.000000\tn%08d/n%08d_%d.JPEG\n", i, i % 1000, i % 1000,
			i % 1000, i);
	CHECK(fclose(f) == 0);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("l/many.lst"), &o), BT_OK);
	CHECK_EQ(s.n, N);
	CHECK_EQ(s.items[N - 1].label, (N - 1) % 1000);
	CHECK_EQ(s.items[N - 1].id, N - 1);
	bt_itemset_free(&s);
	unlink(P("l/many.lst"));
}

/* ---- "path label" lines ---- */

TEST(stream_lines)
{
	static const char *const names[] = { "cat", "dog" };
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_STDIN);
	char text[] = "a.jpg 1\n\n  my dir/b c.jpg\t0  \r\nd.jpg dog\n";
	FILE *fp = fmemopen(text, strlen(text), "r");

	o.classes = names;
	o.nclasses = 2;
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add_stream(&s, fp, "<stdin>", &o), BT_OK);
	fclose(fp);
	CHECK_EQ(s.n, 3);
	CHECK_STR(s.items[0].path, "a.jpg");
	CHECK_EQ(s.items[0].label, 1);
	CHECK_STR(s.items[1].path, "  my dir/b c.jpg");
	CHECK_EQ(s.items[1].label, 0);
	CHECK_EQ(s.items[1].id, 1);
	CHECK_EQ(s.items[2].label, 1);
	CHECK_STR(s.srcs[0].path, "<stdin>");
	CHECK_EQ(s.srcs[0].kind, BT_SRC_STDIN);
	bt_itemset_free(&s);
}

static void stream_error(const char *text, const struct bt_source_opts *o, const char *want)
{
	struct bt_itemset s;
	FILE *fp = fmemopen((void *)text, strlen(text), "r");
	bt_itemset_init(&s);
	CHECK(bt_itemset_add_stream(&s, fp, "<stdin>", o) < 0);
	fclose(fp);
	CHECK_STR(bt_errmsg(), want);
	CHECK_EQ(s.n, 0);
	bt_itemset_free(&s);
}

TEST(stream_errors)
{
	static const char *const names[] = { "cat", "dog" };
	struct bt_source_opts o = opts(BT_SRC_STDIN);
	stream_error("a.jpg 1\nb.jpg\n", &o, "<stdin>:2: expected 'path label'");
	stream_error("a.jpg cat\n", &o, "<stdin>:1: bad label 'cat'");
	stream_error("a.jpg -3\n", &o, "<stdin>:1: bad label '-3'");
	stream_error("", &o, "<stdin>: no items");
	o.classes = names;
	o.nclasses = 2;
	stream_error("a.jpg bird\n", &o,
		     "<stdin>:1: bad label 'bird' (not a number nor a class in --classes)");
	stream_error("a.jpg 0\nb.jpg 2\n", &o,
		     "<stdin>:2: label 2 is not below the 2 classes of --classes");
}

/* ---- RecordIO ---- */

struct buf {
	uint8_t *p;
	size_t n;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->n + n + 1);
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void buf_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	buf_add(b, x, 4);
}

static void buf_f32(struct buf *b, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	buf_u32(b, u);
}

/* One part: magic, lrec, data, padding. */
static void rec_part(struct buf *b, uint32_t cflag, const void *p, uint32_t n)
{
	static const uint8_t zero[4];
	buf_u32(b, 0xced7230a);
	buf_u32(b, cflag << 29 | n);
	buf_add(b, p, n);
	buf_add(b, zero, (4 - n % 4) % 4);
}

static void irheader(struct buf *b, uint32_t flag, float label, uint64_t id)
{
	buf_u32(b, flag);
	buf_f32(b, label);
	buf_u32(b, (uint32_t)id);
	buf_u32(b, (uint32_t)(id >> 32));
	buf_u32(b, 0);
	buf_u32(b, 0);
}

static const uint8_t IMG0[] = "fake image zero";
static const uint8_t IMG2[] = "\xff\xd8 second";
/* Record 1's image holds the magic at an aligned position (after header and 4 bytes of
 * image), so it is stored as parts 1, 2, 3 around two magics. */
static const uint8_t IMG1[] = "abcd\x0a\x23\xd7\xce" "efgh\x0a\x23\xd7\xce" "ijk";

/* Returns the offsets of the three records. */
static void make_rec(const char *path, uint64_t off[3], int idx_entries)
{
	struct buf b = { 0 }, r = { 0 };
	char line[64];
	FILE *f;

	off[0] = b.n;
	irheader(&r, 0, 2.0f, 100);
	buf_add(&r, IMG0, sizeof IMG0 - 1);
	rec_part(&b, 0, r.p, (uint32_t)r.n);

	off[1] = b.n;
	r.n = 0;
	irheader(&r, 2, 0.0f, 1ull << 40);
	buf_f32(&r, 4.0f);
	buf_f32(&r, 0.5f);
	/* header 24 + labels 8 + "abcd" = 36: the first magic is at 36, the second at 44 */
	buf_add(&r, IMG1, 4);
	rec_part(&b, 1, r.p, 36);
	rec_part(&b, 2, IMG1 + 8, 4);
	rec_part(&b, 3, IMG1 + 16, 3);

	off[2] = b.n;
	r.n = 0;
	irheader(&r, 0, 0.9999f, 7);
	buf_add(&r, IMG2, sizeof IMG2 - 1);
	rec_part(&b, 0, r.p, (uint32_t)r.n);
	put(path, b.p, b.n);

	if (idx_entries >= 0) {
		char ip[512];
		snprintf(ip, sizeof ip, "%.*s.idx", (int)strlen(path) - 4, path);
		f = fopen(ip, "w");
		for (int i = 0; i < idx_entries; i++) {
			snprintf(line, sizeof line, "%d\t%llu\n", i,
				 (unsigned long long)off[i % 3]);
			fputs(line, f);
		}
		fclose(f);
	}
	free(b.p);
	free(r.p);
}

static int loads_as(const struct bt_itemset *s, size_t i, const void *want, size_t n)
{
	uint8_t *d;
	size_t size;
	int owned, ok;
	if (bt_item_load(s, &s->items[i], &d, &size, &owned) != BT_OK)
		return 0;
	ok = owned && size == n && memcmp(d, want, n) == 0;
	free(d);
	return ok;
}

TEST(rec_basic)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_AUTO);
	uint64_t off[3];
	int kind;

	make_rec(P("r.rec"), off, 3);
	CHECK_EQ(bt_source_detect(P("r.rec"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_REC);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("r.rec"), &o), BT_OK);
	CHECK_EQ(s.n, 3);
	CHECK(s.srcs[0].fd >= 0);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(s.items[i].where, BT_ITEM_REC);
		CHECK_EQ(s.items[i].offset, off[i]);
	}
	CHECK_EQ(s.items[0].label, 2);
	CHECK_EQ(s.items[0].id, 100);
	CHECK_EQ(s.items[0].nsoft, 0);
	CHECK_EQ(s.items[1].label, 4);
	CHECK_EQ(s.items[1].id, 1ull << 40);
	CHECK_EQ(s.items[1].nsoft, 2);
	CHECK(s.items[1].soft[0] == 4.0f && s.items[1].soft[1] == 0.5f);
	CHECK_EQ(s.items[2].label, 1);
	CHECK_EQ(s.items[2].id, 7);
	CHECK(loads_as(&s, 0, IMG0, sizeof IMG0 - 1));
	CHECK(loads_as(&s, 1, IMG1, sizeof IMG1 - 1));
	CHECK(loads_as(&s, 2, IMG2, sizeof IMG2 - 1));
	bt_itemset_free(&s);

	/* without an .idx */
	make_rec(P("noidx.rec"), off, -1);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("noidx.rec"), &o), BT_OK);
	CHECK_EQ(s.n, 3);
	bt_itemset_free(&s);
}

/* The magic inside the IRHeader itself (id2, as mkdata --split-record writes it): the
 * header that enumeration reads spans both parts. */
TEST(rec_split_header)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_REC);
	struct buf b = { 0 }, r = { 0 };

	buf_u32(&r, 1);
	buf_f32(&r, 0.0f);
	buf_u32(&r, 42);
	buf_u32(&r, 0);
	rec_part(&b, 1, r.p, 16);               /* id2's low half is the magic, dropped */
	r.n = 0;
	buf_u32(&r, 0);                         /* id2's high half */
	buf_f32(&r, 6.0f);                      /* the one label */
	buf_add(&r, IMG0, sizeof IMG0 - 1);
	rec_part(&b, 3, r.p, (uint32_t)r.n);
	put(P("hs.rec"), b.p, b.n);
	free(b.p);
	free(r.p);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("hs.rec"), &o), BT_OK);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.items[0].id, 42);
	CHECK_EQ(s.items[0].label, 6);
	CHECK_EQ(s.items[0].nsoft, 1);
	CHECK(loads_as(&s, 0, IMG0, sizeof IMG0 - 1));
	bt_itemset_free(&s);
}

TEST(rec_errors)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_REC);
	uint64_t off[3];
	char want[600];
	struct stat st;

	bt_itemset_init(&s);
	make_rec(P("short.rec"), off, 2);
	CHECK_EQ(bt_itemset_add(&s, P("short.rec"), &o), BT_ERR_FORMAT);
	snprintf(want, sizeof want, "%s: 2 entries but %s has 3 records", P("short.idx"),
		 P("short.rec"));
	CHECK_STR(bt_errmsg(), want);

	puts_file(P("short.idx"), "0\t0\n1\t40\n");
	CHECK_EQ(bt_itemset_add(&s, P("short.rec"), &o), BT_ERR_FORMAT);
	snprintf(want, sizeof want, "%s:2: offset 40 is not the start of a record of %s",
		 P("short.idx"), P("short.rec"));
	CHECK_STR(bt_errmsg(), want);
	puts_file(P("short.idx"), "0\t0\n\n1 x\n");
	CHECK_EQ(bt_itemset_add(&s, P("short.rec"), &o), BT_ERR_FORMAT);
	snprintf(want, sizeof want, "%s:3: expected 'key<TAB>offset'", P("short.idx"));
	CHECK_STR(bt_errmsg(), want);

	make_rec(P("trunc.rec"), off, -1);
	CHECK(stat(P("trunc.rec"), &st) == 0);
	CHECK(truncate(P("trunc.rec"), st.st_size - 3) == 0);
	CHECK_EQ(bt_itemset_add(&s, P("trunc.rec"), &o), BT_ERR_TRUNCATED);
	snprintf(want, sizeof want, "%s: record 2 at offset %llu: truncated", P("trunc.rec"),
		 (unsigned long long)off[2]);
	CHECK_STR(bt_errmsg(), want);
	CHECK(truncate(P("trunc.rec"), (off_t)off[2] + 5) == 0);
	CHECK_EQ(bt_itemset_add(&s, P("trunc.rec"), &o), BT_ERR_TRUNCATED);
	CHECK_STR(bt_errmsg(), want);

	/* A part of record 1 lost: the next header is not where it should be. */
	{
		struct buf b = { 0 }, r = { 0 };
		irheader(&r, 0, 1.0f, 0);
		rec_part(&b, 0, r.p, (uint32_t)r.n);
		rec_part(&b, 1, r.p, (uint32_t)r.n);
		rec_part(&b, 0, r.p, (uint32_t)r.n);
		put(P("flag.rec"), b.p, b.n);
		b.n = 0;
		rec_part(&b, 0, r.p, (uint32_t)r.n);
		buf_add(&b, "garbage!", 8);
		put(P("magic.rec"), b.p, b.n);
		b.n = 0;
		rec_part(&b, 0, "short", 5);
		put(P("hdr.rec"), b.p, b.n);
		free(b.p);
		free(r.p);
	}
	CHECK_EQ(bt_itemset_add(&s, P("flag.rec"), &o), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "flag.rec: record 1 at offset 32: unexpected continuation "
		     "flag 0 in part 1 at offset 64") != NULL);
	CHECK_EQ(bt_itemset_add(&s, P("magic.rec"), &o), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "magic.rec: record 1 at offset 32: bad magic") != NULL);
	CHECK_EQ(bt_itemset_add(&s, P("hdr.rec"), &o), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "hdr.rec: record 0 at offset 0: 5 bytes, shorter than its "
		     "header") != NULL);
	CHECK_EQ(s.n, 0);
	CHECK_EQ(s.nsrcs, 0);

	/* A record that shrank after enumeration. */
	make_rec(P("late.rec"), off, 3);
	CHECK_EQ(bt_itemset_add(&s, P("late.rec"), &o), BT_OK);
	CHECK(truncate(P("late.rec"), (off_t)off[2] + 12) == 0);
	{
		uint8_t *d = NULL;
		size_t n;
		int owned;
		CHECK_EQ(bt_item_load(&s, &s.items[2], &d, &n, &owned), BT_ERR_TRUNCATED);
		snprintf(want, sizeof want, "%s: record at offset %llu: truncated",
			 P("late.rec"), (unsigned long long)off[2]);
		CHECK_STR(bt_errmsg(), want);
		CHECK(d == NULL);
	}
	bt_itemset_free(&s);
}

/* ---- IDX ---- */

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* n images of h x w, pixel (i, y, x) = i*100 + y*10 + x, label 9 - i. */
static void make_idx(const char *images, const char *labels, uint32_t n, uint32_t nlab,
		     int gz)
{
	uint8_t img[16 + 8 * 2 * 3], lab[8 + 8];
	uint32_t h = 2, w = 3;
	be32(img, 0x803);
	be32(img + 4, n);
	be32(img + 8, h);
	be32(img + 12, w);
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t y = 0; y < h; y++)
			for (uint32_t x = 0; x < w; x++)
				img[16 + (i * h + y) * w + x] = (uint8_t)(i * 100 + y * 10 + x);
	be32(lab, 0x801);
	be32(lab + 4, nlab);
	for (uint32_t i = 0; i < nlab; i++)
		lab[8 + i] = (uint8_t)(9 - i);
	(gz ? put_gz : put)(images, img, 16 + n * h * w);
	(gz ? put_gz : put)(labels, lab, 8 + nlab);
}

static int check_idx_items(const struct bt_itemset *s, size_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct bt_item *it = &s->items[first + i];
		uint8_t *d;
		size_t size;
		int owned;
		if (it->where != BT_ITEM_PIXELS || it->height != 2 || it->width != 3 ||
		    it->channels != 1 || it->label != (int32_t)(9 - i) || it->id != first + i)
			return 0;
		if (bt_item_load(s, it, &d, &size, &owned) != BT_OK || owned || size != 6)
			return 0;
		for (int y = 0; y < 2; y++)
			for (int x = 0; x < 3; x++)
				if (d[y * 3 + x] != (uint8_t)(i * 100 + y * 10 + x))
					return 0;
	}
	return 1;
}

TEST(idx_plain_and_gz)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_AUTO);
	int kind;

	mkdirs(P("mnist"));
	make_idx(P("mnist/train-images-idx3-ubyte"), P("mnist/train-labels-idx1-ubyte"), 4, 4,
		 0);
	make_idx(P("mnist/t10k-images-idx3-ubyte.gz"), P("mnist/t10k-labels-idx1-ubyte.gz"), 3,
		 3, 1);
	CHECK_EQ(bt_source_detect(P("mnist/t10k-images-idx3-ubyte.gz"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_IDX);
	CHECK_EQ(bt_source_detect(P("mnist/train-images-idx3-ubyte"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_IDX);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("mnist/train-images-idx3-ubyte"), &o), BT_OK);
	CHECK_EQ(s.n, 4);
	CHECK(check_idx_items(&s, 0, 4));
	CHECK_EQ(bt_itemset_add(&s, P("mnist/t10k-images-idx3-ubyte.gz"), &o), BT_OK);
	CHECK_EQ(s.n, 7);
	CHECK(check_idx_items(&s, 4, 3));
	CHECK_EQ(s.items[4].src, 1);
	CHECK_EQ(s.nclasses, 0);
	bt_itemset_free(&s);

	/* labels under another name, given explicitly; labels gzipped, images not */
	make_idx(P("mnist/imgs"), P("mnist/labs.gz"), 2, 2, 0);
	make_idx(P("mnist/imgs2.gz"), P("mnist/labs.gz"), 2, 2, 1);
	o.labels = P("mnist/labs.gz");
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("mnist/imgs"), &o), BT_OK);
	CHECK(check_idx_items(&s, 0, 2));
	bt_itemset_free(&s);

	/* derived name with the other compression */
	make_idx(P("mnist/x-images-idx3-ubyte.gz"), P("mnist/x-labels-idx1-ubyte"), 2, 2, 0);
	o.labels = NULL;
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("mnist/x-images-idx3-ubyte.gz"), &o), BT_OK);
	CHECK(check_idx_items(&s, 0, 2));
	bt_itemset_free(&s);
}

TEST(idx_errors)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_IDX);
	char want[600];

	bt_itemset_init(&s);
	make_idx(P("mnist/bad-images-idx3-ubyte"), P("mnist/bad-labels-idx1-ubyte"), 4, 3, 0);
	CHECK_EQ(bt_itemset_add(&s, P("mnist/bad-images-idx3-ubyte"), &o), BT_ERR_FORMAT);
	snprintf(want, sizeof want, "%s: 3 labels but %s has 4 images",
		 P("mnist/bad-labels-idx1-ubyte"), P("mnist/bad-images-idx3-ubyte"));
	CHECK_STR(bt_errmsg(), want);

	make_idx(P("mnist/lonely"), P("mnist/whatever"), 2, 2, 0);
	CHECK_EQ(bt_itemset_add(&s, P("mnist/lonely"), &o), BT_ERR_NOTFOUND);
	snprintf(want, sizeof want, "%s: no label file (give --labels FILE)", P("mnist/lonely"));
	CHECK_STR(bt_errmsg(), want);
	unlink(P("mnist/bad-labels-idx1-ubyte"));
	CHECK_EQ(bt_itemset_add(&s, P("mnist/bad-images-idx3-ubyte"), &o), BT_ERR_NOTFOUND);

	o.kind = BT_SRC_AUTO;
	CHECK_EQ(bt_itemset_add(&s, P("mnist/whatever"), &o), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "an IDX label file; give the images file") != NULL);

	/* truncated pixels, gzipped */
	{
		uint8_t img[16 + 10];
		be32(img, 0x803);
		be32(img + 4, 2);
		be32(img + 8, 2);
		be32(img + 12, 3);
		memset(img + 16, 1, 10);
		put_gz(P("mnist/cut-images-idx3-ubyte.gz"), img, sizeof img);
		make_idx(P("mnist/unused"), P("mnist/cut-labels-idx1-ubyte.gz"), 2, 2, 1);
	}
	CHECK_EQ(bt_itemset_add(&s, P("mnist/cut-images-idx3-ubyte.gz"), &o), BT_ERR_TRUNCATED);
	CHECK(strstr(bt_errmsg(), "cut-images-idx3-ubyte.gz: truncated: 10 of 12 bytes of "
		     "pixels") != NULL);
	CHECK_EQ(s.n, 0);
	CHECK_EQ(s.nsrcs, 0);
	bt_itemset_free(&s);
}

/* ---- CIFAR ---- */

/* Stored plane c, pixel p of record i: (i * 7 + c * 60 + p) & 255. */
static void make_cifar(const char *path, int n, int hundred)
{
	size_t rec = hundred ? 3074 : 3073;
	uint8_t *b = malloc(n * rec);
	for (int i = 0; i < n; i++) {
		uint8_t *r = b + i * rec;
		if (hundred) {
			r[0] = (uint8_t)(i % 20);
			r[1] = (uint8_t)(50 + i);
		} else {
			r[0] = (uint8_t)(9 - i);
		}
		for (int c = 0; c < 3; c++)
			for (int p = 0; p < 1024; p++)
				r[rec - 3072 + c * 1024 + p] = (uint8_t)(i * 7 + c * 60 + p);
	}
	put(path, b, n * rec);
	free(b);
}

static int check_cifar(const struct bt_itemset *s, int n, int hundred)
{
	for (int i = 0; i < n; i++) {
		const struct bt_item *it = &s->items[i];
		uint8_t *d;
		size_t size;
		int owned;
		if (it->where != BT_ITEM_PIXELS || it->height != 32 || it->width != 32 ||
		    it->channels != 3 || it->label != (hundred ? 50 + i : 9 - i) ||
		    it->id != (uint64_t)i)
			return 0;
		if (bt_item_load(s, it, &d, &size, &owned) != BT_OK || owned || size != 3072)
			return 0;
		for (int y = 0; y < 32; y++)
			for (int x = 0; x < 32; x++)
				for (int c = 0; c < 3; c++)
					if (d[(y * 32 + x) * 3 + c] !=
					    (uint8_t)(i * 7 + c * 60 + y * 32 + x))
						return 0;
	}
	return 1;
}

TEST(cifar)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_AUTO);
	int kind;

	mkdirs(P("c10"));
	mkdirs(P("c100"));
	make_cifar(P("c10/data_batch_1.bin"), 5, 0);
	make_cifar(P("c100/train.bin"), 4, 1);
	puts_file(P("c10/batches.meta.txt"), "airplane\nautomobile\nbird\ncat\ndeer\ndog\n"
		  "frog\nhorse\nship\ntruck\n\n");
	CHECK_EQ(bt_source_detect(P("c10/data_batch_1.bin"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_CIFAR);
	CHECK_EQ(bt_source_detect(P("c100/train.bin"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_CIFAR);

	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("c10/data_batch_1.bin"), &o), BT_OK);
	CHECK_EQ(s.n, 5);
	CHECK(check_cifar(&s, 5, 0));
	CHECK_EQ(s.nclasses, 10);
	CHECK_STR(s.classes[0], "airplane");
	CHECK_STR(s.classes[9], "truck");
	bt_itemset_free(&s);

	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("c100/train.bin"), &o), BT_OK);
	CHECK_EQ(s.n, 4);
	CHECK(check_cifar(&s, 4, 1));
	CHECK_EQ(s.nclasses, 0);
	bt_itemset_free(&s);

	/* The same bytes read as the other variant are rejected or reinterpreted. */
	o.kind = BT_SRC_CIFAR;
	o.cifar = 10;
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("c100/train.bin"), &o), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "is not a whole number of 3073-byte CIFAR-10 records"));
	bt_itemset_free(&s);
}

TEST(cifar_ambiguous)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_CIFAR);
	/* 3073 * 3074 bytes: 3074 CIFAR-10 records or 3073 CIFAR-100 records. */
	make_cifar(P("both.bin"), 3073, 1);
	bt_itemset_init(&s);
	CHECK_EQ(bt_itemset_add(&s, P("both.bin"), &o), BT_ERR_INVALID);
	CHECK(strstr(bt_errmsg(), "fit both CIFAR-10 and CIFAR-100") != NULL);
	o.cifar = 100;
	CHECK_EQ(bt_itemset_add(&s, P("both.bin"), &o), BT_OK);
	CHECK_EQ(s.n, 3073);
	CHECK_EQ(s.items[3072].label, (uint8_t)(50 + 3072));
	bt_itemset_free(&s);
	unlink(P("both.bin"));
}

/* ---- detection and the set ---- */

TEST(detect_misc)
{
	int kind = -1;
	CHECK_EQ(bt_source_detect("-", &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_STDIN);
	puts_file(P("empty"), "");
	CHECK_EQ(bt_source_detect(P("empty"), &kind), BT_ERR_FORMAT);
	CHECK(strstr(bt_errmsg(), "empty: empty file") != NULL);
	/* a size that fits CIFAR without the .bin name is a list */
	make_cifar(P("batch.dat"), 1, 0);
	CHECK_EQ(bt_source_detect(P("batch.dat"), &kind), BT_OK);
	CHECK_EQ(kind, BT_SRC_LIST);
}

TEST(mixed_set)
{
	struct bt_itemset s;
	struct bt_source_opts o = opts(BT_SRC_AUTO);
	uint64_t off[3];

	bt_itemset_init(&s);
	make_rec(P("m.rec"), off, -1);
	CHECK_EQ(bt_itemset_add(&s, P("m.rec"), &o), BT_OK);
	CHECK_EQ(bt_itemset_add(&s, P("c10/data_batch_1.bin"), &o), BT_OK);
	CHECK_EQ(bt_itemset_add(&s, P("l/train.lst"), &o), BT_OK);
	CHECK_EQ(s.nsrcs, 3);
	CHECK_EQ(s.n, 3 + 5 + 3);
	CHECK(loads_as(&s, 1, IMG1, sizeof IMG1 - 1));
	CHECK_EQ(s.items[3].id, 3);
	CHECK_EQ(s.items[3].src, 1);
	CHECK_EQ(s.items[8].src, 2);
	/* a failing add leaves the set as it was */
	CHECK(bt_itemset_add(&s, P("nodirs"), &o) < 0);
	CHECK_EQ(s.nsrcs, 3);
	CHECK_EQ(s.n, 11);
	CHECK_EQ(s.nclasses, 10);
	CHECK(loads_as(&s, 2, IMG2, sizeof IMG2 - 1));
	bt_itemset_free(&s);
	CHECK_EQ(s.n, 0);
	bt_itemset_free(&s); /* freeing twice is harmless */
}

int main(void)
{
	snprintf(tmp, sizeof tmp, "%s/bt-test-source-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(kind_names);
	RUN(folder_basic);
	RUN(folder_union);
	RUN(folder_classes_option);
	RUN(folder_errors);
	RUN(list_basic);
	RUN(list_classes);
	RUN(list_errors);
	RUN(list_many);
	RUN(stream_lines);
	RUN(stream_errors);
	RUN(rec_basic);
	RUN(rec_split_header);
	RUN(rec_errors);
	RUN(idx_plain_and_gz);
	RUN(idx_errors);
	RUN(cifar);
	RUN(cifar_ambiguous);
	RUN(detect_misc);
	RUN(mixed_set);
	nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return test_summary();
}
