"""Kernel-floor rows of the corpus (vidur_kernel_tp_profiles): one NCCL all-reduce, or one dense layer's operators,
timed with the calibrated kernel efficiencies and no engine overhead."""
from __future__ import annotations

from sim.fidelity.corpus_rows import CorpusRow
from sim.perf.engine import EngineProfile
from sim.perf.kernels import AllReduceParams, elementwise_time_s, gemm_time_s, ring_allreduce_time_s
from sim.perf.layers import dense_layer_ops
from sim.perf.params import load_params
from sim.spec.hardware import GPUSpec
from sim.spec.models import ModelSpec


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
