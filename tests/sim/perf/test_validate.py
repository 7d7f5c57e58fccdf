"""python -m sim.perf.validate: the shipped example, a self-consistency round trip, and one-line errors for bad CSVs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.hardware import load_gpu
from sim.models import load_model
from sim.paths import DATA_DIR, PROJECT_ROOT
from sim.perf.cost_model import build_replica_cost
from sim.perf.validate import batch_prefill_time_s, decode_step_time_s, validate

HEADER = "model,gpu,tp,batch_size,prompt_tokens,prefill_ms,decode_ms_per_token"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.perf.validate", *map(str, args)], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=120)


def test_example_through_cli():
    out = run_cli(DATA_DIR / "validation" / "example.csv")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary) == {"prefill_mape_pct", "decode_mape_pct", "rows"} and summary["rows"] == 3
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
    assert summary == {"prefill_mape_pct": 0.0, "decode_mape_pct": 0.0, "rows": 3}
    assert (table.prefill_pred_ms > 0).all()


@pytest.mark.parametrize("content,needle", [
    ("model,gpu,tp\nllama3_8b,h100_sxm,1\n", "missing column(s) ['batch_size'"),
    (HEADER + "\nllama3_8b,h100_sxm,two,1,512,16,7\n", "line 2: tp must be a positive integer, got 'two'"),
    (HEADER + "\n# comment\nllama3_8b,h100_sxm,1,1,512,-3,7\n", "line 3: prefill_ms must be a positive number"),
    (HEADER + "\ngpt5,h100_sxm,1,1,512,16,7\n", "line 2: unknown model 'gpt5'; valid names are"),
    (HEADER + "\nllama3_70b,h100_sxm,1,1,512,16,7\n", "line 2: llama3_70b in bf16 on TP1 x PP1 needs"),
    (HEADER + "\n", "no data rows"),
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
