"""python -m sim.fidelity.validate: the shipped example, a self-consistency round trip, and one-line errors for bad CSVs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.spec.hardware import load_gpu
from sim.spec.models import load_model
from sim.common.paths import DATA_DIR, PROJECT_ROOT
from sim.perf.cost_model import build_replica_cost
from sim.fidelity.validate import batch_prefill_time_s, decode_step_time_s, validate

HEADER = "model,gpu,tp,batch_size,prompt_tokens,prefill_ms,decode_ms_per_token"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.fidelity.validate", *map(str, args)], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=120)


def test_example_through_cli():
    out = run_cli(DATA_DIR / "validation" / "example.csv")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary) == {"prefill_mape_pct", "decode_mape_pct", "rows", "excluded_rows"} and summary["rows"] == 3
    assert sum("llama3_70b" in line for line in lines) == 2  # one printed row per CSV row
    # The example is illustrative public ballparks (batch-1 decode), so only a loose sanity bound.
    assert summary["decode_mape_pct"] < 30


def test_round_trip_of_the_models_own_predictions_is_exact(tmp_path):
    c = build_replica_cost(load_model("llama3_70b"), load_gpu("h100_sxm"), 4, 1)
    rows = []
    for b, p in [(1, 512), (8, 2000), (64, 300)]:
        rows.append(f"llama3_70b,h100_sxm,4,{b},{p},{batch_prefill_time_s(c, b, p) * 1e3!r},"
                    f"{decode_step_time_s(c, b, p + 64) * 1e3!r},128")
    path = tmp_path / "own.csv"
    path.write_text(HEADER + ",output_tokens\n" + "\n".join(rows) + "\n")
    table, summary = validate(path)
    assert summary == {"prefill_mape_pct": 0.0, "decode_mape_pct": 0.0, "rows": 3, "excluded_rows": 0}
    assert (table.prefill_pred_ms > 0).all()


@pytest.mark.parametrize("content,needle", [
    ("model,gpu,tp\nllama3_8b,h100_sxm,1\n", "missing column(s) ['batch_size'"),
    (HEADER + "\nllama3_8b,h100_sxm,two,1,512,16,7\n", "line 2: tp must be a positive integer, got 'two'"),
    (HEADER + "\n# comment\nllama3_8b,h100_sxm,1,1,512,-3,7\n", "line 3: prefill_ms must be a positive finite number"),
    (HEADER + "\ngpt5,h100_sxm,1,1,512,16,7\n", "line 2: unknown model 'gpt5'; valid names are"),
    (HEADER + "\nllama3_70b,h100_sxm,1,1,512,16,7\n", "line 2: llama3_70b in bf16 on TP1 x PP1 needs"),
    (HEADER + "\n", "no data rows"),
    (HEADER + "\nllama3_8b,h100_sxm,1,1,512,inf,7\n", "line 2: prefill_ms must be a positive finite number"),
    (HEADER + "\nllama3_8b,h100_sxm,1,1,512,16,nan\n", "line 2: decode_ms_per_token must be a positive finite"),
    (HEADER + "\nllama3_8b,h100_sxm,1,inf,512,16,7\n", "line 2: batch_size must be a positive integer"),
])
def test_bad_csv_is_one_line_exit_2(tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    out = run_cli(path)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_missing_file(tmp_path):
    out = run_cli(tmp_path / "nope.csv")
    assert out.returncode == 2 and "file not found" in out.stderr


def test_directory_is_one_line_exit_2(tmp_path):
    out = run_cli(tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "is a directory" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_rows_that_cannot_hold_their_kv_are_listed_not_predicted(tmp_path):
    # Llama-3-70B TP4 holds ~330k KV tokens at util 0.9: 64 x 640 fits, 1024 x 4224 and 10^9 x 640 do not. The
    # 10^9 row must fail the KV check at once instead of iterating over a billion prefill chunks.
    path = tmp_path / "kv.csv"
    path.write_text(HEADER + ",output_tokens\n"
                    "llama3_70b,h100_sxm,4,64,512,900,30,128\n"
                    "llama3_70b,h100_sxm,4,1024,4096,90000,90,128\n"
                    "llama3_70b,h100_sxm,4,1000000000,512,16,7,128\n")
    table, summary = validate(path)
    assert summary["rows"] == 1 and summary["excluded_rows"] == 2
    assert table.excluded.iloc[0] == "" and table.excluded.iloc[1].startswith("KV does not fit: 1024 x 4224 tokens")
    assert table.prefill_pred_ms.iloc[1:].isna().all()
    kept = table.iloc[0]
    assert summary["prefill_mape_pct"] == pytest.approx(abs(kept.prefill_err_pct), abs=0.01)
    out = run_cli(path)
    assert out.returncode == 0 and "excluded line 4: KV does not fit: 1000000000 x 640 tokens" in out.stdout


def test_corpus_and_csv_are_exclusive(tmp_path):
    out = run_cli(DATA_DIR / "validation" / "example.csv", "--corpus")
    assert out.returncode == 2 and "either a CSV file or --corpus" in out.stderr
    out = run_cli("--corpus", tmp_path)
    assert out.returncode == 2 and "no CSV files" in out.stderr


def test_prefill_of_a_large_batch_is_the_sum_of_its_iterations():
    c = build_replica_cost(load_model("llama3_8b"), load_gpu("h100_sxm"), 1, 1)
    from sim.perf.batch import BatchShape
    one = c.iteration_time_s(BatchShape(prefill_tokens=8 * 1000, prefill_attn_pairs=8 * 1000 * 1001 / 2,
                                        num_prefill_seqs=8))
    rest = c.iteration_time_s(BatchShape(prefill_tokens=3 * 1000, prefill_attn_pairs=3 * 1000 * 1001 / 2,
                                         num_prefill_seqs=3))
    assert batch_prefill_time_s(c, 8 * 5 + 3, 1000) == pytest.approx(5 * one + rest, rel=1e-12)
