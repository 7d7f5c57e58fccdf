"""Block hash ids in traces: Mooncake's JSONL format through config alone, CSV list syntaxes, bad cells as one
DataError, the describe CLI's prefix_reuse_pct, and hashes that follow windows, takes and drift phases."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sim.common.errors import ConfigError, DataError
from sim.common.paths import PROJECT_ROOT
from sim.workload import build_workload, read_trace
from sim.workload.config import TraceColumns, TraceConfig
from sim.workload.prefix import PrefixHashes

# Mooncake's published trace format (kvcache-ai/Mooncake, FAST25-release/traces): ms timestamps and 512-token
# hash blocks, one id per block, the last block partial. Made-up rows: every request shares block 0 (a system
# prompt); request 2 continues request 0's conversation (its first 3 blocks); request 3 repeats request 1.
MOONCAKE_ROWS = [
    {"timestamp": 0, "input_length": 1500, "output_length": 40, "hash_ids": [0, 1, 2]},
    {"timestamp": 0, "input_length": 700, "output_length": 12, "hash_ids": [0, 3]},
    {"timestamp": 3000, "input_length": 2100, "output_length": 30, "hash_ids": [0, 1, 2, 4, 5]},
    {"timestamp": 6000, "input_length": 700, "output_length": 12, "hash_ids": [0, 3]},
]
# Blocks seen earlier, same prefix: r1 1 (block 0), r2 3, r3 2 -> 6 of 12.
MOONCAKE_REUSE_PCT = 50.0

# The mapping docs/prefix_caching.md gives for Mooncake's traces.
MOONCAKE_TRACE = {"format": "jsonl", "time_unit": "ms", "hash_block_tokens": 512,
                  "columns": {"arrival": "timestamp", "input_tokens": "input_length", "output_tokens": "output_length",
                              "hash_ids": "hash_ids"}}


def mooncake_config(tmp_path) -> dict:
    path = tmp_path / "mooncake.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in MOONCAKE_ROWS) + "\n")
    return {"name": "mooncake", "trace": {**MOONCAKE_TRACE, "path": str(path)},
            "quality": {"dataset": "gsm8k", "tier_models": ["Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"],
                        "output_lengths": "trace"}}


def test_mooncake_format_reads_through_config_alone(tmp_path):
    w = build_workload(mooncake_config(tmp_path))
    assert w.prefix.block_tokens == 512
    assert w.prefix.hash_ids == tuple(tuple(r["hash_ids"]) for r in MOONCAKE_ROWS)
    np.testing.assert_allclose(w.arrival_s, [0.0, 0.0, 3.0, 6.0])
    assert w.prefix.reuse_pct() == pytest.approx(MOONCAKE_REUSE_PCT)
    # Windows and takes keep each request's hashes with it.
    late = w.window(2.0, 10.0)
    assert late.prefix.hash_ids == (tuple(MOONCAKE_ROWS[2]["hash_ids"]), tuple(MOONCAKE_ROWS[3]["hash_ids"]))
    assert w.scale_rate(2.0).prefix is w.prefix


def test_describe_cli_reports_prefix_reuse(tmp_path):
    cfg_path = tmp_path / "mooncake.yaml"
    cfg_path.write_text(yaml.safe_dump(mooncake_config(tmp_path)))
    proc = subprocess.run([sys.executable, "-m", "sim.workload", "describe", str(cfg_path)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["prefix_reuse_pct"] == MOONCAKE_REUSE_PCT
    assert "prefix reuse: 50.0%" in proc.stdout


def test_csv_hash_lists_in_three_spellings(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('t,in,out,blocks\n0.0,40,5,"[7,8,9]"\n1.0,40,5,7 8 9\n2.0,33,5,7;8;10\n3.0,5,5,\n')
    trace = read_trace(TraceConfig(path=str(path), time_unit="s", hash_block_tokens=16,
                                   columns=TraceColumns("t", "in", "out", hash_ids="blocks")))
    assert trace.hash_ids == ((7, 8, 9), (7, 8, 9), (7, 8, 10), ())
    # Full blocks only (floor) is accepted too, as vLLM hashes only full blocks.
    path.write_text("t,in,out,blocks\n0.0,40,5,7 8\n")
    trace = read_trace(TraceConfig(path=str(path), time_unit="s",
                                   columns=TraceColumns("t", "in", "out", hash_ids="blocks")))
    assert trace.hash_ids == ((7, 8),)


BAD_HASHES = {
    "not_integers": ('0.0,40,5,"[7, x, 9]"\n', "line 2: blocks is '[7, x, 9]'; expected a list of integer"),
    "wrong_block_size": ("0.0,40,5,7 8 9\n1.0,1024,5,1 2\n", "line 3: 2 blocks for 1024 input tokens"),
}


@pytest.mark.parametrize("case", sorted(BAD_HASHES))
def test_bad_hash_cells_name_the_line(tmp_path, case):
    text, expected = BAD_HASHES[case]
    path = tmp_path / "bad.csv"
    path.write_text("t,in,out,blocks\n" + text)
    with pytest.raises(DataError, match="hash_block_tokens" if case == "wrong_block_size" else "integer") as exc:
        read_trace(TraceConfig(path=str(path), time_unit="s", columns=TraceColumns("t", "in", "out", "blocks")))
    assert expected in str(exc.value) and str(path) in str(exc.value)


def test_bad_hash_block_size_is_a_config_error(tmp_path):
    cfg = mooncake_config(tmp_path)
    cfg["trace"]["hash_block_tokens"] = 0
    with pytest.raises(ConfigError, match=r"trace\.hash_block_tokens = 0 is out of range; it must be an integer >= 1"):
        build_workload(cfg)


def test_drift_phases_of_different_traces_never_share_blocks():
    a = PrefixHashes(16, ((1, 2), (1, 2)))
    b = PrefixHashes(16, ((1, 2),))
    same = PrefixHashes.concat([a, b], [2, 1], ["x.jsonl", "x.jsonl"])
    other = PrefixHashes.concat([a, b], [2, 1], ["x.jsonl", "y.jsonl"])
    assert same.chained[2] == same.chained[0] and other.chained[2] != other.chained[0]
    assert PrefixHashes.concat([None, None], [2, 1], ["x", "y"]) is None
    with pytest.raises(ConfigError, match="hash_block_tokens"):
        PrefixHashes.concat([a, PrefixHashes(512, ((1,),))], [2, 1], ["x", "y"])


def test_hash_column_must_be_its_own_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("t,in,out\n0.0,40,5\n")
    with pytest.raises(DataError, match="map two fields to the same column"):
        read_trace(TraceConfig(path=str(path), time_unit="s", columns=TraceColumns("t", "in", "out", hash_ids="in")))
