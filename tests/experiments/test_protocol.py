"""The evaluation protocol: disjoint planning/test questions, earlier/later windows, seeds, CI keys, headline JSON."""
import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.protocol import combine_seeds, run_seeds, seed_split, versus_reference
from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR

register_configs()
SMALL = ["horizon_s=60", "plan_sample_size=200", "throughput.horizon_s=30", "throughput.iters=1", "progress=false",
         "figure=false"]


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_split_is_earlier_window_and_later_window_on_disjoint_questions():
    cfg = _cfg(SMALL)
    sp = seed_split(cfg, 0)
    plan, test = sp.plan.workload, sp.test.workload
    assert sp.boundary_s == pytest.approx(float(plan.arrival_s[0]) + 30.0, abs=1.0)
    assert plan.arrival_s.max() < sp.boundary_s  # the earlier window
    assert test.arrival_s.min() >= 0 and test.arrival_s.max() < 30.0  # the later window, re-timed to 0
    assert not set(plan.question_ids) & set(test.question_ids)
    b = test.meta["binding"]
    assert not set(b["plan_questions"]) & set(b["test_questions"])
    assert set(plan.question_ids) <= set(b["plan_questions"]) and set(test.question_ids) <= set(b["test_questions"])
    assert abs(len(b["plan_questions"]) - len(b["test_questions"])) <= 1  # question_fraction 0.5
    # the requirement is set on what the planner sees, and each split keeps its own real rate
    assert sp.plan.q_min == sp.test.q_min == pytest.approx(plan.quality_at_level(0.7))
    whole = seed_split(_cfg([*SMALL, "split.enabled=false"]), 0)
    assert whole.plan is whole.test and whole.boundary_s is None
    assert plan.num_requests + test.num_requests == whole.test.workload.num_requests


def test_seeds_vary_binding_and_split_and_repeat_exactly():
    cfg = _cfg(SMALL)
    a, again, b = seed_split(cfg, 0), seed_split(cfg, 0), seed_split(cfg, 1)
    for f in ("arrival_s", "question_ids", "scores", "output_tokens"):
        assert np.array_equal(getattr(a.test.workload, f), getattr(again.test.workload, f))
    assert not np.array_equal(a.test.workload.question_ids, b.test.workload.question_ids)
    assert a.test.workload.meta["binding"]["plan_questions"] != b.test.workload.meta["binding"]["plan_questions"]
    assert np.array_equal(a.test.workload.arrival_s, b.test.workload.arrival_s)  # the trace's own times
    assert run_seeds(_cfg([*SMALL, "seeds=3", "seed=5"])) == [5, 6, 7]


@pytest.mark.parametrize("override,word", [("split.plan_fraction=1.5", "plan_fraction"), ("seeds=0", "seeds"),
                                           ("split.question_fraction=0", "question_fraction")])
def test_bad_protocol_settings_name_the_key(override, word):
    cfg = _cfg([*SMALL, override])
    with pytest.raises(ConfigError, match=word):
        seed_split(cfg, 0) if "split" in override else run_seeds(cfg)


def test_combine_seeds_means_cis_and_paired_ratios():
    runs = [{"seed": s, "slo_scale": v, "throughput_rps": 10.0 + s, "plan": "p"} for s, v in enumerate([4.0, 5.0, 6.0])]
    c = combine_seeds(runs)
    assert c["slo_scale"] == pytest.approx(5.0) and c["slo_scale_per_seed"] == [4.0, 5.0, 6.0]
    lo, hi = c["slo_scale_ci95"]
    assert 4.0 <= lo < 5.0 < hi <= 6.0 and c["seeds"] == [0, 1, 2] and c["plan"] == "p"
    worse = combine_seeds([{**r, "slo_scale": 2 * r["slo_scale"], "throughput_rps": r["throughput_rps"] / 2}
                           for r in runs])
    v = versus_reference({"cascadia": c, "single_model": worse})["single_model"]
    assert v["slo_ratio"] == pytest.approx(2.0) and v["slo_outcome"] == "win" and v["throughput_outcome"] == "win"
    # one seed gives no evidence of a difference: a tie, never a win
    one = versus_reference({"cascadia": combine_seeds(runs[:1]),
                            "single_model": combine_seeds([{**runs[0], "slo_scale": 8.0}])})["single_model"]
    assert one["slo_ratio"] == pytest.approx(2.0) and one["slo_outcome"] == "tie"


@pytest.fixture(scope="module")
def two_seed_run(tmp_path_factory):
    from experiments.run import run_experiment

    out = tmp_path_factory.mktemp("two_seeds")
    return out, run_experiment(_cfg([*SMALL, "seeds=2", "planner=[single_model,cascadia]"]), out)


def test_main_job_summary_has_test_and_in_sample_metrics_with_cis(two_seed_run):
    tmp_path, summary = two_seed_run
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["scenario"]["split"]["enabled"] and on_disk["scenario"]["seeds"] == [0, 1]
    assert on_disk["scenario"]["reference_length"] == "largest_tier"
    for name, s in on_disk["planners"].items():
        for key in ("slo_scale", "slo_scale_in_sample", "throughput_rps", "quality"):
            lo, hi = s[f"{key}_ci95"]
            assert lo - 1e-9 <= s[key] <= hi + 1e-9, (name, key)
            assert len(s[f"{key}_per_seed"]) == 2
    assert set(summary["versus_cascadia"]) == {"single_model"}
    assert summary["warnings"] == []  # the default load is not saturated (experiments.run.saturation)


def test_aggregate_carries_mean_ci_and_n_and_per_seed_rows(two_seed_run, tmp_path):
    from experiments.aggregate import main as aggregate_main

    out, summary = two_seed_run
    aggregate_main([str(out), "--out", str(tmp_path / "t.csv")])
    tidy, seeds = pd.read_csv(tmp_path / "t.csv"), pd.read_csv(tmp_path / "t_seeds.csv")
    row = tidy.set_index("planner").loc["cascadia"]
    assert row.slo_scale == pytest.approx(summary["planners"]["cascadia"]["slo_scale"])
    assert row.slo_scale_ci95_lo <= row.slo_scale <= row.slo_scale_ci95_hi and row.slo_scale_n == 2
    assert row.reference_length == "largest_tier" and bool(row.split)
    assert len(seeds) == 4 and set(seeds.seed) == {0, 1}
    assert seeds[seeds.planner == "cascadia"].slo_scale.mean() == pytest.approx(row.slo_scale)


def _seed_table(ratios: dict[tuple[str, float], list[float]]) -> pd.DataFrame:
    """Per-seed rows where the baseline's SLO scale is the given multiple of Cascadia's in each case and seed."""
    rows = []
    for (workload, level), mults in ratios.items():
        for seed, m in enumerate(mults):
            base = 5.0 + seed
            rows.append({"workload": workload, "q_min_level": level, "seed": seed, "planner": "cascadia",
                         "slo_scale": base, "throughput_rps": 20.0})
            rows.append({"workload": workload, "q_min_level": level, "seed": seed, "planner": "single_model",
                         "slo_scale": base * m, "throughput_rps": 10.0})
    return pd.DataFrame(rows)


def test_headline_ends_with_one_json_line_of_paired_outcomes(tmp_path, capsys):
    from experiments.headline import main as headline_main

    seeds = _seed_table({("conversation", 0.7): [2.0, 2.1, 1.9],  # clearly better: win
                         ("coding", 0.7): [1.3, 0.8, 1.0],  # CI straddles 1: tie
                         ("math", 0.7): [0.5, 0.55, 0.5]})  # clearly worse: loss
    seeds.to_csv(tmp_path / "slo_throughput_seeds.csv", index=False)
    seeds.groupby(["workload", "q_min_level", "planner"], as_index=False).mean().assign(
        reference_length="largest_tier").to_csv(tmp_path / "slo_throughput.csv", index=False)
    headline_main([str(tmp_path / "slo_throughput.csv")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    sm = result["baselines"]["single_model"]
    assert (sm["wins"], sm["ties"], sm["losses"]) == (1, 1, 1) and result["cases"] == 3
    assert sm["throughput_ratio_mean"] == pytest.approx(2.0)
    assert sm["slo_ratio_ci95"][0] <= sm["slo_ratio_mean"] <= sm["slo_ratio_ci95"][1]
    assert result["reference_length"] == "largest_tier"


def test_headline_without_per_seed_table_is_a_user_error(tmp_path):
    from experiments.headline import main as headline_main

    pd.DataFrame({"planner": ["cascadia"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SystemExit) as exc:
        headline_main([str(tmp_path / "t.csv")])
    assert exc.value.code == 2


def _headline(tmp_path, capsys, seeds: pd.DataFrame) -> dict:
    from experiments.headline import main as headline_main

    seeds.to_csv(tmp_path / "t_seeds.csv", index=False)
    seeds.drop_duplicates(["planner"]).to_csv(tmp_path / "t.csv", index=False)
    headline_main([str(tmp_path / "t.csv")])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_headline_never_pools_runs_that_differ_in_a_setting(tmp_path, capsys):
    """Two loads of one workload and level (Cascadia 2x better at one, 2x worse at the other) were one case with a
    CI straddling 1 (a tie): a case is every setting that varies, here rate_scale."""
    low = _seed_table({("conversation", 0.7): [2.0, 2.1, 1.9]}).assign(rate_scale=1.0)
    high = _seed_table({("conversation", 0.7): [0.5, 0.48, 0.52]}).assign(rate_scale=4.0)
    both = pd.concat([low, high], ignore_index=True).assign(throughput_at_cap=False)
    sm = _headline(tmp_path, capsys, both)["baselines"]["single_model"]
    assert (sm["cases"], sm["wins"], sm["ties"], sm["losses"]) == (2, 1, 0, 1)
    # aggregate's own case column (every varying config key) is used when the table has it
    labelled = both.assign(case=["replan.enabled=" + str(r > 1.0) for r in both.rate_scale]).drop(columns="rate_scale")
    sm = _headline(tmp_path, capsys, labelled)["baselines"]["single_model"]
    assert (sm["cases"], sm["wins"], sm["losses"]) == (2, 1, 1)


def test_a_throughput_at_the_cap_is_a_lower_bound_not_a_value(tmp_path, capsys):
    """Cascadia at the bisection's cap in every seed of one case: its ratio there is only a lower bound, listed apart
    and kept out of the throughput mean (it was averaged in as a value)."""
    seeds = _seed_table({("conversation", 0.7): [2.0, 2.1, 1.9], ("coding", 0.7): [2.0, 2.1, 1.9]})
    seeds["throughput_rps"] = [30.0 if (w == "coding" and p == "cascadia") else 10.0 if p == "cascadia" else 5.0
                               for w, p in zip(seeds.workload, seeds.planner)]
    seeds["throughput_at_cap"] = (seeds.workload == "coding") & (seeds.planner == "cascadia")
    sm = _headline(tmp_path, capsys, seeds)["baselines"]["single_model"]
    assert sm["throughput_cases"] == 1 and sm["throughput_cases_at_least"] == 1
    assert sm["throughput_ratio_mean"] == pytest.approx(2.0)  # the exact case alone, not (2 + 6) / 2


def test_headline_on_tables_without_the_usual_baselines(tmp_path, capsys):
    """results/ablation.csv (Cascadia and its ablations) and results/quality_shift.csv (Cascadia alone) ended in a
    traceback: the first compares Cascadia with the planners it has, the second is one error line."""
    from experiments.headline import main as headline_main

    seeds = _seed_table({("conversation", 0.7): [2.0, 2.1, 1.9]}).assign(throughput_at_cap=False)
    ablation = seeds.replace({"planner": {"single_model": "cascadia_no_allocation"}})
    assert set(_headline(tmp_path, capsys, ablation)["baselines"]) == {"cascadia_no_allocation"}
    alone = seeds[seeds.planner == "cascadia"]
    with pytest.raises(SystemExit) as exc:
        _headline(tmp_path, capsys, alone)
    assert exc.value.code == 2 and "only cascadia rows" in capsys.readouterr().err


def test_runs_mark_throughputs_at_the_cap_in_the_summary_table_and_comparisons(tmp_path):
    """A bisection capped at 0.1x the rate: every plan meets the SLO there, so every throughput is the cap, a lower
    bound: the summary says so per seed, the printed table reads >=, and the comparison with Cascadia is undecided."""
    from experiments.aggregate import main as aggregate_main
    from experiments.run import run_experiment

    out = tmp_path / "run"
    out.mkdir()
    summary = run_experiment(_cfg([*SMALL, "seeds=2", "planner=[single_model,cascadia]", "throughput.lo=0.05",
                                   "throughput.hi=0.1"]), out)
    for s in summary["planners"].values():
        assert s["throughput_at_cap_per_seed"] == [True, True] and s["throughput_lower_bound"]
        assert s["throughput_rps"] == pytest.approx(s["throughput_cap_rps"])
    vs = summary["versus_cascadia"]["single_model"]
    assert vs["throughput_ratio_bound"] == "unknown" and vs["throughput_outcome"] == "undecided"
    assert pd.read_csv(out / "table.csv").throughput_lower_bound.all()
    aggregate_main([str(out), "--out", str(tmp_path / "t.csv")])
    assert pd.read_csv(tmp_path / "t.csv").throughput_lower_bound.all()
    assert pd.read_csv(tmp_path / "t_seeds.csv").throughput_at_cap.all()
