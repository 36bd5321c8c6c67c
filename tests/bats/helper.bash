# helper.bash: shared set-up for bt's Bats tests: the built tools on PATH, a scratch
# directory per test, fixture generators (tests/gen/mkimg, tests/gen/mkdata) and the
# independent format reader (tests/bats/btrdump.py).

TOP="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
export PATH="$TOP/bin:$TOP/tests/gen:$PATH"
BTRDUMP="/usr/bin/python3 $TOP/tests/bats/btrdump.py"

setup() {
	T="$(mktemp -d "${BATS_TMPDIR:-/tmp}/bt-bats.XXXXXX")"
	cd "$T" || return 1
}

teardown() {
	cd /
	chmod -R u+rwX "$T" 2>/dev/null
	rm -rf "$T"
}

# An ImageFolder tree: DIR/CLASS/img_N.jpg for the given classes, N images each.
make_folder() {
	local dir=$1 n=$2
	shift 2
	local c i seed=0
	for c in "$@"; do
		mkdir -p "$dir/$c"
		for i in $(seq 1 "$n"); do
			seed=$((seed + 1))
			mkimg jpeg "$dir/$c/img_$i.jpg" $((40 + i * 8)) $((30 + i * 4)) --seed "$seed" >/dev/null || return 1
		done
	done
}

# No output and no temporary file under the name $1.
assert_no_output() {
	[ ! -e "$1" ] || { echo "output $1 left behind"; return 1; }
	! ls "$1".tmp.* >/dev/null 2>&1 || { echo "temporary file left behind"; return 1; }
}

# Runs a command as an unprivileged user when we are root (so that a mode-000 file is
# really unreadable); plainly otherwise.
as_user() {
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
	else
		"$@"
	fi
}
