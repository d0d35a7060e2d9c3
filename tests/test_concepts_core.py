"""Issue 9 core: presets, weight sharing, growth data, shift invariance, calibration, blocks."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnplay.core import Network, NetworkError
from cnnplay.core.concepts import (PRESETS_1D, PRESETS_2D, PresetError, apply_preset, batchnorm_statistics,
                                   conv_norm_act_block, growth_series, insert_block, make_kernel,
                                   mlp_comparison, mlp_comparisons, shift_input, shift_invariance,
                                   what_if_series)

needs_rf = pytest.mark.skipif(not hasattr(Network, "receptive_field_table"),
                              reason="Network.receptive_field_table (issue 4) has not landed yet")


def conv_net(input_shape, kernel, padding=0, bias=False, out=1, **extra):
    dims = len(input_shape) - 1
    layer = {"type": f"conv{dims}d", "out_channels": out, "kernel_size": kernel, "padding": padding,
             "bias": bias, **extra}
    return Network.from_dict({"input": list(input_shape), "layers": [layer]})


def with_kernel(net, i, name, **options):
    w = apply_preset(net.params(i)["weight"], name, **options)
    net.set_params(i, weight=w)
    return net


# -- parameter counts and the MLP comparison -------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(dims=st.sampled_from([1, 2]), cin=st.integers(1, 5), cout=st.integers(1, 6),
       kh=st.integers(1, 4), kw=st.integers(1, 4), size=st.integers(4, 12), bias=st.booleans(),
       stride=st.integers(1, 3))
def test_conv_parameter_count_and_mlp_comparison_match_the_formulas(dims, cin, cout, kh, kw, size, bias, stride):
    kernel = [kw] if dims == 1 else [kh, kw]
    shape = [cin, size] if dims == 1 else [cin, size, size + 1]
    net = Network.from_dict({"input": shape, "layers": [
        {"type": f"conv{dims}d", "out_channels": cout, "kernel_size": kernel, "stride": stride, "bias": bias}]})
    expected_conv = math.prod(kernel) * cin * cout + (cout if bias else 0)
    assert net.parameter_counts[0] == expected_conv
    c = mlp_comparison(net, 0)
    out_shape = net.output_shapes[0]
    in_numel, out_numel = math.prod(shape), math.prod(out_shape)
    assert c.conv_params == expected_conv
    assert (c.in_numel, c.out_numel) == (in_numel, out_numel)
    assert c.dense_params == in_numel * out_numel + out_numel
    assert c.ratio == pytest.approx(c.dense_params / expected_conv)
    # the formula spells out the numbers
    nums = " x ".join(str(v) for v in kernel + [cin, cout])
    assert c.conv_formula.startswith(nums)
    assert c.conv_formula.endswith(f"= {expected_conv:,}")
    assert (" + " in c.conv_formula) == bias
    assert c.conv_formula_symbols.startswith("k x" if dims == 1 else "kh x kw x")
    assert c.dense_formula.endswith(f"= {c.dense_params:,}")


def test_mlp_comparison_worked_example():
    net = Network.from_dict({"input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv1d" if False else "conv2d", "out_channels": 8, "kernel_size": 5, "bias": False}]})
    c = mlp_comparison(net, 0)
    assert c.conv_params == 3 * 3 * 3 * 16 + 16 == 448
    assert c.dense_params == (3 * 32 * 32) * (16 * 30 * 30) + 16 * 30 * 30
    assert c.conv_formula == "3 x 3 x 3 x 16 + 16 = 448"
    assert c.conv_formula_symbols == "kh x kw x Cin x Cout + Cout"
    assert c.dense_formula.startswith("(3 x 32 x 32) x (16 x 30 x 30) + (16 x 30 x 30) = ")
    assert [m.layer for m in mlp_comparisons(net)] == [0, 3]
    assert mlp_comparison(net, 3).conv_formula == "5 x 5 x 16 x 8 = 3,200"
    with pytest.raises(NetworkError):
        mlp_comparison(net, 1)


def test_mlp_comparison_1d():
    net = conv_net([2, 50], 7, bias=True, out=4)
    c = mlp_comparison(net, 0)
    assert c.conv_formula == "7 x 2 x 4 + 4 = 60"
    assert c.conv_formula_symbols == "k x Cin x Cout + Cout"
    assert c.dense_params == 100 * (4 * 44) + 4 * 44


# -- presets ------------------------------------------------------------------------------------

def test_classic_3x3_presets():
    assert make_kernel("sobel_x", (3, 3)).tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    assert make_kernel("sobel_y", (3, 3)).tolist() == [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]
    assert make_kernel("laplacian", (3, 3)).tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    assert make_kernel("sharpen", (3, 3)).tolist() == [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
    assert make_kernel("identity", (3, 3)).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    np.testing.assert_allclose(make_kernel("box", (3, 3)), np.full((3, 3), 1 / 9), rtol=1e-6)
    assert make_kernel("derivative", 3).tolist() == [-1, 0, 1]
    assert make_kernel("laplacian", 3).tolist() == [1, -2, 1]


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 3), (2, 7), (6, 6)])
def test_presets_for_odd_and_even_sizes(size):
    for name in PRESETS_2D:
        try:
            k = make_kernel(name, size)
        except PresetError:
            continue  # e.g. Sobel x on a 1-wide kernel: refused with a reason
        assert k.shape == size and k.dtype == np.float32 and np.isfinite(k).all()
    g = make_kernel("gaussian", size, sigma=1.3)
    assert g.sum() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g, g[::-1, ::-1], rtol=1e-6)  # symmetric about the true centre
    assert make_kernel("box", size).sum() == pytest.approx(1.0, rel=1e-5)
    assert make_kernel("identity", size)[size[0] // 2, size[1] // 2] == 1
    if max(size) >= 3:
        assert make_kernel("laplacian", size).sum() == pytest.approx(0.0, abs=1e-5)
        assert make_kernel("sharpen", size).sum() == pytest.approx(1.0, abs=1e-5)


def test_presets_that_cannot_be_built_say_why():
    with pytest.raises(PresetError, match="2 taps wide"):
        make_kernel("sobel_x", (3, 1))
    with pytest.raises(PresetError, match="3 taps"):
        make_kernel("laplacian", (2, 2))
    with pytest.raises(PresetError, match="unknown"):
        make_kernel("sobel_x", 3)  # a 1D kernel uses "derivative"
    for name in PRESETS_1D:
        assert make_kernel(name, 5).shape == (5,)


def test_gabor_orientation():
    k0 = make_kernel("gabor", (7, 7), theta=0, wavelength=4, sigma=2)
    k90 = make_kernel("gabor", (7, 7), theta=90, wavelength=4, sigma=2)
    np.testing.assert_allclose(k90, k0.T, atol=1e-6)
    assert abs(k0.sum()) < 1e-5  # zero mean: flat areas give 0
    np.testing.assert_allclose(k0, k0[::-1, :], atol=1e-6)  # theta 0: constant along columns' stripes


def test_apply_preset_scopes():
    w = np.random.default_rng(0).normal(size=(3, 2, 3, 3)).astype(np.float32)
    before = w.copy()
    one = apply_preset(w, "identity", out=1, inp=0)
    np.testing.assert_array_equal(w, before)  # input untouched
    assert one[1, 0].tolist() == make_kernel("identity", (3, 3)).tolist()
    np.testing.assert_array_equal(np.delete(one, 1, axis=0), np.delete(before, 1, axis=0))
    np.testing.assert_array_equal(one[1, 1], before[1, 1])
    every = apply_preset(w, "sobel_x")
    assert all((every[o, i] == make_kernel("sobel_x", (3, 3))).all() for o in range(3) for i in range(2))
    diag = apply_preset(w, "box", scope="diagonal")
    assert (diag[0, 0] > 0).all() and (diag[1, 1] > 0).all() and (diag[0, 1] == 0).all() and (diag[2] == 0).all()
    r1, r2 = apply_preset(w, "random", seed=5), apply_preset(w, "random", seed=5)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(r1[0, 0], r1[0, 1])
    assert np.abs(r1).max() <= 1 / math.sqrt(2 * 9)
    with pytest.raises(PresetError):
        apply_preset(w, "identity", out=3, inp=0)


def test_sobel_on_a_ramp_gives_a_constant_map_inside():
    h, w_ = 9, 12
    ramp = np.tile(np.arange(w_, dtype=np.float32) * 0.5, (h, 1))[None]  # brighter to the right, slope 0.5
    net = with_kernel(conv_net([1, h, w_], 3, padding=1), 0, "sobel_x")
    y = net.forward(ramp)[0][0]
    inside = y[1:-1, 1:-1]
    np.testing.assert_allclose(inside, np.full_like(inside, 8 * 0.5), rtol=1e-6)  # (1+2+1) x 2 x slope
    net = with_kernel(net, 0, "sobel_y")
    np.testing.assert_allclose(net.forward(ramp)[0][0][1:-1, 1:-1], 0, atol=1e-6)
    net = with_kernel(net, 0, "laplacian")
    np.testing.assert_allclose(net.forward(ramp)[0][0][1:-1, 1:-1], 0, atol=1e-5)
    net = with_kernel(net, 0, "identity")
    np.testing.assert_allclose(net.forward(ramp)[0][0], ramp[0], rtol=1e-6)


def test_1d_derivative_and_blur_through_the_forward_pass():
    x = (np.arange(20, dtype=np.float32) * 2.0)[None]
    net = with_kernel(conv_net([1, 20], 3), 0, "derivative")
    np.testing.assert_allclose(net.forward(x)[0][0], 4.0, rtol=1e-6)  # [-1, 0, 1] on slope 2
    net = with_kernel(conv_net([1, 20], 4), 0, "box")
    np.testing.assert_allclose(net.forward(x)[0][0], (np.arange(17) + 1.5) * 2.0, rtol=1e-6)


# -- receptive-field growth ------------------------------------------------------------------------

GROWTH_NET = {"input": [1, 64, 48], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 5], "dilation": 2},
    {"type": "batchnorm"},
    {"type": "flatten"},
    {"type": "linear", "out_features": 3},
]}


@needs_rf
def test_growth_series_equals_the_receptive_field_table():
    from cnnplay.core.concepts.growth import table_rows
    net = Network.from_dict(GROWTH_NET)
    s = growth_series(net)
    rows = table_rows(net)
    assert s.depth == [0, 1, 2, 3, 4, 5] and s.layers == [None, 0, 1, 2, 3, 4]
    assert s.r[0] == (1, 1) and s.j[0] == (1, 1)
    for k, i in enumerate(s.layers[1:], start=1):
        assert s.r[k] == tuple(rows[i][0]) and s.j[k] == tuple(rows[i][1])
    # hand-computed: conv3 -> r 3; pool2 -> r 4, j 2; dilated (3, 5) conv: k_eff (5, 9) -> r 4+4*2, 4+8*2
    assert [r for r in s.r] == [(1, 1), (3, 3), (3, 3), (4, 4), (12, 20), (12, 20)]
    assert [j for j in s.j] == [(1, 1), (1, 1), (1, 1), (2, 2), (2, 2), (2, 2)]


@needs_rf
def test_what_if_variants_are_exact_and_invalid_ones_are_reported():
    net = Network.from_dict(GROWTH_NET)
    k = what_if_series(net, 0, "kernel+2")
    assert k.error is None and k.r[1] == (5, 5) and k.r[-1] == (14, 22)
    st_ = what_if_series(net, 2, "stride*2")
    assert st_.error is None and st_.j[3] == (4, 4)
    expected = Network.from_dict(dict(GROWTH_NET, layers=[dict(GROWTH_NET["layers"][0], dilation=2)]
                                      + GROWTH_NET["layers"][1:]))
    assert what_if_series(net, 0, "dilation*2").r == growth_series(expected).r
    assert "no dilation" in what_if_series(net, 2, "dilation*2").error
    assert "no kernel" in what_if_series(net, 1, "kernel+2").error
    small = Network.from_dict({"input": [1, 8, 8], "layers": [{"type": "conv2d", "out_channels": 1, "kernel_size": 7}]})
    bad = what_if_series(small, 0, "kernel+2")
    assert bad.error and "invalid" in bad.error and bad.r == []


@needs_rf
def test_growth_for_a_1d_network():
    net = Network.from_dict({"input": [1, 100], "layers": [
        {"type": "conv1d", "out_channels": 2, "kernel_size": 5, "stride": 2},
        {"type": "maxpool1d", "kernel_size": 3}]})
    s = growth_series(net)
    assert s.r == [(1,), (5,), (9,)] and s.j == [(1,), (2,), (6,)]


# -- shift invariance -----------------------------------------------------------------------------

def dots_image():
    x = np.zeros((1, 16, 16), np.float32)
    for y, x_ in [(1, 1), (5, 9), (9, 5), (13, 13), (1, 13)]:
        x[0, y, x_] = 1.0
    return x


def identity_then_pool():
    net = Network.from_dict({"input": [1, 16, 16], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "maxpool2d", "kernel_size": 4}]})
    return with_kernel(net, 0, "identity")


def test_shift_input_wrap_and_zero():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    np.testing.assert_array_equal(shift_input(x, (1, 2), "wrap"), np.roll(x, (1, 2), axis=(1, 2)))
    z = shift_input(x, (1, -1), "zero")
    assert z[0, 0].tolist() == [0, 0, 0, 0] and z[0, 1].tolist() == [1, 2, 3, 0]
    s1 = np.arange(5, dtype=np.float32)[None]
    assert shift_input(s1, (0, 2), "zero")[0].tolist() == [0, 0, 0, 1, 2]  # (dy, dx) on a 1D signal


@needs_rf
def test_zero_shift_changes_nothing():
    net = Network.from_dict(GROWTH_NET)
    x = np.random.default_rng(1).normal(size=(1, 64, 48)).astype(np.float32)
    for mode in ("wrap", "zero"):
        for c in shift_invariance(net, x, (0, 0), mode):
            assert c.relative_change == 0.0 and c.correlation == 1.0
    layers = [c for c in shift_invariance(net, x, (0, 0)) if c.aligned_change is not None]
    assert layers and all(c.aligned_change == 0.0 for c in layers)


@needs_rf
def test_pooling_is_invariant_where_a_stride_1_conv_is_not():
    net, x = identity_then_pool(), dots_image()
    conv, pool = shift_invariance(net, x, (1, 1), "wrap")
    assert conv.relative_change == pytest.approx(math.sqrt(2), rel=1e-6)  # the dots moved off themselves
    assert conv.correlation < 0
    assert conv.aligned_change == pytest.approx(0.0, abs=1e-6) and conv.grid_shift == (1, 1)  # equivariant
    assert pool.relative_change == pytest.approx(0.0, abs=1e-6)  # same 4x4 windows: unchanged
    assert pool.correlation == pytest.approx(1.0)
    assert pool.aligned_change is None  # a 1-pixel shift is no whole cell of a jump-4 grid
    # a shift that crosses window borders changes the pooled map too
    _, pool3 = shift_invariance(net, x, (3, 3), "wrap")
    assert pool3.relative_change > 0.5
    # a whole-cell shift is undone on the pooled grid
    _, pool4 = shift_invariance(net, x, (4, 4), "wrap")
    assert pool4.grid_shift == (1, 1) and pool4.aligned_change == pytest.approx(0.0, abs=1e-6)


@needs_rf
def test_shift_invariance_1d():
    net = Network.from_dict({"input": [1, 32], "layers": [
        {"type": "conv1d", "out_channels": 1, "kernel_size": 1, "bias": False},
        {"type": "avgpool1d", "kernel_size": 8}]})
    net = with_kernel(net, 0, "identity")
    x = np.zeros((1, 32), np.float32)
    x[0, [2, 10, 19]] = 1.0
    conv, pool = shift_invariance(net, x, 2)
    assert conv.relative_change == pytest.approx(math.sqrt(2))
    assert pool.relative_change == pytest.approx(0.0, abs=1e-6)


# -- batch-norm calibration --------------------------------------------------------------------------

def test_calibration_normalizes_this_image():
    net = Network.from_dict({"input": [3, 20, 24], "layers": [
        {"type": "conv2d", "out_channels": 5, "kernel_size": 3},
        {"type": "batchnorm"}, {"type": "relu"}]})
    x = (np.random.default_rng(2).normal(size=(3, 20, 24)) * 3 + 7).astype(np.float32)
    stats = batchnorm_statistics(net, 1, x)
    h = net.forward(x)[0]
    np.testing.assert_allclose(stats["running_mean"], h.reshape(5, -1).mean(1), rtol=1e-5)
    np.testing.assert_allclose(stats["running_var"], h.reshape(5, -1).var(1), rtol=1e-4)  # biased (ddof 0)
    net.set_params(1, **stats)
    y = net.forward(x)[1].reshape(5, -1)
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(1), 1, atol=1e-3)
    with pytest.raises(NetworkError):
        batchnorm_statistics(net, 0, x)


# -- blocks -------------------------------------------------------------------------------------

def test_conv_norm_act_block():
    assert conv_norm_act_block(2) == [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1,
                                       "bias": False}, {"type": "batchnorm"}, {"type": "relu"}]
    spec = {"input": [1, 40], "layers": [{"type": "conv1d", "out_channels": 2, "kernel_size": 3}]}
    net = Network.from_dict(spec)
    new = insert_block(spec, net, 1, out_channels=4, kernel_size=5)
    assert [l["type"] for l in new["layers"]] == ["conv1d", "conv1d", "batchnorm", "relu"]
    built = Network.from_dict(new)
    assert built.output_shapes[-1] == (4, 38)  # same padding keeps the length
    flat = {"input": [1, 8, 8], "layers": [{"type": "flatten"}]}
    with pytest.raises(NetworkError, match="flat"):
        insert_block(flat, Network.from_dict(flat), 1)
    assert len(spec["layers"]) == 1  # the original is untouched


@needs_rf
def test_highlight_field_is_the_centre_units_field():
    from cnnplay.core.concepts.growth import centre_unit, highlight_field
    net = Network.from_dict(GROWTH_NET)
    assert centre_unit(net, 2) == (0, 16, 12)
    f = highlight_field(net, 2)
    assert f.box == net.receptive_field(2, (0, 16, 12)).box
    assert centre_unit(net, 5) is None and highlight_field(net, 6) is None
