#!/bin/bash
# tests/bench/prep.sh - packing benchmark: bt-prep against tar, side by side.
#
# Usage: tests/bench/prep.sh [WORKDIR]
#
# Builds (once, cached in WORKDIR/corpus) an ImageNet-like corpus of 1000
# JPEGs with tests/bench/mkcorpus.py, warms the page cache, then times, in
# the same run and alternating, best of $RUNS (default 5) each:
#     tar -cf WORKDIR/out.tar -C CORPUS .
#     bin/bt-prep -q -j 2 -o WORKDIR/out.btr CORPUS
#     bin/bt-prep -q -j 1 -o WORKDIR/out.btr CORPUS
# All outputs go to WORKDIR, i.e. the same filesystem. The target is
# tar_time / bt-prep(-j 2)_time >= 1.0. Exits 0 whether or not the target
# is met; non-zero only if something could not run or the bt-prep output
# fails bt-prep --verify.
#
# Without WORKDIR a fresh directory under /tmp is used and removed at the
# end unless KEEP=1. A WORKDIR you name is kept (the corpus is the cache);
# only the output files are removed from it, unless KEEP=1.
# Installs nothing. Needs bin/bt-prep (make), /usr/bin/python3 with
# python3-pil and lomiri-wallpapers-20.04 (for the corpus), GNU tar.

set -u
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1

RUNS=${RUNS:-5}
KEEP=${KEEP:-0}
BTPREP=bin/bt-prep
PY=/usr/bin/python3

die() { echo "prep.sh: $*" >&2; exit 1; }

[ -x "$BTPREP" ] || die "$BTPREP not found (or not executable): run make first"
command -v tar >/dev/null || die "tar not found"
[ -x "$PY" ] || die "$PY not found (Debian package python3)"
case $RUNS in ''|*[!0-9]*|0) die "RUNS must be a positive integer";; esac

. tests/bench/corpus.sh
bench_workdir prep "$@"
TAROUT=$WORK/out.tar
BTOUT=$WORK/out.btr
CLEAN_FILES="$TAROUT $BTOUT"
bench_corpus

# --- machine and versions ---------------------------------------------------
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$cpu" ] || cpu=$(uname -m)
fstype=$(stat -f -c %T "$WORK" 2>/dev/null || echo "?")
btver=$("$BTPREP" --version 2>/dev/null | head -n 1)
[ -n "$btver" ] || btver="(no --version)"
pilver=$("$PY" -c 'import PIL; print(PIL.__version__)' 2>/dev/null || echo "?")
DATE=$(date -u +%Y-%m-%d)
NPROC=$(nproc)

echo "== bt-prep packing benchmark =="
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine:  $NPROC CPUs, $cpu; $(uname -sr)"
echo "versions: $btver; $(tar --version | head -n 1); python3 $("$PY" -c 'import platform; print(platform.python_version())') PIL $pilver"
echo "workdir:  $WORK ($fstype)"
echo "corpus:   $NIMG JPEGs, $INBYTES bytes ($(awk -v b="$INBYTES" -v n="$NIMG" 'BEGIN {printf "%.1f", b / n / 1024}') KiB mean)"
echo "method:   page cache warm, outputs on the same filesystem, best of $RUNS, alternating"
echo

# --- warm the page cache ----------------------------------------------------
find "$CORPUS" -type f -exec cat {} + >/dev/null
find "$CORPUS" -type f -exec cat {} + >/dev/null

# --- timing -------------------------------------------------------------------
TOOLS=("tar" "bt-prep -j 2" "bt-prep -j 1")
declare -A BEST OUTSIZE

outfile() { # $1 = tool name
	case $1 in
	"tar") echo "$TAROUT" ;;
	*)     echo "$BTOUT" ;;
	esac
}

runone() { # $1 = tool name; prints the seconds taken, or returns non-zero
	local t0 t1 rc
	rm -f -- "$(outfile "$1")"
	t0=$(date +%s.%N)
	case $1 in
	"tar")          tar -cf "$TAROUT" -C "$CORPUS" . ;;
	"bt-prep -j 2") "$BTPREP" -q -j 2 -o "$BTOUT" "$CORPUS" ;;
	"bt-prep -j 1") "$BTPREP" -q -j 1 -o "$BTOUT" "$CORPUS" ;;
	esac
	rc=$?
	t1=$(date +%s.%N)
	[ $rc -eq 0 ] || { echo "prep.sh: '$1' failed (exit $rc)" >&2; return 1; }
	awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}'
}

printf "%-4s" "run"
for tool in "${TOOLS[@]}"; do printf "  %14s" "$tool"; done
echo
for ((r = 1; r <= RUNS; r++)); do
	# rotate the order each round so no tool always runs first
	order=()
	for ((i = 0; i < ${#TOOLS[@]}; i++)); do
		order+=("${TOOLS[(i + r - 1) % ${#TOOLS[@]}]}")
	done
	declare -A T=()
	for tool in "${order[@]}"; do
		s=$(runone "$tool") || exit 1
		OUTSIZE[$tool]=$(stat -c %s "$(outfile "$tool")")
		T[$tool]=$s
		if [ -z "${BEST[$tool]:-}" ] || awk -v a="$s" -v b="${BEST[$tool]}" 'BEGIN {exit !(a < b)}'; then
			BEST[$tool]=$s
		fi
	done
	printf "%-4s" "$r"
	for tool in "${TOOLS[@]}"; do printf "  %14s" "${T[$tool]}"; done
	echo
	unset T
done
echo

# --- table --------------------------------------------------------------------
printf "%-14s %10s %10s %9s %14s %10s\n" tool "best s" "images/s" "MB/s" "output bytes" "tar/tool"
for tool in "${TOOLS[@]}"; do
	awk -v t="$tool" -v s="${BEST[$tool]}" -v n="$NIMG" -v b="$INBYTES" \
	    -v o="${OUTSIZE[$tool]}" -v tar="${BEST[tar]}" 'BEGIN {
		printf "%-14s %10.4f %10.0f %9.1f %14d %10.2f\n", t, s, n / s, b / s / 1e6, o, tar / s
	}'
done
echo "(MB/s: corpus bytes read per second, 1 MB = 10^6 bytes)"
echo

RATIO2=$(awk -v a="${BEST[tar]}" -v b="${BEST[bt-prep -j 2]}" 'BEGIN {printf "%.2f", a / b}')
RATIO1=$(awk -v a="${BEST[tar]}" -v b="${BEST[bt-prep -j 1]}" 'BEGIN {printf "%.2f", a / b}')
echo "ratio tar_time / bt-prep_time: -j 2: $RATIO2, -j 1: $RATIO1 (target: -j 2 >= 1.00)"
if awk -v r="$RATIO2" 'BEGIN {exit !(r >= 1.0)}'; then
	echo "target met"
else
	echo "target NOT met"
fi
echo

# --- verify the last output once -----------------------------------------------
echo "verify: $BTPREP --verify $(basename "$BTOUT")"
"$BTPREP" --verify "$BTOUT" 2>&1 | sed 's/^/  /'
vrc=${PIPESTATUS[0]}
echo "verify exit status: $vrc ($([ "$vrc" -eq 0 ] && echo OK || echo FAILED))"
if [ -x bin/bt-info ]; then
	echo "bt-info:"
	bin/bt-info "$BTOUT" 2>&1 | sed 's/^/  /'
fi
echo

# --- a row for docs/benchmarks.md ----------------------------------------------
echo "row for docs/benchmarks.md:"
# shellcheck disable=SC2016  # the backquotes are Markdown
printf '| %s | %s CPUs, %s | `tests/bench/prep.sh` (%d JPEGs, %.1f MB; bt-prep -j 2 / -j 1) | %.3f | %.3f / %.3f | %s / %s |\n' \
	"$DATE" "$NPROC" "$cpu" "$NIMG" "$(awk -v b="$INBYTES" 'BEGIN {print b / 1e6}')" \
	"${BEST[tar]}" "${BEST[bt-prep -j 2]}" "${BEST[bt-prep -j 1]}" "$RATIO2" "$RATIO1"

# The speed target never fails the script; an output that does not verify does.
[ "$vrc" -eq 0 ] || { echo "prep.sh: $BTOUT did not verify" >&2; exit 1; }
exit 0
