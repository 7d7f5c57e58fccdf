"""One measured corpus row as the cost model sees it (CorpusRow), and the reason a row cannot be predicted."""
from __future__ import annotations

from dataclasses import dataclass

from sim.common.errors import UserError


class NotPredictable(UserError):
    """A corpus row the model cannot predict as measured (it names why)."""


@dataclass(frozen=True)
class CorpusRow:
    source: str
    line: int  # line in the source CSV (header = 1)
    engine: str  # conf/engine name
    engine_version: str
    gpu: str
    model: str
    weights: str
    kv: str
    tp: int
    pp: int
    kind: str  # iteration | static_throughput | inflight_throughput | serving
    batch_size: int
    input_tokens: int
    output_tokens: int
    request_rate: float | None  # serving: requests per second; None = all at once
    num_prompts: int
    measured: tuple[tuple[str, float], ...]  # (metric, value): ttft_ms | output_tokens_per_s | serving_*_ms
    statistic: str = "mean"  # serving latencies: mean or median, as the source reports them
    cuda_graphs: bool = True  # False where the source ran with --disable-cuda-graph
    # Issue 18: how the source deployed and measured the row.
    allreduce: str = ""  # "nccl" | "custom": the all-reduce the source ran, where it differs by era; "": the profile's
    ep: int = 1
    dp_attention: bool = False
    mtp_draft_tokens: int = 0
    # A dataset of sim.fidelity.length_datasets ("sharegpt"): each request's lengths drawn from it (input_tokens and
    # output_tokens are then its means); "": fixed or length_ratio lengths.
    length_dataset: str = ""
    length_ratio: float = 1.0
    scheduler_steps: int = 1  # vLLM --num-scheduler-steps (multi-step scheduling); 1: one step per schedule  # < 1: each request's lengths drawn uniformly in [ratio x L, L] (random datasets)
    tp_spans_nodes: bool = False  # the TP group spans two nodes over InfiniBand
    # TensorRT-LLM attention-DP balance (attention_dp_config enable_balance, timeout_iters): context requests are held
    # until every DP rank has one or this many iterations have passed; 0: no hold.
    adp_hold_iters: int = 0
    # Context prompts each DP rank can prefill in one release of that hold (its --max_num_tokens over the prompt
    # length, less its generation requests); 0: not limited here.
    adp_prompts_per_release: int = 0
    # The memory fraction the source's server was launched with (SGLang --mem-fraction-static, TensorRT-LLM
    # kv_cache_config.free_gpu_memory_fraction); None: the simulator's default.
    gpu_memory_utilization: float | None = None
    # Issue 18: the bandwidth between the replica's nodes where the source's network differs from InfiniBand as the
    # simulator's pods have it (GB/s per direction); None: bench_cluster's 200 GB/s.
    inter_node_gb_s: float | None = None
    # The launch script's prompt-token budget per iteration where it is not the profile's (TensorRT-LLM
    # --max_num_tokens, in the simulator's units: one token per decoding sequence); 0: the profile's.
    max_num_batched_tokens: int = 0
