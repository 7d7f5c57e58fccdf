"""Every cost-model test builds its replicas afresh: the build cache (cost_model._build_replica_cost) is emptied
before each test, so what a test checks never depends on which earlier test built the same deployment first, and a
mutation run (mutmut maps each test to the functions it calls, then forks every mutant's tests from a process that
may hold cached builds) sees each test reach the build code it exercises. A build takes well under a millisecond."""
from __future__ import annotations

import pytest

from sim.perf import cost_model


@pytest.fixture(autouse=True)
def _fresh_replica_cost_builds():
    cost_model._build_replica_cost.cache_clear()
    yield
