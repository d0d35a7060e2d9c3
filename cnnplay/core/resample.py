"""Exact area-averaging downscale (Qt-free, numpy only).

Each output sample is the mean of the input over the output sample's
footprint, with input samples seen as boxes: where a footprint edge cuts a
box, that box counts by the covered fraction. This is what "area averaging"
means for image resizing (OpenCV's INTER_AREA, PIL's BOX), computed exactly
with cumulative sums in float64, in time linear in the input size.
"""

from __future__ import annotations

import numpy as np


def fit_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) with the longest side at most `max_side`, aspect kept, never upscaled."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    if height >= width:
        return max_side, max(1, round(width * scale))
    return max(1, round(height * scale)), max_side


def area_reduce(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area-average `x` along `axis` down to `n_out` samples (n_out <= x.shape[axis]).

    Returns float64. Exact: out[i] = mean of x over [i*n/n_out, (i+1)*n/n_out).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    if not 1 <= n_out <= n:
        raise ValueError(f"area_reduce: cannot reduce {n} samples to {n_out}")
    if n_out == n:
        return x.copy()
    x = np.moveaxis(x, axis, 0)
    csum = np.zeros((n + 1,) + x.shape[1:], np.float64)
    np.cumsum(x, axis=0, out=csum[1:])
    # Footprint edges in input units; integral up to t = csum[floor t] + frac(t) * x[floor t].
    # Exact rational edges: i * n / n_out, as integer floor and remainder.
    i = np.arange(n_out + 1, dtype=np.int64)
    whole = (i * n) // n_out
    frac = ((i * n) % n_out) / n_out
    idx = np.minimum(whole, n - 1)
    frac = np.where(whole >= n, 1.0, frac)  # the last edge: all of the last sample
    shape = (n_out + 1,) + (1,) * (x.ndim - 1)
    integral = csum[idx] + frac.reshape(shape) * x[idx]
    out = (integral[1:] - integral[:-1]) * (n_out / n)
    return np.moveaxis(out, 0, axis)


def resize_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Resize `x` along `axis` to `n_out` samples: area averaging when shrinking,
    linear interpolation between sample centres (edges clamped) when growing. float64."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    if n_out < 1:
        raise ValueError(f"resize_axis: cannot resize to {n_out} samples")
    if n_out <= n:
        return area_reduce(x, n_out, axis)
    pos = np.clip((np.arange(n_out) + 0.5) * n / n_out - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1 - axis))
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    return a + (b - a) * frac


def resize(x: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """Resize `x` along each of `axes` to the matching size in `shape` (see resize_axis)."""
    for n_out, axis in zip(shape, axes):
        if x.shape[axis] != n_out:
            x = resize_axis(x, n_out, axis)
    return np.asarray(x, dtype=np.float64)
