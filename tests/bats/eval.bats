#!/usr/bin/env bats
# bt-eval: figures checked against an independent forward pass in Python (eval_ref.py,
# written from the format and model definitions), every output format, damaged and
# mismatched inputs, usage errors, the man page and the completion. Checkpoints come from
# tests/gen/mkckpt (an untrained model, its batch-norm statistics moved off identity so
# that a reader that drops them is caught); data from the bundled Fashion-MNIST subset.

load helper

EVALREF="/usr/bin/python3 $TOP/tests/bats/eval_ref.py"
FMDIR="$TOP/share/data/fashion-mnist"

# fm_idx N S PREFIX: the first N Fashion-MNIST test images centre-cropped to S x S, as
# PREFIX-images and PREFIX-labels (IDX).
fm_idx() {
	/usr/bin/python3 - "$FMDIR" "$@" <<-'EOF'
	import gzip, struct, sys
	d, n, s, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
	im = gzip.open(d + "/t10k-images-idx3-ubyte.gz").read()
	lb = gzip.open(d + "/t10k-labels-idx1-ubyte.gz").read()
	o = (28 - s) // 2
	px = bytearray()
	for i in range(n):
	    for y in range(o, o + s):
	        row = 16 + i * 784 + y * 28 + o
	        px += im[row:row + s]
	open(out + "-images", "wb").write(struct.pack(">IIII", 0x803, n, s, s) + px)
	open(out + "-labels", "wb").write(struct.pack(">II", 0x801, n) + lb[8:8 + n])
	EOF
}

setup_file() {
	export FIX="$BATS_FILE_TMPDIR/fix"
	mkdir -p "$FIX"
	cd "$FIX"
	# small: 16 images of 12x12 for the Python reference; fm: 100 of 28x28.
	fm_idx 16 12 small
	bt-prep -q -o small.btr --labels small-labels --classes "$FMDIR/classes.txt" small-images
	fm_idx 100 28 fm
	bt-prep -q -o fm.btr --labels fm-labels --classes "$FMDIR/classes.txt" fm-images
	local common="--classes 10 --in-channels 1 --crop-ratio 1 --mean 72.94 --std 90.02 --perturb 0.5"
	mkckpt $common --input-size 12 --seed 3 --class-names "$FMDIR/classes.txt" cifar_resnet20_v1 small.btc
	mkckpt $common --input-size 12 --seed 4 --class-names "$FMDIR/classes.txt" cifar_resnet20_v1 other.btc
	mkckpt $common --input-size 28 --seed 5 --class-names "$FMDIR/classes.txt" --momentum cifar_resnet20_v1 fm.btc
}

# JSON field $2 of the object in file $1.
jget() {
	/usr/bin/python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(json.dumps(v))' "$1" "$2"
}

@test "--help goes to stdout with the usage first, --version names the tool" {
	run bt-eval --help
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "usage: bt-eval "* ]]
	[[ "$output" == *"--predictions FILE"* ]]
	run bt-eval -h
	[ "$status" -eq 0 ]
	run bt-eval --version
	[ "$status" -eq 0 ]
	[[ "$output" =~ ^bt-eval\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "usage errors exit 2 with a message on stderr" {
	# arguments | what the message says
	while IFS='|' read -r args want; do
		run bash -c "bt-eval $args 2>&1 >/dev/null"
		[ "$status" -eq 2 ] || { echo "bt-eval $args: exit $status"; return 1; }
		[[ "$output" == *"$want"* ]] || { echo "bt-eval $args: $output"; return 1; }
	done <<-'EOF'
	|no CKPT and DATA given
	a.btc|no DATA given
	a.btc b.btr c|unexpected argument 'c'
	--top 0 a.btc b.btr|--top
	--top x a.btc b.btr|--top
	--top 5k a.btc b.btr|--top
	--batch-size 0 a.btc b.btr|--batch-size
	-j 0 a.btc b.btr|-j
	--crop-ratio 0 a.btc b.btr|--crop-ratio
	--crop-ratio 1.5 a.btc b.btr|--crop-ratio
	--input-size 0 a.btc b.btr|--input-size
	--resize -3 a.btc b.btr|--resize
	--logits a.btc b.btr|--logits
	--confusion x --predictions x a.btc b.btr|same file
	--no-such-option a.btc b.btr|usage: bt-eval
	--top|usage: bt-eval
	EOF
	# The usage text comes with a missing operand.
	run bt-eval
	[ "$status" -eq 2 ]
	[[ "$output" == *"usage: bt-eval"* ]]
}

@test "top-1, top-K, loss and every logit agree with an independent forward pass" {
	run bt-eval -q --json --predictions p.tsv --logits "$FIX/small.btc" "$FIX/small.btr"
	[ "$status" -eq 0 ]
	echo "$output" > e.json
	run $EVALREF check "$FIX/small.btc" "$FIX/small.btr" e.json p.tsv
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == "ok: 16 records, 10 classes"* ]]
}

@test "the reference check can fail: another checkpoint's logits are caught" {
	bt-eval -q --json --predictions p.tsv --logits "$FIX/other.btc" "$FIX/small.btr" > e.json
	run $EVALREF check "$FIX/small.btc" "$FIX/small.btr" e.json p.tsv
	[ "$status" -eq 1 ]
	[[ "$output" == *"bt-eval's logit"* ]]
	# A JSON figure that does not follow from the logits is caught too.
	sed 's/"top1":[0-9.]*/"top1":0.999/' e.json > bad.json
	run $EVALREF consistency bad.json p.tsv
	[ "$status" -eq 1 ]
	[[ "$output" == *"JSON top1"* ]]
}

@test "text output: checkpoint, data and one line of figures" {
	run bt-eval -q "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[0]}" = "checkpoint $FIX/fm.btc (cifar_resnet20_v1, 10 classes)" ]
	[ "${lines[1]}" = "data       $FIX/fm.btr" ]
	[[ "${lines[2]}" =~ ^top-1\ 0\.[0-9]{4}\ \ top-5\ [01]\.[0-9]{4}\ \ loss\ [0-9]+\.[0-9]{4}\ \ \(100\ images\)$ ]]
	# The same figures as --json, rounded.
	bt-eval -q --json "$FIX/fm.btc" "$FIX/fm.btr" > e.json
	want=$(/usr/bin/python3 -c 'import json; j = json.load(open("e.json")); print("top-1 %.4f  top-5 %.4f  loss %.4f  (%d images)" % (j["top1"], j["top5"], j["loss"], j["images"]))')
	[ "${lines[2]}" = "$want" ]
}

@test "--json: one object with exactly the documented fields" {
	run bt-eval -q --json "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 1 ]
	echo "$output" > e.json
	/usr/bin/python3 - "$FIX" <<-'EOF'
	import json, sys
	j = json.load(open("e.json"))
	assert sorted(j) == sorted(["checkpoint", "data", "images", "top1", "top5", "topk", "loss", "seconds"]), j
	assert j["checkpoint"] == sys.argv[1] + "/fm.btc" and j["data"] == sys.argv[1] + "/fm.btr"
	assert j["images"] == 100 and j["topk"] == 5
	assert 0 <= j["top1"] <= j["top5"] <= 1
	assert j["loss"] > 0 and j["seconds"] >= 0
	# 100 images: the accuracies are whole percentages
	assert abs(j["top1"] * 100 - round(j["top1"] * 100)) < 1e-9
	EOF
}

@test "--per-class: per_class in JSON and a table in text, adding up to the totals" {
	bt-eval -q --json --per-class "$FIX/fm.btc" "$FIX/fm.btr" > e.json
	/usr/bin/python3 - "$FMDIR/classes.txt" <<-'EOF'
	import json, sys
	names = open(sys.argv[1]).read().split("\n")[:10]
	j = json.load(open("e.json"))
	pc = j["per_class"]
	assert [c["class"] for c in pc] == names, pc
	assert sum(c["images"] for c in pc) == j["images"] == 100
	hits = sum(round(c["top1"] * c["images"]) for c in pc if c["images"])
	assert abs(hits / 100 - j["top1"]) < 1e-9, (hits, j["top1"])
	EOF
	run bt-eval -q --per-class "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 0 ]
	[ "${lines[3]}" = "class           images   top-1" ]
	[[ "${lines[4]}" =~ ^T-shirt/top\ +[0-9]+\ +[01]\.[0-9]{4}$ ]]
	[[ "${lines[13]}" =~ ^Ankle\ boot\ +[0-9]+\ +[01]\.[0-9]{4}$ ]]
	[ "${#lines[@]}" -eq 14 ]
}

@test "--predictions: header, one line per record in file order, ids and labels kept" {
	run bt-eval -q --predictions p.tsv "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 0 ]
	[ "$(wc -l < p.tsv)" -eq 101 ]
	[ "$(head -n 1 p.tsv)" = "$(printf 'id\tlabel\tpred1\tprob1\tpred2\tprob2\tpred3\tprob3\tpred4\tprob4\tpred5\tprob5')" ]
	# id and label of each line are those of the record, in order (btrdump reads them).
	$BTRDUMP "$FIX/fm.btr" | awk '/^[0-9]/ { split($4, l, "="); split($5, i, "="); print i[2] "\t" l[2] }' > want
	tail -n +2 p.tsv | cut -f 1,2 > got
	diff want got
	# predictions are distinct classes with falling probabilities that sum to at most 1
	awk -F '\t' 'NR > 1 {
		if (NF != 12) exit 1
		s = 0
		for (k = 3; k <= 11; k += 2) {
			if ($k !~ /^[0-9]$/) exit 2
			if (k > 3 && $(k + 1) > $(k - 1)) exit 3
			for (m = 3; m < k; m += 2) if ($m == $k) exit 4
			s += $(k + 1)
		}
		if (s > 1.00001) exit 5
	}' p.tsv
	# --logits adds the column, 10 comma-separated numbers, and changes nothing else
	bt-eval -q --predictions pl.tsv --logits "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$(head -n 1 pl.tsv)" = "$(head -n 1 p.tsv)$(printf '\tlogits')" ]
	diff <(cut -f 1-12 pl.tsv | tail -n +2) <(tail -n +2 p.tsv)
	[ "$(tail -n +2 pl.tsv | cut -f 13 | awk -F , 'NF != 10' | wc -l)" -eq 0 ]
	bt-eval -q --json --predictions p2.tsv --logits "$FIX/fm.btc" "$FIX/fm.btr" > e.json
	$EVALREF consistency e.json p2.tsv
}

@test "--confusion: class names around counts that add up to the totals" {
	bt-eval -q --json --per-class --confusion c.csv "$FIX/fm.btc" "$FIX/fm.btr" > e.json
	[ "$(wc -l < c.csv)" -eq 11 ]
	[ "$(head -n 1 c.csv)" = 'true\pred,T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot' ]
	/usr/bin/python3 - <<-'EOF'
	import csv, json
	j = json.load(open("e.json"))
	rows = list(csv.reader(open("c.csv")))
	names = rows[0][1:]
	m = [[int(v) for v in r[1:]] for r in rows[1:]]
	assert [r[0] for r in rows[1:]] == names
	assert sum(map(sum, m)) == j["images"] == 100
	for i, c in enumerate(j["per_class"]):
	    assert sum(m[i]) == c["images"], (i, m[i], c)
	assert sum(m[i][i] for i in range(10)) == round(j["top1"] * 100)
	EOF
	# The diagonal and columns agree with --predictions' pred1.
	bt-eval -q --predictions p.tsv "$FIX/fm.btc" "$FIX/fm.btr"
	/usr/bin/python3 - <<-'EOF'
	import csv
	m = [[int(v) for v in r[1:]] for r in list(csv.reader(open("c.csv")))[1:]]
	want = [[0] * 10 for _ in range(10)]
	for line in open("p.tsv").read().splitlines()[1:]:
	    f = line.split("\t")
	    want[int(f[1])][int(f[2])] += 1
	assert m == want, (m, want)
	EOF
}

@test "--confusion quotes class names that need it; no names: the data's, then numbers" {
	printf 'plain\nwith,comma\nwith "quote"\n' > names.txt
	for i in 3 4 5 6 7 8 9; do echo "c$i" >> names.txt; done
	mkckpt --classes 10 --in-channels 1 --input-size 28 --class-names names.txt cifar_resnet20_v1 q.btc
	bt-eval -q --confusion c.csv q.btc "$FIX/fm.btr" 2>/dev/null
	[ "$(head -n 1 c.csv)" = 'true\pred,plain,"with,comma","with ""quote""",c3,c4,c5,c6,c7,c8,c9' ]
	[[ "$(sed -n 3p c.csv)" == '"with,comma",'* ]]
	# Names that differ from the data's are worth a warning, not a failure.
	run bt-eval -q q.btc "$FIX/fm.btr"
	[ "$status" -eq 0 ]
	[[ "$output" == *"warning: class 0 is 'T-shirt/top' in $FIX/fm.btr but 'plain' in the checkpoint"* ]]
	mkckpt --classes 10 --in-channels 1 --input-size 28 --no-class-names cifar_resnet20_v1 n.btc
	bt-eval -q --confusion c.csv n.btc "$FIX/fm.btr"
	[[ "$(head -n 1 c.csv)" == 'true\pred,T-shirt/top,Trouser,'* ]]
	mkdata idx im lb 12 28 28
	bt-prep -q -o nonames.btr --labels lb im
	bt-eval -q --confusion c.csv n.btc nonames.btr
	[ "$(head -n 1 c.csv)" = 'true\pred,0,1,2,3,4,5,6,7,8,9' ]
}

@test "--top 1, and --top above the number of classes is lowered to it" {
	run bt-eval -q --json --top 1 --predictions p.tsv "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 0 ]
	echo "$output" > e.json
	[ "$(jget e.json topk)" = 1 ]
	[ "$(head -n 1 p.tsv)" = "$(printf 'id\tlabel\tpred1\tprob1')" ]
	# top-1 is the share of lines whose pred1 is the label
	hits=$(awk -F '\t' 'NR > 1 && $2 == $3' p.tsv | wc -l)
	/usr/bin/python3 -c "import json; assert abs(json.load(open('e.json'))['top1'] - $hits / 100) < 1e-9"
	run bt-eval -q --top 50 "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 0 ]
	[[ "${lines[2]}" == *"top-10 1.0000"* ]]
	bt-eval -q --json --top 50 "$FIX/fm.btc" "$FIX/fm.btr" > e.json
	[ "$(jget e.json topk)" = 10 ]
	[ "$(jget e.json top10)" = 1.0 ]
}

@test "figures do not depend on the batch size, the threads or reading from a pipe" {
	bt-eval -q --json --predictions a.tsv "$FIX/fm.btc" "$FIX/fm.btr" > a.json
	bt-eval -q --json --batch-size 7 -j 1 --predictions b.tsv "$FIX/fm.btc" "$FIX/fm.btr" > b.json
	bt-eval -q --predictions c.tsv "$FIX/fm.btc" - < "$FIX/fm.btr" > c.txt
	bt-eval -q "$FIX/fm.btc" "$FIX/fm.btr" > a.txt
	# Reading a pipe changes nothing but the name.
	diff <(sed 1,2d a.txt) <(sed 1,2d c.txt)
	[ "$(sed -n 2p c.txt)" = "data       -" ]
	cmp a.tsv c.tsv
	# Another batch size and thread count may round differently in the last digits, no more.
	[ "$(jget a.json top1)" = "$(jget b.json top1)" ]
	[ "$(jget a.json top5)" = "$(jget b.json top5)" ]
	/usr/bin/python3 -c "assert abs($(jget a.json loss) - $(jget b.json loss)) < 1e-5"
	paste a.tsv b.tsv | awk -F '\t' 'NR > 1 { for (k = 1; k <= 12; k++) {
		d = $k - $(k + 12); if (d < 0) d = -d; if (d > 1e-4) exit 1 } }'
}

@test "--input-size, --crop-ratio and --resize change the evaluation view" {
	bt-eval -q --json "$FIX/fm.btc" "$FIX/fm.btr" > base.json
	for opts in "--input-size 24" "--crop-ratio 0.875" "--resize 32" "--input-size 36 --crop-ratio 0.9"; do
		run bt-eval -q --json $opts "$FIX/fm.btc" "$FIX/fm.btr"
		[ "$status" -eq 0 ] || { echo "$opts: $output"; return 1; }
		echo "$output" > o.json
		[ "$(jget o.json loss)" != "$(jget base.json loss)" ] || { echo "$opts changed nothing"; return 1; }
	done
	# --resize 28 at the checkpoint's size 28 is the checkpoint's own view (crop ratio 1).
	bt-eval -q --json --resize 28 "$FIX/fm.btc" "$FIX/fm.btr" > o.json
	[ "$(jget o.json loss)" = "$(jget base.json loss)" ]
	# --crop-ratio 1 at a new size: resize straight to it.
	run bt-eval -q --input-size 2 "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 0 ]
}

@test "a truncated checkpoint is refused with one line naming it, at any length" {
	size=$(stat -c %s "$FIX/small.btc")
	for n in 0 7 31 32 63 64 100 4096 $((size / 2)) $((size - 64)) $((size - 1)); do
		head -c $n "$FIX/small.btc" > t.btc
		run bt-eval -q t.btc "$FIX/small.btr"
		[ "$status" -eq 1 ] || { echo "$n bytes: exit $status: $output"; return 1; }
		[ "${#lines[@]}" -eq 1 ] || { echo "$n bytes: $output"; return 1; }
		[[ "$output" == "bt-eval: t.btc: "* ]] || { echo "$n bytes: $output"; return 1; }
	done
}

@test "a bit flipped anywhere in a checkpoint is refused with one line" {
	size=$(stat -c %s "$FIX/small.btc")
	for off in 0 9 13 17 25 29 40 64 70 90 $((size / 3)) $((size / 2)) $((size - 1)); do
		cp "$FIX/small.btc" f.btc
		/usr/bin/python3 -c "
import sys
f = open('f.btc', 'r+b'); f.seek($off); b = f.read(1); f.seek($off); f.write(bytes([b[0] ^ 0x10]))"
		run bt-eval -q f.btc "$FIX/small.btr"
		[ "$status" -eq 1 ] || { echo "offset $off: exit $status: $output"; return 1; }
		[ "${#lines[@]}" -eq 1 ] || { echo "offset $off: $output"; return 1; }
		[[ "$output" == "bt-eval: f.btc: "* ]] || { echo "offset $off: $output"; return 1; }
	done
}

@test "foreign files, a missing checkpoint and a directory are refused with one line" {
	run bt-eval -q "$FIX/small.btr" "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "bt-eval: $FIX/small.btr: "* ]]
	head -c 10000 /dev/urandom > r.btc
	run bt-eval -q r.btc "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	run bt-eval -q missing.btc "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[[ "$output" == *"missing.btc"*"No such file or directory"* ]]
	mkdir d.btc
	run bt-eval -q d.btc "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
}

# setspec IN OUT KEY VALUE: IN with the SPEC value of KEY replaced by one of the same
# length, the section's CRC recomputed: a well-formed checkpoint that lies about its model.
setspec() {
	/usr/bin/python3 - "$@" <<-'EOF'
	import struct, sys, zlib
	src, dst, key, value = sys.argv[1:]
	d = bytearray(open(src, "rb").read())
	assert d[64:68] == b"SPEC"
	(n,) = struct.unpack_from("<Q", d, 72)
	lines = bytes(d[80:80 + n]).decode().split("\n")
	old = [l for l in lines if l.startswith(key + "=")][0]
	new = key + "=" + value
	assert len(new) == len(old), (old, new)
	text = "\n".join(new if l == old else l for l in lines).encode()
	d[80:80 + n] = text
	struct.pack_into("<I", d, 68, zlib.crc32(text))
	open(dst, "wb").write(bytes(d))
	EOF
}

@test "a checkpoint whose tensors do not fit the model its SPEC names is refused" {
	setspec "$FIX/small.btc" k.btc classes 12
	run bt-eval -q k.btc "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "bt-eval: k.btc: "*"fc.weight"* ]]
	setspec "$FIX/small.btc" m.btc model cifar_resnet56_v1
	run bt-eval -q m.btc "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "bt-eval: m.btc: "*"layer1.3"* ]]
	setspec "$FIX/small.btc" u.btc model cifar_resnet99_v1
	run bt-eval -q u.btc "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-eval: u.btc: unknown model 'cifar_resnet99_v1'"* ]]
	setspec "$FIX/small.btc" c.btc in_channels 3
	run bt-eval -q c.btc "$FIX/small.btr"
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-eval: c.btc: "*"conv1.weight"* ]]
}

@test "records whose channels do not match the model's are refused" {
	mkdata cifar c.bin 6
	bt-prep -q -o rgb.btr c.bin
	run bt-eval -q --predictions p.tsv "$FIX/fm.btc" rgb.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-eval: rgb.btr: record 0 has 3 channels, but the model in $FIX/fm.btc takes 1" ]
	assert_no_output p.tsv
	# and the other way round
	mkckpt --classes 10 --in-channels 3 --input-size 28 cifar_resnet20_v1 rgb.btc
	run bt-eval -q rgb.btc "$FIX/fm.btr"
	[ "$status" -eq 1 ]
	[[ "$output" == *"record 0 has 1 channel, but the model in rgb.btc takes 3" ]]
}

@test "unlabelled records and labels beyond the classes are refused, naming the record" {
	$EVALREF setlabel "$FIX/fm.btr" u.btr 37 -1
	run bt-eval -q --predictions p.tsv --confusion c.csv "$FIX/fm.btc" u.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-eval: u.btr: record 37 has no label; bt-eval scores labelled records only" ]
	assert_no_output p.tsv
	assert_no_output c.csv
	$EVALREF setlabel "$FIX/fm.btr" big.btr 70 10
	run bt-eval -q "$FIX/fm.btc" big.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-eval: big.btr: record 70 has label 10, but the model has 10 classes (0 to 9)" ]
	mkckpt --classes 5 --in-channels 1 --input-size 28 cifar_resnet20_v1 five.btc
	run bt-eval -q five.btc "$FIX/fm.btr"
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-eval: $FIX/fm.btr: record "*" has label "*", but the model has 5 classes (0 to 4)" ]]
}

@test "a missing or damaged DATA is an error naming it, and leaves no outputs" {
	run bt-eval -q --predictions p.tsv "$FIX/fm.btc" nope.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-eval: cannot open 'nope.btr': No such file or directory" ]
	assert_no_output p.tsv
	head -c 20000 "$FIX/fm.btr" > cut.btr
	run bt-eval -q --confusion c.csv "$FIX/fm.btc" cut.btr
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-eval: "*"cut.btr"* ]]
	assert_no_output c.csv
	: > empty.btr
	run bt-eval -q "$FIX/fm.btc" empty.btr
	[ "$status" -eq 1 ]
	[[ "$output" == *"empty.btr"* ]]
	# An output that cannot be created fails before the work.
	run bt-eval -q --predictions no/such/dir/p.tsv "$FIX/fm.btc" "$FIX/fm.btr"
	[ "$status" -eq 1 ]
	[[ "$output" == *"cannot create 'no/such/dir/p.tsv'"* ]]
}

@test "a checkpoint written with optimizer state scores as one without" {
	mkckpt --classes 10 --in-channels 1 --input-size 28 --crop-ratio 1 --mean 72.94 --std 90.02 \
		--perturb 0.5 --seed 5 --class-names "$FMDIR/classes.txt" cifar_resnet20_v1 nomom.btc
	[ "$(stat -c %s nomom.btc)" -lt "$(stat -c %s "$FIX/fm.btc")" ]
	bt-eval -q --predictions a.tsv --logits nomom.btc "$FIX/fm.btr" > a.txt
	bt-eval -q --predictions b.tsv --logits "$FIX/fm.btc" "$FIX/fm.btr" > b.txt
	cmp a.tsv b.tsv
	diff <(sed 1d a.txt) <(sed 1d b.txt)
}

# The bt-eval EXAMPLES lines of the man page, with \- and \e undone.
man_examples() {
	awk '/^\.Sh EXAMPLES/ { e = 1; next } /^\.Sh/ { e = 0 } !e { next }
		/^\.Bd -literal/ { lit = 1; next } /^\.Ed/ { lit = 0; next }
		lit { print; next } /^\.Dl / { sub(/^\.Dl /, ""); print }' "$TOP/man/man1/bt-eval.1" |
		sed 's/\\-/-/g; s/\\e/\\/g'
}

@test "the man page's loop over epoch checkpoints works" {
	loop=$(man_examples | grep '^for c in run/epoch-\*\.btc')
	[ -n "$loop" ]
	mkdir run
	cp "$FIX/fm.btr" val.btr
	for s in 1 2 3; do
		mkckpt --classes 10 --in-channels 1 --input-size 28 --seed $s cifar_resnet20_v1 run/epoch-000$s.btc
	done
	run bash -c "$loop"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^top-1 ' <<<"$output")" -eq 3 ]
	[[ "$output" == *"checkpoint run/epoch-0001.btc "*"checkpoint run/epoch-0003.btc "* ]]
	# each line of figures is that checkpoint's own
	[ "$(grep '^top-1 ' <<<"$output" | sort -u | wc -l)" -eq 3 ]
}

@test "every EXAMPLES line of the man page runs (the fixtures of tools.bats)" {
	make_folder images 3 cat dog
	bt-prep -q -o train.btr images/
	while IFS= read -r cmd; do
		[ -n "$cmd" ] || continue
		run bash -o pipefail -c "$cmd"
		[ "$status" -eq 0 ] || { echo "'$cmd' exited $status: $output"; return 1; }
	done < <(man_examples)
	[ -s confusion.csv ] && [ -s pred.tsv ]
}

@test "bt-train's validation figures are what bt-eval finds in its checkpoint" {
	run bt-train -q --model cifar_resnet20_v1 --train "$FIX/fm.btr" --val "$FIX/fm.btr" \
		--input-size 28 --batch-size 20 --num-epochs 1 -j 2 -o run
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	bt-eval -q --json run/last.btc "$FIX/fm.btr" > e.json
	/usr/bin/python3 - <<-'EOF'
	import json
	e = json.load(open("e.json"))
	m = [json.loads(l) for l in open("run/metrics.jsonl") if '"epoch"' in l]
	m = [x for x in m if x.get("type") == "epoch"][-1]
	assert abs(m["val_top1"] - e["top1"]) < 1e-6, (m, e)
	assert abs(m["val_top5"] - e["top5"]) < 1e-6, (m, e)
	assert abs(m["val_loss"] - e["loss"]) <= 1e-4 * max(1, abs(e["loss"])), (m, e)
	EOF
}

@test "the man page's SYNOPSIS and --help name the same options; mandoc lint is clean" {
	page="$TOP/man/man1/bt-eval.1"
	syn=$(awk '/^\.Sh SYNOPSIS/{s=1;next} /^\.Sh/{s=0} !s{next}
		{ for (i = 1; i <= NF; i++) if ($i == "Fl" || $i == ".Fl") {
			for (j = i + 1; j <= NF && $j !~ /^[A-Z][a-z]$/; j++) if ($j != "|") print "-" $j
		} }' "$page" | sort -u)
	help=$(bt-eval --help | grep -oE -- '(^|[ [|])--?[a-zA-Z][-a-zA-Z0-9]*' | sed 's/^[ [|]//' | sort -u)
	usage=$(bt-eval --help | awk '/^$/{exit} 1' | grep -oE -- '(^|[ [|])--?[a-zA-Z][-a-zA-Z0-9]*' | sed 's/^[ [|]//' | sort -u)
	[ -n "$syn" ]
	for o in $syn; do
		grep -qx -- "$o" <<<"$help" || { echo "$o in the man page, not in --help"; return 1; }
	done
	for o in $usage; do
		grep -qx -- "$o" <<<"$syn" || { echo "$o in the usage, not in the man SYNOPSIS"; return 1; }
	done
	# every option of --help is described in the man page
	for o in $help; do
		grep -q -- "^\.It Fl ${o#-}\|Fl ${o#-} \|Fl ${o#-}$" "$page" || { echo "$o not in the man page"; return 1; }
	done
	command -v mandoc >/dev/null || skip "mandoc is not installed"
	run mandoc -T lint -W warning "$page"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "the bash completion offers options, checkpoints first and record files second" {
	touch a.btc b.btr c.csv
	comp() {
		bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
			fn=$(complete -p bt-eval | sed -n "s/.*-F \([^ ]*\).*/\1/p"); $fn bt-eval "${COMP_WORDS[COMP_CWORD]}" ""
			printf "%s\n" "${COMPREPLY[@]}"' _ "$TOP/completions/bash/bt-eval" "$@"
	}
	run comp bt-eval --he
	[ "$output" = "--help" ]
	run comp bt-eval --per
	[ "$output" = "--per-class" ]
	run comp bt-eval ""
	[[ "$output" == *"a.btc"* && "$output" != *"b.btr"* ]]
	run comp bt-eval a.btc ""
	[[ "$output" == *"b.btr"* && "$output" != *"a.btc"* ]]
	run comp bt-eval --top 3 a.btc ""
	[[ "$output" == *"b.btr"* ]]
	run comp bt-eval --confusion ""
	[[ "$output" == *"c.csv"* && "$output" != *"b.btr"* ]]
}
