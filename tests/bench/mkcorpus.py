#!/usr/bin/python3
"""mkcorpus.py - build an ImageNet-like JPEG corpus for the packing benchmark.

Usage: /usr/bin/python3 tests/bench/mkcorpus.py [-n N] [-k K] [--seed S] DIR

Writes N JPEGs (default 1000) into K class directories (default 10):
    DIR/class_00/img_0000.jpg ... DIR/class_09/img_0099.jpg
Each image is 500x375 (one in four is portrait, 375x500), JPEG quality 90,
cut at a random position and scale out of one of the photographs shipped
by Debian's lomiri-wallpapers-20.04 package (fallback: ukui-wallpapers),
resized, randomly flipped left-right, given a small colour shift and some
film grain (fine + coarse noise of random strength, so that the file
sizes spread out like camera JPEGs instead of staying tiny on the flat
regions of the wallpapers).
Everything is drawn from one fixed-seed PRNG, so the same Debian system
gives the same bytes every time.

The corpus is built in DIR.partial and renamed to DIR at the end, so an
existing DIR is always complete. An existing DIR is an error (use a new
one, or delete it). Needs python3-pil (apt-get install python3-pil).
The photographs are never copied anywhere else; never commit the corpus.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys

WALLPAPER_PACKAGES = ("lomiri-wallpapers-20.04", "ukui-wallpapers")
PHOTO_EXT = (".jpg", ".jpeg", ".png")
LANDSCAPE = (500, 375)
PORTRAIT = (375, 500)
QUALITY = 90
GRAIN_TILE = 640      # noise tiles are cropped at random offsets
GRAIN_TILES = 4


def die(msg):
    sys.stderr.write("mkcorpus: " + msg + "\n")
    sys.exit(1)


try:
    from PIL import Image, ImageChops
except ImportError:
    die("python3-pil (PIL) is not installed; "
        "install Debian's package: apt-get install python3-pil")


def package_photos(pkg):
    """Photo files listed by dpkg for pkg, or [] if it is not installed."""
    try:
        out = subprocess.run(["dpkg", "-L", pkg], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, check=False,
                             universal_newlines=True).stdout
    except OSError:
        return []
    return sorted(p for p in out.splitlines()
                  if p.lower().endswith(PHOTO_EXT) and os.path.isfile(p))


def find_sources():
    for pkg in WALLPAPER_PACKAGES:
        photos = package_photos(pkg)
        if photos:
            return pkg, photos
    die("no wallpaper photographs found: install Debian's package "
        "lomiri-wallpapers-20.04 (apt-get install lomiri-wallpapers-20.04)"
        " or ukui-wallpapers")


def load_sources(paths):
    """Decode every photograph once; keep the big ones (>= 1000 px each way)."""
    imgs = []
    for p in paths:
        try:
            im = Image.open(p)
            im = im.convert("RGB")
        except Exception as e:  # a broken file is not fatal if others work
            sys.stderr.write("mkcorpus: skipping %s: %s\n" % (p, e))
            continue
        if min(im.size) >= 1000:
            imgs.append((os.path.basename(p), im))
    if not imgs:
        die("none of the wallpaper photographs could be used")
    return imgs


def make_grain(rng):
    """Uniform-noise tiles: fine (per pixel) and coarse (4x4 upscaled)."""
    n, c = GRAIN_TILE, GRAIN_TILE // 4
    fine = [Image.frombytes("RGB", (n, n), rng.randbytes(n * n * 3))
            for _ in range(GRAIN_TILES)]
    coarse = [Image.frombytes("RGB", (c, c), rng.randbytes(c * c * 3))
              .resize((n, n), Image.BILINEAR) for _ in range(GRAIN_TILES)]
    return fine, coarse


def add_grain(rng, im, tiles, amp):
    """im + uniform noise in [-amp, +amp] (clipped), from a random tile."""
    if amp <= 0:
        return im
    w, h = im.size
    t = tiles[rng.randrange(len(tiles))]
    x = rng.randrange(0, GRAIN_TILE - w + 1)
    y = rng.randrange(0, GRAIN_TILE - h + 1)
    noise = t.crop((x, y, x + w, y + h)).point(
        [v * 2 * amp // 255 for v in range(256)] * 3)
    return ImageChops.add(im, noise, 1.0, -amp)


def make_image(rng, sources, grain):
    """One corpus image: random crop at random scale, resize, flip, tint,
    grain."""
    name, src = sources[rng.randrange(len(sources))]
    tw, th = PORTRAIT if rng.random() < 0.25 else LANDSCAPE
    sw, sh = src.size
    aspect = tw / th
    # Largest crop of the target aspect that fits, then a random scale of it
    # (linear 0.12 .. 0.9, i.e. roughly 1.5% .. 80% of that area).
    maxw = min(sw, sh * aspect)
    cw = maxw * rng.uniform(0.12, 0.9)
    ch = cw / aspect
    cw, ch = max(tw, int(cw)), max(th, int(ch))
    x = rng.randrange(0, sw - cw + 1)
    y = rng.randrange(0, sh - ch + 1)
    im = src.resize((tw, th), Image.BILINEAR, box=(x, y, x + cw, y + ch),
                    reducing_gap=2.0)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    # Small colour shift: per-channel gain and offset.
    lut = []
    for _ in range(3):
        gain = rng.uniform(0.88, 1.12)
        off = rng.uniform(-12.0, 12.0)
        lut.extend(min(255, max(0, int(round(v * gain + off))))
                   for v in range(256))
    im = im.point(lut)
    im = add_grain(rng, im, grain[0], rng.randint(3, 16))
    return add_grain(rng, im, grain[1], rng.randint(4, 24))


def main():
    ap = argparse.ArgumentParser(
        description="Build an ImageNet-like JPEG corpus from Debian "
                    "wallpaper photographs.")
    ap.add_argument("dir", help="output directory (must not exist)")
    ap.add_argument("-n", "--images", type=int, default=1000,
                    help="number of images (default 1000)")
    ap.add_argument("-k", "--classes", type=int, default=10,
                    help="number of class directories (default 10)")
    ap.add_argument("--seed", type=int, default=20261128,
                    help="PRNG seed (default 20261128)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args()
    if a.images < 1 or a.classes < 1 or a.classes > 100:
        die("need -n >= 1 and 1 <= -k <= 100")
    out = a.dir.rstrip("/") or a.dir
    if os.path.exists(out):
        die("%s already exists; remove it or choose another directory" % out)

    pkg, paths = find_sources()
    sources = load_sources(paths)
    if not a.quiet:
        print("mkcorpus: %d photographs from %s: %s" %
              (len(sources), pkg, ", ".join(n for n, _ in sources)))

    tmp = out + ".partial"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    rng = random.Random(a.seed)
    grain = make_grain(rng)
    per_class = [0] * a.classes
    total = 0
    for i in range(a.images):
        c = i % a.classes
        d = os.path.join(tmp, "class_%02d" % c)
        if per_class[c] == 0:
            os.makedirs(d)
        im = make_image(rng, sources, grain)
        path = os.path.join(d, "img_%04d.jpg" % per_class[c])
        im.save(path, "JPEG", quality=QUALITY)
        per_class[c] += 1
        total += os.path.getsize(path)
    os.rename(tmp, out)
    if not a.quiet:
        print("mkcorpus: wrote %d images in %d classes to %s, %d bytes "
              "(mean %.1f KiB)" % (a.images, a.classes, out, total,
                                  total / a.images / 1024.0))


if __name__ == "__main__":
    main()
