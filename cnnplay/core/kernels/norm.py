"""Batch norm (inference form) and layer norm over channels, on (C, N) arrays."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import numpy_path
from .coldstart import ready
from .launch import one_at_a_time, sized
from .pointwise import affine_leaky


@njit(cache=True, parallel=True)
def _layernorm(x3, weight, bias, eps, y3):
    """Normalize each column x3[b, :, n] over the C channels (biased variance)."""
    nb, c_n, n = x3.shape
    chunk = 256
    nch = (n + chunk - 1) // chunk
    inv_c = 1.0 / c_n
    for job in prange(nb * nch):
        b = job // nch
        x = x3[b]
        y = y3[b]
        n0 = (job - b * nch) * chunk
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
    x2, _ = _check(x2)
    return batchnorm_batch(x2[None], weight, bias, mean, var, eps)[0]


def batchnorm_batch(x3, weight, bias, mean, var, eps=1e-5) -> np.ndarray:
    """batchnorm on a batch of (C, P) views, x3 (N, C, P): the per-channel affine map
    on the (N*C, P) rows."""
    x3 = np.ascontiguousarray(x3, dtype=np.float32)
    if x3.ndim != 3:
        raise ValueError(f"norm: expected an (N, C, P) array, got shape {x3.shape}")
    _, (weight, bias, mean, var) = _check(x3[0], weight, bias, mean, var)
    scale, shift = batchnorm_affine(weight, bias, mean, var, eps)
    nb, c, p = x3.shape
    y = affine_leaky(x3.reshape(nb * c, p), np.tile(scale, nb), np.tile(shift, nb), 1.0)
    return y.reshape(x3.shape)


def batchnorm_affine(weight, bias, mean, var, eps):
    """(scale, shift) of inference batch norm: y = x * scale + shift per channel."""
    scale = weight.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(eps))
    shift = bias - mean * scale
    return scale.astype(np.float32), shift.astype(np.float32)


def layernorm(x2, weight, bias, eps=1e-5) -> np.ndarray:
    """LayerNorm over the C channels at each of the N positions (PyTorch LayerNorm(C) channels-last)."""
    x2, _ = _check(x2)
    return layernorm_batch(x2[None], weight, bias, eps)[0]


@one_at_a_time
def layernorm_batch(x3, weight, bias, eps=1e-5) -> np.ndarray:
    """layernorm of every sample of x3 (N, C, P)."""
    x3 = np.ascontiguousarray(x3, dtype=np.float32)
    if x3.ndim != 3:
        raise ValueError(f"norm: expected an (N, C, P) array, got shape {x3.shape}")
    _, (weight, bias) = _check(x3[0], weight, bias)
    kernel = sized(_layernorm, x3.size, 1 << 19)
    y = np.empty_like(x3)
    if not ready(kernel):  # still compiling (first start): numpy meanwhile
        for i in range(x3.shape[0]):
            y[i] = numpy_path.layernorm(x3[i], weight, bias, eps)
        return y
    kernel(x3, weight, bias, float(eps), y)
    return y
