"""OpenCL mobile half vs oneDNN on the same CPU, same run.

ResNet-50 at 224x224 with a butterfly unit after RB1 (c'=1) and after RB7 (c'=2), stride 2
(the paper's choices), random weights, batch 1: head + reduce (what the phone runs) through
``butterfly.opencl.MobileHalf.mobile`` (PoCL on the CPU here) and ``Network.mobile``
(oneDNN).  Runs alternate between the two backends; medians are quoted.  Prints one JSON
line: per split point both times, their ratio (OpenCL / oneDNN), the payload's 1-LSB
differences and the three slowest OpenCL ops; "ratio" is the total over both points.

Both use the same number of threads (--threads, default: the cores; PoCL's pthread device
reads POCL_CPU_MAX_CU_COUNT, set here before OpenCL starts).  OpenMP (oneDNN) suffers far
more than PoCL's pthreads when other processes load the cores, so the ratio is only
meaningful on an idle machine: the JSON carries the load average seen before and after.

Usage: python benchmarks/bench_opencl.py [--reps N] [--device I] [--threads T]
"""

import argparse
import json
import os
import statistics
import time

import common  # noqa: F401 (puts the repository root on sys.path; imports no butterfly)
import numpy as np

POINTS = ((1, 1), (7, 2))  # (residual block, channels c')


def load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def measure(bf, opencl, after, channels, reps, device):
    net = bf.resnet50(
        num_classes=100, butterfly=bf.Butterfly(at=after, channels=channels, stride=2)
    )
    x = np.random.default_rng(after).standard_normal((1, 3, 224, 224)).astype(np.float32)
    half = opencl.MobileHalf(net, device=device)
    ref, got = net.mobile(x), half.mobile(x)  # also the warm-up (kernel builds, first touch)
    diff = np.abs(ref.data.astype(np.int16) - got.data.astype(np.int16))
    t_dnn, t_cl = [], []
    for _ in range(reps):
        t_dnn.append(timed(lambda: net.mobile(x)))
        t_cl.append(timed(lambda: half.mobile(x)))
    prof = sorted(half.profile(), key=lambda e: -e["ms"])
    dnn, cl = statistics.median(t_dnn), statistics.median(t_cl)
    return {
        "at": after,
        "channels": channels,
        "onednn_ms": round(dnn, 3),
        "opencl_ms": round(cl, 3),
        "ratio": round(cl / dnn, 3),
        "kernel_ms": round(sum(e["ms"] for e in prof), 3),
        "payload_bytes": int(got.data.size),
        "lsb_1": int((diff == 1).sum()),
        "lsb_more": int((diff > 1).sum()),
        "slowest": [
            {"layer": e["layers"][0], "kernel": e["kernel"], "ms": round(e["ms"], 3)}
            for e in prof[:3]
        ],
    }, half.device


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--device", type=int, default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    # before the first OpenCL call: PoCL sizes its thread pool once
    os.environ.setdefault("POCL_CPU_MAX_CU_COUNT", str(args.threads))
    import butterfly as bf
    from butterfly import opencl

    bf.set_num_threads(args.threads)
    if not opencl.available():
        print(json.dumps({"bench": "opencl", "skipped": "no OpenCL device"}))
        return
    rows, device, load_before = [], None, load_average()
    for after, channels in POINTS:
        row, device = measure(bf, opencl, after, channels, args.reps, args.device)
        rows.append(row)
    total_cl = sum(r["opencl_ms"] for r in rows)
    total_dnn = sum(r["onednn_ms"] for r in rows)
    print(
        json.dumps(
            {
                "bench": "opencl",
                "model": "resnet50",
                "input": 224,
                "batch": 1,
                "device": device,
                "threads": args.threads,
                "load_avg_before": load_before,
                "load_avg_after": load_average(),
                "points": {f"rb{r['at']}": r for r in rows},
                "opencl_ms": round(total_cl, 3),
                "onednn_ms": round(total_dnn, 3),
                "ratio": round(total_cl / total_dnn, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
