"""Leave and enter cnnplay: PyTorch code export, ONNX export and ONNX import.

    from cnnplay import export_pytorch, export_onnx, import_onnx
    export_pytorch(net, "model.py")        # model.py + model.npz beside it
    export_onnx(net, "model.onnx")         # opset 17, dynamic batch
    net = import_onnx("model.onnx")        # a chain of cnnplay's layers

Qt-free. `onnx` is an optional extra (pip install "cnnplay[onnx]"), imported
only when an ONNX function runs; PyTorch is never imported here (the exported
file imports it).
"""

from .errors import ONNX_INSTALL_HINT, InteropError, OnnxImportError, OnnxUnavailable, onnx_available
from .onnx_export import export_onnx, onnx_model
from .onnx_import import OnnxImport, import_onnx, onnx_from_bytes, read_onnx
from .pytorch import export_pytorch, pytorch_source

__all__ = ["export_pytorch", "pytorch_source", "export_onnx", "onnx_model", "import_onnx", "read_onnx",
           "onnx_from_bytes", "OnnxImport", "InteropError", "OnnxImportError", "OnnxUnavailable",
           "onnx_available", "ONNX_INSTALL_HINT"]
