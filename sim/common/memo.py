"""Memos that outlive a run, one per frozen cost object: a frozen dataclass is a pure function of its fields, so
every run that holds the same object may share what was computed from it."""
from __future__ import annotations

from dataclasses import is_dataclass


def frozen_object_memo(registry: dict[int, tuple[object, dict]], obj, max_entries: int) -> dict | None:
    """The memo dict of obj in registry (made empty on first use), or None when obj is not a frozen dataclass (it
    may change between calls). Each entry holds obj itself, so an id is never reused while its entry lives; the
    registry is emptied when it holds max_entries objects."""
    if not (is_dataclass(obj) and type(obj).__dataclass_params__.frozen):
        return None
    entry = registry.get(id(obj))
    if entry is None:
        if len(registry) >= max_entries:
            registry.clear()
        entry = registry[id(obj)] = (obj, {})
    return entry[1]
