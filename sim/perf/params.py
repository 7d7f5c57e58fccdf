"""Calibrated cost-model parameters per GPU: dataclass, JSON (de)serialisation and loading from package data."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from sim.common.errors import DataError
from sim.perf.kernels import AllReduceParams, ElementwiseParams, GemmParams

PARAMS_DIR = Path(__file__).resolve().parent / "params"
# GPUs without their own profile borrow the H100 efficiencies: they are fractions of each GPU's own peak,
# which transfer roughly between tensor-core generations (A100 is a cross-check, not a fitted target).
FALLBACK_GPU = "h100_sxm"


@dataclass(frozen=True)
class CalibratedParams:
    gpu: str
    gemm: GemmParams
    elementwise: dict[str, ElementwiseParams]  # by kind: rmsnorm, rope, act, add, emb
    allreduce: AllReduceParams
    # AWQ kernels dequantise INT4 weights to BF16 on the fly; their large-batch throughput trails BF16
    # GEMMs by roughly this factor (vLLM's AWQ docs: "lower throughput than FP16 at high batch").
    awq_compute_factor: float = 1.3
    note: str = ""
    fit_report: dict = field(default_factory=dict, compare=False, hash=False)

    def __hash__(self) -> int:  # the dicts are fixed after loading; identity by GPU and note is enough
        return hash((self.gpu, self.note, self.gemm, self.allreduce))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


def params_from_dict(data: dict, where: str) -> CalibratedParams:
    try:
        return CalibratedParams(
            gpu=data["gpu"],
            gemm=GemmParams(**data["gemm"]),
            elementwise={k: ElementwiseParams(**v) for k, v in data["elementwise"].items()},
            allreduce=AllReduceParams(**data["allreduce"]),
            awq_compute_factor=float(data.get("awq_compute_factor", 1.3)),
            note=data.get("note", ""),
            fit_report=data.get("fit_report", {}),
        )
    except (KeyError, TypeError) as exc:
        raise DataError(f"{where}: malformed calibrated parameters ({exc}); rerun python -m sim.fidelity.calibrate --write") from None


@lru_cache(maxsize=None)
def load_params(gpu_name: str) -> CalibratedParams:
    """The fitted parameters of a GPU, or the H100's when that GPU has no profile of its own."""
    path = PARAMS_DIR / f"{gpu_name}.json"
    if not path.exists():
        path = PARAMS_DIR / f"{FALLBACK_GPU}.json"
    if not path.exists():
        raise DataError(f"{path}: calibrated parameters are missing; run python -m sim.fidelity.calibrate --write")
    return params_from_dict(json.loads(path.read_text()), str(path))
