"""Batch norm (inference form) and layer norm over channels, on (C, N) arrays."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import numpy_path
from .coldstart import ready
from .launch import one_at_a_time, sized
from .pointwise import affine_leaky


@njit(cache=True, parallel=True)
def _layernorm(x, weight, bias, eps, y):
    """Normalize each column x[:, n] over the C channels (biased variance)."""
    c_n, n = x.shape
    chunk = 256
    nch = (n + chunk - 1) // chunk
    inv_c = 1.0 / c_n
    for job in prange(nch):
        n0 = job * chunk
        m = min(n, n0 + chunk) - n0
        mean = np.zeros(m, np.float64)
        var = np.zeros(m, np.float64)
        for c in range(c_n):
            xr = x[c, n0:n0 + m]
            for j in range(m):
                mean[j] += xr[j]
        for j in range(m):
            mean[j] *= inv_c
        for c in range(c_n):
            xr = x[c, n0:n0 + m]
            for j in range(m):
                d = xr[j] - mean[j]
                var[j] += d * d
        for j in range(m):
            var[j] = 1.0 / np.sqrt(var[j] * inv_c + eps)
        for c in range(c_n):
            xr = x[c, n0:n0 + m]
            yr = y[c, n0:n0 + m]
            wc = weight[c]
            bc = bias[c]
            for j in range(m):
                yr[j] = np.float32((xr[j] - mean[j]) * var[j]) * wc + bc


def _check(x2, *vectors):
    x2 = np.ascontiguousarray(x2, dtype=np.float32)
    if x2.ndim != 2:
        raise ValueError(f"norm: expected a (C, N) array, got shape {x2.shape}")
    out = []
    for v in vectors:
        v = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
        if v.shape != (x2.shape[0],):
            raise ValueError(f"norm: per-channel parameter of length {v.shape[0]}, expected {x2.shape[0]}")
        out.append(v)
    return x2, out


def batchnorm(x2, weight, bias, mean, var, eps=1e-5) -> np.ndarray:
    """Inference batch norm: (x - mean) / sqrt(var + eps) * weight + bias, per channel."""
    x2, (weight, bias, mean, var) = _check(x2, weight, bias, mean, var)
    scale = weight.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(eps))
    shift = bias - mean * scale
    return affine_leaky(x2, scale.astype(np.float32), shift.astype(np.float32), 1.0)


@one_at_a_time
def layernorm(x2, weight, bias, eps=1e-5) -> np.ndarray:
    """LayerNorm over the C channels at each of the N positions (PyTorch LayerNorm(C) channels-last)."""
    x2, (weight, bias) = _check(x2, weight, bias)
    kernel = sized(_layernorm, x2.size, 1 << 19)
    if not ready(kernel):  # still compiling (first start): numpy meanwhile
        return numpy_path.layernorm(x2, weight, bias, eps)
    y = np.empty_like(x2)
    kernel(x2, weight, bias, float(eps), y)
    return y
