"""The algorithm a training step measures fastest per conv layer shape (kernels/tuning.py):
the decision rule, the trials, the candidates, and that a layer computes the float64
references whichever candidate a measurement keeps (the memory rule's bound on every
candidate is in test_memory_budget)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from test_backward import ref_conv, ref_weight_grad
from test_batch_layers import close, conv_input_grad, rand


# -- the decision and the trials ------------------------------------------------------

def test_the_fastest_candidate_wins_only_by_the_margin():
    from cnnplay.core.kernels import tuning
    # noise only adds time: the best of each candidate's rounds counts
    assert tuning.decide({"direct": [5.0, 9.0], "winograd4": [4.0, 4.2]}, "direct") == "winograd4"
    # 5 % faster is within the margin: the rules' choice stays
    assert tuning.decide({"direct": [5.0], "winograd4": [4.75]}, "direct") == "direct"
    assert tuning.decide({"gemm": [2.0], "direct": [3.0], "winograd_s2": [1.0]}, "gemm") == "winograd_s2"
    # the rules' choice faster: it stays
    assert tuning.decide({"winograd": [1.0], "direct": [2.0]}, "winograd") == "winograd"


@pytest.fixture
def measuring(monkeypatch):
    """Measuring on (the tests' default is the rules only, conftest.py), kernels compiled."""
    from cnnplay.core.kernels import launch, tuning
    monkeypatch.setattr(tuning, "ENABLED", True)
    monkeypatch.setattr(launch, "numpy_meanwhile", lambda: False)
    return tuning


def test_tune_times_each_candidate_on_trial_and_keeps_the_fastest(measuring):
    """Each step() runs with one candidate on trial (conv.choose sees it as the decision
    for that shape only), a first round is not counted, the fastest is kept; nothing
    is measured inside a step (its own backward pass, other shapes)."""
    tuning = measuring
    cost = {"direct": 5.0, "winograd4": 3.0, "winograd": 4.0}
    now = [0.0]
    seen = []
    key, other = ("geometry", 32, 64), ("other", 32, 64)

    def step():
        algo = tuning.decision(key)
        seen.append(algo)
        assert tuning.decision(other) is None
        assert not tuning.wanted(key, tuple(cost)) and not tuning.wanted(other, tuple(cost))
        now[0] += cost[algo] + (100.0 if len(seen) <= len(cost) else 0.0)  # the first round: slow

    assert tuning.wanted(key, tuple(cost)) and tuning.wanted(other, tuple(cost))
    assert not tuning.wanted(key, ("direct",))  # one candidate: nothing to measure
    choice = tuning.tune(key, tuple(cost), step, clock=lambda: now[0])
    assert choice == "winograd4" and tuning.decision(key) == "winograd4"
    assert tuning.decisions() == {key: "winograd4"}
    assert not tuning.wanted(key, tuple(cost)) and tuning.wanted(other, tuple(cost))  # once per shape
    rounds = len(seen) // len(cost)
    assert len(seen) == rounds * len(cost) and tuning.ROUNDS + 1 <= rounds <= tuning.MAX_ROUNDS + 1
    assert seen[:3] == ["direct", "winograd4", "winograd"]  # round-robin, the rules' choice first
    tuning.reset()
    assert tuning.decision(key) is None


def test_pinned_and_rules_only_blocks(measuring):
    """A pinned shape runs on its pin on this thread only and is not measured; inside
    rules_only() nothing is measured; both end with their blocks."""
    import threading
    tuning = measuring
    key, cands = ("g", 8, 2), ("direct", "gemm")
    with tuning.pinned(key, "gemm"):
        assert tuning.decision(key) == "gemm" and not tuning.wanted(key, cands)
        with tuning.pinned(key, "direct"):
            assert tuning.decision(key) == "direct"
        assert tuning.decision(key) == "gemm"
        seen = []
        t = threading.Thread(target=lambda: seen.append(tuning.decision(key)))
        t.start()
        t.join()
        assert seen == [None]
    assert tuning.decision(key) is None and tuning.wanted(key, cands)
    with tuning.rules_only():
        assert not tuning.wanted(key, cands)
    assert tuning.wanted(key, cands)


def test_a_trial_that_fails_leaves_no_decision_and_no_pin_behind(measuring):
    tuning = measuring

    def step():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        tuning.tune(("g", 1, 1), ("direct", "gemm"), step)
    assert tuning.decision(("g", 1, 1)) is None and tuning.decisions() == {}
    assert tuning.wanted(("g", 1, 1), ("direct", "gemm"))  # measured again at the next step


def test_a_measurement_stops_for_another_thread_and_the_rules_stay_after_a_few(measuring):
    """When stop() says another thread waits, the measurement ends after the trial in
    progress without a decision (the next step measures again); after MAX_STOPS
    stopped measurements the rules' choice is kept for the shape."""
    tuning = measuring
    key, cands = ("g", 32, 16), ("direct", "winograd4")
    runs = []
    for attempt in range(tuning.MAX_STOPS):
        runs.clear()
        got = tuning.tune(key, cands, lambda: runs.append(tuning.decision(key)), stop=lambda: True)
        assert runs == ["direct"]  # one trial, then it stopped
        if attempt < tuning.MAX_STOPS - 1:
            assert got is None and tuning.decision(key) is None and tuning.wanted(key, cands)
    assert got == "direct" and tuning.decisions() == {key: "direct"} and not tuning.wanted(key, cands)


def test_contended_sees_other_threads_priority_and_holds():
    """launch.contended(): another thread inside priority() or holding a hold waits to
    compute; this thread's own priority or hold does not count."""
    import threading

    from cnnplay.core.kernels import launch
    assert not launch.contended()
    inside, leave = threading.Event(), threading.Event()

    def urgent():
        with launch.priority():
            inside.set()
            leave.wait(5)
    t = threading.Thread(target=urgent)
    t.start()
    try:
        assert inside.wait(5)
        assert launch.contended()
    finally:
        leave.set()
        t.join(5)
    assert not launch.contended()
    with launch.priority():
        assert not launch.contended()  # this thread's own
    own = launch.hold(5.0)
    try:
        assert not launch.contended()
    finally:
        own.release()
    held = []
    t = threading.Thread(target=lambda: held.append(launch.hold(5.0)))
    t.start()
    t.join(5)
    try:
        assert launch.contended()
    finally:
        held[0].release()
    assert not launch.contended()


def test_a_click_during_the_first_training_step_stops_the_measurement(measuring, monkeypatch):
    """Another thread entering priority() while a training step measures: the step ends
    the measurement after the trial in progress (no decision) and computes its
    gradients on the rules' choice; the other thread's kernels then run."""
    import threading

    from cnnplay.core.kernels import conv, grad, launch
    from cnnplay.core.kernels.reuse import reuse_sources
    tuning = measuring
    rng = np.random.default_rng(6)
    ci, co, hw, nb = 16, 32, 16, 16
    x, w, b = rand(rng, (nb, ci, hw, hw)), rand(rng, (co, ci, 3, 3)) * 0.1, rand(rng, (co,))
    gy = rand(rng, (nb, co, hw, hw))
    plan = conv._plan(ci, hw, hw, 3, 3, (1, 1), (1, 1), (1, 1))
    key = tuning.key(plan, co, nb)
    trials = []
    waiting, done = threading.Event(), threading.Event()
    real_tune = tuning.tune

    def tune(k, cands, step, **kw):
        def first_then_click():
            trials.append(tuning.decision(k))
            step()
            if len(trials) == 1:  # a click arrives during the first trial
                threading.Thread(target=click).start()
                assert waiting.wait(5)
        return real_tune(k, cands, first_then_click, **kw)

    def click():
        with launch.priority():
            waiting.set()
            conv.conv2d_batch(x[:1], w, b, 1, 1)  # waits for the training step's launch
            done.set()
    monkeypatch.setattr(tuning, "tune", tune)
    with reuse_sources():
        conv.conv2d_batch(x, w, b, 1, 1, version=("c", 1))
        gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 1, 1, version=("c", 1))
    assert done.wait(5)
    assert trials == [conv.candidates(plan, co, nb)[0]]
    assert tuning.decision(key) is None
    close(gw, ref_weight_grad(x, gy, (3, 3), (1, 1), (1, 1), (1, 1)))
    close(gx, conv_input_grad(x.shape, w, gy, (3, 3), (1, 1), (1, 1), (1, 1)))


# -- the candidates -----------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 600), st.integers(1, 600), st.sampled_from([1, 3, 5]), st.integers(1, 2),
       st.integers(1, 2), st.integers(0, 2), st.integers(2, 60), st.integers(1, 64))
def test_candidates_start_with_the_rules_and_fit_the_geometry(ci, co, k, stride, dilation, padding, hw, nb):
    """The rules' choice comes first; every other candidate is an algorithm the geometry
    takes (Winograd: 3x3 stride-1 geometry; the stride-2 scheme: 3x3 stride 2, no
    dilation); calls below TUNE_WORK and layers with fewer than TUNE_NARROW channels
    have the rules' choice only; no direct kernel from 128 channels in and out."""
    from cnnplay.core.kernels import conv, winograd, winograd_s2
    assume(hw + 2 * padding >= dilation * (k - 1) + 1)
    plan = conv._plan(ci, hw, hw, k, k, (stride, stride), (padding, padding), (dilation, dilation))
    cands = conv.candidates(plan, co, nb)
    assert cands[0] == conv.rules(plan, co, nb) == conv.choose(plan, co, nb)
    assert len(set(cands)) == len(cands)
    work = nb * plan.ho * plan.wo * ci * k * k * co
    if work < conv.TUNE_WORK or min(ci, co) < conv.TUNE_NARROW:
        assert cands == (cands[0],)
    for c in cands[1:]:
        if c in winograd.NAMES:
            assert plan.winograd
        elif c == winograd_s2.NAME:
            assert plan.strided_spill is not None
        elif c == "direct":
            assert min(ci, co) < 2 * conv.CHANNEL_HEAVY
        else:
            assert c == "gemm" and (plan.strided_spill is not None or k == 1)


# -- measured in a training step, and exact whichever candidate it keeps ---------------

# (in channels, out channels, map, kernel, stride, padding, batch): each with several candidates
SHAPES = [
    (16, 32, 16, 3, 1, 1, 16),   # direct by the rules; Winograd F(4x4) and F(2x2) besides
    (64, 96, 15, 3, 2, 1, 8),    # a stride-2 layer: direct, GEMM, the stride-2 scheme
    (48, 64, 10, 1, 1, 0, 64),   # 1x1: direct and GEMM
    (32, 40, 12, 3, 1, 2, 16),   # dilation 2 (Winograd on its phase sub-images)
]


def _layer(ci, co, hw, k, stride, padding, nb, dilation=1):
    from cnnplay.core import Network
    spec = {"input": [ci, hw, hw], "layers": [
        {"type": "conv2d", "out_channels": co, "kernel_size": k, "stride": stride, "padding": padding,
         "dilation": dilation}]}
    return Network.from_dict(spec, seed=3)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}-k{s[3]}s{s[4]}")
def test_each_candidate_a_measurement_can_keep_computes_the_references(shape, monkeypatch, measuring):
    """Whichever candidate the measurement keeps (forced here by its times), the layer's
    next training step runs it (conv.choose says so) and its forward pass and both
    gradients agree with float64 loops."""
    from cnnplay.core.kernels import conv, tuning
    from cnnplay.core.kernels.reuse import reuse_sources
    ci, co, hw, k, stride, padding, nb = shape
    dilation = 2 if shape == SHAPES[3] else 1
    net = _layer(ci, co, hw, k, stride, padding, nb, dilation)
    params = net.params(0)
    w, b = params["weight"], params["bias"]
    rng = np.random.default_rng(7)
    x = rand(rng, (nb, ci, hw, hw))
    plan = conv._plan(ci, hw, hw, k, k, (stride,) * 2, (padding,) * 2, (dilation,) * 2)
    cands = conv.candidates(plan, co, nb)
    assert len(cands) >= 2, cands
    want_y = np.stack([ref_conv(x[i], w, b, (stride,) * 2, (padding,) * 2, (dilation,) * 2) for i in range(nb)])
    for target in cands:
        tuning.reset()
        monkeypatch.setattr(tuning, "decide", lambda times, rules, t=target: t)
        gy = rand(rng, want_y.shape)
        with reuse_sources():  # as a training step runs the layer
            y = net.layer_forward_batch(0, x)
            gx, grads = net.layer_backward_batch(0, x, y, gy)
        key = tuning.key(plan, co, nb)
        assert tuning.decisions() == {key: target}
        assert conv.choose(plan, co, nb) == target
        with reuse_sources():  # the next step, on the kept algorithm
            y = net.layer_forward_batch(0, x)
            gx, grads = net.layer_backward_batch(0, x, y, gy)
        close(y, want_y)
        close(grads["weight"], ref_weight_grad(x, gy, (k, k), (stride,) * 2, (padding,) * 2, (dilation,) * 2))
        close(grads["bias"], gy.astype(np.float64).sum(axis=(0, 2, 3)))
        close(gx, conv_input_grad(x.shape, w, gy, (k, k), (stride,) * 2, (padding,) * 2, (dilation,) * 2))


def test_a_training_step_measures_once_per_shape_and_only_when_training(monkeypatch, measuring):
    """The first backward pass with parameter gradients measures (the forward passes and
    the backward passes without them, a click's effective field, do not), later steps
    and other batches of the same shape do not measure again, and the trials leave the
    step's own remembered inputs alone."""
    from cnnplay.core.kernels import conv, grad, tuning
    from cnnplay.core.kernels.reuse import reuse_sources
    calls = []
    real = tuning.tune
    monkeypatch.setattr(tuning, "tune", lambda *a, **kw: calls.append(a[0]) or real(*a, **kw))
    rng = np.random.default_rng(2)
    ci, co, hw, nb = 16, 32, 16, 16
    x, w, b = rand(rng, (nb, ci, hw, hw)), rand(rng, (co, ci, 3, 3)) * 0.1, rand(rng, (co,))
    gy = rand(rng, (nb, co, hw, hw))
    conv.conv2d_batch(x, w, b, 1, 1, version=("v", 1))
    grad.conv2d_backward_batch(x, w, gy, 1, 1, param_grads=False)
    assert calls == [] and tuning.decisions() == {}
    from cnnplay.core.kernels import reuse
    with reuse_sources():
        conv.conv2d_batch(x, w, b, 1, 1, version=("v", 2))
        remembered = dict(reuse._local.memo)
        assert remembered  # the forward pass's rearranged input, for the backward pass
        gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 1, 1, version=("v", 2))
        assert reuse._local.memo.keys() == remembered.keys()  # the trials remembered in a memo of their own
        assert all(reuse._local.memo[k][1] is v[1] for k, v in remembered.items())
    plan = conv._plan(ci, hw, hw, 3, 3, (1, 1), (1, 1), (1, 1))
    assert calls == [tuning.key(plan, co, nb)]
    assert tuning.decisions()[calls[0]] in conv.candidates(plan, co, nb)
    close(gw, ref_weight_grad(x, gy, (3, 3), (1, 1), (1, 1), (1, 1)))
    close(gx, conv_input_grad(x.shape, w, gy, (3, 3), (1, 1), (1, 1), (1, 1)))
    for v in (3, 4):
        with reuse_sources():
            conv.conv2d_batch(x, w, b, 1, 1, version=("v", v))
            grad.conv2d_backward_batch(x, w, gy, 1, 1, version=("v", v))
    assert len(calls) == 1
