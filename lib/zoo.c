/* zoo.c: the models of zoo.h written out with the graph builders, and the table of their
 * names. Parameters are named as torchvision names its modules (conv1, layer1.0.bn2,
 * layer2.0.downsample.0, fc; Mixed_5b.branch1x1.conv for Inception), so that a checkpoint can be
 * compared with a PyTorch state_dict name by name; tests/bench/zoo_torch.py holds the PyTorch
 * mirrors that give the reference counts asserted by tests/unit/test_zoo.c. Builders are sticky
 * (graph.h), so the model functions below chain calls without checking and bt_model_build
 * looks at g->status once. */
#include "zoo.h"
#include "bt.h"

#include <stdio.h>
#include <string.h>

enum family { RESNET, MOBILENET, INCEPTION, CIFAR };

/* ResNet variants, as GluonCV spells them after the underscore. */
enum { V1, V1B, V1C, V1D };

struct model {
	const char *name;
	int family;
	int depth;      /* ResNets */
	int version;    /* ResNets: V1..V1D */
	int width;      /* MobileNet: multiplier in hundredths, to keep int(32 * 0.75) exact */
};

/* One list, expanded twice: into the table and into the NULL-terminated name list that
 * bt_model_names returns, so that the two cannot disagree. */
#define RESNETS(X, v, s)                                                                   \
	X("resnet18_" s, RESNET, 18, v, 0) X("resnet34_" s, RESNET, 34, v, 0)              \
	X("resnet50_" s, RESNET, 50, v, 0) X("resnet101_" s, RESNET, 101, v, 0)            \
	X("resnet152_" s, RESNET, 152, v, 0)
#define MODELS(X)                                                                          \
	RESNETS(X, V1, "v1") RESNETS(X, V1B, "v1b") RESNETS(X, V1C, "v1c") RESNETS(X, V1D, "v1d") \
	X("mobilenet1.0", MOBILENET, 0, 0, 100) X("mobilenet0.75", MOBILENET, 0, 0, 75)    \
	X("mobilenet0.5", MOBILENET, 0, 0, 50) X("mobilenet0.25", MOBILENET, 0, 0, 25)     \
	X("inceptionv3", INCEPTION, 0, 0, 0)                                               \
	X("cifar_resnet20_v1", CIFAR, 20, V1, 0) X("cifar_resnet56_v1", CIFAR, 56, V1, 0)  \
	X("cifar_resnet110_v1", CIFAR, 110, V1, 0)
#define ROW(name, family, depth, version, width) {name, family, depth, version, width},
#define NAME(name, family, depth, version, width) name,

static const struct model models[] = {MODELS(ROW)};
static const char *const names[] = {MODELS(NAME) NULL};

#define NMODELS ((int)(sizeof models / sizeof models[0]))

static const struct model *find(const char *name)
{
	for (int i = 0; name && i < NMODELS; i++)
		if (strcmp(models[i].name, name) == 0)
			return &models[i];
	return NULL;
}

const char *const *bt_model_names(void)
{
	return names;
}

void bt_model_defaults(const char *name, struct bt_model_opts *o)
{
	const struct model *m = find(name);
	int family = m ? m->family : RESNET;
	if (o->classes == 0)
		o->classes = family == CIFAR ? 10 : 1000;
	if (o->in_channels == 0)
		o->in_channels = 3;
	if (o->input_size == 0)
		o->input_size = family == INCEPTION ? 299 : family == CIFAR ? 32 : 224;
}

/* conv -> batch norm [-> ReLU], the unit of every model here. Returns the batch norm when
 * relu is 0, so that the caller can mark it as the last of a residual branch. */
static int conv_bn(struct bt_graph *g, int x, const char *conv, const char *bn,
		   const struct bt_conv_args *a, float eps, int relu)
{
	x = bt_conv2d(g, x, conv, a);
	x = bt_batchnorm(g, x, bn, eps, 0);
	return relu ? bt_relu(g, x) : x;
}

static int cbr(struct bt_graph *g, int x, const char *conv, const char *bn, int cout, int k, int s,
	       int relu)
{
	struct bt_conv_args a = {.cout = cout, .kh = k, .kw = k, .sh = s, .sw = s, .ph = k / 2, .pw = k / 2};
	return conv_bn(g, x, conv, bn, &a, 0, relu);
}

/* Closes a residual block: marks the branch's last batch norm for zero-gamma, adds the
 * shortcut, applies the ReLU. */
static int residual(struct bt_graph *g, int branch_bn, int shortcut)
{
	if (branch_bn >= 0)
		bt_mark_last_bn(g, branch_bn);
	return bt_relu(g, bt_add(g, branch_bn, shortcut));
}

/* The projection shortcut. v1d (GluonCV's avg_down) averages before a stride-1 1x1, so the
 * projection sees every input pixel instead of one in four; its modules are then numbered as
 * GluonCV's and timm's are, the pool being downsample.0 even where it is absent (stride 1). */
static int downsample(struct bt_graph *g, int x, int cout, int stride, int avg_down)
{
	if (!avg_down)
		return cbr(g, x, "downsample.0", "downsample.1", cout, 1, stride, 0);
	if (stride > 1)
		x = bt_avgpool(g, x, stride, stride, stride, stride, 0, 0, 1, 0);
	return cbr(g, x, "downsample.1", "downsample.2", cout, 1, 1, 0);
}

/* BasicBlockV1 (v1 and v1b are the same for it), also the CIFAR ResNets' block. */
static int basic_block(struct bt_graph *g, int x, int cout, int stride, int avg_down)
{
	int cin = g->status == BT_OK ? g->nodes[x].out.c : 0;
	int y = cbr(g, x, "conv1", "bn1", cout, 3, stride, 1);
	y = cbr(g, y, "conv2", "bn2", cout, 3, 1, 0);
	if (stride != 1 || cin != cout)
		x = downsample(g, x, cout, stride, avg_down);
	return residual(g, y, x);
}

/* BottleneckV1 (stride on the first 1x1) and V1b (on the 3x3, as torchvision: the 1x1 with
 * stride 2 would skip three quarters of its input). */
static int bottleneck(struct bt_graph *g, int x, int width, int stride, int version)
{
	int cin = g->status == BT_OK ? g->nodes[x].out.c : 0, cout = width * 4;
	int s1 = version == V1 ? stride : 1, s2 = version == V1 ? 1 : stride;
	int y = cbr(g, x, "conv1", "bn1", width, 1, s1, 1);
	y = cbr(g, y, "conv2", "bn2", width, 3, s2, 1);
	y = cbr(g, y, "conv3", "bn3", cout, 1, 1, 0);
	if (stride != 1 || cin != cout)
		x = downsample(g, x, cout, stride, version == V1D);
	return residual(g, y, x);
}

/* Global average pool, flatten, the classifier: the head every model here shares. */
static int head(struct bt_graph *g, int x, const char *fc, int classes)
{
	return bt_fc(g, bt_flatten(g, bt_global_avgpool(g, x)), fc, classes, 1);
}

static int resnet(struct bt_graph *g, int x, const struct model *m, int classes)
{
	static const int d18[] = {2, 2, 2, 2}, d34[] = {3, 4, 6, 3}, d101[] = {3, 4, 23, 3},
			 d152[] = {3, 8, 36, 3};
	const int *layers = m->depth == 18 ? d18 : m->depth == 101 ? d101 : m->depth == 152 ? d152 : d34;
	int bottle = m->depth >= 50;

	if (m->version >= V1C) {
		/* The deep stem (v1c): three 3x3 convolutions cost little more than the 7x7 and see
		 * the same 11x11 field through two more non-linearities. Numbered as the
		 * nn.Sequential of GluonCV and timm (ReLUs take 2 and 5); bn1 closes it. */
		x = cbr(g, x, "conv1.0", "conv1.1", 32, 3, 2, 1);
		x = cbr(g, x, "conv1.3", "conv1.4", 32, 3, 1, 1);
		x = cbr(g, x, "conv1.6", "bn1", 64, 3, 1, 1);
	} else {
		x = cbr(g, x, "conv1", "bn1", 64, 7, 2, 1);
	}
	x = bt_maxpool(g, x, 3, 2, 1, 0);
	for (int i = 0; i < 4; i++) {
		for (int j = 0; j < layers[i]; j++) {
			int stride = i > 0 && j == 0 ? 2 : 1;
			bt_graph_prefix(g, "layer%d.%d.", i + 1, j);
			x = bottle ? bottleneck(g, x, 64 << i, stride, m->version)
				   : basic_block(g, x, 64 << i, stride, m->version == V1D);
		}
	}
	bt_graph_prefix(g, "%s", "");
	return head(g, x, "fc", classes);
}

static int cifar_resnet(struct bt_graph *g, int x, const struct model *m, int classes)
{
	int n = (m->depth - 2) / 6;
	x = cbr(g, x, "conv1", "bn1", 16, 3, 1, 1);
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < n; j++) {
			bt_graph_prefix(g, "layer%d.%d.", i + 1, j);
			x = basic_block(g, x, 16 << i, i > 0 && j == 0 ? 2 : 1, 0);
		}
	}
	bt_graph_prefix(g, "%s", "");
	return head(g, x, "fc", classes);
}

/* MobileNet v1, named features.N as GluonCV's HybridSequential numbers its children
 * (convolution, batch norm, ReLU: three per layer) and the classifier "output". */
static int mobilenet(struct bt_graph *g, int x, const struct model *m, int classes)
{
	static const int dw[13] = {32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024};
	static const int pw[13] = {64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024};
	static const int st[13] = {1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1};
	char conv[32], bn[32];
	int k = 0;

	snprintf(conv, sizeof conv, "features.%d", k);
	snprintf(bn, sizeof bn, "features.%d", k + 1);
	x = cbr(g, x, conv, bn, 32 * m->width / 100, 3, 2, 1);
	for (int i = 0; i < 13; i++) {
		int c = dw[i] * m->width / 100;
		struct bt_conv_args a = {.cout = c, .kh = 3, .kw = 3, .sh = st[i], .sw = st[i],
					 .ph = 1, .pw = 1, .groups = c};
		k += 3;
		snprintf(conv, sizeof conv, "features.%d", k);
		snprintf(bn, sizeof bn, "features.%d", k + 1);
		x = conv_bn(g, x, conv, bn, &a, 0, 1);
		k += 3;
		snprintf(conv, sizeof conv, "features.%d", k);
		snprintf(bn, sizeof bn, "features.%d", k + 1);
		x = cbr(g, x, conv, bn, pw[i] * m->width / 100, 1, 1, 1);
	}
	return head(g, x, "output", classes);
}

/* Inception-V3 as torchvision builds it. BasicConv2d: convolution without bias, batch norm
 * with eps 0.001 (the TensorFlow original's), ReLU; named "<name>.conv" and "<name>.bn". */
static int basic_conv(struct bt_graph *g, int x, const char *name, int cout, int kh, int kw, int s,
		      int ph, int pw)
{
	struct bt_conv_args a = {.cout = cout, .kh = kh, .kw = kw, .sh = s, .sw = s, .ph = ph, .pw = pw};
	char conv[64], bn[64];
	snprintf(conv, sizeof conv, "%s.conv", name);
	snprintf(bn, sizeof bn, "%s.bn", name);
	return conv_bn(g, x, conv, bn, &a, 0.001f, 1);
}

#define BC(g, x, name, cout, k, s, p) basic_conv(g, x, name, cout, k, k, s, p, p)

/* torchvision's F.avg_pool2d(x, 3, 1, 1): padded zeros count in the average. */
static int pool3(struct bt_graph *g, int x)
{
	return bt_avgpool(g, x, 3, 3, 1, 1, 1, 1, 0, 1);
}

static int inception_a(struct bt_graph *g, int x, int pool_features)
{
	int b[4];
	b[0] = BC(g, x, "branch1x1", 64, 1, 1, 0);
	b[1] = BC(g, BC(g, x, "branch5x5_1", 48, 1, 1, 0), "branch5x5_2", 64, 5, 1, 2);
	b[2] = BC(g, x, "branch3x3dbl_1", 64, 1, 1, 0);
	b[2] = BC(g, b[2], "branch3x3dbl_2", 96, 3, 1, 1);
	b[2] = BC(g, b[2], "branch3x3dbl_3", 96, 3, 1, 1);
	b[3] = BC(g, pool3(g, x), "branch_pool", pool_features, 1, 1, 0);
	return bt_concat(g, b, 4);
}

static int inception_b(struct bt_graph *g, int x)
{
	int b[3];
	b[0] = BC(g, x, "branch3x3", 384, 3, 2, 0);
	b[1] = BC(g, x, "branch3x3dbl_1", 64, 1, 1, 0);
	b[1] = BC(g, b[1], "branch3x3dbl_2", 96, 3, 1, 1);
	b[1] = BC(g, b[1], "branch3x3dbl_3", 96, 3, 2, 0);
	b[2] = bt_maxpool(g, x, 3, 2, 0, 0);
	return bt_concat(g, b, 3);
}

static int inception_c(struct bt_graph *g, int x, int c7)
{
	int b[4];
	b[0] = BC(g, x, "branch1x1", 192, 1, 1, 0);
	b[1] = BC(g, x, "branch7x7_1", c7, 1, 1, 0);
	b[1] = basic_conv(g, b[1], "branch7x7_2", c7, 1, 7, 1, 0, 3);
	b[1] = basic_conv(g, b[1], "branch7x7_3", 192, 7, 1, 1, 3, 0);
	b[2] = BC(g, x, "branch7x7dbl_1", c7, 1, 1, 0);
	b[2] = basic_conv(g, b[2], "branch7x7dbl_2", c7, 7, 1, 1, 3, 0);
	b[2] = basic_conv(g, b[2], "branch7x7dbl_3", c7, 1, 7, 1, 0, 3);
	b[2] = basic_conv(g, b[2], "branch7x7dbl_4", c7, 7, 1, 1, 3, 0);
	b[2] = basic_conv(g, b[2], "branch7x7dbl_5", 192, 1, 7, 1, 0, 3);
	b[3] = BC(g, pool3(g, x), "branch_pool", 192, 1, 1, 0);
	return bt_concat(g, b, 4);
}

static int inception_d(struct bt_graph *g, int x)
{
	int b[3];
	b[0] = BC(g, BC(g, x, "branch3x3_1", 192, 1, 1, 0), "branch3x3_2", 320, 3, 2, 0);
	b[1] = BC(g, x, "branch7x7x3_1", 192, 1, 1, 0);
	b[1] = basic_conv(g, b[1], "branch7x7x3_2", 192, 1, 7, 1, 0, 3);
	b[1] = basic_conv(g, b[1], "branch7x7x3_3", 192, 7, 1, 1, 3, 0);
	b[1] = BC(g, b[1], "branch7x7x3_4", 192, 3, 2, 0);
	b[2] = bt_maxpool(g, x, 3, 2, 0, 0);
	return bt_concat(g, b, 3);
}

/* torchvision concatenates the 1x3 and 3x1 halves of each split branch first and then the
 * branches; one concatenation of the six gives the same channel order without the copy. */
static int inception_e(struct bt_graph *g, int x)
{
	int b[6], t;
	b[0] = BC(g, x, "branch1x1", 320, 1, 1, 0);
	t = BC(g, x, "branch3x3_1", 384, 1, 1, 0);
	b[1] = basic_conv(g, t, "branch3x3_2a", 384, 1, 3, 1, 0, 1);
	b[2] = basic_conv(g, t, "branch3x3_2b", 384, 3, 1, 1, 1, 0);
	t = BC(g, x, "branch3x3dbl_1", 448, 1, 1, 0);
	t = BC(g, t, "branch3x3dbl_2", 384, 3, 1, 1);
	b[3] = basic_conv(g, t, "branch3x3dbl_3a", 384, 1, 3, 1, 0, 1);
	b[4] = basic_conv(g, t, "branch3x3dbl_3b", 384, 3, 1, 1, 1, 0);
	b[5] = BC(g, pool3(g, x), "branch_pool", 192, 1, 1, 0);
	return bt_concat(g, b, 6);
}

/* The auxiliary classifier on Mixed_6e, a second loss in training only. Its logits are the
 * node named "AuxLogits.fc"; g->output stays the main classifier. torchvision's adaptive
 * average pool is a global one here: at 299 the map is already 1x1. */
static int inception_aux(struct bt_graph *g, int x, int classes)
{
	x = bt_avgpool(g, x, 5, 5, 3, 3, 0, 0, 0, 1);
	x = BC(g, x, "conv0", 128, 1, 1, 0);
	x = BC(g, x, "conv1", 768, 5, 1, 0);
	return head(g, x, "fc", classes);
}

static int inceptionv3(struct bt_graph *g, int x, int classes, int aux)
{
	static const int c7[4] = {128, 160, 160, 192};
	x = BC(g, x, "Conv2d_1a_3x3", 32, 3, 2, 0);
	x = BC(g, x, "Conv2d_2a_3x3", 32, 3, 1, 0);
	x = BC(g, x, "Conv2d_2b_3x3", 64, 3, 1, 1);
	x = bt_maxpool(g, x, 3, 2, 0, 0);
	x = BC(g, x, "Conv2d_3b_1x1", 80, 1, 1, 0);
	x = BC(g, x, "Conv2d_4a_3x3", 192, 3, 1, 0);
	x = bt_maxpool(g, x, 3, 2, 0, 0);
	bt_graph_prefix(g, "Mixed_5b.");
	x = inception_a(g, x, 32);
	bt_graph_prefix(g, "Mixed_5c.");
	x = inception_a(g, x, 64);
	bt_graph_prefix(g, "Mixed_5d.");
	x = inception_a(g, x, 64);
	bt_graph_prefix(g, "Mixed_6a.");
	x = inception_b(g, x);
	for (int i = 0; i < 4; i++) {
		bt_graph_prefix(g, "Mixed_6%c.", 'b' + i);
		x = inception_c(g, x, c7[i]);
	}
	if (aux) {
		bt_graph_prefix(g, "AuxLogits.");
		inception_aux(g, x, classes);
	}
	bt_graph_prefix(g, "Mixed_7a.");
	x = inception_d(g, x);
	bt_graph_prefix(g, "Mixed_7b.");
	x = inception_e(g, x);
	bt_graph_prefix(g, "Mixed_7c.");
	x = inception_e(g, x);
	bt_graph_prefix(g, "%s", "");
	x = bt_dropout(g, bt_global_avgpool(g, x), 0.5f);
	return bt_fc(g, bt_flatten(g, x), "fc", classes, 1);
}

int bt_model_build(struct bt_graph *g, const char *name, const struct bt_model_opts *opts)
{
	const struct model *m = find(name);
	struct bt_model_opts o = {0};
	int x, logits = -1;

	if (!m) {
		char list[768];
		size_t len = 0;
		list[0] = 0;
		for (int i = 0; i < NMODELS && len < sizeof list; i++)
			len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "",
						models[i].name);
		return bt_error(BT_ERR_NOTFOUND, "unknown model '%s' (known: %s)", name ? name : "(null)",
				list);
	}
	if (opts)
		o = *opts;
	bt_model_defaults(name, &o);
	if (o.classes < 1 || o.in_channels < 1 || o.input_size < 1)
		return bt_error(BT_ERR_INVALID, "%s: %d classes, %d input channels, input size %d",
				name, o.classes, o.in_channels, o.input_size);
	if (g->status != BT_OK)
		return g->status;

	bt_graph_prefix(g, "%s", "");
	x = bt_input(g, o.input_size, o.input_size, o.in_channels);
	switch (m->family) {
	case RESNET: logits = resnet(g, x, m, o.classes); break;
	case MOBILENET: logits = mobilenet(g, x, m, o.classes); break;
	case INCEPTION: logits = inceptionv3(g, x, o.classes, o.aux); break;
	case CIFAR: logits = cifar_resnet(g, x, m, o.classes); break;
	}
	bt_graph_prefix(g, "%s", "");
	if (g->status != BT_OK)
		return bt_error_prefix(g->status, "%s at %dx%d", name, o.input_size, o.input_size);
	g->output = logits;
	return BT_OK;
}
