"""Incremental forward pass: recompute only from the first layer that changed."""

from __future__ import annotations

from typing import Callable, Hashable

import numpy as np

from .errors import Cancelled
from .network import Network

__all__ = ["Cancelled", "ForwardCache"]


class ForwardCache:
    """Keeps the outputs of the last forward pass, keyed per layer.

    A layer's key (Network.layer_keys) changes when its settings, parameters
    or anything before it change; with the same input token, the longest
    prefix of equal keys is reused. Only one pass is kept, so the memory is
    that of the maps on screen.
    """

    def __init__(self):
        self._input_token: Hashable = None
        self._keys: list = []
        self._outputs: list[np.ndarray] = []

    def reusable(self, net: Network, input_token: Hashable) -> int:
        """How many leading layers of `net` are already computed for this input."""
        if input_token != self._input_token:
            return 0
        n = 0
        for old, new in zip(self._keys, net.layer_keys()):
            if old != new:
                break
            n += 1
        return min(n, len(self._outputs))

    def computed(self, net: Network, input_token: Hashable) -> list[np.ndarray]:
        """The outputs of `net`'s leading layers already held for this input
        (e.g. what a cancelled pass got done)."""
        return self._outputs[:self.reusable(net, input_token)]

    def run(self, net: Network, x: np.ndarray, input_token: Hashable,
            should_stop: Callable[[], bool] = lambda: False) -> tuple[list[np.ndarray], int]:
        """(all outputs, index of the first recomputed layer). Raises Cancelled
        between layers when should_stop() says so; what was computed is kept."""
        start = self.reusable(net, input_token)
        keys = net.layer_keys()
        outputs = self._outputs[:start]
        x = net.check_input(x)
        h = outputs[-1] if outputs else x
        self._input_token, self._keys, self._outputs = input_token, keys[:start], outputs
        for i in range(start, len(net)):
            if should_stop():
                raise Cancelled()
            h = net.layer_forward(i, h)
            self._outputs.append(h)
            self._keys.append(keys[i])
        return list(self._outputs), start

    def clear(self) -> None:
        self.__init__()
