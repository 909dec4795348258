"""Model builders.  A model is data: a list of layer specs (dicts) plus their parameters.

The C core compiles the list into plans; nothing here runs a network.  Builders return a
:class:`butterfly.Network`.  ResNets come in the ImageNet form (7x7 stride-2 stem + max-pool,
224x224 inputs) and a small-image form (3x3 stem, no max-pool, for 28x28 / 32x32 inputs).

A butterfly unit is inserted after residual block ``after`` (1-based, RB1 is the first block
of the first stage).  Reduction unit (phone): optional stride-``s`` spatial conv (depthwise by
default, so the phone pays little for it) + BN + ReLU, then a 1x1 conv c -> c' + BN + ReLU,
then the 8-bit quantizer.  Restoration unit (cloud): dequantize, 1x1 conv c' -> c + BN +
ReLU, then (if s > 1) a stride-s transposed conv (or nearest upsample + 3x3 conv) back to
the block's shape + BN + ReLU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from . import _C

PARTS = ("head", "reduce", "restore", "tail")


def int_arg(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """value as an int in [minimum, maximum] (no upper bound when maximum is None); bools and
    floats (even 2.0) are refused (TypeError), values out of range too (InvalidArgument)."""
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int {bounds}, not {type(value).__name__} "
                        f"{value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise _C.InvalidArgument(f"{name} must be {bounds}, not {value}")
    return int(value)


@dataclass(frozen=True)
class Butterfly:
    """Where and how much to shrink the feature.

    after: residual block (1-based) after which the unit sits.
    channels: c', the channels of the uploaded feature.
    stride: s, the spatial reduction (1 = none).
    spatial: "depthwise" or "full" stride-s conv on the phone.
    upsample: "deconv" (transposed conv) or "nearest" (upsample + 3x3 conv) on the cloud.
    relu_out: the restoration unit ends with a ReLU, as the feature it restores does after
    a ReLU (every ResNet block end); False for a feature that can be negative.
    """

    after: int
    channels: int = 1
    stride: int = 1
    spatial: str = "depthwise"
    upsample: str = "deconv"
    relu_out: bool = True

    def __post_init__(self) -> None:
        for name in ("after", "channels", "stride"):  # plain ints: they go into the metadata
            object.__setattr__(self, name, int_arg(f"Butterfly.{name}", getattr(self, name)))
        if self.spatial not in ("depthwise", "full"):
            raise ValueError("Butterfly.spatial must be 'depthwise' or 'full'")
        if self.upsample not in ("deconv", "nearest"):
            raise ValueError("Butterfly.upsample must be 'deconv' or 'nearest'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def layer_info(spec: dict[str, Any], index: int, in_dims) -> dict[str, Any]:
    """The core's shape inference for one layer spec (layer `index` of its list) whose inputs
    have output shapes `in_dims` (one (C, H, W) per input): {"out_dims", "macs", "params",
    "param_shapes": [(name, shape)]}, by the core's table of layer types."""
    clean = {k: v for k, v in spec.items() if v != ""}
    return _C.layer_info(msgpack.packb(clean, use_bin_type=True), index,
                         [tuple(d) for d in in_dims])


def infer_layers(layers) -> list[dict[str, Any]]:
    """layer_info of every layer of a spec list, in order."""
    out: list[dict[str, Any]] = []
    for i, spec in enumerate(layers):
        inputs = spec.get("inputs", [i - 1] if i else [])
        out.append(layer_info(spec, i, [out[j]["out_dims"] for j in inputs]))
    return out


class LayerList:
    """Builds the layer-spec list and initial parameters.  Shapes and parameter shapes come
    from the core (:func:`layer_info`), so the rules live in one place."""

    def __init__(self, input_shape: tuple[int, int, int], seed: int = 0):
        self.layers: list[dict[str, Any]] = []
        self.params: list[list[np.ndarray]] = []
        self.shapes: list[tuple[int, int, int]] = []
        self.part = "head"
        self.rng = np.random.default_rng(seed)
        self._add({"type": "input", "name": "input", "shape": list(input_shape)})

    def _add(self, spec: dict, init=None) -> int:
        """Appends spec; init(param_shapes) makes its initial parameters from the core's
        [(name, shape)] (None: a layer without parameters)."""
        spec.setdefault("part", self.part)
        index = len(self.layers)
        info = layer_info(spec, index, [self.shapes[j] for j in spec.get("inputs", [])])
        params = init(info["param_shapes"]) if info["param_shapes"] else []
        self.layers.append(spec)
        self.params.append(params)
        self.shapes.append(tuple(info["out_dims"]))
        return index

    @classmethod
    def from_layers(cls, layers, params, seed: int = 0) -> LayerList:
        """A LayerList continuing an existing spec list (layer 0 the input) and its weights."""
        L = cls(tuple(layers[0]["shape"]), seed=seed)
        L.layers[0] = dict(layers[0])
        for spec, p in zip(layers[1:], params[1:]):
            L.append(dict(spec), p)
        return L

    def append(self, spec: dict, params) -> int:
        """Appends a layer with the given weights (checked against the core's shapes)."""
        def init(shapes):
            if [tuple(np.shape(p)) for p in params] != [tuple(s) for _, s in shapes]:
                raise _C.ModelError(f"layer {spec.get('name', '')}: parameters "
                                    f"{[np.shape(p) for p in params]} do not match "
                                    f"{[s for _, s in shapes]}")
            return [np.ascontiguousarray(p, np.float32) for p in params]
        return self._add(spec, init)

    @property
    def last(self) -> int:
        return len(self.layers) - 1

    def _src(self, src: int | None) -> int:
        return self.last if src is None else src

    def conv(self, out_c: int, k: int, stride: int = 1, pad: int | None = None, src=None,
             groups: int = 1, bias: bool = False, name: str = "", deconv: bool = False,
             output_pad: int = 0, dilation: int = 1, pad_end: int | None = None) -> int:
        pad = (k - 1) // 2 * dilation if pad is None else pad
        spec = {"type": "deconv" if deconv else "conv", "name": name, "inputs": [self._src(src)],
                "out_channels": out_c, "kernel": [k, k], "stride": [stride, stride],
                "pad": [pad, pad], "dilation": [dilation, dilation], "groups": groups,
                "bias": bias}
        if pad_end is not None:
            spec["pad_end"] = [pad_end, pad_end]
        if deconv:
            spec["output_pad"] = [output_pad, output_pad]

        def init(shapes):
            (_, wshape), *rest = shapes
            fan_out = out_c * k * k // groups
            params = [self.rng.normal(0.0, np.sqrt(2.0 / fan_out), wshape).astype(np.float32)]
            return params + [np.zeros(shape, np.float32) for _, shape in rest]
        return self._add(spec, init)

    def bn(self, src=None, name: str = "") -> int:
        ones = ("gamma", "running_var")
        return self._add({"type": "batchnorm", "name": name, "inputs": [self._src(src)],
                          "eps": 1e-5, "momentum": 0.1},
                         lambda shapes: [(np.ones if n in ones else np.zeros)(shape, np.float32)
                                         for n, shape in shapes])

    def simple(self, type_: str, src=None, name: str = "", **kw) -> int:
        return self._add({"type": type_, "name": name, "inputs": [self._src(src)], **kw})

    def relu(self, src=None, name: str = "") -> int:
        return self.simple("relu", src, name)

    def pool(self, kind: str, k: int, stride: int, pad: int = 0, src=None, name: str = "",
             pad_end: int | None = None) -> int:
        extra = {} if pad_end is None else {"pad_end": [pad_end, pad_end]}
        return self.simple(kind, src, name, kernel=[k, k], stride=[stride, stride],
                           pad=[pad, pad], **extra)

    def act(self, kind: str, src=None, name: str = "", alpha: float | None = None,
            beta: float | None = None) -> int:
        """An activation layer: relu, relu6, sigmoid, swish, hardswish, hardsigmoid (alpha,
        beta), clip (alpha = min, beta = max) or leaky_relu (alpha)."""
        extra = {k: float(v) for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}
        return self.simple(kind, src, name, **extra)

    def mul(self, a: int, b: int, name: str = "") -> int:
        """a * b: b of a's shape, or (C, 1, 1) scaling a's channels."""
        return self._add({"type": "mul", "name": name, "inputs": [a, b]})

    def concat(self, srcs, name: str = "") -> int:
        return self._add({"type": "concat", "name": name, "inputs": list(srcs)})

    def global_avgpool(self, src=None, name: str = "") -> int:
        return self.simple("global_avgpool", src, name)

    def upsample(self, scale: int, src=None, name: str = "") -> int:
        return self.simple("upsample", src, name, scale=scale)

    def add(self, a: int, b: int, name: str = "") -> int:
        return self._add({"type": "add", "name": name, "inputs": [a, b]})

    def linear(self, out_f: int, src=None, name: str = "") -> int:
        def init(shapes):
            (_, wshape), (_, bshape) = shapes
            bound = 1.0 / np.sqrt(wshape[1])
            wt = self.rng.uniform(-bound, bound, wshape).astype(np.float32)
            return [wt, self.rng.uniform(-bound, bound, bshape).astype(np.float32)]
        return self._add({"type": "linear", "name": name, "inputs": [self._src(src)],
                          "out_channels": out_f, "bias": True}, init)

    def conv_bn(self, out_c, k, stride=1, src=None, relu=True, name="", **kw) -> int:
        self.conv(out_c, k, stride, src=src, name=f"{name}.conv", **kw)
        self.bn(name=f"{name}.bn")
        return self.relu(name=f"{name}.relu") if relu else self.last


# --- ResNets -------------------------------------------------------------------------------

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


def resnet(depth: int | str, num_classes: int = 1000, in_channels: int = 3,
           small: bool = False, input_size: int | None = None, width: int = 64,
           butterfly: Butterfly | None = None, seed: int = 0):
    """A ResNet (18, 34 or 50) as a :class:`butterfly.Network`.

    small: 3x3 stride-1 stem and no max-pool (28x28 / 32x32 inputs); else the ImageNet stem.
    width: channels of the first stage (64 in the paper's networks).
    butterfly: where to insert the butterfly unit; None gives the plain network.
    """
    from .network import Network

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
    if butterfly is not None and not 1 <= butterfly.after <= n_blocks:
        raise ValueError(f"{arch} has residual blocks 1..{n_blocks}; "
                         f"cannot insert after {butterfly.after}")
    block_fn = _basic_block if kind == "basic" else _bottleneck
    rb = 0
    block_ends = []
    for stage, count in enumerate(blocks):
        for b in range(count):
            stride = 2 if stage > 0 and b == 0 else 1
            rb += 1
            block_fn(L, width * 2**stage, stride, f"rb{rb}")
            block_ends.append(L.last)
            if butterfly is not None and rb == butterfly.after:
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
