"""Serving-engine profiles (conf/engine/*.yaml): the costs an engine adds to its kernels, and its memory reserve.

A profile is data: every number in its YAML carries its source (a paper, a document, a measurement, or the
calibration run that fitted it). build_replica_cost accepts a profile name or an EngineProfile object, so a
calibration can try candidate parameters without writing files (dataclasses.replace on a loaded profile).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
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
    "allreduce_nvlink_base_us": (3.0, 15.0, 60.0),  # NCCL ~20-30 us per call
    "allreduce_custom_base_us": (2.0, 8.0, 30.0),  # intra-node custom all-reduce kernels: ~5-10 us per call
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
    # ---- fields with defaults (issue 18); a profile that omits them keeps the behaviour before them ----------
    # All-reduce algorithm inside a node: "nccl" (ring, per-hop latency) or "custom" (vLLM/TRT-LLM/PyTorch
    # intra-node one/two-shot kernels over NVLink P2P: one fixed latency per call, no per-hop steps) for messages
    # up to allreduce_custom_max_kb; larger messages, PCIe-only GPUs and inter-node groups use NCCL.
    allreduce_algorithm: str = "nccl"
    allreduce_custom_base_us: float = 8.0
    allreduce_custom_max_kb: float = 8192.0
    # Eager (no CUDA graph) host time per MoE/MLA layer, us, whatever the TP (ranks launch in parallel): far more
    # small kernels and Python ops than a dense layer (routing, top-k, token sort, per-expert GEMM groups, MLA's
    # absorbed projections). 0: as a dense layer.
    layer_overhead_eager_moe_us: float = 0.0
    # Whether an eager (no CUDA graph) iteration's MoE/MLA host launches overlap its GPU work. True: the host runs
    # ahead of the GPU and the step costs the larger of the two (a C++ runtime). False: the eager MoE/MLA layers' host
    # time (layer_overhead_eager_moe_us) is paid on top of the GPU work, so a long prefill still pays it (Python
    # engines; the evidence is in conf/engine/sglang.yaml). Dense layers' eager launches run ahead either way.
    eager_host_overlaps_gpu: bool = True
    # Expert-parallel all-to-all (dispatch FP8 + combine BF16): fixed latency per call and fraction of the link
    # rate, over NVLink and over RDMA. Priors from DeepEP's published kernel figures (data/measurements).
    a2a_nvlink_base_us: float = 40.0
    a2a_nvlink_bw_eff: float = 0.6
    a2a_ib_base_us: float = 80.0
    a2a_ib_bw_eff: float = 0.85
    # Hottest EP rank's routed token-expert rows over the mean (uneven expert load without a perfect balancer).
    expert_imbalance: float = 1.0
    # Multi-token prediction: probability that each draft token is accepted (used where a replica drafts tokens).
    mtp_acceptance: float = 0.8
    # CPU time per iteration when the engine's overlap scheduler is off, as a multiple of cpu_* above (which are the
    # part left exposed with it on); 1: the profile has no overlap scheduler. See without_overlap_scheduler.
    cpu_scale_without_overlap: float = 1.0
    # DP attention: whether the engine balances context (prefill) requests over the DP ranks before running them
    # (TensorRT-LLM's attention_dp_config enable_balance holds them until every rank has one). False: requests are
    # dispatched as they come (SGLang's round robin), so the busiest rank prefills whole sequences alone.
    dp_prefill_balanced: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "version"):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"engine {self.name!r}: {f.name} must be a non-empty string, got {value!r}")
            elif f.name == "allreduce_algorithm":
                if value not in ("nccl", "custom"):
                    raise ConfigError(f"engine {self.name!r}: allreduce_algorithm must be 'nccl' or 'custom', "
                                      f"got {value!r}")
            elif f.name in ("chunked_prefill", "kv_fraction_of_free_memory", "eager_host_overlaps_gpu",
                            "dp_prefill_balanced"):
                if not isinstance(value, bool):
                    raise ConfigError(f"engine {self.name!r}: {f.name} must be true or false, got {value!r}")
            elif (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                  or value < 0):
                raise ConfigError(f"engine {self.name!r}: {f.name} must be a finite non-negative number, got {value!r}")
        if self.cpu_scale_without_overlap < 1.0:
            raise ConfigError(f"engine {self.name!r}: cpu_scale_without_overlap must be >= 1 (turning the overlap "
                              f"scheduler off cannot hide CPU time), got {self.cpu_scale_without_overlap!r}")
        if self.expert_imbalance < 1.0:
            raise ConfigError(f"engine {self.name!r}: expert_imbalance is the hottest rank's load over the mean and "
                              f"must be >= 1, got {self.expert_imbalance!r}")
        for key in ("allreduce_nvlink_bw_eff", "allreduce_ib_bw_eff", "attn_prefill_eff", "attn_decode_mem_eff",
                    "a2a_nvlink_bw_eff", "a2a_ib_bw_eff", "mtp_acceptance"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"engine {self.name!r}: {key} is a fraction of peak and must be in (0, 1], "
                                  f"got {getattr(self, key)!r}")
        for key in ("max_num_batched_tokens", "max_num_seqs"):
            if getattr(self, key) < 1 or getattr(self, key) != int(getattr(self, key)):
                raise ConfigError(f"engine {self.name!r}: {key} must be a positive integer, got {getattr(self, key)!r}")

    def cpu_time_s(self, num_seqs: int, tp: int) -> float:
        return 1e-3 * (self.cpu_base_ms + self.cpu_per_seq_ms * num_seqs + self.cpu_per_log2_tp_ms * math.log2(tp))

    def without_overlap_scheduler(self) -> EngineProfile:
        """This engine with its overlap scheduler off: the CPU work of an iteration (batch preparation, sampling
        hand-off, result processing) runs serialised with the GPU instead of behind the previous iteration, so all
        of it is exposed (cpu_scale_without_overlap times the overlapped profile's exposed tail)."""
        k = self.cpu_scale_without_overlap
        return replace(self, cpu_base_ms=self.cpu_base_ms * k, cpu_per_seq_ms=self.cpu_per_seq_ms * k,
                       cpu_per_log2_tp_ms=self.cpu_per_log2_tp_ms * k, cpu_scale_without_overlap=1.0)

    def layer_overhead_s(self, tp: int, graph: bool, moe: bool = False) -> float:
        if moe and not graph and self.layer_overhead_eager_moe_us > 0:
            # Host time of launching an eager MoE/MLA layer: every rank launches its own kernels in parallel, so it
            # does not grow with TP (the TP exponent models rank skew at the all-reduces of graph-replayed layers).
            return 1e-6 * self.layer_overhead_eager_moe_us
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
