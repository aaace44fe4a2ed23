"""scripts/page_faults.py: each malloc setting in a process of its own, both in one table."""

import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "research/scripts/page_faults.py"


def test_prints_both_settings_for_every_model():
    r = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "1", "--rounds", "1", "--imgsz", "320", "--models",
                        "yolo11n-an (ours)"], capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split("|")[1:3] for line in r.stdout.splitlines() if line.startswith("| glibc") or "memory kept" in line
            or "NOT APPLIED" in line]
    settings = [s.strip() for s, _ in rows]
    assert [m.strip() for _, m in rows] == ["YOLO11n", "yolo11n-an (ours)"] * 2
    assert settings[:2] == ["glibc's defaults"] * 2
    if sys.platform == "linux":
        assert settings[2:] == ["freed memory kept (detector.allocator)"] * 2
    assert "the default against YOLO11n" in r.stdout
