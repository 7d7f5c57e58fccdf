"""`make results`' lanes: one long-lived process per core that runs the sweeps it is given one after another in itself.

A sweep run this way pays no interpreter start and no imports of pandas, scipy, matplotlib, Hydra and the simulator
(about 1-2 CPU s each), and the process-level caches (planners.plan_cache's tables and replica models, RouteLLM's
features and fits, the reference-latency memo) see every sweep of the lane, not one. Every cache is keyed on the
content of its inputs, so a sweep's tables are those of a sweep in a fresh process (checked on every table of `make
results`); only the run-to-run timing columns (plan_s, sim_s) differ, as they do from run to run.

The driver (experiments.make_results) holds one Lane per core. A lane process reads one JSON request a line on its
stdin, a sweep's `experiments.run` arguments, runs it (Hydra's global state cleared first), and answers on a pipe of
its own (stdout and stderr stay the sweep's, as a sweep's subprocess had them) with the exit code and the CPU seconds
the sweep took in it.

python -m experiments.lanes FD   (started by the driver; FD: the pipe's write end for the answers)
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children it waited for (a lane's sweep, the driver's
    lanes once closed)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_here(argv: list[str]) -> int:
    """`python -m experiments.run ARGV` in this process; its exit code (0 when it returns)."""
    from hydra.core.global_hydra import GlobalHydra

    from experiments.run import main

    GlobalHydra.instance().clear()  # whatever the sweep before this one left (Hydra's main also starts afresh)
    saved = sys.argv
    sys.argv = [str(Path(sys.executable).parent / "experiments.run"), *argv]
    try:
        main()
        return 0
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)  # a message (sys.exit("error: ...")) exits 1, as the interpreter would
        return 1
    finally:
        sys.argv = saved
        sys.stdout.flush()
        sys.stderr.flush()


def serve(reply_fd: int) -> None:
    """Run each request read on stdin; answer each on reply_fd. Ends when stdin closes."""
    import experiments.run  # noqa: F401  (the imports every sweep needs, once)

    with os.fdopen(reply_fd, "w") as replies:
        for line in sys.stdin:
            if not line.strip():
                continue
            argv = json.loads(line)
            c0 = cpu_s()
            rc = run_here(argv)
            replies.write(json.dumps({"rc": rc, "cpu_s": cpu_s() - c0}) + "\n")
            replies.flush()


class Lane:
    """The driver's handle on one lane process (started at once, with env as its environment)."""

    def __init__(self, cwd: Path, env: dict | None = None) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "experiments.lanes", str(write_fd)], cwd=cwd,
                                         env=env, stdin=subprocess.PIPE, pass_fds=(write_fd,), text=True)
        finally:
            os.close(write_fd)  # the child holds its own copy: end of file here once it exits
        self.replies = os.fdopen(read_fd, "r")

    def run(self, argv: list[str]) -> float:
        """One sweep (`experiments.run` arguments) in the lane; its CPU seconds. A failed sweep raises SystemExit
        with its exit code, and so does a lane process that died (its own exit code, or 1)."""
        try:
            self.proc.stdin.write(json.dumps(list(argv)) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise SystemExit(self.proc.wait() or 1) from None
        line = self.replies.readline()
        if not line:
            raise SystemExit(self.proc.wait() or 1)
        reply = json.loads(line)
        if reply["rc"]:
            raise SystemExit(reply["rc"])
        return float(reply["cpu_s"])

    def close(self) -> None:
        """End the lane process (it finishes the request it is on first)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait()
        self.replies.close()


class LanePool:
    """Lane processes, each lent to one sweep at a time and started when first needed (so a run of one sweep starts
    one); a lane whose process died is not lent again."""

    def __init__(self, cwd: Path, env: dict | None = None) -> None:
        self.cwd, self.env = cwd, env
        self.idle: list[Lane] = []
        self.started: list[Lane] = []
        self.lock = threading.Lock()

    @contextmanager
    def lane(self):
        with self.lock:
            lane = self.idle.pop() if self.idle else None
        if lane is None:
            lane = Lane(self.cwd, self.env)
            with self.lock:
                self.started.append(lane)
        try:
            yield lane
        finally:
            if lane.proc.poll() is None:
                with self.lock:
                    self.idle.append(lane)

    def close(self) -> None:
        for lane in self.started:
            lane.close()


def reply_fd_of(argv: list[str]) -> int:
    """The answer pipe's descriptor from `python -m experiments.lanes FD` (started by experiments.make_results)."""
    from sim.common.errors import ConfigError

    if len(argv) != 1 or not argv[0].isdigit():
        raise ConfigError("experiments.lanes is started by `python -m experiments.make_results` with the file descriptor "
                          f"of its answer pipe (python -m experiments.lanes FD), got {argv!r}")
    fd = int(argv[0])
    try:
        os.fstat(fd)
    except OSError:
        raise ConfigError(f"experiments.lanes: file descriptor {fd} is not open (it is the answer pipe that "
                          "experiments.make_results passes)") from None
    return fd


if __name__ == "__main__":
    from sim.common.cli import exit_on_user_error

    exit_on_user_error(lambda: serve(reply_fd_of(sys.argv[1:])))()
