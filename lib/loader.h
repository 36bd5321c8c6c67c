/* loader.h: the multi-threaded data loader that feeds bt-aug and bt-train.
 *
 * A pool of worker threads fills a bounded ring of batch slots ahead of the consumer. Each
 * batch is fetched from the record file in order (one reader, its turn passed from batch to
 * batch, so a pipe works) and then decoded and augmented in parallel. Every random choice
 * for an image comes from (seed, epoch, record index), and batches come out in order, so
 * the output does not depend on the number of threads or on timing.
 *
 * For a GPU (aug.defer_colour): the batch holds uint8 crops and, per image, the colour
 * operations left to do (bt_batch.colour), from the very draws the other formats use;
 * data_alloc lets the pixel buffers be page-locked memory (a backend's host_alloc), which
 * a device copies from asynchronously.
 */
#ifndef BT_LOADER_H
#define BT_LOADER_H

#include <signal.h>
#include <stdint.h>

#include "augment.h"

struct bt_loader_opts {
	int threads;               /* worker threads, >= 1 */
	uint32_t batch;            /* images per batch, >= 1 */
	int shuffle;               /* a new random order each epoch (needs a seekable file) */
	uint64_t seed;
	uint64_t epoch;            /* the first epoch's number (for the RNG and the order) */
	uint64_t epochs;           /* epochs to produce, >= 1 (more than 1 needs a seekable file) */
	uint64_t limit;            /* records per epoch, 0: all */
	uint64_t first_batch;      /* start at this batch of the first epoch (resuming mid-epoch);
				    * a stream is then taken as the continuation from that batch */
	int drop_last;             /* drop each epoch's last, partial batch */
	int skip_bad;              /* skip undecodable images instead of failing */
	int record_crc;            /* fill bt_batch.crc in the workers (for writers of records) */
	struct bt_aug_params aug;
	volatile sig_atomic_t *cancel; /* non-zero stops the workers; next() then fails */
	/* Optional: allocates and frees bt_batch.data (NULL: malloc and free), called from the
	 * worker threads and from close; data_ctx is passed along. */
	void *(*data_alloc)(void *ctx, size_t bytes);
	void (*data_free)(void *ctx, void *p);
	void *data_ctx;
};

struct bt_batch {
	uint32_t n;                /* images in the batch */
	uint32_t size;             /* height = width */
	int channels;
	int format;                /* enum bt_aug_format */
	void *data;                /* (n, size, size, channels) in format */
	struct bt_aug_colour *colour; /* (n) with aug.defer_colour: each crop's colour operations
				    * (bt_aug_apply_deferred); NULL otherwise */
	int32_t *labels;           /* (n) */
	uint64_t *ids;             /* (n) */
	uint64_t *index;           /* (n) record index in the file */
	uint32_t *nsoft;           /* (n) soft labels of each image */
	float *soft;               /* (n, soft_stride) */
	uint32_t soft_stride;
	uint64_t epoch;            /* the epoch the batch belongs to */
	uint64_t number;           /* batch number within its epoch */
	uint32_t *crc;             /* (n) with record_crc: bt_record_crc of bt_batch_record(i) */
	uint32_t skipped;          /* images of this batch skipped as bad */
	char **skip_msgs;          /* (skipped) why, one line each */
};

typedef struct bt_loader bt_loader;

/* Opens path ("-": standard input) and starts the workers. */
int bt_loader_open(bt_loader **l, const char *path, const struct bt_loader_opts *o);

/* The next batch, in order: 1 and *b set (valid until the next call), 0 at the end,
 * negative on failure (the detail names the file and the record index). A batch may have
 * n = 0 when all its images were skipped. */
int bt_loader_next(bt_loader *l, const struct bt_batch **b);

/* Stops the workers and frees everything. */
void bt_loader_close(bt_loader *l);

/* Records per epoch (after the limit), or 0 while unknown (a stream not yet read to its end). */
uint64_t bt_loader_records(const bt_loader *l);
/* The record file's class names (known at open for files, at the end for streams). */
uint32_t bt_loader_nclasses(const bt_loader *l);
const char *bt_loader_class(const bt_loader *l, uint32_t i);

/* Image i of a batch as a record: raw uint8, f32 or f16 payload of shape (size, size,
 * channels), with the image's label, id and soft labels. Points into the batch. */
void bt_batch_record(const struct bt_batch *b, uint32_t i, struct bt_record *rec);

/* Seeds the RNG for one image: a hash of (seed, epoch, record index). */
void bt_loader_rng(struct bt_rng *g, uint64_t seed, uint64_t epoch, uint64_t index);

#endif
