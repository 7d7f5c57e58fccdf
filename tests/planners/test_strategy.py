"""planners.strategy.parallel_configs on a fake problem whose fit rule is known: the (tp, pp) pairs equal a brute-force
enumeration of the degrees that fit, within MAX_REPLICA_GROWTH of the smallest; without search, the smallest TP in
one node (PP only when no node holds the model)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from planners.strategy import MAX_REPLICA_GROWTH, PP_DEGREES, TP_DEGREES, parallel_configs
from sim.common.errors import ConfigError, DeploymentDoesNotFit


def _problem(min_gpus: int, num_layers: int = 32, gpus_per_node: int = 8, num_nodes: int = 4, heads: int = 8):
    def replica_cost(tier, tp, pp):
        if heads % tp:
            raise ConfigError("TP does not divide the heads")
        if tp * pp < min_gpus:
            raise DeploymentDoesNotFit("too big")
        return object()

    model = SimpleNamespace(num_layers=num_layers)
    cluster = SimpleNamespace(gpus_per_node=gpus_per_node, num_gpus=gpus_per_node * num_nodes)
    return SimpleNamespace(cascade=SimpleNamespace(tiers=[SimpleNamespace(model=model)]), cluster=cluster,
                           replica_cost=replica_cost)


@pytest.mark.parametrize("min_gpus,heads,per_node", [(1, 8, 8), (2, 8, 8), (4, 4, 8), (16, 8, 8), (3, 8, 2),
                                                      (64, 8, 8)])
def test_configs_are_the_brute_force_fitting_pairs_within_the_growth_bound(min_gpus, heads, per_node):
    p = _problem(min_gpus, heads=heads, gpus_per_node=per_node)
    fit = [(tp, pp) for tp in TP_DEGREES for pp in PP_DEGREES
           if tp <= per_node and pp <= 32 and tp * pp <= p.cluster.num_gpus and heads % tp == 0 and tp * pp >= min_gpus]
    got = parallel_configs(p, 0)
    if not fit:
        assert got == []
        return
    smallest = min(tp * pp for tp, pp in fit)
    assert got == sorted(c for c in fit if c[0] * c[1] <= MAX_REPLICA_GROWTH * smallest)


def test_without_search_the_smallest_tp_in_one_node_and_pp_only_when_needed():
    assert parallel_configs(_problem(2), 0, search=False) == [(2, 1)]
    assert parallel_configs(_problem(16), 0, search=False) == [(8, 2)]  # no node holds it: the widest TP, then PP
    assert parallel_configs(_problem(16, num_layers=1), 0, search=False) == []  # PP cannot exceed the layers
