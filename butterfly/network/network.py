"""Network: a model (layer specs + weights in the C core) and its four split ops.

``forward(x) == tail(restore(reduce(head(x)))) == cloud(mobile(x))`` bit for bit, by
construction: a plan over several parts compiles each part exactly as the plan of that part
alone (a plain-layout cut between parts, nothing fused across it), so the whole network runs
the same primitives, in the same order, as its parts run one after the other.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import numpy as np

from .. import _C
from ..checks import int_arg
from .backends import OneDNN, PlanCache
from .layers import infer_layers
from .parts import HEAD, PARTS, REDUCE, RESTORE, TAIL
from .payload import Payload, bytes_per_image, payload_arrays


def _model_description(layers, params, meta) -> bytes:
    plist = []
    for spec_params, info in zip(params, infer_layers(layers)):
        plist.append([
            {"name": n, "shape": list(p.shape),
             "data": np.ascontiguousarray(p, dtype="<f4").tobytes()}
            for (n, _), p in zip(info["param_shapes"], spec_params)
        ])
    clean = [{k: v for k, v in spec.items() if v != ""} for spec in layers]
    desc = {"format": "butterfly-model", "version": _C.MODEL_FORMAT_VERSION, "layers": clean,
            "params": plist, "meta": meta}
    return msgpack.packb(desc, use_bin_type=True)


def _decode_meta(blob: bytes | None) -> dict:
    """A model file's metadata as a dict (the core checks only that it is one msgpack
    object): ModelError when it is not readable as such, or when the keys this package
    reads have the wrong type; {} when there is none or it is not a map."""
    if not blob:
        return {}
    try:
        meta = msgpack.unpackb(blob, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        # invalid UTF-8 in a str, a map key Python cannot hold (int, list), trailing data
        raise _C.ModelError(f"the model's metadata is not readable: {e}") from None
    if not isinstance(meta, dict):
        return {}
    unit = meta.get("butterfly")
    if isinstance(unit, dict) and "after" in unit:  # files of 0.1.0 named the block "after"
        unit["block"] = unit.pop("after")
        unit.setdefault("at", unit["block"])
    for key, kind in (("config", dict), ("butterfly", dict), ("classes", list)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise _C.ModelError(f"the model's metadata: {key!r} must be a {kind.__name__}, "
                                f"not {type(meta[key]).__name__}")
    return meta


class Network:
    """A butterfly network: numpy in, numpy out.

    Build one with :func:`butterfly.resnet18` etc., or load one with :meth:`load`.
    """

    def __init__(self, model: _C.Model, backend=None):
        self.model = model
        self.backend = backend or OneDNN()
        self.plans = PlanCache(self.backend)
        self._trainer = None  # a Trainer whose weights must reach the model before inference
        self.meta: dict[str, Any] = _decode_meta(model.meta)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_layers(cls, layers, params, config=None, butterfly=None, meta=None) -> Network:
        meta = dict(meta or {})
        meta.setdefault("config", config or {})
        meta.setdefault("butterfly", butterfly)
        return cls(_C.Model(_model_description(layers, params, meta)))

    @classmethod
    def load(cls, path: str | os.PathLike, part: str = "all") -> Network:
        """Reads a model file; part = 'all', 'mobile' (head + reduce) or 'cloud'."""
        return cls(_C.Model.load(os.fspath(path), part))

    def save(self, path: str | os.PathLike) -> None:
        self.sync()
        self._sync_meta()
        self.model.save(os.fspath(path))

    def to_bytes(self) -> bytes:
        self._sync_meta()
        return self.model.to_bytes()

    def _sync_meta(self) -> None:
        self.model.set_meta(msgpack.packb(self.meta, use_bin_type=True))

    # -- description ------------------------------------------------------------------------

    @property
    def config(self) -> dict:
        return self.meta.get("config") or {}

    @property
    def butterfly(self) -> dict | None:
        return self.meta.get("butterfly")

    @property
    def hash(self) -> str:
        return self.model.hash

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.layer(0)["shape"])

    @property
    def num_classes(self) -> int:
        return self.model.info(len(self.model) - 1)["out_dims"][0]

    def has_part(self, part: int) -> bool:
        return self.model.part_range(part)[0] >= 0

    def layers(self) -> list[dict]:
        """Per layer: name, type, part, in/out dims, params, MACs and output bytes (per image)."""
        out = []
        for i in range(len(self.model)):
            spec = self.model.layer(i)
            info = self.model.info(i)
            out.append({"index": i, "name": spec["name"], "type": spec["type"],
                        "part": spec["part"], **info})
        return out

    def split_points(self) -> list[dict]:
        """Every cut where one tensor crosses, in order: {"name", "layer" (the index of the
        last layer before the cut), "shape" (C, H, W), "fp32_bytes", "macs_before",
        "macs_after"}; at a ResNet's block ends also "block" (RB<k>, 1-based).  A cut after
        layer j is one where every later layer reads only j or layers after it, so skip
        connections and squeeze-and-excitation branches lie inside a part.  The cut after
        the input (uploading the image) and after the last layer are not listed."""
        model = self.model
        n = len(model)
        last_reader = list(range(n))
        for i in range(1, n):
            for j in model.layer(i)["inputs"]:
                last_reader[j] = max(last_reader[j], i)
        macs = [model.info(i)["macs"] for i in range(n)]
        total = sum(macs)
        blocks = {idx: k for k, idx in enumerate(self.config.get("block_ends", []), start=1)}
        rows, reach, before = [], 0, 0
        for j in range(n - 1):
            before += macs[j]
            # layers before j are read up to `reach`: the cut after j needs reach <= j
            if j > 0 and reach <= j and model.layer(j)["part"] == model.layer(j + 1)["part"]:
                c, h, w = model.info(j)["out_dims"]
                row = {"name": model.layer(j)["name"], "layer": j, "shape": (c, h, w),
                       "fp32_bytes": 4 * c * h * w, "macs_before": before,
                       "macs_after": total - before}
                if j in blocks:
                    row["block"] = blocks[j]
                rows.append(row)
            reach = max(reach, last_reader[j])
        return rows

    @property
    def upload_bytes(self) -> int | None:
        """Bytes one image uploads (the 8-bit feature and its (min, max) pair); None for a
        network without a butterfly unit."""
        payload = self.summary()["payload_bytes"]
        return None if payload is None else bytes_per_image(payload)

    def summary(self) -> dict:
        layers = self.layers()
        total = sum(r["macs"] for r in layers)
        params = sum(r["params"] for r in layers)
        payload = None
        if self.has_part(REDUCE):
            q = self.model.part_range(REDUCE)[1]
            payload = self.model.info(q)["out_bytes"]
        return {"layers": len(layers), "params": params, "macs": total,
                "payload_bytes": payload}

    # -- plans ------------------------------------------------------------------------------

    def plan(self, begin: int, end: int, batch: int, training: bool = False):
        """The compiled plan of parts begin..end at this batch size (cached)."""
        return self.plans.get(self.model, begin, end, batch, training)

    def clear_plans(self) -> None:
        """Drops the compiled plans (after a change they must see, e.g. frozen layers)."""
        self.plans.clear()

    # -- training hooks -------------------------------------------------------------------

    def attach_trainer(self, trainer) -> None:
        """Makes `trainer` the one whose weights reach the model before this network runs
        (:meth:`sync`); a trainer attached before is closed first, its steps kept."""
        if self._trainer is not None and self._trainer is not trainer:
            self._trainer.close()
        self._trainer = trainer

    def detach_trainer(self, trainer=None) -> None:
        """Forgets `trainer` (None: closes whichever is attached, its steps kept)."""
        if trainer is None and self._trainer is not None:
            self._trainer.close()
        if trainer is None or self._trainer is trainer:
            self._trainer = None

    def sync(self) -> None:
        """Writes the attached trainer's weights into the model (done before every run)."""
        if self._trainer is not None:
            self._trainer.sync()

    def span(self, begin: int, end: int) -> tuple[int, int]:
        """Narrows parts [begin, end] to those that have layers (a plain net has head
        only); InvalidArgument when none has."""
        parts = [p for p in range(begin, end + 1) if self.has_part(p)]
        if not parts:
            raise _C.InvalidArgument(
                f"this network has no {'/'.join(PARTS[begin:end + 1])} layers"
                + ("" if self.butterfly else " (it has no butterfly unit)"))
        return parts[0], parts[-1]

    def _run(self, begin: int, end: int, x: np.ndarray, ranges: np.ndarray | None = None):
        self.sync()
        begin, end = self.span(begin, end)
        return self.plans.run(self.model, begin, end, x, ranges)

    def _float_input(self, x, shape: tuple[int, ...], what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise _C.InvalidArgument(f"{what} must be a float array, not {x.dtype}")
        if x.ndim == len(shape):
            x = x[None]
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            raise _C.InvalidArgument(
                f"{what} must have shape (N, {', '.join(map(str, shape))}), not {x.shape}")
        if len(x) == 0:
            raise _C.InvalidArgument(f"{what} is empty")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _feature_shape(self, layer: int) -> tuple[int, int, int]:
        return tuple(self.model.info(layer)["out_dims"])

    # -- the four ops -----------------------------------------------------------------------

    def forward(self, x) -> np.ndarray:
        """Logits (N, classes) of images x (N, C, H, W) through the whole network, the
        quantizer included."""
        x = self._float_input(x, self.input_shape, "images")
        return self._run(HEAD, TAIL, x).reshape(len(x), -1)

    __call__ = forward

    def head(self, x) -> np.ndarray:
        """The phone's first layers: images -> the feature at the split."""
        x = self._float_input(x, self.input_shape, "images")
        return self._run(HEAD, HEAD, x)

    def _unit_start(self, part: int) -> int:
        """The first layer of `part` (REDUCE or RESTORE); a plain network has neither."""
        first, _ = self.model.part_range(part)
        if first < 0:
            raise _C.InvalidArgument("this network has no butterfly unit: nothing to split")
        return first

    def reduce(self, f) -> Payload:
        """The reduction unit + 8-bit quantizer: feature -> :class:`Payload`."""
        first = self._unit_start(REDUCE)
        f = self._float_input(f, self._feature_shape(first - 1), "feature")
        return self._run(REDUCE, REDUCE, f)

    def _payload_input(self, payload) -> tuple[np.ndarray, np.ndarray]:
        first = self._unit_start(RESTORE)
        return payload_arrays(payload, self._feature_shape(first - 1))

    def restore(self, payload: Payload) -> np.ndarray:
        """Dequantize + the restoration unit: payload -> feature of the split's shape."""
        return self._run(RESTORE, RESTORE, *self._payload_input(payload))

    def tail(self, f) -> np.ndarray:
        """The cloud's remaining layers: feature -> logits (N, classes)."""
        first, _ = self.model.part_range(TAIL)
        if first < 0:
            raise _C.InvalidArgument("this network has no tail part")
        f = self._float_input(f, self._feature_shape(first - 1), "feature")
        return self._run(TAIL, TAIL, f).reshape(len(f), -1)

    def mobile(self, x) -> Payload:
        """head + reduce in one plan (what a phone runs)."""
        self._unit_start(REDUCE)
        x = self._float_input(x, self.input_shape, "images")
        return self._run(HEAD, REDUCE, x)

    def cloud(self, payload: Payload) -> np.ndarray:
        """restore + tail in one plan (what a pool worker runs): payload -> logits."""
        data, ranges = self._payload_input(payload)
        return self._run(RESTORE, TAIL, data, ranges).reshape(len(data), -1)

    def predict(self, x, k: int = 1) -> np.ndarray:
        """Top-k class indices (N, k), 1 <= k <= num_classes."""
        k = int_arg("k", k, 1, self.num_classes)
        logits = self.forward(x)
        return np.argsort(-logits, axis=1, kind="stable")[:, :k]
