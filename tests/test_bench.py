"""Smoke test of the benchmark at a tiny size: it runs every section and reports every model."""

import json
from importlib.util import find_spec
import subprocess
import sys

from conftest import ROOT
import torch

from detector import kernels
from detector.bench import MODELS, yolo12_attention


def test_bench_small_runs_all_sections(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "detector.bench", "--small", "--iters", "1", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    for section in ("train", "infer", "cpu"):
        assert {row["model"] for row in rows if row["section"] == section} == set(MODELS), section
    assert all(row["ms"] > 0 for row in rows if "ms" in row)
    openvino = ("openvino_fp32_ms", "openvino_auto_ms", "openvino_int8_ms") if find_spec("openvino") else ()
    for key in ("onnx_ms", *openvino):  # OpenVINO's columns need the .[openvino] extra
        assert all(row[key] > 0 for row in rows if row["section"] == "cpu"), key
    attention = [row for row in rows if row["section"] == "attention"]
    assert {row["kernel"] for row in attention} >= {"flash", "math", "matmul", "yolo12"}
    assert "### Training step" in r.stdout and "| YOLO11n |" in r.stdout and "int8 / OpenVINO fp32" in r.stdout


def test_yolo12_baseline_is_attention():
    """The speed-up baseline computes the same attention as our reference (else its timings would mean nothing)."""
    q, k, v = (torch.randn(2, 3, 50, 16) for _ in range(3))
    torch.testing.assert_close(yolo12_attention(q, k, v), kernels.matmul_attention(q, k, v), atol=1e-5, rtol=1e-5)
