"""Fit the cost model's efficiencies to Vidur's H100 operator and all-reduce profiles and report the error.

python -m sim.fidelity.calibrate [--data-dir data/vidur] [--write]
Fits on Llama-2-7B and Llama-2-70B (TP 1/2/4/8, 1..4096 tokens), holds out CodeLlama-34B, prints the MAPE
per operator, model and TP degree, and ends with one JSON line. --write stores the parameters in
sim/perf/params/h100_sxm.json (package data), which is what the simulator reads.

python -m sim.fidelity.calibrate --engine NAME [--corpus data/measurements] [--write]
Fits the engine profile's free parameters (sim.perf.engine.FITTABLE) on that engine's rows of the measured corpus,
prints the error per source in sample and leave-one-source-out, and ends with one JSON line; --write stores the
fitted values in conf/engine/NAME.yaml, each with a comment naming this command and its sources.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.spec.hardware import GPUSpec, load_gpu
from sim.spec.models import load_model
from sim.common.paths import DATA_DIR
from sim.perf.kernels import AllReduceParams, ElementwiseParams, GemmParams
from sim.perf.layers import dense_layer_ops, embedding_op
from sim.perf.params import PARAMS_DIR, CalibratedParams

FIT_MODELS = ("llama2_7b", "llama2_70b")
HOLDOUT_MODELS = ("codellama_34b",)
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
EW_KIND = {"input_layernorm": "rmsnorm", "post_attention_layernorm": "rmsnorm", "attn_rope": "rope",
           "mlp_act": "act", "add": "add", "emb": "emb"}
ALLREDUCE_MIN_BYTES = 64 * 1024  # the Done-means threshold: smaller messages are latency noise
LOSS_SCALE = 0.05  # soft-L1 on relative error: quadratic below 5%, linear above (robust to cuBLAS jumps)


# ---- data ----------------------------------------------------------------------------------------
def load_operator_cases(data_dir: Path, gpu: GPUSpec) -> pd.DataFrame:
    """One row per (model, TP, tokens, operator) with the measured median time and the operator's shape."""
    rows = []
    for name in FIT_MODELS + HOLDOUT_MODELS:
        path = data_dir / f"h100_mlp_{name}.csv"
        if not path.exists():
            raise DataError(f"{path}: operator profile missing; expected the compact Vidur copy in data/vidur")
        model = load_model(name)
        prof = pd.read_csv(path).groupby(["tp", "num_tokens"], as_index=False).median()  # 8 repeated rows
        for tp, group in prof.groupby("tp"):
            gemms, ew = dense_layer_ops(model, int(tp))
            ops = {g.name: ("gemm", g.k, g.n, 0.0) for g in gemms}
            ops.update({e.name: (e.kind, 0, 0, e.bytes_per_token) for e in ew + [embedding_op(model)]})
            for op, (kind, k, n, bpt) in ops.items():
                col = f"{op}_ms"
                for tokens, ms in zip(group["num_tokens"], group[col]):
                    rows.append((name, int(tp), op, kind, float(tokens), k, n, bpt, ms * 1e-3))
    cases = pd.DataFrame(rows, columns=["model", "tp", "op", "kind", "tokens", "k", "n", "bytes_per_token",
                                        "measured_s"])
    cases["holdout"] = cases["model"].isin(HOLDOUT_MODELS)
    return cases


def load_allreduce_cases(data_dir: Path) -> pd.DataFrame:
    path = data_dir / "h100_dgx_all_reduce.csv"
    if not path.exists():
        raise DataError(f"{path}: all-reduce profile missing; expected the compact Vidur copy in data/vidur")
    ar = pd.read_csv(path).groupby(["num_workers", "size_bytes"], as_index=False).median()
    return ar.assign(measured_s=ar["all_reduce_ms"] * 1e-3)


# ---- vectorised predictors (same formulas as sim.perf.kernels, checked by a test) ----------------------
def predict_gemm_s(x, tokens, k, n, gpu: GPUSpec, weight_bytes=2.0):
    eff_max, exponent, mem_eff, launch_s = x
    compute = 2.0 * k * n * tokens / (gpu.bf16_tflops * 1e12 * eff_max)
    memory = (k * n * weight_bytes + tokens * (k + n) * 2.0) / (gpu.hbm_bw_gbps * 1e9 * mem_eff)
    big = np.maximum(np.maximum(compute, memory), 1e-30)  # ratios in [0, 1]; the floor only guards k=n=0 rows
    return launch_s + big * ((compute / big) ** exponent + (memory / big) ** exponent) ** (1.0 / exponent)


def predict_elementwise_s(x, tokens, bytes_per_token, gpu: GPUSpec):
    mem_eff, launch_s = x
    return launch_s + tokens * bytes_per_token / (gpu.hbm_bw_gbps * 1e9 * mem_eff)


def predict_allreduce_s(x, ranks, size_bytes, gpu: GPUSpec):
    bw_eff, step_s, base_s = x
    steps = 2 * (ranks - 1)
    return base_s + steps * step_s + steps / ranks * size_bytes / (gpu.nvlink_bw_gbps * 1e9 * bw_eff)


def _fit(residual, x0, lower, upper):
    res = least_squares(residual, x0, bounds=(lower, upper), loss="soft_l1", f_scale=LOSS_SCALE)
    return [float(v) for v in res.x]


# ---- fits ----------------------------------------------------------------------------------------
def fit_gemm(cases: pd.DataFrame, gpu: GPUSpec) -> GemmParams:
    c = cases[(cases.kind == "gemm") & ~cases.holdout]
    t, k, n, y = (c[col].to_numpy() for col in ("tokens", "k", "n", "measured_s"))
    x = _fit(lambda x: predict_gemm_s(x, t, k, n, gpu) / y - 1.0,
             [0.7, 3.0, 0.9, 5e-6], [0.05, 1.0, 0.05, 0.0], [1.0, 20.0, 1.0, 1e-4])
    return GemmParams(compute_eff_max=x[0], overlap_exponent=x[1], mem_eff=x[2], launch_s=x[3])


def fit_elementwise(cases: pd.DataFrame, gpu: GPUSpec) -> dict[str, ElementwiseParams]:
    out = {}
    for kind in sorted(set(EW_KIND.values())):
        c = cases[(cases.kind == kind) & ~cases.holdout]
        t, b, y = (c[col].to_numpy() for col in ("tokens", "bytes_per_token", "measured_s"))
        # mem_eff may exceed 1 where a kernel touches fewer bytes than our count (in-place adds, cache hits).
        x = _fit(lambda x: predict_elementwise_s(x, t, b, gpu) / y - 1.0, [0.6, 2e-6], [0.01, 0.0], [2.0, 1e-4])
        out[kind] = ElementwiseParams(mem_eff=x[0], launch_s=x[1])
    return out


def fit_allreduce(ar: pd.DataFrame, gpu: GPUSpec) -> AllReduceParams:
    big = ar[ar.size_bytes >= ALLREDUCE_MIN_BYTES]
    r, s, y = (big[col].to_numpy(dtype=float) for col in ("num_workers", "size_bytes", "measured_s"))
    x = _fit(lambda x: predict_allreduce_s(x, r, s, gpu) / y - 1.0,
             [0.8, 2e-6, 2e-5], [0.05, 0.0, 0.0], [1.5, 1e-4, 1e-3])
    return AllReduceParams(bw_eff=x[0], step_latency_s=x[1], base_latency_s=x[2])


def fit_cpu_overheads(data_dir: Path) -> dict[str, float]:
    """Per-iteration CPU time of a vLLM-style engine (schedule + prepare inputs + sampler + process outputs),
    least squares on base + per_seq * batch + per_log2_tp * log2(TP). A100 hosts: the only measurement."""
    path = data_dir / "a100_cpu_overheads.csv"
    if not path.exists():
        raise DataError(f"{path}: CPU overhead profile missing; expected the compact Vidur copy in data/vidur")
    c = pd.read_csv(path)
    total_ms = c[[col for col in c.columns if col.endswith("_median")]].sum(axis=1).to_numpy()
    design = np.c_[np.ones(len(c)), c["batch_size"], np.log2(c["tensor_parallel_degree"])]
    coef, *_ = np.linalg.lstsq(design, total_ms, rcond=None)
    mape = float(np.mean(np.abs(design @ coef / total_ms - 1.0)) * 100)
    return {"cpu_base_ms": float(coef[0]), "cpu_per_seq_ms": float(coef[1]),
            "cpu_per_log2_tp_ms": float(coef[2]), "mape_pct": mape}


# ---- report --------------------------------------------------------------------------------------
def predict_cases(cases: pd.DataFrame, params: CalibratedParams, gpu: GPUSpec) -> np.ndarray:
    g = params.gemm
    pred = predict_gemm_s([g.compute_eff_max, g.overlap_exponent, g.mem_eff, g.launch_s],
                          cases.tokens.to_numpy(), cases.k.to_numpy(), cases.n.to_numpy(), gpu)
    for kind, p in params.elementwise.items():
        mask = (cases.kind == kind).to_numpy()
        pred = np.where(mask, predict_elementwise_s([p.mem_eff, p.launch_s], cases.tokens.to_numpy(),
                                                    cases.bytes_per_token.to_numpy(), gpu), pred)
    return pred


def calibrate(data_dir: Path, gpu_name: str = "h100_sxm") -> tuple[CalibratedParams, pd.DataFrame, pd.DataFrame, dict]:
    gpu = load_gpu(gpu_name)
    cases = load_operator_cases(data_dir, gpu)
    ar = load_allreduce_cases(data_dir)
    params = CalibratedParams(gpu=gpu_name, gemm=fit_gemm(cases, gpu), elementwise=fit_elementwise(cases, gpu),
                              allreduce=fit_allreduce(ar, gpu))
    cases = cases.assign(predicted_s=predict_cases(cases, params, gpu))
    cases["ape_pct"] = (cases.predicted_s / cases.measured_s - 1.0).abs() * 100
    a = params.allreduce
    ar = ar.assign(predicted_s=predict_allreduce_s([a.bw_eff, a.step_latency_s, a.base_latency_s],
                                                   ar.num_workers.to_numpy(float), ar.size_bytes.to_numpy(float), gpu))
    ar["ape_pct"] = (ar.predicted_s / ar.measured_s - 1.0).abs() * 100
    linear = cases[(cases.kind == "gemm") & ~cases.holdout]
    summary = {
        "linear_mape_pct": round(float(linear.ape_pct.mean()), 2),
        "allreduce_mape_pct": round(float(ar[ar.size_bytes >= ALLREDUCE_MIN_BYTES].ape_pct.mean()), 2),
        "holdout_mape_pct": round(float(cases[(cases.kind == "gemm") & cases.holdout].ape_pct.mean()), 2),
        "cases": int(len(linear)),
    }
    cpu = fit_cpu_overheads(data_dir)
    report = {**summary,
              "elementwise_mape_pct": round(float(cases[(cases.kind != "gemm") & ~cases.holdout].ape_pct.mean()), 2),
              "holdout_elementwise_mape_pct": round(float(cases[(cases.kind != "gemm") & cases.holdout].ape_pct.mean()), 2),
              "allreduce_all_sizes_mape_pct": round(float(ar.ape_pct.mean()), 2),
              "cpu_overheads_a100": {k: round(v, 4) for k, v in cpu.items()}}
    params = replace(params, fit_report=report)
    return params, cases, ar, summary


def format_tables(cases: pd.DataFrame, ar: pd.DataFrame) -> str:
    table = cases.assign(model=cases.model + np.where(cases.holdout, " (holdout)", ""))
    per_op = table.pivot_table(index=["op", "model"], columns="tp", values="ape_pct", aggfunc="mean")
    per_op.columns = [f"TP{c}" for c in per_op.columns]
    per_op["all"] = table.groupby(["op", "model"]).ape_pct.mean()
    big = ar[ar.size_bytes >= ALLREDUCE_MIN_BYTES]
    per_ar = big.groupby("num_workers").ape_pct.mean().rename("MAPE % (>= 64 KB)").to_frame()
    per_ar.index = [f"{n} GPUs" for n in per_ar.index]
    return ("Operator MAPE % (median time per layer, H100; fitted: " + ", ".join(FIT_MODELS) + ")\n"
            + per_op.round(1).to_string() + "\n\nAll-reduce (h100_dgx, NCCL ring)\n" + per_ar.round(1).to_string())


def write_engine_values(name: str, values: dict[str, float], sources: list[str]) -> Path:
    """Replace the fitted fields' values in conf/engine/NAME.yaml in place, keeping every other line and comment."""
    from sim.common.paths import CONF_DIR

    path = CONF_DIR / "engine" / f"{name}.yaml"
    lines = path.read_text().splitlines()
    note = f"  # fitted by sim.fidelity.calibrate --engine {name} on sources {', '.join(sources)}"
    for key, value in values.items():
        hits = [i for i, text in enumerate(lines) if text.split(":")[0].strip() == key and not text.startswith("#")]
        if len(hits) != 1:
            raise DataError(f"{path}: expected one line for {key}, found {len(hits)}")
        lines[hits[0]] = f"{key}: {value:.4g}{note}"
    path.write_text("\n".join(lines) + "\n")
    return path


def calibrate_engine(name: str, corpus_dir: Path, write: bool) -> int:
    from sim.fidelity.corpus import load_corpus
    from sim.fidelity.corpus_report import CorpusEvaluation, error_table, summary_line
    from sim.perf.engine import FITTABLE, load_engine
    from sim.fidelity.engine_fit import MIN_FIT_ROWS, fit_profile, leave_one_source_out, predict_points

    profile = load_engine(name)
    rows, _ = load_corpus(corpus_dir)
    mine = [r for r in rows if r.engine == name]
    fitted, report = fit_profile(profile, rows)
    if report["rows"] and report["rows"] < MIN_FIT_ROWS:
        print(f"engine {name}: only {report['rows']} fittable rows (fewer than {MIN_FIT_ROWS}); the profile keeps its "
              f"documented values and its rows are predicted, not fitted")
        report = {"rows": 0}
    if not report["rows"]:
        print(f"engine {name}: no predictable iteration or offline-throughput rows in {corpus_dir}; "
              f"the profile keeps its documented values")
        print(json.dumps({"engine": name, "fitted": {}, "rows": 0, "per_source": {}}))
        return 0
    values = {k: getattr(fitted, k) for k in FITTABLE}
    if profile.layer_overhead_eager_us == profile.layer_overhead_graph_us:  # tied (engine_fit.with_params)
        values["layer_overhead_eager_us"] = fitted.layer_overhead_eager_us
    shipped = predict_points(mine, {(name, s): fitted for s in {r.source for r in mine}})
    loso, _ = leave_one_source_out(mine)
    points = shipped.assign(loso_predicted=loso["predicted"].to_numpy(), loso_ape_pct=loso["ape_pct"].to_numpy())
    ev = CorpusEvaluation(points, pd.DataFrame(), tuple(sorted({r.source for r in mine})))
    print(f"engine {name}: fitted on {report['rows']} rows of {', '.join(report['sources'])}")
    print("  " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
    with pd.option_context("display.width", 200):
        print(error_table(ev).round(1).to_string(index=False))
    if write:
        path = write_engine_values(name, values, report["sources"])
        load_engine.cache_clear()
        print(f"wrote {path}")
    line = summary_line(ev)
    print(json.dumps({"engine": name, "fitted": {k: round(v, 6) for k, v in values.items()}, "rows": line["rows"],
                      "per_source": line["per_source"]}))
    return 0


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.fidelity.calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR / "vidur", help="compact Vidur profiles")
    ap.add_argument("--gpu", default="h100_sxm", help="conf/hardware name the profiles were measured on")
    ap.add_argument("--write", action="store_true",
                    help="store the fit in sim/perf/params/<gpu>.json (or conf/engine/<engine>.yaml with --engine)")
    ap.add_argument("--engine", help="fit this conf/engine profile on the measured corpus instead")
    ap.add_argument("--corpus", type=Path, default=DATA_DIR / "measurements", help="measured corpus (with --engine)")
    args = ap.parse_args(argv)
    if args.engine:
        return calibrate_engine(args.engine, args.corpus, args.write)
    params, cases, ar, summary = calibrate(args.data_dir, args.gpu)
    print(format_tables(cases, ar))
    g, a, r = params.gemm, params.allreduce, params.fit_report
    print(f"\nGEMM: compute_eff_max={g.compute_eff_max:.3f} overlap_exponent={g.overlap_exponent:.2f} "
          f"mem_eff={g.mem_eff:.3f} launch={g.launch_s * 1e6:.2f} us")
    print("elementwise: " + ", ".join(f"{k} eff={p.mem_eff:.2f} launch={p.launch_s * 1e6:.2f} us"
                                      for k, p in params.elementwise.items()))
    print(f"all-reduce: bw_eff={a.bw_eff:.3f} step={a.step_latency_s * 1e6:.2f} us base={a.base_latency_s * 1e6:.1f} us")
    print(f"elementwise MAPE {r['elementwise_mape_pct']}% (holdout {r['holdout_elementwise_mape_pct']}%); "
          f"CPU overheads (A100 hosts) {r['cpu_overheads_a100']}")
    if args.write:
        stamp = dt.date.today().isoformat()
        params = replace(params, note=f"written by `python -m sim.fidelity.calibrate --write` on {stamp} "
                                      f"from data/vidur (Vidur H100 profiles, MIT)")
        path = PARAMS_DIR / f"{args.gpu}.json"
        path.write_text(params.to_json())
        print(f"wrote {path}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
