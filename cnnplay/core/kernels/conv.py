"""2D convolution (1D runs as height 1): one entry point, `conv2d`.

Every case is reduced to the same form. The zero-padded input is split by
stride phase into `sh*sw` phase images, all of one common size Hq x Wq and
flattened into `src` (phases, Ci, L); with stride 1 across, neighbouring rows
share their padding column (Wq = W + pw: a row's right padding is the next
row's left). On the "full grid" of Ho rows of Wq
columns (the last Wq - Wo columns of each row are discarded), output position
n = oy*Wq + ox of channel co is then

    y[co, n] = b[co] + sum_k wt[k, co] * src_flat[off[k] + n]

over the Ci*kh*kw taps k: each tap reads a *contiguous* run of the source, for
any stride, padding and dilation. One parallel kernel evaluates it: a job is a
block of 4 output channels x ~1280 positions; the accumulators stay near L1 and
each pass over them applies 3 taps with 12 weights held in registers, a
unit-stride loop the compiler turns into AVX-512/AVX2 FMAs. What is chosen per
layer shape: the phase split (stride > 1; stride 2, the common case, by a
vectorized deinterleave), the chunk of positions per job (even chunks, enough
jobs for every thread), and zero padding of channels to blocks of 4 and of
taps to blocks of 3. Where the CPU has AVX-512, direct512.py evaluates the same
sum with its accumulators in registers (8 channels x 48 positions) from 8
output channels and 36 taps.

Batches: the samples' sources are laid end to end (sample b's full grid
starts at position b*length; with stride 1 down a sample's bottom padding rows
are the next one's top padding rows), so a batch is just more positions of the
same reduction, in the same kernel; the few positions between two samples are
computed and dropped by the store.

Four algorithms, chosen per layer shape by `choose` (the single-sample path,
the batched path and the backward's gradients all ask it):

- "direct" (above): few channels (< 64 in or out, except 3x3 layers with 32+
  over many positions, below), and channel-heavy layers whose im2col would be
  large next to their input (5x5+ kernels, dilated ones that Winograd does
  not take, 64-channel stride-2 ones; see choose_shape). Its 4-channel x
  3-tap block is full, and no column buffer is needed.
- "gemm": 64+ input and output channels, 1x1 or (from 128 out and 128^2 in x
  out channels) 3x3 with stride 2. im2col of the real output positions only (per tap, one
  contiguous copy per output row, `_gather`; the full grid's extra columns
  would be 14-37 % more columns on 7-14 px maps), then numpy's matmul (BLAS,
  a packed, cache-blocked micro-kernel) per block of columns, then the store. The column buffer is
  bounded (`gemm_budget`: half the layer's output maps, 4 to 8 MB) by
  splitting positions and, for many channels on small maps, input channels
  (`column_blocks`), so peak memory stays about the maps. 1x1 convolutions
  without padding skip im2col: the input (with a stride, every stride-th
  pixel of it) is its own column matrix. The training engine's gradients are
  the transposed products (grad.py: gW = gY X^T; gX = W^T gY, added back onto
  the phase images by col2im; that input gradient also serves layers the
  forward runs directly, from 64 channels with a stride: choose_input_grad).
- "winograd4" / "winograd": 64+ input and output channels (32+ with 2048+
  output positions in the call: batch x map), 3x3, stride 1, no
  dilation (or one that divides the padding: the undilated layer on the
  phase sub-images, atrous.py): Winograd F(4x4, 3x3) up to WINOGRAD4_MAX channels (4x fewer
  multiply-adds; with 64-128 channels the products are short for BLAS and the
  transforms' memory traffic dominates, which F(4x4) cuts per output), F(2x2,
  3x3) beyond (2.25x fewer, more exact; long products, where its cheaper
  transforms win), winograd.py; the training engine's gradients of such
  layers follow the forward's scheme.
- "winograd_s2": 3x3 with stride 2 (ResNet's downsampling layers), 128+
  channels and enough work per call: 2x2 output tiles from 5x5 inputs, 0.69x
  the multiply-adds of im2col (winograd_s2.py), forward and both gradients.

Weights are packed (transposed, padded / reshaped) once per parameter version
(`cached`: the network passes its version with the parameters), not per call.

BLAS threads and numba's threads never compute at the same time (every call
is sequential under the launch lock); what remains is the busy-wait of
whichever pool ran last, see kernels/__init__.py.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np
from numba import njit, prange

from ..geometry import window_output
from . import atrous, blas, numpy_path, tuning, winograd, winograd_s2
from .coldstart import ready
from .launch import one_at_a_time, sized
from .reuse import rearranged
from .vectors import aligned_rows, wide_vectors

_FM = {"contract"}


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def winograd_geometry(kh: int, kw: int, stride, dilation, padding) -> bool:
    """3x3, stride 1, no dilation, or a dilation that divides the padding (run
    as the undilated layer on the phase sub-images, atrous.py): Winograd
    F(2x2, 3x3) applies."""
    return kh == kw == 3 and tuple(stride) == (1, 1) and (
        tuple(dilation) == (1, 1) or atrous.applies((kh, kw), stride, padding, dilation))


@lru_cache(maxsize=256)
def _plan(*geometry) -> "_Plan":
    """The (immutable) plan of one layer geometry, computed once."""
    return _Plan(*geometry)


class _Plan:
    """Geometry of one convolution in the phase-split, full-grid form."""

    def offsets(self, nb: int, direct: bool = False) -> np.ndarray:
        """Where each tap's run starts in the flat source of a batch of nb (rows of
        nb*length floats): in PyTorch's weight order, or in the direct kernel's
        (`direct_order`)."""
        off = self._offsets.get((nb, direct))
        if off is None:
            off = self.rows * self.columns(nb) + self.taps
            if direct:
                off = off[self.direct_order]
            if len(self._offsets) < 8:
                self._offsets[nb, direct] = off
        return off

    def columns(self, nb: int) -> int:
        """The source's row length for a batch of nb: sample b starts at b*length."""
        return (nb - 1) * self.length + self.span

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
        # with stride 1 across, a row's right padding is the next row's left padding
        # (rows W + pw apart, not W + 2pw): a tap left of column 0 reads this row's
        # zeros, one right of column W - 1 the next row's. Fewer positions on small
        # maps (8 px, padding 1: 9 columns instead of 10)
        self.wq = max(w + pw, self.wo) if sw == 1 else -(-wp // sw)
        ky, kx = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
        ky, kx = ky.ravel(), kx.ravel()
        tap_off = (ky // sh) * self.wq + kx // sw
        tap_phase = (ky % sh) * sw + kx % sw
        self.n = self.ho * self.wq  # full-grid positions
        # the source columns one sample needs: its padded phase images, or as far as
        # its last position's taps read
        self.span = max(self.hq * self.wq, int(tap_off.max()) + self.n)
        # where each sample of a batch starts (columns apart). With stride 1 down,
        # neighbouring samples share their padding rows (H + ph rows apart, not
        # H + 2ph and the taps' reach): a sample's bottom padding is the next one's
        # top padding, as with the columns above, and the real outputs never read
        # past it. Fewer positions on small maps (8 px, padding 1, batch 8: 81 per
        # sample instead of 92)
        self.length = max(h + ph, self.ho) * self.wq if sh == 1 else self.span
        ci_idx = np.arange(ci)
        # tap k = ci*kh*kw + t (PyTorch's weight order) reads source row rows[k] at
        # offset taps[k]; padded to whole blocks of the direct kernel (a padded tap
        # reads row 0, offset 0, with weight 0)
        kpad = padded_taps(ci * kh * kw)
        self.rows = np.zeros(kpad, np.int64)
        self.taps = np.zeros(kpad, np.int64)
        self.rows[:ci * kh * kw] = (tap_phase[None, :] * ci + ci_idx[:, None]).ravel()
        self.taps[:ci * kh * kw] = np.broadcast_to(tap_off[None, :], (ci, kh * kw)).ravel()
        self.maxoff = int(tap_off.max())
        # the direct kernel's tap order: by stride phase, then channel, then offset, so
        # that a pass's three taps read one phase image (with stride 2 PyTorch's order
        # reads two per pass: 1.1x the time); stride 1 keeps PyTorch's order (padded
        # taps stay last)
        k = ci * kh * kw
        order = np.lexsort((self.taps[:k], self.rows[:k] % ci, self.rows[:k] // ci))
        self.direct_order = np.concatenate([order, np.arange(k, kpad)])
        self.direct_key = ("direct", ci, kh, kw, stride, dilation)  # what the order depends on
        self._offsets = {}
        self.runs = {}  # real_runs' answers, by (first position, positions)
        self.phases = sh * sw
        self.k = ci * kh * kw
        self.ntap = kh * kw
        # 1x1, no padding: the columns are the input itself, or every stride-th
        # pixel of it (pointwise_input)
        self.pointwise = kh == kw == 1 and ph == pw == 0
        self.winograd = winograd_geometry(kh, kw, stride, dilation, padding)
        # the stride-2 Winograd scheme's tiles per output position, None where it does not apply
        self.strided_spill = (winograd_s2.spill(self.ho, self.wo)
                              if winograd_s2.applies((kh, kw), stride, dilation) else None)
        self.dilated = (dh, dw) != (1, 1)
        self.geometry = (ci, h, w, kh, kw, stride, padding, dilation)  # the key of a measured choice (tuning.py)


@njit(cache=True, parallel=True)
def _make_source(x, sh, sw, ph, pw, hq, wq, length, per_job, out):
    """out (phases*Ci, plan.columns(N)): the zero-padded maps x (N, Ci, H, W) split by
    stride phase and flattened, sample b's phase images from column b*length of every
    row (with stride 1 down they overlap the next sample's in padding rows, zeros
    in both; see _Plan).

    Phase (py, px) of channel c is row (py*sw + px)*Ci + c; its pixel (i, j) is
    padded-input pixel (i*sh + py, j*sw + px). A job is per_job channels of one
    sample and stride row (source_channels): a job per channel, each allocating
    its row buffer, took 1.3-1.7x the time with 64-256 channels on 14-56 px maps."""
    nb, ci = x.shape[0], x.shape[1]
    blocks = (ci + per_job - 1) // per_job
    for job in prange(nb * sh * blocks):
        b = job // (sh * blocks)
        rest = job - b * sh * blocks
        py = rest // blocks
        c0 = (rest - py * blocks) * per_job
        tmp = np.zeros(sw * wq, np.float32)  # one padded input row (borders stay 0)
        for c in range(c0, min(ci, c0 + per_job)):
            # the last sample's columns run to the end of the row
            _source_rows(x[b], c, py, sh, sw, ph, pw, hq, wq, b * length,
                         length if b < nb - 1 else out.shape[1] - b * length, tmp, out)


@njit(cache=True)
def _zero(d):
    for j in range(d.shape[0]):
        d[j] = 0.0


@njit(cache=True)
def _source_rows(x, c, py, sh, sw, ph, pw, hq, wq, col0, length, tmp, out):
    """All phases (py, 0..sw-1) of channel c of one sample x (Ci, H, W), into
    columns [col0, col0 + hq*wq) of out, and zeros up to col0 + length.

    Every destination is a slice of one row of `out` (a contiguous run): a
    column block out[:, col0:...] taken first would be a strided 2D view whose
    row slices numba cannot vectorise (the copies ran scalar, 2x the time)."""
    ci, h, w = x.shape
    r0 = py * sw * ci + c  # row of phase (py, 0); phase (py, px) is r0 + px*ci
    for px in range(sw):
        _zero(out[r0 + px * ci, col0 + hq * wq:col0 + length])
    for i in range(hq):
        yy = i * sh + py - ph
        base = col0 + i * wq
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
def _direct(src, off, wt, bias, nchunk, ho, wq, wo, seg, n_total, y):
    """y (N, Co, ho, wo) from the flat source; wt (K, Co_pad), K a multiple of
    TAPS and Co_pad of CHANNELS, bias (Co_pad,) (the wrapper pads with zeros).
    Sample b's full grid starts at position b*seg: the batch is more positions
    of the same reduction (the positions between samples are computed and
    dropped).

    One job: 4 output channels x nchunk positions. The accumulators (4 rows)
    stay in L1; each pass over them applies 3 taps, so every 3 source loads
    feed 12 multiply-adds. The block is 4 x 3 because its 12 weights, 3 source
    vectors and the accumulator being updated fill AVX2's 16 vector registers
    exactly: with 4 x 4 (16 weights) or 8 x 4 the compiler spilled weights to
    the stack, a load per multiply-add, and 4 x 3 ran at 0.88-0.91x the time of
    4 x 4 on every 3x3 and 7x7 layer of the bench (Zen 3). For a 3x3 kernel a
    pass is one kernel row of one channel: its three runs share cache lines.
    The first pass starts from the bias instead of zeros. The pass is written
    out here, like the input gradient's in grad._grad_input_direct, not shared
    through an njit helper: called once per pass, such a helper ran 1.2-1.3x
    the time.

    Where the CPU has AVX-512 the loop runs on 512-bit vectors (vectors.py), its
    accumulator rows aligned to 64 bytes: on an Intel Xeon 0.83-0.91x the 256-bit
    kernel's time on five of six layers (16-64 channels, 3x3 and 7x7, stride 1
    and 2; 0.99x on 3 -> 16 channels), one process, alternating; unaligned,
    1.05-1.16x."""
    k_total = off.shape[0]
    co = y.shape[1]
    nblk = wt.shape[1] // 4
    nch = (n_total + nchunk - 1) // nchunk
    for job in prange(nblk * nch):
        wide_vectors()
        # consecutive jobs share a chunk of positions (its source stays in
        # L2 while all channel blocks use it)
        ch = job // nblk
        c0 = (job - ch * nblk) * 4
        n0 = ch * nchunk
        nc = min(nchunk, n_total - n0)
        # rows padded by 16 floats: rows 4 KB apart would share L1 sets
        acc = aligned_rows(4, nchunk + 16)
        a0 = acc[0, :nc]
        a1 = acc[1, :nc]
        a2 = acc[2, :nc]
        a3 = acc[3, :nc]
        b0 = bias[c0]
        b1 = bias[c0 + 1]
        b2 = bias[c0 + 2]
        b3 = bias[c0 + 3]
        for j in range(nc):
            a0[j] = b0
            a1[j] = b1
            a2[j] = b2
            a3[j] = b3
        for k in range(0, k_total, 3):
            s0 = src[off[k] + n0:off[k] + n0 + nc]
            s1 = src[off[k + 1] + n0:off[k + 1] + n0 + nc]
            s2 = src[off[k + 2] + n0:off[k + 2] + n0 + nc]
            # single elements, not slices unpacked: fewer instructions per pass
            w00 = wt[k, c0]
            w01 = wt[k, c0 + 1]
            w02 = wt[k, c0 + 2]
            w03 = wt[k, c0 + 3]
            w10 = wt[k + 1, c0]
            w11 = wt[k + 1, c0 + 1]
            w12 = wt[k + 1, c0 + 2]
            w13 = wt[k + 1, c0 + 3]
            w20 = wt[k + 2, c0]
            w21 = wt[k + 2, c0 + 1]
            w22 = wt[k + 2, c0 + 2]
            w23 = wt[k + 2, c0 + 3]
            for j in range(nc):
                v0 = s0[j]
                v1 = s1[j]
                v2 = s2[j]
                a0[j] = a0[j] + w00 * v0 + w10 * v1 + w20 * v2
                a1[j] = a1[j] + w01 * v0 + w11 * v1 + w21 * v2
                a2[j] = a2[j] + w02 * v0 + w12 * v1 + w22 * v2
                a3[j] = a3[j] + w03 * v0 + w13 * v1 + w23 * v2
        _store(acc, c0, min(4, co - c0), n0, nc, ho, wq, wo, seg, y)


@njit(cache=True)
def _store(acc, c0, nco, n0, nc, ho, wq, wo, seg, y):
    """Copy acc[:nco, :nc] (positions n0...) into y (N, Co, ho, wo): position n is
    full-grid position r = n - b*seg of sample b = n // seg; rows past ho and
    columns past wo are dropped."""
    n = n0
    end = n0 + nc
    grid = ho * wq
    while n < end:
        b = n // seg
        r = n - b * seg
        if r >= grid:  # between two samples
            n = min(end, (b + 1) * seg)
            continue
        oy = r // wq
        ox = r - oy * wq
        run = min(wq - ox, end - n)
        if ox < wo:
            m = min(run, wo - ox)
            j0 = n - n0
            for c in range(nco):
                dst = y[b, c0 + c, oy, ox:ox + m]
                a = acc[c, j0:j0 + m]
                for j in range(m):
                    dst[j] = a[j]
        n += run


@njit(cache=True, parallel=True)
def _store_real(out, r0, nc, bias, y3):
    """y3 (N, Co, Ho*Wo) at real positions r0 ... r0+nc-1 (r = b*Ho*Wo + p) = out[:, :nc]
    (a GEMM block's product, `_gather`'s order) + bias (Co,), added in the copy
    rather than in a pass of its own: per channel, one run per sample."""
    nb, co, hw = y3.shape
    end = r0 + nc
    for c in prange(co):
        src = out[c]
        bc = bias[c]
        r = r0
        while r < end:
            b = r // hw
            p = r - b * hw
            m = min(hw - p, end - r)
            d = y3[b, c, p:p + m]
            s = src[r - r0:r - r0 + m]
            for j in range(m):
                d[j] = s[j] + bc
            r += m


@njit(cache=True, parallel=True)
def _gather(src, off, runs, cols):
    """im2col of the real output positions: cols[k, j:j+m] = src[off[k] + n : ... + m]
    for each run (j, n, m) of `real_runs`. Rows of cols past off's are left alone."""
    for k in prange(off.shape[0]):
        a = off[k]
        d = cols[k]
        for q in range(runs.shape[1]):
            j, n, m = runs[0, q], a + runs[1, q], runs[2, q]
            dd = d[j:j + m]
            ss = src[n:n + m]
            for i in range(m):
                dd[i] = ss[i]


def real_runs(r0: int, nc: int, plan) -> np.ndarray:
    """(3, runs) int64: the real output positions r0 ... r0+nc-1 of a batch
    (r = (b*Ho + oy)*Wo + ox, the GEMM paths' column order) as runs (j, n, m): m
    positions from column j of a block, at full-grid position n = b*length + oy*Wq
    + ox on. One run per output row: the full grid's extra columns and the gaps
    between samples stay out of the products (on 7-14 px maps with a stride
    they were 14-37 % of the columns). Kept by the plan for the next call (its
    numpy arithmetic took 25 us, 3 % of a 128->256 layer's call on 14x14
    outputs); the kernels only read it."""
    runs = plan.runs.get((r0, nc))
    if runs is None:
        runs = _real_runs(r0, nc, plan)
        if len(plan.runs) < 16:
            plan.runs[r0, nc] = runs
    return runs


def _real_runs(r0: int, nc: int, plan) -> np.ndarray:
    ho, wo = plan.ho, plan.wo
    row = np.arange(r0 // wo, (r0 + nc - 1) // wo + 1)  # b*Ho + oy
    start = np.maximum(row * wo, r0)
    end = np.minimum((row + 1) * wo, r0 + nc)
    b = row // ho
    return np.stack([start - r0, b * plan.length + (row - b * ho) * plan.wq + start - row * wo, end - start])


def conv2d(x, w, b, stride=(1, 1), padding=(0, 0), dilation=(1, 1), version=None) -> np.ndarray:
    """PyTorch Conv2d (zero padding, batch 1): x (Ci, H, W), w (Co, Ci, kh, kw), b (Co,) or None.
    version: a key that changes whenever w or b change (the network's parameter
    version): the packed weights are then kept for the next call."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"conv2d: input {x.shape} is not a (C, H, W) map")
    return conv2d_batch(x[None], w, b, stride, padding, dilation, version)[0]


@one_at_a_time
def conv2d_batch(x, w, b, stride=(1, 1), padding=(0, 0), dilation=(1, 1), version=None,
                 algorithm=None, remember_source=True) -> np.ndarray:
    """PyTorch Conv2d on a batch: x (N, Ci, H, W) -> (N, Co, Ho, Wo).
    algorithm: None (chosen per layer shape, see `choose`), "direct", "gemm", "winograd"
    or "winograd4" (3x3, stride 1, no dilation), "winograd_s2" (3x3, stride 2, no dilation).
    remember_source: inside `reuse_sources()`, keep x rearranged (its source, or
    channels last for Winograd) for the weight gradient."""
    from . import direct512  # (it stores through _store, below)
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    if x.ndim != 4 or w.ndim != 4 or w.shape[1] != x.shape[1] or x.shape[0] < 1:
        raise ValueError(f"conv2d: input {x.shape} and weight {w.shape} do not match")
    co, ci, kh, kw = w.shape
    nb = x.shape[0]
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    plan = _plan(ci, x.shape[2], x.shape[3], kh, kw, stride, padding, dilation)
    algo = algorithm or choose(plan, co, nb)
    scheme = winograd.SCHEMES.get(algo)
    if scheme is not None and not plan.winograd:
        raise ValueError(f"conv2d: Winograd takes 3x3 kernels with stride 1 and no dilation (or one that divides "
                         f"the padding), not {kh}x{kw}, stride {stride}, padding {padding}, dilation {dilation}")
    if algo == winograd_s2.NAME and plan.strided_spill is None:
        raise ValueError(f"conv2d: strided Winograd takes 3x3 kernels with stride 2 and no dilation, not "
                         f"{kh}x{kw}, stride {stride}, dilation {dilation}")
    if scheme is not None and plan.dilated:  # the undilated layer on the phase sub-images
        xs = atrous.input_sub_images(x, dilation, remember_source)
        ys = conv2d_batch(xs, w, b, (1, 1), atrous.sub_padding(padding, dilation), (1, 1), version, algo,
                          remember_source)
        return atrous.from_batch(ys, dilation, nb, plan.ho, plan.wo)
    y = np.empty((nb, co, plan.ho, plan.wo), np.float32)
    if algo == "gemm" and plan.pointwise:  # 1x1, no padding: x is its own im2col
        wmat, bias = _packed(w, b, version, "gemm")
        blas.batched_matmul(wmat, pointwise_input(x, stride).reshape(nb, ci, -1), y.reshape(nb, co, -1))
        if b is not None:  # numpy's add: a parallel numba kernel here made these layers 1.3-1.8x slower
            y += bias[:co, None, None]
        return y
    make_source = sized(_make_source, plan.phases * ci * plan.columns(nb), 1 << 19)
    n_total = (nb - 1) * plan.length + plan.n
    blocked = direct512.applies(co, n_total, plan.k)  # the direct kernel with its sums in registers
    needs = scheme.kernels if scheme is not None else {
        "gemm": (_gather, _store_real), winograd_s2.NAME: winograd_s2.KERNELS}.get(
            algo, (direct512._conv,) if blocked else (_direct,))
    if not ready(make_source, *needs):
        for i in range(nb):  # still compiling (first start): numpy meanwhile
            y[i] = numpy_path.conv2d(x[i], w, b, stride, padding, dilation)
        return y
    if scheme is not None:
        u, bias = cached(version, algo, w, lambda: (winograd.kernel_transform(w, scheme=scheme), _bias(b, co)))
        winograd.conv3x3(x, u, bias, padding, y, remember=remember_source)
        return y
    if algo == winograd_s2.NAME:
        winograd_s2.conv3x3(x, strided_transform(w, version), _bias(b, co), padding, y, remember=remember_source)
        return y
    src = _source(x, plan, stride, padding, remember=remember_source)
    if algo == "gemm":
        wmat, bias = _packed(w, b, version, "gemm")
        _gemm(src, plan, wmat, bias, nb, y)
    elif blocked:
        wt, bias = _packed(w, b, version, (*plan.direct_key, direct512.CHANNELS), plan.direct_order,
                           direct512.CHANNELS)
        direct512.conv(src, plan.offsets(nb, direct=True)[:plan.k], wt, bias, plan.ho, plan.wq, plan.wo,
                       plan.length, n_total, y)
    else:
        wt, bias = _packed(w, b, version, plan.direct_key, plan.direct_order)
        _direct(src, plan.offsets(nb, direct=True), wt, bias, _chunk(n_total, wt.shape[1] // CHANNELS), plan.ho,
                plan.wq, plan.wo, plan.length, n_total, y)
    return y


def strided_transform(w, version) -> np.ndarray:
    """The stride-2 Winograd transform of w, once per parameter version (the forward
    pass and both gradients share it)."""
    return cached(version, winograd_s2.NAME, w, lambda: (winograd_s2.kernel_transform(w),))[0]


def pointwise_input(x, stride) -> np.ndarray:
    """The columns of a 1x1 convolution without padding, x (N, Ci, H, W): x itself,
    or with a stride every stride-th pixel of it, contiguous (ResNet's stride-2
    shortcuts: one strided copy of a quarter of x instead of four phase images
    and an im2col, 0.6-0.7x the time)."""
    sh, sw = stride
    return x if sh == sw == 1 else np.ascontiguousarray(x[:, :, ::sh, ::sw])


def source_channels(rows: int, ci: int) -> int:
    """Channels per job of _make_source for `rows` (samples x stride rows) of ci
    channels: up to 8, while 16 jobs are left to share between threads."""
    return max(1, min(8, rows * ci // 16))


def _source(x, plan, stride, padding, remember=False) -> np.ndarray:
    """The flat phase-split source of a batch x (N, Ci, H, W); inside `reuse_sources()`
    the one built (with remember=True) for the same x and geometry."""
    def make():
        src = np.empty((plan.phases * x.shape[1], plan.columns(x.shape[0])), np.float32)
        make_source = sized(_make_source, src.size, 1 << 19)
        make_source(x, stride[0], stride[1], padding[0], padding[1], plan.hq, plan.wq, plan.length,
                    source_channels(x.shape[0] * stride[0], x.shape[1]), src)
        return src.reshape(-1)
    return rearranged(x, plan, make, remember)


# -- the GEMM formulation ------------------------------------------------------------

GEMM_FLOOR = 4 << 20  # bytes of columns a GEMM layer may always take (see gemm_budget)


def gemm_budget(map_bytes: int) -> int:
    """Bytes the im2col columns may take: half the layer's output maps (which
    exist anyway), between 4 MB and 8 MB, so that a pass's peak memory stays
    about the size of its maps. The floor is what BLAS needs: a channel-heavy
    layer on small maps has small maps but long columns (128->256 at 28x28,
    stride 2: 200 KB of output, 1 MB of columns), and with a 256 KB floor its
    product ran in 4-8 blocks of 256 positions and partial sums, 1.4-2.2x the
    time of one or two blocks. 4 MB rather than 2: layers with 2-4 MB of
    columns (256->512 at 14x14 and batch 4, 128->256 at 28x28 and batch 4,
    stride 2) then take one product, 0.87-0.96x the time of two (forward and
    training, one process)."""
    return int(min(max(map_bytes // 2, GEMM_FLOOR), 8 << 20))


def _block_size(k: int, ntap: int, n_total: int, budget: int) -> tuple[int, int]:
    """(positions, rows) of one block of the K x n_total column matrix (column_blocks)."""
    nc = budget // (4 * k) // 64 * 64
    if nc >= 128:
        kc = k
        # blocks of even size: 196 positions in blocks of 192 left a product of 4
        # columns that read all the weights again
        blocks = -(-n_total // nc)
        nc = min(nc, -(-n_total // (16 * blocks)) * 16)
    else:
        nc = 256
        kc = min(k, max(ntap, budget // (4 * nc) // ntap * ntap))
    return min(nc, -(-n_total // 64) * 64), kc


def column_blocks(k: int, ntap: int, n_total: int, budget: int):
    """(n0, nc, k0, k1) blocks of the K x n_total column matrix, each at most
    `budget` bytes: whole columns (all K rows) for chunks of >= 128 positions
    when they fit, else fewer rows (whole input channels, ntap rows each) for
    chunks of 256 positions: many channels on small maps keep GEMM shapes that
    BLAS runs at speed. The row blocks of one chunk come one after another,
    k0 = 0 first."""
    nc, kc = _block_size(k, ntap, n_total, budget)
    for n0 in range(0, n_total, nc):
        for k0 in range(0, k, kc):
            yield n0, min(nc, n_total - n0), k0, min(k, k0 + kc)


def gemm_workspace_bytes(k: int, ntap: int, n_total: int, co: int, map_bytes: int) -> int:
    """What the GEMM formulation allocates besides its output: one block of columns
    (no more than the columns need) and two Co x positions products (the block's and
    a partial sum's), or for the weight gradient a Co x K partial sum."""
    nc, kc = _block_size(k, ntap, n_total, gemm_budget(map_bytes))
    return 4 * (kc * nc + max(2 * co * nc, co * k))


def _gemm(src, plan, wmat, bias, nb, y):
    """y from the flat source by im2col + numpy matmul (BLAS), in blocks so that
    the column buffer stays within gemm_budget: per block of real output
    positions, cols = the runs of its taps (`_gather`), out += W[:, block] @ cols,
    then out is stored into the maps."""
    k, co = plan.k, wmat.shape[0]
    n_real = nb * plan.ho * plan.wo
    budget = gemm_budget(y.nbytes)
    off = plan.offsets(nb)[:k]
    nc, kc = _block_size(k, plan.ntap, n_real, budget)
    buf = np.empty(kc * nc, np.float32)
    out = part = None
    y3 = y.reshape(nb, co, -1)
    for r0, nc, k0, k1 in column_blocks(k, plan.ntap, n_real, budget):
        cols = buf[:(k1 - k0) * nc].reshape(k1 - k0, nc)
        if k0 == 0:  # the blocks of rows of these positions follow
            runs = real_runs(r0, nc, plan)
        _gather(src, off[k0:k1], runs, cols)
        if out is None or out.shape[1] != nc:
            out = np.empty((co, nc), np.float32)
            part = np.empty((co, nc), np.float32) if k1 - k0 < k else None
        if k0 == 0:
            np.matmul(wmat[:, k0:k1], cols, out=out)
        else:
            np.matmul(wmat[:, k0:k1], cols, out=part)
            out += part
        if k1 == k:
            _store_real(out, r0, nc, bias, y3)


# -- which algorithm, and the packed weights ---------------------------------------

CHANNEL_HEAVY = 64  # input and output channels from which a layer goes to BLAS


def choose(plan, co: int, nb: int = 1, allow_winograd: bool = True) -> str:
    """"winograd4", "winograd", "winograd_s2", "gemm" (im2col + BLAS) or "direct" for
    one layer shape: the one a training step measured fastest on this machine
    (tuning.py), else the rules' (choose_shape). allow_winograd=False: Winograd is
    not offered (the weight gradient's choice while Winograd's gradient kernels
    are still compiling); such a layer takes the GEMM formulation meanwhile."""
    tuned = tuning.decision(tuning.key(plan, co, nb))
    if tuned is not None and (allow_winograd or tuned in ("direct", "gemm")):
        return tuned
    algo = rules(plan, co, nb, allow_winograd)
    if algo in winograd.NAMES and not allow_winograd:
        return "gemm"
    return algo


def rules(plan, co: int, nb: int, allow_winograd: bool = True) -> str:
    """choose_shape's answer for a plan's layer with co output channels at batch nb
    (the stride-2 Winograd scheme only offered with allow_winograd)."""
    return choose_shape(plan.k // plan.ntap, co, plan.winograd, plan.ntap, plan.phases, nb * plan.ho * plan.wo,
                        plan.dilated, plan.strided_spill if allow_winograd else None)


TUNE_WORK = 1 << 24  # multiply-adds of a call from which its training step measures the candidates
TUNE_NARROW = 16  # channels (in and out) from which a layer has candidates besides the rules' choice


def candidates(plan, co: int, nb: int) -> tuple:
    """The algorithms a training step of this shape times (tuning.py): the rules'
    choice first, then the alternatives (`alternatives`) when the call has
    TUNE_WORK multiply-adds (below, the measurement would cost more than it saves)."""
    first = rules(plan, co, nb)
    if nb * plan.ho * plan.wo * plan.k * co < TUNE_WORK:
        return (first,)
    ci = plan.k // plan.ntap
    return tuple(dict.fromkeys((first, *alternatives(ci, co, plan.winograd, plan.ntap, plan.strided_spill))))


def alternatives(ci: int, co: int, winograd: bool, taps: int, strided_spill: float | None) -> tuple:
    """The algorithms besides the rules' choice that a layer shape takes and that won
    somewhere (from TUNE_NARROW channels in and out): for 3x3 stride-1 geometry both
    Winograd schemes and the direct kernel, for 3x3 stride 2 the direct kernel,
    GEMM and the stride-2 scheme, for 1x1 the direct kernel and GEMM; not the
    direct kernel from 128 channels in and out (2-4x Winograd's or BLAS's time
    there, on every machine measured). The memory rule (layers.py) bounds all."""
    if min(ci, co) < TUNE_NARROW:
        return ()
    direct = ("direct",) if min(ci, co) < 2 * CHANNEL_HEAVY else ()
    if winograd:
        return ("winograd4", "winograd", *direct)
    if strided_spill is not None:
        return (*direct, "gemm", winograd_s2.NAME)
    if taps == 1:
        return (*direct, "gemm")
    return ()


WINOGRAD4_MAX = 128  # channels (in and out) up to which a Winograd layer takes F(4x4)
GEMM_EXPANSION = 2.25  # im2col's growth (taps per stride phase) up to which wide layers take BLAS
GEMM_WIDE = 128  # such a layer (3x3 with stride 2) takes BLAS from GEMM_WIDE out and GEMM_WIDE^2 in x out channels
WINOGRAD_NARROW = 32  # channels (in and out) from which a 3x3 layer over many positions takes Winograd
WINOGRAD_POSITIONS = 2048  # output positions of a call (batch x map) that such a layer needs
STRIDED_WIDE = 128  # channels (in or out) from which a stride-2 3x3 layer may take Winograd (winograd_s2)
STRIDED_WORK = 1 << 23  # output positions x in x out channels of a call from which it does
STRIDED_SPILL = 1.2  # at most this many tile positions per output position (7x7 outputs: 1.31)


def choose_shape(ci: int, co: int, winograd: bool, taps: int, phases: int = 1, positions: int | None = None,
                 dilated: bool = False, strided_spill: float | None = None) -> str:
    """`choose` from the channel counts, whether the geometry takes Winograd
    (winograd_geometry), the kernel's taps, the stride's phases, the output
    positions of the call (batch x map; None: as many as a batch may have,
    what the memory rule, layers.py, asks), whether the layer is dilated and,
    for a stride-2 3x3 layer, its strided Winograd tiles' positions per output
    position (_Plan.strided_spill; None for other layers).

    The direct kernel wins with few channels (its 4 x 3 register block is full
    and it needs no column buffer); channel-heavy 3x3 layers with stride 1 (most
    of VGG- and ResNet-like models) run as Winograd F(4x4, 3x3) or F(2x2, 3x3).
    Other channel-heavy layers go to BLAS where im2col costs little next to the
    product: its columns are taps / phases times the phase-split source (1x1: 1,
    3x3 with stride 2: 2.25, 3x3 with dilation 2: 9, 5x5: 25). 1x1 layers from
    64 channels, 3x3 stride-2 ones from 128 (0.79-1.17x PyTorch's time at 128-512
    channels on 14-56 px, where the direct kernel took 1.13-1.67x); 5x5 layers
    stay on the direct kernel (0.93-1.40x PyTorch's time, GEMM 1.17-1.75x), as
    do 64-channel stride-2 ones (0.99-1.10x, GEMM 1.15-1.19x). Measured at
    batch 1 with the 2 MB column floor, one process, Zen 3. Dilated 3x3 layers
    whose padding is a multiple of the dilation count as Winograd geometry
    (their phase sub-images are undilated, atrous.py): 0.66-0.94x PyTorch's
    forward time at 64-256 channels, dilation 2 and 4, where the direct kernel
    took 1.06-1.57x; training 0.62-0.97x against 0.92-2.07x.

    3x3 layers with 32-63 channels in or out take Winograd too from 2048
    output positions (a 64 px map, or a batch of 8 at 16 px): 0.50-0.91x the
    direct kernel's forward time, 0.55-0.92x in training (forward + backward),
    at 32-128 channels on 16-128 px maps, batch 1-8 (one process, Zen 3;
    batch 1 at 32 px and below took 0.8-1.8x, so fewer positions stay direct;
    with 16-24 channels in it took 0.7-1.9x and stays direct). Not dilated ones:
    on 32-channel sub-images the copies in and out ate the gain (default-256's
    32->64 layer on 64 px: 1.15-1.30 ms, direct 1.03).

    Stride-2 3x3 layers take BLAS from 128 output channels and 128^2 input x
    output channels (the product's work per position): 64->256 and 96->192
    then took 0.77-0.95x the direct kernel's forward time and 0.85-0.95x in
    training (batch 1-16, 14-28 px outputs); 64->128 stays direct (0.89-1.07x,
    0.92-1.00x) as does 128->64 (1.08-1.18x); one process, Zen 3.

    Stride-2 3x3 layers with 128+ channels in or out take Winograd's stride-2
    scheme (winograd_s2.py, 0.69x the multiply-adds) where the call has 2^23
    output positions x input x output channels and the outputs fill its 2x2
    tiles (not 7x7 maps: a third more products): in training (forward and
    both gradients, batch 4-16) 0.74-0.92x the time of GEMM or the direct
    kernel at 64-512 channels on 8-28 px outputs, forward at batch 1 0.85-0.94x
    (outputs of 128->256 on 28 px, of 256->256 and 256->512 on 14 px). Below that work the
    forward took 1.05-1.4x; on 7x7 outputs training took 1.01-1.23x; 64->64
    layers 1.15-1.5x (one process, Zen 4)."""
    heavy = ci >= CHANNEL_HEAVY and co >= CHANNEL_HEAVY
    many = not dilated and (positions is None or positions >= WINOGRAD_POSITIONS)
    if winograd and (heavy or (min(ci, co) >= WINOGRAD_NARROW and many)):
        return "winograd4" if max(ci, co) <= WINOGRAD4_MAX else "winograd"
    if not heavy:
        return "direct"
    if strided_spill is not None and max(ci, co) >= STRIDED_WIDE and strided_spill <= STRIDED_SPILL and (
            positions is None or positions * ci * co >= STRIDED_WORK):
        return winograd_s2.NAME
    expansion = taps / phases
    if expansion <= 1 or (expansion <= GEMM_EXPANSION and co >= GEMM_WIDE and ci * co >= GEMM_WIDE ** 2):
        return "gemm"
    return "direct"


def flipped_input_grad(ci: int, kernel, stride, padding, dilation) -> bool:
    """Whether a layer's input gradient is the forward convolution of the flipped,
    transposed kernel over the output gradient (stride 1, 8+ input channels, no
    padding beyond the kernel's span), so under the forward's choice; otherwise
    it is scattered back per stride phase (choose_input_grad)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    return sh == sw == 1 and ci >= 8 and dh * (kh - 1) >= ph and dw * (kw - 1) >= pw


def choose_input_grad(ci: int, co: int) -> str:
    """The input gradient's algorithm where it is scattered back (not
    flipped_input_grad): "gemm", W^T gY by BLAS with each row added back onto
    its tap's run (grad._col2im), from CHANNEL_HEAVY channels in and out whatever
    the kernel; else "direct" (grad._grad_input_direct). With a stride of 2, one
    process, Zen 3: GEMM took 0.68-0.86x the direct kernel's time at 64-128
    channels (3x3 to 7x7, batch 1-32, 16-64 px), 0.77-1.04x at 32 -> 64 and
    1.0-1.4x with fewer channels."""
    return "gemm" if min(ci, co) >= CHANNEL_HEAVY else "direct"


_PACKED: "OrderedDict" = OrderedDict()  # (version, kind, shape) -> packed arrays, least recent first
PACKED_BYTES = 64 << 20  # the packed weights kept at most (old versions drop out first)
_packed_total = 0  # bytes in _PACKED


def cached(version, kind: str, w, make):
    """make() -> a tuple of arrays derived from a layer's weights w, kept while
    `version` (the network's parameter version of that layer) stays the same.
    The key holds w's shape too: the kernels trust the packed arrays' sizes, so
    a version reused for other weights (a caller's mistake) must not find
    arrays of another shape (it read and wrote past them). The least recently
    used entries drop out first once PACKED_BYTES is exceeded (every training
    step makes new versions); without a version, make() runs every call."""
    global _packed_total
    if version is None:
        return make()
    key = (version, kind, w.shape)
    hit = _PACKED.get(key)
    if hit is not None:
        _PACKED.move_to_end(key)
        return hit
    out = make()
    _PACKED[key] = out
    _packed_total += _nbytes(out)
    while _packed_total > PACKED_BYTES and len(_PACKED) > 1:
        _packed_total -= _nbytes(_PACKED.popitem(last=False)[1])
    return out


def _nbytes(arrays) -> int:
    return sum(a.nbytes for a in arrays if a is not None)


TAPS, CHANNELS = 3, 4  # the direct kernel's block: taps per pass x output channels per job


def padded_taps(k: int) -> int:
    """K taps padded to whole blocks of the direct kernel."""
    return -(-k // TAPS) * TAPS


def _bias(b, co: int) -> np.ndarray:
    """The bias as float32 (Co,), zeros without one."""
    return np.zeros(co, np.float32) if b is None else np.asarray(b, dtype=np.float32).reshape(co)


def _packed(w, b, version, kind, order=None, channels=CHANNELS):
    """The weights in the layout an algorithm reads, packed once per parameter version.

    direct (kind: the plan's direct_key): (K_pad, Co_pad) transposed, its taps in
    the plan's direct_order, zero-padded to blocks of TAPS taps x `channels`
    channels, and the bias padded to Co_pad. gemm: (Co, K) and the bias."""
    def make():
        co = w.shape[0]
        k = w[0].size
        cop = -(-co // channels) * channels
        bias = np.zeros(cop, np.float32)
        bias[:co] = _bias(b, co)
        if order is not None:
            wt = np.zeros((padded_taps(k), cop), np.float32)
            wt[:k, :co] = w.reshape(co, k).T[order[:k]]
        else:
            wt = np.ascontiguousarray(w.reshape(co, k), dtype=np.float32)
        return wt, bias
    return cached(version, kind, w, make)


def even_chunk(n: int, nblk: int, target: int, unit: int, smallest: int) -> int:
    """Positions per job for a direct kernel: about `target`, a multiple of `unit`,
    the chunks as even as that allows (threads take runs of consecutive jobs: a
    short last chunk leaves one idle; 888 positions as 576 + 312 took 1.2-1.3x the
    time of 480 + 408 in direct512), and more chunks while nblk jobs per chunk
    would be fewer than 8 for the threads, down to `smallest` positions."""
    chunks = -(-n // target)
    while nblk * chunks < 8 and -(-n // ((chunks + 1) * unit)) * unit >= smallest:
        chunks += 1
    return -(-n // (chunks * unit)) * unit


def _chunk(n: int, nblk: int) -> int:
    """_direct's positions per job: about 1280 (even_chunk), in multiples of 16.

    Long passes: each pass of a job (3 taps) pays a fixed setup (the weights
    broadcast, the compiler's overlap checks of the 7 rows) before its loop.
    The accumulators (4 rows of 5 KB) and the 3 source runs then overflow L1 a
    little, and that costs less: against about 768, 0.83-0.93x the kernel's time
    on 64-128 channels with a stride or a dilation (one chunk of 800-1100
    positions instead of two), 0.85-0.99x on 16-32 channels at 128 px and on 7x7,
    within 2 % elsewhere (two runs, Zen 3); 2048 was 1.04-1.10x on large maps."""
    return even_chunk(n, nblk, 1280, 16, 64)
