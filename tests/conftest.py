import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest helpers (ROOT); the scripts run as subprocesses
os.environ.setdefault("YOLO_OFFLINE", "1")

import detector  # noqa: E402,F401  registers our layers before any test builds a model
from detector import kernels  # noqa: E402

CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run on the device machine")
    for item in items:
        if "gpu" in item.keywords and not CUDA:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def auto_kernel():
    """Every test starts and ends with the policy on `auto`."""
    kernels.set_kernel(None)
    yield
    kernels.set_kernel(None)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One short CPU training run of the attention-neck model from scratch on coco8 through train.py (the real CLI)."""
    import subprocess

    project = tmp_path_factory.mktemp("runs")
    cmd = [sys.executable, str(ROOT / "train.py"), "--model", "yolo11n-an.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0",
           "--device", "cpu", "--project", str(project), "--name", "e2e", "plots=False"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return project / "e2e", r.stdout + r.stderr


@pytest.fixture(scope="module")
def trained_weights(trained_run, tmp_path_factory):
    """The trained_run's best.pt copied into a folder of this test module's own (exports land next to it)."""
    import shutil

    pt = tmp_path_factory.mktemp("w") / "model.pt"
    shutil.copy(trained_run[0] / "weights/best.pt", pt)
    return pt


def write_clip(path: Path, frames: int = 9, fps: int = 12, size: tuple[int, int] = (160, 96)) -> Path:
    """A short mp4 of a coco8 val image sliding sideways."""
    import cv2
    import numpy as np

    frame = cv2.resize(cv2.imread(str(next((ROOT / "data/coco8/images/val").glob("*.jpg")))), size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.roll(frame, 8 * i, axis=1))
    writer.release()
    return path


def video_props(folder: Path, stem: str = "clip") -> tuple[int, int, tuple[int, int]]:
    """(frames, fps rounded, (width, height)) of the annotated video predict.py wrote for `stem` in `folder`."""
    import cv2

    result = next(p for p in folder.iterdir() if p.stem == stem and p.suffix in (".mp4", ".avi"))
    cap = cv2.VideoCapture(str(result))
    props = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), round(cap.get(cv2.CAP_PROP_FPS)),
             (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    cap.release()
    return props
