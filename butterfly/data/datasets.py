"""Image classification data sets as numpy arrays: Fashion-MNIST, scikit-learn digits, synthetic.

Every loader returns `Dataset` objects holding `images` float32 (N, C, H, W) in [0, 1] (unless
normalized) and `labels` int32 (N,). Nothing is downloaded: Fashion-MNIST comes from Debian's
`dataset-fashion-mnist` package, digits from scikit-learn's bundled copy.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _C

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Mean and std of all pixels of the 60,000 training images after scaling to [0, 1].
FASHION_MNIST_MEAN = 0.2860406
FASHION_MNIST_STD = 0.3530242

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


class DatasetNotFoundError(_C.FileError, FileNotFoundError):
    """A data set's files are not on this machine; the message says how to install them.
    A butterfly.Error and a FileNotFoundError."""


@dataclass
class Dataset:
    """Images and labels of one split; indexing with a slice or index array gives a Dataset."""

    images: np.ndarray  # float32 (N, C, H, W)
    labels: np.ndarray  # int32 (N,), values in range(len(classes))
    classes: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.float32:
            raise ValueError(
                f"images must be float32 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != np.int32:
            raise ValueError(
                f"labels must be int32 ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {self.labels.shape}"
            )
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index):
        """An int gives (image (C, H, W), label); a slice or index array gives a Dataset."""
        if isinstance(index, (int, np.integer)):
            return self.images[index], int(self.labels[index])
        return Dataset(self.images[index], self.labels[index], self.classes, self.name)

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """n examples drawn without replacement (reproducible for a seed), in original order."""
        if not 0 <= n <= len(self):
            raise ValueError(f"subset size {n} outside [0, {len(self)}]")
        index = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return self[index]

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields (images, labels) batches; the last one may be smaller."""
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(self))
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            yield self.images[index], self.labels[index]


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Reads an idx file (gzip or plain) as uint8 (N, *item_shape), checking header and size."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = 1 + len(item_shape)
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise ValueError(f"{path}: truncated idx header")
    head = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(head[0]) != magic:
        raise ValueError(f"{path}: bad idx magic {int(head[0]):#010x}, expected {magic:#010x}")
    count, dims = int(head[1]), tuple(int(d) for d in head[2:])
    if dims != item_shape:
        raise ValueError(f"{path}: item shape {dims}, expected {item_shape}")
    expected = header_bytes + count * int(np.prod(item_shape, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, expected {expected} for {count} items")
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape((count, *item_shape))


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {root}. Install Debian's package with "
        "`apt-get install dataset-fashion-mnist` (files go to /usr/share/datasets/fashion-mnist/), "
        "or pass root= / set BUTTERFLY_FASHION_MNIST to a folder holding the idx files."
    )


def _fashion_split(root: Path, prefix: str, subset: int | None, normalize: bool) -> Dataset:
    images = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), _IDX_IMAGES_MAGIC, (28, 28))
    labels = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), _IDX_LABELS_MAGIC, ())
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}: {images.shape[0]} {prefix} images but {labels.shape[0]} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{root}: {prefix} label {labels.max()} out of range")
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    x = images.astype(np.float32)[:, None] / np.float32(255)
    if normalize:
        x = (x - np.float32(FASHION_MNIST_MEAN)) / np.float32(FASHION_MNIST_STD)
    return Dataset(x, labels.astype(np.int32), FASHION_MNIST_CLASSES, f"fashion-mnist-{prefix}")


def fashion_mnist(
    root: str | os.PathLike | None = None, subset: int | None = None, normalize: bool = False
) -> tuple[Dataset, Dataset]:
    """Fashion-MNIST as (train, test): 60,000 and 10,000 images (N, 1, 28, 28) in [0, 1].

    root defaults to $BUTTERFLY_FASHION_MNIST, then /usr/share/datasets/fashion-mnist. subset keeps
    the first `subset` images of each split (the files are already class-shuffled). normalize
    subtracts FASHION_MNIST_MEAN and divides by FASHION_MNIST_STD (training-set pixel statistics)
    on both splits. Raises DatasetNotFoundError (a FileNotFoundError) when files are missing and
    ValueError when a file is not a valid idx file of the expected shape.
    """
    if root is None:
        root = os.environ.get("BUTTERFLY_FASHION_MNIST", FASHION_MNIST_ROOT)
    root = Path(root)
    return (
        _fashion_split(root, "train", subset, normalize),
        _fashion_split(root, "t10k", subset, normalize),
    )


def digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's 1,797 handwritten digits as (train, test): (N, 1, 8, 8) in [0, 1].

    Pixel values 0..16 are divided by 16; the split is a seeded random permutation.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "butterfly.datasets.digits() needs scikit-learn: pip install scikit-learn"
        ) from e
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16))[:, None]
    y = bunch.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    classes = tuple(str(c) for c in bunch.target_names)
    return (
        Dataset(x[train], y[train], classes, "digits-train"),
        Dataset(x[test], y[test], classes, "digits-test"),
    )


def synthetic(
    n: int, shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10, seed: int = 0
) -> Dataset:
    """n learnable random images for smoke tests: a fixed prototype per class plus noise, in [0, 1].

    Labels cycle through the classes so every class appears when n >= classes.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.random((classes, *shape), dtype=np.float32)
    labels = (np.arange(n) % classes).astype(np.int32)
    noise = rng.normal(0.0, 0.1, size=(n, *shape)).astype(np.float32)
    images = np.clip(prototypes[labels] + noise, 0.0, 1.0).astype(np.float32)
    return Dataset(images, labels, tuple(f"class{i}" for i in range(classes)), "synthetic")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _load_picture(path: Path, size: int, resize: int, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            w, h = im.size
            scale = resize / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                           Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            a = np.asarray(im, np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise _C.FileError(f"cannot read image '{path}': {e}") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def image_folder(path, size: int = 224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 channels: int = 3, resize: int | None = None, limit: int | None = None
                 ) -> Dataset:
    """The pictures under a folder, prepared as a model expects: each resized so its shorter
    side is `resize` (default size / 0.875, as torchvision's eval transforms), center-cropped
    to size x size, scaled to [0, 1] and normalized per channel ((x - mean) / std; the
    defaults are ImageNet's).  JPEG, PNG, BMP and WebP through Pillow; .npy files are taken
    as they are (float arrays (N, C, H, W) or (C, H, W), already prepared).  Pictures in
    sub-folders are labelled by sub-folder (sorted names are the classes); pictures at the top
    have no label (label 0 of the one class ""), which is all distillation needs.  Files are
    read in sorted order; `limit` stops after that many images."""
    root = Path(path)
    if not root.is_dir():
        raise _C.FileError(f"'{root}' is not a folder")
    size = int(size)
    resize = int(resize or round(size / 0.875))
    if channels not in (1, 3):
        raise _C.InvalidArgument(f"channels must be 1 or 3, not {channels}")
    mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(std, np.float32).reshape(-1, 1, 1)
    if mean.shape[0] not in (1, channels) or std.shape[0] not in (1, channels) or np.any(std <= 0):
        raise _C.InvalidArgument(f"mean and std need 1 or {channels} values (std > 0)")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and p.suffix.lower() in IMAGE_SUFFIXES + (".npy",))
    subdirs = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
    classes = tuple(subdirs) if subdirs else ("",)
    images, labels = [], []
    for p in files:
        label = classes.index(p.relative_to(root).parts[0]) if p.parent != root and subdirs else 0
        if p.suffix.lower() == ".npy":
            try:
                a = np.load(p, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise _C.FileError(f"cannot read '{p}': {e}") from None
            a = a[None] if a.ndim == 3 else a
            if a.ndim != 4 or a.dtype.kind != "f" or a.shape[1:] != (channels, size, size):
                raise _C.InvalidArgument(f"'{p}' holds {a.dtype} {a.shape}, not float "
                                         f"(N, {channels}, {size}, {size})")
            batch = list(a.astype(np.float32))
        else:
            batch = [(_load_picture(p, size, resize, "L" if channels == 1 else "RGB") - mean)
                     / std]
        images += batch
        labels += [label] * len(batch)
        if limit is not None and len(images) >= limit:
            images, labels = images[:limit], labels[:limit]
            break
    if not images:
        raise _C.FileError(f"no images ({', '.join(IMAGE_SUFFIXES)}, .npy) under '{root}'")
    return Dataset(np.ascontiguousarray(np.stack(images), np.float32),
                   np.asarray(labels, np.int32), classes, name=root.name)
