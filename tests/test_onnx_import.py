"""ONNX import: seven CNN families exported by torch (one with squeeze-and-excitation made of
linear layers), their logits against PyTorch's, every
split point exact with a unit inserted, unsupported ops and malformed files, a fuzz loop."""

import os
import subprocess
import sys

import numpy as np
import pytest

import butterfly as bf

torch = pytest.importorskip("torch", reason="the import tests need torch (make test "
                                            "installs it)")
onnx = pytest.importorskip("onnx")
import torch_models as tm
from onnx import TensorProto, helper

# (builder, input size): the families of the issue at their own size, widths cut for speed
FAMILIES = {
    "resnet18": (lambda: tm.resnet18(width=16), 224),
    "mobilenet_v2": (lambda: tm.mobilenet_v2(width=0.5), 224),
    "mobilenet_v3_small": (tm.mobilenet_v3_small, 224),
    "efficientnet_b0": (lambda: tm.efficientnet_b0(width=0.5), 224),
    "vgg11_bn": (lambda: tm.vgg11_bn(width=8, size=64), 64),
    "densenet_block": (tm.densenet_block, 64),
    "se_linear": (tm.se_linear, 224),
}


def _export_all(root, size=None):
    out = {}
    for name, (build, own) in FAMILIES.items():
        model = build()
        path = root / f"{name}.onnx"
        tm.export(model, path, size or own)
        out[name] = (model, path, size or own)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (torch model, onnx path, size) at each family's own input size."""
    return _export_all(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The same families at 64x64 (every one pools adaptively): for the tests that build a
    network per split point."""
    return _export_all(tmp_path_factory.mktemp("onnx64"), 64)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_logits_equal_pytorch(name, exported, rng):
    model, path, size = exported[name]
    net = bf.import_onnx(path)
    assert net.input_shape == (3, size, size)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = net.forward(x)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err <= 1e-4, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_no_layer_runs_a_reference_kernel(name, small):
    """Every layer of each family, a strided unit at its middle cut included, runs an
    optimized kernel where oneDNN has AVX2 or AVX-512 ones: none of oneDNN's reference
    implementations ("ref...") nor its reference-loop wrapper of transposed convs
    ("conv:any..."), the slow paths a layout choice can fall into."""
    _, path, size = small[name]
    net = bf.import_onnx(path)
    pts = net.split_points()
    p = pts[len(pts) // 2]
    stride = 2 if min(p["shape"][1:]) >= 4 else 1
    student = bf.insert_butterfly(net, at=p["name"], channels=2, stride=stride)
    plan = student.plan(*student.span(0, 3), 1)
    x = np.zeros((1, 3, size, size), np.float32)
    kernels = {r["name"]: r["kernel"] for r in plan.profile(x, repeats=1)}
    if any(":avx2" in k or ":avx512" in k for k in kernels.values()):
        slow = {n: k for n, k in kernels.items() if k.startswith(("ref", "conv:any"))}
        assert not slow, f"{name}: {slow}"
    assert kernels["reduce.quantize"] == "butterfly"


def _points(net, every):
    pts = net.split_points()
    return pts[::every] + ([pts[-1]] if (len(pts) - 1) % every else [])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_split_point_composes_exactly(name, small, rng):
    """With a unit at a cut: head -> reduce -> restore -> tail is forward, bit for bit, and
    skip connections / squeeze-and-excitation branches never cross a cut."""
    _, path, size = small[name]
    net = bf.import_onnx(path)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    pts = net.split_points()
    assert pts, name
    # big networks: every 3rd cut (and the last); the small ones: all of them
    for p in (pts if len(pts) <= 40 else _points(net, 3)):
        student = bf.insert_butterfly(net, at=p["name"], channels=2, stride=1)
        # every layer after the cut reads the cut or later layers only
        j = student.butterfly["layer"]
        for i in range(len(student.model)):
            if i > j:
                assert all(k >= j for k in student.model.layer(i)["inputs"]), (name, p)
        f = student.head(x)
        composed = student.tail(student.restore(student.reduce(f)))
        np.testing.assert_array_equal(composed, student.forward(x), err_msg=f"{name} {p}")
        np.testing.assert_array_equal(student.cloud(student.mobile(x)), student.forward(x))


def test_strided_units_at_cuts_of_imported_networks(small, rng):
    _, path, size = small["mobilenet_v3_small"]
    net = bf.import_onnx(path)
    x = rng.standard_normal((3, 3, size, size)).astype(np.float32)
    for p in net.split_points()[::7]:
        if min(p["shape"][1:]) < 4:
            continue
        student = bf.insert_butterfly(net, at=p["name"], channels=3, stride=2)
        pay = student.mobile(x)
        assert pay.data.shape[1:] == (3, -(-p["shape"][1] // 2), -(-p["shape"][2] // 2))
        np.testing.assert_array_equal(student.cloud(pay), student.forward(x))


def test_linear_squeeze_and_excitation_becomes_1x1_convolutions(exported):
    """The SE branches' Gemms (pool -> flatten -> Gemm -> ... -> back to (N, C, 1, 1) ->
    Mul) are 1x1 convolutions in the core; the classifier's Gemm stays a linear layer."""
    model, path, _ = exported["se_linear"]
    net = bf.import_onnx(path)
    layers = net.layers()
    fc = [r for r in layers if "fc1" in r["name"] or "fc2" in r["name"]]
    n_se = sum(isinstance(m, tm.LinearSqueezeExcite) for m in model.modules())
    assert len(fc) == 2 * n_se and all(r["type"] == "conv" for r in fc)
    assert all(tuple(r["out_dims"][1:]) == (1, 1) for r in fc)
    assert [r["type"] for r in layers].count("linear") == 1 and layers[-1]["type"] == "linear"
    assert [r["type"] for r in layers].count("mul") == n_se
    # no cut inside an SE branch: every mul reads the cut or later layers
    for p in net.split_points():
        j = p["layer"]
        assert all(k >= j for i in range(j + 1, len(layers))
                   for k in net.model.layer(i)["inputs"])


def _se_graph(rng, hw, tail):
    """x (1, 4, 8, 8) -> conv -> [pool] -> flatten -> Gemm -> tail nodes -> y."""
    k = 4 * hw * hw
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])]
    if hw == 1:
        nodes.append(helper.make_node("GlobalAveragePool", ["c"], ["p"]))
    else:
        nodes.append(helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[4, 4],
                                      strides=[8 // hw, 8 // hw]))
    nodes += [helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "g", "gb"], ["l"], transB=1)] + tail
    inits = [_w("w", (4, 3, 3, 3), rng), _w("g", (4, k), rng), _w("gb", (4,), rng),
             onnx.numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64), "shp"),
             onnx.numpy_helper.from_array(np.array([1, 4, 8, 8], np.int64), "big")]
    return _graph(nodes, inits)


def test_a_linear_layer_back_to_4d_against_the_reference(rng):
    tail = [helper.make_node("Sigmoid", ["l"], ["s"]),
            helper.make_node("Reshape", ["s", "shp"], ["r"]),
            helper.make_node("Expand", ["r", "big"], ["e"]),
            helper.make_node("Mul", ["c", "e"], ["y"])]
    model = _se_graph(rng, 1, tail)
    net = bf.import_onnx(model)
    assert [net.model.layer(i)["type"] for i in range(len(net.model))][3] == "conv"
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = net.forward(x).reshape(1, 4, 8, 8)
    np.testing.assert_allclose(got, _ort_free_reference(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["not_1x1", "expand_elsewhere"])
def test_linear_layers_that_cannot_return_to_4d_are_refused(case, rng):
    if case == "not_1x1":  # a Gemm over a flattened 4x2x2 feature cannot be a 1x1 conv
        tail = [helper.make_node("Reshape", ["l", "shp"], ["r"]),
                helper.make_node("Mul", ["c", "r"], ["y"])]
        model, msg = _se_graph(rng, 2, tail), "whose input .* is not 1x1"
    else:  # an expanded factor that no Mul reads
        tail = [helper.make_node("Reshape", ["l", "shp"], ["r"]),
                helper.make_node("Expand", ["r", "big"], ["e"]),
                helper.make_node("Relu", ["e"], ["y"])]
        model, msg = _se_graph(rng, 1, tail), "only of a \\(C, 1, 1\\) factor read by a Mul"
    with pytest.raises(bf.UnsupportedError, match=msg):
        bf.import_onnx(model)


def test_input_shape_given_for_dynamic_sizes(tmp_path, rng):
    model = tm.densenet_block()
    path = tmp_path / "dyn.onnx"
    x = torch.randn(1, 3, 48, 48)
    torch.onnx.export(model, (x,), str(path), opset_version=17, input_names=["x"],
                      dynamo=False, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(bf.InvalidArgument, match="give input_shape"):
        bf.import_onnx(path)
    net = bf.import_onnx(path, input_shape=(3, 40, 40))
    xs = rng.standard_normal((1, 3, 40, 40)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(xs)).numpy()
    np.testing.assert_allclose(net.forward(xs), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(bf.InvalidArgument, match="disagrees"):
        bf.import_onnx(_fixed(tmp_path), input_shape=(3, 40, 40))


def _fixed(tmp_path):
    path = tmp_path / "fixed.onnx"
    tm.export(tm.densenet_block(), path, 32, dynamic_batch=False)
    return path


# --- hand-written graphs: patterns, unsupported ops, malformed files ---------------------

def _graph(nodes, inits=(), inputs=None, outputs=None, opset=17):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _w(name, shape, rng):
    return onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _ort_free_reference(model, x):
    """torch-free reference: the ONNX reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def test_patterns_fold_into_layers(rng):
    """Pad before Conv, x * sigmoid(x), Add/Mul/Sub/Div by constants, MatMul + Add, Clip
    variants, shape arithmetic feeding Reshape: against ONNX's reference evaluator."""
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w1"], ["c1"], strides=[2, 2]),
        helper.make_node("Sigmoid", ["c1"], ["s1"]),
        helper.make_node("Mul", ["c1", "s1"], ["sw"]),
        helper.make_node("Mul", ["sw", "k3"], ["m1"]),
        helper.make_node("Sub", ["m1", "half"], ["m2"]),
        helper.make_node("Div", ["m2", "two"], ["m3"]),
        helper.make_node("Clip", ["m3", "lo", "hi"], ["cl"]),
        helper.make_node("LeakyRelu", ["cl"], ["lr"], alpha=0.2),
        helper.make_node("HardSigmoid", ["lr"], ["hs"], alpha=0.3, beta=0.4),
        helper.make_node("Shape", ["hs"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zeros"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["tgt"], axis=0),
        helper.make_node("Reshape", ["hs", "tgt"], ["flat"]),
        helper.make_node("MatMul", ["flat", "wm"], ["mm"]),
        helper.make_node("Add", ["mm", "bm"], ["y"]),
    ]
    inits = [
        onnx.numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64), "pads"),
        _w("w1", (4, 3, 3, 3), rng),
        onnx.numpy_helper.from_array(rng.uniform(0.5, 2, (1, 4, 1, 1)).astype(np.float32),
                                     "k3"),
        onnx.numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        onnx.numpy_helper.from_array(np.array(-1.0, np.float32), "lo"),
        onnx.numpy_helper.from_array(np.array(1.5, np.float32), "hi"),
        onnx.numpy_helper.from_array(np.array(0, np.int64), "zero"),
        onnx.numpy_helper.from_array(np.array([0], np.int64), "zeros"),
        onnx.numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
        _w("wm", (4 * 4 * 4, 5), rng),
        _w("bm", (5,), rng),
    ]
    model = _graph(nodes, inits)
    net = bf.import_onnx(model.SerializeToString())
    types = [net.model.layer(i)["type"] for i in range(len(net.model))]
    assert "swish" in types and "sigmoid" not in types and "clip" in types
    assert types[-1] == "linear" and types.count("conv") == 4  # conv + 3 folded constants
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x), _ort_free_reference(model, x), rtol=1e-4,
                               atol=1e-5)


def test_unsupported_op_names_the_node_and_lists_the_supported(rng):
    model = _graph([helper.make_node("Conv", ["x", "w"], ["c"]),
                    helper.make_node("Tanh", ["c"], ["y"], name="the_tanh")],
                   [_w("w", (4, 3, 3, 3), rng)])
    with pytest.raises(bf.UnsupportedError, match=r"'the_tanh' \(Tanh\).*supported ops: Add"):
        bf.import_onnx(model)


def test_unsupported_error_is_the_canonical_name_and_unsupported_its_alias(rng, tmp_path):
    assert bf.Unsupported is bf.UnsupportedError is bf._C.UnsupportedError
    assert bf.UnsupportedError.__name__ == "UnsupportedError"
    assert issubclass(bf.UnsupportedError, bf.Error)
    assert issubclass(bf.UnsupportedError, NotImplementedError)
    assert "UnsupportedError" in bf.__all__
    model = _graph([helper.make_node("Conv", ["x", "w"], ["c"]),
                    helper.make_node("Tanh", ["c"], ["y"], name="the_tanh")],
                   [_w("w", (4, 3, 3, 3), rng)])
    with pytest.raises(bf.Unsupported):  # code written against the old name still works
        bf.import_onnx(model)
    path = tmp_path / "tanh.onnx"
    path.write_bytes(model.SerializeToString())
    r = subprocess.run([sys.executable, "-m", "butterfly", "import", str(path), "-o",
                        str(tmp_path / "t.bfly")], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(bf.__file__))),
                       check=False)
    assert r.returncode == 2, r.stderr
    assert "UnsupportedError: node 'the_tanh' (Tanh)" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("case", ["opset12", "two_inputs", "missing_input", "cycle",
                                  "huge_initializer", "wrong_weight", "three_d_conv",
                                  "no_shape", "external_data", "int_input"])
def test_malformed_and_unsupported_graphs_give_clear_errors(case, rng):
    w = _w("w", (4, 3, 3, 3), rng)
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    if case == "opset12":
        model, err, msg = _graph([conv], [w], opset=12), bf.Unsupported, "opset 12"
    elif case == "two_inputs":
        extra = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 8, 8])
        inp = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]), extra]
        model, err, msg = _graph([conv], [w], inputs=inp), bf.Unsupported, "2 inputs"
    elif case == "missing_input":
        model = _graph([helper.make_node("Relu", ["ghost"], ["y"])])
        err, msg = bf.ModelError, "no earlier node or initializer defines"
    elif case == "cycle":
        model = _graph([helper.make_node("Relu", ["b"], ["a"]),
                        helper.make_node("Relu", ["a"], ["b"]),
                        helper.make_node("Relu", ["x"], ["y"])])
        err, msg = bf.ModelError, "missing input or cycle"
    elif case == "huge_initializer":
        t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20])
        model, err, msg = _graph([conv], [t]), bf.ModelError, "declares"
    elif case == "wrong_weight":
        model, err, msg = _graph([conv], [_w("w", (4, 5, 3, 3), rng)]), bf.ModelError, "input"
    elif case == "three_d_conv":
        model, err, msg = _graph([conv], [_w("w", (4, 3, 3, 3, 3), rng)]), bf.Unsupported, "3-D"
    elif case == "no_shape":
        inp = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])]
        model, err, msg = _graph([conv], [w], inputs=inp), bf.InvalidArgument, "input_shape"
    elif case == "external_data":
        t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 3, 3, 3],
                        data_location=TensorProto.EXTERNAL)
        t.external_data.add(key="location", value="../../etc/passwd")
        model, err, msg = _graph([conv], [t]), bf.Unsupported, "external file"
    else:
        inp = [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 3, 8, 8])]
        model, err, msg = _graph([conv], [w], inputs=inp), bf.Unsupported, "not float32"
    with pytest.raises(err, match=msg):
        bf.import_onnx(model.SerializeToString())


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"not an onnx file at all" * 40])
def test_garbage_files(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(bf.Error):
        bf.import_onnx(path)


def test_bad_arguments(tmp_path):
    with pytest.raises(bf.FileError):
        bf.import_onnx(tmp_path / "nothing.onnx")
    with pytest.raises(TypeError):
        bf.import_onnx(42)


def test_fuzz_the_importer_with_mutated_files(exported, tmp_path):
    """A bounded mutation loop, in a child process (a crash or a hang fails the test): every
    mutated file imports or raises a butterfly.Error / TypeError, nothing else."""
    _, path, _ = exported["densenet_block"]
    script = f"""
import random, sys, time
import butterfly as bf
data = open({str(path)!r}, "rb").read()
rnd = random.Random(1)
kinds = {{}}
t0 = time.time()
n = 0
while n < 400 and time.time() - t0 < 60:
    b = bytearray(data)
    for _ in range(rnd.choice((1, 2, 8))):
        i = rnd.randrange(len(b))
        op = rnd.random()
        if op < 0.6:
            b[i] = rnd.randrange(256)
        elif op < 0.8:
            del b[i:i + rnd.randrange(1, 64)]
        else:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 16)))
    try:
        bf.import_onnx(bytes(b))
        kinds["ok"] = kinds.get("ok", 0) + 1
    except (bf.Error, TypeError) as e:
        kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
    n += 1
print(n, sorted(kinds.items()))
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(bf.__file__)))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300, cwd=root, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    n = int(r.stdout.split()[0])
    assert n >= 50, r.stdout  # enough cases ran in the time bound
    print(r.stdout)


def test_split_points_of_a_resnet_are_block_ends_and_stem(exported):
    _, path, _ = exported["resnet18"]
    net = bf.import_onnx(path)
    names = [p["name"] for p in net.split_points()]
    # inside a basic block two tensors are live (the shortcut): no cut there
    assert not any("/a/" in n or "/b/" in n for n in names), names
    assert sum("Relu" in n and "/Relu" in n for n in names) >= 8  # the 8 block outputs


def test_cli_import_and_splits(exported, tmp_path):
    _, path, _ = exported["vgg11_bn"]
    out = tmp_path / "vgg.bfly"
    root = os.path.dirname(os.path.dirname(os.path.abspath(bf.__file__)))
    r = subprocess.run([sys.executable, "-m", "butterfly.cli", "import", str(path), "-o",
                        str(out)], capture_output=True, text=True, cwd=root, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "layers" in r.stdout and out.exists()
    r = subprocess.run([sys.executable, "-m", "butterfly.cli", "splits", str(out)],
                       capture_output=True, text=True, cwd=root, timeout=300,
                       check=False)
    assert r.returncode == 0 and "fp32 bytes" in r.stdout, r.stderr
    assert len(r.stdout.splitlines()) == 1 + len(bf.load(out).split_points())
    r = subprocess.run([sys.executable, "-m", "butterfly.cli", "import", str(tmp_path / "no"),
                        "-o", str(out)], capture_output=True, text=True, cwd=root, timeout=300,
                       check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "not a file" in r.stderr


def test_distilled_unit_keeps_the_accuracy_on_fashion_mnist(tmp_path):
    """A network trained here on Fashion-MNIST (benchmarks/results/baseline-w16.bfly, 15
    epochs), exported to ONNX and imported back; a unit at a middle cut that sends 123x
    fewer bytes than the fp32 feature, distilled without labels on 6,000 training images:
    top-1 on the whole test set within 2 points of the imported original."""
    from butterfly.data.datasets import DatasetNotFoundError

    try:
        train, test = bf.datasets.fashion_mnist()
    except DatasetNotFoundError as e:
        pytest.fail(f"the real data is missing: {e}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(bf.__file__)))
    trained = bf.load(os.path.join(root, "benchmarks", "results", "baseline-w16.bfly"))
    path = tmp_path / "fmnist.onnx"
    bf.export_onnx(trained, path)
    teacher = bf.import_onnx(path)
    base = bf.evaluate(teacher, test)["top1"]
    assert base > 0.92, base
    cut = next(p for p in teacher.split_points() if p["name"] == "rb4.out")
    student = bf.insert_butterfly(teacher, at="rb4.out", channels=4, stride=2)
    payload = student.summary()["payload_bytes"] + 8
    assert cut["fp32_bytes"] / payload >= 50, (cut, payload)
    hist = bf.distill(student, teacher, train.images[:6000], epochs=1, batch_size=32,
                      progress=False)
    assert hist.last["loss"] < 0.6  # the relative error of the restored feature
    got = bf.evaluate(student, test)["top1"]
    print(f"teacher {base:.4f}, student {got:.4f}, {payload} B per image "
          f"({cut['fp32_bytes'] / payload:.0f}x less than the fp32 feature)")
    assert got >= base - 0.02, (got, base)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_opencl_mobile_half_equals_onednn_payload(name, small, rng):
    """The mobile half of an imported network with a unit, on OpenCL (pocl here): the
    payload of oneDNN's, at most 1 LSB off on a few bytes, at cuts early, middle and late."""
    if not bf.opencl.available():
        pytest.skip("no OpenCL device (make test installs pocl)")
    _, path, size = small[name]
    net = bf.import_onnx(path)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    pts = net.split_points()
    for p in (pts[1], pts[len(pts) // 2], pts[-2]):
        student = bf.insert_butterfly(net, at=p["name"], channels=3, stride=1)
        ref = student.mobile(x)
        got = bf.opencl.MobileHalf(student).mobile(x)
        np.testing.assert_allclose(got.ranges, ref.ranges, rtol=1e-4, atol=1e-5)
        diff = np.abs(got.data.astype(np.int16) - ref.data.astype(np.int16))
        assert diff.max() <= 1, (name, p["name"])
        assert (diff == 1).mean() <= 0.01, (name, p["name"], (diff == 1).mean())


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "densenet_block",
                                  "se_linear"])
def test_round_trip_through_export_gives_onnx_runtime_the_same_logits(name, small, tmp_path,
                                                                      rng):
    ort = pytest.importorskip("onnxruntime")
    _, path, size = small[name]
    net = bf.import_onnx(path)
    out = tmp_path / "again.onnx"
    bf.export_onnx(net, out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((3, 3, size, size)).astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    ref = net.forward(x)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    again = bf.import_onnx(out)  # and back: the same network
    np.testing.assert_allclose(again.forward(x), ref, rtol=1e-5, atol=1e-6)
