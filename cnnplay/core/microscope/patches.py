"""Top patches: the samples of a data set that excite one channel most.

For every sample the channel's map is computed (a forward pass up to the
layer, in batches) and its maximum over positions taken; the k samples with
the highest maximum win (ties: the lower sample index). Each comes with the
position where it peaks and the crop of the input to that unit's receptive
field box (receptive.receptive_field, unclipped: cells of the box outside the
input are zero and marked in `inside`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import Cancelled, NetworkError
from ..receptive import _check_layer
from .batches import check_samples, forward_upto


@dataclass(frozen=True, eq=False)
class TopPatch:
    sample: int  # index in the data set
    value: float  # the channel's maximum over positions for this sample
    unit: tuple[int, ...]  # the unit where it peaks (c, y, x) / (c, l) / (f,)
    box: tuple[tuple[int, int], ...]  # the unit's receptive-field box on the input (unclipped)
    crop: np.ndarray  # float32 (C, *box size): the input under the box, 0 outside the input
    inside: np.ndarray  # bool (*box size): the cell lies on the input
    label: int | None


def crop_box(x: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """The input x (C, ...) under an unclipped box: (crop, inside)."""
    size = tuple(b - a for a, b in box)
    crop = np.zeros((x.shape[0],) + size, np.float32)
    inside = np.zeros(size, bool)
    src, dst = [slice(None)], [slice(None)]
    for (a, b), n in zip(box, x.shape[1:]):
        lo, hi = max(a, 0), min(b, n)
        if hi <= lo:
            return crop, inside
        src.append(slice(lo, hi))
        dst.append(slice(lo - a, hi - a))
    crop[tuple(dst)] = x[tuple(src)]
    inside[tuple(dst[1:])] = True
    return crop, inside


def top_patches(net, data, layer, channel, k: int = 9, batch_size: int = 64,
                progress=None, should_stop=None) -> list[TopPatch]:
    """The k samples of `data` (N, *input_shape) array or Dataset with the
    highest activation of `channel` of `layer` (max over positions), best
    first. progress(done, total) is called after each batch; should_stop()
    is asked between layers and batches (then Cancelled is raised)."""
    layer = _check_layer(net, layer)
    x, labels = check_samples(net, data)
    shape = net.output_shapes[layer]
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < shape[0]:
        what = "feature" if len(shape) == 1 else "channel"
        raise NetworkError(f"layer {layer} has no {what} {channel!r} (it has {shape[0]})", layer)
    if k < 1:
        raise NetworkError(f"k must be at least 1, not {k}")
    n = x.shape[0]
    best = np.full(n, -np.inf)
    where = np.zeros(n, np.int64)
    batch_size = max(1, int(batch_size))
    for start in range(0, n, batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled()
        y = forward_upto(net, x[start:start + batch_size], layer, should_stop)
        if len(shape) == 1:
            vals = y[:, channel].astype(np.float64)
            pos = np.zeros(len(vals), np.int64)
        else:
            m = y[:, channel].reshape(len(y), -1).astype(np.float64)
            m = np.where(np.isnan(m), -np.inf, m)
            pos = np.argmax(m, axis=1)  # the first position of the maximum
            vals = m[np.arange(len(m)), pos]
        best[start:start + len(vals)] = vals
        where[start:start + len(vals)] = pos
        if progress is not None:
            progress(min(start + batch_size, n), n)
    order = np.lexsort((np.arange(n), -best))[:k]
    out = []
    for s in order:
        s = int(s)
        if len(shape) == 1:
            unit = (int(channel),)
        else:
            unit = (int(channel),) + tuple(int(v) for v in np.unravel_index(int(where[s]), shape[1:]))
        box = net.receptive_field(layer, unit).box
        crop, inside = crop_box(x[s], box)
        out.append(TopPatch(s, float(best[s]), unit, box, crop, inside,
                            None if labels is None else int(labels[s])))
    return out
