"""Data sets for training: `Dataset` (checked samples, labels, class names;
.npz files without pickles) and the built-in sets (`make_builtin`): shapes,
orientations, waveforms (generated from a seed) and digits (real, bundled).

Also importable as `cnnplay.datasets`.
"""

from .builtin import BUILTIN, BuiltinSet, Param, from_reference, make_builtin
from .dataset import Dataset, DatasetError

__all__ = ["Dataset", "DatasetError", "BUILTIN", "BuiltinSet", "Param", "make_builtin", "from_reference"]
