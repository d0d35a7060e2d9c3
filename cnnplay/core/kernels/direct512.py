"""The direct convolution with its accumulators in 512-bit registers (AVX-512 CPUs).

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
Intel Xeon (Sapphire Rapids, 2 vCPUs), one process, alternating with
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
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv import _store
from .vectors import avx512, fma16, load16, splat16, store16, wide_vectors

CHANNELS = 8  # output channels per block
BLOCK = 48  # positions per block: 3 vectors of 16
CHUNK = 12 * BLOCK  # positions per job, about (0.9-1.0x the time of 1248 or 384 on 8-128 px maps)


MIN_TAPS = 36  # below, the block's store outweighs its sums


def applies(co: int, n_total: int, taps: int) -> bool:
    """Whether the direct convolution of co output channels over n_total
    full-grid positions, taps = Ci x kh x kw, runs here: on AVX-512, from 8
    channels (fewer would compute padded channels), one block of positions and
    MIN_TAPS taps (with 5-27 taps 1.0-1.26x conv._direct's time, 0.91-0.98x
    from 36 to 80, 0.76-0.92x beyond; one process, alternating)."""
    return avx512() and co >= CHANNELS and n_total >= BLOCK and taps >= MIN_TAPS


def chunk(n_total: int, nblk: int) -> int:
    """Positions per job: CHUNK, or less (whole blocks) when there would be fewer
    than 8 jobs for the threads."""
    target = CHUNK
    while target > BLOCK and nblk * -(-n_total // target) < 8:
        target -= BLOCK
    return target


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
