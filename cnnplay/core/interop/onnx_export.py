"""cnnplay -> ONNX: one node per layer, named after it ("conv2d_0", "relu_1", ...).

The model uses opset 17 (LayerNormalization appeared in it), a dynamic batch
dimension "N" and float32 weights stored inside the file. Layer norm, which
cnnplay computes across channels at each position, is the usual
Transpose -> LayerNormalization(axis=-1) -> Transpose (a flat vector needs no
transposes). Average pooling includes the padding in its count, as cnnplay's
(and PyTorch's) does. The `onnx` package is imported only when exporting.
"""

from __future__ import annotations

import os

import numpy as np

from ..fileformat import atomic_write
from ..network import Network
from .common import check_exportable, node_name
from .errors import InteropError, require_onnx

OPSET = 17
IR_VERSION = 8  # the IR version that came with opset 17: every onnxruntime since 1.13 reads it
INPUT, OUTPUT, BATCH = "input", "output", "N"


class _Graph:
    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes = []
        self.initializers = []

    def weight(self, name: str, array) -> str:
        a = np.ascontiguousarray(array, dtype=np.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(a, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def _conv(g, name, t, cfg, p, x, out):
    inputs = [x, g.weight(f"{name}.weight", p["weight"])]
    if "bias" in p:
        inputs.append(g.weight(f"{name}.bias", p["bias"]))
    return g.node("Conv", inputs, out, name, kernel_shape=list(cfg["kernel_size"]), strides=list(cfg["stride"]),
                  pads=list(cfg["padding"]) * 2, dilations=list(cfg["dilation"]), group=1)


def _pool(g, name, t, cfg, p, x, out):
    attrs = dict(kernel_shape=list(cfg["kernel_size"]), strides=list(cfg["stride"]), pads=list(cfg["padding"]) * 2)
    if t.mode == "max":
        return g.node("MaxPool", [x], out, name, **attrs)
    return g.node("AveragePool", [x], out, name, count_include_pad=1, **attrs)


def _batchnorm(g, name, t, cfg, p, x, out):
    inputs = [x] + [g.weight(f"{name}.{k}", p[k]) for k in ("weight", "bias", "running_mean", "running_var")]
    return g.node("BatchNormalization", inputs, out, name, epsilon=float(cfg["eps"]))


def _layernorm(g, name, t, cfg, p, x, out, rank):
    scale, bias = g.weight(f"{name}.weight", p["weight"]), g.weight(f"{name}.bias", p["bias"])
    if rank == 2:  # a flat vector: its features are the channels
        return g.node("LayerNormalization", [x, scale, bias], out, name, axis=-1, epsilon=float(cfg["eps"]))
    last = list(range(2, rank)) + [1]
    first = [rank - 1] + list(range(1, rank - 1))
    x = g.node("Transpose", [x], f"{name}.channels_last", f"{name}.to_channels_last", perm=[0] + last)
    x = g.node("LayerNormalization", [x, scale, bias], f"{name}.normalized", name, axis=-1,
               epsilon=float(cfg["eps"]))
    return g.node("Transpose", [x], out, f"{name}.to_channels_first", perm=[0] + first)


def _activation(g, name, t, cfg, p, x, out):
    if t.leaky:
        return g.node("LeakyRelu", [x], out, name, alpha=float(cfg["negative_slope"]))
    return g.node("Relu", [x], out, name)


def _flatten(g, name, t, cfg, p, x, out):
    return g.node("Flatten", [x], out, name, axis=1)


def _linear(g, name, t, cfg, p, x, out):
    inputs = [x, g.weight(f"{name}.weight", p["weight"])]
    if "bias" in p:
        inputs.append(g.weight(f"{name}.bias", p["bias"]))
    return g.node("Gemm", inputs, out, name, transB=1)


_EMIT = {"conv1d": _conv, "conv2d": _conv, "maxpool1d": _pool, "maxpool2d": _pool, "avgpool1d": _pool,
         "avgpool2d": _pool, "batchnorm": _batchnorm, "layernorm": _layernorm, "relu": _activation,
         "leaky_relu": _activation, "flatten": _flatten, "linear": _linear}


def onnx_model(net: Network, name: str = "cnnplay"):
    """The ONNX ModelProto of `net` (checked by onnx's checker, full check)."""
    onnx = require_onnx("ONNX export")
    helper = onnx.helper
    check_exportable(net)
    g = _Graph(onnx)
    x = INPUT
    for i, (t, cfg) in enumerate(zip(net.layer_types, net.configs)):
        emit = _EMIT.get(t.name)
        if emit is None:  # a layer type added to cnnplay but not here yet
            raise InteropError(f"has no ONNX form yet (ONNX export knows: {', '.join(_EMIT)})",
                               layer=i, layer_type=t.name)
        out = OUTPUT if i == len(net) - 1 else node_name(net, i)
        kw = {"rank": len(net.input_shape_of(i)) + 1} if emit is _layernorm else {}
        x = emit(g, node_name(net, i), t, cfg, net.params(i), x, out, **kw)
    if not len(net):
        g.node("Identity", [INPUT], OUTPUT, "identity")
    out_shape = net.output_shapes[-1] if len(net) else net.input_shape
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, [BATCH, *net.input_shape])],
        [helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, [BATCH, *out_shape])],
        initializer=g.initializers,
        doc_string=f"Exported by cnnplay from a network on {net.input_shape} inputs: "
                   + "; ".join(net.summaries))
    from ... import __version__
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="cnnplay", producer_version=__version__)
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net: Network, path: str | os.PathLike) -> None:
    """Write `net` as an ONNX model to `path` (atomically): opset 17, dynamic batch
    dimension, one readable node per layer; InteropError if it cannot be written,
    OnnxUnavailable without the `onnx` package."""
    name = os.fspath(path)
    check_exportable(net, name)
    model = onnx_model(net, os.path.splitext(os.path.basename(name))[0] or "cnnplay")
    try:
        atomic_write(name, model.SerializeToString())
    except OSError as e:
        raise InteropError(f"cannot save: {e.strerror or e}", name) from None
