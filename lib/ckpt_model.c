/* ckpt_model.c: a model in a checkpoint. The SPEC section says how to rebuild the network
 * and its evaluation input (zoo name, options, normalisation, eval crop), and the tensors
 * carry every parameter of the graph under its graph name, so bt-eval needs nothing but
 * the file. get_params checks every shape against the graph before it copies anything it
 * cannot vouch for.
 */
#define _GNU_SOURCE
#include "checkpoint.h"
#include "augment.h"
#include "bt.h"
#include "graph.h"
#include "zoo.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOMENTUM_PREFIX "momentum/"

int bt_ckpt_put_spec(struct bt_ckpt *c, const char *model, const struct bt_model_opts *mo,
		     const struct bt_aug_params *eval)
{
	int st;
#define SET(k, ...) do { if ((st = bt_ckpt_set(c, BT_CKPT_SPEC, k, __VA_ARGS__)) < 0) return st; } while (0)
	SET("model", "%s", model);
	SET("classes", "%d", mo->classes);
	SET("in_channels", "%d", mo->in_channels);
	SET("input_size", "%d", mo->input_size);
	SET("aux", "%d", mo->aux ? 1 : 0);
	SET("mean", "%.9g,%.9g,%.9g", eval->mean[0], eval->mean[1], eval->mean[2]);
	SET("std", "%.9g,%.9g,%.9g", eval->std[0], eval->std[1], eval->std[2]);
	SET("crop_ratio", "%.9g", eval->crop_ratio);
	SET("resize", "%u", eval->resize);
	SET("dtype", "%s", "float32");
	SET("bt_version", "%s", BT_VERSION);
#undef SET
	return BT_OK;
}

static int get_int(const struct bt_ckpt *c, const char *key, int lo, int hi, int *v)
{
	int64_t x;
	int st = bt_ckpt_get_i64(c, BT_CKPT_SPEC, key, &x);
	if (st < 0)
		return st;
	if (x < lo || x > hi)
		return bt_error(BT_ERR_FORMAT, "checkpoint: spec key '%s' is %lld (%d to %d)", key,
				(long long)x, lo, hi);
	*v = (int)x;
	return BT_OK;
}

static int get_triple(const struct bt_ckpt *c, const char *key, float v[3])
{
	const char *s = bt_ckpt_get(c, BT_CKPT_SPEC, key), *p;
	char *end;

	if (!s)
		return bt_error(BT_ERR_FORMAT, "checkpoint: spec key '%s' is missing", key);
	p = s;
	for (int i = 0; i < 3; i++) {
		double x;
		errno = 0;
		x = strtod(p, &end);
		if (end == p || !isfinite(x) || *p == ' ' || (i < 2 ? *end != ',' : *end != 0))
			return bt_error(BT_ERR_FORMAT, "checkpoint: spec key '%s' is not three numbers ('%s')",
					key, s);
		v[i] = (float)x;
		p = end + 1;
	}
	return BT_OK;
}

int bt_ckpt_get_spec(const struct bt_ckpt *c, char *model, size_t cap, struct bt_model_opts *mo,
		     struct bt_aug_params *eval)
{
	const char *name = bt_ckpt_get(c, BT_CKPT_SPEC, "model"), *dtype;
	double cr;
	int64_t resize;
	int st;

	if (!name)
		return bt_error(BT_ERR_FORMAT, "checkpoint: spec key 'model' is missing");
	if (strlen(name) >= cap)
		return bt_error(BT_ERR_FORMAT, "checkpoint: model name '%s' is too long", name);
	memset(mo, 0, sizeof *mo);
	if ((st = get_int(c, "classes", 1, 1 << 24, &mo->classes)) < 0 ||
	    (st = get_int(c, "in_channels", 1, 4096, &mo->in_channels)) < 0 ||
	    (st = get_int(c, "input_size", 1, 1 << 16, &mo->input_size)) < 0 ||
	    (st = get_int(c, "aux", 0, 1, &mo->aux)) < 0)
		return st;
	bt_aug_defaults(eval, 0);
	eval->size = (uint32_t)mo->input_size;
	if ((st = get_triple(c, "mean", eval->mean)) < 0 || (st = get_triple(c, "std", eval->std)) < 0)
		return st;
	for (int i = 0; i < 3; i++)
		if (eval->std[i] == 0)
			return bt_error(BT_ERR_FORMAT, "checkpoint: spec key 'std' has a zero ('%s')",
					bt_ckpt_get(c, BT_CKPT_SPEC, "std"));
	if ((st = bt_ckpt_get_double(c, BT_CKPT_SPEC, "crop_ratio", &cr)) < 0)
		return st;
	if (!(cr > 0 && cr <= 1))
		return bt_error(BT_ERR_FORMAT, "checkpoint: spec key 'crop_ratio' is %g (0 to 1)", cr);
	eval->crop_ratio = cr;
	if ((st = bt_ckpt_get_i64(c, BT_CKPT_SPEC, "resize", &resize)) < 0)
		return st;
	if (resize < 0 || resize > 1 << 20)
		return bt_error(BT_ERR_FORMAT, "checkpoint: spec key 'resize' is %lld", (long long)resize);
	eval->resize = (uint32_t)resize;
	eval->format = BT_AUG_F32;
	dtype = bt_ckpt_get(c, BT_CKPT_SPEC, "dtype");
	if (dtype && strcmp(dtype, "float32") != 0)
		return bt_error(BT_ERR_UNSUPPORTED, "checkpoint: parameters of dtype '%s' (this bt reads float32)",
				dtype);
	strcpy(model, name);
	return BT_OK;
}

static void param_shape(const struct bt_param *p, uint64_t shape[4])
{
	for (int i = 0; i < p->ndim; i++)
		shape[i] = (uint64_t)p->shape[i];
}

int bt_ckpt_put_params(struct bt_ckpt *c, const struct bt_graph *g, const float *params,
		       const float *momentum)
{
	char name[sizeof ((struct bt_param *)0)->name + sizeof MOMENTUM_PREFIX];
	uint64_t shape[4];
	int st;

	for (int i = 0; i < g->nparams; i++) {
		const struct bt_param *p = &g->params[i];
		param_shape(p, shape);
		if ((st = bt_ckpt_add_tensor(c, p->name, BT_DTYPE_F32, p->ndim, shape, params + p->offset)) < 0)
			return st;
	}
	if (!momentum)
		return BT_OK;
	for (int i = 0; i < g->nparams; i++) {
		const struct bt_param *p = &g->params[i];
		if (!p->trainable)
			continue;
		param_shape(p, shape);
		snprintf(name, sizeof name, MOMENTUM_PREFIX "%s", p->name);
		if ((st = bt_ckpt_add_tensor(c, name, BT_DTYPE_F32, p->ndim, shape, momentum + p->offset)) < 0)
			return st;
	}
	return BT_OK;
}

static void shape_text(char *buf, size_t cap, int ndim, const uint64_t *shape)
{
	size_t n = 0;
	buf[0] = 0;
	for (int i = 0; i < ndim && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? "x" : "", (unsigned long long)shape[i]);
}

/* The tensor of p under prefix, checked against p's shape. */
static int find_param(const struct bt_ckpt *c, const char *prefix, const struct bt_param *p,
		      const struct bt_ckpt_tensor **out)
{
	char name[sizeof p->name + sizeof MOMENTUM_PREFIX], have[128], want[128];
	const struct bt_ckpt_tensor *t;
	uint64_t shape[4];
	int same;

	snprintf(name, sizeof name, "%s%s", prefix, p->name);
	t = bt_ckpt_find(c, name);
	if (!t)
		return bt_error(BT_ERR_FORMAT, "checkpoint has no tensor '%s'", name);
	if (t->dtype != BT_DTYPE_F32)
		return bt_error(BT_ERR_FORMAT, "tensor '%s' is %s, the model wants float32", name,
				bt_dtype_name(t->dtype));
	param_shape(p, shape);
	same = t->ndim == p->ndim;
	for (int i = 0; same && i < p->ndim; i++)
		same = t->shape[i] == shape[i];
	if (!same || t->bytes != 4 * (uint64_t)p->count) {
		shape_text(have, sizeof have, t->ndim, t->shape);
		shape_text(want, sizeof want, p->ndim, shape);
		return bt_error(BT_ERR_FORMAT, "tensor '%s' has shape %s, the model wants %s", name, have, want);
	}
	*out = t;
	return BT_OK;
}

int bt_ckpt_get_params(const struct bt_ckpt *c, const struct bt_graph *g, float *params,
		       float *momentum)
{
	const struct bt_ckpt_tensor *t;
	int st;

	/* Check everything first, so that a mismatch leaves the arenas untouched. */
	for (int i = 0; i < g->nparams; i++) {
		if ((st = find_param(c, "", &g->params[i], &t)) < 0)
			return st;
		if (momentum && g->params[i].trainable &&
		    (st = find_param(c, MOMENTUM_PREFIX, &g->params[i], &t)) < 0)
			return st;
	}
	for (int i = 0; i < g->nparams; i++) {
		const struct bt_param *p = &g->params[i];
		find_param(c, "", p, &t);
		memcpy(params + p->offset, t->data, t->bytes);
		if (momentum && p->trainable) {
			find_param(c, MOMENTUM_PREFIX, p, &t);
			memcpy(momentum + p->offset, t->data, t->bytes);
		}
	}
	return BT_OK;
}
