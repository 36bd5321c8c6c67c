/* source_mxnet.c: MXNet RecordIO (.rec) files as a source, as written by im2rec and
 * dmlc-core's RecordIOWriter.
 *
 * A file is a sequence of parts: u32 magic 0xced7230a, u32 lrec (the top 3 bits a
 * continuation flag, the low 29 bits the data length), the data, zero padding to 4 bytes.
 * A record is one part (flag 0) or a first part (1), middle parts (2) and a last part (3):
 * the writer cuts a record wherever its data holds the magic at a 4-byte aligned position
 * and drops those 4 bytes, so a reader puts the magic back between parts. An image
 * record's data starts with MXNet's IRHeader {u32 flag; f32 label; u64 id; u64 id2}; when
 * flag > 0, flag float32 labels follow it and replace the header's label. The rest is the
 * encoded image.
 *
 * Enumeration reads only the headers and seeks past the images, so a 140 GB file is
 * scanned in one pass of small reads. Loading uses pread on the source's descriptor, which
 * lets several threads load from one file at once.
 */
#define BT_SOURCE_INTERNAL
#include "source.h"
#include "bt.h"
#include "record.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECORDIO_MAGIC 0xced7230au
#define IRHEADER 24
#define LREC_LEN_MASK ((1u << 29) - 1)

struct recfile {
	int fd;
	uint64_t size;
	const char *path;
};

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static float get_f32(const uint8_t *p)
{
	uint32_t u = get_u32(p);
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Error about the record at pos; index < 0 when it is not known (loading). */
static int rec_fail(const struct recfile *f, uint64_t pos, long long index, int status,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int rec_fail(const struct recfile *f, uint64_t pos, long long index, int status,
		    const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (index >= 0)
		return bt_error(status, "%s: record %lld at offset %llu: %s", f->path, index,
				(unsigned long long)pos, what);
	return bt_error(status, "%s: record at offset %llu: %s", f->path,
			(unsigned long long)pos, what);
}

/* Bytes read: n, fewer at the end of the file, or -1 with errno. */
static ssize_t pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *nb;
	size_t ncap;
	if (need <= *cap)
		return BT_OK;
	ncap = *cap ? *cap : 256;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (!(nb = realloc(*buf, ncap)))
		return bt_error(BT_ERR_NOMEM, "out of memory (%zu bytes)", ncap);
	*buf = nb;
	*cap = ncap;
	return BT_OK;
}

/* Walks the parts of the record at pos, joining at most limit bytes of its data into
 * *buf (*n of them). *total is the length of the whole joined record and *next the
 * offset after its last part. */
static int rec_read(const struct recfile *f, uint64_t pos, long long index, size_t limit,
		    uint8_t **buf, size_t *cap, size_t *n, uint64_t *total, uint64_t *next)
{
	static const uint8_t magic[4] = { 0x0a, 0x23, 0xd7, 0xce };
	uint64_t p = pos;
	int ret;

	*n = 0;
	*total = 0;
	for (int part = 0;; part++) {
		/* The part header and, in the same read, the start of its data: enumeration
		 * then costs one read per record. */
		uint8_t h[8 + 120];
		uint32_t cflag, len, padded;
		size_t copy = limit - *n < 120 ? limit - *n : 120;
		ssize_t got = pread_full(f->fd, h, 8 + copy, p);

		if (got < 0)
			return bt_error_errno("%s", f->path);
		if (got < 8)
			return rec_fail(f, pos, index, BT_ERR_TRUNCATED, "truncated");
		if (get_u32(h) != RECORDIO_MAGIC)
			return rec_fail(f, pos, index, BT_ERR_FORMAT, "bad magic 0x%08x at offset %llu",
					get_u32(h), (unsigned long long)p);
		cflag = get_u32(h + 4) >> 29;
		len = get_u32(h + 4) & LREC_LEN_MASK;
		if (part == 0 ? cflag != 0 && cflag != 1 : cflag != 2 && cflag != 3)
			return rec_fail(f, pos, index, BT_ERR_FORMAT, "unexpected continuation "
					"flag %u in part %d at offset %llu", cflag, part,
					(unsigned long long)p);
		padded = (len + 3u) & ~3u;
		if (p + 8 + padded > f->size)
			return rec_fail(f, pos, index, BT_ERR_TRUNCATED, "truncated");
		copy = limit - *n < len ? limit - *n : len;
		if (copy > 0) {
			if ((ret = reserve(buf, cap, *n + copy)) < 0)
				return ret;
			if (copy <= (size_t)got - 8) {
				memcpy(*buf + *n, h + 8, copy);
			} else {
				got = pread_full(f->fd, *buf + *n, copy, p + 8);
				if (got < 0)
					return bt_error_errno("%s", f->path);
				if ((size_t)got < copy)
					return rec_fail(f, pos, index, BT_ERR_TRUNCATED,
							"truncated");
			}
			*n += copy;
		}
		*total += len;
		p += 8 + padded;
		if (cflag == 0 || cflag == 3)
			break;
		copy = limit - *n < 4 ? limit - *n : 4;
		if (copy > 0) {
			if ((ret = reserve(buf, cap, *n + copy)) < 0)
				return ret;
			memcpy(*buf + *n, magic, copy);
			*n += copy;
		}
		*total += 4;
	}
	*next = p;
	return BT_OK;
}

/* Label of a record from its float: rounded, -1 when it is no class index. */
static int32_t float_label(float v)
{
	if (!isfinite(v) || v < -0.5f || v >= 2147483520.0f)
		return -1;
	return v < 0 ? 0 : (int32_t)(v + 0.5f);
}

static int offset_cmp(const void *key, const void *elem)
{
	uint64_t k = *(const uint64_t *)key, o = ((const struct bt_item *)elem)->offset;
	return k < o ? -1 : k > o;
}

/* One line of an .idx file, "key<TAB>offset": 1 and *off, 0 for a blank line, -1 when
 * malformed. */
static int idx_line(const char *line, uint64_t *off)
{
	const char *p = line;
	char *end;
	while (*p && isspace((unsigned char)*p))
		p++;
	if (*p == 0)
		return 0;
	errno = 0;
	strtoull(p, &end, 10);
	if (end == p || (*end != '\t' && *end != ' '))
		return -1;
	p = end + 1;
	*off = strtoull(p, &end, 10);
	if (end == p || !isdigit((unsigned char)*p) || errno)
		return -1;
	while (*end && isspace((unsigned char)*end))
		end++;
	return *end ? -1 : 1;
}

/* The .idx file beside the .rec (lines "key<TAB>offset") must list every record: a stale
 * one means the two files come from different runs of im2rec. */
static int check_idx(struct bt_itemset *s, const char *path, size_t first, uint64_t nrec)
{
	size_t len = strlen(path), cap = 0;
	char *idx = NULL, *line = NULL;
	unsigned long lineno = 0;
	uint64_t entries = 0;
	FILE *fp = NULL;
	int ret = BT_OK;

	if (len < 4 || strcmp(path + len - 4, ".rec") != 0)
		return BT_OK;
	if (!(idx = strdup(path)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	memcpy(idx + len - 4, ".idx", 4);
	if (!(fp = fopen(idx, "r"))) {
		if (errno != ENOENT)
			ret = bt_error_errno("%s", idx);
		goto out;
	}
	for (;;) {
		uint64_t off;
		int r;
		errno = 0;
		if (getline(&line, &cap, fp) < 0) {
			if (ferror(fp))
				ret = bt_error_errno("%s", idx);
			break;
		}
		lineno++;
		if ((r = idx_line(line, &off)) == 0)
			continue;
		if (r < 0) {
			ret = bt_error(BT_ERR_FORMAT, "%s:%lu: expected 'key<TAB>offset'", idx,
				       lineno);
			goto out;
		}
		if (!bsearch(&off, s->items + first, s->n - first, sizeof *s->items, offset_cmp)) {
			ret = bt_error(BT_ERR_FORMAT, "%s:%lu: offset %llu is not the start of a "
				       "record of %s", idx, lineno, (unsigned long long)off, path);
			goto out;
		}
		entries++;
	}
	if (ret == BT_OK && entries != nrec)
		ret = bt_error(BT_ERR_FORMAT, "%s: %llu entries but %s has %llu records", idx,
			       (unsigned long long)entries, path, (unsigned long long)nrec);
out:
	if (fp)
		fclose(fp);
	free(line);
	free(idx);
	return ret;
}

int bt_source_add_rec(struct bt_itemset *s, int src, const struct bt_source_opts *o)
{
	struct recfile f = { .fd = -1, .path = s->srcs[src].path };
	uint8_t *head = NULL;
	size_t cap = 0, n, first = s->n;
	uint64_t pos = 0, total, next;
	long long index = 0;
	struct stat st;
	int ret = BT_OK;

	if ((f.fd = open(f.path, O_RDONLY | O_CLOEXEC)) < 0)
		return bt_error_errno("%s", f.path);
	s->srcs[src].fd = f.fd; /* closed with the source */
	if (fstat(f.fd, &st) != 0)
		return bt_error_errno("%s", f.path);
	f.size = (uint64_t)st.st_size;
	for (; pos < f.size; pos = next, index++) {
		struct bt_item *it;
		uint32_t flag;
		float label;

		if ((ret = rec_read(&f, pos, index, IRHEADER, &head, &cap, &n, &total, &next)) < 0)
			goto out;
		if (total < IRHEADER) {
			ret = rec_fail(&f, pos, index, BT_ERR_FORMAT, "%llu bytes, shorter than "
				       "its header", (unsigned long long)total);
			goto out;
		}
		flag = get_u32(head);
		label = get_f32(head + 4);
		if (flag > 0) {
			if (flag > BT_MAX_SOFT) {
				ret = rec_fail(&f, pos, index, BT_ERR_UNSUPPORTED, "%u labels (at "
					       "most %d)", flag, BT_MAX_SOFT);
				goto out;
			}
			if (total < IRHEADER + 4ull * flag) {
				ret = rec_fail(&f, pos, index, BT_ERR_FORMAT, "%llu bytes, too "
					       "short for its %u labels",
					       (unsigned long long)total, flag);
				goto out;
			}
			if ((ret = rec_read(&f, pos, index, IRHEADER + 4 * (size_t)flag, &head,
					    &cap, &n, &total, &next)) < 0)
				goto out;
			label = get_f32(head + IRHEADER);
		}
		if (!(it = bt_itemset_push(s))) {
			ret = BT_ERR_NOMEM;
			goto out;
		}
		it->where = BT_ITEM_REC;
		it->src = src;
		it->offset = pos;
		it->id = get_u64(head + 8);
		it->label = float_label(label);
		if (flag > 0) {
			if (!(it->soft = bt_source_alloc(s, flag * sizeof *it->soft))) {
				ret = BT_ERR_NOMEM;
				goto out;
			}
			it->nsoft = flag;
			for (uint32_t k = 0; k < flag; k++)
				it->soft[k] = get_f32(head + IRHEADER + 4 * k);
		}
		if (o && o->nclasses && it->label >= (int32_t)o->nclasses) {
			ret = rec_fail(&f, pos, index, BT_ERR_INVALID, "label %d is not below the "
				       "%u classes of --classes", it->label, o->nclasses);
			goto out;
		}
	}
	if (index == 0) {
		ret = bt_error(BT_ERR_FORMAT, "%s: no records", f.path);
		goto out;
	}
	ret = check_idx(s, f.path, first, (uint64_t)index);
out:
	free(head);
	return ret;
}

int bt_source_load_rec(const struct bt_itemset *s, const struct bt_item *it, uint8_t **data,
		       size_t *size)
{
	const struct bt_source *src = &s->srcs[it->src];
	struct recfile f = { .fd = src->fd, .path = src->path };
	uint8_t *buf = NULL;
	size_t cap = 0, n, skip;
	uint64_t total, next;
	struct stat st;
	int ret;

	if (f.fd < 0)
		return bt_error(BT_ERR_INVALID, "%s: not an open RecordIO source", f.path);
	if (fstat(f.fd, &st) != 0)
		return bt_error_errno("%s", f.path);
	f.size = (uint64_t)st.st_size;
	if ((ret = rec_read(&f, it->offset, -1, SIZE_MAX, &buf, &cap, &n, &total, &next)) < 0)
		goto out;
	skip = IRHEADER;
	if (n >= IRHEADER)
		skip += 4 * (size_t)get_u32(buf);
	if (n < skip) {
		ret = rec_fail(&f, it->offset, -1, BT_ERR_FORMAT, "%zu bytes, shorter than its "
			       "header", n);
		goto out;
	}
	memmove(buf, buf + skip, n - skip);
	*data = buf;
	*size = n - skip;
	buf = NULL;
out:
	free(buf);
	return ret;
}
