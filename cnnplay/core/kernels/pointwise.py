"""Element-wise activations."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNK = 16384


@njit(cache=True, parallel=True)
def _leaky_relu(x, slope, y):
    n = x.shape[0]
    for job in prange((n + _CHUNK - 1) // _CHUNK):
        n0 = job * _CHUNK
        xs = x[n0:min(n, n0 + _CHUNK)]
        ys = y[n0:min(n, n0 + _CHUNK)]
        for j in range(xs.shape[0]):
            v = xs[j]
            ys[j] = v if v > 0 else v * slope


def leaky_relu(x, slope=0.0) -> np.ndarray:
    """max(x, 0) + slope * min(x, 0) of any shape; slope 0 is ReLU."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    _leaky_relu(x.reshape(-1), np.float32(slope), y.reshape(-1))
    return y
