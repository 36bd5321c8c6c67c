#!/bin/bash
# tests/bench/aug.sh - augmentation benchmark: bt-aug against torchvision, side by side.
#
# Usage: tests/bench/aug.sh [WORKDIR]
#
# Builds (once, cached in WORKDIR/corpus) the 1000-JPEG corpus of
# tests/bench/mkcorpus.py, packs it once with `bin/bt-prep -q -o
# WORKDIR/corpus.btr CORPUS` (JPEG bytes pass through), warms the page cache,
# then times, in the same run, alternating, best of $RUNS (default 3) each:
#
#   config      bt (one process)                           torchvision (one process)
#   train f32   bt-aug -q -j 1 --mode train --format f32   ImageFolder + RandomResizedCrop(224),
#                                                          RandomHorizontalFlip, ColorJitter(.4,.4,.4),
#                                                          ToTensor, Normalize
#   eval f32    bt-aug -q -j 1 --mode eval --format f32    ImageFolder + Resize(256), CenterCrop(224),
#                                                          ToTensor, Normalize
#   train u8    bt-aug -q -j 1 --mode train --format u8    the train transform with PILToTensor
#                                                          instead of ToTensor + Normalize
#   train f32 -j 2   bt-aug -q -j 2 ... (scaling only; torchvision is not run with workers)
#   train u8 -j 2    the same for u8, bt-aug's default format (scaling shown, no verdict)
#   machine ceiling  an awk loop alone, then two at once: the throughput two CPUs give
#                    two independent one-thread processes here (a VM's second CPU may be
#                    worth less than its first), the bound on any -j 2 / -j 1
#
# torchvision runs through tests/bench/aug_torchvision.py under /usr/bin/python3:
# torch.set_num_threads(1), no DataLoader, the dataset indexed once per run (PIL
# decodes). Its interpreter start, `import torch` and the directory scan are not
# timed, only the loop; bt-aug's whole process is timed, start-up included.
# torchvision has no PCA lighting transform; bt-aug's train mode applies lighting
# (std 0.1) on top, which only costs bt.
#
# Where bt-aug's output goes. The peer writes nothing (it drops each tensor), so bt
# must be charged as little as possible for output. NEVER `-o /dev/null`: bt-aug
# writes OUT through a temporary file beside it and renames it into place, which
# fails in /dev as a normal user and, as root, would replace /dev/null with a
# regular file. Candidates: `-o WORKDIR/out.btr` (602 MB for train f32 into the
# page cache of the same filesystem), or `-o - | cat > /dev/null` (the same bytes
# through a pipe; cat runs on the other core). Measured on the 2-CPU VM
# (2026-11-28, train f32, best of 3-5): -j 1 pipe 1.49-1.54 s, file 1.53-1.54 s
# (by hand: pipe 1.85 s, file 2.10 s); -j 2 pipe 1.06 s, file 0.92-1.53 s, the
# file's spread coming from dirty-page writeback of 602 MB per run. The pipe is
# never dearer and far steadier, and like the peer it leaves nothing on disk,
# so it is the fair sink and the table uses it. The file variant is timed too
# ("sink check" line) so the difference stays visible, and its output is the
# one bt-info checks.
#
# Targets: bt/torchvision images/s >= 3.0 for train f32 and for eval f32, and
# bt -j 2 / bt -j 1 (train f32) >= 1.8. Exits 0 whether or not the targets are
# met; non-zero only if something could not run or the bt output does not check
# out (bt-info must show 1000 f32 records for a train f32 output written to a file).
#
# Without WORKDIR a fresh directory under /tmp is used and removed at the end
# unless KEEP=1. A WORKDIR you name is kept (the corpus is the cache); only the
# files this script writes are removed from it, unless KEEP=1.
# Installs nothing. Needs bin/bt-prep, bin/bt-aug, bin/bt-info (make),
# /usr/bin/python3 with python3-pil, python3-torch, python3-torchvision, and
# lomiri-wallpapers-20.04 for the corpus.

set -u
export LC_ALL=C
# glibc's malloc, left to itself, gives torchvision's large per-image buffers back to the
# kernel and faults them in again in some runs and not in others: its evaluation loop then
# takes 2.2 s or 3.9-5.3 s for the same 1000 images (52,000 against 218,000 minor faults).
# Fixed thresholds keep every run in the fast mode (2.20-2.24 s), so the peer is timed at
# its best; bt's processes get the same setting.
export MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1

RUNS=${RUNS:-3}
KEEP=${KEEP:-0}
BTPREP=bin/bt-prep
BTAUG=bin/bt-aug
BTINFO=bin/bt-info
PY=/usr/bin/python3
TVPY=tests/bench/aug_torchvision.py

die() { echo "aug.sh: $*" >&2; exit 1; }

for t in "$BTPREP" "$BTAUG" "$BTINFO"; do
	[ -x "$t" ] || die "$t not found (or not executable): run make first"
done
[ -x "$PY" ] || die "$PY not found (Debian package python3)"
"$PY" -c 'import torch, torchvision, PIL' 2>/dev/null ||
	die "$PY cannot import torch/torchvision/PIL (apt-get install python3-torchvision python3-pil)"
case $RUNS in ''|*[!0-9]*|0) die "RUNS must be a positive integer";; esac

. tests/bench/corpus.sh
bench_workdir aug "$@"
BTR=$WORK/corpus.btr
BTOUT=$WORK/out.btr
CLEAN_FILES="$BTR $BTOUT"
bench_corpus
rm -f -- "$BTR"
"$BTPREP" -q -o "$BTR" "$CORPUS" || die "bt-prep failed on $CORPUS"

# --- machine and versions -------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$cpu" ] || cpu=$(uname -m)
fstype=$(stat -f -c %T "$WORK" 2>/dev/null || echo "?")
btver=$("$BTAUG" --version 2>/dev/null | head -n 1)
[ -n "$btver" ] || btver="(no --version)"
tvver=$("$PY" "$TVPY" --versions) || die "$TVPY --versions failed"
pyver=$("$PY" -c 'import platform; print(platform.python_version())')
DATE=$(date -u +%Y-%m-%d)
NPROC=$(nproc)

echo "== bt-aug augmentation benchmark =="
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine:  $NPROC CPUs, $cpu; $(uname -sr)"
echo "versions: $btver; python3 $pyver $tvver"
echo "workdir:  $WORK ($fstype)"
echo "corpus:   $NIMG JPEGs, $INBYTES bytes; bt input $(basename "$BTR") $(stat -c %s "$BTR") bytes"
echo "method:   page cache warm, one process each, -j 1 / torch 1 thread, best of $RUNS, alternating;"
echo "          bt output piped to cat > /dev/null (torchvision drops its tensors)"
echo

# --- warm the page cache ----------------------------------------------------------
for _ in 1 2; do
	find "$CORPUS" -type f -exec cat {} + >/dev/null
	cat "$BTR" >/dev/null
done

# --- timing -----------------------------------------------------------------------
# job names: "bt <config>" / "tv <config>"; "bt train f32 -> file" is the sink check.
JOBS=("bt train f32" "tv train f32" "bt eval f32" "tv eval f32"
      "bt train u8" "tv train u8" "bt train f32 -j 2" "bt train u8 -j 2" "bt train f32 -> file"
      "loop x1" "loop x2")
declare -A BEST PAIRED

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f", b - a}'; }

btpipe() { # bt-aug args...: run into a pipe to cat > /dev/null; fails if either fails
	"$BTAUG" -q "$@" -o - "$BTR" | cat >/dev/null
	local st=("${PIPESTATUS[@]}")
	[ "${st[0]}" -eq 0 ] && [ "${st[1]}" -eq 0 ]
}

cpuloop() { awk 'BEGIN { for (i = 0; i < 3e7; i++) s += i * i; exit (s < 0) }'; }

runone() { # $1 = job name; prints the seconds taken, or returns non-zero
	local t0 t1 out rc=0
	case $1 in
	"bt train f32")      t0=$(now); btpipe -j 1 --mode train --format f32 || rc=$?; t1=$(now) ;;
	"bt eval f32")       t0=$(now); btpipe -j 1 --mode eval --format f32 || rc=$?; t1=$(now) ;;
	"bt train u8")       t0=$(now); btpipe -j 1 --mode train --format u8 || rc=$?; t1=$(now) ;;
	"bt train f32 -j 2") t0=$(now); btpipe -j 2 --mode train --format f32 || rc=$?; t1=$(now) ;;
	"bt train u8 -j 2")  t0=$(now); btpipe -j 2 --mode train --format u8 || rc=$?; t1=$(now) ;;
	# the machine's own ceiling for -j 2: one CPU-bound one-thread loop, then two at once
	"loop x1") t0=$(now); cpuloop || rc=$?; t1=$(now) ;;
	"loop x2") t0=$(now); { cpuloop & cpuloop; wait $! || rc=$?; } || rc=$?; t1=$(now) ;;
	"bt train f32 -> file")
		rm -f -- "$BTOUT"
		t0=$(now)
		"$BTAUG" -q -j 1 --mode train --format f32 -o "$BTOUT" "$BTR" || rc=$?
		t1=$(now) ;;
	"tv train f32"|"tv eval f32"|"tv train u8")
		local mode
		case $1 in *train\ f32) mode="train" ;; *eval*) mode="eval" ;; *) mode="u8" ;; esac
		out=$("$PY" "$TVPY" --mode "$mode" "$CORPUS" 2>/dev/null) || rc=$?
		[ $rc -eq 0 ] || { echo "aug.sh: '$1' failed (exit $rc)" >&2; return 1; }
		local w1 secs w3 n
		read -r w1 secs w3 n <<<"$out"
		if [ "$w1" != seconds ] || [ "$w3" != images ] || [ "$n" != "$NIMG" ]; then
			echo "aug.sh: unexpected output from $TVPY: $out" >&2
			return 1
		fi
		printf "%s" "$secs"
		return 0 ;;
	*) echo "aug.sh: unknown job '$1'" >&2; return 1 ;;
	esac
	[ $rc -eq 0 ] || { echo "aug.sh: '$1' failed (exit $rc)" >&2; return 1; }
	elapsed "$t0" "$t1"
}

printf "%-4s" "run"
for job in "${JOBS[@]}"; do printf "  %s" "$job"; done
echo
for ((r = 1; r <= RUNS; r++)); do
	# rotate the order each round so no job always runs first; neighbours
	# stay bt / torchvision pairs, so the two sides alternate
	order=()
	for ((i = 0; i < ${#JOBS[@]}; i++)); do
		order+=("${JOBS[(i + r - 1) % ${#JOBS[@]}]}")
	done
	declare -A T=()
	for job in "${order[@]}"; do
		s=$(runone "$job") || exit 1
		T[$job]=$s
		if [ -z "${BEST[$job]:-}" ] || awk -v a="$s" -v b="${BEST[$job]}" 'BEGIN {exit !(a < b)}'; then
			BEST[$job]=$s
		fi
	done
	printf "%-4s" "$r"
	for job in "${JOBS[@]}"; do printf "  %*s" "${#job}" "${T[$job]}"; done
	echo
	# the round's own ratio of each config: both sides timed minutes apart at most, so a
	# slow phase of the machine falls on both
	for c in "train f32" "eval f32" "train u8"; do
		PAIRED[$c]="${PAIRED[$c]:-} $(awk -v a="${T[tv $c]}" -v b="${T[bt $c]}" 'BEGIN {printf "%.4f", a / b}')"
	done
	unset T
done
echo

ips() { awk -v n="$NIMG" -v s="$1" 'BEGIN {printf "%.1f", n / s}'; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a >= b)}'; }
verdict() { if ge "$1" "$2"; then echo "target met"; else echo "target NOT met"; fi; }

# --- table --------------------------------------------------------------------------
declare -A BTIPS TVIPS RATIO
for c in "train f32" "eval f32" "train u8"; do
	BTIPS[$c]=$(ips "${BEST[bt $c]}")
	TVIPS[$c]=$(ips "${BEST[tv $c]}")
	RATIO[$c]=$(ratio "${BTIPS[$c]}" "${TVIPS[$c]}")
done
J2IPS=$(ips "${BEST[bt train f32 -j 2]}")
SCALE=$(ratio "$J2IPS" "${BTIPS[train f32]}")
J2U8IPS=$(ips "${BEST[bt train u8 -j 2]}")
SCALEU8=$(ratio "$J2U8IPS" "${BTIPS[train u8]}")
CEIL=$(awk -v a="${BEST[loop x1]}" -v b="${BEST[loop x2]}" 'BEGIN {printf "%.2f", 2 * a / b}')
FILEIPS=$(ips "${BEST[bt train f32 -> file]}")

declare -A PMED
for c in "train f32" "eval f32" "train u8"; do PMED[$c]=$(median <<<"${PAIRED[$c]}"); done
printf "%-16s %14s %20s %18s %8s  %s\n" config "bt images/s" "torchvision images/s" "ratio bt/tv" "paired" "target"
printf "%-16s %14s %20s %18s %8s  %s\n" "train f32" "${BTIPS[train f32]}" "${TVIPS[train f32]}" "${RATIO[train f32]}" "${PMED[train f32]}" ">= 3.0: $(verdict "${RATIO[train f32]}" 3.0)"
printf "%-16s %14s %20s %18s %8s  %s\n" "eval f32" "${BTIPS[eval f32]}" "${TVIPS[eval f32]}" "${RATIO[eval f32]}" "${PMED[eval f32]}" ">= 3.0: $(verdict "${RATIO[eval f32]}" 3.0)"
printf "%-16s %14s %20s %18s %8s  %s\n" "train u8" "${BTIPS[train u8]}" "${TVIPS[train u8]}" "${RATIO[train u8]}" "${PMED[train u8]}" "(none)"
printf "%-16s %14s %20s %18s %8s  %s\n" "train f32 -j 2" "$J2IPS" "-" "-j2/-j1 $SCALE" "-" ">= 1.8: $(verdict "$SCALE" 1.8)"
printf "%-16s %14s %20s %18s %8s  %s\n" "train u8 -j 2" "$J2U8IPS" "-" "-j2/-j1 $SCALEU8" "-" "(u8, the default format: 4x fewer bytes for the consumer)"
printf "%-16s %14s %20s %18s %8s  %s\n" "machine ceiling" "-" "-" "x2/x1 $CEIL" "-" "(two one-thread CPU loops at once against one: what 2 CPUs give here)"
echo "(images/s = $NIMG / best seconds; bt: -j 1 unless stated, whole process, output piped to"
echo " cat > /dev/null; torchvision: 1 thread, loop only, tensors dropped, no PCA lighting;"
echo " paired: the median over the rounds of each round's own torchvision/bt time ratio, which"
echo " a slow phase of the machine touches less than it does a best-of ratio; the verdict is"
echo " on the best-of ratio)"
echo "sink check: bt train f32 -j 1 -o $(basename "$BTOUT") (file, same filesystem): $FILEIPS images/s," \
	"piped: ${BTIPS[train f32]} images/s"
echo

# --- check a bt output once ------------------------------------------------------------
# The last "-> file" run left a train f32 output in $BTOUT.
echo "bt-info $(basename "$BTOUT") (train f32, written to a file):"
info=$("$BTINFO" "$BTOUT" 2>&1)
irc=$?
printf '%s\n' "$info" | sed 's/^/  /'
okinfo=0
if [ $irc -eq 0 ] &&
	printf '%s\n' "$info" | grep -Eq "^records +$NIMG\$" &&
	printf '%s\n' "$info" | grep -Eq "^kinds +f32 $NIMG\$"; then
	okinfo=1
fi
echo "check: $NIMG f32 records: $([ $okinfo = 1 ] && echo OK || echo FAILED)"
echo

# --- rows for docs/benchmarks.md ----------------------------------------------------------
machine="$NPROC CPUs, $cpu, $(uname -sr | sed 's/^Linux /Linux /')"
cmdtxt="\`tests/bench/aug.sh\` ($NIMG JPEGs; $btver; $tvver)"
echo "rows for docs/benchmarks.md:"
for c in "train f32" "eval f32" "train u8"; do
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$DATE" "$machine" "$cmdtxt" "$c" \
		"${BTIPS[$c]}" "${TVIPS[$c]}" "${RATIO[$c]}"
done
printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$DATE" "$machine" "$cmdtxt" "train f32, bt -j 2" \
	"$J2IPS" "-" "-j 2 / -j 1: $SCALE"
printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$DATE" "$machine" "$cmdtxt" "train u8, bt -j 2" \
	"$J2U8IPS" "-" "-j 2 / -j 1: $SCALEU8"

[ $okinfo = 1 ] || { echo "aug.sh: $BTOUT does not hold $NIMG f32 records" >&2; exit 1; }
exit 0
