/* desc.c: the shape rules of the op descriptors (cpu.h), one copy for every backend, so
 * that the CPU and CUDA backends accept and refuse the same descriptors with the same
 * words. */
#include "bt.h"
#include "checkpoint.h"
#include "cpu.h"

static int out_floor(int in, int k, int s, int p, int dil)
{
	int span = in + 2 * p - (k - 1) * dil - 1;
	return span < 0 ? 0 : span / s + 1;
}

/* Floor or ceil mode; in ceil mode the last window must still start inside the input or
 * its left padding, as in PyTorch. */
static int pool_size_ok(int in, int out, int k, int s, int p)
{
	int span = in + 2 * p - k, fl = out_floor(in, k, s, p, 1);
	return fl > 0 && (out == fl || (out == (span + s - 1) / s + 1 && (out - 1) * s < in + p));
}

static int dtype_check(int dtype)
{
	if (!bt_dtype_size(dtype))
		return bt_error(BT_ERR_INVALID, "unknown dtype %d", dtype);
	return BT_OK;
}

int bt_conv_desc_check(const struct bt_conv_desc *d)
{
	if (dtype_check(d->dtype) < 0)
		return BT_ERR_INVALID;
	if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c <= 0 || d->oh <= 0 || d->ow <= 0 ||
	    d->cout <= 0 || d->kh <= 0 || d->kw <= 0 || d->sh <= 0 || d->sw <= 0 || d->ph < 0 ||
	    d->pw < 0 || d->dh <= 0 || d->dw <= 0 || d->groups <= 0 || d->c % d->groups ||
	    d->cout % d->groups)
		return bt_error(BT_ERR_INVALID, "bad convolution shape");
	if (d->oh != out_floor(d->h, d->kh, d->sh, d->ph, d->dh) ||
	    d->ow != out_floor(d->w, d->kw, d->sw, d->pw, d->dw))
		return bt_error(BT_ERR_INVALID, "convolution output %dx%d does not follow from the input",
				d->oh, d->ow);
	if (d->post & ~(BT_CONV_POST_SUM | BT_CONV_POST_RELU))
		return bt_error(BT_ERR_INVALID, "convolution post-operations %#x", (unsigned)d->post);
	return BT_OK;
}

int bt_bn_desc_check(const struct bt_bn_desc *d)
{
	if (dtype_check(d->dtype) < 0)
		return BT_ERR_INVALID;
	if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c <= 0 || !(d->eps >= 0))
		return bt_error(BT_ERR_INVALID, "bad batch norm shape");
	return BT_OK;
}

int bt_pool_desc_check(const struct bt_pool_desc *d)
{
	if (dtype_check(d->dtype) < 0)
		return BT_ERR_INVALID;
	if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c <= 0 || d->oh <= 0 || d->ow <= 0 ||
	    d->kh <= 0 || d->kw <= 0 || d->sh <= 0 || d->sw <= 0 || d->ph < 0 || d->pw < 0 ||
	    d->ph >= d->kh || d->pw >= d->kw)
		return bt_error(BT_ERR_INVALID, "bad pooling shape");
	if (!pool_size_ok(d->h, d->oh, d->kh, d->sh, d->ph) ||
	    !pool_size_ok(d->w, d->ow, d->kw, d->sw, d->pw))
		return bt_error(BT_ERR_INVALID, "pooling output %dx%d does not follow from the input",
				d->oh, d->ow);
	return BT_OK;
}

int bt_fc_desc_check(const struct bt_fc_desc *d)
{
	if (dtype_check(d->dtype) < 0)
		return BT_ERR_INVALID;
	if (d->n <= 0 || d->cin <= 0 || d->cout <= 0)
		return bt_error(BT_ERR_INVALID, "bad fully connected shape");
	return BT_OK;
}
