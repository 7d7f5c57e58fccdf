"""Schema and provenance checks for the public engine-measurement corpus in data/measurements."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

MEASUREMENTS = Path(__file__).resolve().parents[2] / "data" / "measurements"
HEADER = [
    "source", "engine", "engine_version", "gpu", "num_gpus", "tp", "pp", "model", "precision", "kind",
    "batch_size", "concurrency", "request_rate", "input_tokens", "output_tokens", "ttft_ms", "tpot_ms", "itl_ms",
    "e2e_latency_ms", "output_tokens_per_s", "total_tokens_per_s", "notes",
]
NUMERIC = [
    "num_gpus", "tp", "pp", "batch_size", "concurrency", "request_rate", "input_tokens", "output_tokens", "ttft_ms",
    "tpot_ms", "itl_ms", "e2e_latency_ms", "output_tokens_per_s", "total_tokens_per_s",
]
INTEGER = ["num_gpus", "tp", "pp", "batch_size", "concurrency", "input_tokens", "output_tokens"]
LATENCY = ["ttft_ms", "tpot_ms", "itl_ms", "e2e_latency_ms"]
THROUGHPUT = ["output_tokens_per_s", "total_tokens_per_s"]
KINDS = {"iteration", "serving", "offline_throughput"}
ALL_FILES = sorted(list(MEASUREMENTS.glob("*.csv")) + list(MEASUREMENTS.glob("*.csv.gz")))
# The issue-11 files share the wide schema above; the issue-18 files carry one metric per row (SOURCES-engines.md,
# SOURCES-moe.md), told apart by their header.
CSV_FILES = [p for p in ALL_FILES if p.suffix == ".csv" and p.open().readline().strip().split(",") == HEADER]
LONG_FILES = [p for p in ALL_FILES if p not in CSV_FILES]
LONG_COLUMNS = ["source", "engine", "engine_version", "gpu", "model", "precision", "tp", "input_tokens",
                "output_tokens", "metric", "value", "unit", "notes"]
MAX_FILE_BYTES = 1_000_000


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == HEADER, f"{path.name}: header differs from the corpus schema"
        return list(reader)


def _sources_sections() -> dict[str, str]:
    """Map each `## N. <file>.csv` heading of SOURCES.md to the text of its section."""
    text = (MEASUREMENTS / "SOURCES.md").read_text()
    parts = re.split(r"^## \d+\. ", text, flags=re.MULTILINE)[1:]
    sections = {}
    for part in parts:
        name = part.split()[0]
        sections[name] = part
    return sections


def test_corpus_is_not_empty():
    assert len(CSV_FILES) >= 6


@pytest.mark.parametrize("path", CSV_FILES, ids=lambda p: p.name)
def test_rows_follow_schema(path: Path):
    rows = _rows(path)
    assert rows, f"{path.name} has no rows"
    assert path.stat().st_size < MAX_FILE_BYTES
    for line, row in enumerate(rows, start=2):
        where = f"{path.name}:{line}"
        for key in ("source", "engine", "engine_version", "gpu", "model", "precision", "notes"):
            assert row[key].strip(), f"{where}: empty {key}"
        assert row["kind"] in KINDS, f"{where}: kind {row['kind']!r}"
        for key in NUMERIC:
            cell = row[key]
            if cell == "":
                continue
            value = float(cell)
            assert math.isfinite(value) and value > 0, f"{where}: {key}={cell} is not positive and finite"
            if key in INTEGER:
                assert value == int(value), f"{where}: {key}={cell} is not an integer"
        assert row["num_gpus"], f"{where}: num_gpus missing"
        if row["tp"] and row["pp"]:
            assert int(row["tp"]) * int(row["pp"]) <= int(row["num_gpus"]), f"{where}: tp*pp exceeds num_gpus"
        has_latency = any(row[k] for k in LATENCY)
        has_throughput = any(row[k] for k in THROUGHPUT)
        if row["kind"] == "iteration":
            assert row["batch_size"] and has_latency, f"{where}: an iteration row needs batch_size and a latency"
        elif row["kind"] == "serving":
            # An unbounded arrival rate (QPS=INF) has no number to put in request_rate; the notes must say so.
            unbounded = re.search(r"\binf\b", row["notes"], flags=re.IGNORECASE)
            assert row["request_rate"] or row["concurrency"] or unbounded, f"{where}: a serving row needs its load"
            assert has_latency or has_throughput, f"{where}: a serving row needs a measurement"
        else:
            assert has_throughput, f"{where}: an offline_throughput row needs a throughput"


@pytest.mark.parametrize("path", CSV_FILES, ids=lambda p: p.name)
def test_source_column_is_one_value_per_file(path: Path):
    assert len({row["source"] for row in _rows(path)}) == 1


@pytest.mark.parametrize("path", CSV_FILES, ids=lambda p: p.name)
def test_every_file_has_a_sources_section_and_a_licence_or_a_no_licence_statement(path: Path):
    sections = _sources_sections()
    assert path.name in sections, f"SOURCES.md has no '## N. {path.name}' section"
    licence_file = MEASUREMENTS / f"LICENSE-{path.stem}"
    says_none = re.search(r"no licen[cs]e file", sections[path.name], flags=re.IGNORECASE)
    assert licence_file.exists() or says_none, f"{path.name}: no LICENSE-{path.stem} and no 'no licence file' statement"


def _long_rows(path: Path) -> list[dict[str, str]]:
    import gzip
    import io

    text = gzip.decompress(path.read_bytes()).decode() if path.name.endswith(".gz") else path.read_text()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("path", LONG_FILES, ids=lambda p: p.name)
def test_long_format_rows_have_a_metric_a_value_and_provenance(path: Path):
    rows = _long_rows(path)
    assert rows and path.stat().st_size < MAX_FILE_BYTES
    assert all(c in rows[0] for c in LONG_COLUMNS), f"{path.name}: missing long-format columns"
    for line, row in enumerate(rows, start=2):
        assert row["metric"].strip() and row["unit"].strip() and row["source"].strip(), f"{path.name}:{line}"
        # A number, or a range as published ("20-22" tok/s per user): never text.
        bounds = row["value"].split("-") if re.fullmatch(r"[\d.]+-[\d.]+", row["value"]) else [row["value"]]
        assert all(math.isfinite(float(b)) for b in bounds), f"{path.name}:{line}: value {row['value']!r}"
    stem = path.name.split(".")[0]
    listed = (MEASUREMENTS / "SOURCES-engines.md").read_text() + (MEASUREMENTS / "SOURCES-moe.md").read_text()
    assert path.name in listed, f"{path.name} is not described in SOURCES-engines.md or SOURCES-moe.md"
    assert path.name in (MEASUREMENTS / "SOURCES.md").read_text(), f"{path.name} has no row in SOURCES.md"
    assert (MEASUREMENTS / f"LICENSE-{stem}").exists() or "licen" in listed.lower()


def test_splitwise_perf_model_is_not_a_source():
    """The splitwise-sim perf model is a reserved held-out check; no row may cite it."""
    for path in CSV_FILES:
        for row in _rows(path):
            assert "splitwise" not in row["notes"].lower(), f"{path.name} cites splitwise-sim"
    for path in LONG_FILES:
        for row in _long_rows(path):
            assert "splitwise" not in row["notes"].lower(), f"{path.name} cites splitwise-sim"
