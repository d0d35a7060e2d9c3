"""PyTorch export: the generated file is readable Python (no dead imports, formatted
lines), its model reproduces every cnnplay layer's output to 1e-4, its train()
uses cnnplay's optimizer settings; and ONNX files written by PyTorch's own two
exporters import into cnnplay with the same outputs. Skipped without PyTorch
(pip install ".[compare]"); the source-only checks run without it."""

import ast
import importlib.util
import io
import subprocess
import sys

import numpy as np
import pytest

from cnnplay import Network, export_pytorch, import_onnx
from cnnplay.core.interop import InteropError, pytorch_source
from interop_nets import SPECS, assert_close, batch, cnnplay_outputs, randomized

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's own

TRAINING = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "epochs": 2, "batch_size": 16}


def unused_imports(source: str) -> set[str]:
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {a.asname or a.name for a in node.names}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return imported - used


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("training", [None, TRAINING, {"optimizer": "adamw", "lr": 1e-3}, {
    "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "schedule": {"kind": "step", "step_size": 3, "gamma": 0.5}}])
def test_generated_code_is_readable_python_without_dead_imports(kind, training):
    net = randomized(SPECS[kind])
    src = pytorch_source(net, "my_model", training)
    compile(src, "my_model.py", "exec")
    assert not unused_imports(src)
    assert max(len(line) for line in src.splitlines()) <= 88
    assert "\t" not in src and src.endswith("\n") and not src.endswith("\n\n")
    assert all(line == line.rstrip() for line in src.splitlines())
    assert "\n\n\n\n" not in src
    # one module per layer, in order, each after a comment naming the cnnplay layer
    for i, summary in enumerate(net.summaries):
        assert f"# {i}: {summary} -> " in src
    assert ("def train(model, loader, epochs=" in src) == (training is not None)
    assert ("ChannelLayerNorm" in src) == any(t.name == "layernorm" for t in net.layer_types)


def test_an_empty_network_gives_an_empty_sequential():
    src = pytorch_source(Network.from_dict({"input": [1, 4, 4], "layers": []}), "empty")
    compile(src, "empty.py", "exec")
    assert "    return nn.Sequential()\n" in src and not unused_imports(src)


def test_training_settings_are_checked():
    net = randomized(SPECS["signal"])
    with pytest.raises(InteropError, match="unknown optimizer 'rmsprop'"):
        pytorch_source(net, "m", {"optimizer": "rmsprop"})
    with pytest.raises(InteropError, match="lr must be a valid number"):
        pytorch_source(net, "m", {"lr": -1})

    class FakeTrainer:  # a Trainer-like object: its settings come from state()
        def state(self):
            return {"settings": {"optimizer": "adam", "lr": 0.002, "betas": [0.8, 0.99], "eps": 1e-7}}
    src = pytorch_source(net, "m", FakeTrainer())
    assert "torch.optim.Adam(" in src and "model.parameters(), lr=0.002, betas=(0.8, 0.99), eps=1e-07" in src
    with pytest.raises(InteropError, match="unknown schedule"):
        pytorch_source(net, "m", {"schedule": {"kind": "exponential"}})


def test_a_real_trainer_state_gives_its_settings():
    import cnnplay
    if not hasattr(cnnplay, "Trainer"):
        pytest.skip("cnnplay.Trainer has not landed in this build")
    net = randomized(SPECS["signal"])
    tr = cnnplay.Trainer(net, optimizer="sgd", lr=0.03, momentum=0.5, weight_decay=0.01,
                         schedule={"kind": "cosine", "epochs": 4, "min_lr": 0.001})
    src = " ".join(pytorch_source(net, "m", tr.state()).split())
    assert "torch.optim.SGD( model.parameters(), lr=0.03, momentum=0.5, weight_decay=0.01 )" in src
    assert "CosineAnnealingLR( optimizer, T_max=4, eta_min=0.001 )" in src or \
        "CosineAnnealingLR(optimizer, T_max=4, eta_min=0.001)" in src


def test_export_writes_the_code_and_a_pickle_free_npz_beside_it(tmp_path):
    net = randomized(SPECS["image"])
    code, weights = export_pytorch(net, tmp_path / "net")
    assert code == tmp_path / "net.py" and weights == tmp_path / "net.npz"
    with np.load(weights, allow_pickle=False) as arrays:
        assert arrays["0.weight"].shape == net.params(0)["weight"].shape
        np.testing.assert_array_equal(arrays["1.running_var"], net.params(1)["running_var"])
        assert arrays["1.num_batches_tracked"].dtype == np.int64
        assert all(arrays[k].dtype != object for k in arrays.files)
    bad = Network.from_dict({"input": [1, 4, 4], "layers": [{"type": "linear", "out_features": 2}]}, partial=True)
    with pytest.raises(InteropError, match="fix the invalid layer"):
        export_pytorch(bad, tmp_path / "bad.py")
    assert not (tmp_path / "bad.py").exists()


# -- with PyTorch ---------------------------------------------------------------------------------------------

def load_module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_exported_model_reproduces_every_layer(kind, tmp_path):
    torch = pytest.importorskip("torch")
    net = randomized(SPECS[kind])
    code, _ = export_pytorch(net, tmp_path / f"exported_{kind}.py")
    model = load_module(code).load_model()
    assert not model.training
    assert len(model) == len(net)
    x = batch(net, 3)
    want = cnnplay_outputs(net, x)
    h = torch.from_numpy(x)
    with torch.no_grad():
        for i, module in enumerate(model):
            h = module(h)
            assert_close(h.numpy(), want[i], f"layer {i} ({net.layer_types[i].name})")


def test_the_file_runs_as_a_script(tmp_path):
    pytest.importorskip("torch")
    net = randomized(SPECS["signal"])
    code, _ = export_pytorch(net, tmp_path / "script_net.py")
    out = subprocess.run([sys.executable, str(code)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{sum(net.parameter_counts)} parameters; input (1, 2, 40) -> output (1, 4)" in out.stdout
    assert "Conv1d(2, 4, kernel_size=(5,)" in out.stdout


def test_train_takes_the_same_sgd_step_as_plain_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    net = randomized(SPECS["image"])
    module = load_module(export_pytorch(net, tmp_path / "trainable.py", training=TRAINING)[0])
    x = torch.from_numpy(batch(net, 4))
    y = torch.tensor([0, 2, 1, 2])
    trained = module.train(module.load_model(), [(x, y)], epochs=1)
    assert not trained.training
    # the same step by hand: cross-entropy, gradients in training mode, p -= lr * grad
    ref = module.load_model().train()
    loss = torch.nn.functional.cross_entropy(ref(x), y)
    loss.backward()
    with torch.no_grad():
        for (name, p), (name2, q) in zip(ref.named_parameters(), trained.named_parameters()):
            assert name == name2
            np.testing.assert_allclose(q.cpu().numpy(), (p - 0.1 * p.grad).numpy(), rtol=1e-5, atol=1e-6)
    assert any((p.grad.abs() > 0).any() for p in ref.parameters())


def torchscript_onnx(torch, model, x, **kw):
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_pytorch_torchscript_exported_onnx_imports_with_the_same_outputs(kind, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    net = randomized(SPECS[kind])
    model = load_module(export_pytorch(net, tmp_path / f"ts_{kind}.py")[0]).load_model()
    x = batch(net, 2)
    path = tmp_path / "ts.onnx"
    path.write_bytes(torchscript_onnx(torch, model, torch.from_numpy(x)))
    back = import_onnx(path)
    assert back.input_shape == net.input_shape
    assert_close(cnnplay_outputs(back, x)[-1], cnnplay_outputs(net, x)[-1], "output")


def test_pytorch_view_flatten_and_trailing_softmax_from_torchscript(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from torch import nn
    from cnnplay.core.interop import read_onnx

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 5 * 5, 3)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)))
            h = h.view(h.size(0), -1)
            return torch.softmax(self.fc(h), dim=1)

    torch.manual_seed(0)
    model = Net()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(2, 1, 10, 10)
    for folding in (True, False):
        path = tmp_path / f"view_{folding}.onnx"
        path.write_bytes(torchscript_onnx(torch, model, x, do_constant_folding=folding))
        result = read_onnx(path)
        types = [t.name for t in result.network.layer_types]
        assert types[-2:] == ["flatten", "linear"] and "relu" in types
        assert any("Softmax" in n and "left out" in n for n in result.notes)
        with torch.no_grad():
            logits = model.fc(torch.relu(model.bn(model.conv(x))).flatten(1)).numpy()
        assert_close(cnnplay_outputs(result.network, x.numpy())[-1], logits, f"folding={folding}")


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_pytorch_dynamo_exported_onnx_imports_with_the_same_outputs(kind, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    net = randomized(SPECS[kind])
    model = load_module(export_pytorch(net, tmp_path / f"dyn_{kind}.py")[0]).load_model()
    x = batch(net, 2)
    path = tmp_path / "dynamo.onnx"
    batch_dim = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(model, (torch.from_numpy(x),), dynamo=True, dynamic_shapes=({0: batch_dim},),
                                verbose=False)
    program.save(str(path))
    back = import_onnx(path)
    assert back.input_shape == net.input_shape
    assert_close(cnnplay_outputs(back, x)[-1], cnnplay_outputs(net, x)[-1], "output")
