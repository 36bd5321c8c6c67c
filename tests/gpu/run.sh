#!/bin/bash
# run.sh: the one script that runs on the GPU machine (tests/gpu/prepare.sh packs what it
# needs here first). It unpacks the tools and their libraries, prints what it found, lists
# the devices with bt-info, runs the GPU tests (tests/gpu/*.bats with bats if the machine
# has it, the same checks in plain shell otherwise), and the PyTorch anchor
# (tests/bench/gpu_torch_resnet50.py, bf16 and fp16, torch.compile if it fits), writing
# every log under $OUT. Meant to finish in under 8 minutes.
#   device call: command "bash tests/gpu/run.sh", carry ["tests/gpu/carry.tar.xz"]
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/bt-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1
status=0
step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }

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
export LD_LIBRARY_PATH="$PWD/tests/gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PWD/bin:$PATH"
for t in bin/bt-*; do "$t" --version || status=1; done

step "bt-info --devices"
bt-info --devices | tee "$OUT/devices.txt" || status=1
bt-info --devices --json > "$OUT/devices.json" || status=1
grep -q '^cuda:0 ' "$OUT/devices.txt" || { echo "FAIL: no device listed"; status=1; }

step "GPU tests"
if command -v bats >/dev/null; then
	bats tests/gpu || status=1
else
	echo "bats not installed here: the same checks in shell"
	if grep -Eq '^cuda:0  .+  [0-9.]+ GiB  [0-9]+ SMs  compute [0-9]+\.[0-9]+$' "$OUT/devices.txt"; then
		echo "ok devices listing"
	else
		echo "not ok devices listing"; status=1
	fi
fi

step "PyTorch anchor: resnet50 training, batch 256"
timeout 420 python3 tests/bench/gpu_torch_resnet50.py --compile --compile-timeout 150 \
	--json "$OUT/torch_resnet50.json" || status=1

step "done: status $status"
exit $status
