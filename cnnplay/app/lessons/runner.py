"""Opening and leaving lessons: the one place that turns a Lesson into edits.

Opening a lesson is one undo step that replaces the session's network and input
(like opening an example); the user's own state is kept and leaving the lesson
is another undo step that puts it back exactly (the same State snapshot, the
same selection and view). Done marks live in the settings file, by lesson name.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

from PySide6.QtCore import QObject, Qt, Signal

from ...bundled import resource
from ...core.errors import InputError, NetworkError
from ...core.lessons import Lesson, bundled_lessons
from ..background import run_off_gui_thread
from ..examples import Example, apply_example, read_example
from ..input_panel import load_input
from .highlight import Highlight, resolve_target

log = logging.getLogger(__name__)
DONE_KEY = "lessons/done"


def panel_height(window_height: int) -> int:
    """How tall a lesson makes its panel under the maps: 45 % of the window, at most 460 px."""
    return min(460, int(window_height * 0.45))


class LessonRunner(QObject):
    changed = Signal()  # the current lesson or the done marks changed

    def __init__(self, window, lessons: list[Lesson] | None = None, problems=()):
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.editor = window.editor
        if lessons is None:
            lessons, problems = bundled_lessons()
        self.lessons = lessons
        self.problems = list(problems)
        self.current: int | None = None
        self._saved = None  # (State, selection, view) of the user's own work
        self._highlight = Highlight()

    # -- done marks ------------------------------------------------------------------
    def done(self) -> set[str]:
        v = self.window.settings.value(DONE_KEY, [])
        if isinstance(v, str):
            v = [v]
        return {str(n) for n in (v or [])}

    def mark_done(self, name: str, done: bool = True) -> None:
        names = self.done()
        names = names | {name} if done else names - {name}
        self.window.settings.setValue(DONE_KEY, sorted(names))
        self.window.settings.sync()
        self.changed.emit()

    # -- opening and leaving -------------------------------------------------------
    @property
    def lesson(self) -> Lesson | None:
        return None if self.current is None else self.lessons[self.current]

    def open(self, index: int) -> bool:
        """Set the stage for lesson `index`; False (and a message) if it cannot be set up.
        Files are read and the data set made off the GUI thread (background.run_off_gui_thread)."""
        lesson = self.lessons[index]
        from .. import imageio  # noqa: F401 (imported on the GUI thread before the worker needs it)
        try:
            example, (x, source, notes), dataset = run_off_gui_thread(
                lambda: (self.example_of(lesson), load_input(lesson.source), self._dataset_of(lesson)),
                f"Opening the lesson {lesson.title!r}")
        except (NetworkError, InputError, ValueError, OSError) as e:  # DatasetError is a ValueError
            self.window.show_message(f"Lesson {lesson.title!r} cannot be opened: {e}", "error")
            return False
        if self.current is None:
            s = self.session
            self._saved = (s.state, copy.copy(s.selection), dict(s.view),
                           (s.dataset, s.dataset_reference, s.classes))
        if not self.editor.edit(f"Lesson: {lesson.title}",
                                lambda s: apply_example(s, example, x, source, notes) or True):
            return False
        if dataset is not None:
            self.session.set_dataset(dataset)
        self.current = index
        self._select(lesson)
        self._show(lesson)
        self.changed.emit()
        return True

    def leave(self) -> None:
        """Back to the user's own work, exactly as it was (one undo step)."""
        if self.current is None:
            return
        state, selection, view, dataset = self._saved
        self._highlight.clear()
        self.current = None
        self._saved = None
        self.editor.edit("Leave lesson", lambda s: s.restore(state))
        s = self.session
        data, reference, classes = dataset
        if s.dataset is not data or s.dataset_reference != reference or s.classes != classes:
            if data is not None:  # the lesson attached its own data set
                s.set_dataset(data, reference)
            else:
                s.set_dataset(None)
                s.set_dataset_reference(reference, classes)
        s.set_view(**view)
        s.select_layer(s.index_of(selection.layer_id) if selection.layer_id is not None else None)
        unit_layer = s.index_of(selection.unit_layer_id) if selection.unit_layer_id is not None else None
        try:
            s.select_unit(unit_layer, selection.unit)
        except NetworkError:
            s.select_unit(None)
        self.changed.emit()

    def next(self) -> bool:
        if self.current is not None:
            self.mark_done(self.lessons[self.current].name)
        i = 0 if self.current is None else self.current + 1
        if i >= len(self.lessons):
            self.leave()
            self.window.show_message("That was the last lesson: your own network is back.", "info")
            return False
        return self.open(i)

    def previous(self) -> bool:
        if self.current is None or self.current == 0:
            return False
        return self.open(self.current - 1)

    # -- pieces ----------------------------------------------------------------------
    def example_of(self, lesson: Lesson) -> Example:
        """The lesson's network as an Example (a bundled one, or its own description),
        with the lesson's hand-set weights on top."""
        if lesson.spec is None:
            folder = resource("examples")
            path = next((p for p in (folder / f"{lesson.example}.cnnplay", folder / f"{lesson.example}.json")
                         if p.is_file()), None)
            if path is None:
                raise NetworkError(f"lesson {lesson.name}: there is no bundled example {lesson.example!r}")
            example = read_example(path)
        else:
            example = Example(lesson.name, lesson.title, "", copy.deepcopy(lesson.spec), dict(lesson.source), {})
        return replace(example, params=dict(example.params, **lesson.params))

    def _dataset_of(self, lesson: Lesson):
        if lesson.dataset is None:
            return None
        from ...datasets import make_builtin
        return make_builtin(lesson.dataset["builtin"], **lesson.dataset.get("params", {}))

    def _select(self, lesson: Lesson) -> None:
        s = self.session
        if lesson.select_layer is not None and lesson.select_layer < len(s.network):
            s.select_layer(lesson.select_layer)
        if lesson.select_unit is not None:
            layer, unit = lesson.select_unit
            try:
                s.select_unit(layer, unit)
            except NetworkError as e:
                log.warning("lesson %s: %s", lesson.name, e)

    def _show(self, lesson: Lesson) -> None:
        if lesson.panel:
            dock = self.window.dock_titled(lesson.panel) if hasattr(self.window, "dock_titled") else None
            if dock is not None:
                dock.show()
                dock.raise_()
                self._give_room(dock)
        self._highlight.clear()
        if lesson.highlight:
            target = resolve_target(self.window, lesson.highlight)
            if target is None:
                log.warning("lesson %s: no control %r to highlight", lesson.name, lesson.highlight)
            else:
                self._highlight.show(target)

    def _give_room(self, dock) -> None:
        """A panel under the maps is short by default (the maps keep the height): the
        lesson's panel gets `panel_height()` so that what it points at is in view."""
        w = self.window
        if not hasattr(w, "dockWidgetArea") or w.dockWidgetArea(dock) != Qt.DockWidgetArea.BottomDockWidgetArea:
            return
        want = panel_height(w.height())
        if dock.height() < want:
            w.resizeDocks([dock], [want], Qt.Orientation.Vertical)

    @property
    def highlighted(self):
        return self._highlight.target
