"""scripts/openvino_profile.py: both models' exports are profiled and the table sums their node types."""

import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "research/scripts/openvino_profile.py"


def test_profile_lists_node_types_and_the_heads_nodes():
    pytest.importorskip("openvino")
    r = subprocess.run([sys.executable, str(SCRIPT), "--imgsz", "160", "--runs", "2", "--top", "3"],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in r.stdout.splitlines() if line.startswith("| ")}
    assert "Convolution" in rows and "all" in rows, r.stdout
    assert r.stdout.count("the head's and the attention's other nodes") == 2
    assert "model.23" in r.stdout  # the Detect head's nodes are named after its layer
