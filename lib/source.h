/* source.h: the inputs bt-prep packs, enumerated into a flat list of items.
 *
 * Every source kind is turned into an array of struct bt_item before any image is read, so
 * that shuffling, splitting and parallel packing work the same way for all of them. An
 * item says where its bytes are (a file path, a byte range of an MXNet .rec file, or
 * pixels already in memory for IDX and CIFAR); bt_item_load fetches them. Loading is
 * thread-safe: different threads may load different items at once.
 *
 * Checklist when adding a source kind: enum bt_source_kind, bt_source_kind_name,
 * bt_itemset_add (detection and dispatch), a lib/source_KIND.c, tests/gen/mkdata.c
 * (a fixture), tests/bats/prep.bats, man/man1/bt-prep.1 (SOURCES).
 */
#ifndef BT_SOURCE_H
#define BT_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum bt_source_kind {
	BT_SRC_AUTO = 0,
	BT_SRC_FOLDER,   /* ImageFolder: DIR/CLASS/IMAGE, classes sorted by name (strcmp) */
	BT_SRC_LIST,     /* MXNet .lst: index \t label [\t label...] \t path (path under root) */
	BT_SRC_REC,      /* MXNet RecordIO .rec (+ .idx) */
	BT_SRC_IDX,      /* MNIST-style IDX images (+ labels), gzipped or not */
	BT_SRC_CIFAR,    /* CIFAR-10 / CIFAR-100 binary batches */
	BT_SRC_STDIN,    /* lines "path label" on standard input */
};

/* "folder", "list", "rec", "idx", "cifar", "stdin"; NULL for an unknown kind. */
const char *bt_source_kind_name(int kind);
/* Inverse of bt_source_kind_name; "auto" gives BT_SRC_AUTO. -1 when unknown. */
int bt_source_kind_parse(const char *name);

enum bt_item_where {
	BT_ITEM_FILE = 1,  /* whole file at path: an encoded image */
	BT_ITEM_REC,       /* encoded image inside an MXNet record: file src->path, offset */
	BT_ITEM_PIXELS,    /* raw uint8 (H, W, C) pixels in memory at src's buffer + offset */
};

struct bt_item {
	int where;             /* enum bt_item_where */
	int src;               /* index into the set's sources */
	const char *path;      /* BT_ITEM_FILE: the file (owned by the set) */
	uint64_t offset;       /* BT_ITEM_REC: offset of the record's magic; PIXELS: byte offset */
	uint32_t height, width, channels; /* BT_ITEM_PIXELS only */
	int32_t label;         /* -1 when unknown */
	uint64_t id;
	uint32_t nsoft;        /* extra float labels (MXNet multi-label); 0 when none */
	float *soft;           /* owned by the set */
};

struct bt_source_opts {
	int kind;                /* enum bt_source_kind; BT_SRC_AUTO detects */
	const char *root;        /* BT_SRC_LIST: directory the paths are relative to (NULL: the
	                          * list file's directory) */
	const char *labels;      /* BT_SRC_IDX: label file (NULL: derived from the image file's
	                          * name, "images-idx3" -> "labels-idx1") */
	/* Explicit class list (--classes); when set, ImageFolder directories must be in it and
	 * stdin/list labels may be class names as well as numbers. */
	uint32_t nclasses;
	const char *const *classes;
	int cifar;               /* BT_SRC_CIFAR: 10 or 100 forces the record layout; 0 tells
	                          * them apart by file size */
};

struct bt_source {
	int kind;
	char *path;              /* as given */
	uint8_t *buf;            /* IDX/CIFAR pixels (H, W, C) for all items of this source */
	size_t buflen;
	int fd;                  /* REC: open descriptor for pread, else -1 */
};

struct bt_itemset {
	struct bt_item *items;
	size_t n, cap;
	struct bt_source *srcs;
	size_t nsrcs;
	/* Class names in label order. From --classes, from ImageFolder directory names (sorted
	 * union over all folder sources), from CIFAR's batches.meta.txt / fine_label_names.txt
	 * when present next to the batch; else empty (tools then name classes by number). */
	char **classes;
	uint32_t nclasses;
	/* Owned strings and floats (paths, soft labels) live in this arena. */
	void *arena;
};

void bt_itemset_init(struct bt_itemset *s);
void bt_itemset_free(struct bt_itemset *s);

/* Adds every item of one source ("-" is standard input). Errors name the source and, for
 * text inputs, the line: "list.lst:12: expected 'index<TAB>label<TAB>path'". An empty
 * source (a directory with no class directories, a class directory with no files is fine)
 * is an error: "DIR: no class directories". On failure the set is left as it was. */
int bt_itemset_add(struct bt_itemset *s, const char *source, const struct bt_source_opts *o);

/* Adds the "path label" lines of an open stream, as bt_itemset_add does for "-"; name is
 * used in messages ("<stdin>:3: ...") and as the source's path. fp is not closed. */
int bt_itemset_add_stream(struct bt_itemset *s, FILE *fp, const char *name,
			  const struct bt_source_opts *o);

/* Detects the kind of a source: "-" is stdin, a directory is a folder, then by content:
 * RecordIO magic, IDX magic (after gunzip), CIFAR by size (a multiple of 3073 or 3074
 * bytes, and a name ending in ".bin"), else a text list. A pipe or other non-regular file
 * is a list without being read; an empty file is an error. */
int bt_source_detect(const char *source, int *kind);

/* The bytes of an item. For FILE and REC items: the encoded image (*data malloc'd, *size
 * its length). For PIXELS items: *data points into the source buffer (not to be freed;
 * *owned = 0). Errors name the path (and record offset). */
int bt_item_load(const struct bt_itemset *s, const struct bt_item *it, uint8_t **data,
		 size_t *size, int *owned);

/* Like bt_item_load, for callers that reuse one buffer across items: FILE and REC items
 * are read into *buf (grown as needed, capacity *cap); PIXELS items point into the source.
 * *data and *size give the bytes; *data stays valid until *buf is next used. */
int bt_item_read(const struct bt_itemset *s, const struct bt_item *it, uint8_t **buf, size_t *cap,
		 const uint8_t **data, size_t *size);

#ifdef BT_SOURCE_INTERNAL
/* Shared by lib/source*.c only; not part of the library's interface. */
void *bt_source_alloc(struct bt_itemset *s, size_t n);       /* arena, 8-byte aligned */
char *bt_source_strdup(struct bt_itemset *s, const char *str);
struct bt_item *bt_itemset_push(struct bt_itemset *s);      /* zeroed, label -1, id s->n */
/* Takes ownership of names (malloc'd array of malloc'd strings) as the set's classes. */
void bt_source_set_classes(struct bt_itemset *s, char **names, uint32_t n);
int bt_source_add_rec(struct bt_itemset *s, int src, const struct bt_source_opts *o);
int bt_source_load_rec(const struct bt_itemset *s, const struct bt_item *it, uint8_t **data,
		       size_t *size);
int bt_source_add_idx(struct bt_itemset *s, int src, const struct bt_source_opts *o);
int bt_source_add_cifar(struct bt_itemset *s, int src, const struct bt_source_opts *o);
#endif

#endif
