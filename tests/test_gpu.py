"""GPU-only checks (skipped without CUDA; run them on the device machine)."""

import csv
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from detector import kernels
from detector.glue import trainer as glue
from detector.attention import AreaAttention
from detector.bench import tensors

pytestmark = pytest.mark.gpu

FUSED_OPS = {"cudnn": "aten::_scaled_dot_product_cudnn_attention", "flash": "aten::_scaled_dot_product_flash_attention"}


def test_fused_kernel_runs_in_fp16_training_step():
    """Profile an AMP training step of the attention-neck model: the fused op the policy chose runs forward and
    backward, and neither the math fallback nor the plain-matmul path does."""
    from ultralytics.nn.tasks import DetectionModel

    device = torch.device("cuda", 0)
    choice = kernels.select(device, torch.float16, 32, 400)
    assert choice.kernel in FUSED_OPS, choice
    model = DetectionModel(str(ROOT / "models/yolo11n-an.yaml"), verbose=False).to(device).train()
    x = torch.randn(8, 3, 640, 640, device=device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
        sum(t.float().mean() for t in tensors(out)).backward()
        torch.cuda.synchronize()
    names = {e.name for e in prof.events()}
    op = FUSED_OPS[choice.kernel]
    assert op in names and f"{op}_backward" in names, sorted(n for n in names if "attention" in n)
    assert "aten::_scaled_dot_product_attention_math" not in names
    # one fused call per attention layer forward, one backward (YOLO11's own C2PSA in the backbone still uses its
    # matmul attention, so softmax/bmm counts say nothing about ours). The n model has one A2C2f of two ABlocks.
    n_layers = sum(isinstance(m, AreaAttention) for m in model.modules())
    assert sum(e.name == op for e in prof.events()) == n_layers == 2
    assert sum(e.name == f"{op}_backward" for e in prof.events()) == n_layers
    print(f"fp16 training step ran {op} (policy: {choice.reason})")


def test_three_epochs_coco8_with_amp(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "--epochs", "3", "--imgsz", "640", "--batch", "16", "--device",
           "0", "--workers", "2", "--project", str(tmp_path), "--name", "gpu", "plots=False"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    line = next(s for s in log.splitlines() if "attention kernel:" in s)
    assert any(f"attention kernel: {k} on cuda:0" in line for k in FUSED_OPS), line
    if not glue.AMP_CHECK_WEIGHTS.is_file():  # the AMP check ran offline, on our model, and kept AMP on
        assert "AMP: checks passed on the model being trained" in log and "downloading" not in log, log[-4000:]
    rows = list(csv.DictReader(open(tmp_path / "gpu/results.csv")))
    assert len(rows) == 3
    for row in rows:
        losses = [float(row[k]) for k in ("train/box_loss", "train/cls_loss", "train/dfl_loss")]
        assert all(0 < v < 1e3 for v in losses), row
    assert (tmp_path / "gpu/weights/best.pt").exists()
    print(line)
    print("epoch rows:", [(r["epoch"], r["train/box_loss"], r["metrics/mAP50-95(B)"]) for r in rows])


def test_predict_py_runs_its_model_channels_last_with_nchw_outputs():
    """predict.py (and `detector predict`) give Ultralytics channels_last=True on CUDA: the predictor's PyTorch model
    is channels-last, and predicts what the NCHW model Ultralytics would set up predicts (to cuDNN's rounding)."""
    from detector import assets, predicting
    from detector.glue import inference

    predictor = predicting.load_predictor(predicting.parse_args(["--device", "0"]), assets.DEFAULT_WEIGHTS)
    conv = next(p for p in predictor.model.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    nchw = inference.setup_predictor(predicting.weights_io.load(assets.DEFAULT_WEIGHTS), device="0", save=False,
                                     verbose=False)
    assert next(p for p in nchw.model.model.parameters() if p.dim() == 4).is_contiguous()
    x = torch.rand(2, 3, 640, 640, device="cuda")
    with torch.inference_mode():
        ours, theirs = predictor.model(x), nchw.model(x)
    ours, theirs = (y[0] if isinstance(y, (list, tuple)) else y for y in (ours, theirs))
    assert ours.shape == theirs.shape
    boxes, scores = (ours[:, :4] - theirs[:, :4]).abs(), (ours[:, 4:] - theirs[:, 4:]).abs()
    print(f"channels-last against NCHW: boxes {boxes.mean():.4f} px mean, {boxes.max():.3f} max; "
          f"probabilities {scores.max():.2e} max")
    # fp32 convolutions run as TF32 in either format, rounded apart; noise input makes flat box distributions, whose
    # expected values move most: on one H100 0.53 px at most over 2 x 8400 anchors
    assert boxes.mean() < 0.05 and boxes.max() < 2 and scores.max() < 1e-2
