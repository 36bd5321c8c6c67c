#!/usr/bin/python3
"""train_cpu_torch.py - the PyTorch side of tests/bench/train-cpu.sh.

Usage: /usr/bin/python3 tests/bench/train_cpu_torch.py --model NAME [--batch-size B]
           [--input-size S] [--in-channels C] [--classes K] [--steps N] [--warmup N]
           [-j T] [--memory-format channels_last|contiguous] [--no-inference]
           [--dtype float32|bfloat16]

Does what `bt-train --benchmark` does, with the same model (the mirrors of
tests/bench/zoo_torch.py, which have bt's exact structure), batch, loss and optimizer:
uniform random input in [-1, 1), random labels, CrossEntropyLoss(label_smoothing=0.1),
SGD(lr 0.01, momentum 0.9, nesterov, weight_decay 1e-4); WARMUP untimed steps, then STEPS
timed steps of zero_grad / forward / loss / backward / step; then inference
(model.eval(), torch.no_grad()) timed the same way: WARMUP untimed forwards, STEPS timed.
torch.set_num_threads(T). --memory-format channels_last puts the model and the input in
NHWC (bt's layout); contiguous is PyTorch's default NCHW. --dtype bfloat16 runs every
forward (training and inference) under torch.autocast("cpu", dtype=torch.bfloat16),
PyTorch's CPU mixed precision, beside bt-train --benchmark --dtype bfloat16.

Prints "key value" lines like bt-train; the last line is the training images per second:
    model       NAME
    batch       B
    format      channels_last
    loss        L (last step)
    step        MS ms (forward + backward + SGD)
    inference   X images/s
    base RSS    N kB   (after import torch, before the model: the interpreter and libraries)
    peak RSS    N kB   (ru_maxrss of this process)
    train       images/s
    Y
With --in-channels other than 3 the first convolution takes C channels (as bt's does).
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import zoo_torch  # noqa: E402


def rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def first_conv_channels(model, c):
    """Rebuild the model's first convolution for c input channels (bt's --in-channels)."""
    name = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    parent, _, leaf = name.rpartition(".")
    mod = model.get_submodule(parent) if parent else model
    old = getattr(mod, leaf)
    setattr(mod, leaf, nn.Conv2d(c, old.out_channels, old.kernel_size, old.stride, old.padding,
                                 old.dilation, old.groups, old.bias is not None))


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU training benchmark (bt-train's peer)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=0)
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("-j", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("--memory-format", choices=("channels_last", "contiguous"),
                    default="channels_last")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--no-inference", action="store_true")
    a = ap.parse_args()
    half = a.dtype == "bfloat16"

    torch.set_num_threads(a.threads)
    base = rss_kb()
    classes = a.classes or (10 if a.model.startswith("cifar") else 1000)
    torch.manual_seed(7)
    model, size = zoo_torch.build(a.model, classes)
    size = a.input_size or size
    if a.in_channels != 3:
        first_conv_channels(model, a.in_channels)
    fmt = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = (torch.rand(a.batch_size, a.in_channels, size, size) * 2 - 1).to(memory_format=fmt)
    labels = torch.randint(0, classes, (a.batch_size,))
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=1e-4)
    print("pytorch: benchmark %s, batch %d, %dx%dx%d, %d classes, %d threads, %s, torch %s"
          % (a.model, a.batch_size, size, size, a.in_channels, classes, a.threads,
             a.memory_format, torch.__version__), file=sys.stderr)

    model.train()
    t0 = time.perf_counter()
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
            out = model(x)
        loss = crit(out.float(), labels)
        loss.backward()
        opt.step()
    lossv = loss.item()
    train_s = time.perf_counter() - t0

    infer_s = 0.0
    if not a.no_inference:
        model.eval()
        with torch.no_grad():
            for s in range(a.warmup + a.steps):
                if s == a.warmup:
                    t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                    y = model(x)
            y.sum().item()
        infer_s = time.perf_counter() - t0

    n = a.batch_size * a.steps
    print("model       %s" % a.model)
    print("batch       %d" % a.batch_size)
    print("format      %s" % a.memory_format)
    print("dtype       %s" % a.dtype)
    print("loss        %.4f (last step)" % lossv)
    print("step        %.2f ms (forward + backward + SGD)" % (1e3 * train_s / a.steps))
    if not a.no_inference:
        print("inference   %.1f images/s" % (n / infer_s))
    print("base RSS    %d kB" % base)
    print("peak RSS    %d kB" % rss_kb())
    print("train       images/s\n%.1f" % (n / train_s))


if __name__ == "__main__":
    main()
