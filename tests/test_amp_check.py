"""The trainer's AMP check runs offline: Ultralytics' check_amp downloads YOLO26n, ours compares the model being
trained in fp32 and fp16 (detector.glue.trainer.check_amp_offline). The numerics are checked here on CPU, whose
autocast also runs fp16; tests/test_gpu.py checks the trainer's log on a GPU."""

import pytest
import torch
from ultralytics.engine import trainer as trainer_module
from ultralytics.utils.checks import check_amp

from conftest import ROOT
from detector.glue import trainer as glue
from detector import assets, weights


@pytest.fixture(scope="module")
def trained():
    return weights.load(assets.DEFAULT_WEIGHTS).model.float()


def first_conv(model):
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_trained_model_agrees_in_fp16(trained):
    ok, detail = glue.amp_outputs_agree(trained, torch.float16)
    assert ok, detail


def test_broken_half_precision_fails(trained):
    """A GPU whose fp16 is broken gives inf/NaN: simulated by one conv that does so in half precision only."""
    hook = first_conv(trained).register_forward_hook(
        lambda m, i, out: out * float("nan") if out.dtype == torch.float16 else None)
    try:
        ok, detail = glue.amp_outputs_agree(trained, torch.float16)
    finally:
        hook.remove()
    assert not ok and "inf/NaN" in detail


def test_wrong_half_precision_values_fail(trained):
    hook = first_conv(trained).register_forward_hook(
        lambda m, i, out: out + 3.0 if out.dtype == torch.float16 else None)
    try:
        ok, detail = glue.amp_outputs_agree(trained, torch.float16)
    finally:
        hook.remove()
    assert not ok and "max |fp32 - float16|" in detail


def test_trainer_runs_the_offline_check_and_restores_ultralytics(monkeypatch, tmp_path):
    calls, real = [], glue.check_amp_offline

    def spy(model):
        calls.append(type(model).__name__)
        return real(model)

    monkeypatch.setattr(glue, "check_amp_offline", spy)
    trainer = glue.DetectorTrainer(overrides=dict(
        model=str(ROOT / "models/yolo11n-an.yaml"), data=str(ROOT / "data/coco8.yaml"), epochs=1, imgsz=32, batch=2,
        workers=0, device="cpu", project=str(tmp_path), name="amp", plots=False, val=False))
    trainer.train()
    assert calls == ["DetectionModel"]  # Ultralytics' _setup_train called ours, once
    assert trainer_module.check_amp is check_amp  # and the name is Ultralytics' own again
    assert trainer.amp is False  # on CPU, as Ultralytics decides
    assert type(trainer.model.criterion).__name__ == "LeanDetectionLoss"  # the trainer's loss (detector.glue.loss)
    assert type(trainer.ema.ema.criterion).__name__ == "LeanDetectionLoss"  # and the validation loss's
