"""Fast mode re-offers admission to a sequence preempted at a boundary, as reference mode does: with prefix caching
its blocks stay cached, so it may fit again at the very next boundary, and a decode jump planned past that boundary
kept it out (found by Hypothesis in test_prefix_cache; this is that instance, rebuilt by its generator)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan

from sim.simulator import SimConfig, simulate
from sim.workload.prefix import PrefixHashes
from sim.workload.types import Workload


def cached_workload(n: int, seed: int, block: int, arrival_scale_s: float, input_max: int, output_max: int,
                    prefixes: int) -> Workload:
    """test_prefix_cache.cached_instances's workload with its drawn values given."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(arrival_scale_s, n))
    inp = rng.integers(1, input_max, n).astype(np.int64)
    out = rng.integers(1, output_max, (n, 2)).astype(np.int64)
    shared_prefixes = [tuple(rng.integers(0, 1 << 40, 30).tolist()) for _ in range(prefixes)]
    hashes = []
    for i in range(n):
        nb = -(-int(inp[i]) // block)
        shared = shared_prefixes[rng.integers(len(shared_prefixes))][: rng.integers(0, nb + 1)]
        hashes.append(shared + tuple(rng.integers(1 << 41, 1 << 50, nb - len(shared)).tolist()))
    return Workload("h", arrival, inp, out, rng.uniform(0, 100, (n, 2)), np.array([str(i) for i in range(n)]),
                    ("a", "b"), prefix=PrefixHashes(block, tuple(hashes)))


def test_fast_equals_reference_when_a_preempted_sequence_fits_again_at_the_next_boundary():
    w = cached_workload(35, 10_000, 32, 1.0 / 23.0, 376, 14, 1)
    cfg = SimConfig(batching="vllm", max_num_seqs=2, chunk_tokens=16, max_batched_tokens=64)
    ref, fast = (simulate(plan((1, 0), thresholds=(0.0,)), llama_cascade(), cluster(), w, replace(cfg, mode=mode), seed=10_000,
                          cost_factory=fake_factory(kv_capacity_blocks=19), judge=OracleJudge(0.27))
                 for mode in ("reference", "fast"))
    # The case: request 26 is preempted at 1.0336 s and, its prompt cached, re-admitted at the next boundary.
    assert ref.requests.preemptions.iloc[26] == 1
    pd.testing.assert_frame_equal(fast.requests, ref.requests, check_exact=True)
