#!/bin/sh
# deps.sh: installs the Debian packages bt needs that are missing, and nothing when none
# is. Used by .ci/run and by the Makefile (make deps, demo, check, bench), so a fresh
# Debian 12 machine needs no other set-up. --bench adds what the benchmarks use.
# CUDA (nvcc, cuDNN, NCCL) is not a Debian package here: the build uses it when
# /usr/local/cuda or nvcc on PATH is present.
set -e
pkgs="gcc make libc6-dev libjpeg62-turbo-dev zlib1g-dev libpng-dev libdnnl-dev bats python3 mandoc"
if [ "${1:-}" = --bench ]; then
	pkgs="$pkgs python3-pil lomiri-wallpapers-20.04 dataset-fashion-mnist python3-torch python3-torchvision"
fi
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "bt: installing Debian packages:$missing" >&2
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >&2
