# Two entry points: `make demo` and `make test`. Both create .venv when missing and install smcflow
# and every in-tree plugin (editable) with the pinned versions in constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP := $(VENV)/.smcflow-installed
OUT ?= out/demo

.PHONY: demo test test-all bench install clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt $(wildcard plugins/*/pyproject.toml)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all]" $(foreach d,$(PLUGIN_DIRS),-e $(d))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/smcflow demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_bootstrap.py
	$(BIN)/python benchmarks/bench_scaling.py

clean:
	rm -rf $(VENV) out
