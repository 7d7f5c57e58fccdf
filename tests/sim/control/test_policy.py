"""sim.control.policy.LiveView on fakes: a policy sees only the arrivals so far (never a future one), rates over a
window counted by brute force, and the live plus loading replicas of each tier."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import simpy

from sim.control.policy import LiveView
from sim.workload.types import Workload


def _workload(arrival_s):
    n = len(arrival_s)
    return Workload("w", np.asarray(arrival_s, float), np.full(n, 10), np.full((n, 2), 5), np.zeros((n, 2)),
                    np.array([f"q{i}" for i in range(n)]), ("a", "b"))


def _view(now_s, arrived, cluster=None):
    env = simpy.Environment(initial_time=now_s)
    w = _workload([0.0, 1.0, 2.0, 2.5, 4.0, 9.0, 20.0])
    return LiveView(env, cluster, SimpleNamespace(arrived=arrived), w, record=lambda e: None), w


def test_recent_and_since_never_look_past_the_arrivals_so_far():
    view, w = _view(4.0, 5)
    assert view.now_s == 4.0 and view.arrived == 5
    assert view.recent(3).arrival_s.tolist() == [2.0, 2.5, 4.0]
    assert view.recent(50).num_requests == 5
    assert view.since(2.0).tolist() == [2, 3, 4]


@pytest.mark.parametrize("window_s", [1.0, 2.5, 4.0, 10.0])
def test_rate_is_the_arrivals_in_the_window_over_its_length(window_s):
    view, w = _view(4.0, 5)
    brute = sum(1 for t in w.arrival_s[:5] if 4.0 - window_s <= t <= 4.0)
    assert view.rate_rps(window_s) == pytest.approx(brute / window_s)


def test_current_replicas_are_the_live_ones_and_the_loading_ones_not_cancelled():
    rep = lambda name: SimpleNamespace(plan=name)  # noqa: E731
    cluster = SimpleNamespace(
        routers=[SimpleNamespace(replicas=[rep("t0a")]), SimpleNamespace(replicas=[])],
        pending=[SimpleNamespace(tier=1, plan="t1new", cancelled=False),
                 SimpleNamespace(tier=0, plan="t0gone", cancelled=True)])
    view, _ = _view(0.0, 0, cluster)
    assert view.current_replicas() == [["t0a"], ["t1new"]]
