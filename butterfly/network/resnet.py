"""ResNet builders: one more way to make a graph (ONNX import is another).

ResNets come in the ImageNet form (7x7 stride-2 stem + max-pool, 224x224 inputs) and a
small-image form (3x3 stem, no max-pool, for 28x28 / 32x32 inputs).  A butterfly unit sits
at residual block ``Butterfly.at`` (1-based, RB1 is the first block of the first stage).
"""

from __future__ import annotations

from typing import Any

from .. import _C
from ..checks import int_arg
from .layers import LayerList
from .network import Network
from .unit import Butterfly, butterfly_unit

_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _basic_block(L: LayerList, width: int, stride: int, name: str) -> int:
    x = L.last
    in_c = L.shapes[x][0]
    L.conv_bn(width, 3, stride, src=x, name=f"{name}.1")
    y = L.conv_bn(width, 3, 1, relu=False, name=f"{name}.2")
    if stride != 1 or in_c != width:
        sc = L.conv_bn(width, 1, stride, src=x, relu=False, name=f"{name}.down", pad=0)
    else:
        sc = x
    L.add(y, sc, name=f"{name}.add")
    return L.relu(name=f"{name}.out")


def _bottleneck(L: LayerList, width: int, stride: int, name: str) -> int:
    x = L.last
    in_c = L.shapes[x][0]
    out_c = width * 4
    L.conv_bn(width, 1, 1, src=x, name=f"{name}.1", pad=0)
    L.conv_bn(width, 3, stride, name=f"{name}.2")
    y = L.conv_bn(out_c, 1, 1, relu=False, name=f"{name}.3", pad=0)
    if stride != 1 or in_c != out_c:
        sc = L.conv_bn(out_c, 1, stride, src=x, relu=False, name=f"{name}.down", pad=0)
    else:
        sc = x
    L.add(y, sc, name=f"{name}.add")
    return L.relu(name=f"{name}.out")


def resnet(depth: int | str, num_classes: int = 1000, in_channels: int = 3,
           small: bool = False, input_size: int | None = None, width: int = 64,
           butterfly: Butterfly | None = None, seed: int = 0):
    """A ResNet (18, 34 or 50) as a :class:`butterfly.Network`.

    small: 3x3 stride-1 stem and no max-pool (28x28 / 32x32 inputs); else the ImageNet stem.
    width: channels of the first stage (64 in the paper's networks).
    butterfly: where to insert the butterfly unit; None gives the plain network.
    """

    arch = f"resnet{depth}" if isinstance(depth, int) and not isinstance(depth, bool) else depth
    if not isinstance(arch, str) or arch not in _RESNETS:
        raise ValueError(f"unknown ResNet {depth!r}; choose 18, 34 or 50")
    num_classes = int_arg("num_classes", num_classes)
    in_channels = int_arg("in_channels", in_channels)
    width = int_arg("width", width)
    if input_size is not None:
        input_size = int_arg("input_size", input_size)
    if butterfly is not None and not isinstance(butterfly, Butterfly):
        raise TypeError(f"butterfly must be a butterfly.Butterfly or None, not "
                        f"{type(butterfly).__name__}")
    kind, blocks = _RESNETS[arch]
    size = input_size or (28 if small else 224)
    L = LayerList((in_channels, size, size), seed=seed)
    if small:
        L.conv_bn(width, 3, 1, name="stem")
    else:
        L.conv_bn(width, 7, 2, name="stem", pad=3)
        L.pool("maxpool", 3, 2, 1, name="stem.pool")
    n_blocks = sum(blocks)
    if butterfly is not None and not 1 <= butterfly.at <= n_blocks:
        raise ValueError(f"{arch} has residual blocks 1..{n_blocks}; "
                         f"cannot insert a unit at {butterfly.at}")
    block_fn = _basic_block if kind == "basic" else _bottleneck
    rb = 0
    block_ends = []
    for stage, count in enumerate(blocks):
        for b in range(count):
            stride = 2 if stage > 0 and b == 0 else 1
            rb += 1
            block_fn(L, width * 2**stage, stride, f"rb{rb}")
            block_ends.append(L.last)
            if butterfly is not None and rb == butterfly.at:
                butterfly_unit(L, butterfly)
    L.global_avgpool(name="pool")
    L.linear(num_classes, name="fc")
    config = {"arch": arch, "num_classes": num_classes, "in_channels": in_channels,
              "small": small, "input_size": size, "width": width, "seed": seed,
              "block_ends": block_ends}
    return Network.from_layers(L.layers, L.params, config=config,
                               butterfly=butterfly.to_dict() if butterfly else None)


def resnet18(**kw):
    """ResNet-18 (basic blocks 2-2-2-2, RB1..RB8).  See :func:`resnet`."""
    return resnet(18, **kw)


def resnet34(**kw):
    """ResNet-34 (basic blocks 3-4-6-3, RB1..RB16).  See :func:`resnet`."""
    return resnet(34, **kw)


def resnet50(**kw):
    """ResNet-50 (bottlenecks 3-4-6-3, RB1..RB16 as in the paper).  See :func:`resnet`."""
    return resnet(50, **kw)


def _builder_args(net: Network) -> dict[str, Any]:
    c = net.config
    if not built_here(net):
        raise _C.InvalidArgument("the network's metadata has no ResNet builder config")
    return {"depth": int(c["arch"].replace("resnet", "")), "num_classes": c["num_classes"],
            "in_channels": c["in_channels"], "small": c["small"],
            "input_size": c.get("input_size"), "width": c.get("width", 64)}


def built_here(net: Network) -> bool:
    """The network came from this module's builder (its config can rebuild it)."""
    c = net.config
    return isinstance(c.get("arch"), str) and c["arch"] in _RESNETS and "small" in c


def rebuild(net: Network, butterfly: Butterfly | None = None) -> Network:
    """The builder's network of `net`'s architecture (random weights: for shapes, MACs and
    timing), with a unit where `butterfly` says."""
    return resnet(**_builder_args(net), butterfly=butterfly)
