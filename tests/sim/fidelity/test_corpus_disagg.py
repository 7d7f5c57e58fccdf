"""The corpus' disaggregated rows (sim.fidelity.corpus_disagg): each run's deployment read from its columns and
notes, a lone request's TTFT and TPOT against the cost model's prefill, the hand-worked KV transfer and the decode
steps, and the summary keys of the validation line."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sim.common.errors import DataError
from sim.fidelity.corpus import drawn_lengths, serving_sim_overrides
from sim.fidelity.corpus_disagg import (INFERENCEX_MTP_ACCEPTANCE, DisaggRun, disaggregated_rows,
                                        disaggregated_summary, launch_settings, mtp_acceptance_from_colocated_pairs,
                                        parse_run, run_deployment, simulate_run)
from sim.fidelity.corpus_rows import CorpusRow
from sim.fidelity.serving import engine_cost_factory
from sim.fidelity.timing import batch_prefill_time_s, decode_step_time_s
from sim.perf.engine import resolve_engine
from sim.runtime.disagg import kv_transfer_s
from sim.simulator import sim_config_from_dict

NOTES = ("InferenceX run x; spec_decode=mtp; PD-disagg: 2 prefill worker(s)=16 GPUs, 3 decode worker(s)=48 GPUs; "
         "random ISL/OSL")


def _rec(**over) -> pd.Series:
    base = {"gpu": "H100-SXM-80GB", "engine": "Dynamo + SGLang (PD-disaggregated)", "tp": "P:8/D:16",
            "ep": "P:1/D:16", "dp_attention": "P:no/D:yes", "input_tokens": "1024", "output_tokens": "8192",
            "batch_size_or_concurrency": "32", "notes": NOTES}
    return pd.Series({**base, **over})


def test_a_runs_deployment_is_read_per_side_from_its_columns_and_notes():
    run = parse_run(_rec(), 7)
    assert run == DisaggRun(gpu="h100_sxm", engine="sglang", num_prefill=2, num_decode=3, tp_prefill=8, tp_decode=16,
                            ep_prefill=1, ep_decode=16, dp_prefill=False, dp_decode=True, input_tokens=1024,
                            output_tokens=8192, concurrency=32, mtp_draft_tokens=1)
    assert run.num_prompts == 320  # min(10 C, max(3 C, MIN_PROMPTS)) = min(320, max(96, 600))
    with pytest.raises(DataError, match="line 7: tp 'P:8' is not"):
        parse_run(_rec(tp="P:8"), 7)
    with pytest.raises(DataError, match="do not match the GPUs"):
        parse_run(_rec(tp="P:8/D:8"), 7)  # 3 decode workers x TP8 is not the 48 GPUs the notes state
    with pytest.raises(DataError, match="notes do not state"):
        parse_run(_rec(notes="no workers here"), 7)


def test_the_shipped_corpus_has_a_tpot_and_a_ttft_median_for_each_of_its_65_disaggregated_runs():
    rows = disaggregated_rows()
    med = rows[rows.statistic == "median"]
    assert (med.metric == "tpot").sum() == 65 and (med.metric == "ttft").sum() == 65
    runs = set(med.run)
    assert {r.gpu for r in runs} == {"h100_sxm", "h200_sxm"} and {r.engine for r in runs} == {"sglang", "trtllm_pytorch"}
    assert all(r.num_prefill >= 1 and r.num_decode >= 1 for r in runs)


def test_lone_requests_pay_prefill_then_transfer_then_one_decode_step_per_token():
    """Concurrency 1: no queue anywhere. Client TTFT = the prefill iteration of the prompt + the KV transfer over
    InfiniBand (prefill and decode workers on different nodes); TPOT = the mean of the out - 1 decode steps, each at
    batch 1 with context prompt + g. Oracle: the cost model's own iteration times and the hand-worked transfer."""
    run = DisaggRun(gpu="h200_sxm", engine="sglang", num_prefill=1, num_decode=1, tp_prefill=8, tp_decode=8,
                    ep_prefill=1, ep_decode=1, dp_prefill=False, dp_decode=False, input_tokens=1024,
                    output_tokens=48, concurrency=1, mtp_draft_tokens=0)
    got = simulate_run(run)
    eng = resolve_engine("sglang")
    cascade, plan, cluster = run_deployment(run)
    src, dst = plan.tiers[0].replicas
    assert {n for n, _ in src.gpus} == {0} and {n for n, _ in dst.gpus} == {1}
    factory = engine_cost_factory(eng, sim_config_from_dict({**serving_sim_overrides(eng), "gpu_memory_utilization": 0.82}))
    c_p, c_d = factory(cascade.tiers[0], src, cluster), factory(cascade.tiers[0], dst, cluster)
    row = CorpusRow(source="x", line=0, engine="sglang", engine_version="", gpu="h200_sxm", model="deepseek_v3",
                    weights="fp8", kv="bf16", tp=8, pp=1, kind="closed_loop", batch_size=1, input_tokens=1024,
                    output_tokens=48, request_rate=None, num_prompts=run.num_prompts, measured=(), length_ratio=0.8)
    isl, osl = drawn_lengths(row)
    kv = cascade.tiers[0].model.kv_bytes_per_token("bf16")
    ttft, tpot = [], []
    for i, o in zip(isl, osl):
        wire = 5e-6 + i * kv / (8 * 400e9 / 8)  # 8 streams, each one GPU's NIC: 1/8 of the DGX node's 400 GB/s
        assert kv_transfer_s(i, kv, src, dst, cluster) == pytest.approx(wire, rel=1e-12)
        ttft.append(batch_prefill_time_s(c_p, 1, i) + wire)
        tpot.append(sum(decode_step_time_s(c_d, 1, i + g) for g in range(1, o)) / (o - 1))
    assert got["requests"] == len(isl) == 10
    assert got["ttft_median"] == pytest.approx(np.median(ttft) * 1e3, rel=1e-6)
    assert got["ttft_mean"] == pytest.approx(np.mean(ttft) * 1e3, rel=1e-6)
    assert got["tpot_median"] == pytest.approx(np.median(tpot) * 1e3, rel=1e-6)
    assert got["tpot_mean"] == pytest.approx(np.mean(tpot) * 1e3, rel=1e-6)


def test_the_summary_counts_median_tpot_rows_and_averages_absolute_errors():
    pts = pd.DataFrame({"metric": ["tpot", "ttft", "tpot", "ttft", "tpot", "tpot"],
                        "statistic": ["median", "median", "median", "median", "mean", "median"],
                        "ape_pct": [10.0, 50.0, 30.0, 70.0, 5.0, math.nan],
                        "run": ["a", "a", "b", "b", "b", "c"], "excluded": ["", "", "", "", "", "too big"]})
    s = disaggregated_summary(pts)
    assert s["disaggregated_rows"] == 2 and s["disaggregated_tpot_mape_pct"] == 20.0
    assert s["disaggregated_ttft_mape_pct"] == 60.0 and s["disaggregated_tpot_mean_mape_pct"] == 5.0
    assert s["disaggregated_excluded_runs"] == 1


def test_the_command_refuses_a_folder_without_disaggregated_rows(tmp_path, capsys):
    from sim.fidelity.corpus_disagg import main

    for folder, says in ((tmp_path / "missing", "not a directory"), (tmp_path, "no inferencex_dsr1_h100_h200")):
        with pytest.raises(SystemExit) as exit_:
            main([str(folder)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and says in err


def test_every_disaggregated_run_finds_its_one_launch_recipe_and_reads_its_settings():
    """InferenceX's recipes (data/measurements/launch): each of the 60 distinct runs matches exactly one; a recipe
    checked by hand (dsr1/sglang/h100-fp8/1k/1k/disagg/mtp/h100-fp8-1p1d-max-dep-mtp.yaml): EAGLE with 2 steps,
    prefill chunk 2048 at mem-fraction 0.6, decode max-running-requests 64 = cuda-graph-max-bs at 0.85."""
    runs = set(disaggregated_rows().run)
    assert len(runs) == 60 and all(launch_settings(r) is not None for r in runs)
    run = next(r for r in runs if r.gpu == "h100_sxm" and r.engine == "sglang" and r.dp_decode and r.concurrency == 4
               and r.input_tokens == 1024)
    got = launch_settings(run)
    assert got.recipe.endswith("h100-fp8-1p1d-max-dep-mtp.yaml")
    assert (got.mtp_draft_tokens, got.prefill_chunk_tokens, got.prefill_mem_fraction) == (2, 2048, 0.6)
    assert (got.decode_max_seqs, got.decode_graph_max_seqs, got.decode_mem_fraction) == (64, 64, 0.85)
    # TensorRT-LLM with attention DP: max_batch_size is per rank (ctx1_gen1_dep16_batch32_eplb0_mtp2: 32 x 16 ranks).
    trt = next(r for r in runs if r.engine == "trtllm_pytorch" and r.concurrency == 615)
    got = launch_settings(trt)
    assert got.recipe.endswith("ctx1_gen1_dep16_batch32_eplb0_mtp2.yaml")
    assert (got.mtp_draft_tokens, got.decode_max_seqs, got.decode_graph_max_seqs) == (2, 512, 32)
    # A run no recipe names keeps the engine profile's defaults.
    assert launch_settings(DisaggRun("h200_sxm", "sglang", 1, 1, 8, 8, 1, 1, False, False, 1024, 48, 1, 0)) is None


def test_the_mtp_acceptance_constants_are_what_the_colocated_pairs_give():
    """INFERENCEX_MTP_ACCEPTANCE is derived from colocated rows only (never the disaggregated ones): recomputing it
    gives the stated constants, and both sit far below the 0.85 the engine profiles assume for natural text."""
    got = mtp_acceptance_from_colocated_pairs()
    assert set(got) == set(INFERENCEX_MTP_ACCEPTANCE)
    for name, value in INFERENCEX_MTP_ACCEPTANCE.items():
        assert got[name] == pytest.approx(value, abs=0.01)
        assert value < resolve_engine(name).mtp_acceptance - 0.15


@pytest.mark.parametrize("concurrency, engine, mtp", [(11, "trtllm_pytorch", False), (16, "sglang", True)])
def test_recipe_runs_are_the_same_in_fast_and_reference_mode(concurrency, engine, mtp):
    """Two runs with their recipes: TensorRT-LLM with nine single-sequence decode workers at concurrency 11 (the cap
    binds: two requests always wait for decode room) and SGLang with 2-draft MTP; the fast mode's jumps over decode
    iterations give the reference mode's statistics to the bit."""
    run = next(r for r in set(disaggregated_rows().run) if r.concurrency == concurrency and r.engine == engine
               and (r.mtp_draft_tokens > 0) == mtp and r.input_tokens == 1024)
    assert launch_settings(run) is not None
    fast, ref = simulate_run(run, mode="fast"), simulate_run(run, mode="reference")
    assert fast == ref and fast["requests"] == run.num_prompts
