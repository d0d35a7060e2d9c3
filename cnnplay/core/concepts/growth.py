"""Receptive-field growth: field size r and jump j per axis against depth.

All numbers come from the core's `Network.receptive_field_table()` (the
closed forms of Araujo et al., Distill 2019); this module only arranges them
for a chart. What-if variants (a chosen layer's kernel +2, stride x2 or
dilation x2) change the network description, rebuild it with
`Network.from_dict` and ask the same table, so they are exact; a variant that
makes the network invalid comes back with `error` set instead of raising.

Depth 0 is the input itself (r = 1, j = 1 on every axis); depth i + 1 is the
output of layer i. The series stops at the first layer without a spatial grid
(flatten, linear): from there on every unit sees the whole input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..errors import NetworkError
from ..layout import Layout
from ..network import Network

EXPLANATION = (
    "r is how many input pixels one unit of a layer can see; j (the jump) is how far apart, in input "
    "pixels, two neighbouring units of that layer look. Each k-wide kernel adds (k - 1) x j to r; a "
    "stride multiplies j, so every later layer grows r faster. Dilation spreads a kernel's taps apart, "
    "growing r without more weights."
)

WHAT_IFS = {
    "kernel+2": "kernel +2",
    "stride*2": "stride x2",
    "dilation*2": "dilation x2",
}


@dataclass(frozen=True)
class GrowthSeries:
    label: str
    depth: list[int] = field(default_factory=list)  # 0 = input, i + 1 = after layer i
    layers: list = field(default_factory=list)  # layer index per point (None for the input)
    r: list[tuple] = field(default_factory=list)  # receptive-field size per axis
    j: list[tuple] = field(default_factory=list)  # jump per axis
    error: str | None = None  # why a what-if variant has no curve

    @property
    def axes(self) -> int:
        return len(self.r[0]) if self.r else 0


def table_rows(net: Network) -> list:
    """(r, j, start) per layer from the core's table (receptive.FieldRow: size,
    jump, start per axis); None for rows without a spatial grid ("flat" and
    "global" rows: flatten, linear and what follows). The one adapter to it."""
    return [(tuple(row.size), tuple(row.jump), tuple(row.start)) if row.kind == "spatial" else None
            for row in net.receptive_field_table()]


def growth_series(net: Network, label: str = "current") -> GrowthSeries:
    dims = len(net.input_shape) - 1
    s = GrowthSeries(label, [0], [None], [(1,) * dims], [(1,) * dims])
    for i, row in enumerate(table_rows(net)):
        if row is None or net.windows[i] is None:
            break
        r, j, _ = row
        s.depth.append(i + 1)
        s.layers.append(i)
        s.r.append(tuple(r))
        s.j.append(tuple(j))
    return s


def applicable(net: Network, layer: int, change: str) -> str | None:
    """None if `change` can apply to layer `layer`, else the reason it cannot."""
    if change not in WHAT_IFS:
        return f"unknown what-if {change!r}"
    if not 0 <= layer < len(net):
        return f"no layer {layer}"
    t = net.layer_types[layer]
    fields = {f.name for f in t.fields}
    need = {"kernel+2": "kernel_size", "stride*2": "stride", "dilation*2": "dilation"}[change]
    if need not in fields:
        return f"layer {layer} ({t.name}) has no {need.replace('_', ' ')}"
    return None


def modified_spec(net: Network, layer: int, change: str) -> dict:
    spec = copy.deepcopy(net.to_dict())
    layer_dict = spec["layers"][layer]
    cfg = net.configs[layer]
    if change == "kernel+2":
        layer_dict["kernel_size"] = [k + 2 for k in cfg["kernel_size"]]
    elif change == "stride*2":
        layer_dict["stride"] = [s * 2 for s in cfg["stride"]]
    elif change == "dilation*2":
        layer_dict["dilation"] = [d * 2 for d in cfg["dilation"]]
    return spec


def what_if_series(net: Network, layer: int, change: str) -> GrowthSeries:
    """The growth curve if layer `layer` had `change`; `error` says why not when it cannot."""
    label = f"{WHAT_IFS.get(change, change)} on layer {layer}"
    reason = applicable(net, layer, change)
    if reason is not None:
        return GrowthSeries(label, error=reason)
    try:
        variant = Layout.from_dict(modified_spec(net, layer, change))  # shapes only: no weights to make
    except NetworkError as e:
        return GrowthSeries(label, error=f"the network would be invalid: {e}")
    return growth_series(variant, label)


def centre_unit(net: Network, layer: int) -> tuple | None:
    """The unit at the centre of layer `layer`'s output (channel 0), or None
    for layers without a spatial grid. The growth chart's hover highlights
    this unit's field: `net.receptive_field(layer, centre_unit(net, layer))`."""
    if not 0 <= layer < len(net):
        return None
    shape = net.output_shapes[layer]
    rows = net.receptive_field_table()
    if len(shape) < 2 or rows[layer].kind != "spatial":
        return None
    return (0,) + tuple(n // 2 for n in shape[1:])


def highlight_field(net: Network, layer: int):
    """The core's ReceptiveField of the centre unit of `layer` (None without a grid)."""
    unit = centre_unit(net, layer)
    return None if unit is None else net.receptive_field(layer, unit)
