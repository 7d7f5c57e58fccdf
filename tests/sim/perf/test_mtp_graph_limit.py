"""MTP decode stays on CUDA graphs while the sequences fit the engine's graph limit: SGLang's cuda-graph-max-bs and
TensorRT-LLM's cuda_graph_config batch sizes count requests, each graph holding the 1 + k tokens it verifies."""
from __future__ import annotations

from dataclasses import replace

import pytest

from sim.perf.cost_model import build_replica_cost
from sim.perf.engine import resolve_engine
from sim.spec.hardware import load_gpu
from sim.spec.models import load_model


@pytest.mark.parametrize("engine, k", [("sglang", 2), ("trtllm_pytorch", 3)])
def test_mtp_step_at_the_graph_limit_in_sequences_is_on_graphs(engine, k):
    model, gpu = load_model("deepseek_v3"), load_gpu("h200_sxm")
    base = resolve_engine(engine)

    def step_s(graph_max: int, batch: int) -> float:
        c = build_replica_cost(model, gpu, 8, 1, "fp8", engine=replace(base, cuda_graph_max_seqs=graph_max),
                               gpu_memory_utilization=0.8, mtp_draft_tokens=k)
        return c.decode_time_s(batch, 2000)

    for batch in (2, 16):
        # A limit of exactly `batch` sequences is as good as an unlimited one (the verify pass holds batch (1 + k)
        # tokens, but the graphs are captured per sequence); one sequence fewer falls back to eager launches.
        assert step_s(batch, batch) == step_s(4096, batch)
        assert step_s(batch - 1, batch) > 1.5 * step_s(batch, batch)
