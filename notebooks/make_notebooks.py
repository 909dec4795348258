"""Writes the notebooks of this folder (nbformat) and, with --execute, runs them headless
(nbclient) so they are committed with their outputs.

    .venv/bin/python notebooks/make_notebooks.py --execute          # full parameters
    BF_NB_SMALL=1 .venv/bin/python notebooks/make_notebooks.py --execute --out /tmp/nb

Each notebook reads BF_NB_SMALL from the environment: 1 = small parameters (tests, CI).
Each figure is saved under notebooks/figures (BF_NB_FIGURES) and shown inline: the set-up
cell selects the inline backend, whatever MPLBACKEND says (Agg would show nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """import os, sys, json, time
from pathlib import Path
ROOT = Path(os.environ.get("BF_ROOT", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
sys.path.insert(0, str(ROOT))
SMALL = os.environ.get("BF_NB_SMALL", "0") == "1"
FIG = Path(os.environ.get("BF_NB_FIGURES", ROOT / "notebooks" / "figures")); FIG.mkdir(parents=True, exist_ok=True)
import numpy as np
%matplotlib inline
import matplotlib.pyplot as plt
import butterfly as bf
print("small parameters" if SMALL else "full parameters")"""

NOTEBOOKS = {
    "01_quick_start": [
        "# 01 Quick start: split a network, run it through the pool\n"
        "A ResNet-18 for 28x28 grayscale images with a butterfly unit after residual block 2: "
        "the phone runs head + reduce and uploads an 8-bit payload; a worker pool runs restore + tail.",
        SETUP,
        """net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                  butterfly=bf.Butterfly(at=2, channels=1, stride=2))
_, test = bf.datasets.fashion_mnist(subset=64 if SMALL else 512)
x = test.images
payload = net.mobile(x)                          # phone: head + reduce
logits = net.cloud(payload)                      # cloud: restore + tail
assert np.array_equal(logits, net.forward(x))    # the split changes nothing
print(net.summary(), "payload", payload.data.shape, payload.nbytes_per_sample, "B per image")""",
        """path = Path("/tmp/bf_nb_quick.bfly"); net.save(path)
pool = bf.serve(path, workers=1, bind="tcp://127.0.0.1:*")
client = bf.Client(path, pool.endpoint, codec="zstd")
res = client.classify(x, k=1)
pool.stop()
local = net.predict(x)[:, 0]
print("pool agrees with local on", np.mean([r.label for r in res] == local) * 100, "%")
print("median round trip %.3f ms" % np.median([r.rtt_ms for r in res]))""",
        """fig, ax = plt.subplots(1, 2, figsize=(6, 3))
ax[0].imshow(x[0, 0], cmap="gray"); ax[0].set_title("input 28x28 (784 B)")
ax[1].imshow(payload.data[0, 0], cmap="magma"); ax[1].set_title(f"payload 14x14 ({payload.nbytes_per_sample} B)")
for a in ax: a.axis("off")
fig.savefig(FIG / "01_payload.png", dpi=100); plt.show()""",
    ],
    "02_accuracy_vs_split": [
        "# 02 Accuracy vs split\nReads the training sweep's results "
        "(`benchmarks/results/sweep.json`: rows with at, channels, stride, top1, payload_bytes, "
        "fp32_bytes, train_seconds, baseline_top1).",
        SETUP,
        """from butterfly import experiments as ex
path = ROOT / "benchmarks" / "results" / "sweep.json"
rows = ex.load_results(path) if path.exists() else []
if not rows:
    print(f"no results at {path}: run the training sweep first; nothing to plot")
else:
    print(f"{len(rows)} trained candidates")
    for r in rows[:20]:
        print(r)""",
        """if rows:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    units = [r for r in rows if r.get("at")]  # at == 0: the plain network
    for c, s in sorted({(r["channels"], r["stride"]) for r in units}):
        rs = sorted([r for r in units if (r["channels"], r["stride"]) == (c, s)],
                    key=lambda r: r["at"])
        lbl = f"c'={c}, s={s}"
        ax[0].plot([r["at"] for r in rs], [r["top1"] for r in rs], "o-", label=lbl)
        ax[1].plot([r["at"] for r in rs], [r["payload_bytes"] for r in rs], "o-", label=lbl)
    plain = [r["top1"] for r in rows if not r.get("at")]
    base = plain[0] if plain else units[0].get("baseline_top1")
    if base: ax[0].axhline(base, color="k", ls="--", label="no unit")
    ax[0].set_xlabel("unit after block"); ax[0].set_ylabel("top-1"); ax[0].legend()
    ax[1].set_xlabel("unit after block"); ax[1].set_ylabel("payload bytes"); ax[1].set_yscale("log")
    fig.tight_layout(); fig.savefig(FIG / "02_accuracy_vs_split.png", dpi=100); plt.show()""",
    ],
    "03_latency_energy": [
        "# 03 Latency and energy per network and split\nCloud-only vs mobile-only vs butterfly, "
        "the paper's setting (ResNet-50, TX2-class phone, GTX 1080 Ti-class cloud) and this machine.",
        SETUP,
        """from butterfly import experiments as ex
from butterfly.experiments import costmodel
blocks = [1, 4, 8, 14] if SMALL else None
paper = ex.paper_setting(blocks=blocks)
print(ex.format_tables(paper["tables"], "ours, paper setting (8-bit payloads):"))
theirs = {"3G": (63, 47), "4G": (21, 41), "Wi-Fi": (8, 31)}
print("\\nside by side: latency / energy gain over cloud-only at the best split")
print(f"{'network':8} {'BottleNet':>16} {'ours':>16}")
for k in costmodel.networks:
    t = paper["tables"][k]; b = t["best"]
    print(f"{t['network']:8} {theirs[t['network']][0]:7.0f}x /{theirs[t['network']][1]:4.0f}x "
          f"{b['latency']['gain_vs_cloud']:7.1f}x /{b['energy']['gain_vs_cloud']:5.1f}x")""",
        """fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, obj, unit in ((axes[0], "latency", "ms"), (axes[1], "energy", "mJ")):
    for k in costmodel.networks:
        rows = [r for r in paper["tables"][k]["rows"] if r["kind"] == "split"]
        ax.plot([r["name"] for r in rows], [r[f"{obj}_{unit.lower()}"] for r in rows], "o-",
                label=paper["tables"][k]["network"])
        ax.axhline(paper["tables"][k]["best"][obj]["cloud_only"], ls=":", lw=1)
    ax.set_yscale("log"); ax.set_ylabel(f"{obj} ({unit})"); ax.legend(); ax.tick_params(axis="x", rotation=60)
fig.suptitle("ResNet-50: each split point (dotted: cloud-only)"); fig.tight_layout()
fig.savefig(FIG / "03_paper_splits.png", dpi=100); plt.show()""",
        """net = ex.demo_network()   # untrained here: times and sizes only
cands, nets = ex.split_candidates(net)
phone = ex.machine_profile(net, nets, repeats=3 if SMALL else 20)
plain = ex.layer_records(ex.plain_network(net))
model = costmodel.CostModel(phone, phone, costmodel.networks["4g"], plain, input_bytes=850)
mt = ex.cost_tables(model, cands)
print(ex.format_tables(mt, "this machine (phone = cloud = this CPU, 1.306 W assumed), Fashion-MNIST ResNet-18:"))""",
        """# the same model against measurements: the pool and the client in two network namespaces,
# the phone's uplink shaped to each radio's rate (needs root; skipped otherwise)
from butterfly import netem
ok, why = netem.available()
if not ok:
    print("emulated links skipped:", why)
else:
    path = Path("/tmp/bf_nb_netem.bfly"); net.save(path)
    imgs = np.random.default_rng(0).random((10 if SMALL else 40, 1, 28, 28), dtype=np.float32)
    em = ex.compare(path, imgs, model, requests=len(imgs), log=print)
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, path_kind in zip(axs, ("split", "cloud")):
        xs = np.arange(len(em))
        for j, (key, label) in enumerate(((f"{path_kind}_ms", "measured"),
                                          (f"{path_kind}_pred_ms", "paper model"),
                                          (f"{path_kind}_pred_ext_ms", "model + measured extensions"))):
            ax.bar(xs + (j - 1) * 0.27, [r[key] for r in em], 0.27, label=label)
        ax.set_xticks(xs, [r["network"] for r in em]); ax.set_ylabel("ms")
        ax.set_title("butterfly split" if path_kind == "split" else "cloud-only (JPEG)")
    axs[0].legend(fontsize=7); fig.tight_layout()
    fig.savefig(FIG / "03_emulated_links.png", dpi=100); plt.show()""",
    ],
    "04_serving": [
        "# 04 Serving: throughput, batching, a worker killed under load",
        SETUP,
        """import threading
from butterfly import experiments as ex
net = ex.demo_network(); path = Path("/tmp/bf_nb_serve.bfly"); net.save(path)
x = np.random.default_rng(0).random((32 if SMALL else 256, 1, 28, 28), dtype=np.float32)
payload = net.mobile(x)
SECONDS = 0.3 if SMALL else 2.0

# closed loop: the C load generator (Client.load_test; one C thread drives every client's
# connection), each client one request at a time
rows = []
for workers in (1, 2):
    for batch in (1, 8):
        pool = bf.serve(path, workers=workers, bind="tcp://127.0.0.1:*", threads=1,
                        batch=batch, batch_timeout_us=2000)
        client = bf.Client(path, pool.endpoint)
        client.load_test(payload=payload, clients=2, seconds=0.2)   # warm-up
        for clients in (1, 4, 16):
            rep = client.load_test(payload=payload, clients=clients, seconds=SECONDS)
            rows.append(dict(workers=workers, batch=batch, **rep.summary()))
        pool.stop()
print(f"{'W':>2} {'B':>2} {'clients':>7} {'req/s':>8} {'p50 us':>8} {'p99 us':>8} {'batch':>6}")
for r in rows:
    print(f"{r['workers']:>2} {r['batch']:>2} {r['clients']:>7} {r['req_per_s']:>8.0f} "
          f"{r['p50_us']:>8} {r['p99_us']:>8} {r['mean_batch']:>6}")""",
        """fig, axs = plt.subplots(1, 2, figsize=(9, 3.2))
for w in (1, 2):
    for b in (1, 8):
        rs = [r for r in rows if r["workers"] == w and r["batch"] == b]
        axs[0].plot([r["clients"] for r in rs], [r["req_per_s"] for r in rs], "o-", label=f"W{w} B{b}")
        axs[1].plot([r["clients"] for r in rs], [r["p99_us"] / 1e3 for r in rs], "o-", label=f"W{w} B{b}")
axs[0].set_ylabel("requests / s"); axs[1].set_ylabel("p99 latency (ms)")
for ax in axs:
    ax.set_xscale("log", base=2); ax.set_xlabel("concurrent clients"); ax.legend(fontsize=7)
fig.tight_layout(); fig.savefig(FIG / "04_throughput.png", dpi=100); plt.show()""",
        """# open loop: latency against offered load (one worker, B = 1), requests due at a constant
# rate and latency counted from each due time
pool = bf.serve(path, workers=1, bind="tcp://127.0.0.1:*", threads=1)
client = bf.Client(path, pool.endpoint)
cap = client.load_test(payload=payload, clients=8, seconds=SECONDS).throughput
curve, over_time = [], None
for load in (0.3, 0.5, 0.7, 0.9):
    rep = client.load_test(payload=payload, clients=8, seconds=SECONDS, rate=load * cap)
    curve.append((load, rep.percentile(50), rep.percentile(99)))
    if load == 0.7:
        over_time = rep
pool.stop()
print(f"capacity {cap:.0f} requests/s")
for load, p50, p99 in curve:
    print(f"{load:4.0%} load: p50 {p50:6.0f} us  p99 {p99:6.0f} us  p99/p50 {p99 / p50:4.1f}")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([c[0] * 100 for c in curve], [c[1] / 1e3 for c in curve], "o-", label="p50")
ax.plot([c[0] * 100 for c in curve], [c[2] / 1e3 for c in curve], "o-", label="p99")
ax.set_xlabel("offered load (% of capacity)"); ax.set_ylabel("latency (ms)"); ax.legend()
fig.tight_layout(); fig.savefig(FIG / "04_latency_vs_load.png", dpi=100); plt.show()""",
        """# latency over time at 70 % load (start_us: when each request was due): slow requests
# that come in bursts point at the machine stalling now and then, not at the pool.  The
# same load on a pool and a load generator under real-time scheduling (rt_priority: no
# other process's thread can take their CPU), where the system allows it
runs = {"normal scheduler": over_time}
try:
    rpool = bf.serve(path, workers=1, bind="tcp://127.0.0.1:*", threads=1, rt_priority=10)
except bf.Refused as e:
    print("no real-time run:", e)
else:
    rclient = bf.Client(path, rpool.endpoint)
    runs["rt_priority=10"] = rclient.load_test(payload=payload, clients=8, seconds=SECONDS,
                                               rate=0.7 * cap, rt_priority=10)
    rpool.stop()
fig, axs = plt.subplots(1, len(runs), figsize=(5 * len(runs), 2.8), sharey=True, squeeze=False)
for ax, (name, rep) in zip(axs[0], runs.items()):
    ax.plot(rep.start_us / 1e6, rep.latency_us / 1e3, ".", ms=2)
    ax.axhline(rep.percentile(99) / 1e3, color="C1", lw=1, label="p99")
    ax.set_title(f"{name}: p99 / p50 = {rep.percentile(99) / rep.percentile(50):.2f}", fontsize=9)
    ax.set_xlabel("due time (s)"); ax.legend()
axs[0][0].set_ylabel("latency (ms)")
fig.tight_layout(); fig.savefig(FIG / "04_latency_over_time.png", dpi=100); plt.show()""",
        """# kill a worker while two clients are sending: its requests are re-queued, none is lost
pool = bf.serve(path, workers=2, bind="tcp://127.0.0.1:*", heartbeat_interval_ms=200)
got = []
def run():
    c = bf.Client(path, pool.endpoint, timeout_ms=5000)
    got.append(len(c.classify_payload(payload, k=1)))
ts = [threading.Thread(target=run) for _ in range(2)]
[t.start() for t in ts]; time.sleep(0.05); pool.kill_worker(0); [t.join() for t in ts]
stats = pool.stats(); pool.stop()
print("answered", sum(got), "of", 2 * len(payload), "| requeued", stats["requeued"], "| workers alive", stats["workers"])""",
    ],
    "05_your_own_model": [
        "# 05 Your own model\nA CNN trained in PyTorch (squeeze-and-excitation made of linear "
        "layers, hardswish, SiLU), exported to ONNX, imported; its cut table; a butterfly unit "
        "inserted at a middle cut and distilled against the original network without labels; "
        "served through the pool; the cost model's candidates at its cuts and the planner's "
        "choice per link.",
        SETUP,
        """import torch
from torch import nn
torch.manual_seed(0); torch.set_num_threads(2)

class SE(nn.Module):  # squeeze-and-excitation with linear layers, as timm writes it
    def __init__(self, c):
        super().__init__(); self.fc1 = nn.Linear(c, c // 4); self.fc2 = nn.Linear(c // 4, c)
    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))[:, :, None, None]

model = nn.Sequential(
    nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
    nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish(), SE(32),
    nn.Conv2d(32, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.SiLU(),
    nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.SiLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
train, test = bf.datasets.fashion_mnist(subset=None if not SMALL else 4000)
test = test.subset(1000 if SMALL else 10000)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
steps = 60 if SMALL else 2 * len(train) // 64
t0 = time.time()
for step in range(steps):
    i = np.random.default_rng(step).choice(len(train), 64, replace=False)
    loss = nn.functional.cross_entropy(model(torch.from_numpy(train.images[i])),
                                       torch.from_numpy(train.labels[i]).long())
    opt.zero_grad(); loss.backward(); opt.step()
model.eval()
print(f"trained {steps} steps in {time.time() - t0:.0f} s, last loss {loss.item():.3f}")""",
        """path = Path("/tmp/bf_nb_own.onnx")
torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), opset_version=17, dynamo=False,
                  input_names=["image"], dynamic_axes={"image": {0: "n"}})
teacher = bf.import_onnx(path)
with torch.no_grad():
    ref = model(torch.from_numpy(test.images[:256])).numpy()
print("max |logit difference| vs PyTorch:", np.abs(teacher.forward(test.images[:256]) - ref).max())
print({k: v for k, v in teacher.summary().items()}, "| types:",
      sorted({r["type"] for r in teacher.layers()}))
base = bf.evaluate(teacher, test)
print(f"imported network: top-1 {base['top1'] * 100:.2f} %")""",
        """cuts = teacher.split_points()
print(f"{'cut after':34} {'shape':>10} {'fp32 B':>8} {'MACs before':>12} {'MACs after':>11}")
for p in cuts:
    print(f"{p['name'][:34]:34} {'x'.join(map(str, p['shape'])):>10} {p['fp32_bytes']:>8} "
          f"{p['macs_before']:>12} {p['macs_after']:>11}")""",
        """# a unit at the first cut after the squeeze-and-excitation block: 32x14x14 floats -> 4x7x7 bytes
at = next(p for p in cuts if p["shape"] == (32, 14, 14) and p["layer"] > 8)
student = bf.insert_butterfly(teacher, at=at["name"], channels=4, stride=2)
pay = student.summary()["payload_bytes"] + 8
print(f"cut after {at['name']}: {at['fp32_bytes']} B of fp32 feature -> {pay} B uploaded "
      f"({at['fp32_bytes'] / pay:.0f}x less)")
# this feature (after the SE gate, partly negative) is ~20x smaller than a ResNet block's:
# a lower learning rate than the default 0.002 (which diverges here)
hist = bf.distill(student, teacher, train.images, epochs=1 if SMALL else 3, batch_size=32,
                  lr=0.0002, progress=False)
hist_kl = bf.distill(student, teacher, train.images, epochs=1, batch_size=32, lr=0.002,
                     loss="kl", progress=False)
ev = bf.evaluate(student, test)
print("distillation:", [round(e["loss"], 4) for e in hist.epochs], "then KL",
      [round(e["loss"], 4) for e in hist_kl.epochs])
print(f"top-1: original {base['top1'] * 100:.2f} %, with the unit {ev['top1'] * 100:.2f} % "
      f"(no labels used)")""",
        """path = Path("/tmp/bf_nb_own.bfly"); student.save(path)
pool = bf.serve(path, workers=1, bind="tcp://127.0.0.1:*")
client = bf.Client(path, pool.endpoint)
res = client.classify(test.images[:200], k=1)
pool.stop()
print("pool agrees with local on", np.mean([r.label for r in res] == student.predict(test.images[:200])[:, 0]) * 100, "%")""",
        """from butterfly import experiments as ex
from butterfly.experiments import costmodel as cm, planner
plain = ex.layer_records(teacher)
# a Jetson-TX2-class phone (its roofline, the paper's power) and a 1080-Ti-class cloud
phone = cm.DeviceProfile.scaled(cm.TX2_GMACS_PER_S, cm.TX2_GB_PER_S, "phone",
                                cm.PAPER_MOBILE_ONLY_MJ / cm.PAPER_MOBILE_ONLY_MS)
cloud = cm.cloud_profile()
# one candidate per cut: a unit of c' = 2, s = 2 there (s = 1 where the feature is under 4x4)
cands, _ = ex.split_candidates(teacher, channels=2, stride=2)
rows = []
for link in ("3g", "4g", "wifi"):
    model_ = cm.CostModel(phone, cloud, cm.networks[link], plain, input_bytes=784)
    best = planner.plan(cands, model_)
    print(f"{link}: best cut {best.chosen.name} ({best.chosen.payload_bytes} B, "
          f"{best.cost.latency_ms:.3f} ms)")
    for row in model_.table(cands):
        rows.append((link, row))
print(f"{'link':5} {'how':30} {'bytes':>6} {'latency ms':>10} {'energy mJ':>9}")
for link, row in rows:
    print(f"{link:5} {row['name'][:30]:30} {row['payload_bytes']:>6} {row['latency_ms']:>10.3f} {row['energy_mj']:>9.3f}")
fig, ax = plt.subplots(figsize=(8, 3.5))
for link in ("3g", "4g", "wifi"):
    lat = [row["latency_ms"] for l, row in rows if l == link][2:]
    ax.plot(range(len(lat)), lat, marker="o", label=link)
ax.set_xlabel("cut (index into split_points)"); ax.set_ylabel("modelled latency (ms)")
ax.set_yscale("log"); ax.legend(); ax.set_title("a unit (c'=2, s=2) at each cut: phone + upload + cloud")
fig.tight_layout(); fig.savefig(FIG / "05_cut_latency.png", dpi=100); plt.show()""",
    ],
    "06_live_switching": [
        "# 06 Runtime switching on a live link\n"
        "Three deployable splits of one trained network (a unit after an early, a middle and a "
        "late residual block), cloud-only (the JPEG) and mobile-only, each served through the "
        "real pool in the cloud namespace of an emulated link whose uplink rate follows a trace "
        "(Wi-Fi, 4G, a crowded cell, almost nothing, Wi-Fi). The phone namespace streams real "
        "Fashion-MNIST test images open loop, once with the adaptive client (its bandwidth "
        "estimate from the replies' timing only) and once per fixed choice. The phone is 8x "
        "slower than this CPU. Needs root (network namespaces); skipped otherwise.",
        SETUP,
        """# the trained network and its three splits (distilled, then fine-tuned; cached after the first run)
from butterfly import netem
from butterfly.experiments import live, plots
ok, why = netem.available()
if not ok:
    print("emulated links skipped:", why)
else:
    splits, plain = live.live_models(quick=SMALL, log=print)
    for p in [plain, *splits]:
        m = bf.load(p)
        print(f"{Path(p).name:28} {m.upload_bytes or '-':>5} B per image, top-1 {m.meta['accuracy']:.4f}")""",
        """# the trace, then the stream through it: adaptively and with each fixed choice
phase = 3 if SMALL else 6
trace = netem.Trace([(0, "wifi"), (phase, "4g"), (2 * phase, 0.3), (3 * phase, 0.04),
                     (4 * phase, "wifi")], duration=5 * phase)
print(trace)
if ok:
    _, test = bf.datasets.fashion_mnist()
    report = live.live_switching(splits, plain, trace, test.images, test.labels, rate=10,
                                 slowdown=8, accuracy_budget=0.05, log=print)
    print(live.format_report(report))""",
        """# latency over time: the adaptive client's requests coloured by the split in use (band below),
# each fixed choice's running median, the link's rate behind
if not ok:
    print("emulated links skipped:", why)
else:
    fig = plots.plot_live(report, title="Fashion-MNIST ResNet-18, phone 8x slower than this CPU")
    fig.savefig(FIG / "06_live_switching.png", dpi=100)
    display(fig)""",
    ],
}


def build(out: Path, only: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, cells in NOTEBOOKS.items():
        if only is not None and not name.startswith(only):
            continue  # leave the others, and their outputs, as they are
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [new_markdown_cell(c) if i == 0 else new_code_cell(c)
                    for i, c in enumerate(cells)]
        p = out / f"{name}.ipynb"
        nbformat.write(nb, p)
        paths.append(p)
    return paths


def execute(path: Path, timeout: int = 600) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    root = HERE.parent
    env_root = os.environ.setdefault("BF_ROOT", str(root))
    del env_root
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(root)}}).execute()
    nbformat.write(nb, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--execute", action="store_true")
    ap.add_argument("--only", default=None, help="execute this notebook only (e.g. 02)")
    args = ap.parse_args(argv)
    for p in build(Path(args.out), args.only):
        if args.execute:
            t = __import__("time").perf_counter()
            execute(p)
            print(f"{p.name}: executed in {__import__('time').perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
