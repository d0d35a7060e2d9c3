"""Winograd's short products in 512-bit registers (kernels/products512.py) against
float64 products, on any CPU (forced where the CPU has no AVX-512: LLVM then
splits its vectors, slower but the same sums), and the layers that use them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnplay.core.kernels import blas, conv, products512
from test_backward import ref_conv, ref_weight_grad


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setattr(products512, "avx512", lambda: True)


def _planes(rng, e, n, c, pad=16):
    """(e, n, c) with its planes apart by n*c + pad floats, as winograd._planes lays V and M out."""
    flat = rng.standard_normal(e * (n * c + pad)).astype(np.float32)
    return flat.reshape(e, n * c + pad)[:, :n * c].reshape(e, n, c)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 36), st.integers(6, 70), st.integers(1, 140), st.sampled_from([64, 128, 192]),
       st.integers(0, 2 ** 31 - 1))
def test_products_match_float64(e, n, k, c, seed):
    """Any count of rows from one block (the last block moved back, its overlap stored
    once), any inner dimension, 1-3 groups of 64 columns, planes apart as Winograd's."""
    rng = np.random.default_rng(seed)
    a, b = _planes(rng, e, n, k), rng.standard_normal((e, k, c)).astype(np.float32)
    out = _planes(rng, e, n, c)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(products512, "avx512", lambda: True)
        mp.setattr(products512, "ready", lambda *k: True)  # the kernel, not BLAS while it compiles
        assert products512.applies(a, b, out)
        products512.batched_matmul(a, b, out)
    ref = np.einsum("enk,ekc->enc", a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 16), st.integers(6, 40), st.integers(1, 300), st.sampled_from([64, 128]),
       st.integers(0, 2 ** 31 - 1))
def test_products_of_a_transposed_view_match_float64(e, rows, k, c, seed):
    """The weight gradient's gU[e] = gM[e]^T V[e]: the left operand a transposed view
    (its entries read one by one), the inner dimension the tiles."""
    rng = np.random.default_rng(seed)
    m = _planes(rng, e, k, rows)  # (e, tiles, Co)
    v = _planes(rng, e, k, c)  # (e, tiles, Ci)
    out = np.empty((e, rows, c), np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(products512, "avx512", lambda: True)
        mp.setattr(products512, "ready", lambda *k: True)
        assert products512.applies(m.transpose(0, 2, 1), v, out)
        products512.batched_matmul(m.transpose(0, 2, 1), v, out)
    ref = np.einsum("etr,etc->erc", m.astype(np.float64), v.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_what_does_not_apply_goes_to_blas(monkeypatch, forced):
    rng = np.random.default_rng(1)
    calls = []
    monkeypatch.setattr(blas, "batched_matmul", lambda a, b, out: (calls.append(out.shape), np.matmul(a, b, out=out))[1])
    for a, b in (((4, 10, 8), (4, 8, 48)),  # columns not a multiple of 64
                 ((4, 5, 8), (4, 8, 64))):  # fewer rows than a block
        a, b = rng.standard_normal(a).astype(np.float32), rng.standard_normal(b).astype(np.float32)
        out = np.empty((a.shape[0], a.shape[1], b.shape[2]), np.float32)
        assert not products512.applies(a, b, out)
        products512.batched_matmul(a, b, out)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2
    monkeypatch.setattr(products512, "avx512", lambda: False)
    a, b = np.ones((2, 8, 4), np.float32), np.ones((2, 4, 64), np.float32)
    assert not products512.applies(a, b, np.empty((2, 8, 64), np.float32))


@pytest.mark.parametrize("scheme", ["winograd", "winograd4"])
def test_winograd_layers_through_the_products(forced, monkeypatch, scheme):
    """A Winograd layer's forward pass and both gradients take the products here."""
    from cnnplay.core.kernels import grad
    calls = []
    for name in ("_products", "_products_planes"):
        kernel = getattr(products512, name)
        monkeypatch.setattr(products512, name, lambda *a, name=name, kernel=kernel: (calls.append(name), kernel(*a)))
    monkeypatch.setattr(products512, "ready", lambda *k: True)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 64, 13, 11)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    y = conv.conv2d_batch(x, w, b, 1, 1, algorithm=scheme)
    ref = np.stack([ref_conv(x[i].astype(np.float64), w.astype(np.float64), b, (1, 1), (1, 1), (1, 1))
                    for i in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert set(calls) == {"_products"}
    calls.clear()
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, _ = grad.conv2d_backward_batch(x, w, gy, 1, 1, algorithm=scheme)
    wf = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).astype(np.float64)
    refx = np.stack([ref_conv(gy[i].astype(np.float64), wf, None, (1, 1), (1, 1), (1, 1)) for i in range(2)])
    np.testing.assert_allclose(gx, refx, rtol=1e-4, atol=1e-4 * np.abs(refx).max())
    refw = ref_weight_grad(x.astype(np.float64), gy, (3, 3), (1, 1), (1, 1), (1, 1))
    np.testing.assert_allclose(gw, refw, rtol=1e-4, atol=1e-4 * np.abs(refw).max())
    assert set(calls) == {"_products", "_products_planes"}  # the input gradient's, the weight gradient's


@settings(max_examples=30, deadline=None)
@given(st.integers(6, 60), st.sampled_from([64, 128]), st.sampled_from([64, 128]), st.integers(0, 2 ** 31 - 1))
def test_single_products_match_float64(n, ci, co, seed):
    """The stride-2 scheme's 9 products of different inner dimensions, each here."""
    rng = np.random.default_rng(seed)
    products = [(rng.standard_normal((n, w * ci)).astype(np.float32),
                 rng.standard_normal((w * ci, co)).astype(np.float32), np.empty((n, co), np.float32))
                for w in (1, 1, 1, 1, 2, 2, 2, 2, 4)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(products512, "avx512", lambda: True)
        calls = []
        kernel = products512._product
        mp.setattr(products512, "_product", lambda *a: (calls.append(1), kernel(*a)))
        mp.setattr(products512, "ready", lambda *k: True)
        products512.matmuls(products)
    assert len(calls) == 9
    for a, b, out in products:
        ref = a.astype(np.float64) @ b
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_a_stride2_winograd_layer_through_the_products(forced, monkeypatch):
    from cnnplay.core.kernels import winograd_s2
    calls = []
    kernel = products512._product
    monkeypatch.setattr(products512, "_product", lambda *a: (calls.append(1), kernel(*a)))
    monkeypatch.setattr(products512, "ready", lambda *k: True)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 64, 30, 30)).astype(np.float32)
    w = (rng.standard_normal((128, 64, 3, 3)) * 0.1).astype(np.float32)
    y = conv.conv2d_batch(x, w, None, 2, 1, algorithm=winograd_s2.NAME)
    ref = ref_conv(x[0].astype(np.float64), w.astype(np.float64), None, (2, 2), (1, 1), (1, 1))
    np.testing.assert_allclose(y[0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert len(calls) == 9
