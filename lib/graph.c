/* graph.c: the graph builders of graph.h: shape inference, parameter registration in the
 * arena, and the counts (parameters, multiply-adds, activation memory) that bt-info shows. */
#include "graph.h"
#include "bt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *bt_op_name(int op)
{
	static const char *const names[BT_OP_COUNT] = {
		"input", "conv2d", "batchnorm", "relu", "maxpool", "avgpool", "global_avgpool",
		"fc", "add", "concat", "dropout", "flatten",
	};
	return op >= 0 && op < BT_OP_COUNT ? names[op] : "unknown";
}

void bt_graph_init(struct bt_graph *g)
{
	memset(g, 0, sizeof *g);
	g->input = -1;
	g->output = -1;
}

void bt_graph_free(struct bt_graph *g)
{
	free(g->nodes);
	free(g->params);
	bt_graph_init(g);
}

void bt_graph_prefix(struct bt_graph *g, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g->prefix, sizeof g->prefix, fmt, ap);
	va_end(ap);
}

/* Records the first failure; every later builder call then does nothing. */
static int fail(struct bt_graph *g, int st)
{
	if (g->status == BT_OK)
		g->status = st;
	return -1;
}

static int check_in(struct bt_graph *g, int x)
{
	if (g->status != BT_OK)
		return -1;
	if (x < 0 || x >= g->nnodes)
		return fail(g, bt_error(BT_ERR_INVALID, "graph: node %d does not exist", x));
	return 0;
}

static int new_node(struct bt_graph *g, int op, const char *name, struct bt_shape out)
{
	struct bt_node *n;
	if (g->status != BT_OK)
		return -1;
	if (out.h <= 0 || out.w <= 0 || out.c <= 0)
		return fail(g, bt_error(BT_ERR_INVALID, "%s%s (%s): output shape %dx%dx%d; the input is too small",
					g->prefix, name ? name : "", bt_op_name(op), out.h, out.w, out.c));
	if (g->nnodes == g->capnodes) {
		int cap = g->capnodes ? g->capnodes * 2 : 64;
		struct bt_node *p = realloc(g->nodes, (size_t)cap * sizeof *p);
		if (!p)
			return fail(g, bt_error(BT_ERR_NOMEM, "out of memory building a graph"));
		g->nodes = p;
		g->capnodes = cap;
	}
	n = &g->nodes[g->nnodes];
	memset(n, 0, sizeof *n);
	n->op = op;
	n->out = out;
	for (int i = 0; i < 4; i++)
		n->param[i] = -1;
	snprintf(n->name, sizeof n->name, "%s%s", g->prefix, name ? name : bt_op_name(op));
	return g->nnodes++;
}

static int new_param(struct bt_graph *g, int node, const char *suffix, int kind, int trainable,
		     int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
	struct bt_param *p;
	int64_t dims[4] = {d0, d1, d2, d3};
	size_t count = 1;
	if (g->status != BT_OK)
		return -1;
	if (g->nparams == g->capparams) {
		int cap = g->capparams ? g->capparams * 2 : 128;
		struct bt_param *q = realloc(g->params, (size_t)cap * sizeof *q);
		if (!q)
			return fail(g, bt_error(BT_ERR_NOMEM, "out of memory building a graph"));
		g->params = q;
		g->capparams = cap;
	}
	p = &g->params[g->nparams];
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s.%s", g->nodes[node].name, suffix);
	p->kind = kind;
	p->ndim = ndim;
	for (int i = 0; i < ndim; i++) {
		p->shape[i] = dims[i];
		count *= (size_t)dims[i];
	}
	/* Keep every tensor 16-float (64-byte) aligned in the arena, for SIMD and for the
	 * allocators of accelerators. */
	p->offset = (g->nfloats + 15) & ~(size_t)15;
	p->count = count;
	p->trainable = trainable;
	p->node = node;
	g->nfloats = p->offset + count;
	return g->nparams++;
}

int bt_input(struct bt_graph *g, int h, int w, int c)
{
	int id = new_node(g, BT_OP_INPUT, "input", (struct bt_shape){h, w, c});
	if (id >= 0)
		g->input = id;
	return id;
}

/* Output size of a window over n with kernel k, stride s, padding p, dilation d. */
static int window_out(int n, int k, int s, int p, int d, int ceil_mode)
{
	int span = d * (k - 1) + 1, num = n + 2 * p - span;
	int out;
	if (num < 0)
		return 0;
	out = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
	/* PyTorch's rule: the last window must start inside the input or its left padding. */
	if (ceil_mode && (out - 1) * s >= n + p)
		out--;
	return out;
}

int bt_conv2d(struct bt_graph *g, int x, const char *name, const struct bt_conv_args *a)
{
	struct bt_conv_args c = *a;
	struct bt_shape in, out;
	int id;
	if (check_in(g, x) < 0)
		return -1;
	in = g->nodes[x].out;
	c.sh = c.sh ? c.sh : 1;
	c.sw = c.sw ? c.sw : 1;
	c.dh = c.dh ? c.dh : 1;
	c.dw = c.dw ? c.dw : 1;
	c.groups = c.groups ? c.groups : 1;
	if (c.cout <= 0 || c.kh <= 0 || c.kw <= 0 || in.c % c.groups || c.cout % c.groups)
		return fail(g, bt_error(BT_ERR_INVALID, "%s%s: %d input and %d output channels in %d groups, kernel %dx%d",
					g->prefix, name, in.c, c.cout, c.groups, c.kh, c.kw));
	out.h = window_out(in.h, c.kh, c.sh, c.ph, c.dh, 0);
	out.w = window_out(in.w, c.kw, c.sw, c.pw, c.dw, 0);
	out.c = c.cout;
	if ((id = new_node(g, BT_OP_CONV2D, name, out)) < 0)
		return -1;
	g->nodes[id].in[0] = x;
	g->nodes[id].nin = 1;
	g->nodes[id].a.conv.kh = c.kh;
	g->nodes[id].a.conv.kw = c.kw;
	g->nodes[id].a.conv.sh = c.sh;
	g->nodes[id].a.conv.sw = c.sw;
	g->nodes[id].a.conv.ph = c.ph;
	g->nodes[id].a.conv.pw = c.pw;
	g->nodes[id].a.conv.dh = c.dh;
	g->nodes[id].a.conv.dw = c.dw;
	g->nodes[id].a.conv.groups = c.groups;
	g->nodes[id].a.conv.cout = c.cout;
	g->nodes[id].a.conv.bias = c.bias;
	g->nodes[id].param[0] = new_param(g, id, "weight", BT_PARAM_WEIGHT, 1, 4, c.cout, c.kh, c.kw,
					  in.c / c.groups);
	if (c.bias)
		g->nodes[id].param[1] = new_param(g, id, "bias", BT_PARAM_BIAS, 1, 1, c.cout, 0, 0, 0);
	return g->status == BT_OK ? id : -1;
}

int bt_conv(struct bt_graph *g, int x, const char *name, int cout, int k, int s, int p)
{
	struct bt_conv_args a = {.cout = cout, .kh = k, .kw = k, .sh = s, .sw = s, .ph = p, .pw = p};
	return bt_conv2d(g, x, name, &a);
}

int bt_batchnorm(struct bt_graph *g, int x, const char *name, float eps, float momentum)
{
	int id, c;
	if (check_in(g, x) < 0)
		return -1;
	c = g->nodes[x].out.c;
	if ((id = new_node(g, BT_OP_BATCHNORM, name, g->nodes[x].out)) < 0)
		return -1;
	g->nodes[id].in[0] = x;
	g->nodes[id].nin = 1;
	g->nodes[id].a.bn.eps = eps > 0 ? eps : 1e-5f;
	g->nodes[id].a.bn.momentum = momentum > 0 ? momentum : 0.1f;
	g->nodes[id].param[0] = new_param(g, id, "weight", BT_PARAM_GAMMA, 1, 1, c, 0, 0, 0);
	g->nodes[id].param[1] = new_param(g, id, "bias", BT_PARAM_BETA, 1, 1, c, 0, 0, 0);
	g->nodes[id].param[2] = new_param(g, id, "running_mean", BT_PARAM_RUNNING_MEAN, 0, 1, c, 0, 0, 0);
	g->nodes[id].param[3] = new_param(g, id, "running_var", BT_PARAM_RUNNING_VAR, 0, 1, c, 0, 0, 0);
	return g->status == BT_OK ? id : -1;
}

static int unary(struct bt_graph *g, int op, int x, struct bt_shape out)
{
	int id;
	if (check_in(g, x) < 0)
		return -1;
	if ((id = new_node(g, op, NULL, out)) < 0)
		return -1;
	g->nodes[id].in[0] = x;
	g->nodes[id].nin = 1;
	return id;
}

int bt_relu(struct bt_graph *g, int x)
{
	return check_in(g, x) < 0 ? -1 : unary(g, BT_OP_RELU, x, g->nodes[x].out);
}

static int pool(struct bt_graph *g, int op, int x, int kh, int kw, int sh, int sw, int ph, int pw,
		int ceil_mode, int count_pad)
{
	struct bt_shape in, out;
	int id;
	if (check_in(g, x) < 0)
		return -1;
	in = g->nodes[x].out;
	sh = sh ? sh : kh;
	sw = sw ? sw : kw;
	if (kh <= 0 || kw <= 0 || ph * 2 > kh || pw * 2 > kw)
		return fail(g, bt_error(BT_ERR_INVALID, "%s%s: kernel %dx%d with padding %dx%d",
					g->prefix, bt_op_name(op), kh, kw, ph, pw));
	out.h = window_out(in.h, kh, sh, ph, 1, ceil_mode);
	out.w = window_out(in.w, kw, sw, pw, 1, ceil_mode);
	out.c = in.c;
	if ((id = unary(g, op, x, out)) < 0)
		return -1;
	g->nodes[id].a.pool.kh = kh;
	g->nodes[id].a.pool.kw = kw;
	g->nodes[id].a.pool.sh = sh;
	g->nodes[id].a.pool.sw = sw;
	g->nodes[id].a.pool.ph = ph;
	g->nodes[id].a.pool.pw = pw;
	g->nodes[id].a.pool.ceil = ceil_mode;
	g->nodes[id].a.pool.count_pad = count_pad;
	return id;
}

int bt_maxpool(struct bt_graph *g, int x, int k, int s, int p, int ceil_mode)
{
	return pool(g, BT_OP_MAXPOOL, x, k, k, s, s, p, p, ceil_mode, 0);
}

int bt_avgpool(struct bt_graph *g, int x, int kh, int kw, int sh, int sw, int ph, int pw,
	       int ceil_mode, int count_pad)
{
	return pool(g, BT_OP_AVGPOOL, x, kh, kw, sh, sw, ph, pw, ceil_mode, count_pad);
}

int bt_global_avgpool(struct bt_graph *g, int x)
{
	return check_in(g, x) < 0 ? -1 : unary(g, BT_OP_GLOBAL_AVGPOOL, x, (struct bt_shape){1, 1, g->nodes[x].out.c});
}

int bt_flatten(struct bt_graph *g, int x)
{
	struct bt_shape in;
	if (check_in(g, x) < 0)
		return -1;
	in = g->nodes[x].out;
	return unary(g, BT_OP_FLATTEN, x, (struct bt_shape){1, 1, in.h * in.w * in.c});
}

int bt_dropout(struct bt_graph *g, int x, float p)
{
	int id;
	if (check_in(g, x) < 0)
		return -1;
	if (!(p >= 0 && p < 1))
		return fail(g, bt_error(BT_ERR_INVALID, "%sdropout: probability %g", g->prefix, p));
	if ((id = unary(g, BT_OP_DROPOUT, x, g->nodes[x].out)) >= 0)
		g->nodes[id].a.dropout.p = p;
	return id;
}

int bt_fc(struct bt_graph *g, int x, const char *name, int cout, int bias)
{
	struct bt_shape in;
	int id;
	if (check_in(g, x) < 0)
		return -1;
	in = g->nodes[x].out;
	if (in.h != 1 || in.w != 1)
		return fail(g, bt_error(BT_ERR_INVALID, "%s%s: input %dx%dx%d is not flat (pool or flatten first)",
					g->prefix, name, in.h, in.w, in.c));
	if ((id = new_node(g, BT_OP_FC, name, (struct bt_shape){1, 1, cout})) < 0)
		return -1;
	g->nodes[id].in[0] = x;
	g->nodes[id].nin = 1;
	g->nodes[id].a.fc.cout = cout;
	g->nodes[id].a.fc.bias = bias;
	g->nodes[id].param[0] = new_param(g, id, "weight", BT_PARAM_WEIGHT, 1, 2, cout, in.c, 0, 0);
	if (bias)
		g->nodes[id].param[1] = new_param(g, id, "bias", BT_PARAM_BIAS, 1, 1, cout, 0, 0, 0);
	return g->status == BT_OK ? id : -1;
}

int bt_add(struct bt_graph *g, int a, int b)
{
	struct bt_shape sa, sb;
	int id;
	if (check_in(g, a) < 0 || check_in(g, b) < 0)
		return -1;
	sa = g->nodes[a].out;
	sb = g->nodes[b].out;
	if (sa.h != sb.h || sa.w != sb.w || sa.c != sb.c)
		return fail(g, bt_error(BT_ERR_INVALID, "%sadd: %dx%dx%d and %dx%dx%d differ", g->prefix,
					sa.h, sa.w, sa.c, sb.h, sb.w, sb.c));
	if ((id = new_node(g, BT_OP_ADD, NULL, sa)) < 0)
		return -1;
	g->nodes[id].in[0] = a;
	g->nodes[id].in[1] = b;
	g->nodes[id].nin = 2;
	return id;
}

int bt_concat(struct bt_graph *g, const int *xs, int n)
{
	struct bt_shape out;
	int id;
	if (g->status != BT_OK)
		return -1;
	if (n < 1 || n > BT_MAX_INPUTS)
		return fail(g, bt_error(BT_ERR_INVALID, "%sconcat: %d inputs (1 to %d)", g->prefix, n, BT_MAX_INPUTS));
	for (int i = 0; i < n; i++)
		if (check_in(g, xs[i]) < 0)
			return -1;
	out = g->nodes[xs[0]].out;
	out.c = 0;
	for (int i = 0; i < n; i++) {
		struct bt_shape s = g->nodes[xs[i]].out;
		if (s.h != out.h || s.w != out.w)
			return fail(g, bt_error(BT_ERR_INVALID, "%sconcat: input %d is %dx%d, the first %dx%d",
						g->prefix, i, s.h, s.w, out.h, out.w));
		out.c += s.c;
	}
	if ((id = new_node(g, BT_OP_CONCAT, NULL, out)) < 0)
		return -1;
	memcpy(g->nodes[id].in, xs, (size_t)n * sizeof *xs);
	g->nodes[id].nin = n;
	return id;
}

void bt_mark_last_bn(struct bt_graph *g, int x)
{
	if (g->status == BT_OK && x >= 0 && x < g->nnodes && g->nodes[x].op == BT_OP_BATCHNORM)
		g->nodes[x].last_bn = 1;
	else if (g->status == BT_OK)
		fail(g, bt_error(BT_ERR_INVALID, "graph: node %d is not a batch norm", x));
}

uint64_t bt_graph_node_params(const struct bt_graph *g, int node)
{
	uint64_t n = 0;
	for (int i = 0; i < 4; i++) {
		int p = g->nodes[node].param[i];
		if (p >= 0 && g->params[p].trainable)
			n += g->params[p].count;
	}
	return n;
}

uint64_t bt_graph_trainable(const struct bt_graph *g)
{
	uint64_t n = 0;
	for (int i = 0; i < g->nparams; i++)
		if (g->params[i].trainable)
			n += g->params[i].count;
	return n;
}

/* Multiply-adds counted as the usual tables do: convolutions and fully connected layers
 * only (the rest is bandwidth, not arithmetic). */
uint64_t bt_graph_node_macs(const struct bt_graph *g, int node)
{
	const struct bt_node *n = &g->nodes[node];
	if (n->op == BT_OP_CONV2D) {
		struct bt_shape in = g->nodes[n->in[0]].out;
		return (uint64_t)n->out.h * n->out.w * n->out.c * n->a.conv.kh * n->a.conv.kw *
		       (uint64_t)(in.c / n->a.conv.groups);
	}
	if (n->op == BT_OP_FC)
		return (uint64_t)g->nodes[n->in[0]].out.c * (uint64_t)n->out.c;
	return 0;
}

uint64_t bt_graph_macs(const struct bt_graph *g)
{
	uint64_t m = 0;
	for (int i = 0; i < g->nnodes; i++)
		m += bt_graph_node_macs(g, i);
	return m;
}

uint64_t bt_graph_activation_bytes(const struct bt_graph *g, int batch)
{
	uint64_t b = 0;
	for (int i = 0; i < g->nnodes; i++) {
		const struct bt_shape *s = &g->nodes[i].out;
		b += (uint64_t)s->h * s->w * s->c;
	}
	return b * (uint64_t)batch * sizeof(float);
}
