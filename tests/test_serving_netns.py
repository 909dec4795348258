"""The pool against peers that vanish, in network namespaces made here (root only).

The pool runs in a "cloud" namespace; phones and worker processes in namespaces of their
own, each joined to the cloud by a veth pair.  A phone vanishes the way a phone does: its
link is deleted before its process dies, so no FIN ever reaches the pool.  The pool is an
echo pool in a child process that answers "stats" on stdin; its clients that are not meant
to vanish reach it over an ipc endpoint (the file system is shared across namespaces).
Every wait is bounded.
"""

import json
import os
import secrets
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from butterfly import _C, netem, serving

ok, why = netem.available()
pytestmark = pytest.mark.skipif(not ok, reason=f"network namespaces unavailable: {why}")

ECHO = {"dims": (2, 4, 4), "classes": 10, "split": 5, "model_hash": "00112233445566aa"}
X = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)
CONN = {"conn_heartbeat_ms": 200, "conn_timeout_ms": 600}  # a vanished peer: gone in 0.8 s

POOL = r"""
import json, resource, sys
from butterfly import _C
kw = json.loads(sys.argv[1])
limit = kw.pop("nofile", None)
if limit:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
pool = _C.Pool(echo=kw.pop("echo"), **kw)
print(json.dumps({"frontend": pool.endpoint, "backend": pool.backend}), flush=True)
for line in sys.stdin:
    if line.strip() != "stats":
        break
    print(json.dumps(pool.stats()), flush=True)
pool.stop()
"""

PHONES = r"""
import sys
import numpy as np
from butterfly import _C
ep, n = sys.argv[1], int(sys.argv[2])
x = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)
ok = 0
for _ in range(n):
    # no heartbeats of their own: finding a vanished phone is the pool's job
    c = _C.Client(ep, "00112233445566aa", 5, timeout_ms=3000, retries=0, conn_heartbeat_ms=0)
    try:
        c.classify(x, np.float32([0, 1]), k=1)
        ok += 1
    except _C.Error as e:
        print("error", type(e).__name__, e, flush=True)
    globals().setdefault("held", []).append(c)  # the connection stays open
print("answered", ok, flush=True)
try:  # the first connection once more: served whatever came after it
    held[0].classify(x, np.float32([0, 1]), k=1)
    print("again ok", flush=True)
except _C.Error as e:
    print("again", type(e).__name__, e, flush=True)
sys.stdin.read()
"""

WORKER = r"""
import json, sys
from butterfly import serving
serving.worker(None, sys.argv[1], **json.loads(sys.argv[2]))
"""


def wait_for(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


class Net:
    """A cloud namespace and phones joined to it, each by its own veth and /24."""

    def __init__(self, tmp_path):
        self.tok = secrets.token_hex(2)
        self.cloud = f"bf{self.tok}c"
        self.net = 16 + secrets.randbelow(200)
        self.tmp = tmp_path
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.phones = 0

    def __enter__(self):
        netem.sh("ip", "netns", "add", self.cloud)
        self.made.append(self.cloud)
        netem.sh("ip", "-n", self.cloud, "link", "set", "lo", "up")
        return self

    def phone(self):
        """A new phone namespace and its link; (namespace, its veth, the cloud's address)."""
        i = self.phones = self.phones + 1
        ns, dev, peer = f"bf{self.tok}p{i}", f"bv{self.tok}p{i}", f"bv{self.tok}c{i}"
        netem.sh("ip", "netns", "add", ns)
        self.made.append(ns)
        netem.sh("ip", "link", "add", dev, "type", "veth", "peer", "name", peer)
        netem.sh("ip", "link", "set", dev, "netns", ns)
        netem.sh("ip", "link", "set", peer, "netns", self.cloud)
        cloud_ip, phone_ip = f"10.{self.net}.{i}.1", f"10.{self.net}.{i}.2"
        netem.sh("ip", "-n", self.cloud, "addr", "add", f"{cloud_ip}/24", "dev", peer)
        netem.sh("ip", "-n", ns, "addr", "add", f"{phone_ip}/24", "dev", dev)
        netem.sh("ip", "-n", self.cloud, "link", "set", peer, "up")
        netem.sh("ip", "-n", ns, "link", "set", dev, "up")
        return ns, dev, cloud_ip

    def popen(self, ns, code, *args, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                             env=serving.child_env(), text=True, **kw)
        self.procs.append(p)
        return p

    def vanish(self, ns, dev, proc):
        """The phone's link goes, then its process: nothing of it reaches the cloud."""
        netem.sh("ip", "-n", ns, "link", "del", dev)
        proc.kill()
        proc.wait(timeout=10)

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for ns in reversed(self.made):
            netem.sh("ip", "netns", "del", ns, check=False)


class PoolProcess:
    def __init__(self, net, **kw):
        kw.setdefault("echo", ECHO)
        self.p = net.popen(net.cloud, POOL, json.dumps(kw), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.p.stdout.readline()
        assert line, self.p.stderr.read()
        ends = json.loads(line)
        self.frontend, self.backend = ends["frontend"], ends["backend"]

    def stats(self):
        self.p.stdin.write("stats\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def fds(self):
        return len(os.listdir(f"/proc/{self.p.pid}/fd"))

    def stop(self):
        self.p.stdin.write("stop\n")
        self.p.stdin.flush()
        _, err = self.p.communicate(timeout=30)
        return err


def phones(net, endpoint, n):
    """n phones in a new namespace, each answered once; (ns, dev, their process)."""
    ns, dev, _ = net.phone()
    p = net.popen(ns, PHONES, endpoint, str(n), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lines = []
    while not (lines and lines[-1].startswith("again")):
        line = p.stdout.readline()
        assert line, lines
        lines.append(line.strip())
    return ns, dev, p, lines


def test_vanished_phones_leave_no_connection(tmp_path):
    """10 phones answered, then gone without a word: the pool's descriptors come back to
    what they were within its connection heartbeats' timeout."""
    with Net(tmp_path) as net:
        pool = PoolProcess(net, workers=1, frontend="tcp://*:*", **CONN)
        port = pool.frontend.rsplit(":", 1)[1]
        base = pool.fds()
        ns, dev, p, lines = phones(net, f"tcp://10.{net.net}.1.1:{port}", 10)
        assert lines[-2:] == ["answered 10", "again ok"], lines
        assert pool.fds() >= base + 10
        net.vanish(ns, dev, p)
        assert wait_for(lambda: pool.fds() <= base, 10), (pool.fds(), base)
        pool.stop()


def test_pool_at_a_low_descriptor_limit_keeps_serving(tmp_path):
    """A pool allowed a handful of spare descriptors serves round after round of phones
    that vanish, more in all than its limit; at the limit it serves the connections it
    has and says so on stderr."""
    with Net(tmp_path) as net:
        # find the pool's own needs, then allow it 8 descriptors more
        probe = PoolProcess(net, workers=1, frontend="tcp://*:*", **CONN)
        need = probe.fds()
        probe.stop()
        limit = need + 8
        pool = PoolProcess(net, workers=1, frontend="tcp://*:*", nofile=limit, **CONN)
        port = pool.frontend.rsplit(":", 1)[1]
        base = pool.fds()
        assert base <= need
        vanished = 0
        for _ in range(3):
            ns, dev, p, lines = phones(net, f"tcp://10.{net.net}.{net.phones + 1}.1:{port}", 6)
            assert lines[-2:] == ["answered 6", "again ok"], lines
            net.vanish(ns, dev, p)
            vanished += 6
            assert wait_for(lambda: pool.fds() <= base, 10), (pool.fds(), base)
        assert vanished > limit - base
        # at the limit: 12 phones for 8 descriptors; those let in are served, the first
        # of them again after the others were turned away
        ns, dev, p, lines = phones(net, f"tcp://10.{net.net}.{net.phones + 1}.1:{port}", 12)
        answered = int(lines[-2].split()[1])
        assert 1 <= answered < 12 and lines[-1] == "again ok", lines
        net.vanish(ns, dev, p)
        assert wait_for(lambda: pool.fds() <= base, 10), (pool.fds(), base)
        # and a new phone is served again
        ns, dev, p, lines = phones(net, f"tcp://10.{net.net}.{net.phones + 1}.1:{port}", 1)
        assert lines[-2:] == ["answered 1", "again ok"], lines
        err = pool.stop()
        assert "no descriptor left for a new client connection" in err, err
        assert "ulimit -n" in err, err


@pytest.mark.parametrize("flap", ["link", "address"])
def test_a_worker_whose_link_flaps_has_its_requests_requeued_at_once(tmp_path, flap):
    """A worker process loses its link long enough to give the broker up and reconnect
    (flap "link": its link down for 1.2 s; "address": it changes address, so its old
    connection stays half-open at the broker): the request the broker had sent it is
    re-queued at once -- when the old connection is found gone, or when the worker, back
    under its own routing id, says READY -- not when the broker's patience (5 s here)
    runs out; no ghost of it is left."""
    sock = tmp_path / "fe.sock"
    with Net(tmp_path) as net:
        ns, dev, cloud_ip = net.phone()
        # the broker's patience 200 ms x 25 = 5 s; the worker's 200 ms x 3 = 0.6 s, so it
        # reconnects while the broker still holds its entry (as when the broker heard it
        # last a little later than it heard the broker)
        pool = PoolProcess(net, workers=0, frontend=f"ipc://{sock}",
                           backend=f"tcp://{cloud_ip}:*", heartbeat_interval_ms=200,
                           heartbeat_liveness=25)
        worker_kw = {"heartbeat_interval_ms": 200, "heartbeat_liveness": 3, "echo": ECHO,
                     "reconnect_max_ms": 200}
        net.popen(ns, WORKER, pool.backend, json.dumps(worker_kw))
        assert wait_for(lambda: pool.stats()["workers"] == 1, 30)
        c = _C.Client(pool.frontend, ECHO["model_hash"], 5, timeout_ms=15000, retries=0)
        assert c.classify(X, np.float32([0, 1]), k=1)[0]["topk"][0][0] == int(X.sum()) % 10
        phone_ip = cloud_ip.rsplit(".", 1)[0] + ".2"
        if flap == "link":
            netem.sh("ip", "-n", ns, "link", "set", dev, "down")
        else:  # its packets from the old address go nowhere, and no FIN ever comes
            netem.sh("ip", "-n", ns, "addr", "del", f"{phone_ip}/24", "dev", dev)
            netem.sh("ip", "-n", ns, "addr", "add", f"{phone_ip[:-1]}3/24", "dev", dev)
        t0 = time.monotonic()
        try:
            got = []
            t = threading.Thread(target=lambda: got.append(
                c.classify(X, np.float32([0, 1]), k=1)))
            t.start()
            assert wait_for(lambda: pool.stats()["in_flight"] == 1, 5)
            if flap == "link":
                time.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))
        finally:
            if flap == "link":
                netem.sh("ip", "-n", ns, "link", "set", dev, "up")
        t.join(timeout=20)
        latency = time.monotonic() - t0
        assert got and got[0][0]["topk"][0][0] == int(X.sum()) % 10
        assert latency < 3.0, latency  # before: ~4.8 s, the broker's patience
        stats = pool.stats()
        assert stats["requeued"] >= 1 and stats["workers"] == 1, stats
        pool.stop()
