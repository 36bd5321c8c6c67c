#!/usr/bin/env bats
# bt-info: record file summaries as text and JSON, streams, damaged files, and devices.

load helper

GOLDEN="$TOP/tests/golden/v1.btr"

@test "text summary of the golden file" {
	run bt-info "$GOLDEN"
	[ "$status" -eq 0 ]
	want="file       $GOLDEN
records    2
bytes      234
footer     present
kinds      raw 1, f32 1
width      2..2
height     2..2
channels   1: 1
soft       1 records with soft labels
classes    2
class 0    cat  0
class 1    dog  1
unlabelled 1"
	[ "$output" = "$want" ]
}

@test "--json: one valid object per file with the documented keys" {
	make_folder imgs 2 a b
	bt-prep -q -o x.btr imgs
	run bt-info --json "$GOLDEN" x.btr
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 2 ]
	/usr/bin/python3 - "${lines[0]}" "${lines[1]}" <<-'EOF'
	import json, sys
	g, x = json.loads(sys.argv[1]), json.loads(sys.argv[2])
	assert g["records"] == 2 and g["bytes"] == 234 and g["footer"] is True, g
	assert g["kinds"] == {"raw": 1, "f32": 1}, g
	assert g["classes"] == [{"label": 0, "name": "cat", "count": 0},
	                        {"label": 1, "name": "dog", "count": 1}], g
	assert g["unlabelled"] == 1 and g["soft"] == 1, g
	assert x["kinds"] == {"jpeg": 4} and x["channels"] == {"3": 4}, x
	assert x["width"] == {"min": 48, "max": 56} and x["height"] == {"min": 34, "max": 38}, x
	assert [c["count"] for c in x["classes"]] == [2, 2], x
	EOF
}

@test "'-' reads a stream; a file cut at a record boundary has no footer" {
	run sh -c "cat '$GOLDEN' | bt-info -"
	[ "$status" -eq 0 ]
	[[ "$output" == *"records    2"* ]]
	[[ "$output" == *"footer     present"* ]]
	[[ "$output" == *"class 1    dog  1"* ]]
	head -c 88 "$GOLDEN" > cut.btr
	run bt-info cut.btr
	[ "$status" -eq 0 ]
	[[ "$output" == *"records    1"* ]]
	[[ "$output" == *"footer     absent"* ]]
}

@test "damaged files: the message names the record, exit 1" {
	cp "$GOLDEN" flip.btr
	printf '\x00' | dd of=flip.btr bs=1 seek=83 conv=notrunc status=none
	run bt-info flip.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-info: flip.btr: record 0 at offset 32: checksum mismatch" ]
	echo "just text" > text.btr
	run bt-info text.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-info: text.btr: not a bt record file (too short)" ]
	run bt-info missing.btr
	[ "$status" -eq 1 ]
	[ "$output" = "bt-info: cannot open 'missing.btr': No such file or directory" ]
	# the other files are still described
	run bt-info missing.btr "$GOLDEN"
	[ "$status" -eq 1 ]
	[[ "$output" == *"records    2"* ]]
}

@test "--devices: lists GPUs, or says why there are none, exit 0" {
	run bt-info --devices
	[ "$status" -eq 0 ]
	[[ "$output" == "no CUDA device: "* || "$output" == "cuda:0  "*" GiB  "*" SMs  compute "* ]]
	run bt-info --devices --json
	[ "$status" -eq 0 ]
	/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert isinstance(d["devices"], list); assert d["devices"] or d["reason"]' "$output"
	run bt-info --devices x.btr
	[ "$status" -eq 2 ]
}

@test "usage errors exit 2" {
	run bt-info
	[ "$status" -eq 2 ]
	run bt-info --bogus
	[ "$status" -eq 2 ]
}

@test "--model: layer table and counts of zoo models, JSON, unknown names" {
	run bt-info --model resnet50_v1
	[ "$status" -eq 0 ]
	[[ "$output" == *"parameters  25557032"* ]]
	[[ "${lines[1]}" == "0     input "*"224x224x3"* ]]
	run bt-info --model inceptionv3
	[[ "$output" == *"parameters  23834568"* ]]
	run bt-info --model inceptionv3 --aux
	[[ "$output" == *"parameters  27161264"* ]]
	run bt-info --model cifar_resnet20_v1 --in-channels 1 --input-size 28 --batch-size 4 --json
	[ "$status" -eq 0 ]
	/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["input"] == [28,28,1] and d["classes"] == 10 and d["parameters"] == 272186 and d["layers"][-1]["output"] == [1,1,10], d' "$output"
	run bt-info --model list
	[[ "${lines[*]}" == *"resnet152_v1d"*"mobilenet0.25"*"cifar_resnet110_v1"* ]]
	run bt-info --model resnet51
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-info: "*"resnet51"* ]]
	run bt-info --model inceptionv3 --input-size 64
	[ "$status" -eq 1 ]
	run bt-info --model resnet50_v1 --classes 1
	[ "$status" -eq 2 ]
}
