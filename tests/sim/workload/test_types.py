"""sim.workload.types.Workload: its rate, quality bounds, rows, windows and rate scaling against numpy on its arrays."""
from __future__ import annotations

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.workload.types import Workload


def _w(arrival_s, meta=None):
    n = len(arrival_s)
    rng = np.random.default_rng(0)
    return Workload("w", np.asarray(arrival_s, float), rng.integers(1, 100, n), rng.integers(1, 50, (n, 3)),
                    rng.uniform(0, 100, (n, 3)), np.array([f"q{i}" for i in range(n)]), ("a", "b", "c"),
                    meta or {})


def test_rate_duration_and_quality_bounds():
    w = _w([1.0, 2.0, 4.0, 5.0])
    assert w.num_requests == 4 and w.num_tiers == 3 and w.duration_s == 4.0 and w.rate_rps == 0.75
    lo, hi = w.quality_bounds()
    assert lo == pytest.approx(w.scores[:, 0].mean()) and hi == pytest.approx(w.scores[:, 2].mean())
    assert w.quality_at_level(0.25) == pytest.approx(lo + 0.25 * (hi - lo))
    assert _w([3.0]).rate_rps == 0.0 and _w([3.0]).duration_s == 0.0


def test_arrays_are_read_only():
    with pytest.raises(ValueError):
        _w([0.0, 1.0]).arrival_s[0] = 5.0


def test_take_keeps_arrival_order_and_every_column_of_the_row():
    w = _w([0.0, 1.0, 2.0, 3.0, 4.0])
    t = w.take(np.array([3, 0, 2]))
    assert t.arrival_s.tolist() == [0.0, 2.0, 3.0] and t.question_ids.tolist() == ["q0", "q2", "q3"]
    assert np.array_equal(t.scores, w.scores[[0, 2, 3]]) and np.array_equal(t.output_tokens, w.output_tokens[[0, 2, 3]])


def test_window_is_half_open_and_re_timed_to_start_at_zero():
    w = _w([0.0, 1.0, 2.0, 3.0, 4.0]).window(1.0, 3.0)
    assert w.arrival_s.tolist() == [0.0, 1.0] and w.question_ids.tolist() == ["q1", "q2"]


def test_scale_rate_divides_arrivals_and_keeps_drift_phases_in_step():
    w = _w([0.0, 2.0, 4.0], {"phases": [{"start_s": 0.0, "end_s": 4.0, "rate_rps": 0.5}]})
    s = w.scale_rate(2.0)
    assert s.arrival_s.tolist() == [0.0, 1.0, 2.0] and s.rate_rps == pytest.approx(2 * w.rate_rps)
    assert s.meta["phases"] == [{"start_s": 0.0, "end_s": 2.0, "rate_rps": 1.0}]
    assert w.meta["phases"][0]["end_s"] == 4.0  # the original is unchanged
    with pytest.raises(ConfigError, match="must be positive"):
        w.scale_rate(0.0)
