"""Validate the simulator against a `vllm bench serve --save-result` JSON: rebuild the benchmark it ran, predict it
with the closed-loop client through the full simulator, and print measured vs predicted with one JSON line last.

    python -m sim.fidelity.validate_serving RESULT.json [MORE.json ...] --model llama2_70b --tp 4 [--engine vllm]

A file holds one result object, or several, one per line (--append-result). The benchmark is rebuilt from
max_concurrency, request_rate ("inf" = all at once), num_prompts (completed requests when it differs) and, when
saved with --save-detailed, the per-request input_lens/output_lens; otherwise every request gets the mean lengths
total_input_tokens / completed and total_output_tokens / completed.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.fidelity.serving import ServingBench, simulate_serving

# measured key in vLLM's JSON -> predicted key of predict_serving
METRICS = {
    "mean_ttft_ms": "ttft_ms_mean", "median_ttft_ms": "ttft_ms_median", "p99_ttft_ms": "ttft_ms_p99",
    "mean_itl_ms": "itl_ms_mean", "median_itl_ms": "itl_ms_median",
    "mean_tpot_ms": "tpot_ms_mean", "median_tpot_ms": "tpot_ms_median",
    "mean_e2el_ms": "e2e_ms_mean", "output_throughput": "output_tokens_per_s",
}
REQUIRED = ("completed", "total_input_tokens", "total_output_tokens", "mean_ttft_ms")
# Which error each summary figure averages (absolute percentage error over runs).
SUMMARY = {"ttft_mape_pct": ("mean_ttft_ms", "median_ttft_ms"), "itl_mape_pct": ("mean_itl_ms", "median_itl_ms"),
           "tpot_mape_pct": ("mean_tpot_ms", "median_tpot_ms"), "e2e_mape_pct": ("mean_e2el_ms",),
           "throughput_mape_pct": ("output_throughput",)}


@dataclass(frozen=True)
class SavedRun:
    """One saved benchmark result: the benchmark to rebuild and what it measured."""

    where: str
    concurrency: int | None
    request_rate: float | None
    num_prompts: int
    input_lens: tuple[int, ...] | None
    output_lens: tuple[int, ...] | None
    mean_input_tokens: int
    mean_output_tokens: int
    measured: dict


def _number(obj: dict, key: str, where: str, allow_none: bool = False):
    v = obj.get(key)
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise DataError(f"{where}: {key!r} must be a non-negative number, got {v!r}")
    return v


def parse_result(obj, where: str) -> SavedRun:
    """One result object of vllm bench serve (see vllm/benchmarks/serve.py for the fields) -> SavedRun."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object as saved by vllm bench serve --save-result")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; is it a vllm bench serve --save-result file?")
    completed = int(_number(obj, "completed", where))
    if completed < 1:
        raise DataError(f"{where}: 'completed' is 0: no request finished, nothing to compare")
    rate = obj.get("request_rate", "inf")
    if rate in ("inf", None) or (isinstance(rate, float) and math.isinf(rate)):
        rate = None
    else:
        rate = _number(obj, "request_rate", where)
        if rate <= 0:
            raise DataError(f"{where}: 'request_rate' must be positive or \"inf\", got {rate!r}")
    conc = _number(obj, "max_concurrency", where, allow_none=True)
    if conc is not None and (int(conc) != conc or conc < 1):
        raise DataError(f"{where}: 'max_concurrency' must be a positive integer or null, got {conc!r}")
    lens_in, lens_out = obj.get("input_lens"), obj.get("output_lens")
    if lens_in is not None or lens_out is not None:
        ok = (isinstance(lens_in, list) and isinstance(lens_out, list) and len(lens_in) == len(lens_out)
              and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in lens_in + lens_out))
        if not ok:
            raise DataError(f"{where}: 'input_lens' and 'output_lens' must be lists of non-negative integers of "
                            "equal length")
        # A failed request is saved with output length 0; only the completed ones are replayed.
        pairs = [(i, o) for i, o in zip(lens_in, lens_out) if o > 0 and i > 0]
        lens_in, lens_out = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        if not pairs:
            raise DataError(f"{where}: 'output_lens' has no positive entry")
    measured = {k: float(_number(obj, k, where)) for k in METRICS if obj.get(k) is not None}
    n = len(lens_in) if lens_in else completed
    return SavedRun(where, None if conc is None else int(conc), rate, n, lens_in or None, lens_out or None,
                    max(1, round(_number(obj, "total_input_tokens", where) / completed)),
                    max(1, round(_number(obj, "total_output_tokens", where) / completed)), measured)


def load_results(path: str | Path) -> list[SavedRun]:
    """A --save-result file: one JSON object, or one object per line (--append-result)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = path.read_text()
    try:
        objs = [json.loads(text)]
    except json.JSONDecodeError:
        objs = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    objs.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg}); expected the file that vllm "
                                    "bench serve --save-result writes") from None
    if not objs:
        raise DataError(f"{path}: empty file; expected the JSON that vllm bench serve --save-result writes")
    return [parse_result(o, f"{path}" + (f" result {k + 1}" if len(objs) > 1 else "")) for k, o in enumerate(objs)]


def predict_run(run: SavedRun, *, model: str, gpu: str, tp: int, pp: int, weights: str, kv: str, engine: str,
                seed: int = 0, sim: dict | None = None) -> dict:
    bench = ServingBench(model, run.mean_input_tokens, run.mean_output_tokens, gpu=gpu, tp=tp, pp=pp,
                         weights=weights, kv=kv, concurrency=run.concurrency, request_rate=run.request_rate,
                         num_prompts=run.num_prompts)
    try:
        return simulate_serving(bench, engine=engine, seed=seed, input_lens=run.input_lens,
                                output_lens=run.output_lens, sim=sim)
    except DataError as exc:  # which saved run could not be rebuilt
        raise DataError(f"{run.where}: {exc}") from None


def error_pct(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured if measured > 0 else float("nan")


def compare(runs: list[SavedRun], **kw) -> tuple[list[dict], dict]:
    """Per run: measured, predicted and signed error (%) per metric; and the summary over runs."""
    rows = []
    for run in runs:
        pred = predict_run(run, **kw)
        errs = {k: error_pct(pred[METRICS[k]], v) for k, v in run.measured.items()}
        rows.append({"run": run.where, "concurrency": run.concurrency, "request_rate": run.request_rate,
                     "num_prompts": run.num_prompts, "measured": run.measured,
                     "predicted": {k: pred[METRICS[k]] for k in run.measured}, "error_pct": errs})
    summary: dict = {"runs": len(rows)}
    for name, keys in SUMMARY.items():
        vals = [abs(r["error_pct"][k]) for r in rows for k in keys if k in r["error_pct"]]
        vals = [v for v in vals if math.isfinite(v)]
        summary[name] = round(sum(vals) / len(vals), 2) if vals else None
    summary["per_run"] = [{"run": r["run"], "concurrency": r["concurrency"], "request_rate": r["request_rate"],
                           "error_pct": {k: round(v, 2) for k, v in r["error_pct"].items()}} for r in rows]
    return rows, summary


def _print_table(rows: list[dict]) -> None:
    for r in rows:
        rate = "inf" if r["request_rate"] is None else f"{r['request_rate']:g}"
        print(f"{r['run']}: concurrency {r['concurrency']}, request rate {rate}, {r['num_prompts']} prompts")
        print(f"  {'metric':<20}{'measured':>12}{'predicted':>12}{'error %':>10}")
        for k, v in r["measured"].items():
            print(f"  {k:<20}{v:>12.2f}{r['predicted'][k]:>12.2f}{r['error_pct'][k]:>+10.1f}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.fidelity.validate_serving", description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="JSON file(s) written by vllm bench serve --save-result")
    p.add_argument("--model", required=True, help="model name (conf/model), e.g. llama2_70b")
    p.add_argument("--gpu", default="h100_sxm", help="GPU name (conf/hardware)")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--weights", default="bf16", help="bf16 | fp8 | awq_int4")
    p.add_argument("--kv", default="bf16", help="bf16 | fp8")
    p.add_argument("--engine", default="vllm", help="engine profile (conf/engine)")
    p.add_argument("--batching", default=None, help="sim.batching: vllm (prefill first) | sarathi (chunked "
                   "prefill, as vLLM V1 and long-context V0) | static")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    runs = [run for path in args.results for run in load_results(path)]
    rows, summary = compare(runs, model=args.model, gpu=args.gpu, tp=args.tp, pp=args.pp, weights=args.weights,
                            kv=args.kv, engine=args.engine, seed=args.seed,
                            sim={"batching": args.batching} if args.batching else None)
    _print_table(rows)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
