"""The arithmetic of a sliding window along one axis: the one place it is written.

Layer shape rules (layers.py), the kernels and the receptive-field code all use it.
"""

from __future__ import annotations


def window_span(kernel: int, dilation: int = 1) -> int:
    """Input pixels covered by one application of a dilated kernel: d(k-1)+1."""
    return dilation * (kernel - 1) + 1


def window_output(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a window sliding over n inputs (PyTorch's rule, floor mode);
    below 1 when the kernel does not fit the padded input."""
    return (n + 2 * padding - window_span(kernel, dilation)) // stride + 1


def same_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding that keeps the length at stride 1 (PyTorch's padding="same":
    the extra pixel of an even span goes after, i.e. right or bottom)."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def window_start(o: int, stride: int = 1, padding: int = 0) -> int:
    """Input coordinate of the first tap of output o (negative: in the padding)."""
    return o * stride - padding


def window_taps(o: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> range:
    """Input coordinates of the taps of output o: o*s - p + t*d for t < k
    (outside [0, n): padding)."""
    a = window_start(o, stride, padding)
    return range(a, a + dilation * kernel, dilation)
