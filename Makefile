# One entry point for the README's two commands and CI. The venv lives in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-slow bench setup setup-test figures clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q -e .

setup-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

run: setup
	$(BIN)/python -m experiments.run

test: setup-test
	$(BIN)/python -m pytest -q

test-slow: setup-test
	$(BIN)/python -m pytest -m "slow or benchmark"

bench: setup
	$(BIN)/python -m sim.bench
	$(BIN)/python -m planners.bench

figures: setup
	$(BIN)/python -m experiments.figures

clean:
	rm -rf $(VENV) outputs multirun
