"""Issue 19 in the app: a path named inside a file is read only when the user asks;
a bad part of a file (its input source) costs only that part."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage

from cnnplay import Network
from cnnplay.app import imageio
from cnnplay.app.input_panel import load_input
from cnnplay.app.main import create_window
from cnnplay.core import signals
from cnnplay.core.errors import InputError
from cnnplay.core.fileformat import save_network
from cnnplay.core.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GRAY = {"input": [1, 16, 16], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}]}
RGB = {"input": [3, 12, 12], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                                        {"type": "relu"}]}


@pytest.fixture
def window(qtbot, home):
    x = np.random.default_rng(0).random(GRAY["input"], dtype=np.float32)
    w = create_window(session=Session(GRAY, x, {"kind": "image", "sample": "camera.png", "mode": "gray",
                                                "max_side": 16}))
    qtbot.addWidget(w)
    return w


@pytest.fixture
def file_reads(monkeypatch):
    """Paths the image and signal loaders were asked to read."""
    seen = []
    real_image, real_signal = imageio.load_image, signals.load_signal
    monkeypatch.setattr(imageio, "load_image", lambda p, *a, **k: seen.append(str(p)) or real_image(p, *a, **k))
    monkeypatch.setattr(signals, "load_signal", lambda p: seen.append(str(p)) or real_signal(p))
    return seen


def red_png(path):
    img = QImage(12, 10, QImage.Format.Format_RGB32)
    img.fill(QColor(255, 0, 0))
    assert img.save(str(path))
    return path


def test_a_path_inside_an_opened_file_is_offered_not_read(window, qtbot, tmp_path, file_reads):
    picture = red_png(tmp_path / "red.png")
    net_path = tmp_path / "rgb.cnnplay"
    save_network(Network.from_dict(RGB), net_path, extra={
        "input_source": {"kind": "image", "path": str(picture), "mode": "rgb", "max_side": 64}})
    assert window.open_file(net_path)
    s = window.session
    assert [t.name for t in s.network.layer_types] == ["conv2d", "relu"]  # the file's network, on an RGB input
    assert s.input_array.shape[0] == 3 and s.input_source.get("sample")
    assert str(picture) not in file_reads  # not read...
    button = window.banner.action_button
    assert window.banner.isVisibleTo(window) and button.isVisibleTo(window)  # ...but offered
    assert button.text() == "Load red.png" and "red.png" in window.banner.label.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # the user asks
    assert file_reads[-1] == str(picture) and file_reads.count(str(picture)) == 1
    assert s.input_source["path"] == str(picture) and s.input_array.shape == (3, 10, 12)
    assert np.allclose(s.input_array[0], 1.0) and np.allclose(s.input_array[1:], 0.0)
    assert not button.isVisibleTo(window)


def test_a_fifo_named_inside_a_file_never_hangs_the_open(window, tmp_path, file_reads):
    fifo = tmp_path / "cat.png"
    os.mkfifo(fifo)
    net_path = tmp_path / "rgb.cnnplay"
    save_network(Network.from_dict(RGB), net_path, extra={
        "input_source": {"kind": "image", "path": str(fifo), "mode": "rgb", "max_side": 64}})
    assert window.open_file(net_path)
    assert str(fifo) not in file_reads and window.session.network.input_shape[0] == 3
    assert window.banner.action_button.text() == "Load cat.png"


@pytest.mark.parametrize("source", [
    {"kind": "signal", "generate": "sine", "length": "abc"},
    {"kind": "signal", "generate": "sine", "length": 10 ** 30},
    {"kind": "signal", "generate": "sine", "channels": [1]},
    {"kind": "signal", "generate": "sine", "seed": -1},
    {"kind": "signal", "generate": "sawtooth"},
    {"kind": "image", "sample": ["x"]},
    {"kind": 3},
])
def test_a_bad_input_source_is_an_input_error(source):
    with pytest.raises(InputError):
        load_input(source)


def test_a_bad_input_source_in_an_opened_file_costs_only_the_input(window, tmp_path):
    net_path = tmp_path / "sig.cnnplay"
    spec = {"input": [2, 64], "layers": [{"type": "conv1d", "out_channels": 3, "kernel_size": 5}]}
    save_network(Network.from_dict(spec), net_path,
                 extra={"input_source": {"kind": "signal", "generate": "sine", "length": "abc"}})
    assert window.open_any(str(net_path))  # the command line's and a drop's path
    s = window.session
    assert s.network.input_shape == (2, 64) and s.layers[0]["type"] == "conv1d"
    assert s.input_array.shape == (2, 64)


def plain(layers):
    return [{k: v for k, v in layer.items() if k != "id"} for layer in layers]


def autosave_with(home, source, spec=RGB):
    """An autosave of `spec` whose input array is gone, naming `source` as its input."""
    home.mkdir(parents=True, exist_ok=True)
    net = Network.from_dict(spec, seed=3)
    save_network(net, home / "autosave.cnnplay", extra={"spec": spec, "input_source": source})
    return net


def test_an_autosave_naming_a_path_restores_the_network_and_offers_the_file(qtbot, home, tmp_path, file_reads):
    picture = red_png(tmp_path / "red.png")
    net = autosave_with(home, {"kind": "image", "path": str(picture), "mode": "rgb", "max_side": 64})
    w = create_window()
    qtbot.addWidget(w)
    assert str(picture) not in file_reads
    assert w.session.network.input_shape[0] == 3 and plain(w.session.layers) == RGB["layers"]
    assert np.array_equal(w.session.network.params(0)["weight"], net.params(0)["weight"])
    assert "Your network is restored" in w.banner.label.text()
    assert w.banner.action_button.text() == "Load red.png"
    assert not list(home.glob("autosave.corrupt-*"))


@pytest.mark.parametrize("source", [
    {"kind": "signal", "generate": "sine", "length": "abc"},
    {"kind": "image", "sample": 5},
    {"kind": "nonsense"},
])
def test_an_autosave_with_a_bad_input_source_keeps_its_network(qtbot, home, source):
    net = autosave_with(home, source)
    w = create_window()
    qtbot.addWidget(w)
    assert not list(home.glob("autosave.corrupt-*")), "a valid network was thrown away"
    assert plain(w.session.layers) == RGB["layers"]
    assert np.array_equal(w.session.network.params(0)["weight"], net.params(0)["weight"])
    assert "Your network is restored" in w.banner.label.text() or "could not be made" in w.banner.label.text()


def test_an_autosaved_input_that_is_not_a_regular_file_is_not_read(qtbot, home):
    autosave_with(home, {"kind": "image", "sample": "camera.png", "mode": "rgb", "max_side": 12})
    os.mkfifo(home / "autosave-input.npy")  # a FIFO where the input array should be
    w = create_window()
    qtbot.addWidget(w)
    assert plain(w.session.layers) == RGB["layers"] and w.session.input_array.shape[0] == 3


def test_a_file_on_the_command_line_that_breaks_the_opener_costs_only_that_file(window, tmp_path, monkeypatch):
    from cnnplay.app import main as main_module
    net_path = tmp_path / "n.cnnplay"
    save_network(Network.from_dict(RGB), net_path)
    before = window.session.state
    monkeypatch.setattr(type(window), "open_file", lambda self, p: (_ for _ in ()).throw(RuntimeError("boom")))
    assert not main_module.open_from_command_line(window, str(net_path))
    assert "n.cnnplay" in window.banner.label.text() and "keeps running" in window.banner.label.text()
    assert window.session.state is before
