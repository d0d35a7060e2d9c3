"""The neuron microscope (issue 15), Qt-free: how a unit's value was computed
(`explain`), which samples of a data set excite a channel most (`top_patches`),
what input a unit prefers (`preferred_input`) and where a class score looks
(`class_saliency`)."""

from .explain import Explanation, block_of, explain, fmt
from .patches import TopPatch, crop_box, top_patches
from .preferred import PreferredInput, preferred_input
from .saliency import ClassSaliency, class_saliency, has_classes

__all__ = ["Explanation", "block_of", "explain", "fmt", "TopPatch", "crop_box", "top_patches",
           "PreferredInput", "preferred_input", "ClassSaliency", "class_saliency", "has_classes"]
