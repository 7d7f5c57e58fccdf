"""Physical time of single GPU kernels (GEMM roofline, elementwise, ring collectives) given calibrated efficiencies.

The one place these formulas are written: the cost model (sim.perf.cost_model) takes their per-token coefficients,
the calibration (sim.fidelity.calibrate) fits their parameters with them, on numpy arrays (the arithmetic here is
array-safe; smooth_max has a scalar form for the cost model's hot path and smooth_max_array for fits).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACT_BYTES = 2.0  # activations are BF16 in every deployment we model (FP8/AWQ quantise weights only)


@dataclass(frozen=True)
class GemmParams:
    """Calibrated GEMM efficiencies. A GEMM streams its weights from HBM (at mem_eff of peak) while the tensor
    cores work on its M token rows (at compute_eff_max of the precision's peak); the two overlap imperfectly,
    so the time is their smooth maximum (C^p + M^p)^(1/p) with p = overlap_exponent (p -> inf: perfect
    overlap, p = 1: none). The efficiency saturates with M without any fixed row padding: at one token the
    compute term is negligible and the time is the weight bytes over the bandwidth, whatever the precision
    (a padded-rows floor fitted on BF16 would be charged in full to INT4 weights and to every tiny
    per-expert GEMM of an MoE layer). Every kernel pays launch_s of fixed latency."""

    compute_eff_max: float
    overlap_exponent: float
    mem_eff: float
    launch_s: float


@dataclass(frozen=True)
class ElementwiseParams:
    """Memory-bound elementwise kernels (norms, rope, activation, residual add, embedding gather)."""

    mem_eff: float
    launch_s: float


@dataclass(frozen=True)
class AllReduceParams:
    """NCCL collectives: a fixed cost per call (launch, protocol handshake), a latency per ring step,
    and the fraction of the link bandwidth a ring achieves."""

    bw_eff: float
    step_latency_s: float
    base_latency_s: float


def smooth_max(compute_s: float, memory_s: float, exponent: float) -> float:
    """(c^p + m^p)^(1/p): the larger term when one dominates, more than it where both are comparable."""
    if compute_s <= 0.0:
        return memory_s
    if memory_s <= 0.0:
        return compute_s
    big = compute_s if compute_s > memory_s else memory_s
    return big * ((compute_s / big) ** exponent + (memory_s / big) ** exponent) ** (1.0 / exponent)


def smooth_max_array(compute_s, memory_s, exponent):
    """smooth_max on numpy arrays (the calibration's fits)."""
    big = np.maximum(np.maximum(compute_s, memory_s), 1e-30)  # ratios in [0, 1]; the floor only guards 0/0
    return big * ((compute_s / big) ** exponent + (memory_s / big) ** exponent) ** (1.0 / exponent)


def gemm_coefficients(k, n, weight_bytes_per_param, peak_flops, hbm_bw_bytes_s, p: GemmParams,
                      dequant_factor=1.0) -> tuple:
    """(compute_s_per_token, memory_fixed_s, memory_s_per_token) of a (tokens x k) @ (k x n) GEMM: the tensor cores
    do 2kn FLOPs per token row; HBM streams the kn weights once and each token's k + n activations."""
    compute_s_per_token = 2.0 * k * n * dequant_factor / (peak_flops * p.compute_eff_max)
    mem = hbm_bw_bytes_s * p.mem_eff
    return compute_s_per_token, k * n * weight_bytes_per_param / mem, (k + n) * ACT_BYTES / mem


def gemm_time_s(tokens: float, k: int, n: int, weight_bytes_per_param: float, peak_flops: float,
                hbm_bw_bytes_s: float, p: GemmParams, dequant_factor: float = 1.0) -> float:
    """Time of one (tokens x k) @ (k x n) GEMM: launch + smooth max of tensor-core compute and HBM traffic.
    dequant_factor > 1 slows the compute side (AWQ dequantises 4-bit weights to BF16 inside the kernel)."""
    if tokens <= 0:
        return 0.0
    ca, mb, mc = gemm_coefficients(k, n, weight_bytes_per_param, peak_flops, hbm_bw_bytes_s, p, dequant_factor)
    return p.launch_s + smooth_max(ca * tokens, mb + mc * tokens, p.overlap_exponent)


def elementwise_time_s(bytes_moved, hbm_bw_bytes_s: float, p: ElementwiseParams):
    """A memory-bound kernel: launch + bytes over the achieved bandwidth."""
    return p.launch_s + bytes_moved / (hbm_bw_bytes_s * p.mem_eff)


def ring_allreduce_time_s(message_bytes, num_ranks, link_bw_bytes_s: float, p: AllReduceParams):
    """2(n-1) steps, each moving message/n bytes over the slowest link of the ring (num_ranks >= 2)."""
    steps = 2 * (num_ranks - 1)
    return (p.base_latency_s + steps * p.step_latency_s
            + steps / num_ranks * message_bytes / (link_bw_bytes_s * p.bw_eff))


# NCCL's own latency model of an all-reduce whose ranks span nodes (NVIDIA/nccl src/graph/tuning.cc at 5067397c,
# ncclTunerConstantsDefaults and ncclTopoTuneModel), LL protocol (the one NCCL picks for the few-KB messages of a
# decode step): base latency per call, then per hop 0.6 us over NVLink and 5.0 (tree) / 2.7 (ring) us over the
# network; a ring pays at least the 1 us network post overhead on every one of its intra-node hops too. NCCL runs the
# cheaper of the two: a tree crosses the network 2 log2(nodes) times, a ring 2 (nodes - 1) times but has 2 (n - 1)
# hops in all. Two 8-GPU nodes: tree 6.8 + 2 (7 x 0.6 + 1 x 5.0) = 25.2 us, ring 6.6 + 28 x 1.0 + 2 x 2.7 = 40.0 us.
NCCL_LL_BASE_US = {"tree": 6.8, "ring": 6.6}
NCCL_LL_NVLINK_HOP_US = {"tree": 0.6, "ring": 0.6}
NCCL_LL_NET_HOP_US = {"tree": 5.0, "ring": 2.7}
NCCL_NET_OVERHEAD_US = 1.0


def nccl_internode_allreduce_latency_s(num_ranks: int, num_nodes: int) -> float:
    """Latency (s) NCCL's tuning model gives an all-reduce of num_ranks GPUs on num_nodes nodes (>= 2), the
    cheaper of its tree and ring algorithms (constants above). A flat ring charging every one of its 2 (n - 1)
    steps the network latency overstates it several times: NCCL crosses the network only between nodes."""
    per_node = max(num_ranks // num_nodes, 1)
    log2_nodes = max(int(num_nodes).bit_length() - 1, 0)  # NCCL's log2i: floor(log2)
    tree = NCCL_LL_BASE_US["tree"] + 2 * ((per_node - 1) * NCCL_LL_NVLINK_HOP_US["tree"]
                                          + log2_nodes * NCCL_LL_NET_HOP_US["tree"])
    # One GPU per node: NCCL charges the ring the tree's network latency ("latencies are fully exposed").
    ring_net = NCCL_LL_NET_HOP_US["tree"] if per_node == 1 else NCCL_LL_NET_HOP_US["ring"]
    steps, inter = 2 * (num_ranks - 1), 2 * (num_nodes - 1)
    ring = (NCCL_LL_BASE_US["ring"] + (steps - inter) * max(NCCL_LL_NVLINK_HOP_US["ring"], NCCL_NET_OVERHEAD_US)
            + inter * ring_net)
    return 1e-6 * min(tree, ring)


def allreduce_coefficients(num_ranks: int, hidden: int, link_bw_bytes_s: float, p: AllReduceParams,
                           count: int = 1) -> tuple[float, float]:
    """(fixed_s, s_per_token) of `count` ring all-reduces of a (tokens x hidden) BF16 activation: ring_allreduce_time_s
    of tokens x hidden x ACT_BYTES bytes written as an affine function of the token count (the cost model's form: its
    per-iteration coefficients). One rank or no call costs nothing."""
    if num_ranks <= 1 or count == 0:
        return 0.0, 0.0
    steps = 2 * (num_ranks - 1)
    fixed = count * (p.base_latency_s + steps * p.step_latency_s)
    return fixed, count * steps / num_ranks * hidden * ACT_BYTES / (link_bw_bytes_s * p.bw_eff)


def ring_allgather_time_s(total_bytes: float, num_ranks: int, link_bw_bytes_s: float,
                          p: AllReduceParams) -> float:
    """n-1 steps, each moving total/n bytes (half the traffic of an all-reduce)."""
    if num_ranks <= 1 or total_bytes <= 0:
        return 0.0
    steps = num_ranks - 1
    return (p.base_latency_s + steps * p.step_latency_s
            + steps / num_ranks * total_bytes / (link_bw_bytes_s * p.bw_eff))


def p2p_time_s(message_bytes: float, link_bw_bytes_s: float, p: AllReduceParams) -> float:
    """One send/recv between neighbouring pipeline stages (NCCL p2p: one step of a ring)."""
    if message_bytes <= 0:
        return 0.0
    return p.base_latency_s + p.step_latency_s + message_bytes / (link_bw_bytes_s * p.bw_eff)


def expected_distinct_experts(tokens: float, num_experts: int, experts_per_token: int) -> float:
    """Expected number of distinct experts a batch of tokens touches when each token picks k of E
    experts uniformly: E * (1 - (1 - k/E)^T)."""
    if tokens <= 0:
        return 0.0
    return num_experts * (1.0 - (1.0 - experts_per_token / num_experts) ** tokens)
