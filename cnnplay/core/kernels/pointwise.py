"""Element-wise kernels: activations, and the per-channel affine map batch norm uses.

One kernel serves both (fewer kernels, shorter cold compile): per row c of a
(C, N) array, y = leaky(x * scale[c] + shift[c], slope); leaky with slope 1
is the identity, scale 1 and shift 0 leave x unchanged. Memory-bound either
way, so the unused multiply-add costs nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import numpy_path
from .coldstart import ready
from .launch import one_at_a_time, sized

_CHUNK = 16384


@njit(cache=True, parallel=True)
def _affine_leaky(x, scale, shift, slope, y):
    c_n, n = x.shape
    nch = (n + _CHUNK - 1) // _CHUNK
    for job in prange(c_n * nch):
        c = job // nch
        n0 = (job - c * nch) * _CHUNK
        n1 = min(n, n0 + _CHUNK)
        s = scale[c]
        t = shift[c]
        xs = x[c, n0:n1]
        ys = y[c, n0:n1]
        for j in range(n1 - n0):
            v = xs[j] * s + t
            ys[j] = v if v > 0 else v * slope


@one_at_a_time
def affine_leaky(x2, scale, shift, slope) -> np.ndarray:
    """(C, N) float32 -> leaky(x * scale[c] + shift[c], slope), a new array."""
    x2 = np.ascontiguousarray(x2, dtype=np.float32)
    kernel = sized(_affine_leaky, x2.size, 1 << 20)
    if not ready(kernel):  # still compiling (first start): numpy meanwhile
        return numpy_path.affine_leaky(x2, scale, shift, slope)
    y = np.empty_like(x2)
    kernel(x2, np.ascontiguousarray(scale, dtype=np.float32), np.ascontiguousarray(shift, dtype=np.float32),
           np.float32(slope), y)
    return y


_ONE = np.ones(1, np.float32)
_ZERO = np.zeros(1, np.float32)


def leaky_relu(x, slope=0.0) -> np.ndarray:
    """max(x, 0) + slope * min(x, 0) of any shape; slope 0 is ReLU."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return affine_leaky(x.reshape(1, -1), _ONE, _ZERO, slope).reshape(x.shape)
