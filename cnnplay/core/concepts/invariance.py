"""Shift invariance: how much each layer's output changes when the input shifts.

`shift_input` moves the input's content by `shift` pixels per spatial axis
(positive: down / right), either wrapping around ("wrap") or letting zeros in
("zero"). `shift_invariance` runs the real forward pass on the shifted input
and compares every layer's output A (shifted input) with its output B
(original input):

- relative change  ||A - B|| / ||B||  on the same grid (0: unchanged; about
  1.4 for two unrelated maps of equal size), and the Pearson correlation of A
  and B over all values (1: unchanged up to scale). This is *invariance*: a
  stride-1 conv map moves with the image, so it changes a lot; after pooling
  a small shift often lands in the same window, so it changes little.
- aligned change and correlation: when the shift is a whole number of the
  layer's jump j (input pixels between neighbouring units, from the core's
  receptive-field table), the shift is undone on the layer's grid (by
  shift / j cells) and A and B are compared on the cells both maps have
  (the overlap). This is *equivariance*: near 0 means the layer's map simply
  moved with the input. None when the shift is not a multiple of the jump or
  the layer has no grid (flatten, linear).

When B is all zeros, the relative change is 0 if A is too, else infinity.
The correlation of two identical maps is 1, of a constant map with a
different one nan. Both measures are exactly 0 and 1 for a zero shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import Cancelled, NetworkError
from ..network import Network
from .growth import table_rows

EXPLANATION = (
    "Shift the input by a few pixels and compare each layer's output with the unshifted one. A plain "
    "conv map just moves along with the image, so it changes a lot; pooling keeps the strongest (or "
    "average) value of a window, so a small shift often gives nearly the same map: that is "
    "approximate shift invariance. Bigger pooling windows and strides make it stronger."
)

MODES = ("wrap", "zero")


@dataclass(frozen=True)
class LayerChange:
    layer: int
    relative_change: float
    correlation: float
    aligned_change: float | None = None
    aligned_correlation: float | None = None
    grid_shift: tuple | None = None  # the shift in this layer's cells, when aligned


def _shift_tuple(x: np.ndarray, shift) -> tuple[int, ...]:
    dims = x.ndim - 1
    s = (int(shift),) if isinstance(shift, (int, np.integer)) else tuple(int(v) for v in shift)
    if len(s) == 2 and dims == 1:
        s = s[1:]  # (dy, dx) for a 1D signal: only dx applies
    if len(s) != dims:
        raise NetworkError(f"a shift needs {dims} value(s) for an input of shape {x.shape}, not {s}")
    return s


def shift_input(x: np.ndarray, shift, mode: str = "wrap") -> np.ndarray:
    """x (C, H, W) or (C, L) with its content moved by `shift` (per spatial axis)."""
    x = np.asarray(x)
    s = _shift_tuple(x, shift)
    if mode == "wrap":
        return np.roll(x, s, axis=tuple(range(1, x.ndim)))
    if mode != "zero":
        raise NetworkError(f"unknown shift mode {mode!r} (wrap or zero)")
    return _shift_zero(x, (0,) + s)


def _shift_zero(a: np.ndarray, s: tuple) -> np.ndarray:
    out = np.zeros_like(a)
    src, dst = [], []
    for n, d in zip(a.shape, s):
        if abs(d) >= n:
            return out
        src.append(slice(max(0, -d), n - max(0, d)))
        dst.append(slice(max(0, d), n - max(0, -d)))
    out[tuple(dst)] = a[tuple(src)]
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # A plain ufunc reduction, not BLAS: OpenBLAS's threads fight numba's pool
    # (see kernels/conv.py), and these vectors are small enough anyway.
    return float(np.multiply(a, b).sum())


def relative_change(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    nb = math.sqrt(_dot(b, b))
    diff = a - b
    nd = math.sqrt(_dot(diff, diff))
    if nb == 0.0:
        return 0.0 if nd == 0.0 else math.inf
    return nd / nb


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.size == 0:
        return math.nan
    if np.array_equal(a, b):
        return 1.0
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(_dot(a, a) * _dot(b, b))
    return _dot(a, b) / den if den > 0 else math.nan


def _overlap(a: np.ndarray, b: np.ndarray, g: tuple) -> tuple[np.ndarray, np.ndarray]:
    """a[u] against b[u - g] over the cells where both exist (axis 0 is channels)."""
    sa, sb = [slice(None)], [slice(None)]
    for n, d in zip(a.shape[1:], g):
        if abs(d) >= n:
            return a[..., :0], b[..., :0]
        sa.append(slice(max(0, d), n - max(0, -d)))
        sb.append(slice(max(0, -d), n - max(0, d)))
    return a[tuple(sa)], b[tuple(sb)]


def shift_invariance(net: Network, x: np.ndarray, shift, mode: str = "wrap",
                     outputs: list | None = None, should_stop=None) -> list[LayerChange]:
    """One LayerChange per layer of `net` (see the module docstring).

    `outputs`: the layers' outputs for the unshifted x, if already computed;
    `should_stop`: asked between layers of the forward passes (Network.forward)."""
    x = net.check_input(x)
    s = _shift_tuple(x, shift)
    base = outputs if outputs is not None and len(outputs) == len(net) else net.forward(x, should_stop=should_stop)
    shifted = net.forward(shift_input(x, s, mode), should_stop=should_stop)
    rows = table_rows(net)
    result = []
    for i, (a, b) in enumerate(zip(shifted, base)):
        if should_stop is not None and should_stop():
            raise Cancelled()
        change = LayerChange(i, relative_change(a, b), correlation(a, b))
        row = rows[i] if i < len(rows) else None
        if row is not None and net.windows[i] is not None and a.ndim == len(s) + 1:
            jump = row[1]
            if all(float(v) % float(jv) == 0 for v, jv in zip(s, jump)):
                g = tuple(int(round(v / jv)) for v, jv in zip(s, jump))
                pa, pb = _overlap(a, b, g)
                if pa.size:
                    change = LayerChange(i, change.relative_change, change.correlation,
                                         relative_change(pa, pb), correlation(pa, pb), g)
        result.append(change)
    return result
