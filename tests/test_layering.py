"""The layering of the packages, as folders: data flows config -> workload -> planner -> plan -> simulator ->
records, and each folder imports only its own modules or those of a lower line. No two modules import each other
in a loop. Type-only imports under `if TYPE_CHECKING:` are not dependencies and are not counted."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top; units on one line may not import each other. A unit is a folder (or a top-level module of sim/).
LAYERS: list[tuple[str, ...]] = [
    ("sim.common",),
    ("sim.spec",),
    ("sim.perf", "sim.workload"),
    ("sim.runtime", "sim.control"),
    ("sim.simulator", "sim.metrics"),
    ("sim.fidelity",),
    ("sim.bench",),
    ("planners",),
    ("online",),
    ("experiments",),
]
RANK = {unit: i for i, line in enumerate(LAYERS) for unit in line}
PACKAGES = ("sim", "planners", "online", "experiments")


def unit_of(module: str) -> str | None:
    """The layering unit a dotted module name belongs to (the longest unit that prefixes it). The bare `sim`
    package (its __init__, which imports nothing) sits at the bottom."""
    if module == "sim":
        return "sim.common"
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in RANK:
            return name
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imported_modules(path: Path) -> set[str]:
    """Every project module a file imports at run time, at any depth (function-level imports included), leaving
    out the body of `if TYPE_CHECKING:` blocks. `from pkg import name` counts as `pkg.name` when that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = ROOT / Path(*node.module.split("."), a.name)
                out.add(f"{node.module}.{a.name}" if (sub.with_suffix(".py").exists() or sub.is_dir())
                        else node.module)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def project_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def layer_violations() -> list[str]:
    bad = []
    for path in project_files():
        here = unit_of(module_name(path))
        if here is None:
            bad.append(f"{path.relative_to(ROOT)} lies in no layer of the table")
            continue
        for mod in sorted(imported_modules(path)):
            there = unit_of(mod)
            if there is None:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}, which lies in no layer")
            elif there != here and RANK[there] >= RANK[here]:
                bad.append(f"{path.relative_to(ROOT)} ({here}) imports {mod} ({there}): not a lower line")
    return bad


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the module import graph (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for path in project_files():
        name = module_name(path)
        graph.setdefault(name, set())
        graph[name].update(imported_modules(path))
    nodes = set(graph)
    for deps in graph.values():
        deps.intersection_update(nodes)
        deps.discard("")
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w == v or v.startswith(w + ".") or w.startswith(v + "."):
                continue  # a package's __init__ and its own submodules: re-exports, not a loop
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_import_goes_down_the_table():
    assert layer_violations() == []


def test_no_import_loops():
    assert import_cycles() == []


def test_the_checker_sees_function_level_imports_but_not_type_only_ones(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from online.replan import X\n"
                 "def f():\n    from planners.base import get_planner\n    import experiments.run\n")
    assert imported_modules(f) == {"planners.base", "experiments.run"}


@pytest.mark.parametrize("importer, imported, ok", [
    ("sim.runtime.replica", "sim.perf.cost_model", True),
    ("sim.perf.cost_model", "sim.runtime.replica", False),
    ("sim.runtime.flow", "sim.control.controller", False),  # one line: no imports either way
    ("sim.fidelity.serving", "sim.simulator", True),
    ("sim.simulator", "sim.fidelity.serving", False),
    ("planners.cascadia", "sim.bench", True),
    ("sim.spec.models", "planners.base", False),
])
def test_the_table_orders_units(importer, imported, ok):
    a, b = RANK[unit_of(importer)], RANK[unit_of(imported)]
    assert (unit_of(importer) == unit_of(imported) or b < a) is ok


def test_a_loop_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / "sim" / "common"
    pkg.mkdir(parents=True)
    (tmp_path / "sim" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from sim.common import b\n")
    (pkg / "b.py").write_text("def f():\n    from sim.common.a import x\n")
    for p in PACKAGES[1:]:
        (tmp_path / p).mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert import_cycles() == [["sim.common.a", "sim.common.b"]]
