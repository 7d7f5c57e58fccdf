"""Real Llama tiers: the Llama-3.1 8B -> 70B -> 405B (FP8) cascade on its own ZeroEval answers: SLO scale per
system, workload (GSM8K, MATH level 5, CRUXEval) and quality level (lower is better)."""
from __future__ import annotations

from experiments.figures._common import QUALITY_LEVEL_LABEL, SLO_SCALE_LABEL, bars_per_panel


def plot(results_dir=None, out_dir=None):
    return bars_per_panel("llama31", [("", "slo_scale", "{}: SLO scale", SLO_SCALE_LABEL)],
                          "q_min_level", QUALITY_LEVEL_LABEL, "llama31", results_dir, out_dir, panel_col="workload",
                          suptitle="Llama-3.1 8B -> 70B -> 405B (FP8), 32 H100, real per-question answers")


if __name__ == "__main__":
    print(plot())
