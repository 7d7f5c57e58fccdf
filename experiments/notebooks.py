"""Execute every notebook in notebooks/ in place, so each is committed with its outputs (`make notebooks`).

The notebooks read only the committed tables in results/ and the shipped data in data/; they run top to bottom in
a fresh kernel from the project root. A notebook over 1 MB after execution is an error (figures are embedded).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.common.paths import PROJECT_ROOT

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
MAX_BYTES = 1_000_000


def execute(path: Path, timeout_s: int = 600):
    """Run one notebook in a fresh python3 kernel from the project root; return the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                   resources={"metadata": {"path": str(PROJECT_ROOT)}}).execute()
    return nb


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    import nbformat

    ap = argparse.ArgumentParser(prog="python -m experiments.notebooks", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="notebooks to run (default: every notebooks/*.ipynb)")
    args = ap.parse_args(argv)
    paths = [NOTEBOOK_DIR / (n if n.endswith(".ipynb") else f"{n}.ipynb") for n in args.names] or \
        sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"no notebook {', '.join(missing)}; valid: "
                        f"{', '.join(p.stem for p in sorted(NOTEBOOK_DIR.glob('*.ipynb')))}")
    for path in paths:
        t0 = time.perf_counter()
        nb = execute(path)
        for cell in nb.cells:  # execution counts and timings change every run; keep diffs to real changes
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(nb, path)
        size = path.stat().st_size
        print(f"{path.name:<20} {time.perf_counter() - t0:5.1f} s  {size / 1e3:6.0f} kB", file=sys.stderr)
        if size > MAX_BYTES:
            raise DataError(f"{path} is {size / 1e6:.2f} MB after execution (limit 1 MB): embed fewer or smaller figures")


if __name__ == "__main__":
    main()
