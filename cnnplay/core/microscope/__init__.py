"""The neuron microscope (issue 15), Qt-free: how a unit's value was computed
(`explain`), which samples of a data set excite a channel most (`top_patches`),
what input a unit prefers (`preferred_input`) and where a class score looks
(`class_saliency`)."""

from .explain import Explanation, block_of, explain, fmt

__all__ = ["Explanation", "block_of", "explain", "fmt"]
