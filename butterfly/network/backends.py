"""Plan factories, one per backend: oneDNN (every part, inference and training) and OpenCL
(the mobile half).  A plan is a compiled range of parts of a model for one batch size;
:class:`PlanCache` keeps the recent ones and runs inputs of any length through them in
chunks of at most MAX_BATCH."""

from __future__ import annotations

import numpy as np

from .. import _C
from .payload import Payload

MAX_BATCH = 256  # larger inputs run in chunks


class OneDNN:
    """Plans on oneDNN (this machine's CPU)."""

    name = "onednn"
    training = True

    def plan(self, model: _C.Model, begin: int, end: int, batch: int,
             training: bool = False) -> _C.Plan:
        return _C.Plan(model, begin, end, batch, training)


class OpenCL:
    """Plans on an OpenCL device: index into :func:`devices`, or None for the first GPU
    (else the first device).  Inference of head and reduce only."""

    name = "opencl"
    training = False

    def __init__(self, device: int | None = None):
        if device is not None:  # checked now, not at the first image
            n = len(devices())
            if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < n:
                raise _C.InvalidArgument(f"device must be an index in [0, {n}) (see "
                                         f"butterfly.opencl.devices()), not {device!r}")
        self.device_index = -1 if device is None else device

    def plan(self, model: _C.Model, begin: int, end: int, batch: int,
             training: bool = False) -> _C.ClPlan:
        if training:
            raise _C.UnsupportedError("the OpenCL backend runs inference only")
        return _C.ClPlan(model, begin, end, batch, self.device_index)


def devices() -> list[dict]:
    """The OpenCL devices: dicts with index, platform, name, version, type ('gpu', 'cpu',
    ...), compute_units, global_mem, local_mem, max_work_group.  [] when OpenCL is not
    installed (no ICD loader or no platform)."""
    try:
        return _C.cl_devices()
    except _C.OpenCLError:
        return []


def available() -> bool:
    """Whether an OpenCL device can be used."""
    return bool(devices())


class PlanCache:
    """The recent plans of one model on one backend, by (begin, end, batch, training)."""

    def __init__(self, backend, size: int = 16):
        self.backend = backend
        self.size = size
        self._plans: dict[tuple, object] = {}
        self.last = None  # the plan of the latest run (for its profile)

    def get(self, model: _C.Model, begin: int, end: int, batch: int, training: bool = False):
        key = (begin, end, batch, training)
        p = self._plans.get(key)
        if p is None:
            if len(self._plans) >= self.size:
                self._plans.pop(next(iter(self._plans)))
            p = self.backend.plan(model, begin, end, batch, training)
            self._plans[key] = p
        return p

    def clear(self) -> None:
        self._plans.clear()
        self.last = None

    def run(self, model: _C.Model, begin: int, end: int, x: np.ndarray,
            ranges: np.ndarray | None = None):
        """Parts begin..end on x (and the payload's ranges), in chunks of MAX_BATCH: a float
        array, or a :class:`Payload` for a range that ends with the quantizer."""
        outs = []
        for i in range(0, len(x), MAX_BATCH):
            xb = x[i:i + MAX_BATCH]
            rb = None if ranges is None else ranges[i:i + MAX_BATCH]
            self.last = self.get(model, begin, end, len(xb))
            outs.append(self.last.forward(xb, rb) if rb is not None
                        else self.last.forward(xb))
        if isinstance(outs[0], tuple):
            return Payload(np.concatenate([o[0] for o in outs]),
                           np.concatenate([o[1] for o in outs]))
        return outs[0] if len(outs) == 1 else np.concatenate(outs)
