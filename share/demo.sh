#!/bin/sh
# demo.sh: the main job on the bundled data, run by `make demo` from the source tree.
# For now it packs the bundled Fashion-MNIST subset (share/data/fashion-mnist) into record
# files, verifies them and describes them; training and evaluation join it as bt-train
# and bt-eval arrive. Output goes to $BT_DEMO_OUT (default: demo-out/ in the tree).
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/bin"
data="$top/share/data/fashion-mnist"
out="${BT_DEMO_OUT:-$top/demo-out}"
mkdir -p "$out"

echo "== packing the bundled Fashion-MNIST subset into $out"
"$bin/bt-prep" --classes "$data/classes.txt" -o "$out/fashion-train.btr" \
	"$data/train-images-idx3-ubyte.gz"
"$bin/bt-prep" --classes "$data/classes.txt" -o "$out/fashion-test.btr" \
	"$data/t10k-images-idx3-ubyte.gz"
echo "== verifying"
"$bin/bt-prep" --verify "$out/fashion-train.btr" "$out/fashion-test.btr"
echo "== the training set"
"$bin/bt-info" "$out/fashion-train.btr"
echo "== the training augmentation of the first images (contact sheet)"
"$bin/bt-aug" --preview "$out/fashion-preview.jpg" --grid 4x8 --input-size 28 --min-area 0.5 \
	"$out/fashion-train.btr"
echo "== the model: cifar_resnet20_v1 for 28x28 greyscale images"
"$bin/bt-info" --model cifar_resnet20_v1 --in-channels 1 --input-size 28 --batch-size 128 | tail -n 7
echo "== a short CPU benchmark of its training step (batch 128)"
"$bin/bt-train" --benchmark --model cifar_resnet20_v1 --in-channels 1 --input-size 28 \
	--batch-size 128 --steps 5 --warmup 2
echo "== devices"
"$bin/bt-info" --devices
