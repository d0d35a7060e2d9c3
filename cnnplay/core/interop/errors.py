"""The errors of export and import, and the optional `onnx` package."""

from __future__ import annotations

import importlib.util

from ..errors import NetworkError

ONNX_INSTALL_HINT = 'pip install "cnnplay[onnx]"'


class InteropError(NetworkError):
    """An export or import that cannot be done. str(e) is the whole message.

    `path` is the file (or None), `node` and `op` the ONNX node at fault and its
    operator (or None); `layer`, `layer_type` and `field` point at a cnnplay
    layer when one is at fault, as in NetworkError.
    """

    def __init__(self, reason: str, path: str | None = None, node: str | None = None, op: str | None = None,
                 layer: int | None = None, field: str | None = None, layer_type: str | None = None):
        self.path = path
        self.node = node
        self.op = op
        super().__init__(reason, layer, field, layer_type)

    def _format(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.node is not None:
            where.append(f"node {self.node!r}" + (f" ({self.op})" if self.op else ""))
        elif self.layer is not None:
            where.append(f"layer {self.layer}" + (f" ({self.layer_type})" if self.layer_type else ""))
        return ": ".join(where + [self.reason])


class OnnxImportError(InteropError):
    """An ONNX file cnnplay cannot turn into a network: not ONNX, damaged, too
    big, or a graph with an operator or a shape of graph that cnnplay lacks."""


class OnnxUnavailable(ImportError):
    """The optional `onnx` package is not installed; the message says how to install it."""

    def __init__(self, what: str):
        super().__init__(f"{what} needs the optional 'onnx' package: {ONNX_INSTALL_HINT}")


def onnx_available() -> bool:
    """Whether `import onnx` would find the package (without importing it)."""
    return importlib.util.find_spec("onnx") is not None


def require_onnx(what: str):
    """The onnx module, or OnnxUnavailable naming `what` needed it."""
    if not onnx_available():
        raise OnnxUnavailable(what)
    try:
        import onnx
    except ImportError as e:  # installed but broken (e.g. a protobuf mismatch)
        raise OnnxUnavailable(f"{what} (the installed one fails to load: {e})") from None
    return onnx
