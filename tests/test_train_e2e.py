"""End to end on CPU: train.py trains on the bundled coco8, writes best.pt, which reloads and predicts."""

import csv
import subprocess
import sys

import pytest

from conftest import ROOT

IMAGE = ROOT / "data/coco8/images/val/000000000042.jpg"


@pytest.fixture(scope="module")
def run_dir(trained_run):
    folder, log = trained_run
    assert "attention kernel: matmul on cpu" in log  # 16 tokens per area at imgsz 64
    return folder


def test_training_writes_checkpoints_and_results(run_dir):
    assert (run_dir / "weights/best.pt").stat().st_size > 1_000_000
    assert (run_dir / "weights/last.pt").exists()
    rows = list(csv.DictReader(open(run_dir / "results.csv")))
    assert len(rows) == 1 and float(rows[0]["train/box_loss"]) > 0


def test_best_pt_reloads_with_our_layers_and_predicts(run_dir):
    """In a fresh interpreter that imports only Ultralytics: unpickling the checkpoint imports detector."""
    code = (
        "import sys; from ultralytics import YOLO\n"
        f"m = YOLO(r'{run_dir / 'weights/best.pt'}')\n"
        "names = {type(x).__module__ + '.' + type(x).__name__ for x in m.model.modules()}\n"
        "assert 'detector.attention.AreaAttention' in names and 'detector.attention.A2C2f' in names, names\n"
        "assert 'ultralytics.nn.modules.block.AAttn' not in names\n"
        f"r = m.predict(r'{IMAGE}', imgsz=64, conf=0.0, device='cpu', verbose=False)[0]\n"
        f"import cv2; assert r.orig_shape == cv2.imread(r'{IMAGE}').shape[:2], r.orig_shape\n"
        "print('boxes', len(r.boxes))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split("boxes")[1]) > 0  # conf=0: an untrained model still emits boxes


def test_train_rejects_bad_arguments_with_one_line():
    for args, expected in [
        (["--data", "missing.yaml"], "train.py: error: data 'missing.yaml': no such file"),
        (["--model", "nope.yaml"], "train.py: error: model 'nope.yaml': no such file"),
        (["--attn", "cudnn", "--device", "cpu"], "cannot run on cpu in float32"),
        (["bogus=1"], "unknown Ultralytics setting(s): bogus"),
    ]:
        r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
