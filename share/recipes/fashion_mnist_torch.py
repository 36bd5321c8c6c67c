#!/usr/bin/python3
"""fashion_mnist_torch.py - the PyTorch twin of bt-train for the Fashion-MNIST benchmark.

Usage: /usr/bin/python3 share/recipes/fashion_mnist_torch.py [--data DIR] [options]

Trains GluonCV's cifar_resnet20_v1 (1 input channel, 10 classes) on Fashion-MNIST with the
recipe bt-train implements (/tmp/spec/training.md, bt-train(1)), so that the accuracy bt
reaches can be compared with PyTorch's on the same recipe. Options carry bt-train's names
and defaults (the bt-aug ones too), so share/recipes/fashion-mnist.mk passes one list of
hyper-parameters to both. Reads the IDX files directly (DIR/train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; default
DIR /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist). Never downloads.

The recipe, as bt-train does it:
  model    conv3x3(16)-BN-ReLU, 3 stages x 3 BasicBlockV1 (16/32/64 channels, stride 2 and a
           conv1x1+BN shortcut at the first block of stages 2 and 3), global average pool,
           FC with bias. Parameter names are bt's graph names (conv1, layer2.0.conv1, fc...).
  init     Xavier uniform (gain 1) on conv and FC weights, zero biases, BN gamma 1 beta 0
           (eps 1e-5, momentum 0.1); --last-gamma: gamma 0 on each block's bn2.
  sgd      torch.optim.SGD(nesterov=True): g = dw + wd*w, v = m*v + g, w -= lr*(g + m*v);
           --no-wd: a second parameter group without decay for biases and BN gamma/beta.
  lr       set before every step: linear warmup from --warmup-lr over --warmup-epochs, then
           step (x lr_decay at each --lr-decay-epoch), cosine or poly over the rest.
  loss     soft cross-entropy (mean over the batch) on explicit targets: one-hot, or with
           --label-smoothing the paper's 1-eps on the true class and eps/(K-1) elsewhere;
           --mixup: per batch lam ~ Beta(a, a) (numpy, seeded), partner = the batch reversed,
           x = lam*x + (1-lam)*x[::-1], target likewise; lam = 1 in the last
           --mixup-off-epoch epochs.
  train    torchvision RandomResizedCrop(input_size, scale=(min_area, max_area),
           ratio=(min_aspect, max_aspect), bilinear) on PIL 'L' images, RandomHorizontalFlip
           (unless --no-flip), pixels as floats 0..255, (x - mean) / std. No colour jitter
           or lighting: they do nothing to greyscale in bt either, and non-zero values are
           refused here rather than silently ignored. --erase P: torchvision
           RandomErasing(P, scale=(erase_min_area, erase_max_area), ratio=(erase_min_aspect,
           erase_max_aspect), value=0) on each normalised image. --pad P: RandomCrop(
           input_size, padding=P) (black fill) in place of RandomResizedCrop.
  eval     Resize(round(input_size / crop_ratio)) (PIL bilinear; skipped at crop ratio 1)
           then CenterCrop(input_size), normalised; the 10,000 test images after every
           epoch, batch norm with its running statistics (run in NCHW: faster there).
  batches  global batch size, the epoch's last partial batch dropped, a new order each
           epoch; torch.set_num_threads(-j, default 2); channels_last.
  dtype    --dtype bfloat16: the training forward under torch.autocast("cpu", bfloat16)
           (PyTorch's CPU mixed precision: convolutions and the FC layer in bfloat16, float32
           weights, the loss from float32 logits), as bt-train --dtype bfloat16 on the CPU;
           evaluation stays float32, as bt-eval scores a checkpoint's float32 weights.

Output: progress on stderr; on stdout one JSON line per epoch
  {"epoch":e,"loss":..,"train_top1":..,"val_top1":..,"val_top5":..,"lr":..,"seconds":..,
   "images_per_s":..}
and a last line {"final":true,"val_top1":..,"val_top5":..,"seconds":..}. Accuracies are
fractions (bt-eval's convention); loss is the epoch's mean training loss; lr is the rate of
the epoch's last step; seconds count from the start of training (evaluation included);
images_per_s is the epoch's training throughput (augmentation included). train_top1 counts
the arg-max against the label that dominates each (mixed) image, y_i or, when lam < 0.5,
its partner's, as bt-train does.

--count-params prints the number of trainable parameters and exits (the Makefile checks it
against `bt-info --model cifar_resnet20_v1 --in-channels 1 --input-size 28 --classes 10`).
Exit status: 0 success, 1 failure, 2 usage error.
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

PROG = "fashion_mnist_torch.py"
CLASSES = 10


def die(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr)
    sys.exit(1)


# ---- data ----

def read_idx(path, magic_dims):
    """An IDX file (gzipped or not) as a uint8 array; magic_dims is 1 (labels) or 3 (images)."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        die("cannot read '%s': %s" % (path, e.strerror or e))
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 8 or buf[3] != magic_dims:
        die("'%s': not an IDX file of %d dimension(s) of unsigned bytes" % (path, magic_dims))
    dims = struct.unpack(">%dI" % magic_dims, buf[4:4 + 4 * magic_dims])
    off = 4 + 4 * magic_dims
    n = int(np.prod(dims))
    if len(buf) - off < n:
        die("'%s': truncated (%d bytes of pixels, %d expected)" % (path, len(buf) - off, n))
    return np.frombuffer(buf, np.uint8, n, off).reshape(dims)


def load_split(data, prefix):
    x = read_idx(os.path.join(data, "%s-images-idx3-ubyte.gz" % prefix), 3)
    y = read_idx(os.path.join(data, "%s-labels-idx1-ubyte.gz" % prefix), 1)
    if len(x) != len(y):
        die("%s: %d %s images but %d labels" % (data, len(x), prefix, len(y)))
    if y.max() >= CLASSES:
        die("%s: label %d out of range" % (data, y.max()))
    return x, y.astype(np.int64)


# ---- model: GluonCV cifar_resnet20_v1 with bt's parameter names ----

class BasicBlockV1(nn.Module):
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
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class CifarResNetV1(nn.Module):
    def __init__(self, depth=20, in_channels=1, classes=CLASSES):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, (c, s) in enumerate(zip((16, 32, 64), (1, 2, 2))):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlockV1(cin, c, s if j == 0 else 1))
                cin = c
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def init_model(model, last_gamma):
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)  # fan_in = Cin*kh*kw, fan_out = Cout*kh*kw
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-5, 0.1
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    # A second pass: modules() lists a block before its bn2, which the loop above resets.
    for m in model.modules():
        if last_gamma and isinstance(m, BasicBlockV1):
            nn.init.zeros_(m.bn2.weight)


def param_groups(model, wd, no_wd):
    """Weights of convolutions and the FC decay; with no_wd biases and BN gamma/beta don't."""
    decay, rest = [], []
    for mod in model.modules():
        for name, p in mod.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(mod, (nn.Conv2d, nn.Linear))
            (decay if is_weight or not no_wd else rest).append(p)
    groups = [{"params": decay, "weight_decay": wd}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return groups


# ---- schedule, targets ----

def lr_at(a, it, bpe, total):
    """bt-train's rate before step `it` (0-based)."""
    warm = int(round(a.warmup_epochs * bpe))
    if it < warm:
        return a.warmup_lr + (a.lr - a.warmup_lr) * it / warm
    if a.lr_mode == "step":
        return a.lr * a.lr_decay ** sum(1 for e in a.lr_decay_epoch if it >= e * bpe)
    frac = (it - warm) / max(1, total - warm)
    if a.lr_mode == "cosine":
        return a.lr / 2 * (1 + math.cos(math.pi * frac))
    return a.lr * (1 - frac) ** a.poly_power


def soft_targets(y, eps):
    """The paper's label smoothing: 1-eps on the true class, eps/(K-1) elsewhere."""
    q = torch.full((len(y), CLASSES), eps / (CLASSES - 1))
    q.scatter_(1, y.unsqueeze(1), 1.0 - eps)
    return q


# ---- command line ----

def floats(s):
    try:
        return [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("'%s' is not a comma-separated list of numbers" % s)


def one_value(name, vals):
    """--mean/--std take M or M,M,M as bt does; greyscale needs them equal."""
    if len(vals) not in (1, 3) or len(set(vals)) != 1:
        die("%s: one value, or three equal values, for greyscale images" % name)
    return vals[0]


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="Train cifar_resnet20_v1 on Fashion-MNIST with bt-train's "
        "recipe, in PyTorch (bt's accuracy twin).")
    add = ap.add_argument
    add("--data", default="/usr/share/datasets/fashion-mnist", help="IDX directory")
    add("--num-epochs", type=int, default=3)
    add("--batch-size", type=int, default=32, help="global batch size")
    add("--lr", type=float, default=0.1)
    add("--base-lr", type=float, help="lr = BASE_LR * batch / base_batch")
    add("--base-batch", type=int, default=256)
    add("--lr-mode", choices=("step", "cosine", "poly"), default="step")
    add("--lr-decay", type=float, default=0.1)
    add("--lr-decay-epoch", type=floats, default=[40, 60])
    add("--poly-power", type=float, default=2.0)
    add("--warmup-epochs", type=float, default=0.0)
    add("--warmup-lr", type=float, default=0.0)
    add("--momentum", type=float, default=0.9)
    add("--wd", type=float, default=1e-4)
    add("--no-wd", action="store_true", help="no decay on biases and BN gamma/beta")
    add("--last-gamma", action="store_true", help="zero gamma on each block's last BN")
    add("--label-smoothing", type=float, nargs="?", const=0.1, default=0.0, metavar="EPS")
    add("--mixup", action="store_true")
    add("--mixup-alpha", type=float, default=0.2)
    add("--mixup-off-epoch", type=int, default=0)
    add("--input-size", type=int, default=28)
    add("--crop-ratio", type=float, default=0.875)
    add("--min-area", type=float, default=0.08)
    add("--max-area", type=float, default=1.0)
    add("--min-aspect", type=float, default=0.75)
    add("--max-aspect", type=float, default=4 / 3)
    add("--no-flip", action="store_true")
    add("--pad", type=int, default=-1, help="RandomCrop(size, padding=P) instead (-1: off)")
    add("--erase", type=float, default=0.0, help="random-erasing probability")
    add("--erase-min-area", type=float, default=0.02)
    add("--erase-max-area", type=float, default=0.33)
    add("--erase-min-aspect", type=float, default=0.3)
    add("--erase-max-aspect", type=float, default=3.3)
    add("--jitter", type=float, default=0.0, help="must be 0 (greyscale)")
    add("--lighting", type=float, default=0.0, help="must be 0 (greyscale)")
    add("--mean", type=floats, default=[72.94])
    add("--std", type=floats, default=[90.02])
    add("--seed", type=int, default=0)
    add("--dtype", choices=("float32", "bfloat16"), default="float32",
        help="bfloat16: the forward under CPU autocast (bt-train --dtype bfloat16)")
    add("--limit", type=int, default=0, help="train on the first N images only")
    add("-j", "--threads", type=int, default=2)
    add("--log-interval", type=int, default=50, help="batches between progress lines")
    add("--count-params", action="store_true", help="print the trainable parameters, exit")
    a = ap.parse_args(argv)
    bad = None
    if a.num_epochs < 1 or a.batch_size < 1 or a.threads < 1 or a.limit < 0:
        bad = "--num-epochs, --batch-size and -j must be positive, --limit >= 0"
    elif not 0 <= a.label_smoothing < 1:
        bad = "--label-smoothing: EPS must be in [0, 1)"
    elif not 0 < a.min_area <= a.max_area <= 1 or not 0 < a.min_aspect <= a.max_aspect:
        bad = "crop area must satisfy 0 < min <= max <= 1, aspect 0 < min <= max"
    elif not 0 < a.crop_ratio <= 1:
        bad = "--crop-ratio must be in (0, 1]"
    elif a.pad < -1:
        bad = "--pad must be >= 0 (or -1: off)"
    elif not 0 <= a.erase <= 1 or not 0 < a.erase_min_area <= a.erase_max_area <= 1 \
            or not 0 < a.erase_min_aspect <= a.erase_max_aspect:
        bad = "--erase must be in [0, 1], its area 0 < min <= max <= 1, aspect 0 < min <= max"
    elif a.jitter != 0 or a.lighting != 0:
        bad = "--jitter and --lighting must be 0: Fashion-MNIST is greyscale"
    elif a.mixup and a.mixup_alpha <= 0:
        bad = "--mixup-alpha must be positive"
    if bad:
        ap.error(bad)
    if a.base_lr is not None:
        a.lr = a.base_lr * a.batch_size / a.base_batch
    a.mean = one_value("--mean", a.mean)
    a.std = one_value("--std", a.std)
    return a


# ---- training ----

def evaluate(model, eval_model, x, y, batch=128):
    """Top-1 and top-5 of model's weights, run by eval_model: a copy in NCHW (PyTorch 1.13's
    CPU batch norm in inference mode is ~4x slower in channels_last; batches over ~256
    fall out of the caches)."""
    eval_model.load_state_dict(model.state_dict())
    eval_model.eval()
    top1 = top5 = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            k = eval_model(x[i:i + batch]).topk(5, 1).indices
            t = y[i:i + batch].unsqueeze(1)
            top1 += (k[:, :1] == t).sum().item()
            top5 += (k == t).any(1).sum().item()
    return top1 / len(x), top5 / len(x)


def eval_tensor(x, a):
    """Resize(round(S / crop_ratio)) + CenterCrop(S) on PIL, normalised, (N, 1, S, S)."""
    size = int(math.floor(a.input_size / a.crop_ratio + 0.5))  # C's round(), not banker's
    steps = [] if a.crop_ratio == 1 else [T.Resize(size, T.InterpolationMode.BILINEAR)]
    tf = T.Compose(steps + [T.CenterCrop(a.input_size)])
    out = np.stack([np.asarray(tf(Image.fromarray(img, "L"))) for img in x])
    return (torch.from_numpy(out).float().unsqueeze(1) - a.mean) / a.std


def main(argv):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = CifarResNetV1(20, 1, CLASSES)
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if a.count_params:
        print(nparams)
        return 0

    xtr, ytr = load_split(a.data, "train")
    xte, yte = load_split(a.data, "t10k")
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    bpe = len(xtr) // a.batch_size
    if bpe == 0:
        die("%d training images make no batch of %d" % (len(xtr), a.batch_size))
    total = bpe * a.num_epochs

    init_model(model, a.last_gamma)
    eval_model = CifarResNetV1(20, 1, CLASSES)
    model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(param_groups(model, a.wd, a.no_wd), lr=a.lr, momentum=a.momentum,
                          nesterov=True, weight_decay=a.wd)
    crop = T.RandomCrop(a.input_size, padding=a.pad) if a.pad >= 0 else \
        T.RandomResizedCrop(a.input_size, scale=(a.min_area, a.max_area),
                            ratio=(a.min_aspect, a.max_aspect),
                            interpolation=T.InterpolationMode.BILINEAR)
    flip = T.RandomHorizontalFlip(0.0 if a.no_flip else 0.5)
    erase = T.RandomErasing(a.erase, scale=(a.erase_min_area, a.erase_max_area),
                            ratio=(a.erase_min_aspect, a.erase_max_aspect), value=0) \
        if a.erase > 0 else None
    order_rng = torch.Generator().manual_seed(a.seed)
    mix_rng = np.random.RandomState(a.seed)
    xte_t, yte_t = eval_tensor(xte, a), torch.from_numpy(yte)
    ytr_t = torch.from_numpy(ytr)
    print("%s: cifar_resnet20_v1, %d parameters; %d train images (%d batches of %d), %d test;"
          " %d epochs, %d threads, %s, torch %s"
          % (PROG, nparams, len(xtr), bpe, a.batch_size, len(xte), a.num_epochs, a.threads,
             a.dtype, torch.__version__), file=sys.stderr)

    t_start = time.perf_counter()
    it = 0
    top1 = top5 = 0.0
    for epoch in range(a.num_epochs):
        t_epoch = time.perf_counter()
        order = torch.randperm(len(xtr), generator=order_rng)
        mixing = a.mixup and epoch < a.num_epochs - a.mixup_off_epoch
        loss_sum = correct = seen = 0
        for b in range(bpe):
            idx = order[b * a.batch_size:(b + 1) * a.batch_size]
            imgs = np.stack([np.asarray(flip(crop(Image.fromarray(xtr[i], "L"))))
                             for i in idx.tolist()])
            x = (torch.from_numpy(imgs).float().unsqueeze(1) - a.mean) / a.std
            if erase is not None:
                x = torch.stack([erase(img) for img in x])
            y = ytr_t[idx]
            q = soft_targets(y, a.label_smoothing)
            lam = 1.0
            if mixing:
                lam = float(mix_rng.beta(a.mixup_alpha, a.mixup_alpha))
                x = lam * x + (1 - lam) * x.flip(0)
                q = lam * q + (1 - lam) * q.flip(0)
            lr = lr_at(a, it, bpe, total)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bfloat16"):
                out = model(x.contiguous(memory_format=torch.channels_last))
            out = out.float()
            loss = -(q * F.log_softmax(out, 1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == (y if lam >= 0.5 else y.flip(0))).sum().item()
            seen += len(y)
            if a.log_interval and (b + 1) % a.log_interval == 0:
                print("epoch %d batch %d/%d loss %.4f train-top1 %.4f lr %.5f %.0f images/s"
                      % (epoch, b + 1, bpe, loss_sum / seen, correct / seen, lr,
                         seen / (time.perf_counter() - t_epoch)), file=sys.stderr)
        ips = seen / (time.perf_counter() - t_epoch)
        top1, top5 = evaluate(model, eval_model, xte_t, yte_t)
        rec = {"epoch": epoch, "loss": round(loss_sum / seen, 6),
               "train_top1": round(correct / seen, 6), "val_top1": top1, "val_top5": top5,
               "lr": lr, "seconds": round(time.perf_counter() - t_start, 2),
               "images_per_s": round(ips, 1)}
        print(json.dumps(rec), flush=True)
        print("epoch %d: loss %.4f train-top1 %.4f val-top1 %.4f val-top5 %.4f %.0f images/s"
              % (epoch, rec["loss"], rec["train_top1"], top1, top5, ips), file=sys.stderr)
    print(json.dumps({"final": True, "val_top1": top1, "val_top5": top5,
                      "seconds": round(time.perf_counter() - t_start, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
