"""The run-to-run floor (sim.fidelity.run_spread): the best one value per configuration, against hand-worked cases and
a brute-force grid."""
from __future__ import annotations

import numpy as np
import pytest

from sim.fidelity.run_spread import best_constant, floor_mape_pct


def test_best_constant_of_two_runs_worked_by_hand():
    # 100 and 150 ms: c = 100 costs 0 + 50/150 = 33.3 %; c = 150 costs 50 % + 0; anything between costs more than
    # 33.3 % (the 1/100 slope beats the 1/150 one), so the lower run is the best single value.
    c, ape_sum = best_constant([100.0, 150.0])
    assert c == 100.0 and ape_sum == pytest.approx(100 / 3)
    # Floor over three points: configuration a (two runs) 33.3, configuration b (one run) 0: 11.1 % mean.
    assert floor_mape_pct([("a", 100.0), ("a", 150.0), ("b", 80.0)]) == pytest.approx(100 / 9)


def test_best_constant_matches_a_brute_force_grid():
    rng = np.random.default_rng(7)
    for _ in range(20):
        m = rng.uniform(50, 500, size=rng.integers(1, 7))
        grid = np.linspace(m.min(), m.max(), 20001)
        brute = (np.abs(grid[:, None] / m[None, :] - 1).sum(axis=1) * 100).min()
        assert best_constant(list(m))[1] == pytest.approx(brute, rel=1e-3, abs=1e-6)
        assert best_constant(list(m))[1] <= brute + 1e-9


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        best_constant([])
    with pytest.raises(ValueError):
        best_constant([0.0, 1.0])


def test_inferencex_floor_is_below_every_one_value_model_such_as_the_median_run():
    from collections import defaultdict

    from sim.fidelity.run_spread import inferencex_points

    pts = inferencex_points("closed_ttft_ms")
    assert len(pts) == 232
    groups = defaultdict(list)
    for key, value, _ in pts:
        groups[key].append(value)
    median = {k: float(np.median(v)) for k, v in groups.items()}
    median_mape = np.mean([abs(median[k] / v - 1) * 100 for k, v, _ in pts])
    floor = floor_mape_pct([(k, v) for k, v, _ in pts])
    assert 0 < floor <= median_mape


def test_signed_error_table_worked_by_hand():
    from sim.fidelity.run_spread import signed_error_table

    # Configuration "1k": predicted 110 for 100 (+10 %) and 90 for 120 (-25 %): mean signed -7.5 %, MAPE 17.5 %;
    # configuration "8k": 300 for 400 (-25 %).
    table = signed_error_table(["1k", "8k", "1k"], [100.0, 400.0, 120.0], [110.0, 300.0, 90.0])
    assert table["1k"] == (2, pytest.approx(-7.5), pytest.approx(17.5))
    assert table["8k"] == (1, pytest.approx(-25.0), pytest.approx(25.0))
    with pytest.raises(ValueError):
        signed_error_table(["a"], [0.0], [1.0])


def test_by_config_separates_prompt_lengths_and_matches_the_per_point_errors(capsys):
    """The --by-config report's per-prompt-length lines are the means of the points' own signed errors (an
    independent recomputation from predict_points), and they show the bias issue 18's sixth pass started from: the
    non-MTP TensorRT-LLM 8k-prompt points are predicted fast on the whole."""
    from sim.fidelity.engine_fit import predict_points
    from sim.fidelity.run_spread import _corpus_rows, main

    assert main(["--by-config"]) == 0
    out = capsys.readouterr().out
    rows = _corpus_rows()
    pred = predict_points(rows)
    pred = pred[pred.metric == "closed_ttft_ms"]
    by = {r.line: r for r in rows}
    sel = [(p / m - 1) * 100 for line, m, p in zip(pred.line, pred.measured, pred.predicted)
           if by[line].engine == "trtllm_pytorch" and not by[line].mtp_draft_tokens and not by[line].dp_attention
           and by[line].input_tokens == 8192]
    line = next(s for s in out.splitlines() if s.startswith("trtllm_pytorch  mtp False adp False ISL  8192"))
    assert f"points {len(sel):3d}" in line and f"signed {np.mean(sel):+6.1f} %" in line
    assert np.mean(sel) < 0
