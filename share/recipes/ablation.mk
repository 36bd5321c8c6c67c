# ablation.mk: the paper's Table 6 on Fashion-MNIST (He et al. 2019, "training refinements"),
# with cifar_resnet20_v1 and bt-train + bt-eval: each row adds one trick to the row above,
#   baseline   step decay (x0.1 at 1/4, 1/2, 3/4 of the epochs: the paper's 30, 60, 90 of 120)
#   cosine     + cosine learning-rate decay
#   smoothing  + label smoothing
#   mixup      + mixup (= the benchmark recipe of fashion-mnist.mk)
# and prints each row's mean, spread and per-seed test top-1. Every row has the paper's
# Table 6 base, the efficient tricks of its section 3: warmup, no bias/BN decay, zero gamma.
# (The knowledge-distillation rows wait for bt-distill.)
#
#   make -f share/recipes/ablation.mk [SEEDS="0 1 2"] [EPOCHS=40] [OUT=dir]
#
# VERY LONG: 4 rows x 3 seeds = 12 trainings, ~30 minutes each at EPOCHS=40 on two cores,
# so ~6 hours; EPOCHS=10 takes ~1.5 hours (shorter runs favour the baseline: mixup pays late).
# Hyper-parameters and the data rules come from fashion-mnist.mk; results land in OUT.

OUT ?= recipes-out/fashion-mnist-ablation
include $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/fashion-mnist.mk
.DEFAULT_GOAL := ablation

ROWS = baseline cosine smoothing mixup
DECAY_EPOCHS = $(shell e=$(EPOCHS); echo $$((e / 4)),$$((e / 2)),$$((3 * e / 4)))
RECIPE_baseline  = $(COMMON) --lr-mode=step --lr-decay=0.1 --lr-decay-epoch=$(DECAY_EPOCHS)
RECIPE_cosine    = $(COMMON) --lr-mode=cosine
RECIPE_smoothing = $(RECIPE_cosine) --label-smoothing=$(SMOOTHING)
RECIPE_mixup     = $(RECIPE_smoothing) --mixup --mixup-alpha=$(MIXUP_ALPHA) \
	--mixup-off-epoch=$(MIXUP_OFF)

# The mixup row's recipe is the benchmark's, option for option (RECIPE_mixup and RECIPE hold
# the same options), so a finished fashion-mnist.mk run in BENCH_OUT with the same stamp, the
# same seed and the same packed data is that row's run: its bt-eval JSON is copied (it names
# the benchmark's checkpoint) instead of training the same network again for 30 minutes.
BENCH_OUT ?= recipes-out/fashion-mnist
bench_same = [ "$(abspath $(BENCH_OUT))" != "$(abspath $(OUT))" ] && \
	[ -f $(BENCH_OUT)/bt-seed$(1).json ] && [ -f $(BENCH_OUT)/bench.recipe ] && \
	[ $(BENCH_OUT)/bt-seed$(1).json -nt $(BENCH_OUT)/bench.recipe ] && \
	cmp -s $(BENCH_OUT)/bench.recipe $(OUT)/mixup.recipe && \
	cmp -s $(BENCH_OUT)/train.btr $(TRAIN) && cmp -s $(BENCH_OUT)/test.btr $(TEST)

# Seed by seed, so that an early look (or an interrupted make) has whole tables of fewer seeds.
ABLATION_RUNS = $(foreach s,$(SEEDS),$(foreach r,$(ROWS),$(OUT)/$(r)-seed$(s).json))

.PHONY: ablation
ablation: $(ABLATION_RUNS)
	@$(PYTHON) $(RECIPES)/summarise.py rows \
		$(foreach r,$(ROWS),--row $(r) $(foreach s,$(SEEDS),$(OUT)/$(r)-seed$(s).json)) \
		> $(OUT)/ablation.txt; rc=$$?; cat $(OUT)/ablation.txt; exit $$rc

# $(OUT)/ROW-seedS.json: bt-train with ROW's options and seed S, then bt-eval (bt_run);
# for the mixup row, the benchmark's run when bench_same says it is the same run.
define ablation_run
$(OUT)/$(1)-seed$(2).json: $(TRAIN) $(TEST) $(OUT)/$(1).recipe
	$$(call need,bt-train bt-eval)
	@if [ $(1) = mixup ] && $$(call bench_same,$(2)); then \
		echo "$(1) seed $(2): the benchmark's run $(BENCH_OUT)/bt-seed$(2) (same recipe and data)"; \
		cp $(BENCH_OUT)/bt-seed$(2).json $$@.tmp && mv -f $$@.tmp $$@; \
	else \
		$$(call bt_run,$(OUT)/$(1)-seed$(2),$(2),$$(RECIPE_$(1)),$(OUT)/$(1).recipe); \
	fi
endef
$(foreach r,$(ROWS),$(foreach s,$(SEEDS),$(eval $(call ablation_run,$(r),$(s)))))
