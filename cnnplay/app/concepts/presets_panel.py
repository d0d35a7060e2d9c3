"""Convolution as filtering: kernel presets and hand editing of a conv layer's kernels.

Every change goes through the Editor (one undo step) and `Session.set_layer_params`;
the feature maps then update through the normal forward pass.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from ...core.concepts import presets as P
from ...core.concepts.weight_sharing import EXPLANATION as SHARING_EXPLANATION
from .common import WhenVisible, note, selected_layer

EXPLANATION = (
    "A conv layer slides each small kernel over the image and, at every position, sums the pixels "
    "under it weighted by the kernel's numbers. Different numbers pick out different things: blurs "
    "average, edge detectors subtract one side from the other. Pick a preset or type numbers into "
    "the grid and watch the feature maps change."
)

SCOPES = (("pair", "this (out, in) pair"), ("diagonal", "matching channels (out c <- in c)"),
          ("all", "all channel pairs"))


CUSTOM = "custom (hand-edited, trained or random)"


def fit_number(v: float, width: float, advance) -> str | None:
    """v with as many significant digits (4 down to 2) as fit `width` px, else None."""
    for digits in (4, 3, 2):
        text = f"{v:.{digits}g}"
        if advance(text) <= width:
            return text
    return None


def fit_cell(v: float, width: float, font) -> tuple[str, object]:
    """(text, font) for a kernel cell: the grid's font, else a smaller one, so that the
    number shows with at least 2 significant digits instead of being cut to '0.00...'."""
    from PySide6.QtGui import QFont, QFontMetrics
    for factor in (1.0, 0.85, 0.72):
        f = QFont(font)
        if factor != 1.0:
            f.setPointSizeF(max(font.pointSizeF() * factor, 5.0))
        text = fit_number(v, width, QFontMetrics(f).horizontalAdvance)
        if text is not None:
            return text, f
    return f"{v:.2g}", f


class KernelPresetPanel(QWidget):
    """Presets and a kernel grid for the selected conv layer."""

    applied = Signal()  # after a successful edit

    def __init__(self, session, editor, parent=None):
        super().__init__(parent)
        self.session, self.editor = session, editor
        self.layer: int | None = None
        self._filling = False

        self.title = QLabel()
        self.title.setWordWrap(True)
        self.preset_box = QComboBox()
        self.preset_box.setToolTip("What the chosen kernel is now (\u201ccustom\u201d: hand-edited, trained or "
                                   "random), or the preset to apply")
        self.preset_box.currentIndexChanged.connect(self._on_preset_changed)
        self.option_boxes: dict[str, QDoubleSpinBox | QSpinBox] = {}
        # The options sit in a box as tall as the longest option list, so that a preset
        # with more options never moves the Apply button (under the mouse).
        self.options_host = QWidget()
        self.options_form = QFormLayout(self.options_host)
        self.options_form.setContentsMargins(0, 0, 0, 0)
        for name, default, lo, hi, step in {o[0]: o for opts in P.PRESET_OPTIONS.values() for o in opts}.values():
            box = QSpinBox() if name == "seed" else QDoubleSpinBox()
            box.setRange(lo, hi)
            box.setSingleStep(step)
            if isinstance(box, QDoubleSpinBox):
                box.setDecimals(2)
            box.setValue(default)
            box.setToolTip({"sigma": "Width of the Gaussian (pixels)", "theta": "Orientation of the stripes (degrees)",
                            "wavelength": "Period of the stripes (pixels)",
                            "seed": "Random seed: the same seed gives the same numbers"}.get(name, name))
            self.option_boxes[name] = box
            self.options_form.addRow(name.replace("theta", "orientation (deg)"), box)
        self.out_box, self.in_box = QSpinBox(), QSpinBox()
        self.out_box.setToolTip("Output channel (which filter)")
        self.in_box.setToolTip("Input channel this kernel reads")
        self.out_box.valueChanged.connect(self._fill_grid)
        self.in_box.valueChanged.connect(self._fill_grid)
        self.scope_box = QComboBox()
        for key, text in SCOPES:
            self.scope_box.addItem(text, key)
        self.scope_box.setToolTip("Where the preset goes. 'All channel pairs' makes every output channel the sum of "
                                  "all input channels filtered the same way.")
        rows = max((len(o) for o in P.PRESET_OPTIONS.values()), default=0)
        row_h = max(b.sizeHint().height() for b in self.option_boxes.values()) if self.option_boxes else 0
        self.options_host.setFixedHeight(rows * (row_h + max(self.options_form.verticalSpacing(), 4)))
        self.zero_bias = QCheckBox("set bias to 0")
        self.zero_bias.setToolTip("Applying a preset also sets the layer's bias to 0, so the output is the "
                                  "filtered image itself")
        self.zero_bias.setChecked(True)
        self.apply_button = QPushButton("Apply preset")
        self.apply_button.setToolTip("Write the chosen preset into the kernels (one undo step)")
        self.apply_button.clicked.connect(self.apply_preset)
        self.preset_help = note("")
        self.kernel_is = QLabel()
        self.kernel_is.setObjectName("kernelIs")
        self.kernel_is.setWordWrap(True)

        self.grid = QTableWidget()
        self.grid.setToolTip("The kernel's numbers for the chosen (out, in) pair: double-click a cell to edit it.")
        self.grid.setEditTriggers(QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed
                                  | QAbstractItemView.AnyKeyPressed)
        self.grid.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.grid.verticalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.grid.setMinimumHeight(120)
        self.grid.setTextElideMode(Qt.ElideNone)  # numbers are formatted to fit their cells instead
        self.grid.cellChanged.connect(self._on_cell_changed)

        pair = QHBoxLayout()
        pair.addWidget(QLabel("out"))
        pair.addWidget(self.out_box)
        pair.addWidget(QLabel("in"))
        pair.addWidget(self.in_box)
        pair.addStretch(1)
        form = QFormLayout()
        form.addRow("Preset", self.preset_box)
        form.addRow("Channels", pair)
        form.addRow("Apply to", self.scope_box)
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addLayout(form)
        lay.addWidget(self.options_host)
        row = QHBoxLayout()
        row.addWidget(self.zero_bias)
        row.addStretch(1)
        row.addWidget(self.apply_button)
        lay.addLayout(row)
        lay.addWidget(self.preset_help)
        lay.addWidget(self.kernel_is)
        lay.addWidget(self.grid, 1)
        lay.addWidget(note(EXPLANATION))

        self.refresh_when_visible = WhenVisible(self, self.refresh)
        session.network_changed.connect(self.refresh_when_visible)
        session.selection_changed.connect(self.refresh_when_visible)
        self.refresh_when_visible()

    # -- reading the session ------------------------------------------------------------
    def _weight(self) -> np.ndarray | None:
        if self.layer is None:
            return None
        return self.session.network.params(self.layer).get("weight")

    def refresh(self) -> None:
        net = self.session.network
        layer = selected_layer(self.session, ("conv",))
        dims_changed = layer is None or self.layer is None or (
            net.layer_types[layer].dims != getattr(self, "_dims", None))
        self.layer = layer
        enabled = layer is not None
        for w in (self.preset_box, self.out_box, self.in_box, self.scope_box, self.apply_button, self.grid,
                  self.zero_bias, *self.option_boxes.values()):
            w.setEnabled(enabled)
        if not enabled:
            self.title.setText("Select a conv layer in the stack to set its kernels.")
            for box in self.option_boxes.values():
                box.setVisible(False)
                label = self.options_form.labelForField(box)
                if label is not None:
                    label.setVisible(False)
            self.preset_help.setText("")
            self.kernel_is.setText("")
            self._set_grid(None)
            return
        t = net.layer_types[layer]
        w = self._weight()
        self.title.setText(f"<b>Layer {layer}: {net.summaries[layer]}</b> &nbsp; weight {tuple(w.shape)}")
        if dims_changed:
            self._dims = t.dims
            names = P.PRESETS_1D if t.dims == 1 else P.PRESETS_2D
            current = self.preset_box.currentData()
            self.preset_box.blockSignals(True)
            self.preset_box.clear()
            self.preset_box.addItem(CUSTOM, None)
            for n in names:
                self.preset_box.addItem(P.TITLES[n], n)
            idx = self.preset_box.findData(current)
            self.preset_box.setCurrentIndex(max(idx, 0))
            self.preset_box.blockSignals(False)
            self._on_preset_changed()
        for box, n in ((self.out_box, w.shape[0]), (self.in_box, w.shape[1])):
            box.blockSignals(True)
            box.setRange(0, n - 1)
            box.blockSignals(False)
        self.zero_bias.setVisible("bias" in net.params(layer))
        self._fill_grid()
        self.show_identity()

    def _on_preset_changed(self) -> None:
        name = self.preset_box.currentData()
        self.apply_button.setEnabled(self.layer is not None and name is not None)
        wanted = {o[0] for o in P.PRESET_OPTIONS.get(name, ())}
        for opt, box in self.option_boxes.items():
            box.setVisible(opt in wanted)
            label = self.options_form.labelForField(box)
            if label is not None:
                label.setVisible(opt in wanted)
        self.preset_help.setText(P.HELP.get(name, ""))

    def _fill_grid(self) -> None:
        w = self._weight()
        if w is None:
            self._set_grid(None)
            return
        o, i = self.out_box.value(), self.in_box.value()
        if not (o < w.shape[0] and i < w.shape[1]):
            return
        k = w[o, i]
        self._set_grid(k if k.ndim == 2 else k[None, :])
        name = self.identify(k)
        self.kernel_is.setText(f"This kernel is: <b>{P.TITLES[name] if name else CUSTOM}</b>")

    def identify(self, k: np.ndarray) -> str | None:
        return P.identify_kernel(k, {n: b.value() for n, b in self.option_boxes.items()})

    def show_identity(self) -> None:
        """The preset box names what the shown kernel is, or says custom (when the layer or its
        weights change; choosing another channel pair keeps the preset chosen to apply)."""
        w = self._weight()
        o, i = self.out_box.value(), self.in_box.value()
        if w is None or not (o < w.shape[0] and i < w.shape[1]):
            return
        idx = self.preset_box.findData(self.identify(w[o, i]))
        if idx >= 0 and idx != self.preset_box.currentIndex():
            self.preset_box.setCurrentIndex(idx)  # shows its options and help
        self._on_preset_changed()

    def _set_grid(self, k: np.ndarray | None) -> None:
        self._filling = True
        try:
            if k is None:
                self._shown = None
                self.grid.setRowCount(0)
                self.grid.setColumnCount(0)
                return
            self.grid.setRowCount(k.shape[0])
            self.grid.setColumnCount(k.shape[1])
            self._shown = k
            cell = self.grid.viewport().width() / max(k.shape[1], 1) - 6
            for r in range(k.shape[0]):
                for c in range(k.shape[1]):
                    text, font = fit_cell(float(k[r, c]), cell, self.grid.font())
                    item = QTableWidgetItem(text)
                    item.setFont(font)
                    item.setToolTip(f"{float(k[r, c]):.7g}")  # edits change only this cell
                    item.setTextAlignment(Qt.AlignCenter)
                    self.grid.setItem(r, c, item)
        finally:
            self._filling = False

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        if ev.size().width() != ev.oldSize().width() and getattr(self, "_shown", None) is not None:
            self._set_grid(self._shown)  # the numbers' digits follow the cells' width

    # -- edits -------------------------------------------------------------------------
    def options(self) -> dict:
        name = self.preset_box.currentData()
        return {o[0]: self.option_boxes[o[0]].value() for o in P.PRESET_OPTIONS.get(name, ())}

    def apply_preset(self) -> None:
        if self.layer is None:
            return
        i, name = self.layer, self.preset_box.currentData()
        if name is None:
            return  # "custom": nothing to apply
        try:
            w = P.apply_preset(self._weight(), name, self.out_box.value(), self.in_box.value(),
                               scope=self.scope_box.currentData(), **self.options())
        except P.PresetError as e:
            self.editor.failed.emit(str(e))
            self.preset_help.setText(f"<span style='color:#ff6b6b'>{e}</span>")
            return
        arrays = {"weight": w}
        bias = self.session.network.params(i).get("bias")
        if bias is not None and self.zero_bias.isChecked():
            arrays["bias"] = np.zeros_like(bias)
        self.editor.edit(f"{P.TITLES[name]} kernel", lambda s: s.set_layer_params(i, **arrays))
        self.applied.emit()

    def _on_cell_changed(self, r: int, c: int) -> None:
        if self._filling or self.layer is None:
            return
        item = self.grid.item(r, c)
        w = np.array(self._weight(), dtype=np.float32, copy=True)
        o, i = self.out_box.value(), self.in_box.value()
        try:
            value = float(item.text())
            if not np.isfinite(value):
                raise ValueError
        except ValueError:
            self.editor.failed.emit(f"'{item.text()}' is not a number")
            self._fill_grid()
            return
        if w.ndim == 4:
            w[o, i, r, c] = value
        else:
            w[o, i, c] = value
        layer = self.layer
        self.editor.edit("Edit kernel value", lambda s: s.set_layer_params(layer, weight=w))
        self.applied.emit()


class WeightSharingBox(QWidget):
    """The selected conv layer's parameter count beside a fully connected layer's."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.RichText)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(note(SHARING_EXPLANATION))
        lay.addStretch(1)
        self.refresh_when_visible = WhenVisible(self, self.refresh)
        session.network_changed.connect(self.refresh_when_visible)
        session.selection_changed.connect(self.refresh_when_visible)
        self.refresh_when_visible()

    def comparison(self):
        from ...core.concepts.weight_sharing import mlp_comparison
        from .common import conv_layers
        i = selected_layer(self.session, ("conv",))
        if i is None:
            convs = conv_layers(self.session.network)
            if not convs:
                return None
            i = convs[0]
        return mlp_comparison(self.session.network, i)

    def refresh(self) -> None:
        from ...core.concepts.weight_sharing import format_ratio
        c = self.comparison()
        if c is None:
            self.text.setText("Add a conv layer to compare it with a fully connected layer.")
            return
        net = self.session.network
        self.text.setText(
            f"<b>Layer {c.layer}: {net.summaries[c.layer]}</b><br>"
            f"<b>Conv</b> ({c.conv_formula_symbols}):<br>&nbsp;&nbsp;{c.conv_formula} parameters<br>"
            f"<b>Fully connected</b>, same input ({c.in_numel:,} numbers) and output ({c.out_numel:,}):<br>"
            f"&nbsp;&nbsp;in x out + out = {c.dense_formula}<br>"
            f"<b>Ratio:</b> the fully connected layer needs {format_ratio(c.ratio)}.")
