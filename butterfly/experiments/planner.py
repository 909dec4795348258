"""Choosing where to split: offline (plan) and at run time (BandwidthEstimator + Switcher).

The paper's procedure: among trained candidates (split point j, c', s), drop those more than
accuracy_budget below the plain network, keep per split point the smallest upload, then pick
the split that minimizes latency or mobile energy under the cost model. Bandwidth changes move
the optimum, so the Switcher re-plans on each bandwidth estimate, with hysteresis.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..checks import check_quantity, int_arg
from .costmodel import Candidate, Cost, CostModel

OBJECTIVES = ("latency", "energy")


def _value(cost: Cost, objective: str) -> float:
    value = cost.latency_ms if objective == "latency" else cost.energy_mj
    if math.isnan(value):  # NaN: energy asked for but the phone profile has no power_w
        raise ValueError(f"{cost.name}: {objective} is undefined (phone profile without power_w)")
    return value


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def _smaller(a: Candidate, b: Candidate) -> bool:
    """a uploads less than b, or as much with a higher accuracy."""
    return (a.payload_bytes, -(a.accuracy or 0.0)) < (b.payload_bytes, -(b.accuracy or 0.0))


def select(
    candidates: Iterable[Candidate],
    accuracy_budget: float = 0.02,
    baseline_accuracy: float | None = None,
) -> list[Candidate]:
    """Per split point, the smallest-payload candidate with accuracy >= baseline - budget.

    Accuracies are fractions (0.02 = 2 points). With baseline_accuracy None no candidate is
    filtered; otherwise candidates without an accuracy are dropped. Ties on payload go to the
    more accurate one. Order follows the first appearance of each split point.
    """
    best: dict[Any, Candidate] = {}
    for c in candidates:
        if baseline_accuracy is not None and (
            c.accuracy is None or c.accuracy < baseline_accuracy - accuracy_budget - 1e-12
        ):
            continue
        kept = best.get(c.split_key)
        if kept is None or _smaller(c, kept):
            best[c.split_key] = c
    return list(best.values())


@dataclass(frozen=True)
class Plan:
    """The chosen candidate, its predicted cost, what was considered and the comparison table."""

    chosen: Candidate
    cost: Cost
    objective: str
    considered: tuple[Candidate, ...]
    table: list[dict[str, Any]]


def plan(
    candidates: Iterable[Candidate],
    model: CostModel,
    objective: str = "latency",
    accuracy_budget: float = 0.02,
    baseline_accuracy: float | None = None,
) -> Plan:
    """Picks the split minimizing `objective` ("latency" or "energy") among select()'s survivors.

    The table (CostModel.table rows for cloud-only, mobile-only and each considered candidate)
    needs model.input_bytes; without it the table is empty. Raises ValueError when no candidate
    meets the accuracy budget.
    """
    _check_objective(objective)
    candidates = list(candidates)
    considered = select(candidates, accuracy_budget, baseline_accuracy)
    if not considered:
        best = max((c.accuracy for c in candidates if c.accuracy is not None), default=None)
        raise ValueError(
            f"no candidate within {accuracy_budget} of baseline {baseline_accuracy} "
            f"(best accuracy {best}, {len(candidates)} candidates)"
        )
    costs = [model.cost(c) for c in considered]
    i = min(range(len(costs)), key=lambda k: _value(costs[k], objective))
    table = model.table(considered, None, baseline_accuracy) if model.input_bytes else []
    return Plan(considered[i], costs[i], objective, tuple(considered), table)


class BandwidthEstimator:
    """Uplink estimate in Mbit/s from measured uploads: median of the last `window` samples,
    smoothed by an EWMA with weight `smoothing` on the newest median.

    The median ignores isolated outliers (a stalled or a cached upload); the EWMA damps the
    rest. Each sample is 8 * bytes / seconds; subtract any known fixed latency from seconds
    first, or tiny uploads will look slow.
    """

    def __init__(
        self, window: int = 5, smoothing: float = 0.5, initial_mbps: float | None = None
    ) -> None:
        if window < 1 or not 0.0 < smoothing <= 1.0:
            raise ValueError("window >= 1 and 0 < smoothing <= 1 required")
        if initial_mbps is not None:
            check_quantity("initial_mbps", initial_mbps, positive=True)
        self.smoothing = smoothing
        self._samples: deque[float] = deque(maxlen=window)
        self._mbps = initial_mbps

    @property
    def mbps(self) -> float | None:
        """The current estimate; initial_mbps (maybe None) before any sample."""
        return self._mbps

    def add(self, payload_bytes: float, seconds: float) -> float:
        """Records one upload and returns the new estimate.  A sample that is not finite and
        positive is refused (ValueError) and leaves the estimate as it was."""
        check_quantity("an upload's payload_bytes", payload_bytes, positive=True)
        check_quantity("an upload's seconds", seconds, positive=True)
        sample = 8.0 * payload_bytes / seconds / 1e6
        check_quantity(f"the bandwidth of {payload_bytes} bytes in {seconds} s (Mbit/s)", sample,
                       positive=True)
        self._samples.append(sample)
        median = statistics.median(self._samples)
        if self._mbps is None:
            self._mbps = median
        else:
            self._mbps = self.smoothing * median + (1.0 - self.smoothing) * self._mbps
        return self._mbps


class Switcher:
    """Keeps the best candidate for the current bandwidth, switching only for a clear gain.

    cost_model_factory(mbps) returns the CostModel at that uplink bandwidth, e.g.
    `lambda mbps: dataclasses.replace(model, network=model.network.with_uplink(mbps))`.
    A different candidate replaces the current one when its cost is below
    (1 - margin) * the current one's, `patience` updates in a row.
    """

    def __init__(
        self,
        candidates: Iterable[Candidate],
        cost_model_factory: Callable[[float], CostModel],
        objective: str = "latency",
        accuracy_budget: float = 0.02,
        baseline_accuracy: float | None = None,
        margin: float = 0.1,
        patience: int = 1,
    ) -> None:
        _check_objective(objective)
        self.candidates: Sequence[Candidate] = select(
            candidates, accuracy_budget, baseline_accuracy
        )
        if not self.candidates:
            raise ValueError("no candidate meets the accuracy budget")
        check_quantity("margin", margin)
        if margin >= 1:
            raise ValueError(f"margin is a fraction in [0, 1), not {margin!r}")
        self.factory = cost_model_factory
        self.objective = objective
        self.margin = margin
        self.patience = int_arg("patience", patience)
        self._current: int | None = None
        self._pending: int | None = None
        self._streak = 0

    @property
    def current(self) -> Candidate | None:
        """The candidate in use; None before the first update."""
        return None if self._current is None else self.candidates[self._current]

    def update(self, mbps: float) -> Candidate:
        """Re-plans at bandwidth mbps and returns the candidate to use now."""
        model = self.factory(mbps)
        values = [_value(model.cost(c), self.objective) for c in self.candidates]
        best = min(range(len(values)), key=values.__getitem__)
        if self._current is None:
            self._current = best
        elif best == self._current or values[best] >= (1.0 - self.margin) * values[self._current]:
            self._pending, self._streak = None, 0
        else:
            self._streak = self._streak + 1 if best == self._pending else 1
            self._pending = best
            if self._streak >= self.patience:
                self._current, self._pending, self._streak = best, None, 0
        return self.candidates[self._current]
