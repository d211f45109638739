# `make demo` and `make test` work on a fresh machine: they create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned: left to itself pip resolves a multi-GB CUDA build on CPU-only
# machines; on a CUDA machine the same pin takes the CUDA wheel from PyPI.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.mmtune-installed

.PHONY: demo test test-all lint bench-inspect clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[demo,vi,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mmtune demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not gpu"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench-inspect: $(STAMP)
	$(BIN)/python benchmarks/inspect_scale.py

clean:
	rm -rf $(VENV) demo-data build *.egg-info
