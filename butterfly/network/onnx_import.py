"""Import a CNN from ONNX: the graph becomes the core's layer specs, its weights copied.

    net = bf.import_onnx("mobilenetv2.onnx")                 # the input shape from the graph
    net = bf.import_onnx("model.onnx", input_shape=(3, 224, 224))  # or given (dynamic sizes)

Opset 13 and later.  Each node maps to a layer type of the core (SUPPORTED_OPS lists them);
constant subgraphs -- the shape arithmetic an exporter writes for a dynamic batch (Shape ->
Gather -> Unsqueeze -> Concat -> Reshape), Constant nodes, initializers -- are folded for the
given input shape.  A few patterns are fused: x * sigmoid(x) is one swish layer, a Pad before
a Conv becomes the conv's padding, MatMul (+ Add) a linear layer, and an Add / Sub / Mul / Div
of a tensor by a constant (scalar or per channel) a depthwise 1x1 conv.  Anything else
raises :class:`butterfly.UnsupportedError` naming the node, its op and the supported ops; a
malformed or hostile file raises :class:`butterfly.ModelError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _C
from .layers import LayerList
from .network import Network

MIN_OPSET = 13
MAX_NODES = 100_000
MAX_CONST_ELEMENTS = 1 << 28  # 1 GiB of float32: a declared size past it is refused

SUPPORTED_OPS = (
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv",
    "ConvTranspose", "Div", "Dropout", "Expand", "Flatten", "Gather", "Gemm",
    "GlobalAveragePool",
    "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "MatMul", "MaxPool", "Mul", "Pad",
    "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Squeeze", "Sub",
    "Unsqueeze",
)

_FLT_MAX = float(np.finfo(np.float32).max)

# Layer types whose output has the rank of their input whatever it is: the core's table's
# types that take a flat (N, C) input, less linear, which makes (N, C) of any input
_KEEP_RANK = {name for name, t in _C.layer_types().items() if t["flat_ok"]} - {"linear"}


def _resolve(dims: list[int], n: int) -> list[int]:
    """Reshape dims (0 and -1 not copied from a batch) with one -1 resolved for n elements."""
    if dims.count(-1) == 1:
        known = int(np.prod([d for d in dims if d != -1]))
        return [n // known if d == -1 and known > 0 else d for d in dims]
    return dims


def _unsupported(node, why: str):
    return _C.UnsupportedError(f"node '{node.name or node.output[0]}' ({node.op_type}): {why}")


def _model_error(why: str):
    return _C.ModelError(f"ONNX model: {why}")


@dataclass
class _Act:
    """A tensor computed by the network: a layer's output of shape (C, H, W) per sample;
    flat: it went through Flatten / Reshape to (N, C*H*W) (only a Gemm / MatMul may read it
    then, unless H = W = 1)."""

    layer: int
    flat: bool = False


class _Importer:
    def __init__(self, model, input_shape):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.nh = numpy_helper
        self.model = model
        self.graph = model.graph
        self.values: dict[str, Any] = {}  # name -> np.ndarray (constant) or _Act
        self.names: set[str] = set()
        self._check_opset()
        self._read_initializers()
        self.L = LayerList(self._input_shape(input_shape))
        self.values[self.input_name] = _Act(0)
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.skip: set[int] = set()  # ids of nodes fused into a later one
        self.pending_pad: dict[str, list[int]] = {}  # a Pad's output -> its H, W padding

    # -- graph-level checks ------------------------------------------------------------------

    def _check_opset(self):
        opsets = {o.domain or "ai.onnx": o.version for o in self.model.opset_import}
        v = opsets.get("ai.onnx")
        if v is None:
            raise _model_error("no default-domain opset import")
        if v < MIN_OPSET:
            raise _C.UnsupportedError(f"ONNX opset {v}: butterfly imports opset {MIN_OPSET} "
                                      f"and later (onnx.version_converter.convert_version "
                                      f"upgrades it)")
        if len(self.graph.node) > MAX_NODES:
            raise _model_error(f"{len(self.graph.node)} nodes (at most {MAX_NODES})")

    def _tensor(self, t) -> np.ndarray:
        n = 1
        for d in t.dims:
            if d < 0:
                raise _model_error(f"tensor '{t.name}' has a negative dimension")
            n *= d
        if n > MAX_CONST_ELEMENTS:
            raise _model_error(f"tensor '{t.name}' declares {n} elements")
        if t.data_location == self.onnx.TensorProto.EXTERNAL:
            raise _C.UnsupportedError(f"tensor '{t.name}' keeps its data in an external "
                                      f"file: load the model with onnx.load(path) (which "
                                      f"reads it) and pass the ModelProto")
        try:
            a = self.nh.to_array(t)
        except Exception as e:  # noqa: BLE001  (a size that disagrees with the data, a type)
            raise _model_error(f"tensor '{t.name}' cannot be read: {e}") from None
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
            if not np.all(np.isfinite(a)):
                raise _C.NumericError(f"ONNX tensor '{t.name}' holds a NaN or Inf")
        return a

    def _read_initializers(self):
        for t in self.graph.initializer:
            self.values[t.name] = self._tensor(t)

    def _input_shape(self, given):
        inputs = [i for i in self.graph.input if i.name not in self.values]
        if len(inputs) != 1:
            raise _C.UnsupportedError(f"the graph has {len(inputs)} inputs "
                                      f"({', '.join(i.name for i in inputs)}); butterfly "
                                      f"imports networks of one image input")
        inp = inputs[0]
        self.input_name = inp.name
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if tt.elem_type not in (0, self.onnx.TensorProto.FLOAT):
            raise _C.UnsupportedError(f"input '{inp.name}' is not float32")
        if given is not None:
            given = tuple(int(d) for d in given)
            if len(given) != 3 or min(given) < 1:
                raise _C.InvalidArgument(f"input_shape must be (C, H, W), not {given}")
            if len(dims) == 4 and any(d is not None and d > 0 and d != g
                                      for d, g in zip(dims[1:], given)):
                raise _C.InvalidArgument(f"input_shape {given} disagrees with the graph's "
                                         f"input {dims}")
            return given
        if len(dims) != 4 or any(d is None or d <= 0 for d in dims[1:]):
            raise _C.InvalidArgument(f"input '{inp.name}' has shape {dims}: give "
                                     f"input_shape=(C, H, W) for its dynamic sizes")
        return tuple(dims[1:])

    # -- helpers -----------------------------------------------------------------------------

    def name(self, node) -> str:
        base = (node.name or node.output[0] or node.op_type)[:60]
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base[:56]}#{k}"
        self.names.add(name)
        return name

    def get(self, node, k: int):
        if k >= len(node.input) or node.input[k] == "":
            return None
        name = node.input[k]
        if name not in self.values:
            raise _model_error(f"node '{node.name}' ({node.op_type}) reads '{name}', which no "
                               f"earlier node or initializer defines (missing input or cycle)")
        return self.values[name]

    def const(self, node, k: int, what: str) -> np.ndarray:
        v = self.get(node, k)
        if not isinstance(v, np.ndarray):
            raise _unsupported(node, f"its {what} must be a constant (an initializer)")
        return v

    def act(self, node, k: int = 0) -> _Act:
        v = self.get(node, k)
        if not isinstance(v, _Act):
            raise _unsupported(node, f"input {k} is a constant where a tensor of the network "
                                     f"is expected")
        if v.flat and self.shape(v)[1:] != (1, 1):
            raise _unsupported(node, "reads a flattened tensor; only Gemm / MatMul may")
        return v

    def shape(self, a: _Act) -> tuple[int, int, int]:
        return tuple(self.L.shapes[a.layer])

    def attrs(self, node) -> dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def out(self, node, value, k: int = 0):
        self.values[node.output[k]] = value

    def add(self, node, spec: dict, params: list | None = None, flat: bool = False) -> _Act:
        """Appends a layer; the core checks its shapes (and the parameters' against its
        own, when the model is made)."""
        spec.setdefault("name", self.name(node))
        if params is None:
            idx = self.L._add(spec)
        else:
            idx = self.L._add(spec, lambda shapes: [np.ascontiguousarray(p, np.float32)
                                                     for p in params])
        return _Act(idx, flat)

    def only_consumer(self, name: str):
        c = self.consumers.get(name, [])
        outputs = {o.name for o in self.graph.output}
        return c[0] if len(c) == 1 and name not in outputs else None

    # -- the walk ----------------------------------------------------------------------------

    def run(self):
        for node in self.graph.node:
            if id(node) in self.skip:
                continue
            if node.domain not in ("", "ai.onnx"):
                raise _unsupported(node, f"domain '{node.domain}' is not ONNX's")
            ins = [self.values.get(n) for n in node.input if n]
            if node.op_type == "Constant" or (
                    node.op_type != "Shape" and ins and all(isinstance(v, np.ndarray)
                                                            for v in ins)):
                self.fold(node)
                continue
            fn = getattr(self, "op_" + node.op_type, None)
            if fn is None:
                raise _unsupported(node, f"not supported; supported ops: "
                                         f"{', '.join(SUPPORTED_OPS)}")
            try:
                fn(node)
            except (KeyError, ValueError, IndexError, TypeError, AttributeError) as e:
                # a missing attribute, one of the wrong type or size: the file is malformed
                raise _model_error(f"node '{node.name}' ({node.op_type}) is malformed: "
                                   f"{type(e).__name__}: {str(e)[:200]}") from None
        outs = list(self.graph.output)
        if len(outs) != 1:
            raise _C.UnsupportedError(f"the graph has {len(outs)} outputs; butterfly "
                                      f"imports networks of one output")
        v = self.values.get(outs[0].name)
        if not isinstance(v, _Act):
            raise _model_error(f"output '{outs[0].name}' is not computed from the input")
        if v.layer != self.L.last:
            raise _C.UnsupportedError("the graph's output is not its last computed tensor")
        return self.L

    # -- constant folding --------------------------------------------------------------------

    def fold(self, node):
        a = self.attrs(node)
        x = [self.values.get(n) if n else None for n in node.input]
        op = node.op_type
        try:
            if op == "Constant":
                if "value" not in a:
                    raise _unsupported(node, "only a tensor 'value' is supported")
                y = self._tensor(a["value"])
            elif op in ("Identity", "Dropout"):
                y = x[0]
            elif op == "Cast":
                y = x[0].astype(self.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
            elif op == "Gather":
                y = np.take(x[0], x[1].astype(np.int64), axis=a.get("axis", 0))
            elif op == "Unsqueeze":
                y = x[0]
                for ax in sorted(int(v) % (y.ndim + len(x[1])) for v in x[1]):
                    y = np.expand_dims(y, ax)
            elif op == "Squeeze":
                y = np.squeeze(x[0], axis=tuple(int(v) for v in x[1]) if len(x) > 1 else None)
            elif op == "Concat":
                y = np.concatenate([v for v in x], axis=a["axis"])
            elif op == "Reshape":
                shape = [int(s) for s in x[1]]
                shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
                y = x[0].reshape(shape)
            elif op == "Flatten":
                ax = a.get("axis", 1)
                y = x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)
            elif op == "Slice":
                y = x[0]
                axes = x[3] if len(x) > 3 and x[3] is not None else range(len(x[1]))
                steps = x[4] if len(x) > 4 and x[4] is not None else [1] * len(x[1])
                sl = [slice(None)] * y.ndim
                for s, e, ax, st in zip(x[1], x[2], axes, steps):
                    sl[int(ax)] = slice(int(s), int(e), int(st))
                y = y[tuple(sl)]
            elif op == "Expand":
                shape = np.broadcast_shapes(x[0].shape, tuple(int(d) for d in x[1]))
                if int(np.prod(shape, dtype=np.float64)) > MAX_CONST_ELEMENTS:
                    raise _model_error(f"node '{node.name}' (Expand) makes a constant of "
                                       f"shape {shape}")
                y = np.broadcast_to(x[0], shape).copy()
            elif op in ("Add", "Sub", "Mul", "Div"):
                if op == "Div" and x[0].dtype.kind in "iu":  # ONNX truncates toward zero
                    y = np.trunc(np.divide(x[0], x[1])).astype(x[0].dtype)
                else:
                    y = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                         "Div": np.divide}[op](x[0], x[1])
            else:
                raise _unsupported(node, "constant inputs are folded for shape arithmetic "
                                         "only (Constant, Identity, Cast, Gather, Unsqueeze, "
                                         "Squeeze, Concat, Reshape, Flatten, Slice, Expand, "
                                         "Add, Sub, Mul, Div)")
        except _C.Error:
            raise
        except Exception as e:  # noqa: BLE001  (numpy on a hostile file's constants)
            raise _model_error(f"node '{node.name}' ({op}) on constants: {e}") from None
        y = np.asarray(y)
        if y.size > MAX_CONST_ELEMENTS:
            raise _model_error(f"node '{node.name}' ({op}) makes a constant of {y.size} "
                               f"elements")
        self.out(node, y)

    def op_Shape(self, node):
        v = self.get(node, 0)
        if isinstance(v, np.ndarray):
            y = np.array(v.shape, np.int64)
        else:
            c, h, w = self.shape(v)
            y = np.array([1, c * h * w] if v.flat else [1, c, h, w], np.int64)
        a = self.attrs(node)
        y = y[a.get("start", 0):a.get("end", len(y))]
        self.out(node, y)

    # -- layers ------------------------------------------------------------------------------

    def _conv_pads(self, node, a, x_shape, k, s, d):
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for i in range(2):
                out = -(-x_shape[1 + i] // s[i])
                total = max(0, (out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - x_shape[1 + i])
                lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
                pads[i], pads[2 + i] = lo, total - lo
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto != "NOTSET":
            raise _unsupported(node, f"auto_pad {auto}")
        if len(pads) != 4 or min(pads) < 0:
            raise _unsupported(node, f"pads {pads}: 2-D, non-negative")
        return pads

    def op_Pad(self, node):
        a = self.attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        x = self.act(node)
        pads = self.const(node, 1, "pads").astype(np.int64).tolist()
        value = self.get(node, 2)
        if mode != "constant" or (isinstance(value, np.ndarray) and np.any(value != 0)):
            raise _unsupported(node, "only zero padding (mode constant, value 0) is supported")
        if len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
            raise _unsupported(node, f"pads {pads}: only non-negative H, W padding")
        reader = self.only_consumer(node.output[0])
        if reader is None or reader.op_type != "Conv":
            raise _unsupported(node, "a Pad is imported only in front of a Conv, as its "
                                     "padding")
        self.pending_pad[node.output[0]] = [pads[2], pads[3], pads[6], pads[7]]
        self.out(node, x)

    def _conv_inputs(self, node):
        """(attributes, input, 2-D weight, bias or None) of a Conv / ConvTranspose."""
        x = self.act(node)
        w = self.const(node, 1, "weight")
        b = self.get(node, 2)
        if b is not None and not isinstance(b, np.ndarray):
            raise _unsupported(node, "its bias must be a constant")
        if w.ndim != 4:
            raise _unsupported(node, f"a {w.ndim - 2}-D convolution; only 2-D is supported")
        return self.attrs(node), x, w, b

    def op_Conv(self, node):
        extra = self.pending_pad.pop(node.input[0], None)
        a, x, w, b = self._conv_inputs(node)
        c, h, wd = self.shape(x)
        k = list(a.get("kernel_shape", w.shape[2:]))
        s = list(a.get("strides", [1, 1]))
        d = list(a.get("dilations", [1, 1]))
        g = int(a.get("group", 1))
        if k != list(w.shape[2:]) or len(s) != 2 or len(d) != 2:
            raise _unsupported(node, "kernel_shape, strides and dilations must be 2-D and "
                                     "agree with the weight")
        if w.shape[1] * g != c:
            raise _model_error(f"node '{node.name}' (Conv): weight {w.shape} with group {g} "
                               f"does not fit {c} input channels")
        pads = self._conv_pads(node, a, (c, h, wd), k, s, d)
        if extra is not None:
            pads = [p + e for p, e in zip(pads, extra)]
        spec = {"type": "conv", "inputs": [x.layer], "out_channels": int(w.shape[0]),
                "kernel": k, "stride": s, "pad": pads[:2], "pad_end": pads[2:],
                "dilation": d, "groups": g, "bias": b is not None}
        params = [w] + ([b] if b is not None else [])
        self.out(node, self.add(node, spec, params))

    def op_ConvTranspose(self, node):
        a, x, w, b = self._conv_inputs(node)
        c = self.shape(x)[0]
        g = int(a.get("group", 1))
        if w.shape[0] != c:
            raise _model_error(f"node '{node.name}' (ConvTranspose): weight {w.shape} does not "
                               f"fit {c} input channels")
        if "output_shape" in a or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _unsupported(node, "output_shape / auto_pad: give explicit pads")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise _unsupported(node, f"asymmetric pads {pads}")
        cg, og = c // g, w.shape[1]
        # ONNX (C_in, C_out / g, kh, kw) -> the core's (C_out, C_in / g, kh, kw)
        ours = w.reshape(g, cg, og, *w.shape[2:]).transpose(0, 2, 1, 3, 4).reshape(
            g * og, cg, *w.shape[2:])
        spec = {"type": "deconv", "inputs": [x.layer], "out_channels": int(g * og),
                "kernel": list(w.shape[2:]), "stride": list(a.get("strides", [1, 1])),
                "pad": pads[:2], "dilation": list(a.get("dilations", [1, 1])), "groups": g,
                "output_pad": list(a.get("output_padding", [0, 0])), "bias": b is not None}
        self.out(node, self.add(node, spec, [ours] + ([b] if b is not None else [])))

    def op_BatchNormalization(self, node):
        a = self.attrs(node)
        if a.get("training_mode", 0):
            raise _unsupported(node, "training_mode=1; export the model in eval mode")
        x = self.act(node)
        p = [self.const(node, k, n) for k, n in
             ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var"))]
        spec = {"type": "batchnorm", "inputs": [x.layer], "eps": float(a.get("epsilon", 1e-5)),
                "momentum": 0.1}
        self.out(node, self.add(node, spec, p))

    def _act(self, node, kind, **kw):
        x = self.act(node)
        self.out(node, self.add(node, {"type": kind, "inputs": [x.layer], **kw}, flat=x.flat))

    def op_Relu(self, node):
        self._act(node, "relu")

    def op_Sigmoid(self, node):
        reader = self.only_consumer(node.output[0])
        if (reader is not None and reader.op_type == "Mul"
                and node.input[0] in reader.input and node.output[0] in reader.input):
            self.skip.add(id(reader))  # x * sigmoid(x): one swish layer
            x = self.act(node)
            self.values[reader.output[0]] = self.add(reader, {"type": "swish",
                                                              "inputs": [x.layer]}, flat=x.flat)
            return
        self._act(node, "sigmoid")

    def op_HardSigmoid(self, node):
        a = self.attrs(node)
        self._act(node, "hardsigmoid", alpha=float(a.get("alpha", 0.2)),
                  beta=float(a.get("beta", 0.5)))

    def op_HardSwish(self, node):
        self._act(node, "hardswish")

    def op_LeakyRelu(self, node):
        self._act(node, "leaky_relu", alpha=float(self.attrs(node).get("alpha", 0.01)))

    def op_Clip(self, node):
        lo = self.get(node, 1)
        hi = self.get(node, 2)
        for v, what in ((lo, "min"), (hi, "max")):
            if v is not None and (not isinstance(v, np.ndarray) or v.size != 1):
                raise _unsupported(node, f"its {what} must be a constant scalar")
        lo = -np.inf if lo is None else float(lo.reshape(()))
        hi = np.inf if hi is None else float(hi.reshape(()))
        if lo == 0 and hi == 6:
            return self._act(node, "relu6")
        if lo == 0 and hi == np.inf:
            return self._act(node, "relu")
        self._act(node, "clip", alpha=max(lo, -_FLT_MAX), beta=min(hi, _FLT_MAX))

    def op_Identity(self, node):
        self.out(node, self.get(node, 0))

    op_Dropout = op_Identity

    def _per_channel(self, x: _Act, k: np.ndarray) -> np.ndarray | None:
        """A constant as one value per channel of x (a scalar broadcast), or None when it
        broadcasts otherwise: (C, 1, 1) / (1, C, 1, 1) for an (N, C, H, W) tensor, (C,) /
        (1, C) for a flattened one."""
        c = self.shape(x)[0]
        k = np.asarray(k, np.float32)
        if k.size == 1:
            return np.full(c, k.reshape(()), np.float32)
        ok = ((c,), (1, c)) if x.flat else ((c, 1, 1), (1, c, 1, 1))
        return k.reshape(c) if k.shape in ok else None

    def _binary_const(self, node, x: _Act, k: np.ndarray, op: str):
        """x (op) constant, per channel or scalar: a depthwise 1x1 conv with bias."""
        c = self.shape(x)[0]
        kk = self._per_channel(x, k)
        if kk is None:
            raise _unsupported(node, f"{op} by a constant of shape {k.shape}: only a scalar "
                                     f"or one value per channel")
        if op == "Div" and np.any(kk == 0):
            raise _unsupported(node, "division by a zero constant")
        w = {"Mul": kk, "Div": (1.0 / kk) if op == "Div" else None}.get(op)
        w = np.ones(c, np.float32) if w is None else w.astype(np.float32)
        b = {"Add": kk, "Sub": -kk}.get(op, np.zeros(c, np.float32))
        spec = {"type": "conv", "inputs": [x.layer], "out_channels": c, "kernel": [1, 1],
                "stride": [1, 1], "pad": [0, 0], "groups": c, "bias": True}
        self.out(node, self.add(node, spec, [w.reshape(c, 1, 1, 1), b], flat=x.flat))

    def _binary(self, node, op: str):
        u, v = self.get(node, 0), self.get(node, 1)
        if u is None or v is None:
            raise _model_error(f"node '{node.name}' ({op}) misses an input")
        ku, kv = 0, 1
        if isinstance(u, np.ndarray) and op in ("Add", "Mul"):
            u, v, ku, kv = v, u, 1, 0  # the constant second
        if isinstance(u, np.ndarray):
            raise _unsupported(node, "a constant minus / divided by a tensor")
        x = self.act(node, ku)
        if isinstance(v, np.ndarray):
            if op == "Add" and self._fold_bias(node, x, v):
                return
            return self._binary_const(node, x, v, op)
        y = self.act(node, kv)
        if op == "Add":
            if self.shape(x) != self.shape(y):
                raise _unsupported(node, f"Add of {self.shape(x)} and {self.shape(y)}: only "
                                         f"tensors of one shape")
            spec = {"type": "add", "inputs": [x.layer, y.layer]}
        elif op == "Mul":
            if self.shape(x)[1:] == (1, 1) and self.shape(y)[1:] != (1, 1):
                x, y = y, x  # the per-channel factor second
            spec = {"type": "mul", "inputs": [x.layer, y.layer]}
        else:
            raise _unsupported(node, f"{op} of two tensors")
        self.out(node, self.add(node, spec, flat=x.flat and y.flat))

    def _fold_bias(self, node, x: _Act, k: np.ndarray) -> bool:
        """Add of a constant to a linear / conv output read by this Add alone: into its bias."""
        spec = self.L.layers[x.layer]
        if spec["type"] not in ("linear", "conv") or x.layer != self.L.last:
            return False
        if any(x.layer in s.get("inputs", []) for s in self.L.layers[x.layer + 1:]):
            return False
        c = self.shape(x)[0]
        kk = self._per_channel(x, k)
        if kk is None:
            return False
        params = self.L.params[x.layer]
        if not spec.get("bias"):
            spec["bias"] = True
            params.append(np.zeros(c, np.float32))
        params[1] = (params[1] + kk).astype(np.float32)
        self.out(node, x)
        return True

    def op_Add(self, node):
        self._binary(node, "Add")

    def op_Sub(self, node):
        self._binary(node, "Sub")

    def op_Mul(self, node):
        self._binary(node, "Mul")

    def op_Div(self, node):
        self._binary(node, "Div")

    def op_Concat(self, node):
        a = self.attrs(node)
        xs = [self.act(node, k) for k in range(len(node.input))]
        rank = 4
        if a.get("axis") not in (1, 1 - rank):
            raise _unsupported(node, f"axis {a.get('axis')}: only channels (1)")
        if len(xs) == 1:
            return self.out(node, xs[0])
        self.out(node, self.add(node, {"type": "concat", "inputs": [x.layer for x in xs]}))

    def _pool(self, node, kind):
        a = self.attrs(node)
        x = self.act(node)
        c, h, w = self.shape(x)
        k = list(a["kernel_shape"])
        s = list(a.get("strides", [1, 1]))
        if list(a.get("dilations", [1, 1])) != [1, 1] or len(k) != 2:
            raise _unsupported(node, "only 2-D pooling without dilation")
        pads = self._conv_pads(node, a, (c, h, w), k, s, [1, 1])
        if kind == "avgpool" and a.get("count_include_pad", 0) and any(pads):
            raise _unsupported(node, "count_include_pad=1 with padding (the core's average "
                                     "excludes padding)")
        if a.get("ceil_mode", 0):
            for i, size in enumerate((h, w)):
                room = size + pads[i] + pads[2 + i] - k[i]
                pads[2 + i] += (-room) % s[i]  # floor of the larger size == ceil
        spec = {"type": kind, "inputs": [x.layer], "kernel": k, "stride": s,
                "pad": pads[:2], "pad_end": pads[2:]}
        self.out(node, self.add(node, spec))

    def op_MaxPool(self, node):
        if len(node.output) > 1 and node.output[1]:
            raise _unsupported(node, "the Indices output")
        self._pool(node, "maxpool")

    def op_AveragePool(self, node):
        self._pool(node, "avgpool")

    def op_GlobalAveragePool(self, node):
        x = self.act(node)
        self.out(node, self.add(node, {"type": "global_avgpool", "inputs": [x.layer]}))

    def op_ReduceMean(self, node):
        a = self.attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = self.const(node, 1, "axes").tolist()
        if sorted(int(v) % 4 for v in (axes or [])) != [2, 3]:
            raise _unsupported(node, f"axes {axes}: only the mean over H, W")
        x = self.act(node)
        self.out(node, self.add(node, {"type": "global_avgpool", "inputs": [x.layer]},
                                flat=not a.get("keepdims", 1)))

    def _flatten(self, node):
        v = self.get(node, 0)
        if not isinstance(v, _Act):
            raise _model_error(f"node '{node.name}' reads an undefined tensor")
        self.out(node, _Act(v.layer, flat=True))

    def op_Flatten(self, node):
        if self.attrs(node).get("axis", 1) != 1:
            raise _unsupported(node, "only axis 1 (keep the batch)")
        self._flatten(node)

    def op_Reshape(self, node):
        x = self.get(node, 0)
        if not isinstance(x, _Act):
            raise _model_error(f"node '{node.name}' reads an undefined tensor")
        shape = [int(s) for s in self.const(node, 1, "shape")]
        c, h, w = self.shape(x)
        n = c * h * w
        if len(shape) == 2 and shape[0] in (-1, 0, 1) and shape[1] in (-1, n):
            return self._flatten(node)
        if len(shape) == 4 and shape[0] in (-1, 0, 1) and _resolve(shape[1:], n) == [c, h, w]:
            return self.out(node, self._unflatten(node, x) if x.flat else x)
        raise _unsupported(node, f"reshape of ({c}, {h}, {w}) to {shape}: only a flatten to "
                                 f"(N, {n}) before the classifier, or a (N, C) back to "
                                 f"(N, C, 1, 1)")

    def _unflatten(self, node, x: _Act) -> _Act:
        """A flat (N, C) tensor back to (N, C, 1, 1), as squeeze-and-excitation with linear
        layers does (pool -> flatten -> Gemm -> ... -> reshape -> Mul).  The core holds a
        linear layer's output as (N, C); its 4-D readers (conv, pool, mul, concat) need
        (N, C, 1, 1): every linear layer that made this tensor becomes the 1x1 convolution
        it equals on a 1x1 feature, and the element-wise layers between keep the rank of
        their input."""
        todo, seen = [x.layer], set()
        while todo:
            j = todo.pop()
            if j in seen:
                continue
            seen.add(j)
            spec = self.L.layers[j]
            if spec["type"] in _KEEP_RANK:
                todo.extend(spec["inputs"])
            elif spec["type"] == "linear":
                src = spec["inputs"][0]
                if self.L.shapes[src][1:] != (1, 1):
                    raise _unsupported(node, f"reshapes back to 4-D the output of linear "
                                             f"layer '{spec['name']}', whose input "
                                             f"{self.L.shapes[src]} is not 1x1: only linear "
                                             f"layers over a pooled (C, 1, 1) feature can be")
                w = self.L.params[j][0]
                spec.update(type="conv", kernel=[1, 1], stride=[1, 1], pad=[0, 0],
                            dilation=[1, 1], groups=1)
                self.L.params[j][0] = np.ascontiguousarray(w.reshape(*w.shape, 1, 1))
                todo.append(src)
        return _Act(x.layer, flat=False)

    def _squeeze(self, node):
        x = self.get(node, 0)
        if not isinstance(x, _Act):
            raise _model_error(f"node '{node.name}' reads an undefined tensor")
        if self.shape(x)[1:] != (1, 1):
            raise _unsupported(node, "only of (C, 1, 1) tensors before the classifier")
        if node.op_type == "Unsqueeze" and x.flat:
            return self.out(node, self._unflatten(node, x))
        self.out(node, _Act(x.layer, flat=node.op_type == "Squeeze"))

    def op_Expand(self, node):
        """An expand of a (C, 1, 1) factor to the shape of the tensor a Mul scales with it
        (squeeze-and-excitation's expand_as): the Mul broadcasts it per channel already."""
        x = self.get(node, 0)
        if not isinstance(x, _Act):
            raise _model_error(f"node '{node.name}' reads an undefined tensor")
        target = [int(d) for d in self.const(node, 1, "shape")]
        c, h, w = self.shape(x)
        reader = self.only_consumer(node.output[0])
        if len(target) == 4 and target[1:] == [c, h, w]:
            return self.out(node, self._unflatten(node, x) if x.flat else x)
        if (len(target) == 4 and (h, w) == (1, 1) and target[1] in (1, c)
                and reader is not None and reader.op_type == "Mul"):
            return self.out(node, self._unflatten(node, x) if x.flat else x)
        raise _unsupported(node, f"expand of ({c}, {h}, {w}) to {target}: only of a (C, 1, 1) "
                                 f"factor read by a Mul")

    op_Squeeze = _squeeze
    op_Unsqueeze = _squeeze

    def _linear(self, node, w: np.ndarray, b):
        x = self.get(node, 0)
        if not isinstance(x, _Act):
            raise _unsupported(node, "input A must be the network's tensor")
        n = int(np.prod(self.shape(x)))
        if w.ndim != 2 or w.shape[1] != n:
            raise _unsupported(node, f"weight {w.shape} for {n} input features")
        b = np.zeros(w.shape[0], np.float32) if b is None else b
        spec = {"type": "linear", "inputs": [x.layer], "out_channels": int(w.shape[0]),
                "bias": True}
        self.out(node, self.add(node, spec, [w, b], flat=True))

    def op_Gemm(self, node):
        a = self.attrs(node)
        if a.get("transA", 0):
            raise _unsupported(node, "transA=1")
        w = self.const(node, 1, "B")
        w = w if a.get("transB", 0) else w.T
        w = (w * a.get("alpha", 1.0)).astype(np.float32)
        b = self.get(node, 2)
        if b is not None:
            if not isinstance(b, np.ndarray) or b.size not in (1, w.shape[0]):
                raise _unsupported(node, "C must be a constant of one value per output")
            b = (np.broadcast_to(b.reshape(-1), (w.shape[0],)) * a.get("beta", 1.0)).astype(
                np.float32)
        self._linear(node, w, b)

    def op_MatMul(self, node):
        w = self.const(node, 1, "B")
        self._linear(node, np.ascontiguousarray(w.T), None)

    def op_Softmax(self, node):
        x = self.get(node, 0)
        if not isinstance(x, _Act) or self.shape(x)[1:] != (1, 1):
            raise _unsupported(node, "only over the classes of a (N, K) tensor")
        axis = self.attrs(node).get("axis", -1)
        if axis not in (1, -1):
            raise _unsupported(node, f"axis {axis}")
        self.out(node, self.add(node, {"type": "softmax", "inputs": [x.layer]}, flat=x.flat))


def import_onnx(model, input_shape=None, name: str | None = None):
    """A :class:`butterfly.Network` from an ONNX model: a path, the file's bytes or an
    ``onnx.ModelProto``.  input_shape (C, H, W) is needed when the graph leaves them dynamic
    (the batch may always be dynamic)."""
    import onnx


    src = "<ModelProto>"
    if isinstance(model, (str, os.PathLike)):
        src = os.fspath(model)
        if not os.path.isfile(src):
            raise _C.FileError(f"'{src}' is not a file")
        with open(src, "rb") as f:
            model = f.read()
    if isinstance(model, (bytes, bytearray, memoryview)):
        try:
            model = onnx.load_model_from_string(bytes(model))
        except Exception as e:  # noqa: BLE001  (protobuf's DecodeError and others)
            raise _model_error(f"'{src}' is not a readable ONNX file ({type(e).__name__}: "
                               f"{str(e)[:200]})") from None
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be a path, bytes or an onnx.ModelProto, not "
                        f"{type(model).__name__}")
    L = _Importer(model, input_shape).run()
    meta = {"source": "onnx", "onnx_producer": model.producer_name,
            "name": name or (os.path.basename(src) if src != "<ModelProto>" else "onnx")}
    config = {"arch": "onnx", "input_size": L.shapes[0][1], "in_channels": L.shapes[0][0],
              "num_classes": L.shapes[-1][0]}
    return Network.from_layers(L.layers, L.params, config=config, meta=meta)


# --- command line -----------------------------------------------------------------------

def _cli_import(args) -> int:
    shape = tuple(args.input_shape) if args.input_shape else None
    net = import_onnx(args.model, input_shape=shape)
    net.save(args.output)
    s = net.summary()
    print(f"{args.model}: {s['layers']} layers, {s['params']:,} parameters, "
          f"{s['macs'] / 1e6:.1f} M MACs per image, input {net.input_shape} -> {args.output}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("import", help="import an ONNX CNN as a butterfly model file")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("-o", "--output", required=True, help="the .bfly file to write")
    p.add_argument("--input-shape", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="the input's channels and size, where the graph leaves them dynamic")
    p.set_defaults(func=_cli_import)
