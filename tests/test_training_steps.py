"""Trainer: optimizer updates against the formulas, determinism, bad input,
refused steps, epochs, pause/resume, reset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnplay import Network, NetworkError, Trainer
from cnnplay.datasets import Dataset, make_builtin

SPEC = {"input": [1, 6, 6], "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"}, {"type": "linear", "out_features": 3}]}


def data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 6, 6), dtype=np.float32), np.arange(n) % 3


def snapshot(net):
    return [{k: v.copy() for k, v in net.params(i).items()} for i in range(len(net))]


def same(a, b):
    return all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


# -- optimizer updates against the formulas ---------------------------------------------

def test_sgd_with_momentum_and_weight_decay_follows_the_formula():
    net = Network.from_dict(SPEC, seed=1)
    x, y = data()
    lr, mom, wd = 0.1, 0.9, 0.01
    tr = Trainer(net, optimizer="sgd", lr=lr, momentum=mom, weight_decay=wd)
    p0 = snapshot(net)
    _, _, g1, _ = tr.gradients(x, y)
    tr.step(x, y)
    p1 = snapshot(net)
    _, _, g2, _ = tr.gradients(x, y)
    tr.step(x, y)
    p2 = snapshot(net)
    for (i, k) in g1:
        w0 = p0[i][k].astype(np.float64)
        d1 = g1[(i, k)] + wd * w0
        buf = d1  # the first step's buffer is the gradient itself
        w1 = w0 - lr * buf
        np.testing.assert_allclose(p1[i][k], w1, rtol=1e-5, atol=1e-7)
        d2 = g2[(i, k)] + wd * p1[i][k].astype(np.float64)
        buf = mom * buf + d2
        w2 = p1[i][k] - lr * buf
        np.testing.assert_allclose(p2[i][k], w2, rtol=1e-5, atol=1e-7)
    # running statistics are not optimized: they follow the batch-norm rule only
    assert set(g1) == {(0, "weight"), (0, "bias"), (1, "weight"), (1, "bias"), (5, "weight"), (5, "bias")}


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_follows_the_formula(kind):
    net = Network.from_dict(SPEC, seed=2)
    x, y = data()
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.95, 1e-6, 0.1
    tr = Trainer(net, optimizer=kind, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    params = snapshot(net)
    m, v = {}, {}
    for t in (1, 2, 3):
        _, _, g, _ = tr.gradients(x, y)
        tr.step(x, y)
        new = snapshot(net)
        for key, gk in g.items():
            i, k = key
            w = params[i][k].astype(np.float64)
            gk = gk.astype(np.float64)
            if kind == "adam":
                gk = gk + wd * w  # L2 added to the gradient (torch.optim.Adam)
            else:
                w = w * (1 - lr * wd)  # decoupled decay (torch.optim.AdamW)
            m[key] = b1 * m.get(key, 0) + (1 - b1) * gk
            v[key] = b2 * v.get(key, 0) + (1 - b2) * gk * gk
            mhat = m[key] / (1 - b1 ** t)
            denom = np.sqrt(v[key]) / math.sqrt(1 - b2 ** t) + eps
            expect = w - lr * mhat / denom
            # a conv bias before batch norm has gradient ~0: Adam's m/sqrt(v) of float32 noise; skip it
            if key == (0, "bias"):
                continue
            np.testing.assert_allclose(new[i][k], expect, rtol=1e-4, atol=1e-6, err_msg=f"step {t} {key}")
        params = new


def test_step_returns_loss_before_update_and_bumps_versions():
    net = Network.from_dict(SPEC, seed=0)
    x, y = data()
    tr = Trainer(net, lr=0.5)
    before = tr.evaluate(x, y)[0]
    keys = net.layer_keys()
    loss = tr.step(x, y)
    # training-mode loss (batch statistics), before the update
    net2 = Network.from_dict(SPEC, seed=0)
    assert loss == Trainer(net2).gradients(x, y)[0]
    assert tr.evaluate(x, y)[0] != before
    new_keys = net.layer_keys()
    assert all(a != b for a, b in zip(keys, new_keys))  # every layer's key changed from layer 0 on
    assert tr.steps == 1 and tr.history.batch_loss == [loss]


# -- determinism ----------------------------------------------------------------------------

def run(seed):
    net = Network.from_dict(SPEC, seed=seed)
    ds = Dataset(*data(12), ["a", "b", "c"])
    tr = Trainer(net, optimizer="adam", lr=0.01, seed=5, batch_size=4)
    tr.run_epoch(ds, test=ds)
    tr.run_epoch(ds)
    return snapshot(net), tr.history


def test_same_seed_same_data_same_result_bit_for_bit():
    a, ha = run(3)
    b, hb = run(3)
    assert same(a, b)
    assert ha.batch_loss == hb.batch_loss and ha.series("train_loss") == hb.series("train_loss")
    c, _ = run(4)
    assert not same(a, c)


def test_epoch_order_depends_only_on_seed_and_epoch():
    tr = Trainer(Network.from_dict(SPEC), seed=9)
    o0, o1 = tr.order(50, 0), tr.order(50, 1)
    assert sorted(o0) == list(range(50)) and not np.array_equal(o0, o1)
    assert np.array_equal(o0, Trainer(Network.from_dict(SPEC), seed=9).order(50, 0))


# -- epochs, callbacks, pause ------------------------------------------------------------------

def test_run_epoch_callbacks_history_and_pause_resume():
    ds = Dataset(*data(10), ["a", "b", "c"])
    infos = []
    net = Network.from_dict(SPEC, seed=0)
    tr = Trainer(net, lr=0.05, batch_size=4)
    asked = []

    def stop():
        asked.append(1)
        return len(asked) == 2  # pause before the second batch

    r = tr.run_epoch(ds, on_batch=infos.append, should_stop=stop)
    assert r["finished"] is False and r["batch"] == 1 and r["batches"] == 3 and tr.position == 1
    assert [i["batch"] for i in infos] == [1] and not tr.history.epochs
    r = tr.run_epoch(ds, on_batch=infos.append, test=ds)
    assert r["finished"] is True and [i["batch"] for i in infos] == [1, 2, 3]
    assert infos[-1]["batches"] == 3 and infos[-1]["epoch"] == 1 and infos[-1]["steps"] == 3
    e = tr.history.epochs[0]
    assert e["epoch"] == 1 and e["steps"] == 3 and e["test_acc"] is not None
    # the train loss is the sample-weighted mean of the batch losses (4, 4, 2 samples)
    bl = tr.history.batch_loss
    assert e["train_loss"] == pytest.approx((4 * bl[0] + 4 * bl[1] + 2 * bl[2]) / 10)

    # the same epoch without a pause gives the same network, bit for bit
    net2 = Network.from_dict(SPEC, seed=0)
    tr2 = Trainer(net2, lr=0.05, batch_size=4)
    tr2.run_epoch(ds)
    assert same(snapshot(net), snapshot(net2))


def test_learning_rate_schedules():
    tr = Trainer(Network.from_dict(SPEC), lr=0.1, schedule={"kind": "step", "step_size": 2, "gamma": 0.5})
    lrs = []
    for e in range(5):
        tr.epoch = e
        lrs.append(tr.lr())
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    tr = Trainer(Network.from_dict(SPEC), lr=0.1, schedule={"kind": "cosine", "epochs": 4, "min_lr": 0.0})
    tr.epoch = 2
    assert tr.lr() == pytest.approx(0.05)


def test_reset_restores_the_initial_weights():
    net = Network.from_dict(SPEC, seed=4)
    init = snapshot(net)
    tr = Trainer(net, lr=0.5, momentum=0.9)
    x, y = data()
    tr.step(x, y)
    assert not same(init, snapshot(net))
    tr.reset()
    assert same(init, snapshot(net)) and tr.steps == 0 and not tr.history.batch_loss
    # after a reset, training repeats itself exactly (the momentum buffers were cleared too)
    tr.step(x, y)
    a = snapshot(net)
    tr.reset()
    tr.step(x, y)
    assert same(a, snapshot(net))
    tr.reset(seed=5)
    assert same(snapshot(net), snapshot(Network.from_dict(SPEC, seed=5)))


# -- bad input: clear errors, and nothing changes -------------------------------------------

@pytest.mark.parametrize("layers, needle", [
    ([{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}],
     "the network ends in a 16x6x6 map; training needs K class scores: add flatten + linear with K outputs"),
    ([{"type": "flatten"}, {"type": "linear", "out_features": 1}], "training needs K >= 2 class scores"),
    ([], "the network has no layers"),
])
def test_networks_that_cannot_train(layers, needle):
    with pytest.raises(NetworkError) as e:
        Trainer(Network.from_dict({"input": [1, 6, 6], "layers": layers}))
    assert needle in str(e.value)


def test_signal_network_ending_in_a_signal():
    net = Network.from_dict({"input": [2, 16], "layers": [{"type": "conv1d", "out_channels": 4, "kernel_size": 3}]})
    with pytest.raises(NetworkError, match="ends in a 4x14 signal; training needs K class scores"):
        Trainer(net)


def test_partial_network_refused():
    net = Network.from_dict({"input": [1, 6, 6], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3},
                                                             {"type": "conv2d", "out_channels": 2}]}, partial=True)
    with pytest.raises(NetworkError, match="fix the network first"):
        Trainer(net)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (dict(lr=0), "lr must be above 0"),
    (dict(lr=float("nan")), "lr must be a number"),
    (dict(momentum=-0.1), "momentum must be at least 0"),
    (dict(betas=(0.9,)), "betas must be a pair"),
    (dict(betas=(1.0, 0.9)), "betas must be below 1"),
    (dict(eps=0), "eps must be above 0"),
    (dict(batch_size=0), "batch_size must be an integer from 1"),
    (dict(schedule={"kind": "step"}), "bad schedule"),
])
def test_bad_settings(kwargs, needle):
    with pytest.raises(NetworkError) as e:
        Trainer(Network.from_dict(SPEC), **kwargs)
    assert needle in str(e.value)


def _bad_inputs():
    x, y = data()
    nan = x.copy()
    nan[2, 0, 1, 1] = np.nan
    return [
        ((x[:, :, :5], y), "a training batch must be (N, 1, 6, 6)"),
        ((x[0], y[:1]), "a training batch must be (N, 1, 6, 6)"),
        ((x[:0], y[:0]), "the batch is empty"),
        ((x.astype(complex), y), "must hold real numbers"),
        ((nan, y), "NaN or infinite"),
        ((x, y[:-1]), "one integer per sample, shape (6,)"),
        ((x, y.astype(float)), "labels must be integers"),
        ((x, np.where(np.arange(6) == 4, 3, y)), "label 3 of sample 4 is outside [0, 3): the network has 3 class scores"),
        ((x, np.where(np.arange(6) == 1, -1, y)), "label -1 of sample 1"),
        ((x * np.float32(3e38), y), "NaN or infinite"),
    ]


@pytest.mark.parametrize("args, needle", _bad_inputs())
def test_refused_step_changes_nothing(args, needle):
    net = Network.from_dict(SPEC, seed=0)
    tr = Trainer(net, optimizer="sgd", lr=0.1, momentum=0.9)
    x, y = data()
    tr.step(x, y)  # so that momentum buffers exist
    before, keys = snapshot(net), net.layer_keys()
    opt = {k: {b: a.copy() for b, a in v.items()} for k, v in tr._opt_state.items()}
    steps, hist = tr.steps, list(tr.history.batch_loss)
    with pytest.raises(NetworkError) as e:
        tr.step(*args)
    assert needle in str(e.value)
    assert same(before, snapshot(net)) and net.layer_keys() == keys
    assert tr.steps == steps and tr.history.batch_loss == hist
    assert opt.keys() == tr._opt_state.keys() and all(
        np.array_equal(opt[k][b], tr._opt_state[k][b]) for k in opt for b in opt[k])


@pytest.mark.parametrize("after", [0, 3, 9])  # asked before layer 0, mid-forward, mid-backward
def test_a_cancelled_step_changes_nothing_and_the_next_step_is_as_if_it_never_ran(after):
    from cnnplay.core.errors import Cancelled
    nets = [Network.from_dict(SPEC, seed=0) for _ in range(2)]
    trs = [Trainer(n, optimizer="sgd", lr=0.1, momentum=0.9) for n in nets]
    x, y = data()
    for tr in trs:
        tr.step(x, y)
    before, keys = snapshot(nets[0]), nets[0].layer_keys()
    asked = []

    def cancel():
        asked.append(1)
        return len(asked) > after

    with pytest.raises(Cancelled):
        trs[0].step(x[::-1], y[::-1], cancel=cancel)
    assert len(asked) == after + 1  # asked between layers until it said yes
    assert same(before, snapshot(nets[0])) and nets[0].layer_keys() == keys and trs[0].steps == 1
    # running statistics, optimizer buffers, history: all as before, bit for bit
    assert trs[0].step(x, y, cancel=lambda: False) == trs[1].step(x, y)
    assert same(snapshot(nets[0]), snapshot(nets[1]))


def test_batchnorm_on_features_needs_two_samples():
    net = Network.from_dict({"input": [1, 6, 6], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3},
                                                             {"type": "batchnorm"}]})
    tr = Trainer(net)
    x, y = data()
    before = snapshot(net)
    with pytest.raises(NetworkError, match="layer 2 .batchnorm.: batch norm in training needs more than one value "
                                           "per channel: use a batch of 2 or more"):
        tr.step(x[:1], y[:1])
    assert same(before, snapshot(net))
    tr.step(x[:2], y[:2])
    # an epoch whose last batch would hold one sample skips that batch (6 samples, batches of 5)
    ds = Dataset(x, y, list("abc"))
    r = tr.run_epoch(ds, batch_size=5)
    assert r["finished"] and tr.steps == 2


def test_dataset_that_does_not_fit_the_network():
    net = Network.from_dict(SPEC)
    tr = Trainer(net)
    four = Dataset(np.zeros((8, 1, 6, 6), np.float32), np.arange(8) % 4, list("abcd"))
    with pytest.raises(NetworkError, match="has 4 classes but the network ends in 3 scores: give the last linear "
                                           "layer 4 outputs"):
        tr.run_epoch(four)
    wrong = make_builtin("shapes", size=8, count=8)
    with pytest.raises(NetworkError, match="samples of a 1-channel 8x8 map but the network's input is a 1-channel 6x6"):
        tr.run_epoch(wrong)
    assert tr.steps == 0


def test_training_batch_above_memory_budget_names_the_batch_that_fits():
    from cnnplay.core import memory
    net = Network.from_dict(SPEC)
    tr = Trainer(net)
    x, y = data(6)
    memory.set_limit(net.params_bytes() + int(net.sample_bytes() * 3 * 4.5))
    try:
        with pytest.raises(NetworkError, match="a training step on a batch of 6 needs .* a batch of at most 4 fits"):
            tr.step(x, y)
    finally:
        memory.set_limit(None)


# -- inference ----------------------------------------------------------------------------------

def test_evaluate_and_predict_use_inference_mode():
    net = Network.from_dict(SPEC, seed=0)
    net.set_params(1, running_mean=[0.1, 0.2, 0.3], running_var=[1.5, 0.5, 2.0])
    x, y = data()
    tr = Trainer(net)
    probs = tr.predict(x)
    z = np.stack([net.forward(s)[-1] for s in x]).astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), rtol=1e-5)
    loss, acc = tr.evaluate(x, y)
    assert loss == pytest.approx(float(np.mean(-np.log((e / e.sum(1, keepdims=True))[np.arange(6), y]))), rel=1e-5)
    assert acc == np.mean(np.argmax(z, 1) == y)
    cm = tr.confusion(Dataset(x, y, list("abc")))
    assert cm.sum() == 6 and np.trace(cm) == round(acc * 6)


def test_attach_an_edited_network_keeps_matching_optimizer_buffers():
    net = Network.from_dict(SPEC, seed=0)
    tr = Trainer(net, lr=0.1, momentum=0.9)
    x, y = data()
    tr.step(x, y)
    wider = dict(SPEC, layers=[dict(SPEC["layers"][0], out_channels=4)] + SPEC["layers"][1:])
    new = Network.from_dict(wider, seed=0)
    tr.attach(new)
    assert tr.net is new and tr.steps == 1
    kept = set(tr._opt_state)
    assert (0, "weight") not in kept and (1, "weight") not in kept  # 4 channels now
    assert (5, "weight") not in kept  # the linear layer's input grew too
    tr.step(x, y)
    with pytest.raises(NetworkError, match="ends in a"):
        tr.attach(Network.from_dict({"input": [1, 6, 6], "layers": [{"type": "relu"}]}))
    assert tr.net is new


def test_a_paused_epoch_over_other_data_starts_again():
    tr = Trainer(Network.from_dict(SPEC), lr=0.05, batch_size=4)
    ds = Dataset(*data(12), list("abc"))
    calls = []
    tr.run_epoch(ds, should_stop=lambda: calls.append(1) or len(calls) == 2)
    assert tr.position == 1
    other = Dataset(*data(6, seed=1), list("abc"))
    r = tr.run_epoch(other)
    assert r["finished"] and tr.steps == 1 + 2  # one step before the pause, then all of `other`'s two batches


def test_relu_then_maxpool_pairs():
    from cnnplay.core.training import trainer
    net = Network.from_dict({"input": [2, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2}, {"type": "leaky_relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "relu"}, {"type": "avgpool2d", "kernel_size": 2}, {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "out_features": 2}]})
    assert trainer.relu_then_maxpool(net.layer_types) == {1}  # not leaky, not before avg pool


@pytest.mark.parametrize("first", [False, True])
def test_pooling_before_the_relu_gives_the_layer_by_layer_gradients(monkeypatch, first):
    """The trainer's pooled-first ReLU against the pair run layer by layer: the same
    loss and gradients (a window whose maximum is not positive passes zero either
    way: only the sign of some zeros may differ). first: the pair starts the
    network (its input's gradient is not computed)."""
    from cnnplay.core.training import trainer
    head = [] if first else [{"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1},
                             {"type": "batchnorm"}]
    net = Network.from_dict({"input": [3, 12, 12], "layers": head + [
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "flatten"},
        {"type": "linear", "out_features": 3}]}, seed=5)
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (6, 3, 12, 12)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    assert len(trainer.relu_then_maxpool(net.layer_types)) == 2
    fused = Trainer(net).gradients(x, y)
    monkeypatch.setattr(trainer, "relu_then_maxpool", lambda types: set())
    plain = Trainer(net).gradients(x, y)
    assert fused[0] == plain[0] and fused[1] == plain[1]
    assert fused[2].keys() == plain[2].keys()
    for key in plain[2]:
        np.testing.assert_array_equal(fused[2][key], plain[2][key], err_msg=str(key))
