"""Split candidates of a network for the cost model and planner, their measured profile,
and the tables of their costs.

A candidate is a split point of the network (any row of ``net.split_points()``; a ResNet's
residual blocks are one way to name them, "RB<k>") with a butterfly unit of c' channels and
stride s there, or without a unit, uploading the float32 feature of the cut.

    >>> cands, nets = split_candidates(net)          # one costmodel.Candidate per split point
    >>> phone = machine_profile(net, nets)           # a costmodel.DeviceProfile (measured)
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import _C
from ..checks import int_arg
from ..network import (
    REDUCE,
    RESTORE,
    Network,
    candidate_network,
    plain_network,
    split_point,
)
from ..network.resnet import built_here
from ..network.split import resnet_block
from . import costmodel, planner
from .profiling import layer_records, profile, profile_parts

# The paper's reduction per residual block of ResNet-50 (c' for RB1..RB16, stride 2 everywhere).
PAPER_CHANNELS = [1] * 3 + [2] * 4 + [5] * 6 + [10] * 3
PAPER_STRIDE = 2


# "This machine" has no power meter: its phone energy uses the paper's phone power (20.5 mJ in
# 15.7 ms = 1.306 W), an assumption stated wherever it is used.
ASSUMED_POWER_W = costmodel.PAPER_MOBILE_ONLY_MJ / costmodel.PAPER_MOBILE_ONLY_MS


def split_name(net: Network) -> str:
    """The name of the split of a network with a butterfly unit: "RB<k>" at a ResNet's
    block k, else the name of the cut (the layer before the unit)."""
    unit = net.butterfly or {}
    if "block" in unit:
        return f"RB{unit['block']}"
    at = unit.get("at")
    if isinstance(at, int) and not isinstance(at, bool):
        return f"RB{at}"
    if at is None:
        raise ValueError("the network has no butterfly unit")
    return str(at)


def point_name(point: dict) -> str:
    """A split point's candidate name: "RB<k>" at a ResNet's block end, else its name."""
    return f"RB{point['block']}" if "block" in point else point["name"]


def point_meta(point: dict) -> dict[str, Any]:
    """What a candidate keeps of its split point (Candidate.meta)."""
    return {"layer": point["layer"], "cut": point["name"], "shape": tuple(point["shape"]),
            "fp32_bytes": point["fp32_bytes"], "macs_head": point["macs_before"],
            "macs_tail": point["macs_after"]}


def unit_records(net: Network, prefix: str) -> list[dict]:
    """The layer records of a network with a butterfly unit, the unit's layers renamed
    prefix + name, so that one profile can hold the units of several candidates."""
    return [{**r, "name": prefix + r["name"]} if r["part"] in ("reduce", "restore") else r
            for r in layer_records(net)]


def candidate(net: Network, at=None, payload_bytes: int | None = None, accuracy=None,
              **meta):
    """A Candidate for a network with a butterfly unit: head + reduce on the phone, restore +
    tail in the cloud, uploading `payload_bytes` (default: the network's 8-bit payload and
    its range pair).  Named after its split (`at`: a ResNet block k or a name; default the
    unit's own, split_name); the unit's layers are renamed "<name>:<layer>" so one profile
    can hold every candidate's."""
    if at is None:
        name = split_name(net)
    elif isinstance(at, int) and not isinstance(at, bool):
        name = f"RB{at}"
    else:
        name = str(at)
    recs = unit_records(net, f"{name}:")
    bf_cfg = net.butterfly or {}
    pb = net.upload_bytes if payload_bytes is None else payload_bytes
    return costmodel.Candidate.from_layers(
        name, recs, pb, accuracy=accuracy, at=name, channels=bf_cfg.get("channels"),
        stride=bf_cfg.get("stride"), meta=meta)


def cut_candidate(plain: Network, at, accuracy=None) -> costmodel.Candidate:
    """A Candidate without a unit at split point `at` of the plain network: the layers up to
    the cut on the phone, which uploads the cut's float32 feature; the rest in the cloud."""
    point = split_point(plain, at)
    recs = layer_records(plain)
    k = sum(1 for r in recs if r["index"] <= point["layer"])
    name = point_name(point)
    return costmodel.Candidate.from_layers(name, recs, point["fp32_bytes"], split_index=k,
                                           accuracy=accuracy, at=name, meta=point_meta(point))


def payload_bytes(net: Network) -> int:
    """Bytes one image uploads: the 8-bit feature + its (min, max) float32 pair."""
    return net.upload_bytes


def _stride_at(point: dict, stride: int) -> int:
    """The unit's stride at a cut: 1 where the feature is smaller than 2 s on a side (a
    strided unit would not shrink it)."""
    return stride if min(point["shape"][1:]) >= 2 * stride else 1


def split_candidates(net: Network, results=None, channels=None, stride: int | None = None,
                     blocks=None, at=None, unit: bool | None = None, progress: bool = False):
    """One costmodel.Candidate per split point of `net`'s architecture, with the networks.

    at: the split points (names, layer indices or "RB<k>"; blocks=[k, ...] is at=["RB<k>",
    ...]); default: a ResNet's residual blocks, every split point of any other network.
    results: a list of rows {"at", "channels", "stride", "top1", "payload_bytes"} (or a
    path to such a JSON file, e.g. a training sweep's or distilled units') gives trained
    candidates with their accuracy ("at" a block, "RB<k>" or a cut's name; channels 0 or
    missing: no unit); else each split point gets a candidate, sizes only:
    - with a unit of `channels` (a list, one per split point, or one int; 0: no unit) and
      `stride` (default 2; 1 at a cut smaller than 2 s on a side), where channels are
      given, the network has a unit of its own (its c' and s are the defaults) or it is a
      ResNet of the builders (the paper's c'), unless unit=False;
    - else without a unit: the cut's float32 feature is uploaded (unit=False forces it).
    Returns (candidates, networks) in the same order: the network of each candidate with a
    unit (its plain form with the unit), None for a candidate without one.  Names: "RB<k>"
    at a ResNet's block end, else the cut's name; Candidate.meta holds the cut's layer,
    shape, fp32_bytes, macs_head and macs_tail (net.split_points()'s macs_before / after).
    """
    from tqdm import tqdm

    if isinstance(results, (str, os.PathLike)):
        results = load_results(results)
    own = net.butterfly or {}
    resnet = built_here(net)
    plain = plain_network(net)
    rows = []
    if results:
        for r in results:
            a = _row_at(r)
            if a is None:  # at 0: the plain network's row (its accuracy, no unit)
                continue
            rows.append((a, int(r.get("channels") or 0), int(r.get("stride") or 1),
                         r.get("top1"), r.get("payload_bytes")))
    else:
        if at is None and blocks is not None:
            at = [f"RB{b}" for b in blocks]
        if at is None:
            nblocks = len(net.config.get("block_ends", [])) if resnet else 0
            at = (list(range(1, nblocks + 1)) if resnet else
                  [p["name"] for p in plain.split_points()])
        elif isinstance(at, (str, int)):
            at = [at]
        with_unit = unit if unit is not None else (
            channels is not None or bool(own) or resnet)
        for k, a in enumerate(at):
            if not with_unit:
                rows.append((a, 0, 1, None, None))
                continue
            if channels is None:
                b = resnet_block(a)
                c = own.get("channels") or (PAPER_CHANNELS[min(b, len(PAPER_CHANNELS)) - 1]
                                            if resnet and b else 1)
            elif isinstance(channels, (list, tuple)):
                if len(channels) != len(at):
                    raise ValueError(f"channels: {len(channels)} values for {len(at)} split "
                                     f"points")
                c = int(channels[k])
            else:
                c = int(channels)
            s = stride if stride is not None else (own.get("stride") or PAPER_STRIDE)
            rows.append((a, c, s, None, None))
    if not rows:
        raise _C.InvalidArgument("no split candidates: " + (
            "the results hold no row with a split point" if results else
            "the network has no split point (no cut where one tensor crosses)"))
    cands, nets = [], []
    for a, c, s, top1, pbytes in tqdm(rows, desc="split candidates", disable=not progress,
                                      leave=False):
        if resnet and resnet_block(a) is not None:  # a ResNet's block k: the cut "RB<k>"
            a = f"RB{resnet_block(a)}"
        point = split_point(plain, a)
        s = int_arg("stride", s)
        if c < 0:
            raise _C.InvalidArgument(f"channels must be >= 0 (0: no unit), not {c}")
        if c == 0:
            cands.append(cut_candidate(plain, a, accuracy=top1))
            nets.append(None)
            continue
        cn = candidate_network(net, a, c, _stride_at(point, s))
        pb = int(pbytes) if pbytes else payload_bytes(cn)
        cands.append(candidate(cn, point_name(point), pb, accuracy=top1, **point_meta(point)))
        nets.append(cn)
    return cands, nets


def load_results(path) -> list[dict]:
    """Rows of a results file: a JSON list, a {"rows": [...]} object or JSON lines."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = data.get("rows") or data.get("results") or []
    return [r for r in data if isinstance(r, dict) and ("at" in r or "after" in r)]


def _row_at(row: dict):
    """The split point of a results row ("at": 2, "RB2" or a cut's name; files of 0.1.0
    say "after"); None for the plain network's row (0 or null)."""
    at = row["at"] if "at" in row else row["after"]
    if at is None or at == 0 or at == "":
        return None
    block = resnet_block(at)
    return at if block is None else block


def machine_profile(net: Network, candidate_nets=(), repeats: int = 20,
                    power_w: float | None = ASSUMED_POWER_W, name: str = "this machine",
                    progress: bool = False) -> costmodel.DeviceProfile:
    """The measured "this machine" DeviceProfile: every layer of `net`'s plain form (head and
    tail of a butterfly network are the plain layers) and the units of `candidate_nets`
    (each unit alone, its layers renamed as in split_candidates; None entries, candidates
    without a unit, are skipped), at batch 1."""
    from tqdm import tqdm

    records: dict[str, dict] = {}
    for r in profile(net, "all", 1, repeats)["layers"]:
        if r["part"] in ("head", "tail"):  # a butterfly network's head + tail = the plain net
            records[r["name"]] = r
    for cn in tqdm([cn for cn in candidate_nets if cn is not None], desc="profiling candidates",
                   disable=not progress, leave=False):
        key = f"{split_name(cn)}:"
        for r in profile_parts(cn, REDUCE, RESTORE, 1, repeats)["layers"]:
            records[key + r["name"]] = {**r, "name": key + r["name"]}
    return costmodel.DeviceProfile.measured(records.values(), name, power_w)


def cost_tables(model: costmodel.CostModel, candidates, nets=None) -> dict[str, Any]:
    """Per network: cloud-only, mobile-only, every candidate, the best split for latency and
    energy and their gains over cloud-only and mobile-only."""
    out = {}
    for key, network in (nets or costmodel.networks).items():
        m = dataclasses.replace(model, network=network)
        rows = m.table(candidates)
        best = {}
        for obj in planner.OBJECTIVES:
            p = planner.plan(candidates, m, objective=obj)
            cloud, mobile = m.cloud_only(), m.mobile_only()
            value = p.cost.latency_ms if obj == "latency" else p.cost.energy_mj
            ref_c = cloud.latency_ms if obj == "latency" else cloud.energy_mj
            ref_m = mobile.latency_ms if obj == "latency" else mobile.energy_mj
            best[obj] = {"split": p.chosen.name, "value": value,
                         "payload_bytes": p.chosen.payload_bytes,
                         "gain_vs_cloud": ref_c / value, "gain_vs_mobile": ref_m / value,
                         "cloud_only": ref_c, "mobile_only": ref_m}
        out[key] = {"network": network.name, "uplink_mbps": network.uplink_mbps, "rows": rows,
                    "best": best}
    for obj in planner.OBJECTIVES:
        out.setdefault("mean_gain_vs_cloud", {})[obj] = float(np.mean(
            [v["best"][obj]["gain_vs_cloud"] for k, v in out.items() if k in costmodel.networks]))
    return out


def format_tables(tables: dict[str, Any], title: str) -> str:
    lines = [title, f"  {'network':8} {'objective':9} {'best':6} {'payload B':>9} "
                    f"{'split':>10} {'cloud-only':>10} {'mobile-only':>11} {'x cloud':>8} "
                    f"{'x mobile':>8}"]
    for key in costmodel.networks:
        t = tables[key]
        for obj, unit in (("latency", "ms"), ("energy", "mJ")):
            b = t["best"][obj]
            lines.append(f"  {t['network']:8} {obj:9} {b['split']:6} {b['payload_bytes']:9d} "
                         f"{b['value']:8.2f}{unit} {b['cloud_only']:8.2f}{unit} "
                         f"{b['mobile_only']:9.2f}{unit} {b['gain_vs_cloud']:7.1f}x "
                         f"{b['gain_vs_mobile']:7.1f}x")
    g = tables["mean_gain_vs_cloud"]
    lines.append(f"  mean gain over cloud-only (3G/4G/Wi-Fi): latency {g['latency']:.1f}x, "
                 f"energy {g['energy']:.1f}x")
    return "\n".join(lines)
