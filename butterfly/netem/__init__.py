"""Emulated radio links, measured for real: two network namespaces joined by a veth pair, the
phone's uplink shaped (see :mod:`butterfly.netem.links`); the programs that run inside them
live in :mod:`butterfly.netem.programs`."""

from .links import Link, available, measure, round_trip_ms, sh, transfer_seconds
from .trace import UPLINK_MBPS, Phase, Trace, TracePlayer, set_serializer_rate

__all__ = ["UPLINK_MBPS", "Link", "Phase", "Trace", "TracePlayer", "available", "measure",
           "round_trip_ms", "set_serializer_rate", "sh", "transfer_seconds"]
