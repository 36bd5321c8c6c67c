/* loader.c: worker threads that read, decode and augment record files into batches.
 *
 * Batches are numbered globally (epoch after epoch). A worker claims the next batch number
 * when a ring slot is free, waits for its turn at the reader (turns go in batch order, so a
 * stream is read front to back and a file is read in the epoch's order), copies the batch's
 * records into the slot, gives the turn on, and then decodes and augments them without
 * holding any lock. The consumer takes slots in batch order. Two locks: `mu` guards the ring
 * and the counters, `fetch_mu` the reader and the turn; they are never held together.
 */
#define _GNU_SOURCE
#include "loader.h"
#include "bt.h"
#include "record.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SLOT_FREE = 0, SLOT_BUSY, SLOT_READY };

struct slot {
	int state;
	int status;             /* < 0: the loader fails at this batch, msg says why */
	char *msg;
	int end;                /* no batch here: the data ended before it */
	struct bt_batch b;
	/* the fetched records; their payloads live in pay[i] */
	uint32_t nrec;
	struct bt_record *recs; /* (batch) */
	uint64_t *recidx;       /* (batch) */
	float *recsoft;         /* (batch, soft_cap) */
	uint32_t soft_cap;
	uint8_t **pay;          /* (batch) */
	size_t *paycap;         /* (batch) */
	size_t datacap;         /* bytes allocated at b.data */
};

struct bt_loader {
	struct bt_loader_opts o;
	char *path;
	bt_record_reader *r;
	int random_access;      /* seekable with a footer */
	uint64_t nrecords;      /* in the file, when known */
	uint64_t per_epoch;     /* records per epoch after the limit; 0 while unknown */
	uint64_t bpe;           /* batches per epoch; 0: unknown (a stream) */
	uint64_t total;         /* batches in all; UINT64_MAX when unknown */
	uint64_t *order;        /* the order of the epoch order_epoch (shuffle) */
	uint64_t order_epoch;
	int have_order;
	int channels;           /* of the first record fetched; -1 before */
	uint64_t stream_taken;  /* stream: records handed out so far */
	int stream_done;

	struct slot *ring;
	size_t nring;
	uint64_t next;          /* next batch a worker claims */
	uint64_t consumed;      /* batches the consumer has released */
	int holding;            /* the consumer holds slot `consumed` */
	atomic_int stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t fetch_mu;
	pthread_cond_t fetch_cv;
	uint64_t turn;          /* the batch whose turn it is to fetch */

	pthread_t *th;
	int nth;
};

void bt_loader_rng(struct bt_rng *g, uint64_t seed, uint64_t epoch, uint64_t index)
{
	bt_rng_seed(g, bt_mix64(bt_mix64(seed ^ UINT64_C(0x243f6a8885a308d3)) + epoch) ^
			       bt_mix64(index + UINT64_C(0x13198a2e03707344)));
}

static int slot_fail(struct slot *s, int st)
{
	const char *m = bt_errmsg();
	s->status = st;
	free(s->msg);
	s->msg = strdup(m[0] ? m : bt_strerror(st));
	return st;
}

static int slot_alloc(struct slot *s, uint32_t batch, int defer)
{
	s->recs = calloc(batch, sizeof *s->recs);
	s->recidx = calloc(batch, sizeof *s->recidx);
	s->pay = calloc(batch, sizeof *s->pay);
	s->paycap = calloc(batch, sizeof *s->paycap);
	s->b.labels = calloc(batch, sizeof *s->b.labels);
	s->b.ids = calloc(batch, sizeof *s->b.ids);
	s->b.index = calloc(batch, sizeof *s->b.index);
	s->b.nsoft = calloc(batch, sizeof *s->b.nsoft);
	s->b.crc = calloc(batch, sizeof *s->b.crc);
	s->b.skip_msgs = calloc(batch, sizeof *s->b.skip_msgs);
	if (defer)
		s->b.colour = calloc(batch, sizeof *s->b.colour);
	if (!s->recs || !s->recidx || !s->pay || !s->paycap || !s->b.labels || !s->b.ids ||
	    !s->b.index || !s->b.nsoft || !s->b.crc || !s->b.skip_msgs || (defer && !s->b.colour))
		return bt_error(BT_ERR_NOMEM, "out of memory for the loader's batches");
	return BT_OK;
}

static void slot_reset(struct slot *s)
{
	for (uint32_t i = 0; i < s->b.skipped; i++)
		free(s->b.skip_msgs[i]);
	free(s->msg);
	s->msg = NULL;
	s->status = 0;
	s->end = 0;
	s->nrec = 0;
	s->b.n = 0;
	s->b.skipped = 0;
	s->state = SLOT_FREE;
}

static void data_free(const struct bt_loader_opts *o, void *p)
{
	if (o->data_free)
		o->data_free(o->data_ctx, p);
	else
		free(p);
}

static void slot_free(struct slot *s, const struct bt_loader_opts *o)
{
	uint32_t batch = o->batch;

	slot_reset(s);
	for (uint32_t i = 0; s->pay && i < batch; i++)
		free(s->pay[i]);
	free(s->pay);
	free(s->paycap);
	free(s->recs);
	free(s->recidx);
	free(s->recsoft);
	if (s->b.data)
		data_free(o, s->b.data);
	free(s->b.colour);
	free(s->b.labels);
	free(s->b.ids);
	free(s->b.index);
	free(s->b.nsoft);
	free(s->b.crc);
	free(s->b.soft);
	free(s->b.skip_msgs);
}

/* The epoch's order of record indices (shuffled) for random access. */
static int epoch_order(bt_loader *l, uint64_t epoch)
{
	struct bt_rng g;
	if (l->have_order && l->order_epoch == epoch)
		return BT_OK;
	if (!l->order && !(l->order = malloc((l->nrecords ? l->nrecords : 1) * sizeof *l->order)))
		return bt_error(BT_ERR_NOMEM, "out of memory for the order of %llu records",
				(unsigned long long)l->nrecords);
	for (uint64_t i = 0; i < l->nrecords; i++)
		l->order[i] = i;
	bt_rng_seed(&g, bt_mix64(l->o.seed ^ UINT64_C(0xa4093822299f31d0)) ^ bt_mix64(epoch + 1));
	for (uint64_t i = l->nrecords; i > 1; i--) {
		uint64_t j = bt_rng_below(&g, i), t = l->order[i - 1];
		l->order[i - 1] = l->order[j];
		l->order[j] = t;
	}
	l->order_epoch = epoch;
	l->have_order = 1;
	return BT_OK;
}

/* Copies one record into slot position i. */
static int take_record(bt_loader *l, struct slot *s, uint32_t i, const struct bt_record *rec,
		       uint64_t index)
{
	if (rec->size > s->paycap[i]) {
		uint8_t *p = realloc(s->pay[i], rec->size);
		if (!p)
			return bt_error(BT_ERR_NOMEM, "%s: record %llu: out of memory", l->path,
					(unsigned long long)index);
		s->pay[i] = p;
		s->paycap[i] = rec->size;
	}
	if (rec->nsoft > s->soft_cap) {
		float *f = realloc(s->recsoft, (size_t)l->o.batch * rec->nsoft * sizeof *f);
		if (!f)
			return bt_error(BT_ERR_NOMEM, "out of memory");
		/* Re-spread the soft labels already taken to the new stride. */
		for (uint32_t k = i; k-- > 0;)
			memmove(f + (size_t)k * rec->nsoft, f + (size_t)k * s->soft_cap,
				s->soft_cap * sizeof *f);
		s->recsoft = f;
		s->soft_cap = rec->nsoft;
		for (uint32_t k = 0; k < i; k++)
			if (s->recs[k].nsoft)
				s->recs[k].soft = f + (size_t)k * s->soft_cap;
	}
	memcpy(s->pay[i], rec->data, rec->size);
	s->recs[i] = *rec;
	s->recs[i].data = s->pay[i];
	if (rec->nsoft) {
		memcpy(s->recsoft + (size_t)i * s->soft_cap, rec->soft, rec->nsoft * sizeof(float));
		s->recs[i].soft = s->recsoft + (size_t)i * s->soft_cap;
	}
	s->recidx[i] = index;
	if (l->channels < 0)
		l->channels = bt_aug_channels(rec);
	return BT_OK;
}

/* Reads batch b's records into s. Runs with fetch_mu held, in batch order. */
static int fetch(bt_loader *l, uint64_t b, struct slot *s)
{
	struct bt_record rec;
	uint32_t B = l->o.batch;
	int st;

	if (l->bpe) {
		uint64_t epoch = l->o.epoch + b / l->bpe, k = b % l->bpe;
		uint64_t first = k * B, last = first + B < l->per_epoch ? first + B : l->per_epoch;
		s->b.epoch = epoch;
		s->b.number = k;
		if (l->o.shuffle && (st = epoch_order(l, epoch)) < 0)
			return slot_fail(s, st);
		for (uint64_t p = first; p < last; p++) {
			uint64_t idx = l->o.shuffle ? l->order[p] : p;
			if (bt_record_reader_index(l->r) != idx && (st = bt_record_reader_seek(l->r, idx)) < 0)
				return slot_fail(s, st);
			if ((st = bt_record_reader_next(l->r, &rec)) <= 0) {
				if (st == 0)
					st = bt_error(BT_ERR_TRUNCATED, "%s: record %llu missing", l->path,
						      (unsigned long long)idx);
				return slot_fail(s, st);
			}
			if ((st = take_record(l, s, s->nrec, &rec, idx)) < 0)
				return slot_fail(s, st);
			s->nrec++;
		}
		return BT_OK;
	}
	/* A stream: the next records front to back. */
	s->b.epoch = l->o.epoch;
	s->b.number = b;
	while (s->nrec < B && !l->stream_done) {
		uint64_t idx = bt_record_reader_index(l->r);
		if (l->o.limit && l->stream_taken >= l->o.limit) {
			l->stream_done = 1;
			break;
		}
		st = bt_record_reader_next(l->r, &rec);
		if (st < 0)
			return slot_fail(s, st);
		if (st == 0) {
			l->stream_done = 1;
			break;
		}
		if ((st = take_record(l, s, s->nrec, &rec, idx)) < 0)
			return slot_fail(s, st);
		s->nrec++;
		l->stream_taken++;
	}
	if (s->nrec == 0 || (l->o.drop_last && s->nrec < B))
		s->end = 1;
	return BT_OK;
}

/* Decodes and augments the slot's records into its batch. No lock held. */
static int decode(bt_loader *l, struct slot *s, struct bt_aug_scratch *scr)
{
	const struct bt_aug_params *p = &l->o.aug;
	struct bt_batch *b = &s->b;
	int C = l->channels;
	size_t per = bt_aug_out_bytes(p, C), need = per * l->o.batch;
	uint32_t out = 0, maxsoft = 0;
	int st;

	b->size = p->size;
	b->channels = C;
	b->format = p->format;
	if (need > s->datacap) {
		/* The old contents need not survive: a custom allocator gets a fresh block. */
		void *d;
		if (l->o.data_alloc) {
			if (b->data)
				data_free(&l->o, b->data);
			b->data = NULL;
			s->datacap = 0;
			d = l->o.data_alloc(l->o.data_ctx, need);
		} else {
			d = realloc(b->data, need);
		}
		if (!d)
			return slot_fail(s, bt_error(BT_ERR_NOMEM, "out of memory for a batch of %zu bytes", need));
		b->data = d;
		s->datacap = need;
	}
	for (uint32_t i = 0; i < s->nrec; i++)
		if (s->recs[i].nsoft > maxsoft)
			maxsoft = s->recs[i].nsoft;
	if (maxsoft > b->soft_stride || (!b->soft && maxsoft)) {
		float *f = realloc(b->soft, (size_t)l->o.batch * maxsoft * sizeof *f);
		if (!f)
			return slot_fail(s, bt_error(BT_ERR_NOMEM, "out of memory"));
		b->soft = f;
		b->soft_stride = maxsoft;
	}
	for (uint32_t i = 0; i < s->nrec; i++) {
		const struct bt_record *rec = &s->recs[i];
		struct bt_aug_draw d;
		struct bt_rng g;
		bt_error_clear();
		if (bt_aug_channels(rec) != C) {
			st = bt_error(BT_ERR_FORMAT, "%d channels where the data has %d", bt_aug_channels(rec), C);
		} else if (rec->ndim != 3 || rec->shape[0] == 0 || rec->shape[1] == 0) {
			st = bt_error(BT_ERR_FORMAT, "not an image record (%s, %d dimensions)",
				      bt_payload_name(rec->kind), rec->ndim);
		} else {
			bt_loader_rng(&g, l->o.seed, b->epoch, s->recidx[i]);
			bt_aug_draw(p, rec->shape[1], rec->shape[0], &g, &d);
			st = bt_aug_apply_deferred(p, &d, rec, (uint8_t *)b->data + per * out,
						   b->colour ? &b->colour[out] : NULL, scr);
		}
		if (st < 0) {
			char *m = NULL;
			if (asprintf(&m, "%s: record %llu: %s", l->path, (unsigned long long)s->recidx[i],
				     bt_errmsg()[0] ? bt_errmsg() : bt_strerror(st)) < 0)
				m = NULL;
			if (!l->o.skip_bad) {
				bt_error(st, "%s", m ? m : bt_strerror(st));
				free(m);
				return slot_fail(s, st);
			}
			b->skip_msgs[b->skipped++] = m;
			continue;
		}
		b->labels[out] = rec->label;
		b->ids[out] = rec->id;
		b->index[out] = s->recidx[i];
		b->nsoft[out] = rec->nsoft;
		if (rec->nsoft)
			memcpy(b->soft + (size_t)out * b->soft_stride, rec->soft, rec->nsoft * sizeof(float));
		out++;
	}
	b->n = out;
	/* Checksumming here keeps the consumer's thread, which writes, light. */
	if (l->o.record_crc) {
		for (uint32_t i = 0; i < out; i++) {
			struct bt_record rec;
			bt_batch_record(b, i, &rec);
			b->crc[i] = bt_record_crc(&rec);
		}
	}
	return BT_OK;
}

void bt_batch_record(const struct bt_batch *b, uint32_t i, struct bt_record *rec)
{
	size_t esize = b->format == BT_AUG_F32 ? 4 : b->format == BT_AUG_F16 ? 2 : 1;
	size_t per = (size_t)b->size * b->size * (size_t)b->channels * esize;
	memset(rec, 0, sizeof *rec);
	rec->kind = b->format == BT_AUG_F32 ? BT_PAYLOAD_F32 : b->format == BT_AUG_F16 ? BT_PAYLOAD_F16 : BT_PAYLOAD_RAW;
	rec->ndim = 3;
	rec->shape[0] = rec->shape[1] = b->size;
	rec->shape[2] = (uint32_t)b->channels;
	rec->label = b->labels[i];
	rec->id = b->ids[i];
	rec->nsoft = b->nsoft[i];
	rec->soft = b->nsoft[i] ? b->soft + (size_t)i * b->soft_stride : NULL;
	rec->size = per;
	rec->data = (const uint8_t *)b->data + per * i;
}

static void *worker(void *arg)
{
	bt_loader *l = arg;
	struct bt_aug_scratch *scr = bt_aug_scratch_new();

	for (;;) {
		uint64_t b;
		struct slot *s;
		int stop = 0;

		pthread_mutex_lock(&l->mu);
		while (!atomic_load(&l->stop) && l->next < l->total && l->next >= l->consumed + l->nring)
			pthread_cond_wait(&l->cv, &l->mu);
		if (atomic_load(&l->stop) || l->next >= l->total) {
			pthread_mutex_unlock(&l->mu);
			break;
		}
		b = l->next++;
		s = &l->ring[b % l->nring];
		s->state = SLOT_BUSY;
		pthread_mutex_unlock(&l->mu);

		pthread_mutex_lock(&l->fetch_mu);
		while (!atomic_load(&l->stop) && l->turn != b)
			pthread_cond_wait(&l->fetch_cv, &l->fetch_mu);
		if (atomic_load(&l->stop)) {
			pthread_mutex_unlock(&l->fetch_mu);
			break;
		}
		if (!scr)
			slot_fail(s, bt_error(BT_ERR_NOMEM, "out of memory for a worker"));
		else if (fetch(l, b, s) < 0 || (l->o.cancel && *l->o.cancel))
			stop = 1;
		l->turn++;
		pthread_cond_broadcast(&l->fetch_cv);
		pthread_mutex_unlock(&l->fetch_mu);

		if (!stop && !s->end && s->status == 0 && scr)
			decode(l, s, scr);
		if (s->status < 0)
			stop = 1;

		pthread_mutex_lock(&l->mu);
		s->state = SLOT_READY;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
		if (stop)
			break;
	}
	bt_aug_scratch_free(scr);
	return NULL;
}

int bt_loader_open(bt_loader **out, const char *path, const struct bt_loader_opts *o)
{
	bt_loader *l;
	int st;

	*out = NULL;
	if (o->threads < 1 || o->batch < 1 || o->epochs < 1)
		return bt_error(BT_ERR_INVALID, "loader: threads, batch and epochs must be at least 1");
	if ((st = bt_aug_check(&o->aug)) < 0)
		return st;
	if (!(l = calloc(1, sizeof *l)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	l->o = *o;
	l->channels = -1;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	pthread_mutex_init(&l->fetch_mu, NULL);
	pthread_cond_init(&l->fetch_cv, NULL);
	if (!(l->path = strdup(strcmp(path, "-") == 0 ? "<stdin>" : path))) {
		st = bt_error(BT_ERR_NOMEM, "out of memory");
		goto fail;
	}
	/* Standard input is a stream whatever it is connected to: refuse what needs a file
	 * before consuming any of it. */
	if (strcmp(path, "-") == 0 && (o->shuffle || o->epochs > 1)) {
		st = bt_error(BT_ERR_UNSUPPORTED, "<stdin>: %s needs a seekable record file with a footer (this is a stream)",
			      o->shuffle ? "shuffling" : "more than one epoch");
		goto fail;
	}
	if ((st = bt_record_reader_open(&l->r, path)) < 0)
		goto fail;
	l->random_access = strcmp(path, "-") != 0 && bt_record_reader_has_footer(l->r);
	if (l->random_access) {
		l->nrecords = bt_record_reader_count(l->r);
		l->per_epoch = o->limit && o->limit < l->nrecords ? o->limit : l->nrecords;
		l->bpe = o->drop_last ? l->per_epoch / o->batch : (l->per_epoch + o->batch - 1) / o->batch;
		l->total = l->bpe * o->epochs;
		if (l->bpe == 0)
			l->total = 0;
		if (o->first_batch > l->total) {
			st = bt_error(BT_ERR_INVALID, "%s: cannot start at batch %llu: there are %llu",
				      l->path, (unsigned long long)o->first_batch, (unsigned long long)l->total);
			goto fail;
		}
	} else {
		const char *why = bt_record_reader_footer_problem(l->r);
		if (o->shuffle || o->epochs > 1) {
			st = bt_error(BT_ERR_UNSUPPORTED, "%s: %s needs a seekable record file with a footer (%s)",
				      l->path, o->shuffle ? "shuffling" : "more than one epoch",
				      strcmp(path, "-") == 0 ? "this is a stream" : why ? why : "none");
			goto fail;
		}
		l->total = UINT64_MAX;
	}
	l->next = l->turn = l->consumed = o->first_batch;
	l->nring = (size_t)o->threads + 2;
	if (!(l->ring = calloc(l->nring, sizeof *l->ring))) {
		st = bt_error(BT_ERR_NOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < l->nring; i++)
		if ((st = slot_alloc(&l->ring[i], o->batch, o->aug.defer_colour)) < 0)
			goto fail;
	if (!(l->th = calloc((size_t)o->threads, sizeof *l->th))) {
		st = bt_error(BT_ERR_NOMEM, "out of memory");
		goto fail;
	}
	for (l->nth = 0; l->nth < o->threads; l->nth++)
		if (pthread_create(&l->th[l->nth], NULL, worker, l) != 0)
			break;
	if (l->nth == 0) {
		st = bt_error(BT_ERR_IO, "cannot start a loader thread");
		goto fail;
	}
	*out = l;
	return BT_OK;
fail:
	bt_loader_close(l);
	return st;
}

int bt_loader_next(bt_loader *l, const struct bt_batch **bp)
{
	struct slot *s;
	int st;

	pthread_mutex_lock(&l->mu);
	if (l->holding) {
		slot_reset(&l->ring[l->consumed % l->nring]);
		l->consumed++;
		l->holding = 0;
		pthread_cond_broadcast(&l->cv);
	}
	if (l->consumed >= l->total) {
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	s = &l->ring[l->consumed % l->nring];
	while (s->state != SLOT_READY && !(l->o.cancel && *l->o.cancel)) {
		/* Wake up now and then: a signal handler cannot signal a condition variable. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
	}
	if (s->state != SLOT_READY) {
		pthread_mutex_unlock(&l->mu);
		return bt_error(BT_ERR_IO, "interrupted");
	}
	if (s->status < 0) {
		st = bt_error(s->status, "%s", s->msg ? s->msg : bt_strerror(s->status));
		pthread_mutex_unlock(&l->mu);
		return st;
	}
	if (s->end) {
		l->total = l->consumed; /* nothing after the end */
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	l->holding = 1;
	*bp = &s->b;
	pthread_mutex_unlock(&l->mu);
	return 1;
}

void bt_loader_close(bt_loader *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	atomic_store(&l->stop, 1);
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_mutex_lock(&l->fetch_mu);
	pthread_cond_broadcast(&l->fetch_cv);
	pthread_mutex_unlock(&l->fetch_mu);
	for (int i = 0; i < l->nth; i++)
		pthread_join(l->th[i], NULL);
	for (size_t i = 0; l->ring && i < l->nring; i++)
		slot_free(&l->ring[i], &l->o);
	free(l->ring);
	free(l->th);
	free(l->order);
	bt_record_reader_close(l->r);
	free(l->path);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->fetch_mu);
	pthread_cond_destroy(&l->fetch_cv);
	free(l);
}

uint64_t bt_loader_records(const bt_loader *l)
{
	return l->per_epoch;
}

uint32_t bt_loader_nclasses(const bt_loader *l)
{
	return bt_record_reader_nclasses(l->r);
}

const char *bt_loader_class(const bt_loader *l, uint32_t i)
{
	return bt_record_reader_class(l->r, i);
}
