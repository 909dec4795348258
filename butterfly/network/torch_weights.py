"""Weights from and to PyTorch `state_dict`s, keyed like torchvision's ResNets.

Torch need not be installed: values may be numpy arrays (or anything `np.asarray` takes,
torch tensors included).  The butterfly unit has no torch counterpart: importing a plain
network's weights into a network with a unit fills everything but the unit, which keeps its
initial weights (train it, e.g. with the rest frozen, then fine-tune end to end).
"""

from __future__ import annotations

import re

import numpy as np

from .. import _C
from .resnet import _RESNETS

_BN = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean",
       "running_var": "running_var"}


def _torch_prefix(net, name: str) -> str | None:
    """Our layer name -> torchvision's module path ('rb5.down.conv' -> 'layer3.0.downsample.0')."""
    if name == "stem.conv":
        return "conv1"
    if name == "stem.bn":
        return "bn1"
    if name == "fc":
        return "fc"
    m = re.fullmatch(r"rb(\d+)\.(1|2|3|down)\.(conv|bn)", name)
    if not m:
        return None
    rb, which, kind = int(m.group(1)), m.group(2), m.group(3)
    _, blocks = _RESNETS[net.config["arch"]]
    stage, b = 0, rb - 1
    while b >= blocks[stage]:
        b -= blocks[stage]
        stage += 1
    base = f"layer{stage + 1}.{b}"
    if which == "down":
        return f"{base}.downsample.{0 if kind == 'conv' else 1}"
    return f"{base}.{kind}{which}"


def _keys(net):
    """(layer, slot, torch key) for every parameter that has a torch counterpart."""
    for i in range(len(net.model)):
        spec = net.model.layer(i)
        prefix = _torch_prefix(net, spec["name"])
        if prefix is None:
            continue
        for k, (pname, _) in enumerate(net.model.param_names(i)):
            suffix = _BN.get(pname, pname) if spec["type"] == "batchnorm" else pname
            yield i, k, f"{prefix}.{suffix}"


def state_dict(net) -> dict[str, np.ndarray]:
    """The network's weights under torchvision's names (numpy arrays)."""
    return {key: net.model.get_param(i, k) for i, k, key in _keys(net)}


def load_state_dict(net, sd, strict: bool = True) -> dict[str, list[str]]:
    """Copies weights from a torchvision-style state_dict into `net`.

    Returns {"missing": [...], "unexpected": [...]}; with strict=True either being non-empty
    (besides BN's num_batches_tracked) raises butterfly.ModelError.  Shapes must match.
    """
    if net.config.get("arch") not in _RESNETS:
        raise _C.ModelError("load_state_dict knows the ResNet builders' networks only")
    expected = list(_keys(net))
    names = {key for _, _, key in expected}
    missing = [key for key in sorted(names) if key not in sd]
    unexpected = [key for key in sd if key not in names and not key.endswith("num_batches_tracked")]
    if strict and (missing or unexpected):
        raise _C.ModelError(f"state_dict mismatch: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")
    for i, k, key in expected:
        if key not in sd:
            continue
        value = sd[key]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        want = dict(net.model.param_names(i))[net.model.param_names(i)[k][0]]
        if arr.shape != tuple(want):
            raise _C.ModelError(f"{key}: shape {arr.shape}, the network wants {tuple(want)}")
        net.model.set_param(i, k, arr)
    return {"missing": missing, "unexpected": unexpected}
