"""Emulated radio links: namespaces, a shaped uplink, clean-up."""

import subprocess

import pytest

from butterfly import netem

ok, why = netem.available()
pytestmark = pytest.mark.skipif(not ok, reason=f"emulated links unavailable: {why}")


def _namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _qdisc(link):
    return link.run("phone", ["tc", "qdisc", "show", "dev", link.dev["phone"]])


# How close a link comes to 8n/R is a figure of benchmarks/bench_netem.py, not a test.
@pytest.mark.parametrize("mbit", [1.1, 5.85])
def test_shaped_link_has_a_tbf_at_r_and_moves_n_bytes(mbit):
    n = 100_000 if mbit < 2 else 300_000
    with netem.Link(rate_mbit=mbit) as link:
        qdisc = _qdisc(link)
        seconds = netem.transfer_seconds(link, n)  # raises unless all n bytes arrive
    assert qdisc.startswith("qdisc tbf ") and f" rate {round(mbit * 1000)}Kbit " in qdisc, qdisc
    assert 0 < seconds < 60, seconds


@pytest.mark.parametrize("mbit", [1.1, 5.85])
def test_serialized_and_plain_links_answer_small_messages(mbit):
    # 1,000-byte messages 20 ms apart, through the phone's serializer and through tbf alone
    n = 1000
    with netem.Link(rate_mbit=None) as link:
        assert "tbf" not in _qdisc(link)
        floor = netem.round_trip_ms(link, n)
    with netem.Link(rate_mbit=mbit, serialize=True) as link:
        shaped = netem.round_trip_ms(link, n)
    with netem.Link(rate_mbit=mbit, serialize=False) as link:
        assert "tbf" in _qdisc(link)
        tbf_only = netem.round_trip_ms(link, n)
    assert all(0 < ms < 10_000 for ms in (floor, shaped, tbf_only)), (floor, shaped, tbf_only)


def test_namespaces_are_removed_even_on_error():
    with pytest.raises(RuntimeError), netem.Link(rate_mbit=5.85) as link:
        names = list(link.ns.values())
        assert all(n in _namespaces() for n in names)
        raise RuntimeError("boom")
    listed = _namespaces()
    assert not any(n in listed for n in names)
