"""``butterfly demo``, the main job: train (or load) the Fashion-MNIST butterfly network, serve
its cloud half, classify the test set through the pool, report accuracy, bytes per image,
the latency / energy tables (paper setting and this machine), the emulated links and, as
root, runtime switching on a live link."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import _C, netem
from ..data import datasets, jpeg
from ..network import Butterfly, Network, coded_sizes, plain_network, resnet
from ..serving import Client, serve
from ..training import evaluate, train
from . import costmodel
from .candidates import (
    ASSUMED_POWER_W,
    cost_tables,
    format_tables,
    machine_profile,
    payload_bytes,
    split_candidates,
)
from .emulated import compare
from .paper import paper_setting
from .plots import plot_live, plot_splits, plot_tables
from .profiling import layer_records

DEMO_CONFIG = {"at": 2, "channels": 1, "stride": 2, "width": 16}


def demo_network() -> Network:
    """ResNet-18 (small stem, width 16) for Fashion-MNIST with a unit after block 2: the
    16x28x28 feature becomes a 1x14x14 uint8 payload."""
    c = DEMO_CONFIG
    return resnet(18, num_classes=10, in_channels=1, small=True, width=c["width"],
                  butterfly=Butterfly(at=c["at"], channels=c["channels"],
                                      stride=c["stride"]))


def demo_model(out: Path, quick: bool, epochs: int | None = None, retrain: bool = False,
               log=print):
    """A trained demo network: loaded from `out` (or ~/.cache/butterfly) when an earlier run
    trained it, else trained now and saved there.  Returns (path, network, info)."""

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


    client = Client(path, endpoint, codec=codec, timeout_ms=5000)
    labels, rtt, mobile = [], [], []
    for i in tqdm(range(0, len(images), batch), desc="classifying through the pool",
                  unit="batch", leave=False):
        for r in client.classify(images[i:i + batch], k=1):
            labels.append(r.label)
            rtt.append(r.rtt_ms)
            mobile.append(r.mobile_ms)
    return np.array(labels), np.array(rtt), np.array(mobile)


LIVE_TRACE = ((0, "wifi"), (1, "4g"), (2, 0.3), (3, 0.04), (4, "wifi"))  # x phase seconds
LIVE_BUDGET = 0.1  # the quick splits are 4-10 points below the plain network


def live_demo(out: Path, quick: bool, log=print) -> dict[str, Any]:
    """Runtime switching on a live link: three splits of a trained network (live_models'
    quick ones), cloud-only and mobile-only served in the cloud namespace, the uplink
    following LIVE_TRACE (3 s phases with quick, else 6 s), the stream once adaptively and
    once per fixed choice; the table, and the plot in out/live_switching.png.  Needs root
    (the caller checks)."""
    from .live import format_report, live_models, live_switching  # its phone runs it as -m

    phase = 3.0 if quick else 6.0
    trace = netem.Trace([(k * phase, r) for k, r in LIVE_TRACE], duration=5 * phase)
    log(f"\nruntime switching on a live link ({trace}; the phone 8x slower than this CPU; "
        f"splits within {100 * LIVE_BUDGET:.0f} points of the plain network's accuracy):")
    splits, plain = live_models(quick=True, log=log)  # fine-tuned on 8,192 images: minutes
    _, test = datasets.fashion_mnist()
    rep = live_switching(splits, plain, trace, test.images, test.labels, rate=10, slowdown=8,
                         accuracy_budget=LIVE_BUDGET, log=log)
    log(format_report(rep))
    plot_live(rep, out / "live_switching.png",
              "Fashion-MNIST ResNet-18 on a live link, phone 8x slower than this CPU")
    return {k: rep[k] for k in ("options", "accuracy", "phases", "overall", "switch_delays",
                                "switches", "slowdown", "config")}


def table_json(tables: dict) -> dict:
    """The tables without the per-row dumps (for demo.json / benchmark output)."""
    out = {k: {"network": v["network"], "uplink_mbps": v["uplink_mbps"], "best": v["best"]}
           for k, v in tables.items() if k in costmodel.networks}
    out["mean_gain_vs_cloud"] = tables["mean_gain_vs_cloud"]
    return out


def demo(args) -> int:
    """`butterfly demo`: train (or load) the Fashion-MNIST butterfly network, serve its cloud
    half on loopback, classify the test set through the pool, report accuracy, bytes per
    image, the latency / energy tables (paper setting and this machine), emulated links and
    runtime switching on a live link (as root)."""

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
    report["paper_setting"] = table_json(paper["tables"])
    report["paper_setting_zstd"] = table_json(paper_z["tables"])

    # this machine
    cands, nets = split_candidates(net, progress=True)
    own = f"RB{DEMO_CONFIG['at']}"
    cands = [dataclasses.replace(c, accuracy=local["top1"]) if c.name == own else c
             for c in cands]
    phone = machine_profile(net, nets, repeats=5 if quick else 20, progress=True)
    plain = layer_records(plain_network(net))
    mmodel = costmodel.CostModel(phone, phone, costmodel.networks["4g"], plain,
                                 input_bytes=round(jpeg95))
    mtables = cost_tables(mmodel, cands)
    log("\n" + format_tables(mtables, f"latency / energy, this machine as the phone and the "
        f"cloud (measured per-layer times, {ASSUMED_POWER_W:.3f} W assumed), Fashion-MNIST "
        f"28x28, cloud-only uploads its JPEG ({jpeg95:.0f} B):"))
    report["this_machine"] = table_json(mtables)

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
        rows = compare(path, test.images[:n_req], mmodel, codec=args.codec,
                             requests=n_req, log=log)
        report["netem"] = rows
        report["live"] = live_demo(out, quick, log)

    # plots
    plot_tables(paper["tables"], out / "latency_energy_paper.png",
                 "ResNet-50, paper setting: best butterfly split vs cloud-only / mobile-only")
    plot_splits(paper["tables"], out / "splits_paper.png", "ResNet-50, paper setting: cost "
                 "of each split point")
    plot_tables(mtables, out / "latency_energy_machine.png",
                 "Fashion-MNIST ResNet-18, this machine")
    report["seconds"] = time.perf_counter() - t_start
    (out / "demo.json").write_text(json.dumps(report, indent=1, default=float))
    log(f"\nplots and demo.json in {out}/ ({report['seconds']:.0f} s)")
    if agree < 1.0:
        log("ERROR: the pool and the local network disagree")
        return 1
    return 0
