"""Emulated radio links (butterfly.netem) against their nominal rate R; one JSON line.

Per rate (the paper's 3G and 4G uplinks, 1.1 and 5.85 Mbit/s): the seconds one TCP
connection takes to move n bytes over the shaped link, over 8n/R (1 = the nominal rate); and
the extra round trip of one 1,000-byte message (20 ms apart) over the unshaped link, through
the phone's serializer and through tbf alone, over 8n/R (the serializer should give ~1, tbf
alone ~0: its refilled burst lets a small message through at line rate).  Needs root and
iproute2; prints a "skipped" line with the reason otherwise.

Usage: python benchmarks/bench_netem.py [--rates 1.1,5.85]
"""

from __future__ import annotations

import argparse

from common import emit, log, r, ratio

from butterfly import netem  # common (above) puts the repository root on sys.path

SMALL_MESSAGE = 1000


def transfer(mbit: float) -> dict:
    n = 100_000 if mbit < 2 else 300_000
    with netem.Link(rate_mbit=mbit) as link:
        seconds = netem.transfer_seconds(link, n)
    expected = 8 * n / (mbit * 1e6)
    return {"bytes": n, "seconds": r(seconds), "nominal_seconds": r(expected),
            "ratio": ratio(seconds, expected)}


def small_message(mbit: float) -> dict:
    with netem.Link(rate_mbit=None) as link:
        floor = netem.round_trip_ms(link, SMALL_MESSAGE)
    with netem.Link(rate_mbit=mbit, serialize=True) as link:
        serialized = netem.round_trip_ms(link, SMALL_MESSAGE)
    with netem.Link(rate_mbit=mbit, serialize=False) as link:
        tbf_only = netem.round_trip_ms(link, SMALL_MESSAGE)
    expected = 8 * SMALL_MESSAGE / (mbit * 1e6) * 1e3
    return {"floor_ms": r(floor), "serialized_ms": r(serialized), "tbf_only_ms": r(tbf_only),
            "nominal_extra_ms": r(expected),
            "serialized_ratio": ratio(serialized - floor, expected),
            "tbf_only_ratio": ratio(tbf_only - floor, expected)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1.1,5.85", help="Mbit/s, comma-separated")
    args = ap.parse_args()
    ok, why = netem.available()
    if not ok:
        emit({"bench": "netem", "skipped": why})
        return
    rates = {}
    for mbit in (float(x) for x in args.rates.split(",")):
        log(f"{mbit} Mbit/s")
        rates[str(mbit)] = {"transfer": transfer(mbit), "small_message": small_message(mbit)}
    emit({"bench": "netem", "rates_mbit": rates})


if __name__ == "__main__":
    main()
