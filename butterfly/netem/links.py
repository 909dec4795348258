"""Emulated radio links, measured for real: two network namespaces joined by a veth pair.

The "phone" namespace's end of the veth shapes its egress (the uplink) with a token bucket
(``tc qdisc ... tbf rate R mbit burst B latency L``) and, where the kernel has sch_netem, a
fixed delay (``netem delay D ms``).  The pool runs in the "cloud" namespace, the client in
the phone's, as subprocesses under ``ip netns exec``; private addresses are used only inside
the namespaces made here, and the namespaces (with their veth) are always deleted.

    >>> ok, why = available()
    >>> with Link(rate_mbit=5.85) as link:
    ...     seconds = transfer_seconds(link, 200_000)     # ~ 8 * 200000 / 5.85e6

A token bucket lets up to `burst` bytes through at line rate after an idle period, so a
message smaller than the burst (one packet) is not slowed down: tbf alone is faithful for
transfers of many packets and optimistic for tiny ones (netem's per-packet ``rate``, which
would serialize them, is not in every kernel; it is not in this one).  So measure() also
puts the phone's radio transmitter in the path by default: a relay in the phone namespace
(``_serializer``) that sends the uplink's bytes store-and-forward, a message of n bytes
leaving n x 8 / R seconds after the transmitter is free, as the cost model's upload term
says; the downlink is relayed at once.  The relay also measures the bytes each request
really puts on the uplink (payload plus the protocol's framing).

Needs root and iproute2 (ip, tc); available() says why not otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from typing import Any

import numpy as np

from ..serving import child_env
from .trace import TracePlayer

BURST_BYTES = 1600  # one Ethernet frame + headroom: the smallest burst tbf accepts in practice
QUEUE_LATENCY_MS = 4000  # tbf's queue bound (packets waiting longer are dropped)
START_TIMEOUT_S = 60.0
CMD_TIMEOUT_S = 30.0
SPIN_S = 0.0005  # the serializer busy-waits the last 0.5 ms of a transmission


def available() -> tuple[bool, str]:
    """(True, "") when namespaces can be made here, else (False, the reason)."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces and tc)"
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return False, f"'{tool}' not found (apt-get install iproute2)"
    name = f"bfchk{secrets.token_hex(3)}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                       timeout=CMD_TIMEOUT_S)
    if r.returncode != 0:
        return False, f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=CMD_TIMEOUT_S)
    return True, ""


def wait_until(due: float) -> None:
    """Returns at time.perf_counter() == due: sleeps to within SPIN_S of it, then spins (a
    sleeping thread wakes ~0.1-0.3 ms late here, most of a small request's transmission)."""
    while (left := due - time.perf_counter()) > SPIN_S:
        time.sleep(left - SPIN_S)
    while time.perf_counter() < due:
        pass


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs a command (ip, tc) with a timeout; RuntimeError with its stderr when it fails."""
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r


class Link:
    """A cloud namespace and a phone namespace joined by a veth pair; the phone's uplink
    shaped to rate_mbit (None: unshaped) with an optional delay.  A context manager."""

    def __init__(self, rate_mbit: float | None = None, delay_ms: float = 0.0,
                 burst_bytes: int = BURST_BYTES, serialize: bool = True):
        tok = secrets.token_hex(3)
        self.ns = {"cloud": f"bf{tok}c", "phone": f"bf{tok}p"}
        self.dev = {"cloud": f"bfv{tok}c", "phone": f"bfv{tok}p"}
        octet = 16 + secrets.randbelow(200)
        self.ip = {"cloud": f"192.168.{octet}.1", "phone": f"192.168.{octet}.2"}
        self.rate_mbit = rate_mbit
        self.delay_ms = delay_ms
        self.burst_bytes = burst_bytes
        self.serialize = serialize  # measure() relays the uplink through _serializer
        self.hold_ms = 0.0  # unshaped + serialize: hold each message this long (calibration)
        self.notes: list[str] = []
        self._tbf_parent: list[str] | None = None
        self._procs: list[subprocess.Popen] = []
        self._made: list[str] = []

    def __enter__(self) -> Link:
        try:
            for side in ("cloud", "phone"):
                sh("ip", "netns", "add", self.ns[side])
                self._made.append(self.ns[side])
            sh("ip", "link", "add", self.dev["cloud"], "type", "veth", "peer", "name",
                self.dev["phone"])
            for side in ("cloud", "phone"):
                ns, dev = self.ns[side], self.dev[side]
                sh("ip", "link", "set", dev, "netns", ns)
                sh("ip", "-n", ns, "addr", "add", f"{self.ip[side]}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            if self.rate_mbit is not None or self.delay_ms:
                self.shape(self.rate_mbit, self.delay_ms)
        except BaseException:
            self.close()
            raise
        return self

    def shape(self, rate_mbit: float | None, delay_ms: float = 0.0) -> None:
        """(Re)shapes the phone's uplink: tbf at rate_mbit, plus netem delay if asked."""
        ns, dev = self.ns["phone"], self.dev["phone"]
        sh("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)
        parent = ["root"]
        if delay_ms:
            r = sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
                    "handle", "1:", "netem", "delay", f"{delay_ms}ms", check=False)
            if r.returncode == 0:
                parent = ["parent", "1:1"]
            else:
                self.notes.append(f"no netem delay ({r.stderr.strip()}): delay {delay_ms} ms "
                                  "not applied")
        if rate_mbit is not None:
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, *parent,
                "tbf", "rate", f"{rate_mbit}mbit", "burst", str(self.burst_bytes),
                "latency", f"{QUEUE_LATENCY_MS}ms")
        self._tbf_parent = parent if rate_mbit is not None else None
        self.rate_mbit, self.delay_ms = rate_mbit, delay_ms

    def set_rate(self, rate_mbit: float) -> None:
        """Changes the uplink's rate while traffic runs: the tbf is changed in place, so the
        packets queued at that moment are kept (a new qdisc would drop them)."""
        if self._tbf_parent is None:
            self.shape(rate_mbit, self.delay_ms)
            return
        sh("ip", "netns", "exec", self.ns["phone"], "tc", "qdisc", "change", "dev",
           self.dev["phone"], *self._tbf_parent, "tbf", "rate", f"{rate_mbit}mbit", "burst",
           str(self.burst_bytes), "latency", f"{QUEUE_LATENCY_MS}ms")
        self.rate_mbit = rate_mbit

    def follow(self, trace, serializers=(), t0: float | None = None):
        """A :class:`TracePlayer` (not started: use it as a context manager) that gives the
        uplink, and the phone's serializers, each phase's rate of `trace` at its time."""
        return TracePlayer(self, trace, serializers, t0)

    def popen(self, side: str, args: list[str], **kw) -> subprocess.Popen:
        """Starts `args` in the namespace of `side` ("cloud" | "phone"); killed on close."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[side], *args], **kw)
        self._procs.append(p)
        return p

    def run(self, side: str, args: list[str], timeout: float = 120.0, env=None) -> str:
        """Runs `args` in a namespace to completion (bounded); returns its stdout."""
        p = self.popen(side, args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise RuntimeError(f"{args[:3]}... ran past {timeout} s") from None
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:4])}... exited {p.returncode}: {err[-2000:]}")
        return out

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self._procs.clear()
        for ns in self._made:  # deleting a namespace deletes its end of the veth (and so both)
            sh("ip", "netns", "del", ns, check=False)
        self._made.clear()

    def __exit__(self, *exc) -> None:
        self.close()


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "butterfly.netem.programs", *args]


def program_env() -> dict:
    """Children importable from anywhere, one oneDNN thread each and no OpenMP spinning: the
    pool, the cloud-only server and the client share the machine's cores, and spinning
    threads of one would steal the cores the others need (seen as ~100 ms stalls)."""

    env = child_env()
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    return env


def transfer_seconds(link: Link, nbytes: int, timeout: float = 120.0) -> float:
    """Seconds the cloud side takes to receive nbytes the phone sends over one TCP
    connection (first byte to last, measured at the receiver)."""
    port = "9000"
    srv = link.popen("cloud", _py("_sink", link.ip["cloud"], port), stdout=subprocess.PIPE,
                     text=True, env=program_env())
    line = srv.stdout.readline()  # "listening"
    if not line.startswith("listening"):
        raise RuntimeError("the receiver did not start")
    link.run("phone", _py("_source", link.ip["cloud"], port, str(nbytes)), timeout=timeout,
             env=program_env())
    try:
        out, _ = srv.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        srv.kill()
        raise RuntimeError("the receiver did not finish") from None
    got, seconds = out.split()
    if int(got) != nbytes:
        raise RuntimeError(f"received {got} of {nbytes} bytes")
    return float(seconds)


def round_trip_ms(link: Link, nbytes: int, count: int = 20, gap_ms: float = 20.0,
                  timeout: float = 120.0) -> float:
    """Median round trip (ms) of an nbytes message from the phone to a cloud server that
    answers each with one byte, over one TCP connection, `gap_ms` of idle between them,
    through the phone's serializer when link.serialize (then a message of n bytes takes
    ~8n/R more than unshaped; through tbf alone, one that fits the refilled burst does not)."""
    port = 9001
    srv = link.popen("cloud", _py("_echo", link.ip["cloud"], str(port)), stdout=subprocess.PIPE,
                     text=True, env=program_env())
    if not srv.stdout.readline().startswith("listening"):
        raise RuntimeError("the echo server did not start")
    host, relay = link.ip["cloud"], None
    try:
        if link.serialize:
            relay = start_serializer(link, [(19001, host, port)])
            host, port = "127.0.0.1", 19001
        out = link.run("phone", _py("_pinger", host, str(port), str(nbytes), str(count),
                                    str(gap_ms)), timeout=timeout, env=program_env())
    finally:
        for p in (relay, srv):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    return float(out.split()[-1])


def start_server(link: Link, args: list[str]) -> tuple[subprocess.Popen, str]:
    """Starts a server (prints "frontend <endpoint>" then "ready") in the cloud namespace."""
    p = link.popen("cloud", args, stdout=subprocess.PIPE, text=True, env=program_env())
    deadline = time.monotonic() + START_TIMEOUT_S
    endpoint = None
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        key, _, value = line.strip().partition(" ")
        if key == "frontend":
            endpoint = value
        elif key == "ready" and endpoint:
            return p, endpoint
    raise RuntimeError(f"server {args[2:4]} did not start")


def start_serializer(link: Link, maps: list[tuple[int, str, int]],
                     rate: str | None = None) -> subprocess.Popen:
    """The phone's transmitter: relays 127.0.0.1:lport -> host:port for each map, the
    uplink serialized at link.rate_mbit (None: relayed at once, or after link.hold_ms), or
    at `rate` ("none", "hold=MS" or Mbit/s) when given.  Its stdin takes "rate MBPS" lines
    (:func:`butterfly.netem.set_serializer_rate`)."""
    if rate is None:
        rate = ("none" if not link.hold_ms else f"hold={link.hold_ms}") \
            if link.rate_mbit is None else str(link.rate_mbit)
    p = link.popen("phone", _py("_serializer", rate, *(f"{lp}:{h}:{pt}" for lp, h, pt in maps)),
                   stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=program_env())
    line = p.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError("the uplink serializer did not start")
    return p


def stop_serializer(p: subprocess.Popen) -> dict[str, Any]:
    """SIGTERM; returns its statistics {lport: {"bursts": n, "median_bytes": b}}."""
    import signal

    p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=CMD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        p.kill()
        raise RuntimeError("the uplink serializer did not stop") from None
    return json.loads(out.strip().splitlines()[-1])


def measure(link: Link, model_path, images: np.ndarray, codec: str = "zstd",
            requests: int = 20, timeout: float = 300.0) -> dict[str, Any]:
    """End-to-end latency over `link`, one image per request (medians, ms):
    split = head + reduce here + upload + restore + tail at the pool + reply;
    cloud-only = upload the JPEG of the image + decode + the plain network + reply.
    With link.serialize, also the bytes one request puts on the uplink for each path
    (`split_request_bytes`, `cloud_request_bytes`: medians, framing included)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "images.npy")
        np.save(npy, images[:requests])
        pool, pool_ep = start_server(link, [
            sys.executable, "-m", "butterfly", "serve", os.fspath(model_path),
            "--workers", "1", "--threads", "1", "--bind", f"tcp://{link.ip['cloud']}:5555"])
        jsrv, jpeg_ep = start_server(link, _py("_jpeg_server", os.fspath(model_path),
                                                f"tcp://{link.ip['cloud']}:5556"))
        relay = None
        try:
            if link.serialize:
                relay = start_serializer(link, [(15555, link.ip["cloud"], 5555),
                                                 (15556, link.ip["cloud"], 5556)])
                pool_ep, jpeg_ep = "tcp://127.0.0.1:15555", "tcp://127.0.0.1:15556"
            out = link.run("phone", _py("_client", os.fspath(model_path), pool_ep, jpeg_ep,
                                        npy, codec, str(requests)), timeout=timeout,
                           env=program_env())
            res = json.loads(out.strip().splitlines()[-1])
            if relay is not None:
                st = stop_serializer(relay)
                res["split_request_bytes"] = st["15555"]["median_bytes"]
                res["cloud_request_bytes"] = st["15556"]["median_bytes"]
        finally:
            for p in (pool, jsrv, relay):
                if p is None or p.poll() is not None:
                    continue
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    return res
