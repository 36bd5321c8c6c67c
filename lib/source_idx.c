/* source_idx.c: sources whose pixels are raw bytes: MNIST-style IDX files and CIFAR-10 /
 * CIFAR-100 binary batches. Both are small enough (tens to hundreds of megabytes) to be
 * read whole into the source's buffer as (N, H, W, C) uint8 pixels, so that their items
 * point into memory and loading them costs nothing.
 *
 * IDX: big-endian; magic 00 00 08 03 for (N, H, W) images and 00 00 08 01 for (N) labels
 * (00 00 08 04, (N, H, W, C), is taken too). Files may be gzipped (zlib reads both).
 * CIFAR: records of 1 label byte (CIFAR-10) or 2 (coarse, fine: CIFAR-100) and 3072 bytes
 * of 32x32 pixels stored as three planes R, G, B, which are interleaved here.
 */
#define BT_SOURCE_INTERNAL
#include "source.h"
#include "bt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAX_BYTES (1ull << 40)
#define CIFAR_SIDE 32
#define CIFAR_PIXELS (CIFAR_SIDE * CIFAR_SIDE * 3)

/* ---- IDX ---- */

static int gz_fail(gzFile gz, const char *path)
{
	int zerr;
	const char *msg = gzerror(gz, &zerr);
	if (zerr == Z_ERRNO)
		return bt_error_errno("%s", path);
	return bt_error(BT_ERR_FORMAT, "%s: %s", path, msg);
}

/* Reads exactly n bytes; a short read is a truncated file. */
static int gz_read_all(gzFile gz, const char *path, void *buf, uint64_t n, const char *what)
{
	uint64_t got = 0;
	while (got < n) {
		uint64_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
		int r = gzread(gz, (uint8_t *)buf + got, (unsigned)want);
		if (r < 0)
			return gz_fail(gz, path);
		if (r == 0)
			return bt_error(BT_ERR_TRUNCATED, "%s: truncated: %llu of %llu bytes of %s",
					path, (unsigned long long)got, (unsigned long long)n, what);
		got += (uint64_t)r;
	}
	return BT_OK;
}

/* Opens an IDX file and reads its header: the type byte after 00 00 08 and the dims. */
static int idx_open(const char *path, gzFile *gz, int *type, uint32_t dims[4], int *ndim)
{
	uint8_t h[4], d[16];
	int ret;

	errno = 0;
	if (!(*gz = gzopen(path, "rb"))) {
		if (errno)
			return bt_error_errno("%s", path);
		return bt_error(BT_ERR_NOMEM, "%s: out of memory", path);
	}
	gzbuffer(*gz, 1 << 17);
	if ((ret = gz_read_all(*gz, path, h, 4, "header")) < 0)
		return ret;
	if (h[0] != 0 || h[1] != 0)
		return bt_error(BT_ERR_FORMAT, "%s: not an IDX file (bad magic)", path);
	if (h[2] != 0x08)
		return bt_error(BT_ERR_UNSUPPORTED, "%s: IDX element type 0x%02x is not supported "
				"(only unsigned bytes, 0x08)", path, h[2]);
	if (h[3] < 1 || h[3] > 4)
		return bt_error(BT_ERR_UNSUPPORTED, "%s: IDX with %d dimensions is not supported",
				path, h[3]);
	*type = h[3];
	*ndim = h[3];
	if ((ret = gz_read_all(*gz, path, d, 4 * (uint64_t)*ndim, "header")) < 0)
		return ret;
	for (int i = 0; i < *ndim; i++)
		dims[i] = (uint32_t)d[4 * i] << 24 | (uint32_t)d[4 * i + 1] << 16 |
			  (uint32_t)d[4 * i + 2] << 8 | d[4 * i + 3];
	return BT_OK;
}

/* A file must hold exactly what its header says; more means it is not what we think. */
static int gz_expect_end(gzFile gz, const char *path)
{
	uint8_t b;
	int r = gzread(gz, &b, 1);
	if (r < 0)
		return gz_fail(gz, path);
	if (r > 0)
		return bt_error(BT_ERR_FORMAT, "%s: data after the last item", path);
	return BT_OK;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* MNIST-style naming: train-images-idx3-ubyte(.gz) -> train-labels-idx1-ubyte(.gz), or
 * with a dot, t10k-images.idx3-ubyte. The other compression is tried too, since people
 * gunzip one file and not the other. NULL when there is nothing to derive or it is not
 * there. */
static char *derive_labels(const char *path)
{
	static const char *const pat[][2] = {
		{ "images-idx3", "labels-idx1" },
		{ "images.idx3", "labels.idx1" },
	};
	const char *base = strrchr(path, '/');
	size_t len = strlen(path);
	char *out, *p = NULL;
	size_t i;

	base = base ? base + 1 : path;
	for (i = 0; i < 2 && !p; i++)
		p = strstr(base, pat[i][0]);
	if (!p || !(out = malloc(len + 4)))
		return NULL;
	i--;
	memcpy(out, path, len + 1);
	memcpy(out + (p - path), pat[i][1], strlen(pat[i][1]));
	if (exists(out))
		return out;
	if (len > 3 && strcmp(out + len - 3, ".gz") == 0)
		out[len - 3] = 0;
	else
		strcat(out, ".gz");
	if (exists(out))
		return out;
	free(out);
	return NULL;
}

int bt_source_add_idx(struct bt_itemset *s, int src, const struct bt_source_opts *o)
{
	const char *path = s->srcs[src].path;
	char *derived = NULL;
	const char *lpath;
	gzFile gz = NULL, lz = NULL;
	uint8_t *labels = NULL, *buf = NULL;
	uint32_t dims[4], ldims[4];
	uint64_t n, h, w, c, item, bytes;
	int type, ndim, ltype, lndim, ret;

	if ((ret = idx_open(path, &gz, &type, dims, &ndim)) < 0)
		goto out;
	if (type == 1) {
		ret = bt_error(BT_ERR_FORMAT, "%s: an IDX label file; give the images file", path);
		goto out;
	}
	if (type != 3 && type != 4) {
		ret = bt_error(BT_ERR_FORMAT, "%s: IDX images have 3 dimensions (N, H, W), "
			       "not %d", path, ndim);
		goto out;
	}
	n = dims[0];
	h = dims[1];
	w = dims[2];
	c = type == 4 ? dims[3] : 1;
	item = h * w * c;
	if (n == 0 || item == 0) {
		ret = bt_error(BT_ERR_FORMAT, "%s: no images", path);
		goto out;
	}
	if (c > 4 || n > IDX_MAX_BYTES / item || n * item > SIZE_MAX) {
		ret = bt_error(BT_ERR_TOOBIG, "%s: %llu images of %llux%llux%llu are too many",
			       path, (unsigned long long)n, (unsigned long long)h,
			       (unsigned long long)w, (unsigned long long)c);
		goto out;
	}
	bytes = n * item;

	lpath = o ? o->labels : NULL;
	if (!lpath) {
		if (!(derived = derive_labels(path))) {
			ret = bt_error(BT_ERR_NOTFOUND, "%s: no label file (give --labels FILE)",
				       path);
			goto out;
		}
		lpath = derived;
	}
	if ((ret = idx_open(lpath, &lz, &ltype, ldims, &lndim)) < 0)
		goto out;
	if (ltype != 1) {
		ret = bt_error(BT_ERR_FORMAT, "%s: not an IDX label file (%d dimensions, not 1)",
			       lpath, lndim);
		goto out;
	}
	if (ldims[0] != n) {
		ret = bt_error(BT_ERR_FORMAT, "%s: %u labels but %s has %llu images", lpath,
			       ldims[0], path, (unsigned long long)n);
		goto out;
	}
	if (!(labels = malloc(n)) || !(buf = malloc(bytes))) {
		ret = bt_error(BT_ERR_NOMEM, "%s: out of memory (%llu bytes)", path,
			       (unsigned long long)bytes);
		goto out;
	}
	if ((ret = gz_read_all(lz, lpath, labels, n, "labels")) < 0 ||
	    (ret = gz_expect_end(lz, lpath)) < 0)
		goto out;
	if ((ret = gz_read_all(gz, path, buf, bytes, "pixels")) < 0 ||
	    (ret = gz_expect_end(gz, path)) < 0)
		goto out;

	for (uint64_t i = 0; i < n; i++) {
		struct bt_item *it;
		if (o && o->nclasses && labels[i] >= o->nclasses) {
			ret = bt_error(BT_ERR_INVALID, "%s: label %d of item %llu is not below the "
				       "%u classes of --classes", lpath, labels[i],
				       (unsigned long long)i, o->nclasses);
			goto out;
		}
		if (!(it = bt_itemset_push(s))) {
			ret = BT_ERR_NOMEM;
			goto out;
		}
		it->where = BT_ITEM_PIXELS;
		it->src = src;
		it->offset = i * item;
		it->height = (uint32_t)h;
		it->width = (uint32_t)w;
		it->channels = (uint32_t)c;
		it->label = labels[i];
	}
	s->srcs[src].buf = buf;
	s->srcs[src].buflen = (size_t)bytes;
	buf = NULL;
out:
	if (gz)
		gzclose(gz);
	if (lz)
		gzclose(lz);
	free(labels);
	free(buf);
	free(derived);
	return ret;
}

/* ---- CIFAR ---- */

/* Class names from the text file the CIFAR archives ship beside the batches, one per
 * line; a missing file is no error. */
static int cifar_names(struct bt_itemset *s, const char *path, const char *file)
{
	const char *slash = strrchr(path, '/');
	size_t dl = slash ? (size_t)(slash - path) + 1 : 0, cap = 0, nv = 0, vcap = 0;
	char *name, *line = NULL, **v = NULL;
	FILE *fp;
	int ret = BT_OK;

	if (!(name = malloc(dl + strlen(file) + 1)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	memcpy(name, path, dl);
	strcpy(name + dl, file);
	if (!(fp = fopen(name, "r"))) {
		if (errno != ENOENT)
			ret = bt_error_errno("%s", name);
		goto out;
	}
	for (;;) {
		char *p, *e;
		errno = 0;
		if (getline(&line, &cap, fp) < 0) {
			if (ferror(fp))
				ret = bt_error_errno("%s", name);
			break;
		}
		for (p = line; *p && isspace((unsigned char)*p); p++)
			;
		for (e = p + strlen(p); e > p && isspace((unsigned char)e[-1]); e--)
			;
		if (e == p)
			continue;
		*e = 0;
		if (nv == vcap) {
			size_t nc = vcap ? vcap * 2 : 16;
			char **nvv = realloc(v, nc * sizeof *nvv);
			if (!nvv) {
				ret = bt_error(BT_ERR_NOMEM, "out of memory");
				goto out;
			}
			v = nvv;
			vcap = nc;
		}
		if (!(v[nv] = strdup(p))) {
			ret = bt_error(BT_ERR_NOMEM, "out of memory");
			goto out;
		}
		nv++;
	}
	if (ret == BT_OK && nv > 0 && nv <= UINT32_MAX) {
		bt_source_set_classes(s, v, (uint32_t)nv);
		v = NULL;
		nv = 0;
	}
out:
	for (size_t i = 0; i < nv; i++)
		free(v[i]);
	free(v);
	free(line);
	free(name);
	if (fp)
		fclose(fp);
	return ret;
}

int bt_source_add_cifar(struct bt_itemset *s, int src, const struct bt_source_opts *o)
{
	enum { CHUNK = 1024 };
	const char *path = s->srcs[src].path;
	uint8_t *raw = NULL, *buf = NULL;
	uint64_t n, done = 0;
	size_t rec;
	struct stat st;
	int fd, variant = o ? o->cifar : 0, ret = BT_OK;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return bt_error_errno("%s", path);
	if (fstat(fd, &st) != 0) {
		ret = bt_error_errno("%s", path);
		goto out;
	}
	if (variant == 0) {
		int ten = st.st_size % 3073 == 0, hundred = st.st_size % 3074 == 0;
		if (ten && hundred) {
			ret = bt_error(BT_ERR_INVALID, "%s: %lld bytes fit both CIFAR-10 and "
				       "CIFAR-100 records; say which", path,
				       (long long)st.st_size);
			goto out;
		}
		variant = ten ? 10 : hundred ? 100 : 0;
	}
	if (variant != 10 && variant != 100) {
		ret = bt_error(variant ? BT_ERR_INVALID : BT_ERR_FORMAT, variant ?
			       "%s: CIFAR variant %d (10 or 100)" : "%s: not CIFAR: the size is "
			       "no multiple of 3073 (CIFAR-10) or 3074 (CIFAR-100) bytes",
			       path, variant);
		goto out;
	}
	rec = variant == 10 ? 3073 : 3074;
	if (st.st_size <= 0 || (uint64_t)st.st_size % rec != 0) {
		ret = bt_error(BT_ERR_FORMAT, "%s: %lld bytes is not a whole number of %zu-byte "
			       "CIFAR-%d records", path, (long long)st.st_size, rec, variant);
		goto out;
	}
	n = (uint64_t)st.st_size / rec;
	if (n > SIZE_MAX / CIFAR_PIXELS) {
		ret = bt_error(BT_ERR_TOOBIG, "%s: too large", path);
		goto out;
	}
	if (!(raw = malloc(CHUNK * rec)) || !(buf = malloc((size_t)n * CIFAR_PIXELS))) {
		ret = bt_error(BT_ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	while (done < n) {
		size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK, got = 0;
		while (got < k * rec) {
			ssize_t r = read(fd, raw + got, k * rec - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				ret = bt_error_errno("%s", path);
				goto out;
			}
			if (r == 0) {
				ret = bt_error(BT_ERR_TRUNCATED, "%s: truncated", path);
				goto out;
			}
			got += (size_t)r;
		}
		for (size_t i = 0; i < k; i++) {
			const uint8_t *r = raw + i * rec;
			const uint8_t *px = r + rec - CIFAR_PIXELS;   /* (3, 32, 32) */
			uint8_t *out = buf + (done + i) * CIFAR_PIXELS; /* (32, 32, 3) */
			struct bt_item *it;
			int label = r[rec - CIFAR_PIXELS - 1];        /* CIFAR-100: the fine one */

			for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++) {
				out[3 * p] = px[p];
				out[3 * p + 1] = px[CIFAR_SIDE * CIFAR_SIDE + p];
				out[3 * p + 2] = px[2 * CIFAR_SIDE * CIFAR_SIDE + p];
			}
			if (o && o->nclasses && (uint32_t)label >= o->nclasses) {
				ret = bt_error(BT_ERR_INVALID, "%s: label %d of record %llu is not "
					       "below the %u classes of --classes", path, label,
					       (unsigned long long)(done + i), o->nclasses);
				goto out;
			}
			if (!(it = bt_itemset_push(s))) {
				ret = BT_ERR_NOMEM;
				goto out;
			}
			it->where = BT_ITEM_PIXELS;
			it->src = src;
			it->offset = (done + i) * CIFAR_PIXELS;
			it->height = CIFAR_SIDE;
			it->width = CIFAR_SIDE;
			it->channels = 3;
			it->label = label;
		}
		done += k;
	}
	s->srcs[src].buf = buf;
	s->srcs[src].buflen = (size_t)n * CIFAR_PIXELS;
	buf = NULL;
	if (s->nclasses == 0 && !(o && o->nclasses))
		ret = cifar_names(s, path, variant == 10 ? "batches.meta.txt"
						       : "fine_label_names.txt");
out:
	free(raw);
	free(buf);
	close(fd);
	return ret;
}
