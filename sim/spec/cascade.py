"""A cascade: ordered tiers (small to large model), each with its deployment precision and its quality-data stand-in."""
from __future__ import annotations

from dataclasses import dataclass

from sim.common.errors import ConfigError
from sim.spec.models import ModelSpec, load_model


@dataclass(frozen=True)
class TierSpec:
    model: ModelSpec
    weights: str = "bf16"  # bf16 | fp8 | awq_int4
    kv: str = "bf16"  # bf16 | fp8
    dataset_model: str = ""  # the quality dataset's model whose real scores stand in for this tier


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

    def tier_index(self, index: int, key: str = "sim.reference_tier") -> int:
        """The tier a Python-style index names (-1 = largest); one outside -num_tiers..num_tiers-1 is a user error,
        never wrapped around (tier 3 of a 3-tier cascade must not quietly mean the smallest)."""
        n = self.num_tiers
        if not -n <= int(index) < n:
            raise ConfigError(f"{key} = {index} is out of range for the {n}-tier cascade {self.name!r}; "
                              f"give {-n}..{n - 1} (-1 = the largest model)")
        return int(index) % n


def cascade_from_dict(data: dict) -> CascadeSpec:
    """{name, tiers: [{model, weights, kv, dataset_model}]} as in conf/cascade/*.yaml."""
    tiers = []
    for i, t in enumerate(data.get("tiers") or []):
        unknown = set(t) - {"model", "weights", "kv", "dataset_model"}
        if unknown:
            raise ConfigError(f"cascade tier {i}: unknown key(s) {sorted(unknown)}; valid: model, weights, kv, dataset_model")
        tiers.append(TierSpec(load_model(t["model"]), t.get("weights", "bf16"), t.get("kv", "bf16"),
                              t.get("dataset_model", "")))
    return CascadeSpec(str(data.get("name", "cascade")), tuple(tiers))
