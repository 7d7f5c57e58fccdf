"""planners.routing against independent oracles: hand-worked cases, per-request loops, brute force over every
threshold, binomial bounds on the router's sampled errors (one group of tests per function)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import planners.routing as routing
from planners.routing import (THRESHOLD_MAX, THRESHOLD_SKIP, best_attainable_quality, candidate_thresholds,
                              context_ok, direct_final_tiers, expected_direct_quality, final_tiers, quality,
                              reach_mask, replay_thresholds, search_thresholds)


# --- context_ok -----------------------------------------------------------------------------------------------------

def test_context_ok_counts_prompt_plus_answer_at_least_one_token_and_the_window_is_inclusive():
    # Prompt 10 tokens; answers of 0, 1 and 2 tokens (a 0-token answer still takes one token); windows 11 and 12.
    ok = context_ok(np.array([10, 10, 10]), np.array([[0, 0], [1, 1], [2, 2]]), [11, 12])
    # need = 10 + max(out, 1) = 11, 11, 12: exactly the window fits, one token more does not.
    assert ok.tolist() == [[True, True], [True, True], [False, True]]


def test_context_ok_matches_a_per_request_loop():
    rng = np.random.default_rng(5)
    inp = rng.integers(0, 200, size=60)
    out = rng.integers(0, 60, size=(60, 3))
    window = [120, 180, 250]
    expected = [[inp[r] + max(out[r, i], 1) <= window[i] for i in range(3)] for r in range(60)]
    assert context_ok(inp, out, window).tolist() == expected


# --- final_tiers ----------------------------------------------------------------------------------------------------

def _final_by_loop(scores, thresholds, accepts=None):
    """The documented rule, request by request: the first tier i < C-1 that can take the request and whose
    score >= thresholds[i]; else the last tier that can take it."""
    n, c = scores.shape
    out = []
    for r in range(n):
        can = [True] * c if accepts is None else list(accepts[r])
        pick = max(i for i in range(c) if can[i]) if any(can) else c - 1
        for i, h in enumerate(thresholds):
            if can[i] and scores[r, i] >= h:
                pick = i
                break
        out.append(pick)
    return out


def test_final_tiers_accepts_a_score_equal_to_the_threshold():
    scores = np.array([[50.0, 10.0, 0.0], [49.0, 70.0, 0.0], [49.0, 69.0, 0.0], [50.0, 70.0, 0.0]])
    assert final_tiers(scores, (50.0, 70.0)).tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize("seed", range(4))
def test_final_tiers_matches_a_per_request_loop_with_and_without_context_limits(seed):
    rng = np.random.default_rng(seed)
    c = 4
    scores = rng.choice([0.0, 25.0, 50.0, 75.0, 100.0], size=(80, c))  # many scores equal a threshold
    thresholds = tuple(rng.choice([0.0, 25.0, 50.0, 75.0, 100.0, THRESHOLD_SKIP], size=c - 1))
    accepts = rng.random((80, c)) < 0.7
    accepts[~accepts.any(axis=1), 0] = True  # a request no tier takes is planned away before routing
    got = final_tiers(scores, thresholds)
    assert got.dtype.kind == "i" and got.tolist() == _final_by_loop(scores, thresholds)
    assert final_tiers(scores, thresholds, accepts).tolist() == _final_by_loop(scores, thresholds, accepts)


def test_final_tiers_under_context_limits_falls_back_to_each_requests_own_last_accepting_tier():
    scores = np.zeros((3, 3))
    accepts = np.array([[True, True, False], [True, True, True], [True, False, False]])
    # Nobody passes a threshold: each request ends on the last tier that can take it (row by row).
    assert final_tiers(scores, (100.0, 100.0), accepts).tolist() == [1, 2, 0]
    # Threshold 0 accepts every score, and every request can take tier 0.
    assert final_tiers(scores, (0.0, 0.0), accepts).tolist() == [0, 0, 0]
    # A tier that cannot take a request is passed over even when the score would pass it.
    accepts2 = np.array([[False, True, True], [False, False, True], [True, True, True]])
    assert final_tiers(scores, (0.0, 0.0), accepts2).tolist() == [1, 2, 0]


# --- reach_mask -----------------------------------------------------------------------------------------------------

def test_reach_mask_serves_every_tier_up_to_the_final_one_except_skipped_and_refusing_tiers():
    final = np.array([0, 1, 2])
    assert reach_mask(final, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    skipped = reach_mask(final, 3, thresholds=(THRESHOLD_SKIP, 50.0))
    assert skipped.dtype == bool
    assert skipped.tolist() == [[False, False, False], [False, True, False], [False, True, True]]
    accepts = np.array([[True, True, True], [True, False, True], [False, True, True]])
    assert reach_mask(final, 3, accepts=accepts).tolist() == [[True, False, False], [True, False, False],
                                                              [False, True, True]]


# --- direct_final_tiers ---------------------------------------------------------------------------------------------

def _three_tier_scores(n, seed=0):
    return np.random.default_rng(seed).choice([0.0, 40.0, 80.0], size=(n, 3))


def test_direct_routing_without_errors_is_the_cascades_answering_tier():
    scores = _three_tier_scores(500)
    th = (40.0, 80.0)
    routes = direct_final_tiers(scores, th, 0.0, np.random.default_rng(1))
    assert routes.dtype.kind == "i" and routes.tolist() == final_tiers(scores, th).tolist()


def test_direct_routing_errors_pick_each_other_tier_uniformly():
    """error_rate 1: every request goes to one of the C-1 other tiers, each with probability 1/(C-1), drawn
    independently per request (binomial bounds, 5 sigma)."""
    n, c = 6000, 3
    scores = _three_tier_scores(n)
    th = (40.0, 80.0)
    cascade = final_tiers(scores, th)
    routes = direct_final_tiers(scores, th, 1.0, np.random.default_rng(2))
    assert routes.dtype.kind == "i" and ((routes >= 0) & (routes < c)).all()
    assert (routes != cascade).all()
    for f in range(c):
        mine = routes[cascade == f]
        for j in range(c):
            if j != f:
                share, m = (mine == j).mean(), mine.size
                assert abs(share - 0.5) < 5 * np.sqrt(0.25 / m), (f, j, share)


def test_direct_routing_errors_happen_at_the_error_rate():
    n, e = 20000, 0.3
    scores = _three_tier_scores(n, seed=3)
    th = (40.0, 80.0)
    cascade = final_tiers(scores, th)
    routes = direct_final_tiers(scores, th, e, np.random.default_rng(4))
    assert routes.dtype.kind == "i"
    wrong = routes != cascade
    assert abs(wrong.mean() - e) < 5 * np.sqrt(e * (1 - e) / n)
    assert ((routes >= 0) & (routes < 3)).all()


# --- expected_direct_quality ----------------------------------------------------------------------------------------

def _expected_by_enumeration(scores, thresholds, e):
    """Every route the router can take for each request, weighted by its probability."""
    n, c = scores.shape
    cascade = _final_by_loop(scores, thresholds)
    total = 0.0
    for r in range(n):
        for j in range(c):
            p = (1 - e) if j == cascade[r] else e / (c - 1)
            total += p * scores[r, j]
    return total / n


@pytest.mark.parametrize("c", [2, 3, 4])
def test_expected_direct_quality_is_the_probability_weighted_mean_over_routes(c):
    rng = np.random.default_rng(10 + c)
    scores = rng.uniform(0, 100, size=(50, c)).round(1)
    th = tuple(rng.uniform(20, 80, size=c - 1).round(1))
    for e in (0.0, 0.25, 1.0):
        assert expected_direct_quality(scores, th, e) == pytest.approx(_expected_by_enumeration(scores, th, e),
                                                                       rel=1e-12)


def test_expected_direct_quality_agrees_with_sampled_direct_routing():
    scores = _three_tier_scores(40000, seed=6)
    th, e = (40.0, 80.0), 0.2
    sampled = quality(scores, direct_final_tiers(scores, th, e, np.random.default_rng(7)))
    per_request_sd = scores.std()  # an upper bound on the spread of one request's routed score
    assert abs(sampled - expected_direct_quality(scores, th, e)) < 5 * per_request_sd / np.sqrt(scores.shape[0])


# --- candidate_thresholds and search_thresholds ---------------------------------------------------------------------

def test_few_distinct_scores_are_all_candidates_with_the_bounds():
    # Exactly max_candidates - 2 distinct scores, repeated unevenly (value k appears k+1 times): all are kept.
    values = np.arange(1.0, 23.0) * 4.0
    scores = np.repeat(values, np.arange(1, 23))
    cands = candidate_thresholds(scores)
    assert cands.tolist() == [0.0, *values.tolist(), 100.0]
    assert candidate_thresholds(np.array([30.0, 30.0, 100.0, 0.0])).tolist() == [0.0, 30.0, 100.0]


def _lower_quantiles(scores, levels):
    """numpy-free lower quantiles: the sorted value at floor(k (n-1) / (levels-1)), integer arithmetic."""
    s = sorted(scores)
    n = len(s)
    return sorted({s[(k * (n - 1)) // (levels - 1)] for k in range(levels)})


@pytest.mark.parametrize("max_candidates", [24, 10])
def test_many_distinct_scores_give_their_lower_quantiles(max_candidates):
    rng = np.random.default_rng(8)
    scores = rng.uniform(1.0, 99.0, size=201)  # (n-1) = 200: no level but the ends lands on an exact index
    got = candidate_thresholds(scores, max_candidates) if max_candidates != 24 else candidate_thresholds(scores)
    assert got.tolist() == [0.0, *_lower_quantiles(scores.tolist(), max_candidates - 2), 100.0]
    assert len(got) == max_candidates
    # Each candidate other than the bounds is a real score: it accepts exactly the answers at or above it.
    assert set(got[1:-1].tolist()) <= set(scores.tolist())


@pytest.mark.parametrize("distinct", [23, 24, 26, 40])
def test_candidates_never_exceed_max_candidates(distinct):
    scores = np.linspace(2.0, 98.0, distinct)
    got = candidate_thresholds(scores)
    assert len(got) <= 24 and got[0] == 0.0 and got[-1] == 100.0
    assert (np.diff(got) > 0).all()


def test_search_thresholds_are_the_candidates_plus_skip():
    scores = np.random.default_rng(9).uniform(1.0, 99.0, size=201)
    full = search_thresholds(scores)
    assert len(full) == 25 and full[-1] == THRESHOLD_SKIP
    assert full[:-1].tolist() == [0.0, *_lower_quantiles(scores.tolist(), 22), 100.0]
    small = search_thresholds(scores, 10)
    assert len(small) == 11 and small[-1] == THRESHOLD_SKIP
    assert small[:-1].tolist() == [0.0, *_lower_quantiles(scores.tolist(), 8), 100.0]


# --- replay_thresholds ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpus, expected", [
    ((4, 4, 4), (30.0, 40.0)),
    ((0, 4, 4), (THRESHOLD_SKIP, 40.0)),         # tier 0 undeployed, before the last deployed: skipped
    ((4, 0, 4), (30.0, THRESHOLD_SKIP)),
    ((4, 4, 0), (30.0, 40.0)),                   # the last tier undeployed: tier 1 is the last, it answers all
    ((4, 0, 0), (30.0, 40.0)),                   # only tier 0 deployed: nothing before it to skip
    ((1, 0, 0), (30.0, 40.0)),                   # one GPU is deployed
    ((1, 0, 1), (30.0, THRESHOLD_SKIP)),
    ((0, 0, 0), (THRESHOLD_SKIP, THRESHOLD_SKIP)),  # nothing deployed: the last tier stands, all before skipped
])
def test_replay_thresholds_skip_undeployed_tiers_before_the_last_deployed(gpus, expected):
    got = replay_thresholds((30, 40), gpus)
    assert got == expected and all(type(h) is float for h in got)


# --- best_attainable_quality ----------------------------------------------------------------------------------------

def _brute_force_best(scores):
    """Highest quality over every threshold in [0, 100] for integer scores (a real threshold h routes as
    ceil(h), so the integers 0..100 are the whole space), vectorised over all combinations."""
    grid = np.arange(0, 101, dtype=float)
    s = [scores[:, i].reshape((-1,) + (1,) * (scores.shape[1] - 1)) for i in range(scores.shape[1])]
    if scores.shape[1] == 2:  # axes: request, threshold 0
        routed = np.where(s[0] >= grid[None, :], s[0], s[1])
    else:  # axes: request, threshold 0, threshold 1
        routed = np.where(s[0] >= grid[None, :, None], s[0], np.where(s[1] >= grid[None, None, :], s[1], s[2]))
    return float(routed.mean(axis=0).max())


@pytest.mark.parametrize("c, seed", [(2, 0), (2, 1), (3, 2), (3, 3), (3, 4)])
def test_best_attainable_quality_is_the_brute_force_optimum_for_up_to_three_tiers(c, seed):
    rng = np.random.default_rng(seed)
    scores = rng.choice(np.arange(0.0, 101.0, 7.0), size=(40, c))  # <= 15 distinct scores: the grid is exact
    q, th = best_attainable_quality(scores)
    assert q == pytest.approx(_brute_force_best(scores), abs=1e-9)
    assert len(th) == c - 1 and quality(scores, final_tiers(scores, th)) == pytest.approx(q, abs=1e-12)


def test_three_tiers_search_the_full_grid_where_coordinate_ascent_stalls():
    """Hand-worked: each request is best on a different tier. From 'all to the last tier' (45), moving tier 0's
    threshold alone reaches 67.5 at best (all to tier 0, or only request 3), and from there no single
    threshold improves; only (90, 90) together gives 82.5."""
    scores = np.array([[60.0, 60.0, 90.0], [60.0, 60.0, 60.0], [60.0, 90.0, 30.0], [90.0, 60.0, 0.0]])
    q, th = best_attainable_quality(scores)
    assert q == pytest.approx(82.5) and th == (90.0, 90.0)


def test_best_attainable_quality_keeps_all_to_the_largest_when_nothing_beats_it():
    # Tier 1 (the largest) is better on every request and no score reaches 100: the start stands.
    scores = np.array([[10.0, 60.0], [20.0, 70.0], [5.0, 90.0]])
    assert best_attainable_quality(scores) == (pytest.approx(220.0 / 3), (THRESHOLD_MAX,))


def test_best_attainable_quality_returns_thresholds_that_reach_it_when_a_smaller_tier_is_best():
    # 2 tiers, tier 0 better everywhere: accept everything at tier 0.
    two = np.array([[60.0, 10.0], [70.0, 20.0], [90.0, 5.0]])
    q, th = best_attainable_quality(two)
    assert q == pytest.approx(220.0 / 3) and quality(two, final_tiers(two, th)) == pytest.approx(q)
    # 3 tiers, the middle tier best everywhere: (skip tier 0, accept all at tier 1).
    three = np.array([[10.0, 60.0, 0.0], [20.0, 70.0, 10.0], [5.0, 90.0, 30.0]])
    q, th = best_attainable_quality(three)
    assert q == pytest.approx(220.0 / 3) and quality(three, final_tiers(three, th)) == pytest.approx(q)
    assert final_tiers(three, th).tolist() == [1, 1, 1]


@pytest.mark.parametrize("max_candidates", [24, 8])
def test_best_attainable_quality_is_the_optimum_over_the_candidate_grid(max_candidates):
    """Continuous scores (more distinct values than candidates): the optimum over candidate_thresholds' grid
    (tested above), by numpy over every grid point."""
    rng = np.random.default_rng(12)
    s0 = rng.uniform(0, 100, size=300)
    s1 = np.clip(s0 + rng.normal(8, 25, size=300), 0, 100)
    scores = np.column_stack([s0, s1])
    grid = candidate_thresholds(s0, max_candidates)
    expected = np.where(s0[:, None] >= grid[None, :], s0[:, None], s1[:, None]).mean(axis=0).max()
    q, th = (best_attainable_quality(scores) if max_candidates == 24
             else best_attainable_quality(scores, max_candidates))
    assert q == pytest.approx(float(max(expected, s1.mean())), abs=1e-12) and th[0] in grid.tolist()


def test_four_tiers_coordinate_ascent_reaches_a_separable_optimum():
    """Hand-worked: request i is 90 on tier i and 30 elsewhere. Ascent from 'all to tier 3' (45) raises each
    threshold to 90 in turn (60, 75, 90): every request lands on its own tier, the brute-force optimum."""
    scores = np.full((4, 4), 30.0) + 60.0 * np.eye(4)
    q, th = best_attainable_quality(scores)
    assert q == pytest.approx(90.0) and th == (90.0, 90.0, 90.0)
    assert final_tiers(scores, th).tolist() == [0, 1, 2, 3]


def test_four_tiers_coordinate_ascent_finds_small_gains_and_returns_what_it_reached():
    rng = np.random.default_rng(13)
    for _ in range(5):
        scores = rng.choice([0.0, 30.0, 60.0, 90.0], size=(12, 5))
        q, th = best_attainable_quality(scores)
        assert len(th) == 4 and quality(scores, final_tiers(scores, th)) == pytest.approx(q, abs=1e-12)
        assert q >= scores[:, -1].mean()
        # A local optimum of the grid: no single threshold change improves it.
        for i in range(4):
            for h in candidate_thresholds(scores[:, i]):
                trial = list(th)
                trial[i] = float(h)
                assert quality(scores, final_tiers(scores, trial)) <= q + 1e-9
    # A gain of half a point is a gain (on either path).
    assert best_attainable_quality(np.array([[50.5, 50.0]]))[0] == pytest.approx(50.5)
    assert best_attainable_quality(np.array([[50.5, 50.0, 50.0, 50.0]]))[0] == pytest.approx(50.5)


@pytest.mark.parametrize("c", [2, 4])
def test_ties_within_float_noise_keep_the_all_to_largest_start(c):
    """A quality no more than 1e-12 above the current best is a tie, and a tie keeps the earlier thresholds: the
    search starts from 'every request to the largest tier' and moves only for a real gain."""
    same = np.tile(np.array([[20.0], [45.0], [70.0]]), (1, c))  # every tier answers alike
    assert best_attainable_quality(same) == (pytest.approx(45.0), (THRESHOLD_MAX,) * (c - 1))
    noise = np.zeros((1, c))
    noise[0, 0] = 1e-12  # exactly the tolerance above the start's 0.0
    assert best_attainable_quality(noise) == (0.0, (THRESHOLD_MAX,) * (c - 1))


def test_four_or_more_tiers_use_at_most_three_ascent_sweeps(monkeypatch):
    """The full grid costs prod(candidates) replays (24**4 for 5 tiers): beyond 3 tiers the search is three
    coordinate sweeps, at most 3 * sum(candidates) replays."""
    calls = []
    real = routing.final_tiers

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(routing, "final_tiers", counting)
    rng = np.random.default_rng(14)
    scores = rng.choice([0.0, 30.0, 60.0, 90.0], size=(20, 4))
    best_attainable_quality(scores)
    sweep = sum(len(candidate_thresholds(scores[:, i])) for i in range(3))
    assert len(calls) <= 3 * sweep
    calls.clear()
    best_attainable_quality(scores[:, :3])  # 3 tiers: the full grid, every combination once
    assert len(calls) == len(candidate_thresholds(scores[:, 0])) * len(candidate_thresholds(scores[:, 1]))
