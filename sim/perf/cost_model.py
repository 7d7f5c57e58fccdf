"""Calibrated cost of one engine iteration of a replica (model, GPU, TP x PP, precision, placement) and its memory.

build_replica_cost() turns the physical description of a replica into a few precomputed coefficients per
pipeline stage, so that stage_time_s / iteration_time_s are a handful of float operations (the simulator's
hot path). The per-layer operators come from sim.perf.layers, their efficiencies from sim.perf.params
(fitted by sim.fidelity.calibrate), the fixed engine costs from conf/engine.

Fitted to data: GEMM and elementwise efficiencies (Vidur H100 operator profiles), NCCL all-reduce bandwidth and
latencies (h100_dgx), the vllm profile's CPU time per iteration (Vidur's A100-host measurement), and the fitted
fields of engine profiles calibrated on data/measurements (sim.fidelity.calibrate --engine). Engine-specific numbers
(CPU time, per-layer gaps, achieved all-reduce latency and bandwidth, attention efficiencies, memory reserve)
come from the engine profile (conf/engine), each with its source. Assumed: the AWQ dequantisation factor,
InfiniBand per-hop latency (cluster spec). Simplifications: MoE experts are TP-sharded and the tokens of a batch
spread evenly over the experts they touch; a prefill chunk's reads of earlier KV are not charged; weights are
spread evenly over TP x PP ranks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from sim.spec.cascade import TierSpec
from sim.common.errors import ConfigError, DeploymentDoesNotFit
from sim.spec.hardware import ClusterSpec, GPUSpec
from sim.spec.models import KV_BYTES, WEIGHT_BYTES, ModelSpec
from sim.perf.batch import BatchShape
from sim.perf.engine import EngineProfile, resolve_engine
from sim.perf.kernels import (ACT_BYTES, AllReduceParams, allreduce_coefficients, expected_distinct_experts,
                              gemm_coefficients, nccl_internode_allreduce_latency_s, p2p_time_s, ring_allgather_time_s,
                              smooth_max)
from sim.perf.layers import (Gemm, attention_elementwise, attention_gemms, dense_mlp_gemms, embedding_op,
                             kv_heads_per_gpu, mlp_act)
from sim.perf.params import CalibratedParams, load_params

GB = 1e9

# A GEMM term: (multiplicity, launch_s, compute_s_per_token, overlap_exponent, memory_fixed_s, memory_s_per_token)
GemmTerm = tuple[int, float, float, float, float, float]


@dataclass(frozen=True)
class MoeTerm:
    """Routed experts of the MoE layers of one stage on its most loaded rank. EP 1: TP-sharded (vLLM's fused_moe
    default: every rank holds 1/TP of every expert's width, so no all-to-all; the layer ends with the usual
    all-reduce). EP > 1: each rank holds num_experts / EP whole experts (rank_share = 1 / EP of the distinct
    experts a batch touches) and the hottest rank computes `imbalance` times the mean rows per expert."""

    layers: int
    launch_s: float
    num_experts: int
    experts_per_token: int
    compute_s_per_token_expert: float
    overlap_exponent: float  # the GEMM fit's compute/memory overlap (sim.perf.kernels.GemmParams)
    memory_s_per_expert: float  # streaming one expert's weight shard
    memory_s_per_token_expert: float
    rank_share: float = 1.0
    imbalance: float = 1.0
    # Expert-parallel all-to-all of DP-attention ranks (dispatch + combine): per layer, fixed and per token.
    a2a_fixed_s: float = 0.0
    a2a_s_per_token: float = 0.0


def moe_time_s(moe: MoeTerm, tokens: float, distinct_experts: float) -> float:
    """Routed-expert time of a stage: each distinct expert is one small GEMM group that streams its weights once and
    computes its share of the T*k token-expert rows (spread evenly), so with few tokens per expert the time is the
    bytes of the experts touched; there is no per-expert padding."""
    if distinct_experts <= 0.0:
        return 0.0
    rows = tokens * moe.experts_per_token / distinct_experts * moe.imbalance
    per_expert = smooth_max(moe.compute_s_per_token_expert * rows,
                             moe.memory_s_per_expert + moe.memory_s_per_token_expert * rows, moe.overlap_exponent)
    t = moe.layers * (moe.launch_s + distinct_experts * moe.rank_share * per_expert)
    if moe.a2a_fixed_s:
        t += moe.layers * (moe.a2a_fixed_s + moe.a2a_s_per_token * tokens)
    return t


def _dp_prefill_excess_s(st: StageCoefficients, batch: BatchShape) -> float:
    """The busiest DP-attention rank's prefill attention beyond the even 1 / DP split the stage terms charge: it
    holds ceil(n / DP) of the n prefilling sequences (taken as equally long), so (ceil(n / DP) / n - 1 / DP) of the
    prefill tokens and query-key pairs more, at one rank's rates."""
    n, dp = batch.num_prefill_seqs, st.dp_ranks
    excess = -(-n // dp) / n - 1.0 / dp
    if excess <= 0.0:
        return 0.0
    return excess * (batch.prefill_tokens * st.attn_rank_prefill_s_per_token
                     + batch.prefill_attn_pairs * st.attn_prefill_s_per_pair * dp)


def expected_tokens_per_step(draft_tokens: int, acceptance: float) -> float:
    """Tokens a sequence emits per verification step with `draft_tokens` chained drafts, each accepted with
    probability `acceptance` given the previous one was: 1 + a + a^2 + ... + a^k (the verified token always counts)."""
    return sum(acceptance ** i for i in range(draft_tokens + 1))


@dataclass(frozen=True)
class StageCoefficients:
    """Everything one pipeline stage costs, as coefficients of the batch aggregates."""

    layers: int
    gemms: tuple[GemmTerm, ...]  # per-token GEMMs (attention, dense MLP, shared experts, router)
    moe: MoeTerm | None
    fixed_s: float  # per iteration with any token: elementwise launches, all-reduce latencies
    per_token_s: float  # elementwise traffic and all-reduce bandwidth per token
    attn_prefill_fixed_s: float
    attn_prefill_s_per_pair: float
    attn_decode_fixed_s: float
    attn_decode_s_per_ctx_token: float
    lm_head: GemmTerm | None  # last stage only, on one token per sequence
    lm_head_gather_fixed_s: float
    lm_head_gather_s_per_seq: float
    send_fixed_s: float  # PP send of activations to the next stage (0 on the last stage)
    send_s_per_token: float
    overhead_graph_s: float  # per-layer gaps of the whole stage
    overhead_eager_s: float  # eager host launches that run ahead of the GPU (the step costs the larger of the two)
    # Eager MoE/MLA host time paid on top of the GPU work (engines with eager_host_overlaps_gpu false).
    overhead_eager_serial_s: float = 0.0
    # DP attention (dp_ranks > 1): a prefill's sequences are whole on one rank each, so the busiest rank runs the
    # attention of ceil(n / DP) of the n prefilling sequences, not 1 / DP of their tokens; the attention work per
    # prefill token on one rank (projections at their compute rate, attention elementwise) for the excess.
    dp_ranks: int = 1
    attn_rank_prefill_s_per_token: float = 0.0
    # The part of the stage time that depends on the batch's token count alone (elementwise, GEMMs, routed experts),
    # by token count, for this cost model's life: prefill batches rarely repeat a shape, but their token counts do.
    token_memo: dict = field(default_factory=dict, init=False, compare=False, repr=False)  # a copy starts empty


TOKEN_MEMO_MAX = 1 << 16  # token counts kept per stage (memory stays bounded for any workload)


def _gemm_term(g: Gemm, layers: int, peak_flops: float, hbm_bw: float, p: CalibratedParams,
               weight_bytes: float, dequant: float) -> GemmTerm:
    gp = p.gemm
    ca, mb, mc = gemm_coefficients(g.k, g.n, weight_bytes, peak_flops, hbm_bw, gp, dequant)
    return (layers, gp.launch_s, ca, gp.overlap_exponent, mb, mc)


def _gemm_time(term: GemmTerm, tokens: float) -> float:
    mult, launch, ca, exponent, mb, mc = term
    return mult * (launch + smooth_max(ca * tokens, mb + mc * tokens, exponent))


@dataclass(frozen=True)
class ReplicaCostModel:
    """Satisfies sim.perf.batch.ReplicaCost. Times are seconds; sizes bytes."""

    model: ModelSpec
    gpu_name: str
    weights: str
    kv: str
    tp: int
    pp: int
    kv_block_size: int
    kv_capacity_blocks: int
    weight_bytes_per_gpu: float
    reserve_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float  # on the most loaded stage
    engine: EngineProfile
    stages: tuple[StageCoefficients, ...]
    ctx_rate_s: float  # iteration seconds per decode context token (sum over stages)
    cuda_graph_max_seqs: int
    # Deployment options (issue 18): expert parallelism, data-parallel attention ranks, multi-token prediction.
    ep: int = 1
    dp_attention: bool = False
    mtp_draft_tokens: int = 0
    mtp_tokens_per_step: float = 1.0  # expected tokens emitted per verification step (expected_tokens_per_step)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_capacity_blocks * self.kv_block_size

    # ---- hot path --------------------------------------------------------------------------------
    def _stage_fixed_s(self, st: StageCoefficients, batch: BatchShape, graph: bool) -> float:
        """Stage time without the decode-context term (which is linear in decode_ctx_tokens)."""
        tokens = batch.prefill_tokens + batch.decode_seqs
        if tokens <= 0:
            return 0.0
        # The same additions in the same order whether memoized or not, so the float is the same.
        t = st.token_memo.get(tokens)
        if t is None:
            t = st.fixed_s + st.per_token_s * tokens
            for term in st.gemms:
                t += _gemm_time(term, tokens)
            moe = st.moe
            if moe is not None:
                t += moe_time_s(moe, tokens, expected_distinct_experts(tokens, moe.num_experts, moe.experts_per_token))
            if len(st.token_memo) < TOKEN_MEMO_MAX:
                st.token_memo[tokens] = t
        if batch.prefill_tokens > 0:
            t += st.attn_prefill_fixed_s + st.attn_prefill_s_per_pair * batch.prefill_attn_pairs
            if st.dp_ranks > 1 and batch.num_prefill_seqs:
                t += _dp_prefill_excess_s(st, batch)
        if batch.decode_seqs > 0:
            t += st.attn_decode_fixed_s
        if st.lm_head is not None:
            seqs = batch.num_prefill_seqs + batch.decode_seqs
            t += _gemm_time(st.lm_head, seqs) + st.lm_head_gather_fixed_s + st.lm_head_gather_s_per_seq * seqs
        # The GPU-side gaps between kernels are paid in every mode. Eager launches run ahead of the GPU: they
        # only cost time where the CPU is the slower side. The comparison leaves out decode attention (linear in
        # context) so decode batches stay affine in it; never cheaper than graphs, so time stays monotone.
        t += st.overhead_graph_s
        if not graph:
            t += st.overhead_eager_serial_s
            if st.overhead_eager_s > t:
                t = st.overhead_eager_s
        return t

    def _graph(self, batch: BatchShape) -> bool:
        # With DP attention each of the TP ranks replays its own graph on its 1 / TP of the sequences (SGLang's
        # cuda-graph-max-bs and TensorRT-LLM's cuda_graph_config.max_batch_size are per rank).
        seqs = batch.decode_seqs if not self.dp_attention else -(-batch.decode_seqs // self.tp)
        return batch.prefill_tokens == 0 and seqs <= self.cuda_graph_max_seqs

    def _cpu_seqs(self, batch: BatchShape) -> int:
        # With DP attention every rank runs its own scheduler process on its own 1 / TP of the sequences (SGLang's
        # per-DP-rank Scheduler, TensorRT-LLM's per-rank PyExecutor), in parallel: the step waits for the busiest.
        return batch.num_seqs if not self.dp_attention else -(-batch.num_seqs // self.tp)

    def stage_time_s(self, batch: BatchShape) -> float:
        """The slowest stage's time for this micro-batch, with its share (1/PP) of the CPU time."""
        if batch.num_tokens <= 0:
            return 0.0
        graph = self._graph(batch)
        cpu = self.engine.cpu_time_s(self._cpu_seqs(batch), self.tp) / self.pp
        return cpu + max(self._stage_fixed_s(st, batch, graph)
                         + st.attn_decode_s_per_ctx_token * batch.decode_ctx_tokens for st in self.stages)

    def _iteration_fixed_s(self, batch: BatchShape, graph: bool | None = None) -> float:
        if batch.num_tokens <= 0:
            return 0.0
        if graph is None:
            graph = self._graph(batch)
        tokens = batch.num_tokens
        t = self.engine.cpu_time_s(self._cpu_seqs(batch), self.tp)
        for st in self.stages:
            t += self._stage_fixed_s(st, batch, graph) + st.send_fixed_s + st.send_s_per_token * tokens
        return t

    def iteration_time_s(self, batch: BatchShape) -> float:
        """All stages in sequence, PP sends between them, and the engine's CPU time."""
        if self.mtp_draft_tokens and batch.decode_seqs and not batch.prefill_tokens:
            a, b = self.decode_affine(batch.decode_seqs)
            return a + b * batch.decode_ctx_tokens
        t = self._iteration_fixed_s(batch) + self.ctx_rate_s * batch.decode_ctx_tokens
        if self.mtp_draft_tokens and batch.prefill_tokens:
            t += self._mtp_draft_extend_s(batch)
        return t

    def _mtp_draft_extend_s(self, batch: BatchShape) -> float:
        """MTP's pass over the prompt: before a prefilled request's first token returns, the engines run the MTP
        module over every prompt token of the iteration (its KV cache, and the first drafts from the last position).
        SGLang: EAGLEWorkerV2.forward_batch_generation in extend mode runs the target, then
        EagleDraftWorker._draft_extend_for_prefill, a draft-model forward over the batch's prompt tokens shifted by
        one; TensorRT-LLM's one-model MTP runs its first MTP layer over the context tokens in the same forward (the
        later draft steps only over each request's last token, negligible here). The module is one decoder layer
        (DeepSeek-V3/R1: num_nextn_predict_layers 1), so the pass costs 1 / num_layers of a prefill-only iteration
        of those prompt tokens, whatever the number of draft tokens. Decode tokens of a mixed iteration stay charged
        without MTP, as before."""
        prompt = BatchShape(prefill_tokens=batch.prefill_tokens, prefill_attn_pairs=batch.prefill_attn_pairs,
                            num_prefill_seqs=batch.num_prefill_seqs)
        return self._iteration_fixed_s(prompt) / self.model.num_layers

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        # Same float operations as iteration_time_s, so a + b * S reproduces it bit for bit.
        if self.mtp_draft_tokens:
            return self._mtp_decode_affine(decode_seqs)
        return self._iteration_fixed_s(BatchShape(decode_seqs=decode_seqs)), self.ctx_rate_s

    def _mtp_decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        """Multi-token prediction, as time per emitted token of a decode-only iteration: one verification pass of
        (1 + k) tokens per sequence, each reading the sequence's context, plus k draft passes of the MTP module
        (one extra layer: 1 / num_layers of a B-sequence step each), divided by the tokens a step emits on average.
        Mixed prefill + decode iterations charge their decode tokens without MTP (one token per sequence), a
        conservative bound, and their prompt tokens the MTP pass over them (_mtp_draft_extend_s)."""
        k = self.mtp_draft_tokens
        frac = k / self.model.num_layers
        # The engines capture their CUDA graphs per sequence (SGLang's cuda-graph-max-bs and TensorRT-LLM's graph
        # batch sizes count requests, each graph holding its 1 + k verified tokens), so the limit is on sequences.
        graph = self._graph(BatchShape(decode_seqs=decode_seqs))
        verify = self._iteration_fixed_s(BatchShape(decode_seqs=decode_seqs * (1 + k)), graph)
        draft = frac * self._iteration_fixed_s(BatchShape(decode_seqs=decode_seqs), graph)
        e = self.mtp_tokens_per_step
        return (verify + draft) / e, self.ctx_rate_s * ((1 + k) + frac) / e

    # ---- helpers ---------------------------------------------------------------------------------
    def prefill_time_s(self, prompt_tokens: int) -> float:
        """One sequence's whole prompt in one iteration (no chunking)."""
        pairs = prompt_tokens * (prompt_tokens + 1) / 2.0
        return self.iteration_time_s(BatchShape(prefill_tokens=prompt_tokens, prefill_attn_pairs=pairs,
                                                num_prefill_seqs=1))

    def decode_time_s(self, batch: int, ctx_tokens_per_seq: float) -> float:
        """One decode iteration of `batch` sequences, each with ctx_tokens_per_seq tokens of context."""
        return self.iteration_time_s(BatchShape(decode_seqs=batch,
                                                decode_ctx_tokens=int(round(batch * ctx_tokens_per_seq))))


# ---- construction --------------------------------------------------------------------------------
def _split_layers(num_layers: int, pp: int) -> list[tuple[int, int]]:
    """(first, count) per stage, as even as possible; the earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    out, first = [], 0
    for s in range(pp):
        count = base + (1 if s < extra else 0)
        out.append((first, count))
        first += count
    return out


def _activation_width(model: ModelSpec) -> int:
    moe = model.experts_per_token * model.moe_intermediate_size + model.num_shared_experts * model.moe_intermediate_size
    return max(model.intermediate_size, moe)


def _kv_bytes_per_token_per_layer_gpu(model: ModelSpec, kv: str, tp: int) -> float:
    if model.attention == "mla":
        return (model.kv_lora_rank + model.qk_rope_head_dim) * KV_BYTES[kv]  # latent replicated on every rank
    return 2 * kv_heads_per_gpu(model, tp) * model.head_dim * KV_BYTES[kv]


def _attention_flops_per_pair_gpu(model: ModelSpec, tp: int) -> float:
    """Prefill: QK^T and PV, 2 FLOPs per multiply-add. MLA prefill runs un-absorbed (192-d keys, 128-d values)."""
    heads = model.num_heads // tp
    if model.attention == "mla":
        return 2.0 * heads * (model.qk_nope_head_dim + model.qk_rope_head_dim + model.v_head_dim)
    return 4.0 * heads * model.head_dim


def _decode_attention_flops_per_ctx_gpu(model: ModelSpec, tp: int) -> float:
    """Decode reads every context token once; MLA absorbs W_UK/W_UV, so scores and values work on the latent."""
    heads = model.num_heads // tp
    if model.attention == "mla":
        return 2.0 * heads * (2 * model.kv_lora_rank + model.qk_rope_head_dim)
    return 4.0 * heads * model.head_dim


def _dp_term(term: GemmTerm, dp: int) -> GemmTerm:
    """A GEMM run on each of dp data-parallel ranks with 1 / dp of the batch's tokens (per-token terms / dp)."""
    if dp == 1:
        return term
    mult, launch, ca, exponent, mb, mc = term
    return mult, launch, ca / dp, exponent, mb, mc / dp


A2A_DISPATCH_BYTES_PER_ELEM = 1.0 + 4.0 / 128  # FP8 activations plus one FP32 scale per 128 (DeepEP dispatch)
A2A_COMBINE_BYTES_PER_ELEM = 2.0  # BF16 (DeepEP combine)


def _a2a_coef(model: ModelSpec, ep: int, dp: int, link_bw: float, base_s: float, bw_eff: float
              ) -> tuple[float, float]:
    """(fixed, per batch token) of one MoE layer's dispatch + combine all-to-all. Each rank holds 1/dp of the
    batch's tokens and sends every token to each of its k experts that live on another rank ((EP-1)/EP of them,
    uniform routing): FP8 hidden states out, BF16 back; two calls (dispatch, combine) per layer."""
    copies = model.experts_per_token * (ep - 1) / ep
    bytes_per_token = copies * model.hidden_size * (A2A_DISPATCH_BYTES_PER_ELEM + A2A_COMBINE_BYTES_PER_ELEM)
    return 2.0 * base_s, bytes_per_token / dp / (link_bw * bw_eff)


def _check_shape(model: ModelSpec, tp: int, pp: int) -> None:
    if tp < 1 or pp < 1:
        raise ConfigError(f"TP and PP must be at least 1, got TP{tp} x PP{pp}")
    widths = {"num_heads": model.num_heads, "intermediate_size": model.intermediate_size}
    if model.is_moe:
        widths["moe_intermediate_size"] = model.moe_intermediate_size
    for key, width in widths.items():
        if width % tp:
            raise ConfigError(f"model {model.name!r}: TP{tp} must divide {key}={width}; "
                              f"valid TP degrees divide {math.gcd(*widths.values())}")
    if pp > model.num_layers:
        raise ConfigError(f"model {model.name!r}: PP{pp} exceeds its {model.num_layers} layers")


def build_replica_cost(model: ModelSpec, gpu: GPUSpec, tp: int, pp: int, weights: str = "bf16", kv: str = "bf16", *,
                       tp_spans_nodes: bool = False, pp_spans_nodes: bool = False,
                       cluster: ClusterSpec | None = None, engine: str | EngineProfile = "vllm",
                       gpu_memory_utilization: float = 0.9, kv_block_size: int = 16, ep: int = 1,
                       dp_attention: bool = False, mtp_draft_tokens: int = 0) -> ReplicaCostModel:
    """Cost model of one replica (cached). Raises DeploymentDoesNotFit when weights and reserve exceed GPU memory.
    ep: expert-parallel degree of the routed experts (1, or a divisor of TP: EP ranks hold whole experts);
    dp_attention: attention (and, with EP, the dense MLPs and shared experts) runs data-parallel on each of the TP
    ranks with 1 / TP of the sequences; mtp_draft_tokens: multi-token prediction drafts per step (0: off)."""
    # One canonical key per deployment, however the caller spelled the arguments; the cluster only matters
    # when a group crosses nodes.
    eng = resolve_engine(engine)
    return _build_replica_cost(model, gpu, int(tp), int(pp), weights, kv, bool(tp_spans_nodes), bool(pp_spans_nodes),
                               cluster if (tp_spans_nodes or pp_spans_nodes) else None, eng,
                               float(gpu_memory_utilization), int(kv_block_size), int(ep), bool(dp_attention),
                               int(mtp_draft_tokens))


def _check_options(model: ModelSpec, tp: int, ep: int, dp_attention: bool, mtp_draft_tokens: int) -> None:
    if ep < 1 or tp % ep:
        raise ConfigError(f"EP{ep} must be a positive divisor of TP{tp} (EP ranks are the TP group's ranks)")
    if ep > 1 and not model.is_moe:
        raise ConfigError(f"model {model.name!r} has no experts; expert parallelism (EP{ep}) needs an MoE model")
    if ep > 1 and model.num_routed_experts % ep:
        raise ConfigError(f"model {model.name!r}: EP{ep} must divide its {model.num_routed_experts} routed experts")
    if mtp_draft_tokens < 0:
        raise ConfigError(f"mtp_draft_tokens must be 0 (off) or a positive number of draft tokens, "
                          f"got {mtp_draft_tokens}")


@lru_cache(maxsize=4096)
def _build_replica_cost(model: ModelSpec, gpu: GPUSpec, tp: int, pp: int, weights: str, kv: str,
                        tp_spans_nodes: bool, pp_spans_nodes: bool, cluster: ClusterSpec | None,
                        eng: EngineProfile, gpu_memory_utilization: float, kv_block_size: int, ep: int = 1,
                        dp_attention: bool = False, mtp_draft_tokens: int = 0) -> ReplicaCostModel:
    if weights not in WEIGHT_BYTES:
        raise ConfigError(f"unknown weight precision {weights!r}; valid: {sorted(WEIGHT_BYTES)}")
    if kv not in KV_BYTES:
        raise ConfigError(f"unknown KV precision {kv!r}; valid: {sorted(KV_BYTES)}")
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if kv_block_size < 1:
        raise ConfigError(f"kv_block_size must be a positive number of tokens, got {kv_block_size}")
    _check_shape(model, tp, pp)
    _check_options(model, tp, ep, dp_attention, mtp_draft_tokens)
    dp = tp if dp_attention else 1  # data-parallel attention ranks (SGLang / TensorRT-LLM: DP size = TP size)
    if (tp_spans_nodes or pp_spans_nodes) and cluster is None:
        raise ConfigError("a replica that spans nodes needs the cluster (its InfiniBand bandwidth and latency); "
                          "pass cluster=load_cluster(...)")
    p = load_params(gpu.name)

    # ---- memory ----------------------------------------------------------------------------------
    weight_per_gpu = model.weight_bytes(weights) / (tp * pp)  # embedding/LM head spread over stages
    if dp > 1:  # DP ranks replicate attention (and, with EP, the dense MLPs and shared experts) instead of sharding
        replicated = model.num_layers * model.attn_params
        if ep > 1:
            replicated += (model.num_dense_layers * model.dense_mlp_params
                           + model.num_moe_layers * model.num_shared_experts * model.expert_params)
        weight_per_gpu += replicated * WEIGHT_BYTES[weights] * (1.0 - 1.0 / tp) / pp
    act_per_token = ACT_BYTES * (4 * model.hidden_size + 3 * _activation_width(model) / tp)
    reserve = eng.reserve_base_gb * GB + eng.max_num_batched_tokens * act_per_token
    needed = weight_per_gpu + reserve
    if eng.kv_fraction_of_free_memory:  # TensorRT-LLM: the fraction applies to what weights and reserve leave
        usable = needed + max(0.0, gpu.memory_bytes - needed) * gpu_memory_utilization
    else:  # vLLM / SGLang: the fraction applies to the whole GPU
        usable = gpu.memory_bytes * gpu_memory_utilization
    if needed >= usable:
        raise DeploymentDoesNotFit(
            f"{model.name} in {weights} on TP{tp} x PP{pp} needs {needed / GB:.1f} GB per GPU "
            f"({weight_per_gpu / GB:.1f} GB weights + {reserve / GB:.1f} GB activation reserve) but only "
            f"{usable / GB:.1f} GB are available ({(needed - usable) / GB:.1f} GB missing)")
    split = _split_layers(model.num_layers, pp)
    kv_layer_gpu = _kv_bytes_per_token_per_layer_gpu(model, kv, tp // dp)
    kv_token_gpu = max(count for _, count in split) * kv_layer_gpu
    # With DP attention each rank holds only its own sequences' KV, so the replica holds dp times one rank's room.
    capacity_blocks = dp * int((usable - needed) // (kv_token_gpu * kv_block_size))
    if capacity_blocks < 1:
        missing = kv_token_gpu * kv_block_size - (usable - needed)
        raise DeploymentDoesNotFit(
            f"{model.name} in {weights} on TP{tp} x PP{pp} leaves no room for one KV block of {kv_block_size} "
            f"tokens: needs {(needed + kv_token_gpu * kv_block_size) / GB:.2f} GB per GPU but only "
            f"{usable / GB:.2f} GB are available ({missing / GB:.2f} GB missing)")

    # ---- compute ---------------------------------------------------------------------------------
    hbm = gpu.hbm_bw_gbps * 1e9
    bf16 = gpu.bf16_tflops * 1e12
    peak = gpu.fp8_tflops * 1e12 if weights == "fp8" else bf16
    dequant = p.awq_compute_factor if weights == "awq_int4" else 1.0
    wb = WEIGHT_BYTES[weights]

    def link(spans: bool) -> tuple[float, AllReduceParams]:
        """Achieved collectives: the engine's per-call latency and bandwidth efficiency, the link's per-hop latency."""
        if spans:
            assert cluster is not None
            return cluster.ib_bw_gbps * 1e9, AllReduceParams(eng.allreduce_ib_bw_eff, cluster.ib_latency_us * 1e-6,
                                                             eng.allreduce_ib_base_us * 1e-6)
        if gpu.interconnect == "pcie":  # NCCL ring through the PCIe switches: the GPU's own per-hop latency
            return gpu.nvlink_bw_gbps * 1e9, AllReduceParams(eng.allreduce_nvlink_bw_eff, gpu.nvlink_latency_us * 1e-6,
                                                             eng.allreduce_nvlink_base_us * 1e-6)
        if eng.allreduce_algorithm == "custom":  # one fixed kernel latency, no per-hop ring steps
            return gpu.nvlink_bw_gbps * 1e9, AllReduceParams(eng.allreduce_nvlink_bw_eff, 0.0,
                                                             eng.allreduce_custom_base_us * 1e-6)
        return gpu.nvlink_bw_gbps * 1e9, AllReduceParams(eng.allreduce_nvlink_bw_eff, p.allreduce.step_latency_s,
                                                         eng.allreduce_nvlink_base_us * 1e-6)

    tp_bw, tp_ar = link(tp_spans_nodes)
    if tp_spans_nodes:
        assert cluster is not None
        # NCCL's hierarchical latency (its own tuning model), not a flat ring of IB hops; bandwidth as before.
        tp_ar = AllReduceParams(eng.allreduce_ib_bw_eff, 0.0, nccl_internode_allreduce_latency_s(
            tp, max(2, -(-tp // cluster.gpus_per_node))))
        # Each rank's tokens leave through its own NIC (one per GPU, as DeepEP's RDMA figures are per GPU): the
        # node's InfiniBand rate over its GPUs, not the whole node's.
        tp_bw_a2a = cluster.ib_bw_gbps * 1e9 / cluster.gpus_per_node
        tp_a2a_base_s, tp_a2a_eff = eng.a2a_ib_base_us * 1e-6, eng.a2a_ib_bw_eff
    else:
        tp_bw_a2a, tp_a2a_base_s, tp_a2a_eff = gpu.nvlink_bw_gbps * 1e9, eng.a2a_nvlink_base_us * 1e-6, eng.a2a_nvlink_bw_eff
    pp_bw, pp_ar = link(pp_spans_nodes)
    ew = p.elementwise
    h = model.hidden_size

    attn_tp = tp // dp  # attention shards: TP ranks, or 1 (whole heads) on each DP-attention rank
    attn_g = attention_gemms(model, attn_tp)
    attn_ew = attention_elementwise(model, attn_tp)
    attn_flops_pair = _attention_flops_per_pair_gpu(model, attn_tp) / dp
    dec_bytes = kv_layer_gpu
    dec_flops = _decode_attention_flops_per_ctx_gpu(model, attn_tp)
    dec_per_ctx = max(dec_bytes / (hbm * eng.attn_decode_mem_eff), dec_flops / (bf16 * eng.attn_prefill_eff)) / dp
    mlp_dp = dp if ep > 1 else 1  # with EP and DP attention, dense MLPs and shared experts run data-parallel too
    mlp_tp = tp // mlp_dp
    moe_tp = tp // ep  # each expert's width is split over TP / EP ranks
    # Python engines pay their eager MoE/MLA layers' host time on top of the GPU work (EngineProfile field doc);
    # dense layers' eager launches still run ahead of the GPU.
    serial_moe_host = bool(eng.layer_overhead_eager_moe_us) and not eng.eager_host_overlaps_gpu
    stages = []
    for s, (first, count) in enumerate(split):
        dense = sum(1 for i in range(first, first + count) if i < model.num_dense_layers)
        moe_layers = count - dense
        gemms: list[GemmTerm] = [_dp_term(_gemm_term(g, count, peak, hbm, p, wb, dequant), dp) for g in attn_g]
        ew_ops = [(e, count, dp) for e in attn_ew]  # (op, layers, DP ranks sharing the batch's tokens)
        if dense:
            gemms += [_dp_term(_gemm_term(g, dense, peak, hbm, p, wb, dequant), mlp_dp)
                      for g in dense_mlp_gemms(model, mlp_tp)]
            ew_ops.append((mlp_act(model.intermediate_size / mlp_tp), dense, mlp_dp))
        moe = None
        if moe_layers:
            shared = model.num_shared_experts * model.moe_intermediate_size
            if shared:
                gemms += [_dp_term(_gemm_term(g, moe_layers, peak, hbm, p, wb, dequant), mlp_dp)
                          for g in dense_mlp_gemms(model, mlp_tp, width=shared)]
            router = Gemm("router", h, model.num_routed_experts, quantised=False)
            gemms.append(_dp_term(_gemm_term(router, moe_layers, bf16, hbm, p, 2.0, 1.0), dp))
            width = model.moe_intermediate_size / moe_tp
            expert_params = 3 * h * width
            mem = hbm * p.gemm.mem_eff
            ca = 2.0 * expert_params * dequant / (peak * p.gemm.compute_eff_max)
            a2a_fixed = a2a_per_token = 0.0
            if ep > 1 and dp > 1:  # DeepEP-style: tokens travel to their experts' ranks and back
                a2a_fixed, a2a_per_token = _a2a_coef(model, ep, dp, tp_bw_a2a, tp_a2a_base_s, tp_a2a_eff)
            moe = MoeTerm(layers=moe_layers, launch_s=2 * p.gemm.launch_s, num_experts=model.num_routed_experts,
                          experts_per_token=model.experts_per_token, compute_s_per_token_expert=ca,
                          overlap_exponent=p.gemm.overlap_exponent,
                          memory_s_per_expert=expert_params * wb / mem,
                          memory_s_per_token_expert=(2 * h + 3 * width) * ACT_BYTES / mem,
                          rank_share=1.0 / ep, imbalance=eng.expert_imbalance if ep > 1 else 1.0,
                          a2a_fixed_s=a2a_fixed, a2a_s_per_token=a2a_per_token)
            routed_act = model.experts_per_token * width / ep + shared / tp
            ew_ops.append((mlp_act(routed_act), moe_layers, 1))
        if dp == 1:
            ar_count = 2 * count
        elif ep == 1:
            ar_count = count  # gather tokens before the MLP, reduce-scatter after: one all-reduce's traffic
        else:
            ar_count = 0  # attention, dense MLPs, shared experts data-parallel; experts behind the all-to-all
        if s == 0:
            ew_ops.append((embedding_op(model), 1, 1))
            ar_count += 1 if dp == 1 else 0  # vocab-parallel embedding ends with an all-reduce
        last = s == pp - 1
        if last:
            ew_ops.append((attention_elementwise(model, tp)[0], 1, 1))  # final norm
        fixed = sum(ew[e.kind].launch_s * n for e, n, _ in ew_ops)
        per_token = sum(e.bytes_per_token * n / (hbm * ew[e.kind].mem_eff) / d for e, n, d in ew_ops)
        ar_fixed, ar_per_token = allreduce_coefficients(tp, h, tp_bw, tp_ar, ar_count)
        lm_head = gather_fixed = gather_per_seq = None
        if last:
            lm_head = _gemm_term(Gemm("lm_head", h, model.vocab_size // tp, quantised=False), 1, bf16, hbm, p, 2.0, 1.0)
            if tp > 1:
                gather_fixed = ring_allgather_time_s(1.0, tp, tp_bw, tp_ar)  # latency part (1 byte)
                gather_per_seq = (tp - 1) / tp * model.vocab_size * ACT_BYTES / (tp_bw * tp_ar.bw_eff)
        send_fixed = send_per_token = 0.0
        if not last:
            send_fixed = p2p_time_s(1.0, pp_bw, pp_ar)
            send_per_token = h * ACT_BYTES / (pp_bw * pp_ar.bw_eff)
        stages.append(StageCoefficients(
            layers=count, gemms=tuple(gemms), moe=moe, fixed_s=fixed + ar_fixed, per_token_s=per_token + ar_per_token,
            attn_prefill_fixed_s=count * p.gemm.launch_s,
            attn_prefill_s_per_pair=count * attn_flops_pair / (bf16 * eng.attn_prefill_eff),
            attn_decode_fixed_s=count * p.gemm.launch_s, attn_decode_s_per_ctx_token=count * dec_per_ctx,
            lm_head=lm_head, lm_head_gather_fixed_s=gather_fixed or 0.0, lm_head_gather_s_per_seq=gather_per_seq or 0.0,
            send_fixed_s=send_fixed, send_s_per_token=send_per_token,
            overhead_graph_s=count * eng.layer_overhead_s(tp, graph=True),
            dp_ranks=1 if eng.dp_prefill_balanced else dp,
            attn_rank_prefill_s_per_token=(sum(_gemm_term(g, count, peak, hbm, p, wb, dequant)[2] * count
                                               for g in attn_g)
                                           + sum(e.bytes_per_token * count / (hbm * ew[e.kind].mem_eff)
                                                 for e in attn_ew)) if dp > 1 and not eng.dp_prefill_balanced
                                           else 0.0,
            overhead_eager_s=(count * eng.layer_overhead_s(tp, graph=False) if not eng.layer_overhead_eager_moe_us
                              else dense * eng.layer_overhead_s(tp, graph=False) if serial_moe_host
                              else dense * eng.layer_overhead_s(tp, graph=False)
                              + moe_layers * eng.layer_overhead_s(tp, graph=False, moe=True)),
            overhead_eager_serial_s=(moe_layers * eng.layer_overhead_s(tp, graph=False, moe=True)
                                     if serial_moe_host else 0.0)))
    return ReplicaCostModel(
        model=model, gpu_name=gpu.name, weights=weights, kv=kv, tp=tp, pp=pp, kv_block_size=kv_block_size,
        kv_capacity_blocks=capacity_blocks, weight_bytes_per_gpu=weight_per_gpu, reserve_bytes_per_gpu=reserve,
        kv_bytes_per_token_per_gpu=kv_token_gpu, engine=eng, stages=tuple(stages),
        ctx_rate_s=sum(st.attn_decode_s_per_ctx_token for st in stages), cuda_graph_max_seqs=eng.cuda_graph_max_seqs,
        ep=ep, dp_attention=dp_attention, mtp_draft_tokens=mtp_draft_tokens,
        mtp_tokens_per_step=expected_tokens_per_step(mtp_draft_tokens, eng.mtp_acceptance))


def replica_spans(replica_gpus: tuple[tuple[int, int], ...], tp: int, pp: int) -> tuple[bool, bool]:
    """(tp_spans_nodes, pp_spans_nodes) of a replica's GPUs, listed stage by stage."""
    if not replica_gpus:
        return False, False
    stage_nodes = [{node for node, _ in replica_gpus[s * tp:(s + 1) * tp]} for s in range(pp)]
    tp_spans = any(len(nodes) > 1 for nodes in stage_nodes)
    pp_spans = any(a != b for a, b in zip(stage_nodes, stage_nodes[1:]))
    return tp_spans, pp_spans


def replica_cost_for(tier: TierSpec, replica, cluster: ClusterSpec, engine: str | EngineProfile = "vllm",
                     gpu_memory_utilization: float = 0.9, kv_block_size: int = 16) -> ReplicaCostModel:
    """Cost model of a planned replica (sim.spec.plan.ReplicaPlan) of a cascade tier on a cluster."""
    tp_spans, pp_spans = replica_spans(tuple(replica.gpus), replica.tp, replica.pp)
    options = tier.deployment(replica.tp)  # the tier's MoE options; a replica's own values override them
    for key in ("ep", "dp_attention", "mtp_draft_tokens"):
        if getattr(replica, key, None) is not None:
            options[key] = getattr(replica, key)
    return build_replica_cost(tier.model, cluster.gpu, replica.tp, replica.pp, tier.weights, tier.kv,
                              tp_spans_nodes=tp_spans, pp_spans_nodes=pp_spans, cluster=cluster, engine=engine,
                              gpu_memory_utilization=gpu_memory_utilization, kv_block_size=kv_block_size, **options)
