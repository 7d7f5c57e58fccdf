"""planners.search.quantile_linear is np.quantile (linear method) float for float; numpy itself is the oracle."""
import numpy as np
import pytest

from planners.search import quantile_linear


@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 0.95, 0.99, 1.0, 0.123456789])
def test_equals_numpy_on_random_samples_with_ties_and_small_sizes(q):
    rng = np.random.default_rng(7)
    for trial in range(400):
        n = int(rng.integers(1, 40)) if trial % 2 else int(rng.integers(40, 3000))
        x = rng.lognormal(0.0, 2.0, n) if trial % 3 else rng.integers(0, 4, n).astype(np.float64)
        assert quantile_linear(x, q) == float(np.quantile(x, q)), (n, q)


def test_leaves_its_input_unsorted():
    x = np.array([3.0, 1.0, 2.0])
    quantile_linear(x, 0.5)
    assert x.tolist() == [3.0, 1.0, 2.0]
