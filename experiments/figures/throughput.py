"""The paper's throughput comparison: throughput (req/s) at the SLO scale target per system, workload and quality level."""
from __future__ import annotations

from experiments.figures._common import QUALITY_LEVEL_LABEL, THROUGHPUT_LABEL, bars_per_panel


def plot(results_dir=None, out_dir=None):
    return bars_per_panel("slo_throughput", [("", "throughput_rps", "{}: throughput", THROUGHPUT_LABEL)],
                          "q_min_level", QUALITY_LEVEL_LABEL, "throughput", results_dir, out_dir, panel_col="workload")


if __name__ == "__main__":
    print(plot())
