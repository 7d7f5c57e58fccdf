"""A cascade: ordered tiers (small to large model), each with its deployment precision and its quality-data stand-in."""
from __future__ import annotations

from dataclasses import dataclass

from sim.common.config_checks import check_keys
from sim.common.errors import ConfigError
from sim.spec.models import KV_BYTES, WEIGHT_BYTES, ModelSpec, load_model

TIER_KEYS = ("model", "weights", "kv", "dataset_model")


@dataclass(frozen=True)
class TierSpec:
    model: ModelSpec
    weights: str = "bf16"  # bf16 | fp8 | awq_int4
    kv: str = "bf16"  # bf16 | fp8
    dataset_model: str = ""  # the quality dataset's model whose real scores stand in for this tier

    def __post_init__(self) -> None:
        # An unknown precision used to pass here and fail only when a planner sized a replica, which dropped the
        # tier from every plan without a word.
        check_precision(self.weights, self.kv, f"tier {self.model.name}")


def check_precision(weights: str, kv: str, where: str) -> None:
    if weights not in WEIGHT_BYTES:
        raise ConfigError(f"{where}.weights = {weights!r} is not a weight precision; valid: {', '.join(WEIGHT_BYTES)}")
    if kv not in KV_BYTES:
        raise ConfigError(f"{where}.kv = {kv!r} is not a KV-cache precision; valid: {', '.join(KV_BYTES)}")


@dataclass(frozen=True)
class CascadeSpec:
    name: str
    tiers: tuple[TierSpec, ...]
    single_model: bool = False  # one model served alone (sim.fidelity.clients' serving benchmarks), never a user cascade

    def __post_init__(self) -> None:
        if self.single_model and len(self.tiers) == 1:
            return
        if len(self.tiers) < 2:
            raise ConfigError(f"cascade {self.name!r} needs at least 2 models, got {len(self.tiers)}")
        sizes = [t.model.total_params for t in self.tiers]
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            order = ", ".join(f"{t.model.name} ({t.model.total_params / 1e9:.1f}B)" for t in self.tiers)
            raise ConfigError(f"cascade {self.name!r} must list models from smallest to largest; got {order}")

    @property
    def num_tiers(self) -> int:
        return len(self.tiers)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(t.model.name for t in self.tiers)


def cascade_from_dict(data: dict, user_dirs=()) -> CascadeSpec:
    """{name, tiers: [{model, weights, kv, dataset_model}]} as in conf/cascade/*.yaml; models are looked up in the
    user's config folders (user_dirs), then conf/model/."""
    if not isinstance(data, dict):
        raise ConfigError(f"a cascade must be a mapping {{name, tiers}}, got {type(data).__name__}")
    name = str(data.get("name", "cascade"))
    tiers = []
    for i, t in enumerate(data.get("tiers") or []):
        where = f"cascade {name!r}: tiers.{i}"
        check_keys(t, TIER_KEYS, where)
        if not t.get("model"):
            raise ConfigError(f"{where}.model is missing; name a model file of conf/model/ (or your config dir)")
        weights, kv = t.get("weights", TierSpec.weights), t.get("kv", TierSpec.kv)
        check_precision(weights, kv, where)
        tiers.append(TierSpec(load_model(t["model"], user_dirs), weights, kv, t.get("dataset_model", TierSpec.dataset_model)))
    return CascadeSpec(name, tuple(tiers))
