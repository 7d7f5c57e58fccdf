"""Compare the cost model with measured end-to-end engine timings given as a CSV.

python -m sim.perf.validate FILE.csv [--engine vllm]
Required columns: model, gpu, tp, batch_size, prompt_tokens, prefill_ms, decode_ms_per_token (model and gpu are
conf/model and conf/hardware names). Optional: pp (1), weights (bf16), kv (bf16), output_tokens (128).
Lines starting with '#' are comments. Prints the error per row and ends with one JSON line.

Prediction, as an engine would run the measurement: prefill packs the batch's prompts into iterations of at most
the engine's max_num_batched_tokens (a longer prompt gets an iteration of its own) and sums their times; decode is
one iteration of the whole batch at its mean context, prompt_tokens + output_tokens / 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.cli import exit_on_user_error
from sim.errors import DataError, UserError
from sim.hardware import load_gpu
from sim.models import load_model
from sim.perf.batch import BatchShape
from sim.perf.cost_model import ReplicaCostModel, build_replica_cost

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


def batch_prefill_time_s(cost: ReplicaCostModel, batch_size: int, prompt_tokens: int) -> float:
    budget = max(cost.engine.max_num_batched_tokens, prompt_tokens)
    per_iter = max(1, budget // prompt_tokens)
    total, left = 0.0, batch_size
    while left > 0:
        n = min(per_iter, left)
        total += cost.iteration_time_s(BatchShape(
            prefill_tokens=n * prompt_tokens, prefill_attn_pairs=n * prompt_tokens * (prompt_tokens + 1) / 2.0,
            num_prefill_seqs=n))
        left -= n
    return total


def decode_step_time_s(cost: ReplicaCostModel, batch_size: int, mean_ctx_tokens: float) -> float:
    return cost.iteration_time_s(BatchShape(decode_seqs=batch_size,
                                            decode_ctx_tokens=int(round(batch_size * mean_ctx_tokens))))


def _positive_int(value, path: Path, line: int, key: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number == number or number < 1 or number != int(number):
        raise DataError(f"{path} line {line}: {key} must be a positive integer, got {value!r}")
    return int(number)


def _positive_float(value, path: Path, line: int, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0:
        raise DataError(f"{path} line {line}: {key} must be a positive number of milliseconds, got {value!r}")
    return number


def read_validation_csv(path: Path) -> list[ValidationRow]:
    if not path.exists():
        raise DataError(f"{path}: file not found; expected a CSV with columns {', '.join(REQUIRED)}")
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
        prefill = batch_prefill_time_s(cost, row.batch_size, row.prompt_tokens) * 1e3
        decode = decode_step_time_s(cost, row.batch_size, row.prompt_tokens + row.output_tokens / 2.0) * 1e3
        out.append({"line": row.line, "model": row.model, "gpu": row.gpu, "tp": row.tp, "pp": row.pp,
                    "weights": row.weights, "batch_size": row.batch_size, "prompt_tokens": row.prompt_tokens,
                    "prefill_ms": row.prefill_ms, "prefill_pred_ms": prefill,
                    "prefill_err_pct": (prefill / row.prefill_ms - 1) * 100,
                    "decode_ms_per_token": row.decode_ms_per_token, "decode_pred_ms": decode,
                    "decode_err_pct": (decode / row.decode_ms_per_token - 1) * 100})
    table = pd.DataFrame(out)
    summary = {"prefill_mape_pct": round(float(table.prefill_err_pct.abs().mean()), 2),
               "decode_mape_pct": round(float(table.decode_err_pct.abs().mean()), 2),
               "rows": int(len(table))}
    return table, summary


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.perf.validate", description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="measured timings, one row per (model, gpu, tp, batch, prompt)")
    ap.add_argument("--engine", default="vllm", help="engine overhead profile, a conf/engine name")
    args = ap.parse_args(argv)
    table, summary = validate(args.csv, args.engine)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string(index=False))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
