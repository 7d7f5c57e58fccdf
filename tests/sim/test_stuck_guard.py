"""A stuck simulation ends as an error, not a hang: the engine loop's guard (sim.runtime.replica) and the suite's
per-test timeout (pytest-timeout, pyproject.toml)."""
from __future__ import annotations

import pytest
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

from sim.common.errors import SimulationStuck
from sim.runtime.kv_cache import KVCache
from sim.simulator import SimConfig, simulate


def _leak_one_block(self, seq):
    """KVCache.release with the bug that once hung the suite: one block too few goes back to the pool."""
    self.free_blocks += seq.blocks - 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_a_kv_leak_stops_the_run_with_a_clear_error(monkeypatch, mode):
    monkeypatch.setattr(KVCache, "release", _leak_one_block)
    with pytest.raises(SimulationStuck, match=r"scheduled nothing .* KV blocks free \(were KV blocks leaked\?\)"):
        simulate(plan((1, 0)), llama_cascade(), cluster(), poisson_workload(200, 40.0, 0), SimConfig(mode=mode),
                 cost_factory=fake_factory(kv_capacity_blocks=100), judge=OracleJudge())


def test_the_same_run_without_the_leak_completes_and_returns_every_block():
    r = simulate(plan((1, 0)), llama_cascade(), cluster(), poisson_workload(200, 40.0, 0), SimConfig(),
                 cost_factory=fake_factory(kv_capacity_blocks=100), judge=OracleJudge())
    assert (r.requests.status == "completed").all()
    assert r.requests.preemptions.sum() > 0  # the small cache is under pressure, as in the leaking run
    assert [rep["kv_used_blocks_end"] for rep in r.meta["replicas"]] == [0]


def test_the_suite_has_a_per_test_timeout(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert float(pytestconfig.getini("timeout")) > 0
