"""Receptive fields: the analytic table, and box + mask of single units against
a brute-force reference that propagates an indicator through each layer's
connectivity with plain loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnplay import Network, NetworkError
from strategies import networks


def conv(c=2, k=3, **kw):
    return {"type": "conv2d", "out_channels": c, "kernel_size": k, **kw}


def conv1(c=2, k=3, **kw):
    return {"type": "conv1d", "out_channels": c, "kernel_size": k, **kw}


def pool(k=2, **kw):
    return {"type": "maxpool2d", "kernel_size": k, **kw}


# ---------------------------------------------------------------------------
# The table

def alexnet(size=227):
    return {"input": [1, size, size], "layers": [
        conv(2, 11, stride=4), {"type": "relu"}, pool(3, stride=2),
        conv(2, 5, padding=2), {"type": "relu"}, pool(3, stride=2),
        conv(2, 3, padding=1), conv(2, 3, padding=1), conv(2, 3, padding=1), pool(3, stride=2),
        {"type": "flatten"}, {"type": "linear", "out_features": 3}]}


def vgg16(size=224):
    layers = []
    for n in (2, 2, 3, 3, 3):
        layers += [conv(1, 3, padding=1), {"type": "relu"}] * n + [pool(2)]
    return {"input": [1, size, size], "layers": layers}


def test_distill_alexnet_and_vgg16():
    # Araujo et al. (Distill 2019), table of receptive field sizes: AlexNet 195, VGG-16 212.
    rows = Network.from_dict(alexnet()).receptive_field_table()
    assert rows[9].size == (195, 195) and rows[9].jump == (32, 32)
    assert [r.size[0] for r in rows[:3]] == [11, 11, 19]
    rows = Network.from_dict(vgg16()).receptive_field_table()
    assert rows[-1].size == (212, 212) and rows[-1].jump == (32, 32)
    # VGG's padded 3x3 convs keep the first unit centred near the origin
    assert rows[0].start == (0.0, 0.0) and rows[0].left == (-1, -1)


def test_hand_computed_stacks():
    dil = Network.from_dict({"input": [1, 40], "layers": [conv1(1, 3, dilation=d) for d in (1, 2, 4)]})
    assert [r.size for r in dil.receptive_field_table()] == [(3,), (7,), (15,)]
    assert [r.jump for r in dil.receptive_field_table()] == [(1,), (1,), (1,)]
    strided = Network.from_dict({"input": [1, 64, 64], "layers": [conv(1, 3, stride=2)] * 3})
    rows = strided.receptive_field_table()
    assert [r.size for r in rows] == [(3, 3), (7, 7), (15, 15)]
    assert [r.jump for r in rows] == [(2, 2), (4, 4), (8, 8)]
    assert [r.start for r in rows] == [(1.0, 1.0), (3.0, 3.0), (7.0, 7.0)]
    # pooling: 2x2/2 then 3x3/3 (avg, padding 1), then a 1x1 conv: r = 2 + 2*2 = 6, j = 6
    pooled = Network.from_dict({"input": [1, 30, 30], "layers": [
        pool(2), {"type": "avgpool2d", "kernel_size": 3, "padding": 1}, conv(1, 1), {"type": "batchnorm"}]})
    rows = pooled.receptive_field_table()
    assert rows[1].size == (6, 6) and rows[1].jump == (6, 6) and rows[1].left == (-2, -2)
    assert rows[1].start == (0.5, 0.5)
    assert rows[2] .size == rows[3].size == (6, 6)
    # an even kernel centres between pixels; anisotropic sizes per axis
    even = Network.from_dict({"input": [1, 10, 12], "layers": [conv(1, [2, 4], stride=[1, 2], padding=[0, 1])]})
    row = even.receptive_field_table()[0]
    assert row.size == (2, 4) and row.jump == (1, 2) and row.start == (0.5, 0.5) and row.left == (0, -1)
    assert row.box((3, 2)) == ((3, 5), (3, 7))


def test_rows_after_flatten():
    net = Network.from_dict({"input": [2, 9, 9], "layers": [
        conv(2, 3, stride=2), {"type": "flatten"}, {"type": "relu"}, {"type": "linear", "out_features": 4},
        {"type": "relu"}]})
    rows = net.receptive_field_table()
    assert [r.kind for r in rows] == ["spatial", "flat", "flat", "global", "global"]
    assert rows[1].size == rows[2].size == (3, 3) and rows[1].jump == (2, 2)
    # the union of a 4x4 map's fields, 3 px each, 2 px apart: 3 + 3*2 = 9, the whole input
    assert rows[3].size == (9, 9) and rows[3].jump is None and rows[3].start == (4.0, 4.0)
    assert rows[3].box(()) == ((0, 9), (0, 9))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(1, 3)),
                min_size=1, max_size=4))
def test_table_matches_distill_closed_forms(spec):
    # r0 = 1 + sum_l (k_l' - 1) prod_{i<l} s_i ;  left0 = -sum_l p_l prod_{i<l} s_i
    layers = [conv1(1, k, stride=s, padding=p, dilation=d) for k, s, p, d in spec]
    try:
        net = Network.from_dict({"input": [1, 400], "layers": layers})
    except NetworkError:
        assume(False)
    rows = net.receptive_field_table()
    for n in range(1, len(spec) + 1):
        prods = [math.prod(s for _, s, _, _ in spec[:i]) for i in range(n)]
        r = 1 + sum((d * (k - 1)) * pr for (k, s, p, d), pr in zip(spec[:n], prods))
        left = -sum(p * pr for (k, s, p, d), pr in zip(spec[:n], prods))
        row = rows[n - 1]
        assert row.size == (r,) and row.jump == (math.prod(s for _, s, _, _ in spec[:n]),)
        assert row.left == (left,) and row.start == (left + (r - 1) / 2,)


# ---------------------------------------------------------------------------
# Exact fields: brute force

def brute_force(net, layer, unit, onto=None):
    """Mark every element that can influence `unit`, layer by layer, with loops.

    Returns (mask, box): mask over the target's spatial positions (any
    channel), box per axis from the unclipped set of virtual positions."""
    ind = np.zeros(net.output_shapes[layer], bool)
    ind[tuple(unit)] = True
    virt = {tuple(unit[1:])} if ind.ndim > 1 else None
    stop = -1 if onto is None else onto
    for i in range(layer, stop, -1):
        t, cfg, in_shape = net.layer_types[i], net.configs[i], net.input_shape_of(i)
        new = np.zeros(in_shape, bool)
        if t.name == "flatten":
            new = ind.reshape(in_shape).copy()
            if len(in_shape) > 1:
                virt = {tuple(int(v) for v in pos) for pos in zip(*np.nonzero(new.any(axis=0)))}
        elif t.name == "linear":
            new[:] = ind.any()
        elif t.name == "layernorm":
            if len(in_shape) == 1:
                new[:] = ind.any()
            else:
                new[:] = ind.any(axis=0)[None]
        elif t.name in ("batchnorm", "relu", "leaky_relu"):
            new = ind.copy()
        else:
            ks, ss, ps = cfg["kernel_size"], cfg["stride"], cfg["padding"]
            ds = cfg.get("dilation", (1,) * len(ks))
            is_conv = t.name.startswith("conv")
            taps = list(itertools.product(*(range(k) for k in ks)))
            for idx in zip(*np.nonzero(ind)):
                c, o = idx[0], idx[1:]
                chans = range(in_shape[0]) if is_conv else [c]
                for tap in taps:
                    pos = tuple(oa * s - p + ta * d for oa, s, p, ta, d in zip(o, ss, ps, tap, ds))
                    if all(0 <= q < n for q, n in zip(pos, in_shape[1:])):
                        for ci in chans:
                            new[(ci,) + pos] = True
            virt = {tuple(oa * s - p + ta * d for oa, s, p, ta, d in zip(o, ss, ps, tap, ds))
                    for o in virt for tap in taps}
        ind = new
    if virt is None:  # a flat target
        f = np.flatnonzero(ind)
        return ind, ((int(f.min()), int(f.max()) + 1),)
    mask = ind.any(axis=0)
    box = tuple((min(v[a] for v in virt), max(v[a] for v in virt) + 1) for a in range(mask.ndim))
    return mask, box


def check_unit(net, layer, unit, onto):
    rf = net.receptive_field(layer, unit, onto=onto)
    mask, box = brute_force(net, layer, unit, onto)
    assert rf.mask.shape == mask.shape == rf.shape
    np.testing.assert_array_equal(rf.mask, mask)
    assert rf.box == box
    assert rf.seen_count == int(mask.sum())
    assert rf.empty == (not mask.any())
    # what the UI shows: the box's positions on and off the map
    inside = math.prod(max(0, min(b, n) - max(a, 0)) for (a, b), n in zip(box, mask.shape))
    assert rf.inside_count == inside
    assert rf.padding_count == math.prod(b - a for a, b in box) - inside
    return rf


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                   HealthCheck.too_slow])
@given(networks(), st.data())
def test_box_and_mask_match_brute_force(net, data):
    layer = data.draw(st.integers(0, len(net) - 1))
    shape = net.output_shapes[layer]
    unit = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    onto = data.draw(st.one_of(st.none(), st.integers(0, layer - 1))) if layer > 0 else None
    check_unit(net, layer, unit, onto)
    check_all_maps(net, layer, unit)


def check_all_maps(net, layer, unit):
    """receptive_fields (one walk, what a click asks for) gives every earlier map the
    field receptive_field gives it, and the input's."""
    on_input, on_maps = net.receptive_fields(layer, unit)
    assert sorted(on_maps) == list(range(layer))
    for onto, got in [(None, on_input)] + sorted(on_maps.items()):
        want = net.receptive_field(layer, unit, onto=onto)
        assert (got.layer, got.unit, got.onto, got.shape, got.box, got.whole_map) == \
            (want.layer, want.unit, want.onto, want.shape, want.box, want.whole_map)
        assert all(np.array_equal(a, b) for a, b in zip(got.axis_masks, want.axis_masks))
        np.testing.assert_array_equal(got.mask, want.mask)
        assert not got.mask.flags.writeable and not any(m.flags.writeable for m in got.axis_masks)


def test_every_unit_of_a_small_network():
    net = Network.from_dict({"input": [1, 11, 9], "layers": [
        conv(2, 3, stride=[2, 3], padding=[3, 1], dilation=[2, 1]), {"type": "relu"},
        {"type": "avgpool2d", "kernel_size": 3, "stride": 1, "padding": 1}, conv(1, 2, stride=2, padding=2),
        {"type": "flatten"}, {"type": "linear", "out_features": 2}]})
    for layer in range(len(net)):
        for unit in itertools.product(*(range(n) for n in net.output_shapes[layer])):
            for onto in [None] + list(range(layer)):
                check_unit(net, layer, unit, onto)
            check_all_maps(net, layer, unit)


def test_dilation_holes_stride_gaps_and_borders():
    net = Network.from_dict({"input": [1, 12], "layers": [conv1(1, 3, dilation=2, padding=1)]})
    rf = net.receptive_field(0, (0, 0))
    assert rf.box == ((-1, 4),)  # the taps at -1, 1, 3
    assert rf.mask.tolist() == [False, True, False, True] + [False] * 8
    assert rf.padding_count == 1 and rf.seen_count == 2
    # stride larger than the kernel: gaps between neighbouring windows
    gaps = Network.from_dict({"input": [1, 12], "layers": [conv1(1, 2, stride=3), conv1(1, 2)]})
    rf = gaps.receptive_field(1, (0, 1))
    assert rf.box == ((3, 8),) and rf.mask.nonzero()[0].tolist() == [3, 4, 6, 7]


def test_a_unit_that_only_sees_padding_has_an_empty_mask():
    net = Network.from_dict({"input": [1, 5, 5], "layers": [conv(1, 1, padding=2)]})
    rf = net.receptive_field(0, (0, 0, 3))
    assert rf.empty and not rf.mask.any() and rf.mask.shape == (5, 5)
    assert rf.box == ((-2, -1), (1, 2)) and rf.padding_count == 1 and rf.padding_fraction == 1.0


def test_flatten_and_linear_units():
    net = Network.from_dict({"input": [2, 8, 8], "layers": [
        conv(3, 3, stride=2, padding=1), {"type": "flatten"}, {"type": "relu"},
        {"type": "linear", "out_features": 2}]})
    c, y, x = 2, 1, 3
    f = (c * 4 + y) * 4 + x
    a = net.receptive_field(1, (f,))
    b = net.receptive_field(0, (c, y, x))
    assert a.box == b.box and np.array_equal(a.mask, b.mask) and not a.whole_map
    assert np.array_equal(net.receptive_field(2, (f,)).mask, b.mask)
    lin = net.receptive_field(3, (1,))
    assert lin.whole_map and lin.mask.all() and lin.box == ((-1, 8), (-1, 8))
    # onto the flat map: the feature itself, or every feature
    onto_flat = net.receptive_field(2, (f,), onto=1)
    assert onto_flat.shape == (48,) and onto_flat.box == ((f, f + 1),) and onto_flat.seen_count == 1
    assert net.receptive_field(3, (0,), onto=2).mask.all()


def test_result_is_frozen_and_read_only():
    net = Network.from_dict({"input": [1, 6, 6], "layers": [conv(1, 3)]})
    rf = net.receptive_field(0, (0, 1, 1))
    with pytest.raises(Exception):
        rf.box = ((0, 1), (0, 1))
    with pytest.raises(ValueError):
        rf.mask[0, 0] = True


@pytest.mark.parametrize("layer, unit, onto", [
    (2, (0, 0, 0), None), (-1, (0, 0, 0), None), (True, (0, 0, 0), None), ("0", (0, 0, 0), None),
    (0, (0, 0), None), (0, (1, 0, 0), None), (0, (0, 4, 0), None), (0, (0, -1, 0), None),
    (0, (0, 0.5, 0), None), (0, None, None), (1, (0,), 1), (1, (0,), 5), (1, (0,), -1),
])
def test_bad_layer_unit_or_onto(layer, unit, onto):
    net = Network.from_dict({"input": [1, 6, 6], "layers": [conv(1, 3), {"type": "flatten"}]})
    with pytest.raises(NetworkError):
        net.receptive_field(layer, unit, onto=onto)
    if onto is None:
        with pytest.raises(NetworkError):
            net.receptive_fields(layer, unit)
