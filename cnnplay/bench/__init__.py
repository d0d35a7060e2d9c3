"""python -m cnnplay.bench: speed figures as ratios measured in one run.

A benchmark, not timed tests: it prints tables, it asserts nothing.

Convention for sections: every module `cnnplay/bench/<name>.py` whose name
does not start with an underscore is a section. It exposes

    TITLE = "Forward pass vs PyTorch"   # optional; defaults to the module name
    ORDER = 10                           # optional; sections run by ascending ORDER, then name
    def run() -> list[str]: ...          # the section's result lines, ready to print

`run()` does all its own warm-up and repetition and returns plain text lines
(tables aligned with spaces). Keep a section under a minute or so, and import
optional comparison libraries (torch) inside it, never at module level of
`cnnplay`. `python -m cnnplay.bench` runs every section; `python -m
cnnplay.bench forward receptive` runs only the named ones; `--list` lists them.
A section that raises is reported with its traceback and the others still run
(the exit status is then 1).
"""

from __future__ import annotations

import importlib
import pkgutil


def sections() -> list[str]:
    """Names of all section modules, in run order."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    mods = {n: importlib.import_module(f"{__name__}.{n}") for n in names}
    return sorted(names, key=lambda n: (getattr(mods[n], "ORDER", 100), n))
