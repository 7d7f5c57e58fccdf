"""Hardware specs (GPU, interconnect, cluster topology) as frozen dataclasses loaded from conf/hardware and conf/cluster."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields

from omegaconf import OmegaConf

from sim.common.config_checks import CLUSTER_RULES, HARDWARE_RULES, check_cluster_size, check_numbers
from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator. Peak numbers are dense (no sparsity), per GPU."""

    name: str
    memory_gb: float  # usable HBM, GB = 1e9 bytes
    bf16_tflops: float
    fp8_tflops: float  # also INT8 TOPS on Hopper; A100 has no FP8, its INT8 rate is used
    hbm_bw_gbps: float  # GB/s
    nvlink_bw_gbps: float  # per GPU, per direction, GB/s
    nvlink_latency_us: float
    # "nvlink": the GPUs of a node talk over NVLink (nvlink_* are its numbers); "pcie": PCIe only, nvlink_* then
    # hold the PCIe path's per-direction bandwidth and per-hop latency, and intra-node custom all-reduce is off.
    interconnect: str = "nvlink"

    def __post_init__(self) -> None:
        if self.interconnect not in ("nvlink", "pcie"):
            raise ConfigError(f"hardware {self.name!r}: interconnect must be 'nvlink' or 'pcie', "
                              f"got {self.interconnect!r}")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9


@dataclass(frozen=True)
class ClusterSpec:
    """A homogeneous GPU pool: nodes of identical GPUs, NVLink inside a node, InfiniBand between nodes."""

    name: str
    gpu: GPUSpec
    num_nodes: int
    gpus_per_node: int
    ib_bw_gbps: float  # between two nodes, per direction, GB/s
    ib_latency_us: float

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    def __post_init__(self) -> None:
        if self.num_nodes <= 0 or self.gpus_per_node <= 0:
            raise ConfigError(
                f"cluster {self.name!r}: num_nodes and gpus_per_node must be positive, "
                f"got {self.num_nodes} and {self.gpus_per_node}"
            )


def _from_mapping(cls, data: dict, where: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    return cls(**data)


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _load_yaml(group: str, name: str) -> dict:
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown {group} {name!r}; valid names are {available(group)}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def gpu_from_dict(data: dict, where: str = "hardware") -> GPUSpec:
    check_numbers(dict(data), HARDWARE_RULES, where)
    return _from_mapping(GPUSpec, dict(data), where)


def load_gpu(name: str) -> GPUSpec:
    return gpu_from_dict(_load_yaml("hardware", name), f"conf/hardware/{name}.yaml")


def cluster_from_dict(data: dict, gpu: GPUSpec, where: str = "cluster") -> ClusterSpec:
    data = dict(data)
    data.pop("hardware", None)
    check_numbers(data, CLUSTER_RULES, where)
    if isinstance(data.get("num_nodes"), int) and isinstance(data.get("gpus_per_node"), int):
        check_cluster_size(data["num_nodes"], data["gpus_per_node"], where)
    return _from_mapping(ClusterSpec, {**data, "gpu": gpu}, where)


def load_cluster(name: str = "paper_4x8_h100") -> ClusterSpec:
    data = _load_yaml("cluster", name)
    return cluster_from_dict(data, load_gpu(data["hardware"]), f"conf/cluster/{name}.yaml")
