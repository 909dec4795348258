"""Runtime switching: a phone that changes its split as its uplink changes.

Each deployable split (a model file with its own split point / c' / s) is served by its own
pool.  Every reply gives an uplink sample: the payload's bytes over the round trip less the
server's queue and compute time.  A :class:`butterfly.planner.BandwidthEstimator` smooths the
samples and a :class:`butterfly.planner.Switcher` re-plans with the cost model at the
current estimate, switching only for a clear gain (hysteresis).

    phone = AdaptiveClient([("rb1.bfly", "tcp://cloud:5555"), ("rb4.bfly", "tcp://cloud:5556")],
                           network=costmodel.networks["4g"])
    results = phone.classify(images)       # the split in use: phone.current
"""

from __future__ import annotations

import dataclasses
import os

from ..serving import Client
from . import costmodel, planner
from .profiling import layer_records


class AdaptiveClient:
    """Classifies through whichever of several split models the planner picks for the uplink
    measured so far.

    options: (model_path, endpoint) per deployable split.  network: the radio's power model
    (its uplink bandwidth is replaced by the estimate).  mobile / cloud: device profiles
    (default: the paper's phone scaled to each model's plain network and a GTX 1080 Ti-class
    cloud).  Other keyword arguments go to each :class:`butterfly.Client`.
    """

    def __init__(self, options, network: costmodel.Network | None = None, *,
                 objective: str = "latency", mobile: costmodel.DeviceProfile | None = None,
                 cloud: costmodel.DeviceProfile | None = None, margin: float = 0.1,
                 patience: int = 1, window: int = 5, initial_mbps: float | None = None,
                 **client_kw):
        if not options:
            raise ValueError("AdaptiveClient needs at least one (model_path, endpoint)")
        self.clients = [Client(path, endpoint, **client_kw) for path, endpoint in options]
        network = network or costmodel.networks["4g"]
        candidates = []
        for (path, _), c in zip(options, self.clients):
            net = c.network
            payload = net.upload_bytes
            candidates.append(costmodel.Candidate.from_layers(
                f"{len(candidates)}:{os.path.basename(str(path))}", layer_records(net),
                payload, accuracy=net.meta.get("accuracy")))
        plain = [r for r in layer_records(self.clients[0].network)
                 if r["part"] in ("head", "tail")]
        model = costmodel.CostModel(mobile or costmodel.phone_profile(plain),
                                    cloud or costmodel.cloud_profile(), network, plain)
        self.candidates = candidates
        self.estimator = planner.BandwidthEstimator(
            window=window,
            initial_mbps=network.uplink_mbps if initial_mbps is None else initial_mbps)
        self.switcher = planner.Switcher(
            candidates, lambda mbps: dataclasses.replace(
                model, network=model.network.with_uplink(mbps)), objective,
            margin=margin, patience=patience)
        self._index = self._pick(self.estimator.mbps)

    def _pick(self, mbps: float) -> int:
        return self.candidates.index(self.switcher.update(mbps))

    @property
    def current(self) -> Client:
        """The client (split) in use now."""
        return self.clients[self._index]

    @property
    def mbps(self) -> float:
        return self.estimator.mbps

    def observe(self, payload_bytes: int, rtt_ms: float, server_us: float) -> None:
        """Feeds one round trip to the estimator and re-plans.  A round trip no longer than
        the server's time (a transfer below the clocks' resolution) counts as 1 us."""
        costmodel.check_quantity("rtt_ms", rtt_ms)
        costmodel.check_quantity("server_us", server_us)
        upload_s = max(rtt_ms / 1e3 - server_us / 1e6, 1e-6)
        self._index = self._pick(self.estimator.add(payload_bytes, upload_s))

    def classify(self, images, k: int = 5, **kw):
        """Top-k of images with the split chosen now; each reply updates the choice for the
        next call.  Results carry `.at`, the name of the split in use."""
        client = self.current
        payload, ms = client.mobile(images)
        results = client.classify_payload(payload, k, mobile_ms=ms, **kw)
        per_image = payload.nbytes_per_sample
        for r in results:
            r.at = self.candidates[self._index].name
            self.observe(per_image, r.rtt_ms, r.queue_us + r.compute_us)
        return results
