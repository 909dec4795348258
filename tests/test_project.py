"""The project's machinery: the benchmarks start from any directory, the `test` extra holds
what the suite imports, and BF_REQUIRE_ALL=1 turns skips for missing things into failures."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))


def _clean_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_puts_the_repository_on_its_path_before_butterfly(path):
    # `make bench` runs each file as a script, butterfly built in place, maybe not installed
    order = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            order += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            order.append((node.lineno, node.module.split(".")[0]))
    order.sort()
    names = [name for _, name in order]
    assert "common" in names, f"{path.name} does not import benchmarks/common.py"
    assert "butterfly" not in names[:names.index("common")], (
        f"{path.name} imports butterfly before common")


# the module level of each benchmark as `python benchmarks/bench_x.py` runs it (its folder
# first on sys.path) from another directory, without its main()
LOAD = "import runpy, sys; sys.path.insert(0, sys.argv[1]); runpy.run_path(sys.argv[2])"


def test_benchmarks_load_from_another_directory(tmp_path):
    for path in BENCHMARKS:
        r = subprocess.run([sys.executable, "-c", LOAD, str(path.parent), str(path)],
                           cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.returncode == 0, f"{path.name}: {r.stderr[-2000:]}"


def _name(requirement):
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_the_test_extra_holds_what_make_installs():
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for r in project["optional-dependencies"]["test"]}
    build = {_name(r) for r in
             tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]}
    wanted = {_name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert wanted - build - declared == set()


SKIPPING = '''
import pytest
def test_needs_a_missing_module():
    pytest.importorskip("bf_no_such_module")
def test_needs_root():
    pytest.skip("emulated links unavailable: needs root (network namespaces and tc)")
'''


@pytest.mark.parametrize("require_all", ["0", "1"])
def test_require_all_fails_a_skip_for_something_missing(tmp_path, require_all):
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = _clean_env()
    env["BF_REQUIRE_ALL"] = require_all
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs",
                        str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    summary = r.stdout.strip().splitlines()[-1]
    if require_all == "1":
        assert r.returncode == 1 and "1 failed, 1 skipped" in summary, r.stdout
        assert "bf_no_such_module" in r.stdout
    else:
        assert r.returncode == 0 and "2 skipped" in summary, r.stdout
