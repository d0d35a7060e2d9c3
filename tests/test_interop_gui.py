"""File > Export > PyTorch / ONNX and File > Open of .onnx files, through the real
window and menu actions (QFileDialog monkeypatched to answer with a path)."""

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

from cnnplay.app import interop_menu
from cnnplay.app.main import create_window
from cnnplay.core.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEC = {"input": [1, 16, 16], "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 4},
]}


@pytest.fixture
def window(qtbot, home):
    x = np.random.default_rng(0).random((1, 16, 16), dtype=np.float32)
    w = create_window(session=Session(SPEC, x, {"kind": "image", "sample": "camera.png", "mode": "gray",
                                                 "max_side": 16}))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def answer_dialogs(monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))


def messages(window):
    seen = []
    window.message.connect(seen.append)
    return seen


def test_export_menu_writes_pytorch_and_onnx_files(window, qtbot, monkeypatch, tmp_path):
    pytest.importorskip("onnx")
    assert [a.text() for a in window.interop.export_menu.actions()] == ["&PyTorch (.py)...", "&ONNX (.onnx)..."]
    answer_dialogs(monkeypatch, tmp_path / "mine.py")
    with qtbot.waitSignal(window.interop.done, timeout=20000) as blocker:
        window.interop.pytorch_action.trigger()
    assert "Exported to PyTorch" in blocker.args[0]
    assert (tmp_path / "mine.py").read_text().count("nn.") >= len(SPEC["layers"])
    with np.load(tmp_path / "mine.npz", allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["0.weight"], window.session.network.params(0)["weight"])

    answer_dialogs(monkeypatch, tmp_path / "mine")  # the suffix is added
    with qtbot.waitSignal(window.interop.done, timeout=20000) as blocker:
        window.interop.onnx_action.trigger()
    assert "Exported to ONNX" in blocker.args[0]
    from cnnplay import import_onnx
    back = import_onnx(tmp_path / "mine.onnx")
    assert [t.name for t in back.layer_types] == [t["type"] for t in SPEC["layers"]]


def test_open_an_onnx_model_replaces_the_network_as_one_undo_step(window, qtbot, monkeypatch, tmp_path):
    pytest.importorskip("onnx")
    from cnnplay import Network, export_onnx
    other = Network.from_dict({"input": [3, 12, 10], "layers": [
        {"type": "conv2d", "out_channels": 5, "kernel_size": 3}, {"type": "leaky_relu"},
        {"type": "flatten"}, {"type": "linear", "out_features": 2}]}, seed=7)
    export_onnx(other, tmp_path / "model.onnx")
    answer_dialogs(monkeypatch, tmp_path / "model.onnx")
    before = window.session.network.to_dict()
    with qtbot.waitSignal(window.interop.done, timeout=20000) as blocker:
        window.open_action.trigger()
    assert "Opened model.onnx (ONNX): 4 layers" in blocker.args[0]
    net = window.session.network
    assert net.error is None and net.input_shape == (3, 12, 10)
    assert window.session.input_array.shape == (3, 12, 10)
    assert [t.name for t in net.layer_types] == ["conv2d", "leaky_relu", "flatten", "linear"]
    np.testing.assert_array_equal(net.params(3)["weight"], other.params(3)["weight"])  # weights kept
    assert window.path is None  # Ctrl+S must not write a .cnnplay zip over the .onnx file
    window.undo_stack.undo()
    assert window.session.network.to_dict()["layers"] == before["layers"]


def test_a_bad_onnx_file_gives_a_message_and_keeps_the_network(window, qtbot, monkeypatch, tmp_path):
    pytest.importorskip("onnx")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07" + bytes(range(200)))
    answer_dialogs(monkeypatch, bad)
    seen = messages(window)
    before = window.session.network.to_dict()
    with qtbot.waitSignal(window.interop.done, timeout=20000) as blocker:
        window.open_action.trigger()
    assert blocker.args[0] == ""
    assert any("broken.onnx" in m and ("not an ONNX model" in m or "damaged" in m) for m in seen), seen
    assert window.session.network.to_dict() == before


def test_without_onnx_the_menu_items_say_how_to_install_it(window, qtbot, monkeypatch, tmp_path):
    monkeypatch.setattr(interop_menu, "onnx_available", lambda: False)
    window.interop._sync()
    assert 'pip install "cnnplay[onnx]"' in window.interop.onnx_action.statusTip()
    seen = messages(window)
    answer_dialogs(monkeypatch, tmp_path / "x.onnx")
    window.interop.onnx_action.trigger()
    window.open_file(tmp_path / "x.onnx")
    assert len(seen) == 2 and all('pip install "cnnplay[onnx]"' in m for m in seen)
    assert not (tmp_path / "x.onnx").exists()


def test_an_invalid_network_is_not_exported(window, qtbot, monkeypatch, tmp_path):
    window.editor.edit("break", lambda s: s.update_layer(5, out_features=0) or True)
    assert window.session.error is not None
    answer_dialogs(monkeypatch, tmp_path / "x.py")
    seen = messages(window)
    assert window.interop.export_pytorch_dialog() is False
    assert any("fix the invalid layer" in m for m in seen)
    assert not (tmp_path / "x.py").exists()


def test_dropping_an_onnx_file_opens_it(window, qtbot, tmp_path):
    pytest.importorskip("onnx")
    from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    from cnnplay import Network, export_onnx
    other = Network.from_dict({"input": [1, 8, 8], "layers": [{"type": "conv2d",
                                                               "out_channels": 2, "kernel_size": 3}]}, seed=3)
    export_onnx(other, tmp_path / "dropped.onnx")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped.onnx"))])
    actions = Qt.DropAction.CopyAction | Qt.DropAction.MoveAction
    enter = QDragEnterEvent(QPoint(700, 400), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(700, 400), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.interop.done, timeout=20000) as blocker:
        QApplication.sendEvent(window, drop)
    assert "Opened dropped.onnx" in blocker.args[0]
    assert window.session.network.output_shapes == [(2, 6, 6)]
    np.testing.assert_array_equal(window.session.network.params(0)["weight"], other.params(0)["weight"])


def test_export_after_training_has_the_trainers_train_function(window, qtbot, monkeypatch, tmp_path):
    import cnnplay
    if not hasattr(cnnplay, "Trainer"):
        pytest.skip("cnnplay.Trainer has not landed in this build")
    trainer = cnnplay.Trainer(window.session.network, optimizer="adam", lr=0.003, weight_decay=0.001)
    window.session.set_training(trainer.state())
    answer_dialogs(monkeypatch, tmp_path / "trained.py")
    with qtbot.waitSignal(window.interop.done, timeout=20000):
        window.interop.pytorch_action.trigger()
    src = " ".join((tmp_path / "trained.py").read_text().split())
    assert "def train(model, loader, epochs=1):" in src
    assert "torch.optim.Adam( model.parameters(), lr=0.003, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.001 )" \
        in src or "torch.optim.Adam(model.parameters(), lr=0.003, betas=(0.9, 0.999), eps=1e-08, " \
        "weight_decay=0.001)" in src


def test_the_newest_open_wins(window, qtbot, monkeypatch, tmp_path):
    pytest.importorskip("onnx")
    import threading

    from cnnplay import Network, export_onnx
    for name, ch in (("a", 2), ("b", 5)):
        export_onnx(Network.from_dict({"input": [1, 8, 8], "layers": [
            {"type": "conv2d", "out_channels": ch, "kernel_size": 3}]}), tmp_path / f"{name}.onnx")
    release = threading.Event()
    real = interop_menu.read_with_ids

    def slow_for_a(path):
        if path.name == "a.onnx":
            release.wait(30)
        return real(path)

    monkeypatch.setattr(interop_menu, "read_with_ids", slow_for_a)
    window.open_file(tmp_path / "a.onnx")
    with qtbot.waitSignal(window.interop.done, timeout=20000) as blocker:
        window.open_file(tmp_path / "b.onnx")
    assert "Opened b.onnx" in blocker.args[0]
    with qtbot.waitSignal(window.interop.finished, timeout=20000):  # a's late result arrives...
        release.set()
    assert window.session.network.output_shapes == [(5, 6, 6)]  # ...and is dropped
