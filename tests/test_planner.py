"""Planner: accuracy-budget filtering, argmin choice, bandwidth estimate, hysteresis."""

import dataclasses
import random

import pytest

from butterfly.experiments import costmodel as cm
from butterfly.experiments import planner


def _measured(table, power_w=None):
    return cm.DeviceProfile.measured([{"name": k, "ms": v} for k, v in table.items()], "d", power_w)


def _candidate(name, mobile_ms, payload_bytes, accuracy=None, split=None, cloud_ms=0.0):
    """A candidate whose phone part takes mobile_ms and cloud part cloud_ms (layer names = name)."""
    mobile = ({"name": f"{name}/m", "ms": mobile_ms},)
    cloud = ({"name": f"{name}/c", "ms": cloud_ms},)
    return cm.Candidate(name, mobile, cloud, payload_bytes, accuracy, split), mobile + cloud


def _model_for(pairs, network="4g", power_w=1.3, input_bytes=None):
    layers = [layer for _, ls in pairs for layer in ls]
    table = {layer["name"]: layer["ms"] for layer in layers}
    return cm.CostModel(
        _measured(table, power_w), _measured(table), cm.networks[network], (), input_bytes
    )


def test_select_applies_budget_and_keeps_smallest_payload_per_split():
    cands = [
        cm.Candidate("rb1-c1", (), (), 196, 0.739, "rb1"),  # 2.1 points below 0.76: out
        cm.Candidate("rb1-c2", (), (), 392, 0.741, "rb1"),
        cm.Candidate("rb1-c4", (), (), 784, 0.755, "rb1"),
        cm.Candidate("rb4-c2", (), (), 392, 0.74, "rb4"),  # exactly on the boundary: in
        cm.Candidate("rb4-c2b", (), (), 392, 0.75, "rb4"),  # same payload, more accurate
        cm.Candidate("rb8-c5", (), (), 245, None, "rb8"),  # accuracy unknown: out
    ]
    kept = planner.select(cands, accuracy_budget=0.02, baseline_accuracy=0.76)
    assert [c.name for c in kept] == ["rb1-c2", "rb4-c2b"]
    every = planner.select(cands, baseline_accuracy=None)
    assert [c.name for c in every] == ["rb1-c1", "rb4-c2b", "rb8-c5"]
    assert [c.name for c in planner.select(cands, 0.0, 0.75)] == ["rb1-c4", "rb4-c2b"]


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_plan_matches_brute_force(objective):
    rng = random.Random(1234)
    for trial in range(50):
        pairs = []
        for s in range(rng.randint(1, 6)):
            mobile_ms, cloud_ms = rng.uniform(0.1, 20), rng.uniform(0.1, 5)
            for k in range(rng.randint(1, 4)):  # same layers per split, payload and accuracy vary
                c, layers = _candidate(
                    f"s{s}k{k}",
                    mobile_ms,
                    rng.randint(10, 50_000),
                    rng.uniform(0.70, 0.77),
                    split=s,
                    cloud_ms=cloud_ms,
                )
                pairs.append((c, layers))
        model = _model_for(pairs, rng.choice(["3g", "4g", "wifi"]))
        cands = [c for c, _ in pairs]
        if not any(c.accuracy >= 0.74 for c in cands):
            continue
        result = planner.plan(cands, model, objective, 0.02, 0.76)
        value = model.latency_ms if objective == "latency" else model.energy_mj
        brute = min((c for c in cands if c.accuracy >= 0.74), key=value)
        assert result.chosen.name == brute.name, trial
        assert result.cost == model.cost(brute) and result.objective == objective


def test_latency_and_energy_objectives_can_disagree():
    # 4G: A computes 1 ms on the phone and uploads 2194 B (3.0 ms); B computes 5 ms, uploads 0.
    # latency A = 4.0 < B = 5.0; energy A = 1.3 + 3.0 * 3.853 = 12.9 mJ > B = 5 * 1.3 = 6.5 mJ.
    a, la = _candidate("A", 1.0, 2194)
    b, lb = _candidate("B", 5.0, 0)
    model = _model_for([(a, la), (b, lb)])
    assert planner.plan([a, b], model, "latency").chosen is a
    assert planner.plan([a, b], model, "energy").chosen is b


def test_plan_errors_and_table():
    a, la = _candidate("A", 1.0, 2194, accuracy=0.70)
    model = _model_for([(a, la)], input_bytes=26_766)
    with pytest.raises(ValueError, match="no candidate"):
        planner.plan([a], model, baseline_accuracy=0.76)
    with pytest.raises(ValueError, match="objective"):
        planner.plan([a], model, "throughput")
    result = planner.plan([a], model)
    assert [r["kind"] for r in result.table] == ["cloud-only", "mobile-only", "split"]
    cloud, _, split = result.table
    assert split["latency_ms"] == pytest.approx(1.0 + 8 * 2194 / 5.85e6 * 1e3)
    cloud_ms = 8 * 26_766 / 5.85e6 * 1e3  # the plain network is empty here: upload only
    assert cloud["latency_ms"] == pytest.approx(cloud_ms)
    assert split["latency_gain_vs_cloud"] == pytest.approx(cloud_ms / split["latency_ms"])
    assert planner.plan([a], dataclasses.replace(model, input_bytes=None)).table == []
    no_power = dataclasses.replace(model, mobile=_measured(model.mobile.layer_ms))
    with pytest.raises(ValueError, match="power_w"):
        planner.plan([a], no_power, "energy")


def test_bandwidth_estimator():
    est = planner.BandwidthEstimator(window=5, smoothing=0.5)
    assert est.mbps is None
    assert est.add(1_000_000, 1.0) == pytest.approx(8.0)  # 8e6 bit in 1 s
    for _ in range(20):
        est.add(500_000, 1.0)  # 4 Mbit/s
    assert est.mbps == pytest.approx(4.0, rel=1e-4)
    est.add(500_000, 0.01)  # one 400 Mbit/s outlier (a plain EWMA would jump to 202)
    assert est.mbps == pytest.approx(4.0, rel=1e-4)
    est.add(500_000, 100.0)  # one stall at 0.04 Mbit/s
    assert est.mbps == pytest.approx(4.0, rel=1e-4)
    for _ in range(20):
        est.add(125_000, 1.0)  # the link drops to 1 Mbit/s
    assert est.mbps == pytest.approx(1.0, rel=0.01)
    assert planner.BandwidthEstimator(initial_mbps=5.85).mbps == 5.85
    with pytest.raises(ValueError):
        est.add(100, 0.0)


def _switch_pair():
    """A: 1 ms + 2000 B; B: 3 ms + 200 B. Latency A = 1 + 16/x, B = 3 + 1.6/x: equal at 7.2 Mbps."""
    a, la = _candidate("A", 1.0, 2000)
    b, lb = _candidate("B", 3.0, 200)
    model = _model_for([(a, la), (b, lb)])
    return a, b, lambda mbps: dataclasses.replace(model, network=model.network.with_uplink(mbps))


def test_switcher_follows_bandwidth_with_hysteresis():
    a, b, factory = _switch_pair()
    sw = planner.Switcher([a, b], factory, margin=0.1)
    assert sw.current is None
    assert sw.update(1.0) is b  # A 17 ms, B 4.6 ms
    assert sw.update(7.56) is b  # A 3.12 ms is only 3 % better than B 3.21 ms: stay
    assert sw.update(100.0) is a  # A 1.16 ms, B 3.02 ms
    assert sw.update(6.9) is a  # B 3.23 ms only 3 % better than A 3.32 ms: stay
    assert sw.update(1.0) is b
    picks = [sw.update(7.2 * (1.04 if i % 2 else 0.96)) for i in range(20)]
    assert all(p is b for p in picks)  # jitter around the crossover does not flap
    flappy = planner.Switcher([a, b], factory, margin=0.0)
    picks = [flappy.update(7.2 * (1.04 if i % 2 else 0.96)) for i in range(20)]
    assert sum(p is not q for p, q in zip(picks, picks[1:])) == 19  # without margin it flaps


def test_switcher_patience():
    a, b, factory = _switch_pair()
    sw = planner.Switcher([a, b], factory, patience=2)
    assert sw.update(1.0) is b
    assert sw.update(100.0) is b  # one fast reading is not enough
    assert sw.update(1.0) is b
    assert sw.update(100.0) is b
    assert sw.update(100.0) is a  # two in a row are
    with pytest.raises(ValueError):
        planner.Switcher([a, b], factory, baseline_accuracy=0.9)
    for bad in ({"margin": float("nan")}, {"margin": -0.1}, {"margin": 1.0},
                {"patience": 0}, {"patience": 1.5}):
        with pytest.raises((ValueError, TypeError), match="margin|patience"):
            planner.Switcher([a, b], factory, **bad)


@pytest.mark.parametrize("payload_bytes, seconds, match", [
    (float("nan"), 1.0, "payload_bytes must be a finite number > 0"),
    (float("inf"), 1.0, "payload_bytes must be a finite number > 0"),
    (100, float("nan"), "seconds must be a finite number > 0"),
    (100, -1.0, "seconds must be a finite number > 0"),
    (1e300, 1e-300, "bandwidth of"),
])
def test_bandwidth_estimator_refuses_bad_samples(payload_bytes, seconds, match):
    est = planner.BandwidthEstimator(initial_mbps=4.0)
    with pytest.raises(ValueError, match=match):
        est.add(payload_bytes, seconds)
    assert est.mbps == 4.0  # the estimate is untouched
    assert est.add(500_000, 1.0) == pytest.approx(4.0)


@pytest.mark.parametrize("initial", [float("nan"), float("inf"), 0.0, -1.0])
def test_bandwidth_estimator_refuses_bad_initial_estimate(initial):
    with pytest.raises(ValueError, match="initial_mbps must be a finite number > 0"):
        planner.BandwidthEstimator(initial_mbps=initial)
