#!/usr/bin/env bats
# bt-train: training runs on small data end to end (the loss falls, each trick does what it
# says, stopping and resuming is bit-exact, checkpoints survive kills), the benchmark mode,
# and usage errors.

load helper

@test "--benchmark: key value lines, the last one the training images per second" {
	run bt-train --benchmark --model cifar_resnet20_v1 --in-channels 1 --input-size 28 \
		--batch-size 8 --steps 2 --warmup 1 -j 2
	[ "$status" -eq 0 ]
	[[ "$output" == *"oneDNN v"* ]]
	[[ "$output" == *"model       cifar_resnet20_v1"* ]]
	[[ "$output" == *"dtype       float32"* ]]
	[[ "$output" == *"inference   "*" images/s"* ]]
	# 9 blocks: each one's first ReLU done by its batch norm, its last batch norm and ReLU by
	# its addition; the stem's ReLU by its batch norm
	[[ "$output" == *"fused       28 of 74 layers left out in training, "*" in inference"* ]]
	# the CPU backend has no device memory to report, nor a loss scale in float32
	[[ "$output" != *"peak device memory"* && "$output" != *"loss scale"* ]]
	[[ "${lines[-1]}" =~ ^[0-9]+\.[0-9]$ ]]
	run bt-train --benchmark --model mobilenet0.25 --input-size 64 --batch-size 2 --steps 1 \
		--warmup 0 --no-inference --classes 7
	[ "$status" -eq 0 ]
	[[ "$output" != *"inference"* ]]
}

@test "out of memory: one line naming what the batch needs, what is free and a batch that fits" {
	# an address-space limit makes the CPU backend's allocations fail as a full device would
	run bash -c "ulimit -v 800000; bt-train --benchmark --model cifar_resnet20_v1 --input-size 8 \
		--batch-size 60000 -j 1 --steps 1 --warmup 0 --no-inference"
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" =~ ^bt-train:\ out\ of\ cpu\ memory:\ a\ batch\ of\ 60000\ needs\ about\ [0-9.]+\ GiB,\ [0-9.]+\ (MiB|GiB)\ is\ free\;\ a\ batch\ of\ ([0-9]+)\ should\ fit$ ]]
	fit=${BASH_REMATCH[2]}
	[ "$fit" -gt 100 ] && [ "$fit" -lt 60000 ]
	run bash -c "ulimit -v 800000; bt-train --benchmark --model cifar_resnet20_v1 --input-size 8 \
		--batch-size $fit -j 1 --steps 1 --warmup 0 --no-inference"
	[ "$status" -eq 0 ]
	[[ "${lines[-1]}" =~ ^[0-9]+\.[0-9]$ ]]
}

@test "errors: unknown model, no --benchmark or no --model (2); an input too small (1)" {
	run bt-train --benchmark --model resnet51
	[ "$status" -eq 2 ]
	[[ "$output" == "bt-train: unknown model 'resnet51'"* ]]
	run bt-train --model cifar_resnet20_v1
	[ "$status" -eq 2 ]
	run bt-train --benchmark
	[ "$status" -eq 2 ]
	run bt-train --benchmark --model cifar_resnet20_v1 --batch-size 0
	[ "$status" -eq 2 ]
	run bt-train --benchmark --model inceptionv3 --input-size 40 --steps 1
	[ "$status" -eq 1 ]
}

@test "--profile: milliseconds per step by kind of layer, training and inference" {
	run bt-train --benchmark --model cifar_resnet20_v1 --batch-size 4 --steps 1 --warmup 0 --profile
	[ "$status" -eq 0 ]
	[[ "$output" == *"(training, ms per step)"* ]]
	[[ "$output" == *"(inference, ms per step)"* ]]
	[[ "$output" =~ conv2d\ +[0-9]+\.[0-9]+\ +[0-9]+\.[0-9]+ ]]
}

FM="$TOP/share/data/fashion-mnist"
BTCDUMP="/usr/bin/python3 $TOP/tests/bats/btcdump.py"

# The bundled Fashion-MNIST test split (1000 28x28 greyscale images) as records.
fashion() {
	bt-prep -q --classes "$FM/classes.txt" -o fm.btr "$FM/t10k-images-idx3-ubyte.gz"
}

# The recipe of these tests: every trick on, small and fast.
RECIPE="--model cifar_resnet20_v1 --train fm.btr --val fm.btr --batch-size 50 --input-size 28
	--lr 0.1 --lr-mode cosine --warmup-epochs 1 --label-smoothing --mixup --mixup-off-epoch 1
	--no-wd --last-gamma --min-area 0.5 --jitter 0 --lighting 0 --mean 72.94 --std 90.02
	--log-interval 5 -j 2 --data-workers 2"

# Field f of the metrics lines of type t, one per line.
metric() {
	/usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o["type"] == sys.argv[2]:
        print(o[sys.argv[3]])' "$@"
}

# The tensor bytes of a checkpoint (section TDAT), for bit-exact comparisons.
tdat() {
	/usr/bin/python3 -c '
import struct, sys, hashlib
d = open(sys.argv[1], "rb").read(); pos = 32
for i in range(struct.unpack_from("<I", d, 24)[0]):
    pos = (pos + 63) // 64 * 64
    tag = d[pos:pos + 4]; n = struct.unpack_from("<Q", d, pos + 8)[0]
    if tag == b"TDAT": print(hashlib.sha256(d[pos + 16:pos + 16 + n]).hexdigest())
    pos += 16 + n' "$1"
}

@test "training: the loss falls and validation accuracy rises; the run directory is complete" {
	fashion
	run bt-train $RECIPE --num-epochs 3 -o run
	[ "$status" -eq 0 ]
	[[ "$output" == *"bt-train: done: 3 epochs"* ]]
	[ -f run/last.btc ] && [ -f run/best.btc ] && [ -f run/epoch-0003.btc ] && [ -f run/metrics.jsonl ]
	mapfile -t loss < <(metric run/metrics.jsonl epoch loss)
	mapfile -t top1 < <(metric run/metrics.jsonl epoch val_top1)
	[ "${#loss[@]}" -eq 3 ]
	awk -v a="${loss[0]}" -v b="${loss[2]}" 'BEGIN { exit !(b < a) }'
	awk -v a="${top1[0]}" -v b="${top1[2]}" 'BEGIN { exit !(b > a && b > 0.5) }'
	# every line is JSON with the fields the manual lists
	run metric run/metrics.jsonl log images_per_s
	[ "$status" -eq 0 ] && [ "${#lines[@]}" -eq 12 ]
	# float32: no loss scaling, nothing skipped, in log and epoch lines and the checkpoint
	[ "$(metric run/metrics.jsonl log loss_scale | sort -u)" = 1 ]
	[ "$(metric run/metrics.jsonl epoch skipped_steps | sort -u)" = 0 ]
	# the checkpoint is self-describing and complete
	run $BTCDUMP run/last.btc
	[ "$status" -eq 0 ]
	[[ "$output" == *"  model=cifar_resnet20_v1"* ]]
	[[ "$output" == *"  in_channels=1"* ]]
	[[ "$output" == *"  complete=1"* ]]
	[[ "$output" == *"  iteration=60"* ]]
	[[ "$output" == *"  loss_scale=1"* ]]
	[[ "$output" == *"  skipped_steps=0"* ]]
	[[ "$output" == *"tensor momentum/fc.weight float32 10x64"* ]]
	[[ "$output" == *"  Ankle boot"* ]]
	# a complete run has nothing left to do
	run bt-train --resume run
	[ "$status" -eq 0 ]
	[[ "$output" == *"the run is complete"* ]]
}

@test "schedule: warmup then cosine, per iteration, as logged" {
	fashion
	run bt-train $RECIPE --num-epochs 2 --lr 0.2 --warmup-lr 0.02 -o run -q
	[ "$status" -eq 0 ]
	# 20 steps per epoch; the lr logged at iteration i is the one of step i - 1:
	# warmup 0.02 + 0.18 (i - 1) / 20; then 0.1 (1 + cos(pi (i - 1 - 20) / 20))
	run /usr/bin/python3 -c '
import json, math, sys
for line in open("run/metrics.jsonl"):
    o = json.loads(line)
    if o["type"] != "log": continue
    i = o["iteration"] - 1
    want = 0.02 + 0.18 * i / 20 if i < 20 else 0.1 * (1 + math.cos(math.pi * (i - 20) / 20))
    if abs(o["lr"] - want) > 1e-5 * max(1, want): sys.exit("iteration %d: lr %g, want %g" % (i, o["lr"], want))
print("ok")'
	[ "$status" -eq 0 ] && [ "$output" = ok ]
}

@test "--base-lr scales linearly with the batch; step decay at the given epochs" {
	fashion
	run bt-train ${RECIPE/--lr 0.1/} --num-epochs 3 --warmup-epochs 0 --lr-mode step --lr-decay-epoch 1,2 \
		--lr-decay 0.5 --base-lr 0.256 --base-batch 256 -o run -q
	[ "$status" -eq 0 ]
	# lr = 0.256 * 50 / 256 = 0.05, halved after epochs 1 and 2
	mapfile -t lr < <(metric run/metrics.jsonl epoch lr)
	[ "${lr[0]}" = 0.05 ] && [ "${lr[1]}" = 0.025 ] && [ "${lr[2]}" = 0.0125 ]
	run bt-train $RECIPE --base-lr 0.1 --lr 0.1 -o run2
	[ "$status" -eq 2 ]
}

@test "--last-gamma starts the last batch norm of every residual block at 0, the others at 1" {
	fashion
	# With a learning rate of 0 the weights stay at their initial values.
	run bt-train $RECIPE --num-epochs 1 --lr 0 --warmup-epochs 0 -o zg -q
	[ "$status" -eq 0 ]
	for b in layer1.0 layer2.1 layer3.2; do
		run $BTCDUMP zg/last.btc --tensor $b.bn2.weight
		[ "$status" -eq 0 ] && [ "${#lines[@]}" -gt 0 ]
		for v in "${lines[@]}"; do [ "$v" = 0 ]; done
		run $BTCDUMP zg/last.btc --tensor $b.bn1.weight
		for v in "${lines[@]}"; do [ "$v" = 1 ]; done
	done
	run bt-train ${RECIPE/--last-gamma/} --num-epochs 1 --lr 0 --warmup-epochs 0 -o nz -q
	[ "$status" -eq 0 ]
	run $BTCDUMP nz/last.btc --tensor layer1.0.bn2.weight
	for v in "${lines[@]}"; do [ "$v" = 1 ]; done
}

@test "stopped mid-epoch by SIGTERM and resumed: weights bit-identical to an uninterrupted run" {
	fashion
	run bt-train $RECIPE --num-epochs 2 -o whole -q
	[ "$status" -eq 0 ]
	# BT_TRAIN_SIGNAL_AT raises SIGTERM after that step: mid-epoch 1, mid-epoch 2
	BT_TRAIN_SIGNAL_AT=7 run bt-train $RECIPE --num-epochs 2 -o cut
	[ "$status" -eq 143 ]
	[[ "$output" == *"stopped by signal 15 at epoch 1, batch 7; saved cut/last.btc"* ]]
	run $BTCDUMP cut/last.btc
	[[ "$output" == *"  batch=7"* ]] && [[ "$output" == *"  complete=0"* ]]
	BT_TRAIN_SIGNAL_AT=33 run bt-train --resume cut
	[ "$status" -eq 143 ]
	run bt-train --resume cut -q
	[ "$status" -eq 0 ]
	[ "$(tdat whole/last.btc)" = "$(tdat cut/last.btc)" ]
	# the metrics are those of the uninterrupted run (apart from the clock)
	diff <(metric whole/metrics.jsonl epoch val_top1) <(metric cut/metrics.jsonl epoch val_top1)
	diff <(metric whole/metrics.jsonl log loss) <(metric cut/metrics.jsonl log loss)
	# stopping at an epoch's last step, before validation, also resumes exactly
	BT_TRAIN_SIGNAL_AT=20 run bt-train $RECIPE --num-epochs 2 -o edge
	[ "$status" -eq 143 ]
	run bt-train --resume edge -q
	[ "$status" -eq 0 ]
	[ "$(tdat whole/last.btc)" = "$(tdat edge/last.btc)" ]
}

@test "--dtype bfloat16 on the CPU: the loss falls, the run says so, resuming is bit-exact" {
	# a CPU without AVX-512 BF16 (oneDNN told to use no more than AVX2): one line, status 1
	DNNL_MAX_CPU_ISA=AVX2 run bt-train --benchmark --model cifar_resnet20_v1 --input-size 8 \
		--batch-size 2 --steps 1 --warmup 0 --no-inference --dtype bfloat16 -j 1
	[ "$status" -eq 1 ] && [ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "bt-train: bfloat16 needs a CPU with AVX-512 BF16 or --device cuda"* ]]
	run bt-train --benchmark --model cifar_resnet20_v1 --in-channels 1 --input-size 28 \
		--batch-size 8 --steps 1 --warmup 0 --no-inference --dtype bfloat16 -j 2
	if [ "$status" -ne 0 ]; then
		[[ "$output" == *"bfloat16 needs a CPU with AVX-512 BF16"* ]]
		skip "no bfloat16 on this CPU"
	fi
	[[ "$output" == *"dtype       bfloat16"* ]]
	fashion
	run bt-train $RECIPE --num-epochs 2 --dtype bfloat16 -o whole
	[ "$status" -eq 0 ]
	[[ "$output" == *"mixed precision bfloat16"* ]]
	mapfile -t loss < <(metric whole/metrics.jsonl epoch loss)
	mapfile -t top1 < <(metric whole/metrics.jsonl epoch val_top1)
	awk -v a="${loss[0]}" -v b="${loss[1]}" 'BEGIN { exit !(b < a) }'
	awk -v a="${top1[0]}" -v b="${top1[1]}" 'BEGIN { exit !(b > a && b > 0.3) }'
	# bfloat16 needs no loss scaling; master weights and momentum stay float32
	[ "$(metric whole/metrics.jsonl log loss_scale | sort -u)" = 1 ]
	run $BTCDUMP whole/last.btc
	[[ "$output" == *"  dtype=bfloat16"* ]]
	[[ "$output" == *"tensor momentum/fc.weight float32 10x64"* ]]
	# stopped mid-epoch and resumed (the dtype comes from the checkpoint's recipe)
	BT_TRAIN_SIGNAL_AT=13 run bt-train $RECIPE --num-epochs 2 --dtype bfloat16 -o cut
	[ "$status" -eq 143 ]
	run bt-train --resume cut -q
	[ "$status" -eq 0 ]
	[ "$(tdat whole/last.btc)" = "$(tdat cut/last.btc)" ]
	# and bt-eval scores it (in float32, from the float32 master weights)
	run bt-eval --json whole/last.btc fm.btr
	[ "$status" -eq 0 ]
	[[ "$output" == *'"top1"'* ]]
}

@test "SIGKILL at any moment leaves the previous checkpoint loadable" {
	make_folder images 3 cat dog
	bt-prep -q -o tiny.btr images/
	# A large model on tiny data: most of the time goes into writing checkpoints.
	bt-train --model resnet18_v1 --train tiny.btr --input-size 32 --batch-size 2 --num-epochs 1000 \
		--save-frequency 0 -o run -q -j 2 &
	pid=$!
	for i in $(seq 1500); do [ -f run/last.btc ] && break; sleep 0.2; done
	[ -f run/last.btc ]
	for d in 0.7 0.3 0.45 0.2 0.6 0.35; do
		sleep $d
		kill -KILL $pid 2>/dev/null || true
		wait $pid 2>/dev/null || true
		run $BTCDUMP run/last.btc
		[ "$status" -eq 0 ] || { echo "damaged after SIGKILL: $output"; return 1; }
		bt-train --resume run -q -j 2 &
		pid=$!
	done
	kill -KILL $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	run $BTCDUMP run/last.btc
	[ "$status" -eq 0 ]
	[[ "$output" == *"  epoch="* ]]
	# a resumed run removes what killed saves left behind
	BT_TRAIN_SIGNAL_AT=1000000 bt-train --resume run -q -j 2 &
	pid=$!
	for i in $(seq 300); do [ "$(ls run | grep -c '\.tmp\.')" -le 1 ] && break; sleep 0.2; done
	kill -KILL $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	[ "$(ls run | grep -c '\.tmp\.')" -le 1 ]
}

@test "a damaged checkpoint is refused with one clear line" {
	fashion
	run bt-train $RECIPE --num-epochs 1 -o run -q
	[ "$status" -eq 0 ]
	cp run/last.btc good.btc
	head -c 100000 good.btc > run/last.btc
	run bt-train --resume run
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "bt-train: run/last.btc: truncated"* ]]
	cp good.btc run/last.btc
	printf '\x55' | dd of=run/last.btc bs=1 seek=50000 conv=notrunc 2>/dev/null
	run bt-train --resume run
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "bt-train: run/last.btc: "* ]]
	echo "not a checkpoint" > run/last.btc
	run bt-train --resume run
	[ "$status" -eq 1 ]
	[[ "$output" == *"not a bt checkpoint"* ]]
	rm run/last.btc
	run bt-train --resume run
	[ "$status" -eq 1 ]
	[[ "$output" == *"run/last.btc"*"No such file"* ]]
}

@test "--train -: an augmented stream from bt-aug, normalised only" {
	fashion
	bt-aug -q --epochs 2 --shuffle --input-size 28 --min-area 0.5 --jitter 0 --lighting 0 fm.btr |
		bt-train --model cifar_resnet20_v1 --train - --epoch-size 1000 --classes 10 --batch-size 50 \
		--num-epochs 2 --input-size 28 --mean 72.94 --std 90.02 --val fm.btr -o srun -q -j 2
	[ -f srun/last.btc ]
	mapfile -t loss < <(metric srun/metrics.jsonl epoch loss)
	[ "${#loss[@]}" -eq 2 ]
	awk -v a="${loss[0]}" -v b="${loss[1]}" 'BEGIN { exit !(b < a) }'
	# a stream too short for the recipe is an error, with the run saved
	bt-aug -q --input-size 28 fm.btr | {
		run bt-train --model cifar_resnet20_v1 --train - --epoch-size 1000 --classes 10 --batch-size 50 \
			--num-epochs 2 --input-size 28 -o short -q -j 2
		[ "$status" -eq 1 ]
		[[ "$output" == *"the stream ended at epoch 2, batch 0"* ]]
	}
}

@test "training usage errors exit 2; a used run directory and bad data exit 1" {
	fashion
	run bt-train --model cifar_resnet20_v1 --train fm.btr
	[ "$status" -eq 2 ] && [[ "$output" == *"-o RUNDIR"* ]]
	run bt-train --train fm.btr -o r
	[ "$status" -eq 2 ]
	run bt-train --model cifar_resnet20_v1 -o r
	[ "$status" -eq 2 ]
	# float16 is for CUDA devices (bfloat16 runs on the CPU too); an unknown type is a usage
	# error too
	run bt-train $RECIPE -o r --dtype float16
	[ "$status" -eq 2 ] && [[ "$output" == *"--dtype float16 needs --device cuda"* ]]
	run bt-train $RECIPE -o r --dtype float16 --device cpu
	[ "$status" -eq 2 ] && [[ "$output" == *"--dtype float16 needs --device cuda"* ]]
	run bt-train $RECIPE -o r --dtype float64 --device cuda
	[ "$status" -eq 2 ] && [[ "$output" == *"float32, float16 or bfloat16, not 'float64'"* ]]
	run bt-train --benchmark --model cifar_resnet20_v1 --dtype float16
	[ "$status" -eq 2 ] && [[ "$output" == *"--dtype float16 needs --device cuda"* ]]
	[ ! -e r ]
	run bt-train $RECIPE -o r --device gpu
	[ "$status" -eq 2 ] && [[ "$output" == *"cpu, cuda or cuda:N"* ]]
	run bt-train $RECIPE -o r --device cuda:x
	[ "$status" -eq 2 ]
	if ! bt-info --devices | grep -q '^cuda:0 '; then
		# No device here: a runtime failure that names it, not a usage error.
		run bt-train $RECIPE -o rc --device cuda:0
		[ "$status" -eq 1 ] && [[ "$output" == *"cuda:0: "* ]]
		run bt-train $RECIPE -o rc16 --device cuda:0 --dtype float16
		[ "$status" -eq 1 ] && [[ "$output" == *"cuda:0: "* ]]
	fi
	run bt-train $RECIPE -o r --lr-mode exp
	[ "$status" -eq 2 ]
	run bt-train $RECIPE -o r --mixup-off-epoch 9 --num-epochs 2
	[ "$status" -eq 2 ]
	run bt-train --model cifar_resnet20_v1 --train - -o r
	[ "$status" -eq 2 ] && [[ "$output" == *"--epoch-size"* ]]
	run bt-train $RECIPE --num-epochs 1 -o r -q
	[ "$status" -eq 0 ]
	run bt-train $RECIPE --num-epochs 1 -o r -q
	[ "$status" -eq 1 ] && [[ "$output" == *"r already holds a run"* ]]
	run bt-train --resume r --lr 0.5
	[ "$status" -eq 2 ] && [[ "$output" == *"--lr cannot change when resuming"* ]]
	run bt-train $RECIPE --train missing.btr -o r2
	[ "$status" -eq 1 ] && [[ "$output" == *"missing.btr"* ]]
	run bt-train $RECIPE --batch-size 5000 -o r3
	[ "$status" -eq 1 ] && [[ "$output" == *"fewer records than one batch"* ]]
}

@test "--save-frequency and --keep: the newest K epoch checkpoints stay" {
	fashion
	run bt-train $RECIPE --num-epochs 5 --save-frequency 2 --keep 2 --val "" -o run -q
	[ "$status" -eq 0 ]
	# saved after epochs 2, 4 and 5 (the last); kept: 4 and 5
	[ "$(cd run && echo epoch-*.btc)" = "epoch-0004.btc epoch-0005.btc" ]
	[ ! -f run/best.btc ]
	cmp run/last.btc run/epoch-0005.btc
}

@test "--pad P: the padded crop, kept in the recipe, the same on the GPU's data path" {
	fashion
	run bt-train $RECIPE --pad 3 --num-epochs 1 --val "" -o pad -q
	[ "$status" -eq 0 ]
	run bt-info pad/last.btc
	[[ "$output" == *"recipe     pad=3"* ]]
	BT_INPUT_U8=1 run bt-train $RECIPE --pad 3 --num-epochs 1 --val "" -o padu8 -q
	[ "$status" -eq 0 ]
	[ "$(tdat pad/last.btc)" = "$(tdat padu8/last.btc)" ]
	run bt-train $RECIPE --num-epochs 1 --val "" -o nopad -q
	[ "$status" -eq 0 ]
	[ "$(tdat pad/last.btc)" != "$(tdat nopad/last.btc)" ]
	run bt-info nopad/last.btc
	[[ "$output" == *"recipe     pad=-1"* ]]
	# a window larger than the padded image stops the run, naming the record
	run bt-train $RECIPE --pad 1 --input-size 32 --num-epochs 1 --val "" -o big -q
	[ "$status" -eq 1 ]
	[[ "$output" == *"record "*"padded by 1 it is smaller than the 32x32 crop"* ]]
	run bt-train $RECIPE --pad -2 --num-epochs 1 -o bad -q
	[ "$status" -eq 2 ]
}

@test "BT_INPUT_U8=1 (the GPU's data path, run on the CPU): the same weights, metrics and bt-eval logits" {
	fashion
	# jitter, lighting and erasing on: the colour stage is what moves to the device
	local colour="--jitter 0.4 --lighting 0.1 --erase 0.5"
	run bt-train $RECIPE $colour --num-epochs 2 -o f32 -q
	[ "$status" -eq 0 ]
	BT_INPUT_U8=1 run bt-train $RECIPE $colour --num-epochs 2 -o u8 -q
	[ "$status" -eq 0 ]
	[ "$(tdat f32/last.btc)" = "$(tdat u8/last.btc)" ]
	[ "$(metric f32/metrics.jsonl epoch val_top1)" = "$(metric u8/metrics.jsonl epoch val_top1)" ]
	[ "$(metric f32/metrics.jsonl log loss)" = "$(metric u8/metrics.jsonl log loss)" ]
	run bt-eval -q --predictions p32.tsv --logits f32/last.btc fm.btr
	[ "$status" -eq 0 ]
	BT_INPUT_U8=1 run bt-eval -q --predictions p8.tsv --logits f32/last.btc fm.btr
	[ "$status" -eq 0 ]
	cmp p32.tsv p8.tsv
	BT_INPUT_U8=2 run bt-train $RECIPE --num-epochs 1 -o bad -q
	[ "$status" -eq 2 ]
}
