"""1D signal loading (CSV/NPY/NPZ) and generation."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from cnnplay.core.errors import InputError
from cnnplay.core.signals import SIGNAL_KINDS, generate_signal, load_signal, signal_from_bytes


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def npy(a, **kw) -> bytes:
    b = io.BytesIO()
    np.save(b, a, **kw)
    return b.getvalue()


def expect(fn, *fragments):
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, msg
    return info.value


# -- CSV -------------------------------------------------------------------------

def test_csv_columns_are_channels(tmp_path):
    p = write(tmp_path, "s.csv", "1,10\n2,20\n3,30\n4,40\n")
    a = load_signal(p)
    assert a.dtype == np.float32 and a.shape == (2, 4)
    assert a.tolist() == [[1, 2, 3, 4], [10, 20, 30, 40]]


def test_csv_header_and_separators(tmp_path):
    for text in ("time;volts\n0;1.5\n1;-2e-3\n", "a\tb\n0\t1.5\n1\t-2e-3\n", "x y\n0 1.5\n1   -2e-3\n",
                 "\ufeffx,y\r\n0,1.5\r\n1,-2e-3\r\n", "# comment\nx,y,\n0,1.5,\n\n1,-2e-3,\n"):
        a = load_signal(write(tmp_path, "s.csv", text))
        assert np.allclose(a, [[0, 1], [1.5, -2e-3]]), text


def test_csv_single_column_and_single_row(tmp_path):
    assert load_signal(write(tmp_path, "c.csv", "1\n2\n3\n")).shape == (1, 3)
    assert load_signal(write(tmp_path, "r.csv", "1,2,3,4,5\n")).tolist() == [[1, 2, 3, 4, 5]]


@pytest.mark.parametrize("text, fragments", [
    ("", ("empty (0 bytes)",)),
    ("\n\n  \n", ("no data",)),
    ("a,b\n", ("header row but no data",)),
    ("1,2\n3,nan\n", ("row 2, column 2", "'nan' is not a finite number")),
    ("1,2\ninf,3\n", ("row 2, column 1", "not a finite number")),
    ("1,2\n3,-Infinity\n", ("row 2, column 2",)),
    ("1,2\n3,hello\n", ("row 2, column 2", "'hello' is not a number")),
    ("x,y\n1,2\n3,4\nfoo,4\n", ("row 4, column 1", "'foo' is not a number")),
    ("1,2\n3\n", ("row 2", "has 1 values but the first data row has 2")),
    ("1,2\n3,,4\n", ("row 2",)),
    ("1,2\n3, \n", ("row 2, column 2", "is empty")),
    ("1,2\n3,1e999\n", ("row 2, column 2", "too large")),
    ("1,2\n3,1e300\n", ("does not fit in float32",)),
])
def test_csv_errors(tmp_path, text, fragments):
    p = write(tmp_path, "bad.csv", text)
    e = expect(lambda: load_signal(p), "bad.csv", *fragments)
    assert e.path == str(p)


def test_csv_row_numbers_count_skipped_lines(tmp_path):
    p = write(tmp_path, "bad.csv", "# made by a logger\nx,y\n\n1,2\nabc,2\n")
    e = expect(lambda: load_signal(p), "row 5, column 1")
    assert (e.row, e.column) == (5, 1)


def test_binary_as_csv(tmp_path):
    expect(lambda: load_signal(write(tmp_path, "b.csv", bytes(range(256)))), "b.csv", "not a text")
    expect(lambda: load_signal(write(tmp_path, "p.csv", b"\x89PNG\r\n\x1a\n\x00\x00")), "p.csv", "not a text")


def test_missing_and_folder(tmp_path):
    expect(lambda: load_signal(tmp_path / "none.csv"), "none.csv", "no such file")
    expect(lambda: load_signal(tmp_path), "is a folder")


# -- NPY / NPZ ---------------------------------------------------------------------

def test_npy_layouts(tmp_path):
    one = np.arange(10, dtype=np.float64)
    assert load_signal(write(tmp_path, "a.npy", npy(one))).shape == (1, 10)
    two = np.arange(12, dtype=np.int16).reshape(3, 4)
    a = load_signal(write(tmp_path, "b.npy", npy(two)))
    assert a.dtype == np.float32 and a.tolist() == two.tolist()
    f = np.asfortranarray(two.astype(">f4"))
    assert load_signal(write(tmp_path, "f.npy", npy(f))).tolist() == two.tolist()
    assert signal_from_bytes(npy(two), "mem.npy").tolist() == two.tolist()
    assert load_signal(write(tmp_path, "bool.npy", npy(np.array([True, False])))).tolist() == [[1, 0]]


def test_npz_single_array(tmp_path):
    b = io.BytesIO()
    np.savez_compressed(b, signal=np.ones((2, 5)))
    assert load_signal(write(tmp_path, "s.npz", b.getvalue())).shape == (2, 5)
    b = io.BytesIO()
    np.savez(b, a=np.ones(3), b=np.ones(3))
    expect(lambda: load_signal(write(tmp_path, "two.npz", b.getvalue())), "two.npz", "exactly one array")


@pytest.mark.parametrize("array, fragments", [
    (np.array([1.0, np.nan, 3.0]), ("channel 1, sample 2 is nan",)),
    (np.array([[1.0, 2.0], [np.inf, 3.0]]), ("channel 2, sample 1 is inf",)),
    (np.array(["a", "b"]), ("must hold numbers, not text",)),
    (np.array([1 + 2j]), ("complex",)),
    (np.zeros((2, 3, 4)), ("shape (2, 3, 4)", "needs 1 dimension")),
    (np.zeros(()), ("shape ()",)),
    (np.zeros((0,)), ("empty",)),
    (np.zeros((3, 0)), ("empty",)),
    (np.array([1e300]), ("does not fit in float32",)),
])
def test_npy_errors(tmp_path, array, fragments):
    p = write(tmp_path, "bad.npy", npy(array))
    expect(lambda: load_signal(p), "bad.npy", *fragments)


def test_npy_pickle_never_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    obj = np.empty(2, dtype=object)
    obj[0] = Boom()
    p = write(tmp_path, "obj.npy", npy(obj, allow_pickle=True))
    expect(lambda: load_signal(p), "obj.npy", "Python objects")
    assert not marker.exists()


def test_npy_damaged(tmp_path):
    good = npy(np.arange(100, dtype=np.float32))
    expect(lambda: load_signal(write(tmp_path, "t.npy", good[:-7])), "t.npy", "truncated")
    expect(lambda: load_signal(write(tmp_path, "x.npy", good + b"xx")), "x.npy", "extra bytes")
    expect(lambda: load_signal(write(tmp_path, "h.npy", good[:30])), "h.npy", "not a valid .npy")
    expect(lambda: load_signal(write(tmp_path, "m.npy", b"NOTNUMPY" * 20)), "m.npy", "not a valid .npy")
    expect(lambda: load_signal(write(tmp_path, "z.npz", b"PK\x03\x04" + bytes(40))), "z.npz", ".npz")


def test_npz_bomb_refused(tmp_path):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.npy", bytes(1000))
    data = bytearray(b.getvalue())
    cd = bytes(data).find(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (0xF0000000).to_bytes(4, "little")  # the directory claims 4 GB unpacked
    expect(lambda: load_signal(write(tmp_path, "bomb.npz", bytes(data))), "bomb.npz", "too large")


# -- generation --------------------------------------------------------------------

@pytest.mark.parametrize("kind", SIGNAL_KINDS)
def test_generate_shapes_and_determinism(kind):
    a = generate_signal(kind, 300, channels=3, seed=7)
    assert a.shape == (3, 300) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, generate_signal(kind, 300, channels=3, seed=7))
    assert a.flags.c_contiguous and a.flags.writeable
    assert not np.array_equal(a[0], a[1])  # channels differ


def test_generate_values():
    s = generate_signal("sine", 100, frequency=0.25, amplitude=2)
    assert np.allclose(s[0, :4], [0, 2, 0, -2], atol=1e-6)
    assert np.abs(generate_signal("sine", 1000)).max() <= 1.0
    c = generate_signal("chirp", 2000, f0=0.0, f1=0.2)
    zero_crossings = lambda x: int((np.diff(np.sign(x)) != 0).sum())  # noqa: E731
    assert zero_crossings(c[0, :500]) < zero_crossings(c[0, 1500:])
    st = generate_signal("steps", 80, count=4, seed=1)
    assert len(np.unique(st)) == 4 and np.all(st[0, :20] == st[0, 0])
    n = generate_signal("noise", 20000, seed=2)
    assert abs(n.std() - 1) < 0.05 and abs(n.mean()) < 0.05
    u = generate_signal("noise", 1000, distribution="uniform", amplitude=0.5)
    assert u.min() >= -0.5 and u.max() <= 0.5
    assert generate_signal("steps", 1).shape == (1, 1)


@pytest.mark.parametrize("args, kwargs, fragment", [
    (("square", 10), {}, "unknown signal kind"),
    (("sine", 0), {}, "length"),
    (("sine", 10.5), {}, "length"),
    (("sine", 10), {"channels": 0}, "channels"),
    (("sine", 10), {"seed": -1}, "seed"),
    (("sine", 10), {"bogus": 1}, "no parameter 'bogus'"),
    (("sine", 10), {"amplitude": float("nan")}, "amplitude"),
    (("sine", 10), {"frequency": "fast"}, "frequency"),
    (("steps", 10), {"count": 0}, "count"),
    (("steps", 10), {"count": 11}, "count"),
    (("noise", 10), {"distribution": "cauchy"}, "distribution"),
    (("sine", 10**7), {"channels": 10}, "more than"),
])
def test_generate_errors(args, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        generate_signal(*args, **kwargs)
