/* test_zoo.c: every model of the zoo against published and PyTorch counts. Parameter counts
 * are the papers' and torchvision's where those exist, otherwise those of the PyTorch mirrors
 * in tests/bench/zoo_torch.py (GluonCV's definitions written out in PyTorch); multiply-adds
 * are the mirrors' too, counted the same way (convolutions and fully connected layers), so
 * that an equal count also says every spatial size on the way agrees. Also: shapes, names,
 * the zero-gamma marks, defaults and the errors. */
#include "bt.h"
#include "graph.h"
#include "zoo.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

/* From /usr/bin/python3 tests/bench/zoo_torch.py (torch 1.13, torchvision 0.14), default
 * classes (1000; 10 for cifar_*) and default input size. */
static const struct {
	const char *name;
	uint64_t params, macs;
} refs[] = {
	/* torchvision's resnet18..152: the published counts. */
	{"resnet18_v1", 11689512, 1814073344},
	{"resnet34_v1", 21797672, 3663761408},
	{"resnet50_v1", 25557032, 3857973248},
	{"resnet101_v1", 44549160, 7570194432},
	{"resnet152_v1", 60192808, 11282415616},
	{"resnet18_v1b", 11689512, 1814073344},
	{"resnet34_v1b", 21797672, 3663761408},
	{"resnet50_v1b", 25557032, 4089184256},
	{"resnet101_v1b", 44549160, 7801405440},
	{"resnet152_v1b", 60192808, 11513626624},
	{"resnet18_v1c", 11708744, 2053713920},
	{"resnet34_v1c", 21816904, 3903401984},
	{"resnet50_v1c", 25576264, 4328824832},
	{"resnet101_v1c", 44568392, 8041046016},
	{"resnet152_v1c", 60212040, 11753267200},
	{"resnet18_v1d", 11708744, 2053713920},
	{"resnet34_v1d", 21816904, 3903401984},
	{"resnet50_v1d", 25576264, 4328824832},
	{"resnet101_v1d", 44568392, 8041046016},
	{"resnet152_v1d", 60212040, 11753267200},
	/* GluonCV's table. Its 0.5 entry, 1,342,536, counts the running statistics too (see
	 * mobilenet_state below); every other entry counts trainable parameters only. */
	{"mobilenet1.0", 4231976, 568740352},
	{"mobilenet0.75", 2585560, 325400448},
	{"mobilenet0.5", 1331592, 149497088},
	{"mobilenet0.25", 470072, 41030272},
	/* torchvision's inception_v3(aux_logits=False, init_weights=False). */
	{"inceptionv3", 23834568, 5713216096},
	/* 10 classes. */
	{"cifar_resnet20_v1", 272474, 40813184},
	{"cifar_resnet56_v1", 855770, 125747840},
	{"cifar_resnet110_v1", 1730714, 253149824},
};
#define NREFS ((int)(sizeof refs / sizeof refs[0]))

static int build(struct bt_graph *g, const char *name, int classes, int in_channels, int size, int aux)
{
	struct bt_model_opts o = {.classes = classes, .in_channels = in_channels, .input_size = size,
				  .aux = aux};
	bt_graph_init(g);
	return bt_model_build(g, name, &o);
}

static int find_node(const struct bt_graph *g, const char *name)
{
	for (int i = 0; i < g->nnodes; i++)
		if (strcmp(g->nodes[i].name, name) == 0)
			return i;
	return -1;
}

static const struct bt_param *find_param(const struct bt_graph *g, const char *name)
{
	for (int i = 0; i < g->nparams; i++)
		if (strcmp(g->params[i].name, name) == 0)
			return &g->params[i];
	return NULL;
}

/* The node that feeds the global average pool before the classifier. */
static int before_pool(const struct bt_graph *g)
{
	int fc = g->output, x = g->nodes[fc].in[0];
	while (x >= 0 && g->nodes[x].op != BT_OP_GLOBAL_AVGPOOL)
		x = g->nodes[x].nin ? g->nodes[x].in[0] : -1;
	return x >= 0 ? g->nodes[x].in[0] : -1;
}

TEST(names_table)
{
	const char *const *names = bt_model_names();
	int n = 0;
	for (; names[n]; n++)
		;
	CHECK_EQ(n, NREFS);
	for (int i = 0; i < NREFS; i++)
		CHECK_STR(names[i], refs[i].name);
}

TEST(counts)
{
	for (int i = 0; i < NREFS; i++) {
		struct bt_graph g;
		int st = build(&g, refs[i].name, 0, 0, 0, 0);
		if (st != BT_OK || bt_graph_trainable(&g) != refs[i].params || bt_graph_macs(&g) != refs[i].macs)
			fprintf(stderr, "%s: status %d, %llu parameters (want %llu), %llu multiply-adds (want %llu)\n",
				refs[i].name, st, (unsigned long long)bt_graph_trainable(&g),
				(unsigned long long)refs[i].params, (unsigned long long)bt_graph_macs(&g),
				(unsigned long long)refs[i].macs);
		CHECK_EQ(st, BT_OK);
		CHECK_EQ(bt_graph_trainable(&g), refs[i].params);
		CHECK_EQ(bt_graph_macs(&g), refs[i].macs);
		CHECK(g.output >= 0 && g.nodes[g.output].op == BT_OP_FC);
		bt_graph_free(&g);
	}
}

/* Keras-style tables count batch-norm running statistics as (non-trainable) parameters. */
TEST(mobilenet_state)
{
	struct bt_graph g;
	uint64_t all = 0;
	CHECK_EQ(build(&g, "mobilenet0.5", 0, 0, 0, 0), BT_OK);
	for (int i = 0; i < g.nparams; i++)
		all += g.params[i].count;
	CHECK_EQ(all, 1342536);
	bt_graph_free(&g);
}

TEST(resnet50_macs)
{
	struct bt_graph g;
	double m;
	CHECK_EQ(build(&g, "resnet50_v1b", 0, 0, 224, 0), BT_OK);
	m = (double)bt_graph_macs(&g);
	CHECK(fabs(m - 4.09e9) < 0.02 * 4.09e9);
	bt_graph_free(&g);
}

TEST(inception_aux)
{
	struct bt_graph g;
	int aux;
	CHECK_EQ(build(&g, "inceptionv3", 0, 0, 0, 1), BT_OK);
	/* torchvision's inception_v3(aux_logits=True, init_weights=False). */
	CHECK_EQ(bt_graph_trainable(&g), 27161264);
	aux = find_node(&g, "AuxLogits.fc");
	CHECK(aux >= 0 && g.nodes[aux].op == BT_OP_FC);
	CHECK_EQ(g.nodes[aux].out.c, 1000);
	CHECK(aux != g.output);
	CHECK_STR(g.nodes[g.output].name, "fc");
	/* Mixed_6e feeds it. */
	CHECK_EQ(g.nodes[find_node(&g, "AuxLogits.conv1.conv")].out.h, 1);
	bt_graph_free(&g);
	/* At 224 Mixed_6e is 12x12: too small for the 5x5 convolution after the pool, as in
	 * torchvision; without the head 224 is fine. */
	CHECK_EQ(build(&g, "inceptionv3", 0, 0, 224, 1), BT_ERR_INVALID);
	bt_graph_free(&g);
	CHECK_EQ(build(&g, "inceptionv3", 0, 0, 224, 0), BT_OK);
	bt_graph_free(&g);
}

TEST(shapes)
{
	struct bt_graph g;
	int x;
	CHECK_EQ(build(&g, "resnet50_v1", 0, 0, 224, 0), BT_OK);
	x = before_pool(&g);
	CHECK(x >= 0);
	CHECK_EQ(g.nodes[x].out.h, 7);
	CHECK_EQ(g.nodes[x].out.w, 7);
	CHECK_EQ(g.nodes[x].out.c, 2048);
	CHECK_EQ(g.nodes[g.output].out.h, 1);
	CHECK_EQ(g.nodes[g.output].out.w, 1);
	CHECK_EQ(g.nodes[g.output].out.c, 1000);
	CHECK_EQ(g.nodes[g.input].out.c, 3);
	CHECK_EQ(g.nodes[find_node(&g, "layer1.0.conv3")].out.h, 56);
	CHECK_EQ(g.nodes[find_node(&g, "layer2.0.conv1")].out.h, 28); /* v1: stride on the 1x1 */
	bt_graph_free(&g);

	CHECK_EQ(build(&g, "resnet50_v1b", 0, 0, 224, 0), BT_OK);
	CHECK_EQ(g.nodes[find_node(&g, "layer2.0.conv1")].out.h, 56);
	CHECK_EQ(g.nodes[find_node(&g, "layer2.0.conv2")].out.h, 28);
	bt_graph_free(&g);

	CHECK_EQ(build(&g, "inceptionv3", 0, 0, 0, 0), BT_OK);
	{
		static const struct {
			const char *block;
			int hw, c;
		} mixed[] = {{"Mixed_5b", 35, 256}, {"Mixed_5c", 35, 288}, {"Mixed_5d", 35, 288},
			     {"Mixed_6a", 17, 768}, {"Mixed_6e", 17, 768}, {"Mixed_7a", 8, 1280},
			     {"Mixed_7b", 8, 2048}, {"Mixed_7c", 8, 2048}};
		for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++) {
			char name[64];
			snprintf(name, sizeof name, "%s.concat", mixed[i].block);
			x = find_node(&g, name);
			CHECK(x >= 0);
			CHECK_EQ(g.nodes[x].out.h, mixed[i].hw);
			CHECK_EQ(g.nodes[x].out.c, mixed[i].c);
		}
	}
	x = find_node(&g, "Mixed_5b.branch_pool.conv");
	CHECK_EQ(g.nodes[g.nodes[x].in[0]].op, BT_OP_AVGPOOL);
	CHECK_EQ(g.nodes[g.nodes[x].in[0]].a.pool.count_pad, 1);
	x = find_node(&g, "Mixed_6b.branch7x7_2.conv");
	CHECK_EQ(g.nodes[x].a.conv.kh, 1);
	CHECK_EQ(g.nodes[x].a.conv.kw, 7);
	CHECK_EQ(g.nodes[x].a.conv.pw, 3);
	CHECK(fabs(g.nodes[find_node(&g, "Mixed_6b.branch7x7_2.bn")].a.bn.eps - 0.001) < 1e-7);
	bt_graph_free(&g);

	CHECK_EQ(build(&g, "mobilenet1.0", 0, 0, 0, 0), BT_OK);
	x = before_pool(&g);
	CHECK_EQ(g.nodes[x].out.h, 7);
	CHECK_EQ(g.nodes[x].out.c, 1024);
	x = find_node(&g, "features.3");
	CHECK_EQ(g.nodes[x].a.conv.groups, 32);
	bt_graph_free(&g);
}

/* cifar_resnet20_v1 on Fashion-MNIST: one channel, 28x28. Only the first convolution
 * changes: 16 x 3x3 x 1 weights instead of 16 x 3x3 x 3. */
TEST(gray_28)
{
	struct bt_graph g;
	int x;
	const struct bt_param *w;
	CHECK_EQ(build(&g, "cifar_resnet20_v1", 10, 1, 28, 0), BT_OK);
	CHECK_EQ(bt_graph_trainable(&g), 272474 - 16 * 9 * 2);
	w = find_param(&g, "conv1.weight");
	CHECK(w);
	CHECK_EQ(w->shape[3], 1);
	x = before_pool(&g);
	CHECK_EQ(g.nodes[x].out.h, 7);
	CHECK_EQ(g.nodes[x].out.c, 64);
	bt_graph_free(&g);
}

/* With 10 classes only the classifier shrinks: 990 rows of (features + 1 bias). */
TEST(classes_only_fc)
{
	const char *const *names = bt_model_names();
	for (int i = 0; names[i]; i++) {
		struct bt_graph a, b;
		uint64_t features;
		CHECK_EQ(build(&a, names[i], 1000, 3, 0, 0), BT_OK);
		CHECK_EQ(build(&b, names[i], 10, 3, 0, 0), BT_OK);
		features = (uint64_t)a.nodes[a.nodes[a.output].in[0]].out.c;
		CHECK_EQ(bt_graph_trainable(&a) - bt_graph_trainable(&b), 990 * (features + 1));
		CHECK_EQ(a.nparams, b.nparams);
		for (int j = 0; j < a.nparams; j++) {
			CHECK_STR(a.params[j].name, b.params[j].name);
			if (a.params[j].node != a.output)
				CHECK_EQ(a.params[j].count, b.params[j].count);
		}
		bt_graph_free(&a);
		bt_graph_free(&b);
	}
}

/* Zero-gamma: one mark per residual block, on the batch norm that feeds its addition. */
TEST(last_bn)
{
	static const struct {
		const char *name;
		int blocks;
	} nets[] = {{"resnet18_v1", 8}, {"resnet50_v1", 16}, {"resnet50_v1d", 16},
		    {"resnet101_v1b", 33}, {"resnet152_v1c", 50}, {"cifar_resnet20_v1", 9},
		    {"cifar_resnet110_v1", 54}, {"mobilenet1.0", 0}, {"inceptionv3", 0}};
	for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++) {
		struct bt_graph g;
		int marks = 0, adds = 0;
		CHECK_EQ(build(&g, nets[k].name, 0, 0, 0, 0), BT_OK);
		for (int i = 0; i < g.nnodes; i++) {
			const struct bt_node *n = &g.nodes[i];
			marks += n->last_bn;
			if (n->op == BT_OP_ADD) {
				int branch = n->in[0], shortcut = n->in[1];
				adds++;
				CHECK(g.nodes[branch].op == BT_OP_BATCHNORM && g.nodes[branch].last_bn);
				/* The shortcut's batch norm (projection) is not zeroed. */
				CHECK(!g.nodes[shortcut].last_bn);
			}
		}
		CHECK_EQ(marks, nets[k].blocks);
		CHECK_EQ(adds, nets[k].blocks);
		bt_graph_free(&g);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Parameter names, and the names of nodes that own parameters, are unique in every model
 * (ReLUs, pools and additions share their block's prefix and need no name). */
TEST(names_unique)
{
	const char *const *names = bt_model_names();
	for (int m = 0; names[m]; m++) {
		struct bt_graph g;
		const char **v;
		int n = 0;
		CHECK_EQ(build(&g, names[m], 0, 0, 0, strcmp(names[m], "inceptionv3") == 0), BT_OK);
		v = malloc(((size_t)g.nparams + (size_t)g.nnodes) * sizeof *v);
		CHECK(v);
		for (int i = 0; i < g.nparams; i++)
			v[n++] = g.params[i].name;
		for (int i = 0; i < g.nnodes; i++)
			if (g.nodes[i].param[0] >= 0)
				v[n++] = g.nodes[i].name;
		qsort(v, (size_t)n, sizeof *v, cmp_str);
		for (int i = 1; i < n; i++)
			if (strcmp(v[i - 1], v[i]) == 0) {
				fprintf(stderr, "%s: '%s' twice\n", names[m], v[i]);
				free(v);
				CHECK(0);
			}
		free(v);
		bt_graph_free(&g);
	}
}

/* Names as torchvision, GluonCV and timm give them, so that checkpoints can be compared. */
TEST(names_torch)
{
	static const struct {
		const char *model, *param;
		int64_t d0, d1, d2, d3;
	} want[] = {
		{"resnet50_v1", "conv1.weight", 64, 7, 7, 3},
		{"resnet50_v1", "layer1.0.downsample.0.weight", 256, 1, 1, 64},
		{"resnet50_v1", "layer4.2.bn3.running_var", 2048, 0, 0, 0},
		{"resnet50_v1", "fc.weight", 1000, 2048, 0, 0},
		{"resnet18_v1b", "layer2.0.downsample.1.bias", 128, 0, 0, 0},
		{"resnet50_v1c", "conv1.0.weight", 32, 3, 3, 3},
		{"resnet50_v1c", "conv1.4.weight", 32, 0, 0, 0},
		{"resnet50_v1c", "conv1.6.weight", 64, 3, 3, 32},
		{"resnet50_v1c", "bn1.weight", 64, 0, 0, 0},
		{"resnet50_v1d", "layer1.0.downsample.1.weight", 256, 1, 1, 64},
		{"resnet50_v1d", "layer3.0.downsample.2.running_mean", 1024, 0, 0, 0},
		{"mobilenet1.0", "features.3.weight", 32, 3, 3, 1},
		{"mobilenet1.0", "features.79.weight", 1024, 0, 0, 0},
		{"mobilenet0.25", "output.weight", 1000, 256, 0, 0},
		{"inceptionv3", "Conv2d_1a_3x3.conv.weight", 32, 3, 3, 3},
		{"inceptionv3", "Mixed_7c.branch3x3dbl_3b.conv.weight", 384, 3, 1, 384},
		{"inceptionv3", "AuxLogits.conv1.conv.weight", 768, 5, 5, 128},
		{"inceptionv3", "AuxLogits.fc.bias", 1000, 0, 0, 0},
		{"inceptionv3", "fc.weight", 1000, 2048, 0, 0},
		{"cifar_resnet56_v1", "layer3.0.downsample.0.weight", 64, 1, 1, 32},
		{"cifar_resnet56_v1", "fc.weight", 10, 64, 0, 0},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		struct bt_graph g;
		const struct bt_param *p;
		CHECK_EQ(build(&g, want[i].model, 0, 0, 0, 1), BT_OK);
		p = find_param(&g, want[i].param);
		if (!p)
			fprintf(stderr, "%s: no %s\n", want[i].model, want[i].param);
		CHECK(p);
		CHECK_EQ(p->shape[0], want[i].d0);
		CHECK_EQ(p->ndim > 1 ? p->shape[1] : 0, want[i].d1);
		CHECK_EQ(p->ndim > 2 ? p->shape[2] : 0, want[i].d2);
		CHECK_EQ(p->ndim > 3 ? p->shape[3] : 0, want[i].d3);
		bt_graph_free(&g);
	}
}

/* v1d averages 2x2 (ceil mode, padding not counted) before a stride-1 projection. */
TEST(avg_down)
{
	struct bt_graph g;
	int conv, pool;
	CHECK_EQ(build(&g, "resnet50_v1d", 0, 0, 0, 0), BT_OK);
	conv = find_node(&g, "layer2.0.downsample.1");
	CHECK(conv >= 0);
	CHECK_EQ(g.nodes[conv].a.conv.sh, 1);
	pool = g.nodes[conv].in[0];
	CHECK_EQ(g.nodes[pool].op, BT_OP_AVGPOOL);
	CHECK_EQ(g.nodes[pool].a.pool.kh, 2);
	CHECK_EQ(g.nodes[pool].a.pool.sh, 2);
	CHECK_EQ(g.nodes[pool].a.pool.ceil, 1);
	CHECK_EQ(g.nodes[pool].a.pool.count_pad, 0);
	/* layer1 only widens: no pool. */
	conv = find_node(&g, "layer1.0.downsample.1");
	CHECK(g.nodes[g.nodes[conv].in[0]].op != BT_OP_AVGPOOL);
	bt_graph_free(&g);
	/* An odd map: ceil mode keeps the last column, as the stride-2 3x3 of the branch does. */
	CHECK_EQ(build(&g, "resnet18_v1d", 0, 0, 200, 0), BT_OK);
	bt_graph_free(&g);
}

TEST(defaults)
{
	struct bt_model_opts o = {0};
	bt_model_defaults("resnet50_v1", &o);
	CHECK_EQ(o.classes, 1000);
	CHECK_EQ(o.in_channels, 3);
	CHECK_EQ(o.input_size, 224);
	memset(&o, 0, sizeof o);
	bt_model_defaults("inceptionv3", &o);
	CHECK_EQ(o.input_size, 299);
	CHECK_EQ(o.aux, 0);
	memset(&o, 0, sizeof o);
	bt_model_defaults("cifar_resnet110_v1", &o);
	CHECK_EQ(o.classes, 10);
	CHECK_EQ(o.input_size, 32);
	o = (struct bt_model_opts){.classes = 100, .in_channels = 1, .input_size = 64};
	bt_model_defaults("cifar_resnet20_v1", &o);
	CHECK_EQ(o.classes, 100);
	CHECK_EQ(o.in_channels, 1);
	CHECK_EQ(o.input_size, 64);
}

TEST(errors)
{
	struct bt_graph g;
	bt_graph_init(&g);
	CHECK_EQ(bt_model_build(&g, "resnet51_v1", NULL), BT_ERR_NOTFOUND);
	CHECK(strstr(bt_errmsg(), "resnet51_v1"));
	CHECK(strstr(bt_errmsg(), "resnet50_v1d"));
	CHECK(strstr(bt_errmsg(), "cifar_resnet110_v1"));
	CHECK_EQ(g.nnodes, 0);
	CHECK_EQ(bt_model_build(&g, NULL, NULL), BT_ERR_NOTFOUND);

	/* NULL options: the defaults. */
	CHECK_EQ(bt_model_build(&g, "cifar_resnet20_v1", NULL), BT_OK);
	CHECK_EQ(g.nodes[g.output].out.c, 10);
	bt_graph_free(&g);

	/* Inception needs 75x75: at 74 Mixed_7a's stride-2 3x3 meets a 2x2 map. */
	CHECK_EQ(build(&g, "inceptionv3", 0, 0, 75, 0), BT_OK);
	bt_graph_free(&g);
	CHECK_EQ(build(&g, "inceptionv3", 0, 0, 74, 0), BT_ERR_INVALID);
	CHECK(strstr(bt_errmsg(), "inceptionv3"));
	CHECK(strstr(bt_errmsg(), "too small"));
	CHECK_EQ(g.status, BT_ERR_INVALID);
	bt_graph_free(&g);

	CHECK_EQ(build(&g, "resnet50_v1", 0, 0, -1, 0), BT_ERR_INVALID);
	bt_graph_free(&g);
	CHECK_EQ(build(&g, "resnet50_v1", -5, 0, 0, 0), BT_ERR_INVALID);
	bt_graph_free(&g);
}

int main(void)
{
	RUN(names_table);
	RUN(counts);
	RUN(mobilenet_state);
	RUN(resnet50_macs);
	RUN(inception_aux);
	RUN(shapes);
	RUN(gray_28);
	RUN(classes_only_fc);
	RUN(last_bn);
	RUN(names_unique);
	RUN(names_torch);
	RUN(avg_down);
	RUN(defaults);
	RUN(errors);
	return test_summary();
}
