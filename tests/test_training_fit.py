"""A saved trainer state always fits the session's network: an edit drops what no
longer fits (only that), and a file whose training state does not fit its network
can still be read without it (core side; the app's restore is in test_restore_training)."""

import numpy as np
import pytest

pytest.importorskip("cnnplay.core.training")

from cnnplay import Network, Trainer  # noqa: E402
from cnnplay.core.errors import NetworkError  # noqa: E402
from cnnplay.core.fileformat import (FileFormatError, load_all, load_keeping_network,  # noqa: E402
                                     network_bytes)
from cnnplay.core.session import Session  # noqa: E402
from cnnplay.core.training.fit import checked_state, fit_state  # noqa: E402

SPEC = {"input": [1, 12, 12], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"}, {"type": "linear", "out_features": 3}]}


def trained_session(optimizer="adam"):
    """A session whose network took one optimizer step, with the trainer's state."""
    rng = np.random.default_rng(0)
    s = Session(SPEC, rng.random((1, 12, 12), dtype=np.float32))
    net = Network.from_dict(s.network.to_dict(), seed=s.seed)
    tr = Trainer(net, optimizer=optimizer, lr=0.01, momentum=0.9, classes=["a", "b", "c"])
    tr.step(rng.random((6, 1, 12, 12), dtype=np.float32), np.array([0, 1, 2, 0, 1, 2]))
    s.set_trained([net.params(i) for i in range(len(net))], tr.state())
    return s


def optimizer_keys(state) -> set:
    return {k for k in state["arrays"] if k.startswith("optimizer/")}


def assert_fits(state, net):
    for key in optimizer_keys(state):
        _, i, name, _ = key.split("/")
        assert state["arrays"][key].shape == net.param_shapes(int(i))[name], key
    Trainer.from_state(net, state)  # the full check: no NetworkError


def test_an_edit_drops_only_the_optimizer_state_of_reshaped_parameters():
    s = trained_session()
    before = s.state
    old = s.training
    changes = []
    s.training_changed.connect(lambda: changes.append(s.training))
    s.update_layer(0, out_channels=5)  # conv 4 -> 5: the conv, its batch norm and the linear's weight reshape
    new = s.training
    assert changes == [new] and new is not old
    assert optimizer_keys(new) == {"optimizer/5/bias/exp_avg", "optimizer/5/bias/exp_avg_sq"}
    # what stayed is the very same array (nothing copied), and the rest of the state too
    assert new["arrays"]["optimizer/5/bias/exp_avg"] is old["arrays"]["optimizer/5/bias/exp_avg"]
    assert new["arrays"]["history/batch_loss"] is old["arrays"]["history/batch_loss"]
    assert new["steps"] == old["steps"] == 1 and new["classes"] == ["a", "b", "c"]
    assert_fits(new, s.network)
    # The pair loads as it is saved (the strict loader refused it before the fix).
    net, _, training = load_all_bytes(network_bytes(s.network, s.extra(), new))
    assert optimizer_keys(training) == optimizer_keys(new)
    # Undo brings back the whole state, which fits the network it brings back.
    s.restore(before)
    assert s.training is old
    assert_fits(s.training, s.network)


def load_all_bytes(data):
    from cnnplay.core.fileformat import all_from_bytes
    return all_from_bytes(data, "session.cnnplay")


def test_a_moved_layer_keeps_its_optimizer_state_at_its_new_index():
    s = trained_session()
    old = s.training
    s.insert_layer(0, {"type": "relu"})  # every layer moves one down; no shape changes
    new = s.training
    assert optimizer_keys(new) == {k.replace(f"/{i}/", f"/{i + 1}/", 1)
                                   for k in optimizer_keys(old) for i in [int(k.split("/")[1])]}
    assert new["arrays"]["optimizer/1/weight/exp_avg"] is old["arrays"]["optimizer/0/weight/exp_avg"]
    assert_fits(new, s.network)
    s.remove_layer(1)  # the conv goes, with its buffers; the batch norm and the linear now see 1 channel
    assert optimizer_keys(s.training) == {"optimizer/5/bias/exp_avg", "optimizer/5/bias/exp_avg_sq"}
    assert_fits(s.training, s.network)


def test_the_class_names_go_when_the_number_of_scores_changes():
    s = trained_session()
    s.update_layer(5, out_features=4)
    assert s.training["classes"] is None
    assert not any(k.startswith("optimizer/5/") for k in optimizer_keys(s.training))
    assert optimizer_keys(s.training) >= {"optimizer/0/weight/exp_avg", "optimizer/1/bias/exp_avg_sq"}
    assert_fits(s.training, s.network)


def test_an_edit_that_changes_no_shape_keeps_the_same_state_object():
    s = trained_session("sgd")
    old = s.training
    changes = []
    s.training_changed.connect(lambda: changes.append(1))
    s.update_layer(3, kernel_size=2)  # the same value: nothing reshapes
    s.set_input(s.input_array * 0.5, {"kind": "test"})  # a new input of the same shape
    s.update_layer(2, type="leaky_relu")  # a layer without parameters
    assert s.training is old and changes == []


def test_fit_state_says_what_it_dropped():
    s = trained_session()
    old_net, old = s.network, s.training
    s.update_layer(0, out_channels=5)
    fitted = fit_state(old, s.network, old_net)
    assert fitted.dropped == ("layer 0 (conv2d) bias, weight", "layer 1 (batchnorm) bias, weight",
                              "layer 5 (linear) weight")
    assert fitted.summary() == ("the optimizer state of layer 0 (conv2d) bias, weight; "
                                "layer 1 (batchnorm) bias, weight; layer 5 (linear) weight")
    assert fit_state(s.training, s.network, s.network).state is s.training  # all fits: the same object


def test_checked_state_drops_a_bad_buffer_alone_and_a_bad_state_whole():
    s = trained_session()
    state = s.training
    arrays = dict(state["arrays"])
    arrays["optimizer/0/weight/exp_avg"] = np.full_like(arrays["optimizer/0/weight/exp_avg"], np.nan)
    fitted = checked_state(dict(state, arrays=arrays), s.network)
    assert not any(k.startswith("optimizer/0/weight/") for k in fitted.state["arrays"])
    assert "optimizer/0/bias/exp_avg" in fitted.state["arrays"]
    assert fitted.dropped == ("layer 0 (conv2d) weight (holds NaN or infinite values)",)
    assert_fits(fitted.state, s.network)
    bad = checked_state(dict(state, version=99), s.network)
    assert bad.state is None and "newer cnnplay" in bad.summary()
    assert checked_state(state, s.network).state is state  # a good state passes as it is


def test_a_file_whose_training_state_claims_too_much_loads_without_it_only_when_asked(tmp_path):
    """The autosave of a session edited before the fix: the network shrank, its optimizer
    buffers did not. The strict loader refuses the file; load_keeping_network keeps
    the network and its weights and names what it left out."""
    s = trained_session()
    stale = s.training  # (the session's own pair fits after the edit: write the old, stale one)
    s.update_layer(0, out_channels=1)  # fewer parameters than the old buffers claim
    path = tmp_path / "stale.cnnplay"
    path.write_bytes(network_bytes(s.network, s.extra(), stale))
    with pytest.raises(FileFormatError, match="optimizer arrays claim"):
        load_all(path)
    net, extra, training, problem = load_keeping_network(path)
    assert problem is None  # read in full: the stale buffers are counted apart
    np.testing.assert_array_equal(net.params(0)["weight"], s.network.params(0)["weight"])
    assert extra["spec"]["layers"][0]["out_channels"] == 1
    fitted = checked_state(training, net)
    assert [d.split(" (")[0] for d in fitted.dropped] == ["layer 0", "layer 1", "layer 5"]
    assert_fits(fitted.state, net)


def test_a_damaged_training_member_costs_only_the_training_state(tmp_path):
    import io
    import zipfile
    s = trained_session()
    good = network_bytes(s.network, s.extra(), s.training)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, b"not an npz" if info.filename == "training.npz" else data)
    path = tmp_path / "damaged.cnnplay"
    path.write_bytes(out.getvalue())
    with pytest.raises(FileFormatError, match="training.npz"):
        load_all(path)
    net, extra, training, problem = load_keeping_network(path)
    assert training is None and "not an .npz archive" in problem
    assert net.to_dict() == s.network.to_dict()
    # A file that is damaged elsewhere is refused exactly as before.
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(NetworkError, match="truncated or damaged"):
        load_keeping_network(path)
