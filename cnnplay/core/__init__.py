"""The Qt-free core of cnnplay: layers, network, kernels, receptive fields, files."""

from .errors import NetworkError
from .fileformat import load_bundle, load_network, save_network
from .layers import LAYER_TYPES, LayerType, Window
from .layout import Layout
from .network import Network

__all__ = ["NetworkError", "Network", "Layout", "LAYER_TYPES", "LayerType", "Window",
           "save_network", "load_network", "load_bundle"]
