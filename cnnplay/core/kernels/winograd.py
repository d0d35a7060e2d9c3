"""Winograd convolution: 3x3 convolutions with stride 1 and many channels.

Two schemes (`Scheme`, `SCHEMES`), one mechanism: F(2x2, 3x3), described here,
and F(4x4, 3x3) (winograd4.py: 4x4 output tiles from 6x6 inputs, 36 products,
4x fewer multiply-adds, less exact). conv.choose_shape picks one per layer.

Each 2x2 block of outputs (a tile) comes from a 4x4 block of the zero-padded
input. In the transformed domain the 3x3 kernel becomes 4x4 and the 9
multiply-adds per output and input channel become 16 per 4 outputs (2.25x
fewer), as 16 independent matrix products:

    V[e] = (B^T d B)[e]          per tile and input channel (d: its 4x4 input)
    U[e] = (G g G^T)[e]          per input and output channel (g: the 3x3 kernel)
    M[e] = V[e] @ U[e]           (tiles x Ci) @ (Ci x Co), e = 0..15, BLAS
    y    = A^T M A + bias        per tile and output channel: its 2x2 outputs

(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015.)
The transforms only add and halve, so in float32 the results stay within a
few 1e-7 of the direct sum (the tests hold them to the float64 reference).
The transforms are parallel numba kernels working channels last
(winograd_tiles.py: each combination of a tile's positions is one loop over
its channels, which vectorizes), the 16 (36) products one batched numpy
matmul (BLAS). The tiles are taken a block of tile rows at a time, so
that V and M together stay within BUDGET (8 MB, the cap of the GEMM path's
column buffer) whatever the map size.

The training engine's weight gradient has the same form (`weight_grad`): the
forward pass is linear in U, so with gY a tile's 2x2 output gradient

    gM[e] = (A gY A^T)[e]                            per tile and output channel
    gU[e] = sum over tiles of gM[e]^T @ V[e]          (Co x tiles) @ (tiles x Ci), BLAS
    gw    = G^T gU G                                 per output and input channel

again 2.25x fewer multiply-adds than im2col + one product. The input
gradient is the forward convolution of the flipped kernel, whose transform
is taken from the turned kernel's taps with the channels swapped
(`kernel_transform(flip=True)`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from numba import njit, prange

from . import products512, reuse, winograd4
from .winograd_tiles import _channels_last, _store_rows, channels_last

BUDGET = 8 << 20  # bytes V and M may take together (at least one tile row)


def kernel_transform(w: np.ndarray, flip: bool = False, scheme: "Scheme | None" = None) -> np.ndarray:
    """U (16, Ci, Co) float32 from 3x3 weights w (Co, Ci, 3, 3): U[4a+b, c, o] =
    (G w[o, c] G^T)[a, b], G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    (scheme F2, the default; F4: (36, Ci, Co) with winograd4.G); flip=True: the
    transform (., Co, Ci) of the kernel turned by 180 degrees, which the input
    gradient convolves with. Once per parameter version, which in training is
    every step. The kernels compute on the taps laid out as U's rows and
    columns (9, rows, columns), every sum a loop over a row of U: per kernel
    they ran as scalar code (7 ms of a 90 ms training step at 64-128 channels)."""
    sc = scheme or F2
    w = np.ascontiguousarray(w, dtype=np.float32).view()
    w.flags.writeable = False  # always read-only: one compiled specialisation, not two (params are frozen)
    co, ci = w.shape[:2]
    rows, cols = (co, ci) if flip else (ci, co)
    taps = np.empty((9, rows, cols), np.float32)
    _taps(w.reshape(co, ci, 9), flip, taps)
    u = np.empty((sc.elems, rows, cols), np.float32)
    sc.kernel(taps, u)
    return u


@njit(cache=True, parallel=True)
def _taps(w, flip, taps):
    """taps[k, c, o] = w[o, c, k] for the 3x3 kernels w (Co, Ci, 9); flip: taps[k, o, c] =
    w[o, c, 8 - k], the kernel turned by 180 degrees. One job per row of taps (numpy's
    transposing copy took 4x the time at 512 x 512 channels)."""
    nrow, ncol = taps.shape[1], taps.shape[2]
    for r in prange(nrow):
        for q in range(ncol):
            if flip:
                src = w[r, q]
                for k in range(9):
                    taps[k, r, q] = src[8 - k]
            else:
                src = w[q, r]
                for k in range(9):
                    taps[k, r, q] = src[k]


@njit(cache=True, parallel=True)
def _kernel_transform(taps, u):
    """u[4a+b, r, q] = (G g G^T)[a, b], g[i, j] = taps[3i + j, r, q]: the kernels'
    taps laid out as u's rows and columns (kernel_transform). One job per row of
    u, each step a loop over its columns: G g (its rows g0, (g0 + g1 + g2)/2,
    (g0 - g1 + g2)/2, g2), then the same on the columns of the result."""
    nrow, ncol = u.shape[1], u.shape[2]
    half = np.float32(0.5)
    for r in prange(nrow):
        t = np.empty((4, 3, ncol), np.float32)  # G g: [a][j][column]
        for j in range(3):
            g0, g1, g2 = taps[j, r], taps[3 + j, r], taps[6 + j, r]
            t0, t1, t2, t3 = t[0, j], t[1, j], t[2, j], t[3, j]
            for q in range(ncol):
                s = g0[q] + g2[q]
                t0[q], t1[q], t2[q], t3[q] = g0[q], (s + g1[q]) * half, (s - g1[q]) * half, g2[q]
        for a in range(4):
            a0, a1, a2 = t[a, 0], t[a, 1], t[a, 2]
            u0, u1, u2, u3 = u[4 * a, r], u[4 * a + 1, r], u[4 * a + 2, r], u[4 * a + 3, r]
            for q in range(ncol):
                s = a0[q] + a2[q]
                u0[q], u1[q], u2[q], u3[q] = a0[q], (s + a1[q]) * half, (s - a1[q]) * half, a2[q]


@njit(cache=True, parallel=True)
def _input_transform(xt, r0, r1, tw, v, plane):
    """V[e, t, c] = (B^T d B)[e] for tile rows [r0, r1) of the padded, channels-last
    maps xt (N, 2*th + 2, 2*tw + 2, Ci), into the flat v: V[e, t, c] is
    v[e*plane + t*Ci + c], tile t = (b*(r1 - r0) + i - r0)*tw + j. One job per
    sample and tile row: per tile, B^T on each column of its d, then on each row
    of the result, every loop over the channels."""
    nb, ci = xt.shape[0], xt.shape[3]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        h = np.empty((4, 4, ci), np.float32)  # B^T d: [row][column][channel]
        for j in range(tw):
            for k in range(4):
                d0, d1, d2, d3 = xt[b, 2 * i, 2 * j + k], xt[b, 2 * i + 1, 2 * j + k], \
                    xt[b, 2 * i + 2, 2 * j + k], xt[b, 2 * i + 3, 2 * j + k]
                h0, h1, h2, h3 = h[0, k], h[1, k], h[2, k], h[3, k]
                for c in range(ci):
                    h0[c], h1[c], h2[c], h3[c] = _bt(d0[c], d1[c], d2[c], d3[c])
            t = (job * tw + j) * ci
            for r in range(4):
                e0, e1, e2, e3 = h[r, 0], h[r, 1], h[r, 2], h[r, 3]
                a = 4 * r * plane + t
                w0, w1 = v[a:a + ci], v[a + plane:a + plane + ci]
                w2, w3 = v[a + 2 * plane:a + 2 * plane + ci], v[a + 3 * plane:a + 3 * plane + ci]
                for c in range(ci):
                    w0[c], w1[c], w2[c], w3[c] = _bt(e0[c], e1[c], e2[c], e3[c])


@njit(cache=True)
def _bt(d0, d1, d2, d3):
    """B^T (d0, d1, d2, d3): B^T's rows are (1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0),
    (0, 1, 0, -1). On scalars, so that the loops calling it vectorize."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(cache=True, parallel=True)
def _output_transform(m, plane, bias, r0, r1, tw, y):
    """y[b, o, 2i:2i+2, 2j:2j+2] = (A^T M A) + bias[o] for tile rows [r0, r1)
    (M[e, t, o] is m[e*plane + t*Co + o], tile t as in _input_transform), cropped
    to y's (Ho, Wo). One job per sample and tile row."""
    nb, co = y.shape[0], y.shape[1]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        p = np.empty((2, 4, co), np.float32)  # A^T M: [row][column][channel]
        q = np.empty((2, co, 2 * tw), np.float32)  # the tile row's outputs: [row][channel][column]
        for j in range(tw):
            t = (job * tw + j) * co
            for k in range(4):
                a = k * plane + t
                m0, m1 = m[a:a + co], m[a + 4 * plane:a + 4 * plane + co]
                m2, m3 = m[a + 8 * plane:a + 8 * plane + co], m[a + 12 * plane:a + 12 * plane + co]
                p0, p1 = p[0, k], p[1, k]
                for c in range(co):
                    p0[c], p1[c] = _at(m0[c], m1[c], m2[c], m3[c])
            for r in range(2):
                e0, e1, e2, e3 = p[r, 0], p[r, 1], p[r, 2], p[r, 3]
                qr = q[r]
                for c in range(co):
                    z0, z1 = _at(e0[c], e1[c], e2[c], e3[c])
                    qr[c, 2 * j], qr[c, 2 * j + 1] = z0 + bias[c], z1 + bias[c]
        _store_rows(q, b, 2 * i, y)


@njit(cache=True)
def _at(m0, m1, m2, m3):
    """A^T (m0, m1, m2, m3): A^T's rows are (1, 1, 1, 0) and (0, 1, -1, -1)."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(cache=True, parallel=True)
def _grad_output_transform(gyt, oy, ox, r0, r1, tw, m, plane):
    """gM[e, t, o] = (A gY A^T)[e] for tile rows [r0, r1) of the channels-last output
    gradients gyt (gY[b, o, 0, 0] at gyt[b, oy, ox, o], zero beyond the real outputs), into the
    flat m laid out as _input_transform's v: the adjoint of _output_transform.
    One job per sample and tile row."""
    nb, co = gyt.shape[0], gyt.shape[3]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        h = np.empty((4, 2, co), np.float32)  # A gY: [row][column][channel]
        for j in range(tw):
            for k in range(2):
                g0, g1 = gyt[b, oy + 2 * i, ox + 2 * j + k], gyt[b, oy + 2 * i + 1, ox + 2 * j + k]
                h0, h1, h2, h3 = h[0, k], h[1, k], h[2, k], h[3, k]
                for c in range(co):
                    h0[c], h1[c], h2[c], h3[c] = _a(g0[c], g1[c])
            t = (job * tw + j) * co
            for r in range(4):
                e0, e1 = h[r, 0], h[r, 1]
                a = 4 * r * plane + t
                w0, w1 = m[a:a + co], m[a + plane:a + plane + co]
                w2, w3 = m[a + 2 * plane:a + 2 * plane + co], m[a + 3 * plane:a + 3 * plane + co]
                for c in range(co):
                    w0[c], w1[c], w2[c], w3[c] = _a(e0[c], e1[c])


@njit(cache=True)
def _a(g0, g1):
    """A (g0, g1): A's rows are (1, 0), (1, 1), (1, -1), (0, -1)."""
    return g0, g0 + g1, g0 - g1, -g1


def _rows_per_block(elems: int, ci: int, co: int, th: int, tw: int, nb: int, budget: int) -> int:
    """Tile rows per block: V and M (elems x (Ci + Co) floats per tile) within budget."""
    return max(1, min(th, budget // (elems * (ci + co) * tw * nb * 4)))


def _grad_budget(elems: int, ci: int, co: int) -> int:
    """weight_grad's budget for V and M: BUDGET, or gU's size if larger. Each block
    adds its product to gU (16 x Co x Ci, 16 MB for 512 x 512 channels), and its
    tiles are the product's inner dimension: with few tiles per block, re-reading
    gU and BLAS's short products cost more than the larger V and M."""
    return max(BUDGET, 4 * elems * co * ci)


def _tiles(sc: "Scheme", ho: int, wo: int) -> tuple[int, int]:
    """Tile rows and columns covering an (Ho, Wo) output."""
    return -(-ho // sc.tile), -(-wo // sc.tile)


def workspace_bytes(ci: int, co: int, ho: int, wo: int, scheme: "Scheme | None" = None) -> int:
    """What conv3x3 allocates for one sample (the padded maps, V and M), its input
    having ci channels or co (the backward's flipped kernel)."""
    sc = scheme or F2
    th, tw = _tiles(sc, ho, wo)
    rows = _rows_per_block(sc.elems, ci, co, th, tw, 1, BUDGET)
    return 4 * (max(ci, co) * _extent(ho) * _extent(wo) + sc.elems * (ci + co) * (rows * tw + 16))


def weight_grad_bytes(ci: int, co: int, ho: int, wo: int, scheme: "Scheme | None" = None) -> int:
    """What weight_grad allocates for one sample: the padded maps, the padded
    output gradient (at most 4 rows and columns beyond _extent), V and M within
    its budget, gU and a part, and gw."""
    sc = scheme or F2
    th, tw = _tiles(sc, ho, wo)
    rows = _rows_per_block(sc.elems, ci, co, th, tw, 1, _grad_budget(sc.elems, ci, co))
    return 4 * (ci * _extent(ho) * _extent(wo) + co * (_extent(ho) + 4) * (_extent(wo) + 4)
                + sc.elems * (ci + co) * (rows * tw + 16) + 2 * sc.elems * co * ci + co * ci * 9)


def conv3x3(x, u, bias, padding, y, remember: bool = False, xt=None) -> None:
    """y (N, Co, Ho, Wo) = the stride-1 3x3 convolution of x (N, Ci, H, W) with the
    transformed kernel u (16 or 36, Ci, Co: its scheme) and bias (Co,), zero
    padding (ph, pw). remember: inside reuse.reuse_sources(), keep x channels last
    for the weight gradient; xt: x channels last and so padded, if already made
    (the input gradient's: grad_layout)."""
    sc = SCHEMES[u.shape[0]]
    co, ho, wo = y.shape[1:]
    for r0, r1, v, m, mflat, mplane in _blocks(sc, x, co, ho, wo, padding, BUDGET, remember, xt):
        products512.batched_matmul(v, u, m)  # (elems, tiles, Ci) @ (elems, Ci, Co)
        sc.output(mflat, mplane, bias, r0, r1, _tiles(sc, ho, wo)[1], y)


def weight_grad(x, gy, padding, scheme: "Scheme | None" = None, gyt=None) -> np.ndarray:
    """gw (Co, Ci, 3, 3), summed over the batch, of the stride-1 3x3 convolution of
    x (N, Ci, H, W) with zero padding (ph, pw) whose output gradient is
    gy (N, Co, Ho, Wo): gU[e] = sum over tiles of gM[e]^T @ V[e], a block of tile
    rows at a time as in conv3x3, then gw = G^T gU G. gyt: grad_layout's, if
    already made (x channels last: the forward pass's, inside reuse_sources())."""
    sc = scheme or F2
    nb, ci = x.shape[:2]
    co, ho, wo = gy.shape[1:]
    tw = _tiles(sc, ho, wo)[1]
    gyt, (oy, ox) = gyt or grad_layout(gy, x.shape[2:], padding)
    gu = np.empty((sc.elems, co, ci), np.float32)
    part = None
    for r0, r1, v, m, mflat, mplane in _blocks(sc, x, co, ho, wo, padding, _grad_budget(sc.elems, ci, co)):
        sc.grad_output(gyt, oy, ox, r0, r1, tw, mflat, mplane)
        if r0 == 0:  # (elems, Co, Ci); gM^T as it lies
            products512.batched_matmul(m.transpose(0, 2, 1), v, gu)
        else:
            part = products512.batched_matmul(m.transpose(0, 2, 1), v, np.empty_like(gu) if part is None else part)
            gu += part
    gw = np.empty((co, ci, 9), np.float32)
    sc.adjoint(gu, gw)
    return gw.reshape(co, ci, 3, 3)


def grad_layout(gy, hw, padding):
    """(gyt, origin): the output gradient gy (N, Co, Ho, Wo) of a stride-1 3x3
    convolution with padding (ph, pw) of an (H, W) = hw input, channels last, as
    both gradients read it: the input gradient's convolution pads it by
    origin = (2 - ph, 2 - pw), and it reaches as far as either scheme's tiles
    of that convolution and of the weight gradient (zero beyond gy). One copy
    for both (each took as long as the input transform)."""
    ph, pw = padding
    ho, wo = gy.shape[2:]
    hp = max(_extent(hw[0]), 2 - ph + 4 * -(-ho // 4))
    wp = max(_extent(hw[1]), 2 - pw + 4 * -(-wo // 4))
    return channels_last(gy, (2 - ph, 2 - pw), hp, wp), (2 - ph, 2 - pw)


def _extent(n: int) -> int:
    """Rows (columns) of the padded, channels-last input for n output rows: as far as
    F(4x4)'s tiles read, which covers F(2x2)'s, so that the forward pass's copy
    (in one scheme) serves the weight gradient (in the other)."""
    return 4 * -(-n // 4) + 2


def _blocks(sc: "Scheme", x, co: int, ho: int, wo: int, padding, budget: int, remember: bool = False,
            xt=None):
    """The tiles of an (Ho, Wo) output of x (N, Ci, H, W), a block of tile rows at a
    time within `budget`: yields (r0, r1, V, M, M's flat buffer, its plane stride)
    with V (elems, n, Ci) already transformed and M (elems, n, Co) to be filled, n
    the block's tiles. The buffers are the same for every block (the last one
    laid out for its shorter n)."""
    nb, ci = x.shape[:2]
    th, tw = _tiles(sc, ho, wo)
    if xt is None:
        hp, wp = _extent(ho), _extent(wo)
        xt = reuse.rearranged(x, ("channels last", tuple(padding), hp, wp),
                              lambda: channels_last(x, padding, hp, wp), remember)
    rows = _rows_per_block(sc.elems, ci, co, th, tw, nb, budget)
    n_max = nb * rows * tw
    vflat = np.empty(sc.elems * (ci * n_max + 16), np.float32)
    mflat = np.empty(sc.elems * (co * n_max + 16), np.float32)
    for r0 in range(0, th, rows):
        r1 = min(th, r0 + rows)
        n = nb * (r1 - r0) * tw
        vplane, v = _planes(vflat, sc.elems, ci, n)
        mplane, m = _planes(mflat, sc.elems, co, n)
        sc.input(xt, r0, r1, tw, vflat, vplane)
        yield r0, r1, v, m, mflat, mplane


@njit(cache=True, parallel=True)
def _adjoint_kernel_transform(gu, gw):
    """gw[o, c] (3x3) = G^T gU[:, o, c] G for gU (16, Co, Ci): the rows of G^T are
    (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0), (0, 1/2, 1/2, 1). One job per output
    channel (numpy on whole planes: 13 ms for 512 x 512 channels)."""
    co, ci = gu.shape[1], gu.shape[2]
    half = np.float32(0.5)
    for o in prange(co):
        t = np.empty((3, 4), np.float32)
        for c in range(ci):
            for b in range(4):  # G^T gU, column b
                s = (gu[4 + b, o, c] + gu[8 + b, o, c]) * half
                t[0, b] = gu[b, o, c] + s
                t[1, b] = (gu[4 + b, o, c] - gu[8 + b, o, c]) * half
                t[2, b] = gu[12 + b, o, c] + s
            g = gw[o, c]
            for i in range(3):  # (G^T gU) G, row i
                s = (t[i, 1] + t[i, 2]) * half
                g[3 * i] = t[i, 0] + s
                g[3 * i + 1] = (t[i, 1] - t[i, 2]) * half
                g[3 * i + 2] = t[i, 3] + s


def _planes(flat, elems: int, channels: int, n: int):
    """(plane stride, (elems, n, channels) view of flat): elems matrices of n tiles x
    channels, each plane one cache line further than a packed layout: planes a
    multiple of 4 KB apart (64 x 784 floats, say) put the runs a tile reads or
    writes in the same L1 set, and the transforms ran at a third of their speed.
    (Tiles first, each tile's planes together, made no difference.)"""
    plane = channels * n + 16
    return plane, flat[:elems * plane].reshape(elems, plane)[:, :channels * n].reshape(elems, n, channels)


class Scheme(NamedTuple):
    """One Winograd F(m x m, 3x3): its tile and the kernels that transform for it."""
    name: str  # the algorithm's name (conv.choose_shape's answer)
    tile: int  # outputs per tile side, m
    elems: int  # (m + 2)^2: entries of a transformed tile, products per tile
    kernel: Callable  # (taps (9, rows, columns), u): U = G g G^T
    input: Callable  # (xt, r0, r1, tw, v, plane): V = B^T d B
    output: Callable  # (m, plane, bias, r0, r1, tw, y): y = A^T M A + bias
    grad_output: Callable  # (gyt, oy, ox, r0, r1, tw, m, plane): gM = A gY A^T
    adjoint: Callable  # (gU, gw): gw = G^T gU G
    kernels: tuple  # what the forward runs (coldstart.ready)
    grad_kernels: tuple  # what weight_grad runs


F2 = Scheme("winograd", 2, 16, _kernel_transform, _input_transform, _output_transform, _grad_output_transform,
            _adjoint_kernel_transform,
            (_channels_last, _input_transform, _output_transform, _taps, _kernel_transform),
            (_channels_last, _input_transform, _grad_output_transform, _adjoint_kernel_transform))
_w4 = winograd4
F4 = Scheme("winograd4", 4, 36, _w4._kernel_transform, _w4._input_transform, _w4._output_transform,
            _w4._grad_output_transform, _w4._adjoint_kernel_transform,
            (_channels_last, _w4._input_transform, _w4._output_transform, _taps, _w4._kernel_transform),
            (_channels_last, _w4._input_transform, _w4._grad_output_transform, _w4._adjoint_kernel_transform))
SCHEMES = {16: F2, 36: F4, F2.name: F2, F4.name: F4}  # by transformed-tile size or by name
NAMES = (F2.name, F4.name)
