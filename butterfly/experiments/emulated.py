"""The cost model against emulated radio links: measured split and cloud-only latency per
network (3G, 4G, Wi-Fi), each beside the model's prediction."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..netem import Link, measure
from ..network import Network
from . import costmodel
from .candidates import candidate

HOLD_MS = 1.0  # compare(): the unshaped calibration holds each message this long


def compare(model_path, images: np.ndarray, model, codec: str = "zstd", requests: int = 20,
            nets=None, serialize: bool = True, log=print) -> list[dict[str, Any]]:
    """Per network: the measured split and cloud-only latency against the cost model's
    prediction (`model`: a costmodel.CostModel whose profiles describe this machine; its
    network is replaced by each one in turn), with the relative error.

    Two predictions per path.  "paper": the paper's formula as it stands (compute + 8D/NB,
    D = the payload, or the JPEG).  "ext": the same with the cost model's extensions,
    each measured rather than assumed: D = the bytes a request really puts on the uplink
    (payload and framing, from the serializer) and rtt_ms = the fixed transport time of
    the path (the unshaped link's measured latency less the modelled compute; the mean of
    a run before and one after the shaped ones), so it tests the one thing a link changes:
    the upload term.  The ext figures need serialize=True."""


    net = Network.load(model_path)
    cand0 = candidate(net)

    def unshaped() -> dict[str, Any]:
        # the unshaped path, each message held a fixed HOLD_MS before it is sent (subtracted):
        # after an idle gap the path wakes up more slowly than back to back, and a shaped
        # link always has that gap, so the floor is measured with one
        with Link(rate_mbit=None, serialize=True) as link:
            link.hold_ms = HOLD_MS
            b = measure(link, model_path, images, codec, requests)
        return {"split_ms": b["split_ms"] - HOLD_MS, "cloud_ms": b["cloud_ms"] - HOLD_MS,
                "jpeg_bytes": b["jpeg_bytes"]}

    radios = list((nets or costmodel.networks).values())
    # the floor is the mean of a run before and one after the shaped ones (the machine drifts)
    bases = [unshaped()] if serialize else []
    measured = []
    for radio in radios:
        with Link(rate_mbit=radio.uplink_mbps, serialize=serialize) as link:
            measured.append((radio, measure(link, model_path, images, codec, requests),
                             link.notes))
    floor = None
    if serialize:
        bases.append(unshaped())
        base = {k: float(np.mean([b[k] for b in bases])) for k in bases[0]}
        fast = dataclasses.replace(model, network=costmodel.Network("unshaped", 1e6, 0.0, 0.0))
        compute_split = fast.cost(cand0)
        compute_cloud = fast.cloud_only(round(base["jpeg_bytes"]))
        # a transport time cannot be negative: it comes out so when the profile's compute ran
        # on a busier machine than the unshaped requests did (seen under load); then 0
        floor = {"split_ms": max(0.0, base["split_ms"] - compute_split.mobile_ms
                                 - compute_split.cloud_ms),
                 "cloud_ms": max(0.0, base["cloud_ms"] - compute_cloud.cloud_ms),
                 "unshaped_split_ms": base["split_ms"], "unshaped_cloud_ms": base["cloud_ms"]}
        log(f"  unshaped: split {base['split_ms']:.2f} ms, cloud-only {base['cloud_ms']:.2f} ms"
            f" -> transport floor (rtt_ms) {floor['split_ms']:.2f} / {floor['cloud_ms']:.2f} ms")
    rows = []
    for radio, m, notes in measured:
        cm = dataclasses.replace(model, network=radio)
        cand = dataclasses.replace(cand0, payload_bytes=round(m["payload_bytes"]))
        pred_split = cm.cost(cand)
        pred_cloud = cm.cloud_only(round(m["jpeg_bytes"]))
        row = {"network": radio.name, "uplink_mbps": radio.uplink_mbps,
               "payload_bytes": m["payload_bytes"], "jpeg_bytes": m["jpeg_bytes"],
               "split_ms": m["split_ms"], "split_pred_ms": pred_split.latency_ms,
               "split_err": m["split_ms"] / pred_split.latency_ms - 1.0,
               "cloud_ms": m["cloud_ms"], "cloud_pred_ms": pred_cloud.latency_ms,
               "cloud_err": m["cloud_ms"] / pred_cloud.latency_ms - 1.0,
               "split_energy_mj": pred_split.energy_mj, "cloud_energy_mj": pred_cloud.energy_mj,
               "speedup_measured": m["cloud_ms"] / m["split_ms"], "serialized": serialize,
               "notes": notes}
        line = (f"  {radio.name:6} split {row['split_ms']:7.2f} ms (model "
                f"{row['split_pred_ms']:7.2f}, {100 * row['split_err']:+.0f} %")
        cloud = (f"cloud-only {row['cloud_ms']:7.2f} ms (model {row['cloud_pred_ms']:7.2f}, "
                 f"{100 * row['cloud_err']:+.0f} %")
        if floor is not None:
            split_b, cloud_b = m["split_request_bytes"], m["cloud_request_bytes"]
            ext_s = dataclasses.replace(
                cm, network=dataclasses.replace(radio, rtt_ms=floor["split_ms"])).cost(
                dataclasses.replace(cand0, payload_bytes=round(split_b)))
            ext_c = dataclasses.replace(
                cm, network=dataclasses.replace(radio, rtt_ms=floor["cloud_ms"])).cloud_only(
                round(cloud_b))
            row.update(split_request_bytes=split_b, cloud_request_bytes=cloud_b,
                       rtt_split_ms=floor["split_ms"], rtt_cloud_ms=floor["cloud_ms"],
                       split_pred_ext_ms=ext_s.latency_ms,
                       split_err_ext=m["split_ms"] / ext_s.latency_ms - 1.0,
                       cloud_pred_ext_ms=ext_c.latency_ms,
                       cloud_err_ext=m["cloud_ms"] / ext_c.latency_ms - 1.0)
            line += f"; with extensions {row['split_pred_ext_ms']:.2f}, " \
                    f"{100 * row['split_err_ext']:+.0f} %"
            cloud += f"; with extensions {row['cloud_pred_ext_ms']:.2f}, " \
                     f"{100 * row['cloud_err_ext']:+.0f} %"
        rows.append(row)
        log(f"{line})   {cloud})   measured speed-up {row['speedup_measured']:.1f}x")
    return rows
