"""Quality binding: per-tier scores are jointly real (their correlation survives binding); score rules; data size."""
from __future__ import annotations

import numpy as np
import pytest

from sim.common.paths import DATA_DIR
from sim.workload import build_workload, dataset_models, tier_table
from sim.workload.quality import dataset_names, load_quality


@pytest.mark.parametrize("name", ["conversation", "coding", "math"])
def test_bound_sample_keeps_the_datasets_per_tier_score_correlation(name):
    w = build_workload(name, num_requests=8000, seed=11)
    pool = tier_table(w.meta["dataset"], w.tier_models, w.meta["score_rule"])
    n = w.num_requests
    for i in range(w.num_tiers):
        for j in range(i + 1, w.num_tiers):
            r_pool = np.corrcoef(pool.scores[:, i], pool.scores[:, j])[0, 1]
            r_bound = np.corrcoef(w.scores[:, i], w.scores[:, j])[0, 1]
            # Standard error of a sample correlation ~ (1 - r^2) / sqrt(n); 4 of them.
            assert abs(r_bound - r_pool) < 4 * (1 - r_pool ** 2) / np.sqrt(n), (i, j, r_bound, r_pool)
            assert r_pool > 0.15  # real scores are correlated: binding independently per tier would lose this


def test_binding_draws_questions_uniformly_with_replacement():
    w = build_workload("conversation", num_requests=19366, seed=0)
    counts = np.unique(w.question_ids, return_counts=True)[1]
    assert counts.size == 291
    expected = 19366 / 291
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 290 + 5 * np.sqrt(2 * 290)  # chi-square with 290 dof, 5 sigma


def test_per_tier_output_lengths_come_from_the_bound_questions_answers():
    table = load_quality("arena_bench_v1")
    w = build_workload("conversation", num_requests=500, max_output_tokens=None)
    cols = [table.models.index(m) for m in w.tier_models]
    rows = [int(np.nonzero(table.question_ids == q.split(":", 1)[1])[0][0]) for q in w.question_ids]
    np.testing.assert_array_equal(w.output_tokens, table.answer_tokens[rows][:, cols].astype(np.int64))
    np.testing.assert_array_equal(w.scores, table.score_raw[rows][:, cols] * 10)


def test_scaled_lengths_keep_the_trace_total_and_real_tier_ratios():
    w = build_workload("coding", num_requests=2000, output_lengths="scaled")
    t = build_workload("coding", num_requests=2000, output_lengths="trace")
    mean_per_request = w.output_tokens.mean(axis=1)
    # Rounding and the 1-token floor move each request by at most ~1 token per tier.
    assert np.all(np.abs(mean_per_request - t.output_tokens[:, 0]) <= 1.5)


def test_binary_rule_and_invalid_judgments():
    gsm = tier_table("gsm8k", ["Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"])
    assert set(np.unique(gsm.scores)) == {0.0, 100.0}
    assert gsm.dropped_contaminated == 12
    arena = tier_table("arena_bench_v1", ["Mistral-7B-Instruct-v0.1", "gpt-4-1106-preview"])
    assert np.all(np.isfinite(arena.scores)) and arena.scores.min() >= 10 and arena.scores.max() <= 100


def test_mmlu_has_no_answers_so_dataset_lengths_are_refused():
    from sim.common.errors import ConfigError

    cfg = {"name": "mmlu", "trace": {"path": "data/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv.gz"},
           "quality": {"dataset": "mmlu", "tier_models": ["Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"],
                       "subsets": ["high_school_mathematics", "college_mathematics"], "output_lengths": "dataset"}}
    with pytest.raises(ConfigError, match="output_lengths: trace"):
        build_workload(cfg, num_requests=10)
    cfg["quality"]["output_lengths"] = "trace"
    w = build_workload(cfg, num_requests=1000)
    assert all(q.startswith("mmlu:mmlu-high_school_mathematics") or q.startswith("mmlu:mmlu-college_mathematics")
               for q in w.question_ids)


def test_every_dataset_lists_its_models():
    models = dataset_models()
    assert set(models) == set(dataset_names())
    assert "gpt-4-1106-preview" in models["routerbench_mbpp"] and len(models["routerbench_mbpp"]) == 11


def test_shipped_data_is_compact():
    files = [p for p in DATA_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 12 * 2**20
    assert max(p.stat().st_size for p in files) <= 5 * 2**20
    for folder in ("azure_llm_inference_2023", "arena_bench_v1", "routellm_evals", "routerbench_subset", "zeroeval_llama"):
        names = {p.name for p in (DATA_DIR / folder).iterdir()}
        assert "SOURCE.md" in names and any(n.startswith("LICENSE") for n in names)


def test_compact_tables_match_the_raw_sources(shared_data):
    import pandas as pd

    raw = pd.read_csv(shared_data / "routellm_evals" / "gsm8k" / "gsm8k_responses.csv")
    table = load_quality("gsm8k")
    col = table.models.index("gpt-4-1106-preview")
    assert table.score_raw[:, col].mean() == pytest.approx(raw["gpt-4-1106-preview"].mean())


def test_shipped_zeroeval_and_prompt_tables_rebuild_byte_identical(shared_data, tmp_path):
    from sim.workload.prepare_data import prepare_arena, prepare_zeroeval

    prepare_zeroeval(shared_data / "zeroeval_llama", tmp_path / "zeroeval_llama")
    prepare_arena(shared_data / "arena_bench_v1", tmp_path / "arena_bench_v1")
    for rel in ("zeroeval_llama/scores.csv.gz", "zeroeval_llama/prompts.csv.gz", "arena_bench_v1/prompts.csv.gz"):
        assert (tmp_path / rel).read_bytes() == (DATA_DIR / rel).read_bytes(), rel


def test_zeroeval_tiers_reproduce_upstream_accuracy():
    import pandas as pd

    table = load_quality("zeroeval_llama")
    gsm = table.subsets == "gsm"
    acc = {m: float(np.nanmean(table.score_raw[gsm, table.models.index(m)])) * 100 for m in table.models}
    # ZeroEval's published GSM8K accuracies (data/zeroeval_llama/SOURCE.md).
    assert acc["llama3.1_8b"] == pytest.approx(84.00, abs=0.01) and acc["llama3.1_405b"] == pytest.approx(95.98, abs=0.01)
    assert pd.Series(table.prompts[gsm]).str.len().min() > 20


def test_llama31_two_tier_cascade_binds_8b_and_70b():
    import yaml

    from sim.spec.cascade import cascade_from_dict
    from sim.common.paths import CONF_DIR

    def load_cascade(name):
        return cascade_from_dict(yaml.safe_load((CONF_DIR / "cascade" / f"{name}.yaml").read_text()))

    w = build_workload("llama_math", cascade=load_cascade("llama31_2tier"), num_requests=200)
    assert w.tier_models == ("llama3.1_8b", "llama3.1_70b")
    w3 = build_workload("llama_math", cascade=load_cascade("llama31"), num_requests=200)
    assert w3.tier_models == ("llama3.1_8b", "llama3.1_70b", "llama3.1_405b")
    assert w3.meta["dropped_invalid_questions"] == 15  # the 405B run answered 706 of 721 MATH level-5 problems
