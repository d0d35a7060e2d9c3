"""Receptive-field growth: r and j per axis against depth, with what-if curves.

The numbers come from the core (`cnnplay.core.concepts.growth`, which reads
`Network.receptive_field_table()`); the table is analytic and cheap, so it is
evaluated here. Hovering a point sets `session.view["highlight_layer"]` so
the input view can outline that layer's field; leaving the chart clears it.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ...core.concepts import growth as G
from ..views import style
from .common import WhenVisible, note

AXIS_NAMES = {1: ("length",), 2: ("height", "width")}
AXIS_COLORS = ("#8ab4f8", "#f6ae2d")
WHATIF_COLORS = {"kernel+2": "#38e0c8", "stride*2": "#ff6b6b", "dilation*2": "#c792ea"}


class GrowthView(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.series: list[G.GrowthSeries] = []
        self.plots = {}
        self.curve_items: dict[str, list] = {}  # plot key -> reusable curves
        self.scatter_items = {}  # plot key -> the hoverable points of this network
        self.scatters = []
        self.layer_box = QComboBox()
        self.layer_box.setToolTip("The layer the what-if toggles change")
        self.layer_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.layer_box.setMinimumContentsLength(8)
        self.layer_box.currentIndexChanged.connect(self.refresh_chart)
        self.toggles = {}
        self.axis_box = QComboBox()
        self.axis_box.setToolTip("Which spatial axis to chart")
        self.axis_box.currentIndexChanged.connect(self.refresh_chart)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Axis"))
        bar.addWidget(self.axis_box)
        bar.addWidget(QLabel("What if"))
        bar.addWidget(self.layer_box, 1)
        toggles = QHBoxLayout()
        for key, text in G.WHAT_IFS.items():
            box = QCheckBox(text)
            box.setToolTip(f"An extra dashed curve: the same network with {text} on the chosen layer")
            box.toggled.connect(self.refresh_chart)
            self.toggles[key] = box
            toggles.addWidget(box)
        toggles.addStretch(1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #ff6b6b;")
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addLayout(toggles)
        for key, title in (("r", "receptive field size r (input pixels)"), ("j", "jump j (input pixels)")):
            # The wheel scrolls the panel, never the chart (it used to zoom it and lose its range).
            w = pg.PlotWidget(viewBox=style.ZoomViewBox())
            w.setBackground(style.BACKGROUND)
            pi = w.getPlotItem()
            pi.setLabel("left", title)
            pi.setLabel("bottom", "depth (0 = input, i + 1 = after layer i)")
            pi.showGrid(x=True, y=True, alpha=0.2)
            if key == "r":
                pi.addLegend(offset=(4, 4), labelTextSize="8pt", verSpacing=-6)
            pi.hideButtons()
            w.setMouseEnabled(x=False, y=False)
            style.own_menu(pi.getViewBox(), w, f"rf-growth-{key}", chart=pi)
            pi.getViewBox().home = lambda key=key: self.fit(key)
            w.setMinimumHeight(150)
            sc = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(AXIS_COLORS[0]), pen=None, hoverable=True,
                                    hoverSize=14, tip=None)
            sc.sigHovered.connect(self._on_hover)
            pi.addItem(sc)
            sc.setZValue(10)
            self.scatter_items[key] = sc
            self.plots[key] = w
            lay.addWidget(w, 1)
            w.viewport().installEventFilter(self)
        lay.addWidget(self.message)
        lay.addWidget(note(G.EXPLANATION + " Hover a point to outline that layer's field on the input."))
        self.refresh_when_visible = WhenVisible(self, self.refresh)
        session.network_changed.connect(self.refresh_when_visible)
        self.refresh_when_visible()

    # -- data -----------------------------------------------------------------------
    def refresh(self) -> None:
        net = self.session.network
        current = self.layer_box.currentData()
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        windows, summaries = net.windows, net.summaries  # every layer's (worked out once per layout)
        for i, t in enumerate(net.layer_types):
            if windows[i] is not None and {"kernel_size"} <= {f.name for f in t.fields}:
                self.layer_box.addItem(f"{i}: {summaries[i]}", i)
        idx = self.layer_box.findData(current)
        self.layer_box.setCurrentIndex(idx if idx >= 0 else 0)
        self.layer_box.blockSignals(False)
        names = AXIS_NAMES.get(len(net.input_shape) - 1, ())
        if [self.axis_box.itemText(k) for k in range(self.axis_box.count())] != list(names):
            self.axis_box.blockSignals(True)
            self.axis_box.clear()
            self.axis_box.addItems(list(names))
            self.axis_box.setCurrentIndex(len(names) - 1)
            self.axis_box.blockSignals(False)
        self.axis_box.setEnabled(len(names) > 1)
        self.refresh_chart()

    def compute_series(self) -> list[G.GrowthSeries]:
        net = self.session.network
        out = [G.growth_series(net)]
        layer = self.layer_box.currentData()
        if layer is not None:
            for key, box in self.toggles.items():
                if box.isChecked():
                    out.append(G.what_if_series(net, layer, key))
        return out

    def refresh_chart(self) -> None:
        self.series = self.compute_series()
        errors = [f"{s.label}: {s.error}" for s in self.series if s.error]
        self.message.setText("\n".join(errors))
        self.message.setVisible(bool(errors))
        a = max(self.axis_box.currentIndex(), 0)
        for key, w in self.plots.items():
            pi = w.getPlotItem()
            shown = [s for s in self.series if not s.error and s.r and a < s.axes]
            curves = self._curves(key, pi, len(shown))
            for curve, s in zip(curves, shown):
                y = [v[a] for v in (s.r if key == "r" else s.j)]
                if s is self.series[0]:
                    curve.setData(s.depth, y, pen=style.pen(AXIS_COLORS[0], 2))
                    label = f"{key}: this network"
                else:
                    change = next((k for k, t in G.WHAT_IFS.items() if s.label.startswith(t)), "")
                    curve.setData(s.depth, y, pen=style.pen(WHATIF_COLORS.get(change, "#ffffff"), 1.5, Qt.DashLine))
                    label = s.label
                curve.setVisible(True)
                if pi.legend is not None and curve.name() != label:
                    pi.legend.removeItem(curve)
                    curve.opts["name"] = label
                    pi.legend.addItem(curve, label)
            for curve in curves[len(shown):]:
                curve.setVisible(False)
                curve.setData([], [])
                if pi.legend is not None:
                    pi.legend.removeItem(curve)
                    curve.opts["name"] = None
            main = self.series[0] if shown and shown[0] is self.series[0] else None
            sc = self.scatter_items[key]
            if main is not None:
                sc.setData(main.depth, [v[a] for v in (main.r if key == "r" else main.j)],
                           data=list(main.layers))
            else:
                sc.setData([], [])
            self.fit(key)
        self.scatters = list(self.scatter_items.values())

    def fit(self, key: str) -> None:
        """The range that holds every shown curve, what-ifs included."""
        a = max(self.axis_box.currentIndex(), 0)
        xs, ys = [0.0], [0.0]
        for s in self.series:
            if not s.error and s.r and a < s.axes:
                xs += list(s.depth)
                ys += [v[a] for v in (s.r if key == "r" else s.j)]
        pi = self.plots[key].getPlotItem()
        pi.setRange(xRange=(min(xs), max(max(xs), 1)), yRange=(min(ys), max(max(ys), 1)), padding=0.06)

    def _curves(self, key, pi, n):
        """The plot's curve items, created once and reused (never cleared per edit)."""
        curves = self.curve_items.setdefault(key, [])
        while len(curves) < n:
            curve = pg.PlotDataItem()
            pi.addItem(curve)
            curves.append(curve)
        return curves

    # -- hover -> highlight on the input ----------------------------------------------
    def _on_hover(self, item, points, ev=None) -> None:
        if len(points):
            layer = points[0].data()
            self.highlight(layer)

    def highlight(self, layer) -> None:
        """Ask the views to outline `layer`'s field on the input (None: clear)."""
        self.session.set_view(highlight_layer=layer)

    def eventFilter(self, obj, ev):
        if ev.type() == ev.Type.Leave:
            self.highlight(None)
        return False
