"""The paper's ablation study: Cascadia against its ablations (SLO scale and throughput per workload)."""
from __future__ import annotations

from experiments.figures._common import bars_per_panel


def plot(results_dir=None, out_dir=None):
    return bars_per_panel("ablation", [("", "slo_scale", "SLO scale (lower is better)"),
                                       ("", "throughput_rps", "throughput at SLO target (req/s)")],
                          "workload", "workload", "ablation", results_dir, out_dir)


if __name__ == "__main__":
    print(plot())
