"""tools/mutation.py's bookkeeping: the score counts killed and timed-out mutants over the checked ones, never an
unchecked mutant as killed, leaves listed equivalent mutants out of both sides, and a resumed run adds its times
to the module's earlier ones."""
from __future__ import annotations

import json
from collections import Counter

import pytest

import tools.mutation as mutation

pytestmark = pytest.mark.unit


@pytest.fixture
def meta_root(tmp_path, monkeypatch):
    monkeypatch.setattr(mutation, "ROOT", tmp_path)
    monkeypatch.setattr(mutation, "EQUIVALENT", {"m.x_f__mutmut_9": "why"})

    def write(path, codes):
        meta = tmp_path / "mutants" / f"{path}.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": codes}))
    return write


def test_score_counts_checked_mutants_only_and_leaves_equivalent_ones_out(meta_root):
    meta_root("m.py", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 0, "m.x_f__mutmut_3": None, "m.x_f__mutmut_4": 36,
                       "m.x_f__mutmut_5": 3, "m.x_f__mutmut_9": 0})
    c = mutation.module_counts("m.py")
    assert (c["mutants"], c["killed"], c["survived"], c["timeout"], c["not_checked"], c["equivalent"]) == (6, 2, 1, 1,
                                                                                                         1, 1)
    assert c["score_pct"] == 75.0 and not c["complete"]  # (2 killed + 1 timeout) / 4 checked
    assert c["survivors"] == ["m.x_f__mutmut_2"] and c["equivalent_mutants"][0]["mutant"] == "m.x_f__mutmut_9"
    meta_root("m.py", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_9": 0})
    assert mutation.module_counts("m.py")["complete"] and mutation.module_counts("m.py")["score_pct"] == 100.0
    assert mutation.module_counts("absent.py")["score_pct"] is None  # never run: no score, not complete


def test_resumed_times_add_up_and_modules_not_run_keep_theirs(meta_root, monkeypatch):
    monkeypatch.setattr(mutation, "_mutmut_version", lambda: "test")
    for m in ("a.py", "b.py"):
        meta_root(m, {f"{m[0]}.x_f__mutmut_1": 1})
    earlier = {"modules": {"a.py": {"wall_s": 100.0, "cpu_s": 40.0}, "b.py": {"wall_s": 7.0, "cpu_s": 3.0}}}
    s = mutation.summarise(("a.py", "b.py"), {"a.py": (10.0, 5.0)}, earlier, resumed=True)
    assert (s["modules"]["a.py"]["wall_s"], s["modules"]["a.py"]["cpu_s"]) == (110.0, 45.0)
    assert (s["modules"]["b.py"]["wall_s"], s["modules"]["b.py"]["cpu_s"]) == (7.0, 3.0)
    assert s["overall"]["cpu_s"] == 48.0 and s["overall"]["complete"]
    fresh = mutation.summarise(("a.py", "b.py"), {"a.py": (10.0, 5.0)}, earlier, resumed=False)
    assert fresh["modules"]["a.py"]["wall_s"] == 10.0  # a full rerun replaces the module's times


def test_sample_is_seeded_nested_and_uniform():
    names = [f"m.x_f__mutmut_{k}" for k in range(200)]
    a = mutation.sample_names(names, 30, "m.py")
    assert a == mutation.sample_names(list(reversed(names)), 30, "m.py")  # the order mutmut lists them in is moot
    assert len(set(a)) == 30 and set(a) <= set(names)
    assert set(a) <= set(mutation.sample_names(names, 60, "m.py"))  # a larger N only adds mutants
    assert a != mutation.sample_names(names, 30, "other.py")  # each module its own draw
    assert mutation.sample_names(names, 500, "m.py") == sorted(names)  # n >= all: every mutant
    # Uniform: over 400 seeds each mutant is drawn 400 x 30/200 = 60 times; a binomial(400, 0.15) lies within
    # 60 +- 30 (4.2 sd) for all 200 mutants with probability > 0.99.
    hits = Counter(k for seed in range(400) for k in mutation.sample_names(names, 30, "m.py", seed=seed))
    assert len(hits) == 200 and all(30 <= v <= 90 for v in hits.values())


def test_wilson_interval_is_the_set_of_proportions_the_score_test_accepts():
    # Oracle: the Wilson interval is {p : |k/n - p| <= z sqrt(p (1-p) / n)}, found here by a fine grid.
    for k, n in ((0, 10), (3, 10), (85, 100), (93, 93), (170, 187)):
        grid = [i / 100000 for i in range(100001)]
        inside = [p for p in grid if abs(k / n - p) <= mutation.Z95 * (p * (1 - p) / n) ** 0.5]
        lo, hi = mutation.wilson_pct(k, n)
        assert abs(lo - 100 * min(inside)) <= 0.06 and abs(hi - 100 * max(inside)) <= 0.06
    assert mutation.wilson_pct(0, 0) is None


def test_sampled_module_counts_its_sample_only_and_never_an_unchecked_one_as_killed(meta_root):
    codes = {f"m.x_f__mutmut_{k}": None for k in range(10, 50)}  # not 9: the fixture lists it equivalent
    sample = mutation.sample_names(codes, 10, "m.py")
    for i, name in enumerate(sample[:8]):  # 6 killed, 2 survived, 2 of the sample not checked yet
        codes[name] = 1 if i < 6 else 0
    outside = next(k for k in codes if k not in sample)
    codes[outside] = 1  # checked once outside the sample: not counted (the estimate stays unbiased)
    meta_root("m.py", codes)
    c = mutation.module_counts("m.py", sample_n=10)
    assert c["sampled"] and (c["mutants"], c["sample_n"]) == (40, 10)
    assert (c["killed"], c["survived"], c["not_checked"], c["score_pct"]) == (6, 2, 2, 75.0)
    # A partly checked sample was checked in mutmut's order (cheapest functions first), not at random: no interval.
    assert not c["complete"] and c["ci95_pct"] is None
    codes.update({name: 0 for name in sample[8:]})
    meta_root("m.py", codes)
    c = mutation.module_counts("m.py", sample_n=10)
    assert (c["killed"], c["survived"], c["not_checked"]) == (6, 4, 0) and c["ci95_pct"] == mutation.wilson_pct(6, 10)
    assert not c["complete"]  # a sample, however finished, is not the exact score
    # Every mutant checked: exact, whatever the sample size asked for.
    meta_root("m.py", {name: 1 for name in codes})
    c = mutation.module_counts("m.py", sample_n=10)
    assert not c["sampled"] and c["complete"] and c["ci95_pct"] == [100.0, 100.0] and c["sample_n"] == 40


def test_overall_weights_each_module_by_its_mutants_not_by_its_sample():
    exact = {"mutants": 1010, "killed": 900, "survived": 100, "timeout": 0, "no_tests": 0, "equivalent": 10,
             "score_pct": 90.0, "sampled": False, "complete": True}
    sampled = {"mutants": 500, "killed": 60, "survived": 40, "timeout": 0, "no_tests": 0, "equivalent": 0,
               "score_pct": 60.0, "sampled": True, "complete": False}
    score, ci, unmeasured, partial = mutation.stratified_score({"a": exact, "b": sampled, "c": {**sampled, "score_pct": None,
                                                                                         "killed": 0, "survived": 0}})
    assert score == 80.0 and unmeasured == ["c"] and partial == []  # (1000 x 90% + 500 x 60%) / 1500; pooled counts would say 87.3%
    # Only the sampled third varies: se = (1/3) sqrt(p~ (1 - p~) / n~ (1 - 100/500)), Agresti-Coull's
    # p~ = (60 + z^2/2) / n~ and n~ = 100 + z^2.
    z2 = mutation.Z95 ** 2
    p_adj = (60 + z2 / 2) / (100 + z2)
    se = (1 / 3) * (p_adj * (1 - p_adj) / (100 + z2) * 0.8) ** 0.5
    assert ci == [round(100 * (0.8 - mutation.Z95 * se), 1), round(100 * (0.8 + mutation.Z95 * se), 1)]


def test_a_sampled_module_with_no_survivor_still_widens_the_overall_interval():
    exact = {"mutants": 1000, "killed": 1000, "survived": 0, "timeout": 0, "no_tests": 0, "equivalent": 0,
             "score_pct": 100.0, "sampled": False, "complete": True}
    sampled = {"mutants": 1000, "killed": 30, "survived": 0, "timeout": 0, "no_tests": 0, "equivalent": 0,
               "score_pct": 100.0, "sampled": True, "complete": False}
    score, ci, _, _ = mutation.stratified_score({"a": exact, "b": sampled})
    # 30 of 30 killed says little: Wilson's interval for that module alone starts near 88.6 %, so the overall
    # (half its weight) cannot be certain either.
    assert score == 100.0 and ci[0] < 97.0 and ci[1] == 100.0
    assert mutation.wilson_pct(30, 30)[0] < 90.0


def test_sample_size_rule_fits_the_budget():
    n = mutation.sample_size(2700, 2)
    c = mutation.CPU_PER_MUTANT_S
    assert 12 * n * c <= 2700 * 2 * 0.75 < 12 * (n + 1) * c
    assert mutation.sample_size(2700, 1) == 2700 * 0.75 // (12 * c)
    assert mutation.sample_size(2700, 2, cpu_per_mutant_s=1.8) == 187  # the first run's estimate
