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

from .. import _C
from .backends import OpenCL, available, devices
from .network import Network
from .parts import HEAD, REDUCE

__all__ = ["MobileHalf", "available", "devices"]


class MobileHalf(Network):
    """head + reduce of a butterfly network on an OpenCL device: a :class:`Network` whose
    plans come from the OpenCL backend, so it runs head, reduce and mobile only.

    model: a model file path, a :class:`butterfly.Network` or a ``butterfly._C.Model``
    (the file may be the mobile half alone).  device: index into :func:`devices`, or None
    for the first GPU (else the first device).  For a plain network (no butterfly unit)
    ``head`` is the whole classifier: the cost model's mobile-only baseline.
    """

    def __init__(self, model, device: int | None = None):
        if isinstance(model, (str, os.PathLike)):
            model = _C.Model.load(os.fspath(model), "mobile")
        elif isinstance(model, Network):
            model.sync()
            model = model.model
        if not isinstance(model, _C.Model):
            raise TypeError(f"model must be a path, a Network or a _C.Model, not "
                            f"{type(model)}")
        super().__init__(model, OpenCL(device))
        self.plans.size = 8

    @property
    def device_index(self) -> int:
        return self.backend.device_index

    @property
    def device(self) -> str:
        """The device the plans run on ("device N 'name' (platform)")."""
        return self.plan(*self.span(HEAD, REDUCE), 1).device

    def _cloud_part(self, *args, **kwargs):
        raise _C.UnsupportedError("the OpenCL backend runs the mobile half (head, reduce, "
                             "mobile); run restore / tail / cloud on a Network")

    forward = restore = tail = cloud = predict = _cloud_part

    __call__ = Network.mobile

    def profile(self) -> list[dict]:
        """Per-op device times of the last run: dicts with first, last (layer indices),
        layers (names of the fused layers), kernel and ms."""
        return self.plans.last.profile() if self.plans.last is not None else []
