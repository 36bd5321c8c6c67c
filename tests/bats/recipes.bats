#!/usr/bin/env bats
# share/recipes: fashion-mnist.mk and ablation.mk end to end on the bundled Fashion-MNIST
# subset (share/data/fashion-mnist), one epoch a run, bt's side only (the PyTorch twin needs
# python3-torch, which only the benchmarks install): the runs and their bt-eval JSON, a
# finished run kept, the ablation's four rows, and its mixup row taken from the benchmark's
# run when recipe and data are the same, trained anew when they are not.

load helper

# make -f share/recipes/FILE from the project root, one epoch, seed 0, the bundled data
recipe() {
	make --no-print-directory -C "$TOP" -f "share/recipes/$1" DATA=share/data/fashion-mnist \
		EPOCHS=1 SEEDS=0 THREADS=2 "${@:2}"
}

@test "fashion-mnist.mk bt: one epoch on the bundled subset, scored by bt-eval --json; kept" {
	run recipe fashion-mnist.mk OUT="$T/fm" bt
	[ "$status" -eq 0 ]
	[ -f "$T/fm/bt-seed0/last.btc" ]
	grep -q '"top1":' "$T/fm/bt-seed0.json"
	# the default crop: padded by 4, the test images as they are (share/recipes/README)
	grep -q -- ' --crop-ratio=1 .* --pad=4 ' "$T/fm/bench.recipe"
	bt-info "$T/fm/bt-seed0/last.btc" | grep -q "^recipe     pad=4$"
	# the same options again: nothing to train
	run recipe fashion-mnist.mk OUT="$T/fm" bt
	[ "$status" -eq 0 ]
	[[ "$output" != *bt-train* ]]
}

@test "ablation.mk: four rows; the mixup row is the benchmark's run only when recipe and data match" {
	run recipe fashion-mnist.mk OUT="$T/fm" bt
	[ "$status" -eq 0 ]
	run recipe ablation.mk OUT="$T/ab" BENCH_OUT="$T/fm"
	[ "$status" -eq 0 ]
	[[ "$output" == *"mixup seed 0: the benchmark's run $T/fm/bt-seed0 (same recipe and data)"* ]]
	[ ! -e "$T/ab/mixup-seed0" ]
	cmp "$T/fm/bt-seed0.json" "$T/ab/mixup-seed0.json"
	for row in baseline cosine smoothing mixup; do
		grep -q "^$row " "$T/ab/ablation.txt"
		[ -f "$T/ab/$row-seed0.json" ]
	done
	# another mixup alpha is another recipe: the row trains its own run
	run recipe ablation.mk OUT="$T/ab2" BENCH_OUT="$T/fm" MIXUP_ALPHA=0.4 "$T/ab2/mixup-seed0.json"
	[ "$status" -eq 0 ]
	[[ "$output" != *"the benchmark's run"* ]]
	[ -f "$T/ab2/mixup-seed0/last.btc" ]
}
