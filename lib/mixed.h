/* mixed.h: mixed precision in plain C, shared by the executor (run.c), the backends and the
 * tests: the compute dtypes, the host's reference conversions between float32 and
 * bfloat16 (float16's are augment.h's bt_f32_to_f16 and bt_f16_to_f32), and the dynamic
 * loss scaler's state machine.
 *
 * A run in float16 or bfloat16 (run.h, bt_run_new_dtype) keeps the parameters, their
 * gradients and the momentum in float32 (the master arena) and computes activations in the
 * half type. float16's range is narrow (6e-8 to 65504): small gradients would flush to
 * zero, so the loss gradient is multiplied by a scale S before backward and the gradients
 * by 1/S in the update. S is dynamic: a step whose gradients overflowed (an infinity or a
 * NaN anywhere) is skipped and halves S; a long run of good steps doubles it. bfloat16
 * has float32's range and needs no scaling.
 */
#ifndef BT_MIXED_H
#define BT_MIXED_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* enum bt_dtype (BT_DTYPE_F32 = 0, BT_DTYPE_F16, BT_DTYPE_BF16), bt_dtype_name ("float32",
 * "float16", "bfloat16", "unknown") and bt_dtype_size (4, 2, 2, 0) are the checkpoint
 * format's tensor types, declared there; a compute dtype is one of them. */
#include "checkpoint.h"

/* The dtype of one of bt_dtype_name's names, or -1. */
int bt_dtype_parse(const char *name);

/* float32 -> bfloat16, rounding to nearest even. Infinities stay infinities, finite values
 * that round past the largest bfloat16 become infinities, subnormals round like any value
 * (bfloat16 has float32's exponent range), and a NaN stays a NaN of the same sign with its
 * payload's top bits, made quiet. bfloat16 -> float32 is exact. */
static inline uint16_t bt_f32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof x);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((x >> 16) | 0x40);
	/* Round the 16 dropped bits to nearest even; a carry runs into the exponent, which
	 * takes the largest finite values that round up to infinity, as it should. */
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

static inline float bt_bf16_to_f32(uint16_t h)
{
	uint32_t x = (uint32_t)h << 16;
	float f;
	memcpy(&f, &x, sizeof f);
	return f;
}

/* The dynamic loss scaler's parameters (those of PyTorch's GradScaler and DeepSpeed's
 * dynamic scaler): start at 2^16, halve on overflow but not below 1, double after 2000
 * good steps in a row but not above 2^24. */
#define BT_LOSS_SCALE_INIT 65536.0
#define BT_LOSS_SCALE_MIN 1.0
#define BT_LOSS_SCALE_MAX 16777216.0
#define BT_LOSS_SCALE_INTERVAL 2000

struct bt_loss_scaler {
	double scale;           /* S, a power of two; 1 when not dynamic */
	uint64_t good_steps;    /* good steps since S last changed or a step was skipped */
	uint64_t skipped;       /* steps skipped for overflow, in total */
	int dynamic;            /* 1 for float16; 0: S stays 1 and nothing is checked */
};

/* The scaler of a run computing in dtype: dynamic from BT_LOSS_SCALE_INIT for float16,
 * static at 1 otherwise. */
void bt_loss_scaler_init(struct bt_loss_scaler *s, int dtype);

/* After a backward pass at scale s->scale: overflow is 1 when some gradient is not finite.
 * Returns 1 when the step is to be taken (dividing the gradients by the scale it was
 * computed with, which the caller reads before this call), 0 when it is skipped. A static
 * scaler always returns 1. */
int bt_loss_scaler_update(struct bt_loss_scaler *s, int overflow);

/* Restores a scaler's state (from a checkpoint). BT_ERR_INVALID when scale is not a power
 * of two within [BT_LOSS_SCALE_MIN, BT_LOSS_SCALE_MAX], or not 1 for a static scaler, or
 * good_steps is not below BT_LOSS_SCALE_INTERVAL. */
int bt_loss_scaler_set(struct bt_loss_scaler *s, double scale, uint64_t good_steps, uint64_t skipped);

#endif
