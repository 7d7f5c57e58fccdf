"""Serving-engine overhead profiles (conf/engine/*.yaml): CPU time per iteration, per-layer gaps, memory reserve."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

from omegaconf import OmegaConf

from sim.errors import ConfigError
from sim.paths import CONF_DIR


@dataclass(frozen=True)
class EngineProfile:
    name: str
    cpu_base_ms: float
    cpu_per_seq_ms: float
    cpu_per_log2_tp_ms: float
    layer_overhead_graph_us: float
    layer_overhead_eager_us: float
    layer_overhead_tp_exponent: float
    cuda_graph_max_seqs: int
    reserve_base_gb: float
    max_num_batched_tokens: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "name" and (not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"engine {self.name!r}: {f.name} must be a non-negative number, got {value!r}")

    def cpu_time_s(self, num_seqs: int, tp: int) -> float:
        return 1e-3 * (self.cpu_base_ms + self.cpu_per_seq_ms * num_seqs + self.cpu_per_log2_tp_ms * math.log2(tp))

    def layer_overhead_s(self, tp: int, graph: bool) -> float:
        base = self.layer_overhead_graph_us if graph else self.layer_overhead_eager_us
        return 1e-6 * base * tp ** self.layer_overhead_tp_exponent


def available_engines() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "engine").glob("*.yaml"))


def engine_from_dict(data: dict, where: str = "engine") -> EngineProfile:
    names = {f.name for f in fields(EngineProfile)}
    unknown = sorted(set(data) - names)
    missing = sorted(names - set(data))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    return EngineProfile(**data)


@lru_cache(maxsize=None)
def load_engine(name: str) -> EngineProfile:
    path = CONF_DIR / "engine" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown engine {name!r}; valid names are {available_engines()}")
    return engine_from_dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True), str(path))
