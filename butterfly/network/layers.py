"""Layer specs: a model is data, a list of layer specs (dicts) plus their parameters.

The C core's table of layer types (csrc/core/layers.c) owns the rules: shapes, parameter
names and shapes, MACs.  This module asks it through ``_C.layer_info`` and builds spec lists.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from .. import _C


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
