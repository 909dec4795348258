"""The butterfly unit: where and how much to shrink the feature, and its layers.

Reduction unit (phone): optional stride-``s`` spatial conv (depthwise by default, so the
phone pays little for it) + BN + ReLU, then a 1x1 conv c -> c' + BN + ReLU, then the 8-bit
quantizer.  Restoration unit (cloud): dequantize, 1x1 conv c' -> c + BN + ReLU, then (if
s > 1) a stride-s transposed conv (or nearest upsample + 3x3 conv) back to the feature's
shape + BN + ReLU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..checks import int_arg
from .layers import LayerList


def rb_block(at) -> int | None:
    """k of a residual block named "RB<k>" (any case); None for anything else."""
    if isinstance(at, str) and at.upper().startswith("RB") and at[2:].isdigit():
        return int(at[2:])
    return None


@dataclass(frozen=True)
class Butterfly:
    """Where and how much to shrink the feature.

    at: the split point: for the ResNet builders a residual block (1-based: 2 or "RB2"),
    the unit sitting after it; :func:`butterfly.insert_butterfly` takes any split point.
    channels: c', the channels of the uploaded feature.
    stride: s, the spatial reduction (1 = none).
    spatial: "depthwise" or "full" stride-s conv on the phone.
    upsample: "deconv" (transposed conv) or "nearest" (upsample + 3x3 conv) on the cloud.
    relu_out: the restoration unit ends with a ReLU, as the feature it restores does after
    a ReLU (every ResNet block end); False for a feature that can be negative.
    """

    at: int | str
    channels: int = 1
    stride: int = 1
    spatial: str = "depthwise"
    upsample: str = "deconv"
    relu_out: bool = True

    def __post_init__(self) -> None:
        block = rb_block(self.at)
        at = self.at if block is None else block
        object.__setattr__(self, "at", int_arg("Butterfly.at (a residual block)", at))
        for name in ("channels", "stride"):  # plain ints: they go into the metadata
            object.__setattr__(self, name, int_arg(f"Butterfly.{name}", getattr(self, name)))
        if self.spatial not in ("depthwise", "full"):
            raise ValueError("Butterfly.spatial must be 'depthwise' or 'full'")
        if self.upsample not in ("deconv", "nearest"):
            raise ValueError("Butterfly.upsample must be 'deconv' or 'nearest'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def butterfly_unit(L: LayerList, bf: Butterfly) -> None:
    """Appends the reduction and restoration units after L's last layer (see the module)."""
    x = L.last
    c, h, w = L.shapes[x]
    s = bf.stride
    L.part = "reduce"
    if s > 1:
        groups = c if bf.spatial == "depthwise" else 1
        L.conv_bn(c, s + 1 if s % 2 == 0 else s, s, groups=groups, name="reduce.spatial",
                  pad=s // 2)
    L.conv_bn(bf.channels, 1, 1, name="reduce.channel", pad=0)
    L.simple("quantize", name="reduce.quantize")
    L.part = "restore"
    L.simple("dequantize", name="restore.dequantize")
    L.conv_bn(c, 1, 1, name="restore.channel", pad=0, relu=bf.relu_out or s > 1)
    if s > 1:
        _, rh, rw = L.shapes[L.last]
        if bf.upsample == "deconv":
            k, pad = s + 1 if s % 2 == 0 else s, s // 2
            base = (rh - 1) * s - 2 * pad + k
            op = h - base
            if not 0 <= op < s or w - ((rw - 1) * s - 2 * pad + k) != op:
                raise ValueError(f"cannot restore {h}x{w} from {rh}x{rw} with stride {s}")
            L.conv(c, k, s, pad=pad, deconv=True, output_pad=op, name="restore.spatial.conv")
            L.bn(name="restore.spatial.bn")
            if bf.relu_out:
                L.relu(name="restore.spatial.relu")
        else:
            if rh * s != h or rw * s != w:
                raise ValueError(f"nearest upsampling by {s} cannot give {h}x{w} from {rh}x{rw}")
            L.upsample(s, name="restore.upsample")
            L.conv_bn(c, 3, 1, name="restore.spatial", relu=bf.relu_out)
    L.part = "tail"
