"""Figures a newcomer can read: y from zero, lower bounds at the throughput cap marked, zeros drawn and
labelled, legends outside the axes, tiers named by model, and no figure module switching matplotlib's backend."""
import os
import subprocess
import sys

import pandas as pd
import pytest
from matplotlib.figure import Figure

from experiments.figures import _common
from sim.common.paths import PROJECT_ROOT

# Every figure except drift (its online experiment is being rebuilt): they read committed tables only.
NAMES = ["slo_scale", "throughput", "cost", "ablation", "quality_shift", "llama3", "llama31", "node_failure", "planner_time"]

pytestmark = pytest.mark.integration  # figures drawn from the committed tables


def test_cap_bars_are_hatched_lower_bounds_and_zero_is_drawn():
    df = pd.DataFrame({"planner": ["a", "b", "c"], "q": [0.5, 0.5, 0.5], "throughput_rps": [121.3, 0.0, 50.0],
                       "throughput_cap_rps": [121.3, 121.3, 121.3], "workload": "conversation", "rate_scale": 2.5})
    ax = Figure().subplots()
    assert _common.grouped_bars(ax, df, "q", "throughput_rps", ["a", "b", "c"], lower_bound_cap=True)
    bars = ax.patches
    assert bars[0].get_hatch() and not bars[2].get_hatch()
    assert bars[1].get_height() > 0  # a zero is a visible stub, not a missing bar
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("≥") == 1 and labels.count("0") == 1
    assert ax.get_ylim()[0] == 0


def test_cap_is_recomputed_from_the_shipped_trace_when_the_table_lacks_it():
    # The committed sweep's capped bars all read 121.34 req/s: 10 x the first 300 s of conversation at x2.5.
    row = pd.Series({"workload": "conversation", "rate_scale": 2.5})
    assert _common.throughput_cap_rps(row) == pytest.approx(121.3448, rel=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_figure_from_committed_tables_has_zero_based_axes_and_outside_legend(name, monkeypatch, tmp_path):
    import importlib

    module = importlib.import_module(f"experiments.figures.{name}")
    figs = []
    real_save = _common.save
    capture = lambda fig, *a, **k: figs.append(fig) or real_save(fig, name, tmp_path)  # noqa: E731
    monkeypatch.setattr(_common, "save", capture)
    if hasattr(module, "save"):
        monkeypatch.setattr(module, "save", capture)
    module.plot(out_dir=tmp_path)
    (fig,) = figs
    assert fig.legends and all(ax.get_legend() is None for ax in fig.axes)
    for ax in fig.axes:
        assert ax.get_ylabel(), f"{name}: an axis without a label"
        if ax.get_yscale() == "linear":
            assert ax.get_ylim()[0] == 0, f"{name}: y axis does not start at zero"


def test_tiers_are_named_by_model():
    assert _common.tier_names("deepseek_r1_distill_qwen_7b->deepseek_v3") == ["DeepSeek-R1-Distill-Qwen-7B",
                                                                              "DeepSeek-V3"]


def test_figure_modules_leave_the_backend_alone():
    code = ("import matplotlib, importlib; [importlib.import_module('experiments.figures.' + n) for n in "
            f"{NAMES + ['main_job']}]; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT,
                         env={**os.environ, "MPLBACKEND": "svg"}, check=True).stdout
    assert out.strip() == "svg"


def test_main_job_marks_the_cap_and_draws_zero(tmp_path, monkeypatch):
    from experiments.figures import main_job

    drawn = []
    monkeypatch.setattr(main_job.Figure, "savefig", lambda self, *a, **k: drawn.append(self))
    table = pd.DataFrame({"planner": ["single_model", "cascadia"], "slo_scale": [10.0, 6.0],
                          "throughput_rps": [0.0, 121.3], "quality": [88.0, 72.0], "gpu_s_per_request": [3.1, 2.7]})
    main_job.plot_main_job(table, tmp_path / "m.png", title="t", throughput_cap_rps=121.3)
    ax = drawn[0].axes[1]
    assert [bool(b.get_hatch()) for b in ax.patches] == [False, True]
    assert ax.patches[0].get_height() > 0 and {"0", "≥"} <= {t.get_text() for t in ax.texts}
