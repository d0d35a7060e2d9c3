"""The views of the central area: live feature maps, the input with receptive
fields, the unit readout and the kernels (pyqtgraph throughout)."""

from .panel import MapsPanel

__all__ = ["MapsPanel"]
