"""Serving-level predictions: a `vllm bench serve`-style benchmark (ServingBench) run through the full simulator
with the closed-loop client of sim.fidelity.clients, reported with the benchmark's own metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sim.spec.cascade import TierSpec
from sim.fidelity.clients import ClientSpec, run_client, serving_metrics, single_replica_deployment
from sim.common.cli import exit_on_user_error
from sim.common.errors import ConfigError, DataError
from sim.spec.hardware import ClusterSpec, load_gpu
from sim.spec.models import load_model
from sim.perf.engine import EngineProfile

SERVING_KEYS = ("ttft_ms_mean", "ttft_ms_median", "ttft_ms_p99", "itl_ms_mean", "itl_ms_median", "tpot_ms_mean",
                "tpot_ms_median", "e2e_ms_mean", "output_tokens_per_s", "requests")


@dataclass(frozen=True)
class ServingBench:
    """One benchmark run: model on tp x pp GPUs of one type; `concurrency` clients (None = no cap, as
    --max-concurrency), requests released at `request_rate` per second (None = all at once, as the default
    --request-rate inf); every prompt input_tokens long and every answer output_tokens long (ignore_eos)."""

    model: str
    input_tokens: int
    output_tokens: int
    gpu: str = "h100_sxm"
    tp: int = 1
    pp: int = 1
    weights: str = "bf16"
    kv: str = "bf16"
    concurrency: int | None = None
    request_rate: float | None = None
    num_prompts: int = 200
    ep: int = 1  # MoE deployment options of the replica (sim.perf.cost_model.build_replica_cost)
    dp_attention: bool = False
    mtp_draft_tokens: int = 0
    inter_node_gb_s: float = 200.0  # between the replica's nodes, per direction (bench_cluster)

    def __post_init__(self) -> None:
        for key in ("input_tokens", "output_tokens", "tp", "pp", "num_prompts"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"ServingBench.{key} must be a positive integer, got {v!r}")


def bench_cluster(gpu: str, num_gpus: int, ib_bw_gbps: float = 200.0) -> ClusterSpec:
    """Enough 8-GPU NVLink nodes of one GPU type for one replica, linked by InfiniBand as the paper's pods
    (conf/cluster/paper_4x8_h100.yaml: 200 GB/s, 5 us), or by the inter-node bandwidth a source's network had."""
    per_node = 8
    nodes = -(-num_gpus // per_node)
    return ClusterSpec(f"bench_{gpu}_{nodes}x{per_node}", load_gpu(gpu), nodes, per_node, ib_bw_gbps=ib_bw_gbps,
                       ib_latency_us=5.0)


def engine_cost_factory(engine, cfg):
    """The simulator's cost_factory with `engine` (a profile) in place of the tier's engine name; a measured-table
    cost model (cfg.cost_model) knows no engine profile and is returned as configured."""
    from sim.simulator import default_cost_factory

    if getattr(cfg, "cost_model", "analytical") != "analytical":
        return default_cost_factory(cfg)  # a measured table knows no engine profile
    from sim.perf.cost_model import replica_cost_for

    def factory(tier, replica, cluster, **_ignored):  # the simulator's engine= name gives way to the profile
        return replica_cost_for(tier, replica, cluster, engine=engine,
                                gpu_memory_utilization=cfg.gpu_memory_utilization, kv_block_size=cfg.kv_block_size)

    return factory


def simulate_serving(bench: ServingBench, *, engine: str | EngineProfile = "vllm", seed: int = 0,
                     input_lens: Sequence[int] | None = None, output_lens: Sequence[int] | None = None,
                     sim: dict | None = None, range_ratio: float = 0.0) -> dict:
    """predict_serving with per-request lengths (a saved benchmark's input_lens/output_lens), or lengths drawn
    uniformly within +-range_ratio of the bench's (vllm bench serve --random-range-ratio), and SimConfig
    overrides (e.g. {"batching": "sarathi"} for chunked prefill)."""
    import numpy as np

    from sim.fidelity.clients import sampled_lengths
    from sim.simulator import sim_config_from_dict

    n = bench.num_prompts
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])  # run_client uses the first stream
    inp = (tuple(int(x) for x in input_lens) if input_lens is not None
           else sampled_lengths(bench.input_tokens, range_ratio, n, rng))
    out = (tuple(int(x) for x in output_lens) if output_lens is not None
           else sampled_lengths(bench.output_tokens, range_ratio, n, rng))
    spec = ClientSpec(inp, out, bench.concurrency, bench.request_rate)
    cfg = sim_config_from_dict({**({"engine": engine} if isinstance(engine, str) else {}), **(sim or {})})
    tier = TierSpec(load_model(bench.model), bench.weights, bench.kv, ep=bench.ep, dp_attention=bench.dp_attention,
                    mtp_draft_tokens=bench.mtp_draft_tokens)
    cluster = bench_cluster(bench.gpu, bench.tp * bench.pp, bench.inter_node_gb_s)
    factory = engine_cost_factory(engine, cfg)
    result = run_client(spec, tier, bench.tp, bench.pp, cluster, cfg, seed=seed, cost_factory=factory)
    _check_all_served(result, bench)
    replica = single_replica_deployment(tier, bench.tp, bench.pp, cluster)[1].tiers[0].replicas[0]
    cost = factory(tier, replica, cluster)  # cached by the cost model: the same object the run used
    return serving_metrics(result, lambda _replica_id: cost)


def _check_all_served(result, bench: ServingBench) -> None:
    """A benchmark whose requests the engine refuses (a prompt longer than the model's context) has no metrics to
    predict: say so, instead of reporting means over fewer (or zero) requests."""
    req = result.requests
    dropped = req[req["status"] != "completed"]
    if len(dropped):
        reasons = ", ".join(f"{r} ({k})" for r, k in dropped["drop_reason"].value_counts().items())
        longest = int(dropped["input_tokens"].max())
        raise DataError(f"{len(dropped)} of {len(req)} requests of the benchmark cannot be served by {bench.model} on "
                        f"TP{bench.tp} x PP{bench.pp}: {reasons}; the longest refused prompt has {longest} tokens. "
                        "Give shorter prompts (--input-tokens) or answers (--output-tokens)")


def predict_serving(bench: ServingBench, *, engine: str | EngineProfile = "vllm", seed: int = 0) -> dict:
    """What `vllm bench serve` would report for this benchmark, predicted by the simulator with the engine's
    cost model: keys SERVING_KEYS (milliseconds, output tokens per second, completed requests)."""
    return simulate_serving(bench, engine=engine, seed=seed)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """python -m sim.fidelity.serving --model M --tp N --concurrency C --input-tokens I --output-tokens O [--repeat R]:
    the predicted benchmark as one JSON line, with the wall time per prediction (mean over R repeats)."""
    import argparse
    import json
    import time

    p = argparse.ArgumentParser(prog="python -m sim.fidelity.serving", description=main.__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--gpu", default="h100_sxm")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--weights", default="bf16")
    p.add_argument("--kv", default="bf16")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--request-rate", type=float, default=None)
    p.add_argument("--input-tokens", type=int, required=True)
    p.add_argument("--output-tokens", type=int, required=True)
    p.add_argument("--num-prompts", type=int, default=200)
    p.add_argument("--range-ratio", type=float, default=0.0, help="lengths uniform within +-ratio of the given ones")
    p.add_argument("--engine", default="vllm")
    p.add_argument("--batching", default=None, help="sim.batching override: vllm | sarathi | static")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="time this many predictions (seeds seed..seed+R-1)")
    a = p.parse_args(argv)
    bench = ServingBench(a.model, a.input_tokens, a.output_tokens, gpu=a.gpu, tp=a.tp, pp=a.pp, weights=a.weights,
                         kv=a.kv, concurrency=a.concurrency, request_rate=a.request_rate, num_prompts=a.num_prompts)
    sim = {"batching": a.batching} if a.batching else None
    simulate_serving(bench, engine=a.engine, seed=a.seed, sim=sim, range_ratio=a.range_ratio)  # warm the cache
    t0 = time.perf_counter()
    for k in range(max(1, a.repeat)):
        out = simulate_serving(bench, engine=a.engine, seed=a.seed + k, sim=sim, range_ratio=a.range_ratio)
    wall = (time.perf_counter() - t0) / max(1, a.repeat)
    print(json.dumps({**out, "wall_s_per_prediction": round(wall, 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
