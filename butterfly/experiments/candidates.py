"""Split candidates of a network for the cost model and planner, their measured profile,
and the tables of their costs.

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

from ..network import Network, candidate_network
from . import costmodel, planner
from .profiling import layer_records, profile

# The paper's reduction per residual block of ResNet-50 (c' for RB1..RB16, stride 2 everywhere).
PAPER_CHANNELS = [1] * 3 + [2] * 4 + [5] * 6 + [10] * 3
PAPER_STRIDE = 2


# "This machine" has no power meter: its phone energy uses the paper's phone power (20.5 mJ in
# 15.7 ms = 1.306 W), an assumption stated wherever it is used.
ASSUMED_POWER_W = costmodel.PAPER_MOBILE_ONLY_MJ / costmodel.PAPER_MOBILE_ONLY_MS


def unit_block(net: Network) -> int:
    """The residual block of a ResNet's butterfly unit."""
    unit = net.butterfly or {}
    return int(unit.get("block", unit.get("at")))


def unit_records(net: Network, prefix: str) -> list[dict]:
    """The layer records of a network with a butterfly unit, the unit's layers renamed
    prefix + name, so that one profile can hold the units of several candidates."""
    return [{**r, "name": prefix + r["name"]} if r["part"] in ("reduce", "restore") else r
            for r in layer_records(net)]


def candidate(net: Network, block: int, payload_bytes: int, accuracy=None, **meta):
    """A Candidate for a butterfly network: head + reduce on the phone, the rest in the cloud.
    The unit's layers are renamed "RB<k>:<name>" so one profile can hold every candidate's."""
    recs = unit_records(net, f"RB{block}:")
    bf_cfg = net.butterfly or {}
    return costmodel.Candidate.from_layers(
        f"RB{block}", recs, payload_bytes, accuracy=accuracy, at=f"RB{block}",
        channels=bf_cfg.get("channels"), stride=bf_cfg.get("stride"), meta=meta)


def payload_bytes(net: Network) -> int:
    """Bytes one image uploads: the 8-bit feature + its (min, max) float32 pair."""
    return net.upload_bytes


def split_candidates(net: Network, results=None, channels=None, stride: int | None = None,
                     blocks=None, progress: bool = False):
    """One costmodel.Candidate per split point of `net`'s architecture, with the networks.

    results: a list of rows {"at", "channels", "stride", "top1", "payload_bytes"} (or a
    path to such a JSON file, e.g. a training sweep's) gives trained candidates with their
    accuracy; else every residual block gets a unit of `channels` (a list per block, or one
    int; default: `net`'s own unit, else the paper's c') and `stride` (default 2), sizes only.
    Returns (candidates, networks) in the same order.
    """
    from tqdm import tqdm

    if isinstance(results, (str, os.PathLike)):
        results = load_results(results)
    nblocks = len(net.config.get("block_ends", []))
    rows = []
    if results:
        for r in results:
            if not _row_block(r):  # at 0: the plain network's row (its accuracy, no unit)
                continue
            rows.append((_row_block(r), int(r["channels"]), int(r["stride"]), r.get("top1"),
                         r.get("payload_bytes")))
    else:
        own = net.butterfly or {}
        for b in blocks or range(1, nblocks + 1):
            if channels is None:
                c = own.get("channels") or PAPER_CHANNELS[min(b, len(PAPER_CHANNELS)) - 1]
            else:
                c = channels[b - 1] if isinstance(channels, (list, tuple)) else int(channels)
            s = stride or own.get("stride") or PAPER_STRIDE
            rows.append((b, c, s, None, None))
    cands, nets = [], []
    for at, c, s, top1, pbytes in tqdm(rows, desc="split candidates", disable=not progress,
                                          leave=False):
        cn = candidate_network(net, at, c, s)
        pb = int(pbytes) if pbytes else payload_bytes(cn)
        cands.append(candidate(cn, at, pb, accuracy=top1, at=at))
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


def _row_block(row: dict) -> int:
    """The residual block of a results row ("at": 2 or "RB2"; files of 0.1.0 say "after")."""
    at = row["at"] if "at" in row else row["after"]
    if at is None:
        return 0
    return int(at[2:]) if isinstance(at, str) and at.upper().startswith("RB") else int(at)


def machine_profile(net: Network, candidate_nets=(), repeats: int = 20,
                    power_w: float | None = ASSUMED_POWER_W, name: str = "this machine",
                    progress: bool = False) -> costmodel.DeviceProfile:
    """The measured "this machine" DeviceProfile: every layer of `net`'s plain form (head and
    tail of a butterfly network are the plain layers) and the units of `candidate_nets`
    (renamed as in split_candidates), at batch 1."""
    from tqdm import tqdm

    records: dict[str, dict] = {}
    for r in profile(net, "all", 1, repeats)["layers"]:
        if r["part"] in ("head", "tail"):  # a butterfly network's head + tail = the plain net
            records[r["name"]] = r
    for cn in tqdm(list(candidate_nets), desc="profiling candidates", disable=not progress,
                   leave=False):
        key = f"RB{unit_block(cn)}:"
        for r in profile(cn, "all", 1, repeats)["layers"]:
            if r["part"] in ("reduce", "restore"):
                records[key + r["name"]] = {**r, "name": key + r["name"]}
            else:
                records.setdefault(r["name"], r)
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
