"""The payload: the 8-bit feature a phone uploads, its checks and its size as sent."""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

from .. import _C

RANGE_BYTES = 8  # each image's (min, max) float32 pair travels with its 8-bit feature


def bytes_per_image(feature_bytes: int) -> int:
    """Bytes one image uploads: its 8-bit feature and its (min, max) pair."""
    return int(feature_bytes) + RANGE_BYTES


ZSTD_LEVEL = 3  # what the C client uses (csrc/serve/client.c)


def payload_arrays(payload, shape: tuple[int, int, int] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(data, ranges) of a Payload or a (data, ranges) pair, checked: data uint8 (N, C, H, W)
    with N >= 1 (a float array is refused, not cast), or one (C, H, W); its (C, H, W) equal
    to `shape` when given; ranges (N, 2) float32.  Both contiguous."""
    try:
        data, ranges = payload
    except (TypeError, ValueError):
        raise _C.InvalidArgument("payload must be a Payload or a (data, ranges) pair") from None
    data = np.asarray(data)
    if data.dtype != np.uint8:
        raise _C.InvalidArgument(f"payload data must be uint8 (the quantized feature), not "
                                 f"{data.dtype}")
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4 or (shape is not None and tuple(data.shape[1:]) != shape):
        raise _C.InvalidArgument(f"payload must have shape (N, {shape or 'C, H, W'}), not "
                                 f"{data.shape}")
    if len(data) == 0:
        raise _C.InvalidArgument("payload is empty: it needs N >= 1 samples")
    try:
        ranges = np.asarray(ranges, dtype=np.float32)
    except (TypeError, ValueError) as e:  # strings, ragged lists
        raise _C.InvalidArgument(f"ranges must be numbers, (N, 2) (min, max) per sample: "
                                 f"{e}") from None
    if ranges.size != 2 * len(data):
        raise _C.InvalidArgument(f"ranges must be ({len(data)}, 2), not {ranges.shape}")
    return np.ascontiguousarray(data), np.ascontiguousarray(ranges.reshape(len(data), 2))


class Payload(NamedTuple):
    """The 8-bit feature a phone uploads: data (N, C', H', W') uint8 + ranges (N, 2) float32
    holding each sample's (min, max)."""

    data: np.ndarray
    ranges: np.ndarray

    @property
    def nbytes_per_sample(self) -> int:
        """Bytes one image uploads: the payload plus its two float32 range values (from the
        data's shape, so an empty batch has a size per sample too)."""
        data = np.asarray(self.data)
        if data.ndim < 1:
            raise _C.InvalidArgument(f"payload data must be (N, C, H, W), not {data.shape}")
        return bytes_per_image(np.prod(data.shape[1:], dtype=np.int64) * data.itemsize)

    def __len__(self) -> int:
        return len(self.data)


def zstd_size(data: bytes, level: int = ZSTD_LEVEL) -> int:
    """Bytes of one zstd frame of `data`: the codec and level the C client uses."""
    return len(_C.payload_encode(bytes(data), "zstd", level))


def coded_sizes(payload) -> dict[str, float]:
    """Mean bytes per image of a Payload as sent: raw, zstd (level 3) and zlib/deflate (level
    9), each with its (min, max) pair (:func:`bytes_per_image`)."""
    data = np.asarray(payload[0])
    raw, zs, zl = [], [], []
    for img in data:
        b = np.ascontiguousarray(img).tobytes()
        raw.append(bytes_per_image(len(b)))
        zs.append(bytes_per_image(zstd_size(b)))
        zl.append(bytes_per_image(len(zlib.compress(b, 9))))
    return {"raw": float(np.mean(raw)), "zstd": float(np.mean(zs)), "zlib": float(np.mean(zl)),
            "zero_fraction": float(np.mean(data == 0))}
