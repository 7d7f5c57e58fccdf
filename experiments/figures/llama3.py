"""The paper's Llama cascade results: the Llama-3 8B -> 70B cascade: SLO scale and throughput per system and quality level."""
from __future__ import annotations

from experiments.figures._common import bars_per_panel


def plot(results_dir=None, out_dir=None):
    return bars_per_panel("llama3", [("", "slo_scale", "Llama-3 8B->70B: SLO scale"),
                                     ("", "throughput_rps", "Llama-3 8B->70B: throughput (req/s)")],
                          "q_min_level", "quality level", "llama3", results_dir, out_dir)


if __name__ == "__main__":
    print(plot())
