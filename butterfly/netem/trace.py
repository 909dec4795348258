"""A link whose rate follows a schedule: the trace, and the player that applies it.

    >>> trace = Trace([(0, "wifi"), (10, "4g"), (20, "3g"), (30, "wifi")], duration=40)
    >>> trace = Trace.from_csv("uplink.csv")          # lines "seconds,Mbit/s"
    >>> with Link(rate_mbit=trace.rate_at(0)) as link, link.follow(trace) as player:
    ...     ...                                       # traffic runs; the rate changes under it

A rate is Mbit/s or the name of a radio (UPLINK_MBPS: the paper's measured 3G / 4G / Wi-Fi
uplinks, which the cost model's networks use too).  The player changes the tbf of the
phone's uplink in place (``tc qdisc change``: packets queued at the change are kept) and the
rate of every serializer it was given, at t0 + each phase's start on CLOCK_MONOTONIC, which
every process of the machine shares, namespaces or not.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import _C

# Uplink bandwidths of the paper's networks (Mbit/s); costmodel.networks reads them here.
UPLINK_MBPS = {"3g": 1.1, "4g": 5.85, "wifi": 18.88}
MAX_PHASES = 10_000


@dataclass(frozen=True)
class Phase:
    """One stretch of a trace: [start, end) seconds at `mbps`; name as the trace gave it."""

    start: float
    end: float
    mbps: float
    name: str


def _rate(value, rates: dict) -> tuple[float, str]:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in rates:
            return float(rates[key]), key
        try:
            value = float(key)
        except ValueError:
            raise _C.InvalidArgument(f"unknown link {value!r}: a rate in Mbit/s or one of "
                                     f"{', '.join(rates)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise _C.InvalidArgument(f"a link rate must be a finite number of Mbit/s > 0, not "
                                 f"{value!r}")
    return float(value), f"{value:g} Mbit/s"


class Trace:
    """Phases of an uplink rate: points (t seconds, rate) in increasing t from 0; each rate
    holds until the next point, the last one until `duration` (default: as long as the
    phase before it)."""

    def __init__(self, points, duration: float | None = None, rates: dict | None = None):
        rates = UPLINK_MBPS if rates is None else rates
        points = list(points)
        if not points:
            raise _C.InvalidArgument("a trace needs at least one (seconds, rate) point")
        if len(points) > MAX_PHASES:
            raise _C.InvalidArgument(f"a trace of {len(points)} points: at most {MAX_PHASES}")
        starts, rated = [], []
        for p in points:
            try:
                t, r = p
                t = float(t)
            except (TypeError, ValueError):
                raise _C.InvalidArgument(f"a trace point is (seconds, rate), not {p!r}") from None
            if not math.isfinite(t) or t < 0 or (starts and t <= starts[-1]):
                raise _C.InvalidArgument(f"trace times must start at 0 and increase: {t!r}")
            starts.append(t)
            rated.append(_rate(r, rates))
        if starts[0] != 0:
            raise _C.InvalidArgument(f"a trace starts at 0 s, not {starts[0]:g}")
        if duration is None:
            if len(starts) < 2:
                raise _C.InvalidArgument("a trace of one point needs its duration")
            duration = starts[-1] + (starts[-1] - starts[-2])
        duration = float(duration)
        if not math.isfinite(duration) or duration <= starts[-1]:
            raise _C.InvalidArgument(f"the trace's duration ({duration:g} s) must come after "
                                     f"its last point ({starts[-1]:g} s)")
        ends = starts[1:] + [duration]
        self.phases = [Phase(s, e, mbps, name)
                       for s, e, (mbps, name) in zip(starts, ends, rated)]
        self.duration = duration

    @classmethod
    def from_csv(cls, path, duration: float | None = None) -> Trace:
        """A trace from a CSV file of "seconds,Mbit/s" rows (a header row is skipped)."""
        path = Path(path)
        try:
            with path.open(newline="") as f:
                rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
        except OSError as e:
            raise _C.FileError(f"{path}: {e.strerror}") from None
        except (UnicodeDecodeError, csv.Error) as e:
            raise _C.InvalidArgument(f"{path}: not a CSV of seconds,Mbit/s: {e}") from None
        if rows:
            try:
                float(rows[0][0])
            except ValueError:
                rows = rows[1:]  # a header
        if any(len(r) < 2 for r in rows):
            raise _C.InvalidArgument(f"{path}: each row is seconds,Mbit/s")
        return cls([(r[0], r[1].strip()) for r in rows], duration)

    def phase_at(self, t: float) -> Phase:
        """The phase holding at t seconds (the last one past the end)."""
        for p in self.phases:
            if t < p.end:
                return p
        return self.phases[-1]

    def rate_at(self, t: float) -> float:
        return self.phase_at(t).mbps

    def __len__(self) -> int:
        return len(self.phases)

    def __repr__(self) -> str:
        return "Trace([" + ", ".join(f"({p.start:g}, {p.mbps:g})" for p in self.phases) + \
            f"], duration={self.duration:g})"


class TracePlayer:
    """Applies a trace to a link from t0 (CLOCK_MONOTONIC seconds; default: now) in a thread:
    each phase's rate goes to the link's tbf and to every serializer in `serializers`.
    `applied` lists (seconds after t0 when applied, Mbit/s) per change.  A context manager:
    leaving it stops the thread (the link keeps its last rate)."""

    def __init__(self, link, trace: Trace, serializers=(), t0: float | None = None):
        self.link = link
        self.trace = trace
        self.serializers = list(serializers)
        self.t0 = time.monotonic() if t0 is None else t0
        self.applied: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _apply(self, mbps: float) -> None:
        self.link.set_rate(mbps)
        for p in self.serializers:
            set_serializer_rate(p, mbps)
        self.applied.append((time.monotonic() - self.t0, mbps))

    def _run(self) -> None:
        for phase in self.trace.phases:
            if self._stop.wait(max(0.0, self.t0 + phase.start - time.monotonic())):
                return
            try:
                self._apply(phase.mbps)
            except (RuntimeError, OSError) as e:  # a failed tc / a dead serializer: said
                self.errors.append(f"{phase.start:g} s: {e}")

    def start(self) -> TracePlayer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> TracePlayer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def set_serializer_rate(proc, mbps: float) -> None:
    """Tells a running serializer (started with stdin=PIPE) its new uplink rate."""
    proc.stdin.write(f"rate {mbps}\n")
    proc.stdin.flush()
