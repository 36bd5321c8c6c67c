/* test_image.c: unit tests for lib/image.c. Images are made here (with the library's own
 * encoders, and with libjpeg and libpng directly for the kinds bt never writes: CMYK, 16-bit,
 * palette, interlaced), so the tests need no fixture files. The resampler is checked against
 * a naive double-precision implementation of the same filter written from its definition. */
#include "bt.h"
#include "image.h"
#include "test.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

/* ---- helpers ---- */

static uint8_t *pattern(uint32_t w, uint32_t h, int c) /* (H,W,C) */
{
	uint8_t *p = malloc((size_t)w * h * c);
	uint32_t x, y;
	int k;
	for (y = 0; y < h; y++)
		for (x = 0; x < w; x++)
			for (k = 0; k < c; k++)
				p[((size_t)y * w + x) * c + k] =
					(uint8_t)((x * 255 / (w > 1 ? w - 1 : 1) * (k + 1) +
						   y * 255 / (h > 1 ? h - 1 : 1) * (3 - k)) / 4);
	return p;
}

static uint8_t *noise(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n);
	size_t i;
	for (i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (uint8_t)(seed >> 24);
	}
	return p;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Appends one PNG chunk with its CRC. */
static size_t chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t len)
{
	put32(out, len);
	memcpy(out + 4, type, 4);
	if (len)
		memcpy(out + 8, data, len);
	put32(out + 8 + len, bt_crc32(0, out + 4, 4 + len));
	return 12 + len;
}

/* A PNG whose IHDR claims w x h (8-bit RGB) with a tiny IDAT. */
static size_t png_bomb(uint8_t *out, uint32_t w, uint32_t h)
{
	uint8_t ihdr[13] = { 0 }, idat[64];
	uint8_t raw[4] = { 0 };
	uLongf zn = sizeof idat;
	size_t n = 8;
	memcpy(out, "\x89PNG\r\n\x1a\n", 8);
	put32(ihdr, w);
	put32(ihdr + 4, h);
	ihdr[8] = 8;
	ihdr[9] = 2;
	n += chunk(out + n, "IHDR", ihdr, 13);
	compress(idat, &zn, raw, sizeof raw);
	n += chunk(out + n, "IDAT", idat, (uint32_t)zn);
	n += chunk(out + n, "IEND", NULL, 0);
	return n;
}

/* Walks the marker segments to the SOF and rewrites its size. */
static int patch_sof(uint8_t *p, size_t n, uint32_t w, uint32_t h)
{
	size_t i = 2;
	while (i + 9 < n && p[i] == 0xff) {
		int m = p[i + 1];
		size_t len = (size_t)p[i + 2] << 8 | p[i + 3];
		if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			p[i + 5] = (uint8_t)(h >> 8);
			p[i + 6] = (uint8_t)h;
			p[i + 7] = (uint8_t)(w >> 8);
			p[i + 8] = (uint8_t)w;
			return 1;
		}
		i += 2 + len;
	}
	return 0;
}

static uint8_t *enc_jpeg(uint32_t w, uint32_t h, int c, const uint8_t *px, int q, size_t *n)
{
	struct bt_image im = { w, h, c, (uint8_t *)px };
	uint8_t *out;
	if (bt_image_encode_jpeg(&im, q, &out, n) != BT_OK)
		return NULL;
	return out;
}

/* A CMYK JPEG of one flat colour, written with libjpeg directly. */
static uint8_t *enc_cmyk(uint32_t w, uint32_t h, const uint8_t cmyk[4], int adobe, size_t *n)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char *buf = NULL;
	unsigned long len = 0;
	uint8_t *row = malloc((size_t)w * 4);
	JSAMPROW r = row;
	uint32_t x;

	for (x = 0; x < w; x++)
		memcpy(row + x * 4, cmyk, 4);
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &buf, &len);
	ci.image_width = w;
	ci.image_height = h;
	ci.input_components = 4;
	ci.in_color_space = JCS_CMYK;
	jpeg_set_defaults(&ci);
	ci.write_Adobe_marker = adobe;
	jpeg_set_quality(&ci, 95, TRUE);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < h)
		jpeg_write_scanlines(&ci, &r, 1);
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	free(row);
	*n = len;
	return buf;
}

struct membuf {
	uint8_t *p;
	size_t n;
};

static void mem_write(png_structp png, png_bytep d, size_t len)
{
	struct membuf *m = png_get_io_ptr(png);
	m->p = realloc(m->p, m->n + len);
	memcpy(m->p + m->n, d, len);
	m->n += len;
}

static void mem_flush(png_structp png)
{
	(void)png;
}

/* Any PNG with libpng: rows are already packed for the given depth and type. */
static uint8_t *enc_png_raw(uint32_t w, uint32_t h, int depth, int type, int interlace,
			    const png_color *pal, int npal, const png_byte *trans, int ntrans,
			    const uint8_t *rows, size_t stride, size_t *n)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	struct membuf m = { NULL, 0 };
	png_bytep *rp = malloc(h * sizeof *rp);
	uint32_t y;

	if (setjmp(png_jmpbuf(png))) {
		fprintf(stderr, "libpng failed in a test helper\n");
		abort();
	}
	for (y = 0; y < h; y++)
		rp[y] = (png_bytep)rows + y * stride;
	png_set_write_fn(png, &m, mem_write, mem_flush);
	png_set_IHDR(png, info, w, h, depth, type,
		     interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	if (pal)
		png_set_PLTE(png, info, pal, npal);
	if (ntrans) {
		/* Palette: one alpha per entry. Otherwise a colour key (black). */
		png_color_16 key = { 0, 0, 0, 0, 0 };
		if (pal)
			png_set_tRNS(png, info, trans, ntrans, NULL);
		else
			png_set_tRNS(png, info, NULL, 0, &key);
	}
	png_write_info(png, info);
	png_write_image(png, rp);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	free(rp);
	*n = m.n;
	return m.p;
}

static int maxdiff(const uint8_t *a, const uint8_t *b, size_t n)
{
	int d = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		int e = abs((int)a[i] - (int)b[i]);
		if (e > d)
			d = e;
	}
	return d;
}

/* ---- sniff and probe ---- */

TEST(test_sniff)
{
	static const uint8_t jpg[] = { 0xff, 0xd8, 0xff, 0xe0 };
	static const uint8_t png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	CHECK_EQ(bt_image_sniff(jpg, sizeof jpg), BT_IMAGE_JPEG);
	CHECK_EQ(bt_image_sniff(png, sizeof png), BT_IMAGE_PNG);
	CHECK_EQ(bt_image_sniff(png, 7), BT_IMAGE_UNKNOWN);
	CHECK_EQ(bt_image_sniff(jpg, 2), BT_IMAGE_UNKNOWN);
	CHECK_EQ(bt_image_sniff((const uint8_t *)"GIF89a", 6), BT_IMAGE_UNKNOWN);
	CHECK_EQ(bt_image_sniff(NULL, 0), BT_IMAGE_UNKNOWN);
}

TEST(test_probe_jpeg)
{
	struct bt_image_info info;
	uint8_t *px = pattern(37, 21, 3), *g = pattern(16, 9, 1), *j;
	static const uint8_t cmyk[4] = { 255, 128, 64, 200 };
	size_t n;

	j = enc_jpeg(37, 21, 3, px, 90, &n);
	CHECK(j);
	CHECK_EQ(bt_image_probe(j, n, 0, &info), BT_OK);
	CHECK_EQ(info.format, BT_IMAGE_JPEG);
	CHECK_EQ(info.width, 37);
	CHECK_EQ(info.height, 21);
	CHECK_EQ(info.channels, 3);
	CHECK_EQ(info.cmyk, 0);
	/* The limit is inclusive. */
	CHECK_EQ(bt_image_probe(j, n, 37 * 21, &info), BT_OK);
	CHECK_EQ(bt_image_probe(j, n, 37 * 21 - 1, &info), BT_ERR_TOOBIG);
	CHECK_STR(bt_errmsg(), "image is 37x21 pixels, over the limit of 776 (--max-pixels)");
	free(j);

	j = enc_jpeg(16, 9, 1, g, 90, &n);
	CHECK(j);
	CHECK_EQ(bt_image_probe(j, n, 0, &info), BT_OK);
	CHECK_EQ(info.channels, 1);
	CHECK_EQ(info.cmyk, 0);
	free(j);

	j = enc_cmyk(20, 10, cmyk, 1, &n);
	CHECK_EQ(bt_image_probe(j, n, 0, &info), BT_OK);
	CHECK_EQ(info.width, 20);
	CHECK_EQ(info.channels, 3);
	CHECK_EQ(info.cmyk, 1);
	free(j);
	free(px);
	free(g);
}

TEST(test_probe_png)
{
	struct bt_image_info info;
	struct bt_image im = { 13, 7, 0, NULL };
	uint8_t *p;
	size_t n;
	int c;

	for (c = 1; c <= 4; c++) {
		if (c == 2)
			continue;
		im.channels = c;
		im.pixels = pattern(13, 7, c);
		CHECK_EQ(bt_image_encode_png(&im, &p, &n), BT_OK);
		CHECK_EQ(bt_image_probe(p, n, 0, &info), BT_OK);
		CHECK_EQ(info.format, BT_IMAGE_PNG);
		CHECK_EQ(info.width, 13);
		CHECK_EQ(info.height, 7);
		CHECK_EQ(info.channels, c);
		CHECK_EQ(info.cmyk, 0);
		/* Trailing padding after IEND is tolerated, up to a point. */
		p = realloc(p, n + 200);
		memset(p + n, 0, 200);
		CHECK_EQ(bt_image_probe(p, n + 64, 0, &info), BT_OK);
		CHECK_EQ(bt_image_probe(p, n + 65, 0, &info), BT_ERR_TRUNCATED);
		/* A damaged IHDR is caught by its CRC. */
		p[17] ^= 1;
		CHECK_EQ(bt_image_probe(p, n, 0, &info), BT_ERR_CRC);
		free(p);
		free(im.pixels);
	}
}

TEST(test_truncated_jpeg)
{
	struct bt_image_info info;
	struct bt_image im;
	uint8_t *px = noise(64 * 48 * 3, 3), *j; /* noise: mostly entropy-coded data */
	size_t n;

	j = enc_jpeg(64, 48, 3, px, 90, &n);
	CHECK(j);
	CHECK_EQ(bt_image_probe(j, n / 2, 0, &info), BT_ERR_TRUNCATED);
	CHECK_STR(bt_errmsg(), "truncated JPEG (no end-of-image marker)");
	CHECK_EQ(bt_image_decode(j, n / 2, 0, 0, &im), BT_ERR_IMAGE);
	CHECK(im.pixels == NULL);
	/* Cut inside the header: truncation is what gets reported. */
	CHECK_EQ(bt_image_probe(j, 30, 0, &info), BT_ERR_TRUNCATED);
	/* ... unless an EOI follows; then the header parser complains. */
	{
		uint8_t cut[32];
		memcpy(cut, j, 30);
		cut[30] = 0xff;
		cut[31] = 0xd9;
		CHECK_EQ(bt_image_probe(cut, 32, 0, &info), BT_ERR_IMAGE);
		CHECK(strncmp(bt_errmsg(), "JPEG header: ", 13) == 0);
		CHECK_EQ(bt_image_decode(cut, 32, 0, 0, &im), BT_ERR_IMAGE);
	}

	/* Half the entropy data, then EOI: the cheap probe passes, the decoder must not,
	 * although libjpeg itself only warns. */
	{
		uint8_t save[2] = { j[n / 2], j[n / 2 + 1] };
		j[n / 2] = 0xff;
		j[n / 2 + 1] = 0xd9;
		CHECK_EQ(bt_image_probe(j, n / 2 + 2, 0, &info), BT_OK);
		CHECK_EQ(bt_image_decode(j, n / 2 + 2, 0, 0, &im), BT_ERR_IMAGE);
		CHECK_STR(bt_errmsg(), "JPEG: Corrupt JPEG data: premature end of data segment");
		CHECK(im.pixels == NULL);
		memcpy(j + n / 2, save, 2);
	}

	/* Padding after EOI is fine. */
	j = realloc(j, n + 100);
	memset(j + n, 0, 100);
	CHECK_EQ(bt_image_probe(j, n + 64, 0, &info), BT_OK);
	CHECK_EQ(bt_image_decode(j, n + 64, 0, 0, &im), BT_OK);
	bt_image_free(&im);
	CHECK_EQ(bt_image_probe(j, n + 65, 0, &info), BT_ERR_TRUNCATED);
	free(j);
	free(px);
}

TEST(test_truncated_png)
{
	struct bt_image_info info;
	struct bt_image im = { 40, 30, 3, NULL }, out;
	uint8_t *p;
	size_t n;

	im.pixels = noise(40 * 30 * 3, 7);
	CHECK_EQ(bt_image_encode_png(&im, &p, &n), BT_OK);
	CHECK_EQ(bt_image_probe(p, n - 1, 0, &info), BT_ERR_TRUNCATED);
	CHECK_STR(bt_errmsg(), "truncated PNG (no IEND chunk)");
	CHECK_EQ(bt_image_probe(p, n / 2, 0, &info), BT_ERR_TRUNCATED);
	CHECK_EQ(bt_image_decode(p, n / 2, 0, 0, &out), BT_ERR_IMAGE);
	CHECK_EQ(bt_image_probe(p, 20, 0, &info), BT_ERR_TRUNCATED);

	/* IEND intact but pixel data damaged: the probe cannot see it, the decoder must. */
	p[n / 2] ^= 0x55;
	CHECK_EQ(bt_image_probe(p, n, 0, &info), BT_OK);
	CHECK_EQ(bt_image_decode(p, n, 0, 0, &out), BT_ERR_IMAGE);
	CHECK(strncmp(bt_errmsg(), "PNG: ", 5) == 0);
	CHECK(out.pixels == NULL);
	free(p);
	free(im.pixels);
}

/* A zlib stream that ends cleanly but holds too few rows: libpng only "benign errors"
 * about it, which would hand back a partly made-up picture. */
TEST(test_short_png_data)
{
	uint8_t buf[4096], ihdr[13] = { 0 }, raw[1 + 8 * 3] = { 0 }, z[256];
	uLongf zn = sizeof z;
	struct bt_image im;
	size_t n = 8;

	memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
	put32(ihdr, 8);
	put32(ihdr + 4, 8);
	ihdr[8] = 8;
	ihdr[9] = 2;
	n += chunk(buf + n, "IHDR", ihdr, 13);
	compress(z, &zn, raw, sizeof raw); /* one row of eight */
	n += chunk(buf + n, "IDAT", z, (uint32_t)zn);
	n += chunk(buf + n, "IEND", NULL, 0);
	CHECK_EQ(bt_image_decode(buf, n, 0, 0, &im), BT_ERR_IMAGE);
	CHECK(im.pixels == NULL);
}

TEST(test_text_bytes)
{
	static const char text[] = "hello, this is not an image at all\n";
	struct bt_image_info info;
	struct bt_image im;
	CHECK_EQ(bt_image_probe((const uint8_t *)text, sizeof text - 1, 0, &info), BT_ERR_FORMAT);
	CHECK_STR(bt_errmsg(), "not a JPEG or PNG image");
	CHECK_EQ(bt_image_decode((const uint8_t *)text, sizeof text - 1, 0, 0, &im),
		 BT_ERR_FORMAT);
	CHECK_EQ(bt_image_probe((const uint8_t *)"", 0, 0, &info), BT_ERR_FORMAT);
	/* A JPEG signature followed by junk. */
	CHECK_EQ(bt_image_probe((const uint8_t *)"\xff\xd8\xff\xffjunkjunkjunk\xff\xd9", 18, 0,
				&info), BT_ERR_IMAGE);
}

TEST(test_max_pixels_png)
{
	uint8_t buf[256];
	struct bt_image_info info;
	struct bt_image im;
	size_t n = png_bomb(buf, 100000, 100000);

	CHECK_EQ(bt_image_probe(buf, n, 100000000, &info), BT_ERR_TOOBIG);
	CHECK_STR(bt_errmsg(),
		  "image is 100000x100000 pixels, over the limit of 100000000 (--max-pixels)");
	CHECK_EQ(bt_image_decode(buf, n, 100000000, 0, &im), BT_ERR_TOOBIG);
	CHECK(im.pixels == NULL);
	CHECK_EQ(bt_image_probe(buf, n, 0, &info), BT_OK);
	CHECK_EQ(info.width, 100000);
	CHECK_EQ(info.height, 100000);
	CHECK_EQ(info.channels, 3);
}

TEST(test_max_pixels_jpeg)
{
	struct bt_image_info info;
	struct bt_image im;
	uint8_t *px = pattern(8, 8, 1), *j;
	size_t n;

	j = enc_jpeg(8, 8, 1, px, 50, &n);
	CHECK(j);
	CHECK(patch_sof(j, n, 60000, 60000));
	CHECK_EQ(bt_image_probe(j, n, 100000000, &info), BT_ERR_TOOBIG);
	CHECK_STR(bt_errmsg(),
		  "image is 60000x60000 pixels, over the limit of 100000000 (--max-pixels)");
	CHECK_EQ(bt_image_decode(j, n, 100000000, 0, &im), BT_ERR_TOOBIG);
	CHECK(im.pixels == NULL);
	CHECK_EQ(bt_image_probe(j, n, 0, &info), BT_OK);
	CHECK_EQ(info.width, 60000);
	CHECK_EQ(info.height, 60000);
	/* Without a limit the decoder tries, and finds the data missing (scaled 1/8 to keep
	 * the allocation small). */
	CHECK_EQ(bt_image_decode(j, n, 0, 100, &im), BT_ERR_IMAGE);
	free(j);
	free(px);
}

/* ---- decoding ---- */

TEST(test_decode_grey_jpeg)
{
	uint8_t *px = malloc(24 * 16), *j;
	struct bt_image im;
	size_t n, i;

	memset(px, 100, 24 * 16);
	j = enc_jpeg(24, 16, 1, px, 95, &n);
	CHECK(j);
	CHECK_EQ(bt_image_decode(j, n, 0, 0, &im), BT_OK);
	CHECK_EQ(im.width, 24);
	CHECK_EQ(im.height, 16);
	CHECK_EQ(im.channels, 3);
	for (i = 0; i < 24 * 16 * 3; i++)
		CHECK(abs(im.pixels[i] - 100) <= 1);
	bt_image_free(&im);
	CHECK(im.pixels == NULL);
	free(j);
	free(px);
}

TEST(test_decode_cmyk_jpeg)
{
	/* The same colour stored both ways: inverted with an Adobe marker (as Photoshop
	 * does) and plain without one. Expected RGB (200, 100, 50). */
	static const uint8_t inverted[4] = { 255, 128, 64, 200 };
	static const uint8_t plain[4] = { 0, 127, 191, 55 };
	static const int want[3] = { 200, 100, 50 };
	struct bt_image im;
	struct bt_image_info info;
	uint8_t *j;
	size_t n, i;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		j = enc_cmyk(32, 24, pass ? plain : inverted, !pass, &n);
		CHECK_EQ(bt_image_probe(j, n, 0, &info), BT_OK);
		CHECK_EQ(info.cmyk, 1);
		CHECK_EQ(bt_image_decode(j, n, 0, 0, &im), BT_OK);
		CHECK_EQ(im.width, 32);
		CHECK_EQ(im.height, 24);
		CHECK_EQ(im.channels, 3);
		for (i = 0; i < 32 * 24; i++) {
			CHECK(abs(im.pixels[i * 3 + 0] - want[0]) <= 3);
			CHECK(abs(im.pixels[i * 3 + 1] - want[1]) <= 3);
			CHECK(abs(im.pixels[i * 3 + 2] - want[2]) <= 3);
		}
		bt_image_free(&im);
		/* DCT scaling works on CMYK too. */
		CHECK_EQ(bt_image_decode(j, n, 0, 3, &im), BT_OK);
		CHECK_EQ(im.width, 4);
		CHECK_EQ(im.height, 3);
		CHECK(abs(im.pixels[0] - want[0]) <= 3);
		bt_image_free(&im);
		free(j);
	}
}

TEST(test_dct_scaling)
{
	static const struct { uint32_t min_side, w, h; } cases[] = {
		{ 0, 100, 60 }, { 1, 13, 8 }, { 8, 13, 8 }, { 9, 25, 15 }, { 15, 25, 15 },
		{ 16, 50, 30 }, { 30, 50, 30 }, { 31, 100, 60 }, { 60, 100, 60 },
		{ 1000, 100, 60 },
	};
	uint8_t *px = pattern(100, 60, 3), *j;
	struct bt_image im;
	size_t n, i;

	j = enc_jpeg(100, 60, 3, px, 90, &n);
	CHECK(j);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK_EQ(bt_image_decode(j, n, 0, cases[i].min_side, &im), BT_OK);
		if (im.width != cases[i].w || im.height != cases[i].h)
			fprintf(stderr, "min_side %u: got %ux%u\n", cases[i].min_side,
				im.width, im.height);
		CHECK_EQ(im.width, cases[i].w);
		CHECK_EQ(im.height, cases[i].h);
		bt_image_free(&im);
	}
	free(j);
	free(px);

	/* Portrait: the shorter side is the width. */
	px = pattern(33, 70, 3);
	j = enc_jpeg(33, 70, 3, px, 90, &n);
	CHECK_EQ(bt_image_decode(j, n, 0, 9, &im), BT_OK);
	CHECK_EQ(im.width, 9);  /* ceil(33/4) */
	CHECK_EQ(im.height, 18); /* ceil(70/4) */
	bt_image_free(&im);
	free(j);
	free(px);
}

TEST(test_png_roundtrip)
{
	struct bt_image im = { 29, 17, 0, NULL }, out;
	uint8_t *p;
	size_t n, i, npx = 29 * 17;
	int c, k;

	for (c = 1; c <= 4; c++) {
		if (c == 2)
			continue;
		im.channels = c;
		im.pixels = noise(npx * c, (uint32_t)c);
		CHECK_EQ(bt_image_encode_png(&im, &p, &n), BT_OK);
		CHECK_EQ(bt_image_decode(p, n, 0, 0, &out), BT_OK);
		CHECK_EQ(out.width, 29);
		CHECK_EQ(out.height, 17);
		CHECK_EQ(out.channels, 3);
		for (i = 0; i < npx; i++)
			for (k = 0; k < 3; k++)
				CHECK_EQ(out.pixels[i * 3 + k], im.pixels[i * c + (c == 1 ? 0 : k)]);
		/* min_side has no effect on PNG. */
		bt_image_free(&out);
		CHECK_EQ(bt_image_decode(p, n, 0, 5, &out), BT_OK);
		CHECK_EQ(out.width, 29);
		bt_image_free(&out);
		free(p);
		free(im.pixels);
	}
	im.channels = 2;
	CHECK_EQ(bt_image_encode_png(&im, &p, &n), BT_ERR_INVALID);
}

TEST(test_png_kinds)
{
	enum { W = 11, H = 9 };
	uint8_t rgb[W * H * 3], rows[W * H * 8];
	png_color pal[16];
	static const png_byte alpha[4] = { 0, 64, 128, 200 }; /* tRNS: dropped on decode */
	struct bt_image im;
	uint8_t *p;
	size_t n, i;
	int k, interlace;

	for (i = 0; i < 16; i++) {
		pal[i].red = (uint8_t)(i * 16);
		pal[i].green = (uint8_t)(255 - i * 16);
		pal[i].blue = (uint8_t)(i * 7);
	}
	for (interlace = 0; interlace < 2; interlace++) {
		/* 16-bit RGBA: high bytes kept, alpha dropped. */
		uint8_t *src = noise(W * H * 3, 99);
		for (i = 0; i < W * H; i++) {
			for (k = 0; k < 3; k++) {
				rows[i * 8 + k * 2] = src[i * 3 + k];
				rows[i * 8 + k * 2 + 1] = (uint8_t)(i * 13);
			}
			rows[i * 8 + 6] = (uint8_t)i;
			rows[i * 8 + 7] = 0;
		}
		p = enc_png_raw(W, H, 16, PNG_COLOR_TYPE_RGB_ALPHA, interlace, NULL, 0, NULL, 0,
				rows, W * 8, &n);
		CHECK_EQ(bt_image_decode(p, n, 0, 0, &im), BT_OK);
		CHECK_EQ(memcmp(im.pixels, src, W * H * 3), 0);
		bt_image_free(&im);
		free(p);
		free(src);

		/* 4-bit palette with transparency. */
		for (i = 0; i < (size_t)H * 6; i++)
			rows[i] = (uint8_t)(i * 37);
		p = enc_png_raw(W, H, 4, PNG_COLOR_TYPE_PALETTE, interlace, pal, 16, alpha, 4, rows,
				6, &n);
		CHECK_EQ(bt_image_decode(p, n, 0, 0, &im), BT_OK);
		for (i = 0; i < W * H; i++) {
			size_t y = i / W, x = i % W;
			int idx = (rows[y * 6 + x / 2] >> (x % 2 ? 0 : 4)) & 15;
			rgb[i * 3 + 0] = pal[idx].red;
			rgb[i * 3 + 1] = pal[idx].green;
			rgb[i * 3 + 2] = pal[idx].blue;
		}
		CHECK_EQ(memcmp(im.pixels, rgb, W * H * 3), 0);
		bt_image_free(&im);
		free(p);

		/* 1-bit grey. */
		for (i = 0; i < (size_t)H * 2; i++)
			rows[i] = (uint8_t)(0xa5 ^ (i * 29));
		/* With a tRNS colour key, which is ignored. */
		p = enc_png_raw(W, H, 1, PNG_COLOR_TYPE_GRAY, interlace, NULL, 0, NULL, 1, rows, 2,
				&n);
		CHECK_EQ(bt_image_decode(p, n, 0, 0, &im), BT_OK);
		for (i = 0; i < W * H; i++) {
			size_t y = i / W, x = i % W;
			int v = (rows[y * 2 + x / 8] >> (7 - x % 8)) & 1 ? 255 : 0;
			CHECK_EQ(im.pixels[i * 3], v);
			CHECK_EQ(im.pixels[i * 3 + 1], v);
			CHECK_EQ(im.pixels[i * 3 + 2], v);
		}
		bt_image_free(&im);
		free(p);

		/* 8-bit grey+alpha. */
		for (i = 0; i < W * H; i++) {
			rows[i * 2] = (uint8_t)(i * 3);
			rows[i * 2 + 1] = (uint8_t)(255 - i);
		}
		p = enc_png_raw(W, H, 8, PNG_COLOR_TYPE_GRAY_ALPHA, interlace, NULL, 0, NULL, 0,
				rows, W * 2, &n);
		{
			struct bt_image_info info;
			CHECK_EQ(bt_image_probe(p, n, 0, &info), BT_OK);
			CHECK_EQ(info.channels, 1);
		}
		CHECK_EQ(bt_image_decode(p, n, 0, 0, &im), BT_OK);
		for (i = 0; i < W * H; i++)
			for (k = 0; k < 3; k++)
				CHECK_EQ(im.pixels[i * 3 + k], (uint8_t)(i * 3));
		bt_image_free(&im);
		free(p);
	}
}

TEST(test_jpeg_roundtrip)
{
	uint8_t *px = pattern(96, 64, 3), *j;
	struct bt_image im;
	size_t n, i;
	double err = 0;

	j = enc_jpeg(96, 64, 3, px, 95, &n);
	CHECK(j);
	CHECK_EQ(bt_image_decode(j, n, 0, 0, &im), BT_OK);
	CHECK_EQ(im.width, 96);
	CHECK_EQ(im.height, 64);
	for (i = 0; i < 96 * 64 * 3; i++)
		err += abs(im.pixels[i] - px[i]);
	CHECK(err / (96 * 64 * 3) < 2.0);
	CHECK(maxdiff(im.pixels, px, 96 * 64 * 3) < 24);
	bt_image_free(&im);
	free(j);

	CHECK_EQ(bt_image_encode_jpeg(&(struct bt_image){ 96, 64, 4, px }, 90, &j, &n),
		 BT_ERR_INVALID);
	CHECK_EQ(bt_image_encode_jpeg(&(struct bt_image){ 96, 64, 3, px }, 0, &j, &n),
		 BT_ERR_INVALID);
	CHECK_EQ(bt_image_encode_jpeg(&(struct bt_image){ 96, 64, 3, px }, 101, &j, &n),
		 BT_ERR_INVALID);
	free(px);
}

/* ---- resizing ---- */

static double tri(double x)
{
	x = x < 0 ? -x : x;
	return x < 1 ? 1 - x : 0;
}

/* One axis of the filter from its definition: output i is centred at (i + 0.5) * scale
 * in input coordinates; input j at j + 0.5; the triangle is widened by the shrink factor;
 * weights are normalised over the taps inside the image. */
static void ref_axis(const double *in, size_t in_n, size_t in_step, double *out, size_t out_n,
		     size_t out_step)
{
	double scale = (double)in_n / out_n, fs = scale > 1 ? scale : 1;
	size_t i, j;
	for (i = 0; i < out_n; i++) {
		double center = (i + 0.5) * scale, sum = 0, wsum = 0;
		for (j = 0; j < in_n; j++) {
			double w = tri((j + 0.5 - center) / fs);
			sum += w * in[j * in_step];
			wsum += w;
		}
		out[i * out_step] = sum / wsum;
	}
}

static uint8_t *ref_resize(const uint8_t *src, uint32_t w, uint32_t h, int c, uint32_t ow,
			   uint32_t oh)
{
	double *a = malloc(sizeof *a * w * h * c), *b = malloc(sizeof *b * ow * h * c);
	double *d = malloc(sizeof *d * ow * oh * c);
	uint8_t *out = malloc((size_t)ow * oh * c);
	size_t i;
	uint32_t y, x;
	int k;

	for (i = 0; i < (size_t)w * h * c; i++)
		a[i] = src[i];
	for (y = 0; y < h; y++)
		for (k = 0; k < c; k++)
			ref_axis(a + (size_t)y * w * c + k, w, c, b + (size_t)y * ow * c + k, ow, c);
	for (x = 0; x < ow; x++)
		for (k = 0; k < c; k++)
			ref_axis(b + (size_t)x * c + k, h, (size_t)ow * c, d + (size_t)x * c + k,
				 oh, (size_t)ow * c);
	for (i = 0; i < (size_t)ow * oh * c; i++) {
		double v = d[i] + 0.5;
		out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
	free(a);
	free(b);
	free(d);
	return out;
}

TEST(test_resize_identity)
{
	struct bt_image src = { 31, 17, 3, NULL }, dst;
	src.pixels = noise(31 * 17 * 3, 5);
	CHECK_EQ(bt_image_resize(&src, 31, 17, &dst), BT_OK);
	CHECK_EQ(dst.width, 31);
	CHECK_EQ(dst.height, 17);
	CHECK_EQ(dst.channels, 3);
	CHECK(dst.pixels != src.pixels);
	CHECK_EQ(memcmp(dst.pixels, src.pixels, 31 * 17 * 3), 0);
	bt_image_free(&dst);
	free(src.pixels);
}

TEST(test_resize_constant)
{
	static const uint32_t sizes[][2] = { { 7, 5 }, { 64, 64 }, { 200, 3 }, { 1, 1 },
					     { 13, 101 } };
	struct bt_image src = { 50, 40, 4, NULL }, dst;
	size_t i, j;

	src.pixels = malloc(50 * 40 * 4);
	for (i = 0; i < 50 * 40; i++)
		memcpy(src.pixels + i * 4, "\x11\x80\xfe\x00", 4);
	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		CHECK_EQ(bt_image_resize(&src, sizes[i][0], sizes[i][1], &dst), BT_OK);
		for (j = 0; j < (size_t)sizes[i][0] * sizes[i][1]; j++)
			CHECK_EQ(memcmp(dst.pixels + j * 4, "\x11\x80\xfe\x00", 4), 0);
		bt_image_free(&dst);
	}
	free(src.pixels);
}

TEST(test_resize_antialias)
{
	enum { N = 64 };
	struct bt_image src = { N, N, 1, NULL }, dst;
	uint32_t x, y;
	double sum = 0;

	src.pixels = malloc(N * N);
	for (y = 0; y < N; y++)
		for (x = 0; x < N; x++)
			src.pixels[y * N + x] = (x + y) % 2 ? 255 : 0;
	CHECK_EQ(bt_image_resize(&src, N / 2, N / 2, &dst), BT_OK);
	for (y = 0; y < N / 2; y++) {
		for (x = 0; x < N / 2; x++) {
			int v = dst.pixels[y * (N / 2) + x];
			sum += v;
			/* Away from the edges, where the filter is cut short, all mid-grey. */
			if (x > 0 && y > 0 && x < N / 2 - 1 && y < N / 2 - 1)
				CHECK(v >= 126 && v <= 129);
		}
	}
	CHECK(fabs(sum / (N * N / 4) - 127.5) < 3);
	bt_image_free(&dst);
	free(src.pixels);
}

TEST(test_resize_reference)
{
	static const uint32_t cases[][5] = {
		/* w, h, channels, ow, oh */
		{ 40, 30, 3, 20, 15 },   /* 2x down */
		{ 97, 61, 3, 224, 141 }, /* up */
		{ 300, 200, 1, 17, 11 }, /* strong, non-integer shrink */
		{ 64, 48, 4, 63, 47 },   /* just below 1 */
		{ 37, 53, 2, 37, 20 },   /* vertical only */
		{ 37, 53, 3, 80, 53 },   /* horizontal only */
		{ 5, 400, 3, 3, 7 },
		{ 1, 1, 3, 9, 4 },
		{ 9, 4, 3, 1, 1 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t w = cases[i][0], h = cases[i][1], ow = cases[i][3], oh = cases[i][4];
		int c = (int)cases[i][2], d;
		struct bt_image src = { w, h, c, NULL }, dst;
		uint8_t *ref;

		/* Smooth plus noise, so both the filter shape and the rounding matter. */
		src.pixels = pattern(w, h, c);
		{
			uint8_t *nz = noise((size_t)w * h * c, (uint32_t)i);
			size_t j;
			for (j = 0; j < (size_t)w * h * c; j++)
				src.pixels[j] = (uint8_t)(src.pixels[j] / 2 + nz[j] / 2);
			free(nz);
		}
		CHECK_EQ(bt_image_resize(&src, ow, oh, &dst), BT_OK);
		CHECK_EQ(dst.width, ow);
		CHECK_EQ(dst.height, oh);
		CHECK_EQ(dst.channels, c);
		ref = ref_resize(src.pixels, w, h, c, ow, oh);
		d = maxdiff(dst.pixels, ref, (size_t)ow * oh * c);
		if (d > 1)
			fprintf(stderr, "case %zu: max difference %d\n", i, d);
		CHECK(d <= 1);
		free(ref);
		bt_image_free(&dst);
		free(src.pixels);
	}
}

TEST(test_resize_in_place_and_errors)
{
	struct bt_image im = { 20, 10, 3, NULL }, dst;
	im.pixels = pattern(20, 10, 3);
	CHECK_EQ(bt_image_resize(&im, 10, 5, &im), BT_OK);
	CHECK_EQ(im.width, 10);
	CHECK_EQ(im.height, 5);
	CHECK_EQ(bt_image_resize(&im, 0, 5, &dst), BT_ERR_INVALID);
	im.channels = 5;
	CHECK_EQ(bt_image_resize(&im, 3, 3, &dst), BT_ERR_INVALID);
	im.channels = 3;
	bt_image_free(&im);
}

/* Outputs of Pillow 9.4's Image.resize(size, Image.BILINEAR) on these inputs. The
 * resampler copies PIL's fixed-point arithmetic, so they must match exactly (a wider check
 * over 300 random sizes and channel counts matched bit for bit when this was written). */
TEST(test_resize_pil_values)
{
	static const uint8_t want_row[4] = { 10, 32, 58, 80 };
	static const uint8_t want_down[6] = { 46, 125, 204, 52, 131, 210 };
	static const uint8_t want_up[88] = {
		11, 28, 51, 75, 98, 122, 146, 169, 193, 216, 233,
		12, 29, 52, 76, 99, 123, 147, 170, 194, 217, 234,
		14, 31, 54, 78, 101, 125, 149, 172, 196, 219, 236,
		16, 33, 56, 80, 103, 127, 151, 174, 198, 221, 238,
		18, 35, 58, 82, 105, 129, 153, 176, 200, 223, 240,
		20, 37, 60, 84, 107, 131, 155, 178, 202, 225, 242,
		22, 39, 62, 86, 109, 133, 157, 180, 204, 227, 244,
		23, 40, 63, 87, 110, 134, 158, 181, 205, 228, 245,
	};
	uint8_t row[10], img[7 * 5];
	struct bt_image src = { 10, 1, 1, row }, dst;
	int i;

	for (i = 0; i < 10; i++)
		row[i] = (uint8_t)(i * 10);
	CHECK_EQ(bt_image_resize(&src, 4, 1, &dst), BT_OK);
	CHECK_EQ(memcmp(dst.pixels, want_row, 4), 0);
	bt_image_free(&dst);

	for (i = 0; i < 7 * 5; i++)
		img[i] = (uint8_t)((i * 37 + 11) % 256);
	src = (struct bt_image){ 7, 5, 1, img };
	CHECK_EQ(bt_image_resize(&src, 3, 2, &dst), BT_OK);
	CHECK_EQ(memcmp(dst.pixels, want_down, 6), 0);
	bt_image_free(&dst);
	CHECK_EQ(bt_image_resize(&src, 11, 8, &dst), BT_OK);
	CHECK_EQ(memcmp(dst.pixels, want_up, 88), 0);
	bt_image_free(&dst);
}

TEST(test_size_shorter)
{
	uint32_t w, h;
	bt_image_size_shorter(640, 480, 256, &w, &h);
	CHECK_EQ(w, 341);
	CHECK_EQ(h, 256);
	bt_image_size_shorter(480, 640, 256, &w, &h);
	CHECK_EQ(w, 256);
	CHECK_EQ(h, 341);
	bt_image_size_shorter(500, 500, 224, &w, &h);
	CHECK_EQ(w, 224);
	CHECK_EQ(h, 224);
	bt_image_size_shorter(3, 2, 3, &w, &h); /* 4.5 rounds up */
	CHECK_EQ(w, 5);
	CHECK_EQ(h, 3);
	bt_image_size_shorter(10000, 1, 1, &w, &h);
	CHECK_EQ(w, 10000);
	CHECK_EQ(h, 1);
	bt_image_size_shorter(1, 1000, 1, &w, &h);
	CHECK_EQ(w, 1);
	CHECK_EQ(h, 1000);
	bt_image_size_shorter(1000, 3, 1, &w, &h);
	CHECK_EQ(w, 333);
	CHECK_EQ(h, 1);
}

/* Pillow 9.4's Image.resize(size, BILINEAR, box=...) on the 7x5 image of
 * test_resize_pil_values. The boxes are exact in float32, which PIL stores them in. */
TEST(test_resize_box_pil_values)
{
	static const uint8_t want_a[6] = { 82, 137, 198, 88, 143, 204 };
	static const uint8_t want_b[30] = {
		24, 45, 67, 89, 110, 132, 26, 47, 69, 91, 112, 134, 27, 48, 70,
		92, 113, 135, 29, 50, 72, 94, 115, 137, 30, 51, 73, 95, 116, 138,
	};
	static const uint8_t want_c[12] = { 95, 141, 185, 228, 99, 145, 189, 232, 102, 148, 192, 235 };
	uint8_t img[7 * 5];
	struct bt_image src = { 7, 5, 1, img }, dst;
	int i;

	for (i = 0; i < 7 * 5; i++)
		img[i] = (uint8_t)((i * 37 + 11) % 256);
	CHECK_EQ(bt_image_resize_box(&src, 1.5, 0.25, 4.75, 4.5, 3, 2, &dst), BT_OK);
	CHECK_EQ(memcmp(dst.pixels, want_a, sizeof want_a), 0);
	bt_image_free(&dst);
	CHECK_EQ(bt_image_resize_box(&src, 0.5, 1.0, 3.5, 2.5, 6, 5, &dst), BT_OK);
	CHECK_EQ(memcmp(dst.pixels, want_b, sizeof want_b), 0);
	bt_image_free(&dst);
	CHECK_EQ(bt_image_resize_box(&src, 2, 1, 5, 4, 4, 3, &dst), BT_OK);
	CHECK_EQ(memcmp(dst.pixels, want_c, sizeof want_c), 0);
	bt_image_free(&dst);
	/* The box must lie inside the image. */
	CHECK_EQ(bt_image_resize_box(&src, -0.5, 0, 3, 3, 2, 2, &dst), BT_ERR_INVALID);
	CHECK_EQ(bt_image_resize_box(&src, 5, 0, 2.5, 3, 2, 2, &dst), BT_ERR_INVALID);
	CHECK_EQ(bt_image_resize_box(&src, 0, 0, 0, 3, 2, 2, &dst), BT_ERR_INVALID);
}

/* Resizing a whole image and cutting out a part equals one resize of the matching box:
 * torchvision's Resize(256) + CenterCrop(224) done as one pass. */
TEST(test_resize_box_is_resize_then_crop)
{
	static const uint32_t cases[][6] = {
		/* w, h, resized w, h, crop x, y (crop 224 x 224) */
		{ 500, 375, 341, 256, 58, 16 },
		{ 375, 500, 256, 341, 16, 58 },
		{ 333, 251, 339, 256, 57, 16 },
		{ 120, 90, 341, 256, 58, 16 }, /* upscaling */
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t w = cases[i][0], h = cases[i][1], rw = cases[i][2], rh = cases[i][3];
		uint32_t cx = cases[i][4], cy = cases[i][5], y;
		struct bt_image src = { w, h, 3, NULL }, full, box;
		src.pixels = noise((size_t)w * h * 3, (uint32_t)i + 40);
		CHECK_EQ(bt_image_resize(&src, rw, rh, &full), BT_OK);
		CHECK_EQ(bt_image_resize_box(&src, (double)cx * w / rw, (double)cy * h / rh,
					     224.0 * w / rw, 224.0 * h / rh, 224, 224, &box),
			 BT_OK);
		for (y = 0; y < 224; y++)
			CHECK_EQ(memcmp(box.pixels + (size_t)y * 224 * 3,
					full.pixels + ((size_t)(cy + y) * rw + cx) * 3, 224 * 3),
				 0);
		/* The whole image as the box is bt_image_resize. */
		bt_image_free(&box);
		CHECK_EQ(bt_image_resize_box(&src, 0, 0, w, h, rw, rh, &box), BT_OK);
		CHECK_EQ(memcmp(box.pixels, full.pixels, (size_t)rw * rh * 3), 0);
		bt_image_free(&box);
		bt_image_free(&full);
		free(src.pixels);
	}
}

TEST(test_taps)
{
	static const double cases[][5] = {
		/* in0, in1, lo, hi, out */
		{ 0, 500, 0, 500, 224 },
		{ 85.04, 413.49, 0, 500, 224 },
		{ 20, 267, 20, 267, 224 },
		{ 10, 12, 10, 12, 224 },       /* strong upscale */
		{ 0.5, 999.5, 0, 1000, 7 },    /* strong downscale */
		{ 3, 4, 0, 9, 1 },
	};
	struct bt_taps t = { 0 }, u = { 0 };
	size_t i;
	uint32_t k;
	int j;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int32_t lo = (int32_t)cases[i][2], hi = (int32_t)cases[i][3];
		uint32_t out = (uint32_t)cases[i][4];
		CHECK_EQ(bt_taps_init(&t, cases[i][0], cases[i][1], lo, hi, out), BT_OK);
		CHECK(t.out == out && t.n >= 1);
		CHECK(lo <= t.first && t.first < t.last && t.last <= hi);
		for (k = 0; k < out; k++) {
			const int32_t *c = t.coef + (size_t)k * t.n;
			int64_t sum = 0;
			/* One window length for all, inside [first, last); the weights sum to 1
			 * up to the rounding of each. */
			CHECK(t.start[k] >= t.first && t.start[k] + t.n <= t.last);
			for (j = 0; j < t.n; j++) {
				CHECK(c[j] >= 0);
				sum += c[j];
			}
			CHECK(llabs(sum - (1 << BT_RESAMPLE_BITS)) <= t.n);
		}
		/* Shifting everything by whole pixels shifts the windows and nothing else. */
		CHECK_EQ(bt_taps_init(&u, cases[i][0] + 7, cases[i][1] + 7, lo + 7, hi + 7, out),
			 BT_OK);
		CHECK(u.n == t.n && u.first == t.first + 7 && u.last == t.last + 7);
		CHECK_EQ(memcmp(u.coef, t.coef, (size_t)out * t.n * sizeof *t.coef), 0);
		for (k = 0; k < out; k++)
			CHECK_EQ(u.start[k], t.start[k] + 7);
	}
	/* The same arguments again return at once with the same weights. */
	CHECK_EQ(bt_taps_init(&t, 1, 2, 0, 3, 5), BT_OK);
	CHECK_EQ(bt_taps_init(&t, 1, 2, 0, 3, 5), BT_OK);
	CHECK_EQ(t.out, 5);
	CHECK_EQ(bt_taps_init(&t, 2, 1, 0, 3, 5), BT_ERR_INVALID);
	CHECK_EQ(bt_taps_init(&t, 1, 2, 3, 3, 5), BT_ERR_INVALID);
	CHECK_EQ(bt_taps_init(&t, 1, 2, 0, 3, 0), BT_ERR_INVALID);
	bt_taps_free(&t);
	bt_taps_free(&u);
}

/* The AVX2 kernels give the bytes of the portable ones: random sizes, boxes, clamp ranges,
 * channel counts, flips, source offsets; sources allocated to the byte, so that valgrind
 * sees any read past them. */
TEST(test_resample_simd)
{
	uint32_t seed = 1;
	int was = bt_simd(-1), it;

	for (it = 0; it < 400; it++) {
		uint32_t w, h, out, rows, y;
		int c, flip;
		double x0, x1, y0, y1;
		int32_t lo, hi;
		struct bt_taps th = { 0 }, tv = { 0 };
		uint8_t *src, *a, *b;
		int32_t *aa, *ab;
		size_t rowlen;

#define RND(n) (seed = seed * 1664525u + 1013904223u, (seed >> 8) % (n))
		w = 1 + RND(300);
		h = 1 + RND(60);
		out = 1 + RND(260);
		c = RND(2) ? 3 : 1 + (int)RND(4);
		flip = (int)RND(2);
		x0 = RND(1000) / 1000.0 * w * 0.6;
		x1 = x0 + (w - x0) * (0.02 + RND(980) / 1000.0);
		lo = RND(2) ? 0 : (int32_t)x0;
		hi = RND(2) ? (int32_t)w : (int32_t)ceil(x1);
		if (hi > (int32_t)w)
			hi = (int32_t)w;
		src = noise((size_t)w * h * c, seed);
		CHECK_EQ(bt_taps_init(&th, x0, x1, lo, hi, out), BT_OK);
		rowlen = (size_t)out * c;
		a = malloc(rowlen * h);
		b = malloc(rowlen * h);
		/* The source's first column is input index lo: pass the clamp range only. */
		bt_simd(1);
		bt_resample_h(src + lo * c, (size_t)w * c, lo, h, c, &th, flip, a);
		bt_simd(0);
		bt_resample_h(src + lo * c, (size_t)w * c, lo, h, c, &th, flip, b);
		bt_simd(was);
		CHECK_EQ(memcmp(a, b, rowlen * h), 0);
		y0 = RND(1000) / 1000.0 * h * 0.5;
		y1 = y0 + (h - y0) * (0.02 + RND(980) / 1000.0);
		CHECK_EQ(bt_taps_init(&tv, y0, y1, 0, (int32_t)h, 1 + RND(90)), BT_OK);
		rows = (uint32_t)(tv.last - tv.first);
		aa = malloc(rowlen * sizeof *aa);
		ab = malloc(rowlen * sizeof *ab);
		for (y = 0; y < tv.out; y++) {
			const uint8_t *m = a + (size_t)tv.first * rowlen;
			bt_simd(1);
			bt_resample_v_row(m, rowlen, tv.first, &tv, y, aa);
			bt_simd(0);
			bt_resample_v_row(m, rowlen, tv.first, &tv, y, ab);
			bt_simd(was);
			CHECK_EQ(memcmp(aa, ab, rowlen * sizeof *aa), 0);
		}
		(void)rows;
		free(aa);
		free(ab);
		free(a);
		free(b);
		free(src);
		bt_taps_free(&th);
		bt_taps_free(&tv);
#undef RND
	}
}

/* A JPEG with the given sampling factors (h, v of the luma), progressive or not, or grey,
 * written with libjpeg directly. */
static uint8_t *enc_jpeg_kind(uint32_t w, uint32_t h, const uint8_t *px, int hs, int vs,
			      int progressive, int grey, size_t *n)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char *buf = NULL;
	unsigned long len = 0;
	JSAMPROW r;

	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &buf, &len);
	ci.image_width = w;
	ci.image_height = h;
	ci.input_components = grey ? 1 : 3;
	ci.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 90, TRUE);
	if (!grey) {
		ci.comp_info[0].h_samp_factor = hs;
		ci.comp_info[0].v_samp_factor = vs;
	}
	if (progressive)
		jpeg_simple_progression(&ci);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < h) {
		r = (JSAMPROW)px + (size_t)ci.next_scanline * w * (grey ? 1 : 3);
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	*n = len;
	return buf;
}

/* Region decoding gives exactly the pixels of a full decode (at the same DCT scale), for
 * every chroma subsampling, progressive and grey JPEGs, at random regions. (Under valgrind,
 * libjpeg-turbo's SIMD h1v2 upsampler makes the 4:4:0 case report uninitialised values,
 * for any decode; JSIMD_FORCENONE=1 silences it and gives the same pixels.) */
TEST(test_jpeg_region)
{
	static const int kinds[][4] = {
		/* h, v sampling, progressive, grey */
		{ 2, 2, 0, 0 }, { 2, 1, 0, 0 }, { 1, 1, 0, 0 }, { 1, 2, 0, 0 },
		{ 2, 2, 1, 0 }, { 1, 1, 0, 1 },
	};
	const uint32_t W = 203, H = 149;
	bt_jpeg_decoder *d;
	uint8_t *px = noise(W * H * 3, 31), *pat = pattern(W, H, 3), *full = NULL, *reg = NULL;
	size_t fcap = 0, rcap = 0, k, j;
	uint32_t seed = 5;
	int denom, t;

	for (j = 0; j < (size_t)W * H * 3; j++)
		px[j] = (uint8_t)(pat[j] / 2 + px[j] / 4);
	CHECK_EQ(bt_jpeg_decoder_new(&d), BT_OK);
	for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		size_t n;
		uint8_t *jpg = enc_jpeg_kind(W, H, px, kinds[k][0], kinds[k][1], kinds[k][2],
					     kinds[k][3], &n);
		struct bt_image ref;
		/* The decoder's full decode is bt_image_decode's. */
		struct bt_jpeg_region f = { W, H, 1, 0, 0, W, H, 0, 0, 0, 0 };
		CHECK_EQ(bt_image_decode(jpg, n, 0, 0, &ref), BT_OK);
		CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &f, &full, &fcap), BT_OK);
		CHECK(f.ox == 0 && f.oy == 0 && f.ow == W && f.oh == H);
		CHECK_EQ(memcmp(ref.pixels, full, (size_t)W * H * 3), 0);
		bt_image_free(&ref);
		for (denom = 1; denom <= 8; denom *= 2) {
			uint32_t sw = bt_jpeg_scaled(W, denom), sh = bt_jpeg_scaled(H, denom);
			f.denom = denom;
			f.x1 = sw;
			f.y1 = sh;
			CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &f, &full, &fcap), BT_OK);
			CHECK(f.ow == sw && f.oh == sh);
			for (t = 0; t < 60; t++) {
				struct bt_jpeg_region r = f;
				uint32_t y;
#define RND(n) (seed = seed * 1664525u + 1013904223u, (seed >> 8) % (n))
				r.x0 = RND(sw);
				r.x1 = r.x0 + 1 + RND(sw - r.x0);
				r.y0 = RND(sh);
				r.y1 = r.y0 + 1 + RND(sh - r.y0);
#undef RND
				CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &r, &reg, &rcap), BT_OK);
				CHECK(r.ox <= r.x0 && r.ox + r.ow >= r.x1 && r.ow <= sw);
				CHECK(r.oy <= r.y0 && r.oy + r.oh >= r.y1 && r.oh <= sh);
				for (y = r.y0; y < r.y1; y++)
					CHECK_EQ(memcmp(reg + ((size_t)(y - r.oy) * r.ow + r.x0 - r.ox) * 3,
							full + ((size_t)y * sw + r.x0) * 3,
							(size_t)(r.x1 - r.x0) * 3),
						 0);
			}
		}
		free(jpg);
	}
	free(px);
	free(pat);
	free(full);
	free(reg);
	bt_jpeg_decoder_free(d);
}

TEST(test_jpeg_region_errors)
{
	const uint32_t W = 64, H = 48;
	uint8_t *px = pattern(W, H, 3), *jpg, *buf = NULL;
	struct bt_jpeg_region r = { W, H, 1, 0, 0, W, H, 0, 0, 0, 0 };
	bt_jpeg_decoder *d;
	size_t n, cap = 0;

	jpg = enc_jpeg(W, H, 3, px, 90, &n);
	CHECK(jpg != NULL);
	CHECK_EQ(bt_jpeg_decoder_new(&d), BT_OK);
	r.width = W + 1;
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &r, &buf, &cap), BT_ERR_FORMAT);
	r.width = W;
	r.denom = 3;
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &r, &buf, &cap), BT_ERR_INVALID);
	r.denom = 1;
	r.x1 = W + 1;
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &r, &buf, &cap), BT_ERR_INVALID);
	r.x1 = W;
	r.y0 = H;
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &r, &buf, &cap), BT_ERR_INVALID);
	r.y0 = 0;
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n / 2, &r, &buf, &cap), BT_ERR_IMAGE);
	CHECK_EQ(bt_jpeg_decode_region(d, px, 100, &r, &buf, &cap), BT_ERR_IMAGE);
	/* Usable after errors; only the rows asked for are read, so a cut below them is
	 * not seen. */
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n, &r, &buf, &cap), BT_OK);
	free(jpg);
	free(px);
	px = pattern(W, 8 * H, 3);
	jpg = enc_jpeg(W, 8 * H, 3, px, 90, &n);
	CHECK(jpg != NULL);
	r.height = 8 * H;
	r.y1 = 8;
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n / 2, &r, &buf, &cap), BT_OK);
	r.y1 = 8 * H;
	CHECK_EQ(bt_jpeg_decode_region(d, jpg, n / 2, &r, &buf, &cap), BT_ERR_IMAGE);
	bt_jpeg_decoder_free(d);
	free(buf);
	free(jpg);
	free(px);
}

int main(void)
{
	RUN(test_sniff);
	RUN(test_probe_jpeg);
	RUN(test_probe_png);
	RUN(test_truncated_jpeg);
	RUN(test_truncated_png);
	RUN(test_short_png_data);
	RUN(test_text_bytes);
	RUN(test_max_pixels_png);
	RUN(test_max_pixels_jpeg);
	RUN(test_decode_grey_jpeg);
	RUN(test_decode_cmyk_jpeg);
	RUN(test_dct_scaling);
	RUN(test_png_roundtrip);
	RUN(test_png_kinds);
	RUN(test_jpeg_roundtrip);
	RUN(test_resize_identity);
	RUN(test_resize_constant);
	RUN(test_resize_antialias);
	RUN(test_resize_reference);
	RUN(test_resize_in_place_and_errors);
	RUN(test_resize_pil_values);
	RUN(test_size_shorter);
	RUN(test_resize_box_pil_values);
	RUN(test_resize_box_is_resize_then_crop);
	RUN(test_taps);
	RUN(test_resample_simd);
	RUN(test_jpeg_region);
	RUN(test_jpeg_region_errors);
	return test_summary();
}
