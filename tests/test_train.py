"""Backward passes (finite differences), SGD, the straight-through quantizer, training runs,
checkpoints, torch-style weight import."""

import os

import numpy as np
import pytest
import reference

import butterfly as bf
from butterfly import _C
from butterfly.network import LayerList, torch_weights


def training_plan(net, batch, input_grad=True):
    begin, end = net.span(0, 3)
    return _C.Plan(net.model, begin, end, batch, True, input_grad)


def _fd_elements(loss, get, put, grad, rng, count, eps, what, misses=None):
    """Central differences on `count` random elements of a tensor.  An element whose
    estimate changes with the step (eps, eps/2, eps/4) has a kink (ReLU, max-pool) within
    reach and is skipped."""
    base = get()
    flat_grad = grad.reshape(-1)
    checked = 0
    for j in rng.choice(base.size, size=min(count, base.size), replace=False):
        est = []
        for h in (eps, eps / 2, eps / 4):
            w = base.copy()
            w.flat[j] += h
            put(w)
            lp = loss()
            w.flat[j] -= 2 * h
            put(w)
            lm = loss()
            est.append((lp - lm) / (2 * h))
        put(base)
        fd = est[-1]
        spread = max(est) - min(est)
        if spread > 5e-3 * max(abs(e) for e in est) + 3e-4:
            continue  # a kink within the steps: the estimates depend on the step
        an = float(flat_grad[j])
        ok = abs(fd - an) <= 2e-2 * max(abs(an), abs(fd)) + 1e-3
        if misses is None:
            assert ok, (what, int(j), fd, an)
        elif not ok:
            misses.append((what, int(j), fd, an))
        checked += 1
    return checked


def directional_check(net, x, rng, params=None, check_input=True, count=6, eps=8e-3,
                      max_miss=0.0):
    """Gradients of L = sum(output * R) against central finite differences, element by
    element (float32 forward passes: a single element's step keeps the loss change well
    above rounding noise).  In a deep ReLU network a kink closer than the smallest step
    cannot be seen from outside; max_miss is the fraction of such elements allowed."""
    misses = [] if max_miss else None
    plan = training_plan(net, len(x), input_grad=check_input)
    out = plan.forward(x)
    r = rng.standard_normal(out.shape).astype(np.float32)

    def loss(xx=None):
        return float((plan.forward(x if xx is None else xx).astype(np.float64) * r).sum())

    plan.forward(x)
    plan.backward(r)
    trained = plan.trained() if params is None else params
    assert trained, "nothing to check"
    grads = {(i, k): plan.param_grad(i, k) for i, k in trained}
    gx = plan.src_grad() if check_input else None
    checked = 0
    for i, k in trained:
        name = f"{net.model.layer(i)['name']}[{k}]"
        checked += _fd_elements(loss, lambda: net.model.get_param(i, k),
                                lambda w: net.model.set_param(i, k, w), grads[i, k], rng,
                                count, np.float32(eps), name, misses)
    if check_input:
        cur = {"x": x.copy()}

        def put(v):
            cur["x"] = v

        checked += _fd_elements(lambda: loss(cur["x"]), lambda: cur["x"], put, gx, rng, count,
                                np.float32(eps), "input", misses)
    want = count * len(trained) // (3 if not max_miss else 6)
    assert checked >= want, f"only {checked} elements away from kinks (want {want})"
    if misses is not None:
        assert len(misses) <= max_miss * checked, (len(misses), checked, misses[:5])
    return plan


def net_of(L):
    return bf.Network.from_layers(L.layers, L.params)


GRAD_CASES = {
    "conv": lambda L: L.conv(6, 3, 1, bias=True),
    "conv_strided_dilated": lambda L: L.conv(5, 3, 2, dilation=2, bias=True),
    "conv_grouped": lambda L: L.conv(8, 3, 2, groups=4),
    "conv_depthwise": lambda L: L.conv(4, 3, 1, groups=4, bias=True),
    "deconv": lambda L: L.conv(5, 3, 2, pad=1, deconv=True, output_pad=1, bias=True),
    "batchnorm": lambda L: L.bn(),
    "relu": lambda L: (L.conv(6, 3, 1, bias=True), L.relu()),
    "relu6": lambda L: (L.conv(6, 3, 1, bias=True), L.simple("relu6")),
    "maxpool": lambda L: (L.conv(6, 3, 1), L.pool("maxpool", 3, 2, 1)),
    "avgpool": lambda L: (L.conv(6, 3, 1), L.pool("avgpool", 3, 2, 1)),
    "global_avgpool": lambda L: (L.conv(6, 3, 1), L.global_avgpool()),
    "add": lambda L: (L.conv(4, 3, 1, bias=True), L.add(L.last, 0), L.conv(3, 1, 1, src=L.last)),
    "linear": lambda L: L.linear(7),
    "softmax": lambda L: (L.linear(6), L.simple("softmax")),
    "upsample": lambda L: (L.conv(3, 1, 1), L.upsample(2)),
    "sigmoid": lambda L: (L.conv(5, 3, 1, bias=True), L.act("sigmoid")),
    "swish": lambda L: (L.conv(5, 3, 1, bias=True), L.act("swish")),
    "hardswish": lambda L: (L.conv(5, 3, 1, bias=True), L.act("hardswish")),
    "hardsigmoid": lambda L: (L.conv(5, 3, 1, bias=True), L.act("hardsigmoid", alpha=0.2,
                                                                 beta=0.5)),
    "clip": lambda L: (L.conv(5, 3, 1, bias=True), L.act("clip", alpha=-0.5, beta=0.7)),
    "leaky_relu": lambda L: (L.conv(5, 3, 1, bias=True), L.act("leaky_relu", alpha=0.1)),
    "conv_asymmetric_pad": lambda L: L.conv(5, 3, 2, pad=0, pad_end=1, bias=True),
    "maxpool_asymmetric_pad": lambda L: (L.conv(6, 3, 1), L.pool("maxpool", 3, 2, 0, pad_end=1)),
    "mul": lambda L: (L.conv(4, 3, 1, bias=True), L.mul(L.last, 0), L.conv(3, 1, 1)),
    "mul_per_channel": lambda L: (L.conv(4, 3, 1, bias=True), L.global_avgpool(),
                                  L.conv(4, 1, 1, bias=True), L.act("sigmoid"),
                                  L.mul(L.last - 3, L.last)),
    "concat": lambda L: (L.conv(3, 3, 1, bias=True), L.conv(2, 1, 1, src=0),
                         L.concat([L.last - 1, 0, L.last]), L.conv(3, 1, 1)),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_gradients_by_finite_differences(case, rng):
    L = LayerList((4, 7, 6), seed=3)
    GRAD_CASES[case](L)
    if L.layers[-1]["type"] not in ("linear", "softmax"):
        L.linear(5)  # a dense end so every output element matters
    for spec, params in zip(L.layers, L.params):
        if spec["type"] == "batchnorm":
            params[0][:] = rng.uniform(0.5, 1.5, len(params[0]))
            params[1][:] = rng.normal(0, 0.3, len(params[0]))
    net = net_of(L)
    x = rng.standard_normal((3, 4, 7, 6)).astype(np.float32)
    directional_check(net, x, rng)


def test_batchnorm_running_statistics(rng):
    L = LayerList((3, 5, 5))
    L.bn()
    L.linear(2)
    net = net_of(L)
    x = (rng.standard_normal((8, 3, 5, 5)) * 2 + 1).astype(np.float32)
    plan = training_plan(net, 8, input_grad=False)
    plan.forward(x)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3)) * (8 * 25) / (8 * 25 - 1)  # unbiased, like PyTorch
    np.testing.assert_allclose(net.model.get_param(1, 2), 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.model.get_param(1, 3), 0.9 + 0.1 * var, rtol=1e-4)


def strip_quantizer(net):
    """The same layers without quantize/dequantize (all tagged head)."""
    layers = [net.model.layer(i) for i in range(len(net.model))]
    params = [[net.model.get_param(i, k) for k in range(len(net.model.param_names(i)))]
              for i in range(len(net.model))]
    keep, remap = [], {}
    for i, spec in enumerate(layers):
        if spec["type"] in ("quantize", "dequantize"):
            remap[i] = remap[spec["inputs"][0]]
            continue
        remap[i] = len(keep)
        keep.append(i)
    out_layers, out_params = [], []
    for i in keep:
        spec = dict(layers[i], part="head")
        spec["inputs"] = [remap[j] for j in spec["inputs"]]
        spec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.items()
                if not (k == "out_channels" and v == 0)}
        out_layers.append(spec)
        out_params.append(params[i])
    return bf.Network.from_layers(out_layers, out_params)


def test_whole_small_resnet_with_butterfly_gradients(rng):
    net = bf.resnet18(small=True, num_classes=5, in_channels=1, width=8, input_size=16,
                      butterfly=bf.Butterfly(at=3, channels=2, stride=2))
    x = rng.random((6, 1, 16, 16), dtype=np.float32)
    # after the quantizer every parameter is a smooth function of the loss: check them all
    first_restore = net.model.part_range(2)[0]
    plan = training_plan(net, 6, input_grad=False)
    after = [(i, k) for i, k in plan.trained() if i >= first_restore]
    directional_check(net, x, rng, params=after, check_input=False, max_miss=0.1)
    # before it the quantizer is piecewise constant (its gradient is straight-through by
    # design), so the layers up to and including the reduction unit are checked on the
    # same network without the quantizer
    plain = strip_quantizer(net)
    plan = training_plan(plain, 6)
    directional_check(plain, x, rng, params=plan.trained(), count=3, max_miss=0.1)


def test_straight_through_quantizer(rng):
    L = LayerList((3, 4, 5))
    L.relu()
    L.part = "reduce"
    L.simple("quantize")
    L.part = "restore"
    L.simple("dequantize")
    L.part = "tail"
    L.linear(4)
    net = net_of(L)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    plan = training_plan(net, 2)
    out = plan.forward(x)
    q, ranges = reference.quantize(np.maximum(x, 0))
    deq = reference.dequantize(q, ranges)
    fc = len(net.model) - 1
    w, b = net.model.get_param(fc, 0), net.model.get_param(fc, 1)
    np.testing.assert_allclose(out.reshape(2, -1), deq.reshape(2, -1) @ w.T + b, rtol=1e-5,
                               atol=1e-5)
    r = rng.standard_normal(out.shape).astype(np.float32)
    plan.backward(r)
    # identity through the quantizer pair: d/dx = relu'(x) * (W^T r)
    want = (r.reshape(2, -1) @ w).reshape(x.shape) * (x > 0)
    np.testing.assert_allclose(plan.src_grad(), want, rtol=1e-5, atol=1e-6)


def _optimizer_net():
    """A conv with bias, a BN and a linear layer: weights with and without weight decay."""
    L = LayerList((2, 6, 6))
    L.conv(4, 3, 1, bias=True)
    L.bn()
    L.relu()
    L.global_avgpool()
    L.linear(3)
    return net_of(L)


def _decays(net, layer: int, slot: int) -> bool:
    """Weight decay applies to conv / linear weights, not to biases or BN."""
    return slot == 0 and net.model.layer(layer)["type"] in ("conv", "linear")


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_step_matches_numpy(nesterov, rng):
    net = _optimizer_net()
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    plan = training_plan(net, 4, input_grad=False)
    plan.forward(x)
    plan.backward(rng.standard_normal((4, 3, 1, 1)).astype(np.float32))
    lr, mom, wd = 0.1, 0.9, 0.01
    before = {p: net.model.get_param(*p) for p in plan.trained()}
    grads = {p: plan.param_grad(*p) for p in plan.trained()}
    plan.sgd_step(lr, mom, wd, nesterov)
    plan.sgd_step(lr, mom, wd, nesterov)  # the same gradient again: momentum matters
    plan.sync()
    for (i, k), w0 in before.items():
        g = grads[i, k].astype(np.float64)
        decay = wd if _decays(net, i, k) else 0.0
        w, v = w0.astype(np.float64), np.zeros_like(g)
        for _ in range(2):
            gj = g + decay * w
            v = mom * v + gj
            w = w - lr * (gj + mom * v if nesterov else v)
        np.testing.assert_allclose(net.model.get_param(i, k), w, rtol=1e-5, atol=1e-6)


def test_adam_step_matches_numpy_and_torch_formula(rng):
    """Three AdamW updates from two different gradients, against the formula in float64;
    the buffers read back as the formula's first and second moments, and setting them
    (a checkpoint restored) continues exactly."""
    net = _optimizer_net()
    plan = training_plan(net, 4, input_grad=False)
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.95, 1e-6, 0.1
    before = {p: net.model.get_param(*p).astype(np.float64) for p in plan.trained()}
    w = dict(before)
    m = {p: np.zeros_like(v) for p, v in before.items()}
    v2 = {p: np.zeros_like(v) for p, v in before.items()}
    for step in (1, 2, 3):
        x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
        plan.forward(x)
        plan.backward(rng.standard_normal((4, 3, 1, 1)).astype(np.float32))
        grads = {p: plan.param_grad(*p).astype(np.float64) for p in plan.trained()}
        plan.adam_step(step, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
        for p, g in grads.items():
            i, k = p
            decay = wd if _decays(net, i, k) else 0.0
            w[p] = w[p] * (1 - lr * decay)
            m[p] = b1 * m[p] + (1 - b1) * g
            v2[p] = b2 * v2[p] + (1 - b2) * g * g
            w[p] = w[p] - lr / (1 - b1 ** step) * m[p] / (np.sqrt(v2[p]) /
                                                          np.sqrt(1 - b2 ** step) + eps)
    plan.sync()
    for p in plan.trained():
        np.testing.assert_allclose(net.model.get_param(*p), w[p], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(plan.momentum(*p), m[p], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(plan.second_moment(*p), v2[p], rtol=1e-4, atol=1e-9)
    # set the buffers to known values: the next step uses them
    p = plan.trained()[0]
    plan.momentum(*p, np.zeros_like(m[p], np.float32))
    plan.second_moment(*p, np.ones_like(v2[p], np.float32))
    np.testing.assert_array_equal(plan.second_moment(*p), 1.0)
    w0 = net.model.get_param(*p).astype(np.float64)
    plan.adam_step(4, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=0.0)
    g = plan.param_grad(*p).astype(np.float64)
    want = w0 - lr / (1 - b1 ** 4) * ((1 - b1) * g) / (
        np.sqrt(b2 + (1 - b2) * g * g) / np.sqrt(1 - b2 ** 4) + eps)
    plan.sync()
    np.testing.assert_allclose(net.model.get_param(*p), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [{"step": 0}, {"lr": -1.0}, {"beta1": 1.0}, {"beta2": -0.1},
                                {"eps": 0.0}, {"weight_decay": float("nan")}])
def test_adam_step_refuses_bad_parameters(kw, rng):
    L = LayerList((2, 4, 4))
    L.conv(2, 3, 1)
    net = net_of(L)
    plan = training_plan(net, 1, input_grad=False)
    plan.forward(rng.standard_normal((1, 2, 4, 4)).astype(np.float32))
    plan.backward(np.ones((1, 2, 4, 4), np.float32))
    p = plan.trained()[0]
    w0 = net.model.get_param(*p)
    args = {"step": 1, **kw}
    with pytest.raises(bf.InvalidArgument, match="Adam needs"):
        plan.adam_step(**args)
    plan.sync()
    np.testing.assert_array_equal(net.model.get_param(*p), w0)  # nothing changed


def test_overfits_a_small_batch(rng):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8, input_size=14,
                      butterfly=bf.Butterfly(at=2, channels=2, stride=2), seed=1)
    x = rng.random((16, 1, 14, 14), dtype=np.float32)
    y = np.arange(16, dtype=np.int32) % 10
    tr = bf.Trainer(net, 16, bf.training.Schedule(0.05, 80, "constant"), weight_decay=0.0)
    losses = [tr.step(x, y)[0] for _ in range(80)]
    tr.close()
    assert losses[-1] < 0.05 < losses[0]


def test_fashion_mnist_subset_learns():
    train, test = bf.datasets.fashion_mnist(subset=3000)
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                      butterfly=bf.Butterfly(at=2, channels=1, stride=2))
    hist = bf.train(net, train, epochs=3, batch_size=64, lr=0.05, progress=False, seed=0)
    ev = bf.evaluate(net, test.subset(1000, seed=0))
    assert len(hist) == 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert ev["top1"] > 0.6  # chance is 0.1
    assert ev["payload_bytes"] == 14 * 14 + 8


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    train, _ = bf.datasets.fashion_mnist(subset=512)

    def fresh():
        return bf.resnet18(small=True, num_classes=10, in_channels=1, width=8, seed=5,
                           butterfly=bf.Butterfly(at=1, channels=2, stride=2))

    kw = dict(batch_size=64, lr=0.05, progress=False, seed=3)
    a = fresh()
    bf.train(a, train, epochs=2, **kw)
    ck = tmp_path / "ck.bfly"
    b = fresh()

    class Stop(Exception):
        pass

    def interrupt(row):
        raise Stop  # as a crash after the first epoch's checkpoint

    with pytest.raises(Stop):
        bf.train(b, train, epochs=2, checkpoint=ck, on_epoch=interrupt, **kw)
    c = fresh()
    hist = bf.train(c, train, epochs=2, checkpoint=ck, resume=True, **kw)
    assert [r["epoch"] for r in hist.epochs] == [1, 2]
    for i in range(len(a.model)):
        for k in range(len(a.model.param_names(i))):
            np.testing.assert_array_equal(c.model.get_param(i, k), a.model.get_param(i, k))
    with pytest.raises(bf.ModelError, match="architecture"):
        bf.train(bf.resnet18(small=True, num_classes=10, in_channels=1, width=8), train,
                 epochs=2, checkpoint=ck, resume=True, **kw)


def test_freezing_keeps_weights(rng):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8, input_size=14,
                      butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    bf.set_frozen(net, parts=("head", "tail"))
    head_w = net.model.get_param(1, 0)
    bn = next(i for i in range(len(net.model)) if net.model.layer(i)["type"] == "batchnorm")
    stats = net.model.get_param(bn, 2)
    first_reduce = net.model.part_range(1)[0]
    unit_w = net.model.get_param(first_reduce, 0)
    tr = bf.Trainer(net, 8, bf.training.Schedule(0.1, 5, "constant"))
    x = rng.random((8, 1, 14, 14), dtype=np.float32)
    for _ in range(3):
        tr.step(x, np.arange(8, dtype=np.int32))
    tr.close()
    np.testing.assert_array_equal(net.model.get_param(1, 0), head_w)
    np.testing.assert_array_equal(net.model.get_param(bn, 2), stats)
    assert not np.array_equal(net.model.get_param(first_reduce, 0), unit_w)


def test_schedule():
    s = bf.training.Schedule(0.1, 100, "cosine", warmup_steps=10)
    assert s(0) == pytest.approx(0.01) and s(9) == pytest.approx(0.1)
    assert s(10) == pytest.approx(0.1) and s(55) == pytest.approx(0.05) and s(100) < 1e-9
    st = bf.training.Schedule(0.1, 100, "step", milestones=(30, 60), gamma=0.1)
    assert st(29) == pytest.approx(0.1) and st(30) == pytest.approx(0.01)
    assert st(99) == pytest.approx(0.001)
    for lr in (float("nan"), float("inf"), -0.1):  # NaN slipped past "lr < 0"
        with pytest.raises(ValueError, match="lr must be finite"):
            bf.training.Schedule(lr, 100)


def test_torch_state_dict_roundtrip(rng):
    src = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8, seed=11)
    sd = torch_weights.state_dict(src)
    assert "layer2.0.downsample.0.weight" in sd and "bn1.running_var" in sd
    sd["bn1.num_batches_tracked"] = np.array(5)
    dst = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8, seed=12,
                      butterfly=bf.Butterfly(at=4, channels=2, stride=2))
    report = torch_weights.load_state_dict(dst, sd)
    assert report == {"missing": [], "unexpected": []}
    back = torch_weights.state_dict(dst)
    assert all(np.array_equal(back[k], sd[k]) for k in back)
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    plain = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8, seed=13)
    torch_weights.load_state_dict(plain, sd)
    np.testing.assert_array_equal(plain.forward(x), src.forward(x))
    bad = dict(sd)
    bad["fc.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(bf.ModelError, match="shape"):
        torch_weights.load_state_dict(plain, bad)
    with pytest.raises(bf.ModelError, match="missing"):
        torch_weights.load_state_dict(plain, {k: v for k, v in sd.items() if k != "fc.bias"})


def test_torch_state_dict_keys_are_torchvisions():
    """torchvision's resnet18 / resnet50 state_dicts hold 122 / 320 entries, of which
    20 / 53 are BN's num_batches_tracked (which we do not keep)."""
    sd18 = torch_weights.state_dict(bf.resnet18(num_classes=1000))
    sd50 = torch_weights.state_dict(bf.resnet50(num_classes=1000))
    assert len(sd18) == 122 - 20 and len(sd50) == 320 - 53
    assert sd50["layer4.2.bn3.running_var"].shape == (2048,)
    assert sd50["layer3.0.downsample.0.weight"].shape == (1024, 512, 1, 1)
    assert sd18["layer2.0.conv1.weight"].shape == (128, 64, 3, 3)
    assert sd18["fc.weight"].shape == (1000, 512) and sd18["conv1.weight"].shape == (64, 3, 7, 7)


def test_frozen_head_backward_skipped_gives_the_same_gradients(rng):
    # with head and tail frozen, the training plan skips the head's backward (nothing
    # before the unit needs a gradient); asking for the source's gradient turns every node
    # back on: the unit's and the tail's gradients must be the same either way
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8, input_size=14,
                      butterfly=bf.Butterfly(at=3, channels=2, stride=2))
    bf.set_frozen(net, parts=("head", "tail"))
    x = rng.random((4, 1, 14, 14), dtype=np.float32)
    d = rng.standard_normal((4, 10, 1, 1)).astype(np.float32)
    unit = range(net.model.part_range(1)[0], net.model.part_range(2)[1])
    grads = []
    for input_grad in (False, True):
        plan = bf._C.Plan(net.model, 0, 3, 4, True, input_grad)
        plan.forward(x)
        plan.backward(d)
        grads.append({(i, k): plan.param_grad(i, k) for i in unit
                      for k in range(len(net.model.param_names(i)))
                      if net.model.layer(i)["type"] in ("conv", "deconv")})
        if input_grad:
            assert np.abs(plan.src_grad()).sum() > 0
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) >= 4
    for key in grads[0]:
        assert np.abs(grads[0][key]).sum() > 0
        np.testing.assert_array_equal(grads[0][key], grads[1][key])


def _probe_net():
    return bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                       butterfly=bf.Butterfly(at=1, channels=1, stride=2))


def test_closed_trainer_refuses_to_step(rng):
    net = _probe_net()
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    before = net.forward(x)
    tr = bf.Trainer(net, 2, bf.training.Schedule(0.1, 10, "constant"))
    tr.close()
    tr.close()  # closing twice is fine
    assert tr.closed
    with pytest.raises(bf.InvalidArgument, match="Trainer is closed"):
        tr.step(x, np.array([1, 2]))
    with pytest.raises(bf.InvalidArgument, match="Trainer is closed"):
        tr.state()
    np.testing.assert_array_equal(net.forward(x), before)


def test_a_second_trainer_closes_the_first_keeping_its_steps(rng):
    net = _probe_net()
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    before = net.forward(x)
    first = bf.Trainer(net, 2, bf.training.Schedule(0.1, 10, "constant"))
    first.step(x, np.array([1, 2]))
    second = bf.Trainer(net, 2, bf.training.Schedule(0.1, 10, "constant"))
    assert first.closed and not second.closed
    with pytest.raises(bf.InvalidArgument, match="Trainer is closed"):
        first.step(x, np.array([1, 2]))
    after_first = net.forward(x)  # the first one's step is in the model (it was lost)
    assert not np.array_equal(after_first, before)
    second.step(x, np.array([1, 2]))
    assert not np.array_equal(net.forward(x), after_first)
    second.close()


@pytest.mark.parametrize("labels, match", [
    (np.array([1.9, 2.0]), "integer array"),
    (np.array([2**32 + 1, 1], np.int64), "not a class"),
    (np.array([-1, 1]), "not a class"),
    (np.array([10, 1], np.uint8), r"in \[0, 10\)"),
])
def test_step_refuses_bad_labels(labels, match, rng):
    net = _probe_net()
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    tr = bf.Trainer(net, 2, bf.training.Schedule(0.1, 10, "constant"))
    try:
        with pytest.raises(bf.InvalidArgument, match=match):
            tr.step(x, labels)
        assert tr.step_count == 0
        tr.step(x, np.array([9, 0], np.int64))  # any integer dtype in range is fine
    finally:
        tr.close()


def test_train_and_evaluate_argument_errors():
    net = _probe_net()
    data = bf.datasets.synthetic(8)
    for fn in (bf.train, bf.evaluate):
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            fn(net, data, batch_size=0)
        with pytest.raises(TypeError, match="batch_size must be an int"):
            fn(net, data, batch_size=4.0)
        with pytest.raises(bf.InvalidArgument, match="empty"):
            fn(net, data[:0])
        with pytest.raises(TypeError, match="must be a butterfly.datasets.Dataset"):
            fn(net, (data.images, data.labels))
    wrong = bf.datasets.Dataset(data.images, data.labels + 5, data.classes)
    w = net.model.get_param(1, 0)
    with pytest.raises(bf.InvalidArgument, match="not a class"):
        bf.train(net, wrong, batch_size=4, progress=False)
    np.testing.assert_array_equal(net.model.get_param(1, 0), w)  # refused before any step
    with pytest.raises(bf.InvalidArgument, match="not a class"):
        bf.evaluate(net, wrong)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        bf.train(net, data, epochs=0, batch_size=4, progress=False)


def test_set_frozen_parts_and_layers():
    net = _probe_net()
    bf.set_frozen(net, parts="head")  # one part as a str, not 'h', 'e', ...
    head = [i for i in range(len(net.model)) if net.model.layer(i)["part"] == "head"]
    assert all(net.model.layer(i)["frozen"] for i in head)
    bf.set_frozen(net, parts="head", frozen=False)
    assert not any(net.model.layer(i)["frozen"] for i in head)
    with pytest.raises(bf.InvalidArgument, match="unknown part.*head, reduce, restore, tail"):
        bf.set_frozen(net, parts=("bogus",))
    with pytest.raises(bf.InvalidArgument, match=r"not in \[0, "):
        bf.set_frozen(net, layers=(len(net.model),))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_distill_resumes_exactly_from_its_checkpoint(optimizer, tmp_path, monkeypatch):
    """Two epochs at once equal a run stopped after its first epoch's checkpoint and
    resumed: the step and the optimizer's buffers (momentum; Adam's second moment) come
    back."""
    from butterfly.training import distillation

    root = os.path.dirname(os.path.dirname(os.path.abspath(bf.__file__)))
    teacher = bf.load(os.path.join(root, "benchmarks", "results", "baseline-w16.bfly"))
    train, _ = bf.datasets.fashion_mnist()
    x = train.images[:64]

    def student():
        return bf.insert_butterfly(teacher, at="RB4", channels=2, stride=2)

    a = student()
    hist = bf.distill(a, teacher, x, epochs=2, batch_size=16, optimizer=optimizer,
                      progress=False)
    assert hist.epochs[1]["loss"] < hist.epochs[0]["loss"]  # it learns
    ck = tmp_path / "ck.bfly"
    b = student()
    save = distillation._save

    def save_then_stop(*args, **kw):  # the run stops right after its first checkpoint
        save(*args, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(distillation, "_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        bf.distill(b, teacher, x, epochs=2, batch_size=16, optimizer=optimizer,
                   progress=False, checkpoint=ck)
    monkeypatch.setattr(distillation, "_save", save)
    b = student()
    bf.distill(b, teacher, x, epochs=2, batch_size=16, optimizer=optimizer, progress=False,
               checkpoint=ck, resume=True)
    assert b.meta["distillation"]["optimizer"] == optimizer
    for i in range(len(a.model)):
        for k, _ in enumerate(a.model.param_names(i)):
            np.testing.assert_array_equal(b.model.get_param(i, k), a.model.get_param(i, k))
    other = "adam" if optimizer == "sgd" else "sgd"
    with pytest.raises(bf.InvalidArgument, match="same optimizer"):
        bf.distill(student(), teacher, x, epochs=2, batch_size=16, optimizer=other,
                   progress=False, checkpoint=ck, resume=True)
    with pytest.raises(bf.InvalidArgument, match="optimizer must be"):
        bf.distill(student(), teacher, x, optimizer="rmsprop", progress=False)


def test_distill_command_line(tmp_path):
    """`butterfly distill` with Adam on a folder of .npy batches writes a split model; a bad
    optimizer is a user error (exit 2, one line)."""
    import subprocess
    import sys

    from butterfly.serving import child_env

    root = os.path.dirname(os.path.dirname(os.path.abspath(bf.__file__)))
    model = os.path.join(root, "benchmarks", "results", "baseline-w16.bfly")
    train, _ = bf.datasets.fashion_mnist()
    pics = tmp_path / "pics"
    pics.mkdir()
    np.save(pics / "batch.npy", train.images[:96])
    out = tmp_path / "split.bfly"
    cmd = [sys.executable, "-m", "butterfly", "distill", model, "--at", "RB4", "--channels",
           "2", "--stride", "2", "--images", str(pics), "--optimizer", "adam", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=600,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "bytes per image uploaded" in r.stdout
    split = bf.load(out)
    assert split.meta["butterfly"]["block"] == 4
    assert split.meta["distillation"]["optimizer"] == "adam"
    assert split.meta["distillation"]["lr"] == pytest.approx(1e-3)
    bad = subprocess.run(cmd[:-4] + ["--optimizer", "rmsprop", "-o", str(out)],
                         capture_output=True, text=True, env=child_env(), timeout=600,
                         check=False)
    assert bad.returncode == 2 and "rmsprop" in bad.stderr and "Traceback" not in bad.stderr
