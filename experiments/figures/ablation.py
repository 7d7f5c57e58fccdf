"""The paper's ablation study: Cascadia against its ablations (SLO scale and throughput per workload)."""
from __future__ import annotations

from experiments.figures._common import SLO_SCALE_LABEL, THROUGHPUT_LABEL, bars_per_panel


def plot(results_dir=None, out_dir=None):
    return bars_per_panel("ablation", [("", "slo_scale", "SLO scale", SLO_SCALE_LABEL),
                                       ("", "throughput_rps", "throughput", THROUGHPUT_LABEL)],
                          "workload", "workload (quality level 0.7)", "ablation", results_dir, out_dir)


if __name__ == "__main__":
    print(plot())
