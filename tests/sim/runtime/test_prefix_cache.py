"""Prefix caching: hand-computed hit rates, LRU eviction order, KV accounting with shared blocks (Hypothesis),
fast == reference with caching on, and runs without block hashes unchanged."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

from sim.runtime.batching import Seq
from sim.runtime.kv_cache import KVCache
from sim.metrics import summarize
from sim.runtime.replica import Engine
from sim.simulator import SimConfig, simulate
from sim.workload.prefix import PrefixHashes
from sim.workload.types import Workload

# Five requests far apart (each runs alone), 16-token hash blocks = KV blocks. Hand count of the cached tokens:
# r0 nothing cached; r1 the same 64-token prompt: 3 of its 4 blocks (one token must be computed, so the last block
# is recomputed) = 48; r2 shares blocks [1, 2] = 32; r3 repeats ids 2, 3, 4 but after another first block, and a
# block is the same only with the same prefix: 0; r4 shares [1, 2] = 32.
CRAFTED_INPUT = [64, 64, 40, 50, 33]
CRAFTED_HASHES = [(1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 9), (5, 2, 3, 4), (1, 2, 7)]
CRAFTED_CACHED = [0, 48, 32, 0, 32]


def crafted_workload(hash_block_tokens: int = 16) -> Workload:
    n = len(CRAFTED_INPUT)
    return Workload("crafted", 100.0 * np.arange(n), np.array(CRAFTED_INPUT, dtype=np.int64),
                    np.full((n, 2), 5, dtype=np.int64), np.full((n, 2), 50.0), np.array([f"q{i}" for i in range(n)]),
                    ("a", "b"), prefix=PrefixHashes(hash_block_tokens, tuple(CRAFTED_HASHES)))


def test_hit_rate_and_prefill_charge_match_the_hand_count_at_every_tier():
    w = crafted_workload()
    # Threshold 100: every request is forwarded, and tier 1 looks its prompts up in its own replica's cache.
    r = simulate(plan((1, 1), thresholds=(100.0,)), llama_cascade(), cluster(), w, SimConfig(), seed=0,
                 cost_factory=fake_factory(kv_capacity_blocks=1000), judge=OracleJudge(0.27))
    df = r.requests
    for t in (0, 1):
        assert df[f"cached_tokens_t{t}"].tolist() == CRAFTED_CACHED
    # Prefill charges only the tokens not cached: FakeCost's iteration is base + 2e-5 s per prefill token.
    computed = np.array(CRAFTED_INPUT) - np.array(CRAFTED_CACHED)
    np.testing.assert_allclose(df.prefill_s_t0, 0.004 + 2e-5 * computed, rtol=0, atol=1e-12)  # times near 400 s
    s = summarize(r, llama_cascade())
    assert s["prefix_hit_rate"] == pytest.approx([112 / 251, 112 / 251], rel=1e-12)
    assert s["per_tier"][1]["prefix_hit_rate"] == pytest.approx(112 / 251, rel=1e-12)
    assert w.prefix.reuse_pct() == pytest.approx(100 * 8 / 18)  # blocks seen earlier: r1 4, r2 2, r4 2 of 18


def test_caching_off_or_no_hashes_records_no_cached_tokens():
    w = crafted_workload()
    on = simulate(plan((1, 0), thresholds=(0.0,)), llama_cascade(), cluster(), w, SimConfig(), seed=0,
                  cost_factory=fake_factory(), judge=OracleJudge(0.0))
    off = simulate(plan((1, 0), thresholds=(0.0,)), llama_cascade(), cluster(), w, SimConfig(prefix_caching=False),
                   seed=0, cost_factory=fake_factory(), judge=OracleJudge(0.0))
    assert "cached_tokens_t0" in on.requests and "cached_tokens_t0" not in off.requests
    assert "prefix_hit_rate" not in summarize(off, llama_cascade())
    assert (off.requests.prefill_s_t0 > on.requests.prefill_s_t0).sum() == 3  # r1, r2, r4 lose their hits


def test_units_span_several_kv_blocks_and_several_hash_blocks():
    # 32-token hash blocks on 16-token KV blocks: a unit is one hash block (2 KV blocks); r1 finds 32 of 64 cached
    # (its last unit holds its last token), r2 finds 32 of 40 (its first full unit).
    n_in = [64, 64, 40]
    hashes = ((1, 2), (1, 2), (1, 9))
    w = Workload("u", 100.0 * np.arange(3), np.array(n_in, dtype=np.int64), np.full((3, 2), 5, dtype=np.int64),
                 np.full((3, 2), 50.0), np.array(["a", "b", "c"]), ("a", "b"), prefix=PrefixHashes(32, hashes))
    r = simulate(plan((1, 0), thresholds=(0.0,)), llama_cascade(), cluster(), w, SimConfig(), seed=0,
                 cost_factory=fake_factory(), judge=OracleJudge(0.0))
    assert r.requests.cached_tokens_t0.tolist() == [0, 32, 32]
    # 8-token hash blocks on 16-token KV blocks: a unit is two hash blocks, keyed by the second (which names the
    # whole prefix); r1 differs from r0 in its 4th hash block, so it shares the first unit only.
    hashes = ((1, 2, 3, 4), (1, 2, 3, 8), (1, 2, 3, 4))
    n_in = [32, 32, 32]
    w = Workload("v", 100.0 * np.arange(3), np.array(n_in, dtype=np.int64), np.full((3, 2), 5, dtype=np.int64),
                 np.full((3, 2), 50.0), np.array(["a", "b", "c"]), ("a", "b"), prefix=PrefixHashes(8, hashes))
    r = simulate(plan((1, 0), thresholds=(0.0,)), llama_cascade(), cluster(), w, SimConfig(), seed=0,
                 cost_factory=fake_factory(), judge=OracleJudge(0.0))
    assert r.requests.cached_tokens_t0.tolist() == [0, 16, 16]


def _seq(keys, tokens):
    s = Seq(0, 0, tokens, 10, 0.0)
    s.unit_keys, s.unit_tokens = keys, 16
    return s


def _admit(kv, seq):
    pc = kv.prefix_cache(16)
    hits, take = pc.lookup(seq.unit_keys, seq.prompt_tokens)
    pc.admit(seq, hits, take)
    seq.blocks = kv.blocks_for(seq.prompt_tokens)
    return hits


def test_lru_evicts_least_recently_used_units_tail_first():
    kv = KVCache(10, 16)
    a = _seq((1, 2), 40)  # 3 blocks: units 1, 2 and a private partial block
    assert _admit(kv, a) == 0
    kv.release(a)
    b = _seq((3,), 20)
    _admit(kv, b)
    kv.release(b)
    c = _seq((1, 5), 33)  # hits unit 1 (pinned again), registers unit 5
    assert _admit(kv, c) == 1
    kv.release(c)
    pc = kv.prefix
    # A request's units return tail first, so a prefix outlives its extensions; a hit refreshes unit 1.
    assert list(pc.lru) == [2, 3, 5, 1]
    assert kv.free_blocks == 10 and kv.evictable_blocks == 4
    kv.take(7)  # 6 blocks hold nothing: one unit must go, the least recently used
    assert list(pc.lru) == [3, 5, 1]
    kv.take(2)
    assert list(pc.lru) == [1] and pc.evicted_units == 3
    kv.give(9)
    pc.check([])
    d = _seq((1, 2), 40)  # unit 1 survived, unit 2 was evicted
    assert _admit(kv, d) == 1


def test_shared_units_count_once_and_stay_pinned_while_held():
    kv = KVCache(8, 16)
    a, b = _seq((1, 2), 40), _seq((1, 2), 40)
    _admit(kv, a)
    assert _admit(kv, b) == 2  # b reads a's two units: only its third block is new
    assert kv.used_blocks == 4
    kv.prefix.check([a, b])
    kv.release(a)
    assert kv.evictable_blocks == 0  # b still holds both units
    rest = kv.free_blocks
    kv.take(rest)  # allocation pressure cannot evict a held unit
    assert set(kv.prefix.refs) == {1, 2}
    kv.give(rest)
    kv.prefix.check([b])


@st.composite
def cached_instances(draw):
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    block = draw(st.sampled_from([8, 16, 32]))
    arrival = np.cumsum(rng.exponential(1.0 / draw(st.floats(1.0, 200.0)), n))
    inp = rng.integers(1, draw(st.integers(2, 400)), n).astype(np.int64)
    out = rng.integers(1, draw(st.integers(2, 300)), (n, 2)).astype(np.int64)
    # A few shared prefixes (system prompts, earlier turns) of random depth, then blocks of the request's own.
    prefixes = [tuple(rng.integers(0, 1 << 40, 30).tolist()) for _ in range(draw(st.integers(1, 4)))]
    hashes = []
    for i in range(n):
        nb = -(-int(inp[i]) // block)
        shared = prefixes[rng.integers(len(prefixes))][: rng.integers(0, nb + 1)]
        hashes.append(shared + tuple(rng.integers(1 << 41, 1 << 50, nb - len(shared)).tolist()))
    w = Workload("h", arrival, inp, out, rng.uniform(0, 100, (n, 2)), np.array([str(i) for i in range(n)]),
                 ("a", "b"), prefix=PrefixHashes(block, tuple(hashes)))
    cfg = SimConfig(batching=draw(st.sampled_from(["vllm", "sarathi", "static"])),
                    max_num_seqs=draw(st.integers(1, 16)), chunk_tokens=draw(st.sampled_from([16, 64, 512])),
                    max_batched_tokens=draw(st.sampled_from([64, 8192])),
                    load_balancer=draw(st.sampled_from(["least_work", "round_robin", "jsq", "prefix_aware"])),
                    forward_with_draft=draw(st.booleans()))
    p = plan((draw(st.integers(1, 3)), draw(st.integers(0, 1))), thresholds=(draw(st.floats(0, 100)),),
             pp=(draw(st.sampled_from([1, 2])), 1))
    return w, cfg, p, draw(st.integers(4, 200)), seed


def _run(inst, mode):
    w, cfg, p, kv, seed = inst
    return simulate(p, llama_cascade(), cluster(), w, replace(cfg, mode=mode), seed=seed,
                    cost_factory=fake_factory(kv_capacity_blocks=kv), judge=OracleJudge(0.27))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=cached_instances())
def test_kv_accounting_with_sharing_and_fast_equals_reference(inst, checked_engines):
    ref = _run(inst, "reference")  # every iteration boundary checks the cache (fixture below)
    df = ref.requests
    assert set(df.status) <= {"completed", "dropped"}
    w, cfg = inst[0], inst[1]
    for t in (0, 1):
        c = df[f"cached_tokens_t{t}"].to_numpy()
        served = np.isfinite(c)
        # At least one prompt token is computed; a forwarded prompt with the draft appended may hit all its input.
        most = w.input_tokens - (0 if t == 1 and cfg.forward_with_draft else 1)
        assert (c[served] >= 0).all() and (c[served] <= most[served]).all()
    fast = _run(inst, "fast")
    pd.testing.assert_frame_equal(fast.requests, df, check_exact=True)
    assert [r["kv_peak_used_blocks"] for r in fast.meta["replicas"]] == \
        [r["kv_peak_used_blocks"] for r in ref.meta["replicas"]]


@pytest.fixture(scope="module")
def checked_engines():
    """Engine._next checks the prefix cache's accounting at every boundary of a reference-mode run (where every
    sequence's block count is exact)."""
    mp = pytest.MonkeyPatch()
    plain = Engine._next

    def checked(self):
        if self.kv.prefix is not None and not self.fast:
            self.kv.prefix.check(self.running)
        return plain(self)

    mp.setattr(Engine, "_next", checked)
    yield
    mp.undo()


@pytest.mark.parametrize("batching", ["vllm", "sarathi"])
def test_fast_equals_reference_with_caching_under_memory_pressure(batching):
    w = poisson_workload(300, 40.0, 1)
    rng = np.random.default_rng(1)
    hashes = []
    for i, n_in in enumerate(w.input_tokens.tolist()):
        nb = -(-n_in // 16)
        shared = min(nb, int(rng.integers(0, 12)))
        hashes.append(tuple(range(shared)) + tuple(range(10_000 * (i + 1), 10_000 * (i + 1) + nb - shared)))
    w = replace(w, prefix=PrefixHashes(16, tuple(hashes)))
    runs = [simulate(plan((2, 1), pp=(2, 1)), llama_cascade(), cluster(), w,
                     SimConfig(mode=mode, batching=batching, max_num_seqs=48), seed=0,
                     cost_factory=fake_factory(kv_capacity_blocks=150), judge=OracleJudge(0.27))
            for mode in ("fast", "reference")]
    fast, ref = runs
    assert fast.requests.preemptions.sum() > 0 and fast.meta["jumps"] > 0
    assert 0 < summarize(fast, llama_cascade())["prefix_hit_rate"][0] < 1
    pd.testing.assert_frame_equal(fast.requests, ref.requests, check_exact=True)
    assert fast.meta["iterations"] == ref.meta["iterations"]


def test_prefix_aware_balancer_sends_a_prefix_back_to_its_replica():
    # Two 64-token prefixes P and Q (4 blocks) plus one block of each request's own, arriving while the first ones
    # still run: least_work spreads them by load, prefix_aware sends each back to the replica that has its prefix.
    n = 6
    prefix = [(1, 2, 3, 4), (5, 6, 7, 8)]
    hashes = tuple(prefix[i % 2] + (100 + i,) for i in range(n))
    w = Workload("pq", 0.01 * np.arange(n), np.full(n, 80, dtype=np.int64), np.array([[400, 5]] * 2 + [[5, 5]] * 4),
                 np.full((n, 2), 50.0), np.array([f"q{i}" for i in range(n)]), ("a", "b"),
                 prefix=PrefixHashes(16, hashes))
    runs = {lb: simulate(plan((2, 0), thresholds=(0.0,)), llama_cascade(), cluster(), w, SimConfig(load_balancer=lb),
                         seed=0, cost_factory=fake_factory(), judge=OracleJudge(0.0)).requests
            for lb in ("least_work", "prefix_aware")}
    aware = runs["prefix_aware"]
    assert aware.replica_t0.tolist() == [0, 1, 0, 1, 0, 1]
    assert aware.cached_tokens_t0.tolist() == [0, 0, 64, 64, 64, 64]
    assert runs["least_work"].cached_tokens_t0.sum() < aware.cached_tokens_t0.sum()


def test_prefix_aware_without_hashes_is_least_work():
    w = poisson_workload(200, 40.0, 6)
    frames = [simulate(plan((3, 1)), llama_cascade(), cluster(), w, SimConfig(load_balancer=lb), seed=0,
                       cost_factory=fake_factory(), judge=OracleJudge(0.27)).requests
              for lb in ("least_work", "prefix_aware")]
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def test_replica_taken_down_with_cached_prefixes_loses_no_request():
    from sim.control.controller import Controller

    class TakeDown(Controller):
        def run(self, env, cluster, flow):
            yield env.timeout(3.0)
            self.requeued = cluster.take_down(cluster.routers[0].replicas[0])

    w = poisson_workload(300, 40.0, 2)
    w = replace(w, prefix=PrefixHashes(16, tuple(tuple(range(-(-n // 16))) for n in w.input_tokens.tolist())))
    frames = []
    for mode in ("fast", "reference"):
        ctl = TakeDown()
        r = simulate(plan((2, 1)), llama_cascade(), cluster(), w, SimConfig(mode=mode), seed=0,
                     cost_factory=fake_factory(kv_capacity_blocks=300), judge=OracleJudge(0.27), controller=ctl)
        assert ctl.requeued > 0 and (r.requests.status == "completed").all()
        frames.append(r.requests)
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


# The record columns of a two-tier run at commit 941ddcd, before prefix caching (later columns are not compared).
BASELINE_COLUMNS = (["request_id", "arrival_s", "input_tokens", "final_tier", "tiers_visited", "final_score", "ttft_s",
                     "completion_s", "latency_s", "output_tokens_final", "preemptions", "status", "drop_reason",
                     "gate_score_t0", "gate_score_t1"]
                    + [f"{name}_t{t}" for name in ("enter_s", "queue_s", "prefill_s", "decode_s", "judge_s", "replica",
                                                   "output_tokens") for t in (0, 1)])
# sha256 of those columns as CSV, computed with the code of commit 941ddcd: a workload without block hashes must
# give the same records byte for byte. Re-recorded when decode iterations took the closed-form clock of a decode
# segment (sim.runtime.jump, issue 21's fourth pass): against 941ddcd's records (which main still gave then) every
# non-float column was equal and every float within 5.7e-10 relative (queue_s, a difference of two times; the
# times themselves within 4.1e-15), so the run's path is unchanged and only its floats moved by ulps.
BASELINE_SHA256 = {
    "vllm": "2438e90825f26f66058bfa23d5ceeef438fb0d52157f93b407ea37dcf05339bd",
    "sarathi": "5df1e0d5f46fc0727bdbc134de8f528f5bc441d3ad29c7c402f5a1a5debe896b",
}


@pytest.mark.parametrize("batching", ["vllm", "sarathi"])
def test_no_hash_ids_gives_the_records_of_before_byte_for_byte(batching):
    w = poisson_workload(300, 40.0, 4)
    assert w.prefix is None
    r = simulate(plan((2, 1), pp=(2, 1)), llama_cascade(), cluster(), w, SimConfig(batching=batching, max_num_seqs=48),
                 seed=0, cost_factory=fake_factory(kv_capacity_blocks=150), judge=OracleJudge(0.27))
    assert r.requests.preemptions.sum() > 0  # the KV paths that prefix caching changed are exercised
    assert not [c for c in r.requests if c.startswith("cached_tokens")]
    digest = hashlib.sha256(r.requests[BASELINE_COLUMNS].to_csv(index=False).encode()).hexdigest()
    assert digest == BASELINE_SHA256[batching]


def test_prefix_caching_must_be_a_boolean():
    from sim.common.errors import ConfigError
    from sim.simulator import sim_config_from_dict

    assert sim_config_from_dict({"prefix_caching": False}).prefix_caching is False
    with pytest.raises(ConfigError, match="sim.prefix_caching = 'yes' is not valid; it must be true or false"):
        sim_config_from_dict({"prefix_caching": "yes"})
