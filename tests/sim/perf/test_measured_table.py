"""The measured-table cost model: exact at its points, linear between, an error outside unless extrapolation is
asked for, and whole simulator runs on a table written here."""
import numpy as np
import pytest

from sim.common.errors import ConfigError, DataError
from sim.perf.batch import BatchShape
from sim.perf.measured_table import OutsideMeasuredRange, TableCostFactory
from sim.fidelity.serving import ServingBench, simulate_serving
from sim.simulator import SimConfig

PREFILL = [(128, 10.0), (1024, 40.0), (4096, 150.0)]  # (prompt tokens, ms)
DECODE = [(1, 128, 8.0), (1, 4096, 9.0), (8, 128, 9.0), (8, 4096, 11.0), (64, 128, 12.0), (64, 4096, 20.0)]


def write_table(path, prefill=PREFILL, decode=DECODE, model="llama3_8b", extra=""):
    lines = ["model,gpu,tp,pp,batch_size,prefill_tokens,context_tokens,iteration_ms"]
    lines += [f"{model},h100_sxm,1,1,1,{p},0,{t}" for p, t in prefill]
    lines += [f"{model},h100_sxm,1,1,{b},0,{c},{t}" for b, c, t in decode]
    path.write_text("\n".join(lines) + "\n" + extra)
    return str(path)


def table_cost(tmp_path, extrapolate=False, **kw):
    from sim.spec.plan import ReplicaPlan
    from sim.spec.cascade import TierSpec
    from sim.spec.models import load_model
    from sim.fidelity.serving import bench_cluster

    factory = TableCostFactory(write_table(tmp_path / "t.csv", **kw), extrapolate, 0.9, 16)
    return factory(TierSpec(load_model("llama3_8b")), ReplicaPlan(1, 1, ((0, 0),)), bench_cluster("h100_sxm", 1))


def decode_ms(cost, n, ctx_per_seq):
    return cost.iteration_time_s(BatchShape(decode_seqs=n, decode_ctx_tokens=n * ctx_per_seq)) * 1e3


def test_exact_at_the_table_points(tmp_path):
    cost = table_cost(tmp_path)
    for p, t in PREFILL:
        assert cost.iteration_time_s(BatchShape(prefill_tokens=p, num_prefill_seqs=1)) * 1e3 == pytest.approx(t, rel=1e-12)
    for b, c, t in DECODE:
        assert decode_ms(cost, b, c) == pytest.approx(t, rel=1e-12)


def test_linear_between_points(tmp_path):
    cost = table_cost(tmp_path)
    assert cost.prefill_s(576) * 1e3 == pytest.approx(25.0)  # halfway from 128 to 1024
    assert decode_ms(cost, 8, 2112) == pytest.approx(10.0)  # halfway in context
    w = 3 / 7  # batch 4 between 1 and 8
    assert decode_ms(cost, 4, 128) == pytest.approx(8.0 + w * 1.0)
    assert decode_ms(cost, 4, 2112) == pytest.approx((1 - w) * 8.5 + w * 10.0)
    # the fast mode's contract: decode time affine in the batch's total context, exactly
    a, b = cost.decode_affine(4)
    shape = BatchShape(decode_seqs=4, decode_ctx_tokens=5000)
    assert cost.iteration_time_s(shape) == a + b * 5000


def test_outside_the_range_is_one_clear_error(tmp_path):
    cost = table_cost(tmp_path)
    with pytest.raises(OutsideMeasuredRange, match=r"prefill_tokens 128-4096 but the run needs 5000; .*extrapolate"):
        cost.prefill_s(5000)
    with pytest.raises(OutsideMeasuredRange, match="decode batch_size 1-64 but the run needs 65"):
        cost.decode_affine(65)
    with pytest.raises(OutsideMeasuredRange, match="context_tokens 128-4096"):
        cost.check_context(5000)


def test_extrapolation_extends_the_end_segments(tmp_path):
    cost = table_cost(tmp_path, extrapolate=True)
    slope = (150.0 - 40.0) / (4096 - 1024)
    assert cost.prefill_s(5000) * 1e3 == pytest.approx(150.0 + slope * (5000 - 4096))
    assert cost.prefill_s(64) * 1e3 == pytest.approx(10.0 - 30.0 / 896 * 64)
    assert decode_ms(cost, 120, 128) == pytest.approx(12.0 + 3.0 / 56 * 56)
    cost.check_context(10_000)  # no error


def test_simulator_runs_on_the_table(tmp_path):
    path = write_table(tmp_path / "t.csv")
    bench = ServingBench("llama3_8b", input_tokens=1024, output_tokens=33, concurrency=1, num_prompts=3)
    m = simulate_serving(bench, sim={"cost_model": "table", "cost_table": path})
    assert m["ttft_ms_mean"] == pytest.approx(40.0)  # the table's prefill point, exactly
    # batch-1 decode at contexts 1025..1056: the batch-1 line 8 + (c - 128) / 3968 ms
    gaps = [8.0 + (1024 + g - 128) / 3968 for g in range(1, 33)]
    assert m["itl_ms_mean"] == pytest.approx(np.mean(gaps))
    busy = ServingBench("llama3_8b", input_tokens=300, output_tokens=50, concurrency=16, request_rate=20.0,
                        num_prompts=60)
    fast = simulate_serving(busy, sim={"cost_model": "table", "cost_table": path})
    ref = simulate_serving(busy, sim={"cost_model": "table", "cost_table": path, "mode": "reference"})
    assert fast.pop("itl_ms_median") == pytest.approx(ref.pop("itl_ms_median"), rel=1e-9)
    assert fast == ref


def test_a_run_beyond_the_measured_context_stops_before_it_starts(tmp_path):
    path = write_table(tmp_path / "t.csv")
    long = ServingBench("llama3_8b", input_tokens=4000, output_tokens=200, concurrency=1, num_prompts=2)
    with pytest.raises(OutsideMeasuredRange, match="context_tokens"):
        simulate_serving(long, sim={"cost_model": "table", "cost_table": path})
    m = simulate_serving(long, sim={"cost_model": "table", "cost_table": path, "cost_table_extrapolate": True})
    assert m["requests"] == 2
    short = ServingBench("llama3_8b", input_tokens=50, output_tokens=20, concurrency=1, num_prompts=2)
    for mode in ("fast", "reference"):  # found at the first prefill, in either mode
        with pytest.raises(OutsideMeasuredRange, match="prefill_tokens 128-4096 but the run needs 50"):
            simulate_serving(short, sim={"cost_model": "table", "cost_table": path, "mode": mode})


@pytest.mark.parametrize("text, message", [
    ("model,gpu,tp\nx,y,1\n", "missing column"),
    ("model,gpu,tp,batch_size,prefill_tokens,context_tokens,iteration_ms\nllama3_8b,h100_sxm,1,1,10,0,abc\n",
     r"t.csv:2: iteration_ms must be a number"),
    ("model,gpu,tp,batch_size,prefill_tokens,context_tokens,iteration_ms\nllama3_8b,h100_sxm,1,1,10,5,3\n",
     "prefill iteration"),
    ("model,gpu,tp,batch_size,prefill_tokens,context_tokens,iteration_ms\nllama3_8b,h100_sxm,1.5,1,10,0,3\n",
     "tp must be an integer"),
    ("model,gpu,tp,batch_size,prefill_tokens,context_tokens,iteration_ms\nllama3_8b,h100_sxm,1,1,10,0,3\n",
     "two or more prefill_tokens"),
])
def test_bad_tables_name_the_file_and_line(tmp_path, text, message):
    from sim.perf.measured_table import load_table

    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_table(str(path))


def test_missing_table_file(tmp_path):
    from sim.perf.measured_table import load_table

    with pytest.raises(DataError, match="no such file"):
        load_table(str(tmp_path / "none.csv"))


def test_a_deployment_not_in_the_table_lists_what_is_there(tmp_path):
    with pytest.raises(DataError, match=r"no rows for llama3_8b on h100_sxm TP1 PP1.*llama2_7b on h100_sxm TP1"):
        table_cost(tmp_path, model="llama2_7b")


def test_config_keys_are_checked():
    with pytest.raises(ConfigError, match="cost_model"):
        SimConfig(cost_model="measured")
    with pytest.raises(ConfigError, match="cost_table"):
        SimConfig(cost_model="table")


def test_a_cascade_run_uses_the_table_for_every_tier(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sim_fakes import OracleJudge, cluster, llama_cascade, plan, poisson_workload

    from sim.simulator import simulate

    path = tmp_path / "two.csv"
    prefill = [(1, 5.0)] + PREFILL  # the workload's prompts start at 8 tokens
    write_table(path, prefill=prefill)
    slow = [(b, c, 3 * t) for b, c, t in DECODE]
    big = "\n".join([f"llama3_70b,h100_sxm,4,1,1,{p},0,{3 * t}" for p, t in prefill]
                    + [f"llama3_70b,h100_sxm,4,1,{b},0,{c},{t}" for b, c, t in slow]) + "\n"
    path.write_text(path.read_text() + big)
    cfg = SimConfig(cost_model="table", cost_table=str(path))
    wl = poisson_workload(150, 4.0, seed=1, mean_in=300, mean_out=60, max_out=200)
    p = plan(replicas_per_tier=(1, 1), tp=(1, 4))
    fast = simulate(p, llama_cascade(), cluster(), wl, cfg, seed=2, judge=OracleJudge())
    ref = simulate(p, llama_cascade(), cluster(), wl, SimConfig(**{**cfg.__dict__, "mode": "reference"}), seed=2,
                   judge=OracleJudge())
    assert (fast.requests.status == "completed").all()
    assert fast.requests.equals(ref.requests)
    # every prefill takes at least the table's smallest prefill time of its tier's model (5 ms and 15 ms)
    req = fast.requests
    assert (req.prefill_s_t0 >= 0.005 - 1e-12).all()
    assert (req.prefill_s_t1.dropna() >= 0.015 - 1e-12).all() and req.prefill_s_t1.notna().any()
