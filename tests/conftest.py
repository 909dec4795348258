import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def assert_close(out, ref, rtol=1e-4):
    """Relative to the reference's scale: |out - ref| <= rtol * max(1, max|ref|)."""
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(out - ref).max())
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} * {scale:.3g}"
