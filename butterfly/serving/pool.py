"""The cloud half as a ZeroMQ worker pool: start and stop it, in this process or a child, and
pool workers on other machines.  The pool, its workers and the wire are C (csrc/serve,
docs/PROTOCOL.md); every default comes from the C core (``butterfly.serving.defaults``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Self

from .. import _C
from .defaults import (
    CONN_HEARTBEAT_MS,
    CONN_TIMEOUT_MS,
    CONN_TTL_MS,
    DEFAULT_BIND,
    POOL,
    WORKER,
    WORKERS,
)

Pool = _C.Pool


def serve(model_path, workers: int = WORKERS, bind: str = DEFAULT_BIND, *,
          backend: str | None = POOL["backend"], batch: int = WORKER["max_batch"],
          batch_timeout_us: int = WORKER["batch_timeout_us"], threads: int = POOL["n_threads"],
          queue_max: int = POOL["queue_max"], max_message: int = POOL["max_message"],
          curve_key=None, curve_allow=None, drain_timeout_ms: int = POOL["drain_timeout_ms"],
          queue_timeout_ms: int = POOL["queue_timeout_ms"],
          heartbeat_interval_ms: int = POOL["heartbeat_interval_ms"],
          heartbeat_liveness: int = POOL["heartbeat_liveness"],
          prefetch: int = WORKER["prefetch"], curve_worker_allow=None,
          rt_priority: int = POOL["rt_priority"], conn_heartbeat_ms: int = CONN_HEARTBEAT_MS,
          conn_timeout_ms: int = CONN_TIMEOUT_MS, conn_ttl_ms: int = CONN_TTL_MS,
          process: bool = False, startup_timeout: float = 60.0):
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
    options = dict(workers=workers, bind=bind, backend=backend, batch=batch,
                   batch_timeout_us=batch_timeout_us, threads=threads, queue_max=queue_max,
                   max_message=max_message, curve_key=curve_key, curve_allow=curve_allow,
                   drain_timeout_ms=drain_timeout_ms, queue_timeout_ms=queue_timeout_ms,
                   heartbeat_interval_ms=heartbeat_interval_ms,
                   heartbeat_liveness=heartbeat_liveness, prefetch=prefetch,
                   curve_worker_allow=curve_worker_allow, rt_priority=rt_priority,
                   conn_heartbeat_ms=conn_heartbeat_ms, conn_timeout_ms=conn_timeout_ms,
                   conn_ttl_ms=conn_ttl_ms)
    if process:  # every option travels, as its `butterfly serve` flag
        return ServerProcess.start(model_path, timeout=startup_timeout, **options)
    options["frontend"] = options.pop("bind")
    return Pool(os.fspath(model_path), **options)


def serve_flags(options: dict) -> list[str]:
    """The `butterfly serve` flags of serve()'s options: --name-with-dashes VALUE for each
    one set (bind: --bind, backend: --backend-bind; None: left out)."""
    flags = []
    for name, value in options.items():
        if value is None:
            continue
        flag = "--backend-bind" if name == "backend" else "--" + name.replace("_", "-")
        flags += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return flags


def child_env() -> dict:
    """The environment for a `python -m butterfly` child: this package importable from any
    working directory (an in-place build is not on sys.path elsewhere)."""
    env = dict(os.environ)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.dirname(package)
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
    def start(cls, model_path, *, timeout: float = 60.0, **options) -> ServerProcess:
        """Starts `butterfly serve model_path` with serve()'s options as its flags."""
        cmd = [sys.executable, "-m", "butterfly", "serve", os.fspath(model_path),
               *serve_flags(options)]
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


def worker(model_path, connect: str = WORKER["connect"], *, batch: int = WORKER["max_batch"],
           batch_timeout_us: int = WORKER["batch_timeout_us"], threads: int = WORKER["n_threads"],
           heartbeat_interval_ms: int = WORKER["heartbeat_interval_ms"],
           heartbeat_liveness: int = WORKER["heartbeat_liveness"],
           reconnect_max_ms: int = WORKER["reconnect_max_ms"], prefetch: int = WORKER["prefetch"],
           curve_server_key=None, curve_key=None, rt_priority: int = WORKER["rt_priority"],
           conn_heartbeat_ms: int = CONN_HEARTBEAT_MS, conn_timeout_ms: int = CONN_TIMEOUT_MS,
           conn_ttl_ms: int = CONN_TTL_MS, echo: dict | None = None) -> int | None:
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
