"""Profiler, cost-model inputs from real networks, the profile / plan commands."""

import json
import subprocess
import sys

import numpy as np
import pytest

import butterfly as bf
from butterfly import experiments as ex
from butterfly.experiments import costmodel
from butterfly.serving import child_env


def _small(**kw):
    return bf.resnet18(small=True, num_classes=10, in_channels=1, width=16,
                       butterfly=bf.Butterfly(at=2, channels=1, stride=2), **kw)


# one thread keeps node-by-node timing comparable to a forward
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("part", ["all", "mobile", "cloud"])
def test_layer_times_sum_to_the_whole_network(part):
    net = _small()
    prof = ex.profile(net, part, batch=4, repeats=15)
    begin, end = net.span(*bf.network.half_range(part))
    assert [r["index"] for r in prof["layers"]] == list(
        range(net.model.part_range(begin)[0], net.model.part_range(end)[1] + 1))
    assert all(r["ms"] >= 0 for r in prof["layers"])
    # the sum against a whole forward is a figure of benchmarks/bench_profile.py
    assert prof["total_ms"] == pytest.approx(sum(r["ms"] for r in prof["layers"]))
    assert prof["total_ms"] > 0 and prof["forward_ms"] > 0
    # a fused conv carries the time; the BN folded into it reports 0
    rows = {r["name"]: r for r in prof["layers"]}
    assert rows.get("stem.bn", {"ms": 0})["ms"] == 0


def test_profile_names_what_computes_each_layer():
    """Each row names its kernel: "" for a layer fused into another's node, "butterfly" for
    the quantizer, oneDNN's implementation otherwise -- with AVX2 or AVX-512 never a
    reference one, and the restoration unit's transposed conv not run as a conv's
    backward-data with its bias and ReLU in a reference loop ("conv:any+...": 39 against
    3.1 ms for a 96-channel unit at 112x112, which the blocked layout had brought)."""
    net = _small()
    kernel = {r["name"]: r["kernel"] for r in ex.profile(net, "all", repeats=1)["layers"]}
    assert kernel["stem.bn"] == kernel["stem.relu"] == kernel["rb1.add"] == ""
    assert kernel["reduce.quantize"] == kernel["restore.dequantize"] == "butterfly"
    assert kernel["stem.conv"] and kernel["fc"] and kernel["restore.spatial.conv"]
    if any(":avx2" in k or ":avx512" in k for k in kernel.values()):
        assert not [k for k in kernel.values() if k.startswith(("ref", "conv:any"))], kernel


def test_resnet50_macs_are_the_known_4_1_gmac():
    net = bf.resnet50()
    prof = ex.profile(net, "all", repeats=1)
    assert prof["macs"] == pytest.approx(4.1e9, rel=0.02)
    assert prof["macs"] == net.summary()["macs"]


def test_profile_rejects_bad_arguments():
    net = _small()
    with pytest.raises(bf.InvalidArgument):
        ex.profile(net, "phone")
    with pytest.raises(bf.InvalidArgument):
        ex.profile(net, "all", repeats=0)
    with pytest.raises(bf.InvalidArgument):
        net.plan(0, 3, 1).profile(np.zeros((1, 1, 28, 28), np.float32), repeats=0)
    with pytest.raises(bf.Error):
        ex.profile(net, "all", backend="vulkan")


def test_opencl_profile_is_supported_or_says_why():
    net = _small()
    with pytest.raises(bf.Unsupported):
        ex.profile(net, "cloud", repeats=1, backend="opencl")
    if not bf.opencl.available():
        with pytest.raises(bf.Unsupported, match="OpenCL"):
            ex.profile(net, "mobile", repeats=2, backend="opencl")
        pytest.skip("no OpenCL device: only the refusal was checked")
    prof = ex.profile(net, "mobile", repeats=2, backend="opencl")
    assert prof["backend"] == "opencl" and len(prof["layers"]) > 0
    assert all(r["ms"] >= 0 for r in prof["layers"]) and prof["forward_ms"] > 0


def test_opencl_profile_has_the_rows_of_the_onednn_profile():
    if not bf.opencl.available():
        pytest.skip("no OpenCL device")
    net = _small()
    cl = ex.profile(net, "mobile", repeats=2, backend="opencl")
    dnn = ex.profile(net, "mobile", repeats=1)
    assert [r["name"] for r in cl["layers"]] == [r["name"] for r in dnn["layers"]]


def test_candidates_and_machine_profile_feed_the_planner():
    net = _small()
    cands, nets = ex.split_candidates(net)
    assert [c.name for c in cands] == [f"RB{k}" for k in range(1, 9)]
    assert cands[1].payload_bytes == 14 * 14 + 8 == ex.payload_bytes(net)
    phone = ex.machine_profile(net, nets, repeats=2)
    plain = ex.layer_records(ex.plain_network(net))
    model = costmodel.CostModel(phone, phone, costmodel.networks["3g"], plain, input_bytes=800)
    tables = ex.cost_tables(model, cands)
    for key in costmodel.networks:
        rows = tables[key]["rows"]
        assert [r["name"] for r in rows] == ["cloud-only", "mobile-only"] + [c.name for c in cands]
        for obj, col in (("latency", "latency_ms"), ("energy", "energy_mj")):
            best = tables[key]["best"][obj]
            fastest = min(rows[2:], key=lambda r: r[col])  # the best split, not a baseline
            assert (best["split"], best["value"]) == (fastest["name"], pytest.approx(fastest[col]))
            assert best["cloud_only"] == pytest.approx(rows[0][col])
            assert best["mobile_only"] == pytest.approx(rows[1][col])
            assert best["gain_vs_cloud"] == pytest.approx(rows[0][col] / best["value"])
    assert "mean gain" in ex.format_tables(tables, "t")


def test_results_file_gives_trained_candidates(tmp_path):
    rows = [{"at": 1, "channels": 1, "stride": 2, "top1": 0.9, "payload_bytes": 204},
            {"at": 3, "channels": 2, "stride": 2, "top1": 0.91, "payload_bytes": 106}]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(rows))
    cands, _ = ex.split_candidates(_small(), results=path)
    assert [(c.name, c.accuracy, c.payload_bytes) for c in cands] == [
        ("RB1", 0.9, 204), ("RB3", 0.91, 106)]


def test_coded_sizes_match_zlib_and_zstd_frames():
    data = np.zeros((2, 1, 14, 14), np.uint8)
    data[:, :, :3] = 7
    sizes = ex.coded_sizes((data, np.zeros((2, 2), np.float32)))
    assert sizes["raw"] == 196 + 8
    assert sizes["zstd"] < sizes["raw"] and sizes["zlib"] < sizes["raw"]
    assert sizes["zero_fraction"] == pytest.approx(1 - 3 / 14)


def test_profile_and_plan_commands(tmp_path):
    model = tmp_path / "net.bfly"
    _small().save(model)
    prof = tmp_path / "p.json"
    cmd = [sys.executable, "-m", "butterfly.cli"]
    r = subprocess.run(cmd + ["profile", str(model), "--repeats", "3", "--save", str(prof)],
                       capture_output=True, text=True, env=child_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sum of layers" in r.stdout and prof.exists()
    rows = {line.split()[1]: line.split()[-1] for line in r.stdout.splitlines()[1:]
            if line.split() and line.split()[0].isdigit()}
    assert rows["stem.bn"] == "(fused)" and rows["reduce.quantize"] == "butterfly"
    assert costmodel.DeviceProfile.load(prof).kind == "measured"
    r = subprocess.run(cmd + ["plan", str(model), "--network", "4g", "--objective", "energy",
                              "--repeats", "2", "--input-bytes", "800"],
                       capture_output=True, text=True, env=child_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "best for energy on 4G" in r.stdout
