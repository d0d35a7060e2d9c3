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


# -- backward (the vector-Jacobian products of grad.py, same arguments and results) ----------

def _tap_slice(k: int, d: int, s: int, start: int, count: int) -> slice:
    """Padded-input positions that tap k (dilation d) reads for outputs start..start+count-1 (stride s)."""
    a = k * d + start * s
    return slice(a, a + s * (count - 1) + 1, s)


def conv2d_backward(x, w, gy, stride=(1, 1), padding=(0, 0), dilation=(1, 1), param_grads=True):
    """x (Ci, H, W), w (Co, Ci, kh, kw), gy (Co, Ho, Wo) -> gx, gw, gb (gw, gb None without
    param_grads): per band of output rows, gw += gy @ im2col(x).T and the columns
    W.T @ gy are added back tap by tap (col2im)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    gy = np.asarray(gy, dtype=np.float32)
    ci, h, wd = x.shape
    co, _, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ho, wo = gy.shape[1], gy.shape[2]
    k = ci * kh * kw
    wmat = w.reshape(co, k)
    gxp = np.zeros((ci, h + 2 * ph, wd + 2 * pw), np.float32)
    gw = np.zeros((co, k), np.float32) if param_grads else None
    if param_grads:
        span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        win = sliding_window_view(_padded(x, ph, pw, 0.0), span, axis=(1, 2))[:, ::sh, ::sw, ::dh, ::dw][:, :ho, :wo]
    rows = max(1, min(ho, BAND_FLOATS // max(1, k * wo)))
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        g = np.ascontiguousarray(gy[:, r0:r1]).reshape(co, -1)
        if param_grads:
            cols = win[:, r0:r1].transpose(0, 3, 4, 1, 2).reshape(k, -1)
            gw += g @ cols.T
        gcols = (wmat.T @ g).reshape(ci, kh, kw, r1 - r0, wo)
        for ky in range(kh):
            for kx in range(kw):
                gxp[:, _tap_slice(ky, dh, sh, r0, r1 - r0), _tap_slice(kx, dw, sw, 0, wo)] += gcols[:, ky, kx]
    gx = np.ascontiguousarray(gxp[:, ph:ph + h, pw:pw + wd])
    if not param_grads:
        return gx, None, None
    gb = gy.reshape(co, -1).sum(axis=1, dtype=np.float64).astype(np.float32)
    return gx, gw.reshape(w.shape), gb


def maxpool2d_backward(x, gy, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """gy routed to each window's argmax: the first maximum in scan order, padding
    never wins, a NaN always takes over (PyTorch); an all -inf window routes to its
    first real pixel."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    gy = np.asarray(gy, dtype=np.float32)
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    c, h, w = x.shape
    ho, wo = gy.shape[1], gy.shape[2]
    xp = _padded(x, ph, pw, -np.inf)
    oy = np.arange(ho)[:, None] * sh - ph
    ox = np.arange(wo)[None, :] * sw - pw
    best = np.full((c, ho, wo), -np.inf, np.float32)
    where = np.broadcast_to(np.maximum(oy, 0) * w + np.maximum(ox, 0), (c, ho, wo)).copy()
    for ky in range(kh):
        for kx in range(kw):
            v = xp[:, _tap_slice(ky, 1, sh, 0, ho), _tap_slice(kx, 1, sw, 0, wo)]
            take = (v > best) | np.isnan(v)
            np.copyto(best, v, where=take)
            np.copyto(where, np.broadcast_to((oy + ky) * w + (ox + kx), where.shape), where=take)
    flat = (np.arange(c)[:, None, None] * (h * w) + where).ravel()
    gx = np.bincount(flat, weights=gy.ravel(), minlength=c * h * w)
    return gx.astype(np.float32).reshape(c, h, w)


def avgpool2d_backward(gy, x_shape, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """count_include_pad=True: every window spreads gy / (kh*kw) over its pixels."""
    gy = np.asarray(gy, dtype=np.float32)
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    c, h, w = (int(v) for v in x_shape)
    ho, wo = gy.shape[1], gy.shape[2]
    g = gy * np.float32(1.0 / (kh * kw))
    gxp = np.zeros((c, h + 2 * ph, w + 2 * pw), np.float32)
    for ky in range(kh):
        for kx in range(kw):
            gxp[:, _tap_slice(ky, 1, sh, 0, ho), _tap_slice(kx, 1, sw, 0, wo)] += g
    return np.ascontiguousarray(gxp[:, ph:ph + h, pw:pw + w])


def batchnorm_backward(x2, gy2, weight, mean, var, eps):
    """Inference batch norm on (C, N): running statistics are constants."""
    x2 = np.asarray(x2, dtype=np.float32)
    gy2 = np.asarray(gy2, dtype=np.float32)
    rstd = 1.0 / np.sqrt(np.asarray(var, np.float64) + float(eps))
    scale = (np.asarray(weight, np.float32) * rstd).astype(np.float32)
    gx = gy2 * scale[:, None]
    gb = gy2.sum(axis=1, dtype=np.float64).astype(np.float32)
    d = x2 - np.asarray(mean, np.float32).astype(np.float64)[:, None]
    gw = ((gy2 * d).sum(axis=1) * rstd).astype(np.float32)
    return gx, gw, gb


def layernorm_backward(x2, gy2, weight, eps):
    """Layer norm over C at each of the N positions (statistics differentiated through)."""
    x = np.asarray(x2, dtype=np.float64)
    gy = np.asarray(gy2, dtype=np.float64)
    c = x.shape[0]
    mu = x.mean(axis=0)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=0) + float(eps))
    xhat = (x - mu) * rstd
    g = gy * np.asarray(weight, np.float64)[:, None]
    gx = rstd * (g - g.sum(axis=0) / c - xhat * (g * xhat).sum(axis=0) / c)
    return gx.astype(np.float32), (gy * xhat).sum(axis=1).astype(np.float32), gy.sum(axis=1).astype(np.float32)


def leaky_relu_backward(x, gy, slope) -> np.ndarray:
    """gy where x > 0, slope * gy elsewhere; slope 0 gives exact zeros."""
    x = np.asarray(x, dtype=np.float32)
    gy = np.asarray(gy, dtype=np.float32)
    other = np.float32(0.0) if slope == 0 else gy * np.float32(slope)
    return np.where(x > 0, gy, other).astype(np.float32)


def linear_backward(x, w, gy, param_grads=True):
    """x (F,), w (O, F), gy (O,) -> gx, gw, gb (gw, gb None without param_grads)."""
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    gy = np.asarray(gy, dtype=np.float32)
    gx = (gy.astype(np.float64) @ w).astype(np.float32)
    if not param_grads:
        return gx, None, None
    return gx, np.outer(gy, x).astype(np.float32), gy.copy()
