"""Fully connected layer."""

from __future__ import annotations

import numpy as np
from numba import njit

from . import numpy_path
from .coldstart import ready


@njit(cache=True, fastmath={"reassoc", "contract"})
def _linear(x, w, b, y):
    """y[o] = b[o] + sum_f w[o, f] * x[f], accumulated in float64. Serial: the
    layer is small next to the convolutions, and a serial kernel compiles fast."""
    for o in range(w.shape[0]):
        wr = w[o]
        acc = 0.0
        for f in range(x.shape[0]):
            acc += np.float64(wr[f]) * np.float64(x[f])
        y[o] = np.float32(acc + b[o])


def linear(x, w, b=None) -> np.ndarray:
    """PyTorch Linear on one sample: x (F,), w (O, F), b (O,) or None -> (O,)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    if x.ndim != 1 or w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise ValueError(f"linear: input {x.shape} and weight {w.shape} do not match")
    if not ready(_linear):  # still compiling (first start): numpy meanwhile
        return numpy_path.linear(x, w, b)
    bias = np.zeros(w.shape[0], np.float32) if b is None else np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
    y = np.empty(w.shape[0], np.float32)
    _linear(x, w, bias, y)
    return y


def linear_batch(x, w, b=None) -> np.ndarray:
    """PyTorch Linear on a batch: x (N, F) -> (N, O), one matrix product."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    if x.ndim != 2 or w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(f"linear: input {x.shape[1:]} and weight {w.shape} do not match")
    y = x @ w.T
    if b is not None:
        y += np.asarray(b, dtype=np.float32).reshape(-1)
    return y
