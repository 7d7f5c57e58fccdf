"""tools/mutation.py's bookkeeping: the score counts killed and timed-out mutants over the checked ones, never an
unchecked mutant as killed, leaves listed equivalent mutants out of both sides, and a resumed run adds its times
to the module's earlier ones."""
from __future__ import annotations

import json

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
