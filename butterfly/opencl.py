"""The mobile half (head + reduction unit + 8-bit quantizer) on OpenCL.

The same numbers as the oneDNN path (float outputs to ~1e-6 relative; the payload bytes
equal, or 1 LSB off where the float feature sits on a rounding boundary), on any OpenCL 1.2
device: a phone GPU, or PoCL on the CPU.  ``butterfly.load(path, part="mobile",
backend="opencl")`` returns a :class:`MobileHalf`.

    >>> half = MobileHalf("net.bfly")          # first GPU, else first device
    >>> payload = half.mobile(images)          # == Network.mobile(images)
    >>> half.profile()                         # per-op device times of that run
"""

from __future__ import annotations

import os

import numpy as np

from . import _C
from .network import HEAD, MAX_BATCH, REDUCE, Network, Payload

_PLAN_CACHE_MAX = 8


def _require():
    if not hasattr(_C, "ClPlan"):
        raise _C.Unsupported("this build of butterfly has no OpenCL backend")


def devices() -> list[dict]:
    """The OpenCL devices: dicts with index, platform, name, version, type ('gpu', 'cpu',
    ...), compute_units, global_mem, local_mem, max_work_group.  [] when OpenCL is not
    installed (no ICD loader or no platform)."""
    if not hasattr(_C, "cl_devices"):
        return []
    try:
        return _C.cl_devices()
    except _C.OpenCLError:
        return []


def available() -> bool:
    """Whether an OpenCL device can be used."""
    return bool(devices())


class MobileHalf:
    """head + reduce of a butterfly network on an OpenCL device.

    model: a model file path, a :class:`butterfly.Network` or a ``butterfly._C.Model``
    (the file may be the mobile half alone).  device: index into :func:`devices`, or None
    for the first GPU (else the first device).  For a plain network (no butterfly unit)
    ``head`` is the whole classifier: the cost model's mobile-only baseline.
    """

    def __init__(self, model, device: int | None = None):
        _require()
        if isinstance(model, (str, os.PathLike)):
            model = Network.load(model, "mobile")
        elif isinstance(model, _C.Model):
            model = Network(model)
        if not isinstance(model, Network):
            raise TypeError(f"model must be a path, a Network or a _C.Model, not {type(model)}")
        self.network = model
        if device is not None:  # checked now, not at the first image
            n = len(devices())
            if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < n:
                raise _C.InvalidArgument(f"device must be an index in [0, {n}) (see "
                                         f"butterfly.opencl.devices()), not {device!r}")
        self.device_index = -1 if device is None else device
        self._plans: dict[tuple, _C.ClPlan] = {}
        self._last: _C.ClPlan | None = None

    def plan(self, begin: int, end: int, batch: int) -> _C.ClPlan:
        """The compiled plan for parts begin..end at this batch size (cached)."""
        key = (begin, end, batch)
        p = self._plans.get(key)
        if p is None:
            if len(self._plans) >= _PLAN_CACHE_MAX:
                self._plans.pop(next(iter(self._plans)))
            p = _C.ClPlan(self.network.model, begin, end, batch, self.device_index)
            self._plans[key] = p
        return p

    def _run(self, begin: int, end: int, x: np.ndarray):
        begin, end = self.network._range(begin, end)
        outs = []
        for i in range(0, len(x), MAX_BATCH):
            xb = x[i : i + MAX_BATCH]
            self._last = self.plan(begin, end, len(xb))
            outs.append(self._last.forward(xb))
        if isinstance(outs[0], tuple):
            return Payload(
                np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
            )
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    @property
    def device(self) -> str:
        """The device the plans run on ("device N 'name' (platform)")."""
        return self.plan(*self.network._range(HEAD, REDUCE), 1).device

    def head(self, x) -> np.ndarray:
        """Images (N, C, H, W) -> the feature at the split (float32)."""
        x = self.network._float_input(x, self.network.input_shape, "images")
        return self._run(HEAD, HEAD, x)

    def reduce(self, f) -> Payload:
        """The reduction unit + quantizer: feature -> :class:`butterfly.Payload`."""
        first, _ = self.network.model.part_range(REDUCE)
        if first < 0:
            raise _C.InvalidArgument("this network has no butterfly unit")
        f = self.network._float_input(f, self.network._feature_shape(first - 1), "feature")
        return self._run(REDUCE, REDUCE, f)

    def mobile(self, x) -> Payload:
        """head + reduce in one plan (what a phone runs): images -> payload."""
        x = self.network._float_input(x, self.network.input_shape, "images")
        return self._run(HEAD, REDUCE, x)

    __call__ = mobile

    def profile(self) -> list[dict]:
        """Per-op device times of the last run: dicts with first, last (layer indices),
        layers (names of the fused layers), kernel and ms."""
        return self._last.profile() if self._last is not None else []
