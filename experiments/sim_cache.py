"""Throughput bisections shared by equal inputs: a plan's bisection is reused wherever plan, test workload, simulator
settings, seed and bisection settings are all equal (a content hash of every input, and of this code).

Most jobs of a sweep repeat earlier ones' work: the single-model and Sarathi baselines deploy the same plan at every
quality requirement, and other planners often arrive at one another's plan, on the same seeds and test splits (in
the sweeps of December 2026, 52% of slo_throughput's and 60% of llama31's planner-seed runs repeated an earlier
run's outcome exactly). The simulator is deterministic, so equal inputs give the same bisection. Within a process
the cache is a dict; in a Hydra multirun it is also a folder of small JSON files in the sweep's own folder
(`<sweep dir>/.cache/throughput/`), shared by the sweep's jobs. `make results` (experiments.make_results) names one
folder for all its sweeps in CACHE_ENV, so that a sweep also finds the bisections of the sweeps before it on equal
inputs: the ablation sweep's runs are all runs of slo_throughput (same planners, workloads and level), and the
disaggregation sweep's colocated Cascadia at the default rate plans what slo_throughput's Cascadia planned.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, replace
import os
from functools import lru_cache
from pathlib import Path

from sim.common.io import write_json
from sim.common.paths import PROJECT_ROOT

CACHE_SUBDIR = Path(".cache") / "throughput"
CACHE_ENV = "CASCADESIM_THROUGHPUT_CACHE"  # a folder shared by several sweeps (set by experiments.make_results)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the project's Python sources and configs: a cached value from other code is never used."""
    h = hashlib.sha256()
    for folder in ("sim", "planners", "online", "experiments", "conf"):
        for p in sorted((PROJECT_ROOT / folder).rglob("*")):
            if p.suffix in (".py", ".yaml") and p.is_file():
                h.update(str(p.relative_to(PROJECT_ROOT)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def _run_material(plan, scenario) -> tuple:
    """What a simulation of the plan on the scenario reads: the plan's deployment, routing and the estimates the
    run reads (simulator overrides, CascadeServe's gears), the scenario (cluster, cascade, workload arrays,
    simulator settings, seed), and the code."""
    est = plan.estimates
    w = scenario.workload
    return (
        code_fingerprint(),
        (plan.tiers, plan.thresholds, plan.routing, plan.router_error_rate, plan.routes,
         est.get("sim_overrides"), est.get("gear_switching"), est.get("gears")),
        (scenario.cluster, scenario.cascade, asdict(scenario.sim_cfg), scenario.seed),
        (w.name, w.arrival_s, w.input_tokens, w.output_tokens, w.scores, w.question_ids, w.tier_models, w.prefix),
    )


def throughput_key(plan, scenario, tcfg: dict) -> str:
    """Every input of experiments.run.throughput_rps: the plan and scenario (_run_material) and the bisection
    settings."""
    material = ("throughput/1", *_run_material(plan, scenario), sorted(tcfg.items()))
    return hashlib.sha256(pickle.dumps(material, protocol=4)).hexdigest()


def simulation_key(plan, scenario) -> str:
    """Every input of a whole run of the plan on the scenario without a controller (experiments.main_job's test
    split and in-sample runs)."""
    return hashlib.sha256(pickle.dumps(("simulation/1", *_run_material(plan, scenario)), protocol=4)).hexdigest()


class ThroughputCache:
    """factor (the bisection's answer, a multiple of the base rate) by throughput_key."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.memo: dict[str, float] = {}
        self.hits = 0

    def get(self, key: str) -> float | None:
        if key in self.memo:
            self.hits += 1
            return self.memo[key]
        if self.folder is not None:
            path = self.folder / f"{key}.json"
            if path.is_file():
                try:
                    factor = float(json.loads(path.read_text())["factor"])
                except (OSError, ValueError, KeyError, TypeError):
                    return None  # unreadable: compute it again
                self.memo[key] = factor
                self.hits += 1
                return factor
        return None

    def put(self, key: str, factor: float, runs: list | None = None) -> None:
        """runs: the (rate factor, verdict) of each simulation the search made, kept beside the answer (how many
        runs each bisection cost; read by no one else)."""
        self.memo[key] = factor
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            record = {"factor": factor} if runs is None else {"factor": factor, "runs": [list(r) for r in runs]}
            write_json(record, self.folder / f"{key}.json")


class SimulationCache:
    """Whole runs (sim.runtime.records.SimResult) by simulation_key: pickles in a folder shared like the
    bisections' (beside it), or this process's dict. A run of the plan on the same scenario is the same run
    whichever planner made the plan, so the result's plan description is the asking plan's."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.memo: dict = {}
        self.tables: dict[str, bytes] = {}  # request tables as written (write_requests), without a folder
        self.hits = 0

    def run(self, key: str, plan, simulate):
        """The cached result for key, else simulate() (stored)."""
        result = self.memo.get(key)
        path = self.folder / f"{key}.pkl" if self.folder is not None else None
        if result is None and path is not None and path.is_file():
            try:
                result = pickle.loads(path.read_bytes())
            except Exception:  # unreadable (a run interrupted while writing): simulate again
                result = None
        if result is not None:
            self.hits += 1
            return replace(result, meta={**result.meta, "plan": plan.describe()})
        result = simulate()
        if path is None:
            self.memo[key] = result
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(tmp, path)  # atomic: a reader sees the whole pickle or none
        return result

    def write_requests(self, key: str, requests, path: Path) -> None:
        """The run's request table at path, as sim.common.io.write_table writes it: the bytes made for the same run
        before (a file beside its pickle, or this process's memo) where there are some, else made and kept. Every
        planner whose plan repeats a run writes the same table, so it is formatted and compressed once per run."""
        from sim.common.io import table_bytes, write_atomic

        gz = str(path).endswith(".gz")
        name = f"{key}.requests.csv" + (".gz" if gz else "")
        kept = self.folder / name if self.folder is not None else None
        data = self.tables.get(name)
        if data is None and kept is not None and kept.is_file():
            try:
                data = kept.read_bytes()
            except OSError:  # unreadable: make it again
                data = None
        if data is None:
            data = table_bytes(requests, gz)
            if kept is None:
                self.tables[name] = data
            else:
                try:
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(kept, data)
                except OSError:  # kept for later repeats only: the run's own table does not depend on it
                    pass
        write_atomic(path, data)


def simulation_cache(throughput: ThroughputCache) -> SimulationCache | None:
    """The whole-run cache beside the bisections' folder (<...>/throughput -> <...>/simulations) under `make
    results` (CACHE_ENV set; the driver deletes it when its sweeps end, a run's pickle being about 1 MB); None
    otherwise: a plain run or sweep keeps no pickles and holds no request tables in memory for later planners
    (within one job equal runs are rare: the repeats are across quality levels, i.e. across jobs)."""
    if throughput.folder is None or not os.environ.get(CACHE_ENV):
        return None
    return SimulationCache(throughput.folder.parent / "simulations")


def sweep_cache() -> ThroughputCache:
    """The cache for this job: the folder CACHE_ENV names if set (shared by every sweep of one `make results`), else
    shared through the sweep's folder in a Hydra multirun, this process's alone otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if os.environ.get(CACHE_ENV):
        return ThroughputCache(Path(os.environ[CACHE_ENV]))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return ThroughputCache(Path(hc.sweep.dir) / CACHE_SUBDIR)
    return ThroughputCache()
