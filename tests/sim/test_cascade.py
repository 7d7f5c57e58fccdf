"""A cascade needs at least two models listed from smallest to largest."""
import pytest

from sim.spec.cascade import cascade_from_dict
from sim.common.errors import ConfigError


def test_valid_three_tier_cascade():
    c = cascade_from_dict({"name": "ds", "tiers": [{"model": "deepseek_r1_distill_qwen_7b"},
                                                   {"model": "deepseek_r1_distill_llama_70b", "weights": "awq_int4"},
                                                   {"model": "deepseek_v3", "weights": "awq_int4"}]})
    assert c.num_tiers == 3 and c.tiers[2].weights == "awq_int4"


def test_single_model_cascade_rejected():
    with pytest.raises(ConfigError, match="at least 2 models"):
        cascade_from_dict({"name": "one", "tiers": [{"model": "llama3_8b"}]})


def test_out_of_order_cascade_rejected():
    with pytest.raises(ConfigError, match="smallest to largest"):
        cascade_from_dict({"name": "bad", "tiers": [{"model": "llama3_70b"}, {"model": "llama3_8b"}]})


def test_unknown_model_lists_catalog():
    with pytest.raises(ConfigError, match="llama3_8b"):
        cascade_from_dict({"name": "bad", "tiers": [{"model": "llama4_8b"}, {"model": "llama3_70b"}]})


def test_same_size_successor_allowed_only_for_a_different_model():
    # V3 -> R1: one architecture (671B), two models (the 4-tier option ending at R1); the same model twice is not
    c = cascade_from_dict({"name": "ds4", "tiers": [{"model": "deepseek_r1_distill_qwen_7b"},
                                                    {"model": "deepseek_v3", "weights": "awq_int4"},
                                                    {"model": "deepseek_r1", "weights": "awq_int4"}]})
    assert c.tiers[1].model.total_params == c.tiers[2].model.total_params
    with pytest.raises(ConfigError, match="smallest to largest"):
        cascade_from_dict({"name": "bad", "tiers": [{"model": "deepseek_v3"}, {"model": "deepseek_v3"}]})
