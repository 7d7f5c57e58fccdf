"""Shared pytest fixtures: a SimPy env, the default cluster, catalog lookups, the path to ../shared data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import simpy
from hypothesis import settings

# CI runs the property tests with a fixed seed so a submission's result does not depend on which random examples
# that run happened to draw; locally they explore new examples every run (Hypothesis' default).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Tests choose their own horizons: a CASCADESIM_QUICK left in the environment (the README-commands test sets it for
# the `make test` it runs) must not shorten what they check.
from sim.common.quick import ENV_VAR as _QUICK_ENV_VAR  # noqa: E402

os.environ.pop(_QUICK_ENV_VAR, None)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def env() -> simpy.Environment:
    return simpy.Environment()


@pytest.fixture(scope="session")
def cluster():
    from sim.spec.hardware import load_cluster

    return load_cluster("paper_4x8_h100")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


# A test that starts a command line (a subprocess of an entry point) or runs the main job is an integration test
# wherever it lives.
_CLI_CALLS = ("subprocess.run(", "subprocess.Popen(", "sys.executable", "run_experiment(")


_CLI_HELPERS: dict[str, frozenset[str]] = {}


def _cli_helpers(module) -> frozenset[str]:
    """Names of the test module's own functions and fixtures that start a command line or run the main job (a
    `run_cli(...)` helper, a module-scoped run)."""
    import inspect

    name = getattr(module, "__name__", "")
    if name not in _CLI_HELPERS:
        found = set()
        for fname, fn in vars(module).items():
            fn = getattr(fn, "__wrapped__", fn)  # a fixture's own function
            if inspect.isfunction(fn) and fn.__module__ == name and not fname.startswith("test_"):
                try:
                    if any(call in inspect.getsource(fn) for call in _CLI_CALLS):
                        found.add(fname)
                except (OSError, TypeError):
                    pass
        _CLI_HELPERS[name] = frozenset(found)
    return _CLI_HELPERS[name]


def _runs_a_command_line(item) -> bool:
    import inspect
    import re

    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError, AttributeError):
        return False
    if any(call in source for call in _CLI_CALLS):
        return True
    helpers = _cli_helpers(item.module)  # a helper it calls, or a fixture of its module it uses
    return any(re.search(rf"\b{h}\(", source) or h in getattr(item, "fixturenames", ()) for h in helpers)


def pytest_collection_modifyitems(items):
    """Test tiers. integration: an end-to-end run (a command line, the main job or an experiment, a planner or the
    simulator on the shipped scenarios), marked in its file or found by _runs_a_command_line (directly or through a
    helper of its module); unit: every other test
    of the default suite (one module's logic, on fakes or small inputs). `make test-unit` runs the unit tier alone."""
    for item in items:
        if item.get_closest_marker("integration") is None and _runs_a_command_line(item):
            item.add_marker(pytest.mark.integration)
        if not any(item.get_closest_marker(m) for m in ("integration", "slow", "benchmark")):
            item.add_marker(pytest.mark.unit)
