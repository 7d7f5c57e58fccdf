"""Serving-engine profiles (conf/engine/*.yaml): the costs an engine adds to its kernels, and its memory reserve.

A profile is data: every number in its YAML carries its source (a paper, a document, a measurement, or the
calibration run that fitted it). build_replica_cost accepts a profile name or an EngineProfile object, so a
calibration can try candidate parameters without writing files (dataclasses.replace on a loaded profile).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache


from sim.common.config_checks import dataclass_from_mapping
from sim.common.errors import ConfigError
from sim.common.io import read_yaml
from sim.common.paths import CONF_DIR

# Fields sim.fidelity.calibrate --engine fits: (lower, prior, upper). The bounds keep every fit physical; the prior is
# an engine-agnostic middle of the published range, used as the start and as a weak pull (so a field the data
# cannot identify stays near it instead of drifting to a bound).
FITTABLE: dict[str, tuple[float, float, float]] = {
    "layer_overhead_graph_us": (0.5, 10.0, 60.0),  # kernel gaps + rank skew per layer
    "layer_overhead_tp_exponent": (0.05, 0.35, 1.0),  # rank skew grows with TP, at most linearly
    "cpu_base_ms": (0.02, 0.5, 10.0),  # scheduler + sampler per iteration
    "cpu_per_seq_ms": (0.0005, 0.02, 0.2),  # per-sequence bookkeeping and sampling
    "allreduce_nvlink_base_us": (3.0, 15.0, 60.0),  # custom all-reduce ~5-10 us, NCCL ~20-30 us per call
    "attn_prefill_eff": (0.2, 0.5, 0.9),  # FlashAttention-2/3: 35-75% of dense peak
    "attn_decode_mem_eff": (0.3, 0.7, 0.95),  # paged decode attention: 50-85% of HBM peak
}


@dataclass(frozen=True)
class EngineProfile:
    """One engine at one version. Times: ms for CPU work, us for GPU-side gaps and collective latencies."""

    name: str
    version: str
    # CPU time per iteration (schedule, prepare inputs, sample, detokenise), not hidden behind the GPU:
    # cpu_base_ms + cpu_per_seq_ms * sequences + cpu_per_log2_tp_ms * log2(TP).
    cpu_base_ms: float
    cpu_per_seq_ms: float
    cpu_per_log2_tp_ms: float
    # GPU-side gaps per transformer layer (launch gaps, syncs, rank skew), scaled by TP^exponent.
    layer_overhead_graph_us: float
    layer_overhead_eager_us: float
    layer_overhead_tp_exponent: float
    cuda_graph_max_seqs: int  # decode batches up to this size replay CUDA graphs; 0: no CUDA graphs
    chunked_prefill: bool  # prompts split into chunks mixed with decodes (Sarathi-Serve style)
    max_num_batched_tokens: int  # token budget of one iteration; sizes the activation reserve
    max_num_seqs: int  # sequences one iteration may hold (the engine's default batch cap)
    # Memory per GPU outside weights and KV: CUDA context, NCCL buffers, CUDA graphs, allocator slack (base),
    # plus the peak activations of one iteration of max_num_batched_tokens (computed from the model).
    reserve_base_gb: float
    # How the memory fraction applies: vLLM/SGLang give KV gpu_memory_utilization x total - weights - reserve;
    # TensorRT-LLM gives it kv_cache_free_gpu_mem_fraction x (total - weights - reserve).
    kv_fraction_of_free_memory: bool
    # Achieved all-reduce: fixed latency per call and fraction of link bandwidth, over NVLink and InfiniBand.
    allreduce_nvlink_base_us: float
    allreduce_nvlink_bw_eff: float
    allreduce_ib_base_us: float
    allreduce_ib_bw_eff: float
    # Attention kernels: prefill at this fraction of dense BF16 peak, decode reads KV at this fraction of HBM peak.
    attn_prefill_eff: float
    attn_decode_mem_eff: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "version"):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"engine {self.name!r}: {f.name} must be a non-empty string, got {value!r}")
            elif f.name in ("chunked_prefill", "kv_fraction_of_free_memory"):
                if not isinstance(value, bool):
                    raise ConfigError(f"engine {self.name!r}: {f.name} must be true or false, got {value!r}")
            elif (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                  or value < 0):
                raise ConfigError(f"engine {self.name!r}: {f.name} must be a finite non-negative number, got {value!r}")
        for key in ("allreduce_nvlink_bw_eff", "allreduce_ib_bw_eff", "attn_prefill_eff", "attn_decode_mem_eff"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"engine {self.name!r}: {key} is a fraction of peak and must be in (0, 1], "
                                  f"got {getattr(self, key)!r}")
        for key in ("max_num_batched_tokens", "max_num_seqs"):
            if getattr(self, key) < 1 or getattr(self, key) != int(getattr(self, key)):
                raise ConfigError(f"engine {self.name!r}: {key} must be a positive integer, got {getattr(self, key)!r}")

    def cpu_time_s(self, num_seqs: int, tp: int) -> float:
        return 1e-3 * (self.cpu_base_ms + self.cpu_per_seq_ms * num_seqs + self.cpu_per_log2_tp_ms * math.log2(tp))

    def layer_overhead_s(self, tp: int, graph: bool) -> float:
        base = self.layer_overhead_graph_us if graph else self.layer_overhead_eager_us
        return 1e-6 * base * tp ** self.layer_overhead_tp_exponent


def available_engines() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "engine").glob("*.yaml"))


def engine_from_dict(data: dict, where: str = "engine") -> EngineProfile:
    data = dict(data)
    if "version" in data:
        data["version"] = str(data["version"])
    return dataclass_from_mapping(EngineProfile, data, where, required=True)


def resolve_engine(engine: str | EngineProfile) -> EngineProfile:
    """A profile object as given, or the named one from conf/engine."""
    if isinstance(engine, EngineProfile):
        return engine
    if not isinstance(engine, str):
        raise ConfigError(f"engine must be a conf/engine name or an EngineProfile, got {engine!r}")
    return load_engine(engine)


@lru_cache(maxsize=None)
def load_engine(name: str) -> EngineProfile:
    path = CONF_DIR / "engine" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown engine {name!r}; valid names are {available_engines()}")
    return engine_from_dict(read_yaml(path, "engine file"), str(path))
