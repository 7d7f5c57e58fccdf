"""Run-to-run spread of repeated measurements: the lowest MAPE that any model giving one value per configuration can
reach on them. InferenceX (issue 18) measures the same deployment, lengths and concurrency on many days; their spread
is a floor under the error of any deterministic simulator, whatever its physics.

`python -m sim.fidelity.run_spread` prints the floor of InferenceX's colocated TTFT and TPOT rows per engine; with
--per-run, each run's mean signed TTFT error under the current model (the serving simulation, seconds); with
--by-config, the signed TTFT error per configuration (engine, EP, attention DP, MTP, prompt and output length,
concurrency, statistic) and per prompt length, which separates a bias of the model by configuration from day-to-day
swings of the runs (issue 18, branch ttft18c)."""
from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence

import pandas as pd

from sim.common.cli import exit_on_user_error
from sim.common.paths import DATA_DIR
from sim.fidelity.corpus import load_corpus
from sim.fidelity.engine_fit import predict_points

SOURCE = "inferencex_dsr1_h100_h200"


def best_constant(measured: Sequence[float]) -> tuple[float, float]:
    """(c, sum over i of |c / m_i - 1| x 100) for the one value c with the smallest summed APE. The sum
    sum_i |c - m_i| / m_i is convex and piecewise linear in c with its kinks at the m_i, so a minimum lies at one of
    them (a median weighted by 1 / m_i): checking every measured value is exact."""
    if not measured:
        raise ValueError("no measurements")
    if min(measured) <= 0:
        raise ValueError("measurements must be positive")

    def ape_sum(c: float) -> float:
        return 100.0 * sum(abs(c / m - 1.0) for m in measured)

    c = min(measured, key=ape_sum)
    return c, ape_sum(c)


def floor_mape_pct(points: Iterable[tuple[Hashable, float]]) -> float:
    """Mean APE (%) over all points when each configuration (the key) is predicted by its best single value: no model
    that gives one prediction per configuration scores lower."""
    groups: dict[Hashable, list[float]] = defaultdict(list)
    for key, value in points:
        groups[key].append(float(value))
    n = sum(len(v) for v in groups.values())
    if n == 0:
        raise ValueError("no points")
    return sum(best_constant(v)[1] for v in groups.values()) / n


def configuration(row) -> tuple:
    """What InferenceX's launch fixes for a run: engine, deployment, MTP, lengths, concurrency and the statistic."""
    return (row.engine, row.ep, row.dp_attention, row.mtp_draft_tokens, row.input_tokens, row.output_tokens,
            row.batch_size, row.statistic)


def inferencex_points(metric: str, rows: list | None = None) -> list[tuple[tuple, float, object]]:
    """(configuration, measured, row) of the source's colocated rows of one metric (closed_ttft_ms or tpot_ms);
    rows: the source's corpus rows where already loaded."""
    out = []
    for row in _corpus_rows() if rows is None else rows:
        for name, value in row.measured:
            if name == metric:
                out.append((configuration(row), float(value), row))
    return out


def signed_error_table(keys: Iterable[Hashable], measured: Iterable[float],
                       predicted: Iterable[float]) -> dict[Hashable, tuple[int, float, float]]:
    """key -> (points, mean signed error %, MAPE %) of the points sharing that key; signed error = predicted /
    measured - 1 (positive: the model is slow)."""
    errors: dict[Hashable, list[float]] = defaultdict(list)
    for key, m, p in zip(keys, measured, predicted):
        if not m > 0:
            raise ValueError(f"measured values must be positive, got {m!r}")
        errors[key].append(100.0 * (float(p) / float(m) - 1.0))
    return {k: (len(e), sum(e) / len(e), sum(abs(x) for x in e) / len(e)) for k, e in errors.items()}


def inferencex_runs() -> dict[int, str]:
    """Corpus line -> the InferenceX run it came from ('date run-id' from the row's notes; the issue's bot sweep is
    one run)."""
    raw = pd.read_csv(DATA_DIR / "measurements" / f"{SOURCE}.csv.gz")
    runs = {}
    for i, notes in enumerate(raw["notes"].astype(str)):
        found = re.search(r"run (\d{4}-\d\d-\d\d) \(https://\S*/runs/(\d+)", notes)
        runs[i + 2] = f"{found.group(1)} {found.group(2)}" if found else "issue sweep"
    return runs


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.fidelity.run_spread", description=__doc__.splitlines()[0])
    parser.add_argument("--per-run", action="store_true", help="each run's mean signed TTFT error (simulates)")
    parser.add_argument("--by-config", action="store_true",
                        help="signed TTFT error per configuration and per prompt length (simulates)")
    args = parser.parse_args(argv)
    rows = _corpus_rows()
    for metric in ("closed_ttft_ms", "tpot_ms"):
        pts = inferencex_points(metric, rows)
        for engine in sorted({p[0][0] for p in pts}) + ["all"]:
            sel = [(k, v) for k, v, _ in pts if engine in ("all", k[0])]
            repeated = defaultdict(int)
            for k, _ in sel:
                repeated[k] += 1
            print(f"{metric:15s} {engine:15s} points {len(sel):4d} (in repeated configurations "
                  f"{sum(c for c in repeated.values() if c > 1):4d})  floor MAPE {floor_mape_pct(sel):5.1f} %")
    if args.per_run or args.by_config:
        pred = predict_points(rows)
        pred = pred[pred.metric == "closed_ttft_ms"]
        by = {r.line: r for r in rows}
        picked = [by[line] for line in pred.line]
    if args.per_run:
        runs = inferencex_runs()
        table = signed_error_table([(r.engine, bool(r.mtp_draft_tokens), r.dp_attention, runs[r.line]) for r in picked],
                                   pred.measured, pred.predicted)
        for key in sorted(table):
            n, signed, mape = table[key]
            print(f"{key[0]:15s} mtp {key[1]!s:5s} adp {key[2]!s:5s} {key[3]:25s} points {n:3d}  "
                  f"signed {signed:+6.1f} %  MAPE {mape:5.1f} %")
    if args.by_config:
        print("engine          EP  ADP   MTP    ISL   OSL  conc statistic  points  signed %   MAPE %")
        table = signed_error_table([configuration(r) for r in picked], pred.measured, pred.predicted)
        for key in sorted(table):
            n, signed, mape = table[key]
            print(f"{key[0]:15s} {key[1]:2d}  {key[2]!s:5s} {bool(key[3])!s:5s} {key[4]:5d} {key[5]:5d} {key[6]:5d} "
                  f"{key[7]:9s} {n:7d}  {signed:+7.1f}  {mape:7.1f}")
        print("per prompt length (all concurrencies and statistics):")
        table = signed_error_table([(r.engine, bool(r.mtp_draft_tokens), r.dp_attention, r.input_tokens)
                                    for r in picked], pred.measured, pred.predicted)
        for key in sorted(table):
            n, signed, mape = table[key]
            print(f"{key[0]:15s} mtp {key[1]!s:5s} adp {key[2]!s:5s} ISL {key[3]:5d}  points {n:3d}  "
                  f"signed {signed:+6.1f} %  MAPE {mape:5.1f} %")
    return 0


def _corpus_rows():
    return [r for r in load_corpus()[0] if r.source == SOURCE]


if __name__ == "__main__":
    raise SystemExit(main())
