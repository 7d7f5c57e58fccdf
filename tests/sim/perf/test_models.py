"""Model catalog facts the cost model relies on: published parameter counts and exact KV bytes per token."""
from __future__ import annotations

import pytest

from sim.spec.models import available_models, load_model
from sim.perf.cost_model import _kv_bytes_per_token_per_layer_gpu


@pytest.mark.parametrize("name", available_models())
def test_total_params_within_2pct_of_published(name):
    m = load_model(name)
    assert m.total_params / 1e9 == pytest.approx(m.published_params_b, rel=0.02)


# Hand-computed: GQA = layers x 2 (K and V) x kv_heads x head_dim x bytes; MLA = layers x (512 latent + 64 rope) x bytes.
KV_BF16 = {
    "llama2_7b": 32 * 2 * 32 * 128 * 2,  # 524288 (MHA)
    "llama2_70b": 80 * 2 * 8 * 128 * 2,  # 327680
    "llama2_13b": 40 * 2 * 40 * 128 * 2,  # 819200 (MHA)
    "codellama_34b": 48 * 2 * 8 * 128 * 2,  # 196608
    "llama3_8b": 32 * 2 * 8 * 128 * 2,  # 131072
    "llama3_70b": 80 * 2 * 8 * 128 * 2,
    "deepseek_r1_distill_llama_70b": 80 * 2 * 8 * 128 * 2,
    "deepseek_r1_distill_qwen_7b": 28 * 2 * 4 * 128 * 2,  # 57344
    "deepseek_v3": 61 * (512 + 64) * 2,  # 70272
    "deepseek_r1": 61 * (512 + 64) * 2,  # V3's architecture: the same MLA latent per layer
    "mistral_7b": 32 * 2 * 8 * 128 * 2,
    "mixtral_8x7b": 32 * 2 * 8 * 128 * 2,
    "mixtral_8x22b": 56 * 2 * 8 * 128 * 2,  # 229376
    "llama31_8b": 32 * 2 * 8 * 128 * 2,
    "llama31_70b": 80 * 2 * 8 * 128 * 2,
    "llama31_405b": 126 * 2 * 8 * 128 * 2,  # 516096
}


# Hand-computed from the published configs (embeddings and LM head untied, RMSNorm weights included): the exact
# totals Hugging Face reports for the Llama 3.1 safetensors.
@pytest.mark.parametrize("name,params", [("llama31_8b", 8_030_261_248), ("llama31_70b", 70_553_706_496),
                                         ("llama31_405b", 405_853_388_800)])
def test_llama31_parameter_counts_exact(name, params):
    assert load_model(name).total_params == params


def test_llama31_405b_fp8_fits_one_h100_node():
    m = load_model("llama31_405b")
    # FP8 linears (1 byte) + BF16 embeddings, LM head and norms: ~410 GB of 8 x 80 GB.
    assert 400e9 < m.weight_bytes("fp8") < 0.9 * 8 * 80e9
    assert m.weight_bytes("bf16") > 8 * 80e9  # BF16 would not fit one node


@pytest.mark.parametrize("name", sorted(KV_BF16))
def test_kv_bytes_per_token_exact(name):
    m = load_model(name)
    assert m.kv_bytes_per_token("bf16") == KV_BF16[name]
    assert m.kv_bytes_per_token("fp8") == KV_BF16[name] / 2


def test_every_catalog_model_has_a_kv_expectation():
    assert set(available_models()) <= set(KV_BF16)


@pytest.mark.parametrize("name,tp,expected", [
    ("llama3_70b", 1, 2 * 8 * 128 * 2),
    ("llama3_70b", 4, 2 * 2 * 128 * 2),  # 8 KV heads over 4 ranks
    ("llama3_70b", 8, 2 * 1 * 128 * 2),
    ("llama3_70b", 16, 2 * 1 * 128 * 2),  # fewer KV heads than ranks: each rank keeps one (replicated)
    ("deepseek_v3", 8, (512 + 64) * 2),  # MLA latent is replicated across TP ranks
])
def test_kv_bytes_per_layer_per_gpu(name, tp, expected):
    assert _kv_bytes_per_token_per_layer_gpu(load_model(name), "bf16", tp) == expected
