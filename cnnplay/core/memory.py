"""How many bytes a forward pass needs, and how many we allow it."""

from __future__ import annotations

import os
import re
import time

DEFAULT_FRACTION = 0.5  # of the memory available when the network is built
DEFAULT_CEILING = 2 << 30  # the default never exceeds this: a playground network needs far less
_FALLBACK_AVAILABLE = 4 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_limit_override: int | None = None
CACHE_SECONDS = 0.5  # available_bytes() reads the OS's figure at most this often
_cached = (float("-inf"), 0)  # (time.monotonic() of the last read, its value)


def available_bytes() -> int:
    """Memory the OS says is available now (Linux), or a modest guess elsewhere.

    Read at most every CACHE_SECONDS: every edit checks the budget on the GUI thread
    (Network.from_dict), and reading /proc/meminfo costs 0.2-0.3 ms, about 1 ms while
    a training thread runs Python (the read gives up the GIL, and getting it back waits
    for the other thread's turn). What is free changes little within half a second."""
    global _cached
    now = time.monotonic()
    at, value = _cached
    if 0 <= now - at < CACHE_SECONDS:
        return value
    value = _read_available()
    _cached = (now, value)
    return value


def _read_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _FALLBACK_AVAILABLE


def parse_bytes(text: str) -> int:
    """'512M', '2G', '1000000' -> bytes; ValueError if unreadable."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (try 512M or 2G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def set_limit(limit: int | None) -> None:
    """Fix the budget in bytes (None: back to the default)."""
    global _limit_override
    _limit_override = limit


def limit_bytes() -> int:
    """The budget: set_limit(), else $CNNPLAY_MEMORY_LIMIT, else half the available
    memory but at most DEFAULT_CEILING (so a 10**9-parameter layer is refused
    even on a big machine; raise it with set_limit or the variable)."""
    if _limit_override is not None:
        return _limit_override
    env = os.environ.get("CNNPLAY_MEMORY_LIMIT")
    if env:
        try:
            return parse_bytes(env)
        except ValueError:
            pass
    return min(int(available_bytes() * DEFAULT_FRACTION), DEFAULT_CEILING)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
