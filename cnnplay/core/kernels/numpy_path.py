"""The forward kernels in plain numpy: what runs while the numba kernels compile.

On the first start (an empty kernel cache) compiling the numba kernels takes
10-30 s; `coldstart` compiles them in background processes, and until a
kernel is ready its public wrapper calls the function of the same name here
instead. Same arguments, same float32 results to ~1e-6 relative (the tests
compare both paths with float64 references and with each other), memory
bounded by the size of the maps: the convolution builds its im2col matrix a
band of output rows at a time.

- conv2d: im2col (strided views of the zero-padded input) + matmul, per band.
- pool: max (NaN-ignoring, like the numba kernel) or average over the window
  taps, one strided slice per tap.
- affine_leaky / layernorm / linear: the element-wise maps, as the kernels
  compute them (layer norm's statistics and the linear sum in float64).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..geometry import window_output

# im2col floats per band (16 MB): memory stays about the size of the maps
BAND_FLOATS = 1 << 22


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _padded(x: np.ndarray, ph: int, pw: int, fill: float) -> np.ndarray:
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (ph, ph), (pw, pw)), constant_values=fill)


def conv2d(x, w, b, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """PyTorch Conv2d (zero padding, batch 1): x (Ci, H, W), w (Co, Ci, kh, kw), b (Co,) or None."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    co, ci, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ho = window_output(x.shape[1], kh, sh, ph, dh)
    wo = window_output(x.shape[2], kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: kernel {kh}x{kw} (dilation {dh}x{dw}) does not fit the padded input")
    xp = _padded(x, ph, pw, 0.0)
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    win = sliding_window_view(xp, span, axis=(1, 2))[:, ::sh, ::sw, ::dh, ::dw][:, :ho, :wo]  # Ci, Ho, Wo, kh, kw
    wmat = w.reshape(co, ci * kh * kw)
    y = np.empty((co, ho, wo), np.float32)
    k = ci * kh * kw
    rows = max(1, min(ho, BAND_FLOATS // max(1, k * wo)))
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        cols = win[:, r0:r1].transpose(0, 3, 4, 1, 2).reshape(k, (r1 - r0) * wo)  # copies the band
        np.matmul(wmat, cols, out=y[:, r0:r1].reshape(co, -1))
    if b is not None:
        y += np.asarray(b, dtype=np.float32).reshape(co, 1, 1)
    return y


def pool(x, kernel, stride, padding, avg: bool) -> np.ndarray:
    """Max pooling (-inf padding; a NaN never wins, as in the numba kernel) or average
    pooling (count_include_pad=True): x (C, H, W) -> (C, Ho, Wo)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    ho = window_output(x.shape[1], kh, sh, ph)
    wo = window_output(x.shape[2], kw, sw, pw)
    if ho < 1 or wo < 1:
        raise ValueError(f"pool2d: kernel {kh}x{kw} does not fit the padded input")
    xp = _padded(x, ph, pw, 0.0 if avg else -np.inf)
    y = np.full((x.shape[0], ho, wo), 0.0 if avg else -np.inf, np.float32)
    for ky in range(kh):
        for kx in range(kw):
            tap = xp[:, ky:ky + sh * (ho - 1) + 1:sh, kx:kx + sw * (wo - 1) + 1:sw]
            if avg:
                y += tap
            else:
                np.fmax(y, tap, out=y)
    if avg:
        y *= np.float32(1.0 / (kh * kw))
    return y


def affine_leaky(x2, scale, shift, slope) -> np.ndarray:
    """(C, N) float32 -> leaky(x * scale[c] + shift[c], slope), a new array."""
    x2 = np.asarray(x2, dtype=np.float32)
    y = x2 * np.asarray(scale, np.float32).reshape(-1, 1)
    y += np.asarray(shift, np.float32).reshape(-1, 1)
    slope = np.float32(slope)
    if slope != 1:
        np.multiply(y, slope, out=y, where=~(y > 0))
    return y


def layernorm(x2, weight, bias, eps=1e-5) -> np.ndarray:
    """Each column x[:, n] normalized over the C channels (biased variance, float64
    statistics), a band of columns at a time."""
    x2 = np.asarray(x2, dtype=np.float32)
    c, n = x2.shape
    weight = np.asarray(weight, np.float32).reshape(-1, 1)
    bias = np.asarray(bias, np.float32).reshape(-1, 1)
    y = np.empty_like(x2)
    band = max(1, BAND_FLOATS // 2 // max(1, c))
    for n0 in range(0, n, band):
        xb = x2[:, n0:n0 + band]
        d = xb - xb.mean(axis=0, dtype=np.float64)
        d *= 1.0 / np.sqrt((d * d).mean(axis=0) + float(eps))
        yb = y[:, n0:n0 + band]
        yb[...] = d
        yb *= weight
        yb += bias
    return y


def linear(x, w, b=None) -> np.ndarray:
    """PyTorch Linear on one sample, accumulated in float64: x (F,), w (O, F), b (O,) or None -> (O,)."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(w, dtype=np.float32) @ x.astype(np.float64)
    if b is not None:
        y += np.asarray(b, dtype=np.float32)
    return y.astype(np.float32)
