"""Fit an engine profile's few free parameters to the measured corpus, and judge it source by source (leave one out).

The fit changes only the fields in sim.perf.engine.FITTABLE (per-layer gap, CPU time per iteration and per
sequence, all-reduce latency, attention efficiencies), inside their physical bounds, with a weak pull toward an
engine-agnostic prior. Residuals are log(predicted / measured) of the engine's iteration and offline-throughput
rows; each source weighs the same in total, so a large source does not drown a small one. Serving rows are not
fitted (their queueing near saturation would dominate); they are predicted with the fitted profile.

Leave-one-source-out: for each source, the profile is refitted on the engine's other sources (from the prior, not
from the shipped values, which saw every source) and predicts the held-out source. A source whose engine has no
other source gets no LOSO number (null), rather than a number that saw its own data.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from sim.fidelity.corpus import BUCKETS, CorpusRow, NotPredictable, predict_row
from sim.perf.engine import FITTABLE, EngineProfile, load_engine

SIMULATED = ("serving", "closed_loop")  # predicted by the serving simulation, never fitted (queueing would dominate)
NOT_FITTED = {"none"}
MIN_FIT_ROWS = 10  # an engine with fewer fittable rows keeps its documented values (8 free parameters)  # the kernel floor: no engine parameters to fit; its rows test the calibrated kernels
PRIOR_WEIGHT = 0.05  # a prior log-deviation of 1 (x2.7) costs as much as a source whose points are all 5% off
LOSS_SCALE = 0.1
# A fit uses at most this many rows of each source, every k-th in file order (a fixed rule, chosen before looking
# at errors): each source weighs the same anyway, and the fit stays inside the validation's 2-minute budget.
FIT_ROWS_PER_SOURCE = 48  # soft-L1 on log errors: quadratic below ~10%, linear above (robust to odd published points)


def with_params(profile: EngineProfile, values: dict[str, float]) -> EngineProfile:
    """The profile with fitted values; a profile whose eager gap equals its graph gap (no Python launches,
    e.g. TensorRT-LLM) keeps them tied."""
    changes = dict(values)
    if "layer_overhead_graph_us" in values and profile.layer_overhead_eager_us == profile.layer_overhead_graph_us:
        changes["layer_overhead_eager_us"] = values["layer_overhead_graph_us"]
    return replace(profile, **changes)


def _points(rows: list[CorpusRow], profile: EngineProfile) -> list[tuple[CorpusRow, str, float]]:
    """(row, metric, measured) of the fit: rows the start profile can predict (KV and deployment fit)."""
    out = []
    for row in rows:
        try:
            predict_row(row, profile, with_serving=False)
        except NotPredictable:
            continue
        out.extend((row, metric, value) for metric, value in row.measured)
    return out


def _thin(rows: list[CorpusRow]) -> list[CorpusRow]:
    by_source = defaultdict(list)
    for row in rows:
        by_source[row.source].append(row)
    out = []
    for source_rows in by_source.values():
        stride = max(1, math.ceil(len(source_rows) / FIT_ROWS_PER_SOURCE))
        out.extend(source_rows[::stride])
    return out


def fit_profile(profile: EngineProfile, rows: list[CorpusRow], exclude_source: str | None = None
                ) -> tuple[EngineProfile, dict]:
    """Fit the FITTABLE fields of `profile` on its engine's non-serving rows (minus exclude_source).
    Returns the fitted profile and a report; with no rows, the profile from the prior and rows = 0."""
    names = list(FITTABLE)
    lower = np.array([FITTABLE[n][0] for n in names])
    prior = np.array([FITTABLE[n][1] for n in names])
    upper = np.array([FITTABLE[n][2] for n in names])
    start = with_params(profile, dict(zip(names, prior.tolist())))
    mine = [r for r in rows if r.engine == profile.name and r.kind not in SIMULATED and r.source != exclude_source]
    mine = _thin(mine)
    points = _points(mine, start)
    if not points:
        return start, {"rows": 0, "points": 0}
    per_source = defaultdict(int)
    for row, _, _ in points:
        per_source[row.source] += 1
    weights = np.array([1.0 / math.sqrt(per_source[row.source]) for row, _, _ in points])
    measured = np.array([value for _, _, value in points])
    # Scale so the prior weight means the same whatever the number of sources.
    prior_w = PRIOR_WEIGHT * math.sqrt(len(per_source))

    def residual(x: np.ndarray) -> np.ndarray:
        eng = with_params(profile, dict(zip(names, x.tolist())))
        pred = np.array([predict_row(row, eng, with_serving=False)[metric] for row, metric, _ in points])
        return np.concatenate([weights * np.log(pred / measured), prior_w * np.log(x / prior)])

    res = least_squares(residual, prior, bounds=(lower, upper), loss="soft_l1", f_scale=LOSS_SCALE,
                        x_scale=prior, diff_step=1e-3, max_nfev=200)
    fitted = with_params(profile, dict(zip(names, res.x.tolist())))
    return fitted, {"rows": len({(r.source, r.line) for r, _, _ in points}), "points": len(points),
                    "sources": sorted(per_source), "values": dict(zip(names, [float(v) for v in res.x]))}


def predict_points(rows: list[CorpusRow], profile_of: dict[tuple[str, str], EngineProfile] | None = None,
                   with_serving: bool = True) -> pd.DataFrame:
    """One line per (row, metric): measured, predicted and APE, or the reason it was not predicted.
    profile_of[(engine, source)] overrides the shipped profile for that engine's rows of that source."""
    out = []
    for row in rows:
        eng = (profile_of or {}).get((row.engine, row.source)) or load_engine(row.engine)
        base = {"source": row.source, "line": row.line, "engine": row.engine, "version": row.engine_version,
                "model": row.model, "gpu": row.gpu, "tp": row.tp, "weights": row.weights, "kind": row.kind,
                "batch_size": row.batch_size, "input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
                "request_rate": row.request_rate}
        try:
            pred = predict_row(row, eng, with_serving=with_serving)
        except NotPredictable as exc:
            for metric, value in row.measured:
                out.append({**base, "metric": metric, "bucket": BUCKETS[metric], "measured": value,
                            "predicted": float("nan"), "ape_pct": float("nan"), "excluded": str(exc)})
            continue
        for metric, value in row.measured:
            out.append({**base, "metric": metric, "bucket": BUCKETS[metric], "measured": value,
                        "predicted": pred[metric], "ape_pct": abs(pred[metric] / value - 1.0) * 100, "excluded": ""})
    return pd.DataFrame(out)


def leave_one_source_out(rows: list[CorpusRow], with_serving: bool = True, shipped: pd.DataFrame | None = None
                         ) -> tuple[pd.DataFrame, dict]:
    """Predictions of every row by its engine refitted without the row's source (NaN where the engine has no
    other source), and the LOSO profiles by (engine, source). With `shipped` (predict_points of the same rows with
    the shipped profiles), only rows that have a LOSO profile are predicted again: the others' held-out
    prediction is the shipped one (their engine's fit never saw their source)."""
    sources_of = defaultdict(set)
    counts = defaultdict(int)
    for row in rows:
        if row.kind not in SIMULATED and row.engine not in NOT_FITTED:
            sources_of[row.engine].add(row.source)
            counts[row.engine] += 1
    # Engines too thin to fit keep their documented values: those already are held out from every source.
    sources_of = defaultdict(set, {e: s for e, s in sources_of.items() if counts[e] >= MIN_FIT_ROWS})
    profiles, reports = {}, {}
    for engine, sources in sorted(sources_of.items()):
        for source in sorted(sources):
            if len(sources) < 2:
                continue
            fitted, report = fit_profile(load_engine(engine), rows, exclude_source=source)
            if report["rows"]:
                profiles[(engine, source)] = fitted
                reports[(engine, source)] = report
    if shipped is None:
        table = predict_points(rows, profiles, with_serving)
    else:
        redone = predict_points([r for r in rows if (r.engine, r.source) in profiles], profiles, with_serving)
        key = ["source", "line", "metric"]
        table = shipped.set_index(key)
        if len(redone):
            redone = redone.set_index(key)
            table.loc[redone.index, ["predicted", "ape_pct", "excluded"]] = redone[["predicted", "ape_pct", "excluded"]]
        table = table.reset_index()[shipped.columns]
    fittable_engines = {e for e, s in sources_of.items() if len(s) >= 2}
    # Rows of an engine that is fitted but has no other source: no honest held-out prediction.
    no_loso = table.engine.isin(sources_of) & ~table.engine.isin(fittable_engines)
    # Rows of engines that are not fitted at all (no fit rows): the shipped prior is already held out.
    table.loc[no_loso, ["predicted", "ape_pct"]] = float("nan")
    return table, reports
