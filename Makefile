# One entry point for the README's two commands and CI. The venv lives in .venv; each install runs once and
# again only when pyproject.toml changes (stamp files in .venv), quietly.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check

.PHONY: run test test-slow mutation bench setup setup-test setup-notebooks figures notebooks results clean

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

test-slow: setup-test
	$(BIN)/python -m pytest -m "slow or benchmark"

# Mutation testing of the core modules (mutmut; slow, not in CI): results/mutation.json. tools/mutation.py says why
# mutmut, how the score is counted and lists the equivalent mutants.
mutation: setup-test
	$(BIN)/pip install -q --disable-pip-version-check "mutmut==3.8.1"
	$(BIN)/python -m tools.mutation

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
