#!/usr/bin/env bats
# The record format's documentation and its golden file agree, byte for byte.

load helper

@test "the hex dump in bt-record(5) is exactly tests/golden/v1.btr" {
	/usr/bin/python3 - "$TOP/man/man5/bt-record.5" "$TOP/tests/golden/v1.btr" <<-'EOF'
	import re, sys
	page = open(sys.argv[1]).read()
	dump = page.split("GOLDEN-HEXDUMP-BEGIN")[1].split("GOLDEN-HEXDUMP-END")[0]
	out, want_off = bytearray(), 0
	for line in dump.splitlines():
	    m = re.match(r"^  ([0-9a-f]{4})  ((?:[0-9a-f]{2} ?)+)", line)
	    c = re.match(r"^        ((?:[0-9a-f]{2} ?)+)$", line)
	    if m:
	        assert int(m.group(1), 16) == len(out), (line, len(out))
	        out += bytes.fromhex(m.group(2))
	    elif c:
	        out += bytes.fromhex(c.group(1))
	golden = open(sys.argv[2], "rb").read()
	assert bytes(out) == golden, "man page dump differs from the golden file"
	EOF
}

@test "the independent reader (written from the man page) reads the golden file" {
	run $BTRDUMP "$TOP/tests/golden/v1.btr"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "0 raw 2x2x1 label=1 id=7 soft=- sha=2ba62ec5f0ae" ]
	[ "${lines[1]}" = "1 f32 2 label=-1 id=8 soft=0.25,0.75 sha=40e7dbbaedc6" ]
	[ "${lines[2]}" = "classes: cat dog" ]
}
