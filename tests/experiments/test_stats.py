"""Tests of the bootstrap CIs and the win/tie/loss rule (experiments.stats)."""
import numpy as np
import pytest

from experiments.stats import bootstrap_ci95, mean_ci95, outcome, paired_ratio_ci95


def test_ci_covers_true_mean_at_about_95_percent():
    rng = np.random.default_rng(1)
    hits = sum(lo <= 5.0 <= hi for lo, hi in
               (bootstrap_ci95(rng.normal(5.0, 2.0, 30), n_boot=1000, seed=i) for i in range(300)))
    assert 0.88 <= hits / 300 <= 0.99  # percentile bootstrap undercovers slightly at n=30


def test_ci_degenerate_inputs():
    assert bootstrap_ci95([3.0]) == (3.0, 3.0)
    assert all(np.isnan(bootstrap_ci95([])))
    assert mean_ci95([1.0, float("nan"), 3.0])["n"] == 2
    # A constant sample has a zero-width interval at its value (every resample has the same mean).
    assert bootstrap_ci95([2.5] * 8, seed=7) == (2.5, 2.5)


def test_ci_width_matches_normal_theory_on_a_large_sample():
    """Independent oracle: for n = 400 the bootstrap distribution of the mean is close to normal, so the 95%
    interval is mean +- 1.96 s / sqrt(n) to within a few percent (a 90% interval would be 16% narrower)."""
    x = np.random.default_rng(3).exponential(2.0, 400)
    lo, hi = bootstrap_ci95(x, seed=5)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.06)
    assert (lo + hi) / 2 == pytest.approx(x.mean(), abs=0.15 * half)
    # The seed is used (another seed, another interval) and kept (the same seed, the same interval).
    assert bootstrap_ci95(x, seed=6) != (lo, hi) and bootstrap_ci95(x, seed=5) == (lo, hi)


def test_paired_ratio_cancels_common_seed_noise():
    rng = np.random.default_rng(0)
    common = rng.normal(10, 3, 10)  # large seed-to-seed swing shared by both systems
    r = paired_ratio_ci95(common * 1.2, common)
    assert r["mean"] == pytest.approx(1.2)
    assert r["ci95"][0] == pytest.approx(1.2) and r["ci95"][1] == pytest.approx(1.2)
    with pytest.raises(ValueError):
        paired_ratio_ci95([1, 2], [1])


@pytest.mark.parametrize("ci,null,hib,expected", [
    ((0.1, 0.5), 0.0, True, "win"), ((-0.5, -0.1), 0.0, True, "loss"), ((-0.1, 0.2), 0.0, True, "tie"),
    ((1.1, 1.3), 1.0, False, "loss"), ((0.7, 0.9), 1.0, False, "win"), ((float("nan"), 1.0), 0.0, True, "tie"),
])
def test_outcome(ci, null, hib, expected):
    assert outcome(ci, null=null, higher_is_better=hib) == expected
