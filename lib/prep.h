/* prep.h: packing an item set into record files (the engine of bt-prep).
 *
 * Items are processed by a pool of worker threads (read, probe, and when asked decode,
 * resize and re-encode) and written by the calling thread in a fixed order, so the output
 * does not depend on the number of threads. Nothing prints: the tool gets warnings and
 * progress through callbacks.
 */
#ifndef BT_PREP_H
#define BT_PREP_H

#include <signal.h>
#include <stdint.h>

#include "source.h"

enum bt_encoding { BT_ENC_KEEP = 0, BT_ENC_JPEG, BT_ENC_PNG, BT_ENC_RAW };

/* "keep", "jpeg", "png", "raw" <-> enum; -1 for an unknown name. */
int bt_encoding_parse(const char *name);

struct bt_prep_opts {
	int threads;              /* >= 1 */
	int encoding;             /* enum bt_encoding */
	uint32_t resize;          /* shorter side; 0 keeps the size */
	int quality;              /* JPEG quality when encoding */
	int shuffle;
	uint64_t seed;
	double split;             /* 0: one output; else fraction of each class to train */
	int skip_bad;
	int fsync;                /* fsync outputs before renaming them (see record.h) */
	uint64_t max_pixels;      /* 0: no limit */
	volatile sig_atomic_t *cancel; /* when it becomes non-zero the run stops and fails */
	/* Called from the writing thread for each skipped item (--skip-bad), with the reason. */
	void (*on_skip)(void *ctx, const char *msg);
	/* Called from the writing thread after each record. */
	void (*on_progress)(void *ctx, uint64_t done, uint64_t total, uint64_t bytes_out);
	void *ctx;
};

struct bt_prep_stats {
	uint64_t packed, skipped;
	uint64_t bytes_in;        /* image bytes read */
	uint64_t bytes_out;       /* bytes of the output file(s) */
	uint64_t count[2];        /* records in each output (train, val when splitting) */
	char out[2][4096];        /* the output names */
};

/* Name of split output `which` (0 train, 1 val): "data.btr" -> "data-train.btr". */
int bt_prep_split_name(const char *out, int which, char *buf, size_t len);

/* Packs every item of s into out ("-" for standard output) or, with opts->split, into its
 * two split names. On failure no output file is left behind. */
int bt_prep_pack(const struct bt_itemset *s, const char *out, const struct bt_prep_opts *o,
		 struct bt_prep_stats *stats);

#endif
