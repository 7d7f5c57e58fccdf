"""Compare the cost model with measured end-to-end engine timings: a CSV of iteration timings, or the shipped corpus.

python -m sim.fidelity.validate FILE.csv [--engine vllm]
python -m sim.fidelity.validate --corpus [DIR]   (data/measurements: per-source error, leave-one-source-out; see
                                             sim.fidelity.corpus for how each kind of row is predicted)
Required columns: model, gpu, tp, batch_size, prompt_tokens, prefill_ms, decode_ms_per_token (model and gpu are
conf/model and conf/hardware names). Optional: pp (1), weights (bf16), kv (bf16), output_tokens (128).
Lines starting with '#' are comments. Prints the error per row and ends with one JSON line.

Prediction, as an engine would run the measurement: prefill packs the batch's prompts into iterations of at most
the engine's max_num_batched_tokens (a longer prompt gets an iteration of its own) and sums their times; decode is
one iteration of the whole batch at its mean context, prompt_tokens + output_tokens / 2. A row whose batch cannot
hold its KV (batch_size x (prompt_tokens + output_tokens) tokens beyond the replica's KV capacity) is not predicted:
it is listed with the reason and left out of the error.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError, UserError
from sim.spec.hardware import load_gpu
from sim.spec.models import load_model
from sim.fidelity.corpus import CORPUS_DIR
from sim.fidelity.timing import batch_prefill_time_s, decode_step_time_s, kv_shortfall  # noqa: F401 (re-exported)
from sim.perf.cost_model import build_replica_cost

class UsageError(UserError):
    """Wrong combination of command-line arguments."""


REQUIRED = ("model", "gpu", "tp", "batch_size", "prompt_tokens", "prefill_ms", "decode_ms_per_token")
OPTIONAL = {"pp": 1, "weights": "bf16", "kv": "bf16", "output_tokens": 128}


@dataclass(frozen=True)
class ValidationRow:
    line: int
    model: str
    gpu: str
    tp: int
    pp: int
    weights: str
    kv: str
    batch_size: int
    prompt_tokens: int
    output_tokens: int
    prefill_ms: float
    decode_ms_per_token: float


def _positive_int(value, path: Path, line: int, key: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 1 or number != int(number):
        raise DataError(f"{path} line {line}: {key} must be a positive integer, got {value!r}")
    return int(number)


def _positive_float(value, path: Path, line: int, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise DataError(f"{path} line {line}: {key} must be a positive finite number of milliseconds, got {value!r}")
    return number


def read_validation_csv(path: Path) -> list[ValidationRow]:
    if not path.exists():
        raise DataError(f"{path}: file not found; expected a CSV with columns {', '.join(REQUIRED)}")
    if not path.is_file():
        raise DataError(f"{path}: is a directory, not a CSV file; give a CSV with columns {', '.join(REQUIRED)} "
                        f"(or --corpus DIR for a measurement corpus)")
    try:
        frame = pd.read_csv(path, comment="#", dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; required: {', '.join(REQUIRED)}; "
                        f"optional: {', '.join(OPTIONAL)}")
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    # Line numbers in the file for messages: header plus comment lines come before the data.
    lines = [i + 1 for i, text in enumerate(path.read_text().splitlines())
             if text.strip() and not text.lstrip().startswith("#")][1:]
    rows = []
    for line, (_, rec) in zip(lines, frame.iterrows()):
        get = lambda key: rec[key] if key in frame.columns and pd.notna(rec[key]) else OPTIONAL.get(key)  # noqa: E731
        rows.append(ValidationRow(
            line=line, model=str(get("model")).strip(), gpu=str(get("gpu")).strip(),
            tp=_positive_int(get("tp"), path, line, "tp"), pp=_positive_int(get("pp"), path, line, "pp"),
            weights=str(get("weights")).strip(), kv=str(get("kv")).strip(),
            batch_size=_positive_int(get("batch_size"), path, line, "batch_size"),
            prompt_tokens=_positive_int(get("prompt_tokens"), path, line, "prompt_tokens"),
            output_tokens=_positive_int(get("output_tokens"), path, line, "output_tokens"),
            prefill_ms=_positive_float(get("prefill_ms"), path, line, "prefill_ms"),
            decode_ms_per_token=_positive_float(get("decode_ms_per_token"), path, line, "decode_ms_per_token")))
    return rows


def validate(path: Path, engine: str = "vllm") -> tuple[pd.DataFrame, dict]:
    out = []
    for row in read_validation_csv(path):
        try:
            cost = build_replica_cost(load_model(row.model), load_gpu(row.gpu), row.tp, row.pp, row.weights, row.kv,
                                      engine=engine)
        except UserError as exc:
            raise type(exc)(f"{path} line {row.line}: {exc}") from None
        base = {"line": row.line, "model": row.model, "gpu": row.gpu, "tp": row.tp, "pp": row.pp,
                "weights": row.weights, "batch_size": row.batch_size, "prompt_tokens": row.prompt_tokens,
                "prefill_ms": row.prefill_ms, "decode_ms_per_token": row.decode_ms_per_token}
        excluded = kv_shortfall(cost, row.batch_size, row.prompt_tokens + row.output_tokens)
        if excluded:  # checked first: a row the engine could not run is neither predicted nor timed
            out.append({**base, "prefill_pred_ms": math.nan, "prefill_err_pct": math.nan, "decode_pred_ms": math.nan,
                        "decode_err_pct": math.nan, "excluded": excluded})
            continue
        prefill = batch_prefill_time_s(cost, row.batch_size, row.prompt_tokens) * 1e3
        decode = decode_step_time_s(cost, row.batch_size, row.prompt_tokens + row.output_tokens / 2.0) * 1e3
        out.append({**base, "prefill_pred_ms": prefill, "prefill_err_pct": (prefill / row.prefill_ms - 1) * 100,
                    "decode_pred_ms": decode, "decode_err_pct": (decode / row.decode_ms_per_token - 1) * 100,
                    "excluded": ""})
    table = pd.DataFrame(out)
    kept = table[table.excluded == ""]

    def mape(col: str) -> float | None:
        return round(float(kept[col].abs().mean()), 2) if len(kept) else None

    summary = {"prefill_mape_pct": mape("prefill_err_pct"), "decode_mape_pct": mape("decode_err_pct"),
               "rows": int(len(kept)), "excluded_rows": int(len(table) - len(kept))}
    return table, summary


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.fidelity.validate", description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, nargs="?", help="measured timings, one row per (model, gpu, tp, batch, prompt)")
    ap.add_argument("--engine", default="vllm", help="engine overhead profile, a conf/engine name (CSV mode)")
    ap.add_argument("--corpus", type=Path, nargs="?", const=CORPUS_DIR, default=None,
                    help=f"validate on a measurement corpus directory instead (default {CORPUS_DIR.name})")
    args = ap.parse_args(argv)
    if (args.csv is None) == (args.corpus is None):
        raise UsageError("give either a CSV file or --corpus [DIR], not both and not neither")
    if args.corpus is not None:
        from sim.fidelity.corpus_report import corpus_main
        return corpus_main(args.corpus)
    table, summary = validate(args.csv, args.engine)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns="excluded").round(2).to_string(index=False))
    for _, row in table[table.excluded != ""].iterrows():
        print(f"excluded line {row.line}: {row.excluded}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
