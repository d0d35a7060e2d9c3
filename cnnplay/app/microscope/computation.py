"""The Computation panel: how the selected unit's value was computed.

It shows the core's Explanation (core/microscope/explain.py) of the selected
unit as grids and equations: per input channel the window under the kernel
(padding hatched, dilation holes dim), the kernel and the products; pooling
windows with the winner outlined; the largest terms of a linear layer; the
norm and activation formulas with their numbers. It follows the selection
(clicks, arrow keys); the explanation is computed on the compute worker.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy,
                               QVBoxLayout, QWidget)

from ...core.microscope import explain, fmt
from ...core.microscope.explain import unit_name
from ..concepts.common import WhenVisible
from .grid import NumberGrid, cell_font
from .tasks import CANCELLED, TaskRunner, listen

STYLE = """
#computationPanel, #computationPanel QWidget#content { background: #17191d; }
#computationPanel QLabel { color: #e6e8ec; }
#computationPanel QFrame#step { background: #1f2227; border: 1px solid #2c3038; border-radius: 4px; }
#computationPanel QFrame#step[selected="true"] { border: 2px solid #ffd166; }
"""

MIN_FIT = 0.7
EMPTY = ("Click a unit of any feature map (or a bar of an output) to see how its value was computed. "
         "The arrow keys walk the window across the map.")


TOP_CHANNELS = 4  # conv input channels shown one by one (the rest in one line): the block fits a screen


def _work(layer, unit):
    def work(net, x, outputs, should_stop, progress):
        return explain(net, x, outputs, layer, unit, top_channels=TOP_CHANNELS)
    return work


class ComputationPanel(QWidget):
    def __init__(self, session, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("computationPanel")
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.setStyleSheet(STYLE)
        self.session, self.controller = session, controller
        self.explanation = None
        self.shown_for = None  # (network, input_token, layer, unit) of the explanation shown
        self.scale = 1.0
        self.fit = True  # shrink the numbers (down to MIN_FIT) so that a step fits the panel's width
        self.runner = TaskRunner(controller.worker, "computation", self)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(lambda r, m: self.status.setText(f"Could not explain this unit: {m}"))

        self.title = QLabel()
        self.title.setTextFormat(Qt.RichText)
        self.title.setWordWrap(True)
        self.status = QLabel(EMPTY)
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: #9aa0aa;")
        smaller, larger = QPushButton("A\u2212"), QPushButton("A+")
        for b, f, tip in ((smaller, 1 / 1.2, "Smaller numbers"), (larger, 1.2, "Larger numbers (projector)")):
            b.setFixedWidth(38)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.NoFocus)
            b.clicked.connect(lambda _=False, f=f: self.set_scale(self.scale * f))
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(smaller)
        head.addWidget(larger)

        self.content = QWidget()
        self.content.setObjectName("content")
        self.steps_layout = QVBoxLayout(self.content)
        self.steps_layout.setContentsMargins(4, 4, 4, 4)
        self.steps_layout.setSpacing(8)
        self.steps_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.content)
        self.scroll.setFrameShape(QFrame.NoFrame)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(head)
        lay.addWidget(self.status)
        lay.addWidget(self.scroll, 1)

        self.refit = QTimer(self)  # after a resize: fit the numbers to the new width
        self.refit.setSingleShot(True)
        self.refit.setInterval(150)
        self.refit.timeout.connect(self._refit)
        self._fitted_width = 0
        self.refresh_when_visible = WhenVisible(self, self.refresh)
        listen(self, session.selection_changed, self.refresh_when_visible)
        controller.forward_changed.connect(self.refresh_when_visible)
        self.refresh_when_visible()

    # -- requests ---------------------------------------------------------------------
    def _key(self):
        s = self.session
        sel = s.selected_unit
        return None if sel is None else (s.network, s.input_token, sel[0], sel[1])

    def refresh(self) -> None:
        key = self._key()
        if key is None:
            self.runner.pending = None
            self._clear()
            self.title.setText("")
            self.status.setText(EMPTY)
            self.status.show()
            return
        if _same(self.shown_for, key):
            return
        p = self.runner.pending
        if p is not None and _same(getattr(p, "key", None), key):
            return
        net, token, layer, unit = key
        self.title.setText(self._title_html(layer, unit, None))
        self.runner.submit(net, self.session.input_array, token, _work(layer, unit), key)
        if self.explanation is None:
            self.status.setText("computing\u2026")
            self.status.show()

    def set_scale(self, scale: float) -> None:
        """A+ / A-: the user's size; from then on wide steps scroll instead of shrinking."""
        self.scale = min(max(scale, 0.5), 3.0)
        self.fit = False
        if self.explanation is not None:
            shown = self.shown_for
            self._render(self.explanation)
            self.shown_for = shown

    # -- results ------------------------------------------------------------------------
    def _on_done(self, request, value) -> None:
        if value is CANCELLED:
            return
        key = getattr(request, "key", None)
        if key is None or not _same(key, self._key()):
            self.refresh()  # the selection moved on meanwhile
            return
        self._render(value)
        self.shown_for = key

    def _title_html(self, layer, unit, value) -> str:
        net = self.session.network
        summary = net.summaries[layer] if layer < len(net) else ""
        px = int(round(18 * self.scale))
        v = "" if value is None else f" = <b style='color:#ffd166'>{fmt(value)}</b>"
        return (f"<span style='font-size:{px}px'><b>Layer {layer}</b> {summary} &nbsp; "
                f"unit ({unit_name(unit)}){v}</span>")

    def _clear(self) -> None:
        while self.steps_layout.count() > 1:
            w = self.steps_layout.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.deleteLater()
        self.step_views = []
        self.two_columns = False
        self.explanation = self.shown_for = None

    def _render(self, e, scale: float | None = None) -> None:
        """The steps in one column; in two when the panel is wide enough (the mixing
        step on the left, the norms and activations after it on the right)."""
        self._clear()
        self.explanation = e
        scale = self.scale if scale is None else scale
        self.title.setText(self._title_html(e.layer, e.unit, e.value))
        self.status.hide()
        views = [StepView(step, scale, selected=(i == e.selected)) for i, step in enumerate(e.steps)]
        room = self.scroll.viewport().width() - 12
        widths = [v.sizeHint().width() for v in views]
        two = len(views) > 1 and widths[0] + max(widths[1:]) + 12 <= room
        body = QWidget()
        grid = QGridLayout(body)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(8)
        if two:
            grid.addWidget(views[0], 0, 0, len(views), 1, Qt.AlignTop)
            for i, v in enumerate(views[1:]):
                grid.addWidget(v, i, 1, Qt.AlignTop)
            grid.setRowStretch(len(views) - 1, 1)
            grid.setColumnStretch(1, 1)
        else:
            for i, v in enumerate(views):
                grid.addWidget(v, i, 0)
        self.steps_layout.insertWidget(0, body)
        self.step_views, self.two_columns = views, two
        if self.fit and scale == self.scale:
            self._fitted_width = room
            need = max(widths)
            if need > room > 0:
                self._render(e, max(MIN_FIT, scale * room / need))

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if self.fit and self.explanation is not None:
            self.refit.start()

    def _refit(self) -> None:
        if self.fit and self.explanation is not None and \
                abs(self.scroll.viewport().width() - 12 - self._fitted_width) > 20:
            shown = self.shown_for
            self._render(self.explanation)
            self.shown_for = shown


def _same(a, b) -> bool:
    return a is not None and b is not None and a[0] is b[0] and a[1:] == b[1:]


# ---------------------------------------------------------------------------
# One step of the block

def _label(text: str, scale: float, size: int = 15, muted: bool = False, mono: bool = False,
           bold: bool = False) -> QLabel:
    lab = QLabel(text)
    f = cell_font(scale * size / 15)
    if mono:
        f.setFamily("monospace")
    f.setBold(bold)
    lab.setFont(f)
    if muted:
        lab.setStyleSheet("color: #9aa0aa;")
    lab.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return lab


class StepView(QFrame):
    def __init__(self, step, scale: float, selected: bool, parent=None):
        super().__init__(parent)
        self.setObjectName("step")
        self.setProperty("selected", "true" if selected else "false")
        self.step = step
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(8, 6, 8, 8)
        self.lay.setSpacing(6)
        where = "input" if step.layer < 0 else f"layer {step.layer}: {step.summary}"
        head = _label(f"{where} \u2192 <b>{fmt(step.map_value)}</b>", scale, 16)
        head.setTextFormat(Qt.RichText)
        self.lay.addWidget(head)
        getattr(self, "_" + step.kind)(step, scale)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)

    def _row(self, *widgets) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(8)
        for w in widgets:
            row.addWidget(w, 0, Qt.AlignVCenter)
        row.addStretch(1)
        self.lay.addLayout(row)
        return row

    def _input(self, step, scale):
        self.lay.addWidget(_label(f"the input's value at ({unit_name(step.unit)})", scale, muted=True))

    def _conv(self, step, scale):
        pads = ", ".join(map(str, step.padding))
        dil = ", ".join(map(str, step.dilation))
        self.lay.addWidget(_label(f"per input channel: window \u00d7 kernel = products, summed "
                                  f"(stride {', '.join(map(str, step.stride))}, padding {pads}, dilation {dil})",
                                  scale, 13, muted=True))
        self.grids = []
        for ch in step.channels:
            w = ch.window
            win = NumberGrid(w.region, w.padding, ~w.taps, scale=scale, tint=False)
            ker = NumberGrid(ch.kernel, scale=scale)
            prod = NumberGrid(ch.products, scale=scale)
            self.grids.append((win, ker, prod))
            origin = ", ".join(map(str, w.origin))
            name = _label(f"ch {w.channel}", scale, bold=True)
            name.setToolTip(f"input channel {w.channel}; the window starts at ({origin})")
            self._row(name, win, _label("\u00d7", scale, 20), ker, _label("=", scale, 20), prod,
                      _label(f"\u03a3 = <b>{fmt(ch.total)}</b>", scale, 16))
        if step.rest_count:
            self.lay.addWidget(_label(f"+ {step.rest_count} other input channels: \u03a3 = {fmt(step.rest_sum)}",
                                      scale, muted=False))
        self.lay.addWidget(_label(step.lines()[-1], scale, 16, mono=True, bold=True))

    def _pool(self, step, scale):
        w = step.window
        hi = None
        if step.winner is not None:
            hi = w.taps & False
            ys, xs = w.taps.nonzero()
            order = list(zip(ys, xs))
            r, c = step.winner
            k = w.values.shape[1]
            hi[order[r * k + c]] = True
        grid = NumberGrid(w.region, w.padding, ~w.taps, highlight=hi, scale=scale, tint=False)
        self.grids = [(grid,)]
        text = ("the largest value in the window (outlined) wins" if step.mode == "max"
                else f"the average: sum / {step.count} (padded zeros count)")
        self._row(_label(f"ch {w.channel}", scale, bold=True), grid, _label(text, scale, 13, muted=True))
        self.lay.addWidget(_label(step.lines()[-1], scale, 16, mono=True, bold=True))

    def _linear(self, step, scale):
        self.lay.addWidget(_label("the largest terms w\u1d62 \u00d7 x\u1d62 of the weighted sum", scale, 13,
                                  muted=True))
        table = QGridLayout()
        table.setHorizontalSpacing(18)
        table.setVerticalSpacing(2)
        for c, h in enumerate(("input", "from", "w", "x", "w \u00d7 x")):
            table.addWidget(_label(h, scale, 13, muted=True), 0, c, Qt.AlignRight)
        for r, t in enumerate(step.terms, start=1):
            src = "" if t.source is None else f"({unit_name(t.source)})"
            for c, text in enumerate((str(t.index), src, fmt(t.weight), fmt(t.x), fmt(t.product))):
                table.addWidget(_label(text, scale, mono=True), r, c, Qt.AlignRight)
        r = len(step.terms) + 1
        if step.rest_count:
            table.addWidget(_label(f"{step.rest_count} other inputs", scale, muted=True), r, 0, 1, 4, Qt.AlignRight)
            table.addWidget(_label(fmt(step.rest_sum), scale, mono=True), r, 4, Qt.AlignRight)
            r += 1
        if step.bias is not None:
            table.addWidget(_label("bias", scale, muted=True), r, 0, 1, 4, Qt.AlignRight)
            table.addWidget(_label(fmt(step.bias), scale, mono=True), r, 4, Qt.AlignRight)
            r += 1
        table.addWidget(_label("sum", scale, bold=True), r, 0, 1, 4, Qt.AlignRight)
        table.addWidget(_label(fmt(step.value), scale, mono=True, bold=True), r, 4, Qt.AlignRight)
        box = QWidget()
        box.setLayout(table)
        self._row(box)

    def _flatten(self, step, scale):
        self.lay.addWidget(_label(step.lines()[0], scale, 16, mono=True))

    def _pointwise(self, step, scale):
        self.lay.addWidget(_label(step.formula, scale, 13, muted=True))
        self.lay.addWidget(_label(step.equation, scale, 17, mono=True, bold=True))
