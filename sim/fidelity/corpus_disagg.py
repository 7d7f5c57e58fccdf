"""The corpus' prefill/decode-disaggregated rows (InferenceX multi-node DeepSeek-R1 on H100/H200, NVIDIA Dynamo with
SGLang or TensorRT-LLM workers) predicted by the disaggregated simulator (sim.runtime.disagg): one simulated benchmark
per measured run, never fitted on these rows (they are the check).

Each measured run states its P prefill and D decode workers and, per side, TP, EP and DP attention (columns tp, ep,
dp_attention as "P:x/D:y"; the worker counts in its notes). The run is rebuilt as one disaggregated tier: P prefill
and D decode replicas of DeepSeek-R1 (FP8 weights; KV precision and engine profile as the colocated InferenceX rows),
on node-major GPUs of 8-GPU DGX nodes linked by InfiniBand (a TP16 worker spans two nodes; each worker on its own
nodes, so every KV transfer crosses InfiniBand as between Dynamo's workers), with the cost model of the run's engine
profile (conf/engine sglang / trtllm_pytorch) and the settings of the run's own launch recipe (launch_settings:
MTP draft tokens, the decode workers' sequence cap and CUDA-graph limit, the prefill workers' token budget, each
side's memory fraction; data/measurements/launch), MTP acceptance as InferenceX's random prompts give it
(INFERENCEX_MTP_ACCEPTANCE, from the colocated rows).
The closed-loop client of sim.fidelity.clients keeps `concurrency` requests in flight, lengths drawn as InferenceX's
benchmark draws them (uniform in [0.8 L, L], sim.fidelity.corpus.drawn_lengths). The client sees the first token when
a decode instance admits the visit (its KV arrived and it had room: the decode worker streams every token), so TTFT
is arrival to that admission and TPOT per request (E2E - TTFT) / (output - 1), as the benchmark computes it; the
run's median and mean over requests are compared with the measured ones.

Prompts per run: InferenceX sends 10 x concurrency; the simulation sends min(10 C, max(3 C, MIN_PROMPTS)) (three
rounds of the client already pass the start-up, and the largest runs, C up to 4,916, would take minutes each on one
core otherwise); the first round is in the statistics as it is in the measured ones.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from sim.common.errors import DataError, UserError
from sim.fidelity.clients import BenchmarkClient, ClientSpec, client_workload, release_times_s
from sim.fidelity.corpus import CORPUS_DIR, drawn_lengths, serving_sim_overrides
from sim.fidelity.corpus_long import hardware_gpu
from sim.fidelity.corpus_rows import CorpusRow
from sim.fidelity.serving import engine_cost_factory
from sim.perf.cost_model import build_replica_cost, replica_cost_for
from sim.perf.engine import EngineProfile, resolve_engine
from sim.simulator import sim_config_from_dict, simulate
from sim.spec.cascade import CascadeSpec, TierSpec
from sim.spec.hardware import ClusterSpec, load_gpu
from sim.spec.models import load_model
from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan

SOURCE = "inferencex_dsr1_h100_h200"
# TensorRT-LLM as InferenceX runs it: its PyTorch backend (sim.fidelity.corpus_long's InferenceX reader).
ENGINES = {"Dynamo + SGLang (PD-disaggregated)": "sglang",
           "Dynamo + TensorRT-LLM (PD-disaggregated)": "trtllm_pytorch"}
# Memory fraction and KV precision per engine: those of the source's launch scripts for its colocated runs
# (SGLang --mem-fraction-static 0.82 with the model's BF16 KV; TensorRT-LLM free_gpu_memory_fraction 0.75 with FP8
# KV; sim.fidelity.corpus_long), assumed for its Dynamo workers too (their settings are not in the fixture).
MEMORY_KV = {"sglang": (0.82, "bf16"), "trtllm_pytorch": (0.75, "fp8")}
METRICS = {"tpot_median": ("tpot", "median"), "tpot_mean": ("tpot", "mean"), "ttft_median": ("ttft", "median"),
           "ttft_mean": ("ttft", "mean")}
MIN_PROMPTS = 600
GPUS_PER_NODE = 8
# The runs' worker settings from InferenceX's launch recipes (data/measurements/launch/SOURCE.md).
LAUNCH_FILE = CORPUS_DIR / "launch" / "inferencex_disagg_launch.csv"
# DGX H100 / H200 compute fabric: eight ConnectX-7 400 Gb/s NICs per node, one per GPU (NVIDIA's DGX H100/H200 user
# guide), so 8 x 50 GB/s per node; InfiniBand's per-hop latency as the paper's pods (conf/cluster/paper_4x8_h100.yaml).
IB_NODE_GBPS = 400.0
IB_LATENCY_US = 5.0
_SIDES = re.compile(r"^P:(\w+)/D:(\w+)$")
_WORKERS = re.compile(r"(\d+) prefill worker\(s\)=(\d+) GPUs, (\d+) decode worker\(s\)=(\d+) GPUs")


@dataclass(frozen=True)
class DisaggRun:
    """One measured disaggregated benchmark run: the deployment of each side and the client's settings."""

    gpu: str
    engine: str
    num_prefill: int
    num_decode: int
    tp_prefill: int
    tp_decode: int
    ep_prefill: int
    ep_decode: int
    dp_prefill: bool
    dp_decode: bool
    input_tokens: int
    output_tokens: int
    concurrency: int
    mtp_draft_tokens: int

    @property
    def num_prompts(self) -> int:
        return min(10 * self.concurrency, max(3 * self.concurrency, MIN_PROMPTS))

    def describe(self) -> str:
        side = lambda n, tp, ep, dp: f"{n}x TP{tp} EP{ep}{' DPattn' if dp else ''}"  # noqa: E731
        return (f"{self.gpu} {self.engine} P {side(self.num_prefill, self.tp_prefill, self.ep_prefill, self.dp_prefill)}"
                f" / D {side(self.num_decode, self.tp_decode, self.ep_decode, self.dp_decode)}; "
                f"{self.input_tokens}/{self.output_tokens} C={self.concurrency}{' MTP' if self.mtp_draft_tokens else ''}")


@dataclass(frozen=True)
class LaunchSettings:
    """A run's worker settings from its InferenceX recipe (LAUNCH_FILE): per prefill worker the token budget of one
    iteration and the memory fraction; per decode worker its sequence cap, the largest CUDA-graph batch (per rank)
    and memory fraction; the MTP draft tokens per step."""

    recipe: str
    mtp_draft_tokens: int
    prefill_chunk_tokens: int
    prefill_mem_fraction: float
    decode_max_seqs: int
    decode_graph_max_seqs: int
    decode_mem_fraction: float


@lru_cache(maxsize=4)
def _launch_table(path: Path) -> pd.DataFrame | None:
    if not Path(path).exists():
        return None
    return pd.read_csv(path, comment="#", dtype={"concurrencies": str})


def launch_settings(run: DisaggRun, path: Path = LAUNCH_FILE) -> LaunchSettings | None:
    """The recipe InferenceX ran `run` with: same engine, GPU, input length (1024 / 8192; the 1024/8192 runs use the
    1024-input recipe), prefill and decode worker counts, decode DP attention, MTP on or off, and the run's
    concurrency in the recipe's list. None when the table is absent or no single recipe matches (the engine
    profile's defaults then stand)."""
    table = _launch_table(Path(path))
    if table is None:
        return None
    engine = "sglang" if run.engine == "sglang" else "trtllm"
    sel = table[(table.engine == engine) & (table.gpu == run.gpu.split("_")[0])
                & (table.input_tokens == (1024 if run.input_tokens <= 1024 else 8192))
                & (table.prefill_workers == run.num_prefill) & (table.decode_workers == run.num_decode)
                & (table.decode_dp_attention == int(run.dp_decode))
                & ((table.mtp_draft_tokens > 0) == (run.mtp_draft_tokens > 0))]
    sel = sel[sel.concurrencies.fillna("").map(lambda c: str(run.concurrency) in c.split("x"))]
    if len(sel) != 1:
        return None
    r = sel.iloc[0]
    return LaunchSettings(recipe=str(r.recipe), mtp_draft_tokens=int(r.mtp_draft_tokens),
                          prefill_chunk_tokens=int(r.prefill_chunk_tokens),
                          prefill_mem_fraction=float(r.prefill_mem_fraction), decode_max_seqs=int(r.decode_max_seqs),
                          decode_graph_max_seqs=int(r.decode_graph_max_seqs),
                          decode_mem_fraction=float(r.decode_mem_fraction))


def _sides(text: str, key: str, line: int) -> tuple[str, str]:
    m = _SIDES.match(str(text).strip())
    if not m:
        raise DataError(f"{SOURCE} line {line}: {key} {text!r} is not 'P:<prefill>/D:<decode>'")
    return m.group(1), m.group(2)


def parse_run(rec: pd.Series, line: int) -> DisaggRun:
    """The run a disaggregated row belongs to; DataError naming the line when a column is not as expected."""
    m = _WORKERS.search(str(rec["notes"]))
    if not m:
        raise DataError(f"{SOURCE} line {line}: notes do not state the prefill and decode workers "
                        "('N prefill worker(s)=G GPUs, M decode worker(s)=H GPUs')")
    n_p, g_p, n_d, g_d = (int(x) for x in m.groups())
    tp_p, tp_d = (int(x) for x in _sides(rec["tp"], "tp", line))
    ep_p, ep_d = (int(x) for x in _sides(rec["ep"], "ep", line))
    dp_p, dp_d = (x == "yes" for x in _sides(rec["dp_attention"], "dp_attention", line))
    if g_p != n_p * tp_p or g_d != n_d * tp_d:
        raise DataError(f"{SOURCE} line {line}: workers x TP ({n_p} x {tp_p}, {n_d} x {tp_d}) do not match the GPUs "
                        f"stated ({g_p}, {g_d})")
    return DisaggRun(gpu=hardware_gpu(str(rec["gpu"])), engine=ENGINES[str(rec["engine"])], num_prefill=n_p, num_decode=n_d,
                     tp_prefill=tp_p, tp_decode=tp_d, ep_prefill=ep_p, ep_decode=ep_d, dp_prefill=dp_p,
                     dp_decode=dp_d, input_tokens=int(rec["input_tokens"]), output_tokens=int(rec["output_tokens"]),
                     concurrency=int(rec["batch_size_or_concurrency"]),
                     mtp_draft_tokens=1 if "spec_decode=mtp" in str(rec["notes"]) else 0)


def disaggregated_rows(corpus_dir: Path = CORPUS_DIR) -> pd.DataFrame:
    """One line per measured TPOT / TTFT value of a disaggregated run: line, run, metric (tpot|ttft), statistic
    (median|mean), measured_ms. Empty when the corpus has no InferenceX file."""
    files = sorted(Path(corpus_dir).glob(f"{SOURCE}.csv*"))
    cols = ["line", "run", "metric", "statistic", "measured_ms"]
    if not files:
        return pd.DataFrame(columns=cols)
    frame = pd.read_csv(files[0], comment="#", dtype=str)
    out = []
    for i, (_, rec) in enumerate(frame.iterrows()):
        if str(rec["engine"]) not in ENGINES or str(rec["metric"]) not in METRICS:
            continue
        metric, stat = METRICS[str(rec["metric"])]
        out.append({"line": i + 2, "run": parse_run(rec, i + 2), "metric": metric, "statistic": stat,
                    "measured_ms": float(rec["value"])})
    return pd.DataFrame(out, columns=cols)


def run_deployment(run: DisaggRun, launch: LaunchSettings | None = None) -> tuple[CascadeSpec, CascadePlan, object]:
    """The run as a one-tier disaggregated cascade and plan on enough 8-GPU DGX nodes (each worker on whole nodes);
    MTP with the recipe's draft tokens where the run used it (one without a recipe)."""
    mtp = launch.mtp_draft_tokens if launch is not None and run.mtp_draft_tokens else run.mtp_draft_tokens
    tier = TierSpec(load_model("deepseek_v3"), "fp8", MEMORY_KV[run.engine][1], mtp_draft_tokens=mtp)
    replicas, node = [], 0
    for role, n, tp, ep, dp in (("prefill", run.num_prefill, run.tp_prefill, run.ep_prefill, run.dp_prefill),
                                ("decode", run.num_decode, run.tp_decode, run.ep_decode, run.dp_decode)):
        for _ in range(n):
            gpus = tuple((node + g // GPUS_PER_NODE, g % GPUS_PER_NODE) for g in range(tp))
            node += -(-tp // GPUS_PER_NODE)
            replicas.append(ReplicaPlan(tp, 1, gpus, role=role, ep=ep, dp_attention=dp))
    cluster = ClusterSpec(f"dgx_{run.gpu}_{node}x{GPUS_PER_NODE}", load_gpu(run.gpu), node, GPUS_PER_NODE,
                          ib_bw_gbps=IB_NODE_GBPS, ib_latency_us=IB_LATENCY_US)
    cascade = CascadeSpec("serve_deepseek_v3_disaggregated", (tier,), single_model=True)
    plan = CascadePlan("disaggregated_benchmark", (TierPlan(tier.model.name, tuple(replicas)),), ())
    return cascade, plan, cluster


# MTP draft acceptance on InferenceX's random-token benchmark, per engine: the median over the source's colocated H200
# TP8 pairs that differ only in MTP (same engine, lengths and concurrency; 6 SGLang pairs with its 2 EAGLE steps, 8
# TensorRT-LLM pairs with its 3 MTP layers) of the acceptance that makes the cost model's MTP step over its plain step
# equal the measured TPOT ratio (mtp_acceptance_from_colocated_pairs recomputes them). The engine profiles' 0.85
# (DeepSeek-V3 report, natural text) would make MTP 1.6-2x faster than these runs show; none of the 65 disaggregated
# rows enters this.
INFERENCEX_MTP_ACCEPTANCE = {"sglang": 0.49, "trtllm_pytorch": 0.66}
COLOCATED_MTP_DRAFTS = {"SGLang": ("sglang", 2, "bf16"), "TensorRT-LLM": ("trtllm_pytorch", 3, "fp8")}


def mtp_acceptance_from_colocated_pairs(corpus_dir: Path = CORPUS_DIR) -> dict[str, float]:
    """INFERENCEX_MTP_ACCEPTANCE's derivation: per engine, the median acceptance a over the colocated (not
    disaggregated) InferenceX TPOT medians measured with and without MTP at the same concurrency B, where
    1 + a + ... + a^k = R / Q, R the cost model's decode step with k drafts over the plain step (batch B, context
    0.9 input + 0.45 output tokens: half-way through the drawn lengths) and Q the measured TPOT with MTP over without."""
    frame = pd.read_csv(sorted(Path(corpus_dir).glob(f"{SOURCE}.csv*"))[0], comment="#", dtype=str)
    frame = frame[~frame.engine.str.contains("disaggregated") & (frame.metric == "tpot_median")
                  & frame.engine.isin(list(COLOCATED_MTP_DRAFTS))]
    frame = frame.assign(mtp=frame.notes.str.contains("spec_decode=mtp"), v=frame.value.astype(float))
    keys = ["engine", "gpu", "tp", "ep", "dp_attention", "input_tokens", "output_tokens", "batch_size_or_concurrency"]
    pairs = frame.groupby(keys + ["mtp"]).v.median().unstack("mtp").dropna()
    model = load_model("deepseek_v3")
    found: dict[str, list[float]] = {}
    for (engine, gpu, tp, ep, dp, isl, osl, conc), rec in pairs.iterrows():
        name, k, kv = COLOCATED_MTP_DRAFTS[engine]
        kw = dict(engine=resolve_engine(name), gpu_memory_utilization=0.8, ep=int(ep), dp_attention=dp == "yes")
        g = load_gpu(hardware_gpu(gpu))
        plain = build_replica_cost(model, g, int(tp), 1, "fp8", kv, **kw)
        mtp = build_replica_cost(model, g, int(tp), 1, "fp8", kv, mtp_draft_tokens=k, **kw)
        batch = int(conc)
        ctx = int(batch * (0.9 * int(isl) + 0.45 * int(osl)))
        a0, b0 = plain.decode_affine(batch)
        a1, b1 = mtp.decode_affine(batch)
        ratio_cost = (a1 + b1 * ctx) * mtp.mtp_tokens_per_step / (a0 + b0 * ctx)
        tokens = ratio_cost / (rec[True] / rec[False])
        if 1.0 < tokens < k + 1:
            found.setdefault(name, []).append(brentq(lambda a: sum(a ** i for i in range(k + 1)) - tokens, 1e-9, 1.0))
    return {name: float(np.median(v)) for name, v in found.items()}


def role_cost_factory(eng: EngineProfile, cfg, launch: LaunchSettings | None):
    """The simulator's cost_factory with each side's recipe settings: the decode workers' CUDA-graph batch limit and
    memory fraction, the prefill workers' memory fraction (the engine profile's own where there is no recipe)."""
    if launch is None:
        return engine_cost_factory(eng, cfg)
    decode_eng = replace(eng, cuda_graph_max_seqs=launch.decode_graph_max_seqs)

    def factory(tier, replica, cluster, **_ignored):
        decode = replica.role == "decode"
        return replica_cost_for(tier, replica, cluster, engine=decode_eng if decode else eng,
                                gpu_memory_utilization=launch.decode_mem_fraction if decode
                                else launch.prefill_mem_fraction, kv_block_size=cfg.kv_block_size)

    return factory


@lru_cache(maxsize=256)
def simulate_run(run: DisaggRun, engine: EngineProfile | None = None, seed: int = 0, mode: str = "fast") -> dict:
    """{tpot_median, tpot_mean, ttft_median, ttft_mean} in ms of the simulated benchmark, plus requests and the
    mean KV transfer in ms; mode: the simulator's fast (default) or reference mode."""
    eng = engine if engine is not None else replace(resolve_engine(run.engine),
                                                    mtp_acceptance=INFERENCEX_MTP_ACCEPTANCE[run.engine])
    row = CorpusRow(source=SOURCE, line=0, engine=run.engine, engine_version="", gpu=run.gpu, model="deepseek_v3",
                    weights="fp8", kv=MEMORY_KV[run.engine][1], tp=run.tp_decode, pp=1, kind="closed_loop",
                    batch_size=run.concurrency, input_tokens=run.input_tokens, output_tokens=run.output_tokens,
                    request_rate=None, num_prompts=run.num_prompts, measured=(), length_ratio=0.8)
    isl, osl = drawn_lengths(row)
    spec = ClientSpec(isl, osl, run.concurrency, None)
    launch = launch_settings(run)
    cascade, plan, cluster = run_deployment(run, launch)
    overrides = {**serving_sim_overrides(eng), "gpu_memory_utilization": MEMORY_KV[run.engine][0], "mode": mode}
    if launch is not None:
        # One batching setting for the tier: the prefill workers' token budget per iteration (their chunk; a prompt
        # in one piece where the engine does not chunk, its budget holding one or two whole prompts) and the decode
        # workers' sequence cap (the prefill workers' own caps, 1-16, are implied by that budget for these prompts).
        overrides.update(batching="sarathi", chunk_tokens=launch.prefill_chunk_tokens,
                         max_num_seqs=launch.decode_max_seqs)
    cfg = sim_config_from_dict(overrides)
    release = release_times_s(spec.num_prompts, None, np.random.default_rng(seed))
    client = BenchmarkClient(release, spec.concurrency)
    workload = client_workload(spec, release, "deepseek_v3")
    result = simulate(plan, cascade, cluster, workload, cfg, seed=seed, cost_factory=role_cost_factory(eng, cfg, launch),
                      arrivals=client)
    req = result.requests
    done = req[req["status"] == "completed"]
    if len(done) < len(req):
        raise DataError(f"{len(req) - len(done)} of {len(req)} requests of {run.describe()} were not served: "
                        f"{dict(req[req['status'] != 'completed']['drop_reason'].value_counts())}")
    # The client's first token: a disaggregated engine streams it from the decode instance, once the KV has arrived
    # and the instance has admitted the visit (Dynamo's decode worker; SGLang's decode server), so the wait for
    # decode room is first-token time, as the benchmark measures it, not time between tokens.
    # A visit that a decode instance took in without the admission step (behind a sequence preempted there, its
    # policy prefilled it again: 2 of 600 requests in one run of the corpus) has no admission time: left out.
    admitted = done[done["decode_admit_s_t0"].notna() | (done["output_tokens_final"] <= 1)]
    latency_ms = admitted["latency_s"].to_numpy() * 1e3
    from_admit_ms = (admitted["completion_s"].to_numpy() - admitted["decode_admit_s_t0"].to_numpy()) * 1e3
    out = admitted["output_tokens_final"].to_numpy()
    multi = out > 1
    ttft_ms = np.where(multi, latency_ms - from_admit_ms, admitted["ttft_s"].to_numpy() * 1e3)
    tpot_ms = from_admit_ms[multi] / (out[multi] - 1)
    res = {"tpot_median": float(np.median(tpot_ms)), "tpot_mean": float(tpot_ms.mean()),
           "ttft_median": float(np.median(ttft_ms)), "ttft_mean": float(ttft_ms.mean()), "requests": int(len(done)),
           "requests_without_admission": int(len(done) - len(admitted))}
    if "kv_transfer_s" in done.columns:
        res["kv_transfer_ms_mean"] = float(done["kv_transfer_s"].mean() * 1e3)
    return res


def evaluate_disaggregated(corpus_dir: Path = CORPUS_DIR) -> pd.DataFrame:
    """Every disaggregated row with its prediction: line, metric, statistic, measured_ms, predicted_ms, ape_pct,
    concurrency, run (described), excluded (the reason a run could not be simulated; '' when predicted)."""
    rows = disaggregated_rows(corpus_dir)
    out = []
    for rec in rows.itertuples(index=False):
        base = {"line": rec.line, "metric": rec.metric, "statistic": rec.statistic, "measured_ms": rec.measured_ms,
                "concurrency": rec.run.concurrency, "gpu": rec.run.gpu, "engine": rec.run.engine,
                "run": rec.run.describe()}
        try:
            pred = simulate_run(rec.run)[f"{rec.metric}_{rec.statistic}"]
        except UserError as exc:
            out.append({**base, "predicted_ms": math.nan, "ape_pct": math.nan, "excluded": str(exc)})
            continue
        out.append({**base, "predicted_ms": pred, "ape_pct": abs(pred / rec.measured_ms - 1) * 100, "excluded": ""})
    return pd.DataFrame(out, columns=["line", "metric", "statistic", "measured_ms", "predicted_ms", "ape_pct",
                                      "concurrency", "gpu", "engine", "run", "excluded"])


def disaggregated_summary(points: pd.DataFrame) -> dict:
    """The JSON line's keys: disaggregated_rows (measured TPOT medians predicted, one per run and concurrency),
    disaggregated_tpot_mape_pct and disaggregated_ttft_mape_pct (medians, the statistic every run reports), and the
    same over the runs that also report means."""
    kept = points[points.excluded == ""]

    def mape(metric: str, stat: str) -> float | None:
        sel = kept[(kept.metric == metric) & (kept.statistic == stat)]
        return round(float(sel.ape_pct.mean()), 2) if len(sel) else None

    median_tpot = kept[(kept.metric == "tpot") & (kept.statistic == "median")]
    return {"disaggregated_rows": int(len(median_tpot)),
            "disaggregated_tpot_mape_pct": mape("tpot", "median"),
            "disaggregated_ttft_mape_pct": mape("ttft", "median"),
            "disaggregated_tpot_mean_mape_pct": mape("tpot", "mean"),
            "disaggregated_ttft_mean_mape_pct": mape("ttft", "mean"),
            "disaggregated_excluded_runs": int(points[points.excluded != ""].drop_duplicates("run").shape[0])}


def main(argv: list[str] | None = None) -> int:
    """python -m sim.fidelity.corpus_disagg [DIR]: the disaggregated rows' table and the summary as one JSON line."""
    import argparse
    import json

    from sim.common.cli import exit_on_user_error

    @exit_on_user_error
    def run(args_list):
        ap = argparse.ArgumentParser(prog="python -m sim.fidelity.corpus_disagg", description=main.__doc__)
        ap.add_argument("corpus", type=Path, nargs="?", default=CORPUS_DIR)
        args = ap.parse_args(args_list)
        if not args.corpus.is_dir():
            raise DataError(f"{args.corpus}: not a directory; give a measurement corpus folder (default {CORPUS_DIR})")
        points = evaluate_disaggregated(args.corpus)
        if points.empty:
            raise DataError(f"{args.corpus}: no {SOURCE}.csv[.gz] with disaggregated (PD) rows to predict")
        print_table(points)
        print(json.dumps(disaggregated_summary(points)))
        return 0

    return run(argv)


def print_table(points: pd.DataFrame) -> None:
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.max_rows", 400,
                           "display.max_colwidth", 90):
        med = points[points.statistic == "median"]
        wide = med.pivot_table(index=["run"], columns="metric", values=["measured_ms", "predicted_ms", "ape_pct"],
                               aggfunc="first")
        print("Disaggregated runs (InferenceX, Dynamo P/D): median TPOT and TTFT, measured against the disaggregated "
              "simulator (ms; APE %)")
        print(wide.round(1).to_string())


if __name__ == "__main__":
    import sys

    sys.exit(main())
