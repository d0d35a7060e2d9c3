"""Train the example networks that ship in resources/examples/ (rerun to reproduce them).

    python scripts/train_examples.py            # all of them
    python scripts/train_examples.py digits     # one

Each example is a built-in data set, a small network and a few epochs of training
with a fixed seed, through the same training run the app's Train panel uses
(cnnplay/app/train/run.py), so the file opens with its curves, confusion matrix,
class names and optimizer state, and Train continues where it stopped. The input
shown is a sample of the test set: the first one from `sample` on that the trained
network gets right with a probability of at least SURE (a first impression should
not be a mistake; the gallery shows those). Each takes well under two minutes on 2
cores. `python scripts/train_examples.py --pick-only` keeps the weights and only
chooses the sample again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnplay.app.input_panel import dataset_source  # noqa: E402
from cnnplay.app.train.run import TrainingRun, copy_network  # noqa: E402
from cnnplay.app.train.state import Settings, Training  # noqa: E402
from cnnplay.core.fileformat import load_all, save_network  # noqa: E402
from cnnplay.core.network import Network  # noqa: E402
from cnnplay.datasets import make_builtin  # noqa: E402

OUT = ROOT / "resources" / "examples"
SURE = 0.9  # the shown sample's class probability at least

EXAMPLES = {
    "trained_shapes": dict(
        title="Trained: shapes classifier",
        description=("A small CNN trained on the built-in shapes (circle, square, triangle, cross). Layer 0's "
                     "kernels have become edge and blob detectors; click a unit of layer 6 and see which part "
                     "of the shape it sees; the last bars name the classes with their probabilities. Open the "
                     "Train tab to see the curves and the confusion matrix, or press Train to go on."),
        dataset=("shapes", dict(size=16, count=1500, noise=0.05, seed=0, channels=1)),
        settings=Settings(optimizer="adam", lr=0.004, batch_size=32, epochs=14, test_fraction=0.2, seed=0),
        sample=0,
        layers=[
            {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
            {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
            {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
            {"type": "flatten"}, {"type": "linear", "out_features": 4}]),
    "trained_digits": dict(
        title="Trained: handwritten digits (real data)",
        description=("A CNN trained on 1797 real 8x8 handwritten digits (UCI, CC BY 4.0) upscaled to 12x12. "
                     "The gallery under the maps shows the test digits it gets wrong first; click one to see "
                     "which strokes light up each layer. Layer 0's kernels are stroke detectors."),
        dataset=("digits", dict(size=12, count=None, noise=0.0, seed=0)),
        settings=Settings(optimizer="adam", lr=0.003, batch_size=32, epochs=4, test_fraction=0.2, seed=0),
        sample=3,
        layers=[
            {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
            {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
            {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
            {"type": "flatten"}, {"type": "linear", "out_features": 10}]),
    "trained_waveforms": dict(
        title="Trained: waveform classifier (1D)",
        description=("A 1D CNN trained to tell sine, square, sawtooth, triangle and chirp signals apart. "
                     "Layer 0's kernels are short slope and step detectors; look at layer 3's lanes light up "
                     "at the corners of a square wave and stay quiet on a sine."),
        dataset=("waveforms", dict(length=128, count=1000, noise=0.1, seed=0, channels=1)),
        settings=Settings(optimizer="adam", lr=0.003, batch_size=32, epochs=8, test_fraction=0.2, seed=0),
        sample=0,
        layers=[
            {"type": "conv1d", "out_channels": 8, "kernel_size": 7, "padding": 3},
            {"type": "relu"}, {"type": "maxpool1d", "kernel_size": 4},
            {"type": "conv1d", "out_channels": 16, "kernel_size": 5, "padding": 2},
            {"type": "relu"}, {"type": "maxpool1d", "kernel_size": 4},
            {"type": "flatten"}, {"type": "linear", "out_features": 5}]),
}


def example_spec(name: str, ds) -> dict:
    return {"input": list(ds.sample_shape), "layers": [dict(layer, id=f"L{i + 1}") for i, layer in
                                                        enumerate(EXAMPLES[name]["layers"])]}


def shown_sample(net: Network, test, start: int) -> int:
    """The first test sample from `start` on that `net` classifies right with a
    probability of at least SURE (else `start`)."""
    from cnnplay.core.training.loss import softmax
    for i in list(range(start, len(test.y))) + list(range(start)):
        p = softmax(np.asarray(net.forward(test.x[i])[-1], np.float64)[None])[0]
        if int(np.argmax(p)) == int(test.y[i]) and p[int(test.y[i])] >= SURE:
            return i
    return start


def save_example(name: str, net: Network, ds, test, training, trainer) -> Path:
    ex = EXAMPLES[name]
    s = training.settings
    spec = example_spec(name, ds)
    i = shown_sample(net, test, ex["sample"])
    source = dataset_source(ds.reference, i, f"test sample {i} ({ds.classes[int(test.y[i])]})",
                            {"test_fraction": s.test_fraction, "seed": s.seed})
    extra = {"title": ex["title"], "description": ex["description"], "spec": spec, "input_source": source,
             "dataset": {"reference": ds.reference, "classes": list(ds.classes)},
             "training": training.to_json()}
    path = OUT / f"{name}.cnnplay"
    save_network(net, path, extra=extra, training=trainer)
    return path


def pick_again(name: str) -> Path:
    """Choose the shown sample of an existing example again, weights untouched."""
    ex = EXAMPLES[name]
    path = OUT / f"{name}.cnnplay"
    net, extra, trainer = load_all(path)
    ds = make_builtin(ex["dataset"][0], **ex["dataset"][1])
    training = Training.from_json(extra["training"], trainer)
    _, test = ds.split(training.settings.test_fraction, training.settings.seed)
    path = save_example(name, net, ds, test, training, trainer)
    print(f"{name}: shows {load_all(path)[1]['input_source']['name']}")
    return path


def train_example(name: str) -> Path:
    ex = EXAMPLES[name]
    ds_name, ds_params = ex["dataset"]
    ds = make_builtin(ds_name, **ds_params)
    s = ex["settings"]
    train, test = ds.split(s.test_fraction, s.seed)
    net = Network.from_dict(example_spec(name, ds), seed=0)
    snaps = []
    run = TrainingRun(copy_network(net), Training(settings=s), train, test, snaps.append)
    t0 = time.perf_counter()
    run._main()  # on this thread: a script has no GUI to keep responsive
    snap = snaps[-1]
    if snap.error:
        raise SystemExit(f"{name}: training failed: {snap.error}")
    for i, arrays in enumerate(snap.params):
        if arrays:
            net.set_params(i, **arrays)
    log = snap.training.progress.epochs_log[-1]
    path = save_example(name, net, ds, test, snap.training, snap.training.trainer)
    print(f"{name}: {s.epochs} epochs in {time.perf_counter() - t0:.1f} s, test accuracy {log['test_acc']:.1%} "
          f"(train {log['train_acc']:.1%}), {path.stat().st_size / 1024:.0f} KB -> {path.relative_to(ROOT)}")
    return path


def main(argv: list[str]) -> int:
    pick_only = "--pick-only" in argv
    argv = [a for a in argv if a != "--pick-only"]
    names = argv or list(EXAMPLES)
    unknown = [n for n in names if n not in EXAMPLES and f"trained_{n}" not in EXAMPLES]
    if unknown:
        print(f"unknown example(s) {', '.join(unknown)}; choose from {', '.join(EXAMPLES)}", file=sys.stderr)
        return 2
    for n in names:
        (pick_again if pick_only else train_example)(n if n in EXAMPLES else f"trained_{n}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main(sys.argv[1:]))
