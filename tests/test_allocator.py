"""detector.allocator: CPU prediction keeps freed memory, so forward passes stop page-faulting their buffers in."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT

from detector import allocator, cli, precision, predicting, training

# A fresh process (the setting is process-wide), the default built as it predicts on an x86 CPU (fused, channels-last),
# then the minor page faults of four batch-1 forward passes at 640 after three warm-ups.
FAULTS = """
import resource, sys, torch
from detector import allocator
print(allocator.keep_freed_memory() if sys.argv[1] == "keep" else "skipped")
import detector
from ultralytics.nn.tasks import DetectionModel
model = DetectionModel("yolo11n-an.yaml", verbose=False).fuse(verbose=False).eval().to(memory_format=torch.channels_last)
x = torch.rand(1, 3, 640, 640)
with torch.inference_mode():
    for _ in range(3):
        model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        model(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""


def faults_per_forward(how: str, **env) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", FAULTS, how], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "2", **env})
    assert out.returncode == 0, out.stderr[-2000:]
    applied, faults = out.stdout.split()[-2:]
    return applied, float(faults)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_forward_passes_of_the_default_stop_faulting_pages_in():
    """Each CPU forward of the default frees buffers of 7-9 MB; with glibc's defaults the next one faults them in
    again (5,000-7,000 faults per forward on the 2-core machine). Kept, the memory is reused: a few stray faults at
    most (0-135 seen)."""
    applied, kept = faults_per_forward("keep")
    if applied != "True":
        pytest.skip("not glibc's malloc here")
    _, plain = faults_per_forward("skip")
    if plain < 1000:
        pytest.skip(f"glibc kept the memory here by itself ({plain} faults per forward): nothing to compare")
    assert kept * 10 < plain, f"{kept} page faults per forward with freed memory kept, {plain} without"


def test_the_users_own_malloc_settings_win():
    applied, _ = faults_per_forward("keep", MALLOC_TRIM_THRESHOLD_="1000000")
    assert applied == "False"


@pytest.mark.parametrize("given, device, expected", [
    (["predict"], "cpu", True), (["val", "data=coco8.yaml"], "cpu", True), (["predict", "model=m.onnx"], "cpu", True),
    (["train", "data=coco8.yaml"], "cpu", False), (["predict"], "cuda", False)])
def test_detector_predict_and_val_keep_freed_memory_on_the_cpu(given, device, expected, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(precision, "training_device", lambda d, p: (torch.device(device), torch.float32))
    monkeypatch.setattr(training, "kernel_line", lambda *a: "kernels")
    cli.prepare(given)
    assert bool(calls) is expected


@pytest.mark.parametrize("device, expected", [("cpu", True), ("0", False)])
def test_predict_py_keeps_freed_memory_on_the_cpu(device, expected, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(precision, "resolve_device", lambda d: torch.device("cuda" if d == "0" else "cpu"))
    monkeypatch.setattr(predicting.inference, "setup_predictor", lambda yolo, **overrides: overrides)
    args = SimpleNamespace(conf=0.25, iou=0.7, classes=None, max_det=300, device=device, half=False, show=False,
                           compile=None, imgsz=None)
    predicting.load_predictor(args, "w.pt", SimpleNamespace(model="not a module"))
    assert bool(calls) is expected
