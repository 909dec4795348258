"""JPEG sizes: the cloud-only baseline measured on real photographs and on small grayscale."""


import numpy as np
import pytest

from butterfly import jpeg

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("skimage")
    return jpeg.sample_photos_224()


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_photos_load_offline_as_224_rgb(photos):
    assert tuple(photos) == jpeg.PHOTO_NAMES
    for name, image in photos.items():
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8, name
        assert image.std() > 20, name  # real content, not a blank
    assert not np.array_equal(photos["motorcycle_left"], photos["motorcycle_right"])


def test_sizes_fall_with_quality_and_decode_close(photos):
    for name, image in photos.items():
        sizes = [jpeg.jpeg_bytes(image, q) for q in (20, 50, 90, 100)]
        assert 0 < sizes[0] < sizes[1] < sizes[2] < sizes[3], name
        assert sizes[3] < image.nbytes  # still smaller than raw 150,528 B
        data = jpeg.encode(image)
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
        assert _psnr(jpeg.decode(data), image) > 30, name


def test_average_is_the_mean_and_near_the_paper(photos):
    sizes = [jpeg.jpeg_bytes(im, 95) for im in photos.values()]
    avg = jpeg.average_jpeg_bytes(95)
    assert avg == pytest.approx(np.mean(sizes))
    assert 12_000 < avg < 40_000  # same order as the paper's 26,766 B at 224x224
    assert jpeg.average_jpeg_bytes(75) < avg


def test_grayscale_28x28_and_nchw_floats():
    rng = np.random.default_rng(0)
    gray = np.zeros((28, 28), np.uint8)
    gray[6:22, 8:20] = rng.integers(100, 256, size=(16, 12), dtype=np.uint8)
    size = jpeg.jpeg_bytes(gray, 90)
    assert size > 0 and jpeg.decode(jpeg.encode(gray)).shape == (28, 28)
    assert jpeg.jpeg_bytes(gray[:, :, None], 90) == size  # (H, W, 1) is grayscale too
    batch = np.stack([gray, gray.T]).astype(np.float32)[:, None] / 255  # like datasets gives
    hwc = jpeg.to_uint8_hwc(batch)
    assert hwc.shape == (2, 28, 28, 1) and hwc.dtype == np.uint8
    np.testing.assert_array_equal(hwc[0, :, :, 0], gray)
    expected = (jpeg.jpeg_bytes(gray, 90) + jpeg.jpeg_bytes(gray.T.copy(), 90)) / 2
    assert jpeg.average_jpeg_bytes(90, batch) == pytest.approx(expected)


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        jpeg.jpeg_bytes(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="H, W"):
        jpeg.jpeg_bytes(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="quality"):
        jpeg.jpeg_bytes(np.zeros((8, 8), np.uint8), 0)
    with pytest.raises(ValueError, match="no images"):
        jpeg.average_jpeg_bytes(90, [])
