"""Operators of one transformer layer on one GPU of a TP group: GEMM shapes and elementwise traffic per token.

Shared by the cost model and the calibration, so the operators that are fitted to the Vidur profiles are
exactly the ones the simulator times. Names of the dense operators follow Vidur's profile columns.
"""
from __future__ import annotations

from dataclasses import dataclass

from sim.spec.models import ModelSpec

ACT = 2  # BF16 activation bytes


@dataclass(frozen=True)
class Gemm:
    """One GEMM of a layer on one GPU: activations (tokens x k) times weights (k x n)."""

    name: str
    k: int
    n: int
    quantised: bool = True  # False: kept in BF16 whatever the checkpoint (router, LM head)


@dataclass(frozen=True)
class Elementwise:
    """A memory-bound kernel; bytes_per_token is HBM traffic (reads + writes) per token on one GPU."""

    name: str
    kind: str  # rmsnorm | rope | act | add | emb: which calibrated efficiency applies
    bytes_per_token: float


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """GQA shards KV heads over TP ranks; with fewer KV heads than ranks each rank keeps one (replicated)."""
    return max(1, model.num_kv_heads // tp)


def attention_gemms(model: ModelSpec, tp: int) -> list[Gemm]:
    h = model.hidden_size
    if model.attention == "mla":
        # vLLM's MLA: the down-projections (q_a, kv_a) are replicated, the up-projections and o are split.
        heads = model.num_heads // tp
        qk_head = model.qk_nope_head_dim + model.qk_rope_head_dim
        out = []
        if model.q_lora_rank:
            out += [Gemm("q_a_proj", h, model.q_lora_rank), Gemm("q_b_proj", model.q_lora_rank, heads * qk_head)]
        else:
            out += [Gemm("q_proj", h, heads * qk_head)]
        out += [Gemm("kv_a_proj", h, model.kv_lora_rank + model.qk_rope_head_dim),
                Gemm("kv_b_proj", model.kv_lora_rank, heads * (model.qk_nope_head_dim + model.v_head_dim)),
                Gemm("attn_post_proj", heads * model.v_head_dim, h)]
        return out
    heads = model.num_heads // tp
    qkv = (heads + 2 * kv_heads_per_gpu(model, tp)) * model.head_dim
    return [Gemm("attn_pre_proj", h, qkv), Gemm("attn_post_proj", heads * model.head_dim, h)]


def dense_mlp_gemms(model: ModelSpec, tp: int, width: int | None = None) -> list[Gemm]:
    """Gated MLP, column-parallel gate+up fused (as vLLM does), row-parallel down."""
    inter = (width if width is not None else model.intermediate_size) // tp
    return [Gemm("mlp_up_proj", model.hidden_size, 2 * inter), Gemm("mlp_down_proj", inter, model.hidden_size)]


def attention_elementwise(model: ModelSpec, tp: int) -> list[Elementwise]:
    h = model.hidden_size
    out = [Elementwise("input_layernorm", "rmsnorm", 2 * ACT * h)]
    if model.attention == "mla":
        heads = model.num_heads // tp
        out += [Elementwise("q_a_layernorm", "rmsnorm", 2 * ACT * model.q_lora_rank),
                Elementwise("kv_a_layernorm", "rmsnorm", 2 * ACT * model.kv_lora_rank),
                Elementwise("attn_rope", "rope", 2 * ACT * (heads + 1) * model.qk_rope_head_dim)]
    else:
        heads = model.num_heads // tp + kv_heads_per_gpu(model, tp)
        out += [Elementwise("attn_rope", "rope", 2 * ACT * heads * model.head_dim)]
    out += [Elementwise("post_attention_layernorm", "rmsnorm", 2 * ACT * h),
            Elementwise("add", "add", 3 * ACT * h)]
    return out


def mlp_act(width_per_gpu: float) -> Elementwise:
    """SiLU(gate) * up: reads 2 x width, writes width."""
    return Elementwise("mlp_act", "act", 3 * ACT * width_per_gpu)


def embedding_op(model: ModelSpec) -> Elementwise:
    return Elementwise("emb", "emb", 2 * ACT * model.hidden_size)


def dense_layer_ops(model: ModelSpec, tp: int) -> tuple[list[Gemm], list[Elementwise]]:
    """All operators of one dense layer (attention linears, MLP, norms, rope, activation, add)."""
    gemms = attention_gemms(model, tp) + dense_mlp_gemms(model, tp)
    ew = attention_elementwise(model, tp) + [mlp_act(model.intermediate_size / tp)]
    return gemms, ew
