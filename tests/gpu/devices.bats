#!/usr/bin/env bats
# GPU tests (make check-gpu): they need a visible CUDA device and skip with a clear line
# without one. The CUDA backend's own test is cuda.bats.

load ../bats/helper

need_gpu() {
	if bt-info --devices | grep -q '^no CUDA device'; then
		skip "$(bt-info --devices)"
	fi
}

@test "bt-info --devices lists each visible GPU with memory, SMs and compute capability" {
	need_gpu
	run bt-info --devices
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" =~ ^cuda:0\ \ .+\ \ [0-9.]+\ GiB\ \ [0-9]+\ SMs\ \ compute\ [0-9]+\.[0-9]+$ ]]
	run bt-info --devices --json
	/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["devices"][0]["memory_bytes"] > 0' "$output"
}
