/* checkpoint.h: the bt checkpoint file (.btc), writer and reader.
 *
 * A checkpoint is self-describing: the model spec (so bt-eval and bt-export need no model
 * flags), the class names, the training state, the full recipe and the metrics so far, all
 * as text sections of "key=value" lines, and a directory of named tensors (dtype, shape,
 * CRC-32) whose data follow, each 64-byte aligned. The layout is documented byte by byte in
 * man/man5/bt-checkpoint.5. All integers are little-endian.
 *
 *   file header (32 bytes)
 *     0  8  magic        89 42 54 43 0D 0A 1A 0A   ("\x89BTC\r\n\x1a\n")
 *     8  4  version      u32 = 1
 *    12  4  header size  u32 = 32
 *    16  8  file size    u64, the whole file's length (a truncated file is detected)
 *    24  4  sections     u32, number of sections that follow
 *    28  4  crc          CRC-32 over bytes 0..27
 *   sections, each starting 64-byte aligned (zero padding before it):
 *     0  4  tag          "SPEC" "CLAS" "STAT" "RCPE" "METR" "TDIR" "TDAT"
 *     4  4  crc          CRC-32 over the payload
 *     8  8  length       u64, payload bytes
 *    16     payload
 *   SPEC, STAT, RCPE: UTF-8 text, one "key=value\n" line per entry, keys unique;
 *   CLAS: u32 count, then count times (u32 length, UTF-8 bytes);
 *   METR: UTF-8 text, JSON Lines (the run's metrics.jsonl so far);
 *   TDIR: u32 count, then per tensor: u16 name length, name bytes, u8 dtype
 *         (0 f32, 1 f16, 2 bf16), u8 ndim (1..4), u64 shape[ndim], u64 offset (from the
 *         start of the TDAT payload, a multiple of 64), u64 bytes, u32 CRC-32 of the bytes;
 *   TDAT: the tensor bytes.
 * A reader skips sections with unknown tags (a later minor version may add some).
 *
 * Tensor names: model parameters and batch-norm running statistics under their graph names
 * ("layer1.0.conv1.weight", graph.h); optimizer state under "momentum/" + the parameter's
 * name.
 */
#ifndef BT_CHECKPOINT_H
#define BT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define BT_CKPT_VERSION 1
#define BT_CKPT_HEADER 32
#define BT_CKPT_ALIGN 64

enum bt_dtype { BT_DTYPE_F32 = 0, BT_DTYPE_F16 = 1, BT_DTYPE_BF16 = 2 };
/* "float32", "float16", "bfloat16"; "unknown" otherwise. Bytes per element: 4, 2, 2. */
const char *bt_dtype_name(int dtype);
size_t bt_dtype_size(int dtype);

/* The text sections. */
enum bt_ckpt_section { BT_CKPT_SPEC = 0, BT_CKPT_STATE, BT_CKPT_RECIPE, BT_CKPT_NSECTIONS };

struct bt_ckpt_kv {
	char *key;
	char *value;
};

struct bt_ckpt_tensor {
	char *name;
	int dtype;              /* enum bt_dtype */
	int ndim;               /* 1..4 */
	uint64_t shape[4];
	uint64_t bytes;         /* product of the shape times the dtype's size */
	uint32_t crc;           /* reader: as stored (checked); writer: computed at write */
	const void *data;       /* reader: into the loaded file; writer: the caller's memory */
};

struct bt_ckpt {
	struct bt_ckpt_kv *kv[BT_CKPT_NSECTIONS];
	size_t nkv[BT_CKPT_NSECTIONS];
	char **classes;
	uint32_t nclasses;
	char *metrics;          /* JSON Lines text, or NULL */
	struct bt_ckpt_tensor *tensors;
	size_t ntensors;
	void *file;             /* reader: the whole file in memory */
	size_t file_size;
};

void bt_ckpt_init(struct bt_ckpt *c);
void bt_ckpt_free(struct bt_ckpt *c);

/* Sets key (letters, digits, '_', '.', '-'; no '=') to a printf-formatted value (no
 * newline) in a text section, replacing an earlier value. BT_ERR_INVALID for a bad key or
 * value. */
int bt_ckpt_set(struct bt_ckpt *c, int section, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The value of key, or NULL. */
const char *bt_ckpt_get(const struct bt_ckpt *c, int section, const char *key);
/* Parsed values: BT_ERR_FORMAT (detail: "checkpoint: SECTION key 'k' is missing" or "...
 * is not a number") when absent or malformed. */
int bt_ckpt_get_i64(const struct bt_ckpt *c, int section, const char *key, int64_t *v);
int bt_ckpt_get_u64(const struct bt_ckpt *c, int section, const char *key, uint64_t *v);
int bt_ckpt_get_double(const struct bt_ckpt *c, int section, const char *key, double *v);
/* "spec", "state", "recipe". */
const char *bt_ckpt_section_name(int section);

/* Copies the class names. */
int bt_ckpt_set_classes(struct bt_ckpt *c, uint32_t n, const char *const *names);
/* Copies the metrics text (JSON Lines). */
int bt_ckpt_set_metrics(struct bt_ckpt *c, const char *text);

/* Adds a tensor; its data is not copied and must stay valid until bt_ckpt_write. Names are
 * unique (BT_ERR_INVALID otherwise), at most 65535 bytes. */
int bt_ckpt_add_tensor(struct bt_ckpt *c, const char *name, int dtype, int ndim,
		       const uint64_t *shape, const void *data);
/* The tensor of that name, or NULL. */
const struct bt_ckpt_tensor *bt_ckpt_find(const struct bt_ckpt *c, const char *name);

/* Writes the checkpoint to path safely: a temporary file in the same directory, written,
 * fsynced, renamed over path, and the directory fsynced. A crash at any point leaves
 * either the old file or the new one, never a damaged one. */
int bt_ckpt_write(const struct bt_ckpt *c, const char *path);

/* Reads and checks a checkpoint completely (header, every section's and every tensor's
 * CRC, sizes, shapes against dtypes, unique names). A foreign, truncated or damaged file
 * is BT_ERR_FORMAT, BT_ERR_TRUNCATED or BT_ERR_CRC with a one-line detail naming the file
 * and what is wrong ("run/last.btc: tensor 'fc.weight' fails its CRC check"). c must be
 * freshly initialised; on failure it is left empty. */
int bt_ckpt_read(struct bt_ckpt *c, const char *path);

/* ---- models in checkpoints (lib/ckpt_model.c) --------------------------------------- */
struct bt_graph;
struct bt_model_opts;
struct bt_aug_params;

/* Writes the SPEC section: model, classes, in_channels, input_size, aux from mo; mean, std,
 * crop_ratio, resize from the evaluation transform; dtype=float32; bt_version. */
int bt_ckpt_put_spec(struct bt_ckpt *c, const char *model, const struct bt_model_opts *mo,
		     const struct bt_aug_params *eval);
/* Reads the SPEC section back: the model name (into model, cap bytes), its options, and
 * the evaluation transform (bt_aug_defaults(eval, 0), then the spec's input size, crop
 * ratio, resize, mean and std; format left BT_AUG_F32). BT_ERR_FORMAT names the missing
 * or bad key. */
int bt_ckpt_get_spec(const struct bt_ckpt *c, char *model, size_t cap, struct bt_model_opts *mo,
		     struct bt_aug_params *eval);
/* Adds every parameter of g (graph.h: weights, biases, gamma, beta, running statistics)
 * from the arena params as a float32 tensor under its name and shape, and, when momentum
 * is not NULL, every trainable parameter's momentum under "momentum/" + name. The arenas
 * must stay valid until bt_ckpt_write. */
int bt_ckpt_put_params(struct bt_ckpt *c, const struct bt_graph *g, const float *params,
		       const float *momentum);
/* Copies the tensors into the arenas of g's layout (momentum may be NULL: not read). Every
 * parameter must be present with its exact shape and dtype float32: a missing or
 * mismatched one is BT_ERR_FORMAT naming it ("checkpoint has no tensor 'fc.weight'",
 * "tensor 'fc.weight' has shape 10x64, the model wants 1000x64"). */
int bt_ckpt_get_params(const struct bt_ckpt *c, const struct bt_graph *g, float *params,
		       float *momentum);

#endif
