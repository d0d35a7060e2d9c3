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


# CPython's long_lived_total (not exposed): objects in the oldest generation after
# the last full collection here; and the oldest generation's count when the rule
# below was last asked.
_long_lived = 0
_asked_at = 0


def collect_due() -> int | None:
    """Collect the oldest generation that is due, as the interpreter would have
    done automatically; None when nothing is due. Call on the GUI thread."""
    global _long_lived, _asked_at
    counts, thresholds = gc.get_count(), gc.get_threshold()
    if thresholds[0] == 0 or counts[0] <= thresholds[0]:
        return None
    generation = next(g for g in (2, 1, 0) if g == 0 or counts[g] > thresholds[g])
    if generation == 2 and not _full_collection_pays(counts[2], thresholds[2]):
        generation = 1 if counts[1] > thresholds[1] else 0
    gc.collect(generation)
    if generation == 2:
        _long_lived, _asked_at = len(gc.get_objects(generation=2)), 0
    return generation


def _full_collection_pays(count: int, threshold: int) -> bool:
    """CPython's rule (gcmodule.c): a full collection only once the objects that
    reached the oldest generation since the last one are a quarter of those it
    held then (without it every 10th collection here was a full one: 0.1-0.2 s on
    the GUI thread for the app's ~180,000 objects). Counting them takes a few ms,
    so it is asked again only `threshold` younger collections later."""
    global _asked_at
    if _asked_at and 0 <= count - _asked_at < threshold:  # (a count below: someone else collected all)
        return False
    _asked_at = count
    return len(gc.get_objects(generation=2)) - _long_lived >= _long_lived / 4


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
