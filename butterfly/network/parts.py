"""The four parts of a butterfly network and the halves a deployment runs.

Every layer is tagged with one part, in this order (``bf_part`` in butterfly.h):
head (phone), reduce (phone: the reduction unit, ends with the quantizer), restore (cloud:
the restoration unit, starts with the dequantizer), tail (cloud).  A half names a range of
parts: "mobile" = head..reduce, "cloud" = restore..tail, "all" = head..tail.  The split point
of a network, where the unit sits, is named ``at`` everywhere (a layer's name, "RB<k>" for a
ResNet's residual block k, or the block number).
"""

from __future__ import annotations

from .. import _C

PARTS = ("head", "reduce", "restore", "tail")
HEAD, REDUCE, RESTORE, TAIL = range(4)
MOBILE_PARTS = PARTS[HEAD:REDUCE + 1]
CLOUD_PARTS = PARTS[RESTORE:TAIL + 1]
HALVES = {"all": (HEAD, TAIL), "mobile": (HEAD, REDUCE), "cloud": (RESTORE, TAIL)}


def part_id(name: str) -> int:
    """The number of a part given by name ("head" ... "tail")."""
    if name not in PARTS:
        raise _C.InvalidArgument(f"unknown part {name!r}; choose one of {', '.join(PARTS)}")
    return PARTS.index(name)


def half_range(half: str) -> tuple[int, int]:
    """(first part, last part) of a half: "all", "mobile" or "cloud"."""
    if half not in HALVES:
        raise _C.InvalidArgument(f"unknown part {half!r}; choose one of "
                                 f"{', '.join(HALVES)}")
    return HALVES[half]
