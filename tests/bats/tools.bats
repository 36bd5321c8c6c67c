#!/usr/bin/env bats
# What every tool owes its users: --help and --version, usage errors with exit 2, a man page
# whose SYNOPSIS names the same options as --help, EXAMPLES that run, and a completion.

load helper

TOOLS="bt-prep bt-info bt-aug bt-train bt-eval"

man_page() {
	echo "$TOP/man/man1/$1.1"
}

@test "--help goes to stdout with exit 0, --version names the tool" {
	for t in $TOOLS; do
		run $t --help
		[ "$status" -eq 0 ]
		[[ "${lines[0]}" == "usage: $t "* ]]
		run $t -h
		[ "$status" -eq 0 ]
		run $t --version
		[ "$status" -eq 0 ]
		[[ "$output" =~ ^$t\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
	done
}

@test "an unknown option is a usage error: exit 2, usage on stderr" {
	for t in $TOOLS; do
		run $t --no-such-option
		[ "$status" -eq 2 ]
		[[ "$output" == *"usage: $t"* ]]
	done
}

@test "every option in a man page's SYNOPSIS is in --help, and the other way round" {
	for t in $TOOLS; do
		page=$(man_page $t)
		[ -f "$page" ]
		# .Fl foo in the SYNOPSIS is the option -foo; long options are written .Fl -foo
		# mdoc: each argument of Fl gets a dash ("Fl h | -help" is "-h | --help")
		syn=$(awk '/^\.Sh SYNOPSIS/{s=1;next} /^\.Sh/{s=0} !s{next}
			{ for (i = 1; i <= NF; i++) if ($i == "Fl" || $i == ".Fl") {
				for (j = i + 1; j <= NF && $j !~ /^[A-Z][a-z]$/; j++) if ($j != "|") print "-" $j
			} }' "$page" | sort -u)
		help=$($t --help | grep -oE -- '(^|[ [|])--?[a-zA-Z][-a-zA-Z0-9]*' | sed 's/^[ [|]//' | sort -u)
		usage=$($t --help | awk '/^$/{exit} 1' | grep -oE -- '(^|[ [|])--?[a-zA-Z][-a-zA-Z0-9]*' | sed 's/^[ [|]//' | sort -u)
		for o in $syn; do
			grep -qx -- "$o" <<<"$help" || { echo "$t: $o in the man page, not in --help"; return 1; }
		done
		for o in $usage; do
			grep -qx -- "$o" <<<"$syn" || { echo "$t: $o in the usage, not in the man SYNOPSIS"; return 1; }
		done
	done
}

@test "man pages are clean for mandoc -T lint" {
	command -v mandoc >/dev/null || skip "mandoc is not installed"
	for p in "$TOP"/man/man*/*.[157]; do
		run mandoc -T lint -W warning "$p"
		[ "$status" -eq 0 ] || { echo "$p: $output"; return 1; }
	done
}

# The fixtures the EXAMPLES sections assume: an ImageFolder tree images/ of JPEGs, an MXNet
# train.rec, a train.btr packed from images/, and Fashion-MNIST (the bundled subset stands in when the Debian package is not
# installed: it has the same file names).
example_fixtures() {
	make_folder images 3 cat dog
	mkdata rec train.rec images/cat/img_1.jpg images/dog/img_1.jpg >/dev/null
	bt-prep -q -o train.btr images/
}

examples_of() {
	awk '
		/^\.Sh EXAMPLES/ { e = 1; next }
		/^\.Sh/ { e = 0 }
		!e { next }
		/^\.Bd -literal/ { lit = 1; next }
		/^\.Ed/ { lit = 0; next }
		lit { print; next }
		/^\.Dl / { sub(/^\.Dl /, ""); print }
	' "$1" | sed 's/\\-/-/g; s/\\e/\\/g; s/\\(aq/'"'"'/g'
}

@test "the EXAMPLES of every man page run" {
	fm=/usr/share/datasets/fashion-mnist
	for p in "$TOP"/man/man*/*.[157]; do
		d=$(mktemp -d "$T/ex.XXXXXX")
		cd "$d"
		example_fixtures
		while IFS= read -r cmd; do
			[ -n "$cmd" ] || continue
			[ -d $fm ] || cmd=${cmd//$fm/$TOP/share/data/fashion-mnist}
			run bash -o pipefail -c "$cmd"
			[ "$status" -eq 0 ] || { echo "$(basename $p): '$cmd' exited $status: $output"; return 1; }
		done < <(examples_of "$p")
		cd "$T"
	done
}

@test "each tool has a bash completion that loads and completes its options" {
	for t in $TOOLS; do
		f="$TOP/completions/bash/$t"
		[ -f "$f" ]
		run bash -c "source '$f'; COMP_WORDS=($t --he); COMP_CWORD=1; COMP_LINE='$t --he'; COMP_POINT=\${#COMP_LINE};
			fn=\$(complete -p $t | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p'); \$fn $t --he $t; printf '%s\n' \"\${COMPREPLY[@]}\""
		[ "$status" -eq 0 ]
		[[ "$output" == *"--help"* ]]
	done
}

@test "make install honours PREFIX and DESTDIR" {
	run make -s -C "$TOP" install PREFIX=/opt/bt DESTDIR="$T/root"
	[ "$status" -eq 0 ]
	for f in bin/bt-prep bin/bt-info share/man/man1/bt-prep.1 share/man/man5/bt-record.5 \
		share/man/man7/bt.7 share/bash-completion/completions/bt-prep \
		share/bt/data/fashion-mnist/classes.txt; do
		[ -e "$T/root/opt/bt/$f" ] || { echo "missing $f"; return 1; }
	done
	[ -x "$T/root/opt/bt/bin/bt-prep" ]
	run "$T/root/opt/bt/bin/bt-prep" --version
	[ "$status" -eq 0 ]
}

# Every output is written under a temporary name and renamed, except where the name is
# already something other than a regular file: renaming over /dev/null (as root) or a FIFO
# would replace it with a file.
@test "outputs: a FIFO or a device is written in place, a link followed, a mode kept" {
	make_folder images 2 cat dog
	bt-prep -q -o in.btr images/
	mkckpt --classes 2 --input-size 32 --seed 1 cifar_resnet20_v1 m.btc
	mkfifo ff
	# bt-prep and bt-aug -o, bt-aug --preview, bt-eval --predictions and --confusion
	for cmd in "bt-prep -q -o ff images/" "bt-aug -q -o ff in.btr" \
		"bt-aug -q --preview ff --grid 1x2 in.btr" \
		"bt-eval -q --predictions ff m.btc in.btr" "bt-eval -q --confusion ff m.btc in.btr"; do
		# the reader gives up if nothing ever opens the FIFO (a tool that renamed over it)
		timeout 60 cat ff > got &
		run $cmd
		wait $!
		[ "$status" -eq 0 ] || { echo "$cmd: $output"; return 1; }
		[ -p ff ] || { echo "$cmd replaced the FIFO"; return 1; }
		[ -s got ] || { echo "$cmd: nothing came through the FIFO"; return 1; }
		[ -z "$(ls | grep '\.tmp\.')" ] || { echo "$cmd left a temporary file"; return 1; }
	done
	# what came through last is the confusion matrix of the two classes
	[ "$(wc -l < got)" -eq 3 ]
	run bt-aug -q --limit 1 -o /dev/null in.btr
	[ "$status" -eq 0 ]
	[ -c /dev/null ]
	# a symbolic link is followed (the link stays) and a file replaced keeps its mode
	bt-prep -q -o real.btr images/
	chmod 640 real.btr
	ln -s real.btr link.btr
	run bt-aug -q --limit 1 -o link.btr in.btr
	[ "$status" -eq 0 ]
	[ -L link.btr ]
	[ "$(stat -c %a real.btr)" = 640 ]
	run bt-info real.btr
	[[ "$output" == *"records    1"* ]]
	# a directory is refused, naming it
	mkdir d
	run bt-aug -q -o d in.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-aug: 'd' is a directory" ]
	run bt-prep -q -o d images/
	[ "$status" -eq 1 ]
	[ "$output" = "bt-prep: 'd' is a directory" ]
}
