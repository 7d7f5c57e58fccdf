"""Fault specs (a GPU or node failure, a straggler GPU, a degraded link) read from config, and their validation.

Config form (cfg.faults, a list of mappings), times in simulated seconds from the start of the run:
  {kind: gpu_down, at_s: 300, node: 1, gpu: 3, repair_s: null}      a GPU fails; repair_s after, it is back
  {kind: node_down, at_s: 300, node: 2, repair_s: 600}              all GPUs of a node fail
  {kind: straggler, at_s: 100, node: 0, gpu: 2, factor: 2.0, duration_s: null}   a GPU runs factor x slower
  {kind: link_degraded, at_s: 200, node: 1, factor: 0.25, duration_s: null}      NVLink and IB of a node at
                                                                                  factor x their bandwidth
A failed GPU takes down every replica on it (TP and PP groups cannot run short of a rank). A straggler slows
every replica that uses the GPU (lock-step: the slowest rank sets the pace). A degraded link rebuilds the cost
of every replica with a GPU on that node from a cluster spec whose NVLink and InfiniBand bandwidths are scaled,
so only the communication part (all-reduces, PP sends) slows, by as much as the cost model says it weighs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from sim.common.errors import ConfigError

KINDS = {
    "gpu_down": {"at_s", "node", "gpu", "repair_s"},
    "node_down": {"at_s", "node", "repair_s"},
    "straggler": {"at_s", "node", "gpu", "factor", "duration_s"},
    "link_degraded": {"at_s", "node", "factor", "duration_s"},
}
REQUIRED = {
    "gpu_down": {"at_s", "node", "gpu"},
    "node_down": {"at_s", "node"},
    "straggler": {"at_s", "node", "gpu", "factor"},
    "link_degraded": {"at_s", "node", "factor"},
}


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    node: int
    gpu: int | None = None
    factor: float = 1.0
    repair_s: float | None = None  # gpu_down / node_down: seconds until the GPUs are back (None: never)
    duration_s: float | None = None  # straggler / link_degraded: seconds until healthy again (None: never)

    def gpus(self, gpus_per_node: int) -> tuple[tuple[int, int], ...]:
        if self.kind == "node_down" or self.kind == "link_degraded":
            return tuple((self.node, g) for g in range(gpus_per_node))
        return ((self.node, self.gpu),)

    @property
    def recovers_after_s(self) -> float | None:
        return self.repair_s if self.kind in ("gpu_down", "node_down") else self.duration_s

    def describe(self) -> str:
        where = f"node {self.node}" + (f" GPU {self.gpu}" if self.gpu is not None else "")
        extra = f" x{self.factor:g}" if self.kind in ("straggler", "link_degraded") else ""
        back = self.recovers_after_s
        return f"{self.kind} {where}{extra} at {self.at_s:g} s" + (f", back after {back:g} s" if back else "")


def _number(where: str, key: str, value, *, integer: bool = False) -> float | int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{where}.{key} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def fault_from_dict(data, cluster, where: str = "faults[0]") -> Fault:
    """One validated Fault; every mistake names the fault's index and key and says what is valid."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping like {{kind: node_down, at_s: 300, node: 1}}, got {data!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind {kind!r} is not valid; choose one of {sorted(KINDS)}")
    keys = set(data) - {"kind"}
    unknown = sorted(map(str, keys - KINDS[kind]))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for kind {kind}; valid keys are {sorted(KINDS[kind])}")
    missing = sorted(REQUIRED[kind] - {k for k in keys if data[k] is not None})
    if missing:
        raise ConfigError(f"{where}: kind {kind} needs key(s) {missing}")
    at_s = _number(where, "at_s", data["at_s"])
    if at_s < 0:
        raise ConfigError(f"{where}.at_s must be >= 0 (seconds from the start of the run), got {at_s}")
    node = _number(where, "node", data["node"], integer=True)
    if not 0 <= node < cluster.num_nodes:
        raise ConfigError(f"{where}.node {node} is outside cluster {cluster.name!r}; valid nodes are 0-"
                          f"{cluster.num_nodes - 1}")
    gpu = None
    if "gpu" in KINDS[kind]:
        gpu = _number(where, "gpu", data["gpu"], integer=True)
        if not 0 <= gpu < cluster.gpus_per_node:
            raise ConfigError(f"{where}.gpu {gpu} is outside a node of cluster {cluster.name!r}; valid GPUs are 0-"
                              f"{cluster.gpus_per_node - 1}")
    factor = 1.0
    if kind == "straggler":
        factor = _number(where, "factor", data["factor"])
        if factor < 1.0:
            raise ConfigError(f"{where}.factor must be >= 1 (how many times slower the GPU runs), got {factor}")
    if kind == "link_degraded":
        factor = _number(where, "factor", data["factor"])
        if not 0.0 < factor <= 1.0:
            raise ConfigError(f"{where}.factor must be in (0, 1] (the share of link bandwidth left), got {factor}")
    later = {}
    for key in ("repair_s", "duration_s"):
        if key in KINDS[kind] and data.get(key) is not None:
            later[key] = _number(where, key, data[key])
            if later[key] <= 0:
                raise ConfigError(f"{where}.{key} must be positive seconds (or null for never), got {later[key]}")
    return Fault(kind, at_s, node, gpu, factor, later.get("repair_s"), later.get("duration_s"))


def faults_from_config(items, cluster) -> tuple[Fault, ...]:
    """cfg.faults (a list of mappings, or None) -> Faults sorted by time (stable for equal times)."""
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"faults must be a list of mappings (see sim.spec.faults), got {items!r}")
    faults = [fault_from_dict(d, cluster, f"faults[{i}]") for i, d in enumerate(items)]
    return tuple(sorted(faults, key=lambda f: f.at_s))
