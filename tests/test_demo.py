"""`butterfly demo --quick` end to end, as a user runs it."""

import json
import subprocess
import sys

from butterfly import netem
from butterfly.serving import child_env


def test_quick_demo_runs_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, "-m", "butterfly.cli", "demo", "--quick", "--out",
                        str(tmp_path)], capture_output=True, text=True, env=child_env(),
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "predictions agree on 100.00 %" in out
    assert "bytes per image" in out and "paper setting" in out and "this machine" in out
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["accuracy"]["agreement"] == 1.0
    assert report["bytes"]["payload_raw"] == 14 * 14 + 8
    for name in ("latency_energy_paper.png", "splits_paper.png", "latency_energy_machine.png"):
        assert (tmp_path / name).stat().st_size > 1000
    ok, why = netem.available()
    if not ok:  # no namespaces: no emulated links, no live switching
        assert report["netem"] == {"skipped": why} and "live" not in report
        return
    live = report["live"]  # runtime switching on a live link: every run, the plot
    assert set(live["overall"]) == {"adaptive", *live["options"]}
    assert live["overall"]["adaptive"]["agreement"] == 1.0
    assert len(live["switch_delays"]) == 4 and "runtime switching on a live link" in out
    assert (tmp_path / "live_switching.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
