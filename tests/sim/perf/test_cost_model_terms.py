"""The cost model's pipeline sends, DP-attention prefill imbalance and cache key, each checked by taking the term
out of the model and comparing with its hand-worked value (issue 22: cost_model.py's mutation survivors)."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from sim.perf.batch import BatchShape
from sim.perf.cost_model import build_replica_cost
from sim.spec.hardware import load_cluster, load_gpu
from sim.spec.models import load_model

H100 = load_gpu("h100_sxm")
CLUSTER = load_cluster("paper_4x8_h100")


def _prefills(n, tokens_each, decode_seqs=0):
    return BatchShape(prefill_tokens=n * tokens_each, prefill_attn_pairs=n * tokens_each * (tokens_each + 1) / 2.0,
                      num_prefill_seqs=n, decode_seqs=decode_seqs, decode_ctx_tokens=decode_seqs * 600)


@pytest.mark.parametrize("batch", [_prefills(1, 700), _prefills(3, 200, decode_seqs=40),
                                   BatchShape(decode_seqs=24, decode_ctx_tokens=24 * 900)])
def test_pipeline_sends_add_a_fixed_and_a_per_token_cost_per_stage(batch):
    """PP 2: the iteration pays, on top of both stages, each stage's send of the batch's activations (a latency
    plus a per-token transfer, none after the last stage). Taking the sends out lowers the iteration time by
    exactly that, and the per-token part grows linearly with the batch's tokens."""
    piped = build_replica_cost(load_model("llama3_70b"), H100, 4, 2, cluster=CLUSTER)
    first, last = piped.stages
    assert first.send_fixed_s > 0 and first.send_s_per_token > 0
    assert last.send_fixed_s == 0 and last.send_s_per_token == 0
    silent = replace(piped, stages=tuple(replace(st, send_fixed_s=0.0, send_s_per_token=0.0) for st in piped.stages))
    sends = first.send_fixed_s + first.send_s_per_token * batch.num_tokens
    assert piped.iteration_time_s(batch) - silent.iteration_time_s(batch) == pytest.approx(sends, rel=1e-9)


@pytest.mark.parametrize("n, excess", [(1, 1 / 2), (2, 0.0), (3, 2 / 3 - 1 / 2), (5, 3 / 5 - 1 / 2)])
def test_dp_attention_on_two_ranks_charges_the_busiest_ranks_extra_prefill(n, excess):
    """DP attention on TP 2: n equally long prefills sit whole on the two ranks, the busier holding ceil(n / 2)
    of them, i.e. (ceil(n / 2) / n - 1 / 2) of the prefill's attention work beyond the even split the stage terms
    charge (0 for an even n), at one rank's rates (a rank does all its heads: twice the per-pair rate of the
    TP-split attention)."""
    dp = build_replica_cost(load_model("mixtral_8x7b"), H100, 2, 1, cluster=CLUSTER, dp_attention=True)
    (st,) = dp.stages
    assert st.dp_ranks == 2 and st.attn_rank_prefill_s_per_token > 0
    assert math.ceil(n / 2) / n - 1 / 2 == pytest.approx(excess)
    even = replace(dp, stages=(replace(st, dp_ranks=1),))
    batch = _prefills(n, 300)
    extra = excess * (batch.prefill_tokens * st.attn_rank_prefill_s_per_token
                      + batch.prefill_attn_pairs * st.attn_prefill_s_per_pair * 2)
    assert dp.iteration_time_s(batch) - even.iteration_time_s(batch) == pytest.approx(extra, rel=1e-9, abs=1e-15)
    assert dp.stage_time_s(batch) - even.stage_time_s(batch) == pytest.approx(extra, rel=1e-9, abs=1e-15)


def test_a_replica_inside_one_node_is_one_cost_model_whatever_cluster_is_passed():
    """The cluster (its InfiniBand) only matters to a replica that spans nodes: inside a node the cached model is
    the same object with or without it, so the cache holds one model per deployment."""
    model = load_model("llama3_8b")
    assert build_replica_cost(model, H100, 2, 1) is build_replica_cost(model, H100, 2, 1, cluster=CLUSTER)
    other = load_cluster("paper_4x8_h100")
    assert build_replica_cost(model, H100, 4, 1, cluster=other) is build_replica_cost(model, H100, 4, 1)
