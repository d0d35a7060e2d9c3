import faulthandler
import os
import sys

import pytest

# Never open real windows in tests; keep app data in a per-run folder.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Test under numba's workqueue threading layer, the one every machine has (OpenMP
# is used only where libgomp happens to be installed): it is the one that is not
# thread-safe, so a concurrent kernel launch aborts here instead of in the field.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
# The tests test the numba kernels (compiled here, in the warm-up below), not the numpy
# path the app uses while they compile in the background on a first start.
os.environ.setdefault("CNNPLAY_KERNELS", "numba")

from cnnplay.app.gui_gc import collect_due, collect_on_gui_thread  # noqa: E402 (after the environment)

# A test that hangs (a modal dialog offscreen, a deadlock between threads) must fail
# the run with every thread's stack, not sit until CI's own limit kills it silently.
HANG_SECONDS = float(os.environ.get("CNNPLAY_TEST_HANG_SECONDS", "240"))


# Every layer type, forward and backward: compiling the kernels once before the
# first test (an empty NUMBA_CACHE_DIR in CI takes 15-60 s) keeps compile time out
# of the tests' own waits.
WARM_UP = [
    ({"input": [3, 20, 18], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "dilation": 2, "padding": 2},
        {"type": "layernorm"}, {"type": "leaky_relu"}, {"type": "avgpool2d", "kernel_size": 2, "padding": 1},
        {"type": "flatten"}, {"type": "linear", "out_features": 3}]}, (0,)),
    ({"input": [2, 40], "layers": [
        {"type": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": 2},
        {"type": "maxpool1d", "kernel_size": 2}, {"type": "avgpool1d", "kernel_size": 2},
        {"type": "conv1d", "out_channels": 3, "kernel_size": 3, "dilation": 2}]}, (0, 2)),
]


def _fill_an_empty_kernel_cache_in_parallel():
    """An empty kernel cache (CI): compile in the app's background processes, all at
    once (one core each), instead of one kernel after the other here."""
    from cnnplay.core.kernels import coldstart, conv
    if not coldstart._in_disk_cache(conv._direct):
        coldstart.fill_cache()  # (a failure shows below: the warm-up then compiles here)


@pytest.fixture(scope="session", autouse=True)
def _kernels_compiled():
    import numpy as np

    from cnnplay import Network
    from cnnplay.core.kernels import launch
    _fill_an_empty_kernel_cache_in_parallel()
    slow = launch.slow_parallel_start()
    # Under workqueue small work runs in serial twins: compile the parallel kernels too.
    for parallel_only in (False, True) if slow else (False,):
        launch._slow_start = slow and not parallel_only
        for spec, unit in WARM_UP:
            net = Network.from_dict(spec)
            x = np.random.default_rng(0).standard_normal(spec["input"]).astype(np.float32)
            net.forward(x)
            net.effective_receptive_field(x, len(spec["layers"]) - 1, unit)
    launch._slow_start = slow


@pytest.fixture(scope="session", autouse=True)
def _gui_thread_duties_as_in_the_app(qapp):
    """As in the app, from the first test on: a cyclic collection started by a
    worker thread would destroy Qt objects of earlier tests on that thread; and
    Qt's image plugins are loaded on this thread before a worker decodes an image
    (app.imageio.load_plugins)."""
    from cnnplay.app import imageio
    collect_on_gui_thread()
    imageio.load_plugins()


@pytest.fixture(autouse=True)
def _algorithms_by_the_rules(monkeypatch):
    """Every test runs the algorithms conv.choose_shape's rules pick: a training step's
    measurement (kernels/tuning.py) would make the path a test takes depend on the
    machine's load of the moment. tests/test_tuning.py measures where that is the
    subject, and forces each decision a measurement can make."""
    from cnnplay.core.kernels import tuning
    monkeypatch.setattr(tuning, "ENABLED", False)
    yield
    tuning.reset()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """The app's data folder (autosave, log, settings) for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("CNNPLAY_HOME", str(h))
    return h


@pytest.fixture
def app_log(home, monkeypatch):
    """The app's log file (cnnplay.app.main.setup_logging) for one test, with the
    exception hooks put back afterwards. Gives a function returning the log's text."""
    import logging
    import threading

    from cnnplay.app import main
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # install_excepthook replaces them
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    root = logging.getLogger()
    level = root.level
    main.setup_logging()
    handler = next(h for h in root.handlers if getattr(h, "_cnnplay", False))

    def text() -> str:
        handler.flush()
        return (home / "cnnplay.log").read_text()

    yield text
    root.removeHandler(handler)
    handler.close()
    root.setLevel(level)


@pytest.fixture(scope="session")
def _real_stderr(pytestconfig):
    """The process's own standard error. During a test pytest captures file descriptor 2
    into a temporary file, which a hang's exit threw away with the stacks (CI showed
    only the hung test's file name); a duplicate taken with the capture suspended is
    the terminal or CI's log."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture()
    try:
        fd = os.dup(sys.__stderr__.fileno())
    finally:
        if capture is not None:
            capture.resume_global_capture()
    yield fd
    os.close(fd)


@pytest.fixture(autouse=True)
def _fail_hung_test(_real_stderr):
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=_real_stderr)
    try:
        yield
        collect_due()  # on the main thread, as the app's timer would
    finally:
        faulthandler.cancel_dump_traceback_later()
