"""The input: an image (file, dropped file or bundled sample) or a 1D signal.

`load_input(source)` turns an input-source dict (what the session and the
autosave store) into an array; the InputPanel dock edits the session's input
through the undo stack. Image and signal decoding live in cnnplay.app.imageio
and cnnplay.core.signals.

Source dicts:
  {"kind": "image", "path": ..., "sample": "camera.png" | None, "mode": "rgb"|"gray", "max_side": 256}
  {"kind": "signal", "path": ...}
  {"kind": "signal", "generate": "sine", "length": 1024, "channels": 1, "seed": 0}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from ..bundled import resource
from ..core.errors import InputError, short_repr
from .background import run_off_gui_thread
from .commands import Editor

DEFAULT_SAMPLE = "chelsea.png"
DEFAULT_MAX_SIDE = 256
MAX_SIDE = 4096  # the largest working size the panel offers
SIGNAL_KINDS = ("sine", "chirp", "steps", "noise")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}
SIGNAL_SUFFIXES = {".csv", ".npy", ".txt", ".tsv"}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.gif *.webp *.ppm *.pgm);;All files (*)"
SIGNAL_FILTER = "Signals (*.csv *.npy *.txt *.tsv);;All files (*)"


def samples() -> list[str]:
    folder = resource("images")
    try:
        return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError:
        return []


def image_source(path=None, mode: str = "rgb", max_side: int = DEFAULT_MAX_SIDE, sample: str | None = None) -> dict:
    src = {"kind": "image", "mode": mode, "max_side": int(max_side)}
    if sample:
        src["sample"] = sample
    else:
        src["path"] = os.fspath(path)
    return src


def signal_source(path=None, generate: str | None = None, length: int = 1024, channels: int = 1,
                  seed: int = 0) -> dict:
    if generate:
        return {"kind": "signal", "generate": generate, "length": int(length), "channels": int(channels),
                "seed": int(seed)}
    return {"kind": "signal", "path": os.fspath(path)}


def describe_source(source: dict) -> str:
    if source.get("kind") == "image":
        name = source.get("sample") or Path(source.get("path", "?")).name
        return f"{name} ({'grayscale' if source.get('mode') == 'gray' else 'RGB'})"
    if source.get("kind") == "signal":
        if source.get("generate"):
            return f"generated {source['generate']} signal"
        return Path(source.get("path", "?")).name
    if source.get("kind") == "dataset":
        return str(source.get("name") or "a data-set sample")
    return "input"


def source_path(source) -> str | None:
    """The file an input source would read (None: a bundled sample or a generated signal).

    A path that comes from inside a file (a .cnnplay's or an autosave's
    input_source) is never read without the user asking: callers check this
    first and offer to load it instead."""
    if not isinstance(source, dict):
        return None
    if source.get("kind") == "image" and not source.get("sample") and source.get("path"):
        return str(source["path"])
    if source.get("kind") == "signal" and not source.get("generate") and source.get("path"):
        return str(source["path"])
    return None


def load_input(source: dict) -> tuple[np.ndarray, dict, tuple[str, ...]]:
    """(array, source, notes) for an input-source dict; InputError says why not
    (also for a malformed source: a length of "abc", a list as a path, ...)."""
    try:
        return _load_input(source)
    except InputError:
        raise
    except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as e:
        raise InputError(f"the input source is invalid ({short_repr(str(e), 120)})") from None


def _int_field(source: dict, key: str, default: int) -> int:
    v = source.get(key, default)
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise InputError(f"the input source's {key} must be an integer, not {short_repr(v)}")
    return int(v)


def _load_input(source: dict) -> tuple[np.ndarray, dict, tuple[str, ...]]:
    if not isinstance(source, dict):
        raise InputError("unknown input source")
    kind = source.get("kind")
    if kind == "image":
        mode = source.get("mode") if source.get("mode") in ("rgb", "gray") else "rgb"
        max_side = source.get("max_side", DEFAULT_MAX_SIDE)
        if not isinstance(max_side, int) or isinstance(max_side, bool) or not 1 <= max_side <= MAX_SIDE:
            max_side = DEFAULT_MAX_SIDE
        if source.get("sample"):
            path = resource("images", os.path.basename(str(source["sample"])))
        elif source.get("path"):
            path = Path(str(source["path"]))
        else:
            raise InputError("the image source names no file")
        from .imageio import load_image
        img = load_image(path, mode=mode, max_side=max_side)
        src = dict(source, mode=mode, max_side=max_side)
        return np.asarray(img.array, np.float32), src, tuple(getattr(img, "notes", ()) or ())
    if kind == "signal":
        from ..core import signals
        if source.get("generate"):
            params = {k: v for k, v in source.items() if k not in ("kind", "generate", "length", "channels", "seed")}
            result = signals.generate_signal(source["generate"], _int_field(source, "length", 1024),
                                             channels=_int_field(source, "channels", 1),
                                             seed=_int_field(source, "seed", 0), **params)
        elif source.get("path"):
            result = signals.load_signal(str(source["path"]))
        else:
            raise InputError("the signal source names no file")
        array = getattr(result, "array", result)
        notes = tuple(getattr(result, "notes", ()) or ())
        array = np.asarray(array, np.float32)
        if array.ndim == 1:
            array = array[None, :]
        return array, dict(source), notes
    if kind == "dataset":
        return dataset_sample(source)
    raise InputError(f"unknown input kind {short_repr(kind)}")


def dataset_source(reference: dict | None, index: int, name: str, split: dict | None = None) -> dict:
    """The source of an input that is sample `index` of a data set (of its test part when
    `split` = {"test_fraction", "seed"} is given)."""
    src = {"kind": "dataset", "reference": reference, "index": int(index), "name": name}
    if split is not None:
        src["split"] = dict(split)
    return src


def dataset_sample(source: dict) -> tuple[np.ndarray, dict, tuple[str, ...]]:
    """A data-set sample again from its source: only built-in data sets are made again
    (a folder or file is read again only when the user asks)."""
    ref = source.get("reference")
    if not isinstance(ref, dict) or "builtin" not in ref:
        raise InputError("the sample came from a data set that is not built in; load the data set again "
                         "in the Train panel")
    try:
        from ..datasets import from_reference
        ds = from_reference(ref)
        split = source.get("split")
        if isinstance(split, dict):
            ds = ds.split(split.get("test_fraction", 0.2), split.get("seed", 0))[1]
    except (ImportError, ValueError, TypeError) as e:
        raise InputError(f"the data set of this sample cannot be made ({e})") from None
    i = source.get("index")
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(ds):
        raise InputError(f"the data set has no sample {i!r}")
    return np.array(ds.x[i], np.float32), dict(source), ()


def source_for_file(path: str | os.PathLike, current: dict | None = None) -> dict:
    """The source for a file the user opened or dropped: signal by suffix, else an image
    with the current colour mode and working size."""
    current = current or {}
    if Path(path).suffix.lower() in SIGNAL_SUFFIXES:
        return signal_source(path)
    mode = current.get("mode", "rgb") if current.get("kind") == "image" else "rgb"
    max_side = current.get("max_side", DEFAULT_MAX_SIDE) if current.get("kind") == "image" else DEFAULT_MAX_SIDE
    return image_source(path, mode, max_side)


def set_input_from(editor: Editor, source: dict, text: str = "Change input") -> bool:
    """Load `source` and make it the session's input as one undo step; False (and a
    message through editor.failed) if it cannot be loaded. The file is read and
    decoded off the GUI thread (app.background), which keeps running meanwhile."""
    from . import imageio  # noqa: F401 (imported here, on the GUI thread, before the worker uses it)
    try:
        x, src, notes = run_off_gui_thread(lambda: load_input(source), f"Opening {describe_source(source)}")
    except InputError as e:
        editor.failed.emit(str(e))
        return False
    return bool(editor.edit(text, lambda s: s.set_input(x, src, notes) or True))


class SampleCombo(QComboBox):
    """The bundled photos, each with a thumbnail, read when first seen (the current item,
    or the list when it opens): decoding all of them took 45 ms of every start."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setIconSize(QSize(28, 28))
        self.addItem("Bundled sample...", None)
        for name in samples():
            self.addItem(Path(name).stem, name)
        self._read: set[int] = set()
        self.currentIndexChanged.connect(self._thumbnail)

    def _thumbnail(self, index: int) -> None:
        name = self.itemData(index)
        if not name or index in self._read:
            return
        self._read.add(index)
        pix = QPixmap(str(resource("images", name)))
        if not pix.isNull():
            self.setItemIcon(index, QIcon(pix.scaled(28, 28, Qt.AspectRatioMode.KeepAspectRatio,
                                                     Qt.TransformationMode.SmoothTransformation)))

    def showPopup(self) -> None:
        for i in range(self.count()):
            self._thumbnail(i)
        super().showPopup()


class InputPanel(QWidget):
    """Dock content: pick the image or signal the network sees."""

    message = Signal(str)

    def __init__(self, editor: Editor, parent: QWidget | None = None):
        super().__init__(parent)
        self.editor = editor
        self.session = editor.session
        self._updating = False

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setObjectName("inputSummary")
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: palette(mid);")

        # Image ---------------------------------------------------------------
        image_box = QGroupBox("Image")
        self.sample_combo = SampleCombo()
        self.sample_combo.setToolTip("A bundled photo to use as the input")
        self.sample_combo.activated.connect(self._on_sample)
        self.open_button = QPushButton("Open image...")
        self.open_button.setToolTip("Open an image file (PNG, JPEG, BMP, TIFF, ...). You can also drop one on the window.")
        self.open_button.clicked.connect(self.open_image_dialog)
        self.gray_radio = QRadioButton("Gray")
        self.rgb_radio = QRadioButton("RGB")
        self.gray_radio.setToolTip("One input channel: the image's luminance.")
        self.rgb_radio.setToolTip("Three input channels: red, green and blue.")
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.gray_radio)
        self.mode_group.addButton(self.rgb_radio)
        self.gray_radio.toggled.connect(self._on_mode)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(8, MAX_SIDE)
        self.size_spin.setSingleStep(32)
        self.size_spin.setSuffix(" px")
        self.size_spin.setKeyboardTracking(False)
        self.size_spin.setToolTip("Larger images are scaled down so that their longest side is at most this.")
        self.size_spin.valueChanged.connect(self._on_size)
        # The dock is a narrow column: one control a row, labels above their fields
        # when the column is too narrow for both side by side (nothing cut off).
        self.sample_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sample_combo.setMinimumContentsLength(8)
        modes = QHBoxLayout()
        modes.addWidget(self.gray_radio)
        modes.addWidget(self.rgb_radio)
        modes.addStretch(1)
        form = QFormLayout(image_box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow(self.sample_combo)
        form.addRow(self.open_button)
        form.addRow("Colour", modes)
        form.addRow("Longest side", self.size_spin)

        # Signal ---------------------------------------------------------------
        signal_box = QGroupBox("1D signal")
        self.signal_open = QPushButton("Open CSV/NPY...")
        self.signal_open.setToolTip("Open a 1D signal: a CSV (one column per channel) or a .npy array (C, L) or (L,)")
        self.signal_open.clicked.connect(self.open_signal_dialog)
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(SIGNAL_KINDS)
        self.kind_combo.setToolTip("The kind of 1D signal to generate")
        self.length_spin = QSpinBox()
        self.length_spin.setRange(8, 1 << 20)
        self.length_spin.setValue(1024)
        self.channels_spin = QSpinBox()
        self.channels_spin.setRange(1, 256)
        self.length_spin.setToolTip("Samples per channel of the generated signal")
        self.channels_spin.setToolTip("Channels of the generated signal")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Make this signal the input (the network then needs 1D layers)")
        self.generate_button.clicked.connect(self.generate_from_form)
        sform = QFormLayout(signal_box)
        sform.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        sform.addRow(self.signal_open)
        sform.addRow("Kind", self.kind_combo)
        sform.addRow("Length", self.length_spin)
        sform.addRow("Channels", self.channels_spin)
        sform.addRow(self.generate_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.summary)
        layout.addWidget(image_box)
        layout.addWidget(signal_box)
        layout.addWidget(self.notes)
        layout.addStretch(1)

        self.session.input_changed.connect(self.refresh)
        self.refresh()

    # -- reading the session ---------------------------------------------------------
    def refresh(self) -> None:
        self._updating = True
        try:
            src = self.session.input_source
            shape = self.session.input_array.shape
            dims = " x ".join(str(n) for n in shape)
            self.summary.setText(f"<b>{describe_source(src)}</b><br>{dims}")
            is_image = src.get("kind") == "image" or len(shape) == 3
            (self.gray_radio if src.get("mode") == "gray" else self.rgb_radio).setChecked(True)
            self.gray_radio.setEnabled(is_image and src.get("kind") == "image")
            self.rgb_radio.setEnabled(is_image and src.get("kind") == "image")
            self.size_spin.setEnabled(src.get("kind") == "image")
            self.size_spin.setValue(int(src.get("max_side", DEFAULT_MAX_SIDE)))
            i = self.sample_combo.findData(src.get("sample")) if src.get("sample") else 0
            self.sample_combo.setCurrentIndex(max(i, 0))
            if src.get("kind") == "signal" and src.get("generate") in SIGNAL_KINDS:
                self.kind_combo.setCurrentText(src["generate"])
                self.length_spin.setValue(int(src.get("length", 1024)))
                self.channels_spin.setValue(int(src.get("channels", 1)))
            notes = self.session.input_notes
            self.notes.setText("\n".join(notes))
            self.notes.setVisible(bool(notes))
        finally:
            self._updating = False

    # -- actions -----------------------------------------------------------------------
    def _current_image_settings(self) -> tuple[str, int]:
        src = self.session.input_source
        if src.get("kind") == "image":
            return src.get("mode", "rgb"), int(src.get("max_side", DEFAULT_MAX_SIDE))
        return ("gray" if self.gray_radio.isChecked() else "rgb"), self.size_spin.value()

    def set_sample(self, name: str) -> bool:
        mode, max_side = self._current_image_settings()
        return set_input_from(self.editor, image_source(mode=mode, max_side=max_side, sample=name),
                              f"Input: {Path(name).stem}")

    def load_file(self, path: str | os.PathLike) -> bool:
        src = source_for_file(path, self.session.input_source)
        return set_input_from(self.editor, src, f"Input: {Path(path).name}")

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self.load_file(path)

    def open_signal_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open 1D signal", "", SIGNAL_FILTER)
        if path:
            set_input_from(self.editor, signal_source(path), f"Input: {Path(path).name}")

    def generate(self, kind: str, length: int = 1024, channels: int = 1, seed: int = 0) -> bool:
        return set_input_from(self.editor, signal_source(generate=kind, length=length, channels=channels,
                                                         seed=seed), f"Input: {kind} signal")

    def generate_from_form(self) -> None:
        self.generate(self.kind_combo.currentText(), self.length_spin.value(), self.channels_spin.value())

    def set_mode(self, mode: str) -> bool:
        src = self.session.input_source
        if src.get("kind") != "image" or src.get("mode") == mode:
            return False
        return set_input_from(self.editor, dict(src, mode=mode), "Grayscale input" if mode == "gray" else "RGB input")

    def set_max_side(self, n: int) -> bool:
        src = self.session.input_source
        if src.get("kind") != "image" or src.get("max_side") == n:
            return False
        return set_input_from(self.editor, dict(src, max_side=int(n)), f"Working size {n}")

    def _on_sample(self, index: int) -> None:
        name = self.sample_combo.itemData(index)
        if name and not self._updating:
            self.set_sample(name)

    def _on_mode(self, gray: bool) -> None:
        if not self._updating:
            if not self.set_mode("gray" if gray else "rgb"):
                self.refresh()

    def _on_size(self, n: int) -> None:
        if not self._updating:
            self.set_max_side(n)

