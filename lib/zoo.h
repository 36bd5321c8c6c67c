/* zoo.h: the model zoo, under GluonCV's names so that users of the paper's code feel at home.
 *
 *   resnet{18,34,50,101,152}_v1    the original ResNet: stride 2 in the bottleneck's first 1x1
 *   resnet{18,34,50,101,152}_v1b   stride on the 3x3 convolution
 *   resnet{18,34,50,101,152}_v1c   v1b with a stem of three 3x3 convolutions (32, 32, 64)
 *   resnet{18,34,50,101,152}_v1d   v1c with a 2x2 average pool before the 1x1 convolution of
 *                                  each downsampling shortcut
 *   mobilenet1.0, mobilenet0.75, mobilenet0.5, mobilenet0.25   MobileNet v1, width multiplier
 *   inceptionv3                    299x299; the auxiliary head optional
 *   cifar_resnet{20,56,110}_v1     3x3 stem, stages of 16-32-64 channels
 *
 * Every model takes the number of classes, input channels and input size.
 */
#ifndef BT_ZOO_H
#define BT_ZOO_H

#include "graph.h"

struct bt_model_opts {
	int classes;            /* 1000 by default */
	int in_channels;        /* 3 */
	int input_size;         /* 224; 299 for inceptionv3; 32 for the CIFAR ResNets */
	int aux;                /* inceptionv3: build the auxiliary head too */
};

/* Fills in the defaults for a model name (0 fields become the model's defaults). */
void bt_model_defaults(const char *name, struct bt_model_opts *o);

/* Builds the named model into an initialised graph. BT_ERR_NOTFOUND for an unknown name
 * (the detail lists the known ones); BT_ERR_INVALID when the input is too small for the
 * model's downsampling. */
int bt_model_build(struct bt_graph *g, const char *name, const struct bt_model_opts *o);

/* The known names, NULL-terminated. */
const char *const *bt_model_names(void);

#endif
