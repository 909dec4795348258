"""Latency and mobile-energy model of split inference (the paper's Algorithm 1).

For a split uploading D bytes over an uplink of NB Mbit/s:

    latency_ms = T_mobile + 8 * D / NB + T_cloud
    energy_mj  = T_mobile * P_mobile + (8 * D / NB) * P_up,     P_up = alpha * NB + beta

Cloud-only uploads the JPEG of the input and runs the whole network in the cloud; mobile-only
runs it all on the phone. Per-layer data are plain dicts ("layer records"):

    {"name": str,            unique within a network
     "macs": int,            multiply-accumulates of the layer (0 for pooling, quantize, ...)
     "out_bytes": int,       bytes of the layer's output as stored on the device
     "weight_bytes": int,    optional, bytes of parameters read (scaled profiles only)
     "ms": float,            optional, a measured time (see DeviceProfile.measured)
     "part": str}            optional, "head" | "reduce" | "restore" | "tail"

"head" and "reduce" (the reduction unit, quantizer and encoder) run on the phone; "restore"
(decoder and restoration unit) and "tail" in the cloud. Encode/decode steps that should count
are layer records too (macs 0, a measured ms).

Extensions beyond the paper, off by default: a Network with `downlink_mbps` adds the download
of `CostModel.result_bytes`, and `rtt_ms` adds one round trip, to every row that uses the
network. Neither adds phone energy (the paper counts compute and upload only).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..checks import check_quantity
from ..netem.trace import UPLINK_MBPS
from ..network.parts import CLOUD_PARTS, MOBILE_PARTS

Layer = Mapping[str, Any]

PAPER_JPEG_BYTES = 26_766  # mean JPEG of a 224x224 RGB input in the paper (cloud-only upload)
PAPER_MOBILE_ONLY_MS = 15.7  # ResNet-50 on the Jetson TX2, per image
PAPER_MOBILE_ONLY_MJ = 20.5

# Jetson TX2 (the paper's phone stand-in): 1.33 TFLOP/s FP16 peak = 665 GMAC/s, 59.7 GB/s LPDDR4.
# Only the ratio matters once phone_profile() rescales to a measured whole-network time.
TX2_GMACS_PER_S = 665.0
TX2_GB_PER_S = 59.7
# GTX 1080 Ti (the paper's server): 11.34 TFLOP/s FP32 peak = 5,670 GMAC/s, 484 GB/s. We assume
# half of peak is reached at batch 1: 2,835 GMAC/s and 242 GB/s (ResNet-50, 4.1 GMAC: ~1.4 ms).
GTX1080TI_GMACS_PER_S = 2835.0
GTX1080TI_GB_PER_S = 242.0


@dataclass(frozen=True)
class Network:
    """An uplink with Huang et al.'s radio power model; downlink and RTT are extensions."""

    name: str
    uplink_mbps: float
    alpha_mw_per_mbps: float
    beta_mw: float
    downlink_mbps: float | None = None  # extension: None = result download not counted
    rtt_ms: float = 0.0  # extension: one round trip added to every networked request

    def __post_init__(self) -> None:
        check_quantity(f"{self.name}: uplink_mbps", self.uplink_mbps, positive=True)
        if self.downlink_mbps is not None:
            check_quantity(f"{self.name}: downlink_mbps", self.downlink_mbps, positive=True)
        check_quantity(f"{self.name}: alpha_mw_per_mbps", self.alpha_mw_per_mbps)
        check_quantity(f"{self.name}: beta_mw", self.beta_mw)
        check_quantity(f"{self.name}: rtt_ms", self.rtt_ms)

    def upload_ms(self, payload_bytes: float) -> float:
        """8 * D / NB, with 1 Mbit/s = 1e6 bit/s."""
        return 8.0 * payload_bytes / (self.uplink_mbps * 1e6) * 1e3

    @property
    def upload_power_mw(self) -> float:
        """P_up = alpha * NB + beta."""
        return self.alpha_mw_per_mbps * self.uplink_mbps + self.beta_mw

    def upload_energy_mj(self, payload_bytes: float) -> float:
        return self.upload_ms(payload_bytes) * self.upload_power_mw / 1e3  # ms * mW = uJ

    def download_ms(self, result_bytes: float) -> float:
        """Extension: 0 unless downlink_mbps is set."""
        if self.downlink_mbps is None:
            return 0.0
        return 8.0 * result_bytes / (self.downlink_mbps * 1e6) * 1e3

    def with_uplink(self, uplink_mbps: float) -> Network:
        """The same radio at another measured bandwidth (P_up follows NB)."""
        return dataclasses.replace(self, uplink_mbps=uplink_mbps)


networks: dict[str, Network] = {
    "3g": Network("3G", UPLINK_MBPS["3g"], 868.98, 817.88),
    "4g": Network("4G", UPLINK_MBPS["4g"], 438.39, 1288.04),
    "wifi": Network("Wi-Fi", UPLINK_MBPS["wifi"], 283.17, 132.86),
}


@dataclass(frozen=True)
class DeviceProfile:
    """Per-layer compute time of one device, measured or scaled from MACs and bytes.

    measured: `layer_ms` maps layer name -> ms (from a profiling run); `records` keeps the full
    profiled records ({name, ms, macs, out_bytes, ...}), saved with it. scaled: a layer takes
    max(macs / throughput, bytes / bandwidth) (a roofline), bytes = out_bytes + weight_bytes.
    power_w is the device's mean power while computing (needed for mobile energy only).
    """

    name: str
    power_w: float | None = None
    layer_ms: Mapping[str, float] | None = None
    gmacs_per_s: float | None = None
    gb_per_s: float | None = None
    records: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if (self.layer_ms is None) == (self.gmacs_per_s is None or self.gb_per_s is None):
            raise ValueError("give either layer_ms (measured) or gmacs_per_s and gb_per_s")
        if self.power_w is not None:
            check_quantity(f"{self.name}: power_w", self.power_w)
        if self.layer_ms is not None:
            for layer, ms in self.layer_ms.items():
                check_quantity(f"{self.name}: the time of layer {layer!r} (ms)", ms)
        else:
            check_quantity(f"{self.name}: gmacs_per_s", self.gmacs_per_s, positive=True)
            check_quantity(f"{self.name}: gb_per_s", self.gb_per_s, positive=True)

    @property
    def kind(self) -> str:
        return "measured" if self.layer_ms is not None else "scaled"

    @classmethod
    def measured(
        cls, records: Iterable[Layer], name: str = "device", power_w: float | None = None
    ) -> DeviceProfile:
        """From layer records carrying "ms" (a list of {name, ms, macs?, out_bytes?})."""
        records = tuple(dict(r) for r in records)
        table: dict[str, float] = {}
        for r in records:
            if r["name"] in table:
                raise ValueError(f"duplicate layer name {r['name']!r}")
            table[r["name"]] = float(r["ms"])
        return cls(name, power_w, layer_ms=table, records=records)

    @classmethod
    def scaled(
        cls,
        gmacs_per_s: float,
        gb_per_s: float,
        name: str = "device",
        power_w: float | None = None,
    ) -> DeviceProfile:
        return cls(name, power_w, gmacs_per_s=gmacs_per_s, gb_per_s=gb_per_s)

    def layer_time_ms(self, layer: Layer) -> float:
        if self.layer_ms is not None:
            try:
                return self.layer_ms[layer["name"]]
            except KeyError:
                raise KeyError(
                    f"no measured time for layer {layer['name']!r} on {self.name!r}"
                ) from None
        compute_s = layer["macs"] / (self.gmacs_per_s * 1e9)
        memory_s = (layer["out_bytes"] + layer.get("weight_bytes", 0)) / (self.gb_per_s * 1e9)
        return max(compute_s, memory_s) * 1e3

    def time_ms(self, layers: Iterable[Layer]) -> float:
        return float(sum(self.layer_time_ms(layer) for layer in layers))

    def energy_mj(self, layers: Iterable[Layer]) -> float:
        """time_ms * power_w (ms * W = mJ)."""
        if self.power_w is None:
            raise ValueError(f"device {self.name!r} has no power_w")
        return self.time_ms(layers) * self.power_w

    def scaled_to(self, layers: Sequence[Layer], total_ms: float) -> DeviceProfile:
        """A copy made uniformly faster or slower so that `layers` take total_ms."""
        check_quantity("total_ms", total_ms, positive=True)
        if self.time_ms(layers) <= 0:
            raise ValueError("scaling needs positive times")
        factor = self.time_ms(layers) / total_ms
        if self.layer_ms is not None:
            return dataclasses.replace(
                self,
                layer_ms={k: v / factor for k, v in self.layer_ms.items()},
                records=tuple({**r, "ms": r["ms"] / factor} for r in self.records),
            )
        return dataclasses.replace(
            self, gmacs_per_s=self.gmacs_per_s * factor, gb_per_s=self.gb_per_s * factor
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "power_w": self.power_w}
        if self.layer_ms is not None:
            out["layers"] = [dict(r) for r in self.records] or [
                {"name": k, "ms": v} for k, v in self.layer_ms.items()
            ]
        else:
            out.update(gmacs_per_s=self.gmacs_per_s, gb_per_s=self.gb_per_s)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceProfile:
        if data["kind"] == "measured":
            return cls.measured(data["layers"], data["name"], data.get("power_w"))
        if data["kind"] == "scaled":
            return cls.scaled(
                data["gmacs_per_s"], data["gb_per_s"], data["name"], data.get("power_w")
            )
        raise ValueError(f"unknown profile kind {data['kind']!r}")

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeviceProfile:
        with open(path) as f:
            return cls.from_json(json.load(f))


def phone_profile(
    layers: Sequence[Layer],
    total_ms: float = PAPER_MOBILE_ONLY_MS,
    energy_mj: float = PAPER_MOBILE_ONLY_MJ,
    name: str = "phone",
) -> DeviceProfile:
    """A TX2-shaped roofline scaled so the whole network `layers` takes total_ms on the phone.

    Power = energy_mj / total_ms (mJ/ms = W): the paper's 20.5 mJ in 15.7 ms gives 1.306 W.
    """
    check_quantity("total_ms", total_ms, positive=True)
    check_quantity("energy_mj", energy_mj)
    base = DeviceProfile.scaled(TX2_GMACS_PER_S, TX2_GB_PER_S, name, energy_mj / total_ms)
    return base.scaled_to(layers, total_ms)


def cloud_profile(
    gmacs_per_s: float = GTX1080TI_GMACS_PER_S,
    gb_per_s: float = GTX1080TI_GB_PER_S,
    name: str = "gtx1080ti",
) -> DeviceProfile:
    """A GTX-1080-Ti-class server at an assumed 50 % of peak (see GTX1080TI_* constants)."""
    return DeviceProfile.scaled(gmacs_per_s, gb_per_s, name)


@dataclass(frozen=True)
class Candidate:
    """One deployable split: split point j with its reduction (c' channels, stride s).

    mobile_layers run on the phone (head + reduction unit + encode), cloud_layers in the cloud
    (decode + restoration unit + tail); payload_bytes is what is uploaded per image. accuracy is a
    fraction in [0, 1] (None = not measured). at identifies the split point (e.g. "RB1" or a
    layer name); the planner keeps one candidate per split point (the name when at is None).
    """

    name: str
    mobile_layers: tuple[Layer, ...]
    cloud_layers: tuple[Layer, ...]
    payload_bytes: int
    accuracy: float | None = None
    at: str | int | None = None
    channels: int | None = None  # c'
    stride: int | None = None  # s
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mobile_layers", tuple(self.mobile_layers))
        object.__setattr__(self, "cloud_layers", tuple(self.cloud_layers))
        check_quantity(f"{self.name}: payload_bytes", self.payload_bytes)
        if self.accuracy is not None:
            check_quantity(f"{self.name}: accuracy", self.accuracy)
            if self.accuracy > 1:
                raise ValueError(f"{self.name}: accuracy is a fraction in [0, 1], not "
                                 f"{self.accuracy!r}")

    @property
    def split_key(self) -> str | int:
        return self.name if self.at is None else self.at

    @classmethod
    def from_layers(
        cls,
        name: str,
        layers: Sequence[Layer],
        payload_bytes: int,
        split_index: int | None = None,
        **kwargs: Any,
    ) -> Candidate:
        """Splits one layer list: at split_index if given, else by each record's "part"."""
        if split_index is not None:
            mobile, cloud = layers[:split_index], layers[split_index:]
        else:
            unknown = [r["name"] for r in layers if r.get("part") not in MOBILE_PARTS + CLOUD_PARTS]
            if unknown:
                raise ValueError(f"layers without a part, give split_index: {unknown[:5]}")
            mobile = [r for r in layers if r["part"] in MOBILE_PARTS]
            cloud = [r for r in layers if r["part"] in CLOUD_PARTS]
        return cls(name, tuple(mobile), tuple(cloud), payload_bytes, **kwargs)


@dataclass(frozen=True)
class Cost:
    """Predicted cost of one way of serving an image; latency and energy are sums of the parts."""

    name: str
    kind: str  # "cloud-only" | "mobile-only" | "split"
    payload_bytes: int
    mobile_ms: float
    upload_ms: float
    cloud_ms: float
    extra_ms: float  # extensions: RTT + result download; 0 under the paper's model
    mobile_compute_mj: float
    upload_mj: float
    accuracy: float | None = None

    @property
    def latency_ms(self) -> float:
        return self.mobile_ms + self.upload_ms + self.cloud_ms + self.extra_ms

    @property
    def energy_mj(self) -> float:
        return self.mobile_compute_mj + self.upload_mj

    def row(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(latency_ms=self.latency_ms, energy_mj=self.energy_mj)
        return out


@dataclass(frozen=True)
class CostModel:
    """Costs on one phone / network / cloud triple.

    layers: records of the plain network (no butterfly unit), for cloud-only and mobile-only.
    input_bytes: the cloud-only upload (the JPEG of the input; PAPER_JPEG_BYTES for 224x224 RGB).
    result_bytes: size of the reply, counted only if network.downlink_mbps is set (extension).
    """

    mobile: DeviceProfile
    cloud: DeviceProfile
    network: Network
    layers: tuple[Layer, ...] = ()
    input_bytes: int | None = None
    result_bytes: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.input_bytes is not None:
            check_quantity("input_bytes", self.input_bytes)
        check_quantity("result_bytes", self.result_bytes)

    def _networked(
        self,
        name: str,
        kind: str,
        mobile_layers: Sequence[Layer],
        cloud_layers: Sequence[Layer],
        payload_bytes: int,
        accuracy: float | None,
    ) -> Cost:
        mobile_ms = self.mobile.time_ms(mobile_layers)
        return Cost(
            name=name,
            kind=kind,
            payload_bytes=payload_bytes,
            mobile_ms=mobile_ms,
            upload_ms=self.network.upload_ms(payload_bytes),
            cloud_ms=self.cloud.time_ms(cloud_layers),
            extra_ms=self.network.rtt_ms + self.network.download_ms(self.result_bytes),
            mobile_compute_mj=self._mobile_mj(mobile_layers),
            upload_mj=self.network.upload_energy_mj(payload_bytes),
            accuracy=accuracy,
        )

    def _mobile_mj(self, layers: Sequence[Layer]) -> float:
        """Phone compute energy; NaN when the phone profile has no power figure."""
        if not layers:
            return 0.0
        return float("nan") if self.mobile.power_w is None else self.mobile.energy_mj(layers)

    def cost(self, candidate: Candidate) -> Cost:
        c = candidate
        return self._networked(
            c.name, "split", c.mobile_layers, c.cloud_layers, c.payload_bytes, c.accuracy
        )

    def latency_ms(self, candidate: Candidate) -> float:
        return self.cost(candidate).latency_ms

    def energy_mj(self, candidate: Candidate) -> float:
        return self.cost(candidate).energy_mj

    def cloud_only(self, input_bytes: int | None = None, accuracy: float | None = None) -> Cost:
        """Upload the input's JPEG (input_bytes, default self.input_bytes), run all in the cloud.

        JPEG encoding on the phone and decoding in the cloud are not counted (as in the paper).
        """
        input_bytes = self.input_bytes if input_bytes is None else input_bytes
        if input_bytes is None:
            raise ValueError("cloud-only needs input_bytes (the JPEG size of the input)")
        check_quantity("input_bytes", input_bytes)
        return self._networked("cloud-only", "cloud-only", (), self.layers, input_bytes, accuracy)

    def mobile_only(self, accuracy: float | None = None) -> Cost:
        """The whole plain network on the phone; nothing is sent."""
        return Cost(
            "mobile-only",
            "mobile-only",
            0,
            self.mobile.time_ms(self.layers),
            0.0,
            0.0,
            0.0,
            self._mobile_mj(self.layers),
            0.0,
            accuracy,
        )

    def table(
        self,
        candidates: Iterable[Candidate],
        input_bytes: int | None = None,
        baseline_accuracy: float | None = None,
    ) -> list[dict[str, Any]]:
        """Rows for cloud-only, mobile-only, then each candidate (Cost.row() fields).

        Each row adds latency_gain_vs_cloud and energy_gain_vs_cloud = cloud-only / row
        (> 1: better than cloud-only). baseline_accuracy fills the two baseline rows.
        """
        reference = self.cloud_only(input_bytes, baseline_accuracy)
        costs = [reference, self.mobile_only(baseline_accuracy)]
        costs += [self.cost(c) for c in candidates]
        rows = []
        for c in costs:
            row = c.row()
            row["latency_gain_vs_cloud"] = _ratio(reference.latency_ms, c.latency_ms)
            row["energy_gain_vs_cloud"] = _ratio(reference.energy_mj, c.energy_mj)
            rows.append(row)
        return rows


def _ratio(num: float, den: float) -> float:
    """num / den, inf for a free row (den 0), NaN for 0 / 0."""
    if den == 0:
        return math.nan if num == 0 else math.inf
    return num / den


def gains_over_networks(
    model: CostModel, candidate: Candidate, nets: Iterable[Network] | None = None
) -> dict[str, Any]:
    """Cloud-only / split ratios on each network and their arithmetic mean (the paper's average).

    Returns {"per_network": {name: {"latency": x, "energy": x}}, "latency": mean, "energy": mean}.
    """
    nets = list(networks.values() if nets is None else nets)
    if not nets:
        raise ValueError("gains_over_networks needs at least one network")
    per: dict[str, dict[str, float]] = {}
    for net in nets:
        m = dataclasses.replace(model, network=net)
        ref, split = m.cloud_only(), m.cost(candidate)
        per[net.name] = {
            "latency": _ratio(ref.latency_ms, split.latency_ms),
            "energy": _ratio(ref.energy_mj, split.energy_mj),
        }
    n = len(per)
    return {
        "per_network": per,
        "latency": sum(v["latency"] for v in per.values()) / n,
        "energy": sum(v["energy"] for v in per.values()) / n,
    }
