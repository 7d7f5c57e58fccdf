"""Shared pytest fixtures: a SimPy env, the default cluster, catalog lookups, the path to ../shared data."""
from __future__ import annotations

from pathlib import Path

import pytest
import simpy

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def env() -> simpy.Environment:
    return simpy.Environment()


@pytest.fixture(scope="session")
def cluster():
    from sim.hardware import load_cluster

    return load_cluster("paper_4x8_h100")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA
