"""Analytic predictions of corpus rows that are neither one iteration nor one static batch: a closed-loop benchmark's
steady state (fixed concurrency, lengths drawn from the benchmark's distribution) and single kernels.

Closed loop at concurrency C (a benchmark client that sends a new request as soon as one finishes): D = min(C, the
engine's max_num_seqs, the requests whose KV fits) decode together at the mean context. Each request is prefilled
once in its life, so per decode iteration D / mean_output new prompts are prefilled, in their own iteration or
chunked beside the decodes; either way the decodes wait for them: TPOT = decode step + D / mean_output x mean
prefill time. TTFT = the request's own prefill + half a decode step (it arrives mid-iteration) + the wait for the
prefill server (M/D/1 at the arrival rate D / (mean_output x TPOT)) + the wait for a decode slot when C > D
(Little's law) + the engine's request-path time (ttft_overhead_ms: HTTP, tokeniser, first streamed chunk). Lengths drawn uniformly in [ratio x L, L] (the benchmark's random dataset) are sampled with a seed
per row; a median TTFT is the median over the drawn prompts.
"""
from __future__ import annotations

import numpy as np

from sim.fidelity.corpus_rows import CorpusRow
from sim.fidelity.timing import batch_prefill_time_s, decode_step_time_s
from sim.perf.cost_model import ReplicaCostModel
from sim.perf.engine import EngineProfile
from sim.perf.kernels import AllReduceParams, elementwise_time_s, gemm_time_s, ring_allreduce_time_s
from sim.perf.layers import dense_layer_ops
from sim.perf.params import load_params
from sim.spec.hardware import GPUSpec
from sim.spec.models import ModelSpec

LENGTH_SEED = 18
PREFILL_SAMPLES = 33  # prompts whose prefill is timed (evenly spaced order statistics of the draws)
MAX_PREFILL_UTILISATION = 0.95  # the M/D/1 wait diverges at 1; beyond this the row is saturated anyway


def drawn_lengths(row: CorpusRow) -> tuple[np.ndarray, np.ndarray]:
    """(input, output) lengths of the row's requests: fixed, or drawn uniformly in [ratio x L, L]."""
    n = max(1, row.num_prompts)
    if row.length_ratio >= 1.0:
        return np.full(n, row.input_tokens), np.full(n, row.output_tokens)
    rng = np.random.default_rng(np.random.SeedSequence([LENGTH_SEED, row.line]))
    isl = rng.integers(int(row.length_ratio * row.input_tokens), row.input_tokens + 1, size=n)
    osl = rng.integers(int(row.length_ratio * row.output_tokens), row.output_tokens + 1, size=n)
    return isl, osl


def closed_loop_latencies_ms(row: CorpusRow, cost: ReplicaCostModel) -> dict[str, float]:
    isl, osl = drawn_lengths(row)
    mean_isl, mean_osl = float(isl.mean()), float(osl.mean())
    order = np.sort(isl)
    picks = order[np.linspace(0, len(order) - 1, min(len(order), PREFILL_SAMPLES)).astype(int)]
    prefill_s = np.array([batch_prefill_time_s(cost, 1, int(x)) for x in picks])
    by_kv = int(cost.kv_capacity_tokens // (mean_isl + mean_osl))
    decode = max(1, min(row.batch_size, cost.engine.max_num_seqs, by_kv))
    step_s = decode_step_time_s(cost, decode, mean_isl + mean_osl / 2.0)
    mean_prefill = float(prefill_s.mean())
    tpot_s = step_s + decode / mean_osl * mean_prefill
    rate = decode / (mean_osl * tpot_s)  # requests per second through the replica
    rho = min(rate * mean_prefill, MAX_PREFILL_UTILISATION)
    wait_s = rho * mean_prefill / (2.0 * (1.0 - rho)) + (row.batch_size - decode) / rate + step_s / 2.0
    first = float(np.median(prefill_s)) if row.statistic == "median" else mean_prefill
    return {"tpot_ms": tpot_s * 1e3, "closed_ttft_ms": (first + wait_s) * 1e3 + cost.engine.ttft_overhead_ms}


def kernel_time_ms(row: CorpusRow, engine: EngineProfile, model: ModelSpec, gpu: GPUSpec) -> float:
    """A kernel-floor row: one NCCL all-reduce of batch_size bytes over tp ranks, or the operators of one dense
    layer (linears only, or linears + norms/rope/activation/add) at batch_size tokens, with the calibrated
    efficiencies (the H100 fit for GPUs without their own)."""
    p = load_params(gpu.name)
    if row.kind == "kernel_allreduce":
        ar = AllReduceParams(engine.allreduce_nvlink_bw_eff, p.allreduce.step_latency_s,
                             engine.allreduce_nvlink_base_us * 1e-6)
        return ring_allreduce_time_s(row.batch_size, row.tp, gpu.nvlink_bw_gbps * 1e9, ar) * 1e3
    gemms, ew = dense_layer_ops(model, row.tp)
    tokens, hbm = row.batch_size, gpu.hbm_bw_gbps * 1e9
    t = sum(gemm_time_s(tokens, g.k, g.n, 2.0, gpu.bf16_tflops * 1e12, hbm, p.gemm) for g in gemms)
    if row.kind == "kernel_layer":
        t += sum(elementwise_time_s(e.bytes_per_token * tokens, hbm, p.elementwise[e.kind]) for e in ew)
    return t * 1e3
