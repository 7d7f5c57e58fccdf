"""`make results`' driver (experiments.make_results): every step timed into results/timings.json with the core count."""
import json
import time

import pytest

import experiments.make_results as mr


def test_timings_json_has_each_step_total_and_cores(tmp_path, monkeypatch):
    calls = []
    caches, given = set(), set()
    monkeypatch.setattr(mr, "run_sweep", lambda name, d, overrides, cache: (calls.append(("sweep", name, d.name)),
                                                                           caches.add(cache), given.add(overrides),
                                                                           time.sleep(0.05)))
    monkeypatch.setattr(mr, "aggregate_sweep", lambda d, out: calls.append(("aggregate", out.name)))
    monkeypatch.setattr(mr, "planner_time", lambda: calls.append(("planner_time",)))
    monkeypatch.setattr(mr, "figures", lambda: calls.append(("figures",)))
    out = tmp_path / "timings.json"
    mr.main(["--sweeps", "ablation", "drift", "--stamp", "S", "--timings", str(out), "--override", "seeds=1",
             "--override", "horizon_s=60"])
    assert calls == [("sweep", "ablation", "S"), ("aggregate", "ablation.csv"), ("sweep", "drift", "S"),
                     ("aggregate", "drift.csv"), ("planner_time",), ("figures",)]
    t = json.loads(out.read_text())
    assert list(t["steps_s"]) == ["sweep ablation", "aggregate ablation", "sweep drift", "aggregate drift",
                                  "planner_time", "figures"]
    # every value is rounded to the millisecond
    assert t["steps_s"]["sweep ablation"] >= 0.049
    assert t["total_s"] >= sum(t["steps_s"].values()) - 0.001 * len(t["steps_s"])
    assert t["usable_cores"] >= 1 and t["cpu_count"] >= t["usable_cores"]
    assert set(t["steps_cpu_s"]) == set(t["steps_s"]) and t["sweeps"] == ["ablation", "drift"]
    assert len(caches) == 1 and "S" in next(iter(caches)).parts  # one bisection cache for every sweep of the run
    assert given == {("seeds=1", "horizon_s=60")} and t["overrides"] == ["seeds=1", "horizon_s=60"]


def test_unknown_sweep_is_one_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        mr.main(["--sweeps", "no_such_experiment", "--timings", str(tmp_path / "t.json")])
    assert exc.value.code != 0 and not (tmp_path / "t.json").exists()


def test_makefile_results_target_uses_the_driver():
    from sim.common.paths import PROJECT_ROOT

    text = (PROJECT_ROOT / "Makefile").read_text()
    block = text[text.index("\nresults:"):text.index("\nclean:")]
    assert "experiments.make_results --sweeps $(SWEEPS)" in block


def test_run_sweep_names_the_shared_cache_and_passes_overrides(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from experiments.sim_cache import CACHE_ENV

    seen = {}
    monkeypatch.setattr(mr.subprocess, "run", lambda cmd, cwd, env: seen.update(cmd=cmd, env=env) or
                        SimpleNamespace(returncode=0))
    mr.run_sweep("ablation", tmp_path / "sweep", ("seeds=1",), tmp_path / "cache")
    assert seen["env"][CACHE_ENV] == str(tmp_path / "cache") and seen["cmd"][-1] == "seeds=1"
    assert "experiment=ablation" in seen["cmd"] and f"hydra.sweep.dir={tmp_path / 'sweep'}" in seen["cmd"]
