"""Winograd for stride-2 3x3 convolutions (kernels/winograd_s2.py): forced on any
geometry against float64 loops, and the chooser's rule. (The memory rule's
test, test_memory_budget, has a layer that takes it.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from test_batch_layers import close, conv_input_grad, rand


def reference(x, w, b, padding):
    """The float64 stride-2 3x3 convolution by plain loops over outputs and taps."""
    n, ci, h, wd = x.shape
    co = w.shape[0]
    ph, pw = padding
    xp = np.zeros((n, ci, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    ho, wo = (h + 2 * ph - 3) // 2 + 1, (wd + 2 * pw - 3) // 2 + 1
    y = np.zeros((n, co, ho, wo))
    for oy in range(ho):
        for ox in range(wo):
            window = xp[:, :, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3]
            y[:, :, oy, ox] = np.einsum("nikl,oikl->no", window, w.astype(np.float64))
    return y if b is None else y + np.asarray(b, np.float64)[None, :, None, None]


def weight_reference(x, gy, padding):
    """The float64 weight gradient: each output's gradient times its input window."""
    n, ci, h, wd = x.shape
    ph, pw = padding
    xp = np.zeros((n, ci, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    gw = np.zeros((gy.shape[1], ci, 3, 3))
    for oy in range(gy.shape[2]):
        for ox in range(gy.shape[3]):
            window = xp[:, :, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3]
            gw += np.einsum("no,nikl->oikl", gy[:, :, oy, ox].astype(np.float64), window)
    return gw


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 10),
       st.lists(st.integers(0, 3), min_size=2, max_size=2), st.lists(st.integers(1, 13), min_size=2, max_size=2),
       st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_strided_winograd_on_any_geometry(n, ci, co, p, hw, bias, tiny_blocks, seed):
    """Forced on any stride-2 3x3 geometry (odd and even outputs, padding 0-3, a
    budget of one tile row or the default): the forward pass and the weight, bias
    and input gradients against the float64 loops."""
    from cnnplay.core.kernels import conv, grad, winograd_s2
    assume(all(m + 2 * pp >= 3 for m, pp in zip(hw, p)))
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (n, ci, *hw)), rand(rng, (co, ci, 3, 3))
    b = rand(rng, (co,)) if bias else None
    budget = winograd_s2.BUDGET
    try:
        winograd_s2.BUDGET = 1 if tiny_blocks else budget
        y = conv.conv2d_batch(x, w, b, 2, p, 1, algorithm="winograd_s2")
        close(y, reference(x, w, b, p))
        gy = rand(rng, y.shape)
        gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 2, p, 1, algorithm="winograd_s2")
    finally:
        winograd_s2.BUDGET = budget
    close(gw, weight_reference(x, gy, p))
    close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)))
    want_gx = conv_input_grad(x.shape, w, gy, (3, 3), (2, 2), p, (1, 1))
    close(gx, want_gx)
    # the input gradient alone reads x for its shape only; the parameter gradients alone
    gx_only, no_w, no_b = grad.conv2d_backward_batch(np.full_like(x, np.nan), w, gy, 2, p, 1, param_grads=False,
                                                     algorithm="winograd_s2")
    assert no_w is None and no_b is None
    close(gx_only, want_gx)
    no_x, gw_only, _ = grad.conv2d_backward_batch(x, w, gy, 2, p, 1, input_grad=False, algorithm="winograd_s2")
    assert no_x is None
    close(gw_only, gw)


def test_strided_winograd_with_many_channels_and_threads():
    """A ResNet downsampling layer (128 -> 256 channels, 28 px, batch 2) on the
    kernels' threads and BLAS's: the products split between threads give the
    reference values, forward and backward, without a parameter version and
    with one (then the transform is kept and reused)."""
    from cnnplay.core.kernels import conv, grad
    rng = np.random.default_rng(5)
    x, w, b = rand(rng, (2, 128, 28, 28)), rand(rng, (256, 128, 3, 3)) * 0.1, rand(rng, (256,))
    gy = rand(rng, (2, 256, 14, 14))
    want_y = reference(x, w, b, (1, 1))
    want_gw = weight_reference(x, gy, (1, 1))
    want_gx = conv_input_grad(x.shape, w, gy, (3, 3), (2, 2), (1, 1), (1, 1))
    for version in (None, ("s2 test",), ("s2 test",)):
        close(conv.conv2d_batch(x, w, b, 2, 1, 1, version=version), want_y)
        gx, gw, _ = grad.conv2d_backward_batch(x, w, gy, 2, 1, 1, version=version)
        close(gw, want_gw)
        close(gx, want_gx)
    assert conv.choose(conv._plan(128, 28, 28, 3, 3, (2, 2), (1, 1), (1, 1)), 256, 2) == "winograd_s2"


def test_the_chooser_takes_strided_winograd_for_wide_layers_with_enough_work():
    """Stride-2 3x3 layers take the stride-2 Winograd scheme from 128 channels in
    or out and 2^23 output positions x channels per call, when their outputs
    fill its 2x2 tiles; not 64->64 layers, 7x7 outputs, small calls, other
    strides, dilations or kernels, nor while its gradient kernels compile
    (allow_winograd=False)."""
    from cnnplay.core.kernels import conv

    def choice(ci, co, size, nb=1, k=3, s=2, d=1, allow=True):
        plan = conv._plan(ci, size, size, k, k, (s, s), (d * (k // 2),) * 2, (d, d))
        return conv.choose(plan, co, nb, allow_winograd=allow)
    assert choice(128, 256, 56) == "winograd_s2"  # 28x28 outputs x 128 x 256 = 25.7M
    assert choice(256, 256, 28) == "winograd_s2"
    assert choice(64, 128, 28, nb=16) == "winograd_s2"
    assert choice(128, 64, 28, nb=16) == "winograd_s2"
    assert choice(128, 256, 28) == "gemm"  # 6.4M
    assert choice(64, 128, 56) == "direct"  # 6.4M
    assert choice(64, 64, 56, nb=16) == "direct"
    assert choice(512, 512, 14, nb=16) == "gemm"  # 7x7 outputs
    assert choice(128, 256, 56, allow=False) == "gemm"
    assert choice(128, 128, 56, s=1) == "winograd4"
    for other in ({"k": 5}, {"d": 2}, {"s": 3}, {"s": 1, "d": 2}):
        assert choice(128, 256, 57, **other) not in ("winograd_s2", "?")


def test_forcing_it_on_another_geometry_is_refused():
    from cnnplay.core.kernels import conv
    x, w = np.zeros((1, 4, 9, 9), np.float32), np.zeros((4, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="stride 2"):
        conv.conv2d_batch(x, w, None, 1, 1, 1, algorithm="winograd_s2")



def test_while_its_kernels_compile_the_layer_computes_on_the_numpy_path():
    """A first start: with the kernels not yet compiled (mode "numpy"), a layer that
    takes the scheme computes its forward pass and gradients on the numpy path, to
    the same float64 references."""
    from cnnplay.core.kernels import coldstart, conv, grad
    rng = np.random.default_rng(11)
    x, w, b = rand(rng, (1, 64, 66, 66)), rand(rng, (128, 64, 3, 3)) * 0.1, rand(rng, (128,))
    assert conv.choose(conv._plan(64, 66, 66, 3, 3, (2, 2), (1, 1), (1, 1)), 128, 1) == "winograd_s2"
    gy = rand(rng, (1, 128, 33, 33))
    mode = coldstart.mode()
    coldstart.set_mode("numpy")
    try:
        y = conv.conv2d_batch(x, w, b, 2, 1, 1)
        gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 2, 1, 1)
    finally:
        coldstart.set_mode(mode)
    close(y, reference(x, w, b, (1, 1)))
    close(gw, weight_reference(x, gy, (1, 1)))
    close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)))
    close(gx, conv_input_grad(x.shape, w, gy, (3, 3), (2, 2), (1, 1), (1, 1)))
