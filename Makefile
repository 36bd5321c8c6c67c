# bt: one plain Makefile. `make` builds lib/libbt.a and every tool into bin/; `make check`
# runs the C unit tests and the Bats tests; `make demo` runs the main job on the bundled
# data; `make install` honours PREFIX and DESTDIR. It detects CUDA (nvcc), cuDNN, NCCL,
# oneDNN and MPI, prints what it found, and builds what it can; `make CUDA=0` forces a
# CPU-only build.
#
# oneDNN (Debian's libdnnl-dev) is required: the CPU backend's convolutions, batch norm,
# pooling and inner products run through it; .ci/deps.sh installs it.
#
# The CUDA backend (lib/cuda/backend.cu, kernels.cu) needs nvcc and cuDNN; without cuDNN,
# or with CUDA=0, bt_backend_cuda says so at run time. cuDNN and cuBLAS link as shared
# libraries (too large to link statically), the CUDA runtime statically.
#
# Adding a source file to the library: LIB_SRCS (or CUDA_SRCS for .cu). A tool: TOOLS.
# A unit test: UNIT_TESTS. See docs/DESIGN.md for the full checklists.

PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
DATADIR = $(PREFIX)/share/bt
BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions

CC ?= cc
CFLAGS ?= -O2 -g
# -ffp-contract=off: no fused multiply-adds behind the code's back (GNU C's default allows
# them wherever -march gives FMA), so host results keep the rounding the GPU's _rn kernels
# and the bit-exact tests expect whatever CFLAGS adds.
BT_CFLAGS = -std=gnu11 -Wall -Wextra -pthread -fopenmp -ffp-contract=off -Ilib -Icmd
LDLIBS = -ldnnl -ljpeg -lpng16 -lz -lm -fopenmp -pthread

# ---- detection ------------------------------------------------------------------------
CUDA ?= auto
ifeq ($(CUDA),0)
NVCC :=
else
NVCC ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifneq ($(NVCC),)
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O2 -g
HAVE_CUDNN := $(if $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h),yes,no)
HAVE_NCCL := $(if $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),yes,no)
CUDA_VERSION := $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt
ifeq ($(HAVE_CUDNN),yes)
# cuDNN and cuBLAS are not linked: lib/cuda/dl.cu loads them when a CUDA backend is made
# (lib/cuda/dl.h says why). libstdc++: nvcc's kernel launch stubs use guarded statics.
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -lcudart_static -lstdc++ -ldl -lrt -lpthread
endif
else
HAVE_CUDNN := no
HAVE_NCCL := no
endif
HAVE_ONEDNN := $(if $(wildcard /usr/include/oneapi/dnnl/dnnl.h),yes,no)
HAVE_MPI := $(if $(shell command -v mpicc 2>/dev/null),yes,no)

ifeq ($(filter clean distclean,$(MAKECMDGOALS)),)
ifeq ($(MAKELEVEL),0)
$(info bt: CUDA $(if $(NVCC),yes ($(CUDA_VERSION), $(NVCC), sm_90 + PTX),no$(if $(filter 0,$(CUDA)), (CUDA=0),))  cuDNN $(HAVE_CUDNN)  NCCL $(HAVE_NCCL)  oneDNN $(HAVE_ONEDNN)  MPI $(HAVE_MPI))
endif
endif

# ---- sources --------------------------------------------------------------------------
LIB_SRCS = lib/status.c lib/record.c lib/outfile.c lib/image.c lib/source.c lib/source_mxnet.c \
	lib/source_idx.c lib/prep.c lib/augment.c lib/loader.c lib/graph.c \
	lib/zoo.c lib/cpu.c lib/cpu_backend.c lib/run.c lib/train.c \
	lib/checkpoint.c lib/ckpt_model.c lib/backend_open.c lib/desc.c lib/mixed.c
ifneq ($(NVCC),)
CUDA_SRCS = lib/cuda/device.cu
ifeq ($(HAVE_CUDNN),yes)
CUDA_SRCS += lib/cuda/backend.cu lib/cuda/kernels.cu lib/cuda/dl.cu
else
LIB_SRCS += lib/cuda/backend_nocudnn.c
endif
else
LIB_SRCS += lib/device_nocuda.c
endif
LIB_OBJS = $(LIB_SRCS:.c=.o) $(CUDA_SRCS:.cu=.o)
LIB_HDRS = $(wildcard lib/*.h lib/cuda/*.h)

TOOLS = bt-prep bt-info bt-aug bt-train bt-eval
TOOL_BINS = $(TOOLS:%=bin/%)
TOOL_COMMON = cmd/tool.o

UNIT_TESTS = tests/unit/test_record tests/unit/test_image tests/unit/test_source \
	tests/unit/test_augment tests/unit/test_loader tests/unit/test_graph \
	tests/unit/test_zoo tests/unit/test_cpu tests/unit/test_run tests/unit/test_train \
	tests/unit/test_checkpoint tests/unit/test_mixed tests/unit/test_input
TEST_GEN = tests/gen/mkimg tests/gen/mkdata tests/gen/mkckpt
# CPU against CUDA, op by op and over training runs; without a device it says so and passes.
# With --cpu, the CPU backend's bfloat16 against its float32 (check-unit runs it).
GPU_TESTS = tests/gpu/test_cuda

# ---- build ----------------------------------------------------------------------------
all: lib/libbt.a $(TOOL_BINS)

lib/libbt.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $(LIB_OBJS)

# The CPU backend's elementwise loops need the vectoriser's full cost model.
lib/cpu_backend.o: CFLAGS += -O3

lib/%.o: lib/%.c $(LIB_HDRS)
	$(CC) $(BT_CFLAGS) $(CFLAGS) -c $< -o $@

lib/cuda/%.o: lib/cuda/%.cu $(LIB_HDRS) $(wildcard lib/cuda/*.h)
	$(NVCC) $(CUDA_ARCH) $(NVCCFLAGS) -Xcompiler -Wall,-Wextra -c $< -o $@

cmd/%.o: cmd/%.c cmd/tool.h $(LIB_HDRS)
	$(CC) $(BT_CFLAGS) $(CFLAGS) -c $< -o $@

bin/%: cmd/%.o $(TOOL_COMMON) lib/libbt.a
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $< $(TOOL_COMMON) lib/libbt.a $(CUDA_LIBS) $(LDLIBS)

tests/unit/%: tests/unit/%.c tests/unit/test.h lib/libbt.a
	$(CC) $(BT_CFLAGS) $(CFLAGS) -o $@ $< lib/libbt.a $(CUDA_LIBS) $(LDLIBS)

tests/gen/%: tests/gen/%.c lib/libbt.a
	$(CC) $(BT_CFLAGS) $(CFLAGS) -o $@ $< lib/libbt.a $(CUDA_LIBS) $(LDLIBS)

tests/gpu/%: tests/gpu/%.c tests/unit/test.h lib/libbt.a
	$(CC) $(BT_CFLAGS) $(CFLAGS) -Itests/unit -o $@ $< lib/libbt.a $(CUDA_LIBS) $(LDLIBS)

# ---- tests ----------------------------------------------------------------------------
deps:
	@sh .ci/deps.sh

check:
	@sh .ci/deps.sh
	@$(MAKE) --no-print-directory all $(UNIT_TESTS) $(TEST_GEN) $(GPU_TESTS)
	@$(MAKE) --no-print-directory check-unit check-bats check-cuda

check-unit: $(UNIT_TESTS) $(GPU_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; ./$$t; done
	@echo "== tests/gpu/test_cuda --cpu (the CPU's bfloat16 against its float32)"; ./tests/gpu/test_cuda --cpu
	@echo "== tests/unit/test_record without PCLMULQDQ"; BT_NO_PCLMUL=1 ./tests/unit/test_record
	@echo "== tests/unit/test_record without VPCLMULQDQ"; BT_NO_VPCLMUL=1 ./tests/unit/test_record

check-bats: all $(TEST_GEN)
	bats tests/bats

# The CUDA parity test runs in `make check` too: it exits 0 after one "skip:" line when no
# device is visible.
check-cuda: $(GPU_TESTS)
	@echo "== tests/gpu/test_cuda"; ./tests/gpu/test_cuda

# GPU tests: they need a visible CUDA device and skip with a clear line without one.
check-gpu: all $(GPU_TESTS)
	bats tests/gpu

# Packs bin/ and the libraries a bare GPU machine lacks into tests/gpu/carry.tar.xz for
# tests/gpu/run.sh, the one script a device call runs.
gpu-prepare: all $(GPU_TESTS)
	sh tests/gpu/prepare.sh

demo:
	@sh .ci/deps.sh
	@$(MAKE) --no-print-directory all
	@sh share/demo.sh

bench: all
	@sh .ci/deps.sh --bench
	tests/bench/prep.sh
	tests/bench/aug.sh
	tests/bench/train-cpu.sh

# ---- install --------------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(DATADIR)
	install -m 755 $(TOOL_BINS) $(DESTDIR)$(BINDIR)
	install -m 644 man/man1/*.1 $(DESTDIR)$(MANDIR)/man1
	install -m 644 man/man5/*.5 $(DESTDIR)$(MANDIR)/man5
	install -m 644 man/man7/*.7 $(DESTDIR)$(MANDIR)/man7
	install -m 644 completions/bash/* $(DESTDIR)$(BASHCOMPDIR)
	cp -R share/. $(DESTDIR)$(DATADIR)/

uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(TOOLS:%=$(DESTDIR)$(BASHCOMPDIR)/%)
	rm -f $(TOOLS:%=$(DESTDIR)$(MANDIR)/man1/%.1) $(DESTDIR)$(MANDIR)/man5/bt-record.5 \
		$(DESTDIR)$(MANDIR)/man5/bt-checkpoint.5 \
		$(DESTDIR)$(MANDIR)/man7/bt.7
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -f lib/*.o lib/cuda/*.o cmd/*.o lib/libbt.a $(UNIT_TESTS) $(TEST_GEN) $(GPU_TESTS)
	rm -rf bin demo-out

.PHONY: all deps check check-unit check-bats check-cuda check-gpu gpu-prepare demo bench install uninstall clean
.SECONDARY:
