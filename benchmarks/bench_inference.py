"""ResNet-50 inference latency: butterfly (oneDNN) vs PyTorch CPU vs ONNX Runtime, same run.

224x224 fp32 images, batch 1 and batch 32, random weights (batch-norm statistics randomized
so folding is exercised), 2 threads everywhere.  The three networks are the same: our
weights are copied into a plain torch.nn ResNet-50 (benchmarks/common.py), which is then
exported to ONNX (opset 17) for ONNX Runtime (intra_op_num_threads=2, ORT_ENABLE_ALL).
The logits are compared before any timing.

Timing: for each batch, rounds of blocks -- each framework runs a block of consecutive calls,
the first call of each block is dropped (another runtime's spinning threads may still hold
the cores) -- rotating through the frameworks each round, so that noise from the shared
machine hits all of them alike.  Medians are quoted.  "ours" is the user-facing
``Network.forward``; "ours_plan" is the cached ``Plan.forward`` (no Python wrapper).

Prints one JSON line.  Usage:
    python benchmarks/bench_inference.py [--quick] [--batches 1,32] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import os
import time
import warnings

import numpy as np
from common import (
    copy_weights_to_torch,
    emit,
    log,
    median,
    optional_import,
    r,
    randomize_bn,
    ratio,
    stats,
    torch_resnet,
    total_macs,
)

import butterfly as bf

HEAD, TAIL = 0, 3


def build_peers(net, threads: int, x1: np.ndarray):
    """The mirroring torch model (eval) and an ORT session of its ONNX export, or None."""
    torch = optional_import("torch")
    if torch is None:
        return None, None, "torch not installed"
    torch.set_num_threads(threads)
    tm = torch_resnet(50, num_classes=net.num_classes).eval()
    copy_weights_to_torch(net, tm)
    ort = optional_import("onnxruntime")
    if ort is None or optional_import("onnx") is None:
        return tm, None, "onnx/onnxruntime not installed"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) needs no onnxscript; opset 17 as asked.
        torch.onnx.export(tm, (torch.from_numpy(x1),), buf, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    return tm, sess, None


def blocked_times(fns: dict, rounds: int, per_block: int, drop: bool = True
                  ) -> dict[str, list[float]]:
    """rounds x (for each fn: 1 dropped call (if drop) + per_block timed calls)."""
    out = {k: [] for k in fns}
    names = list(fns)
    for rd in range(rounds):
        order = names[rd % len(names):] + names[:rd % len(names)]  # rotate who goes first
        for k in order:
            if drop:
                fns[k]()  # dropped: settles caches and other runtimes' spinning threads
            for _ in range(per_block):
                t = time.perf_counter()
                fns[k]()
                out[k].append((time.perf_counter() - t) * 1e3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few repeats")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None, help="rounds of blocks per batch")
    ap.add_argument("--no-peers", action="store_true", help="time ours only")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    batches = [int(b) for b in args.batches.split(",")]
    t_start = time.perf_counter()

    bf.set_num_threads(args.threads)
    net = bf.resnet50(num_classes=1000)
    randomize_bn(net)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    tm = sess = None
    peer_note = "disabled" if args.no_peers else None
    if not args.no_peers:
        tm, sess, peer_note = build_peers(net, args.threads, x1)
        log(f"peers ready in {time.perf_counter() - t_start:.1f}s ({peer_note or 'torch + ort'})")
    torch = optional_import("torch") if tm is not None else None
    macs = total_macs(net)

    results, diff_t, diff_o, scale = [], 0.0, 0.0, 0.0
    for batch in batches:
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        plan = net.plan(HEAD, TAIL, batch)
        t0 = time.perf_counter()
        ours_out = net.forward(x)  # also builds the plan (first call)
        first_ms = (time.perf_counter() - t0) * 1e3
        fns = {"ours": lambda: net.forward(x), "ours_plan": lambda: plan.forward(x)}
        # correctness first: same logits from all three
        scale = max(scale, float(np.abs(ours_out).max()))
        if tm is not None:
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                ref = tm(xt).numpy()
            diff_t = max(diff_t, float(np.abs(ours_out - ref).max()))

            def torch_fn(xt=xt):
                with torch.inference_mode():
                    tm(xt)
            fns["torch"] = torch_fn
        if sess is not None:
            got = sess.run(None, {"x": x})[0]
            diff_o = max(diff_o, float(np.abs(ours_out - got).max()))
            fns["ort"] = lambda: sess.run(None, {"x": x})
        if args.rounds:
            rounds, per_block = args.rounds, (5 if batch == 1 else 1)
        elif args.quick:
            rounds, per_block = (2, 3) if batch == 1 else (1, 1)
        else:
            rounds, per_block = (4, 8) if batch == 1 else (4, 1)
        log(f"batch {batch}: {rounds} rounds x {per_block} per block, first call {first_ms:.0f} ms")
        # batch 1: drop each block's first call; batch 32: calls take seconds, a runtime's
        # leftover spinning (ms) does not matter, and every framework has run once already
        # (the logits check above is the warm-up)
        times = blocked_times(fns, rounds, per_block, drop=batch < 8)
        med = {k: median(v) for k, v in times.items()}
        row = {"batch": batch}
        for k in fns:
            row[f"{k}_ms"] = r(med[k])
        row["ratio_vs_torch"] = ratio(med["ours"], med.get("torch"))
        row["ratio_vs_ort"] = ratio(med["ours"], med.get("ort"))
        row["ratio_plan_vs_torch"] = ratio(med["ours_plan"], med.get("torch"))
        row["ratio_plan_vs_ort"] = ratio(med["ours_plan"], med.get("ort"))
        for k in fns:
            row[f"gflops_{k}"] = r(2.0 * macs * batch / (med[k] * 1e-3) / 1e9, 1)
        row["img_s_ours"] = r(batch / (med["ours"] * 1e-3), 1)
        row["first_call_ms"] = r(first_ms, 1)
        row["spread"] = {k: stats(v) for k, v in times.items()}
        results.append(row)
        log(f"batch {batch}: " + ", ".join(f"{k} {med[k]:.1f} ms" for k in fns))

    rel = lambda d: r(d / scale, 9) if scale else None
    check_ok = all(d is None or d <= 1e-3 for d in (rel(diff_t) if tm is not None else None,
                                                     rel(diff_o) if sess is not None else None))
    b1 = next((row for row in results if row["batch"] == 1), None)
    targets = None
    if b1 and b1.get("torch_ms") and b1.get("ort_ms"):
        targets = {"batch1_vs_torch_le_0.8": b1["ratio_vs_torch"] <= 0.8,
                   "batch1_vs_ort_le_1.0": b1["ratio_vs_ort"] <= 1.0}
    emit({
        "bench": "inference", "model": "resnet50", "input": 224, "dtype": "fp32",
        "threads": args.threads, "quick": args.quick,
        "gmacs_per_image": r(macs / 1e9, 3),
        "results": results,
        "max_abs_diff_torch": r(diff_t, 9) if tm is not None else None,
        "max_abs_diff_ort": r(diff_o, 9) if sess is not None else None,
        "max_abs_logit": r(scale, 6),
        "rel_diff_torch": rel(diff_t) if tm is not None else None,
        "rel_diff_ort": rel(diff_o) if sess is not None else None,
        "logits_match": check_ok,
        "targets": targets,
        "peers": peer_note or "torch %s, onnxruntime %s" % (
            torch.__version__, optional_import("onnxruntime").__version__),
        "cpu_count": os.cpu_count(),
        # the machine is shared: 1-minute load averages before/after (> threads: contended)
        "loadavg": [r(load_start, 2), r(os.getloadavg()[0], 2)],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "wall_s": r(time.perf_counter() - t_start, 1),
    })


if __name__ == "__main__":
    main()
