"""Every layer family, forward, against the NumPy reference in tests/reference.py."""

import numpy as np
import pytest
import reference
from conftest import assert_close

import butterfly as bf
from butterfly.network import LayerList


def randomize_bn(L, rng):
    for spec, params in zip(L.layers, L.params):
        if spec["type"] == "batchnorm":
            c = len(params[0])
            params[0][:] = rng.uniform(0.5, 1.5, c)
            params[1][:] = rng.normal(0, 0.5, c)
            params[2][:] = rng.normal(0, 0.5, c)
            params[3][:] = rng.uniform(0.5, 2.0, c)


def check(L, rng, n=2, rtol=1e-4):
    net = bf.Network.from_layers(L.layers, L.params)
    x = rng.standard_normal((n, *L.shapes[0])).astype(np.float32)
    out = net.head(x)
    ref = reference.run(L.layers, L.params, x)
    assert_close(out.reshape(ref.shape), ref, rtol)
    return net, x


CONV_CASES = [
    # c_in, c_out, k, stride, pad, dilation, groups, bias, h, w
    (3, 8, 3, 1, 1, 1, 1, True, 9, 9),
    (3, 16, 7, 2, 3, 1, 1, False, 23, 19),
    (16, 32, 1, 2, 0, 1, 1, False, 13, 11),
    (16, 16, 3, 2, 1, 1, 16, True, 14, 15),  # depthwise
    (8, 12, 3, 1, 2, 2, 4, False, 10, 7),   # grouped + dilated
    (5, 7, 5, 3, 2, 1, 1, True, 17, 12),
    (1, 4, 2, 2, 0, 1, 1, True, 8, 9),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv(case, rng):
    ci, co, k, s, p, d, g, b, h, w = case
    L = LayerList((ci, h, w))
    L.conv(co, k, s, pad=p, dilation=d, groups=g, bias=b)
    if b:
        L.params[-1][1][:] = rng.normal(0, 1, co)
    check(L, rng)


DECONV_CASES = [
    # c_in, c_out, k, stride, pad, output_pad, groups, h, w
    (4, 6, 3, 2, 1, 1, 1, 7, 5),
    (8, 8, 3, 2, 1, 0, 8, 6, 6),
    (3, 5, 2, 2, 0, 0, 1, 5, 4),
    (6, 4, 4, 2, 1, 0, 2, 3, 5),
    (2, 3, 3, 1, 1, 0, 1, 9, 8),
]


@pytest.mark.parametrize("case", DECONV_CASES)
def test_deconv(case, rng):
    ci, co, k, s, p, op, g, h, w = case
    L = LayerList((ci, h, w))
    L.conv(co, k, s, pad=p, groups=g, bias=True, deconv=True, output_pad=op)
    L.params[-1][1][:] = rng.normal(0, 1, co)
    check(L, rng)


@pytest.mark.parametrize("relu", ["relu", "relu6", None])
def test_conv_bn_relu_fused(relu, rng):
    L = LayerList((6, 11, 10))
    L.conv(9, 3, 2)
    L.bn()
    if relu:
        L.simple(relu)
    randomize_bn(L, rng)
    check(L, rng)


def test_conv_bn_add_relu_fused(rng):
    """The residual pattern: conv+BN+sum+ReLU into one primitive writing into the shortcut."""
    L = LayerList((16, 9, 9))
    x = L.conv_bn(16, 3, 1, name="a")
    y = L.conv_bn(16, 3, 1, relu=False, name="b")
    L.add(y, x)
    L.relu()
    z = L.conv_bn(32, 3, 2, relu=False, name="c")
    sc = L.conv_bn(32, 1, 2, src=L.last - 3, relu=False, name="d", pad=0)
    L.add(sc, z)
    L.relu()
    randomize_bn(L, rng)
    check(L, rng)


def test_batchnorm_alone(rng):
    L = LayerList((5, 7, 6))
    L.relu()
    L.bn()
    L.relu()
    L.bn()
    randomize_bn(L, rng)
    check(L, rng)


@pytest.mark.parametrize("kind,k,s,p", [("maxpool", 3, 2, 1), ("maxpool", 2, 2, 0),
                                         ("avgpool", 3, 2, 1), ("avgpool", 3, 1, 1),
                                         ("avgpool", 2, 2, 0), ("maxpool", 3, 1, 0)])
def test_pool(kind, k, s, p, rng):
    L = LayerList((3, 13, 10))
    L.pool(kind, k, s, p)
    check(L, rng)


def test_global_avgpool_linear_softmax(rng):
    L = LayerList((8, 5, 7))
    L.global_avgpool()
    L.linear(10)
    L.linear(4)
    L.simple("softmax")
    check(L, rng, n=3)


def test_linear_from_feature_map(rng):
    L = LayerList((3, 4, 5))
    L.linear(7)
    check(L, rng, n=2)


def test_relu_relu6_add_upsample(rng):
    L = LayerList((4, 6, 5))
    a = L.simple("relu6")
    b = L.relu(src=0)
    L.add(a, b)
    L.upsample(2)
    L.simple("relu6")
    x = check(L, rng)[1]
    assert x.shape == (2, 4, 6, 5)


def test_quantize_dequantize(rng):
    L = LayerList((3, 5, 7))
    L.part = "reduce"
    L.simple("quantize")
    L.part = "restore"
    L.simple("dequantize")
    net = bf.Network.from_layers(L.layers, L.params)
    x = (rng.standard_normal((4, 3, 5, 7)) * 3).astype(np.float32)
    x[2] = 1.5  # a constant image: scale 0, everything maps to min
    pay = net.reduce(x)
    q_ref, r_ref = reference.quantize(x)
    np.testing.assert_array_equal(pay.data, q_ref)
    np.testing.assert_array_equal(pay.ranges, r_ref)
    back = net.restore(pay)
    np.testing.assert_array_equal(back, reference.dequantize(q_ref, r_ref))
    # the error of an 8-bit round trip is at most half a step
    step = (r_ref[:, 1] - r_ref[:, 0]) / 255
    assert np.all(np.abs(back - x).reshape(4, -1).max(axis=1) <= step / 2 + 1e-6)


def test_training_plan_backward_needs_a_forward_and_keeps_its_input(rng):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                      butterfly=bf.Butterfly(at=1, channels=1, stride=2))
    plan = net.plan(0, 3, 2, training=True)
    g = rng.standard_normal((2, 10, 1, 1)).astype(np.float32)
    with pytest.raises(bf.InvalidArgument, match="no forward"):
        plan.backward(g)  # nothing to differentiate (this crashed)
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    first = plan.trained()[0]  # the first convolution: its weight gradient reads the input
    plan.forward(x)
    plan.backward(g)
    want = plan.param_grad(*first)
    plan.forward(x)
    x[:] = rng.random(x.shape, dtype=np.float32)  # the caller reuses its buffer
    plan.backward(g)
    np.testing.assert_array_equal(plan.param_grad(*first), want)
    x[0, 0, 0, 0] = np.nan  # a forward that fails leaves nothing to differentiate either
    with pytest.raises(bf.NumericError):
        plan.forward(x)
    with pytest.raises(bf.InvalidArgument, match="no forward"):
        plan.backward(g)


def test_non_finite_weights_are_not_saved(rng, tmp_path):
    # training that diverges leaves Inf / NaN weights: the reader refuses such a file, so
    # the writer refuses to write it (it wrote one that would not load back)
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8)
    plan = net.plan(0, 0, 2, training=True)
    out = plan.forward(rng.random((2, 1, 28, 28), dtype=np.float32))
    plan.backward(np.full(out.shape, 1e3, np.float32))
    plan.sgd_step(3e38, 0.0, 0.0)
    plan.sync()
    with pytest.raises(bf.NumericError, match="NaN or Inf, not saved"):
        net.save(tmp_path / "diverged.bfly")
    assert not (tmp_path / "diverged.bfly").exists()
    with pytest.raises(bf.NumericError):
        net.to_bytes()


def _nan_feature_net():
    """head: +2x and -2x of the input, added: 3e38 there overflows to +inf + -inf = NaN,
    in the middle of a feature whose other values are finite; then the quantizer."""
    L = LayerList((1, 4, 4))
    a = L.conv(1, 1, src=0)
    b = L.conv(1, 1, src=0)
    L.params[a][0][:] = 2.0
    L.params[b][0][:] = -2.0
    L.add(a, b)
    L.part = "reduce"
    L.simple("quantize")
    L.part = "restore"
    L.simple("dequantize")
    return bf.Network.from_layers(L.layers, L.params)


def test_a_nan_inside_the_feature_is_refused_by_the_quantizer(rng):
    net = _nan_feature_net()
    x = rng.random((2, 1, 4, 4), dtype=np.float32)
    net.mobile(x)  # finite: fine
    x[1, 0, 2, 3] = 3e38  # not the first value: the min / max comparisons skip a NaN
    # inference refuses it where it arises (the add); a training plan checks no layer's
    # output but its quantizer's input
    with pytest.raises(bf.NumericError, match="NaN or Inf"):
        net.mobile(x)
    with pytest.raises(bf.NumericError, match="NaN/Inf"):
        bf._C.Plan(net.model, 0, 1, 2, True).forward(x)



def _overflow_then(reader, sign):
    """sign * 3e38 doubled by an add (an output of its own, not fused into the conv before it)
    overflows to sign * Inf at pixel (1, 1), where the input is 1e10, and is read by `reader`;
    the rest stays finite."""
    L = LayerList((1, 6, 6))
    c = L.conv(2, 1, 1, bias=True)
    L.params[c][0][:] = sign * 3e28
    a = L.add(c, c)
    if reader == "conv":           # carries it: a is not scanned, the conv's output is
        L.conv(3, 3, 1)
    elif reader == "conv_relu6":   # the fused ReLU6 maps Inf to 6: a is scanned
        L.conv(3, 3, 1)
        L.act("relu6")
    elif reader == "strided_conv":  # a stride-2 1x1 conv never reads pixel (1, 1)
        L.conv(3, 1, 2)
    elif reader == "maxpool":      # the max drops -Inf
        L.pool("maxpool", 2, 2)
    elif reader == "avgpool":
        L.pool("avgpool", 2, 2)
    elif reader in ("sigmoid", "swish", "relu"):
        L.act(reader)
    elif reader == "se":           # squeeze-and-excitation: pool, conv, sigmoid, mul
        L.global_avgpool()
        L.conv(2, 1, 1)
        s = L.act("sigmoid")
        L.mul(a, s)
    elif reader == "linear":
        L.linear(4)
    x = np.full((2, 1, 6, 6), 0.5, np.float32)
    x[1, 0, 1, 1] = 1e10
    return bf.Network.from_layers(L.layers, L.params), x


@pytest.mark.parametrize("reader", ["conv", "conv_relu6", "strided_conv", "maxpool", "avgpool",
                                    "sigmoid", "swish", "relu", "se", "linear"])
@pytest.mark.parametrize("sign", [1, -1])
def test_an_overflow_is_refused_whatever_reads_it(reader, sign):
    # inference scans only the outputs a later node could hide a NaN or Inf in; one that
    # arises in another output must still be refused, further on
    net, x = _overflow_then(reader, sign)
    net.forward(x[:1])  # finite: fine
    with pytest.raises(bf.NumericError, match="NaN or Inf"):
        net.forward(x)


def _past_float32(kind):
    """An input of ones and one pixel of -1e30 (a bound of 1e30, below the limit where the
    bound analysis gives up), which `kind` multiplies past float32's range, to -Inf there;
    a max-pool (a softmax after a linear layer) reading the result drops -Inf.  Only the
    layer's bound passing its limit has its output scanned: a bound too small would let the
    overflow through unseen."""
    L = LayerList((1, 4, 4))
    if kind in ("conv", "deconv"):
        c = L.conv(1, 1, deconv=kind == "deconv")
        L.params[c][0][:] = 1e10
    elif kind == "batchnorm":
        L.params[L.bn()][0][:] = 1e10
    elif kind == "leaky_relu":
        L.act("leaky_relu", alpha=1e10)
    elif kind == "mul":  # x * (-1e5 x): -1e65 at the pixel
        y = L.conv(1, 1, src=0)
        L.params[y][0][:] = -1e5
        L.mul(0, y)
    if kind == "linear":  # logits (-Inf, 0): softmax (0, 1)
        c = L.linear(2)
        L.params[c][0][0] = 1e10
        L.params[c][0][1] = 0
        L.params[c][1][:] = 0
        L.simple("softmax")
    else:
        L.pool("maxpool", 2, 2)
    x = np.ones((2, 1, 4, 4), np.float32)
    x[1, 0, 1, 1] = -1e30
    return bf.Network.from_layers(L.layers, L.params), x


@pytest.mark.parametrize("kind", ["conv", "deconv", "batchnorm", "leaky_relu", "mul", "linear"])
def test_an_overflow_past_a_layers_bound_is_refused(kind):
    net, x = _past_float32(kind)
    out = net.forward(x[:1])  # bounded: nothing scanned
    assert np.isfinite(out).all() and net.plans.last.scans == 0
    with pytest.raises(bf.NumericError, match="NaN or Inf"):
        net.forward(x)


def test_a_clipped_network_is_scanned_only_past_its_bounds(rng):
    # ReLU6 after every conv bounds each output by 6: MobileNetV2's pattern needs no scan;
    # an input large enough that the first conv's bound passes the limit has the outputs a
    # ReLU6 reads scanned again (as without bounds), the results unchanged
    L = LayerList((3, 8, 8))
    first = L.conv(8, 3, bias=True)
    L.params[first][0][:] = 1.0  # a bound of 27 * |x|
    L.act("relu6")
    L.conv(8, 3, groups=8)
    L.act("relu6")
    L.conv(16, 1)
    L.act("relu6")
    L.global_avgpool()
    L.linear(5)
    net = bf.Network.from_layers(L.layers, L.params)
    for scale, scanned in ((1.0, False), (1e35, True)):
        x = (rng.standard_normal((2, 3, 8, 8)) * scale).astype(np.float32)
        out = net.forward(x)
        assert_close(out, reference.run(L.layers, L.params, x).reshape(out.shape), 1e-4)
        assert (net.plans.last.scans > 0) == scanned


def test_a_scan_restarts_the_bounds_from_what_it_measured(rng):
    # 60 ReLU convs of 16 channels whose weights are +-0.35: each multiplies the bound by
    # 16 * 0.35 = 5.6, the values themselves by about 1; the bound passes its limit at the
    # 48th, whose output is scanned; the bounds after it start from its largest value and
    # stay below the limit to the end: one scan, where every output would be scanned
    # without bounds and the last 13 without the restart
    L = LayerList((16, 4, 4))
    for _ in range(60):
        c = L.conv(16, 1)
        L.params[c][0][:] = 0.35 * rng.choice([-1.0, 1.0], L.params[c][0].shape)
        L.relu()
    net = bf.Network.from_layers(L.layers, L.params)
    x = rng.standard_normal((2, 16, 4, 4)).astype(np.float32)
    out = net.forward(x)
    assert_close(out, reference.run(L.layers, L.params, x).reshape(out.shape), 1e-4)
    assert net.plans.last.scans == 1


ACTS = [("sigmoid", {}), ("swish", {}), ("hardswish", {}),
        ("hardsigmoid", {"alpha": 1 / 6, "beta": 0.5}), ("hardsigmoid", {"alpha": 0.2, "beta": 0.5}),
        ("clip", {"alpha": -1.5, "beta": 2.0}), ("leaky_relu", {"alpha": 0.1}),
        ("relu", {}), ("relu6", {})]


@pytest.mark.parametrize("kind,kw", ACTS)
def test_activation_alone_and_fused_into_a_conv(kind, kw, rng):
    L = LayerList((5, 9, 8))
    L.act(kind, **kw)  # alone (the source is the image)
    L.conv(7, 3, 2, bias=True)
    L.params[-1][1][:] = rng.normal(0, 1, 7)
    L.act(kind, **kw)  # absorbed by the conv as a post-op
    L.bn()
    L.act(kind, **kw)  # after a batch-norm: alone, except ReLU, which the batch-norm fuses
    randomize_bn(L, rng)
    net, x = check(L, rng)
    x *= 4  # reach the clipping ranges
    ref = reference.run(L.layers, L.params, x)
    assert_close(net.head(x).reshape(ref.shape), ref, 1e-4)


def _cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_swish_kernels_agree_bit_for_bit_and_with_float64(rng):
    """Inference runs swish by its own kernel (bf_swish): AVX-512, AVX2 and C give the same
    bits, wherever an element sits (the tail past the last whole vector included), within
    5e-7 of float64's x / (1 + e^-x); NaN, Inf and the far tails as x * sigmoid(x) has them."""
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, 0.5, -0.5, 79.9, -79.9, 80.0,
                        -80.0, 80.5, -80.5, 88.7, -88.7, 100.0, -100.0, 1e30, -1e30, np.inf,
                        -np.inf, np.nan], np.float32)
    x = np.concatenate([special, rng.uniform(-90, 90, 4000), 4 * rng.standard_normal(4000)])
    x = x.astype(np.float32)
    flags = _cpu_flags()
    want = {"avx512": "avx512f" in flags, "avx2": {"avx2", "fma"} <= flags, "scalar": True}
    y = bf._C.swish(x, "scalar")
    for kernel, runs in want.items():
        if not runs:
            with pytest.raises(bf._C.Unsupported):
                bf._C.swish(x, kernel)
            continue
        assert bf._C.swish(x, kernel).tobytes() == y.tobytes(), kernel
        for at in (1, 7, 15, 17, 31):  # every position against the vector width
            assert bf._C.swish(x[at:], kernel).tobytes() == y[at:].tobytes(), (kernel, at)
    assert bf._C.swish(x).tobytes() == y.tobytes()
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x64 / (1 + np.exp(-x64))
    near = np.isfinite(x64) & (x64 >= -80)
    assert np.all(np.abs(y[near] - ref[near]) <= 5e-7 * np.abs(ref[near]) + 1e-44)
    far = np.isfinite(x64) & (x64 < -80)
    assert far.sum() > 10 and np.all(y[far] == 0)
    assert np.isnan(y[np.isnan(x64)]).all() and np.isnan(y[x64 == -np.inf]).all()
    assert (y[x64 == np.inf] == np.inf).all()
    with pytest.raises(bf.InvalidArgument, match="float32"):
        bf._C.swish(x.astype(np.float64))
    with pytest.raises(bf.InvalidArgument, match="kernel 'sse'"):
        bf._C.swish(x, "sse")


def test_a_fused_swish_equals_the_swish_alone(rng):
    """A conv's swish (fused), a batch-norm's (a node of its own) and bf_swish on the layer
    before give the same bits: a cut between a layer and its swish changes nothing."""
    L = LayerList((5, 9, 8))
    L.conv(7, 3, 2, bias=True)
    L.params[-1][1][:] = rng.normal(0, 1, 7)
    L.act("swish")
    L.bn()
    L.act("swish")
    randomize_bn(L, rng)
    x = 3 * rng.standard_normal((2, *L.shapes[0])).astype(np.float32)
    outs = [bf.Network.from_layers(L.layers[:k], L.params[:k]).head(x)
            for k in range(2, len(L.layers) + 1)]  # input + conv, + swish, + bn, + swish
    assert bf._C.swish(outs[0].ravel()).tobytes() == outs[1].tobytes()
    assert bf._C.swish(outs[2].ravel()).tobytes() == outs[3].tobytes()
    assert_close(outs[3], reference.run(L.layers, L.params, x), 1e-4)


@pytest.mark.parametrize("kind,kw,why", [("clip", {"alpha": 2.0, "beta": 1.0}, "above its max"),
                                         ("clip", {"alpha": 0.0}, "needs 'beta'"),
                                         ("leaky_relu", {}, "needs 'alpha'"),
                                         ("hardsigmoid", {"alpha": float("nan"), "beta": 0.5},
                                          "'alpha' must be a number")])
def test_activation_parameters_are_checked(kind, kw, why):
    L = LayerList((2, 3, 3))
    with pytest.raises(bf.ModelError, match=why):
        L.act(kind, **kw)


@pytest.mark.parametrize("pads", [(0, 1), (1, 0), (2, 1), (1, 2)])
def test_asymmetric_padding(pads, rng):
    pad, end = pads
    L = LayerList((4, 11, 10))
    L.conv(6, 3, 2, pad=pad, pad_end=end, bias=True)
    L.conv(5, 3, 1, pad=pad, pad_end=end, groups=1)
    L.pool("maxpool", 3, 2, pad=min(pad, 1), pad_end=min(end, 1))
    L.pool("avgpool", 2, 1, pad=min(pad, 1), pad_end=min(end, 1))
    check(L, rng)


def test_mul_same_shape_and_per_channel(rng):
    L = LayerList((6, 7, 5))
    a = L.conv(8, 3, 1, bias=True)
    b = L.conv(8, 1, 1, src=0)
    L.mul(a, b)                       # same shape
    x = L.last
    L.global_avgpool()
    L.conv(8, 1, 1, bias=True)
    s = L.act("sigmoid")
    L.mul(x, s)                       # squeeze-and-excitation
    check(L, rng, n=3)


def test_mul_shapes_are_checked():
    L = LayerList((6, 7, 5))
    g = L.global_avgpool()
    with pytest.raises(bf.ModelError, match="must have the first's shape or be"):
        L.mul(g, 0)  # the per-channel input must come second
    with pytest.raises(bf.ModelError, match="must have the first's shape or be"):
        L.mul(0, L.conv(3, 1, 1, src=0))


@pytest.mark.parametrize("n_in", [2, 5])
def test_concat(n_in, rng):
    L = LayerList((3, 9, 8))
    srcs = [L.conv(2 + k, 3, 1, src=0) for k in range(n_in)]
    L.concat(srcs)
    L.conv(4, 1, 1)
    L.concat([L.last, 0])             # the image itself as a source
    check(L, rng)


def test_concat_shapes_and_counts_are_checked():
    L = LayerList((3, 9, 8))
    small = L.pool("maxpool", 2, 2)
    with pytest.raises(bf.ModelError, match="all must share H and W"):
        L.concat([0, small])
    with pytest.raises(bf.ModelError, match="takes 2 to 32 inputs, not 1"):
        L.concat([0])
    with pytest.raises(bf.ModelError, match="'inputs' must be a list of <= 32"):
        L.concat([0] * 33)
