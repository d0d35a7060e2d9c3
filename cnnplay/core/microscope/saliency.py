"""Why this class: where on the input a class score looks.

For a network whose last layer is a vector of scores (one per class), the
saliency of class k is the effective field of score k on this input,
|d score_k / d input| summed over the input's channels (Simonyan et al.,
"Deep Inside Convolutional Networks", 2014; the same gradient the effective
receptive field shows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NetworkError


@dataclass(frozen=True, eq=False)
class ClassSaliency:
    layer: int  # the score layer (the last one)
    class_index: int
    predicted: int  # argmax of the scores
    scores: np.ndarray  # float32 (K,)
    map: np.ndarray  # float32, the input's spatial shape


def has_classes(net) -> bool:
    """The last layer is a flat vector of at least two scores."""
    return len(net) > 0 and len(net.output_shapes[-1]) == 1 and net.output_shapes[-1][0] >= 2


def class_saliency(net, x, outputs=None, class_index: int | None = None) -> ClassSaliency:
    """The saliency of `class_index` (default: the predicted class, the
    largest score) on input x; `outputs` of a forward pass on x are reused."""
    if not has_classes(net):
        raise NetworkError("the network has no class scores: its last layer must be a flat vector "
                           "of at least two outputs (e.g. a linear layer)")
    x = net.check_input(x)
    if outputs is None or len(outputs) < len(net):
        outputs = net.forward(x)
    last = len(net) - 1
    scores = np.asarray(outputs[last], np.float32)
    predicted = int(np.argmax(scores))
    k = predicted if class_index is None else class_index
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < scores.shape[0]:
        raise NetworkError(f"no class {k!r}: the network has {scores.shape[0]} classes", last)
    sal = net.effective_receptive_field(x, last, (int(k),), outputs=outputs)
    return ClassSaliency(last, int(k), predicted, scores.copy(), sal)
