"""Training state: state()/from_state, saved inside .cnnplay files, resuming exactly;
old files load; malformed states are refused with clear errors."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from cnnplay import Network, NetworkError, Trainer
from cnnplay.core.fileformat import FileFormatError, load_all, load_bundle, network_bytes, save_network
from cnnplay.datasets import make_builtin

SPEC = {"input": [1, 8, 8], "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"}, {"type": "linear", "out_features": 4}]}


def params_of(net):
    return [{k: v.copy() for k, v in net.params(i).items()} for i in range(len(net))]


def same(a, b):
    return all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def ds():
    return make_builtin("shapes", size=8, count=16, seed=1)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_from_a_file_continues_exactly(tmp_path, ds, optimizer):
    kw = dict(optimizer=optimizer, lr=0.05, momentum=0.9 if optimizer == "sgd" else 0.0, batch_size=6, seed=3,
              schedule={"kind": "step", "step_size": 1, "gamma": 0.5})
    straight = Trainer(Network.from_dict(SPEC, seed=2), **kw)
    straight.run_epoch(ds, test=ds)
    straight.run_epoch(ds, test=ds)

    first = Trainer(Network.from_dict(SPEC, seed=2), **kw)
    calls = []
    first.run_epoch(ds, test=ds)
    first.run_epoch(ds, test=ds, should_stop=lambda: calls.append(1) or len(calls) == 2)  # pause mid-epoch
    assert first.position == 1
    path = tmp_path / "t.cnnplay"
    save_network(first.net, path, extra={"note": "x"}, training=first.state())
    net, extra, state = load_all(path)
    assert extra == {"note": "x"}
    resumed = Trainer.from_state(net, state)
    assert resumed.position == 1 and resumed.epoch == 1 and resumed.classes == ds.classes
    assert resumed.dataset == ds.reference and resumed.settings == straight.settings
    resumed.run_epoch(ds, test=ds)
    assert same(params_of(resumed.net), params_of(straight.net))
    # per-batch history is stored as float32
    assert np.array_equal(np.float32(resumed.history.batch_loss), np.float32(straight.history.batch_loss))
    assert [e["train_loss"] for e in resumed.history.epochs] == [e["train_loss"] for e in straight.history.epochs]
    assert [e["test_acc"] for e in resumed.history.epochs] == [e["test_acc"] for e in straight.history.epochs]


def test_state_is_plain_json_and_float32_arrays(ds):
    tr = Trainer(Network.from_dict(SPEC), optimizer="adam", lr=0.01, batch_size=8)
    tr.run_epoch(ds)
    st = tr.state()
    arrays = st.pop("arrays")
    json.dumps(st)  # everything else is JSON
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in arrays.values())
    assert "optimizer/0/weight/exp_avg" in arrays and "optimizer/1/bias/exp_avg_sq" in arrays
    assert not any("running" in k for k in arrays)


def test_files_without_training_stay_version_1_and_load(tmp_path):
    net = Network.from_dict(SPEC, seed=1)
    data = network_bytes(net)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["network.json", "weights.npz"]
        assert json.loads(z.read("network.json"))["version"] == 1
    p = tmp_path / "old.cnnplay"
    p.write_bytes(data)
    n2, extra, training = load_all(p)
    assert training is None and same(params_of(n2), params_of(net))
    assert load_bundle(p)[0].to_dict() == net.to_dict()


def _rewrite(path, header_edit=None, drop=None, arrays_edit=None):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = json.loads(members["network.json"])
    if header_edit:
        header_edit(header)
    members["network.json"] = json.dumps(header).encode()
    if drop:
        members.pop(drop)
    if arrays_edit:
        buf = io.BytesIO()
        np.savez(buf, **arrays_edit)
        members["training.npz"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    path.write_bytes(buf.getvalue())


@pytest.fixture
def trained_file(tmp_path, ds):
    tr = Trainer(Network.from_dict(SPEC), optimizer="sgd", lr=0.01, momentum=0.9, batch_size=8)
    tr.run_epoch(ds)
    p = tmp_path / "trained.cnnplay"
    save_network(tr.net, p, training=tr.state())
    return p


def test_training_member_missing(trained_file):
    _rewrite(trained_file, drop="training.npz")
    with pytest.raises(FileFormatError, match="training.npz is missing"):
        load_all(trained_file)


def test_training_in_a_version_1_file(trained_file):
    _rewrite(trained_file, header_edit=lambda h: h.update(version=1))
    with pytest.raises(FileFormatError, match="needs file version 2"):
        load_all(trained_file)


def test_training_arrays_bounded_before_inflating(trained_file):
    def edit(h):
        h["training"]["array_shapes"]["optimizer/0/weight/momentum_buffer"] = [10**7]
    _rewrite(trained_file, header_edit=edit)
    with pytest.raises(FileFormatError, match="more than twice the network's"):
        load_all(trained_file)


def test_training_array_shape_mismatch(trained_file):
    _rewrite(trained_file, arrays_edit={"optimizer/0/weight/momentum_buffer": np.zeros(3, np.float32)})
    with pytest.raises(FileFormatError):
        load_all(trained_file)


def test_training_pickled_array_refused(trained_file):
    with zipfile.ZipFile(trained_file) as z:
        h = json.loads(z.read("network.json"))
    arrays = {k: np.zeros(s, np.float32) for k, s in h["training"]["array_shapes"].items()}
    arrays["history/batch_loss"] = np.array([None] * len(arrays["history/batch_loss"]), dtype=object)
    _rewrite(trained_file, arrays_edit=arrays)
    with pytest.raises(FileFormatError, match="Python objects|float32"):
        load_all(trained_file)


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.update(format="x"), "training state, format"),
    (lambda s: s.update(version=99), "newer cnnplay"),
    (lambda s: s.update(steps=-1), "steps: must be an integer >= 0"),
    (lambda s: s.update(surprise=1), "unknown field(s) 'surprise'"),
    (lambda s: s["settings"].update(optimizer="lbfgs"), "unknown optimizer"),
    (lambda s: s["settings"].update(lr=-1), "lr must be above 0"),
    (lambda s: s.update(classes=["a", "b"]), "names 2 classes but the network ends in 4 scores"),
    (lambda s: s["arrays"].update({"optimizer/0/weight/momentum_buffer": np.zeros((2, 2), np.float32)}),
     "must be float (3, 1, 3, 3)"),
    (lambda s: s["arrays"].update({"optimizer/2/weight/momentum_buffer": np.zeros(3, np.float32)}),
     "no learnable parameter weight in layer 2"),
    (lambda s: s["arrays"].update({"optimizer/0/weight/exp_avg": np.zeros((3, 1, 3, 3), np.float32)}),
     "sgd keeps momentum_buffer, not exp_avg"),
    (lambda s: s["history"]["epochs"].append({"train_loss": "low"}), "must be a number or null"),
])
def test_bad_states_refused(ds, edit, needle):
    tr = Trainer(Network.from_dict(SPEC), optimizer="sgd", lr=0.01, momentum=0.9, batch_size=8)
    tr.run_epoch(ds)
    st = tr.state()
    edit(st)
    with pytest.raises(NetworkError) as e:
        Trainer.from_state(Network.from_dict(SPEC), st)
    assert needle in str(e.value)
