"""Work around a reference-counting bug of PySide6 6.12.0.

In PySide6 6.12.0 every `Signal.emit()` called from Python returns `True`
without taking a reference to it, so each emit lowers the reference count of
`True` by one. Python < 3.12 then deallocates `True` after a few thousand
emits and aborts ("Fatal Python error: bool_dealloc"); pyqtgraph emits on every
setData/setImage and mouse move, so the app would crash within minutes.

Other calls lose references to `None` the same way. The fix makes `True`,
`False` and `None` effectively immortal (as Python 3.12 does for all
singletons) by raising their reference counts once, far beyond reach.
"""

from __future__ import annotations

import ctypes
import sys


def _emit_leaks_true() -> bool:
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        fired = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.fired.emit()
    return sys.getrefcount(True) < before


def apply() -> bool:
    """Apply the fix if this PySide6 needs it; True when applied."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False  # True is immortal there
    if not _emit_leaks_true():
        return False
    for singleton in (True, False, None):
        ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40
    return True


applied = apply()
