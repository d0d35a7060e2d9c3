"""Opening files off the GUI thread, with a time limit and a cancel.

    result = run_off_gui_thread(lambda: load_input(source), "Opening cat.png")

The work (reading, parsing, decoding) runs on a short-lived thread of its own
while the GUI thread keeps processing events in a local event loop: the window
repaints, the maps keep updating, and the user can cancel (Esc or the status
bar's Cancel button, through `cancel()`). The call returns the work's result or
re-raises its exception; it raises LoadCancelled (an InputError, so callers
show it like any input problem) when the user cancelled, a newer open replaced
this one (newest wins), or the work took longer than TIME_LIMIT seconds. A
cancelled job's result is dropped; its thread ends on its own (every reader in
cnnplay is bounded in size and work, see core.safe_read and app.imageio).

Off the GUI thread (scripts, the core's own tests) the work simply runs.

Thread rules (README): the modules the work needs are imported by the caller on
the GUI thread before the first call; the work runs no numba kernels (file
reading and decoding only); cyclic garbage collection stays on the GUI thread
(app.gui_gc).
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, Qt, QThread, QTimer, Signal

from ..core.errors import InputError

TIME_LIMIT = 30.0  # seconds: a bounded reader finishes far sooner; past this, something is wrong


class LoadCancelled(InputError):
    """An open that was cancelled, replaced by a newer one, or over its time limit."""


class _Relay(QObject):
    finished = Signal()


class _Job:
    def __init__(self, what: str):
        self.what = what
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None
        self.cancelled: str | None = None
        self.loop: QEventLoop | None = None

    def cancel(self, reason: str) -> None:
        if not self.done.is_set() and self.cancelled is None:
            self.cancelled = reason
            if self.loop is not None:
                self.loop.quit()


_jobs: list[_Job] = []  # running opens, oldest first (a newer one runs in a nested loop)
_listeners: list = []  # callables(text | None): what is being opened now (None: nothing)


def add_listener(callback) -> None:
    """`callback(text)` with "Opening cat.png" while something opens, None when done."""
    _listeners.append(callback)


def remove_listener(callback) -> None:
    if callback in _listeners:
        _listeners.remove(callback)


def _notify() -> None:
    text = _jobs[-1].what if _jobs else None
    for cb in list(_listeners):
        try:
            cb(text)
        except RuntimeError:  # a deleted widget's slot
            remove_listener(cb)


def busy() -> bool:
    """True while an open runs off the GUI thread."""
    return bool(_jobs)


def cancel(reason: str = "cancelled") -> bool:
    """Cancel every running open (Esc, the Cancel button); True if there was one."""
    running = [j for j in _jobs if not j.done.is_set()]
    for job in running:
        job.cancel(reason)
    return bool(running)


def run_off_gui_thread(fn, what: str, time_limit: float | None = None):
    """fn() on a worker thread while the GUI thread keeps running; see the module doc."""
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        return fn()
    limit = TIME_LIMIT if time_limit is None else time_limit
    for older in _jobs:
        older.cancel("a newer file was opened")
    job = _Job(what)
    relay = _Relay()
    loop = QEventLoop()
    job.loop = loop
    relay.finished.connect(loop.quit, Qt.ConnectionType.QueuedConnection)

    def work():
        try:
            job.result = fn()
        except BaseException as e:  # noqa: BLE001 (re-raised on the GUI thread)
            job.error = e
        finally:
            job.done.set()
            try:
                relay.finished.emit()
            except RuntimeError:  # the relay is gone: nobody waits any more
                pass

    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(lambda: job.cancel(f"it took longer than {limit:g} s"))
    _jobs.append(job)
    _notify()
    try:
        threading.Thread(target=work, name="cnnplay-open", daemon=True).start()
        timer.start(max(1, int(limit * 1000)))
        if not job.done.is_set() and job.cancelled is None:
            loop.exec()
    finally:
        timer.stop()
        _jobs.remove(job)
        job.loop = None
        _notify()
    if job.cancelled is not None:  # (also when it finished just then: the user's newer wish wins)
        raise LoadCancelled(f"{what} stopped: {job.cancelled}.")
    if job.error is not None:
        raise job.error
    return job.result
