"""The four split ops, model files, shapes and sizes, and bad input."""

import os
from pathlib import Path

import numpy as np
import pytest
import reference
from conftest import assert_close

import butterfly as bf

SMALL = dict(small=True, num_classes=10, in_channels=1, width=16)


def images(rng, n, shape):
    return rng.random((n, *shape), dtype=np.float32)


@pytest.mark.parametrize("at", [1, 4, 8])
@pytest.mark.parametrize("channels", [1, 2, 8])
@pytest.mark.parametrize("stride", [1, 2])
def test_resnet18_small_four_ops_compose(at, channels, stride, rng):
    net = bf.resnet18(**SMALL, butterfly=bf.Butterfly(at=at, channels=channels,
                                                      stride=stride))
    x = images(rng, 3, (1, 28, 28))
    y = net.forward(x)
    h = net.head(x)
    pay = net.reduce(h)
    r = net.restore(pay)
    assert r.shape == h.shape
    np.testing.assert_array_equal(net.tail(r), y)
    np.testing.assert_array_equal(net.cloud(net.mobile(x)), y)
    c, hh, ww = h.shape[1:]
    expect_hw = -(-hh // stride)
    assert pay.data.shape == (3, channels, expect_hw, -(-ww // stride))


@pytest.mark.parametrize("at", [1, 7, 16])
def test_resnet50_224_four_ops_compose(at, rng):
    net = bf.resnet50(num_classes=100, butterfly=bf.Butterfly(at=at, channels=2, stride=2))
    x = images(rng, 1, (3, 224, 224))
    y = net.forward(x)
    np.testing.assert_array_equal(net.tail(net.restore(net.reduce(net.head(x)))), y)


def test_resnet50_rb1_payload_is_784_bytes(rng):
    net = bf.resnet50(num_classes=1000, butterfly=bf.Butterfly(at=1, channels=1, stride=2))
    pay = net.mobile(images(rng, 1, (3, 224, 224)))
    assert pay.data.shape == (1, 1, 28, 28) and pay.data.dtype == np.uint8
    assert pay.data[0].nbytes == 784 and pay.nbytes_per_sample == 784 + 8
    assert net.summary()["payload_bytes"] == 784


def test_resnet50_shapes_and_flops():
    net = bf.resnet50(num_classes=1000)
    pts = [p for p in net.split_points() if "block" in p]
    assert [p["block"] for p in pts] == list(range(1, 17))
    assert [p["shape"] for p in pts[:3]] == [(256, 56, 56)] * 3
    assert [p["shape"] for p in pts[3:7]] == [(512, 28, 28)] * 4
    assert [p["shape"] for p in pts[7:13]] == [(1024, 14, 14)] * 6
    assert [p["shape"] for p in pts[13:]] == [(2048, 7, 7)] * 3
    s = net.summary()
    assert abs(s["macs"] / 4.1e9 - 1) < 0.02  # the known 4.1 GMAC
    assert s["params"] - sum(4 * c for c in _bn_channels(net)) == 25557032  # torchvision's


def _bn_channels(net):
    # running mean / var are counted as parameters by the core, not by torchvision
    return [r["out_dims"][0] // 2 for r in net.layers() if r["type"] == "batchnorm"]


def test_plain_resnet18_matches_numpy_reference(rng):
    net = bf.resnet18(**SMALL, input_size=12)
    for i in range(len(net.model)):
        for k, (name, _) in enumerate(net.model.param_names(i)):
            if name in ("gamma", "beta", "running_mean", "running_var"):
                p = net.model.get_param(i, k)
                lo, hi = {"gamma": (0.5, 1.5), "beta": (-0.5, 0.5), "running_mean": (-0.5, 0.5),
                          "running_var": (0.5, 2.0)}[name]
                net.model.set_param(i, k, rng.uniform(lo, hi, p.shape).astype(np.float32))
    layers = [net.model.layer(i) for i in range(len(net.model))]
    params = [[net.model.get_param(i, k) for k in range(len(net.model.param_names(i)))]
              for i in range(len(net.model))]
    x = images(rng, 2, (1, 12, 12))
    ref = reference.run(layers, params, x).reshape(2, -1)
    assert_close(net.forward(x), ref, 1e-4)


def test_batch_equals_images_one_by_one(rng):
    net = bf.resnet18(**SMALL, butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    x = images(rng, 4, (1, 28, 28))
    batch = net.mobile(x)
    for i in range(4):
        one = net.mobile(x[i:i + 1])
        np.testing.assert_array_equal(one.data[0], batch.data[i])
        np.testing.assert_array_equal(one.ranges[0], batch.ranges[i])


def test_save_load_roundtrip_and_halves(tmp_path, rng):
    net = bf.resnet18(**SMALL, butterfly=bf.Butterfly(at=3, channels=4, stride=2))
    net.meta["dataset"] = "test"
    path = tmp_path / "m.bfly"
    net.save(path)
    x = images(rng, 2, (1, 28, 28))
    y = net.forward(x)
    full = bf.Network.load(path)
    np.testing.assert_array_equal(full.forward(x), y)
    assert full.meta["dataset"] == "test" and full.butterfly["channels"] == 4
    assert full.hash == net.hash
    mobile = bf.load(path, part="mobile")
    cloud = bf.load(path, part="cloud")
    assert mobile.hash == cloud.hash == net.hash
    np.testing.assert_array_equal(cloud.cloud(mobile.mobile(x)), y)
    with pytest.raises(bf.InvalidArgument, match="not loaded"):
        mobile.forward(x)
    with pytest.raises(bf.InvalidArgument, match="not loaded"):
        cloud.head(x)
    # a half saved on its own keeps the hash and refuses to load as a whole
    mobile.save(tmp_path / "mobile.bfly")
    assert os.path.getsize(tmp_path / "mobile.bfly") < os.path.getsize(path)
    assert bf.load(tmp_path / "mobile.bfly", part="mobile").hash == net.hash
    with pytest.raises(bf.ModelError, match="half"):
        bf.load(tmp_path / "mobile.bfly")


def test_hash_changes_with_weights():
    net = bf.resnet18(**SMALL)
    h = net.hash
    w = net.model.get_param(1, 0)
    net.model.set_param(1, 0, w * 2)
    assert net.hash != h


def test_meta_nesting_limit(tmp_path):
    """A meta the model file's reader would refuse is refused when set, not when loaded."""
    net = bf.resnet18(**SMALL)

    def nest(n):
        x = 1
        for _ in range(n):
            x = [x]
        return x

    net.meta["deep"] = nest(25)
    net.save(tmp_path / "ok.bfly")
    assert bf.Network.load(tmp_path / "ok.bfly").meta["deep"] == nest(25)
    net.meta["deep"] = nest(40)
    with pytest.raises(bf.Error, match="nested at most"):
        net.save(tmp_path / "deep.bfly")


def test_bad_model_files(tmp_path):
    net = bf.resnet18(**SMALL)
    data = net.to_bytes()
    cases = {
        "empty": b"",
        "random": np.random.default_rng(0).bytes(1000),
        "truncated": data[: len(data) // 2],
        "trailing": data + b"\x00",
        "not a map": b"\x93\x01\x02\x03",
        # containers declaring more elements than the file has bytes (msgpack-c would
        # allocate them all before reading one), and nesting past any model's depth
        "huge map": b"\xdf\x7f\xff\xff\xff",
        "huge layer list": b"\x81\xa6layers\xdd\x7f\xff\xff\xff\x01",
        "deep": b"\x91" * 40 + b"\x01",
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}.bfly"
        p.write_bytes(blob)
        # the huge and deep ones are refused by the bounds pre-check, before any unpacking
        match = "larger than the file" if name in ("huge map", "huge layer list", "deep") \
            else "not a msgpack map" if name == "not a map" else None
        with pytest.raises(bf.ModelError, match=match) as err:
            bf.load(p)
        # the file's name, then the reason, once (wrapping the reason once garbled it)
        assert str(err.value).startswith(f"'{p}': ") and str(err.value).count(str(p)) == 1
    with pytest.raises(bf.FileError):
        bf.load(tmp_path / "missing.bfly")
    with pytest.raises(bf.FileError, match="a directory"):  # was "out of memory reading"
        bf.load(tmp_path)
    with pytest.raises(bf.FileError, match="not a regular file"):
        bf.load("/dev/zero")
    # a corrupted byte inside the weights keeps the structure valid but changes the hash;
    # inside the layer specs it must be caught
    import msgpack

    desc = msgpack.unpackb(data, raw=False)
    for mutate in (lambda d: d.update(version=99), lambda d: d.update(format="x"),
                   lambda d: d["layers"][1].update(type="nope"),
                   lambda d: d["layers"][1].update(inputs=[5]),
                   lambda d: d["layers"][1].update(kernel=[0, 3]),
                   lambda d: d["params"][1][0].update(data=b"\x00" * 12),
                   lambda d: d["params"][1][0].update(shape=[1, 2, 3, 4]),
                   lambda d: d["params"].pop(),
                   lambda d: d["layers"][3].update(type="add")):
        d = msgpack.unpackb(data, raw=False)
        mutate(d)
        with pytest.raises(bf.ModelError):
            bf._C.Model(msgpack.packb(d, use_bin_type=True))
    nan = msgpack.unpackb(data, raw=False)
    nan["params"][1][0]["data"] = np.full(len(nan["params"][1][0]["data"]) // 4, np.nan,
                                          "<f4").tobytes()
    with pytest.raises(bf.ModelError, match="NaN"):
        bf._C.Model(msgpack.packb(nan, use_bin_type=True))
    assert isinstance(desc, dict)
    # a half file carries the whole model's hash; one that is not 16 hex digits (a NUL in
    # it once let a half load and then save a file that would not load back) is refused
    half = msgpack.unpackb(data, raw=False)
    for p in half["params"][1]:
        p.pop("data")  # the stem's weights gone: only the cloud half can load
    for h in ("0123456789abcdef", "0123456\x00789abcde", "0123456789ABCDEF"):
        half["hash"] = h
        path = tmp_path / "half.bfly"
        path.write_bytes(msgpack.packb(half, use_bin_type=True))
        if h == "0123456789abcdef":
            cloud = bf.Network.load(path, part="cloud")
            assert cloud.hash == h
        else:
            with pytest.raises(bf.ModelError, match="hex digits"):
                bf.Network.load(path, part="cloud")


def test_bad_inputs(rng):
    net = bf.resnet18(**SMALL, butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    x = images(rng, 2, (1, 28, 28))
    with pytest.raises(bf.InvalidArgument, match="float"):
        net.forward(x.astype(np.int32))
    with pytest.raises(bf.InvalidArgument, match="shape"):
        net.forward(x[:, :, :27])
    with pytest.raises(bf.InvalidArgument):
        net.forward(np.zeros((0, 1, 28, 28), np.float32))
    bad = x.copy()
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(bf.NumericError):
        net.forward(bad)
    with pytest.raises(bf.NumericError):
        net.forward(np.full_like(x, np.inf))
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(net.forward(ro), net.forward(x))  # read-only input is fine
    nc = np.asfortranarray(x)
    np.testing.assert_array_equal(net.forward(nc), net.forward(x))  # copied, same result
    pay = net.mobile(x)
    with pytest.raises(bf.InvalidArgument, match="uint8"):
        net.restore((pay.data.astype(np.float32), pay.ranges))
    with pytest.raises(bf.InvalidArgument, match="ranges"):
        net.restore((pay.data, pay.ranges[:1]))
    with pytest.raises(bf.InvalidArgument, match="range"):
        net.restore((pay.data, pay.ranges[:, ::-1].copy()))
    # the extension itself refuses what the Python layer would have converted
    plan = net.plan(0, 3, 2)
    with pytest.raises(bf.InvalidArgument, match="dtype"):
        plan.forward(x.astype(np.float64))
    # strided, misaligned, byte-swapped: copied by the extension (its advice to use
    # numpy.ascontiguousarray did not fix a misaligned array, which is contiguous already)
    want = plan.forward(x)
    buf = np.zeros(x.nbytes + 1, np.uint8)
    misaligned = np.ndarray(x.shape, np.float32, buffer=buf, offset=1)
    misaligned[...] = x
    assert not misaligned.flags.aligned
    for view in (np.asfortranarray(x), misaligned, x.astype(">f4")):
        np.testing.assert_array_equal(plan.forward(view), want)
    np.testing.assert_array_equal(net.forward(misaligned), net.forward(x))
    with pytest.raises(bf.InvalidArgument, match="dimension"):
        plan.forward(x[:1])
    with pytest.raises(bf.InvalidArgument, match="numpy array"):
        plan.forward([1, 2, 3])
    cloud_plan = bf._C.Plan(net.model, 2, 3, 2)
    with pytest.raises(bf.InvalidArgument, match="ranges must be a numpy array"):
        cloud_plan.forward(pay.data, None)


def test_user_errors_are_butterfly_errors(tmp_path, rng):
    # each raised something outside bf.Error: OverflowError (while -1 gave InvalidArgument),
    # a silent cut at the NUL, ValueError for NUL in a path and for string ranges
    net = bf.resnet18(**SMALL, butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    path = tmp_path / "net.bfly"
    net.save(path)
    for timeout in (2**31, 2**70, -1, 0):
        with pytest.raises(bf.InvalidArgument, match="timeout_ms"):
            bf.Client(path, "tcp://127.0.0.1:1", timeout_ms=timeout)
    with pytest.raises(bf.InvalidArgument, match=r"below 2\*\*31"):
        bf._C.Client("tcp://127.0.0.1:1", net.hash, 3, timeout_ms=2**31)
    with pytest.raises(bf.InvalidArgument, match=r"below 2\*\*31"):
        bf.serving.Pool(str(path), workers=2**40, frontend="tcp://127.0.0.1:*")
    with pytest.raises(bf.InvalidArgument, match="NUL"):
        bf.Client(path, "tcp://127.0.0.1:1\0tcp://10.0.0.1:2")
    with pytest.raises(bf.InvalidArgument, match="null"):
        bf.serve(path, bind="tcp://127.0.0.1:*\0x")
    with pytest.raises(bf.InvalidArgument, match="null"):
        bf.load(str(path) + "\0.bak")
    with pytest.raises(bf.InvalidArgument, match="null"):
        net.save(str(path) + "\0.bak")
    # a path that is not UTF-8 in the message: escaped (was a UnicodeDecodeError)
    with pytest.raises(bf.FileError, match=r"\\xff\\xfe"):
        bf.load(os.fsencode(tmp_path) + b"/\xff\xfe.bfly")
    with pytest.raises(TypeError):  # a wrong type stays a TypeError
        bf._C.Client(5, net.hash, 3)
    pay = net.mobile(images(rng, 1, (1, 28, 28)))
    for ranges in ([["a", "b"]], [[0.0], [1.0, 2.0]], "0 1"):
        with pytest.raises(bf.InvalidArgument, match="ranges"):
            net.cloud((pay.data, ranges))


def with_meta(net, blob: bytes) -> bytes:
    """net's model file with its metadata replaced by the msgpack bytes blob."""
    model = bf._C.Model(net.to_bytes())
    model.set_meta(blob)
    return model.to_bytes()


def test_bad_metadata_is_a_model_error(tmp_path):
    # msgpack decoded in Python raised UnicodeDecodeError / ValueError (and `butterfly
    # serve` printed a traceback) for metadata the core had loaded as one msgpack object
    net = bf.resnet18(**SMALL, butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    cases = {
        "str not UTF-8": b"\x81\xa6config\x81\xa4arch\xa2\xff\xfe",
        "key not UTF-8": b"\x81\xa2\xc3\x28\x01",
        "int key": b"\x81\x01\x02",
        "list key": b"\x81\x91\x01\x02",
        "config a list": b"\x81\xa6config\x92\x01\x02",
        "butterfly a str": b"\x81\xa9butterfly\xa1x",
        "classes an int": b"\x81\xa7classes\x05",
    }
    for name, blob in cases.items():
        p = tmp_path / f"{len(name)}.bfly"
        p.write_bytes(with_meta(net, blob))
        with pytest.raises(bf.ModelError, match="metadata"):
            bf.load(p)
    # the model fuzzer's metadata seeds, through the Python layer
    seeds = sorted((Path(__file__).parent / "fuzz" / "corpus_model").glob("meta_*"))
    assert len(seeds) >= 4
    refused = 0
    for seed in seeds:
        try:
            bf.load(seed)
        except bf.ModelError:
            refused += 1
    assert refused >= 2  # the strs that are not UTF-8, the int / array keys
    # what stays readable: no metadata, or a value that is not a map
    for blob in (b"\xc0", b"\x05", b"\x80"):
        assert bf.Network(bf._C.Model(with_meta(net, blob))).meta == {}
    # the CLI: one line, no traceback
    p = tmp_path / "bad_meta.bfly"
    p.write_bytes(with_meta(net, cases["str not UTF-8"]))
    import subprocess
    import sys

    from butterfly import serving

    out = subprocess.run([sys.executable, "-m", "butterfly.cli", "serve", str(p), "--bind",
                          "tcp://127.0.0.1:*"], capture_output=True, text=True, timeout=60,
                         env=serving.child_env())
    assert out.returncode == 2 and "ModelError" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_metadata_mutations_never_raise_outside_bf_error(tmp_path):
    # random byte changes inside the metadata of a real model file (the probe that found
    # the fault above): every file loads or raises a bf.Error
    net = bf.resnet18(small=True, num_classes=10, in_channels=1, width=4,
                      butterfly=bf.Butterfly(at=2, channels=2, stride=2))
    net.meta["classes"] = [f"class é{i}" for i in range(10)]
    net.meta["trained"] = {"epochs": 3, "top1": 0.91, "note": "ünïcode ✓"}
    data = net.to_bytes()
    meta = bf._C.Model(data).meta
    start = data.find(meta)
    assert start > 0
    rng = np.random.default_rng(16)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(120):
        blob = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            blob[start + int(rng.integers(len(meta)))] = int(rng.integers(256))
        try:
            bf.Network(bf._C.Model(bytes(blob)))
            outcomes["loaded"] += 1
        except bf.Error:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_no_butterfly_unit_errors(rng):
    net = bf.resnet18(**SMALL)
    x = images(rng, 1, (1, 28, 28))
    assert net.forward(x).shape == (1, 10)
    with pytest.raises(bf.InvalidArgument, match="butterfly"):
        net.reduce(net.head(x))


def test_builder_errors():
    with pytest.raises(ValueError, match="1..8"):
        bf.resnet18(**SMALL, butterfly=bf.Butterfly(at=9))
    with pytest.raises(ValueError):
        bf.resnet(101)
    with pytest.raises(ValueError):
        bf.Butterfly(at=1, channels=0)


def test_two_threads_two_plans(rng):
    """The GIL is released around compute: two plans run at once and give the same answer."""
    import threading

    net = bf.resnet18(**SMALL)
    x = images(rng, 8, (1, 28, 28))
    want = net.forward(x)
    other = bf.resnet18(**SMALL)
    got, errs = {}, []

    def work(n, name):
        try:
            for _ in range(5):
                got[name] = n.forward(x)
        except Exception as e:  # noqa: BLE001
            errs.append(e)

    ts = [threading.Thread(target=work, args=(n, i)) for i, n in enumerate([net, other, net])]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(got[2], want)


def _probe_net():
    return bf.resnet18(small=True, num_classes=10, in_channels=1, width=8,
                       butterfly=bf.Butterfly(at=1, channels=1, stride=2))


def test_predict_k_must_be_in_one_to_classes(rng):
    net = _probe_net()
    x = images(rng, 2, (1, 28, 28))
    for k in (0, -1, 11):
        with pytest.raises(bf.InvalidArgument, match=r"k must be in \[1, 10\]"):
            net.predict(x, k=k)
    for k in (1.0, True, "3"):
        with pytest.raises(TypeError, match="k must be an int"):
            net.predict(x, k=k)
    assert net.predict(x, k=10).shape == (2, 10)
    assert net.predict(x, k=np.int64(3)).shape == (2, 3)


def test_butterfly_arguments_must_be_ints():
    for kw in ({"at": 1.5}, {"at": True}, {"at": 1, "channels": 2.0},
               {"at": 1, "stride": "2"}):
        with pytest.raises(TypeError, match="must be an int"):
            bf.Butterfly(**kw)
    with pytest.raises(ValueError, match="Butterfly.stride must be >= 1"):
        bf.Butterfly(at=1, stride=0)
    b = bf.Butterfly(at=np.int64(2), channels=np.int32(1))
    assert type(b.at) is int and type(b.channels) is int  # msgpack-able metadata
    assert bf.resnet18(**SMALL, butterfly=b).butterfly["at"] == 2
    assert bf.Butterfly(at="RB2") == bf.Butterfly(at=2)


@pytest.mark.parametrize("kw, err, match", [
    ({"width": 0}, ValueError, "width must be >= 1"),
    ({"width": -8}, ValueError, "width must be >= 1"),
    ({"width": 8.0}, TypeError, "width must be an int"),
    ({"num_classes": 0}, ValueError, "num_classes must be >= 1"),
    ({"in_channels": 0}, ValueError, "in_channels must be >= 1"),
    ({"in_channels": True}, TypeError, "in_channels must be an int"),
    ({"input_size": 0}, ValueError, "input_size must be >= 1"),
    ({"butterfly": {"at": 1}}, TypeError, "butterfly must be a butterfly.Butterfly"),
])
def test_builder_argument_errors(kw, err, match):
    with pytest.raises(err, match=match):
        bf.resnet18(**{**SMALL, **kw})
    with pytest.raises(ValueError, match="unknown ResNet"):
        bf.resnet(18.0)


def test_mobile_of_a_plain_network_raises(rng):
    plain = bf.resnet18(**SMALL)
    x = images(rng, 2, (1, 28, 28))
    with pytest.raises(bf.InvalidArgument, match="no butterfly unit: nothing to split"):
        plain.mobile(x)
    pay = _probe_net().mobile(x)
    for op in (plain.restore, plain.cloud):
        with pytest.raises(bf.InvalidArgument, match="no butterfly unit"):
            op(pay)


def test_empty_payload(rng):
    net = _probe_net()
    pay = net.mobile(images(rng, 2, (1, 28, 28)))
    empty = bf.Payload(pay.data[:0], pay.ranges[:0])
    for op in (net.restore, net.cloud):
        with pytest.raises(bf.InvalidArgument, match="payload is empty"):
            op(empty)
    # bytes per image follow from the shape, with or without samples
    assert empty.nbytes_per_sample == pay.nbytes_per_sample == 14 * 14 + 8


def test_builders_take_shapes_and_parameter_names_from_the_core():
    from butterfly.network import LayerList, infer_layers, layer_info

    L = LayerList((3, 11, 10))
    L.conv_bn(8, 3, 2, name="a")
    L.pool("maxpool", 3, 2, 1)
    L.conv(8, 3, 2, deconv=True, output_pad=1, bias=True)
    L.add(L.last, L.last)
    L.global_avgpool()
    L.linear(5)
    net = bf.Network.from_layers(L.layers, L.params)
    for i, info in enumerate(infer_layers(L.layers)):
        assert tuple(info["out_dims"]) == tuple(net.model.info(i)["out_dims"]) == L.shapes[i]
        assert info["param_shapes"] == net.model.param_names(i)
        assert [p.shape for p in L.params[i]] == [shape for _, shape in info["param_shapes"]]
    conv = {"type": "conv", "inputs": [0], "out_channels": 6, "kernel": [3, 3],
            "stride": [2, 2], "pad": [1, 1], "groups": 2, "bias": True}
    info = layer_info(conv, 1, [(4, 9, 7)])
    assert info["out_dims"] == (6, 5, 4)
    assert info["param_shapes"] == [("weight", (6, 2, 3, 3)), ("bias", (6,))]
    with pytest.raises(bf.ModelError, match="groups 2 must divide channels 3"):
        layer_info(conv, 1, [(3, 9, 7)])
    with pytest.raises(bf.ModelError, match="add of different shapes"):
        layer_info({"type": "add", "inputs": [0, 1]}, 2, [(3, 4, 4), (3, 2, 2)])
    with pytest.raises(bf.InvalidArgument, match="has 2 input"):
        layer_info({"type": "add", "inputs": [0, 1]}, 2, [(3, 4, 4)])
    with pytest.raises(bf.ModelError, match="unknown 'type'"):
        layer_info({"type": "nope", "inputs": [0]}, 1, [(3, 4, 4)])


def test_the_core_describes_its_layer_types():
    # front ends (the ONNX importer) ask the core's table instead of keeping their own lists
    types = bf._C.layer_types()
    assert types["conv"] == {"inputs": 1, "activation": False, "flat_ok": False,
                             "out_u8": False}
    assert types["add"]["inputs"] == 2 and types["concat"]["inputs"] == -1
    assert types["input"]["inputs"] == 0
    acts = {n for n, t in types.items() if t["activation"]}
    assert acts == {"relu", "relu6", "sigmoid", "swish", "hardswish", "hardsigmoid", "clip",
                    "leaky_relu"}
    assert {n for n, t in types.items() if t["out_u8"]} == {"quantize"}
    assert {n for n, t in types.items() if t["flat_ok"]} == acts | {
        "add", "linear", "softmax", "quantize", "dequantize"}
    assert len(types) == 23 and "maxpool" in types and "deconv" in types


@pytest.mark.parametrize("env,want", [({}, "None 10000"),
                                      ({"OMP_WAIT_POLICY": "passive"}, "passive None"),
                                      ({"GOMP_SPINCOUNT": "0"}, "None 0")])
def test_openmp_threads_spin_briefly_unless_the_user_chose(env, want):
    # long-spinning libgomp threads slow a forward several times over when other processes
    # load the cores: importing butterfly shortens the spin before the extension loads
    # libgomp, unless the user set a wait policy or a spin count
    import subprocess
    import sys

    keys = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    base = {k: v for k, v in os.environ.items() if k not in keys}
    code = f"import os, butterfly; print(*(os.environ.get(k) for k in {keys}))"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == want
