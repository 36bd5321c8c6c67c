#!/usr/bin/env bats
# bt-train: the benchmark mode on small models, and usage errors.

load helper

@test "--benchmark: key value lines, the last one the training images per second" {
	run bt-train --benchmark --model cifar_resnet20_v1 --in-channels 1 --input-size 28 \
		--batch-size 8 --steps 2 --warmup 1 -j 2
	[ "$status" -eq 0 ]
	[[ "$output" == *"oneDNN v"* ]]
	[[ "$output" == *"model       cifar_resnet20_v1"* ]]
	[[ "$output" == *"inference   "*" images/s"* ]]
	[[ "${lines[-1]}" =~ ^[0-9]+\.[0-9]$ ]]
	run bt-train --benchmark --model mobilenet0.25 --input-size 64 --batch-size 2 --steps 1 \
		--warmup 0 --no-inference --classes 7
	[ "$status" -eq 0 ]
	[[ "$output" != *"inference"* ]]
}

@test "errors: unknown model (1), no --benchmark or no --model (2)" {
	run bt-train --benchmark --model resnet51
	[ "$status" -eq 1 ]
	[[ "$output" == "bt-train: unknown model 'resnet51'"* ]]
	run bt-train --model cifar_resnet20_v1
	[ "$status" -eq 2 ]
	run bt-train --benchmark
	[ "$status" -eq 2 ]
	run bt-train --benchmark --model cifar_resnet20_v1 --batch-size 0
	[ "$status" -eq 2 ]
	run bt-train --benchmark --model inceptionv3 --input-size 40 --steps 1
	[ "$status" -eq 1 ]
}

@test "--profile: milliseconds per step by kind of layer, training and inference" {
	run bt-train --benchmark --model cifar_resnet20_v1 --batch-size 4 --steps 1 --warmup 0 --profile
	[ "$status" -eq 0 ]
	[[ "$output" == *"(training, ms per step)"* ]]
	[[ "$output" == *"(inference, ms per step)"* ]]
	[[ "$output" =~ conv2d\ +[0-9]+\.[0-9]+\ +[0-9]+\.[0-9]+ ]]
}
