#!/usr/bin/python3
"""eval_ref.py: an independent check of bt-eval for the Bats tests, written from
bt-checkpoint(5) (lib/checkpoint.h), bt-record(5) and the model definitions alone. Its
reading of the checkpoint is checked against btcdump.py, the repository's other
independent reader: same SPEC, same tensors, same values.

  eval_ref.py check CKPT DATA JSON PRED [--tol T]
      Reads CKPT's SPEC and tensors and DATA's raw records, runs the CIFAR ResNet the SPEC
      names in plain Python (float64; slow: keep DATA small), and compares with bt-eval's output: JSON (what --json
      printed) and PRED (its --predictions file written with --logits). Checks that
      every logit agrees within T (default 2e-3, relative to the largest), that top-1,
      top-K and loss in JSON are what PRED's logits give, that the loss is within T of
      the reference's, and that each line's predictions and probabilities are the top K
      of the softmax of its logits. Only raw records of exactly the input size with the
      evaluation resize equal to it (crop ratio 1) are supported: the transform is then
      the normalisation alone.
  eval_ref.py consistency JSON PRED
      The internal part of check, with no model: JSON's figures against PRED's logits.
  eval_ref.py setlabel IN OUT INDEX LABEL
      Copies the record file IN to OUT with record INDEX's label set to LABEL (its CRC
      recomputed), to make records bt-prep would not write.
Exits 1 with a line on stderr at the first disagreement."""
import json
import math
import operator
import os
import struct
import subprocess
import sys
import zlib


def fail(msg):
    print("eval_ref: " + msg, file=sys.stderr)
    sys.exit(1)


# ---- checkpoint ---------------------------------------------------------------------
def read_ckpt(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89BTC\r\n\x1a\n":
        fail("%s: bad magic" % path)
    version, hsize, fsize, nsec, crc = struct.unpack_from("<IIQII", data, 8)
    if version != 1 or hsize != 32 or fsize != len(data) or zlib.crc32(data[:28]) != crc:
        fail("%s: bad header" % path)
    pos, sections = hsize, {}
    for _ in range(nsec):
        pos = (pos + 63) // 64 * 64
        tag = data[pos:pos + 4].decode("ascii")
        crc, length = struct.unpack_from("<IQ", data, pos + 4)
        payload = data[pos + 16:pos + 16 + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            fail("%s: section %s damaged" % (path, tag))
        sections[tag] = payload
        pos += 16 + length
    spec = dict(line.split("=", 1) for line in sections["SPEC"].decode().splitlines() if line)
    tensors = {}
    d, tdat = sections["TDIR"], sections["TDAT"]
    (count,) = struct.unpack_from("<I", d, 0)
    at = 4
    for _ in range(count):
        (nlen,) = struct.unpack_from("<H", d, at)
        name = d[at + 2:at + 2 + nlen].decode()
        at += 2 + nlen
        dtype, ndim = struct.unpack_from("<BB", d, at)
        shape = struct.unpack_from("<%dQ" % ndim, d, at + 2)
        off, nbytes, tcrc = struct.unpack_from("<QQI", d, at + 2 + 8 * ndim)
        at += 2 + 8 * ndim + 20
        raw = tdat[off:off + nbytes]
        if dtype != 0 or off % 64 or zlib.crc32(raw) != tcrc:
            fail("%s: tensor %s bad" % (path, name))
        tensors[name] = (shape, raw)
    return spec, tensors


def btcdump_agrees(path, spec, tensors):
    """The repository's checkpoint reader, btcdump.py, written apart from this one, must
    accept the file and see the same SPEC, the same tensors and the same values."""
    tool = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "btcdump.py"), path]
    r = subprocess.run(tool, capture_output=True, text=True)
    if r.returncode != 0:
        fail("btcdump.py refuses %s: %s" % (path, r.stderr.strip()))
    their_spec, their_tensors, section = {}, {}, None
    for line in r.stdout.splitlines():
        if line.startswith("section "):
            section = line.split()[1]
        elif line.startswith("tensor "):
            _, name, dtype, dims, nbytes = line.split()
            their_tensors[name] = (tuple(int(d) for d in dims.split("x")), int(nbytes))
        elif line.startswith("  ") and section == "SPEC":
            k, v = line[2:].split("=", 1)
            their_spec[k] = v
    if their_spec != spec:
        fail("btcdump.py reads SPEC %r, this reader %r" % (their_spec, spec))
    mine = {n: (tuple(shape), len(raw)) for n, (shape, raw) in tensors.items()}
    if their_tensors != mine:
        fail("btcdump.py lists other tensors than this reader")
    names = sorted(tensors)
    for name in names[:: max(1, len(names) // 6)] + ["fc.weight"]:
        r = subprocess.run(tool + ["--tensor", name], capture_output=True, text=True)
        theirs = [struct.unpack("<f", struct.pack("<f", float(v)))[0] for v in r.stdout.split()]
        raw = tensors[name][1]
        if r.returncode != 0 or theirs != list(struct.unpack("<%df" % (len(raw) // 4), raw)):
            fail("btcdump.py reads other values of %s" % name)


# ---- records ------------------------------------------------------------------------
def read_records(path):
    """(label, id, h, w, c, pixels bytes) of every raw record, and the class names."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89BTR\r\n\x1a\n":
        fail("%s: bad magic" % path)
    pos, out = 32, []
    while data[pos:pos + 4] == b"BTRR":
        kind, ndim, nsoft, size, rid, label = struct.unpack_from("<BBHQQi", data, pos + 4)
        shape = struct.unpack_from("<4I", data, pos + 28)
        start = pos + 48 + 4 * nsoft
        if kind != 3:
            fail("%s: record %d is not raw pixels" % (path, len(out)))
        out.append((label, rid, shape[0], shape[1], shape[2], data[start:start + size]))
        pos = start + size + 4
    return out


def set_label(src, dst, index, label):
    data = bytearray(open(src, "rb").read())
    pos, i = 32, 0
    while data[pos:pos + 4] == b"BTRR":
        nsoft, size = struct.unpack_from("<HQ", data, pos + 6)
        end = pos + 48 + 4 * nsoft + size
        if i == index:
            struct.pack_into("<i", data, pos + 24, label)
            struct.pack_into("<I", data, end, zlib.crc32(bytes(data[pos:end])))
            open(dst, "wb").write(bytes(data))
            return
        pos, i = end + 4, i + 1
    fail("%s has no record %d" % (src, index))


# ---- the model, in plain Python (float64) --------------------------------------------
# Activations are lists of pixels (row-major), each a list of channel values: NHWC, as in
# bt. Weights are (Cout, KH, KW, Cin), so a weight row lines up with a patch gathered in
# (KH, KW, Cin) order and a convolution is one dot product per output pixel and channel.
def reference_logits(spec, tensors, records):
    def t(name):
        shape, raw = tensors[name]
        v = list(struct.unpack("<%df" % (len(raw) // 4), raw))
        return shape, v

    model = spec["model"]
    if not model.startswith("cifar_resnet"):
        fail("the reference knows the CIFAR ResNets only, not %s" % model)
    size = int(spec["input_size"])
    resize = int(spec["resize"]) or int(math.floor(size / float(spec["crop_ratio"]) + 0.5))
    mean = [float(x) for x in spec["mean"].split(",")]
    std = [float(x) for x in spec["std"].split(",")]

    def conv(x, hw, name, stride):
        (cout, kh, kw, cin), w = t(name + ".weight")
        rows = [w[o * kh * kw * cin:(o + 1) * kh * kw * cin] for o in range(cout)]
        bias = t(name + ".bias")[1] if name + ".bias" in tensors else [0.0] * cout
        h = wd = hw
        p = kh // 2
        ho = (h + 2 * p - kh) // stride + 1
        zero = [0.0] * cin
        y = []
        for oy in range(ho):
            for ox in range(ho):
                patch = []
                for i in range(kh):
                    iy = oy * stride - p + i
                    for j in range(kw):
                        ix = ox * stride - p + j
                        patch += x[iy * wd + ix] if 0 <= iy < h and 0 <= ix < wd else zero
                y.append([sum(map(operator.mul, r, patch)) + b for r, b in zip(rows, bias)])
        return y, ho

    def bn(x, name):
        g, b = t(name + ".weight")[1], t(name + ".bias")[1]
        mu, var = t(name + ".running_mean")[1], t(name + ".running_var")[1]
        sc = [gi / math.sqrt(vi + 1e-5) for gi, vi in zip(g, var)]
        return [[(v - m) * s + bb for v, m, s, bb in zip(px, mu, sc, b)] for px in x]

    def relu(x):
        return [[v if v > 0 else 0.0 for v in px] for px in x]

    depth = int(model[len("cifar_resnet"):].split("_")[0])
    (ncls, nin), fw = t("fc.weight")
    fb = t("fc.bias")[1]
    out = []
    for label, rid, h, w, c, px in records:
        if h != size or w != size or resize != size:
            fail("the reference needs %dx%d records and crop ratio 1" % (size, size))
        m = mean[:c] if c == 3 else mean[:1]
        s = std[:c] if c == 3 else std[:1]
        x = [[(px[k * c + ch] - m[ch]) / s[ch] for ch in range(c)] for k in range(h * w)]
        y, hw = conv(x, size, "conv1", 1)
        x = relu(bn(y, "bn1"))
        for i in range(3):
            for j in range((depth - 2) // 6):
                p = "layer%d.%d." % (i + 1, j)
                st = 2 if i > 0 and j == 0 else 1
                y, hy = conv(x, hw, p + "conv1", st)
                y = relu(bn(y, p + "bn1"))
                y, hy = conv(y, hy, p + "conv2", 1)
                y = bn(y, p + "bn2")
                if p + "downsample.0.weight" in tensors:
                    x, _ = conv(x, hw, p + "downsample.0", st)
                    x = bn(x, p + "downsample.1")
                x = relu([[a + b for a, b in zip(pa, pb)] for pa, pb in zip(y, x)])
                hw = hy
        g = [sum(px[ch] for px in x) / len(x) for ch in range(nin)]
        out.append([sum(map(operator.mul, fw[o * nin:(o + 1) * nin], g)) + fb[o] for o in range(ncls)])
    return out


# ---- bt-eval's output ---------------------------------------------------------------
def read_predictions(path):
    lines = open(path).read().split("\n")
    if lines[-1] != "":
        fail("%s does not end with a newline" % path)
    head = lines[0].split("\t")
    k = (len(head) - 3) // 2
    want = ["id", "label"] + [c for i in range(1, k + 1) for c in ("pred%d" % i, "prob%d" % i)] + ["logits"]
    if head != want:
        fail("%s: header %r, expected %r" % (path, head, want))
    rows = []
    for n, line in enumerate(lines[1:-1], 2):
        f = line.split("\t")
        if len(f) != len(head):
            fail("%s:%d: %d fields, expected %d" % (path, n, len(f), len(head)))
        preds = [(int(f[2 + 2 * i]), float(f[3 + 2 * i])) for i in range(k)]
        rows.append((int(f[0]), int(f[1]), preds, [float(v) for v in f[-1].split(",")]))
    return k, rows


def log_softmax(z):
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def consistency(js, k, rows):
    if js["topk"] != k or ("top%d" % k) not in js:
        fail("JSON topk %r and its key disagree with the %d predictions per line" % (js["topk"], k))
    if js["images"] != len(rows):
        fail("JSON images %d, predictions lines %d" % (js["images"], len(rows)))
    top1 = topk = 0
    loss = 0.0
    for rid, label, preds, z in rows:
        lp = log_softmax(z)
        order = sorted(range(len(z)), key=lambda j: (-z[j], j))
        for (c, p), want in zip(preds, order):
            # Printed with 6 digits: a near tie may be printed in either order.
            if c != want and abs(z[c] - z[want]) > 1e-4:
                fail("id %d: predicted %r, the logits order %r" % (rid, preds, order[:k]))
            if abs(p - math.exp(lp[c])) > 1e-5 + 1e-4 * p:
                fail("id %d: probability %g of class %d, softmax gives %g" % (rid, p, c, math.exp(lp[c])))
        top1 += preds[0][0] == label
        topk += label in [c for c, _ in preds]
        loss -= lp[label]
    n = len(rows)
    # JSON has 6 decimals; the logits 6 significant digits, which move the loss a little.
    for key, want, tol in (("top1", top1 / n, 1e-6), ("top%d" % k, topk / n, 1e-6),
                           ("loss", loss / n, 5e-5 + 1e-5 * abs(loss / n))):
        if js[key] is None or abs(js[key] - want) > tol:
            fail("JSON %s %r, the predictions give %r" % (key, js[key], want))
    return loss / n


def main():
    a = sys.argv[1:]
    if a[:1] == ["setlabel"] and len(a) == 5:
        set_label(a[1], a[2], int(a[3]), int(a[4]))
        return
    if a[:1] == ["consistency"] and len(a) == 3:
        k, rows = read_predictions(a[2])
        consistency(json.load(open(a[1])), k, rows)
        return
    if a[:1] == ["check"] and len(a) in (5, 7):
        tol = float(a[6]) if len(a) == 7 and a[5] == "--tol" else 2e-3
        spec, tensors = read_ckpt(a[1])
        btcdump_agrees(a[1], spec, tensors)
        records = read_records(a[2])
        js = json.load(open(a[3]))
        k, rows = read_predictions(a[4])
        loss = consistency(js, k, rows)
        ref = reference_logits(spec, tensors, records)
        if len(rows) != len(records):
            fail("%d predictions for %d records" % (len(rows), len(records)))
        scale = max([1.0] + [abs(v) for z in ref for v in z])
        ref_loss = 0.0
        for i, ((rid, label, _, z), rec) in enumerate(zip(rows, records)):
            if rid != rec[1] or label != rec[0]:
                fail("line %d: id %d label %d, record %d has id %d label %d" % (i + 2, rid, label, i, rec[1], rec[0]))
            if len(z) != len(ref[i]):
                fail("line %d: %d logits, the model has %d classes" % (i + 2, len(z), len(ref[i])))
            for j, v in enumerate(z):
                if abs(v - ref[i][j]) > tol * scale:
                    fail("record %d class %d: bt-eval's logit %g, the reference's %g" % (i, j, v, ref[i][j]))
            ref_loss -= log_softmax(ref[i])[label]
        ref_loss /= len(rows)
        if abs(loss - ref_loss) > tol * max(1.0, ref_loss):
            fail("loss %g, the reference's %g" % (loss, ref_loss))
        print("ok: %d records, %d classes, largest logit %.3g, loss %.6f" % (len(rows), len(ref[0]), scale, ref_loss))
        return
    print(__doc__, file=sys.stderr)
    sys.exit(2)


main()
