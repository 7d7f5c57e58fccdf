"""experiments.planner_time's command line: cluster sizes that are not whole 8-GPU nodes are one `error:` line and exit
2 before any planning, and nothing is written (the timing sweep itself is tests/experiments/test_run.py's)."""
from __future__ import annotations

import pytest

from experiments.planner_time import DEFAULT_GPUS, main


@pytest.mark.parametrize("gpus", [["12"], ["0"], ["8", "-8"]])
def test_sizes_that_are_not_whole_nodes_are_refused_before_planning(gpus, tmp_path, capsys, monkeypatch):
    import planners.base

    monkeypatch.setattr(planners.base, "get_planner", lambda *a, **k: pytest.fail("planned before the check"))
    with pytest.raises(SystemExit) as exit_:
        main(["--gpus", *gpus, "--out", str(tmp_path / "t.csv"), "--raw-dir", str(tmp_path / "raw")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: --gpus must be positive multiples of 8")
    assert err.count("\n") == 1 and not any(tmp_path.iterdir())


def test_the_default_sizes_are_whole_nodes_up_to_the_measured_limit():
    from sim.common.config_checks import MAX_CLUSTER_GPUS

    assert all(g % 8 == 0 for g in DEFAULT_GPUS) and max(DEFAULT_GPUS) == MAX_CLUSTER_GPUS
