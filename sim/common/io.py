"""Output files written so that a reader never sees half a file and the same data gives the same bytes.

write_atomic writes to a temporary name in the target's folder and renames it over the target (atomic on POSIX),
so an interrupted run leaves either the old file or the new one. CSV tables ending in .gz are gzip with mtime 0:
gzip's header otherwise stores the write time, and two runs of one seed would differ in bytes.
A run folder holds a RUNNING marker from its start until every output is written (claim_run_dir / mark_complete),
so aggregation can tell an interrupted run from a finished one; a run that stops on a user error removes it
(mark_failed): it wrote nothing worth reading and was not interrupted. A run folder holds one run only: claiming a
folder that already holds another run's files is a user error. Files get the permissions the umask gives any new
file (mkstemp alone makes them 0600, unreadable to colleagues sharing results).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sim.common.errors import DataError

RUNNING_MARKER = "RUNNING"
# What Hydra itself puts in a job's folder before the job runs: not another run's outputs.
HYDRA_OWN = (".hydra",)


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def write_atomic(path: Path | str, data: bytes | str) -> Path:
    """Write data to path via a temporary file in the same folder and a rename."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def gzip_bytes(raw: bytes, level: int = 1) -> bytes:
    """gzip with a fixed header (mtime 0, no file name): same input, same bytes. Level 1 by default: the run outputs
    (a request table per planner per job) are written often and read rarely; on a 0.9 MB request table level 1 is
    11x faster than gzip's default 9 for a file 15 % larger (measured 2026-12-07: 7.8 against 87 ms)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=0, compresslevel=level) as gz:
        gz.write(raw)
    return buf.getvalue()


def table_bytes(df, gz: bool, **to_csv_kwargs: Any) -> bytes:
    """The bytes write_table writes: a DataFrame as CSV, gzip-compressed (gzip_bytes) where gz."""
    raw = df.to_csv(index=False, **to_csv_kwargs).encode()
    return gzip_bytes(raw) if gz else raw


def write_table(df, path: Path | str, **to_csv_kwargs: Any) -> Path:
    """A DataFrame as CSV (gzip when the name ends in .gz), atomically."""
    path = Path(path)
    return write_atomic(path, table_bytes(df, path.name.endswith(".gz"), **to_csv_kwargs))


def write_json(obj: Any, path: Path | str, **dumps_kwargs: Any) -> Path:
    return write_atomic(path, json.dumps(obj, **dumps_kwargs))


def _yaml_loader():
    """PyYAML's SafeLoader reading `1.0e9` and `1e-3` as numbers, as Hydra (OmegaConf) does: plain YAML 1.1 reads an
    exponent without a sign or a dot as a string, so the same file would mean different things to the two readers."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
        [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))
    return Loader


def read_yaml(path: Path | str, what: str = "config file") -> dict:
    """The one YAML reader of user inputs (model, hardware, cluster, cascade, plan, engine, quality and workload files):
    a mapping, or one ConfigError naming the file (and the line of a syntax error). Interpolations are not resolved:
    these files are data."""
    import yaml

    from sim.common.errors import ConfigError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc})") from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of keys to values, got a {type(data).__name__}")
    return data


def mark_running(run_dir: Path | str) -> Path:
    marker = Path(run_dir) / RUNNING_MARKER
    marker.write_text("this run has not finished writing its outputs; aggregation skips it\n")
    return marker


def mark_complete(run_dir: Path | str) -> None:
    (Path(run_dir) / RUNNING_MARKER).unlink(missing_ok=True)


def mark_failed(run_dir: Path | str) -> None:
    """A run that stopped on a user error: not interrupted, so it must not read as such (it leaves no marker)."""
    mark_complete(run_dir)


def claim_run_dir(run_dir: Path | str, key: str = "output_dir") -> Path:
    """Mark run_dir RUNNING for a new run; a folder that already holds files of another run (finished, failed or
    interrupted) is refused: a second run would overwrite some of its files, leave the others stale and, stopped
    half way, make the first run read as interrupted."""
    check_run_dir_free(run_dir, key, hydra_started=True)
    return mark_running(run_dir)


def check_run_dir_free(run_dir: Path | str, key: str = "output_dir", hydra_started: bool = False) -> None:
    """A user error unless run_dir is absent or empty; hydra_started: Hydra's own .hydra/ and log of this job may
    already be there."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    taken = sorted(p.name for p in run_dir.iterdir()
                   if not (hydra_started and (p.name in HYDRA_OWN or p.name.endswith(".log"))))
    if taken:
        shown = ", ".join(taken[:4]) + (f" and {len(taken) - 4} more" if len(taken) > 4 else "")
        raise DataError(f"{key}={run_dir} already holds another run's files ({shown}); a run writes into a new or "
                        "empty folder so that two runs never mix: give another folder")


def is_incomplete(run_dir: Path | str) -> bool:
    return (Path(run_dir) / RUNNING_MARKER).exists()


def prepare_output_dir(path: Path | str, key: str = "output_dir") -> Path:
    """Create the output folder (and parents); a path that is a file or cannot be written is a user error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{key}={path} is an existing file, not a folder; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{key}={path} cannot be created ({exc.strerror}); give a writable folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataError(f"{key}={path} is not writable; give a writable folder")
    return path
