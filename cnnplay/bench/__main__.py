"""Run the bench sections: python -m cnnplay.bench [--list] [section ...]"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback

from ..core import kernels  # noqa: F401  (sets NUMBA_CACHE_DIR before numba is imported)
from . import sections


def machine_line() -> str:
    import os

    import numba
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from numba.np.ufunc import parallel
    parallel._launch_threads()  # so that the threading layer is known before any kernel runs
    return (f"machine: {cpu}, {os.cpu_count()} logical CPUs, numba {numba.__version__} "
            f"({numba.get_num_threads()} threads, {numba.threading_layer()} layer), numpy {np.__version__}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def main(argv: list[str]) -> int:
    names = sections()
    if "--list" in argv:
        print("\n".join(names))
        return 0
    wanted = [a for a in argv if not a.startswith("-")]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)} (known: {', '.join(names)})", file=sys.stderr)
        return 2
    from ..core.kernels import coldstart
    if "CNNPLAY_KERNELS" not in os.environ:
        coldstart.set_mode("numba")  # measure the numba kernels (compiled here if need be), never numpy
    print(machine_line())
    status = 0
    for name in wanted or names:
        mod = importlib.import_module(f"{__package__}.{name}")
        title = getattr(mod, "TITLE", name)
        print(f"\n== {title} ==", flush=True)
        t0 = time.perf_counter()
        try:
            for line in mod.run():
                print(line, flush=True)
        except Exception:
            traceback.print_exc()
            status = 1
        print(f"({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
