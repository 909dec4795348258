"""Command line of serving: ``butterfly serve``, ``worker``, ``loadtest``, ``infer``."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np

from .. import _C
from ..network import RESTORE, load
from .client import Client
from .defaults import (
    CLIENT,
    CONN_HEARTBEAT_MS,
    CONN_TIMEOUT_MS,
    CONN_TTL_MS,
    DEFAULT_BIND,
    POOL,
    WORKER,
    WORKERS,
)
from .pool import serve, worker


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
                     queue_max=args.queue_max, max_message=args.max_message,
                     curve_key=args.curve_key,
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
                    heartbeat_interval_ms=args.heartbeat_interval_ms,
                    heartbeat_liveness=args.heartbeat_liveness,
                    reconnect_max_ms=args.reconnect_max_ms, prefetch=args.prefetch,
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
    p.add_argument("--rt-priority", type=int, default=POOL["rt_priority"], metavar="P",
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
    p.add_argument("--workers", type=int, default=WORKERS,
                   help=f"worker threads (default {WORKERS})")
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"client endpoint ({DEFAULT_BIND})")
    p.add_argument("--backend-bind", default=None,
                   help="endpoint for `butterfly worker` processes, e.g. tcp://127.0.0.1:5556")
    p.add_argument("--batch", type=int, default=WORKER["max_batch"],
                   help="B: requests per batch (1: none)")
    p.add_argument("--batch-timeout-us", type=int, default=WORKER["batch_timeout_us"],
                   help="T: how long a batch may wait to fill up")
    p.add_argument("--prefetch", type=int, default=WORKER["prefetch"],
                   help="requests a worker holds beyond its batch (-1: one batch more)")
    p.add_argument("--threads", type=int, default=POOL["n_threads"],
                   help="oneDNN threads per worker (0: the cores shared out)")
    p.add_argument("--queue-max", type=int, default=POOL["queue_max"],
                   help="queued requests before busy")
    p.add_argument("--max-message", type=int, default=POOL["max_message"],
                   help="bytes: a larger request frame is refused")
    p.add_argument("--drain-timeout-ms", type=int, default=POOL["drain_timeout_ms"])
    p.add_argument("--heartbeat-interval-ms", type=int, default=POOL["heartbeat_interval_ms"],
                   help="to and from workers (worker processes must use the same)")
    p.add_argument("--heartbeat-liveness", type=int, default=POOL["heartbeat_liveness"],
                   help="silent heartbeat intervals before a worker is purged")
    p.add_argument("--queue-timeout-ms", type=int, default=POOL["queue_timeout_ms"],
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
    p.add_argument("--connect", default=WORKER["connect"], help="the pool's backend")
    p.add_argument("--batch", type=int, default=WORKER["max_batch"])
    p.add_argument("--batch-timeout-us", type=int, default=WORKER["batch_timeout_us"])
    p.add_argument("--prefetch", type=int, default=WORKER["prefetch"],
                   help="requests held beyond the batch (-1: one batch more)")
    p.add_argument("--threads", type=int, default=WORKER["n_threads"],
                   help="oneDNN threads (0: all cores)")
    p.add_argument("--heartbeat-interval-ms", type=int, default=WORKER["heartbeat_interval_ms"],
                   help="must match the pool's")
    p.add_argument("--heartbeat-liveness", type=int, default=WORKER["heartbeat_liveness"],
                   help="silent heartbeat intervals before the pool counts as gone")
    p.add_argument("--reconnect-max-ms", type=int, default=WORKER["reconnect_max_ms"],
                   help="the longest wait between reconnects (they back off up to it)")
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
    p.add_argument("--timeout-ms", type=int, default=10000,
                   help="per request (no retries under load; default 10000)")
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
    p.add_argument("--codec", default=CLIENT["codec"], choices=["raw", "zstd"])
    p.add_argument("--timeout-ms", type=int, default=CLIENT["timeout_ms"])
    p.add_argument("--retries", type=int, default=CLIENT["retries"])
    p.add_argument("--curve-server-key", default=None, help="the server's public key file")
    p.add_argument("--curve-key", default=None, help="this client's key pair")
    _conn_arguments(p)
    p.set_defaults(func=_cli_infer)
