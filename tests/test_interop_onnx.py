"""ONNX export and import: files checked by onnx's checker and run in onnxruntime
against cnnplay's forward pass (every layer, 1e-4), round trips, hand-made graphs
for each supported pattern (onnxruntime as the reference) and each unsupported
one (its message), damaged and hostile files."""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnnplay import export_onnx, import_onnx  # noqa: E402
from cnnplay.core import memory  # noqa: E402
from cnnplay.core.interop import (OnnxImportError, OnnxUnavailable, onnx_from_bytes, onnx_model,  # noqa: E402
                                  read_onnx)
from cnnplay.core.interop import errors as interop_errors  # noqa: E402
from interop_nets import SPECS, assert_close, batch, cnnplay_outputs, randomized  # noqa: E402


def run_ort(model_or_bytes, x, outputs=None):
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(outputs, {sess.get_inputs()[0].name: x})


def with_every_output(model, names):
    """The model with each named value also a graph output (onnxruntime then returns it)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        m.graph.output.append(helper.make_empty_tensor_value_info(n))
    return m


# -- export ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(SPECS))
def test_exported_model_passes_the_full_check_and_matches_every_layer_in_onnxruntime(kind, tmp_path):
    net = randomized(SPECS[kind])
    path = tmp_path / "net.onnx"
    export_onnx(net, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "N" and not batch_dim.HasField("dim_value")
    names = [f"{t.name}_{i}" for i, t in enumerate(net.layer_types)]
    node_names = {n.name for n in model.graph.node}
    assert set(names) <= node_names  # readable names in Netron: conv2d_0, batchnorm_1, ...
    x = batch(net, 3)
    got = run_ort(with_every_output(model, names[:-1]), x)
    want = cnnplay_outputs(net, x)
    assert_close(got[0], want[-1], "output")
    for i, name in enumerate(names[:-1]):
        assert_close(got[1 + i], want[i], name)
    # any batch size: the batch dimension is dynamic
    assert run_ort(model, x[:1])[0].shape == (1, *net.output_shapes[-1])


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_round_trip_gives_the_same_network_and_outputs(kind, tmp_path):
    net = randomized(SPECS[kind])
    export_onnx(net, tmp_path / "net.onnx")
    back = import_onnx(tmp_path / "net.onnx")
    assert back.to_dict() == net.to_dict()
    for i in range(len(net)):
        for name, a in net.params(i).items():
            np.testing.assert_array_equal(back.params(i)[name], a)
    x = batch(net, 2)
    for a, b in zip(cnnplay_outputs(back, x), cnnplay_outputs(net, x)):
        np.testing.assert_array_equal(a, b)


def test_an_empty_network_exports_and_imports(tmp_path):
    from cnnplay import Network
    net = Network.from_dict({"input": [2, 5, 4], "layers": []})
    export_onnx(net, tmp_path / "empty.onnx")
    x = batch(net, 2)
    np.testing.assert_array_equal(run_ort(onnx.load(str(tmp_path / "empty.onnx")), x)[0], x)
    back = import_onnx(tmp_path / "empty.onnx")
    assert back.input_shape == (2, 5, 4) and len(back) == 0


def test_an_invalid_network_is_not_exported(tmp_path):
    from cnnplay import Network
    net = Network.from_dict({"input": [1, 8, 8], "layers": [{"type": "relu"}, {"type": "linear", "out_features": 2}]},
                            partial=True)
    with pytest.raises(OnnxImportError.__mro__[1]) as e:  # InteropError
        export_onnx(net, tmp_path / "x.onnx")
    assert "layer 1" in str(e.value) and "flat input" in str(e.value)
    assert not (tmp_path / "x.onnx").exists()


def test_without_the_onnx_package_the_message_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(interop_errors, "onnx_available", lambda: False)
    net = randomized(SPECS["signal"])
    with pytest.raises(OnnxUnavailable, match=r'pip install "cnnplay\[onnx\]"'):
        export_onnx(net, tmp_path / "x.onnx")
    with pytest.raises(OnnxUnavailable, match="onnx"):
        onnx_from_bytes(b"abc")


# -- hand-made graphs that cnnplay reads -----------------------------------------------------------------

RNG = np.random.default_rng(5)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def make(nodes, inits, in_shape, out_name="y", batch_dim="N", opset=17, extra_inputs=()):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, *in_shape]), *extra_inputs],
        [helper.make_empty_tensor_value_info(out_name)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def imported(model):
    return onnx_from_bytes(model.SerializeToString(), "test.onnx")


def check_same_as_ort(model, n=2):
    """Import the model and compare cnnplay's forward pass with onnxruntime's on a batch."""
    result = imported(model)
    net = result.network
    x = batch(net, n)
    assert_close(cnnplay_outputs(net, x)[-1] if len(net) else x, run_ort(model, x)[0], "output")
    return result


def test_gemm_with_either_transposition_alpha_and_beta():
    for trans_b in (0, 1):
        w = f32(5, 12) if trans_b else f32(12, 5)
        model = make([helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                      helper.make_node("Gemm", ["f", "w", "c"], ["y"], name="fc", transB=trans_b, alpha=0.5, beta=2.0)],
                     {"w": w, "c": f32(1, 5)}, [3, 2, 2])
        r = check_same_as_ort(model)
        assert [t.name for t in r.network.layer_types] == ["flatten", "linear"]


def test_matmul_then_add_is_a_linear_layer_and_add_after_a_conv_its_bias():
    model = make([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
                  helper.make_node("Add", ["c", "cb"], ["c2"], name="conv_bias"),
                  helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
                  helper.make_node("MatMul", ["f", "m"], ["h"], name="mm"),
                  helper.make_node("Add", ["mb", "h"], ["y"], name="mm_bias")],
                 {"w": f32(4, 2, 3, 3), "cb": f32(1, 4, 1, 1), "m": f32(4 * 4 * 3, 6), "mb": f32(6)}, [2, 6, 5])
    r = check_same_as_ort(model)
    assert [t.name for t in r.network.layer_types] == ["conv2d", "flatten", "linear"]
    assert r.network.configs[0]["bias"] and r.network.configs[2]["bias"]
    assert r.nodes[0] == ["conv", "conv_bias"] and r.nodes[2] == ["mm", "mm_bias"]


def test_the_torchscript_flatten_pattern_and_other_flattening_reshapes():
    def shape_pattern():  # x.view(x.size(0), -1) as TorchScript writes it
        return [helper.make_node("Shape", ["r"], ["s"], name="shape"),
                helper.make_node("Constant", [], ["zero"], name="c0", value=numpy_helper.from_array(np.array(0, np.int64))),
                helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
                helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
                helper.make_node("Constant", [], ["minus1"], name="c1", value_ints=[-1]),
                helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
                helper.make_node("Reshape", ["r", "target"], ["f"], name="reshape")]

    head = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    tail = [helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1)]
    inits = {"w": f32(3, 2 * 4 * 4), "axes": np.array([0], np.int64)}
    for batch_dim in ("N", 4):
        r = check_same_as_ort(make(head + shape_pattern() + tail, inits, [2, 4, 4], batch_dim=batch_dim), n=4 if
                              batch_dim == 4 else 2)
        assert [t.name for t in r.network.layer_types] == ["relu", "flatten", "linear"]
    for target in ([-1, 32], [0, -1], [0, 32]):
        nodes = head + [helper.make_node("Reshape", ["r", "t"], ["f"], name="reshape")] + tail
        r = check_same_as_ort(make(nodes, dict(inits, t=np.array(target, np.int64)), [2, 4, 4]))
        assert [t.name for t in r.network.layer_types] == ["relu", "flatten", "linear"]


def test_pools_global_pools_padding_modes_and_skipped_nodes():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="same", kernel_shape=[3], auto_pad="SAME_UPPER"),
             helper.make_node("Dropout", ["c"], ["d"], name="drop"),
             helper.make_node("Identity", ["d"], ["i"], name="id"),
             helper.make_node("MaxPool", ["i"], ["p"], name="pool", kernel_shape=[2], strides=[2], ceil_mode=1),
             helper.make_node("AveragePool", ["p"], ["a"], name="avg", kernel_shape=[3], count_include_pad=0),
             helper.make_node("LeakyRelu", ["a"], ["l"], name="leaky", alpha=0.3),
             helper.make_node("GlobalAveragePool", ["l"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flat")]
    r = check_same_as_ort(make(nodes, {"w": f32(4, 2, 3), "b": f32(4)}, [2, 16]))
    assert [t.name for t in r.network.layer_types] == ["conv1d", "maxpool1d", "avgpool1d", "leaky_relu",
                                                       "avgpool1d", "flatten"]
    assert r.network.configs[0]["padding"] == (1,) and r.network.configs[3]["negative_slope"] == pytest.approx(0.3)


def test_layer_norm_between_transposes_and_a_trailing_softmax_left_out_with_a_note():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="to_last", perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["t", "g", "b"], ["n"], name="ln", axis=-1, epsilon=1e-3),
             helper.make_node("Transpose", ["n"], ["u"], name="to_first", perm=[0, 3, 1, 2]),
             helper.make_node("BatchNormalization", ["u", "s", "bb", "m", "v"], ["bn"], name="bn", epsilon=1e-4),
             helper.make_node("Flatten", ["bn"], ["f"], name="flat"),
             helper.make_node("Softmax", ["f"], ["y"], name="probs", axis=-1)]
    inits = {"g": f32(3), "b": f32(3), "s": f32(3), "bb": f32(3), "m": f32(3), "v": np.abs(f32(3)) + 0.5}
    model = make(nodes, inits, [3, 4, 5])
    r = imported(model)
    assert [t.name for t in r.network.layer_types] == ["layernorm", "batchnorm", "flatten"]
    assert r.nodes[0] == ["to_last", "ln", "to_first"]
    assert len(r.notes) == 1 and "Softmax" in r.notes[0] and "probs" in r.notes[0] and "left out" in r.notes[0]
    x = batch(r.network)
    want = run_ort(with_every_output(model, ["f"]), x)[1]  # before the softmax
    assert_close(cnnplay_outputs(r.network, x)[-1], want, "before softmax")


def test_constant_nodes_old_initializer_inputs_and_float16_weights():
    w = numpy_helper.from_array(f32(3, 1, 2, 2).astype(np.float16))
    nodes = [helper.make_node("Constant", [], ["w16"], name="weights", value=w),
             helper.make_node("Cast", ["w16"], ["w"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    model = make(nodes, {}, [1, 5, 5])
    r = check_same_as_ort(model)
    assert r.network.output_shapes[-1] == (3, 6, 6)
    # initializers listed among the graph inputs (older exporters do this)
    model = make([helper.make_node("Conv", ["x", "w2"], ["y"], name="conv", kernel_shape=[1, 1])], {"w2": f32(2, 1, 1, 1)},
                 [1, 3, 3], extra_inputs=[helper.make_tensor_value_info("w2", TensorProto.FLOAT, [2, 1, 1, 1])])
    assert imported(model).network.output_shapes == [(2, 3, 3)]


# -- hand-made graphs that cnnplay refuses, each with its message ------------------------------------------------

def conv(name="conv", x="x", y="c", group=1, w="w", **kw):
    return helper.make_node("Conv", [x, w], [y], name=name, group=group, **kw)


UNSUPPORTED = {
    "residual add": (lambda: make([conv(pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "x"], ["y"], name="skip")],
                                  {"w": f32(3, 3, 3, 3)}, [3, 6, 6]),
                     ["'skip' (Add)", "residual connection", "single chain"]),
    "concat of branches": (lambda: make([conv(), conv("conv_b", y="d"),
                                         helper.make_node("Concat", ["c", "d"], ["y"], name="join", axis=1)],
                                        {"w": f32(2, 3, 1, 1)}, [3, 4, 4]),
                           ["'join' (Concat)", "two branches joined"]),
    "branch reuse": (lambda: make([conv(), helper.make_node("Relu", ["c"], ["r"], name="relu"),
                                   helper.make_node("Sigmoid", ["c"], ["y"], name="side")],
                                  {"w": f32(2, 3, 1, 1)}, [3, 4, 4]),
                     ["'side' (Sigmoid)", "branches"]),
    "grouped conv": (lambda: make([conv(group=3, y="y")], {"w": f32(3, 1, 3, 3)}, [3, 6, 6]),
                     ["'conv' (Conv)", "grouped convolution (group=3)", "group 1"]),
    "3D conv": (lambda: make([conv(y="y")], {"w": f32(2, 1, 2, 2, 2)}, [1, 4, 4, 4]),
                ["image (N, C, H, W) or a signal (N, C, L)"]),
    "asymmetric pads": (lambda: make([conv(y="y", pads=[0, 0, 1, 1])], {"w": f32(2, 1, 3, 3)}, [1, 6, 6]),
                        ["'conv' (Conv)", "asymmetric", "equally"]),
    "unsupported op": (lambda: make([helper.make_node("Sigmoid", ["x"], ["y"], name="sig")], {}, [1, 4, 4]),
                       ["'sig' (Sigmoid)", "not an operator cnnplay can turn into a layer", "cnnplay supports: Conv"]),
    "softmax in the middle": (lambda: make([helper.make_node("Softmax", ["x"], ["s"], name="sm"),
                                            helper.make_node("Relu", ["s"], ["y"], name="after")], {}, [1, 4, 4]),
                              ["'after' (Relu)", "Softmax node sm", "no softmax layer"]),
    "avg pool excluding padding": (lambda: make([helper.make_node("AveragePool", ["x"], ["y"], name="avg",
                                                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                                                {}, [1, 6, 6]),
                                   ["'avg' (AveragePool)", "count_include_pad=0", "counts the padding"]),
    "max pool dilation": (lambda: make([helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2],
                                                         dilations=[2, 2])], {}, [1, 6, 6]),
                          ["'mp' (MaxPool)", "dilations [2, 2]", "no holes"]),
    "reshape that is not a flatten": (lambda: make([helper.make_node("Reshape", ["x", "t"], ["y"], name="rs")],
                                                   {"t": np.array([0, 2, -1], np.int64)}, [4, 3, 3]),
                                      ["'rs' (Reshape)", "(N, 2, 18)", "only to (N, -1)"]),
    "lonely transpose": (lambda: make([helper.make_node("Transpose", ["x"], ["t"], name="tp", perm=[0, 2, 3, 1]),
                                       helper.make_node("Relu", ["t"], ["y"], name="r")], {}, [2, 3, 3]),
                         ["'r' (Relu)", "Transpose to channels-last tp", "around a LayerNormalization"]),
    "layer norm over C, H, W": (lambda: make([helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="ln",
                                                               axis=1)], {"g": f32(2, 3, 3)}, [2, 3, 3]),
                                ["'ln' (LayerNormalization)", "axes 1 to 3", "across channels at each position"]),
    "batch norm in training mode": (lambda: make([helper.make_node("BatchNormalization", ["x", "s", "s", "s", "s"],
                                                                   ["y"], name="bn", training_mode=1)],
                                                 {"s": np.ones(2, np.float32)}, [2, 3, 3]),
                                    ["'bn' (BatchNormalization)", "training mode", "eval mode"]),
    "gemm transA": (lambda: make([helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                                  helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transA=1)],
                                 {"w": f32(2, 3)}, [2, 1, 1]),
                    ["'fc' (Gemm)", "transA=1"]),
    "computed weights": (lambda: make([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                       helper.make_node("Conv", ["x", "r"], ["y"], name="conv")], {}, [1, 3, 3]),
                         ["'conv' (Conv)", "takes several computed values"]),
    "two outputs": (lambda: onnx.helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_empty_tensor_value_info("a"), helper.make_empty_tensor_value_info("b")]),
        opset_imports=[helper.make_opsetid("", 17)]), ["2 outputs", "has one"]),
    "two inputs": (lambda: make([helper.make_node("Relu", ["x"], ["y"], name="r")], {}, [1, 4, 4],
                                extra_inputs=[helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])]),
                   ["2 inputs", "'z'"]),
    "symbolic height": (lambda: make([helper.make_node("Relu", ["x"], ["y"], name="r")], {}, [1, "height", 4]),
                        ["height is 'height'", "fixed"]),
    "flat input": (lambda: make([helper.make_node("Relu", ["x"], ["y"], name="r")], {}, [10]),
                   ["shape (N, 10)", "image (N, C, H, W) or a signal (N, C, L)"]),
    "control flow": (lambda: make([helper.make_node("If", ["c"], ["y"], name="branch",
                                                    then_branch=helper.make_graph([], "t", [], []),
                                                    else_branch=helper.make_graph([], "e", [], []))],
                                  {"c": np.array(True)}, [1, 4, 4]),
                     ["'branch' (If)", "subgraph", "control flow"]),
    "custom domain": (lambda: make([helper.make_node("Fancy", ["x"], ["y"], name="f", domain="com.example")],
                                   {}, [1, 4, 4]),
                      ["'f' (Fancy)", "com.example", "cnnplay supports"]),
    "undefined value": (lambda: make([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], {}, [1, 4, 4]),
                        ["'r' (Relu)", "'nowhere'", "no earlier node"]),
    "old opset": (lambda: make([helper.make_node("Relu", ["x"], ["y"], name="r")], {}, [1, 4, 4], opset=6),
                  ["opset 6", "opset 7 and later"]),
    "ceil mode with another size": (lambda: make([helper.make_node("MaxPool", ["x"], ["y"], name="mp",
                                                                   kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
                                                 {}, [1, 7, 7]),
                                    ["'mp' (MaxPool)", "ceil_mode, which gives [4, 4] instead of cnnplay's [3, 3]"]),
    "layer cnnplay refuses": (lambda: make([helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2],
                                                             pads=[2, 2, 2, 2])], {}, [1, 6, 6]),
                              ["'mp' (MaxPool)", "layer 0 (maxpool2d, padding)", "more than half the kernel"]),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_graphs_name_the_node_the_op_and_what_cnnplay_supports(case):
    build, expected = UNSUPPORTED[case]
    with pytest.raises(OnnxImportError) as e:
        imported(build())
    msg = str(e.value)
    assert msg.startswith("test.onnx: ")
    for part in expected:
        assert part in msg, (case, msg)


def test_external_data_is_refused_without_opening_any_other_file(tmp_path):
    model = make([conv(y="y")], {"w": f32(2, 1, 3, 3)}, [1, 6, 6])
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../etc/passwd")
    with pytest.raises(OnnxImportError, match="external file.*save_as_external_data=False"):
        imported(model)


def test_weights_above_the_memory_budget_are_refused_before_allocating():
    model = make([conv(y="y")], {"w": f32(2, 1, 3, 3)}, [1, 6, 6])
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    del t.dims[:]
    t.dims.extend([200000, 100000, 3, 3])  # 720 GB claimed, no data: the sizes alone refuse it
    with pytest.raises(OnnxImportError, match="weights need 670.6 GB, above the memory limit"):
        imported(model)
    big = make([conv(y="y")], {"w": f32(64, 16, 9, 9)}, [16, 12, 12])
    imported(big)
    memory.set_limit(64 << 10)
    try:
        with pytest.raises(OnnxImportError, match="refused before loading"):
            imported(big)
    finally:
        memory.set_limit(None)


def test_hostile_graphs_are_bounded_before_work():
    concat = make([helper.make_node("Concat", ["c"] * 5000, ["big"], name="blowup", axis=0),
                   helper.make_node("Relu", ["x"], ["y"], name="r")], {"c": np.zeros(1000, np.int64)}, [1, 4, 4])
    with pytest.raises(OnnxImportError, match="'blowup' .*only shape arithmetic"):
        imported(concat)
    many = make([helper.make_node("Identity", ["x" if i == 0 else f"v{i - 1}"], [f"v{i}"]) for i in range(100_001)],
                {}, [1, 4, 4], out_name="v100000")
    with pytest.raises(OnnxImportError, match="100001 nodes; cnnplay reads chains of at most 100000"):
        imported(many)


def test_data_that_does_not_match_the_dimensions_is_refused():
    model = make([conv(y="y")], {"w": f32(2, 1, 3, 3)}, [1, 6, 6])
    t = model.graph.initializer[0]
    t.raw_data = t.raw_data[:-4]
    with pytest.raises(OnnxImportError, match=r"tensor 'w' of shape \[2, 1, 3, 3\] holds 68 bytes instead of 72"):
        imported(model)


# -- files and damaged bytes --------------------------------------------------------------------------------

def exported_bytes():
    return onnx_model(randomized(SPECS["image"])).SerializeToString()


def test_only_regular_files_are_read_with_a_size_limit(tmp_path):
    with pytest.raises(OnnxImportError, match="is a folder"):
        read_onnx(tmp_path)
    with pytest.raises(OnnxImportError, match="no such file"):
        read_onnx(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(OnnxImportError, match="empty"):
        read_onnx(tmp_path / "empty.onnx")
    if os.path.exists("/dev/zero"):
        with pytest.raises(OnnxImportError, match="not a regular file|/proc, /sys or /dev"):
            read_onnx("/dev/zero")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.onnx")
        with pytest.raises(OnnxImportError, match="pipe"):
            read_onnx(tmp_path / "pipe.onnx")
    (tmp_path / "big.onnx").write_bytes(exported_bytes())
    memory.set_limit(1000)
    try:
        with pytest.raises(OnnxImportError, match="memory limit"):
            read_onnx(tmp_path / "big.onnx")
    finally:
        memory.set_limit(None)
    assert len(read_onnx(tmp_path / "big.onnx").network) == len(SPECS["image"]["layers"])


def only_import_errors(data):
    try:
        result = onnx_from_bytes(data, "fuzz.onnx")
    except OnnxImportError as e:
        assert str(e).startswith("fuzz.onnx: ") and len(str(e)) < 2000
        return None
    return result


def test_truncated_models_give_clear_errors():
    data = exported_bytes()
    cuts = sorted(set(np.linspace(1, len(data) - 1, 150).astype(int)))
    clear = 0
    for cut in cuts:
        try:
            onnx_from_bytes(data[:cut], "fuzz.onnx")
        except OnnxImportError as e:
            msg = str(e)
            assert "Error:" not in msg or "cannot be read" not in msg, msg  # no bare exception texts
            clear += 1
    assert clear == len(cuts)  # no prefix of a model is a model


def test_random_and_mutated_protobufs_give_only_import_errors():
    rng = np.random.default_rng(0)
    data = bytearray(exported_bytes())
    for _ in range(300):
        only_import_errors(rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes())
    for _ in range(300):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), int(rng.integers(1, 6))):
            mutated[pos] = int(rng.integers(0, 256))
        only_import_errors(bytes(mutated))
    for _ in range(100):  # valid protobuf structure, random content
        m = onnx.ModelProto()
        m.ParseFromString(bytes(data))
        node = m.graph.node[int(rng.integers(len(m.graph.node)))]
        node.op_type = ["Conv", "Gemm", "Reshape", "Concat", "Gather", "Transpose", "Flatten"][int(rng.integers(7))]
        if rng.random() < 0.5:
            node.input.append(m.graph.initializer[int(rng.integers(len(m.graph.initializer)))].name)
        only_import_errors(m.SerializeToString())
