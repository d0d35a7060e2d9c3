"""The one-click "conv -> norm -> activation" block: the layer dicts to insert.

The conv has no bias (the batch norm right after it adds its own shift) and
"same" padding k // 2, so for odd kernels the map keeps its size. 1D or 2D is
chosen from the shape at the insertion point.
"""

from __future__ import annotations

from ..errors import NetworkError
from ..network import Network

EXPLANATION = (
    "The basic unit of most CNNs: a convolution finds local patterns, a normalization keeps the numbers "
    "in a steady range, and a non-linearity (ReLU) lets stacked blocks build more complex patterns "
    "than a single linear filter could."
)


def conv_norm_act_block(dims: int, out_channels: int = 16, kernel_size: int = 3,
                        norm: str = "batchnorm", activation: str = "relu") -> list[dict]:
    if dims not in (1, 2):
        raise NetworkError(f"a conv block needs a 1D signal or a 2D map, not {dims} spatial axes")
    conv = {"type": f"conv{dims}d", "out_channels": int(out_channels), "kernel_size": int(kernel_size),
            "padding": int(kernel_size) // 2, "bias": norm is None}
    layers = [conv]
    if norm:
        layers.append({"type": norm})
    if activation:
        layers.append({"type": activation})
    return layers


def dims_at(net: Network, index: int) -> int:
    """Spatial axes of the data flowing into position `index` (0..len(net))."""
    index = max(0, min(index, len(net)))
    shape = net.input_shape_of(index) if index < len(net) else (net.output_shapes[-1] if len(net) else net.input_shape)
    if len(shape) == 1:
        raise NetworkError("a conv block cannot go after flatten: the data is a flat vector there")
    return len(shape) - 1


def insert_block(spec: dict, net: Network, index: int, **options) -> dict:
    """A new description with the block inserted at `index` (a copy; `spec` is unchanged)."""
    layers = [dict(layer) for layer in spec.get("layers", [])]
    index = max(0, min(index, len(layers)))
    block = conv_norm_act_block(dims_at(net, min(index, len(net))), **options)
    layers[index:index] = block
    return dict(spec, layers=layers)
