"""Data sets: the idx reader on hand-made files, Fashion-MNIST as shipped by Debian, digits."""

import gzip
import sys

import numpy as np
import pytest

from butterfly import datasets as ds

HAVE_FASHION = (ds.FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="apt-get install dataset-fashion-mnist")


def _write_idx(path, magic, dims, payload, compress=True):
    header = np.array([magic, *dims], dtype=">u4").tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(header + bytes(payload))


def _fake_root(tmp_path, n=5, compress=True):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    suffix = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte{suffix}",
            0x803,
            (n, 28, 28),
            pixels.tobytes(),
            compress,
        )
        _write_idx(
            tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}",
            0x801,
            (n,),
            labels.tobytes(),
            compress,
        )
    return pixels, labels


@pytest.mark.parametrize("compress", [True, False])
def test_idx_reader_on_handmade_files(tmp_path, compress):
    pixels, labels = _fake_root(tmp_path, compress=compress)
    train, test = ds.fashion_mnist(tmp_path)
    np.testing.assert_array_equal(np.round(train.images[:, 0] * 255).astype(np.uint8), pixels)
    np.testing.assert_array_equal(test.labels, labels)
    assert train.images.dtype == np.float32 and train.labels.dtype == np.int32


def test_bad_idx_files_are_rejected(tmp_path):
    _fake_root(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    _write_idx(bad, 0x801, (5, 28, 28), bytes(5 * 784))
    with pytest.raises(ValueError, match="magic"):
        ds.fashion_mnist(tmp_path)
    _write_idx(bad, 0x803, (5, 28, 28), bytes(5 * 784 - 1))
    with pytest.raises(ValueError, match="bytes"):
        ds.fashion_mnist(tmp_path)
    _write_idx(bad, 0x803, (5, 32, 32), bytes(5 * 1024))
    with pytest.raises(ValueError, match="shape"):
        ds.fashion_mnist(tmp_path)
    _write_idx(bad, 0x803, (4, 28, 28), bytes(4 * 784))
    with pytest.raises(ValueError, match="labels"):
        ds.fashion_mnist(tmp_path)


def test_missing_files_say_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(ds.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        ds.fashion_mnist(tmp_path / "nowhere")
    monkeypatch.setenv("BUTTERFLY_FASHION_MNIST", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ds.fashion_mnist()


@pytest.fixture(scope="module")
def fashion():
    return ds.fashion_mnist()


@needs_fashion
def test_fashion_mnist_as_shipped(fashion):
    train, test = fashion
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.dtype == np.float32 and train.labels.dtype == np.int32
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    assert np.all(np.bincount(train.labels) == 6_000) and np.all(np.bincount(test.labels) == 1_000)
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train[0][1] == 9 and test[0][1] == 9  # both files open with an ankle boot
    assert float(train.images.mean()) == pytest.approx(ds.FASHION_MNIST_MEAN, abs=1e-6)
    assert float(train.images.std()) == pytest.approx(ds.FASHION_MNIST_STD, abs=1e-6)


@needs_fashion
def test_fashion_mnist_subset_and_normalize(fashion):
    train, test = ds.fashion_mnist(subset=100, normalize=True)
    assert (len(train), len(test)) == (100, 100)
    expected = (fashion[0].images[:100] - ds.FASHION_MNIST_MEAN) / ds.FASHION_MNIST_STD
    np.testing.assert_allclose(train.images, expected, atol=1e-6)
    np.testing.assert_array_equal(test.labels, fashion[1].labels[:100])


def test_dataset_indexing_subset_batches():
    data = ds.synthetic(50, (1, 4, 4), classes=5, seed=3)
    image, label = data[7]
    assert image.shape == (1, 4, 4) and label == 7 % 5
    part = data[10:20]
    assert isinstance(part, ds.Dataset) and len(part) == 10 and part.classes == data.classes
    np.testing.assert_array_equal(part.labels, data.labels[10:20])
    a, b = data.subset(20, seed=1), data.subset(20, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, data.subset(20, seed=2).images)
    flat = {tuple(x.ravel()) for x in a.images}
    assert len(flat) == 20  # without replacement
    with pytest.raises(ValueError):
        data.subset(51)
    sizes = [len(y) for _, y in data.batches(16, shuffle=True, seed=0)]
    assert sizes == [16, 16, 16, 2]
    seen = np.concatenate([y for _, y in data.batches(16)])
    np.testing.assert_array_equal(seen, data.labels)
    with pytest.raises(ValueError, match="float32"):
        ds.Dataset(np.zeros((2, 1, 4, 4)), np.zeros(2, np.int32), ("a",))
    with pytest.raises(ValueError, match="int32"):
        ds.Dataset(np.zeros((2, 1, 4, 4), np.float32), np.zeros(3, np.int32), ("a",))


def test_synthetic_is_deterministic_and_learnable():
    data = ds.synthetic(200, (1, 8, 8), classes=4, seed=0)
    assert data.images.shape == (200, 1, 8, 8) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert np.bincount(data.labels).tolist() == [50, 50, 50, 50]
    np.testing.assert_array_equal(data.images, ds.synthetic(200, (1, 8, 8), 4, seed=0).images)
    assert not np.array_equal(data.images, ds.synthetic(200, (1, 8, 8), 4, seed=1).images)
    train, test = data[:100], data[100:]
    means = np.stack([train.images[train.labels == k].mean(0) for k in range(4)])
    dist = ((test.images[:, None] - means[None]) ** 2).sum(axis=(2, 3, 4))
    assert (dist.argmin(1) == test.labels).mean() > 0.95  # nearest class mean


def test_digits():
    pytest.importorskip("sklearn")
    train, test = ds.digits(test_fraction=0.2, seed=0)
    assert len(train) + len(test) == 1797 and len(test) == round(1797 * 0.2)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.float32
    assert train.images.max() == 1.0 and train.images.min() == 0.0
    assert set(np.unique(train.labels)) == set(range(10)) and train.classes[3] == "3"


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="scikit-learn"):
        ds.digits()
