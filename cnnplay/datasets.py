"""`cnnplay.datasets`: the core's data sets (see cnnplay/core/datasets/)."""

from .core.datasets import BUILTIN, BuiltinSet, Dataset, DatasetError, Param, from_reference, make_builtin

__all__ = ["Dataset", "DatasetError", "BUILTIN", "BuiltinSet", "Param", "make_builtin", "from_reference"]
