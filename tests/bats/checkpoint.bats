#!/usr/bin/env bats
# The checkpoint format (.btc): its documentation, its golden file and an independent reader
# written from the documentation agree byte for byte; bt-info describes checkpoints as text
# and JSON and refuses damaged ones with one line and exit 1.

load helper

GOLDEN="$TOP/tests/golden/v1.btc"
BTCDUMP="/usr/bin/python3 $TOP/tests/bats/btcdump.py"
MKMODEL="$TOP/tests/unit/test_checkpoint"

# A complete cifar_resnet20_v1 checkpoint (10 classes, 28x28x1, with momentum) in $1.
model_ckpt() {
	[ -x "$MKMODEL" ] || skip "tests/unit/test_checkpoint is not built (make check builds it)"
	"$MKMODEL" --write-model "$1"
}

@test "the hex dump in bt-checkpoint(5) is exactly tests/golden/v1.btc" {
	/usr/bin/python3 - "$TOP/man/man5/bt-checkpoint.5" "$GOLDEN" <<-'EOF'
	import re, sys
	page = open(sys.argv[1]).read()
	dump = page.split("GOLDEN-HEXDUMP-BEGIN")[1].split("GOLDEN-HEXDUMP-END")[0]
	out = bytearray()
	for line in dump.splitlines():
	    m = re.match(r"^  ([0-9a-f]{4})  ((?:[0-9a-f]{2} ?)+)", line)
	    z = re.match(r"^  ([0-9a-f]{4})  \((\d+) zero bytes\)$", line)
	    c = re.match(r"^        ((?:[0-9a-f]{2} ?)+)$", line)
	    if m or z:
	        off = int((m or z).group(1), 16)
	        assert off == len(out), (line, len(out))
	        out += bytes.fromhex(m.group(2)) if m else bytes(int(z.group(2)))
	    elif c:
	        out += bytes.fromhex(c.group(1))
	golden = open(sys.argv[2], "rb").read()
	assert len(out) > 500, len(out)
	assert bytes(out) == golden, "man page dump differs from the golden file"
	EOF
}

@test "the header comment in lib/checkpoint.h shows the magic and tags the page documents" {
	for tag in SPEC CLAS STAT RCPE METR TDIR TDAT; do
		grep -q "\"$tag\"" "$TOP/lib/checkpoint.h"
		grep -q "^\.It $tag Ta" "$TOP/man/man5/bt-checkpoint.5"
	done
	grep -q "89 42 54 43 0D 0A 1A 0A" "$TOP/lib/checkpoint.h"
	grep -q "89 42 54 43 0D 0A 1A 0A" "$TOP/man/man5/bt-checkpoint.5"
}

@test "the independent reader (written from the man page) reads the golden file" {
	run $BTCDUMP "$GOLDEN"
	[ "$status" -eq 0 ]
	want='checkpoint version 1, 596 bytes, 7 sections
section SPEC 34
  model=tiny
  classes=2
  input_size=8
section CLAS 18
  cat
  dog
section STAT 32
  epoch=1
  iteration=10
  complete=0
section RCPE 20
  lr=0.1
  batch_size=4
section METR 38
  {"type":"epoch","epoch":0,"loss":0.5}
section TDIR 92
section TDAT 68
tensor fc.weight float32 2x3 24
tensor fc.bias float16 2 4'
	[ "$output" = "$want" ]
	run $BTCDUMP "$GOLDEN" --tensor fc.weight
	[ "$status" -eq 0 ]
	[ "$(echo $output)" = "0.5 -1 2 0.25 -0.125 3" ]
	run $BTCDUMP "$GOLDEN" --tensor fc.bias
	[ "$(echo $output)" = "1 -2" ]
}

@test "both readers refuse truncated and damaged copies of the golden file" {
	for n in 0 5 31 32 100 595; do
		head -c $n "$GOLDEN" > cut.btc
		run $BTCDUMP cut.btc
		[ "$status" -eq 1 ]
	done
	head -c 100 "$GOLDEN" > cut.btc
	run bt-info cut.btc
	[ "$status" -eq 1 ]
	[ "$output" = "bt-info: cut.btc: truncated: 100 bytes, the header says 596" ]
	# one byte of each section's payload, and of the file header
	for off in 20 85 150 210 270 340 400 530 594; do
		/usr/bin/python3 -c "import sys; d=bytearray(open(sys.argv[1],'rb').read()); d[$off]^=4; open('bad.btc','wb').write(d)" "$GOLDEN"
		run $BTCDUMP bad.btc
		[ "$status" -eq 1 ] || { echo "btcdump accepted a flip at $off"; return 1; }
		run bt-info bad.btc
		[ "$status" -eq 1 ] || { echo "bt-info accepted a flip at $off"; return 1; }
		[ "${#lines[@]}" -eq 1 ]
		[[ "$output" == "bt-info: bad.btc: "* ]]
	done
}

@test "bt-info: text summary of the golden checkpoint" {
	cp "$GOLDEN" g.btc
	run bt-info g.btc
	[ "$status" -eq 0 ]
	want='file       g.btc
format     bt-checkpoint, version 1
bytes      596
model      tiny
input      8x8
classes    2
class 0    cat
class 1    dog
epoch      1
iteration  10
complete   no
tensors    2 (0 momentum)
parameters 8
metrics    1 line
recipe     lr=0.1
recipe     batch_size=4'
	[ "$output" = "$want" ]
}

@test "bt-info --json: one object with the documented keys; records and checkpoints mix" {
	run bt-info --json "$GOLDEN" "$TOP/tests/golden/v1.btr"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 2 ]
	/usr/bin/python3 - "${lines[0]}" "${lines[1]}" <<-'EOF'
	import json, sys
	c, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
	assert c["format"] == "bt-checkpoint" and c["version"] == 1 and c["size"] == 596, c
	assert c["spec"] == {"model": "tiny", "classes": "2", "input_size": "8"}, c
	assert c["state"] == {"epoch": "1", "iteration": "10", "complete": "0"}, c
	assert c["recipe"] == {"lr": "0.1", "batch_size": "4"}, c
	assert c["classes"] == ["cat", "dog"], c
	assert c["tensors"] == [{"name": "fc.weight", "dtype": "float32", "shape": [2, 3]},
	                        {"name": "fc.bias", "dtype": "float16", "shape": [2]}], c
	assert c["metrics_lines"] == 1 and c["parameters"] == 8, c
	assert c["file"].endswith("v1.btc"), c
	assert r["records"] == 2, r
	EOF
}

@test "bt-info on a model checkpoint: state, recipe, parameters as --model counts them" {
	model_ckpt m.btc
	run bt-info m.btc
	[ "$status" -eq 0 ]
	[[ "$output" == *"model      cifar_resnet20_v1"* ]]
	[[ "$output" == *"input      28x28x1"* ]]
	[[ "$output" == *"class 9    nine"* ]]
	[[ "$output" == *"mean       33.3184013,33.3184013,33.3184013"* ]]
	[[ "$output" == *"epoch      2 of 2"* ]]
	[[ "$output" == *"complete   yes"* ]]
	[[ "$output" == *"best top-1 0.9731 (epoch 1)"* ]]
	[[ "$output" == *"metrics    2 lines"* ]]
	[[ "$output" == *"recipe     lr_mode=cosine"* ]]
	params=$(bt-info --model cifar_resnet20_v1 --in-channels 1 --input-size 28 | awk '$1 == "parameters" { print $2 }')
	[[ "$output" == *"parameters $params"* ]]
	# The same tensors, in the same order, for bt-info --json and the independent reader.
	bt-info --json m.btc > m.json
	$BTCDUMP m.btc > m.txt
	/usr/bin/python3 - m.json m.txt <<-'EOF'
	import json, sys
	j = json.load(open(sys.argv[1]))
	dump = [l.split() for l in open(sys.argv[2]) if l.startswith("tensor ")]
	assert len(dump) == len(j["tensors"]) > 100, (len(dump), len(j["tensors"]))
	for (_, name, dtype, shape, nbytes), t in zip(dump, j["tensors"]):
	    assert name == t["name"] and dtype == t["dtype"], (name, t)
	    assert shape == "x".join(map(str, t["shape"])), (shape, t)
	mom = [t for t in j["tensors"] if t["name"].startswith("momentum/")]
	assert len(mom) == 65 and {t["name"][9:] for t in mom} <= {t["name"] for t in j["tensors"]}
	assert j["spec"]["model"] == "cifar_resnet20_v1" and j["state"]["iteration"] == "600", j
	assert j["metrics_lines"] == 2 and len(j["classes"]) == 10, j
	EOF
}

@test "bt-info: a damaged model checkpoint names the tensor; the intact one still reads" {
	model_ckpt m.btc
	# Flip a byte inside the last tensor and repair the TDAT section's CRC, so that only
	# the tensor's own CRC can tell.
	/usr/bin/python3 - m.btc <<-'EOF'
	import struct, sys, zlib
	d = bytearray(open(sys.argv[1], "rb").read())
	pos = 32
	while True:
	    pos = (pos + 63) // 64 * 64
	    tag, crc, n = d[pos:pos + 4], *struct.unpack_from("<IQ", d, pos + 4)
	    if tag == b"TDAT":
	        break
	    pos += 16 + n
	d[-3] ^= 1
	struct.pack_into("<I", d, pos + 4, zlib.crc32(d[pos + 16:pos + 16 + n]))
	open("bad.btc", "wb").write(d)
	EOF
	run bt-info bad.btc
	[ "$status" -eq 1 ]
	[[ "$output" =~ ^bt-info:\ bad.btc:\ tensor\ \'momentum/.*\'\ fails\ its\ CRC\ check$ ]]
	run $BTCDUMP bad.btc
	[ "$status" -eq 1 ]
	run bt-info m.btc
	[ "$status" -eq 0 ]
}
