#!/usr/bin/env bats
# bt-prep: every source kind and option, and bad input. Outputs are read back both by
# bt-info and by the independent reader tests/bats/btrdump.py.

load helper

# ---- sources --------------------------------------------------------------------------

@test "ImageFolder: classes sorted, JPEG bytes passed through untouched" {
	make_folder imgs 3 dog cat bird
	run bt-prep -q -o out.btr imgs
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[ "$status" -eq 0 ]
	[ "${lines[9]}" = "classes: bird cat dog" ]
	[ "${lines[10]}" = "footer: yes" ]
	# record 0 is bird/img_1.jpg, label 0; record 8 is dog/img_3.jpg, label 2
	[[ "${lines[0]}" == "0 jpeg 34x48x3 label=0 id=0 "* ]]
	[[ "${lines[8]}" == "8 jpeg 42x64x3 label=2 id=8 "* ]]
	$BTRDUMP out.btr --payload 4 p4.jpg >/dev/null
	cmp p4.jpg imgs/cat/img_2.jpg
}

@test "ImageFolder: several trees share the union of their class names" {
	make_folder a 1 cat dog
	make_folder b 1 ant dog
	run bt-prep -q -o out.btr a b
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[ "${lines[4]}" = "classes: ant cat dog" ]
	[[ "${lines[0]}" == *"label=1 "* ]]
	[[ "${lines[2]}" == *"label=0 "* ]]
}

@test "list file (.lst) with --root, multiple labels kept as soft labels" {
	make_folder imgs 2 cat dog
	printf '10\t1.000000\tcat/img_1.jpg\n11\t0\t0.5\tdog/img_2.jpg\n' > my.lst
	run bt-prep -q -o out.btr --root imgs my.lst
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[[ "${lines[0]}" == "0 jpeg "*" label=1 id=10 soft=- "* ]]
	[[ "${lines[1]}" == "1 jpeg "*" label=0 id=11 soft=0,0.5 "* ]]
	# relative to the list file's directory when --root is absent
	cp my.lst imgs/
	run bt-prep -q -o out2.btr imgs/my.lst
	[ "$status" -eq 0 ]
}

@test "list file: a bad line is reported with its number" {
	printf '0\t1\ta.jpg\nnonsense\n' > bad.lst
	run bt-prep -q -o out.btr bad.lst
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-prep: bad.lst:2: "* ]]
	assert_no_output out.btr
}

@test "MXNet RecordIO with .idx, multi-label and a split record" {
	for i in 1 2 3 4; do mkimg jpeg p$i.jpg 32 24 --seed $i >/dev/null; done
	mkdata rec train.rec --multi-label --split-record p1.jpg p2.jpg p3.jpg p4.jpg
	[ -e train.idx ]
	run bt-prep -q -o out.btr train.rec
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr --payload 0 r0.jpg
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "0 jpeg 24x32x3 label=0 id=0 soft=0,1 "* ]]
	[[ "${lines[3]}" == "3 jpeg 24x32x3 label=0 id=3 "* ]]
	cmp r0.jpg p1.jpg
}

@test "MXNet RecordIO: .idx that disagrees with the .rec is an error" {
	for i in 1 2; do mkimg jpeg p$i.jpg 16 16 --seed $i >/dev/null; done
	mkdata rec a.rec p1.jpg p2.jpg
	head -n 1 a.idx > a.idx.new && mv a.idx.new a.idx
	run bt-prep -q -o out.btr a.rec
	[ "$status" -eq 1 ]
	[[ "$output" == *"a.idx"* ]]
	assert_no_output out.btr
}

@test "IDX: gzipped, plain, labels derived from the name or given" {
	mkdata idx train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz 20 28 28 --gz
	run bt-prep -q -o gz.btr train-images-idx3-ubyte.gz
	[ "$status" -eq 0 ]
	run bt-info gz.btr
	[[ "$output" == *"kinds      raw 20"* ]]
	[[ "$output" == *"channels   1: 20"* ]]
	mkdata idx imgs.idx labs.idx 5 4 6
	run bt-prep -q -o plain.btr --labels labs.idx imgs.idx
	[ "$status" -eq 0 ]
	run $BTRDUMP plain.btr
	[[ "${lines[3]}" == "3 raw 4x6x1 label=3 id=3 "* ]]
	run bt-prep -q -o x.btr imgs.idx
	[ "$status" -eq 1 ]
	[[ "$output" == *"--labels"* ]]
}

@test "IDX: Fashion-MNIST subset bundled in share/data, with class names" {
	d="$TOP/share/data/fashion-mnist"
	run bt-prep -q -o fm.btr --classes "$d/classes.txt" "$d/t10k-images-idx3-ubyte.gz"
	[ "$status" -eq 0 ]
	run bt-info fm.btr
	[[ "$output" == *"records    1000"* ]]
	[[ "$output" == *"class 9    Ankle boot"* ]]
}

@test "CIFAR-10 and CIFAR-100 batches, class names from the meta file" {
	mkdata cifar data_batch_1.bin 12
	printf 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n' > batches.meta.txt
	run bt-prep -q -o c10.btr data_batch_1.bin
	[ "$status" -eq 0 ]
	run $BTRDUMP c10.btr
	[[ "${lines[11]}" == "11 raw 32x32x3 label=1 id=11 "* ]]
	[[ "${lines[12]}" == "classes: airplane automobile bird"* ]]
	mkdir c100 && mkdata cifar c100/train.bin 7 --100
	run bt-prep -q -o c100.btr c100/train.bin
	[ "$status" -eq 0 ]
	run $BTRDUMP c100.btr
	[[ "${lines[6]}" == "6 raw 32x32x3 label=6 id=6 "* ]]
}

@test "standard input: 'path label' lines from a pipe, labels by number or class name" {
	make_folder imgs 1 cat dog
	run sh -c 'printf "imgs/cat/img_1.jpg 0\nimgs/dog/img_1.jpg 1\n" | bt-prep -q -o out.btr -'
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[[ "${lines[1]}" == "1 jpeg "*" label=1 "* ]]
	printf 'cat\ndog\n' > classes.txt
	run sh -c 'printf "imgs/dog/img_1.jpg dog\n" | bt-prep -q -o named.btr --classes classes.txt -'
	[ "$status" -eq 0 ]
	run $BTRDUMP named.btr
	[[ "${lines[0]}" == "0 jpeg "*" label=1 "* ]]
	[ "${lines[1]}" = "classes: cat dog" ]
}

@test "output to a pipe: bt-prep -o - | bt-info -" {
	make_folder imgs 2 a b
	run sh -c 'bt-prep -q -o - imgs | bt-info -'
	[ "$status" -eq 0 ]
	[[ "$output" == *"records    4"* ]]
	[[ "$output" == *"footer     present"* ]]
}

# ---- options ---------------------------------------------------------------------------

@test "-j 1 and -j 2 write identical bytes" {
	make_folder imgs 4 a b c
	bt-prep -q -j 1 -o one.btr --resize 20 imgs
	bt-prep -q -j 2 -o two.btr --resize 20 imgs
	cmp one.btr two.btr
}

@test "--resize: shorter side becomes N, aspect kept, format kept" {
	mkdir -p imgs/x
	mkimg jpeg imgs/x/wide.jpg 200 100 >/dev/null
	mkimg png imgs/x/tall.png 50 150 --channels 3 >/dev/null
	run bt-prep -q -o out.btr --resize 40 imgs
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[[ "${lines[0]}" == "0 png 120x40x3 "* ]]
	[[ "${lines[1]}" == "1 jpeg 40x80x3 "* ]]
}

@test "--encoding png, raw and jpeg, with --quality" {
	make_folder imgs 1 a
	for e in png raw jpeg; do
		run bt-prep -q -o $e.btr --encoding $e imgs
		[ "$status" -eq 0 ]
		run $BTRDUMP $e.btr
		[[ "${lines[0]}" == "0 $e 34x48x3 "* ]]
	done
	bt-prep -q -o q20.btr --encoding jpeg --quality 20 imgs
	bt-prep -q -o q95.btr --encoding jpeg --quality 95 imgs
	[ "$(stat -c %s q20.btr)" -lt "$(stat -c %s q95.btr)" ]
	# raw pixels are height x width x 3 bytes
	$BTRDUMP raw.btr --payload 0 p.raw >/dev/null
	[ "$(stat -c %s p.raw)" -eq $((34 * 48 * 3)) ]
}

@test "--shuffle: the same seed gives the same file, another seed another order" {
	make_folder imgs 5 a b
	bt-prep -q -o s1.btr --shuffle --seed 7 imgs
	bt-prep -q -o s2.btr --shuffle --seed 7 imgs
	bt-prep -q -o s3.btr --shuffle --seed 8 imgs
	bt-prep -q -o plain.btr imgs
	cmp s1.btr s2.btr
	! cmp -s s1.btr s3.btr
	! cmp -s s1.btr plain.btr
	# a permutation: the same payloads
	diff <($BTRDUMP s1.btr | sed -n 's/.* sha=//p' | sort) <($BTRDUMP plain.btr | sed -n 's/.* sha=//p' | sort)
}

@test "--classes: names in the footer, a directory not in the list is an error" {
	make_folder imgs 1 cat dog
	printf 'dog\ncat\nemu\n' > classes.txt
	run bt-prep -q -o out.btr --classes classes.txt imgs
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[[ "${lines[0]}" == *"label=1 "* ]]
	[ "${lines[2]}" = "classes: dog cat emu" ]
	printf 'dog\n' > short.txt
	run bt-prep -q -o bad.btr --classes short.txt imgs
	[ "$status" -eq 1 ]
	[[ "$output" == *"cat"* ]]
	assert_no_output bad.btr
}

@test "--split: per-class train and val files" {
	make_folder imgs 10 a b c
	run bt-prep -o data.btr --split 0.8 --shuffle imgs
	[ "$status" -eq 0 ]
	[[ "$output" == *"data-train.btr: 24 records; data-val.btr: 6 records"* ]]
	run bt-info data-val.btr
	[[ "$output" == *"class 0    a  2"* ]]
	[[ "$output" == *"class 2    c  2"* ]]
	[ ! -e data.btr ]
	run bt-prep -o - --split 0.5 imgs
	[ "$status" -eq 2 ]
}

@test "--skip-bad: bad inputs are skipped with a warning and counted" {
	make_folder imgs 2 a
	echo "not an image" > imgs/a/text.jpg
	run bt-prep -o out.btr --skip-bad imgs
	[ "$status" -eq 0 ]
	[[ "$output" == *"skipped imgs/a/text.jpg: not a JPEG or PNG image"* ]]
	[[ "$output" == *"packed 2 records (1 skipped)"* ]]
}

@test "--max-pixels: a PNG claiming 100000x100000 pixels is refused from its header" {
	mkdir -p imgs/a && mkimg png-bomb imgs/a/bomb.png 100000 100000
	run bt-prep -q -o out.btr imgs
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-prep: imgs/a/bomb.png: "*"100000x100000"*"max-pixels"* ]]
	assert_no_output out.btr
	mkimg jpeg-bomb imgs/a/bomb.jpg 60000 60000
	rm imgs/a/bomb.png
	run bt-prep -q -o out.btr --max-pixels 1000000 imgs
	[ "$status" -eq 1 ]
	[[ "$output" == *"bomb.jpg"* ]]
	assert_no_output out.btr
}

# ---- awkward images ---------------------------------------------------------------------

@test "a PNG named .JPEG is stored as PNG" {
	mkdir -p imgs/a && mkimg png imgs/a/n02105855_2933.JPEG 30 20 --channels 4 >/dev/null
	run bt-prep -q -o out.btr imgs
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[[ "${lines[0]}" == "0 png 20x30x4 "* ]]
}

@test "greyscale and CMYK JPEGs pass through, and become RGB when re-encoded" {
	mkdir -p imgs/a
	mkimg jpeg imgs/a/grey.jpg 24 16 --gray >/dev/null
	mkimg jpeg imgs/a/cmyk.jpg 24 16 --cmyk >/dev/null
	run bt-prep -q -o keep.btr imgs
	[ "$status" -eq 0 ]
	run $BTRDUMP keep.btr
	[[ "${lines[0]}" == "0 jpeg 16x24x3 "* ]]
	[[ "${lines[1]}" == "1 jpeg 16x24x1 "* ]]
	run bt-prep -q -o rgb.btr --encoding jpeg imgs
	[ "$status" -eq 0 ]
	run $BTRDUMP rgb.btr
	[[ "${lines[0]}" == "0 jpeg 16x24x3 "* ]]
	[[ "${lines[1]}" == "1 jpeg 16x24x3 "* ]]
	$BTRDUMP rgb.btr --payload 0 c.jpg >/dev/null
	run mkimg info c.jpg
	[ "$output" = "jpeg 24x16 3" ]
}

# ---- bad input: clear message, exit 1, nothing left behind -------------------------------

@test "bad input table" {
	make_folder good 1 a
	mkdir -p empty trunc/a text/a
	mkimg jpeg full.jpg 64 48 >/dev/null
	head -c 300 full.jpg > trunc/a/cut.jpg
	echo "hello" > text/a/note.jpg
	while IFS='|' read -r args want; do
		run bt-prep -q -o out.btr $args
		[ "$status" -eq 1 ] || { echo "exit $status for: $args"; return 1; }
		[[ "$output" == "bt-prep: "*"$want"* ]] || { echo "for $args: $output"; return 1; }
		[ "${#lines[@]}" -eq 1 ] || { echo "more than one line for $args"; return 1; }
		assert_no_output out.btr
	done <<-'EOF'
	missing|missing: No such file or directory
	empty|empty: no class directories
	trunc|trunc/a/cut.jpg: truncated JPEG
	text|text/a/note.jpg: not a JPEG or PNG image
	good trunc|trunc/a/cut.jpg
	EOF
}

@test "an unreadable file is named with the system's reason" {
	make_folder imgs 2 a
	chmod 000 imgs/a/img_1.jpg
	chmod 777 "$T"
	run as_user bt-prep -q -o "$T/out.btr" imgs
	[ "$status" -eq 1 ]
	[[ "$output" == *"imgs/a/img_1.jpg"*"Permission denied"* ]]
	assert_no_output out.btr
}

@test "interrupted by SIGTERM: exit 1, no output left" {
	make_folder imgs 1 a
	mkfifo fifo
	# fd 3 belongs to bats; hold the fifo open for writing on fd 5
	exec 5<>fifo
	echo "imgs/a/img_1.jpg 0" >&5
	bt-prep -q -o out.btr - <fifo 2>err.txt 3>&- &
	pid=$!
	sleep 0.5
	kill -TERM $pid
	status=0
	wait $pid || status=$?
	exec 5>&-
	[ "$status" -eq 1 ]
	grep -q "bt-prep: " err.txt
	assert_no_output out.btr
}

# ---- verify and reindex ------------------------------------------------------------------

@test "--verify: a good file, a flipped byte, a truncated file" {
	make_folder imgs 3 a
	bt-prep -q -o good.btr imgs
	run bt-prep --verify good.btr
	[ "$status" -eq 0 ]
	[[ "$output" == "good.btr: 3 records, "*" bytes, footer ok" ]]
	cp good.btr flip.btr
	off=$(( $(stat -c %s good.btr) / 2 ))
	printf '\x5a' | dd of=flip.btr bs=1 seek=$off conv=notrunc status=none
	run bt-prep --verify flip.btr
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-prep: flip.btr: record "*" at offset "* ]]
	head -c $(( $(stat -c %s good.btr) - 100 )) good.btr > cut.btr
	run bt-prep --verify cut.btr
	[ "$status" -eq 1 ]
	[[ "$output" == *"record 2 at offset"*"truncated"* ]]
	run bt-info cut.btr
	[ "$status" -eq 1 ]
}

@test "--reindex: a truncated file gets its footer back" {
	make_folder imgs 3 a b
	bt-prep -q -o good.btr imgs
	head -c $(( $(stat -c %s good.btr) - 200 )) good.btr > cut.btr
	run bt-prep --reindex cut.btr
	[ "$status" -eq 0 ]
	[[ "$output" == *"footer rebuilt over 5 records; dropped a partial record"* ]]
	run bt-prep --verify cut.btr
	[ "$status" -eq 0 ]
	run $BTRDUMP cut.btr
	[ "${lines[5]}" = "classes: " ]
	printf 'a\nb\n' > cls.txt
	bt-prep --reindex --classes cls.txt cut.btr
	run $BTRDUMP cut.btr
	[ "${lines[5]}" = "classes: a b" ]
}

# ---- usage -----------------------------------------------------------------------------

@test "usage errors exit 2" {
	while read -r args; do
		run bt-prep $args
		[ "$status" -eq 2 ] || { echo "exit $status for: $args"; return 1; }
	done <<-'EOF'
	imgs
	-o out.btr
	-o out.btr -j 0 imgs
	-o out.btr -j two imgs
	-o out.btr --split 1.5 imgs
	-o out.btr --encoding webp imgs
	-o out.btr --source zip imgs
	-o out.btr --quality 101 imgs
	--verify
	--reindex a b
	--bogus
	EOF
}

@test "--fsync: the output is complete and verified" {
	make_folder imgs 2 a
	run bt-prep -q --fsync -o out.btr imgs
	[ "$status" -eq 0 ]
	run bt-prep --verify out.btr
	[ "$status" -eq 0 ]
}

@test "--source forces the kind of every SOURCE" {
	make_folder imgs 1 a
	printf '0\t0\ta/img_1.jpg\n' > imgs.txt
	run bt-prep -q -o out.btr --source list --root imgs imgs.txt
	[ "$status" -eq 0 ]
	run bt-prep -q -o out2.btr --source folder imgs.txt
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-prep: imgs.txt: "* ]]
	assert_no_output out2.btr
}
