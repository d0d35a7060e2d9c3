"""Undo/redo: one generic command that swaps Session snapshots.

Every edit of the session goes through `Editor.edit`, which runs the edit,
takes the state before and after, and pushes a SnapshotCommand onto the
QUndoStack. Consecutive edits with the same merge key (e.g. typing into one
spin box of one layer) merge into a single undo step.
"""

from __future__ import annotations

from typing import Callable, Hashable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from ..core.errors import InputError, NetworkError
from ..core.session import Session, State

MERGE_ID = 0x636E6E  # any constant: commands with a merge key share it


class SnapshotCommand(QUndoCommand):
    """Go from one session State to another (and back)."""

    def __init__(self, session: Session, text: str, before: State, after: State,
                 merge_key: Hashable | None = None):
        super().__init__(text)
        self.session = session
        self.before = before
        self.after = after
        self.merge_key = merge_key
        self._applied = True  # the edit has already run when the command is pushed

    def redo(self) -> None:
        if self._applied:
            self._applied = False
            return
        self.session.restore(self.after)

    def undo(self) -> None:
        self.session.restore(self.before)

    def id(self) -> int:
        return MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, SnapshotCommand) or other.merge_key != self.merge_key or self.merge_key is None:
            return False
        self.after = other.after
        return True


class Editor(QObject):
    """The one way views change the session: run an edit as an undoable step.

    Errors the user can cause (NetworkError, InputError) are reported through
    `failed` and leave the session and the stack untouched.
    """

    failed = Signal(str)

    def __init__(self, session: Session, stack: QUndoStack | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.stack = stack if stack is not None else QUndoStack(self)

    def edit(self, text: str, fn: Callable[[Session], object], merge_key: Hashable | None = None):
        """Run fn(session) as one undo step; returns fn's result (None if it failed)."""
        before = self.session.state
        try:
            result = fn(self.session)
        except (NetworkError, InputError) as e:
            if self.session.state is not before:
                self.session.restore(before)
            self.failed.emit(str(e))
            return None
        after = self.session.state
        if after is not before:
            self.stack.push(SnapshotCommand(self.session, text, before, after, merge_key))
        return result

    def break_merge(self) -> None:
        """The next edit starts a new undo step even if its merge key matches."""
        cmd = self.stack.command(self.stack.index() - 1) if self.stack.index() > 0 else None
        if isinstance(cmd, SnapshotCommand):
            cmd.merge_key = None

    # -- the common edits ------------------------------------------------------------
    def insert_layer(self, index: int, layer: dict):
        return self.edit(f"Add {layer.get('type')}", lambda s: s.insert_layer(index, layer))

    def remove_layer(self, index: int) -> None:
        t = self.session.layers[index].get("type")
        self.edit(f"Delete {t}", lambda s: s.remove_layer(index))

    def move_layer(self, src: int, dst: int) -> None:
        if src == dst:
            return
        t = self.session.layers[src].get("type")
        self.edit(f"Move {t}", lambda s: s.move_layer(src, dst))

    def duplicate_layer(self, index: int):
        t = self.session.layers[index].get("type")
        return self.edit(f"Duplicate {t}", lambda s: s.duplicate_layer(index))

    def update_layer(self, index: int, merge: bool = True, **fields) -> None:
        layer_id = self.session.layer_id(index)
        key = (layer_id, tuple(sorted(fields))) if merge else None
        names = ", ".join(fields)
        self.edit(f"Change {names}", lambda s: s.update_layer(index, **fields), merge_key=key)
