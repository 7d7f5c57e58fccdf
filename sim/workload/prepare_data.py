"""Maintenance tool: rebuild the compact quality tables and traces under data/ from the raw public sources.

Run once by a maintainer (`python -m sim.workload.prepare_data --source <folder with the raw datasets>`); the product itself only
reads the compact files it writes. Every table is long-format CSV (gzip):
question_id, subset, model, score_raw, answer_tokens, prompt_tokens, contaminated
where score_raw is the dataset's own unit (GPT-4 rating 1-10, or correctness 0/1), token counts are estimated as
characters / CHARS_PER_TOKEN (raw prompt and answer texts are dropped), and `contaminated` marks the prompts that
RouteLLM flagged as overlapping its router-training data. Beside each table a prompt table (gzip CSV
`question_id, prompt`) keeps the question text a prompt-reading router sees (planners.text_router).
"""
from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from sim.common.cli import exit_on_user_error
from sim.common.paths import DATA_DIR

# ~4 characters per token is the usual rule of thumb for English BPE tokenizers (OpenAI, Llama); the Azure traces
# carry exact counts, so this estimate only shapes the *relative* per-tier answer lengths and the prompt lengths.
CHARS_PER_TOKEN = 4.0
COLUMNS = ["question_id", "subset", "model", "score_raw", "answer_tokens", "prompt_tokens", "contaminated"]


def _tokens(text: object) -> float:
    if not isinstance(text, str):
        return float("nan")
    return float(max(1, round(len(text) / CHARS_PER_TOKEN)))


def _short_model(name: str) -> str:
    # Datasets disagree on org prefixes ("mistralai/Mixtral-..." vs "Mixtral-..."): keep the bare model name.
    return name.split("/")[-1]


def _shown(path: Path) -> str:
    return str(path.relative_to(DATA_DIR.parent)) if path.is_relative_to(DATA_DIR.parent) else str(path)


def _write(df: pd.DataFrame, path: Path, columns: list[str] = COLUMNS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df = df[columns].sort_values(["question_id", "model"], kind="stable")
    # mtime=0 keeps the gzip bytes reproducible, so re-running does not churn git.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(df.to_csv(index=False, float_format="%.6g").encode())
    print(f"{_shown(path)}: {df.question_id.nunique()} questions, {df.model.nunique()} models")


def _write_prompts(prompts: dict[str, str], path: Path) -> None:
    df = pd.DataFrame(sorted(prompts.items()), columns=["question_id", "prompt"])
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(df.to_csv(index=False).encode())
    print(f"{_shown(path)}: {len(df)} prompts")


def _routerbench_prompt(text: str) -> str:
    # RouterBench stores each prompt as the repr of a one-element Python list.
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def prepare_arena(src: Path, out: Path) -> None:
    """Arena-Bench-V1: 300 questions x 15 judged models; GPT-4 score 1-10 (-1/null = unparseable -> NaN)."""
    questions = pd.read_json(src / "question.jsonl", lines=True)
    prompt_tokens = {q: _tokens(t[0]) for q, t in zip(questions.question_id, questions.turns)}
    answers = {}
    for f in sorted((src / "model_answer").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            answers[(_short_model(row["model_id"]), row["question_id"])] = _tokens(row["choices"][0]["turns"][0])
    rows = []
    for f in sorted((src / "model_judgment").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            model = _short_model(row["model"])
            score = row.get("score")
            score = float(score) if score is not None and score >= 1 else float("nan")
            qid = row["question_id"]
            rows.append((qid, "arena-bench-v1", model, score, answers.get((model, qid), float("nan")),
                         prompt_tokens[qid], False))
    _write(pd.DataFrame(rows, columns=COLUMNS), out / "scores.csv.gz")
    _write_prompts({str(q): t[0] for q, t in zip(questions.question_id, questions.turns)}, out / "prompts.csv.gz")


def _contaminated(path: Path) -> set[str]:
    return {json.loads(line)["eval_prompt"].strip() for line in path.read_text().splitlines() if line.strip()}


def _mt_bench_answer(user_prompt: str, turn: int) -> str | None:
    # Multi-turn judge prompts hold the whole conversation; the answer of turn t is the t-th assistant block.
    conv = user_prompt.split("<|The Start of Assistant A's Conversation with User|>")
    if len(conv) > 1:
        body = conv[1].split("<|The End of Assistant A's Conversation with User|>")[0]
        blocks = re.split(r"### Assistant A:\s*", body)[1:]
        blocks = [re.split(r"### User:", b)[0] for b in blocks]
        return blocks[turn - 1].strip() if len(blocks) >= turn else None
    m = re.search(r"\[The Start of Assistant's Answer\](.*?)\[The End of Assistant's Answer\]", user_prompt, re.S)
    return m.group(1).strip() if m else None


def prepare_routellm(src: Path, out: Path) -> None:
    """RouteLLM evals: MT-Bench (ratings), GSM8K and MMLU (correctness) for Mixtral-8x7B and GPT-4-1106."""
    # MT-Bench: each (question, turn) is one item; the turn-2 prompt is the follow-up question.
    questions = pd.read_json(src / "mt_bench" / "question.jsonl", lines=True)
    contaminated = _contaminated(src / "mt_bench" / "contaminated_prompts.jsonl")
    qinfo, prompts = {}, {}
    for qid, cat, turns in zip(questions.question_id, questions.category, questions.turns):
        for t, text in enumerate(turns, start=1):
            qinfo[(qid, t)] = (cat, _tokens(text), text.strip() in contaminated)
            # A turn-2 router sees the conversation's user turns so far (the turn-1 answer is not known yet).
            prompts[f"mt{qid}-t{t}"] = "\n\n".join(turns[:t])
    rows = []
    for line in (src / "mt_bench" / "judgements.jsonl").read_text().splitlines():
        row = json.loads(line)
        qid, turn = row["question_id"], int(row["turn"])
        cat, ptok, cont = qinfo[(qid, turn)]
        score = row.get("score")
        score = float(score) if score is not None and score >= 1 else float("nan")
        rows.append((f"mt{qid}-t{turn}", cat, _short_model(row["model"]), score,
                     _tokens(_mt_bench_answer(row["user_prompt"], turn)), ptok, cont))
    _write(pd.DataFrame(rows, columns=COLUMNS), out / "mt_bench.csv.gz")
    _write_prompts(prompts, out / "mt_bench_prompts.csv.gz")

    gsm = pd.read_csv(src / "gsm8k" / "gsm8k_responses.csv")
    contaminated = _contaminated(src / "gsm8k" / "contaminated_prompts.jsonl")
    models = [c for c in gsm.columns if c not in ("prompt",) and not c.endswith("_response")]
    rows = []
    for i, r in gsm.iterrows():
        for m in models:
            rows.append((f"gsm8k-{i:04d}", "gsm8k", _short_model(m), float(bool(r[m])), _tokens(r[f"{m}_response"]),
                         _tokens(r["prompt"]), r["prompt"].strip() in contaminated))
    _write(pd.DataFrame(rows, columns=COLUMNS), out / "gsm8k.csv.gz")
    _write_prompts({f"gsm8k-{i:04d}": p for i, p in enumerate(gsm["prompt"])}, out / "gsm8k_prompts.csv.gz")

    contaminated = _contaminated(src / "mmlu" / "contaminated_prompts.jsonl")
    rows, prompts = [], {}
    for f in sorted((src / "mmlu" / "responses").glob("mmlu_*.csv")):
        subject = f.stem.removeprefix("mmlu_")
        df = pd.read_csv(f)
        models = [c for c in df.columns if c != "prompt"]
        for i, r in df.iterrows():
            prompts[f"mmlu-{subject}-{i:04d}"] = r["prompt"]
            for m in models:
                # MMLU rows carry no answer text: answer_tokens stays NaN and the trace's lengths are used.
                rows.append((f"mmlu-{subject}-{i:04d}", subject, _short_model(m), float(bool(r[m])), float("nan"),
                             _tokens(r["prompt"]), r["prompt"].strip() in contaminated))
    _write(pd.DataFrame(rows, columns=COLUMNS), out / "mmlu.csv.gz")
    _write_prompts(prompts, out / "mmlu_prompts.csv.gz")


def prepare_routerbench(src: Path, out: Path) -> None:
    """RouterBench subset (RouterDC export): 11 models' correctness on ARC-Challenge, MBPP, Winogrande."""
    for task, name in (("arc_challenge", "arc_challenge"), ("mbpp", "mbpp"), ("winograde", "winogrande")):
        rows, prompts = [], {}
        for split in ("train", "test"):
            df = pd.read_csv(src / f"{task}_{split}.csv")
            models = [c for c in df.columns if f"{c}|model_response" in df.columns]
            for _, r in df.iterrows():
                prompts[f"{r['sample_id']}#{r['Unnamed: 0']}"] = _routerbench_prompt(r["prompt"])
                for m in models:
                    score = float(r[m]) if np.isfinite(r[m]) else float("nan")
                    # sample_id repeats for different prompts (also inside one file): add RouterBench's row number.
                    rows.append((f"{r['sample_id']}#{r['Unnamed: 0']}", split, _short_model(m), score,
                                 _tokens(r[f"{m}|model_response"]), _tokens(r["prompt"]), False))
        _write(pd.DataFrame(rows, columns=COLUMNS), out / f"{name}.csv.gz")
        _write_prompts(prompts, out / f"{name}_prompts.csv.gz")


def prepare_zeroeval(src: Path, out: Path) -> None:
    """ZeroEval Llama-3/3.1 8B/70B/405B correctness and answer lengths on GSM8K, MATH level 5 and CRUXEval."""
    df = pd.read_csv(src / "zeroeval_llama.csv.gz")
    # Upstream ids are unique inside a task only; the task is also the subset a workload filters on.
    qid = df.task + "/" + df.id.astype(str)
    table = pd.DataFrame({"question_id": qid, "subset": df.task, "model": df.model, "score_raw": df.correct.astype(float),
                          "answer_tokens": (df.output_chars / CHARS_PER_TOKEN).round().clip(lower=1),
                          "prompt_tokens": (df.input_chars / CHARS_PER_TOKEN).round().clip(lower=1), "contaminated": False})
    _write(table, out / "scores.csv.gz")
    questions = pd.read_csv(src / "questions.csv.gz")
    _write_prompts(dict(zip(questions.task + "/" + questions.id.astype(str), questions.question)), out / "prompts.csv.gz")
    for name in ("LICENSE",):
        shutil.copyfile(src / name, out / name)


# DeepSeek's API documentation (api-docs.deepseek.com/quick_start/token_usage): "1 English character ~ 0.3 token"
# for its tokenizer, and deepseek-reasoner's output tokens include every chain-of-thought token. The reasoning tables
# use that ratio (3.33 characters per token), not the generic 4, and count the whole answer, <think> block included.
DEEPSEEK_TOKENS_PER_CHAR = 0.3
# The tiers' dataset model names, smallest first (the paper's cascade, then R1 for the 4-tier option).
DEEPSEEK_MODELS = {
    "pm_llm_benchmark": ["deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-70b", "deepseek-v3", "deepseek-r1"],
    "korgym": ["deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-70b", "deepseek-v3-inferred",
               "deepseek-r1-inferred"],
}


def prepare_deepseek_reasoning(src: Path, out: Path) -> None:
    """Real DeepSeek answers: per-question grades and answer lengths of the cascade's own models (SOURCE.md in src).

    pm_llm_benchmark: 51 questions, grade 1-10 by two LLM judges; score_raw is the mean of the two judges' grades.
    korgym: reasoning-game prompts with a 0/1 game score; only prompts answered once by each of the four tier models
    are kept.
    Only the tier models are kept (the table's other distills are not in any cascade here)."""
    df = pd.read_csv(src / "deepseek_reasoning.csv.gz")
    for source, models in DEEPSEEK_MODELS.items():
        d = df[(df.source == source) & df.model.isin(models)]
        if source == "pm_llm_benchmark":
            g = d.groupby(["question_id", "model"], as_index=False).agg(score_raw=("score", "mean"),
                                                                       answer_chars=("answer_chars", "first"))
            g["subset"] = g.question_id.str.split("_").str[0]  # cat01 ... : the benchmark's question category
        else:
            g = d.rename(columns={"score": "score_raw", "task": "subset"})[
                ["question_id", "model", "score_raw", "answer_chars", "subset"]]
            # Three prompts occur more than once in a game (same prompt text, separate attempts): which attempt of
            # one model goes with which of another is unknown, so they leave the table.
            repeated = g[g.duplicated(["question_id", "model"])].question_id.unique()
            g = g[~g.question_id.isin(repeated)]
            full = g.groupby("question_id").model.nunique() == len(models)
            g = g[g.question_id.isin(full.index[full])]
        g["answer_tokens"] = (g.answer_chars * DEEPSEEK_TOKENS_PER_CHAR).round().clip(lower=1)
        g["prompt_tokens"] = float("nan")  # the source ships no prompt text: prompt lengths come from the trace
        g["contaminated"] = False
        _write(g, out / f"{source}.csv.gz", columns=[*COLUMNS, "answer_chars"])
    shutil.copyfile(src / "SOURCE.md", out / "SOURCE.md")


def prepare_azure(src: Path, out: Path) -> None:
    """Azure LLM inference 2023 traces: kept whole (they are the product's arrivals), only gzip-compressed."""
    out.mkdir(parents=True, exist_ok=True)
    for kind in ("conv", "code"):
        data = (src / f"AzureLLMInferenceTrace_{kind}.csv").read_bytes()
        with open(out / f"AzureLLMInferenceTrace_{kind}.csv.gz", "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
            gz.write(data)
    shutil.copyfile(src / "AzureLLMInferenceDataset2023.md", out / "AzureLLMInferenceDataset2023.md")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder holding the raw public datasets")
    args = parser.parse_args(argv)
    prepare_azure(args.source / "azure_llm_inference_2023", DATA_DIR / "azure_llm_inference_2023")
    prepare_arena(args.source / "arena_bench_v1", DATA_DIR / "arena_bench_v1")
    prepare_routellm(args.source / "routellm_evals", DATA_DIR / "routellm_evals")
    prepare_routerbench(args.source / "routerbench_subset", DATA_DIR / "routerbench_subset")
    prepare_zeroeval(args.source / "zeroeval_llama", DATA_DIR / "zeroeval_llama")
    prepare_deepseek_reasoning(args.source / "deepseek_reasoning", DATA_DIR / "deepseek_reasoning")


if __name__ == "__main__":
    main()
