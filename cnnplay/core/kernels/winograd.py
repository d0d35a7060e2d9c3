"""Winograd F(2x2, 3x3): 3x3 convolutions with stride 1 and many channels.

Each 2x2 block of outputs (a tile) comes from a 4x4 block of the zero-padded
input. In the transformed domain the 3x3 kernel becomes 4x4 and the 9
multiply-adds per output and input channel become 16 per 4 outputs (2.25x
fewer), as 16 independent matrix products:

    V[e] = (B^T d B)[e]          per tile and input channel (d: its 4x4 input)
    U[e] = (G g G^T)[e]          per output and input channel (g: the 3x3 kernel)
    M[e] = U[e] @ V[e]           (Co x Ci) @ (Ci x tiles), e = 0..15, BLAS
    y    = A^T M A + bias        per tile and output channel: its 2x2 outputs

(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015.)
The transforms only add and halve, so in float32 the results stay within a
few 1e-7 of the direct sum (the tests hold them to the float64 reference).
The transforms are parallel numba kernels, the 16 products one batched
numpy matmul (BLAS). The tiles are taken a block of tile rows at a time, so
that V and M together stay within BUDGET (8 MB, the cap of the GEMM path's
column buffer) whatever the map size.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BUDGET = 8 << 20  # bytes V and M may take together (at least one tile row)


def kernel_transform(w: np.ndarray) -> np.ndarray:
    """U (16, Co, Ci) float32 from 3x3 weights w (Co, Ci, 3, 3): U[4a+b] = (G w G^T)[a, b],
    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]. Whole (Co, Ci)
    planes at a time: once per parameter version, which in training is every step
    (9 ms for 512 x 512 channels; an einsum took 160)."""
    w = np.asarray(w, dtype=np.float32)
    co, ci = w.shape[:2]
    g = np.ascontiguousarray(w.transpose(2, 3, 0, 1))  # g[i, j]: the (Co, Ci) plane of row i, column j
    t = np.empty((4, 3, co, ci), np.float32)  # G g
    t[0], t[3] = g[0], g[2]
    s = g[0] + g[2]
    t[1] = (s + g[1]) * 0.5
    t[2] = (s - g[1]) * 0.5
    u = np.empty((4, 4, co, ci), np.float32)  # (G g) G^T
    u[:, 0], u[:, 3] = t[:, 0], t[:, 2]
    s = t[:, 0] + t[:, 2]
    u[:, 1] = (s + t[:, 1]) * 0.5
    u[:, 2] = (s - t[:, 1]) * 0.5
    return u.reshape(16, co, ci)


@njit(cache=True, parallel=True)
def _input_transform(xp, r0, r1, tw, v, plane, n):
    """V[e, c, t] = (B^T d B)[e] for tile rows [r0, r1) of the padded maps xp
    (N, Ci, 2*th + 2, 2*tw + 2), into the flat v: V[e, c, t] is v[e*plane + c*n + t],
    tile t = (b*(r1 - r0) + i - r0)*tw + j. One job per sample and input
    channel, a row of tiles at a time (`_input_row`)."""
    nb, ci = xp.shape[0], xp.shape[1]
    rows = r1 - r0
    for job in prange(nb * ci):
        b = job // ci
        c = job - b * ci
        halves = np.empty((8, tw + 1), np.float32)
        for i in range(r0, r1):
            _input_row(xp[b, c, 2 * i], xp[b, c, 2 * i + 1], xp[b, c, 2 * i + 2], xp[b, c, 2 * i + 3],
                       halves, v, plane, c * n + (b * rows + i - r0) * tw, tw)


@njit(cache=True)
def _input_row(x0, x1, x2, x3, h, v, plane, t0, tw):
    """One row of tiles (the 4x4 blocks at columns 2j..2j+3 of rows x0..x3).
    B^T d first, on whole rows: d0 - d2, d1 + d2, d2 - d1, d1 - d3, each split
    into even and odd columns (h, 8 rows); then (.) B per tile from those
    halves, every loop unit-stride so that it vectorizes (the 4x4 blocks
    overlap by two columns: read in place they compiled to scalar code)."""
    for j in range(tw + 1):
        e, o = 2 * j, 2 * j + 1
        h[0, j], h[1, j] = x0[e] - x2[e], x0[o] - x2[o]
        h[2, j], h[3, j] = x1[e] + x2[e], x1[o] + x2[o]
        h[4, j], h[5, j] = x2[e] - x1[e], x2[o] - x1[o]
        h[6, j], h[7, j] = x1[e] - x3[e], x1[o] - x3[o]
    for r in range(4):
        ev, od = h[2 * r], h[2 * r + 1]
        a = 4 * r * plane + t0
        w0, w1 = v[a:a + tw], v[a + plane:a + plane + tw]
        w2, w3 = v[a + 2 * plane:a + 2 * plane + tw], v[a + 3 * plane:a + 3 * plane + tw]
        for j in range(tw):
            w0[j] = ev[j] - ev[j + 1]
            w1[j] = od[j] + ev[j + 1]
            w2[j] = ev[j + 1] - od[j]
            w3[j] = od[j] - od[j + 1]


@njit(cache=True, parallel=True)
def _output_transform(m, plane, n, bias, r0, r1, tw, y):
    """y[b, o, 2i:2i+2, 2j:2j+2] = (A^T M A) + bias[o] for tile rows [r0, r1)
    (M[e, o, t] is m[e*plane + o*n + t], tile t as in _input_transform), cropped
    to y's (Ho, Wo). One job per sample and output channel."""
    nb, co, ho, wo = y.shape
    rows = r1 - r0
    for job in prange(nb * co):
        b = job // co
        o = job - b * co
        out = np.empty((2, 2 * tw), np.float32)  # a tile row's outputs, before cropping to Wo
        for i in range(r0, r1):
            _output_row(m, plane, o * n + (b * rows + i - r0) * tw, tw, bias[o], out[0], out[1])
            for r in range(min(2, ho - 2 * i)):
                dst = y[b, o, 2 * i + r]
                src = out[r]
                for x in range(wo):
                    dst[x] = src[x]


@njit(cache=True)
def _output_row(m, plane, t0, tw, bo, y0, y1):
    """One row of tiles (M[e] at m[e*plane + t0:...]): A^T M A + bo into rows y0,
    y1 (2*tw columns each)."""
    m0, m1, m2, m3 = _runs4(m, t0, plane, tw)
    m4, m5, m6, m7 = _runs4(m, t0 + 4 * plane, plane, tw)
    m8, m9, m10, m11 = _runs4(m, t0 + 8 * plane, plane, tw)
    m12, m13, m14, m15 = _runs4(m, t0 + 12 * plane, plane, tw)
    for j in range(tw):
        # A^T M: rows m0 + m1 + m2 and m1 - m2 - m3 (per column) ...
        p0, p1, p2, p3 = m0[j] + m4[j] + m8[j], m1[j] + m5[j] + m9[j], m2[j] + m6[j] + m10[j], m3[j] + m7[j] + m11[j]
        q0, q1, q2, q3 = m4[j] - m8[j] - m12[j], m5[j] - m9[j] - m13[j], m6[j] - m10[j] - m14[j], \
            m7[j] - m11[j] - m15[j]
        # ... then (.) A, plus the bias
        y0[2 * j] = p0 + p1 + p2 + bo
        y0[2 * j + 1] = p1 - p2 - p3 + bo
        y1[2 * j] = q0 + q1 + q2 + bo
        y1[2 * j + 1] = q1 - q2 - q3 + bo


@njit(cache=True)
def _runs4(a, start, step, n):
    """Four runs of n from the flat a, `step` apart."""
    return a[start:start + n], a[start + step:start + step + n], a[start + 2 * step:start + 2 * step + n], \
        a[start + 3 * step:start + 3 * step + n]


KERNELS = (_input_transform, _output_transform, _input_row, _output_row, _runs4)


def _rows_per_block(ci: int, co: int, th: int, tw: int, nb: int) -> int:
    """Tile rows per block: V and M (16 x (Ci + Co) floats per tile) within BUDGET."""
    return max(1, min(th, BUDGET // (16 * (ci + co) * tw * nb * 4)))


def workspace_bytes(ci: int, co: int, ho: int, wo: int) -> int:
    """What conv3x3 allocates for one sample (the padded maps, V and M), its input
    having ci channels or co (the backward's flipped kernel)."""
    th, tw = -(-ho // 2), -(-wo // 2)
    rows = _rows_per_block(ci, co, th, tw, 1)
    return 4 * (max(ci, co) * (2 * th + 2) * (2 * tw + 2) + 16 * (ci + co) * (rows * tw + 16))


def conv3x3(x, u, bias, padding, y) -> None:
    """y (N, Co, Ho, Wo) = the stride-1 3x3 convolution of x (N, Ci, H, W) with the
    transformed kernel u (16, Co, Ci) and bias (Co,), zero padding (ph, pw)."""
    nb, ci, h, w = x.shape
    co, ho, wo = y.shape[1:]
    ph, pw = padding
    th, tw = -(-ho // 2), -(-wo // 2)
    # zero-padded maps holding every tile's 4x4 block (one row/column more for odd outputs)
    xp = np.zeros((nb, ci, 2 * th + 2, 2 * tw + 2), np.float32)
    hh, ww = min(h, 2 * th + 2 - ph), min(w, 2 * tw + 2 - pw)
    xp[:, :, ph:ph + hh, pw:pw + ww] = x[:, :, :hh, :ww]
    rows = _rows_per_block(ci, co, th, tw, nb)
    n_max = nb * rows * tw
    vflat, mflat = np.empty(16 * (ci * n_max + 16), np.float32), np.empty(16 * (co * n_max + 16), np.float32)
    for r0 in range(0, th, rows):
        r1 = min(th, r0 + rows)
        n = nb * (r1 - r0) * tw  # the last block may be shorter: the same buffers, laid out for n
        vplane, v = _planes(vflat, ci, n)
        mplane, m = _planes(mflat, co, n)
        _input_transform(xp, r0, r1, tw, vflat, vplane, n)
        np.matmul(u, v, out=m)
        _output_transform(mflat, mplane, n, bias, r0, r1, tw, y)


def _planes(flat, rows: int, n: int):
    """(plane stride, (16, rows, n) view of flat): 16 matrices of rows x n, each
    plane one cache line further than a packed layout: planes a multiple of
    4 KB apart (64 x 784 floats, say) put the 16 runs a tile row reads or writes
    in the same L1 set, and the transforms ran at a third of their speed."""
    plane = rows * n + 16
    return plane, flat[:16 * plane].reshape(16, plane)[:, :rows * n].reshape(16, rows, n)
