"""One card per layer: a header (index, summary, shape, hover readout, pages)
and the layer's output drawn as a mosaic, lanes or bars."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QSizePolicy, QStackedWidget, QToolButton,
                               QVBoxLayout, QWidget)

from .. import background
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
    """A dimmed veil with a word on it, over data that is being recomputed.

    cover(text, delay_ms): a veil asked for with a delay shows only if it is still
    wanted then: a recompute that ends sooner (most edits) never veils, so the maps
    do not flash and are not painted twice more (showing and hiding a translucent
    veil repaints the maps under it)."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setAlignment(Qt.AlignCenter)
        self.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.setStyleSheet("background: rgba(23, 25, 29, 170); color: #e8eaed; font-style: italic;")
        self.hide()
        self._covering = None
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.timeout.connect(lambda: self._show(self._covering))

    def cover(self, text: str | None, delay_ms: int = 0) -> None:
        text = text or None
        if text == self._covering:
            return
        self._covering = text
        self._later.stop()
        if not text:
            self.hide()
        elif delay_ms and self.isHidden():
            self._later.start(delay_ms)
        else:
            self._show(text)

    def covering(self) -> str | None:
        """The word the veil shows, or is about to show (None: the maps are unveiled)."""
        return self._covering

    def _show(self, text: str | None) -> None:
        if text:
            self.setText(text)
            self.setGeometry(self.parentWidget().rect())
            self.raise_()
            self.show()


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

        self.tile_size = g.DEFAULT_TILE  # the zoom: smallest tile side in screen px (the panel sets it)
        self.view_width = 640  # the scroll area's width, until the card has its own
        self.layout_key = None  # the tile layout last drawn

        self.title = QLabel()
        self.title.setTextFormat(Qt.RichText)
        self.title.setWordWrap(True)  # a long summary wraps; the output shape is never cut off
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.info = QLabel(" ")  # the hover readout, on its own line below the title
        self.info.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.info.setObjectName("hoverInfo")
        self.info.setStyleSheet("color: #9aa0aa; font-family: monospace;")
        self.enlarge = QToolButton(text="⤢ Enlarge")
        self.enlarge.setObjectName("enlargeButton")
        self.enlarge.setToolTip("Show one channel large: the selected unit's channel, else the first "
                                "(or double-click any channel)")
        self.enlarge.clicked.connect(self.toggle_enlarged)
        self.back = QToolButton(text="All channels")
        self.back.setToolTip("Back to the grid of all channels (or double-click the channel)")
        self.back.clicked.connect(lambda: self.set_enlarged(None))
        self.export = QToolButton(text="PNG")
        self.export.setObjectName("exportButton")
        self.export.setToolTip("Export this layer's maps as a PNG at full resolution "
                               "(each channel at its own size or larger, with title and colour bar)")
        self.export.clicked.connect(self.export_dialog)
        self.prev = QToolButton(text="◀")
        self.prev.setToolTip("Previous page of channels")
        self.next = QToolButton(text="▶")
        self.next.setToolTip("Next page of channels")
        self.page_label = QLabel()
        self.prev.clicked.connect(lambda: self.set_page(self.page - 1))
        self.next.clicked.connect(lambda: self.set_page(self.page + 1))
        for b in (self.prev, self.next, self.back, self.enlarge, self.export):
            b.setAutoRaise(True)
            b.setFocusPolicy(Qt.NoFocus)
        head = QHBoxLayout()
        head.setContentsMargins(6, 3, 6, 0)
        head.addWidget(self.title, 1)
        head.addSpacing(8)
        for w in (self.enlarge, self.back, self.prev, self.page_label, self.next, self.export):
            head.addWidget(w, 0, Qt.AlignTop)
        info_row = QHBoxLayout()
        info_row.setContentsMargins(6, 0, 6, 0)
        info_row.addWidget(self.info)

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
        lay.addLayout(info_row)
        lay.addWidget(self.stack)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self.info.setFixedHeight(self.info.fontMetrics().height())
        self._show_pager(False)
        self._aspect = 3.5
        # While a file or lesson opens, the window runs a local event loop
        # (background.run_off_gui_thread). A card resized then re-tiles just after its
        # resize event, from the event loop, not inside it: re-tiling inside it changes
        # the height of the card's own content, which resizes the maps' graphics views
        # within the card's resize, and there PySide 6.11 crashed (a segfault in a view
        # box's resize; lesson 9 opened after lesson 8). Elsewhere it re-tiles at once,
        # so the column's layout settles in one pass.
        self._relayout = QTimer(self)
        self._relayout.setSingleShot(True)
        self._relayout.setInterval(0)
        self._relayout.timeout.connect(self._after_resize)

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
        self.title.setToolTip(self.title.text())

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
        self._set_height(self._message_height())
        self.back.hide()
        self.enlarge.hide()
        self.export.hide()
        self._show_pager(False)
        self.stale.cover(None)

    def set_stale(self, text: str | None, delay_ms: int = 0) -> None:
        """Veil the maps with `text` (None: unveil); with delay_ms, only if still stale then."""
        if self.array is None and text:
            self.stack.setCurrentWidget(self.message)
            self.message.setText("")
            self._set_height(80)
            delay_ms = 0  # nothing on screen to keep
        self.stale.cover(text, delay_ms)

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
        """The content's height; the header above it takes what its wrapped text needs."""
        if h != self._height:
            self._height = h
            self.stack.setFixedHeight(h)
            self.updateGeometry()

    def _message_height(self) -> int:
        """Room for the whole message (an invalid layer's reason can take lines)."""
        width = max(self.content_width() - 30, 100)
        return max(60, self.message.heightForWidth(width) + 8)

    def content_width(self) -> int:
        return (self.width() if self.width() > 100 else self.view_width) - 8

    BAR_SPACE = 62  # the colour bar and its labels beside the mosaic

    def tile_layout(self, a: np.ndarray, n: int) -> g.TileLayout:
        return g.tile_layout(n, a.shape[1], a.shape[2], self.content_width() - self.BAR_SPACE, self.tile_size)

    def _content_height(self, a: np.ndarray, n_channels: int) -> int:
        if a.ndim == 3:
            if self.enlarged is not None:
                return self._enlarged_height(a)
            return int(math.ceil(self.tile_layout(a, n_channels).screen_size(*a.shape[1:])[0])) + 8
        if a.ndim == 2:
            return int(min(70 + 22 * n_channels, 320))
        return 190

    def _enlarged_height(self, a: np.ndarray) -> int:
        """An enlarged channel fills the card's width (aspect kept), up to max_height."""
        h, w = a.shape[1:]
        return int(min(max((self.content_width() - self.BAR_SPACE) * h / max(w, 1) + 8, 200),
                       max(self.max_height, 260)))

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
        n = len(self.enlarged_or_page_channels(a))
        layout = self.tile_layout(a, n) if a.ndim == 3 and self.enlarged is None else None
        key = (a, self.per_channel, self.page, self.enlarged, self.classes, layout)
        old = self._rendered
        if old is not None and old[0] is a and old[1:] == key[1:]:
            return False
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
        self.enlarge.setVisible(a.ndim == 3 and self.enlarged is None)
        self.export.setVisible(a.ndim == 3)
        channels = self.enlarged_or_page_channels(a)
        if a.ndim == 3:
            view = self._view("mosaic")
            if layout is not None:
                view.set_maps(a, channels, self.per_channel, self.layer_range(), cols=layout.cols,
                              gap=layout.gap, scale=layout.scale)
            else:
                view.set_maps(a, channels, self.per_channel, self.layer_range(), cols=1)
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

    def current_view(self):
        w = self.stack.currentWidget()
        return None if w is self.message else w

    def _view(self, kind: str):
        view = getattr(self, kind)
        if view is None:
            cls = {"mosaic": MosaicView, "lanes": LanesView, "bars": BarsView}[kind]
            view = cls(name=f"layer{self.index}", actions=self._menu_actions)
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

    def toggle_enlarged(self) -> None:
        """The Enlarge button: the selected unit's channel (else the first shown), or back."""
        a = self.array
        if a is None or a.ndim != 3:
            return
        if self.enlarged is not None:
            self.set_enlarged(None)
            return
        channels = self.enlarged_or_page_channels(a)
        sel = self.selected
        self.set_enlarged(sel[0] if sel is not None and len(sel) == 3 else channels[0])

    def _menu_actions(self, scene_pos=None) -> list:
        """The card's entries in its right-click menu."""
        a, view = self.array, self.current_view()
        unit = view.unit_at_scene(scene_pos) if view is not None and scene_pos is not None else None
        out = []
        if a is not None and a.ndim == 3:
            if self.enlarged is not None:
                out.append(("Back to all channels", lambda: self.set_enlarged(None), "Or double-click the channel"))
            elif unit is not None:
                out.append((f"Enlarge channel {unit[0]}", lambda c=unit[0]: self.set_enlarged(c),
                            "Or double-click the channel"))
            out.append(("Export layer as PNG...", self.export_dialog,
                        "Every channel at full resolution, with title and colour bar"))
        if unit is not None:
            out.append(("Select this unit", lambda u=unit: self.unit_clicked.emit(self.index, u),
                        "Show its receptive field (or click it)"))
        return out

    def export_title(self) -> str:
        import re
        plain = re.sub(r"<[^>]+>", "", self.title.text()).replace("&nbsp;", " ")
        return f"Layer {plain.strip()}"

    def export_png(self, path: str) -> str:
        """This layer's maps as a PNG at full resolution; returns the path written."""
        from .export import save_layer_png
        return save_layer_png(self.array, path, self.export_title(), self.per_channel)

    def export_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog
        if self.array is None or self.array.ndim != 3:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export layer as PNG", f"layer{self.index}.png",
                                              "PNG image (*.png)")
        if path:
            try:
                self.export_png(path)
            except OSError as e:
                self.info.setText(f"Not saved: {e}")

    def _on_hover(self, unit) -> None:
        a = self.array
        if unit is None or a is None:
            self.info.setText(" ")
            return
        v = format_value(float(a[unit]))
        if len(unit) == 3:
            hint = "double-click: all channels" if self.enlarged is not None else "double-click: enlarge"
            self.info.setText(f"ch {unit[0]}  y {unit[1]}  x {unit[2]}  = {v}   · {hint}")
        elif len(unit) == 2:
            self.info.setText(f"ch {unit[0]}  l {unit[1]}  = {v}")
        elif self.classes is not None:
            p = softmax(a)[unit[0]]
            self.info.setText(f"{self.classes[unit[0]]}: p = {p:.1%}  (score {v})")
        else:
            self.info.setText(f"feature {unit[0]}  = {v}")

    def sizeHint(self):
        """As tall as the card is at its width (its layout's height for that width), and
        so is its minimum (the vertical policy is fixed). The defaults sized the wrapped
        title for a width of their own choosing, a line or more off depending on the
        summary's length; as the card's minimum in the maps' column that made the column
        taller than its cards (blank space under the last one) and change height when an
        edit changed a summary's length: the whole column, every map in sight, was
        repainted."""
        return self._at_width(super().sizeHint())

    def minimumSizeHint(self):
        return self._at_width(super().minimumSizeHint())

    def _at_width(self, hint):
        width = self.width() if self.width() > 100 else self.view_width
        if self.layout() is not None and self.layout().hasHeightForWidth():
            hint.setHeight(self.heightForWidth(width))
        return hint

    view_probe = None  # callable(card) -> bool: is the card in the scroll area's view? (set by the panel)

    def moveEvent(self, ev):
        super().moveEvent(ev)
        if self.view_probe is not None:
            self.set_in_view(self.view_probe(self))

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        if ev.size().width() != ev.oldSize().width():
            self.updateGeometry()  # the size hints follow the width (_at_width): the layout asks again
        if self.view_probe is not None:
            self.set_in_view(self.view_probe(self))
        if background.busy():
            self._relayout.start()  # coalesced: one relayout for a burst of resizes
        else:
            self._after_resize()

    def _after_resize(self) -> None:
        """The tiles and the content's height at the card's new size."""
        a = self.array
        if a is not None and a.ndim == 3 and self.enlarged is not None:
            self._set_height(self._enlarged_height(a))  # the enlarged channel follows the width
        if a is not None and a.ndim == 3 and self.enlarged is None and self._rendered is not None:
            n = len(self.enlarged_or_page_channels(a))
            if self.tile_layout(a, n) != self._rendered[-1]:
                self._render()  # more or fewer columns, larger or smaller tiles
        elif a is not None and a.ndim == 3 and self.enlarged is None and self._dirty:
            self._render()  # never drawn yet (out of sight): its height follows the width all the same
        if a is None and self.stack.currentWidget() is self.message and self.message.text():
            self._set_height(self._message_height())
        if self.stale.isVisible():
            self.stale.setGeometry(self.stack.rect())
