#!/usr/bin/env bats
# Mixed precision through bt-train on a GPU (make check-gpu; each test skips, saying why,
# without a device): the benchmark in every dtype with its peak device memory and
# per-layer profile, float16 and bfloat16 training runs whose loss falls and whose metrics
# and checkpoints carry the loss scale, and a float16 run stopped and resumed, which must
# end with the uninterrupted run's loss scale and skipped steps.

load ../bats/helper

need_gpu() {
	if bt-info --devices | grep -q '^no CUDA device'; then
		skip "$(bt-info --devices)"
	fi
}

FM="$TOP/share/data/fashion-mnist"
BTCDUMP="/usr/bin/python3 $TOP/tests/bats/btcdump.py"
RECIPE="--model cifar_resnet20_v1 --train fm.btr --val fm.btr --batch-size 50 --input-size 28
	--lr 0.1 --lr-mode cosine --warmup-epochs 1 --label-smoothing --no-wd --last-gamma
	--min-area 0.5 --jitter 0 --lighting 0 --mean 72.94 --std 90.02 --log-interval 5
	--data-workers 4 --device cuda"

# Field f of the last metrics line of type t.
last_metric() {
	/usr/bin/python3 -c '
import json, sys
v = None
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o["type"] == sys.argv[2]:
        v = o[sys.argv[3]]
print(v)' "$@"
}

@test "--benchmark --device cuda in float32, float16 and bfloat16: dtype, peak device memory, profile" {
	need_gpu
	for dt in float32 float16 bfloat16; do
		run bt-train --benchmark --model resnet18_v1 --batch-size 32 --input-size 64 --steps 5 \
			--warmup 2 --device cuda --dtype $dt --profile
		echo "$output"
		[ "$status" -eq 0 ]
		[[ "$output" == *"dtype       $dt"* ]]
		[[ "$output" =~ peak\ device\ memory\ [0-9]+\ MB ]]
		[[ "$output" =~ conv2d\ +[0-9]+\.[0-9]+\ +[0-9]+\.[0-9]+ ]]
		if [ "$dt" = float16 ]; then
			[[ "$output" == *"loss scale  "* ]]
		else
			[[ "$output" != *"loss scale"* ]]
		fi
	done
}

@test "float16 and bfloat16 training on cuda: the loss falls, metrics and checkpoint carry the loss scale" {
	need_gpu
	bt-prep -q --classes "$FM/classes.txt" -o fm.btr "$FM/t10k-images-idx3-ubyte.gz"
	for dt in float16 bfloat16; do
		run bt-train $RECIPE --dtype $dt --num-epochs 2 -o run-$dt -q
		echo "$output"
		[ "$status" -eq 0 ]
		run /usr/bin/python3 -c '
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ep = [o for o in rows if o["type"] == "epoch"]
logs = [o for o in rows if o["type"] == "log"]
assert len(ep) == 2 and ep[1]["loss"] < ep[0]["loss"], ep
for o in ep + logs:
    s = o["loss_scale"]
    assert s >= 1 and math.log2(s) == int(math.log2(s)), o
    if sys.argv[2] == "bfloat16":
        assert s == 1 and o["skipped_steps"] == 0, o
print("ok", ep[-1]["loss_scale"], ep[-1]["skipped_steps"], ep[-1]["val_top1"])' run-$dt/metrics.jsonl $dt
		echo "$output"
		[ "$status" -eq 0 ] && [[ "$output" == ok* ]]
		scale=$(last_metric run-$dt/metrics.jsonl epoch loss_scale)
		run $BTCDUMP run-$dt/last.btc
		[[ "$output" == *"  dtype=$dt"* ]]
		[[ "$output" == *"  loss_scale=$scale"* ]]
	done
}

@test "a float16 run stopped and resumed ends with the uninterrupted run's loss scale; not on the CPU" {
	need_gpu
	bt-prep -q --classes "$FM/classes.txt" -o fm.btr "$FM/t10k-images-idx3-ubyte.gz"
	run bt-train $RECIPE --dtype float16 --num-epochs 2 -o whole -q
	[ "$status" -eq 0 ]
	BT_TRAIN_SIGNAL_AT=7 run bt-train $RECIPE --dtype float16 --num-epochs 2 -o cut -q
	[ "$status" -eq 143 ]
	run bt-train --resume cut -q
	[ "$status" -eq 0 ]
	for f in loss_scale skipped_steps; do
		[ "$(last_metric whole/metrics.jsonl epoch $f)" = "$(last_metric cut/metrics.jsonl epoch $f)" ]
	done
	BT_TRAIN_SIGNAL_AT=3 run bt-train $RECIPE --dtype float16 --num-epochs 2 -o cut2 -q
	[ "$status" -eq 143 ]
	run bt-train --resume cut2 --device cpu
	[ "$status" -eq 2 ] && [[ "$output" == *"--dtype float16 needs --device cuda"* ]]
}
