"""Real per-model judge scores and answer lengths per question, from long-format quality tables named by config.

A quality dataset is a long table (one row per question x model) described by config alone: a built-in name refers to
conf/quality/<name>.yaml (path, format, column mapping, score scale, default score rule, optional prompt table), and a
workload may instead give `quality.dataset` as a path with `quality.columns`, `quality.score_scale` (and `format`).
A cascade tier stands in for one model of a dataset; `tier_table` returns, for every usable question, the tiers'
scores on the 0-100 scale and their answer tokens, so per-tier values stay jointly real.

Score rules (documented in data/README.md):
- linear: the raw score is mapped from score_scale [min, max] to 0-100. The built-in GPT-4 ratings 1-10
  (Arena-Bench-V1, MT-Bench) use the scale [0, 10], so a rating r becomes 10 r (10-100), as before this mechanism.
- binary: a raw score at or above the middle of the scale becomes 100, else 0. On correctness tables (scale [0, 1])
  the mean score is accuracy in percent, which is what the quality requirement means on these datasets. Under an
  oracle judge every threshold in (0, 100] then routes identically; a noisy judge (sim.workload.judge) spreads the
  gate's view of 0/100 so thresholds trade quality for load. We keep real scores binary rather than inventing graded
  scores from other models' results.
Rows whose score is missing (empty, null or not a number) are dropped and counted (`QualityTable.dropped_rows`): a
question then lacks that model's judgment and leaves the pool of any tier mapping that needs it. A number outside
score_scale, or a negative answer length, is an error naming the line: it means a wrong scale or column, not a
missing judgment.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.common.config_checks import check_keys, from_mapping
from sim.common.errors import ConfigError, DataError
from sim.common.io import read_yaml
from sim.common.paths import CONF_DIR, PROJECT_ROOT
from sim.workload.config import QualityColumns, check_score_scale

QUALITY_DIR = CONF_DIR / "quality"
_SCORE_RULES = ("linear", "binary")
_ENTRY_KEYS = ("description", "path", "format", "columns", "score_scale", "score_rule", "prompts")


@dataclass(frozen=True)
class QualitySource:
    """Where a quality dataset lives and how to read it (hashable: the loaded table is cached per source)."""

    name: str  # the question-id prefix: the built-in name, or the table file's stem
    path: str  # as configured (relative to the project root, or absolute)
    format: str  # csv | jsonl
    columns: tuple[tuple[str, str | None], ...]  # QualityColumns as (field, column) pairs
    score_scale: tuple[float, float]
    score_rule: str  # the dataset's own rule for score_rule: auto
    prompts: str | None = None  # optional separate table with columns question_id, prompt
    description: str = ""

    def column(self, field: str) -> str | None:
        return dict(self.columns)[field]


@dataclass(frozen=True)
class QualityTable:
    """Wide view of one dataset: questions x models."""

    dataset: str
    question_ids: np.ndarray  # (q,) str
    subsets: np.ndarray  # (q,) str
    contaminated: np.ndarray  # (q,) bool
    models: tuple[str, ...]
    score_raw: np.ndarray  # (q, m) float, NaN = no valid judgment
    answer_tokens: np.ndarray  # (q, m) float, NaN = no answer length
    prompts: np.ndarray | None = None  # (q,) object str, None when the dataset carries no prompt text
    dropped_rows: int = 0  # rows whose score was missing
    source: QualitySource | None = None


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
    dropped_score_rows: int = 0  # table rows dropped for a missing score


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def _is_path(dataset: str) -> bool:
    return "/" in dataset or "\\" in dataset or dataset.endswith((".csv", ".jsonl", ".gz", ".json"))


def _infer_format(path: str) -> str:
    stem = path[:-3] if path.endswith(".gz") else path
    return "jsonl" if stem.endswith((".jsonl", ".json")) else "csv"


def dataset_names() -> list[str]:
    """Built-in quality datasets: the entries of conf/quality/."""
    return sorted(p.stem for p in QUALITY_DIR.glob("*.yaml"))


def _columns(data: Any, where: str) -> tuple[tuple[str, str | None], ...]:
    cols = from_mapping(QualityColumns, data, where)
    return tuple((f.name, getattr(cols, f.name)) for f in dataclasses.fields(QualityColumns))


def _entry(name: str) -> QualitySource:
    path = QUALITY_DIR / f"{name}.yaml"
    shown = f"conf/quality/{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"quality.dataset {name!r} is unknown; valid: {', '.join(dataset_names())} "
                          "(or a path to a CSV/JSONL quality table)")
    data = read_yaml(path, "quality dataset file")
    check_keys(data, _ENTRY_KEYS, shown)
    if not data.get("path"):
        raise ConfigError(f"{shown}: path is missing; give the quality table relative to the project root")
    rule = data.get("score_rule", "linear")
    if rule not in _SCORE_RULES:
        raise ConfigError(f"{shown}: score_rule is {rule!r}; valid: {', '.join(_SCORE_RULES)}")
    fmt = data.get("format") or _infer_format(data["path"])
    if fmt not in ("csv", "jsonl"):
        raise ConfigError(f"{shown}: format is {fmt!r}; valid: csv, jsonl")
    return QualitySource(name, str(data["path"]), fmt, _columns(data.get("columns"), f"{shown}: columns"),
                         check_score_scale(data.get("score_scale"), f"{shown}: score_scale"), rule,
                         data.get("prompts"), str(data.get("description", "")))


def quality_source(dataset: str, columns: Any = None, score_scale: Any = None, fmt: str | None = None) -> QualitySource:
    """The source of quality.dataset: a built-in name (its conf/quality entry) or a table path with its mapping."""
    if not _is_path(dataset):
        if columns is not None or score_scale is not None or fmt is not None:
            raise ConfigError(f"quality.columns, quality.score_scale and quality.format apply to a table given by path; "
                              f"{dataset!r} is a built-in dataset (conf/quality/{dataset}.yaml holds its mapping)")
        return _entry(dataset)
    if score_scale is None:
        raise ConfigError(f"quality.score_scale is required for the quality table {dataset}: give [min, max] of its "
                          "raw score (e.g. [0, 1] for correctness, [1, 10] for ratings)")
    stem = Path(dataset).name.split(".")[0]
    return QualitySource(stem, dataset, fmt or _infer_format(dataset), _columns(columns, "quality.columns"),
                         check_score_scale(score_scale, "quality.score_scale"), "linear")


def _read_table(path: str, fmt: str, what: str) -> pd.DataFrame:
    p = _resolve(path)
    if not p.is_file():
        raise DataError(f"{path}: {what} not found; give it relative to the project root or absolute")
    try:
        if fmt == "jsonl":
            return pd.read_json(p, lines=True, compression="infer", dtype=False)
        return pd.read_csv(p, compression="infer", dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the {what} as {fmt} ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def _need(df: pd.DataFrame, col: str | None, field: str, path: str) -> None:
    if col is not None and col not in df.columns:
        raise ConfigError(f"quality.columns.{field}: column {col!r} is not in {path}; its columns are "
                          f"{', '.join(map(str, df.columns))}")


@lru_cache(maxsize=None)
def _load(source: QualitySource) -> QualityTable:
    df = _read_table(source.path, source.format, "quality table")
    col = source.column
    for field, name in source.columns:
        _need(df, name, field, source.path)
    if df.empty:
        raise DataError(f"{source.path}: the quality table has no rows")
    qid = df[col("question_id")].astype(str)
    model = df[col("model")].astype(str)
    score = pd.to_numeric(df[col("score")], errors="coerce")
    _check_scale(score, source, df[col("score")])
    valid = score.notna()
    frame = pd.DataFrame({"question_id": qid, "model": model, "score": score})
    frame["tokens"] = _answer_tokens(df[col("output_tokens")], source) if col("output_tokens") else np.nan
    frame["subset"] = df[col("subset")].astype(str) if col("subset") else ""
    if col("contaminated"):
        frame["contaminated"] = df[col("contaminated")].astype(str).str.lower().isin(("true", "1", "yes"))
    else:
        frame["contaminated"] = False
    dup = frame.duplicated(["question_id", "model"])
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        raise DataError(f"{source.path}: question {frame.question_id.iloc[i]!r} has more than one row for model "
                        f"{frame.model.iloc[i]!r}; a quality table holds one score per question and model")
    models = tuple(sorted(frame.model.unique()))
    questions = frame.drop_duplicates("question_id").set_index("question_id").sort_index()
    score_w = frame.pivot(index="question_id", columns="model", values="score").reindex(index=questions.index, columns=models)
    tokens_w = frame.pivot(index="question_id", columns="model", values="tokens").reindex(index=questions.index, columns=models)
    prompts = _prompts(source, df, questions.index)
    return QualityTable(source.name, questions.index.to_numpy(dtype=str), questions.subset.to_numpy(dtype=str),
                        questions.contaminated.to_numpy(dtype=bool), models, score_w.to_numpy(np.float64),
                        tokens_w.to_numpy(np.float64), prompts, int((~valid).sum()), source)


def _line(source: QualitySource, row: int) -> str:
    """File line of a table row: CSV counts the header as line 1, JSONL has none."""
    return f"line {row + (2 if source.format == 'csv' else 1)}"


def _check_scale(score: pd.Series, source: QualitySource, raw: pd.Series) -> None:
    """A number outside score_scale is a wrong scale or a wrong column, never a missing judgment: refuse it (a missing
    or non-numeric score stays a missing judgment, dropped and counted)."""
    lo, hi = source.score_scale
    out = (score < lo) | (score > hi)
    if out.any():
        i = int(np.argmax(out.to_numpy()))
        raise DataError(f"{source.path} {_line(source, i)}: score {raw.iloc[i]} is outside score_scale "
                        f"[{lo:g}, {hi:g}] ({int(out.sum())} of {len(score)} rows are); give the table's true "
                        f"[min, max] as quality.score_scale, or fix the rows")


def _answer_tokens(col: pd.Series, source: QualitySource) -> pd.Series:
    tokens = pd.to_numeric(col, errors="coerce")
    neg = tokens < 0
    if neg.any():
        i = int(np.argmax(neg.to_numpy()))
        raise DataError(f"{source.path} {_line(source, i)}: answer length {col.iloc[i]} is negative; token counts "
                        "must be >= 0 (leave the cell empty when the answer length is unknown)")
    return tokens


def _prompts(source: QualitySource, df: pd.DataFrame, index: pd.Index) -> np.ndarray | None:
    if source.column("prompt"):
        by_q = df.drop_duplicates(source.column("question_id")).set_index(source.column("question_id"))[source.column("prompt")]
        by_q.index = by_q.index.astype(str)
    elif source.prompts:
        table = _read_table(source.prompts, _infer_format(source.prompts), "prompt table")
        for c in ("question_id", "prompt"):
            if c not in table.columns:
                raise DataError(f"{source.prompts}: the prompt table needs columns question_id, prompt; it has "
                                f"{', '.join(map(str, table.columns))}")
        by_q = table.set_index(table.question_id.astype(str)).prompt
    else:
        return None
    texts = by_q.reindex(index)
    return np.array([t if isinstance(t, str) else "" for t in texts], dtype=object)


def load_quality(dataset: str, columns: Any = None, score_scale: Any = None, fmt: str | None = None) -> QualityTable:
    """The wide table of a built-in dataset or a table path (cached: the tables are small and read-only)."""
    return _load(quality_source(dataset, columns, score_scale, fmt))


def dataset_models(name: str | None = None) -> dict[str, list[str]] | list[str]:
    """Valid model names of one dataset, or of every built-in dataset (a dict) when name is None."""
    if name is None:
        return {n: list(load_quality(n).models) for n in dataset_names()}
    return list(load_quality(name).models)


def to_score_0_100(raw: np.ndarray, rule: str, scale: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    lo, hi = scale
    if rule == "linear":
        return (raw - lo) * (100.0 / (hi - lo))
    if rule == "binary":
        return np.where(raw >= (lo + hi) / 2, 100.0, 0.0)
    raise ConfigError(f"quality.score_rule {rule!r} is unknown; valid: auto, linear, binary, x10")


def _rule(score_rule: str, source: QualitySource) -> str:
    if score_rule == "auto":
        return source.score_rule
    if score_rule == "x10":  # the old name of the 1-10 rating rule: linear on the [0, 10] scale
        if source.score_scale != (0.0, 10.0):
            raise ConfigError(f"quality.score_rule x10 needs 1-10 ratings (score_scale [0, 10]), but {source.name} has "
                              f"score_scale {list(source.score_scale)}; use linear, binary or auto")
        return "linear"
    if score_rule not in _SCORE_RULES:
        raise ConfigError(f"quality.score_rule {score_rule!r} is unknown; valid: auto, linear, binary, x10")
    return score_rule


def tier_table(dataset: str, tier_models: list[str] | tuple[str, ...], score_rule: str = "auto",
               subsets: list[str] | tuple[str, ...] = (), exclude_contaminated: bool = True,
               columns: Any = None, score_scale: Any = None, fmt: str | None = None) -> TierTable:
    table = load_quality(dataset, columns, score_scale, fmt)
    source = table.source
    name = source.name
    if not tier_models:
        raise ConfigError(f"quality.tier_models is empty; name one {name} model per cascade tier, "
                          f"valid: {', '.join(table.models)}")
    for m in tier_models:
        if m not in table.models:
            raise ConfigError(f"quality.tier_models: {m!r} is not a model of {name}; valid: {', '.join(table.models)}")
    rule = _rule(score_rule, source)
    cols = [table.models.index(m) for m in tier_models]
    keep = np.ones(len(table.question_ids), dtype=bool)
    if subsets:
        valid = sorted(set(table.subsets))
        unknown = [s for s in subsets if s not in valid]
        if unknown:
            raise ConfigError(f"quality.subsets: {unknown[0]!r} is not a subset of {name}; valid: {', '.join(valid[:60])}")
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
        why = (f"subsets {list(subsets)} hold none with a score for every tier model; widen quality.subsets"
               if subsets else "no question has a score for every tier model; choose tier models the table scores "
               "on the same questions")
        raise ConfigError(f"quality: no question of {name} is left for tier models {list(tier_models)}: {why}")
    raw = table.score_raw[keep][:, cols]
    qids = np.char.add(f"{name}:", table.question_ids[keep].astype(str))
    return TierTable(name, tuple(tier_models), qids, to_score_0_100(raw, rule, source.score_scale),
                     table.answer_tokens[keep][:, cols], rule, dropped_invalid, dropped_contaminated, table.dropped_rows)


def prompt_pool(sources: dict[str, QualitySource]) -> tuple[np.ndarray, np.ndarray]:
    """(question_ids, prompt texts) of every question with prompt text in the given sources (prefix -> source),
    ids prefixed "<dataset>:" as in a Workload. A router predicts on these, so its decisions exist for any request."""
    ids, texts = [], []
    for prefix, source in sources.items():
        table = _load(source)
        if table.prompts is None:
            raise ConfigError(f"quality dataset {prefix!r} carries no prompt text; a prompt-reading router needs "
                              "quality.columns.prompt (or a built-in dataset with a prompt table)")
        has = np.array([bool(t) for t in table.prompts])
        ids.append(np.char.add(f"{prefix}:", table.question_ids[has].astype(str)))
        texts.append(table.prompts[has])
    return np.concatenate(ids), np.concatenate(texts)


def prompts_for(question_ids: np.ndarray, sources: dict[str, QualitySource]) -> np.ndarray:
    """The prompt text of each question id ("<dataset>:<id>"); raises ConfigError when one has none."""
    pool_ids, pool_texts = prompt_pool(sources)
    lookup = dict(zip(pool_ids.tolist(), pool_texts.tolist()))
    missing = [q for q in question_ids.tolist() if q not in lookup]
    if missing:
        raise ConfigError(f"question {missing[0]!r} has no prompt text in its quality dataset; "
                          f"{len(missing)} of {len(question_ids)} requests lack one")
    return np.array([lookup[q] for q in question_ids.tolist()], dtype=object)


def workload_prompt_pool(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(question_ids, prompt texts) a router may predict on, from a Workload's meta: its "prompt_texts" mapping
    (question_id -> text, for workloads built in code) or else the prompt tables of its "quality_sources"."""
    if meta.get("prompt_texts"):
        items = sorted(meta["prompt_texts"].items())
        return np.array([q for q, _ in items], dtype=str), np.array([t for _, t in items], dtype=object)
    if not meta.get("quality_sources"):
        raise ConfigError("the workload does not say where its prompt texts are (meta quality_sources or "
                          "prompt_texts); build it with sim.workload.build_workload")
    return prompt_pool(meta["quality_sources"])
