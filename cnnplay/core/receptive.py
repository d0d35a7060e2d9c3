"""Receptive fields: the analytic table, the exact field of one unit, and the
effective (gradient) field.

Coordinates. Input pixel i along an axis has coordinate i; the field of a unit
is a set of input pixels. Everything here is per spatial axis: (H, W) for
images, (L,) for 1D signals.

The analytic table (Araujo, Norris and Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019). For layer l with kernel k,
stride s, padding p and dilation d, the effective kernel is k' = d(k-1)+1 and

    r_l = r_{l-1} + (k' - 1) j_{l-1}         (field size)
    j_l = j_{l-1} s                          (jump between neighbouring units)
    left_l = left_{l-1} - p j_{l-1}          (first input pixel of unit 0)
    start_l = left_l + (r_l - 1) / 2         (centre of unit 0's field)

from r_0 = j_0 = 1, left_0 = 0. Norms and activations are 1x1 windows (no
change); pooling follows the same rules as convolution with d = 1. Unit o's
field is the half-open box [left + o j, left + o j + r), which may reach
outside the input (into padding): the box is never clipped.

After flatten the output has no spatial axes. The table then describes:
- "flat" rows (flatten, and batchnorm/relu/leaky_relu after it): each unit is
  one position of the map that was flattened, so size/jump/start are those of
  that map (jump between neighbouring *positions* of it, not of flat units);
- "global" rows (linear, layernorm on a flat vector, and every layer after
  either): every unit sees the whole map before flatten; size is the extent
  of the union of all its positions' fields, jump is None and start the
  centre of that union.

Exact field. `receptive_field(net, layer, unit)` walks the network backwards
from the unit and keeps, per spatial axis, the set of positions (a 1D bool
mask) that can influence it, and the unclipped box. Every windowed layer
connects output o to inputs o*s - p + t*d (t < k) along each axis
independently, and its window is the product of its per-axis windows, so the
preimage of a product set is the product of the per-axis preimages; padding
positions are dropped (they hold constants), which is where borders show.
Pointwise layers keep the sets, convolutions and layer norm mix channels but
not positions, and the mask ignores channels. After flatten a unit is one
position (a singleton) or, after linear/layernorm, the whole map. So the field
of any unit is exactly a product of 1D masks: the 2D mask is their outer
product, computed in microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import NetworkError, short_repr
from .geometry import window_span
from .layers import Flatten, LayerNorm, Linear


# ---------------------------------------------------------------------------
# The analytic table

@dataclass(frozen=True)
class FieldRow:
    """One layer of the receptive-field table; tuples have one entry per
    spatial axis of the network's input ((H, W) or (L,))."""

    layer: int
    name: str  # layer type
    kind: str  # "spatial", "flat" or "global" (see the module docstring)
    size: tuple[int, ...]  # r: field size in input pixels
    jump: tuple[int, ...] | None  # j: input pixels between neighbouring units; None for "global"
    start: tuple[float, ...]  # centre of the first unit's field (input coordinates)
    left: tuple[int, ...]  # first input pixel of the first unit's field (start - (r-1)/2)

    def box(self, position: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """The unclipped half-open box of the unit at `position` (spatial rows),
        or the union box (global rows)."""
        if self.jump is None:
            return tuple((a, a + r) for a, r in zip(self.left, self.size))
        return tuple((a + o * j, a + o * j + r) for a, o, j, r in zip(self.left, position, self.jump, self.size))


def _axis_windows(net, i):
    """Per-axis (k, s, p, d) of layer i, or None for a layer without spatial
    connectivity (flatten, linear) or one working on a flat vector."""
    w = net.windows[i]
    if w is None or len(w.kernel) == 0:
        return None
    return tuple(zip(w.kernel, w.stride, w.padding, w.dilation))


def _mixes_all(net, i) -> bool:
    """A layer on a flat vector whose every output depends on every input."""
    t = net.layer_types[i]
    return isinstance(t, Linear) or (isinstance(t, LayerNorm) and len(net.input_shape_of(i)) == 1)


def receptive_field_table(net) -> list[FieldRow]:
    """One FieldRow per layer, in input coordinates (Distill's closed forms)."""
    dims = len(net.input_shape) - 1
    r, j, left = [1] * dims, [1] * dims, [0] * dims
    kind = "spatial"
    flat_map: tuple[int, ...] | None = None  # spatial shape of the map that was flattened
    rows = []
    for i, t in enumerate(net.layer_types):
        in_shape = net.input_shape_of(i)
        if kind == "spatial":
            if isinstance(t, Flatten):
                kind, flat_map = "flat", in_shape[1:]
            else:
                for a, (k, s, p, d) in enumerate(_axis_windows(net, i)):
                    left[a] -= p * j[a]
                    r[a] += (window_span(k, d) - 1) * j[a]
                    j[a] *= s
        if kind == "flat" and _mixes_all(net, i):
            # the union of the fields of every position of the flattened map
            r = [rr + (n - 1) * jj for rr, n, jj in zip(r, flat_map, j)]
            kind = "global"
        size = tuple(r)
        rows.append(FieldRow(i, t.name, kind, size, None if kind == "global" else tuple(j),
                             tuple(a + (rr - 1) / 2 for a, rr in zip(left, size)), tuple(left)))
    return rows


# ---------------------------------------------------------------------------
# The exact field of one unit

@dataclass(frozen=True, eq=False)
class ReceptiveField:
    """The exact receptive field of one unit on the input or on an earlier map.

    shape: the spatial shape of the target map ((H, W), (L,), or (F,) when
    `onto` is a flat layer: then the one axis is the feature index).
    box: per axis the half-open (start, stop) of the analytic field, unclipped
    (it may reach into the padding or beyond the map).
    axis_masks: per axis a 1D bool array: positions that can influence the unit.
    mask: their outer product, a bool array of `shape` (may be all False).
    whole_map: the unit sees the whole map before flatten (linear and later).
    """

    layer: int
    unit: tuple[int, ...]
    onto: int | None
    shape: tuple[int, ...]
    box: tuple[tuple[int, int], ...]
    axis_masks: tuple[np.ndarray, ...]
    mask: np.ndarray
    whole_map: bool

    @property
    def box_size(self) -> tuple[int, ...]:
        """Extent of the box per axis (the field size r)."""
        return tuple(b - a for a, b in self.box)

    @property
    def box_area(self) -> int:
        """Positions in the box, inside the map or not."""
        return math.prod(self.box_size)

    @property
    def box_clipped(self) -> tuple[tuple[int, int], ...]:
        """The box clipped to the map (an axis may become empty: start == stop)."""
        out = []
        for (a, b), n in zip(self.box, self.shape):
            lo, hi = min(max(a, 0), n), max(min(b, n), 0)
            out.append((lo, max(lo, hi)))
        return tuple(out)

    @property
    def inside_count(self) -> int:
        """Box positions that lie on the map."""
        return math.prod(b - a for a, b in self.box_clipped)

    @property
    def padding_count(self) -> int:
        """Box positions outside the map: how much of the field is padding."""
        return self.box_area - self.inside_count

    @property
    def padding_fraction(self) -> float:
        return self.padding_count / self.box_area

    @property
    def seen_count(self) -> int:
        """Map positions that really influence the unit (True in the mask)."""
        return math.prod(int(m.sum()) for m in self.axis_masks)

    @property
    def empty(self) -> bool:
        return self.seen_count == 0


def _check_layer(net, layer, what="layer") -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < len(net):
        raise NetworkError(f"no {what} {short_repr(layer)}: the network has {len(net)} layers (0 to {len(net) - 1})")
    return int(layer)


def _check_unit(net, layer: int, unit) -> tuple[int, ...]:
    shape = net.output_shapes[layer]
    names = {1: "(f,)", 2: "(c, l)", 3: "(c, y, x)"}[len(shape)]
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        unit = (unit,)
    try:
        unit = tuple(unit)
    except TypeError:
        raise NetworkError(f"a unit of layer {layer} is {names}, not {short_repr(unit)}", layer) from None
    if (len(unit) != len(shape) or any(isinstance(u, bool) or not isinstance(u, (int, np.integer)) for u in unit)
            or any(not 0 <= u < n for u, n in zip(unit, shape))):
        raise NetworkError(f"unit {short_repr(unit)} is not in layer {layer}'s output: a unit is {names} "
                           f"with each index below {tuple(shape)}", layer)
    return tuple(int(u) for u in unit)


def _preimage(mask: np.ndarray, n_in: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """Input positions (of n_in) connected to any True output of one axis."""
    if k == 1 and s == 1 and p == 0 and mask.shape[0] == n_in:
        return mask
    out = np.zeros(n_in, bool)
    base = np.flatnonzero(mask) * s - p
    if base.size == 0:
        return out
    idx = (base[:, None] + np.arange(k) * d).ravel()
    out[idx[(idx >= 0) & (idx < n_in)]] = True
    return out


def receptive_field(net, layer, unit, onto=None) -> ReceptiveField:
    """The exact receptive field of `unit` of `layer` on the input (onto=None)
    or on the output map of an earlier layer `onto` (< layer)."""
    layer = _check_layer(net, layer)
    unit = _check_unit(net, layer, unit)
    if onto is not None:
        onto = _check_layer(net, onto, "layer (onto)")
        if onto >= layer:
            raise NetworkError(f"onto must be an earlier layer than {layer}, not {onto}", layer)
    for k, state in _walk(net, layer, unit, -1 if onto is None else onto):
        if k == onto:
            return _field(layer, unit, k, *state)
    raise AssertionError("the walk ends on the map asked for")  # pragma: no cover


def receptive_fields(net, layer, unit) -> tuple[ReceptiveField, dict[int, ReceptiveField]]:
    """The exact fields of `unit` of `layer` on the input and on every earlier map,
    from one walk back through the network (each the same as receptive_field's):
    (field on the input, {k: field on layer k's output for k < layer})."""
    layer = _check_layer(net, layer)
    unit = _check_unit(net, layer, unit)
    on_maps = {k: _field(layer, unit, k, *state) for k, state in _walk(net, layer, unit, -1)}
    on_input = on_maps.pop(None)
    return on_input, on_maps


def _walk(net, layer: int, unit: tuple[int, ...], stop: int):
    """Walk back from `unit` of `layer` (checked) through layers layer..stop+1 and yield
    (k, state on layer k's output) after each, k = layer-1 down to stop (None: the input);
    `_field(layer, unit, k, *state)` makes the field of the maps a caller wants."""
    out_shape = net.output_shapes[layer]
    # state: spatial (per-axis masks and boxes) or flat (one feature or all)
    if len(out_shape) > 1:
        masks = [np.zeros(n, bool) for n in out_shape[1:]]
        for m, u in zip(masks, unit[1:]):
            m[u] = True
        boxes = [(u, u + 1) for u in unit[1:]]
        feature = None
    else:
        masks = boxes = None
        feature = unit[0]  # None once it is "all features"
    whole = False
    for i in range(layer, stop, -1):
        in_shape = net.input_shape_of(i)
        if masks is None:  # flat output
            if _mixes_all(net, i):
                feature, whole = None, True
            if len(in_shape) > 1:  # the flatten that made the vector
                n_sp = in_shape[1:]
                if feature is None:
                    masks = [np.ones(n, bool) for n in n_sp]
                    boxes = [(0, n) for n in n_sp]
                else:
                    pos = np.unravel_index(feature, in_shape)[1:]
                    masks = [np.zeros(n, bool) for n in n_sp]
                    for m, u in zip(masks, pos):
                        m[u] = True
                    boxes = [(int(u), int(u) + 1) for u in pos]
        else:
            win = _axis_windows(net, i)
            nxt_masks, nxt_boxes = [], []
            for a, (k, s, p, d) in enumerate(win):
                nxt_masks.append(_preimage(masks[a], in_shape[1 + a], k, s, p, d))
                lo, hi = boxes[a]
                nxt_boxes.append((lo * s - p, (hi - 1) * s - p + window_span(k, d)))
            masks, boxes = nxt_masks, nxt_boxes
        yield (i - 1 if i > 0 else None), (in_shape, masks, boxes, feature, whole)


def _field(layer, unit, onto, target, masks, boxes, feature, whole) -> ReceptiveField:
    """The walk's state on map `target` (its shape) as a ReceptiveField."""
    if masks is None:  # onto a flat map
        n = target[0]
        m = np.zeros(n, bool)
        if feature is None:
            m[:] = True
            box = ((0, n),)
        else:
            m[feature] = True
            box = ((feature, feature + 1),)
        axis_masks = (m,)
    else:
        axis_masks = tuple(masks)
        box = tuple((int(a), int(b)) for a, b in boxes)
    for m in axis_masks:
        m.flags.writeable = False  # (the walk only reads them from here on)
    if len(axis_masks) == 1:
        full = axis_masks[0].copy()
    else:
        full = np.logical_and.outer(axis_masks[0], axis_masks[1])
    full.flags.writeable = False
    return ReceptiveField(layer, unit, onto, tuple(m.shape[0] for m in axis_masks), box,
                          axis_masks, full, whole)


# ---------------------------------------------------------------------------
# The effective (gradient) field

def effective_receptive_field(net, x, layer, unit, outputs=None, crop=True) -> np.ndarray:
    """|d unit / d input| summed over input channels (Luo et al., NeurIPS 2016),
    float32 of the input's spatial shape: the magnitude of `input_gradient`."""
    return np.abs(input_gradient(net, x, layer, unit, outputs, crop)).sum(axis=0, dtype=np.float32)


def input_gradient(net, x, layer, unit, outputs=None, crop=True) -> np.ndarray:
    """d unit / d input, float32 of the input's shape (C, ...), by a reverse pass
    of layer_backward (input gradients only) from `layer` down to the input.

    `outputs`: the per-layer outputs of a forward pass on x (at least up to
    `layer`), reused instead of recomputing them.

    crop=True (the default, exact): the gradient of one unit is zero outside
    its receptive field's box, so on spatial maps the reverse pass keeps only
    that box (clipped to the map) per layer. A windowed layer then runs its
    backward on the crop as a padding-free sub-problem whose input is the crop
    padded explicitly with the layer's padding value; every output gradient in
    the box and every input it reaches are the same as in the full pass, so
    the result equals the full reverse pass (crop=False).
    """
    layer = _check_layer(net, layer)
    unit = _check_unit(net, layer, unit)
    x = net.check_input(x)
    if outputs is None:
        outputs, h = [], x
        for i in range(layer + 1):
            h = net.layer_forward(i, h)
            outputs.append(h)
    else:
        if len(outputs) <= layer:
            raise NetworkError(f"outputs holds {len(outputs)} layers, need at least {layer + 1}")
        for i in range(layer + 1):
            if tuple(outputs[i].shape) != tuple(net.output_shapes[i]):
                raise NetworkError(f"outputs[{i}] is {tuple(outputs[i].shape)}, layer {i} "
                                   f"outputs {tuple(net.output_shapes[i])}", i)
    out_shape = net.output_shapes[layer]
    region = None  # per spatial axis (lo, hi) of the crop gy holds, None: gy is the whole map or flat
    if crop and len(out_shape) > 1:
        region = [(u, u + 1) for u in unit[1:]]
        gy = np.zeros((out_shape[0],) + (1,) * len(region), np.float32)
        gy[(unit[0],) + (0,) * len(region)] = 1.0
    else:
        gy = np.zeros(out_shape, np.float32)
        gy[unit] = 1.0
    for i in range(layer, -1, -1):
        xin = x if i == 0 else outputs[i - 1]
        if region is None:
            gy, _ = net.layer_backward(i, xin, outputs[i], gy, param_grads=False)
            if crop and gy.ndim > 1:  # back on a spatial map (after flatten): crop to the field's box
                region = list(receptive_field(net, layer, unit, onto=i - 1 if i > 0 else None).box_clipped)
                gy = gy[_slices(region)]
        else:
            gy, region = _cropped_backward(net, i, xin, outputs[i], gy, region)
            if gy is None:  # the field lies entirely in padding: no input pixel influences the unit
                return np.zeros(net.input_shape, np.float32)
    if region is None:
        return np.ascontiguousarray(gy, dtype=np.float32)
    full = np.zeros(net.input_shape, np.float32)
    full[_slices(region)] = gy
    return full


def _slices(region) -> tuple:
    """Index of a crop (all channels) of a map."""
    return (slice(None),) + tuple(slice(a, b) for a, b in region)


def _cropped_backward(net, i, xin, y, gy, region):
    """Layer i's input gradient on a crop: gy holds the output gradient on
    `region` (zero elsewhere); returns (gx on the input region, that region),
    or (None, None) when the region reads only padding."""
    t, cfg = net.layer_types[i], net.configs[i]
    in_spatial, out_spatial = xin.shape[1:], y.shape[1:]
    win = _axis_windows(net, i)
    if all((k, s, p, d) == (1, 1, 0, 1) for k, s, p, d in win):  # pointwise in space
        sl = _slices(region)
        gx, _ = net.layer_backward(i, xin[sl], y[sl], gy, param_grads=False)
        return gx, region
    # input positions [a, b) the output region reads, padding included (unclipped)
    virt = [(lo * s - p, (hi - 1) * s - p + window_span(k, d)) for (lo, hi), (k, s, p, d) in zip(region, win)]
    clipped = [(max(a, 0), min(b, n)) for (a, b), n in zip(virt, in_spatial)]
    if any(a >= b for a, b in clipped):  # the region reads only padding
        return None, None
    whole_out = all(lo == 0 and hi == n for (lo, hi), n in zip(region, out_spatial))
    needs_pad = any(a < 0 or b > n for (a, b), n in zip(virt, in_spatial))
    real = xin[_slices(clipped)]
    if whole_out or (t.pad_value == -np.inf and needs_pad and np.isneginf(real).any()):
        # the full layer (the whole map anyway, or a max pool window whose real
        # pixels are all -inf: its gradient goes to the first real pixel, which
        # explicit -inf padding would not reproduce)
        full = gy if whole_out else np.zeros(y.shape, np.float32)
        if not whole_out:
            full[_slices(region)] = gy
        gx, _ = net.layer_backward(i, xin, y, full, param_grads=False)
        return gx[_slices(clipped)], clipped
    # the padding-free sub-problem on the explicitly padded crop
    sub = np.full((xin.shape[0],) + tuple(b - a for a, b in virt), t.pad_value, np.float32)
    inner = tuple(slice(ca - va, cb - va) for (ca, cb), (va, _) in zip(clipped, virt))
    sub[(slice(None),) + inner] = real
    sub_cfg = dict(cfg, padding=(0,) * len(win))
    gx, _ = t.backward(sub_cfg, sub, y[_slices(region)], gy, net.params(i), param_grads=False)
    return gx[(slice(None),) + inner], clipped
