"""Serving: the cloud half as a ZeroMQ worker pool, and the phone half as its client.

The pool, its workers and the client are C (csrc/serve, docs/PROTOCOL.md); this module
starts and stops them, runs the mobile half locally and measures each stage.

    >>> pool = serve("net.bfly", workers=2, bind="tcp://127.0.0.1:5555")
    >>> client = Client("net.bfly", pool.endpoint)
    >>> client.classify(images, k=5)[0].topk      # [(class, probability), ...]
    >>> pool.stop()                               # drains: every request is answered

Command line: ``butterfly serve``, ``butterfly worker``, ``butterfly infer``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from . import _C
from .models import int_arg
from .network import RESTORE, load, payload_arrays

DEFAULT_BIND = "tcp://127.0.0.1:5555"
TOPK_MAX = _C.TOPK_MAX  # most classes a reply carries
Pool = _C.Pool
# ZeroMQ's heartbeats on every TCP connection (docs/PROTOCOL.md section 1): a peer that
# vanished without closing has its connection closed within heartbeat + timeout
CONN_HEARTBEAT_MS = _C.CONN_HEARTBEAT_MS
CONN_TIMEOUT_MS = _C.CONN_TIMEOUT_MS
CONN_TTL_MS = _C.CONN_TTL_MS


# --- the cloud half ----------------------------------------------------------------------

def serve(model_path, workers: int = 2, bind: str = DEFAULT_BIND, *, backend: str | None = None,
          batch: int = 1, batch_timeout_us: int = 1000, threads: int = 0,
          queue_max: int = 1024, max_message: int = 8 << 20, curve_key=None,
          curve_allow=None, drain_timeout_ms: int = 5000, queue_timeout_ms: int = 10000,
          heartbeat_interval_ms: int = 1000, heartbeat_liveness: int = 3,
          prefetch: int = -1, curve_worker_allow=None, rt_priority: int = 0,
          conn_heartbeat_ms: int = CONN_HEARTBEAT_MS, conn_timeout_ms: int = CONN_TIMEOUT_MS,
          conn_ttl_ms: int = CONN_TTL_MS, process: bool = False,
          startup_timeout: float = 60.0):
    """Serves restore + tail of a model file; returns a started :class:`Pool`.

    bind: the frontend clients connect to ("tcp://127.0.0.1:*" picks a free port; read
    ``.endpoint``).  backend: an endpoint for ``butterfly worker`` processes (None: the
    pool's own worker threads only).  batch / batch_timeout_us: dynamic batching (a worker
    runs up to `batch` requests that arrived within the timeout as one batch).  prefetch:
    requests a worker holds beyond its batch, so the next batch is there when one ends (-1:
    one batch more; 0: strict least-recently-used dispatch).  threads:
    oneDNN threads per worker (0: the cores shared out).  curve_key: the server's key pair
    (:func:`curve_keygen`); curve_allow: a file of client public keys to admit;
    curve_worker_allow: a file of worker public keys, which turns CURVE on for the backend
    endpoint too (only listed ``butterfly worker`` processes may join).  rt_priority:
    1..98 runs the broker, the workers and the ZeroMQ I/O threads under SCHED_FIFO at that
    priority (the workers' heartbeat threads one higher), so that no other process (a
    kernel daemon, a log shipper) takes their CPU in the middle of a request; it needs
    root or CAP_SYS_NICE (else :class:`Refused`), and a pool that keeps every core busy
    then leaves other processes 5 % of the CPU.  conn_heartbeat_ms / conn_timeout_ms /
    conn_ttl_ms: ZeroMQ's heartbeats on every client and worker connection, so that a
    client that vanished without closing (a phone that lost its network) has its
    connection, and its descriptor, closed within conn_heartbeat_ms + conn_timeout_ms (0:
    off).  The pool raises the process's descriptor soft limit to the hard one; at the
    limit it serves the connections it has, refuses new ones and says so on stderr.

    process=True starts ``butterfly serve`` in a child process instead and returns a
    :class:`ServerProcess` (same ``endpoint`` / ``backend`` / ``stop()``, plus ``kill()``).
    """
    if process:
        return ServerProcess.start(
            model_path, workers=workers, bind=bind, backend=backend, batch=batch,
            batch_timeout_us=batch_timeout_us, threads=threads, queue_max=queue_max,
            curve_key=curve_key, curve_allow=curve_allow, drain_timeout_ms=drain_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms, prefetch=prefetch,
            curve_worker_allow=curve_worker_allow, rt_priority=rt_priority,
            queue_timeout_ms=queue_timeout_ms, heartbeat_liveness=heartbeat_liveness,
            conn_heartbeat_ms=conn_heartbeat_ms, conn_timeout_ms=conn_timeout_ms,
            conn_ttl_ms=conn_ttl_ms, timeout=startup_timeout)
    return Pool(os.fspath(model_path), workers=workers, frontend=bind, backend=backend,
                batch=batch, batch_timeout_us=batch_timeout_us, threads=threads,
                queue_max=queue_max, max_message=max_message, curve_key=curve_key,
                curve_allow=curve_allow, drain_timeout_ms=drain_timeout_ms,
                queue_timeout_ms=queue_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms,
                heartbeat_liveness=heartbeat_liveness, prefetch=prefetch,
                curve_worker_allow=curve_worker_allow, rt_priority=rt_priority,
                conn_heartbeat_ms=conn_heartbeat_ms, conn_timeout_ms=conn_timeout_ms,
                conn_ttl_ms=conn_ttl_ms)


def child_env() -> dict:
    """The environment for a `python -m butterfly.cli` child: this package importable
    from any working directory (an in-place build is not on sys.path elsewhere)."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class ServerProcess:
    """``butterfly serve`` running in a child process (so that it can be killed)."""

    def __init__(self, proc: subprocess.Popen, endpoint: str, backend: str | None):
        self.proc = proc
        self.endpoint = endpoint
        self.backend = backend
        self.final_stats: dict | None = None
        self.output = ""  # what it printed after "ready", once stopped

    @classmethod
    def start(cls, model_path, *, workers=2, bind=DEFAULT_BIND, backend=None, batch=1,
              batch_timeout_us=1000, threads=0, queue_max=1024, curve_key=None,
              curve_allow=None, drain_timeout_ms=5000, heartbeat_interval_ms=1000,
              prefetch=-1, curve_worker_allow=None, rt_priority=0, queue_timeout_ms=10000,
              heartbeat_liveness=3, conn_heartbeat_ms=CONN_HEARTBEAT_MS,
              conn_timeout_ms=CONN_TIMEOUT_MS, conn_ttl_ms=CONN_TTL_MS,
              timeout=60.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "butterfly.cli", "serve", os.fspath(model_path),
               "--workers", str(workers), "--bind", bind, "--batch", str(batch),
               "--batch-timeout-us", str(batch_timeout_us), "--threads", str(threads),
               "--queue-max", str(queue_max), "--drain-timeout-ms", str(drain_timeout_ms),
               "--heartbeat-interval-ms", str(heartbeat_interval_ms),
               "--prefetch", str(prefetch), "--rt-priority", str(rt_priority),
               "--queue-timeout-ms", str(queue_timeout_ms),
               "--heartbeat-liveness", str(heartbeat_liveness),
               "--conn-heartbeat-ms", str(conn_heartbeat_ms),
               "--conn-timeout-ms", str(conn_timeout_ms), "--conn-ttl-ms", str(conn_ttl_ms)]
        if backend:
            cmd += ["--backend-bind", backend]
        if curve_key:
            cmd += ["--curve-key", os.fspath(curve_key)]
        if curve_allow:
            cmd += ["--curve-allow", os.fspath(curve_allow)]
        if curve_worker_allow:
            cmd += ["--curve-worker-allow", os.fspath(curve_worker_allow)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=child_env())
        ends: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        # the child prints its bound endpoints, then "ready"
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            key, _, value = line.strip().partition(" ")
            if key in ("frontend", "backend"):
                ends[key] = value
            elif key == "ready":
                return cls(proc, ends["frontend"], ends.get("backend"))
            elif key == "error":  # "error ModelError 'x.bfly': ...": raised here as is
                name, _, message = value.partition(" ")
                error = getattr(_C, name, None)
                if isinstance(error, type) and issubclass(error, _C.Error):
                    proc.kill()
                    proc.wait()
                    raise error(message)
        proc.kill()
        proc.wait()
        raise _C.NetworkError(f"butterfly serve did not start (exit code {proc.returncode})")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> dict | None:
        """SIGTERM: the server drains, prints its statistics and exits; returns them."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.output = out or ""
        for line in self.output.splitlines():
            if line.startswith("stats "):
                self.final_stats = json.loads(line[6:])
        return self.final_stats

    def kill(self) -> None:
        """SIGKILL, no drain."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.stop()


def worker(model_path, connect: str, *, batch: int = 1, batch_timeout_us: int = 1000,
           threads: int = 0, heartbeat_interval_ms: int = 1000, heartbeat_liveness: int = 3,
           reconnect_max_ms: int = 8000, prefetch: int = -1, curve_server_key=None,
           curve_key=None, rt_priority: int = 0, conn_heartbeat_ms: int = CONN_HEARTBEAT_MS,
           conn_timeout_ms: int = CONN_TIMEOUT_MS, conn_ttl_ms: int = CONN_TTL_MS,
           echo: dict | None = None) -> int | None:
    """A standalone worker process's loop: serves the pool's backend at `connect` until
    SIGINT or SIGTERM; returns the signal number.  Heartbeats must match the pool's.
    curve_server_key / curve_key: the pool's public key file and this worker's key pair,
    for a backend with CURVE on (the pair's public key must be on its worker allow list).
    rt_priority: 1..98 runs it under SCHED_FIFO (see :func:`serve`).  conn_*: ZeroMQ's
    heartbeats on its connection (see :func:`serve`).  The worker keeps one routing id for
    its life, so that the pool knows it again when it reconnects.
    echo (model_path None): the C echo backend instead of a model (tests, benchmarks)."""
    kw = {"batch": batch, "batch_timeout_us": batch_timeout_us, "threads": threads,
          "heartbeat_interval_ms": heartbeat_interval_ms,
          "heartbeat_liveness": heartbeat_liveness, "reconnect_max_ms": reconnect_max_ms,
          "prefetch": prefetch, "echo": echo, "rt_priority": rt_priority,
          "conn_heartbeat_ms": conn_heartbeat_ms, "conn_timeout_ms": conn_timeout_ms,
          "conn_ttl_ms": conn_ttl_ms,
          "curve_server_key": None if curve_server_key is None else os.fspath(curve_server_key),
          "curve_key": None if curve_key is None else os.fspath(curve_key)}
    path = None if model_path is None else os.fspath(model_path)
    if threading.current_thread() is not threading.main_thread():
        _C.run_worker(path, connect, **kw)
        return None
    with _SignalStop() as stop:
        try:
            _C.run_worker(path, connect, stop_fd=stop.fd, **kw)
        except _C.Interrupted:
            if stop.signum is None:
                raise
    return stop.signum


class _SignalStop:
    """SIGINT / SIGTERM stop the C worker loop running on the main thread.

    The handlers only record the signal; the C-level handler also writes to a wakeup pipe
    whose read end the worker polls (stop_fd), so a signal that lands while it computes, or
    on another thread, still stops it at its next poll.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> Self:
        self.signum = None
        self.fd, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        return self

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def __exit__(self, *exc) -> None:
        signal.set_wakeup_fd(self._old_fd)
        for s, h in self._old.items():
            signal.signal(s, h)
        os.close(self.fd)
        os.close(self._w)


def curve_keygen(path) -> str:
    """Writes a CURVE key pair to `path` (mode 0600) and its public half to `path`.pub;
    returns the public key (Z85 text)."""
    return _C.curve_keygen(os.fspath(path))


# --- the phone half ----------------------------------------------------------------------

@dataclass
class Result:
    """One image's answer and where its time went."""

    topk: list[tuple[int, float]]  # (class, probability), best first
    mobile_ms: float               # head + reduce: this image's share of its batch
    rtt_ms: float                  # client: request sent to answer in (every attempt)
    queue_us: int                  # server: waited in the broker and the worker
    compute_us: int                # server: its batch's restore + tail
    batch: int                     # server: requests in that batch
    attempts: int = 1
    logits: np.ndarray | None = field(default=None, repr=False)
    names: list[str] | None = field(default=None, repr=False)

    @property
    def label(self) -> int:
        return self.topk[0][0]

    @property
    def classes(self) -> list[int]:
        return [c for c, _ in self.topk]

    @property
    def probs(self) -> list[float]:
        return [p for _, p in self.topk]

    @property
    def transfer_ms(self) -> float:
        """Round trip minus the server's queue and compute: network, codec and broker."""
        return self.rtt_ms - (self.queue_us + self.compute_us) / 1000.0


class Client:
    """The phone: runs head + reduce of a model file locally, sends the 8-bit payload to a
    pool and gets top-k classes back.

    backend: "onednn" or "opencl" (the mobile half on an OpenCL device).  The model hash and
    split id sent with each request come from the file, so a pool serving another model
    refuses the requests.  timeout_ms / retries: the Lazy Pirate client's patience.
    curve_server_key: the server's public key file (CURVE on); curve_key: this client's key
    pair (else a fresh pair).  conn_heartbeat_ms / conn_timeout_ms / conn_ttl_ms: ZeroMQ's
    heartbeats on its connection (see :func:`serve`; the TTL asks the pool to close the
    connection after that long without a word from this client, should it vanish).  One
    thread at a time uses a client (calls are serialized).
    """

    def __init__(self, model_path, endpoint: str = DEFAULT_BIND, *, timeout_ms: int = 3000,
                 retries: int = 2, codec: str = "raw", curve_server_key=None, curve_key=None,
                 backend: str = "onednn", device: int | None = None,
                 conn_heartbeat_ms: int = CONN_HEARTBEAT_MS,
                 conn_timeout_ms: int = CONN_TIMEOUT_MS, conn_ttl_ms: int = CONN_TTL_MS):
        timeout_ms = int_arg("timeout_ms", timeout_ms, 1, 2**31 - 1)
        retries = int_arg("retries", retries, 0, 1000)
        self.half = load(model_path, part="mobile", backend=backend, device=device)
        self.network = getattr(self.half, "network", self.half)
        self.hash = self.network.hash
        self.split = self.network.model.part_range(RESTORE)[0]
        if self.split < 0:
            raise _C.InvalidArgument(f"{model_path}: no butterfly unit (nothing to offload)")
        classes = self.network.meta.get("classes")
        self.class_names = [str(c) for c in classes] if isinstance(classes, list) else None
        self.endpoint = endpoint
        self._c = _C.Client(endpoint, self.hash, self.split, timeout_ms=timeout_ms,
                            retries=retries, codec=codec, curve_server_key=curve_server_key,
                            curve_key=curve_key, conn_heartbeat_ms=conn_heartbeat_ms,
                            conn_timeout_ms=conn_timeout_ms, conn_ttl_ms=conn_ttl_ms)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.network.input_shape

    def mobile(self, images):
        """head + reduce: images -> :class:`butterfly.Payload` (and the time it took, ms)."""
        t0 = time.perf_counter()
        payload = self.half.mobile(images)
        return payload, (time.perf_counter() - t0) * 1e3

    def classify_payload(self, payload, k: int = 5, *, codec: str | None = None,
                         logits: bool = False, mobile_ms: float = 0.0) -> list[Result]:
        """Sends payloads already computed (data (N, C, H, W) uint8, ranges (N, 2)).
        1 <= k <= TOPK_MAX (replies carry no more classes than the model has)."""
        k = int_arg("k", k, 1, TOPK_MAX)
        data, ranges = payload_arrays(payload)
        raw = self._c.classify(data, ranges, k, codec=codec, logits=logits)
        share = mobile_ms / max(len(data), 1)
        out = []
        for r in raw:
            names = ([self.class_names[c] if 0 <= c < len(self.class_names) else str(c)
                      for c, _ in r["topk"]] if self.class_names else None)
            out.append(Result(r["topk"], share, r["total_us"] / 1000.0, r["queue_us"],
                              r["compute_us"], r["batch"], r["attempts"], r.get("logits"),
                              names))
        return out

    def classify(self, images, k: int = 5, *, codec: str | None = None,
                 logits: bool = False) -> list[Result]:
        """Top-k of images (N, C, H, W) or (C, H, W) float32: head + reduce here, restore +
        tail at the pool, one request per image.  Raises Timeout, Busy, Refused, ..."""
        k = int_arg("k", k, 1, TOPK_MAX)
        payload, ms = self.mobile(images)
        return self.classify_payload(payload, k, codec=codec, logits=logits, mobile_ms=ms)

    __call__ = classify

    def load_test(self, images=None, *, payload=None, clients: int = 1,
                  seconds: float = 1.0, rate: float = 0.0, k: int = 1,
                  codec: str | None = None, rt_priority: int = 0) -> LoadReport:
        """Loads the pool over `clients` connections for `seconds`, driven by one C thread
        (no Python per request; no retries: no answer within the timeout is an error):
        closed loop (rate 0: each client sends again as soon as it is answered) or open
        loop (`rate` requests/s in total, each sent at its due time however many are
        unanswered; latency counts from the due time, so a pool that falls behind pays
        for the queue it builds).
        The requests cycle through the payloads of `images` (head + reduce run here once)
        or of `payload` (data, ranges) computed already.  rt_priority: 1..98 runs the
        generator under SCHED_FIFO (see :func:`serve`), so that its own delays on a busy
        machine do not count as the pool's."""
        if (images is None) == (payload is None):
            raise _C.InvalidArgument("load_test: give images or payload, one of them")
        k = int_arg("k", k, 1, TOPK_MAX)
        if payload is None:
            payload, _ = self.mobile(images)
        data, ranges = payload_arrays(payload)
        r = self._c.load_test(data, ranges, clients=clients, seconds=seconds, rate=rate,
                              k=k, codec=codec, rt_priority=rt_priority)
        return LoadReport(clients=clients, rate=rate, **r)


@dataclass
class LoadReport:
    """What :meth:`Client.load_test` measured (latencies in microseconds)."""

    clients: int
    rate: float              # offered requests/s (0: closed loop)
    sent: int
    ok: int
    errors: int
    last_error: str          # status name of the last failure ("" if none)
    seconds: float           # start to last answer
    latency_us: np.ndarray = field(repr=False)   # per answered request
    queue_us: np.ndarray = field(repr=False)     # its wait in the broker and the worker
    compute_us: np.ndarray = field(repr=False)   # its batch's server compute
    batch: np.ndarray = field(repr=False)        # its batch size
    start_us: np.ndarray = field(repr=False)     # when its latency began (sent, or due in
                                                 # the open loop), after the start

    @property
    def throughput(self) -> float:
        """Answered requests per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latency_us, q)) if len(self.latency_us) else float("nan")

    def summary(self) -> dict:
        """Counts, requests/s and latency percentiles (None when nothing was answered)."""
        answered = len(self.latency_us) > 0

        def us(v: float) -> int | None:
            return round(v) if answered else None

        return {"clients": self.clients, "rate": self.rate, "sent": self.sent, "ok": self.ok,
                "errors": self.errors, "last_error": self.last_error,
                "req_per_s": round(self.throughput, 1), "p50_us": us(self.percentile(50)),
                "p90_us": us(self.percentile(90)), "p99_us": us(self.percentile(99)),
                "compute_p50_us": us(float(np.median(self.compute_us))) if answered else None,
                "mean_batch": round(float(self.batch.mean()), 2) if answered else None}


# --- command line ------------------------------------------------------------------------

def _summary(stats: dict) -> str:
    lines = [(f"requests {stats['requests']}: {stats['replies_ok']} ok, {stats['errors']} "
              f"errors ({stats['malformed']} malformed), {stats['busy']} busy, "
              f"{stats['requeued']} re-queued, {stats['workers_purged']} workers purged")]
    drain = stats.get("drain")
    if drain:
        # as they were, not zeroed: a request still in flight at the end is one its worker
        # never answered (it got "busy" from the pool)
        lines.append(f"drain: began with {drain['queued_start']} queued, "
                     f"{drain['in_flight_start']} in flight; ended with {drain['queued_end']} "
                     f"queued, {drain['in_flight_end']} in flight")
    if stats["batches"]:
        sizes = ", ".join(f"{b}: {n}" for b, n in sorted(stats["batch_sizes"].items()))
        lines.append(f"batches {stats['batches']} (size: count  {sizes})")
    for stage in ("queue_us", "compute_us", "total_us"):
        h = stats[stage]
        if h["count"]:
            lines.append(f"{stage[:-3]:>8} us  p50 <= {h['p50']:.0f}  p90 <= {h['p90']:.0f}  "
                         f"p99 <= {h['p99']:.0f}  max <= {h['max']:.0f}")
    return "\n".join(lines)


def _stats_json(stats: dict) -> str:
    slim = {k: v for k, v in stats.items() if k not in ("queue_us", "compute_us", "total_us")}
    slim["batch_sizes"] = {str(b): n for b, n in stats["batch_sizes"].items()}
    for stage in ("queue_us", "compute_us", "total_us"):
        slim[stage] = {q: stats[stage][q] for q in ("count", "p50", "p90", "p99", "max")}
    return json.dumps(slim)


def _cli_serve(args) -> int:
    try:
        net = load(args.model, part="cloud")
        pool = serve(args.model, workers=args.workers, bind=args.bind,
                     backend=args.backend_bind, batch=args.batch,
                     batch_timeout_us=args.batch_timeout_us, threads=args.threads,
                     queue_max=args.queue_max, curve_key=args.curve_key,
                     curve_allow=args.curve_allow, drain_timeout_ms=args.drain_timeout_ms,
                     heartbeat_interval_ms=args.heartbeat_interval_ms,
                     heartbeat_liveness=args.heartbeat_liveness,
                     queue_timeout_ms=args.queue_timeout_ms, prefetch=args.prefetch,
                     curve_worker_allow=args.curve_worker_allow, rt_priority=args.rt_priority,
                     **_conn(args))
    except _C.Error as e:  # for ServerProcess: the error itself, on the line it reads
        print(f"error {type(e).__name__} {e}", flush=True)
        raise
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in signals}
    try:
        print(f"serving {args.model} (model {net.hash}, split "
              f"{net.model.part_range(RESTORE)[0]}, {args.workers} worker threads, batch "
              f"{args.batch}{', CURVE' if args.curve_key else ''}"
              f"{f', SCHED_FIFO {args.rt_priority}' if args.rt_priority else ''})")
        print(f"frontend {pool.endpoint}")
        if pool.backend:
            print(f"backend {pool.backend}")
        print("ready (Ctrl-C or SIGTERM: drain and stop)", flush=True)
        while not stop.wait(0.5):
            pass
        print("draining ...", flush=True)
        pool.stop()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pool.stop()
    stats = pool.stats()
    print(_summary(stats))
    print("stats " + _stats_json(stats), flush=True)
    return 0


def _cli_worker(args) -> int:
    print(f"worker for {args.model} connecting to {args.connect}", flush=True)
    signum = worker(args.model, args.connect, batch=args.batch,
                    batch_timeout_us=args.batch_timeout_us, threads=args.threads,
                    heartbeat_interval_ms=args.heartbeat_interval_ms, prefetch=args.prefetch,
                    curve_server_key=args.curve_server_key, curve_key=args.curve_key,
                    rt_priority=args.rt_priority, **_conn(args))
    print(f"worker stopped ({signal.Signals(signum).name if signum else 'done'})", flush=True)
    return 0


def _cli_loadtest(args) -> int:
    client = Client(args.model, args.connect, timeout_ms=args.timeout_ms, codec=args.codec,
                    curve_server_key=args.curve_server_key, **_conn(args))
    rng = np.random.default_rng(args.seed)
    images = rng.random((args.images, *client.input_shape), dtype=np.float32)
    rates = args.rate or [0.0]
    print(f"load test of {args.connect}: {args.clients} clients, {args.seconds:g} s "
          f"per run, {args.images} distinct random inputs", flush=True)
    rows = []
    for rate in rates:
        rep = client.load_test(images, clients=args.clients, seconds=args.seconds, rate=rate,
                               rt_priority=args.rt_priority)
        row = rep.summary()
        rows.append(row)
        offered = f"{rate:.0f} req/s offered" if rate else "closed loop"
        errors = f"errors {row['errors']}" + (f" ({row['last_error']})" if row["errors"] else "")
        if rep.ok:
            print(f"{offered:>22}: {row['req_per_s']:.0f} req/s, p50 {row['p50_us']} us, "
                  f"p90 {row['p90_us']} us, p99 {row['p99_us']} us, server compute p50 "
                  f"{row['compute_p50_us']} us, mean batch {row['mean_batch']}, {errors}",
                  flush=True)
        else:
            print(f"{offered:>22}: nothing answered of {row['sent']} sent, {errors}",
                  flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0 if all(r["errors"] == 0 for r in rows) else 1


def _load_image(path, shape: tuple[int, int, int]) -> np.ndarray:
    """One file as float32 (n, C, H, W) in [0, 1]."""
    c, h, w = shape
    path = os.fspath(path)
    if path.endswith(".npy"):
        a = np.load(path)
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
        a = a[None] if a.ndim == 2 else a
        a = a[None] if a.ndim == 3 else a
        if a.ndim != 4 or a.shape[1:] != (c, h, w):
            raise _C.InvalidArgument(f"{path}: shape {a.shape}, the model takes "
                                     f"(N, {c}, {h}, {w})")
        return a
    from PIL import Image

    if c not in (1, 3):
        raise _C.InvalidArgument(f"the model takes {c} channels: give .npy arrays")
    with Image.open(path) as im:
        im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    return (a[None] if c == 1 else a.transpose(2, 0, 1))[None]


def load_images(paths, shape: tuple[int, int, int]) -> np.ndarray:
    """Images for a model input of shape (C, H, W) as float32 (N, C, H, W) in [0, 1].

    Picture files (Pillow) are converted to grayscale (C = 1) or RGB (C = 3) and resized to
    W x H.  A .npy file holds one image (H, W) / (C, H, W) or a stack (N, C, H, W); uint8
    arrays are divided by 255, float arrays taken as they are."""
    return np.ascontiguousarray(np.concatenate([_load_image(p, shape) for p in paths]))


def _cli_infer(args) -> int:
    client = Client(args.model, args.connect, timeout_ms=args.timeout_ms, retries=args.retries,
                    codec=args.codec, curve_server_key=args.curve_server_key,
                    curve_key=args.curve_key, backend=args.backend, **_conn(args))
    for path in args.images:
        x = _load_image(path, client.input_shape)
        client.mobile(x)  # compiles the plans for this batch size: timings below are warm
        for i, r in enumerate(client.classify(x, k=args.k)):
            print(f"{path}{f'[{i}]' if len(x) > 1 else ''}:")
            for j, (c, p) in enumerate(r.topk):
                name = f"  {r.names[j]}" if r.names else ""
                print(f"  {j + 1}. class {c:>4}{name}  {p:.4f}")
            print(f"  mobile {r.mobile_ms:.2f} ms, round trip {r.rtt_ms:.2f} ms (server queue "
                  f"{r.queue_us} us, compute {r.compute_us} us, batch {r.batch}; transfer "
                  f"{r.transfer_ms:.2f} ms)")
    return 0


def _rt_argument(p) -> None:
    p.add_argument("--rt-priority", type=int, default=0, metavar="P",
                   help="1..98: run under SCHED_FIFO at priority P, so that other processes "
                        "cannot take the CPU mid-request (needs root or CAP_SYS_NICE); "
                        "0: the normal scheduler (default)")


def _conn_arguments(p) -> None:
    p.add_argument("--conn-heartbeat-ms", type=int, default=CONN_HEARTBEAT_MS, metavar="MS",
                   help="ZeroMQ heartbeats on each TCP connection: a PING this often, so that "
                        f"a peer that vanished is found (default {CONN_HEARTBEAT_MS}; 0: off)")
    p.add_argument("--conn-timeout-ms", type=int, default=CONN_TIMEOUT_MS, metavar="MS",
                   help="close a connection silent this long after a PING (default "
                        f"{CONN_TIMEOUT_MS})")
    p.add_argument("--conn-ttl-ms", type=int, default=CONN_TTL_MS, metavar="MS",
                   help="ask the peer to close the connection after this long without a "
                        f"word from here (default {CONN_TTL_MS}; 0: none)")


def _conn(args) -> dict:
    return {"conn_heartbeat_ms": args.conn_heartbeat_ms,
            "conn_timeout_ms": args.conn_timeout_ms, "conn_ttl_ms": args.conn_ttl_ms}


def add_cli(sub) -> None:
    p = sub.add_parser("serve", help="serve the cloud half of a model with the worker pool")
    p.add_argument("model", help="model file (.bfly) with a butterfly unit")
    p.add_argument("--workers", type=int, default=2, help="worker threads (default 2)")
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"client endpoint ({DEFAULT_BIND})")
    p.add_argument("--backend-bind", default=None,
                   help="endpoint for `butterfly worker` processes, e.g. tcp://127.0.0.1:5556")
    p.add_argument("--batch", type=int, default=1, help="B: requests per batch (1: none)")
    p.add_argument("--batch-timeout-us", type=int, default=1000,
                   help="T: how long a batch may wait to fill up")
    p.add_argument("--prefetch", type=int, default=-1,
                   help="requests a worker holds beyond its batch (-1: one batch more)")
    p.add_argument("--threads", type=int, default=0,
                   help="oneDNN threads per worker (0: the cores shared out)")
    p.add_argument("--queue-max", type=int, default=1024, help="queued requests before busy")
    p.add_argument("--drain-timeout-ms", type=int, default=5000)
    p.add_argument("--heartbeat-interval-ms", type=int, default=1000,
                   help="to and from workers (worker processes must use the same)")
    p.add_argument("--heartbeat-liveness", type=int, default=3,
                   help="silent heartbeat intervals before a worker is purged")
    p.add_argument("--queue-timeout-ms", type=int, default=10000,
                   help="a request queued longer gets a timeout reply (0: never)")
    p.add_argument("--curve-key", default=None, help="server key pair: turns CURVE on")
    p.add_argument("--curve-allow", default=None, help="file of client public keys to admit")
    p.add_argument("--curve-worker-allow", default=None,
                   help="file of worker public keys: CURVE on the backend endpoint too")
    _rt_argument(p)
    _conn_arguments(p)
    p.set_defaults(func=_cli_serve)

    p = sub.add_parser("worker", help="a worker process for a pool's backend endpoint")
    p.add_argument("model")
    p.add_argument("--connect", default="tcp://127.0.0.1:5556", help="the pool's backend")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--batch-timeout-us", type=int, default=1000)
    p.add_argument("--prefetch", type=int, default=-1,
                   help="requests held beyond the batch (-1: one batch more)")
    p.add_argument("--threads", type=int, default=0, help="oneDNN threads (0: all cores)")
    p.add_argument("--heartbeat-interval-ms", type=int, default=1000,
                   help="must match the pool's")
    p.add_argument("--curve-server-key", default=None,
                   help="the pool's public key file (its backend has CURVE on)")
    p.add_argument("--curve-key", default=None,
                   help="this worker's key pair (its public key on the pool's worker list)")
    _rt_argument(p)
    _conn_arguments(p)
    p.set_defaults(func=_cli_worker)

    p = sub.add_parser("loadtest", help="load a pool from C clients; throughput and "
                       "latency percentiles")
    p.add_argument("model", help="the model file the pool serves (its mobile half runs here)")
    p.add_argument("--connect", default=DEFAULT_BIND, help=f"the pool ({DEFAULT_BIND})")
    p.add_argument("--clients", type=int, default=4, help="client connections (default 4)")
    p.add_argument("--seconds", type=float, default=3.0, help="per run (default 3)")
    p.add_argument("--rate", type=float, action="append", default=None,
                   help="open loop at this many requests/s (repeat for several runs); "
                        "default: closed loop")
    p.add_argument("--images", type=int, default=64, help="distinct random inputs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--codec", default="raw", choices=("raw", "zstd"))
    p.add_argument("--timeout-ms", type=int, default=10000)
    p.add_argument("--curve-server-key", default=None)
    p.add_argument("--json", action="store_true", help="also print the rows as JSON")
    _rt_argument(p)
    _conn_arguments(p)
    p.set_defaults(func=_cli_loadtest)

    p = sub.add_parser("infer", help="classify images: head + reduce here, the rest at a pool")
    p.add_argument("model")
    p.add_argument("images", nargs="+", help="picture files (Pillow) or .npy arrays")
    p.add_argument("--connect", default=DEFAULT_BIND, help="the pool's frontend")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--backend", default="onednn", choices=["onednn", "opencl"],
                   help="where the mobile half runs")
    p.add_argument("--codec", default="raw", choices=["raw", "zstd"])
    p.add_argument("--timeout-ms", type=int, default=3000)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--curve-server-key", default=None, help="the server's public key file")
    p.add_argument("--curve-key", default=None, help="this client's key pair")
    _conn_arguments(p)
    p.set_defaults(func=_cli_infer)


__all__ = ["Client", "Pool", "Result", "ServerProcess", "curve_keygen", "load_images",
           "serve", "worker"]
