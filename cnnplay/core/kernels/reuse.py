"""Inside `reuse_sources()`, each conv input is rearranged once per training step.

The convolutions read their input rearranged: the direct and GEMM paths as a flat
phase-split source (conv.py), Winograd channels last (winograd_tiles.py). A
training step's forward pass builds it, and the weight gradient of the backward
pass needs the same one: built twice, it was an eighth of the step. Inside the
block the copy the forward pass built (and asked to remember) serves the
backward pass. The inputs must not change inside the block; what is kept is
about the size of the conv layers' inputs, and only for the block.
"""

from __future__ import annotations

import contextlib
import threading

_local = threading.local()


@contextlib.contextmanager
def reuse_sources():
    """Inside the block, this thread rearranges each conv input once per layout
    (see the module doc)."""
    if getattr(_local, "memo", None) is not None:  # nested: the outer block's memo serves
        yield
        return
    _local.memo = {}
    try:
        yield
    finally:
        _local.memo = None


@contextlib.contextmanager
def private():
    """Inside the block, a memo of its own (tuning.py's trials: what they remember is
    dropped after the block, and they never find the enclosing step's copies)."""
    outer = getattr(_local, "memo", None)
    _local.memo = {}
    try:
        yield
    finally:
        _local.memo = outer


def rearranged(x, layout, make, remember: bool = False):
    """make(), x rearranged as `layout` (a hashable description) says; inside
    `reuse_sources()` the one made (with remember=True) for the same x and layout."""
    memo = getattr(_local, "memo", None)
    key = None
    if memo is not None:  # the memory x views (a 1D layer's input is a new view each call)
        key = (x.__array_interface__["data"][0], x.shape, x.strides, layout)
        hit = memo.get(key)
        if hit is not None:
            return hit[1]
    out = make()
    if memo is not None and remember:
        memo[key] = (x, out)  # x is kept alive: its memory cannot be reused meanwhile
    return out
