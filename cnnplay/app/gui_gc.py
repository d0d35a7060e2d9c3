"""Python's cyclic garbage collection, on the GUI thread only.

The collector runs on whichever thread happens to allocate when a generation's
threshold is crossed. pyqtgraph items and our views form reference cycles, so a
collection started by the compute worker (or the autosave thread) would destroy
Qt widgets on that thread. Qt forbids it, and it deadlocks: seen in the tests, the
worker inside ~QObject holding a Qt mutex and waiting for the GIL, the GUI thread
holding the GIL and waiting for that mutex in QObject::connect; the app froze.

So while the app runs, automatic collection is off and a timer on the GUI thread
collects with the interpreter's own generation thresholds (pyqtgraph's
GarbageCollector does the same). Objects without cycles are still freed at once
by reference counting; only the cycle search moves to the GUI thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer
from shiboken6 import isValid

INTERVAL_MS = 250

_collector: GuiThreadCollector | None = None


def collect_due() -> int | None:
    """Collect the oldest generation that is due, as the interpreter would have
    done automatically; None when nothing is due. Call on the GUI thread."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    if thresholds[0] == 0 or counts[0] <= thresholds[0]:
        return None
    generation = next(g for g in (2, 1, 0) if g == 0 or counts[g] > thresholds[g])
    gc.collect(generation)
    return generation


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.timeout.connect(collect_due)
        self._timer.start(interval_ms)
        gc.disable()


def collect_on_gui_thread() -> GuiThreadCollector:
    """Turn automatic collection off and collect on a GUI-thread timer instead, for
    as long as the QApplication lives. Idempotent; needs a QApplication and must be
    called on its thread."""
    global _collector
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        raise RuntimeError("collect_on_gui_thread() needs a QApplication and its (GUI) thread")
    if _collector is None or not isValid(_collector):
        _collector = GuiThreadCollector(app)
        app.aboutToQuit.connect(gc.enable)
    gc.disable()  # again: someone may have turned it back on
    return _collector
