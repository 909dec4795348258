"""The phone half as the pool's client: runs the mobile half locally, sends the payload,
measures each stage; and the load generator's report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import _C
from ..checks import int_arg
from ..network import RESTORE, load, payload_arrays
from .defaults import CLIENT, CONN_HEARTBEAT_MS, CONN_TIMEOUT_MS, CONN_TTL_MS, DEFAULT_BIND, LOAD

TOPK_MAX = _C.TOPK_MAX  # most classes a reply carries


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

    def __init__(self, model_path, endpoint: str = DEFAULT_BIND, *,
                 timeout_ms: int = CLIENT["timeout_ms"], retries: int = CLIENT["retries"],
                 codec: str = CLIENT["codec"], curve_server_key=None, curve_key=None,
                 backend: str = "onednn", device: int | None = None,
                 conn_heartbeat_ms: int = CONN_HEARTBEAT_MS,
                 conn_timeout_ms: int = CONN_TIMEOUT_MS, conn_ttl_ms: int = CONN_TTL_MS):
        timeout_ms = int_arg("timeout_ms", timeout_ms, 1, 2**31 - 1)
        retries = int_arg("retries", retries, 0, 1000)
        self.half = load(model_path, part="mobile", backend=backend, device=device)
        self.hash = self.network.hash
        self.split_id = self.network.model.part_range(RESTORE)[0]
        if self.split_id < 0:
            raise _C.InvalidArgument(f"{model_path}: no butterfly unit (nothing to offload)")
        classes = self.network.meta.get("classes")
        self.class_names = [str(c) for c in classes] if isinstance(classes, list) else None
        self.endpoint = endpoint
        self._c = _C.Client(endpoint, self.hash, self.split_id, timeout_ms=timeout_ms,
                            retries=retries, codec=codec, curve_server_key=curve_server_key,
                            curve_key=curve_key, conn_heartbeat_ms=conn_heartbeat_ms,
                            conn_timeout_ms=conn_timeout_ms, conn_ttl_ms=conn_ttl_ms)

    @property
    def network(self):
        """The mobile half this client runs (a :class:`butterfly.Network`, or its OpenCL
        :class:`butterfly.MobileHalf`)."""
        return self.half

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
                  codec: str | None = None, rt_priority: int = LOAD["rt_priority"]
                  ) -> LoadReport:
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
