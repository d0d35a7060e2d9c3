"""2D convolution (1D runs as height 1): one entry point, `conv2d`.

Every case is reduced to the same form. The zero-padded input is split by
stride phase into `sh*sw` phase images, all of one common size Hq x Wq and
flattened into `src` (phases, Ci, L). On the "full grid" of Ho rows of Wq
columns (the last Wq - Wo columns of each row are discarded), output position
n = oy*Wq + ox of channel co is then

    y[co, n] = b[co] + sum_k wt[k, co] * src_flat[off[k] + n]

over the Ci*kh*kw taps k: each tap reads a *contiguous* run of the source, for
any stride, padding and dilation. One parallel kernel evaluates it: a job is a
block of 8 output channels x ~768 positions; the accumulators stay in L1 and
each pass over them applies 4 taps with 32 hoisted weights, a unit-stride loop
the compiler turns into AVX-512/AVX2 FMAs. What is chosen per layer shape:
the phase split (stride > 1; stride 2, the common case, by a vectorized
deinterleave), the chunk of positions per job (even chunks, enough jobs for
every thread), and zero padding of channels to blocks of 8 and taps to 4.

Why not im2col + BLAS for channel-heavy layers (the plan in issue 7): measured
on the 2-core AVX-512 bench machine, this kernel runs 3x3 convolutions with
16-64 channels at 170-190 GFLOP/s, ~90% of a large numpy matmul (~200), so
BLAS (with small M = Co and the im2col copy on top) has nothing left to win,
and OpenBLAS's spinning threads fight numba's thread pool when the two
alternate (100x slowdowns seen in a blocked im2col + matmul prototype). Few input channels,
big kernels (7x7), dilation, stride (through the phase split) and 1D signals
all run the same kernel at full speed, and there is one kernel to compile.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from ..geometry import window_output
from . import numpy_path
from .coldstart import ready
from .launch import one_at_a_time, sized

_FM = {"contract"}


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


@lru_cache(maxsize=256)
def _plan(*geometry) -> "_Plan":
    """The (immutable) plan of one layer geometry, computed once."""
    return _Plan(*geometry)


class _Plan:
    """Geometry of one convolution in the phase-split, full-grid form."""

    def __init__(self, ci, h, w, kh, kw, stride, padding, dilation):
        sh, sw = stride
        ph, pw = padding
        dh, dw = dilation
        if min(sh, sw, dh, dw, kh, kw) < 1 or min(ph, pw) < 0:
            raise ValueError(f"conv2d: invalid geometry kernel {kh}x{kw}, stride {stride}, "
                             f"padding {padding}, dilation {dilation}")
        hp, wp = h + 2 * ph, w + 2 * pw
        self.ho = window_output(h, kh, sh, ph, dh)
        self.wo = window_output(w, kw, sw, pw, dw)
        if self.ho < 1 or self.wo < 1:
            raise ValueError(f"conv2d: kernel {kh}x{kw} (dilation {dh}x{dw}) does not fit the "
                             f"{hp}x{wp} padded input")
        self.hq = -(-hp // sh)
        self.wq = -(-wp // sw)
        ky, kx = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
        ky, kx = ky.ravel(), kx.ravel()
        tap_off = (ky // sh) * self.wq + kx // sw
        tap_phase = (ky % sh) * sw + kx % sw
        self.n = self.ho * self.wq  # full-grid positions
        self.length = max(self.hq * self.wq, int(tap_off.max()) + self.n)
        ci_idx = np.arange(ci)
        # k = ci*kh*kw + tap, PyTorch's weight order
        off = (tap_phase[None, :] * ci + ci_idx[:, None]) * self.length + tap_off[None, :]
        self.off = np.zeros(-(-off.size // 4) * 4, np.int64)  # taps padded to a multiple of 4
        self.off[:off.size] = off.ravel()
        self.phases = sh * sw
        self.k = ci * kh * kw


@njit(cache=True, parallel=True)
def _make_source(x, sh, sw, ph, pw, hq, wq, length, out):
    """out (phases*Ci, length): zero-padded x split by stride phase, flattened.

    Phase (py, px) of channel c is row (py*sw + px)*Ci + c; its pixel (i, j) is
    padded-input pixel (i*sh + py, j*sw + px)."""
    ci = x.shape[0]
    for job in prange(sh * ci):
        py = job // ci
        _source_rows(x, job - py * ci, py, sh, sw, ph, pw, hq, wq, out)


@njit(cache=True)
def _zero(d):
    for j in range(d.shape[0]):
        d[j] = 0.0


@njit(cache=True)
def _source_rows(x, c, py, sh, sw, ph, pw, hq, wq, out):
    """All phases (py, 0..sw-1) of channel c."""
    ci, h, w = x.shape
    r0 = py * sw * ci + c  # row of phase (py, 0); phase (py, px) is r0 + px*ci
    tmp = np.zeros(sw * wq, np.float32)  # one padded input row (borders stay 0)
    for px in range(sw):
        _zero(out[r0 + px * ci, hq * wq:])
    for i in range(hq):
        yy = i * sh + py - ph
        base = i * wq
        if yy < 0 or yy >= h:
            for px in range(sw):
                _zero(out[r0 + px * ci, base:base + wq])
            continue
        xr = x[c, yy]
        if sw == 1:
            d = out[r0, base:base + wq]
            _zero(d[:pw])
            _zero(d[pw + w:])
            dm = d[pw:pw + w]
            for j in range(w):
                dm[j] = xr[j]
            continue
        t = tmp[pw:pw + w]
        for j in range(w):
            t[j] = xr[j]
        if sw == 2:  # both phases in one pass: a vectorized deinterleave
            d0 = out[r0, base:base + wq]
            d1 = out[r0 + ci, base:base + wq]
            for j in range(wq):
                d0[j] = tmp[2 * j]
                d1[j] = tmp[2 * j + 1]
        else:
            for px in range(sw):
                d = out[r0 + px * ci, base:base + wq]
                s = tmp[px::sw]
                for j in range(wq):
                    d[j] = s[j]


@njit(cache=True, parallel=True, fastmath=_FM)
def _direct(src, off, wt, bias, nchunk, ho, wq, wo, y):
    """y (Co, ho, wo) from the flat source; wt (K, Co_pad), K a multiple of 4 and
    Co_pad of 8, bias (Co_pad,) (the wrapper pads with zeros).

    One job: 8 output channels x nchunk positions. The accumulators (8 rows,
    24 KB at 768 positions) stay in L1; each pass over them applies 4 taps
    with 32 hoisted weights, so every 4 source loads feed 32 multiply-adds;
    the first pass starts from the bias instead of zeros."""
    k_total = off.shape[0]
    co = y.shape[0]
    nblk = wt.shape[1] // 8
    n_total = ho * wq
    nch = (n_total + nchunk - 1) // nchunk
    for job in prange(nblk * nch):
        # consecutive jobs share a chunk of positions (its source stays in
        # L2 while all channel blocks use it)
        ch = job // nblk
        c0 = (job - ch * nblk) * 8
        n0 = ch * nchunk
        nc = min(nchunk, n_total - n0)
        # rows padded by 16 floats: rows 4 KB apart would share L1 sets
        acc = np.empty((8, nchunk + 16), np.float32)
        a0 = acc[0, :nc]
        a1 = acc[1, :nc]
        a2 = acc[2, :nc]
        a3 = acc[3, :nc]
        a4 = acc[4, :nc]
        a5 = acc[5, :nc]
        a6 = acc[6, :nc]
        a7 = acc[7, :nc]
        b0, b1, b2, b3, b4, b5, b6, b7 = bias[c0:c0 + 8]
        s0 = src[off[0] + n0:off[0] + n0 + nc]
        s1 = src[off[1] + n0:off[1] + n0 + nc]
        s2 = src[off[2] + n0:off[2] + n0 + nc]
        s3 = src[off[3] + n0:off[3] + n0 + nc]
        w00, w01, w02, w03, w04, w05, w06, w07 = wt[0, c0:c0 + 8]
        w10, w11, w12, w13, w14, w15, w16, w17 = wt[1, c0:c0 + 8]
        w20, w21, w22, w23, w24, w25, w26, w27 = wt[2, c0:c0 + 8]
        w30, w31, w32, w33, w34, w35, w36, w37 = wt[3, c0:c0 + 8]
        for j in range(nc):
            v0 = s0[j]
            v1 = s1[j]
            v2 = s2[j]
            v3 = s3[j]
            a0[j] = b0 + w00 * v0 + w10 * v1 + w20 * v2 + w30 * v3
            a1[j] = b1 + w01 * v0 + w11 * v1 + w21 * v2 + w31 * v3
            a2[j] = b2 + w02 * v0 + w12 * v1 + w22 * v2 + w32 * v3
            a3[j] = b3 + w03 * v0 + w13 * v1 + w23 * v2 + w33 * v3
            a4[j] = b4 + w04 * v0 + w14 * v1 + w24 * v2 + w34 * v3
            a5[j] = b5 + w05 * v0 + w15 * v1 + w25 * v2 + w35 * v3
            a6[j] = b6 + w06 * v0 + w16 * v1 + w26 * v2 + w36 * v3
            a7[j] = b7 + w07 * v0 + w17 * v1 + w27 * v2 + w37 * v3
        for k in range(4, k_total, 4):
            s0 = src[off[k + 0] + n0:off[k + 0] + n0 + nc]
            s1 = src[off[k + 1] + n0:off[k + 1] + n0 + nc]
            s2 = src[off[k + 2] + n0:off[k + 2] + n0 + nc]
            s3 = src[off[k + 3] + n0:off[k + 3] + n0 + nc]
            w00, w01, w02, w03, w04, w05, w06, w07 = wt[k + 0, c0:c0 + 8]
            w10, w11, w12, w13, w14, w15, w16, w17 = wt[k + 1, c0:c0 + 8]
            w20, w21, w22, w23, w24, w25, w26, w27 = wt[k + 2, c0:c0 + 8]
            w30, w31, w32, w33, w34, w35, w36, w37 = wt[k + 3, c0:c0 + 8]
            for j in range(nc):
                v0 = s0[j]
                v1 = s1[j]
                v2 = s2[j]
                v3 = s3[j]
                a0[j] = a0[j] + w00 * v0 + w10 * v1 + w20 * v2 + w30 * v3
                a1[j] = a1[j] + w01 * v0 + w11 * v1 + w21 * v2 + w31 * v3
                a2[j] = a2[j] + w02 * v0 + w12 * v1 + w22 * v2 + w32 * v3
                a3[j] = a3[j] + w03 * v0 + w13 * v1 + w23 * v2 + w33 * v3
                a4[j] = a4[j] + w04 * v0 + w14 * v1 + w24 * v2 + w34 * v3
                a5[j] = a5[j] + w05 * v0 + w15 * v1 + w25 * v2 + w35 * v3
                a6[j] = a6[j] + w06 * v0 + w16 * v1 + w26 * v2 + w36 * v3
                a7[j] = a7[j] + w07 * v0 + w17 * v1 + w27 * v2 + w37 * v3
        _store(acc, c0, min(8, co - c0), n0, nc, wq, wo, y)


@njit(cache=True)
def _store(acc, c0, nco, n0, nc, wq, wo, y):
    """Copy acc[:nco, :nc] (full-grid positions n0...) into y (Co, ho, wo), dropping
    the columns past wo."""
    n = n0
    end = n0 + nc
    while n < end:
        oy = n // wq
        ox = n - oy * wq
        run = min(wq - ox, end - n)
        if ox < wo:
            m = min(run, wo - ox)
            j0 = n - n0
            for c in range(nco):
                dst = y[c0 + c, oy, ox:ox + m]
                a = acc[c, j0:j0 + m]
                for j in range(m):
                    dst[j] = a[j]
        n += run


@one_at_a_time
def conv2d(x, w, b, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """PyTorch Conv2d (zero padding, batch 1): x (Ci, H, W), w (Co, Ci, kh, kw), b (Co,) or None."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    if x.ndim != 3 or w.ndim != 4 or w.shape[1] != x.shape[0]:
        raise ValueError(f"conv2d: input {x.shape} and weight {w.shape} do not match")
    co, ci, kh, kw = w.shape
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    plan = _plan(ci, x.shape[1], x.shape[2], kh, kw, stride, padding, dilation)
    make_source = sized(_make_source, plan.phases * ci * plan.length, 1 << 19)
    if not ready(make_source, _direct):  # still compiling (first start): numpy meanwhile
        return numpy_path.conv2d(x, w, b, stride, padding, dilation)
    src = np.empty((plan.phases * ci, plan.length), np.float32)
    make_source(x, stride[0], stride[1], padding[0], padding[1], plan.hq, plan.wq, plan.length, src)
    src = src.reshape(-1)
    y = np.empty((co, plan.ho, plan.wo), np.float32)
    # pad to whole blocks of 8 channels x 4 taps with zero weights (a padded
    # tap reads offset 0, always valid): no slow remainder passes
    cop = -(-co // 8) * 8
    wt = np.zeros((plan.off.shape[0], cop), np.float32)
    wt[:plan.k, :co] = w.reshape(co, plan.k).T
    bias = np.zeros(cop, np.float32)
    if b is not None:
        bias[:co] = np.asarray(b, dtype=np.float32).reshape(co)
    _direct(src, plan.off, wt, bias, _chunk(plan.n, cop // 8), plan.ho, plan.wq, plan.wo, y)
    return y


def _chunk(n: int, nblk: int) -> int:
    """Positions per job: about 768 (the accumulators fill most of L1), split
    evenly so the last chunk is not a sliver, smaller when there would be too
    few jobs to share between threads."""
    target = 768
    while target > 64 and nblk * (-(-n // target)) < 8:
        target //= 2
    nch = -(-n // target)
    return -(-(-(-n // nch)) // 16) * 16
