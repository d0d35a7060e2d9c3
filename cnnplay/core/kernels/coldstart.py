"""Cold start: the numba kernels compile in background processes; numpy computes meanwhile.

With an empty kernel cache (a first start, a new numba version, an edited
kernel) compiling every kernel takes 10-30 s. Instead of waiting, a wrapper
asks `ready(kernel)`: a kernel is ready when it is compiled in this process
or stored in the on-disk cache (loading takes milliseconds once numba's target
is set up; the app defers that past its first maps, see loader.py). If it is not,
the first such question starts `warmup` in two background processes (each
compiles part of the kernels into the shared cache, forward kernels first,
then backward) and the wrapper computes with `numpy_path` this time. As each
process reports kernels done, the wrappers switch to them; results agree to
~1e-6 either way.

Background processes, not threads: compiling holds the GIL for seconds at a
time (the window would stutter), two processes fill the cache in parallel,
and a kernel they run there never meets a kernel launched here (numba's
workqueue layer is not thread-safe). If they cannot start or fail, every
kernel counts as ready and compiles in this process on first use, as before.

CNNPLAY_KERNELS (or `set_mode`): "auto" (the above, the default), "numba"
(always the numba kernels, compiling in the calling process: the tests and
the background processes themselves) or "numpy" (always numpy).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time

from . import loader

log = logging.getLogger(__name__)

MODES = ("auto", "numba", "numpy")
GROUPS = ("conv", "other")  # one background process each (see warmup.py)

_mode = os.environ.get("CNNPLAY_KERNELS", "auto")
if _mode not in MODES:
    _mode = "auto"

_lock = threading.Lock()
_done: set[str] = set()  # kernels reported compiled by the background processes
_on_disk: dict[str, bool] = {}
_procs: list = []
_steps = {"done": 0, "total": 0}
_state = "idle"  # idle -> running -> finished | failed
_finished = threading.Event()
_t_start = 0.0
_t_end = 0.0


def mode() -> str:
    return _mode


def set_mode(m: str) -> None:
    """"auto", "numba" or "numpy" (see the module docstring)."""
    global _mode
    if m not in MODES:
        raise ValueError(f"kernel mode must be one of {MODES}, not {m!r}")
    _mode = m


def kernel_name(kernel) -> str:
    fn = kernel.py_func
    return f"{fn.__module__}.{fn.__qualname__}"


def ready(*kernels) -> bool:
    """True when all `kernels` (numba dispatchers) can run without compiling first;
    else starts the background compile (once) and returns False: use numpy."""
    if _mode == "numba":
        return True
    if _mode == "numpy":
        return False
    # All of them asked (no early return): while loading is deferred, each is queued.
    return all([k.overloads or _ready(k) for k in kernels])


def _ready(kernel) -> bool:
    name = kernel_name(kernel)
    if name in _done or _state in ("finished", "failed"):
        return True  # (one the background did not compile compiles here on first use)
    cached = _on_disk.get(name)
    if cached is None:
        cached = _on_disk[name] = _in_disk_cache(kernel)
    if cached:
        return not loader.wanted(kernel, name)  # the app's start: loaded after the first maps
    start()
    return name in _done or _state == "failed"


def _in_disk_cache(kernel) -> bool:
    """The on-disk cache holds a fresh entry of `kernel` for this machine (its index
    is read, nothing is loaded). Any surprise counts as not cached."""
    try:
        index = kernel._cache._cache_file._load_index()
        magic = kernel.targetctx.codegen().magic_tuple()
        return any(key[1] == magic for key in index)
    except Exception:
        return False


# -- the background processes ------------------------------------------------------------

def start() -> None:
    """Start compiling in the background (once per process; no-op unless mode "auto")."""
    global _state, _t_start
    with _lock:
        if _state != "idle" or _mode != "auto":
            return
        _state = "running"
        _t_start = time.perf_counter()
    try:
        for group in GROUPS:
            err = tempfile.TemporaryFile()
            p = _launch(group, stdout=subprocess.PIPE, stderr=err, text=True)
            _procs.append(p)
            threading.Thread(target=_follow, args=(p, err, group), name=f"cnnplay-compile-{group}",
                             daemon=True).start()
    except Exception as e:  # compile here instead, on first use
        log.warning("cannot compile kernels in the background (%s); compiling on first use", e)
        _finish("failed")


def _launch(group: str, **popen) -> subprocess.Popen:
    """A background process compiling one group of kernels (warmup.py) into the
    cache, with the package this process imported, on one thread."""
    if not sys.executable:
        raise OSError("no Python executable to run the compiler in")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, CNNPLAY_KERNELS="numba", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
    return subprocess.Popen([sys.executable, "-m", "cnnplay.core.kernels.warmup", group], env=env,
                            stdin=subprocess.DEVNULL, creationflags=flags, **popen)


def fill_cache() -> bool:
    """Compile every kernel into the on-disk cache in the background processes, all
    at once, and wait for them (for a caller with nothing to compute meanwhile: the
    tests on an empty cache). True when every process ended well."""
    procs = [_launch(group, stdout=subprocess.DEVNULL) for group in GROUPS]
    return all(p.wait() == 0 for p in procs)


def _follow(p, err, group) -> None:
    """Read one background process's reports until it ends."""
    try:
        for line in p.stdout:
            word, _, rest = line.strip().partition(" ")
            with _lock:
                if word == "ready":
                    _done.update(rest.split())
                elif word == "steps":
                    _steps["total"] += int(rest)
                elif word == "step":
                    _steps["done"] += 1
        code = p.wait()
    except Exception as e:
        code = f"lost ({e})"
    if code != 0:
        try:
            err.seek(0)
            detail = err.read().decode("utf-8", "replace")[-4000:]
        except Exception:
            detail = ""
        log.warning("background kernel compile (%s) ended with %s:\n%s", group, code, detail)
        _finish("failed")
    elif all(q.poll() is not None for q in _procs):
        _finish("finished")
    err.close()


def _finish(state: str) -> None:
    global _state, _t_end
    with _lock:
        if _state in ("finished", "failed"):
            return
        _state = state
        _t_end = time.perf_counter()
    _finished.set()


def compiling() -> bool:
    """True while background processes are compiling kernels."""
    return _state == "running"


def progress() -> tuple[int, int] | None:
    """(steps done, steps in all) while compiling, else None."""
    if _state != "running":
        return None
    with _lock:
        return _steps["done"], max(_steps["total"], _steps["done"])


def wait(timeout: float | None = None) -> bool:
    """Block until the background compile ended (True) or `timeout` passed (False);
    True at once when none was started."""
    if _state == "idle":
        return True
    return _finished.wait(timeout)


def seconds() -> float | None:
    """How long the background compile took (None while it runs or when none ran)."""
    return _t_end - _t_start if _state in ("finished", "failed") and _t_start else None


def prepare() -> bool:
    """Start the background compile now if the forward kernels are not in the cache
    (the app calls this on the GUI thread, before its other threads start). True when
    they are all ready (while loading is deferred, cached ones are queued: False)."""
    from . import conv, dense, direct512, norm, pointwise, pool
    blocked = (direct512._conv,) if direct512.avx512() else ()
    return ready(conv._make_source, conv._direct, *blocked, pool._pool, pool._pool_tiles, pointwise._affine_leaky,
                 norm._layernorm, dense._linear)
