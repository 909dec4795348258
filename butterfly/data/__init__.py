"""Data: datasets (Fashion-MNIST, digits, synthetic, image folders) and JPEG coding."""

from . import datasets, jpeg

__all__ = ["datasets", "jpeg"]
