"""sim.common.quick: which values of CASCADESIM_QUICK switch smoke mode on, and that a user's own key always wins."""
from __future__ import annotations

import pytest

from sim.common.quick import ENV_VAR, EXPERIMENT_OVERRIDES, announce, experiment_overrides, quick_mode


@pytest.mark.parametrize("value,on", [("1", True), ("yes", True), (" TRUE ", True), ("", False), ("0", False),
                                      ("false", False), ("No", False)])
def test_quick_mode_reads_the_variable(monkeypatch, value, on):
    monkeypatch.setenv(ENV_VAR, value)
    assert quick_mode() is on


def test_unset_is_off(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert not quick_mode()


def test_the_users_keys_are_left_out_of_the_quick_overrides():
    assert experiment_overrides([]) == list(EXPERIMENT_OVERRIDES)
    kept = experiment_overrides(["horizon_s=30", "+throughput.iters=5", "planner=[cascadia]"])
    assert not any(o.startswith(("horizon_s=", "throughput.iters=")) for o in kept)
    assert len(kept) == len(EXPERIMENT_OVERRIDES) - 2


def test_announce_is_one_stderr_line(capsys):
    announce("short horizons")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ENV_VAR in err and "short horizons" in err
