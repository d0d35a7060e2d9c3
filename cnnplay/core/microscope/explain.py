"""How one unit's value was computed: the arithmetic, step by step, with numbers.

`explain(net, x, outputs, layer, unit)` walks the *block* the unit belongs to:
the last layer at or before it that mixes values (conv, pooling, flatten,
linear; or the input when there is none) and the pointwise layers after that
one (batch norm, layer norm, ReLU, LeakyReLU) up to the next mixing layer. It
returns one step per layer of the block:

- conv: per input channel the input window under the kernel (the whole span of
  the dilated kernel, with the holes between taps and the cells that lie in the
  padding marked), the kernel, the element-wise products and their sum; then
  sum over channels + bias. With many input channels the strongest ones (by
  |sum|) are listed and the rest summarised in one line.
- pooling: the window, and which cell wins (max) or the average (PyTorch's
  count_include_pad: padded zeros count).
- linear: the largest terms w_i * x_i, the rest summed, plus the bias.
- flatten: which input element it copies.
- batch norm, layer norm, ReLU, LeakyReLU: the formula with its numbers.

Every number is recomputed in float64 from the maps of the forward pass (the
window positions from the layer's Window and geometry.window_taps, the same
rules the kernels and receptive fields use), and every step keeps the value
the map holds (`map_value`) beside the value its numbers give (`value`): they
agree to float32 rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import NetworkError
from ..geometry import window_taps
from ..layers import ChannelNorm, Conv, Flatten, LayerNorm, LeakyReLU, Linear, Pool
from ..receptive import _check_layer, _check_unit

TOP_CHANNELS = 6  # conv: input channels listed one by one (the rest in one line)
TOP_TERMS = 8  # linear: terms w_i * x_i listed one by one


def fmt(v: float) -> str:
    """A number as the panel shows it: 3 significant digits."""
    v = float(v)
    if v == 0:
        return "0"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    s = f"{v:.3g}"
    return s.replace("e-0", "e-").replace("e+0", "e+")


def unit_name(unit: tuple[int, ...]) -> str:
    names = {3: ("c", "y", "x"), 2: ("c", "l"), 1: ("f",)}[len(unit)]
    return ", ".join(f"{n} {u}" for n, u in zip(names, unit))


# ---------------------------------------------------------------------------
# Steps

@dataclass(frozen=True, eq=False)
class Window:
    """The cells one window reads on one input channel. Arrays are 2D: (1, n)
    for a 1D signal. `region` covers the whole span of the (dilated) window;
    `taps` marks the cells the kernel reads (False: a dilation hole), `padding`
    the cells outside the input. `values` are the tapped values (kernel-shaped;
    the layer's padding value where a tap lies in padding)."""

    channel: int
    origin: tuple[int, ...]  # input coordinates of region[0, 0] (per spatial axis; may be negative)
    region: np.ndarray  # float64 span-shaped; padding cells hold the padding value
    padding: np.ndarray  # bool span-shaped
    taps: np.ndarray  # bool span-shaped
    values: np.ndarray  # float64 kernel-shaped
    tap_padding: np.ndarray  # bool kernel-shaped: the tap lies in padding


@dataclass(frozen=True, eq=False)
class ConvChannel:
    window: Window
    kernel: np.ndarray  # float64 kernel-shaped (1, k) in 1D
    products: np.ndarray  # kernel * values
    total: float  # sum of products


@dataclass(frozen=True, eq=False)
class Step:
    """One layer of the block. `value` is what the step's numbers give,
    `map_value` what the layer's output map holds at the unit."""

    layer: int  # -1: the network's input
    name: str  # layer type name ("input" for the input)
    summary: str
    unit: tuple[int, ...]
    value: float
    map_value: float
    kind = "step"

    def lines(self) -> list[str]:
        return [f"= {fmt(self.value)}"]


@dataclass(frozen=True, eq=False)
class InputStep(Step):
    kind = "input"

    def lines(self):
        return [f"input ({unit_name(self.unit)}) = {fmt(self.value)}"]


@dataclass(frozen=True, eq=False)
class ConvStep(Step):
    channels: tuple[ConvChannel, ...] = ()  # listed one by one
    rest_count: int = 0  # channels summarised in one line
    rest_sum: float = 0.0
    channel_sums: np.ndarray = field(default_factory=lambda: np.zeros(0))  # every input channel's sum
    bias: float | None = None
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    kind = "conv"

    def lines(self):
        out = [f"channel {ch.window.channel}: sum of {ch.products.size} products = {fmt(ch.total)}"
               for ch in self.channels]
        if self.rest_count:
            out.append(f"{self.rest_count} other channels: {fmt(self.rest_sum)}")
        terms = [fmt(ch.total) for ch in self.channels] + ([fmt(self.rest_sum)] if self.rest_count else [])
        if self.bias is not None:
            terms.append(f"bias {fmt(self.bias)}")
        out.append(" + ".join(terms) + f" = {fmt(self.value)}")
        return out


@dataclass(frozen=True, eq=False)
class PoolStep(Step):
    window: Window | None = None
    mode: str = "max"  # "max" or "avg"
    winner: tuple[int, int] | None = None  # max: (row, col) in the kernel-shaped values
    total: float = 0.0  # avg: sum of the window (padded zeros included)
    count: int = 1  # avg: divided by (kernel size)
    kind = "pool"

    def lines(self):
        if self.mode == "max":
            return [f"max of the {self.window.values.size} values in the window = {fmt(self.value)}"]
        return [f"{fmt(self.total)} / {self.count} = {fmt(self.value)}"]


@dataclass(frozen=True, eq=False)
class LinearTerm:
    index: int  # input feature
    weight: float
    x: float
    product: float
    source: tuple[int, ...] | None  # the unit of the map that a flatten before this layer copied


@dataclass(frozen=True, eq=False)
class LinearStep(Step):
    terms: tuple[LinearTerm, ...] = ()  # the largest |w_i * x_i|
    rest_count: int = 0
    rest_sum: float = 0.0
    bias: float | None = None
    kind = "linear"

    def lines(self):
        out = [f"{fmt(t.weight)} x {fmt(t.x)} = {fmt(t.product)}  (input {t.index})" for t in self.terms]
        if self.rest_count:
            out.append(f"{self.rest_count} other inputs: {fmt(self.rest_sum)}")
        terms = [fmt(t.product) for t in self.terms] + ([fmt(self.rest_sum)] if self.rest_count else [])
        if self.bias is not None:
            terms.append(f"bias {fmt(self.bias)}")
        out.append(" + ".join(terms) + f" = {fmt(self.value)}")
        return out


@dataclass(frozen=True, eq=False)
class FlattenStep(Step):
    source: tuple[int, ...] = ()  # the unit of the input map it copies
    kind = "flatten"

    def lines(self):
        return [f"copies ({unit_name(self.source)}) = {fmt(self.value)}"]


@dataclass(frozen=True, eq=False)
class PointwiseStep(Step):
    x: float = 0.0  # the value coming in (the previous map's value)
    formula: str = ""  # with names, e.g. "(x - mean) / sqrt(var + eps) * weight + bias"
    equation: str = ""  # with the numbers, ending in "= value"
    numbers: dict = field(default_factory=dict)
    kind = "pointwise"

    def lines(self):
        return [self.equation]


@dataclass(frozen=True, eq=False)
class Explanation:
    """The steps of the unit's block, in order; `selected` indexes the step of
    the layer asked about, whose map value is `value`."""

    layer: int
    unit: tuple[int, ...]
    value: float
    steps: tuple[Step, ...]
    selected: int

    def chain(self) -> str:
        """The block in one line, e.g. '3.21 -> batchnorm -> 1.71 -> relu -> 1.71'."""
        parts = [fmt(self.steps[0].value)]
        for s in self.steps[1:]:
            parts += [s.name, fmt(s.value)]
        return " -> ".join(parts)

    def text(self) -> str:
        out = []
        for s in self.steps:
            out.append(f"layer {s.layer} {s.summary}:" if s.layer >= 0 else "input:")
            out += ["  " + line for line in s.lines()]
        return "\n".join(out)


# ---------------------------------------------------------------------------

def _pointwise(t) -> bool:
    return isinstance(t, (ChannelNorm, LeakyReLU))


def block_of(net, layer: int) -> tuple[int, int]:
    """(first, last): the mixing layer the unit's value comes from (-1: the
    input) and the last pointwise layer after it; first <= layer <= last."""
    first = layer
    while first >= 0 and _pointwise(net.layer_types[first]):
        first -= 1
    last = layer
    while last + 1 < len(net) and _pointwise(net.layer_types[last + 1]):
        last += 1
    return first, last


def explain(net, x, outputs, layer, unit, top_channels: int = TOP_CHANNELS,
            top_terms: int = TOP_TERMS) -> Explanation:
    """The computation of `unit` of `layer` (see the module docstring).

    x: the network's input; outputs: every layer's output for it (at least up
    to the end of the unit's block, e.g. Network.forward(x))."""
    layer = _check_layer(net, layer)
    unit = _check_unit(net, layer, unit)
    x = net.check_input(x)
    first, last = block_of(net, layer)
    if len(outputs) <= last:
        raise NetworkError(f"outputs holds {len(outputs)} layers, need at least {last + 1}")
    for i in range(last + 1):
        if tuple(np.shape(outputs[i])) != tuple(net.output_shapes[i]):
            raise NetworkError(f"outputs[{i}] is {tuple(np.shape(outputs[i]))}, layer {i} "
                               f"outputs {tuple(net.output_shapes[i])}", i)

    def map_of(i):
        return x if i < 0 else outputs[i]

    summaries = net.summaries
    steps: list[Step] = []
    if first < 0:
        v = float(x[unit])
        steps.append(InputStep(-1, "input", "input", unit, v, v))
    else:
        steps.append(_mixing_step(net, first, map_of(first - 1), outputs[first], unit, summaries[first],
                                  top_channels, top_terms))
    for i in range(first + 1, last + 1):
        steps.append(_pointwise_step(net, i, map_of(i - 1), outputs[i], unit, summaries[i]))
    return Explanation(layer, unit, float(outputs[layer][unit]), tuple(steps), layer - first)


# -- mixing layers --------------------------------------------------------------

def _window(xin: np.ndarray, channel: int, out_pos, win, pad_value: float) -> Window:
    """The window of output position `out_pos` on one input channel (2D arrays;
    a 1D signal is a map of height 1)."""
    maps = xin[:, None, :] if xin.ndim == 2 else xin
    w2 = win.as_2d()
    pos = (0,) + tuple(out_pos) if len(out_pos) == 1 else tuple(out_pos)
    taps = [list(window_taps(o, k, s, p, d)) for o, k, s, p, d in
            zip(pos, w2.kernel, w2.stride, w2.padding, w2.dilation)]
    origin = [t[0] for t in taps]
    span = [t[-1] - t[0] + 1 for t in taps]
    n = maps.shape[1:]
    ys, xs = np.arange(origin[0], origin[0] + span[0]), np.arange(origin[1], origin[1] + span[1])
    inside = ((ys >= 0) & (ys < n[0]))[:, None] & ((xs >= 0) & (xs < n[1]))[None, :]
    region = np.full(span, pad_value, np.float64)
    cy, cx = np.clip(ys, 0, n[0] - 1), np.clip(xs, 0, n[1] - 1)
    vals = maps[channel][np.ix_(cy, cx)].astype(np.float64)
    region[inside] = vals[inside]
    tap_mask = np.zeros(span, bool)
    ty, tx = np.array(taps[0]) - origin[0], np.array(taps[1]) - origin[1]
    tap_mask[np.ix_(ty, tx)] = True
    values = region[np.ix_(ty, tx)]
    tap_pad = ~inside[np.ix_(ty, tx)]
    for a in (region, values, inside, tap_mask, tap_pad):
        a.flags.writeable = False
    real_origin = tuple(origin[1:]) if xin.ndim == 2 else tuple(origin)
    return Window(channel, real_origin, region, ~inside, tap_mask, values, tap_pad)


def _mixing_step(net, i, xin, y, unit, summary, top_channels, top_terms) -> Step:
    t, cfg = net.layer_types[i], net.configs[i]
    params = net.params(i)
    map_value = float(y[unit])
    name = t.name
    if isinstance(t, Conv):
        win = net.windows[i]
        c_out, pos = unit[0], unit[1:]
        weight = params["weight"][c_out].astype(np.float64)
        if weight.ndim == 2:  # conv1d: (Ci, k) -> (Ci, 1, k)
            weight = weight[:, None, :]
        chans = []
        for c in range(xin.shape[0]):
            w = _window(xin, c, pos, win, 0.0)
            prod = weight[c] * w.values
            chans.append(ConvChannel(w, weight[c], prod, float(prod.sum())))
        sums = np.array([ch.total for ch in chans], np.float64)
        bias = float(params["bias"][c_out]) if "bias" in params else None
        if len(chans) <= top_channels:
            shown, rest = chans, []
        else:
            order = sorted(range(len(chans)), key=lambda c: (-abs(sums[c]), c))
            shown = [chans[c] for c in order[:top_channels]]
            rest = order[top_channels:]
        rest_sum = float(sums[rest].sum()) if rest else 0.0
        value = float(sums.sum()) + (bias or 0.0)
        return ConvStep(i, name, summary, unit, value, map_value, tuple(shown), len(rest), rest_sum, sums,
                        bias, win.stride, win.padding, win.dilation)
    if isinstance(t, Pool):
        win = net.windows[i]
        w = _window(xin, unit[0], unit[1:], win, float(t.pad_value))
        vals = w.values
        if t.mode == "max":
            cand = np.where(w.tap_padding, -np.inf, vals)
            r, c = np.unravel_index(int(np.argmax(cand)), cand.shape)
            value = float(cand[r, c])
            return PoolStep(i, name, summary, unit, value, map_value, w, "max", (int(r), int(c)))
        total = float(np.where(w.tap_padding, 0.0, vals).sum())
        count = int(vals.size)
        return PoolStep(i, name, summary, unit, total / count, map_value, w, "avg", None, total, count)
    if isinstance(t, Flatten):
        src = tuple(int(v) for v in np.unravel_index(unit[0], xin.shape))
        return FlattenStep(i, name, summary, unit, float(xin[src]), map_value, src)
    if isinstance(t, Linear):
        o = unit[0]
        w = params["weight"][o].astype(np.float64)
        xv = np.asarray(xin, np.float64)
        prod = w * xv
        order = sorted(range(prod.size), key=lambda f: (-abs(prod[f]), f))
        shown, rest = order[:top_terms], order[top_terms:]
        before = net.input_shape_of(i - 1) if i > 0 and isinstance(net.layer_types[i - 1], Flatten) else None
        terms = tuple(LinearTerm(f, float(w[f]), float(xv[f]), float(prod[f]),
                                 tuple(int(v) for v in np.unravel_index(f, before)) if before else None)
                      for f in shown)
        bias = float(params["bias"][o]) if "bias" in params else None
        value = float(prod.sum()) + (bias or 0.0)
        return LinearStep(i, name, summary, unit, value, map_value, terms, len(rest),
                          float(prod[rest].sum()) if rest else 0.0, bias)
    raise NetworkError(f"cannot explain a {name} layer", i)  # every mixing type is handled above


# -- pointwise layers -------------------------------------------------------------

def _pointwise_step(net, i, xin, y, unit, summary) -> PointwiseStep:
    t, cfg = net.layer_types[i], net.configs[i]
    params = net.params(i)
    xv = float(xin[unit])
    map_value = float(y[unit])
    name = t.name
    if isinstance(t, LeakyReLU):
        slope = t.slope(cfg)
        value = xv if xv > 0 else xv * slope
        if slope == 0:
            formula = "max(x, 0)"
            eq = f"max({fmt(xv)}, 0) = {fmt(value)}"
        else:
            formula = f"x if x > 0 else {fmt(slope)} * x"
            eq = (f"{fmt(xv)} > 0: {fmt(value)}" if xv > 0 else f"{fmt(slope)} * {fmt(xv)} = {fmt(value)}")
        return PointwiseStep(i, name, summary, unit, value, map_value, xv, formula, eq, {"slope": slope})
    c = unit[0]
    eps = float(cfg["eps"])
    w, b = float(params["weight"][c]), float(params["bias"][c])
    if isinstance(t, LayerNorm):
        # over the channels at the unit's position (all features of a flat vector)
        col = np.asarray(xin[(slice(None),) + tuple(unit[1:])], np.float64).reshape(-1)
        mean, var = float(col.mean()), float(col.var())
        where = f"over the {col.size} channels at this position" if len(unit) > 1 else \
            f"over the {col.size} features"
        formula = f"(x - mean) / sqrt(var + eps) * weight + bias   (mean, var {where})"
    else:
        mean, var = float(params["running_mean"][c]), float(params["running_var"][c])
        formula = "(x - running_mean) / sqrt(running_var + eps) * weight + bias"
    value = (xv - mean) / math.sqrt(var + eps) * w + b
    eq = f"({fmt(xv)} - {fmt(mean)}) / sqrt({fmt(var)} + {fmt(eps)}) * {fmt(w)} + {fmt(b)} = {fmt(value)}"
    nums = {"mean": mean, "var": var, "eps": eps, "weight": w, "bias": b}
    return PointwiseStep(i, name, summary, unit, value, map_value, xv, formula, eq, nums)
