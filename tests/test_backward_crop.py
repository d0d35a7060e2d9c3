"""Input gradients without parameter gradients, and the cropped effective
receptive field against the full reverse pass (both exact)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnplay import Network
from cnnplay.core import receptive
from cnnplay.core.kernels import grad

from strategies import networks as spatial_networks
from test_backward import ERF_NETS, close, f32, randomize_norms, ref_conv, ref_erf, fd_grad


EVERY_TYPE = {"input": [3, 9, 10], "layers": [
    {"type": "conv2d", "out_channels": 9, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm"}, {"type": "leaky_relu", "negative_slope": 0.1},
    {"type": "conv2d", "out_channels": 8, "kernel_size": [3, 2], "padding": [3, 1], "dilation": [1, 2]},
    {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "conv2d", "out_channels": 2, "kernel_size": 2, "stride": 2, "padding": 1},
    {"type": "layernorm"}, {"type": "relu"}, {"type": "avgpool2d", "kernel_size": 2, "padding": 1},
    {"type": "flatten"}, {"type": "linear", "out_features": 3}]}


@pytest.mark.parametrize("spec", [EVERY_TYPE] + ERF_NETS)
def test_param_grads_false_gives_the_same_input_gradient(spec):
    net = Network.from_dict(spec, seed=3)
    rng = np.random.default_rng(4)
    randomize_norms(net, rng)
    x = f32(rng, *net.input_shape)
    outs = net.forward(x)
    for i in range(len(net)):
        xin = x if i == 0 else outs[i - 1]
        gy = f32(rng, *outs[i].shape)
        gx, grads = net.layer_backward(i, xin, outs[i], gy)
        gx2, grads2 = net.layer_backward(i, xin, outs[i], gy, param_grads=False)
        assert grads2 == {} and gx2.shape == xin.shape and gx2.dtype == np.float32
        assert set(grads) == set(k for k in ("weight", "bias") if k in net.params(i))
        np.testing.assert_array_equal(gx2, gx)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 10), st.integers(1, 3), st.lists(st.integers(1, 3), min_size=2, max_size=2),
       st.lists(st.integers(0, 4), min_size=2, max_size=2), st.lists(st.integers(1, 2), min_size=2, max_size=2),
       st.lists(st.integers(3, 9), min_size=2, max_size=2), st.integers(0, 2**31 - 1))
def test_conv_input_gradient_every_channel_count(ci, co, k, p, d, hw, seed):
    # 1-2 channels (one channel per job), 3-7 (a padded block of 4), 8+ at
    # stride 1 (a forward convolution with the flipped kernel) or not (p > d(k-1))
    spans = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    assume(all(n + 2 * pp >= sp for n, pp, sp in zip(hw, p, spans)))
    rng = np.random.default_rng(seed)
    x, w = f32(rng, ci, *hw), f32(rng, co, ci, *k)
    y = ref_conv(x, w, None, (1, 1), p, d)
    gy = f32(rng, *y.shape)
    gx, gw, gb = grad.conv2d_backward(x, w, gy, 1, p, d, param_grads=False)
    assert gw is None and gb is None
    close(gx, fd_grad(lambda a: float((gy * ref_conv(a, w, None, (1, 1), p, d)).sum()), x))
    np.testing.assert_array_equal(gx, grad.conv2d_backward(x, w, gy, 1, p, d)[0])


def test_linear_param_grads_false():
    rng = np.random.default_rng(1)
    x, w, gy = f32(rng, 5), f32(rng, 3, 5), f32(rng, 3)
    gx, gw, gb = grad.linear_backward(x, w, gy, param_grads=False)
    assert gw is None and gb is None
    np.testing.assert_array_equal(gx, grad.linear_backward(x, w, gy)[0])


def same_field(net, x, layer, unit, outputs):
    cropped = receptive.effective_receptive_field(net, x, layer, unit, outputs)
    full = receptive.effective_receptive_field(net, x, layer, unit, outputs, crop=False)
    assert cropped.shape == full.shape == net.input_shape[1:] and cropped.dtype == np.float32
    # only the order of float32 additions may differ (a different kernel path)
    np.testing.assert_allclose(cropped, full, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(full).max())))
    return cropped, full


def networks():
    """Wider than the receptive-field tests' networks: more channels (the 8-channel
    kernel blocks), bigger maps and padding, and a random seed."""
    return spatial_networks(max_side=14, max_layers=5, out_channels=st.sampled_from([1, 2, 3, 8]),
                            in_channels=st.sampled_from([1, 2, 3, 9]), max_stride=3, max_padding=4,
                            head=("linear", "relu", "batchnorm"), max_head=2, seeded=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                   HealthCheck.too_slow])
@given(networks(), st.booleans(), st.data())
def test_cropped_field_equals_the_full_reverse_pass(net, ties, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    randomize_norms(net, rng)
    # small integers make max-pool ties (first maximum wins) and exact relu zeros common
    x = (rng.integers(-2, 3, net.input_shape) if ties else rng.standard_normal(net.input_shape)).astype(np.float32)
    outputs = net.forward(x)
    layer = data.draw(st.integers(0, len(net) - 1))
    unit = tuple(data.draw(st.integers(0, n - 1)) for n in net.output_shapes[layer])
    cropped, _ = same_field(net, x, layer, unit, outputs)
    rf = net.receptive_field(layer, unit)
    assert not cropped[~rf.mask].any()


def test_cropped_field_with_minus_infinity_under_a_padded_max_pool():
    # a window whose real pixels are all -inf sends its gradient to the first
    # real pixel, never into the padding
    net = Network.from_dict({"input": [1, 5, 6], "layers": [
        {"type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": 1},
        {"type": "conv2d", "out_channels": 1, "kernel_size": 1}]})
    x = np.full((1, 5, 6), -np.inf, np.float32)
    x[0, 3:, 3:] = 1.0
    outputs = net.forward(x)
    for unit in [(0, 0, 0), (0, 1, 2), (0, 4, 5)]:
        cropped, full = same_field(net, x, 1, unit, outputs)
        np.testing.assert_array_equal(cropped, full)
    assert receptive.effective_receptive_field(net, x, 0, (0, 0, 0))[0, 0] == 1.0


def test_cropped_field_of_a_unit_that_only_sees_padding():
    net = Network.from_dict({"input": [1, 4, 4], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 1, "padding": 2}, {"type": "relu"}]})
    x = np.ones((1, 4, 4), np.float32)
    assert not net.effective_receptive_field(x, 1, (0, 0, 0)).any()
    assert net.effective_receptive_field(x, 0, (0, 3, 3)).any()


@pytest.mark.parametrize("spec", ERF_NETS + [EVERY_TYPE])
def test_cropped_field_matches_finite_differences(spec):
    net = Network.from_dict(spec, seed=5)
    rng = np.random.default_rng(6)
    randomize_norms(net, rng)
    x = f32(rng, *net.input_shape)
    outputs = net.forward(x)
    for layer in range(len(net)):
        unit = tuple(int(rng.integers(n)) for n in net.output_shapes[layer])
        cropped, full = same_field(net, x, layer, unit, outputs)
        close(cropped, ref_erf(net, x, layer, unit), rtol=1e-3)
