"""The weights of the selected conv layer: one small image per (out, in) pair."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSizePolicy, QLabel, QStackedWidget, QVBoxLayout, QWidget

from . import grid as g
from . import style
from .cards import format_value
from .maps import MosaicView

MAX_OUT, MAX_IN = 32, 32


class KernelsView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.title, self.info = style.header_labels()
        self.mosaic = MosaicView(name="kernels")
        self.message = QLabel("Select a conv layer (in the network or by clicking one of its units) to see its weights.")
        self.message.setAlignment(Qt.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #9aa0aa;")
        self.message.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(self.mosaic)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.info)
        self.weight: np.ndarray | None = None
        self.source = None  # (weight array, layer, summary) on screen
        self.n_in = 1
        self.mosaic.hovered.connect(self._on_hover)
        self.show_weights(None)

    def show_weights(self, weight: np.ndarray | None, layer: int | None = None, summary: str = "") -> None:
        key = (_owner(weight), layer, summary)
        if self.source is not None and self.source[0] is key[0] and self.source[1:] == key[1:]:
            return  # already on screen
        same_weights = weight is not None and self.source is not None and self.source[0] is key[0]
        self.source = key if weight is not None else None
        if weight is None:
            self.weight = None
            self.title.setText("<b>Weights</b>")
            self.stack.setCurrentWidget(self.message)
            self.setMaximumHeight(90)  # the input gets the room
            return
        w = weight if weight.ndim == 4 else weight[:, :, None, :]
        n_out, n_in = w.shape[:2]
        shown = w[:MAX_OUT, :MAX_IN]
        if not same_weights:
            # New weights: draw them. The same weight array under a new summary (an edit of
            # the layer's other settings: dilation, padding, stride) keeps its picture and
            # only the title changes (no re-upload, no repaint of the kernels and their bar).
            self.setMaximumHeight(16777215)
            self.weight, self.n_in = shown, shown.shape[1]
            tiles = np.ascontiguousarray(shown.reshape((-1,) + shown.shape[2:]), dtype=np.float32)
            lo, hi = g.finite_range(tiles)
            m = max(abs(lo), abs(hi), 1e-12)
            self.mosaic.set_maps(tiles, tuple(range(len(tiles))), False, (-m, m), cols=self.n_in)
        more = "" if (n_out, n_in) == shown.shape[:2] else \
            f" <span style='color:#9aa0aa'>(first {shown.shape[0]}×{shown.shape[1]} of {n_out}×{n_in})</span>"
        self.title.setText(f"<b>Weights</b>&nbsp; layer {layer} &nbsp;{summary}"
                           f"<span style='color:#9aa0aa'>&nbsp; rows: out, columns: in</span>{more}")
        self.stack.setCurrentWidget(self.mosaic)

    def _on_hover(self, unit):
        if unit is None or self.weight is None:
            self.info.setText("")
            return
        t, ky, kx = unit
        o, i = divmod(t, self.n_in)
        v = format_value(float(self.weight[o, i, ky, kx]))
        self.info.setText(f"out {o}  in {i}  ky {ky}  kx {kx}  = {v}")


def _owner(a):
    """The array that owns a view's memory (Network.params hands out fresh views)."""
    while a is not None and getattr(a, "base", None) is not None and isinstance(a.base, np.ndarray):
        a = a.base
    return a
