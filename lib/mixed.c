/* mixed.c: the compute dtypes' names and the dynamic loss scaler (mixed.h; the host's
 * bfloat16 conversions are inline there). Plain C, so that the tests check the scaler's rules and the reference
 * conversions the CUDA kernels are compared against without a GPU. */
#include "mixed.h"
#include "bt.h"

#include <math.h>
#include <string.h>

int bt_dtype_parse(const char *name)
{
	for (int i = 0; bt_dtype_size(i); i++)
		if (strcmp(name, bt_dtype_name(i)) == 0)
			return i;
	return -1;
}

void bt_loss_scaler_init(struct bt_loss_scaler *s, int dtype)
{
	memset(s, 0, sizeof *s);
	s->dynamic = dtype == BT_DTYPE_F16;
	s->scale = s->dynamic ? BT_LOSS_SCALE_INIT : 1.0;
}

int bt_loss_scaler_update(struct bt_loss_scaler *s, int overflow)
{
	if (!s->dynamic)
		return 1;
	if (overflow) {
		s->skipped++;
		s->good_steps = 0;
		if (s->scale / 2 >= BT_LOSS_SCALE_MIN)
			s->scale /= 2;
		return 0;
	}
	if (++s->good_steps >= BT_LOSS_SCALE_INTERVAL) {
		s->good_steps = 0;
		if (s->scale * 2 <= BT_LOSS_SCALE_MAX)
			s->scale *= 2;
	}
	return 1;
}

int bt_loss_scaler_set(struct bt_loss_scaler *s, double scale, uint64_t good_steps, uint64_t skipped)
{
	int e;
	if (!s->dynamic) {
		if (scale != 1.0 || good_steps)
			return bt_error(BT_ERR_INVALID, "loss scale %.17g: a run without dynamic scaling keeps 1", scale);
	} else if (!(scale >= BT_LOSS_SCALE_MIN && scale <= BT_LOSS_SCALE_MAX) || frexp(scale, &e) != 0.5 ||
		   good_steps >= BT_LOSS_SCALE_INTERVAL) {
		return bt_error(BT_ERR_INVALID, "loss scale %.17g after %llu good steps: want a power of two "
				"from %g to %g and fewer than %d steps", scale, (unsigned long long)good_steps,
				BT_LOSS_SCALE_MIN, BT_LOSS_SCALE_MAX, BT_LOSS_SCALE_INTERVAL);
	}
	s->scale = scale;
	s->good_steps = good_steps;
	s->skipped = skipped;
	return BT_OK;
}
