"""sim.workload.arrivals against renewal-process theory: gaps have mean 1/rate and the asked coefficient of variation,
the first arrival is at 0, a duration keeps exactly the arrivals before it, and a seed gives the same times."""
from __future__ import annotations

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.workload.arrivals import gamma_interarrivals_s, renewal_arrivals_s


@pytest.mark.parametrize("rate_rps,cv", [(4.0, 1.0), (10.0, 0.5), (2.0, 3.0)])
def test_gaps_have_the_asked_mean_and_cv(rate_rps, cv):
    gaps = gamma_interarrivals_s(rate_rps, cv, 200_000, np.random.default_rng(0))
    assert gaps.mean() == pytest.approx(1 / rate_rps, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.03)
    assert (gaps >= 0).all()


def test_n_arrivals_start_at_zero_and_never_go_back():
    t = renewal_arrivals_s(5.0, 2.0, np.random.default_rng(1), n=1000)
    assert t.size == 1000 and t[0] == 0.0 and (np.diff(t) >= 0).all()
    assert renewal_arrivals_s(5.0, 1.0, np.random.default_rng(1), n=1).tolist() == [0.0]


def test_a_duration_keeps_every_arrival_before_it_and_the_count_matches_the_rate():
    rate, duration = 20.0, 500.0
    t = renewal_arrivals_s(rate, 1.0, np.random.default_rng(2), duration_s=duration)
    assert t[0] == 0.0 and t.max() < duration
    # Poisson count over the window: mean rate x duration, sd sqrt of it; 5 sd is a loose, non-flaky bound.
    assert abs(t.size - rate * duration) < 5 * np.sqrt(rate * duration)


def test_the_same_seed_gives_the_same_arrivals():
    a = renewal_arrivals_s(3.0, 1.5, np.random.default_rng(7), duration_s=300.0)
    b = renewal_arrivals_s(3.0, 1.5, np.random.default_rng(7), duration_s=300.0)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kwargs", [{"rate_rps": 0.0, "cv": 1.0}, {"rate_rps": 1.0, "cv": 0.0}])
def test_a_rate_or_cv_that_is_not_positive_is_a_config_error(kwargs):
    with pytest.raises(ConfigError, match="rate_rps > 0 and cv > 0"):
        gamma_interarrivals_s(n=3, rng=np.random.default_rng(0), **kwargs)


def test_neither_a_count_nor_a_duration_is_a_config_error():
    with pytest.raises(ConfigError, match="num_requests or a positive duration"):
        renewal_arrivals_s(1.0, 1.0, np.random.default_rng(0))
