"""sim.common.memo: one memo dict per frozen object, none for a mutable one, a bounded registry."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from sim.common.memo import frozen_object_memo

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Frozen:
    x: float


@dataclass
class Mutable:
    x: float


def test_the_same_frozen_object_gets_the_same_memo_and_an_equal_one_its_own():
    registry: dict = {}
    a, b = Frozen(1.0), Frozen(1.0)  # equal values, distinct objects: keyed by identity, not by value
    memo = frozen_object_memo(registry, a, 4)
    memo["k"] = 1
    assert frozen_object_memo(registry, a, 4) is memo
    assert frozen_object_memo(registry, b, 4) == {} and frozen_object_memo(registry, b, 4) is not memo
    assert registry[id(a)][0] is a  # the entry keeps its object alive, so its id cannot be reused


def test_a_mutable_object_or_a_plain_one_gets_no_memo():
    registry: dict = {}
    assert frozen_object_memo(registry, Mutable(1.0), 4) is None
    assert frozen_object_memo(registry, object(), 4) is None
    assert registry == {}


def test_the_registry_is_emptied_when_full():
    registry: dict = {}
    objs = [Frozen(float(i)) for i in range(3)]
    for o in objs[:2]:
        frozen_object_memo(registry, o, 2)["v"] = o.x
    assert len(registry) == 2
    frozen_object_memo(registry, objs[2], 2)  # a third object: the registry starts over
    assert list(registry) == [id(objs[2])]
    assert frozen_object_memo(registry, objs[0], 2) == {}  # its old memo is gone, a new one is made
