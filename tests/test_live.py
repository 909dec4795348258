"""Runtime split switching on a live link (butterfly.experiments.live, butterfly.netem.Trace).

The live run needs root (network namespaces); everything else runs anywhere.  Latency
targets (the adaptive client against every fixed choice) are the benchmark's
(benchmarks/bench_adaptive.py): here the behaviour -- it follows the planner's choice after
each change, does not flap, loses nothing and answers what the chosen split answers.
"""

import dataclasses

import numpy as np
import pytest

import butterfly as bf
from butterfly import netem
from butterfly.experiments import costmodel, live, planner


def test_trace_phases_names_and_rates():
    t = netem.Trace([(0, "wifi"), (10, "4g"), (20, 0.5), (30, "3G")])
    assert [p.mbps for p in t.phases] == [18.88, 5.85, 0.5, 1.1]
    assert t.duration == 40 and t.phases[-1].end == 40
    assert t.rate_at(9.99) == 18.88 and t.rate_at(10) == 5.85 and t.rate_at(99) == 1.1
    assert costmodel.networks["4g"].uplink_mbps == netem.UPLINK_MBPS["4g"]  # one source


def test_trace_from_csv(tmp_path):
    p = tmp_path / "up.csv"
    p.write_text("seconds,mbps\n0,5\n2.5,0.25\n")
    t = netem.Trace.from_csv(p, duration=4)
    assert [(x.start, x.end, x.mbps) for x in t.phases] == [(0, 2.5, 5.0), (2.5, 4.0, 0.25)]


@pytest.mark.parametrize("points, kw, match", [
    ([], {}, "at least one"),
    ([(1, 5)], {"duration": 3}, "starts at 0"),
    ([(0, 5), (0, 6)], {}, "increase"),
    ([(0, "5g")], {"duration": 1}, "unknown link"),
    ([(0, -1.0)], {"duration": 1}, "> 0"),
    ([(0, float("nan"))], {"duration": 1}, "> 0"),
    ([(0, 5)], {}, "needs its duration"),
    ([(0, 5), (2, 6)], {"duration": 1}, "must come after"),
    (["x"], {}, "seconds, rate"),
])
def test_trace_refuses_bad_points(points, kw, match):
    with pytest.raises(bf.InvalidArgument, match=match):
        netem.Trace(points, **kw)


def test_trace_csv_errors(tmp_path):
    with pytest.raises(bf.FileError):
        netem.Trace.from_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("0\n")
    with pytest.raises(bf.InvalidArgument, match="seconds,Mbit/s"):
        netem.Trace.from_csv(bad)


def _switcher(patience):
    """Three candidates whose best depends on the uplink: a big payload (best when fast),
    a small one (middle) and none (mobile-only, best when slow)."""
    layer = {"name": "x", "macs": 0, "out_bytes": 0, "weight_bytes": 0, "part": "head"}
    prof = costmodel.DeviceProfile("p", 1.0, layer_ms={"a": 1.0, "b": 4.0, "m": 9.0})
    cands = [costmodel.Candidate(n, ({**layer, "name": n},), (), b, at=n)
             for n, b in (("a", 2000), ("b", 100), ("m", 0))]
    model = costmodel.CostModel(prof, prof, costmodel.networks["4g"], [layer])
    return planner.Switcher(cands, lambda mbps: dataclasses.replace(
        model, network=model.network.with_uplink(mbps)), patience=patience)


def test_a_link_flapping_faster_than_the_patience_does_not_make_the_client_flap():
    """The uplink flips between fast and slow at every sample; with patience 2 the client
    keeps its split, while a change that lasts is followed after `patience` samples."""
    def run(patience):
        sw = _switcher(patience)
        est = planner.BandwidthEstimator(window=1, smoothing=1.0, initial_mbps=20.0)
        used = [sw.update(est.mbps).name]
        for k in range(40):
            mbps = 20.0 if k % 2 else 0.05
            used.append(sw.update(est.add(1000, 8 * 1000 / (mbps * 1e6))).name)
        return sw, est, used

    _, _, used = run(patience=1)
    assert len(set(used)) > 1  # without patience it would flap with the link
    sw, est, used = run(patience=2)
    assert set(used) == {"a"}, used
    for _ in range(2):  # now slow for good: followed after two samples
        used.append(sw.update(est.add(1000, 8 * 1000 / 0.05e6)).name)
    assert used[-1] == "m" and used[-2] == "a"


BUDGET = 0.06  # the quick models' splits: some within 6 points of the plain network


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    ok, why = netem.available()
    if not ok:
        pytest.skip(f"live switching {why}")
    splits, plain = live.live_models(quick=True, log=print)  # cached for the demo, notebook
    _, test = bf.datasets.fashion_mnist()
    trace = netem.Trace([(0, "wifi"), (6, 0.3), (12, 0.04), (18, "wifi")], duration=24)
    report = live.live_switching(splits, plain, trace, test.images, test.labels, rate=10,
                                 slowdown=8, modes=["adaptive"], accuracy_budget=BUDGET)
    return report, trace


def test_live_adaptive_client_follows_the_planner_after_each_change(live_run):
    report, trace = live_run
    delays = report["switch_delays"]
    assert len(delays) == len(trace) - 1
    for d in delays:  # settled on the planner's choice for the new rate, and stayed
        assert d["requests_to_settle"] is not None and d["requests_to_settle"] <= 20, delays
    used = {r["option"] for r in report["runs"]["adaptive"] if not r["probe"]}
    assert len(used) >= 2  # the trace makes it switch


def test_live_nothing_lost_and_answers_are_the_chosen_splits(live_run):
    report, trace = live_run
    o = report["overall"]["adaptive"]
    n = report["config"]["requests"]
    assert o["answered"] == o["unique"] == n == int(trace.duration * 10)
    assert o["agreement"] == 1.0  # each answer is what the option that gave it answers locally
    rows = report["runs"]["adaptive"]
    assert [r["i"] for r in rows] == list(range(n))
    assert all(np.isfinite(r["latency_ms"]) and r["latency_ms"] > 0 for r in rows)
    assert set(report["slowdown"]["measured_phone_ms"]) <= set(report["options"])


def test_live_adaptive_client_keeps_to_the_accuracy_budget(live_run):
    report, _ = live_run
    acc = report["accuracy"]
    allowed = {o for o, a in acc.items() if a >= acc["mobile-only"] - BUDGET - 1e-12}
    used = {r["option"] for r in report["runs"]["adaptive"]}
    assert used <= allowed, (used, acc)
    # and the planner's choice it was measured against kept to it too
    assert {r["best"] for r in report["runs"]["adaptive"]} <= allowed
    text = live.format_report(report)
    assert "overall median" in text and "settled" in text


def _synthetic_report():
    """A report as live_switching makes it, from made-up requests: the adaptive client on
    "a" for the fast phase and on "m" for the slow one; fixed "a" slow in the slow phase."""
    trace = netem.Trace([(0, "wifi"), (2, 0.05)], duration=4)
    runs = {"adaptive": [], "a": [], "m": []}
    for i in range(40):
        t = i / 10
        slow = t >= 2
        common = {"i": i, "t": t, "probe": False, "label": i % 10, "energy_mj": 1.0,
                  "best": "m" if slow else "a"}
        runs["adaptive"].append({**common, "option": "m" if slow and i > 22 else "a",
                                 "latency_ms": 9.0 if slow and i > 22 else (5.0 if not slow
                                                                             else 60.0)})
        runs["a"].append({**common, "option": "a", "latency_ms": 60.0 if slow else 5.0})
        runs["m"].append({**common, "option": "m", "latency_ms": 9.0})
    labels = [i % 10 for i in range(40)]
    reference = {"a": labels, "m": labels}
    report = live.summarize(runs, trace, labels, reference)
    report.update(options=["a", "m"], runs=runs, accuracy={"a": 0.9, "m": 0.9},
                  config={"rate": 10, "trace": [dataclasses.asdict(p) for p in trace.phases]})
    return report, trace


def test_live_models_refuses_a_missing_teacher(tmp_path):
    with pytest.raises(bf.FileError, match="not a file"):
        live.live_models(tmp_path, teacher=tmp_path / "none.bfly")
    assert not list(tmp_path.glob("*.bfly"))


def test_summary_and_switch_delays_of_made_up_requests():
    report, _ = _synthetic_report()
    assert [p["best_fixed"] for p in report["phases"]] == ["a", "m"]
    assert report["phases"][0]["adaptive"]["median_ms"] == 5.0
    assert report["phases"][1]["a"]["median_ms"] == 60.0
    assert report["switch_delays"] == [{"phase": 1, "at_s": 2.0, "mbps": 0.05, "best": "m",
                                        "requests_to_settle": 3, "round": 0}]
    assert report["switches"] == 1
    o = report["overall"]["adaptive"]
    assert o["answered"] == o["unique"] == 40 and o["accuracy"] == o["agreement"] == 1.0
    lines = live.format_report(report).splitlines()
    assert lines[1].split()[-1] == "a" and lines[2].split()[-1] == "m"
    assert "settled after each change: 3" in lines[-2]


def test_plot_live_draws_latency_rate_and_the_split_band(tmp_path):
    from butterfly.experiments import plots

    report, _ = _synthetic_report()
    path = tmp_path / "live.png"
    fig = plots.plot_live(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax, band, rate_ax = fig.axes
    # the band: one bar per adaptive request, coloured by the option that served it
    bars = {tuple(c.get_facecolor()[0]): len(c.get_paths()) for c in band.collections}
    assert sorted(bars.values()) == [17, 23]
    # the rate behind: the trace's two rates, on a log axis
    assert rate_ax.get_yscale() == "log" and ax.get_yscale() == "log"
    ys = np.concatenate([p.vertices[:, 1] for c in rate_ax.collections for p in c.get_paths()])
    assert {0.05, 18.88} <= set(np.round(ys, 2))
    # the points: 40 requests of the adaptive client, in two colours
    pts = [c for c in ax.collections if c.get_offsets().shape[0] > 0]
    assert sum(c.get_offsets().shape[0] for c in pts) == 40 and len(pts) == 2


def test_rounds_are_pooled_and_settled_each_on_its_own():
    """Two rounds of the same requests: statistics pool them, every image is counted once
    per round, and each round has its own switch delays (the second settles later)."""
    report, trace = _synthetic_report()
    runs = {}
    for mode, rows in report["runs"].items():
        second = [{**r, "round": 1} for r in rows]
        if mode == "adaptive":  # round 2 stays on "a" five requests longer
            second = [{**r, "option": "a", "latency_ms": 60.0} if 20 <= r["i"] < 28 else r
                      for r in second]
        runs[mode] = [{**r, "round": 0} for r in rows] + second
    labels = [i % 10 for i in range(40)]
    pooled = live.summarize(runs, trace, labels, {"a": labels, "m": labels})
    o = pooled["overall"]["adaptive"]
    assert o["answered"] == 80 and o["unique"] == 80
    assert [(d["round"], d["requests_to_settle"]) for d in pooled["switch_delays"]] == \
        [(0, 3), (1, 8)]
    assert pooled["switches"] == 2
    assert pooled["phases"][1]["a"]["n"] == 40
