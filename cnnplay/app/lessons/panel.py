"""The lesson views, both reading the LessonRunner and calling it:
- LessonsPanel (a dock): the course in order with done marks;
- LessonBar (a strip over the maps, shown while a lesson is open): its text and
  Previous / Next / Leave, so the text stays in sight whichever panel the lesson
  brings to the front."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from .runner import LessonRunner

CHECK = "\u2713"
INTRO = ("Each lesson sets up a network and an input, says what to look at, and asks you to change one "
         "thing; the control to try is outlined in orange. Your own work is kept and comes back when you "
         "leave the lesson.")


class LessonsPanel(QWidget):
    def __init__(self, runner: LessonRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.intro = QLabel(INTRO)
        self.intro.setWordWrap(True)
        self.list = QListWidget()
        self.list.setObjectName("lessonList")
        self.list.setToolTip("The lessons in course order; a tick marks those you finished. "
                             "Double-click (or Enter) to open one.")
        self.list.itemActivated.connect(lambda item: runner.open(self.list.row(item)))
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #b9770e;")
        self.start_button = QPushButton("Open lesson")
        self.start_button.setToolTip("Open the lesson selected in the list (the first one if none is)")
        self.start_button.clicked.connect(lambda: runner.open(max(self.list.currentRow(), 0)))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.intro)
        lay.addWidget(self.list, 1)
        lay.addWidget(self.problems)
        lay.addWidget(self.start_button)
        runner.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        r = self.runner
        done = r.done()
        self.list.blockSignals(True)
        self.list.clear()
        for i, lesson in enumerate(r.lessons):
            mark = CHECK if lesson.name in done else "\u2003"
            item = QListWidgetItem(f"{mark}  {i + 1}. {lesson.title}")
            item.setToolTip(lesson.see)
            self.list.addItem(item)
        if r.current is not None:
            self.list.setCurrentRow(r.current)
        self.list.blockSignals(False)
        self.problems.setText("<br>".join(map(html.escape, r.problems)))
        self.problems.setVisible(bool(r.problems))
        self.start_button.setEnabled(bool(r.lessons))


class LessonBar(QFrame):
    def __init__(self, runner: LessonRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.setObjectName("lessonBar")
        self.setStyleSheet("#lessonBar { background: #fdf6e3; border-bottom: 2px solid #f39c12; }"
                           " #lessonBar QLabel { color: #333; }")
        self.text = QLabel()
        self.text.setObjectName("lessonText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setStyleSheet("font-size: 11pt;")
        self.prev_button = QPushButton("\u2190 Previous")
        self.prev_button.setToolTip("The previous lesson")
        self.prev_button.clicked.connect(runner.previous)
        self.next_button = QPushButton("Next \u2192")
        self.next_button.setToolTip("Mark this lesson done and open the next one")
        self.next_button.clicked.connect(runner.next)
        self.leave_button = QPushButton("Leave lesson")
        self.leave_button.setToolTip("Put your own network and input back exactly as they were (undoable)")
        self.leave_button.clicked.connect(runner.leave)
        buttons = QVBoxLayout()
        for b in (self.next_button, self.prev_button, self.leave_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the arrow keys keep moving the selected unit
            buttons.addWidget(b)
        buttons.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 8, 6)
        lay.addWidget(self.text, 1)
        lay.addLayout(buttons)
        runner.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        r = self.runner
        lesson = r.lesson
        self.setVisible(lesson is not None)
        if lesson is None:
            return
        n, total = r.current + 1, len(r.lessons)
        self.text.setText(
            f"<b>Lesson {n} of {total}: {html.escape(lesson.title)}</b><br>"
            f"<b>What you see.</b> {html.escape(lesson.see)}<br>"
            f"<b>Try this.</b> {html.escape(lesson.try_)}<br>"
            f"<b>What changes.</b> {html.escape(lesson.changes)}")
        self.prev_button.setEnabled(r.current > 0)
        self.next_button.setText("Finish" if n == total else "Next \u2192")
