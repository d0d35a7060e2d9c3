"""cnnplay: a desktop playground for convolutional neural networks.

`import cnnplay` loads only the Qt-free core; the app lives in cnnplay.app.
"""

import os

# Before numpy loads OpenBLAS (it reads this once): its idle threads sleep after
# ~4000 cycles instead of busy-waiting 2^28 (about 0.1 s) after every matmul, which
# took a core from numba's kernels for that long (see core/kernels/__init__.py).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")

from .core import LAYER_TYPES, Network, NetworkError, load_bundle, load_network, save_network
from .core.interop import export_onnx, export_pytorch, import_onnx
from .core.training import Trainer

__version__ = "0.1.0"
__all__ = ["Network", "NetworkError", "LAYER_TYPES", "Trainer", "save_network", "load_network", "load_bundle",
           "export_pytorch", "export_onnx", "import_onnx"]
