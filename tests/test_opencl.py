"""The OpenCL mobile half against the oneDNN path, op by op and on whole ResNets.

Float outputs must agree to 1e-4 relative; payloads must be byte-equal except for rare
1-LSB differences where the float feature (computed in a different summation order) sits
on a rounding boundary of the quantizer.  Those are counted, asserted rare and reported.
Skips cleanly where the build has no OpenCL backend or the machine no OpenCL device.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close

import butterfly as bf
from butterfly import _C
from butterfly.network import LayerList, Network, layer_info

opencl = pytest.importorskip("butterfly.network.opencl")
if not hasattr(_C, "ClPlan"):
    pytest.skip("this build has no OpenCL backend", allow_module_level=True)
if not opencl.available():
    pytest.skip("skipped: no OpenCL device", allow_module_level=True)

LSB_MAX_FRACTION = 0.01  # at most 1 % of payload bytes may be 1 LSB off, none more


def randomize_bn(L, rng):
    """LayerList makes identity batch-norms; random ones exercise the folding."""
    for spec, params in zip(L.layers, L.params):
        if spec["type"] == "batchnorm":
            c = len(params[0])
            params[:] = [
                rng.uniform(0.5, 1.5, c).astype(np.float32),
                rng.uniform(-0.5, 0.5, c).astype(np.float32),
                rng.uniform(-0.5, 0.5, c).astype(np.float32),
                rng.uniform(0.5, 1.5, c).astype(np.float32),
            ]
        if spec["type"] == "conv" and spec.get("bias"):
            params[1] = rng.uniform(-0.5, 0.5, len(params[1])).astype(np.float32)


def network(L, rng):
    randomize_bn(L, rng)
    return Network.from_layers(L.layers, L.params)


def compare_payload(got, ref, what):
    """Returns (#1-LSB, total); asserts ranges close, no >1 differences, few 1-LSB ones."""
    np.testing.assert_allclose(got.ranges, ref.ranges, rtol=1e-4, atol=1e-5)
    diff = np.abs(got.data.astype(np.int16) - ref.data.astype(np.int16))
    n1, total = int((diff == 1).sum()), diff.size
    print(f"{what}: {n1} of {total} payload bytes 1 LSB off (fraction {n1 / total:.1e})")
    assert int((diff > 1).sum()) == 0, f"{what}: differences above 1 LSB"
    assert n1 <= LSB_MAX_FRACTION * total, f"{what}: {n1} of {total} bytes 1 LSB off"
    return n1, total


# ---- single ops ------------------------------------------------------------------------------

CONVS = [  # (c, h, w, out, k, stride, pad, dilation, groups, bias)
    (5, 9, 11, 12, 3, 1, 1, 1, 1, True),
    (16, 7, 5, 20, 1, 1, 0, 1, 1, False),
    (3, 23, 19, 8, 7, 2, 3, 1, 1, False),
    (8, 9, 9, 16, 1, 2, 0, 1, 1, True),
    (6, 11, 10, 6, 3, 2, 1, 1, 6, True),
    (8, 10, 7, 16, 3, 1, 1, 1, 2, False),
    (8, 10, 7, 8, 3, 1, 1, 1, 4, True),
    (4, 13, 12, 9, 3, 1, 2, 2, 1, True),
    (64, 6, 6, 1, 1, 1, 0, 1, 1, False),
]


@pytest.mark.parametrize("c,h,w,o,k,s,p,d,g,bias", CONVS)
def test_conv_matches_onednn(c, h, w, o, k, s, p, d, g, bias, rng):
    L = LayerList((c, h, w), seed=int(rng.integers(1 << 30)))
    L.conv(o, k, s, pad=p, dilation=d, groups=g, bias=bias)
    net = network(L, rng)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    assert_close(opencl.MobileHalf(net).head(x), net.head(x))


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_conv_bn_act_residual_fused(act, rng):
    L = LayerList((6, 15, 13))
    a = L.conv_bn(10, 3, 2, name="a")
    sc = L.conv(10, 1, 2, pad=0, src=0, name="sc")
    sc = L.bn(src=sc, name="sc.bn")
    L.conv(10, 3, 1, src=a, name="b")
    L.bn(name="b.bn")
    L.add(L.last, sc, name="add")
    L.simple(act, name="out")
    net = network(L, rng)
    xs = rng.standard_normal((3, 6, 15, 13)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(xs), net.head(xs))
    prof = half.profile()
    assert len(prof) == 3 and all(e["kernel"].startswith("conv_") for e in prof)  # all fused
    assert prof[-1]["layers"] == ["b", "b.bn", "add", "out"]
    assert all(e["ms"] >= 0 for e in prof)


@pytest.mark.parametrize(
    "kind,k,s,p",
    [("maxpool", 3, 2, 1), ("avgpool", 3, 2, 1), ("avgpool", 2, 2, 0), ("maxpool", 2, 1, 0)],
)
def test_pool_matches_onednn(kind, k, s, p, rng):
    L = LayerList((5, 17, 14))
    L.pool(kind, k, s, p)
    net = network(L, rng)
    x = rng.standard_normal((2, 5, 17, 14)).astype(np.float32)
    assert_close(opencl.MobileHalf(net).head(x), net.head(x))


def test_eltwise_ops_match_onednn(rng):
    L = LayerList((5, 12, 9))
    a = L.pool("maxpool", 3, 1, 1)
    b = L.pool("avgpool", 3, 1, 1, src=0)
    L.add(a, b)
    L.bn()
    L.simple("relu6")
    L.upsample(2)
    L.relu()
    L.global_avgpool()
    net = network(L, rng)
    x = rng.standard_normal((3, 5, 12, 9)).astype(np.float32)
    assert_close(opencl.MobileHalf(net).head(x), net.head(x))


def test_quantizer_is_bit_exact(rng):
    """Quantizing the raw input: no arithmetic before it, so the bytes must be equal."""
    L = LayerList((3, 37, 29))
    L.part = "reduce"
    L.simple("quantize")
    L.part = "restore"
    L.simple("dequantize")
    net = network(L, rng)
    x = rng.standard_normal((4, 3, 37, 29)).astype(np.float32)
    x[1] = 0.75  # max == min
    x[2] *= 1e-3
    got, ref = opencl.MobileHalf(net).reduce(x), net.reduce(x)
    np.testing.assert_array_equal(got.ranges, ref.ranges)
    np.testing.assert_array_equal(got.data, ref.data)
    assert not got.data[1].any()


# ---- whole mobile halves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "after,channels,stride,spatial",
    [(1, 1, 1, "depthwise"), (3, 2, 2, "depthwise"), (5, 4, 2, "full"), (8, 8, 1, "depthwise")],
)
def test_resnet18_small_mobile_half(after, channels, stride, spatial, rng):
    net = bf.resnet18(
        small=True,
        num_classes=10,
        in_channels=1,
        seed=after,
        butterfly=bf.Butterfly(at=after, channels=channels, stride=stride, spatial=spatial),
    )
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    f = net.head(x)
    compare_payload(half.reduce(f), net.reduce(f), f"resnet18 RB{after} reduce")
    compare_payload(half.mobile(x), net.mobile(x), f"resnet18 RB{after} head+reduce")


@pytest.mark.parametrize("after,channels", [(1, 1), (4, 2), (8, 5)])
def test_resnet50_224_mobile_half(after, channels, rng):
    net = bf.resnet50(
        num_classes=100, butterfly=bf.Butterfly(at=after, channels=channels, stride=2)
    )
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    compare_payload(half.mobile(x), net.mobile(x), f"resnet50 RB{after} head+reduce")


def test_plain_network_whole_on_the_phone(rng):
    """No butterfly unit: the head is the whole classifier (linear + softmax included), the
    mobile-only baseline of the cost model."""
    L = LayerList((3, 20, 20))
    L.conv_bn(16, 3, 2, name="c1")
    L.global_avgpool()
    L.linear(10)
    L.relu()
    L.linear(5)
    L.simple("softmax")
    net = network(L, rng)
    x = rng.standard_normal((4, 3, 20, 20)).astype(np.float32)
    assert_close(opencl.MobileHalf(net).head(x), net.head(x))
    plain = bf.resnet18(small=True, num_classes=10, in_channels=1)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert_close(opencl.MobileHalf(plain).head(x), plain.head(x))


@pytest.mark.parametrize("after,channels", [(1, 64), (4, 128)])
def test_wide_payload_lsb_statistics(after, channels, rng):
    """Hundreds of thousands of payload bytes: 1-LSB differences appear (the float feature
    differs from oneDNN's in its last bits, and a few values sit on a rounding boundary),
    but only on a tiny fraction (measured ~1e-5) and never more than 1 LSB."""
    net = bf.resnet18(
        small=True,
        num_classes=10,
        in_channels=1,
        seed=after,
        butterfly=bf.Butterfly(at=after, channels=channels, stride=1),
    )
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    n1, total = compare_payload(
        opencl.MobileHalf(net).mobile(x), net.mobile(x), f"resnet18 RB{after} c'={channels}"
    )
    assert total >= 200_000 and n1 <= 1e-3 * total


def test_model_file_and_load(tmp_path, rng):
    net = bf.resnet18(
        small=True,
        num_classes=10,
        in_channels=1,
        butterfly=bf.Butterfly(at=2, channels=2, stride=2),
    )
    path = tmp_path / "net.bfly"
    net.save(path)
    half = bf.load(path, part="mobile", backend="opencl")
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    compare_payload(half.mobile(x), net.mobile(x), "loaded mobile half")
    assert "device" in half.device


# ---- API and errors --------------------------------------------------------------------------


def test_devices_listing():
    devs = opencl.devices()
    assert devs and {
        "index",
        "platform",
        "name",
        "type",
        "compute_units",
        "global_mem",
        "local_mem",
        "max_work_group",
    } <= set(devs[0])
    assert devs[0]["type"] in ("gpu", "cpu", "accelerator", "other")


def test_plan_io_and_errors(rng):
    net = bf.resnet18(
        small=True,
        num_classes=10,
        in_channels=1,
        butterfly=bf.Butterfly(at=1, channels=2, stride=2),
    )
    p = _C.ClPlan(net.model, 0, 1, 2)
    src, dst = p.io
    assert src == {"dtype": "float32", "shape": (2, 1, 28, 28), "quantized": False}
    assert dst["dtype"] == "uint8" and dst["quantized"] and dst["shape"][0] == 2
    with pytest.raises(bf.Unsupported, match="cloud-side"):
        _C.ClPlan(net.model, 0, 3, 1)
    with pytest.raises(bf.InvalidArgument):
        _C.ClPlan(net.model, 0, 1, 1, 1000)
    with pytest.raises(bf.InvalidArgument):
        p.forward(np.zeros((1, 1, 28, 28), np.float32))  # wrong batch
    with pytest.raises(bf.InvalidArgument):
        p.forward(np.zeros((2, 1, 28, 28), np.float64))  # wrong dtype


def test_non_finite_input_or_feature_is_refused_like_onednn(rng):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                      butterfly=bf.Butterfly(at=1, channels=1, stride=2))
    p = _C.ClPlan(net.model, 0, 1, 2)
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    bad = x.copy()
    bad[1, 0, 3, 4] = np.nan
    for plan in (p, net.plan(0, 1, 2)):  # OpenCL, then oneDNN: the same answer
        with pytest.raises(bf.NumericError, match="NaN or Inf"):
            plan.forward(bad)
        # finite input, the feature overflows (oneDNN names the layer where it does, OpenCL
        # finds it at the quantizer)
        with pytest.raises(bf.NumericError, match="NaN"):
            plan.forward(x * np.float32(3e38))


def test_device_index_checked_at_load(tmp_path):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                      butterfly=bf.Butterfly(at=1, channels=1, stride=2))
    path = tmp_path / "net.bfly"
    net.save(path)
    for bad in (len(opencl.devices()), -1, "0", 0.0):
        with pytest.raises(bf.InvalidArgument, match="device must be an index"):
            bf.load(path, part="mobile", backend="opencl", device=bad)
    assert bf.load(path, part="mobile", backend="opencl", device=0).device


def test_missing_opencl_library_is_a_clear_error():
    code = (
        "import butterfly as bf\nfrom butterfly import opencl\n"
        "assert opencl.devices() == []\n"
        "try:\n    bf._C.cl_devices()\nexcept bf.OpenCLError as e:\n    print(e)\n"
    )
    env = dict(os.environ, BF_OPENCL_LIBRARY="/nonexistent/libOpenCL.so.1")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "OpenCL is not available" in out.stdout


def test_two_threads_two_plans(rng):
    """The GIL is released while OpenCL runs: two plans on two threads give the same bytes
    as one after the other."""
    import threading

    net = bf.resnet18(
        small=True,
        num_classes=10,
        in_channels=1,
        butterfly=bf.Butterfly(at=2, channels=2, stride=2),
    )
    xs = [rng.standard_normal((2, 1, 28, 28)).astype(np.float32) for _ in range(2)]
    halves = [opencl.MobileHalf(net), opencl.MobileHalf(net)]
    want = [h.mobile(x) for h, x in zip(halves, xs)]
    got = [None, None]

    def work(i):
        for _ in range(3):
            got[i] = halves[i].mobile(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.data, w.data)
        np.testing.assert_array_equal(g.ranges, w.ranges)


def test_pool_classifies_opencl_payload_like_onednn(tmp_path):
    """The phone's half on OpenCL, the pool on oneDNN: the same answers as a oneDNN phone."""
    pytest.importorskip("zmq")
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                      butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    path = str(tmp_path / "net.bfly")
    net.save(path)
    _, test = bf.datasets.fashion_mnist(subset=32)
    old = bf._C.get_num_threads()
    bf.set_num_threads(1)
    try:
        with bf.serve(path, workers=1, bind="tcp://127.0.0.1:0", threads=1) as pool:
            cl = bf.Client(path, pool.endpoint, backend="opencl")
            dn = bf.Client(path, pool.endpoint)
            pay_cl, _ = cl.mobile(test.images)
            pay_dn, _ = dn.mobile(test.images)
            off = int(np.count_nonzero(pay_cl.data != pay_dn.data))
            assert off <= pay_dn.data.size // 1000  # at most a rare 1-LSB difference
            res_cl = cl.classify_payload(pay_cl, k=3)
            res_dn = dn.classify_payload(pay_dn, k=3)
    finally:
        bf.set_num_threads(old)
    # the payload bytes match; the float (min, max) may differ in the last bits, so the
    # probabilities agree to float precision and the classes exactly
    np.testing.assert_allclose(pay_cl.ranges, pay_dn.ranges, rtol=1e-5, atol=1e-6)
    assert [r.classes for r in res_cl] == [r.classes for r in res_dn]
    np.testing.assert_allclose([r.probs for r in res_cl], [r.probs for r in res_dn], atol=1e-5)


def test_a_nan_inside_the_feature_is_refused_like_onednn(rng):
    import test_ops

    net = test_ops._nan_feature_net()
    p = _C.ClPlan(net.model, 0, 1, 2)
    x = rng.random((2, 1, 4, 4), dtype=np.float32)
    p.forward(x)
    x[1, 0, 2, 3] = 3e38  # a NaN in the middle of the feature: fmin / fmax would skip it
    with pytest.raises(bf.NumericError, match="NaN/Inf"):
        p.forward(x)


# ---- layer types of imported CNNs: activations, mul, concat, asymmetric padding -------------

ACTS = [  # (type, alpha, beta): every activation the core has
    ("relu", None, None),
    ("relu6", None, None),
    ("sigmoid", None, None),
    ("swish", None, None),
    ("hardswish", None, None),
    ("hardsigmoid", 0.2, 0.5),
    ("clip", -0.5, 1.5),
    ("leaky_relu", 0.1, None),
]
CONV_FUSES = {"relu", "relu6", "sigmoid", "swish", "hardswish"}  # the conv epilogue's


def kernels(half):
    return [e["kernel"] for e in half.profile()]


@pytest.mark.parametrize("kind,alpha,beta", ACTS)
def test_activation_alone_matches_onednn(kind, alpha, beta, rng):
    L = LayerList((4, 9, 7))
    L.act(kind, alpha=alpha, beta=beta)
    net = network(L, rng)
    x = 4 * rng.standard_normal((2, 4, 9, 7)).astype(np.float32)  # past every knee
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    assert kernels(half) == ["affine_act"]


@pytest.mark.parametrize("kind,alpha,beta", ACTS)
def test_activation_after_a_conv_matches_onednn(kind, alpha, beta, rng):
    """Convs absorb the activations without parameters; the others follow as an affine."""
    L = LayerList((5, 11, 9))
    L.conv(12, 3, 1, bias=True)
    L.act(kind, alpha=alpha, beta=beta)
    L.conv(8, 3, 2, src=0)  # a second path: the strided tiles' epilogue
    L.bn()
    L.act(kind, alpha=alpha, beta=beta)
    net = network(L, rng)
    x = 2 * rng.standard_normal((2, 5, 11, 9)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    got = kernels(half)
    if kind in CONV_FUSES:
        assert got == ["conv_tiled_s1", "conv_tiled_s2"]
    else:
        assert got == ["conv_tiled_s1", "affine_act", "conv_tiled_s2", "affine_act"]


@pytest.mark.parametrize("kind,alpha,beta", ACTS)
def test_activation_after_bn_or_add_is_fused(kind, alpha, beta, rng):
    L = LayerList((4, 8, 10))
    a = L.bn(name="bn")
    L.act(kind, alpha=alpha, beta=beta, name="act")
    b = L.bn(src=0)
    L.add(a + 1, b)
    L.act(kind, alpha=alpha, beta=beta)
    net = network(L, rng)
    x = 3 * rng.standard_normal((3, 4, 8, 10)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    assert kernels(half) == ["affine_act", "affine_act", "add_act"]
    assert half.profile()[0]["layers"] == ["bn", "act"]


def test_mul_same_shape_and_per_channel(rng):
    """Squeeze-and-excitation: x * sigmoid(conv(relu(conv(gap(x))))), and a plain product
    of two branches."""
    L = LayerList((6, 9, 11))
    x = L.conv(8, 3, 1)
    L.global_avgpool()
    L.conv(4, 1, 1, bias=True)
    L.relu()
    L.conv(8, 1, 1, bias=True)
    s = L.act("sigmoid")
    se = L.mul(x, s)
    other = L.conv(8, 3, 1, src=0)
    L.mul(se, other)
    net = network(L, rng)
    xs = rng.standard_normal((3, 6, 9, 11)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(xs), net.head(xs))
    assert kernels(half).count("mul_bcast") == 2


@pytest.mark.parametrize("n", [2, 5])
def test_concat_matches_onednn(n, rng):
    """Sources of different channel counts, the image among them, read again after the
    concat (their buffers must live until their last reader)."""
    L = LayerList((3, 10, 9))
    srcs = [0]
    for i in range(1, n):
        srcs.append(L.conv(2 + i, 3, 1, src=0) if i % 2 else L.pool("maxpool", 3, 1, 1, src=0))
    cat = L.concat(srcs)
    L.conv(5, 1, 1, src=cat)
    L.concat([L.last, srcs[-1], 0])
    net = network(L, rng)
    x = rng.standard_normal((2, 3, 10, 9)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    assert kernels(half).count("concat_copy") == 2


def test_concat_source_lives_until_the_concat(rng):
    """b is read by the pool, then by the concat as its second source: its buffer must not
    be handed to q (the same size) in between."""
    L = LayerList((3, 10, 9))
    b = L.conv(4, 3, 1)
    p = L.pool("maxpool", 3, 1, 1)
    q = L.conv(4, 3, 1, src=0)
    L.concat([p, b, q])
    net = network(L, rng)
    x = rng.standard_normal((2, 3, 10, 9)).astype(np.float32)
    assert_close(opencl.MobileHalf(net).head(x), net.head(x))


def set_pads(L, i, pad, pad_end):
    """Layer i's padding: (top, left) and (bottom, right), e.g. ONNX's SAME_UPPER."""
    spec = L.layers[i]
    spec.update(pad=list(pad), pad_end=list(pad_end))
    dims = layer_info(spec, i, [L.shapes[j] for j in spec["inputs"]])["out_dims"]
    L.shapes[i] = tuple(dims)


ASYM_CONVS = [  # (c, h, w, out, k, stride, groups, pad, pad_end, the kernel that runs it)
    (5, 9, 11, 12, 3, 1, 1, (1, 1), (0, 2), "conv_tiled_s1"),
    (3, 23, 19, 8, 7, 2, 1, (3, 2), (2, 3), "conv_tiled_s2"),
    (16, 7, 5, 20, 1, 1, 1, (0, 0), (1, 1), "conv_tiled_s1"),  # 1x1 no longer plain GEMM
    (8, 9, 9, 16, 1, 2, 1, (0, 0), (1, 0), "conv_tiled_s2"),
    (4, 14, 13, 8, 3, 3, 1, (1, 0), (2, 1), "conv_gemm"),  # im2col
    (4, 13, 11, 4, 3, 3, 4, (0, 1), (1, 2), "conv_direct"),
    (5, 20, 35, 5, 5, 1, 5, (2, 1), (1, 3), "conv_dw_s1"),
    (6, 11, 10, 6, 3, 2, 6, (0, 0), (1, 1), "conv_dw_s2"),
]


@pytest.mark.parametrize("c,h,w,o,k,s,g,pad,pad_end,kernel", ASYM_CONVS)
def test_conv_asymmetric_padding_matches_onednn(c, h, w, o, k, s, g, pad, pad_end, kernel,
                                                rng):
    L = LayerList((c, h, w), seed=int(rng.integers(1 << 30)))
    set_pads(L, L.conv(o, k, s, groups=g, bias=True), pad, pad_end)
    net = network(L, rng)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    assert kernels(half) == [kernel]


ASYM_POOLS = [  # (kind, k, stride, pad, pad_end, kernel)
    ("maxpool", 3, 2, (0, 0), (1, 1), "maxpool_s2"),
    ("maxpool", 2, 1, (0, 1), (1, 0), "maxpool_s1"),
    ("maxpool", 3, 3, (1, 0), (0, 1), "maxpool"),
    ("avgpool", 3, 2, (0, 1), (1, 0), "avgpool"),  # padding excluded from the mean
    ("avgpool", 2, 2, (0, 0), (1, 1), "avgpool"),
]


@pytest.mark.parametrize("kind,k,s,pad,pad_end,kernel", ASYM_POOLS)
def test_pool_asymmetric_padding_matches_onednn(kind, k, s, pad, pad_end, kernel, rng):
    L = LayerList((5, 16, 13))
    set_pads(L, L.pool(kind, k, s), pad, pad_end)
    net = network(L, rng)
    x = rng.standard_normal((2, 5, 16, 13)).astype(np.float32)
    half = opencl.MobileHalf(net)
    assert_close(half.head(x), net.head(x))
    assert kernels(half) == [kernel]


@pytest.mark.parametrize("build", [lambda L: L.act("swish"), lambda L: L.mul(0, 0),
                                   lambda L: L.concat([0, 0]),
                                   lambda L: L.conv(4, 3, 2, pad=0, pad_end=1)])
def test_layers_of_imported_cnns_run_on_opencl(build, rng):
    """These were refused (UNSUPPORTED) before the backend had kernels for them."""
    L = LayerList((3, 8, 8))
    build(L)
    net = network(L, rng)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert_close(opencl.MobileHalf(net).head(x), net.head(x))


# --- the mobile half is the composition of its parts -----------------------------------------

# blocks (0-based) of test_exact.configs, two per network: every c', s and batch is met
# (OpenCL plans cost ~0.3 s each to build on PoCL, so not every block as in test_exact)
CL_BLOCKS = {(18, True): (2, 7), (18, False): (1, 4), (34, True): (2, 13),
             (34, False): (3, 8), (50, True): (6, 15), (50, False): (1, 12)}


@pytest.mark.parametrize("small", [True, False], ids=["small", "imagenet"])
@pytest.mark.parametrize("depth", [18, 34, 50])
def test_mobile_is_reduce_of_head_bit_for_bit(depth, small, tmp_path):
    """What the phone runs in one plan is exactly its two parts run one after the other,
    from the model file's mobile half."""
    import test_exact

    rng = np.random.default_rng(depth)
    size = 16 if small else 32
    every = list(test_exact.configs(depth))
    for after, channels, stride, batch in (every[k] for k in CL_BLOCKS[depth, small]):
        net = bf.resnet(depth, small=small, input_size=size, num_classes=10, in_channels=1,
                        width=8, seed=after,
                        butterfly=bf.Butterfly(at=after, channels=channels, stride=stride))
        test_exact.randomize(net, rng)
        x = rng.standard_normal((batch, 1, size, size)).astype(np.float32)
        net.save(tmp_path / "net.bfly")
        half = bf.load(tmp_path / "net.bfly", part="mobile", backend="opencl")
        whole = half.mobile(x)
        parts = half.reduce(half.head(x))
        what = f"resnet{depth} small={small} after RB{after} c'={channels} s={stride}"
        np.testing.assert_array_equal(whole.data, parts.data, err_msg=what)
        np.testing.assert_array_equal(whole.ranges, parts.ranges, err_msg=what)


def test_mobile_no_fusion_across_the_cut(rng):
    """A head ending in a bare conv, a reduce part starting with the batch-norm + ReLU that
    would fuse into it: mobile() still equals reduce(head())."""
    import test_exact

    half = opencl.MobileHalf(test_exact.cut_between_fusable_layers())
    x = rng.standard_normal((3, 4, 8, 8)).astype(np.float32)
    whole, parts = half.mobile(x), half.reduce(half.head(x))
    np.testing.assert_array_equal(whole.data, parts.data)
    np.testing.assert_array_equal(whole.ranges, parts.ranges)
