"""cnnplay: a desktop playground for convolutional neural networks.

`import cnnplay` loads only the Qt-free core; the app lives in cnnplay.app.
"""

from .core import LAYER_TYPES, Network, NetworkError, load_bundle, load_network, save_network
from .core.interop import export_onnx, export_pytorch, import_onnx
from .core.training import Trainer

__version__ = "0.1.0"
__all__ = ["Network", "NetworkError", "LAYER_TYPES", "Trainer", "save_network", "load_network", "load_bundle",
           "export_pytorch", "export_onnx", "import_onnx"]
