"""End to end on CPU: train.py trains on the bundled coco8 and writes its checkpoints (which load with and without
detector: tests/test_native.py)."""

import csv
import subprocess
import sys

import pytest

from conftest import ROOT


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


@pytest.mark.slow
def test_train_rejects_bad_arguments_with_one_line():
    for args, expected in [
        (["--data", "missing.yaml"], "train.py: error: data 'missing.yaml': no such file"),
        (["--model", "nope.yaml"], "train.py: error: model 'nope.yaml': no such file"),
        (["--attn", "cudnn", "--device", "cpu"], "cannot run on cpu in float32"),
        (["bogus=1"], "unknown Ultralytics setting(s): bogus"),
    ]:
        r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
