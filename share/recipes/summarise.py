#!/usr/bin/python3
"""summarise.py - the tables of share/recipes/fashion-mnist.mk and ablation.mk.

Usage:
  summarise.py compare [--min-top1 P] [--max-diff P] [--strict]
               --run SEED BT_EVAL.json TORCH.jsonl [--run ...]
  summarise.py rows --row NAME BT_EVAL.json... [--row ...]

compare: one line per seed with bt's top-1 (bt-eval --json: "top1", a fraction), PyTorch's
(the {"final":true,...} line of fashion_mnist_torch.py) and their difference, in
percentage points; then the mean and spread (sample standard deviation, and min..max) of
each column, the training minutes when known (bt: the last "epoch" line of the
metrics.jsonl beside the evaluated checkpoint; PyTorch: its final "seconds"), and whether
the targets hold: the mean bt top-1 >= --min-top1 (95.0) and |mean(bt - PyTorch)| <=
--max-diff (0.3).
rows: per named row (an ablation row), the mean, spread and each seed's top-1.

Exit status: 0 (also when a target is missed, unless --strict: then 3), 1 when an input is
missing or unreadable, 2 for a usage error.
"""

import argparse
import json
import math
import os
import sys

PROG = "summarise.py"


def die(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr)
    sys.exit(1)


def json_lines(path):
    try:
        with open(path) as f:
            lines = [ln for ln in f if ln.strip()]
        return [json.loads(ln) for ln in lines]
    except OSError as e:
        die("cannot read '%s': %s" % (path, e.strerror))
    except ValueError as e:
        die("'%s': not JSON lines: %s" % (path, e))


def bt_top1(path):
    """top-1 in percent from bt-eval --json, and bt-train's minutes when its metrics are there."""
    objs = json_lines(path)
    if len(objs) != 1 or "top1" not in objs[0]:
        die("'%s': not the output of bt-eval --json" % path)
    minutes = None
    ckpt = objs[0].get("checkpoint")
    if isinstance(ckpt, str):
        metrics = os.path.join(os.path.dirname(ckpt), "metrics.jsonl")
        if os.path.exists(metrics):
            epochs = [o for o in json_lines(metrics) if o.get("type") == "epoch"]
            if epochs and "seconds" in epochs[-1]:
                minutes = epochs[-1]["seconds"] / 60
    return 100.0 * objs[0]["top1"], minutes


def torch_top1(path):
    final = [o for o in json_lines(path) if o.get("final")]
    if not final:
        die("'%s': no final line (did the run finish?)" % path)
    return 100.0 * final[-1]["val_top1"], final[-1].get("seconds", 0) / 60


def stats(xs):
    """mean, sample standard deviation, min, max."""
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd, min(xs), max(xs)


def fmt_stats(xs, signed=False):
    m, sd, lo, hi = stats(xs)
    f = "%+.2f" if signed else "%.2f"
    return (f + " +- %.2f  (" + f + " .. " + f + ")") % (m, sd, lo, hi)


def compare(a):
    rows = []
    for seed, btp, tp in a.run:
        bt, btmin = bt_top1(btp)
        pt, ptmin = torch_top1(tp)
        rows.append((seed, bt, pt, bt - pt, btmin, ptmin))
    print("Fashion-MNIST, cifar_resnet20_v1: test top-1 (%), bt vs PyTorch on the same recipe")
    print("%-6s %9s %9s %9s %10s %10s" % ("seed", "bt", "pytorch", "bt-pt", "bt min", "pt min"))
    for seed, bt, pt, d, btmin, ptmin in rows:
        print("%-6s %9.2f %9.2f %+9.2f %10s %10s" % (
            seed, bt, pt, d, "-" if btmin is None else "%.1f" % btmin, "%.1f" % ptmin))
    bts, pts, ds = [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    print("bt       mean %s" % fmt_stats(bts))
    print("pytorch  mean %s" % fmt_stats(pts))
    print("bt-pt    mean %s" % fmt_stats(ds, True))
    print("(mean +- sample standard deviation over %d seed(s), then min .. max)" % len(rows))
    ok_top1 = stats(bts)[0] >= a.min_top1
    ok_diff = abs(stats(ds)[0]) <= a.max_diff
    print("target bt top-1 >= %.2f: %s (%.2f)" % (a.min_top1, "met" if ok_top1 else "NOT MET",
                                                 stats(bts)[0]))
    print("target |bt - pytorch| <= %.2f points: %s (%.2f)" % (
        a.max_diff, "met" if ok_diff else "NOT MET", abs(stats(ds)[0])))
    return 0 if (ok_top1 and ok_diff) or not a.strict else 3


def rows(a):
    print("Fashion-MNIST, cifar_resnet20_v1: test top-1 (%) per row (bt-train + bt-eval)")
    print("%-12s %-40s %s" % ("row", "mean +- sd  (min .. max)", "seeds"))
    prev = None
    for row in a.row:
        name, paths = row[0], row[1:]
        if not paths:
            die("--row %s: no files" % name)
        xs = [bt_top1(p)[0] for p in paths]
        m = stats(xs)[0]
        gain = "" if prev is None else "  (%+.2f vs the row above)" % (m - prev)
        prev = m
        print("%-12s %-40s %s%s" % (name, fmt_stats(xs), " ".join("%.2f" % x for x in xs), gain))
    return 0


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Tables of the Fashion-MNIST recipes.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="bt vs PyTorch per seed")
    c.add_argument("--run", nargs=3, action="append", required=True,
                   metavar=("SEED", "BT_EVAL_JSON", "TORCH_JSONL"))
    c.add_argument("--min-top1", type=float, default=95.0)
    c.add_argument("--max-diff", type=float, default=0.3)
    c.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    r = sub.add_parser("rows", help="mean and spread per ablation row")
    r.add_argument("--row", nargs="+", action="append", required=True,
                   metavar="NAME BT_EVAL_JSON")
    a = ap.parse_args(argv)
    return compare(a) if a.cmd == "compare" else rows(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
