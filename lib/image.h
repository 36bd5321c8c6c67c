/* image.h: JPEG and PNG probing, decoding, encoding and resizing (libjpeg-turbo, libpng).
 *
 * Pixels are uint8, interleaved, row-major (H, W, C). Decoding always yields RGB (C = 3):
 * greyscale, CMYK/YCCK JPEGs and palette, grey, 16-bit and alpha PNGs are converted (alpha
 * is dropped). Nothing here prints; failures return a status with a one-line detail.
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

/* Output size that makes the shorter side equal n, keeping the aspect ratio (the longer
 * side is rounded to nearest, at least 1). */
void bt_image_size_shorter(uint32_t w, uint32_t h, uint32_t n, uint32_t *ow, uint32_t *oh);

/* Encoders: *out is malloc'd. JPEG takes 1 or 3 channels, quality 1..100, 4:2:0 chroma
 * subsampling. PNG takes 1, 3 or 4 channels. */
int bt_image_encode_jpeg(const struct bt_image *im, int quality, uint8_t **out, size_t *n);
int bt_image_encode_png(const struct bt_image *im, uint8_t **out, size_t *n);

void bt_image_free(struct bt_image *im);

#endif
