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


def test_available_memory_is_read_at_most_every_cache_seconds(monkeypatch):
    """Every edit checks the budget on the GUI thread: /proc/meminfo is read again only
    after CACHE_SECONDS, and the value then follows the OS."""
    reads, now = [], [1000.0]
    monkeypatch.setattr(memory, "_read_available", lambda: reads.append(now[0]) or (len(reads) << 30))
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(memory, "_cached", (float("-inf"), 0))
    assert memory.available_bytes() == 1 << 30
    now[0] += memory.CACHE_SECONDS / 2
    assert memory.available_bytes() == 1 << 30 and memory.limit_bytes() == 1 << 29 and len(reads) == 1
    now[0] += memory.CACHE_SECONDS
    assert memory.available_bytes() == 2 << 30 and len(reads) == 2
    now[0] -= 10 * memory.CACHE_SECONDS  # a clock that went back: read again
    assert memory.available_bytes() == 3 << 30


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


# -- issue 19: the kernels' temporary buffers are part of the budget -------------------------

def test_padding_far_beyond_the_map_is_refused_instantly_without_allocating(monkeypatch):
    """conv2d kernel 1, padding 10000, stride 20000 on 1x8x8: a 2x2 output, but the
    kernel's padded copy would take 6 GB. Its working memory is in the estimate."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 << 30)
    spec = {"input": [1, 8, 8], "layers": [{"type": "conv2d", "out_channels": 1, "kernel_size": 1,
                                            "padding": 10000, "stride": 20000}]}
    e, seconds, peak = refused(spec)
    assert e.layer == 0 and "working memory" in str(e) and "GB" in str(e) and "memory limit" in str(e)
    assert seconds < 0.5 and peak < 20 << 20


@pytest.mark.parametrize("layer", [
    {"type": "conv2d", "out_channels": 1, "kernel_size": 1, "padding": 3000, "stride": 4000},
    {"type": "conv2d", "out_channels": 1, "kernel_size": 3, "padding": 1000, "stride": [1500, 1]},
    {"type": "conv2d", "out_channels": 1, "kernel_size": 2, "padding": 2000, "dilation": 3000},
    {"type": "conv2d", "out_channels": 1, "kernel_size": [1, 3], "padding": [0, 400000], "stride": [1, 9]},
])
def test_every_kind_of_large_padded_copy_is_counted(layer):
    memory.set_limit(32 << 20)
    with pytest.raises(NetworkError, match="working memory"):
        Network.from_dict({"input": [2, 8, 8], "layers": [layer]})


def test_conv1d_padding_is_counted_too():
    memory.set_limit(32 << 20)
    with pytest.raises(NetworkError, match="working memory"):
        Network.from_dict({"input": [1, 8], "layers": [{"type": "conv1d", "out_channels": 2, "kernel_size": 1,
                                                        "padding": 5_000_000, "stride": 9_000_000}]})


def test_a_trainer_can_check_its_batch_against_the_same_rule():
    memory.set_limit(64 << 20)
    net = Network.from_dict({"input": [3, 64, 64], "layers": [{"type": "conv2d", "out_channels": 8,
                                                               "kernel_size": 3, "padding": 1}]})
    net.check_budget(batch=4, training=True)
    assert net.estimate_bytes(8, training=True) > net.estimate_bytes(8) > net.estimate_bytes(1)
    with pytest.raises(NetworkError, match="batches of 10000"):
        net.check_budget(batch=10000, training=True)


def _traced_peak(fn) -> int:
    """Peak bytes numpy allocates (traced) while fn runs, beyond what was live before.
    Only blocks allocated after tracing starts count, so earlier garbage does not
    matter (a full collection first took 0.5 s late in the test run); no collection
    runs meanwhile."""
    import gc
    enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        if enabled:
            gc.enable()
    del result
    return peak


GEOMETRIES = [
    ([3, 20, 18], {"type": "conv2d", "out_channels": 5, "kernel_size": 3, "padding": 1}),
    ([9, 16, 16], {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 2, "dilation": 2}),
    ([2, 15, 17], {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 4}),
    ([1, 8, 8], {"type": "conv2d", "out_channels": 1, "kernel_size": 1, "padding": 200, "stride": 150}),
    ([4, 9, 9], {"type": "conv2d", "out_channels": 2, "kernel_size": [2, 3], "stride": [3, 1], "padding": [5, 0]}),
    ([1, 6, 6], {"type": "conv2d", "out_channels": 2, "kernel_size": 2, "padding": 60, "dilation": 40}),
    ([32, 16, 16], {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}),
    # batched: the weight gradient over position ranges (grad.weight_grad_ranges), its partial sums
    ([3, 160, 160], {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}),
    ([64, 15, 13], {"type": "conv2d", "out_channels": 80, "kernel_size": 3, "padding": 1}),  # Winograd
    # dilated Winograd on the phase sub-images (of uneven size)
    ([64, 15, 13], {"type": "conv2d", "out_channels": 72, "kernel_size": 3, "padding": 2, "dilation": 2}),
    ([80, 11, 10], {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": [3, 4], "dilation": [3, 2]}),
    ([128, 9, 9], {"type": "conv2d", "out_channels": 128, "kernel_size": 3, "stride": 2, "padding": 1}),  # GEMM
    ([64, 30, 30], {"type": "conv2d", "out_channels": 96, "kernel_size": 1, "stride": 2}),  # GEMM, 1x1 stride 2
    ([64, 9, 9], {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "stride": 2, "padding": 1}),  # direct
    # stride-2 Winograd (17x17 outputs: the tiles overhang)
    ([128, 34, 34], {"type": "conv2d", "out_channels": 256, "kernel_size": 3, "stride": 2, "padding": 1}),
    # the forward on the direct kernel, the input gradient by BLAS
    ([64, 12, 11], {"type": "conv2d", "out_channels": 72, "kernel_size": 5, "stride": 2, "padding": 2}),
    ([48, 8, 8], {"type": "conv2d", "out_channels": 96, "kernel_size": 1}),                  # pointwise
    ([2, 50], {"type": "conv1d", "out_channels": 3, "kernel_size": 5, "padding": 30, "stride": 3}),
    ([3, 40], {"type": "conv1d", "out_channels": 8, "kernel_size": 3, "padding": 1}),
    ([3, 16, 16], {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}),
    ([3, 16, 16], {"type": "avgpool2d", "kernel_size": 2}),
    ([2, 30], {"type": "maxpool1d", "kernel_size": 4, "stride": 3}),
    ([4, 12, 12], {"type": "batchnorm"}),
    ([4, 12, 12], {"type": "layernorm"}),
    ([4, 12, 12], {"type": "relu"}),
    ([4, 12, 12], {"type": "leaky_relu"}),
    ([4, 12, 12], {"type": "flatten"}),
]


@pytest.mark.parametrize("shape, layer", GEOMETRIES, ids=lambda v: v["type"] if isinstance(v, dict) else None)
def test_workspace_rule_bounds_what_the_kernels_allocate(shape, layer):
    """The one rule (LayerType.workspace_bytes) is an upper bound of the temporary
    buffers the kernels really allocate, forward and backward, measured here. A kernel
    that adds a buffer without updating the rule fails this test."""
    import numpy as np
    net = Network.from_dict({"input": shape, "layers": [layer]})
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = net.forward(x)[0]
    gy = np.ones_like(y)
    net.layer_backward(0, x, y, gy)  # warm up (compile) outside the measurement
    work = net.workspace_bytes[0]
    slack = 64 << 10  # small index arrays and numpy bookkeeping
    fwd = _traced_peak(lambda: net.layer_forward(0, x))
    assert fwd <= y.nbytes + work + slack, f"forward allocated {fwd} bytes, the rule says {work} + output"
    bwd = _traced_peak(lambda: net.layer_backward(0, x, y, gy))
    assert bwd <= work + slack, f"backward allocated {bwd} bytes, the rule says {work}"


@pytest.mark.parametrize("shape, layer", [g for g in GEOMETRIES if g[1]["type"].startswith("conv")],
                         ids=lambda v: v["type"] if isinstance(v, dict) else None)
def test_workspace_rule_bounds_the_batch_kernels_per_sample(shape, layer):
    """Training batches: the batch kernels' buffers stay within batch x the per-sample rule
    (what Layout.estimate_bytes(batch) counts)."""
    import numpy as np
    n = 3
    net = Network.from_dict({"input": shape, "layers": [layer]})
    x = np.random.default_rng(1).standard_normal((n, *shape)).astype(np.float32)
    y = net.layer_forward_batch(0, x)
    gy = np.ones_like(y)
    net.layer_backward_batch(0, x, y, gy)
    work = n * net.workspace_bytes[0]
    slack = 64 << 10
    fwd = _traced_peak(lambda: net.layer_forward_batch(0, x))
    assert fwd <= y.nbytes + work + slack, f"forward allocated {fwd} bytes, the rule says {work} + output"
    bwd = _traced_peak(lambda: net.layer_backward_batch(0, x, y, gy))
    assert bwd <= work + slack, f"backward allocated {bwd} bytes, the rule says {work}"


@pytest.mark.parametrize("shape, layer", [g for g in GEOMETRIES if g[1]["type"] == "conv2d"],
                         ids=lambda v: v["type"] if isinstance(v, dict) else None)
def test_workspace_rule_bounds_every_algorithm_a_training_step_can_keep(shape, layer):
    """A training step may measure another algorithm than the rules' faster and keep it
    (kernels/tuning.py): forced to each of the layer's candidates in turn, the batch
    kernels' buffers stay within the one rule."""
    import numpy as np

    from cnnplay.core.kernels import conv, tuning
    n = 3
    net = Network.from_dict({"input": shape, "layers": [layer]})
    w = net.layer_types[0].window(net.configs[0], tuple(shape)).as_2d()
    co = net.configs[0]["out_channels"]
    plan = conv._plan(shape[0], shape[1], shape[2], *w.kernel, tuple(w.stride), tuple(w.padding),
                      tuple(w.dilation))
    algos = dict.fromkeys((conv.choose(plan, co, n),
                           *conv.alternatives(shape[0], co, plan.winograd, plan.ntap, plan.strided_spill)))
    x = np.random.default_rng(2).standard_normal((n, *shape)).astype(np.float32)
    work = n * net.workspace_bytes[0]
    slack = 64 << 10
    for algo in algos:
        tuning.keep(tuning.key(plan, co, n), algo)
        assert conv.choose(plan, co, n) == algo
        y = net.layer_forward_batch(0, x)
        gy = np.ones_like(y)
        net.layer_backward_batch(0, x, y, gy)
        fwd = _traced_peak(lambda: net.layer_forward_batch(0, x))
        assert fwd <= y.nbytes + work + slack, f"{algo}: forward allocated {fwd} bytes, the rule says {work} + output"
        bwd = _traced_peak(lambda: net.layer_backward_batch(0, x, y, gy))
        assert bwd <= work + slack, f"{algo}: backward allocated {bwd} bytes, the rule says {work}"
