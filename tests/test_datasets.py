"""Data sets: validation, split, .npz round trip and safety, built-in sets."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from cnnplay.core import memory
from cnnplay.datasets import BUILTIN, Dataset, DatasetError, from_reference, make_builtin


def small(n=12, k=3, shape=(1, 4, 4)):
    rng = np.random.default_rng(0)
    x = rng.random((n,) + shape, dtype=np.float32)
    y = np.arange(n) % k
    return x, y, [f"c{i}" for i in range(k)]


# -- validation -------------------------------------------------------------------

def test_valid_dataset_facts():
    x, y, classes = small()
    ds = Dataset(x, y, classes, name="tiny")
    assert len(ds) == 12 and ds.num_classes == 3 and ds.sample_shape == (1, 4, 4)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.classes == classes
    assert list(ds.class_counts()) == [4, 4, 4]
    with pytest.raises(ValueError):
        ds.x[0, 0, 0, 0] = 1.0  # read-only
    x[0, 0, 0, 0] = 99.0  # a copy: the caller's array does not change the data set
    assert ds.x[0, 0, 0, 0] != 99.0


def test_signal_dataset_and_int_pixels():
    ds = Dataset(np.zeros((4, 2, 16), np.uint8), [0, 1, 0, 1], ["a", "b"])
    assert ds.sample_shape == (2, 16) and ds.x.dtype == np.float32


@pytest.mark.parametrize("mutate, needle", [
    (lambda x, y, c: (x[0, 0], y, c), "(N, C, H, W) images or (N, C, L) signals"),
    (lambda x, y, c: (x[:0], y[:0], c), "no samples"),
    (lambda x, y, c: (x.astype(complex), y, c), "real numbers"),
    (lambda x, y, c: (x.astype(object), y, c), "real numbers"),
    (lambda x, y, c: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y, c), "NaN at (0, 0, 1, 1)"),
    (lambda x, y, c: (np.where(np.arange(x.size).reshape(x.shape) == 0, np.inf, x), y, c), "infinite"),
    (lambda x, y, c: (x.astype(np.float64) * 1e300, y, c), "infinite"),
    (lambda x, y, c: (x, y[:-1], c), "11 labels but x has 12 samples"),
    (lambda x, y, c: (x, y.reshape(3, 4), c), "one label per sample"),
    (lambda x, y, c: (x, y.astype(np.float32), c), "labels must be integers"),
    (lambda x, y, c: (x, np.where(np.arange(12) == 7, 3, y), c), "label 3 of sample 7 is outside [0, 3)"),
    (lambda x, y, c: (x, np.where(np.arange(12) == 2, -1, y), c), "label -1 of sample 2"),
    (lambda x, y, c: (x, y, c + ["unused"]), "'unused' have no samples"),
    (lambda x, y, c: (x, y, ["a", "a", "b"]), "repeated: 'a'"),
    (lambda x, y, c: (x, np.zeros(12, int), ["only"]), "needs from 2"),
    (lambda x, y, c: (x, y, ["a", "", "b"]), "class 1"),
    (lambda x, y, c: (x, y, "abc"), "list of names"),
])
def test_bad_datasets_are_refused_with_a_clear_message(mutate, needle):
    with pytest.raises(DatasetError) as e:
        Dataset(*mutate(*small()))
    assert needle in str(e.value)


def test_dataset_above_the_memory_budget_is_refused():
    memory.set_limit(1000)
    try:
        with pytest.raises(DatasetError, match="memory limit"):
            Dataset(*small(n=100))
        with pytest.raises(DatasetError, match="memory limit"):
            make_builtin("shapes", count=100)
    finally:
        memory.set_limit(None)


def test_empty_classes_allowed_when_asked():
    x, y, c = small()
    ds = Dataset(x, y, c + ["extra"], allow_empty_classes=True)
    assert list(ds.class_counts()) == [4, 4, 4, 0]


# -- split -----------------------------------------------------------------------

def test_split_is_stratified_disjoint_and_seeded():
    ds = make_builtin("shapes", size=8, count=103, seed=2)
    train, test = ds.split(0.2, seed=5)
    assert len(train) + len(test) == len(ds)
    counts, tcounts = ds.class_counts(), test.class_counts()
    assert all(t == min(max(round(n * 0.2), 1), n - 1) for n, t in zip(counts, tcounts))
    # every sample lands in exactly one part: compare the samples themselves
    both = np.concatenate([train.x, test.x]).reshape(len(ds), -1)
    assert len({row.tobytes() for row in both}) == len(ds)
    t2, s2 = ds.split(0.2, seed=5)
    assert np.array_equal(t2.x, train.x) and np.array_equal(s2.y, test.y)
    _, s3 = ds.split(0.2, seed=6)
    assert not np.array_equal(s3.x, test.x)
    assert train.reference == ds.reference and train.classes == ds.classes


def test_split_keeps_singleton_classes_in_train():
    x, y, c = small(n=5, k=2)
    y = np.array([0, 0, 0, 0, 1])
    train, test = Dataset(x, y, c).split(0.5, seed=0)
    assert list(train.class_counts()) == [2, 1] and list(test.class_counts()) == [2, 0]


@pytest.mark.parametrize("frac", [0, 1, -0.1, 1.5, "0.2", True, float("nan")])
def test_split_bad_fraction(frac):
    with pytest.raises(DatasetError, match="test_fraction"):
        Dataset(*small()).split(frac)


# -- .npz files --------------------------------------------------------------------

def test_npz_round_trip(tmp_path):
    ds = make_builtin("waveforms", length=32, count=20, seed=1)
    p = tmp_path / "w.npz"
    ds.save_npz(p)
    back = Dataset.load_npz(p)
    assert np.array_equal(back.x, ds.x) and np.array_equal(back.y, ds.y)
    assert back.classes == ds.classes and back.name == ds.name and back.reference == ds.reference
    with zipfile.ZipFile(p) as z:  # no pickles anywhere: every member is a plain .npy array
        for name in z.namelist():
            arr = np.lib.format.read_array(io.BytesIO(z.read(name)), allow_pickle=False)
            assert not arr.dtype.hasobject


def test_npz_without_meta_gets_file_reference(tmp_path):
    x, y, c = small()
    p = tmp_path / "plain.npz"
    np.savez(p, x=x, y=y, classes=np.array(c))
    ds = Dataset.load_npz(p)
    assert ds.name == "plain" and ds.reference == {"file": os.path.abspath(p)}


def test_npz_with_pickled_objects_is_refused(tmp_path):
    x, y, c = small()
    p = tmp_path / "evil.npz"
    np.savez(p, x=x, y=y, classes=np.array(c, dtype=object))
    with pytest.raises(DatasetError, match="never unpickles"):
        Dataset.load_npz(p)


def test_npz_bad_files(tmp_path):
    x, y, c = small()
    with pytest.raises(DatasetError, match="no such file"):
        Dataset.load_npz(tmp_path / "missing.npz")
    with pytest.raises(DatasetError, match="folder"):
        Dataset.load_npz(tmp_path)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty"):
        Dataset.load_npz(tmp_path / "empty.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DatasetError, match="not a zip"):
        Dataset.load_npz(tmp_path / "text.npz")
    np.savez(tmp_path / "noy.npz", x=x, classes=np.array(c))
    with pytest.raises(DatasetError, match="missing array.*y"):
        Dataset.load_npz(tmp_path / "noy.npz")
    np.savez(tmp_path / "badlabel.npz", x=x, y=y + 5, classes=np.array(c))
    with pytest.raises(DatasetError, match="badlabel.npz.*outside"):
        Dataset.load_npz(tmp_path / "badlabel.npz")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_npz_special_file_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="not a regular file"):
        Dataset.load_npz(fifo)


def test_npz_zip_bomb_refused_before_inflating(tmp_path):
    p = tmp_path / "bomb.npz"
    x, y, c = small()
    big = np.zeros((4096, 1024, 1, 1), np.float32)  # 16 MB of zeros compresses to a few KB
    np.savez_compressed(p, x=big, y=np.zeros(4096, int), classes=np.array(c))
    memory.set_limit(8 << 20)
    try:
        assert p.stat().st_size < (1 << 20)
        with pytest.raises(DatasetError, match="claim .* unpacked, above the memory limit"):
            Dataset.load_npz(p)
    finally:
        memory.set_limit(None)


# -- built-in sets -------------------------------------------------------------------

@pytest.mark.parametrize("name, params, shape, k", [
    ("shapes", dict(size=16, count=40, channels=1), (1, 16, 16), 4),
    ("shapes", dict(size=12, count=8, channels=3), (3, 12, 12), 4),
    ("orientations", dict(size=16, count=24, angles=6), (1, 16, 16), 6),
    ("waveforms", dict(length=64, count=25, channels=2), (2, 64), 5),
    ("digits", dict(size=16, count=50), (1, 16, 16), 10),
])
def test_builtin_sets_are_deterministic_and_well_formed(name, params, shape, k):
    a = make_builtin(name, seed=3, **params)
    b = make_builtin(name, seed=3, **params)
    c = make_builtin(name, seed=4, **params)
    assert a.sample_shape == shape and a.num_classes == k
    assert a.x.tobytes() == b.x.tobytes() and np.array_equal(a.y, b.y)  # bit for bit
    assert a.x.tobytes() != c.x.tobytes()
    counts = a.class_counts()
    assert counts.max() - counts.min() <= 1  # balanced
    if BUILTIN[name].kind == "image":
        assert a.x.min() >= 0 and a.x.max() <= 1
    again = from_reference(a.reference)
    assert again.x.tobytes() == a.x.tobytes()


def test_builtin_noise_parameter():
    clean = make_builtin("shapes", size=16, count=8, noise=0.0)
    noisy = make_builtin("shapes", size=16, count=8, noise=0.2)
    # without noise, a flat background: the corner pixels of each image have one value per image
    # (the shapes lie inside, at least half a pixel from the border)
    assert np.all(clean.x[:, :, 0, 0] == clean.x[:, :, -1, -1])
    assert not np.all(noisy.x[:, :, 0, 0] == noisy.x[:, :, -1, -1])


def test_shapes_classes_differ_in_area():
    # squares (side r*sqrt2) cover more than triangles of the same outer radius: check the
    # generator draws what it says by the mean foreground coverage per class, without noise
    ds = make_builtin("shapes", size=32, count=400, noise=0.0, seed=1)
    fg = np.abs(ds.x - ds.x[:, :, :1, :1]).reshape(len(ds), -1) > 0.05
    area = {c: fg[ds.y == k].mean() for k, c in enumerate(ds.classes)}
    assert area["square"] > area["triangle"] and area["circle"] > area["triangle"]


def test_orientation_classes_are_oriented():
    # the mean image gradient direction of a class is perpendicular to its stripes
    ds = make_builtin("orientations", size=32, count=200, noise=0.0, seed=0, angles=4)
    for k in range(4):
        x = ds.x[ds.y == k, 0].astype(np.float64)
        gy, gx = np.gradient(x, axis=(1, 2))
        # structure tensor: the dominant gradient direction (y down on screen)
        jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
        grad_angle = 0.5 * np.degrees(np.arctan2(2 * jxy, jxx - jyy))  # in image coords, y down
        stripe = (-grad_angle + 90) % 180  # stripes run perpendicular; counter-clockwise on screen
        expect = k * 45
        assert min(abs(stripe - expect), 180 - abs(stripe - expect)) < 10, (k, stripe)


def test_digits_is_the_real_bundled_set():
    ds = make_builtin("digits")
    assert len(ds) == 1797 and ds.sample_shape == (1, 8, 8) and ds.classes == [str(d) for d in range(10)]
    assert list(ds.class_counts()) == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert ds.x.min() == 0 and ds.x.max() == 1
    assert np.all((ds.x * 16) == np.round(ds.x * 16))  # pixel counts 0..16
    # the first sample of the UCI file (a zero), row by row
    first = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0]
    assert ds.y[0] == 0 and list((ds.x[0, 0] * 16).ravel()[:16].astype(int)) == first
    small4 = make_builtin("digits", size=4)
    np.testing.assert_allclose(small4.x[0, 0, 0, 0], ds.x[0, 0, :2, :2].mean(), rtol=1e-6)


@pytest.mark.parametrize("name, params, needle", [
    ("mnist", {}, "no built-in data set 'mnist'"),
    ("shapes", {"colour": 1}, "unknown parameter(s) colour"),
    ("shapes", {"size": 4}, "size: must be from 8"),
    ("shapes", {"channels": 2}, "one of 1, 3"),
    ("shapes", {"count": 1.5}, "count: must be an integer"),
    ("waveforms", {"noise": float("inf")}, "noise: must be a number"),
    ("digits", {"count": 5000}, "count: must be from 10 to 1797"),
])
def test_builtin_bad_parameters(name, params, needle):
    with pytest.raises(DatasetError) as e:
        make_builtin(name, **params)
    assert needle in str(e.value)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(1, 9), min_size=2, max_size=5), frac=st.floats(0.05, 0.95),
       seed=st.integers(0, 2**32))
def test_split_invariants(counts, frac, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    x = np.arange(y.size, dtype=np.float32).reshape(-1, 1, 1)  # each sample's value is its index
    ds = Dataset(x, y, [f"c{k}" for k in range(len(counts))])
    if all(c == 1 for c in counts):
        with pytest.raises(DatasetError, match="too few samples"):
            ds.split(frac, seed)
        return
    train, test = ds.split(frac, seed)
    got = np.concatenate([train.x.ravel(), test.x.ravel()])
    assert sorted(got.tolist()) == list(range(y.size))  # a partition
    assert np.all(np.diff(train.x.ravel()) > 0) and np.all(np.diff(test.x.ravel()) > 0)  # order kept
    assert np.array_equal(y[train.x.ravel().astype(int)], train.y)  # labels travel with their samples
    for k, n in enumerate(counts):
        expect = 0 if n < 2 else min(max(int(round(n * frac)), 1), n - 1)
        assert test.class_counts()[k] == expect and train.class_counts()[k] == n - expect


def test_waveform_classes_have_their_shapes():
    ds = make_builtin("waveforms", length=256, count=50, noise=0.0, seed=2)
    for x, k in zip(ds.x[:, 0].astype(np.float64), ds.y):
        name = ds.classes[k]
        d2 = np.abs(np.diff(x, 2))
        if name == "square":
            assert len(np.unique(np.round(x, 5))) == 2
        elif name in ("sawtooth", "triangle"):
            # piecewise linear: the second difference vanishes except at a few kinks (<= 8 cycles)
            assert (d2 > 1e-4).sum() <= 2 * 2 * 9
            if name == "sawtooth":  # rises slowly, falls at once
                steps = np.diff(x)
                assert (steps > 0).sum() > 0.9 * len(steps)
        else:  # sine and chirp are smooth: no jumps
            assert np.abs(np.diff(x)).max() < 0.5
            if name == "chirp":
                # the spacing between zero crossings (around the offset) changes across the signal
                c = x - (x.max() + x.min()) / 2
                z = np.flatnonzero(np.sign(c[1:]) != np.sign(c[:-1]))
                gaps = np.diff(z)
                assert len(gaps) >= 3 and abs(gaps[-1] - gaps[0]) >= 2
