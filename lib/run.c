/* run.c: forward, loss, backward and the optimizer step of a graph on a backend.
 *
 * Each node has an output buffer and a gradient buffer of the same size (gradient buffers
 * shared by lifetime). Backward walks the nodes in reverse; the first consumer to send a
 * gradient to a node writes its buffer, later consumers (the two sides of a residual
 * addition) write into a scratch buffer that is then added, so kernels can always
 * overwrite. Every computation goes through the backend's table (backend.h); this file
 * only plans memory and decides what runs when.
 *
 * Mixed precision: every activation and gradient buffer is of the run's dtype (esize
 * bytes an element) and every op is told that dtype; the casts sit at the edges: the input
 * (float32 from the host, uploaded to in32 and cast; or a uint8 batch, which the backend's
 * input_u8 writes in the dtype directly), the logits (cast to logits32 for the
 * loss and the caller), the loss gradient (dlogits32 scaled by S and cast), and the
 * weights (the float32 arena cast to wh when it changed). Parameter gradients come back
 * float32 from the backend, straight into the gradient arena.
 */
#define _GNU_SOURCE
#include "run.h"
#include "bt.h"
#include "backend.h"
#include "rng.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct nodebuf {
	void *y;                /* (N,H,W,C) of the run's dtype */
	void *dy;               /* (N,H,W,C) likewise */
	int dy_set;             /* dy holds a gradient in this backward pass */
	float *save_mean;       /* batch norm: (C) */
	float *save_invstd;     /* batch norm: (C) */
	void *ws;               /* max pooling workspace */
	void *mask;             /* dropout: (N,H,W,C) scale of each element, 0 or 1/(1-p) */
	int y_alias;            /* y is the input's buffer (an in-place ReLU) */
	int fold;               /* conv: the batch norm folded into it for inference, -1 if none */
	float *wfold;           /* conv: (Cout, KH, KW, Cin/g) weights with the batch norm folded in */
	float *bfold;           /* conv: (Cout) bias likewise */
	void *wfold_h;          /* conv, mixed precision: wfold in the run's dtype */
	/* Fused inference (plan_fusion): what a folded convolution also does, and the nodes
	 * that then have nothing left to do. */
	int post;               /* conv: BT_CONV_POST_* flags */
	int post_dst;           /* conv with SUM: the node whose buffer it adds onto, else -1 */
	int skip;               /* a ReLU or an addition done by a convolution */
	int y_from;             /* addition: takes this node's buffer instead of its input's, or -1 */
	/* Fused training (plan_bn_relu): a batch norm and the in-place ReLU after it in one
	 * pass, when the backend has bn_relu_*. */
	int relu_of;            /* batch norm: the ReLU it does, or -1 */
	int bn_of;              /* ReLU: the batch norm that does it, or -1 */
	void *rws;              /* batch norm: the ReLU's mask (bn_relu_ws_bytes) */
	/* Fused training (plan_add_relu): a residual block's last batch norm, its addition
	 * and the ReLU after it in one pass, when the backend has bn_add_relu_*. */
	int add_bn;             /* addition: the batch norm it does, or -1 */
	int in_add;             /* batch norm: the addition that does it, or -1 */
	int add_relu;           /* ReLU: done by the addition before it */
};

struct bt_run {
	const struct bt_graph *g;
	struct bt_backend *be;
	int batch, n;
	int train;              /* the last forward pass was in training mode */
	int dtype;              /* of activations and their gradients (enum bt_dtype) */
	size_t esize;           /* bytes per element of dtype */
	float *params, *grads, *mom;
	void *wh;               /* (g->nfloats) params in dtype, for conv and fc; NULL in float32 */
	int wh_stale;           /* params may have changed since wh was cast from them */
	float *in32;            /* (batch, H, W, C) the uploaded input before its cast; half only */
	float *logits32;        /* (batch, classes) float32 logits; half only */
	float *dlogits32;       /* (batch, classes) their gradient before the cast; half only */
	struct bt_loss_scaler scaler;
	struct nodebuf *nb;
	void *scratch;          /* (largest activation) */
	void **dypool;          /* the gradient buffers nodes share by lifetime */
	int ndypool;
	int have_loss;
	int have_input;         /* the input node holds a batch, of input_n images */
	int input_n;
	int32_t *labels;        /* (batch) on the device, for the loss */
	float *soft;            /* (batch, classes) on the device */
	struct bt_sgd_range *ranges[2]; /* the optimizer's ranges, without and with no_bias_decay */
	int nranges[2];
	size_t act_bytes;
	size_t all_bytes;       /* everything xalloc has handed out (bt_run_bytes plans the same) */
	int profile;
	int fuse;               /* fuse nodes: inference (plan_fusion) and training (plan_bn_relu) */
	int fused_train;        /* the last training forward pass fused batch norm and ReLU */
	double prof_s[BT_OP_COUNT][2];
	uint64_t prof_n[BT_OP_COUNT][2];
	void **own_y;           /* (nnodes) each node's own output buffer (NULL: an alias) */
	int *infer_buf[2];      /* (nnodes) inference, unfused and fused (plan_inference): whose
				 * own buffer holds the node's output in the pass; -1 if none */
	int share_infer;        /* inference passes use infer_buf (bt_run_share_inference) */
	int infer_only;         /* made by bt_run_new_inference: no training state, and only the
				 * output buffers plan_inference needs */
	int infer_slice;        /* inference runs the batch through the nodes this many images
				 * at a time (backend's infer_slice_bytes); 0: whole */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Profiling brackets a node: on a backend that queues its work, the queue is drained
 * before the clock starts and before it stops, so the node's own execution is timed. */
static int prof_begin(struct bt_run *r, double *t0)
{
	int st = BT_OK;
	*t0 = 0;
	if (!r->profile)
		return BT_OK;
	if (r->be->i->sync)
		st = r->be->i->sync(r->be->ctx);
	*t0 = now_s();
	return st;
}

static int prof_end(struct bt_run *r, int op, int dir, double t0)
{
	int st = BT_OK;
	if (!r->profile)
		return BT_OK;
	if (r->be->i->sync)
		st = r->be->i->sync(r->be->ctx);
	r->prof_s[op][dir] += now_s() - t0;
	r->prof_n[op][dir]++;
	return st;
}

void bt_run_profile(struct bt_run *r, int on)
{
	r->profile = on;
	memset(r->prof_s, 0, sizeof r->prof_s);
	memset(r->prof_n, 0, sizeof r->prof_n);
}

void bt_run_profile_get(const struct bt_run *r, double seconds[BT_OP_COUNT][2], uint64_t calls[BT_OP_COUNT][2])
{
	memcpy(seconds, r->prof_s, sizeof r->prof_s);
	memcpy(calls, r->prof_n, sizeof r->prof_n);
}

static size_t node_elems(const struct bt_graph *g, int i, int n)
{
	const struct bt_shape *s = &g->nodes[i].out;
	return (size_t)n * s->h * s->w * s->c;
}

static void *xalloc(struct bt_run *r, size_t bytes)
{
	void *p = NULL;
	if (r->be->i->alloc(r->be->ctx, bytes, &p) < 0)
		return NULL;
	r->act_bytes += bytes;
	r->all_bytes += bytes;
	return p;
}

static void xfree(struct bt_run *r, void *p)
{
	if (p)
		r->be->i->release(r->be->ctx, p);
}

void bt_run_free(struct bt_run *r)
{
	if (!r)
		return;
	for (int i = 0; r->nb && i < r->g->nnodes; i++) {
		/* own_y, once made, says which buffers are whose (an inference pass borrows) */
		if (r->own_y)
			xfree(r, r->own_y[i]);
		else if (!r->nb[i].y_alias)
			xfree(r, r->nb[i].y);
		xfree(r, r->nb[i].save_mean);
		xfree(r, r->nb[i].save_invstd);
		xfree(r, r->nb[i].ws);
		xfree(r, r->nb[i].mask);
		xfree(r, r->nb[i].wfold);
		xfree(r, r->nb[i].bfold);
		xfree(r, r->nb[i].wfold_h);
		xfree(r, r->nb[i].rws);
	}
	for (int i = 0; i < r->ndypool; i++)
		xfree(r, r->dypool[i]);
	free(r->dypool);
	free(r->nb);
	free(r->own_y);
	free(r->infer_buf[0]);
	free(r->infer_buf[1]);
	xfree(r, r->scratch);
	xfree(r, r->params);
	xfree(r, r->grads);
	xfree(r, r->mom);
	xfree(r, r->labels);
	xfree(r, r->soft);
	xfree(r, r->wh);
	xfree(r, r->in32);
	xfree(r, r->logits32);
	xfree(r, r->dlogits32);
	free(r->ranges[0]);
	free(r->ranges[1]);
	free(r);
}

static void conv_desc(const struct bt_graph *g, const struct bt_node *nd, int n, int dtype,
		      struct bt_conv_desc *d)
{
	struct bt_shape in = g->nodes[nd->in[0]].out;
	*d = (struct bt_conv_desc){
		.n = n, .h = in.h, .w = in.w, .c = in.c, .oh = nd->out.h, .ow = nd->out.w,
		.cout = nd->out.c, .kh = nd->a.conv.kh, .kw = nd->a.conv.kw, .sh = nd->a.conv.sh,
		.sw = nd->a.conv.sw, .ph = nd->a.conv.ph, .pw = nd->a.conv.pw, .dh = nd->a.conv.dh,
		.dw = nd->a.conv.dw, .groups = nd->a.conv.groups, .bias = nd->a.conv.bias,
		.dtype = dtype,
	};
}

static void pool_desc(const struct bt_graph *g, const struct bt_node *nd, int n, int dtype,
		      struct bt_pool_desc *d)
{
	struct bt_shape in = g->nodes[nd->in[0]].out;
	*d = (struct bt_pool_desc){
		.n = n, .h = in.h, .w = in.w, .c = in.c, .oh = nd->out.h, .ow = nd->out.w,
		.kh = nd->a.pool.kh, .kw = nd->a.pool.kw, .sh = nd->a.pool.sh, .sw = nd->a.pool.sw,
		.ph = nd->a.pool.ph, .pw = nd->a.pool.pw, .max = nd->op == BT_OP_MAXPOOL,
		.count_pad = nd->a.pool.count_pad, .dtype = dtype,
	};
}

static void bn_desc(const struct bt_node *nd, int n, int dtype, struct bt_bn_desc *d)
{
	*d = (struct bt_bn_desc){.n = n, .h = nd->out.h, .w = nd->out.w, .c = nd->out.c,
				 .eps = nd->a.bn.eps, .momentum = nd->a.bn.momentum, .dtype = dtype};
}

/* Training: a batch norm whose only reader is a ReLU working in place on its output runs
 * as one op with it (the backend's bn_relu_*), and in backward the ReLU's gradient buffer
 * passes to the batch norm unmasked (plan_gradients), the mask coming from the workspace. */
static int plan_bn_relu(struct bt_run *r)
{
	const struct bt_graph *g = r->g;
	const struct bt_backend_i *be = r->be->i;

	for (int i = 0; i < g->nnodes; i++)
		r->nb[i].relu_of = r->nb[i].bn_of = -1;
	if (!be->bn_relu_ws_bytes || !be->bn_relu_fwd_train || !be->bn_relu_bwd)
		return BT_OK;
	for (int k = 0; k < g->nnodes; k++) {
		const struct bt_node *nd = &g->nodes[k];
		int b = nd->nin ? nd->in[0] : -1;
		struct bt_bn_desc d;
		size_t ws;
		if (nd->op != BT_OP_RELU || !r->nb[k].y_alias || g->nodes[b].op != BT_OP_BATCHNORM)
			continue;
		bn_desc(&g->nodes[b], r->batch, r->dtype, &d);
		if (!(ws = be->bn_relu_ws_bytes(r->be->ctx, &d)))
			continue;
		if (!(r->nb[b].rws = xalloc(r, ws)))
			return bt_error(BT_ERR_NOMEM, "out of memory for a batch of %d", r->batch);
		r->nb[b].relu_of = k;
		r->nb[k].bn_of = b;
	}
	return BT_OK;
}

/* Training: an addition of a batch norm's output (read by nothing else) and another tensor,
 * followed by a ReLU working in place on the sum, runs as one op (the backend's
 * bn_add_relu_*) at the addition, writing the ReLU's output into the sum's buffer; the
 * batch norm and the ReLU then have nothing to do in forward. Backward is unchanged: the
 * ReLU's reads its output, the addition's nothing and the batch norm's its input. Planned
 * only where the sum's buffer is not the other operand's (the op may not write over z). */
static int alias_root(const struct bt_run *r, int i);

static int plan_add_relu(struct bt_run *r, const int *nreaders)
{
	const struct bt_graph *g = r->g;
	const struct bt_backend_i *be = r->be->i;

	for (int i = 0; i < g->nnodes; i++)
		r->nb[i].add_bn = r->nb[i].in_add = r->nb[i].add_relu = -1;
	if (!be->bn_add_relu_ok || !be->bn_add_relu_fwd_train)
		return BT_OK;
	for (int k = 0; k < g->nnodes; k++) {
		const struct bt_node *nd = &g->nodes[k];
		int a = nd->nin ? nd->in[0] : -1;
		if (nd->op != BT_OP_RELU || !r->nb[k].y_alias || g->nodes[a].op != BT_OP_ADD ||
		    g->nodes[a].nin != 2 || nreaders[a] != 1)
			continue;
		for (int s = 0; s < 2; s++) {
			int bn = g->nodes[a].in[s], z = g->nodes[a].in[1 - s];
			struct bt_bn_desc d;
			if (bn == z || g->nodes[bn].op != BT_OP_BATCHNORM || nreaders[bn] != 1 ||
			    r->nb[bn].relu_of >= 0 || node_elems(g, bn, 1) != node_elems(g, a, 1) ||
			    alias_root(r, a) == alias_root(r, z))
				continue;
			bn_desc(&g->nodes[bn], r->batch, r->dtype, &d);
			if (!be->bn_add_relu_ok(r->be->ctx, &d))
				continue;
			r->nb[a].add_bn = bn;
			r->nb[bn].in_add = a;
			r->nb[k].add_relu = a;
			break;
		}
	}
	return BT_OK;
}

/* Gradient buffers by lifetime. In backward, node i's gradient is first written by its
 * last consumer (the highest node index that reads it; the loss for the output) and last
 * read by node i's own backward, so walking the nodes backwards, a buffer is taken when a
 * gradient is first needed and given back once its node is done. Activations die in
 * backward too: node j's output is last read by node j's own backward (its consumers,
 * which read it as their input, come later in the graph and so earlier in backward), so
 * from then on its buffer serves gradients as well. A gradient takes the smallest free
 * buffer it fits, and a new one only when none does. The logits are kept readable. */
/* An addition j whose two inputs can both take over its gradient buffer: the one read first
 * in backward (the higher index, hi) is read by the addition alone and does not write the
 * other's gradient, and every other reader of the other (lo), whose backward adds into
 * that buffer, comes before hi in the graph, so after hi's backward has read it. Then
 * hi reads the sum's gradient as it is, and lo reads it plus what its other readers add:
 * no copy. 1 when so, with hi and lo set. */
static int add_shares(const struct bt_run *r, int j, const int *nreaders, int *hi, int *lo)
{
	const struct bt_graph *g = r->g;
	const struct bt_node *nd = &g->nodes[j];
	size_t need = node_elems(g, j, r->batch);
	int h, l;

	if (nd->op != BT_OP_ADD || nd->nin != 2 || nd->in[0] == nd->in[1])
		return 0;
	h = nd->in[0] > nd->in[1] ? nd->in[0] : nd->in[1];
	l = nd->in[0] > nd->in[1] ? nd->in[1] : nd->in[0];
	/* hi must read the buffer and pass nothing on in it: not an addition or a fused ReLU,
	 * which would hand it to their own input, whose other readers would then add in. */
	if (nreaders[h] != 1 || g->nodes[l].op == BT_OP_INPUT || g->nodes[h].op == BT_OP_INPUT ||
	    g->nodes[h].op == BT_OP_ADD || r->nb[h].bn_of >= 0 ||
	    node_elems(g, h, r->batch) != need || node_elems(g, l, r->batch) != need)
		return 0;
	for (int k = 0; k < g->nodes[h].nin; k++)
		if (g->nodes[h].in[k] == l)
			return 0;
	for (int i = h + 1; i < j; i++)
		for (int k = 0; k < g->nodes[i].nin; k++)
			if (g->nodes[i].in[k] == l)
				return 0;
	*hi = h;
	*lo = l;
	return 1;
}

static int plan_gradients(struct bt_run *r, const int *nreaders)
{
	const struct bt_graph *g = r->g;
	/* refs: the nodes whose gradient the buffer holds and that have yet to read it */
	struct slot { void *p; size_t cap; int refs; } *pool = NULL;
	int *owner = NULL, npool = 0, st = BT_OK;

	owner = malloc((size_t)g->nnodes * sizeof *owner);
	pool = calloc(2 * (size_t)g->nnodes + 1, sizeof *pool);
	r->dypool = calloc((size_t)g->nnodes + 1, sizeof *r->dypool);
	if (!owner || !pool || !r->dypool) {
		st = bt_error(BT_ERR_NOMEM, "out of memory planning gradients");
		goto out;
	}
	for (int i = 0; i < g->nnodes; i++)
		owner[i] = -1;
	for (int j = g->nnodes - 1; j >= -1; j--) {
		/* j = nnodes - 1 first takes the output's gradient (written by the loss). */
		int want[BT_MAX_INPUTS + 1], nwant = 0;
		if (j == g->nnodes - 1)
			want[nwant++] = g->output;
		if (j >= 0)
			for (int k = 0; k < g->nodes[j].nin; k++)
				want[nwant++] = g->nodes[j].in[k];
		int handed = 0, hi, lo;
		if (j >= 0 && owner[j] >= 0 && add_shares(r, j, nreaders, &hi, &lo) && owner[hi] < 0 &&
		    owner[lo] < 0) {
			handed = 1;
			owner[hi] = owner[lo] = owner[j];
			pool[owner[j]].refs++; /* j's reference passes to one, the other is new */
			r->nb[hi].dy = r->nb[lo].dy = r->nb[j].dy;
			nwant = 0;
		}
		for (int k = 0; k < nwant; k++) {
			int in = want[k], best = -1;
			size_t need = node_elems(g, in, r->batch);
			if (owner[in] >= 0 || g->nodes[in].op == BT_OP_INPUT)
				continue;
			/* An addition passes its gradient to its inputs unchanged. The first input
			 * it is the first writer for (no other reader comes later) takes over the
			 * sum's own buffer, which dies with this step, instead of a copy of it.
			 * A ReLU done by its batch norm (plan_bn_relu) hands its buffer over the
			 * same way: in place when not fused, unchanged when fused. */
			if (j >= 0 && (g->nodes[j].op == BT_OP_ADD || r->nb[j].bn_of == in) && !handed &&
			    owner[j] >= 0 && need == node_elems(g, j, r->batch)) {
				handed = 1;
				owner[in] = owner[j];
				r->nb[in].dy = r->nb[j].dy;
				continue;
			}
			for (int b = 0; b < npool; b++)
				if (!pool[b].refs && pool[b].cap >= need && (best < 0 || pool[b].cap < pool[best].cap))
					best = b;
			if (best < 0) {
				void *p = xalloc(r, need * r->esize);
				if (!p) {
					st = bt_error(BT_ERR_NOMEM, "out of memory for gradients of a batch of %d", r->batch);
					goto out;
				}
				r->dypool[r->ndypool++] = p;
				pool[npool] = (struct slot){p, need, 0};
				best = npool++;
			}
			pool[best].refs = 1;
			owner[in] = best;
			r->nb[in].dy = pool[best].p;
		}
		if (j < 0)
			continue;
		if (owner[j] >= 0 && !handed)
			pool[owner[j]].refs--;
		/* An in-place ReLU shares its input's buffer, which dies with that input (an
		 * earlier node, so later in backward); the input node and the logits stay. */
		if (!r->nb[j].y_alias && j != g->output && g->nodes[j].op != BT_OP_INPUT)
			pool[npool++] = (struct slot){r->nb[j].y, node_elems(g, j, r->batch), 0};
	}
	/* The input's gradient is never computed; give it the scratch so kernels that
	 * write one anyway (a batch norm right on the input) have somewhere to. */
	r->nb[g->input].dy = r->scratch;
out:
	free(owner);
	free(pool);
	return st;
}

/* The optimizer's ranges: consecutive trainable tensors with the same decay rule merge
 * into one (the alignment gaps between them hold zeros in every arena, which the update
 * keeps at zero); a running statistic between them ends a range. */
static void plan_ranges(struct bt_run *r, int no_bias_decay)
{
	const struct bt_graph *g = r->g;
	struct bt_sgd_range *rg = r->ranges[no_bias_decay];
	int nr = 0, prev_trainable = 0;
	for (int i = 0; i < g->nparams; i++) {
		const struct bt_param *p = &g->params[i];
		int decay = !(no_bias_decay && p->kind != BT_PARAM_WEIGHT);
		if (!p->trainable) {
			prev_trainable = 0;
			continue;
		}
		if (nr && prev_trainable && rg[nr - 1].decay == decay)
			rg[nr - 1].count = p->offset + p->count - rg[nr - 1].offset;
		else
			rg[nr++] = (struct bt_sgd_range){p->offset, p->count, decay};
		prev_trainable = 1;
	}
	r->nranges[no_bias_decay] = nr;
}

/* The node whose buffer node i's output lives in (in-place nodes share their input's). */
static int alias_root(const struct bt_run *r, int i)
{
	while (r->nb[i].y_alias)
		i = r->g->nodes[i].in[0];
	return i;
}

/* The convolution a batch norm i is folded into for inference, or -1. */
static int folded_conv(const struct bt_run *r, int i)
{
	const struct bt_node *nd = &r->g->nodes[i];
	return nd->op == BT_OP_BATCHNORM && r->nb[nd->in[0]].fold == i ? nd->in[0] : -1;
}

/* Inference with folded batch norms goes further: a convolution takes over the ReLU after
 * it, and the residual addition after it (and that addition's ReLU), as post-operations
 * (BT_CONV_POST_*), so a ResNet block is its convolutions alone. An in-place ReLU on a
 * folded batch norm becomes the convolution's RELU. An addition p + q (in place into p)
 * becomes a SUM:
 *  - when q is a folded batch norm read by the addition alone and its convolution runs
 *    after p is final (a downsampling shortcut built after the block's last batch norm):
 *    that convolution adds onto p's buffer, which is the addition's;
 *  - else when p's convolution runs after q is final, the addition is q's last reader,
 *    and q is neither the input nor the output (an identity shortcut): p's convolution
 *    adds onto q's buffer, which the addition (and an in-place ReLU after it) then takes
 *    over for that pass: q is dead by then, as inference keeps nothing for a backward.
 * Either way the convolution must not read the buffer it adds onto. Training and
 * bt_run_fuse(r, 0) use none of it. */
static int plan_fusion(struct bt_run *r, const int *nreaders)
{
	const struct bt_graph *g = r->g;
	int *last = malloc((size_t)g->nnodes * sizeof *last);

	if (!last)
		return bt_error(BT_ERR_NOMEM, "out of memory planning inference");
	for (int i = 0; i < g->nnodes; i++) {
		last[i] = -1;
		r->nb[i].post = r->nb[i].skip = 0;
		r->nb[i].post_dst = r->nb[i].y_from = -1;
	}
	for (int i = 0; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i].nin; k++)
			last[g->nodes[i].in[k]] = i;
	for (int a = 0; a < g->nnodes; a++) {
		const struct bt_node *nd = &g->nodes[a];
		int c, p, q, cp, cq, relu;
		if (nd->op == BT_OP_RELU && r->nb[a].y_alias && (c = folded_conv(r, nd->in[0])) >= 0 &&
		    !r->nb[c].post) {
			r->nb[c].post = BT_CONV_POST_RELU;
			r->nb[a].skip = 1;
			continue;
		}
		if (nd->op != BT_OP_ADD || nd->nin != 2 || !r->nb[a].y_alias)
			continue;
		p = nd->in[0];
		q = nd->in[1];
		cp = folded_conv(r, p);
		cq = folded_conv(r, q);
		if (cq >= 0 && nreaders[q] == 1 && cq > p && !r->nb[cq].post &&
		    alias_root(r, g->nodes[cq].in[0]) != alias_root(r, p)) {
			c = cq;
			r->nb[c].post_dst = p;
		} else if (cp >= 0 && cp > q && last[q] == a && q != g->input && q != g->output &&
			   !r->nb[cp].post && alias_root(r, g->nodes[cp].in[0]) != alias_root(r, q)) {
			c = cp;
			r->nb[c].post_dst = q;
			r->nb[a].y_from = q;
		} else {
			continue;
		}
		r->nb[c].post = BT_CONV_POST_SUM;
		r->nb[a].skip = 1;
		relu = last[a];
		if (nreaders[a] == 1 && relu >= 0 && g->nodes[relu].op == BT_OP_RELU && r->nb[relu].y_alias) {
			r->nb[c].post |= BT_CONV_POST_RELU;
			r->nb[relu].skip = 1;
		}
	}
	free(last);
	return BT_OK;
}

/* Inference buffers by lifetime. A training pass keeps every output for backward, so each
 * node has its own buffer; an inference pass needs an output only until its last reader,
 * and writing each layer into a buffer of its own sends the pass through several times the
 * memory the caches hold (measured: the 1x28x28 network's first convolution 2-3x slower in
 * the network than alone). So the pass borrows the nodes' own buffers by lifetime: walking
 * the pass as forward() runs it (fused or not), each buffer the pass writes (a node's, or
 * the one a folded convolution writes into) takes the most recently freed one it fits, which
 * is the most likely still in cache, or its own when none fits, and gives it back after its
 * last reader. The input and the logits keep their own. No memory is added; the pass only
 * overwrites outputs of the last training pass, as it always did. use[i] is the node whose
 * own buffer node i's output is in (i when its own), -1 for nodes whose output is an alias
 * or never written. */
static int plan_inference(struct bt_run *r, int fused, int *use)
{
	const struct bt_graph *g = r->g;
	const int N = g->nnodes;
	int *owner = malloc((size_t)N * sizeof *owner), *first = malloc((size_t)N * sizeof *first);
	int *last = malloc((size_t)N * sizeof *last), *freed = malloc((size_t)N * sizeof *freed);
	int nfreed = 0, st = BT_OK;

	if (!owner || !first || !last || !freed) {
		st = bt_error(BT_ERR_NOMEM, "out of memory planning inference buffers");
		goto out;
	}

	for (int i = 0; i < N; i++) {
		owner[i] = i;
		first[i] = last[i] = use[i] = -1;
	}
#define TOUCH(k, t) do { int o_ = owner[k]; if (first[o_] < 0) first[o_] = (t); \
			 if ((t) > last[o_]) last[o_] = (t); } while (0)
	for (int i = 0; i < N; i++) {
		const struct bt_node *nd = &g->nodes[i];
		const struct nodebuf *b = &r->nb[i];
		if (b->y_alias)
			owner[i] = fused && b->y_from >= 0 ? owner[b->y_from] : owner[nd->in[0]];
		if (fused && b->skip)
			continue;
		if (nd->op == BT_OP_CONV2D && fused && b->fold >= 0) {
			TOUCH(nd->in[0], i);
			TOUCH(b->post_dst >= 0 ? b->post_dst : b->fold, i);
			continue;
		}
		if (nd->op == BT_OP_BATCHNORM && fused && r->nb[nd->in[0]].fold == i)
			continue;
		for (int k = 0; k < nd->nin; k++)
			TOUCH(nd->in[k], i);
		TOUCH(i, i);
	}
#undef TOUCH
	last[owner[g->output]] = N; /* read after the pass */
	/* An inference-only run has no buffer until a plan needs one: what an earlier plan
	 * (the other fuse mode) made is free to this one from the start. */
	if (r->infer_only)
		for (int i = 0; i < N; i++)
			if (r->own_y[i] && i != g->input && i != owner[g->output])
				freed[nfreed++] = i;
	for (int t = 0; t < N; t++) {
		for (int o = 0; o < N; o++) {
			size_t need = node_elems(g, o, r->batch);
			int k;
			if (first[o] != t)
				continue;
			use[o] = o;
			if (r->infer_only && !r->own_y[o] && (o == g->input || o == owner[g->output]) &&
			    !(r->own_y[o] = r->nb[o].y = xalloc(r, need * r->esize))) {
				st = bt_error(BT_ERR_NOMEM, "out of memory for a batch of %d", r->batch);
				goto out;
			}
			if (o == g->input || o == owner[g->output])
				continue;
			for (k = nfreed - 1; k >= 0; k--)
				if (node_elems(g, freed[k], r->batch) >= need)
					break;
			if (k >= 0) {
				use[o] = freed[k];
				memmove(freed + k, freed + k + 1, (size_t)(nfreed - k - 1) * sizeof *freed);
				nfreed--;
			} else if (!r->own_y[o] && !(r->own_y[o] = r->nb[o].y = xalloc(r, need * r->esize))) {
				st = bt_error(BT_ERR_NOMEM, "out of memory for a batch of %d", r->batch);
				goto out;
			}
		}
		for (int o = 0; o < N; o++)
			if (last[o] == t && first[o] >= 0 && o != g->input && o != owner[g->output] &&
			    use[o] >= 0 && r->own_y[use[o]])
				freed[nfreed++] = use[o];
	}
	/* An alias's output is its root's: forward() sets it from there on every pass. */
	for (int i = 0; i < N; i++)
		if (owner[i] != i)
			use[i] = -1;
out:
	free(owner);
	free(first);
	free(last);
	free(freed);
	return st;
}

int bt_run_new(struct bt_run **out, const struct bt_graph *g, struct bt_backend *be, int batch)
{
	return bt_run_new_dtype(out, g, be, batch, BT_DTYPE_F32);
}

static int run_new(struct bt_run **out, const struct bt_graph *g, struct bt_backend *be, int batch,
		   int dtype, int infer_only)
{
	struct bt_run *r;
	size_t maxel = 0, K = g->status == BT_OK && g->output >= 0 ? (size_t)g->nodes[g->output].out.c : 0;
	int *nreaders = NULL, half = dtype != BT_DTYPE_F32;
	int st = BT_OK;

	*out = NULL;
	if (g->status != BT_OK || g->output < 0 || g->input < 0 || batch < 1)
		return bt_error(BT_ERR_INVALID, "run: the graph is incomplete or the batch size is %d", batch);
	if (!bt_dtype_size(dtype))
		return bt_error(BT_ERR_INVALID, "run: unknown dtype %d", dtype);
	if (!be->i->supports(be->ctx, dtype))
		return bt_error(BT_ERR_UNSUPPORTED, "%s needs %s: the %s backend does not compute in it here",
				bt_dtype_name(dtype),
				dtype == BT_DTYPE_BF16 ? "a CPU with AVX-512 BF16 or --device cuda" : "--device cuda",
				be->i->name);
	if (!(r = calloc(1, sizeof *r)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	r->g = g;
	r->be = be;
	r->batch = batch;
	r->dtype = dtype;
	r->esize = bt_dtype_size(dtype);
	r->infer_only = infer_only;
	bt_loss_scaler_init(&r->scaler, dtype);
	r->params = xalloc(r, g->nfloats * sizeof(float));
	if (!infer_only) {
		r->grads = xalloc(r, g->nfloats * sizeof(float));
		r->mom = xalloc(r, g->nfloats * sizeof(float));
		r->labels = xalloc(r, (size_t)batch * sizeof(int32_t));
		r->soft = xalloc(r, (size_t)batch * K * sizeof(float));
	}
	r->wh = half ? xalloc(r, g->nfloats * r->esize) : NULL;
	r->nb = calloc((size_t)g->nnodes, sizeof *r->nb);
	r->ranges[0] = malloc(((size_t)g->nparams + 1) * sizeof *r->ranges[0]);
	r->ranges[1] = malloc(((size_t)g->nparams + 1) * sizeof *r->ranges[1]);
	r->act_bytes = 0; /* count activations only */
	if (!r->params || (!infer_only && (!r->grads || !r->mom || !r->labels || !r->soft)) ||
	    (half && !r->wh) || !r->nb || !r->ranges[0] || !r->ranges[1])
		goto nomem;
	if (half) {
		const struct bt_shape *in = &g->nodes[g->input].out;
		if (!(r->in32 = xalloc(r, (size_t)batch * in->h * in->w * in->c * sizeof(float))) ||
		    !(r->logits32 = xalloc(r, (size_t)batch * K * sizeof(float))) ||
		    (!infer_only && !(r->dlogits32 = xalloc(r, (size_t)batch * K * sizeof(float)))))
			goto nomem;
	}
	r->wh_stale = 1;
	if ((st = be->i->zero(be->ctx, r->params, g->nfloats * sizeof(float))) < 0 ||
	    (!infer_only && (st = be->i->zero(be->ctx, r->grads, g->nfloats * sizeof(float))) < 0) ||
	    (!infer_only && (st = be->i->zero(be->ctx, r->mom, g->nfloats * sizeof(float))) < 0))
		goto fail;
	if (!(nreaders = calloc((size_t)g->nnodes, sizeof *nreaders)))
		goto nomem;
	for (int i = 0; i < g->nnodes; i++)
		for (int k = 0; k < g->nodes[i].nin; k++)
			nreaders[g->nodes[i].in[k]]++;
	r->fuse = 1;
	r->share_infer = 1;
	for (int i = 0; i < g->nnodes; i++)
		r->nb[i].fold = -1;
	for (int i = 0; i < g->nnodes; i++) {
		const struct bt_node *nd = &g->nodes[i];
		size_t el = node_elems(g, i, batch);
		struct nodebuf *b = &r->nb[i];
		/* A batch norm whose input is a convolution read by nothing else folds into that
		 * convolution's weights and bias in inference: one pass over the activations
		 * fewer (the folded weights are made at the first inference pass). */
		if (nd->op == BT_OP_BATCHNORM && g->nodes[nd->in[0]].op == BT_OP_CONV2D &&
		    nreaders[nd->in[0]] == 1)
			r->nb[nd->in[0]].fold = i;
		if (el > maxel)
			maxel = el;
		/* A ReLU, or a residual addition (into its first operand), may overwrite its
		 * input when it is that input's only reader and the input's own backward needs
		 * its input, not its output (convolution, batch norm, addition): ReLU's backward
		 * needs only ReLU's output and addition's nothing. In a ResNet block the last
		 * batch norm, the addition and the ReLU then share one buffer, as PyTorch's
		 * in-place `out += identity; relu_(out)` do. */
		if ((nd->op == BT_OP_RELU || nd->op == BT_OP_ADD) && nreaders[nd->in[0]] == 1 &&
		    nd->in[0] != g->output &&
		    (g->nodes[nd->in[0]].op == BT_OP_CONV2D || g->nodes[nd->in[0]].op == BT_OP_BATCHNORM ||
		     (nd->op == BT_OP_RELU && g->nodes[nd->in[0]].op == BT_OP_ADD))) {
			b->y = r->nb[nd->in[0]].y;
			b->y_alias = 1;
		} else if (!infer_only && !(b->y = xalloc(r, el * r->esize))) {
			goto nomem; /* inference only: plan_inference makes the buffers it needs */
		}
		if (nd->op == BT_OP_BATCHNORM && !infer_only &&
		    (!(b->save_mean = xalloc(r, (size_t)nd->out.c * sizeof(float))) ||
		     !(b->save_invstd = xalloc(r, (size_t)nd->out.c * sizeof(float)))))
			goto nomem;
		if (nd->op == BT_OP_MAXPOOL) {
			struct bt_pool_desc d;
			pool_desc(g, nd, batch, dtype, &d);
			if (!(b->ws = xalloc(r, be->i->pool_ws_bytes(be->ctx, &d))))
				goto nomem;
		}
		if (nd->op == BT_OP_DROPOUT && !infer_only && !(b->mask = xalloc(r, el * r->esize)))
			goto nomem;
	}
	if (!infer_only && !(r->scratch = xalloc(r, maxel * r->esize))) /* backward only */
		goto nomem;
	if (infer_only) {
		for (int i = 0; i < g->nnodes; i++) {
			r->nb[i].relu_of = r->nb[i].bn_of = -1;
			r->nb[i].add_bn = r->nb[i].in_add = r->nb[i].add_relu = -1;
		}
		if ((st = plan_fusion(r, nreaders)) < 0)
			goto fail;
	} else if ((st = plan_bn_relu(r)) < 0 || (st = plan_add_relu(r, nreaders)) < 0 ||
		   (st = plan_gradients(r, nreaders)) < 0 ||
		   (st = plan_fusion(r, nreaders)) < 0) {
		goto fail;
	}
	if ((r->own_y = calloc((size_t)g->nnodes, sizeof *r->own_y)))
		for (int i = 0; i < g->nnodes; i++)
			r->own_y[i] = r->nb[i].y_alias ? NULL : r->nb[i].y;
	r->infer_buf[0] = malloc((size_t)g->nnodes * sizeof *r->infer_buf[0]);
	r->infer_buf[1] = malloc((size_t)g->nnodes * sizeof *r->infer_buf[1]);
	if (!r->own_y || !r->infer_buf[0] || !r->infer_buf[1]) {
		st = bt_error(BT_ERR_NOMEM, "out of memory planning inference buffers");
		goto fail;
	}
	if ((st = plan_inference(r, 0, r->infer_buf[0])) < 0 ||
	    (st = plan_inference(r, 1, r->infer_buf[1])) < 0)
		goto fail;
	/* Slices of at least 16 images (fewer would cost more in calls than the caches save);
	 * the input and the logits must be buffers of their own, as plan_inference makes them.
	 * BT_INFER_SLICE=N sets the images of a slice (0: whole batches), to compare. */
	if (be->i->infer_slice_bytes && !r->nb[g->output].y_alias && r->own_y[g->input] &&
	    r->own_y[g->output]) {
		size_t most = 1;
		const char *e = getenv("BT_INFER_SLICE");
		for (int i = 0; i < g->nnodes; i++)
			if (node_elems(g, i, 1) * r->esize > most)
				most = node_elems(g, i, 1) * r->esize;
		r->infer_slice = (int)(be->i->infer_slice_bytes / most < 16 ? 16 : be->i->infer_slice_bytes / most);
		if (e && *e)
			r->infer_slice = atoi(e);
		if (r->infer_slice >= batch || r->infer_slice < 0)
			r->infer_slice = 0;
	}
	plan_ranges(r, 0);
	plan_ranges(r, 1);
	free(nreaders);
	*out = r;
	return st;
nomem:
	st = bt_error(BT_ERR_NOMEM, "out of memory for a batch of %d (%zu bytes so far)", batch, r->act_bytes);
fail:
	free(nreaders);
	bt_run_free(r);
	return st;
}

/* The caller may write the master arena through this pointer: the half copy is remade. */
float *bt_run_params(struct bt_run *r)
{
	r->wh_stale = 1;
	return r->params;
}

float *bt_run_grads(struct bt_run *r) { return r->grads; }
float *bt_run_momentum(struct bt_run *r) { return r->mom; }
int bt_run_dtype(const struct bt_run *r) { return r->dtype; }
size_t bt_run_activation_bytes(const struct bt_run *r) { return r->act_bytes; }

/* ---- memory estimates ------------------------------------------------------------------
 * A run's allocations follow from the graph, the batch and the dtype alone, so planning one
 * on a backend whose alloc only counts (and hands out distinct fake addresses, which the
 * planner compares but never touches) gives the bytes the real backend would be asked for. */
struct counting {
	struct bt_backend *real;
	size_t bytes;
	uintptr_t next;
};

static int cnt_supports(void *ctx, int dtype)
{
	struct bt_backend *be = ((struct counting *)ctx)->real;
	return be->i->supports(be->ctx, dtype);
}

static int cnt_alloc(void *ctx, size_t bytes, void **p)
{
	struct counting *c = ctx;
	c->bytes += bytes;
	c->next += 64;
	*p = (void *)c->next;
	return BT_OK;
}

static void cnt_release(void *ctx, void *p)
{
	(void)ctx;
	(void)p;
}

static int cnt_zero(void *ctx, void *p, size_t bytes)
{
	(void)ctx;
	(void)p;
	(void)bytes;
	return BT_OK;
}

static size_t cnt_pool_ws_bytes(void *ctx, const struct bt_pool_desc *d)
{
	struct bt_backend *be = ((struct counting *)ctx)->real;
	return be->i->pool_ws_bytes(be->ctx, d);
}

static size_t cnt_bn_relu_ws_bytes(void *ctx, const struct bt_bn_desc *d)
{
	struct bt_backend *be = ((struct counting *)ctx)->real;
	return be->i->bn_relu_ws_bytes ? be->i->bn_relu_ws_bytes(be->ctx, d) : 0;
}

static int cnt_bn_add_relu_ok(void *ctx, const struct bt_bn_desc *d)
{
	struct bt_backend *be = ((struct counting *)ctx)->real;
	return be->i->bn_add_relu_ok(be->ctx, d);
}

static int run_bytes(const struct bt_graph *g, struct bt_backend *be, int batch, int dtype, int infer_only,
		     size_t *bytes)
{
	struct bt_backend_i counting_i = {
		.name = "counting", .supports = cnt_supports, .alloc = cnt_alloc,
		.release = cnt_release, .zero = cnt_zero, .pool_ws_bytes = cnt_pool_ws_bytes,
		/* planned as the real backend plans them; the planner calls neither */
		.bn_relu_ws_bytes = be->i->bn_relu_ws_bytes ? cnt_bn_relu_ws_bytes : NULL,
		.bn_relu_fwd_train = be->i->bn_relu_fwd_train, .bn_relu_bwd = be->i->bn_relu_bwd,
		.bn_add_relu_ok = be->i->bn_add_relu_ok ? cnt_bn_add_relu_ok : NULL,
		.bn_add_relu_fwd_train = be->i->bn_add_relu_fwd_train,
	};
	struct counting c = { be, 0, 4096 };
	struct bt_backend cb = { &counting_i, &c };
	struct bt_run *r = NULL;
	int st = run_new(&r, g, &cb, batch, dtype, infer_only);
	if (st == BT_OK) {
		*bytes = c.bytes;
		bt_run_free(r);
	}
	return st;
}

int bt_run_bytes(const struct bt_graph *g, struct bt_backend *be, int batch, int dtype, size_t *bytes)
{
	return run_bytes(g, be, batch, dtype, 0, bytes);
}

static int batch_fitting(const struct bt_graph *g, struct bt_backend *be, int dtype, int infer_only,
			 size_t budget, int max)
{
	int lo = 0, hi = max; /* bytes(lo) fits (0 trivially), bytes(hi + 1) does not */
	size_t b;
	while (lo < hi) {
		int mid = lo + (hi - lo + 1) / 2;
		if (run_bytes(g, be, mid, dtype, infer_only, &b) == BT_OK && b <= budget)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

int bt_run_batch_fitting(const struct bt_graph *g, struct bt_backend *be, int dtype, size_t budget, int max)
{
	return batch_fitting(g, be, dtype, 0, budget, max);
}

static const char *gib(size_t bytes, char *buf, size_t len)
{
	if (bytes >= (size_t)1 << 30)
		snprintf(buf, len, "%.1f GiB", bytes / (double)(1 << 30));
	else
		snprintf(buf, len, "%.0f MiB", bytes / (double)(1 << 20));
	return buf;
}

/* An allocation failed while making a run: say how much the batch needs, how much the
 * backend has free, and the largest batch that should fit in 90 % of that (the rest for
 * what comes later: convolution workspaces, folded weights, the libraries' own buffers). */
static int explain_nomem(const struct bt_graph *g, struct bt_backend *be, int batch, int dtype,
			 int infer_only)
{
	char why[256], a[32], b[32];
	size_t need = 0, avail = 0;
	int fit;

	snprintf(why, sizeof why, "%s", bt_errmsg());
	if (run_bytes(g, be, batch, dtype, infer_only, &need) < 0 || !be->i->available ||
	    be->i->available(be->ctx, &avail) < 0)
		return bt_error(BT_ERR_NOMEM, "%s", why);
	fit = batch_fitting(g, be, dtype, infer_only, avail / 10 * 9, batch - 1);
	if (fit < 1)
		return bt_error(BT_ERR_NOMEM,
				"out of %s memory: a batch of %d needs about %s, %s is free, not enough for a batch of 1",
				be->i->name, batch, gib(need, a, sizeof a), gib(avail, b, sizeof b));
	return bt_error(BT_ERR_NOMEM,
			"out of %s memory: a batch of %d needs about %s, %s is free; a batch of %d should fit",
			be->i->name, batch, gib(need, a, sizeof a), gib(avail, b, sizeof b), fit);
}

/* run_new, refusing a run that leaves less than 5 % of its size free: it would fail at its
 * first steps (workspaces, kernels; oneDNN crashes when its code generator cannot
 * allocate). Running out of memory is explained with the batch that should fit. */
static int run_new_checked(struct bt_run **out, const struct bt_graph *g, struct bt_backend *be, int batch,
			   int dtype, int infer_only)
{
	size_t avail = 0;
	int st = run_new(out, g, be, batch, dtype, infer_only);
	if (st == BT_OK && be->i->available && be->i->available(be->ctx, &avail) == BT_OK &&
	    avail < (*out)->all_bytes / 20) {
		bt_run_free(*out);
		*out = NULL;
		st = bt_error(BT_ERR_NOMEM, "a batch of %d leaves too little memory for its first steps",
			      batch);
	}
	return st == BT_ERR_NOMEM ? explain_nomem(g, be, batch, dtype, infer_only) : st;
}

int bt_run_new_dtype(struct bt_run **out, const struct bt_graph *g, struct bt_backend *be, int batch,
		     int dtype)
{
	return run_new_checked(out, g, be, batch, dtype, 0);
}

int bt_run_new_inference(struct bt_run **out, const struct bt_graph *g, struct bt_backend *be, int batch,
			 int dtype)
{
	return run_new_checked(out, g, be, batch, dtype, 1);
}

const float *bt_run_logits(const struct bt_run *r)
{
	return r->logits32 ? r->logits32 : r->nb[r->g->output].y;
}

double bt_run_loss_scale(const struct bt_run *r) { return r->scaler.scale; }
uint64_t bt_run_skipped_steps(const struct bt_run *r) { return r->scaler.skipped; }
const struct bt_loss_scaler *bt_run_scaler(const struct bt_run *r) { return &r->scaler; }

int bt_run_set_scaler(struct bt_run *r, double scale, uint64_t good_steps, uint64_t skipped)
{
	return bt_loss_scaler_set(&r->scaler, scale, good_steps, skipped);
}

int bt_run_read_logits(struct bt_run *r, float *logits, int n)
{
	size_t bytes = (size_t)n * r->g->nodes[r->g->output].out.c * sizeof(float);
	if (n < 0 || n > r->batch)
		return bt_error(BT_ERR_INVALID, "run: %d rows of logits from a batch of %d", n, r->batch);
	return r->be->i->download(r->be->ctx, logits, bt_run_logits(r), bytes);
}

int bt_run_read_state(struct bt_run *r, float *params, float *momentum)
{
	size_t bytes = r->g->nfloats * sizeof(float);
	int st = BT_OK;
	if (momentum && r->infer_only)
		return bt_error(BT_ERR_INVALID, "run: made for inference only, it has no momentum");
	if (params)
		st = r->be->i->download(r->be->ctx, params, r->params, bytes);
	if (st == BT_OK && momentum)
		st = r->be->i->download(r->be->ctx, momentum, r->mom, bytes);
	return st;
}

int bt_run_write_state(struct bt_run *r, const float *params, const float *momentum)
{
	size_t bytes = r->g->nfloats * sizeof(float);
	int st = BT_OK;
	if (momentum && r->infer_only)
		return bt_error(BT_ERR_INVALID, "run: made for inference only, it has no momentum");
	r->wh_stale = 1;
	if (params)
		st = r->be->i->upload(r->be->ctx, r->params, params, bytes);
	if (st == BT_OK && momentum)
		st = r->be->i->upload(r->be->ctx, r->mom, momentum, bytes);
	return st;
}

int bt_run_init_params(struct bt_run *r, uint64_t seed, int zero_gamma)
{
	const struct bt_graph *g = r->g;
	/* Staged on the host, then uploaded: a backend's memory may not be addressable here. */
	float *host = calloc(g->nfloats ? g->nfloats : 1, sizeof(float));
	int st;
	if (!host)
		return bt_error(BT_ERR_NOMEM, "out of memory initialising %zu parameters", g->nfloats);
	for (int i = 0; i < g->nparams; i++) {
		const struct bt_param *p = &g->params[i];
		float *w = host + p->offset, v = 0;
		struct bt_rng rng;
		switch (p->kind) {
		case BT_PARAM_WEIGHT: {
			/* conv (Cout,KH,KW,Cin/g): fan_in = KH*KW*Cin/g, fan_out = Cout*KH*KW;
			 * fc (Cout,Cin): fan_in = Cin, fan_out = Cout. */
			double fan_in, fan_out, a;
			if (p->ndim == 4) {
				fan_in = (double)p->shape[1] * p->shape[2] * p->shape[3];
				fan_out = (double)p->shape[0] * p->shape[1] * p->shape[2];
			} else {
				fan_in = (double)p->shape[1];
				fan_out = (double)p->shape[0];
			}
			a = sqrt(6.0 / (fan_in + fan_out));
			bt_rng_seed(&rng, bt_mix64(seed) ^ bt_mix64((uint64_t)i + 1));
			for (size_t k = 0; k < p->count; k++)
				w[k] = (float)((2 * bt_rng_uniform(&rng) - 1) * a);
			continue;
		}
		case BT_PARAM_GAMMA:
			v = zero_gamma && g->nodes[p->node].last_bn ? 0.0f : 1.0f;
			break;
		case BT_PARAM_RUNNING_VAR:
			v = 1.0f;
			break;
		default:
			v = 0.0f;
			break;
		}
		for (size_t k = 0; k < p->count; k++)
			w[k] = v;
	}
	r->wh_stale = 1;
	st = r->be->i->upload(r->be->ctx, r->params, host, g->nfloats * sizeof(float));
	free(host);
	if (st == BT_OK)
		st = r->mom ? r->be->i->zero(r->be->ctx, r->mom, g->nfloats * sizeof(float)) : BT_OK;
	return st;
}

static float *param(struct bt_run *r, const struct bt_node *nd, int k)
{
	return nd->param[k] >= 0 ? r->params + r->g->params[nd->param[k]].offset : NULL;
}

static float *grad(struct bt_run *r, const struct bt_node *nd, int k)
{
	return nd->param[k] >= 0 ? r->grads + r->g->params[nd->param[k]].offset : NULL;
}

/* The weights of a conv or fc node as its kernels read them: the master arena in float32,
 * its half copy in mixed precision. */
static const void *weights(struct bt_run *r, const struct bt_node *nd)
{
	size_t off = r->g->params[nd->param[0]].offset;
	if (!r->wh)
		return r->params + off;
	return (const char *)r->wh + off * r->esize;
}

/* The half copy of the arena, cast from it when it may have changed: one kernel over the
 * whole arena (the gaps and statistics come along; only weights are read). */
static int refresh_weights(struct bt_run *r)
{
	int st;
	if (!r->wh || !r->wh_stale)
		return BT_OK;
	st = r->be->i->cast(r->be->ctx, r->params, BT_DTYPE_F32, r->wh, r->dtype, r->g->nfloats, 1.0f);
	if (st == BT_OK)
		r->wh_stale = 0;
	return st;
}

/* Conv node c's weights and bias with its batch norm folded in, from the current
 * parameters: w' = w g / sqrt(var + eps), b' = beta + (b - mean) g / sqrt(var + eps). */
static int fold_weights(struct bt_run *r, int c)
{
	const struct bt_graph *g = r->g;
	const struct bt_node *cv = &g->nodes[c], *bn = &g->nodes[r->nb[c].fold];
	const struct bt_param *w = &g->params[cv->param[0]];
	struct nodebuf *b = &r->nb[c];
	int st;
	if (!b->wfold) {
		if (!(b->wfold = xalloc(r, w->count * sizeof(float))) ||
		    !(b->bfold = xalloc(r, (size_t)cv->out.c * sizeof(float))) ||
		    (r->wh && !(b->wfold_h = xalloc(r, w->count * r->esize))))
			return bt_error(BT_ERR_NOMEM, "%s: out of memory for folded weights", cv->name);
	}
	/* Folded in float32 from the master weights; a half run then rounds them once. */
	st = r->be->i->bn_fold(r->be->ctx, param(r, cv, 0), param(r, cv, 1), param(r, bn, 0),
			       param(r, bn, 1), param(r, bn, 2), param(r, bn, 3), bn->a.bn.eps,
			       cv->out.c, w->count / (size_t)cv->out.c, b->wfold, b->bfold);
	if (st == BT_OK && b->wfold_h)
		st = r->be->i->cast(r->be->ctx, b->wfold, BT_DTYPE_F32, b->wfold_h, r->dtype, w->count, 1.0f);
	return st;
}

void bt_run_fuse(struct bt_run *r, int on)
{
	r->fuse = on;
}

void bt_run_share_inference(struct bt_run *r, int on)
{
	r->share_infer = on;
}

int bt_run_fused_nodes(const struct bt_run *r)
{
	int n = 0;
	for (int i = 0; i < r->g->nnodes; i++)
		n += r->nb[i].skip || folded_conv(r, i) >= 0;
	return n;
}

int bt_run_fused_train_nodes(const struct bt_run *r)
{
	int n = 0;
	for (int i = 0; i < r->g->nnodes; i++)
		n += r->nb[i].bn_of >= 0 || r->nb[i].add_relu >= 0 || r->nb[i].in_add >= 0;
	return n;
}

/* The input node's buffer from x (float32) or u8 (a uint8 batch) of n images; neither:
 * the batch already there is used again. */
static int write_input(struct bt_run *r, const float *x, const struct bt_u8_batch *u8, int n)
{
	const struct bt_backend_i *be = r->be->i;
	void *ctx = r->be->ctx, *y = r->nb[r->g->input].y;
	size_t el = node_elems(r->g, r->g->input, n);
	int st;

	if (!u8 && !x) {
		if (!r->have_input)
			return bt_error(BT_ERR_INVALID, "run: no input yet to reuse");
		if (n != r->input_n)
			return bt_error(BT_ERR_INVALID, "run: reusing an input of %d images for %d", r->input_n, n);
		return BT_OK;
	}
	r->have_input = 1;
	r->input_n = n;
	if (u8)
		return be->input_u8(ctx, r->dtype, u8, y);
	if (!r->in32)
		return be->upload(ctx, y, x, el * sizeof(float));
	st = be->upload(ctx, r->in32, x, el * sizeof(float));
	return st == BT_OK ? be->cast(ctx, r->in32, BT_DTYPE_F32, y, r->dtype, el, 1.0f) : st;
}

/* The nodes of one forward pass over n images (a slice of an inference pass, or the whole
 * batch). x and u8 as for forward(); written: the input is already in place (NULL x and
 * u8 then). fold: make the folded weights (once a pass). */
static int forward_nodes(struct bt_run *r, const float *x, const struct bt_u8_batch *u8, int written,
			 int n, int train, int fold, uint64_t dropout_seed)
{
	const struct bt_graph *g = r->g;
	const struct bt_backend_i *be = r->be->i;
	void *ctx = r->be->ctx;
	int st = BT_OK, dt = r->dtype;

	for (int i = 0; i < g->nnodes && st == BT_OK; i++) {
		const struct bt_node *nd = &g->nodes[i];
		struct nodebuf *b = &r->nb[i];
		const void *in = nd->nin ? r->nb[nd->in[0]].y : NULL;
		size_t el = node_elems(g, i, n);
		int fused = !train && r->fuse;
		double t0;
		/* An in-place node's buffer is its input's, or in fused inference the one its
		 * addition was done in (plan_fusion); set on every pass, so that training
		 * after a fused pass finds the planned buffers. */
		if (b->y_alias)
			b->y = fused && b->y_from >= 0 ? r->nb[b->y_from].y : r->nb[nd->in[0]].y;
		if (fused && b->skip)
			continue;
		if ((st = prof_begin(r, &t0)) < 0)
			break;
		switch (nd->op) {
		case BT_OP_INPUT:
			if (!written) /* a sliced pass writes it whole first */
				st = write_input(r, x, u8, n);
			break;
		case BT_OP_CONV2D: {
			struct bt_conv_desc d;
			conv_desc(g, nd, n, dt, &d);
			if (fused && b->fold >= 0) {
				/* Straight into the batch norm's output, which then has nothing to do,
				 * or onto the buffer of the addition it does (plan_fusion). */
				if (!fold || (st = fold_weights(r, i)) == BT_OK) { /* once a pass */
					d.bias = 1;
					d.post = b->post;
					st = be->conv_fwd(ctx, &d, in, b->wfold_h ? b->wfold_h : (const void *)b->wfold,
							  b->bfold, r->nb[b->post_dst >= 0 ? b->post_dst : b->fold].y);
				}
				break;
			}
			st = be->conv_fwd(ctx, &d, in, weights(r, nd), param(r, nd, 1), b->y);
			break;
		}
		case BT_OP_BATCHNORM: {
			if (fused && r->nb[nd->in[0]].fold == i)
				break;
			if (train && r->fuse && b->in_add >= 0)
				break; /* done by the addition */
			struct bt_bn_desc d;
			bn_desc(nd, n, dt, &d);
			if (train && r->fuse && b->relu_of >= 0)
				st = be->bn_relu_fwd_train(ctx, &d, in, param(r, nd, 0), param(r, nd, 1),
							      param(r, nd, 2), param(r, nd, 3), b->save_mean,
							      b->save_invstd, b->y, b->rws);
			else if (train)
				st = be->bn_fwd_train(ctx, &d, in, param(r, nd, 0), param(r, nd, 1),
							 param(r, nd, 2), param(r, nd, 3), b->save_mean,
							 b->save_invstd, b->y);
			else
				st = be->bn_fwd_infer(ctx, &d, in, param(r, nd, 0), param(r, nd, 1),
							 param(r, nd, 2), param(r, nd, 3), b->y);
			break;
		}
		case BT_OP_RELU:
			if (train && r->fuse && (b->bn_of >= 0 || b->add_relu >= 0))
				break; /* done by the batch norm, or by the addition */
			st = be->relu_fwd(ctx, dt, in, b->y, el); /* in == b->y when in place */
			break;
		case BT_OP_MAXPOOL:
		case BT_OP_AVGPOOL: {
			struct bt_pool_desc d;
			pool_desc(g, nd, n, dt, &d);
			st = be->pool_fwd(ctx, &d, in, b->y, b->ws);
			break;
		}
		case BT_OP_GLOBAL_AVGPOOL: {
			struct bt_shape si = g->nodes[nd->in[0]].out;
			st = be->gap_fwd(ctx, dt, in, b->y, n, (size_t)si.h * si.w, si.c);
			break;
		}
		case BT_OP_FC: {
			struct bt_fc_desc d = {.n = n, .cin = g->nodes[nd->in[0]].out.c, .cout = nd->out.c,
					       .bias = nd->a.fc.bias, .dtype = dt};
			st = be->fc_fwd(ctx, &d, in, weights(r, nd), param(r, nd, 1), b->y);
			break;
		}
		case BT_OP_ADD:
			if (train && r->fuse && b->add_bn >= 0) {
				const struct bt_node *bn = &g->nodes[b->add_bn];
				struct nodebuf *bb = &r->nb[b->add_bn];
				int z = nd->in[0] == b->add_bn ? nd->in[1] : nd->in[0];
				struct bt_bn_desc d;
				bn_desc(bn, n, dt, &d);
				st = be->bn_add_relu_fwd_train(ctx, &d, r->nb[bn->in[0]].y, r->nb[z].y,
								  param(r, bn, 0), param(r, bn, 1),
								  param(r, bn, 2), param(r, bn, 3), bb->save_mean,
								  bb->save_invstd, b->y);
				break;
			}
			st = be->add(ctx, dt, r->nb[nd->in[0]].y, r->nb[nd->in[1]].y, b->y, el);
			break;
		case BT_OP_CONCAT: {
			size_t pixels = (size_t)n * nd->out.h * nd->out.w;
			for (int j = 0, off = 0; j < nd->nin && st == BT_OK; j++) {
				int cj = g->nodes[nd->in[j]].out.c;
				st = be->concat_fwd(ctx, dt, r->nb[nd->in[j]].y, b->y, pixels, cj, nd->out.c, off);
				off += cj;
			}
			break;
		}
		case BT_OP_DROPOUT:
			if (!train || nd->a.dropout.p == 0)
				st = be->copy(ctx, dt, b->y, in, el);
			else
				st = be->dropout_fwd(ctx, dt, in, b->y, b->mask, el, nd->a.dropout.p,
						     bt_mix64(dropout_seed) ^ bt_mix64((uint64_t)i));
			break;
		case BT_OP_FLATTEN:
			st = be->copy(ctx, dt, b->y, in, el);
			break;
		default:
			st = bt_error(BT_ERR_UNSUPPORTED, "run: op %s", bt_op_name(nd->op));
		}
		if (st == BT_OK)
			st = prof_end(r, nd->op, 0, t0);
		if (st < 0)
			bt_error_prefix(st, "%s (%s)", nd->name, bt_op_name(nd->op));
	}
	return st;
}

/* The forward pass from x (float32) or u8 (a uint8 batch). An inference pass on a backend
 * that asks for it (infer_slice_bytes) takes the batch through the nodes in slices of
 * r->infer_slice images, each a whole pass on the shared buffers' first images, so that
 * what a layer reads and writes stays in cache; the input is written whole first and each
 * slice's logits land at their place in the output's buffer. */
static int forward(struct bt_run *r, const float *x, const struct bt_u8_batch *u8, int n, int train,
		   uint64_t dropout_seed)
{
	const struct bt_graph *g = r->g;
	int st = BT_OK, slice;

	if (n < 1 || n > r->batch)
		return bt_error(BT_ERR_INVALID, "run: %d images in a run for batches of %d", n, r->batch);
	r->n = n;
	r->train = train;
	r->have_loss = 0;
	if (train)
		r->fused_train = r->fuse;
	if (train && r->infer_only)
		return bt_error(BT_ERR_INVALID, "run: made for inference only, not training");
	if ((st = refresh_weights(r)) < 0)
		return bt_error_prefix(st, "run: the half copy of the weights");
	/* Inference: outputs in buffers shared by lifetime (plan_inference). */
	if (!train && (r->share_infer || r->infer_only) && r->infer_buf[0]) {
		const int *use = r->infer_buf[r->fuse ? 1 : 0];
		for (int i = 0; i < g->nnodes; i++)
			if (use[i] >= 0)
				r->nb[i].y = r->own_y[use[i]];
	}
	slice = !train && r->infer_slice > 0 && r->infer_slice < n ? r->infer_slice : n;
	if (slice == n) {
		st = forward_nodes(r, x, u8, 0, n, train, 1, dropout_seed);
	} else if ((st = write_input(r, x, u8, n)) == BT_OK) {
		for (int s0 = 0; s0 < n && st == BT_OK; s0 += slice) {
			r->nb[g->input].y = (char *)r->own_y[g->input] +
					    (size_t)s0 * node_elems(g, g->input, 1) * r->esize;
			r->nb[g->output].y = (char *)r->own_y[g->output] +
					     (size_t)s0 * node_elems(g, g->output, 1) * r->esize;
			st = forward_nodes(r, NULL, NULL, 1, n - s0 < slice ? n - s0 : slice, train, s0 == 0,
					   dropout_seed);
		}
	}
	if (!train && r->own_y)
		for (int i = 0; i < g->nnodes; i++)
			if (r->own_y[i])
				r->nb[i].y = r->own_y[i];
	/* The loss and the caller read float32 logits. */
	if (st == BT_OK && r->logits32)
		st = r->be->i->cast(r->be->ctx, r->nb[g->output].y, r->dtype, r->logits32, BT_DTYPE_F32,
				    (size_t)n * g->nodes[g->output].out.c, 1.0f);
	return st;
}

int bt_run_forward(struct bt_run *r, const float *x, int n, int train, uint64_t dropout_seed)
{
	return forward(r, x, NULL, n, train, dropout_seed);
}

int bt_run_forward_u8(struct bt_run *r, const struct bt_u8_batch *in, int train, uint64_t dropout_seed)
{
	const struct bt_shape *s = &r->g->nodes[r->g->input].out;

	if (!bt_u8_batch_ok(in))
		return bt_error(BT_ERR_INVALID, "run: a uint8 batch of %d images of %dx%dx%d", in->n, in->size,
				in->size, in->channels);
	if (in->size != s->h || in->size != s->w || in->channels != s->c)
		return bt_error(BT_ERR_INVALID, "run: %dx%dx%d images for an input of %dx%dx%d", in->size,
				in->size, in->channels, s->h, s->w, s->c);
	for (int c = 0; c < in->channels; c++)
		if (!(isfinite(in->mean[c]) && isfinite(in->std[c]) && in->std[c] != 0))
			return bt_error(BT_ERR_INVALID, "run: normalisation of channel %d by mean %g, std %g", c,
					(double)in->mean[c], (double)in->std[c]);
	if (!r->be->i->input_u8)
		return bt_error(BT_ERR_UNSUPPORTED, "run: the %s backend takes no uint8 input", r->be->i->name);
	return forward(r, NULL, in, in->n, train, dropout_seed);
}

int bt_run_loss(struct bt_run *r, const int32_t *labels, const float *soft, float eps,
		float temperature, double *loss)
{
	const struct bt_graph *g = r->g;
	const struct bt_backend_i *be = r->be->i;
	void *ctx = r->be->ctx;
	int K = g->nodes[g->output].out.c, n = r->n, st;
	float T = temperature > 0 ? temperature : 1.0f;
	/* A half run: the loss from the float32 logits, its gradient scaled and cast. */
	float *dz = r->dlogits32 ? r->dlogits32 : r->nb[g->output].dy;

	if (r->infer_only)
		return bt_error(BT_ERR_INVALID, "loss: the run is made for inference only");
	if (K < 2)
		return bt_error(BT_ERR_INVALID, "loss: %d classes", K);
	if (!soft && (eps < 0 || eps >= 1))
		return bt_error(BT_ERR_INVALID, "loss: label smoothing %g", eps);
	if (soft)
		st = be->upload(ctx, r->soft, soft, (size_t)n * K * sizeof(float));
	else
		st = be->upload(ctx, r->labels, labels, (size_t)n * sizeof(int32_t));
	if (st == BT_OK)
		st = be->softmax_ce(ctx, bt_run_logits(r), soft ? NULL : r->labels, soft ? r->soft : NULL,
				    n, K, eps, T, dz, loss);
	if (st == BT_OK && r->dlogits32)
		st = be->cast(ctx, r->dlogits32, BT_DTYPE_F32, r->nb[g->output].dy, r->dtype, (size_t)n * K,
			      (float)r->scaler.scale);
	r->have_loss = st == BT_OK;
	return st;
}

/* Where the gradient for input node `in` goes: its own buffer the first time in this pass,
 * the scratch buffer (added afterwards by settle) when it already holds one. */
static void *dx_target(struct bt_run *r, int in, int *pending)
{
	if (!r->nb[in].dy_set) {
		r->nb[in].dy_set = 1;
		*pending = 0;
		return r->nb[in].dy;
	}
	*pending = 1;
	return r->scratch;
}

static int settle(struct bt_run *r, int in, int pending)
{
	if (!pending)
		return BT_OK;
	return r->be->i->accumulate(r->be->ctx, r->dtype, r->nb[in].dy, r->scratch, node_elems(r->g, in, r->n));
}

int bt_run_backward(struct bt_run *r)
{
	const struct bt_graph *g = r->g;
	const struct bt_backend_i *be = r->be->i;
	void *ctx = r->be->ctx;
	int n = r->n, st = BT_OK, dt = r->dtype;

	if (!r->have_loss)
		return bt_error(BT_ERR_INVALID, "run: backward without a loss");
	if (!r->train)
		return bt_error(BT_ERR_INVALID, "run: backward after an inference forward pass");
	if ((st = be->zero(ctx, r->grads, g->nfloats * sizeof(float))) < 0)
		return st;
	for (int i = 0; i < g->nnodes; i++)
		r->nb[i].dy_set = 0;
	r->nb[g->output].dy_set = 1;
	for (int i = g->nnodes - 1; i >= 0 && st == BT_OK; i--) {
		const struct bt_node *nd = &g->nodes[i];
		struct nodebuf *b = &r->nb[i];
		int in0 = nd->nin ? nd->in[0] : -1, pend = 0;
		/* No gradient reaches the input, and none reaches a node nobody used. */
		int need_dx = in0 >= 0 && g->nodes[in0].op != BT_OP_INPUT;
		const void *x = in0 >= 0 ? r->nb[in0].y : NULL, *dy = b->dy;
		size_t el = node_elems(g, i, n);
		void *dx;
		double t0;

		if (!b->dy_set || nd->op == BT_OP_INPUT)
			continue;
		if ((st = prof_begin(r, &t0)) < 0)
			break;
		/* Each case sends its input gradients to dx_target and settles them. */
		switch (nd->op) {
		case BT_OP_CONV2D: {
			struct bt_conv_desc d;
			conv_desc(g, nd, n, dt, &d);
			st = be->conv_bwd_weights(ctx, &d, x, dy, grad(r, nd, 0), grad(r, nd, 1));
			if (st == BT_OK && need_dx) {
				dx = dx_target(r, in0, &pend);
				st = be->conv_bwd_data(ctx, &d, dy, weights(r, nd), dx);
				if (st == BT_OK)
					st = settle(r, in0, pend);
			}
			break;
		}
		case BT_OP_BATCHNORM: {
			struct bt_bn_desc d;
			bn_desc(nd, n, dt, &d);
			dx = dx_target(r, in0, &pend);
			if (r->fused_train && b->relu_of >= 0)
				st = be->bn_relu_bwd(ctx, &d, x, dy, param(r, nd, 0), b->save_mean,
						     b->save_invstd, b->rws, dx, grad(r, nd, 0), grad(r, nd, 1));
			else
				st = be->bn_bwd(ctx, &d, x, dy, param(r, nd, 0), b->save_mean,
						b->save_invstd, dx, grad(r, nd, 0), grad(r, nd, 1));
			if (st == BT_OK)
				st = settle(r, in0, pend);
			break;
		}
		case BT_OP_RELU:
			if (!need_dx)
				break;
			dx = dx_target(r, in0, &pend);
			if (r->fused_train && b->bn_of >= 0) /* the batch norm's backward masks */
				st = dx == dy ? BT_OK : be->copy(ctx, dt, dx, dy, el);
			else
				st = be->relu_bwd(ctx, dt, b->y, dy, dx, el);
			if (st == BT_OK)
				st = settle(r, in0, pend);
			break;
		case BT_OP_MAXPOOL:
		case BT_OP_AVGPOOL: {
			struct bt_pool_desc d;
			if (!need_dx)
				break;
			pool_desc(g, nd, n, dt, &d);
			dx = dx_target(r, in0, &pend);
			st = be->pool_bwd(ctx, &d, dy, b->ws, dx);
			if (st == BT_OK)
				st = settle(r, in0, pend);
			break;
		}
		case BT_OP_GLOBAL_AVGPOOL: {
			struct bt_shape si = g->nodes[in0].out;
			if (!need_dx)
				break;
			dx = dx_target(r, in0, &pend);
			st = be->gap_bwd(ctx, dt, dy, dx, n, (size_t)si.h * si.w, si.c);
			if (st == BT_OK)
				st = settle(r, in0, pend);
			break;
		}
		case BT_OP_FC: {
			struct bt_fc_desc d = {.n = n, .cin = g->nodes[in0].out.c, .cout = nd->out.c,
					       .bias = nd->a.fc.bias, .dtype = dt};
			dx = need_dx ? dx_target(r, in0, &pend) : NULL;
			st = be->fc_bwd(ctx, &d, x, dy, weights(r, nd), dx, grad(r, nd, 0), grad(r, nd, 1));
			if (st == BT_OK && need_dx)
				st = settle(r, in0, pend);
			break;
		}
		case BT_OP_ADD:
			for (int j = 0; j < 2 && st == BT_OK; j++) {
				int in = nd->in[j];
				if (g->nodes[in].op == BT_OP_INPUT)
					continue;
				dx = dx_target(r, in, &pend);
				if (dx != dy) /* the input that took over the sum's buffer has it already */
					st = be->copy(ctx, dt, dx, dy, el);
				if (st == BT_OK)
					st = settle(r, in, pend);
			}
			break;
		case BT_OP_CONCAT: {
			size_t pixels = (size_t)n * nd->out.h * nd->out.w;
			for (int j = 0, off = 0; j < nd->nin && st == BT_OK; j++) {
				int in = nd->in[j], cj = g->nodes[in].out.c;
				if (g->nodes[in].op != BT_OP_INPUT) {
					dx = dx_target(r, in, &pend);
					st = be->concat_bwd(ctx, dt, dy, dx, pixels, cj, nd->out.c, off);
					if (st == BT_OK)
						st = settle(r, in, pend);
				}
				off += cj;
			}
			break;
		}
		case BT_OP_DROPOUT:
			if (!need_dx)
				break;
			dx = dx_target(r, in0, &pend);
			st = be->mul(ctx, dt, dy, b->mask, dx, el);
			if (st == BT_OK)
				st = settle(r, in0, pend);
			break;
		case BT_OP_FLATTEN:
			if (!need_dx)
				break;
			dx = dx_target(r, in0, &pend);
			st = be->copy(ctx, dt, dx, dy, el);
			if (st == BT_OK)
				st = settle(r, in0, pend);
			break;
		default:
			st = bt_error(BT_ERR_UNSUPPORTED, "run: backward of %s", bt_op_name(nd->op));
		}
		if (st == BT_OK)
			st = prof_end(r, nd->op, 1, t0);
		if (st < 0)
			bt_error_prefix(st, "%s (%s, backward)", nd->name, bt_op_name(nd->op));
	}
	return st;
}

int bt_run_sgd(struct bt_run *r, float lr, float momentum, float wd, int no_bias_decay)
{
	int k = no_bias_decay ? 1 : 0, st;
	float gscale = 1.0f;

	if (r->infer_only)
		return bt_error(BT_ERR_INVALID, "run: made for inference only, not training");
	if (r->scaler.dynamic) {
		/* The scale this step's gradients were computed with, before the update changes it. */
		double used = r->scaler.scale;
		int overflow = 0;
		if ((st = r->be->i->nonfinite(r->be->ctx, r->grads, r->g->nfloats, &overflow)) < 0)
			return st;
		if (!bt_loss_scaler_update(&r->scaler, overflow))
			return BT_OK;
		gscale = (float)(1.0 / used);
	}
	st = r->be->i->sgd(r->be->ctx, r->params, r->grads, r->mom, r->ranges[k], r->nranges[k], lr, momentum,
			   wd, gscale);
	r->wh_stale = 1;
	return st;
}
