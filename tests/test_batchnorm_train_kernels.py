"""Batch norm in training mode, both paths (numba kernels and the numpy formulas used
while they compile), against a float64 reference written here with plain loops."""

import numpy as np
import pytest

from cnnplay.core.kernels import batchnorm_train as bn_kernels
from cnnplay.core.training.batchnorm import BatchNormTrain


def reference(x, gy, weight, bias, eps):
    """(y, mean, biased var, gx, gw, gb) in float64: the textbook formulas, loop by loop."""
    x, gy = x.astype(np.float64), gy.astype(np.float64)
    n, c = x.shape[:2]
    x3, g3 = x.reshape(n, c, -1), gy.reshape(n, c, -1)
    m = n * x3.shape[2]
    y, gx = np.zeros_like(x3), np.zeros_like(x3)
    mean, var, gw, gb = (np.zeros(c) for _ in range(4))
    for ch in range(c):
        vals = [x3[b, ch, i] for b in range(n) for i in range(x3.shape[2])]
        mean[ch] = sum(vals) / m
        var[ch] = sum((v - mean[ch]) ** 2 for v in vals) / m
        s = 1.0 / np.sqrt(var[ch] + eps)
        for b in range(n):
            for i in range(x3.shape[2]):
                xhat = (x3[b, ch, i] - mean[ch]) * s
                y[b, ch, i] = xhat * weight[ch] + bias[ch]
                gb[ch] += g3[b, ch, i]
                gw[ch] += g3[b, ch, i] * xhat
        for b in range(n):
            for i in range(x3.shape[2]):
                xhat = (x3[b, ch, i] - mean[ch]) * s
                gx[b, ch, i] = weight[ch] * s * (g3[b, ch, i] - gb[ch] / m - xhat * gw[ch] / m)
    return y.reshape(x.shape), mean, var, gx.reshape(x.shape), gw, gb


@pytest.mark.parametrize("numba_path", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (3, 2, 7), (5, 4)])
def test_batchnorm_train_matches_reference(monkeypatch, numba_path, shape):
    monkeypatch.setattr(bn_kernels, "compiled", lambda: numba_path)
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(2.0, 3.0, shape).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    params = {"weight": rng.uniform(0.5, 1.5, c).astype(np.float32),
              "bias": rng.standard_normal(c).astype(np.float32),
              "running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
    bn = BatchNormTrain(x, params, 1e-5)
    gx, g = bn.backward(gy)
    y_r, mean_r, var_r, gx_r, gw_r, gb_r = reference(x, gy, params["weight"], params["bias"], 1e-5)
    assert bn.numba == numba_path
    assert bn.y.dtype == np.float32 and bn.y.shape == shape and gx.shape == shape
    np.testing.assert_allclose(bn.y, y_r, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, gx_r, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g["weight"], gw_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g["bias"], gb_r, rtol=1e-5, atol=1e-6)
    m = x.size // c
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean_r, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var_r * m / (m - 1), rtol=1e-6)
    gx_none, g2 = bn.backward(gy, input_grad=False)
    assert gx_none is None
    np.testing.assert_array_equal(g2["weight"], g["weight"])


def test_batchnorm_train_is_reproducible_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 12, 12)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    params = {"weight": np.ones(8, np.float32), "bias": np.zeros(8, np.float32),
              "running_mean": np.zeros(8, np.float32), "running_var": np.ones(8, np.float32)}
    runs = []
    for _ in range(2):
        bn = BatchNormTrain(x, params, 1e-5)
        gx, g = bn.backward(gy)
        runs.append((bn.y, gx, g["weight"], g["bias"], bn.running_var))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
