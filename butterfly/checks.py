"""Argument checks shared by every layer of the package: one rule, one message."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _C


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


def check_quantity(name: str, value: Any, positive: bool = False) -> None:
    """Refuses a value that is not a finite real number > 0 (positive) or >= 0: NaN, inf and
    negative sizes, times, rates and powers would give meaningless costs further on."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__} {value!r}")
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"not {value!r}")
