"""The measured-engine corpus (data/measurements): rows mapped onto the cost model, and how each row is predicted.

Every CSV row becomes either a CorpusRow (a deployment the cost model knows, with one or two measured metrics) or
a skipped entry with its reason (model architecture not modelled, lengths not given, ...). Prediction follows how
the source measured the row (read data/measurements/SOURCES.md):

- iteration (batch-1 first-token latency, output length 1): one prefill iteration of the batch's prompts.
- offline_throughput, static batching (TensorRT-LLM gptSessionBenchmark, v0.5-v0.9): the batch prefills in one
  context phase, then decodes output_tokens - 1 steps together; throughput = batch x output / total time.
- offline_throughput, in-flight batching at infinite rate (trtllm-bench, v0.14+): a steady state where D sequences
  decode each iteration and D / output new requests prefill, chunked into the engine's token budget. D is the
  smallest of the engine's max_num_seqs, the requests whose worst-case KV (input + output tokens) fits, and the
  batch the token budget can feed (budget x output / (input + output)). Throughput = D / iteration time.
- serving (a benchmark client at a request rate, fixed lengths): the serving engineer's closed-loop simulation,
  sim.fidelity.serving, with the engine profile; TTFT and ITL are compared as the source reports them (mean or
  median). A source run with --disable-cuda-graph is predicted with the profile's CUDA graphs off.
Rows measured on ShareGPT (sglang.bench_serving / vLLM benchmark_serving) are simulated with lengths drawn from its
published statistics (sim.fidelity.length_datasets; issue 18); rows with a length distribution that has no published
parameters (MLPerf's datasets) or without a parallelism are listed as not predictable with that reason.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import fftconvolve
from scipy.stats import poisson

from sim.common.errors import DataError, UserError
from sim.spec.hardware import load_gpu
from sim.spec.models import load_model
from sim.common.paths import DATA_DIR
from sim.perf.batch import BatchShape
from sim.perf.cost_model import ReplicaCostModel, build_replica_cost
from sim.perf.engine import EngineProfile, resolve_engine
from sim.fidelity.corpus_long import LONG_COLUMNS, long_rows
from sim.fidelity.corpus_rows import CorpusRow, NotPredictable
from sim.fidelity.kernel_floor import kernel_time_ms
from sim.fidelity.length_datasets import SHAREGPT, dataset_named, draw_lengths
from sim.fidelity.timing import batch_prefill_time_s, decode_step_time_s

CORPUS_DIR = DATA_DIR / "measurements"

# Published names -> conf/hardware, conf/model, conf/engine names.
GPUS = {"H100-SXM-80GB": "h100_sxm", "H100-80GB": "h100_sxm", "A100-80GB": "a100_80gb",
        "A100-SXM4-80GB": "a100_80gb", "H200-SXM-141GB": "h200_sxm",
        "H200-141GB (form factor not stated)": "h200_sxm"}
MODELS = {"Llama-2-7B": "llama2_7b", "Llama-2-70B": "llama2_70b", "Llama-3-70B": "llama3_70b",
          "Llama-3.1-70B": "llama31_70b", "Llama-3.1-70B-Instruct": "llama31_70b", "Llama-3.1-8B": "llama31_8b",
          "Llama-3.1-8B-Instruct": "llama31_8b", "Llama-3.1-405B": "llama31_405b", "Mistral-7B": "mistral_7b",
          "Mixtral-8x7B": "mixtral_8x7b", "Mixtral-8x22B": "mixtral_8x22b",
          "DeepSeek-V3 (671B MoE)": "deepseek_v3",
          # Lambda's vLLM 0.5.4 sweep (checkpoint names; v0.3's 32,768-token vocabulary is 2 % more LM head than v0.1's)
          "Mistral-7B-Instruct-v0.3": "mistral_7b", "Mixtral-8x7B-Instruct-v0.1": "mixtral_8x7b",
          "Mixtral-8x22B-Instruct-v0.1": "mixtral_8x22b", "Meta-Llama-3.1-8B-FP8": "llama31_8b",
          "Meta-Llama-3.1-70B-Instruct-FP8": "llama31_70b", "Hermes-3-Llama-3.1-405B-FP8": "llama31_405b"}
UNMODELLED = {"GPT-J-6B": "GPT-J's parallel attention and non-gated GELU MLP are not modelled",
              "Falcon-180B": "Falcon's parallel attention and non-gated GELU MLP are not modelled"}
ENGINES = {"TensorRT-LLM": "trtllm", "SGLang": "sglang", "vLLM": "vllm"}
# metric -> the error bucket of the summary line
BUCKETS = {"ttft_ms": "prefill", "output_tokens_per_s": "decode", "serving_ttft_ms": "serving_ttft",
           "serving_itl_ms": "serving_itl", "static_e2e_ms": "decode", "decode_tokens_per_s": "decode",
           "decode_step_ms": "decode", "tpot_ms": "serving_itl", "closed_ttft_ms": "serving_ttft", "kernel_ms": "kernel"}


# NCCL over TCP sockets between nodes (issue 18). sglang_benchmark_dsv3's README runs every server in
# `docker run --gpus all --net host --ipc=host ...` with no /dev/infiniband device (nor --privileged): NCCL in the
# container cannot open the InfiniBand verbs devices and falls back to its socket transport over the host's IP network
# (the launch's --dist-init-addr 192.168.114.10), whatever the nodes' 400 Gbps InfiniBand. Its signature in the rows:
# the two-node output throughput is flat at 250-290 tok/s from 1 to 8 req/s, BF16 and FP8 alike (the one-node runs
# reach 640-2,864), and the step time grows with the batch (639 ms at ~176 sequences, 1,192 ms at ~305: ~3.7 ms per
# sequence), as a bandwidth-bound all-reduce does. The effective bandwidth is FITTED on one stated row, line 10 (BF16,
# 1 req/s, median ITL 638.7 ms; bisection of the simulated ITL): 2.78 GB/s per direction (22 Gb/s, a socket
# transport's rate). Scored on the other seven two-node rows (docs/fidelity.md); line 10 itself is in sample.
NCCL_SOCKET_GB_S = 2.78
# A burst's output throughput (all prompts at once, tokens / makespan) is predicted only from this many prompts up. A
# burst ends with its longest answers decoding nearly alone: with ShareGPT's lengths (answers up to ~2,000 tokens) the
# drain of one such answer is ~13 s of an 8B's batch-1 steps, most of a 320-prompt burst's ~19 s and 6 % of a
# 5,000-prompt one's ~230 s; the tail of the distribution, whose spread is not published (cv assumed), then sets the
# number. Chosen after seeing Lambda's 320-prompt bursts come out 40-200 % fast in throughput while their ITL holds
# (docs/fidelity.md, issue 18); their ITL is still predicted.
BURST_THROUGHPUT_MIN_PROMPTS = 1000
NCCL_SOCKET_SOURCES = frozenset({"sglang_benchmark_dsv3"})


COLUMNS = ("source", "engine", "engine_version", "gpu", "tp", "pp", "model", "precision", "kind", "batch_size",
           "request_rate", "input_tokens", "output_tokens", "ttft_ms", "itl_ms", "output_tokens_per_s", "notes")


def _precision(text: str) -> tuple[str, str]:
    text = text.upper()
    if text.startswith("FP8"):  # every FP8 row of the corpus quantises the KV cache too (SOURCES.md)
        return "fp8", "fp8"
    if "DEEPSEEK-V3 CHECKPOINT WITHOUT A --QUANTIZATION FLAG" in text:
        # Labelled 'BF16' by the source, but that checkpoint ships FP8 block-quantised weights (SOURCES.md, 6);
        # without --kv-cache-dtype the KV cache stays BF16.
        return "fp8", "bf16"
    if text.startswith(("FP16", "BF16")):
        return "bf16", "bf16"
    raise NotPredictable(f"precision {text!r} is not modelled")


def _num(value) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    return float(value)


def _row(source: str, line: int, r: pd.Series) -> CorpusRow:
    engine_name = str(r["engine"]).split(" (")[0]
    if engine_name not in ENGINES:
        raise NotPredictable(f"engine {r['engine']!r} has no profile")
    isl, osl = _num(r["input_tokens"]), _num(r["output_tokens"])
    notes = str(r.get("notes", ""))
    dataset = ""
    if (isl is None or osl is None) and "sharegpt" in notes.lower() and str(r["kind"]) in ("serving",
                                                                                           "offline_throughput"):
        # Issue 18: lengths from a dataset with published statistics are drawn from it (sim.fidelity.length_datasets)
        dataset = SHAREGPT.name
        isl, osl = round(SHAREGPT.mean_input_tokens), round(SHAREGPT.mean_output_tokens)
        totals = re.search(r"total_input_tokens (\d+), total_output_tokens (\d+)", notes)
        sent = re.search(r"--num-prompts (\d+)", notes)
        if totals and sent:  # the run's own sample means (Lambda's result JSONs): the draws keep them
            isl, osl = round(int(totals.group(1)) / int(sent.group(1))), round(int(totals.group(2)) / int(sent.group(1)))
    if isl is None or osl is None:
        if "total_input_tokens" in notes:
            raise NotPredictable("a dataset's variable lengths: only the run's totals are shipped, and a burst's "
                                 "time depends on its longest requests")
        raise NotPredictable("no fixed input/output lengths (a dataset's length distribution)")
    tp, pp = _num(r["tp"]), _num(r["pp"])
    if tp is None or pp is None:
        raise NotPredictable("parallelism (tp/pp) not given by the source")
    if str(r["model"]) in UNMODELLED:
        raise NotPredictable(UNMODELLED[str(r["model"])])
    model = MODELS.get(str(r["model"]))
    if model is None:
        raise NotPredictable(f"model {r['model']!r} is not in conf/model")
    gpu = GPUS.get(str(r["gpu"]))
    if gpu is None:
        raise NotPredictable(f"GPU {r['gpu']!r} has no conf/hardware spec")
    weights, kv = _precision(str(r["precision"]))
    if dataset and weights == "fp8" and gpu.startswith("a100"):
        raise NotPredictable("vLLM runs FP8 checkpoints on Ampere as weight-only FP8 (Marlin W8A16, BF16 compute); "
                             "the model's A100 'fp8' is W8A8 at the INT8 rate")
    kind = str(r["kind"])
    batch = _num(r["batch_size"])
    rate = _num(r["request_rate"])
    measured: list[tuple[str, float]] = []
    scheduler_steps = 1
    if kind == "iteration":
        if _num(r["ttft_ms"]) is None:
            raise NotPredictable("iteration row without ttft_ms")
        measured.append(("ttft_ms", float(r["ttft_ms"])))
        row_kind = "iteration"
    elif kind == "offline_throughput":
        if _num(r["output_tokens_per_s"]) is None:
            raise NotPredictable("offline row without output_tokens_per_s")
        measured.append(("output_tokens_per_s", float(r["output_tokens_per_s"])))
        row_kind = "static_throughput" if "static batching" in notes else "inflight_throughput"
        if dataset:  # every prompt sent at once: the serving simulation, throughput = output tokens / makespan
            row_kind = "serving"
            sent = re.search(r"(\d+) prompts|--num-prompts (\d+)", notes)
            if sent and int(next(g for g in sent.groups() if g)) < BURST_THROUGHPUT_MIN_PROMPTS:
                measured.clear()  # the makespan is the drain of the longest answers: see BURST_THROUGHPUT_MIN_PROMPTS
            if _num(r["itl_ms"]) is not None:  # Lambda's runs: median ITL of the 320-prompt table, mean in the JSONs
                measured.append(("serving_itl_ms", float(r["itl_ms"])))
            if not measured:
                raise NotPredictable(f"a burst of fewer than {BURST_THROUGHPUT_MIN_PROMPTS} prompts: its throughput "
                                     "is set by the drain of its longest answers, the tail of a length distribution "
                                     "whose spread is not published")
        if row_kind == "static_throughput" and batch is None:
            raise NotPredictable("static-batching row without batch size")
    elif kind == "serving":
        # vLLM's multi-step scheduling (--num-scheduler-steps) streams tokens in chunks: its ITL is the gap between
        # chunks, so its per-token latency is read from TPOT instead.
        multi_step = re.search(r"--num-scheduler-steps (\d+)", notes) if engine_name == "vLLM" else None
        scheduler_steps = int(multi_step.group(1)) if multi_step else 1
        itl = ("tpot_ms", "tpot_ms") if multi_step else ("itl_ms", "serving_itl_ms")
        for col, metric in (("ttft_ms", "serving_ttft_ms"), itl):
            if _num(r[col]) is not None:
                measured.append((metric, float(r[col])))
        if not measured or not ("MEANS" in notes.upper() or "MEDIANS" in notes.upper()):
            raise NotPredictable("serving row without mean or median TTFT/ITL")
        row_kind = "serving"
    else:
        raise NotPredictable(f"unknown kind {kind!r}")
    # The source's two-node runs went over TCP sockets, not InfiniBand verbs (NCCL_SOCKET_GB_S)
    inter_node = NCCL_SOCKET_GB_S if source in NCCL_SOCKET_SOURCES and "--nnodes" in notes else None
    # "N prompts" is read only for dataset rows (sglang.bench_serving's notes), so no earlier row's count moves
    found = re.search(r"(\d+) requests|--num-prompts? (\d+)" + (r"|(\d+) prompts" if dataset else ""), notes)
    prompts = int(next(g for g in found.groups() if g)) if found else 200
    return CorpusRow(source=source, line=line, engine=ENGINES[engine_name], engine_version=str(r["engine_version"]),
                     gpu=gpu, model=model, weights=weights, kv=kv, tp=int(tp), pp=int(pp), kind=row_kind,
                     batch_size=int(batch) if batch else 1, input_tokens=int(isl), output_tokens=int(osl),
                     request_rate=rate if rate and math.isfinite(rate) else None, num_prompts=prompts,
                     measured=tuple(measured), statistic=_statistic(notes),
                     cuda_graphs="--disable-cuda-graph" not in notes, dp_attention="--enable-dp-attention" in notes,
                     length_dataset=dataset, scheduler_steps=scheduler_steps, inter_node_gb_s=inter_node)


def _statistic(notes: str) -> str:
    """Whether the row's serving latencies are medians or means, as its notes say."""
    text = notes.upper()
    if "COLUMNS ARE MEANS" in text:
        return "mean"
    return "median" if "MEDIANS" in text or "MEDIAN ITL" in text else "mean"


def corpus_files(corpus_dir: Path) -> list[Path]:
    """The corpus CSVs, plain or gzipped; a source is named by its file name up to the first dot."""
    return sorted(list(corpus_dir.glob("*.csv")) + list(corpus_dir.glob("*.csv.gz")))


def source_name(path: Path) -> str:
    return path.name.split(".")[0]


def load_corpus(corpus_dir: Path = CORPUS_DIR) -> tuple[list[CorpusRow], list[dict]]:
    """(predictable rows, skipped rows with their reason), over every CSV of the corpus directory."""
    if not corpus_dir.is_dir():
        raise DataError(f"{corpus_dir}: corpus directory not found; expected data/measurements with its CSVs")
    files = corpus_files(corpus_dir)
    if not files:
        raise DataError(f"{corpus_dir}: no CSV files in the corpus directory")
    rows, skipped = [], []
    for path in files:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
        if "metric" in frame.columns:  # one metric per row (SOURCES-engines.md, SOURCES-moe.md)
            missing = [c for c in LONG_COLUMNS if c not in frame.columns]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; a long-format corpus CSV has the columns "
                                f"{', '.join(LONG_COLUMNS)}")
            got, left = long_rows(path, frame)
            rows.extend(got)
            skipped.extend(left)
            continue
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; a corpus CSV has the columns of "
                            f"data/measurements/SOURCES.md: {', '.join(COLUMNS)}")
        for i, (_, rec) in enumerate(frame.iterrows()):
            try:
                rows.append(_row(source_name(path), i + 2, rec))
            except NotPredictable as exc:
                skipped.append({"source": source_name(path), "line": i + 2, "model": rec.get("model", ""),
                                "kind": rec.get("kind", ""), "reason": str(exc)})
    return rows, skipped


# ---- prediction ----------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _specs(model: str, gpu: str):
    return load_model(model), load_gpu(gpu)  # each load parses YAML; a calibration asks thousands of times


@lru_cache(maxsize=None)
def _ib_cluster():
    from sim.spec.hardware import load_cluster
    return load_cluster()  # only its InfiniBand numbers are used, for rows whose TP group spans nodes


def replica_cost(row: CorpusRow, engine: EngineProfile) -> ReplicaCostModel:
    model, gpu = _specs(row.model, row.gpu)
    return build_replica_cost(model, gpu, row.tp, row.pp, row.weights, row.kv, engine=engine, ep=row.ep,
                              dp_attention=row.dp_attention, mtp_draft_tokens=row.mtp_draft_tokens,
                              tp_spans_nodes=row.tp_spans_nodes,
                              cluster=_ib_cluster() if row.tp_spans_nodes else None,
                              **({"gpu_memory_utilization": row.gpu_memory_utilization}
                                 if row.gpu_memory_utilization is not None else {}))


def static_batch_time_s(cost: ReplicaCostModel, batch: int, input_tokens: int, output_tokens: int) -> float:
    """One context phase of the whole batch, then output_tokens - 1 decode steps with growing context (exact sum
    through decode_affine: step j costs a + b x batch x (input + j))."""
    prefill = cost.iteration_time_s(BatchShape(prefill_tokens=batch * input_tokens,
                                               prefill_attn_pairs=batch * input_tokens * (input_tokens + 1) / 2.0,
                                               num_prefill_seqs=batch))
    steps = output_tokens - 1
    a, b = cost.decode_affine(batch)
    return prefill + steps * a + b * batch * (steps * input_tokens + steps * (steps + 1) / 2.0)


def inflight_decode_batch(cost: ReplicaCostModel, input_tokens: int, output_tokens: int) -> int:
    """Sequences decoding per iteration in an infinite-rate in-flight-batching steady state (see module doc)."""
    per_request_blocks = -(-(input_tokens + output_tokens) // cost.kv_block_size)
    by_kv = cost.kv_capacity_blocks // per_request_blocks
    budget = cost.engine.max_num_batched_tokens
    by_budget = budget * output_tokens // (input_tokens + output_tokens)
    return int(min(cost.engine.max_num_seqs, by_kv, max(1, by_budget)))


def inflight_throughput(cost: ReplicaCostModel, input_tokens: int, output_tokens: int) -> float:
    decode = inflight_decode_batch(cost, input_tokens, output_tokens)
    new_per_iter = decode / output_tokens  # requests finishing (and starting) per iteration
    shape = BatchShape(prefill_tokens=int(round(new_per_iter * input_tokens)),
                       prefill_attn_pairs=new_per_iter * input_tokens * (input_tokens + 1) / 2.0,
                       num_prefill_seqs=max(1, int(math.ceil(new_per_iter))),
                       decode_seqs=decode, decode_ctx_tokens=int(round(decode * (input_tokens + output_tokens / 2.0))))
    return decode / cost.iteration_time_s(shape)


def check_fits(row: CorpusRow, cost: ReplicaCostModel) -> None:
    """Rows whose KV cannot be held are flagged, not predicted (the engine could not have run them as stated)."""
    per_seq = -(-(row.input_tokens + row.output_tokens) // cost.kv_block_size)
    seqs = row.batch_size if row.kind in ("iteration", "static_throughput", "static_latency", "decode_step") else 1
    if row.kind == "closed_loop":
        return  # the benchmark client waits for KV room; the simulation queues the rest
    if seqs * per_seq > cost.kv_capacity_blocks:
        raise NotPredictable(f"KV does not fit: {seqs} x {row.input_tokens + row.output_tokens} tokens need "
                             f"{seqs * per_seq * cost.kv_block_size} KV tokens, the model has "
                             f"{cost.kv_capacity_tokens} on TP{row.tp} x PP{row.pp}")


def serving_sim_overrides(engine: EngineProfile) -> dict:
    """The simulator's batching settings that reproduce the engine's defaults."""
    if engine.chunked_prefill:
        return {"batching": "sarathi", "chunk_tokens": engine.max_num_batched_tokens, "max_num_seqs": engine.max_num_seqs}
    return {"max_batched_tokens": engine.max_num_batched_tokens, "max_num_seqs": engine.max_num_seqs}


# SGLang 0.4.0-0.4.1 (December 2024, the first DeepSeek-V3 release: Triton fused MoE for block-wise FP8, Triton MLA
# decode attention; FlashInfer MLA, FlashMLA and DeepGEMM came in 0.4.3-0.4.5).
SGLANG_041 = re.compile(r"^0\.4\.[01]\b")
# Its GPU time per layer that does not grow with the batch (the profile's layer_overhead_graph_us, x TP^0.35; 0.5's
# is 18 us). FITTED on another source than the one it is scored on: sglang PR #2643 (v0.4.1.post2, DeepSeek-V3 FP8,
# TP8, CUDA graphs, 128 in / 256 out, batch 1 / 8 / 32: 33.0 / 38.8 / 42.1 ms per step; community_issues_and_vllm_blog
# lines 12, 14, 16, unscored there because the excerpt does not name the GPU: H200 assumed, the release's tuning
# target), least squares on relative error: 202 us (residuals 0, -6, +6 %). sglang_benchmark_dsv3 is held out from it.
SGLANG_041_LAYER_GAP_US = 202.0


def sglang_dp_attention_041(row: CorpusRow, eng: EngineProfile) -> EngineProfile:
    """The engine as SGLang 0.4.0-0.4.1 runs it: its per-layer GPU time (SGLANG_041_LAYER_GAP_US) and, with
    --enable-dp-attention, its ServerArgs.__post_init__ rules: dp_size = tp_size, chunked_prefill_size halved ("to
    avoid MoE kernel issues"), cuda_graph_max_bs capped at 96 and disable_overlap_schedule = True, so the scheduler's
    CPU work runs serialised with the GPU (EngineProfile.without_overlap_scheduler). Other rows: the engine unchanged."""
    if not (row.engine == "sglang" and SGLANG_041.match(row.engine_version)):
        return eng
    eng = replace(eng, layer_overhead_graph_us=SGLANG_041_LAYER_GAP_US)
    if not row.dp_attention:
        return eng
    return replace(eng.without_overlap_scheduler(), max_num_batched_tokens=eng.max_num_batched_tokens // 2,
                   cuda_graph_max_seqs=min(eng.cuda_graph_max_seqs, 96))


def predict_row(row: CorpusRow, engine: str | EngineProfile, *, with_serving: bool = True) -> dict[str, float]:
    """Predicted value of each measured metric of the row. Raises NotPredictable (KV does not fit, deployment does
    not fit, serving simulation unavailable or skipped)."""
    eng = sglang_dp_attention_041(row, resolve_engine(engine))
    if row.adp_hold_iters:
        # TensorRT-LLM's attention_dp_config enable_balance: context requests are balanced over the DP ranks, not run
        # on one rank alone. Chosen after seeing InferenceX's 8k/1k attention-DP TPOT (conc 64 / 256: measured within
        # 5 / 6 % of balanced prefills, 31 / 69 % below a busiest rank prefilling alone); docs/fidelity.md, issue 18.
        eng = replace(eng, dp_prefill_balanced=True)
    if row.max_num_batched_tokens:
        eng = replace(eng, max_num_batched_tokens=row.max_num_batched_tokens)
    if not row.cuda_graphs:
        eng = replace(eng, cuda_graph_max_seqs=0)
    if row.allreduce and row.allreduce != eng.allreduce_algorithm:
        eng = replace(eng, allreduce_algorithm=row.allreduce)
    if row.kind.startswith("kernel_"):
        return {"kernel_ms": kernel_time_ms(row, eng, *_specs(row.model, row.gpu))}
    try:
        cost = replica_cost(row, eng)
    except UserError as exc:
        raise NotPredictable(str(exc)) from None
    check_fits(row, cost)
    if row.kind == "static_latency":
        return {"static_e2e_ms": static_batch_time_s(cost, row.batch_size, row.input_tokens, row.output_tokens) * 1e3}
    if row.kind == "decode_rate":
        return {"decode_tokens_per_s": 1.0 / decode_step_time_s(cost, 1, row.input_tokens + row.output_tokens / 2.0)}
    if row.kind == "decode_step":
        ctx = row.input_tokens + row.output_tokens / 2.0
        return {"decode_step_ms": decode_step_time_s(cost, row.batch_size, ctx) * 1e3}
    if row.kind == "iteration":
        return {"ttft_ms": batch_prefill_time_s(cost, row.batch_size, row.input_tokens) * 1e3}
    if row.kind == "static_throughput":
        t = static_batch_time_s(cost, row.batch_size, row.input_tokens, row.output_tokens)
        return {"output_tokens_per_s": row.batch_size * row.output_tokens / t}
    if row.kind == "inflight_throughput":
        return {"output_tokens_per_s": inflight_throughput(cost, row.input_tokens, row.output_tokens)}
    if not with_serving:
        raise NotPredictable("serving rows are not simulated in this pass")
    try:
        from sim.fidelity.serving import ServingBench
    except ImportError:
        raise NotPredictable("serving simulation (sim.fidelity.serving) is not available in this build") from None
    closed = row.kind == "closed_loop"
    bench = ServingBench(model=row.model, input_tokens=row.input_tokens, output_tokens=row.output_tokens,
                         gpu=row.gpu, tp=row.tp, pp=row.pp, weights=row.weights, kv=row.kv,
                         concurrency=row.batch_size if closed else None,
                         request_rate=row.request_rate, num_prompts=row.num_prompts, ep=row.ep,
                         dp_attention=row.dp_attention, mtp_draft_tokens=row.mtp_draft_tokens,
                         **({"inter_node_gb_s": row.inter_node_gb_s} if row.inter_node_gb_s is not None else {}))
    out = _simulate(bench, eng, *drawn_lengths(row), memory=row.gpu_memory_utilization)
    stat = row.statistic
    if closed:  # a closed-loop benchmark's per-token latency is its TPOT (InferenceX: ITL is per streamed chunk)
        ttft_ms, tpot_ms = float(out[f"ttft_ms_{stat}"]), float(out[f"tpot_ms_{stat}"])
        return {"closed_ttft_ms": ttft_ms + adp_hold_ms(row, tpot_ms, cost.mtp_tokens_per_step)
                + mtp_step_wait_ms(row, tpot_ms, cost.mtp_tokens_per_step), "tpot_ms": tpot_ms}
    tpot_ms = float(out[f"tpot_ms_{stat}"])
    return {"serving_ttft_ms": float(out[f"ttft_ms_{stat}"]) + multi_step_wait_ms(row, tpot_ms),
            "serving_itl_ms": float(out[f"itl_ms_{stat}"]), "tpot_ms": tpot_ms,
            "output_tokens_per_s": float(out["output_tokens_per_s"])}


def multi_step_wait_ms(row: CorpusRow, tpot_ms: float) -> float:
    """vLLM 0.6's multi-step scheduling (--num-scheduler-steps n): the scheduler runs once per n decode steps, so a
    request arriving during a run waits for its end before its prefill is scheduled (0.6.0 runs no prefill inside a
    multi-step run: multi-step with chunked prefill came later). Arrivals are Poisson, so the arrival falls at a
    uniform phase of the run: the wait is uniform on [0, n steps], mean and median n / 2 steps of one decode step
    (the TPOT). Not simulated: added to the simulated single-step TTFT (mean and median alike); 0 for n = 1."""
    return (row.scheduler_steps / 2.0) * tpot_ms if row.scheduler_steps > 1 else 0.0


def adp_hold_ms(row: CorpusRow, tpot_ms: float, tokens_per_step: float) -> float:
    """TensorRT-LLM's attention-DP balance hold (PyExecutor._balance_adp_requests, attention_dp_config enable_balance):
    while the DP ranks have generation work, new context requests wait until every rank has one or until the
    engine's wait counter reaches timeout_iters; the counter counts every iteration since the last release, so a
    request arriving at a random phase waits timeout_iters / 2 iterations on average and at the median. At a
    closed-loop benchmark's arrival rates (a few requests per hundred iterations) the eight ranks never all fill
    first. Iteration time = TPOT x tokens per step (MTP emits more than one). Not simulated: added to the predicted
    TTFT.

    Where a release lets each rank prefill only one prompt (row.adp_prompts_per_release == 1: the launch's per-rank
    --max_num_tokens holds one prompt, not two), a second context request on the same rank is held again after the
    release (the counter restarts at 0 and the rank is again the only one with a context), so it waits for the next
    release, a whole timeout later (issue 18, branch ttft18c). Each rank is then a queue served once per release:
    release_wait_slots, with rho = the rank's arrivals per timeout (its concurrency / DP ranks over a request's
    lifetime in iterations). At rho >= 1 the ranks fill and the every-rank release takes over: not modelled, the
    plain half-timeout is kept."""
    if not row.adp_hold_iters:
        return 0.0
    iteration_ms = tpot_ms * tokens_per_step
    slots = 0.5
    if row.adp_prompts_per_release == 1:
        per_rank = row.batch_size / row.tp
        decode_iters = (1.0 + row.length_ratio) / 2.0 * row.output_tokens / tokens_per_step
        for _ in range(50):  # the lifetime includes the hold itself: a fixed point, reached in a few steps
            rho = per_rank * row.adp_hold_iters / (decode_iters + slots * row.adp_hold_iters)
            if rho >= 1.0:
                slots = 0.5
                break
            new = release_wait_slots(rho, row.statistic)
            if abs(new - slots) < 1e-9:
                break
            slots = new
    return slots * row.adp_hold_iters * iteration_ms


@lru_cache(maxsize=4096)
def release_wait_slots(rho: float, statistic: str = "mean") -> float:
    """Wait, in release periods, of a request arriving at a random time at a server that serves one waiting request
    at each period's end, with Poisson arrivals of rho per period (rho < 1). It finds Q requests left at the last
    release and B ~ Poisson(rho u) arrived earlier in this period (u: the elapsed fraction), and is served Q + B
    releases after the next: wait = (1 - u) + Q + B. Q's stationary law solves Q' = max(Q + A - 1, 0), A ~ Poisson(rho).
    The mean is 1/2 + rho / (2 (1 - rho)) (0.5 at rho -> 0: the plain uniform phase); the median is found on the
    law. Tested against a simulation of the queue."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    if statistic == "mean":
        return 0.5 + rho / (2.0 * (1.0 - rho))
    n = 200
    arrivals = poisson.pmf(np.arange(n), rho)
    q = np.zeros(n)
    q[0] = 1.0
    for _ in range(5000):
        total = np.convolve(q, arrivals)[:n]  # Q + A
        nxt = np.zeros(n)
        nxt[0] = total[0] + total[1]
        nxt[1:n - 1] = total[2:n]
        if np.abs(nxt - q).max() < 1e-13:
            q = nxt
            break
        q = nxt
    us = (np.arange(2000) + 0.5) / 2000.0
    b = poisson.pmf(np.arange(n)[None, :], rho * us[:, None])  # B's law at each phase u
    cum = np.cumsum(np.clip(fftconvolve(q[None, :], b, axes=1)[:, :n], 0.0, None), axis=1)  # law of Q + B

    def cdf(w: float) -> float:
        j = np.floor(w - (1.0 - us)).astype(int)  # Q + B <= w - (1 - u)
        ok = j >= 0
        return float(cum[ok, np.minimum(j[ok], n - 1)].sum() / len(us))

    lo, hi = 0.0, 1.0
    while cdf(hi) < 0.5:
        hi *= 2.0
    for _ in range(40):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if cdf(mid) < 0.5 else (lo, mid)
    return (lo + hi) / 2.0


def mtp_step_wait_ms(row: CorpusRow, tpot_ms: float, tokens_per_step: float) -> float:
    """Multi-token prediction's longer wait for the running step (issue 18, branch ttft18c). An engine with MTP runs
    one verification step per forward (SGLang's EAGLE worker: draft, verify, accept; TensorRT-LLM's MTP: one
    iteration per py_decoding_iter), which emits tokens_per_step tokens per sequence; a new request joins at the next
    step boundary. The simulator charges an MTP decode as one iteration per emitted token (the step's time divided
    by the tokens it emits, ReplicaCostModel._mtp_decode_affine), so the wait its closed loop charges, one iteration
    (the client's next request arrives just after a boundary: sim.fidelity.clients.BenchmarkClient.on_finish), is
    one TPOT, where the engine makes the request wait one whole step, tokens_per_step TPOTs. The difference is added
    to the predicted TTFT of closed-loop rows: (tokens_per_step - 1) x TPOT; 0 without MTP. Not simulated (the
    runtime's iterations stay per token, so decode timing is unchanged)."""
    if not row.mtp_draft_tokens or row.kind != "closed_loop":
        return 0.0
    return (tokens_per_step - 1.0) * tpot_ms


@lru_cache(maxsize=4096)
def _simulate(bench, eng: EngineProfile, input_lens: tuple[int, ...], output_lens: tuple[int, ...],
              memory: float | None = None) -> dict:
    """One simulated benchmark run, shared by the rows that report its metrics (TTFT and TPOT rows of one run);
    memory: the server's memory fraction where the source states it."""
    from sim.fidelity.serving import simulate_serving

    sim = serving_sim_overrides(eng)
    if memory is not None:
        sim = {**sim, "gpu_memory_utilization": memory}
    return simulate_serving(bench, engine=eng, seed=0, sim=sim, input_lens=input_lens,
                            output_lens=output_lens)


LENGTH_SEED = 18  # the draws of a run come from (LENGTH_SEED, its lengths, concurrency and prompts): fixed per run


def drawn_lengths(row: CorpusRow) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input, output) lengths of the row's requests: fixed, or drawn uniformly in [ratio x L, L] (a benchmark's
    random dataset with --random-range-ratio; InferenceX uses 0.8)."""
    import numpy as np

    n = max(1, row.num_prompts)
    if row.length_dataset:  # the dataset's spread and filter around the row's means (published or the run's own)
        ds = replace(dataset_named(row.length_dataset), mean_input_tokens=float(row.input_tokens),
                     mean_output_tokens=float(row.output_tokens))
        rng = np.random.default_rng(np.random.SeedSequence([LENGTH_SEED, n]))
        return draw_lengths(ds, n, rng)
    if row.length_ratio >= 1.0:
        return (row.input_tokens,) * n, (row.output_tokens,) * n
    rng = np.random.default_rng(np.random.SeedSequence([LENGTH_SEED, row.input_tokens, row.output_tokens,
                                                        row.batch_size, n]))
    isl = rng.integers(int(row.length_ratio * row.input_tokens), row.input_tokens + 1, size=n)
    osl = rng.integers(int(row.length_ratio * row.output_tokens), row.output_tokens + 1, size=n)
    return tuple(int(x) for x in isl), tuple(int(x) for x in osl)
