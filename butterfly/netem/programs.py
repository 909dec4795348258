"""The programs that run inside the namespaces, each as ``python -m
butterfly.netem.programs <name> ...``: TCP sink / source / echo / pinger, the phone's uplink
serializer, the cloud-only JPEG server and the measuring client."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from ..data import jpeg
from ..network import Network, coded_sizes, plain_network
from ..serving import Client
from .links import CMD_TIMEOUT_S, wait_until


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
    included, since the client waits for every answer).  A line "rate MBPS" on stdin
    changes the rate from then on (a trace playing)."""
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
        with lock:
            if bps is None and not hold:
                return
            due = t_free[0] = max(time.perf_counter(), t_free[0]) + (
                hold if bps is None else n * 8 / bps)
        wait_until(due)

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
    def control() -> None:
        """Rate changes on stdin ("rate MBPS" lines), as a trace plays."""
        nonlocal bps
        for line in sys.stdin:
            key, _, value = line.strip().partition(" ")
            if key == "rate" and not hold:
                with lock:
                    bps = None if value == "none" else float(value) * 1e6

    threading.Thread(target=control, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    print("ready", flush=True)
    while not stop.wait(0.2):
        pass
    print(json.dumps({k: {"bursts": len(v), "median_bytes": float(np.median(v)) if v else 0.0}
                      for k, v in bursts.items()}), flush=True)
    os._exit(0)


def _jpeg_server(model_path: str, bind: str) -> None:
    """Cloud-only: JPEG in, top-5 of the plain network out, with the server's time in us
    (until SIGTERM).  A model with a butterfly unit serves its plain architecture (random
    weights: for timing); a plain model file serves itself."""
    import signal

    import zmq


    net = Network.load(model_path)
    if net.butterfly:
        net = plain_network(net)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(bind)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(f"frontend {bind}", flush=True)
    print("ready", flush=True)
    while True:
        data = sock.recv()
        t0 = time.perf_counter()
        img = jpeg.decode(data)
        x = (img.astype(np.float32) / 255.0).reshape(1, *net.input_shape)
        top = net.predict(x, k=5)[0]
        server_us = (time.perf_counter() - t0) * 1e6
        sock.send(json.dumps({"top": [int(c) for c in top], "server_us": server_us}).encode())


def _client(model_path: str, pool_ep: str, jpeg_ep: str, npy: str, codec: str,
            requests: str) -> None:
    import zmq


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
        sys.exit(f"usage: python -m butterfly.netem.programs {{{','.join(cmds)}}} ...")
    cmds[sys.argv[1]](*sys.argv[2:])
