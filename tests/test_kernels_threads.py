"""Kernels called from several threads at once, under numba's workqueue threading
layer (the one every platform has, and not thread-safe by itself): the process
must neither abort nor hang, and every thread must get the single-thread result.
Without the process-wide launch lock this aborts with "Concurrent access has been
detected" (or, when the race goes unnoticed, hangs)."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np

from cnnplay.core.kernels import launch

SCRIPT = textwrap.dedent("""
    import faulthandler, threading
    import numpy as np
    faulthandler.dump_traceback_later(120, exit=True)
    from cnnplay import Network
    spec = {"input": [3, 40, 36], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "batchnorm"}, {"type": "leaky_relu"},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "dilation": 2},
        {"type": "layernorm"}, {"type": "relu"}, {"type": "avgpool2d", "kernel_size": 2},
    ]}
    net = Network.from_dict(spec, seed=3)
    x = np.random.default_rng(0).standard_normal((3, 40, 36)).astype(np.float32)
    expected = net.forward(x)[-1]
    field = net.effective_receptive_field(x, len(spec["layers"]) - 1, (0, 2, 2))
    results, errors = [], []

    def work():
        try:
            for _ in range(15):
                results.append(np.array_equal(net.forward(x)[-1], expected))
                results.append(np.array_equal(
                    net.effective_receptive_field(x, len(spec["layers"]) - 1, (0, 2, 2)), field))
        except BaseException as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import numba
    print(numba.threading_layer(), len(results), all(results), errors)
""")


def test_parallel_kernels_from_three_threads_under_workqueue():
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["workqueue", "90", "True", "[]"], done.stdout + done.stderr[-2000:]


def test_launch_lock_is_reentrant_and_released_on_error():
    calls = []

    @launch.one_at_a_time
    def inner(v):
        calls.append(v)
        if v < 0:
            raise ValueError("bad")
        return v

    @launch.one_at_a_time
    def outer(v):
        return inner(v) + 1  # a wrapper calling a wrapper must not deadlock

    assert outer(2) == 3
    try:
        outer(-1)
    except ValueError:
        pass
    free = []  # the error released it: another thread can take the lock at once

    def probe():
        free.append(launch._LOCK.acquire(blocking=False))
        if free[-1]:
            launch._LOCK.release()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert free == [True]
    assert calls == [2, -1]


def test_serial_twins_compute_exactly_what_the_parallel_kernels_do(monkeypatch):
    """Where starting a parallel loop is slow (workqueue), small work runs in a serial
    twin of the same function: the two must give identical results, and outside
    workqueue (or for big work) the parallel kernel is used."""
    from cnnplay.core.kernels import conv, norm, pointwise, pool

    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 23, 37)).astype(np.float32)
    w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    stats = [rng.standard_normal(5).astype(np.float32) for _ in range(3)] + [rng.random(5, dtype=np.float32) + 0.5]
    cases = {
        "conv stride 2": lambda: conv.conv2d(x, w, None, (2, 2), (1, 1), (1, 1)),
        "conv dilated": lambda: conv.conv2d(x, w, bias, (1, 1), (2, 2), (2, 2)),
        "max pool": lambda: pool.maxpool2d(x, (3, 2), (2, 2), (1, 1)),
        "avg pool": lambda: pool.avgpool2d(x, (2, 4), (2, 4), (1, 2)),
        "leaky relu": lambda: pointwise.leaky_relu(x, 0.1),
        "batch norm": lambda: norm.batchnorm(x.reshape(5, -1), *stats),
        "layer norm": lambda: norm.layernorm(x.reshape(5, -1), stats[0], stats[1]),
    }
    used = []
    original = launch.serial_twin
    monkeypatch.setattr(launch, "serial_twin", lambda k: used.append(k.py_func.__name__) or original(k))
    for name, run in cases.items():
        monkeypatch.setattr(launch, "_slow_start", False)
        parallel = run()
        assert used == [], name  # fast start: always the parallel kernel
        monkeypatch.setattr(launch, "_slow_start", True)
        serial = run()
        assert used, name  # slow start, small work: the twin
        assert np.array_equal(parallel, serial), name
        used.clear()
    twin = original(pool._pool)
    assert twin.py_func.__qualname__ == "_pool_serial" and not twin.targetoptions.get("parallel")
    assert launch.sized(pool._pool, 10**9, 300_000) is pool._pool  # big work stays parallel


def recording_kernel():
    """A kernel launched through the wrappers' lock and turns, and the list of what its
    calls were given, in the order they ran."""
    events = []

    @launch.one_at_a_time
    def kernel(what):
        events.append(what)

    return kernel, events


def test_a_thread_inside_priority_launches_first():
    """While the compute worker is inside launch.priority(), another thread (training)
    waits before its next kernel launch, and goes on as soon as the block ends."""
    kernel, events = recording_kernel()
    inside, release = threading.Event(), threading.Event()

    def urgent():
        with launch.priority():
            kernel("urgent kernel")  # the priority thread itself never waits
            inside.set()
            release.wait(10)
            kernel("urgent kernel 2")

    t = threading.Thread(target=urgent)
    t.start()
    assert inside.wait(10)
    other = threading.Thread(target=kernel, args=("training kernel",))
    other.start()
    other.join(0.3)
    assert other.is_alive() and events == ["urgent kernel"]  # held back while the block is open
    release.set()
    t.join(10)
    other.join(10)
    assert not other.is_alive()
    assert events == ["urgent kernel", "urgent kernel 2", "training kernel"]


def test_priority_never_deadlocks_with_a_wrapper_inside_a_wrapper():
    """A thread already inside a wrapper (holding the launch lock) finishes its nested
    calls even when a priority thread is waiting for that lock."""
    events = []
    entered, go = threading.Event(), threading.Event()

    @launch.one_at_a_time
    def inner(what):
        events.append(what)

    @launch.one_at_a_time
    def outer():
        entered.set()
        go.wait(10)
        inner("nested")

    def urgent():
        with launch.priority():
            inner("urgent")

    a = threading.Thread(target=outer)
    a.start()
    assert entered.wait(10)
    b = threading.Thread(target=urgent)
    b.start()
    b.join(0.2)
    assert b.is_alive()  # waits for the lock the other thread holds
    go.set()
    a.join(10)
    b.join(10)
    assert not a.is_alive() and not b.is_alive()
    assert events == ["nested", "urgent"]


def test_a_hold_keeps_other_threads_kernels_back_until_released_or_expired():
    """The GUI holds training's kernel launches from a user's request until its result is
    painted; the compute worker (exempt) never waits for it; a forgotten hold expires."""
    import time
    kernel, events = recording_kernel()

    h = launch.hold(30.0)
    try:
        kernel("holder")  # the thread that holds it never waits for its own hold
        other = threading.Thread(target=kernel, args=("training",))
        other.start()
        other.join(0.3)
        assert other.is_alive() and events == ["holder"]  # held back

        def worker():
            launch.exempt()
            kernel("worker")

        w = threading.Thread(target=worker)
        w.start()
        w.join(10)
        assert events == ["holder", "worker"]  # the exempt thread went through
        assert h.held
    finally:
        h.release()
    other.join(10)
    assert events == ["holder", "worker", "training"] and not h.held

    # a hold nobody releases stops holding at its deadline
    box = []
    t = threading.Thread(target=lambda: box.append(launch.hold(0.2)))
    t.start()
    t.join(10)
    t0 = time.monotonic()
    kernel("after expiry")
    assert time.monotonic() - t0 >= 0.15 and events[-1] == "after expiry" and not box[0].held


def test_an_excused_thread_stops_waiting_for_a_hold():
    """A training run asked to stop (Pause) no longer waits for the window's hold: it
    finishes its layer and reaches its cancellation point at once, not when the hold
    lets go; other threads still wait."""
    kernel, events = recording_kernel()

    h = launch.hold(30.0)
    try:
        stopping = threading.Thread(target=kernel, args=("stopping",))
        other = threading.Thread(target=kernel, args=("other",))
        stopping.start()
        other.start()
        stopping.join(0.3)
        assert stopping.is_alive() and events == []  # held back, like any training kernel
        launch.excuse(stopping)
        stopping.join(10)
        assert not stopping.is_alive() and events == ["stopping"] and h.held
        other.join(0.3)
        assert other.is_alive()  # the hold still holds the others
    finally:
        h.release()
    other.join(10)
    assert events == ["stopping", "other"]
