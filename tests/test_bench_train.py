"""The bench's train section: its numpy reference step (used without torch) agrees
with our batched layers, and the section runs."""

from __future__ import annotations

import numpy as np

from cnnplay import Network
from cnnplay.bench import train


def test_numpy_reference_step_matches_ours():
    spec, n, k = train.WORKLOADS["digits 1x28x28, batch 32"]
    spec = {"input": [1, 12, 12], "layers": spec["layers"]}  # small and quick
    ours_net = Network.from_dict(spec, seed=1)
    ref = train.NumpyStep(Network.from_dict(spec, seed=1))
    x, y = train._data(ours_net, 6, k)
    velocity = {}
    # our side: forward_batch / backward_batch, the same SGD update written out here
    acts = [x]
    for i in range(len(ours_net)):
        acts.append(ours_net.layer_forward_batch(i, acts[-1]))
    z = acts[-1].astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    g = (p / len(y)).astype(np.float32)
    for i in range(len(ours_net) - 1, -1, -1):
        g, grads = ours_net.layer_backward_batch(i, acts[i], acts[i + 1], g)
        for name, gr in grads.items():
            velocity[(i, name)] = gr
    ref(x, y)
    for (i, name), gr in velocity.items():
        want = np.asarray(ours_net.params(i)[name], np.float64) - train.LR * gr
        got = ref.layers[i][2][name]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert len(velocity) == 6  # two convs and the linear layer, weight and bias each


def test_section_runs_quickly(monkeypatch):
    monkeypatch.setattr(train, "ROUNDS", 1)
    monkeypatch.setattr(train, "HEAVY", [(64, 64, 1, 4)])
    monkeypatch.setattr(train, "WORKLOADS", {k: ({"input": v[0]["input"][:1] + [8] * (len(v[0]["input"]) - 1),
                                                   "layers": v[0]["layers"]}, 4, v[2])
                                             for k, v in train.WORKLOADS.items()})
    lines = train.run()
    assert any("gemm" in line for line in lines) and any("direct" in line for line in lines)
    assert sum("batch" in line for line in lines) >= 3
