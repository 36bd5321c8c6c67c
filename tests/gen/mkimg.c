/* mkimg.c: makes the JPEG and PNG fixtures that the Bats tests need, so no binary images
 * live in the repository, and reads images back through libbt (info, pixel) so a test can
 * check what a tool wrote. Pictures are deterministic for a given size and seed: smooth
 * gradients with a few soft-edged discs, which compress like photographs rather than noise.
 * JPEGs are written with libjpeg directly (for the grey and Adobe CMYK variants bt never
 * writes itself); PNGs with a small zlib-based writer, independent of the libpng that
 * lib/image.c reads them with. The "bomb" files claim a huge size in an otherwise valid
 * header, to test --max-pixels.
 *
 *   mkimg jpeg OUT W H [--gray|--cmyk] [--quality Q] [--seed S]
 *   mkimg png OUT W H [--channels 1|2|3|4] [--bits 8|16] [--palette] [--seed S]
 *   mkimg png-bomb OUT W H
 *   mkimg jpeg-bomb OUT W H
 *   mkimg info FILE          prints "FORMAT WxH C", FORMAT being jpeg or png
 *   mkimg pixel FILE X Y     prints "R G B" of the decoded pixel
 *
 * OUT or FILE "-" means standard output or input. Failures exit 1, usage errors 2.
 */
#include "bt.h"
#include "image.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <zlib.h>

static const char usage_text[] =
	"usage: mkimg jpeg OUT W H [--gray|--cmyk] [--quality Q] [--seed S]\n"
	"       mkimg png OUT W H [--channels 1|2|3|4] [--bits 8|16] [--palette] [--seed S]\n"
	"       mkimg png-bomb OUT W H\n"
	"       mkimg jpeg-bomb OUT W H\n"
	"       mkimg info FILE\n"
	"       mkimg pixel FILE X Y\n";

static void usage(void)
{
	fputs(usage_text, stderr);
	exit(2);
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("mkimg: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* A whole decimal number in [lo, hi], or a usage error. */
static unsigned long number(const char *s, const char *what, unsigned long lo, unsigned long hi)
{
	char *end;
	unsigned long v;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi) {
		fprintf(stderr, "mkimg: %s must be a number from %lu to %lu, not '%s'\n", what, lo,
			hi, s);
		exit(2);
	}
	return v;
}

/* ---- the picture ---- */

static uint32_t rng_next(uint32_t *s)
{
	/* splitmix32: decent spread from consecutive seeds. */
	uint32_t z = (*s += 0x9e3779b9u);
	z = (z ^ (z >> 16)) * 0x85ebca6bu;
	z = (z ^ (z >> 13)) * 0xc2b2ae35u;
	return z ^ (z >> 16);
}

static double rng_unit(uint32_t *s)
{
	return rng_next(s) / 4294967296.0;
}

static uint8_t *picture(uint32_t w, uint32_t h, uint32_t seed) /* (H,W,3) */
{
	struct { double x, y, r, col[3]; } disc[4];
	double phase, freq, fx, fy;
	uint8_t *p = malloc((size_t)w * h * 3);
	uint32_t x, y, s = seed;
	int i, k;

	if (!p)
		die("out of memory for %ux%u pixels", w, h);
	phase = rng_unit(&s) * 6.2832;
	freq = 2 + rng_unit(&s) * 4;
	for (i = 0; i < 4; i++) {
		disc[i].x = rng_unit(&s) * w;
		disc[i].y = rng_unit(&s) * h;
		disc[i].r = (0.1 + 0.25 * rng_unit(&s)) * (w < h ? w : h) + 1;
		for (k = 0; k < 3; k++)
			disc[i].col[k] = 255 * rng_unit(&s);
	}
	for (y = 0; y < h; y++) {
		fy = h > 1 ? (double)y / (h - 1) : 0;
		for (x = 0; x < w; x++) {
			double c[3], a;
			uint8_t *o = p + ((size_t)y * w + x) * 3;
			fx = w > 1 ? (double)x / (w - 1) : 0;
			c[0] = 255 * fx;
			c[1] = 255 * fy;
			c[2] = 127.5 + 127.5 * sin(phase + freq * (fx + fy));
			for (i = 0; i < 4; i++) {
				double d = hypot(x + 0.5 - disc[i].x, y + 0.5 - disc[i].y);
				/* Two-pixel soft edge, so the picture stays smooth. */
				a = (disc[i].r - d) / 2;
				a = a < 0 ? 0 : a > 1 ? 1 : a;
				for (k = 0; k < 3; k++)
					c[k] = c[k] * (1 - a) + disc[i].col[k] * a;
			}
			for (k = 0; k < 3; k++)
				o[k] = (uint8_t)(c[k] < 0 ? 0 : c[k] > 255 ? 255 : c[k] + 0.5);
		}
	}
	return p;
}

static uint8_t luma(const uint8_t *rgb)
{
	return (uint8_t)((299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2] + 500) / 1000);
}

/* ---- output ---- */

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
	if (!f)
		die("cannot create '%s': %s", path, strerror(errno));
	if (fwrite(p, 1, n, f) != n || fflush(f) != 0)
		die("cannot write '%s': %s", path, strerror(errno));
	if (f != stdout && fclose(f) != 0)
		die("cannot write '%s': %s", path, strerror(errno));
}

static uint8_t *read_file(const char *path, size_t *n)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	uint8_t *p = NULL;
	size_t len = 0, cap = 0, got;

	if (!f)
		die("cannot open '%s': %s", path, strerror(errno));
	do {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536;
			if (!(p = realloc(p, cap)))
				die("out of memory reading '%s'", path);
		}
		got = fread(p + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	if (ferror(f))
		die("cannot read '%s': %s", path, strerror(errno));
	if (f != stdin)
		fclose(f);
	*n = len;
	return p;
}

/* ---- JPEG ---- */

static void jpeg_die(j_common_ptr c)
{
	char msg[JMSG_LENGTH_MAX];
	(*c->err->format_message)(c, msg);
	die("libjpeg: %s", msg);
}

/* in: (H,W,comps) in the colour space given. */
static uint8_t *encode_jpeg(const uint8_t *in, uint32_t w, uint32_t h, int comps,
			    J_COLOR_SPACE cs, int quality, size_t *n)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char *buf = NULL;
	unsigned long len = 0;
	JSAMPROW row;

	ci.err = jpeg_std_error(&jerr);
	jerr.error_exit = jpeg_die;
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &buf, &len);
	ci.image_width = w;
	ci.image_height = h;
	ci.input_components = comps;
	ci.in_color_space = cs;
	jpeg_set_defaults(&ci);
	/* For CMYK input libjpeg writes an Adobe APP14 marker; the data we pass is already
	 * inverted, Photoshop style, which is what that marker tells decoders to expect. */
	jpeg_set_quality(&ci, quality, TRUE);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < h) {
		row = (JSAMPROW)in + (size_t)ci.next_scanline * w * comps;
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	*n = len;
	return buf;
}

static void cmd_jpeg(const char *out, uint32_t w, uint32_t h, int gray, int cmyk, int quality,
		     uint32_t seed)
{
	uint8_t *rgb = picture(w, h, seed), *px = rgb, *jpg;
	size_t i, n, npx = (size_t)w * h;
	int comps = 3;
	J_COLOR_SPACE cs = JCS_RGB;

	if (gray) {
		px = malloc(npx);
		for (i = 0; i < npx; i++)
			px[i] = luma(rgb + i * 3);
		comps = 1;
		cs = JCS_GRAYSCALE;
	} else if (cmyk) {
		px = malloc(npx * 4);
		for (i = 0; i < npx; i++) {
			const uint8_t *c = rgb + i * 3;
			int mx = c[0] > c[1] ? c[0] : c[1], j;
			mx = mx > c[2] ? mx : c[2];
			/* K = 255 - max(R,G,B). Stored inverted (255 - ink), so the stored K is
			 * max(R,G,B) and the stored C is 255 * R / max(R,G,B). */
			for (j = 0; j < 3; j++)
				px[i * 4 + j] = (uint8_t)(mx ? (255 * c[j] + mx / 2) / mx : 0);
			px[i * 4 + 3] = (uint8_t)mx;
		}
		comps = 4;
		cs = JCS_CMYK;
	}
	jpg = encode_jpeg(px, w, h, comps, cs, quality, &n);
	write_file(out, jpg, n);
	free(jpg);
	if (px != rgb)
		free(px);
	free(rgb);
}

/* A real 8x8 JPEG whose SOF is rewritten to claim w x h: the header parses, EOI is there,
 * the entropy data is far too short. */
static void cmd_jpeg_bomb(const char *out, uint32_t w, uint32_t h)
{
	uint8_t grey[64], *jpg;
	size_t n, i = 2;

	memset(grey, 128, sizeof grey);
	jpg = encode_jpeg(grey, 8, 8, 1, JCS_GRAYSCALE, 50, &n);
	while (i + 9 < n && jpg[i] == 0xff) {
		int m = jpg[i + 1];
		if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			jpg[i + 5] = (uint8_t)(h >> 8);
			jpg[i + 6] = (uint8_t)h;
			jpg[i + 7] = (uint8_t)(w >> 8);
			jpg[i + 8] = (uint8_t)w;
			write_file(out, jpg, n);
			free(jpg);
			return;
		}
		i += 2 + ((size_t)jpg[i + 2] << 8 | jpg[i + 3]);
	}
	die("no SOF marker in libjpeg's output");
}

/* ---- PNG ---- */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->cap - b->n < n) {
		while (b->cap - b->n < n)
			b->cap = b->cap ? b->cap * 2 : 4096;
		if (!(b->p = realloc(b->p, b->cap)))
			die("out of memory");
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put32(struct buf *b, uint32_t v)
{
	uint8_t q[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	put(b, q, 4);
}

static void chunk(struct buf *b, const char *type, const uint8_t *data, size_t len)
{
	uint32_t crc = bt_crc32(0, type, 4);
	put32(b, (uint32_t)len);
	put(b, type, 4);
	if (len)
		put(b, data, len);
	put32(b, bt_crc32(crc, data, len));
}

/* raw: the filtered scanlines (each a 0 filter byte and the row), before compression. */
static void write_png(const char *out, uint32_t w, uint32_t h, int depth, int type,
		      const uint8_t *plte, size_t nplte, const uint8_t *raw, size_t nraw)
{
	struct buf b = { 0 };
	uint8_t ihdr[13] = { 0 };
	uLongf zn = compressBound(nraw);
	uint8_t *z = malloc(zn);

	if (!z)
		die("out of memory");
	if (compress2(z, &zn, raw, nraw, Z_DEFAULT_COMPRESSION) != Z_OK)
		die("zlib failed");
	put(&b, "\x89PNG\r\n\x1a\n", 8);
	ihdr[0] = (uint8_t)(w >> 24); ihdr[1] = (uint8_t)(w >> 16);
	ihdr[2] = (uint8_t)(w >> 8); ihdr[3] = (uint8_t)w;
	ihdr[4] = (uint8_t)(h >> 24); ihdr[5] = (uint8_t)(h >> 16);
	ihdr[6] = (uint8_t)(h >> 8); ihdr[7] = (uint8_t)h;
	ihdr[8] = (uint8_t)depth;
	ihdr[9] = (uint8_t)type;
	chunk(&b, "IHDR", ihdr, 13);
	if (plte)
		chunk(&b, "PLTE", plte, nplte);
	chunk(&b, "IDAT", z, zn);
	chunk(&b, "IEND", NULL, 0);
	write_file(out, b.p, b.n);
	free(b.p);
	free(z);
}

/* Levels of the 6x6x6 palette cube. */
static int cube(int v)
{
	return (v * 5 + 127) / 255;
}

static void cmd_png(const char *out, uint32_t w, uint32_t h, int channels, int bits,
		    int palette, uint32_t seed)
{
	static const int types[] = { 0, 0, 4, 2, 6 };
	uint8_t *rgb = picture(w, h, seed), *raw, plte[216 * 3];
	int bytes = bits / 8, spp = palette ? 1 : channels, i, k;
	size_t rowlen = 1 + (size_t)w * spp * bytes, nraw = rowlen * h;
	uint32_t x, y;

	raw = malloc(nraw);
	if (!raw)
		die("out of memory for %ux%u pixels", w, h);
	for (i = 0; i < 216; i++) {
		plte[i * 3 + 0] = (uint8_t)(i / 36 * 51);
		plte[i * 3 + 1] = (uint8_t)(i / 6 % 6 * 51);
		plte[i * 3 + 2] = (uint8_t)(i % 6 * 51);
	}
	for (y = 0; y < h; y++) {
		uint8_t *r = raw + y * rowlen;
		*r++ = 0; /* filter: none */
		for (x = 0; x < w; x++) {
			const uint8_t *c = rgb + ((size_t)y * w + x) * 3;
			uint8_t s[4];
			/* Alpha varies across the picture; decoders drop it, the colour stays. */
			uint8_t alpha = (uint8_t)(255 - (x + y) * 200 / (w + h));
			if (palette) {
				*r++ = (uint8_t)(cube(c[0]) * 36 + cube(c[1]) * 6 + cube(c[2]));
				continue;
			}
			switch (channels) {
			case 1: s[0] = luma(c); break;
			case 2: s[0] = luma(c); s[1] = alpha; break;
			case 3: memcpy(s, c, 3); break;
			default: memcpy(s, c, 3); s[3] = alpha; break;
			}
			for (k = 0; k < channels; k++) {
				*r++ = s[k];
				/* 16-bit v*257 keeps v as its high byte, so an 8-bit and a
				 * 16-bit fixture decode to the same pixels. */
				if (bytes == 2)
					*r++ = s[k];
			}
		}
	}
	write_png(out, w, h, palette ? 8 : bits, palette ? 3 : types[channels],
		  palette ? plte : NULL, sizeof plte, raw, nraw);
	free(raw);
	free(rgb);
}

/* Valid signature, IHDR and CRCs claiming w x h 8-bit RGB, then one row's worth of IDAT. */
static void cmd_png_bomb(const char *out, uint32_t w, uint32_t h)
{
	uint8_t raw[16] = { 0 };
	write_png(out, w, h, 8, 2, NULL, 0, raw, sizeof raw);
}

/* ---- reading back ---- */

static void cmd_info(const char *path)
{
	struct bt_image_info info;
	size_t n;
	uint8_t *p = read_file(path, &n);
	if (bt_image_probe(p, n, 0, &info) != BT_OK)
		die("%s: %s", path, bt_errmsg());
	printf("%s %ux%u %d\n", info.format == BT_IMAGE_JPEG ? "jpeg" : "png",
	       (unsigned)info.width, (unsigned)info.height, info.channels);
	free(p);
}

static void cmd_pixel(const char *path, unsigned long x, unsigned long y)
{
	struct bt_image im;
	size_t n;
	uint8_t *p = read_file(path, &n), *px;
	if (bt_image_decode(p, n, 0, 0, &im) != BT_OK)
		die("%s: %s", path, bt_errmsg());
	if (x >= im.width || y >= im.height)
		die("%s: pixel %lu,%lu is outside the %ux%u image", path, x, y,
		    (unsigned)im.width, (unsigned)im.height);
	px = im.pixels + ((size_t)y * im.width + x) * 3;
	printf("%d %d %d\n", px[0], px[1], px[2]);
	bt_image_free(&im);
	free(p);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "gray", no_argument, NULL, 'g' },
		{ "cmyk", no_argument, NULL, 'k' },
		{ "quality", required_argument, NULL, 'q' },
		{ "seed", required_argument, NULL, 's' },
		{ "channels", required_argument, NULL, 'c' },
		{ "bits", required_argument, NULL, 'b' },
		{ "palette", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd, *allowed;
	int gray = 0, cmyk = 0, quality = 90, channels = 3, bits = 8, palette = 0, opt;
	uint32_t seed = 1;
	unsigned long w, h;
	char **pos;
	int npos;

	if (argc < 2)
		usage();
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	cmd = argv[1];
	if (strcmp(cmd, "jpeg") == 0)
		allowed = "gkqs";
	else if (strcmp(cmd, "png") == 0)
		allowed = "cbps";
	else if (strcmp(cmd, "png-bomb") == 0 || strcmp(cmd, "jpeg-bomb") == 0 ||
		 strcmp(cmd, "info") == 0 || strcmp(cmd, "pixel") == 0)
		allowed = "";
	else {
		fprintf(stderr, "mkimg: unknown command '%s'\n", cmd);
		usage();
	}

	/* Options may come before or after the operands (getopt_long permutes). */
	argc--;
	argv++;
	opterr = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return 0;
		}
		if (opt == '?' || !strchr(allowed, opt)) {
			if (opt != '?')
				fprintf(stderr, "mkimg: option '%s' does not apply to '%s'\n",
					argv[optind - 1], cmd);
			usage();
		}
		switch (opt) {
		case 'g': gray = 1; break;
		case 'k': cmyk = 1; break;
		case 'q': quality = (int)number(optarg, "--quality", 1, 100); break;
		case 's': seed = (uint32_t)number(optarg, "--seed", 0, UINT32_MAX); break;
		case 'c': channels = (int)number(optarg, "--channels", 1, 4); break;
		case 'b':
			bits = (int)number(optarg, "--bits", 8, 16);
			if (bits != 8 && bits != 16) {
				fprintf(stderr, "mkimg: --bits must be 8 or 16\n");
				exit(2);
			}
			break;
		case 'p': palette = 1; break;
		}
	}
	pos = argv + optind;
	npos = argc - optind;
	if (gray && cmyk) {
		fprintf(stderr, "mkimg: --gray and --cmyk exclude each other\n");
		exit(2);
	}
	if (palette && bits != 8) {
		fprintf(stderr, "mkimg: --palette images are 8-bit\n");
		exit(2);
	}

	if (strcmp(cmd, "info") == 0) {
		if (npos != 1)
			usage();
		cmd_info(pos[0]);
	} else if (strcmp(cmd, "pixel") == 0) {
		if (npos != 3)
			usage();
		cmd_pixel(pos[0], number(pos[1], "X", 0, UINT32_MAX),
			  number(pos[2], "Y", 0, UINT32_MAX));
	} else {
		/* libjpeg's limit is 65500; a bomb's SOF field holds up to 65535. PNG allows 2^31-1. */
		int jpeg = strcmp(cmd, "jpeg") == 0, bomb = strstr(cmd, "bomb") != NULL;
		unsigned long max = strcmp(cmd, "jpeg-bomb") == 0 ? 65535
				    : jpeg ? 65500
				    : bomb ? 0x7fffffffUL
					   : 100000;
		if (npos != 3)
			usage();
		w = number(pos[1], "W", 1, max);
		h = number(pos[2], "H", 1, max);
		if (jpeg)
			cmd_jpeg(pos[0], (uint32_t)w, (uint32_t)h, gray, cmyk, quality, seed);
		else if (strcmp(cmd, "png") == 0)
			cmd_png(pos[0], (uint32_t)w, (uint32_t)h, channels, bits, palette, seed);
		else if (strcmp(cmd, "png-bomb") == 0)
			cmd_png_bomb(pos[0], (uint32_t)w, (uint32_t)h);
		else
			cmd_jpeg_bomb(pos[0], (uint32_t)w, (uint32_t)h);
	}
	if (fflush(stdout) != 0)
		die("cannot write standard output: %s", strerror(errno));
	return 0;
}
