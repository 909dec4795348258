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
    print(f"{'#':>4} {'layer':32} {'part':8} {'ms':>9} {'MMAC':>9} {'out KB':>9}")
    for r in prof["layers"]:
        print(f"{r['index']:4d} {r['name'][:32]:32} {r['part']:8} {r['ms']:9.4f} "
              f"{r['macs'] / 1e6:9.2f} {r['out_bytes'] / 1024:9.1f}")
    print(f"sum of layers {prof['total_ms']:.3f} ms, whole plan {prof['forward_ms']:.3f} ms "
          f"per image (batch {prof['batch']}, median of {prof['repeats']}), "
          f"{prof['macs'] / 1e9:.3f} GMAC")
    if args.save:
        if args.candidates:  # what `plan --profile` needs: every candidate's unit too
            _, nets = split_candidates(net, progress=True)
            dev = machine_profile(net, nets, repeats=args.repeats, power_w=args.power_w,
                                  name=args.name, progress=True)
        else:
            dev = costmodel.DeviceProfile.measured(prof["layers"], args.name, args.power_w)
        dev.save(args.save)
        print(f"saved {args.save}")
    return 0


def _cli_plan(args) -> int:
    net = Network.load(args.model)
    plain = plain_network(net)
    layers = layer_records(plain)
    cands, nets = split_candidates(net, results=args.results, progress=True)
    if args.profile:
        phone = costmodel.DeviceProfile.load(args.profile)
        needed = layers + [r for c in cands for r in c.mobile_layers + c.cloud_layers]
        missing = [r["name"] for r in needed if r["name"] not in (phone.layer_ms or r)]
        if missing:
            raise InvalidArgument(f"{args.profile} has no time for layer {missing[0]!r} (and "
                                  f"{len(missing) - 1} more): make the profile with "
                                  f"`butterfly profile {args.model} --save FILE --candidates`")
    else:
        phone = machine_profile(net, nets, repeats=args.repeats, progress=True)
    input_bytes = args.input_bytes
    if input_bytes is None:
        shape = net.input_shape
        if shape == (1, 28, 28):
            _, test = datasets.fashion_mnist(subset=200)
            input_bytes = jpeg.average_jpeg_bytes(images=test.images)
        else:
            input_bytes = costmodel.PAPER_JPEG_BYTES
    model = costmodel.CostModel(phone, phone, costmodel.networks[args.network], layers,
                                input_bytes=round(input_bytes))
    base = max((c.accuracy for c in cands if c.accuracy is not None), default=None)
    p = planner.plan(cands, model, args.objective, args.accuracy_budget,
                     args.baseline_accuracy if args.baseline_accuracy is not None else
                     (base if args.results else None))
    print(f"{'row':12} {'payload B':>9} {'latency ms':>10} {'energy mJ':>9} {'accuracy':>8}")
    for r in p.table:
        acc = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        print(f"{r['name']:12} {r['payload_bytes']:9d} {r['latency_ms']:10.3f} "
              f"{r['energy_mj']:9.3f} {acc:>8}")
    c = p.cost
    print(f"best for {args.objective} on {model.network.name}: {p.chosen.name} "
          f"(c'={p.chosen.channels}, s={p.chosen.stride}), {c.payload_bytes} B, "
          f"{c.latency_ms:.3f} ms, {c.energy_mj:.3f} mJ")
    return 0


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
    p.set_defaults(func=_cli_plan)

    p = sub.add_parser("demo", help="train, split, serve and measure on Fashion-MNIST")
    p.add_argument("--quick", action="store_true", help="tiny subset, one short epoch (CI)")
    p.add_argument("--out", default="out", help="where models, plots and demo.json go")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--retrain", action="store_true", help="ignore a cached model")
    p.add_argument("--no-netem", action="store_true", help="skip the emulated radio links")
    p.add_argument("--codec", default="zstd", choices=["raw", "zstd"])
    p.set_defaults(func=demo)
