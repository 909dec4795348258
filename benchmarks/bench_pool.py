"""The worker pool: transport overhead against raw ZeroMQ, throughput and latency under load.

(a) Overhead.  The pool with the C echo backend (no model: compute ~0 us) on loopback,
    one client sending the real payload (the 2x14x14 uint8 feature of the test model) one
    request at a time, against a raw ZeroMQ REQ/REP round trip of the same request body
    (pyzmq; the REP echo server in a child process), in interleaved rounds.  Both are timed
    in Python around the call.  overhead_us = pool round trip - server compute time;
    target: overhead_us <= 2 x raw_rtt_us.

(b) Load.  The real model (ResNet-18, width 16, 28x28 grayscale, butterfly unit after RB2)
    served by W = 1, 2 worker threads (1 oneDNN thread each), C = 1, 4, 16 closed-loop
    clients, without batching (B = 1) and with dynamic batching (B = 8), waiting up to
    T = 2 ms for a batch to fill or greedy (T = 0: a free worker runs what is queued).
    The load comes from the C load generator (Client.load_test: one C thread drives every
    client's connection, no Python per request), so it takes as little of the machine as a
    loopback client can.
    Throughput and client-side round-trip p50 / p99.  t_compute is the median server
    compute of a request with one worker kept busy (W = 1, B = 1, 16 clients: requests back
    to back, as in every throughput row); the median with one client, where the core idles
    between requests and each starts cold (on a VM that halts idle CPUs this one varies by
    20 % from run to run), is reported beside it.  Targets: throughput >= 90 % of W / t_compute
    (B = 1, enough clients to keep the workers busy), and at 70 % of the measured W = 1
    capacity (requests paced at a constant rate) p99 <= 2 x p50 (the median of several
    runs, each run's ratio reported too).  The tail is split into
    queue / compute / transit for the slowest 1 %, and measured again on the echo backend
    spinning t_compute per request (the transport's own tail, without compute variance)
    and with the pool and the load generator under real-time scheduling (rt_priority 10,
    where the system allows it: then no other process's thread can take their CPU).
    The peer, in the same run: W threads running restore + tail in a tight loop without
    any serving ("bare"), the capacity the workers can really get when other processes
    share the cores.  Each load row also has the process's CPU (cores busy, CPU per
    request): with W = 2 on 2 cores, cores / CPU per request bounds the throughput.

The machine has 2 cores shared by the clients, the broker, the workers and ZeroMQ's I/O
threads, so W = 2 competes with the load generator for the cores; each row splits its CPU
per request between the pool's threads and the load generator's.  On a machine with cores
to spare, --pool-cpus 0,1 --client-cpus 2,3 pins the pools (and the bare loops) and the
load generator apart: the pool measured as it would serve clients on other machines.
Medians are quoted; the load average and raw ZeroMQ's own p99 / p50 (the machine's noise
floor) are reported with them.
Prints one JSON line.
Usage: python benchmarks/bench_pool.py [--quick] [--pool-cpus LIST --client-cpus LIST]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from common import emit, log, r, ratio

import butterfly as bf  # common (above) puts the repository root on sys.path
from butterfly import _C

ANY = "tcp://127.0.0.1:*"
RT_PRIORITY = 10  # SCHED_FIFO priority of the real-time tail point
POOL_CPUS = None  # --pool-cpus: the CPUs of the pools' threads (None: all)


@contextlib.contextmanager
def on_pool_cpus():
    """Threads and processes started inside run on the pool's CPUs (they inherit the
    calling thread's affinity); the calling thread -- the load generator's -- keeps its."""
    if POOL_CPUS is None:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, POOL_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)

REP_SERVER = r"""
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REP)
s.bind("tcp://127.0.0.1:*")
print(s.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
while True:
    m = s.recv()
    if m == b"quit":
        s.send(b"")
        break
    s.send(m)
"""


def cpu_list(text: str) -> list[int]:
    """"0,1" or "2-3" -> [0, 1] / [2, 3]."""
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def pct(xs, q):
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else None


# --- (a) transport overhead --------------------------------------------------------------

def bench_overhead(shape, rounds, per_round):
    import msgpack
    import zmq

    dims, hash_, split = tuple(shape), "00112233445566aa", 5
    payload = np.random.default_rng(0).integers(0, 256, dims, dtype=np.uint8)
    rng = np.float32([0.0, 1.0])
    body = msgpack.packb({"v": 1, "id": 1, "model": hash_, "split": split, "codec": "raw",
                          "shape": list(dims), "dtype": "u8", "min": 0.0, "max": 1.0,
                          "payload": payload.tobytes(), "k": 5}, use_bin_type=True)
    with on_pool_cpus():
        server = subprocess.Popen([sys.executable, "-c", REP_SERVER], stdout=subprocess.PIPE,
                                  text=True)
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.connect(server.stdout.readline().strip())
    echo = {"dims": dims, "classes": 10, "split": split, "model_hash": hash_, "delay_us": 0}
    with on_pool_cpus():
        pool = _C.Pool(workers=1, frontend=ANY, echo=echo)
    client = _C.Client(pool.endpoint, hash_, split)
    raw_us, pool_us, c_total, c_compute = [], [], [], []
    try:
        for _ in range(50):  # warm-up: connections, caches
            req.send(body)
            req.recv()
            client.classify(payload, rng)
        for _ in range(rounds):
            for _ in range(per_round):
                t = time.perf_counter()
                req.send(body)
                req.recv()
                raw_us.append((time.perf_counter() - t) * 1e6)
            for _ in range(per_round):
                t = time.perf_counter()
                res = client.classify(payload, rng, 5)[0]
                pool_us.append((time.perf_counter() - t) * 1e6)
                c_total.append(res["total_us"])
                c_compute.append(res["compute_us"])
        req.send(b"quit")
        req.recv()
    finally:
        pool.stop()
        req.close()
        ctx.term()
        server.wait(timeout=10)
    raw = statistics.median(raw_us)
    rtt = statistics.median(pool_us)
    compute = statistics.median(c_compute)
    return {"raw_rtt_us": r(raw, 1), "pool_rtt_us": r(rtt, 1),
            "pool_rtt_c_us": r(statistics.median(c_total), 1), "compute_us": r(compute, 1),
            "overhead_us": r(rtt - compute, 1), "overhead_vs_raw": ratio(rtt - compute, raw),
            "raw_p99_us": r(pct(raw_us, 99), 1), "pool_p99_us": r(pct(pool_us, 99), 1),
            "body_bytes": len(body), "n": len(pool_us)}


# --- (b) throughput and latency ----------------------------------------------------------

def make_model(path):
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                      butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    net.save(path)
    x = np.random.default_rng(1).random((64, 1, 28, 28), dtype=np.float32)
    return net, net.mobile(x)


def closed_loop(endpoint, net, pay, n_clients, seconds, rt_priority=0, pool_tids=()):
    """n_clients closed-loop clients (bf_load_run), each one request at a time for `seconds`;
    returns (requests/s, round trips us, server compute us, batch sizes, CPU use)."""
    c = _C.Client(endpoint, net.hash, net.model.part_range(2)[0], timeout_ms=10000)
    cpu0, pool0, t0 = cpu_seconds(), threads_cpu(pool_tids), time.perf_counter()
    res = c.load_test(pay.data, pay.ranges, clients=n_clients, seconds=seconds,
                      rt_priority=rt_priority)
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - t0
    pool_cpu = threads_cpu(pool_tids) - pool0
    if res["errors"]:
        raise RuntimeError(f"{res['errors']} failed requests ({res['last_error']})")
    # the whole process (clients, broker, workers, ZeroMQ): cores busy, CPU per request;
    # of it, the pool's threads (broker, workers, its ZeroMQ threads) and the rest (the
    # load generator and its ZeroMQ I/O thread)
    n = max(res["ok"], 1)
    use = {"cores": cpu / wall, "cpu_us_per_req": cpu / n * 1e6,
           "pool_cpu_us_per_req": pool_cpu / n * 1e6 if pool_tids else None,
           "client_cpu_us_per_req": (cpu - pool_cpu) / n * 1e6 if pool_tids else None}
    return res["ok"] / res["seconds"], res["latency_us"], res["compute_us"], res["batch"], use


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def thread_ids() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def threads_cpu(tids) -> float:
    """CPU seconds (user + system) of these threads of this process (clock ticks)."""
    ticks = 0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def paced(endpoint, net_hash, split, pay, rate, seconds, n_senders=8, rt_priority=0):
    """Requests at a constant total rate (open loop) on n_senders connections, each sent at
    its due time by the C load generator whatever is still unanswered; latency is answer
    time - due time (so a late answer counts against us).  Returns the load generator's
    records (latency_us, queue_us, compute_us)."""
    c = _C.Client(endpoint, net_hash, split, timeout_ms=10000)
    res = c.load_test(pay.data, pay.ranges, clients=n_senders, seconds=seconds, rate=rate,
                      rt_priority=rt_priority)
    if res["errors"]:
        raise RuntimeError(f"{res['errors']} failed requests ({res['last_error']})")
    return res


def bare_rate(path, pay, workers, seconds):
    """The peer of the pool: `workers` threads running restore + tail (batch 1, one oneDNN
    thread each) in a tight loop, no serving; total images per second.  On a shared
    machine this is the capacity the pool's workers can actually get."""
    counts = [0] * workers
    start = threading.Barrier(workers + 1)
    stop_at = [0.0]

    def run(t):
        bf.set_num_threads(1)
        plan = bf.load(path, part="cloud").plan(2, 3, 1)
        j = t
        plan.forward(pay.data[:1], pay.ranges[:1])  # compile + warm
        start.wait()
        while time.perf_counter() < stop_at[0]:
            plan.forward(pay.data[j % 64:j % 64 + 1], pay.ranges[j % 64:j % 64 + 1])
            counts[t] += 1
            j += 1

    threads = [threading.Thread(target=run, args=(t,)) for t in range(workers)]
    with on_pool_cpus():
        for t in threads:
            t.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def load_row(pool, net, pay, workers, clients, batch, seconds, bare, pool_tids,
             rt_priority=0, batch_timeout_us=0):
    thr, rtts, comp, bats, use = closed_loop(pool.endpoint, net, pay, clients, seconds,
                                             rt_priority, pool_tids)
    row = {"workers": workers, "clients": clients, "batch": batch,
           "batch_timeout_us": batch_timeout_us if batch > 1 else None,
           "req_per_s": r(thr, 1), "p50_us": r(pct(rtts, 50), 0), "p99_us": r(pct(rtts, 99), 0),
           "compute_p50_us": r(float(np.median(comp)), 0),
           "mean_batch": r(float(np.mean(bats)), 2), "cores_busy": r(use["cores"], 2),
           "cpu_us_per_req": r(use["cpu_us_per_req"], 0),
           "pool_cpu_us_per_req": r(use["pool_cpu_us_per_req"], 0),
           "client_cpu_us_per_req": r(use["client_cpu_us_per_req"], 0)}
    if rt_priority:
        row["rt_priority"] = rt_priority
    row["vs_bare"] = r(thr / bare[workers], 3)
    log(row)
    return row


def started(path, net, pay, **kw):
    """A pool, warmed up, and the ids of its threads (those it started: its broker,
    workers, heartbeat and ZeroMQ threads)."""
    before = thread_ids()
    with on_pool_cpus():
        pool = bf.serve(path, bind=ANY, threads=1, **kw)
    closed_loop(pool.endpoint, net, pay, 2, 0.2)  # warm-up: plans, caches
    return pool, thread_ids() - before  # the warm-up's client threads are gone


def bench_load(path, net, pay, seconds):
    """The load table; returns (rows, t_compute, t_compute at one client, bare rates)."""
    rows = []
    bare = {}
    for batch, timeout_us in ((1, 0), (8, 2000), (8, 0)):
        for workers in (1, 2):
            if batch == 1:  # the first pass
                bare[workers] = bare_rate(path, pay, workers, seconds)
                log(f"bare restore + tail, {workers} thread(s): {bare[workers]:.0f} images/s")
            pool, tids = started(path, net, pay, workers=workers, batch=batch,
                                 batch_timeout_us=timeout_us)
            try:
                for clients in (1, 4, 16):
                    rows.append(load_row(pool, net, pay, workers, clients, batch, seconds,
                                         bare, tids, batch_timeout_us=timeout_us))
            finally:
                pool.stop()
    # W = 2 with the pool and the load generator under real-time scheduling (where allowed)
    try:
        pool, tids = started(path, net, pay, workers=2, rt_priority=RT_PRIORITY)
    except bf.Refused as e:
        log(f"no real-time row: {e}")
        pool = None
    if pool is not None:
        try:
            rows.append(load_row(pool, net, pay, 2, 16, 1, seconds, bare, tids, RT_PRIORITY))
        finally:
            pool.stop()

    def compute_p50(clients):
        return next(x["compute_p50_us"] for x in rows if x["workers"] == 1
                    and x["batch"] == 1 and x["clients"] == clients)

    t_compute = compute_p50(16)
    for x in rows:
        x["vs_capacity"] = r(x["req_per_s"] / (x["workers"] * 1e6 / t_compute), 3)
    return rows, t_compute, compute_p50(1), bare


def tail_row(res, rate):
    lat = res["latency_us"].astype(np.float64)
    queue, comp = res["queue_us"].astype(np.float64), res["compute_us"].astype(np.float64)
    p50, p90, p99 = pct(lat, 50), pct(lat, 90), pct(lat, 99)
    slow = lat >= p99
    return {"rate_per_s": r(rate, 1), "p50_us": r(p50, 0), "p90_us": r(p90, 0),
            "p99_us": r(p99, 0), "p99_over_p50": ratio(p99, p50), "n": len(lat),
            "queue_p99_us": r(pct(queue, 99), 0), "compute_p99_us": r(pct(comp, 99), 0),
            # where the slowest 1 % spent their time: waiting at the pool, computing, or in
            # transit (client, ZeroMQ, broker hops: latency less queue and compute)
            "slowest_1pct_mean_us": {"queue": r(float(queue[slow].mean()), 0),
                                     "compute": r(float(comp[slow].mean()), 0),
                                     "transit": r(float((lat - queue - comp)[slow].mean()), 0)},
            "slowest_1pct_bursts": bursts(res["start_us"][slow])}


def bursts(start_us, gap_us=5000):
    """When the slow requests began: bursts of them (each one less than gap_us after the
    last), how many, the largest, and the median time between burst starts -- a pool that
    is slow at random spreads them out; a machine that stalls now and then bunches them."""
    t = np.sort(np.asarray(start_us, dtype=np.float64))
    if len(t) == 0:
        return {"bursts": 0}
    starts = np.concatenate(([0], np.where(np.diff(t) >= gap_us)[0] + 1))
    sizes = np.diff(np.concatenate((starts, [len(t)])))
    gaps = np.diff(t[starts]) / 1000.0
    return {"bursts": len(starts), "largest": int(sizes.max()), "in_bursts_of_5_plus":
            int(sizes[sizes >= 5].sum()), "median_gap_ms": r(float(np.median(gaps)), 1)
            if len(gaps) else None}


def bench_tail(path, net, pay, capacity, t_compute, seconds, reps):
    """p99 / p50 at 50 % and 70 % of the W = 1, B = 1 capacity, constant-rate arrivals on
    8 connections; the 70 % point is the target's.  The same 70 % load on the echo
    backend spinning t_compute per request (a compute without variance) separates what the
    transport adds from what the model's compute time variance adds; the same 70 % load on
    a pool and a load generator under real-time scheduling (rt_priority, where allowed)
    shows what other processes' threads taking the CPU add.  Each point is run `reps` times
    (alternating, so that a slow spell of the machine hits all of them); per point the run
    with the median p99 / p50 is reported in full, and every run's ratio."""
    runs = {"50pct": [], "70pct": [], "70pct_echo": [], "70pct_rt": []}
    with on_pool_cpus():
        pool = bf.serve(path, workers=1, bind=ANY, threads=1)
        try:
            rpool = bf.serve(path, workers=1, bind=ANY, threads=1, rt_priority=RT_PRIORITY)
        except bf.Refused as e:
            rpool, runs["70pct_rt"] = None, str(e)
            log(f"no real-time point: {e}")
    dims = tuple(pay.data.shape[1:])
    echo = {"dims": dims, "classes": 10, "split": 5, "model_hash": "00112233445566aa",
            "delay_us": int(t_compute)}
    with on_pool_cpus():
        epool = _C.Pool(workers=1, frontend=ANY, echo=echo)
    split = net.model.part_range(2)[0]
    try:
        closed_loop(pool.endpoint, net, pay, 1, 0.2)  # warm-up
        paced(epool.endpoint, echo["model_hash"], 5, pay, 0.5 * capacity, 0.2)
        for _ in range(reps):
            for load in (0.5, 0.7):
                rate = load * capacity
                runs[f"{round(load * 100)}pct"].append(tail_row(
                    paced(pool.endpoint, net.hash, split, pay, rate, seconds), rate))
            rate = 0.7 * capacity
            runs["70pct_echo"].append(tail_row(
                paced(epool.endpoint, echo["model_hash"], 5, pay, rate, seconds), rate))
            if rpool:
                runs["70pct_rt"].append(tail_row(
                    paced(rpool.endpoint, net.hash, split, pay, rate, seconds,
                          rt_priority=RT_PRIORITY), rate))
    finally:
        pool.stop()
        epool.stop()
        if rpool:
            rpool.stop()
    out = {}
    for key, rows in runs.items():
        if isinstance(rows, str):  # not run: why
            out[key] = {"skipped": rows}
            continue
        ratios = [x["p99_over_p50"] for x in rows]
        out[key] = sorted(rows, key=lambda x: x["p99_over_p50"])[len(rows) // 2]
        out[key]["p99_over_p50_runs"] = ratios
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (~1 min)")
    ap.add_argument("--pool-cpus", type=cpu_list, default=None,
                    help="CPUs for the pools' threads, e.g. 0,1 (default: all)")
    ap.add_argument("--client-cpus", type=cpu_list, default=None,
                    help="CPUs for the load generator, e.g. 2,3 (default: all): on a machine "
                         "with cores to spare, the pool measured without its clients")
    args = ap.parse_args()
    global POOL_CPUS
    POOL_CPUS = args.pool_cpus
    all_cpus = os.sched_getaffinity(0)
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)  # this thread: the load generator's
    bf.set_num_threads(1)  # the client's own oneDNN use (the mobile half, once)
    rounds, per_round, seconds = (4, 250, 1.0) if args.quick else (10, 500, 3.0)
    load0 = os.getloadavg()[0]  # other processes on a shared machine skew every figure

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "net.bfly")
        net, pay = make_model(path)
        log(f"(a) overhead: echo pool vs raw REQ/REP, payload {pay.data.shape[1:]}")
        over = bench_overhead(pay.data.shape[1:], rounds, per_round)
        log(over)
        log("(b) throughput / latency, real model")
        rows, t_compute, t_compute_1, bare = bench_load(path, net, pay, seconds)
        cap1 = max(x["req_per_s"] for x in rows if x["workers"] == 1 and x["batch"] == 1)
        tails = bench_tail(path, net, pay, cap1, t_compute, seconds, 3 if args.quick else 5)
        log(tails)
        tail = tails["70pct"]

    def top(w, rt=False):
        """The fastest B = 1 row of W workers (None: no such row, e.g. real-time refused)."""
        return max((x for x in rows if x["workers"] == w and x["batch"] == 1
                    and ("rt_priority" in x) == rt), key=lambda x: x["req_per_s"], default=None)

    def best(w, rt=False):
        row = top(w, rt)
        return None if row is None else row["req_per_s"]

    eff1, eff2 = (r(best(w) / (w * 1e6 / t_compute), 3) for w in (1, 2))
    b2rt = best(2, rt=True)  # None where real-time scheduling is not allowed
    eff2_rt = None if b2rt is None else r(b2rt / (2e6 / t_compute), 3)
    # W = 2 is bounded by the CPU each request costs the process, compute and transport:
    # the cores / that CPU is the most it can serve, whatever the scheduling; the pool's
    # own share (its threads' CPU) bounds what it could serve with the clients elsewhere
    cores = len(set(args.pool_cpus or all_cpus) | set(args.client_cpus or all_cpus))
    pool_cores = len(args.pool_cpus or all_cpus)

    def cpu_bound(rt):
        row = top(2, rt)
        if row is None:
            return None
        cap = 2 * 1e6 / t_compute
        return {"cores_busy": row["cores_busy"], "cpu_us_per_req": row["cpu_us_per_req"],
                "beyond_compute_us_per_req": r(row["cpu_us_per_req"] - t_compute, 0),
                "ceiling_vs_capacity": r(cores * 1e6 / row["cpu_us_per_req"] / cap, 3),
                "pool_cpu_us_per_req": row["pool_cpu_us_per_req"],
                "client_cpu_us_per_req": row["client_cpu_us_per_req"],
                "pool_only_ceiling_vs_capacity": r(pool_cores * 1e6 /
                                                   row["pool_cpu_us_per_req"] / cap, 3)}

    w2_cpu, w2_cpu_rt = cpu_bound(False), cpu_bound(True)
    bare1, bare2 = (r(best(w) / bare[w], 3) for w in (1, 2))
    emit({"bench": "pool", "model": "resnet18-w16-28x28-bf(at=2,c=2,s=2)",
          "quick": args.quick, "cores": os.cpu_count(),
          "cpus": {"pool": args.pool_cpus, "client": args.client_cpus},
          "load_avg_start_end": [r(load0, 2), r(os.getloadavg()[0], 2)],
          "raw_p99_over_p50": ratio(over["raw_p99_us"], over["raw_rtt_us"]),
          "overhead_us": over["overhead_us"], "raw_rtt_us": over["raw_rtt_us"],
          "pool_rtt_us": over["pool_rtt_us"], "ratio_overhead_vs_raw": over["overhead_vs_raw"],
          "overhead": over, "t_compute_us": r(t_compute, 1),
          "t_compute_one_client_us": r(t_compute_1, 1),
          "throughput_vs_capacity": {"W1": eff1, "W2": eff2, "W2_rt": eff2_rt},
          # the same against the one-client compute time (see the docstring)
          "throughput_vs_capacity_one_client": {
              k: None if v is None else r(v * t_compute_1 / t_compute, 3)
              for k, v in (("W1", eff1), ("W2", eff2), ("W2_rt", eff2_rt))},
          "w2_cpu": w2_cpu, "w2_cpu_rt": w2_cpu_rt,
          "bare_compute_per_s": {f"W{w}": r(v, 1) for w, v in bare.items()},
          "throughput_vs_bare": {"W1": bare1, "W2": bare2},
          "p99_over_p50_at_70pct": tail["p99_over_p50"],
          "p99_over_p50_at_70pct_rt": tails["70pct_rt"].get("p99_over_p50"), "tail": tails,
          "targets": {"overhead_le_2x_raw": bool(over["overhead_vs_raw"] <= 2.0),
                      "throughput_ge_90pct_W1": bool(eff1 >= 0.9),
                      "throughput_ge_90pct_W2": bool(eff2 >= 0.9),
                      "throughput_ge_90pct_W2_rt": eff2_rt is not None and eff2_rt >= 0.9,
                      "throughput_ge_90pct_of_bare_W1": bool(bare1 >= 0.9),
                      "throughput_ge_90pct_of_bare_W2": bool(bare2 >= 0.9),
                      "p99_le_2x_p50_at_70pct": bool(tail["p99_over_p50"] <= 2.0),
                      "p99_le_2x_p50_at_70pct_rt": bool(tails["70pct_rt"].get(
                          "p99_over_p50", float("inf")) <= 2.0)},
          "table": rows})


if __name__ == "__main__":
    main()
