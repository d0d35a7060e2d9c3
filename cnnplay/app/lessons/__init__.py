"""Lessons in the window: the Lessons dock, Help > Lessons, and the runner that sets
each lesson's stage (see cnnplay.core.lessons for the file format)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from .panel import LessonBar, LessonsPanel
from .runner import LessonRunner


def add_lessons(window) -> LessonRunner:
    """A Lessons dock (a tab under the maps, beside Training results and the
    microscope; else with the concept panels) and Help > Lessons."""
    runner = LessonRunner(window)
    panel = LessonsPanel(runner)
    first = getattr(window, "train_results_dock", None)
    where = Qt.DockWidgetArea.BottomDockWidgetArea
    if first is None:
        first = next(iter(getattr(window, "concept_docks", {}).values()), None)
        where = Qt.DockWidgetArea.RightDockWidgetArea
    dock = window.add_dock(panel, "Lessons", where, "lessons")
    if first is not None:
        window.tabifyDockWidget(first, dock)
        first.raise_()
    bar = LessonBar(runner)
    window.centralWidget().layout().insertWidget(1, bar)  # under the message banner, over the maps
    window.lessons = runner
    window.lesson_bar = bar
    window.lessons_panel = panel
    window.lessons_dock = dock

    def show_lessons():
        dock.show()
        dock.raise_()
        panel.list.setFocus()

    action = window.help_menu.addAction("&Lessons", show_lessons)
    action.setShortcut("F1")
    action.setToolTip("A CNN course inside the playground, one concept at a time")
    window.lessons_action = action
    if runner.problems:
        window.show_message("Some lessons were skipped: " + "; ".join(runner.problems), "warning")
    return runner


__all__ = ["LessonBar", "LessonRunner", "LessonsPanel", "add_lessons"]
