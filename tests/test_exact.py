"""The split network gives exactly the answer of the whole one.

``forward(x)`` must equal ``tail(restore(reduce(head(x))))`` and ``cloud(mobile(x))``, the
halves loaded from the saved model file included, bit for bit: what the pool serves is what
was validated locally.  Checked over every depth (18 / 34 / 50), both stems and every block,
with c' in {1, 2, 8}, s in {1, 2, 3, 4} and batch 1 and 3 spread over the blocks so that each
(depth, stem) meets every (s, batch) pair and every (c', s) pair is met; small widths and
inputs keep it fast.  Random batch-norm statistics keep the values away from round numbers.
"""

import numpy as np
import pytest

import butterfly as bf
from butterfly.network import LayerList, Network

CHANNELS = (1, 2, 8)
STRIDES = (1, 2, 3, 4)
BATCHES = (1, 3)
BLOCKS = {18: 8, 34: 16, 50: 16}


def randomize(net, rng):
    """Non-trivial batch-norms (the builders make identity ones) and conv biases."""
    m = net.model
    for i in range(len(m)):
        for k, (name, _) in enumerate(m.param_names(i)):
            p = m.get_param(i, k)
            lo, hi = {"gamma": (0.5, 1.5), "beta": (-0.5, 0.5), "running_mean": (-0.5, 0.5),
                      "running_var": (0.5, 2.0)}.get(name, (None, None))
            if lo is not None:
                m.set_param(i, k, rng.uniform(lo, hi, p.shape).astype(np.float32))


def configs(depth):
    """(after, c', s, batch) for every block of a ResNet of this depth."""
    for k in range(BLOCKS[depth]):
        yield k + 1, CHANNELS[k % 3], STRIDES[k % 4], BATCHES[(k // 4) % 2]


def assert_exact(net, x, tmp_path):
    y = net.forward(x)
    h = net.head(x)
    pay = net.reduce(h)
    np.testing.assert_array_equal(net.tail(net.restore(pay)), y)
    mob = net.mobile(x)
    np.testing.assert_array_equal(mob.data, pay.data)
    np.testing.assert_array_equal(mob.ranges, pay.ranges)
    np.testing.assert_array_equal(net.cloud(pay), y)
    path = tmp_path / "net.bfly"
    net.save(path)
    mobile, cloud = bf.load(path, part="mobile"), bf.load(path, part="cloud")
    np.testing.assert_array_equal(cloud.cloud(mobile.mobile(x)), y)


@pytest.mark.parametrize("small", [True, False], ids=["small", "imagenet"])
@pytest.mark.parametrize("depth", [18, 34, 50])
def test_forward_is_the_composition_of_the_parts(depth, small, tmp_path):
    rng = np.random.default_rng(depth)
    size = 16 if small else 32  # ImageNet stem: 32 -> 8 after the stem, 1x1 in the last stage
    for after, channels, stride, batch in configs(depth):
        net = bf.resnet(depth, small=small, input_size=size, num_classes=10, in_channels=1,
                        width=8, seed=after,
                        butterfly=bf.Butterfly(at=after, channels=channels, stride=stride))
        randomize(net, rng)
        x = rng.standard_normal((batch, 1, size, size)).astype(np.float32)
        try:
            assert_exact(net, x, tmp_path)
        except AssertionError as e:
            raise AssertionError(f"resnet{depth} small={small} after RB{after} c'={channels} "
                                 f"s={stride} batch={batch}: {e}") from None


def cut_between_fusable_layers():
    """A part that ends in a bare conv and one that starts with the batch-norm and ReLU a
    plan would fold into it: the parts must still compute as their own plans do."""
    L = LayerList((4, 8, 8), seed=3)
    L.conv(8, 3, name="head.conv")
    L.part = "reduce"
    L.bn(name="reduce.bn")
    L.relu(name="reduce.relu")
    L.conv(2, 1, pad=0, name="reduce.channel")
    L.simple("quantize", name="reduce.quantize")
    L.part = "restore"
    L.simple("dequantize", name="restore.dequantize")
    L.conv(8, 1, pad=0, name="restore.channel")
    L.part = "tail"
    L.bn(name="tail.bn")
    L.relu(name="tail.relu")
    L.global_avgpool(name="pool")
    L.linear(5, name="fc")
    net = Network.from_layers(L.layers, L.params, butterfly={"at": 0, "channels": 2,
                                                            "stride": 1})
    randomize(net, np.random.default_rng(3))
    return net


def test_no_fusion_across_a_part_boundary(rng, tmp_path):
    net = cut_between_fusable_layers()
    assert_exact(net, rng.standard_normal((3, 4, 8, 8)).astype(np.float32), tmp_path)


def test_a_part_ending_in_a_linear_layer(rng, tmp_path):
    """A head whose output is (N, C) after a linear layer: the cut takes it as (N, C, 1, 1),
    as the reduce part alone does."""
    L = LayerList((2, 4, 4), seed=5)
    L.conv(4, 3, name="head.conv")
    L.global_avgpool(name="head.pool")
    L.linear(6, name="head.fc")
    L.part = "reduce"
    L.simple("quantize", name="reduce.quantize")
    L.part = "restore"
    L.simple("dequantize", name="restore.dequantize")
    L.part = "tail"
    L.linear(3, name="tail.fc")
    net = Network.from_layers(L.layers, L.params, butterfly={"at": 0, "channels": 6,
                                                            "stride": 1})
    assert_exact(net, rng.standard_normal((2, 2, 4, 4)).astype(np.float32), tmp_path)
