"""Issue 19: files, paths and numbers from outside, each hole closed as a class.

Special files are refused before they are opened (never read, never block), every
read is bounded whatever the file says its size is, absurd archives are refused
before they are parsed, and malformed content gets a message naming what is wrong."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import threading
import zipfile

import numpy as np
import pytest

from cnnplay import Network, NetworkError
from cnnplay.core import fileformat
from cnnplay.core.errors import InputError
from cnnplay.core.fileformat import (DESCRIPTION, WEIGHTS, FileFormatError, bundle_from_bytes, load_bundle,
                                     load_network, network_bytes, save_network)
from cnnplay.core.signals import load_signal, parse_csv

SPEC = {"input": [1, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}]}


@pytest.fixture
def net():
    return Network.from_dict(SPEC)


@pytest.fixture
def reads(monkeypatch):
    """Every byte count asked of os.read (safe_read reads with os.read)."""
    asked = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: asked.append(n) or real(fd, n))
    return asked


def in_thread(fn, seconds=20):
    """fn() on a daemon thread; its result or exception. A FIFO that blocks fails the test."""
    out = []

    def run():
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 (handed back to the test)
            out.append(("err", e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the read blocked"
    return out[0]


def special_files(tmp_path):
    """(path, what it is) of special files this machine has, plus a FIFO and a socket."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    found = [(str(fifo), "FIFO"), (str(tmp_path), "folder")]
    for p, what in (("/dev/zero", "device"), ("/dev/urandom", "device"), ("/proc/self/environ", "/proc"),
                    ("/proc/meminfo", "/proc")):
        if os.path.exists(p):
            found.append((p, what))
    link = tmp_path / "zero.cnnplay"
    if os.path.exists("/dev/zero"):
        link.symlink_to("/dev/zero")
        found.append((str(link), "device"))
    return found


# -- 3, 4: every reader refuses special files before reading them ---------------------

def test_network_loader_refuses_special_files_without_reading(tmp_path, reads):
    for path, what in special_files(tmp_path):
        kind, e = in_thread(lambda: load_network(path))
        assert kind == "err" and isinstance(e, FileFormatError), e
        assert str(e).startswith(path) and what in str(e), e
    assert sum(reads) == 0  # not one byte read from any of them


def test_signal_loader_refuses_special_files_without_reading(tmp_path, reads):
    for path, what in special_files(tmp_path):
        kind, e = in_thread(lambda: load_signal(path))
        assert kind == "err" and isinstance(e, InputError), e
        assert e.path == path and what in str(e), e
    assert sum(reads) == 0


def test_example_reader_refuses_special_files(tmp_path):
    from cnnplay.app.examples import read_example
    for path, what in special_files(tmp_path):
        kind, e = in_thread(lambda: read_example(path))
        assert kind == "err" and isinstance(e, NetworkError) and what in str(e), e


def test_dev_zero_as_a_network_reads_nothing(reads):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(FileFormatError, match="/dev/zero: is a character device"):
        load_network("/dev/zero")
    assert reads == []


def test_network_file_read_is_bounded_whatever_its_size_says(tmp_path, monkeypatch, reads):
    p = tmp_path / "grows.cnnplay"
    p.write_bytes(b"PK\x03\x04" + bytes(5000))
    monkeypatch.setattr(fileformat, "max_file_bytes", lambda: 1000)
    real_stat = os.stat

    class SaysZero:  # a file whose size the OS reports as 0 (as /proc files do)
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return 0 if name == "st_size" else getattr(self._st, name)

    monkeypatch.setattr(os, "stat", lambda p, *a, **k: SaysZero(real_stat(p, *a, **k)))
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: SaysZero(real_fstat(fd)))
    with pytest.raises(FileFormatError, match="grows.cnnplay: the file is more than 1000 B"):
        load_network(p)
    assert sum(reads) <= 1001


# -- 5: absurd archives are refused before they are parsed -------------------------------

def many_members(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(f"m{i}", b"")
    return buf.getvalue()


def test_zip_with_40000_members_is_refused_before_parsing(monkeypatch):
    data = many_members(40_000)
    parsed = []
    real = zipfile.ZipFile
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: parsed.append(1) or real(*a, **k))
    with pytest.raises(FileFormatError, match="holds 40000 members; a valid one holds at most"):
        bundle_from_bytes(data, "many.cnnplay")
    assert parsed == []


def test_zip_whose_end_record_lies_about_its_count_is_refused(monkeypatch):
    data = bytearray(many_members(40_000))
    at = data.rfind(b"PK\x05\x06")
    data[at + 8:at + 12] = struct.pack("<HH", 2, 2)  # "2 members"
    with pytest.raises(FileFormatError, match="members"):
        bundle_from_bytes(bytes(data), "liar.cnnplay")


def test_weights_archive_with_too_many_members_is_refused():
    big = Network.from_dict({"input": [1, 64, 64], "layers": [{"type": "flatten"},
                                                              {"type": "linear", "out_features": 100}]})
    data = network_bytes(big)  # its weights may take 1.6 MB: 5000 empty members fit in that
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        header = z.read(DESCRIPTION)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(DESCRIPTION, header)
        z.writestr(WEIGHTS, many_members(5000))
    with pytest.raises(FileFormatError, match=r"\[weights.npz\].*5000 members"):
        bundle_from_bytes(out.getvalue(), "w.cnnplay")


def test_duplicate_check_is_linear():
    """Many members with a lying end record reach members(): it must not be quadratic
    (list.count per name). Counted by comparisons, not timed."""
    names = [f"n{i}" for i in range(3000)]
    calls = []

    class Names(list):
        def count(self, v):
            calls.append(v)
            return list.count(self, v)

    infos = [zipfile.ZipInfo(n) for n in names]

    class Z:
        def infolist(self):
            return infos

    r = fileformat._Reader(b"", "x")
    with pytest.raises(FileFormatError):
        r.members(Z(), None, ("a", "b"))
    assert calls == []


# -- 9: duplicate JSON keys ---------------------------------------------------------------

def test_duplicate_network_key_is_named(net):
    data = network_bytes(net)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        text = z.read(DESCRIPTION).decode()
        weights = z.read(WEIGHTS)
    other = json.dumps({"input": [1, 4, 4], "layers": []})
    text = text.replace('"network":', f'"network": {other}, "network":', 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(DESCRIPTION, text)
        z.writestr(WEIGHTS, weights)
    with pytest.raises(FileFormatError) as info:
        bundle_from_bytes(out.getvalue(), "dup.cnnplay")
    assert "'network' appears twice" in str(info.value) and info.value.key == "network"
    assert "size" not in str(info.value) and "shape" not in str(info.value)


def test_duplicate_key_inside_a_layer_is_named(net):
    data = network_bytes(net)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        header = json.loads(z.read(DESCRIPTION))
        weights = z.read(WEIGHTS)
    text = json.dumps(header).replace('"kernel_size": 3', '"kernel_size": 3, "kernel_size": 5')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(DESCRIPTION, text)
        z.writestr(WEIGHTS, weights)
    with pytest.raises(FileFormatError, match="'kernel_size' appears twice"):
        bundle_from_bytes(out.getvalue(), "dup.cnnplay")


# -- 8: save_network refuses what it cannot load back ---------------------------------------

def deep(n):
    v = {}
    for _ in range(n):
        v = {"a": v}
    return v


@pytest.mark.parametrize("extra, fragment", [
    ([1, 2], "must be a dict"),
    ("text", "must be a dict"),
    ({1: "a"}, "the key 1, not a string"),
    ({"a": {2.5: 1}}, "not a string"),
    ({"a": {1, 2}}, "set"),
    ({"a": object()}, "not a JSON value"),
    ({"a": np.float32(1)}, "not a JSON value"),
    ({"a": b"bytes"}, "not a JSON value"),
    ({"a": 10 ** 2000}, "1000 digits"),
    ({"deep": deep(200)}, "nested more than"),
    ({"big": "x" * (17 << 20)}, "more than a file may hold"),
])
def test_save_refuses_extra_it_cannot_load_back(net, tmp_path, extra, fragment):
    p = tmp_path / "n.cnnplay"
    with pytest.raises(FileFormatError, match=fragment):
        save_network(net, p, extra=extra)
    assert not p.exists()


def test_extra_that_is_plain_json_round_trips(net, tmp_path):
    p = tmp_path / "n.cnnplay"
    extra = {"a": (1, 2), "b": [None, True, "s", 1.5, float("nan")], "c": deep(50), "n": 10 ** 900}
    save_network(net, p, extra=extra)
    _, back = load_bundle(p)
    assert back["a"] == [1, 2] and back["b"][:4] == [None, True, "s", 1.5] and math.isnan(back["b"][4])
    assert back["c"] == deep(50) and back["n"] == 10 ** 900


# -- 8: seeds, inputs ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [-1, 1.5, 2.0, "3", None, True, 2 ** 63, 2 ** 64, 10 ** 30, [1]])
def test_bad_seeds_are_refused_at_once(seed):
    with pytest.raises(NetworkError) as info:
        Network.from_dict(SPEC, seed=seed)
    assert info.value.field == "seed" and "seed" in str(info.value)


@pytest.mark.parametrize("seed", [0, 7, 2 ** 63 - 1, np.int64(5), np.uint64(2 ** 63 - 1)])
def test_good_seeds_save_and_load(seed, tmp_path):
    net = Network.from_dict(SPEC, seed=seed)
    assert net.seed == int(seed) and type(net.seed) is int
    save_network(net, tmp_path / "s.cnnplay")
    back = load_network(tmp_path / "s.cnnplay")
    assert back.seed == int(seed)
    x = np.zeros((1, 8, 8), np.float32)
    assert np.array_equal(back.forward(x)[0], net.forward(x)[0])


@pytest.mark.parametrize("x, fragment", [
    (np.empty((1, 8, 8), dtype=object), "Python objects"),
    (np.full((1, 8, 8), "a"), "text"),
    (np.zeros((1, 8, 8), np.complex64), "complex"),
    ([[[1, 2], [3]]], "not an array of numbers"),
])
def test_forward_on_a_non_numeric_input_names_the_input(net, x, fragment):
    with pytest.raises(NetworkError) as info:
        net.forward(x)
    assert info.value.field == "input" and fragment in str(info.value)


# -- 6, 9: CSV ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (b"1,2,\n3,4,\n5,6,\n", [[1, 3, 5], [2, 4, 6]]),           # the example: 3 rows
    (b"1;2;\n3;4;\n5;6;\n", [[1, 3, 5], [2, 4, 6]]),
    (b"1\t2\t\n3\t4\t\n5\t6\t\n", [[1, 3, 5], [2, 4, 6]]),
    (b"1,\n2,\n3,\n", [[1, 2, 3]]),                             # one channel, trailing separator
    (b"a,b,\n1,2,\n3,4,\n", [[1, 3], [2, 4]]),                   # header too
    (b"a,b\n1,2,\n3,4,\n", [[1, 3], [2, 4]]),
    (b"1 2 \n3 4 \n", [[1, 3], [2, 4]]),                          # whitespace-separated, trailing blanks
    (b"x,,y\n1,2,3\n4,5,6\n", [[1, 4], [2, 5], [3, 6]]),        # a header with an unnamed column
])
def test_csv_rows_ending_with_a_separator_keep_every_row(text, expected):
    a = parse_csv(text, "t.csv")
    assert a.tolist() == expected


@pytest.mark.parametrize("text, fragments", [
    (b"1,,3", ("row 1, column 2", "is empty")),
    (b"1,,3\n4,5,6\n", ("row 1, column 2", "is empty")),
    (b",1,2\n,3,4\n", ("row 1, column 1", "is empty")),
    (b"1,2\n3,4,\n", ("row 2", "ends with a separator")),
    (b"1,2,,\n3,4,,\n", ("row 1, column 3", "is empty")),
])
def test_csv_blank_cells_get_the_right_message(text, fragments):
    with pytest.raises(InputError) as info:
        parse_csv(text, "t.csv")
    for f in fragments:
        assert f in str(info.value)
    assert "header" not in str(info.value)
