"""Backward kernels: the vector-Jacobian product of every layer type.

Each public `*_backward` takes the layer's forward input (or its shape), the
gradient `gy` of some scalar with respect to the layer's output, and returns
the gradient with respect to the input and, for layers with parameters, with
respect to those parameters. Semantics follow PyTorch (batch 1, float32):

- conv2d_backward(x, w, gy, stride, padding, dilation) -> (gx, gw, gb)
- maxpool2d_backward(x, gy, kernel, stride, padding) -> gx: each output's
  gradient goes to its window's argmax; ties go to the first maximum in scan
  order (row by row), padding is -inf and never wins, NaN wins like PyTorch.
- avgpool2d_backward(gy, x_shape, kernel, stride, padding) -> gx, with
  count_include_pad=True (every window divides by kh*kw).
- batchnorm_backward(x2, gy2, weight, mean, var, eps) -> (gx, gw, gb), the
  inference form: running statistics are constants. x2, gy2 are (C, N) views.
- layernorm_backward(x2, gy2, weight, eps) -> (gx, gw, gb): normalization over
  C at each of the N positions (statistics depend on x, so they are
  differentiated through).
- leaky_relu_backward(x, gy, slope) -> gx: gy where x > 0, slope*gy elsewhere
  (x == 0 takes the negative side, like PyTorch); slope 0 gives exact zeros.
- linear_backward(x, w, gy) -> (gx, gw, gb).

conv2d_backward and linear_backward take param_grads=False to compute only
the input gradient (gw, gb None): what the effective receptive field needs.

Maps are (C, H, W); a 1D signal is a map of height 1. Public wrappers check
shapes and convert to C-contiguous float32; the private @njit(cache=True)
functions compute.

The convolution uses the same reduction as the forward kernel (see conv.py):
the zero-padded input is split by stride phase so that every kernel tap reads
a contiguous run of a flat source on the "full grid" of Ho x Wq positions.
The weight gradient reduces each tap's run against the gradient rows; the
input gradient adds, per phase image, shifted runs of the zero-padded output
gradient (blocks of 4 input channels, or one channel per job for 1-2
channels; from 64 channels in and out W^T gY by BLAS, each row added back
onto its tap's run, conv.choose_input_grad), and the phase images are
stitched back into the input's layout.
At stride 1 with 8+ input channels the input gradient is instead the forward
convolution (conv.py) of gy with the flipped, transposed kernel. Where the
forward runs as Winograd (3x3, stride 1, 64+ channels), both gradients do, in
its scheme: the weight gradient in the transformed domain (winograd.weight_grad),
the input gradient with the flipped kernel's transform taken straight from w; a dilated layer that runs on its phase sub-images
(atrous.py) takes the gradients of the undilated layer on them. 1x1 layers
without padding that run as one product (conv.pointwise_input) take both
gradients as products too: gw = gY X^T, and with a stride gx = W^T gY spread
onto every stride-th pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..geometry import window_output
from . import blas, numpy_path, tuning, winograd, winograd_s2
from .coldstart import ready
from .launch import contended, one_at_a_time, sized
from .reuse import private
from .vectors import aligned_rows, wide_vectors
from .pool import tiles

_FM = {"contract"}


def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        v = (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a pair, not {v!r}") from None
    return int(a), int(b)


def _f32(a, name: str, ndim: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {a.shape}")
    return a


# ---------------------------------------------------------------------------
# Convolution

@njit(cache=True, parallel=True)
def _phase_unsplit(gsrc, sh, sw, ph, pw, hq, wq, length, gx):
    """gx[b, c, y, x] = the phase-image entry that holds padded pixel (y+ph, x+pw)
    of sample b (columns [b*length, (b+1)*length) of gsrc); the inverse of
    conv._make_source (padding positions are dropped).

    A horizontal stride of 2: a job is a channel of a sample, each row written
    left to right from its two phase rows interleaved (vectorized; the loop per
    phase image below writes every other element and runs scalar, at 1.6-3.5x
    the time). Otherwise a job is a phase image of a channel."""
    nb, ci, h, w = gx.shape
    if sw == 2:
        # x = 2t + e: padded column 2t + e + pw is column j of phase (pw + e) & 1
        pe = pw & 1
        po = (pw + 1) & 1
        je = pw >> 1
        jo = (pw + 1) >> 1
        half = w // 2
        for job in prange(nb * ci):
            b = job // ci
            c = job - b * ci
            for y in range(h):
                py = (y + ph) % sh
                base = b * length + (y + ph) // sh * wq  # whole rows: a column block is a strided view
                dst = gx[b, c, y]
                re = gsrc[(py * 2 + pe) * ci + c, base + je:base + wq]
                ro = gsrc[(py * 2 + po) * ci + c, base + jo:base + wq]
                for t in range(half):
                    dst[2 * t] = re[t]
                    dst[2 * t + 1] = ro[t]
                if w % 2:
                    dst[w - 1] = re[half]
        return
    nph = sh * sw
    for job in prange(nb * nph * ci):
        b = job // (nph * ci)
        pc = job - b * nph * ci
        p = pc // ci
        c = pc - p * ci
        py = p // sw
        px = p - py * sw
        row = gsrc[pc, b * length:(b + 1) * length]
        # phase columns j with 0 <= j*sw + px - pw < w
        j0 = max(0, (pw - px + sw - 1) // sw)
        j1 = min(wq, (w - 1 + pw - px) // sw + 1)
        for i in range(hq):
            yy = i * sh + py - ph
            if yy < 0 or yy >= h:
                continue
            dst = gx[b, c, yy]
            base = i * wq
            if sw == 1:  # slices: computed indices kept wraparound checks (scalar copies)
                d = dst[j0 + px - pw:j1 + px - pw]
                r = row[base + j0:base + j1]
                for j in range(j1 - j0):
                    d[j] = r[j]
            else:
                for j in range(j0, j1):
                    dst[j * sw + px - pw] = row[base + j]


@njit(cache=True, parallel=True, fastmath=_FM)
def _grad_input_direct(gflat, pair_start, pair_off, wt, ci, nchunk, length, gsrc):
    """gsrc[p*ci + c, m] = sum over phase p's (tap, co) pairs q of
    wt[q, c] * gflat[pair_off[q] + m], for m in [0, length).

    Parallel over (phase, chunk of m, block of 4 input channels), the blocks
    innermost: consecutive jobs read the same runs of the gradient, which stay
    in L2. Each pass over the L1-sized accumulators applies 3 pairs x 4
    channels: 12 weights, 3 runs and the accumulator being updated fill AVX2's
    16 vector registers, as in the forward kernel (conv._direct), and like it on
    512-bit vectors over 64-byte aligned rows where the CPU has AVX-512
    (vectors.py): 0.90-0.94x its time on five stride-2 and 3-channel layers
    (Intel Xeon, one process, alternating)."""
    nph = pair_start.shape[0] - 1
    nblk = (ci + 3) // 4
    nch = (length + nchunk - 1) // nchunk
    for job in prange(nph * nblk * nch):
        wide_vectors()
        p = job // (nblk * nch)
        rest = job - p * nblk * nch
        ch = rest // nblk
        c0 = (rest - ch * nblk) * 4
        m0 = ch * nchunk
        nc = min(nchunk, length - m0)
        # rows padded by 16 floats: rows 2-4 KB apart would crowd L1's sets
        acc = aligned_rows(4, nchunk + 16)
        acc[:] = 0.0
        a0 = acc[0, :nc]
        a1 = acc[1, :nc]
        a2 = acc[2, :nc]
        a3 = acc[3, :nc]
        q0 = pair_start[p]
        q1 = pair_start[p + 1]
        q3 = q1 - (q1 - q0) % 3
        for q in range(q0, q3, 3):
            s0 = gflat[pair_off[q] + m0:pair_off[q] + m0 + nc]
            s1 = gflat[pair_off[q + 1] + m0:pair_off[q + 1] + m0 + nc]
            s2 = gflat[pair_off[q + 2] + m0:pair_off[q + 2] + m0 + nc]
            w00 = wt[q, c0]
            w01 = wt[q, c0 + 1]
            w02 = wt[q, c0 + 2]
            w03 = wt[q, c0 + 3]
            w10 = wt[q + 1, c0]
            w11 = wt[q + 1, c0 + 1]
            w12 = wt[q + 1, c0 + 2]
            w13 = wt[q + 1, c0 + 3]
            w20 = wt[q + 2, c0]
            w21 = wt[q + 2, c0 + 1]
            w22 = wt[q + 2, c0 + 2]
            w23 = wt[q + 2, c0 + 3]
            for j in range(nc):
                v0 = s0[j]
                v1 = s1[j]
                v2 = s2[j]
                a0[j] = a0[j] + w00 * v0 + w10 * v1 + w20 * v2
                a1[j] = a1[j] + w01 * v0 + w11 * v1 + w21 * v2
                a2[j] = a2[j] + w02 * v0 + w12 * v1 + w22 * v2
                a3[j] = a3[j] + w03 * v0 + w13 * v1 + w23 * v2
        for q in range(q3, q1):
            s0 = gflat[pair_off[q] + m0:pair_off[q] + m0 + nc]
            w00 = wt[q, c0]
            w01 = wt[q, c0 + 1]
            w02 = wt[q, c0 + 2]
            w03 = wt[q, c0 + 3]
            for j in range(nc):
                v0 = s0[j]
                a0[j] += w00 * v0
                a1[j] += w01 * v0
                a2[j] += w02 * v0
                a3[j] += w03 * v0
        for c in range(min(4, ci - c0)):
            d = gsrc[p * ci + c0 + c, m0:m0 + nc]
            a = acc[c, :nc]
            for j in range(nc):
                d[j] = a[j]


@njit(cache=True, inline="always", fastmath={"contract", "reassoc"})
def _block_sums(s0, s1, s2, g0, g1, g2, g3, nc):
    """The weight gradient's 4 channels x 3 taps block over nc positions: 12 float32
    sums in registers, fed by 7 loads per position (inlined into its callers)."""
    t00 = np.float32(0.0)
    t01 = np.float32(0.0)
    t02 = np.float32(0.0)
    t10 = np.float32(0.0)
    t11 = np.float32(0.0)
    t12 = np.float32(0.0)
    t20 = np.float32(0.0)
    t21 = np.float32(0.0)
    t22 = np.float32(0.0)
    t30 = np.float32(0.0)
    t31 = np.float32(0.0)
    t32 = np.float32(0.0)
    for j in range(nc):
        u0 = s0[j]
        u1 = s1[j]
        u2 = s2[j]
        v = g0[j]
        t00 += v * u0
        t01 += v * u1
        t02 += v * u2
        v = g1[j]
        t10 += v * u0
        t11 += v * u1
        t12 += v * u2
        v = g2[j]
        t20 += v * u0
        t21 += v * u1
        t22 += v * u2
        v = g3[j]
        t30 += v * u0
        t31 += v * u1
        t32 += v * u2
    return t00, t01, t02, t10, t11, t12, t20, t21, t22, t30, t31, t32


@njit(cache=True, parallel=True, fastmath={"contract", "reassoc"})
def _grad_weight(gflat, rowlen, g0ff, n, srcflat, length, row_of, off, nchunk, gw):
    """gw[co, k] = sum_{m < n} gflat[co*rowlen + g0ff + m] * srcflat[row_of[k]*length + off[k] + m]
    (zeros of the padded gradient mask the discarded full-grid columns).

    A job is 4 output channels x 3 taps: 12 sums in registers, fed by 7 loads
    per position (4 gradient rows, 3 source runs), over all positions in chunks
    (float32 within a chunk, float64 across). 4 x 3 fills AVX2's 16 vector
    registers; the earlier 4 channels x 2 taps per job (all channels of a tap
    pair in one job) loaded 6 values per 8 multiply-adds and took 1.4-1.8x this
    time (batches of 1-64, 1-32 channels in, 8-64 out, Zen 3). A block past the
    last channel or tap repeats the last one and is not stored."""
    co_n = gw.shape[0]
    kk = off.shape[0]
    ntri = (kk + 2) // 3
    nblk = (co_n + 3) // 4
    nch = (n + nchunk - 1) // nchunk
    for job in prange(ntri * nblk):
        t = job // nblk
        c0 = (job - t * nblk) * 4
        k0 = 3 * t
        k1 = min(k0 + 1, kk - 1)
        k2 = min(k0 + 2, kk - 1)
        b0 = row_of[k0] * length + off[k0]
        b1 = row_of[k1] * length + off[k1]
        b2 = row_of[k2] * length + off[k2]
        c3 = min(c0 + 3, co_n - 1)
        c1 = min(c0 + 1, c3)
        c2 = min(c0 + 2, c3)
        acc = np.zeros((4, 3), np.float64)
        for ch in range(nch):
            n0 = ch * nchunk
            nc = min(n, n0 + nchunk) - n0
            s0 = srcflat[b0 + n0:b0 + n0 + nc]
            s1 = srcflat[b1 + n0:b1 + n0 + nc]
            s2 = srcflat[b2 + n0:b2 + n0 + nc]
            g0 = gflat[c0 * rowlen + g0ff + n0:c0 * rowlen + g0ff + n0 + nc]
            g1 = gflat[c1 * rowlen + g0ff + n0:c1 * rowlen + g0ff + n0 + nc]
            g2 = gflat[c2 * rowlen + g0ff + n0:c2 * rowlen + g0ff + n0 + nc]
            g3 = gflat[c3 * rowlen + g0ff + n0:c3 * rowlen + g0ff + n0 + nc]
            sums = _block_sums(s0, s1, s2, g0, g1, g2, g3, nc)
            for i in range(4):
                for j in range(3):
                    acc[i, j] += sums[3 * i + j]
        for i in range(min(4, co_n - c0)):
            gw[c0 + i, k0] = acc[i, 0]
            gw[c0 + i, k1] = acc[i, 1]
            gw[c0 + i, k2] = acc[i, 2]


GW_RANGES_BYTES = 3 << 19  # bytes of padded output gradient from which the weight gradient sweeps ranges
GW_RANGES_PARTS = 1 << 15  # at most this many weights (Co x K) for it: its partial sums are JOBS x that
GW_RANGES_JOBS = 4


def weight_grad_ranges(co: int, k: int, n: int) -> bool:
    """Whether the direct weight gradient (Co x K weights, n full-grid positions)
    sweeps position ranges (_grad_weight_ranges) instead of one tap block over all
    positions per job (_grad_weight): when the gradient rows outgrow the L2 cache,
    each of _grad_weight's jobs streams them from memory again (3->16 channels on
    32 px at batch 64: 4.5 MB of rows, 36 jobs). One process, Intel Xeon, the two
    alternating: 0.53x _grad_weight's time there, 0.62-0.66x at 3->64 on 32 px
    (batch 16, 4.5 MB), 0.69x at 16->32 on 16 px (batch 64, 2.4 MB), 0.76x at
    16->32 on 128 px (batch 1, 2.1 MB); 0.95-0.97x at 0.5-1.3 MB; 1.5-1.7x on
    64->128 with stride 2 on 28 px at batch 4 (576 taps over 900 positions: per
    chunk, many passes over few positions)."""
    return co * n * 4 >= GW_RANGES_BYTES and co * k <= GW_RANGES_PARTS


@njit(cache=True, parallel=True, fastmath={"contract", "reassoc"})
def _grad_weight_ranges(gflat, rowlen, g0ff, n, srcflat, length, row_of, off, nchunk, parts):
    """_grad_weight's sums (its 4 channels x 3 taps block, float32 within a chunk,
    float64 across), with the loops turned: a job takes a range of positions and,
    chunk by chunk, every block of weights, into parts[job] (the caller adds the
    parts). A chunk's gradient rows and source runs stay in cache for all blocks."""
    jobs = parts.shape[0]
    co_n = parts.shape[1]
    kk = off.shape[0]
    ntri = (kk + 2) // 3
    nblk = (co_n + 3) // 4
    per = (-(-n // jobs) + 15) // 16 * 16
    for job in prange(jobs):
        lo = job * per
        hi = min(n, lo + per)
        part = parts[job]
        for n0 in range(lo, hi, nchunk):
            nc = min(hi, n0 + nchunk) - n0
            for t in range(ntri):
                k0 = 3 * t
                k1 = min(k0 + 1, kk - 1)
                k2 = min(k0 + 2, kk - 1)
                b0 = row_of[k0] * length + off[k0] + n0
                b1 = row_of[k1] * length + off[k1] + n0
                b2 = row_of[k2] * length + off[k2] + n0
                s0 = srcflat[b0:b0 + nc]
                s1 = srcflat[b1:b1 + nc]
                s2 = srcflat[b2:b2 + nc]
                for cb in range(nblk):
                    c0 = cb * 4
                    c3 = min(c0 + 3, co_n - 1)
                    c1 = min(c0 + 1, c3)
                    c2 = min(c0 + 2, c3)
                    g0 = gflat[c0 * rowlen + g0ff + n0:c0 * rowlen + g0ff + n0 + nc]
                    g1 = gflat[c1 * rowlen + g0ff + n0:c1 * rowlen + g0ff + n0 + nc]
                    g2 = gflat[c2 * rowlen + g0ff + n0:c2 * rowlen + g0ff + n0 + nc]
                    g3 = gflat[c3 * rowlen + g0ff + n0:c3 * rowlen + g0ff + n0 + nc]
                    _add_sums(part, (c0, c1, c2, c3), (k0, k1, k2), _block_sums(s0, s1, s2, g0, g1, g2, g3, nc))


@njit(cache=True, inline="always")
def _add_sums(part, cs, ks, sums):
    """part[c, k] += a block's sums (channels cs x taps ks, row by row), each
    distinct (channel, tap) once (a block past the last channel or tap repeats
    the last one)."""
    nk = len(ks)
    for i in range(len(cs)):
        if i == 0 or cs[i] > cs[i - 1]:
            for j in range(nk):
                if j == 0 or ks[j] > ks[j - 1]:
                    part[cs[i], ks[j]] += sums[nk * i + j]


def _bias_grad(gy) -> np.ndarray:
    """gb (Co,) float32: gy (N, Co, Ho, Wo) summed per channel, in float64."""
    nb, co = gy.shape[:2]
    gb = np.empty(co, np.float64)
    _channel_sums(gy.reshape(nb, co, -1), gb)
    return gb.astype(np.float32)


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def _channel_sums(gy, out):
    """out[c] = the float64 sum of gy[:, c, :] (a conv's bias gradient), a job per
    channel. numpy's gy.sum(axis=(0, 2, 3), dtype=float64) took 3.5-5x the time
    (0.18-0.40 ms on the 1-4 MB gradients of a batch of 64): it casts and reduces
    across strided axes."""
    nb, c_n, p = gy.shape
    for c in prange(c_n):
        total = 0.0
        for b in range(nb):
            row = gy[b, c]
            part = 0.0
            for j in range(p):
                part += row[j]
            total += part
        out[c] = total


@njit(cache=True, parallel=True)
def _full_grid(gy, wq, pad, length, out):
    """out (Co, >= pad + N*length): gy (N, Co, ho, wo) laid out like the forward's
    positions (sample b's row oy at pad + b*length + oy*wq), each row padded by
    zeros to wq, zeros before, between and after the samples (to the row's end)."""
    nb, co, ho, wo = gy.shape
    for job in prange(co * nb):
        c = job // nb
        b = job - c * nb
        o = out[c, pad + b * length:pad + (b + 1) * length]
        if b == 0:
            for j in range(pad):
                out[c, j] = 0.0
        for oy in range(ho):
            # a slice per row: o[oy*wq + ox] kept a wraparound check per index
            # and compiled to scalar copies
            r = o[oy * wq:(oy + 1) * wq]
            g = gy[b, c, oy]
            for ox in range(wo):
                r[ox] = g[ox]
            for ox in range(wo, wq):
                r[ox] = 0.0
        for j in range(ho * wq, length):
            o[j] = 0.0
        if b == nb - 1:
            for j in range(pad + nb * length, out.shape[1]):
                out[c, j] = 0.0


@njit(cache=True, parallel=True, fastmath=_FM)
def _grad_input_single(gflat, pair_start, pair_off, wc, nchunk, length, gsrc):
    """_grad_input_direct for one input channel per job (few channels, no
    padded work): gsrc[p*ci + c, m] = sum_q wc[c, q] * gflat[pair_off[q] + m];
    4 pairs per pass over the accumulator."""
    ci = wc.shape[0]
    nph = pair_start.shape[0] - 1
    nch = (length + nchunk - 1) // nchunk
    for job in prange(nph * ci * nch):
        pc = job // nch
        p = pc // ci
        c = pc - p * ci
        m0 = (job - pc * nch) * nchunk
        nc = min(nchunk, length - m0)
        a = gsrc[p * ci + c, m0:m0 + nc]
        for j in range(nc):
            a[j] = 0.0
        wr = wc[c]
        q0 = pair_start[p]
        q1 = pair_start[p + 1]
        q4 = q1 - (q1 - q0) % 4
        for q in range(q0, q4, 4):
            s0 = gflat[pair_off[q] + m0:pair_off[q] + m0 + nc]
            s1 = gflat[pair_off[q + 1] + m0:pair_off[q + 1] + m0 + nc]
            s2 = gflat[pair_off[q + 2] + m0:pair_off[q + 2] + m0 + nc]
            s3 = gflat[pair_off[q + 3] + m0:pair_off[q + 3] + m0 + nc]
            w0 = wr[q]
            w1 = wr[q + 1]
            w2 = wr[q + 2]
            w3 = wr[q + 3]
            for j in range(nc):
                a[j] = a[j] + w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]
        for q in range(q4, q1):
            s0 = gflat[pair_off[q] + m0:pair_off[q] + m0 + nc]
            w0 = wr[q]
            for j in range(nc):
                a[j] += w0 * s0[j]


def _chunk(n: int, jobs: int) -> int:
    chunk = 512
    while chunk > 64 and jobs * (-(-n // chunk)) < 8:
        chunk //= 2
    return chunk


def conv2d_backward(x, w, gy, stride=(1, 1), padding=(0, 0), dilation=(1, 1), param_grads=True):
    """Gradients of PyTorch Conv2d (zero padding, batch 1).

    x (Ci, H, W), w (Co, Ci, kh, kw), gy (Co, Ho, Wo) -> gx (Ci, H, W),
    gw (Co, Ci, kh, kw), gb (Co,); with param_grads=False gw and gb are None
    and x is only read for its shape.
    """
    x = _f32(x, "conv2d_backward: x", 3)
    gy = _f32(gy, "conv2d_backward: gy", 3)
    gx, gw, gb = conv2d_backward_batch(x[None], w, gy[None], stride, padding, dilation, param_grads)
    return gx[0], gw, gb


@one_at_a_time
def conv2d_backward_batch(x, w, gy, stride=(1, 1), padding=(0, 0), dilation=(1, 1), param_grads=True,
                          input_grad=True, version=None, algorithm=None):
    """Gradients of PyTorch Conv2d on a batch, the parameter gradients summed over it.

    x (N, Ci, H, W), w (Co, Ci, kh, kw), gy (N, Co, Ho, Wo) -> gx (N, Ci, H, W),
    gw (Co, Ci, kh, kw), gb (Co,). param_grads=False: gw and gb are None and x
    is only read for its shape; input_grad=False: gx is None (a first layer).
    version: the layer's parameter version (packed weights are kept per version).
    algorithm: None (chosen per layer shape) or "direct" / "gemm" / "winograd" / "winograd4", for tests.
    """
    from . import conv, direct512
    x = _f32(x, "conv2d_backward: x", 4)
    w = _f32(w, "conv2d_backward: weight", 4)
    gy = _f32(gy, "conv2d_backward: gy", 4)
    (sh, sw), (ph, pw), (dh, dw) = (_pair(stride, "stride"), _pair(padding, "padding"),
                                    _pair(dilation, "dilation"))
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError("conv2d_backward: stride and dilation must be >= 1, padding >= 0")
    nb, ci, h, wd = x.shape
    co, wci, kh, kw = w.shape
    if wci != ci:
        raise ValueError(f"conv2d_backward: input {x.shape} and weight {w.shape} do not match")
    ho, wo = window_output(h, kh, sh, ph, dh), window_output(wd, kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d_backward: kernel {kh}x{kw} does not fit the padded input")
    if gy.shape != (nb, co, ho, wo):
        raise ValueError(f"conv2d_backward: gy is {gy.shape[1:]}, the output is {(co, ho, wo)}")
    plan = conv._plan(ci, h, wd, kh, kw, (sh, sw), (ph, pw), (dh, dw))
    if algorithm is None and param_grads:  # a training step: its shape's first measures the candidates
        _tune(plan, co, x, w, gy, (sh, sw), (ph, pw), (dh, dw), input_grad)
    algo = algorithm or conv.choose(plan, co, nb)  # the forward's algorithm
    if plan.dilated and plan.winograd and algo in winograd.NAMES:
        return _atrous_backward(x, w, gy, (ph, pw), (dh, dw), param_grads, input_grad, version, algorithm, algo)
    if algo == winograd_s2.NAME and ready(*winograd_s2.GRAD_KERNELS):
        return _strided_winograd_backward(x, w, gy, (ph, pw), param_grads, input_grad, version)
    if not ready(*_CONV_KERNELS, conv._make_source, conv._gather):  # first start: numpy meanwhile
        return _numpy_conv_backward(x, w, gy, (sh, sw), (ph, pw), (dh, dw), param_grads, input_grad)
    length, maxoff, nph = plan.length, plan.maxoff, plan.phases
    n_total = (nb - 1) * length + plan.n
    rowlen = maxoff + plan.columns(nb)

    # 3x3, stride 1, channel-heavy: both gradients in the Winograd domain (winograd.py),
    # in the forward's scheme. F(4x4)'s weight gradient rounds to 6-11e-6 of its
    # largest entry (F(2x2)'s 6e-7, PyTorch's oneDNN 0.8-2.2e-6; 64-128 channels), as
    # F(4x4)'s forward does, and takes 0.70-0.76x F(2x2)'s time: on an Intel Xeon
    # F(2x2)'s was 1.2-1.5x PyTorch's, F(4x4)'s 1.03-1.07x.
    scheme = winograd.SCHEMES.get(algo) if plan.winograd else None
    wino = scheme is not None
    wino_gw = wino and ready(*scheme.grad_kernels)
    stride1_gx = conv.flipped_input_grad(ci, (kh, kw), (sh, sw), (ph, pw), (dh, dw))

    # 1x1, no padding, GEMM-sized: gw = gY X^T with the positions of every sample as
    # the inner dimension (no full grid, no im2col: x, or every stride-th pixel of it,
    # is its own columns)
    pointwise_gw = plan.pointwise and not wino and (
        algorithm == "gemm" or (algorithm is None and conv.choose(plan, co, nb, allow_winograd=False) == "gemm"))
    # such a layer with a stride: gx is W^T gY on every stride-th pixel, zeros elsewhere
    pointwise_gx = pointwise_gw and not stride1_gx

    # the remaining paths: im2col + BLAS on gy channel-major, or the direct kernels on
    # gy padded onto the full grid
    gw_algo = gx_algo = None
    if param_grads and not wino_gw and not pointwise_gw:
        gw_algo = (conv.choose(plan, co, nb, allow_winograd=False) if algorithm in (None, *winograd.NAMES,
                                                                                     winograd_s2.NAME)
                   else algorithm)
    if input_grad and not (stride1_gx or pointwise_gx):
        # a forced algorithm other than GEMM (direct, or Winograd with few channels) scatters directly
        gx_algo = conv.choose_input_grad(ci, co) if algorithm is None else ("gemm" if algorithm == "gemm" else "direct")
    gx = gw = gb = None
    gpad = gyc = None
    if "direct" in (gw_algo, gx_algo):
        gpad = np.empty((co, rowlen), np.float32)
        _full_grid(gy, plan.wq, maxoff, length, gpad)
    if "gemm" in (gw_algo, gx_algo):
        gyc = _channel_major(gy)
    if param_grads:
        gb = _bias_grad(gy)
    wino_gx = input_grad and stride1_gx and wino and ready(*scheme.kernels)
    gyt = None  # gy channels last, once for both Winograd gradients
    if (wino_gw and param_grads) or wino_gx:
        gyt = winograd.grad_layout(gy, x.shape[2:], (ph, pw))
    if wino_gw and param_grads:
        gw = winograd.weight_grad(x, gy, (ph, pw), scheme, gyt)
    elif pointwise_gw and param_grads:
        gw = _grad_weight_pointwise(conv.pointwise_input(x, (sh, sw)), gy).reshape(w.shape)
    elif param_grads:
        src = conv._source(x, plan, (sh, sw), (ph, pw))
        gw = np.empty((co, plan.k), np.float32)
        if gw_algo == "gemm":
            _grad_weight_gemm(gyc, src, plan, nb, conv.gemm_budget(gy.nbytes), gw)
        elif weight_grad_ranges(co, plan.k, n_total):
            parts = np.zeros((GW_RANGES_JOBS, co, plan.k))
            sweep = _grad_weight_ranges
            if direct512.weight_grad_applies(co) and ready(direct512._weight_grad):
                sweep = direct512._weight_grad  # its block in 512-bit registers
            sweep(gpad.reshape(-1), rowlen, maxoff, n_total, src, plan.columns(nb), plan.rows[:plan.k],
                  plan.taps[:plan.k], 1024, parts)
            gw[:] = parts.sum(axis=0)
        else:
            _grad_weight(gpad.reshape(-1), rowlen, maxoff, n_total, src, plan.columns(nb), plan.rows[:plan.k],
                         plan.taps[:plan.k], 1024, gw)
        gw = gw.reshape(w.shape)
    if not input_grad:
        return None, gw, gb
    if pointwise_gx:
        wt = conv.cached(version, "pointwise-transposed", w, lambda: (np.ascontiguousarray(w.reshape(co, ci).T),))[0]
        cols = np.empty((nb, ci, ho * wo), np.float32)
        blas.batched_matmul(wt, gy.reshape(nb, co, -1), cols)
        gx = np.zeros_like(x)
        gx[:, :, ::sh, ::sw] = cols.reshape(nb, ci, ho, wo)
        return gx, gw, gb

    if stride1_gx:
        # stride 1, enough input channels: the input gradient is a forward
        # convolution of gy with the flipped, transposed kernel (the forward's
        # algorithm choice applies)
        if wino_gx:  # its transform straight from w, no flipped copy
            u = conv.cached(version, f"{scheme.name}-flipped", w,
                            lambda: (winograd.kernel_transform(w, flip=True, scheme=scheme),))[0]
            gx = np.empty_like(x)
            winograd.conv3x3(gy, u, np.zeros(ci, np.float32), (2 - ph, 2 - pw), gx, xt=gyt[0])
            return gx, gw, gb
        wf = conv.cached(version, "flipped", w, lambda: (
            np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)),))[0]
        gx = conv.conv2d_batch(gy, wf, None, (1, 1), (dh * (kh - 1) - ph, dw * (kw - 1) - pw), (dh, dw),
                               version=None if version is None else (version, "flipped"), algorithm=algorithm,
                               remember_source=False)
        return gx, gw, gb

    total = plan.columns(nb)
    if gx_algo == "gemm":
        # the forward's product transposed: W^T gY per block of columns, each row of
        # the block added back onto its tap's runs of the phase images (col2im)
        gsrc = np.zeros((nph * ci, total), np.float32)
        wt = conv.cached(version, "gemm-transposed", w, lambda: (np.ascontiguousarray(w.reshape(co, -1).T),))[0]
        _grad_input_gemm(gyc, plan, wt, conv.gemm_budget(gy.nbytes), gsrc)
    else:
        # per phase image: the (tap, co) pairs of that phase each add a shifted run
        # of the padded output gradient
        ntap = kh * kw
        tap_off = plan.taps[:ntap]  # channel 0's taps: the same offsets for every channel
        tap_row = plan.rows[:ntap] // ci
        order = np.argsort(tap_row, kind="stable")
        pair_t = np.repeat(order, co)
        pair_c = np.tile(np.arange(co), ntap)
        pair_off = np.ascontiguousarray(pair_c * rowlen + maxoff - tap_off[pair_t], dtype=np.int64)
        counts = np.bincount(tap_row, minlength=nph) * co
        pair_start = np.zeros(nph + 1, np.int64)
        np.cumsum(counts, out=pair_start[1:])
        gsrc = np.empty((nph * ci, total), np.float32)
        wmat = w.reshape(co, ci, ntap)
        if ci >= 3:  # blocks of 4 channels (the last one padded with zero weights)
            cip = -(-ci // 4) * 4
            wt = conv.cached(version, "grad-input-4", w, lambda: (_pad4(wmat, pair_c, pair_t, cip),))[0]
            nchunk = _chunk(total, nph * (cip // 4))
            _grad_input_direct(gpad.reshape(-1), pair_start, pair_off, wt, ci, nchunk, total, gsrc)
        else:  # 1 or 2 channels: one channel per job, no padded work
            wt = conv.cached(version, "grad-input-1", w,
                             lambda: (np.ascontiguousarray(wmat[pair_c, :, pair_t].T),))[0]
            nchunk = _chunk(total, nph * ci)
            _grad_input_single(gpad.reshape(-1), pair_start, pair_off, wt, nchunk, total, gsrc)
    gx = np.empty_like(x)
    _phase_unsplit(gsrc, sh, sw, ph, pw, plan.hq, plan.wq, length, gx)
    return gx, gw, gb


def _tune(plan, co, x, w, gy, stride, padding, dilation, input_grad) -> None:
    """At a shape's first training step, time its candidate algorithms (tuning.py) on
    this step's data, each as a step runs it: the forward pass (remembering the
    rearranged input) and this backward pass, the weights packed once for both."""
    from . import conv
    key = tuning.key(plan, co, x.shape[0])
    if tuning.decision(key) is not None:  # every later step of the shape
        return
    candidates = conv.candidates(plan, co, x.shape[0])
    if not tuning.wanted(key, candidates):
        return

    def step():
        version = object()  # packed once by the forward, reused by the backward, as in a step
        with private():
            conv.conv2d_batch(x, w, None, stride, padding, dilation, version=version)
            conv2d_backward_batch(x, w, gy, stride, padding, dilation, True, input_grad, version)
    tuning.tune(key, candidates, step, stop=contended)


def _strided_winograd_backward(x, w, gy, padding, param_grads, input_grad, version):
    """The gradients of a stride-2 3x3 layer in the Winograd domain (winograd_s2.py),
    the bias gradient as the other paths sum it."""
    from . import conv
    gx, gw = winograd_s2.backward(x, conv.strided_transform(w, version), gy, padding, param_grads, input_grad)
    return gx, gw, (_bias_grad(gy) if param_grads else None)


def _atrous_backward(x, w, gy, padding, dilation, param_grads, input_grad, version, algorithm, algo):
    """The gradients of a dilated layer that runs on its phase sub-images
    (atrous.py) on `algo`: those of the undilated layer on the sub-images, on
    the same algorithm as the forward pass's (pinned, not chosen or measured
    again for the sub-images' shape), the input gradient's phases put back."""
    from . import atrous, conv
    nb, ci, h, wd = x.shape
    if param_grads:  # the forward's sub-images, inside reuse_sources()
        xs = atrous.input_sub_images(x, dilation)
    else:  # only its shape is read
        xs = np.empty((dilation[0] * dilation[1] * nb, ci) + atrous.sub_size(h, wd, dilation), np.float32)
    gys = atrous.to_batch(gy, dilation, atrous.sub_output_size(h, wd, padding, dilation))
    sub_padding = atrous.sub_padding(padding, dilation)
    sub_plan = conv._plan(ci, xs.shape[2], xs.shape[3], 3, 3, (1, 1), sub_padding, (1, 1))
    with tuning.pinned(tuning.key(sub_plan, w.shape[0], xs.shape[0]), algo):
        gxs, gw, gb = conv2d_backward_batch(xs, w, gys, (1, 1), sub_padding, (1, 1), param_grads, input_grad,
                                            version, algorithm)
    return (None if gxs is None else atrous.from_batch(gxs, dilation, nb, h, wd)), gw, gb


def _numpy_conv_backward(x, w, gy, stride, padding, dilation, param_grads, input_grad):
    """conv2d_backward_batch on the numpy path, sample by sample."""
    gx = np.empty_like(x) if input_grad else None
    gw = gb = None
    for i in range(x.shape[0]):
        gxi, gwi, gbi = numpy_path.conv2d_backward(x[i], w, gy[i], stride, padding, dilation, param_grads)
        if input_grad:
            gx[i] = gxi
        if param_grads:
            gw, gb = (gwi, gbi) if gw is None else (gw + gwi, gb + gbi)
    return gx, gw, gb


def _pad4(wmat, pair_c, pair_t, cip):
    wt = np.zeros((pair_c.shape[0], cip), np.float32)
    wt[:, :wmat.shape[1]] = wmat[pair_c, :, pair_t]
    return wt


def _grad_weight_pointwise(x, gy):
    """gw (Co, Ci) of a 1x1 convolution without padding, x its columns (pointwise_input):
    gY (Co, N*HW) times X^T (N*HW, Ci), one BLAS product (a batch is laid out
    channel-major first)."""
    nb, ci = x.shape[:2]
    co = gy.shape[1]
    if nb == 1:
        return gy.reshape(co, -1) @ x.reshape(ci, -1).T
    g2 = np.ascontiguousarray(gy.reshape(nb, co, -1).transpose(1, 0, 2)).reshape(co, -1)
    x2 = np.ascontiguousarray(x.reshape(nb, ci, -1).transpose(1, 0, 2)).reshape(ci, -1)
    return g2 @ x2.T


def _grad_input_gemm(gyc, plan, wt, budget, gsrc):
    """gsrc (the phase-split input gradient, zeros) += the transpose of the forward's
    im2col product: per block of real positions (conv.column_blocks), W^T gY
    (block rows x positions, BLAS; gyc is gy as (Co, N*Ho*Wo)), each row added
    onto its tap's runs (`_col2im`)."""
    from .conv import _block_size, column_blocks, real_runs
    k, ntap = plan.k, plan.ntap
    n_real = gyc.shape[1]
    nc, kc = _block_size(k, ntap, n_real, budget)
    buf = np.empty(kc * nc, np.float32)
    rows, taps = plan.rows[:k], plan.taps[:k]
    for r0, nc, k0, k1 in column_blocks(k, ntap, n_real, budget):
        cols = buf[:(k1 - k0) * nc].reshape(k1 - k0, nc)
        if k0 == 0:  # the blocks of rows of these positions follow
            runs = real_runs(r0, nc, plan)
        np.matmul(wt[k0:k1], gyc[:, r0:r0 + nc], out=cols)
        _col2im(cols, rows[k0:k1], taps[k0:k1], runs, ntap, gsrc)


@njit(cache=True, parallel=True)
def _col2im(cols, rows, taps, runs, ntap, gsrc):
    """gsrc[rows[k], taps[k] + n : ... + m] += cols[k, j:j+m] for each run (j, n, m) of
    conv.real_runs, the transpose of conv._gather: a job per input channel (its
    ntap rows; no two channels share a row of gsrc)."""
    for c in prange(cols.shape[0] // ntap):
        for t in range(ntap):
            k = c * ntap + t
            g = gsrc[rows[k]]
            s = cols[k]
            for q in range(runs.shape[1]):
                j, n, m = runs[0, q], taps[k] + runs[1, q], runs[2, q]
                d = g[n:n + m]
                ss = s[j:j + m]
                for i in range(m):
                    d[i] += ss[i]


def _grad_weight_gemm(gyc, src, plan, nb, budget, gw):
    """gw (Co, K) = sum over real positions of gy (gyc: (Co, N*Ho*Wo)) x im2col
    columns, as numpy matmuls over blocks of the columns (conv.column_blocks)."""
    from .conv import _block_size, _gather, column_blocks, real_runs
    k, ntap = plan.k, plan.ntap
    off = plan.offsets(nb)[:k]
    n_real = gyc.shape[1]
    nc, kc = _block_size(k, ntap, n_real, budget)
    buf = np.empty(kc * nc, np.float32)
    part = None
    for r0, nc, k0, k1 in column_blocks(k, ntap, n_real, budget):
        cols = buf[:(k1 - k0) * nc].reshape(k1 - k0, nc)
        if k0 == 0:  # the blocks of rows of these positions follow
            runs = real_runs(r0, nc, plan)
        _gather(src, off[k0:k1], runs, cols)
        if r0 == 0:  # the first block of positions writes its rows of gw (no zeros first, no sum)
            np.matmul(gyc[:, r0:r0 + nc], cols.T, out=gw[:, k0:k1])
            continue
        if part is None:
            part = np.empty_like(gw)
        p = part[:, :k1 - k0]
        np.matmul(gyc[:, r0:r0 + nc], cols.T, out=p)
        gw[:, k0:k1] += p


def _channel_major(gy) -> np.ndarray:
    """gy (N, Co, Ho, Wo) as (Co, N*Ho*Wo): the GEMM gradients' matrix of the output
    gradient (a view for one sample, else one transposed copy)."""
    nb, co = gy.shape[:2]
    if nb == 1:
        return gy.reshape(co, -1)
    return np.ascontiguousarray(gy.reshape(nb, co, -1).transpose(1, 0, 2)).reshape(co, -1)


# ---------------------------------------------------------------------------
# Pooling

@njit(cache=True, parallel=True)
def _maxpool_bwd(x, gy, kh, kw, sh, sw, ph, pw, gx):
    """Per channel and output row: scan the window taps in row-major order,
    each over all output columns at once, keeping the best value and where it
    is (starting at each window's first real pixel); then route gy to them.
    PyTorch: start at the first real pixel, take a strictly greater value or
    a NaN (padding is -inf and never wins).

    Each input row is first split by stride phase (`_row_phases`), so every
    tap reads a contiguous run, and the scan keeps, per output column j, the
    int32 flat index minus j*sw of its tap (`_scan_tap`): branch-free selects
    of one width that vectorize (strided reads and an int64 index per column
    compiled to a scalar loop with branches, 5x the time)."""
    c_n, h, w = x.shape
    _, ho, wo = gy.shape
    wq = (w + sw - 1) // sw
    for c in prange(c_n):
        best = np.empty(wo, np.float32)
        base = np.empty(wo, np.int32)  # flat index of column j's best = base[j] + j*sw
        split = np.empty((sw, wq), np.float32)
        gc = gx[c].reshape(-1)
        for oy in range(ho):
            y0 = oy * sh - ph
            ya, yb = max(y0, 0), min(y0 + kh, h)
            for j in range(wo):  # the first real pixel of each window
                best[j] = -np.inf
                base[j] = ya * w + max(j * sw - pw, 0) - j * sw
            for iy in range(ya, yb):
                xr = x[c, iy]
                if sw > 1:
                    _row_phases(xr, sw, split)
                for kx in range(kw):
                    # output columns whose tap kx is inside the row
                    j0 = max(0, (pw - kx + sw - 1) // sw)
                    j1 = min(wo, (w + pw - kx + sw - 1) // sw)
                    if j1 <= j0:
                        continue
                    i0 = j0 * sw + kx - pw  # the input column of output column j0
                    run = xr[i0:] if sw == 1 else split[i0 % sw, i0 // sw:]
                    _scan_tap(run, best[j0:j1], base[j0:j1], np.int32(iy * w + kx - pw))
            g = gy[c, oy]
            for j in range(wo):
                gc[base[j] + j * sw] += g[j]


@njit(cache=True)
def _row_phases(xr, sw, split):
    """split[r, m] = xr[m*sw + r]: a row split by stride phase (2: a vectorized deinterleave)."""
    w = xr.shape[0]
    if sw == 2:
        s0 = split[0]
        s1 = split[1]
        for m in range(w // 2):
            s0[m] = xr[2 * m]
            s1[m] = xr[2 * m + 1]
        if w % 2:
            s0[w // 2] = xr[w - 1]
        return
    for r in range(sw):
        s = split[r]
        for m in range((w - r + sw - 1) // sw):
            s[m] = xr[m * sw + r]


@njit(cache=True)
def _scan_tap(xs, best, base, tap):
    """One tap over a run of output columns: where xs[j] is strictly greater than
    best[j], or a NaN, it becomes the best, at base tap (the same for every column)."""
    for j in range(best.shape[0]):
        v = xs[j]
        b = best[j]
        take = (v > b) | (v != v)
        best[j] = v if take else b
        base[j] = tap if take else base[j]


@njit(cache=True, parallel=True)
def _maxpool_tiles_bwd(x, gy, kh, kw, gx):
    """Non-overlapping windows (kernel == stride, padding 0), a job per plane:
    each window's gy goes to its first maximum in row-major order (the last NaN
    wins, as in _maxpool_bwd and PyTorch); every other pixel, and the rows and
    columns no window covers, get 0. Writes all of gx, so gx need not be zeroed.
    2x2 windows (the usual pool) and a 1D signal's windows of 4 and 2 take a
    vectorized row; a row with a NaN, and other window sizes, the plain scan."""
    p_n, h, w = x.shape
    _, ho, wo = gy.shape
    for p in prange(p_n):
        gx[p, ho * kh:, :] = 0.0  # rows below the last window
        gx[p, :ho * kh, wo * kw:] = 0.0  # columns right of the last window
        for oy in range(ho):
            done = False
            if kh == 2 and kw == 2:
                done = _maxpool_2x2_row(x[p], gy[p], oy, gx[p])
            elif kh == 1 and kw == 4:
                done = _first_max_1x4(x[p, oy], gy[p, oy], gx[p, oy])
            elif kh == 1 and kw == 2:
                done = _first_max_1x2(x[p, oy], gy[p, oy], gx[p, oy])
            if not done:
                _maxpool_tile_row(x[p], gy[p], oy, kh, kw, gx[p])


@njit(cache=True)
def _maxpool_tile_row(x, gy, oy, kh, kw, gx):
    """One row of windows of one plane, scanned window by window."""
    for ox in range(gy.shape[1]):
        y0, x0 = oy * kh, ox * kw
        best, by, bx = x[y0, x0], y0, x0
        for iy in range(y0, y0 + kh):
            for ix in range(x0, x0 + kw):
                v = x[iy, ix]
                if v > best or v != v:  # PyTorch: a NaN always takes
                    best, by, bx = v, iy, ix
                gx[iy, ix] = 0.0
        gx[by, bx] = gy[oy, ox]


@njit(cache=True)
def _maxpool_2x2_row(x, gy, oy, gx) -> bool:
    """One row of 2x2 windows without branches (the compiler vectorizes it): the
    maximum, then a bit mask per tap that keeps gy at the first tap equal to it.
    False (the row to be redone by the scan) when the row holds a NaN."""
    x0, x1 = x[2 * oy], x[2 * oy + 1]
    g = gy[oy].view(np.int32)  # masks select gy's bits: exact for any value
    g0, g1 = gx[2 * oy].view(np.int32), gx[2 * oy + 1].view(np.int32)
    nan = np.int32(0)
    for j in range(g.shape[0]):
        a0, a1, a2, a3 = x0[2 * j], x0[2 * j + 1], x1[2 * j], x1[2 * j + 1]
        nan |= np.int32(a0 != a0) | np.int32(a1 != a1) | np.int32(a2 != a2) | np.int32(a3 != a3)
        b01 = a1 if a1 > a0 else a0
        b23 = a3 if a3 > a2 else a2
        m = b23 if b23 > b01 else b01
        i0 = np.int32(a0 == m)
        i1 = np.int32(a1 == m) & (1 - i0)
        i2 = np.int32(a2 == m) & (1 - i0 - i1)
        i3 = 1 - i0 - i1 - i2
        gj = g[j]
        g0[2 * j] = gj & -i0
        g0[2 * j + 1] = gj & -i1
        g1[2 * j] = gj & -i2
        g1[2 * j + 1] = gj & -i3
    return nan == 0


@njit(cache=True)
def _first_of_4(a0, a1, a2, a3, g):
    """(g or 0 at each of 4 taps): g at the first tap equal to their maximum (no
    NaN among them), by float32 selects, which keep g's bits exactly."""
    zero = np.float32(0.0)
    b01 = a1 if a1 > a0 else a0
    b23 = a3 if a3 > a2 else a2
    m = b23 if b23 > b01 else b01
    n0 = a0 != m  # not taken by tap 0
    n1 = n0 & (a1 != m)
    n2 = n1 & (a2 != m)
    return (zero if n0 else g, g if n0 & (a1 == m) else zero, g if n1 & (a2 == m) else zero,
            g if n2 else zero)


@njit(cache=True)
def _first_max_1x4(x0, gy, g0) -> bool:
    """One row of a 1D signal's windows of 4 (one interleaved group of 4) without
    branches, so the compiler vectorizes it. False (the row to be redone by the
    scan) when the row holds a NaN."""
    nan = False
    for j in range(gy.shape[0]):
        a0, a1, a2, a3 = x0[4 * j], x0[4 * j + 1], x0[4 * j + 2], x0[4 * j + 3]
        nan |= (a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3)
        g0[4 * j], g0[4 * j + 1], g0[4 * j + 2], g0[4 * j + 3] = _first_of_4(a0, a1, a2, a3, gy[j])
    return not nan


@njit(cache=True)
def _first_max_1x2(x0, gy, g0) -> bool:
    """_first_max_1x4 for windows of 2."""
    zero = np.float32(0.0)
    nan = False
    for j in range(gy.shape[0]):
        a0, a1 = x0[2 * j], x0[2 * j + 1]
        nan |= (a0 != a0) | (a1 != a1)
        g = gy[j]
        second = a1 > a0
        g0[2 * j] = zero if second else g
        g0[2 * j + 1] = g if second else zero
    return not nan


def _pool_args(kernel, stride, padding, name):
    (kh, kw), (sh, sw), (ph, pw) = (_pair(kernel, "kernel"), _pair(stride, "stride"),
                                    _pair(padding, "padding"))
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{name}: kernel and stride must be >= 1, padding >= 0")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: padding must be at most half the kernel")
    return kh, kw, sh, sw, ph, pw


@one_at_a_time
def maxpool2d_backward(x, gy, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """x (C, H, W), gy (C, Ho, Wo) -> gx (C, H, W): gy routed to each argmax."""
    x = _f32(x, "maxpool2d_backward: x", 3)
    gy = _f32(gy, "maxpool2d_backward: gy", 3)
    kh, kw, sh, sw, ph, pw = _pool_args(kernel, stride, padding, "maxpool2d_backward")
    c, h, w = x.shape
    want = (c, window_output(h, kh, sh, ph, 1), window_output(w, kw, sw, pw, 1))
    if gy.shape != want or min(want) < 1:
        raise ValueError(f"maxpool2d_backward: gy is {gy.shape}, the output is {want}")
    tiled = tiles((kh, kw), (sh, sw), (ph, pw))
    if not ready(_maxpool_tiles_bwd if tiled else _maxpool_bwd):  # first start: numpy meanwhile
        return numpy_path.maxpool2d_backward(x, gy, (kh, kw), (sh, sw), (ph, pw))
    if tiled:
        gx = np.empty_like(x)
        _maxpool_tiles_bwd(x, gy, kh, kw, gx)
    else:
        gx = np.zeros_like(x)
        _maxpool_bwd(x, gy, kh, kw, sh, sw, ph, pw, gx)
    return gx


@njit(cache=True, parallel=True)
def _avgpool_bwd(gy, kh, kw, sh, sw, ph, pw, gx):
    c_n, h, w = gx.shape
    _, ho, wo = gy.shape
    inv = np.float32(1.0 / (kh * kw))
    for c in prange(c_n):
        for oy in range(ho):
            y0 = oy * sh - ph
            ya, yb = max(y0, 0), min(y0 + kh, h)
            for ox in range(wo):
                x0 = ox * sw - pw
                xa, xb = max(x0, 0), min(x0 + kw, w)
                g = gy[c, oy, ox] * inv
                for iy in range(ya, yb):
                    for ix in range(xa, xb):
                        gx[c, iy, ix] += g


@one_at_a_time
def avgpool2d_backward(gy, x_shape, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """gy (C, Ho, Wo) -> gx of shape x_shape (C, H, W); count_include_pad=True."""
    gy = _f32(gy, "avgpool2d_backward: gy", 3)
    kh, kw, sh, sw, ph, pw = _pool_args(kernel, stride, padding, "avgpool2d_backward")
    if len(x_shape) != 3:
        raise ValueError(f"avgpool2d_backward: x_shape must be (C, H, W), not {x_shape!r}")
    c, h, w = (int(v) for v in x_shape)
    want = (c, window_output(h, kh, sh, ph, 1), window_output(w, kw, sw, pw, 1))
    if gy.shape != want or min(want) < 1:
        raise ValueError(f"avgpool2d_backward: gy is {gy.shape}, the output is {want}")
    if not ready(_avgpool_bwd):  # still compiling (first start): numpy meanwhile
        return numpy_path.avgpool2d_backward(gy, (c, h, w), (kh, kw), (sh, sw), (ph, pw))
    gx = np.zeros((c, h, w), np.float32)
    _avgpool_bwd(gy, kh, kw, sh, sw, ph, pw, gx)
    return gx


# ---------------------------------------------------------------------------
# Normalization

@njit(cache=True, parallel=True, fastmath={"reassoc"})
def _batchnorm_bwd(x, gy, weight, mean, var, eps, gx, gw, gb):
    """x, gy, gx (N, C, P); one job per channel. Reassociating the float64 sums
    lets them vectorize (strictly in order they were a scalar chain); each stays
    in one job, so the result does not depend on the thread count."""
    nb, c_n, n = x.shape
    for c in prange(c_n):
        rstd = 1.0 / np.sqrt(np.float64(var[c]) + eps)
        scale = np.float32(weight[c] * rstd)
        m = mean[c]
        sw = 0.0
        sb = 0.0
        for b in range(nb):
            xr = x[b, c]
            gr = gy[b, c]
            dr = gx[b, c]
            for i in range(n):
                g = gr[i]
                dr[i] = g * scale
                sb += g
                sw += g * (np.float64(xr[i]) - m)
        gw[c] = sw * rstd
        gb[c] = sb


def batchnorm_backward(x2, gy2, weight, mean, var, eps):
    """Inference batch norm on a (C, N) view: running mean/var are constants."""
    x2 = _f32(x2, "batchnorm_backward: x", 2)
    gy2 = _f32(gy2, "batchnorm_backward: gy", 2)
    gx, gw, gb = batchnorm_backward_batch(x2[None], gy2[None], weight, mean, var, eps)
    return gx[0], gw, gb


@one_at_a_time
def batchnorm_backward_batch(x3, gy3, weight, mean, var, eps):
    """batchnorm_backward of a batch of (C, P) views x3 (N, C, P); gw, gb summed over it."""
    x3 = _f32(x3, "batchnorm_backward: x", 3)
    gy3 = _f32(gy3, "batchnorm_backward: gy", 3)
    c = x3.shape[1]
    if gy3.shape != x3.shape:
        raise ValueError(f"batchnorm_backward: gy {gy3.shape[1:]} and x {x3.shape[1:]} differ")
    vecs = [_f32(v, "batchnorm_backward: " + nm, 1) for v, nm in
            ((weight, "weight"), (mean, "running_mean"), (var, "running_var"))]
    if any(v.shape != (c,) for v in vecs):
        raise ValueError(f"batchnorm_backward: per-channel parameters must have shape ({c},)")
    if not ready(_batchnorm_bwd):  # still compiling (first start): numpy meanwhile
        return _numpy_norm_backward(numpy_path.batchnorm_backward, x3, gy3, *vecs, eps)
    gx = np.empty_like(x3)
    gw = np.empty(c, np.float32)
    gb = np.empty(c, np.float32)
    _batchnorm_bwd(x3, gy3, vecs[0], vecs[1], vecs[2], float(eps), gx, gw, gb)
    return gx, gw, gb


def _numpy_norm_backward(fn, x3, gy3, *args):
    """A (C, N) numpy_path norm backward over a batch (N, C, P), gw and gb summed."""
    gx = np.empty_like(x3)
    gw = gb = 0.0
    for i in range(x3.shape[0]):
        gx[i], gwi, gbi = fn(x3[i], gy3[i], *args)
        gw, gb = gw + gwi, gb + gbi
    return gx, np.asarray(gw, np.float32), np.asarray(gb, np.float32)


_LN_CHUNK = 256


@njit(cache=True, parallel=True)
def _layernorm_bwd(x3, gy3, weight, eps, gx3, pw, pb):
    """Parallel over (sample, chunk of positions): each job normalises its
    positions over C, writes their input gradient and its share of the weight
    and bias gradients (pw, pb (jobs, C), summed by the wrapper)."""
    nb, c_n, n_all = x3.shape
    nch = (n_all + _LN_CHUNK - 1) // _LN_CHUNK
    for job in prange(nb * nch):
        bi = job // nch
        n0 = (job - bi * nch) * _LN_CHUNK
        n = min(n_all, n0 + _LN_CHUNK) - n0
        # rows of the full arrays (x3[bi, c, n0:n0 + n]): a block x3[bi, :, n0:n0 + n]
        # taken first is a strided 2D view, and its loops compiled to scalar code
        mu = np.zeros(n, np.float64)
        var = np.zeros(n, np.float64)
        for c in range(c_n):
            xr = x3[bi, c, n0:n0 + n]
            for i in range(n):
                mu[i] += xr[i]
        for i in range(n):
            mu[i] /= c_n
        for c in range(c_n):
            xr = x3[bi, c, n0:n0 + n]
            for i in range(n):
                d = xr[i] - mu[i]
                var[i] += d * d
        rstd = np.empty(n, np.float64)
        for i in range(n):
            rstd[i] = 1.0 / np.sqrt(var[i] / c_n + eps)
        # g = gy * weight; gx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
        mg = np.zeros(n, np.float64)
        mgx = np.zeros(n, np.float64)
        for c in range(c_n):
            xr = x3[bi, c, n0:n0 + n]
            gr = gy3[bi, c, n0:n0 + n]
            wc = np.float64(weight[c])
            sw = 0.0
            sb = 0.0
            for i in range(n):
                xhat = (xr[i] - mu[i]) * rstd[i]
                g = gr[i] * wc
                mg[i] += g
                mgx[i] += g * xhat
                sw += gr[i] * xhat
                sb += gr[i]
            pw[job, c] = sw
            pb[job, c] = sb
        for c in range(c_n):
            xr = x3[bi, c, n0:n0 + n]
            gr = gy3[bi, c, n0:n0 + n]
            dr = gx3[bi, c, n0:n0 + n]
            wc = np.float64(weight[c])
            for i in range(n):
                xhat = (xr[i] - mu[i]) * rstd[i]
                dr[i] = rstd[i] * (gr[i] * wc - mg[i] / c_n - xhat * mgx[i] / c_n)


def layernorm_backward(x2, gy2, weight, eps):
    """Layer norm over C at each position of a (C, N) view (biased variance)."""
    x2 = _f32(x2, "layernorm_backward: x", 2)
    gy2 = _f32(gy2, "layernorm_backward: gy", 2)
    gx, gw, gb = layernorm_backward_batch(x2[None], gy2[None], weight, eps)
    return gx[0], gw, gb


@one_at_a_time
def layernorm_backward_batch(x3, gy3, weight, eps):
    """layernorm_backward of a batch of (C, P) views x3 (N, C, P); gw, gb summed over it."""
    x3 = _f32(x3, "layernorm_backward: x", 3)
    gy3 = _f32(gy3, "layernorm_backward: gy", 3)
    c = x3.shape[1]
    if gy3.shape != x3.shape:
        raise ValueError(f"layernorm_backward: gy {gy3.shape[1:]} and x {x3.shape[1:]} differ")
    weight = _f32(weight, "layernorm_backward: weight", 1)
    if weight.shape != (c,):
        raise ValueError(f"layernorm_backward: weight must have shape ({c},)")
    kernel = sized(_layernorm_bwd, x3.size, 1 << 16)
    if not ready(kernel):  # still compiling (first start): numpy meanwhile
        return _numpy_norm_backward(numpy_path.layernorm_backward, x3, gy3, weight, eps)
    gx = np.empty_like(x3)
    jobs = x3.shape[0] * -(-x3.shape[2] // _LN_CHUNK)
    pw = np.empty((jobs, c), np.float64)
    pb = np.empty((jobs, c), np.float64)
    kernel(x3, gy3, weight, float(eps), gx, pw, pb)
    return gx, pw.sum(axis=0).astype(np.float32), pb.sum(axis=0).astype(np.float32)


# ---------------------------------------------------------------------------
# Activations and linear

@njit(cache=True, fastmath=_FM)
def _leaky_bwd(x, gy, slope, gx):
    if slope == 0.0:
        for i in range(x.shape[0]):
            gx[i] = gy[i] if x[i] > 0 else np.float32(0.0)
    else:
        s = np.float32(slope)
        for i in range(x.shape[0]):
            gx[i] = gy[i] if x[i] > 0 else gy[i] * s


def leaky_relu_backward(x, gy, slope) -> np.ndarray:
    """x, gy of any (same) shape -> gx; slope 0 is ReLU."""
    x = _f32(x, "leaky_relu_backward: x")
    gy = _f32(gy, "leaky_relu_backward: gy")
    if gy.shape != x.shape:
        raise ValueError(f"leaky_relu_backward: gy {gy.shape} and x {x.shape} differ")
    if not ready(_leaky_bwd):  # still compiling (first start): numpy meanwhile
        return numpy_path.leaky_relu_backward(x, gy, slope)
    gx = np.empty_like(x)
    _leaky_bwd(x.reshape(-1), gy.reshape(-1), float(slope), gx.reshape(-1))
    return gx


@njit(cache=True)
def _linear_bwd(x, w, gy, gx, gw, param_grads):
    o_n, f_n = w.shape
    for f in range(f_n):
        gx[f] = 0.0
    for o in range(o_n):
        g = gy[o]
        for f in range(f_n):
            gx[f] += g * w[o, f]
        if param_grads:
            for f in range(f_n):
                gw[o, f] = g * x[f]


def linear_backward(x, w, gy, param_grads=True):
    """x (F,), w (O, F), gy (O,) -> gx (F,), gw (O, F), gb (O,); with
    param_grads=False gw and gb are None."""
    x = _f32(x, "linear_backward: x", 1)
    w = _f32(w, "linear_backward: weight", 2)
    gy = _f32(gy, "linear_backward: gy", 1)
    if w.shape != (gy.shape[0], x.shape[0]):
        raise ValueError(f"linear_backward: x {x.shape}, weight {w.shape} and gy {gy.shape} do not match")
    if not ready(_linear_bwd):  # still compiling (first start): numpy meanwhile
        return numpy_path.linear_backward(x, w, gy, param_grads)
    gx = np.empty_like(x)
    gw = np.empty_like(w) if param_grads else np.empty((0, 0), np.float32)
    _linear_bwd(x, w, gy, gx, gw, bool(param_grads))
    if not param_grads:
        return gx, None, None
    return gx, gw, gy.copy()


def linear_backward_batch(x, w, gy, param_grads=True):
    """x (N, F), w (O, F), gy (N, O) -> gx (N, F), gw (O, F), gb (O,) summed over
    the batch (matrix products); with param_grads=False gw and gb are None."""
    x = _f32(x, "linear_backward: x", 2)
    w = _f32(w, "linear_backward: weight", 2)
    gy = _f32(gy, "linear_backward: gy", 2)
    if w.shape != (gy.shape[1], x.shape[1]) or gy.shape[0] != x.shape[0]:
        raise ValueError(f"linear_backward: x {x.shape}, weight {w.shape} and gy {gy.shape} do not match")
    gx = gy @ w
    if not param_grads:
        return gx, None, None
    return gx, gy.T @ x, gy.sum(axis=0, dtype=np.float64).astype(np.float32)


# the kernels of conv2d_backward_batch (its forward-convolution path checks its own)
_CONV_KERNELS = (_full_grid, _grad_weight, _grad_weight_ranges, _grad_input_direct, _grad_input_single,
                 _phase_unsplit, _col2im, _channel_sums)
