"""The measured corpus through the cost model: row mapping, exact static-batch sums, engine fits, LOSO, CLIs."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest

from sim.spec.hardware import load_gpu
from sim.spec.models import load_model
from sim.common.paths import PROJECT_ROOT
from sim.perf.batch import BatchShape
from sim.fidelity.corpus import (CORPUS_DIR, NotPredictable, corpus_files, inflight_decode_batch, load_corpus, predict_row,
                             static_batch_time_s)
from sim.fidelity.corpus_report import evaluate_corpus, summary_line
from sim.perf.cost_model import build_replica_cost
from sim.perf.engine import FITTABLE, EngineProfile, load_engine
from sim.fidelity import engine_fit
from sim.fidelity.engine_fit import fit_profile, leave_one_source_out, with_params

H100 = load_gpu("h100_sxm")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_every_corpus_row_is_mapped_or_skipped_with_a_reason(corpus):
    rows, skipped = corpus
    total = sum(len(pd.read_csv(p)) for p in corpus_files(CORPUS_DIR))
    assert len(rows) + len(skipped) == total
    assert all(s["reason"] for s in skipped)
    from sim.perf.engine import available_engines
    assert {r.engine for r in rows} <= set(available_engines())
    assert {r.kind for r in rows} == {"iteration", "static_throughput", "inflight_throughput", "serving",
                                      "static_latency", "decode_rate", "decode_step", "closed_loop",
                                      "kernel_allreduce", "kernel_layer", "kernel_linear"}
    # Issue 18: at least 2,500 predictable rows from at least 12 sources (before the KV-fit check).
    assert len(rows) >= 2500 and len({r.source for r in rows}) >= 12
    # MLPerf gives neither lengths nor parallelism: listed, not guessed.
    assert sum(s["source"] == "mlperf_inference_v4_1" for s in skipped) == 8
    assert not [r for r in rows if r.source == "mlperf_inference_v4_1"]


def test_static_batch_time_is_the_exact_sum_of_its_iterations():
    cost = build_replica_cost(load_model("llama2_70b"), H100, 4, 1, "fp8", "fp8", engine="trtllm")
    batch, isl, osl = 16, 300, 40
    total = cost.iteration_time_s(BatchShape(prefill_tokens=batch * isl, prefill_attn_pairs=batch * isl * (isl + 1) / 2,
                                             num_prefill_seqs=batch))
    for j in range(1, osl):
        total += cost.iteration_time_s(BatchShape(decode_seqs=batch, decode_ctx_tokens=batch * (isl + j)))
    assert static_batch_time_s(cost, batch, isl, osl) == pytest.approx(total, rel=1e-9)


def test_inflight_batch_is_bounded_by_kv_budget_and_engine_cap():
    cost = build_replica_cost(load_model("llama3_70b"), H100, 8, 1, "fp8", "fp8", engine="trtllm")
    assert inflight_decode_batch(cost, 128, 128) == min(2048, 8192 * 128 // 256)  # the token budget binds
    long = inflight_decode_batch(cost, 8192, 8192)
    assert long * math.ceil(16384 / 16) <= cost.kv_capacity_blocks  # KV binds
    assert inflight_decode_batch(cost, 8192, 8192) < inflight_decode_batch(cost, 128, 128)


def test_build_replica_cost_accepts_a_profile_object_or_a_name():
    model = load_model("llama3_8b")
    named = build_replica_cost(model, H100, 1, 1, engine="sglang")
    assert build_replica_cost(model, H100, 1, 1, engine=load_engine("sglang")) is named
    slower = replace(load_engine("sglang"), cpu_base_ms=5.0)
    assert isinstance(slower, EngineProfile)
    b = BatchShape(decode_seqs=4, decode_ctx_tokens=4000)
    assert build_replica_cost(model, H100, 1, 1, engine=slower).iteration_time_s(b) > named.iteration_time_s(b)


def test_fit_recovers_a_known_profile_from_its_own_predictions(corpus, monkeypatch):
    # Synthetic measurements made by a profile with other parameters: without the prior's pull the fit must find
    # them (error ~0); with it, it must still beat the prior by far.
    rows = [r for r in corpus[0] if r.source == "trtllm_docs" and r.kind in ("iteration", "static_throughput")][:40]
    # The truth is the prior with three parameters moved (independent of the shipped, fitted trtllm values).
    at_prior = with_params(load_engine("trtllm"), {k: v[1] for k, v in FITTABLE.items()})
    truth = replace(at_prior, layer_overhead_graph_us=25.0, layer_overhead_eager_us=25.0, cpu_base_ms=1.5,
                    attn_prefill_eff=0.4)
    synthetic = []
    for r in rows:
        try:
            pred = predict_row(r, truth, with_serving=False)
        except NotPredictable:
            continue
        synthetic.append(replace(r, measured=tuple((m, pred[m]) for m, _ in r.measured)))
    def mean_error(profile):
        return sum(abs(predict_row(r, profile, with_serving=False)[m] / v - 1)
                   for r in synthetic for m, v in r.measured) / len(synthetic)

    regularised, report = fit_profile(load_engine("trtllm"), synthetic)
    assert report["rows"] == len(synthetic) >= 30
    prior = with_params(load_engine("trtllm"), {k: v[1] for k, v in FITTABLE.items()})
    assert mean_error(regularised) < 0.5 * mean_error(prior)
    monkeypatch.setattr(engine_fit, "PRIOR_WEIGHT", 0.0)
    exact, _ = fit_profile(load_engine("trtllm"), synthetic)
    assert mean_error(exact) < 1e-4
    assert exact.layer_overhead_graph_us == pytest.approx(25.0, rel=1e-3) == exact.layer_overhead_eager_us
    for key, (lo, _, hi) in FITTABLE.items():
        assert lo <= getattr(exact, key) <= hi


def test_loso_never_uses_the_held_out_source(corpus):
    rows = [r for r in corpus[0] if r.source == "shaamil101_trtllm_benchmarks"]
    table, reports = leave_one_source_out(rows, with_serving=False)
    assert not reports and table.predicted.isna().all()  # trtllm has no other source here: no LOSO number


def test_corpus_summary_line_on_a_small_corpus(tmp_path):
    shutil.copy(CORPUS_DIR / "shaamil101_trtllm_benchmarks.csv", tmp_path)
    docs = pd.read_csv(CORPUS_DIR / "trtllm_docs.csv")
    docs[docs.kind != "serving"].head(60).to_csv(tmp_path / "trtllm_docs.csv", index=False)
    line = summary_line(evaluate_corpus(tmp_path, with_serving=False))
    assert list(line) == ["rows", "sources", "decode_mape_pct", "prefill_mape_pct", "serving_ttft_mape_pct",
                          "serving_itl_mape_pct", "kernel_mape_pct", "per_source"]
    assert line["sources"] == 2 and line["serving_ttft_mape_pct"] is None
    for stats in line["per_source"].values():
        assert set(stats) == {"rows", "mape_pct", "loso_mape_pct"} and stats["rows"] > 0
        assert stats["loso_mape_pct"] is not None and stats["mape_pct"] < 40


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=300)


def test_calibrate_engine_without_rows_and_unknown_engine():
    out = run("sim.fidelity.calibrate", "--engine", "vllm_v1")
    assert out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1])["fitted"] == {}
    out = run("sim.fidelity.calibrate", "--engine", "tgi")
    assert out.returncode == 2 and out.stderr.startswith("error: unknown engine 'tgi'")


@pytest.mark.slow
def test_validate_corpus_cli_ends_with_the_summary_line():
    out = run("sim.fidelity.validate", "--corpus")
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["sources"] == len(corpus_files(CORPUS_DIR)) and line["rows"] >= 2500
    assert set(line["per_source"]) == {p.name.split(".")[0] for p in corpus_files(CORPUS_DIR)}
    assert line["serving_ttft_mape_pct"] is not None
    # docs/fidelity.md quotes this command's output: it must be the current one.
    doc = (PROJECT_ROOT / "docs" / "fidelity.md").read_text()
    assert out.stdout.strip().splitlines()[-1] in doc, "rerun python -m sim.fidelity.validate --corpus into docs/fidelity.md"


@pytest.mark.slow
def test_shipped_trtllm_profile_is_the_corpus_fit(corpus):
    fitted, _ = fit_profile(load_engine("trtllm"), corpus[0])
    shipped = load_engine("trtllm")
    for key in FITTABLE:
        assert getattr(shipped, key) == pytest.approx(getattr(fitted, key), rel=2e-3), key



def test_fidelity_figure_draws_one_panel_per_engine(tmp_path, monkeypatch):
    import matplotlib.figure

    from sim.fidelity.fidelity_figure import draw

    # Five engines: two rows of panels (four per row), the unused fifth-row slots hidden.
    points = pd.DataFrame({"source": ["a", "a", "b", "c", "c"], "line": [2, 3, 2, 2, 3],
                           "engine": ["trtllm", "vllm", "sglang", "none", "lmdeploy"],
                           "bucket": ["decode", "prefill", "serving_itl", "kernel", "decode"],
                           "measured": [100.0, 20.0, 8.0, 0.5, 40.0], "predicted": [110.0, 18.0, 9.0, 0.45, 44.0],
                           "excluded": [""] * 5})
    titles = []
    original = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        titles.extend(ax.get_title() for ax in fig.axes if ax.get_visible())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    out = draw(points, tmp_path / "fig.png")
    assert out.exists() and out.stat().st_size > 10_000
    assert sorted(t.split(" (")[0] for t in titles) == ["lmdeploy", "none", "sglang", "trtllm", "vllm"]


def test_corpus_csv_without_the_columns_is_one_line_exit_2(tmp_path):
    (tmp_path / "mine.csv").write_text("model,gpu\nllama3_8b,h100_sxm\n")
    out = run("sim.fidelity.validate", "--corpus", tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "missing column(s)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_serving_rows_keep_the_sources_statistic_and_cuda_graph_setting(corpus):
    dsv3 = [r for r in corpus[0] if r.source == "sglang_benchmark_dsv3"]
    assert len(dsv3) == 16 and {r.statistic for r in dsv3} == {"median"} and {r.model for r in dsv3} == {"deepseek_v3"}
    assert {r.num_prompts for r in dsv3} == {300, 600, 1200, 2400}
    assert any(not r.cuda_graphs for r in dsv3) and any(r.cuda_graphs for r in dsv3)
    docs = [r for r in corpus[0] if r.source == "trtllm_docs" and r.kind == "serving"]
    assert {r.statistic for r in docs} == {"mean"} and {r.num_prompts for r in docs} == {500}


def test_sglang_041_rows_run_with_that_version_server_args_and_layer_time(corpus):
    # SGLang 0.4.0-0.4.1's ServerArgs, with --enable-dp-attention: chunked prefill 8,192 -> 4,096, CUDA graphs at
    # most 96 per rank (160 -> 96), overlap scheduler off (CPU 4x the overlapped tail: 0.25 -> 1.0 ms base,
    # 0.010 -> 0.040 ms per sequence, 0.11 -> 0.44 ms per log2 TP). Every 0.4.0-0.4.1 row gets that release's
    # per-layer GPU time (202 us x TP^0.35); later versions or another engine keep the profile.
    from sim.fidelity.corpus import SGLANG_041_LAYER_GAP_US, sglang_dp_attention_041
    rows = corpus[0]
    dsv3_dp = next(r for r in rows if r.source == "sglang_benchmark_dsv3" and r.dp_attention)
    dsv3_tp16 = next(r for r in rows if r.source == "sglang_benchmark_dsv3" and not r.dp_attention)
    eng = load_engine("sglang")
    got = sglang_dp_attention_041(dsv3_dp, eng)
    assert (got.max_num_batched_tokens, got.cuda_graph_max_seqs) == (4096, 96)
    assert (got.cpu_base_ms, got.cpu_per_seq_ms, got.cpu_per_log2_tp_ms) == pytest.approx((1.0, 0.040, 0.44))
    assert got.layer_overhead_graph_us == SGLANG_041_LAYER_GAP_US == 202.0
    assert sglang_dp_attention_041(dsv3_tp16, eng) == replace(eng, layer_overhead_graph_us=202.0)
    assert sglang_dp_attention_041(replace(dsv3_dp, engine_version="0.5.12"), eng) == eng
    assert sglang_dp_attention_041(replace(dsv3_dp, engine_version="~v0.4.2 (Feb 2025)"), eng) == eng
    trt = load_engine("trtllm_pytorch")
    assert sglang_dp_attention_041(replace(dsv3_dp, engine="trtllm_pytorch"), trt) == trt


def test_sglang_041_layer_time_reproduces_the_source_it_was_fitted_on():
    # sglang PR #2643 (v0.4.1.post2, DeepSeek-V3 FP8, TP8, CUDA graphs, 128 in / 256 out): 33.0 / 38.8 / 42.1 ms per
    # step at batch 1 / 8 / 32. With the 0.5 profile's 18 us per layer the model is 71 / 65 / 49 % fast; with the
    # fitted 202 us (61 layers x 202 x 8^0.35 us = 25.5 ms more per step, at every batch) within 7 % of each.
    from sim.fidelity.corpus import SGLANG_041_LAYER_GAP_US
    dsv3, h200 = load_model("deepseek_v3"), load_gpu("h200_sxm")
    eng = load_engine("sglang")
    old = build_replica_cost(dsv3, h200, 8, 1, "fp8", engine=eng)
    new = build_replica_cost(dsv3, h200, 8, 1, "fp8", engine=replace(eng, layer_overhead_graph_us=SGLANG_041_LAYER_GAP_US))
    for batch, measured_ms in ((1, 33.0), (8, 38.8), (32, 42.1)):
        assert new.decode_time_s(batch, 256) - old.decode_time_s(batch, 256) == pytest.approx(
            61 * (202.0 - 18.0) * 8 ** 0.35 * 1e-6, rel=1e-9)
        assert new.decode_time_s(batch, 256) * 1e3 == pytest.approx(measured_ms, rel=0.07)
        assert old.decode_time_s(batch, 256) * 1e3 < 0.6 * measured_ms
