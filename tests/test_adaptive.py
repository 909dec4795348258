"""Runtime switching: the phone moves to another split when its measured uplink changes."""

import numpy as np
import pytest

import butterfly as bf
from butterfly.experiments import AdaptiveClient, costmodel

pytest.importorskip("zmq")


def test_switches_split_with_the_uplink(tmp_path):
    early = bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                        butterfly=bf.Butterfly(at=1, channels=8, stride=1))
    late = bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                       butterfly=bf.Butterfly(at=6, channels=1, stride=2))
    paths = [str(tmp_path / "early.bfly"), str(tmp_path / "late.bfly")]
    early.save(paths[0])
    late.save(paths[1])
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    old = bf._C.get_num_threads()
    bf.set_num_threads(1)
    try:
        with bf.serve(paths[0], workers=1, bind="tcp://127.0.0.1:0", threads=1) as p0, \
                bf.serve(paths[1], workers=1, bind="tcp://127.0.0.1:0", threads=1) as p1:
            phone = AdaptiveClient([(paths[0], p0.endpoint), (paths[1], p1.endpoint)],
                                   costmodel.networks["wifi"], initial_mbps=1000.0)
            # a fast link favours the early split (little work on the phone, 6 KB upload)
            assert phone.current.network.hash == early.hash
            res = phone.classify(x, k=3)
            assert len(res) == 4 and all(r.at.endswith("early.bfly") for r in res)
            np.testing.assert_array_equal([r.label for r in res], early.predict(x)[:, 0])
            # the link degrades to ~0.5 Mbit/s: the 12-byte late split wins
            for _ in range(16):
                phone.observe(6280, rtt_ms=100.0, server_us=0.0)
            assert phone.mbps < 1.0
            assert phone.current.network.hash == late.hash
            res = phone.classify(x, k=3)
            assert all(r.at.endswith("late.bfly") for r in res)
            np.testing.assert_array_equal([r.label for r in res], late.predict(x)[:, 0])
    finally:
        bf.set_num_threads(old)


def test_observe_refuses_non_finite_times(tmp_path):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                      butterfly=bf.Butterfly(at=1, channels=1, stride=2))
    path = str(tmp_path / "net.bfly")
    net.save(path)
    # nothing listens there: observe never sends, and connecting is lazy
    phone = AdaptiveClient([(path, "tcp://127.0.0.1:9")], costmodel.networks["4g"])
    before = phone.mbps
    for kw in ({"rtt_ms": float("nan"), "server_us": 0.0},
               {"rtt_ms": float("inf"), "server_us": 0.0},
               {"rtt_ms": -1.0, "server_us": 0.0},
               {"rtt_ms": 10.0, "server_us": float("nan")}):
        with pytest.raises(ValueError, match="must be a finite number >= 0"):
            phone.observe(204, **kw)
    assert phone.mbps == before
    # a server time as long as the round trip is a measurement, not an error
    phone.observe(204, rtt_ms=1.0, server_us=5000.0)
    assert np.isfinite(phone.mbps) and phone.mbps > 0
    with pytest.raises(ValueError, match="initial_mbps must be a finite number > 0"):
        AdaptiveClient([(path, "tcp://127.0.0.1:9")], initial_mbps=-1.0)


def test_client_k_checked_before_sending(tmp_path, rng):
    # (a serving.Client test; tests/test_serving.py is edited elsewhere at the moment)
    from butterfly.serving import TOPK_MAX

    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                      butterfly=bf.Butterfly(at=1, channels=1, stride=2))
    path = str(tmp_path / "net.bfly")
    net.save(path)
    client = bf.Client(path, "tcp://127.0.0.1:9", timeout_ms=100, retries=0)
    x = rng.random((1, 1, 28, 28), dtype=np.float32)
    pay = net.mobile(x)
    assert TOPK_MAX == 16
    for k in (0, -1, TOPK_MAX + 1):
        with pytest.raises(bf.InvalidArgument, match=r"k must be in \[1, 16\]"):
            client.classify(x, k=k)
        with pytest.raises(bf.InvalidArgument, match=r"k must be in \[1, 16\]"):
            client.classify_payload(pay, k=k)
        with pytest.raises(bf.InvalidArgument, match=r"k must be in \[1, 16\]"):
            client.load_test(payload=pay, k=k, seconds=0.1)
    with pytest.raises(TypeError, match="k must be an int"):
        client.classify(x, k=2.0)
