# PySide6 6.12.0 loses a reference to True on every Signal.emit(); see _pyside_fix.
from . import _pyside_fix  # noqa: F401
