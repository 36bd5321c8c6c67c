/* graph.h: networks as graphs of nodes, built by plain C builder functions.
 *
 * A model is a list of nodes in execution order (each node's inputs come before it), plus
 * a table of named parameters carved out of one contiguous float arena by offset: weights,
 * biases, batch-norm gamma and beta (trainable), and batch-norm running mean and variance
 * (state). Gradients and optimizer state use arenas of the same layout, so one allreduce,
 * one optimizer loop and one checkpoint write cover everything.
 *
 * Activations are NHWC. Shapes here are per image (h, w, c); the batch size is chosen when
 * a graph is run. Convolution weights are (Cout, KH, KW, Cin/groups), fully connected
 * weights (Cout, Cin): the layouts cuDNN and oneDNN want for NHWC data.
 *
 * Builders are "sticky": once one fails (a shape mismatch, out of memory) every later call
 * returns -1 without doing anything and g->status keeps the first failure, so a model
 * builder checks once at the end.
 *
 * Checklist when adding an op: enum bt_op and bt_op_name (graph.c), a builder here with
 * shape inference and parameters, bt_graph_macs (graph.c), each backend's forward and
 * backward (lib/cpu.c or lib/cpu_backend.c, lib/cuda/), the executor (lib/run.c), the
 * op's naive reference and finite-difference test (tests/unit/test_cpu.c), its CUDA case
 * (tests/gpu/test_cuda.c); docs/DESIGN.md has the full list.
 * Checklist when adding a model: lib/zoo.c (builder and the name table), its published
 * parameter count in tests/unit/test_zoo.c, man/man1/bt-info.1 (--model), man/man1/bt-train.1.
 */
#ifndef BT_GRAPH_H
#define BT_GRAPH_H

#include <stddef.h>
#include <stdint.h>

enum bt_op {
	BT_OP_INPUT = 0,
	BT_OP_CONV2D,
	BT_OP_BATCHNORM,
	BT_OP_RELU,
	BT_OP_MAXPOOL,
	BT_OP_AVGPOOL,
	BT_OP_GLOBAL_AVGPOOL,
	BT_OP_FC,
	BT_OP_ADD,
	BT_OP_CONCAT,
	BT_OP_DROPOUT,
	BT_OP_FLATTEN,
	BT_OP_COUNT
};

const char *bt_op_name(int op);

enum bt_param_kind {
	BT_PARAM_WEIGHT = 0,
	BT_PARAM_BIAS,
	BT_PARAM_GAMMA,
	BT_PARAM_BETA,
	BT_PARAM_RUNNING_MEAN,
	BT_PARAM_RUNNING_VAR,
};

struct bt_param {
	char name[96];          /* "layer1.0.conv1.weight" */
	int kind;               /* enum bt_param_kind */
	int ndim;
	int64_t shape[4];
	size_t offset;          /* in floats, within the arena */
	size_t count;
	int trainable;          /* 0 for running statistics */
	int node;               /* the node it belongs to */
};

/* Per-image activation shape. */
struct bt_shape {
	int h, w, c;
};

#define BT_MAX_INPUTS 8

struct bt_node {
	int op;
	char name[64];
	int in[BT_MAX_INPUTS];
	int nin;
	struct bt_shape out;
	int param[4];           /* conv/fc: weight, bias (-1: none); bn: gamma, beta, mean, var */
	int last_bn;            /* batch norm closing a residual branch (zero-gamma applies) */
	union {
		struct {
			int kh, kw, sh, sw, ph, pw, dh, dw, groups, cout, bias;
		} conv;
		struct {
			float eps, momentum;
		} bn;
		struct {
			int kh, kw, sh, sw, ph, pw, ceil, count_pad;
		} pool;
		struct {
			int cout, bias;
		} fc;
		struct {
			float p;
		} dropout;
	} a;
};

struct bt_graph {
	struct bt_node *nodes;
	int nnodes, capnodes;
	struct bt_param *params;
	int nparams, capparams;
	size_t nfloats;         /* arena size: every parameter and running statistic */
	int input;              /* the input node, -1 before bt_input */
	int output;             /* the logits node, set by the model builder */
	int status;             /* first builder failure, BT_OK otherwise */
	char prefix[64];        /* prepended to names while building a block */
};

void bt_graph_init(struct bt_graph *g);
void bt_graph_free(struct bt_graph *g);

/* Sets the name prefix for the nodes and parameters built next ("layer1.0."). */
void bt_graph_prefix(struct bt_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int bt_input(struct bt_graph *g, int h, int w, int c);

struct bt_conv_args {
	int cout;
	int kh, kw;             /* kernel */
	int sh, sw;             /* stride (0 means 1) */
	int ph, pw;             /* padding */
	int dh, dw;             /* dilation (0 means 1) */
	int groups;             /* 0 means 1; cin for depthwise */
	int bias;
};
int bt_conv2d(struct bt_graph *g, int x, const char *name, const struct bt_conv_args *a);
/* Square kernel k, stride s, padding p, no bias, no groups: the common case. */
int bt_conv(struct bt_graph *g, int x, const char *name, int cout, int k, int s, int p);
/* eps 1e-5 and momentum 0.1 unless given (PyTorch's convention: running = (1 - m) running + m batch). */
int bt_batchnorm(struct bt_graph *g, int x, const char *name, float eps, float momentum);
int bt_relu(struct bt_graph *g, int x);
int bt_maxpool(struct bt_graph *g, int x, int k, int s, int p, int ceil_mode);
int bt_avgpool(struct bt_graph *g, int x, int kh, int kw, int sh, int sw, int ph, int pw,
	       int ceil_mode, int count_pad);
int bt_global_avgpool(struct bt_graph *g, int x);
int bt_fc(struct bt_graph *g, int x, const char *name, int cout, int bias);
int bt_add(struct bt_graph *g, int a, int b);
int bt_concat(struct bt_graph *g, const int *xs, int n);
int bt_dropout(struct bt_graph *g, int x, float p);
int bt_flatten(struct bt_graph *g, int x);

/* Marks the batch norm node x as the last of a residual branch (for zero-gamma). */
void bt_mark_last_bn(struct bt_graph *g, int x);

/* Counts: trainable parameters (what papers publish), multiply-adds of one forward pass
 * for one image, and the bytes of every node's output for a batch (float32). */
uint64_t bt_graph_trainable(const struct bt_graph *g);
uint64_t bt_graph_node_params(const struct bt_graph *g, int node);
uint64_t bt_graph_node_macs(const struct bt_graph *g, int node);
uint64_t bt_graph_macs(const struct bt_graph *g);
uint64_t bt_graph_activation_bytes(const struct bt_graph *g, int batch);

#endif
