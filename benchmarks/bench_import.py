"""Imported CNNs: butterfly (oneDNN) vs ONNX Runtime on the same ONNX file vs PyTorch on the
same weights, in one run.

MobileNetV2 and an EfficientNet-B0-style network (SiLU, squeeze-and-excitation), full width,
224x224 fp32, batch 1 and 32, random weights with randomized batch-norm statistics, defined
in tests/torch_models.py and exported with torch.onnx.export (TorchScript exporter, opset 17).
butterfly imports that file (`bf.import_onnx`); ONNX Runtime runs it (ORT_ENABLE_ALL,
intra_op_num_threads = threads); PyTorch runs the module it came from.  The logits are
compared before any timing.  Also reported: the import's wall time and its peak memory
(Python allocations, tracemalloc, and the process's peak RSS growth).

Timing as bench_inference.py: rounds of blocks rotating through the frameworks, each block's
first call dropped at batch 1; medians.  Prints one JSON line.  Usage:
    python benchmarks/bench_import.py [--quick] [--batches 1,32] [--threads 2] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
from bench_inference import blocked_times
from common import emit, log, median, optional_import, r, ratio, stats

import butterfly as bf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def models():
    import torch_models as tm

    return {"mobilenet_v2": lambda: tm.mobilenet_v2(width=1.0, classes=1000),
            "efficientnet_b0": lambda: tm.efficientnet_b0(width=1.0, classes=1000)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few repeats")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_b0")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds of blocks per batch (default 4; 2 / 1 with --quick)")
    args = ap.parse_args()
    torch = optional_import("torch")
    ort = optional_import("onnxruntime")
    if torch is None or ort is None or optional_import("onnx") is None:
        emit({"bench": "import", "error": "needs torch, onnx and onnxruntime (make bench "
                                          "installs them)"})
        return
    import torch_models as tm

    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    bf.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    out = []
    tmp = tempfile.mkdtemp()
    for name in args.models.split(","):
        module = models()[name]()
        path = os.path.join(tmp, f"{name}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tm.export(module, path, 224)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t0 = time.perf_counter()
        net = bf.import_onnx(path)
        import_s = time.perf_counter() - t0
        _, py_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        rows = []
        for batch in batches:
            x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            xt = torch.from_numpy(x)
            ours = net.forward(x)
            with torch.inference_mode():
                ref = module(xt).numpy()
            got = sess.run(None, {"image": x})[0]
            scale = float(np.abs(ref).max())
            diff = {"torch": float(np.abs(ours - ref).max()) / scale,
                    "ort": float(np.abs(ours - got).max()) / scale}

            def torch_fn(xt=xt, module=module):
                with torch.inference_mode():
                    module(xt)
            fns = {"ours": lambda net=net, x=x: net.forward(x),
                   "ort": lambda sess=sess, x=x: sess.run(None, {"image": x}),
                   "torch": torch_fn}
            if args.quick:
                rounds, per_block = (2, 3) if batch == 1 else (1, 1)
            else:
                rounds, per_block = (4, 8) if batch == 1 else (4, 1)
            rounds = args.rounds or rounds
            times = blocked_times(fns, rounds, per_block, drop=batch < 8)
            med = {k: median(v) for k, v in times.items()}
            rows.append({"batch": batch, **{f"{k}_ms": r(v) for k, v in med.items()},
                         "ratio_vs_ort": ratio(med["ours"], med["ort"]),
                         "ratio_vs_torch": ratio(med["ours"], med["torch"]),
                         "rel_diff": {k: r(v, 9) for k, v in diff.items()},
                         "spread": {k: stats(v) for k, v in times.items()}})
            log(f"{name} batch {batch}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()))
        out.append({"model": name, "layers": len(net.model),
                    "gmacs_per_image": r(net.summary()["macs"] / 1e9, 3),
                    "import_s": r(import_s, 3), "import_peak_python_mb": r(py_peak / 2**20, 1),
                    "import_rss_growth_mb": r(rss_growth / 2**20, 1), "results": rows})
    targets = {f"{m['model']}_b{row['batch']}": {
        "vs_ort_le_1.0": row["ratio_vs_ort"] <= 1.0,
        "vs_torch_le_0.8": row["ratio_vs_torch"] <= 0.8} for m in out for row in m["results"]}
    emit({"bench": "import", "input": 224, "dtype": "fp32", "threads": args.threads,
          "quick": args.quick, "models": out, "targets": targets,
          "peers": f"torch {torch.__version__}, onnxruntime {ort.__version__}",
          "cpu_count": os.cpu_count(), "loadavg": [r(load_start, 2), r(os.getloadavg()[0], 2)],
          "wall_s": r(time.perf_counter() - t_start, 1)})


if __name__ == "__main__":
    main()
