/* augment.h: the paper's training and evaluation transforms for one image.
 *
 * Training (He et al. 2019, section 2.1): random-resized crop (area uniform in
 * [min_area, max_area] of the image, aspect ratio log-uniform in [min_aspect, max_aspect],
 * up to 10 tries, then the whole image centre-cropped to the nearest allowed aspect),
 * resized to size x size with the antialiasing bilinear filter; horizontal flip with
 * probability 0.5; brightness, contrast and saturation each scaled by a factor uniform in
 * [1 - jitter, 1 + jitter], in random order; PCA lighting noise alpha ~ N(0, lighting)
 * along the ImageNet eigenvectors; normalisation by mean and std. Optionally (not one of
 * the paper's tricks; off by default) random erasing as torchvision's RandomErasing(p,
 * scale, ratio, value=0) after Normalize: with probability erase, a box of area uniform
 * in [erase_min_area, erase_max_area] of the output, aspect (height / width) log-uniform
 * in [erase_min_aspect, erase_max_aspect], up to 10 tries (none fitting: no box), set to
 * 0 in the normalised output, i.e. to the mean colour (rounded, for uint8 output).
 * Optionally (pad >= 0; not one of the paper's tricks) the CIFAR crop in place of the
 * random-resized one, as torchvision's RandomCrop(size, padding=pad) and GluonCV's CIFAR
 * recipe: the image padded with pad black pixels on every side, then a size x size window
 * at a uniform position (top row first, then left column), at the image's own scale.
 * Evaluation: resize the shorter side to round(size / crop_ratio) (or `resize`), keeping
 * the aspect ratio, then centre-crop size x size; normalisation.
 *
 * The random choices for an image are drawn first (bt_aug_draw, from an RNG the caller
 * seeds from (seed, epoch, record index)) and applied second (bt_aug_apply), so tests can
 * check each half and the output never depends on threads or timing.
 *
 * Output is HWC. Encoded (JPEG/PNG) payloads give 3 channels; raw payloads keep theirs
 * (1 or 3). For 1-channel images saturation and lighting do nothing. BT_AUG_U8 applies
 * everything but normalisation and rounds to uint8 (values clamped to 0..255); BT_AUG_F32 and
 * BT_AUG_F16 also normalise: (x - mean) / std, with x in 0..255 unclamped.
 *
 * Deferred colour (defer_colour, uint8 output only): the output is the resampled crop
 * alone, and bt_aug_apply_deferred returns what the colour operations, lighting and
 * normalisation need (struct bt_aug_colour: the draw's factors, order and alphas, and the
 * crop's mean colour), so that they can run elsewhere (on a GPU, backend.h's input_u8).
 * bt_aug_colour_affine turns that into a per-pixel affine map and bt_aug_colour_apply
 * applies it as bt_aug_apply does: crop then colour gives the same bits as the whole
 * transform, in every output format.
 */
#ifndef BT_AUGMENT_H
#define BT_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "rng.h"

enum bt_aug_format { BT_AUG_U8 = 0, BT_AUG_F32, BT_AUG_F16 };

struct bt_aug_params {
	int train;                     /* 1: training transform, 0: evaluation */
	uint32_t size;                 /* output height and width (224; 299 for Inception-V3) */
	double crop_ratio;             /* eval: shorter side resized to size / crop_ratio (0.875) */
	uint32_t resize;               /* eval: explicit shorter side; 0 derives it from crop_ratio */
	double min_area, max_area;     /* 0.08, 1.0 */
	double min_aspect, max_aspect; /* 3/4, 4/3 */
	int flip;                      /* 1: flip with probability 0.5 */
	double jitter;                 /* 0.4: brightness, contrast, saturation factor range */
	double lighting;               /* 0.1: std of the PCA lighting alpha; 0 disables */
	float mean[3], std[3];         /* (123.68, 116.779, 103.939), (58.393, 57.12, 57.375) */
	int format;                    /* enum bt_aug_format */
	uint64_t max_pixels;           /* refuse decoding larger images; 0: no limit */
	int identity;                  /* the images are already augmented (a bt-aug stream): each
					* must be size x size; raw uint8 pixels are only normalised,
					* f32 and f16 tensors (already normalised) only converted */
	int defer_colour;              /* BT_AUG_U8 only: leave out brightness, contrast,
					* saturation and lighting (see bt_aug_apply_deferred) */
	double erase;                  /* train: random-erasing probability; 0 (default) off */
	double erase_min_area, erase_max_area;     /* 0.02, 0.33 of the output's area */
	double erase_min_aspect, erase_max_aspect; /* 0.3, 3.3 (height / width) */
	int32_t pad;                   /* train: >= 0 the padded random crop instead of the
					* random-resized one; -1 (default) off */
};

/* The random choices for one image, and the crop box they imply. */
struct bt_aug_draw {
	double x, y, w, h;     /* crop box in source pixels (x, y: top-left corner; with pad,
				* from -pad on, the part outside the image black) */
	int fallback;          /* train: 1 when all 10 tries failed and the centre crop was used */
	int flip;
	float brightness, contrast, saturation; /* factors; 1 = unchanged */
	int order[3];          /* order of the three colour ops: 0 brightness, 1 contrast, 2 saturation */
	float alpha[3];        /* lighting */
	int32_t erase[4];      /* random erasing: x, y, w, h in output pixels; w == 0: none */
};

/* The colour operations left to apply to a crop (defer_colour): the draw's, and the mean
 * of each channel of the uint8 crop (contrast blends towards the mean grey). Neutral
 * (factors 1, order 0 1 2, alphas 0) when nothing is left to do. */
struct bt_aug_colour {
	float brightness, contrast, saturation;
	int32_t order[3];
	float alpha[3];
	int32_t pad_;
	double mean[3];        /* 0..255; 0 when no colour operation reads it */
	int32_t erase[5];      /* the draw's erased box x, y, w, h (w == 0: none) and the crop's
				* size; the uint8 crop holds the mean colour there already */
	int32_t pad2_;
};

/* One image's colour operations, lighting and normalisation as a per-pixel map of its
 * uint8 values, in float32 (lib/augment.c's rounding, which a GPU kernel reproduces):
 *   colour 0: y_c = (x_c - mean_c) * inv_c
 *   colour 1: y_c = t_0 + t_1 + t_2 + t_3 + t_4 + b_c, added left to right, where for the
 *             five taps j = 0..4 t_j = w_c,k * x_k with k = j - 2 + c when 0 <= k < C,
 *             and t_j = +0 otherwise (x_k the pixel's channels; every product and sum
 *             rounded on its own, no fused multiply-add). */
struct bt_aug_affine {
	float w[3][3];         /* w[c][k]: channel k of the pixel into output channel c */
	float b[3];
	float mean[3], inv[3];
	int32_t colour;
	int32_t erase[5];      /* x, y, w, h, size: pixels of that box give +0 (normalised
				* output) or keep their uint8 value (uint8 output); w == 0: none */
};

/* That formula for channel c of one pixel px (its C values), written once for the host
 * and for CUDA's input kernel (lib/cuda/kernels.cu), whose device code rounds each
 * operation on its own with the _rn intrinsics (nvcc would otherwise fuse them); host code
 * is built without fused multiply-adds. tests/unit/test_input.c holds it to
 * bt_aug_colour_apply. */
#ifdef __CUDACC__
#define BT_AUG_HD __host__ __device__
#else
#define BT_AUG_HD
#endif
#ifdef __CUDA_ARCH__
#define BT_AUG_MUL(a, b) __fmul_rn((a), (b))
#define BT_AUG_ADD(a, b) __fadd_rn((a), (b))
#define BT_AUG_SUB(a, b) __fsub_rn((a), (b))
#else
#define BT_AUG_MUL(a, b) ((a) * (b))
#define BT_AUG_ADD(a, b) ((a) + (b))
#define BT_AUG_SUB(a, b) ((a) - (b))
#endif

static inline BT_AUG_HD float bt_aug_affine_value(const struct bt_aug_affine *a, const uint8_t *px, int c,
						  int C)
{
	float t[5], v;
	int j;
	if (!a->colour)
		return BT_AUG_MUL(BT_AUG_SUB((float)px[c], a->mean[c]), a->inv[c]);
	for (j = 0; j < 5; j++) {
		int k = j - 2 + c;
		t[j] = k >= 0 && k < C ? BT_AUG_MUL(a->w[c][k], (float)px[k]) : 0.0f;
	}
	v = BT_AUG_ADD(t[0], t[1]);
	v = BT_AUG_ADD(v, t[2]);
	v = BT_AUG_ADD(v, t[3]);
	v = BT_AUG_ADD(v, t[4]);
	return BT_AUG_ADD(v, a->b[c]);
}

/* Whether pixel k (its index in a size x size image, row-major) is in a's erased box. */
static inline BT_AUG_HD int bt_aug_affine_erased(const struct bt_aug_affine *a, size_t k)
{
	if (a->erase[2] <= 0)
		return 0;
	{
		size_t S = (size_t)a->erase[4], y = k / S, x = k - y * S;
		return x >= (size_t)a->erase[0] && x < (size_t)(a->erase[0] + a->erase[2]) &&
		       y >= (size_t)a->erase[1] && y < (size_t)(a->erase[1] + a->erase[3]);
	}
}

/* The paper's values (train selects the transform). */
void bt_aug_defaults(struct bt_aug_params *p, int train);

/* Checks ranges (size >= 1, 0 < min_area <= max_area <= 1, 0 < min_aspect <= max_aspect,
 * crop_ratio in (0, 1], jitter in [0, 1], lighting >= 0, std != 0). */
int bt_aug_check(const struct bt_aug_params *p);

/* Draws the random choices for an image of width x height. In evaluation mode nothing
 * random is drawn and the box is the centre crop. Draws happen in a fixed order (crop,
 * flip, colour factors, colour order, lighting), whatever the options, so that turning one
 * option off does not change the others' draws; random erasing, when on, draws last. */
void bt_aug_draw(const struct bt_aug_params *p, uint32_t width, uint32_t height, struct bt_rng *g,
		 struct bt_aug_draw *d);

/* Per-thread reusable buffers, so steady-state transforms allocate nothing. */
struct bt_aug_scratch;
struct bt_aug_scratch *bt_aug_scratch_new(void);
void bt_aug_scratch_free(struct bt_aug_scratch *s);

/* Output channels for a record: 3 for JPEG/PNG, the stored count for raw, f32 and f16. */
int bt_aug_channels(const struct bt_record *rec);
/* Bytes of one output image: size * size * channels * (1, 4 or 2). */
size_t bt_aug_out_bytes(const struct bt_aug_params *p, int channels);

/* Applies the transform to one record's image payload (JPEG, PNG or raw uint8; the record's
 * shape gives width and height): decodes only the rows and columns the crop needs (JPEG
 * region decoding, DCT-domain scaling when the crop is at least twice the output), then
 * crop + resize + flip + conversion, then the colour operations and normalisation.
 * out holds bt_aug_out_bytes(p, bt_aug_channels(rec)) bytes. A corrupt image is
 * BT_ERR_IMAGE; other payload kinds are BT_ERR_UNSUPPORTED. */
int bt_aug_apply(const struct bt_aug_params *p, const struct bt_aug_draw *d,
		 const struct bt_record *rec, void *out, struct bt_aug_scratch *s);

/* bt_aug_apply that also says in *col (when not NULL) which colour operations are left:
 * with p->defer_colour, the draw's and the crop's mean colour; otherwise none. */
int bt_aug_apply_deferred(const struct bt_aug_params *p, const struct bt_aug_draw *d,
			  const struct bt_record *rec, void *out, struct bt_aug_colour *col,
			  struct bt_aug_scratch *s);

/* The map of col for a C-channel image: normalised by mean and std (3 each, one per
 * channel), or, with mean NULL, in 0..255 (uint8 output). Colour operations fold into
 * one 3x3 matrix and offset exactly as bt_aug_apply folds them. */
void bt_aug_colour_affine(const struct bt_aug_colour *col, int C, const float *mean,
			  const float *std, struct bt_aug_affine *a);

/* Applies a to img, a size x size x C uint8 crop, into out in format: BT_AUG_F32 and
 * BT_AUG_F16 as computed, BT_AUG_U8 rounded and clamped to 0..255 (with a map made
 * without normalisation). The same bits as bt_aug_apply's colour and output stage. */
int bt_aug_colour_apply(const struct bt_aug_affine *a, const uint8_t *img, uint32_t size, int C,
			int format, void *out, struct bt_aug_scratch *s);

/* IEEE half precision, round to nearest even. */
uint16_t bt_f32_to_f16(float f);
float bt_f16_to_f32(uint16_t h);

#endif
