# One entry point for the README's two commands and CI. The venv lives in .venv; each install runs once and
# again only when pyproject.toml changes (stamp files in .venv), quietly.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check

.PHONY: run test test-unit test-integration test-slow bench setup setup-test setup-notebooks figures notebooks results clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[test]'
	touch $@

$(VENV)/.installed-notebooks: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[notebooks]'
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test
setup-notebooks: $(VENV)/.installed-notebooks

run: setup
	$(BIN)/python -m experiments.run

test: setup-test
	$(BIN)/python -m pytest -q

# The tiers of the default suite (tests/conftest.py): unit tests of one module's logic (<= 60 s on 2 cores), and
# integration tests that run the simulator or a command line end to end.
test-unit: setup-test
	$(BIN)/python -m pytest -q -m unit

test-integration: setup-test
	$(BIN)/python -m pytest -q -m "integration and not slow and not benchmark"

test-slow: setup-test
	$(BIN)/python -m pytest -m "slow or benchmark"

bench: setup
	$(BIN)/python -m sim.bench
	$(BIN)/python -m planners.bench

figures: setup
	$(BIN)/python -m experiments.figures

# Executes every notebook in place so that it is committed with its outputs (figures inline).
notebooks: setup-notebooks
	$(BIN)/python -m experiments.notebooks

# Every experiment -> raw runs in multirun/<name>/<stamp> -> tidy tables in results/ -> figures (docs/results.md).
# Raw runs are never deleted: each `make results` sweeps into a new timestamped folder and aggregates only that one;
# it overwrites the tidy tables results/<name>.csv (--force), which the sweep regenerates. The seconds of each step
# (wall and CPU) and the core count go to results/timings.json (experiments/make_results.py).
SWEEPS := slo_throughput ablation llama3 llama31 quality_shift node_failure drift
STAMP := $(shell date +%Y-%m-%d_%H-%M-%S)
results: setup
	$(BIN)/python -m experiments.make_results --sweeps $(SWEEPS) --stamp $(STAMP)

clean:
	rm -rf $(VENV) outputs multirun
