"""Predicted-vs-measured scatter of the measured corpus, one panel per engine profile (log axes, one colour per source).

python -m sim.fidelity.fidelity_figure [--out results/figures/fidelity.png] [--corpus data/measurements]
Each point is one measured metric of one row, predicted with the shipped engine profile; the marker says the
kind of metric. The diagonal is a perfect prediction, the band +-20%. Rows the model does not predict are not drawn
(python -m sim.fidelity.validate --corpus lists them with their reasons).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.common.paths import PROJECT_ROOT
from sim.fidelity.corpus import CORPUS_DIR
from sim.fidelity.corpus_report import evaluate_corpus

BUCKET_MARKERS = {"prefill": ("o", "prefill / TTFT of a batch (ms)"),
                  "decode": ("s", "decode: tok/s, step ms or static-batch ms"),
                  "serving_ttft": ("^", "serving TTFT (ms, as published)"),
                  "serving_itl": ("v", "serving ITL / TPOT (ms, as published)"), "kernel": ("D", "kernel (ms)")}
PANELS_PER_ROW = 4


def draw(points, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = points[points.excluded == ""]
    engines = sorted(kept.engine.unique())
    if not engines:
        raise DataError("no predicted rows in the corpus: nothing to draw")
    colours = {s: plt.get_cmap("tab20")(i % 20) for i, s in enumerate(sorted(kept.source.unique()))}
    rows = -(-len(engines) // PANELS_PER_ROW)
    cols = min(len(engines), PANELS_PER_ROW)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 5.0 * rows), squeeze=False)
    for ax in axes.flat[len(engines):]:
        ax.set_visible(False)
    for ax, engine in zip(axes.flat, engines):
        mine = kept[kept.engine == engine]
        for (source, bucket), group in mine.groupby(["source", "bucket"]):
            marker, label = BUCKET_MARKERS[bucket]
            ax.scatter(group.measured, group.predicted, s=14, alpha=0.7, marker=marker,
                       color=colours[source], label=f"{source}: {label}")
        lo = min(mine.measured.min(), mine.predicted.min()) / 1.5
        hi = max(mine.measured.max(), mine.predicted.max()) * 1.5
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="grey", alpha=0.15, lw=0)
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured (unit per marker)",
               ylabel="predicted (same unit)",
               title=f"{engine} ({mine[['source', 'line']].drop_duplicates().shape[0]} rows)")
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    fig.suptitle("Cost model vs public measurements (shipped engine profiles; band = +-20%)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.fidelity.fidelity_figure", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "figures" / "fidelity.png")
    ap.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    args = ap.parse_args(argv)
    if args.out.is_dir():
        raise DataError(f"{args.out}: is a directory; --out takes a file name such as fidelity.png")
    print(f"wrote {draw(evaluate_corpus(args.corpus, loso=False).points, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
