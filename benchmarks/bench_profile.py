"""The per-layer profiler against whole forwards: do the layer times add up?; one JSON line.

butterfly.experiments.profile times each layer of a part (bf_plan_profile: fused layers
report 0, reorders are charged to the layer that needs them) and, separately, whole forwards
of the same plan.  Per network and part this prints the sum of the layer medians, the median
forward and their ratio (1 = the table accounts for the whole forward; the cost model builds
on the table).  Networks: the 28x28 ResNet-18 (width 16, unit after RB2) of the tests, batch
4, and ResNet-50 at 224x224 (unit after RB1), batch 1; one thread unless --threads.

Usage: python benchmarks/bench_profile.py [--repeats N] [--threads T] [--quick]
"""

from __future__ import annotations

import argparse

from common import emit, log, r, ratio

import butterfly as bf  # common (above) puts the repository root on sys.path
from butterfly import experiments as ex


def networks(quick: bool):
    small = bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                        butterfly=bf.Butterfly(after=2, channels=1, stride=2))
    yield "resnet18-28x28", small, 4
    if not quick:
        yield "resnet50-224", bf.resnet50(butterfly=bf.Butterfly(after=1, channels=1, stride=2)), 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="the small network only")
    args = ap.parse_args()
    bf.set_num_threads(args.threads)
    out = {}
    for name, net, batch in networks(args.quick):
        for part in ("all", "mobile", "cloud"):
            log(f"{name} {part}")
            prof = ex.profile(net, part, batch=batch, repeats=args.repeats)
            out[f"{name}/{part}"] = {"batch": batch, "layers": len(prof["layers"]),
                                     "layer_sum_ms": r(prof["total_ms"]),
                                     "forward_ms": r(prof["forward_ms"]),
                                     "ratio": ratio(prof["total_ms"], prof["forward_ms"])}
    emit({"bench": "profile", "threads": args.threads, "repeats": args.repeats,
          "networks": out})


if __name__ == "__main__":
    main()
