#!/bin/bash
# run.sh: the one script that runs on the GPU machine (tests/gpu/prepare.sh packs what it
# needs here first). It unpacks the tools and their libraries, points the loader at the
# cuDNN and cuBLAS of python3's nvidia pip packages, prints what it found, lists the
# devices with bt-info, measures the PyTorch anchor first (tests/bench/gpu_torch_resnet50.py,
# eager bf16 and fp16, the ceilings and a torch.profiler table; skipped with
# BT_GPU_SKIP_TORCH=1), runs the CUDA backend's parity test (tests/gpu/test_cuda, log in
# $OUT/test_cuda.log; float32 and mixed precision), the other GPU tests (tests/gpu/*.bats
# with bats if the machine has it: devices, and bt-train's mixed precision; the devices
# listing and the benchmark in every dtype in plain shell otherwise), bt's benchmark (every
# dtype, and the BT_CUDA_BN=own and BT_CUDA_CONV=find variants), a profiled step, the
# out-of-memory message, a short run on real JPEGs, and torch.compile last with what time is
# left, writing every log under $OUT. Finishes in under 8 minutes (issue 6), by its budget.
#   device call: command "bash tests/gpu/run.sh", carry ["tests/gpu/carry.tar.xz"]
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/bt-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1
status=0
step() { echo; echo "== $* ($(date -u +%H:%M:%S), $(left) s left)"; }
# One device call may run 600 s, the machine's start is charged too, and issue 6 asks for
# under 8 minutes, so the script keeps to a budget (BT_GPU_BUDGET seconds, default 470):
# each long step's time limit is the smaller of its own and what is left, so the last
# steps are cut, not the call.
t_start=$(date +%s)
left() { echo $(( ${BT_GPU_BUDGET:-470} - ($(date +%s) - t_start) )); }
limit() { local l; l=$(left); l=$((l - ${2:-0})); [ "$l" -lt "$1" ] && echo $((l > 5 ? l : 5)) || echo "$1"; }

step "machine"
uname -a
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
command -v nvcc >/dev/null && nvcc --version | tail -n 2
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1

step "unpack the tools built on the CI machine"
if [ -f tests/gpu/carry.tar.xz ]; then
	tar -xJf tests/gpu/carry.tar.xz || status=1
else
	echo "tests/gpu/carry.tar.xz missing: run tests/gpu/prepare.sh here and carry it"; status=1
fi

step "cuDNN and cuBLAS from python3's nvidia pip packages"
# nvidia is a namespace package (nvidia-cudnn-cu13, nvidia-cublas, ...): each part has a
# lib/ of shared libraries; a glob over site-packages finds them should the import fail.
nvlib=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib")))))' 2>/dev/null)
[ -n "$nvlib" ] || nvlib=$(python3 -c 'import glob, site; print(":".join(sorted(glob.glob(site.getsitepackages()[0] + "/nvidia/*/lib"))))' 2>/dev/null)
echo "nvidia lib directories: ${nvlib:-none found}"
export LD_LIBRARY_PATH="$PWD/tests/gpu/lib${nvlib:+:$nvlib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PWD/bin:$PATH"
ldd tests/gpu/test_cuda 2>&1 | grep -E 'cudnn|cublas|not found' || status=1
if ldd tests/gpu/test_cuda bin/bt-* 2>&1 | grep -q 'not found'; then echo "FAIL: unresolved libraries"; status=1; fi
for t in bin/bt-*; do "$t" --version || status=1; done

step "bt-info --devices"
bt-info --devices | tee "$OUT/devices.txt" || status=1
bt-info --devices --json > "$OUT/devices.json" || status=1
grep -q '^cuda:0 ' "$OUT/devices.txt" || { echo "FAIL: no device listed"; status=1; }

if [ "${BT_GPU_SKIP_TORCH:-0}" = 1 ]; then
	step "PyTorch anchor skipped (BT_GPU_SKIP_TORCH=1)"
else
	step "PyTorch anchor: resnet50 training, batch 256, eager bf16 and fp16, the ceilings"
	# First of the measurements: it does not depend on bt working here (issue 6), and it
	# takes about 1.5 minutes; torch.compile comes last, with what time is left.
	timeout "$(limit 180 240)" python3 tests/bench/gpu_torch_resnet50.py \
		--json "$OUT/torch_resnet50.json" --profile "$OUT/torch_profile_bf16.txt" || status=1
fi

step "CUDA backend against the CPU backend (tests/gpu/test_cuda)"
# A test that crashes the process would hide every test after it: test_cuda names each test
# before running it, so the crashed one and those already done are skipped (BT_TEST_SKIP)
# and the rest run again, up to three times, all into the same log.
: > "$OUT/test_cuda.log"
skip="" crashes=0 tlimit=$(limit 180 150) tstart=$(date +%s)
for attempt in 1 2 3; do
	tleft=$((tlimit - ($(date +%s) - tstart))); [ "$tleft" -gt 5 ] || break
	BT_TEST_SKIP="$skip" timeout "$tleft" tests/gpu/test_cuda > "$OUT/test_cuda.$attempt.log" 2>&1
	rc=$?
	cat "$OUT/test_cuda.$attempt.log" | tee -a "$OUT/test_cuda.log"
	[ "$rc" -ge 128 ] && [ "$rc" -ne 124 ] || break
	crashes=$((crashes + 1))
	crashed=$(sed -n 's/^== //p' "$OUT/test_cuda.$attempt.log" | tail -n 1)
	echo "FAIL: test_cuda died (exit $rc) in ${crashed:-?}: the tests after it run again"
	skip="$skip $(sed -n 's/^\(ok  \|FAIL\) \([a-z0-9_]*\)$/\2/p' "$OUT/test_cuda.$attempt.log" | tr '\n' ' ') $crashed"
done
[ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] && grep -q ' passed, 0 failed$' "$OUT/test_cuda.log" ||
	{ echo "FAIL: test_cuda (exit $rc, $crashes crash(es))"; status=1; }

step "GPU tests"
if command -v bats >/dev/null; then
	# cuda.bats runs test_cuda, which the step above has just run
	bats $(ls tests/gpu/*.bats | grep -v '/cuda\.bats$') || status=1
else
	echo "bats not installed here: the same checks in shell"
	if grep -Eq '^cuda:0  .+  [0-9.]+ GiB  [0-9]+ SMs  compute [0-9]+\.[0-9]+$' "$OUT/devices.txt"; then
		echo "ok devices listing"
	else
		echo "not ok devices listing"; status=1
	fi
	for dt in float32 float16 bfloat16; do
		if bt-train --benchmark --model resnet18_v1 --batch-size 32 --input-size 64 --steps 5 --warmup 2 \
			--device cuda --dtype $dt > "$OUT/bench-$dt.txt" 2>&1 &&
			grep -q "^dtype       $dt\$" "$OUT/bench-$dt.txt" &&
			grep -Eq '^peak device memory [0-9]+ MB$' "$OUT/bench-$dt.txt"; then
			echo "ok benchmark --dtype $dt"
		else
			echo "not ok benchmark --dtype $dt (log: $OUT/bench-$dt.txt)"; cat "$OUT/bench-$dt.txt"; status=1
		fi
	done
fi

step "bt throughput: resnet50_v1b training, batch 256, 224x224 (issue 7's benchmark)"
# Each dtype in its own process with a time limit, so one slow or failing path cannot eat
# the call. The figure is the last line of each log (images/s).
for dt in bfloat16 float16 float32; do
	timeout "$(limit 120 180)" bt-train --benchmark --device cuda --model resnet50_v1b --batch-size 256 \
		--input-size 224 --steps "${BT_GPU_STEPS:-20}" --warmup 5 --dtype $dt --no-inference \
		> "$OUT/bt_resnet50_$dt.txt" 2>&1 || { echo "FAIL: bt-train --benchmark --dtype $dt"; status=1; }
	echo "bt $dt: $(tail -n 1 "$OUT/bt_resnet50_$dt.txt") images/s" \
		"($(grep '^peak device memory' "$OUT/bt_resnet50_$dt.txt"))"
done

# float16's batch norms are cuDNN's by default; BT_CUDA_BN=own sends them to bt's kernels,
# which fold the ReLU in (bfloat16 always takes them). Which is faster decides the default.
timeout "$(limit 60 120)" env BT_CUDA_BN=own bt-train --benchmark --device cuda --model resnet50_v1b \
	--batch-size 256 --input-size 224 --steps "${BT_GPU_STEPS:-20}" --warmup 5 --dtype float16 \
	--no-inference > "$OUT/bt_resnet50_float16_ownbn.txt" 2>&1 ||
	echo "FAIL: BT_CUDA_BN=own bt-train --benchmark --dtype float16 (not counted)"
echo "bt float16, BT_CUDA_BN=own: $(tail -n 1 "$OUT/bt_resnet50_float16_ownbn.txt") images/s"
# Convolution algorithms timed on the device (cudnnFind*, as PyTorch's cudnn.benchmark)
# instead of cuDNN's heuristics with deterministic ones first.
timeout "$(limit 90 120)" env BT_CUDA_CONV=find bt-train --benchmark --device cuda --model resnet50_v1b \
	--batch-size 256 --input-size 224 --steps "${BT_GPU_STEPS:-20}" --warmup 5 --dtype bfloat16 \
	--no-inference > "$OUT/bt_resnet50_bfloat16_find.txt" 2>&1 ||
	echo "FAIL: BT_CUDA_CONV=find bt-train --benchmark --dtype bfloat16 (not counted)"
echo "bt bfloat16, BT_CUDA_CONV=find: $(tail -n 1 "$OUT/bt_resnet50_bfloat16_find.txt") images/s"

step "bt profile: resnet50_v1b bfloat16 training, batch 256, ms per step by layer type"
# Each node is bracketed by a device synchronisation, so the total is above the benchmark's
# step time; the split is what to read, beside the anchor's torch_profile_bf16.txt.
timeout "$(limit 60 60)" bt-train --benchmark --device cuda --model resnet50_v1b --batch-size 256 \
	--input-size 224 --steps 3 --warmup 2 --dtype bfloat16 --no-inference --profile \
	> "$OUT/bt_profile_bf16.txt" 2>&1 || echo "FAIL: bt-train --benchmark --profile (not counted)"
head -n 30 "$OUT/bt_profile_bf16.txt"

step "out of device memory: resnet50_v1b float32 at batch 8192 must fail with one clear line"
timeout "$(limit 60 60)" bt-train --benchmark --device cuda --model resnet50_v1b --batch-size 8192 \
	--steps 1 --warmup 0 --no-inference > "$OUT/oom.txt" 2>&1
rc=$?
cat "$OUT/oom.txt"
if [ $rc -eq 1 ] && [ "$(wc -l < "$OUT/oom.txt")" -eq 1 ] &&
	grep -Eq '^bt-train: out of cuda memory: a batch of 8192 needs about [0-9.]+ GiB, [0-9.]+ GiB is free; a batch of [0-9]+ should fit$' "$OUT/oom.txt"; then
	echo "ok out-of-memory message"
else
	echo "FAIL: out-of-memory message (exit $rc)"; status=1
fi

step "bt-train on real JPEG records: resnet50_v1b, bfloat16, batch 256, 16 loader threads"
# A short run end to end (records, loader, the uint8 path to the device, checkpoints, the
# validation pass) and issue 7's data-path target: the epochs' images/s on real JPEGs at
# least 90 % of the synthetic bfloat16 rate above. 256 photographs (tests/gpu/jpeg, from
# prepare.sh) packed ten times over: 2,560 records, 10 steps an epoch. Then bt-eval scores
# the checkpoint on the 256 images on the GPU and on the CPU, which must agree.
if [ -d tests/gpu/jpeg ]; then
	rr=$(mktemp -d)
	set -- ; for i in 1 2 3 4 5 6 7 8 9 10; do set -- "$@" tests/gpu/jpeg; done
	ncpu=$(nproc)
	if ! bt-prep -q -o "$rr/train.btr" "$@" || ! bt-prep -q -o "$rr/val.btr" tests/gpu/jpeg; then
		echo "FAIL: bt-prep on tests/gpu/jpeg"; status=1
	else
		timeout "$(limit 150 150)" bt-train --model resnet50_v1b --train "$rr/train.btr" \
			--val "$rr/val.btr" -o "$rr/run" --device cuda --dtype bfloat16 --batch-size 256 \
			--num-epochs 4 --lr 0.1 --warmup-epochs 1 --lr-mode cosine --label-smoothing \
			--no-wd --last-gamma -j "$ncpu" --data-workers "$ncpu" --log-interval 5 \
			--save-frequency 0 > "$OUT/real_train.log" 2>&1 || { echo "FAIL: bt-train on real records"; status=1; }
		tail -n 4 "$OUT/real_train.log"
		cp "$rr/run/metrics.jsonl" "$OUT/real_metrics.jsonl" 2>/dev/null
	fi
	# what follows reads the run's metrics and checkpoint: without them, one line, not tracebacks
	if [ ! -f "$rr/run/last.btc" ] || [ ! -f "$OUT/real_metrics.jsonl" ]; then
		echo "skipped: the metrics, bt-eval on cuda and cpu (bt-train left no checkpoint)"
	else
		python3 - "$OUT" <<'PY' || status=1
import json, os, sys
out = sys.argv[1]
ep = [json.loads(l) for l in open(os.path.join(out, "real_metrics.jsonl")) if '"type":"epoch"' in l]
try:  # the synthetic benchmark above may have failed
    syn = float(open(os.path.join(out, "bt_resnet50_bfloat16.txt")).read().split()[-1])
except (OSError, ValueError, IndexError):
    syn = 0.0
real = [e["images_per_s"] for e in ep[1:]]  # the first epoch carries cuDNN's set-up
for e in ep:
    print("epoch %d  loss %.4f  val top-1 %.4f  %.1f images/s" % (e["epoch"], e["loss"], e.get("val_top1", -1), e["images_per_s"]))
r = max(real) / syn if real and syn else 0
print("real JPEG records %.1f images/s (best epoch after the first), synthetic %.1f: %.2f (target >= 0.90: %s)"
      % (max(real) if real else 0, syn, r, "met" if r >= 0.9 else "NOT met"))
PY
		for dev in cuda cpu; do
			timeout "$(limit 90 120)" bt-eval --json --device $dev -j "$ncpu" "$rr/run/last.btc" "$rr/val.btr" \
				> "$OUT/real_eval_$dev.json" 2> "$OUT/real_eval_$dev.log" || { echo "FAIL: bt-eval --device $dev"; status=1; }
			echo "bt-eval --device $dev: $(cat "$OUT/real_eval_$dev.json")"
		done
		python3 - "$OUT" <<'PY' || { echo "FAIL: bt-eval on cuda and cpu disagree"; status=1; }
import json, os, sys
g = json.load(open(os.path.join(sys.argv[1], "real_eval_cuda.json")))
c = json.load(open(os.path.join(sys.argv[1], "real_eval_cpu.json")))
d = abs(g["loss"] - c["loss"]) / max(abs(c["loss"]), 1e-6)
print("loss cuda %.6f cpu %.6f (relative difference %.2e); top-1 %.4f / %.4f" % (g["loss"], c["loss"], d, g["top1"], c["top1"]))
sys.exit(0 if d < 1e-3 and abs(g["top1"] - c["top1"]) <= 2.0 / 256 else 1)
PY
	fi
	rm -rf "$rr"
else
	echo "skipped: tests/gpu/jpeg missing (prepare.sh builds it when lomiri-wallpapers-20.04 is installed)"
fi

if [ "${BT_GPU_SKIP_TORCH:-0}" != 1 ]; then
	step "PyTorch anchor: torch.compile, with what time is left"
	ct=$(( ($(left) - 30) / 2 )); [ "$ct" -gt 150 ] && ct=150
	if [ "$ct" -ge 30 ]; then
		timeout "$(limit 330 10)" python3 tests/bench/gpu_torch_resnet50.py --compile-only \
			--compile-timeout "$ct" --json "$OUT/torch_resnet50.json" || true
	else
		echo "skipped: $(left) s left"
	fi
fi

step "bt against PyTorch (images/s; target >= 1.0, aim 1.3)"
python3 - "$OUT" <<'PY' || true
import json, os, sys
out = sys.argv[1]
try:
    t = json.load(open(os.path.join(out, "torch_resnet50.json")))["results"]
except (OSError, ValueError, KeyError):
    t = {}
for bt, tn, var, label in (("bfloat16", "bf16", "", ""), ("bfloat16", "bf16", "_find", "conv find"),
                           ("float16", "fp16", "", ""), ("float16", "fp16", "_ownbn", "own bn")):
    try:
        b = float(open(os.path.join(out, "bt_resnet50_%s%s.txt" % (bt, var))).read().split()[-1])
    except (OSError, ValueError, IndexError):
        b = None
    for mode in ("eager", "compile"):
        r = t.get("%s_%s" % (mode, tn), {}).get("images_per_s")
        ratio = "%.2f" % (b / r) if b and r else "-"
        print("%-8s %-9s bt %s  torch %s %s  ratio %s" % (bt, label, b, mode, r, ratio))
PY

step "done: status $status"
exit $status
