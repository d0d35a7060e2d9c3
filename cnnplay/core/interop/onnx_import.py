"""ONNX -> cnnplay: a model whose graph is a chain of cnnplay's layers becomes a Network.

What is read (the operators PyTorch's two exporters write for such chains):
Conv (1D/2D; pads, strides, dilations; group 1), Gemm (either transposition,
alpha, beta), MatMul followed by Add (a linear layer; an Add of a constant
after Conv/Gemm/MatMul becomes its bias), MaxPool, AveragePool
(count_include_pad=1, or 0 without padding), GlobalMaxPool/GlobalAveragePool,
Relu, LeakyRelu, Flatten, a Reshape to (N, -1) (also when its target shape is
computed by Shape/Gather/Unsqueeze/Concat/... from constants: such shape
arithmetic is evaluated here on small integer arrays), BatchNormalization,
LayerNormalization across channels (between a Transpose to channels-last and
one back; directly on a flat vector), Identity, Dropout and float Casts
(skipped), Constant nodes and initializers. A trailing Softmax/LogSoftmax is
left out with a note (cnnplay shows the raw scores).

Anything else (two branches joined by Add or Concat, grouped or 3D
convolution, asymmetric padding, weights in external files, other operators)
raises OnnxImportError naming the node, its operator and what cnnplay supports.

Safety: the file must be a regular file and is read with a size limit (the
memory budget plus a margin); the protobuf is parsed as data (nothing runs,
external data files are never opened); the weights' sizes are summed from the
tensors' declared dimensions and refused above the memory budget before any
array is made; every tensor's stored data must match its dimensions. Random
or truncated bytes give an OnnxImportError, never another exception.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .. import memory
from ..errors import NetworkError, short_repr
from ..network import Network
from ..safe_read import SafeReadError, read_regular_file
from .errors import OnnxImportError, require_onnx

SUPPORTED = ("Conv (1D/2D, group 1), Gemm, MatMul + Add, MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool, "
             "Relu, LeakyRelu, Flatten, Reshape to (N, -1), BatchNormalization, LayerNormalization across "
             "channels (between two Transposes), Identity, Dropout, and a trailing Softmax (left out)")
MARGIN_BYTES = 16 << 20  # the graph itself, names, attributes: small next to any weights
MIN_OPSET = 7
MAX_NODES = 100_000  # far more than any chain cnnplay can show; bounds the time a hostile graph can take
MAX_SHAPE_VALUES = 1024  # shape arithmetic works on a few integers; larger constants are not shapes
MAX_RANK = 8
_BRANCH_OPS = {"Add", "Sub", "Mul", "Div", "Concat", "Sum", "Max", "Min", "Mean"}

# ONNX TensorProto data types cnnplay reads: (numpy dtype, field holding typed data)
_DTYPES = {1: ("<f4", "float_data"), 2: ("u1", "int32_data"), 3: ("i1", "int32_data"), 4: ("<u2", "int32_data"),
           5: ("<i2", "int32_data"), 6: ("<i4", "int32_data"), 7: ("<i8", "int64_data"),
           9: ("?", "int32_data"), 10: ("<f2", "int32_data"), 11: ("<f8", "double_data")}
_DTYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
                8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 16: "BFLOAT16"}
_BATCH = 2**41 + 17  # stands for the symbolic batch size in shape arithmetic (no real size is this big)


@dataclass
class OnnxImport:
    """What read_onnx found: the network, notes for the user (e.g. a Softmax
    left out) and, per layer, the ONNX node(s) it came from."""

    network: Network
    notes: list[str] = field(default_factory=list)
    nodes: list[list[str]] = field(default_factory=list)


def max_onnx_bytes() -> int:
    """No model cnnplay can hold is larger than the memory budget plus the graph."""
    return memory.limit_bytes() + MARGIN_BYTES


def import_onnx(path: str | os.PathLike) -> Network:
    """The cnnplay Network an ONNX file describes (see the module doc); read_onnx also gives notes."""
    return read_onnx(path).network


def read_onnx(path: str | os.PathLike) -> OnnxImport:
    """Network, notes and node names from an ONNX file; OnnxImportError naming what is wrong,
    OnnxUnavailable without the `onnx` package."""
    name = os.fspath(path)
    limit = max_onnx_bytes()
    try:
        data = read_regular_file(name, limit, "ONNX model")
    except SafeReadError as e:
        if e.kind == "too_large":
            reason = (f"{e.reason} (larger than any network cnnplay can hold: the memory limit is "
                      f"{memory.format_bytes(memory.limit_bytes())})")
        else:
            reason = e.reason
        raise OnnxImportError(reason, name) from None
    return onnx_from_bytes(data, name)


def onnx_from_bytes(data: bytes, name: str = "<memory>") -> OnnxImport:
    """As read_onnx, from the file's bytes (`name` is used in messages)."""
    onnx = require_onnx("Opening ONNX models")
    if not data:
        raise OnnxImportError("the file is empty (0 bytes)", name)
    try:
        return _Converter(_parse(onnx, data, name), name).run()
    except OnnxImportError:
        raise
    except MemoryError:
        raise OnnxImportError("not enough memory to load it", name) from None
    except RecursionError:
        raise OnnxImportError("its content is nested too deeply", name) from None
    except Exception as e:  # a last guard: nothing but an OnnxImportError leaves the importer
        raise OnnxImportError(f"cannot be read ({type(e).__name__}: {short_repr(str(e), 200)})", name) from None


def _parse(onnx, data: bytes, name: str):
    from google.protobuf.message import DecodeError
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, TypeError, RuntimeError) as e:
        detail = short_repr(str(e), 120)
        raise OnnxImportError("not an ONNX model, or a truncated or damaged one: its protobuf cannot be parsed"
                              + (f" ({detail})" if detail else ""), name) from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.input:
        raise OnnxImportError("not an ONNX model (it holds no graph)", name)
    _check_text(model, name)
    return model


def _check_text(model, name: str) -> None:
    """Names must be text: a damaged file can hold bytes that are not UTF-8 there."""
    g = model.graph
    for items in (g.node, g.initializer, g.input, g.output):
        for i, item in enumerate(items):
            texts = [item.name]
            if hasattr(item, "op_type"):
                texts += [item.op_type, item.domain, *item.input, *item.output]
            if not all(isinstance(t, str) for t in texts):
                raise OnnxImportError(f"a damaged file: the names of {type(item).__name__} #{i} are not UTF-8 text",
                                      name)


class _Converter:
    def __init__(self, model, name: str):
        self.model = model
        self.g = model.graph
        self.name = name
        self.node = None  # the node being converted, for messages
        self.notes: list[str] = []
        self.layers: list[tuple[dict, dict, list[str]]] = []  # (layer dict, params, node names)
        self.tensors = {}  # name -> TensorProto (initializers, Constant values) not yet made arrays
        self.consts: dict[str, np.ndarray] = {}
        self.main_shapes: dict[str, tuple] = {}  # per-sample shapes of the chain's values
        self.extra_outputs: dict[str, str] = {}  # outputs cnnplay does not compute -> their node
        self.head = None  # the chain's current value
        self.head_layer = None  # index of the layer whose output the head is (None after a skip of nothing)
        self.channels_last = None  # (Transpose node, LayerNormalization params) inside the layer-norm pattern
        self.softmax = None  # a Softmax/LogSoftmax node whose output is the head
        self.folded_bytes = 0
        self.op_of: dict[str, str] = {}  # node label -> its operator, for messages

    # -- messages -----------------------------------------------------------------
    def fail(self, reason: str, node=None) -> OnnxImportError:
        node = self.node if node is None else node
        if node is None:
            return OnnxImportError(reason, self.name)
        return OnnxImportError(reason, self.name, _node_label(node, self.index_of(node)), node.op_type)

    def index_of(self, node) -> int:
        for i, n in enumerate(self.g.node):
            if n is node:
                return i
        return -1

    # -- the whole model ------------------------------------------------------------
    def run(self) -> OnnxImport:
        if len(self.g.node) > MAX_NODES:
            raise self.fail(f"the graph has {len(self.g.node)} nodes; cnnplay reads chains of at most {MAX_NODES}")
        self.check_opset()
        self.check_tensors()
        self.read_input()
        self.find_joins()
        for node in self.g.node:
            self.node = node
            self.convert(node)
        self.node = None
        self.finish()
        return self.build()

    def check_opset(self) -> None:
        versions = {o.domain: o.version for o in self.model.opset_import}
        v = versions.get("", versions.get("ai.onnx"))
        if v is None:
            raise self.fail("the model imports no version of the standard ONNX operator set")
        if v < MIN_OPSET:
            raise self.fail(f"uses ONNX opset {v}; cnnplay reads opset {MIN_OPSET} and later (re-export it "
                            "with a newer exporter)")
        self.opset = v

    def check_tensors(self) -> None:
        """Every stored tensor: no external data, and the sum of the declared sizes within
        the memory budget, before any array is made; then each tensor's data matches its dims."""
        tensors = [(t.name, t, None) for t in self.g.initializer]
        for node in self.g.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for a in node.attribute:
                    if a.name in ("value", "sparse_value") and a.type == a.TENSOR:
                        tensors.append((node.output[0] if node.output else "", a.t, node))
        for node in self.g.node:
            for a in node.attribute:
                if a.type == a.GRAPH or a.type == a.GRAPHS:
                    self.node = node
                    raise self.fail(f"holds a subgraph (attribute '{a.name}'): control flow (If, Loop, Scan) is "
                                    f"not a chain of layers. cnnplay supports: {SUPPORTED}")
        self.node = None
        total = 0
        for tname, t, node in tensors:
            if t.data_location == 1 or len(t.external_data):
                self.node = node
                raise self.fail(f"tensor {short_repr(tname)} keeps its data in an external file; cnnplay opens "
                                "only self-contained .onnx files (never other files beside them): save the "
                                "model with onnx.save_model(model, path, save_as_external_data=False)")
            if len(t.dims) > MAX_RANK or any(d < 0 for d in t.dims):
                self.node = node
                raise self.fail(f"tensor {short_repr(tname)} has invalid dimensions {list(t.dims)[:10]}")
            itemsize = np.dtype(_DTYPES[t.data_type][0]).itemsize if t.data_type in _DTYPES else 1
            total += math.prod(t.dims) * max(itemsize, 4)
        budget = memory.limit_bytes()
        if total > budget:
            raise self.fail(f"its weights need {memory.format_bytes(total)}, above the memory limit of "
                            f"{memory.format_bytes(budget)}: refused before loading them (raise the limit with "
                            "CNNPLAY_MEMORY_LIMIT)", None)
        for tname, t, node in tensors:
            self.node = node
            self.check_data(tname, t)
            if node is None:
                if tname in self.tensors:
                    raise self.fail(f"two initializers are named {short_repr(tname)}")
                self.tensors[tname] = t
        self.node = None

    def check_data(self, tname: str, t) -> None:
        if t.data_type not in _DTYPES:
            return  # refused when used (an unused tensor of another type does no harm)
        dtype, typed = _DTYPES[t.data_type]
        n = math.prod(t.dims)
        if t.HasField("raw_data"):
            have, want = len(t.raw_data), n * np.dtype(dtype).itemsize
        else:
            have, want = len(getattr(t, typed)), n
            if not t.dims and have == 0 and n == 1:
                want = 1
        if have != want:
            raise self.fail(f"tensor {short_repr(tname)} of shape {list(t.dims)} holds {have} "
                            f"{'bytes' if t.HasField('raw_data') else 'values'} instead of {want} "
                            "(a truncated or damaged file?)")

    def array(self, t, tname: str) -> np.ndarray:
        if t.data_type not in _DTYPES:
            raise self.fail(f"tensor {short_repr(tname)} is of type {_DTYPE_NAMES.get(t.data_type, t.data_type)}, "
                            "which cnnplay does not read (float, double, float16 and integers)")
        dtype, typed = _DTYPES[t.data_type]
        shape = tuple(t.dims)
        if t.HasField("raw_data"):
            a = np.frombuffer(t.raw_data, dtype=dtype).reshape(shape)
        elif t.data_type == 10:
            a = np.asarray(t.int32_data, dtype=np.int64).astype("<u2").view("<f2").reshape(shape)
        else:
            a = np.asarray(getattr(t, typed), dtype=dtype).reshape(shape)
        return a.astype(a.dtype.newbyteorder("="))

    def read_input(self) -> None:
        real = [v for v in self.g.input if v.name not in self.tensors]
        if len(real) != 1:
            names = ", ".join(short_repr(v.name) for v in real[:5]) or "none"
            raise self.fail(f"the model has {len(real)} inputs ({names}); a cnnplay network has one")
        v = real[0]
        tt = v.type.tensor_type if v.type.HasField("tensor_type") else None
        if tt is None or not tt.HasField("shape"):
            raise self.fail(f"the input {short_repr(v.name)} has no tensor shape; cnnplay needs (N, C, H, W) "
                            "or (N, C, L) with fixed C, H, W")
        if tt.elem_type not in (1, 0):
            raise self.fail(f"the input {short_repr(v.name)} is of type {_DTYPE_NAMES.get(tt.elem_type, tt.elem_type)}; "
                            "cnnplay networks take float inputs")
        dims = list(tt.shape.dim)
        if len(dims) not in (3, 4):
            shown = "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"
            raise self.fail(f"the input {short_repr(v.name)} has shape {shown}; cnnplay's input is an image "
                            "(N, C, H, W) or a signal (N, C, L)")
        names = ("channels", "height", "width") if len(dims) == 4 else ("channels", "length")
        shape = []
        for d, what in zip(dims[1:], names):
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise self.fail(f"the input's {what} is {short_repr(d.dim_param or '?')}, not a fixed size; "
                                "cnnplay needs fixed channels and sizes (export with a fixed input size)")
            shape.append(int(d.dim_value))
        self.batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else _BATCH
        self.input_shape = tuple(shape)
        self.head = v.name
        self.main_shapes[v.name] = self.input_shape

    def find_joins(self) -> None:
        """A node taking two values computed from the input joins two branches
        (a residual Add, a Concat): named before the chain is followed, so the
        message is about the join rather than the branch's first node."""
        computed = {self.head}
        for node in self.g.node:
            ins = {i for i in node.input if i in computed}
            if node.op_type != "Shape" and ins:
                computed.update(o for o in node.output if o)
            joined = len(ins) > 1 or len(ins) == 1 and sum(i in computed for i in node.input) > 1
            if joined and node.op_type in _BRANCH_OPS:
                self.node = node
                op = node.op_type
                kind = "a residual connection (an Add of two branches)" if op in ("Add", "Sum") else \
                    "two branches joined"
                names = ", ".join(short_repr(i) for i in dict.fromkeys(i for i in node.input if i in computed))
                raise self.fail(f"{op} of two computed values ({names}) is {kind}; cnnplay networks are a "
                                "single chain of layers")
        self.node = None

    # -- values -----------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.consts or name in self.tensors

    def const(self, name: str, what: str = "input") -> np.ndarray:
        if name in self.consts:
            return self.consts[name]
        if name in self.tensors:
            a = self.array(self.tensors.pop(name), name)
            self.consts[name] = a
            return a
        if name in self.main_shapes:
            raise self.fail(f"its {what} {short_repr(name)} is computed by the network; cnnplay needs it stored "
                            "in the file (an initializer or a Constant)")
        raise self.undefined(name)

    def undefined(self, name: str) -> OnnxImportError:
        if name in self.extra_outputs:
            return self.fail(f"uses {short_repr(name)}, an extra output of node {self.extra_outputs[name]} that "
                             "cnnplay does not compute (only each layer's main output)")
        return self.fail(f"uses {short_repr(name)}, which no earlier node, input or initializer provides "
                         "(the graph is not in order, or damaged)")

    def set_const(self, name: str, a: np.ndarray) -> None:
        a = np.asarray(a)
        self.folded_bytes += a.nbytes
        if self.folded_bytes > memory.limit_bytes():
            raise self.fail("computing constants would exceed the memory limit")
        self.consts[name] = a

    def attrs(self, node) -> dict:
        out = {}
        for a in node.attribute:
            if a.type == a.INT:
                out[a.name] = int(a.i)
            elif a.type == a.FLOAT:  # stored as float32: its shortest decimal form (1e-05, not 9.99e-06)
                out[a.name] = float(str(np.float32(a.f)))
            elif a.type == a.INTS:
                out[a.name] = [int(v) for v in a.ints]
            elif a.type == a.FLOATS:
                out[a.name] = [float(v) for v in a.floats]
            elif a.type == a.STRING:
                out[a.name] = a.s.decode("utf-8", "replace")
            elif a.type == a.TENSOR:
                out[a.name] = a.t
            else:
                out[a.name] = None
        return out

    # -- nodes ---------------------------------------------------------------------------
    def convert(self, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise self.fail(f"is an operator of the domain {short_repr(node.domain)}, not a standard ONNX one. "
                            f"cnnplay supports: {SUPPORTED}")
        op = node.op_type
        inputs = list(node.input)
        for i in inputs:
            if i and not self.is_const(i) and i not in self.main_shapes:
                raise self.undefined(i)
        if not node.output or not node.output[0]:
            raise self.fail("has no output")
        if op == "Constant":
            return self.constant(node)
        if op == "Shape":
            return self.shape_of(node)
        main = [i for i in inputs if i and i in self.main_shapes]
        if not main:
            return self.fold(node, op, inputs)
        if len(main) > 1:
            if op in _BRANCH_OPS:
                kind = "a residual connection" if op in ("Add", "Sum") else "two branches joined"
                raise self.fail(f"{op} of two computed values ({', '.join(map(short_repr, main))}) is {kind}; "
                                "cnnplay networks are a single chain of layers")
            raise self.fail(f"takes several computed values ({', '.join(map(short_repr, main))}); cnnplay "
                            f"networks are a single chain of layers. cnnplay supports: {SUPPORTED}")
        x = main[0]
        if x != self.head:
            raise self.fail(f"uses {short_repr(x)}, which the chain has already moved on from: the graph branches "
                            "(e.g. a skip connection); cnnplay networks are a single chain of layers")
        if self.softmax is not None:
            raise self.fail(f"comes after the {self.softmax.op_type} node {_node_label(self.softmax)}; cnnplay has "
                            "no softmax layer (one at the very end is left out)")
        if inputs[0] != x and op not in ("Add", "Sub"):
            raise self.fail(f"takes the computed value {short_repr(x)} in an input other than its first; "
                            f"cnnplay supports: {SUPPORTED}")
        if self.channels_last is not None and op not in ("LayerNormalization", "Transpose"):
            raise self.fail(f"follows the Transpose to channels-last {_node_label(self.channels_last[0])}; cnnplay "
                            "reads that Transpose only around a LayerNormalization (Transpose, "
                            "LayerNormalization(axis=-1), Transpose back)")
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            raise self.fail(f"{op} is not an operator cnnplay can turn into a layer. cnnplay supports: {SUPPORTED}")
        handler(node, self.attrs(node))

    def advance(self, node, shape: tuple, layer: dict | None = None, params: dict | None = None,
                same_values: bool = True) -> None:
        """The chain moves on to node's first output: a new layer when `layer` is given, else
        the same values as before (same_values) or values no layer computes (e.g. a softmax)."""
        out = node.output[0]
        for extra in list(node.output)[1:]:
            if extra:
                self.extra_outputs[extra] = _node_label(node)
        self.op_of[_node_label(node)] = node.op_type
        if layer is not None:
            self.layers.append((layer, params or {}, [_node_label(node)]))
            self.head_layer = len(self.layers) - 1
        elif not same_values:
            self.head_layer = None
        self.main_shapes[out] = tuple(shape)
        self.head = out

    @property
    def shape(self) -> tuple:
        return self.main_shapes[self.head]

    def spatial(self) -> int:
        dims = len(self.shape) - 1
        if dims not in (1, 2):
            raise self.fail(f"needs an image (N, C, H, W) or a signal (N, C, L) but gets {self._shape_text()}")
        return dims

    def _shape_text(self, shape=None) -> str:
        return "(" + ", ".join(["N", *map(str, self.shape if shape is None else shape)]) + ")"

    # -- constants and shape arithmetic ----------------------------------------------------
    def constant(self, node) -> None:
        a = self.attrs(node)
        out = node.output[0]
        if "value" in a and a["value"] is not None:
            # its data were checked with the initializers
            self.set_const(out, self.array(a["value"], out))
        elif "value_float" in a:
            self.set_const(out, np.float32(a["value_float"]))
        elif "value_floats" in a:
            self.set_const(out, np.asarray(a["value_floats"], np.float32))
        elif "value_int" in a:
            self.set_const(out, np.int64(a["value_int"]))
        elif "value_ints" in a:
            self.set_const(out, np.asarray(a["value_ints"], np.int64))
        else:
            raise self.fail(f"holds a kind of constant cnnplay does not read ({', '.join(a) or 'none'})")

    def shape_of(self, node) -> None:
        x = node.input[0] if node.input else ""
        if x in self.main_shapes:
            full = np.asarray((self.batch,) + self.main_shapes[x], np.int64)
        else:
            full = np.asarray(self.const(x).shape, np.int64)
        a = self.attrs(node)
        start, end = a.get("start", 0), a.get("end", None)
        self.set_const(node.output[0], full[start:end])

    def fold(self, node, op: str, inputs: list[str]) -> None:
        fn = _FOLD.get(op)
        if fn is None:
            raise self.fail(f"{op} on stored constants is not something cnnplay evaluates. cnnplay supports: "
                            f"{SUPPORTED}")
        args = [self.const(i) if i else None for i in inputs]
        sizes = [a.size for a in args if a is not None]
        if op not in _SIZE_KEEPING and (max(sizes, default=0) > MAX_SHAPE_VALUES
                                        or sum(sizes) > 16 * MAX_SHAPE_VALUES):
            raise self.fail(f"{op} on constants of {sum(sizes)} values: cnnplay evaluates only shape arithmetic "
                            f"on constants (at most {MAX_SHAPE_VALUES} values)")
        try:
            result = fn(self, args, self.attrs(node))
        except OnnxImportError:
            raise
        except (ValueError, IndexError, TypeError, KeyError, OverflowError, AttributeError) as e:
            raise self.fail(f"cannot evaluate {op} on its constant inputs ({short_repr(str(e), 120)})") from None
        self.set_const(node.output[0], result)

    # -- layers ---------------------------------------------------------------------------------
    def window_attrs(self, node, a: dict, dims: int, kernel: list[int] | None) -> tuple[list, list, list, list]:
        k = a.get("kernel_shape", kernel)
        if k is None or len(k) != dims:
            raise self.fail(f"needs a kernel_shape of {dims} values, not {short_repr(k)}")
        if kernel is not None and list(k) != list(kernel):
            raise self.fail(f"kernel_shape {k} differs from its weights' {list(kernel)}")
        strides = a.get("strides", [1] * dims)
        dil = a.get("dilations", [1] * dims)
        for what, v in (("strides", strides), ("dilations", dil)):
            if len(v) != dims or any(s < 1 for s in v):
                raise self.fail(f"{what} must be {dims} positive values, not {short_repr(v)}")
        auto = a.get("auto_pad", "NOTSET") or "NOTSET"
        if auto == "NOTSET":
            pads = a.get("pads", [0] * (2 * dims))
            if len(pads) != 2 * dims or any(p < 0 for p in pads):
                raise self.fail(f"pads must be {2 * dims} non-negative values, not {short_repr(pads)}")
            if pads[:dims] != pads[dims:]:
                raise self.fail(f"pads {pads} are asymmetric (begin {pads[:dims]}, end {pads[dims:]}); cnnplay "
                                "pads both borders of an axis equally")
            pads = pads[:dims]
        elif auto == "VALID":
            pads = [0] * dims
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for n, kk, s, d in zip(self.shape[1:], k, strides, dil):
                total = max((-(-n // s) - 1) * s + d * (kk - 1) + 1 - n, 0)
                if total % 2:
                    raise self.fail(f"auto_pad {auto} needs {total} pixels of padding on an axis, which cannot be "
                                    "split equally between both borders as cnnplay pads")
                pads.append(total // 2)
        else:
            raise self.fail(f"auto_pad {short_repr(auto)} is not an ONNX padding mode")
        return list(k), list(strides), list(pads), list(dil)

    def op_Conv(self, node, a):
        dims = self.spatial()
        if len(node.input) < 2 or not node.input[1]:
            raise self.fail("has no weights")
        w = self.const(node.input[1], "weights")
        b = self.const(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
        group = a.get("group", 1)
        if group != 1:
            raise self.fail(f"is a grouped convolution (group={group}); cnnplay's convolutions have group 1 "
                            "(every output channel sees every input channel)")
        if w.ndim != dims + 2:
            if w.ndim == 5 or w.ndim > 4:
                raise self.fail(f"is a {w.ndim - 2}D convolution; cnnplay has conv1d and conv2d")
            raise self.fail(f"has weights of shape {list(w.shape)} for an input of {self._shape_text()}")
        if w.shape[1] != self.shape[0]:
            raise self.fail(f"has weights for {w.shape[1]} input channels but its input has {self.shape[0]}")
        k, s, p, d = self.window_attrs(node, a, dims, list(w.shape[2:]))
        out_ch = int(w.shape[0])
        params = {"weight": w}
        if b is not None:
            params["bias"] = self.vector(b, out_ch, "bias")
        layer = {"type": f"conv{dims}d", "out_channels": out_ch, "kernel_size": k, "stride": s, "padding": p,
                 "dilation": d, "bias": b is not None}
        self.advance(node, self.window_shape(out_ch, k, s, p, d), layer, params)

    def window_shape(self, channels, k, s, p, d) -> tuple:
        out = []
        for n, kk, ss, pp, dd in zip(self.shape[1:], k, s, p, d):
            span = dd * (kk - 1) + 1
            if n + 2 * pp < span:
                raise self.fail(f"has a window spanning {span} px on an input of {n + 2 * pp} after padding")
            out.append((n + 2 * pp - span) // ss + 1)
        return (channels, *out)

    def pool(self, node, a, mode: str) -> None:
        dims = self.spatial()
        k, s, p, d = self.window_attrs(node, a, dims, None)
        if any(v != 1 for v in d):
            raise self.fail(f"has dilations {d}; cnnplay's pooling windows have no holes")
        if mode == "avg" and a.get("count_include_pad", 0) == 0 and any(p):
            raise self.fail("averages with count_include_pad=0 over padding; cnnplay's average pooling counts the "
                            "padding (count_include_pad=1, PyTorch's default)")
        shape = self.window_shape(self.shape[0], k, s, p, d)
        if a.get("ceil_mode", 0):
            ceil = [-(-(n + 2 * pp - kk) // ss) + 1 for n, kk, ss, pp in zip(self.shape[1:], k, s, p)]
            ceil = [c - 1 if (c - 1) * ss >= n + pp else c for c, n, ss, pp in zip(ceil, self.shape[1:], s, p)]
            if tuple(ceil) != shape[1:]:
                raise self.fail(f"uses ceil_mode, which gives {ceil} instead of cnnplay's {list(shape[1:])} on "
                                f"this input; cnnplay rounds output sizes down")
        layer = {"type": f"{mode}pool{dims}d", "kernel_size": k, "stride": s, "padding": p}
        self.advance(node, shape, layer)

    def op_MaxPool(self, node, a):
        self.pool(node, a, "max")

    def op_AveragePool(self, node, a):
        self.pool(node, a, "avg")

    def global_pool(self, node, mode):
        dims = self.spatial()
        k = list(self.shape[1:])
        layer = {"type": f"{mode}pool{dims}d", "kernel_size": k, "stride": k, "padding": [0] * dims}
        self.advance(node, (self.shape[0],) + (1,) * dims, layer)

    def op_GlobalMaxPool(self, node, a):
        self.global_pool(node, "max")

    def op_GlobalAveragePool(self, node, a):
        self.global_pool(node, "avg")

    def op_Relu(self, node, a):
        self.advance(node, self.shape, {"type": "relu"})

    def op_LeakyRelu(self, node, a):
        self.advance(node, self.shape, {"type": "leaky_relu", "negative_slope": a.get("alpha", 0.01)})

    def op_Flatten(self, node, a):
        axis = a.get("axis", 1)
        if axis < 0:
            axis += len(self.shape) + 1
        if axis != 1:
            raise self.fail(f"flattens from axis {a.get('axis')}; cnnplay flattens everything but the batch "
                            "(axis=1)")
        self.advance(node, (math.prod(self.shape),), {"type": "flatten"})

    def op_Reshape(self, node, a):
        if len(node.input) < 2 or not node.input[1]:
            raise self.fail("has no target shape")
        target = self.const(node.input[1], "target shape")
        if target.ndim != 1 or target.dtype.kind not in "iu":
            raise self.fail(f"has a target shape {short_repr(target.tolist())} that is not a list of integers")
        full = (self.batch,) + self.shape
        dims = [int(v) for v in target]
        allow_zero = a.get("allowzero", 0)
        out = []
        for i, v in enumerate(dims):
            if v == 0 and not allow_zero:
                if i >= len(full):
                    raise self.fail(f"copies axis {i} of its input, which has only {len(full)}")
                v = full[i]
            out.append(v)
        if out.count(-1) > 1 or any(v < -1 for v in out):
            raise self.fail(f"has an invalid target shape {dims}")
        total = math.prod(full)
        if -1 in out:
            known = math.prod(v for v in out if v != -1)
            if known == 0 or total % known:
                raise self.fail(f"cannot reshape {self._shape_text()} to {_shape_text(dims, self.batch)}")
            out[out.index(-1)] = total // known
        if math.prod(out) != total:
            raise self.fail(f"cannot reshape {self._shape_text()} to {_shape_text(dims, self.batch)}")
        if out == [self.batch, math.prod(self.shape)]:
            self.advance(node, (math.prod(self.shape),), {"type": "flatten"})
        elif tuple(out) == full:
            self.advance(node, self.shape)  # no change
        else:
            raise self.fail(f"reshapes {self._shape_text()} to {_shape_text(out, self.batch)}; cnnplay reshapes "
                            "only to (N, -1), the flatten before a linear layer")

    def flat_features(self) -> int:
        if len(self.shape) != 1:
            raise self.fail(f"needs a flat input (N, F) but gets {self._shape_text()}; cnnplay's linear layer "
                            "comes after a flatten")
        return self.shape[0]

    def op_Gemm(self, node, a):
        n_in = self.flat_features()
        if a.get("transA", 0):
            raise self.fail("transposes its input (transA=1); cnnplay's linear layer takes (N, F)")
        if len(node.input) < 2 or not node.input[1]:
            raise self.fail("has no weights")
        w = self.const(node.input[1], "weights")
        if w.ndim != 2:
            raise self.fail(f"has weights of shape {list(w.shape)}, not a matrix")
        w = w if a.get("transB", 0) else w.T
        if w.shape[1] != n_in:
            raise self.fail(f"has weights for {w.shape[1]} input features but its input has {n_in}")
        out = int(w.shape[0])
        alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
        params = {"weight": w.astype(np.float64) * alpha if alpha != 1.0 else w}
        has_bias = len(node.input) > 2 and bool(node.input[2])
        if has_bias:
            c = self.vector(self.const(node.input[2], "bias"), out, "bias C")
            params["bias"] = c.astype(np.float64) * beta if beta != 1.0 else c
        self.advance(node, (out,), {"type": "linear", "out_features": out, "bias": has_bias}, params)

    def op_MatMul(self, node, a):
        n_in = self.flat_features()
        w = self.const(node.input[1], "weights")
        if w.ndim != 2 or w.shape[0] != n_in:
            raise self.fail(f"multiplies (N, {n_in}) by a matrix of shape {list(w.shape)}; cnnplay's linear "
                            f"layer needs ({n_in}, out_features)")
        out = int(w.shape[1])
        self.advance(node, (out,), {"type": "linear", "out_features": out, "bias": False}, {"weight": w.T})

    def op_Add(self, node, a, sign: float = 1.0):
        """A constant added right after Conv/Gemm/MatMul: that layer's bias."""
        other = [i for i in node.input if i != self.head]
        layer = self.layers[self.head_layer] if self.head_layer is not None else None
        if len(other) != 1 or layer is None or layer[0]["type"] not in ("conv1d", "conv2d", "linear") \
                or self.head_layer != len(self.layers) - 1:
            raise self.fail(f"{node.op_type} of a constant is read only as the bias right after a Conv, Gemm or "
                            f"MatMul (cnnplay has no layer that adds a constant). cnnplay supports: {SUPPORTED}")
        if node.op_type == "Sub" and node.input[0] != self.head:
            raise self.fail("subtracts the computed value from a constant; cnnplay reads only x - bias")
        c = self.const(other[0], "bias")
        channels = self.shape[0]
        full_rank = len(self.shape) + 1
        if c.ndim > full_rank:
            raise self.fail(f"adds a constant of shape {list(c.shape)} to {self._shape_text()}")
        cs = (1,) * (full_rank - c.ndim) + c.shape
        if cs[0] != 1 or any(v != 1 for v in cs[2:]) or cs[1] not in (1, channels):
            raise self.fail(f"adds a constant of shape {list(c.shape)} to {self._shape_text()}; as a bias it must "
                            "hold one value per channel")
        vec = np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,)) * sign
        raw, params, names = layer
        params["bias"] = params.get("bias", 0.0) + vec
        raw["bias"] = True
        names.append(_node_label(node))
        self.advance(node, self.shape)

    def op_Sub(self, node, a):
        self.op_Add(node, a, -1.0)

    def op_BatchNormalization(self, node, a):
        if a.get("spatial", 1) == 0:
            raise self.fail("normalizes each position separately (spatial=0); cnnplay's batch norm has one "
                            "mean and variance per channel")
        if a.get("training_mode", 0):
            raise self.fail("is in training mode (batch statistics); cnnplay reads inference batch norm "
                            "(running statistics): export the model in eval mode")
        if len(node.input) < 5:
            raise self.fail("needs scale, bias, mean and variance inputs")
        channels = self.shape[0]
        names = ("weight", "bias", "running_mean", "running_var")
        params = {k: self.vector(self.const(i, k), channels, k) for k, i in zip(names, node.input[1:5])}
        self.advance(node, self.shape, {"type": "batchnorm", "eps": a.get("epsilon", 1e-5)}, params)

    def op_Transpose(self, node, a):
        rank = len(self.shape) + 1
        perm = [p + rank if p < 0 else p for p in a.get("perm", list(range(rank))[::-1])]
        if perm == list(range(rank)):  # changes nothing (PyTorch writes one for movedim on a flat vector)
            self.advance(node, self.shape)
            return
        to_last = [0] + list(range(2, rank)) + [1]
        to_first = [0, rank - 1] + list(range(1, rank - 1))
        if self.channels_last is None:
            if rank >= 3 and perm == to_last:
                self.channels_last = (node, None)
                self.advance(node, self.shape[1:] + self.shape[:1], same_values=False)
                return
            raise self.fail(f"transposes {self._shape_text()} with perm {perm}; cnnplay reads a Transpose only to "
                            "channels-last and back around a LayerNormalization")
        tnode, ln = self.channels_last
        if perm != to_first or ln is None:
            raise self.fail(f"transposes with perm {perm} inside the layer-norm pattern that begins at "
                            f"{_node_label(tnode)}; expected LayerNormalization(axis=-1) then perm {to_first}")
        self.channels_last = None
        layer, params, lnode = ln
        self.advance(node, self.shape[-1:] + self.shape[:-1], layer, params)
        self.layers[-1] = (layer, params, [_node_label(tnode), _node_label(lnode), _node_label(node)])

    def op_LayerNormalization(self, node, a):
        rank = len(self.shape) + 1
        axis = a.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
        flat = rank == 2 and self.channels_last is None
        if axis != rank - 1 or not (flat or self.channels_last is not None):
            what = f"axes {axis} to {rank - 1}" if axis < rank - 1 else "the last axis"
            raise self.fail(f"normalizes {what} of {self._shape_text()}; cnnplay's layer norm normalizes across "
                            "channels at each position (in ONNX: Transpose to channels-last, "
                            "LayerNormalization(axis=-1), Transpose back)")
        if self.channels_last is not None and self.channels_last[1] is not None:
            raise self.fail("is a second LayerNormalization inside one Transpose pair")
        channels = self.shape[-1]
        if len(node.input) < 2 or not node.input[1]:
            raise self.fail("has no scale")
        params = {"weight": self.vector(self.const(node.input[1], "scale"), channels, "scale")}
        has_bias = len(node.input) > 2 and bool(node.input[2])
        params["bias"] = (self.vector(self.const(node.input[2], "bias"), channels, "bias") if has_bias
                          else np.zeros(channels, np.float32))
        layer = {"type": "layernorm", "eps": a.get("epsilon", 1e-5)}
        if flat:
            self.advance(node, self.shape, layer, params)
        else:
            self.channels_last = (self.channels_last[0], (layer, params, node))
            self.advance(node, self.shape, same_values=False)

    def op_Identity(self, node, a):
        self.advance(node, self.shape)

    def op_Dropout(self, node, a):
        self.advance(node, self.shape)

    def op_Cast(self, node, a):
        if a.get("to") != 1:
            raise self.fail(f"casts the computed values to {_DTYPE_NAMES.get(a.get('to'), a.get('to'))}; cnnplay "
                            "computes in float32")
        self.advance(node, self.shape)

    def op_Softmax(self, node, a):
        self.softmax = node
        self.advance(node, self.shape, same_values=False)

    op_LogSoftmax = op_Softmax

    def vector(self, a: np.ndarray, n: int, what: str) -> np.ndarray:
        if a.size != n or a.ndim > 1 and max(a.shape) != a.size:
            raise self.fail(f"has a {what} of shape {list(a.shape)}; expected {n} values (one per channel)")
        return a.reshape(n)

    # -- the end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        if self.channels_last is not None:
            raise self.fail(f"the Transpose to channels-last {_node_label(self.channels_last[0])} is never "
                            "transposed back; cnnplay reads it only around a LayerNormalization", None)
        outs = [o.name for o in self.g.output]
        if len(outs) != 1:
            raise self.fail(f"the model has {len(outs)} outputs ({', '.join(map(short_repr, outs[:5]))}); a cnnplay "
                            "network has one")
        if outs[0] != self.head:
            if outs[0] in self.main_shapes:
                raise self.fail(f"the output {short_repr(outs[0])} is not the end of the chain: later nodes branch "
                                "off it (cnnplay networks are a single chain)")
            raise self.fail(f"the output {short_repr(outs[0])} is not computed from the input by the chain of "
                            "layers")
        if self.softmax is not None:
            self.notes.append(f"The trailing {self.softmax.op_type} (node {_node_label(self.softmax)}) was left out: "
                              "cnnplay has no softmax layer, so the last layer shows the raw scores (logits).")

    def build(self) -> OnnxImport:
        spec = {"input": list(self.input_shape), "layers": [raw for raw, _, _ in self.layers]}
        try:
            net = Network.from_dict(spec)
        except NetworkError as e:
            raise self.layer_error(e) from None
        for i, (_, params, _) in enumerate(self.layers):
            try:
                if params:
                    net.set_params(i, **{k: np.asarray(v, np.float32) for k, v in params.items()})
            except NetworkError as e:
                raise self.layer_error(e) from None
        return OnnxImport(net, self.notes, [names for _, _, names in self.layers])

    def layer_error(self, e: NetworkError) -> OnnxImportError:
        if e.layer is None or e.layer >= len(self.layers):
            return OnnxImportError(f"cnnplay cannot hold this network: {e.reason}", self.name)
        names = self.layers[e.layer][2]
        node = names[0] if len(names) == 1 else " + ".join(names)
        op = " + ".join(dict.fromkeys(self.op_of.get(n, "?") for n in names))
        field = f", {e.field}" if e.field else ""
        return OnnxImportError(f"becomes layer {e.layer} ({e.layer_type}{field}), which cnnplay refuses: {e.reason}",
                               self.name, node, op, layer=e.layer, layer_type=e.layer_type, field=e.field)


def _node_label(node, index: int = -1) -> str:
    if node.name:
        return node.name
    out = node.output[0] if node.output else "?"
    return f"#{index} -> {out}" if index >= 0 else f"{node.op_type} -> {out}"


def _shape_text(dims, batch) -> str:
    return "(" + ", ".join("N" if v == batch else str(v) for v in dims) + ")"


# -- evaluating shape arithmetic on constants ---------------------------------------------------------

def _axes(conv, args, a, pos=1):
    if len(args) > pos and args[pos] is not None:
        return [int(v) for v in np.asarray(args[pos]).reshape(-1)]
    return a.get("axes")


def _unsqueeze(conv, args, a):
    x = args[0]
    axes = _axes(conv, args, a)
    if axes is None:
        raise ValueError("no axes")
    rank = x.ndim + len(axes)
    for ax in sorted(v + rank if v < 0 else v for v in axes):
        x = np.expand_dims(x, ax)
    return x


def _squeeze(conv, args, a):
    axes = _axes(conv, args, a)
    return np.squeeze(args[0], axis=None if axes is None else tuple(axes))


def _slice(conv, args, a):
    x = args[0]
    if len(args) >= 3:
        starts, ends = [int(v) for v in args[1].reshape(-1)], [int(v) for v in args[2].reshape(-1)]
        axes = [int(v) for v in args[3].reshape(-1)] if len(args) > 3 and args[3] is not None else None
        steps = [int(v) for v in args[4].reshape(-1)] if len(args) > 4 and args[4] is not None else None
    else:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ValueError("a step of 0")
        index[ax] = slice(s, e, st)
    return x[tuple(index)]


def _cast(conv, args, a):
    to = a.get("to")
    if to not in _DTYPES:
        raise ValueError(f"to type {_DTYPE_NAMES.get(to, to)}")
    return args[0].astype(_DTYPES[to][0])


def _reshape(conv, args, a):
    x, target = args[0], [int(v) for v in args[1].reshape(-1)]
    target = [x.shape[i] if v == 0 and not a.get("allowzero", 0) else v for i, v in enumerate(target)]
    return x.reshape(target)


def _arith(fn):
    def run(conv, args, a):
        if any(np.asarray(v).dtype.kind not in "iuf" for v in args):
            raise ValueError("only numbers")
        return fn(*args)
    return run


def _int_div(x, y):
    if np.asarray(x).dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu":
        return np.floor_divide(x, y) if not np.any(y == 0) else _raise("division by zero")
    return np.divide(x, y)


def _raise(msg):
    raise ValueError(msg)


_FOLD = {
    "Identity": lambda c, args, a: args[0],
    "Cast": _cast,
    "Gather": lambda c, args, a: np.take(args[0], args[1], axis=a.get("axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda c, args, a: np.concatenate([np.atleast_1d(v) for v in args if v is not None], axis=a["axis"]),
    "Slice": _slice,
    "Reshape": _reshape,
    "Transpose": lambda c, args, a: np.transpose(args[0], a.get("perm")),
    "Add": _arith(np.add), "Sub": _arith(np.subtract), "Mul": _arith(np.multiply), "Div": _arith(_int_div),
}
_SIZE_KEEPING = {"Identity", "Cast", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice"}  # never larger
