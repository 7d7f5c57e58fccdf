"""Request lengths of benchmark datasets known only by published statistics (ShareGPT as the benchmark clients
sample it), drawn per request so that corpus rows measured on such a dataset are predicted, not skipped.

A dataset here is its published per-request means after the client's own filter, a spread (coefficient of
variation; an assumption where no source gives one, said so below) and that filter. Lengths are lognormal, input
and output independent, drawn and then filtered exactly as the client filters (rejection); the lognormal's
location is set so that the *filtered* means equal the published ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim.common.errors import ConfigError


@dataclass(frozen=True)
class LengthDataset:
    name: str
    mean_input_tokens: float  # per request, after the client's filter (published)
    mean_output_tokens: float
    cv: float  # coefficient of variation of the unfiltered lognormal (input and output alike)
    min_tokens: int  # the client drops a request whose prompt or output is shorter
    max_input_tokens: int  # ... whose prompt is longer
    max_total_tokens: int  # ... whose prompt + output is longer


# ShareGPT V3 (ShareGPT_V3_unfiltered_cleaned_split.json) as vLLM's benchmark_serving.py and sglang.bench_serving
# sample it: the first human turn is the prompt, the first answer's token count the output length; a request is
# dropped when prompt or output has fewer than 4 tokens, the prompt more than 1,024, or both more than 2,048 (the
# sample_sharegpt_requests filter of both clients, 2024). Means: 219.2 input / 200.8 output tokens per request,
# the totals of a published `vllm bench serve --dataset-name sharegpt` run of 1,000 prompts (GPUStack performance
# lab, DeepSeek-R1 on H200, data/measurements/gpustack_perflab_h100_h200; a 128k-vocabulary BPE tokenizer like
# Llama 3's). A source that is not scored against these means. The spread is NOT published: cv = 1.0 (an
# exponential-like spread) is an assumption; docs/fidelity.md gives the predictions at 0.5 and 1.5 beside it.
SHAREGPT = LengthDataset("sharegpt", mean_input_tokens=219.2, mean_output_tokens=200.8, cv=1.0, min_tokens=4,
                         max_input_tokens=1024, max_total_tokens=2048)
DATASETS = {SHAREGPT.name: SHAREGPT}

_CALIBRATION_DRAWS = 200_000
_CALIBRATION_SEED = 2018


def _raw(mu_in: float, mu_out: float, sigma: float, n: int, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    inp = np.maximum(1, np.rint(rng.lognormal(mu_in, sigma, n))).astype(np.int64)
    out = np.maximum(1, np.rint(rng.lognormal(mu_out, sigma, n))).astype(np.int64)
    return inp, out


def _kept(ds: LengthDataset, inp: np.ndarray, out: np.ndarray) -> np.ndarray:
    return ((inp >= ds.min_tokens) & (out >= ds.min_tokens) & (inp <= ds.max_input_tokens)
            & (inp + out <= ds.max_total_tokens))


@lru_cache(maxsize=None)
def lognormal_locations(ds: LengthDataset) -> tuple[float, float, float]:
    """(mu_input, mu_output, sigma) of the unfiltered lognormals whose filtered means are the dataset's means:
    sigma from the cv, the locations by fixed-point steps mu += log(target / filtered mean) on one fixed draw."""
    if ds.cv <= 0:
        raise ConfigError(f"length dataset {ds.name}: cv must be positive, got {ds.cv}")
    sigma = math.sqrt(math.log1p(ds.cv ** 2))
    mu_in = math.log(ds.mean_input_tokens) - sigma ** 2 / 2
    mu_out = math.log(ds.mean_output_tokens) - sigma ** 2 / 2
    z_in = np.random.default_rng(_CALIBRATION_SEED).standard_normal(_CALIBRATION_DRAWS)
    z_out = np.random.default_rng(_CALIBRATION_SEED + 1).standard_normal(_CALIBRATION_DRAWS)
    for _ in range(40):
        inp = np.maximum(1, np.rint(np.exp(mu_in + sigma * z_in))).astype(np.int64)
        out = np.maximum(1, np.rint(np.exp(mu_out + sigma * z_out))).astype(np.int64)
        keep = _kept(ds, inp, out)
        step_in = math.log(ds.mean_input_tokens / inp[keep].mean())
        step_out = math.log(ds.mean_output_tokens / out[keep].mean())
        mu_in, mu_out = mu_in + step_in, mu_out + step_out
        if abs(step_in) < 1e-5 and abs(step_out) < 1e-5:
            break
    return mu_in, mu_out, sigma


def draw_lengths(ds: LengthDataset, n: int, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """n (input, output) length pairs of the dataset as the client samples it (filtered draws, in draw order)."""
    if n < 1:
        raise ConfigError(f"draw_lengths needs n >= 1, got {n}")
    mu_in, mu_out, sigma = lognormal_locations(ds)
    got_in: list[np.ndarray] = []
    got_out: list[np.ndarray] = []
    have = 0
    while have < n:
        inp, out = _raw(mu_in, mu_out, sigma, 2 * (n - have) + 16, rng)
        keep = _kept(ds, inp, out)
        got_in.append(inp[keep])
        got_out.append(out[keep])
        have += int(keep.sum())
    inp, out = np.concatenate(got_in)[:n], np.concatenate(got_out)[:n]
    return tuple(int(x) for x in inp), tuple(int(x) for x in out)


def dataset_named(name: str) -> LengthDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown length dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
