"""Max and average pooling (2D; a 1D signal is a map of height 1).

One kernel serves both: a job is one output row of one channel; for every tap
(ky, kx) the valid output columns are computed once, so the inner loop is a
plain (for stride 1 contiguous) loop over output x with no padding branches.
For stride 2 and 4, groups of 2 or 4 neighbouring taps are read as one
interleaved group (vectorized shuffles) instead of strided gathers.
Max pooling pads with -inf; average pooling counts padded zeros (PyTorch's
count_include_pad=True): the sum is always divided by kh*kw.

Windows that tile the map (kernel == stride, no padding: the usual 2x2 pool)
take `_pool_tiles` instead: a job is one channel plane, each input pixel is
read once, and the common 2- and 4-wide windows (2x2 maps, a 1D signal's 4)
are one shuffle-vectorized loop each.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..geometry import window_output
from . import numpy_path
from .coldstart import ready
from .launch import one_at_a_time, sized


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


@njit(cache=True)
def _cols(kx, sw, pw, w, wo):
    """Output columns [j0, j1) whose tap kx reads inside the row: j*sw + kx - pw in [0, w)."""
    return max(0, (pw - kx + sw - 1) // sw), min(wo, (w + pw - kx + sw - 1) // sw)


@njit(cache=True)
def _tap(out, xr, kx, j0, j1, sw, pw, avg):
    """One tap over output columns [j0, j1) (strided reads)."""
    if j1 <= j0:
        return
    o = out[j0:j1]
    s = xr[j0 * sw + kx - pw::sw]
    if avg:
        for j in range(j1 - j0):
            o[j] += s[j]
    else:
        for j in range(j1 - j0):
            v = s[j]
            if v > o[j]:
                o[j] = v


@njit(cache=True)
def _tap_cols(out, xr, kx, j0, j1, sw, pw, avg):
    """One tap over a few output columns [j0, j1), scalar (edge leftovers)."""
    for j in range(j0, j1):
        v = xr[j * sw + kx - pw]
        if avg:
            out[j] += v
        elif v > out[j]:
            out[j] = v


@njit(cache=True)
def _taps(out, xr, kx, g, sw, pw, w, avg):
    """Taps kx .. kx+g-1 (g == sw, 2 or 4): on their common columns the reads
    xs[g*j + t] form one interleaved group, which the compiler vectorizes with
    shuffles instead of a gather; the few remaining columns go tap by tap."""
    wo = out.shape[0]
    lo, hi = 0, wo
    for t in range(g):
        a, b = _cols(kx + t, sw, pw, w, wo)
        lo, hi = max(lo, a), min(hi, b)
    if hi <= lo:
        for t in range(g):
            a, b = _cols(kx + t, sw, pw, w, wo)
            _tap_cols(out, xr, kx + t, a, b, sw, pw, avg)
        return
    for t in range(g):  # columns outside the common range
        a, b = _cols(kx + t, sw, pw, w, wo)
        _tap_cols(out, xr, kx + t, a, min(b, lo), sw, pw, avg)
        _tap_cols(out, xr, kx + t, max(a, hi), b, sw, pw, avg)
    o = out[lo:hi]
    xs = xr[lo * sw + kx - pw:]
    n = hi - lo
    if g == 2:
        if avg:
            for j in range(n):
                o[j] += xs[2 * j] + xs[2 * j + 1]
        else:
            for j in range(n):
                v = max(xs[2 * j], xs[2 * j + 1])
                if v > o[j]:
                    o[j] = v
    else:
        if avg:
            for j in range(n):
                o[j] += (xs[4 * j] + xs[4 * j + 1]) + (xs[4 * j + 2] + xs[4 * j + 3])
        else:
            for j in range(n):
                v = max(max(xs[4 * j], xs[4 * j + 1]), max(xs[4 * j + 2], xs[4 * j + 3]))
                if v > o[j]:
                    o[j] = v


@njit(cache=True, parallel=True)
def _pool(x, kh, kw, sh, sw, ph, pw, avg, y):
    c_n, h, w = x.shape
    _, ho, wo = y.shape
    scale = np.float32(1.0 / (kh * kw))
    # grouped taps pay off on rows long enough to amortize their set-up
    group = sw if (sw == 2 or sw == 4) and wo >= 32 else 1
    for job in prange(c_n * ho):
        c = job // ho
        _pool_row(x, c, job - c * ho, kh, kw, sh, sw, ph, pw, avg, group, scale, y[c, job - c * ho])


@njit(cache=True)
def _pool_row(x, c, oy, kh, kw, sh, sw, ph, pw, avg, group, scale, out):
    """One output row (a plain function: a small parallel loop compiles fast)."""
    h, w = x.shape[1], x.shape[2]
    wo = out.shape[0]
    fill = np.float32(0.0) if avg else np.float32(-np.inf)
    for j in range(wo):
        out[j] = fill
    for ky in range(kh):
        yy = oy * sh + ky - ph
        if yy < 0 or yy >= h:
            continue
        xr = x[c, yy]
        # grouped taps first, then single taps; the tap index is always a
        # computed int64 (a literal 0 would compile _taps/_tap a second time)
        ng = kw // group if group > 1 else 0
        for gi in range(ng):
            _taps(out, xr, gi * group, group, sw, pw, w, avg)
        for kx in range(ng * group, kw):
            a, b = _cols(kx, sw, pw, w, wo)
            _tap(out, xr, kx, a, b, sw, pw, avg)
    if avg:
        for j in range(wo):
            out[j] *= scale


@njit(cache=True, parallel=True)
def _pool_tiles(x, kh, kw, avg, y):
    """Non-overlapping windows (kernel == stride, padding 0) over planes x (P, H, W):
    the same values as _pool (max: the first strictly greater value wins)."""
    p_n, ho, wo = y.shape
    scale = np.float32(1.0 / (kh * kw))
    fill = np.float32(0.0) if avg else np.float32(-np.inf)
    for p in prange(p_n):
        for oy in range(ho):
            out = y[p, oy]
            for j in range(wo):
                out[j] = fill
            for ky in range(kh):
                xr = x[p, oy * kh + ky]
                if kw == 2:  # one interleaved pair per output: vectorized shuffles
                    if avg:
                        for j in range(wo):
                            out[j] += xr[2 * j] + xr[2 * j + 1]
                    else:
                        for j in range(wo):
                            a, b, v = xr[2 * j], xr[2 * j + 1], out[j]
                            v = a if a > v else v
                            out[j] = b if b > v else v
                elif kw == 4:  # the 1D signal's usual window: one interleaved group of 4
                    if avg:
                        for j in range(wo):
                            out[j] = out[j] + xr[4 * j] + xr[4 * j + 1] + xr[4 * j + 2] + xr[4 * j + 3]
                    else:
                        for j in range(wo):
                            a, b, c, d, v = xr[4 * j], xr[4 * j + 1], xr[4 * j + 2], xr[4 * j + 3], out[j]
                            v = a if a > v else v
                            v = b if b > v else v
                            v = c if c > v else v
                            out[j] = d if d > v else v
                else:
                    for j in range(wo):
                        v = out[j]
                        for kx in range(kw):
                            e = xr[j * kw + kx]
                            if avg:
                                v += e
                            elif e > v:
                                v = e
                        out[j] = v
            if avg:
                for j in range(wo):
                    out[j] *= scale


def tiles(kernel, stride, padding) -> bool:
    """True when the windows tile the map: kernel == stride and no padding."""
    return tuple(kernel) == tuple(stride) and not any(padding)


@one_at_a_time
def _run(x, kernel, stride, padding, avg):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"pool2d: expected a (C, H, W) map, got shape {x.shape}")
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    ho = window_output(x.shape[1], kh, sh, ph)
    wo = window_output(x.shape[2], kw, sw, pw)
    if ho < 1 or wo < 1:
        raise ValueError(f"pool2d: kernel {kh}x{kw} does not fit the padded input")
    tiled = tiles((kh, kw), (sh, sw), (ph, pw))
    pool = sized(_pool_tiles if tiled else _pool, x.shape[0] * ho * wo * kh * kw, 300_000)
    if not ready(pool):  # still compiling (first start): numpy meanwhile
        return numpy_path.pool(x, (kh, kw), (sh, sw), (ph, pw), avg)
    y = np.empty((x.shape[0], ho, wo), np.float32)
    if tiled:
        pool(x, kh, kw, avg, y)
    else:
        pool(x, kh, kw, sh, sw, ph, pw, avg, y)
    return y


def maxpool2d(x, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """PyTorch MaxPool2d (batch 1, -inf padding): x (C, H, W) -> (C, Ho, Wo)."""
    return _run(x, kernel, stride, padding, False)


def avgpool2d(x, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """PyTorch AvgPool2d with count_include_pad=True: x (C, H, W) -> (C, Ho, Wo)."""
    return _run(x, kernel, stride, padding, True)
