"""The long-format corpus files (one metric per row: data/measurements/SOURCES-engines.md and SOURCES-moe.md) mapped
onto the cost model: each row becomes a CorpusRow or a skipped entry with its reason.

Each source has its own reader, because each measured something different (a static batch's end-to-end latency, a
batch-1 decode rate, a closed-loop benchmark's median TPOT, a kernel's time). Rows that repeat a measurement of the
same run (a throughput that is the published latency inverted, a DERIVED column, a percentile beside the median)
are listed as duplicates, so a run weighs once. Engine names map to conf/engine profiles by era; GPU and model
names to conf/hardware and conf/model.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from sim.fidelity.corpus_rows import CorpusRow, NotPredictable
# Long-format files carry these columns (the MoE files name the batch column batch_size_or_concurrency).
LONG_COLUMNS = ("source", "engine", "engine_version", "gpu", "model", "precision", "tp", "input_tokens",
                "output_tokens", "metric", "value", "unit", "notes")

GPU_PREFIXES = (("A100-SXM4 (ALCF Polaris", "a100_40gb"), ("A100-SXM4-80GB", "a100_80gb"),
                ("A100-80GB", "a100_80gb"), ("A100-PCIe", "a100_pcie"), ("H100-80GB-HBM3", "h100_sxm"),
                ("H100-SXM-80GB", "h100_sxm"), ("H100-80GB", "h100_sxm"), ("H100 DGX", "h100_sxm"),
                ("GH200", "gh200"), ("H200-SXM-141GB", "h200_sxm"), ("H800-SXM", "h800_sxm"), ("H100", "h100_sxm"))
MODELS = {
    "meta-llama/Llama-2-7b-hf": "llama2_7b", "meta-llama/Llama-2-7b": "llama2_7b", "Llama-2-7B": "llama2_7b",
    # LLaMA-1 7B has Llama-2-7B's architecture (32 layers, 4096 wide, MHA, 11008 MLP); only its context is shorter.
    "huggyllama/llama-7b": "llama2_7b",
    "meta-llama/Llama-2-13b": "llama2_13b", "mistralai/Mistral-7B-v0.1": "mistral_7b",
    "meta-llama/Meta-Llama-3-8B": "llama3_8b", "Llama-3.1-8B": "llama31_8b",
    "meta-llama/Llama-2-70b-hf": "llama2_70b", "meta-llama/Llama-2-70b": "llama2_70b", "Llama-2-70B": "llama2_70b",
    "Llama 70B (Llama-2-70b per PR text 'Llama 70B')": "llama2_70b", "Llama-3.1-70B": "llama31_70b",
    "meta-llama/Meta-Llama-3-70B": "llama3_70b", "mistralai/Mixtral-8x7B-v0.1": "mixtral_8x7b",
    "CodeLlama-34B": "codellama_34b", "codellama/CodeLlama-34b-Instruct-hf": "codellama_34b",
    # R1-0528 and V3 share the architecture (MLA, 256 routed experts, top-8, 3 dense layers, MTP module).
    "DeepSeek-R1-0528 (InferenceX 'dsr1')": "deepseek_v3", "DeepSeek-R1-0528": "deepseek_v3",
    "DeepSeek-R1": "deepseek_v3", "DeepSeek-V3": "deepseek_v3",
}
UNMODELLED = {
    "facebook/opt": "OPT's learned positions and non-gated ReLU MLP are not modelled (conf/model has no OPT)",
    "EleutherAI/gpt-j": "GPT-J's parallel attention and non-gated GELU MLP are not modelled",
    "bigscience/bloom": "BLOOM's ALiBi attention and non-gated GELU MLP are not modelled",
    "Qwen/Qwen2": "Qwen2 (QKV bias, its own widths) is not in conf/model",
    "Deci/DeciLM": "DeciLM's variable GQA per layer is not modelled", "BAAI/Aquila": "Aquila is not in conf/model",
    "internlm/internlm": "InternLM is not in conf/model", "databricks/dbrx": "DBRX is not in conf/model",
    "DeepSeek-V3.2": "DeepSeek-V3.2's sparse DSA attention is not V3's MLA cost",
    "Qwen3": "Qwen3-235B-A22B is not in conf/model", "Llama-4": "Llama-4-Maverick is not in conf/model",
    "Mixtral-8x7B-Instruct": "MLPerf Mixtral: the dataset's input lengths are not in the logs",
    "DeepSeek-V2": "DeepSeek-V2 is not in conf/model", "DeepSeek-Coder": "DeepSeek-Coder-V2 is not in conf/model",
    "Meta-Llama-3-8B (dense": "a reference point of an issue excerpt without the run's lengths",
}


def hardware_gpu(text: str) -> str:
    """The conf/hardware GPU name of a corpus row's GPU text (NotPredictable where none is specified)."""
    for prefix, name in GPU_PREFIXES:
        if text.startswith(prefix):
            return name
    raise NotPredictable(f"GPU {text!r} has no conf/hardware spec")


def _model(text: str) -> str:
    for prefix, reason in UNMODELLED.items():
        if text.startswith(prefix):
            raise NotPredictable(reason)
    if text not in MODELS:
        raise NotPredictable(f"model {text!r} is not in conf/model")
    return MODELS[text]


def _int(value, what: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise NotPredictable(f"{what} not given as a number ({value!r})") from None
    if not math.isfinite(number) or number < 1 or number != int(number):
        raise NotPredictable(f"{what} not given as a positive integer ({value!r})")
    return int(number)


def _value(r: pd.Series) -> float:
    value = float(r["value"])
    unit = str(r["unit"])
    if unit == "s":
        value *= 1e3
    return value


def _base(stem: str, line: int, r: pd.Series, engine: str, **kw) -> CorpusRow:
    """A CorpusRow with the fields every long-format row shares; kw sets the rest."""
    fields = dict(source=stem, line=line, engine=engine, engine_version=str(r["engine_version"]),
                  gpu=hardware_gpu(str(r["gpu"])), model=_model(str(r["model"])), weights="bf16", kv="bf16",
                  tp=_int(r["tp"], "tp"), pp=1, kind="", batch_size=1, input_tokens=_int(r["input_tokens"], "input"),
                  output_tokens=_int(r["output_tokens"], "output"), request_rate=None, num_prompts=0, measured=())
    fields.update(kw)
    return CorpusRow(**fields)


# ---- per-source readers ----------------------------------------------------------------------------
def _argonne(stem: str, line: int, r: pd.Series) -> CorpusRow:
    metric = str(r["metric"])
    if metric in ("total_token_throughput", "derived_e2e_ms_per_output_step"):
        raise NotPredictable("the same run's e2e_batch_latency restated (B(in+out)/latency, or latency/out)")
    engine = {"vLLM": "vllm", "TensorRT-LLM": "trtllm"}.get(str(r["engine"]))
    if engine is None:
        raise NotPredictable(f"engine {r['engine']!r} has no profile")
    batch = _int(r["batch_size"], "batch")
    if str(r["model"]) == "huggyllama/llama-7b" and _int(r["input_tokens"], "input") * 2 > 2048:
        raise NotPredictable("input + output exceed LLaMA-1's 2048-token context: the engine stopped early "
                             "(47 ms for 2048 output tokens)")
    if metric == "ttft_batch":
        return _base(stem, line, r, engine, kind="iteration", batch_size=batch, measured=(("ttft_ms", _value(r)),))
    if metric == "e2e_batch_latency":
        return _base(stem, line, r, engine, kind="static_latency", batch_size=batch,
                     measured=(("static_e2e_ms", _value(r)),))
    raise NotPredictable(f"metric {metric!r} is not predicted")


def _gpt_fast(stem: str, line: int, r: pd.Series) -> CorpusRow:
    if str(r["metric"]) != "decode_tokens_per_s":
        raise NotPredictable("the same run's decode rate restated (ms per token, achieved bandwidth)")
    version = str(r["engine_version"])
    allreduce = "nccl" if "NCCL" in version else "custom"  # 2023-11-30: NCCL; 2023-12-16 on: intra-node custom
    return _base(stem, line, r, "gpt_fast", kind="decode_rate", allreduce=allreduce,
                 measured=(("decode_tokens_per_s", float(r["value"])),))


def _mlc(stem: str, line: int, r: pd.Series) -> CorpusRow:
    if str(r["engine"]) != "vLLM":
        raise NotPredictable(f"engine {r['engine']!r} has no profile")
    if str(r["metric"]) != "decode_tokens_per_s":
        raise NotPredictable("the same run's decode rate restated (ms per token)")
    if str(r["precision"]) != "fp16":
        raise NotPredictable(f"precision {r['precision']!r} is not modelled for this engine")
    return _base(stem, line, r, "vllm_0_2", kind="decode_rate", measured=(("decode_tokens_per_s", float(r["value"])),))


LMDEPLOY_METRICS = {"ttft_mean": ("iteration", "ttft_ms"), "token_latency_p50": ("decode_step", "decode_step_ms"),
                    "output_token_throughput": ("static_throughput", "output_tokens_per_s")}


def _lmdeploy(stem: str, line: int, r: pd.Series) -> CorpusRow:
    metric = str(r["metric"])
    if metric not in LMDEPLOY_METRICS:
        raise NotPredictable("a tail percentile or extreme of the same run (the model predicts means and medians)")
    kind, name = LMDEPLOY_METRICS[metric]
    return _base(stem, line, r, "lmdeploy", kind=kind, batch_size=_int(r["batch_size"], "batch"),
                 measured=((name, float(r["value"])),))


def _misc_web(stem: str, line: int, r: pd.Series) -> CorpusRow:
    engine, metric, version = str(r["engine"]), str(r["metric"]), str(r["engine_version"])
    if engine.startswith("NeMo"):
        if metric != "e2e_latency_avg":
            raise NotPredictable("the same run's latency restated as sentences/s")
        if "SUSPECT" in str(r["notes"]):
            raise NotPredictable("flagged SUSPECT by the source: 13B measured faster than 7B on the same GPU and TP "
                                 "(questioned in NVIDIA/NeMo discussion #8455)")
        return _base(stem, line, r, "trtllm", kind="static_latency", batch_size=_int(r["batch_size"], "batch"),
                     measured=(("static_e2e_ms", _value(r)),))
    if engine == "vLLM" and metric == "e2e_batch_latency" and "Dec-2023" in version:
        _model(str(r["model"]))
        if str(r["model"]).startswith("Llama 70B"):
            raise NotPredictable("1.5-1.6 s for 256 decode steps of Llama-70B at TP4 is below the weights' HBM floor "
                                 "(35 GB per GPU at 2 TB/s = 17 ms a step, 4.4 s): the PR's lengths are not what ran")
        allreduce = "custom" if "custom" in version else "nccl"
        # vLLM 0.2.x with CUDA graphs (PR #1926): the 0.5-0.6 profile's step structure, the row's all-reduce.
        return _base(stem, line, r, "vllm", kind="static_latency", batch_size=_int(r["batch_size"], "batch"),
                     allreduce=allreduce, measured=(("static_e2e_ms", _value(r)),))
    raise NotPredictable(f"engine {engine!r} ({metric}) has no profile or no fixed lengths")


def _vidur(stem: str, line: int, r: pd.Series) -> CorpusRow:
    metric = str(r["metric"])
    gpu = hardware_gpu(str(r["gpu"]))
    tp = _int(r["tp"], "tp")
    if metric == "all_reduce_median":
        size = re.search(r"(\d+) bytes", str(r["notes"]))
        if size is None:
            raise NotPredictable("all-reduce size not given in bytes")
        return CorpusRow(source=stem, line=line, engine="none", engine_version="kernel", gpu=gpu, model="llama2_70b",
                         weights="bf16", kv="bf16", tp=tp, pp=1, kind="kernel_allreduce",
                         batch_size=int(size.group(1)), input_tokens=1, output_tokens=1, request_rate=None,
                         num_prompts=0, measured=(("kernel_ms", float(r["value"])),))
    if metric in ("per_layer_nonattn_ops_median_sum", "per_layer_linear_ops_median_sum"):
        found = re.search(r"num_tokens=(\d+)", str(r["notes"]))
        if found is None:
            raise NotPredictable("number of tokens not given")
        tokens = int(found.group(1))
        return CorpusRow(source=stem, line=line, engine="none", engine_version="kernel", gpu=gpu,
                         model=_model(str(r["model"])), weights="bf16", kv="bf16", tp=tp, pp=1,
                         kind="kernel_linear" if "linear" in metric else "kernel_layer", batch_size=tokens,
                         input_tokens=1, output_tokens=1, request_rate=None, num_prompts=0,
                         measured=(("kernel_ms", float(r["value"])),))
    raise NotPredictable(f"metric {metric!r} is not predicted")


INFERENCEX_METRICS = {"tpot_median": "tpot_ms", "ttft_median": "closed_ttft_ms", "tpot_mean": "tpot_ms",
                      "ttft_mean": "closed_ttft_ms"}


def trtllm_mtp_token_budget(isl: int, concurrency: int, tp: int, dp_attention: bool) -> int:
    """The prompt-token budget per iteration of InferenceX's TensorRT-LLM MTP runs, in the simulator's units.
    dsr1_fp8_h200_trt_mtp.sh sets MTP = 1 draft layer with attention DP, else 3; max_batch_size = conc / TP per DP
    rank with attention DP (at least 1), else conc; and --max_num_tokens = ((MTP + 1) x max_batch_size + ISL + 64)
    rounded up to 64, with no 8,192 floor (the non-MTP script, dsr1_fp8_h200_trt.sh, takes max(8192, ...)). So one
    prompt fits per iteration. TensorRT-LLM's scheduler charges a generation request 1 + draft tokens of that budget,
    the simulator one token per decoding sequence: the budget given is max_num_tokens - MTP x max_batch_size (exact
    when the batch is full, as in a closed loop at that concurrency), per DP rank times TP with attention DP (the
    simulator schedules the replica's ranks as one)."""
    mtp = 1 if dp_attention else 3
    batch = max(1, concurrency // tp) if dp_attention else concurrency
    per_rank = ((mtp + 1) * batch + isl + 64 + 63) // 64 * 64
    return (per_rank - mtp * batch) * (tp if dp_attention else 1)


def trtllm_adp_prompts_per_release(isl: int, concurrency: int, tp: int, mtp: bool) -> int:
    """Prompts of the nominal length one attention-DP rank of InferenceX's TensorRT-LLM runs can prefill in one
    iteration: its --max_num_tokens (per rank with attention DP) less its generation requests' tokens, over the
    prompt. dsr1_fp8_h200_trt.sh: max(8192, conc + ISL + 64 rounded up to 64); dsr1_fp8_h200_trt_mtp.sh: the MTP
    formula (trtllm_mtp_token_budget, whose per-rank value already has the drafts taken off, MTP 1 with attention
    DP). Each generation request takes one token more. Prompts are drawn in [0.8 ISL, ISL]: a count of nominal prompts
    is the count that always fits."""
    per_rank_seqs = max(1, concurrency // tp)
    if mtp:
        room = trtllm_mtp_token_budget(isl, concurrency, tp, True) // tp
    else:
        room = max(8192, (concurrency + isl + 64 + 63) // 64 * 64)
    return max(1, (room - per_rank_seqs) // isl)


def _inferencex(stem: str, line: int, r: pd.Series) -> CorpusRow:
    metric = str(r["metric"])
    if metric not in INFERENCEX_METRICS:
        raise NotPredictable("not a per-token or first-token latency (throughputs and E2E restate the same run; "
                             "p99 tails and per-chunk ITL are not modelled)")
    if str(r["tp"]) != "8":
        raise NotPredictable("prefill/decode-disaggregated multi-node run (P/D workers): predicted by the disaggregated "
                             "simulator instead (sim.fidelity.corpus_disagg; the disaggregated_* keys)")
    # InferenceX serves TensorRT-LLM with its PyTorch backend (dsr1_fp8_h200_trt.sh: trtllm-serve --backend=pytorch).
    engine = {"SGLang": "sglang", "TensorRT-LLM": "trtllm_pytorch"}[str(r["engine"])]
    notes = str(r["notes"])
    dp_attention = str(r["dp_attention"]) == "yes"
    # Its attention-DP runs set attention_dp_config {enable_balance: true, timeout_iters: 60, batching_wait_iters: 0}.
    adp_hold = 60 if engine == "trtllm_pytorch" and dp_attention else 0
    # Memory and KV settings of its launch scripts (dsr1_fp8_h200.sh: --mem-fraction-static 0.82, KV in the model's
    # BF16; dsr1_fp8_h200_trt.sh: kv_cache_config {dtype: fp8, free_gpu_memory_fraction: 0.75}).
    memory, kv = (0.82, "bf16") if engine == "sglang" else (0.75, "fp8")
    # InferenceX's benchmark-tmpl.yml: RANDOM_RANGE_RATIO 0.8, num prompts = 10 x concurrency; its bench_serving
    # draws each request's lengths uniformly in [0.8 L, L].
    conc = _int(r["batch_size_or_concurrency"], "concurrency")
    mtp = "spec_decode=mtp" in notes
    budget = (trtllm_mtp_token_budget(_int(r["input_tokens"], "input tokens"), conc, 8, dp_attention)
              if mtp and engine == "trtllm_pytorch" else 0)
    return _base(stem, line, r, engine, kind="closed_loop", weights="fp8", kv=kv, batch_size=conc,
                 gpu_memory_utilization=memory,
                 num_prompts=10 * conc, length_ratio=0.8, ep=_int(r["ep"], "ep"),
                 dp_attention=dp_attention, adp_hold_iters=adp_hold,
                 adp_prompts_per_release=(trtllm_adp_prompts_per_release(_int(r["input_tokens"], "input tokens"),
                                                                         conc, 8, mtp) if adp_hold else 0),
                 mtp_draft_tokens=1 if mtp else 0, max_num_batched_tokens=budget,
                 statistic="median" if metric.endswith("median") else "mean",
                 measured=((INFERENCEX_METRICS[metric], float(r["value"])),))


def _community(stem: str, line: int, r: pd.Series) -> CorpusRow:
    notes, version, metric = str(r["notes"]), str(r["engine_version"]), str(r["metric"])
    if str(r["engine"]) == "SGLang" and version.startswith("~v0.4.2") and metric in ("ttft_mean", "derived_tpot_mean"):
        # sglang issue #3361: 2 x 8 H800, TP16 over InfiniBand, --disable-cuda-graph, Qianfan data (mean 217 in,
        # 253 out: the dataset's published statistics), bench_serving at fixed concurrency.
        conc = _int(r["batch_size_or_concurrency"], "concurrency")
        return _base(stem, line, r.replace({"216.79": "217", "253.47": "253"}), "sglang", kind="closed_loop",
                     weights="fp8", kv="bf16", batch_size=conc, tp=16, num_prompts=10 * conc, cuda_graphs=False, tp_spans_nodes=True,
                     measured=(("closed_ttft_ms" if metric == "ttft_mean" else "tpot_ms", _value(r)),))
    raise NotPredictable("an issue excerpt without the GPU, the lengths or the parallelism of the run")


def _trtllm_moe(stem: str, line: int, r: pd.Series) -> CorpusRow:
    if not str(r["model"]).startswith("DeepSeek-R1"):
        _model(str(r["model"]))
    if str(r["metric"]) == "output_throughput_per_user" and str(r["batch_size_or_concurrency"]) == "1":
        # Min-latency: batch 1, 1K/2K, TP8 EP4, MTP-3 (the doc's config); tokens per second of one user.
        r = r.replace({"~1000 (real dataset)": "1000", "~2000": "2000"})  # the doc's nominal lengths
        return _base(stem, line, r, "trtllm", kind="decode_rate", weights="fp8", kv="bf16", ep=_int(r["ep"], "ep"),
                     mtp_draft_tokens=3, measured=(("decode_tokens_per_s", float(r["value"])),))
    raise NotPredictable("max-throughput point restated per GPU/user, or a config the row does not state")


READERS = {"argonne_llm_inference_bench": _argonne, "gpt_fast_tp_a100": _gpt_fast, "mlc_llm_perf_bench_2023": _mlc,
           "lmdeploy_turbomind_a100_2023": _lmdeploy, "misc_web_issue_points": _misc_web,
           "vidur_kernel_tp_profiles": _vidur, "inferencex_dsr1_h100_h200": _inferencex,
           "community_issues_and_vllm_blog": _community, "trtllm_docs_h100_h200": _trtllm_moe}
NOT_READ = {
    "distserve_vllm_a100_fits": "fitted coefficients of OPT profiles (and evaluations of them): OPT's learned "
                                "positions and non-gated ReLU MLP are not modelled",
    "deepseek_official_h800": "production averages over mixed V3/R1 traffic with cache hits and EP144/EP32 "
                              "units (EPLB redundant experts): no single deployment to predict",
    "sglang_lmsys_blogs": "EP72 / EP32 over 9 and 4 nodes with EPLB redundant experts (288 slots): EP must divide "
                          "the 256 experts in this model; ratios (speedups) are not predictions of one deployment",
    "gpustack_perflab_h100_h200": "all prompts sent at once with unbounded concurrency: TTFT and TPOT are a "
                                  "burst's queueing, not modelled by the steady-state corpus predictions",
    "kernels_h800_deepep_flashmla_deepgemm": "kernel figures used as priors of the engine profiles (conf/engine), "
                                             "not as predictions",
    "mlperf_v5_mixtral_h100_h200": "the dataset's input lengths and the submission's TP are not in the logs",
}


def long_rows(path: Path, frame: pd.DataFrame) -> tuple[list[CorpusRow], list[dict]]:
    stem = path.name.split(".")[0]
    rows, skipped = [], []
    reader = READERS.get(stem)
    for i, (_, rec) in enumerate(frame.iterrows()):
        try:
            if reader is None:
                raise NotPredictable(NOT_READ.get(stem, "no reader for this source's measurements"))
            rows.append(reader(stem, i + 2, rec))
        except NotPredictable as exc:
            skipped.append({"source": stem, "line": i + 2, "model": rec.get("model", ""),
                            "kind": rec.get("metric", ""), "reason": str(exc)})
    return rows, skipped
