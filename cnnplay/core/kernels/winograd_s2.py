"""Winograd for 3x3 convolutions with stride 2 (ResNet's downsampling layers).

With stride 2 neighbouring outputs share a single input row (column), so the
stride-1 schemes (winograd.py) do not apply. Split by phase instead: in one
dimension a tile of 2 outputs reads 5 inputs d0..d4 (tiles 4 apart, sharing
d4 with the next), y0 = g0 d0 + g1 d1 + g2 d2 and y1 = g0 d2 + g1 d3 + g2 d4.
The even inputs see the 2-tap kernel (g0, g2), the odd ones the 1-tap (g1);
F(2, 2) on the even ones and one output transform for both give

    v = B^T d = (d0 - d2, d1 - d3, d2, d3, d4 - d2)
    k = G g   = (g0,      g1,      g0 + g2, g1, g2)
    M0 = v0 k0 + v1 k1,   M1 = v2 k2 + v3 k3,   M2 = v4 k4
    y0 = M0 + M1,         y1 = M1 + M2          (A^T = [[1, 1, 0], [0, 1, 1]])

5 multiplications for 6. In 2D a tile is 2x2 outputs from 5x5 inputs, and
its 25 values v_i v_j (times k_i k_j) fall into 9 sums M[p, q] (a value
belongs to the point of its row's and of its column's 1D sum: 0, 0, 1, 1, 2
for i = 0..4). Summed over the input channels each point is one matrix
product whose inner dimension holds the point's 4, 2 or 1 values times Ci:

    M[p, q] = V[p, q] @ U[p, q]     (tiles x n Ci) @ (n Ci x Co), n = 4, 2 or 1
    y = A^T M A + bias              per tile and output channel

25 Ci multiply-adds per tile and output channel against 36 Ci: 0.69x the
products of im2col + one product, as 9 BLAS products (not 25 of Ci each:
the longer inner dimensions run faster). The transforms only add and
subtract, so the results stay as exact as the direct sum's.

Layouts: U is (25 Ci, Co), point (p, q)'s rows together, its values side by
side in them (`ECOL`: where value (i, j)'s Ci rows start, in units of Ci).
V holds one (tiles, n Ci) matrix per point, its columns as U's rows
(`_points`), M one (tiles, Co) matrix per point (`_planes`): every product
reads and writes whole matrices (column slices of one (tiles, 25 Ci) matrix
took 1.1x the time). The maps are transformed channels last
(winograd_tiles.py).

Training: the forward pass is linear in U and in V, so with gM = A gY A^T per
tile (gY's 2x2 spread onto the 3x3 points), the weight gradient is
gU[p, q] = gM[p, q]^T @ V[p, q] summed over tiles, gw = G^T gU G, and the
input gradient gV[p, q] = gM[p, q] @ U[p, q]^T, added back onto the padded
input by B gV B^T (neighbouring tiles overlap in one row and column).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from . import blas, products512, reuse
from .winograd_tiles import _channels_first, _channels_last, _store_rows, channels_last

NAME = "winograd_s2"
BUDGET = 8 << 20  # bytes V and M may take together per block of tile rows (winograd.BUDGET)
POINT = (0, 0, 1, 1, 2)  # the 1D sum each of the 5 transformed values belongs to
SIZE = (2, 2, 1)  # values per 1D sum


def _columns():
    """ECOL (5, 5): where value (i, j)'s Ci rows start in U (in units of Ci); START (9,),
    WIDTH (9,): point (p, q) = 3p + q's rows (units of Ci). In V the value's columns
    start at ECOL - START (times Ci) within its point's matrix (`_points`)."""
    start, width = np.zeros(9, np.int64), np.zeros(9, np.int64)
    ecol = np.zeros((5, 5), np.int64)
    at = 0
    for p in range(3):
        for q in range(3):
            start[3 * p + q], width[3 * p + q] = at, SIZE[p] * SIZE[q]
            at += SIZE[p] * SIZE[q]
    slot = (0, 1, 0, 1, 0)
    for i in range(5):
        for j in range(5):
            p, q = POINT[i], POINT[j]
            ecol[i, j] = start[3 * p + q] + slot[i] * SIZE[q] + slot[j]
    return ecol, start, width


ECOL, START, WIDTH = _columns()


def applies(kernel, stride, dilation) -> bool:
    """3x3, stride 2 both ways, no dilation (any padding)."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (2, 2) and tuple(dilation) == (1, 1)


def tiles(ho: int, wo: int) -> tuple[int, int]:
    """Tile rows and columns covering an (Ho, Wo) output."""
    return -(-ho // 2), -(-wo // 2)


def spill(ho: int, wo: int) -> float:
    """The tiles' positions per output position: 1 for even sides, 1.31 for 7x7 (a
    third more products for nothing), about 1 on large maps."""
    th, tw = tiles(ho, wo)
    return 4 * th * tw / (ho * wo)


def extent(ho: int, wo: int) -> tuple[int, int]:
    """(rows, columns) of the padded input the tiles read."""
    th, tw = tiles(ho, wo)
    return 4 * th + 1, 4 * tw + 1


# -- kernels ---------------------------------------------------------------------------

def kernel_transform(w: np.ndarray) -> np.ndarray:
    """U (25 Ci, Co) float32 from 3x3 weights w (Co, Ci, 3, 3): row ECOL[i, j] Ci + c,
    column o holds (G w[o, c] G^T)[i, j]. Once per parameter version."""
    w = np.ascontiguousarray(w, dtype=np.float32).view()
    w.flags.writeable = False  # always read-only: one compiled specialisation, not two (params are frozen)
    co, ci = w.shape[:2]
    u = np.empty((25 * ci, co), np.float32)
    _kernel_transform(w.reshape(co, ci, 9), ECOL, u)
    return u


@njit(cache=True, parallel=True)
def _kernel_transform(w, ecol, u):
    """u[ecol[i, j] Ci + c, o] = (G w[o, c] G^T)[i, j]; G's rows pick g0, g1, g0 + g2,
    g1, g2. One job per input channel, each of its 25 rows of u a loop over the
    output channels."""
    co, ci = w.shape[0], w.shape[1]
    for c in prange(ci):
        k = np.empty((5, 3, co), np.float32)  # G g: [i][kernel column][output channel]
        for o in range(co):
            g = w[o, c]
            for j in range(3):
                g0, g1, g2 = g[j], g[3 + j], g[6 + j]
                k[0, j, o], k[1, j, o], k[2, j, o], k[3, j, o], k[4, j, o] = g0, g1, g0 + g2, g1, g2
        for i in range(5):
            k0, k1, k2 = k[i, 0], k[i, 1], k[i, 2]
            u0, u1, u2 = u[ecol[i, 0] * ci + c], u[ecol[i, 1] * ci + c], u[ecol[i, 2] * ci + c]
            u3, u4 = u[ecol[i, 3] * ci + c], u[ecol[i, 4] * ci + c]
            for o in range(co):
                u0[o], u1[o], u2[o], u3[o], u4[o] = k0[o], k1[o], k0[o] + k2[o], k1[o], k2[o]


@njit(cache=True, parallel=True)
def _input_transform(xt, r0, r1, tw, eoff, estep, v):
    """(B^T d B)[i, j] of tile t and channel c into v[eoff[i, j] + t estep[i, j] + c] (the
    point-major layout, `_points`) for tile rows [r0, r1) of the padded, channels-last
    maps xt (N, 4 th + 1, 4 tw + 1, Ci), tile t = (b (r1 - r0) + i - r0) tw + j.
    One job per sample and tile row: per tile, B^T on each column of its 5x5 d,
    then on each row of the result, every loop over the channels."""
    nb, ci = xt.shape[0], xt.shape[3]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        h = np.empty((5, 5, ci), np.float32)  # B^T d: [row][column][channel]
        for j in range(tw):
            for k in range(5):
                d0, d1, d2 = xt[b, 4 * i, 4 * j + k], xt[b, 4 * i + 1, 4 * j + k], xt[b, 4 * i + 2, 4 * j + k]
                d3, d4 = xt[b, 4 * i + 3, 4 * j + k], xt[b, 4 * i + 4, 4 * j + k]
                h0, h1, h2, h3, h4 = h[0, k], h[1, k], h[2, k], h[3, k], h[4, k]
                for c in range(ci):
                    h0[c], h1[c], h2[c], h3[c], h4[c] = _bt(d0[c], d1[c], d2[c], d3[c], d4[c])
            t = job * tw + j
            for r in range(5):
                e0, e1, e2, e3, e4 = h[r, 0], h[r, 1], h[r, 2], h[r, 3], h[r, 4]
                w0, w1, w2, w3, w4 = _runs(v, eoff[r], estep[r], t, ci)
                for c in range(ci):
                    w0[c], w1[c], w2[c], w3[c], w4[c] = _bt(e0[c], e1[c], e2[c], e3[c], e4[c])


@njit(cache=True)
def _runs(a, off, step, t, n):
    """The 5 runs a[off[k] + t step[k]:... + n], k = 0..4: values (r, 0..4) of tile t."""
    a0, a1 = a[off[0] + t * step[0]:off[0] + t * step[0] + n], a[off[1] + t * step[1]:off[1] + t * step[1] + n]
    a2, a3 = a[off[2] + t * step[2]:off[2] + t * step[2] + n], a[off[3] + t * step[3]:off[3] + t * step[3] + n]
    return a0, a1, a2, a3, a[off[4] + t * step[4]:off[4] + t * step[4] + n]


@njit(cache=True)
def _bt(d0, d1, d2, d3, d4):
    """B^T (d0, ..., d4) = (d0 - d2, d1 - d3, d2, d3, d4 - d2). On scalars, so that the
    loops calling it vectorize."""
    return d0 - d2, d1 - d3, d2, d3, d4 - d2


@njit(cache=True, parallel=True)
def _output_transform(m, mplane, bias, r0, r1, tw, y):
    """y[b, o, 2i:2i+2, 2j:2j+2] = (A^T M A) + bias[o] for tile rows [r0, r1), M[p, q]
    of tile t at m[(3p + q) mplane + t Co:...], cropped to y's (Ho, Wo). One job per sample
    and tile row."""
    nb, co = y.shape[0], y.shape[1]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        s = np.empty((2, 3, co), np.float32)  # A^T M: [row][point column][channel]
        q = np.empty((2, co, 2 * tw), np.float32)  # the tile row's outputs: [row][channel][column]
        for j in range(tw):
            t = (job * tw + j) * co
            for k in range(3):
                a = k * mplane + t
                m0, m1, m2 = m[a:a + co], m[a + 3 * mplane:a + 3 * mplane + co], m[a + 6 * mplane:a + 6 * mplane + co]
                s0, s1 = s[0, k], s[1, k]
                for c in range(co):
                    s0[c], s1[c] = m0[c] + m1[c], m1[c] + m2[c]
            for r in range(2):
                e0, e1, e2 = s[r, 0], s[r, 1], s[r, 2]
                qr = q[r]
                for c in range(co):
                    qr[c, 2 * j] = e0[c] + e1[c] + bias[c]
                    qr[c, 2 * j + 1] = e1[c] + e2[c] + bias[c]
        _store_rows(q, b, 2 * i, y)


@njit(cache=True, parallel=True)
def _grad_output_transform(gyt, r0, r1, tw, m, mplane):
    """gM[p, q] = (A gY A^T)[p, q] for tile rows [r0, r1) of the channels-last output
    gradient gyt (N, 2 th, 2 tw, Co) (zero beyond the real outputs), into m laid out
    as _output_transform reads it: the adjoint of that transform (A's rows (1, 0),
    (1, 1), (0, 1)). One job per sample and tile row."""
    nb, co = gyt.shape[0], gyt.shape[3]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        h = np.empty((3, 2, co), np.float32)  # A gY: [point row][column][channel]
        for j in range(tw):
            for k in range(2):
                g0, g1 = gyt[b, 2 * i, 2 * j + k], gyt[b, 2 * i + 1, 2 * j + k]
                h0, h1, h2 = h[0, k], h[1, k], h[2, k]
                for c in range(co):
                    h0[c], h1[c], h2[c] = g0[c], g0[c] + g1[c], g1[c]
            t = (job * tw + j) * co
            for p in range(3):
                e0, e1 = h[p, 0], h[p, 1]
                a = 3 * p * mplane + t
                w0, w1, w2 = m[a:a + co], m[a + mplane:a + mplane + co], m[a + 2 * mplane:a + 2 * mplane + co]
                for c in range(co):
                    w0[c], w1[c], w2[c] = e0[c], e0[c] + e1[c], e1[c]


@njit(cache=True, parallel=True)
def _adjoint_kernel_transform(gu, eoff, estep, gw):
    """gw[o, c] (3x3, flattened) = G^T gU G for gU[i, j] of output channel o and input
    channel c at gu[eoff[i, j] + o estep[i, j] + c] (the points' (Co, n Ci) products,
    `_points`): G^T's rows sum the values 0 + 2, 1 + 3 and 2 + 4. One job per output
    channel."""
    co, ci = gw.shape[0], gw.shape[1]
    off_t, step_t = eoff.T.copy(), estep.T.copy()  # by value column j
    for o in prange(co):
        t = np.empty((3, 5, ci), np.float32)  # G^T gU: [kernel row][value column][channel]
        for j in range(5):
            u0, u1, u2, u3, u4 = _runs(gu, off_t[j], step_t[j], o, ci)
            t0, t1, t2 = t[0, j], t[1, j], t[2, j]
            for c in range(ci):
                t0[c], t1[c], t2[c] = u0[c] + u2[c], u1[c] + u3[c], u2[c] + u4[c]
        g = gw[o]
        for a in range(3):
            e0, e1, e2, e3, e4 = t[a, 0], t[a, 1], t[a, 2], t[a, 3], t[a, 4]
            for c in range(ci):
                g[c, 3 * a] = e0[c] + e2[c]
                g[c, 3 * a + 1] = e1[c] + e3[c]
                g[c, 3 * a + 2] = e2[c] + e4[c]


@njit(cache=True, parallel=True)
def _input_adjoint(gv, eoff, estep, r0, r1, tw, parity, gxt):
    """gxt[b, 4i:4i+5, 4j:4j+5, c] += (B gV B^T) for the tile rows i of [r0, r1) with
    i % 2 == parity (rows of neighbouring tiles overlap in one row, so the two
    parities run one after the other; the columns of one row's tiles overlap
    within a job, in order). B's rows spread v back: d0 += v0, d1 += v1,
    d2 += v2 - v0 - v4, d3 += v3 - v1, d4 += v4."""
    nb, ci = gxt.shape[0], gxt.shape[3]
    rows = r1 - r0
    first = r0 + (parity - r0) % 2
    mine = max(0, (r1 - first + 1) // 2)
    for job in prange(nb * mine):
        b = job // mine
        i = first + 2 * (job - b * mine)
        h = np.empty((5, 5, ci), np.float32)  # gV B^T: [value row][input column][channel]
        for j in range(tw):
            t = (b * rows + i - r0) * tw + j
            for r in range(5):
                v0, v1, v2, v3, v4 = _runs(gv, eoff[r], estep[r], t, ci)
                h0, h1, h2, h3, h4 = h[r, 0], h[r, 1], h[r, 2], h[r, 3], h[r, 4]
                for c in range(ci):
                    h0[c], h1[c], h2[c], h3[c], h4[c] = _b(v0[c], v1[c], v2[c], v3[c], v4[c])
            for k in range(5):
                e0, e1, e2, e3, e4 = h[0, k], h[1, k], h[2, k], h[3, k], h[4, k]
                x0, x1, x2 = gxt[b, 4 * i, 4 * j + k], gxt[b, 4 * i + 1, 4 * j + k], gxt[b, 4 * i + 2, 4 * j + k]
                x3, x4 = gxt[b, 4 * i + 3, 4 * j + k], gxt[b, 4 * i + 4, 4 * j + k]
                for c in range(ci):
                    a0, a1, a2, a3, a4 = _b(e0[c], e1[c], e2[c], e3[c], e4[c])
                    x0[c] += a0
                    x1[c] += a1
                    x2[c] += a2
                    x3[c] += a3
                    x4[c] += a4


@njit(cache=True)
def _b(v0, v1, v2, v3, v4):
    """B (v0, ..., v4) = (v0, v1, v2 - v0 - v4, v3 - v1, v4), the adjoint of _bt."""
    return v0, v1, v2 - v0 - v4, v3 - v1, v4


# -- the wrappers ------------------------------------------------------------------------

KERNELS = (_channels_last, _input_transform, _output_transform, _kernel_transform)  # the forward's
GRAD_KERNELS = (_channels_last, _input_transform, _grad_output_transform, _adjoint_kernel_transform,
                _input_adjoint, _channels_first, _kernel_transform)  # (the transform, if the forward's is not kept)
PAD = 16  # floats between two planes (winograd._planes: planes a multiple of 4 KB apart share L1 sets)


@lru_cache(maxsize=64)
def _points(ci: int, n: int):
    """The point-major layout of n rows of transformed values (V and gV: a row per
    tile; gU: a row per output channel): point P's (n, WIDTH[P] Ci) matrix from
    off[P], so that each product reads and writes whole matrices. Returns (floats,
    off (9,), eoff (5, 5), estep (5, 5)): value (i, j) of row t and channel c lies at
    eoff[i, j] + t estep[i, j] + c. Computed once per shape (a call asks several
    times); the arrays are shared, read only."""
    width = WIDTH * ci
    off = np.zeros(9, np.int64)
    off[1:] = np.cumsum(width * n + PAD)[:-1]
    point = 3 * np.array(POINT)[:, None] + np.array(POINT)[None, :]
    eoff, estep = off[point] + (ECOL - START[point]) * ci, width[point]
    for a in (off, eoff, estep):
        a.flags.writeable = False
    return int(off[-1] + width[-1] * n + PAD), off, eoff, estep


def _matrices(flat, ci: int, n: int):
    """The 9 point matrices (n, WIDTH[P] Ci) of a flat buffer laid out by _points."""
    off = _points(ci, n)[1]
    return [flat[off[e]:off[e] + n * WIDTH[e] * ci].reshape(n, WIDTH[e] * ci) for e in range(9)]


def _kernel_matrices(u, ci: int):
    """The 9 point matrices (WIDTH[P] Ci, Co) of U: its rows of point P."""
    return [u[START[e] * ci:(START[e] + WIDTH[e]) * ci] for e in range(9)]


def _planes(flat, co: int, n: int):
    """(plane, the 9 (n, Co) matrices of M or gM): point P's from P plane on."""
    plane = n * co + PAD
    return plane, [flat[e * plane:e * plane + n * co].reshape(n, co) for e in range(9)]


def _rows_per_block(ci: int, co: int, th: int, tw: int, nb: int, budget: int) -> int:
    """Tile rows per block: V and M ((25 Ci + 9 Co) floats per tile) within budget."""
    return max(1, min(th, budget // ((25 * ci + 9 * co) * tw * nb * 4)))


def workspace_bytes(ci: int, co: int, ho: int, wo: int) -> int:
    """What the forward and the gradients allocate for one sample beyond their
    outputs: the padded input channels last and its gradient, V (gV) and M within
    the budget, the output gradient channels last, gU and a part."""
    th, tw = tiles(ho, wo)
    hp, wp = extent(ho, wo)
    n = _rows_per_block(ci, co, th, tw, 1, max(BUDGET, 4 * 25 * ci * co)) * tw
    return 4 * (2 * ci * hp * wp + 25 * ci * n + 9 * co * n + co * 4 * th * tw + 2 * 25 * ci * co + 20 * PAD)


def _blocks(x, co: int, ho: int, wo: int, padding, budget: int, remember: bool = False, transform: bool = True):
    """The tiles of an (Ho, Wo) output of x (N, Ci, H, W) a block of tile rows at a
    time: yields (r0, r1, n, V's flat buffer, M's) with V transformed (_points' layout,
    n tiles; transform=False: left to fill, x only read for its shape) and M to fill
    (_planes'). The same buffers serve every block."""
    nb, ci = x.shape[:2]
    th, tw = tiles(ho, wo)
    hp, wp = extent(ho, wo)
    xt = reuse.rearranged(x, ("channels last", tuple(padding), hp, wp),
                          lambda: channels_last(x, padding, hp, wp), remember) if transform else None
    rows = _rows_per_block(ci, co, th, tw, nb, budget)
    vflat = np.empty(_points(ci, nb * rows * tw)[0], np.float32)
    mflat = np.empty(9 * (nb * rows * tw * co + PAD), np.float32)
    for r0 in range(0, th, rows):
        r1 = min(th, r0 + rows)
        n = nb * (r1 - r0) * tw
        if transform:
            _, _, eoff, estep = _points(ci, n)
            _input_transform(xt, r0, r1, tw, eoff, estep, vflat)
        yield r0, r1, n, vflat, mflat


def conv3x3(x, u, bias, padding, y, remember: bool = False) -> None:
    """y (N, Co, Ho, Wo) = the stride-2 3x3 convolution of x (N, Ci, H, W) with the
    transformed kernel u (kernel_transform) and bias (Co,), zero padding (ph, pw).
    remember: inside reuse.reuse_sources(), keep x channels last for the gradients."""
    ci = x.shape[1]
    co, ho, wo = y.shape[1:]
    tw = tiles(ho, wo)[1]
    us = _kernel_matrices(u, ci)
    for r0, r1, n, vflat, mflat in _blocks(x, co, ho, wo, padding, BUDGET, remember):
        plane, m = _planes(mflat, co, n)
        products512.matmuls(list(zip(_matrices(vflat, ci, n), us, m)))
        _output_transform(mflat, plane, bias, r0, r1, tw, y)


def backward(x, u, gy, padding, param_grads: bool = True, input_grad: bool = True):
    """(gx, gw) of the stride-2 3x3 convolution of x (N, Ci, H, W) with zero padding
    (ph, pw) and transformed kernel u, whose output gradient is gy (N, Co, Ho, Wo);
    gw (Co, Ci, 3, 3) summed over the batch, None unless param_grads; gx None unless
    input_grad (x is then only read for its shape). Inside reuse_sources() the
    forward's channels-last x serves."""
    nb, ci, h, w = x.shape
    co, ho, wo = gy.shape[1:]
    th, tw = tiles(ho, wo)
    hp, wp = extent(ho, wo)
    gyt = channels_last(gy, (0, 0), 2 * th, 2 * tw)
    size, _, goff, gstep = _points(ci, co)
    gu = np.empty(size, np.float32) if param_grads else None
    part = None
    # as far as the tiles reach or the input does (without padding the tiles may
    # not read its last row or column, whose gradient is then 0)
    gxt = np.zeros((nb, max(hp, padding[0] + h), max(wp, padding[1] + w), ci), np.float32) if input_grad else None
    ut = [a.T for a in _kernel_matrices(u, ci)] if input_grad else None
    budget = max(BUDGET, 4 * 25 * ci * co) if param_grads else BUDGET
    for r0, r1, n, vflat, mflat in _blocks(x, co, ho, wo, padding, budget, transform=param_grads):
        plane, gm = _planes(mflat, co, n)
        _grad_output_transform(gyt, r0, r1, tw, mflat, plane)
        v = _matrices(vflat, ci, n)
        if param_grads:  # gU = gM^T V, summed over the blocks
            if r0 > 0 and part is None:
                part = np.empty_like(gu)
            out = _matrices(gu if r0 == 0 else part, ci, co)
            blas.matmuls([(a.T, b, o) for a, b, o in zip(gm, v, out)])
            if r0 > 0:  # matrix by matrix: the padding between them holds garbage
                for total, o in zip(_matrices(gu, ci, co), out):
                    total += o
        if input_grad:  # gV = gM U^T, into V's buffer (the block's V is done with)
            blas.matmuls(list(zip(gm, ut, v)))
            _, _, eoff, estep = _points(ci, n)
            for parity in (0, 1):
                _input_adjoint(vflat, eoff, estep, r0, r1, tw, parity, gxt)
    gw = gx = None
    if param_grads:
        gw = np.empty((co, ci, 9), np.float32)
        _adjoint_kernel_transform(gu, goff, gstep, gw)
        gw = gw.reshape(co, ci, 3, 3)
    if input_grad:
        gx = np.empty((nb, ci, h, w), np.float32)
        _channels_first(gxt, padding[0], padding[1], gx)
    return gx, gw
