"""Local connection and weight sharing: a conv layer against a fully connected one.

A conv layer reuses one small kernel per (output, input) channel pair at every
position, so its parameter count does not depend on the map size. A fully
connected layer mapping the same input (Cin x H x W numbers) to the same output
(Cout x H' x W' numbers) needs one weight per (input number, output number)
pair plus one bias per output number. The conv count comes from
Network.parameter_counts (the core's one source of truth); the formula text
substitutes the layer's own numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import NetworkError
from ..network import Network

EXPLANATION = (
    "A conv layer slides one small kernel per channel pair over the whole input and reuses it at every "
    "position (weight sharing); each output only looks at a small window (local connection). A fully "
    "connected layer producing the same output from the same input needs a separate weight for every "
    "input-output pair, so its count grows with the map size while the conv's does not."
)


@dataclass(frozen=True)
class MLPComparison:
    layer: int
    conv_params: int  # from Network.parameter_counts
    dense_params: int  # in_numel * out_numel + out_numel
    in_numel: int
    out_numel: int
    ratio: float  # dense_params / conv_params
    conv_formula: str  # e.g. "3 x 3 x 3 x 16 + 16 = 448"
    conv_formula_symbols: str  # e.g. "kh x kw x Cin x Cout + Cout"
    dense_formula: str  # e.g. "(3 x 32 x 32) x (16 x 30 x 30) + (16 x 30 x 30) = ..."

    def text(self) -> str:
        return (f"conv: {self.conv_formula_symbols} = {self.conv_formula}\n"
                f"fully connected: in x out + out = {self.dense_formula}\n"
                f"ratio: {format_ratio(self.ratio)}")


def format_ratio(r: float) -> str:
    if r >= 100:
        return f"{r:,.0f}x as many parameters"
    return f"{r:.3g}x as many parameters"


def _product(dims) -> str:
    return " x ".join(str(d) for d in dims)


def mlp_comparison(net: Network, i: int) -> MLPComparison:
    """The comparison for conv layer i of `net` (NetworkError for other layers)."""
    if not 0 <= i < len(net):
        raise NetworkError(f"no layer {i}: the network has {len(net)} layers")
    t, cfg = net.layer_types[i], net.configs[i]
    if not t.name.startswith("conv"):
        raise NetworkError("the weight-sharing comparison is for conv layers", i, None, t.name)
    in_shape, out_shape = net.input_shape_of(i), net.output_shapes[i]
    cin, cout = in_shape[0], cfg["out_channels"]
    kernel = cfg["kernel_size"]
    conv_params = net.parameter_counts[i]
    symbols = ("k" if len(kernel) == 1 else "kh x kw") + " x Cin x Cout" + (" + Cout" if cfg["bias"] else "")
    formula = _product(kernel + (cin, cout)) + (f" + {cout}" if cfg["bias"] else "") + f" = {conv_params:,}"
    in_numel, out_numel = math.prod(in_shape), math.prod(out_shape)
    dense = in_numel * out_numel + out_numel
    out_text = f"({_product(out_shape)})" if len(out_shape) > 1 else str(out_numel)
    in_text = f"({_product(in_shape)})" if len(in_shape) > 1 else str(in_numel)
    dense_formula = f"{in_text} x {out_text} + {out_text} = {dense:,}"
    return MLPComparison(i, conv_params, dense, in_numel, out_numel, dense / conv_params,
                         formula, symbols, dense_formula)


def mlp_comparisons(net: Network) -> list[MLPComparison]:
    """One comparison per conv layer, in order."""
    return [mlp_comparison(net, i) for i, t in enumerate(net.layer_types) if t.name.startswith("conv")]
