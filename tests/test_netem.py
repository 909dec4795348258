"""Emulated radio links: namespaces, a shaped uplink, clean-up."""

import subprocess

import pytest

from butterfly import netem

ok, why = netem.available()
pytestmark = pytest.mark.skipif(not ok, reason=f"emulated links unavailable: {why}")


def _namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("mbit", [1.1, 5.85])
def test_shaped_link_moves_n_bytes_in_about_8n_over_r(mbit):
    n = 100_000 if mbit < 2 else 300_000
    with netem.Link(rate_mbit=mbit) as link:
        seconds = netem.transfer_seconds(link, n)
    expected = 8 * n / (mbit * 1e6)
    assert 0.7 * expected < seconds < 1.5 * expected, (seconds, expected)


@pytest.mark.parametrize("mbit", [1.1, 5.85])
def test_serialized_link_delays_one_small_message_by_8n_over_r(mbit):
    # 1,000-byte messages 20 ms apart: tbf alone lets each through at line rate (its burst
    # has refilled); the phone's serializer delays it by its transmission time, as the
    # cost model's upload term says
    n = 1000
    with netem.Link(rate_mbit=None) as link:
        floor = netem.round_trip_ms(link, n)
    with netem.Link(rate_mbit=mbit, serialize=True) as link:
        shaped = netem.round_trip_ms(link, n)
    with netem.Link(rate_mbit=mbit, serialize=False) as link:
        tbf_only = netem.round_trip_ms(link, n)
    expected = 8 * n / (mbit * 1e6) * 1e3
    assert 0.75 * expected < shaped - floor < 1.35 * expected, (shaped, floor, expected)
    assert tbf_only - floor < 0.5 * expected, (tbf_only, floor, expected)


def test_namespaces_are_removed_even_on_error():
    with pytest.raises(RuntimeError), netem.Link(rate_mbit=5.85) as link:
        names = list(link.ns.values())
        assert all(n in _namespaces() for n in names)
        raise RuntimeError("boom")
    listed = _namespaces()
    assert not any(n in listed for n in names)
