"""Per-layer profiling on this machine, and the cost model's layer records of a network.

    >>> prof = profile(net, part="all", repeats=20)     # per-layer medians on this machine
    >>> prof["layers"][0]              # {"name", "ms", "macs", "out_bytes", "part", ...}

Times are per image (a batch's time divided by its size).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from .. import _C
from ..network import HALVES, REDUCE, Network, half_range, opencl


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
    "weight_bytes", "kernel"}], "total_ms" (sum of the rows), "forward_ms" (median of
    whole-plan runs), "macs", "batch", "repeats", "backend"}; ms are per image.  Layers
    absorbed into a fused node report 0 ms and kernel "", reorders are charged to the layer
    that needs them (bf_plan_profile); kernel is what computes the layer (oneDNN's
    implementation, "butterfly" for the core's own; OpenCL rows have none).
    backend="opencl" profiles the mobile half on an OpenCL device (event times per kernel,
    charged to each kernel's first layer).
    """
    if part not in HALVES:
        raise _C.InvalidArgument(f"part must be one of {sorted(HALVES)}, not {part!r}")
    return {**profile_parts(net, *half_range(part), batch, repeats, backend, seed),
            "part": part}


def profile_parts(net: Network, begin: int, end: int, batch: int = 1, repeats: int = 20,
                  backend: str = "onednn", seed: int = 0) -> dict[str, Any]:
    """profile() of the parts begin..end (network.parts ids, e.g. REDUCE..RESTORE: a
    butterfly unit alone), run as one plan."""
    if repeats < 1 or batch < 1:
        raise _C.InvalidArgument("repeats and batch must be >= 1")
    begin, end = net.span(begin, end)
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
                       "out_bytes": r["out_bytes"], "weight_bytes": 4 * li["params"],
                       **({"kernel": r["kernel"]} if "kernel" in r else {})})
    return {"layers": layers, "total_ms": sum(r["ms"] for r in layers),
            "forward_ms": forward_ms / batch, "macs": sum(r["macs"] for r in layers),
            "batch": batch, "repeats": repeats, "backend": backend}


def _profile_opencl(net, begin, end, batch, repeats, rng):
    if not opencl.available():
        raise _C.UnsupportedError("no OpenCL device: install an ICD (e.g. pocl-opencl-icd) or "
                             "profile with backend='onednn'")
    if end > REDUCE:
        raise _C.UnsupportedError("the OpenCL backend runs the mobile half only: part='mobile' "
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
    first, last = net.model.part_range(begin)[0], net.model.part_range(end)[1]
    for i in range(first, last + 1):  # the layers of parts begin..end
        li = net.model.info(i)
        times = per_layer.get(i, [0.0])
        rows.append({"layer": i, "name": net.model.layer(i)["name"],
                     "ms": statistics.median(times), "macs": li["macs"],
                     "out_bytes": li["out_bytes"]})
    return rows, statistics.median(walls)


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
