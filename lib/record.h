/* record.h: the bt record file (.btr), writer and reader.
 *
 * The layout is documented byte by byte in man/man5/bt-record.5 and pinned by the golden
 * file tests/golden/v1.btr. All integers are little-endian.
 *
 *   file header (32 bytes)
 *     0  8  magic        89 42 54 52 0D 0A 1A 0A   ("\x89BTR\r\n\x1a\n")
 *     8  4  version      u32 = 1
 *    12  4  header size  u32 = 32 (a reader skips any extra bytes of a later version)
 *    16  8  flags        u64 = 0
 *    24  8  reserved     u64 = 0
 *   records, each:
 *     0  4  marker       "BTRR"
 *     4  1  kind         enum bt_payload
 *     5  1  ndim         number of used shape entries (0..4)
 *     6  2  nsoft        u16, count of float32 soft labels that follow the header
 *     8  8  size         u64, payload bytes
 *    16  8  id           u64
 *    24  4  label        i32, -1 when unlabelled
 *    28 16  shape        u32[4]; images: height, width, channels, 0
 *    44  4  reserved     u32 = 0
 *    48     soft labels  f32[nsoft]
 *     ..    payload      size bytes
 *     ..  4 crc          CRC-32 over everything from the marker to the end of the payload
 *   footer (optional: a truncated or unfinished file has none)
 *     0  4  marker       "BTRX"
 *     4  4  reserved     u32 = 0
 *     8  8  count        u64
 *    16     offsets      u64[count], file offset of each record's marker
 *     ..  4 nclasses     u32
 *     ..    names        nclasses times: u32 length, then that many UTF-8 bytes
 *     ..  4 crc          CRC-32 over the footer from its marker to here
 *   trailer (24 bytes, the last bytes of a file with a footer)
 *     0  8  footer offset u64
 *     8  8  count        u64 (same as the footer's)
 *    16  4  crc          CRC-32 over the trailer's first 16 bytes
 *    20  4  end marker   "BTRE"
 *
 * A reader of a pipe reads front to back; a reader of a seekable file finds the footer
 * through the trailer and can then read any record by index. Record i of a file belongs
 * to shard (i mod world) when a file is split among ranks.
 */
#ifndef BT_RECORD_H
#define BT_RECORD_H

#include <stdint.h>
#include <stdio.h>

#define BT_RECORD_VERSION 1
#define BT_RECORD_FILE_HEADER 32
#define BT_RECORD_HEADER 48
#define BT_RECORD_TRAILER 24
#define BT_MAX_DIMS 4
#define BT_MAX_SOFT 65535

enum bt_payload {
	BT_PAYLOAD_JPEG = 1, /* JPEG bytes; shape (H, W, C) */
	BT_PAYLOAD_PNG = 2,  /* PNG bytes; shape (H, W, C) */
	BT_PAYLOAD_RAW = 3,  /* uint8 pixels, (H, W, C) row-major */
	BT_PAYLOAD_F32 = 4,  /* float32 tensor, shape[0..ndim) */
	BT_PAYLOAD_F16 = 5,  /* IEEE float16 tensor, shape[0..ndim) */
};
#define BT_PAYLOAD_MAX 5

/* "jpeg", "png", "raw", "f32", "f16"; "unknown" otherwise. */
const char *bt_payload_name(int kind);

struct bt_record {
	int kind;                      /* enum bt_payload */
	int ndim;
	uint32_t shape[BT_MAX_DIMS];   /* images: height, width, channels */
	int32_t label;                 /* -1: none */
	uint64_t id;
	uint32_t nsoft;
	const float *soft;             /* nsoft values, or NULL */
	uint64_t size;
	const uint8_t *data;           /* size bytes */
};

/* Check a record's fields against the format's rules (kind known, ndim <= 4, payload size
 * consistent with the shape for raw and tensor kinds). */
int bt_record_check(const struct bt_record *rec);

/* ---- writer ---- */
typedef struct bt_record_writer bt_record_writer;

/* path "-" writes to standard output. Any other path is written as a temporary file
 * beside it (PATH.tmp.XXXXXX) that bt_record_writer_commit fsyncs and renames; on abort
 * it is removed, so a failed run never leaves a partial file under the final name. */
int bt_record_writer_open(bt_record_writer **w, const char *path);
int bt_record_writer_put(bt_record_writer *w, const struct bt_record *rec);
/* The record's CRC as the writer computes it; lets worker threads checksum payloads in
 * parallel and hand the result to bt_record_writer_put_crc, which trusts it. */
uint32_t bt_record_crc(const struct bt_record *rec);
int bt_record_writer_put_crc(bt_record_writer *w, const struct bt_record *rec, uint32_t crc);
/* By default commit fsyncs before renaming, so that the file is on disk once it has its
 * name. sync = 0 only renames (the rename is still atomic; after a power loss the file may
 * be short, which readers detect); for outputs that can be made again from their inputs. */
void bt_record_writer_set_sync(bt_record_writer *w, int sync);
/* Class names for the footer; copied. May be called any time before commit. */
int bt_record_writer_set_classes(bt_record_writer *w, uint32_t n, const char *const *names);
uint64_t bt_record_writer_count(const bt_record_writer *w);
uint64_t bt_record_writer_bytes(const bt_record_writer *w);
/* The size the file will have once committed: what is written plus footer and trailer. */
uint64_t bt_record_writer_final_bytes(const bt_record_writer *w);
/* Writes footer and trailer, flushes, fsyncs, renames; frees w in every case. */
int bt_record_writer_commit(bt_record_writer *w);
/* Discards everything written; frees w. */
void bt_record_writer_abort(bt_record_writer *w);

/* ---- reader ---- */
typedef struct bt_record_reader bt_record_reader;

/* path "-" reads standard input front to back. A seekable file's footer is loaded at open
 * when it is present and intact. */
int bt_record_reader_open(bt_record_reader **r, const char *path);
int bt_record_reader_open_fp(bt_record_reader **r, FILE *fp, const char *name);
void bt_record_reader_close(bt_record_reader *r);

/* Next record in file order: 1 and *rec filled (its pointers stay valid until the next
 * call), 0 at the end of the records, negative on error. Every record's CRC is checked.
 * Errors name the file, the record index and its offset. */
int bt_record_reader_next(bt_record_reader *r, struct bt_record *rec);

/* Random access (needs the footer): positions the reader so that the next call of
 * bt_record_reader_next returns record index. */
int bt_record_reader_seek(bt_record_reader *r, uint64_t index);

/* 1 when a valid footer has been read (at open for files, at the end for streams). */
int bt_record_reader_has_footer(const bt_record_reader *r);
/* Why there is no footer ("absent", or what is wrong with it); NULL when there is one. */
const char *bt_record_reader_footer_problem(const bt_record_reader *r);
/* Record count from the footer, or the number read so far when there is none. */
uint64_t bt_record_reader_count(const bt_record_reader *r);
/* Index of the record the next call returns, and its byte offset. */
uint64_t bt_record_reader_index(const bt_record_reader *r);
uint64_t bt_record_reader_offset(const bt_record_reader *r);
uint32_t bt_record_reader_nclasses(const bt_record_reader *r);
const char *bt_record_reader_class(const bt_record_reader *r, uint32_t i);
const char *bt_record_reader_name(const bt_record_reader *r);

/* ---- whole-file operations ---- */
struct bt_verify_report {
	uint64_t records;        /* records whose CRC matched, in order, before any problem */
	uint64_t bytes;          /* file size */
	int has_footer;
	uint64_t bad_index;      /* valid when the result is an error */
	uint64_t bad_offset;
};
/* Reads every record and checks CRCs, the footer's offsets and count. Returns BT_OK or
 * the first problem (detail names the record index and offset). */
int bt_record_verify(const char *path, struct bt_verify_report *rep);

/* Rebuilds the footer of a file whose footer is missing or damaged: keeps every intact
 * record from the start, drops a partial record at the end, and writes a new footer in
 * place. names (nclasses of them) replace the class names when given; otherwise an intact
 * old footer's names are kept. *kept and *dropped_bytes report what happened. */
int bt_record_reindex(const char *path, uint32_t nclasses, const char *const *names,
		      uint64_t *kept, uint64_t *dropped_bytes);

#endif
