"""The direct convolution with its sums in 512-bit registers (kernels/direct512.py)
against float64 loops, on any CPU (forced where the CPU has no AVX-512: LLVM then
splits its vectors, slower but the same sums), and against the L1 kernel it
replaces (conv._direct): the same bits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnplay.core.kernels import conv, direct512, grad, vectors
from strategies import conv_geometries
from test_backward import gradient_case, ref_conv, ref_weight_grad


def _force(mp):
    """The blocked kernels wherever they apply, AVX-512 or not, compiled here if need be
    (not the numpy path or the L1 kernel meanwhile)."""
    mp.setattr(direct512, "avx512", lambda: True)
    mp.setattr(conv, "ready", lambda *kernels: True)
    mp.setattr(grad, "ready", lambda *kernels: True)


@pytest.fixture
def blocked(monkeypatch):
    _force(monkeypatch)


def _which(ci, co, hw, k, stride, padding, dilation, nb):
    plan = conv._plan(ci, *hw, *k, tuple(stride), tuple(padding), tuple(dilation))
    return direct512.applies(co, (nb - 1) * plan.length + plan.n, plan.k)


@settings(max_examples=60, deadline=None)
@given(conv_geometries(batch=(1, 5), in_channels=(4, 8), out_channels=(8, 20), kernel=(3, 5), side=(3, 14)),
       st.integers(0, 2 ** 31 - 1))
def test_blocked_forward_matches_float64_loops(geometry, seed):
    n, ci, co, k, stride, padding, dilation, hw = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, ci) + tuple(hw)).astype(np.float32)
    w = rng.standard_normal((co, ci) + tuple(k)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        _force(mp)
        assume(_which(ci, co, hw, k, stride, padding, dilation, n))  # a block of positions at least
        y = conv.conv2d_batch(x, w, b, stride, padding, dilation, algorithm="direct")
    ref = np.stack([ref_conv(x[i].astype(np.float64), w.astype(np.float64), b, stride, padding, dilation)
                    for i in range(n)])
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("ci, co, hw, k, stride, padding, dilation, nb", [
    (16, 32, (16, 16), (3, 3), (1, 1), (1, 1), (1, 1), 8),  # 2295 positions: 4 chunks of 12 blocks
    (4, 9, (20, 18), (3, 3), (1, 1), (1, 1), (1, 1), 2),  # 9 channels: one block of 8 padded channels
    (16, 12, (9, 9), (3, 3), (2, 2), (1, 1), (1, 1), 3),  # stride 2: taps on four phase images
    (4, 16, (30, 30), (5, 5), (1, 1), (2, 2), (2, 2), 2),  # dilated 5x5
    (16, 8, (1, 40), (1, 3), (1, 1), (0, 1), (1, 1), 2),  # a 1D layer
    (2, 24, (7, 7), (7, 7), (1, 1), (3, 3), (1, 1), 1),  # 70 positions: the last block moved back by 26
])
def test_blocked_gives_the_l1_kernels_bits(monkeypatch, ci, co, hw, k, stride, padding, dilation, nb):
    """Both kernels sum from the bias, tap by tap, fused: the same float32 results."""
    rng = np.random.default_rng(ci * co)
    x = rng.standard_normal((nb, ci) + hw).astype(np.float32)
    w = rng.standard_normal((co, ci) + k).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    _force(monkeypatch)
    assert _which(ci, co, hw, k, stride, padding, dilation, nb)
    blocked = conv.conv2d_batch(x, w, b, stride, padding, dilation, algorithm="direct")
    monkeypatch.setattr(direct512, "avx512", lambda: False)
    assert not _which(ci, co, hw, k, stride, padding, dilation, nb)
    l1 = conv.conv2d_batch(x, w, b, stride, padding, dilation, algorithm="direct")
    np.testing.assert_array_equal(blocked, l1)
    ref = np.stack([ref_conv(x[i].astype(np.float64), w.astype(np.float64), b, stride, padding, dilation)
                    for i in range(nb)])
    np.testing.assert_allclose(blocked, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_blocked_input_gradient_matches_float64_loops(blocked, monkeypatch):
    """The stride-1 input gradient is the forward kernel on gy with the flipped kernel:
    it takes the blocked kernel too (16 channels in: gx has 16 output channels)."""
    calls = []
    forward = direct512.conv
    monkeypatch.setattr(direct512, "conv", lambda *a: (calls.append(a[-1].shape), forward(*a)))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 10, 10)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 32, 10, 10)).astype(np.float32)
    gx, _, _ = grad.conv2d_backward_batch(x, w, gy, (1, 1), (1, 1), param_grads=False, algorithm="direct")
    # gx[c] = sum_o full correlation of gy[o] with the flipped w[o, c]
    wf = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).astype(np.float64)
    ref = np.stack([ref_conv(gy[i].astype(np.float64), wf, None, (1, 1), (1, 1), (1, 1)) for i in range(4)])
    np.testing.assert_allclose(gx, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert calls == [(4, 16, 10, 10)]  # gx's shape: the blocked kernel computed it


def test_applies_only_with_avx512_eight_channels_and_a_block(monkeypatch):
    monkeypatch.setattr(direct512, "avx512", lambda: True)
    assert direct512.applies(8, 48, 36)
    assert not direct512.applies(7, 10_000, 144)  # fewer channels than a block: padded work
    assert not direct512.applies(64, 47, 144)  # less than one block of positions
    assert not direct512.applies(64, 10_000, 27)  # few taps: the store outweighs the sums
    monkeypatch.setattr(direct512, "avx512", lambda: False)
    assert not direct512.applies(64, 10_000, 144)


def test_chunks_are_whole_blocks_even_and_give_every_thread_jobs():
    assert direct512.chunk(100 * direct512.CHUNK, 4) == direct512.CHUNK
    assert direct512.chunk(888, 16) == 480  # 480 + 408, not 576 + 312
    for n, nblk in ((48, 1), (1000, 1), (5184, 8), (300, 2), (888, 16), (18_496, 4), (10_001, 2)):
        c = direct512.chunk(n, nblk)
        chunks = -(-n // c)
        assert c % direct512.BLOCK == 0 and direct512.BLOCK <= c <= direct512.CHUNK
        assert nblk * chunks >= 6 or c == direct512.BLOCK  # (8 asked; whole blocks may round it down)
        assert (chunks - 1) * c < n <= chunks * c


def test_avx512_follows_the_compile_target():
    """avx512() reads the features numba compiles for, as wide_vectors does."""
    from numba.core.registry import cpu_target
    features = cpu_target.target_context.codegen().magic_tuple()[2]
    assert vectors.avx512() == ("+avx512f" in features.split(","))


@pytest.mark.parametrize("ci, co, hw, k, stride, padding, dilation, nb", [
    (3, 16, (32, 32), (3, 3), (1, 1), (1, 1), (1, 1), 8),  # 27 taps: 9 blocks of 3, two of 8 channels
    (5, 9, (13, 11), (3, 3), (1, 1), (1, 1), (1, 1), 3),  # 9 channels: a block of one; 45 taps
    (4, 12, (10, 9), (3, 3), (2, 2), (1, 1), (1, 1), 2),  # stride 2
    (2, 8, (12, 12), (3, 2), (1, 1), (2, 1), (2, 3), 2),  # dilated, 12 taps: 4 blocks of 3
    (6, 16, (1, 50), (1, 5), (1, 1), (0, 2), (1, 1), 3),  # 1D
])
def test_blocked_weight_gradient_matches_float64_loops(monkeypatch, ci, co, hw, k, stride, padding, dilation, nb):
    """The weight gradient's sweep over position ranges with its block in registers
    (direct512._weight_grad), forced at any size: repeated channels and taps of a
    partial block added once, chunk tails shorter than a vector."""
    _weight_grad_case(monkeypatch, np.random.default_rng(co + ci), nb, ci, co, k, stride, padding, dilation, hw)


def _weight_grad_case(mp, rng, n, ci, co, k, stride, padding, dilation, hw):
    """The blocked weight gradient of one random case, forced and counted, against
    float64 loops."""
    x, w, gy = gradient_case(rng, n, ci, co, k, stride, padding, dilation, hw)
    calls = []
    kernel = direct512._weight_grad
    _force(mp)
    mp.setattr(direct512, "_weight_grad", lambda *a: (calls.append(1), kernel(*a)))
    mp.setattr(grad, "GW_RANGES_BYTES", 0)
    _, gw, _ = grad.conv2d_backward_batch(x, w, gy, stride, padding, dilation, input_grad=False, algorithm="direct")
    assert calls == [1]
    ref = ref_weight_grad(x.astype(np.float64), gy, tuple(k), stride, padding, dilation)
    np.testing.assert_allclose(gw, ref, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_the_weight_gradient_keeps_its_l1_sweep_with_few_channels(monkeypatch):
    monkeypatch.setattr(direct512, "avx512", lambda: True)
    assert direct512.weight_grad_applies(8) and not direct512.weight_grad_applies(7)
    monkeypatch.setattr(direct512, "avx512", lambda: False)
    assert not direct512.weight_grad_applies(64)


@settings(max_examples=30, deadline=None)
@given(conv_geometries(batch=(1, 3), in_channels=(1, 5), out_channels=(8, 19), kernel=(1, 4), side=(1, 12)),
       st.integers(0, 2 ** 31 - 1))
def test_blocked_weight_gradient_on_any_geometry(geometry, seed):
    n, ci, co, k, stride, padding, dilation, hw = geometry
    with pytest.MonkeyPatch.context() as mp:
        _weight_grad_case(mp, np.random.default_rng(seed), n, ci, co, k, stride, padding, dilation, hw)
