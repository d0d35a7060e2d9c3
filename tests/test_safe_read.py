"""The one safe way cnnplay reads a path: regular files only, checked before opening, bounded."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from cnnplay.core.safe_read import SafeReadError, check_regular_file, read_regular_file


def test_reads_a_regular_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"hello")
    assert read_regular_file(p, 5, "thing") == b"hello"
    assert read_regular_file(str(p), 100) == b"hello"
    (tmp_path / "empty").write_bytes(b"")
    assert read_regular_file(tmp_path / "empty", 10) == b""
    assert check_regular_file(p).st_size == 5


def test_symlink_to_regular_file_is_followed(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"x" * 10)
    (tmp_path / "link").symlink_to(p)
    assert read_regular_file(tmp_path / "link", 10) == b"x" * 10


def test_size_above_limit_refused(tmp_path):
    p = tmp_path / "big.bin"
    p.write_bytes(b"x" * 11)
    with pytest.raises(SafeReadError) as info:
        read_regular_file(p, 10, "signal file")
    assert info.value.kind == "too_large" and "signal file" in str(info.value) and str(p) in str(info.value)


def expect(path, kind, *fragments):
    with pytest.raises(SafeReadError) as info:
        read_regular_file(path, 1 << 20, "image")
    e = info.value
    assert e.kind == kind, e
    assert str(path) in str(e)
    for f in fragments:
        assert f in str(e), e
    with pytest.raises(SafeReadError):
        check_regular_file(path, "image")
    return e


def test_missing_and_folder(tmp_path):
    expect(tmp_path / "nope", "missing", "no such file")
    expect(tmp_path, "folder", "is a folder, not a image")
    f = tmp_path / "f"
    f.write_bytes(b"1")
    expect(f / "below", "missing")


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_refused_before_reading(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    expect(path, "special", "device")


def test_proc_and_sys_files_refused():
    for path in ("/proc/self/status", "/proc/meminfo", "/sys/kernel/mm/transparent_hugepage/enabled"):
        if os.path.exists(path):
            expect(path, "special", "/proc, /sys or /dev")


def test_link_to_a_device_refused(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    (tmp_path / "cat.png").symlink_to("/dev/zero")
    expect(tmp_path / "cat.png", "special")


def test_fifo_refused_without_blocking(tmp_path):
    fifo = tmp_path / "cat.png"
    os.mkfifo(fifo)
    done = []
    t = threading.Thread(target=lambda: done.append(pytest.raises(SafeReadError, read_regular_file, fifo, 10)),
                         daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert done and done[0].value.kind == "special" and "FIFO" in str(done[0].value)


def test_socket_refused(tmp_path):
    path = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        expect(path, "special", "socket")
    finally:
        s.close()


def test_file_that_grows_past_its_size_is_cut_at_the_limit(tmp_path, monkeypatch):
    """st_size is not trusted: a file whose stat says 0 but holds more is still bounded."""
    p = tmp_path / "liar"
    p.write_bytes(b"x" * 100)
    real_fstat = os.fstat

    class Lying:
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return 0 if name == "st_size" else getattr(self._st, name)

    monkeypatch.setattr(os, "stat", lambda *a, **k: Lying(os.lstat(*a)))
    monkeypatch.setattr(os, "fstat", lambda fd: Lying(real_fstat(fd)))
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(SafeReadError) as info:
        read_regular_file(p, 10)
    assert info.value.kind == "too_large"
    assert sum(reads) <= 11 + 1


def test_bad_limit():
    with pytest.raises(ValueError):
        read_regular_file(__file__, -1)
