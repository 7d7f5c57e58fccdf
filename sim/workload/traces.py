"""Read a request trace (CSV or JSONL, any column names and time unit) into arrival seconds and token counts.

Every malformed input becomes one DataError that names the file and the line (1-based, header = line 1 for CSV),
what was wrong, and what is valid; nothing else escapes (see tests/sim/workload/test_traces.py).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.common.errors import DataError
from sim.common.paths import PROJECT_ROOT
from sim.workload.config import TraceConfig
from sim.workload.prefix import parse_hash_ids

_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
# Mean arrival rate above which a numeric arrival column is read in the wrong unit. Public serving traces run at a
# few to a few hundred requests/s (Azure LLM inference 2023: ~5.5/s; BurstGPT and Mooncake lower still), and 32
# H100s serve a few hundred; 10,000/s is two orders of magnitude above both, while a seconds column read as us or ns
# lands at 1e6x or 1e9x the true rate.
MAX_TRACE_RATE_RPS = 1e4


@dataclass(frozen=True)
class Trace:
    """Requests of a trace in arrival order: seconds from the first request, prompt and answer token counts."""

    path: str
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple | None = None  # per request, the prompt's KV block hash ids (columns.hash_ids), or None

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if self.num_requests > 1 else 0.0


def resolve_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def display_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(p)


def _read_bytes(p: Path, shown: str) -> bytes:
    if not p.is_file():
        raise DataError(f"{shown}: trace file not found; give trace.path relative to the project root or absolute")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DataError(f"{shown}: cannot read the trace ({exc}); expected a readable (optionally gzip) text file") from None


def _read_text(p: Path, shown: str, raw: bytes) -> str:
    """The file's bytes (_read_bytes) as text, gunzipped where the name ends in .gz."""
    try:
        if p.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")  # an Excel "CSV UTF-8" export starts with a byte-order mark
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{shown}: cannot read the trace ({exc}); expected a readable (optionally gzip) text file") from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{shown} line {line}: not valid UTF-8 text; a trace must be UTF-8 CSV or JSONL") from None


def _read_csv(text: str, shown: str, wanted: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """DataFrame of the wanted columns (as strings) and the 1-based file line of each row."""
    if not text.strip():
        raise DataError(f"{shown}: the trace is empty; expected a header line and at least one request")
    header_line = next(i for i, line in enumerate(text.splitlines(), start=1) if line.strip())
    try:
        header = next(csv.reader([text.splitlines()[header_line - 1]]))
    except csv.Error as exc:
        raise DataError(f"{shown} line {header_line}: malformed CSV header ({exc})") from None
    header = [h.strip() for h in header]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{shown}: missing column {missing[0]!r}; the header has {header}; "
                        f"map the trace's columns with trace.columns.arrival/input_tokens/output_tokens")
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True,
                         skipinitialspace=True, engine="c")
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"{shown} line {m.group(2)}: {m.group(3)} fields where the header has {m.group(1)}; "
                            f"every line needs one value per column") from None
        m = re.search(r"row (\d+)", str(exc))
        where = f" line {int(m.group(1)) + 1}" if m else ""
        raise DataError(f"{shown}{where}: malformed CSV ({str(exc).strip().splitlines()[-1]})") from None
    except (pd.errors.EmptyDataError, ValueError, csv.Error) as exc:
        raise DataError(f"{shown}: malformed CSV ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise DataError(f"{shown}: the trace has a header but no requests")
    lines = np.arange(len(df)) + header_line + 1
    if re.search(r"\n[ \t\r]*\n", text.strip()):
        # pandas skips blank lines: map rows back to file lines from the text (only then worth the cost).
        nonblank = [i for i, line in enumerate(text.splitlines(), start=1) if line.strip() and i > header_line]
        if len(nonblank) == len(df):
            lines = np.asarray(nonblank)
    short = df[wanted].isna().to_numpy()
    if short.any():
        row, col = np.argwhere(short)[0]
        raise DataError(f"{shown} line {lines[row]}: no value for {wanted[col]}; every line needs one value per column")
    return df[wanted], lines


def _read_jsonl(text: str, shown: str, wanted: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    rows, lines = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{shown} line {i}: not valid JSON ({msg}); each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(f"{shown} line {i}: a JSON {type(obj).__name__} where a JSON object is expected")
        for c in wanted:
            if c not in obj:
                raise DataError(f"{shown} line {i}: missing key {c!r}; keys present: {sorted(obj)[:10]}; "
                                f"map the trace's keys with trace.columns.arrival/input_tokens/output_tokens")
        rows.append([obj[c] if isinstance(obj[c], str) else json.dumps(obj[c]) for c in wanted])
        lines.append(i)
    if not rows:
        raise DataError(f"{shown}: the trace has no requests")
    return pd.DataFrame(rows, columns=wanted), np.asarray(lines)


def _tokens(col: pd.Series, name: str, shown: str, lines: np.ndarray) -> np.ndarray:
    values = pd.to_numeric(col.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        if not col.iloc[i].strip():
            raise DataError(f"{shown} line {lines[i]}: no value for {name}; every line needs one value per column")
        raise DataError(f"{shown} line {lines[i]}: {name} is {col.iloc[i]!r}; token counts must be whole numbers >= 0")
    neg = values < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise DataError(f"{shown} line {lines[i]}: {name} is {col.iloc[i].strip()}; token counts must be >= 0")
    frac = (values != np.round(values)) | (values > 2**53)
    if frac.any():
        i = int(np.argmax(frac))
        raise DataError(f"{shown} line {lines[i]}: {name} is {col.iloc[i].strip()}; token counts must be whole numbers")
    return values.astype(np.int64)


def _arrivals(col: pd.Series, cfg: TraceConfig, shown: str, lines: np.ndarray) -> np.ndarray:
    name = cfg.columns.arrival
    if cfg.time_unit == "timestamp":
        text = col.str.strip()
        try:
            times = pd.to_datetime(text, format=cfg.timestamp_format or "ISO8601", errors="coerce")
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataError(f"{shown}: trace.timestamp_format {cfg.timestamp_format!r} is invalid ({exc})") from None
        bad = times.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            fmt = cfg.timestamp_format or "ISO 8601, e.g. 2023-11-16 18:15:46.6805900"
            raise DataError(f"{shown} line {lines[i]}: {name} is {col.iloc[i]!r}; expected a date-time ({fmt}), "
                            f"or set trace.time_unit to s|ms|us|ns for numbers")
        if getattr(times.dt, "tz", None) is not None:
            times = times.dt.tz_convert(None)
        ns = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        seconds = (ns - ns.min()) / 1e9
    else:
        values = pd.to_numeric(col.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{shown} line {lines[i]}: {name} is {col.iloc[i]!r}; expected a number of "
                            f"{cfg.time_unit} (trace.time_unit), or set trace.time_unit: timestamp for date-times")
        seconds = (values - values.min()) * _UNIT_S[cfg.time_unit]
        _check_unit(seconds, cfg, shown)
    return seconds


def _check_unit(seconds: np.ndarray, cfg: TraceConfig, shown: str) -> None:
    span_s = float(seconds.max()) if seconds.size else 0.0
    if seconds.size < 2 or span_s <= 0:
        return
    rate = (seconds.size - 1) / span_s
    if rate > MAX_TRACE_RATE_RPS:
        larger = [u for u, f in _UNIT_S.items() if f > _UNIT_S[cfg.time_unit]]
        raise DataError(f"{shown}: {seconds.size} requests in {span_s:.3g} s is {rate:.3g} requests/s when "
                        f"{cfg.columns.arrival} is read in trace.time_unit {cfg.time_unit!r}, above the "
                        f"{MAX_TRACE_RATE_RPS:g} requests/s of any serving trace; is the column in a larger unit "
                        f"({', '.join(larger)})?")


# Parsed traces by (settings, file content): a sweep builds the same workload for every quality level and seed, and
# a long-lived process (a lane of `make results`, experiments.lanes) for every sweep; parsing is most of the build.
_PARSED: OrderedDict = OrderedDict()
PARSED_MAX = 8


def read_trace(cfg: TraceConfig) -> Trace:
    """Parse the trace of cfg; arrivals in seconds from its first request, rows sorted by arrival (stable). A file
    parsed before with the same settings and the same bytes gives the same Trace (its arrays read-only)."""
    p = resolve_path(cfg.path)
    shown = display_path(p)
    raw = _read_bytes(p, shown)
    key = (repr(cfg), shown, hashlib.blake2b(raw, digest_size=16).digest())
    trace = _PARSED.get(key)
    if trace is None:
        trace = _parse_trace(cfg, p, shown, raw)
        for a in (trace.arrival_s, trace.input_tokens, trace.output_tokens):
            a.flags.writeable = False  # shared by every later reader
        _PARSED[key] = trace
        if len(_PARSED) > PARSED_MAX:
            _PARSED.popitem(last=False)
    else:
        _PARSED.move_to_end(key)
    return trace


def _parse_trace(cfg: TraceConfig, p: Path, shown: str, raw: bytes) -> Trace:
    text = _read_text(p, shown, raw)
    wanted = [cfg.columns.arrival, cfg.columns.input_tokens, cfg.columns.output_tokens]
    if cfg.columns.hash_ids is not None:
        wanted.append(cfg.columns.hash_ids)
    if len(set(wanted)) < len(wanted):
        raise DataError(f"{shown}: trace.columns map two fields to the same column ({wanted}); each needs its own")
    reader = _read_jsonl if cfg.format == "jsonl" else _read_csv
    df, lines = reader(text, shown, wanted)
    df = df.astype(str)
    arrival_s = _arrivals(df[wanted[0]], cfg, shown, lines)
    input_tokens = _tokens(df[wanted[1]], wanted[1], shown, lines)
    if (input_tokens == 0).any():  # an engine refuses an empty prompt; simulated, its first token came at once
        i = int(np.argmax(input_tokens == 0))
        raise DataError(f"{shown} line {lines[i]}: {wanted[1]} is 0; a prompt needs at least 1 token")
    output_tokens = _tokens(df[wanted[2]], wanted[2], shown, lines)
    order = np.argsort(arrival_s, kind="stable")
    hash_ids = None
    if cfg.columns.hash_ids is not None:
        rows = parse_hash_ids(df[wanted[3]], input_tokens, cfg.hash_block_tokens, wanted[3], shown, lines)
        hash_ids = tuple(rows[i] for i in order)
    return Trace(shown, arrival_s[order], input_tokens[order], output_tokens[order], hash_ids)
