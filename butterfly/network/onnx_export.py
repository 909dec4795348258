"""Export a butterfly network to standard ONNX: the whole network, or its mobile or cloud half.

Each layer of the model becomes one ONNX node (or a few, where ONNX has no single op for
it); weights become initializers named ``<layer>.<param>``, and tensors carry the layer
names.  The batch axis is dynamic ("N").

The 8-bit quantizer is written out as plain ops (ReduceMin / ReduceMax per sample, Sub, Mul,
Add 0.5, Floor, Clip, Cast) that reproduce butterfly.h's formula in float32, so a runtime
gives the core's payload.  QuantizeLinear / DynamicQuantizeLinear would not: the dynamic one
stretches the range to hold 0 and rounds half to even, which gives other bytes than a
butterfly phone sends to the same cloud half.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import _C
from ..checks import int_arg
from ..version import __version__
from .network import Network
from .parts import HEAD, REDUCE, RESTORE, TAIL

EXPORT_PARTS = {"all": (HEAD, TAIL), "mobile": (HEAD, REDUCE), "cloud": (RESTORE, TAIL)}
MIN_OPSET = 14  # HardSwish; Softmax over one axis (13)
_PROTOBUF_MAX = 2**31 - 1  # one serialized ModelProto


def _onnx():
    try:
        import onnx
    except ImportError:
        raise _C.UnsupportedError("exporting to ONNX needs the onnx package: pip install onnx") \
            from None
    return onnx


class _Graph:
    """The nodes and initializers of the graph being built, with unique tensor names and the
    rank of every tensor that is not NCHW (a linear layer's (N, O))."""

    def __init__(self, onnx, opset: int):
        self.onnx = onnx
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self.names: set[str] = set()
        self.flat: set[str] = set()  # tensors of rank 2

    def fresh(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def const(self, name: str, value, dtype=np.float32) -> str:
        """An initializer named `name` (made unique) holding value; returns its name."""
        name = self.fresh(name)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def shared(self, name: str, value, dtype=np.float32) -> str:
        """One initializer per name for the graph's small constants (0, 0.5, 255...)."""
        if name not in self.names:
            self.const(name, value, dtype)
        return name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        """Appends a node writing one tensor named `out` (made unique); returns that name."""
        out = self.fresh(out)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out,
                                                     **attrs))
        return out

    def reduce(self, op_type: str, x: str, axes: list[int], out: str) -> str:
        # axes moved from an attribute to an input in opset 18
        if self.opset >= 18:
            axes_in = self.shared(f"bf.axes_{_tag(axes)}", axes, np.int64)
            return self.op(op_type, [x, axes_in], out, keepdims=1)
        return self.op(op_type, [x], out, axes=axes, keepdims=1)

    def nchw(self, x: str, dims) -> str:
        """x as (N, C, H, W): a linear layer's (N, O) becomes (N, O, 1, 1)."""
        if x not in self.flat:
            return x
        return self.op("Reshape", [x, self.shared(f"bf.shape_{_tag(dims)}", [-1, *dims],
                                                  np.int64)], f"{x}/nchw")

    def rename(self, old: str, new: str) -> None:
        """Renames the output of the node that writes `old` (a graph output's name)."""
        for node in self.nodes:
            for k, name in enumerate(node.output):
                if name == old:
                    node.output[k] = new
        self.flat = {new if n == old else n for n in self.flat}


# --- one emitter per layer type: (graph, layer, spec, input names) -> output name ---------------


def _params(net, i: int) -> list[np.ndarray]:
    out = []
    for k, (pname, _) in enumerate(net.model.param_names(i)):
        p = net.model.get_param(i, k)
        if p is None:  # the file was loaded as one half
            raise _C.InvalidArgument(f"layer {i} ({pname}): this half of the model is not "
                                     f"loaded; load the whole model (part='all') to export it")
        out.append(np.asarray(p, np.float32))
    return out


def _conv(g, net, i, s, ins, name):
    w, *b = _params(net, i)
    pads = [*s["pad"], *s["pad_end"]]
    op_type, attrs = "Conv", {}
    if s["type"] == "deconv":
        # ours (O, I/g, kh, kw), ONNX's ConvTranspose (I, O/g, kh, kw)
        gr, (o, ig, kh, kw) = s["groups"], w.shape
        w = w.reshape(gr, o // gr, ig, kh, kw).transpose(0, 2, 1, 3, 4)
        w = w.reshape(gr * ig, o // gr, kh, kw)
        op_type, attrs = "ConvTranspose", {"output_padding": list(s["output_pad"])}
        pads = [*s["pad"], *s["pad"]]  # a deconv's pad_end is its pad
    inputs = [g.nchw(ins[0], _in_dims(net, s, 0)), g.const(f"{name}.weight", w)]
    if b:
        inputs.append(g.const(f"{name}.bias", b[0]))
    return g.op(op_type, inputs, name, kernel_shape=list(s["kernel"]),
                strides=list(s["stride"]), pads=pads, dilations=list(s["dilation"]),
                group=s["groups"], **attrs)


def _batchnorm(g, net, i, s, ins, name):
    gamma, beta, mean, var = _params(net, i)
    out = g.op("BatchNormalization",
               [ins[0], g.const(f"{name}.gamma", gamma), g.const(f"{name}.beta", beta),
                g.const(f"{name}.running_mean", mean), g.const(f"{name}.running_var", var)],
               name, epsilon=float(s["eps"]))
    return _keep_rank(g, ins[0], out)


def _pool(g, net, i, s, ins, name):
    attrs: dict[str, Any] = {"kernel_shape": list(s["kernel"]), "strides": list(s["stride"]),
                             "pads": [*s["pad"], *s["pad_end"]]}
    if s["type"] == "avgpool":
        attrs["count_include_pad"] = 0  # padding excluded from the average, as in the core
    op_type = "MaxPool" if s["type"] == "maxpool" else "AveragePool"
    return g.op(op_type, [g.nchw(ins[0], _in_dims(net, s, 0))], name, **attrs)


def _global_avgpool(g, net, i, s, ins, name):
    return g.op("GlobalAveragePool", [g.nchw(ins[0], _in_dims(net, s, 0))], name)


def _linear(g, net, i, s, ins, name):
    w, b = _params(net, i)
    x = ins[0] if ins[0] in g.flat else g.op("Flatten", [ins[0]], f"{name}/flatten", axis=1)
    out = g.op("Gemm", [x, g.const(f"{name}.weight", w), g.const(f"{name}.bias", b)], name,
               transB=1)
    g.flat.add(out)
    return out


def _join(g, net, i, s, ins, name):
    """add, mul, concat: NCHW inputs, or all of rank 2."""
    if not all(x in g.flat for x in ins):
        ins = [g.nchw(x, _in_dims(net, s, k)) for k, x in enumerate(ins)]
    if s["type"] == "concat":
        out = g.op("Concat", ins, name, axis=1)
    else:
        out = g.op("Add" if s["type"] == "add" else "Mul", ins, name)
    return _keep_rank(g, ins[0], out)


def _softmax(g, net, i, s, ins, name):
    return _keep_rank(g, ins[0], g.op("Softmax", ins, name, axis=1))  # over channels


def _upsample(g, net, i, s, ins, name):
    k = float(s["scale"])
    scales = g.shared(f"bf.scales_{s['scale']}", [1.0, 1.0, k, k])
    # out[i] = in[floor(i / k)]: every value repeated k x k times
    return g.op("Resize", [g.nchw(ins[0], _in_dims(net, s, 0)), "", scales], name,
                mode="nearest", coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")


def _activation(g, net, i, s, ins, name):
    t, x = s["type"], ins[0]
    if t == "relu":
        out = g.op("Relu", [x], name)
    elif t in ("relu6", "clip"):
        lo, hi = (0.0, 6.0) if t == "relu6" else (s["alpha"], s["beta"])
        out = g.op("Clip", [x, g.const(f"{name}.min", lo), g.const(f"{name}.max", hi)], name)
    elif t == "sigmoid":
        out = g.op("Sigmoid", [x], name)
    elif t == "swish":  # no Swish op before opset 24
        out = g.op("Mul", [x, g.op("Sigmoid", [x], f"{name}/sigmoid")], name)
    elif t == "hardswish":
        out = g.op("HardSwish", [x], name)
    elif t == "hardsigmoid":
        out = g.op("HardSigmoid", [x], name, alpha=float(s["alpha"]), beta=float(s["beta"]))
    else:  # leaky_relu
        out = g.op("LeakyRelu", [x], name, alpha=float(s["alpha"]))
    return _keep_rank(g, x, out)


def _quantize(g, net, i, s, ins, name):
    """butterfly.h's quantizer: (payload uint8 NCHW, ranges (N, 2) f32) of each sample."""
    x = g.nchw(ins[0], _in_dims(net, s, 0))
    zero, half = g.shared("bf.zero", 0.0), g.shared("bf.half", 0.5)
    one, c255 = g.shared("bf.one", 1.0), g.shared("bf.255", 255.0)
    lo = g.reduce("ReduceMin", x, [1, 2, 3], f"{name}/min")
    hi = g.reduce("ReduceMax", x, [1, 2, 3], f"{name}/max")
    spread = g.op("Greater", [hi, lo], f"{name}/spread")
    width = g.op("Where", [spread, g.op("Sub", [hi, lo], f"{name}/width"), one],
                 f"{name}/safe_width")
    inv = g.op("Where", [spread, g.op("Div", [c255, width], f"{name}/inv_width"), zero],
               f"{name}/inv")
    v = g.op("Mul", [g.op("Sub", [x, lo], f"{name}/shifted"), inv], f"{name}/scaled")
    v = g.op("Floor", [g.op("Add", [v, half], f"{name}/plus_half")], f"{name}/rounded")
    v = g.op("Clip", [v, zero, c255], f"{name}/clipped")
    q = g.op("Cast", [v], f"{name}", to=g.onnx.TensorProto.UINT8)
    ranges = g.op("Concat", [lo, hi], f"{name}/ranges4", axis=1)
    ranges = g.op("Reshape", [ranges, g.shared("bf.shape_2", [-1, 2], np.int64)],
                  f"{name}.ranges")
    return q, ranges


def _dequantize(g, net, i, s, ins, name):
    """x' = min + q * ((max - min) / 255), per sample, from (payload, ranges)."""
    q, ranges = ins[0]
    r = g.op("Reshape", [ranges, g.shared("bf.shape_2_1_1", [-1, 2, 1, 1], np.int64)],
             f"{name}/ranges4")
    at = [g.shared(f"bf.index{k}", [k], np.int64) for k in range(3)]  # also axis 1
    lo = g.op("Slice", [r, at[0], at[1], at[1]], f"{name}/min")
    hi = g.op("Slice", [r, at[1], at[2], at[1]], f"{name}/max")
    step = g.op("Div", [g.op("Sub", [hi, lo], f"{name}/width"), g.shared("bf.255", 255.0)],
                f"{name}/step")
    qf = g.op("Cast", [q], f"{name}/float", to=g.onnx.TensorProto.FLOAT)
    return g.op("Add", [lo, g.op("Mul", [qf, step], f"{name}/scaled")], name)


def _tag(values) -> str:
    return "_".join(map(str, values))


def _keep_rank(g, x: str, out: str) -> str:
    if x in g.flat:
        g.flat.add(out)
    return out


def _in_dims(net, spec, k: int) -> tuple[int, int, int]:
    return tuple(net.model.info(spec["inputs"][k])["out_dims"])


_EMIT = {
    "conv": _conv, "deconv": _conv, "batchnorm": _batchnorm, "maxpool": _pool,
    "avgpool": _pool, "global_avgpool": _global_avgpool, "linear": _linear, "add": _join,
    "mul": _join, "concat": _join, "softmax": _softmax, "upsample": _upsample,
    "quantize": _quantize, "dequantize": _dequantize,
    **{t: _activation for t in ("relu", "relu6", "sigmoid", "swish", "hardswish",
                                "hardsigmoid", "clip", "leaky_relu")},
}


# --- the graph ------------------------------------------------------------------------------


def _layer_range(net, part: str) -> tuple[int, int]:
    """The first and last layer the export of `part` holds (layer 0, the input, excluded)."""
    model = net.model
    if part != "all" and model.part_range(REDUCE)[0] < 0:
        raise _C.InvalidArgument(f"this network has no butterfly unit, so no {part} half: "
                                 f"export part='all'")
    if model.loaded not in ("all", part):
        raise _C.InvalidArgument(f"this network was loaded as its {model.loaded} half; "
                                 f"load the whole model (part='all') to export part={part!r}")
    begin, end = EXPORT_PARTS[part]
    ranges = [model.part_range(p) for p in range(begin, end + 1)]
    ranges = [r for r in ranges if r[0] >= 0]
    first = 1 if part != "cloud" else ranges[0][0]
    last = ranges[-1][1]
    if part == "mobile" and model.layer(last)["type"] != "quantize":
        raise _C.ModelError(f"the reduce part must end with a quantize layer, not "
                            f"{model.layer(last)['type']!r}")
    if part == "cloud" and model.layer(first)["type"] != "dequantize":
        raise _C.ModelError(f"the restore part must start with a dequantize layer, not "
                            f"{model.layer(first)['type']!r}")
    return first, last


def _layer_names(net) -> list[str]:
    """Each layer's name, or type + index where it has none; unique."""
    names, seen = [], set()
    for i in range(len(net.model)):
        spec = net.model.layer(i)
        name = spec["name"] or f"{spec['type']}{i}"
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        names.append(name)
    return names


def to_onnx(net, part: str = "all", opset: int = 17):
    """The ONNX ModelProto of `net` (see :func:`export_onnx`)."""
    onnx = _onnx()
    if not isinstance(net, Network):
        raise TypeError(f"net must be a butterfly.Network, not {type(net).__name__}")
    if not isinstance(part, str) or part not in EXPORT_PARTS:
        raise _C.InvalidArgument(f"part must be 'all', 'mobile' or 'cloud', not {part!r}")
    opset = int_arg("opset", opset, MIN_OPSET, onnx.defs.onnx_opset_version())
    first, last = _layer_range(net, part)
    model, h = net.model, onnx.helper
    g = _Graph(onnx, opset)
    names = _layer_names(net)
    g.names.update(("image", "payload", "ranges", "logits", "probabilities"))
    values: dict[int, Any] = {}
    if part == "cloud":
        c, hh, w = _in_dims(net, model.layer(first), 0)
        graph_in = [h.make_tensor_value_info("payload", onnx.TensorProto.UINT8,
                                             ["N", c, hh, w]),
                    h.make_tensor_value_info("ranges", onnx.TensorProto.FLOAT, ["N", 2])]
        values[model.layer(first)["inputs"][0]] = ("payload", "ranges")
    else:
        graph_in = [h.make_tensor_value_info("image", onnx.TensorProto.FLOAT,
                                             ["N", *net.input_shape])]
        values[0] = "image"
    for i in range(first, last + 1):
        spec = model.layer(i)
        missing = [j for j in spec["inputs"] if j not in values]
        if missing:
            raise _C.ModelError(f"layer {i} ({names[i]}) reads layer {missing[0]}, which is "
                                f"not in the {part} half")
        emit = _EMIT.get(spec["type"])
        if emit is None:
            raise _C.UnsupportedError(f"layer {i} ({names[i]}): the ONNX export has no mapping for "
                                 f"the layer type {spec['type']!r} yet")
        values[i] = emit(g, net, i, spec, [values[j] for j in spec["inputs"]], names[i])
    if part == "mobile":
        q, r = values[last]
        g.rename(q, "payload")
        g.rename(r, "ranges")
        graph_out = [h.make_tensor_value_info("payload", onnx.TensorProto.UINT8,
                                              ["N", *model.info(last)["out_dims"]]),
                     h.make_tensor_value_info("ranges", onnx.TensorProto.FLOAT, ["N", 2])]
    else:
        # (N, classes) as Network.forward gives it: the last layer's output, flattened
        out = "probabilities" if model.layer(last)["type"] == "softmax" else "logits"
        y = values[last]
        if y not in g.flat:
            y = g.op("Flatten", [y], f"{y}/flatten", axis=1)
        g.rename(y, out)
        size = int(np.prod(model.info(last)["out_dims"]))
        graph_out = [h.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["N", size])]
    graph = h.make_graph(g.nodes, f"butterfly-{part}", graph_in, graph_out, g.inits)
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)],
                         producer_name="butterfly", producer_version=__version__)
    proto.doc_string = (f"the {part} of butterfly model {net.hash}; the quantizer is per-sample "
                        f"min/max, round half up (butterfly.h), written as plain ops")
    h.set_model_props(proto, {"butterfly.hash": net.hash, "butterfly.part": part})
    return proto


def export_onnx(net, path: str | os.PathLike, part: str = "all", opset: int = 17) -> None:
    """Writes `net` as an ONNX file at `path`.

    part: 'all' (image -> logits, the quantizer as ONNX ops in the middle), 'mobile' (image
    -> payload uint8 (N, C', H', W') and ranges float32 (N, 2), as Network.mobile) or
    'cloud' ((payload, ranges) -> logits, as Network.cloud).  A network without a butterfly
    unit has only 'all'.  The output is named 'probabilities' when the network ends with a
    softmax.  opset: the ONNX opset, 14 up to what the installed onnx package knows.
    """
    proto = to_onnx(net, part, opset)
    if proto.ByteSize() > _PROTOBUF_MAX:
        raise _C.UnsupportedError("the model is larger than the 2 GiB one ONNX file can hold "
                             "without external data, which this exporter does not write")
    data = proto.SerializeToString()
    path = os.fspath(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise _C.FileError(f"cannot write {path}: {e.strerror or e}") from None


# --- command line --------------------------------------------------------------------------


def _cli_export(args) -> int:
    out = args.output
    if out is None:
        stem = os.path.splitext(args.model)[0]
        out = f"{stem}.onnx" if args.part == "all" else f"{stem}.{args.part}.onnx"
    net = Network.load(args.model, args.part)
    export_onnx(net, out, part=args.part, opset=args.opset)
    print(f"wrote {out}: the {args.part} of {args.model} (ONNX opset {args.opset})")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("export", help="write a model (or its mobile or cloud half) as ONNX")
    p.add_argument("model", help="a model file (.bfly)")
    p.add_argument("--part", default="all", choices=list(EXPORT_PARTS),
                   help="all: image -> logits; mobile: image -> payload, ranges; "
                        "cloud: payload, ranges -> logits")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("-o", "--output", default=None,
                   help="the ONNX file (default: MODEL.onnx, or MODEL.PART.onnx for a half)")
    p.set_defaults(func=_cli_export)


__all__ = ["export_onnx", "to_onnx"]
