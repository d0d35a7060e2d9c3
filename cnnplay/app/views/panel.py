"""MapsPanel: the central widget. The input with the selected unit's receptive
field, a readout, the selected conv layer's kernels, and one card per layer
with its live feature maps.

It reads the session (the model) and the controller's newest results; it never
computes a forward pass or a receptive field itself. Cards whose data is being
recomputed are veiled ("recomputing..."); only layers whose output array
changed are re-uploaded; view settings only redraw.
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFrame, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QSlider,
                               QSplitter, QVBoxLayout, QWidget)

from ...core.errors import NetworkError
from ...core.session import Session
from ..controller import ComputeController
from . import grid as g
from .cards import LayerCard
from .input_view import InputView
from .kernels import KernelsView
from .readout import UnitReadout

RECOMPUTING = "recomputing…"
VEIL_DELAY_MS = 150  # a recompute that ends sooner is never veiled (no flash, no extra repaints)

STYLE = """
#mapsPanel { background: #17191d; }
#mapsPanel QSplitter, #mapsPanel QSplitter > QWidget { background: #17191d; }
#mapsPanel QCheckBox { color: #d5d8de; }
#mapsPanel QFrame#layerCard { background: #1f2227; border: 1px solid #2c3038; border-radius: 4px; }
#mapsPanel QLabel { color: #d5d8de; }
#mapsPanel QLabel#unitReadout { background: #1f2227; border: 1px solid #2c3038; border-radius: 4px; }
#mapsPanel QScrollArea { background: #17191d; border: none; }
#mapsPanel #cardsContainer { background: #17191d; }
"""


def _unlink(links, *_):
    for signal, slot in links:
        signal.disconnect(slot)
    links.clear()


def same_description(a, b) -> bool:
    """The two networks differ in their parameters at most (same input, layers and settings)."""
    return a is b or (a.input_shape == b.input_shape and len(a) == len(b)
                      and all(x is y for x, y in zip(a.layer_types, b.layer_types)) and a.configs == b.configs)


def field_table(net):
    """The analytic receptive-field table (closed forms; no compute worth a thread)."""
    if hasattr(net, "receptive_field_table"):
        return net.receptive_field_table()
    from ...core import receptive
    return receptive.receptive_field_table(net)


class MapsPanel(QWidget):
    def __init__(self, session: Session, controller: ComputeController, parent=None):
        super().__init__(parent)
        self.setObjectName("mapsPanel")
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.setStyleSheet(STYLE)
        self.session, self.controller = session, controller
        self.cards: list[LayerCard] = []
        self._keys_cache = []  # [(network, its layer keys)], newest first
        self._table_cache = (None, None)
        self._input_shown = None

        # toolbar: view settings (they only redraw)
        self.levels_box = QComboBox()
        self.levels_box.addItem("one scale per layer", "layer")
        self.levels_box.addItem("one scale per channel", "channel")
        self.levels_box.setToolTip("Colour levels of the feature maps")
        self.levels_box.currentIndexChanged.connect(
            lambda: session.set_view(levels=self.levels_box.currentData()))
        self.effective_box = QCheckBox("Effective field")
        self.effective_box.setToolTip("Show |d unit / d input| for this input as a heat map on the input")
        self.effective_box.toggled.connect(lambda on: session.set_view(show_effective=bool(on)))
        self.tile_slider = QSlider(Qt.Horizontal)
        self.tile_slider.setObjectName("tileSize")
        self.tile_slider.setRange(g.MIN_TILE, g.MAX_TILE)
        self.tile_slider.setSingleStep(8)
        self.tile_slider.setPageStep(32)
        self.tile_slider.setValue(g.DEFAULT_TILE)
        self.tile_slider.setMinimumWidth(90)
        self.tile_slider.setMaximumWidth(180)
        self.tile_slider.setToolTip("Zoom: the smallest side of a channel's tile, in screen pixels "
                                    "(Ctrl+= larger, Ctrl+- smaller, Ctrl+0 default)")
        self.tile_label = QLabel()
        self.tile_label.setMinimumWidth(self.tile_label.fontMetrics().horizontalAdvance("512 px") + 4)
        self.tile_slider.valueChanged.connect(lambda v: session.set_view(tile_size=int(v)))
        self.zoom_in_action = QAction("&Larger maps", self)
        self.zoom_in_action.setShortcuts([QKeySequence("Ctrl+="), QKeySequence("Ctrl++")])
        self.zoom_in_action.triggered.connect(lambda: self.zoom(1.25))
        self.zoom_out_action = QAction("&Smaller maps", self)
        self.zoom_out_action.setShortcut(QKeySequence("Ctrl+-"))
        self.zoom_out_action.triggered.connect(lambda: self.zoom(0.8))
        self.zoom_reset_action = QAction("&Default map size", self)
        self.zoom_reset_action.setShortcut(QKeySequence("Ctrl+0"))
        self.zoom_reset_action.triggered.connect(lambda: session.set_view(tile_size=g.DEFAULT_TILE))
        for a in (self.zoom_in_action, self.zoom_out_action, self.zoom_reset_action):
            a.setShortcutContext(Qt.WindowShortcut)
            self.addAction(a)
        self.status = QLabel()
        self.status.setStyleSheet("color: #9aa0aa;")
        self.status.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.status.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 4, 6, 0)
        bar.addWidget(QLabel("Colour levels:"))
        bar.addWidget(self.levels_box)
        bar.addSpacing(16)
        bar.addWidget(self.effective_box)
        bar.addSpacing(16)
        zoom_label = QLabel("Map size:")
        zoom_label.setToolTip(self.tile_slider.toolTip())
        bar.addWidget(zoom_label)
        bar.addWidget(self.tile_slider)
        bar.addWidget(self.tile_label)
        bar.addWidget(self.status, 1)

        # left: input, readout, kernels
        self.input_view = InputView()
        self.readout = UnitReadout()
        self.kernels = KernelsView()
        left = QSplitter(Qt.Vertical)
        left.addWidget(self.input_view)
        left.addWidget(self.readout)
        kernels_box = QWidget()  # the kernels' height limit (no weights) does not limit the column
        box = QVBoxLayout(kernels_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.kernels)
        box.addStretch(1)
        left.addWidget(kernels_box)
        self.input_view.wants_height.connect(self._fit_input)
        left.setStretchFactor(0, 5)
        left.setStretchFactor(1, 0)
        left.setStretchFactor(2, 3)
        left.setSizes([460, 150, 260])
        self.left = left
        self.unit_dock = None

        # right: the layer cards
        self.container = QWidget()
        self.container.setObjectName("cardsContainer")
        self.cards_layout = QVBoxLayout(self.container)
        self.cards_layout.setContentsMargins(4, 4, 4, 4)
        self.cards_layout.setSpacing(6)
        self.cards_layout.addStretch(1)
        self.empty_label = QLabel("The network has no layers yet: add some to see their feature maps.")
        self.empty_label.setAlignment(Qt.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: #9aa0aa; padding: 24px;")
        self.cards_layout.insertWidget(0, self.empty_label)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.container)
        self.scroll.setFrameShape(QFrame.NoFrame)
        # cards out of sight draw when they come into view (scrolling, resizing, layout moves)
        self.scroll.verticalScrollBar().valueChanged.connect(self._update_in_view)
        self.scroll.viewport().installEventFilter(self)

        split = QSplitter(Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(self.scroll)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([380, 620])
        split.setChildrenCollapsible(False)
        self.splitter = split
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(bar)
        lay.addWidget(split, 1)

        # arrow keys move the selected unit while the focus is in the panel
        self.setFocusPolicy(Qt.StrongFocus)
        for key, step in ((Qt.Key_Left, "left"), (Qt.Key_Right, "right"), (Qt.Key_Up, "up"),
                          (Qt.Key_Down, "down"), (Qt.Key_PageUp, "prev"), (Qt.Key_PageDown, "next")):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(lambda step=step: self.move_selection(step))
        esc = QShortcut(QKeySequence(Qt.Key_Escape), self)
        esc.setContext(Qt.WidgetWithChildrenShortcut)
        esc.activated.connect(lambda: session.select_unit(None))

        controller.forward_changed.connect(self.refresh_maps)
        controller.field_changed.connect(self.refresh_field)
        controller.message.connect(self.status.setText)
        controller.failed.connect(self._on_failed)
        self._scrolled_to = session.selected_layer
        self._session_links = [(session.input_changed, self.refresh_input),
                               (session.selection_changed, self.refresh_selection),
                               (session.view_changed, self.refresh_view),
                               (session.network_changed, self.refresh_kernels)]
        for signal, slot in self._session_links:
            signal.connect(slot)
        self.destroyed.connect(partial(_unlink, self._session_links))
        self.refresh_input()
        self.refresh_view()
        self.refresh_maps()
        self.refresh_selection()

    # -- helpers ------------------------------------------------------------------
    def _layer_keys(self, net):
        """net.layer_keys(), remembered for the last two networks (the session's and the shown result's)."""
        for cached, keys in self._keys_cache:
            if cached is net:
                return keys
        keys = net.layer_keys()
        self._keys_cache = [(net, keys)] + self._keys_cache[:1]
        return keys

    def _table(self, net):
        if self._table_cache[0] is not net:
            self._table_cache = (net, field_table(net))
        return self._table_cache[1]

    def tile_size(self) -> int:
        return int(self.session.view.get("tile_size", g.DEFAULT_TILE))

    def zoom(self, factor: float) -> None:
        size = int(round(min(max(self.tile_size() * factor, g.MIN_TILE), g.MAX_TILE)))
        self.session.set_view(tile_size=size)

    def _sync_cards(self, n: int) -> None:
        while len(self.cards) < n:
            card = LayerCard()
            card.tile_size = self.tile_size()
            card.view_width = self.scroll.viewport().width()
            card.view_probe = self._in_view
            card.unit_clicked.connect(self.select_unit)
            self.cards_layout.insertWidget(self.cards_layout.count() - 1, card)
            self.cards.append(card)
        for i, card in enumerate(self.cards):
            card.setVisible(i < n)
        self.empty_label.setVisible(n == 0)

    def card(self, layer: int) -> LayerCard:
        return self.cards[layer]

    VIEW_MARGIN = 40  # px beyond the viewport that still count as in view

    def _in_view(self, card: LayerCard) -> bool:
        vp = self.scroll.viewport()
        if not vp.isVisible():
            return False
        top = self.scroll.verticalScrollBar().value() - self.VIEW_MARGIN
        bottom = top + vp.height() + 2 * self.VIEW_MARGIN
        geo = card.geometry()
        return geo.bottom() >= top and geo.top() <= bottom

    def _update_in_view(self, *_) -> None:
        for card in self.cards:
            if not card.isHidden():
                card.set_in_view(self._in_view(card))

    def eventFilter(self, obj, ev):
        if ev.type() in (QEvent.Resize, QEvent.Show):
            for card in self.cards:
                card.max_height = max(260, self.scroll.viewport().height() - 10)
                card.view_width = self.scroll.viewport().width()
            self._update_in_view()
        return False

    def reveal(self, layer: int) -> LayerCard:
        """Scroll a layer's card into view (it then shows its newest data)."""
        card = self.cards[layer]
        self.scroll.ensureWidgetVisible(card, 0, 0)
        self._update_in_view()
        return card

    def scroll_to(self, layer: int) -> LayerCard | None:
        """Bring a layer's card to the top of the maps, unless it is already wholly in sight."""
        if not 0 <= layer < len(self.cards) or self.cards[layer].isHidden():
            return None
        card = self.cards[layer]
        self.container.layout().activate()  # a card just added has its place now
        bar = self.scroll.verticalScrollBar()
        top, bottom = bar.value(), bar.value() + self.scroll.viewport().height()
        geo = card.geometry()
        if geo.top() < top or geo.bottom() > bottom:
            bar.setValue(max(0, geo.top() - self.cards_layout.spacing()))
        self._update_in_view()
        return card

    # -- live maps ------------------------------------------------------------------
    def refresh_maps(self) -> None:
        """Show the newest forward result; veil the layers it does not cover yet."""
        s, res = self.session, self.controller.forward
        net, spec_layers = s.network, s.state.spec["layers"]
        self._sync_cards(len(spec_layers))
        keys = self._layer_keys(net)
        shown_keys = self._layer_keys_of(res)
        same_input = res is not None and res.request.input_token == s.input_token
        per_channel = s.view.get("levels") == "channel"
        summaries = net.summaries
        classes = s.output_classes() if hasattr(s, "output_classes") else None
        # New weights only (training publishes them a few times a second): the maps of
        # the weights before stay on screen unveiled until the new ones are computed.
        weights_only = res is not None and same_description(res.request.network, net)
        for i, card in enumerate(self.cards[:len(spec_layers)]):
            if i < len(net):
                last = i == len(net) - 1 and classes is not None
                card.set_header(i, summaries[i] + (" <span style='color:#8ab4f8'>\u00b7 class probabilities "
                                                   "(softmax)</span>" if last else ""), net.output_shapes[i])
                if same_input and i < len(res.outputs) and i < len(shown_keys) \
                        and (shown_keys[i] == keys[i] or weights_only):
                    card.show_output(res.outputs[i], per_channel, classes=classes if last else None)
                    card.set_stale(None)
                else:
                    card.set_stale(RECOMPUTING, VEIL_DELAY_MS)
            elif i == len(net):
                err = s.error
                card.set_header(i, str(spec_layers[i].get("type", "?")), None, note="invalid")
                card.show_message(f"This layer is invalid: {err}" if err else "This layer is invalid.")
            else:
                card.set_header(i, str(spec_layers[i].get("type", "?")), None)
                card.show_message(f"Not computed: layer {len(net)} before it is invalid.")
        self._apply_overlays()

    def _layer_keys_of(self, res):
        if res is None:
            return []
        return self._layer_keys(res.request.network)

    def refresh_input(self) -> None:
        s = self.session
        src = s.input_source
        name = str(src.get("name") or src.get("path") or src.get("kind") or "")
        self.input_view.set_input(s.input_array, name.rsplit("/", 1)[-1])
        self._input_shown = s.input_token

    def refresh_view(self) -> None:
        """A view setting changed: redraw from what is on screen, compute nothing."""
        v = self.session.view
        self.levels_box.blockSignals(True)
        self.levels_box.setCurrentIndex(max(0, self.levels_box.findData(v.get("levels", "layer"))))
        self.levels_box.blockSignals(False)
        self.effective_box.blockSignals(True)
        self.effective_box.setChecked(bool(v.get("show_effective")))
        self.effective_box.blockSignals(False)
        tile = self.tile_size()
        self.tile_slider.blockSignals(True)
        self.tile_slider.setValue(tile)
        self.tile_slider.blockSignals(False)
        self.tile_label.setText(f"{tile} px")
        per_channel = v.get("levels") == "channel"
        for card in self.cards:
            card.tile_size = tile
            if card.array is not None:
                card.show_output(card.array, per_channel, classes=card.classes)
        self.refresh_field()

    # -- selection and fields ----------------------------------------------------------
    def select_unit(self, layer: int, unit: tuple) -> None:
        try:
            self.session.select_unit(layer, unit)
        except NetworkError:
            return
        self.setFocus(Qt.MouseFocusReason)

    def move_selection(self, step: str) -> None:
        sel = self.session.selected_unit
        if sel is None:
            return
        layer, unit = sel
        shape = self.session.network.output_shapes[layer]
        new = g.step_unit(unit, shape, step)
        if new != unit:
            card = self.cards[layer]
            if card.array is not None and card.array.ndim >= 2 and new[0] != unit[0]:
                if card.enlarged is not None:
                    card.set_enlarged(new[0])
                elif new[0] // g.PAGE_SIZE != card.page:
                    card.set_page(new[0] // g.PAGE_SIZE)
            self.session.select_unit(layer, new)

    def refresh_selection(self) -> None:
        layer = self.session.selected_layer
        if layer != self._scrolled_to:  # a new row selected in the stack: show its maps
            self._scrolled_to = layer
            if layer is not None:
                self.scroll_to(layer)
        self.refresh_kernels()
        self.refresh_field()

    def refresh_kernels(self) -> None:
        """The selected conv layer's weights; redrawn when the selection or the weights change
        (presets and hand edits replace the weight array)."""
        s = self.session
        net = s.network
        layer = s.selected_layer
        if layer is None and s.selected_unit is not None:
            layer = s.selected_unit[0]
        if layer is not None and layer < len(net) and net.layer_types[layer].name.startswith("conv"):
            self.kernels.show_weights(net.params(layer)["weight"], layer, net.summaries[layer])
        else:
            self.kernels.show_weights(None)

    def refresh_field(self) -> None:
        self._apply_overlays()

    def _apply_overlays(self) -> None:
        s, c = self.session, self.controller
        sel = s.selected_unit
        f = c.field
        current = f is not None and c.field_is_current()
        net = s.network
        for i, card in enumerate(self.cards):
            if i >= len(net) or card.isHidden():
                continue
            selected = sel[1] if sel is not None and sel[0] == i else None
            if sel is None or i >= sel[0]:
                field = None
            elif current:
                field = f.on_maps.get(i)
            else:
                field = card.field  # the new field is a few ms away: keep the old one until then
            card.set_overlays(field=field, selected=selected)
        if sel is None:
            self.input_view.set_field(None)
            self.readout.clear_unit()
            return
        layer, unit = sel
        show_eff = bool(s.view.get("show_effective"))
        if current:
            eff = f.effective if show_eff else None
            self.input_view.set_field(f.on_input, eff)
            pending = ("computing the effective field…"
                       if show_eff and f.effective is None and not c.field_failed() else "")
            self.readout.show_unit(layer, net.summaries[layer], unit, self._table_row(net, layer), f.on_input,
                                   pending=pending)
            return
        if f is None or f.on_input is None:
            self.input_view.set_field(None)  # (else the old field stays until the new one is here)
        # the field for the network just edited is usually a few ms away: the readout keeps
        # the unit's last field meanwhile, as the maps and the input keep theirs
        self.readout.show_unit(layer, net.summaries[layer], unit, self._table_row(net, layer), None,
                               pending="computing the receptive field…", delay_ms=VEIL_DELAY_MS)

    def _table_row(self, net, layer: int):
        table = self._table(net)
        return table[layer] if layer < len(table) else None

    def _fit_input(self, height: int) -> None:
        """Give the input the height that fits it; the rest of the column to the readout and kernels."""
        sizes = self.left.sizes()
        total = sum(sizes)
        if total <= 0:
            return
        middle = sizes[1:-1]  # the readout, unless it went to a dock
        keep = sum(middle)
        h = int(min(height, max(total - keep - 120, 120)))
        self.left.setSizes([h] + middle + [max(total - h - keep, 0)])

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        w = self.splitter.width()
        if not getattr(self, "_split_done", False) and w > 300:
            self._split_done = True  # first real size: input column ~30%, the maps the rest
            left = int(min(max(w * 0.3, 200), 400))
            self.splitter.setSizes([left, w - left])

    def install_docks(self, window) -> list:
        """In the main window: the unit readout becomes a dock under the input panel
        (the left column has room; the right one holds settings and concept tabs)."""
        if not hasattr(window, "add_dock"):
            return []
        self.readout.setMinimumHeight(90)
        # the dock is short (the input panel above has the room): a long readout scrolls
        # instead of losing its last lines at the bottom edge
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        area.setWidget(self.readout)
        dock = window.add_dock(area, "Selected unit", Qt.LeftDockWidgetArea, "unit")
        below = getattr(window, "input_dock", None)
        if below is not None:
            window.splitDockWidget(below, dock, Qt.Vertical)
        self.unit_dock = dock
        return [dock]

    def detach(self) -> None:
        """Stop listening to the session (the panel is going away)."""
        _unlink(self._session_links)

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)
        for card in self.cards:
            if card.stale.covering():  # veiled, or about to be
                card.set_stale(f"not computed: {message}")
