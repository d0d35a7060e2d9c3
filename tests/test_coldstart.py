"""The cold start: the numpy path (against float64 loop references and the numba
kernels) and the background-compile bookkeeping (with a fake process, no timing)."""

import io
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from cnnplay import Network
from cnnplay.bench.forward import NETWORKS
from cnnplay.core.kernels import coldstart, conv, dense, norm, numpy_path, pointwise, pool


def out_size(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_ref(x, w, b, stride, pad, dil):
    """float64 loops, PyTorch semantics."""
    ci, h, wd = x.shape
    co, _, kh, kw = w.shape
    ho, wo = out_size(h, kh, stride[0], pad[0], dil[0]), out_size(wd, kw, stride[1], pad[1], dil[1])
    y = np.zeros((co, ho, wo))
    for o in range(co):
        for i in range(ho):
            for j in range(wo):
                acc = float(b[o]) if b is not None else 0.0
                for c in range(ci):
                    for ky in range(kh):
                        for kx in range(kw):
                            yy = i * stride[0] - pad[0] + ky * dil[0]
                            xx = j * stride[1] - pad[1] + kx * dil[1]
                            if 0 <= yy < h and 0 <= xx < wd:
                                acc += float(w[o, c, ky, kx]) * float(x[c, yy, xx])
                y[o, i, j] = acc
    return y


def pool_ref(x, k, s, p, avg):
    c_n, h, w = x.shape
    ho, wo = out_size(h, k[0], s[0], p[0]), out_size(w, k[1], s[1], p[1])
    y = np.zeros((c_n, ho, wo))
    for c in range(c_n):
        for i in range(ho):
            for j in range(wo):
                vals = []
                for ky in range(k[0]):
                    for kx in range(k[1]):
                        yy, xx = i * s[0] - p[0] + ky, j * s[1] - p[1] + kx
                        inside = 0 <= yy < h and 0 <= xx < w
                        vals.append(float(x[c, yy, xx]) if inside else (0.0 if avg else -math.inf))
                if avg:
                    y[c, i, j] = sum(vals) / (k[0] * k[1])
                else:  # a NaN never wins (the numba kernel's rule)
                    y[c, i, j] = max((v for v in vals if v == v), default=-math.inf)
    return y


def rel_err(a, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


@st.composite
def conv_cases(draw):
    ci, co = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 9))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 9))
    band = draw(st.sampled_from([1, 7, 1 << 22]))  # tiny bands: one output row per band
    return ci, co, (kh, kw), stride, pad, dil, (h, w), band, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_numpy_conv_matches_float64_reference_and_numba(case):
    ci, co, (kh, kw), stride, pad, dil, (h, w), band, bias = case
    rng = np.random.default_rng(ci * 100 + co)
    x = rng.standard_normal((ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, kh, kw)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32) if bias else None
    old = numpy_path.BAND_FLOATS
    numpy_path.BAND_FLOATS = band
    try:
        got = numpy_path.conv2d(x, wt, b, stride, pad, dil)
    finally:
        numpy_path.BAND_FLOATS = old
    ref = conv_ref(x, wt, b, stride, pad, dil)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert rel_err(got, ref) < 1e-5
    assert rel_err(got, conv.conv2d(x, wt, b, stride, pad, dil)) < 1e-5


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1),
       st.integers(0, 1), st.booleans(), st.booleans())
def test_numpy_pool_matches_float64_reference_and_numba(kh, kw, sh, sw, ph, pw, avg, nan):
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    rng = np.random.default_rng(kh * 10 + kw)
    x = rng.standard_normal((2, 7, 8)).astype(np.float32)
    if nan:
        x[0, 2, 3] = np.nan
        x[1, :2, :2] = np.nan
    got = numpy_path.pool(x, (kh, kw), (sh, sw), (ph, pw), avg)
    ref = pool_ref(x, (kh, kw), (sh, sw), (ph, pw), avg)
    ours = (pool.avgpool2d if avg else pool.maxpool2d)(x, (kh, kw), (sh, sw), (ph, pw))
    assert got.shape == ref.shape == ours.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ours))
    ok = ~np.isnan(ref) & np.isfinite(ref)
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    if ok.any():
        assert rel_err(got[ok], ref[ok]) < 1e-6 and rel_err(got[ok], ours[ok]) < 1e-6


@pytest.mark.parametrize("slope", [0.0, 0.01, 1.0])
def test_numpy_affine_leaky_matches_reference_and_numba(slope):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 50)).astype(np.float32)
    scale, shift = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    v = x.astype(np.float64) * scale[:, None] + shift[:, None]
    ref = np.where(v > 0, v, v * slope)
    got = numpy_path.affine_leaky(x, scale, shift, slope)
    assert got.dtype == np.float32 and rel_err(got, ref) < 1e-6
    assert rel_err(got, pointwise.affine_leaky(x, scale, shift, slope)) < 1e-6


def test_numpy_layernorm_and_linear_match_reference_and_numba(monkeypatch):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((5, 37)) * 3 + 1).astype(np.float32)
    w, b = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5) * w[:, None] + b[:, None]
    monkeypatch.setattr(numpy_path, "BAND_FLOATS", 40)  # several bands of columns
    got = numpy_path.layernorm(x, w, b, 1e-5)
    assert rel_err(got, ref) < 1e-5 and rel_err(got, norm.layernorm(x, w, b, 1e-5)) < 1e-5
    f = rng.standard_normal(300).astype(np.float32)
    wl, bl = rng.standard_normal((7, 300)).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    ref = wl.astype(np.float64) @ f + bl
    for bias in (bl, None):
        got = numpy_path.linear(f, wl, bias)
        want = ref if bias is not None else ref - bl
        assert rel_err(got, want) < 1e-6 and rel_err(got, dense.linear(f, wl, bias)) < 1e-6


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_map_is_the_same_on_either_path(name):
    net = Network.from_dict(NETWORKS[name], seed=0)
    x = np.random.default_rng(1).standard_normal(net.input_shape).astype(np.float32)
    fast = net.forward(x)
    mode = coldstart.mode()
    coldstart.set_mode("numpy")
    try:
        slow = net.forward(x)
    finally:
        coldstart.set_mode(mode)
    for i, (a, b) in enumerate(zip(slow, fast)):
        assert a.shape == b.shape and a.dtype == np.float32
        assert rel_err(a, b) < 1e-5, f"layer {i} ({net.layer_types[i].name})"


# -- the bookkeeping -------------------------------------------------------------

@pytest.fixture
def fresh_state(monkeypatch):
    """coldstart's module state as in a fresh process, in mode auto, starting nothing."""
    monkeypatch.setattr(coldstart, "_mode", "auto")
    monkeypatch.setattr(coldstart, "_done", set())
    monkeypatch.setattr(coldstart, "_on_disk", {})
    monkeypatch.setattr(coldstart, "_procs", [])
    monkeypatch.setattr(coldstart, "_steps", {"done": 0, "total": 0})
    monkeypatch.setattr(coldstart, "_state", "idle")
    monkeypatch.setattr(coldstart, "_finished", __import__("threading").Event())
    starts = []
    monkeypatch.setattr(coldstart, "start", lambda: starts.append(1))
    return starts


class FakeProcess:
    def __init__(self, lines, code):
        self.stdout = io.StringIO("".join(lines))
        self.code = code

    def wait(self):
        return self.code

    def poll(self):
        return self.code


def test_kernels_in_the_disk_cache_are_ready_others_start_the_background_compile(fresh_state):
    assert coldstart.ready(conv._direct, pool._pool)  # compiled by the tests' warm-up, so cached
    assert coldstart._in_disk_cache(conv._direct)
    fresh = njit(lambda a: a + 1)  # never compiled, never cached
    assert not coldstart.ready(fresh) and fresh_state == [1]
    coldstart._done.add(coldstart.kernel_name(fresh))  # a background process reported it
    assert coldstart.ready(fresh)


def test_reports_of_a_background_process_are_followed(fresh_state):
    fresh = njit(lambda a: a + 2)
    name = coldstart.kernel_name(fresh)
    coldstart._state = "running"
    p = FakeProcess(["steps 3\n", "step\n", f"ready x.y {name}\n", "step\n"], 0)
    coldstart._procs.append(p)
    assert coldstart.progress() == (0, 0)
    coldstart._follow(p, io.BytesIO(), "conv")
    assert coldstart._steps == {"done": 2, "total": 3}
    assert coldstart.ready(fresh) and "x.y" in coldstart._done
    assert coldstart._state == "finished" and not coldstart.compiling() and coldstart.wait(0)
    assert coldstart.progress() is None


def test_a_failed_background_compile_makes_kernels_compile_in_process(fresh_state):
    fresh = njit(lambda a: a + 3)
    coldstart._state = "running"
    p = FakeProcess(["steps 3\n"], 1)
    coldstart._procs.append(p)
    coldstart._follow(p, io.BytesIO(b"Traceback: boom"), "other")
    assert coldstart._state == "failed"
    assert coldstart.ready(fresh)  # compiles on first use, as without the background


def test_modes(fresh_state):
    fresh = njit(lambda a: a + 4)
    coldstart.set_mode("numba")
    assert coldstart.ready(fresh)
    coldstart.set_mode("numpy")
    assert not coldstart.ready(conv._direct)
    with pytest.raises(ValueError, match="kernel mode"):
        coldstart.set_mode("fast")
    assert fresh_state == []


# -- the numpy backward: test_backward's float64 references, run on the numpy path ----------

@pytest.fixture
def numpy_kernels():
    mode = coldstart.mode()
    coldstart.set_mode("numpy")
    yield
    coldstart.set_mode(mode)


BACKWARD_TESTS = ["test_conv2d_backward", "test_conv1d_backward_through_the_layer", "test_pool_backward",
                  "test_maxpool_routes_to_the_argmax_only", "test_norm_backward",
                  "test_leaky_relu_and_linear_backward", "test_a_relu_that_is_off_gives_exactly_zero",
                  "test_max_pooling_routes_the_field_to_the_argmax"]


@pytest.mark.parametrize("name", BACKWARD_TESTS)
def test_numpy_backward_passes_the_backward_tests(name, numpy_kernels):
    import test_backward
    getattr(test_backward, name)()


def test_numpy_effective_field_matches_finite_differences(numpy_kernels):
    import test_backward
    for spec in test_backward.ERF_NETS:
        test_backward.test_effective_field_matches_finite_differences(spec)


@settings(max_examples=30, deadline=None)
@given(conv_cases())
def test_numpy_conv_backward_matches_numba(case):
    from cnnplay.core.kernels import grad
    ci, co, (kh, kw), stride, pad, dil, (h, w), band, _ = case
    rng = np.random.default_rng(ci * 10 + co)
    x = rng.standard_normal((ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, kh, kw)).astype(np.float32)
    ho, wo = out_size(h, kh, stride[0], pad[0], dil[0]), out_size(w, kw, stride[1], pad[1], dil[1])
    gy = rng.standard_normal((co, ho, wo)).astype(np.float32)
    old = numpy_path.BAND_FLOATS
    numpy_path.BAND_FLOATS = band
    try:
        got = numpy_path.conv2d_backward(x, wt, gy, stride, pad, dil)
    finally:
        numpy_path.BAND_FLOATS = old
    want = grad.conv2d_backward(x, wt, gy, stride, pad, dil)
    for a, b in zip(got, want):
        assert a.dtype == np.float32 and a.shape == b.shape and rel_err(a, b) < 1e-5


def test_background_processes_report_every_kernel(tmp_path):
    """The real thing, on the tests' (warm) kernel cache: two processes start, report
    their steps and kernels, and end; the parent counts them all."""
    import os
    import subprocess
    import sys
    script = (
        "from cnnplay.core.kernels import coldstart\n"
        "coldstart.set_mode('auto')\n"
        "coldstart.start()\n"
        "assert coldstart.wait(600)\n"
        "print(coldstart._state, coldstart._steps['done'], coldstart._steps['total'], len(coldstart._done))\n"
        "print(' '.join(sorted(coldstart._done)))\n")
    import cnnplay
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnplay.__file__)))
    env = dict(os.environ, CNNPLAY_KERNELS="auto", PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    state, steps_done, steps_total, kernels = done.stdout.split("\n")[0].split()
    assert state == "finished" and int(steps_done) == int(steps_total) >= 6
    names = done.stdout.split("\n")[1].split()
    for k in (conv._direct, conv._make_source, pool._pool, pool._pool_tiles, pointwise._affine_leaky, norm._layernorm,
              dense._linear):
        assert coldstart.kernel_name(k) in names
    assert any(".grad." in n for n in names)


def test_the_warm_up_compiles_one_specialisation_per_kernel(tmp_path):
    """Every kernel the warm-up runs compiles once: a second specialisation (a
    read-only weight, a literal argument) is seconds of a cold start for nothing.
    In a fresh process on the tests' warm cache, so other tests' calls do not count."""
    import os
    import subprocess
    script = (
        "import sys\n"
        "from numba.core.registry import CPUDispatcher\n"
        "from cnnplay.core.kernels import coldstart, launch, warmup\n"
        "coldstart.set_mode('numba')\n"
        "warmup.warm_up()\n"
        "ks = [(n + '.' + k, len(v.signatures)) for n, m in list(sys.modules.items())\n"
        "      if n.startswith('cnnplay.core.kernels') and m for k, v in vars(m).items()\n"
        "      if isinstance(v, CPUDispatcher) and v.signatures]\n"
        "ks += [('twin ' + t.py_func.__name__, len(t.signatures)) for t in launch._twins.values() if t.signatures]\n"
        "print(len(ks)); print(' '.join(f'{k}={n}' for k, n in ks if n > 1))\n")
    import cnnplay
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnplay.__file__)))
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=root),
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    count, twice = (done.stdout.split("\n") + [""])[:2]
    assert int(count) >= 40 and twice.strip() == ""


@pytest.mark.skipif(sys.platform == "win32", reason="no flock: warm-ups are not serialised there")
def test_a_second_warm_up_of_a_group_waits_for_the_first():
    """Warm-ups of one group on one kernel cache run one at a time: while another
    process holds the group's lock (here this one), a new warm-up says it is waiting
    and compiles nothing; once the lock is free it runs every step."""
    import os
    import subprocess

    import cnnplay
    from cnnplay.core.kernels import warmup
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnplay.__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    with warmup.exclusive(["other"]):
        p = subprocess.Popen([sys.executable, "-m", "cnnplay.core.kernels.warmup", "other"], env=env,
                             stdout=subprocess.PIPE, text=True)
        first, second = p.stdout.readline().split(), p.stdout.readline().split()
        assert first[0] == "steps" and second == ["waiting"]
        assert p.poll() is None  # still waiting: it cannot take the lock before we let go
    rest = p.stdout.read().split("\n")
    assert p.wait(600) == 0
    assert sum(line == "step" for line in rest) == int(first[1])
