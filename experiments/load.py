"""The load rule of the load sweep, fixed before any run: rates are fractions of the single model's capacity.

capacity_rps: the most requests per second the cascade's largest model alone can serve on the whole cluster, by the
planners' queueing model (planners.estimator.build_replica_model's per-replica saturation rate `max_rps`, which
counts each request's prefill and its decode steps at the largest batch the KV cache holds), maximised over the
parallel configurations that fit (as many replicas of one configuration as the GPUs allow). It uses the workload's
real lengths over the chosen trace window at the run's base seed, so every seed and planner of a case gets the same
rates. `load_fraction=f` sets rate_rps = f x capacity_rps (experiments.scenario.single_model_capacity); nothing about
it depends on any simulated result.
"""
from __future__ import annotations


def capacity_rps(cascade, cluster, workload, engine: str = "vllm") -> dict:
    """{capacity_rps, tp, pp, replicas, replica_max_rps} of the largest tier alone on every GPU of the cluster."""
    from planners.estimator import TierLoad, arrival_ca2, build_replica_model
    from planners.problem import PlanningProblem
    from planners.strategy import parallel_configs

    tier = cascade.num_tiers - 1
    problem = PlanningProblem(cascade=cascade, cluster=cluster, workload=workload, q_min=0.0, engine=engine)
    load = TierLoad(workload.rate_rps, workload.input_tokens, workload.output_tokens[:, tier],
                    arrival_ca2(workload.arrival_s))
    best = {"capacity_rps": 0.0}
    for tp, pp in parallel_configs(problem, tier):
        rm = build_replica_model(problem.replica_cost(tier, tp, pp), load, problem.max_num_seqs)
        if rm is None:
            continue
        replicas = cluster.num_gpus // (tp * pp)
        if replicas * rm.max_rps > best["capacity_rps"]:
            best = {"capacity_rps": replicas * rm.max_rps, "tp": tp, "pp": pp, "replicas": replicas,
                    "replica_max_rps": rm.max_rps}
    return best
