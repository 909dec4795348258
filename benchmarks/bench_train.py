"""Training throughput: butterfly vs PyTorch CPU, same run.

The small-image ResNet-18 (bf.resnet18(small=True, num_classes=10, in_channels=1)), 28x28
inputs, batch 128, one training step = forward (batch-norm in training mode) + softmax
cross-entropy + backward + SGD with momentum 0.9 (and weight decay 5e-4).  PyTorch runs the
same network (benchmarks/common.py, our initial weights copied in) with the same threads.
Both train on the same fixed random batch; the first step's loss of each is reported as a
sanity check (same weights and data: they should agree closely).

Timing: warm-up steps first, then rounds alternating the two frameworks (a dropped step at
the start of each block); images/second from the median step time.

Ours: bf.Trainer(net, batch_size=128, schedule=Schedule(lr, kind="constant"), momentum=0.9,
weight_decay=5e-4).step(x, labels) (looked up at run time; a training plan's train_step is
the fallback).  If there is no training API, or our first step fails or takes longer than
--ours-budget-s, ours is reported as null with a "note" and the script still exits 0 with
the torch figure.  train_gflops_* count 6 x forward MACs per image (forward + 2x backward).

Prints one JSON line.  Usage:
    python benchmarks/bench_train.py [--quick] [--batch 128] [--threads 2] [--rounds N]
"""

from __future__ import annotations

import argparse
import inspect
import os
import threading
import time

import numpy as np
from common import (
    copy_weights_to_torch,
    emit,
    log,
    median,
    optional_import,
    r,
    ratio,
    stats,
    torch_resnet,
    total_macs,
)

import butterfly as bf

LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4


def _loss_of(out):
    """A float loss from whatever a train step returns (float, (loss, correct), dict)."""
    if isinstance(out, dict):
        out = out.get("loss")
    elif isinstance(out, (tuple, list)) and out:
        out = out[0]
    try:
        return float(out)
    except (TypeError, ValueError):
        return None


def _call_flexible(fn, *args, **kw):
    """fn(*args, **kw), dropping keyword arguments fn does not take."""
    try:
        params = inspect.signature(fn).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            kw = {k: v for k, v in kw.items() if k in params}
    except (TypeError, ValueError):  # builtins without a signature: try all, then none
        try:
            return fn(*args, **kw)
        except TypeError:
            return fn(*args)
    return fn(*args, **kw)


def ours_step_fn(net, batch: int):
    """(step(x, labels) -> loss-or-whatever, api description) or (None, why)."""
    sgd = {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    errors = []
    trainer_cls = getattr(bf, "Trainer", None)
    if trainer_cls is not None:
        try:
            params = inspect.signature(trainer_cls).parameters
            kw = dict(sgd)
            if "batch_size" in params:
                kw["batch_size"] = batch
            if "schedule" in params:  # butterfly.training.Schedule: a constant rate here
                from butterfly.training import Schedule
                kw["schedule"] = Schedule(lr=LR, total_steps=1_000_000, kind="constant")
            t = _call_flexible(trainer_cls, net, **kw)
            return ((lambda x, y: t.step(x, y)),
                    "bf.Trainer(net, " + ", ".join(k for k in kw if k in params) + ").step")
        except Exception as e:  # noqa: BLE001
            errors.append(f"bf.Trainer: {e!r}")
    if hasattr(net, "train_step"):
        return (lambda x, y: _call_flexible(net.train_step, x, y, **sgd)), "Network.train_step"
    try:
        plan = net.plan(0, 3, batch, training=True)
        if hasattr(plan, "train_step"):
            return ((lambda x, y: _call_flexible(plan.train_step, x, y, **sgd)),
                    "Plan(training=True).train_step")
    except Exception as e:  # noqa: BLE001
        errors.append(f"training plan: {e!r}")
    return None, "training API not available" + (f" ({'; '.join(errors)})" if errors else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--per-block", type=int, default=None)
    ap.add_argument("--ours-budget-s", type=float, default=150.0,
                    help="give up on ours if its first step takes longer")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    batch = args.batch

    bf.set_num_threads(args.threads)
    net = bf.resnet18(small=True, num_classes=10, in_channels=1)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    labels = (np.arange(batch) % 10).astype(np.int32)
    macs = total_macs(net)

    fns, first_loss, notes = {}, {}, []
    torch = optional_import("torch")
    if torch is not None:
        torch.set_num_threads(args.threads)
        tm = torch_resnet(18, num_classes=10, in_channels=1, small=True).train()
        copy_weights_to_torch(net, tm)  # before we train ours: same initial weights
        opt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=MOMENTUM,
                              weight_decay=WEIGHT_DECAY)
        lossf = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

        def torch_step():
            opt.zero_grad(set_to_none=True)
            loss = lossf(tm(xt), yt)
            loss.backward()
            opt.step()
            return loss.item()
        fns["torch"] = torch_step
    else:
        notes.append("torch not installed")

    if args.rounds:
        rounds, per_block = args.rounds, args.per_block or 2
    elif args.quick:
        rounds, per_block = 1, args.per_block or 1
    else:
        rounds, per_block = 3, args.per_block or 2
    times, warm = {}, 0 if args.quick else 1

    def block(k):
        for _ in range(per_block):
            t = time.perf_counter()
            fns[k]()
            times.setdefault(k, []).append((time.perf_counter() - t) * 1e3)

    # torch first: its first step's loss (same weights and batch as ours: they should agree),
    # warm-up, and round 0's block -- so its figure exists even if ours cannot finish.
    if "torch" in fns:
        t = time.perf_counter()
        first_loss["torch"] = _loss_of(fns["torch"]())
        log(f"torch: first step {time.perf_counter() - t:.2f} s, loss {first_loss['torch']}")
        for _ in range(warm):
            fns["torch"]()
        block("torch")

    step, api = ours_step_fn(net, batch)
    log(f"ours: {api}")
    res, stuck = {}, False
    if step is None:
        notes.append(api)
    else:
        # Our first step runs in a thread with a time budget: a step that falls back to
        # oneDNN's reference kernels can take many minutes; then report that and stop.

        def first():
            t0 = time.perf_counter()
            try:
                res["out"] = step(x, labels)
            except Exception as e:  # noqa: BLE001
                res["err"] = e
            res["s"] = time.perf_counter() - t0
        th = threading.Thread(target=first, daemon=True)
        th.start()
        th.join(args.ours_budget_s)
        stuck = th.is_alive()
        if stuck or "err" in res:
            why = (f"our first training step did not finish within {args.ours_budget_s:.0f} s"
                   if th.is_alive() else f"our training step failed: {res['err']!r}")
            notes.append(why)
            log(why)
        else:
            first_loss["ours"] = _loss_of(res["out"])
            log(f"ours: first step {res['s']:.2f} s, loss {first_loss['ours']}")
            fns["ours"] = lambda: step(x, labels)
            for _ in range(warm):
                fns["ours"]()
            block("ours")
    if stuck:
        rounds = 1  # our first step is still running and holds the cores: stop timing
    names = list(fns)
    for rd in range(1, rounds):
        for k in names[rd % len(names):] + names[:rd % len(names)]:
            fns[k]()  # dropped: the other runtime's threads may still spin
            block(k)
    if not times:
        times = {k: [] for k in fns}
    med = {k: median(v) for k, v in times.items()}
    img_s = {k: batch / (m * 1e-3) for k, m in med.items()}
    out = {
        "bench": "train", "model": "resnet18-small", "input": [1, 28, 28], "classes": 10,
        "batch": batch, "threads": args.threads, "quick": args.quick,
        "optimizer": {"sgd_lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY},
        "ours_img_s": r(img_s.get("ours"), 2), "torch_img_s": r(img_s.get("torch"), 2),
        "ratio_vs_torch": ratio(img_s.get("ours"), img_s.get("torch")),
        "ours_step_ms": r(med.get("ours")), "torch_step_ms": r(med.get("torch")),
        "train_gflops_ours": r(6.0 * macs * batch / (med["ours"] * 1e-3) / 1e9, 1)
        if "ours" in med else None,
        "train_gflops_torch": r(6.0 * macs * batch / (med["torch"] * 1e-3) / 1e9, 1)
        if "torch" in med else None,
        "first_loss_ours": r(first_loss.get("ours"), 6),
        "first_loss_torch": r(first_loss.get("torch"), 6),
        "ours_api": api if step is not None else None,
        "ours_first_step_s": r(res.get("s"), 2) if step is not None else None,
        "spread": {k: stats(v) for k, v in times.items()},
        "cpu_count": os.cpu_count(),
        # the machine is shared: 1-minute load averages before/after (> threads: contended)
        "loadavg": [r(load_start, 2), r(os.getloadavg()[0], 2)],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "wall_s": r(time.perf_counter() - t_start, 1),
    }
    if notes:
        out["note"] = "; ".join(notes)
    emit(out)
    if stuck:
        os._exit(0)  # our first step is still running in its thread: do not wait for it


if __name__ == "__main__":
    main()
