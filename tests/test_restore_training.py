"""Nothing the user built is lost to a training state that no longer fits: an edit
drops the optimizer state it made stale, and a restored session whose training state
does not fit keeps the network, its weights, the input and the view, leaves out only
what does not fit and says so. Through the real Session, Autosaver and window."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from cnnplay.app.autosave import Autosaver, restore
from cnnplay.app.examples import default_session
from cnnplay.app.main import create_window
from cnnplay.app.train.state import Training
from cnnplay.core.fileformat import atomic_write, load_all, network_bytes

pytest.importorskip("cnnplay.core.training")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from cnnplay import Trainer  # noqa: E402


def optimizer_keys(training) -> set:
    return {k for k in training.trainer["arrays"] if k.startswith("optimizer/")}


def assert_fits(training, net):
    """The trainer state fits the network: every buffer has its parameter's shape and
    the full check of Trainer.from_state passes."""
    for key in optimizer_keys(training):
        _, i, name, _ = key.split("/")
        assert training.trainer["arrays"][key].shape == net.param_shapes(int(i))[name], key
    Trainer.from_state(net, training.trainer)


def test_a_network_edited_after_training_is_restored_on_the_next_start(qtbot, home):
    """The report: the start-up example's first conv from 8 to 5 channels, quit, start
    again. Before the fix the autosave kept the old optimizer state, the restore refused
    the file, moved it aside as corrupt and opened the default network."""
    w = create_window()  # the first start: the trained shapes classifier with its optimizer state
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    s = w.session
    assert s.layers[0]["type"] == "conv2d" and s.layers[0]["out_channels"] == 8
    assert s.training is not None and any(k.startswith("optimizer/0/") for k in optimizer_keys(s.training))
    s.select_layer(0)
    spin = w.inspector.editors["out_channels"]
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "5")
    qtbot.keyClick(spin, Qt.Key.Key_Tab)
    assert s.layers[0]["out_channels"] == 5 and s.error is None
    spec, weights = s.spec, [s.network.params(i) for i in range(len(s.network))]
    x, view = s.input_array.copy(), dict(s.view)
    with qtbot.waitSignal(w.autosaver.saved, timeout=10_000):
        pass
    w.close()  # quit as a user quits: the autosave is flushed

    w2 = create_window()
    qtbot.addWidget(w2)
    s2 = w2.session
    assert not list(home.glob("autosave.corrupt-*"))
    load_all(home / "autosave.cnnplay")  # the file loads as it is, training state and all
    assert s2.spec == spec and s2.layers[0]["out_channels"] == 5
    for i, arrays in enumerate(weights):
        for name, a in arrays.items():
            np.testing.assert_array_equal(s2.network.params(i)[name], a)
    np.testing.assert_array_equal(s2.input_array, x)
    assert s2.view == view
    assert "could not be restored" not in w2.banner.label.text()
    assert_fits(s2.training, s2.network)
    assert not any(k.startswith("optimizer/0/") for k in optimizer_keys(s2.training))
    w2.close()


def test_an_edit_drops_the_stale_optimizer_state_and_undo_brings_it_back(qtbot, home):
    w = create_window(session=default_session())
    qtbot.addWidget(w)
    s = w.session
    old = s.training
    kept = {k for k in optimizer_keys(old) if not k.startswith(("optimizer/0/", "optimizer/1/", "optimizer/4/weight"))}
    w.editor.update_layer(0, out_channels=5)
    t = s.training
    assert isinstance(t, Training) and t.settings == old.settings and t.progress is old.progress
    assert optimizer_keys(t) == kept  # the conv, its batch norm and the next conv's weight reshaped
    assert_fits(t, s.network)
    assert t.reset_note == ("Dropped what no longer fit the network: the optimizer state of "
                            "layer 0 (conv2d) bias, weight; layer 1 (batchnorm) bias, weight; "
                            "layer 4 (conv2d) weight; training starts it afresh.")
    w.undo_action.trigger()
    assert s.layers[0]["out_channels"] == 8 and s.training is old
    w.close()


def stale_autosave(home):
    """The files main wrote for the report's scenario: the edited network with the
    optimizer state of the network before the edit. Returns the edited session."""
    s = default_session()
    stale = s.training.trainer
    s.update_layer(0, out_channels=5)
    s.set_view(levels="channel")
    s.select_layer(4)
    saver = Autosaver(s)
    saver.save_now()
    assert saver.flush()
    saver.shutdown()
    extra = s.extra()
    extra["input_shape"] = list(s.input_array.shape)
    atomic_write(home / "autosave.cnnplay", network_bytes(s.network, extra, stale))
    return s


def test_restore_of_a_stale_training_state_keeps_the_network_and_says_what_it_dropped(qapp, home):
    s = stale_autosave(home)
    r = restore()
    assert r.session is not None and r.moved_to is None and not list(home.glob("autosave.corrupt-*"))
    s2 = r.session
    assert s2.spec == s.spec
    for i in range(len(s.network)):
        for name, a in s.network.params(i).items():
            np.testing.assert_array_equal(s2.network.params(i)[name], a)
    np.testing.assert_array_equal(s2.input_array, s.input_array)
    assert s2.input_source == s.input_source and s2.view == s.view and s2.selected_layer == 4
    assert r.messages == ["Your network is restored, but its saved training state did not fit it, so this "
                          "was left out: the optimizer state of layer 0 (conv2d) bias, weight; layer 1 "
                          "(batchnorm) bias, weight; layer 4 (conv2d) weight. Train starts that afresh; "
                          "the training settings and curves are kept."]
    t = s2.training
    assert t.progress.steps == s.training.progress.steps > 0  # the curves are kept
    assert optimizer_keys(t) == optimizer_keys(s.training)  # what fits stays
    assert_fits(t, s2.network)


def test_restore_of_an_unreadable_training_state_keeps_the_network(qapp, home):
    s = stale_autosave(home)
    data = (home / "autosave.cnnplay").read_bytes()
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, b"garbage" if info.filename == "training.npz" else zin.read(info))
    (home / "autosave.cnnplay").write_bytes(out.getvalue())
    r = restore()
    assert r.session is not None and not list(home.glob("autosave.corrupt-*"))
    assert r.session.spec == s.spec
    assert len(r.messages) == 1 and "the whole optimizer state (not an .npz archive)" in r.messages[0]
    assert r.session.training.trainer is None and r.session.training.progress.steps > 0


def test_a_really_unreadable_autosave_is_still_moved_aside(qapp, home):
    stale_autosave(home)
    data = (home / "autosave.cnnplay").read_bytes()
    (home / "autosave.cnnplay").write_bytes(data[: len(data) // 2])
    r = restore()
    assert r.session is None and r.moved_to is not None and r.moved_to.exists()
    assert "could not be restored" in r.messages[0] and "truncated or damaged" in r.messages[0]


def test_file_open_of_a_stale_training_state_opens_the_network_and_says_what_it_left_out(qtbot, home, tmp_path):
    """A file saved by File > Save before the fix holds the same stale pair: File > Open
    refused it whole ('optimizer arrays claim ...'); now the network opens."""
    s = default_session()
    stale = s.training.trainer
    s.update_layer(0, out_channels=5)
    path = tmp_path / "mine.cnnplay"
    atomic_write(path, network_bytes(s.network, s.extra(), stale))
    w = create_window(session=default_session())
    qtbot.addWidget(w)
    assert w.open_file(path)
    s2 = w.session
    assert s2.layers[0]["out_channels"] == 5
    np.testing.assert_array_equal(s2.network.params(0)["weight"], s.network.params(0)["weight"])
    assert w.banner.label.text() == (
        "mine.cnnplay is open, but its saved training state did not fit it, so this was left out: the "
        "optimizer state of layer 0 (conv2d) bias, weight; layer 1 (batchnorm) bias, weight; layer 4 "
        "(conv2d) weight. Train starts that afresh; the training settings and curves are kept.")
    assert_fits(s2.training, s2.network)
    w.close()
