"""The Train panel through the real widgets (offscreen): data sets, Train / Pause /
Step / Reset, curves, confusion matrix, gallery, edits during training, files.
Tiny data, few steps."""

import numpy as np
import pytest
from PySide6.QtGui import QColor, QImage

from cnnplay.app.main import create_window
from cnnplay.core.session import Session

pytest.importorskip("cnnplay.core.training")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEC = {"input": [1, 12, 12], "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 3},
]}
WAIT = 120_000  # ms: a shared machine compiling kernels can be slow; nothing here is timed


def small_session():
    x = np.random.default_rng(0).random((1, 16, 16), dtype=np.float32)
    return Session(SPEC, x, {"kind": "test"})


@pytest.fixture
def window(qtbot, home):
    w = create_window(session=small_session())
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.train_panel.shutdown()


def attach_shapes(qtbot, panel, count=40):
    panel.load_builtin("shapes", size=12, count=count, noise=0.05, seed=0, channels=1)
    qtbot.waitUntil(lambda: panel.session.dataset is not None, timeout=WAIT)
    return panel.session.dataset


def ready(qtbot, w):
    """Data attached, the network made to fit it with the panel's own buttons."""
    p = w.train_panel
    ds = attach_shapes(qtbot, p)
    inp, out = p.mismatch()
    assert inp is not None and "1x12x12" in inp and "1x16x16" in inp  # the input is 16x16, the data 12x12
    assert out is not None and "4 classes" in out
    assert p.match_frame.isVisibleTo(p)
    assert p.match_input() and p.match_outputs()
    assert p.mismatch() == (None, None) and not p.match_frame.isVisibleTo(p)
    assert w.session.network.input_shape == (1, 12, 12)
    assert w.session.network.output_shapes[-1] == (4,)
    assert w.session.output_classes() == tuple(ds.classes)
    p.set_setting(batch_size=8, epochs=1, optimizer="sgd", lr=0.05, momentum=0.9)
    return p


def wait_idle(qtbot, p):
    qtbot.waitUntil(lambda: not p.running(), timeout=WAIT)


def test_step_train_pause_and_reset_change_what_they_should(window, qtbot):
    p = ready(qtbot, window)
    s = window.session
    w0 = s.network.params(0)["weight"].copy()
    assert p.step_button.isEnabled() and not p.pause_button.isEnabled()
    assert p.step()
    assert p.pause_button.isEnabled() and not p.train_button.isEnabled()
    wait_idle(qtbot, p)
    t = s.training
    assert t.progress.steps == 1 and t.progress.batch == 1 and t.progress.epoch == 0
    assert not np.array_equal(s.network.params(0)["weight"], w0)  # one update reached the session
    assert p.curves.point_counts()["batch"] == 1
    test = p.split()[1]
    assert np.asarray(p.confusion.matrix).sum() == len(test)  # a Step evaluates the test set
    assert len(p.gallery.shown) == min(len(test), p.gallery.COUNT)
    assert "Step" in window.undo_stack.undoText()

    # Train to the end of the epoch: the epoch curves gain their first points.
    assert p.train()
    wait_idle(qtbot, p)
    t = s.training
    per = t.progress.batches_per_epoch
    assert t.progress.epoch == 1 and t.progress.steps == per
    counts = p.curves.point_counts()
    assert counts["batch"] == per and counts["test_loss"] == 1 and counts["test_acc"] == 1
    assert np.asarray(p.confusion.matrix).sum() == len(test)
    assert np.asarray(p.confusion.matrix).shape == (4, 4)
    assert "epoch 1/1" in p.progress_bar.format() or "1 epochs done" in p.progress_bar.format()

    # Pause: a long run stops after its current batch and keeps what it learned.
    p.set_setting(epochs=50)
    assert p.train()
    qtbot.waitUntil(lambda: s.training.progress.steps > per, timeout=WAIT)
    assert p.pause()
    wait_idle(qtbot, p)
    steps = s.training.progress.steps
    assert per < steps < 50 * per
    assert s.training.progress.epoch < 50

    # Reset weights: the initial weights again, the curves empty; undo brings the training back.
    trained = s.network.params(0)["weight"].copy()
    p.reset_weights()
    assert np.array_equal(s.network.params(0)["weight"], w0)
    assert s.training.progress.steps == 0 and p.curves.point_counts()["batch"] == 0
    window.undo_action.trigger()
    assert np.array_equal(s.network.params(0)["weight"], trained) and s.training.progress.steps == steps


def test_an_edit_during_training_pauses_it_and_keeps_unchanged_layers(window, qtbot):
    p = ready(qtbot, window)
    s = window.session
    p.set_setting(epochs=200)
    assert p.train()
    qtbot.waitUntil(lambda: s.training is not None and s.training.progress.steps >= 2, timeout=WAIT)
    conv = s.network.params(0)["weight"].copy()
    # Widen the classifier: the linear layer's shape changes, the conv layer's does not.
    window.editor.update_layer(4, merge=False, out_features=5)
    assert not p.running()
    assert np.array_equal(s.network.params(0)["weight"], conv)
    assert s.network.params(4)["weight"].shape[0] == 5
    assert "4 (linear)" in p.note_label.text() and "paused" in p.note_label.text()
    assert "0 (conv2d)" not in p.note_label.text()
    qtbot.wait(300)  # anything the stopped run still sends is ignored
    assert s.network.params(4)["weight"].shape[0] == 5 and np.array_equal(s.network.params(0)["weight"], conv)


def test_an_edit_during_training_shows_its_maps_before_the_note_lays_the_panel_out(window, qtbot):
    """The note an edit leaves (training paused, which layers were reset) is in the label
    at once, but the label keeps its height until the edit's maps are on screen: a taller
    note moves the curves and everything under them (a relayout and a repaint of 10-15 ms
    that would delay the maps). Then it grows to show the whole note."""
    from PySide6.QtCore import QPoint
    p = ready(qtbot, window)
    s, c = window.session, window.controller
    window.train_dock.raise_()
    qtbot.waitUntil(p.note_label.isVisible)
    p.set_setting(epochs=200)
    assert p.train()
    qtbot.waitUntil(lambda: s.training is not None and s.training.progress.steps >= 2, timeout=WAIT)
    label = p.note_label
    height, curves_at = label.height(), p.curves.mapTo(p, QPoint(0, 0))
    seen = []
    c.forward_changed.connect(lambda: seen.append((c.forward_is_current(), label.height(),
                                                   p.curves.mapTo(p, QPoint(0, 0)))))
    window.editor.update_layer(0, merge=False, dilation=2, padding=2)  # the conv layer keeps its weights
    assert not p.running() and "paused" in label.text() and "kept" in label.text()
    assert label.height() == height
    qtbot.waitUntil(c.forward_is_current, timeout=WAIT)
    assert (True, height, curves_at) in seen  # the maps came with the panel as it was
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()) > height, timeout=5000)
    assert label.minimumHeight() == 0 and label.maximumHeight() == 16777215
    assert p.curves.mapTo(p, QPoint(0, 0)).y() > curves_at.y()  # the note has its room now


def test_clicking_a_gallery_sample_makes_it_the_input(window, qtbot):
    p = ready(qtbot, window)
    assert p.step()
    wait_idle(qtbot, p)
    # The output bars carry the class names and show softmax probabilities.
    c = window.controller
    qtbot.waitUntil(c.forward_is_current, timeout=WAIT)
    card = window.central.reveal(4)
    card.flush()
    assert card.classes == window.session.classes
    bars = card.current_view()
    heights = bars.heights()
    scores = c.forward.outputs[4].astype(np.float64)
    expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(heights, expected, rtol=1e-5)
    ticks = bars.plot.getPlotItem().getAxis("bottom")._tickLevels[0]
    assert [t[1] for t in ticks] == list(window.session.classes)
    index = p.gallery.shown[1][0]
    p.gallery.buttons[1].click()
    test = p.split()[1]
    assert np.array_equal(window.session.input_array, test.x[index])
    assert window.session.input_source["kind"] == "dataset"


def _png(path, w, h, value):
    img = QImage(w, h, QImage.Format.Format_RGB32)
    img.fill(QColor(value, value, value))
    assert img.save(str(path))


def test_a_folder_data_set_with_a_corrupt_file_an_empty_class_and_mixed_sizes(window, qtbot, tmp_path):
    root = tmp_path / "pets"
    for name in ("cats", "dogs", "empty"):
        (root / name).mkdir(parents=True)
    _png(root / "cats" / "a.png", 20, 30, 40)
    _png(root / "cats" / "b.png", 64, 48, 60)
    _png(root / "dogs" / "c.png", 8, 8, 200)
    _png(root / "dogs" / "d.png", 100, 10, 220)
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    p = window.train_panel
    p.load_folder(root, (1, 16, 16))
    qtbot.waitUntil(lambda: window.session.dataset is not None, timeout=WAIT)
    ds = window.session.dataset
    assert ds.classes == ["cats", "dogs"] and len(ds) == 4 and ds.x.shape == (4, 1, 16, 16)
    assert list(ds.class_counts()) == [2, 2]
    assert ds.reference["folder"] == str(root)
    text = p.data_label.text()
    assert "empty" in text and "left out" in text
    assert "dogs/broken.png" in text and "skipped" in text
    # cats are dark, dogs bright: the resize kept the values
    assert ds.x[ds.y == 0].max() < 0.3 and ds.x[ds.y == 1].min() > 0.75


def test_a_folder_with_fewer_than_two_classes_is_refused(window, qtbot, tmp_path):
    root = tmp_path / "one"
    (root / "only").mkdir(parents=True)
    _png(root / "only" / "a.png", 10, 10, 100)
    messages = []
    window.message.connect(messages.append)
    p = window.train_panel
    p.load_folder(root, (1, 8, 8))
    qtbot.waitUntil(lambda: not p.loading(), timeout=WAIT)
    assert window.session.dataset is None
    assert any("at least two classes" in m and "only" in m for m in messages)


def test_save_close_reopen_and_continue(qtbot, home, tmp_path):
    w = create_window(session=small_session())
    qtbot.addWidget(w)
    p = ready(qtbot, w)
    p.set_setting(epochs=2)
    assert p.step() and (wait_idle(qtbot, p) or True)
    assert p.step() and (wait_idle(qtbot, p) or True)
    classes = w.session.classes
    assert classes is not None and len(classes) == 4
    # The autosave keeps the progress too (it saves during training without pausing it).
    assert w.autosaver.flush(30)
    from cnnplay.app.autosave import restore
    r = restore()
    assert r.session.training.progress.steps == 2 and r.session.classes == classes
    weights = w.session.network.params(0)["weight"].copy()
    path = tmp_path / "trained.cnnplay"
    assert w.save_to(path)
    w.close()

    w2 = create_window(session=small_session())
    qtbot.addWidget(w2)
    assert w2.open_file(path)
    s2 = w2.session
    assert np.array_equal(s2.network.params(0)["weight"], weights)
    assert s2.classes == classes
    assert s2.training.progress.steps == 2 and s2.training.settings.epochs == 2
    assert s2.training.trainer is not None and s2.training.trainer["steps"] == 2
    p2 = w2.train_panel
    qtbot.waitUntil(lambda: s2.dataset is not None, timeout=WAIT)  # a built-in set is made again
    assert p2.curves.point_counts()["batch"] == 2
    assert p2.step()
    wait_idle(qtbot, p2)
    assert s2.training.progress.steps == 3 and s2.training.progress.batch == 3
    p2.shutdown()
    w2.close()


def test_the_trained_examples_open_with_their_classes_curves_and_data(window, qtbot):
    from cnnplay.app.examples import example_paths
    trained = [p for p in example_paths() if p.suffix == ".cnnplay"]
    assert {p.stem for p in trained} >= {"trained_shapes", "trained_digits", "trained_waveforms"}
    titles = [a.text() for a in window.examples_menu.actions()]
    for path in trained:
        assert window.open_example(path)
        s = window.session
        assert s.output_classes() is not None and s.input_source["kind"] == "dataset"
        assert tuple(s.input_array.shape) == s.network.input_shape
        log = s.training.progress.epochs_log
        assert len(log) >= 3 and log[-1]["test_acc"] > log[0]["test_acc"] - 0.05
        assert any(path.stem.split("_")[1].rstrip("s") in t.lower() for t in titles), titles
        qtbot.waitUntil(lambda: s.dataset is not None, timeout=WAIT)  # its built-in data set is made again
        assert window.train_panel.curves.point_counts()["test_acc"] == len(log)
    digits = next(p for p in trained if p.stem == "trained_digits")
    window.open_example(digits)
    assert window.session.training.progress.epochs_log[-1]["test_acc"] > 0.9


@pytest.mark.parametrize("how", ["close", "reset then close", "deleted without a close"])
def test_closing_the_window_while_training_runs_prints_nothing(qtbot, home, monkeypatch, capfd, how):
    """The training thread is inside a batch when the window goes (held there by the test,
    as a long batch would be); once the batch ends the run must not publish to the deleted
    panel: no "Signal source has been deleted", no exception in any thread, nothing logged."""
    import logging
    import threading

    from PySide6.QtCore import QCoreApplication, QEvent

    from cnnplay.core.training import Trainer

    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    logged = []

    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    handler = Keep(logging.WARNING)
    logging.getLogger("cnnplay").addHandler(handler)
    try:
        inside, release = threading.Event(), threading.Event()
        step = Trainer.step

        def held_step(self, x, y, **kw):
            if self.steps >= 2:  # the third batch waits until the window is gone
                inside.set()
                assert release.wait(WAIT / 1000)
            return step(self, x, y, **kw)

        monkeypatch.setattr(Trainer, "step", held_step)
        w = create_window(session=small_session())
        w.show()
        qtbot.waitExposed(w)
        p = ready(qtbot, w)
        p.set_setting(epochs=100)
        assert p.train()
        run = p.run
        qtbot.waitUntil(inside.is_set, timeout=WAIT)
        assert run.is_alive()
        if how == "reset then close":
            p.reset_weights()  # the run is dropped while its batch still runs
            assert not p.running() and run.is_alive()
        if how != "deleted without a close":
            w.close()
        w.deleteLater()  # what the end of main(), pytest-qt or a script's last reference do
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        del w, p
        release.set()
        qtbot.waitUntil(lambda: not run.is_alive(), timeout=WAIT)
        QCoreApplication.processEvents()
    finally:
        logging.getLogger("cnnplay").removeHandler(handler)
    out, err = capfd.readouterr()
    assert "has been deleted" not in err + out
    assert not thread_errors, [str(e.exc_value) for e in thread_errors]
    assert not logged, logged


def test_the_train_buttons_fit_the_dock_at_the_default_window_size(qtbot, home):
    from PySide6.QtCore import QCoreApplication

    w = create_window(session=small_session())
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: getattr(w, "_docks_sized", False), timeout=WAIT)
    QCoreApplication.processEvents()  # the queued first sizing of the docks
    # The window's default size (offscreen has no real screen: the size it takes without one)
    # and the docks' default widths for it.
    w.resize(1500, 920)
    w._size_docks()
    w.train_dock.raise_()
    p = w.train_panel
    buttons = [p.train_button, p.pause_button, p.step_button, p.reset_button]
    qtbot.waitUntil(lambda: all(b.isVisible() for b in buttons), timeout=WAIT)
    QCoreApplication.processEvents()
    viewport = w.train_dock.widget().viewport()
    assert w.train_dock.width() <= 320  # a narrow side column, as in the app
    for b in buttons:
        assert b.width() >= b.sizeHint().width(), (b.text(), b.width(), b.sizeHint().width(), w.width())
        right = b.mapTo(viewport, b.rect().topRight()).x()
        assert 0 <= b.mapTo(viewport, b.rect().topLeft()).x() and right < viewport.width(), (b.text(), right)
        assert b.toolTip() and any(k in b.toolTip() for k in ("F5", "F10", "Ctrl+Shift+R"))
    w.close()


def test_a_trained_example_shows_its_test_samples_with_labels_at_once(window, qtbot, monkeypatch):
    import threading

    from cnnplay.app.train import run as run_module

    threads = []
    evaluate = run_module.evaluate

    def recording(*args):
        threads.append(threading.current_thread())
        return evaluate(*args)

    monkeypatch.setattr(run_module, "evaluate", recording)
    p = window.train_panel
    from cnnplay.app.examples import example_paths
    index = [q.stem for q in example_paths()].index("trained_shapes")
    window.examples_menu.actions()[index].trigger()  # File > Examples > the trained shapes classifier
    s = window.session
    assert s.input_source["kind"] == "dataset" and s.output_classes() is not None
    steps = window.undo_stack.count()
    assert s.training.progress.steps > 0 and s.training.evaluation is None  # predictions are not saved
    qtbot.waitUntil(lambda: s.dataset is not None and len(p.gallery.shown) > 0, timeout=WAIT)
    assert not p.running() and s.training.progress.steps > 0  # no training ran: only predictions
    assert threads and all(t is not threading.main_thread() for t in threads)
    test = p.split()[1]
    ev = s.training.evaluation
    assert len(ev.predicted) == len(test.y)
    scores = np.asarray(s.network.forward(test.x)[-1])
    np.testing.assert_array_equal(ev.predicted, scores.argmax(axis=1))
    assert len(p.gallery.shown) == min(len(test.y), p.gallery.COUNT)
    classes = list(s.classes)
    for button, entry in zip(p.gallery.buttons, p.gallery.shown):
        i = entry[0]
        text = button.text()
        assert text.startswith(classes[int(ev.predicted[i])])
        if ev.predicted[i] != test.y[i]:
            assert f"true: {classes[int(test.y[i])]}" in text
    assert window.undo_stack.count() == steps  # the predictions are no edit: no undo step


def test_an_expensive_live_refresh_is_shown_less_often_and_the_next_run_knows(window, qtbot, monkeypatch):
    """Showing a snapshot that costs the GUI thread 80 ms of CPU at 4 a second would take a
    third of the time: the run publishes less often, and the next run starts at that rate."""
    import time

    from cnnplay.app.train import run as run_module
    p = ready(qtbot, window)
    s = window.session
    shown = p._refresh_progress

    def expensive():
        end = time.thread_time() + 0.08
        while time.thread_time() < end:  # CPU time on the GUI thread, as painting would take
            pass
        shown()

    monkeypatch.setattr(p, "_refresh_progress", expensive)
    p.set_setting(epochs=1000)
    assert p._publish_interval == run_module.PUBLISH_SECONDS
    assert p.train()
    run = p.run
    qtbot.waitUntil(lambda: run.publish_interval > 1.5 * run_module.PUBLISH_SECONDS, timeout=WAIT)
    p.pause()
    wait_idle(qtbot, p)
    learned = p._publish_interval
    assert learned > 1.5 * run_module.PUBLISH_SECONDS and s.training.progress.steps > 0
    assert p.train()
    assert p.run.publish_interval == learned
    p.pause()
    wait_idle(qtbot, p)


def test_a_click_while_training_holds_training_back_until_its_field_is_painted(window, qtbot):
    """The click's request holds training's kernel launches back (launch.hold) so the
    field is computed and painted without sharing the cores; then training goes on."""
    from cnnplay.core.kernels import launch
    p = ready(qtbot, window)
    s, c = window.session, window.controller
    p.set_setting(epochs=1000)
    assert p.train()
    qtbot.waitUntil(lambda: s.training.progress.steps >= 1, timeout=WAIT)
    s.select_unit(0, (0, 2, 2))
    hold = c._hold
    assert hold is not None and hold.held and c.holding()  # held from the request on
    qtbot.waitUntil(c.field_is_current, timeout=WAIT)
    qtbot.waitUntil(lambda: not c.holding(), timeout=5000)  # released once the field is painted
    assert not hold.held and not launch._holds
    steps = s.training.progress.steps
    qtbot.waitUntil(lambda: s.training.progress.steps > steps, timeout=WAIT)  # training went on
    p.pause()
    wait_idle(qtbot, p)


def test_training_in_the_window_measures_its_conv_layers_once(qtbot, home, monkeypatch):
    """Train pressed on a network with a 16 -> 32 conv layer (candidates besides the
    rules' choice at batch 32, kernels/tuning.py), measuring on: the training thread's
    first steps measure that layer's shape once and keep one of its candidates, the
    run goes on to the end, and the layer with fewer channels is not measured."""
    from cnnplay.core.kernels import conv, tuning
    monkeypatch.setattr(tuning, "ENABLED", True)
    measured = []
    real = tuning.tune
    monkeypatch.setattr(tuning, "tune", lambda k, *a, **kw: measured.append(k) or real(k, *a, **kw))
    spec = {"input": [1, 16, 16], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 4}]}
    x = np.random.default_rng(0).random((1, 16, 16), dtype=np.float32)
    w = create_window(session=Session(spec, x, {"kind": "test"}))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    try:
        p = w.train_panel
        p.load_builtin("shapes", size=16, count=96, noise=0.05, seed=0, channels=1)
        qtbot.waitUntil(lambda: p.session.dataset is not None, timeout=WAIT)
        assert p.match_outputs()
        p.set_setting(batch_size=32, epochs=4, optimizer="sgd", lr=0.05, momentum=0.9)
        assert p.train()
        wait_idle(qtbot, p)
        t = w.session.training
        assert t.progress.epoch == 4 and t.progress.steps == 4 * t.progress.batches_per_epoch
        plan = conv._plan(16, 16, 16, 3, 3, (1, 1), (1, 1), (1, 1))
        key = tuning.key(plan, 32, 32)
        assert tuning.decisions().get(key) in conv.candidates(plan, 32, 32)
        assert set(measured) <= {key}  # only shapes with candidates are measured
        assert all(k == key for k in tuning.decisions())  # the 1 -> 16 layer keeps the rules
    finally:
        w.train_panel.shutdown()
