"""File > Export > PyTorch / ONNX, and opening .onnx models (cnnplay.core.interop).

Reading and writing run on a short-lived worker thread (an ONNX file can hold
hundreds of MB of weights): the GUI thread only asks for the path, starts the
job and shows the result. The `onnx` package is imported on the GUI thread
before the job starts (the README's third thread rule). Every failure becomes
a message in the window, never a traceback; without `onnx` the menu items say
how to install it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog

from ..core.errors import InputError, NetworkError
from ..core.network import Network
from ..core.interop import (ONNX_INSTALL_HINT, InteropError, OnnxUnavailable, export_onnx, export_pytorch,
                            onnx_available, read_onnx)
from ..core.interop.errors import require_onnx
from ..core.interop.pytorch import training_settings
from .examples import input_for_shape
from .input_panel import image_source, load_input

log = logging.getLogger(__name__)
PYTORCH_FILTER = "Python files (*.py)"
ONNX_FILTER = "ONNX models (*.onnx)"
NO_ONNX = f"needs the optional 'onnx' package: {ONNX_INSTALL_HINT}"


class InteropActions(QObject):
    """The export menu items and ONNX opening for one MainWindow."""

    finished = Signal(int, object, object)  # job id, callback, result (from the worker thread)
    done = Signal(str)  # for tests and the status bar: what the last job did ("" after a failure)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self._job = 0
        self._opening: int | None = None  # the job reading the model the user asked for last
        self._dropped: set[int] = set()  # openings a newer one replaced
        self.finished.connect(self._on_finished)

    # -- menu ---------------------------------------------------------------------------------
    def add_menu(self, file_menu) -> None:
        menu = file_menu.addMenu("&Export")
        self.export_menu = menu
        self.pytorch_action = menu.addAction("&PyTorch (.py)...", self.export_pytorch_dialog)
        self.pytorch_action.setStatusTip("A readable PyTorch model file, with the weights beside it in an .npz")
        self.onnx_action = menu.addAction("&ONNX (.onnx)...", self.export_onnx_dialog)
        menu.aboutToShow.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        tip = ("An ONNX model (opset 17) for onnxruntime, Netron and other tools" if onnx_available()
               else f"ONNX export {NO_ONNX}")
        self.onnx_action.setStatusTip(tip)
        self.onnx_action.setToolTip(tip)
        self.onnx_action.setText("&ONNX (.onnx)..." if onnx_available() else "&ONNX (.onnx)... (needs onnx)")

    # -- exports ------------------------------------------------------------------------------
    def _exportable(self):
        net = self.window.session.network
        if net.error is not None:
            self.window.show_message(f"Not exported: fix the invalid layer first ({net.error}).")
            return None
        return net

    def _start_name(self, suffix: str) -> str:
        path = self.window.path
        return str(path.with_suffix(suffix)) if path else f"network{suffix}"

    def export_pytorch_dialog(self) -> bool:
        net = self._exportable()
        if net is None:
            return False
        path, _ = QFileDialog.getSaveFileName(self.window, "Export to PyTorch", self._start_name(".py"), PYTORCH_FILTER)
        if not path:
            return False
        training = training_settings_of(self.window.session)
        return self._start(lambda: export_pytorch(net, path, training=training),
                           lambda files: f"Exported to PyTorch: {files[0]} (weights in {files[1].name}).")

    def export_onnx_dialog(self) -> bool:
        if not self._have_onnx("ONNX export"):
            return False
        net = self._exportable()
        if net is None:
            return False
        path, _ = QFileDialog.getSaveFileName(self.window, "Export to ONNX", self._start_name(".onnx"), ONNX_FILTER)
        if not path:
            return False
        if not path.endswith(".onnx"):
            path += ".onnx"
        return self._start(lambda: export_onnx(net, path), lambda _: f"Exported to ONNX: {path}")

    # -- opening ------------------------------------------------------------------------------
    def open_onnx(self, path) -> bool:
        """Read the model off the GUI thread; then it replaces the network as one undo step.
        True when reading started."""
        if not self._have_onnx("Opening ONNX models"):
            return False
        path = Path(path)
        self.window.busy_label.setText(f"Reading {path.name}...")
        return self._start(lambda: read_with_ids(path), lambda result: self._show_model(path, result), opening=True)

    def _show_model(self, path: Path, result) -> str:
        net = result.network
        try:
            x, source, notes = input_for_model(net.input_shape, self.window.session.input_source)
        except InputError as e:
            raise InteropError(f"no input fits this network ({e})", str(path)) from None
        notes = tuple(notes)

        def do(s):
            s.replace(net, input_array=x, input_source=source, spec=net.to_dict())
            if notes:
                s.set_input_notes(notes)
            return True

        if not self.window.editor.edit(f"Open {path.name}", do):
            raise InteropError("the network could not be shown", str(path))
        self.window.path = None  # Save must not overwrite the .onnx file with a .cnnplay one
        self.window._add_recent(path)
        self.window._update_title()
        parts = [f"Opened {path.name} (ONNX): {len(net)} layers. Save as... keeps it as a .cnnplay file."]
        return " ".join(parts + list(result.notes))

    # -- jobs ---------------------------------------------------------------------------------
    def _have_onnx(self, what: str) -> bool:
        if not onnx_available():
            self.window.show_message(f"{what} {NO_ONNX}")
            return False
        try:
            require_onnx(what)  # the big import happens here, on the GUI thread
        except OnnxUnavailable as e:
            self.window.show_message(str(e))
            return False
        return True

    def _start(self, work, describe, opening: bool = False) -> bool:
        """Run work() on a worker thread; describe(result) on the GUI thread gives the message.
        Opening a model: the newest request wins (an older one's result is dropped)."""
        self._job += 1
        job = self._job
        if opening:
            if self._opening is not None:
                self._dropped.add(self._opening)
            self._opening = job

        def run():
            try:
                result = work()
            except (NetworkError, ImportError) as e:
                result = e
            except OSError as e:
                result = InteropError(f"cannot write: {e.strerror or e}")
            except Exception as e:  # a last guard: the user sees a message, the log the traceback
                log.exception("interop job failed")
                result = InteropError(f"failed unexpectedly ({type(e).__name__}: {e})")
            self.finished.emit(job, describe, result)

        threading.Thread(target=run, name="cnnplay-interop", daemon=True).start()
        return True

    def _on_finished(self, job: int, describe, result) -> None:
        if job in self._dropped:
            self._dropped.discard(job)
            return  # a newer model was asked for
        if job == self._opening:
            self._opening = None
            self.window.busy_label.setText("Ready")
        if isinstance(result, Exception):
            self.window.show_message(str(result))
            self.done.emit("")
            return
        try:
            text = describe(result)
        except (NetworkError, InputError) as e:
            self.window.show_message(str(e))
            self.done.emit("")
            return
        self.window.show_message(text, "info")
        self.done.emit(text)


def read_with_ids(path: Path):
    """read_onnx, with a layer id on every layer: the session carries parameters across
    edits by id, and would give layers without one fresh weights."""
    result = read_onnx(path)
    spec = result.network.to_dict()
    for i, layer in enumerate(spec["layers"]):
        layer["id"] = f"onnx{i}"
    net = Network.from_dict(spec, seed=result.network.seed)
    for i in range(len(net)):
        params = result.network.params(i)
        if params:
            net.set_params(i, **params)
    result.network = net
    return result


def training_settings_of(session) -> dict | None:
    """The optimizer settings of the Trainer (or settings dict) the session holds, if any
    and if readable (else the export has no train function)."""
    for name in ("trainer", "training"):
        value = getattr(session, name, None)
        if value is not None:
            try:
                return training_settings(value)
            except InteropError as e:
                log.info("exporting without a train function: %s", e)
    return None


def input_for_model(shape, current: dict):
    """(array, source, notes): an input of exactly `shape` (an imported model's weights
    fix its input size): the current image in the right colour mode, resized if needed,
    or a generated signal."""
    shape = tuple(shape)
    if len(shape) == 3 and shape[0] not in (1, 3):
        raise InputError(f"the model takes {shape[0]}-channel images; cnnplay's image inputs are gray (1 "
                         "channel) or RGB (3)")
    if len(shape) == 3:
        mode = "gray" if shape[0] == 1 else "rgb"
        src = dict(current, mode=mode, max_side=max(shape[1:])) if current.get("kind") == "image" else \
            image_source(mode=mode, max_side=max(shape[1:]), sample="camera.png")
        try:
            x, source, notes = load_input(src)
        except InputError:
            x, source, notes = input_for_shape(shape, current)
        if x.shape != shape:
            x = resize_nearest(x, shape[1:])
            notes = tuple(notes) + (f"Input resized to {shape[1]}x{shape[2]}, the size this model was made for.",)
        return x, source, notes
    return input_for_shape(shape, current)


def resize_nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (C, H, W) by nearest neighbour (pixel centres)."""
    h, w = x.shape[1:]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
    return np.ascontiguousarray(x[:, rows][:, :, cols], dtype=np.float32)
