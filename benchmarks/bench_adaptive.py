"""Runtime split switching on a live link: the adaptive client against every fixed choice.

Three deployable splits of one trained network (units after an early, a middle and a late
block of a Fashion-MNIST ResNet-18, distilled onto it), cloud-only (the JPEG) and
mobile-only, each served through the real pool in the cloud namespace of an emulated link
(butterfly.netem) whose uplink follows a trace; the phone namespace streams real test images
open loop, once with the adaptive client and once per fixed choice, through the same trace.
The phone is `--slowdown` times slower than this CPU (its computations stretched; the
planner is given that measured profile).  Needs root (network namespaces); prints null with
the reason otherwise.

Prints one JSON line: per phase and overall, the adaptive client and every fixed choice
(median, p90, modelled phone energy), the per-phase best fixed choice, the adaptive client's
switch delays, and the targets: overall median <= 0.8x the best fixed choice's, per phase
within 15 % of that phase's best.

    python benchmarks/bench_adaptive.py [--quick] [--rate 10] [--slowdown 8] [--out DIR]
                                        [--accuracy-budget 0.05] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import common  # (also puts the repository root on sys.path)

import butterfly as bf
from butterfly import netem
from butterfly.experiments import live

TRACE = [(0, "wifi"), (6, "4g"), (12, 0.3), (18, 0.04), (24, "wifi")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="models trained on a subset")
    ap.add_argument("--rate", type=float, default=10.0, help="images per second")
    ap.add_argument("--slowdown", type=float, default=8.0)
    ap.add_argument("--phase-s", type=float, default=6.0, help="seconds per phase")
    ap.add_argument("--rounds", type=int, default=2, help="runs of every mode, the order "
                    "reversed each round (a drift of the load reaches every mode alike)")
    ap.add_argument("--out", default=None, help="where the models are cached (default: "
                    "~/.cache/butterfly/live)")
    ap.add_argument("--accuracy-budget", type=float, default=None,
                    help="the adaptive client picks no option below the plain network's "
                    "accuracy less this (a fraction); default: no filter")
    args = ap.parse_args()
    ok, why = netem.available()
    if not ok:
        common.emit({"bench": "adaptive", "result": None, "note": why})
        return
    t_start = time.perf_counter()
    splits, plain = live.live_models(args.out, quick=args.quick, log=common.log)
    _, test = bf.datasets.fashion_mnist()
    k = args.phase_s / 6.0
    trace = netem.Trace([(t * k, r) for t, r in TRACE], duration=30 * k)
    rep = live.live_switching(splits, plain, trace, test.images, test.labels, rate=args.rate,
                              slowdown=args.slowdown, accuracy_budget=args.accuracy_budget,
                              rounds=args.rounds, log=common.log)
    modes = list(rep["overall"])
    fixed = [m for m in modes if m != "adaptive"]
    phases = []
    for ph in rep["phases"]:
        best = ph["best_fixed"]
        phases.append({"start_s": ph["start_s"], "mbps": ph["mbps"], "best_fixed": best,
                       "adaptive_vs_best": ph["adaptive"]["median_ms"] / ph[best]["median_ms"],
                       **{m: {q: ph[m][q] for q in ("median_ms", "p90_ms", "energy_mj")}
                          for m in modes}})
    overall = {m: {q: rep["overall"][m][q] for q in ("median_ms", "p90_ms", "energy_mj",
                                                    "accuracy", "agreement")} for m in modes}
    best_overall = min(fixed, key=lambda m: overall[m]["median_ms"])
    ratio = overall["adaptive"]["median_ms"] / overall[best_overall]["median_ms"]
    common.emit({
        "bench": "adaptive", "trace": rep["config"]["trace"], "rate": args.rate,
        "rounds": args.rounds,
        "accuracy": rep["accuracy"], "accuracy_budget": args.accuracy_budget,
        "slowdown": rep["slowdown"], "phases": phases, "overall": overall,
        "best_fixed_overall": best_overall, "adaptive_vs_best_overall": ratio,
        "switch_delays": rep["switch_delays"], "switches": rep["switches"],
        "targets": {"overall_le_0.8x": ratio <= 0.8,
                    "every_phase_within_15pct": all(p["adaptive_vs_best"] <= 1.15
                                                    for p in phases),
                    "overall_below_every_fixed": all(overall["adaptive"]["median_ms"] <
                                                     overall[m]["median_ms"] for m in fixed)},
        "wall_s": time.perf_counter() - t_start})


if __name__ == "__main__":
    main()
