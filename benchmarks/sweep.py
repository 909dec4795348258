"""The accuracy sweep on Fashion-MNIST: the plain small-image ResNet-18, then the butterfly unit
after each residual block for every c' and s, 8-bit payloads.

Each unit starts from the trained plain network (its layers are copied by name): first only
the unit trains (everything else frozen), then the whole network is fine-tuned end to end,
as the paper's compression-aware training does.  Accuracy is measured on the full test set
through the real quantized path.  Results go to benchmarks/results/sweep.json, one row per
model, written after each model so an interrupted sweep resumes where it stopped.

    python benchmarks/sweep.py                       # the full sweep (a few hours on 2 cores)
    python benchmarks/sweep.py --quick               # a smoke run on a subset
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

import butterfly as bf


def copy_by_name(src: bf.Network, dst: bf.Network) -> int:
    """Copies every parameter of src into the layer of dst with the same name and shapes."""
    by_name = {src.model.layer(i)["name"]: i for i in range(len(src.model))}
    copied = 0
    for j in range(len(dst.model)):
        i = by_name.get(dst.model.layer(j)["name"])
        if i is None or src.model.param_names(i) != dst.model.param_names(j):
            continue
        for k in range(len(dst.model.param_names(j))):
            dst.model.set_param(j, k, src.model.get_param(i, k))
            copied += 1
    return copied


def load_results(path: str) -> dict:
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"config": {}, "rows": []}


def save_results(path: str, res: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=15, help="baseline epochs")
    ap.add_argument("--unit-epochs", type=float, default=1, help="unit alone, rest frozen")
    ap.add_argument("--finetune-epochs", type=int, default=2, help="end to end")
    ap.add_argument("--blocks", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--channels", default="1,2,4,8")
    ap.add_argument("--strides", default="2,1")
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "sweep.json"))
    ap.add_argument("--models", default=os.path.join(_ROOT, "benchmarks", "results"),
                    help="where the baseline model is kept (resumed runs reuse it)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.subset, args.epochs, args.finetune_epochs = 2048, 1, 1
        args.blocks, args.channels, args.strides = "2", "1", "2"
        args.models = os.path.join(_ROOT, "out", "sweep-quick")
        args.out = os.path.join(args.models, "sweep-quick.json")
    train_set, test_set = bf.datasets.fashion_mnist(subset=args.subset)
    os.makedirs(args.models, exist_ok=True)
    res = load_results(args.out)
    res["config"] = {"arch": "resnet18", "small": True, "width": args.width,
                     "baseline_epochs": args.epochs, "unit_epochs": args.unit_epochs,
                     "finetune_epochs": args.finetune_epochs, "batch_size": 128,
                     "lr": 0.1, "schedule": "cosine", "augment": "crop pad 2 + flip",
                     "dataset": "fashion-mnist", "train": len(train_set), "test": len(test_set)}
    kw = dict(batch_size=128, progress=sys.stderr.isatty(), seed=0)
    base_path = os.path.join(args.models, f"baseline-w{args.width}.bfly")
    base_row = next((r for r in res["rows"] if r.get("at") == 0), None)
    if base_row is None or not os.path.exists(base_path):
        base = bf.resnet18(small=True, num_classes=10, in_channels=1, width=args.width)
        t0 = time.perf_counter()
        bf.train(base, train_set, epochs=args.epochs, lr=0.1, **kw,
                 on_epoch=lambda r: print(f"baseline epoch {r['epoch']}: loss "
                                          f"{r['train_loss']:.4f}", file=sys.stderr))
        ev = bf.evaluate(base, test_set)
        base.save(base_path)
        base_row = {"at": 0, "channels": None, "stride": None, "top1": ev["top1"],
                    "payload_bytes": 784, "fp32_bytes": 4 * 784,
                    "train_seconds": time.perf_counter() - t0}
        res["rows"] = [r for r in res["rows"] if r.get("at") != 0] + [base_row]
        save_results(args.out, res)
        print(json.dumps(base_row), flush=True)
    base = bf.Network.load(base_path)
    blocks = [int(b) for b in args.blocks.split(",")]
    done = {(r["at"], r["channels"], r["stride"]) for r in res["rows"]}
    for s in [int(v) for v in args.strides.split(",")]:
        for c in [int(v) for v in args.channels.split(",")]:
            for after in blocks:
                if (after, c, s) in done:
                    continue
                row = run_unit(base, base_row, after, c, s, args, train_set, test_set, kw)
                res["rows"].append(row)
                save_results(args.out, res)
                print(json.dumps(row), flush=True)
    return 0


def run_unit(base, base_row, after, c, s, args, train_set, test_set, kw) -> dict:
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=args.width,
                      butterfly=bf.Butterfly(at=after, channels=c, stride=s))
    copy_by_name(base, net)
    t0 = time.perf_counter()
    bf.set_frozen(net, parts=("head", "tail"))
    bf.train(net, train_set, epochs=max(1, round(args.unit_epochs)), lr=0.05, **kw)
    bf.set_frozen(net, parts=("head", "tail"), frozen=False)
    bf.train(net, train_set, epochs=args.finetune_epochs, lr=0.01, **kw)
    ev = bf.evaluate(net, test_set)
    split = next(p for p in net.split_points() if p.get("block") == after)
    return {"at": after, "channels": c, "stride": s, "top1": ev["top1"],
            "payload_bytes": ev["payload_bytes"], "fp32_bytes": split["fp32_bytes"],
            "reduction_vs_fp32": split["fp32_bytes"] / ev["payload_bytes"],
            "baseline_top1": base_row["top1"], "train_seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    sys.exit(main())
