"""Keyboard shortcuts that work wherever the focus is, and the list Help shows.

Undo/redo belong to the network (the QUndoStack) wherever the focus is, except
while a text field is being edited: there Ctrl+Z undoes the typing. A field is
"being edited" from a key that changes its text until Enter, Esc or leaving it;
a spin box whose value was just entered (Enter pressed) hands Ctrl+Z back to
the network. Qt lets a focused line edit claim Ctrl+Z before any shortcut (a
ShortcutOverride), so an application event filter decides first.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

EDITING = "cnnplayEditing"  # dynamic property: the text field holds typing not yet entered
UNDO_KEYS = (QKeySequence.StandardKey.Undo, QKeySequence.StandardKey.Redo)
REDO_EXTRA = (QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y"))
_NON_TEXT_KEYS = {Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Tab,
                  Qt.Key.Key_Backtab, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown, Qt.Key.Key_Home, Qt.Key.Key_End,
                  Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta}


def text_field(w: QWidget | None) -> QWidget | None:
    """The text field `w` belongs to (a spin box for its inner line edit), or None."""
    found = None
    while w is not None:
        if isinstance(w, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)):
            found = w
        elif isinstance(w, QComboBox) and w.isEditable():
            found = w
        if w.isWindow():
            break
        w = w.parentWidget()
    return found


def is_undo_key(ev) -> bool:
    combo = ev.keyCombination() if hasattr(ev, "keyCombination") else ev.key() | ev.modifiers()
    seq = QKeySequence(combo)
    return any(seq.matches(QKeySequence(k)) == QKeySequence.SequenceMatch.ExactMatch for k in UNDO_KEYS) or \
        any(seq.matches(k) == QKeySequence.SequenceMatch.ExactMatch for k in REDO_EXTRA)


def _changes_text(ev) -> bool:
    if ev.key() in _NON_TEXT_KEYS or is_undo_key(ev):
        return False
    if ev.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.MetaModifier):
        return ev.key() in (Qt.Key.Key_V, Qt.Key.Key_X)  # paste, cut
    return bool(ev.text()) or ev.key() in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete)


def is_being_edited(w: QWidget | None) -> bool:
    field = text_field(w)
    return field is not None and bool(field.property(EDITING))


class UndoEverywhere(QObject):
    """Keeps track of typing in the window's text fields and lets Ctrl+Z /
    Ctrl+Shift+Z / Ctrl+Y reach the window's undo actions otherwise.

    It filters the events of the text fields that take the focus (the keys and
    the ShortcutOverride it decides on go to the focus widget; the FocusOut to
    the widget that had it), not of the whole application: an application
    filter in Python saw every event of every widget (32,000 while the window is
    built) and took a fifth of the window's construction time."""

    def __init__(self, window: QWidget):
        super().__init__(window)
        self.window = window
        app = QApplication.instance()
        app.focusChanged.connect(self._on_focus)
        window.destroyed.connect(self._remove)
        self._on_focus(None, app.focusWidget())

    def _remove(self, *_):
        app = QApplication.instance()
        if app is not None:
            try:
                app.focusChanged.disconnect(self._on_focus)
            except (RuntimeError, TypeError):  # already gone with this object
                pass

    def _on_focus(self, _old, new) -> None:
        if new is not None and text_field(new) is not None and new.window() is self.window:
            new.installEventFilter(self)  # (again: Qt keeps one entry per filter)

    def eventFilter(self, obj, ev) -> bool:
        t = ev.type()
        if t == QEvent.Type.KeyPress and isinstance(obj, QWidget):
            field = text_field(obj)
            if field is not None:
                if ev.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape):
                    field.setProperty(EDITING, False)
                elif _changes_text(ev):
                    field.setProperty(EDITING, True)
        elif t == QEvent.Type.FocusOut and isinstance(obj, QWidget):
            field = text_field(obj)
            if field is not None:
                field.setProperty(EDITING, False)
        elif t == QEvent.Type.ShortcutOverride and isinstance(obj, QWidget) and is_undo_key(ev):
            field = text_field(obj)
            if field is not None and not field.property(EDITING) and obj.window() is self.window:
                return True  # not the field's: the window's Undo/Redo shortcut fires
        return False


# (keys, what they do): Help > Keyboard shortcuts. Menu actions with shortcuts are
# added from the menus themselves, so this list holds only the ones without a menu entry.
KEYS_WITHOUT_MENU = (
    ("Arrow keys", "Move the selected unit (focus in the maps)"),
    ("PgUp / PgDn", "Previous / next channel of the selected unit"),
    ("Esc", "Clear the selected unit; while computing: cancel"),
    ("Double-click a channel", "Enlarge it (double-click again: all channels)"),
    ("Ctrl + mouse wheel", "Zoom into a map or chart; right-click > Reset zoom"),
    ("Right-click a map", "Enlarge, export as PNG, select the unit"),
    ("Del / Backspace", "Delete the selected layer (focus in the network)"),
    ("Ctrl+D", "Duplicate the selected layer (focus in the network)"),
    ("Alt+Up / Alt+Down", "Move the selected layer (focus in the network)"),
)


def menu_shortcuts(menu_bar) -> list[tuple[str, str]]:
    """(keys, menu path) of every menu action that has a shortcut."""
    out = []

    def walk(menu, path):
        for act in menu.actions():
            if act.menu() is not None:
                walk(act.menu(), path + [act.menu().title().replace("&", "")])
            elif not act.isSeparator():
                keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in act.shortcuts()]
                if keys:
                    out.append((" or ".join(keys), " > ".join(path + [act.text().replace("&", "")])))

    for act in menu_bar.actions():
        if act.menu() is not None:
            walk(act.menu(), [act.menu().title().replace("&", "")])
    return out


def shortcuts_html(menu_bar) -> str:
    rows = menu_shortcuts(menu_bar) + list(KEYS_WITHOUT_MENU)
    body = "".join(f"<tr><td style='padding-right:16px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"
