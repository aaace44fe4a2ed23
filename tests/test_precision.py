"""Training precision: --precision {fp16,bf16,fp32} and what the trainer does with it.

bf16 is Ultralytics' own `amp="bf16"` mode (bfloat16 autocast, GradScaler off); train.py maps the option onto it and
refuses bf16 where Ultralytics' autocast would fail mid-run (CPU, GPUs before sm80).
"""

import csv
import math
import subprocess
import sys

import pytest
import torch

import detector.attention
from detector import precision as prec
from detector import training as train
from conftest import ROOT
from detector.glue import trainer as glue


@pytest.mark.parametrize("args, precision", [
    ([], "fp16"),
    (["--precision", "bf16"], "bf16"),
    (["--precision", "fp32"], "fp32"),
    (["--no-amp"], "fp32"),
])
def test_precision_option(args, precision):
    parsed, _ = train.parse_args(args)
    assert parsed.precision == precision
    assert prec.precision_of(prec.PRECISIONS[precision]) == precision  # round trip through a checkpoint's `amp`


def test_attention_dtype_follows_the_precision():
    assert prec.training_device("cpu", "bf16") == (torch.device("cpu"), torch.float32)
    if torch.cuda.is_available():
        assert prec.training_device("0", "bf16") == (torch.device("cuda", 0), torch.bfloat16)
        assert prec.training_device("0", "fp32") == (torch.device("cuda", 0), torch.float32)


def test_bf16_on_cpu_is_refused_before_anything_is_written(capsys, tmp_path):
    assert train.main(["--precision", "bf16", "--device", "cpu", "--project", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == ("train.py: error: --precision bf16 needs a CUDA GPU (sm80 or newer); this run "
                                       "is on cpu, which trains in float32\n")
    assert not (tmp_path / "runs").exists()


def test_bf16_trainer_autocasts_in_bfloat16_without_a_grad_scaler(tmp_path, monkeypatch):
    """What Ultralytics' trainer does with amp='bf16', observed on CPU: Ultralytics' `autocast` helper (which allows
    bfloat16 on CUDA only) is replaced by CPU autocast that records what it was asked for."""
    import ultralytics.engine.trainer as ultralytics_trainer

    requested = []

    def recording_autocast(enabled, device="cuda"):
        requested.append((enabled, device))
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled is torch.bfloat16)

    monkeypatch.setattr(ultralytics_trainer, "autocast", recording_autocast)
    dtypes = []  # the dtype of q, (B, heads, L, head_dim), at every attention call
    attention = detector.attention.attention
    monkeypatch.setattr(detector.attention, "attention", lambda q, k, v: dtypes.append(q.dtype) or attention(q, k, v))
    trainer = glue.DetectorTrainer(overrides=dict(
        model=str(ROOT / "models/yolo11n-an.yaml"), data=str(ROOT / "data/coco8.yaml"), epochs=1, imgsz=64, batch=4,
        workers=0, device="cpu", amp=prec.PRECISIONS["bf16"], project=str(tmp_path), name="bf16", plots=False))
    trainer.train()
    assert requested and all(r == (torch.bfloat16, "cpu") for r in requested), requested
    assert not trainer.scaler.is_enabled()  # bf16 needs no loss scaling
    assert torch.bfloat16 in dtypes  # the training forward passes ran attention in bf16 (validation: float32)
    losses = [float(v) for v in trainer.tloss.values()]
    assert losses and all(math.isfinite(x) for x in losses), losses


@pytest.mark.gpu
def test_bf16_training_on_cuda(tmp_path):
    """One epoch of coco8 in bf16 on the GPU through the real CLI: runs, says bfloat16, finite losses."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--precision", "bf16", "--device", "0", "--epochs", "1", "--imgsz",
           "320", "--batch", "4", "--workers", "0", "--project", str(tmp_path), "--name", "bf16", "plots=False"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "bfloat16" in next(line for line in (r.stdout + r.stderr).splitlines() if "attention kernel:" in line)
    row = next(csv.DictReader(open(tmp_path / "bf16/results.csv")))
    losses = [float(v) for k, v in row.items() if k.strip().startswith(("train/", "val/"))]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses), row
