#!/usr/bin/python3
"""aug_torchvision.py - the torchvision side of the augmentation benchmark.

Usage: /usr/bin/python3 tests/bench/aug_torchvision.py [--mode M] [--runs N]
                                                       [--versions] CORPUS

Builds torchvision.datasets.ImageFolder(CORPUS) with the transform of mode M,
indexes every image once (PIL decodes the JPEG, the transform runs, the
tensor is dropped) and prints the seconds that took, one line per run:
    seconds 1.2345 images 1000
It is meant to be called once per timed run by tests/bench/aug.sh, which
alternates it with bt-aug; --runs N repeats inside one process (for use by
hand). One process, torch.set_num_threads(1), no DataLoader and no workers.
Importing torch and scanning CORPUS are not timed; the loop is.

Modes (the Bag of Tricks recipe, as torchvision spells it):
  train  RandomResizedCrop(224), RandomHorizontalFlip(), ColorJitter(0.4,
         0.4, 0.4), ToTensor(), Normalize(ImageNet mean/std): float32 output.
         torchvision has no PCA lighting transform, so none is applied here
         (bt-aug applies it: that only costs bt).
  u8     the same without ToTensor/Normalize: PILToTensor() gives a uint8
         CHW tensor (the peer of bt-aug --format u8).
  eval   Resize(256), CenterCrop(224), ToTensor(), Normalize(...).

--versions prints the torch, torchvision and PIL versions and exits.
Needs Debian's python3-torch, python3-torchvision and python3-pil.
"""

import argparse
import sys
import time


def die(msg):
    sys.stderr.write("aug_torchvision: " + msg + "\n")
    sys.exit(1)


try:
    import PIL
    import torch
    import torchvision
    from torchvision import datasets, transforms as T
except ImportError as e:
    die("cannot import %s; install Debian's python3-torch, python3-torchvision "
        "and python3-pil" % (e.name or e))

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def transform(mode):
    if mode == "train":
        return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                          T.ColorJitter(0.4, 0.4, 0.4), T.ToTensor(),
                          T.Normalize(mean=MEAN, std=STD)])
    if mode == "u8":
        return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                          T.ColorJitter(0.4, 0.4, 0.4), T.PILToTensor()])
    return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                      T.Normalize(mean=MEAN, std=STD)])


def main():
    ap = argparse.ArgumentParser(description="time torchvision augmentation")
    ap.add_argument("--mode", choices=("train", "eval", "u8"), default="train")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--versions", action="store_true")
    ap.add_argument("corpus", nargs="?")
    a = ap.parse_args()
    if a.versions:
        print("torch %s torchvision %s PIL %s" % (
            torch.__version__, torchvision.__version__, PIL.__version__))
        return 0
    if not a.corpus:
        ap.error("CORPUS is required")
    if a.runs < 1:
        ap.error("--runs must be >= 1")

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    try:
        ds = datasets.ImageFolder(a.corpus, transform=transform(a.mode))
    except (OSError, RuntimeError, FileNotFoundError) as e:
        die("cannot open %s: %s" % (a.corpus, e))
    n = len(ds)
    shape = None
    for _ in range(a.runs):
        t0 = time.perf_counter()
        for i in range(n):
            x, _y = ds[i]
        t1 = time.perf_counter()
        shape = (tuple(x.shape), str(x.dtype))
        print("seconds %.4f images %d" % (t1 - t0, n), flush=True)
    sys.stderr.write("aug_torchvision: mode %s, last tensor %s %s\n"
                     % (a.mode, shape[0], shape[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
