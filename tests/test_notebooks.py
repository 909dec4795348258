"""Every notebook runs headless with small parameters (BF_NB_SMALL=1)."""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_notebooks",
                                              ROOT / "notebooks" / "make_notebooks.py")
make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb")
    return out, {p.stem: p for p in make.build(out)}


def test_committed_notebooks_match_the_generator():
    for name in make.NOTEBOOKS:
        assert (ROOT / "notebooks" / f"{name}.ipynb").exists(), name


@pytest.mark.parametrize("name", list(make.NOTEBOOKS))
def test_notebook_runs_small(built, name, monkeypatch):
    out, paths = built
    monkeypatch.setenv("BF_NB_SMALL", "1")
    monkeypatch.setenv("BF_ROOT", str(ROOT))
    monkeypatch.setenv("BF_NB_FIGURES", str(out / "figures"))
    make.execute(paths[name], timeout=300)
    import nbformat

    nb = nbformat.read(paths[name], as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert os.environ["BF_NB_SMALL"] == "1"
