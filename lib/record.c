/* record.c: writer and reader of the bt record file (.btr); the layout is in record.h.
 *
 * The writer streams records front to back and keeps only the 8-byte offset of each, so it
 * can write to a pipe and still end with a footer. The reader reads front to back as well;
 * on a seekable file it first loads the footer through the trailer, which gives the count,
 * random access and the class names, and lets it check every record's offset as it goes.
 */
#define _GNU_SOURCE
#include "record.h"
#include "bt.h"
#include "outfile.h"
#include "le.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t file_magic[8] = {0x89, 'B', 'T', 'R', '\r', '\n', 0x1a, '\n'};
static const uint8_t rec_marker[4] = {'B', 'T', 'R', 'R'};
static const uint8_t footer_marker[4] = {'B', 'T', 'R', 'X'};
static const uint8_t end_marker[4] = {'B', 'T', 'R', 'E'};

/* A payload this large in a header is taken as corruption rather than allocated. */
#define MAX_PAYLOAD (UINT64_C(1) << 40)
#define MAX_CLASS_NAME (1u << 16)
#define IOBUF (1u << 20)
/* The largest record a seek reads whole with pread; larger ones go through fp. */
#define WIN_MAX ((uint64_t)16 << 20)


const char *bt_payload_name(int kind)
{
	switch (kind) {
	case BT_PAYLOAD_JPEG: return "jpeg";
	case BT_PAYLOAD_PNG: return "png";
	case BT_PAYLOAD_RAW: return "raw";
	case BT_PAYLOAD_F32: return "f32";
	case BT_PAYLOAD_F16: return "f16";
	}
	return "unknown";
}

int bt_record_check(const struct bt_record *rec)
{
	uint64_t elems = 1;
	int i;

	if (rec->kind < 1 || rec->kind > BT_PAYLOAD_MAX)
		return bt_error(BT_ERR_FORMAT, "unknown payload kind %d", rec->kind);
	if (rec->ndim < 0 || rec->ndim > BT_MAX_DIMS)
		return bt_error(BT_ERR_FORMAT, "%d dimensions (at most %d)", rec->ndim, BT_MAX_DIMS);
	if (rec->nsoft > BT_MAX_SOFT)
		return bt_error(BT_ERR_FORMAT, "%u soft labels (at most %d)", rec->nsoft, BT_MAX_SOFT);
	if (rec->label < -1)
		return bt_error(BT_ERR_FORMAT, "label %d", rec->label);
	if (rec->size > MAX_PAYLOAD)
		return bt_error(BT_ERR_FORMAT, "payload of %llu bytes", (unsigned long long)rec->size);
	for (i = 0; i < rec->ndim; i++)
		elems *= rec->shape[i];
	for (; i < BT_MAX_DIMS; i++)
		if (rec->shape[i] != 0)
			return bt_error(BT_ERR_FORMAT, "shape entry %d set beyond ndim %d", i, rec->ndim);
	if (rec->kind == BT_PAYLOAD_RAW || rec->kind == BT_PAYLOAD_F32 || rec->kind == BT_PAYLOAD_F16) {
		uint64_t esize = rec->kind == BT_PAYLOAD_RAW ? 1 : rec->kind == BT_PAYLOAD_F32 ? 4 : 2;
		if (rec->ndim == 0 || elems * esize != rec->size)
			return bt_error(BT_ERR_FORMAT, "%s payload of %llu bytes does not match its shape",
					bt_payload_name(rec->kind), (unsigned long long)rec->size);
	}
	return BT_OK;
}

/* ---------------------------------------------------------------- writer */

struct bt_record_writer {
	struct bt_outfile out;
	int to_stdout;    /* out is standard output, which keeps iobuf after the end */
	char *iobuf;
	uint64_t off;     /* bytes written so far */
	uint64_t *offs;
	uint64_t n, cap;
	char **classes;
	uint32_t nclasses;
	int nosync;       /* commit renames without fsync */
};

static int wr(bt_record_writer *w, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, w->out.fp) != n)
		return bt_error_errno("%s", bt_outfile_name(&w->out));
	w->off += n;
	return BT_OK;
}

/*
 * A pipe holds 64 KiB by default, so a consumer reading a stream of 600 KB tensors
 * wakes the writer ten times a record; ask for the largest buffer an unprivileged
 * process may set (/proc/sys/fs/pipe-max-size, 1 MiB by default). Best effort: on
 * anything but a pipe, or past the user's pipe quota, the buffer stays as it is.
 */
static void grow_pipe(int fd)
{
#ifdef F_SETPIPE_SZ
	struct stat st;
	char buf[32];
	long max = 1L << 20;
	FILE *f;

	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode))
		return;
	if ((f = fopen("/proc/sys/fs/pipe-max-size", "r"))) {
		if (fgets(buf, sizeof buf, f))
			max = strtol(buf, NULL, 10);
		fclose(f);
	}
	if (max > (long)IOBUF)
		max = (long)IOBUF;
	if (max > 0 && fcntl(fd, F_GETPIPE_SZ) < max)
		(void)fcntl(fd, F_SETPIPE_SZ, (int)max);
#else
	(void)fd;
#endif
}

int bt_record_writer_open(bt_record_writer **out, const char *path)
{
	bt_record_writer *w = calloc(1, sizeof *w);
	uint8_t hdr[BT_RECORD_FILE_HEADER] = {0};
	int st;

	*out = NULL;
	if (!w)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	if ((st = bt_outfile_open(&w->out, path)) < 0) {
		free(w);
		return st;
	}
	w->to_stdout = w->out.fp == stdout;
	grow_pipe(fileno(w->out.fp));
	w->iobuf = malloc(IOBUF);
	if (w->iobuf)
		setvbuf(w->out.fp, w->iobuf, _IOFBF, IOBUF);
	memcpy(hdr, file_magic, 8);
	put_u32(hdr + 8, BT_RECORD_VERSION);
	put_u32(hdr + 12, BT_RECORD_FILE_HEADER);
	if ((st = wr(w, hdr, sizeof hdr)) < 0)
		goto fail;
	*out = w;
	return BT_OK;
fail:
	bt_record_writer_abort(w);
	return st;
}

/* The 48-byte header and the soft labels as they go on disk (soft: 4 * nsoft bytes). */
static void encode_header(const struct bt_record *rec, uint8_t hdr[BT_RECORD_HEADER])
{
	memset(hdr, 0, BT_RECORD_HEADER);
	memcpy(hdr, rec_marker, 4);
	hdr[4] = (uint8_t)rec->kind;
	hdr[5] = (uint8_t)rec->ndim;
	put_u16(hdr + 6, (uint16_t)rec->nsoft);
	put_u64(hdr + 8, rec->size);
	put_u64(hdr + 16, rec->id);
	put_u32(hdr + 24, (uint32_t)rec->label);
	for (int i = 0; i < BT_MAX_DIMS; i++)
		put_u32(hdr + 28 + 4 * i, i < rec->ndim ? rec->shape[i] : 0);
}

/* Soft labels from index i on, at most 16 of them, as they go on disk; returns how many. */
static uint32_t encode_soft(const struct bt_record *rec, uint32_t i, uint8_t f[64])
{
	uint32_t k = rec->nsoft - i < 16 ? rec->nsoft - i : 16;
	for (uint32_t j = 0; j < k; j++) {
		uint32_t u;
		memcpy(&u, &rec->soft[i + j], 4);
		put_u32(f + 4 * j, u);
	}
	return k;
}

uint32_t bt_record_crc(const struct bt_record *rec)
{
	uint8_t hdr[BT_RECORD_HEADER], f[64];
	uint32_t crc, k;
	encode_header(rec, hdr);
	crc = bt_crc32(0, hdr, sizeof hdr);
	for (uint32_t i = 0; i < rec->nsoft; i += k) {
		k = encode_soft(rec, i, f);
		crc = bt_crc32(crc, f, 4 * k);
	}
	return bt_crc32(crc, rec->data, rec->size);
}

int bt_record_writer_put(bt_record_writer *w, const struct bt_record *rec)
{
	return bt_record_writer_put_crc(w, rec, bt_record_crc(rec));
}

int bt_record_writer_put_crc(bt_record_writer *w, const struct bt_record *rec, uint32_t crc)
{
	uint8_t hdr[BT_RECORD_HEADER], f[64], crcb[4];
	int st;

	if ((st = bt_record_check(rec)) < 0)
		return st;
	if (w->n == w->cap) {
		uint64_t cap = w->cap ? w->cap * 2 : 1024;
		uint64_t *o = realloc(w->offs, cap * sizeof *o);
		if (!o)
			return bt_error(BT_ERR_NOMEM, "out of memory for the record index");
		w->offs = o;
		w->cap = cap;
	}
	encode_header(rec, hdr);
	w->offs[w->n] = w->off;
	if ((st = wr(w, hdr, sizeof hdr)) < 0)
		return st;
	for (uint32_t i = 0, k; i < rec->nsoft; i += k) {
		k = encode_soft(rec, i, f);
		if ((st = wr(w, f, 4 * k)) < 0)
			return st;
	}
	if ((st = wr(w, rec->data, rec->size)) < 0)
		return st;
	put_u32(crcb, crc);
	if ((st = wr(w, crcb, 4)) < 0)
		return st;
	w->n++;
	return BT_OK;
}

void bt_record_writer_set_sync(bt_record_writer *w, int sync)
{
	w->nosync = !sync;
}

static int dup_names(char ***dst, uint32_t *ndst, uint32_t n, const char *const *names)
{
	char **c = calloc(n ? n : 1, sizeof *c);
	uint32_t i;
	if (!c)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if (!(c[i] = strdup(names[i] ? names[i] : ""))) {
			while (i--)
				free(c[i]);
			free(c);
			return bt_error(BT_ERR_NOMEM, "out of memory");
		}
	}
	*dst = c;
	*ndst = n;
	return BT_OK;
}

static void free_names(char **c, uint32_t n)
{
	for (uint32_t i = 0; c && i < n; i++)
		free(c[i]);
	free(c);
}

int bt_record_writer_set_classes(bt_record_writer *w, uint32_t n, const char *const *names)
{
	char **c;
	uint32_t nc;
	int st = dup_names(&c, &nc, n, names);
	if (st < 0)
		return st;
	free_names(w->classes, w->nclasses);
	w->classes = c;
	w->nclasses = nc;
	return BT_OK;
}

uint64_t bt_record_writer_count(const bt_record_writer *w) { return w->n; }
uint64_t bt_record_writer_bytes(const bt_record_writer *w) { return w->off; }

uint64_t bt_record_writer_final_bytes(const bt_record_writer *w)
{
	uint64_t n = w->off + 16 + 8 * w->n + 4 + 4 + BT_RECORD_TRAILER;
	for (uint32_t i = 0; i < w->nclasses; i++)
		n += 4 + strlen(w->classes[i]);
	return n;
}

/* Footer and trailer for records at offs[0..n), the footer starting at byte footer_off.
 * Shared by the writer and by reindex. */
static int write_footer(FILE *fp, const char *name, uint64_t footer_off, const uint64_t *offs,
			uint64_t n, uint32_t nclasses, char *const *classes, uint64_t *written)
{
	uint8_t b[24];
	uint32_t crc;
	uint64_t i, total = 0;

#define EMIT(p, len) do { if ((len) && fwrite((p), 1, (len), fp) != (len)) goto ioerr; \
	crc = bt_crc32(crc, (p), (len)); total += (len); } while (0)
	crc = 0;
	memcpy(b, footer_marker, 4);
	put_u32(b + 4, 0);
	put_u64(b + 8, n);
	EMIT(b, 16);
	for (i = 0; i < n; i++) {
		put_u64(b, offs[i]);
		EMIT(b, 8);
	}
	put_u32(b, nclasses);
	EMIT(b, 4);
	for (i = 0; i < nclasses; i++) {
		size_t len = strlen(classes[i]);
		put_u32(b, (uint32_t)len);
		EMIT(b, 4);
		EMIT(classes[i], len);
	}
#undef EMIT
	put_u32(b, crc);
	if (fwrite(b, 1, 4, fp) != 4)
		goto ioerr;
	put_u64(b, footer_off);
	put_u64(b + 8, n);
	put_u32(b + 16, bt_crc32(0, b, 16));
	memcpy(b + 20, end_marker, 4);
	if (fwrite(b, 1, 24, fp) != 24)
		goto ioerr;
	*written = total + 4 + 24;
	return BT_OK;
ioerr:
	return bt_error_errno("%s", name);
}

int bt_record_writer_commit(bt_record_writer *w)
{
	uint64_t n;
	int st;

	st = write_footer(w->out.fp, bt_outfile_name(&w->out), w->off, w->offs, w->n, w->nclasses,
			  w->classes, &n);
	if (st < 0)
		goto fail;
	w->off += n;
	st = bt_outfile_commit(&w->out, !w->nosync);
	if (st < 0)
		goto fail;
	bt_record_writer_abort(w); /* frees; nothing left to remove */
	return BT_OK;
fail:
	bt_record_writer_abort(w);
	return st;
}

void bt_record_writer_abort(bt_record_writer *w)
{
	if (!w)
		return;
	/* Standard output stays open, and keeps the buffer setvbuf gave it. */
	if (!w->to_stdout)
		free(w->iobuf);
	bt_outfile_abort(&w->out);
	free(w->offs);
	free_names(w->classes, w->nclasses);
	free(w);
}

/* ---------------------------------------------------------------- reader */

struct bt_record_reader {
	FILE *fp;
	int owns_fp;
	char *name;
	char *iobuf;
	int seekable;
	uint64_t fsize;          /* seekable files only */
	uint64_t pos;            /* offset of the next unread byte */
	uint64_t index;          /* index of the next record */
	int done;
	int walk;                /* reindex: stop at a footer marker without reading it */
	uint64_t last_start;     /* offset where the last call of next began */
	/* footer */
	int has_footer;
	char problem[160];       /* why there is no footer */
	uint64_t footer_off;
	uint64_t count;
	uint64_t *offs;          /* from the footer, or (streams) as seen */
	uint64_t noffs, capoffs;
	char **classes;
	uint32_t nclasses;
	/* the current record */
	uint8_t *buf;
	size_t bufcap;
	float *soft;
	size_t softcap;
	/* Random access: the record a seek lands on, read whole with one pread (a buffered
	 * read after a seek would refill all of IOBUF for it); rd serves from here first, then
	 * from fp, which is sought to pos first when resync is set. */
	uint8_t *win;
	size_t wincap, winlen, winpos;
	int resync;
};

/* Reads exactly n bytes: returns n, or fewer at end of file (then errors are told apart by
 * ferror). */
static size_t rd(bt_record_reader *r, void *p, size_t n)
{
	size_t got = 0, more;
	if (r->winpos < r->winlen) {
		got = r->winlen - r->winpos < n ? r->winlen - r->winpos : n;
		memcpy(p, r->win + r->winpos, got);
		r->winpos += got;
		r->pos += got;
		if (got == n)
			return n;
	}
	if (r->resync) {
		if (fseeko(r->fp, (off_t)r->pos, SEEK_SET) != 0)
			return got;
		r->resync = 0;
	}
	more = n - got ? fread((uint8_t *)p + got, 1, n - got, r->fp) : 0;
	r->pos += more;
	return got + more;
}

static int rd_fail(bt_record_reader *r, const char *what)
{
	if (ferror(r->fp))
		return bt_error_errno("%s: %s", r->name, what);
	return bt_error(BT_ERR_TRUNCATED, "%s: %s: file ends early at byte %llu", r->name, what,
			(unsigned long long)r->pos);
}

/* Parses a footer held in memory (len bytes from marker to CRC) into r. */
static int parse_footer(bt_record_reader *r, const uint8_t *p, uint64_t len, uint64_t expect_count,
			char *why, size_t whylen)
{
	uint64_t n, i, at;
	uint32_t nc, c;

	if (len < 24 || memcmp(p, footer_marker, 4) != 0) {
		snprintf(why, whylen, "damaged (bad footer marker)");
		return -1;
	}
	if (bt_crc32(0, p, len - 4) != get_u32(p + len - 4)) {
		snprintf(why, whylen, "damaged (footer checksum mismatch)");
		return -1;
	}
	n = get_u64(p + 8);
	if (n != expect_count || n > (len - 24) / 8) {
		snprintf(why, whylen, "damaged (footer count %llu)", (unsigned long long)n);
		return -1;
	}
	at = 16 + 8 * n;
	nc = get_u32(p + at);
	at += 4;
	free(r->offs);
	r->offs = malloc((n ? n : 1) * sizeof *r->offs);
	r->classes = calloc(nc ? nc : 1, sizeof *r->classes);
	if (!r->offs || !r->classes) {
		snprintf(why, whylen, "too large to load");
		return -1;
	}
	for (i = 0; i < n; i++)
		r->offs[i] = get_u64(p + 16 + 8 * i);
	r->noffs = r->capoffs = n;
	for (c = 0; c < nc; c++) {
		uint32_t l;
		if (at + 4 > len - 4 || (l = get_u32(p + at)) > len - 4 - at - 4 || l > MAX_CLASS_NAME) {
			snprintf(why, whylen, "damaged (class name %u)", c);
			r->nclasses = c;
			return -1;
		}
		r->classes[c] = strndup((const char *)p + at + 4, l);
		if (!r->classes[c]) {
			r->nclasses = c;
			snprintf(why, whylen, "too large to load");
			return -1;
		}
		at += 4 + l;
	}
	r->nclasses = nc;
	if (at != len - 4) {
		snprintf(why, whylen, "damaged (footer length)");
		return -1;
	}
	r->count = n;
	r->has_footer = 1;
	return 0;
}

static void drop_footer(bt_record_reader *r)
{
	free_names(r->classes, r->nclasses);
	r->classes = NULL;
	r->nclasses = 0;
	free(r->offs);
	r->offs = NULL;
	r->noffs = r->capoffs = 0;
	r->has_footer = 0;
	r->count = 0;
}

/* Seekable files: trailer, then footer. Leaves the file positioned anywhere. */
static int load_footer(bt_record_reader *r)
{
	uint8_t t[BT_RECORD_TRAILER];
	uint8_t *f = NULL;
	uint64_t off, len, count;

	snprintf(r->problem, sizeof r->problem, "absent");
	if (r->fsize < BT_RECORD_FILE_HEADER + BT_RECORD_TRAILER + 24)
		return BT_OK;
	if (fseeko(r->fp, (off_t)(r->fsize - BT_RECORD_TRAILER), SEEK_SET) != 0 ||
	    fread(t, 1, sizeof t, r->fp) != sizeof t)
		return bt_error_errno("%s", r->name);
	if (memcmp(t + 20, end_marker, 4) != 0)
		return BT_OK;
	off = get_u64(t);
	count = get_u64(t + 8);
	if (bt_crc32(0, t, 16) != get_u32(t + 16) || off < BT_RECORD_FILE_HEADER ||
	    off > r->fsize - BT_RECORD_TRAILER - 24) {
		snprintf(r->problem, sizeof r->problem, "damaged (trailer)");
		return BT_OK;
	}
	len = r->fsize - BT_RECORD_TRAILER - off;
	if (!(f = malloc(len))) {
		snprintf(r->problem, sizeof r->problem, "too large to load");
		return BT_OK;
	}
	if (fseeko(r->fp, (off_t)off, SEEK_SET) != 0 || fread(f, 1, len, r->fp) != len) {
		free(f);
		return bt_error_errno("%s", r->name);
	}
	if (parse_footer(r, f, len, count, r->problem, sizeof r->problem) < 0)
		drop_footer(r);
	else
		r->footer_off = off;
	free(f);
	return BT_OK;
}

int bt_record_reader_open_fp(bt_record_reader **out, FILE *fp, const char *name)
{
	bt_record_reader *r = calloc(1, sizeof *r);
	uint8_t hdr[BT_RECORD_FILE_HEADER];
	struct stat sb;
	uint32_t version, hsize;
	int st;

	*out = NULL;
	if (!r || !(r->name = strdup(name))) {
		free(r);
		return bt_error(BT_ERR_NOMEM, "out of memory");
	}
	r->fp = fp;
	snprintf(r->problem, sizeof r->problem, "absent");
	r->iobuf = malloc(IOBUF);
	if (r->iobuf)
		setvbuf(fp, r->iobuf, _IOFBF, IOBUF);
	if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode)) {
		r->seekable = 1;
		r->fsize = (uint64_t)sb.st_size;
	}
	if (rd(r, hdr, sizeof hdr) != sizeof hdr) {
		st = ferror(fp) ? bt_error_errno("%s", name)
				: bt_error(BT_ERR_FORMAT, "%s: not a bt record file (too short)", name);
		goto fail;
	}
	if (memcmp(hdr, file_magic, 8) != 0) {
		st = bt_error(BT_ERR_FORMAT, "%s: not a bt record file (bad magic)", name);
		goto fail;
	}
	version = get_u32(hdr + 8);
	hsize = get_u32(hdr + 12);
	if (version > BT_RECORD_VERSION || version == 0) {
		st = bt_error(BT_ERR_UNSUPPORTED, "%s: record format version %u (this bt reads up to %d)",
			      name, version, BT_RECORD_VERSION);
		goto fail;
	}
	if (hsize < BT_RECORD_FILE_HEADER || hsize > (1u << 20)) {
		st = bt_error(BT_ERR_FORMAT, "%s: bad header size %u", name, hsize);
		goto fail;
	}
	for (uint32_t skip = hsize - BT_RECORD_FILE_HEADER; skip > 0; skip--) {
		if (fgetc(fp) == EOF) {
			st = rd_fail(r, "file header");
			goto fail;
		}
		r->pos++;
	}
	if (r->seekable) {
		uint64_t start = r->pos;
		if ((st = load_footer(r)) < 0)
			goto fail;
		if (fseeko(fp, (off_t)start, SEEK_SET) != 0) {
			st = bt_error_errno("%s", name);
			goto fail;
		}
	}
	*out = r;
	return BT_OK;
fail:
	r->fp = NULL; /* the caller keeps fp */
	bt_record_reader_close(r);
	return st;
}

int bt_record_reader_open(bt_record_reader **out, const char *path)
{
	FILE *fp;
	int st;

	*out = NULL;
	if (strcmp(path, "-") == 0)
		return bt_record_reader_open_fp(out, stdin, "<stdin>");
	if (!(fp = fopen(path, "rb")))
		return bt_error_errno("cannot open '%s'", path);
	if ((st = bt_record_reader_open_fp(out, fp, path)) < 0) {
		fclose(fp);
		return st;
	}
	(*out)->owns_fp = 1;
	return BT_OK;
}

void bt_record_reader_close(bt_record_reader *r)
{
	if (!r)
		return;
	if (r->fp && r->owns_fp)
		fclose(r->fp);
	else if (r->fp)
		setvbuf(r->fp, NULL, _IONBF, 0); /* our buffer is about to go */
	free(r->iobuf);
	free(r->name);
	drop_footer(r);
	free(r->buf);
	free(r->soft);
	free(r->win);
	free(r);
}

/* A stream met the footer marker: read the rest of the footer and the trailer and check
 * them against the records seen. */
static int read_stream_footer(bt_record_reader *r, uint64_t footer_off)
{
	uint8_t head[16], t[BT_RECORD_TRAILER];
	uint8_t *f = NULL;
	uint64_t n, len, at;
	char why[160];
	int st = BT_OK;

	memcpy(head, footer_marker, 4);
	if (rd(r, head + 4, 12) != 12)
		return rd_fail(r, "footer");
	n = get_u64(head + 8);
	if (n != r->index)
		return bt_error(BT_ERR_FORMAT, "%s: footer at offset %llu counts %llu records, file has %llu",
				r->name, (unsigned long long)footer_off, (unsigned long long)n,
				(unsigned long long)r->index);
	/* Offsets, then class names: grow the buffer as the lengths become known. */
	len = 16 + 8 * n + 4;
	/* + 4: the CRC that follows the names has room even when there are none */
	if (!(f = malloc(len + 4)))
		return bt_error(BT_ERR_NOMEM, "%s: footer too large", r->name);
	memcpy(f, head, 16);
	if (rd(r, f + 16, len - 16) != len - 16) {
		st = rd_fail(r, "footer");
		goto out;
	}
	at = len;
	for (uint32_t c = 0, nc = get_u32(f + len - 4); c < nc; c++) {
		uint8_t lb[4];
		uint32_t l;
		uint8_t *g;
		if (rd(r, lb, 4) != 4) {
			st = rd_fail(r, "footer");
			goto out;
		}
		l = get_u32(lb);
		if (l > MAX_CLASS_NAME) {
			st = bt_error(BT_ERR_FORMAT, "%s: footer: class name %u is %u bytes long", r->name, c, l);
			goto out;
		}
		if (!(g = realloc(f, at + 4 + l + 4))) {
			st = bt_error(BT_ERR_NOMEM, "%s: footer too large", r->name);
			goto out;
		}
		f = g;
		memcpy(f + at, lb, 4);
		if (rd(r, f + at + 4, l) != l) {
			st = rd_fail(r, "footer");
			goto out;
		}
		at += 4 + l;
	}
	if (rd(r, f + at, 4) != 4) {
		st = rd_fail(r, "footer");
		goto out;
	}
	at += 4;
	{
		/* Keep the offsets seen while reading to compare with the footer's. */
		uint64_t *seen = r->offs, nseen = r->noffs;
		r->offs = NULL;
		if (parse_footer(r, f, at, n, why, sizeof why) < 0) {
			free(seen);
			drop_footer(r);
			st = bt_error(BT_ERR_FORMAT, "%s: footer at offset %llu: %s", r->name,
				      (unsigned long long)footer_off, why);
			goto out;
		}
		for (uint64_t i = 0; i < n && i < nseen; i++) {
			if (seen[i] != r->offs[i]) {
				st = bt_error(BT_ERR_FORMAT, "%s: footer gives record %llu offset %llu, found at %llu",
					      r->name, (unsigned long long)i, (unsigned long long)r->offs[i],
					      (unsigned long long)seen[i]);
				free(seen);
				drop_footer(r);
				goto out;
			}
		}
		free(seen);
	}
	if (rd(r, t, sizeof t) != sizeof t) {
		st = rd_fail(r, "trailer");
		drop_footer(r);
		goto out;
	}
	if (memcmp(t + 20, end_marker, 4) != 0 || bt_crc32(0, t, 16) != get_u32(t + 16) ||
	    get_u64(t) != footer_off || get_u64(t + 8) != n) {
		st = bt_error(BT_ERR_FORMAT, "%s: damaged trailer at offset %llu", r->name,
			      (unsigned long long)(r->pos - sizeof t));
		drop_footer(r);
		goto out;
	}
	r->footer_off = footer_off;
out:
	free(f);
	return st;
}

static int grow(void **p, size_t *cap, size_t need)
{
	void *q;
	size_t c = *cap ? *cap : 4096;
	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	if (!(q = realloc(*p, c)))
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

int bt_record_reader_next(bt_record_reader *r, struct bt_record *rec)
{
	uint8_t h[BT_RECORD_HEADER], cb[4];
	uint64_t start = r->pos, idx = r->index;
	uint32_t crc;
	size_t got;
	int st;

	r->last_start = start;
	if (r->done)
		return 0;
	if (r->has_footer && r->seekable && r->pos == r->footer_off) {
		r->done = 1;
		return 0;
	}
	got = rd(r, h, 4);
	if (got == 0 && !ferror(r->fp)) {
		r->done = 1;
		if (r->has_footer)
			return bt_error(BT_ERR_TRUNCATED, "%s: records end at offset %llu before the footer",
					r->name, (unsigned long long)start);
		return 0; /* a file without footer: streamed or cut at a record boundary */
	}
	if (got != 4)
		goto trunc;
	if (memcmp(h, footer_marker, 4) == 0) {
		r->done = 1;
		if (r->walk)
			return 0;
		if (r->has_footer) /* the footer was loaded at open and says records go on */
			return bt_error(BT_ERR_FORMAT, "%s: footer at offset %llu where record %llu should be",
					r->name, (unsigned long long)start, (unsigned long long)idx);
		if ((st = read_stream_footer(r, start)) < 0)
			return st;
		return 0;
	}
	if (memcmp(h, rec_marker, 4) != 0) {
		r->done = 1;
		return bt_error(BT_ERR_FORMAT, "%s: record %llu at offset %llu: bad record marker",
				r->name, (unsigned long long)idx, (unsigned long long)start);
	}
	if (r->has_footer && (idx >= r->count || r->offs[idx] != start)) {
		r->done = 1;
		return bt_error(BT_ERR_FORMAT, "%s: record %llu at offset %llu: not where the footer puts it",
				r->name, (unsigned long long)idx, (unsigned long long)start);
	}
	if (rd(r, h + 4, sizeof h - 4) != sizeof h - 4)
		goto trunc;
	memset(rec, 0, sizeof *rec);
	rec->kind = h[4];
	rec->ndim = h[5];
	rec->nsoft = get_u16(h + 6);
	rec->size = get_u64(h + 8);
	rec->id = get_u64(h + 16);
	rec->label = (int32_t)get_u32(h + 24);
	for (int i = 0; i < BT_MAX_DIMS; i++)
		rec->shape[i] = get_u32(h + 28 + 4 * i);
	crc = bt_crc32(0, h, sizeof h);
	/* The CRC comes after the payload, so the header's fields are sanity-checked before
	 * anything is allocated from them: a flipped bit in the size field must not turn into
	 * a giant allocation. Where the footer vouches for the file's length, a record that
	 * runs past it is damage; without one it is taken as truncation. */
	if (get_u32(h + 44) != 0 || bt_record_check(rec) < 0) {
		r->done = 1;
		return bt_error(BT_ERR_FORMAT, "%s: record %llu at offset %llu: damaged header",
				r->name, (unsigned long long)idx, (unsigned long long)start);
	}
	if (r->seekable) {
		uint64_t limit = r->has_footer ? r->footer_off : r->fsize;
		uint64_t need = 4ull * rec->nsoft + rec->size + 4;
		if (r->pos > limit || need > limit - r->pos) {
			if (!r->has_footer)
				goto trunc;
			r->done = 1;
			return bt_error(BT_ERR_FORMAT, "%s: record %llu at offset %llu: damaged header",
					r->name, (unsigned long long)idx, (unsigned long long)start);
		}
	}
	if (rec->nsoft) {
		if (grow((void **)&r->soft, &r->softcap, rec->nsoft * sizeof(float)) < 0)
			goto nomem;
		for (uint32_t i = 0; i < rec->nsoft; i++) {
			uint8_t f[4];
			uint32_t u;
			if (rd(r, f, 4) != 4)
				goto trunc;
			crc = bt_crc32(crc, f, 4);
			u = get_u32(f);
			memcpy(&r->soft[i], &u, 4);
		}
		rec->soft = r->soft;
	}
	/* Read big payloads in steps so a stream with a damaged size field runs out of data
	 * before it runs out of memory. */
	for (uint64_t have = 0; have < rec->size;) {
		uint64_t step = rec->size - have;
		if (step > (UINT64_C(64) << 20) && !r->seekable)
			step = UINT64_C(64) << 20;
		if (grow((void **)&r->buf, &r->bufcap, (size_t)(have + step)) < 0)
			goto nomem;
		if (rd(r, r->buf + have, (size_t)step) != step)
			goto trunc;
		have += step;
	}
	crc = bt_crc32(crc, r->buf, (size_t)rec->size);
	if (rd(r, cb, 4) != 4)
		goto trunc;
	if (get_u32(cb) != crc) {
		r->done = 1;
		return bt_error(BT_ERR_CRC, "%s: record %llu at offset %llu: checksum mismatch",
				r->name, (unsigned long long)idx, (unsigned long long)start);
	}
	rec->data = r->buf;
	if (!r->has_footer) {
		if (r->noffs == r->capoffs) {
			size_t cap = r->capoffs * sizeof *r->offs;
			if (grow((void **)&r->offs, &cap, (r->noffs + 1) * sizeof *r->offs) < 0)
				goto nomem;
			r->capoffs = cap / sizeof *r->offs;
		}
		r->offs[r->noffs++] = start;
	}
	r->index++;
	return 1;
trunc:
	r->done = 1;
	if (ferror(r->fp))
		return bt_error_errno("%s: record %llu at offset %llu", r->name, (unsigned long long)idx,
				      (unsigned long long)start);
	return bt_error(BT_ERR_TRUNCATED, "%s: record %llu at offset %llu: truncated (file ends at byte %llu)",
			r->name, (unsigned long long)idx, (unsigned long long)start,
			(unsigned long long)(r->seekable ? r->fsize : r->pos));
nomem:
	r->done = 1;
	return bt_error(BT_ERR_NOMEM, "%s: record %llu at offset %llu: out of memory", r->name,
			(unsigned long long)idx, (unsigned long long)start);
}

int bt_record_reader_seek(bt_record_reader *r, uint64_t index)
{
	if (!r->has_footer || !r->seekable)
		return bt_error(BT_ERR_UNSUPPORTED, "%s: random access needs a seekable file with a footer (footer %s)",
				r->name, r->has_footer ? "present, but the input is a stream" : r->problem);
	if (index > r->count)
		return bt_error(BT_ERR_INVALID, "%s: record %llu out of range (%llu records)", r->name,
				(unsigned long long)index, (unsigned long long)r->count);
	uint64_t off = index == r->count ? r->footer_off : r->offs[index];
	uint64_t end = index + 1 < r->count ? r->offs[index + 1] : r->footer_off;
	r->winlen = r->winpos = 0;
	if (index < r->count && end > off && end - off <= WIN_MAX) {
		ssize_t got;
		if (grow((void **)&r->win, &r->wincap, (size_t)(end - off)) < 0)
			return bt_error(BT_ERR_NOMEM, "out of memory");
		got = pread(fileno(r->fp), r->win, (size_t)(end - off), (off_t)off);
		if (got < 0)
			return bt_error_errno("%s", r->name);
		r->winlen = (size_t)got;
		r->resync = 1;
	} else {
		if (fseeko(r->fp, (off_t)off, SEEK_SET) != 0)
			return bt_error_errno("%s", r->name);
		r->resync = 0;
	}
	r->pos = off;
	r->index = index;
	r->done = 0;
	return BT_OK;
}

int bt_record_reader_has_footer(const bt_record_reader *r) { return r->has_footer; }
const char *bt_record_reader_footer_problem(const bt_record_reader *r)
{
	return r->has_footer ? NULL : r->problem;
}
uint64_t bt_record_reader_count(const bt_record_reader *r) { return r->has_footer ? r->count : r->index; }
uint64_t bt_record_reader_index(const bt_record_reader *r) { return r->index; }
uint64_t bt_record_reader_offset(const bt_record_reader *r) { return r->pos; }
uint32_t bt_record_reader_nclasses(const bt_record_reader *r) { return r->nclasses; }
const char *bt_record_reader_class(const bt_record_reader *r, uint32_t i)
{
	return i < r->nclasses ? r->classes[i] : NULL;
}
const char *bt_record_reader_name(const bt_record_reader *r) { return r->name; }

/* ---------------------------------------------------------------- whole files */

int bt_record_verify(const char *path, struct bt_verify_report *rep)
{
	bt_record_reader *r;
	struct bt_record rec;
	int st;

	memset(rep, 0, sizeof *rep);
	if ((st = bt_record_reader_open(&r, path)) < 0)
		return st;
	rep->bytes = r->fsize;
	if (r->seekable && !r->has_footer && strcmp(r->problem, "absent") != 0) {
		rep->bad_index = 0;
		rep->bad_offset = r->fsize;
		st = bt_error(BT_ERR_FORMAT, "%s: footer %s", path, r->problem);
		goto out;
	}
	while ((st = bt_record_reader_next(r, &rec)) > 0)
		rep->records++;
	if (st < 0) {
		rep->bad_index = r->index;
		rep->bad_offset = r->last_start;
		goto out;
	}
	if (!r->seekable)
		rep->bytes = r->pos;
	rep->has_footer = r->has_footer;
	st = BT_OK;
out:
	bt_record_reader_close(r);
	return st;
}

int bt_record_reindex(const char *path, uint32_t nclasses, const char *const *names,
		      uint64_t *kept, uint64_t *dropped_bytes)
{
	bt_record_reader *r = NULL;
	struct bt_record rec;
	char **cls = NULL;
	uint32_t ncls = 0;
	uint64_t end, written;
	FILE *fp = NULL;
	int st;

	*kept = *dropped_bytes = 0;
	if ((st = bt_record_reader_open(&r, path)) < 0)
		return st;
	if (!r->seekable) {
		st = bt_error(BT_ERR_INVALID, "%s: not a regular file", path);
		goto out;
	}
	if (names)
		st = dup_names(&cls, &ncls, nclasses, names);
	else if (r->has_footer)
		st = dup_names(&cls, &ncls, r->nclasses, (const char *const *)r->classes);
	if (st < 0)
		goto out;
	/* Walk the records as in a footerless file, stopping at an old footer's marker. Only a
	 * partial record at the very end is given up; anything else damaged is an error, since
	 * cutting the file there would throw away the intact records after it. */
	drop_footer(r);
	r->walk = 1;
	while ((st = bt_record_reader_next(r, &rec)) > 0)
		;
	if (st < 0 && st != BT_ERR_TRUNCATED)
		goto out;
	end = r->last_start;
	*kept = r->index;
	*dropped_bytes = st == BT_ERR_TRUNCATED ? r->fsize - end : 0;
	bt_error_clear();
	if (!(fp = fopen(path, "r+b"))) {
		st = bt_error_errno("cannot open '%s' for writing", path);
		goto out;
	}
	if (ftruncate(fileno(fp), (off_t)end) != 0 || fseeko(fp, (off_t)end, SEEK_SET) != 0) {
		st = bt_error_errno("%s", path);
		goto out;
	}
	if ((st = write_footer(fp, path, end, r->offs, r->index, ncls, cls, &written)) < 0)
		goto out;
	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		st = bt_error_errno("%s", path);
		goto out;
	}
	st = BT_OK;
out:
	if (fp && fclose(fp) != 0 && st == BT_OK)
		st = bt_error_errno("%s", path);
	free_names(cls, ncls);
	bt_record_reader_close(r);
	return st;
}
