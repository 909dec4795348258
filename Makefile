# butterfly -- set-up, build, test, demo, benchmarks.
# `make test` and `make demo` work on a fresh Debian machine: they install the system
# packages (apt, as root), make a virtual environment in .venv, install the Python packages,
# build the extension in place and run.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
APT_PKGS := libzmq3-dev libmsgpack-dev libzstd-dev ocl-icd-opencl-dev opencl-headers \
            pocl-opencl-icd clinfo dataset-fashion-mnist clang libclang-rt-14-dev \
            iproute2 zlib1g-dev
DNNL_LIB = $(shell $(VPY) -c 'import sys; print(sys.prefix)')/lib
CFLAGS_C := -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers -fopenmp -g

.PHONY: all install apt venv build test test-py test-c test-c-asan fuzz demo bench notebooks clean check-install \
        check-cli

all: build

install: apt venv build

apt:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.stamp: requirements.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	touch $@

venv: $(VENV)/.stamp

CL_KERNELS_H := csrc/cl/generated/cl_kernels.h
$(CL_KERNELS_H): tools/embed_cl.py $(wildcard csrc/cl/kernels/*.cl)
	$(PYTHON) tools/embed_cl.py

# An editable install into the venv: it compiles the extension (from scratch, in a fresh
# build folder) and puts it in place, next to butterfly/*.py; the venv gets the `butterfly`
# command, and `import butterfly` from anywhere gets this working tree's package.
build: venv $(CL_KERNELS_H)
	$(PIP) install -q --no-deps --no-build-isolation -e .

# C-level tests of the public header, plain and under ASan + UBSan.
C_DIRS := core ops wire serve cl
C_SRCS = $(foreach d,$(C_DIRS),$(wildcard csrc/$(d)/*.c))
C_INC = -Icsrc/include -Icsrc -Icsrc/cl/generated -I$(VENV)/include
C_LIBS = -L$(DNNL_LIB) -Wl,-rpath,$(DNNL_LIB) -ldnnl -lzmq -lmsgpackc -lzstd -ldl -lm -lpthread
C_TESTS := test_core test_wire test_serve test_load test_cl

tests/c/build/%: tests/c/%.c tests/c/serve_common.h $(C_SRCS) csrc/include/butterfly.h $(CL_KERNELS_H) | venv
	@mkdir -p tests/c/build
	cc $(CFLAGS_C) -O1 $(C_INC) -o $@ $< $(C_SRCS) $(C_LIBS)

tests/c/build/asan_%: tests/c/%.c tests/c/serve_common.h $(C_SRCS) csrc/include/butterfly.h $(CL_KERNELS_H) | venv
	@mkdir -p tests/c/build
	cc $(CFLAGS_C) -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -fno-omit-frame-pointer $(C_INC) -o $@ $< $(C_SRCS) $(C_LIBS)

test-c: $(addprefix tests/c/build/,$(C_TESTS))
	@for t in $^; do echo "== $$t"; ./$$t || exit 1; done

test-c-asan: $(addprefix tests/c/build/asan_,$(C_TESTS))
	@for t in $^; do echo "== $$t (ASan+UBSan)"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 LSAN_OPTIONS=suppressions=tests/c/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1 ./$$t || exit 1; done

# BF_REQUIRE_ALL=1: a test skipped for a missing dependency, OpenCL device or data set fails
# (tests/conftest.py); skips this machine cannot help (no root, no real-time) stay skips.
test-py: build
	BF_REQUIRE_ALL=1 $(VPY) -m pytest -q tests

# The wire decoder under libFuzzer (ASan + UBSan) for a bounded time, from the seed corpus.
FUZZ_SECONDS ?= 60
fuzz: apt
	tests/fuzz/run.sh $(FUZZ_SECONDS)

test: apt build test-c test-c-asan fuzz check-cli check-install test-py

# The venv's `butterfly` command runs, and `import butterfly` outside the repository gets
# this working tree's package (what `make build` installs).
check-cli: build
	$(VENV)/bin/butterfly --help >/dev/null
	cd / && $(abspath $(VPY)) -c 'import os, butterfly; d = os.path.dirname(butterfly.__file__); \
	  assert os.path.samefile(d, "$(CURDIR)/butterfly"), f"butterfly imports from {d}"'
	@echo "check-cli: $(VENV)/bin/butterfly runs, butterfly imports from $(CURDIR)"

# A plain (non-editable) install into a fresh venv: the package, its subpackages, the
# extension and the command.
check-install: apt
	d=$$(mktemp -d); $(PYTHON) -m venv $$d/v && $$d/v/bin/pip install -q . && \
	  (cd $$d && v/bin/butterfly --help >/dev/null && v/bin/python -c 'import numpy as np, butterfly as bf; \
  net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8); \
  print("installed", bf.__file__, net.forward(np.zeros((1, 1, 28, 28), np.float32)).shape)'); \
  rc=$$?; rm -rf $$d; exit $$rc

demo: apt build
	$(VPY) -m butterfly.cli demo

bench: apt build
	$(PIP) install -q torch==2.13.0 onnx onnxruntime pyzmq
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

# Re-executes the notebooks with full parameters (outputs and figures are committed).
notebooks: build
	$(VPY) notebooks/make_notebooks.py --execute

clean:
	rm -rf build tests/c/build tests/fuzz/build butterfly/*.so
