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

BURST_BYTES = 1600  # one Ethernet frame + headroom: the smallest burst tbf accepts in practice
QUEUE_LATENCY_MS = 4000  # tbf's queue bound (packets waiting longer are dropped)
START_TIMEOUT_S = 60.0
CMD_TIMEOUT_S = 30.0
SPIN_S = 0.0005  # the serializer busy-waits the last 0.5 ms of a transmission
HOLD_MS = 1.0  # compare(): the unshaped calibration holds each message this long


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


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
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
        self._procs: list[subprocess.Popen] = []
        self._made: list[str] = []

    def __enter__(self) -> Link:
        try:
            for side in ("cloud", "phone"):
                _sh("ip", "netns", "add", self.ns[side])
                self._made.append(self.ns[side])
            _sh("ip", "link", "add", self.dev["cloud"], "type", "veth", "peer", "name",
                self.dev["phone"])
            for side in ("cloud", "phone"):
                ns, dev = self.ns[side], self.dev[side]
                _sh("ip", "link", "set", dev, "netns", ns)
                _sh("ip", "-n", ns, "addr", "add", f"{self.ip[side]}/24", "dev", dev)
                _sh("ip", "-n", ns, "link", "set", dev, "up")
                _sh("ip", "-n", ns, "link", "set", "lo", "up")
            if self.rate_mbit is not None or self.delay_ms:
                self.shape(self.rate_mbit, self.delay_ms)
        except BaseException:
            self.close()
            raise
        return self

    def shape(self, rate_mbit: float | None, delay_ms: float = 0.0) -> None:
        """(Re)shapes the phone's uplink: tbf at rate_mbit, plus netem delay if asked."""
        ns, dev = self.ns["phone"], self.dev["phone"]
        _sh("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)
        parent = ["root"]
        if delay_ms:
            r = _sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
                    "handle", "1:", "netem", "delay", f"{delay_ms}ms", check=False)
            if r.returncode == 0:
                parent = ["parent", "1:1"]
            else:
                self.notes.append(f"no netem delay ({r.stderr.strip()}): delay {delay_ms} ms "
                                  "not applied")
        if rate_mbit is not None:
            _sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, *parent,
                "tbf", "rate", f"{rate_mbit}mbit", "burst", str(self.burst_bytes),
                "latency", f"{QUEUE_LATENCY_MS}ms")
        self.rate_mbit, self.delay_ms = rate_mbit, delay_ms

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
            _sh("ip", "netns", "del", ns, check=False)
        self._made.clear()

    def __exit__(self, *exc) -> None:
        self.close()


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "butterfly.netem", *args]


def _env() -> dict:
    """Children importable from anywhere, one oneDNN thread each and no OpenMP spinning: the
    pool, the cloud-only server and the client share the machine's cores, and spinning
    threads of one would steal the cores the others need (seen as ~100 ms stalls)."""
    from .serving import child_env

    env = child_env()
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    return env


def transfer_seconds(link: Link, nbytes: int, timeout: float = 120.0) -> float:
    """Seconds the cloud side takes to receive nbytes the phone sends over one TCP
    connection (first byte to last, measured at the receiver)."""
    port = "9000"
    srv = link.popen("cloud", _py("_sink", link.ip["cloud"], port), stdout=subprocess.PIPE,
                     text=True, env=_env())
    line = srv.stdout.readline()  # "listening"
    if not line.startswith("listening"):
        raise RuntimeError("the receiver did not start")
    link.run("phone", _py("_source", link.ip["cloud"], port, str(nbytes)), timeout=timeout,
             env=_env())
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
                     text=True, env=_env())
    if not srv.stdout.readline().startswith("listening"):
        raise RuntimeError("the echo server did not start")
    host, relay = link.ip["cloud"], None
    try:
        if link.serialize:
            relay = _start_serializer(link, [(19001, host, port)])
            host, port = "127.0.0.1", 19001
        out = link.run("phone", _py("_pinger", host, str(port), str(nbytes), str(count),
                                    str(gap_ms)), timeout=timeout, env=_env())
    finally:
        for p in (relay, srv):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    return float(out.split()[-1])


def _start_server(link: Link, args: list[str]) -> tuple[subprocess.Popen, str]:
    """Starts a server (prints "frontend <endpoint>" then "ready") in the cloud namespace."""
    p = link.popen("cloud", args, stdout=subprocess.PIPE, text=True, env=_env())
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


def _start_serializer(link: Link, maps: list[tuple[int, str, int]]) -> subprocess.Popen:
    """The phone's transmitter: relays 127.0.0.1:lport -> host:port for each map, the
    uplink serialized at link.rate_mbit (None: relayed at once, or after link.hold_ms)."""
    rate = ("none" if not link.hold_ms else f"hold={link.hold_ms}") if link.rate_mbit is None \
        else str(link.rate_mbit)
    p = link.popen("phone", _py("_serializer", rate, *(f"{lp}:{h}:{pt}" for lp, h, pt in maps)),
                   stdout=subprocess.PIPE, text=True, env=_env())
    line = p.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError("the uplink serializer did not start")
    return p


def _stop_serializer(p: subprocess.Popen) -> dict[str, Any]:
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
        pool, pool_ep = _start_server(link, [
            sys.executable, "-m", "butterfly.cli", "serve", os.fspath(model_path),
            "--workers", "1", "--threads", "1", "--bind", f"tcp://{link.ip['cloud']}:5555"])
        jsrv, jpeg_ep = _start_server(link, _py("_jpeg_server", os.fspath(model_path),
                                                f"tcp://{link.ip['cloud']}:5556"))
        relay = None
        try:
            if link.serialize:
                relay = _start_serializer(link, [(15555, link.ip["cloud"], 5555),
                                                 (15556, link.ip["cloud"], 5556)])
                pool_ep, jpeg_ep = "tcp://127.0.0.1:15555", "tcp://127.0.0.1:15556"
            out = link.run("phone", _py("_client", os.fspath(model_path), pool_ep, jpeg_ep,
                                        npy, codec, str(requests)), timeout=timeout,
                           env=_env())
            res = json.loads(out.strip().splitlines()[-1])
            if relay is not None:
                st = _stop_serializer(relay)
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


def compare(model_path, images: np.ndarray, model, codec: str = "zstd", requests: int = 20,
            nets=None, serialize: bool = True, log=print) -> list[dict[str, Any]]:
    """Per network: the measured split and cloud-only latency against the cost model's
    prediction (`model`: a costmodel.CostModel whose profiles describe this machine; its
    network is replaced by each one in turn), with the relative error.

    Two predictions per path.  "paper": the paper's formula as it stands (compute + 8D/NB,
    D = the payload, or the JPEG).  "ext": the same with the cost model's extensions,
    each measured rather than assumed: D = the bytes a request really puts on the uplink
    (payload and framing, from the serializer) and rtt_ms = the fixed transport time of
    the path (the unshaped link's measured latency less the modelled compute; the mean of
    a run before and one after the shaped ones), so it tests the one thing a link changes:
    the upload term.  The ext figures need serialize=True."""
    import dataclasses

    from . import costmodel
    from .experiments import _candidate, payload_bytes
    from .network import Network

    net = Network.load(model_path)
    cand0 = _candidate(net, net.butterfly["after"], payload_bytes(net))

    def unshaped() -> dict[str, Any]:
        # the unshaped path, each message held a fixed HOLD_MS before it is sent (subtracted):
        # after an idle gap the path wakes up more slowly than back to back, and a shaped
        # link always has that gap, so the floor is measured with one
        with Link(rate_mbit=None, serialize=True) as link:
            link.hold_ms = HOLD_MS
            b = measure(link, model_path, images, codec, requests)
        return {"split_ms": b["split_ms"] - HOLD_MS, "cloud_ms": b["cloud_ms"] - HOLD_MS,
                "jpeg_bytes": b["jpeg_bytes"]}

    radios = list((nets or costmodel.networks).values())
    # the floor is the mean of a run before and one after the shaped ones (the machine drifts)
    bases = [unshaped()] if serialize else []
    measured = []
    for radio in radios:
        with Link(rate_mbit=radio.uplink_mbps, serialize=serialize) as link:
            measured.append((radio, measure(link, model_path, images, codec, requests),
                             link.notes))
    floor = None
    if serialize:
        bases.append(unshaped())
        base = {k: float(np.mean([b[k] for b in bases])) for k in bases[0]}
        fast = dataclasses.replace(model, network=costmodel.Network("unshaped", 1e6, 0.0, 0.0))
        compute_split = fast.cost(cand0)
        compute_cloud = fast.cloud_only(round(base["jpeg_bytes"]))
        # a transport time cannot be negative: it comes out so when the profile's compute ran
        # on a busier machine than the unshaped requests did (seen under load); then 0
        floor = {"split_ms": max(0.0, base["split_ms"] - compute_split.mobile_ms
                                 - compute_split.cloud_ms),
                 "cloud_ms": max(0.0, base["cloud_ms"] - compute_cloud.cloud_ms),
                 "unshaped_split_ms": base["split_ms"], "unshaped_cloud_ms": base["cloud_ms"]}
        log(f"  unshaped: split {base['split_ms']:.2f} ms, cloud-only {base['cloud_ms']:.2f} ms"
            f" -> transport floor (rtt_ms) {floor['split_ms']:.2f} / {floor['cloud_ms']:.2f} ms")
    rows = []
    for radio, m, notes in measured:
        cm = dataclasses.replace(model, network=radio)
        cand = dataclasses.replace(cand0, payload_bytes=round(m["payload_bytes"]))
        pred_split = cm.cost(cand)
        pred_cloud = cm.cloud_only(round(m["jpeg_bytes"]))
        row = {"network": radio.name, "uplink_mbps": radio.uplink_mbps,
               "payload_bytes": m["payload_bytes"], "jpeg_bytes": m["jpeg_bytes"],
               "split_ms": m["split_ms"], "split_pred_ms": pred_split.latency_ms,
               "split_err": m["split_ms"] / pred_split.latency_ms - 1.0,
               "cloud_ms": m["cloud_ms"], "cloud_pred_ms": pred_cloud.latency_ms,
               "cloud_err": m["cloud_ms"] / pred_cloud.latency_ms - 1.0,
               "split_energy_mj": pred_split.energy_mj, "cloud_energy_mj": pred_cloud.energy_mj,
               "speedup_measured": m["cloud_ms"] / m["split_ms"], "serialized": serialize,
               "notes": notes}
        line = (f"  {radio.name:6} split {row['split_ms']:7.2f} ms (model "
                f"{row['split_pred_ms']:7.2f}, {100 * row['split_err']:+.0f} %")
        cloud = (f"cloud-only {row['cloud_ms']:7.2f} ms (model {row['cloud_pred_ms']:7.2f}, "
                 f"{100 * row['cloud_err']:+.0f} %")
        if floor is not None:
            split_b, cloud_b = m["split_request_bytes"], m["cloud_request_bytes"]
            ext_s = dataclasses.replace(
                cm, network=dataclasses.replace(radio, rtt_ms=floor["split_ms"])).cost(
                dataclasses.replace(cand0, payload_bytes=round(split_b)))
            ext_c = dataclasses.replace(
                cm, network=dataclasses.replace(radio, rtt_ms=floor["cloud_ms"])).cloud_only(
                round(cloud_b))
            row.update(split_request_bytes=split_b, cloud_request_bytes=cloud_b,
                       rtt_split_ms=floor["split_ms"], rtt_cloud_ms=floor["cloud_ms"],
                       split_pred_ext_ms=ext_s.latency_ms,
                       split_err_ext=m["split_ms"] / ext_s.latency_ms - 1.0,
                       cloud_pred_ext_ms=ext_c.latency_ms,
                       cloud_err_ext=m["cloud_ms"] / ext_c.latency_ms - 1.0)
            line += f"; with extensions {row['split_pred_ext_ms']:.2f}, " \
                    f"{100 * row['split_err_ext']:+.0f} %"
            cloud += f"; with extensions {row['cloud_pred_ext_ms']:.2f}, " \
                     f"{100 * row['cloud_err_ext']:+.0f} %"
        rows.append(row)
        log(f"{line})   {cloud})   measured speed-up {row['speedup_measured']:.1f}x")
    return rows


# --- helpers run inside the namespaces (python -m butterfly.netem <cmd> ...) ----------------

def _listen(host: str, port: str, backlog: int = 1):
    """A listening TCP socket (accept times out after CMD_TIMEOUT_S); prints "listening"."""
    import socket

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(backlog)
    s.settimeout(CMD_TIMEOUT_S)
    print("listening", flush=True)
    return s


def _sink(host: str, port: str) -> None:
    s = _listen(host, port)
    c, _ = s.accept()
    c.settimeout(120)
    n, t0 = 0, None
    while True:
        d = c.recv(1 << 16)
        if t0 is None:
            t0 = time.perf_counter()
        if not d:
            break
        n += len(d)
    print(n, time.perf_counter() - t0, flush=True)


def _source(host: str, port: str, nbytes: str) -> None:
    import socket

    s = socket.create_connection((host, int(port)), timeout=CMD_TIMEOUT_S)
    s.sendall(b"\x5a" * int(nbytes))
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()


def _echo(host: str, port: str) -> None:
    """Answers every message (read whole: a 4-byte length prefix, then the body) with 1 byte."""
    import socket

    s = _listen(host, port, 4)
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = c.makefile("rb")
        while len(head := f.read(4)) == 4:
            f.read(int.from_bytes(head, "little"))
            c.sendall(b"k")
        c.close()


def _pinger(host: str, port: str, nbytes: str, count: str, gap_ms: str) -> None:
    """Sends `count` messages of nbytes (prefix included) one at a time, gap_ms apart;
    prints the median round trip in ms."""
    import socket

    n = int(nbytes)
    msg = (n - 4).to_bytes(4, "little") + b"\x5a" * (n - 4)
    s = socket.create_connection((host, int(port)), timeout=CMD_TIMEOUT_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for i in range(int(count) + 1):
        t0 = time.perf_counter()
        s.sendall(msg)
        if s.recv(1) != b"k":
            raise SystemExit("echo server went away")
        if i:  # the first one warms the path up
            times.append((time.perf_counter() - t0) * 1e3)
        time.sleep(float(gap_ms) / 1e3)
    print(float(np.median(times)), flush=True)


def _serializer(rate: str, *maps: str) -> None:
    """The phone's radio transmitter (run in the phone namespace): for each "lport:host:port"
    accepts on 127.0.0.1:lport and relays to host:port.  Uplink bytes are sent store-and-
    forward through one shared transmitter at `rate` Mbit/s ("none": at once; "hold=H":
    each message H ms after the transmitter is free, whatever its size): n bytes read from
    a client leave n x 8 / R after the transmitter is free.  Downlink bytes are
    relayed at once.  On SIGTERM prints one JSON line: per lport the median size of the
    uplink bursts (bytes sent between two downlink messages: one request each, framing
    included, since the client waits for every answer)."""
    import signal
    import socket
    import threading

    hold = float(rate[5:]) / 1e3 if rate.startswith("hold=") else 0.0
    bps = None if rate == "none" or hold else float(rate) * 1e6
    lock = threading.Lock()
    t_free = [0.0]
    bursts: dict[str, list[int]] = {}
    stop = threading.Event()

    def transmit(n: int) -> None:
        if bps is None and not hold:
            return
        with lock:
            due = t_free[0] = max(time.perf_counter(), t_free[0]) + (
                hold if bps is None else n * 8 / bps)
        # sleep to within SPIN_S of the due time, then spin: a sleeping thread wakes late
        # by ~0.1-0.3 ms here, which is most of a small request's transmission time
        while (left := due - time.perf_counter()) > SPIN_S:
            time.sleep(left - SPIN_S)
        while time.perf_counter() < due:
            pass

    def relay(cli: socket.socket, srv: socket.socket, lport: str) -> None:
        pending = [0]
        plock = threading.Lock()

        def close_both() -> None:
            """Either direction ending ends the other (its recv returns)."""
            for s in (srv, cli):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def up() -> None:
            try:
                while d := cli.recv(1 << 16):
                    transmit(len(d))
                    with plock:
                        pending[0] += len(d)
                    srv.sendall(d)
            except OSError:
                pass
            close_both()

        def down() -> None:
            try:
                while d := srv.recv(1 << 16):
                    with plock:
                        if pending[0]:
                            bursts[lport].append(pending[0])
                            pending[0] = 0
                    cli.sendall(d)
            except OSError:
                pass
            close_both()

        for f in (up, down):
            threading.Thread(target=f, daemon=True).start()

    def serve(ls: socket.socket, host: str, port: int, lport: str) -> None:
        while not stop.is_set():
            try:
                cli, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            srv = socket.create_connection((host, port), timeout=CMD_TIMEOUT_S)
            srv.settimeout(None)
            cli.settimeout(None)
            for s in (cli, srv):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            relay(cli, srv, lport)

    for m in maps:
        lport, host, port = m.split(":")
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", int(lport)))
        ls.listen(16)
        ls.settimeout(0.2)
        bursts[lport] = []
        threading.Thread(target=serve, args=(ls, host, int(port), lport), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    print("ready", flush=True)
    while not stop.wait(0.2):
        pass
    print(json.dumps({k: {"bursts": len(v), "median_bytes": float(np.median(v)) if v else 0.0}
                      for k, v in bursts.items()}), flush=True)
    os._exit(0)


def _jpeg_server(model_path: str, bind: str) -> None:
    """Cloud-only: JPEG in, top-5 of the plain network out (until SIGTERM)."""
    import signal

    import zmq

    from . import jpeg
    from .experiments import plain_network
    from .network import Network

    net = plain_network(Network.load(model_path))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(bind)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(f"frontend {bind}", flush=True)
    print("ready", flush=True)
    while True:
        data = sock.recv()
        img = jpeg.decode(data)
        x = (img.astype(np.float32) / 255.0).reshape(1, *net.input_shape)
        top = net.predict(x, k=5)[0]
        sock.send(json.dumps([int(c) for c in top]).encode())


def _client(model_path: str, pool_ep: str, jpeg_ep: str, npy: str, codec: str,
            requests: str) -> None:
    import zmq

    from . import jpeg
    from .experiments import coded_sizes
    from .serving import Client

    images = np.load(npy)[: int(requests)]
    client = Client(model_path, pool_ep, codec=codec, timeout_ms=20000, retries=0)
    client.classify(images[:1], k=1)  # connects, warms up
    split = []
    for i in range(len(images)):
        t0 = time.perf_counter()
        client.classify(images[i:i + 1], k=5)
        split.append((time.perf_counter() - t0) * 1e3)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(jpeg_ep)
    u8 = jpeg.to_uint8_hwc(images)
    blobs = [jpeg.encode(im) for im in u8]
    sock.send(blobs[0])
    sock.recv()
    cloud = []
    for b in blobs:
        t0 = time.perf_counter()
        sock.send(b)
        if not sock.poll(60000):
            raise SystemExit("cloud-only server did not answer")
        sock.recv()
        cloud.append((time.perf_counter() - t0) * 1e3)
    sizes = coded_sizes(client.half.mobile(images))
    print(json.dumps({"split_ms": float(np.median(split)), "cloud_ms": float(np.median(cloud)),
                      "payload_bytes": sizes["zstd" if codec == "zstd" else "raw"],
                      "jpeg_bytes": float(np.mean([len(b) for b in blobs])),
                      "requests": len(images)}), flush=True)


if __name__ == "__main__":
    cmds = {"_sink": _sink, "_source": _source, "_jpeg_server": _jpeg_server,
            "_client": _client, "_serializer": _serializer, "_echo": _echo,
            "_pinger": _pinger}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(f"usage: python -m butterfly.netem {{{','.join(cmds)}}} ...")
    cmds[sys.argv[1]](*sys.argv[2:])
