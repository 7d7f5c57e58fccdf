"""The resource-allocation MILP (min over allocations of the worst tier's p95) with two solver backends,
plus an exact enumeration oracle used to check it.

Model: binary x[i, f] for tier i on f GPUs; sum_f x[i, f] = 1 per tier; sum_i sum_f f x[i, f] <= N;
L >= sum_f l_i(f) x[i, f] per tier; minimise L. We use "<= N" because the tables are non-increasing in f,
so it has the same optimum as the paper's "= N" while letting us create variables only at the table's
breakpoints (where l_i(f) strictly drops) and never for infinite entries (deployment does not fit), which
keeps the 1024-GPU model small. Backends: "cbc" (python-mip, CBC) and "highs" (scipy.optimize.milp).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from sim.common.errors import ConfigError, UserError

BACKENDS = ("cbc", "highs")


class AllocationInfeasible(UserError):
    """No allocation of the GPU pool gives every loaded tier a deployment that fits."""


@dataclass(frozen=True)
class SolverSettings:
    backend: str = "highs"
    threads: int = 1
    seed: int = 0
    mip_gap: float = 0.0  # relative; 0 = prove optimality
    time_limit_s: float = 10.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"planner solver backend {self.backend!r} is unknown; valid: {list(BACKENDS)}")


@dataclass(frozen=True)
class Allocation:
    gpus: tuple[int, ...]
    latency_s: float  # the objective L
    status: str
    gap: float
    solve_s: float
    backend: str


def breakpoints(table: np.ndarray) -> np.ndarray:
    """GPU counts where a non-increasing table strictly drops (plus its first finite entry)."""
    finite = np.isfinite(table)
    prev = np.r_[np.inf, table[:-1]]
    return np.nonzero(finite & (table < prev))[0]


def _check_feasible(tables: list[np.ndarray], num_gpus: int) -> list[np.ndarray]:
    points = [breakpoints(t) for t in tables]
    if any(p.size == 0 for p in points) or sum(int(p[0]) for p in points) > num_gpus:
        need = [int(p[0]) if p.size else None for p in points]
        raise AllocationInfeasible(
            f"no allocation of {num_gpus} GPUs gives every tier a deployment that fits: the tiers need at least "
            f"{need} GPUs (None: the model fits no replica size that was searched)")
    return points


def solve_allocation(tables: list[np.ndarray], num_gpus: int, settings: SolverSettings = SolverSettings()) -> Allocation:
    """Solve the min-max allocation MILP; raises AllocationInfeasible when no allocation fits."""
    points = _check_feasible(tables, num_gpus)
    t0 = time.perf_counter()
    if settings.backend == "cbc":
        gpus, obj, status, gap = _solve_cbc(tables, points, num_gpus, settings)
    else:
        gpus, obj, status, gap = _solve_highs(tables, points, num_gpus, settings)
    # Many allocations tie at the optimal L (a non-bottleneck tier can take more GPUs for free); return the
    # canonical one, each tier on the fewest GPUs that reach L, so results do not depend on the backend.
    gpus = tuple(_fewest_gpus(t, p, obj) for t, p in zip(tables, points))
    return Allocation(gpus, obj, status, gap, time.perf_counter() - t0, settings.backend)


def _fewest_gpus(table: np.ndarray, points: np.ndarray, latency_s: float) -> int:
    ok = points[table[points] <= latency_s * (1 + 1e-9) + 1e-12]
    return int(ok[0])


def spread_spare(tables: list[np.ndarray], gpus: tuple[int, ...], num_gpus: int) -> tuple[int, ...]:
    """Give GPUs the min-max optimum leaves idle to the tiers, slowest tier first, each to its next
    breakpoint, while that lowers its latency and fits: same L, lower latency for the other tiers."""
    alloc = list(gpus)
    spare = num_gpus - sum(alloc)
    improved = True
    while spare > 0 and improved:
        improved = False
        for i in sorted(range(len(alloc)), key=lambda k: -float(tables[k][alloc[k]])):
            t = tables[i]
            nxt = np.nonzero(t[alloc[i] + 1:alloc[i] + spare + 1] < t[alloc[i]])[0]
            if nxt.size:
                step = int(nxt[0]) + 1
                alloc[i] += step
                spare -= step
                improved = True
                break
    return tuple(alloc)


def _scale(tables, points) -> float:
    """A lower bound on L (the slowest tier at its fastest): dividing by it puts the deciding coefficients
    near 1, so the solvers' absolute tolerances (about 1e-6) cannot hide real differences."""
    return max(max(float(t[p].min()) for t, p in zip(tables, points)), 1e-9)


def _solve_cbc(tables, points, num_gpus, s: SolverSettings):
    import logging

    # python-mip logs its version at INFO on import; under Hydra's INFO logging that line breaks progress bars.
    logging.getLogger("mip").setLevel(logging.WARNING)
    import mip

    m = mip.Model(sense=mip.MINIMIZE, solver_name=mip.CBC)
    m.verbose = 0
    m.threads = s.threads
    m.seed = s.seed
    m.max_mip_gap = s.mip_gap
    m.max_mip_gap_abs = 1e-9
    scale = _scale(tables, points)
    L = m.add_var("L", lb=0.0)
    xs = []
    for i, (t, p) in enumerate(zip(tables, points)):
        x = [m.add_var(f"x_{i}_{f}", var_type=mip.BINARY) for f in p]
        m += mip.xsum(x) == 1
        m += L >= mip.xsum(float(t[f] / scale) * xv for f, xv in zip(p, x))
        xs.append(x)
    m += mip.xsum(int(f) * xv for p, x in zip(points, xs) for f, xv in zip(p, x)) <= num_gpus
    m.objective = L
    status = m.optimize(max_seconds=s.time_limit_s)
    if status not in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE):
        raise AllocationInfeasible(f"the allocation MILP (CBC) ended with status {status.name} on {num_gpus} GPUs")
    gpus = tuple(int(p[int(np.argmax([xv.x for xv in x]))]) for p, x in zip(points, xs))
    obj = max(float(t[g]) for t, g in zip(tables, gpus))
    gap = 0.0 if status == mip.OptimizationStatus.OPTIMAL else float(m.gap)
    return gpus, obj, status.name, gap


def _solve_highs(tables, points, num_gpus, s: SolverSettings):
    from scipy.optimize import Bounds, LinearConstraint, milp

    # scipy's HiGHS interface exposes no thread or seed option: it runs HiGHS's deterministic default.
    sizes = [p.size for p in points]
    nvar = 1 + sum(sizes)
    scale = _scale(tables, points)
    c = np.zeros(nvar)
    c[0] = 1.0
    rows, lo, hi = [], [], []
    off = 1
    cap = np.zeros(nvar)
    for t, p in zip(tables, points):
        one = np.zeros(nvar)
        one[off:off + p.size] = 1.0
        rows.append(one); lo.append(1.0); hi.append(1.0)
        lat = np.zeros(nvar)
        lat[0] = -1.0
        lat[off:off + p.size] = t[p] / scale
        rows.append(lat); lo.append(-np.inf); hi.append(0.0)
        cap[off:off + p.size] = p
        off += p.size
    rows.append(cap); lo.append(-np.inf); hi.append(float(num_gpus))
    integrality = np.r_[0, np.ones(nvar - 1)]
    bounds = Bounds(np.zeros(nvar), np.r_[np.inf, np.ones(nvar - 1)])
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=integrality, bounds=bounds,
               options={"disp": False, "time_limit": s.time_limit_s, "mip_rel_gap": s.mip_gap})
    if res.status not in (0, 1) or res.x is None:
        raise AllocationInfeasible(f"the allocation MILP (HiGHS) ended with status {res.status} ({res.message}) "
                                   f"on {num_gpus} GPUs")
    gpus = []
    off = 1
    for p in points:
        gpus.append(int(p[int(np.argmax(res.x[off:off + p.size]))]))
        off += p.size
    obj = max(float(t[g]) for t, g in zip(tables, gpus))
    status = "OPTIMAL" if res.status == 0 else "FEASIBLE"
    gap = float(getattr(res, "mip_gap", 0.0) or 0.0)
    return tuple(gpus), obj, status, gap


def exact_allocation(tables: list[np.ndarray], num_gpus: int) -> tuple[tuple[int, ...], float]:
    """Exact min-max allocation by scanning candidate values of L (every finite table entry): the smallest L
    for which each tier's cheapest GPU count reaching L sums to <= N. Fast; used in search and as an oracle."""
    points = _check_feasible(tables, num_gpus)
    values = np.unique(np.concatenate([t[p] for t, p in zip(tables, points)]))
    # need_i(L) = first breakpoint with l_i <= L (tables non-increasing on breakpoints).
    def need(L: float) -> list[int] | None:
        out = []
        for t, p in zip(tables, points):
            k = np.searchsorted(-t[p], -L, side="left")  # first index with t[p] <= L
            if k >= p.size:
                return None
            out.append(int(p[k]))
        return out

    lo, hi = 0, values.size - 1
    while lo < hi:
        mid = (lo + hi) // 2
        n = need(values[mid])
        if n is not None and sum(n) <= num_gpus:
            hi = mid
        else:
            lo = mid + 1
    gpus = need(values[lo])
    return tuple(gpus), float(values[lo])


def brute_force_allocation(tables: list[np.ndarray], num_gpus: int) -> tuple[tuple[int, ...], float]:
    """Every allocation with sum <= N, for tests and the benchmark's small instances."""
    import itertools

    best, best_l = None, np.inf
    for alloc in itertools.product(range(num_gpus + 1), repeat=len(tables)):
        if sum(alloc) > num_gpus:
            continue
        lat = max(float(t[g]) for t, g in zip(tables, alloc))
        if lat < best_l - 1e-12 or (abs(lat - best_l) <= 1e-12 and best is not None and sum(alloc) < sum(best)):
            best, best_l = alloc, lat
    return tuple(best) if best is not None else tuple(), best_l
