"""Concept helpers (issue 9): pure, Qt-free functions that make CNN ideas visible.

- presets: kernel presets (identity, blur, Gaussian, sharpen, Sobel, Laplacian,
  Gabor, random) and applying them to a conv layer's weights;
- weight_sharing: a conv layer's parameter count beside a fully connected
  layer with the same input and output sizes;
- growth: receptive-field size and jump against depth, with what-if variants;
- invariance: how much each layer's output changes when the input shifts;
- calibration: batch-norm running statistics from the current input;
- blocks: layer dicts for a one-click "conv -> norm -> activation" block.

Every number comes from the core (Network, its receptive-field table, the real
forward pass); nothing here is hard-coded per example.
"""

from .blocks import conv_norm_act_block, insert_block
from .calibration import batchnorm_statistics
from .growth import WHAT_IFS, GrowthSeries, growth_series, what_if_series
from .invariance import LayerChange, shift_input, shift_invariance
from .presets import (PRESET_OPTIONS, PRESETS_1D, PRESETS_2D, PresetError, apply_preset, make_kernel)
from .weight_sharing import MLPComparison, mlp_comparison, mlp_comparisons

__all__ = [
    "PRESETS_1D", "PRESETS_2D", "PRESET_OPTIONS", "PresetError", "make_kernel", "apply_preset",
    "MLPComparison", "mlp_comparison", "mlp_comparisons",
    "GrowthSeries", "WHAT_IFS", "growth_series", "what_if_series",
    "LayerChange", "shift_input", "shift_invariance",
    "batchnorm_statistics", "conv_norm_act_block", "insert_block",
]
