"""`cnnplay`: start the desktop app.

QApplication, the session (restored from the autosave, or the default network
on a bundled photo), the compute worker and controller, the autosaver and the
window. Unexpected exceptions are logged to a file in the app-data folder and
shown as a non-modal message; the app keeps running.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback

from . import paths

log = logging.getLogger("cnnplay")
GIL_SWITCH_SECONDS = 0.001  # see create_window
# The numpy path takes 0.1-0.3 ms per million mult-adds on a 2-vCPU VM (2-4x the numba
# kernels): up to this many, a first pass on it ends before the kernels would have loaded.
DEFER_LOADING_MACS = 2_000_000_000


def setup_logging() -> None:
    root = logging.getLogger()
    if any(getattr(h, "_cnnplay", False) for h in root.handlers):
        return
    try:
        handler = logging.FileHandler(paths.log_path(), encoding="utf-8")
    except OSError:
        handler = logging.StreamHandler()
    handler._cnnplay = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def install_excepthook(window=None) -> None:
    """Log unexpected exceptions (GUI slots, threads) and show a short non-modal message."""

    def report(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error:\n%s", text)
        if window is not None:
            try:
                window.show_message(f"Unexpected error ({exc_type.__name__}: {exc}). The app keeps running; "
                                    f"details are in {paths.log_path()}.", "error")
            except Exception:
                pass

    sys.excepthook = report

    def thread_hook(args):
        if args.exc_type is SystemExit:
            return
        log.error("unexpected error in thread %s:\n%s", args.thread.name if args.thread else "?",
                  "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))

    threading.excepthook = thread_hook


def import_before_threads() -> None:
    """Do the big first imports here, on the GUI thread, before the worker and autosave
    threads start. Two threads importing the same packages for the first time at once
    can fail: a fresh install once crashed at start with KeyError: 'colorama', when
    the worker's numba import (which imports colorama) met pyqtgraph's import of
    colorama.winterm on the GUI thread and Python's import-lock deadlock detection
    gave up on one of them. Qt's image plugins load here too (imageio.load_plugins:
    a worker's first decode loading them once deadlocked with the GUI thread)."""
    import pyqtgraph  # noqa: F401

    from . import imageio
    imageio.load_plugins()

    from ..core import receptive  # noqa: F401
    from ..core.kernels import coldstart, conv, dense, grad, norm, numpy_path, pointwise, pool  # noqa: F401
    from .. import datasets  # noqa: F401  (the Train panel's loader thread makes data sets)
    try:
        from ..core import training  # noqa: F401  (the Train panel's training thread)
    except ImportError:
        pass


def create_window(synchronous: bool = False, restore_layout: bool = False, session=None):
    """Build session, worker, controller, autosaver and window (needs a QApplication).
    Without `session`, the autosave is restored (or the default network made).
    Tests construct windows this way, on a CNNPLAY_HOME of their own."""
    from .autosave import Autosaver, restore
    from .compute import ComputeWorker
    from .controller import ComputeController
    from .examples import default_session
    from .input_panel import load_input
    from .window import MainWindow, kernels_compiling
    from PySide6.QtCore import QTimer

    from .autosave import Restored
    from .gui_gc import collect_on_gui_thread
    collect_on_gui_thread()  # before the worker starts: Qt objects must die on this thread
    # A thread that wants the GIL waits up to the switch interval for a thread running
    # Python (training, between its kernels): 1 ms instead of 5 keeps the GUI and the
    # compute worker answering while training runs.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    import_before_threads()
    restored = Restored(session) if session is not None else restore(load_input=load_input)
    session = restored.session if restored.session is not None else default_session()
    from ..core.kernels import coldstart, loader
    defer_kernel_loading(session)  # before the first forward pass asks for them
    coldstart.prepare()  # an empty kernel cache: compile in the background (threads start after the imports)
    first_start = not synchronous and kernels_compiling()
    worker = ComputeWorker(synchronous=synchronous)
    controller = ComputeController(session, worker)
    autosaver = Autosaver(session)
    window = MainWindow(session, controller, autosaver=autosaver, messages=restored.messages,
                        first_start=first_start)
    controller.setParent(window)
    worker.setParent(window)
    autosaver.setParent(window)
    if restored.offer is not None:
        window.offer_input(restored.offer, "Your network is restored, on a bundled input.")
    if restore_layout:
        window.restore_layout()
    if restored.session is None:
        autosaver.save_now()  # the first start's session is saved at once
    # The first event-loop turn comes after show(): from then on, once the first maps
    # are painted, the cached kernels load (a no-op unless deferred above).
    QTimer.singleShot(0, controller, lambda: controller.when_shown(loader.release))
    return window


def defer_kernel_loading(session) -> bool:
    """The first maps on the numpy path, the cached numba kernels loaded after them
    (core/kernels/loader.py), unless the network is so big that numpy would take longer
    than loading them. True if deferred."""
    from ..core.kernels import coldstart, loader
    if coldstart.mode() != "auto":
        return False
    try:
        macs = sum(session.network.macs)
    except Exception:  # noqa: BLE001 (a network that does not compute: nothing to lose)
        macs = 0
    if macs > DEFER_LOADING_MACS:
        return False
    loader.defer()
    return True


def main(argv: list[str] | None = None) -> int:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName(paths.APP_NAME)
    app.setOrganizationName(paths.ORG_NAME)
    app.setApplicationDisplayName("cnnplay")
    setup_logging()
    install_excepthook()
    from .palette import layer_icon
    app.setWindowIcon(QIcon(layer_icon("conv2d")))
    from .splash import make_splash, show_splash
    splash = make_splash("Starting...")
    show_splash(splash)
    window = create_window(restore_layout=True)
    install_excepthook(window)
    for arg in argv[1:]:
        if not arg.startswith("-"):
            open_from_command_line(window, arg)
    window.show()
    splash.finish(window)
    code = app.exec()
    end_process(window, code)
    return code  # (not reached)


def end_process(window, code: int) -> None:
    """End the process once the app's work is on disk, without the interpreter's teardown.

    Closing the window saved what matters (closeEvent: the autosave, written and
    waited for, and the settings). The teardown after that took 0.4-0.6 s: clearing
    ~170,000 objects module by module with full collections in between. So: the
    window closed (if the event loop ended otherwise), what a normal exit runs first
    (non-daemon threads joined, the atexit handlers: log files flushed, training runs
    stopped and joined), the standard streams flushed, then os._exit. The daemon
    threads left (compute worker, autosave writer, kernel loader) would have been
    stopped mid-work by a normal exit as well."""
    import atexit
    import os
    try:
        if window is not None and window.isVisible():
            window.close()  # app.quit() without a close: save as a close does
    except RuntimeError:  # its C++ object is gone: it was closed
        pass
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is not me and not t.daemon:
            t.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 (a closed or broken stream: nothing to keep)
            pass
    os._exit(code)


def open_from_command_line(window, arg: str) -> bool:
    """Open a file named on the command line; whatever goes wrong costs only that
    file: the window starts anyway and says why (never an exit at start)."""
    try:
        return window.open_any(arg)
    except Exception as e:  # noqa: BLE001 (a bad file must not end the app)
        log.error("opening %s from the command line failed:\n%s", arg, traceback.format_exc())
        window.show_message(f"{arg}: could not be opened ({type(e).__name__}: {e}). The app keeps running; "
                            f"details are in {paths.log_path()}.", "error")
        return False


if __name__ == "__main__":
    raise SystemExit(main())
