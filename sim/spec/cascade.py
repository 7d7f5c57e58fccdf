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
    # How engines serve an MoE tier (issue 18): expert-parallel degree ("tp": EP over the TP group; 1: TP-sharded
    # experts), data-parallel attention, multi-token prediction drafts. Planners and the simulator both read these.
    ep: str | int = 1
    dp_attention: bool = False
    mtp_draft_tokens: int = 0

    def deployment(self, tp: int) -> dict:
        """build_replica_cost's deployment options for a replica of this tier at TP `tp`."""
        ep = tp if self.ep == "tp" else int(self.ep)
        if not self.model.is_moe:
            return {}
        return {"ep": ep, "dp_attention": self.dp_attention, "mtp_draft_tokens": self.mtp_draft_tokens}


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
        names = [t.model.name for t in self.tiers]
        # Equal sizes are allowed for different models (V3 -> R1: one architecture, R1 trained to reason), never
        # for the same model twice.
        if any(b < a or (b == a and nb == na) for a, b, na, nb in zip(sizes, sizes[1:], names, names[1:])):
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
        unknown = set(t) - {"model", "weights", "kv", "dataset_model", "ep", "dp_attention", "mtp_draft_tokens"}
        if unknown:
            raise ConfigError(f"cascade tier {i}: unknown key(s) {sorted(unknown)}; valid: model, weights, kv, "
                              "dataset_model, ep, dp_attention, mtp_draft_tokens")
        ep = t.get("ep", 1)
        if not (ep == "tp" or (isinstance(ep, int) and not isinstance(ep, bool) and ep >= 1)):
            raise ConfigError(f"cascade tier {i}: ep must be 'tp' or a positive integer, got {ep!r}")
        mtp = t.get("mtp_draft_tokens", 0)
        if not isinstance(mtp, int) or isinstance(mtp, bool) or mtp < 0:
            raise ConfigError(f"cascade tier {i}: mtp_draft_tokens must be a non-negative integer, got {mtp!r}")
        if not isinstance(t.get("dp_attention", False), bool):
            raise ConfigError(f"cascade tier {i}: dp_attention must be true or false, got {t['dp_attention']!r}")
        tiers.append(TierSpec(load_model(t["model"]), t.get("weights", "bf16"), t.get("kv", "bf16"),
                              t.get("dataset_model", ""), ep, bool(t.get("dp_attention", False)), mtp))
    return CascadeSpec(str(data.get("name", "cascade")), tuple(tiers))
