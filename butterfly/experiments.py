"""Experiments: per-layer profiling, cost-model inputs from real networks, planning, the demo.

    >>> prof = profile(net, part="all", repeats=20)     # per-layer medians on this machine
    >>> prof["layers"][0]              # {"name", "ms", "macs", "out_bytes", "part", ...}
    >>> phone = machine_profile(net)                     # a costmodel.DeviceProfile (measured)
    >>> cands = split_candidates(net)                    # one costmodel.Candidate per split point

Times are per image (a batch's time divided by its size).  Command line: ``butterfly profile``,
``butterfly plan``, ``butterfly demo`` (the main job, see :func:`demo`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import _C, costmodel, planner
from .models import Butterfly, resnet
from .network import HEAD, REDUCE, RESTORE, TAIL, Network

PART_RANGES = {"all": (HEAD, TAIL), "mobile": (HEAD, REDUCE), "cloud": (RESTORE, TAIL)}
# The paper's reduction per residual block of ResNet-50 (c' for RB1..RB16, stride 2 everywhere).
PAPER_CHANNELS = [1] * 3 + [2] * 4 + [5] * 6 + [10] * 3
PAPER_STRIDE = 2
# "This machine" has no power meter: its phone energy uses the paper's phone power (20.5 mJ in
# 15.7 ms = 1.306 W), an assumption stated wherever it is used.
ASSUMED_POWER_W = costmodel.PAPER_MOBILE_ONLY_MJ / costmodel.PAPER_MOBILE_ONLY_MS
ZSTD_LEVEL = 3  # what the C client uses (csrc/serve/client.c)


# --- profiling ---------------------------------------------------------------------------

def _plan_input(plan: _C.Plan, rng: np.random.Generator):
    src, _ = plan.io
    shape = src["shape"]
    if src["dtype"] == "uint8":
        x = rng.integers(0, 256, size=shape, dtype=np.uint8)
        ranges = np.tile(np.array([[0.0, 1.0]], np.float32), (shape[0], 1))
        return x, ranges
    return rng.random(shape, dtype=np.float32), None


def _median_forward_ms(plan: _C.Plan, x, ranges, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan.forward(x, ranges)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile(net: Network, part: str = "all", batch: int = 1, repeats: int = 20,
            backend: str = "onednn", seed: int = 0) -> dict[str, Any]:
    """Per-layer median times of part "all" | "mobile" | "cloud" of `net` on this machine.

    Returns {"layers": [{"index", "name", "type", "part", "ms", "macs", "out_bytes",
    "weight_bytes"}], "total_ms" (sum of the rows), "forward_ms" (median of whole-plan runs),
    "macs", "batch", "repeats", "backend"}; ms are per image.  Layers absorbed into a fused
    node report 0 ms, reorders are charged to the layer that needs them (bf_plan_profile).
    backend="opencl" profiles the mobile half on an OpenCL device (event times per kernel,
    charged to each kernel's first layer).
    """
    if part not in PART_RANGES:
        raise _C.InvalidArgument(f"part must be one of {sorted(PART_RANGES)}, not {part!r}")
    if repeats < 1 or batch < 1:
        raise _C.InvalidArgument("repeats and batch must be >= 1")
    begin, end = net._range(*PART_RANGES[part])
    info = {r["index"]: r for r in net.layers()}
    rng = np.random.default_rng(seed)
    if backend == "opencl":
        rows, forward_ms = _profile_opencl(net, begin, end, batch, repeats, rng)
    elif backend == "onednn":
        plan = net.plan(begin, end, batch)
        x, ranges = _plan_input(plan, rng)
        rows = plan.profile(x, ranges, repeats=repeats)
        forward_ms = _median_forward_ms(plan, x, ranges, repeats)
    else:
        raise _C.InvalidArgument(f"unknown backend {backend!r}; choose 'onednn' or 'opencl'")
    layers = []
    for r in rows:
        li = info[r["layer"]]
        layers.append({"index": r["layer"], "name": r["name"], "type": li["type"],
                       "part": li["part"], "ms": r["ms"] / batch, "macs": r["macs"],
                       "out_bytes": r["out_bytes"], "weight_bytes": 4 * li["params"]})
    return {"layers": layers, "total_ms": sum(r["ms"] for r in layers),
            "forward_ms": forward_ms / batch, "macs": sum(r["macs"] for r in layers),
            "batch": batch, "repeats": repeats, "backend": backend, "part": part}


def _profile_opencl(net, begin, end, batch, repeats, rng):
    from . import opencl

    if not opencl.available():
        raise _C.Unsupported("no OpenCL device: install an ICD (e.g. pocl-opencl-icd) or "
                             "profile with backend='onednn'")
    if end > REDUCE:
        raise _C.Unsupported("the OpenCL backend runs the mobile half only: part='mobile' "
                             "(or 'all' on a network without a butterfly unit)")
    half = opencl.MobileHalf(net)
    x = rng.random((batch, *net.input_shape), dtype=np.float32)
    run = half.mobile if end == REDUCE else half.head
    run(x)  # compiles kernels, warms up
    per_layer: dict[int, list[float]] = {}
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        walls.append((time.perf_counter() - t0) * 1e3)
        sums: dict[int, float] = {}
        for op in half.profile():
            sums[op["first"]] = sums.get(op["first"], 0.0) + op["ms"]
        for k, v in sums.items():
            per_layer.setdefault(k, []).append(v)
    rows = []
    for i in range(begin, end + 1):
        li = net.model.info(i)
        times = per_layer.get(i, [0.0])
        rows.append({"layer": i, "name": net.model.layer(i)["name"],
                     "ms": statistics.median(times), "macs": li["macs"],
                     "out_bytes": li["out_bytes"]})
    return rows, statistics.median(walls)


# --- cost-model inputs ----------------------------------------------------------------------

def layer_records(net: Network, prefix: str = "", parts=None) -> list[dict[str, Any]]:
    """Cost-model layer records {name, macs, out_bytes, weight_bytes, part, index} of `net`
    (the input layer left out); prefix renames them (to keep candidates' units apart)."""
    out = []
    for r in net.layers():
        if r["type"] == "input" or (parts and r["part"] not in parts):
            continue
        out.append({"name": prefix + r["name"], "macs": r["macs"], "out_bytes": r["out_bytes"],
                    "weight_bytes": 4 * r["params"], "part": r["part"], "index": r["index"]})
    return out


def _builder_args(net: Network) -> dict[str, Any]:
    c = net.config
    if "arch" not in c:
        raise _C.InvalidArgument("the network's metadata has no builder config")
    return {"depth": int(c["arch"].replace("resnet", "")), "num_classes": c["num_classes"],
            "in_channels": c["in_channels"], "small": c["small"],
            "input_size": c.get("input_size"), "width": c.get("width", 64)}


def plain_network(net: Network) -> Network:
    """The same architecture without a butterfly unit (random weights: for shapes and MACs)."""
    return resnet(**_builder_args(net))


def candidate_network(net: Network, after: int, channels: int, stride: int) -> Network:
    return resnet(**_builder_args(net), butterfly=Butterfly(after=after, channels=channels,
                                                            stride=stride))


def _candidate(net: Network, block: int, payload_bytes: int, accuracy=None, **meta):
    """A Candidate for a butterfly network: head + reduce on the phone, the rest in the cloud.
    The unit's layers are renamed "RB<k>:<name>" so one profile can hold every candidate's."""
    key = f"RB{block}:"
    recs = []
    for r in layer_records(net):
        if r["part"] in ("reduce", "restore"):
            r = {**r, "name": key + r["name"]}
        recs.append(r)
    bf_cfg = net.butterfly or {}
    return costmodel.Candidate.from_layers(
        f"RB{block}", recs, payload_bytes, accuracy=accuracy, split=f"RB{block}",
        channels=bf_cfg.get("channels"), stride=bf_cfg.get("stride"), meta=meta)


def payload_bytes(net: Network) -> int:
    """Bytes one image uploads: the 8-bit feature + its (min, max) float32 pair."""
    return int(net.summary()["payload_bytes"]) + 8


def split_candidates(net: Network, results=None, channels=None, stride: int | None = None,
                     blocks=None, progress: bool = False):
    """One costmodel.Candidate per split point of `net`'s architecture, with the networks.

    results: a list of rows {"after", "channels", "stride", "top1", "payload_bytes"} (or a
    path to such a JSON file, e.g. a training sweep's) gives trained candidates with their
    accuracy; else every residual block gets a unit of `channels` (a list per block, or one
    int; default: `net`'s own unit, else the paper's c') and `stride` (default 2), sizes only.
    Returns (candidates, networks) in the same order.
    """
    from tqdm import tqdm

    if isinstance(results, (str, os.PathLike)):
        results = load_results(results)
    nblocks = len(net.config.get("block_ends", []))
    rows = []
    if results:
        for r in results:
            rows.append((int(r["after"]), int(r["channels"]), int(r["stride"]), r.get("top1"),
                         r.get("payload_bytes")))
    else:
        own = net.butterfly or {}
        for b in blocks or range(1, nblocks + 1):
            if channels is None:
                c = own.get("channels") or PAPER_CHANNELS[min(b, len(PAPER_CHANNELS)) - 1]
            else:
                c = channels[b - 1] if isinstance(channels, (list, tuple)) else int(channels)
            s = stride or own.get("stride") or PAPER_STRIDE
            rows.append((b, c, s, None, None))
    cands, nets = [], []
    for after, c, s, top1, pbytes in tqdm(rows, desc="split candidates", disable=not progress,
                                          leave=False):
        cn = candidate_network(net, after, c, s)
        pb = int(pbytes) if pbytes else payload_bytes(cn)
        cands.append(_candidate(cn, after, pb, accuracy=top1, after=after))
        nets.append(cn)
    return cands, nets


def load_results(path) -> list[dict]:
    """Rows of a results file: a JSON list, a {"rows": [...]} object or JSON lines."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = data.get("rows") or data.get("results") or []
    return [r for r in data if isinstance(r, dict) and "after" in r]


def machine_profile(net: Network, candidate_nets=(), repeats: int = 20,
                    power_w: float | None = ASSUMED_POWER_W, name: str = "this machine",
                    progress: bool = False) -> costmodel.DeviceProfile:
    """The measured "this machine" DeviceProfile: every layer of `net`'s plain form (head and
    tail of a butterfly network are the plain layers) and the units of `candidate_nets`
    (renamed as in split_candidates), at batch 1."""
    from tqdm import tqdm

    records: dict[str, dict] = {}
    for r in profile(net, "all", 1, repeats)["layers"]:
        if r["part"] in ("head", "tail"):  # a butterfly network's head + tail = the plain net
            records[r["name"]] = r
    for cn in tqdm(list(candidate_nets), desc="profiling candidates", disable=not progress,
                   leave=False):
        key = f"RB{cn.butterfly['after']}:"
        for r in profile(cn, "all", 1, repeats)["layers"]:
            if r["part"] in ("reduce", "restore"):
                records[key + r["name"]] = {**r, "name": key + r["name"]}
            else:
                records.setdefault(r["name"], r)
    return costmodel.DeviceProfile.measured(records.values(), name, power_w)


# --- payload coding ------------------------------------------------------------------------

def zstd_size(data: bytes, level: int = ZSTD_LEVEL) -> int:
    """Bytes of one zstd frame of `data`: the codec and level the C client uses."""
    return len(_C.payload_encode(bytes(data), "zstd", level))


def coded_sizes(payload) -> dict[str, float]:
    """Mean bytes per image of a Payload as sent: raw, zstd (level 3) and zlib/deflate (level
    9), each + 8 bytes for the (min, max) pair."""
    data = np.asarray(payload[0])
    raw, zs, zl = [], [], []
    for img in data:
        b = np.ascontiguousarray(img).tobytes()
        raw.append(len(b) + 8)
        zs.append(zstd_size(b) + 8)
        zl.append(len(zlib.compress(b, 9)) + 8)
    return {"raw": float(np.mean(raw)), "zstd": float(np.mean(zs)), "zlib": float(np.mean(zl)),
            "zero_fraction": float(np.mean(data == 0))}


# --- tables --------------------------------------------------------------------------------

def cost_tables(model: costmodel.CostModel, candidates, nets=None) -> dict[str, Any]:
    """Per network: cloud-only, mobile-only, every candidate, the best split for latency and
    energy and their gains over cloud-only and mobile-only."""
    out = {}
    for key, network in (nets or costmodel.networks).items():
        m = dataclasses.replace(model, network=network)
        rows = m.table(candidates)
        best = {}
        for obj in planner.OBJECTIVES:
            p = planner.plan(candidates, m, objective=obj)
            cloud, mobile = m.cloud_only(), m.mobile_only()
            value = p.cost.latency_ms if obj == "latency" else p.cost.energy_mj
            ref_c = cloud.latency_ms if obj == "latency" else cloud.energy_mj
            ref_m = mobile.latency_ms if obj == "latency" else mobile.energy_mj
            best[obj] = {"split": p.chosen.name, "value": value,
                         "payload_bytes": p.chosen.payload_bytes,
                         "gain_vs_cloud": ref_c / value, "gain_vs_mobile": ref_m / value,
                         "cloud_only": ref_c, "mobile_only": ref_m}
        out[key] = {"network": network.name, "uplink_mbps": network.uplink_mbps, "rows": rows,
                    "best": best}
    for obj in planner.OBJECTIVES:
        out.setdefault("mean_gain_vs_cloud", {})[obj] = float(np.mean(
            [v["best"][obj]["gain_vs_cloud"] for k, v in out.items() if k in costmodel.networks]))
    return out


def format_tables(tables: dict[str, Any], title: str) -> str:
    lines = [title, f"  {'network':8} {'objective':9} {'best':6} {'payload B':>9} "
                    f"{'split':>10} {'cloud-only':>10} {'mobile-only':>11} {'x cloud':>8} "
                    f"{'x mobile':>8}"]
    for key in costmodel.networks:
        t = tables[key]
        for obj, unit in (("latency", "ms"), ("energy", "mJ")):
            b = t["best"][obj]
            lines.append(f"  {t['network']:8} {obj:9} {b['split']:6} {b['payload_bytes']:9d} "
                         f"{b['value']:8.2f}{unit} {b['cloud_only']:8.2f}{unit} "
                         f"{b['mobile_only']:9.2f}{unit} {b['gain_vs_cloud']:7.1f}x "
                         f"{b['gain_vs_mobile']:7.1f}x")
    g = tables["mean_gain_vs_cloud"]
    lines.append(f"  mean gain over cloud-only (3G/4G/Wi-Fi): latency {g['latency']:.1f}x, "
                 f"energy {g['energy']:.1f}x")
    return "\n".join(lines)


_PAPER_CACHE: dict[tuple, tuple] = {}


def paper_setting(blocks=None, payload_scale: float = 1.0, input_bytes=None,
                  progress: bool = False) -> dict[str, Any]:
    """ResNet-50 at 224x224 with the paper's phone (15.7 ms, 20.5 mJ) and a GTX 1080 Ti-class
    cloud; a unit with the paper's c' and s = 2 after each block in `blocks` (default all 16).
    payload_scale multiplies the 8-bit payloads (e.g. the zstd ratio measured on real
    payloads); input_bytes is the cloud-only JPEG (default the paper's 26,766 B)."""
    key = tuple(blocks or ())
    if key not in _PAPER_CACHE:  # building 16 ResNet-50s takes a while: once per process
        plain = resnet(50)
        cands, _ = split_candidates(plain, blocks=blocks, progress=progress)
        _PAPER_CACHE[key] = (layer_records(plain), cands)
    layers, cands = _PAPER_CACHE[key]
    phone = costmodel.phone_profile(layers)
    cloud = costmodel.cloud_profile()
    if payload_scale != 1.0:
        cands = [dataclasses.replace(c, payload_bytes=max(1, round(c.payload_bytes *
                                                                   payload_scale)))
                 for c in cands]
    model = costmodel.CostModel(phone, cloud, costmodel.networks["4g"], layers,
                                input_bytes=input_bytes or costmodel.PAPER_JPEG_BYTES)
    return {"model": model, "candidates": cands, "tables": cost_tables(model, cands)}


# --- command line ----------------------------------------------------------------------------

def _cli_profile(args) -> int:
    net = Network.load(args.model)
    prof = profile(net, args.part, args.batch, args.repeats, backend=args.backend)
    print(f"{'#':>4} {'layer':32} {'part':8} {'ms':>9} {'MMAC':>9} {'out KB':>9}")
    for r in prof["layers"]:
        print(f"{r['index']:4d} {r['name'][:32]:32} {r['part']:8} {r['ms']:9.4f} "
              f"{r['macs'] / 1e6:9.2f} {r['out_bytes'] / 1024:9.1f}")
    print(f"sum of layers {prof['total_ms']:.3f} ms, whole plan {prof['forward_ms']:.3f} ms "
          f"per image (batch {prof['batch']}, median of {prof['repeats']}), "
          f"{prof['macs'] / 1e9:.3f} GMAC")
    if args.save:
        dev = costmodel.DeviceProfile.measured(prof["layers"], args.name, args.power_w)
        dev.save(args.save)
        print(f"saved {args.save}")
    return 0


def _cli_plan(args) -> int:
    net = Network.load(args.model)
    plain = plain_network(net)
    layers = layer_records(plain)
    cands, nets = split_candidates(net, results=args.results, progress=True)
    if args.profile:
        phone = costmodel.DeviceProfile.load(args.profile)
    else:
        phone = machine_profile(net, nets, repeats=args.repeats, progress=True)
    input_bytes = args.input_bytes
    if input_bytes is None:
        from . import datasets, jpeg

        shape = net.input_shape
        if shape == (1, 28, 28):
            _, test = datasets.fashion_mnist(subset=200)
            input_bytes = jpeg.average_jpeg_bytes(images=test.images)
        else:
            input_bytes = costmodel.PAPER_JPEG_BYTES
    model = costmodel.CostModel(phone, phone, costmodel.networks[args.network], layers,
                                input_bytes=round(input_bytes))
    base = max((c.accuracy for c in cands if c.accuracy is not None), default=None)
    p = planner.plan(cands, model, args.objective, args.accuracy_budget,
                     args.baseline_accuracy if args.baseline_accuracy is not None else
                     (base if args.results else None))
    print(f"{'row':12} {'payload B':>9} {'latency ms':>10} {'energy mJ':>9} {'accuracy':>8}")
    for r in p.table:
        acc = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        print(f"{r['name']:12} {r['payload_bytes']:9d} {r['latency_ms']:10.3f} "
              f"{r['energy_mj']:9.3f} {acc:>8}")
    c = p.cost
    print(f"best for {args.objective} on {model.network.name}: {p.chosen.name} "
          f"(c'={p.chosen.channels}, s={p.chosen.stride}), {c.payload_bytes} B, "
          f"{c.latency_ms:.3f} ms, {c.energy_mj:.3f} mJ")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("profile", help="per-layer times, MACs and output sizes of a model")
    p.add_argument("model")
    p.add_argument("--part", default="all", choices=sorted(PART_RANGES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--backend", default="onednn", choices=["onednn", "opencl"])
    p.add_argument("--save", help="write a measured device profile (JSON) for `plan`")
    p.add_argument("--name", default="this machine")
    p.add_argument("--power-w", type=float, default=ASSUMED_POWER_W,
                   help="device power while computing (default: the paper's phone, 1.306 W)")
    p.set_defaults(func=_cli_profile)

    p = sub.add_parser("plan", help="the best split point of a model's architecture for a "
                                    "network and objective")
    p.add_argument("model")
    p.add_argument("--network", default="4g", choices=sorted(costmodel.networks))
    p.add_argument("--objective", default="latency", choices=planner.OBJECTIVES)
    p.add_argument("--results", help="trained candidates (JSON rows with after, channels, "
                                     "stride, top1, payload_bytes); else sizes only")
    p.add_argument("--profile", help="a device profile from `butterfly profile --save` "
                                     "(default: measure this machine now)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--input-bytes", type=float, help="cloud-only upload (default: measured "
                                                     "JPEG of the input)")
    p.add_argument("--accuracy-budget", type=float, default=0.02)
    p.add_argument("--baseline-accuracy", type=float)
    p.set_defaults(func=_cli_plan)

    p = sub.add_parser("demo", help="train, split, serve and measure on Fashion-MNIST")
    p.add_argument("--quick", action="store_true", help="tiny subset, one short epoch (CI)")
    p.add_argument("--out", default="out", help="where models, plots and demo.json go")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--retrain", action="store_true", help="ignore a cached model")
    p.add_argument("--no-netem", action="store_true", help="skip the emulated radio links")
    p.add_argument("--codec", default="zstd", choices=["raw", "zstd"])
    p.set_defaults(func=demo)


# --- the demo ------------------------------------------------------------------------------

DEMO_CONFIG = {"after": 2, "channels": 1, "stride": 2, "width": 16}


def demo_network() -> Network:
    """ResNet-18 (small stem, width 16) for Fashion-MNIST with a unit after block 2: the
    16x28x28 feature becomes a 1x14x14 uint8 payload."""
    c = DEMO_CONFIG
    return resnet(18, num_classes=10, in_channels=1, small=True, width=c["width"],
                  butterfly=Butterfly(after=c["after"], channels=c["channels"],
                                      stride=c["stride"]))


def demo_model(out: Path, quick: bool, epochs: int | None = None, retrain: bool = False,
               log=print):
    """A trained demo network: loaded from `out` (or ~/.cache/butterfly) when an earlier run
    trained it, else trained now and saved there.  Returns (path, network, info)."""
    from . import datasets
    from .training import train

    epochs = epochs or (1 if quick else 3)
    n_train = 4096 if quick else 60000
    name = f"fmnist-resnet18w16-rb2c1s2-e{epochs}{'-quick' if quick else ''}.bfly"
    path = out / name
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "butterfly" / name
    if not retrain:
        for p in (path, cache):
            if p.exists():
                try:
                    net = Network.load(p)
                    if p != path:
                        net.save(path)
                    log(f"model: {p} (trained earlier; --retrain to train again)")
                    return path, net, net.meta.get("trained", {})
                except _C.Error as e:
                    log(f"model: ignoring {p}: {e}")
    train_set, _ = datasets.fashion_mnist()
    if quick:
        train_set = train_set.subset(n_train)
    net = demo_network()
    log(f"training ResNet-18 (width 16) with a butterfly unit after RB2 on {len(train_set)} "
        f"Fashion-MNIST images, {epochs} epoch(s)")
    t0 = time.perf_counter()
    train(net, train_set, epochs=epochs, batch_size=128, lr=0.1,
          warmup_epochs=0.0 if quick else 0.2, flip=True, progress=True)
    info = {"epochs": epochs, "train_images": len(train_set),
            "train_seconds": time.perf_counter() - t0}
    net.meta["trained"] = info
    net.meta["dataset"] = "fashion-mnist"
    net.meta["classes"] = list(train_set.classes)
    net.save(path)
    if not quick:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            net.save(cache)
        except OSError:
            pass
    return path, net, info


def _classify_through_pool(path, endpoint, images, codec, batch=100):
    from tqdm import tqdm

    from .serving import Client

    client = Client(path, endpoint, codec=codec, timeout_ms=5000)
    labels, rtt, mobile = [], [], []
    for i in tqdm(range(0, len(images), batch), desc="classifying through the pool",
                  unit="batch", leave=False):
        for r in client.classify(images[i:i + batch], k=1):
            labels.append(r.label)
            rtt.append(r.rtt_ms)
            mobile.append(r.mobile_ms)
    return np.array(labels), np.array(rtt), np.array(mobile)


def _plot_tables(tables: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    keys = list(costmodel.networks)
    width = 0.27
    for ax, obj, unit in ((axes[0], "latency", "ms"), (axes[1], "energy", "mJ")):
        xs = np.arange(len(keys))
        vals = [[tables[k]["best"][obj][f] for k in keys]
                for f in ("cloud_only", "mobile_only", "value")]
        for j, (v, lab) in enumerate(zip(vals, ("cloud-only", "mobile-only", "butterfly (best)"))):
            ax.bar(xs + (j - 1) * width, v, width, label=lab)
        ax.set_xticks(xs, [tables[k]["network"] for k in keys])
        ax.set_yscale("log")
        ax.set_ylabel(f"{obj} per image ({unit})")
        ax.set_title(obj)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_splits(tables: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, obj, unit in ((axes[0], "latency", "ms"), (axes[1], "energy", "mJ")):
        for k in costmodel.networks:
            rows = [r for r in tables[k]["rows"] if r["kind"] == "split"]
            ax.plot([r["name"] for r in rows], [r[f"{obj}_{unit.lower()}"] for r in rows],
                    marker="o", label=tables[k]["network"])
        ax.set_yscale("log")
        ax.set_ylabel(f"{obj} ({unit})")
        ax.set_xlabel("butterfly unit after")
        ax.tick_params(axis="x", rotation=60)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table_json(tables: dict) -> dict:
    """The tables without the per-row dumps (for demo.json / benchmark output)."""
    out = {k: {"network": v["network"], "uplink_mbps": v["uplink_mbps"], "best": v["best"]}
           for k, v in tables.items() if k in costmodel.networks}
    out["mean_gain_vs_cloud"] = tables["mean_gain_vs_cloud"]
    return out


def demo(args) -> int:
    """`butterfly demo`: train (or load) the Fashion-MNIST butterfly network, serve its cloud
    half on loopback, classify the test set through the pool, report accuracy, bytes per
    image, the latency / energy tables (paper setting and this machine), emulated links."""
    from . import datasets, jpeg, netem
    from .serving import serve
    from .training import evaluate

    quick = args.quick
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"quick": quick}
    t_start = time.perf_counter()

    def log(msg=""):
        print(msg, flush=True)

    path, net, info = demo_model(out, quick, args.epochs, args.retrain, log)
    report["model"] = {"path": str(path), **info, "payload_bytes": payload_bytes(net)}
    _, test = datasets.fashion_mnist()
    if quick:
        test = test[:300]

    # accuracy: locally and through the pool
    local = evaluate(net, test)
    local_pred = net.predict(test.images)[:, 0]
    pool = serve(path, workers=1, bind="tcp://127.0.0.1:*")
    try:
        pool_pred, rtt, mobile_ms = _classify_through_pool(path, pool.endpoint, test.images,
                                                           args.codec)
        stats = pool.stats()
    finally:
        pool.stop()
    pool_acc = float(np.mean(pool_pred == test.labels))
    agree = float(np.mean(pool_pred == local_pred))
    log(f"\naccuracy on {len(test)} test images: local {local['top1']:.4f}, through the pool "
        f"{pool_acc:.4f} (predictions agree on {100 * agree:.2f} %)")
    log(f"pool ({args.codec} payloads): round trip median {np.median(rtt):.3f} ms, mobile half "
        f"{np.median(mobile_ms):.3f} ms per image; {stats['replies_ok']} replies, "
        f"{stats['errors']} errors")
    report["accuracy"] = {"local": local["top1"], "pool": pool_acc, "agreement": agree,
                          "n": len(test), "codec": args.codec,
                          "rtt_ms_median": float(np.median(rtt)),
                          "mobile_ms_median": float(np.median(mobile_ms))}

    # bytes per image
    n_bytes = min(len(test), 1000)
    sizes = coded_sizes(net.mobile(test.images[:n_bytes]))
    jpeg95 = jpeg.average_jpeg_bytes(images=test.images[:n_bytes])
    jpeg75 = jpeg.average_jpeg_bytes(75, images=test.images[:n_bytes])
    raw = int(np.prod(net.input_shape))
    log(f"\nbytes per image (mean of {n_bytes}): raw input {raw} B, JPEG q95 {jpeg95:.0f} B "
        f"(q75 {jpeg75:.0f} B); butterfly payload {sizes['raw']:.0f} B, zstd {sizes['zstd']:.1f} "
        f"B, zlib {sizes['zlib']:.1f} B ({100 * sizes['zero_fraction']:.0f} % zeros)")
    log(f"  = {raw / sizes['zstd']:.1f}x less than the raw input, {jpeg95 / sizes['zstd']:.1f}x "
        f"less than its JPEG (zstd-coded payload)")
    report["bytes"] = {"raw_input": raw, "jpeg_q95": jpeg95, "jpeg_q75": jpeg75, **{
        f"payload_{k}": v for k, v in sizes.items()}}

    # the paper setting
    zstd_ratio = sizes["zstd"] / sizes["raw"]
    blocks = [1, 4, 8, 14] if quick else None
    paper = paper_setting(blocks=blocks, progress=True)
    log("\n" + format_tables(paper["tables"], "latency / energy, paper setting (ResNet-50 "
        "224x224, TX2-class phone 15.7 ms, GTX 1080 Ti-class cloud, cloud-only uploads "
        "26,766 B JPEG; 8-bit payloads, c' as the paper):"))
    paper_z = paper_setting(blocks=blocks, payload_scale=zstd_ratio)
    g = paper_z["tables"]["mean_gain_vs_cloud"]
    log(f"  with zstd-coded payloads (x{zstd_ratio:.2f}, our trained payloads' ratio): "
        f"latency {g['latency']:.1f}x, energy {g['energy']:.1f}x over cloud-only")
    report["paper_setting"] = _table_json(paper["tables"])
    report["paper_setting_zstd"] = _table_json(paper_z["tables"])

    # this machine
    cands, nets = split_candidates(net, progress=True)
    cands = [dataclasses.replace(c, accuracy=local["top1"]) if c.name == "RB2" else c
             for c in cands]
    phone = machine_profile(net, nets, repeats=5 if quick else 20, progress=True)
    plain = layer_records(plain_network(net))
    mmodel = costmodel.CostModel(phone, phone, costmodel.networks["4g"], plain,
                                 input_bytes=round(jpeg95))
    mtables = cost_tables(mmodel, cands)
    log("\n" + format_tables(mtables, f"latency / energy, this machine as the phone and the "
        f"cloud (measured per-layer times, {ASSUMED_POWER_W:.3f} W assumed), Fashion-MNIST "
        f"28x28, cloud-only uploads its JPEG ({jpeg95:.0f} B):"))
    report["this_machine"] = _table_json(mtables)

    # emulated radio links
    ok, why = netem.available()
    if args.no_netem:
        report["netem"] = {"skipped": "--no-netem"}
    elif not ok:
        log(f"\nemulated links skipped: {why}")
        report["netem"] = {"skipped": why}
    else:
        n_req = 10 if quick else 40
        log(f"\nemulated uplinks (network namespaces, tc tbf + the phone's serializer; "
            f"{n_req} requests each; 'with extensions' = measured request bytes and the "
            f"unshaped path's transport time added to the model):")
        rows = netem.compare(path, test.images[:n_req], mmodel, codec=args.codec,
                             requests=n_req, log=log)
        report["netem"] = rows

    # plots
    _plot_tables(paper["tables"], out / "latency_energy_paper.png",
                 "ResNet-50, paper setting: best butterfly split vs cloud-only / mobile-only")
    _plot_splits(paper["tables"], out / "splits_paper.png", "ResNet-50, paper setting: cost "
                 "of each split point")
    _plot_tables(mtables, out / "latency_energy_machine.png",
                 "Fashion-MNIST ResNet-18, this machine")
    report["seconds"] = time.perf_counter() - t_start
    (out / "demo.json").write_text(json.dumps(report, indent=1, default=float))
    log(f"\nplots and demo.json in {out}/ ({report['seconds']:.0f} s)")
    if agree < 1.0:
        log("ERROR: the pool and the local network disagree")
        return 1
    return 0
