/* test_graph.c: the graph builders: output shapes (padding, strides, dilation, groups,
 * ceil mode), parameter registration and arena layout, sticky errors, and the counts. */
#include <stdio.h>
#include <string.h>

#include "bt.h"
#include "graph.h"
#include "test.h"

TEST(conv_shapes_and_params)
{
	struct bt_graph g;
	struct bt_conv_args a = {.cout = 8, .kh = 1, .kw = 7, .ph = 0, .pw = 3, .bias = 1};
	struct bt_conv_args dw = {.cout = 6, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .groups = 6};
	struct bt_conv_args dil = {.cout = 4, .kh = 3, .kw = 3, .ph = 2, .pw = 2, .dh = 2, .dw = 2};
	int x, c1, c2, c3;
	bt_graph_init(&g);
	x = bt_input(&g, 17, 17, 6);
	c1 = bt_conv2d(&g, x, "c1x7", &a);
	c2 = bt_conv2d(&g, x, "depthwise", &dw);
	c3 = bt_conv2d(&g, x, "dilated", &dil);
	CHECK_EQ(g.status, BT_OK);
	CHECK_EQ(g.nodes[c1].out.h, 17);
	CHECK_EQ(g.nodes[c1].out.w, 17);
	CHECK_EQ(g.nodes[c1].out.c, 8);
	CHECK_EQ(g.nodes[c2].out.h, 9);
	CHECK_EQ(g.nodes[c3].out.h, 17);
	/* weights (Cout, KH, KW, Cin/groups) */
	CHECK_EQ(g.params[g.nodes[c1].param[0]].count, 8 * 1 * 7 * 6);
	CHECK_EQ(g.params[g.nodes[c1].param[1]].count, 8);
	CHECK_EQ(g.params[g.nodes[c2].param[0]].shape[3], 1);
	CHECK_STR(g.params[g.nodes[c1].param[0]].name, "c1x7.weight");
	CHECK_EQ(bt_graph_node_macs(&g, c2), 9 * 9 * 6 * 9 * 1);
	for (int i = 0; i < g.nparams; i++)
		CHECK_EQ(g.params[i].offset % 16, 0);
	bt_graph_free(&g);
}

TEST(pool_ceil_mode_like_pytorch)
{
	struct bt_graph g;
	int x, a, b, c, d;
	bt_graph_init(&g);
	x = bt_input(&g, 112, 112, 4);
	a = bt_maxpool(&g, x, 3, 2, 1, 0);
	b = bt_avgpool(&g, x, 2, 2, 2, 2, 0, 0, 1, 0);
	x = bt_input(&g, 7, 7, 4);
	c = bt_avgpool(&g, x, 2, 2, 2, 2, 0, 0, 1, 0); /* 7 -> 4 with ceil */
	d = bt_maxpool(&g, x, 3, 2, 1, 1);             /* 7 -> 4 */
	CHECK_EQ(g.status, BT_OK);
	CHECK_EQ(g.nodes[a].out.h, 56);
	CHECK_EQ(g.nodes[b].out.h, 56);
	CHECK_EQ(g.nodes[c].out.h, 4);
	CHECK_EQ(g.nodes[d].out.h, 4);
	bt_graph_free(&g);
}

TEST(batchnorm_params_and_counts)
{
	struct bt_graph g;
	int x, c, bn, f;
	bt_graph_init(&g);
	x = bt_input(&g, 8, 8, 3);
	bt_graph_prefix(&g, "layer1.0.");
	c = bt_conv(&g, x, "conv1", 16, 3, 1, 1);
	bn = bt_batchnorm(&g, c, "bn1", 0, 0);
	bt_mark_last_bn(&g, bn);
	bt_graph_prefix(&g, "%s", "");
	f = bt_fc(&g, bt_flatten(&g, bt_global_avgpool(&g, bt_relu(&g, bn))), "fc", 10, 1);
	CHECK_EQ(g.status, BT_OK);
	CHECK(g.nodes[bn].last_bn);
	CHECK(g.nodes[bn].a.bn.eps == 1e-5f);
	CHECK_STR(g.params[g.nodes[bn].param[3]].name, "layer1.0.bn1.running_var");
	CHECK(!g.params[g.nodes[bn].param[2]].trainable);
	/* 3*3*3*16 + 16 + 16 + 16*10 + 10 trainable; running stats are not counted */
	CHECK_EQ(bt_graph_trainable(&g), 432 + 32 + 170);
	CHECK_EQ(bt_graph_macs(&g), 8 * 8 * 16 * 27 + 160);
	CHECK_EQ(g.nodes[f].out.c, 10);
	CHECK(g.nfloats >= 432 + 64 + 170);
	bt_graph_free(&g);
}

TEST(concat_and_add)
{
	struct bt_graph g;
	int x, a, b, c, xs[3];
	bt_graph_init(&g);
	x = bt_input(&g, 5, 5, 2);
	a = bt_conv(&g, x, "a", 3, 1, 1, 0);
	b = bt_conv(&g, x, "b", 4, 3, 1, 1);
	xs[0] = a;
	xs[1] = b;
	xs[2] = x;
	c = bt_concat(&g, xs, 3);
	CHECK_EQ(g.nodes[c].out.c, 9);
	CHECK_EQ(bt_add(&g, a, a) >= 0, 1);
	CHECK_EQ(g.status, BT_OK);
	/* a mismatch fails, and the failure sticks */
	CHECK_EQ(bt_add(&g, a, b), -1);
	CHECK_EQ(g.status, BT_ERR_INVALID);
	CHECK(strstr(bt_errmsg(), "differ") != NULL);
	CHECK_EQ(bt_relu(&g, a), -1);
	bt_graph_free(&g);
}

TEST(too_small_input_is_an_error)
{
	struct bt_graph g;
	int x;
	bt_graph_init(&g);
	x = bt_input(&g, 4, 4, 3);
	x = bt_conv(&g, x, "conv1", 8, 7, 2, 0);
	CHECK_EQ(x, -1);
	CHECK_EQ(g.status, BT_ERR_INVALID);
	CHECK(strstr(bt_errmsg(), "too small") != NULL);
	bt_graph_free(&g);
}

TEST(fc_needs_flat_input)
{
	struct bt_graph g;
	int x;
	bt_graph_init(&g);
	x = bt_input(&g, 4, 4, 3);
	CHECK_EQ(bt_fc(&g, x, "fc", 10, 1), -1);
	bt_graph_free(&g);
	bt_graph_init(&g);
	x = bt_input(&g, 4, 4, 3);
	x = bt_fc(&g, bt_flatten(&g, x), "fc", 10, 0);
	CHECK_EQ(g.status, BT_OK);
	CHECK_EQ(bt_graph_trainable(&g), 480);
	CHECK_EQ(bt_graph_activation_bytes(&g, 2), (48 + 48 + 10) * 2 * 4);
	bt_graph_free(&g);
}

int main(void)
{
	RUN(conv_shapes_and_params);
	RUN(pool_ceil_mode_like_pytorch);
	RUN(batchnorm_params_and_counts);
	RUN(concat_and_add);
	RUN(too_small_input_is_an_error);
	RUN(fc_needs_flat_input);
	return test_summary();
}
