"""Model and cascade inputs are refused at the door: a precision no tier can use (D1) and a model YAML with
impossible sizes (D2) end as one ConfigError naming the key and what is valid."""
import subprocess
import sys

import pytest
import yaml

from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR, PROJECT_ROOT
from sim.spec.cascade import cascade_from_dict
from sim.spec.models import KV_BYTES, WEIGHT_BYTES, model_from_dict


def _tiers(**second):
    return {"name": "c", "tiers": [{"model": "llama3_8b"}, {"model": "llama3_70b", **second}]}


@pytest.mark.parametrize("key,value,valid", [("weights", "int3", WEIGHT_BYTES), ("kv", "fp4", KV_BYTES),
                                             ("weights", "BF16", WEIGHT_BYTES)])
def test_unknown_tier_precision_is_an_error_listing_the_valid_ones(key, value, valid):
    # Before: the tier was built, every deployment of it failed to size, and the tier silently left every plan.
    with pytest.raises(ConfigError) as exc:
        cascade_from_dict(_tiers(**{key: value}))
    msg = str(exc.value)
    assert f"tiers.1.{key}" in msg and repr(value) in msg
    assert all(name in msg for name in valid)


def test_unknown_precision_on_the_command_line_exits_2_before_planning():
    r = subprocess.run([sys.executable, "-m", "experiments.run", "cascade.tiers.2.weights=int3", "planner=[cascadia]",
                        "output_dir=/dev/null/x"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "int3" in r.stderr and "awq_int4" in r.stderr and "Traceback" not in r.stderr


def _model(**changes):
    data = yaml.safe_load((CONF_DIR / "model" / "llama3_8b.yaml").read_text())
    return {**data, **changes}


@pytest.mark.parametrize("key,value", [("num_layers", 0), ("num_heads", -8), ("max_context", 0),
                                       ("hidden_size", 0), ("vocab_size", -1), ("num_kv_heads", 0),
                                       ("head_dim", 1.5), ("experts_per_token", -1), ("published_params_b", 0)])
def test_model_yaml_sizes_are_range_checked(key, value):
    with pytest.raises(ConfigError) as exc:
        model_from_dict(_model(**{key: value}), "conf/model/mine.yaml")
    assert "conf/model/mine.yaml" in str(exc.value) and key in str(exc.value)


def test_moe_needs_no_more_active_experts_than_it_has():
    data = yaml.safe_load((CONF_DIR / "model" / "deepseek_v3.yaml").read_text())
    with pytest.raises(ConfigError, match="experts_per_token"):
        model_from_dict({**data, "experts_per_token": data["num_routed_experts"] + 1}, "m")


def test_every_shipped_model_passes_the_checks():
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        model_from_dict(yaml.safe_load(path.read_text()), str(path))
