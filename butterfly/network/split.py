"""Where a network can be cut, and putting a butterfly unit there.

A split point is a place in the layer list where exactly one tensor is live: every layer
after it reads only that layer's output or layers after it (skip connections and
squeeze-and-excitation branches lie inside a part).  Any network has them -- the ResNets
this package builds and the graphs `import_onnx` brings -- and `insert_butterfly` puts a
unit at any of them:

    net = bf.import_onnx("mobilenetv2.onnx")
    for p in net.split_points(): print(p["name"], p["shape"], p["fp32_bytes"])
    student = bf.insert_butterfly(net, at="features.6", channels=4, stride=2)

`remove_butterfly` takes a unit out again; `plain_network` and `candidate_network` give the
networks the cost model needs of any network (a ResNet of the builders rebuilt by them).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from .. import _C
from .layers import LayerList
from .load import load
from .network import Network
from .resnet import built_here, rebuild
from .unit import Butterfly, butterfly_unit, rb_block


def split_point(net, at) -> dict[str, Any]:
    """The row of net.split_points() that `at` names: a layer name, the index of the layer
    before the cut, or "RB<k>" for a ResNet's block k; InvalidArgument when none does."""
    points, block = net.split_points(), rb_block(at)
    if block is not None:
        match = [p for p in points if p.get("block") == block]
    elif isinstance(at, str):
        match = [p for p in points if p["name"] == at]
    elif isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        match = [p for p in points if p["layer"] == at]
    else:
        raise TypeError(f"at must be a layer name, a layer index or 'RB<k>', not "
                        f"{type(at).__name__}")
    if not match:
        names = ", ".join(p["name"] for p in points[:8])
        raise _C.InvalidArgument(f"{at!r} is not a split point of this network (one tensor "
                                 f"must cross the cut); split_points() lists them: {names}"
                                 f"{', ...' if len(points) > 8 else ''}")
    return match[0]


def layer_list(net) -> tuple[list[dict], list[list[np.ndarray]]]:
    """The network's layer specs (canonical: only the keys each type uses) and weights."""
    model = net.model
    layers, params = [], []
    for i in range(len(model)):
        layers.append(msgpack.unpackb(model.spec_bytes(i), raw=False))
        params.append([model.get_param(i, k) for k in range(len(model.param_names(i)))])
    return layers, params


def insert_butterfly(net, at, channels: int = 1, stride: int = 1, spatial: str = "depthwise",
                     upsample: str = "deconv", seed: int = 0):
    """A new Network: `net` with a butterfly unit at split point `at` (a layer name, a
    layer index from split_points(), or "RB<k>" for a ResNet's block k).  The layers up to
    the cut form the head, the rest the tail, with the weights copied; the unit's own
    weights are fresh (train them with bf.distill or bf.train).  channels: c', the feature
    channels uploaded; stride: s, the spatial reduction."""
    if net.butterfly:
        raise _C.InvalidArgument("this network already has a butterfly unit; insert one into "
                                 "the plain network")
    cut = split_point(net, at)
    j = cut["layer"]
    # the restored feature ends with a ReLU only where the original one does (>= 0)
    spec = net.model.layer(j)
    nonneg = spec["type"] in ("relu", "relu6") or (spec["type"] == "clip" and spec["alpha"] >= 0)
    cfg = Butterfly(at=cut.get("block", 1), channels=channels, stride=stride,
                    spatial=spatial, upsample=upsample, relu_out=nonneg)
    layers, params = layer_list(net)
    for spec in layers:
        spec["frozen"] = False
    L = LayerList.from_layers(layers[:j + 1], params[:j + 1], seed=seed)
    butterfly_unit(L, cfg)
    remap = {i: i for i in range(j)}
    remap[j] = L.last
    for i in range(j + 1, len(layers)):
        spec = dict(layers[i], part="tail")
        spec["inputs"] = [remap[k] for k in spec["inputs"]]
        remap[i] = L.append(spec, params[i])
    bf_meta = {**cfg.to_dict(), "at": cut["name"], "layer": j}
    if "block" in cut:
        bf_meta["block"] = cut["block"]
    config = dict(net.config)
    if "block_ends" in config:
        config["block_ends"] = [remap[i] for i in config["block_ends"]]
    meta = {k: v for k, v in net.meta.items() if k not in ("config", "butterfly")}
    return Network.from_layers(L.layers, L.params, config=config, butterfly=bf_meta,
                               meta=meta)


def remove_butterfly(net) -> Network:
    """`net` without its butterfly unit: the head and the tail joined again, with their
    weights (a network without a unit comes back as it is)."""
    if not net.butterfly:
        return net
    layers, params = layer_list(net)
    remap: dict[int, int] = {}
    keep_layers, keep_params = [], []
    last_head = 0
    for i, spec in enumerate(layers):
        if spec["part"] in ("reduce", "restore"):
            remap[i] = last_head  # the unit's output stands for the feature it restores
            continue
        spec = dict(spec, part="head", frozen=False)
        spec["inputs"] = [remap[k] for k in spec.get("inputs", [])]
        remap[i] = len(keep_layers)
        if layers[i]["part"] == "head":
            last_head = remap[i]
        keep_layers.append(spec)
        keep_params.append(params[i])
    L = LayerList.from_layers(keep_layers, keep_params)
    config = dict(net.config)
    if "block_ends" in config:
        config["block_ends"] = [remap[i] for i in config["block_ends"]]
    meta = {k: v for k, v in net.meta.items() if k not in ("config", "butterfly")}
    return Network.from_layers(L.layers, L.params, config=config, meta=meta)


def plain_network(net) -> Network:
    """The network without a butterfly unit, for the cost of cloud-only and mobile-only:
    `net` itself when it has none; for a ResNet of the builders, the builder's plain
    network (random weights); else the unit taken out (:func:`remove_butterfly`)."""
    if not net.butterfly:
        return net
    if built_here(net):
        return rebuild(net)
    return remove_butterfly(net)


def resnet_block(at) -> int | None:
    """k of a ResNet's residual block given as k or "RB<k>"; None for a cut's name."""
    if isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        return int(at)
    return rb_block(at)


def candidate_network(net, at, channels: int, stride: int) -> Network:
    """The plain form of `net` with a unit of c' = channels and s = stride at split point
    `at`: for a ResNet of the builders and a block (k or "RB<k>"), the builder's network
    with the unit after block k (random weights, as plain_network); else
    insert_butterfly(plain_network(net), at, ...) (an int is then a layer index)."""
    block = resnet_block(at)
    if built_here(net) and block is not None:
        return rebuild(net, Butterfly(at=block, channels=channels, stride=stride))
    return insert_butterfly(plain_network(net), at=at, channels=channels, stride=stride)


# --- command line -----------------------------------------------------------------------

def _cli_splits(args) -> int:
    rows = load(args.model).split_points()
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'cut after':<{width}}  {'shape (C, H, W)':>17}  {'fp32 bytes':>11}  "
          f"{'MACs before':>12}  {'MACs after':>12}")
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        tag = f"  RB{r['block']}" if "block" in r else ""
        print(f"{r['name']:<{width}}  {shape:>17}  {r['fp32_bytes']:>11,}  "
              f"{r['macs_before']:>12,}  {r['macs_after']:>12,}{tag}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("splits", help="every cut of a model where one tensor crosses")
    p.add_argument("model", help="a .bfly model file")
    p.set_defaults(func=_cli_splits)
