"""Runtime split switching on a live link whose rate changes, measured.

The pools (one per deployable split) and a cloud-only JPEG server run in the cloud namespace
of a :class:`butterfly.netem.Link`; a phone program runs in the phone namespace and sends a
stream of real images, open loop at `rate` per second, through the phone's serializer while
a :class:`butterfly.netem.Trace` changes the uplink under it.  It runs once with the
adaptive client and once per fixed choice (each split, cloud-only, mobile-only), each time
through the same trace from its start.

    >>> trace = netem.Trace([(0, "wifi"), (8, 0.4), (16, 0.05), (24, "wifi")], duration=32)
    >>> report = live_switching(["rb1.bfly", "rb4.bfly", "rb7.bfly"], "plain.bfly", trace,
    ...                         test.images, test.labels, rate=10, slowdown=8)
    >>> report["phases"][1]["adaptive"]["median_ms"]

The phone is slower than the cloud, as a phone is: every computation the phone program does
(the mobile half, or the whole network for mobile-only) is stretched to `slowdown` times its
measured time (the rest of the time spent waiting), and the planner is given that profile:
this machine's measured layer times, times `slowdown` on the phone.  The measured stretch
is reported.  The adaptive client's uplink estimate comes from its replies' timing only
(bytes over round trip less server time); while mobile-only is in use it sends every
`probe_every`-th image through the split with the smallest payload to keep measuring.  The
trace reaches the phone program only for the report (the planner's choice and the modelled
energy at the true rate), never for its decisions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import _C
from ..checks import check_quantity, int_arg
from ..data import datasets, jpeg
from ..netem import Link, Trace, set_serializer_rate
from ..netem.links import program_env, start_serializer, start_server, stop_serializer, wait_until
from ..network import Network, load, resnet
from ..network.split import insert_butterfly
from ..serving import Client
from ..training import distill, evaluate, train
from . import costmodel, planner
from .candidates import ASSUMED_POWER_W, unit_records
from .profiling import layer_records, profile

LEAD_S = 1.0  # the stream starts this long after the processes are told t0


# --- the phone program (python -m butterfly.experiments.live CONFIG.json) --------------------

def _stretch(fn, slowdown: float):
    """Runs fn() and then waits until slowdown x its time has passed: (result, total ms)."""
    t0 = time.perf_counter()
    out = fn()
    wait_until(t0 + slowdown * (time.perf_counter() - t0))
    return out, (time.perf_counter() - t0) * 1e3


class _Phone:
    """The options of one phone, their candidates and the cost model of this machine."""

    def __init__(self, cfg: dict):
        import zmq

        self.cfg = cfg
        self.k = float(cfg["slowdown"])
        self.plain = Network.load(cfg["plain"])
        plain_recs = layer_records(self.plain)
        layer_ms = {r["name"]: r["ms"] for r in profile(self.plain, repeats=20)["layers"]}
        # what one request of each option puts on the uplink, framing included, and the
        # fixed part of its round trip (both measured in a calibration run before the
        # stream): the upload the model and the estimator count, and the time they take off
        wire = cfg.get("wire_bytes") or {}
        self.base_ms = cfg.get("base_ms") or {}
        self._zmq = zmq.Context()
        self.options = []
        cloud_recs, sent = {}, {}  # per option: its cloud layers, the bytes it sends itself
        for opt in cfg["options"]:
            name, kind = opt["name"], opt["kind"]
            if kind == "split":
                full = Network.load(opt["model"])
                for r in profile(full, repeats=20)["layers"]:
                    if r["part"] in ("reduce", "restore"):
                        layer_ms[f"{name}:{r['name']}"] = r["ms"]
                handle = Client(opt["model"], opt["endpoint"], timeout_ms=60000, retries=0)
                cloud_recs[name] = [r for r in unit_records(full, f"{name}:")
                                    if r["part"] in ("restore", "tail")]
                sent[name] = full.upload_bytes
            elif kind == "cloud-only":
                handle = self._zmq.socket(zmq.REQ)
                handle.setsockopt(zmq.LINGER, 0)
                handle.connect(opt["endpoint"])
                cloud_recs[name] = plain_recs
                sent[name] = cfg["jpeg_bytes"]
            elif kind == "mobile-only":
                handle = None
                cloud_recs[name] = []
                sent[name] = 0
            else:
                raise _C.InvalidArgument(f"unknown option kind {kind!r}")
            self.options.append((name, kind, handle))
        # framing beyond what an option sends itself (0 where nothing was measured)
        self.extra = {name: wire.get(name, sent[name]) - sent[name] for name in sent}
        # the phone's time per option: its whole computation on this CPU, x slowdown in the
        # phone's profile (the cloud's from the layer profile).  Measured as the stream runs
        # it, one call every 50 ms (back to back, caches stay warm and it takes a third)
        x = np.load(cfg["images"])[:1]
        self.candidates = []
        for k, (name, kind, _) in enumerate(self.options):
            times = []
            for _ in range(9):
                time.sleep(0.05)
                times.append(self._compute(k, x)[1])
            phone_ms = statistics.median(times)
            layer_ms[f"{name}:phone"] = phone_ms
            mobile = ({"name": f"{name}:phone", "macs": 0, "out_bytes": 0, "weight_bytes": 0},)
            self.candidates.append(costmodel.Candidate(
                name, mobile, tuple(cloud_recs[name]), sent[name] + self.extra[name],
                accuracy=cfg["options"][k].get("accuracy"), at=name))
        self.mobile = costmodel.DeviceProfile("phone (this CPU x slowdown)", ASSUMED_POWER_W,
                                              layer_ms={n: self.k * v
                                                        for n, v in layer_ms.items()})
        self.cloud = costmodel.DeviceProfile("cloud (this CPU)", None, layer_ms=layer_ms)
        base = statistics.median(self.base_ms.values()) if self.base_ms else 0.0
        radio = dataclasses.replace(costmodel.networks["4g"], rtt_ms=base)
        self.base = costmodel.CostModel(self.mobile, self.cloud, radio, plain_recs)

    def _compute(self, index: int, x: np.ndarray, slowdown: float = 1.0):
        """The phone's own work for option `index`: (what it sends or answers, ms)."""
        name, kind, handle = self.options[index]
        if kind == "mobile-only":
            return _stretch(lambda: self.plain.forward(x), slowdown)
        if kind == "split":
            return _stretch(lambda: handle.half.mobile(x), slowdown)
        return _stretch(lambda: jpeg.encode(jpeg.to_uint8_hwc(x)[0]), slowdown)

    @property
    def budget(self) -> dict[str, Any]:
        """The planner's accuracy filter: options below the plain network's accuracy less
        the budget are never chosen (no filter without a budget)."""
        if self.cfg.get("accuracy_budget") is None:
            return {}
        return {"accuracy_budget": self.cfg["accuracy_budget"],
                "baseline_accuracy": self.cfg["baseline_accuracy"]}

    def model_at(self, mbps: float) -> costmodel.CostModel:
        return dataclasses.replace(self.base, network=self.base.network.with_uplink(mbps))

    def run(self, index: int, x: np.ndarray) -> dict[str, Any]:
        """One image through option `index`: label, bytes on the uplink, the network's round
        trip less the server's time and the path's fixed time (ms; None for mobile-only),
        and the phone's compute (ms, stretched)."""
        name, kind, handle = self.options[index]
        out, phone_ms = self._compute(index, x, self.k)
        if kind == "mobile-only":
            return {"label": int(np.argmax(out[0])), "bytes": 0, "upload_ms": None,
                    "phone_ms": phone_ms}
        t = time.perf_counter()
        if kind == "split":
            r = handle.classify_payload(out, 1)[0]
            label, server_us, nbytes = r.label, r.queue_us + r.compute_us, \
                out.nbytes_per_sample
        else:
            handle.send(out)
            if not handle.poll(60000):
                raise _C.Timeout("the cloud-only server did not answer in 60 s")
            reply = json.loads(handle.recv())
            label, server_us, nbytes = reply["top"][0], reply["server_us"], len(out)
        rtt_ms = (time.perf_counter() - t) * 1e3
        return {"label": label, "bytes": nbytes + self.extra[name], "rtt_ms": rtt_ms,
                "upload_ms": rtt_ms - server_us / 1e3 - self.base_ms.get(name, 0.0),
                "phone_ms": phone_ms}


def phone_main(config_path: str) -> None:
    """The phone program: one run of the stream, one JSON line per request, then a summary."""
    cfg = json.loads(open(config_path).read())
    phone = _Phone(cfg)
    images = np.load(cfg["images"])
    phone.run(len(phone.options) - 1, images[:1])  # warm up every option once
    for k in range(len(phone.options) - 1):
        phone.run(k, images[:1])
    if cfg["mode"] == "calibrate":  # per networked option: its fixed round trip (ms)
        base = {}
        for k, (name, kind, _) in enumerate(phone.options):
            if kind != "mobile-only":
                base[name] = statistics.median(phone.run(k, images[j:j + 1])["upload_ms"]
                                               for j in range(9))
        print(json.dumps({"summary": True, "base_ms": base}), flush=True)
        return
    print("ready", flush=True)
    cfg["t0"] = float(sys.stdin.readline())  # the trace's start, on CLOCK_MONOTONIC
    names = [o["name"] for o in cfg["options"]]
    trace = Trace([(p["start"], p["mbps"]) for p in cfg["trace"]], cfg["duration"])
    adaptive = cfg["mode"] == "adaptive"
    if adaptive:
        estimator = planner.BandwidthEstimator(window=cfg["window"],
                                               initial_mbps=cfg["initial_mbps"])
        switcher = planner.Switcher(phone.candidates, phone.model_at, "latency",
                                    margin=cfg["margin"], patience=cfg["patience"],
                                    **phone.budget)
        current = phone.candidates.index(switcher.update(estimator.mbps))
        allowed = {c.name for c in switcher.candidates}
        networked = [i for i, (name, kind, _) in enumerate(phone.options)
                     if kind != "mobile-only" and name in allowed]
        probe = min(networked, key=lambda i: phone.candidates[i].payload_bytes) \
            if networked else None
    else:
        current = names.index(cfg["mode"])
    best_cache: dict[float, int] = {}
    for i in range(len(images)):
        due = cfg["t0"] + i / cfg["rate"]
        while (left := due - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        index, is_probe = current, False
        if adaptive and phone.options[current][1] == "mobile-only" and probe is not None \
                and i % cfg["probe_every"] == 0:
            index, is_probe = probe, True
        r = phone.run(index, images[i:i + 1])
        latency_ms = (time.monotonic() - due) * 1e3
        if adaptive and r["upload_ms"] is not None:
            upload_s = max(r["upload_ms"] / 1e3, 1e-5)
            current = phone.candidates.index(switcher.update(estimator.add(r["bytes"],
                                                                           upload_s)))
        # for the report only: the planner's choice and the energy at the true rate
        true = trace.rate_at(due - cfg["t0"])
        if true not in best_cache:
            best_cache[true] = phone.candidates.index(planner.plan(
                phone.candidates, phone.model_at(true), "latency", **phone.budget).chosen)
        energy = phone.model_at(true).cost(phone.candidates[index]).energy_mj
        print(json.dumps({"i": i, "t": due - cfg["t0"], "option": names[index],
                          "probe": is_probe, "latency_ms": latency_ms,
                          "estimate_mbps": estimator.mbps if adaptive else None,
                          "label": r["label"], "bytes": r["bytes"], "phone_ms": r["phone_ms"],
                          "energy_mj": energy, "best": names[best_cache[true]]}), flush=True)
    model_ms = {c.name: phone.model_at(1.0).cost(c).mobile_ms for c in phone.candidates}
    print(json.dumps({"summary": True, "model_phone_ms": model_ms}), flush=True)


# --- the experiment --------------------------------------------------------------------------

LIVE_CUTS = ("RB1", "RB4", "RB7")  # an early, a middle and a late cut: payloads 196, 49, 4 B
DISTILL_LR = 0.0005  # the unit's feature loss, before the fine-tune: 0.002 diverges at RB1


def default_teacher() -> str | None:
    """The ResNet-18 (small stem, width 16) trained here on Fashion-MNIST for 15 epochs that
    a checkout of the repository keeps (benchmarks/results/baseline-w16.bfly), else None."""
    p = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "baseline-w16.bfly"
    return str(p) if p.is_file() else None


def cache_dir() -> Path:
    """Where live_models keeps its models by default: $XDG_CACHE_HOME/butterfly/live."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "butterfly" / "live"


def live_models(out=None, quick: bool = False, teacher=None,
                log=print) -> tuple[list[str], str]:
    """One trained network and three deployable splits of it: a plain ResNet-18 (small stem,
    width 16) trained on Fashion-MNIST -- `teacher` (a model file), else default_teacher(),
    else one trained now -- and a unit (c' = 1, s = 2) inserted after an early, a middle and
    a late block, each distilled onto it without labels (the restored feature against the
    teacher's), then fine-tuned end to end with the labels.  quick: fewer images.  Each
    model's meta "accuracy" is its top-1 on 2,000 test images.  Cached in `out` (default
    cache_dir()) under names that tell the teacher and the recipe; a cached set is reused.
    Returns (the split model paths, the plain model path)."""
    out = Path(out) if out is not None else cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    teacher = teacher if teacher is not None else default_teacher()
    if teacher is not None:
        if not Path(teacher).is_file():
            raise _C.FileError(f"the teacher '{teacher}' is not a file")
        digest = hashlib.sha256(Path(teacher).read_bytes()).hexdigest()[:10]
        tag = f"-{digest}"
    else:
        tag = "-trained"
    tag += "-quick" if quick else ""
    plain_path = out / f"live-plain{tag}.bfly"
    paths = [out / f"live-{cut.lower()}{tag}.bfly" for cut in LIVE_CUTS]
    if plain_path.exists() and all(p.exists() for p in paths):
        try:
            for p in (plain_path, *paths):
                load(p)
            return [str(p) for p in paths], str(plain_path)
        except _C.Error as e:
            log(f"live: training again, a cached model does not load: {e}")
    train_set, test_set = datasets.fashion_mnist()
    test = test_set.subset(2000)
    n_train = 8192 if quick else len(train_set)
    if teacher is not None:
        plain = load(teacher)
        log(f"live: the plain network: {teacher}")
    else:
        plain = resnet(18, num_classes=10, in_channels=1, small=True, width=16)
        log(f"live: training the plain network on {n_train} images")
        train(plain, train_set.subset(n_train) if quick else train_set,
              epochs=1 if quick else 3, batch_size=128, lr=0.1, progress=False)
    plain.meta["accuracy"] = evaluate(plain, test)["top1"]
    plain.meta["classes"] = list(train_set.classes)
    _save(plain, plain_path)
    tune = train_set.subset(n_train) if quick else train_set
    for cut, path in zip(LIVE_CUTS, paths):
        student = insert_butterfly(plain, at=cut, channels=1, stride=2)
        distill(student, plain, train_set.images[:n_train], epochs=1, lr=DISTILL_LR,
                progress=False)
        distilled = evaluate(student, test)["top1"]
        train(student, tune, epochs=1, batch_size=128, lr=0.01, progress=False)
        student.meta["accuracy"] = evaluate(student, test)["top1"]
        _save(student, path)
        log(f"live: {cut}: {student.upload_bytes} B per image, top-1 {distilled:.4f} "
            f"distilled, {student.meta['accuracy']:.4f} fine-tuned (plain "
            f"{plain.meta['accuracy']:.4f})")
    return [str(p) for p in paths], str(plain_path)


def _save(net: Network, path: Path) -> None:
    """Saves through a temporary file: an interrupted run leaves no partial model."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    net.save(tmp)
    os.replace(tmp, path)

def _cut_name(path) -> str:
    """A split model's cut as a short name: "RB4" for a ResNet block's end, else the layer."""
    unit = load(path).meta.get("butterfly")
    if not isinstance(unit, dict):
        raise _C.InvalidArgument(f"{path} has no butterfly unit: not a split of the network")
    return f"RB{unit['block']}" if unit.get("block") else str(unit.get("at"))


def _stats(values) -> dict[str, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return {"n": 0, "median_ms": None, "p90_ms": None}
    return {"n": len(v), "median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90))}


def switch_delays(records: list[dict], trace: Trace) -> list[dict]:
    """Per rate change: requests after it until the adaptive client used the planner's choice
    for the new rate and kept it to the phase's end (probes aside); None if it never did."""
    out = []
    for k, phase in enumerate(trace.phases[1:], start=1):
        rows = [r for r in records if phase.start <= r["t"] < phase.end and not r["probe"]]
        if not rows:
            continue
        best = rows[0]["best"]
        settled = None
        for j in range(len(rows)):
            if all(r["option"] == best for r in rows[j:]):
                settled = j
                break
        out.append({"phase": k, "at_s": phase.start, "mbps": phase.mbps, "best": best,
                    "requests_to_settle": settled})
    return out


def summarize(runs: dict[str, list[dict]], trace: Trace, labels, reference) -> dict[str, Any]:
    """Per phase and overall: median / p90 latency, modelled phone energy and accuracy of
    every run; the per-phase best fixed choice; the adaptive client's switch delays; whether
    every reply equals the local prediction of the option that gave it."""
    phases = []
    for k, phase in enumerate(trace.phases):
        row: dict[str, Any] = {"phase": k, "start_s": phase.start, "end_s": phase.end,
                               "mbps": phase.mbps, "name": phase.name}
        for mode, recs in runs.items():
            rs = [r for r in recs if phase.start <= r["t"] < phase.end]
            row[mode] = {**_stats([r["latency_ms"] for r in rs]),
                         "energy_mj": float(np.mean([r["energy_mj"] for r in rs])) if rs
                         else None,
                         "options": sorted({r["option"] for r in rs})}
        fixed = {m: row[m]["median_ms"] for m in runs if m != "adaptive"
                 and row[m]["median_ms"] is not None}
        row["best_fixed"] = min(fixed, key=fixed.get) if fixed else None
        phases.append(row)
    overall = {}
    for mode, recs in runs.items():
        ok = [labels[r["i"]] == r["label"] for r in recs]
        agree = [reference[r["option"]][r["i"]] == r["label"] for r in recs]
        overall[mode] = {**_stats([r["latency_ms"] for r in recs]),
                         "energy_mj": float(np.mean([r["energy_mj"] for r in recs])),
                         "accuracy": float(np.mean(ok)), "agreement": float(np.mean(agree)),
                         "answered": len(recs),
                         "unique": len({(r.get("round", 0), r["i"]) for r in recs})}
    out = {"phases": phases, "overall": overall}
    if "adaptive" in runs:
        out["switch_delays"], out["switches"] = [], 0
        for rnd in sorted({r.get("round", 0) for r in runs["adaptive"]}):
            rows = [r for r in runs["adaptive"] if r.get("round", 0) == rnd]
            out["switch_delays"] += [{**d, "round": rnd} for d in switch_delays(rows, trace)]
            used = [r["option"] for r in rows]
            out["switches"] += sum(1 for a, b in zip(used, used[1:]) if a != b)
    return out


def format_report(report: dict[str, Any]) -> str:
    """The report as text: per phase the median latency of every run and the best fixed
    choice; overall median, p90, energy and accuracy; the switch delays; the agreement."""
    modes = list(report["overall"])
    width = max(11, *(len(m) for m in modes))
    head = f"{'ms':>14} " + " ".join(f"{m:>{width}}" for m in modes)
    lines = [head + "   best fixed"]
    for ph in report["phases"]:
        cells = [ph[m]["median_ms"] for m in modes]
        lines.append(f"{ph['name'][:14]:>14} " + " ".join(
            f"{v:>{width}.2f}" if v is not None else f"{'-':>{width}}" for v in cells)
            + f"   {ph['best_fixed']}")
    o = report["overall"]
    for label, key, fmt in (("overall median", "median_ms", ".2f"), ("overall p90", "p90_ms",
                                                                     ".2f"),
                            ("energy mJ", "energy_mj", ".2f"), ("accuracy", "accuracy", ".3f")):
        lines.append(f"{label:>14} " + " ".join(f"{o[m][key]:>{width}{fmt}}" for m in modes))
    if "switch_delays" in report:
        lines.append("requests until the adaptive client settled after each change: "
                     + ", ".join(str(d["requests_to_settle"]) for d in report["switch_delays"]))
        lines.append(f"adaptive answers equal to the local answer of the option used: "
                     f"{100 * o['adaptive']['agreement']:.1f} %")
    return "\n".join(lines)


def _run_phone(link: Link, cpath: str, trace: Trace, relay):
    """Starts the phone program, waits until it has profiled and warmed up, then starts the
    trace and the stream together; returns (its output, the trace player)."""
    p = link.popen("phone", [sys.executable, "-m", "butterfly.experiments.live", cpath],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=program_env())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line or line.startswith("ready"):
            break
    else:
        line = ""
    if not line:
        p.kill()
        raise RuntimeError(f"the phone program did not start (exit code {p.wait()})")
    t0 = time.monotonic() + LEAD_S
    with link.follow(trace, [relay], t0) as player:
        p.stdin.write(f"{t0!r}\n")
        p.stdin.flush()
        try:
            out, _ = p.communicate(timeout=trace.duration + 300)
        except subprocess.TimeoutExpired:
            p.kill()
            raise RuntimeError("the phone program ran past the trace + 300 s") from None
    if p.returncode != 0:
        raise RuntimeError(f"the phone program exited {p.returncode}")
    return out, player


def live_switching(splits, plain, trace: Trace, images: np.ndarray, labels: np.ndarray,
                   rate: float = 10.0, slowdown: float = 8.0, modes=None,
                   patience: int = 2, margin: float = 0.1, window: int = 3,
                   probe_every: int = 4, initial_mbps: float | None = None,
                   accuracy_budget: float | None = None, accuracies: dict | None = None,
                   rounds: int = 1, log=print) -> dict[str, Any]:
    """Serves each split model (its own pool) and the plain model (cloud-only JPEG server)
    in the cloud namespace of a Link, then streams `rate` images per second from the phone
    namespace through `trace`, once adaptively and once per fixed choice (modes: a subset of
    "adaptive" and the option names; default all).  Needs root (network namespaces).

    With `accuracy_budget` (a fraction: 0.02 = 2 points) the adaptive client never picks an
    option whose accuracy is below the plain network's less the budget.  Each option's
    accuracy is `accuracies[name]` or else its model's meta "accuracy" (live_models stores
    it: top-1 on test images); cloud-only and mobile-only have the plain network's.
    With rounds > 1 every mode runs that many times, the order reversed each round; the
    statistics pool the rounds (each row has its "round").
    Returns {"options", "accuracy" (per option, as the planner was given it), "runs" (per
    mode the per-request rows), "phases", "overall", "switch_delays" (per round),
    "switches", "slowdown" (asked and measured), "config"}."""
    rounds = int_arg("rounds", rounds)
    splits = [os.fspath(p) for p in splits]
    n = int(trace.duration * rate)
    if n < 1 or len(images) < n:
        raise _C.InvalidArgument(f"the trace needs {n} images at {rate}/s; got {len(images)}")
    images = np.ascontiguousarray(images[:n], np.float32)
    labels = np.asarray(labels[:n])
    names = [f"S{i + 1}:{_cut_name(p)}" for i, p in enumerate(splits)]
    if len(set(names)) < len(names):
        raise _C.InvalidArgument(f"two splits at the same cut: {names}")
    names += ["cloud-only", "mobile-only"]
    modes = list(modes) if modes is not None else ["adaptive", *names]
    unknown = [m for m in modes if m != "adaptive" and m not in names]
    if unknown:
        raise _C.InvalidArgument(f"unknown mode(s) {unknown}: choose from adaptive, {names}")
    u8 = jpeg.to_uint8_hwc(images)
    blobs = [jpeg.encode(im) for im in u8]
    # what each option answers locally, for the agreement check
    plain_net = load(plain)
    accuracy = {nm: load(p).meta.get("accuracy") for nm, p in zip(names, splits)}
    accuracy["cloud-only"] = accuracy["mobile-only"] = plain_net.meta.get("accuracy")
    accuracy.update(accuracies or {})
    if accuracy_budget is not None:
        check_quantity("accuracy_budget", accuracy_budget)
        missing = [nm for nm, a in accuracy.items() if a is None]
        if missing:
            raise _C.InvalidArgument(f"an accuracy budget needs each option's accuracy: none "
                                     f"for {missing} (give accuracies= or the models' meta "
                                     f"'accuracy')")
    decoded = np.stack([jpeg.decode(b) for b in blobs]).astype(np.float32) / 255.0
    reference = {nm: load(p).predict(images)[:, 0].tolist() for nm, p in zip(names, splits)}
    reference["cloud-only"] = plain_net.predict(
        decoded.reshape(len(decoded), *plain_net.input_shape))[:, 0].tolist()
    reference["mobile-only"] = plain_net.predict(images)[:, 0].tolist()
    runs: dict[str, list[dict]] = {}
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            Link(rate_mbit=trace.phases[0].mbps, serialize=True) as link:
        npy = os.path.join(tmp, "images.npy")
        np.save(npy, images)
        procs, maps, options = [], [], []
        try:
            for i, (nm, path) in enumerate(zip(names, splits)):
                port = 5600 + i
                p, _ = start_server(link, [
                    sys.executable, "-m", "butterfly", "serve", path, "--workers", "1",
                    "--threads", "1", "--bind", f"tcp://{link.ip['cloud']}:{port}"])
                procs.append(p)
                maps.append((15600 + i, link.ip["cloud"], port))
                options.append({"name": nm, "kind": "split", "model": path,
                                "endpoint": f"tcp://127.0.0.1:{15600 + i}"})
            p, _ = start_server(link, [sys.executable, "-m", "butterfly.netem.programs",
                                        "_jpeg_server", os.fspath(plain),
                                        f"tcp://{link.ip['cloud']}:5599"])
            procs.append(p)
            maps.append((15599, link.ip["cloud"], 5599))
            options.append({"name": "cloud-only", "kind": "cloud-only",
                            "endpoint": "tcp://127.0.0.1:15599"})
            options.append({"name": "mobile-only", "kind": "mobile-only"})
            for opt in options:
                opt["accuracy"] = accuracy[opt["name"]]
            base_cfg = {"options": options, "plain": os.fspath(plain), "images": npy,
                        "rate": rate, "slowdown": slowdown,
                        "jpeg_bytes": float(np.mean([len(b) for b in blobs])),
                        "trace": [dataclasses.asdict(p) for p in trace.phases],
                        "duration": trace.duration, "window": window, "margin": margin,
                        "patience": patience, "probe_every": probe_every,
                        "accuracy_budget": accuracy_budget,
                        "baseline_accuracy": accuracy["mobile-only"],
                        "initial_mbps": initial_mbps or costmodel.networks["4g"].uplink_mbps}
            # calibration: the bytes one request of each option puts on the uplink
            relay = start_serializer(link, maps, rate="none")
            cpath = os.path.join(tmp, "calibrate.json")
            with open(cpath, "w") as f:
                json.dump({**base_cfg, "mode": "calibrate"}, f)
            cal = link.run("phone", [sys.executable, "-m", "butterfly.experiments.live", cpath],
                           timeout=300, env=program_env())
            stats = stop_serializer(relay)
            base_cfg["base_ms"] = json.loads(cal.strip().splitlines()[-1])["base_ms"]
            wire = {opt["name"]: stats[str(lport)]["median_bytes"]
                    for opt, (lport, _, _) in zip(options, maps)}
            base_cfg["wire_bytes"] = wire
            log(f"live: bytes per request on the uplink {wire}, fixed round trip (ms) "
                f"{base_cfg['base_ms']}")
            relay = start_serializer(link, maps)
            procs.append(relay)
            # round r runs the modes in order, then in reverse: a drift of the machine's
            # load over the runs reaches every mode alike
            order = [(r, m) for r in range(rounds) for m in (modes if r % 2 == 0
                                                              else modes[::-1])]
            for rnd, mode in order:
                link.set_rate(trace.phases[0].mbps)
                set_serializer_rate(relay, trace.phases[0].mbps)
                cfg = {**base_cfg, "mode": mode}
                cpath = os.path.join(tmp, f"{mode.replace(':', '_')}.json")
                with open(cpath, "w") as f:
                    json.dump(cfg, f)
                log(f"live: {mode} through {trace}" + (f", round {rnd + 1}/{rounds}"
                                                       if rounds > 1 else "") + " ...")
                out, player = _run_phone(link, cpath, trace, relay)
                if player.errors:
                    raise RuntimeError(f"the trace could not be applied: {player.errors}")
                rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                runs.setdefault(mode, []).extend({**r, "round": rnd} for r in rows
                                                 if not r.get("summary"))
                summary.update(next((r for r in rows if r.get("summary")), {}))
            stop_serializer(relay)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=30)
                    except Exception:  # noqa: BLE001 -- the link's close kills it anyway
                        p.kill()
    report = summarize(runs, trace, labels.tolist(), reference)
    measured = {}
    for mode, recs in runs.items():
        for r in recs:
            measured.setdefault(r["option"], []).append(r["phone_ms"])
    report["slowdown"] = {"factor": slowdown, "model_phone_ms": summary.get("model_phone_ms"),
                          "measured_phone_ms": {k: statistics.median(v)
                                                for k, v in measured.items()}}
    report["options"] = names
    report["accuracy"] = accuracy
    report["runs"] = runs
    report["config"] = {"rate": rate, "requests": n, "rounds": rounds, "patience": patience,
                        "margin": margin,
                        "accuracy_budget": accuracy_budget,
                        "window": window, "probe_every": probe_every,
                        "trace": [dataclasses.asdict(p) for p in trace.phases]}
    return report


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m butterfly.experiments.live CONFIG.json")
    phone_main(sys.argv[1])
