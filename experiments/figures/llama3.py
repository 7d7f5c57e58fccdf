"""The paper's Llama cascade results: the Llama-3 8B -> 70B cascade: SLO scale and throughput per system and quality level."""
from __future__ import annotations

from experiments.figures._common import (QUALITY_LEVEL_LABEL, SLO_SCALE_LABEL, THROUGHPUT_LABEL, bars_per_panel,
                                         read_results, tier_names)


def plot(results_dir=None, out_dir=None):
    df = read_results("llama3", results_dir)
    tiers = " -> ".join(tier_names(df["cascade"].iloc[0])) if len(df) else "Llama-3 8B -> 70B"
    rate = f", {df['workload'].iloc[0]} x{df['rate_scale'].iloc[0]:g} rate" if len(df) else ""
    return bars_per_panel("llama3", [("", "slo_scale", "SLO scale", SLO_SCALE_LABEL),
                                     ("", "throughput_rps", "throughput", THROUGHPUT_LABEL)],
                          "q_min_level", QUALITY_LEVEL_LABEL, "llama3", results_dir, out_dir,
                          suptitle=f"{tiers}{rate}")


if __name__ == "__main__":
    print(plot())
