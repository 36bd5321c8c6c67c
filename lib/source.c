/* source.c: the item set, its arena, source detection, the text and directory sources
 * (ImageFolder, MXNet .lst list files, "path label" lines on standard input) and the
 * dispatch of bt_item_load. RecordIO lives in source_mxnet.c, IDX and CIFAR in
 * source_idx.c. Everything a set owns is released by bt_itemset_free; a failed
 * bt_itemset_add leaves the set as it was before the call.
 */
#define _GNU_SOURCE /* qsort_r */
#define BT_SOURCE_INTERNAL
#include "source.h"
#include "bt.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define RECORDIO_MAGIC 0xced7230au
#define CIFAR10_RECORD 3073
#define CIFAR100_RECORD 3074

static const char *const kind_names[] = {
	[BT_SRC_AUTO] = "auto",   [BT_SRC_FOLDER] = "folder", [BT_SRC_LIST] = "list",
	[BT_SRC_REC] = "rec",     [BT_SRC_IDX] = "idx",       [BT_SRC_CIFAR] = "cifar",
	[BT_SRC_STDIN] = "stdin",
};
#define NKINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

const char *bt_source_kind_name(int kind)
{
	if (kind <= BT_SRC_AUTO || kind >= NKINDS)
		return NULL;
	return kind_names[kind];
}

int bt_source_kind_parse(const char *name)
{
	for (int k = 0; k < NKINDS; k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	return -1;
}

/* ---- arena ----
 * Paths and soft labels of a million items are small and live as long as the set, so
 * they are carved from large blocks instead of a million mallocs. Requests too big for
 * a block get a block of their own, linked behind the current one so that the current
 * block keeps being filled. */

#define ARENA_BLOCK (256 * 1024)
#define ARENA_BIG (ARENA_BLOCK / 4)

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

void *bt_source_alloc(struct bt_itemset *s, size_t n)
{
	struct arena_block *b = s->arena, *nb;
	size_t cap;

	n = (n + 7) & ~(size_t)7;
	if (b && b->cap - b->used >= n) {
		void *p = b->data + b->used;
		b->used += n;
		return p;
	}
	cap = n > ARENA_BIG ? n : ARENA_BLOCK;
	nb = malloc(sizeof *nb + cap);
	if (!nb) {
		bt_error(BT_ERR_NOMEM, "out of memory (%zu bytes for item names)", n);
		return NULL;
	}
	nb->cap = cap;
	nb->used = n;
	if (b && n > ARENA_BIG) {
		nb->next = b->next;
		b->next = nb;
	} else {
		nb->next = b;
		s->arena = nb;
	}
	return nb->data;
}

char *bt_source_strdup(struct bt_itemset *s, const char *str)
{
	size_t n = strlen(str) + 1;
	char *p = bt_source_alloc(s, n);
	if (p)
		memcpy(p, str, n);
	return p;
}

/* dir + "/" + name in the arena, without doubling a slash the directory ends with. */
static char *arena_join(struct bt_itemset *s, const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	int slash = dl > 0 && dir[dl - 1] != '/';
	char *p = bt_source_alloc(s, dl + slash + nl + 1);
	if (!p)
		return NULL;
	memcpy(p, dir, dl);
	if (slash)
		p[dl] = '/';
	memcpy(p + dl + slash, name, nl + 1);
	return p;
}

/* ---- the set ---- */

void bt_itemset_init(struct bt_itemset *s)
{
	memset(s, 0, sizeof *s);
}

static void free_classes(char **names, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void source_release(struct bt_source *src)
{
	if (src->fd >= 0)
		close(src->fd);
	free(src->buf);
	free(src->path);
	memset(src, 0, sizeof *src);
	src->fd = -1;
}

void bt_itemset_free(struct bt_itemset *s)
{
	struct arena_block *b = s->arena;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	for (size_t i = 0; i < s->nsrcs; i++)
		source_release(&s->srcs[i]);
	free(s->srcs);
	free(s->items);
	free_classes(s->classes, s->nclasses);
	memset(s, 0, sizeof *s);
}

struct bt_item *bt_itemset_push(struct bt_itemset *s)
{
	struct bt_item *it;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		struct bt_item *p = realloc(s->items, cap * sizeof *p);
		if (!p) {
			bt_error(BT_ERR_NOMEM, "out of memory (%zu items)", cap);
			return NULL;
		}
		s->items = p;
		s->cap = cap;
	}
	it = &s->items[s->n];
	memset(it, 0, sizeof *it);
	it->label = -1;
	it->id = s->n;
	s->n++;
	return it;
}

void bt_source_set_classes(struct bt_itemset *s, char **names, uint32_t n)
{
	free_classes(s->classes, s->nclasses);
	s->classes = names;
	s->nclasses = n;
}

static int copy_classes(char ***out, const char *const *names, uint32_t n)
{
	char **v = calloc(n ? n : 1, sizeof *v);
	if (!v)
		return bt_error(BT_ERR_NOMEM, "out of memory (%u class names)", n);
	for (uint32_t i = 0; i < n; i++) {
		if (!(v[i] = strdup(names[i]))) {
			free_classes(v, i);
			return bt_error(BT_ERR_NOMEM, "out of memory (%u class names)", n);
		}
	}
	*out = v;
	return BT_OK;
}

/* ---- class names given with --classes ----
 * Name lookups happen once per line of a list and once per directory, so the names are
 * sorted once and searched by bisection. */

struct classmap {
	const char *const *names;
	uint32_t *order;         /* indices into names, sorted by name */
	uint32_t n;
};

static int cmp_order(const void *a, const void *b, void *names)
{
	const char *const *v = names;
	return strcmp(v[*(const uint32_t *)a], v[*(const uint32_t *)b]);
}

static int classmap_init(struct classmap *m, const struct bt_source_opts *o)
{
	memset(m, 0, sizeof *m);
	if (!o || o->nclasses == 0)
		return BT_OK;
	m->names = o->classes;
	m->n = o->nclasses;
	if (!(m->order = malloc(m->n * sizeof *m->order)))
		return bt_error(BT_ERR_NOMEM, "out of memory (%u class names)", m->n);
	for (uint32_t i = 0; i < m->n; i++)
		m->order[i] = i;
	qsort_r(m->order, m->n, sizeof *m->order, cmp_order, (void *)m->names);
	for (uint32_t i = 1; i < m->n; i++) {
		if (strcmp(m->names[m->order[i - 1]], m->names[m->order[i]]) == 0) {
			free(m->order);
			m->order = NULL;
			return bt_error(BT_ERR_INVALID, "--classes: '%s' given twice",
					m->names[m->order[i]]);
		}
	}
	return BT_OK;
}

/* Index of name, or -1. */
static long classmap_find(const struct classmap *m, const char *name)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, m->names[m->order[mid]]);
		if (c == 0)
			return m->order[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* ---- detection ---- */

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

int bt_source_detect(const char *source, int *kind)
{
	struct stat st;
	unsigned char b[4];
	ssize_t got;
	int fd = -1, fd2, ret = BT_OK;
	gzFile gz = NULL;

	if (strcmp(source, "-") == 0) {
		*kind = BT_SRC_STDIN;
		return BT_OK;
	}
	if (stat(source, &st) != 0)
		return bt_error_errno("%s", source);
	if (S_ISDIR(st.st_mode)) {
		*kind = BT_SRC_FOLDER;
		return BT_OK;
	}
	/* A pipe (bt-prep <(find ...)) cannot be sniffed without eating what it sniffs; only
	 * text sources can be read from one anyway. */
	if (!S_ISREG(st.st_mode)) {
		*kind = BT_SRC_LIST;
		return BT_OK;
	}
	if ((fd = open(source, O_RDONLY | O_CLOEXEC)) < 0)
		return bt_error_errno("%s", source);
	got = pread(fd, b, 4, 0);
	if (got < 0) {
		ret = bt_error_errno("%s", source);
		goto out;
	}
	if (got == 0) {
		ret = bt_error(BT_ERR_FORMAT, "%s: empty file", source);
		goto out;
	}
	if (got == 4 && (b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24) == RECORDIO_MAGIC) {
		*kind = BT_SRC_REC;
		goto out;
	}
	/* Label files (08 01) count as IDX too, so that the IDX reader can say what is
	 * wrong instead of the list reader failing on binary data. */
	if ((fd2 = dup(fd)) >= 0 && !(gz = gzdopen(fd2, "rb")))
		close(fd2);
	if (gz) {
		if (gzread(gz, b, 4) == 4 && b[0] == 0 && b[1] == 0 && b[2] == 8 &&
		    (b[3] == 3 || b[3] == 4 || b[3] == 1)) {
			*kind = BT_SRC_IDX;
			goto out;
		}
	}
	if (ends_with(source, ".bin") &&
	    (st.st_size % CIFAR10_RECORD == 0 || st.st_size % CIFAR100_RECORD == 0)) {
		*kind = BT_SRC_CIFAR;
		goto out;
	}
	*kind = BT_SRC_LIST;
out:
	if (gz)
		gzclose(gz);
	close(fd);
	return ret;
}

/* ---- text lines ---- */

struct lines {
	FILE *fp;
	const char *name;
	char *buf;
	size_t cap;
	unsigned long lineno;
};

/* Next line without its end of line: 1, or 0 at the end, or an error. */
static int lines_next(struct lines *l, char **line)
{
	ssize_t n;
	errno = 0;
	n = getline(&l->buf, &l->cap, l->fp);
	if (n < 0) {
		if (ferror(l->fp))
			return bt_error_errno("%s", l->name);
		return 0;
	}
	l->lineno++;
	while (n > 0 && (l->buf[n - 1] == '\n' || l->buf[n - 1] == '\r'))
		l->buf[--n] = 0;
	if ((size_t)n != strlen(l->buf))
		return bt_error(BT_ERR_FORMAT, "%s:%lu: NUL byte in a text line", l->name,
				l->lineno);
	*line = l->buf;
	return 1;
}

static int blank(const char *p)
{
	while (*p && isspace((unsigned char)*p))
		p++;
	return *p == 0;
}

static char *trim(char *p)
{
	char *e;
	while (*p && isspace((unsigned char)*p))
		p++;
	e = p + strlen(p);
	while (e > p && isspace((unsigned char)e[-1]))
		*--e = 0;
	return p;
}

/* A label field as a float: a number, or a class name from --classes. 0, or -1 when it is
 * neither. */
static int parse_float(const char *f, const struct classmap *m, double *v)
{
	char *end;
	long k;
	if (*f) {
		errno = 0;
		*v = strtod(f, &end);
		if (*end == 0 && errno == 0 && isfinite(*v))
			return 0;
	}
	if (m->n && (k = classmap_find(m, f)) >= 0) {
		*v = (double)k;
		return 0;
	}
	return -1;
}

/* Rounded by hand: libbt links without libm. */
static int label_bad(double v)
{
	double d;
	if (!(v >= 0 && v < INT32_MAX))
		return 1;
	d = v - (double)(int32_t)(v + 0.5);
	return d > 1e-4 || d < -1e-4;
}

static int label_check(const struct bt_source_opts *o, const char *name, unsigned long line,
		       long label)
{
	if (o && o->nclasses && label >= (long)o->nclasses)
		return bt_error(BT_ERR_INVALID, "%s:%lu: label %ld is not below the %u classes "
				"of --classes", name, line, label, o->nclasses);
	return BT_OK;
}

/* MXNet list: index \t label [\t label...] \t path. MXNet writes labels as floats
 * ("3.000000"); the first one is the class and must be whole. */
static int add_list(struct bt_itemset *s, int src, FILE *fp, const char *name, const char *root,
		    const struct bt_source_opts *o)
{
	struct lines l = { .fp = fp, .name = name };
	struct classmap m;
	char **fields = NULL, *line, *end;
	size_t fcap = 0, added = 0;
	int ret, r;

	if ((ret = classmap_init(&m, o)) < 0)
		return ret;
	while ((r = lines_next(&l, &line)) > 0) {
		struct bt_item *it;
		size_t nf = 0, nlab;
		char *p = line;
		unsigned long long index;
		double v;

		if (blank(line))
			continue;
		for (;;) {
			if (nf == fcap) {
				size_t cap = fcap ? fcap * 2 : 8;
				char **nfs = realloc(fields, cap * sizeof *nfs);
				if (!nfs) {
					ret = bt_error(BT_ERR_NOMEM, "out of memory");
					goto out;
				}
				fields = nfs;
				fcap = cap;
			}
			fields[nf++] = p;
			if (!(p = strchr(p, '\t')))
				break;
			*p++ = 0;
		}
		if (nf < 3 || *fields[nf - 1] == 0) {
			ret = bt_error(BT_ERR_FORMAT, "%s:%lu: expected 'index<TAB>label<TAB>path'",
				       name, l.lineno);
			goto out;
		}
		fields[0] = trim(fields[0]);
		errno = 0;
		index = strtoull(fields[0], &end, 10);
		if (!isdigit((unsigned char)*fields[0]) || *end || errno) {
			ret = bt_error(BT_ERR_FORMAT, "%s:%lu: bad index '%s'", name, l.lineno,
				       fields[0]);
			goto out;
		}
		if (!(it = bt_itemset_push(s))) {
			ret = BT_ERR_NOMEM;
			goto out;
		}
		added++;
		it->where = BT_ITEM_FILE;
		it->src = src;
		it->id = index;
		nlab = nf - 2;
		if (nlab >= 2) {
			if (nlab > UINT32_MAX ||
			    !(it->soft = bt_source_alloc(s, nlab * sizeof *it->soft))) {
				ret = BT_ERR_NOMEM;
				goto out;
			}
			it->nsoft = (uint32_t)nlab;
		}
		for (size_t k = 0; k < nlab; k++) {
			char *f = trim(fields[1 + k]);
			if (parse_float(f, &m, &v) < 0) {
				ret = bt_error(BT_ERR_FORMAT, "%s:%lu: bad label '%s'%s", name,
					       l.lineno, f, m.n ? " (not a number nor a class in "
					       "--classes)" : "");
				goto out;
			}
			if (k == 0) {
				if (label_bad(v)) {
					ret = bt_error(BT_ERR_FORMAT, "%s:%lu: label '%s' is not "
						       "a whole number >= 0", name, l.lineno, f);
					goto out;
				}
				it->label = (int32_t)(v + 0.5);
				if ((ret = label_check(o, name, l.lineno, it->label)) < 0)
					goto out;
			}
			if (it->soft)
				it->soft[k] = (float)v;
		}
		p = fields[nf - 1];
		it->path = p[0] == '/' || !root || !*root ? bt_source_strdup(s, p)
							  : arena_join(s, root, p);
		if (!it->path) {
			ret = BT_ERR_NOMEM;
			goto out;
		}
	}
	if ((ret = r) < 0)
		goto out;
	if (added == 0)
		ret = bt_error(BT_ERR_FORMAT, "%s: no items", name);
out:
	free(fields);
	free(l.buf);
	free(m.order);
	return ret;
}

/* Lines "path label": the label is the last whitespace-separated field, so paths may
 * contain spaces. */
static int add_lines(struct bt_itemset *s, int src, FILE *fp, const char *name,
		     const struct bt_source_opts *o)
{
	struct lines l = { .fp = fp, .name = name };
	struct classmap m;
	size_t added = 0;
	char *line;
	int ret, r;

	if ((ret = classmap_init(&m, o)) < 0)
		return ret;
	while ((r = lines_next(&l, &line)) > 0) {
		struct bt_item *it;
		char *e = line + strlen(line), *lab, *end;
		long label, k;

		while (e > line && isspace((unsigned char)e[-1]))
			*--e = 0;
		if (e == line)
			continue;
		lab = e;
		while (lab > line && !isspace((unsigned char)lab[-1]))
			lab--;
		e = lab;
		while (e > line && isspace((unsigned char)e[-1]))
			e--;
		if (e == line) {
			ret = bt_error(BT_ERR_FORMAT, "%s:%lu: expected 'path label'", name,
				       l.lineno);
			goto out;
		}
		*e = 0;
		errno = 0;
		label = strtol(lab, &end, 10);
		if (*end || errno || !isdigit((unsigned char)*lab) || label > INT32_MAX) {
			if (!m.n || (k = classmap_find(&m, lab)) < 0) {
				ret = bt_error(BT_ERR_FORMAT, "%s:%lu: bad label '%s'%s", name,
					       l.lineno, lab, m.n ? " (not a number nor a class "
					       "in --classes)" : "");
				goto out;
			}
			label = k;
		}
		if ((ret = label_check(o, name, l.lineno, label)) < 0)
			goto out;
		if (!(it = bt_itemset_push(s))) {
			ret = BT_ERR_NOMEM;
			goto out;
		}
		added++;
		it->where = BT_ITEM_FILE;
		it->src = src;
		it->label = (int32_t)label;
		if (!(it->path = bt_source_strdup(s, line))) {
			ret = BT_ERR_NOMEM;
			goto out;
		}
	}
	if ((ret = r) < 0)
		goto out;
	if (added == 0)
		ret = bt_error(BT_ERR_FORMAT, "%s: no items", name);
out:
	free(l.buf);
	free(m.order);
	return ret;
}

/* ---- ImageFolder ---- */

struct names {
	char **v;
	size_t n, cap;
};

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	memset(ns, 0, sizeof *ns);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The visible entries of dir that are directories (want_dirs) or regular files, sorted
 * by strcmp. Symbolic links count as what they point to. */
static int list_dir(const char *dir, int want_dirs, struct names *out)
{
	DIR *d;
	struct dirent *e;
	char *path = NULL;
	size_t dl = strlen(dir), pcap = 0;
	int ret = BT_OK;

	memset(out, 0, sizeof *out);
	if (!(d = opendir(dir)))
		return bt_error_errno("%s", dir);
	for (;;) {
		int isdir, isreg;
		errno = 0;
		if (!(e = readdir(d))) {
			if (errno)
				ret = bt_error_errno("%s", dir);
			break;
		}
		if (e->d_name[0] == '.')
			continue;
		isdir = e->d_type == DT_DIR;
		isreg = e->d_type == DT_REG;
		if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
			struct stat st;
			size_t need = dl + strlen(e->d_name) + 2;
			if (need > pcap) {
				char *np = realloc(path, need);
				if (!np) {
					ret = bt_error(BT_ERR_NOMEM, "out of memory");
					break;
				}
				path = np;
				pcap = need;
			}
			snprintf(path, pcap, "%s%s%s", dir,
				 dl && dir[dl - 1] == '/' ? "" : "/", e->d_name);
			if (stat(path, &st) != 0) {
				ret = bt_error_errno("%s", path);
				break;
			}
			isdir = S_ISDIR(st.st_mode);
			isreg = S_ISREG(st.st_mode);
		}
		if (want_dirs ? !isdir : !isreg)
			continue;
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 64;
			char **nv = realloc(out->v, cap * sizeof *nv);
			if (!nv) {
				ret = bt_error(BT_ERR_NOMEM, "out of memory");
				break;
			}
			out->v = nv;
			out->cap = cap;
		}
		if (!(out->v[out->n] = strdup(e->d_name))) {
			ret = bt_error(BT_ERR_NOMEM, "out of memory");
			break;
		}
		out->n++;
	}
	closedir(d);
	free(path);
	if (ret < 0)
		names_free(out);
	else if (out->n > 1)
		qsort(out->v, out->n, sizeof *out->v, cmp_str);
	return ret;
}

/* Position of name in a sorted array, or -1. */
static long find_sorted(char *const *v, size_t n, const char *name)
{
	char *const *p = bsearch(&name, v, n, sizeof *v, cmp_str);
	return p ? (long)(p - v) : -1;
}

/* The classes after adding a folder whose directories are dirs: the set's current names
 * and the new ones, sorted. remap[i] is the new index of the set's class i. */
static int class_union(const struct bt_itemset *s, const struct names *dirs, char ***out,
		       uint32_t *nout, uint32_t **remap)
{
	char **old = NULL, **u = NULL;
	size_t nu = 0, total = s->nclasses + dirs->n;
	int ret = BT_OK;

	*out = NULL;
	*remap = NULL;
	if (total > UINT32_MAX)
		return bt_error(BT_ERR_TOOBIG, "too many classes");
	old = malloc((s->nclasses + 1) * sizeof *old);
	u = calloc(total + 1, sizeof *u);
	*remap = malloc((s->nclasses + 1) * sizeof **remap);
	if (!old || !u || !*remap) {
		ret = bt_error(BT_ERR_NOMEM, "out of memory (%zu class names)", total);
		goto out;
	}
	if (s->nclasses)
		memcpy(old, s->classes, s->nclasses * sizeof *old);
	qsort(old, s->nclasses, sizeof *old, cmp_str);
	for (size_t i = 0; i < s->nclasses + dirs->n; i++) {
		const char *name = i < s->nclasses ? s->classes[i] : dirs->v[i - s->nclasses];
		if (i >= s->nclasses && find_sorted(old, s->nclasses, name) >= 0)
			continue;
		if (!(u[nu++] = strdup(name))) {
			ret = bt_error(BT_ERR_NOMEM, "out of memory (%zu class names)", total);
			goto out;
		}
	}
	qsort(u, nu, sizeof *u, cmp_str);
	for (uint32_t i = 0; i < s->nclasses; i++)
		(*remap)[i] = (uint32_t)find_sorted(u, nu, s->classes[i]);
	*out = u;
	*nout = (uint32_t)nu;
	u = NULL;
out:
	if (u) {
		for (size_t i = 0; i < nu; i++)
			free(u[i]);
		free(u);
	}
	if (ret < 0) {
		free(*remap);
		*remap = NULL;
	}
	free(old);
	return ret;
}

static int add_folder(struct bt_itemset *s, int src, const char *dir,
		      const struct bt_source_opts *o)
{
	struct names dirs = { 0 }, files = { 0 };
	struct classmap m = { 0 };
	char **u = NULL, *cdir = NULL;
	uint32_t nu = 0, *remap = NULL;
	size_t old_n = s->n;
	int ret;

	if ((ret = list_dir(dir, 1, &dirs)) < 0)
		goto out;
	if (dirs.n == 0) {
		ret = bt_error(BT_ERR_FORMAT, "%s: no class directories", dir);
		goto out;
	}
	if ((ret = classmap_init(&m, o)) < 0)
		goto out;
	if (!m.n && (ret = class_union(s, &dirs, &u, &nu, &remap)) < 0)
		goto out;
	for (size_t c = 0; c < dirs.n; c++) {
		long label;
		if (m.n) {
			label = classmap_find(&m, dirs.v[c]);
			if (label < 0) {
				ret = bt_error(BT_ERR_NOTFOUND, "%s%s%s: class not in --classes", dir,
					       ends_with(dir, "/") ? "" : "/", dirs.v[c]);
				goto out;
			}
		} else {
			label = find_sorted(u, nu, dirs.v[c]);
		}
		if (!(cdir = arena_join(s, dir, dirs.v[c]))) {
			ret = BT_ERR_NOMEM;
			goto out;
		}
		if ((ret = list_dir(cdir, 0, &files)) < 0)
			goto out;
		for (size_t f = 0; f < files.n; f++) {
			struct bt_item *it = bt_itemset_push(s);
			if (!it || !(it->path = arena_join(s, cdir, files.v[f]))) {
				ret = BT_ERR_NOMEM;
				goto out;
			}
			it->where = BT_ITEM_FILE;
			it->src = src;
			it->label = (int32_t)label;
		}
		names_free(&files);
	}
	if (u) {
		/* New names may sort between old ones: renumber what is already in the set. */
		for (size_t i = 0; i < old_n; i++) {
			int32_t l = s->items[i].label;
			if (l >= 0 && (uint32_t)l < s->nclasses)
				s->items[i].label = (int32_t)remap[l];
		}
		bt_source_set_classes(s, u, nu);
		u = NULL;
	}
out:
	names_free(&dirs);
	names_free(&files);
	if (u)
		free_classes(u, nu);
	free(remap);
	free(m.order);
	return ret;
}

/* ---- adding a source ---- */

static int add_source(struct bt_itemset *s, int kind, const char *path, FILE *fp,
		      const struct bt_source_opts *o)
{
	size_t old_n = s->n, old_nsrcs = s->nsrcs;
	uint32_t old_nclasses = s->nclasses;
	struct bt_source *src, *nsrcs;
	char *root = NULL;
	int ret = BT_OK, isz = (int)s->nsrcs;

	if (s->nsrcs >= INT_MAX)
		return bt_error(BT_ERR_TOOBIG, "%s: too many sources", path);
	if (!(nsrcs = realloc(s->srcs, (s->nsrcs + 1) * sizeof *nsrcs)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	s->srcs = nsrcs;
	src = &s->srcs[s->nsrcs];
	memset(src, 0, sizeof *src);
	src->kind = kind;
	src->fd = -1;
	if (!(src->path = strdup(path)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	s->nsrcs++;
	if (o && o->nclasses && s->nclasses == 0) {
		char **v = NULL;
		if ((ret = copy_classes(&v, o->classes, o->nclasses)) < 0)
			goto out;
		bt_source_set_classes(s, v, o->nclasses);
	}
	if (fp == NULL && strcmp(path, "-") == 0) {
		if (kind != BT_SRC_STDIN && kind != BT_SRC_LIST) {
			ret = bt_error(BT_ERR_INVALID, "-: a %s source cannot be read from "
				       "standard input", bt_source_kind_name(kind));
			goto out;
		}
		fp = stdin;
		path = "<stdin>";
	}
	switch (kind) {
	case BT_SRC_FOLDER:
		ret = add_folder(s, isz, path, o);
		break;
	case BT_SRC_LIST:
	case BT_SRC_STDIN: {
		FILE *own = NULL;
		if (!fp && !(fp = own = fopen(path, "r"))) {
			ret = bt_error_errno("%s", path);
			break;
		}
		if (kind == BT_SRC_STDIN) {
			ret = add_lines(s, isz, fp, path, o);
		} else {
			const char *r = o ? o->root : NULL;
			const char *slash = strrchr(path, '/');
			struct stat st;
			/* The directory of a pipe (/dev/fd/63) says nothing about the paths. */
			if (!r && own && slash && fstat(fileno(own), &st) == 0 &&
			    S_ISREG(st.st_mode)) {
				size_t n = slash == path ? 1 : (size_t)(slash - path);
				if (!(root = strndup(path, n))) {
					ret = bt_error(BT_ERR_NOMEM, "out of memory");
					fclose(own);
					break;
				}
				r = root;
			}
			ret = add_list(s, isz, fp, path, r, o);
		}
		if (own)
			fclose(own);
		break;
	}
	case BT_SRC_REC:
		ret = bt_source_add_rec(s, isz, o);
		break;
	case BT_SRC_IDX:
		ret = bt_source_add_idx(s, isz, o);
		break;
	case BT_SRC_CIFAR:
		ret = bt_source_add_cifar(s, isz, o);
		break;
	default:
		ret = bt_error(BT_ERR_INVALID, "%s: unknown source kind %d", path, kind);
	}
out:
	free(root);
	if (ret < 0) {
		s->n = old_n;
		for (size_t i = old_nsrcs; i < s->nsrcs; i++)
			source_release(&s->srcs[i]);
		s->nsrcs = old_nsrcs;
		if (old_nclasses == 0 && s->nclasses != 0)
			bt_source_set_classes(s, NULL, 0);
	}
	return ret;
}

int bt_itemset_add(struct bt_itemset *s, const char *source, const struct bt_source_opts *o)
{
	int kind = o ? o->kind : BT_SRC_AUTO, ret;

	if (kind == BT_SRC_AUTO && (ret = bt_source_detect(source, &kind)) < 0)
		return ret;
	if (!bt_source_kind_name(kind))
		return bt_error(BT_ERR_INVALID, "%s: unknown source kind %d", source, kind);
	return add_source(s, kind, source, NULL, o);
}

int bt_itemset_add_stream(struct bt_itemset *s, FILE *fp, const char *name,
			  const struct bt_source_opts *o)
{
	return add_source(s, BT_SRC_STDIN, name, fp, o);
}

/* ---- loading ---- */

/* Reads a whole file into *buf (grown as needed, capacity *cap), so that a caller can reuse
 * one buffer for many files. */
static int load_file(const char *path, uint8_t **buf, size_t *cap, size_t *size)
{
	struct stat st;
	size_t n = 0;
	int fd, ret = BT_OK;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return bt_error_errno("%s", path);
	if (fstat(fd, &st) != 0) {
		ret = bt_error_errno("%s", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = bt_error(BT_ERR_FORMAT, "%s: not a regular file", path);
		goto out;
	}
	for (;;) {
		ssize_t got;
		/* One more than the size, so that a file that grew is noticed and still read. */
		size_t want = n == 0 ? (size_t)st.st_size + 1 : n + 1;
		if (want > *cap || !*buf) {
			size_t nc = want > *cap * 2 ? want : *cap * 2;
			uint8_t *nb = realloc(*buf, nc);
			if (!nb) {
				ret = bt_error(BT_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, nc);
				goto out;
			}
			*buf = nb;
			*cap = nc;
		}
		got = read(fd, *buf + n, *cap - n);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			ret = bt_error_errno("%s", path);
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	*size = n;
out:
	close(fd);
	return ret;
}

int bt_item_read(const struct bt_itemset *s, const struct bt_item *it, uint8_t **buf, size_t *cap,
		 const uint8_t **data, size_t *size)
{
	int st;
	if (it->where == BT_ITEM_FILE) {
		if ((st = load_file(it->path, buf, cap, size)) == BT_OK)
			*data = *buf;
		return st;
	}
	if (it->where == BT_ITEM_REC) {
		uint8_t *d;
		int owned;
		if ((st = bt_item_load(s, it, &d, size, &owned)) < 0)
			return st;
		free(*buf);
		*buf = d;
		*cap = *size;
		*data = d;
		return BT_OK;
	}
	{
		uint8_t *d;
		int owned;
		if ((st = bt_item_load(s, it, &d, size, &owned)) == BT_OK)
			*data = d;
		return st;
	}
}

int bt_item_load(const struct bt_itemset *s, const struct bt_item *it, uint8_t **data,
		 size_t *size, int *owned)
{
	const struct bt_source *src;
	uint64_t len;

	*data = NULL;
	*size = 0;
	*owned = 0;
	if (it->src < 0 || (size_t)it->src >= s->nsrcs)
		return bt_error(BT_ERR_INVALID, "item %llu: no source %d",
				(unsigned long long)it->id, it->src);
	src = &s->srcs[it->src];
	switch (it->where) {
	case BT_ITEM_FILE: {
		size_t cap = 0;
		int st = load_file(it->path, data, &cap, size);
		if (st < 0) {
			free(*data);
			*data = NULL;
			return st;
		}
		*owned = 1;
		return BT_OK;
	}
	case BT_ITEM_REC:
		*owned = 1;
		return bt_source_load_rec(s, it, data, size);
	case BT_ITEM_PIXELS:
		len = (uint64_t)it->height * it->width * it->channels;
		if (it->offset > src->buflen || len > src->buflen - it->offset)
			return bt_error(BT_ERR_INVALID, "%s: item %llu lies outside the source",
					src->path, (unsigned long long)it->id);
		*data = src->buf + it->offset;
		*size = (size_t)len;
		return BT_OK;
	}
	return bt_error(BT_ERR_INVALID, "item %llu: unknown location %d",
			(unsigned long long)it->id, it->where);
}
