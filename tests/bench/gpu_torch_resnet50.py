#!/usr/bin/env python3
"""gpu_torch_resnet50.py - the PyTorch anchor on the GPU machine, and the device's ceilings.

Times torchvision's resnet50 training (batch 256 by default, channels_last, synthetic
data, CrossEntropyLoss, SGD with Nesterov momentum 0.9 and weight decay 1e-4) under bf16
and fp16 autocast (fp16 with a GradScaler), and, with --compile, the same under
torch.compile in a child process with a time limit (last, so that a call cut short still
has the eager figures; the JSON is rewritten after each figure). Also measures the device's bf16
matrix-multiply rate (8192^3) and its device-to-device copy bandwidth, as ceilings.
bt-train --benchmark --device cuda will be timed beside it in the same run (the CUDA
backend issue).

Usage: python3 tests/bench/gpu_torch_resnet50.py [--batch 256] [--steps 30] [--warmup 10]
           [--compile] [--compile-timeout 240] [--json OUT.json] [--device cuda|cpu]
           [--smoke] [--profile FILE] [--compile-only]
--smoke: a tiny run (batch 2, 64x64, 2 steps) that checks the script itself, on any
device (the CPU here: no autocast speed is claimed there).
Prints a table, and with --json writes every figure with the date, machine and versions.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import torch
import torchvision


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def train_rate(dev, dtype, batch, size, steps, warmup, compiled=False, profile=None):
    """Training images per second of resnet50 under autocast(dtype). With profile (a file
    name), a few more steps run under torch.profiler afterwards, and the device time per op
    (summed over those steps, divided by their count) goes to that file, to set beside
    bt-train --benchmark --profile's table of the same step."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50().to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)
    use_scaler = dtype == torch.float16 and dev.type == "cuda"
    scaler = torch.cuda.amp.GradScaler() if use_scaler else None
    step_model = torch.compile(model) if compiled else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=dtype):
            loss = loss_fn(step_model(x), y)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    for _ in range(warmup):
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(dev)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    if profile:
        try:
            write_profile(profile, dev, step, 3)
        except Exception as e:  # the figures matter more than the profile
            print("profile not written: %s: %s" % (type(e).__name__, e), flush=True)
    return {"images_per_s": batch * steps / dt, "step_ms": 1e3 * dt / steps,
            "loss": float(loss), "peak_bytes": peak}


def write_profile(path, dev, step, steps):
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        sync(dev)
    # torch 2.4 renamed the device columns (self_cuda_* became self_device_*).
    keys = ["self_device_time_total", "self_cuda_time_total"] if dev.type == "cuda" else []
    table = None
    for key in keys + ["self_cpu_time_total"]:
        try:
            table = prof.key_averages().table(sort_by=key, row_limit=40)
            break
        except (AttributeError, KeyError, ValueError):
            continue
    with open(path, "w") as f:
        f.write("torch.profiler over %d training steps (times are totals over the %d steps)\n"
                % (steps, steps))
        f.write((table or "no table") + "\n")


def matmul_tflops(dev, n, reps):
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(dev)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def copy_gbps(dev, nbytes, reps):
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(dev)
    # bytes read plus bytes written
    return 2 * nbytes * reps / (time.perf_counter() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-only", action="store_true",
                    help="only the torch.compile figures, added to --json's file if it exists")
    ap.add_argument("--compile-timeout", type=int, default=240)
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--profile", metavar="FILE",
                    help="after the eager bf16 figure, profile 3 steps into FILE")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # child: one compiled config
    a = ap.parse_args()
    if a.smoke:
        a.batch, a.size, a.steps, a.warmup = 2, 64, 2, 1
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if a.only:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[a.only]
        print(json.dumps(train_rate(dev, dtype, a.batch, a.size, a.steps, a.warmup, True)))
        return

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor(),
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "batch": a.batch, "size": a.size, "steps": a.steps, "warmup": a.warmup,
        "results": {},
    }
    print("resnet50 training, batch %d, %dx%d, channels_last, SGD nesterov, %s (%s), torch %s"
          % (a.batch, a.size, a.size, dev.type, info["device"], torch.__version__), flush=True)
    dtypes = [("bf16", torch.bfloat16), ("fp16", torch.float16)]
    if dev.type == "cpu":
        dtypes = [("bf16", torch.bfloat16)]
    if a.compile_only:
        a.compile = True
        try:
            with open(a.json) as f:
                info = json.load(f)  # the eager figures of an earlier call
        except (TypeError, OSError, ValueError):
            pass
        dtypes = [d for d in dtypes if "compile_" + d[0] not in info["results"]]
    for name, dtype in ([] if a.compile_only else dtypes):
        r = train_rate(dev, dtype, a.batch, a.size, a.steps, a.warmup,
                       profile=a.profile if name == "bf16" else None)
        info["results"]["eager_" + name] = r
        print("eager   %-5s %9.1f images/s  %7.2f ms/step  peak %.1f GiB"
              % (name, r["images_per_s"], r["step_ms"], r["peak_bytes"] / 2 ** 30), flush=True)
    save(a.json, info)
    if dev.type == "cuda" and not a.smoke and not a.compile_only:
        info["ceilings"] = {"bf16_matmul_tflops": matmul_tflops(dev, 8192, 10),
                            "d2d_copy_gbps": copy_gbps(dev, 4 << 30, 10)}
        print("ceiling bf16 matmul 8192^3: %.0f TFLOP/s; device copy: %.0f GB/s (read + write)"
              % (info["ceilings"]["bf16_matmul_tflops"], info["ceilings"]["d2d_copy_gbps"]),
              flush=True)
        save(a.json, info)
    if a.compile and hasattr(torch, "compile"):
        for name, _ in dtypes:
            cmd = [sys.executable, os.path.abspath(__file__), "--only", name,
                   "--batch", str(a.batch), "--size", str(a.size), "--steps", str(a.steps),
                   "--warmup", str(a.warmup), "--device", a.device]
            t0 = time.perf_counter()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=a.compile_timeout)
                r = json.loads(p.stdout.strip().splitlines()[-1])
                r["wall_s"] = time.perf_counter() - t0
                info["results"]["compile_" + name] = r
                print("compile %-5s %9.1f images/s  %7.2f ms/step  (%.0f s with compilation)"
                      % (name, r["images_per_s"], r["step_ms"], r["wall_s"]), flush=True)
            except (subprocess.TimeoutExpired, IndexError, ValueError) as e:
                info["results"]["compile_" + name] = {"error": type(e).__name__}
                print("compile %-5s skipped (%s within %d s)"
                      % (name, type(e).__name__, a.compile_timeout), flush=True)
            save(a.json, info)


def save(path, info):
    """Write what is measured so far, so a run stopped part way still leaves its figures."""
    if not path:
        return
    with open(path + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
