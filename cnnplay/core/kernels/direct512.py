"""The direct convolution with its accumulators in 512-bit registers (AVX-512 CPUs):
the forward pass (`conv`) and the weight gradient's sweep over position ranges
(`_weight_grad`).

The same sum as conv._direct, on the same flat source and tap offsets:

    y[co, n] = b[co] + sum_k wt[k, co] * src_flat[off[k] + n]

but blocked for registers instead of L1: a block is 8 output channels x 48
positions, 24 vectors of 16 float32 (`vectors.F32x16`) that stay in registers
over all K taps. Per tap: 3 source loads (48 consecutive positions of that tap's
run), 8 weights broadcast, 24 fused multiply-adds. conv._direct keeps 4 rows of
accumulators in L1 and runs 3 taps per pass over them, so it loads and stores
each accumulator once per 3 taps; here they are written once per block. The
sums run in the same order (from the bias, tap by tap, fused), so both kernels
give the same bits.

LLVM does not keep such a block in registers when it is written as arrays or
scalars (conv._direct's doc); written with the explicit vectors it does. On an
Intel Xeon with AVX-512 and AMX (2 vCPUs), one process, alternating with
conv._direct: 0.65-0.71x its time on 3x3 layers of 16-64 channels at 8-128 px
(100-133 GMAC/s against 68-89), 0.76-0.92x on smaller ones and 7x7; with few
taps the block's store dominates (`applies`). Where the CPU has no AVX-512 every vector
operation would be split in two and the 24 accumulators would not fit in the
16 registers: conv._direct runs there (`applies`).

Jobs: a chunk of positions (a multiple of the block, BLOCK * 12 by default)
times a block of 8 channels, consecutive jobs sharing a chunk (its source in
L2). The last block of the grid is moved back to end at the last position (it
recomputes a few positions and stores only its own), so no load reads past the
source.

The weight gradient (grad._grad_weight_ranges' sums, a job per range of
positions): 8 output channels x 3 taps in 24 registers of 16 partial sums, fed
per 16 positions by 3 source loads and 8 gradient loads; at the end of a chunk
(1024 positions) each register's lanes are added in halves (`vectors.sum16`)
and the sums go to the job's float64 part, as the L1 kernel's do; a chunk's
last positions short of a vector take that kernel's scalar block.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv import _store, even_chunk
from .grad import _add_sums, _block_sums
from .vectors import avx512, fma16, fmav16, load16, splat16, store16, sum16, wide_vectors

CHANNELS = 8  # output channels per block
BLOCK = 48  # positions per block: 3 vectors of 16
CHUNK = 12 * BLOCK  # positions per job, about (384 to 1248 ran within 10 % of it on 8-128 px maps)
MIN_TAPS = 36  # below, the block's store outweighs its sums


def applies(co: int, n_total: int, taps: int) -> bool:
    """Whether the direct convolution of co output channels over n_total
    full-grid positions, taps = Ci x kh x kw, runs here: on AVX-512, from 8
    channels (fewer would compute padded channels), one block of positions and
    MIN_TAPS taps (with 5-27 taps 1.0-1.26x conv._direct's time, 0.91-0.98x
    from 36 to 80, 0.76-0.92x beyond; one process, alternating)."""
    return avx512() and co >= CHANNELS and n_total >= BLOCK and taps >= MIN_TAPS


def weight_grad_applies(co: int) -> bool:
    """Whether the weight gradient's position-range sweep of co output channels
    (grad.weight_grad_ranges) runs here (_weight_grad), on AVX-512 from 8 channels:
    0.77-0.95x grad._grad_weight_ranges' time on 3-32 channels at 14-128 px (one
    process, alternating, Intel Xeon). Not on the per-block jobs of fewer
    positions (grad._grad_weight): there the sums of 24 registers per chunk cost
    more than they save (1.8-4x on 16-64 channels, 7-14 px, batch 4-32)."""
    return avx512() and co >= CHANNELS


def chunk(n_total: int, nblk: int) -> int:
    """Positions per job: about CHUNK, in whole blocks (conv.even_chunk)."""
    return even_chunk(n_total, nblk, CHUNK, BLOCK, BLOCK)


def conv(src, off, wt, bias, ho, wq, wo, seg, n_total, y) -> None:
    """y (N, Co, ho, wo) from the flat source; off (K,) the taps' offsets, wt (K,
    Co_pad) with Co_pad a multiple of CHANNELS, bias (Co_pad,) (conv._packed with
    channels=CHANNELS); sample b's full grid starts at position b*seg."""
    nblk = wt.shape[1] // CHANNELS
    _conv(src, off, wt, bias, chunk(n_total, nblk), ho, wq, wo, seg, n_total, y)


@njit(cache=True, parallel=True)
def _conv(src, off, wt, bias, nchunk, ho, wq, wo, seg, n_total, y):
    k_total = off.shape[0]
    co = y.shape[1]
    nblk = wt.shape[1] // 8
    nch = (n_total + nchunk - 1) // nchunk
    for job in prange(nblk * nch):
        wide_vectors()
        ch = job // nblk
        c0 = (job - ch * nblk) * 8
        first = ch * nchunk
        end = min(first + nchunk, n_total)
        buf = np.empty(8 * 48, np.float32)  # the block, channel by channel, for the store
        for p in range(first, end, 48):
            p0 = min(p, n_total - 48)  # the grid's last block ends at its last position
            a00 = splat16(bias[c0])
            a01 = a00
            a02 = a00
            a10 = splat16(bias[c0 + 1])
            a11 = a10
            a12 = a10
            a20 = splat16(bias[c0 + 2])
            a21 = a20
            a22 = a20
            a30 = splat16(bias[c0 + 3])
            a31 = a30
            a32 = a30
            a40 = splat16(bias[c0 + 4])
            a41 = a40
            a42 = a40
            a50 = splat16(bias[c0 + 5])
            a51 = a50
            a52 = a50
            a60 = splat16(bias[c0 + 6])
            a61 = a60
            a62 = a60
            a70 = splat16(bias[c0 + 7])
            a71 = a70
            a72 = a70
            for k in range(k_total):
                o = off[k] + p0
                s0 = load16(src, o)
                s1 = load16(src, o + 16)
                s2 = load16(src, o + 32)
                w = wt[k]
                v = w[c0]
                a00 = fma16(a00, s0, v)
                a01 = fma16(a01, s1, v)
                a02 = fma16(a02, s2, v)
                v = w[c0 + 1]
                a10 = fma16(a10, s0, v)
                a11 = fma16(a11, s1, v)
                a12 = fma16(a12, s2, v)
                v = w[c0 + 2]
                a20 = fma16(a20, s0, v)
                a21 = fma16(a21, s1, v)
                a22 = fma16(a22, s2, v)
                v = w[c0 + 3]
                a30 = fma16(a30, s0, v)
                a31 = fma16(a31, s1, v)
                a32 = fma16(a32, s2, v)
                v = w[c0 + 4]
                a40 = fma16(a40, s0, v)
                a41 = fma16(a41, s1, v)
                a42 = fma16(a42, s2, v)
                v = w[c0 + 5]
                a50 = fma16(a50, s0, v)
                a51 = fma16(a51, s1, v)
                a52 = fma16(a52, s2, v)
                v = w[c0 + 6]
                a60 = fma16(a60, s0, v)
                a61 = fma16(a61, s1, v)
                a62 = fma16(a62, s2, v)
                v = w[c0 + 7]
                a70 = fma16(a70, s0, v)
                a71 = fma16(a71, s1, v)
                a72 = fma16(a72, s2, v)
            store16(buf, 0, a00)
            store16(buf, 16, a01)
            store16(buf, 32, a02)
            store16(buf, 48, a10)
            store16(buf, 64, a11)
            store16(buf, 80, a12)
            store16(buf, 96, a20)
            store16(buf, 112, a21)
            store16(buf, 128, a22)
            store16(buf, 144, a30)
            store16(buf, 160, a31)
            store16(buf, 176, a32)
            store16(buf, 192, a40)
            store16(buf, 208, a41)
            store16(buf, 224, a42)
            store16(buf, 240, a50)
            store16(buf, 256, a51)
            store16(buf, 272, a52)
            store16(buf, 288, a60)
            store16(buf, 304, a61)
            store16(buf, 320, a62)
            store16(buf, 336, a70)
            store16(buf, 352, a71)
            store16(buf, 368, a72)
            skip = p - p0  # positions a moved block recomputed: the previous block stored them
            _store(buf.reshape(8, 48)[:, skip:], c0, min(8, co - c0), p, min(48 - skip, end - p), ho, wq, wo,
                   seg, y)


@njit(cache=True, parallel=True)
def _weight_grad(gflat, rowlen, g0ff, n, srcflat, length, row_of, off, nchunk, parts):
    """parts[job, c, k] = job's share of sum_{m < n} gflat[c*rowlen + g0ff + m] *
    srcflat[row_of[k]*length + off[k] + m]: grad._grad_weight_ranges' sums with a
    block of 8 channels x 3 taps in 24 registers (float32 within a chunk, float64
    across)."""
    jobs = parts.shape[0]
    co_n = parts.shape[1]
    kk = off.shape[0]
    ntri = (kk + 2) // 3
    nblk = (co_n + 7) // 8
    per = (-(-n // jobs) + 15) // 16 * 16
    for job in prange(jobs):
        wide_vectors()
        lo = job * per
        hi = min(n, lo + per)
        part = parts[job]
        for n0 in range(lo, hi, nchunk):
            nc = min(hi, n0 + nchunk) - n0
            nv = nc // 16 * 16
            for cb in range(nblk):
                c7 = min(cb * 8 + 7, co_n - 1)
                cs = (min(cb * 8, c7), min(cb * 8 + 1, c7), min(cb * 8 + 2, c7), min(cb * 8 + 3, c7),
                      min(cb * 8 + 4, c7), min(cb * 8 + 5, c7), min(cb * 8 + 6, c7), c7)
                q0 = cs[0] * rowlen + g0ff + n0
                q1 = cs[1] * rowlen + g0ff + n0
                q2 = cs[2] * rowlen + g0ff + n0
                q3 = cs[3] * rowlen + g0ff + n0
                q4 = cs[4] * rowlen + g0ff + n0
                q5 = cs[5] * rowlen + g0ff + n0
                q6 = cs[6] * rowlen + g0ff + n0
                q7 = cs[7] * rowlen + g0ff + n0
                for t in range(ntri):
                    k0 = 3 * t
                    ks = (k0, min(k0 + 1, kk - 1), min(k0 + 2, kk - 1))
                    b0 = row_of[ks[0]] * length + off[ks[0]] + n0
                    b1 = row_of[ks[1]] * length + off[ks[1]] + n0
                    b2 = row_of[ks[2]] * length + off[ks[2]] + n0
                    z = splat16(np.float32(0.0))
                    a00 = z
                    a01 = z
                    a02 = z
                    a10 = z
                    a11 = z
                    a12 = z
                    a20 = z
                    a21 = z
                    a22 = z
                    a30 = z
                    a31 = z
                    a32 = z
                    a40 = z
                    a41 = z
                    a42 = z
                    a50 = z
                    a51 = z
                    a52 = z
                    a60 = z
                    a61 = z
                    a62 = z
                    a70 = z
                    a71 = z
                    a72 = z
                    for j in range(0, nv, 16):
                        s0 = load16(srcflat, b0 + j)
                        s1 = load16(srcflat, b1 + j)
                        s2 = load16(srcflat, b2 + j)
                        g = load16(gflat, q0 + j)
                        a00 = fmav16(a00, g, s0)
                        a01 = fmav16(a01, g, s1)
                        a02 = fmav16(a02, g, s2)
                        g = load16(gflat, q1 + j)
                        a10 = fmav16(a10, g, s0)
                        a11 = fmav16(a11, g, s1)
                        a12 = fmav16(a12, g, s2)
                        g = load16(gflat, q2 + j)
                        a20 = fmav16(a20, g, s0)
                        a21 = fmav16(a21, g, s1)
                        a22 = fmav16(a22, g, s2)
                        g = load16(gflat, q3 + j)
                        a30 = fmav16(a30, g, s0)
                        a31 = fmav16(a31, g, s1)
                        a32 = fmav16(a32, g, s2)
                        g = load16(gflat, q4 + j)
                        a40 = fmav16(a40, g, s0)
                        a41 = fmav16(a41, g, s1)
                        a42 = fmav16(a42, g, s2)
                        g = load16(gflat, q5 + j)
                        a50 = fmav16(a50, g, s0)
                        a51 = fmav16(a51, g, s1)
                        a52 = fmav16(a52, g, s2)
                        g = load16(gflat, q6 + j)
                        a60 = fmav16(a60, g, s0)
                        a61 = fmav16(a61, g, s1)
                        a62 = fmav16(a62, g, s2)
                        g = load16(gflat, q7 + j)
                        a70 = fmav16(a70, g, s0)
                        a71 = fmav16(a71, g, s1)
                        a72 = fmav16(a72, g, s2)
                    sums = (sum16(a00), sum16(a01), sum16(a02), sum16(a10), sum16(a11), sum16(a12),
                            sum16(a20), sum16(a21), sum16(a22), sum16(a30), sum16(a31), sum16(a32),
                            sum16(a40), sum16(a41), sum16(a42), sum16(a50), sum16(a51), sum16(a52),
                            sum16(a60), sum16(a61), sum16(a62), sum16(a70), sum16(a71), sum16(a72))
                    _add_sums(part, cs, ks, sums)
                    if nv < nc:  # the last positions, fewer than a vector
                        s0 = srcflat[b0 + nv:b0 + nc]
                        s1 = srcflat[b1 + nv:b1 + nc]
                        s2 = srcflat[b2 + nv:b2 + nc]
                        _tail(part, cs[:4], ks, s0, s1, s2, gflat, rowlen, g0ff + n0, nv, nc)
                        if cs[4] > cs[3]:  # (a last block's repeated channel is added once)
                            _tail(part, cs[4:], ks, s0, s1, s2, gflat, rowlen, g0ff + n0, nv, nc)


@njit(cache=True, inline="always")
def _tail(part, cs, ks, s0, s1, s2, gflat, rowlen, start, nv, nc):
    """part += 4 channels x 3 taps' sums over positions nv..nc-1 of a chunk (fewer
    than a vector), the scalar block of grad._grad_weight."""
    g = [gflat[c * rowlen + start + nv:c * rowlen + start + nc] for c in cs]
    _add_sums(part, cs, ks, _block_sums(s0, s1, s2, g[0], g[1], g[2], g[3], nc - nv))
