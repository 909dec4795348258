"""Command line of the experiments: ``butterfly profile``, ``butterfly plan``, ``butterfly
demo``."""

from __future__ import annotations

from .._C import InvalidArgument
from ..data import datasets, jpeg
from ..network import HALVES, Network, plain_network
from . import costmodel, planner
from .candidates import ASSUMED_POWER_W, machine_profile, split_candidates
from .demo import demo
from .profiling import layer_records, profile


def _cli_profile(args) -> int:
    net = Network.load(args.model)
    prof = profile(net, args.part, args.batch, args.repeats, backend=args.backend)
    print(f"{'#':>4} {'layer':32} {'part':8} {'ms':>9} {'MMAC':>9} {'out KB':>9}  kernel")
    for r in prof["layers"]:
        kernel = r.get("kernel", "-") or "(fused)"
        print(f"{r['index']:4d} {r['name'][:32]:32} {r['part']:8} {r['ms']:9.4f} "
              f"{r['macs'] / 1e6:9.2f} {r['out_bytes'] / 1024:9.1f}  {kernel}")
    print(f"sum of layers {prof['total_ms']:.3f} ms, whole plan {prof['forward_ms']:.3f} ms "
          f"per image (batch {prof['batch']}, median of {prof['repeats']}), "
          f"{prof['macs'] / 1e9:.3f} GMAC")
    if args.save:
        if args.candidates:  # what `plan --profile` needs: every candidate's unit too
            _, nets = _candidates(net, args)
            dev = machine_profile(net, nets, repeats=args.repeats, power_w=args.power_w,
                                  name=args.name, progress=True)
        else:
            dev = costmodel.DeviceProfile.measured(prof["layers"], args.name, args.power_w)
        dev.save(args.save)
        print(f"saved {args.save}")
    return 0


def _candidates(net: Network, args, results=None):
    """split_candidates with the command's --at, --channels, --stride and --no-unit."""
    at = [int(a) if a.isdigit() else a for a in args.at] if args.at else None
    return split_candidates(net, results=results, at=at, channels=args.channels,
                            stride=args.stride, unit=False if args.no_unit else None,
                            progress=True)


def cloud_only_bytes(shape) -> float:
    """The cloud-only upload of one input: the measured mean JPEG of Fashion-MNIST test
    images for 1x28x28, else the paper's 26,766 B of a 224x224 RGB JPEG scaled to the
    input's pixels and channels."""
    c, h, w = shape
    if tuple(shape) == (1, 28, 28):
        _, test = datasets.fashion_mnist(subset=200)
        return jpeg.average_jpeg_bytes(images=test.images)
    return costmodel.PAPER_JPEG_BYTES * (c * h * w) / (3 * 224 * 224)


def _cli_plan(args) -> int:
    net = Network.load(args.model)
    plain = plain_network(net)
    layers = layer_records(plain)
    cands, nets = _candidates(net, args, results=args.results)
    if args.profile:
        phone = costmodel.DeviceProfile.load(args.profile)
        needed = layers + [r for c in cands for r in c.mobile_layers + c.cloud_layers]
        missing = [r["name"] for r in needed if r["name"] not in (phone.layer_ms or r)]
        if missing:
            raise InvalidArgument(f"{args.profile} has no time for layer {missing[0]!r} (and "
                                  f"{len(missing) - 1} more): make the profile with "
                                  f"`butterfly profile {args.model} --save FILE --candidates` "
                                  f"and the same --at / --channels / --stride / --no-unit")
    else:
        phone = machine_profile(net, nets, repeats=args.repeats, progress=True)
    input_bytes = args.input_bytes
    if input_bytes is None:
        input_bytes = cloud_only_bytes(net.input_shape)
    model = costmodel.CostModel(phone, phone, costmodel.networks[args.network], layers,
                                input_bytes=round(input_bytes))
    base = max((c.accuracy for c in cands if c.accuracy is not None), default=None)
    p = planner.plan(cands, model, args.objective, args.accuracy_budget,
                     args.baseline_accuracy if args.baseline_accuracy is not None else
                     (base if args.results else None))
    print(format_plan(p, plain, model.network.name))
    return 0


def format_plan(p: planner.Plan, plain: Network, network: str) -> str:
    """The plan's table, one row per way to serve an image (cloud-only, mobile-only, each
    candidate): payload, MACs of the head and the tail of the cut (MMAC), cost, accuracy;
    then the choice."""
    total = plain.summary()["macs"]
    by_name = {c.name: c for c in p.considered}
    width = max([12] + [len(r["name"]) for r in p.table])
    lines = [(f"{'row':{width}} {'payload B':>9} {'head MMAC':>9} {'tail MMAC':>9} "
              f"{'latency ms':>10} {'energy mJ':>9} {'accuracy':>8}")]
    for r in p.table:
        c = by_name.get(r["name"])
        if c is not None and "macs_head" in c.meta:
            head, tail = c.meta["macs_head"], c.meta["macs_tail"]
        elif c is not None:
            head, tail = (sum(x["macs"] for x in c.mobile_layers),
                          sum(x["macs"] for x in c.cloud_layers))
        else:
            head, tail = (0, total) if r["kind"] == "cloud-only" else (total, 0)
        acc = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"{r['name']:{width}} {r['payload_bytes']:9d} {head / 1e6:9.2f} "
                     f"{tail / 1e6:9.2f} {r['latency_ms']:10.3f} {r['energy_mj']:9.3f} "
                     f"{acc:>8}")
    c, ch = p.cost, p.chosen
    unit = (f"c'={ch.channels}, s={ch.stride}" if ch.channels else
            "no unit: the float32 feature")
    lines.append(f"best for {p.objective} on {network}: {ch.name} ({unit}), "
                 f"{c.payload_bytes} B, {c.latency_ms:.3f} ms, {c.energy_mj:.3f} mJ")
    return "\n".join(lines)


def _add_candidate_args(p) -> None:
    p.add_argument("--at", nargs="+", metavar="CUT",
                   help="the split points to consider: names from `butterfly splits`, RB<k> "
                        "or a number (a ResNet's block, else the index of the layer before "
                        "the cut); default: a ResNet's blocks, else every cut")
    p.add_argument("--channels", type=int,
                   help="c' of the unit at each cut (default: the model's own unit, a "
                        "ResNet's the paper's; a model without a unit: no unit)")
    p.add_argument("--stride", type=int, help="s of the unit at each cut (default: the "
                                              "model's own, else 2)")
    p.add_argument("--no-unit", action="store_true",
                   help="candidates without a unit: the cut's float32 feature is uploaded")


def add_cli(sub) -> None:
    p = sub.add_parser("profile", help="per-layer times, MACs and output sizes of a model")
    p.add_argument("model")
    p.add_argument("--part", default="all", choices=sorted(HALVES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--backend", default="onednn", choices=["onednn", "opencl"])
    p.add_argument("--save", help="write a measured device profile (JSON) for `plan`")
    p.add_argument("--candidates", action="store_true",
                   help="with --save: also profile the unit of every split candidate "
                        "(what `plan --profile` needs)")
    _add_candidate_args(p)
    p.add_argument("--name", default="this machine")
    p.add_argument("--power-w", type=float, default=ASSUMED_POWER_W,
                   help="device power while computing (default: the paper's phone, 1.306 W)")
    p.set_defaults(func=_cli_profile)

    p = sub.add_parser("plan", help="the best split point of a model's architecture for a "
                                    "network and objective")
    p.add_argument("model")
    p.add_argument("--network", default="4g", choices=sorted(costmodel.networks))
    p.add_argument("--objective", default="latency", choices=planner.OBJECTIVES)
    p.add_argument("--results", help="trained candidates (JSON rows with at, channels, "
                                     "stride, top1, payload_bytes); else sizes only")
    p.add_argument("--profile", help="a device profile from `butterfly profile --save` "
                                     "(default: measure this machine now)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--input-bytes", type=float, help="cloud-only upload (default: measured "
                                                     "JPEG of the input)")
    p.add_argument("--accuracy-budget", type=float, default=0.02)
    p.add_argument("--baseline-accuracy", type=float)
    _add_candidate_args(p)
    p.set_defaults(func=_cli_plan)

    p = sub.add_parser("demo", help="train, split, serve and measure on Fashion-MNIST")
    p.add_argument("--quick", action="store_true", help="tiny subset, one short epoch (CI)")
    p.add_argument("--out", default="out", help="where models, plots and demo.json go")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--retrain", action="store_true", help="ignore a cached model")
    p.add_argument("--no-netem", action="store_true", help="skip the emulated radio links")
    p.add_argument("--codec", default="zstd", choices=["raw", "zstd"])
    p.set_defaults(func=demo)
