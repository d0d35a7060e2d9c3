"""The main window: menus, docks (palette, layer stack, input, inspector), the
central feature-map area, the status bar and file drops.

The window holds no network state: the Session is the model, every edit goes
through the Editor (QUndoStack), and every forward pass through the
ComputeController / ComputeWorker.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QAbstractSpinBox, QApplication, QComboBox, QDockWidget, QFileDialog, QFrame,
                               QHBoxLayout, QLabel, QLineEdit, QMainWindow, QMessageBox, QPlainTextEdit,
                               QPushButton, QScrollArea, QSizePolicy, QStyle, QTabWidget, QTextEdit,
                               QVBoxLayout, QWidget)

from ..core.errors import InputError, NetworkError
from ..core.fileformat import load_keeping_network, save_network
from ..core.session import Session, dataset_info
from . import background, paths
from .autosave import clean_stale_temp
from .background import run_off_gui_thread
from .commands import Editor
from .controller import CANCELLED, ComputeController
from .examples import apply_example, example_paths, input_for_shape, read_example
from .input_panel import (IMAGE_SUFFIXES, SIGNAL_SUFFIXES, InputPanel, set_input_from, signal_source,
                          source_path)
from .inspector import Inspector
from .layer_stack import LayerStack, needs_fix_text
from .palette import Palette
from .projector import Projector
from .shortcuts import UndoEverywhere, shortcuts_html

log = logging.getLogger(__name__)
FILE_FILTER = "cnnplay networks (*.cnnplay);;All files (*)"
OPEN_FILTER = "Networks (*.cnnplay *.onnx);;cnnplay networks (*.cnnplay);;ONNX models (*.onnx);;All files (*)"
MAX_RECENT = 8
# The dock layout saved on close is restored only if it has this version: a layout
# saved before the docks were rearranged (version 0: nine tabs in the right-hand
# column, their titles cut to "Ke...") gives way to the current default.
LAYOUT_VERSION = 1


class MessageBanner(QFrame):
    """A non-modal message strip at the top of the central area (dismissable)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("messageBanner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QPushButton("\u2715")
        close.setFlat(True)
        close.setFixedSize(QSize(22, 22))
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        self.action_button = QPushButton()
        self.action_button.setToolTip("Do what the message offers")
        self.action_button.hide()
        self.action_button.clicked.connect(self._run_action)
        self._action = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def set_action(self, label: str | None, callback=None) -> None:
        """A button beside the message (e.g. "Load cat.png"); None removes it."""
        self._action = callback if label else None
        self.action_button.setText(label or "")
        self.action_button.setVisible(bool(label))

    def _run_action(self) -> None:
        callback, self._action = self._action, None
        self.set_action(None)
        self.hide()
        if callback is not None:
            callback()

    def show_message(self, text: str, kind: str = "error") -> None:
        colors = {"error": ("#fdecea", "#c0392b"), "warning": ("#fff4e0", "#b9770e"), "info": ("#e8f1fb", "#2e6da4")}
        bg, fg = colors.get(kind, colors["info"])
        self.setStyleSheet(f"#messageBanner {{ background: {bg}; border-bottom: 1px solid {fg}; }}"
                           f" QLabel {{ color: {fg}; }}")
        self.label.setText(text)
        self.show()


class CentralPlaceholder(QLabel):
    """Stands in for the feature-map views until cnnplay.app.views.MapsPanel exists."""

    def __init__(self, session: Session, controller: ComputeController, parent=None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("color: gray; font-size: 14pt;")
        self.setText("Feature maps appear here")


class MainWindow(QMainWindow):
    message = Signal(str)  # for tests: every user-facing message

    def __init__(self, session: Session, controller: ComputeController, autosaver=None,
                 messages: list[str] | None = None, first_start: bool = False, parent=None):
        super().__init__(parent)
        self.session = session
        self.controller = controller
        self.worker = controller.worker
        self.autosaver = autosaver
        self.editor = Editor(session, parent=self)
        self.undo_stack = self.editor.stack
        self.path: Path | None = None
        self.settings = paths.settings()
        self._preparing = first_start
        self.setWindowTitle("cnnplay")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        # The right-hand column is narrow and its tabs many (concept panels, Train):
        # their tabs stand on its outer edge, titles running down, each one whole.
        self.setTabPosition(Qt.DockWidgetArea.RightDockWidgetArea, QTabWidget.TabPosition.East)

        # Docks -------------------------------------------------------------------------
        self.palette = Palette()
        self.stack = LayerStack(self.editor)
        self.inspector = Inspector(self.editor)
        self.input_panel = InputPanel(self.editor)
        self.palette.activated_type.connect(self.stack.view.add_type)
        self.palette_dock = self.add_dock(self.palette, "Layers", Qt.DockWidgetArea.LeftDockWidgetArea, "palette")
        self.stack_dock = self.add_dock(self.stack, "Network", Qt.DockWidgetArea.LeftDockWidgetArea, "stack")
        self.splitDockWidget(self.palette_dock, self.stack_dock, Qt.Orientation.Horizontal)
        self.input_dock = self.add_dock(_scrolling(self.input_panel, sideways=False), "Input",
                                        Qt.DockWidgetArea.LeftDockWidgetArea, "input")
        self.splitDockWidget(self.palette_dock, self.input_dock, Qt.Orientation.Vertical)
        self.inspector_dock = self.add_dock(self.inspector, "Layer settings", Qt.DockWidgetArea.RightDockWidgetArea,
                                            "inspector")
        # A unit readout (issue 6) goes below the inspector: add_dock(widget, "Unit", Right...).

        # Central area --------------------------------------------------------------------
        self.banner = MessageBanner()
        self.central = self._create_central_widget()
        host = QWidget()
        lay = QVBoxLayout(host)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.central, 1)
        self.setCentralWidget(host)
        if hasattr(self.central, "install_docks"):  # issue 6: the unit readout docks under the inspector
            self.central.install_docks(self)

        self._build_status_bar()
        self._build_menus()
        # Concept panels (issue 9): tabified docks under the inspector. Under the maps:
        # Training results, the microscope and Lessons, tabs in the wide bottom area.
        from .concepts.docks import add_concept_docks
        self.concept_docks = add_concept_docks(self)
        # Training (issue 13): a "Train" tab beside the concept tabs.
        from .train import add_train_dock
        self.train_dock = add_train_dock(self)
        from .microscope import add_microscope_docks  # issue 15: the neuron microscope
        add_microscope_docks(self)
        from .lessons import add_lessons
        add_lessons(self)

        # Wiring --------------------------------------------------------------------------
        self.editor.failed.connect(lambda m: self.show_message(m, "error"))
        self.controller.message.connect(self._on_compute_message)
        self.controller.failed.connect(self._on_compute_failed)
        self.controller.forward_changed.connect(self._on_forward_changed)
        self.controller.cancellable_changed.connect(self._on_cancellable)
        background.add_listener(self._on_opening)
        self.destroyed.connect(lambda *_, cb=self._on_opening: background.remove_listener(cb))
        self.controller.error_changed.connect(self.stack.refresh_rows)
        self.stack.show_compute_errors(self.controller.compute_error)
        self.undo_everywhere = UndoEverywhere(self)  # Ctrl+Z reaches the network wherever the focus is
        self.undo_stack.cleanChanged.connect(self._update_title)
        self.undo_stack.indexChanged.connect(self._update_title)
        if autosaver is not None:
            autosaver.failed.connect(lambda m: self.show_message(m, "warning"))
        self._initial_size()
        self._update_title()
        if first_start:  # the numba kernels compile in the background; numpy computes meanwhile
            self.busy_label.setText("Compiling compute kernels (first start only)...")
            self.show_message(KERNELS_MESSAGE, "info")
            self._kernel_timer = QTimer(self)
            self._kernel_timer.timeout.connect(self._poll_kernels)
            self._kernel_timer.start(500)
        for m in messages or []:
            self.show_message(m, "warning")
        self._on_forward_changed()

    def _initial_size(self) -> None:
        screen = self.screen()
        avail = screen.availableGeometry() if screen is not None else None
        if avail is None or avail.width() < 400:
            self.resize(*default_size(None))
        else:
            self.resize(*default_size((avail.width(), avail.height())))
            self.move(avail.center() - self.rect().center())
        # Narrow side columns so the feature maps get the room (after all docks exist).
        QTimer.singleShot(0, self._size_docks)

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if not getattr(self, "_docks_sized", False):
            self._docks_sized = True  # once shown, at its real size: the side columns again
            QTimer.singleShot(0, self._size_docks)

    def _size_docks(self) -> None:
        # The feature maps get the room: side columns as narrow as their content allows
        # (a little wider on a large screen).
        w = self.width()
        sizes = [200, 300, 340] if w >= 1800 else [185, 265, 300] if w >= 1500 else [185, 225, 270]
        self.resizeDocks([self.palette_dock, self.stack_dock, self.inspector_dock], sizes, Qt.Orientation.Horizontal)
        left = [self.palette_dock, self.input_dock]
        unit = getattr(getattr(self.central, "unit_dock", None), "isVisible", lambda: False)()
        self.resizeDocks(left + ([self.central.unit_dock] if unit else []), [385, 300, 140][:len(left) + unit],
                         Qt.Orientation.Vertical)
        concept = next(iter(getattr(self, "concept_docks", {}).values()), None)
        if concept is not None:
            self.resizeDocks([self.inspector_dock, concept], [330, 560], Qt.Orientation.Vertical)
        results = getattr(self, "train_results_dock", None)
        if results is not None:  # the tabs under the maps: the maps keep most of the height
            self.resizeDocks([results], [min(240, max(self.height() // 4, 160))], Qt.Orientation.Vertical)

    # === Central area: the feature-map views (issue 6) ===================================
    # The ONE place where the central widget is created. The views engineer replaces
    # the placeholder by exposing cnnplay.app.views.MapsPanel(session, controller).
    def _create_central_widget(self) -> QWidget:
        try:
            from .views import MapsPanel
        except ImportError:
            MapsPanel = CentralPlaceholder
        return MapsPanel(self.session, self.controller)

    def dock_titled(self, title: str) -> QDockWidget | None:
        """The dock whose tab reads `title` (lessons name the panel they need this way)."""
        for dock in self.findChildren(QDockWidget):
            if dock.windowTitle() == title:
                return dock
        return None

    def tabifyDockWidget(self, first: QDockWidget, second: QDockWidget) -> None:
        """QMainWindow's, without its stray tab bar (see tabify_docks)."""
        tabify_docks(self, first, second, super().tabifyDockWidget)

    def add_dock(self, widget: QWidget, title: str, area=Qt.DockWidgetArea.RightDockWidgetArea,
                 name: str | None = None) -> QDockWidget:
        """Add a dock (other engineers: one line, e.g. window.add_dock(UnitReadout(...), "Unit"))."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{name or title}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        if hasattr(self, "view_menu"):
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    # -- status bar and messages ------------------------------------------------------------
    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.busy_label = QLabel("Ready")
        self.busy_label.setMinimumWidth(260)
        self.time_label = QLabel("")
        self.time_label.setToolTip("Compute time of the last update (only changed layers are recomputed)")
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelCompute")
        self.cancel_button.setToolTip("Stop computing at the next layer (Esc). The layers already "
                                      "computed stay; any edit or Compute computes the rest.")
        self.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_compute)
        self.resume_button = QPushButton("Compute")
        self.resume_button.setObjectName("resumeCompute")
        self.resume_button.setToolTip("Compute the layers that the cancel left out")
        self.resume_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.resume_button.clicked.connect(self.controller.resume)
        self.resume_button.hide()
        sb.addWidget(self.error_label, 1)
        sb.addPermanentWidget(self.busy_label)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.resume_button)
        sb.addPermanentWidget(self.time_label)

    # -- cancelling a long compute ------------------------------------------------------------
    def cancel_compute(self) -> bool:
        """The Cancel button and Esc: stop a file being opened, else the forward pass
        at the next layer boundary."""
        if background.cancel("cancelled"):
            return True
        return self.controller.cancel()

    def _on_cancellable(self, on: bool) -> None:
        self.cancel_button.setEnabled(on or background.busy())

    def _on_opening(self, text: str | None) -> None:
        """A file is being read off the GUI thread (app.background): say so, offer Cancel."""
        if text:
            self.busy_label.setText(f"{text}... (Esc to cancel)")
            self.cancel_button.setEnabled(True)
        else:
            self.cancel_button.setEnabled(self.controller.cancellable)
            self.busy_label.setText("Ready" if self.controller.forward_is_current() else self.busy_label.text())

    def event(self, event) -> bool:
        # Esc cancels a long compute, unless the focus is in a text field (Esc is theirs
        # there). A ShortcutOverride no child took climbs up to the window; taking it
        # here comes before any shortcut (e.g. the maps' Esc that clears the selection).
        if (event.type() == QEvent.Type.ShortcutOverride and (self.controller.cancellable or background.busy())
                and event.key() == Qt.Key.Key_Escape and event.modifiers() == Qt.KeyboardModifier.NoModifier
                and not _is_text_field(QApplication.focusWidget())):
            self.cancel_compute()
            event.accept()
            return True
        return super().event(event)

    def show_message(self, text: str, kind: str = "error") -> None:
        """Non-modal: a banner over the maps, plus the status bar. Never a dialog, never a traceback."""
        log.info("message (%s): %s", kind, text)
        self.banner.set_action(None)
        self.banner.show_message(text, kind)
        self.error_label.setText(text if kind != "info" else "")
        self.message.emit(text)

    def _on_compute_message(self, text: str) -> None:
        if text.startswith("computed"):
            return  # shown as the last compute time
        self.busy_label.setText(text)

    def _on_compute_failed(self, text: str) -> None:
        if text == CANCELLED:
            self.busy_label.setText(self.controller.cancelled_text())
            self.resume_button.setVisible(self.controller.forward_cancelled())
            return
        self.busy_label.setText("Ready")
        self.show_message(f"Computing failed: {text}", "error")

    def _on_forward_changed(self) -> None:
        f = self.controller.forward
        if f is not None:
            self.time_label.setText(update_text(f.first_recomputed, len(f.outputs), f.seconds))
        if self.controller.forward_is_current() and not self._preparing:
            self.busy_label.setText("Ready")
        self.resume_button.setVisible(self.controller.forward_cancelled())
        err = self.session.error
        if err is not None:
            self.error_label.setText(needs_fix_text(self.session))
        elif not self.banner.isVisible():
            self.error_label.setText("")

    def _poll_kernels(self) -> None:
        """First start: show how far the background compile is; when it ends, say so."""
        if kernels_compiling():
            done, total = kernel_progress() or (0, 0)
            self.busy_label.setText(f"Compiling compute kernels ({done}/{total or '?'}), first start only...")
            return
        self._kernel_timer.stop()
        self._preparing = False
        if self.banner.label.text() == KERNELS_MESSAGE:
            self.banner.hide()
        self._on_forward_changed()

    def _update_title(self, *args) -> None:
        name = self.path.name if self.path else "untitled"
        star = "" if self.undo_stack.isClean() else " *"
        self.setWindowTitle(f"{name}{star} \u2014 cnnplay")

    # -- menus ---------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        mb = self.menuBar()
        file_menu = mb.addMenu("&File")
        self.new_action = file_menu.addAction("&New network", self.new_network, QKeySequence.StandardKey.New)
        self.open_action = file_menu.addAction("&Open...", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.examples_menu = file_menu.addMenu("&Examples")
        for p in example_paths():
            try:
                ex = read_example(p)
            except NetworkError:
                continue
            act = self.examples_menu.addAction(ex.title, lambda path=p: self.open_example(path))
            act.setToolTip(ex.description)
            act.setStatusTip(ex.description)
        self.examples_menu.setToolTipsVisible(True)
        file_menu.addSeparator()
        self.save_action = file_menu.addAction("&Save", self.save, QKeySequence.StandardKey.Save)
        self.save_as_action = file_menu.addAction("Save &as...", self.save_as, QKeySequence.StandardKey.SaveAs)
        from .interop_menu import InteropActions
        self.interop = InteropActions(self)  # File > Export, and .onnx in File > Open
        self.interop.add_menu(file_menu)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit", self.close, QKeySequence.StandardKey.Quit)
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)

        edit = mb.addMenu("&Edit")
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit.addAction(self.undo_action)
        edit.addAction(self.redo_action)
        edit.addSeparator()
        v = self.stack.view
        for a in (v.duplicate_action, v.up_action, v.down_action, v.delete_action):
            edit.addAction(a)

        inp = mb.addMenu("&Input")
        inp.addAction("Open &image...", self.input_panel.open_image_dialog, QKeySequence("Ctrl+I"))
        samples_menu = inp.addMenu("&Sample images")
        from .input_panel import samples
        for name in samples():
            samples_menu.addAction(Path(name).stem, lambda n=name: self.input_panel.set_sample(n))
        inp.addSeparator()
        group = QActionGroup(self)
        self.gray_action = inp.addAction("&Grayscale", lambda: self.input_panel.set_mode("gray"))
        self.rgb_action = inp.addAction("&RGB", lambda: self.input_panel.set_mode("rgb"))
        for a in (self.gray_action, self.rgb_action):
            a.setCheckable(True)
            group.addAction(a)
        inp.aboutToShow.connect(self._sync_input_menu)
        inp.addSeparator()
        inp.addAction("Open 1D &signal (CSV/NPY)...", self.input_panel.open_signal_dialog)
        gen = inp.addMenu("&Generate 1D signal")
        for kind in ("sine", "chirp", "steps", "noise"):
            gen.addAction(kind.capitalize(), lambda k=kind: self.input_panel.generate(
                k, self.input_panel.length_spin.value(), self.input_panel.channels_spin.value()))

        self.view_menu = mb.addMenu("&View")
        self._build_view_menu(self.view_menu)

        help_menu = self.help_menu = mb.addMenu("&Help")
        keys = help_menu.addAction("&Keyboard shortcuts", self.show_shortcuts, QKeySequence("F1"))
        keys.setToolTip("Every key and mouse shortcut of cnnplay")
        help_menu.addAction("&About cnnplay", self.about)
        help_menu.addAction("Show &log folder", lambda: self.show_message(
            f"Log file: {paths.log_path()}", "info"))

    def _build_view_menu(self, menu) -> None:
        """Map size (zoom), the projector preset, then the docks (added as they come)."""
        for name in ("zoom_in_action", "zoom_out_action", "zoom_reset_action"):
            act = getattr(self.central, name, None)
            if act is not None:
                menu.addAction(act)
        self.projector = Projector(self.session)
        self.projector_action = menu.addAction("&Projector (large text and maps)")
        self.projector_action.setCheckable(True)
        self.projector_action.setShortcut(QKeySequence("Ctrl+Shift+P"))
        self.projector_action.setToolTip("Larger text everywhere and larger map tiles, for a projected screen")
        self.projector_action.toggled.connect(self.projector.set)
        menu.addSeparator()
        for d in (self.palette_dock, self.stack_dock, self.input_dock, self.inspector_dock):
            menu.addAction(d.toggleViewAction())

    def show_shortcuts(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", shortcuts_html(self.menuBar()),
                          QMessageBox.StandardButton.Close, self)
        box.setObjectName("shortcutsDialog")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()
        self.shortcuts_box = box
        return box

    def _sync_input_menu(self) -> None:
        src = self.session.input_source
        is_image = src.get("kind") == "image"
        for a in (self.gray_action, self.rgb_action):
            a.setEnabled(is_image)
        (self.gray_action if src.get("mode") == "gray" else self.rgb_action).setChecked(True)

    def about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About cnnplay",
                          "<b>cnnplay</b><br>A desktop playground for convolutional neural networks: "
                          "build a network by dragging layers, run it live on your own image or signal, "
                          "see every feature map and every receptive field.", QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.show()

    # -- files -----------------------------------------------------------------------------------
    def new_network(self) -> None:
        spec = {"input": list(self.session.input_array.shape), "layers": []}
        self.editor.edit("New network", lambda s: s.set_spec(spec))
        self.path = None
        self.banner.hide()  # the previous example's (or file's) message is about a network that is gone
        self.error_label.setText("")
        self._update_title()

    def open_dialog(self) -> None:
        start = str(self.path.parent) if self.path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open network", start, OPEN_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str | os.PathLike) -> bool:
        """Load a .cnnplay file as one undo step; the input follows the file's input shape.
        An .onnx file is read off the GUI thread and shown when read (see interop_menu)."""
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            return self.interop.open_onnx(path)
        current_shape, current_source = self.session.input_array.shape, self.session.input_source
        from .train.state import restored_training

        def read():  # off the GUI thread: the file, then an input that fits it
            # A training state that does not fit the network costs only itself (said below).
            net, extra, trainer, problem = load_keeping_network(path)
            training, said = restored_training(extra, trainer, net, problem, lead=f"{path.name} is open")
            shape = tuple(net.input_shape)
            wanted = extra.get("input_source") if isinstance(extra, dict) else None
            wanted = wanted if isinstance(wanted, dict) else None
            offer = None
            if wanted is not None and source_path(wanted) is not None:
                offer, wanted = wanted, None  # a path from inside the file: never read unasked
            trained = isinstance(extra, dict) and isinstance(extra.get("training"), dict)
            loaded = (None, None, ())
            # A trained network keeps its exact input shape (a new size would reset its classifier).
            if (tuple(current_shape[:1]) != shape[:1] or len(shape) != len(current_shape)
                    or trained and tuple(current_shape) != shape):
                try:
                    loaded = input_for_shape(shape, current_source, preferred=wanted)
                except InputError as e:
                    raise InputError(f"{path.name}: no input fits this network ({e})") from None
            return net, extra, training, said, offer, loaded

        from . import imageio  # noqa: F401 (imported on the GUI thread before the worker needs it)
        try:
            net, extra, training, said, offer, (x, source, notes) = run_off_gui_thread(read, f"Opening {path.name}")
        except (NetworkError, InputError) as e:
            self.show_message(str(e))
            return False
        spec = extra.get("spec") if isinstance(extra, dict) and isinstance(extra.get("spec"), dict) else net.to_dict()

        def do(s: Session):
            s.replace(net, input_array=x, input_source=source, spec=spec)
            if notes:
                s.set_input_notes(notes)
            s.set_training(training)
            return True

        if not self.editor.edit(f"Open {path.name}", do):
            return False
        reference, classes = dataset_info(extra)
        if reference is not None or classes is not None:
            self.session.set_dataset_reference(reference, classes)
        self.path = path
        self.undo_stack.setClean()
        self._add_recent(path)
        self._update_title()
        if offer is not None and offer != self.session.input_source:
            self.offer_input(offer, (f"{said} " if said else "") + f"{path.name} was saved with another input.")
        elif said:
            self.show_message(said, "warning")
        return True

    def offer_input(self, source: dict, why: str) -> None:
        """A message with a button to load an input that a file named: a path from
        inside a file is read only when the user asks."""
        name = Path(source_path(source) or "input").name
        self.show_message(f"{why} Its input, the file {name}, was not opened: load it if you trust it "
                          f"({source_path(source)}).", "info")
        self.banner.set_action(f"Load {name}", lambda: set_input_from(self.editor, source, f"Input: {name}"))

    def open_example(self, path: str | os.PathLike) -> bool:
        current = self.session.input_source

        def read():
            ex = read_example(path)
            return (ex,) + tuple(input_for_shape(ex.spec["input"], current, preferred=ex.source))

        from . import imageio  # noqa: F401 (imported on the GUI thread before the worker needs it)
        try:
            ex, x, source, notes = run_off_gui_thread(read, f"Opening the example {Path(path).stem}")
        except (NetworkError, InputError) as e:
            self.show_message(str(e))
            return False
        ok = self.editor.edit(f"Example: {ex.title}", lambda s: apply_example(s, ex, x, source, notes) or True)
        if ok:
            self.path = None
            self._update_title()
            self.show_message(f"{ex.title}: {ex.description}", "info")
        return bool(ok)

    def save(self) -> bool:
        if self.path is None:
            return self.save_as()
        return self.save_to(self.path)

    def save_as(self) -> bool:
        start = str(self.path) if self.path else "network.cnnplay"
        path, _ = QFileDialog.getSaveFileName(self, "Save network", start, FILE_FILTER)
        if not path:
            return False
        if not path.endswith(".cnnplay"):
            path += ".cnnplay"
        return self.save_to(path)

    def save_to(self, path: str | os.PathLike) -> bool:
        """Save atomically; on failure say so (the previous file stays intact) and keep
        the unsaved mark."""
        path = Path(path)
        extra = self.session.extra()
        clean_stale_temp(path)  # left by a save that was killed midway
        try:
            from .train.state import trainer_state
            save_network(self.session.network, path, extra=extra, training=trainer_state(self.session.training))
        except NetworkError as e:
            self.show_message(f"Not saved: {e}. The previous file is unchanged.")
            return False
        self.path = path
        self.undo_stack.setClean()
        self._add_recent(path)
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def recent_files(self) -> list[str]:
        v = self.settings.value("recent_files", [])
        if isinstance(v, str):
            v = [v]
        return [str(p) for p in (v or [])]

    def _add_recent(self, path: Path) -> None:
        p = str(Path(path).resolve())
        files = [p] + [f for f in self.recent_files() if f != p]
        self.settings.setValue("recent_files", files[:MAX_RECENT])
        self.settings.sync()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        for f in files:
            act = self.recent_menu.addAction(Path(f).name, lambda p=f: self.open_file(p))
            act.setToolTip(f)
            act.setEnabled(os.path.exists(f))
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", lambda: self.settings.setValue("recent_files", []))

    # -- dropping files on the window ---------------------------------------------------------------
    def _dropped_path(self, mime) -> str | None:
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                return url.toLocalFile()
        return None

    def dragEnterEvent(self, event) -> None:
        if self._dropped_path(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if self._dropped_path(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        path = self._dropped_path(event.mimeData())
        if not path:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_any(path)

    def open_any(self, path: str) -> bool:
        """A file from a drop or the command line: a network, a signal or an image."""
        suffix = Path(path).suffix.lower()
        if suffix in (".cnnplay", ".onnx"):
            return self.open_file(path)
        if suffix in SIGNAL_SUFFIXES:
            return set_input_from(self.editor, signal_source(path), f"Input: {Path(path).name}")
        if suffix not in IMAGE_SUFFIXES and os.path.isfile(path):
            pass  # let the image loader say what it is
        return self.input_panel.load_file(path)

    # -- closing ---------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        background.cancel("the window closed")
        background.remove_listener(self._on_opening)
        lessons = getattr(self, "lessons", None)
        if lessons is not None:
            lessons.leave()  # the autosave keeps the user's own work, not a lesson's stage
        train = getattr(self, "train_panel", None)
        if train is not None:
            train.shutdown()
        if self.autosaver is not None:
            self.autosaver.shutdown()
        self.worker.shutdown(2.0)
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()
        super().closeEvent(event)

    def restore_layout(self) -> None:
        geo = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geo is not None:
            self.restoreGeometry(geo)
        if state is not None:
            QTimer.singleShot(1, lambda: self.restoreState(state, LAYOUT_VERSION))


def tabify_docks(window: QMainWindow, first: QDockWidget, second: QDockWidget, tabify=None) -> None:
    """window.tabifyDockWidget(first, second) (or `tabify`), without a stray tab bar:
    tabifying in a second dock area while the layout is pending (as when the window
    is built) makes Qt (6.11) create that area's tab bar twice and leave the first
    copy in the window, a duplicate of the tabs at a stale place. With the layout
    switched off meanwhile, it makes one."""
    layout = window.layout()
    layout.setEnabled(False)
    try:
        (tabify or window.tabifyDockWidget)(first, second)
    finally:
        layout.setEnabled(True)


def default_size(available: tuple[int, int] | None) -> tuple[int, int]:
    """The window's size at start on a screen with this much room (width, height);
    None: the screen is unknown."""
    if available is None:
        return 1500, 920
    w, h = available
    return min(1680, int(w * 0.96)), min(1050, int(h * 0.94))


def _scrolling(w: QWidget, sideways: bool = True) -> QScrollArea:
    """A dock's content that scrolls when the dock is short, instead of squashing its boxes.
    Not `sideways`: never a horizontal scroll bar, and the dock is never narrower than
    the content's controls (so none is cut off at the right)."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(w)
    if not sideways:
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = area.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        area.setMinimumWidth(w.minimumSizeHint().width() + bar)
    return area


def update_text(first_recomputed: int, n_outputs: int, seconds: float) -> str:
    """The status bar's note on the last forward pass, in words."""
    n = n_outputs - first_recomputed
    if n_outputs == 0:
        return ""
    if n <= 0:
        return "Maps up to date (nothing to recompute)"
    which = f"layer {first_recomputed}" if n == 1 else f"layers {first_recomputed}\u2013{n_outputs - 1}"
    return f"Updated {which} in {seconds * 1000:.0f} ms"


def _is_text_field(w: QWidget) -> bool:
    """Esc belongs to these (clear, revert, close a popup)."""
    while w is not None:
        if isinstance(w, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)):
            return True
        if isinstance(w, QComboBox) and (w.isEditable() or w.view().isVisible()):
            return True
        if w.isWindow():
            return False
        w = w.parentWidget()
    return False


KERNELS_MESSAGE = ("First start: the compute kernels are compiling in the background (once; later starts "
                   "are fast). Until they are ready the maps are computed with numpy, a little more slowly.")


def kernels_compiling() -> bool:
    """True while the numba kernels compile in the background (first start)."""
    from ..core.kernels import coldstart
    return coldstart.compiling()


def kernel_progress():
    from ..core.kernels import coldstart
    return coldstart.progress()
