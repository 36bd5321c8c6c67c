#!/usr/bin/env bats
# The CUDA backend against the CPU backend (tests/gpu/test_cuda.c): every op on random
# inputs, then one training step of a network with every op and 100 SGD steps of
# cifar_resnet20_v1. Skips, saying why, without a device or without the CUDA backend.

load ../bats/helper

@test "the CUDA backend matches the CPU backend op by op and over 100 SGD steps" {
	[ -x "$TOP/tests/gpu/test_cuda" ] || skip "tests/gpu/test_cuda is not built (make check-gpu builds it)"
	run "$TOP/tests/gpu/test_cuda"
	echo "$output"
	if [[ "${lines[0]}" == skip:* ]]; then
		skip "${lines[0]#skip: }"
	fi
	[ "$status" -eq 0 ]
	[[ "$output" == *" passed, 0 failed"* ]]
}
