"""The cloud half through the worker pool, from Python, on loopback.

Split inference through the pool against the local network, load from several client
threads, a worker process killed with SIGKILL under load, malformed messages from a raw
ZeroMQ socket, CURVE, statistics and draining.  Ports are chosen by the OS ("*"); every
loop is bounded in count and time.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest

import butterfly as bf
from butterfly import _C, serving

zmq = pytest.importorskip("zmq")

ANY = "tcp://127.0.0.1:*"
HB_MS = 100  # fast heartbeats: a dead worker is purged after 3 x 100 ms


# the local reference and the mobile half on one core: the pool's workers take the rest
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                      butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    net.meta["classes"] = list(bf.datasets.FASHION_MNIST_CLASSES)
    path = tmp_path_factory.mktemp("serving") / "net.bfly"
    net.save(path)
    return str(path)


@pytest.fixture(scope="module")
def data(model_path):
    """64 Fashion-MNIST test images, their payloads and the local softmax (float64)."""
    try:
        _, test = bf.datasets.fashion_mnist(subset=64)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    net = bf.load(model_path)
    logits = net.forward(test.images).astype(np.float64)
    e = np.exp(logits - logits.max(1, keepdims=True))
    # each image alone, as a B = 1 worker computes it (a batch of n may pick other kernels)
    one = np.concatenate([net.forward(test.images[i:i + 1]) for i in range(len(test.images))])
    return {"net": net, "images": test.images, "payload": net.mobile(test.images),
            "probs": e / e.sum(1, keepdims=True), "logits": logits, "logits_one": one}


def split_id(net):
    return net.model.part_range(2)[0]


def assert_topk(topk, probs, tol):
    """topk [(class, prob)] against a reference probability vector: each probability is the
    reference's at that class, and the ranks hold the reference's k largest (ties within
    tol may swap)."""
    ref = np.sort(probs)[::-1]
    for j, (c, p) in enumerate(topk):
        assert abs(p - probs[c]) <= tol, (j, c, p, probs[c])
        assert abs(p - ref[j]) <= tol, (j, c, p, ref[j])
    assert len({c for c, _ in topk}) == len(topk)


def wait_for(cond, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# --- the answer through the pool is the local answer --------------------------------------

def test_split_inference_matches_local(model_path, data):
    with serving.serve(model_path, workers=2, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        client = serving.Client(model_path, pool.endpoint)
        assert client.hash == data["net"].hash and client.split_id == split_id(data["net"])
        results = client.classify(data["images"], k=5, logits=True)
        assert len(results) == 64
        for r, probs, logits, one in zip(results, data["probs"], data["logits"],
                                         data["logits_one"]):
            assert r.batch == 1 and r.attempts == 1
            # B = 1: the worker's answer is the local forward of that image, bit for bit
            # (to float rounding only against the local batch-64 forward)
            assert r.logits.dtype == np.float32
            np.testing.assert_array_equal(r.logits, one)
            np.testing.assert_allclose(r.logits, logits, rtol=0, atol=1e-5)
            assert_topk(r.topk, probs, 1e-6)
            assert r.names == [bf.datasets.FASHION_MNIST_CLASSES[c] for c in r.classes]
            assert r.rtt_ms > 0 and r.compute_us > 0 and r.mobile_ms > 0
            assert r.rtt_ms * 1000 >= r.compute_us
        # the mobile half run here is the local network's mobile half, byte for byte
        p, _ = client.mobile(data["images"])
        assert np.array_equal(p.data, data["payload"].data)
        # zstd payloads give the same answers
        z = client.classify_payload((data["payload"].data[:8], data["payload"].ranges[:8]),
                                    k=3, codec="zstd")
        for r, probs in zip(z, data["probs"][:8]):
            assert_topk(r.topk, probs, 1e-6)
        stats = pool.stats()
    assert stats["replies_ok"] == 72 and stats["errors"] == 0
    assert stats["batch_sizes"] == {1: 72}


def test_pool_answer_is_the_local_forward_bit_for_bit(tmp_path):
    """The pool's logits at B = 1 are net.forward of that image, bit for bit (a split where
    the tail plan alone once ran other kernels than the whole network: ResNet-34 after RB10,
    s = 2; random images, so it runs without the data set)."""
    net = bf.resnet34(small=True, num_classes=10, in_channels=1, width=16,
                      butterfly=bf.Butterfly(at=10, channels=2, stride=2))
    path = tmp_path / "rb10.bfly"
    net.save(path)
    x = np.random.default_rng(7).standard_normal((4, 1, 28, 28)).astype(np.float32)
    with serving.serve(path, workers=1, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        results = serving.Client(path, pool.endpoint).classify(x, k=3, logits=True)
    assert len(results) == 4
    for i, r in enumerate(results):
        assert r.batch == 1
        np.testing.assert_array_equal(r.logits, net.forward(x[i:i + 1])[0])


def test_batched_inference(model_path, data):
    """B = 8: requests from 8 threads, released together each round, share batches; a batch
    waits up to 1 s to fill, so each round's requests make one batch of about 8 however
    slowly the threads get the CPU.  A batch-n plan may pick other oneDNN kernels than
    batch 1, so scores agree to float rounding, not bit for bit."""
    n_threads = 8
    pool = serving.serve(model_path, workers=1, bind=ANY, batch=8, batch_timeout_us=1_000_000,
                         threads=1, heartbeat_interval_ms=HB_MS)
    pay = data["payload"]
    errs, batches, failures = [], [], []
    clients = [_C.Client(pool.endpoint, data["net"].hash, split_id(data["net"]))
               for _ in range(n_threads)]
    rounds = threading.Barrier(n_threads, timeout=60)

    def run(part):
        try:
            for i in range(part, 64, n_threads):
                rounds.wait()
                r = clients[part].classify(pay.data[i], pay.ranges[i], k=10, logits=True)[0]
                errs.append(float(np.abs(r["logits"] - data["logits"][i]).max()))
                batches.append(r["batch"])
                assert_topk(r["topk"], data["probs"][i], 1e-5)
        except Exception as e:  # noqa: BLE001 (reported below)
            failures.append(e)
            rounds.abort()

    threads = [threading.Thread(target=run, args=(p,)) for p in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stats = pool.stats()
    pool.stop()
    assert not failures, failures
    assert len(errs) == 64 and max(errs) <= 1e-4, max(errs)
    assert sum(stats["batch_sizes"].values()) == stats["batches"]
    assert sum(b * n for b, n in stats["batch_sizes"].items()) == 64
    assert max(batches) <= 8
    assert max(batches) > 1 and max(stats["batch_sizes"]) > 1, stats["batch_sizes"]
    print(f"B=8: max |logit diff| {max(errs):.2e}, batch sizes {stats['batch_sizes']}")


# --- load -------------------------------------------------------------------------------------

def run_clients(endpoint, net, pay, probs, n_threads, n_each, timeout=60.0, **client_kw):
    """n_threads clients x n_each requests over the 64 payloads; returns (answers,
    wrong, errors) where answers counts replies per (thread, request)."""
    answered = np.zeros((n_threads, n_each), np.int32)
    wrong, errors = [], []
    deadline = time.monotonic() + timeout

    def run(t):
        c = _C.Client(endpoint, net.hash, split_id(net), **client_kw)
        for i in range(n_each):
            if time.monotonic() > deadline:
                errors.append("deadline")
                return
            j = (7 * t + i) % 64
            try:
                r = c.classify(pay.data[j], pay.ranges[j], k=2)[0]
            except bf.Error as e:
                errors.append(repr(e))
                continue
            answered[t, i] += 1
            c0, p0 = r["topk"][0]
            if abs(p0 - probs[j].max()) > 1e-5 or abs(p0 - probs[j][c0]) > 1e-5:
                wrong.append((t, i, j, r["topk"]))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout + 10)
    return answered, wrong, errors


def test_concurrent_clients(model_path, data):
    with serving.serve(model_path, workers=2, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        answered, wrong, errors = run_clients(pool.endpoint, data["net"], data["payload"],
                                              data["probs"], 4, 500)
        stats = pool.stats()
    assert not errors and not wrong, (errors[:3], wrong[:3])
    assert (answered == 1).all()
    assert stats["requests"] == stats["replies_ok"] == 2000
    assert stats["errors"] == stats["busy"] == stats["requeued"] == 0


def start_worker_process(model_path, backend, *keys, extra=()):
    cmd = [sys.executable, "-m", "butterfly.cli", "worker", model_path, "--connect", backend,
           "--threads", "1", "--heartbeat-interval-ms", str(HB_MS), *extra]
    if keys:
        cmd += ["--curve-server-key", str(keys[0]), "--curve-key", str(keys[1])]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=serving.child_env())


def test_worker_process_killed_under_load(model_path, data):
    """Two `butterfly worker` processes; one gets SIGKILL mid-load and a new one replaces
    it: every request is answered once, correctly."""
    pool = serving.serve(model_path, workers=0, bind=ANY, backend=ANY, threads=1,
                         heartbeat_interval_ms=HB_MS)
    procs = [start_worker_process(model_path, pool.backend) for _ in range(2)]
    try:
        assert wait_for(lambda: pool.stats()["workers"] == 2, 30), pool.stats()
        result = {}

        def load():
            result["r"] = run_clients(pool.endpoint, data["net"], data["payload"],
                                      data["probs"], 4, 300, timeout=60)

        t = threading.Thread(target=load)
        t.start()
        assert wait_for(lambda: pool.stats()["replies_ok"] >= 200, 30)
        assert t.is_alive()  # under load
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        assert wait_for(lambda: pool.stats()["workers_purged"] >= 1, 10)
        procs[0] = start_worker_process(model_path, pool.backend)
        t.join(timeout=90)
        assert not t.is_alive()
        answered, wrong, errors = result["r"]
        assert not errors and not wrong, (errors[:3], wrong[:3])
        assert (answered == 1).all()
        assert wait_for(lambda: pool.stats()["workers"] == 2, 30)
        stats = pool.stats()
        assert stats["replies_ok"] == 1200 and stats["workers_purged"] >= 1
        print(f"kill -9: purged {stats['workers_purged']}, re-queued {stats['requeued']}, "
              f"late replies {stats['late_replies']}")
        # SIGTERM stops a worker process cleanly, even while it is busy
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(timeout=15) == 0, p.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        pool.stop()


def test_worker_process_stops_on_sigterm_mid_compute():
    """SIGTERM while a worker process computes (a 300 ms echo batch) still stops it, and
    its request is answered once."""
    echo = {"dims": (2, 4, 4), "classes": 10, "split": 5, "model_hash": "00112233445566aa",
            "delay_us": 300000}
    code = ("import sys; from butterfly import serving; "
            f"serving.worker(None, sys.argv[1], heartbeat_interval_ms={HB_MS}, echo={echo!r})")
    pool = _C.Pool(workers=0, frontend=ANY, backend=ANY, echo=echo, heartbeat_interval_ms=HB_MS)
    procs = []
    try:
        def spawn():
            procs.append(subprocess.Popen([sys.executable, "-c", code, pool.backend],
                                          env=serving.child_env(), stderr=subprocess.PIPE))
            assert wait_for(lambda: pool.stats()["workers"] == 1, 30), pool.stats()

        spawn()
        c = _C.Client(pool.endpoint, "00112233445566aa", 5, timeout_ms=10000, retries=0)
        x = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)
        got = []
        t = threading.Thread(target=lambda: got.append(c.classify(x, np.float32([0, 1]), k=1)))
        t.start()
        assert wait_for(lambda: pool.stats()["in_flight"] == 1, 10)
        time.sleep(0.05)  # inside the 300 ms compute
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=5) == 0, procs[0].stderr.read()
        spawn()
        t.join(timeout=15)
        assert got and got[0][0]["topk"][0][0] == int(x.sum()) % 10
        # answered by the stopping worker (its batch ends before the loop sees the signal)
        # or, if that reply was lost with its socket, re-queued to the new one
        assert pool.stats()["requeued"] in (0, 1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        pool.stop()


# --- malformed messages -----------------------------------------------------------------------

def good_request(net, pay, i, **over):
    body = {"v": 1, "id": 1000 + i, "model": net.hash, "split": split_id(net), "codec": "raw",
            "shape": list(pay.data.shape[1:]), "dtype": "u8", "min": float(pay.ranges[i, 0]),
            "max": float(pay.ranges[i, 1]), "payload": pay.data[i].tobytes(), "k": 3}
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def test_malformed_messages(model_path, data):
    net, pay = data["net"], data["payload"]
    good = msgpack.packb(good_request(net, pay, 0), use_bin_type=True)
    huge_bin = b"\x82\xa1v\x01\xa7payload\xc6\xff\xff\xff\xf0\x00"  # bin32 of ~4 GiB, 1 byte
    # (frames, expected status, the request's id: a protocol error returns it when it could
    # be read, a refusal always)
    cases = [
        ([b"", b""], "protocol", None),                      # empty body
        ([b""], "protocol", None),                           # a lone delimiter
        ([os.urandom(64)], "protocol", None),                # random bytes
        ([b"", bytes(range(200))], "protocol", None),
        ([b"", good[: len(good) // 2]], "protocol", None),   # truncated msgpack
        ([b"", msgpack.packb([1, 2, 3])], "protocol", None),  # not a map
        ([b"", msgpack.packb(good_request(net, pay, 1, v="1"), use_bin_type=True)],
         "protocol", 1001),                                  # wrong type
        ([b"", msgpack.packb(good_request(net, pay, 2, shape="big"), use_bin_type=True)],
         "protocol", 1002),
        ([b"", msgpack.packb(good_request(net, pay, 3, payload=list(range(10))),
                             use_bin_type=True)], "protocol", 1003),  # numbers, not bin
        ([b"", msgpack.packb(good_request(net, pay, 4, v=2), use_bin_type=True)],
         "protocol", 1004),                                  # wrong version
        ([b"", huge_bin], "protocol", None),                 # huge declared length
        ([b"", b"a", b"b"], "protocol", None),               # two body frames
        ([b"", msgpack.packb(good_request(net, pay, 5, model="0123456789abcdef"),
                             use_bin_type=True)], "refused", 1005),  # other model
        ([b"", msgpack.packb(good_request(net, pay, 6, split=3), use_bin_type=True)],
         "refused", 1006),                                   # other split
        ([b"", msgpack.packb(good_request(net, pay, 7, shape=[2, 7, 14],
                                          payload=bytes(2 * 7 * 14)), use_bin_type=True)],
         "refused", 1007),                                   # other shape
        ([b"", msgpack.packb(good_request(net, pay, 8, payload=bytes(10)),
                             use_bin_type=True)], "protocol", 1008),  # payload != shape
        ([b"", msgpack.packb(good_request(net, pay, 9, codec="lz4"), use_bin_type=True)],
         "protocol", 1009),                                  # unknown codec
        ([b"", msgpack.packb(good_request(net, pay, 10, codec="zstd"), use_bin_type=True)],
         "protocol", 1010),                                  # not a zstd frame
    ]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    with serving.serve(model_path, workers=2, bind=ANY, threads=1, max_message=64 << 10,
                       heartbeat_interval_ms=HB_MS) as pool:
        sock.connect(pool.endpoint)
        try:
            for frames, want, want_id in cases:
                sock.send_multipart(frames)
                reply = sock.recv_multipart()
                if frames[0] == b"" and len(frames) > 1:
                    assert reply[0] == b"" and len(reply) == 2, (frames, reply)
                rep = msgpack.unpackb(reply[-1], raw=False)
                assert rep["v"] == 1 and rep["status"] == want, (frames[-1][:40], rep)
                assert rep["error"], rep
                if want == "refused" or want_id is None:
                    assert rep["id"] == want_id, rep
                else:
                    assert rep["id"] in (None, want_id), rep
            # over max_message: refused; the reason says so
            big = msgpack.packb(good_request(net, pay, 11, pad=bytes(100 << 10)),
                                use_bin_type=True)
            sock.send_multipart([b"", big])
            rep = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
            assert rep["status"] == "refused", rep
            # the version error names both versions
            sock.send_multipart([b"", msgpack.packb(good_request(net, pay, 4, v=2),
                                                    use_bin_type=True)])
            rep = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
            assert "version" in rep["error"], rep
            # and a good request is still served, with or without the delimiter
            for frames in ([b"", good], [good]):
                sock.send_multipart(frames)
                reply = sock.recv_multipart()
                assert len(reply) == len(frames)
                rep = msgpack.unpackb(reply[-1], raw=False)
                assert rep["status"] == "ok" and rep["id"] == 1000, rep
                assert_topk([tuple(t) for t in rep["topk"]], data["probs"][0], 1e-6)
                assert set(rep["timing"]) >= {"queue_us", "compute_us", "batch"}
            # the C client maps error replies to exceptions
            c = serving.Client(model_path, pool.endpoint)
            assert c.classify(data["images"][:1], k=1)[0].label == int(data["probs"][0].argmax())
            c2 = _C.Client(pool.endpoint, "0123456789abcdef", split_id(net))
            with pytest.raises(bf.Refused, match="model"):
                c2.classify(pay.data[0], pay.ranges[0])
            with pytest.raises(bf.Refused):
                c2.classify(np.zeros((3, 3, 3), np.uint8), np.float32([0, 1]))
            stats = pool.stats()
        finally:
            sock.close()
            ctx.term()
    assert stats["malformed"] >= 12
    assert stats["replies_ok"] == 3


# --- CURVE ------------------------------------------------------------------------------------

def test_curve(model_path, data, tmp_path):
    server_pub = serving.curve_keygen(tmp_path / "server.key")
    client_pub = serving.curve_keygen(tmp_path / "client.key")
    serving.curve_keygen(tmp_path / "other.key")
    assert len(server_pub) == 40 and os.stat(tmp_path / "server.key").st_mode & 0o077 == 0
    (tmp_path / "allow").write_text(f"# admitted clients\npublic = {client_pub}\n")
    pool = serving.serve(model_path, workers=1, bind=ANY, threads=1,
                         curve_key=tmp_path / "server.key", curve_allow=tmp_path / "allow",
                         heartbeat_interval_ms=HB_MS)
    try:
        keyed = serving.Client(model_path, pool.endpoint,
                               curve_server_key=tmp_path / "server.key.pub",
                               curve_key=tmp_path / "client.key")
        r = keyed.classify(data["images"][:2], k=3)
        for res, probs in zip(r, data["probs"][:2]):
            assert_topk(res.topk, probs, 1e-6)
        plain = serving.Client(model_path, pool.endpoint, timeout_ms=300, retries=0)
        with pytest.raises(bf.Timeout, match="CURVE"):
            plain.classify(data["images"][:1])
        stranger = serving.Client(model_path, pool.endpoint, timeout_ms=300, retries=0,
                                  curve_server_key=tmp_path / "server.key.pub",
                                  curve_key=tmp_path / "other.key")
        with pytest.raises(bf.Timeout):
            stranger.classify(data["images"][:1])
        # the server never saw the others' requests
        assert pool.stats()["requests"] == 2
        # a missing key file is an error at once
        with pytest.raises(bf.FileError):
            serving.Client(model_path, pool.endpoint, curve_server_key=tmp_path / "nope")
    finally:
        pool.stop()


def test_curve_keygen_makes_the_secret_private(tmp_path):
    key = tmp_path / "server.key"
    key.write_text("old contents")
    key.chmod(0o644)  # an existing file others can read: keygen must not keep that
    serving.curve_keygen(key)
    assert key.stat().st_mode & 0o777 == 0o600
    assert "secret = " in key.read_text()
    assert (tmp_path / "server.key.pub").stat().st_mode & 0o777 == 0o644
    assert "secret" not in (tmp_path / "server.key.pub").read_text()


def test_curve_backend_admits_listed_workers_only(model_path, data, tmp_path):
    serving.curve_keygen(tmp_path / "server.key")
    good = serving.curve_keygen(tmp_path / "good.key")
    serving.curve_keygen(tmp_path / "rogue.key")
    (tmp_path / "workers").write_text(f"public = {good}\n")
    pool = serving.serve(model_path, workers=0, bind=ANY, backend=ANY,
                         curve_key=tmp_path / "server.key", curve_worker_allow=tmp_path / "workers",
                         heartbeat_interval_ms=HB_MS)
    server_pub = tmp_path / "server.key.pub"
    # started together: by the time the listed one has joined, the others had as long to try
    procs = [start_worker_process(model_path, pool.backend, server_pub, tmp_path / "rogue.key"),
             start_worker_process(model_path, pool.backend),  # plain
             start_worker_process(model_path, pool.backend, server_pub, tmp_path / "good.key")]
    try:
        assert wait_for(lambda: pool.stats()["workers"] >= 1, 60)
        time.sleep(0.5)
        assert pool.stats()["workers"] == 1
        assert all(p.poll() is None for p in procs)  # the refused ones keep trying
        client = serving.Client(model_path, pool.endpoint, curve_server_key=server_pub,
                                timeout_ms=20000, retries=0)
        res = client.classify(data["images"][:2], k=3)
        for r, probs in zip(res, data["probs"][:2]):
            assert_topk(r.topk, probs, 1e-6)
        assert pool.stats()["workers"] == 1
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
        pool.stop()
    with pytest.raises(bf.Error, match="backend"):
        serving.serve(model_path, workers=1, bind=ANY, curve_key=tmp_path / "server.key",
                      curve_worker_allow=tmp_path / "workers")


# --- statistics, draining, errors -------------------------------------------------------------

def test_stats_and_stop_drains(model_path, data):
    net, pay = data["net"], data["payload"]
    pool = serving.serve(model_path, workers=1, bind=ANY, threads=1,
                         heartbeat_interval_ms=HB_MS)
    assert pool.running and pool.endpoint.startswith("tcp://127.0.0.1:")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    sock.connect(pool.endpoint)
    try:
        n = 40
        for i in range(n):
            sock.send_multipart([b"", msgpack.packb(good_request(net, pay, i % 64, id=i),
                                                    use_bin_type=True)])
        # all in the broker's hands (most queued), then stop: every one is answered
        assert wait_for(lambda: pool.stats()["requests"] == n, 10)
        t0 = time.monotonic()
        pool.stop()
        stop_s = time.monotonic() - t0
        assert not pool.running
        got = {}
        for _ in range(n):
            rep = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
            got[rep["id"]] = rep["status"]
        assert sorted(got) == list(range(n))
        assert set(got.values()) == {"ok"}
        stats = pool.stats()
        assert stats["replies_ok"] == n and stats["queued"] == stats["in_flight"] == 0
        assert stop_s < 10
    finally:
        sock.close()
        ctx.term()
    keys = {"requests", "replies_ok", "errors", "malformed", "busy", "requeued", "late_replies",
            "workers_purged", "batches", "workers", "queued", "in_flight", "batch_sizes",
            "queue_us", "compute_us", "total_us", "drain"}
    assert set(stats) == keys
    # the drain began with the requests not yet answered and ended with none
    d = stats["drain"]
    assert d["queued_start"] + d["in_flight_start"] <= n
    assert d["queued_end"] == d["in_flight_end"] == 0
    for stage in ("queue_us", "compute_us", "total_us"):
        h = stats[stage]
        assert h["count"] == stats["replies_ok"] and len(h["buckets"]) == 32
        assert 0 < h["p50"] <= h["p90"] <= h["p99"] <= h["max"]
    assert stats["compute_us"]["p50"] <= stats["total_us"]["p99"]
    pool.stop()  # twice is harmless
    pool.start()  # and it starts again
    c = serving.Client(model_path, pool.endpoint)
    assert len(c.classify(data["images"][:1])) == 1
    pool.stop()


def test_thread_worker_killed(model_path, data):
    with serving.serve(model_path, workers=2, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", run_clients(
            pool.endpoint, data["net"], data["payload"], data["probs"], 3, 200)))
        t.start()
        assert wait_for(lambda: pool.stats()["replies_ok"] >= 50, 20)
        pool.kill_worker(0)
        t.join(timeout=60)
        answered, wrong, errors = result["r"]
        assert not errors and not wrong and (answered == 1).all()
        stats = pool.stats()
        assert stats["workers_purged"] == 1 and stats["workers"] == 1
        with pytest.raises(bf.InvalidArgument):
            pool.kill_worker(5)


def test_errors(model_path, data, tmp_path):
    with pytest.raises(bf.InvalidArgument):
        _C.Pool(frontend=ANY)  # no model, no echo
    with pytest.raises(bf.FileError):
        serving.serve(tmp_path / "missing.bfly", bind=ANY)
    with pytest.raises(bf.NetworkError):
        serving.serve(model_path, bind="bogus://x")
    with pytest.raises(bf.InvalidArgument):
        _C.Client(ANY.replace("*", "1"), "xyz")
    with pytest.raises(bf.InvalidArgument, match="codec"):
        serving.Client(model_path, "tcp://127.0.0.1:1", codec="gzip")
    # nobody listening: a timeout after the retries
    c = serving.Client(model_path, "tcp://127.0.0.1:1", timeout_ms=100, retries=1)
    t0 = time.monotonic()
    with pytest.raises(bf.Timeout, match="2 attempt"):
        c.classify(data["images"][:1])
    assert time.monotonic() - t0 < 5
    with pytest.raises(bf.InvalidArgument):
        c._c.classify(np.zeros((2, 7, 7), np.float32), np.float32([0, 1]))
    with pytest.raises(bf.InvalidArgument):
        c._c.classify(np.zeros((2, 2, 7, 7), np.uint8), np.float32([0, 1]))
    # a network without a butterfly unit has nothing to offload
    plain = bf.resnet18(small=True, num_classes=10, in_channels=1, width=8)
    plain.save(tmp_path / "plain.bfly")
    with pytest.raises(bf.InvalidArgument, match="butterfly"):
        serving.Client(tmp_path / "plain.bfly", "tcp://127.0.0.1:1")
    with pytest.raises(bf.ModelError):
        serving.serve(tmp_path / "plain.bfly", bind=ANY)


def test_echo_pool_and_interrupt():
    """The echo backend (benchmarks) and a signal interrupting a blocked client."""
    echo = {"dims": (2, 4, 4), "classes": 10, "split": 5, "model_hash": "00112233445566aa",
            "delay_us": 300000}
    with _C.Pool(workers=1, frontend=ANY, echo=echo, heartbeat_interval_ms=200) as pool:
        c = _C.Client(pool.endpoint, "00112233445566aa", 5)
        x = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)
        assert c.classify(x, np.float32([0, 1]), k=1)[0]["topk"][0][0] == int(x.sum()) % 10
        # SIGALRM's Python handler raises: the blocked classify (GIL released) gives way
        old = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyError("alarm")))
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(KeyError):
                c.classify(x, np.float32([0, 1]))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    # the echo backend takes a model hash only in the form every other reader takes
    for bad in ("00112233445566AA", "0011223344556g77", "0011223344"):
        with pytest.raises(bf.InvalidArgument, match="16 lowercase hex"):
            _C.Pool(workers=1, frontend=ANY, echo=dict(echo, model_hash=bad))
    # sizes no request could carry are refused when the pool is made, not left to a worker
    # thread that cannot allocate them (it quit, and every request timed out)
    with pytest.raises(TypeError, match=r"\(C, H, W\)"):
        _C.Pool(workers=1, frontend=ANY, echo=dict(echo, dims="abc"))
    for bad in ({"dims": (65536, 65536, 65536)}, {"classes": 2**31 - 1},
                {"delay_us": 2**31 - 1}):
        with pytest.raises(bf.InvalidArgument, match="echo compute"):
            _C.Pool(workers=1, frontend=ANY, echo=dict(echo, **bad))
    # a worker that cannot start (here: 2 x 1,024 requests of 64 MiB to hold) fails the
    # start with its reason, instead of a pool that never answers
    with pytest.raises(bf.OutOfMemory, match="worker 0 could not start: worker buffers"):
        _C.Pool(workers=1, frontend=ANY, batch=1024,
                echo=dict(echo, dims=(1024, 256, 256)))


# --- the command line -------------------------------------------------------------------------

def test_cli_serve_process_and_infer(model_path, data, tmp_path):
    from PIL import Image

    img = (data["images"][0, 0] * 255).round().astype(np.uint8)
    Image.fromarray(img).resize((56, 56)).save(tmp_path / "shoe.png")
    np.save(tmp_path / "two.npy", data["images"][:2])
    server = serving.serve(model_path, workers=1, bind=ANY, threads=1, process=True,
                           heartbeat_interval_ms=HB_MS)
    try:
        assert server.running and server.endpoint.startswith("tcp://127.0.0.1:")
        out = subprocess.run(
            [sys.executable, "-m", "butterfly.cli", "infer", model_path, "--connect",
             server.endpoint, str(tmp_path / "shoe.png"), str(tmp_path / "two.npy"), "-k", "3"],
            check=False, capture_output=True, text=True, timeout=60, env=serving.child_env())
        assert out.returncode == 0, out.stderr
        assert out.stdout.count("1. class") == 3 and "round trip" in out.stdout
        top = int(data["probs"][1].argmax())
        assert bf.datasets.FASHION_MNIST_CLASSES[top] in out.stdout
        # the same images through the Python client
        x = serving.load_images([tmp_path / "shoe.png", tmp_path / "two.npy"], (1, 28, 28))
        assert x.shape == (3, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
        np.testing.assert_array_equal(x[1:], data["images"][:2])
    finally:
        stats = server.stop(timeout=30)
    assert server.proc.returncode == 0
    assert stats["replies_ok"] == 3 and stats["total_us"]["count"] == 3


def test_exit_stats_show_a_stuck_request(model_path):
    """A worker that takes a request and never answers: the statistics `serve` prints on
    exit show it in flight when the drain began and still when it ended (they used to
    print queued and in flight as 0, zeroed before printing)."""
    net = bf.load(model_path)
    shape = net.mobile(np.zeros((1, *net.input_shape), np.float32)).data.shape[1:]
    server = serving.serve(model_path, workers=0, bind=ANY, backend=ANY, threads=1,
                           process=True, drain_timeout_ms=300)
    ctx = zmq.Context()
    mute = ctx.socket(zmq.DEALER)  # says READY, takes a request, says nothing more
    mute.setsockopt(zmq.LINGER, 0)
    mute.setsockopt(zmq.RCVTIMEO, 10000)
    got = []
    try:
        mute.connect(server.backend)
        mute.send_multipart([b"BFW1", b"\x01", (1).to_bytes(4, "little")])
        c = _C.Client(server.endpoint, net.hash, split_id(net), timeout_ms=20000, retries=0)
        t = threading.Thread(target=lambda: got.append(pytest.raises(
            bf.Busy, c.classify, np.zeros(shape, np.uint8), np.float32([0, 1]))))
        t.start()
        for _ in range(100):  # the request, dispatched to it (after heartbeats, maybe)
            frames = mute.recv_multipart()
            if frames[1] != b"\x04":
                break
        assert frames[:2] == [b"BFW1", b"\x02"]
        stats = server.stop(timeout=30)
        t.join(timeout=30)
    finally:
        server.kill()
        mute.close()
        ctx.term()
    assert got, "the client was not answered"
    assert stats["drain"] == {"queued_start": 0, "in_flight_start": 1, "queued_end": 0,
                              "in_flight_end": 1}, stats
    assert "drain: began with 0 queued, 1 in flight; ended with 0 queued, 1 in flight" \
        in server.output, server.output


def test_cli_parser():
    from butterfly.cli import build_parser

    p = build_parser()
    a = p.parse_args(["infer", "m.bfly", "x.png", "--backend", "opencl", "--connect",
                      "tcp://127.0.0.1:5555"])
    assert a.backend == "opencl" and a.images == ["x.png"]
    a = p.parse_args(["serve", "m.bfly", "--workers", "3", "--batch", "8",
                      "--batch-timeout-us", "2000", "--curve-key", "k"])
    assert (a.workers, a.batch, a.batch_timeout_us, a.curve_key) == (3, 8, 2000, "k")
    a = p.parse_args(["worker", "m.bfly", "--connect", "tcp://127.0.0.1:5556"])
    assert a.connect == "tcp://127.0.0.1:5556" and a.curve_key is None and a.prefetch == -1
    a = p.parse_args(["worker", "m.bfly", "--curve-server-key", "s.pub", "--curve-key", "w",
                      "--prefetch", "0"])
    assert (a.curve_server_key, a.curve_key, a.prefetch) == ("s.pub", "w", 0)
    a = p.parse_args(["serve", "m.bfly", "--curve-key", "k", "--curve-worker-allow", "wl"])
    assert a.curve_worker_allow == "wl" and a.rt_priority == 0
    for cmd in ("serve", "worker", "loadtest"):
        assert p.parse_args([cmd, "m.bfly", "--rt-priority", "7"]).rt_priority == 7


# --- the load generator and prefetch -----------------------------------------------------

def test_load_test_closed_and_open_loop(model_path, data):
    with serving.serve(model_path, workers=1, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        client = serving.Client(model_path, pool.endpoint)
        rep = client.load_test(data["images"][:16], clients=3, seconds=0.5)
        assert rep.errors == 0 and rep.ok == rep.sent > 10
        assert len(rep.latency_us) == len(rep.compute_us) == len(rep.batch) == rep.ok
        assert len(rep.queue_us) == rep.ok
        assert (rep.compute_us > 0).all()
        assert (rep.latency_us >= rep.compute_us.astype(np.int64) + rep.queue_us).all()
        assert (rep.batch == 1).all()
        assert 0.45 < rep.seconds < 10 and rep.throughput == pytest.approx(rep.ok / rep.seconds)
        s = rep.summary()
        assert s["p50_us"] <= s["p90_us"] <= s["p99_us"] and s["mean_batch"] == 1.0
        # open loop: 120 requests/s for 0.5 s -> exactly 60 requests, on payloads given
        rep2 = client.load_test(payload=data["payload"], clients=2, seconds=0.5, rate=120)
        assert rep2.sent == rep2.ok == 60 and rep2.errors == 0 and rep2.rate == 120
        # each latency began at its request's due time, j / 120 s after the start
        assert np.abs(np.sort(rep2.start_us) - np.arange(60) * 1e6 / 120).max() <= 1
        assert (rep.start_us + rep.latency_us <= rep.seconds * 1e6 + 1).all()
        stats = pool.stats()
    # the pool also answered each connection's one warm-up round trip (3 + 2)
    assert stats["replies_ok"] == rep.ok + rep2.ok + 3 + 2


def test_load_test_errors(model_path, data):
    with serving.serve(model_path, workers=1, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        client = serving.Client(model_path, pool.endpoint)
        with pytest.raises(bf.Error, match="images or payload"):
            client.load_test()
        with pytest.raises(bf.Error, match="n_clients"):
            client.load_test(data["images"][:2], clients=0)
        with pytest.raises(bf.Error, match="seconds"):
            client.load_test(data["images"][:2], seconds=-1)
        raw = _C.Client(pool.endpoint, data["net"].hash, split_id(data["net"]))
        pay = data["payload"]
        with pytest.raises(bf.Error):
            raw.load_test(pay.data.astype(np.float32), pay.ranges)
        with pytest.raises(bf.Error):
            raw.load_test(pay.data, pay.ranges[:3])
        # a pool serving another model refuses every request: counted, not raised
        other = _C.Client(pool.endpoint, "ffffffffffffffff", split_id(data["net"]))
        res = other.load_test(pay.data, pay.ranges, seconds=0.2)
        assert res["ok"] == 0 and res["errors"] == res["sent"] > 0
        assert res["last_error"] == "refused"
        s = serving.LoadReport(clients=1, rate=0.0, **res).summary()
        assert s["p50_us"] is None and s["p99_us"] is None and s["mean_batch"] is None
    # nothing listening: the warm-up round trip times out and the test fails at once
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    client = serving.Client(model_path, dead, timeout_ms=200)
    t = time.perf_counter()
    with pytest.raises(bf.Timeout, match="no answer from"):
        client.load_test(data["images"][:2], clients=2, seconds=5)
    assert time.perf_counter() - t < 3


def test_prefetch_setting(model_path, data):
    for prefetch in (0, 3):
        with serving.serve(model_path, workers=1, bind=ANY, threads=1, batch=2,
                           prefetch=prefetch, heartbeat_interval_ms=HB_MS) as pool:
            client = serving.Client(model_path, pool.endpoint)
            got = client.classify_payload(data["payload"], k=1)
            assert [r.label for r in got] == list(data["probs"].argmax(1))
    with pytest.raises(bf.Error, match="prefetch"):
        serving.serve(model_path, workers=1, bind=ANY, prefetch=-2)


def test_cli_loadtest(model_path):
    with serving.serve(model_path, workers=1, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        out = subprocess.run(
            [sys.executable, "-m", "butterfly.cli", "loadtest", model_path, "--connect",
             pool.endpoint, "--clients", "2", "--seconds", "0.5", "--rate", "40", "--rate",
             "80", "--images", "8", "--json"],
            check=False, capture_output=True, text=True, timeout=60, env=serving.child_env())
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert [(r["rate"], r["sent"], r["ok"], r["errors"]) for r in rows] == \
        [(40.0, 20, 20, 0), (80.0, 40, 40, 0)]
    assert "req/s" in out.stdout and "p99" in out.stdout


# --- real-time scheduling ----------------------------------------------------------------

def thread_policies(pid="self"):
    """{thread name: [(scheduling policy, real-time priority), ...]} of a process's
    threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out.setdefault(f.read().strip(), []).append(
                    (os.sched_getscheduler(int(tid)), os.sched_getparam(int(tid)).sched_priority))
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile
    return out


def test_rt_priority(model_path, data):
    with pytest.raises(bf.InvalidArgument, match="rt_priority"):
        serving.serve(model_path, workers=1, bind=ANY, rt_priority=99)
    try:
        pool = serving.serve(model_path, workers=2, bind=ANY, threads=1, rt_priority=10,
                             heartbeat_interval_ms=HB_MS)
    except bf.Refused as e:  # not root, no CAP_SYS_NICE: the C test covers the refusal
        assert "SCHED_FIFO refused" in str(e)
        pytest.skip(f"real-time scheduling not allowed here: {e}")
    fifo = os.SCHED_FIFO
    try:
        assert wait_for(lambda: len(thread_policies().get("bf-heartbeat", ())) == 2, 10)
        pol = thread_policies()
        # at the priority asked, the workers' heartbeat threads one higher
        for name, prio in (("bf-worker0", 10), ("bf-worker1", 10), ("bf-broker", 10),
                           ("bf-heartbeat", 11)):
            assert set(pol[name]) == {(fifo, prio)}, (name, pol)
        assert (fifo, 10) in pol["ZMQbg/IO/0"]  # the pool's I/O thread (a client's is not)
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller as it was
        client = serving.Client(model_path, pool.endpoint)
        got = client.classify_payload(data["payload"], k=1)
        assert [r.label for r in got] == list(data["probs"].argmax(1))
        rep = client.load_test(payload=data["payload"], clients=2, seconds=0.3,
                               rt_priority=20)
        assert rep.errors == 0 and rep.ok > 0
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        pool.stop()
    # the command line: `butterfly serve --rt-priority` in a child process
    server = serving.serve(model_path, workers=1, bind=ANY, threads=1, process=True,
                           rt_priority=5, heartbeat_interval_ms=HB_MS)
    try:
        assert wait_for(lambda: "bf-heartbeat" in thread_policies(server.pid), 10)
        pol = thread_policies(server.pid)
        assert set(pol["bf-broker"]) == set(pol["bf-worker0"]) == {(fifo, 5)}
        assert set(pol["bf-heartbeat"]) == {(fifo, 6)}
        assert os.sched_getparam(server.pid).sched_priority == 0  # its main thread: normal
        client = serving.Client(model_path, server.endpoint)
        got = client.classify_payload(data["payload"], k=1)
        assert [r.label for r in got] == list(data["probs"].argmax(1))
    finally:
        server.stop()
    # `butterfly worker --rt-priority`: its loop (on the main thread) and I/O thread at the
    # priority, its heartbeat thread one higher, until SIGTERM
    pool = serving.serve(model_path, workers=0, bind=ANY, backend=ANY,
                         heartbeat_interval_ms=HB_MS)
    proc = start_worker_process(model_path, pool.backend, extra=("--rt-priority", "7"))
    try:
        assert wait_for(lambda: pool.stats()["workers"] == 1, 30), pool.stats()
        assert wait_for(lambda: "bf-heartbeat" in thread_policies(proc.pid), 10)
        pol = thread_policies(proc.pid)
        assert os.sched_getscheduler(proc.pid) == fifo
        assert os.sched_getparam(proc.pid).sched_priority == 7
        assert set(pol["bf-heartbeat"]) == {(fifo, 8)} and (fifo, 7) in pol["ZMQbg/IO/0"]
        got = serving.Client(model_path, pool.endpoint).classify_payload(data["payload"], k=1)
        assert [r.label for r in got] == list(data["probs"].argmax(1))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pool.stop()


def test_a_range_whose_span_overflows_is_refused_everywhere(model_path):
    # both bounds finite, max - min not: the dequantizer would make NaN / Inf of it
    net = bf.load(model_path)
    shape = net.mobile(np.zeros((1, 1, 28, 28), np.float32)).data.shape
    d = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    bad = np.array([[-2e38, 2e38]], np.float32)
    with pytest.raises(bf.InvalidArgument, match="max - min"):
        net.cloud((d, bad))
    client = bf.Client(model_path, "tcp://127.0.0.1:1", timeout_ms=200, retries=0)
    with pytest.raises(bf.InvalidArgument, match="max - min"):
        client.classify_payload((d, bad))
    with pytest.raises(bf.InvalidArgument, match="max - min"):  # before any connection
        client.load_test(payload=(d, bad), seconds=0.1)


def test_payloads_sent_as_given_are_checked_not_cast(model_path):
    net = bf.load(model_path)
    pay = net.mobile(np.zeros((1, 1, 28, 28), np.float32))
    client = bf.Client(model_path, "tcp://127.0.0.1:1", timeout_ms=200, retries=0)
    with pytest.raises(bf.InvalidArgument, match="uint8"):  # 0.7 would have become 0
        client.classify_payload((np.full(pay.data.shape, 0.7), pay.ranges))
    with pytest.raises(bf.InvalidArgument, match="uint8"):
        client.load_test(payload=(pay.data.astype(np.float32), pay.ranges), seconds=0.1)
    with pytest.raises(bf.InvalidArgument, match="N >= 1"):
        client.classify_payload((pay.data[:0], pay.ranges[:0]))
    with pytest.raises(bf.InvalidArgument, match="ranges must be"):
        client.classify_payload((pay.data, np.zeros(3, np.float32)))
    with pytest.raises(bf.InvalidArgument, match="must be"):
        client.classify_payload(pay.data)  # not a (data, ranges) pair
    # one payload (C, H, W) with its (min, max): a batch of one
    data, ranges = bf.network.payload_arrays((pay.data[0], pay.ranges[0]))
    assert data.shape == pay.data.shape and ranges.shape == (1, 2)


def test_key_files_endless_or_directories_refused_pipes_read(model_path, tmp_path):
    # /dev/zero as a key file or an allow list was read for ever
    with pytest.raises(bf.InvalidArgument, match="not a key file"):
        bf.Client(model_path, "tcp://127.0.0.1:1", curve_server_key="/dev/zero")
    with pytest.raises(bf.InvalidArgument, match="not a key file"):
        bf.serve(model_path, bind="tcp://127.0.0.1:*", curve_key="/dev/zero")
    key = tmp_path / "server.key"
    serving.curve_keygen(key)
    with pytest.raises(bf.FileError, match="is a directory"):
        bf.serve(model_path, bind="tcp://127.0.0.1:*", curve_key=key, curve_allow=tmp_path)
    # a key handed over through a pipe (another program's output) is read
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    pub = (tmp_path / "server.key.pub").read_text()
    writer = threading.Thread(target=lambda: fifo.write_text(pub))
    writer.start()
    try:
        client = bf.Client(model_path, "tcp://127.0.0.1:1", curve_server_key=fifo)
    finally:
        writer.join(10)
    del client
    # keygen never replaces something that is not a regular file
    with pytest.raises(bf.FileError, match="not a regular file"):
        serving.curve_keygen(fifo)
    assert fifo.is_fifo()


def test_a_server_process_that_cannot_start_raises_its_own_error(tmp_path):
    bad = tmp_path / "corrupt.bfly"
    bad.write_bytes(b"\x93\x01\x02\x03")
    with pytest.raises(bf.ModelError, match="corrupt.bfly"):  # was NetworkError
        serving.serve(bad, bind=ANY, process=True)
    with pytest.raises(bf.FileError, match="missing.bfly"):
        serving.serve(tmp_path / "missing.bfly", bind=ANY, process=True)


FIFO_PROBE = r"""
import os, sys
import butterfly as bf
model, fifo = sys.argv[1], sys.argv[2]
try:
    bf.load(fifo)
except bf.FileError as e:
    assert "not a regular file" in str(e), e
else:
    raise SystemExit("a FIFO loaded as a model")
try:  # a key file on a pipe nobody writes to: refused after a bounded wait
    bf.Client(model, "tcp://127.0.0.1:1", curve_server_key=fifo)
except bf.FileError as e:
    assert "nothing wrote" in str(e), e
else:
    raise SystemExit("an empty pipe read as a key")
print("ok")
"""


def test_a_fifo_without_writer_is_refused_not_waited_on(model_path, tmp_path):
    # opening a FIFO for reading blocks until a writer appears: the model file and the key
    # were opened before they were checked, and bf.load / `butterfly serve` hung for ever
    fifo = tmp_path / "net.fifo"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-c", FIFO_PROBE, model_path, str(fifo)],
                         capture_output=True, text=True, timeout=60, env=serving.child_env())
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    out = subprocess.run([sys.executable, "-m", "butterfly.cli", "serve", str(fifo), "--bind",
                          ANY], capture_output=True, text=True, timeout=60,
                         env=serving.child_env())
    assert out.returncode == 2 and "not a regular file" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_ranges_that_overflow_are_numeric_locally_and_in_the_pool(model_path, data):
    # (min, max) both 3.4e38 passed the range check: the restored feature held Inf and the
    # pool answered "ok" with the top-k of garbage; with 3e38 the local cloud() returned NaN
    # logits; tail() of a 3.4e38 feature returned finite logits (a ReLU had turned the NaN
    # into 0).  Rule: every value a layer computes must be finite, else NumericError.
    net, pay = data["net"], data["payload"]
    bad = [(3.4e38, 3.4e38), (3e38, 3e38), (-3e38, 0.0)]
    for lo, hi in bad:
        with pytest.raises(bf.NumericError, match="NaN or Inf"):
            net.cloud((pay.data[:1], np.float32([[lo, hi]])))
    with pytest.raises(bf.NumericError, match="NaN or Inf"):
        net.restore((pay.data[:1], np.float32([[3.4e38, 3.4e38]])))
    f = net.restore((pay.data[:1], pay.ranges[:1]))
    with pytest.raises(bf.NumericError, match="NaN or Inf"):
        net.tail(np.full_like(f, 3.4e38))
    # the pool agrees; in a batch only the bad request fails, the others are answered
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 20000)
    n = 2 + len(bad)
    with serving.serve(model_path, workers=1, bind=ANY, threads=1, batch=n,
                       batch_timeout_us=300_000, heartbeat_interval_ms=HB_MS) as pool:
        sock.connect(pool.endpoint)
        try:
            for i in range(n):
                over = {} if i < 2 else {"min": bad[i - 2][0], "max": bad[i - 2][1]}
                sock.send_multipart([b"", msgpack.packb(good_request(net, pay, i, **over),
                                                        use_bin_type=True)])
            reps = [msgpack.unpackb(sock.recv_multipart()[-1], raw=False) for _ in range(n)]
        finally:
            sock.close()
            ctx.term()
    by_id = {r["id"] - 1000: r for r in reps}
    assert sorted(by_id) == list(range(n))
    for i in range(2):
        assert by_id[i]["status"] == "ok", by_id[i]
        assert_topk([tuple(t) for t in by_id[i]["topk"]], data["probs"][i], 1e-5)
    for i in range(2, n):
        assert by_id[i]["status"] == "numeric" and "NaN or Inf" in by_id[i]["error"], by_id[i]


def test_error_replies_are_valid_utf8(model_path, data):
    # the decoder quoted the first 32 bytes of an unknown codec, cutting a two-byte
    # character: the reply's "error" was no valid UTF-8 and a strict decoder (msgpack's
    # default, as here) failed on the whole reply
    net, pay = data["net"], data["payload"]
    codecs = ["x" + "é" * 18, "é" * 20, "\udcff\udced" + "a" * 40]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    with serving.serve(model_path, workers=1, bind=ANY, threads=1,
                       heartbeat_interval_ms=HB_MS) as pool:
        sock.connect(pool.endpoint)
        try:
            for i, codec in enumerate(codecs):
                raw = codec.encode("utf-8", "surrogateescape")  # the last: not UTF-8 at all
                body = good_request(net, pay, i, codec="@" * len(raw))
                msg = msgpack.packb(body, use_bin_type=True)
                msg = msg.replace(("@" * len(raw)).encode(), raw)
                sock.send_multipart([b"", msg])
                rep = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)  # strict UTF-8
                assert rep["status"] == "protocol" and "unknown codec" in rep["error"], rep
                assert rep["id"] == 1000 + i
        finally:
            sock.close()
            ctx.term()
