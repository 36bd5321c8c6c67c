#!/bin/sh
# prepare.sh: run here (no GPU) before a device call. Builds bt and the CUDA parity test,
# then packs what must travel to the GPU machine, whose image has CUDA 13 and PyTorch (with
# its pip cuDNN and cuBLAS) but none of Debian's libraries: bin/ and tests/gpu/test_cuda
# (CUDA runtime linked statically) and the shared libraries they load that a bare machine
# lacks (oneDNN, libjpeg-turbo, libpng, libgomp, OpenCL loader), into
# tests/gpu/carry.tar.xz (ignored by git; name it in the device call's carry list).
# cuDNN and cuBLAS stay behind: hundreds of MB, over the carry limit, and the machine has
# them in python3's site-packages/nvidia/*/lib, where run.sh points the loader.
# Then, there: `sh tests/gpu/run.sh` (it unpacks the archive itself).
set -e
cd "$(dirname "$0")/../.."
make -s all tests/gpu/test_cuda
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/tests/gpu/lib"
cp bin/bt-* "$tmp/bin/"
cp tests/gpu/test_cuda "$tmp/tests/gpu/"
# Every library a binary needs, except the C library's own, which the GPU machine's newer
# glibc provides (binaries built against Debian 12's glibc 2.36 run on newer ones), and
# NVIDIA's, which it has.
for f in bin/bt-* tests/gpu/test_cuda; do ldd "$f"; done | awk '$3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
	case $(basename "$lib") in
	libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
	libcudnn*|libcublas*|libcudart*|libnvrtc*|libcuda.so*) ;;
	*) cp -L "$lib" "$tmp/tests/gpu/lib/" ;;
	esac
done
# 256 JPEGs (500x375, ~50 KB each, 8 classes) for run.sh's training run on real records:
# the machine there has no Debian photographs. Built once by the augmentation benchmark's
# corpus script from lomiri-wallpapers-20.04 (`sh .ci/deps.sh --bench`); without it, run.sh
# skips that step and says so.
jpeg=
if [ -x /usr/bin/python3 ] && /usr/bin/python3 tests/bench/mkcorpus.py -q -n 256 -k 8 \
	"$tmp/tests/gpu/jpeg"; then
	jpeg=tests/gpu/jpeg
else
	echo "prepare.sh: no JPEG corpus (needs python3-pil and lomiri-wallpapers-20.04);" \
		"run.sh will skip the training run on real records" >&2
fi
tar -C "$tmp" -cJf tests/gpu/carry.tar.xz bin tests/gpu/lib tests/gpu/test_cuda $jpeg
ls -la tests/gpu/carry.tar.xz
tar -tJf tests/gpu/carry.tar.xz | grep -v '/jpeg/class_' 
