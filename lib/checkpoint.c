/* checkpoint.c: writer and reader of the bt checkpoint file (.btc); the layout is in
 * checkpoint.h and man/man5/bt-checkpoint.5.
 *
 * The writer lays the whole file out first (every size is known from the sections and the
 * tensor shapes), computes the CRCs in one pass over the tensor data, then streams the file
 * to a temporary name beside the target and renames it into place after an fsync
 * (outfile.h), so a crash leaves the old checkpoint or the new one. The reader loads the
 * whole file and checks all of it before handing anything out: a checkpoint is either read
 * completely or refused, and no input, however damaged, makes it read outside the buffer.
 */
#define _GNU_SOURCE
#include "checkpoint.h"
#include "bt.h"
#include "le.h"
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t file_magic[8] = {0x89, 'B', 'T', 'C', '\r', '\n', 0x1a, '\n'};

/* The seven sections a version-1 writer writes, in this order. A reader requires each
 * exactly once, so a flipped bit in a tag (which no CRC covers) cannot make a section
 * silently disappear. */
enum { S_SPEC, S_CLAS, S_STAT, S_RCPE, S_METR, S_TDIR, S_TDAT, S_COUNT };
static const char section_tags[S_COUNT][5] = {"SPEC", "CLAS", "STAT", "RCPE", "METR", "TDIR", "TDAT"};
/* Text section of each enum bt_ckpt_section. */
static const int text_tag[BT_CKPT_NSECTIONS] = {S_SPEC, S_STAT, S_RCPE};

#define SECTION_HEADER 16
#define MAX_NAME 65535u
#define IOBUF (1u << 20)

static uint64_t align_up(uint64_t v) { return (v + BT_CKPT_ALIGN - 1) & ~(uint64_t)(BT_CKPT_ALIGN - 1); }

const char *bt_dtype_name(int dtype)
{
	switch (dtype) {
	case BT_DTYPE_F32: return "float32";
	case BT_DTYPE_F16: return "float16";
	case BT_DTYPE_BF16: return "bfloat16";
	}
	return "unknown";
}

size_t bt_dtype_size(int dtype)
{
	switch (dtype) {
	case BT_DTYPE_F32: return 4;
	case BT_DTYPE_F16: return 2;
	case BT_DTYPE_BF16: return 2;
	}
	return 0;
}

const char *bt_ckpt_section_name(int section)
{
	switch (section) {
	case BT_CKPT_SPEC: return "spec";
	case BT_CKPT_STATE: return "state";
	case BT_CKPT_RECIPE: return "recipe";
	}
	return "unknown";
}

void bt_ckpt_init(struct bt_ckpt *c)
{
	memset(c, 0, sizeof *c);
}

void bt_ckpt_free(struct bt_ckpt *c)
{
	for (int s = 0; s < BT_CKPT_NSECTIONS; s++) {
		for (size_t i = 0; i < c->nkv[s]; i++) {
			free(c->kv[s][i].key);
			free(c->kv[s][i].value);
		}
		free(c->kv[s]);
	}
	for (uint32_t i = 0; c->classes && i < c->nclasses; i++)
		free(c->classes[i]);
	free(c->classes);
	free(c->metrics);
	for (size_t i = 0; i < c->ntensors; i++)
		free(c->tensors[i].name);
	free(c->tensors);
	free(c->file);
	bt_ckpt_init(c);
}

/* ---------------------------------------------------------------- text sections */

static int key_ok(const char *k, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)k[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '.' || ch == '-'))
			return 0;
	}
	return 1;
}

static struct bt_ckpt_kv *find_kv(const struct bt_ckpt *c, int section, const char *key, size_t n)
{
	for (size_t i = 0; i < c->nkv[section]; i++)
		if (strlen(c->kv[section][i].key) == n && memcmp(c->kv[section][i].key, key, n) == 0)
			return &c->kv[section][i];
	return NULL;
}

/* Takes ownership of value (malloc'd). */
static int set_owned(struct bt_ckpt *c, int section, const char *key, size_t klen, char *value)
{
	struct bt_ckpt_kv *kv = find_kv(c, section, key, klen), *a;
	char *k;

	if (kv) {
		free(kv->value);
		kv->value = value;
		return BT_OK;
	}
	a = realloc(c->kv[section], (c->nkv[section] + 1) * sizeof *a);
	if (!a)
		goto nomem;
	c->kv[section] = a;
	if (!(k = strndup(key, klen)))
		goto nomem;
	a[c->nkv[section]].key = k;
	a[c->nkv[section]].value = value;
	c->nkv[section]++;
	return BT_OK;
nomem:
	free(value);
	return bt_error(BT_ERR_NOMEM, "out of memory");
}

int bt_ckpt_set(struct bt_ckpt *c, int section, const char *key, const char *fmt, ...)
{
	char *value;
	va_list ap;
	int n;

	if (section < 0 || section >= BT_CKPT_NSECTIONS)
		return bt_error(BT_ERR_INVALID, "checkpoint: no text section %d", section);
	if (!key || !key_ok(key, strlen(key)))
		return bt_error(BT_ERR_INVALID, "checkpoint: bad key '%s' (letters, digits, '_', '.', '-')",
				key ? key : "(null)");
	va_start(ap, fmt);
	n = vasprintf(&value, fmt, ap);
	va_end(ap);
	if (n < 0)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	if (strchr(value, '\n')) {
		free(value);
		return bt_error(BT_ERR_INVALID, "checkpoint: the value of %s key '%s' contains a newline",
				bt_ckpt_section_name(section), key);
	}
	return set_owned(c, section, key, strlen(key), value);
}

const char *bt_ckpt_get(const struct bt_ckpt *c, int section, const char *key)
{
	const struct bt_ckpt_kv *kv;
	if (section < 0 || section >= BT_CKPT_NSECTIONS || !key)
		return NULL;
	kv = find_kv(c, section, key, strlen(key));
	return kv ? kv->value : NULL;
}

static int get_value(const struct bt_ckpt *c, int section, const char *key, const char **v)
{
	*v = bt_ckpt_get(c, section, key);
	if (!*v)
		return bt_error(BT_ERR_FORMAT, "checkpoint: %s key '%s' is missing",
				bt_ckpt_section_name(section), key);
	return BT_OK;
}

static int not_number(int section, const char *key, const char *v)
{
	return bt_error(BT_ERR_FORMAT, "checkpoint: %s key '%s' is not a number ('%s')",
			bt_ckpt_section_name(section), key, v);
}

int bt_ckpt_get_i64(const struct bt_ckpt *c, int section, const char *key, int64_t *v)
{
	const char *s;
	char *end;
	long long x;
	int st = get_value(c, section, key, &s);
	if (st < 0)
		return st;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (end == s || *end || errno || (*s != '-' && (*s < '0' || *s > '9')))
		return not_number(section, key, s);
	*v = x;
	return BT_OK;
}

int bt_ckpt_get_u64(const struct bt_ckpt *c, int section, const char *key, uint64_t *v)
{
	const char *s;
	char *end;
	unsigned long long x;
	int st = get_value(c, section, key, &s);
	if (st < 0)
		return st;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (end == s || *end || errno || *s < '0' || *s > '9')
		return not_number(section, key, s);
	*v = x;
	return BT_OK;
}

int bt_ckpt_get_double(const struct bt_ckpt *c, int section, const char *key, double *v)
{
	const char *s;
	char *end;
	double x;
	int st = get_value(c, section, key, &s);
	if (st < 0)
		return st;
	errno = 0;
	x = strtod(s, &end);
	if (end == s || *end || isnan(x) || (errno == ERANGE && isinf(x)) || *s == ' ' || *s == '\t')
		return not_number(section, key, s);
	*v = x;
	return BT_OK;
}

int bt_ckpt_set_classes(struct bt_ckpt *c, uint32_t n, const char *const *names)
{
	char **a = calloc(n ? n : 1, sizeof *a);
	if (!a)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		if (!(a[i] = strdup(names[i] ? names[i] : ""))) {
			while (i--)
				free(a[i]);
			free(a);
			return bt_error(BT_ERR_NOMEM, "out of memory");
		}
	}
	for (uint32_t i = 0; c->classes && i < c->nclasses; i++)
		free(c->classes[i]);
	free(c->classes);
	c->classes = a;
	c->nclasses = n;
	return BT_OK;
}

int bt_ckpt_set_metrics(struct bt_ckpt *c, const char *text)
{
	char *m = NULL;
	if (text && !(m = strdup(text)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	free(c->metrics);
	c->metrics = m;
	return BT_OK;
}

/* ---------------------------------------------------------------- tensors */

/* Bytes of a tensor, or 0 on overflow or a zero dimension. */
static uint64_t tensor_bytes(int dtype, int ndim, const uint64_t *shape)
{
	uint64_t n = bt_dtype_size(dtype);
	for (int i = 0; i < ndim; i++) {
		if (shape[i] == 0 || n > (UINT64_C(1) << 62) / shape[i])
			return 0;
		n *= shape[i];
	}
	return n;
}

const struct bt_ckpt_tensor *bt_ckpt_find(const struct bt_ckpt *c, const char *name)
{
	for (size_t i = 0; i < c->ntensors; i++)
		if (strcmp(c->tensors[i].name, name) == 0)
			return &c->tensors[i];
	return NULL;
}

int bt_ckpt_add_tensor(struct bt_ckpt *c, const char *name, int dtype, int ndim,
		       const uint64_t *shape, const void *data)
{
	struct bt_ckpt_tensor *a, *t;
	size_t len = name ? strlen(name) : 0;
	uint64_t bytes;

	if (len == 0 || len > MAX_NAME)
		return bt_error(BT_ERR_INVALID, "checkpoint: tensor name of %zu bytes (1 to %u)", len, MAX_NAME);
	if (bt_dtype_size(dtype) == 0)
		return bt_error(BT_ERR_INVALID, "checkpoint: tensor '%s': unknown dtype %d", name, dtype);
	if (ndim < 1 || ndim > 4)
		return bt_error(BT_ERR_INVALID, "checkpoint: tensor '%s': %d dimensions (1 to 4)", name, ndim);
	bytes = tensor_bytes(dtype, ndim, shape);
	if (bytes == 0)
		return bt_error(BT_ERR_INVALID, "checkpoint: tensor '%s': bad shape", name);
	if (!data)
		return bt_error(BT_ERR_INVALID, "checkpoint: tensor '%s' has no data", name);
	if (bt_ckpt_find(c, name))
		return bt_error(BT_ERR_INVALID, "checkpoint: tensor '%s' added twice", name);
	a = realloc(c->tensors, (c->ntensors + 1) * sizeof *a);
	if (!a)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	c->tensors = a;
	t = &a[c->ntensors];
	memset(t, 0, sizeof *t);
	if (!(t->name = strdup(name)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	t->dtype = dtype;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->bytes = bytes;
	t->data = data;
	c->ntensors++;
	return BT_OK;
}

/* ---------------------------------------------------------------- writer */

/* Output of the writer: the file, or (fp NULL) a memory buffer for a small section whose
 * CRC must be known before its header is written. */
struct out {
	FILE *fp;
	const char *name;
	uint8_t *mem;
	size_t memlen, memcap;
	uint64_t off;
	uint32_t crc;           /* of the section payload being written */
};

static int emit(struct out *o, const void *p, size_t n)
{
	if (!n)
		return BT_OK;
	if (o->fp) {
		if (fwrite(p, 1, n, o->fp) != n)
			return bt_error_errno("%s", o->name);
	} else {
		if (n > o->memcap - o->memlen) {
			size_t cap = o->memcap ? o->memcap : 4096;
			uint8_t *m;
			while (cap - o->memlen < n)
				cap *= 2;
			if (!(m = realloc(o->mem, cap)))
				return bt_error(BT_ERR_NOMEM, "out of memory");
			o->mem = m;
			o->memcap = cap;
		}
		memcpy(o->mem + o->memlen, p, n);
		o->memlen += n;
	}
	o->crc = bt_crc32(o->crc, p, n);
	o->off += n;
	return BT_OK;
}

static int emit_zeros(struct out *o, uint64_t n)
{
	static const uint8_t z[BT_CKPT_ALIGN];
	int st;
	while (n) {
		size_t k = n < sizeof z ? (size_t)n : sizeof z;
		if ((st = emit(o, z, k)) < 0)
			return st;
		n -= k;
	}
	return BT_OK;
}

static uint64_t text_len(const struct bt_ckpt *c, int s)
{
	uint64_t n = 0;
	for (size_t i = 0; i < c->nkv[s]; i++)
		n += strlen(c->kv[s][i].key) + 1 + strlen(c->kv[s][i].value) + 1;
	return n;
}

static uint64_t classes_len(const struct bt_ckpt *c)
{
	uint64_t n = 4;
	for (uint32_t i = 0; i < c->nclasses; i++)
		n += 4 + strlen(c->classes[i]);
	return n;
}

static uint64_t tdir_len(const struct bt_ckpt *c)
{
	uint64_t n = 4;
	for (size_t i = 0; i < c->ntensors; i++)
		n += 2 + strlen(c->tensors[i].name) + 2 + 8 * (uint64_t)c->tensors[i].ndim + 8 + 8 + 4;
	return n;
}

/* Writes one section's payload (the header's CRC is then checked against o->crc). */
static int emit_payload(struct out *o, const struct bt_ckpt *c, int s, const uint64_t *toff)
{
	uint8_t b[2 + 8 * 4];
	int st = BT_OK;

	switch (s) {
	case S_SPEC: case S_STAT: case S_RCPE: {
		int sec = s == S_SPEC ? BT_CKPT_SPEC : s == S_STAT ? BT_CKPT_STATE : BT_CKPT_RECIPE;
		for (size_t i = 0; i < c->nkv[sec] && st == BT_OK; i++) {
			const struct bt_ckpt_kv *kv = &c->kv[sec][i];
			if ((st = emit(o, kv->key, strlen(kv->key))) == BT_OK &&
			    (st = emit(o, "=", 1)) == BT_OK &&
			    (st = emit(o, kv->value, strlen(kv->value))) == BT_OK)
				st = emit(o, "\n", 1);
		}
		return st;
	}
	case S_CLAS:
		put_u32(b, c->nclasses);
		if ((st = emit(o, b, 4)) < 0)
			return st;
		for (uint32_t i = 0; i < c->nclasses; i++) {
			size_t n = strlen(c->classes[i]);
			put_u32(b, (uint32_t)n);
			if ((st = emit(o, b, 4)) < 0 || (st = emit(o, c->classes[i], n)) < 0)
				return st;
		}
		return BT_OK;
	case S_METR:
		return c->metrics ? emit(o, c->metrics, strlen(c->metrics)) : BT_OK;
	case S_TDIR:
		put_u32(b, (uint32_t)c->ntensors);
		if ((st = emit(o, b, 4)) < 0)
			return st;
		for (size_t i = 0; i < c->ntensors; i++) {
			const struct bt_ckpt_tensor *t = &c->tensors[i];
			size_t n = strlen(t->name);
			put_u16(b, (uint16_t)n);
			if ((st = emit(o, b, 2)) < 0 || (st = emit(o, t->name, n)) < 0)
				return st;
			b[0] = (uint8_t)t->dtype;
			b[1] = (uint8_t)t->ndim;
			for (int d = 0; d < t->ndim; d++)
				put_u64(b + 2 + 8 * d, t->shape[d]);
			if ((st = emit(o, b, 2 + 8 * (size_t)t->ndim)) < 0)
				return st;
			put_u64(b, toff[i]);
			put_u64(b + 8, t->bytes);
			put_u32(b + 16, t->crc);
			if ((st = emit(o, b, 20)) < 0)
				return st;
		}
		return BT_OK;
	case S_TDAT: {
		uint64_t pos = 0;
		for (size_t i = 0; i < c->ntensors; i++) {
			if ((st = emit_zeros(o, toff[i] - pos)) < 0 ||
			    (st = emit(o, c->tensors[i].data, c->tensors[i].bytes)) < 0)
				return st;
			pos = toff[i] + c->tensors[i].bytes;
		}
		return BT_OK;
	}
	}
	return BT_OK;
}

int bt_ckpt_write(const struct bt_ckpt *c, const char *path)
{
	uint64_t len[S_COUNT], start[S_COUNT], *toff = NULL, pos, fsize;
	uint32_t crc[S_COUNT];
	uint8_t hdr[BT_CKPT_HEADER], sh[SECTION_HEADER];
	struct out o = {0};
	struct bt_outfile of = {0};
	char *iobuf = NULL;
	int st = BT_OK;

	/* The values and names were checked on the way in; a caller filling the struct by
	 * hand still cannot produce an unreadable file. */
	for (int s = 0; s < BT_CKPT_NSECTIONS; s++)
		for (size_t i = 0; i < c->nkv[s]; i++)
			if (!key_ok(c->kv[s][i].key, strlen(c->kv[s][i].key)) || strchr(c->kv[s][i].value, '\n'))
				return bt_error(BT_ERR_INVALID, "checkpoint: bad %s key '%s'",
						bt_ckpt_section_name(s), c->kv[s][i].key);
	if (c->ntensors > UINT32_MAX)
		return bt_error(BT_ERR_INVALID, "checkpoint: %zu tensors", c->ntensors);

	/* Layout and CRCs of the binary sections. */
	toff = malloc((c->ntensors ? c->ntensors : 1) * sizeof *toff);
	if (!toff)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	len[S_SPEC] = text_len(c, BT_CKPT_SPEC);
	len[S_CLAS] = classes_len(c);
	len[S_STAT] = text_len(c, BT_CKPT_STATE);
	len[S_RCPE] = text_len(c, BT_CKPT_RECIPE);
	len[S_METR] = c->metrics ? strlen(c->metrics) : 0;
	len[S_TDIR] = tdir_len(c);
	crc[S_TDAT] = 0;
	pos = 0;
	for (size_t i = 0; i < c->ntensors; i++) {
		struct bt_ckpt_tensor *t = &c->tensors[i];
		static const uint8_t z[BT_CKPT_ALIGN];
		uint64_t a = align_up(pos);
		if (tensor_bytes(t->dtype, t->ndim, t->shape) != t->bytes || !t->data ||
		    strlen(t->name) == 0 || strlen(t->name) > MAX_NAME) {
			st = bt_error(BT_ERR_INVALID, "checkpoint: tensor '%s' is malformed", t->name);
			goto out;
		}
		crc[S_TDAT] = bt_crc32(crc[S_TDAT], z, a - pos);
		toff[i] = a;
		/* The writer's tensors are the caller's; the CRC field is ours to fill. */
		t->crc = bt_crc32(0, t->data, t->bytes);
		crc[S_TDAT] = bt_crc32(crc[S_TDAT], t->data, t->bytes);
		pos = a + t->bytes;
	}
	len[S_TDAT] = pos;
	fsize = BT_CKPT_HEADER;
	for (int s = 0; s < S_COUNT; s++) {
		start[s] = align_up(fsize);
		fsize = start[s] + SECTION_HEADER + len[s];
	}

	if ((st = bt_outfile_open(&of, path)) < 0)
		goto out;
	o.fp = of.fp;
	o.name = bt_outfile_name(&of);
	if (o.fp != stdout && (iobuf = malloc(IOBUF)))
		setvbuf(o.fp, iobuf, _IOFBF, IOBUF);

	memcpy(hdr, file_magic, 8);
	put_u32(hdr + 8, BT_CKPT_VERSION);
	put_u32(hdr + 12, BT_CKPT_HEADER);
	put_u64(hdr + 16, fsize);
	put_u32(hdr + 24, S_COUNT);
	put_u32(hdr + 28, bt_crc32(0, hdr, 28));
	if ((st = emit(&o, hdr, sizeof hdr)) < 0)
		goto out;
	for (int s = 0; s < S_COUNT; s++) {
		struct out mem = {0};
		uint32_t want = crc[S_TDAT];
		if ((st = emit_zeros(&o, start[s] - o.off)) < 0)
			goto out;
		if (s != S_TDAT) {
			st = emit_payload(&mem, c, s, toff);
			want = mem.crc;
			if (st == BT_OK && mem.off != len[s])
				st = bt_error(BT_ERR_INVALID, "checkpoint: section %s changed size", section_tags[s]);
			if (st < 0) {
				free(mem.mem);
				goto out;
			}
		}
		memcpy(sh, section_tags[s], 4);
		put_u32(sh + 4, want);
		put_u64(sh + 8, len[s]);
		st = emit(&o, sh, sizeof sh);
		if (st == BT_OK && s != S_TDAT)
			st = emit(&o, mem.mem, mem.memlen);
		free(mem.mem);
		if (st < 0)
			goto out;
		if (s == S_TDAT) {
			o.crc = 0;
			if ((st = emit_payload(&o, c, s, toff)) < 0)
				goto out;
			/* The caller's memory changed between the CRC pass and the write. */
			if (o.crc != want) {
				st = bt_error(BT_ERR_INVALID, "checkpoint: tensor data changed while being written");
				goto out;
			}
		}
	}
	if (o.off != fsize) {
		st = bt_error(BT_ERR_INVALID, "checkpoint: wrote %llu bytes, expected %llu",
			      (unsigned long long)o.off, (unsigned long long)fsize);
		goto out;
	}
	st = bt_outfile_commit(&of, 1);
out:
	bt_outfile_abort(&of);
	free(iobuf);
	free(toff);
	return st;
}

/* ---------------------------------------------------------------- reader */

/* Parses a text section into section sec of c. */
static int parse_text(struct bt_ckpt *c, int sec, const uint8_t *p, uint64_t n, const char *path)
{
	const char *tag = section_tags[text_tag[sec]];
	uint64_t i = 0, line = 0;

	if (n && p[n - 1] != '\n')
		return bt_error(BT_ERR_FORMAT, "%s: section %s does not end with a newline", path, tag);
	while (i < n) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		const uint8_t *eq = memchr(p + i, '=', (size_t)(nl - (p + i)));
		size_t klen;
		char *v;
		line++;
		if (!eq)
			return bt_error(BT_ERR_FORMAT, "%s: section %s line %llu is not key=value", path, tag,
					(unsigned long long)line);
		klen = (size_t)(eq - (p + i));
		if (!key_ok((const char *)p + i, klen))
			return bt_error(BT_ERR_FORMAT, "%s: section %s line %llu has a bad key", path, tag,
					(unsigned long long)line);
		if (memchr(eq + 1, 0, (size_t)(nl - eq - 1)))
			return bt_error(BT_ERR_FORMAT, "%s: section %s line %llu contains a NUL byte", path, tag,
					(unsigned long long)line);
		if (find_kv(c, sec, (const char *)p + i, klen))
			return bt_error(BT_ERR_FORMAT, "%s: section %s repeats key '%.*s'", path, tag,
					(int)klen, (const char *)p + i);
		if (!(v = strndup((const char *)eq + 1, (size_t)(nl - eq - 1))))
			return bt_error(BT_ERR_NOMEM, "out of memory");
		int st = set_owned(c, sec, (const char *)p + i, klen, v);
		if (st < 0)
			return st;
		i = (uint64_t)(nl - p) + 1;
	}
	return BT_OK;
}

static int parse_classes(struct bt_ckpt *c, const uint8_t *p, uint64_t n, const char *path)
{
	uint64_t pos = 4;
	uint32_t count;

	if (n < 4)
		return bt_error(BT_ERR_FORMAT, "%s: section CLAS is too short", path);
	count = get_u32(p);
	if (count > (n - 4) / 4)
		return bt_error(BT_ERR_FORMAT, "%s: section CLAS: %u classes do not fit in %llu bytes", path,
				count, (unsigned long long)n);
	c->classes = calloc(count ? count : 1, sizeof *c->classes);
	if (!c->classes)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	for (uint32_t i = 0; i < count; i++) {
		uint32_t len;
		if (n - pos < 4)
			return bt_error(BT_ERR_FORMAT, "%s: section CLAS ends inside class %u", path, i);
		len = get_u32(p + pos);
		pos += 4;
		if (len > n - pos)
			return bt_error(BT_ERR_FORMAT, "%s: section CLAS: class %u runs past the section", path, i);
		if (memchr(p + pos, 0, len))
			return bt_error(BT_ERR_FORMAT, "%s: section CLAS: class %u contains a NUL byte", path, i);
		if (!(c->classes[i] = strndup((const char *)p + pos, len)))
			return bt_error(BT_ERR_NOMEM, "out of memory");
		c->nclasses = i + 1;
		pos += len;
	}
	c->nclasses = count;
	if (pos != n)
		return bt_error(BT_ERR_FORMAT, "%s: section CLAS has %llu bytes after its last class", path,
				(unsigned long long)(n - pos));
	return BT_OK;
}

static int parse_tensors(struct bt_ckpt *c, const uint8_t *d, uint64_t dn, const uint8_t *data,
			 uint64_t datan, const char *path)
{
	uint64_t pos = 4, end = 0;
	uint32_t count;

	if (dn < 4)
		return bt_error(BT_ERR_FORMAT, "%s: section TDIR is too short", path);
	count = get_u32(d);
	/* The smallest entry is 2 + 1 + 2 + 8 + 8 + 8 + 4 bytes. */
	if (count > (dn - 4) / 33)
		return bt_error(BT_ERR_FORMAT, "%s: section TDIR: %u tensors do not fit in %llu bytes", path,
				count, (unsigned long long)dn);
	c->tensors = calloc(count ? count : 1, sizeof *c->tensors);
	if (!c->tensors)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	for (uint32_t i = 0; i < count; i++) {
		struct bt_ckpt_tensor *t = &c->tensors[i];
		uint64_t off;
		uint16_t nlen;

		if (dn - pos < 2)
			goto short_dir;
		nlen = get_u16(d + pos);
		pos += 2;
		if (nlen == 0 || dn - pos < (uint64_t)nlen + 2)
			goto short_dir;
		if (memchr(d + pos, 0, nlen))
			return bt_error(BT_ERR_FORMAT, "%s: tensor %u's name contains a NUL byte", path, i);
		if (!(t->name = strndup((const char *)d + pos, nlen)))
			return bt_error(BT_ERR_NOMEM, "out of memory");
		c->ntensors = i + 1;
		pos += nlen;
		t->dtype = d[pos];
		t->ndim = d[pos + 1];
		pos += 2;
		if (bt_dtype_size(t->dtype) == 0)
			return bt_error(BT_ERR_FORMAT, "%s: tensor '%s' has unknown dtype %d", path, t->name, t->dtype);
		if (t->ndim < 1 || t->ndim > 4)
			return bt_error(BT_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (1 to 4)", path, t->name,
					t->ndim);
		if (dn - pos < 8 * (uint64_t)t->ndim + 20)
			goto short_dir;
		for (int k = 0; k < t->ndim; k++)
			t->shape[k] = get_u64(d + pos + 8 * k);
		pos += 8 * (uint64_t)t->ndim;
		off = get_u64(d + pos);
		t->bytes = get_u64(d + pos + 8);
		t->crc = get_u32(d + pos + 16);
		pos += 20;
		if (tensor_bytes(t->dtype, t->ndim, t->shape) != t->bytes)
			return bt_error(BT_ERR_FORMAT, "%s: tensor '%s': %llu bytes do not match its shape and dtype",
					path, t->name, (unsigned long long)t->bytes);
		if (off % BT_CKPT_ALIGN)
			return bt_error(BT_ERR_FORMAT, "%s: tensor '%s' at offset %llu, not a multiple of %d", path,
					t->name, (unsigned long long)off, BT_CKPT_ALIGN);
		if (off < end || off > datan || t->bytes > datan - off)
			return bt_error(BT_ERR_FORMAT, "%s: tensor '%s' (offset %llu, %llu bytes) lies outside "
					"its place in TDAT (%llu bytes)", path, t->name, (unsigned long long)off,
					(unsigned long long)t->bytes, (unsigned long long)datan);
		end = off + t->bytes;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(c->tensors[j].name, t->name) == 0)
				return bt_error(BT_ERR_FORMAT, "%s: tensor '%s' appears twice", path, t->name);
		t->data = data + off;
		if (bt_crc32(0, t->data, t->bytes) != t->crc)
			return bt_error(BT_ERR_CRC, "%s: tensor '%s' fails its CRC check", path, t->name);
	}
	if (pos != dn)
		return bt_error(BT_ERR_FORMAT, "%s: section TDIR has %llu bytes after its last tensor", path,
				(unsigned long long)(dn - pos));
	return BT_OK;
short_dir:
	return bt_error(BT_ERR_FORMAT, "%s: section TDIR ends inside tensor %llu", path,
			(unsigned long long)c->ntensors);
}

static int read_whole(const char *path, uint8_t **out, size_t *outn)
{
	struct stat sb;
	uint8_t *buf = NULL;
	size_t n = 0, cap;
	int fd = open(path, O_RDONLY | O_CLOEXEC), st = BT_OK;

	if (fd < 0)
		return bt_error_errno("cannot open '%s'", path);
	if (fstat(fd, &sb) != 0) {
		st = bt_error_errno("%s", path);
		goto out;
	}
	if (S_ISDIR(sb.st_mode)) {
		st = bt_error(BT_ERR_IO, "%s: is a directory", path);
		goto out;
	}
	/* Regular files are read in one go; anything else (a pipe) grows the buffer. */
	cap = S_ISREG(sb.st_mode) && sb.st_size > 0 ? (size_t)sb.st_size + 1 : 1u << 16;
	if (!(buf = malloc(cap))) {
		st = bt_error(BT_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
		goto out;
	}
	for (;;) {
		ssize_t r;
		if (n == cap) {
			uint8_t *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
			if (!nb) {
				st = bt_error(BT_ERR_NOMEM, "%s: out of memory", path);
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			st = bt_error_errno("%s", path);
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
out:
	close(fd);
	if (st < 0) {
		free(buf);
		return st;
	}
	*out = buf;
	*outn = n;
	return BT_OK;
}

static int check(struct bt_ckpt *c, const uint8_t *f, uint64_t n, const char *path)
{
	uint64_t start[S_COUNT], len[S_COUNT], pos, fsize;
	uint32_t nsec, version, hsize;
	int seen[S_COUNT] = {0}, st;

	if (n == 0)
		return bt_error(BT_ERR_TRUNCATED, "%s: truncated: 0 bytes (an empty file)", path);
	/* A prefix of the magic is a truncated checkpoint; anything else is foreign. */
	if (memcmp(f, file_magic, n < 8 ? n : 8) != 0)
		return bt_error(BT_ERR_FORMAT, "%s: not a bt checkpoint (bad magic)", path);
	if (n < BT_CKPT_HEADER)
		return bt_error(BT_ERR_TRUNCATED, "%s: truncated: %llu bytes, shorter than the %d-byte header",
				path, (unsigned long long)n, BT_CKPT_HEADER);
	version = get_u32(f + 8);
	if (bt_crc32(0, f, 28) != get_u32(f + 28))
		return bt_error(BT_ERR_CRC, "%s: the file header fails its CRC check", path);
	if (version != BT_CKPT_VERSION)
		return bt_error(BT_ERR_UNSUPPORTED, "%s: checkpoint format version %u (this bt reads %d)", path,
				version, BT_CKPT_VERSION);
	hsize = get_u32(f + 12);
	if (hsize != BT_CKPT_HEADER)
		return bt_error(BT_ERR_FORMAT, "%s: header size %u (expected %d)", path, hsize, BT_CKPT_HEADER);
	fsize = get_u64(f + 16);
	if (n < fsize)
		return bt_error(BT_ERR_TRUNCATED, "%s: truncated: %llu bytes, the header says %llu", path,
				(unsigned long long)n, (unsigned long long)fsize);
	if (n > fsize)
		return bt_error(BT_ERR_FORMAT, "%s: %llu bytes, the header says %llu", path,
				(unsigned long long)n, (unsigned long long)fsize);
	nsec = get_u32(f + 24);
	pos = BT_CKPT_HEADER;
	for (uint32_t i = 0; i < nsec; i++) {
		uint64_t a = align_up(pos), plen;
		int s;
		if (a > n || n - a < SECTION_HEADER)
			return bt_error(BT_ERR_FORMAT, "%s: section %u of %u lies past the end of the file", path,
					i + 1, nsec);
		for (uint64_t k = pos; k < a; k++)
			if (f[k])
				return bt_error(BT_ERR_FORMAT, "%s: nonzero padding byte at offset %llu", path,
						(unsigned long long)k);
		plen = get_u64(f + a + 8);
		if (plen > n - a - SECTION_HEADER)
			return bt_error(BT_ERR_FORMAT, "%s: section %u (%.4s, %llu bytes) runs past the end of the file",
					path, i + 1, (const char *)f + a, (unsigned long long)plen);
		if (bt_crc32(0, f + a + SECTION_HEADER, plen) != get_u32(f + a + 4))
			return bt_error(BT_ERR_CRC, "%s: section %u (%.4s) fails its CRC check", path, i + 1,
					(const char *)f + a);
		for (s = 0; s < S_COUNT; s++)
			if (memcmp(f + a, section_tags[s], 4) == 0)
				break;
		if (s < S_COUNT) {
			if (seen[s]++)
				return bt_error(BT_ERR_FORMAT, "%s: section %s appears twice", path, section_tags[s]);
			start[s] = a + SECTION_HEADER;
			len[s] = plen;
		}
		pos = a + SECTION_HEADER + plen;
	}
	if (pos != n)
		return bt_error(BT_ERR_FORMAT, "%s: %llu bytes after the last section", path,
				(unsigned long long)(n - pos));
	for (int s = 0; s < S_COUNT; s++)
		if (!seen[s])
			return bt_error(BT_ERR_FORMAT, "%s: no %s section", path, section_tags[s]);

	for (int sec = 0; sec < BT_CKPT_NSECTIONS; sec++)
		if ((st = parse_text(c, sec, f + start[text_tag[sec]], len[text_tag[sec]], path)) < 0)
			return st;
	if ((st = parse_classes(c, f + start[S_CLAS], len[S_CLAS], path)) < 0)
		return st;
	if (len[S_METR]) {
		if (memchr(f + start[S_METR], 0, len[S_METR]))
			return bt_error(BT_ERR_FORMAT, "%s: section METR contains a NUL byte", path);
		if (!(c->metrics = strndup((const char *)f + start[S_METR], len[S_METR])))
			return bt_error(BT_ERR_NOMEM, "out of memory");
	}
	return parse_tensors(c, f + start[S_TDIR], len[S_TDIR], f + start[S_TDAT], len[S_TDAT], path);
}

int bt_ckpt_read(struct bt_ckpt *c, const char *path)
{
	uint8_t *f = NULL;
	size_t n = 0;
	int st;

	bt_ckpt_init(c);
	if ((st = read_whole(path, &f, &n)) < 0)
		return st;
	c->file = f;
	c->file_size = n;
	if ((st = check(c, f, n, path)) < 0)
		bt_ckpt_free(c);
	return st;
}
