"""Real per-model judge scores and answer lengths per question, from the compact quality tables under data/.

A cascade tier stands in for one model of a dataset; `tier_table` returns, for every usable question, the tiers'
scores on the 0-100 scale and their estimated answer tokens, so per-tier values stay jointly real.

Score rules (documented in data/README.md):
- x10: GPT-4 single-answer ratings 1-10 (Arena-Bench-V1, MT-Bench) become 10-100.
- binary: correctness becomes 100 (correct) or 0 (wrong). This keeps the mean score equal to accuracy in percent,
  which is what the quality requirement means on these datasets. Under an oracle judge every threshold in (0, 100]
  then routes identically (wrong answers go up, right ones stop); a noisy judge (sim.workload.judge) spreads the
  gate's view of 0/100 so thresholds trade quality for load, as a real, imperfect judge does. We keep the real
  score binary rather than inventing graded scores from other models' results, which would mix in information
  the judge of one answer does not have.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from sim.errors import ConfigError, DataError
from sim.paths import DATA_DIR


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    path: str  # relative to data/
    score_kind: str  # rating_1_10 | correctness
    description: str


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("arena_bench_v1", "arena_bench_v1/scores.csv.gz", "rating_1_10",
                "300 Chatbot Arena prompts x 15 models, GPT-4 score 1-10, answers"),
    DatasetInfo("mt_bench", "routellm_evals/mt_bench.csv.gz", "rating_1_10",
                "MT-Bench 80 questions x 2 turns, Mixtral-8x7B and GPT-4-1106, GPT-4 score 1-10, answers"),
    DatasetInfo("gsm8k", "routellm_evals/gsm8k.csv.gz", "correctness",
                "GSM8K test 1,319 problems, Mixtral-8x7B and GPT-4-1106 correctness, answers"),
    DatasetInfo("mmlu", "routellm_evals/mmlu.csv.gz", "correctness",
                "MMLU test 14,042 questions, Mixtral-8x7B and GPT-4-1106 correctness, no answers"),
    DatasetInfo("routerbench_mbpp", "routerbench_subset/mbpp.csv.gz", "correctness",
                "RouterBench MBPP 427 coding problems x 11 models, correctness, answers"),
    DatasetInfo("routerbench_arc_challenge", "routerbench_subset/arc_challenge.csv.gz", "correctness",
                "RouterBench ARC-Challenge 1,484 reasoning questions x 11 models, correctness, answers"),
    DatasetInfo("routerbench_winogrande", "routerbench_subset/winogrande.csv.gz", "correctness",
                "RouterBench Winogrande 1,267 questions x 11 models, correctness, answers"),
)}

_DEFAULT_RULE = {"rating_1_10": "x10", "correctness": "binary"}


@dataclass(frozen=True)
class QualityTable:
    """Wide view of one dataset: questions x models."""

    dataset: str
    question_ids: np.ndarray  # (q,) str
    subsets: np.ndarray  # (q,) str
    contaminated: np.ndarray  # (q,) bool
    models: tuple[str, ...]
    score_raw: np.ndarray  # (q, m) float, NaN = no valid judgment
    answer_tokens: np.ndarray  # (q, m) float, NaN = no answer text


@dataclass(frozen=True)
class TierTable:
    """The usable questions of a dataset for one tier mapping."""

    dataset: str
    tier_models: tuple[str, ...]
    question_ids: np.ndarray  # (q,) str, prefixed "<dataset>:"
    scores: np.ndarray  # (q, C) float 0-100
    answer_tokens: np.ndarray  # (q, C) float, NaN where the dataset has no answers
    score_rule: str
    dropped_invalid: int  # questions dropped because a tier model has no valid score
    dropped_contaminated: int


def _dataset(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(f"quality.dataset {name!r} is unknown; valid: {', '.join(DATASETS)}")
    return DATASETS[name]


@lru_cache(maxsize=None)
def load_quality(name: str) -> QualityTable:
    """Read data/<dataset file> (cached: the tables are small and read-only)."""
    info = _dataset(name)
    path = DATA_DIR / info.path
    if not path.is_file():
        raise DataError(f"data/{info.path} is missing; rebuild it with `python -m sim.workload.prepare_data --source <raw data>`")
    df = pd.read_csv(path, dtype={"question_id": str, "subset": str, "model": str})
    models = tuple(sorted(df.model.unique()))
    questions = df.drop_duplicates("question_id").set_index("question_id").sort_index()
    score = df.pivot(index="question_id", columns="model", values="score_raw").reindex(index=questions.index, columns=models)
    tokens = df.pivot(index="question_id", columns="model", values="answer_tokens").reindex(index=questions.index, columns=models)
    return QualityTable(name, questions.index.to_numpy(dtype=str), questions.subset.to_numpy(dtype=str),
                        questions.contaminated.to_numpy(dtype=bool), models, score.to_numpy(np.float64),
                        tokens.to_numpy(np.float64))


def dataset_models(name: str | None = None) -> dict[str, list[str]] | list[str]:
    """Valid model names of one dataset, or of every dataset (a dict) when name is None."""
    if name is None:
        return {n: list(load_quality(n).models) for n in DATASETS}
    return list(load_quality(name).models)


def to_score_0_100(raw: np.ndarray, rule: str) -> np.ndarray:
    if rule == "x10":
        return raw * 10.0
    if rule == "binary":
        return np.where(raw >= 0.5, 100.0, 0.0)
    raise ConfigError(f"quality.score_rule {rule!r} is unknown; valid: auto, x10, binary")


def tier_table(dataset: str, tier_models: list[str] | tuple[str, ...], score_rule: str = "auto",
               subsets: list[str] | tuple[str, ...] = (), exclude_contaminated: bool = True) -> TierTable:
    table = load_quality(dataset)
    info = DATASETS[dataset]
    if not tier_models:
        raise ConfigError(f"quality.tier_models is empty; name one {dataset} model per cascade tier, "
                          f"valid: {', '.join(table.models)}")
    for m in tier_models:
        if m not in table.models:
            raise ConfigError(f"quality.tier_models: {m!r} is not a model of {dataset}; valid: {', '.join(table.models)}")
    rule = _DEFAULT_RULE[info.score_kind] if score_rule == "auto" else score_rule
    if rule == "x10" and info.score_kind != "rating_1_10":
        raise ConfigError(f"quality.score_rule x10 needs 1-10 ratings, but {dataset} holds correctness; use binary or auto")
    cols = [table.models.index(m) for m in tier_models]
    keep = np.ones(len(table.question_ids), dtype=bool)
    if subsets:
        valid = sorted(set(table.subsets))
        unknown = [s for s in subsets if s not in valid]
        if unknown:
            raise ConfigError(f"quality.subsets: {unknown[0]!r} is not a subset of {dataset}; valid: {', '.join(valid[:60])}")
        keep &= np.isin(table.subsets, list(subsets))
    dropped_contaminated = int((keep & table.contaminated).sum()) if exclude_contaminated else 0
    if exclude_contaminated:
        keep &= ~table.contaminated
    # A question without a valid judgment for some tier (Arena: judge output -1/null) leaves the pool: binding it
    # would need an invented score.
    valid_score = np.isfinite(table.score_raw[:, cols]).all(axis=1)
    dropped_invalid = int((keep & ~valid_score).sum())
    keep &= valid_score
    if not keep.any():
        raise ConfigError(f"quality: no question of {dataset} is left for tier models {list(tier_models)} "
                          f"(subsets {list(subsets) or 'all'}); widen quality.subsets")
    raw = table.score_raw[keep][:, cols]
    qids = np.char.add(f"{dataset}:", table.question_ids[keep].astype(str))
    return TierTable(dataset, tuple(tier_models), qids, to_score_0_100(raw, rule), table.answer_tokens[keep][:, cols],
                     rule, dropped_invalid, dropped_contaminated)
