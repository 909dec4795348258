"""butterfly.load: a model file as a Network on oneDNN, or its mobile half on OpenCL."""

from __future__ import annotations

import os

from .. import _C
from .network import Network
from .opencl import MobileHalf


def load(path: str | os.PathLike, part: str = "all", backend: str = "onednn",
         device: int | None = None) -> Network:
    """Loads a model file as a :class:`Network` (part: 'all', 'mobile', 'cloud'); with
    backend='opencl' the mobile half as a :class:`MobileHalf` on OpenCL device `device`."""
    if backend == "onednn":
        return Network.load(path, part)
    if backend == "opencl":
        if part != "mobile":
            raise _C.InvalidArgument("the OpenCL backend runs the mobile half: part='mobile'")
        return MobileHalf(path, device=device)
    raise _C.InvalidArgument(f"unknown backend {backend!r}; choose 'onednn' or 'opencl'")
