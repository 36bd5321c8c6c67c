/* prep.c: packs an item set into record files with a pool of worker threads.
 *
 * Workers take item positions in order from a shared counter and leave each result in a
 * ring of slots; the calling thread writes the results strictly in position order. The
 * ring bounds how far workers may run ahead, so memory stays flat however many items
 * there are, and the bytes written never depend on the thread count.
 */
#define _GNU_SOURCE
#include "prep.h"
#include "bt.h"
#include "image.h"
#include "record.h"
#include "rng.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bt_encoding_parse(const char *name)
{
	static const char *const names[] = {"keep", "jpeg", "png", "raw"};
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

int bt_prep_split_name(const char *out, int which, char *buf, size_t len)
{
	const char *slash = strrchr(out, '/');
	const char *dot = strrchr(out, '.');
	const char *tag = which ? "-val" : "-train";
	int n;

	if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : out))
		n = snprintf(buf, len, "%s%s", out, tag);
	else
		n = snprintf(buf, len, "%.*s%s%s", (int)(dot - out), out, tag, dot);
	if (n < 0 || (size_t)n >= len)
		return bt_error(BT_ERR_INVALID, "%s: name too long", out);
	return BT_OK;
}

/* A slot of the ring: what a worker hands to the writer for one item. The read buffer
 * belongs to the slot and outlives the item, so steady state allocates nothing. */
struct result {
	int done;
	int status;             /* BT_OK, or the failure (msg says why) */
	char *msg;
	struct bt_record rec;
	uint32_t crc;
	uint8_t *owned;         /* an encoder's output, freed after writing */
	uint64_t bytes_in;
	uint8_t *buf;           /* the slot's read buffer */
	size_t cap;
};

struct pool {
	const struct bt_itemset *s;
	const struct bt_prep_opts *o;
	const size_t *order;
	size_t n;
	struct result *ring;
	size_t nring;
	size_t next;            /* next position a worker takes */
	size_t written;         /* positions the writer has consumed */
	int stop;
	pthread_mutex_t mu;
	pthread_cond_t space, ready;
};

static char *describe(const struct bt_itemset *s, const struct bt_item *it)
{
	char *d = NULL;
	const struct bt_source *src = &s->srcs[it->src];
	int n;
	if (it->where == BT_ITEM_FILE)
		n = asprintf(&d, "%s", it->path);
	else if (it->where == BT_ITEM_REC)
		n = asprintf(&d, "%s: record at offset %llu", src->path, (unsigned long long)it->offset);
	else
		n = asprintf(&d, "%s: image %llu", src->path, (unsigned long long)it->id);
	return n < 0 ? NULL : d;
}

static int fail(struct result *r, const struct bt_itemset *s, const struct bt_item *it, int st)
{
	char *d = describe(s, it);
	const char *m = bt_errmsg();
	r->status = st;
	/* Messages from loading already name the file; image-level ones do not. */
	if (d && strncmp(m, d, strlen(d)) == 0)
		r->msg = strdup(m);
	else if (asprintf(&r->msg, "%s: %s", d ? d : "?", m[0] ? m : bt_strerror(st)) < 0)
		r->msg = NULL;
	free(d);
	return st;
}

static void set_image_shape(struct bt_record *rec, uint32_t h, uint32_t w, uint32_t c)
{
	rec->ndim = 3;
	rec->shape[0] = h;
	rec->shape[1] = w;
	rec->shape[2] = c;
	rec->shape[3] = 0;
}

/* Encodes im as the payload of rec according to the encoding (fmt: the source's image
 * format, for "keep"). Takes ownership of nothing; *owned receives the payload. */
static int encode(const struct bt_prep_opts *o, int fmt, struct bt_image *im, struct bt_record *rec,
		  uint8_t **owned)
{
	int enc = o->encoding;
	size_t n = 0;
	int st;

	if (enc == BT_ENC_KEEP)
		enc = fmt == BT_IMAGE_JPEG ? BT_ENC_JPEG : fmt == BT_IMAGE_PNG ? BT_ENC_PNG : BT_ENC_RAW;
	switch (enc) {
	case BT_ENC_JPEG:
		st = bt_image_encode_jpeg(im, o->quality, owned, &n);
		rec->kind = BT_PAYLOAD_JPEG;
		break;
	case BT_ENC_PNG:
		st = bt_image_encode_png(im, owned, &n);
		rec->kind = BT_PAYLOAD_PNG;
		break;
	default:
		/* Raw: hand over the pixel buffer itself. */
		*owned = im->pixels;
		im->pixels = NULL;
		n = (size_t)im->width * im->height * im->channels;
		st = BT_OK;
		rec->kind = BT_PAYLOAD_RAW;
		break;
	}
	if (st < 0)
		return st;
	rec->data = *owned;
	rec->size = n;
	set_image_shape(rec, im->height, im->width, (uint32_t)im->channels);
	return BT_OK;
}

/* Fills r for one item; r->buf/r->cap are the slot's buffer, the rest starts zeroed. */
static void process(const struct bt_itemset *s, const struct bt_prep_opts *o, const struct bt_item *it,
		    struct result *r)
{
	const uint8_t *data = NULL;
	size_t size = 0;
	int st;
	struct bt_image im = {0}, rs = {0};
	struct bt_image_info info;

	r->rec.label = it->label;
	r->rec.id = it->id;
	r->rec.nsoft = it->nsoft;
	r->rec.soft = it->soft;
	bt_error_clear();
	if ((st = bt_item_read(s, it, &r->buf, &r->cap, &data, &size)) < 0) {
		fail(r, s, it, st);
		goto out;
	}
	r->bytes_in = size;
	if (it->where == BT_ITEM_PIXELS) {
		/* Raw pixels (IDX, CIFAR) keep their channel count; they are copied only when
		 * something changes them. */
		struct bt_image src = {it->width, it->height, (int)it->channels, (uint8_t *)data};
		if (!o->resize && (o->encoding == BT_ENC_KEEP || o->encoding == BT_ENC_RAW)) {
			r->rec.kind = BT_PAYLOAD_RAW;
			r->rec.data = data;
			r->rec.size = size;
			set_image_shape(&r->rec, it->height, it->width, it->channels);
			goto out;
		}
		if (o->resize) {
			uint32_t w, h;
			bt_image_size_shorter(src.width, src.height, o->resize, &w, &h);
			st = bt_image_resize(&src, w, h, &im);
			if (st == BT_OK)
				st = encode(o, BT_IMAGE_UNKNOWN, &im, &r->rec, &r->owned);
		} else {
			st = encode(o, BT_IMAGE_UNKNOWN, &src, &r->rec, &r->owned); /* JPEG or PNG */
		}
		if (st < 0)
			fail(r, s, it, st);
		goto out;
	}
	if ((st = bt_image_probe(data, size, o->max_pixels, &info)) < 0) {
		fail(r, s, it, st);
		goto out;
	}
	if (o->encoding == BT_ENC_KEEP && !o->resize) {
		/* Pass-through: the bytes go into the record untouched. */
		r->rec.kind = info.format == BT_IMAGE_JPEG ? BT_PAYLOAD_JPEG : BT_PAYLOAD_PNG;
		r->rec.data = data;
		r->rec.size = size;
		set_image_shape(&r->rec, info.height, info.width, (uint32_t)info.channels);
		goto out;
	}
	if ((st = bt_image_decode(data, size, o->max_pixels, o->resize, &im)) < 0) {
		fail(r, s, it, st);
		goto out;
	}
	if (o->resize) {
		uint32_t w, h;
		bt_image_size_shorter(im.width, im.height, o->resize, &w, &h);
		if (w != im.width || h != im.height) {
			if ((st = bt_image_resize(&im, w, h, &rs)) < 0) {
				fail(r, s, it, st);
				goto out;
			}
			bt_image_free(&im);
			im = rs;
			rs.pixels = NULL;
		}
	}
	if ((st = encode(o, info.format, &im, &r->rec, &r->owned)) < 0)
		fail(r, s, it, st);
out:
	/* Checksumming here spreads the CRC over the workers instead of the one writer. */
	if (r->status == BT_OK) {
		if ((st = bt_record_check(&r->rec)) < 0)
			fail(r, s, it, st);
		else
			r->crc = bt_record_crc(&r->rec);
	}
	bt_image_free(&im);
	bt_image_free(&rs);
}

/* Empties a slot for reuse, keeping its read buffer. */
static void slot_clear(struct result *r)
{
	uint8_t *buf = r->buf;
	size_t cap = r->cap;
	free(r->owned);
	free(r->msg);
	memset(r, 0, sizeof *r);
	r->buf = buf;
	r->cap = cap;
}

static void *worker(void *arg)
{
	struct pool *p = arg;
	for (;;) {
		size_t pos;
		struct result r;
		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->next < p->n && p->next >= p->written + p->nring)
			pthread_cond_wait(&p->space, &p->mu);
		if (p->stop || p->next >= p->n) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		pos = p->next++;
		/* The slot is free: the writer has consumed position pos - nring. */
		r = p->ring[pos % p->nring];
		pthread_mutex_unlock(&p->mu);

		process(p->s, p->o, &p->s->items[p->order[pos]], &r);
		r.done = 1;

		pthread_mutex_lock(&p->mu);
		p->ring[pos % p->nring] = r;
		pthread_cond_broadcast(&p->ready);
		pthread_mutex_unlock(&p->mu);
	}
}

/* The order of items in the output(s), and which output each goes to. */
static int plan(const struct bt_itemset *s, const struct bt_prep_opts *o, size_t **order_out,
		uint8_t **dest_out)
{
	size_t *order = malloc((s->n ? s->n : 1) * sizeof *order);
	uint8_t *dest = calloc(s->n ? s->n : 1, 1);
	uint64_t *total = NULL, *seen = NULL;
	int32_t maxl = -1;
	size_t i;

	if (!order || !dest)
		goto nomem;
	for (i = 0; i < s->n; i++)
		order[i] = i;
	if (o->shuffle) {
		struct bt_rng g;
		bt_rng_seed(&g, o->seed);
		for (i = s->n; i > 1; i--) {
			size_t j = (size_t)bt_rng_below(&g, i), t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
	}
	if (o->split > 0) {
		/* Per class: the first round(split * n_c) items in output order go to train. The
		 * unlabelled (-1) form a class of their own, slot 0. */
		for (i = 0; i < s->n; i++)
			if (s->items[i].label > maxl)
				maxl = s->items[i].label;
		total = calloc((size_t)maxl + 2, sizeof *total);
		seen = calloc((size_t)maxl + 2, sizeof *seen);
		if (!total || !seen)
			goto nomem;
		for (i = 0; i < s->n; i++)
			total[s->items[i].label + 1]++;
		for (i = 0; i < s->n; i++) {
			size_t c = (size_t)(s->items[order[i]].label + 1);
			uint64_t ntrain = (uint64_t)(o->split * (double)total[c] + 0.5);
			dest[i] = seen[c]++ < ntrain ? 0 : 1;
		}
	}
	free(total);
	free(seen);
	*order_out = order;
	*dest_out = dest;
	return BT_OK;
nomem:
	free(order);
	free(dest);
	free(total);
	free(seen);
	return bt_error(BT_ERR_NOMEM, "out of memory planning %zu items", s->n);
}

int bt_prep_pack(const struct bt_itemset *s, const char *out, const struct bt_prep_opts *o,
		 struct bt_prep_stats *stats)
{
	bt_record_writer *w[2] = {NULL, NULL};
	struct pool p;
	pthread_t *th = NULL;
	size_t *order = NULL;
	uint8_t *dest = NULL;
	int nout = o->split > 0 ? 2 : 1, nth = 0, st, k;
	size_t pos;

	memset(stats, 0, sizeof *stats);
	memset(&p, 0, sizeof p);
	if (o->split > 0 && (o->split >= 1 || strcmp(out, "-") == 0))
		return bt_error(BT_ERR_INVALID, o->split >= 1 ? "split ratio must be below 1"
							      : "cannot split into standard output");
	for (k = 0; k < nout; k++) {
		if (nout == 1)
			snprintf(stats->out[0], sizeof stats->out[0], "%s", out);
		else if ((st = bt_prep_split_name(out, k, stats->out[k], sizeof stats->out[k])) < 0)
			return st;
	}
	if ((st = plan(s, o, &order, &dest)) < 0)
		return st;
	for (k = 0; k < nout; k++) {
		if ((st = bt_record_writer_open(&w[k], stats->out[k])) < 0)
			goto out;
		bt_record_writer_set_sync(w[k], o->fsync);
		if (s->nclasses &&
		    (st = bt_record_writer_set_classes(w[k], s->nclasses, (const char *const *)s->classes)) < 0)
			goto out;
	}

	p.s = s;
	p.o = o;
	p.order = order;
	p.n = s->n;
	p.nring = (size_t)(o->threads > 0 ? o->threads : 1) * 8;
	p.ring = calloc(p.nring, sizeof *p.ring);
	th = calloc((size_t)(o->threads > 0 ? o->threads : 1), sizeof *th);
	if (!p.ring || !th) {
		st = bt_error(BT_ERR_NOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.space, NULL);
	pthread_cond_init(&p.ready, NULL);
	for (nth = 0; nth < (o->threads > 0 ? o->threads : 1); nth++) {
		if (pthread_create(&th[nth], NULL, worker, &p) != 0) {
			if (nth == 0) {
				st = bt_error(BT_ERR_IO, "cannot start a worker thread");
				goto join;
			}
			break;
		}
	}

	st = BT_OK;
	for (pos = 0; pos < s->n; pos++) {
		struct result *r = &p.ring[pos % p.nring];
		pthread_mutex_lock(&p.mu);
		while (!r->done)
			pthread_cond_wait(&p.ready, &p.mu);
		pthread_mutex_unlock(&p.mu);

		/* The slot is ours until `written` moves past it. */
		if (o->cancel && *o->cancel)
			st = bt_error(BT_ERR_IO, "interrupted");
		else if (r->status < 0 && o->skip_bad) {
			stats->skipped++;
			if (o->on_skip)
				o->on_skip(o->ctx, r->msg ? r->msg : bt_strerror(r->status));
		} else if (r->status < 0) {
			st = bt_error(r->status, "%s", r->msg ? r->msg : bt_strerror(r->status));
		} else if ((st = bt_record_writer_put_crc(w[dest[pos]], &r->rec, r->crc)) == BT_OK) {
			stats->packed++;
			stats->count[dest[pos]]++;
			stats->bytes_in += r->bytes_in;
		}
		pthread_mutex_lock(&p.mu);
		slot_clear(r);
		p.written = pos + 1;
		pthread_cond_broadcast(&p.space);
		pthread_mutex_unlock(&p.mu);
		if (st < 0)
			break;
		if (o->on_progress) {
			uint64_t b = bt_record_writer_bytes(w[0]) + (w[1] ? bt_record_writer_bytes(w[1]) : 0);
			o->on_progress(o->ctx, pos + 1, s->n, b);
		}
	}
join:
	pthread_mutex_lock(&p.mu);
	p.stop = 1;
	pthread_cond_broadcast(&p.space);
	pthread_mutex_unlock(&p.mu);
	for (k = 0; k < nth; k++)
		pthread_join(th[k], NULL);
	/* Results the writer never took (after a failure). */
	for (size_t i = 0; i < p.nring; i++) {
		slot_clear(&p.ring[i]);
		free(p.ring[i].buf);
	}
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.space);
	pthread_cond_destroy(&p.ready);
out:
	/* Commit both outputs or neither: a failure committing the second removes the first. */
	for (k = 0; k < nout; k++) {
		if (st == BT_OK) {
			uint64_t bytes = bt_record_writer_final_bytes(w[k]);
			st = bt_record_writer_commit(w[k]);
			w[k] = NULL;
			if (st == BT_OK)
				stats->bytes_out += bytes; /* also right for standard output */
			else if (k == 1)
				remove(stats->out[0]);
		}
		bt_record_writer_abort(w[k]);
		w[k] = NULL;
	}
	free(p.ring);
	free(th);
	free(order);
	free(dest);
	return st;
}
