"""One card per layer: a header (index, summary, shape, hover readout, pages)
and the layer's output drawn as a mosaic, lanes or bars."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QSizePolicy, QStackedWidget, QToolButton,
                               QVBoxLayout, QWidget)

from . import grid as g
from .maps import BarsView, LanesView, MosaicView


def shape_text(shape) -> str:
    return " × ".join(str(n) for n in shape)


def format_value(v: float) -> str:
    return f"{v:.4g}"


def softmax(scores: np.ndarray) -> np.ndarray:
    """Class probabilities from class scores (the network's last layer)."""
    z = np.asarray(scores, np.float64)
    e = np.exp(z - z.max())
    return (e / e.sum()).astype(np.float32)


class StaleOverlay(QLabel):
    """A dimmed veil with a word on it, over data that is being recomputed."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setAlignment(Qt.AlignCenter)
        self.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.setStyleSheet("background: rgba(23, 25, 29, 170); color: #e8eaed; font-style: italic;")
        self.hide()
        self._covering = None

    def cover(self, text: str | None) -> None:
        text = text or None
        if text == self._covering:
            return
        self._covering = text
        if text:
            self.setText(text)
            self.setGeometry(self.parentWidget().rect())
            self.raise_()
            self.show()
        else:
            self.hide()


class LayerCard(QFrame):
    unit_clicked = Signal(int, tuple)  # layer, unit

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("layerCard")
        self.setFrameShape(QFrame.StyledPanel)
        self.index = -1
        self.array: np.ndarray | None = None  # what is on screen
        self._rendered = None  # (array, per_channel, page, enlarged) last drawn
        self._range = None  # (array, (min, max))
        self.per_channel = False
        self.page = 0
        self.enlarged: int | None = None
        self.field = None
        self.selected = None
        # Cards scrolled out of sight keep their newest data and overlays but draw them
        # only when they come into view (the panel says so through set_in_view).
        self.in_view = True
        self._dirty = False
        self._header = None
        self._height = None
        self.max_height = 700  # for an enlarged channel (the panel sets it from its viewport)

        self.title = QLabel()
        self.title.setTextFormat(Qt.RichText)
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.info = QLabel()
        self.info.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.info.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.info.setObjectName("hoverInfo")
        self.info.setStyleSheet("color: #9aa0aa; font-family: monospace;")
        self.back = QToolButton(text="All channels")
        self.back.setToolTip("Back to the grid of all channels (or double-click the channel)")
        self.back.clicked.connect(lambda: self.set_enlarged(None))
        self.prev = QToolButton(text="◀")
        self.next = QToolButton(text="▶")
        self.page_label = QLabel()
        self.prev.clicked.connect(lambda: self.set_page(self.page - 1))
        self.next.clicked.connect(lambda: self.set_page(self.page + 1))
        for b in (self.prev, self.next, self.back):
            b.setAutoRaise(True)
        head = QHBoxLayout()
        head.setContentsMargins(6, 3, 6, 0)
        head.addWidget(self.title, 3)
        head.addWidget(self.info, 2)
        head.addSpacing(8)
        for w in (self.back, self.prev, self.page_label, self.next):
            head.addWidget(w)

        self.stack = QStackedWidget()
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #9aa0aa; padding: 12px;")
        self.stack.addWidget(self.message)
        self.mosaic: MosaicView | None = None
        self.lanes: LanesView | None = None
        self.bars: BarsView | None = None
        self.stale = StaleOverlay(self.stack)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(self.stack)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self._show_pager(False)
        self._aspect = 3.5

    # -- header ------------------------------------------------------------------------
    def set_header(self, index: int, summary: str, shape, note: str = "") -> None:
        self.index = index
        key = (index, summary, tuple(shape) if shape else None, note)
        if key == self._header:
            return
        self._header = key
        shape_html = f"<span style='color:#9aa0aa'>&nbsp;→ {shape_text(shape)}</span>" if shape else ""
        note_html = f"<span style='color:#ff8a80'>&nbsp;{note}</span>" if note else ""
        self.title.setText(f"<b>{index}</b>&nbsp;&nbsp;{summary}{shape_html}{note_html}")

    def _show_pager(self, on: bool) -> None:
        for w in (self.prev, self.next, self.page_label):
            w.setVisible(on)

    # -- content -----------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        self.array = None
        self._rendered = None
        self._dirty = False
        self.stack.setCurrentWidget(self.message)
        self.message.setText(text)
        self._set_height(80)
        self.back.hide()
        self._show_pager(False)
        self.stale.cover(None)

    def set_stale(self, text: str | None) -> None:
        if self.array is None and text:
            self.stack.setCurrentWidget(self.message)
            self.message.setText("")
            self._set_height(80)
        self.stale.cover(text)

    classes = None  # class names of a classifier's output (its bars then show softmax probabilities)

    def show_output(self, array: np.ndarray, per_channel: bool, classes=None) -> bool:
        """Draw a layer's output; returns False when it was already on screen as asked.
        `classes`: one name per output of a flat layer (the network's class scores):
        the bars then show the softmax probabilities, labelled with the names."""
        if self.array is not array:
            self.page, self.enlarged = (0, None) if self.array is None or self.array.shape != array.shape \
                else (self.page, self.enlarged)
        if classes is not None and (array.ndim != 1 or len(classes) != len(array)):
            classes = None
        self.array, self.per_channel, self.classes = array, per_channel, classes
        return self._render()

    def set_in_view(self, on: bool) -> None:
        """Whether the card is (about to be) on screen; coming into view draws what is pending."""
        self.in_view = on
        if on and self._dirty:
            self.flush()

    def flush(self) -> None:
        """Draw the newest data and overlays now, in view or not."""
        self._dirty = False
        if not self._render():
            view = self.current_view()
            if view is not None:
                view.set_overlays(field=self.field, selected=self.selected)

    def _set_height(self, h: int) -> None:
        if h != self._height:
            self._height = h
            self.setFixedHeight(h)

    def _content_height(self, a: np.ndarray, n_channels: int) -> int:
        if a.ndim == 3:
            return 260 if self.enlarged is None else self._enlarged_height(a)
        if a.ndim == 2:
            return int(min(70 + 22 * n_channels, 320))
        return 190

    def _enlarged_height(self, a: np.ndarray) -> int:
        """An enlarged channel fills the card's width (aspect kept), up to max_height."""
        h, w = a.shape[1:]
        width = self.width() if self.width() > 100 else 700
        return int(min(max((width - 70) * h / max(w, 1) + 40, 200), max(self.max_height, 260)))

    def set_page(self, page: int) -> None:
        if self.array is not None:
            self.page = min(max(page, 0), g.page_count(self.array.shape[0]) - 1)
            self._render()

    def set_enlarged(self, channel: int | None) -> None:
        self.enlarged = channel
        self._render()

    def layer_range(self) -> tuple[float, float]:
        if self._range is None or self._range[0] is not self.array:
            self._range = (self.array, g.finite_range(self.array))
        return self._range[1]

    def _render(self) -> bool:
        a = self.array
        if a is None:
            return False
        key = (a, self.per_channel, self.page, self.enlarged, self.classes)
        old = self._rendered
        if old is not None and old[0] is a and old[1:] == key[1:]:
            return False
        n = len(self.enlarged_or_page_channels(a))
        self._set_height(self._content_height(a, n))
        if not self.in_view:
            self._dirty = True  # drawn when it comes into view
            return False
        self._dirty = False
        self._rendered = key
        paged = a.ndim >= 2 and a.shape[0] > g.PAGE_SIZE and self.enlarged is None
        self._show_pager(paged)
        if paged:
            self.page_label.setText(f"ch {self.page * g.PAGE_SIZE}–"
                                    f"{min(a.shape[0], (self.page + 1) * g.PAGE_SIZE) - 1} of {a.shape[0]}")
        self.back.setVisible(a.ndim == 3 and self.enlarged is not None)
        channels = self.enlarged_or_page_channels(a)
        if a.ndim == 3:
            view = self._view("mosaic")
            self._aspect = self.map_aspect()
            view.set_maps(a, channels, self.per_channel, self.layer_range(),
                          aspect=self._aspect if self.enlarged is None else 1.0)
        elif a.ndim == 2:
            view = self._view("lanes")
            view.set_signal(a, channels, self.per_channel)
        else:
            view = self._view("bars")
            if self.classes is not None:
                view.set_values(softmax(a))
            else:
                view.set_values(a)
            view.set_class_names(self.classes)
        self.stack.setCurrentWidget(view)
        view.set_overlays(field=self.field, selected=self.selected)
        return True

    def enlarged_or_page_channels(self, a: np.ndarray) -> tuple[int, ...]:
        if a.ndim < 2:
            return ()
        if self.enlarged is not None and a.ndim == 3:
            return (self.enlarged,)
        return g.page_channels(a.shape[0], self.page)

    MAP_HEIGHT = 220

    def map_aspect(self) -> float:
        """Width / height of the mosaic's drawing area, so tiles fill the card."""
        width = self.width() if self.width() > 100 else 700
        return max(0.8, (width - 70) / self.MAP_HEIGHT)

    def current_view(self):
        w = self.stack.currentWidget()
        return None if w is self.message else w

    def _view(self, kind: str):
        view = getattr(self, kind)
        if view is None:
            cls = {"mosaic": MosaicView, "lanes": LanesView, "bars": BarsView}[kind]
            view = cls(name=f"layer{self.index}")
            setattr(self, kind, view)
            self.stack.addWidget(view)
            view.clicked.connect(self._on_click)
            view.double_clicked.connect(self._on_double)
            view.hovered.connect(self._on_hover)
        return view

    # -- overlays and interaction ---------------------------------------------------------
    def set_overlays(self, field=None, selected=None) -> None:
        self.field, self.selected = field, selected
        if not self.in_view:
            self._dirty = self._dirty or self.current_view() is not None
            return
        view = self.current_view()
        if view is not None:
            view.set_overlays(field=field, selected=selected)

    def _on_click(self, unit: tuple) -> None:
        self.unit_clicked.emit(self.index, unit)

    def _on_double(self, unit: tuple) -> None:
        if self.array is not None and self.array.ndim == 3:
            self.set_enlarged(None if self.enlarged is not None else unit[0])

    def _on_hover(self, unit) -> None:
        a = self.array
        if unit is None or a is None:
            self.info.setText("")
            return
        v = format_value(float(a[unit]))
        if len(unit) == 3:
            self.info.setText(f"ch {unit[0]}  y {unit[1]}  x {unit[2]}  = {v}")
        elif len(unit) == 2:
            self.info.setText(f"ch {unit[0]}  l {unit[1]}  = {v}")
        elif self.classes is not None:
            p = softmax(a)[unit[0]]
            self.info.setText(f"{self.classes[unit[0]]}: p = {p:.1%}  (score {v})")
        else:
            self.info.setText(f"feature {unit[0]}  = {v}")

    view_probe = None  # callable(card) -> bool: is the card in the scroll area's view? (set by the panel)

    def moveEvent(self, ev):
        super().moveEvent(ev)
        if self.view_probe is not None:
            self.set_in_view(self.view_probe(self))

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        if self.view_probe is not None:
            self.set_in_view(self.view_probe(self))
        a = self.array
        if a is not None and a.ndim == 3 and self.enlarged is not None:
            self._set_height(self._enlarged_height(a))  # the enlarged channel follows the width
        if a is not None and a.ndim == 3 and self.enlarged is None and self._rendered is not None \
                and self.mosaic is not None:
            n = len(self.mosaic.grid.channels) if self.mosaic.grid else 0
            if g.choose_cols(n, a.shape[1], a.shape[2], self.map_aspect()) != \
                    g.choose_cols(n, a.shape[1], a.shape[2], self._aspect):
                self._rendered = None
                self._render()
        if self.stale.isVisible():
            self.stale.setGeometry(self.stack.rect())
