"""Emulated radio links, measured for real: two network namespaces joined by a veth pair, the
phone's uplink shaped (see :mod:`butterfly.netem.links`); the programs that run inside them
live in :mod:`butterfly.netem.programs`."""

from .links import Link, available, measure, round_trip_ms, sh, transfer_seconds

__all__ = ["Link", "available", "measure", "round_trip_ms", "sh", "transfer_seconds"]
