"""Saving is atomic: a failure or a kill at any moment leaves a loadable file."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cnnplay import Network, NetworkError
from cnnplay.core import fileformat
from cnnplay.core.fileformat import atomic_write, load_bundle, load_network, save_network

SPEC = {"input": [3, 16, 16], "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3},
                                          {"type": "relu"}]}


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "net.cnnplay"
    old = Network.from_dict(SPEC, seed=1)
    save_network(old, path, extra={"generation": "old"})
    return path, old, path.read_bytes()


def test_failure_mid_write_keeps_old_file(saved, monkeypatch):
    path, old, old_bytes = saved
    real_fdopen = os.fdopen

    class HalfWriter:
        """Writes half the data, then the disk is full."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fileformat.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    new = Network.from_dict(SPEC, seed=2)
    with pytest.raises(NetworkError, match="net.cnnplay: cannot save: No space left on device"):
        save_network(new, path, extra={"generation": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    net, extra = load_bundle(path)
    assert extra == {"generation": "old"}
    assert np.array_equal(net.params(0)["weight"], old.params(0)["weight"])
    assert leftovers(path.parent) == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failure_at_fsync_or_rename_keeps_old_file(saved, monkeypatch, step):
    path, _, old_bytes = saved

    def boom(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fileformat.os, step, boom)
    with pytest.raises(NetworkError, match="cannot save: Input/output error"):
        save_network(Network.from_dict(SPEC, seed=2), path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes and leftovers(path.parent) == []


def test_interrupt_mid_write_keeps_old_file(saved, monkeypatch):
    """Even a KeyboardInterrupt (not an OSError) cleans up and keeps the old file."""
    path, _, old_bytes = saved

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileformat.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, b"new content")
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes and leftovers(path.parent) == []


def test_missing_folder(tmp_path):
    with pytest.raises(NetworkError, match="cannot save: No such file or directory"):
        save_network(Network.from_dict(SPEC), tmp_path / "nope" / "net.cnnplay")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(saved):
    path, _, old_bytes = saved
    os.chmod(path.parent, 0o500)
    try:
        with pytest.raises(NetworkError, match="cannot save: Permission denied"):
            save_network(Network.from_dict(SPEC, seed=2), path)
    finally:
        os.chmod(path.parent, 0o700)
    assert path.read_bytes() == old_bytes


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_permissions_are_kept(saved):
    path, _, _ = saved
    os.chmod(path, 0o640)
    save_network(Network.from_dict(SPEC, seed=2), path)
    assert (os.stat(path).st_mode & 0o777) == 0o640
    fresh = path.parent / "fresh.cnnplay"
    atomic_write(fresh, b"x")
    assert (os.stat(fresh).st_mode & 0o777) == 0o644


CHILD = textwrap.dedent("""
    import sys
    from cnnplay import Network
    from cnnplay.core.fileformat import atomic_write, network_bytes, save_network
    path = sys.argv[1]
    # about 4 MB per file, so that a kill often lands in the middle of a write
    spec = {"input": [64, 8, 8], "layers": [{"type": "conv2d", "out_channels": 256, "kernel_size": 3,
                                             "padding": 1}, {"type": "conv2d", "out_channels": 64,
                                             "kernel_size": 7, "padding": 3}]}
    nets = [Network.from_dict(spec, seed=s) for s in (1, 2)]
    save_network(nets[0], path, extra={"count": 0, "seed": 1})
    # then what an autosave does, as fast as it can: the file's bytes are ready, write them
    blobs = [network_bytes(net, extra={"count": 1, "seed": k + 1}) for k, net in enumerate(nets)]
    i = 0
    while True:
        atomic_write(path, blobs[i % 2])
        if i < 3:
            print("saved", i, flush=True)
        i += 1
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_saving_in_a_loop_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "autosave.cnnplay"
    rng = np.random.default_rng(0)
    counts = []
    for attempt in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().startswith("saved")
            time.sleep(float(rng.uniform(0.01, 0.25)))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
        net, extra = load_bundle(path)
        assert net.seed == extra["seed"] and len(net) == 2
        assert net.params(0)["weight"].shape == (256, 64, 3, 3)
        counts.append(extra["count"])
    assert load_network(path) is not None and max(counts) == 1
    # stale temporary files from the killed writes are the only debris; the file itself is whole
    assert all(name.startswith(".autosave.cnnplay.") for name in leftovers(tmp_path))
