"""Read a file the user (or a file) named, safely: the one way cnnplay reads paths.

    from cnnplay.core.safe_read import read_regular_file, check_regular_file, SafeReadError

    data = read_regular_file(path, limit=64 << 20, what="image")   # bytes
    st = check_regular_file(path, what="image")                    # os.stat_result, nothing read

`read_regular_file(path, limit, what) -> bytes`:
- refuses anything but a regular file BEFORE opening it: folders, FIFOs,
  sockets, character and block devices (``/dev/zero``, ``/dev/tty``), and
  files of the kernel's pseudo file systems (``/proc``, ``/sys``, ``/dev``),
  whose sizes lie and whose reads can block or never end;
- opens with O_NONBLOCK (a FIFO swapped in between the check and the open
  cannot hang the caller) and checks again on the open descriptor (fstat);
- refuses a file whose size is above `limit` without reading it, and reads at
  most `limit + 1` bytes whatever the size says (a file that grows, or lies
  about its size, is refused once it passes the limit);
- raises SafeReadError (a ValueError) naming the file and the reason in plain
  words. `kind` tells callers what went wrong ("missing", "folder",
  "special", "too_large", "unreadable") so that each can wrap it in its own
  error type (FileFormatError, InputError, ...): ``raise InputError(e.reason, e.path)``.

An empty file gives b"" (callers decide whether that is an error). A symbolic
link is followed; what it points to must pass the same checks.

`what` names the kind of file in messages ("is a folder, not a {what}"), e.g.
"image", "signal file", ".cnnplay file", "data set".

Qt-free, no third-party imports: any module of cnnplay may use it.
"""

from __future__ import annotations

import os
import stat

__all__ = ["SafeReadError", "read_regular_file", "check_regular_file", "format_size"]

_PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
_CHUNK = 1 << 20


class SafeReadError(ValueError):
    """A path cnnplay will not read. str(e) is "<path>: <reason>"."""

    def __init__(self, reason: str, path: str, kind: str):
        self.reason = reason
        self.path = path
        self.kind = kind
        super().__init__(f"{path}: {reason}")


def format_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _kind_of(mode: int) -> str | None:
    """Why a file of this mode is refused (None: a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _pseudo_devices() -> set[int]:
    devs = set()
    for root in _PSEUDO_ROOTS:
        try:
            devs.add(os.stat(root).st_dev)
        except OSError:
            pass
    return devs


def _refuse_mode(st: os.stat_result, name: str, what: str) -> None:
    kind = _kind_of(st.st_mode)
    if kind == "folder":
        raise SafeReadError(f"is a folder, not a {what}", name, "folder")
    if kind is not None:
        raise SafeReadError(f"is {kind}, not a regular file; cnnplay reads only regular files", name, "special")


def _refuse_pseudo(name: str, st: os.stat_result) -> None:
    """Files of /proc, /sys and /dev report sizes that lie (0 or 4096) and can
    block or never end: refused, however they are reached (links, bind mounts)."""
    if os.name != "posix":
        return
    try:
        real = os.path.realpath(name)
    except (OSError, ValueError):
        real = name
    on_pseudo = any(real == r or real.startswith(r + "/") for r in _PSEUDO_ROOTS)
    if on_pseudo or (st.st_dev in _pseudo_devices() and st.st_dev != _root_device()):
        raise SafeReadError("is a file of the system's /proc, /sys or /dev, not a regular file; "
                            "cnnplay does not read those", name, "special")


def _root_device() -> int | None:
    try:
        return os.stat("/").st_dev
    except OSError:
        return None


def _stat(name: str, what: str) -> os.stat_result:
    try:
        return os.stat(name)
    except FileNotFoundError:
        raise SafeReadError("no such file", name, "missing") from None
    except NotADirectoryError:
        raise SafeReadError("no such file (a folder on its path is a file)", name, "missing") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SafeReadError(f"cannot read it: {reason}", name, "unreadable") from None


def check_regular_file(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """The file's stat if it is a regular file cnnplay may read; SafeReadError if not.

    Nothing is opened. Use read_regular_file to read it (the checks are made
    again on the open file)."""
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    st = _stat(name, what)
    _refuse_mode(st, name, what)
    _refuse_pseudo(name, st)
    return st


def read_regular_file(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them; see the module doc."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, not {limit!r}")
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    st = check_regular_file(name, what)
    too_large = (f"the file is {{}}, more than the {format_size(limit)} a {what} can be; "
                 "not read")
    if st.st_size > limit:
        raise SafeReadError(too_large.format(format_size(st.st_size)), name, "too_large")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except FileNotFoundError:
        raise SafeReadError("no such file", name, "missing") from None
    except IsADirectoryError:
        raise SafeReadError(f"is a folder, not a {what}", name, "folder") from None
    except OSError as e:
        raise SafeReadError(f"cannot read it: {e.strerror or e}", name, "unreadable") from None
    try:
        st = os.fstat(fd)  # the file we opened, not the one we looked at
        _refuse_mode(st, name, what)
        if st.st_size > limit:
            raise SafeReadError(too_large.format(format_size(st.st_size)), name, "too_large")
        chunks, total = [], 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            except BlockingIOError:
                raise SafeReadError("cannot read it now (it would block); not a regular file", name,
                                    "special") from None
            except OSError as e:
                raise SafeReadError(f"cannot read it: {e.strerror or e}", name, "unreadable") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise SafeReadError(f"the file is more than the {format_size(limit)} a {what} can be; not read",
                                name, "too_large")
        return b"".join(chunks)
    finally:
        os.close(fd)
