# corpus.sh: what the benchmarks over the JPEG corpus share, sourced by prep.sh and
# aug.sh: the work directory (given, or a temporary one), its clean-up, and the corpus of
# 1000 ImageNet-like JPEGs built once by mkcorpus.py and cached in WORKDIR/corpus.
# The caller defines die(), PY, KEEP and CLEAN_FILES (what to remove from a kept work
# directory), then calls bench_workdir NAME "$@" and bench_corpus.

# bench_workdir NAME [WORKDIR]: sets WORK, OWNWORK and CORPUS, and the EXIT trap.
bench_workdir() {
	local name=$1
	shift
	if [ $# -ge 1 ]; then
		WORK=$1
		mkdir -p "$WORK" || die "cannot create $WORK"
		WORK=$(cd "$WORK" && pwd)
		OWNWORK=0
	else
		WORK=$(mktemp -d "/tmp/bt-bench-$name.XXXXXX") || die "mktemp failed"
		OWNWORK=1
	fi
	CORPUS=$WORK/corpus
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317  # invoked through trap
bench_cleanup() {
	if [ "$KEEP" = 1 ]; then
		echo "kept: $WORK"
	elif [ "$OWNWORK" = 1 ]; then
		rm -rf -- "$WORK"
	else
		# shellcheck disable=SC2086  # a list of paths without spaces, by construction
		rm -f -- $CLEAN_FILES
	fi
}

# bench_corpus: builds the corpus if it is not there; sets NIMG and INBYTES.
bench_corpus() {
	if [ ! -d "$CORPUS" ]; then
		echo "building corpus in $CORPUS (once; cached there) ..."
		"$PY" tests/bench/mkcorpus.py -q "$CORPUS" || die "corpus build failed"
	fi
	NIMG=$(find "$CORPUS" -type f -name '*.jpg' | wc -l)
	INBYTES=$(find "$CORPUS" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d", s}')
	[ "$NIMG" -gt 0 ] || die "no JPEGs in $CORPUS"
	[ "$NIMG" -eq 1000 ] || echo "warning: corpus has $NIMG JPEGs, expected 1000" >&2
}
