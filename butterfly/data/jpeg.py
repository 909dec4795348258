"""JPEG sizes of real images: the cloud-only baseline's upload, measured rather than assumed.

Encoding is Pillow's (libjpeg-turbo in its wheels) at DEFAULT_QUALITY = 95 with Pillow's default
4:2:0 chroma subsampling for RGB. Quality 95 is chosen because it comes closest to the paper's
26,766 B mean at 224x224: on the six photographs of sample_photos_224() it gives about 24 KB
(quality 90: about 17 KB, 75: about 11 KB), so the baseline is, if anything, slightly favoured.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np

DEFAULT_QUALITY = 95
# Natural photographs bundled with scikit-image (no download); stereo_motorcycle gives two.
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right")


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("butterfly.jpeg needs Pillow: pip install pillow") from e
    return Image


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected (H, W) or (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image)


def encode(image: np.ndarray, quality: int = DEFAULT_QUALITY) -> bytes:
    """JPEG file bytes of an 8-bit (H, W) grayscale or (H, W, 3) RGB image."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    _pil().fromarray(_check_image(image)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) pixels of a JPEG file."""
    with _pil().open(io.BytesIO(data)) as im:
        return np.asarray(im)


def jpeg_bytes(image: np.ndarray, quality: int = DEFAULT_QUALITY) -> int:
    """Size in bytes of the JPEG file of an 8-bit (H, W) or (H, W, 3) image."""
    return len(encode(image, quality))


def to_uint8_hwc(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] (as butterfly.datasets gives them) -> uint8 (N, H, W, C)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W), got {x.shape}")
    if x.dtype != np.uint8:
        x = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)


def _center_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is `size` (bicubic), then crop the central size x size."""
    Image = _pil()
    im = Image.fromarray(image)
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize(
        (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC
    )
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


def sample_photos_224(size: int = 224) -> dict[str, np.ndarray]:
    """scikit-image's bundled photographs (PHOTO_NAMES) as uint8 (size, size, 3), center-cropped."""
    try:
        from skimage import data
    except ImportError as e:
        raise ImportError("sample_photos_224() needs scikit-image: pip install scikit-image") from e
    left, right, _ = data.stereo_motorcycle()
    raw = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "motorcycle_left": left,
        "motorcycle_right": right,
    }
    return {name: _center_square(raw[name], size) for name in PHOTO_NAMES}


def average_jpeg_bytes(
    quality: int = DEFAULT_QUALITY, images: Iterable[np.ndarray] | np.ndarray | None = None
) -> float:
    """Mean JPEG size over `images` (uint8 HW/HWC images, or an (N, C, H, W) float array in
    [0, 1]); by default over sample_photos_224()."""
    if images is None:
        images = list(sample_photos_224().values())
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        images = to_uint8_hwc(images)
    sizes = [jpeg_bytes(im, quality) for im in images]
    if not sizes:
        raise ValueError("no images")
    return float(np.mean(sizes))
