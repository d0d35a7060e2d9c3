"""Hypothesis fuzzing of network descriptions through the core.

Only NetworkError ever comes out of Network.from_dict, whatever the input
(random types, fields, values, garbage types, deep nesting, huge numbers);
every description it accepts computes a forward pass with the shapes it
promised, round-trips through to_dict and through the file format.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnplay import LAYER_TYPES, Network, NetworkError
from cnnplay.core.fileformat import bundle_from_bytes, network_bytes

TYPES = sorted(LAYER_TYPES)
FIELDS = sorted({f.name for t in LAYER_TYPES.values() for f in t.fields})


class Weird:
    """An object whose repr and comparisons misbehave."""

    def __repr__(self):
        raise RuntimeError("no repr for you")

    def __eq__(self, other):
        raise RuntimeError("no eq for you")

    __hash__ = object.__hash__


def deep_list(n: int):
    v = []
    for _ in range(n):
        v = [v]
    return v


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.binary(max_size=4),
    st.complex_numbers(max_magnitude=10), st.builds(pow, st.sampled_from([10, -10]), st.just(5001)),
    st.builds(Weird), st.builds(object), st.sampled_from([frozenset({1}), np.int64(3), np.float32(2.5), math.pi]),
    st.builds(deep_list, st.integers(2000, 3000)),
)
garbage = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=4)), max_leaves=12)

small_size = st.one_of(st.integers(-1, 6), st.lists(st.integers(-1, 6), min_size=1, max_size=3))
plausible = {
    "out_channels": st.integers(-1, 6), "out_features": st.integers(-1, 6),
    "kernel_size": small_size, "stride": small_size, "padding": small_size, "dilation": small_size,
    "bias": st.booleans(), "eps": st.floats(-0.1, 1.0), "negative_slope": st.floats(-2, 2),
}


@st.composite
def layers(draw, valid_leaning: bool):
    if draw(st.integers(0, 19)) == 0:
        return draw(garbage)
    kind = draw(st.sampled_from(TYPES)) if draw(st.integers(0, 9)) else draw(garbage)
    layer = {"type": kind}
    real = isinstance(kind, str) and kind in LAYER_TYPES
    known = [f.name for f in LAYER_TYPES[kind].fields] if real else FIELDS
    for name in draw(st.lists(st.sampled_from(known), unique=True)) if known else []:
        wild = not valid_leaning or draw(st.integers(0, 9)) == 0
        layer[name] = draw(garbage) if wild else draw(plausible[name])
    if real and not valid_leaning:
        if draw(st.booleans()):
            layer[draw(st.sampled_from(FIELDS + ["colour", "", "type2"]))] = draw(garbage)
    if draw(st.integers(0, 4)) == 0:
        layer["id"] = draw(st.one_of(st.text(max_size=4), st.integers(), garbage))
    return layer


def input_shapes(valid_leaning: bool):
    good = st.one_of(st.lists(st.integers(1, 4), min_size=1, max_size=1).flatmap(
        lambda c: st.tuples(st.just(c[0]), st.integers(1, 12), st.integers(1, 12)).map(list)),
        st.tuples(st.integers(1, 4), st.integers(1, 24)).map(list))
    return good if valid_leaning else st.one_of(good, garbage, st.lists(st.integers(-2, 10**12), max_size=4))


@st.composite
def specs(draw, valid_leaning: bool):
    if not valid_leaning and draw(st.integers(0, 19)) == 0:
        return draw(garbage)
    spec = {"input": draw(input_shapes(valid_leaning)),
            "layers": draw(st.lists(layers(valid_leaning), max_size=6))}
    if not valid_leaning:
        if draw(st.integers(0, 9)) == 0:
            del spec["input"]
        if draw(st.integers(0, 9)) == 0:
            spec["layers"] = draw(garbage)
        if draw(st.integers(0, 14)) == 0:
            spec[draw(st.text(max_size=5))] = draw(garbage)
    return spec


def _size(dims, lo, hi):
    return st.one_of(st.integers(lo, hi), st.lists(st.integers(lo, hi), min_size=dims, max_size=dims))


@st.composite
def valid_leaning_specs(draw):
    """Descriptions built to be mostly valid: shapes of the right rank, fields in range."""
    dims = draw(st.sampled_from([1, 2]))
    shape = [draw(st.integers(1, 3))] + [draw(st.integers(1, 12)) for _ in range(dims)]
    flat_types = ["relu", "leaky_relu", "linear", "batchnorm", "layernorm"]
    spatial_types = [f"conv{dims}d", f"conv{dims}d", f"maxpool{dims}d", f"avgpool{dims}d", "batchnorm",
                     "layernorm", "relu", "leaky_relu", "flatten"]
    out, flat = [], False
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(flat_types if flat else spatial_types))
        layer = {"type": kind}
        if kind.startswith("conv"):
            layer["out_channels"] = draw(st.integers(1, 5))
        if kind == "linear":
            layer["out_features"] = draw(st.integers(1, 5))
        if "conv" in kind or "pool" in kind:
            k = draw(st.integers(1, 4))
            layer["kernel_size"] = k
            if draw(st.booleans()):
                layer["stride"] = draw(_size(dims, 1, 3))
            if draw(st.booleans()):
                layer["padding"] = draw(st.integers(0, k // 2))
            if "conv" in kind and draw(st.booleans()):
                layer["dilation"] = draw(_size(dims, 1, 3))
        if kind in ("conv1d", "conv2d", "linear") and draw(st.booleans()):
            layer["bias"] = draw(st.booleans())
        if "norm" in kind and draw(st.booleans()):
            layer["eps"] = draw(st.floats(1e-6, 1.0))
        if kind == "leaky_relu" and draw(st.booleans()):
            layer["negative_slope"] = draw(st.floats(-1, 1))
        flat = flat or kind == "flatten"
        out.append(layer)
    return {"input": shape, "layers": out}


def check_error(e: NetworkError, spec):
    assert type(e).__name__ == "NetworkError"
    msg = str(e)
    assert msg and len(msg) < 1000, msg
    if e.layer is not None:
        assert isinstance(spec, dict) and 0 <= e.layer < len(spec["layers"])
        assert msg.startswith(f"layer {e.layer}")


def build(spec):
    """Network or NetworkError; anything else fails the test."""
    try:
        return Network.from_dict(spec, seed=1)
    except NetworkError as e:
        check_error(e, spec)
        return e


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(specs(valid_leaning=False))
def test_garbage_gives_only_network_errors(spec):
    build(spec)
    try:
        Network.from_dict(spec, partial=True)
    except NetworkError as e:  # partial still refuses a broken top level
        check_error(e, spec)
        assert e.layer is None


def _partial_agrees(spec, result):
    net = Network.from_dict(spec, partial=True)
    if isinstance(result, NetworkError):
        if result.layer is not None:
            assert str(net.error) == str(result) and len(net) == result.layer
    else:
        assert net.error is None and len(net) == len(result)


@FUZZ
@given(specs(valid_leaning=True))
def test_plausible_specs_are_checked_and_partial_agrees(spec):
    result = build(spec)
    _partial_agrees(spec, result)
    if isinstance(result, Network):
        d = result.to_dict()
        assert Network.from_dict(d).to_dict() == d
        assert len(result.output_shapes) == len(result.parameter_counts) == len(spec["layers"])
        assert all(all(isinstance(v, int) and v >= 1 for v in s) for s in result.output_shapes)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(valid_leaning_specs(), st.integers(0, 2**32 - 1))
def test_every_valid_network_computes(spec, seed):
    result = build(spec)
    _partial_agrees(spec, result)
    if isinstance(result, NetworkError):
        return
    x = np.random.default_rng(seed).standard_normal(result.input_shape).astype(np.float32)
    outputs = result.forward(x)
    assert len(outputs) == len(result)
    for out, shape in zip(outputs, result.output_shapes):
        assert out.shape == shape and out.dtype == np.float32
        assert np.isfinite(out).all()
    back, _ = bundle_from_bytes(network_bytes(result), "fuzz.cnnplay")
    for a, b in zip(outputs, back.forward(x)):
        assert np.array_equal(a, b)


# -- targeted cases the fuzzer found or that matter most -----------------------------

@pytest.mark.parametrize("layer, field, fragment", [
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 10**5000}, "kernel_size", "at most"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 10**30}, "stride", "at most"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": -(10**5000)}, "kernel_size", "at least"),
    ({"type": "batchnorm", "eps": 10**400}, "eps", "finite"),
    ({"type": "leaky_relu", "negative_slope": float("nan")}, "negative_slope", "finite"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": deep_list(5000)}, "kernel_size", "needs [h, w]"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": [deep_list(5000), 1]}, "kernel_size", "integer"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "id": [1, 2]}, "id", "string or an integer"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "id": {"a": deep_list(5000)}}, "id", "string"),
    ({"type": "relu", 12: 1}, "12", "unknown field"),
    ({"type": "relu", "x" * 10000: 1}, None, "unknown field"),
    ({"type": "conv1d", "out_channels": 2, "kernel_size": 3}, None, "use conv2d"),
    ({"type": "maxpool2d", "kernel_size": 3, "padding": 2}, "padding", "more than half"),
    ({"type": "conv2d", "out_channels": 1, "kernel_size": 3, "dilation": 9}, "kernel_size", "spans 19 px"),
    ({"type": "linear", "out_features": 3}, None, "add a flatten layer"),
])
def test_targeted_errors_name_layer_and_field(layer, field, fragment):
    spec = {"input": [2, 8, 8], "layers": [{"type": "relu"}, layer]}
    with pytest.raises(NetworkError) as info:
        Network.from_dict(spec)
    e = info.value
    assert e.layer == 1 and fragment in str(e) and len(str(e)) < 400
    if field is not None:
        assert e.field == field


@pytest.mark.parametrize("raw", [None, "3,8,8", [3, 8], [3, 8, 8, 8], [0, 8, 8], [3, True, 8],
                                 [3, 2**31, 8], [3, 8.0, 8], deep_list(5000), [10**5000, 1]])
def test_bad_input_shapes(raw):
    spec = {"input": raw, "layers": []}
    if raw == [3, 8]:
        assert Network.from_dict(spec).input_shape == (3, 8)
        return
    with pytest.raises(NetworkError) as info:
        Network.from_dict(spec)
    assert info.value.field == "input" and len(str(info.value)) < 400
