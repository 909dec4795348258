"""The paper's setting: ResNet-50 at 224x224 with the paper's phone and a GTX 1080 Ti-class
cloud, the cost of a unit after every residual block."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..network import resnet
from . import costmodel
from .candidates import cost_tables, split_candidates
from .profiling import layer_records

_PAPER_CACHE: dict[tuple, tuple] = {}


def paper_setting(blocks=None, payload_scale: float = 1.0, input_bytes=None,
                  progress: bool = False) -> dict[str, Any]:
    """ResNet-50 at 224x224 with the paper's phone (15.7 ms, 20.5 mJ) and a GTX 1080 Ti-class
    cloud; a unit with the paper's c' and s = 2 after each block in `blocks` (default all 16).
    payload_scale multiplies the 8-bit payloads (e.g. the zstd ratio measured on real
    payloads); input_bytes is the cloud-only JPEG (default the paper's 26,766 B)."""
    key = tuple(blocks or ())
    if key not in _PAPER_CACHE:  # building 16 ResNet-50s takes a while: once per process
        plain = resnet(50)
        cands, _ = split_candidates(plain, blocks=blocks, progress=progress)
        _PAPER_CACHE[key] = (layer_records(plain), cands)
    layers, cands = _PAPER_CACHE[key]
    phone = costmodel.phone_profile(layers)
    cloud = costmodel.cloud_profile()
    if payload_scale != 1.0:
        cands = [dataclasses.replace(c, payload_bytes=max(1, round(c.payload_bytes *
                                                                   payload_scale)))
                 for c in cands]
    model = costmodel.CostModel(phone, cloud, costmodel.networks["4g"], layers,
                                input_bytes=input_bytes or costmodel.PAPER_JPEG_BYTES)
    return {"model": model, "candidates": cands, "tables": cost_tables(model, cands)}
