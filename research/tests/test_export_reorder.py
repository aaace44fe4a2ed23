"""scripts/export_reorder.py: both exports of the default compute the same outputs, and the table has every graph."""

import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = ROOT / "research/scripts/export_reorder.py"


def test_reordered_export_equals_the_as_built_one_and_is_timed():
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    r = subprocess.run([sys.executable, str(SCRIPT), "--imgsz", "160", "--rounds", "2", "--calls", "1"],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("reordered outputs equal the as-built export's") == 2, r.stdout
    rows = [line.split("|")[1].strip() for line in r.stdout.splitlines() if line.startswith("| O")]
    assert rows == [f"{rt}, {m}" for m in ("YOLO11n", "default, as built", "default, reordered")
                    for rt in ("OpenVINO", "ONNX Runtime")]
