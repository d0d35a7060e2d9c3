"""The Train panel: choose a data set, set the training up, train, and watch.

It writes to the session (the attached data set, the training settings, the
trained weights as one undo step per run) and draws what the session holds;
the training itself runs in a TrainingRun on a thread of its own (run.py says
why), which publishes snapshots at a bounded rate. An edit of the network (or
an undo) while training runs pauses it; layers whose parameters survive the edit
keep their trained weights, and the panel says which were reset.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import replace

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QGridLayout,
                               QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSlider, QSpinBox, QVBoxLayout,
                               QWidget)

from ...core.errors import InputError, NetworkError
from ...core.kernels import launch
from ..input_panel import dataset_source
from .charts import ConfusionMatrix, Curves, Gallery
from .run import PUBLISH_SECONDS, Gate, Snapshot, TrainingRun, copy_network, refresh_interval
from .state import OPTIMIZERS, Training, gallery_order

log = logging.getLogger(__name__)

FOLDER = "__folder__"
NPZ = "__npz__"
LR_MIN, LR_MAX, LR_STEPS = 1e-5, 1.0, 100  # the learning-rate slider: 100 steps per ... log scale

SHORTCUTS = {"train": "F5", "pause": "Shift+F5", "step": "F10", "reset": "Ctrl+Shift+R"}


def lr_to_slider(lr: float) -> int:
    t = (math.log10(lr) - math.log10(LR_MIN)) / (math.log10(LR_MAX) - math.log10(LR_MIN))
    return int(round(min(max(t, 0.0), 1.0) * LR_STEPS))


def slider_to_lr(v: int) -> float:
    e = math.log10(LR_MIN) + v / LR_STEPS * (math.log10(LR_MAX) - math.log10(LR_MIN))
    return float(f"{10 ** e:.2g}")


def fmt_time(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Bridge(QObject):
    """Signals emitted on the training / loading threads, delivered on the GUI thread."""

    snapshot = Signal(object, object)  # (run, Snapshot)
    loaded = Signal(object, object, object)  # (token, (Dataset, messages) or None, error message or None)
    load_progress = Signal(object, int, int)  # (token, done, total)
    evaluated = Signal(object, object)  # (key, Evaluation or None)


def _emitter(gate: Gate, signal):
    """signal.emit(*args) from a worker thread, through `gate`: nothing once the gate is
    closed (the panel closes it before it goes), and nothing either when the bridge was
    deleted first (a window deleted without being closed): the thread ends quietly."""

    def emit(*args) -> None:
        try:
            gate.call(signal.emit, *args)
        except RuntimeError:  # "Signal source has been deleted": nobody listens any more
            gate.close()
    return emit


def _same_objects(a, b) -> bool:
    """Whether two tuples (or None) hold the very same objects, position by position."""
    return a is not None and b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b))


def layers_reset(old, new) -> list[int]:
    """Indices of `new`'s layers with parameters that did not come over from `old` (by id and shapes)."""
    if old is None:
        return []
    by_id = {lid: i for i, lid in enumerate(old.ids)}
    out = []
    for i in range(len(new)):
        shapes = new.param_shapes(i)
        if not shapes:
            continue
        j = by_id.get(new.ids[i])
        if j is None or old.param_shapes(j) != shapes:
            out.append(i)
            continue
        pn, po = new.params(i), old.params(j)
        if any(not np.shares_memory(pn[k], po[k]) and not np.array_equal(pn[k], po[k]) for k in pn):
            out.append(i)
    return out


class TrainPanel(QWidget):
    def __init__(self, session, editor, window=None, parent=None):
        super().__init__(parent)
        self.session, self.editor, self.window = session, editor, window
        self.run: TrainingRun | None = None
        self._run_id = 0
        self._publishing = False
        self._expected_keys = None  # layer keys of the network the run last published (or started from)
        self._trained_net = None
        self._load_token = None
        self._split_cache = None
        self._rate = 0.0
        self._meter = None  # (run, (wall, GUI CPU, priority) seconds) at its last snapshot
        self._publish_interval = PUBLISH_SECONDS  # adapted to the refresh's cost, run after run
        self._default = Training()
        self.bridge = _Bridge(self)
        self._load_gate = Gate()  # the loader threads' emits; closed when the panel goes
        self.bridge.snapshot.connect(self._on_snapshot)
        self.bridge.loaded.connect(self._on_loaded)
        self.bridge.load_progress.connect(self._on_load_progress)
        self.bridge.evaluated.connect(self._on_evaluated)
        self._eval_key = None  # (network, training, test set) whose predictions are being made
        _import_training()  # rule 3: the training modules are imported here, before a run's thread starts

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        self.curves = Curves()
        self.confusion = ConfusionMatrix()
        self.gallery = Gallery()
        self.gallery.picked.connect(self.use_test_sample)
        # The controls, the progress and the curves first (what one watches), then the set-up.
        lay.addWidget(self._build_controls())
        curves_box = QGroupBox("Loss and accuracy")
        cl = QVBoxLayout(curves_box)
        cl.setContentsMargins(4, 4, 4, 4)
        cl.addWidget(self.curves)
        lay.addWidget(curves_box)
        lay.addWidget(self._build_data_box())
        lay.addWidget(self._build_settings_box())
        # The confusion matrix and the gallery live in `results`, a widget of its own: the
        # window docks it under the maps, where there is room for both side by side.
        self.results = QWidget()
        self.results.setObjectName("trainResults")
        rl = QHBoxLayout(self.results)
        rl.setContentsMargins(4, 2, 4, 2)
        for title, w, stretch in (("Confusion matrix (test set)", self.confusion, 2),
                                  ("Test samples, misclassified first (click one: it becomes the input)",
                                   self.gallery, 3)):
            box = QGroupBox(title)
            bl = QVBoxLayout(box)
            bl.setContentsMargins(4, 4, 4, 4)
            bl.addWidget(w)
            rl.addWidget(box, stretch)
        lay.addStretch(1)

        self._links = [(session.dataset_changed, self._on_dataset_changed),
                       (session.training_changed, self._on_training_changed),
                       (session.network_changed, self._on_network_changed)]
        for sig, slot in self._links:
            sig.connect(slot)
        self.destroyed.connect(lambda *_: self._unlink())
        self._sync_settings()
        self._on_dataset_changed()
        self._on_training_changed()

    def _unlink(self):
        self._load_gate.close()
        if self.run is not None:
            self.run.close()
        for sig, slot in self._links:
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):  # the session went first
                pass

    # == building ==========================================================================
    def _build_data_box(self) -> QWidget:
        box = QGroupBox("Data set")
        v = QVBoxLayout(box)
        v.setContentsMargins(6, 6, 6, 6)
        self.source_box = QComboBox()
        # The longest item would make the panel wider than its column: shown shortened, the list in full.
        self.source_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source_box.setMinimumContentsLength(18)
        from ...datasets import BUILTIN
        for name, spec in BUILTIN.items():
            self.source_box.addItem(spec.title, name)
            self.source_box.setItemData(self.source_box.count() - 1, spec.help, Qt.ItemDataRole.ToolTipRole)
        self.source_box.addItem("Folder of images (one sub-folder per class)...", FOLDER)
        self.source_box.addItem(".npz data set...", NPZ)
        self.source_box.setToolTip("Where the training samples come from: a built-in set, a folder of your "
                                   "images (one sub-folder per class) or an .npz file")
        self.source_box.currentIndexChanged.connect(self._build_params_form)
        v.addWidget(self.source_box)
        self.params_host = QWidget()
        self.params_form = QFormLayout(self.params_host)
        self.params_form.setContentsMargins(0, 0, 0, 0)
        self.param_widgets: dict[str, QWidget] = {}
        v.addWidget(self.params_host)
        row = QHBoxLayout()
        self.use_button = QPushButton("Use this data set")
        self.use_button.setToolTip("Make (or read) the chosen data set and attach it for training")
        self.use_button.clicked.connect(self.use_selected_source)
        row.addWidget(self.use_button)
        self.reload_button = QPushButton("Load again")
        self.reload_button.setToolTip("Read the data set this network was trained on again")
        self.reload_button.clicked.connect(self.reload_reference)
        row.addWidget(self.reload_button)
        v.addLayout(row)
        self.load_bar = QProgressBar()
        self.load_bar.setTextVisible(True)
        self.load_bar.hide()
        v.addWidget(self.load_bar)
        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        self.data_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.data_label)
        self.match_frame = QFrame()
        self.match_frame.setStyleSheet("QFrame#matchFrame { background: #fff4e0; border: 1px solid #e0b060; }")
        self.match_frame.setObjectName("matchFrame")
        mv = QVBoxLayout(self.match_frame)
        mv.setContentsMargins(6, 4, 6, 4)
        self.match_label = QLabel()
        self.match_label.setWordWrap(True)
        self.match_label.setStyleSheet("color: #7a4f00;")
        mv.addWidget(self.match_label)
        self.match_input_button = QPushButton()
        self.match_input_button.setToolTip("Change the network's input to the data set's sample shape (undoable)")
        self.match_input_button.clicked.connect(self.match_input)
        self.match_output_button = QPushButton()
        self.match_output_button.setToolTip("Set the last linear layer's outputs to the number of classes (undoable)")
        self.match_output_button.clicked.connect(self.match_outputs)
        mv.addWidget(self.match_input_button)
        mv.addWidget(self.match_output_button)
        v.addWidget(self.match_frame)
        self._build_params_form()
        return box

    def _build_params_form(self, *_):
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self.param_widgets = {}
        name = self.source_box.currentData()
        from ...datasets import BUILTIN
        if name in BUILTIN:
            for p in BUILTIN[name].params:
                if p.kind == "float":
                    w = QDoubleSpinBox()
                    w.setDecimals(3)
                    w.setSingleStep(0.05)
                    w.setRange(p.minimum if p.minimum is not None else 0.0, p.maximum if p.maximum is not None else 1e9)
                    w.setValue(float(p.default))
                elif p.kind == "choice":
                    w = QComboBox()
                    for c in p.choices:
                        w.addItem(str(c), c)
                    w.setCurrentIndex(max(0, list(p.choices).index(p.default)) if p.default in p.choices else 0)
                else:
                    w = QSpinBox()
                    lo = int(p.minimum) if p.minimum is not None else 0
                    hi = int(min(p.maximum, 2**31 - 1)) if p.maximum is not None else 2**31 - 1
                    if p.kind == "int_or_none":
                        w.setRange(lo - 1, hi)
                        w.setSpecialValueText("all")
                        w.setValue(lo - 1 if p.default is None else int(p.default))
                    else:
                        w.setRange(lo, hi)
                        w.setValue(int(p.default))
                w.setToolTip(p.help)
                self.params_form.addRow(p.name, w)
                self.param_widgets[p.name] = w
            self.use_button.setText("Use this data set")
        elif name == FOLDER:
            self.folder_size = QSpinBox()
            self.folder_size.setRange(4, 512)
            self.folder_size.setValue(self._input_side() or 32)
            self.folder_size.setToolTip("Every image is resized to this many pixels square")
            self.folder_mode = QComboBox()
            self.folder_mode.addItem("gray", 1)
            self.folder_mode.addItem("RGB", 3)
            if self.session.network.input_shape[0] == 3:
                self.folder_mode.setCurrentIndex(1)
            self.params_form.addRow("size", self.folder_size)
            self.params_form.addRow("colour", self.folder_mode)
            self.use_button.setText("Open folder...")
        else:
            self.use_button.setText("Open .npz...")

    def _input_side(self) -> int | None:
        shape = self.session.network.input_shape
        return int(shape[1]) if len(shape) == 3 and shape[1] == shape[2] and shape[1] <= 512 else None

    def builtin_params(self) -> dict:
        from ...datasets import BUILTIN
        name = self.source_box.currentData()
        out = {}
        for p in BUILTIN[name].params:
            w = self.param_widgets[p.name]
            if isinstance(w, QComboBox):
                out[p.name] = w.currentData()
            elif isinstance(w, QDoubleSpinBox):
                out[p.name] = float(w.value())
            else:
                out[p.name] = None if p.kind == "int_or_none" and w.value() < w.minimum() + 1 else int(w.value())
        return out

    def _build_settings_box(self) -> QWidget:
        box = QGroupBox("Training")
        f = QFormLayout(box)
        f.setContentsMargins(6, 6, 6, 6)
        self.split_spin = QSpinBox()
        self.split_spin.setRange(5, 90)
        self.split_spin.setSuffix(" % test")
        self.split_spin.setToolTip("The part of the data set kept aside to test on (never trained on)")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 4096)
        self.batch_spin.setToolTip("Samples per update: the loss and its gradient are averaged over them")
        self.optimizer_box = QComboBox()
        self.optimizer_box.setToolTip("SGD (with momentum) or Adam, as in torch.optim")
        for o in OPTIMIZERS:
            self.optimizer_box.addItem({"sgd": "SGD", "adam": "Adam"}[o], o)
        lr_row = QWidget()
        lr_lay = QHBoxLayout(lr_row)
        lr_lay.setContentsMargins(0, 0, 0, 0)
        self.lr_slider = QSlider(Qt.Orientation.Horizontal)
        self.lr_slider.setRange(0, LR_STEPS)
        self.lr_slider.setToolTip("Learning rate, on a logarithmic scale from 1e-5 to 1")
        self.lr_label = QLabel()
        self.lr_label.setMinimumWidth(52)
        lr_lay.addWidget(self.lr_slider, 1)
        lr_lay.addWidget(self.lr_label)
        self.momentum_spin = QDoubleSpinBox()
        self.momentum_spin.setRange(0.0, 0.999)
        self.momentum_spin.setDecimals(3)
        self.momentum_spin.setSingleStep(0.05)
        self.momentum_spin.setToolTip("SGD momentum (Adam uses its betas instead)")
        self.decay_spin = QDoubleSpinBox()
        self.decay_spin.setRange(0.0, 1.0)
        self.decay_spin.setDecimals(5)
        self.decay_spin.setSingleStep(0.0001)
        self.decay_spin.setToolTip("Weight decay (L2, added to the gradient)")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10000)
        self.epochs_spin.setToolTip("How many passes over the training part Train makes")
        f.addRow("split", self.split_spin)
        f.addRow("batch size", self.batch_spin)
        f.addRow("optimizer", self.optimizer_box)
        f.addRow("learning rate", lr_row)
        f.addRow("momentum", self.momentum_spin)
        f.addRow("weight decay", self.decay_spin)
        f.addRow("epochs", self.epochs_spin)
        self.split_spin.valueChanged.connect(lambda v: self.set_setting(test_fraction=v / 100))
        self.batch_spin.valueChanged.connect(lambda v: self.set_setting(batch_size=int(v)))
        self.optimizer_box.currentIndexChanged.connect(
            lambda: self.set_setting(optimizer=self.optimizer_box.currentData()))
        self.lr_slider.valueChanged.connect(lambda v: self.set_setting(lr=slider_to_lr(v)))
        self.momentum_spin.valueChanged.connect(lambda v: self.set_setting(momentum=float(v)))
        self.decay_spin.valueChanged.connect(lambda v: self.set_setting(weight_decay=float(v)))
        self.epochs_spin.valueChanged.connect(lambda v: self.set_setting(epochs=int(v)))
        return box

    def _build_controls(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(0, 0, 0, 0)
        # Two rows of two: four buttons side by side do not fit the narrow right-hand column.
        row = QGridLayout()
        row.setContentsMargins(0, 0, 0, 0)
        self.train_button = QPushButton("Train")
        self.pause_button = QPushButton("Pause")
        self.step_button = QPushButton("Step")
        self.reset_button = QPushButton("Reset weights")
        for n, (b, key, tip, slot) in enumerate(((self.train_button, "train", "Train until the last epoch", self.train),
                                  (self.pause_button, "pause", "Pause after the current batch", self.pause),
                                  (self.step_button, "step", "Train on one batch", self.step),
                                  (self.reset_button, "reset", "Back to the initial weights (undoable)",
                                   self.reset_weights))):
            b.setToolTip(f"{tip} ({SHORTCUTS[key]})")
            b.clicked.connect(slot)
            row.addWidget(b, n // 2, n % 2)
            sc = QShortcut(QKeySequence(SHORTCUTS[key]), self.window if self.window is not None else self)
            sc.setContext(Qt.ShortcutContext.WindowShortcut if self.window is not None
                          else Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        v.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("not trained yet")
        v.addWidget(self.progress_bar)
        self.note_label = QLabel()
        self.note_label.setWordWrap(True)
        self.note_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.note_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.note_label)
        self._sync_buttons()
        return w

    # == settings ==========================================================================
    def training(self) -> Training:
        t = self.session.training
        return t if isinstance(t, Training) else self._default

    def set_setting(self, **changes) -> None:
        if getattr(self, "_syncing", False):
            return
        t = self.training()
        if all(getattr(t.settings, k) == v for k, v in changes.items()):
            return
        new = t.with_settings(**changes)
        if self.session.training is None or not isinstance(self.session.training, Training):
            self._default = new
        self.session.set_training(new)

    def _sync_settings(self) -> None:
        s = self.training().settings
        self._syncing = True
        try:
            self.split_spin.setValue(int(round(s.test_fraction * 100)))
            self.batch_spin.setValue(s.batch_size)
            self.optimizer_box.setCurrentIndex(max(0, self.optimizer_box.findData(s.optimizer)))
            self.lr_slider.setValue(lr_to_slider(s.lr))
            self.lr_label.setText(f"{s.lr:g}")
            self.momentum_spin.setValue(s.momentum)
            self.momentum_spin.setEnabled(s.optimizer == "sgd")
            self.decay_spin.setValue(s.weight_decay)
            self.epochs_spin.setValue(s.epochs)
        finally:
            self._syncing = False

    # == data sets =========================================================================
    def use_selected_source(self) -> None:
        name = self.source_box.currentData()
        if name == FOLDER:
            folder = QFileDialog.getExistingDirectory(self, "Folder with one sub-folder of images per class")
            if folder:
                c = self.folder_mode.currentData()
                n = self.folder_size.value()
                self.load_folder(folder, (c, n, n))
        elif name == NPZ:
            path, _ = QFileDialog.getOpenFileName(self, "Open a data set", "", "Data sets (*.npz);;All files (*)")
            if path:
                self.load_npz(path)
        else:
            self.load_builtin(name, **self.builtin_params())

    def load_builtin(self, name: str, **params) -> None:
        from ...datasets import make_builtin
        self._load(lambda stop, progress: (make_builtin(name, **params), []), f"making {name}...")

    def load_npz(self, path) -> None:
        from ...datasets import Dataset

        def make(stop, progress):
            ds = Dataset.load_npz(path)
            if ds.reference is None or "file" not in ds.reference:
                ds.reference = {"file": os.fspath(path)}
            return ds, []
        self._load(make, f"reading {os.path.basename(os.fspath(path))}...")

    def load_folder(self, folder, shape) -> None:
        from .folder import load_image_folder

        def make(stop, progress):
            result = load_image_folder(folder, shape, should_stop=stop, progress=progress)
            if result is None:
                return None
            ds, report = result
            return ds, [report.summary() + "."] + report.messages()
        self._load(make, f"reading {os.path.basename(os.fspath(folder))}...")

    def reload_reference(self) -> None:
        ref = self.session.dataset_reference
        if not ref:
            return
        if "folder" in ref:
            shape = ref.get("shape") or [1, 32, 32]
            self.load_folder(ref["folder"], tuple(shape))
        elif "file" in ref:
            self.load_npz(ref["file"])
        elif "builtin" in ref:
            from ...datasets import from_reference
            self._load(lambda stop, progress: (from_reference(ref), []), "making the data set...")

    def _load(self, make, what: str) -> None:
        """Make a data set on a loader thread (decoding many images takes a while); the newest wins."""
        token = object()
        self._load_token = token
        self.load_bar.setRange(0, 0)
        self.load_bar.setFormat(what)
        self.load_bar.show()
        loaded = _emitter(self._load_gate, self.bridge.loaded)
        progress = _emitter(self._load_gate, self.bridge.load_progress)

        def stop():
            return self._load_token is not token or self._load_gate.closed

        def work():
            try:
                result = make(stop, lambda done, total: progress(token, done, total))
                loaded(token, result, None)
            except (InputError, NetworkError, ValueError, OSError) as e:
                loaded(token, None, str(e))
            except MemoryError:
                loaded(token, None, "not enough memory for this data set")
            except Exception as e:  # a bug: log it, say it
                log.exception("loading a data set failed")
                loaded(token, None, f"internal error while loading ({type(e).__name__}: {e})")

        threading.Thread(target=work, name="cnnplay-dataset", daemon=True).start()

    def loading(self) -> bool:
        return self._load_token is not None

    def _on_load_progress(self, token, done, total) -> None:
        if token is self._load_token:
            self.load_bar.setRange(0, max(total, 1))
            self.load_bar.setValue(done)
            self.load_bar.setFormat(f"decoding images: {done} of {total}")

    def _on_loaded(self, token, result, error) -> None:
        if token is not self._load_token:
            return
        self._load_token = None
        self.load_bar.hide()
        if error is not None:
            self.load_messages = [error]
            self._say(f"The data set was not loaded: {error}", "error")
            self._refresh_data_label()
            return
        if result is None:
            return
        ds, messages = result
        self.load_messages = list(messages)
        if self.run is not None:
            self.pause()
        self.session.set_dataset(ds)
        if len(messages) > 1:
            self._say(" ".join(messages[1:]), "warning")

    def _say(self, text: str, kind: str) -> None:
        if self.window is not None and hasattr(self.window, "show_message"):
            self.window.show_message(text, kind)
        self._set_note(text)

    _note_hold = None  # the note whose label keeps its old height until the maps are shown

    def _set_note(self, text: str, after_maps: bool = False) -> None:
        """The note under the progress bar. after_maps: the note comes with an edit, whose
        new maps the user waits for: the label says it at once but keeps its height until
        they are on screen (a taller note moves the curves and all under it down: a relayout
        and a repaint of 10-15 ms that would delay the maps), then grows to fit."""
        label = self.note_label
        when_shown = getattr(getattr(self.window, "controller", None), "when_shown", None)
        if after_maps and when_shown is not None and label.isVisible():
            if self._note_hold is None:
                label.setFixedHeight(label.height())
            token = self._note_hold = object()
            label.setText(text)
            when_shown(lambda: self._release_note(token))
            return
        self._release_note(self._note_hold)
        label.setText(text)

    def _release_note(self, token) -> None:
        if token is not None and token is self._note_hold:
            self._note_hold = None
            self.note_label.setMinimumHeight(0)
            self.note_label.setMaximumHeight(16777215)  # QWIDGETSIZE_MAX: as tall as the note needs

    def split(self):
        """(train, test) of the attached data set for the current settings (cached)."""
        ds = self.session.dataset
        if ds is None:
            return None
        s = self.training().settings
        key = (ds, s.test_fraction, s.seed)
        if self._split_cache is None or self._split_cache[0] != key:
            self._split_cache = (key, ds.split(s.test_fraction, s.seed))
        return self._split_cache[1]

    def _on_dataset_changed(self) -> None:
        self._split_cache = None
        if self.session.dataset is not None:
            self.load_messages = getattr(self, "load_messages", [])
        self._refresh_data_label()
        self._refresh_match()
        self._refresh_results()
        ref = self.session.dataset_reference
        if self.session.dataset is None and ref and "builtin" in ref and not self.loading():
            self.reload_reference()  # a built-in set is made again at once; a folder or file waits for the user

    def _refresh_data_label(self) -> None:
        s = self.session
        ds, ref = s.dataset, s.dataset_reference
        self.reload_button.setVisible(ds is None and bool(ref))
        if ds is None:
            if ref:
                where = ref.get("folder") or ref.get("file") or ref.get("builtin")
                self.data_label.setText(f"Trained on <b>{where}</b> (not loaded). Press <i>Load again</i> to read it.")
            else:
                self.data_label.setText("No data set yet: choose one above and press <i>Use this data set</i>.")
            return
        counts = ds.class_counts() if hasattr(ds, "class_counts") else np.bincount(ds.y, minlength=len(ds.classes))
        per = ", ".join(f"{c} {n}" for c, n in zip(ds.classes, counts))
        shape = "x".join(str(v) for v in ds.x.shape[1:])
        msgs = [m for m in getattr(self, "load_messages", [])[1:]]
        extra = "".join(f"<br><span style='color:#b9770e'>{m}</span>" for m in msgs)
        self.data_label.setText(f"<b>{getattr(ds, 'name', 'data set')}</b>: {len(ds.y)} samples of {shape}, "
                                f"{len(ds.classes)} classes ({per}){extra}")

    # -- matching the network to the data -------------------------------------------------
    def mismatch(self) -> tuple[str | None, str | None]:
        """(input problem, output problem) between the network and the data set, or None each."""
        ds, net = self.session.dataset, self.session.network
        if ds is None:
            return None, None
        inp = out = None
        shape = tuple(ds.x.shape[1:])
        if tuple(net.input_shape) != shape:
            inp = (f"The data set's samples are {'x'.join(map(str, shape))} but the network's input is "
                   f"{'x'.join(map(str, net.input_shape))}.")
        k = len(ds.classes)
        if self.session.error is not None:
            out = f"Layer {len(net)} is invalid; fix it to train ({self.session.error})."
        elif len(net) == 0 or net.output_shapes[-1] != (k,):
            last = "no layers" if len(net) == 0 else f"an output of {'x'.join(map(str, net.output_shapes[-1]))}"
            out = f"The data set has {k} classes but the network has {last}; training needs {k} class scores."
        return inp, out

    def _refresh_match(self) -> None:
        inp, out = self.mismatch()
        self.match_frame.setVisible(bool(inp or out))
        self.match_label.setText(" ".join(t for t in (inp, out) if t))
        ds = self.session.dataset
        self.match_input_button.setVisible(bool(inp))
        if inp and ds is not None:
            self.match_input_button.setText(f"Use a sample as the input (makes it {'x'.join(map(str, ds.x.shape[1:]))})")
        self.match_output_button.setVisible(bool(out) and self.session.error is None)
        if out and ds is not None:
            k = len(ds.classes)
            i = self._last_linear()
            self.match_output_button.setText(f"Set the last linear layer to {k} outputs" if i is not None
                                              else f"Add a classifier: flatten + linear ({k} outputs)")

    def _last_linear(self) -> int | None:
        layers = self.session.layers
        return len(layers) - 1 if layers and layers[-1].get("type") == "linear" else None

    def match_input(self) -> bool:
        """Make the network's input the data set's shape: its first test sample becomes the input."""
        split = self.split()
        if split is None:
            return False
        return self.use_test_sample(0)

    def match_outputs(self) -> bool:
        ds = self.session.dataset
        if ds is None:
            return False
        k = len(ds.classes)
        i = self._last_linear()
        if i is not None:
            self.editor.update_layer(i, merge=False, out_features=k)
        else:
            net = self.session.network
            flat = len(net) > 0 and len(net.output_shapes[-1]) == 1

            def add(s):
                n = len(s.layers)
                if not flat:
                    s.insert_layer(n, {"type": "flatten"})
                    n += 1
                s.insert_layer(n, {"type": "linear", "out_features": k})
            self.editor.edit(f"Add a classifier ({k} classes)", add)
        return self.mismatch()[1] is None

    def use_test_sample(self, index: int) -> bool:
        """Make test sample `index` the network's input (an undoable input change)."""
        split = self.split()
        if split is None:
            return False
        test = split[1]
        s = self.training().settings
        classes = test.classes
        name = f"test sample {index} ({classes[int(test.y[index])]})"
        src = dataset_source(self.session.dataset_reference, index, name,
                             {"test_fraction": s.test_fraction, "seed": s.seed})
        x = np.array(test.x[index], np.float32)
        return bool(self.editor.edit(f"Input: {name}", lambda ses: ses.set_input(x, src) or True))

    # == training ==========================================================================
    def can_train(self) -> str | None:
        """Why training cannot start now, or None."""
        try:
            from ...core import training  # noqa: F401
        except ImportError:
            return "This build of cnnplay has no training engine (cnnplay.core.training)."
        if self.session.dataset is None:
            return "Choose a data set first."
        inp, out = self.mismatch()
        if inp or out:
            return " ".join(t for t in (inp, out) if t) + " Use the buttons under the data set to fix it."
        return None

    def train(self) -> bool:
        return self._start(None)

    def step(self) -> bool:
        return self._start(1)

    def _start(self, max_batches) -> bool:
        if self.run is not None:
            return False
        why = self.can_train()
        if why:
            self._say(why, "warning")
            return False
        t = self.training()
        if max_batches is None and t.progress.epoch >= t.settings.epochs:
            self._say(f"All {t.settings.epochs} epochs are done: raise the number of epochs to train on, "
                      "or reset the weights.", "info")
            return False
        train, test = self.split()
        self._run_id += 1
        net = copy_network(self.session.network)
        self._expected_keys = self.session.network.layer_keys()
        self._trained_net = self.session.network
        # (an edit's note on the optimizer state it dropped stays: the run's end shows it)
        holder = {}
        emit = _emitter(Gate(), self.bridge.snapshot)  # the run's own gate (run.close()) comes first
        run = TrainingRun(net, t, train, test, lambda snap: emit(holder["run"], snap),
                          max_batches=max_batches)
        holder["run"] = run
        run.publish_interval = self._publish_interval  # what the last run learned it costs
        self.run = run
        self._run_text = "Step" if max_batches == 1 else "Train"
        self._started_at = time.monotonic()
        self._set_note("")
        run.start()
        self._sync_buttons()
        return True

    def pause(self) -> bool:
        if self.run is None:
            return False
        self.run.stop()
        self.progress_bar.setFormat(self.progress_bar.format() + " (pausing...)")
        return True

    def shutdown(self) -> None:
        """The window closes: the run and any loader stop and publish nothing more, so the
        panel may go at once (what the run published last is in the session). The GUI does
        not wait for the batch in progress; the process's exit does (run.join_all_at_exit)."""
        run, self.run = self.run, None
        self._load_token = None
        self._load_gate.close()
        if run is not None:
            run.close()

    def running(self) -> bool:
        return self.run is not None

    def reset_weights(self) -> None:
        if self.run is not None:
            self._drop_run("")
        keep = self.training().settings
        self.editor.edit("Reset weights", lambda s: s.reset_weights(Training(settings=keep)))
        self._set_note("Every layer is back at its initial weights; the curves start again.")

    def _drop_run(self, note: str, after_maps: bool = False) -> None:
        """Stop the run and ignore what it still sends (the session moved on)."""
        run, self.run = self.run, None
        if run is not None:
            run.close()  # what it would still send is of no use: the session moved on
        self._sync_buttons()
        if note:
            self._set_note(note, after_maps)

    def _on_snapshot(self, run, snap: Snapshot) -> None:
        if run is not self.run:
            return  # a run that was dropped: the session moved on
        self._meter_refresh(run)
        current = self.training()
        t = replace(snap.training, settings=current.settings)
        # The run's last snapshot has said its note: the session keeps none for the next run.
        stored = replace(t, reset_note="") if snap.final else t
        self._publishing = True
        try:
            self.editor.edit(self._run_text, lambda s: s.set_trained(snap.params, stored),
                             merge_key=("train", self._run_id))
        finally:
            self._publishing = False
        self._expected_keys = self.session.network.layer_keys()
        self._trained_net = self.session.network
        self._rate = snap.rate
        if snap.final:
            self.run = None
            self._sync_buttons()
            if snap.error:
                self._say(f"Training stopped: {snap.error}", "error")
            elif snap.finished:
                self._set_note(f"Done: {t.settings.epochs} epochs.")
            if t.reset_note and not snap.error:
                self._set_note((self.note_label.text() + " " + t.reset_note).strip())
        self._refresh_progress()

    def _on_network_changed(self) -> None:
        if self._publishing:
            return
        self._refresh_match()
        if self.run is None:
            return
        keys = self.session.network.layer_keys()
        if keys == self._expected_keys:
            return  # e.g. a new input of the same shape: training goes on
        reset = layers_reset(self._trained_net, self.session.network)
        net = self.session.network
        if reset:
            names = ", ".join(f"{i} ({net.layer_types[i].name})" for i in reset)
            note = (f"Training paused: the network changed. Layer(s) {names} start from fresh weights; "
                    "the other layers keep their trained weights.")
        else:
            note = "Training paused: the network changed. Every layer kept its trained weights."
        self._drop_run(note, after_maps=True)  # the edit's maps first, then the panel's relayout
        self._refresh_progress()

    def _on_training_changed(self) -> None:
        self._sync_settings()
        self._refresh_progress()
        self._refresh_results()

    def _meter_refresh(self, run) -> None:
        """Adapt the run's publish interval to what showing its snapshots costs: the GUI
        thread's CPU time and the compute worker's priority time since the last snapshot
        (training waits for both), against the wall time (run.refresh_interval)."""
        now = (time.perf_counter(), time.thread_time(), launch.priority_seconds())
        last, self._meter = self._meter, (run, now)
        if last is not None and last[0] is run:
            (w0, c0, p0), (w1, c1, p1) = last[1], now
            run.publish_interval = refresh_interval(run.publish_interval, (c1 - c0) + (p1 - p0), w1 - w0)
            self._publish_interval = run.publish_interval

    def _refresh_progress(self) -> None:
        t = self.training()
        p, s = t.progress, t.settings
        per = p.batches_per_epoch
        if per == 0 and self.split() is not None:
            per = -(-len(self.split()[0].y) // max(1, s.batch_size))
        total = max(s.epochs * max(per, 1), 1)
        done = min(p.epoch * max(per, 1) + p.batch, total)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        if p.steps == 0:
            text = "not trained yet"
        else:
            text = f"epoch {min(p.epoch + 1, s.epochs)}/{s.epochs} \u00b7 batch {p.batch}/{per}"
            if self.run is not None and self._rate > 0:
                text += f" \u00b7 {fmt_time((total - done) / self._rate)} left"
            elif p.epoch >= s.epochs:
                text = f"{s.epochs} epochs done \u00b7 {p.steps} steps in {fmt_time(p.seconds)}"
        self.progress_bar.setFormat(text)
        self.curves.show_progress(p)

    def _refresh_results(self) -> None:
        t = self.training()
        p = t.progress
        classes = list(self.session.classes or [])
        note = "" if p.confusion_at is None else f"at epoch {p.confusion_at:.2f}"
        self.confusion.set_matrix(p.confusion, classes, note)
        split = self.split() if self.session.dataset is not None else None
        ev = t.evaluation
        if split is None or ev is None or len(ev.predicted) != len(split[1].y):
            self.gallery.set_samples(None, None, None, classes, [])
            self._evaluate_if_missing()
            return
        test = split[1]
        self.gallery.set_samples(test.x, test.y, ev, classes, gallery_order(test.y, ev.predicted, ev.confidence))

    def _evaluate_if_missing(self) -> None:
        """A trained network with its data set but no test predictions (a file or an example
        just opened: predictions are not saved): make them on a thread of their own, so the
        gallery shows the test samples with their labels at once, not after the next epoch."""
        t, split = self.session.training, self.split()
        if self.run is not None or split is None or not isinstance(t, Training) or t.progress.steps == 0:
            return
        test = split[1]
        if t.evaluation is not None and len(t.evaluation.predicted) == len(test.y):
            return
        if len(test.y) == 0 or self.mismatch() != (None, None):
            return
        net = self.session.network
        key = (net, t, test)
        if _same_objects(self._eval_key, key):
            return  # already on its way
        self._eval_key = key
        emit = _emitter(self._load_gate, self.bridge.evaluated)
        settings, classes = t.settings, list(test.classes)

        def work():
            ev = None
            try:
                from .run import evaluate, make_trainer
                tr, _ = make_trainer(copy_network(net), settings, None, classes)
                _, _, ev = evaluate(tr, test.x, test.y, len(classes))
            except Exception:  # the gallery stays empty until the next epoch; the log says why
                log.exception("predicting the test samples failed")
            emit(key, ev)

        threading.Thread(target=work, name="cnnplay-evaluate", daemon=True).start()

    def _on_evaluated(self, key, ev) -> None:
        if not _same_objects(self._eval_key, key):
            return
        self._eval_key = None
        split = self.split()
        t = self.session.training
        # Only for the state it was made from: training, an edit or another file since: dropped.
        net, t0, test = key
        if ev is None or self.run is not None or split is None or split[1] is not test \
                or not isinstance(t, Training) or t.progress is not t0.progress or t.evaluation is not None \
                or self.session.network.layer_keys() != net.layer_keys():
            return
        self.session.set_training(replace(t, evaluation=ev))

    def _sync_buttons(self) -> None:
        running = self.run is not None
        self.train_button.setEnabled(not running)
        self.step_button.setEnabled(not running)
        self.pause_button.setEnabled(running)


def _import_training() -> None:
    try:
        from ...core import training  # noqa: F401
        from ... import datasets  # noqa: F401
    except ImportError:
        pass
