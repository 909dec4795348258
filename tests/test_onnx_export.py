"""ONNX export: ONNX Runtime on the exported graphs gives what the core gives."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import reference
from conftest import assert_close

import butterfly as bf
from butterfly.network import LayerList
from butterfly.network.onnx_export import _EMIT, to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

HEADER = os.path.join(os.path.dirname(__file__), "..", "csrc", "include", "butterfly.h")


def randomize_bn(net, rng):
    ranges = {"gamma": (0.5, 1.5), "beta": (-0.5, 0.5), "running_mean": (-0.5, 0.5),
              "running_var": (0.5, 2.0)}
    for i in range(len(net.model)):
        for k, (name, shape) in enumerate(net.model.param_names(i)):
            if name in ranges:
                net.model.set_param(i, k, rng.uniform(*ranges[name], shape).astype(np.float32))
    return net


def session(net, part="all", opset=17):
    model = to_onnx(net, part, opset)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_all(net, x, opset=17):
    return session(net, "all", opset).run(None, {"image": x})[0]


def bias(L, rng):
    L.params[L.last][1][:] = rng.normal(0, 0.5, L.params[L.last][1].shape)


def convs_and_pools(rng):
    """conv (asymmetric padding, dilation, groups), deconv (groups, output padding),
    batch-norm, the pools, upsample, concat, relu6, leaky_relu, relu."""
    L = LayerList((4, 13, 11), seed=1)
    L.conv(8, 3, 2, pad=0, pad_end=1, bias=True)
    bias(L, rng)
    L.bn()
    L.act("relu6")
    a = L.conv(8, 3, 1, dilation=2, groups=4, bias=True)
    bias(L, rng)
    L.conv(6, 3, 2, pad=1, groups=2, bias=True, deconv=True, output_pad=1)
    bias(L, rng)
    L.bn()
    L.act("leaky_relu", alpha=0.1)
    L.pool("maxpool", 3, 2, pad=0, pad_end=1)
    L.pool("avgpool", 3, 1, pad=1)
    u = L.upsample(2)
    L.conv(8, 1, 1, src=a)
    L.concat([u, L.upsample(2)])
    L.relu()
    L.pool("avgpool", 2, 2, pad=1, pad_end=0)
    return L


def activations_and_joins(rng):
    """sigmoid, swish, hardswish, hardsigmoid, clip, mul (same shape and per channel), add,
    global average pool, linear on a feature map, linear after linear, softmax."""
    L = LayerList((6, 7, 5), seed=2)
    x = L.conv(8, 3, 1, bias=True)
    bias(L, rng)
    s = L.act("swish")
    h = L.act("hardswish", src=x)
    L.mul(s, h)
    y = L.act("clip", alpha=-0.5, beta=1.5)
    L.global_avgpool()
    L.conv(8, 1, 1, bias=True)
    bias(L, rng)
    g = L.act("sigmoid")
    L.mul(y, g)  # squeeze-and-excitation
    z = L.act("hardsigmoid", alpha=0.2, beta=0.5)
    L.add(z, y)
    L.linear(12)
    L.act("relu")
    L.linear(5)
    L.simple("softmax")
    return L


def with_unit(rng):
    """A network split by a butterfly unit: head, reduce + quantize, dequantize + restore,
    tail ending on linear logits."""
    L = LayerList((3, 12, 12), seed=3)
    L.conv_bn(8, 3, 1, name="stem")
    L.part = "reduce"
    L.conv_bn(8, 3, 2, groups=8, name="reduce.spatial")
    L.conv_bn(2, 1, 1, name="reduce.channel", pad=0)
    L.simple("quantize", name="reduce.quantize")
    L.part = "restore"
    L.simple("dequantize", name="restore.dequantize")
    L.conv_bn(8, 1, 1, name="restore.channel", pad=0)
    L.upsample(2, name="restore.upsample")
    L.part = "tail"
    L.conv_bn(16, 3, 2, name="tail.conv")
    L.global_avgpool(name="pool")
    L.linear(10, name="fc")
    return L


BUILDERS = [convs_and_pools, activations_and_joins, with_unit]


def build(builder, rng):
    L = builder(rng)
    return randomize_bn(bf.Network.from_layers(L.layers, L.params), rng)


def test_every_layer_type_of_the_core_is_exported_and_tested(rng):
    with open(HEADER) as f:
        enum = re.search(r"typedef enum bf_layer_type \{(.*?)\} bf_layer_type;", f.read(), re.S)
    core = {t.lower() for t in re.findall(r"BF_LAYER_(\w+?)\b", enum.group(1))} - {"type_count_"}
    assert core - {"input"} == set(_EMIT)
    tested = {L["type"] for b in BUILDERS for L in b(rng).layers}
    assert tested == core


@pytest.mark.parametrize("builder", BUILDERS)
def test_all_gives_the_logits_of_forward(builder, rng):
    net = build(builder, rng)
    x = (rng.standard_normal((3, *net.input_shape)) * 2).astype(np.float32)
    assert_close(run_all(net, x), net.forward(x), 1e-4)


@pytest.mark.parametrize("opset", [14, 18, 21])
def test_opsets(opset, rng):
    # 18 moved ReduceMin / ReduceMax's axes from an attribute to an input
    net = build(with_unit, rng)
    x = rng.standard_normal((2, *net.input_shape)).astype(np.float32)
    model = to_onnx(net, "all", opset)
    assert model.opset_import[0].version == opset
    assert_close(run_all(net, x, opset), net.forward(x), 1e-4)


def test_a_linear_output_feeding_feature_map_layers(rng):
    # a linear gives (N, O) in ONNX, (O, 1, 1) in the core: the export reshapes it where a
    # layer needs NCHW.  The core's plans do not run such a network yet, so the NumPy
    # reference is the judge.
    L = LayerList((6, 7, 5), seed=4)
    g = L.conv(8, 1, 1, bias=True)
    L.global_avgpool()
    lin = L.linear(8)
    L.mul(g, lin)        # per channel, the linear second
    L.mul(L.last, g)
    L.add(lin, L.global_avgpool())
    L.concat([L.last, lin])
    L.conv(4, 1, 1, bias=True)
    L.linear(3)
    bias(L, rng)
    net = bf.Network.from_layers(L.layers, L.params)
    x = rng.standard_normal((2, 6, 7, 5)).astype(np.float32)
    assert_close(run_all(net, x), reference.run(L.layers, L.params, x).reshape(2, -1), 1e-4)


def unit_only():
    """image -> quantize -> dequantize: the exported quantizer against the core's, on the
    same floats."""
    L = LayerList((3, 5, 7))
    L.part = "reduce"
    L.simple("quantize", name="q")
    L.part = "restore"
    L.simple("dequantize", name="dq")
    return bf.Network.from_layers(L.layers, L.params)


def test_the_quantizer_gives_the_cores_bytes(rng):
    net = unit_only()
    x = (rng.standard_normal((5, 3, 5, 7)) * 3).astype(np.float32)
    x[2] = 1.5  # a constant image: everything maps to min, the ranges equal
    x[3] = (np.arange(105) / 2).reshape(3, 5, 7)  # inv = 1: ties at every other value
    x[3, 2, 4, 6] = 255.0
    x[4, :, :, :4] = -7.25  # ties of the minimum
    q, r = session(net, "mobile").run(None, {"image": x})
    pay = net.mobile(x)
    assert q.dtype == np.uint8 and r.dtype == np.float32 and r.shape == (5, 2)
    np.testing.assert_array_equal(q, pay.data)
    np.testing.assert_array_equal(r, pay.ranges)
    back = session(net, "cloud").run(None, {"payload": q, "ranges": r})[0]
    np.testing.assert_array_equal(back, net.cloud(pay))
    np.testing.assert_array_equal(run_all(net, x), net.forward(x))


def test_not_dynamic_quantize_linear(rng):
    # DynamicQuantizeLinear forces 0 into the range and rounds half to even: our quantizer
    # must appear as plain ops, so a runtime cannot swap in its own
    ops = {n.op_type for n in to_onnx(unit_only(), "all").graph.node}
    assert not ops & {"QuantizeLinear", "DynamicQuantizeLinear", "DequantizeLinear"}
    assert {"ReduceMin", "ReduceMax", "Floor", "Clip", "Cast"} <= ops


@pytest.fixture(scope="module")
def resnet():
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                      butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    return randomize_bn(net, np.random.default_rng(7))


def test_resnet18_all_mobile_cloud(resnet, rng):
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    assert_close(run_all(resnet, x), resnet.forward(x), 1e-4)
    pay = resnet.mobile(x)
    q, r = session(resnet, "mobile").run(None, {"image": x})
    assert q.shape == pay.data.shape == (4, 2, 14, 14)
    # the head's float rounding differs between the runtimes: a value on a rounding edge
    # may land one step away
    diff = np.abs(q.astype(np.int16) - pay.data)
    assert diff.max() <= 1 and np.mean(diff) <= 0.01
    np.testing.assert_allclose(r, pay.ranges, rtol=1e-5, atol=1e-6)
    cloud = session(resnet, "cloud")
    assert_close(cloud.run(None, {"payload": pay.data, "ranges": pay.ranges})[0],
                 resnet.cloud(pay), 1e-4)
    # the batch axis is dynamic
    one = cloud.run(None, {"payload": pay.data[1:2], "ranges": pay.ranges[1:2]})[0]
    assert_close(one, resnet.cloud(pay)[1:2], 1e-4)


def test_names_and_initializers(resnet):
    model = to_onnx(resnet, "mobile")
    g = model.graph
    assert [i.name for i in g.input] == ["image"]
    assert [o.name for o in g.output] == ["payload", "ranges"]
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    inits = {t.name: t for t in g.initializer}
    assert tuple(inits["stem.conv.weight"].dims) == (8, 1, 3, 3)
    assert "reduce.channel.bn.running_var" in inits and "fc.weight" not in inits
    assert {n.name for n in g.node} >= {"stem.conv", "rb1.add", "reduce.channel.relu"}
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {"butterfly.hash": resnet.hash, "butterfly.part": "mobile"}
    cloud = to_onnx(resnet, "cloud").graph
    assert [i.name for i in cloud.input] == ["payload", "ranges"]
    assert "stem.conv.weight" not in {t.name for t in cloud.initializer}


def test_export_writes_a_file(resnet, tmp_path, rng):
    path = tmp_path / "cloud.onnx"
    bf.export_onnx(resnet, path, part="cloud")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    pay = resnet.mobile(rng.random((2, 1, 28, 28), dtype=np.float32))
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"payload": pay.data, "ranges": pay.ranges})[0]
    assert_close(out, resnet.cloud(pay), 1e-4)


def test_a_softmax_output_is_named_probabilities(rng):
    net = build(activations_and_joins, rng)
    assert [o.name for o in to_onnx(net).graph.output] == ["probabilities"]


# --- errors ----------------------------------------------------------------------------------


def plain():
    return bf.resnet18(small=True, num_classes=10, in_channels=1, width=4, input_size=8)


@pytest.mark.parametrize("part", ["head", "", None, "ALL"])
def test_a_bad_part_is_refused(part):
    with pytest.raises(bf.InvalidArgument, match="part must be 'all', 'mobile' or 'cloud'"):
        to_onnx(plain(), part)


@pytest.mark.parametrize("part", ["mobile", "cloud"])
def test_a_plain_network_has_no_halves(part, tmp_path):
    with pytest.raises(bf.InvalidArgument, match="no butterfly unit.*export part='all'"):
        bf.export_onnx(plain(), tmp_path / "x.onnx", part=part)
    assert not (tmp_path / "x.onnx").exists()
    onnx.checker.check_model(to_onnx(plain(), "all"))


def test_an_unwritable_path_is_a_file_error(tmp_path):
    with pytest.raises(bf.FileError, match="cannot write"):
        bf.export_onnx(plain(), tmp_path / "no" / "such" / "dir.onnx")
    with pytest.raises(bf.FileError, match="cannot write"):
        bf.export_onnx(plain(), tmp_path)  # a directory


def test_bad_opset_and_network():
    with pytest.raises(bf.InvalidArgument, match="opset must be in"):
        to_onnx(plain(), opset=11)
    with pytest.raises(TypeError, match="opset must be an int"):
        to_onnx(plain(), opset="17")
    with pytest.raises(TypeError, match="net must be a butterfly.Network"):
        to_onnx("model.bfly")


def test_a_half_loaded_model_exports_only_its_half(resnet, tmp_path):
    resnet.save(tmp_path / "m.bfly")
    mobile = bf.load(tmp_path / "m.bfly", part="mobile")
    onnx.checker.check_model(to_onnx(mobile, "mobile"))
    for part in ("all", "cloud"):
        with pytest.raises(bf.InvalidArgument, match="loaded as its mobile half"):
            to_onnx(mobile, part)


# --- command line ---------------------------------------------------------------------------


def cli(*args):
    return subprocess.run([sys.executable, "-m", "butterfly.cli", "export", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_export(resnet, tmp_path, rng):
    resnet.save(tmp_path / "m.bfly")
    r = cli(tmp_path / "m.bfly", "--part", "mobile", "-o", tmp_path / "mobile.onnx")
    assert r.returncode == 0, r.stderr
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    sess = ort.InferenceSession(str(tmp_path / "mobile.onnx"),
                                providers=["CPUExecutionProvider"])
    q, _ = sess.run(None, {"image": x})
    assert np.abs(q.astype(np.int16) - resnet.mobile(x).data).max() <= 1
    r = cli(tmp_path / "m.bfly")  # the whole network, next to the model
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))


def test_cli_user_errors_are_one_line_and_exit_2(tmp_path):
    plain().save(tmp_path / "plain.bfly")
    for args in [(tmp_path / "plain.bfly", "--part", "cloud"),   # no unit
                 (tmp_path / "missing.bfly",),                   # no such model
                 (tmp_path / "plain.bfly", "-o", tmp_path),       # unwritable
                 (tmp_path / "plain.bfly", "--opset", "9")]:
        r = cli(*args, "-o", tmp_path / "out.onnx") if "-o" not in args else cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert r.stderr.startswith("butterfly export: ")
