"""Trace reader: the real Azure traces, a new format through config alone, and every bad input as one UserError."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.common.errors import DataError, UserError
from sim.common.paths import PROJECT_ROOT
from sim.workload import build_workload, read_trace
from sim.workload.config import TraceColumns, TraceConfig

CONV = "data/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv.gz"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def test_azure_conversation_trace_reads_fast_and_whole():
    t0 = time.perf_counter()
    trace = read_trace(TraceConfig(path=CONV))
    elapsed = time.perf_counter() - t0
    assert trace.num_requests == 19366
    assert trace.arrival_s[0] == 0.0 and np.all(np.diff(trace.arrival_s) >= 0)
    # 18:15:46.6805900 -> 18:15:50.9951690: the 7 fractional digits survive parsing.
    assert trace.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert 3400 < trace.duration_s < 3600
    assert (trace.input_tokens[0], trace.output_tokens[0]) == (374, 44)
    assert elapsed < 1.0


def test_new_jsonl_format_is_usable_through_config_alone(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"t_ms": 1000 + 250 * i, "prompt_len": 100 + i, "gen_len": 10 + i} for i in range(40)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = {"name": "mine", "trace": {"path": str(path), "format": "jsonl", "time_unit": "ms",
                                     "columns": {"arrival": "t_ms", "input_tokens": "prompt_len", "output_tokens": "gen_len"}},
           "quality": {"dataset": "gsm8k", "tier_models": ["Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"],
                       "output_lengths": "trace"}}
    w = build_workload(cfg)
    assert w.num_requests == 40
    np.testing.assert_allclose(w.arrival_s, 0.25 * np.arange(40))
    np.testing.assert_array_equal(w.input_tokens, 100 + np.arange(40))
    np.testing.assert_array_equal(w.output_tokens[:, 1], 10 + np.arange(40))


def test_numeric_csv_in_seconds_with_other_column_names(tmp_path):
    path = tmp_path / "splitwise.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,10,3\n0.2,20,4\n1.0,30,5\n")
    trace = read_trace(TraceConfig(path=str(path), time_unit="s",
                                   columns=TraceColumns("arrived_at", "num_prefill_tokens", "num_decode_tokens")))
    np.testing.assert_allclose(trace.arrival_s, [0.0, 0.3, 0.8])  # sorted, from the first request
    np.testing.assert_array_equal(trace.input_tokens, [20, 10, 30])


def test_a_trace_parsed_before_is_reused_only_for_the_same_bytes_and_settings(tmp_path, monkeypatch):
    """read_trace's memo: the same file, settings and bytes give the parsed Trace again without parsing (its arrays
    read-only, so no reader can change it for the next); new bytes at the same path, or other settings, are parsed
    anew, and each result equals a parse with the memo emptied (the oracle)."""
    import sim.workload.traces as traces

    parsed = []
    real = traces._parse_trace
    monkeypatch.setattr(traces, "_parse_trace", lambda *a: parsed.append(a[2]) or real(*a))
    monkeypatch.setattr(traces, "_PARSED", type(traces._PARSED)())
    path = tmp_path / "t.csv"
    path.write_text("t,i,o\n0.5,10,3\n0.2,20,4\n")
    cfg = TraceConfig(path=str(path), time_unit="s", columns=TraceColumns("t", "i", "o"))
    first = read_trace(cfg)
    assert read_trace(cfg) is first and len(parsed) == 1
    with pytest.raises(ValueError):
        first.arrival_s[0] = 1.0
    path.write_text("t,i,o\n0.5,10,3\n0.1,20,4\n")  # same path and size, other bytes
    second = read_trace(cfg)
    assert len(parsed) == 2 and second.arrival_s.tolist() == [0.0, 0.4]
    in_ms = read_trace(TraceConfig(path=str(path), time_unit="ms", columns=TraceColumns("t", "i", "o")))
    assert len(parsed) == 3 and in_ms.arrival_s.tolist() == pytest.approx([0.0, 0.0004])
    traces._PARSED.clear()
    fresh = read_trace(cfg)
    assert fresh is not second and fresh.path == second.path and fresh.hash_ids == second.hash_ids
    for f in ("arrival_s", "input_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(fresh, f), getattr(second, f))
    for k in range(traces.PARSED_MAX + 2):  # bounded
        other = tmp_path / f"t{k}.csv"
        other.write_text(f"t,i,o\n0.5,{k + 1},3\n")
        read_trace(TraceConfig(path=str(other), time_unit="s", columns=TraceColumns("t", "i", "o")))
    assert len(traces._PARSED) == traces.PARSED_MAX


BAD_TRACES = {
    "malformed_line": (HEADER + "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0,12,5,9\n", "line 3"),
    "missing_column": ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,374\n", "missing column 'GeneratedTokens'"),
    "negative_tokens": (HEADER + "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0,-3,5\n",
                        "line 3: ContextTokens is -3; token counts must be >= 0"),
    "no_requests": (HEADER, "no requests"),
    "bad_timestamp": (HEADER + "yesterday,374,44\n", "line 2: TIMESTAMP is 'yesterday'"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRACES))
def test_bad_trace_gives_one_line_and_exit_2_through_the_cli(tmp_path, case):
    text, expected = BAD_TRACES[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "sim.workload", "describe", "conversation", "--trace", str(path)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("error: ") and str(path) in err and expected in err, err


def test_unknown_dataset_model_lists_the_valid_names():
    with pytest.raises(UserError) as info:
        build_workload("conversation", tier_models=["Mistral-7B", "gpt-4-1106-preview"])
    msg = str(info.value)
    assert "'Mistral-7B' is not a model of arena_bench_v1" in msg
    assert "Mistral-7B-Instruct-v0.1" in msg and "Llama-2-70b-chat" in msg


def test_missing_trace_file_is_a_user_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_trace(TraceConfig(path=str(tmp_path / "nope.csv")))


line = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line, max_size=6), header=st.booleans(), fmt=st.sampled_from(["csv", "jsonl"]),
       unit=st.sampled_from(["timestamp", "s"]))
def test_garbage_trace_lines_raise_only_user_errors(tmp_path, lines, header, fmt, unit):
    path = tmp_path / f"garbage.{fmt}"
    body = "\n".join(lines)
    if header and fmt == "csv":
        body = HEADER + body
    path.write_text(body, encoding="utf-8")
    try:
        trace = read_trace(TraceConfig(path=str(path), format=fmt, time_unit=unit))
    except UserError as exc:
        assert "\n" not in str(exc)
    else:  # garbage that happens to be a valid trace must be read correctly
        assert trace.num_requests >= 1 and np.all(trace.input_tokens >= 0) and np.all(np.diff(trace.arrival_s) >= 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=80))
def test_garbage_bytes_raise_only_user_errors(tmp_path, data):
    path = tmp_path / "bytes.csv"
    path.write_bytes(HEADER.encode() + data)
    try:
        read_trace(TraceConfig(path=str(path)))
    except UserError:
        pass


def _seconds_trace(tmp_path, n=200, span_s=600.0):
    path = tmp_path / "seconds.csv"
    times = np.linspace(0.0, span_s, n)
    path.write_text("t,inp,out\n" + "".join(f"{t:.3f},{100 + i},{20 + i}\n" for i, t in enumerate(times)))
    return path


@pytest.mark.parametrize("unit", ["us", "ns"])
def test_a_seconds_trace_read_with_a_smaller_unit_is_refused(tmp_path, unit):
    # 200 requests over 600 s read as us/ns would be 3e5 / 3e8 requests/s: no serving trace is that dense.
    path = _seconds_trace(tmp_path)
    cfg = TraceConfig(path=str(path), time_unit=unit, columns=TraceColumns("t", "inp", "out"))
    with pytest.raises(DataError) as exc:
        read_trace(cfg)
    msg = str(exc.value)
    assert "trace.time_unit" in msg and unit in msg and "requests/s" in msg


def test_the_same_trace_in_its_own_unit_reads(tmp_path):
    path = _seconds_trace(tmp_path)
    trace = read_trace(TraceConfig(path=str(path), time_unit="s", columns=TraceColumns("t", "inp", "out")))
    assert trace.num_requests == 200 and trace.duration_s == pytest.approx(600.0)


def test_a_utf8_bom_csv_reads_like_the_same_file_without_it(tmp_path):
    # Excel's "CSV UTF-8" export starts with a byte-order mark, which used to glue itself to the first column name.
    plain = _seconds_trace(tmp_path)
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    cols = TraceColumns("t", "inp", "out")
    a = read_trace(TraceConfig(path=str(plain), time_unit="s", columns=cols))
    b = read_trace(TraceConfig(path=str(bom), time_unit="s", columns=cols))
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)
