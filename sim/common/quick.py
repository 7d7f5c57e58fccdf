"""Smoke-run mode: CASCADESIM_QUICK=1 shrinks horizons, bisection steps and benchmark sizes (read here only).

Every documented command must run as written; the test that runs them (tests/test_readme_commands.py) sets this
variable so the whole README and docs/ finish in minutes. Results made in quick mode are not the documented ones:
each entry point that honours it says so on stderr.
"""
from __future__ import annotations

import os
import sys

ENV_VAR = "CASCADESIM_QUICK"

# experiments.run: a 120 s window (the code trace has no arrival between 30 s and 60 s, and the train/test split
# needs requests on both sides of its midpoint), 2 bisection steps on 60 s, a small planning sample. Sweeps keep every job: the
# figures read each sweep's full grid (both arms of an on/off experiment), and a 60 s job takes seconds.
EXPERIMENT_OVERRIDES = ("horizon_s=120", "throughput.iters=2", "throughput.horizon_s=60", "plan_sample_size=300")


def quick_mode() -> bool:
    """True when CASCADESIM_QUICK is set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("", "0", "false", "no")


def announce(what: str) -> None:
    """One stderr line so nobody mistakes a quick run's numbers for the documented ones."""
    print(f"{ENV_VAR} is set: {what} (smoke run; the numbers are not the documented ones)", file=sys.stderr)


def experiment_overrides(argv: list[str]) -> list[str]:
    """The quick-mode overrides for experiments.run, leaving out any key the user set on the command line."""
    given = {a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a}
    return [o for o in EXPERIMENT_OVERRIDES if o.split("=", 1)[0] not in given]
