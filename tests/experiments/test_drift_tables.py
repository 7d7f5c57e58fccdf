"""Tables of the online experiments: (system, mode) from the controlling policy, markers from controller events,
means over seeds with CIs and paired ratios; the drift figure draws its markers from these tables alone."""
from __future__ import annotations

import json
import shutil

import pandas as pd

from experiments.aggregate import write_results
from experiments.drift_tables import system_and_mode

PHASES = [("conversation", 0.0, 480.0), ("coding", 480.0, 1440.0)]


def fake_run(path, seed, slo, rate_scale=1.0):
    """A summary.json and per-minute tables as experiments.run writes them for the drift experiment."""
    path.mkdir(parents=True)
    planners = {}
    for entry, policy, scale in (("cascadia", None, 1.0), ("cascadia_online", "DriftReplanPolicy", 0.8),
                                 ("cascadeserve", "GearPolicy", 1.2)):
        events = []
        if policy == "DriftReplanPolicy":
            events = [{"time_s": 500.0, "event": "replan", "applied": True, "reason": "drift:scores",
                       "decided_s_at": 495.0, "gpus_per_tier": [8, 8, 16]},
                      {"time_s": 800.0, "event": "replan", "applied": False, "reason": "drift:rate"}]
        elif policy == "GearPolicy":
            events = [{"time_s": 600.0, "event": "replan", "applied": True, "gear": 2, "reason": "gear 1->2"}]
        planners[entry] = {"slo_scale": slo * scale, "quality": 80.0, "policy": policy, "controller_events": events,
                           "replans": 1 if policy == "DriftReplanPolicy" else 0,
                           "gear_switches": 1 if policy == "GearPolicy" else 0, "faults": [],
                           "phases": [{"phase": n, "start_s": a, "end_s": b, "slo_scale": slo * scale, "quality": 80.0,
                                       "quality_ci95_half": 1.0, "p95_latency_s": 5.0, "requests": 10, "dropped": 0}
                                      for n, a, b in PHASES]}
        pd.DataFrame({"window_start_s": [0.0, 60.0], "p95_latency_s": [4.0, 5.0]}).to_csv(
            path / f"timeseries_{entry}.csv", index=False)
    scenario = {"name": "drift", "workload": "drift", "cascade": ["a", "b", "c"], "num_gpus": 32, "q_min": 72.5,
                "rate_scale": rate_scale, "rate_rps": 5.5 * rate_scale, "seed": seed,
                "config": {"replan": {"enabled": True, "keep_static": True, "planners": ["cascadia"]}, "seed": seed,
                           "rate_scale": rate_scale}}
    (path / "summary.json").write_text(json.dumps({"scenario": scenario, "planners": planners}))


def test_modes_come_from_the_controlling_policy():
    keep = {"keep_static": True}
    assert system_and_mode("cascadia_online", {"policy": "DriftReplanPolicy"}, keep) == ("cascadia", "online")
    assert system_and_mode("cascadia", {}, keep) == ("cascadia", "static")
    assert system_and_mode("cascadeserve", {"policy": "GearPolicy"}, keep) == ("cascadeserve", "gears")


def test_tables_and_the_figure_need_no_raw_runs(tmp_path):
    from experiments.figures import drift

    runs = tmp_path / "multirun"
    for seed, slo in ((0, 10.0), (1, 12.0), (2, 11.0)):
        fake_run(runs / str(seed), seed, slo)
    results = tmp_path / "results"
    write_results([runs], results / "drift.csv")
    summary = pd.read_csv(results / "drift_summary.csv")
    static = summary[(summary.system == "cascadia") & (summary["mode"] == "static") & (summary.phase == "all")].iloc[0]
    assert static.seeds == 3 and static.slo_scale_mean == 11.0 and static.slo_scale_ci95_lo <= 11.0
    assert static.slo_ratio_mean == 0.8 and static.reference_outcome == "win"  # online 20% lower on every seed
    events = pd.read_csv(results / "drift_events.csv")
    assert sorted(events.kind.unique()) == ["gear_switch", "replan", "replan_rejected"] and len(events) == 9
    assert set(pd.read_csv(results / "drift_phases.csv").phase) == {"conversation", "coding"}
    shutil.rmtree(runs)  # the figure reads the tables alone (issue 14: no gitignored raw runs)
    assert drift.plot(results_dir=results, out_dir=tmp_path / "figs").stat().st_size > 5_000


def test_bad_run_level_replan_keys_are_one_clear_error():
    from types import SimpleNamespace

    import pytest
    from omegaconf import OmegaConf

    from experiments.online import check_online_config
    from sim.common.errors import ConfigError
    from sim.spec.hardware import load_cluster

    sc = SimpleNamespace(cluster=load_cluster("paper_4x8_h100"))
    for bad, word in (({"keep_static": "yes"}, "keep_static"), ({"planners": "cascadia"}, "planners")):
        with pytest.raises(ConfigError, match=word):
            check_online_config(OmegaConf.create({"faults": [], "replan": bad}), sc)


def test_runs_at_other_loads_are_other_cases_never_pooled(tmp_path):
    """A rate sweep (x1 and x2, three seeds each) once gave one mean with one CI over six runs: a case is every
    setting that varies among the runs (here rate_scale; the seed is the replicate)."""
    runs = tmp_path / "multirun"
    for rate, base in ((1.0, 10.0), (2.0, 40.0)):
        for seed, slo in ((0, base), (1, base + 2), (2, base + 1)):
            fake_run(runs / f"rate_scale={rate:g},seed={seed}", seed, slo, rate_scale=rate)
    write_results([runs], tmp_path / "results" / "drift.csv")
    summary = pd.read_csv(tmp_path / "results" / "drift_summary.csv")
    whole = summary[(summary.system == "cascadia") & (summary["mode"] == "static") & (summary.phase == "all")]
    assert sorted(whole.case) == ["rate_scale=1.0", "rate_scale=2.0"]
    assert list(whole.seeds) == [3, 3] and sorted(whole.slo_scale_mean) == [11.0, 41.0]
    # the paired ratio to Cascadia online pairs seeds within a case (online is 0.8x static on every seed)
    assert (whole.slo_ratio_mean == 0.8).all() and set(whole.reference_outcome) == {"win"}
    table = pd.read_csv(tmp_path / "results" / "drift.csv")
    assert set(table.case) == {"rate_scale=1.0", "rate_scale=2.0"} and "case.rate_scale" in table
