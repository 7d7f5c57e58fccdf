"""Judge: oracle gates on the real score, noisy adds calibrated noise; latency distributions have the asked mean."""
from __future__ import annotations

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.workload import Judge, calibrate_noise_std, decision_agreement


def test_oracle_gate_is_the_real_score():
    scores = np.array([0.0, 35.0, 100.0])
    np.testing.assert_array_equal(Judge({"kind": "oracle"}).gate_scores(scores, 0, np.random.default_rng(0)), scores)


def test_noisy_gate_spreads_scores_within_0_100_and_is_seeded():
    judge = Judge({"kind": "noisy", "noise_std": 20.0})
    scores = np.full(50000, 60.0)
    a = judge.gate_scores(scores, 1, np.random.default_rng(5))
    b = judge.gate_scores(scores, rng=np.random.default_rng(5), tier=1)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 100
    assert a.std() == pytest.approx(20.0, rel=0.03) and a.mean() == pytest.approx(60.0, abs=0.5)
    # gate_scores(scores, rng) is accepted too.
    np.testing.assert_array_equal(judge.gate_scores(scores, np.random.default_rng(5)), a)


@pytest.mark.parametrize("dist,cv", [("constant", 0.0), ("lognormal", 0.5), ("gamma", 1.0), ("uniform", 0.3)])
def test_latency_has_the_configured_mean_and_cv(dist, cv):
    judge = Judge({"latency": {"dist": dist, "mean_s": 0.27, "cv": cv}})
    x = judge.latency_s(np.random.default_rng(1), 100000)
    assert x.mean() == pytest.approx(0.27, rel=0.01)
    assert x.std() / x.mean() == pytest.approx(cv, abs=0.02)
    assert np.all(x >= 0)
    assert Judge().latency_s(np.random.default_rng(0)) == 0.27  # the paper's default


def test_calibrated_noise_hits_the_target_agreement_empirically():
    rng = np.random.default_rng(2)
    scores = np.where(rng.random(20000) < 0.6, 100.0, 0.0)
    std = calibrate_noise_std(scores, threshold=50.0, agreement=0.85)
    assert decision_agreement(scores, 50.0, std) == pytest.approx(0.85, abs=1e-6)
    gate = Judge({"kind": "noisy", "noise_std": std}).gate_scores(scores, 0, rng)
    assert np.mean((gate >= 50) == (scores >= 50)) == pytest.approx(0.85, abs=0.01)


def test_bad_judge_config_is_named():
    with pytest.raises(ConfigError, match="judge.kind is 'gpt'; valid: oracle, noisy"):
        Judge({"kind": "gpt"})
    with pytest.raises(ConfigError, match="judge.latency: unknown key"):
        Judge({"latency": {"mean": 0.3}})
