"""Contract 4: the session holds the attached data set (or only its reference),
says so with an event, and an autosave remembers the reference and class names."""

import numpy as np

from cnnplay.app.autosave import Autosaver, restore
from cnnplay.core.session import Session, dataset_info

SPEC = {"input": [1, 8, 8], "layers": [
    {"type": "conv2d", "out_channels": 2, "kernel_size": 3},
    {"type": "flatten"}, {"type": "linear", "out_features": 3}]}


class FakeDataset:
    """Duck-typed like cnnplay.datasets.Dataset (x, y, classes, reference)."""

    def __init__(self, classes=("a", "b", "c")):
        self.x = np.zeros((6, 1, 8, 8), np.float32)
        self.y = np.arange(6) % len(classes)
        self.classes = list(classes)
        self.reference = {"builtin": "fake", "params": {"count": 6}}


def session():
    return Session(SPEC, np.zeros((1, 8, 8), np.float32), {"kind": "test"})


def test_set_dataset_emits_and_gives_classes():
    s = session()
    seen = []
    s.dataset_changed.connect(lambda: seen.append(s.dataset))
    assert s.dataset is None and s.classes is None and s.output_classes() is None
    ds = FakeDataset()
    s.set_dataset(ds)
    assert seen == [ds]
    assert s.classes == ("a", "b", "c")
    assert s.output_classes() == ("a", "b", "c")  # linear 3 = three classes
    assert s.dataset_reference == {"builtin": "fake", "params": {"count": 6}}
    s.set_dataset(ds)  # the same again: no event
    assert len(seen) == 1
    s.set_dataset(FakeDataset(("x", "y")))
    assert s.output_classes() is None  # two classes, three outputs: no names on the bars
    s.set_dataset(None)
    assert s.dataset is None and s.classes is None and s.dataset_reference is None
    assert len(seen) == 3


def test_reference_only_and_extra_round_trip():
    s = session()
    s.set_dataset(FakeDataset())
    ref, classes = dataset_info(s.extra())
    assert ref == {"builtin": "fake", "params": {"count": 6}} and classes == ("a", "b", "c")
    t = session()
    t.set_dataset_reference(ref, classes)
    assert t.dataset is None and t.classes == ("a", "b", "c") and t.dataset_reference == ref
    # malformed entries are ignored, not trusted
    assert dataset_info({"dataset": {"reference": "x", "classes": [1, 2]}}) == (None, None)
    assert dataset_info({"dataset": 5}) == (None, None)


def test_autosave_remembers_the_data_set_reference(qtbot, home):
    s = session()
    saver = Autosaver(s)
    s.set_dataset(FakeDataset())
    saver.save_now()
    assert saver.flush()
    saver.shutdown()
    r = restore()
    assert r.session is not None
    assert r.session.dataset is None  # the data itself is read again only when asked
    assert r.session.dataset_reference == {"builtin": "fake", "params": {"count": 6}}
    assert r.session.classes == ("a", "b", "c")


def test_set_trained_replaces_weights_and_restore_brings_back_training():
    s = session()
    before = s.state
    w = np.full((2, 1, 3, 3), 0.5, np.float32)
    changes = []
    s.training_changed.connect(lambda: changes.append(s.training))
    s.set_trained([{"weight": w}], training={"epoch": 1})
    assert np.array_equal(s.network.params(0)["weight"], w)
    assert s.spec == before.spec and s.training == {"epoch": 1}
    assert np.array_equal(s.network.params(2)["weight"], before.network.params(2)["weight"])
    s.restore(before)
    assert s.training is None and changes == [{"epoch": 1}, None]
    assert not np.array_equal(s.network.params(0)["weight"], w)


def test_replacing_the_whole_network_drops_the_old_networks_training():
    """A training state (curves, optimizer buffers) belongs to the weights it trained: a new
    network from a file, an example or a lesson starts without it."""
    from cnnplay import Network
    s = session()
    s.set_trained([{"weight": np.ones((2, 1, 3, 3), np.float32)}], training={"epoch": 4})
    changes = []
    s.training_changed.connect(lambda: changes.append(s.training))
    s.replace(Network.from_dict(SPEC, seed=3))
    assert s.training is None and changes == [None]
    s.set_training({"epoch": 9})  # what open_file does with a file's own state, after replace
    assert s.training == {"epoch": 9}
