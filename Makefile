# One entry point for the README's two commands and CI. The venv lives in .venv; each install runs once and
# again only when pyproject.toml changes (stamp files in .venv), quietly.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check

.PHONY: run test test-unit test-integration test-slow mutation mutation-full bench setup setup-test setup-notebooks figures notebooks results results-reasoning clean

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

# Mutation testing of the core modules (mutmut; slow, not in CI): results/mutation.json. tools/mutation.py says why
# mutmut, how the sample and the score are counted and lists the equivalent mutants. `make mutation` checks a seeded
# random sample of each module's mutants sized to fit 45 minutes on 2 cores; mutation-full checks all (hours).
MUTATION_CHILDREN ?= 2
mutation: setup-test
	$(BIN)/pip install -q --disable-pip-version-check "mutmut==3.8.1"
	$(BIN)/python -m tools.mutation --max-children $(MUTATION_CHILDREN)

mutation-full: setup-test
	$(BIN)/pip install -q --disable-pip-version-check "mutmut==3.8.1"
	$(BIN)/python -m tools.mutation --full --budget-s 36000 --max-children $(MUTATION_CHILDREN)

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
# Longest first (one lane per usable core, each sweep one process: experiments/make_results.py; ablation and
# disaggregation wait for slo_throughput)
SWEEPS := slo_throughput llama31 disaggregation llama3 drift quality_shift ablation node_failure
STAMP := $(shell date +%Y-%m-%d_%H-%M-%S)
results: setup
	$(BIN)/python -m experiments.make_results --sweeps $(SWEEPS) --stamp $(STAMP)

# Issue 19's tables (real reasoning tiers, load sweep, drift under load), apart from `make results` because the load
# sweep is two sweeps into one folder (real tiers at two quality levels, the stand-in at one).
results-reasoning: setup
	$(BIN)/python -m experiments.run experiment=load_sweep progress=false hydra.sweep.dir=multirun/load_sweep/$(STAMP)/real
	$(BIN)/python -m experiments.run experiment=load_sweep progress=false workload=conversation q_min_level=0.85 hydra.sweep.dir=multirun/load_sweep/$(STAMP)/stand_in
	$(BIN)/python -m experiments.aggregate multirun/load_sweep/$(STAMP) --out results/load_sweep.csv --force
	$(BIN)/python -m experiments.run experiment=deepseek_reasoning progress=false hydra.sweep.dir=multirun/deepseek_reasoning/$(STAMP)
	$(BIN)/python -m experiments.aggregate multirun/deepseek_reasoning/$(STAMP) --out results/deepseek_reasoning.csv --force
	$(BIN)/python -m experiments.run experiment=drift_loaded progress=false hydra.sweep.dir=multirun/drift_loaded/$(STAMP)
	$(BIN)/python -m experiments.figures load_attainment load_rate load_map

clean:
	rm -rf $(VENV) outputs multirun
