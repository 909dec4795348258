"""Split candidates, profiles and the planner on the cuts of an imported network (a
MobileNetV2 exported by torch): every split point a candidate with its bytes and MACs, the
planner's choice against the cost model as the uplink changes, `butterfly plan` and
`butterfly profile --candidates` on an imported model file."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import butterfly as bf
from butterfly import experiments as ex
from butterfly.experiments import costmodel, planner
from butterfly.network import REDUCE, RESTORE, plain_network, remove_butterfly
from butterfly.serving import child_env

torch = pytest.importorskip("torch", reason="the import tests need torch (make test "
                                            "installs it)")
pytest.importorskip("onnx")
import torch_models as tm

SIZE = 64


# one thread keeps node-by-node timing comparable to a forward
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "mnv2.onnx"
    tm.export(tm.mobilenet_v2(width=0.5), path, SIZE)
    return path


@pytest.fixture(scope="module")
def net(onnx_path):
    return bf.import_onnx(onnx_path)


def _macs(layers):
    return sum(r["macs"] for r in layers)


def test_candidates_without_a_unit_are_the_split_points(net):
    """A network without a unit: one candidate per cut, uploading the cut's float32
    feature, its head on the phone and its tail in the cloud."""
    points = net.split_points()
    cands, nets = ex.split_candidates(net)
    assert len(points) > 20 and nets == [None] * len(points)
    assert [c.name for c in cands] == [p["name"] for p in points]
    total = net.summary()["macs"]
    for c, p in zip(cands, points):
        assert c.payload_bytes == p["fp32_bytes"] == 4 * math.prod(p["shape"])
        assert c.channels is None and c.stride is None and c.at == p["name"]
        assert _macs(c.mobile_layers) == p["macs_before"] == c.meta["macs_head"]
        assert _macs(c.cloud_layers) == p["macs_after"] == c.meta["macs_tail"]
        assert p["macs_before"] + p["macs_after"] == total
        assert c.mobile_layers[-1]["index"] == p["layer"] == c.meta["layer"]
        assert c.meta["shape"] == tuple(p["shape"])


def test_candidates_with_a_unit_at_every_cut(net, rng):
    points = net.split_points()
    cands, nets = ex.split_candidates(net, channels=2, stride=2)
    assert [c.name for c in cands] == [p["name"] for p in points]
    names = set()
    for c, cn, p in zip(cands, nets, points):
        s = 2 if min(p["shape"][1:]) >= 4 else 1  # a cut smaller than 2 s: no stride
        assert (c.channels, c.stride) == (2, s)
        ref = bf.insert_butterfly(net, at=p["name"], channels=2, stride=s)
        assert c.payload_bytes == ref.upload_bytes == cn.upload_bytes
        assert c.payload_bytes == 2 * math.prod(-(-d // s) for d in p["shape"][1:]) + 8
        reduce = [r for r in c.mobile_layers if r["part"] == "reduce"]
        restore = [r for r in c.cloud_layers if r["part"] == "restore"]
        assert _macs(c.mobile_layers) == p["macs_before"] + _macs(reduce)
        assert _macs(c.cloud_layers) == p["macs_after"] + _macs(restore)
        assert all(r["name"].startswith(p["name"] + ":") for r in reduce + restore)
        assert (c.meta["macs_head"], c.meta["macs_tail"]) == (p["macs_before"],
                                                              p["macs_after"])
        names.update(r["name"] for r in reduce + restore)
    assert len(names) == sum(len([r for r in c.mobile_layers + c.cloud_layers
                                  if r["part"] in ("reduce", "restore")]) for c in cands)
    # the candidate networks run: their halves compose to their forward
    x = rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    cn = nets[len(nets) // 2]
    np.testing.assert_array_equal(cn.cloud(cn.mobile(x)), cn.forward(x))


def test_chosen_cuts_and_a_list_of_channels(net):
    points = net.split_points()
    at = [points[3]["name"], points[10]["layer"], points[-1]["name"]]
    cands, _ = ex.split_candidates(net, at=at, channels=[1, 2, 4], stride=1)
    assert [c.name for c in cands] == [points[3]["name"], points[10]["name"],
                                       points[-1]["name"]]
    assert [c.channels for c in cands] == [1, 2, 4]
    assert [c.payload_bytes for c in cands] == [
        k * p["shape"][1] * p["shape"][2] + 8
        for k, p in zip((1, 2, 4), (points[3], points[10], points[-1]))]
    fp32, _ = ex.split_candidates(net, at=at, unit=False)
    assert [c.payload_bytes for c in fp32] == [points[3]["fp32_bytes"],
                                               points[10]["fp32_bytes"],
                                               points[-1]["fp32_bytes"]]


def test_a_model_with_its_own_unit_gives_its_c_and_s_at_every_cut(net, rng):
    points = net.split_points()
    student = bf.insert_butterfly(net, at=points[12]["name"], channels=3, stride=2)
    plain = plain_network(student)
    x = rng.standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_array_equal(plain.forward(x), net.forward(x))  # the weights kept
    assert plain.hash == net.hash and plain.butterfly is None
    assert remove_butterfly(net) is net
    cands, _ = ex.split_candidates(student, at=[p["name"] for p in points[::8]])
    assert all(c.channels == 3 for c in cands)
    assert ex.split_name(student) == points[12]["name"]
    own = ex.candidate(student)
    assert own.name == points[12]["name"] and own.payload_bytes == student.upload_bytes


def test_results_rows_name_cuts(net, tmp_path):
    points = net.split_points()
    rows = [{"at": None, "top1": 0.8},  # the plain network's row
            {"at": points[5]["name"], "channels": 2, "stride": 2, "top1": 0.78,
             "payload_bytes": 300},
            {"at": points[20]["name"], "channels": 0, "top1": 0.8}]
    path = tmp_path / "distilled.json"
    path.write_text(json.dumps(rows))
    cands, nets = ex.split_candidates(net, results=path)
    assert [(c.name, c.accuracy, c.payload_bytes) for c in cands] == [
        (points[5]["name"], 0.78, 300), (points[20]["name"], 0.8, points[20]["fp32_bytes"])]
    assert nets[1] is None and nets[0].butterfly["channels"] == 2


@pytest.mark.parametrize("kw, err", [
    ({"channels": -1}, bf.InvalidArgument),
    ({"channels": 2, "stride": 0}, bf.InvalidArgument),
    ({"at": ["no such cut"]}, bf.InvalidArgument),
    ({"at": [1, 2], "channels": [1, 2, 3]}, ValueError),
])
def test_bad_candidate_arguments(net, kw, err):
    with pytest.raises(err):
        ex.split_candidates(net, **kw)


def _scaled_model(net, cands_mbps):
    layers = ex.layer_records(net)
    phone = costmodel.phone_profile(layers, total_ms=30.0)
    return costmodel.CostModel(phone, costmodel.cloud_profile(),
                               costmodel.networks["4g"].with_uplink(cands_mbps), layers,
                               input_bytes=3000)


@pytest.mark.parametrize("unit", [False, True])
def test_the_planner_follows_the_cost_model_as_the_uplink_changes(net, unit):
    """At each bandwidth the plan is the candidate of least modelled cost; a slower uplink
    never picks a larger upload, and the choice does change over the range."""
    cands, _ = (ex.split_candidates(net, channels=2, stride=2) if unit else
                ex.split_candidates(net))
    chosen = {}
    for obj in planner.OBJECTIVES:
        prev = None
        for mbps in np.geomspace(0.01, 10_000, 25):
            model = _scaled_model(net, float(mbps))
            p = planner.plan(cands, model, obj)
            value = [model.latency_ms(c) if obj == "latency" else model.energy_mj(c)
                     for c in cands]
            assert p.chosen.name == cands[int(np.argmin(value))].name
            assert p.cost.latency_ms == pytest.approx(model.latency_ms(p.chosen))
            if prev is not None:
                assert p.chosen.payload_bytes >= prev.payload_bytes, (obj, mbps)
            prev = p.chosen
            chosen.setdefault(obj, []).append(p.chosen.name)
        assert len(set(chosen[obj])) >= 2, chosen[obj]
    # the run-time switcher agrees with the planner at each estimate
    base = _scaled_model(net, 1.0)
    sw = planner.Switcher(cands, lambda m: _scaled_model(net, m), margin=0.0)
    for mbps in (0.05, 500.0, 2.0):
        assert sw.update(mbps).name == planner.plan(cands, _scaled_model(net, mbps)).chosen.name
    assert base.network.uplink_mbps == 1.0


def test_machine_profile_measures_the_cut_units(net):
    points = net.split_points()
    at = [points[2]["name"], points[-3]["name"]]
    cands, nets = ex.split_candidates(net, at=at, channels=2, stride=2)
    phone = ex.machine_profile(net, nets, repeats=2)
    for c in cands:
        for r in c.mobile_layers + c.cloud_layers:
            assert phone.layer_ms[r["name"]] >= 0
    prof = ex.profile_parts(nets[0], REDUCE, RESTORE, repeats=2)
    assert {r["part"] for r in prof["layers"]} == {"reduce", "restore"}
    fp32, none = ex.split_candidates(net, at=at)
    plain_phone = ex.machine_profile(net, none, repeats=2)
    model = costmodel.CostModel(plain_phone, plain_phone, costmodel.networks["3g"],
                                ex.layer_records(net), input_bytes=3000)
    tables = ex.cost_tables(model, fp32)
    assert [r["name"] for r in tables["3g"]["rows"]] == ["cloud-only", "mobile-only"] + at
    assert tables["wifi"]["best"]["latency"]["split"] in at


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "butterfly", *map(str, args)],
                          capture_output=True, text=True, env=child_env(), timeout=timeout,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(bf.__file__))),
                          check=False)


def test_plan_and_profile_commands_on_an_imported_model(onnx_path, tmp_path):
    model = tmp_path / "mnv2.bfly"
    r = _cli("import", onnx_path, "-o", model)
    assert r.returncode == 0, r.stderr
    points = bf.load(model).split_points()
    r = _cli("plan", model, "--network", "3g", "--repeats", "1", "--input-bytes", "3000")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["row", "payload", "B", "head", "MMAC"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:-1]}
    assert list(rows) == ["cloud-only", "mobile-only"] + [p["name"] for p in points]
    for p in points:
        assert int(rows[p["name"]][1]) == p["fp32_bytes"]
        assert float(rows[p["name"]][2]) == pytest.approx(p["macs_before"] / 1e6, abs=0.006)
        assert float(rows[p["name"]][3]) == pytest.approx(p["macs_after"] / 1e6, abs=0.006)
    assert lines[-1].startswith("best for latency on 3G: ")
    assert "(no unit: the float32 feature)" in lines[-1]
    assert lines[-1].split()[5] in rows
    # a saved profile of units at three cuts, then the plan from it
    at = [points[4]["name"], str(points[9]["layer"]), points[-2]["name"]]
    prof = tmp_path / "p.json"
    r = _cli("profile", model, "--repeats", "2", "--save", prof, "--candidates",
             "--channels", "2", "--stride", "2", "--at", *at)
    assert r.returncode == 0, r.stderr
    r = _cli("plan", model, "--profile", prof, "--objective", "energy", "--channels", "2",
             "--stride", "2", "--at", *at, "--input-bytes", "3000")
    assert r.returncode == 0, r.stderr
    names = [ln.split()[0] for ln in r.stdout.splitlines()[1:-1]]
    assert names == ["cloud-only", "mobile-only", points[4]["name"], points[9]["name"],
                     points[-2]["name"]]
    assert "best for energy on 4G" in r.stdout and "(c'=2, s=" in r.stdout
    # the profile has no units at the other cuts: one line saying how to make one
    r = _cli("plan", model, "--profile", prof, "--channels", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--candidates" in r.stderr.splitlines()[-1]
    r = _cli("plan", model, "--at", "nowhere", "--profile", prof)
    assert r.returncode == 2 and "not a split point" in r.stderr


def test_a_network_without_split_points_says_so(rng):
    L = bf.network.LayerList((3, 8, 8))
    L.linear(4)  # one layer: no cut between layers
    tiny = bf.Network.from_layers(L.layers, L.params)
    assert tiny.split_points() == []
    with pytest.raises(bf.InvalidArgument, match="no split point"):
        ex.split_candidates(tiny)
