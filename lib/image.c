/* image.c: JPEG and PNG probing, decoding and encoding over libjpeg-turbo and libpng, and
 * the antialiasing bilinear resampler that prepares training images.
 *
 * Both codecs report errors by longjmp. Every codec call therefore runs inside a small
 * "guarded" function that owns the setjmp and touches nothing but a context struct passed
 * in by pointer; the public function around it owns the context, so after a longjmp it can
 * release whatever the context holds without relying on non-volatile locals of the
 * function that called setjmp. Neither library is ever allowed to print: libjpeg's message
 * hooks and libpng's error and warning callbacks store the text for bt_errmsg() instead.
 *
 * Decisions worth knowing:
 * - Probing is header-only (jpeg_read_header; our own IHDR parser) plus a look at the last
 *   bytes for the JPEG EOI marker or the PNG IEND chunk, so a packer can vet files at
 *   tar speed. Up to TRAIL_SLACK bytes of padding after EOI/IEND are accepted.
 * - libjpeg only warns about corrupt entropy data ("Premature end of JPEG file", "bad
 *   Huffman code") and decodes grey blocks in their place; we refuse such images, since a
 *   silently half-grey picture is worse than a skipped one. Warnings about metadata or
 *   ignorable bytes between markers are tolerated.
 * - PNG alpha is dropped without compositing (the colour under a transparent pixel is
 *   kept as stored); 16-bit samples keep their high byte; tRNS is ignored.
 * - PNG probe channels: 1 for grey and grey+alpha, 3 for RGB and palette, 4 for RGBA
 *   (struct bt_image_info has no 2, and grey+alpha decodes to a grey picture).
 * - Statuses: not JPEG or PNG is BT_ERR_FORMAT, over --max-pixels BT_ERR_TOOBIG. The probe
 *   says BT_ERR_TRUNCATED or BT_ERR_CRC where it can tell, BT_ERR_IMAGE otherwise; decoding
 *   folds every corrupt or truncated case into BT_ERR_IMAGE, as image.h promises.
 * - The resampler reproduces PIL's ImagingResample with the BILINEAR filter, fixed-point
 *   coefficients and all, so images match what a PIL/torchvision pipeline would produce
 *   (for 4 channels, PIL's per-band result: PIL premultiplies RGBA alpha, we do not).
 *   dst may be src; the old pixels are then freed. Its hot loops have AVX2 versions,
 *   chosen at run time, with the same integer arithmetic and so the same bytes.
 * - Region decoding (for lib/augment.c) keeps libjpeg's defaults (JDCT_ISLOW, smooth
 *   upsampling), so its pixels are those of PIL's decode; IFAST or merged upsampling would
 *   save only 5-10% of the decode. It stops early with jpeg_abort_decompress, so it cannot
 *   vouch for data after the region.
 */
#include "image.h"
#include "bt.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BT_X86 1
#include <immintrin.h>
#else
#define BT_X86 0
#endif

/* Bytes of junk tolerated after a JPEG EOI marker or a PNG IEND chunk: some writers pad. */
#define TRAIL_SLACK 64

static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
static const uint8_t png_iend[12] = { 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82 };

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int bt_image_sniff(const uint8_t *p, size_t n)
{
	if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return BT_IMAGE_JPEG;
	if (n >= 8 && memcmp(p, png_sig, 8) == 0)
		return BT_IMAGE_PNG;
	return BT_IMAGE_UNKNOWN;
}

static int check_pixels(uint32_t w, uint32_t h, uint64_t max_pixels)
{
	if (max_pixels && (uint64_t)w * h > max_pixels)
		return bt_error(BT_ERR_TOOBIG,
				"image is %ux%u pixels, over the limit of %llu (--max-pixels)",
				(unsigned)w, (unsigned)h, (unsigned long long)max_pixels);
	return BT_OK;
}

/* ---- libjpeg plumbing ---- */

struct jpeg_err {
	struct jpeg_error_mgr pub;
	jmp_buf jmp;
	char msg[JMSG_LENGTH_MAX];
};

static void jpeg_err_exit(j_common_ptr c)
{
	struct jpeg_err *e = (struct jpeg_err *)c->err;
	(*c->err->format_message)(c, e->msg);
	longjmp(e->jmp, 1);
}

static void jpeg_err_output(j_common_ptr c)
{
	struct jpeg_err *e = (struct jpeg_err *)c->err;
	(*c->err->format_message)(c, e->msg);
}

/* Warnings that mean pixels were lost or invented. The others (unknown JFIF revision,
 * Adobe transform code, bad ICC marker, junk between markers, odd scan parameters) leave
 * the picture intact and are common in real photo collections. */
static int jpeg_warning_is_fatal(int code)
{
	switch (code) {
	case JWRN_JPEG_EOF:
	case JWRN_HIT_MARKER:
	case JWRN_HUFF_BAD_CODE:
	case JWRN_MUST_RESYNC:
#if defined(C_ARITH_CODING_SUPPORTED) || defined(D_ARITH_CODING_SUPPORTED)
	case JWRN_ARITH_BAD_CODE:
#endif
		return 1;
	}
	return 0;
}

static void jpeg_err_emit(j_common_ptr c, int level)
{
	if (level >= 0)
		return; /* trace messages */
	c->err->num_warnings++;
	if (jpeg_warning_is_fatal(c->err->msg_code))
		jpeg_err_exit(c);
}

static void jpeg_err_init(struct jpeg_err *e)
{
	jpeg_std_error(&e->pub);
	e->pub.error_exit = jpeg_err_exit;
	e->pub.output_message = jpeg_err_output;
	e->pub.emit_message = jpeg_err_emit;
	e->msg[0] = 0;
}

static int jpeg_fail(const struct jpeg_err *e, const char *stage)
{
	if (e->pub.msg_code == JERR_OUT_OF_MEMORY)
		return bt_error(BT_ERR_NOMEM, "%s: %s", stage, e->msg);
	return bt_error(BT_ERR_IMAGE, "%s: %s", stage, e->msg);
}

/* Looks for FF D9 ending within TRAIL_SLACK bytes of the end. Entropy-coded data stuffs
 * every FF with 00, so FF D9 there can only be a marker. */
static int jpeg_has_eoi(const uint8_t *p, size_t n)
{
	size_t i, lo = n > TRAIL_SLACK + 4 ? n - TRAIL_SLACK - 2 : 2;
	for (i = n - 2; i >= lo; i--)
		if (p[i] == 0xff && p[i + 1] == 0xd9)
			return 1;
	return 0;
}

struct jpeg_hdr_ctx {
	struct jpeg_decompress_struct cinfo;
	struct jpeg_err err;
};

static int jpeg_probe_guarded(struct jpeg_hdr_ctx *c, const uint8_t *p, size_t n)
{
	if (setjmp(c->err.jmp))
		return -1;
	jpeg_create_decompress(&c->cinfo);
	jpeg_mem_src(&c->cinfo, p, (unsigned long)n);
	jpeg_read_header(&c->cinfo, TRUE);
	return 0;
}

static int jpeg_probe(const uint8_t *p, size_t n, uint64_t max_pixels,
		      struct bt_image_info *info)
{
	struct jpeg_hdr_ctx c;
	int rc;

	/* Truncation first: a cut file is far more common than a bad header, and cutting
	 * inside the header would otherwise read as "Premature end of JPEG file". */
	if (!jpeg_has_eoi(p, n))
		return bt_error(BT_ERR_TRUNCATED, "truncated JPEG (no end-of-image marker)");
	memset(&c, 0, sizeof c);
	jpeg_err_init(&c.err);
	c.cinfo.err = &c.err.pub;
	if (jpeg_probe_guarded(&c, p, n) != 0) {
		rc = jpeg_fail(&c.err, "JPEG header");
		goto out;
	}
	info->format = BT_IMAGE_JPEG;
	info->width = c.cinfo.image_width;
	info->height = c.cinfo.image_height;
	info->channels = c.cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
	info->cmyk = c.cinfo.jpeg_color_space == JCS_CMYK ||
		     c.cinfo.jpeg_color_space == JCS_YCCK;
	rc = check_pixels(info->width, info->height, max_pixels);
out:
	jpeg_destroy_decompress(&c.cinfo);
	return rc;
}

/* ---- PNG header ---- */

static int png_probe(const uint8_t *p, size_t n, uint64_t max_pixels,
		     struct bt_image_info *info)
{
	const uint8_t *ihdr = p + 8;
	uint32_t w, h;
	int depth, type, ok;
	size_t i, lo;

	/* Signature, then IHDR: length(4) "IHDR" data(13) crc(4). */
	if (n < 8 + 25 + sizeof png_iend)
		return bt_error(BT_ERR_TRUNCATED, "truncated PNG (%zu bytes)", n);
	/* IEND is the same 12 bytes in every PNG. */
	ok = 0;
	lo = n > 33 + sizeof png_iend + TRAIL_SLACK ? n - sizeof png_iend - TRAIL_SLACK : 33;
	for (i = n - sizeof png_iend; i >= lo; i--) {
		if (memcmp(p + i, png_iend, sizeof png_iend) == 0) {
			ok = 1;
			break;
		}
	}
	if (!ok)
		return bt_error(BT_ERR_TRUNCATED, "truncated PNG (no IEND chunk)");

	if (be32(ihdr) != 13 || memcmp(ihdr + 4, "IHDR", 4) != 0)
		return bt_error(BT_ERR_IMAGE, "PNG header: first chunk is not a valid IHDR");
	if (bt_crc32(0, ihdr + 4, 17) != be32(ihdr + 21))
		return bt_error(BT_ERR_CRC, "PNG header: IHDR checksum mismatch");
	w = be32(ihdr + 8);
	h = be32(ihdr + 12);
	depth = ihdr[16];
	type = ihdr[17];
	if (w == 0 || h == 0 || w > PNG_UINT_31_MAX || h > PNG_UINT_31_MAX)
		return bt_error(BT_ERR_IMAGE, "PNG header: bad size %ux%u", (unsigned)w,
				(unsigned)h);
	switch (type) {
	case 0: ok = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16; break;
	case 3: ok = depth == 1 || depth == 2 || depth == 4 || depth == 8; break;
	case 2: case 4: case 6: ok = depth == 8 || depth == 16; break;
	default: ok = 0;
	}
	if (!ok)
		return bt_error(BT_ERR_IMAGE, "PNG header: bad colour type %d with bit depth %d",
				type, depth);
	if (ihdr[18] != 0 || ihdr[19] != 0 || ihdr[20] > 1)
		return bt_error(BT_ERR_IMAGE,
				"PNG header: unknown compression, filter or interlace method");

	info->format = BT_IMAGE_PNG;
	info->width = w;
	info->height = h;
	info->channels = type == 6 ? 4 : (type == 0 || type == 4) ? 1 : 3;
	info->cmyk = 0;
	return check_pixels(w, h, max_pixels);
}

int bt_image_probe(const uint8_t *p, size_t n, uint64_t max_pixels, struct bt_image_info *info)
{
	memset(info, 0, sizeof *info);
	switch (bt_image_sniff(p, n)) {
	case BT_IMAGE_JPEG:
		return jpeg_probe(p, n, max_pixels, info);
	case BT_IMAGE_PNG:
		return png_probe(p, n, max_pixels, info);
	}
	return bt_error(BT_ERR_FORMAT, "not a JPEG or PNG image");
}

/* ---- JPEG decoding ---- */

struct jpeg_dec_ctx {
	struct jpeg_decompress_struct cinfo;
	struct jpeg_err err;
	const char *stage;
	uint8_t *pixels; /* (H,W,3), malloc'd */
	uint32_t width, height;
};

/* Divide by 255 with rounding, exact for a*b with a,b in 0..255. */
static inline uint8_t mul255(unsigned a, unsigned b)
{
	unsigned t = a * b + 128;
	return (uint8_t)((t + (t >> 8)) >> 8);
}

/* Photoshop writes CMYK JPEGs inverted (0 = full ink) and marks them with an Adobe APP14
 * segment; libjpeg's own CMYK output is plain. Like PIL and browsers, take the marker as the
 * sign of inversion. No colour management: R = (1-C)(1-K) and so on. */
static void cmyk_to_rgb(const uint8_t *src /* (W,4) */, uint8_t *dst /* (W,3) */, uint32_t w,
			int inverted)
{
	uint32_t x;
	for (x = 0; x < w; x++, src += 4, dst += 3) {
		unsigned c = src[0], m = src[1], y = src[2], k = src[3];
		if (!inverted) {
			c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k;
		}
		dst[0] = mul255(c, k);
		dst[1] = mul255(m, k);
		dst[2] = mul255(y, k);
	}
}

static int jpeg_decode_guarded(struct jpeg_dec_ctx *c, const uint8_t *p, size_t n,
			       uint32_t min_side)
{
	struct jpeg_decompress_struct *ci = &c->cinfo;
	JSAMPROW rows[16];
	JSAMPARRAY cmykrow = NULL;
	uint32_t shorter, stride;
	int cmyk, denom, i, k;

	if (setjmp(c->err.jmp))
		return 1;
	c->stage = "JPEG header";
	jpeg_create_decompress(ci);
	jpeg_mem_src(ci, p, (unsigned long)n);
	jpeg_read_header(ci, TRUE);
	c->stage = "JPEG";

	cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
	ci->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
	if (min_side > 0) {
		shorter = ci->image_width < ci->image_height ? ci->image_width : ci->image_height;
		/* libjpeg rounds scaled sizes up: ceil(dim / denom). */
		for (denom = 8; denom > 1; denom /= 2)
			if ((shorter + denom - 1) / denom >= min_side)
				break;
		ci->scale_num = 1;
		ci->scale_denom = denom;
	}
	jpeg_start_decompress(ci);
	if (ci->output_components != (cmyk ? 4 : 3)) {
		snprintf(c->err.msg, sizeof c->err.msg, "unexpected %d output components",
			 ci->output_components);
		c->err.pub.msg_code = 0;
		return 1;
	}
	c->width = ci->output_width;
	c->height = ci->output_height;
	stride = c->width * 3;
	c->pixels = malloc((size_t)stride * c->height);
	if (!c->pixels)
		return BT_ERR_NOMEM;
	if (cmyk)
		cmykrow = (*ci->mem->alloc_sarray)((j_common_ptr)ci, JPOOL_IMAGE,
						   c->width * 4, 1);

	while (ci->output_scanline < ci->output_height) {
		uint32_t y = ci->output_scanline;
		if (cmyk) {
			jpeg_read_scanlines(ci, cmykrow, 1);
			cmyk_to_rgb(cmykrow[0], c->pixels + (size_t)y * stride, c->width,
				    ci->saw_Adobe_marker);
			continue;
		}
		k = (int)(ci->output_height - y);
		if (k > 16)
			k = 16;
		for (i = 0; i < k; i++)
			rows[i] = c->pixels + (size_t)(y + i) * stride;
		jpeg_read_scanlines(ci, rows, (JDIMENSION)k);
	}
	/* Reads through EOI, so damage after the last scan line is caught too. */
	jpeg_finish_decompress(ci);
	return 0;
}

static int jpeg_decode(const uint8_t *p, size_t n, uint32_t min_side, struct bt_image *out)
{
	struct jpeg_dec_ctx c;
	int rc;

	memset(&c, 0, sizeof c);
	jpeg_err_init(&c.err);
	c.cinfo.err = &c.err.pub;
	rc = jpeg_decode_guarded(&c, p, n, min_side);
	if (rc == BT_ERR_NOMEM) {
		rc = bt_error(BT_ERR_NOMEM, "JPEG: no memory for %ux%u pixels",
			      (unsigned)c.width, (unsigned)c.height);
		goto out;
	}
	if (rc != 0) {
		rc = jpeg_fail(&c.err, c.stage);
		goto out;
	}
	out->width = c.width;
	out->height = c.height;
	out->channels = 3;
	out->pixels = c.pixels;
	c.pixels = NULL;
out:
	jpeg_destroy_decompress(&c.cinfo);
	free(c.pixels);
	return rc;
}

/* ---- JPEG region decoding ---- */

/* Pixels at the edge of a partial row that may differ from a full decode: smooth (fancy)
 * chroma upsampling reads one chroma sample beyond, which covers at most 2 pixels. */
#define JPEG_EDGE 2

struct bt_jpeg_decoder {
	struct jpeg_decompress_struct cinfo;
	struct jpeg_err err;
	const char *stage;
	int created;
};

static int jpeg_create_guarded(struct bt_jpeg_decoder *d)
{
	if (setjmp(d->err.jmp))
		return -1;
	jpeg_create_decompress(&d->cinfo);
	d->created = 1;
	return 0;
}

int bt_jpeg_decoder_new(bt_jpeg_decoder **out)
{
	struct bt_jpeg_decoder *d = calloc(1, sizeof *d);

	*out = NULL;
	if (!d)
		return bt_error(BT_ERR_NOMEM, "no memory for a JPEG decoder");
	jpeg_err_init(&d->err);
	d->cinfo.err = &d->err.pub;
	if (jpeg_create_guarded(d) != 0) {
		int rc = jpeg_fail(&d->err, "JPEG decoder");
		bt_jpeg_decoder_free(d);
		return rc;
	}
	*out = d;
	return BT_OK;
}

void bt_jpeg_decoder_free(bt_jpeg_decoder *d)
{
	if (!d)
		return;
	if (d->created)
		jpeg_destroy_decompress(&d->cinfo);
	free(d);
}

enum { REGION_OK, REGION_FAIL, REGION_SIZE, REGION_NOMEM };

static int jpeg_region_guarded(struct bt_jpeg_decoder *d, const uint8_t *p, size_t n,
			       struct bt_jpeg_region *r, uint8_t **buf, size_t *cap)
{
	struct jpeg_decompress_struct *ci = &d->cinfo;
	JSAMPROW rows[16];
	JSAMPARRAY cmykrow;
	JDIMENSION xoff, w, y0, y1, y;
	size_t stride, need;
	int cmyk, i, k;

	if (setjmp(d->err.jmp))
		return REGION_FAIL;
	d->stage = "JPEG header";
	jpeg_mem_src(ci, p, (unsigned long)n);
	jpeg_read_header(ci, TRUE);
	if (ci->image_width != r->width || ci->image_height != r->height)
		return REGION_SIZE;
	d->stage = "JPEG";

	cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
	ci->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
	ci->scale_num = 1;
	ci->scale_denom = (unsigned)r->denom;
	jpeg_start_decompress(ci);
	if (ci->output_components != (cmyk ? 4 : 3) ||
	    ci->output_width != bt_jpeg_scaled(r->width, r->denom) ||
	    ci->output_height != bt_jpeg_scaled(r->height, r->denom)) {
		snprintf(d->err.msg, sizeof d->err.msg,
			 "unexpected output: %u components, %ux%u", ci->output_components,
			 (unsigned)ci->output_width, (unsigned)ci->output_height);
		d->err.pub.msg_code = 0;
		return REGION_FAIL;
	}

	/* Columns: libjpeg moves the left edge down to an iMCU boundary and keeps the right. */
	xoff = r->x0 > JPEG_EDGE ? r->x0 - JPEG_EDGE : 0;
	w = (r->x1 + JPEG_EDGE < ci->output_width ? r->x1 + JPEG_EDGE : ci->output_width) - xoff;
	if (w < ci->output_width)
		jpeg_crop_scanline(ci, &xoff, &w);
	else
		xoff = 0;
	y0 = r->y0;
	y1 = r->y1;
	stride = (size_t)w * 3;
	need = stride * (y1 - y0);
	if (need > *cap) {
		uint8_t *b = realloc(*buf, need);
		if (!b)
			return REGION_NOMEM;
		*buf = b;
		*cap = need;
	}
	cmykrow = cmyk ? (*ci->mem->alloc_sarray)((j_common_ptr)ci, JPOOL_IMAGE, w * 4, 1)
		       : NULL;
	if (y0 > 0 && jpeg_skip_scanlines(ci, y0) != y0) {
		snprintf(d->err.msg, sizeof d->err.msg, "cannot skip to row %u", (unsigned)y0);
		d->err.pub.msg_code = 0;
		return REGION_FAIL;
	}
	while ((y = ci->output_scanline) < y1) {
		uint8_t *o = *buf + (size_t)(y - y0) * stride;
		if (cmyk) {
			jpeg_read_scanlines(ci, cmykrow, 1);
			cmyk_to_rgb(cmykrow[0], o, w, ci->saw_Adobe_marker);
			continue;
		}
		k = (int)(y1 - y);
		if (k > 16)
			k = 16;
		for (i = 0; i < k; i++)
			rows[i] = o + (size_t)i * stride;
		jpeg_read_scanlines(ci, rows, (JDIMENSION)k);
	}
	r->ox = xoff;
	r->ow = w;
	r->oy = y0;
	r->oh = y1 - y0;
	return REGION_OK;
}

int bt_jpeg_decode_region(bt_jpeg_decoder *d, const uint8_t *p, size_t n,
			  struct bt_jpeg_region *r, uint8_t **buf, size_t *cap)
{
	uint32_t sw, sh;
	int rc;

	if (r->denom != 1 && r->denom != 2 && r->denom != 4 && r->denom != 8)
		return bt_error(BT_ERR_INVALID, "JPEG region: scale 1/%d (want 1, 2, 4 or 8)",
				r->denom);
	sw = bt_jpeg_scaled(r->width, r->denom);
	sh = bt_jpeg_scaled(r->height, r->denom);
	if (r->x0 >= r->x1 || r->x1 > sw || r->y0 >= r->y1 || r->y1 > sh)
		return bt_error(BT_ERR_INVALID,
				"JPEG region: columns [%u, %u), rows [%u, %u) not inside %ux%u",
				(unsigned)r->x0, (unsigned)r->x1, (unsigned)r->y0,
				(unsigned)r->y1, (unsigned)sw, (unsigned)sh);
	if (n < 3 || bt_image_sniff(p, n) != BT_IMAGE_JPEG)
		return bt_error(BT_ERR_IMAGE, "not a JPEG image");
	d->err.msg[0] = 0;
	switch (jpeg_region_guarded(d, p, n, r, buf, cap)) {
	case REGION_OK:
		rc = BT_OK;
		break;
	case REGION_SIZE:
		rc = bt_error(BT_ERR_FORMAT, "JPEG is %ux%u, expected %ux%u",
			      (unsigned)d->cinfo.image_width, (unsigned)d->cinfo.image_height,
			      (unsigned)r->width, (unsigned)r->height);
		break;
	case REGION_NOMEM:
		rc = bt_error(BT_ERR_NOMEM, "JPEG: no memory for the decoded region");
		break;
	default:
		rc = jpeg_fail(&d->err, d->stage);
	}
	/* Stops here, without decoding the rest, and leaves the decoder ready for the next
	 * image (also after an error). */
	jpeg_abort_decompress(&d->cinfo);
	return rc;
}

/* ---- libpng plumbing ---- */

struct png_ctx {
	char msg[256];
	int nomem;        /* the failure was an allocation of ours */
	int strict;       /* warnings are errors (while reading pixel data) */
	const uint8_t *src;
	size_t n, off;
	uint8_t *buf;     /* encoder output, malloc'd */
	size_t len, cap;
	uint8_t *pixels;  /* decoder output, malloc'd */
};

static void png_on_error(png_structp png, png_const_charp msg)
{
	struct png_ctx *c = png_get_error_ptr(png);
	snprintf(c->msg, sizeof c->msg, "%s", msg);
	png_longjmp(png, 1);
}

/* Outside pixel data libpng only warns about things like odd iCCP profiles, which are
 * common and harmless. Inside it, a warning means rows are missing or extra: refuse. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
	struct png_ctx *c = png_get_error_ptr(png);
	if (c->strict)
		png_on_error(png, msg);
}

static void png_read_mem(png_structp png, png_bytep data, size_t len)
{
	struct png_ctx *c = png_get_io_ptr(png);
	if (len > c->n - c->off)
		png_error(png, "unexpected end of data");
	memcpy(data, c->src + c->off, len);
	c->off += len;
}

static void png_write_mem(png_structp png, png_bytep data, size_t len)
{
	struct png_ctx *c = png_get_io_ptr(png);
	if (len > c->cap - c->len) {
		size_t cap = c->cap ? c->cap : 4096;
		uint8_t *b;
		while (cap - c->len < len)
			cap *= 2;
		b = realloc(c->buf, cap);
		if (!b) {
			c->nomem = 1;
			png_error(png, "out of memory");
		}
		c->buf = b;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, data, len);
	c->len += len;
}

static void png_flush_mem(png_structp png)
{
	(void)png;
}

static int png_decode_guarded(png_structp png, png_infop info, struct png_ctx *c,
			      uint32_t *width, uint32_t *height)
{
	png_uint_32 w, h, y;
	int depth, type, passes, pass;

	if (setjmp(png_jmpbuf(png)))
		return -1;
	/* Our --max-pixels check replaces libpng's default 1,000,000-pixel side limit. */
	png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
	png_set_read_fn(png, c, png_read_mem);
	png_read_info(png, info);
	png_get_IHDR(png, info, &w, &h, &depth, &type, NULL, NULL, NULL);

	if (type == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(png);
	if (depth == 16)
		png_set_strip_16(png);
	png_set_strip_alpha(png);
	if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA)
		png_set_gray_to_rgb(png);
	passes = png_set_interlace_handling(png);
	png_read_update_info(png, info);
	if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
	    png_get_rowbytes(png, info) != (size_t)w * 3)
		png_error(png, "unexpected pixel layout after conversion");

	*width = w;
	*height = h;
	c->pixels = malloc((size_t)w * h * 3);
	if (!c->pixels) {
		c->nomem = 1;
		png_error(png, "out of memory");
	}
	c->strict = 1;
	for (pass = 0; pass < passes; pass++)
		for (y = 0; y < h; y++)
			png_read_row(png, c->pixels + (size_t)y * w * 3, NULL);
	c->strict = 0;
	/* Checks the CRC of the last IDAT and the chunks up to IEND. */
	png_read_end(png, NULL);
	return 0;
}

static int png_decode(const uint8_t *p, size_t n, struct bt_image *out)
{
	struct png_ctx c;
	png_structp png;
	png_infop info = NULL;
	uint32_t w = 0, h = 0;
	int rc;

	memset(&c, 0, sizeof c);
	c.src = p;
	c.n = n;
	png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error, png_on_warning);
	if (png)
		info = png_create_info_struct(png);
	if (!png || !info) {
		rc = bt_error(BT_ERR_NOMEM, "PNG: cannot create decoder");
		goto out;
	}
	if (png_decode_guarded(png, info, &c, &w, &h) != 0) {
		rc = bt_error(c.nomem ? BT_ERR_NOMEM : BT_ERR_IMAGE, "PNG: %s", c.msg);
		goto out;
	}
	out->width = w;
	out->height = h;
	out->channels = 3;
	out->pixels = c.pixels;
	c.pixels = NULL;
	rc = BT_OK;
out:
	png_destroy_read_struct(&png, &info, NULL);
	free(c.pixels);
	return rc;
}

int bt_image_decode(const uint8_t *p, size_t n, uint64_t max_pixels, uint32_t min_side,
		    struct bt_image *out)
{
	struct bt_image_info info;
	int rc;

	memset(out, 0, sizeof *out);
	/* The probe is cheap and gives the size limit and the truncation checks for free. */
	rc = bt_image_probe(p, n, max_pixels, &info);
	if (rc == BT_ERR_TRUNCATED || rc == BT_ERR_CRC)
		rc = BT_ERR_IMAGE;
	if (rc != BT_OK)
		return rc;
	if (info.format == BT_IMAGE_JPEG)
		return jpeg_decode(p, n, min_side, out);
	return png_decode(p, n, out);
}

/* ---- resampling ---- */

/* PIL's precision for 8-bit images: 255 * 2^22 plus rounding fits an int32 sum. */
#define RS_BITS BT_RESAMPLE_BITS

void bt_taps_free(struct bt_taps *t)
{
	free(t->start);
	free(t->count);
	free(t->coef);
	free(t->tmp);
	free(t->pairs);
	memset(t, 0, sizeof *t);
}

static double triangle(double x)
{
	if (x < 0)
		x = -x;
	return x < 1 ? 1 - x : 0;
}

/* Weights of the BILINEAR filter as PIL's precompute_coeffs and normalize_coeffs_8bpc
 * compute them (box argument included). PIL clamps to [0, image size); lo and hi generalise
 * that to crops. Zero weights are trimmed from both ends, then every output is padded to the
 * longest: integer sums do not change. */
int bt_taps_init(struct bt_taps *t, double in0, double in1, int32_t lo, int32_t hi,
		 uint32_t out)
{
	double scale, fs, support, ss, ks;
	size_t ksize;
	uint32_t i;
	int32_t n;

	if (t->coef && t->out == out && t->in0 == in0 && t->in1 == in1 && t->lo == lo &&
	    t->hi == hi)
		return BT_OK;
	if (out == 0 || !(in1 > in0) || lo < 0 || hi <= lo)
		return bt_error(BT_ERR_INVALID, "resample: bad range [%g, %g) in [%d, %d) to %u",
				in0, in1, (int)lo, (int)hi, (unsigned)out);
	t->out = 0; /* invalidates the cached arguments until the weights are complete */
	scale = (in1 - in0) / out;
	fs = scale < 1 ? 1 : scale;
	support = fs; /* the triangle's support is 1, widened by the shrink factor */
	ss = 1 / fs;
	/* No output uses more taps than the clamp range holds. */
	ks = ceil(support) * 2 + 1;
	ksize = ks < (double)(hi - lo) ? (size_t)ks : (size_t)(hi - lo);
	if (ksize > SIZE_MAX / sizeof *t->coef / out)
		return bt_error(BT_ERR_NOMEM, "no memory for resampling weights");
	if (out > t->cap_out) {
		int32_t *a = realloc(t->start, out * sizeof *a), *b;
		if (a)
			t->start = a;
		b = realloc(t->count, out * sizeof *b);
		if (b)
			t->count = b;
		if (!a || !b)
			return bt_error(BT_ERR_NOMEM, "no memory for resampling weights");
		t->cap_out = out;
	}
	if ((size_t)out * ksize > t->cap_coef) {
		int32_t *a = realloc(t->coef, (size_t)out * ksize * sizeof *a);
		if (!a)
			return bt_error(BT_ERR_NOMEM, "no memory for resampling weights");
		t->coef = a;
		t->cap_coef = (size_t)out * ksize;
	}
	if (ksize > t->cap_tmp) {
		double *a = realloc(t->tmp, ksize * sizeof *a);
		if (!a)
			return bt_error(BT_ERR_NOMEM, "no memory for resampling weights");
		t->tmp = a;
		t->cap_tmp = ksize;
	}
	t->first = hi;
	t->last = lo;
	n = 0;
	for (i = 0; i < out; i++) {
		/* Relative to lo, so that the clamp range behaves as an image of its own: a crop
		 * resized by itself has centres (i + 0.5) * scale, and an offset added to them
		 * would round differently. */
		double center = (in0 - lo) + (i + 0.5) * scale, ww = 0, *k = t->tmp;
		int32_t *c = t->coef + (size_t)i * ksize;
		double fmin = floor(center - support + 0.5), fmax = floor(center + support + 0.5);
		int32_t xmin = fmin < 0 ? 0 : (int32_t)fmin, xmax, x, a, b;
		xmax = fmax > hi - lo ? hi - lo : (int32_t)fmax;
		xmax -= xmin;
		for (x = 0; x < xmax; x++) {
			k[x] = triangle((x + xmin - center + 0.5) * ss);
			ww += k[x];
		}
		for (x = 0; x < xmax; x++) {
			double v = ww != 0 ? k[x] / ww : 0;
			c[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << RS_BITS)
					       : 0.5 + v * (1 << RS_BITS));
		}
		for (a = 0; a < xmax && c[a] == 0; a++)
			;
		for (b = xmax; b > a && c[b - 1] == 0; b--)
			;
		if (a > 0)
			memmove(c, c + a, (size_t)(b - a) * sizeof *c);
		xmin += lo;
		t->start[i] = xmin + a;
		t->count[i] = b - a;
		if (b > a && xmin + a < t->first)
			t->first = xmin + a;
		if (b > a && xmin + b > t->last)
			t->last = xmin + b;
		if (b - a > n)
			n = b - a;
	}
	if (n == 0) {
		/* Nothing reads anything (weights all rounded to 0): one zero tap at lo. */
		t->first = lo;
		t->last = lo + 1;
		n = 1;
		for (i = 0; i < out; i++) {
			t->start[i] = lo;
			t->count[i] = 0;
		}
	}
	/* Pad to n weights, moving a window left where it would end past last; since some
	 * output reads n inputs inside [first, last), every window fits. In place: output i's
	 * weights move from stride ksize to stride n <= ksize, so never onto a later one's. */
	for (i = 0; i < out; i++) {
		int32_t *from = t->coef + (size_t)i * ksize, *to = t->coef + (size_t)i * n;
		int32_t cnt = t->count[i], s0 = t->start[i], z;
		if (cnt == 0)
			s0 = t->first;
		if (s0 + n > t->last)
			s0 = t->last - n;
		z = t->start[i] - s0;
		if (cnt > 0)
			memmove(to + z, from, (size_t)cnt * sizeof *to);
		else
			z = 0;
		memset(to, 0, (size_t)z * sizeof *to);
		memset(to + z + cnt, 0, (size_t)(n - z - cnt) * sizeof *to);
		t->start[i] = s0;
	}
	t->n = n;
	/* Weights in pairs for the AVX2 kernel: lanes 0-3 weight tap 2p, lanes 4-7 tap 2p + 1
	 * (0 past the last tap). */
	{
		size_t np = (size_t)(n + 1) / 2, need = (size_t)out * np * 8;
		int32_t *pk;
		if (need > t->cap_pairs) {
			pk = realloc(t->pairs, need * sizeof *pk);
			if (!pk)
				return bt_error(BT_ERR_NOMEM, "no memory for resampling weights");
			t->pairs = pk;
			t->cap_pairs = need;
		}
		pk = t->pairs;
		for (i = 0; i < out; i++) {
			const int32_t *k = t->coef + (size_t)i * n;
			int32_t j, l;
			for (j = 0; j < (int32_t)np * 2; j++)
				for (l = 0; l < 4; l++)
					*pk++ = j < n ? k[j] : 0;
		}
	}
	t->in0 = in0;
	t->in1 = in1;
	t->lo = lo;
	t->hi = hi;
	t->out = out;
	return BT_OK;
}

static inline uint8_t clip8(int32_t v)
{
	v >>= RS_BITS;
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* ---- AVX2 kernels ----
 *
 * Chosen at run time (the library is built for baseline x86-64). They compute the same
 * integer sums as the C loops, so the bytes are the same. */

static int simd_state = -1; /* -1: not yet probed */

static int cpu_avx2(void)
{
#if BT_X86
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") != 0;
#else
	return 0;
#endif
}

int bt_simd(int on)
{
	int was = __atomic_load_n(&simd_state, __ATOMIC_RELAXED);
	if (was < 0)
		was = cpu_avx2();
	__atomic_store_n(&simd_state, on < 0 ? was : on && cpu_avx2(), __ATOMIC_RELAXED);
	return was;
}

/* Bytes the 3-channel horizontal kernel may read past the last tap of a row. */
#define H3_OVERREAD 16

#if BT_X86
/* Two taps per step: the 16 bytes from a tap's pixel, in both 128-bit lanes, are spread by
 * one shuffle to R G B 0 of that pixel (lanes 0-3) and of the next (lanes 4-7), then
 * multiplied by the pair's weights. Two rows at a time share the weights. Output pixels are
 * written in increasing address order, 4 bytes at a time (the 4th byte is overwritten by
 * the next pixel), so for a flip the outputs are computed from the right; a row's last
 * pixel is stored as 3 bytes. */
__attribute__((target("avx2"))) static inline __m128i h3_sum(__m256i acc)
{
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
	return _mm_srai_epi32(_mm_add_epi32(s, _mm_set1_epi32(1 << (RS_BITS - 1))), RS_BITS);
}

__attribute__((target("avx2"))) static inline void h3_store(uint8_t *o, uint32_t v, int last)
{
	if (!last) {
		memcpy(o, &v, 4);
	} else {
		o[0] = (uint8_t)v;
		o[1] = (uint8_t)(v >> 8);
		o[2] = (uint8_t)(v >> 16);
	}
}

__attribute__((target("avx2"))) static void
h3_avx2(const uint8_t *ra, const uint8_t *rb, int32_t x0, const struct bt_taps *t, int flip,
	uint8_t *oa, uint8_t *ob)
{
	const __m256i spread = _mm256_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1,
						 -1, -1, -1, -1, 3, -1, -1, -1, 4, -1, -1, -1,
						 5, -1, -1, -1, -1, -1, -1, -1);
	const size_t wout = t->out, np = (size_t)(t->n + 1) / 2;
	size_t i, p;

	for (i = 0; i < wout; i++, oa += 3, ob += 3) {
		const size_t x = flip ? wout - 1 - i : i, off = (size_t)(t->start[x] - x0) * 3;
		const __m256i *k = (const __m256i *)(t->pairs + x * np * 8);
		const uint8_t *sa = ra + off, *sb = rb + off;
		__m256i acca = _mm256_setzero_si256(), accb = acca;
		__m128i v;
		for (p = 0; p < np; p++, sa += 6, sb += 6) {
			__m256i w = _mm256_loadu_si256(k + p);
			__m256i pa = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sa));
			__m256i pb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sb));
			pa = _mm256_shuffle_epi8(pa, spread);
			pb = _mm256_shuffle_epi8(pb, spread);
			acca = _mm256_add_epi32(acca, _mm256_mullo_epi32(pa, w));
			accb = _mm256_add_epi32(accb, _mm256_mullo_epi32(pb, w));
		}
		/* Saturating packs clamp to 0..255: bytes 0-3 row a, 4-7 row b. */
		v = _mm_packs_epi32(h3_sum(acca), h3_sum(accb));
		v = _mm_packus_epi16(v, v);
		h3_store(oa, (uint32_t)_mm_cvtsi128_si32(v), i + 1 == wout);
		h3_store(ob, (uint32_t)_mm_extract_epi32(v, 1), i + 1 == wout);
	}
}

/* Eight outputs at a time, all taps summed in a register. */
__attribute__((target("avx2"))) static void
v_avx2(const uint8_t *s, size_t rowlen, const int32_t *k, int n, int32_t *acc)
{
	const int32_t half = 1 << (RS_BITS - 1);
	size_t i;
	int j;

	for (i = 0; i + 16 <= rowlen; i += 16) {
		__m256i a = _mm256_set1_epi32(half), b = a;
		const uint8_t *r = s + i;
		for (j = 0; j < n; j++, r += rowlen) {
			__m256i w = _mm256_set1_epi32(k[j]);
			__m256i pa = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)r));
			__m256i pb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(r + 8)));
			a = _mm256_add_epi32(a, _mm256_mullo_epi32(pa, w));
			b = _mm256_add_epi32(b, _mm256_mullo_epi32(pb, w));
		}
		_mm256_storeu_si256((__m256i *)(acc + i), a);
		_mm256_storeu_si256((__m256i *)(acc + i + 8), b);
	}
	for (; i < rowlen; i++) {
		int32_t a = half;
		for (j = 0; j < n; j++)
			a += s[i + (size_t)j * rowlen] * k[j];
		acc[i] = a;
	}
}
#endif

/* Inlined with C constant, so the channel tests fold away and the sums stay in registers
 * (at -O2, gcc does not unroll a loop over channels by itself). */
static inline __attribute__((always_inline)) void
resample_rows_h(const uint8_t *src, size_t stride, int32_t x0, uint32_t rows,
		const struct bt_taps *t, int flip, uint8_t *dst, const int C)
{
	const int32_t *start = t->start, *coef = t->coef;
	const int n = t->n;
	const size_t wout = t->out;
	const ptrdiff_t step = flip ? -C : C;
	uint32_t y;
	size_t x;
	int j;

	for (y = 0; y < rows; y++) {
		const uint8_t *row = src + (size_t)y * stride;
		uint8_t *o = dst + (size_t)y * wout * C + (flip ? (wout - 1) * C : 0);
		for (x = 0; x < wout; x++, o += step) {
			const int32_t *k = coef + x * n;
			const uint8_t *s = row + (size_t)(start[x] - x0) * C;
			int32_t a0 = 1 << (RS_BITS - 1), a1 = a0, a2 = a0, a3 = a0;
			for (j = 0; j < n; j++, s += C) {
				a0 += s[0] * k[j];
				if (C > 1)
					a1 += s[1] * k[j];
				if (C > 2)
					a2 += s[2] * k[j];
				if (C > 3)
					a3 += s[3] * k[j];
			}
			o[0] = clip8(a0);
			if (C > 1)
				o[1] = clip8(a1);
			if (C > 2)
				o[2] = clip8(a2);
			if (C > 3)
				o[3] = clip8(a3);
		}
	}
}

void bt_resample_h(const uint8_t *src /* (rows,*,C) */, size_t stride, int32_t x0,
		   uint32_t rows, int channels, const struct bt_taps *t, int flip,
		   uint8_t *dst /* (rows,out,C) */)
{
#if BT_X86
	if (channels == 3 && bt_simd(-1)) {
		/* Rows whose reads would pass the end of the last row go the portable way. */
		const size_t reach = (size_t)(t->last - x0) * 3;
		const size_t end = rows ? (size_t)(rows - 1) * stride + reach : 0;
		uint32_t y;
		for (y = 0; y + 1 < rows && (size_t)(y + 1) * stride + reach + H3_OVERREAD <= end;
		     y += 2)
			h3_avx2(src + (size_t)y * stride, src + (size_t)(y + 1) * stride, x0, t, flip,
				dst + (size_t)y * t->out * 3, dst + (size_t)(y + 1) * t->out * 3);
		src += (size_t)y * stride;
		dst += (size_t)y * t->out * 3;
		rows -= y;
	}
#endif
	switch (channels) {
	case 1: resample_rows_h(src, stride, x0, rows, t, flip, dst, 1); break;
	case 2: resample_rows_h(src, stride, x0, rows, t, flip, dst, 2); break;
	case 3: resample_rows_h(src, stride, x0, rows, t, flip, dst, 3); break;
	default: resample_rows_h(src, stride, x0, rows, t, flip, dst, 4); break;
	}
}

/* Row by row into an int32 accumulator, so memory is read in order; integer sums are
 * exact, so this equals PIL's per-pixel order. The fixed 16-wide blocks let gcc vectorise
 * at -O2, where it only vectorises loops with a known trip count. */
#define RS_BLOCK 16
void bt_resample_v_row(const uint8_t *src /* (rows,rowlen) */, size_t rowlen, int32_t y0,
		       const struct bt_taps *t, uint32_t y, int32_t *restrict acc /* (rowlen,) */)
{
	const int32_t *k = t->coef + (size_t)y * t->n;
	const int n = t->n;
	const uint8_t *restrict s = src + (size_t)(t->start[y] - y0) * rowlen;
	const size_t body = rowlen - rowlen % RS_BLOCK;
	const int32_t half = 1 << (RS_BITS - 1);
	size_t i, q;
	int j;

#if BT_X86
	if (bt_simd(-1)) {
		v_avx2(s, rowlen, k, n, acc);
		return;
	}
#endif
	/* The first tap initialises, saving a pass over acc. */
	for (i = 0; i < body; i += RS_BLOCK)
		for (q = 0; q < RS_BLOCK; q++)
			acc[i + q] = half + s[i + q] * k[0];
	for (; i < rowlen; i++)
		acc[i] = half + s[i] * k[0];
	for (j = 1; j < n; j++) {
		const int32_t w = k[j];
		s += rowlen;
		for (i = 0; i < body; i += RS_BLOCK)
			for (q = 0; q < RS_BLOCK; q++)
				acc[i + q] += s[i + q] * w;
		for (; i < rowlen; i++)
			acc[i] += s[i] * w;
	}
}

static void clip_row(const int32_t *restrict acc, uint8_t *restrict o, size_t rowlen)
{
	size_t i, q, body = rowlen - rowlen % RS_BLOCK;
	for (i = 0; i < body; i += RS_BLOCK)
		for (q = 0; q < RS_BLOCK; q++)
			o[i + q] = clip8(acc[i + q]);
	for (; i < rowlen; i++)
		o[i] = clip8(acc[i]);
}

int bt_image_resize_box(const struct bt_image *src, double x, double y, double w, double h,
			uint32_t width, uint32_t height, struct bt_image *dst)
{
	struct bt_taps th = { 0 }, tv = { 0 };
	uint8_t *tmp = NULL, *out = NULL;
	const uint8_t *mid; /* (rows, width, C): after the horizontal pass */
	int32_t *acc = NULL;
	int c = src->channels, rc, need_h, need_v;
	int32_t y0, rows;
	size_t rowlen, n;
	uint32_t i;

	if (c < 1 || c > 4)
		return bt_error(BT_ERR_INVALID, "resize: %d channels (want 1..4)", c);
	if (!src->pixels || src->width == 0 || src->height == 0 || width == 0 || height == 0)
		return bt_error(BT_ERR_INVALID, "resize: empty image (%ux%u to %ux%u)",
				(unsigned)src->width, (unsigned)src->height, (unsigned)width,
				(unsigned)height);
	if (!(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= src->width &&
	      y + h <= src->height))
		return bt_error(BT_ERR_INVALID, "resize: box (%g, %g, %g, %g) not inside %ux%u",
				x, y, w, h, (unsigned)src->width, (unsigned)src->height);
	if (src->width > INT32_MAX || src->height > INT32_MAX)
		return bt_error(BT_ERR_TOOBIG, "resize: %ux%u is too large",
				(unsigned)src->width, (unsigned)src->height);
	rowlen = (size_t)width * c;
	if ((size_t)height > SIZE_MAX / rowlen || (size_t)src->height > SIZE_MAX / rowlen)
		return bt_error(BT_ERR_TOOBIG, "resize: %ux%u is too large", (unsigned)width,
				(unsigned)height);
	n = rowlen * height;
	out = malloc(n);
	if (!out) {
		rc = bt_error(BT_ERR_NOMEM, "resize: no memory for %ux%u pixels",
			      (unsigned)width, (unsigned)height);
		goto out;
	}

	/* Horizontal first, as PIL does; the rounding between passes depends on the order.
	 * A pass that would be the identity is skipped, by PIL's rule. Only the rows the
	 * vertical pass reads go through the horizontal one. */
	need_h = width != src->width || x != 0 || w != src->width;
	need_v = height != src->height || y != 0 || h != src->height;
	y0 = 0;
	rows = (int32_t)src->height;
	if (need_v) {
		if ((rc = bt_taps_init(&tv, y, y + h, 0, (int32_t)src->height, height)) != BT_OK)
			goto out;
		y0 = tv.first;
		rows = tv.last - tv.first;
	}
	mid = src->pixels + (size_t)y0 * src->width * c;
	if (need_h) {
		if ((rc = bt_taps_init(&th, x, x + w, 0, (int32_t)src->width, width)) != BT_OK)
			goto out;
		if (need_v && !(tmp = malloc(rowlen * (size_t)rows))) {
			rc = bt_error(BT_ERR_NOMEM, "resize: no memory for %ux%u pixels",
				      (unsigned)width, (unsigned)rows);
			goto out;
		}
		bt_resample_h(mid, (size_t)src->width * c, 0, (uint32_t)rows, c, &th, 0,
			      need_v ? tmp : out);
		mid = need_v ? tmp : out;
	}
	if (need_v) {
		acc = malloc(rowlen * sizeof *acc);
		if (!acc) {
			rc = bt_error(BT_ERR_NOMEM, "resize: no memory for a row");
			goto out;
		}
		for (i = 0; i < height; i++) {
			bt_resample_v_row(mid, rowlen, y0, &tv, i, acc);
			clip_row(acc, out + i * rowlen, rowlen);
		}
	} else if (mid != out) {
		memcpy(out, mid, n);
	}

	if (dst == src)
		free(dst->pixels);
	dst->width = width;
	dst->height = height;
	dst->channels = c;
	dst->pixels = out;
	out = NULL;
	rc = BT_OK;
out:
	free(tmp);
	free(out);
	free(acc);
	bt_taps_free(&th);
	bt_taps_free(&tv);
	return rc;
}

int bt_image_resize(const struct bt_image *src, uint32_t width, uint32_t height,
		    struct bt_image *dst)
{
	return bt_image_resize_box(src, 0, 0, src->width, src->height, width, height, dst);
}

void bt_image_size_shorter(uint32_t w, uint32_t h, uint32_t n, uint32_t *ow, uint32_t *oh)
{
	uint64_t longer;

	if (w == 0 || h == 0) {
		*ow = *oh = 0;
		return;
	}
	if (w <= h) {
		longer = ((uint64_t)h * n * 2 + w) / ((uint64_t)w * 2);
		*ow = n;
		*oh = longer < 1 ? 1 : longer > UINT32_MAX ? UINT32_MAX : (uint32_t)longer;
	} else {
		longer = ((uint64_t)w * n * 2 + h) / ((uint64_t)h * 2);
		*oh = n;
		*ow = longer < 1 ? 1 : longer > UINT32_MAX ? UINT32_MAX : (uint32_t)longer;
	}
}

/* ---- encoders ---- */

struct jpeg_enc_ctx {
	struct jpeg_compress_struct cinfo;
	struct jpeg_err err;
	unsigned char *buf; /* jpeg_mem_dest's buffer; ours to free */
	unsigned long len;
};

static int jpeg_encode_guarded(struct jpeg_enc_ctx *c, const struct bt_image *im, int quality)
{
	struct jpeg_compress_struct *ci = &c->cinfo;
	size_t stride = (size_t)im->width * im->channels;
	JSAMPROW row;

	if (setjmp(c->err.jmp))
		return -1;
	jpeg_create_compress(ci);
	jpeg_mem_dest(ci, &c->buf, &c->len);
	ci->image_width = im->width;
	ci->image_height = im->height;
	ci->input_components = im->channels;
	ci->in_color_space = im->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(ci);
	jpeg_set_quality(ci, quality, TRUE);
	if (im->channels == 3) {
		/* 4:2:0, which is libjpeg's default; say so rather than rely on it. */
		ci->comp_info[0].h_samp_factor = 2;
		ci->comp_info[0].v_samp_factor = 2;
		ci->comp_info[1].h_samp_factor = ci->comp_info[1].v_samp_factor = 1;
		ci->comp_info[2].h_samp_factor = ci->comp_info[2].v_samp_factor = 1;
	}
	jpeg_start_compress(ci, TRUE);
	while (ci->next_scanline < ci->image_height) {
		row = im->pixels + ci->next_scanline * stride;
		jpeg_write_scanlines(ci, &row, 1);
	}
	jpeg_finish_compress(ci);
	return 0;
}

int bt_image_encode_jpeg(const struct bt_image *im, int quality, uint8_t **out, size_t *n)
{
	struct jpeg_enc_ctx c;
	int rc;

	*out = NULL;
	*n = 0;
	if (im->channels != 1 && im->channels != 3)
		return bt_error(BT_ERR_INVALID, "JPEG encoder: %d channels (want 1 or 3)",
				im->channels);
	if (quality < 1 || quality > 100)
		return bt_error(BT_ERR_INVALID, "JPEG encoder: quality %d (want 1..100)", quality);
	if (im->width == 0 || im->height == 0 || im->width > JPEG_MAX_DIMENSION ||
	    im->height > JPEG_MAX_DIMENSION)
		return bt_error(BT_ERR_INVALID, "JPEG encoder: size %ux%u (want 1..%ld)",
				(unsigned)im->width, (unsigned)im->height, (long)JPEG_MAX_DIMENSION);

	memset(&c, 0, sizeof c);
	jpeg_err_init(&c.err);
	c.cinfo.err = &c.err.pub;
	if (jpeg_encode_guarded(&c, im, quality) != 0) {
		rc = jpeg_fail(&c.err, "JPEG encoder");
		goto out;
	}
	*out = c.buf;
	*n = c.len;
	c.buf = NULL;
	rc = BT_OK;
out:
	jpeg_destroy_compress(&c.cinfo);
	free(c.buf);
	return rc;
}

static int png_encode_guarded(png_structp png, png_infop info, struct png_ctx *c,
			      const struct bt_image *im)
{
	static const int types[] = { 0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB,
				     PNG_COLOR_TYPE_RGB_ALPHA };
	size_t stride = (size_t)im->width * im->channels;
	uint32_t y;

	if (setjmp(png_jmpbuf(png)))
		return -1;
	png_set_write_fn(png, c, png_write_mem, png_flush_mem);
	png_set_IHDR(png, info, im->width, im->height, 8, types[im->channels],
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (y = 0; y < im->height; y++)
		png_write_row(png, im->pixels + y * stride);
	png_write_end(png, NULL);
	return 0;
}

int bt_image_encode_png(const struct bt_image *im, uint8_t **out, size_t *n)
{
	struct png_ctx c;
	png_structp png;
	png_infop info = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	if (im->channels != 1 && im->channels != 3 && im->channels != 4)
		return bt_error(BT_ERR_INVALID, "PNG encoder: %d channels (want 1, 3 or 4)",
				im->channels);
	if (im->width == 0 || im->height == 0 || im->width > PNG_UINT_31_MAX ||
	    im->height > PNG_UINT_31_MAX)
		return bt_error(BT_ERR_INVALID, "PNG encoder: size %ux%u", (unsigned)im->width,
				(unsigned)im->height);

	memset(&c, 0, sizeof c);
	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error, png_on_warning);
	if (png)
		info = png_create_info_struct(png);
	if (!png || !info) {
		rc = bt_error(BT_ERR_NOMEM, "PNG encoder: cannot create encoder");
		goto out;
	}
	if (png_encode_guarded(png, info, &c, im) != 0) {
		rc = bt_error(c.nomem ? BT_ERR_NOMEM : BT_ERR_IMAGE, "PNG encoder: %s", c.msg);
		goto out;
	}
	*out = c.buf;
	*n = c.len;
	c.buf = NULL;
	rc = BT_OK;
out:
	png_destroy_write_struct(&png, &info);
	free(c.buf);
	return rc;
}

void bt_image_free(struct bt_image *im)
{
	if (!im)
		return;
	free(im->pixels);
	memset(im, 0, sizeof *im);
}
