"""The start of a DDP worker, on CPU: what Ultralytics' multi-GPU launcher runs in every rank, with our trainer.

`yolo`/train.py with `--device 0,1` makes Ultralytics write a temporary worker script plus a cloudpickled state (the
trainer class, its arguments, the model, the callbacks) and start it in each rank with `torch.distributed.run`. The
rank's process then imports our trainer by its module path (which registers our SDPA layers), rebuilds the trainer
and trains. The collective part (NCCL, one process per GPU) needs GPUs: Ultralytics' `_setup_ddp` always binds a
CUDA (or NPU/XPU) device and wraps the model with `device_ids=[rank]`, so a gloo-on-CPU run would exercise patched
code, not Ultralytics'. What is ours is the worker's start, tested here for real: Ultralytics' own generated script
and state file, run in a fresh process (one rank, device cpu), training one epoch. The GPU run (2 and 4 ranks) is
scripts/ddp_scaling.py, summarised in docs/benchmarks.md.
"""

import subprocess
import sys

import pytest

from conftest import ROOT
from detector.glue.trainer import DetectorTrainer

pytest.importorskip("cloudpickle")  # Ultralytics' DDP launcher needs it (a dependency of ours: see pyproject.toml)


def record_worker(trainer):
    """on_train_start callback, run inside the worker: what the rank built, written next to the run."""
    import detector.attention

    from ultralytics.utils.torch_utils import unwrap_model

    layers = {type(m).__name__ for m in trainer.model.modules() if isinstance(m, detector.attention.block.AAttn)}
    loss = type(unwrap_model(trainer.model).criterion).__name__
    (trainer.save_dir / "worker.txt").write_text(
        f"{type(trainer).__module__}.{type(trainer).__name__} {sorted(layers)} {loss}")


@pytest.mark.slow
def test_ultralytics_ddp_worker_script_starts_our_trainer(tmp_path):
    from ultralytics.utils.dist import generate_ddp_file

    trainer = DetectorTrainer(overrides=dict(
        model=str(ROOT / "models/yolo11n-an.yaml"), data=str(ROOT / "data/coco8.yaml"), epochs=1, imgsz=64, batch=4,
        workers=0, device="cpu", project=str(tmp_path), name="ddp", plots=False, val=False))
    trainer.add_callback("on_train_start", record_worker)
    trainer.model = trainer.get_model(cfg=trainer.args.model, verbose=False)
    script = generate_ddp_file(trainer)  # Ultralytics' own worker script and cloudpickled state
    r = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**__import__("os").environ, "RANK": "-1", "LOCAL_RANK": "-1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    run = tmp_path / "ddp"
    assert (run / "worker.txt").read_text() == "detector.glue.trainer.DetectorTrainer ['AreaAttention'] LeanDetectionLoss"
    assert (run / "weights/last.pt").is_file() and len((run / "results.csv").read_text().splitlines()) == 2
