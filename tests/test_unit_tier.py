"""The unit tier's rule: every module of sim/, planners/, online/ and experiments/ that has logic has a test file of
its own name (tests/**/test_<module>.py), or its tests live in a file named here (HOME, with the text that shows the
file exercises it), or it is on the short exemption list with its reason (EXEMPT). A module has logic when one of its
functions branches, loops or computes (an if, a loop, a comprehension, arithmetic, a try); a module of constants,
exception classes or dataclasses without methods has none. A new module with logic and no tests fails this test."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "planners", "online", "experiments")
TEST_FILES = {p.relative_to(ROOT) for p in (ROOT / "tests").rglob("test_*.py")}

# module -> (the test file that holds its tests, text that file must contain to show it exercises the module)
HOME: dict[str, tuple[str, str]] = {
    # figure scripts: each is drawn from the committed tables, with its axes checked, by name
    **{f"experiments.figures.{n}": ("tests/experiments/test_figures.py", f'"{n}"') for n in (
        "slo_scale", "throughput", "cost", "ablation", "quality_shift", "llama3", "llama31", "node_failure",
        "planner_time", "load_attainment", "load_rate", "load_map", "disaggregation")},
    "experiments.figures.drift": ("tests/experiments/test_figures.py", "from experiments.figures import drift"),
    "experiments.figures.main_job": ("tests/experiments/test_figures.py", "from experiments.figures import main_job"),
    "experiments.figures._common": ("tests/experiments/test_figures.py", "from experiments.figures import _common"),
    "experiments.figures.__main__": ("tests/experiments/test_figures.py", "experiments.figures.__main__"),
    "sim.workload.__main__": ("tests/sim/workload/test_build.py", '"-m", "sim.workload"'),
    "sim.workload.config": ("tests/sim/workload/test_build.py", "def test_bad_config_values_are_named"),
    "sim.bench": ("tests/sim/test_bench_progress.py", "sim.bench"),
    "sim.workload.prepare_data": ("tests/sim/workload/test_quality.py", "sim.workload.prepare_data"),
    "sim.workload.prefix": ("tests/sim/workload/test_prefix_trace.py", "sim.workload.prefix"),
    "sim.common.config_checks": ("tests/test_bad_input.py", "sim.common.config_checks"),
    "sim.common.cli": ("tests/test_bad_input.py", "sim.common.cli"),
    "sim.simulator": ("tests/sim/test_sim_config.py", "sim.simulator"),
    "sim.metrics": ("tests/sim/test_metrics_oracles.py", "sim.metrics"),
    "sim.spec.plan": ("tests/planners/test_checker.py", "sim.spec.plan"),
    "sim.spec.plan_io": ("tests/sim/test_sim_config.py", "sim.spec.plan_io"),
    "sim.control.controller": ("tests/sim/control/test_faults.py", "sim.control.controller"),
    "sim.runtime.replica": ("tests/sim/runtime/test_fast_path_shortcuts.py", "sim.runtime.replica"),
    "sim.runtime.batching": ("tests/sim/runtime/test_decode_batch.py", "sim.runtime.batching"),
    "sim.runtime.disagg": ("tests/sim/test_disaggregated_serving.py", "sim.runtime.disagg"),
    "sim.runtime.records": ("tests/sim/test_metrics_oracles.py", "sim.runtime.records"),
    "sim.runtime.cluster": ("tests/test_reliability.py", "sim.runtime.cluster"),
    "sim.perf.engine": ("tests/sim/perf/test_engine_physics.py", "sim.perf.engine"),
    "sim.perf.kernels": ("tests/sim/perf/test_cost_model.py", "sim.perf.kernels"),
    "sim.perf.layers": ("tests/sim/perf/test_fidelity_defects.py", "sim.perf.layers"),
    "sim.perf.params": ("tests/sim/perf/test_engine_physics.py", "sim.perf.params"),
    "sim.perf.batch": ("tests/sim/perf/test_cost_model.py", "sim.perf.batch"),
    "sim.fidelity.corpus_report": ("tests/sim/fidelity/test_corpus.py", "sim.fidelity.corpus_report"),
    "sim.fidelity.engine_fit": ("tests/sim/fidelity/test_corpus.py", "sim.fidelity.engine_fit"),
    "sim.fidelity.fidelity_figure": ("tests/sim/fidelity/test_corpus.py", "sim.fidelity.fidelity_figure"),
    "planners.base": ("tests/planners/test_planners.py", "planners.base"),
    "planners.cascadia": ("tests/planners/test_planners.py", "planners.cascadia"),
    "planners.bruteforce": ("tests/planners/test_planners.py", "planners.bruteforce"),
    "planners.search": ("tests/planners/test_quantile_linear.py", "planners.search"),
    "planners.problem": ("tests/planners/test_planners.py", "planners.problem"),
    "planners.disagg": ("tests/planners/test_disaggregated_planning.py", "planners.disagg"),
    "planners.placement": ("tests/test_bad_input.py", "planners.placement"),
    "planners.text_router": ("tests/planners/test_routellm.py", "planners.text_router"),
    "experiments.aggregate": ("tests/experiments/test_drift_tables.py", "experiments.aggregate"),
    "experiments.headline": ("tests/experiments/test_protocol.py", "experiments.headline"),
    "experiments.main_job": ("tests/experiments/test_run_folders.py", "experiments.main_job"),
    "experiments.online": ("tests/experiments/test_drift_tables.py", "experiments.online"),
    "experiments.runs": ("tests/experiments/test_run_folders.py", "experiments.runs"),
    "experiments.scenario": ("tests/experiments/test_rate_knob.py", "experiments.scenario"),
    "experiments.load": ("tests/experiments/test_load_sweep.py", "capacity_rps"),
    "experiments.progress": ("tests/experiments/test_run_folders.py", "[2 done]"),
    "sim.fidelity.kernel_floor": ("tests/sim/fidelity/test_corpus.py", "kernel_layer"),
    # the request lifecycle (arrive, visit, judge, forward, finish or drop): a score at the threshold accepted, latency
    # as the sum of tier times and judge latency, requests conserved through faults and escalations
    "sim.runtime.flow": ("tests/sim/test_recorded_invariants.py", "test_requests_are_conserved_through_faults"),
    "planners.baselines": ("tests/planners/test_planners.py", 'get_planner("sarathi")'),
}

# module -> why it needs no unit test file of its own (kept short: each entry is a debt or a reason, said plainly)
EXEMPT: dict[str, str] = {
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            out.append((".".join(path.relative_to(ROOT).with_suffix("").parts), path))
    return out


_LOGIC = (ast.If, ast.For, ast.While, ast.Try, ast.IfExp, ast.BoolOp, ast.BinOp, ast.Compare, ast.comprehension,
          ast.AugAssign)


def has_logic(path: Path) -> bool:
    """A function or method of the module branches, loops or computes."""
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if any(isinstance(node, _LOGIC) for node in ast.walk(fn)):
                return True
    return False


MODULES = _modules()
_STEMS = [m.rsplit(".", 1)[-1] for m, _ in MODULES]


def own_test_file(module: str) -> bool:
    """tests/**/test_<stem>.py exists; where two modules share a stem (planner_time, figures/planner_time), only the
    file at the mirrored path counts (tests/<package folders>/test_<stem>.py)."""
    *package, stem = module.split(".")
    if _STEMS.count(stem) > 1:
        return Path("tests", *package, f"test_{stem}.py") in TEST_FILES
    return any(p.name == f"test_{stem}.py" for p in TEST_FILES)


def test_the_logic_detector_tells_a_computation_from_a_spec(tmp_path):
    spec, calc = tmp_path / "spec.py", tmp_path / "calc.py"
    spec.write_text("from dataclasses import dataclass\n@dataclass\nclass A:\n    x: int = 1\n")
    calc.write_text("def f(x):\n    return x + 1\n")
    assert not has_logic(spec) and has_logic(calc)


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_a_module_with_logic_has_its_unit_tests(module, path):
    if not has_logic(path):
        return
    stem = module.rsplit(".", 1)[-1]
    if own_test_file(module):
        return
    if module in HOME:
        where, text = HOME[module]
        assert (ROOT / where).is_file(), f"{module}: its test file {where} is gone"
        assert text in (ROOT / where).read_text(), f"{module}: {where} no longer shows {text!r}"
        return
    assert module in EXEMPT, (f"{module} has logic but no tests/**/test_{stem}.py; write its unit tests (or name the "
                              "file that holds them in HOME of tests/test_unit_tier.py)")


def test_the_lists_hold_no_stale_entry():
    names = {m for m, _ in MODULES}
    assert set(HOME) <= names and set(EXEMPT) <= names
    own = {m for m in names if own_test_file(m)}
    assert not (set(HOME) | set(EXEMPT)) & own, "a module with its own test file needs no entry"
    assert not set(HOME) & set(EXEMPT)
