"""Lessons in the real window: every bundled lesson sets its stage (network, input,
selection, panel, highlighted control), and leaving puts the user's work back
exactly, as one undo step."""

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from cnnplay.app.lessons.runner import LessonRunner, panel_height
from cnnplay.app.main import create_window
from cnnplay.core.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEC = {"input": [1, 24, 24], "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
    {"type": "relu"},
]}


@pytest.fixture
def window(qtbot, home):
    x = np.random.default_rng(1).random((1, 24, 24), dtype=np.float32)
    session = Session(SPEC, x, {"kind": "image", "sample": "camera.png", "mode": "gray", "max_side": 24})
    w = create_window(session=session)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_every_lesson_sets_its_stage_and_leaving_restores_the_users_work(qtbot, window):
    s, runner = window.session, window.lessons
    s.select_layer(1)
    s.select_unit(0, (2, 5, 7))
    s.set_view(levels="channel")
    own = s.state
    bottom = window.train_results_dock.height()  # the tabs under the maps, before any lesson
    assert len(runner.lessons) >= 13
    for i, lesson in enumerate(runner.lessons):
        assert runner.open(i), lesson.name
        assert runner.current == i
        example = runner.example_of(lesson)  # a trained example brings its weights
        spec, params = example.spec, dict(example.params)
        if example.network is not None:
            params.update({str(i): example.network.params(i) for i in range(len(example.network))})
        want = [layer["type"] for layer in spec["layers"]]
        assert [layer["type"] for layer in s.layers] == want
        assert s.error is None, f"{lesson.name}: {s.error}"
        assert s.input_source["kind"] == lesson.source["kind"]
        assert tuple(s.input_array.shape) == s.network.input_shape
        if lesson.dataset is not None:
            assert s.dataset is not None and s.dataset.reference["builtin"] == lesson.dataset["builtin"]
            assert s.output_classes() is not None  # the class bars are named
        for key, arrays in params.items():
            for name, values in arrays.items():
                np.testing.assert_array_equal(s.network.params(int(key))[name], np.asarray(values, np.float32))
        if lesson.select_unit is not None:
            assert s.selected_unit == (lesson.select_unit[0], tuple(lesson.select_unit[1]))
        if lesson.select_layer is not None:
            assert s.selected_layer == lesson.select_layer
        if lesson.panel:
            dock = window.dock_titled(lesson.panel)
            assert dock is not None and dock.isVisible(), lesson.panel
            qtbot.waitUntil(lambda: not dock.visibleRegion().isEmpty())  # in front of its tab group
            if window.dockWidgetArea(dock) == Qt.DockWidgetArea.BottomDockWidgetArea:  # room to see it
                # taller than the tabs under the maps were: as tall as asked where the window has room
                qtbot.waitUntil(lambda: dock.height() >= min(panel_height(window.height()), bottom + 60))
        target = runner.highlighted
        assert isinstance(target, QWidget), f"{lesson.name}: no control {lesson.highlight!r}"
        assert target.findChild(QWidget, "lessonHighlight") is not None
        assert lesson.title in window.lesson_bar.text.text() and window.lesson_bar.isVisible()
    runner.leave()
    assert runner.current is None and runner.highlighted is None and not window.lesson_bar.isVisible()
    assert s.state is own  # the very same snapshot: network, weights, input
    assert s.dataset is None and s.classes is None  # the lessons' data sets went with them
    assert s.selected_layer == 1 and s.selected_unit == (0, (2, 5, 7)) and s.view["levels"] == "channel"
    window.undo_stack.undo()  # leaving is undoable: back on the last lesson's stage
    last = runner.example_of(runner.lessons[-1]).spec
    assert [layer["type"] for layer in s.layers] == [layer["type"] for layer in last["layers"]]
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert s.state is not own


def test_next_previous_buttons_and_done_marks_survive_a_restart(qtbot, window):
    panel, bar, runner = window.lessons_panel, window.lesson_bar, window.lessons
    assert not bar.isVisible()
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert runner.current == 0 and bar.isVisible() and not bar.prev_button.isEnabled()
    qtbot.mouseClick(bar.next_button, Qt.MouseButton.LeftButton)
    assert runner.current == 1
    assert runner.lessons[0].name in runner.done()
    assert panel.list.item(0).text().startswith("\u2713") and not panel.list.item(1).text().startswith("\u2713")
    qtbot.mouseClick(bar.prev_button, Qt.MouseButton.LeftButton)
    assert runner.current == 0
    qtbot.mouseClick(bar.leave_button, Qt.MouseButton.LeftButton)
    assert runner.current is None and [layer["type"] for layer in window.session.layers] == ["conv2d", "relu"]
    again = LessonRunner(window)  # a new start reads the marks from the settings file
    assert again.done() == {runner.lessons[0].name}


def test_help_menu_opens_the_lessons_panel_and_a_lesson_opens_from_the_list(qtbot, window):
    window.lessons_action.trigger()
    assert window.lessons_dock.isVisible()
    item = window.lessons_panel.list.item(3)
    window.lessons_panel.list.itemActivated.emit(item)
    assert window.lessons.current == 3


def test_a_lesson_whose_input_cannot_load_says_so_and_changes_nothing(qtbot, window):
    from dataclasses import replace
    runner = window.lessons
    runner.lessons[0] = replace(runner.lessons[0], source={"kind": "image", "sample": "missing.png"})
    before = window.session.state
    messages = []
    window.message.connect(messages.append)
    assert not runner.open(0)
    assert window.session.state is before and runner.current is None
    assert messages and "cannot be opened" in messages[-1]


def test_closing_the_window_during_a_lesson_keeps_the_users_work(qtbot, home):
    from cnnplay.app import paths
    from cnnplay.app.main import create_window as make
    from cnnplay.core.fileformat import load_bundle
    x = np.random.default_rng(1).random((1, 24, 24), dtype=np.float32)
    session = Session(SPEC, x, {"kind": "image", "sample": "camera.png", "mode": "gray", "max_side": 24})
    w = make(session=session)
    qtbot.addWidget(w)
    own = session.state
    assert w.lessons.open(2)
    w.close()
    assert session.state is own
    net, extra = load_bundle(paths.autosave_path())  # what the next start restores
    assert [layer["type"] for layer in extra["spec"]["layers"]] == ["conv2d", "relu"]
    assert net.input_shape == (1, 24, 24)


def test_lessons_that_open_slowly_keep_the_window_alive(qtbot, window, monkeypatch):
    """While a lesson's files load (here slowed to 0.3 s, a slow disk) the window runs
    a local event loop: the previous lesson's maps arrive and its cards resize and
    re-tile meanwhile. Re-tiling inside the card's resize event crashed PySide (a
    segfault, lesson 9 opened after lesson 8); the cards now re-tile just after."""
    import time

    from cnnplay.app.lessons import runner as runner_module
    real = runner_module.load_input

    def slow(source):
        time.sleep(0.3)
        return real(source)

    monkeypatch.setattr(runner_module, "load_input", slow)
    runner, s = window.lessons, window.session
    names = [lesson.name for lesson in runner.lessons]
    for name in ("07_stride", "08_dilation", "09_stacking", "10_receptive_field_growth"):
        i = names.index(name)
        assert runner.open(i), name
        assert runner.current == i and s.error is None
        assert [layer["type"] for layer in s.layers] == [
            layer["type"] for layer in runner.example_of(runner.lessons[i]).spec["layers"]]
    card = window.findChild(QWidget, "layerCard")
    assert card is not None
    qtbot.waitUntil(lambda: card.array is not None)  # the last lesson's maps are drawn
