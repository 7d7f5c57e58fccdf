"""Exact model architectures (dense GQA and MoE/MLA), their parameter counts, weight bytes and KV bytes per token."""
from __future__ import annotations

from dataclasses import dataclass, fields

from sim.common.config_checks import MODEL_RULES, check_keys, check_numbers, dataclass_from_mapping
from sim.common.errors import ConfigError
from sim.common.io import read_yaml
from sim.common.paths import catalog_names, find_config

# Bytes per weight of a quantised linear layer. AWQ INT4 stores 4-bit weights plus an FP16 scale and a
# 4-bit zero point per group of 128 (AutoAWQ default w_bit=4, q_group_size=128): 0.5 + (2 + 0.5) / 128.
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "awq_int4": 0.5 + 2.5 / 128}
KV_BYTES = {"bf16": 2.0, "fp8": 1.0}


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer, as in its Hugging Face config.json."""

    name: str
    hf_id: str
    published_params_b: float  # the total the authors publish, billions (for the 2% check)
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense MLP width (also the dense layers of an MoE model)
    vocab_size: int
    tie_embeddings: bool = False
    qkv_bias: bool = False
    max_context: int = 4096
    # MLA (DeepSeek-V2/V3); attention == "gqa" ignores these.
    attention: str = "gqa"
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # MoE; num_routed_experts == 0 means dense.
    num_routed_experts: int = 0
    num_shared_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    first_k_dense_layers: int = 0

    def __post_init__(self) -> None:
        check_numbers({f.name: getattr(self, f.name) for f in fields(self)}, MODEL_RULES, f"model {self.name!r}")
        if self.is_moe and not 0 < self.experts_per_token <= self.num_routed_experts:
            raise ConfigError(f"model {self.name!r}: experts_per_token = {self.experts_per_token} must be in "
                              f"[1, num_routed_experts = {self.num_routed_experts}]")
        if self.is_moe and self.moe_intermediate_size <= 0:
            raise ConfigError(f"model {self.name!r}: an MoE model (num_routed_experts > 0) needs moe_intermediate_size > 0")
        if self.first_k_dense_layers > self.num_layers:
            raise ConfigError(f"model {self.name!r}: first_k_dense_layers = {self.first_k_dense_layers} exceeds "
                              f"num_layers = {self.num_layers}")
        if self.attention not in ("gqa", "mla"):
            raise ConfigError(f"model {self.name!r}: attention must be 'gqa' or 'mla', got {self.attention!r}")
        if self.attention == "gqa" and self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model {self.name!r}: num_heads must be a multiple of num_kv_heads")

    # ---- structure -------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_routed_experts > 0

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.first_k_dense_layers if self.is_moe else 0

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    # ---- parameters per block --------------------------------------------------------------------
    @property
    def attn_params(self) -> int:
        """Linear weights of one attention block (projections, and MLA's low-rank factors and norms)."""
        h = self.hidden_size
        if self.attention == "mla":
            qk_head = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * self.num_heads * qk_head
                 if self.q_lora_rank else h * self.num_heads * qk_head)
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
            kv_b = self.kv_lora_rank * self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.num_heads * self.v_head_dim * h
            return q + kv_a + kv_b + o
        q = h * self.num_heads * self.head_dim
        kv = 2 * h * self.num_kv_heads * self.head_dim
        o = self.num_heads * self.head_dim * h
        bias = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim if self.qkv_bias else 0
        return q + kv + o + bias

    @property
    def dense_mlp_params(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size  # gated (SwiGLU): gate, up, down

    @property
    def expert_params(self) -> int:
        return 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def router_params(self) -> int:
        return self.hidden_size * self.num_routed_experts

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab_size * self.hidden_size

    @property
    def linear_params(self) -> int:
        """Weights of all transformer blocks (the part that quantisation shrinks), without embeddings and norms."""
        moe_layer = (self.num_routed_experts + self.num_shared_experts) * self.expert_params + self.router_params
        return (self.num_layers * self.attn_params + self.num_dense_layers * self.dense_mlp_params
                + self.num_moe_layers * moe_layer)

    @property
    def norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.lm_head_params + self.norm_params

    @property
    def active_params(self) -> int:
        """Parameters one token touches (MoE: shared plus experts_per_token routed experts)."""
        if not self.is_moe:
            return self.total_params
        idle = self.num_moe_layers * (self.num_routed_experts - self.experts_per_token) * self.expert_params
        return self.total_params - idle

    # ---- bytes -----------------------------------------------------------------------------------
    def weight_bytes(self, weights: str = "bf16") -> float:
        """Bytes of all weights. Quantisation applies to transformer-block linears; embeddings, LM head and
        norms stay BF16 (as AutoAWQ and FP8 checkpoints of these models ship them)."""
        if weights not in WEIGHT_BYTES:
            raise ConfigError(f"unknown weight precision {weights!r}; valid: {sorted(WEIGHT_BYTES)}")
        rest = self.embedding_params + self.lm_head_params + self.norm_params
        return self.linear_params * WEIGHT_BYTES[weights] + rest * 2.0

    def kv_bytes_per_token(self, kv: str = "bf16") -> float:
        """KV-cache bytes one token adds across all layers. GQA stores K and V per KV head; MLA stores the
        compressed latent (kv_lora_rank) plus the decoupled RoPE key, shared by all heads."""
        if kv not in KV_BYTES:
            raise ConfigError(f"unknown KV precision {kv!r}; valid: {sorted(KV_BYTES)}")
        if self.attention == "mla":
            per_layer = self.kv_lora_rank + self.qk_rope_head_dim
        else:
            per_layer = 2 * self.num_kv_heads * self.head_dim
        return self.num_layers * per_layer * KV_BYTES[kv]


def available_models(user_dirs=()) -> list[str]:
    return catalog_names("model", user_dirs)


def model_from_dict(data: dict, where: str = "model") -> ModelSpec:
    check_keys(data, [f.name for f in fields(ModelSpec)], where)
    check_numbers(data, MODEL_RULES, where)  # with the file's name, before the dataclass repeats it by model name
    return dataclass_from_mapping(ModelSpec, data, where)


def load_model(name: str, user_dirs=()) -> ModelSpec:
    """The model file model/<name>.yaml of the user's config folders or conf/."""
    path = find_config("model", name, user_dirs)
    if path is None:
        raise ConfigError(f"unknown model {name!r}; valid names are {available_models(user_dirs)} (your own: "
                          f"--config-dir DIR with DIR/model/{name}.yaml)")
    return model_from_dict(read_yaml(path, "model file"), str(path))
