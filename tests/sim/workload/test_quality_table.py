"""Quality data by config alone: a table written here, named by path with a column mapping and a score scale, runs
through `python -m sim.workload describe` and `python -m experiments.run` with no code change; bad tables exit 2."""
import gzip
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.common.errors import ConfigError, DataError, UserError
from sim.common.paths import PROJECT_ROOT
from sim.workload import build_workload
from sim.workload.quality import load_quality, prompts_for, tier_table

MODELS = ("tiny-lm", "mid-lm", "big-lm")
N_QUESTIONS = 60


def _write_table(path, fmt="csv"):
    """Grades 1-5 per question x model, answer lengths and prompts; three rows without a usable grade."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_QUESTIONS):
        hard = rng.random()
        for k, m in enumerate(MODELS):
            grade = int(np.clip(np.round(1 + 4 * (0.3 + 0.3 * k - hard) + rng.normal(0, 0.5)), 1, 5))
            rows.append({"qid": f"item{i}", "llm": m, "grade": grade, "len": 50 + 30 * k + i,
                         "text": f"question {i} {'hard' if hard > 0.5 else 'easy'} words"})
    rows[0]["grade"] = "n/a"  # not a number: no judgment (a number outside [1, 5] is an error, tested below)
    rows[4]["grade"] = None
    rows[7]["grade"] = None
    df = pd.DataFrame(rows)
    if fmt == "csv":
        with gzip.open(path, "wt") as f:
            df.to_csv(f, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return df


def _workload_yaml(path, table, **quality):
    cfg = {
        "name": "mytable",
        "trace": {"path": "data/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv.gz"},
        "quality": {"dataset": str(table), "tier_models": list(MODELS),
                    "columns": {"question_id": "qid", "model": "llm", "score": "grade", "output_tokens": "len",
                                "prompt": "text"},
                    "score_scale": [1, 5], **quality},
    }
    path.write_text(yaml.safe_dump(cfg))
    return cfg


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("quality") / "grades.csv.gz"
    return path, _write_table(path)


def test_a_table_named_by_path_binds_scaled_scores_and_counts_dropped_rows(table, tmp_path):
    path, df = table
    cfg = _workload_yaml(tmp_path / "w.yaml", path)
    w = build_workload(cfg, num_requests=500)
    assert w.meta["dropped_score_rows"] == 3
    assert w.meta["pool_questions"] == N_QUESTIONS - 3  # those three questions lack one tier's valid grade
    # [1, 5] -> 0-100 linearly: grade g becomes 25 (g - 1).
    grades = df.set_index(["qid", "llm"]).grade
    q0 = w.question_ids[0].split(":", 1)[1]
    assert w.scores[0].tolist() == [25.0 * (grades[(q0, m)] - 1) for m in MODELS]
    assert w.output_tokens[0].tolist() == [int(df.set_index(["qid", "llm"]).len[(q0, m)]) for m in MODELS]
    assert load_quality(str(path), cfg["quality"]["columns"], [1, 5]).prompts[0].startswith("question 0")
    texts = prompts_for(w.question_ids[:5], w.meta["quality_sources"])
    assert [t.split()[1] for t in texts] == [q.split(":item", 1)[1] for q in w.question_ids[:5]]


def test_jsonl_tables_read_alike(table, tmp_path):
    path = tmp_path / "grades.jsonl"
    _write_table(path, fmt="jsonl")
    a = build_workload(_workload_yaml(tmp_path / "w.yaml", table[0]), num_requests=200)
    b = build_workload(_workload_yaml(tmp_path / "w2.yaml", path), num_requests=200)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_describe_cli_runs_the_workload_file(table, tmp_path):
    wfile = tmp_path / "w.yaml"
    _workload_yaml(wfile, table[0])
    proc = subprocess.run([sys.executable, "-m", "sim.workload", "describe", str(wfile), "--num-requests", "300"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "quality rows dropped (score missing or outside the scale): 3" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1])["tier_models"] == list(MODELS)


@pytest.mark.parametrize("change,word", [
    ({"columns": {"question_id": "qid", "model": "llm", "score": "nope"}}, "quality.columns.score"),
    ({"score_scale": [5, 1]}, "min < max"),
    ({"dataset": "missing/table.csv"}, "not found"),
    ({"score_scale": None}, "score_scale is required"),
    ({"columns": {"question_id": "qid", "model": "llm", "score": "grade", "colour": "x"}}, "unknown key"),
])
def test_bad_tables_are_one_error_line_exit_2(table, tmp_path, change, word):
    wfile = tmp_path / "w.yaml"
    cfg = _workload_yaml(wfile, table[0])
    cfg["quality"].update(change)
    cfg["quality"] = {k: v for k, v in cfg["quality"].items() if v is not None}
    wfile.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "sim.workload", "describe", str(wfile)], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and word in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unreadable_table_is_a_data_error(tmp_path):
    bad = tmp_path / "broken.csv.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read"):
        load_quality(str(bad), None, [0, 1])
    with pytest.raises(ConfigError, match="built-in"):
        load_quality("gsm8k", None, [0, 1])


def test_experiments_run_with_a_workload_naming_the_table_by_path(table, tmp_path):
    """The user's flow: a workload file in their own config folder, picked with --config-dir, no code change."""
    conf = tmp_path / "conf" / "workload"
    conf.mkdir(parents=True)
    _workload_yaml(conf / "mytable.yaml", table[0])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--config-dir", str(tmp_path / "conf"),
                           "workload=mytable", "planner=[routellm,single_model]", "horizon_s=60",
                           "plan_sample_size=200", "throughput.enabled=false", "figure=false", "progress=false",
                           f"output_dir={out}"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"]["workload"] == "mytable"
    assert 0 <= summary["planners"]["routellm"]["router_accuracy"] <= 1
    assert summary["planners"]["single_model"]["dropped"] == 0


def _graded(tmp_path, change):
    """A small valid 1-5 table with one cell changed by change(rows)."""
    rows = [{"qid": f"q{i}", "llm": m, "grade": 1 + (i + k) % 5, "len": 40 + i} for i in range(30)
            for k, m in enumerate(MODELS)]
    change(rows)
    path = tmp_path / "graded.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


COLS = {"question_id": "qid", "model": "llm", "score": "grade", "output_tokens": "len"}


@pytest.mark.parametrize("value", [9, 0, -1])
def test_a_score_outside_score_scale_is_an_error_naming_the_line(tmp_path, value):
    # Before: the row was dropped without a word (and a wrong score_scale emptied the table).
    path = _graded(tmp_path, lambda rows: rows[4].update(grade=value))
    with pytest.raises(DataError) as exc:
        load_quality(str(path), COLS, [1, 5])
    msg = str(exc.value)
    assert "score_scale" in msg and "[1, 5]" in msg and f"line 6" in msg and str(value) in msg


def test_a_wrong_score_scale_says_so_instead_of_advising_subsets(tmp_path):
    path = _graded(tmp_path, lambda rows: None)
    with pytest.raises(UserError) as exc:
        tier_table(str(path), list(MODELS), columns=COLS, score_scale=[0, 1])
    assert "score_scale" in str(exc.value) and "subsets" not in str(exc.value)


def test_a_negative_answer_length_is_an_error_not_one_token(tmp_path):
    path = _graded(tmp_path, lambda rows: rows[7].update(len=-30))
    with pytest.raises(DataError) as exc:
        load_quality(str(path), COLS, [1, 5])
    assert "line 9" in str(exc.value) and "-30" in str(exc.value)


def test_a_missing_score_is_still_dropped_and_counted(tmp_path):
    path = _graded(tmp_path, lambda rows: rows[4].update(grade=None))
    assert load_quality(str(path), COLS, [1, 5]).dropped_rows == 1


def test_a_utf8_bom_quality_table_reads(tmp_path):
    path = _graded(tmp_path, lambda rows: None)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    a, b = load_quality(str(path), COLS, [1, 5]), load_quality(str(bom), COLS, [1, 5])
    np.testing.assert_array_equal(a.score_raw, b.score_raw)
