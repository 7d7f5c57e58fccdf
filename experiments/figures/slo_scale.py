"""The paper's end-to-end SLO comparison: SLO scale at 95% attainment per system, workload and quality level (lower is better)."""
from __future__ import annotations

from experiments.figures._common import QUALITY_LEVEL_LABEL, SLO_SCALE_LABEL, bars_per_panel


def plot(results_dir=None, out_dir=None):
    return bars_per_panel("slo_throughput", [("", "slo_scale", "{}: SLO scale", SLO_SCALE_LABEL)],
                          "q_min_level", QUALITY_LEVEL_LABEL, "slo_scale", results_dir, out_dir, panel_col="workload")


if __name__ == "__main__":
    print(plot())
