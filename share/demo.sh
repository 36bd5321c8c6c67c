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
echo "== devices"
"$bin/bt-info" --devices
