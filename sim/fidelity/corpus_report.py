"""Error of the cost model on the measured corpus, per source and per kind of metric, in sample and leave-one-source-out.

Used by `python -m sim.fidelity.validate --corpus`, `python -m sim.fidelity.calibrate --engine` and the fidelity figure.
In-sample errors use the shipped engine profiles (conf/engine); leave-one-source-out errors refit each fitted
engine without the source (sim.fidelity.engine_fit). Summary buckets: prefill = batch-1 first-token latency rows;
decode = offline output-throughput rows (static and in-flight batching; decode steps dominate their time);
serving_ttft / serving_itl = TTFT / ITL (TPOT) of benchmark-client rows, through the serving simulation (request-rate
rows) or the closed-loop steady state (fixed-concurrency rows, sim.fidelity.steady_state); kernel = kernel-floor rows
(an all-reduce, one layer's operators). Issue 18 adds static-batch latency, batch-1 decode rate and decode-step rows
to decode, and a per-engine table beside the per-source one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.fidelity.corpus import CORPUS_DIR, corpus_files, load_corpus, source_name
from sim.fidelity.engine_fit import leave_one_source_out, predict_points

SUMMARY_BUCKETS = ("decode", "prefill", "serving_ttft", "serving_itl", "kernel")
LOSO_MIN_ROWS = 10  # the Done-means targets apply to sources with at least this many rows
TARGET_PCT = {"decode": 15.0, "serving_itl": 15.0, "prefill": 20.0, "serving_ttft": 20.0, "kernel": 15.0}


@dataclass(frozen=True)
class CorpusEvaluation:
    points: pd.DataFrame  # one line per (row, metric): predicted (shipped profile), loso_predicted, excluded
    skipped: pd.DataFrame  # rows not mapped onto the model, with their reason
    sources: tuple[str, ...]


def _round(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 2)


def evaluate_corpus(corpus_dir: Path = CORPUS_DIR, with_serving: bool = True, loso: bool = True) -> CorpusEvaluation:
    """Shipped-profile predictions of every row, and (loso) the leave-one-source-out ones (the slow part: refits)."""
    rows, skipped = load_corpus(corpus_dir)
    shipped = predict_points(rows, None, with_serving)
    if loso:
        held, _ = leave_one_source_out(rows, with_serving, shipped=shipped)
        points = shipped.assign(loso_predicted=held["predicted"].to_numpy(), loso_ape_pct=held["ape_pct"].to_numpy())
    else:
        points = shipped.assign(loso_predicted=float("nan"), loso_ape_pct=float("nan"))
    sources = tuple(sorted(source_name(p) for p in corpus_files(corpus_dir)))
    return CorpusEvaluation(points, pd.DataFrame(skipped, columns=["source", "line", "model", "kind", "reason"]),
                            sources)


def summary_line(ev: CorpusEvaluation) -> dict:
    kept = ev.points[ev.points.excluded == ""]
    out = {"rows": int(kept[["source", "line"]].drop_duplicates().shape[0]), "sources": len(ev.sources)}
    for bucket in SUMMARY_BUCKETS:
        out[f"{bucket}_mape_pct"] = _round(kept[kept.bucket == bucket].ape_pct.mean())
    per_source = {}
    for source in ev.sources:
        mine = kept[kept.source == source]
        per_source[source] = {"rows": int(mine[["source", "line"]].drop_duplicates().shape[0]),
                              "mape_pct": _round(mine.ape_pct.mean()),
                              "loso_mape_pct": _round(mine.loso_ape_pct.mean())}
    out["per_source"] = per_source
    return out


def error_table(ev: CorpusEvaluation) -> pd.DataFrame:
    """Per source and bucket: rows, in-sample MAPE, LOSO MAPE, target and whether the LOSO error meets it."""
    kept = ev.points[ev.points.excluded == ""]
    grouped = kept.groupby(["source", "bucket"])
    table = pd.DataFrame({"points": grouped.size(), "mape_pct": grouped.ape_pct.mean(),
                          "loso_mape_pct": grouped.loso_ape_pct.mean()}).reset_index()
    table["target_pct"] = table.bucket.map(TARGET_PCT)
    rows_per_source = kept.groupby("source").line.nunique()
    table["meets"] = [("n/a" if rows_per_source[s] < LOSO_MIN_ROWS or not math.isfinite(lo) else
                       ("yes" if lo <= t else "no")) for s, lo, t in zip(table.source, table.loso_mape_pct,
                                                                          table.target_pct)]
    return table


def engine_table(ev: CorpusEvaluation) -> pd.DataFrame:
    """Per engine profile and bucket: points, sources, in-sample and LOSO MAPE."""
    kept = ev.points[ev.points.excluded == ""]
    grouped = kept.groupby(["engine", "bucket"])
    return pd.DataFrame({"points": grouped.size(), "sources": grouped.source.nunique(),
                         "mape_pct": grouped.ape_pct.mean(), "loso_mape_pct": grouped.loso_ape_pct.mean()}).reset_index()


def corpus_main(corpus_dir: Path) -> int:
    ev = evaluate_corpus(corpus_dir)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
        print(f"Corpus {corpus_dir}: error per source and metric (MAPE %, shipped profiles; LOSO = engine refitted "
              "without the source; n/a = fewer than 10 rows or no other source of its engine)")
        print(error_table(ev).round(1).to_string(index=False))
        print("\nPer engine profile (conf/engine; none = the kernel floor):")
        print(engine_table(ev).round(1).to_string(index=False))
        excluded = ev.points[ev.points.excluded != ""].drop_duplicates(["source", "line"])
        if len(excluded):
            print(f"\nNot predicted ({len(excluded)} rows, left out of the error):")
            reasons = excluded.excluded.where(~excluded.excluded.str.startswith("KV does not fit"),
                                              "KV does not fit: the batch's tokens exceed the replica's KV capacity")
            counts = excluded.assign(excluded=reasons).groupby(["source", "excluded"]).size().rename("rows").reset_index()
            print(counts.to_string(index=False, max_colwidth=120))
        if len(ev.skipped):
            print(f"\nNot predictable ({len(ev.skipped)} rows):")
            counts = ev.skipped.groupby(["source", "reason"]).size().rename("rows").reset_index()
            print(counts.to_string(index=False))
    # The disaggregated rows, simulated as disaggregated deployments (sim.fidelity.corpus_disagg), join the line.
    from sim.fidelity.corpus_disagg import disaggregated_summary, evaluate_disaggregated, print_table

    disagg = evaluate_disaggregated(corpus_dir)
    if len(disagg):
        print()
        print_table(disagg)
    print(json.dumps({**summary_line(ev), **disaggregated_summary(disagg)}))
    return 0
