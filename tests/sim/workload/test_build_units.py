"""build_workload's edges and provenance: a window holding one request, an empty window's message, synthetic
arrivals that span the rate-scaled window, a config read from a YAML path (relative or absolute, named by its
stem), the meta every workload records, and a drift whose seed reaches its phases and whose phases of different
traces never share prefix blocks; an infinite answer length left out of the scaled lengths' per-question mean."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.common.errors import ConfigError
from sim.workload import build_workload
from sim.workload.build import _output_tokens
from sim.workload.quality import _answer_tokens

pytestmark = pytest.mark.unit

TIERS = ["Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]


def _csv_config(tmp_path, times, name="t", **extra) -> dict:
    path = tmp_path / f"{name}.csv"
    path.write_text("t,in,out\n" + "".join(f"{t},{100 + i},{5 + i}\n" for i, t in enumerate(times)))
    return {"name": name, "trace": {"path": str(path), "time_unit": "s",
                                    "columns": {"arrival": "t", "input_tokens": "in", "output_tokens": "out"}},
            "quality": {"dataset": "gsm8k", "tier_models": TIERS, "output_lengths": "trace"}, **extra}


def test_a_window_holding_exactly_one_request_is_a_one_request_workload(tmp_path):
    cfg = _csv_config(tmp_path, [0.0, 10.0, 20.0])
    w = build_workload(cfg, window=(5.0, 15.0))
    assert w.num_requests == 1 and w.arrival_s.tolist() == [5.0] and w.input_tokens.tolist() == [101]


def test_an_empty_window_names_the_window_and_the_trace(tmp_path):
    cfg = _csv_config(tmp_path, [0.0, 10.0, 20.0])
    with pytest.raises(ConfigError, match=r"no request of .*t\.csv arrives in the window \[11\.0, 15\.0\) s"):
        build_workload(cfg, window=(11.0, 15.0))


def test_one_request_in_the_window_and_no_rate_asks_for_rate_rps(tmp_path):
    """A synthetic process infers its rate from the window's (n - 1) gaps: one request has none."""
    cfg = _csv_config(tmp_path, [0.0, 10.0, 20.0])
    with pytest.raises(ConfigError, match="arrivals.rate_rps is needed"):
        build_workload(cfg, window=(15.0, 30.0), process="poisson")


def test_synthetic_arrivals_fill_the_rate_scaled_window(tmp_path):
    """Poisson at rate_scale 4 over a window of 100 s at 1 req/s: the replayed window lasts 100 / 4 = 25 s, so
    every arrival is inside [0, 25) and about 100 of them come (the window's count, as a replay would give)."""
    cfg = _csv_config(tmp_path, np.arange(101.0).tolist())
    w = build_workload(cfg, process="poisson", rate_scale=4.0, seed=5)
    assert w.arrival_s.max() < 25.0
    assert 60 <= w.num_requests <= 140  # Poisson(100): 4 standard deviations
    assert w.meta["window_s"] == [0.0, float(np.nextafter(100.0, np.inf))]


def test_meta_records_the_trace_seed_process_and_dropped_questions(tmp_path):
    cfg = _csv_config(tmp_path, [0.0, 1.0, 2.0, 3.0])
    w = build_workload(cfg, seed=11, process="gamma", cv=2.5, rate_rps=1.0, num_requests=5)
    m = w.meta
    assert m["trace"].endswith("t.csv") and m["seed"] == 11 and m["process"] == "gamma" and m["cv"] == 2.5
    assert isinstance(m["dropped_contaminated_questions"], int) and isinstance(m["dropped_invalid_questions"], int)
    assert build_workload(cfg, process="poisson", rate_rps=1.0, num_requests=5).meta["cv"] is None


def test_a_yaml_path_is_read_relative_or_absolute_and_named_by_its_stem(tmp_path, monkeypatch):
    cfg = _csv_config(tmp_path, [0.0, 1.0, 2.0])
    del cfg["name"]
    (tmp_path / "my_load.yaml").write_text(yaml.safe_dump(cfg))
    w = build_workload(str(tmp_path / "my_load.yaml"))
    assert w.name == "my_load" and w.num_requests == 3
    monkeypatch.chdir(tmp_path)
    assert build_workload("my_load.yaml").num_requests == 3
    with pytest.raises(ConfigError, match=r"^missing\.yaml: workload config file not found"):
        build_workload("missing.yaml")


def _mooncake_yaml(tmp_path, name: str) -> str:
    """A trace whose every request carries the same two hash blocks (a shared system prompt)."""
    rows = [{"timestamp": 1000 * i, "input_length": 1000, "output_length": 8, "hash_ids": [0, 1]} for i in range(6)]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = {"name": name, "trace": {"path": str(path), "format": "jsonl", "time_unit": "ms", "hash_block_tokens": 512,
                                   "columns": {"arrival": "timestamp", "input_tokens": "input_length",
                                               "output_tokens": "output_length", "hash_ids": "hash_ids"}},
           "quality": {"dataset": "gsm8k", "tier_models": TIERS, "output_lengths": "trace"}}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / f"{name}.yaml")


def _drift(tmp_path, second: str) -> dict:
    return {"name": "d", "seed": 0, "phases": [
        {"workload": _mooncake_yaml(tmp_path, "a"), "start_s": 0.0, "duration_s": 6.0, "rate_scale": 1.0},
        {"workload": _mooncake_yaml(tmp_path, second), "start_s": 0.0, "duration_s": 6.0, "rate_scale": 1.0}]}


def test_drift_phases_of_different_traces_share_no_prefix_block_and_record_their_seed(tmp_path):
    """The same hash ids in two traces are different prompts: a drift over traces a and b shares blocks within a
    phase only; over a and a again, across phases too."""
    w = build_workload(_drift(tmp_path, "b"), seed=3)
    assert w.meta["seed"] == 3 and w.meta["dataset"] == "drift" and w.num_requests == 12
    chained = w.prefix.chained
    assert chained[0] == chained[5] and chained[6] == chained[11] and chained[0][0] != chained[6][0]
    same = build_workload(_drift(tmp_path, "a"), seed=3).prefix.chained
    assert same[0] == same[6]


def test_a_drifts_seed_reaches_its_phases():
    """Phases draw their question binding from the drift's seed: the same seed gives the same workload, another
    seed other questions (with the phase's own config seed they would never change)."""
    a, b = build_workload("drift", seed=1), build_workload("drift", seed=2)
    np.testing.assert_array_equal(a.question_ids, build_workload("drift", seed=1).question_ids)
    assert not np.array_equal(a.question_ids, b.question_ids)


def test_a_drifts_tier_names_join_each_phases_name_with_a_bar():
    w = build_workload("drift")
    for t in range(len(w.tier_models)):
        names = dict.fromkeys(build_workload(n, num_requests=5).tier_models[t] for n in ("conversation", "coding", "math"))
        assert w.tier_models[t] == " | ".join(names)
    assert any(" | " in name for name in w.tier_models)


def test_duration_s_counts_from_the_configs_window_start(tmp_path):
    cfg = _csv_config(tmp_path, np.arange(30.0).tolist(), window={"start_s": 10.0})
    w = build_workload(cfg, duration_s=5.0)
    assert w.meta["window_s"] == [10.0, 15.0] and w.num_requests == 5


def test_a_single_trace_with_hashes_records_its_block_size(tmp_path):
    w = build_workload(_mooncake_yaml(tmp_path, "a"))
    assert w.meta["hash_block_tokens"] == 512 and w.prefix.block_tokens == 512


def test_a_two_tier_cascade_maps_every_drift_phase_to_two_tiers():
    from sim.spec.cascade import CascadeSpec, TierSpec
    from sim.spec.models import load_model

    two = CascadeSpec("c", tuple(TierSpec(load_model(m)) for m in ("llama3_8b", "llama3_70b")))
    w = build_workload("drift", cascade=two)
    assert len(w.tier_models) == 2 and w.scores.shape[1] == 2


def test_workload_names_are_the_yaml_files_of_conf_workload():
    from sim.common.paths import CONF_DIR
    from sim.workload.build import workload_names

    assert workload_names() == sorted(p.name[:-5] for p in (CONF_DIR / "workload").iterdir() if p.name.endswith(".yaml"))
    assert "conversation" in workload_names() and "drift" in workload_names()


def test_scaled_lengths_ignore_an_infinite_answer_length():
    """A quality table's answer length "inf" parses (pd.to_numeric) and passes the negative-length check, and counts
    as missing (not finite): its cell falls back to the trace's length and it must not enter the question's mean, or
    every other tier's ratio becomes x / inf = 0 tokens. Hand-worked: row 0 has mean 100, so ratios 0.5 and 1.5 of the
    trace's 100; row 1's only finite answer is 40, so tier 1 keeps ratio 1 of the trace's 200."""
    assert np.isposinf(_answer_tokens(pd.Series(["inf"]), None).iloc[0])
    tt = SimpleNamespace(scores=np.zeros((2, 2)), answer_tokens=np.array([[50.0, 150.0], [np.inf, 40.0]]),
                         dataset="t")
    out, fell_back = _output_tokens("scaled", tt, np.array([0, 1]), np.array([100, 200], dtype=np.int64), "w")
    np.testing.assert_array_equal(out, [[50.0, 150.0], [200.0, 200.0]])
    assert fell_back == 1
