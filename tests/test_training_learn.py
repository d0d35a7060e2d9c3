"""Learning sanity on the shapes set, and (when PyTorch is installed) the same
steps as torch.optim on the same network, weights and batches."""

from __future__ import annotations

import numpy as np
import pytest

from cnnplay import Network, Trainer
from cnnplay.datasets import make_builtin

SHAPES_NET = {"input": [1, 12, 12], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"}, {"type": "linear", "out_features": 4}]}


def test_a_small_network_learns_the_shapes_set():
    """48 shapes (12x12, 4 classes, chance 25 %): within 10 epochs of Adam (lr 0.02,
    batches of 16) the network classifies at least 75 % of them correctly in
    inference mode, and the loss falls below 1.0 (from about ln 4 = 1.39)."""
    ds = make_builtin("shapes", size=12, count=48, seed=0, noise=0.05)
    tr = Trainer(Network.from_dict(SHAPES_NET, seed=0), optimizer="adam", lr=0.02, batch_size=16)
    loss0, acc0 = tr.evaluate(ds.x, ds.y)
    assert acc0 < 0.5
    tr.fit(ds, epochs=10)
    loss, acc = tr.evaluate(ds.x, ds.y)
    assert acc >= 0.75 and loss < 1.0, (loss, acc)



def _torch():
    try:
        import torch
    except ImportError:
        pytest.skip("PyTorch is not installed (optional: pip install '.[compare]')")
    return torch


@pytest.mark.parametrize("optimizer, kwargs", [
    ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("adam", dict(lr=0.01, weight_decay=1e-3)),
    ("adamw", dict(lr=0.01, weight_decay=0.1)),
])
def test_same_steps_as_pytorch(optimizer, kwargs):
    torch = _torch()
    torch.set_num_threads(1)
    nn = torch.nn
    spec = {"input": [2, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": False}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "leaky_relu"},
        {"type": "flatten"}, {"type": "linear", "out_features": 3}]}
    net = Network.from_dict(spec, seed=5)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 4, 3), nn.LeakyReLU(0.01), nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        for i, m in enumerate(model):
            for k, v in net.params(i).items():
                getattr(m, k).copy_(torch.from_numpy(np.array(v)))
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    topt = opt_cls(model.parameters(), **kwargs)
    tr = Trainer(net, optimizer=optimizer, **kwargs)
    rng = np.random.default_rng(0)
    model.train()
    for step in range(4):
        x = rng.normal(size=(6, 2, 8, 8)).astype(np.float32)
        y = rng.integers(0, 3, 6)
        ours = tr.step(x, y)
        topt.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        topt.step()
        assert ours == pytest.approx(loss.item(), rel=1e-5)
    for i, m in enumerate(model):
        for k, v in net.params(i).items():
            np.testing.assert_allclose(v, getattr(m, k).detach().numpy(), rtol=1e-4, atol=2e-6,
                                       err_msg=f"layer {i} {k}")
