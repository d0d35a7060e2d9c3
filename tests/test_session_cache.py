"""The session model (edits, ids, undo snapshots, selection) and the incremental cache."""

import numpy as np
import pytest

from cnnplay import Network, NetworkError
from cnnplay.core.cache import Cancelled, ForwardCache
from cnnplay.core.session import Session

SPEC = {"input": [1, 16, 16], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2}, {"type": "conv2d", "out_channels": 2, "kernel_size": 3}]}


def make_session():
    return Session(SPEC, np.zeros((1, 16, 16), np.float32), {"kind": "test"})


def test_edits_keep_weights_of_unchanged_layers_and_ids():
    s = make_session()
    w0 = s.network.params(0)["weight"].copy()
    w3 = s.network.params(3)["weight"].copy()
    ids = [layer["id"] for layer in s.layers]
    assert len(set(ids)) == 4
    s.insert_layer(0, {"type": "batchnorm"})
    assert [layer["id"] for layer in s.layers][1:] == ids
    assert (s.network.params(1)["weight"] == w0).all() and (s.network.params(4)["weight"] == w3).all()
    s.move_layer(0, 2)  # batchnorm between conv and relu
    assert [layer["type"] for layer in s.layers] == ["conv2d", "relu", "batchnorm", "maxpool2d", "conv2d"]
    assert (s.network.params(0)["weight"] == w0).all()
    s.update_layer(0, out_channels=5)  # conv0 changes shape; batchnorm and conv3 follow
    assert s.network.params(0)["weight"].shape == (5, 1, 3, 3)
    assert s.network.params(4)["weight"].shape == (2, 5, 3, 3)


def test_invalid_edit_keeps_prefix_and_spec():
    s = make_session()
    s.update_layer(2, kernel_size=40)
    assert s.error.layer == 2 and len(s.network) == 2
    assert s.layers[2]["kernel_size"] == 40 and len(s.layers) == 4  # nothing the user typed is lost
    s.update_layer(2, kernel_size=2)
    assert s.error is None and len(s.network) == 4


def test_snapshots_restore_everything_and_signal():
    s = make_session()
    events = []
    s.network_changed.connect(lambda: events.append("net"))
    s.input_changed.connect(lambda: events.append("input"))
    before = s.state
    s.remove_layer(1)
    s.set_input(np.ones((3, 16, 16)), {"kind": "rgb"})
    assert s.network.input_shape == (3, 16, 16) and s.network.params(0)["weight"].shape == (4, 3, 3, 3)
    token = s.input_token
    s.restore(before)
    assert s.network is before.network and s.input_array.shape == (1, 16, 16)
    assert s.input_token != token
    assert events == ["net", "input", "net", "input", "net"]


def test_selection_follows_the_layer_and_survives_edits_where_the_unit_exists():
    s = make_session()
    s.select_unit(3, (1, 2, 3))
    assert s.selected_unit == (3, (1, 2, 3))
    s.insert_layer(0, {"type": "relu"})
    assert s.selected_unit == (4, (1, 2, 3))
    s.update_layer(4, out_channels=1)  # channel 1 no longer exists
    assert s.selected_unit is None
    with pytest.raises(NetworkError, match="outside"):
        s.select_unit(1, (0, 99, 0))


class CountingNetwork:
    """Wraps layer_forward to count which layers are computed."""

    def __init__(self, monkeypatch):
        self.calls = []
        calls = self.calls

        def fake_forward(net, i, x):
            calls.append(i)
            return np.full(net.output_shapes[i], float(i), np.float32)

        monkeypatch.setattr(Network, "layer_forward", fake_forward)


def test_cache_recomputes_only_from_the_changed_layer(monkeypatch):
    counter = CountingNetwork(monkeypatch)
    s = make_session()
    cache = ForwardCache()
    x = s.input_array
    outs, first = cache.run(s.network, x, s.input_token)
    assert first == 0 and counter.calls == [0, 1, 2, 3] and len(outs) == 4
    counter.calls.clear()
    cache.run(s.network, x, s.input_token)
    assert counter.calls == []  # nothing changed
    s.update_layer(2, stride=1)
    _, first = cache.run(s.network, x, s.input_token)
    assert first == 2 and counter.calls == [2, 3]
    counter.calls.clear()
    s.set_layer_params(3, bias=np.ones(2))
    cache.run(s.network, x, s.input_token)
    assert counter.calls == [3]
    counter.calls.clear()
    cache.run(s.network, x, s.input_token + 1)  # a new input: everything
    assert counter.calls == [0, 1, 2, 3]


def test_cache_keeps_what_a_cancelled_pass_computed(monkeypatch):
    counter = CountingNetwork(monkeypatch)
    s = make_session()
    cache = ForwardCache()
    with pytest.raises(Cancelled):
        cache.run(s.network, s.input_array, 0, should_stop=lambda: len(counter.calls) >= 2)
    assert cache.reusable(s.network, 0) == 2
    counter.calls.clear()
    cache.run(s.network, s.input_array, 0)
    assert counter.calls == [2, 3]
