"""The trained examples of the Examples menu (and the first start) show a test sample the
network gets right: a new user's first labelled prediction is not a mistake."""

import numpy as np
import pytest

from cnnplay.app.examples import FIRST_START_EXAMPLE, read_example, resource
from cnnplay.app.input_panel import load_input
from cnnplay.datasets import make_builtin

pytest.importorskip("cnnplay.core.training")


@pytest.mark.parametrize("name", ["trained_shapes", "trained_digits", "trained_waveforms"])
def test_a_trained_example_shows_a_sample_it_classifies_right(name):
    ex = read_example(resource("examples", f"{name}.cnnplay"))
    x, source, _ = load_input(ex.source)
    assert tuple(x.shape) == tuple(ex.network.input_shape)
    ref, split = source["reference"], source["split"]
    test = make_builtin(ref["builtin"], **ref["params"]).split(split["test_fraction"], split["seed"])[1]
    np.testing.assert_array_equal(x, test.x[source["index"]])
    true = int(test.y[source["index"]])
    scores = np.asarray(ex.network.forward(x)[-1], np.float64)
    p = np.exp(scores - scores.max())
    p /= p.sum()  # softmax, written out
    assert int(np.argmax(p)) == true and p[true] >= 0.9
    assert ex.extra["dataset"]["classes"][true] in source["name"]
    if name == FIRST_START_EXAMPLE:
        assert ex.source["kind"] == "dataset"
