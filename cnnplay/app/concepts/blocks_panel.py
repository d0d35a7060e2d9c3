"""Stacking and batch norm: a one-click conv -> norm -> activation block and
"Calibrate on this image" for the selected batch norm."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from ...core.concepts import blocks as B
from ...core.concepts import calibration as CAL
from ...core.errors import NetworkError
from ..compute import TaskRequest
from .common import WhenVisible, note, selected_layer


def _calibration_task(layer):
    """Statistics of one batch norm ({layer: stats}), or of all of them in order (layer None)."""
    def fn(net, x, outputs, should_stop):
        if layer is None:
            return CAL.calibrate_all(net, x, should_stop)
        return {layer: CAL.batchnorm_statistics(net, layer, x, outputs)}  # one pass over cached outputs
    return fn


class BlocksPanel(QWidget):
    def __init__(self, session, editor, controller, parent=None):
        super().__init__(parent)
        self.session, self.editor, self.worker = session, editor, controller.worker
        self.pending: TaskRequest | None = None

        block = QGroupBox("Conv -> norm -> activation")
        self.channels = QSpinBox()
        self.channels.setRange(1, 512)
        self.channels.setValue(16)
        self.kernel = QSpinBox()
        self.kernel.setRange(1, 15)
        self.kernel.setValue(3)
        self.norm_box = QComboBox()
        for text, key in (("batch norm", "batchnorm"), ("layer norm", "layernorm"), ("none", None)):
            self.norm_box.addItem(text, key)
        self.act_box = QComboBox()
        for text, key in (("ReLU", "relu"), ("LeakyReLU", "leaky_relu"), ("none", None)):
            self.act_box.addItem(text, key)
        self.channels.setToolTip("Output channels of the block's conv layer")
        self.kernel.setToolTip("Kernel size of the block's conv layer (padding keeps the map size)")
        self.norm_box.setToolTip("The normalization after the conv")
        self.act_box.setToolTip("The activation after the normalization")
        self.block_button = QPushButton("Insert block")
        self.block_button.setToolTip("Inserts the three layers after the selected layer (at the end if none is selected)")
        self.block_button.clicked.connect(self.insert_block)
        f = QFormLayout(block)
        f.addRow("channels", self.channels)
        f.addRow("kernel", self.kernel)
        f.addRow("norm", self.norm_box)
        f.addRow("activation", self.act_box)
        f.addRow(self.block_button)
        f.addRow(note(B.EXPLANATION))

        calib = QGroupBox("Batch-norm calibration")
        self.calib_label = QLabel()
        self.calib_label.setWordWrap(True)
        self.calib_button = QPushButton("Calibrate on this image")
        self.calib_button.setToolTip("Set the selected batch norm's running mean and variance from its input "
                                     "maps for this image (one undo step)")
        self.calib_button.clicked.connect(self.calibrate)
        self.calib_all_button = QPushButton("Calibrate all batch norms")
        self.calib_all_button.setToolTip("Top to bottom: each one on the maps of the ones before it, "
                                         "already calibrated (one undo step)")
        self.calib_all_button.clicked.connect(self.calibrate_all)
        v = QVBoxLayout(calib)
        v.addWidget(self.calib_label)
        v.addWidget(self.calib_button)
        v.addWidget(self.calib_all_button)
        v.addWidget(note(CAL.EXPLANATION))

        lay = QVBoxLayout(self)
        lay.addWidget(block)
        lay.addWidget(calib)
        lay.addStretch(1)
        self.worker.task_done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.task_cancelled.connect(self._on_cancelled)
        self.refresh_when_visible = WhenVisible(self, self.refresh)
        session.network_changed.connect(self.refresh_when_visible)
        session.selection_changed.connect(self.refresh_when_visible)
        self.refresh_when_visible()

    def refresh(self) -> None:
        i = selected_layer(self.session, ("batchnorm",))
        self.calib_button.setEnabled(i is not None)
        self.calib_all_button.setEnabled(any(t.name == "batchnorm" for t in self.session.network.layer_types))
        if self.pending is None:
            self.calib_label.setText(f"Layer {i}: set its running mean and variance from the current input."
                                     if i is not None else "Select a batch-norm layer in the stack.")

    def insert_block(self) -> None:
        s = self.session
        sel = s.selected_layer
        index = len(s.layers) if sel is None else sel + 1
        opts = dict(out_channels=self.channels.value(), kernel_size=self.kernel.value(),
                    norm=self.norm_box.currentData(), activation=self.act_box.currentData())

        def edit(session):
            net = session.network
            if index > len(net):
                raise NetworkError("fix the invalid layer first: a block goes among the valid layers")
            session.set_spec(B.insert_block(session.spec, net, index, **opts))
        self.editor.edit("Insert conv block", edit)

    def calibrate(self) -> None:
        i = selected_layer(self.session, ("batchnorm",))
        if i is not None:
            self._submit(i)

    def calibrate_all(self) -> None:
        self._submit(None)

    def _submit(self, layer) -> None:
        s = self.session
        self.pending = TaskRequest(s.network, s.input_array, s.input_token, "batch-norm calibration",
                                   _calibration_task(layer))
        self.calib_label.setText("computing this image's statistics...")
        self.worker.submit(self.pending)

    def _on_done(self, result) -> None:
        if result.request is not self.pending:
            return
        req, self.pending = self.pending, None
        s = self.session
        if req.network is not s.network or req.input_token != s.input_token:
            self.calib_label.setText("The network or input changed meanwhile: click again.")
            return
        stats = result.value  # {layer: running statistics}

        def apply(sess):
            for i, st in stats.items():
                sess.set_layer_params(i, **st)
        self.editor.edit("Calibrate batch norm" + ("s" if len(stats) > 1 else ""), apply)
        layers = ", ".join(map(str, stats))
        self.calib_label.setText(f"Layer{'s' if len(stats) > 1 else ''} {layers} calibrated: "
                                 "the maps after them are now normalized for this image.")

    def _on_cancelled(self, request) -> None:
        self._on_failed(request, "Calibration cancelled: click again to compute it.")

    def _on_failed(self, request, message: str) -> None:
        if request is self.pending:
            self.pending = None
            self.calib_label.setText(message)
