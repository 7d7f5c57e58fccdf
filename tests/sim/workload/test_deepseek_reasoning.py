"""The real-tier DeepSeek workloads: every request carries its bound question's real grade and real answer length.

Oracle: the shipped table read directly with pandas (not through sim.workload.quality), and, where the raw source
of ../shared is present, the raw rows (mean of the two judges, characters x 0.3)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.common.paths import PROJECT_ROOT
from sim.workload import build_workload

TABLE = PROJECT_ROOT / "data" / "deepseek_reasoning" / "pm_llm_benchmark.csv.gz"
RAW = PROJECT_ROOT.parent / "shared" / "data" / "deepseek_reasoning" / "deepseek_reasoning.csv.gz"


@pytest.mark.parametrize("name,tiers", [("deepseek_reasoning", 3), ("deepseek_reasoning_r1", 4),
                                        ("deepseek_reasoning_korgym", 3)])
def test_each_request_carries_its_questions_real_grade_and_length(name, tiers):
    w = build_workload(name, num_requests=400, seed=3)
    table = pd.read_csv(PROJECT_ROOT / "data" / "deepseek_reasoning" /
                        ("korgym.csv.gz" if "korgym" in name else "pm_llm_benchmark.csv.gz"))
    scale = 100.0 if "korgym" in name else 10.0
    assert w.num_tiers == tiers
    for t, model in enumerate(w.tier_models):
        rows = table[table.model == model].set_index("question_id")
        qids = [q.split(":", 1)[1] for q in w.question_ids]
        np.testing.assert_allclose(w.scores[:, t], rows.score_raw.loc[qids].to_numpy() * scale)
        # answer length: characters x 0.3 tokens, the <think> block included
        np.testing.assert_array_equal(w.output_tokens[:, t], np.maximum(np.rint(rows.answer_chars.loc[qids] * 0.3), 1))


@pytest.mark.skipif(not RAW.exists(), reason="raw source in ../shared not present")
def test_shipped_table_is_the_mean_of_the_two_judges():
    raw = pd.read_csv(RAW)
    raw = raw[raw.source == "pm_llm_benchmark"]
    table = pd.read_csv(TABLE)
    for model in table.model.unique():
        expect = raw[raw.model == model].groupby("question_id").score.mean()
        got = table[table.model == model].set_index("question_id").score_raw
        assert len(got) == 51
        np.testing.assert_allclose(got.loc[expect.index], expect)


def test_describe_reports_tier_lengths_and_the_distilled_tiers_reason_at_length():
    proc = subprocess.run([sys.executable, "-m", "sim.workload", "describe", "deepseek_reasoning"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    assert s["questions"] == 51 and len(s["tier_mean_output_tokens"]) == 3 and len(s["tier_mean_score"]) == 3
    # the bar: the two R1-distilled tiers answer with >= 1,000 tokens on average (reasoning included)
    assert min(s["tier_mean_output_tokens"][:2]) >= 1000
    # V3 has no reasoning block: it answers shorter than both distilled tiers
    assert s["tier_mean_output_tokens"][2] < min(s["tier_mean_output_tokens"][:2])
