#!/bin/sh
# demo.sh: the main job on the bundled data, run by `make demo` from the source tree: packs
# the Fashion-MNIST subset in share/data/fashion-mnist (6,000 training and 1,000 test images)
# into record files, trains cifar_resnet20_v1 on it with the tricks of the paper on (cosine
# schedule with warmup, label smoothing, mixup, no bias decay, zero-gamma), and scores the
# result with bt-eval. About two minutes on two cores. Output goes to $BT_DEMO_OUT (default:
# demo-out/ in the tree); EPOCHS overrides the number of epochs.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/bin"
data="$top/share/data/fashion-mnist"
out="${BT_DEMO_OUT:-$top/demo-out}"
epochs="${EPOCHS:-12}"
mkdir -p "$out"

echo "== packing the bundled Fashion-MNIST subset into $out"
"$bin/bt-prep" --classes "$data/classes.txt" -o "$out/fashion-train.btr" \
	"$data/train-images-idx3-ubyte.gz"
"$bin/bt-prep" --classes "$data/classes.txt" -o "$out/fashion-test.btr" \
	"$data/t10k-images-idx3-ubyte.gz"
echo "== the training augmentation of the first images: $out/fashion-preview.jpg"
"$bin/bt-aug" -q --preview "$out/fashion-preview.jpg" --grid 4x8 --input-size 28 --min-area 0.5 \
	"$out/fashion-train.btr"
echo "== training cifar_resnet20_v1 for $epochs epochs with the bag of tricks"
rm -rf "$out/run"
"$bin/bt-train" --model cifar_resnet20_v1 --train "$out/fashion-train.btr" \
	--val "$out/fashion-test.btr" -o "$out/run" --num-epochs "$epochs" --batch-size 64 \
	--lr 0.1 --lr-mode cosine --warmup-epochs 1 --label-smoothing 0.1 --mixup --mixup-alpha 0.2 \
	--mixup-off-epoch 2 --no-wd --last-gamma --wd 1e-4 --input-size 28 --crop-ratio 1 \
	--min-area 0.6 --jitter 0 --lighting 0 --mean 72.94 --std 90.02 --log-interval 50
echo "== scoring the final checkpoint on the 1,000 test images"
"$bin/bt-eval" "$out/run/last.btc" "$out/fashion-test.btr"
echo "== the run: $out/run (last.btc, best.btc, metrics.jsonl); bt-info describes a checkpoint:"
"$bin/bt-info" "$out/run/last.btc" | head -n 12
