"""A corpus of malformed .cnnplay files, built here, through the loader.

Each must give a NetworkError (a FileFormatError) naming the file, the member
and the problem; nothing else may escape, and nothing is ever unpickled.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from cnnplay import Network, NetworkError
from cnnplay.core import fileformat
from cnnplay.core.fileformat import (DESCRIPTION, WEIGHTS, FileFormatError, bundle_from_bytes, load_bundle,
                                     load_network, network_bytes, save_network)

SPEC = {"input": [3, 12, 12], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "id": "c1"},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 5},
]}


@pytest.fixture(scope="module")
def net():
    return Network.from_dict(SPEC, seed=3)


@pytest.fixture(scope="module")
def good(net):
    return network_bytes(net, {"session": {"x": 1}})


def header_of(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return json.loads(z.read(DESCRIPTION))


def arrays_of(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        with np.load(io.BytesIO(z.read(WEIGHTS)), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}


def build(header=None, arrays=None, members=None, raw_header: bytes | None = None,
          raw_weights: bytes | None = None, base: bytes | None = None) -> bytes:
    """A .cnnplay-like zip. `members` adds/overrides members by name (None value drops one)."""
    header = header if header is not None else header_of(base)
    if raw_weights is None:
        arrays = arrays if arrays is not None else arrays_of(base)
        npz = io.BytesIO()
        np.savez(npz, **arrays)
        raw_weights = npz.getvalue()
    content = {DESCRIPTION: raw_header if raw_header is not None else json.dumps(header).encode(),
               WEIGHTS: raw_weights}
    content.update(members or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in content.items():
            if data is not None:
                z.writestr(name, data)
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=True)
    return b.getvalue()


def with_header(good, **changes):
    h = header_of(good)
    for k, v in changes.items():
        if v is _DROP:
            h.pop(k)
        else:
            h[k] = v
    return build(h, base=good)


def with_arrays(good, **changes):
    a = arrays_of(good)
    for k, v in changes.items():
        k = k.replace("__", "/")
        if v is _DROP:
            a.pop(k)
        else:
            a[k] = v
    return build(arrays=a, base=good)


_DROP = object()


def expect(data: bytes, *fragments: str, name="broken.cnnplay"):
    with pytest.raises(NetworkError) as info:
        bundle_from_bytes(data, name)
    e = info.value
    assert isinstance(e, FileFormatError)
    msg = str(e)
    assert msg.startswith(name), msg
    for frag in fragments:
        assert frag in msg, msg
    return e


# -- round trip ------------------------------------------------------------------

def test_round_trip(net, good, tmp_path):
    path = tmp_path / "n.cnnplay"
    save_network(net, path, extra={"session": {"x": 1}})
    back, extra = load_bundle(path)
    assert back.to_dict() == net.to_dict() and extra == {"session": {"x": 1}}
    for i in range(len(net)):
        for k, a in net.params(i).items():
            assert np.array_equal(back.params(i)[k], a)
    assert load_network(path).to_dict() == net.to_dict()
    assert bundle_from_bytes(good)[1] == {"session": {"x": 1}}


def test_empty_network_round_trips():
    net = Network.from_dict({"input": [1, 8], "layers": []})
    assert len(bundle_from_bytes(network_bytes(net))[0]) == 0


# -- the file itself ---------------------------------------------------------------

def test_zero_bytes(tmp_path):
    p = tmp_path / "zero.cnnplay"
    p.write_bytes(b"")
    with pytest.raises(NetworkError, match="zero.cnnplay: the file is empty"):
        load_network(p)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(NetworkError, match="is a folder"):
        load_network(tmp_path)
    with pytest.raises(NetworkError, match="nope.cnnplay: no such file"):
        load_network(tmp_path / "nope.cnnplay")


def test_not_a_zip():
    expect(b"hello, I am a text file\n" * 10, "not a .cnnplay file")
    expect(b"\x89PNG\r\n\x1a\n" + bytes(100), "not a .cnnplay file")
    expect(json.dumps(SPEC).encode(), "not a .cnnplay file")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_truncated(good, cut):
    e = expect(good[:max(4, int(len(good) * cut))])
    assert "truncated" in str(e) or "damaged" in str(e)


def test_flipped_bytes_in_compressed_data(good):
    data = bytearray(good)
    # damage the middle of the deflated weights: a CRC or inflate error, never a crash
    for pos in range(60, len(data) - 200, 97):
        data[pos] ^= 0xFF
        try:
            bundle_from_bytes(bytes(data), "flipped.cnnplay")
        except NetworkError as e:
            assert str(e).startswith("flipped.cnnplay")
        data[pos] ^= 0xFF


def test_too_large_file_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "big.cnnplay"
    p.write_bytes(b"PK\x03\x04" + bytes(5000))
    monkeypatch.setattr(fileformat, "max_file_bytes", lambda: 1000)
    with pytest.raises(NetworkError, match="big.cnnplay: the file is .*larger than any network"):
        load_network(p)


# -- members ---------------------------------------------------------------------

def test_missing_members(good):
    expect(build(base=good, members={WEIGHTS: None}), "missing member(s) weights.npz")
    expect(build(base=good, members={DESCRIPTION: None}), "missing member(s) network.json")


def test_extra_member(good):
    expect(build(base=good, members={"evil.py": b"import os"}), "unexpected member(s) 'evil.py'")


def test_duplicate_member(good):
    buf = io.BytesIO(good)
    with pytest.warns(UserWarning):  # zipfile warns about the duplicate name
        with zipfile.ZipFile(buf, "a") as z:
            z.writestr(DESCRIPTION, b"{}")
    expect(buf.getvalue(), "duplicate member(s) 'network.json'")


def test_zip_bomb_refused_before_inflating(good):
    # 20 MB of spaces deflate to ~20 KB; the description may hold at most 16 MB.
    bomb = build(base=good, raw_header=b"{" + b" " * (20 << 20) + b"}")
    expect(bomb, "[network.json]", "unpacked", "refused")


def test_weight_bomb_refused_before_inflating(good):
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as z:
        for k, a in arrays_of(good).items():
            z.writestr(k + ".npy", bytes(20 << 20) if k == "0/weight" else npy_bytes(a))
    expect(build(base=good, raw_weights=npz.getvalue()), "[weights.npz]", "refused")


def test_lying_directory_sizes(good):
    """A member whose directory entry under-states its size is cut at the stated
    size, and the zip's CRC check reports the damage."""
    data = bytearray(good)
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        info = z.getinfo(DESCRIPTION)
    # patch the central-directory uncompressed size of network.json to 10 bytes
    idx = bytes(data).find(b"PK\x01\x02")
    assert idx > 0 and info.file_size > 10
    data[idx + 24:idx + 28] = (10).to_bytes(4, "little")
    expect(bytes(data), "[network.json]", "damaged zip data")


# -- the JSON description ----------------------------------------------------------

def test_bad_json(good):
    expect(build(base=good, raw_header=b"{not json"), "[network.json]", "not valid JSON", "line 1")
    expect(build(base=good, raw_header=b"\xff\xfe\x00garbage"), "[network.json]", "not UTF-8")
    expect(build(base=good, raw_header=b"[" * 100000 + b"]" * 100000), "[network.json]")
    expect(build(base=good, raw_header=b'{"format": 1' + b"0" * 6000 + b"}"), "[network.json]", "not valid JSON")


@pytest.mark.parametrize("header, fragments", [
    ([1, 2, 3], ("must hold a JSON object, not a list",)),
    ("text", ("must hold a JSON object",)),
    ({"format": "other"}, ("field 'format' must be 'cnnplay'",)),
])
def test_header_not_ours(good, header, fragments):
    expect(build(header, base=good), "[network.json]", *fragments)


@pytest.mark.parametrize("field, value, fragments", [
    ("version", "1", ("field 'version' must be a positive integer",)),
    ("version", True, ("field 'version'",)),
    ("version", 0, ("field 'version'",)),
    ("version", 1.5, ("field 'version'",)),
    ("version", 3, ("newer cnnplay", "file version 3")),
    ("version", 10**30, ("newer cnnplay",)),
    ("seed", -1, ("field 'seed'",)),
    ("seed", "zero", ("field 'seed'",)),
    ("seed", 2**70, ("field 'seed'",)),
    ("seed", None, ("field 'seed'",)),
    ("extra", [1], ("field 'extra' must be an object, not a list",)),
    ("network", _DROP, ("field 'network' is missing",)),
    ("network", [], ("field 'network'", "must be an object")),
    ("network", {"input": "big"}, ("field 'network'", "'input'")),
    ("surprise", 1, ("unknown field(s) 'surprise'",)),
])
def test_header_fields(good, field, value, fragments):
    expect(with_header(good, **{field: value}), "[network.json]", *fragments)


def test_invalid_layer_is_named(good):
    h = header_of(good)
    h["network"]["layers"][3]["kernel_size"] = "two"
    e = expect(build(h, base=good), "[network.json]", "layer 3 (maxpool2d), kernel_size", "must be an integer")
    assert (e.layer, e.field, e.layer_type, e.member) == (3, "kernel_size", "maxpool2d", DESCRIPTION)


def test_nan_in_json_description(good):
    h = header_of(good)
    h["network"]["layers"][1]["eps"] = float("nan")
    expect(build(h, base=good), "layer 1 (batchnorm), eps", "finite")


def test_huge_network_in_a_tiny_file(good):
    h = header_of(good)
    h["network"]["layers"][0]["out_channels"] = 2_000_000_000
    expect(build(h, base=good), "[network.json]", "memory limit")


# -- the weights -------------------------------------------------------------------

def test_missing_and_extra_arrays(good):
    expect(with_arrays(good, **{"0__bias": _DROP}), "[weights.npz]", "missing array(s) 0/bias.npy")
    expect(with_arrays(good, **{"9__weight": np.zeros(3, np.float32)}), "[weights.npz]",
           "unexpected array(s) '9/weight.npy'")


def test_wrong_shape(good):
    e = expect(with_arrays(good, **{"0__weight": np.zeros((4, 3, 5, 5), np.float32)}),
               "[weights.npz]", "array 0/weight has shape (4, 3, 5, 5) but layer 0 needs (4, 3, 3, 3)")
    assert e.key == "0/weight"


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.float16, np.complex64, np.bool_])
def test_wrong_dtype(good, dtype):
    a = arrays_of(good)["0/weight"].astype(dtype)
    expect(with_arrays(good, **{"0__weight": a}), "[weights.npz]", "array 0/weight must be float32")


def test_big_endian_float32_is_fine(good, net):
    a = arrays_of(good)["0/weight"].astype(">f4")
    back, _ = bundle_from_bytes(with_arrays(good, **{"0__weight": a}))
    assert np.array_equal(back.params(0)["weight"], net.params(0)["weight"])


def test_fortran_order_is_read_right(good, net):
    a = np.asfortranarray(arrays_of(good)["0/weight"])
    back, _ = bundle_from_bytes(with_arrays(good, **{"0__weight": a}))
    assert np.array_equal(back.params(0)["weight"], net.params(0)["weight"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(good, bad):
    a = arrays_of(good)["5/weight"].copy()
    a[2, 7] = bad
    e = expect(with_arrays(good, **{"5__weight": a}), "[weights.npz]", "array 5/weight", "NaN or infinite")
    assert e.layer == 5


def test_negative_variance(good):
    a = -np.ones(4, np.float32)
    expect(with_arrays(good, **{"1__running_var": a}), "array 1/running_var", "variance cannot be negative")


def test_pickled_object_array_is_never_unpickled(good, tmp_path):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    obj = np.empty((4, 3, 3, 3), dtype=object)
    obj[0, 0, 0, 0] = Boom()
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as z:
        for k, a in arrays_of(good).items():
            z.writestr(k + ".npy", npy_bytes(obj if k == "0/weight" else a))
    expect(build(base=good, raw_weights=npz.getvalue()), "array 0/weight holds Python objects")
    assert not marker.exists()


def test_raw_pickle_as_weights(good, tmp_path):
    expect(build(base=good, raw_weights=pickle.dumps({"0/weight": 1})), "[weights.npz]", "not an .npz")


def test_damaged_npy_headers(good):
    arrays = arrays_of(good)
    good_npy = npy_bytes(arrays["0/weight"])
    variants = {
        "bad magic": b"NOTNUMPY" + good_npy[8:],
        "truncated data": good_npy[:-10],
        "extra data": good_npy + b"\x00" * 8,
        "header only": good_npy[:20],
        "future version": good_npy[:6] + b"\x09\x00" + good_npy[8:],
        "garbage header": good_npy[:10] + b"{'descr': os.system('x'), }".ljust(len(good_npy) - 10 - 400, b" "),
    }
    for what, blob in variants.items():
        npz = io.BytesIO()
        with zipfile.ZipFile(npz, "w") as z:
            for k, a in arrays.items():
                z.writestr(k + ".npy", blob if k == "0/weight" else npy_bytes(a))
        e = expect(build(base=good, raw_weights=npz.getvalue()), "[weights.npz]", "array 0/weight")
        assert e.key == "0/weight", what


def test_encrypted_flag(good):
    data = bytearray(good)
    idx = bytes(data).find(b"PK\x01\x02")  # central directory entry of the first member
    data[idx + 8] |= 0x1
    expect(bytes(data), "encrypted")


def test_unsupported_compression(good):
    data = bytearray(good)
    idx = bytes(data).find(b"PK\x01\x02")
    data[idx + 10:idx + 12] = (99).to_bytes(2, "little")
    expect(bytes(data), "unsupported compression")


def test_only_network_errors_escape_random_damage(good):
    rng = np.random.default_rng(1)
    for _ in range(150):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), rng.integers(1, 6)):
            data[pos] = rng.integers(0, 256)
        try:
            bundle_from_bytes(bytes(data), "random.cnnplay")
        except NetworkError as e:
            assert str(e).startswith("random.cnnplay")
