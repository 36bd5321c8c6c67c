#!/usr/bin/python3
"""zoo_torch.py - PyTorch mirrors of the models of lib/zoo.c, for their reference counts.

Usage: /usr/bin/python3 tests/bench/zoo_torch.py [--classes N] [MODEL...]

Prints one line per model:
    MODEL params P macs M input S
P counts trainable parameters (what papers publish; batch-norm running statistics are
state, not parameters). M counts the multiply-adds of convolutions and fully connected
layers for one image at the model's default input size S, as bt_graph_macs does.

The numbers asserted by tests/unit/test_zoo.c come from here. Where torchvision has the
model it is used as is (resnet*_v1b is torchvision's ResNet: stride on the 3x3; v1 moves
the stride to the first 1x1, which changes no count but is mirrored anyway; inceptionv3 is
torchvision's inception_v3). The others follow GluonCV's definitions
(gluoncv/model_zoo/resnetv1b.py, mobilenet.py, cifarresnet.py), written out here with
state_dict names equal to the names bt gives its parameters, so the two can be compared
tensor by tensor: --names MODEL prints them.
Needs Debian's python3-torch and python3-torchvision (CPU builds are enough).
"""

import argparse
import sys

import torch
import torch.nn as nn
import torchvision


# ResNet v1, v1b, v1c, v1d (ImageNet).

def bottleneck_v1(block):
    """GluonCV's BottleneckV1 puts the stride on the first 1x1; torchvision on the 3x3."""
    stride = block.conv2.stride
    if stride != (1, 1):
        block.conv1.stride, block.conv2.stride = stride, (1, 1)


def deep_stem(model):
    """v1c: three 3x3 convolutions (32, 32, 64) instead of the 7x7, GluonCV's deep_stem with
    stem_width 32. Named conv1.0, .1, .3, .4, .6 as nn.Sequential numbers them (as timm
    does); the last batch norm stays bn1."""
    model.conv1 = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, 1, 1, bias=False))


def avg_down(model):
    """v1d: GluonCV's avg_down, AvgPool2d(stride, ceil_mode, no padding counted) and a
    stride-1 1x1 convolution in each shortcut; downsample.0 is the pool (an identity when
    the stride is 1), .1 the convolution, .2 the batch norm."""
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        ds = layer[0].downsample
        if ds is None:
            continue
        conv, bn = ds[0], ds[1]
        s = conv.stride[0]
        pool = (nn.AvgPool2d(s, s, ceil_mode=True, count_include_pad=False) if s > 1
                else nn.Identity())
        conv.stride = (1, 1)
        layer[0].downsample = nn.Sequential(pool, conv, bn)


def resnet(depth, version, classes):
    model = getattr(torchvision.models, "resnet%d" % depth)(num_classes=classes)
    if version == "v1" and depth >= 50:
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for block in layer:
                bottleneck_v1(block)
    if version in ("v1c", "v1d"):
        deep_stem(model)
    if version == "v1d":
        avg_down(model)
    return model


# MobileNet v1 (GluonCV mobilenet.py): features.N numbered as GluonCV's HybridSequential
# numbers them (conv, batch norm, ReLU per convolution), the classifier named output.

class MobileNet(nn.Module):
    def __init__(self, multiplier, classes):
        super().__init__()
        m = multiplier
        dw = [int(x * m) for x in [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024]]
        ch = [int(x * m) for x in [64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2]
        st = [1, 2] * 3 + [1] * 5 + [2, 1]
        f = []

        def conv(cin, cout, k, s, p, groups=1):
            f.extend([nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False),
                      nn.BatchNorm2d(cout), nn.ReLU(inplace=True)])

        conv(3, int(32 * m), 3, 2, 1)
        for d, c, s in zip(dw, ch, st):
            conv(d, d, 3, s, 1, groups=d)
            conv(d, c, 1, 1, 0)
        self.features = nn.Sequential(*f)
        self.output = nn.Linear(ch[-1], classes)

    def forward(self, x):
        x = self.features(x).mean((2, 3))
        return self.output(x)


# CIFAR ResNet v1 (GluonCV cifarresnet.py), with the names of torchvision's ResNet.

class CifarBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.downsample(x) if self.downsample else x))


class CifarResNet(nn.Module):
    def __init__(self, depth, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, (c, s) in enumerate(zip((16, 32, 64), (1, 2, 2))):
            blocks = []
            for j in range(n):
                blocks.append(CifarBlock(cin, c, s if j == 0 else 1))
                cin = c
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


def build(name, classes, aux=False):
    """(model, input size) for a bt model name."""
    if name.startswith("resnet"):
        depth, version = name[len("resnet"):].split("_")
        return resnet(int(depth), version, classes), 224
    if name.startswith("mobilenet"):
        return MobileNet(float(name[len("mobilenet"):]), classes), 224
    if name == "inceptionv3":
        return torchvision.models.inception_v3(num_classes=classes, aux_logits=aux,
                                               init_weights=False), 299
    if name.startswith("cifar_resnet"):
        return CifarResNet(int(name[len("cifar_resnet"):].split("_")[0]), classes), 32
    raise KeyError(name)


NAMES = (["resnet%d_%s" % (d, v) for v in ("v1", "v1b", "v1c", "v1d")
          for d in (18, 34, 50, 101, 152)] +
         ["mobilenet1.0", "mobilenet0.75", "mobilenet0.5", "mobilenet0.25", "inceptionv3",
          "inceptionv3+aux", "cifar_resnet20_v1", "cifar_resnet56_v1", "cifar_resnet110_v1"])


def macs(model, size):
    """Multiply-adds of convolutions and linear layers, from the shapes a forward pass sees."""
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    def fc_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(fc_hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return total[0]


def main():
    ap = argparse.ArgumentParser(description="reference counts of bt's model zoo")
    ap.add_argument("--classes", type=int, default=0, help="default: 10 for cifar_*, else 1000")
    ap.add_argument("--names", action="store_true", help="print the parameter names and shapes")
    ap.add_argument("models", nargs="*", default=NAMES)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        aux = name.endswith("+aux")
        base = name[:-4] if aux else name
        classes = args.classes or (10 if base.startswith("cifar") else 1000)
        model, size = build(base, classes, aux)
        if args.names:
            for k, v in model.state_dict().items():
                if not k.endswith("num_batches_tracked"):
                    print(name, k, "x".join(str(d) for d in v.shape))
            continue
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        # The auxiliary head only runs in training mode; its multiply-adds are not counted.
        print("%s params %d macs %d input %d" % (name, params, macs(model, size), size))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
