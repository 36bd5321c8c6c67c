#!/usr/bin/env bats
# bt-aug: every option, the pipe, determinism across threads and runs, bad images, and the
# preview. Payloads are read back with the independent reader tests/bats/btrdump.py.

load helper

setup_file() {
	export FIX="$BATS_FILE_TMPDIR/fix"
	mkdir -p "$FIX"
	cd "$FIX"
	seed=0
	for c in cat dog; do
		mkdir -p images/$c
		for i in 1 2 3; do
			seed=$((seed + 1))
			mkimg jpeg images/$c/img_$i.jpg $((200 + 40 * i)) $((150 + 10 * i)) --seed $seed >/dev/null
		done
	done
	bt-prep -q -o train.btr images
}

# Payload of record N of FILE as a list of numbers (u8, f32 or f16).
values() {
	/usr/bin/python3 - "$1" "$2" <<-'EOF'
	import struct, subprocess, sys
	path, n = sys.argv[1], int(sys.argv[2])
	data = open(path, "rb").read()
	pos, i = 32, 0
	while True:
	    kind, ndim, nsoft, size = struct.unpack_from("<BBHQ", data, pos + 4)
	    start = pos + 48 + 4 * nsoft
	    if i == n:
	        p = data[start:start + size]
	        fmt = {3: "%dB" % size, 4: "<%df" % (size // 4), 5: "<%de" % (size // 2)}[kind]
	        print(" ".join("%.4f" % v for v in struct.unpack(fmt, p)))
	        break
	    pos, i = start + size + 4, i + 1
	EOF
}

@test "train, u8 by default: one raw 224x224x3 record per image, labels, ids and classes kept" {
	run bt-aug -q -o out.btr "$FIX/train.btr"
	[ "$status" -eq 0 ]
	run $BTRDUMP out.btr
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "0 raw 224x224x3 label=0 id=0 "* ]]
	[[ "${lines[5]}" == "5 raw 224x224x3 label=1 id=5 "* ]]
	[ "${lines[6]}" = "classes: cat dog" ]
}

@test "--format f32 and f16 give normalised tensors of the right size" {
	for f in f32 f16; do
		run bt-aug -q --format $f --mode eval -o $f.btr "$FIX/train.btr"
		[ "$status" -eq 0 ]
		run $BTRDUMP $f.btr
		[[ "${lines[0]}" == "0 $f 224x224x3 label=0 "* ]]
	done
	[ "$(stat -c %s f32.btr)" -gt $((6 * 224 * 224 * 3 * 4)) ]
	[ "$(stat -c %s f16.btr)" -lt $((6 * 224 * 224 * 3 * 4)) ]
}

@test "f32 output is (u8 output - mean) / std, per channel" {
	bt-aug -q --mode eval --format u8 --limit 1 -o u8.btr "$FIX/train.btr"
	bt-aug -q --mode eval --format f32 --mean 10,20,30 --std 2,4,8 --limit 1 -o f.btr "$FIX/train.btr"
	values u8.btr 0 > u8.txt
	values f.btr 0 > f.txt
	/usr/bin/python3 - <<-'EOF'
	u = [float(x) for x in open("u8.txt").read().split()]
	f = [float(x) for x in open("f.txt").read().split()]
	mean, std = (10, 20, 30), (2, 4, 8)
	assert len(u) == len(f) == 224 * 224 * 3
	for i in range(0, len(u), 97):
	    c = i % 3
	    want = (u[i] - mean[c]) / std[c]
	    assert abs(f[i] - want) <= 0.5 / std[c] + 1e-3, (i, f[i], want)
	EOF
}

@test "--erase P: a box of the mean colour (0 once normalised), the rest of the image as without it" {
	for e in 0 1; do
		bt-aug -q --erase $e --input-size 32 --mean 10,20,30 --limit 2 -o u$e.btr "$FIX/train.btr"
		bt-aug -q --erase $e --input-size 32 --format f32 --limit 2 -o f$e.btr "$FIX/train.btr"
		values u$e.btr 1 > u$e.txt
		values f$e.btr 1 > f$e.txt
	done
	/usr/bin/python3 - <<-'EOF'
	S = 32
	u0, u1 = ([int(float(x)) for x in open(n).read().split()] for n in ("u0.txt", "u1.txt"))
	f0, f1 = ([float(x) for x in open(n).read().split()] for n in ("f0.txt", "f1.txt"))
	diff = [k // 3 for k in range(S * S * 3) if u0[k] != u1[k] or f0[k] != f1[k]]
	assert diff, "nothing erased"
	ys, xs = [p // S for p in diff], [p % S for p in diff]
	y0, y1, x0, x1 = min(ys), max(ys), min(xs), max(xs)
	area = (y1 - y0 + 1) * (x1 - x0 + 1) / (S * S)
	assert 0.015 <= area <= 0.4, area
	for y in range(y0, y1 + 1):
	    for x in range(x0, x1 + 1):
	        k = 3 * (y * S + x)
	        assert u1[k:k + 3] == [10, 20, 30], (y, x, u1[k:k + 3])
	        assert f1[k:k + 3] == [0.0, 0.0, 0.0], (y, x, f1[k:k + 3])
	EOF
	# evaluation never erases
	bt-aug -q --mode eval --erase 1 --input-size 32 -o ev1.btr "$FIX/train.btr"
	bt-aug -q --mode eval --input-size 32 -o ev0.btr "$FIX/train.btr"
	cmp ev0.btr ev1.btr
	run bt-aug --erase 1.5 -o x.btr "$FIX/train.btr"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--erase"* ]]
	run bt-aug --erase 0.5 --erase-min-area 0.5 --erase-max-area 0.2 -o x.btr "$FIX/train.btr"
	[ "$status" -eq 2 ]
	[[ "$output" == *"erasing area range"* ]]
}

@test "--pad P: each image shifted by at most P pixels, black where it left the frame" {
	mkdata idx p-images-idx3 p-labels-idx1 24 28 28
	bt-prep -q -o p.btr --labels p-labels-idx1 p-images-idx3
	bt-aug -q --pad 4 --input-size 28 --jitter 0 --lighting 0 -o pa.btr p.btr
	for i in $(seq 0 23); do
		echo "$(values p.btr "$i")"
		echo "$(values pa.btr "$i")"
	done > pairs.txt
	/usr/bin/python3 - <<-'EOF'
	S, P = 28, 4
	lines = open("pairs.txt").read().split("\n")
	seen = set()
	for k in range(24):
	    src = [int(float(v)) for v in lines[2 * k].split()]
	    out = [int(float(v)) for v in lines[2 * k + 1].split()]
	    found = None
	    for flip in (0, 1):
	        for dy in range(-P, P + 1):
	            for dx in range(-P, P + 1):
	                want = []
	                for y in range(S):
	                    for x in range(S):
	                        sx, sy = dx + (S - 1 - x if flip else x), dy + y
	                        want.append(src[sy * S + sx] if 0 <= sx < S and 0 <= sy < S else 0)
	                if want == out:
	                    found = (flip, dy, dx)
	    assert found, "image %d is not a shifted copy" % k
	    seen.add(found)
	assert len(seen) >= 8, seen
	EOF
	# a window larger than the padded image: an error naming the record
	run bt-aug -q --pad 1 --input-size 31 -o x.btr p.btr
	[ "$status" -eq 1 ]
	[[ "$output" == *"record 0"*"28x28: padded by 1 it is smaller than the 31x31 crop"* ]]
	run bt-aug --pad -1 -o x.btr p.btr
	[ "$status" -eq 2 ]
	[[ "$output" == *"--pad"* ]]
	# evaluation ignores it
	bt-aug -q --mode eval --pad 4 --input-size 28 -o e1.btr p.btr
	bt-aug -q --mode eval --input-size 28 -o e0.btr p.btr
	cmp e0.btr e1.btr
}

@test "-j 1 and -j 2 write identical bytes" {
	bt-aug -q -j 1 --format f32 -o one.btr "$FIX/train.btr"
	bt-aug -q -j 2 --format f32 -o two.btr "$FIX/train.btr"
	cmp one.btr two.btr
}

@test "--seed and --epoch decide the draws; the same values repeat a run" {
	bt-aug -q --seed 1 -o a.btr "$FIX/train.btr"
	bt-aug -q --seed 1 -o b.btr "$FIX/train.btr"
	bt-aug -q --seed 2 -o c.btr "$FIX/train.btr"
	bt-aug -q --seed 1 --epoch 3 -o d.btr "$FIX/train.btr"
	cmp a.btr b.btr
	! cmp -s a.btr c.btr
	! cmp -s a.btr d.btr
}

@test "with every random option off, the seed no longer matters" {
	# the images are 4:3 or close; a fixed area of 1 with aspect bounds around it leaves
	# the whole image, no flip and no colour change
	opts="--no-flip --jitter 0 --lighting 0 --min-area 1 --max-area 1 --min-aspect 1 --max-aspect 2"
	bt-aug -q $opts --seed 1 -o a.btr "$FIX/train.btr"
	bt-aug -q $opts --seed 99 -o b.btr "$FIX/train.btr"
	cmp a.btr b.btr
}

@test "--epochs N emits N epochs; --shuffle gives each its own order" {
	run bt-aug -q --epochs 3 -o e.btr "$FIX/train.btr"
	[ "$status" -eq 0 ]
	run bt-info e.btr
	[[ "$output" == *"records    18"* ]]
	bt-aug -q --epochs 2 --shuffle --seed 5 -o s.btr "$FIX/train.btr"
	ids=$($BTRDUMP s.btr | sed -n 's/.* id=\([0-9]*\) .*/\1/p' | tr '\n' ' ')
	first=$(echo $ids | cut -d' ' -f1-6)
	second=$(echo $ids | cut -d' ' -f7-12)
	[ "$first" != "0 1 2 3 4 5" ] || [ "$second" != "0 1 2 3 4 5" ]
	[ "$(echo $first | tr ' ' '\n' | sort -n | tr '\n' ' ')" = "0 1 2 3 4 5 " ]
	[ "$first" != "$second" ]
}

@test "--limit N takes N records per epoch" {
	run bt-aug -q --limit 4 --epochs 2 -o l.btr "$FIX/train.btr"
	[ "$status" -eq 0 ]
	run bt-info l.btr
	[[ "$output" == *"records    8"* ]]
}

@test "--input-size, --resize and --crop-ratio shape the output" {
	run bt-aug -q --input-size 64 -o s.btr "$FIX/train.btr"
	run $BTRDUMP s.btr
	[[ "${lines[0]}" == "0 raw 64x64x3 "* ]]
	# eval: 240x160 resized to shorter side 64 (96x64) and cut to 64x64 in the middle,
	# against --resize 64 and against --crop-ratio 1: the same
	bt-aug -q --mode eval --input-size 64 --resize 64 --limit 1 -o r.btr "$FIX/train.btr"
	bt-aug -q --mode eval --input-size 64 --crop-ratio 1 --limit 1 -o c.btr "$FIX/train.btr"
	bt-aug -q --mode eval --input-size 64 --limit 1 -o d.btr "$FIX/train.btr"
	cmp r.btr c.btr
	! cmp -s r.btr d.btr
}

@test "pipes: bt-prep -o - | bt-aug | bt-info -" {
	run sh -c "bt-prep -q -o - '$FIX/images' | bt-aug -q --mode eval -o - | bt-info -"
	[ "$status" -eq 0 ]
	[[ "$output" == *"records    6"* ]]
	[[ "$output" == *"kinds      raw 6"* ]]
	[[ "$output" == *"class 1    dog  3"* ]]
	# a stream cannot be shuffled or read twice
	run sh -c "cat '$FIX/train.btr' | bt-aug -q --shuffle -o x.btr"
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-aug: <stdin>: shuffling needs a seekable record file with a footer"* ]]
	assert_no_output x.btr
}


@test "a record stream written to a pipe asks for the largest pipe buffer allowed" {
	max=$(cat /proc/sys/fs/pipe-max-size)
	[ "$max" -gt 65536 ] || skip "pipe-max-size is $max here"
	[ "$max" -le 1048576 ] || max=1048576
	# the reader drains the pipe first, so the writer has set the size before it is read
	run sh -c "bt-aug -q --mode eval --format f32 -o - '$FIX/train.btr' |
		/usr/bin/python3 -c 'import fcntl, sys; n = len(sys.stdin.buffer.read()); print(n, fcntl.fcntl(0, 1032))'"
	[ "$status" -eq 0 ]
	read -r bytes size <<<"$output"
	[ "$bytes" -gt $((6 * 224 * 224 * 3 * 4)) ]
	[ "$size" -eq "$max" ]
}
@test "greyscale raw records stay one channel, with one mean and std" {
	mkdata idx g-images-idx3 g-labels-idx1 5 28 28
	bt-prep -q -o g.btr --labels g-labels-idx1 g-images-idx3
	run bt-aug -q --input-size 28 --mean 72.94 --std 90 --format f32 -o ga.btr g.btr
	[ "$status" -eq 0 ]
	run $BTRDUMP ga.btr
	[[ "${lines[4]}" == "4 f32 28x28x1 label=4 "* ]]
}

@test "PNG and greyscale JPEG records give three channels" {
	mkdir -p mixed/a
	mkimg png mixed/a/p.png 60 40 --channels 4 >/dev/null
	mkimg jpeg mixed/a/g.jpg 60 40 --gray >/dev/null
	bt-prep -q -o m.btr mixed
	run bt-aug -q --input-size 32 -o ma.btr m.btr
	[ "$status" -eq 0 ]
	run $BTRDUMP ma.btr
	[[ "${lines[0]}" == "0 raw 32x32x3 "* ]]
	[[ "${lines[1]}" == "1 raw 32x32x3 "* ]]
}

@test "a corrupt JPEG inside a record stops the run naming its index; --skip-bad skips it" {
	mkdir -p bad/a
	cp "$FIX"/images/cat/img_1.jpg "$FIX"/images/cat/img_2.jpg bad/a/
	mkimg jpeg full.jpg 300 200 --seed 9 >/dev/null
	# the first half of the entropy data, then an end marker: header and EOI intact
	{ head -c 3000 full.jpg; printf '\xff\xd9'; } > bad/a/img_3.jpg
	bt-prep -q -o bad.btr bad
	run bt-aug -q -o out.btr bad.btr
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-aug: bad.btr: record 2: "* ]]
	assert_no_output out.btr
	run bt-aug --skip-bad -o out.btr bad.btr
	[ "$status" -eq 0 ]
	[[ "$output" == *"skipped bad.btr: record 2: "* ]]
	[[ "$output" == *"wrote 2 records (1 skipped)"* ]]
}

@test "--preview writes a JPEG contact sheet of the expected size" {
	run bt-aug --preview p.jpg --grid 2x4 "$FIX/train.btr"
	[ "$status" -eq 0 ]
	[[ "$output" == "bt-aug: wrote p.jpg: 2x4 grid of 224x224 images (896x448 pixels)" ]]
	run mkimg info p.jpg
	[ "$output" = "jpeg 896x448 3" ]
	run bt-aug --preview q.jpg --grid 3x2 --input-size 50 --mode eval "$FIX/train.btr"
	[ "$status" -eq 0 ]
	run mkimg info q.jpg
	[ "$output" = "jpeg 100x150 3" ]
}

@test "bad arguments are usage errors (exit 2)" {
	while read -r args; do
		run bt-aug -q $args -o x.btr "$FIX/train.btr"
		[ "$status" -eq 2 ] || { echo "exit $status for: $args"; return 1; }
		assert_no_output x.btr
	done <<-'EOF'
	--mode test
	--format f64
	--grid 0x3
	--grid 3
	--crop-ratio 0
	--min-area 0.5 --max-area 0.2
	--min-aspect 2 --max-aspect 1
	--jitter 2
	--mean 1,2
	--std 0
	--epochs 0
	-j 0
	EOF
	run bt-aug a.btr b.btr
	[ "$status" -eq 2 ]
}

@test "a missing or damaged input is a clear error (exit 1)" {
	run bt-aug -q -o x.btr missing.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-aug: cannot open 'missing.btr': No such file or directory" ]
	head -c 2000 "$FIX/train.btr" > cut.btr
	run bt-aug -q -o x.btr cut.btr
	[ "$status" -eq 1 ]
	[[ "$output" == *"cut.btr: record 0 at offset 32: truncated"* ]]
	assert_no_output x.btr
}
