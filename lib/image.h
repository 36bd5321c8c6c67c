/* image.h: JPEG and PNG probing, decoding, encoding and resizing (libjpeg-turbo, libpng).
 *
 * Pixels are uint8, interleaved, row-major (H, W, C). Decoding always yields RGB (C = 3):
 * greyscale, CMYK/YCCK JPEGs and palette, grey, 16-bit and alpha PNGs are converted (alpha
 * is dropped). Nothing here prints; failures return a status with a one-line detail. The
 * end of the file has the lower-level pieces that lib/augment.c fuses: the resampler's two
 * passes and a JPEG decoder for regions.
 */
#ifndef BT_IMAGE_H
#define BT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

enum bt_image_format { BT_IMAGE_UNKNOWN = 0, BT_IMAGE_JPEG = 1, BT_IMAGE_PNG = 2 };

struct bt_image_info {
	int format;          /* enum bt_image_format */
	uint32_t width, height;
	int channels;        /* as stored: 1 grey, 3 colour (CMYK JPEGs count as 3), 4 with alpha */
	int cmyk;            /* 1 for CMYK/YCCK JPEGs */
};

struct bt_image {
	uint32_t width, height;
	int channels;        /* 1, 3 or 4 */
	uint8_t *pixels;     /* height * width * channels bytes, malloc'd */
};

/* Format from the first bytes (magic numbers, not file names). */
int bt_image_sniff(const uint8_t *p, size_t n);

/* Reads the header only (no pixel decoding): format, size and channels. Also rejects what
 * is cheap to detect without decoding: a file that is not JPEG or PNG, a header that does
 * not parse, a JPEG with no end-of-image marker or a PNG with no IEND chunk (truncated), and
 * width*height above max_pixels (BT_ERR_TOOBIG; 0 means no limit). */
int bt_image_probe(const uint8_t *p, size_t n, uint64_t max_pixels, struct bt_image_info *info);

/* Decodes to RGB. When min_side > 0, a JPEG may be decoded with DCT-domain scaling (1/2,
 * 1/4, 1/8) as long as the scaled shorter side stays >= min_side; 0 decodes at full size.
 * max_pixels as in bt_image_probe. A corrupt or truncated image is BT_ERR_IMAGE. */
int bt_image_decode(const uint8_t *p, size_t n, uint64_t max_pixels, uint32_t min_side,
		    struct bt_image *out);

/* Resizes with a triangle (bilinear) filter whose support widens with the shrink factor,
 * so shrinking antialiases (the same rule as PIL's BILINEAR). Any channel count. */
int bt_image_resize(const struct bt_image *src, uint32_t width, uint32_t height,
		    struct bt_image *dst);

/* Resamples the box (x, y)-(x + w, y + h) of src, in pixels (fractions allowed, inside the
 * image), to width x height with the same filter, as PIL's
 * Image.resize((width, height), BILINEAR, box=(x, y, x + w, y + h)) does: the filter may read
 * pixels outside the box, up to the image's edges. So resizing a whole image and then cutting
 * out a part equals one resize of the matching box. bt_image_resize is the whole-image box. */
int bt_image_resize_box(const struct bt_image *src, double x, double y, double w, double h,
			uint32_t width, uint32_t height, struct bt_image *dst);

/* Output size that makes the shorter side equal n, keeping the aspect ratio (the longer
 * side is rounded to nearest, at least 1). */
void bt_image_size_shorter(uint32_t w, uint32_t h, uint32_t n, uint32_t *ow, uint32_t *oh);

/* Encoders: *out is malloc'd. JPEG takes 1 or 3 channels, quality 1..100, 4:2:0 chroma
 * subsampling. PNG takes 1, 3 or 4 channels. */
int bt_image_encode_jpeg(const struct bt_image *im, int quality, uint8_t **out, size_t *n);
int bt_image_encode_png(const struct bt_image *im, uint8_t **out, size_t *n);

void bt_image_free(struct bt_image *im);

/* ---- pieces for fused pipelines (lib/augment.c) ----
 *
 * The resampler in two passes, horizontal then vertical as PIL does (the rounding between
 * them depends on the order), so that a caller can crop, flip and convert on the way
 * without copies. Weights are fixed point with BT_RESAMPLE_BITS fraction bits. */

#define BT_RESAMPLE_BITS 22

/* Weights along one axis: output sample i is centred at in0 + (i + 0.5) * (in1 - in0) / out
 * in input coordinates, the triangle filter is widened by the shrink factor, and taps falling
 * outside the input indices [lo, hi) are dropped (the rest renormalised). The arithmetic is
 * done relative to lo, as if [lo, hi) were an image of its own: lo = 0, hi = the image size
 * is PIL's box resize; lo, hi = a crop's edges is cropping, then resizing the crop (what
 * torchvision's RandomResizedCrop does), bit for bit. Every output gets the same
 * number of weights, zero-padded, so that kernels run loops of one length (a trip count
 * that changes from pixel to pixel costs a mispredicted branch each time); the windows stay
 * inside [first, last). Zero-initialise before the first bt_taps_init; later calls reuse the
 * buffers, and one with the same arguments as the last returns at once. */
struct bt_taps {
	uint32_t out;
	int n;                  /* weights per output */
	int32_t *start;         /* (out,) first input index */
	int32_t *coef;          /* (out, n) fixed-point weights */
	int32_t first, last;    /* every output reads inside input indices [first, last) */
	/* private */
	double in0, in1;
	int32_t lo, hi;
	int32_t *count;
	int32_t *pairs;         /* (out, (n + 1) / 2, 8): coef as the AVX2 kernel reads it */
	size_t cap_out, cap_coef, cap_tmp, cap_pairs;
	double *tmp;
};
int bt_taps_init(struct bt_taps *t, double in0, double in1, int32_t lo, int32_t hi,
		 uint32_t out);
void bt_taps_free(struct bt_taps *t);

/* The resampling kernels (and lib/augment.c's conversions) have AVX2 versions, used when
 * the CPU has AVX2; they give the same bytes as the portable C ones. bt_simd(0) turns them
 * off, bt_simd(1) back on where the CPU has them, bt_simd(-1) only asks; each returns the
 * previous state. For tests and benchmarks that compare the two. */
int bt_simd(int on);

/* Horizontal pass over rows of src (C = channels, 1..4; rows stride bytes apart; src's first
 * column is input index x0), into rows of t->out pixels of dst, packed. flip writes each row
 * right to left. Reads stay inside [src, src + (rows - 1) * stride + (t->last - x0) * C). */
void bt_resample_h(const uint8_t *src, size_t stride, int32_t x0, uint32_t rows, int channels,
		   const struct bt_taps *t, int flip, uint8_t *dst);

/* Vertical pass for output row y: acc (rowlen,) receives the fixed-point sums over the rows
 * of src (rows rowlen bytes apart; src's first row is input index y0), rounding term
 * included: the pixel is acc >> BT_RESAMPLE_BITS, clamped to 0..255. */
void bt_resample_v_row(const uint8_t *src, size_t rowlen, int32_t y0, const struct bt_taps *t,
		       uint32_t y, int32_t *acc);

/* A JPEG decoder kept between images (libjpeg's allocations are set up once) that decodes
 * only a region: the columns through jpeg_crop_scanline, which skips the inverse DCT of
 * the others; the rows above through jpeg_skip_scanlines, which only entropy-decodes them;
 * and none below, since it stops after the last wanted row. So corrupt data below the
 * region goes unnoticed. The region is widened by a few pixels where it does not touch the
 * image's edges, because libjpeg's smooth chroma upsampling treats the edges of a partial
 * row as image edges; the wanted pixels are then exactly those of a full decode. */
typedef struct bt_jpeg_decoder bt_jpeg_decoder;
int bt_jpeg_decoder_new(bt_jpeg_decoder **d);
void bt_jpeg_decoder_free(bt_jpeg_decoder *d);

struct bt_jpeg_region {
	uint32_t width, height;   /* in: the size the JPEG must have (else BT_ERR_FORMAT) */
	int denom;                /* in: DCT-domain scaling 1/denom: 1, 2, 4 or 8 */
	uint32_t x0, y0, x1, y1;  /* in: wanted columns [x0, x1) and rows [y0, y1) of the scaled
				   * image, which is bt_jpeg_scaled(width, denom) wide */
	uint32_t ox, oy, ow, oh;  /* out: the block decoded (scaled pixels), which contains
				   * the wanted one */
};

/* libjpeg's size of a side n scaled by 1/denom: rounded up. */
static inline uint32_t bt_jpeg_scaled(uint32_t n, int denom)
{
	return (uint32_t)(((uint64_t)n + (uint64_t)denom - 1) / (uint64_t)denom);
}

/* Decodes r's region to RGB (H,W,3) rows, packed, into *buf, which grows (realloc) to fit
 * and is the caller's to free. Colour conversions as bt_image_decode. */
int bt_jpeg_decode_region(bt_jpeg_decoder *d, const uint8_t *p, size_t n,
			  struct bt_jpeg_region *r, uint8_t **buf, size_t *cap);

#endif
