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

from dataclasses import dataclass

from sim.common.config_checks import NON_NEGATIVE, POSITIVE, Range, check_value, convert, setting
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


# The factor's meaning depends on the kind: how many times slower a straggler runs, the share of bandwidth a degraded
# link keeps.
FACTOR_RANGE = {"straggler": Range(1.0), "link_degraded": Range(0.0, 1.0, lo_open=True)}


@dataclass(frozen=True)
class Fault:
    kind: str = setting(valid=tuple(KINDS))
    at_s: float = setting(valid=NON_NEGATIVE)  # seconds from the start of the run
    node: int = setting(valid=Range(0.0, integer=True))  # and below the cluster's node count (fault_from_dict)
    gpu: int | None = setting(None, valid=Range(0.0, integer=True))  # and below its GPUs per node
    factor: float = 1.0  # its range depends on the kind: FACTOR_RANGE
    # gpu_down / node_down: seconds until the GPUs are back (None: never)
    repair_s: float | None = setting(None, valid=POSITIVE)
    # straggler / link_degraded: seconds until healthy again (None: never)
    duration_s: float | None = setting(None, valid=POSITIVE)

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


def fault_from_dict(data, cluster, where: str = "faults[0]") -> Fault:
    """One validated Fault; every mistake names the fault's index and key and says what is valid. Each key's bound
    is stated once: on Fault's fields, in FACTOR_RANGE for the factor, and the cluster's size for node and gpu."""
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
    fields = Fault.__dataclass_fields__
    types = {"at_s": float, "node": int, "gpu": int, "factor": float, "repair_s": float, "duration_s": float}
    values = {}
    for key in sorted(keys & set(types)):
        if data[key] is None:
            continue
        values[key] = value = convert(types[key], data[key], f"{where}.{key}")
        check_value(value, FACTOR_RANGE[kind] if key == "factor" else fields[key].metadata.get("valid"),
                    f"{where}.{key}")
    if values["node"] >= cluster.num_nodes:
        raise ConfigError(f"{where}.node {values['node']} is outside cluster {cluster.name!r}; valid nodes are 0-"
                          f"{cluster.num_nodes - 1}")
    if values.get("gpu") is not None and values["gpu"] >= cluster.gpus_per_node:
        raise ConfigError(f"{where}.gpu {values['gpu']} is outside a node of cluster {cluster.name!r}; valid GPUs are "
                          f"0-{cluster.gpus_per_node - 1}")
    return Fault(kind, **values)


def faults_from_config(items, cluster) -> tuple[Fault, ...]:
    """cfg.faults (a list of mappings, or None) -> Faults sorted by time (stable for equal times)."""
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"faults must be a list of mappings (see sim.spec.faults), got {items!r}")
    faults = [fault_from_dict(d, cluster, f"faults[{i}]") for i, d in enumerate(items)]
    return tuple(sorted(faults, key=lambda f: f.at_s))
