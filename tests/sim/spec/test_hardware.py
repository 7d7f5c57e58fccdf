"""Hardware specs load from conf/, carry datasheet numbers, and reject bad input with a clear message."""
import pytest

from sim.common.errors import ConfigError
from sim.spec.hardware import available, cluster_from_dict, load_cluster, load_gpu


def test_h100_datasheet_numbers():
    h100 = load_gpu("h100_sxm")
    assert h100.bf16_tflops == pytest.approx(989.4)
    assert h100.fp8_tflops == pytest.approx(2 * h100.bf16_tflops, rel=0.01)
    assert h100.hbm_bw_gbps == pytest.approx(3350)
    assert h100.memory_bytes == pytest.approx(81559 * 2**20, rel=1e-4)  # nvidia-smi: 81,559 MiB


def test_paper_testbed_is_default_cluster():
    c = load_cluster()
    assert (c.num_nodes, c.gpus_per_node, c.num_gpus) == (4, 8, 32)
    assert c.gpu.nvlink_bw_gbps == 400 and c.ib_bw_gbps == 200


def test_a100_is_slower_than_h100():
    a100, h100 = load_gpu("a100_80gb"), load_gpu("h100_sxm")
    assert a100.bf16_tflops < h100.bf16_tflops and a100.hbm_bw_gbps < h100.hbm_bw_gbps


def test_unknown_names_list_valid_ones():
    with pytest.raises(ConfigError, match="h100_sxm"):
        load_gpu("h200_nvl")
    assert "paper_4x8_h100" in available("cluster")


def test_bad_cluster_values_fail_loudly():
    gpu = load_gpu("h100_sxm")
    base = dict(name="x", num_nodes=4, gpus_per_node=8, ib_bw_gbps=200.0, ib_latency_us=5.0)
    with pytest.raises(ConfigError, match="num_nodes"):
        cluster_from_dict({**base, "num_nodes": 0}, gpu)
    with pytest.raises(ConfigError, match="unknown key"):
        cluster_from_dict({**base, "gpus_per_nod": 8}, gpu)
