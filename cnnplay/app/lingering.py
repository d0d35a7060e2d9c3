"""Keep a QObject alive while a thread of its own still runs.

Closing a window deletes its children. A worker thread still inside a long
computation (a first start compiles kernels for up to a minute) would then emit
from a deleted object, which Qt forbids (at best "Signal source has been deleted",
at worst a crash). So `shutdown` hands such an object here: it leaves its parent
and is held until its thread has ended; a GUI-thread timer then lets it go, so
it is also deleted on the GUI thread.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, QTimer

PRUNE_MS = 200

_kept: list[tuple[QObject, threading.Thread]] = []
_timer: QTimer | None = None


def keep_until_finished(obj: QObject, thread: threading.Thread | None) -> bool:
    """Call on the GUI thread. True if `obj` is being kept (its thread still runs)."""
    global _timer
    if thread is None or not thread.is_alive():
        return False
    obj.setParent(None)
    _kept.append((obj, thread))
    if _timer is None:
        _timer = QTimer()
        _timer.timeout.connect(_prune)
    _timer.start(PRUNE_MS)
    return True


def kept() -> list[QObject]:
    return [obj for obj, _ in _kept]


def _prune() -> None:
    _kept[:] = [(obj, t) for obj, t in _kept if t.is_alive()]
    if not _kept and _timer is not None:
        _timer.stop()
