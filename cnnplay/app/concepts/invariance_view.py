"""Pooling and shift invariance: shift the input and see each layer's change.

The shifted forward pass runs on the compute worker (a TaskRequest, newest
wins); this widget only draws the result and checks it is still current.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ...core.concepts import invariance as INV
from ..compute import TaskRequest
from ..views import style
from .common import WhenVisible, note

MEASURES = (
    ("relative_change", "relative change ||A-B|| / ||B||"),
    ("correlation", "correlation of A and B"),
    ("aligned_change", "aligned change (shift undone on the layer's grid)"),
)


def _invariance_task(shift, mode):
    def fn(net, x, outputs, should_stop):
        return INV.shift_invariance(net, x, shift, mode, outputs=outputs, should_stop=should_stop)
    return fn


def layer_ticks(n: int, width: int, min_px: int = 22) -> list[tuple[int, str]]:
    """Layer-index ticks that never run together: every k-th index when the axis is narrow
    (the names are in the chart's tooltip)."""
    step = 1
    while n and width / max(n / step, 1) < min_px:
        step += 1
    return [(i, str(i)) for i in range(0, n, step)]


class InvarianceView(QWidget):
    def __init__(self, session, controller, parent=None):
        super().__init__(parent)
        self.session, self.controller = session, controller
        self.worker = controller.worker
        self.pending: TaskRequest | None = None
        self.result = None  # (request, list[LayerChange])
        self.sliders = {}
        self.value_labels = {}
        form = QFormLayout()
        for axis in ("dy", "dx"):
            s = QSlider(Qt.Horizontal)
            s.setRange(-8, 8)
            s.setValue(0)
            s.setTickPosition(QSlider.TicksBelow)
            s.setTickInterval(1)
            s.setPageStep(1)
            s.valueChanged.connect(self.request)
            s.setToolTip("Shift the input by this many pixels " + ("down" if axis == "dy" else "right")
                         + " (negative: up / left)")
            value = QLabel("0 px")
            value.setObjectName(f"{axis}Value")
            fm = value.fontMetrics()
            value.setMinimumWidth(max(fm.horizontalAdvance(t) for t in ("+8 px", "-8 px")) + 6)
            value.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
            s.valueChanged.connect(lambda v, lab=value: lab.setText(f"{v:+d} px" if v else "0 px"))
            self.value_labels[axis] = value
            row = QHBoxLayout()
            row.addWidget(s, 1)
            row.addWidget(value)
            self.sliders[axis] = s
            form.addRow("shift down (px)" if axis == "dy" else "shift right (px)", row)
        self.mode_box = QComboBox()
        self.mode_box.addItem("wrap around", "wrap")
        self.mode_box.addItem("pad with zeros", "zero")
        self.mode_box.setToolTip("What enters at the border: the pixels that left on the other side, or zeros")
        self.mode_box.currentIndexChanged.connect(self.request)
        self.measure_box = QComboBox()
        for key, text in MEASURES:
            self.measure_box.addItem(text, key)
        self.measure_box.setToolTip("How the layer's output for the shifted input (A) is compared with the "
                                    "output for the original (B)")
        self.measure_box.currentIndexChanged.connect(self.redraw)
        form.addRow("border", self.mode_box)
        form.addRow("measure", self.measure_box)
        self.plot = pg.PlotWidget(viewBox=style.ZoomViewBox())
        self.plot.setBackground(style.BACKGROUND)
        pi = self.plot.getPlotItem()
        pi.hideButtons()
        pi.showGrid(y=True, alpha=0.2)
        pi.setLabel("bottom", "layer (hover a bar for its name)")
        self.plot.setMouseEnabled(x=False, y=False)
        style.own_menu(pi.getViewBox(), self.plot, "shift-invariance", chart=pi)
        pi.getViewBox().home = self.redraw
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush=style.CURVE)
        self.selected_bar = pg.BarGraphItem(x=[], height=[], width=0.7, brush=style.SELECT)
        pi.addItem(self.bars)
        pi.addItem(self.selected_bar)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: #9aa0aa;")
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.status)
        lay.addWidget(note(INV.EXPLANATION + " A is the layer's output for the shifted input, B for the original; "
                           "the selected layer's bar is highlighted."))
        self.worker.task_done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.task_cancelled.connect(self._on_cancelled)
        self.worker.forward_done.connect(self._on_forward_done)
        self._resume = False  # a cancel stopped our task: run it again once the maps are complete
        self.request_when_visible = WhenVisible(self, self.request)  # the shifted passes cost real time
        session.network_changed.connect(self.request_when_visible)
        session.input_changed.connect(self.request_when_visible)
        self._drawn_layer = None  # the selected layer the chart highlights
        self.redraw_when_visible = WhenVisible(self, self.redraw)
        session.selection_changed.connect(self._on_selection)
        self.request_when_visible()

    def _on_selection(self) -> None:
        # A click on a unit changes the selection too; only a new layer moves the highlight.
        if self.session.selected_layer != self._drawn_layer:
            self.redraw_when_visible()

    def shift(self) -> tuple[int, ...]:
        dy, dx = self.sliders["dy"].value(), self.sliders["dx"].value()
        one_d = len(self.session.network.input_shape) == 2
        self.sliders["dy"].setEnabled(not one_d)
        return (dx,) if one_d else (dy, dx)

    def request(self) -> None:
        s = self.session
        if len(s.network) == 0:
            self.pending = None
            self.result = None
            self.redraw()
            return
        shift, mode = self.shift(), self.mode_box.currentData()
        self.pending = TaskRequest(s.network, s.input_array, s.input_token, "shift invariance",
                                   _invariance_task(shift, mode))
        self.status.setText("computing the shifted forward pass...")
        self.worker.submit(self.pending)

    def _on_done(self, result) -> None:
        if result.request is not self.pending:
            return
        self.result = (result.request, result.value)
        self.status.setText(f"computed in {result.seconds * 1000:.0f} ms")
        self.redraw()

    def _on_cancelled(self, request) -> None:
        if request is self.pending:
            self._resume = True
            self.status.setText("Cancelled with the maps; computed again once they are complete "
                                "(Resume in the status bar).")

    def _on_forward_done(self, result) -> None:
        s = self.session
        if self._resume and result.request.network is s.network and len(result.outputs) == len(s.network):
            self._resume = False
            self.request_when_visible()

    def _on_failed(self, request, message: str) -> None:
        if request is self.pending:
            self.status.setText(message)

    def values(self) -> tuple[list[int], list[float]]:
        if self.result is None:
            return [], []
        key = self.measure_box.currentData()
        xs, ys = [], []
        for c in self.result[1]:
            v = getattr(c, key)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                continue
            xs.append(c.layer)
            ys.append(float(v))
        return xs, ys

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        net = self.result[0].network if self.result else None
        if net is not None:
            self.plot.getPlotItem().getAxis("bottom").setTicks([layer_ticks(len(net), self.plot.width())])

    def redraw(self) -> None:
        xs, ys = self.values()
        sel = self._drawn_layer = self.session.selected_layer
        self.bars.setOpts(x=xs, height=ys)
        if sel in xs:
            k = xs.index(sel)
            self.selected_bar.setOpts(x=[xs[k]], height=[ys[k]])
        else:
            self.selected_bar.setOpts(x=[], height=[])
        net = self.result[0].network if self.result else None
        if net is not None:
            self.plot.getPlotItem().getAxis("bottom").setTicks([layer_ticks(len(net), self.plot.width())])
            self.plot.setToolTip("<br>".join(f"{i}: {net.summaries[i]}" for i in range(len(net))))
        key = self.measure_box.currentData()
        self.plot.getPlotItem().setLabel("left", dict(MEASURES)[key].split(" (")[0])
        if xs:
            lo = min(0.0, min(ys))
            hi = max(1.0, max(ys)) if key != "correlation" else 1.0
            self.plot.getPlotItem().setYRange(lo, hi * 1.05, padding=0)
            self.plot.getPlotItem().setXRange(-0.6, (len(net) if net else max(xs) + 1) - 0.4, padding=0)
