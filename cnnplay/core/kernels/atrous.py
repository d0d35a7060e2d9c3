"""Dilated 3x3 convolutions as ordinary ones on a batch of sub-images ("space to
batch", the atrous algorithm of the DeepLab papers).

With dilation (dh, dw) and stride 1, output pixel (dh*i + a, dw*j + b) only
reads input pixels of the same phase (a, b): rows a, a + dh, ... and columns b,
b + dw, ... So the dilated convolution of a map is the undilated one of each of
its dh*dw phase sub-images, provided the padding is a multiple of the dilation
(phase a of the output then reads phase a of the input, padding / dilation
rows and columns of zeros around it):

    y[n, :, a::dh, b::dw] = conv3x3(x[n, :, a::dh, b::dw], padding (ph/dh, pw/dw))

The sub-images of a batch go through the ordinary 3x3 path as one batch of
dh*dw*N samples, where channel-heavy layers take Winograd (conv.choose), 2.25x
or 4x fewer multiply-adds than the direct kernel that dilated layers ran on
otherwise; the training engine's gradients follow the same way (the input
gradient is the sub-images' one put back, the weight gradient the sum over all
sub-images). Sub-images of uneven size are zero-padded to one size: the zeros
are padding the dilated layer reads as well, or rows no real output reads.

The copies in and out are numpy strided copies (about 2-5 % of such a layer's
time); the memory rule counts them (layers.py).
"""

from __future__ import annotations

import numpy as np

from ..geometry import window_output
from .reuse import rearranged


def applies(kernel, stride, padding, dilation) -> bool:
    """Whether a 3x3 layer with stride 1 and a dilation runs as its sub-images:
    the padding must be a multiple of the dilation on each axis."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    return (kh == kw == 3 and sh == sw == 1 and (dh, dw) != (1, 1)
            and ph % dh == 0 and pw % dw == 0)


def sub_padding(padding, dilation) -> tuple[int, int]:
    """The sub-images' convolution padding."""
    return padding[0] // dilation[0], padding[1] // dilation[1]


def sub_size(h: int, w: int, dilation) -> tuple[int, int]:
    """The size of the sub-images of an h x w map: its largest phase."""
    return -(-h // dilation[0]), -(-w // dilation[1])


def sub_output_size(h: int, w: int, padding, dilation) -> tuple[int, int]:
    """The output size of the undilated 3x3 layer on the sub-images of an h x w map."""
    (hs, ws), (sph, spw) = sub_size(h, w, dilation), sub_padding(padding, dilation)
    return window_output(hs, 3, 1, sph, 1), window_output(ws, 3, 1, spw, 1)


def input_sub_images(x, dilation, remember: bool = False) -> np.ndarray:
    """to_batch(x): inside reuse.reuse_sources() the forward pass's (remember=True)
    for the weight gradient, under one key for both."""
    return rearranged(x, ("atrous", tuple(dilation)), lambda: to_batch(x, dilation), remember)


def to_batch(x, dilation, size=None) -> np.ndarray:
    """x (N, C, H, W) -> (dh*dw*N, C, hs, ws): sample (a*dw + b)*N + n is phase
    (a, b) of sample n, zero beyond it. size: (hs, ws), at least sub_size (an
    output gradient is padded to the sub-images' output size)."""
    n, c, h, w = x.shape
    dh, dw = dilation
    hs, ws = size or sub_size(h, w, dilation)
    out = np.empty((dh, dw, n, c, hs, ws), np.float32)
    for a in range(dh):
        for b in range(dw):
            phase = x[:, :, a::dh, b::dw]
            ha, wb = phase.shape[2:]
            out[a, b, :, :, :ha, :wb] = phase
            out[a, b, :, :, ha:, :] = 0
            out[a, b, :, :, :ha, wb:] = 0
    return out.reshape(dh * dw * n, c, hs, ws)


def from_batch(xs, dilation, n: int, h: int, w: int) -> np.ndarray:
    """The inverse of to_batch: (dh*dw*N, C, hs, ws) -> (N, C, h, w), each phase
    put back (what lies beyond the map is dropped)."""
    dh, dw = dilation
    c, hs, ws = xs.shape[1:]
    parts = xs.reshape(dh, dw, n, c, hs, ws)
    out = np.empty((n, c, h, w), np.float32)
    for a in range(dh):
        for b in range(dw):
            ha, wb = len(range(a, h, dh)), len(range(b, w, dw))
            out[:, :, a::dh, b::dw] = parts[a, b, :, :, :ha, :wb]
    return out
