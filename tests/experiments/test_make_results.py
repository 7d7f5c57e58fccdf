"""`make results`' driver (experiments.make_results): every step timed into results/timings.json with the core count."""
import json
import time
from pathlib import Path

import pytest

import experiments.make_results as mr


def test_timings_json_has_each_step_total_and_cores(tmp_path, monkeypatch):
    calls = []
    from experiments.sim_cache import CACHE_ENV

    given, pools = set(), {}
    monkeypatch.setattr(mr, "run_sweep", lambda name, d, overrides, lanes: (
        calls.append(("sweep", name, d.name)), given.add(overrides), pools.setdefault(id(lanes), lanes),
        time.sleep(0.05)) and 1.5)
    monkeypatch.setattr(mr, "aggregate_sweep", lambda d, out: calls.append(("aggregate", out.name)))
    (tmp_path / "conf").symlink_to(mr.PROJECT_ROOT / "conf")  # the experiments, under a root of this test's own
    monkeypatch.setattr(mr, "PROJECT_ROOT", tmp_path)
    runs = tmp_path / "multirun" / ".cache" / "S" / "simulations"
    runs.mkdir(parents=True)
    (runs / "x.pkl").write_bytes(b"a whole run")
    monkeypatch.setattr(mr, "planner_time", lambda: calls.append(("planner_time",)) and 0.0)
    monkeypatch.setattr(mr, "figures", lambda names: calls.append(("figures", *names)))
    out = tmp_path / "timings.json"
    mr.main(["--sweeps", "ablation", "drift", "--stamp", "S", "--timings", str(out), "--override", "seeds=1",
             "--override", "horizon_s=60", "--lanes", "1"])
    from experiments.figures.__main__ import FIGURES

    rest = tuple(f for f in FIGURES if f not in ("ablation", "drift", "planner_time"))
    assert "slo_scale" in rest  # the figures of tables not made here: at the end
    # the planner timing takes a lane's turn after the sweeps, and its figure is drawn at once (it writes its own
    # table: no aggregation)
    assert calls == [("sweep", "ablation", "S"), ("aggregate", "ablation.csv"), ("figures", "ablation"),
                     ("sweep", "drift", "S"), ("aggregate", "drift.csv"), ("figures", "drift"), ("planner_time",),
                     ("figures", "planner_time"), ("figures", *rest)]
    assert not runs.exists()  # this run's whole-run pickles are deleted at its end
    assert len(pools) == 1  # one pool of lane processes for every sweep
    t = json.loads(out.read_text())
    assert list(t["steps_s"]) == ["sweep ablation", "aggregate ablation", "figures ablation", "sweep drift",
                                  "aggregate drift", "figures drift", "planner_time", "figures planner_time",
                                  "figures"]
    # every value is rounded to the millisecond
    assert t["steps_s"]["sweep ablation"] >= 0.049
    assert t["total_s"] >= sum(t["steps_s"].values()) - 0.001 * len(t["steps_s"])
    assert t["usable_cores"] >= 1 and t["cpu_count"] >= t["usable_cores"]
    assert set(t["steps_cpu_s"]) == set(t["steps_s"]) and t["sweeps"] == ["ablation", "drift"]
    assert 1.5 <= t["steps_cpu_s"]["sweep ablation"] < 1.6  # the sweep's process tree (here 1.5) + this thread's
    assert t["lanes"] == 1
    caches = {Path(pool.env[CACHE_ENV]) for pool in pools.values()}  # the lanes' environment names it
    assert len(caches) == 1 and "S" in next(iter(caches)).parts  # one bisection cache for every sweep of the run
    assert given == {("seeds=1", "horizon_s=60")} and t["overrides"] == ["seeds=1", "horizon_s=60"]


def test_a_sweeps_figure_failure_fails_the_run_at_its_end(tmp_path, monkeypatch):
    """A figure that cannot be drawn from its sweep's table does not stop the other sweeps; the run ends non-zero
    after them, with its timings written."""
    calls = []
    monkeypatch.setattr(mr, "run_sweep", lambda name, d, overrides, lanes: calls.append(name) and 0.0)
    monkeypatch.setattr(mr, "aggregate_sweep", lambda d, out: None)
    (tmp_path / "conf").symlink_to(mr.PROJECT_ROOT / "conf")
    monkeypatch.setattr(mr, "PROJECT_ROOT", tmp_path)

    def figures(names):
        if "ablation" in names:
            raise SystemExit(1)

    monkeypatch.setattr(mr, "figures", figures)
    out = tmp_path / "timings.json"
    with pytest.raises(SystemExit) as exc:
        mr.main(["--sweeps", "ablation", "drift", "--stamp", "S", "--timings", str(out), "--lanes", "1",
                 "--no-planner-time"])
    assert "ablation" in str(exc.value.code) and calls == ["ablation", "drift"] and out.is_file()


def test_sweeps_run_their_jobs_in_their_own_process():
    """Every joblib sweep of `make results` gets n_jobs=1 (joblib's sequential backend: the jobs run in the Hydra
    process); composed with Hydra (oracle), the override is accepted and gives one job on the joblib launcher. A
    sweep on another launcher gets no override."""
    from hydra import compose, initialize_config_dir

    from experiments.config import register_configs
    from sim.common.paths import CONF_DIR, PROJECT_ROOT

    register_configs()
    text = (PROJECT_ROOT / "Makefile").read_text()
    sweeps = text[text.index("\nSWEEPS := "):].split("\n")[1].split(":=")[1].split()
    assert "slo_throughput" in sweeps
    for name in sweeps:
        extra = mr.one_process_overrides(name)
        assert extra == ["hydra.launcher.n_jobs=1"], name
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            h = compose(config_name="config", overrides=[f"experiment={name}", *extra], return_hydra_config=True).hydra
        assert "JoblibLauncher" in h.launcher._target_ and h.launcher.n_jobs == 1, name
    assert mr.one_process_overrides("drift_quick") == ["hydra.launcher.n_jobs=1"]  # extends drift


def test_a_sweep_on_another_launcher_gets_no_override(tmp_path, monkeypatch):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "plain.yaml").write_text("# @package _global_\nname: plain\n")
    (tmp_path / "conf" / "experiment" / "slurm.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/launcher: slurm_cpu\nname: slurm\n")
    monkeypatch.setattr(mr, "PROJECT_ROOT", tmp_path)
    assert mr.one_process_overrides("plain") == [] and mr.one_process_overrides("slurm") == []
    assert mr.one_process_overrides("missing") == []


def test_unknown_sweep_is_one_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        mr.main(["--sweeps", "no_such_experiment", "--timings", str(tmp_path / "t.json")])
    assert exc.value.code != 0 and not (tmp_path / "t.json").exists()


def test_lanes_below_one_is_one_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        mr.main(["--sweeps", "drift", "--lanes", "0", "--timings", str(tmp_path / "t.json")])
    assert exc.value.code != 0 and not (tmp_path / "t.json").exists()


def test_makefile_results_target_uses_the_driver():
    from sim.common.paths import PROJECT_ROOT

    text = (PROJECT_ROOT / "Makefile").read_text()
    block = text[text.index("\nresults:"):text.index("\nclean:")]
    assert "experiments.make_results --sweeps $(SWEEPS)" in block


def test_run_sweep_passes_its_arguments_and_overrides_to_a_lane():
    from contextlib import contextmanager

    seen = {}

    class Lane:
        def run(self, argv):
            seen["cmd"] = argv
            return 2.5

    class Pool:
        @contextmanager
        def lane(self):
            yield Lane()

    from pathlib import Path

    assert mr.run_sweep("ablation", Path("/x/sweep"), ("seeds=1",), Pool()) == 2.5
    assert seen["cmd"][-1] == "seeds=1"
    assert "experiment=ablation" in seen["cmd"] and "hydra.sweep.dir=/x/sweep" in seen["cmd"]
    assert "hydra.launcher.n_jobs=1" in seen["cmd"]


def test_run_child_reports_its_cpu_and_failure(tmp_path):
    """A real child process (the planner timing's): its CPU seconds come back (a busy loop of about 0.3 s), a failing
    one exits non-zero."""
    import sys

    assert mr.run_child([sys.executable, "-c", "import time\nt = time.process_time()\n"
                                               "while time.process_time() - t < 0.3: pass"]) >= 0.3
    with pytest.raises(SystemExit) as exc:
        mr.run_child([sys.executable, "-c", "raise SystemExit(3)"])
    assert exc.value.code == 3


def test_lanes_run_sweeps_side_by_side_after_the_sweeps_they_reuse():
    """Two lanes: at most two sweeps at once, the long ones overlap, and ablation and disaggregation (REUSES) start
    only after slo_throughput has finished although a lane was free earlier."""
    import threading

    spans, lock = {}, threading.Lock()
    length = {"slo_throughput": 0.4, "llama31": 0.1, "ablation": 0.05, "disaggregation": 0.05, "drift": 0.05}

    def step(name):
        t0 = time.perf_counter()
        time.sleep(length[name])
        with lock:
            spans[name] = (t0, time.perf_counter())

    mr.run_sweeps(list(length), 2, step)
    assert set(spans) == set(length)
    for dep in ("ablation", "disaggregation"):
        assert spans[dep][0] >= spans["slo_throughput"][1]
    assert spans["llama31"][0] < spans["slo_throughput"][1]  # side by side
    assert spans["drift"][0] < spans["slo_throughput"][1]  # the free lane took the next ready sweep
    for t in [s for s, _ in spans.values()]:
        assert sum(a <= t < b for a, b in spans.values()) <= 2


def test_a_failed_sweep_stops_new_starts_and_is_raised():
    started = []

    def step(name):
        started.append(name)
        if name == "a":
            raise SystemExit(2)
        time.sleep(0.1)

    with pytest.raises(SystemExit):
        mr.run_sweeps(["a", "b", "c", "d"], 1, step)
    assert started == ["a"]
