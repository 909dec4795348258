"""`butterfly demo --quick` end to end, as a user runs it."""

import json
import subprocess
import sys

from butterfly.serving import child_env


def test_quick_demo_runs_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, "-m", "butterfly.cli", "demo", "--quick", "--out",
                        str(tmp_path)], capture_output=True, text=True, env=child_env(),
                       timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "predictions agree on 100.00 %" in out
    assert "bytes per image" in out and "paper setting" in out and "this machine" in out
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["accuracy"]["agreement"] == 1.0
    assert report["bytes"]["payload_raw"] == 14 * 14 + 8
    for name in ("latency_energy_paper.png", "splits_paper.png", "latency_energy_machine.png"):
        assert (tmp_path / name).stat().st_size > 1000
