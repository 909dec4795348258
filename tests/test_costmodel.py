"""The cost model against hand-computed numbers and its own consistency rules."""

import dataclasses
import math

import pytest

from butterfly.experiments import costmodel as cm

# A toy network: head (phone), reduce (phone), restore (cloud), tail (cloud). Plain = no unit.
HEAD = {"name": "head", "macs": 2_000_000_000, "out_bytes": 1_000_000, "part": "head"}
REDUCE = {"name": "reduce", "macs": 1_000_000, "out_bytes": 784, "part": "reduce"}
RESTORE = {"name": "restore", "macs": 1_000_000, "out_bytes": 1_000_000, "part": "restore"}
TAIL = {"name": "tail", "macs": 3_000_000_000, "out_bytes": 4_000, "part": "tail"}
PLAIN = [HEAD, TAIL]
MOBILE_MS = {"head": 3.0, "reduce": 0.5, "restore": 4.0, "tail": 9.0}
CLOUD_MS = {"head": 0.4, "reduce": 0.01, "restore": 0.2, "tail": 1.3}


def _profiles(power_w=2.0):
    mobile = cm.DeviceProfile.measured(
        [{"name": k, "ms": v} for k, v in MOBILE_MS.items()], "phone", power_w
    )
    cloud = cm.DeviceProfile.measured([{"name": k, "ms": v} for k, v in CLOUD_MS.items()], "gpu")
    return mobile, cloud


def _model(network="4g", **kw):
    mobile, cloud = _profiles()
    return cm.CostModel(mobile, cloud, cm.networks[network], PLAIN, input_bytes=26_766, **kw)


SPLIT = cm.Candidate.from_layers("rb1", [HEAD, REDUCE, RESTORE, TAIL], 784, accuracy=0.74)


def test_paper_radio_table():
    assert (cm.networks["3g"].uplink_mbps, cm.networks["3g"].alpha_mw_per_mbps) == (1.1, 868.98)
    assert (cm.networks["4g"].uplink_mbps, cm.networks["4g"].beta_mw) == (5.85, 1288.04)
    assert cm.networks["wifi"] == cm.Network("Wi-Fi", 18.88, 283.17, 132.86)


def test_upload_time_and_power_by_hand():
    net = cm.networks["4g"]
    assert net.upload_ms(784) == pytest.approx(8 * 784 / 5.85e6 * 1e3)  # 1.0721 ms
    assert net.upload_power_mw == pytest.approx(438.39 * 5.85 + 1288.04)  # 3852.62 mW
    assert net.upload_energy_mj(784) == pytest.approx(8 * 784 / 5.85e6 * 3852.6215)  # s*mW = mJ
    assert cm.networks["3g"].upload_ms(26_766) == pytest.approx(194.6618, rel=1e-6)
    assert cm.networks["3g"].upload_power_mw == pytest.approx(868.98 * 1.1 + 817.88)
    assert cm.networks["wifi"].upload_power_mw == pytest.approx(283.17 * 18.88 + 132.86)
    slower = net.with_uplink(1.0)
    assert slower.upload_ms(1000) == pytest.approx(8.0)
    assert slower.upload_power_mw == pytest.approx(438.39 + 1288.04)
    with pytest.raises(ValueError):
        cm.Network("dead", 0.0, 1.0, 1.0)


def test_split_cost_by_hand():
    model = _model("4g")
    cost = model.cost(SPLIT)
    upload_ms = 8 * 784 / 5.85e6 * 1e3
    assert cost.mobile_ms == pytest.approx(3.0 + 0.5)
    assert cost.cloud_ms == pytest.approx(0.2 + 1.3)
    assert cost.latency_ms == pytest.approx(3.5 + upload_ms + 1.5)
    p_up_mw = 438.39 * 5.85 + 1288.04
    assert cost.energy_mj == pytest.approx(3.5 * 2.0 + upload_ms * p_up_mw / 1000)
    assert model.latency_ms(SPLIT) == cost.latency_ms and model.energy_mj(SPLIT) == cost.energy_mj


def test_cloud_only_and_mobile_only_by_hand():
    model = _model("3g")
    cloud = model.cloud_only()
    assert cloud.latency_ms == pytest.approx(8 * 26_766 / 1.1e6 * 1e3 + 0.4 + 1.3)
    assert cloud.energy_mj == pytest.approx(8 * 26_766 / 1.1e6 * (868.98 * 1.1 + 817.88))
    assert model.cloud_only(1000).upload_ms == pytest.approx(8 * 1000 / 1.1e6 * 1e3)
    mobile = model.mobile_only()
    assert (mobile.latency_ms, mobile.energy_mj) == (pytest.approx(12.0), pytest.approx(24.0))
    with pytest.raises(ValueError, match="input_bytes"):
        dataclasses.replace(model, input_bytes=None).cloud_only()


@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_split_at_end_is_mobile_only_plus_result_upload(network):
    model = _model(network)
    end = cm.Candidate("end", PLAIN, (), payload_bytes=40)
    mobile, net = model.mobile_only(), model.network
    assert model.latency_ms(end) == pytest.approx(mobile.latency_ms + net.upload_ms(40))
    assert model.energy_mj(end) == pytest.approx(mobile.energy_mj + net.upload_energy_mj(40))


@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_split_at_start_with_jpeg_payload_is_cloud_only(network):
    model = _model(network)
    start = cm.Candidate("start", (), PLAIN, payload_bytes=26_766)
    ref = model.cloud_only()
    assert model.latency_ms(start) == pytest.approx(ref.latency_ms)
    assert model.energy_mj(start) == pytest.approx(ref.energy_mj)


def test_from_layers_by_part_equals_by_index():
    layers = [HEAD, REDUCE, RESTORE, TAIL]
    by_index = cm.Candidate.from_layers("x", layers, 784, split_index=2)
    assert by_index.mobile_layers == SPLIT.mobile_layers == (HEAD, REDUCE)
    assert by_index.cloud_layers == SPLIT.cloud_layers == (RESTORE, TAIL)
    with pytest.raises(ValueError, match="part"):
        cm.Candidate.from_layers("x", [{"name": "a", "macs": 1, "out_bytes": 1}], 10)


def test_table_rows_and_ratios():
    model = _model("wifi")
    rows = model.table([SPLIT], baseline_accuracy=0.76)
    assert [r["kind"] for r in rows] == ["cloud-only", "mobile-only", "split"]
    cloud, mobile, split = rows
    assert cloud["latency_gain_vs_cloud"] == 1.0 and cloud["energy_gain_vs_cloud"] == 1.0
    assert split["latency_gain_vs_cloud"] == pytest.approx(
        cloud["latency_ms"] / split["latency_ms"]
    )
    assert mobile["energy_gain_vs_cloud"] == pytest.approx(cloud["energy_mj"] / 24.0)
    assert (cloud["accuracy"], split["accuracy"], split["payload_bytes"]) == (0.76, 0.74, 784)


def test_extensions_off_by_default_and_added_when_set():
    base = _model("4g", result_bytes=100)
    assert base.cost(SPLIT).extra_ms == 0.0 and base.cloud_only().extra_ms == 0.0
    net = dataclasses.replace(cm.networks["4g"], downlink_mbps=10.0, rtt_ms=20.0)
    ext = dataclasses.replace(base, network=net)
    extra = 20.0 + 8 * 100 / 10e6 * 1e3  # one RTT + 100 B down at 10 Mbit/s
    assert ext.latency_ms(SPLIT) == pytest.approx(base.latency_ms(SPLIT) + extra)
    assert ext.cloud_only().latency_ms == pytest.approx(base.cloud_only().latency_ms + extra)
    assert ext.mobile_only().latency_ms == base.mobile_only().latency_ms
    assert ext.energy_mj(SPLIT) == pytest.approx(base.energy_mj(SPLIT))


def test_scaled_profile_roofline_by_hand():
    dev = cm.DeviceProfile.scaled(100.0, 10.0, "d", power_w=1.5)  # 100 GMAC/s, 10 GB/s
    assert dev.kind == "scaled"
    assert dev.layer_time_ms(HEAD) == pytest.approx(2e9 / 100e9 * 1e3)  # compute-bound: 20 ms
    pool = {"name": "pool", "macs": 0, "out_bytes": 5_000_000, "weight_bytes": 1_000_000}
    assert dev.layer_time_ms(pool) == pytest.approx(6e6 / 10e9 * 1e3)  # memory-bound: 0.6 ms
    assert dev.energy_mj([HEAD, pool]) == pytest.approx((20.0 + 0.6) * 1.5)
    twice = dev.scaled_to([HEAD, pool], 10.3)
    assert twice.time_ms([HEAD, pool]) == pytest.approx(10.3)
    assert twice.gmacs_per_s == pytest.approx(200.0)


def test_phone_profile_matches_paper_mobile_only():
    phone = cm.phone_profile(PLAIN)
    assert phone.time_ms(PLAIN) == pytest.approx(15.7)
    assert phone.power_w == pytest.approx(20.5 / 15.7)  # 1.306 W
    assert phone.energy_mj(PLAIN) == pytest.approx(20.5)
    gpu = cm.cloud_profile()
    assert gpu.time_ms([TAIL]) == pytest.approx(3e9 / 2835e9 * 1e3)


def test_measured_profile_json_roundtrip_and_errors(tmp_path):
    mobile, _ = _profiles()
    path = tmp_path / "phone.json"
    mobile.save(path)
    loaded = cm.DeviceProfile.load(path)
    assert loaded == mobile and loaded.kind == "measured"
    assert loaded.time_ms([HEAD, REDUCE]) == pytest.approx(3.5)
    gpu = cm.cloud_profile()
    gpu.save(tmp_path / "gpu.json")
    assert cm.DeviceProfile.load(tmp_path / "gpu.json") == gpu
    rich = cm.DeviceProfile.measured([{**HEAD, "ms": 3.0}, {**TAIL, "ms": 9.0}], "phone", 2.0)
    rich.save(path)
    assert cm.DeviceProfile.load(path).records == ({**HEAD, "ms": 3.0}, {**TAIL, "ms": 9.0})
    assert rich.scaled_to(PLAIN, 6.0).records[1]["ms"] == pytest.approx(4.5)
    with pytest.raises(KeyError, match="nope"):
        mobile.time_ms([{"name": "nope"}])
    with pytest.raises(ValueError, match="duplicate"):
        cm.DeviceProfile.measured([{"name": "a", "ms": 1}, {"name": "a", "ms": 2}])
    assert mobile.scaled_to([HEAD], 6.0).time_ms([HEAD, REDUCE]) == pytest.approx(7.0)


def test_energy_is_nan_without_phone_power():
    mobile, cloud = _profiles(power_w=None)
    model = cm.CostModel(mobile, cloud, cm.networks["4g"], PLAIN, 26_766)
    assert math.isnan(model.energy_mj(SPLIT))
    assert model.latency_ms(SPLIT) == pytest.approx(_model("4g").latency_ms(SPLIT))


def test_gains_over_networks_is_mean_of_ratios():
    model = _model("4g")
    gains = cm.gains_over_networks(model, SPLIT)
    ratios = []
    for net in cm.networks.values():
        rows = dataclasses.replace(model, network=net).table([SPLIT])
        ratios.append(rows[2]["latency_gain_vs_cloud"])
        assert gains["per_network"][net.name]["energy"] == pytest.approx(
            rows[2]["energy_gain_vs_cloud"]
        )
    assert gains["latency"] == pytest.approx(sum(ratios) / 3)


def test_paper_payload_ratios():
    # BottleNet: 316 B uploaded is 84x less than the JPEG and 476x less than raw 224x224 RGB.
    assert int(cm.PAPER_JPEG_BYTES / 316) == 84
    assert int(224 * 224 * 3 / 316) == 476


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("args, kw, match", [
    (("x", NAN, 1.0, 1.0), {}, "uplink_mbps must be a finite number > 0"),
    (("x", INF, 1.0, 1.0), {}, "uplink_mbps must be a finite number > 0"),
    (("x", 0.0, 1.0, 1.0), {}, "uplink_mbps must be a finite number > 0"),
    (("x", 1.0, -1.0, 1.0), {}, "alpha_mw_per_mbps must be a finite number >= 0"),
    (("x", 1.0, 1.0, NAN), {}, "beta_mw must be a finite number >= 0"),
    (("x", 1.0, 1.0, 1.0), {"rtt_ms": -5.0}, "rtt_ms must be a finite number >= 0"),
    (("x", 1.0, 1.0, 1.0), {"downlink_mbps": NAN}, "downlink_mbps must be a finite"),
])
def test_network_refuses_non_finite_and_negative(args, kw, match):
    with pytest.raises(ValueError, match=match):
        cm.Network(*args, **kw)


def test_with_uplink_refuses_nan():
    with pytest.raises(ValueError, match="uplink_mbps must be a finite number > 0, not nan"):
        cm.networks["4g"].with_uplink(NAN)
    assert cm.networks["4g"].with_uplink(2.0).uplink_mbps == 2.0


def test_device_profile_refuses_bad_numbers():
    with pytest.raises(ValueError, match="gmacs_per_s must be a finite number > 0"):
        cm.DeviceProfile.scaled(0, 0)
    with pytest.raises(ValueError, match="gb_per_s must be a finite number > 0"):
        cm.DeviceProfile.scaled(1.0, -1.0)
    with pytest.raises(ValueError, match="gmacs_per_s must be a finite number > 0"):
        cm.DeviceProfile.scaled(NAN, 1.0)
    with pytest.raises(ValueError, match="power_w must be a finite number >= 0"):
        cm.DeviceProfile.scaled(1.0, 1.0, power_w=-2.0)
    with pytest.raises(ValueError, match="layer 'a'"):
        cm.DeviceProfile.measured([{"name": "a", "ms": NAN}])
    with pytest.raises(ValueError, match="layer 'a'"):
        cm.DeviceProfile.measured([{"name": "a", "ms": -1.0}])
    with pytest.raises(ValueError, match="total_ms must be a finite number > 0"):
        cm.phone_profile(PLAIN, total_ms=0)
    with pytest.raises(ValueError, match="total_ms must be a finite number > 0"):
        cm.phone_profile(PLAIN, total_ms=NAN)
    with pytest.raises(ValueError, match="energy_mj must be a finite number >= 0"):
        cm.phone_profile(PLAIN, energy_mj=-1.0)
    with pytest.raises(ValueError, match="total_ms must be a finite number > 0"):
        cm.cloud_profile().scaled_to(PLAIN, NAN)


def test_candidate_and_cost_model_refuse_bad_sizes():
    with pytest.raises(ValueError, match="payload_bytes must be a finite number >= 0"):
        cm.Candidate("c", (), (), NAN)
    with pytest.raises(ValueError, match="accuracy is a fraction"):
        cm.Candidate("c", (), (), 10, accuracy=74.0)
    with pytest.raises(TypeError, match="payload_bytes must be a number"):
        cm.Candidate("c", (), (), "784")
    model = _model("4g")
    with pytest.raises(ValueError, match="input_bytes must be a finite number >= 0"):
        model.cloud_only(-100)
    with pytest.raises(ValueError, match="input_bytes must be a finite number >= 0"):
        dataclasses.replace(model, input_bytes=-1)
    with pytest.raises(ValueError, match="result_bytes must be a finite number >= 0"):
        dataclasses.replace(model, result_bytes=NAN)


def test_gains_over_no_networks():
    with pytest.raises(ValueError, match="at least one network"):
        cm.gains_over_networks(_model("4g"), SPLIT, [])
