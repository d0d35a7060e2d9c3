"""The memory budget: huge layers are refused instantly, without allocating."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from cnnplay import Network, NetworkError
from cnnplay.core import memory


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv("CNNPLAY_MEMORY_LIMIT", raising=False)
    memory.set_limit(None)
    yield
    memory.set_limit(None)


def refused(spec, **kw) -> tuple[NetworkError, float, int]:
    """(error, seconds, peak bytes allocated) of a refused from_dict."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(NetworkError) as info:
            Network.from_dict(spec, **kw)
        return info.value, time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_default_limit_has_a_ceiling(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 40)  # a machine with 1 TB free
    assert memory.limit_bytes() == memory.DEFAULT_CEILING
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
    assert memory.limit_bytes() == 1 << 29


@pytest.mark.parametrize("spec, layer", [
    # 100k channels on the default working size
    ({"input": [3, 256, 256], "layers": [{"type": "conv2d", "out_channels": 100_000, "kernel_size": 3}]}, 0),
    # a 10**9-parameter linear layer
    ({"input": [1, 1000], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 1_000_000}]}, 1),
    # a 10**9-parameter convolution on a tiny map
    ({"input": [1000, 4, 4], "layers": [{"type": "conv2d", "out_channels": 1_000_000, "kernel_size": 1}]}, 0),
    # the largest numbers the fields accept
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2**31 - 1, "kernel_size": 3,
                                      "padding": 2**31 - 1}]}, 0),
    # many layers, each fine alone
    ({"input": [64, 256, 256], "layers": [{"type": "relu"}] * 200}, None),
])
def test_huge_layers_refused_instantly_without_allocating(monkeypatch, spec, layer):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 40)  # even on a huge machine
    e, seconds, peak = refused(spec)
    assert "memory limit" in str(e) and "GB" in str(e)
    if layer is not None:
        assert e.layer == layer
    assert seconds < 0.5
    assert peak < 20 << 20, f"allocated {peak} bytes before refusing"


def test_message_gives_estimate_and_limit():
    memory.set_limit(1 << 20)
    e, _, _ = refused({"input": [3, 64, 64], "layers": [{"type": "conv2d", "out_channels": 128, "kernel_size": 3}]})
    assert str(e) == ("layer 0 (conv2d): the network would need about 1.9 MB up to here, "
                      "above the memory limit of 1.0 MB")


def test_input_itself_over_budget():
    memory.set_limit(1 << 20)
    e, _, _ = refused({"input": [3, 1000, 1000], "layers": []})
    assert e.field == "input" and "3x1000x1000" in str(e) and "memory limit" in str(e)


def test_partial_keeps_layers_before_the_refused_one():
    memory.set_limit(4 << 20)
    spec = {"input": [3, 64, 64], "layers": [{"type": "relu"}, {"type": "conv2d", "out_channels": 1000,
                                                                 "kernel_size": 3}, {"type": "relu"}]}
    net = Network.from_dict(spec, partial=True)
    assert len(net) == 1 and net.error.layer == 1 and "memory limit" in str(net.error)


def test_limit_from_environment(monkeypatch):
    monkeypatch.setenv("CNNPLAY_MEMORY_LIMIT", "100K")
    assert memory.limit_bytes() == 100 << 10
    e, _, _ = refused({"input": [3, 128, 128], "layers": []})
    assert "100.0 KB" in str(e)
    monkeypatch.setenv("CNNPLAY_MEMORY_LIMIT", "lots")  # unreadable: back to the default
    assert memory.limit_bytes() <= memory.DEFAULT_CEILING


def test_accepted_network_fits_its_estimate():
    memory.set_limit(64 << 20)
    net = Network.from_dict({"input": [3, 64, 64], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3}, {"type": "relu"},
        {"type": "flatten"}, {"type": "linear", "out_features": 10}]})
    assert net.estimate_bytes() <= memory.limit_bytes()
