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
from .common import note

AXIS_NAMES = {1: ("length",), 2: ("height", "width")}
AXIS_COLORS = ("#8ab4f8", "#f6ae2d")
WHATIF_COLORS = {"kernel+2": "#38e0c8", "stride*2": "#ff6b6b", "dilation*2": "#c792ea"}


class GrowthView(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.series: list[G.GrowthSeries] = []
        self.plots = {}
        self.scatters = []  # (scatter item, series) for hover lookups
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
            w = pg.PlotWidget()
            w.setBackground(style.BACKGROUND)
            pi = w.getPlotItem()
            pi.setLabel("left", title)
            pi.setLabel("bottom", "depth (0 = input, i + 1 = after layer i)")
            pi.showGrid(x=True, y=True, alpha=0.2)
            if key == "r":
                pi.addLegend(offset=(4, 4), labelTextSize="8pt", verSpacing=-6)
            pi.hideButtons()
            w.setMouseEnabled(x=False, y=False)
            w.setMinimumHeight(150)
            self.plots[key] = w
            lay.addWidget(w, 1)
            w.viewport().installEventFilter(self)
        lay.addWidget(self.message)
        lay.addWidget(note(G.EXPLANATION + " Hover a point to outline that layer's field on the input."))
        session.network_changed.connect(self.refresh)
        self.refresh()

    # -- data -----------------------------------------------------------------------
    def refresh(self) -> None:
        net = self.session.network
        current = self.layer_box.currentData()
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        for i, t in enumerate(net.layer_types):
            if net.windows[i] is not None and {"kernel_size"} <= {f.name for f in t.fields}:
                self.layer_box.addItem(f"{i}: {net.summaries[i]}", i)
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
        self.scatters = []
        for key, w in self.plots.items():
            pi = w.getPlotItem()
            pi.clear()
            if pi.legend is not None:
                pi.legend.clear()
            a = max(self.axis_box.currentIndex(), 0)
            for s in self.series:
                if s.error or not s.r or a >= s.axes:
                    continue
                values = s.r if key == "r" else s.j
                y = [v[a] for v in values]
                if s is self.series[0]:
                    pi.plot(s.depth, y, pen=style.pen(AXIS_COLORS[0], 2), name=f"{key}: this network")
                    sc = pg.ScatterPlotItem(s.depth, y, size=9, brush=pg.mkBrush(AXIS_COLORS[0]), pen=None,
                                            hoverable=True, hoverSize=14, data=list(s.layers), tip=None)
                    sc.sigHovered.connect(self._on_hover)
                    pi.addItem(sc)
                    self.scatters.append(sc)
                else:
                    change = next((k for k, t in G.WHAT_IFS.items() if s.label.startswith(t)), "")
                    pi.plot(s.depth, y, pen=style.pen(WHATIF_COLORS.get(change, "#ffffff"), 1.5, Qt.DashLine),
                            name=s.label)

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
