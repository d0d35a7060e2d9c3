"""A minimal Qt-free signal: models emit, views listen (napari-style)."""

from __future__ import annotations

from typing import Callable


class Signal:
    """Callbacks run synchronously, in connection order, on emit()."""

    def __init__(self):
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> Callable:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable) -> None:
        try:
            self._callbacks.remove(callback)
        except ValueError:
            pass

    def emit(self, *args) -> None:
        for cb in list(self._callbacks):
            cb(*args)
